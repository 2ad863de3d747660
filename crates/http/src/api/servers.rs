//! Starting and stopping servers: `/hub/api/users/{name}/server` and
//! `/hub/api/users/{name}/servers/{server}`.
//!
//! The API only records the wish (RequestSpawn / RequestStop); the leader's
//! controller does the work. Like JupyterHub, the API waits up to the slow
//! spawn timeout and answers 201/204 when done, 202 while still pending.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use quorumhub_state::{normalize_username, HubState, Rejection};

use crate::auth::Caller;
use crate::error::{json_body, ApiError};
use crate::limits::{check, quota_full, Field};
use crate::Ctx;
use quorumhub_core::ops::servers;
use quorumhub_core::scopes::Resource;

async fn start(
    hub: &Ctx,
    caller: &Caller,
    raw_user: &str,
    server: &str,
    body: &[u8],
) -> Result<StatusCode, ApiError> {
    let user = normalize_username(raw_user);
    let limits = &hub.config.limits;
    check(limits, Field::UserName(&user))?;
    caller.require(
        "start:servers",
        Resource::Server {
            user: &user,
            name: server,
        },
    )?;
    let user_options: serde_json::Value =
        json_body::<serde_json::Value>(body)?.unwrap_or(serde_json::Value::Null);
    check(limits, Field::UserOptions(&user_options))?;
    if !server.is_empty() {
        // JupyterHub's named_server_limit_per_user, counted on this
        // replica's state after the read barrier.
        hub.linearize().await?;
        let named = hub.read(|s| {
            s.user(&user).map(|u| {
                (
                    u.servers.contains_key(server),
                    u.servers.keys().filter(|k| !k.is_empty()).count(),
                )
            })
        });
        if let Some((false, n)) = named {
            if n >= limits.named_server_limit_per_user {
                return Err(quota_full(format!(
                    "User {user} already has the maximum of {} named servers. One must be \
                     deleted before a new server can be created (--named-server-limit-per-user)",
                    limits.named_server_limit_per_user
                )));
            }
        }
    }
    let generation = servers::spawn(hub, &user, server, user_options).await?;
    let settled = |s: &HubState| match s.server(&user, server) {
        Some(srv) if srv.generation == generation => srv.ready() || srv.pending() == Some("stop"),
        _ => true,
    };
    servers::wait_state(hub, hub.config.slow_spawn_timeout, settled).await;
    let outcome = hub.read(|s| {
        s.server(&user, server)
            .filter(|s| s.generation == generation)
            .map(|s| (s.ready(), s.pending()))
    });
    match outcome {
        Some((true, _)) => Ok(StatusCode::CREATED),
        Some((false, Some("spawn"))) => Ok(StatusCode::ACCEPTED),
        _ => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            match hub.read(|s| servers::stop_reason(s, &user, server, generation)) {
                Some(reason) => {
                    format!("{user}'s server{} failed to start: {reason}", label(server))
                }
                None => format!(
                    "{user}'s server{} failed to start; see the hub leader's log",
                    label(server)
                ),
            },
        )),
    }
}

fn label(server: &str) -> String {
    if server.is_empty() {
        String::new()
    } else {
        format!(" {server}")
    }
}

async fn stop_api(
    hub: &Ctx,
    caller: &Caller,
    raw_user: &str,
    server: &str,
) -> Result<StatusCode, ApiError> {
    let user = normalize_username(raw_user);
    check(&hub.config.limits, Field::UserName(&user))?;
    check(&hub.config.limits, Field::ServerName(server))?;
    caller.require(
        "delete:servers",
        Resource::Server {
            user: &user,
            name: server,
        },
    )?;
    match servers::stop(hub, &user, server).await? {
        Ok(()) => {}
        Err(Rejection::Pending { pending, .. }) if pending == "stop" => {
            return Ok(StatusCode::ACCEPTED)
        }
        Err(Rejection::NotRunning { .. }) if !server.is_empty() => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("{user} has no server named '{server}'"),
            ))
        }
        Err(r) => return Err(r.into()),
    }
    let gone = servers::wait_state(hub, hub.config.slow_spawn_timeout, |s| {
        s.server(&user, server).is_none()
    })
    .await;
    Ok(if gone {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::ACCEPTED
    })
}

pub(crate) async fn start_default(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
    Path(user): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    start(&hub, &caller, &user, "", &body).await
}

pub(crate) async fn start_named(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
    Path((user, server)): Path<(String, String)>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    check(&hub.config.limits, Field::ServerName(&server))?;
    start(&hub, &caller, &user, &server, &body).await
}

pub(crate) async fn stop_default(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
    Path(user): Path<String>,
) -> Result<StatusCode, ApiError> {
    stop_api(&hub, &caller, &user, "").await
}

pub(crate) async fn stop_named(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
    Path((user, server)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    stop_api(&hub, &caller, &user, &server).await
}
