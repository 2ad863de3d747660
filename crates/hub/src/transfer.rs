//! Moving leadership to another voter.
//!
//! openraft 0.9 has no leader transfer. The closest it allows: the leader
//! stops proposing (the transfer gate) and stops heartbeating; once the
//! followers' leader lease (election-timeout-max) has run out, the target —
//! already holding every entry — campaigns. Meanwhile the leader and the
//! target grant no other candidate's pre-vote (`Election::hand_off`), so in
//! a cluster of up to four voters no rival can gather a majority before the
//! target wins; with five or more the race is narrowed, not removed.
//! Writes wait at the gate meanwhile, then go to the new leader. However
//! the transfer ends, even cancelled (a hubctl that hangs up), heartbeats
//! come back on and the hand-off ends (`Resume`).

//!
//! No transport here: the gRPC service turns a [`TransferError`] into a
//! status, and shutdown logs it.

use std::time::{Duration, Instant};

use quorumhub_proto::v1::CampaignRequest;
use quorumhub_raft::{Member as RaftMember, NodeId};

use crate::hub::{Hub, HubError};

/// Where leadership went.
#[derive(Debug)]
pub(crate) struct Transferred {
    pub new_leader: NodeId,
    pub term: u64,
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum TransferError {
    #[error("there is no other voter to transfer leadership to")]
    NoOtherVoter,
    #[error("node {0} is not a voter of this cluster")]
    NotAVoter(NodeId),
    #[error("node {0} has no address in the membership")]
    NoAddress(NodeId),
    #[error("node {0} did not catch up within 3 s; try again")]
    NotCaughtUp(NodeId),
    #[error("leadership did not move; this replica still leads. Try again")]
    DidNotMove,
    #[error(transparent)]
    Hub(#[from] HubError),
}

/// Move leadership from this replica (the leader) to voter `target`, or to
/// the most caught-up other voter when `target` is 0.
pub(crate) async fn transfer(hub: &Hub, target: NodeId) -> Result<Transferred, TransferError> {
    let started = Instant::now();
    let metrics = hub.raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership().clone();
    let others: Vec<NodeId> = membership.voter_ids().filter(|id| *id != hub.id).collect();
    let matched = |m: &openraft::RaftMetrics<NodeId, RaftMember>, id: NodeId| {
        m.replication
            .as_ref()
            .and_then(|r| r.get(&id).cloned().flatten())
            .map(|l| l.index)
    };
    let target = match target {
        0 => others
            .iter()
            .copied()
            .max_by_key(|id| matched(&metrics, *id))
            .ok_or(TransferError::NoOtherVoter)?,
        t if t == hub.id => {
            return Ok(Transferred {
                new_leader: hub.id,
                term: metrics.current_term,
                elapsed: Duration::ZERO,
            })
        }
        t if others.contains(&t) => t,
        t => return Err(TransferError::NotAVoter(t)),
    };
    let node = membership
        .get_node(&target)
        .cloned()
        .ok_or(TransferError::NoAddress(target))?;
    let mut client = hub.admin(&node.grpc_addr)?;

    let gate = hub.transfer_gate.write().await;
    let caught_up = wait_metrics(hub, Duration::from_secs(3), |m| {
        matched(m, target).is_some() && matched(m, target) >= m.last_log_index
    })
    .await;
    if !caught_up {
        return Err(TransferError::NotCaughtUp(target));
    }
    tracing::info!(target, "transferring leadership: pausing heartbeats");
    let resume = Resume(hub);
    let limit = Duration::from_millis(hub.config.raft.election_timeout_max_ms * 2 + 1000);
    // Once the followers' leases run out, any of them may ask for
    // pre-votes; only the target is granted while the hand-off lasts (the
    // target, asked to campaign, refuses its rivals too), so the election
    // that follows is the target's.
    hub.election.hand_off(
        target,
        limit + Duration::from_millis(hub.config.raft.election_timeout_max_ms),
    );
    hub.raft.runtime_config().heartbeat(false);
    tokio::time::sleep(Duration::from_millis(
        hub.config.raft.election_timeout_max_ms + 20,
    ))
    .await;
    let campaign = client
        .campaign(CampaignRequest {
            term: metrics.current_term,
        })
        .await;
    let moved = wait_metrics(hub, limit, |m| {
        m.current_leader.is_some_and(|l| l != hub.id)
    })
    .await;
    drop(resume);
    drop(gate);

    let after = hub.raft.metrics().borrow().clone();
    if let Err(e) = campaign {
        tracing::warn!(target, error = %e.message(), "campaign request failed");
    }
    if !moved {
        return Err(TransferError::DidNotMove);
    }
    let new_leader = after.current_leader.unwrap_or(0);
    tracing::info!(
        new_leader,
        term = after.current_term,
        "leadership transferred"
    );
    Ok(Transferred {
        new_leader,
        term: after.current_term,
        elapsed: started.elapsed(),
    })
}

/// Turns heartbeats back on and ends the hand-off when dropped: at the end
/// of a transfer, and also when the transfer's future is dropped half-way
/// (the gRPC call was cancelled), which otherwise left this replica
/// without heartbeats for good.
struct Resume<'a>(&'a Hub);

impl Drop for Resume<'_> {
    fn drop(&mut self) {
        self.0.raft.runtime_config().heartbeat(true);
        self.0.election.hand_off_done();
    }
}

/// Wait up to `limit` for `pred` to hold on this replica's Raft metrics.
async fn wait_metrics(
    hub: &Hub,
    limit: Duration,
    pred: impl Fn(&openraft::RaftMetrics<NodeId, RaftMember>) -> bool,
) -> bool {
    let mut rx = hub.raft.metrics();
    let deadline = Instant::now() + limit;
    loop {
        if pred(&rx.borrow()) {
            return true;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() || tokio::time::timeout(remaining, rx.changed()).await.is_err() {
            return pred(&rx.borrow());
        }
    }
}
