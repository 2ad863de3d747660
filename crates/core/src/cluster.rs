//! [`Cluster`]: one replica's handle on the replicated state, as the use
//! cases and the front ends see it.
//!
//! - [`Cluster::propose`]: commit a command (through the leader) and
//!   answer its outcome once it is applied on this replica
//!   (read-your-writes). A write is acknowledged only once durable on a
//!   quorum.
//! - [`Cluster::linearize`]: the read barrier. After it returns, this
//!   replica has applied every write acknowledged before the call,
//!   anywhere in the cluster.
//! - [`read`](trait.Cluster.html#method.read): the applied state, without a
//!   barrier; [`Cluster::subscribe`]: its revision, to wait for a change.
//!
//! Implementations: the Raft-backed replica (`quorumhub-hub`'s `Hub`) and
//! [`crate::memory::MemoryCluster`].

use quorumhub_state::{Command, HubState, Response};
use serde::Serialize;
use tokio::sync::watch;

use crate::error::HubError;

#[async_trait::async_trait]
pub trait Cluster: Send + Sync + 'static {
    /// Commit `command` and return its outcome once applied here. Writes of
    /// an HTTP request pass [`crate::admission`] first.
    async fn propose(&self, command: Command) -> Result<Response, HubError>;

    /// Wait until this replica has applied every write acknowledged before
    /// this call, anywhere in the cluster.
    async fn linearize(&self) -> Result<(), HubError>;

    /// Run `f` once over the applied state (no barrier). Use
    /// [`read`](trait.Cluster.html#method.read), which returns a value.
    fn read_with(&self, f: &mut dyn FnMut(&HubState));

    /// The revision (last applied index), updated after each apply.
    fn subscribe(&self) -> watch::Receiver<u64>;

    /// This replica's id, the term it is in and the leader it knows.
    fn node(&self) -> NodeView;

    /// Every member as it reports itself, and the leader's view of its lag
    /// (the cluster page). May ask the other members, each for at most a
    /// second.
    async fn members(&self) -> MembersView;

    /// Shutdown has begun: front ends close their connections after each
    /// answer.
    fn draining(&self) -> bool;
}

fn read<T>(c: &(impl Cluster + ?Sized), f: impl FnOnce(&HubState) -> T) -> T {
    let mut f = Some(f);
    let mut out = None;
    c.read_with(&mut |s| {
        if let Some(f) = f.take() {
            out = Some(f(s));
        }
    });
    out.expect("Cluster::read_with must call its function exactly once")
}

/// A shared cluster is a cluster.
#[async_trait::async_trait]
impl<C: Cluster + ?Sized> Cluster for std::sync::Arc<C> {
    async fn propose(&self, command: Command) -> Result<Response, HubError> {
        (**self).propose(command).await
    }
    async fn linearize(&self) -> Result<(), HubError> {
        (**self).linearize().await
    }
    fn read_with(&self, f: &mut dyn FnMut(&HubState)) {
        (**self).read_with(f)
    }
    fn subscribe(&self) -> watch::Receiver<u64> {
        (**self).subscribe()
    }
    fn node(&self) -> NodeView {
        (**self).node()
    }
    async fn members(&self) -> MembersView {
        (**self).members().await
    }
    fn draining(&self) -> bool {
        (**self).draining()
    }
}

impl dyn Cluster {
    /// Read the applied state (no barrier: see [`Cluster::linearize`]).
    pub fn read<T>(&self, f: impl FnOnce(&HubState) -> T) -> T {
        read(self, f)
    }
}

/// One replica's view of who leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NodeView {
    pub id: u64,
    pub term: u64,
    pub leader: Option<u64>,
    pub applied: Option<u64>,
}

/// The cluster as the cluster page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MembersView {
    pub leader: Option<u64>,
    pub term: u64,
    pub last_log: Option<u64>,
    pub committed: Option<u64>,
    pub cluster_version: u32,
    pub served_by: u64,
    pub members: Vec<MemberView>,
}

/// One member: its addresses, and what it reports (`None`: unreachable).
#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    pub id: u64,
    pub grpc: String,
    pub http: String,
    pub voter: bool,
    pub reachable: bool,
    pub role: String,
    pub term: Option<u64>,
    pub applied: Option<u64>,
    pub format: Option<u32>,
    pub version: Option<String>,
    pub matched: Option<u64>,
    pub lag: Option<u64>,
}

/// The cluster-version gate: a command newer than the log format every
/// member has agreed on is refused, so no replica is ever sent an entry
/// its build cannot decode. The cluster version only rises and is read
/// from applied (hence committed) state, so passing here is never wrong; a
/// replica that has not yet applied a raise refuses for a moment.
pub fn check_enabled(state: &HubState, command: &Command) -> Result<(), HubError> {
    let needed = command.min_version();
    let current = state.cluster_version;
    if needed <= current {
        return Ok(());
    }
    Err(HubError::NotYetEnabled(format!(
        "{} needs cluster version {needed}, but the cluster is at {current}: some replica \
         still runs an older release. Finish the rolling upgrade (hubctl status shows each \
         member's log format), then retry",
        command.name()
    )))
}
