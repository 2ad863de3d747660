//! A hub replica.
//!
//! [`node::run`] opens the data dir, starts the Raft node, and serves:
//! - gRPC ([`grpc::admin`], [`grpc::routes`] and the Raft service) on
//!   `--grpc-listen`,
//! - the JupyterHub-compatible REST API ([`api`]) and the pages ([`web`]),
//!   composed by `app`, on `--http-listen`,
//!
//! and runs the spawner [`controller`], which acts only while this replica
//! leads. Every change goes through [`Hub::propose`](hub::Hub::propose)
//! (forwarded to the leader when this replica follows); every read first
//! passes [`Hub::linearize`](hub::Hub::linearize) (read-index through the
//! leader).
//!
//! This crate must never change state except by proposing a command, and
//! must never read replicated state without a read barrier where a client
//! could observe staleness.

mod bootstrap;
mod cluster;
pub mod config;
pub mod controller;
pub mod grpc;
pub mod hub;
mod leader_turns;
mod metrics;
pub mod node;
mod preflight;
pub mod profiles;
mod role_sync;
pub mod roles;
mod service_sync;
pub mod services;
pub mod tables;
mod transfer;
mod version;

pub use config::HubConfig;
pub use node::run;
