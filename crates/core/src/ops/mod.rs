//! The hub's use cases as typed operations over a [`Cluster`]: no HTTP, no
//! templates, no gRPC. What went wrong is an [`OpError`]; each front end
//! turns it into its own answer (a JSON error, a page, a gRPC status).
//!
//! [`Cluster`]: crate::cluster::Cluster

pub mod groups;
pub mod servers;
pub mod sessions;
pub mod tokens;
pub mod users;

use quorumhub_state::{Group, Rejection, Response, User};

use crate::error::HubError;

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

impl OpError {
    /// As a cluster error, for callers that answer only those: a refusal
    /// or an unexpected outcome becomes `HubError::Internal`.
    pub fn into_hub_error(self) -> HubError {
        match self {
            OpError::Cluster(e) => e,
            other => HubError::Internal(other.to_string()),
        }
    }

    /// A command's answer that is neither the outcome asked for nor a
    /// refusal.
    fn from_outcome(r: Response) -> OpError {
        match r {
            Response::Rejected { rejection } => OpError::Rejected(rejection),
            other => OpError::Unexpected(format!("{other:?}")),
        }
    }
}

/// Decoding a command's untyped answer into what the operation expects,
/// in one place: a refusal is `OpError::Rejected`, anything else that is
/// not the expected outcome `OpError::Unexpected`.
pub mod outcome {
    use super::*;

    pub fn done(r: Response) -> Result<(), OpError> {
        match r {
            Response::Done => Ok(()),
            other => Err(OpError::from_outcome(other)),
        }
    }

    /// Done, or refused for a reason `tolerated` accepts (e.g. "already
    /// set", "already gone").
    pub fn done_unless(r: Response, tolerated: impl Fn(&Rejection) -> bool) -> Result<(), OpError> {
        match r {
            Response::Rejected { rejection } if tolerated(&rejection) => Ok(()),
            other => done(other),
        }
    }

    pub fn user(r: Response) -> Result<User, OpError> {
        match r {
            Response::User { user } => Ok(*user),
            other => Err(OpError::from_outcome(other)),
        }
    }

    /// A group command: the group as it now is, or `None` when the command
    /// removed it.
    pub fn group(r: Response) -> Result<Option<Group>, OpError> {
        match r {
            Response::Group { group } => Ok(Some(*group)),
            Response::Done => Ok(None),
            other => Err(OpError::from_outcome(other)),
        }
    }

    pub fn token_created(r: Response) -> Result<String, OpError> {
        match r {
            Response::TokenCreated { id } => Ok(id),
            other => Err(OpError::from_outcome(other)),
        }
    }

    pub fn spawn_requested(r: Response) -> Result<u64, OpError> {
        match r {
            Response::SpawnRequested { generation } => Ok(generation),
            other => Err(OpError::from_outcome(other)),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn outcomes_as_data() {
            let refused = || Response::Rejected {
                rejection: Rejection::NoSuchUser { name: "x".into() },
            };
            assert!(done(Response::Done).is_ok());
            assert!(matches!(
                done(refused()),
                Err(OpError::Rejected(Rejection::NoSuchUser { .. }))
            ));
            assert!(matches!(user(Response::Done), Err(OpError::Unexpected(m)) if m == "Done"));
            assert!(matches!(group(Response::Done), Ok(None)));
            assert!(matches!(
                token_created(Response::TokenCreated { id: "a1".into() }),
                Ok(id) if id == "a1"
            ));
            assert!(matches!(
                spawn_requested(refused()),
                Err(OpError::Rejected(_))
            ));
            assert!(matches!(
                spawn_requested(Response::SpawnRequested { generation: 7 }),
                Ok(7)
            ));
        }
    }
}
