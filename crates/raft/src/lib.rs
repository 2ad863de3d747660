//! openraft glue for quorumhub, in the shape of openraft's own examples:
//! storage, network and state machine each behind the library's traits, in
//! their own module.
//!
//! - [`log_store`]: the Raft log, vote and committed index in sled; nothing
//!   is acknowledged to openraft before it is flushed to disk; every entry is
//!   checksummed and the whole log is verified when the store opens.
//! - [`state_machine`]: applies committed entries to the pure
//!   [`quorumhub_state::HubState`] held in memory, builds/installs snapshots
//!   (checksummed files written atomically), and feeds route watchers.
//! - [`network`] / [`service`]: Raft RPCs over tonic gRPC, authenticated by
//!   the cluster secret ([`auth`]).
//! - [`election`]: when this replica campaigns (a pre-vote in front of
//!   openraft's election, so a restarting replica never deposes a leader).
//! - [`datadir`]: what a replica's data directory must look like before any
//!   of the above may touch it.
//!
//! This crate must never: decide what a command means (that is
//! `quorumhub-state`), serve users, or start processes.

// openraft's StorageError is large and its traits return it by value; boxing
// it here would only add an allocation on the error path of every call.
#![allow(clippy::result_large_err)]

pub mod auth;
pub mod backup;
mod codec;
pub mod datadir;
pub mod election;
pub mod log_store;
pub mod network;
pub mod service;
pub mod state_machine;
mod types;

pub use types::{Member, NodeId, Raft, TypeConfig};

pub type StorageResult<T> = Result<T, openraft::StorageError<NodeId>>;
