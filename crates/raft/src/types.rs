use std::io::Cursor;

use serde::{Deserialize, Serialize};

pub type NodeId = u64;

/// What the cluster records about each member: where to reach it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// host:port of its gRPC endpoint (Raft, Admin, Routes).
    pub grpc_addr: String,
    /// host:port of its HTTP endpoint (REST API).
    pub http_addr: String,
}

impl std::fmt::Display for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "grpc={} http={}", self.grpc_addr, self.http_addr)
    }
}

openraft::declare_raft_types!(
    pub TypeConfig:
        D = quorumhub_state::Request,
        R = quorumhub_state::Response,
        NodeId = NodeId,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
