//! Moving leadership to another voter.
//!
//! openraft 0.9 has no leader transfer. The closest it allows: the leader
//! stops proposing (the transfer gate) and stops heartbeating; once the
//! followers' leader lease (election-timeout-max) has run out, the target —
//! already holding every entry — campaigns, and wins before any other
//! follower's own election timer (lease + election-timeout-min) fires.
//! Writes wait at the gate meanwhile, then go to the new leader.

use std::time::{Duration, Instant};

use quorumhub_proto::v1::{CampaignRequest, TransferLeaderReply};
use quorumhub_raft::NodeId;
use tonic::{Response, Status};

use crate::admin::{status, wait_metrics};
use crate::hub::Hub;

pub(crate) async fn transfer(
    hub: &Hub,
    target: NodeId,
) -> Result<Response<TransferLeaderReply>, Status> {
    let started = Instant::now();
    let metrics = hub.raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership().clone();
    let others: Vec<NodeId> = membership.voter_ids().filter(|id| *id != hub.id).collect();
    let matched = |m: &openraft::RaftMetrics<NodeId, quorumhub_raft::Member>, id: NodeId| {
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
            .ok_or_else(|| {
                Status::failed_precondition("there is no other voter to transfer leadership to")
            })?,
        t if t == hub.id => {
            return Ok(Response::new(TransferLeaderReply {
                new_leader: hub.id,
                term: metrics.current_term,
                elapsed_ms: 0,
            }))
        }
        t if others.contains(&t) => t,
        t => {
            return Err(Status::invalid_argument(format!(
                "node {t} is not a voter of this cluster"
            )))
        }
    };
    let node = membership
        .get_node(&target)
        .cloned()
        .ok_or_else(|| Status::internal("target has no address"))?;
    let mut client = hub.admin(&node.grpc_addr).map_err(status)?;

    let gate = hub.transfer_gate.write().await;
    let caught_up = wait_metrics(hub, Duration::from_secs(3), |m| {
        matched(m, target).is_some() && matched(m, target) >= m.last_log_index
    })
    .await;
    if !caught_up {
        return Err(Status::unavailable(format!(
            "node {target} did not catch up within 3 s; try again"
        )));
    }
    tracing::info!(target, "transferring leadership: pausing heartbeats");
    hub.raft.runtime_config().heartbeat(false);
    tokio::time::sleep(Duration::from_millis(
        hub.config.election_timeout_max_ms + 20,
    ))
    .await;
    let campaign = client
        .campaign(CampaignRequest {
            term: metrics.current_term,
        })
        .await;
    let limit = Duration::from_millis(hub.config.election_timeout_max_ms * 2 + 1000);
    let moved = wait_metrics(hub, limit, |m| {
        m.current_leader.is_some_and(|l| l != hub.id)
    })
    .await;
    hub.raft.runtime_config().heartbeat(true);
    drop(gate);

    let after = hub.raft.metrics().borrow().clone();
    if let Err(e) = campaign {
        tracing::warn!(target, error = %e.message(), "campaign request failed");
    }
    if !moved {
        return Err(Status::unavailable(
            "leadership did not move; this replica still leads. Try again",
        ));
    }
    let new_leader = after.current_leader.unwrap_or(0);
    tracing::info!(
        new_leader,
        term = after.current_term,
        "leadership transferred"
    );
    Ok(Response::new(TransferLeaderReply {
        new_leader,
        term: after.current_term,
        elapsed_ms: started.elapsed().as_millis() as u64,
    }))
}
