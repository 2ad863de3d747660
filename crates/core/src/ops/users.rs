//! Users: created, renamed, made admin or not, deleted, each answering
//! the user as the state now holds it.

use quorumhub_state::{Command, User};

use super::{outcome, OpError};
use crate::cluster::Cluster;

pub async fn create(hub: &dyn Cluster, name: String, admin: bool) -> Result<User, OpError> {
    outcome::user(hub.propose(Command::CreateUser { name, admin }).await?)
}

pub async fn rename(hub: &dyn Cluster, name: String, new_name: String) -> Result<User, OpError> {
    outcome::user(hub.propose(Command::RenameUser { name, new_name }).await?)
}

pub async fn set_admin(hub: &dyn Cluster, name: String, admin: bool) -> Result<User, OpError> {
    outcome::user(hub.propose(Command::SetAdmin { name, admin }).await?)
}

pub async fn delete(hub: &dyn Cluster, name: String) -> Result<(), OpError> {
    outcome::done(hub.propose(Command::DeleteUser { name }).await?)
}

/// Record that `user` (and `server_name`'s server) was active at `at` (ms).
pub async fn record_activity(
    hub: &dyn Cluster,
    user: String,
    server_name: Option<String>,
    at: u64,
) -> Result<(), OpError> {
    outcome::done(
        hub.propose(Command::RecordActivity {
            user,
            server_name,
            at,
        })
        .await?,
    )
}

/// Set (or with `None` clear) `name`'s password hash.
pub async fn set_password(
    hub: &dyn Cluster,
    name: String,
    hash: Option<String>,
) -> Result<(), OpError> {
    outcome::done(hub.propose(Command::SetPassword { name, hash }).await?)
}

/// Link `name` to an OpenID Connect identity (creating the user on first
/// sign-in), setting its admin flag when `admin` says; refused for a local
/// (password) account or a user linked to another identity.
pub async fn link_identity(
    hub: &dyn Cluster,
    name: String,
    subject: String,
    admin: Option<bool>,
) -> Result<User, OpError> {
    outcome::user(
        hub.propose(Command::LinkIdentity {
            name,
            subject,
            admin,
        })
        .await?,
    )
}
