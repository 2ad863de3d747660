//! The Raft-backed replica as a [`Cluster`]: what the use cases and the
//! HTTP front end see of it. Writes go through [`Hub::propose`] (admitted,
//! then committed through the leader), reads through [`Hub::linearize`].

use std::collections::BTreeSet;
use std::time::Duration;

use quorumhub_core::{Cluster, HubError, MemberView, MembersView, NodeView};
use quorumhub_proto::v1::{ClusterStatusRequest, NodeStatusRequest};
use quorumhub_state::{Command, HubState, Response};
use tokio::sync::watch;

use crate::hub::Hub;

/// How long the cluster page waits for each member's answer.
const ASK_MEMBER: Duration = Duration::from_millis(800);

#[async_trait::async_trait]
impl Cluster for Hub {
    async fn propose(&self, command: Command) -> Result<Response, HubError> {
        Hub::propose(self, command).await
    }

    async fn linearize(&self) -> Result<(), HubError> {
        Hub::linearize(self).await
    }

    fn read_with(&self, f: &mut dyn FnMut(&HubState)) {
        self.sm.read(|d| f(&d.state))
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.sm.subscribe()
    }

    /// Read under the watch's borrow, not cloned: every HTTP request asks.
    fn node(&self) -> NodeView {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        NodeView {
            id: self.id,
            term: m.current_term,
            leader: m.current_leader,
            applied: m.last_applied.map(|l| l.index),
        }
    }

    async fn members(&self) -> MembersView {
        members(self).await
    }

    fn draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Each member as it reports itself, and the leader's view of its lag.
async fn members(hub: &Hub) -> MembersView {
    let m = hub.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let addrs: Vec<(u64, String, String)> = membership
        .nodes()
        .map(|(id, n)| (*id, n.grpc_addr.clone(), n.http_addr.clone()))
        .collect();
    let leader_addr = m
        .current_leader
        .and_then(|l| addrs.iter().find(|(id, _, _)| *id == l))
        .map(|(_, g, _)| g.clone());
    let progress = match leader_addr.map(|a| hub.admin(&a)) {
        Some(Ok(mut c)) => {
            tokio::time::timeout(ASK_MEMBER, c.cluster_status(ClusterStatusRequest {}))
                .await
                .ok()
                .and_then(|r| r.ok())
                .map(|r| r.into_inner())
        }
        _ => None,
    };
    let mut members = Vec::new();
    for (id, grpc, http) in addrs {
        let status = match hub.admin(&grpc) {
            Ok(mut c) => tokio::time::timeout(ASK_MEMBER, c.node_status(NodeStatusRequest {}))
                .await
                .ok()
                .and_then(|r| r.ok())
                .map(|r| r.into_inner()),
            Err(_) => None,
        };
        let p = progress
            .as_ref()
            .and_then(|p| p.progress.iter().find(|x| x.id == id).cloned());
        members.push(MemberView {
            voter: voters.contains(&id),
            reachable: status.is_some(),
            role: status
                .as_ref()
                .map(|s| s.role.clone())
                .unwrap_or_else(|| "down".into()),
            term: status.as_ref().map(|s| s.term),
            applied: status.as_ref().map(|s| s.applied_index),
            format: status.as_ref().map(|s| s.log_format_version),
            version: status.as_ref().map(|s| s.version.clone()),
            matched: p
                .as_ref()
                .filter(|p| p.has_matched)
                .map(|p| p.matched_index),
            lag: p.as_ref().map(|p| p.lag),
            id,
            grpc,
            http,
        });
    }
    MembersView {
        leader: m.current_leader,
        term: m.current_term,
        last_log: progress.as_ref().map(|p| p.last_log_index),
        committed: progress.as_ref().map(|p| p.committed_index),
        cluster_version: hub.read(|s| s.cluster_version),
        served_by: hub.id,
        members,
    }
}
