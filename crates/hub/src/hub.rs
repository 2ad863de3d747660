//! [`Hub`]: one replica's handle on the cluster. The write path
//! ([`Hub::propose`]) and the read barrier ([`Hub::linearize`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use quorumhub_proto::v1::admin_client::AdminClient;
use quorumhub_proto::v1::{ProposeRequest, ReadIndexRequest};
use quorumhub_raft::auth::ClientAuth;
use quorumhub_raft::state_machine::SmShared;
use quorumhub_raft::{Member, NodeId, Raft};
use quorumhub_state::{Command, HubState, Request, Response};
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;

pub use quorumhub_core::HubError;

use crate::config::HubConfig;
use quorumhub_core::time::now_ms;

pub type Admin = AdminClient<InterceptedService<Channel, ClientAuth>>;

/// One forwarded write or read-index gets at most this long before it is
/// retried (the same request: it applies once) on a fresh connection. A
/// commit takes milliseconds; a connection that is silent this long is
/// most likely dead.
const FORWARD_ATTEMPT: Duration = Duration::from_secs(1);

pub struct Hub {
    pub id: NodeId,
    pub cluster_id: String,
    pub raft: Raft,
    pub sm: Arc<SmShared>,
    pub config: Arc<HubConfig>,
    pub auth: ClientAuth,
    /// Names this process as a proposer in the dedupe table.
    client_id: String,
    serial: AtomicU64,
    admins: Mutex<HashMap<String, Admin>>,
    /// Held exclusively while leadership is being transferred away, so that
    /// no new entry is proposed meanwhile.
    pub(crate) transfer_gate: tokio::sync::RwLock<()>,
    /// This replica's pre-vote rules; leader transfer tells it whom
    /// leadership is being handed to.
    pub(crate) election: Arc<quorumhub_raft::election::Election>,
    /// Set when shutdown begins: HTTP responses close their connection.
    pub(crate) draining: std::sync::atomic::AtomicBool,
    /// Writes in flight and waiting, per user and in all (this replica's).
    pub(crate) admission: quorumhub_core::admission::Admission,
}

impl Hub {
    pub fn new(
        raft: Raft,
        sm: Arc<SmShared>,
        config: Arc<HubConfig>,
        auth: ClientAuth,
        election: Arc<quorumhub_raft::election::Election>,
    ) -> Hub {
        Hub {
            id: config.node_id,
            cluster_id: config.cluster_id.clone(),
            raft,
            sm,
            auth,
            client_id: format!("n{}-{}", config.node_id, uuid::Uuid::new_v4().simple()),
            serial: AtomicU64::new(0),
            admins: Mutex::new(HashMap::new()),
            transfer_gate: tokio::sync::RwLock::new(()),
            election,
            draining: std::sync::atomic::AtomicBool::new(false),
            admission: quorumhub_core::admission::Admission::new(&config.limits),
            config,
        }
    }

    /// A (cached, lazily connecting) admin client for `grpc_addr`.
    pub fn admin(&self, grpc_addr: &str) -> Result<Admin, HubError> {
        let mut cache = self.admins.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.get(grpc_addr) {
            return Ok(c.clone());
        }
        let channel = quorumhub_raft::network::channel(grpc_addr, Duration::from_millis(500))
            .map_err(|e| HubError::Internal(format!("bad peer address {grpc_addr}: {e}")))?;
        let client = AdminClient::with_interceptor(channel, self.auth.clone())
            .max_decoding_message_size(64 << 20);
        cache.insert(grpc_addr.to_string(), client.clone());
        Ok(client)
    }

    /// Drop the cached client for `grpc_addr` after a failure that may mean
    /// its connection is dead (the peer moved to another address, or a
    /// partition left a half-open connection): the next call connects anew
    /// instead of waiting for HTTP/2 keep-alive to notice.
    fn forget_admin_on(&self, grpc_addr: &str, code: tonic::Code) {
        use tonic::Code::*;
        if matches!(code, Unavailable | DeadlineExceeded | Cancelled | Unknown) {
            let mut cache = self.admins.lock().unwrap_or_else(|p| p.into_inner());
            cache.remove(grpc_addr);
        }
    }

    /// Read the applied state (no barrier: see [`Hub::linearize`]).
    pub fn read<T>(&self, f: impl FnOnce(&HubState) -> T) -> T {
        self.sm.read(|d| f(&d.state))
    }

    pub fn leader(&self) -> Option<(NodeId, Option<Member>)> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        Some((id, m.membership_config.membership().get_node(&id).cloned()))
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    fn next_request(&self, command: Command) -> Request {
        Request {
            client_id: self.client_id.clone(),
            serial: self.serial.fetch_add(1, Ordering::Relaxed) + 1,
            at: now_ms(),
            command,
        }
    }

    /// Commit `command` through the leader and return its outcome once it
    /// is applied. Retries (same client id and serial, so it applies once)
    /// across leader changes until the write timeout.
    ///
    /// A client's write is first admitted (see [`quorumhub_core::admission`]): past
    /// its user's share or a full queue it fails at once, with
    /// [`HubError::UserBusy`] or [`HubError::Overloaded`], and nothing is
    /// proposed. Its wait for a slot counts against the write timeout.
    pub async fn propose(&self, command: Command) -> Result<Response, HubError> {
        let name = command.name();
        let deadline = Instant::now() + self.config.write_timeout();
        let _ticket = self.admission.admit(deadline).await.inspect_err(|e| {
            tracing::debug!(command = name, "write not admitted: {e}");
        })?;
        let req = self.next_request(command);
        let started = Instant::now();
        let out = self.propose_until(req, deadline).await;
        tracing::debug!(
            command = name,
            elapsed_ms = started.elapsed().as_millis() as u64,
            ok = out.is_ok(),
            "proposed"
        );
        out
    }

    /// For the spawner controller: commit through this replica's own Raft
    /// node only, never forwarded and never retried elsewhere. An action a
    /// leader decided on must not be committed by its successor on its
    /// behalf: a deposed leader's spawn reports would otherwise land beside
    /// the new leader's own work on the same server (see invariant 13).
    pub async fn propose_local(&self, command: Command) -> Result<Response, HubError> {
        let req = self.next_request(command);
        match self.write_here(req, self.config.write_timeout()).await {
            Ok(resp) => Ok(resp),
            Err(WriteAttempt::Fatal(e)) => Err(e),
            Err(WriteAttempt::Forward(_)) | Err(WriteAttempt::Retry) => Err(HubError::NotLeader),
        }
    }

    pub async fn propose_request(&self, req: Request) -> Result<Response, HubError> {
        self.propose_until(req, Instant::now() + self.config.write_timeout())
            .await
    }

    async fn propose_until(&self, req: Request, deadline: Instant) -> Result<Response, HubError> {
        self.check_enabled(&req.command)?;
        let timeout = self.config.write_timeout();
        let mut backoff = Duration::from_millis(5);
        let mut leadership = self.leadership();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(HubError::WriteUnavailable(timeout));
            }
            match self.write_here(req.clone(), remaining).await {
                Ok(resp) => return Ok(resp),
                Err(WriteAttempt::Fatal(e)) => return Err(e),
                Err(WriteAttempt::Forward(leader)) => {
                    // A leader that is paused or cut off never answers: go
                    // to its successor as soon as this replica learns of
                    // one. Safe: the retry is the same request (client id
                    // and serial), which applies at most once.
                    let answer = tokio::select! {
                        r = self.forward(&leader, &req, remaining) => Some(r),
                        _ = self.leader_moved_from(&leader) => {
                            tracing::info!(old = %leader.grpc_addr, "leader changed while a forwarded write waited; retrying with the new leader");
                            None
                        }
                    };
                    match answer.unwrap_or(Err(HubError::NotLeader)) {
                        Ok((resp, index)) => {
                            // Read-your-writes on this replica too: answer
                            // only once the entry is applied here.
                            let left = deadline.saturating_duration_since(Instant::now());
                            if !self.wait_applied(index, left).await {
                                return Err(HubError::WriteUnavailable(timeout));
                            }
                            return Ok(resp);
                        }
                        Err(e @ HubError::NotYetEnabled(_)) => return Err(e),
                        Err(_) => {}
                    }
                }
                Err(WriteAttempt::Retry) => {}
            }
            self.retry_pause(&mut leadership, backoff, deadline).await;
            backoff = (backoff * 2).min(Duration::from_millis(50));
        }
    }

    /// Resolves once this replica knows of a leader other than `old`.
    pub(crate) async fn leader_moved_from(&self, old: &Member) {
        let mut metrics = self.raft.metrics();
        loop {
            let moved = {
                let m = metrics.borrow_and_update();
                m.current_leader.is_some_and(|id| {
                    m.membership_config
                        .membership()
                        .get_node(&id)
                        .is_some_and(|n| n.grpc_addr != old.grpc_addr)
                })
            };
            if moved {
                return;
            }
            if metrics.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Who leads, in which term: what a retry waits to see change.
    fn leadership(&self) -> (Option<NodeId>, u64) {
        let m = self.raft.metrics();
        let m = m.borrow();
        (m.current_leader, m.current_term)
    }

    /// Sleep before a retry, but wake as soon as a (new) leader is known, so
    /// that a write waiting out an election goes on the moment it ends.
    async fn retry_pause(
        &self,
        seen: &mut (Option<NodeId>, u64),
        backoff: Duration,
        deadline: Instant,
    ) {
        let pause = backoff.min(deadline.saturating_duration_since(Instant::now()));
        let mut metrics = self.raft.metrics();
        let changed = async {
            loop {
                if metrics.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
                let now = {
                    let m = metrics.borrow();
                    (m.current_leader, m.current_term)
                };
                if now != *seen && now.0.is_some() {
                    return now;
                }
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => *seen = self.leadership(),
            now = changed => *seen = now,
        }
    }

    /// One attempt to commit through the local Raft node.
    pub(crate) async fn write_here(
        &self,
        req: Request,
        limit: Duration,
    ) -> Result<Response, WriteAttempt> {
        let _gate = self.transfer_gate.read().await;
        self.check_enabled(&req.command)
            .map_err(WriteAttempt::Fatal)?;
        match tokio::time::timeout(limit, self.raft.client_write(req)).await {
            Err(_) => Err(WriteAttempt::Retry),
            Ok(Ok(resp)) => Ok(resp.data),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                match f.leader_node {
                    Some(node) if f.leader_id != Some(self.id) => Err(WriteAttempt::Forward(node)),
                    _ => Err(WriteAttempt::Retry),
                }
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
                Err(WriteAttempt::Fatal(HubError::Internal(e.to_string())))
            }
            Ok(Err(RaftError::Fatal(e))) => {
                tracing::warn!(error = %e, "raft is stopped");
                Err(WriteAttempt::Fatal(HubError::ShuttingDown))
            }
        }
    }

    /// The cluster-version gate ([`quorumhub_core::cluster::check_enabled`]).
    pub fn check_enabled(&self, command: &Command) -> Result<(), HubError> {
        self.sm
            .read(|d| quorumhub_core::cluster::check_enabled(&d.state, command))
    }

    /// The leader's response and a log index at which it is applied.
    async fn forward(
        &self,
        leader: &Member,
        req: &Request,
        limit: Duration,
    ) -> Result<(Response, u64), HubError> {
        let command = serde_json::to_vec(req).map_err(|e| HubError::Internal(e.to_string()))?;
        let mut client = self.admin(&leader.grpc_addr)?;
        let attempt = limit.min(FORWARD_ATTEMPT);
        let mut call = tonic::Request::new(ProposeRequest { command });
        call.set_timeout(attempt);
        let reply = match tokio::time::timeout(attempt, client.propose(call)).await {
            Ok(r) => r.map_err(|s| (s.code(), s.message().to_string())),
            Err(_) => Err((
                tonic::Code::DeadlineExceeded,
                "no answer in time".to_string(),
            )),
        };
        let reply = reply.map_err(|(code, message)| {
            tracing::debug!(leader = %leader.grpc_addr, status = %message, "forwarded write not taken");
            self.forget_admin_on(&leader.grpc_addr, code);
            if code == tonic::Code::Unimplemented {
                HubError::NotYetEnabled(message)
            } else {
                HubError::Internal(message)
            }
        })?;
        let reply = reply.into_inner();
        let resp = serde_json::from_slice(&reply.response)
            .map_err(|e| HubError::Internal(format!("undecodable response from leader: {e}")))?;
        Ok((resp, reply.log_index))
    }

    /// Wait until this replica has applied every write acknowledged before
    /// this call, anywhere in the cluster (read-index through the leader).
    pub async fn linearize(&self) -> Result<(), HubError> {
        let timeout = self.config.write_timeout();
        let deadline = Instant::now() + timeout;
        let mut backoff = Duration::from_millis(5);
        let mut leadership = self.leadership();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(HubError::ReadUnavailable(timeout));
            }
            match self.read_index(remaining).await {
                Ok(index) => {
                    if self.wait_applied(index, remaining).await {
                        return Ok(());
                    }
                }
                Err(Some(fatal)) => return Err(fatal),
                Err(None) => {}
            }
            self.retry_pause(&mut leadership, backoff, deadline).await;
            backoff = (backoff * 2).min(Duration::from_millis(50));
        }
    }

    /// The index a linearizable read must wait for: confirmed by a quorum
    /// here if this replica leads, else asked of the leader.
    /// `Err(None)` = retry.
    pub(crate) async fn read_index(&self, limit: Duration) -> Result<u64, Option<HubError>> {
        match tokio::time::timeout(limit, self.raft.get_read_log_id()).await {
            Err(_) => Err(None),
            Ok(Ok((read, _applied))) => Ok(read.map(|l| l.index).unwrap_or(0)),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                let Some(node) = f.leader_node else {
                    return Err(None);
                };
                let mut client = self.admin(&node.grpc_addr).map_err(Some)?;
                let attempt = limit.min(FORWARD_ATTEMPT);
                let mut call = tonic::Request::new(ReadIndexRequest {});
                call.set_timeout(attempt);
                // As for writes: a successor makes the old leader's answer moot.
                tokio::select! {
                    r = tokio::time::timeout(attempt, client.read_index(call)) => match r {
                        Ok(Ok(r)) => Ok(r.into_inner().read_index),
                        Ok(Err(s)) => {
                            self.forget_admin_on(&node.grpc_addr, s.code());
                            Err(None)
                        }
                        Err(_) => {
                            self.forget_admin_on(&node.grpc_addr, tonic::Code::DeadlineExceeded);
                            Err(None)
                        }
                    },
                    _ = self.leader_moved_from(&node) => Err(None),
                }
            }
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)))) => Err(None),
            Ok(Err(RaftError::Fatal(_))) => Err(Some(HubError::ShuttingDown)),
        }
    }

    /// Wait until the local state machine has applied `index`.
    pub async fn wait_applied(&self, index: u64, limit: Duration) -> bool {
        let mut rx = self.sm.subscribe();
        let reached = matches!(
            tokio::time::timeout(limit, rx.wait_for(|rev| *rev >= index)).await,
            Ok(Ok(_))
        );
        reached
    }
}

pub(crate) enum WriteAttempt {
    Forward(Member),
    Retry,
    Fatal(HubError),
}
