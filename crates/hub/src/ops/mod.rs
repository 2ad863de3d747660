//! The hub's use cases that more than one front end asks for (the REST API
//! and the browser pages), as typed operations over the [`Hub`]: no HTTP,
//! no templates, no gRPC. What went wrong is an [`OpError`]; each front end
//! turns it into its own answer (a JSON error, a page).
//!
//! This is where the `core` of issue 11 grows: a module here must never
//! name axum, http, minijinja or tonic (test: tests/layering.rs).
//!
//! [`Hub`]: crate::hub::Hub

pub(crate) mod servers;
pub(crate) mod tokens;

use quorumhub_state::Rejection;

use crate::hub::HubError;

/// Why an operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The cluster could not commit or read (no quorum, shed, mid-upgrade).
    #[error(transparent)]
    Cluster(#[from] HubError),
    /// The replicated state refused the command.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The state machine answered with an outcome this operation never
    /// expects: a bug.
    #[error("unexpected outcome {0}")]
    Unexpected(String),
}
