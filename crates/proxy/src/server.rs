//! Accepting connections and draining them on shutdown.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::forward::{self, HttpClient};
use crate::watch::Shared;

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
    shared: Arc<Shared>,
    client: HttpClient,
    shutdown: impl Future<Output = ()>,
    timing: DrainTiming,
) {
    let drain_timeout = timing.timeout;
    let graceful = GracefulShutdown::new();
    let drain = Drain::default();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    // Set once shutdown begins: until then, keep accepting while the health
    // check reports draining.
    let mut closing_at: Option<Instant> = None;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, remote) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let (shared, client, drain2) = (shared.clone(), client.clone(), drain.clone());
                let svc = service_fn(move |req| forward::handle(shared.clone(), client.clone(), drain2.clone(), remote, req));
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%remote, error = %e, "connection ended with an error");
                    }
                });
            }
            _ = &mut shutdown, if closing_at.is_none() => {
                if timing.delay.is_zero() {
                    break;
                }
                shared.draining.store(true, Ordering::Relaxed);
                tracing::info!(delay_ms = timing.delay.as_millis() as u64, "draining: health check fails; still serving until the load balancer has noticed");
                closing_at = Some(Instant::now() + timing.delay);
            }
            _ = tokio::time::sleep_until(closing_at.unwrap_or_else(Instant::now).into()), if closing_at.is_some() => break,
        }
    }
    drop(listener);
    let deadline = Instant::now() + drain_timeout;
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
