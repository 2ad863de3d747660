//! The hub's HTTP front end over a [`Cluster`]: the JupyterHub-compatible
//! REST API ([`api`]) and the browser pages ([`web`]: login, spawn pages,
//! the OAuth provider, OpenID Connect), sibling modules that never import
//! each other, over a shared [`auth`] layer (the caller, the session and
//! CSRF token, the login limiter). `app` composes them: [`router`].
//!
//! Every change goes through [`Cluster::propose`]; every read a client
//! could see stale first passes [`Cluster::linearize`].
//!
//! This crate knows nothing about Raft or gRPC: it must never name
//! openraft, tonic or the Raft crate (test: crates/hub/tests/layering.rs).

pub mod api;
mod app;
pub mod auth;
pub mod config;
mod ctx;
mod error;
pub mod limits;
mod listing;
pub mod metrics;
pub mod web;

pub use app::router;
pub use config::{HttpConfig, OidcArgs};
pub use ctx::Ctx;
pub use metrics::{FrontEndMetrics, Metrics, SpawnDurations};
pub use quorumhub_core::Cluster;
