//! [`MemoryCluster`]: a [`Cluster`] of one member, in memory, for tests of
//! the use cases and the front ends. It runs the same
//! [`HubState::apply`] as every replica, behind the same admission control
//! and cluster-version gate; what it leaves out is what only a cluster
//! shows (replication, elections, forwarding, durability), which the
//! process-level tests cover.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use quorumhub_state::{Command, HubState, Request, Response, LOG_FORMAT_VERSION};
use tokio::sync::watch;

use crate::admission::Admission;
use crate::cluster::{check_enabled, Cluster, MemberView, MembersView, NodeView};
use crate::error::HubError;
use crate::limits::Limits;
use crate::time::now_ms;

/// How long a write may wait for admission, as `--write-timeout-ms`'s
/// default.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct MemoryCluster {
    id: u64,
    state: RwLock<HubState>,
    /// Serializes applies, as a log does: index order is apply order.
    log: Mutex<u64>,
    revision: watch::Sender<u64>,
    client_id: String,
    serial: AtomicU64,
    admission: Admission,
    draining: AtomicBool,
}

impl MemoryCluster {
    /// An empty cluster whose only member is `id`, admitting writes under
    /// `limits`. Its one member runs this build, so the cluster version is
    /// raised to this build's log format at once, as a replica's version
    /// task raises it once every member runs the build.
    pub fn new(id: u64, limits: &Limits) -> MemoryCluster {
        let cluster = MemoryCluster {
            id,
            state: RwLock::new(HubState::default()),
            log: Mutex::new(0),
            revision: watch::channel(0).0,
            client_id: format!("memory-{}", uuid::Uuid::new_v4().simple()),
            serial: AtomicU64::new(0),
            admission: Admission::new(limits),
            draining: AtomicBool::new(false),
        };
        cluster.apply(&cluster.request(Command::SetClusterVersion {
            version: LOG_FORMAT_VERSION,
        }));
        cluster
    }

    fn request(&self, command: Command) -> Request {
        Request {
            client_id: self.client_id.clone(),
            serial: self.serial.fetch_add(1, Ordering::Relaxed) + 1,
            at: now_ms(),
            command,
        }
    }

    /// Append and apply one request, as a log entry at the next index.
    fn apply(&self, req: &Request) -> Response {
        let mut last = self.log.lock().unwrap_or_else(|p| p.into_inner());
        *last += 1;
        let index = *last;
        let response = {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            state.apply(index, req).response
        };
        self.revision.send_replace(index);
        response
    }

    /// Begin shutting down (front ends then close each connection).
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}

#[async_trait::async_trait]
impl Cluster for MemoryCluster {
    async fn propose(&self, command: Command) -> Result<Response, HubError> {
        let _ticket = self.admission.admit(Instant::now() + WRITE_TIMEOUT).await?;
        {
            let state = self.state.read().unwrap_or_else(|p| p.into_inner());
            check_enabled(&state, &command)?;
        }
        Ok(self.apply(&self.request(command)))
    }

    async fn linearize(&self) -> Result<(), HubError> {
        // One member, applying as it appends: everything acknowledged is
        // applied.
        Ok(())
    }

    fn read_with(&self, f: &mut dyn FnMut(&HubState)) {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        f(&state)
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }

    fn node(&self) -> NodeView {
        NodeView {
            id: self.id,
            term: 1,
            leader: Some(self.id),
            applied: Some(*self.revision.borrow()),
        }
    }

    async fn members(&self) -> MembersView {
        let applied = *self.revision.borrow();
        let cluster_version = self
            .state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .cluster_version;
        MembersView {
            leader: Some(self.id),
            term: 1,
            last_log: Some(applied),
            committed: Some(applied),
            cluster_version,
            served_by: self.id,
            members: vec![MemberView {
                id: self.id,
                grpc: "memory".into(),
                http: "memory".into(),
                voter: true,
                reachable: true,
                role: "leader".into(),
                term: Some(1),
                applied: Some(applied),
                format: Some(cluster_version),
                version: Some(env!("CARGO_PKG_VERSION").into()),
                matched: Some(applied),
                lag: Some(0),
            }],
        }
    }

    fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn applies_in_order_and_answers_what_the_state_answers() {
        let c = MemoryCluster::new(1, &Limits::default());
        let cluster: &dyn Cluster = &c;
        let mut rx = cluster.subscribe();
        let created = cluster
            .propose(Command::CreateUser {
                name: "ada".into(),
                admin: false,
            })
            .await
            .expect("admitted");
        assert!(matches!(created, Response::User { .. }), "{created:?}");
        let again = cluster
            .propose(Command::CreateUser {
                name: "ada".into(),
                admin: false,
            })
            .await
            .expect("admitted");
        assert!(matches!(again, Response::Rejected { .. }), "{again:?}");
        assert!(rx.has_changed().unwrap_or(false));
        // Index 1 raised the cluster version.
        assert_eq!(*rx.borrow_and_update(), 3);
        assert!(cluster.read(|s| s.user("ada").is_some()));
        assert_eq!(cluster.read(|s| s.cluster_version), LOG_FORMAT_VERSION);
        assert_eq!(cluster.node().applied, Some(3));
    }
}
