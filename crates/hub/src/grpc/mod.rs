//! The replica's gRPC services, for its peers, proxies and hubctl: Admin
//! (forwarded writes and read index, status, membership, users, backup,
//! leader transfer) and Routes (the route table's watch). The Raft service
//! itself is `quorumhub_raft::service`. Services decode, check and call
//! into the replica; [`status`] is the one place its errors become gRPC
//! statuses. No consensus logic here.

pub mod admin;
pub mod routes;
pub(crate) mod status;
