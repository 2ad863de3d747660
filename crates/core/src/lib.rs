//! The hub's use cases, over a [`Cluster`].
//!
//! [`Cluster`] is the write path (`propose`), the read barrier
//! (`linearize`) and the applied state (`read`, `subscribe`) of one
//! replica. The Raft-backed replica (`quorumhub-hub`) implements it;
//! [`memory::MemoryCluster`] implements it in memory for tests, running
//! the real [`HubState::apply`](quorumhub_state::HubState::apply).
//!
//! [`ops`] holds the use cases more than one front end asks for, each
//! returning `Result<T, OpError>`; [`scopes`] what a token may do;
//! [`admission`] which writes a replica lets through to the cluster;
//! [`limits`] the bounds on what a client may store.
//!
//! This crate knows nothing about HTTP, gRPC, templates, Raft or spawners:
//! it must never depend on axum, http, hyper, tonic, minijinja, openraft or
//! `quorumhub-spawner` (test: crates/hub/tests/layering.rs).

pub mod admission;
pub mod cluster;
pub mod error;
pub mod limits;
pub mod memory;
pub mod ops;
pub mod password;
pub mod scopes;
pub mod secrets;
pub mod time;

pub use cluster::{Cluster, MemberView, MembersView, NodeView};
pub use error::HubError;
pub use ops::OpError;
