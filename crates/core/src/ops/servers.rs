//! Asking for a server to start or stop, and waiting for the replicated
//! state to show the outcome.

use std::time::Duration;

use quorumhub_state::{Command, HubState, Rejection, Response, SpawnLimits};

use super::OpError;
use crate::cluster::Cluster;
use crate::error::HubError;

/// Wait until `pred` holds on the locally applied state.
pub async fn wait_state(
    hub: &dyn Cluster,
    limit: Duration,
    pred: impl Fn(&HubState) -> bool,
) -> bool {
    let mut rx = hub.subscribe();
    let check = || hub.read(&pred);
    let waited = tokio::time::timeout(limit, async {
        loop {
            if check() {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    waited.is_ok() && check()
}

/// The spawner's reason for the end of spawn `generation` of `user`'s
/// `server`, once recorded (log format 5).
pub fn stop_reason(s: &HubState, user: &str, server: &str, generation: u64) -> Option<String> {
    s.user(user)
        .and_then(|u| u.last_stop.as_ref())
        .filter(|r| r.server_name == server && r.generation == generation)
        .map(|r| r.reason.clone())
}

/// JupyterHub's `named_server_limit_per_user`: the refusal (its message,
/// answered with 400) of a new named server `server` of `user` past
/// `limit` named servers that exist, running or stopped, other than
/// `server` itself; `None` if it may be created.
pub fn named_limit_refusal(s: &HubState, user: &str, server: &str, limit: usize) -> Option<String> {
    if server.is_empty() {
        return None;
    }
    let u = s.user(user)?;
    let exists = u.servers.contains_key(server) || u.stopped.contains_key(server);
    let named = u
        .servers
        .keys()
        .chain(u.stopped.keys())
        .filter(|k| !k.is_empty())
        .count();
    (!exists && named >= limit).then(|| {
        format!(
            "User {user} already has the maximum of {limit} named servers.  One must be \
             deleted before a new server can be created (--named-server-limit-per-user)"
        )
    })
}

/// Ask for a spawn; its generation once recorded. `user_options` `null`
/// reuses the server's last options (log format 7); a `display_name`
/// needs log format 7. `limits` (JupyterHub's spawn limits) are checked
/// when the request is applied, from log format 8 on; before (mid-upgrade
/// from an older release) they are not enforced.
pub async fn spawn(
    hub: &dyn Cluster,
    user: &str,
    server: &str,
    user_options: serde_json::Value,
    display_name: Option<String>,
    limits: SpawnLimits,
) -> Result<u64, OpError> {
    let limits = limits
        .if_any()
        .filter(|_| hub.read(|s| s.cluster_version >= 8));
    super::outcome::spawn_requested(
        hub.propose(Command::RequestSpawn {
            user: user.to_string(),
            server_name: server.to_string(),
            user_options,
            display_name,
            limits,
        })
        .await?,
    )
}

/// Record a named server without starting it (log format 7).
pub async fn create(
    hub: &dyn Cluster,
    user: &str,
    server: &str,
    display_name: Option<String>,
    user_options: serde_json::Value,
) -> Result<(), OpError> {
    super::outcome::done(
        hub.propose(Command::CreateServer {
            user: user.to_string(),
            server_name: server.to_string(),
            display_name,
            user_options,
        })
        .await?,
    )
}

/// What `PATCH` changes on a server that does not run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Update {
    pub new_name: Option<String>,
    pub display_name: Option<String>,
    pub user_options: Option<serde_json::Value>,
}

/// Change a stopped server's record (log format 7).
pub async fn update(
    hub: &dyn Cluster,
    user: &str,
    server: &str,
    update: Update,
) -> Result<(), OpError> {
    super::outcome::done(
        hub.propose(Command::UpdateServer {
            user: user.to_string(),
            server_name: server.to_string(),
            new_name: update.new_name,
            display_name: update.display_name,
            user_options: update.user_options,
        })
        .await?,
    )
}

/// Forget a stopped server's record (log format 7).
pub async fn remove(hub: &dyn Cluster, user: &str, server: &str) -> Result<(), OpError> {
    super::outcome::done(
        hub.propose(Command::RemoveServer {
            user: user.to_string(),
            server_name: server.to_string(),
        })
        .await?,
    )
}

/// Ask for a spawn; a server already running or starting is fine (the
/// pages then show it).
pub async fn ensure_spawning(
    hub: &dyn Cluster,
    user: &str,
    server: &str,
    user_options: serde_json::Value,
    limits: SpawnLimits,
) -> Result<(), OpError> {
    match spawn(hub, user, server, user_options, None, limits).await {
        Ok(_) => Ok(()),
        Err(OpError::Rejected(Rejection::AlreadyRunning { .. })) => Ok(()),
        Err(OpError::Rejected(Rejection::Pending { pending, .. })) if pending == "spawn" => Ok(()),
        Err(e) => Err(e),
    }
}

/// Request a stop: `Ok(Ok(()))` once recorded, `Ok(Err(_))` when the state
/// refuses it, `Err(_)` when it could not be committed at all. `remove`
/// (log format 7) forgets the server's record once it has stopped.
pub async fn stop(
    hub: &dyn Cluster,
    user: &str,
    server: &str,
    remove: bool,
) -> Result<Result<(), Rejection>, HubError> {
    let outcome = hub
        .propose(Command::RequestStop {
            user: user.to_string(),
            server_name: server.to_string(),
            remove,
        })
        .await?;
    Ok(match outcome {
        Response::Rejected { rejection } => Err(rejection),
        _ => Ok(()),
    })
}

/// Ask for a stop; a server already stopping, or not running, is fine.
pub async fn ensure_stopping(hub: &dyn Cluster, user: &str, server: &str) -> Result<(), OpError> {
    match stop(hub, user, server, false).await? {
        Ok(()) => Ok(()),
        Err(Rejection::Pending { pending, .. }) if pending == "stop" => Ok(()),
        Err(Rejection::NotRunning { .. }) => Ok(()),
        Err(r) => Err(r.into()),
    }
}
