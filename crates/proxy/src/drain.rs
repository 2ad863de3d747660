//! Draining on shutdown: the WebSockets (upgraded connections) still open,
//! which outlive their HTTP connection, and how long shutdown waits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

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

    pub(crate) async fn idle(&self) {
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
