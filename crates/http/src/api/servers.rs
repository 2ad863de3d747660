//! One server: `/hub/api/users/{name}/server` (the default one) and
//! `/hub/api/users/{name}/servers/{server}`, as JupyterHub 6 has them:
//! GET the model, PUT a named server without starting it, PATCH a stopped
//! one, POST to start, DELETE to stop (with `{"remove": true}` also to
//! forget it).
//!
//! Starting and stopping only record the wish (RequestSpawn / RequestStop);
//! the leader's controller does the work. Like JupyterHub, the API waits up
//! to the slow spawn timeout and answers 201/204 when done, 202 while still
//! pending.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use quorumhub_state::{normalize_username, HubState, Rejection, StoppedServer};
use serde_json::{Map, Value};

use super::model::{server_json, stopped_json};
use crate::auth::Caller;
use crate::error::{json_body, ApiError};
use crate::limits::{check, Field};
use crate::Ctx;
use quorumhub_core::ops::servers;
use quorumhub_core::scopes::Resource;

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

/// The user and server a request names, checked against the limits, and
/// the caller's `scope` on that server.
fn target(
    hub: &Ctx,
    caller: &Caller,
    scope: &str,
    raw_user: &str,
    server: &str,
) -> Result<String, ApiError> {
    let user = normalize_username(raw_user);
    check(&hub.config.limits, Field::UserName(&user))?;
    check(&hub.config.limits, Field::ServerName(server))?;
    caller.require(
        scope,
        Resource::Server {
            user: &user,
            name: server,
        },
    )?;
    Ok(user)
}

/// A start's or a creation's body (JupyterHub's `get_server_json_body`):
/// `{"display_name": .., "user_options": {..}}`, or, in the older shape, the
/// options themselves. Empty (or `{}`) is neither.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ServerBody {
    pub display_name: Option<String>,
    /// `null`: none given (a start then reuses the last ones).
    pub user_options: Value,
}

pub(crate) fn server_body(body: &[u8]) -> Result<ServerBody, ApiError> {
    let Some(body) = json_body::<Value>(body)? else {
        return Ok(ServerBody::default());
    };
    let Value::Object(mut map) = body else {
        return Err(bad("Body must be a JSON object"));
    };
    if map.is_empty() {
        return Ok(ServerBody::default());
    }
    if map.get("display_name").is_some_and(|d| !d.is_string()) {
        return Err(bad("display_name must be a string"));
    }
    if map
        .get("user_options")
        .is_some_and(|o| !(o.is_null() || o.is_object()))
    {
        return Err(bad("user_options must be an object or null"));
    }
    if !map.contains_key("display_name") && !map.contains_key("user_options") {
        return Ok(ServerBody {
            display_name: None,
            user_options: Value::Object(map),
        });
    }
    Ok(ServerBody {
        display_name: map
            .remove("display_name")
            .and_then(|d| d.as_str().map(str::to_string)),
        user_options: map.remove("user_options").unwrap_or(Value::Null),
    })
}

/// Options that name a profile this hub does not offer, or set what only
/// the operator sets (a partition, a memory limit, ...), are refused (400,
/// with the profiles it offers); other keys are the user's own.
fn check_options(hub: &Ctx, user_options: &Value) -> Result<(), ApiError> {
    check(&hub.config.limits, Field::UserOptions(user_options))?;
    match hub.config.profiles.check(user_options) {
        Ok(_) => Ok(()),
        Err(e) => Err(bad(e.to_string())),
    }
}

fn check_display_name(name: &str) -> Result<(), ApiError> {
    quorumhub_state::validate_display_name(name)
        .map_err(|why| bad(format!("Invalid display_name: {why}")))
}

/// JupyterHub's `named_server_limit_per_user` (400, JupyterHub's answer),
/// after a read barrier.
async fn check_named_limit(hub: &Ctx, user: &str, server: &str) -> Result<(), ApiError> {
    let limit = hub.config.limits.named_server_limit_per_user;
    hub.linearize().await?;
    match hub.read(|s| servers::named_limit_refusal(s, user, server, limit)) {
        Some(message) => Err(bad(message)),
        None => Ok(()),
    }
}

/// The model of `user`'s server `server`, running or stopped. The default
/// server always exists: before its first start it is stopped, with no
/// options.
fn model(s: &HubState, user: &str, server: &str) -> Option<Value> {
    let u = s.user(user)?;
    match (u.servers.get(server), u.stopped.get(server)) {
        (Some(sv), _) => Some(server_json(u, sv)),
        (None, Some(st)) => Some(stopped_json(u, st)),
        (None, None) if server.is_empty() => Some(stopped_json(
            u,
            &StoppedServer {
                name: String::new(),
                display_name: None,
                user_options: Value::Null,
                last_activity: None,
            },
        )),
        (None, None) => None,
    }
}

fn no_such_user(user: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("No such user: {user}"))
}

fn no_such_server(user: &str, server: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("{user} has no server named '{server}'"),
    )
}

async fn get(
    hub: &Ctx,
    caller: &Caller,
    raw_user: &str,
    server: &str,
) -> Result<Json<Value>, ApiError> {
    let user = target(hub, caller, "read:servers", raw_user, server)?;
    hub.linearize().await?;
    match hub.read(|s| s.user(&user).is_some().then(|| model(s, &user, server))) {
        None => Err(no_such_user(&user)),
        Some(None) => Err(no_such_server(&user, server)),
        Some(Some(v)) => Ok(Json(v)),
    }
}

async fn create(
    hub: &Ctx,
    caller: &Caller,
    raw_user: &str,
    server: &str,
    body: &[u8],
) -> Result<Response, ApiError> {
    let user = target(hub, caller, "start:servers", raw_user, server)?;
    if server.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("User {user} already has a default server"),
        ));
    }
    let body = server_body(body)?;
    check_options(hub, &body.user_options)?;
    if let Some(d) = &body.display_name {
        check_display_name(d)?;
    }
    check_named_limit(hub, &user, server).await?;
    servers::create(
        hub,
        &user,
        server,
        body.display_name.clone(),
        body.user_options.clone(),
    )
    .await?;
    let created = StoppedServer {
        name: server.to_string(),
        display_name: body.display_name,
        user_options: body.user_options,
        last_activity: None,
    };
    let u = hub
        .read(|s| s.user(&user).cloned())
        .ok_or_else(|| no_such_user(&user))?;
    Ok((StatusCode::CREATED, Json(stopped_json(&u, &created))).into_response())
}

const PATCHABLE: [&str; 3] = ["display_name", "name", "user_options"];

async fn patch(
    hub: &Ctx,
    caller: &Caller,
    raw_user: &str,
    server: &str,
    body: &[u8],
) -> Result<Json<Value>, ApiError> {
    let user = target(hub, caller, "start:servers", raw_user, server)?;
    let body: Map<String, Value> = match json_body::<Value>(body)? {
        None => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(bad("Body must be a JSON object")),
    };
    if body.is_empty() {
        return Err(bad("Must specify at least one field to modify."));
    }
    let mut unexpected: Vec<&str> = body
        .keys()
        .map(String::as_str)
        .filter(|k| !PATCHABLE.contains(k))
        .collect();
    if !unexpected.is_empty() {
        unexpected.sort_unstable();
        return Err(bad(format!(
            "Unexpected fields: {}, supported fields: {}",
            unexpected.join(", "),
            PATCHABLE.join(", ")
        )));
    }
    let string = |key: &str| -> Result<Option<String>, ApiError> {
        match body.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(format!("{key} must be a string"))),
        }
    };
    let new_name = string("name")?;
    let display_name = string("display_name")?;
    let user_options = match body.get("user_options") {
        None => None,
        Some(o @ Value::Object(_)) => Some(o.clone()),
        Some(_) => return Err(bad("user_options must be a dict")),
    };
    if let Some(n) = &new_name {
        check(&hub.config.limits, Field::ServerName(n))?;
        if n.is_empty() {
            return Err(bad("A server cannot be renamed to the default server"));
        }
        // Renaming the default server makes one more named server.
        if server.is_empty() {
            check_named_limit(hub, &user, n).await?;
        }
    }
    if let Some(d) = &display_name {
        check_display_name(d)?;
    }
    if let Some(o) = &user_options {
        check_options(hub, o)?;
    }
    servers::update(
        hub,
        &user,
        server,
        servers::Update {
            new_name: new_name.clone(),
            display_name,
            user_options,
        },
    )
    .await?;
    let name = new_name.unwrap_or_else(|| server.to_string());
    hub.linearize().await?;
    hub.read(|s| model(s, &user, &name))
        .map(Json)
        .ok_or_else(|| no_such_server(&user, &name))
}

async fn start(
    hub: &Ctx,
    caller: &Caller,
    raw_user: &str,
    server: &str,
    body: &[u8],
) -> Result<StatusCode, ApiError> {
    let user = target(hub, caller, "start:servers", raw_user, server)?;
    let body = server_body(body)?;
    check_options(hub, &body.user_options)?;
    // The default server's display name is JupyterHub's empty one.
    let display_name = body.display_name.filter(|_| !server.is_empty());
    if let Some(d) = &display_name {
        check_display_name(d)?;
    }
    if !server.is_empty() {
        check_named_limit(hub, &user, server).await?;
    }
    let limits = hub.config.limits.spawn_limits();
    let spawned = servers::spawn(hub, &user, server, body.user_options, display_name, limits);
    let generation = match spawned.await {
        Ok(g) => g,
        // JupyterHub: a start while one is pending is accepted, not refused.
        Err(quorumhub_core::ops::OpError::Rejected(Rejection::Pending { pending, .. }))
            if pending == "spawn" =>
        {
            return Ok(StatusCode::ACCEPTED)
        }
        Err(e) => return Err(e.into()),
    };
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

pub(crate) fn label(server: &str) -> String {
    if server.is_empty() {
        String::new()
    } else {
        format!(" {server}")
    }
}

/// `DELETE`'s optional body.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DeleteBody {
    #[serde(default)]
    remove: bool,
}

async fn stop(
    hub: &Ctx,
    caller: &Caller,
    raw_user: &str,
    server: &str,
    body: &[u8],
) -> Result<StatusCode, ApiError> {
    let user = target(hub, caller, "delete:servers", raw_user, server)?;
    let remove = json_body::<DeleteBody>(body)?.unwrap_or_default().remove;
    if remove && server.is_empty() {
        return Err(bad("Cannot delete the default server"));
    }
    hub.linearize().await?;
    let (active, recorded) = hub
        .read(|s| {
            s.user(&user).map(|u| {
                (
                    u.servers.contains_key(server),
                    u.stopped.contains_key(server),
                )
            })
        })
        .ok_or_else(|| no_such_user(&user))?;
    if !active && !recorded && !server.is_empty() {
        return Err(no_such_server(&user, server));
    }
    if active {
        match servers::stop(hub, &user, server, remove).await? {
            Ok(()) => {}
            Err(Rejection::Pending { pending, .. }) if pending == "stop" => {
                return Ok(StatusCode::ACCEPTED)
            }
            // Stopped since the read: as for a stopped server, below.
            Err(Rejection::NotRunning { .. }) => {}
            Err(r) => return Err(r.into()),
        }
        let gone = servers::wait_state(hub, hub.config.slow_spawn_timeout, |s| {
            s.server(&user, server).is_none()
        })
        .await;
        if !gone {
            return Ok(StatusCode::ACCEPTED);
        }
        if !remove {
            return Ok(StatusCode::NO_CONTENT);
        }
    }
    // Stopped (JupyterHub answers 204 here too): forget it if asked.
    if remove {
        match servers::remove(hub, &user, server).await {
            Ok(())
            | Err(quorumhub_core::ops::OpError::Rejected(Rejection::NoSuchServer { .. })) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn get_default(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
    Path(user): Path<String>,
) -> Result<Json<Value>, ApiError> {
    get(&hub, &caller, &user, "").await
}

pub(crate) async fn get_named(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
    Path((user, server)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    get(&hub, &caller, &user, &server).await
}

pub(crate) async fn create_default(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
    Path(user): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    create(&hub, &caller, &user, "", &body).await
}

pub(crate) async fn create_named(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
    Path((user, server)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    create(&hub, &caller, &user, &server, &body).await
}

pub(crate) async fn patch_default(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
    Path(user): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    patch(&hub, &caller, &user, "", &body).await
}

pub(crate) async fn patch_named(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
    Path((user, server)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    patch(&hub, &caller, &user, &server, &body).await
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
    start(&hub, &caller, &user, &server, &body).await
}

pub(crate) async fn stop_default(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
    Path(user): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    stop(&hub, &caller, &user, "", &body).await
}

pub(crate) async fn stop_named(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
    Path((user, server)): Path<(String, String)>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    stop(&hub, &caller, &user, &server, &body).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_bodies_as_data() {
        let ok = |display: Option<&str>, options: Value| ServerBody {
            display_name: display.map(str::to_string),
            user_options: options,
        };
        let cases: Vec<(&str, Result<ServerBody, &str>)> = vec![
            ("", Ok(ok(None, Value::Null))),
            ("{}", Ok(ok(None, Value::Null))),
            // The older shape: the body is the options.
            (r#"{"image": "x"}"#, Ok(ok(None, json!({"image": "x"})))),
            (
                r#"{"display_name": "GPU", "user_options": {"image": "x"}}"#,
                Ok(ok(Some("GPU"), json!({"image": "x"}))),
            ),
            (
                r#"{"display_name": "GPU"}"#,
                Ok(ok(Some("GPU"), Value::Null)),
            ),
            (r#"{"user_options": null}"#, Ok(ok(None, Value::Null))),
            (r#"{"user_options": {}}"#, Ok(ok(None, json!({})))),
            ("[]", Err("Body must be a JSON object")),
            (
                r#"{"display_name": 3}"#,
                Err("display_name must be a string"),
            ),
            (
                r#"{"display_name": null}"#,
                Err("display_name must be a string"),
            ),
            (
                r#"{"user_options": [1]}"#,
                Err("user_options must be an object or null"),
            ),
        ];
        for (body, want) in cases {
            let got = server_body(body.as_bytes()).map_err(|e| e.parts().1);
            assert_eq!(got, want.map_err(str::to_string), "{body}");
        }
    }
}
