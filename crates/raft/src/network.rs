//! Outgoing Raft RPCs: openraft's messages, JSON-encoded, over tonic.

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use quorumhub_proto::v1::raft_client::RaftClient;
use quorumhub_proto::v1::RaftMessage;
use quorumhub_proto::RAFT_FORMAT_JSON_V1;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::codegen::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::auth::ClientAuth;
use crate::{Member, NodeId, TypeConfig};

/// Builds a lazily-connecting tonic channel to `addr` (host:port): mutual
/// TLS when this process installed a gRPC TLS identity
/// ([`quorumhub_proto::grpc_tls::install`]).
pub fn channel(addr: &str, connect_timeout: Duration) -> Result<Channel, tonic::transport::Error> {
    let mut endpoint = Endpoint::from_shared(quorumhub_proto::grpc_tls::uri(addr))?;
    if let Some(tls) = quorumhub_proto::grpc_tls::client_config() {
        endpoint = endpoint.tls_config(tls)?;
    }
    Ok(endpoint
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        // A dead connection (a peer that moved, a half-open one after a
        // partition) is noticed within about 2 s and replaced.
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(1))
        .keep_alive_while_idle(true)
        .connect_lazy())
}

/// Default cap on one AppendEntries message (see [`Network::max_append_bytes`]).
pub const DEFAULT_MAX_APPEND_BYTES: usize = 256 << 10;

#[derive(Clone)]
pub struct Network {
    auth: ClientAuth,
    cluster_id: String,
    max_append_bytes: usize,
}

impl Network {
    pub fn new(auth: ClientAuth, cluster_id: String) -> Network {
        Network {
            auth,
            cluster_id,
            max_append_bytes: DEFAULT_MAX_APPEND_BYTES,
        }
    }

    /// Cap one AppendEntries message at about `bytes` (encoded): a batch
    /// above it is cut to the longest prefix that fits (at least one entry)
    /// and reported to openraft as a partial success, so it sends the rest
    /// next. openraft 0.9 times every AppendEntries out after one heartbeat
    /// interval; an uncapped batch of large entries (300 by default) would
    /// never arrive in time and the follower would never catch up.
    pub fn max_append_bytes(mut self, bytes: usize) -> Network {
        self.max_append_bytes = bytes.max(1);
        self
    }
}

/// How long replication to an unreachable peer waits between tries: short
/// at first, so a restarted follower hears from its leader (and is caught
/// up) well within one election timeout, then every 100 ms (openraft alone waits a constant 500 ms).
fn reconnect_backoff() -> impl Iterator<Item = Duration> + Send + 'static {
    [10u64, 20, 40, 80, 160, 320]
        .into_iter()
        .chain(std::iter::repeat(100))
        .map(Duration::from_millis)
}

/// The longest prefix of `sizes` (encoded sizes of entries, in order) that
/// fits in `cap`, at least one entry.
fn prefix_that_fits(sizes: &[usize], cap: usize) -> usize {
    let mut total = 0usize;
    for (i, s) in sizes.iter().enumerate() {
        total = total.saturating_add(*s);
        if total > cap {
            return i.max(1);
        }
    }
    sizes.len()
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Peer {
        let client = channel(&node.grpc_addr, Duration::from_millis(500))
            .map(|ch| RaftClient::with_interceptor(ch, self.auth.clone()))
            .map_err(|e| e.to_string());
        Peer {
            target,
            addr: node.grpc_addr.clone(),
            client,
            cluster_id: self.cluster_id.clone(),
            max_append_bytes: self.max_append_bytes,
        }
    }
}

pub struct Peer {
    target: NodeId,
    addr: String,
    client: Result<RaftClient<InterceptedService<Channel, ClientAuth>>, String>,
    cluster_id: String,
    max_append_bytes: usize,
}

#[derive(Clone, Copy)]
enum Rpc {
    Append,
    Vote,
    Snapshot,
}

impl Peer {
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Member, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let payload =
            serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.call_encoded(rpc, payload, option).await
    }

    /// [`Peer::call`] with the request already encoded.
    async fn call_encoded<Resp, E>(
        &mut self,
        rpc: Rpc,
        payload: Vec<u8>,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Member, RaftError<NodeId, E>>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &mut self.client {
            Ok(c) => c,
            Err(e) => {
                let e = std::io::Error::other(format!("bad address {}: {e}", self.addr));
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
        };
        let msg = RaftMessage {
            format: RAFT_FORMAT_JSON_V1.into(),
            payload,
            cluster_id: self.cluster_id.clone(),
        };
        let mut request = tonic::Request::new(msg);
        request.set_timeout(option.hard_ttl());
        let reply = match rpc {
            Rpc::Append => client.append_entries(request).await,
            Rpc::Vote => client.vote(request).await,
            Rpc::Snapshot => client.install_snapshot(request).await,
        };
        let reply = reply.map_err(|status| match status.code() {
            tonic::Code::Unavailable | tonic::Code::Unknown => {
                RPCError::Unreachable(Unreachable::new(&status))
            }
            _ => RPCError::Network(NetworkError::new(&status)),
        })?;
        let result: Result<Resp, RaftError<NodeId, E>> =
            serde_json::from_slice(&reply.into_inner().payload)
                .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        // Encoded once; only a batch over the cap is measured entry by entry
        // and encoded again, cut.
        let payload =
            serde_json::to_vec(&rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if payload.len() > self.max_append_bytes && rpc.entries.len() > 1 {
            let sizes: Vec<usize> = rpc
                .entries
                .iter()
                .map(|e| serde_json::to_vec(e).map(|v| v.len()).unwrap_or(usize::MAX))
                .collect();
            let keep = prefix_that_fits(&sizes, self.max_append_bytes);
            if keep < rpc.entries.len() {
                rpc.entries.truncate(keep);
                let last = rpc.entries.last().map(|e| e.log_id);
                tracing::debug!(
                    target = self.target,
                    sent = keep,
                    "AppendEntries cut to fit the byte cap"
                );
                return match self.call(Rpc::Append, &rpc, &option).await? {
                    AppendEntriesResponse::Success => {
                        Ok(AppendEntriesResponse::PartialSuccess(last))
                    }
                    other => Ok(other),
                };
            }
        }
        self.call_encoded(Rpc::Append, payload, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(Rpc::Snapshot, &rpc, &option).await
    }

    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(reconnect_backoff())
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        self.call(Rpc::Vote, &rpc, &option).await
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_that_fits;

    #[test]
    fn batches_are_cut_to_the_byte_cap() {
        let cases: &[(&[usize], usize, usize)] = &[
            (&[10, 10, 10], 100, 3),
            (&[10, 10, 10], 20, 2),
            (&[10, 10, 10], 19, 1),
            // One entry above the cap still goes (it was admitted).
            (&[500, 10], 100, 1),
            (&[], 100, 0),
            (&[usize::MAX, 1], 100, 1),
        ];
        for (sizes, cap, want) in cases {
            assert_eq!(prefix_that_fits(sizes, *cap), *want, "{sizes:?} cap {cap}");
        }
    }
}
