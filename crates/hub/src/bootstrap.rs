//! Forming the cluster on first start, and the bootstrap admin user.
//!
//! Only the lowest-numbered initial member initialises, and only when its
//! own store is pristine and no other initial member reports an existing
//! cluster: a replica whose data dir was wiped must rejoin, not found a new
//! cluster.

use std::sync::Arc;
use std::time::Duration;

use quorumhub_proto::v1::NodeStatusRequest;
use quorumhub_state::Command;
use tokio::sync::watch;

use crate::hub::Hub;

pub(crate) async fn run(hub: Arc<Hub>, mut stop: watch::Receiver<bool>) {
    tokio::select! {
        _ = form_cluster(&hub) => {}
        _ = stop.wait_for(|s| *s) => return,
    }
    tokio::select! {
        _ = ensure_admin_user(&hub) => {}
        _ = stop.wait_for(|s| *s) => {}
    }
}

async fn form_cluster(hub: &Hub) {
    let peers = match hub.config.peer_map() {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "bad --peer");
            return;
        }
    };
    loop {
        if hub.raft.is_initialized().await.unwrap_or(true) {
            return;
        }
        let lowest = peers.keys().next().copied();
        if hub.config.join || lowest != Some(hub.id) {
            tracing::info!(
                "waiting to be replicated to by the cluster (`hubctl members add {}` adds a new replica)",
                hub.id
            );
            let _ = hub
                .raft
                .wait(None)
                .metrics(
                    |m| m.membership_config.membership().voter_ids().count() > 0,
                    "joined",
                )
                .await;
            return;
        }
        let mut answered_pristine = 1; // this replica
        let mut existing = false;
        for (id, member) in peers.iter().filter(|(id, _)| **id != hub.id) {
            let Ok(mut client) = hub.admin(&member.grpc_addr) else {
                continue;
            };
            let mut req = tonic::Request::new(NodeStatusRequest {});
            req.set_timeout(Duration::from_millis(500));
            match client.node_status(req).await {
                Ok(s) if !s.get_ref().members.is_empty() => {
                    tracing::info!(
                        peer = id,
                        "peer already belongs to a cluster; waiting to be replicated to"
                    );
                    existing = true;
                }
                Ok(_) => answered_pristine += 1,
                Err(e) => {
                    tracing::debug!(peer = id, error = %e.message(), "peer not answering yet")
                }
            }
        }
        if !existing && answered_pristine * 2 > peers.len() {
            match hub.raft.initialize(peers.clone()).await {
                Ok(()) => tracing::info!(members = peers.len(), "initialised a new cluster"),
                Err(e) => tracing::info!(error = %e, "not initialising"),
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// With a bootstrap admin token configured, make sure its user exists.
async fn ensure_admin_user(hub: &Hub) {
    if hub.config.admin_token.is_none() {
        return;
    }
    let name = hub.config.admin_user.clone();
    loop {
        if hub.linearize().await.is_ok() {
            if hub.read(|s| s.user(&name).is_some()) {
                return;
            }
            if hub.is_leader() {
                match hub
                    .propose(Command::CreateUser {
                        name: name.clone(),
                        admin: true,
                    })
                    .await
                {
                    Ok(_) => {
                        tracing::info!(user = %name, "created the bootstrap admin user");
                        return;
                    }
                    Err(e) => tracing::debug!(error = %e, "admin user not created yet"),
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
