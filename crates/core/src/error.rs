//! [`HubError`]: why the cluster could not take a write or a read.

use std::time::Duration;

/// Seconds a client shed by admission control is asked to wait
/// (`Retry-After`).
pub const RETRY_AFTER_S: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("no leader could commit the write within {0:?}; the cluster may have lost its quorum (check `hubctl status`)")]
    WriteUnavailable(Duration),
    #[error("no leader confirmed the read within {0:?}; the cluster may have lost its quorum (check `hubctl status`)")]
    ReadUnavailable(Duration),
    #[error("this replica is shutting down")]
    ShuttingDown,
    #[error("{0}")]
    NotYetEnabled(String),
    #[error("this replica does not lead (any more)")]
    NotLeader,
    #[error("internal error: {0}")]
    Internal(String),
    /// Admission control: this user already has its share of this
    /// replica's writes in flight (429 + Retry-After).
    #[error("{user} already has {limit} writes in flight at this replica (--max-user-writes-in-flight); retry in a moment")]
    UserBusy { user: String, limit: usize },
    /// Admission control: every write slot is taken and the queue is full
    /// (or the wait for a slot outlasted the write timeout): 503 +
    /// Retry-After.
    #[error("this replica is overloaded: {in_flight} writes in flight and {waiting} waiting (--max-writes-in-flight, --max-write-queue); retry in a moment")]
    Overloaded { in_flight: usize, waiting: usize },
}

impl HubError {
    /// Seconds a client should wait before retrying, for the answers that
    /// shed load.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            HubError::UserBusy { .. } | HubError::Overloaded { .. } => Some(RETRY_AFTER_S),
            _ => None,
        }
    }
}
