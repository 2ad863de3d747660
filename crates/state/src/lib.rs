//! The hub's replicated state and the one function that changes it.
//!
//! Everything a hub replica knows about users, their servers, routes and API
//! tokens lives in [`HubState`]. It changes only through
//! [`HubState::apply`], which is deterministic and does no I/O: given the same
//! sequence of `(log index, Request)` every replica ends in the same state,
//! byte for byte (see [`HubState::digest`]).
//!
//! This crate must never: read a clock, draw random numbers, touch the
//! network or the disk, or depend on the iteration order of a hash map in
//! anything it serializes. Timestamps and token hashes arrive inside the
//! commands, chosen by the proposer.

mod command;
mod dedupe;
mod groups;
pub mod ids;
mod login;
mod model;
mod names;
pub mod profiles;
mod services;
mod state;

pub use command::{Command, Rejection, Request, Response, SpawnLimits};
pub use dedupe::Dedupe;
pub use model::{
    Group, OAuthCode, Phase, Role, Route, RouteEvent, Server, Service, ServiceProcess, Session,
    SpawnerState, StopRecord, StoppedServer, Token, TokenOwner, User, DEFAULT_SERVER,
};
pub use names::{
    normalize_username, validate_display_name, validate_group_name, validate_server_name,
    validate_username, validate_username_at,
};
pub use profiles::{Overrides, Profile, Profiles, SlurmOverrides};
pub use state::{Applied, HubState, LOG_FORMAT_VERSION, MAX_COMMAND_BYTES};

/// Milliseconds since the Unix epoch, as chosen by the proposer of a command.
pub type Millis = u64;
