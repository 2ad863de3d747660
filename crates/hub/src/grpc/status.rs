//! Where the hub's errors become gRPC statuses, each kind in one place:
//! the replica's (`HubError`), the state's refusals (`Rejection`), leader
//! transfer's and membership changes'. No other module of the hub builds a
//! `tonic::Status` from its own errors (test: tests/layering.rs).

use openraft::error::{ClientWriteError, RaftError};
use quorumhub_raft::{Member as RaftMember, NodeId};
use quorumhub_state::Rejection;
use tonic::Status;

use crate::hub::HubError;

pub(crate) fn status(e: HubError) -> Status {
    match e {
        HubError::WriteUnavailable(_) | HubError::ReadUnavailable(_) => {
            Status::unavailable(e.to_string())
        }
        HubError::ShuttingDown => Status::unavailable(e.to_string()),
        // "Not implemented by this cluster (yet)": forwarders pass it on as
        // a refusal instead of retrying.
        HubError::NotYetEnabled(_) => Status::unimplemented(e.to_string()),
        HubError::NotLeader => Status::failed_precondition(e.to_string()),
        HubError::Internal(_) => Status::internal(e.to_string()),
        HubError::UserBusy { .. } => Status::resource_exhausted(e.to_string()),
        HubError::Overloaded { .. } => Status::unavailable(e.to_string()),
    }
}

/// A use case's error: the cluster's, the state's refusal, or a bug.
pub(crate) fn op_status(e: quorumhub_core::OpError) -> Status {
    use quorumhub_core::OpError;
    match e {
        OpError::Cluster(h) => status(h),
        OpError::Rejected(r) => rejection_status(&r),
        e @ OpError::Unexpected(_) => Status::internal(e.to_string()),
    }
}

pub(crate) fn transfer_status(e: crate::transfer::TransferError) -> Status {
    use crate::transfer::TransferError::*;
    match e {
        NoOtherVoter => Status::failed_precondition(e.to_string()),
        NotAVoter(_) => Status::invalid_argument(e.to_string()),
        NoAddress(_) => Status::internal(e.to_string()),
        NotCaughtUp(_) | DidNotMove => Status::unavailable(e.to_string()),
        Hub(h) => status(h),
    }
}

pub(crate) fn rejection_status(r: &Rejection) -> Status {
    match r {
        Rejection::UserExists { .. }
        | Rejection::TokenExists { .. }
        | Rejection::ClientIdTaken { .. } => Status::already_exists(r.to_string()),
        Rejection::NoSuchUser { .. }
        | Rejection::NoSuchToken { .. }
        | Rejection::NotRunning { .. } => Status::not_found(r.to_string()),
        Rejection::InvalidName { .. } | Rejection::CommandTooLarge { .. } => {
            Status::invalid_argument(r.to_string())
        }
        _ => Status::failed_precondition(r.to_string()),
    }
}

pub(crate) fn membership_status(
    e: RaftError<NodeId, ClientWriteError<NodeId, RaftMember>>,
) -> Status {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
            Status::unavailable("leadership changed during the membership change; retry")
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            Status::failed_precondition(e.to_string())
        }
        RaftError::Fatal(e) => Status::unavailable(e.to_string()),
    }
}
