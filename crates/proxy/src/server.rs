//! Serving (the accept loop and its limits are the edge's) and draining
//! on shutdown.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quorumhub_edge::Edge;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::forward::{self, Forwarder};

/// Counts upgraded connections (WebSockets), which outlive their HTTP
/// connection, so shutdown can wait for them.
#[derive(Clone, Default)]
pub(crate) struct Drain {
    inner: Arc<(AtomicUsize, Notify)>,
}

pub(crate) struct DrainGuard(Arc<(AtomicUsize, Notify)>);

impl Drain {
    pub fn track(&self) -> DrainGuard {
        self.inner.0.fetch_add(1, Ordering::SeqCst);
        DrainGuard(self.inner.clone())
    }

    pub fn active(&self) -> usize {
        self.inner.0.load(Ordering::SeqCst)
    }

    async fn idle(&self) {
        loop {
            let notified = self.inner.1.notified();
            if self.active() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for DrainGuard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::SeqCst);
        self.0 .1.notify_waiters();
    }
}

/// How shutdown goes: `delay` serving with a failing health check, then up
/// to `timeout` for what is in flight.
pub(crate) struct DrainTiming {
    pub delay: Duration,
    pub timeout: Duration,
}

pub(crate) async fn serve(
    listener: TcpListener,
    edge: Arc<Edge>,
    fwd: Forwarder,
    shutdown: impl Future<Output = ()>,
    timing: DrainTiming,
) {
    let shared = fwd.shared.clone();
    let drain = fwd.drain.clone();
    // Shutdown first fails the health check for `delay`, still accepting,
    // so the load balancer takes this proxy out before its listener closes.
    let stop = async {
        shutdown.await;
        if !timing.delay.is_zero() {
            shared.draining.store(true, Ordering::Relaxed);
            tracing::info!(
                delay_ms = timing.delay.as_millis() as u64,
                "draining: health check fails; still serving until the load balancer has noticed"
            );
            tokio::time::sleep(timing.delay).await;
        }
    };
    // One Arc per request, not a copy of every handle the forwarder holds.
    let fwd = Arc::new(fwd);
    let handler = move |req| forward::handle(fwd.clone(), req);
    let graceful = edge.serve(listener, handler, stop).await;
    let deadline = Instant::now() + timing.timeout;
    tracing::info!(
        websockets = drain.active(),
        "draining: no new connections; finishing requests in flight"
    );
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep_until(deadline.into()) => tracing::warn!("drain deadline reached with requests in flight"),
    }
    tokio::select! {
        _ = drain.idle() => {}
        _ = tokio::time::sleep_until(deadline.into()) => tracing::warn!(websockets = drain.active(), "drain deadline reached; closing WebSockets"),
    }
}
