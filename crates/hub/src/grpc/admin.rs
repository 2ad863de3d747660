//! The Admin gRPC service: what hubctl calls, and what replicas call on
//! each other (forwarded writes, read-index, leader transfer).

use std::collections::BTreeSet;
use std::sync::Arc;

use openraft::{ChangeMembers, ServerState};
use quorumhub_proto::v1::admin_server;
use quorumhub_proto::v1::*;
use quorumhub_raft::{Member as RaftMember, NodeId};
use tonic::{Request, Response, Status};

use super::status::{membership_status, op_status, status, transfer_status};
use crate::hub::{Hub, WriteAttempt};
use quorumhub_core::time::iso;

pub struct AdminService {
    hub: Arc<Hub>,
}

impl AdminService {
    pub fn new(hub: Arc<Hub>) -> AdminService {
        AdminService { hub }
    }

    /// The leader's admin client, or `None` when this replica leads. A call
    /// is forwarded at most once, so two replicas with stale views of who
    /// leads cannot bounce it between them.
    fn leader_client<T>(&self, req: &Request<T>) -> Result<Option<crate::hub::Admin>, Status> {
        match self.hub.leader() {
            Some((id, _)) if id == self.hub.id => Ok(None),
            _ if req.metadata().contains_key(FORWARDED) => Err(Status::unavailable(
                "leadership is changing; retry in a moment",
            )),
            Some((_, Some(member))) => Ok(Some(self.hub.admin(&member.grpc_addr).map_err(status)?)),
            _ => Err(Status::unavailable(
                "no leader is known right now; retry in a moment",
            )),
        }
    }

    fn members(&self) -> Vec<Member> {
        let m = self.hub.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, n)| Member {
                id: *id,
                grpc_addr: n.grpc_addr.clone(),
                http_addr: n.http_addr.clone(),
                voter: voters.contains(id),
            })
            .collect()
    }
}

/// Marks a call this replica forwarded to the leader.
const FORWARDED: &str = "x-quorumhub-forwarded";

/// `req` as this replica forwards it to the leader: marked, and with the
/// caller's own credential (not this replica's), so that the leader checks
/// the caller's role: an admin-only call stays admin-only when forwarded.
fn forwarded<T>(req: Request<T>) -> Request<T> {
    let credential = req.metadata().get(quorumhub_proto::AUTH_METADATA).cloned();
    let mut r = Request::new(req.into_inner());
    r.metadata_mut()
        .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
    if let Some(c) = credential {
        r.metadata_mut().insert(quorumhub_proto::AUTH_METADATA, c);
    }
    r
}

fn user_info(u: &quorumhub_state::User) -> UserInfo {
    let default = u.servers.get("");
    UserInfo {
        name: u.name.clone(),
        admin: u.admin,
        created: iso(u.created),
        server: default
            .filter(|s| s.ready())
            .map(|_| format!("/user/{}/", u.name))
            .unwrap_or_default(),
        pending: default
            .and_then(|s| s.pending())
            .unwrap_or_default()
            .to_string(),
    }
}

#[tonic::async_trait]
impl admin_server::Admin for AdminService {
    async fn node_status(
        &self,
        _: Request<NodeStatusRequest>,
    ) -> Result<Response<NodeStatusReply>, Status> {
        let m = self.hub.raft.metrics().borrow().clone();
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        Ok(Response::new(NodeStatusReply {
            id: self.hub.id,
            cluster_id: self.hub.cluster_id.clone(),
            role: role.into(),
            term: m.current_term,
            leader_id: m.current_leader.unwrap_or(0),
            has_leader: m.current_leader.is_some(),
            last_log_index: m.last_log_index.unwrap_or(0),
            // openraft 0.9 does not publish the commit index in its metrics;
            // a replica applies what is committed, so applied is the lower bound.
            committed_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            snapshot_index: m.snapshot.map(|l| l.index).unwrap_or(0),
            has_snapshot: m.snapshot.is_some(),
            members: self.members(),
            version: env!("CARGO_PKG_VERSION").into(),
            purged_index: m.purged.map(|l| l.index).unwrap_or(0),
            log_format_version: quorumhub_state::LOG_FORMAT_VERSION,
            cluster_version: self.hub.sm.read(|d| d.state.cluster_version),
        }))
    }

    async fn cluster_status(
        &self,
        req: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusReply>, Status> {
        if let Some(mut leader) = self.leader_client(&req)? {
            return leader.cluster_status(forwarded(req)).await;
        }
        let m = self.hub.raft.metrics().borrow().clone();
        let last = m.last_log_index.unwrap_or(0);
        let progress = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .map(|(id, matched)| MemberProgress {
                        id: *id,
                        matched_index: matched.map(|l| l.index).unwrap_or(0),
                        has_matched: matched.is_some(),
                        lag: last.saturating_sub(matched.map(|l| l.index).unwrap_or(0)),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Response::new(ClusterStatusReply {
            leader_id: self.hub.id,
            term: m.current_term,
            last_log_index: last,
            committed_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            members: self.members(),
            progress,
        }))
    }

    async fn propose(
        &self,
        req: Request<ProposeRequest>,
    ) -> Result<Response<ProposeReply>, Status> {
        let request: quorumhub_state::Request = serde_json::from_slice(&req.get_ref().command).map_err(|e| {
            tracing::warn!(remote = ?req.remote_addr(), error = %e, "refused an undecodable forwarded write");
            Status::invalid_argument(format!("undecodable command: {e}"))
        })?;
        match self
            .hub
            .write_here(request, self.hub.config.write_timeout())
            .await
        {
            Ok(resp) => Ok(Response::new(ProposeReply {
                response: serde_json::to_vec(&resp).map_err(|e| Status::internal(e.to_string()))?,
                log_index: self.hub.sm.read(|d| d.state.revision),
            })),
            Err(WriteAttempt::Forward(_)) | Err(WriteAttempt::Retry) => {
                Err(Status::failed_precondition(
                    "not the leader (any more); retry with the current leader",
                ))
            }
            Err(WriteAttempt::Fatal(e)) => Err(status(e)),
        }
    }

    async fn read_index(
        &self,
        _: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexReply>, Status> {
        match self.hub.read_index(self.hub.config.write_timeout()).await {
            Ok(read_index) if self.hub.is_leader() => {
                Ok(Response::new(ReadIndexReply { read_index }))
            }
            Ok(_) | Err(None) => Err(Status::failed_precondition("not the leader; retry")),
            Err(Some(e)) => Err(status(e)),
        }
    }

    async fn backup(&self, _: Request<BackupRequest>) -> Result<Response<BackupReply>, Status> {
        self.hub.linearize().await.map_err(status)?;
        let (state, index) = self.hub.sm.read(|d| (d.state.clone(), d.state.revision));
        let file = quorumhub_raft::backup::BackupFile {
            format: quorumhub_raft::backup::BACKUP_FORMAT,
            cluster_id: self.hub.cluster_id.clone(),
            index,
            taken_at_ms: quorumhub_core::time::now_ms(),
            state,
        };
        let bytes = file.seal().map_err(|e| Status::internal(e.to_string()))?;
        tracing::info!(index, bytes = bytes.len(), "backup taken");
        Ok(Response::new(BackupReply { file: bytes, index }))
    }

    async fn raft_snapshot(
        &self,
        _: Request<RaftSnapshotRequest>,
    ) -> Result<Response<RaftSnapshotReply>, Status> {
        let (file, index) = self.hub.sm.current_snapshot().unwrap_or_default();
        Ok(Response::new(RaftSnapshotReply { file, index }))
    }

    async fn add_learner(
        &self,
        req: Request<AddLearnerRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        if let Some(mut leader) = self.leader_client(&req)? {
            return leader.add_learner(forwarded(req)).await;
        }
        let m = req
            .into_inner()
            .member
            .ok_or_else(|| Status::invalid_argument("member is required"))?;
        if m.id == 0 || m.grpc_addr.is_empty() || m.http_addr.is_empty() {
            return Err(Status::invalid_argument(
                "member needs a non-zero id, a grpc_addr and an http_addr",
            ));
        }
        // The cluster-version gate: a build that cannot decode the log
        // format the cluster has agreed on must not join (it would stop at
        // the first entry it cannot read).
        let current = self.hub.sm.read(|d| d.state.cluster_version);
        match crate::version::member_format(&self.hub, &m.grpc_addr).await {
            Some(f) if f >= current => {}
            Some(f) => {
                return Err(Status::failed_precondition(format!(
                    "node {} runs a build that understands log format {f}, but the cluster is \
                     at version {current}: run the release the other members run",
                    m.id
                )))
            }
            None => {
                return Err(Status::unavailable(format!(
                    "node {} does not answer at {}: start it (with the same cluster secret) \
                     before adding it",
                    m.id, m.grpc_addr
                )))
            }
        }
        let node = RaftMember {
            grpc_addr: m.grpc_addr,
            http_addr: m.http_addr,
        };
        let res = self
            .hub
            .raft
            .add_learner(m.id, node, true)
            .await
            .map_err(membership_status)?;
        Ok(Response::new(MembershipReply {
            members: self.members(),
            log_index: res.log_id.index,
        }))
    }

    async fn promote_voter(
        &self,
        req: Request<MemberRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        if let Some(mut leader) = self.leader_client(&req)? {
            return leader.promote_voter(forwarded(req)).await;
        }
        let id = req.into_inner().id;
        let res = self
            .hub
            .raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(membership_status)?;
        Ok(Response::new(MembershipReply {
            members: self.members(),
            log_index: res.log_id.index,
        }))
    }

    async fn remove_member(
        &self,
        req: Request<MemberRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        if let Some(mut leader) = self.leader_client(&req)? {
            return leader.remove_member(forwarded(req)).await;
        }
        let id = req.into_inner().id;
        let is_voter = self.members().iter().any(|m| m.id == id && m.voter);
        if is_voter {
            self.hub
                .raft
                .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                .await
                .map_err(membership_status)?;
        }
        let res = self
            .hub
            .raft
            .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
            .await
            .map_err(membership_status)?;
        Ok(Response::new(MembershipReply {
            members: self.members(),
            log_index: res.log_id.index,
        }))
    }

    async fn transfer_leader(
        &self,
        req: Request<TransferLeaderRequest>,
    ) -> Result<Response<TransferLeaderReply>, Status> {
        if let Some(mut leader) = self.leader_client(&req)? {
            return leader.transfer_leader(forwarded(req)).await;
        }
        match crate::transfer::transfer(&self.hub, req.into_inner().target).await {
            Ok(t) => Ok(Response::new(TransferLeaderReply {
                new_leader: t.new_leader,
                term: t.term,
                elapsed_ms: t.elapsed.as_millis() as u64,
            })),
            Err(e) => Err(transfer_status(e)),
        }
    }

    async fn campaign(
        &self,
        _: Request<CampaignRequest>,
    ) -> Result<Response<CampaignReply>, Status> {
        tracing::info!("asked to campaign for leadership");
        // The leader hands leadership here: grant no rival's pre-vote until
        // this election is over (or the hand-off's time runs out).
        let lease = self.hub.config.raft.election_timeout_max_ms;
        self.hub.election.hand_off(
            self.hub.id,
            std::time::Duration::from_millis(lease * 2 + 1000),
        );
        // The leader's request is contact from the leader: this replica's
        // own pre-vote timer starts again from now, so it does not start a
        // second election (a term more) while this one still counts votes.
        self.hub.election.heard_from_leader();
        self.hub
            .raft
            .trigger()
            .elect()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(CampaignReply {}))
    }

    async fn list_users(
        &self,
        _: Request<ListUsersRequest>,
    ) -> Result<Response<ListUsersReply>, Status> {
        self.hub.linearize().await.map_err(status)?;
        let (users, revision) = self
            .hub
            .read(|s| (s.users.values().map(user_info).collect(), s.revision));
        Ok(Response::new(ListUsersReply { users, revision }))
    }

    async fn add_user(&self, req: Request<AddUserRequest>) -> Result<Response<UserReply>, Status> {
        let r = req.into_inner();
        let name = quorumhub_state::normalize_username(&r.name);
        let user = quorumhub_core::ops::users::create(&*self.hub, name, r.admin)
            .await
            .map_err(op_status)?;
        Ok(Response::new(UserReply {
            user: Some(user_info(&user)),
        }))
    }

    async fn set_password(
        &self,
        req: Request<SetPasswordRequest>,
    ) -> Result<Response<SetPasswordReply>, Status> {
        let r = req.into_inner();
        let name = quorumhub_state::normalize_username(&r.name);
        let hash = quorumhub_core::password::hash(r.password)
            .await
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        quorumhub_core::ops::users::set_password(&*self.hub, name, Some(hash))
            .await
            .map_err(op_status)?;
        Ok(Response::new(SetPasswordReply {}))
    }

    async fn remove_user(
        &self,
        req: Request<RemoveUserRequest>,
    ) -> Result<Response<RemoveUserReply>, Status> {
        let name = quorumhub_state::normalize_username(&req.into_inner().name);
        quorumhub_core::ops::users::delete(&*self.hub, name)
            .await
            .map_err(op_status)?;
        Ok(Response::new(RemoveUserReply {}))
    }

    async fn state_digest(
        &self,
        _: Request<StateDigestRequest>,
    ) -> Result<Response<StateDigestReply>, Status> {
        let reply = self.hub.read(|s| StateDigestReply {
            applied_index: s.revision,
            digest: s.digest(),
            users: s.users.len() as u64,
            routes: s.routes.len() as u64,
        });
        Ok(Response::new(reply))
    }

    async fn current_vote(
        &self,
        _: Request<CurrentVoteRequest>,
    ) -> Result<Response<CurrentVoteReply>, Status> {
        let m = self.hub.raft.metrics().borrow().clone();
        Ok(Response::new(CurrentVoteReply {
            term: m.vote.leader_id().term,
            node_id: m.vote.leader_id().voted_for().unwrap_or(0),
            committed: m.vote.is_committed(),
        }))
    }
}
