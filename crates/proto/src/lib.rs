//! Generated gRPC code for `proto/quorumhub.proto`, plus the one piece of
//! protocol every service shares: how the cluster secret is carried.

#![allow(clippy::all, clippy::pedantic)]

pub mod v1 {
    tonic::include_proto!("quorumhub.v1");
}

/// Metadata key carrying `Bearer <cluster secret>` on every RPC.
pub const AUTH_METADATA: &str = "authorization";

/// The only Raft payload encoding this version speaks.
pub const RAFT_FORMAT_JSON_V1: &str = "json/v1";

pub mod secret_file;

pub mod grpc_tls;
