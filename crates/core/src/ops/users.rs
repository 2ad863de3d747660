//! Users: created, renamed, made admin or not, deleted, each answering
//! the user as the state now holds it.

use quorumhub_state::{Command, User};

use super::{outcome, OpError};
use crate::hub::Hub;

pub(crate) async fn create(hub: &Hub, name: String, admin: bool) -> Result<User, OpError> {
    outcome::user(hub.propose(Command::CreateUser { name, admin }).await?)
}

pub(crate) async fn rename(hub: &Hub, name: String, new_name: String) -> Result<User, OpError> {
    outcome::user(hub.propose(Command::RenameUser { name, new_name }).await?)
}

pub(crate) async fn set_admin(hub: &Hub, name: String, admin: bool) -> Result<User, OpError> {
    outcome::user(hub.propose(Command::SetAdmin { name, admin }).await?)
}

pub(crate) async fn delete(hub: &Hub, name: String) -> Result<(), OpError> {
    outcome::done(hub.propose(Command::DeleteUser { name }).await?)
}

/// Record that `user` (and `server_name`'s server) was active at `at` (ms).
pub(crate) async fn record_activity(
    hub: &Hub,
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
