//! Groups: created (with members), deleted, members added or removed,
//! properties set, each answering the group as the state now holds it
//! (`None` once the command removed it).

use quorumhub_state::{Command, Group};

use super::{outcome, OpError};
use crate::cluster::Cluster;

pub async fn create(
    hub: &dyn Cluster,
    name: String,
    users: Vec<String>,
) -> Result<Option<Group>, OpError> {
    outcome::group(hub.propose(Command::CreateGroup { name, users }).await?)
}

pub async fn delete(hub: &dyn Cluster, name: String) -> Result<Option<Group>, OpError> {
    outcome::group(hub.propose(Command::DeleteGroup { name }).await?)
}

pub async fn add_members(
    hub: &dyn Cluster,
    name: String,
    users: Vec<String>,
) -> Result<Option<Group>, OpError> {
    outcome::group(
        hub.propose(Command::AddGroupMembers { name, users })
            .await?,
    )
}

pub async fn remove_members(
    hub: &dyn Cluster,
    name: String,
    users: Vec<String>,
) -> Result<Option<Group>, OpError> {
    outcome::group(
        hub.propose(Command::RemoveGroupMembers { name, users })
            .await?,
    )
}

pub async fn set_properties(
    hub: &dyn Cluster,
    name: String,
    properties: serde_json::Value,
) -> Result<Option<Group>, OpError> {
    outcome::group(
        hub.propose(Command::SetGroupProperties { name, properties })
            .await?,
    )
}
