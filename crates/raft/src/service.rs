//! Incoming Raft RPCs: decode, hand to openraft, encode its answer.
//!
//! A message that does not decode, or that comes from another cluster, is
//! refused with a gRPC error and logged; it never reaches openraft.

use std::sync::Arc;

use openraft::raft::AppendEntriesResponse;
use quorumhub_proto::v1::raft_server;
use quorumhub_proto::v1::{PreVoteReply, PreVoteRequest, RaftMessage};
use quorumhub_proto::RAFT_FORMAT_JSON_V1;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::election::Election;
use crate::Raft;

pub struct RaftService {
    raft: Raft,
    cluster_id: String,
    election: Arc<Election>,
}

impl RaftService {
    pub fn new(raft: Raft, cluster_id: String, election: Arc<Election>) -> RaftService {
        RaftService {
            raft,
            cluster_id,
            election,
        }
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
        let rpc: openraft::raft::AppendEntriesRequest<crate::TypeConfig> =
            self.decode("append-entries", req)?;
        // A committed vote not older than this replica's own: its leader (or
        // a newer one) is talking now. Counted at arrival, because taking
        // the entries waits for the log's flush, which on a loaded disk can
        // outlast the lease: the replica would then ask for pre-votes while
        // its leader is busy feeding it.
        let current = {
            let m = self.raft.metrics();
            let m = m.borrow();
            rpc.vote.is_committed() && rpc.vote >= m.vote
        };
        if current {
            self.election.heard_from_leader();
        }
        let result = self.raft.append_entries(rpc).await;
        // Anything but "your vote is stale" means openraft accepted the
        // sender as its leader.
        if matches!(&result, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
            self.election.heard_from_leader();
        }
        reply(&result)
    }

    async fn vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc = self.decode("vote", req)?;
        let result = self.raft.vote(rpc).await;
        if matches!(&result, Ok(r) if r.vote_granted) {
            self.election.heard_from_leader();
        }
        reply(&result)
    }

    async fn pre_vote(
        &self,
        req: Request<PreVoteRequest>,
    ) -> Result<Response<PreVoteReply>, Status> {
        Ok(Response::new(
            self.election.answer(&self.raft, req.get_ref()).await,
        ))
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc: openraft::raft::InstallSnapshotRequest<crate::TypeConfig> =
            self.decode("install-snapshot", req)?;
        let sent = rpc.vote;
        let result = self.raft.install_snapshot(rpc).await;
        if matches!(&result, Ok(r) if r.vote == sent) {
            self.election.heard_from_leader();
        }
        reply(&result)
    }
}
