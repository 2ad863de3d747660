//! Start-up checks against the other replicas, run before this replica
//! opens (or creates) its data dir: a replica given the wrong cluster
//! secret, a `--peer` list that names the wrong node at an address, or the
//! peers of another cluster refuses to start, says which, and has touched
//! nothing. Peers that do not answer (not started yet, down) are skipped:
//! there is nothing to compare with.

use std::time::Duration;

use anyhow::bail;
use futures::future::join_all;
use quorumhub_proto::v1::admin_client::AdminClient;
use quorumhub_proto::v1::{NodeStatusReply, NodeStatusRequest};
use quorumhub_raft::auth::ClientAuth;
use quorumhub_raft::NodeId;

use crate::config::HubConfig;

const ASK_TIMEOUT: Duration = Duration::from_millis(1000);

async fn ask(addr: &str, auth: &ClientAuth) -> Result<NodeStatusReply, tonic::Status> {
    let channel = quorumhub_raft::network::channel(addr, ASK_TIMEOUT)
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut client = AdminClient::with_interceptor(channel, auth.clone());
    let mut req = tonic::Request::new(NodeStatusRequest {});
    req.set_timeout(ASK_TIMEOUT);
    Ok(client.node_status(req).await?.into_inner())
}

/// What one peer's answer says about this replica's configuration.
pub(crate) fn judge(
    config: &HubConfig,
    id: NodeId,
    addr: &str,
    answer: Result<NodeStatusReply, tonic::Status>,
) -> anyhow::Result<()> {
    let s = match answer {
        Ok(s) => s,
        Err(e) if e.code() == tonic::Code::Unauthenticated => bail!(
            "replica {id} at {addr} refuses this replica's cluster secret ({}). Start this \
             replica with the cluster's secret (--cluster-secret-file, or --cluster-secret / QUORUMHUB_CLUSTER_SECRET)",
            e.message()
        ),
        Err(_) => return Ok(()),
    };
    if s.cluster_id != config.cluster_id {
        bail!(
            "the replica at {addr} belongs to cluster {:?}, not {:?}: check --cluster-id and --peer",
            s.cluster_id,
            config.cluster_id
        );
    }
    if s.id != id {
        bail!(
            "--peer says node {id} is at {addr}, but the replica there is node {}: check --peer",
            s.id
        );
    }
    Ok(())
}

/// Ask every other initial member at once; the first misconfiguration
/// found is the error.
pub(crate) async fn check_peers(config: &HubConfig, auth: &ClientAuth) -> anyhow::Result<()> {
    let peers = config.peer_map()?;
    let asks = peers
        .iter()
        .filter(|(id, _)| **id != config.node_id)
        .map(|(id, m)| async move { (*id, m.grpc_addr.clone(), ask(&m.grpc_addr, auth).await) });
    for (id, addr, answer) in join_all(asks).await {
        judge(config, id, &addr, answer)?;
    }
    Ok(())
}
