//! The cluster-version gate's other half: the leader raises the cluster
//! version once every member runs a build that understands the new log
//! format.
//!
//! A command introduced in log format N is refused
//! ([`Hub::check_enabled`](crate::hub::Hub::check_enabled)) until the
//! replicated cluster version is at least N. Every second, and as soon as it
//! is elected, the leader
//! asks each member (voters and learners: learners apply the log too) which
//! log format its build understands; when all of them answer and the lowest
//! answer is above the cluster version, it proposes `SetClusterVersion`. A
//! member that does not answer blocks the raise: its build is unknown.
//! Raising is one-way, so a cluster is never downgraded under a replica.

use std::sync::Arc;
use std::time::Duration;

use quorumhub_proto::v1::NodeStatusRequest;
use quorumhub_state::{Command, LOG_FORMAT_VERSION};
use tokio::sync::watch;

use crate::hub::Hub;

/// How often the leader checks the members' builds.
const CHECK_EVERY: Duration = Duration::from_secs(1);
const ASK_TIMEOUT: Duration = Duration::from_millis(800);

pub(crate) async fn run(hub: Arc<Hub>, stop: watch::Receiver<bool>) {
    let mut turns = crate::leader_turns::LeaderTurns::new(&hub, CHECK_EVERY, stop);
    while turns.next(&hub).await {
        let current = hub.sm.read(|d| d.state.cluster_version);
        if current >= LOG_FORMAT_VERSION {
            continue;
        }
        let Some(agreed) = lowest_member_format(&hub).await else {
            continue;
        };
        if agreed <= current {
            continue;
        }
        tracing::info!(
            from = current,
            to = agreed,
            "every member understands a newer log format: raising the cluster version"
        );
        match hub
            .propose(Command::SetClusterVersion { version: agreed })
            .await
        {
            Ok(r) => tracing::info!(response = ?r, "cluster version raised"),
            Err(e) => tracing::warn!(error = %e, "could not raise the cluster version; will retry"),
        }
    }
}

/// The lowest log format any member's build understands, or `None` if some
/// member did not say.
pub(crate) async fn lowest_member_format(hub: &Hub) -> Option<u32> {
    let members: Vec<(u64, String)> = {
        let m = hub.raft.metrics().borrow().clone();
        m.membership_config
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.grpc_addr.clone()))
            .collect()
    };
    let mut lowest = LOG_FORMAT_VERSION;
    for (id, addr) in members {
        if id == hub.id {
            continue;
        }
        let format = member_format(hub, &addr).await;
        match format {
            Some(f) => lowest = lowest.min(f),
            None => {
                tracing::debug!(
                    member = id,
                    "member did not say its log format; not raising the cluster version"
                );
                return None;
            }
        }
    }
    Some(lowest)
}

/// The log format the build at `grpc_addr` understands.
pub(crate) async fn member_format(hub: &Hub, grpc_addr: &str) -> Option<u32> {
    let mut client = hub.admin(grpc_addr).ok()?;
    let mut req = tonic::Request::new(NodeStatusRequest {});
    req.set_timeout(ASK_TIMEOUT);
    let reply = client.node_status(req).await.ok()?.into_inner();
    // A build from before the gate reports 0 (the field's default): it
    // understands format 1.
    Some(reply.log_format_version.max(1))
}
