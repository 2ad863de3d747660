//! `/hub/api/user`, `/hub/api/users`, `/hub/api/users/{name}`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use quorumhub_state::{normalize_username, validate_username, Rejection};
use serde::Deserialize;
use serde_json::Value;

use super::model::{user_json, Servers};
use super::paging::Page;
use crate::auth::Caller;
use crate::error::{json_body, ApiError};
use crate::listing::{self, Selection, Sort, StateFilter};
use crate::Ctx;
use quorumhub_core::ops;
use quorumhub_core::scopes::Resource;

fn user_name(raw: &str) -> Result<String, ApiError> {
    let name = normalize_username(raw);
    validate_username(&name).map_err(|why| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("Invalid username {raw:?}: {why}"),
        )
    })?;
    Ok(name)
}

fn no_such_user(name: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("No such user: {name}"))
}

pub(crate) async fn whoami(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    hub.linearize().await?;
    if caller.service {
        // JupyterHub's answer for a service's token: its model and scopes.
        let mut v = hub
            .read(|s| {
                s.services
                    .get(&caller.name)
                    .map(|svc| super::services::service_json(s, svc))
            })
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("No such service: {}", caller.name),
                )
            })?;
        v["scopes"] = serde_json::json!(caller.scope_list());
        return Ok(Json(v));
    }
    // A caller may always see who it is (JupyterHub's identify scopes).
    let view = caller.scopes.clone().union(
        quorumhub_core::scopes::expand(
            quorumhub_core::scopes::IDENTIFY.iter().copied(),
            &caller.name,
            None,
        )
        .unwrap_or_default(),
    );
    let mut v = hub
        .read(|s| {
            s.user(&caller.name)
                .map(|u| user_json(s, u, Servers::Active, &view))
        })
        .ok_or_else(|| no_such_user(&caller.name))?
        .unwrap_or_else(|| serde_json::json!({"kind": "user", "name": caller.name}));
    // What HubAuth (jupyterhub-singleuser) reads: name, kind and scopes.
    v["kind"] = Value::from("user");
    v["scopes"] = serde_json::json!(caller.scope_list());
    v["token_id"] = serde_json::json!(caller.token_id);
    v["session_id"] = serde_json::json!(caller.session);
    if v.get("user_info").is_none() {
        v["user_info"] = Value::Null;
    }
    Ok(Json(v))
}

/// `GET /users`'s query, as JupyterHub reads it.
#[derive(Deserialize, Default)]
pub(crate) struct ListQuery {
    offset: Option<String>,
    limit: Option<String>,
    state: Option<String>,
    name_filter: Option<String>,
    sort: Option<String>,
    include_stopped_servers: Option<String>,
}

/// JupyterHub's `include_stopped_servers`: present and not `0`/`false`.
fn servers_shown(flag: Option<&str>) -> Servers {
    match flag.map(str::to_lowercase).as_deref() {
        None | Some("0") | Some("false") => Servers::Active,
        Some(_) => Servers::All,
    }
}

/// `?include_stopped_servers` on one user's model.
#[derive(Deserialize, Default)]
pub(crate) struct OneQuery {
    include_stopped_servers: Option<String>,
}

pub(crate) async fn list(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    // JupyterHub's post-filter: `list:users` limited to users or groups
    // lists those; limited to servers, nothing.
    if !caller.scopes.holds("list:users") || caller.scopes.holds_only_as_server("list:users") {
        return Err(crate::auth::forbidden("list:users"));
    }
    let Query(q) =
        query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("Invalid query: {e}")))?;
    let page = Page::of(&headers, q.offset.as_deref(), q.limit.as_deref())?;
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
    let sel = Selection {
        state: StateFilter::parse(q.state.as_deref().unwrap_or_default()).map_err(bad)?,
        name_filter: q
            .name_filter
            .as_deref()
            .filter(|f| !f.is_empty())
            .map(str::to_lowercase),
        sort: match q.sort.as_deref() {
            None => Sort::DEFAULT,
            Some(raw) => Sort::parse(raw).map_err(bad)?,
        },
    };
    let shown = servers_shown(q.include_stopped_servers.as_deref());
    hub.linearize().await?;
    let (users, total) = hub.read(|s| {
        let matching = listing::select(s, &sel, |u| {
            caller.scopes.allows("list:users", Resource::User(&u.name))
        });
        let total = matching.len();
        let page_items = matching
            .into_iter()
            .skip(page.offset)
            .take(page.limit)
            .filter_map(|u| user_json(s, u, shown, &caller.scopes))
            .collect::<Vec<_>>();
        (page_items, total)
    });
    let mut kept: Vec<(&str, String)> = Vec::new();
    if let Some(st) = &sel.state {
        kept.push(("state", st.as_param().to_string()));
    }
    if let Some(f) = &q.name_filter {
        kept.push(("name_filter", f.clone()));
    }
    if let Some(so) = &q.sort {
        kept.push(("sort", so.clone()));
    }
    if let Some(i) = &q.include_stopped_servers {
        kept.push(("include_stopped_servers", i.clone()));
    }
    Ok(Json(page.answer(
        users,
        total,
        &format!("{}/users", hub.config.hub_api_url),
        &kept,
    )))
}

pub(crate) async fn get_one(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
    Path(raw): Path<String>,
    query: Result<Query<OneQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let name = normalize_username(&raw);
    caller.require_any(READ_USER, Resource::User(&name))?;
    let Query(q) =
        query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("Invalid query: {e}")))?;
    let shown = servers_shown(q.include_stopped_servers.as_deref());
    hub.linearize().await?;
    hub.read(|s| {
        s.user(&name)
            .map(|u| shown_user(s, u, shown, &caller.scopes))
    })
    .map(Json)
    .ok_or_else(|| no_such_user(&name))
}

/// The scopes that each show some of a user model (JupyterHub's
/// `UserAPIHandler.get`).
const READ_USER: &[&str] = &[
    "read:users",
    "read:users:name",
    "read:servers",
    "read:users:groups",
    "read:users:activity",
    "read:roles:users",
];

/// A model the caller was allowed to ask for: at least its kind and name.
fn shown_user(
    s: &quorumhub_state::HubState,
    u: &quorumhub_state::User,
    servers: Servers,
    view: &quorumhub_core::scopes::Scopes,
) -> Value {
    user_json(s, u, servers, view)
        .unwrap_or_else(|| serde_json::json!({"kind": "user", "name": u.name}))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBody {
    #[serde(default)]
    admin: bool,
    /// Accepted for compatibility; groups arrive with a later version.
    #[serde(default)]
    #[allow(dead_code)]
    groups: Vec<String>,
}

async fn create(hub: &Ctx, caller: &Caller, name: String, admin: bool) -> Result<Value, ApiError> {
    let user = ops::users::create(hub, name, admin).await?;
    Ok(hub.read(|s| shown_user(s, &user, Servers::Active, &caller.scopes)))
}

pub(crate) async fn create_one(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
    Path(raw): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.require("admin:users", Resource::Any)?;
    let body: CreateBody = json_body(&body)?.unwrap_or_default();
    let name = user_name(&raw)?;
    let user = create(&hub, &caller, name, body.admin).await?;
    Ok((StatusCode::CREATED, Json(user)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateMany {
    usernames: Vec<String>,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    #[allow(dead_code)]
    groups: Vec<String>,
}

pub(crate) async fn create_many(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.require("admin:users", Resource::Any)?;
    let body: CreateMany = json_body(&body)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "Must specify at least one user to create",
        )
    })?;
    let names = body
        .usernames
        .iter()
        .map(|n| user_name(n))
        .collect::<Result<Vec<_>, _>>()?;
    if names.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "Must specify at least one user to create",
        ));
    }
    let mut created = Vec::new();
    for name in names {
        match create(&hub, &caller, name, body.admin).await {
            Ok(u) => created.push(u),
            Err(e) if e.status() == StatusCode::CONFLICT => continue,
            Err(e) => return Err(e),
        }
    }
    if created.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("All {} users already exist", body.usernames.len()),
        ));
    }
    Ok((StatusCode::CREATED, Json(Value::Array(created))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchBody {
    admin: Option<bool>,
    name: Option<String>,
}

pub(crate) async fn patch(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
    Path(raw): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let name = normalize_username(&raw);
    caller.require("admin:users", Resource::User(&name))?;
    let body: PatchBody =
        json_body(&body)?.ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "Empty body"))?;
    // Renaming (log format 2): refused by the cluster-version gate with 503
    // until every replica runs a release that knows it.
    let name = match body.name.as_deref().map(normalize_username) {
        Some(new_name) if new_name != name => {
            crate::limits::check(
                &hub.config.limits,
                crate::limits::Field::UserName(&new_name),
            )?;
            let user = ops::users::rename(&hub, name, new_name.clone()).await?;
            if body.admin.is_none() {
                return Ok(Json(
                    hub.read(|s| shown_user(s, &user, Servers::Active, &caller.scopes)),
                ));
            }
            new_name
        }
        _ => name,
    };
    let Some(admin) = body.admin else {
        hub.linearize().await?;
        return hub
            .read(|s| {
                s.user(&name)
                    .map(|u| Json(shown_user(s, u, Servers::Active, &caller.scopes)))
            })
            .ok_or_else(|| no_such_user(&name));
    };
    let user = ops::users::set_admin(&hub, name, admin).await?;
    Ok(Json(hub.read(|s| {
        shown_user(s, &user, Servers::Active, &caller.scopes)
    })))
}

pub(crate) async fn delete(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    let name = normalize_username(&raw);
    caller.require("delete:users", Resource::User(&name))?;
    if name == caller.name && !caller.service {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "Cannot delete yourself!",
        ));
    }
    // JupyterHub stops a user's servers before deleting the user.
    hub.linearize().await?;
    let servers: Vec<String> = hub
        .read(|s| s.user(&name).map(|u| u.servers.keys().cloned().collect()))
        .ok_or_else(|| no_such_user(&name))?;
    for server in &servers {
        match quorumhub_core::ops::servers::stop(&hub, &name, server, false).await? {
            Ok(()) | Err(Rejection::NotRunning { .. }) | Err(Rejection::Pending { .. }) => {}
            Err(r) => return Err(r.into()),
        }
    }
    if !servers.is_empty() {
        let gone =
            quorumhub_core::ops::servers::wait_state(&hub, hub.config.slow_spawn_timeout, |s| {
                s.user(&name).is_none_or(|u| u.servers.is_empty())
            })
            .await;
        if !gone {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("{name}'s servers are still stopping; try again in a moment"),
            ));
        }
    }
    ops::users::delete(&hub, name).await?;
    Ok(StatusCode::NO_CONTENT)
}
