//! Serving (the accept loop and its limits are the edge's) and draining
//! on shutdown.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use quorumhub_edge::Edge;
use tokio::net::TcpListener;

use crate::drain::DrainTiming;
use crate::forward::{self, Forwarder};

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
