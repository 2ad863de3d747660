//! Incoming Raft RPCs: decode, hand to openraft, encode its answer.
//!
//! A message that does not decode, or that comes from another cluster, is
//! refused with a gRPC error and logged; it never reaches openraft.

use quorumhub_proto::v1::raft_server;
use quorumhub_proto::v1::RaftMessage;
use quorumhub_proto::RAFT_FORMAT_JSON_V1;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::Raft;

pub struct RaftService {
    raft: Raft,
    cluster_id: String,
}

impl RaftService {
    pub fn new(raft: Raft, cluster_id: String) -> RaftService {
        RaftService { raft, cluster_id }
    }

    fn decode<T: DeserializeOwned>(
        &self,
        what: &str,
        req: Request<RaftMessage>,
    ) -> Result<T, Status> {
        let remote = req.remote_addr();
        let msg = req.into_inner();
        if msg.cluster_id != self.cluster_id {
            tracing::warn!(?remote, from_cluster = %msg.cluster_id, "refused {what} from another cluster");
            return Err(Status::permission_denied(format!(
                "this replica belongs to cluster {:?}, not {:?}",
                self.cluster_id, msg.cluster_id
            )));
        }
        if msg.format != RAFT_FORMAT_JSON_V1 {
            tracing::warn!(?remote, format = %msg.format, "refused {what} in an unknown format");
            return Err(Status::invalid_argument(format!(
                "unknown Raft payload format {:?}; this replica speaks {RAFT_FORMAT_JSON_V1}",
                msg.format
            )));
        }
        serde_json::from_slice(&msg.payload).map_err(|e| {
            tracing::warn!(?remote, error = %e, "refused an undecodable {what}");
            Status::invalid_argument(format!("undecodable {what}: {e}"))
        })
    }
}

fn reply<T: Serialize, E: Serialize>(
    result: &Result<T, E>,
) -> Result<Response<RaftMessage>, Status> {
    let payload = serde_json::to_vec(result).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftMessage {
        format: RAFT_FORMAT_JSON_V1.into(),
        payload,
        cluster_id: String::new(),
    }))
}

#[tonic::async_trait]
impl raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc = self.decode("append-entries", req)?;
        reply(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc = self.decode("vote", req)?;
        reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc = self.decode("install-snapshot", req)?;
        reply(&self.raft.install_snapshot(rpc).await)
    }
}
