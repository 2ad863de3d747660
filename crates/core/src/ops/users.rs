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
