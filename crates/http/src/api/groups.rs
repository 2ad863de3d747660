//! `/hub/api/groups`: JupyterHub's groups API.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use quorumhub_core::ops::groups;
use quorumhub_state::Group;
use serde::Deserialize;
use serde_json::{json, Value};

use super::model::group_json;
use super::paging::Page;
use crate::auth::Caller;
use crate::error::{json_body, ApiError};
use crate::limits::{check, Field};
use crate::Ctx;
use quorumhub_core::scopes::Resource;

/// Group and member names are checked here, before anything is proposed
/// (the state machine checks them again, but only after the entry is in
/// the log).
fn check_names(hub: &Ctx, group: &str, users: &[String]) -> Result<(), ApiError> {
    check(&hub.config.limits, Field::GroupName(group))?;
    for u in users {
        check(&hub.config.limits, Field::UserName(u))?;
    }
    Ok(())
}

fn no_such_group(name: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("No such group: {name}"))
}

/// A group as JupyterHub shows it to `caller` (trimmed to its scopes),
/// `null` once removed.
fn shown(hub: &Ctx, caller: &Caller, group: Option<Group>) -> Value {
    group
        .and_then(|g| hub.read(|s| group_json(s, &g, &caller.scopes)))
        .unwrap_or(Value::Null)
}

#[derive(Deserialize, Default)]
pub(crate) struct ListQuery {
    offset: Option<String>,
    limit: Option<String>,
}

/// `GET /groups`, paginated as `/users` is ([`super::paging`]), in name
/// order.
pub(crate) async fn list(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    // JupyterHub's post-filter: `list:groups!group=` lists those groups.
    if !caller.scopes.holds("list:groups") {
        return Err(crate::auth::forbidden("list:groups"));
    }
    let Query(q) =
        query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("Invalid query: {e}")))?;
    let page = Page::of(&headers, q.offset.as_deref(), q.limit.as_deref())?;
    hub.linearize().await?;
    let (items, total) = hub.read(|s| {
        let listed: Vec<&Group> = s
            .groups
            .values()
            .filter(|g| {
                caller
                    .scopes
                    .allows("list:groups", Resource::Group(&g.name))
            })
            .collect();
        let total = listed.len();
        let items = listed
            .into_iter()
            .skip(page.offset)
            .take(page.limit)
            .filter_map(|g| group_json(s, g, &caller.scopes))
            .collect();
        (items, total)
    });
    Ok(Json(page.answer(
        items,
        total,
        &format!("{}/groups", hub.config.hub_api_url),
        &[],
    )))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateMany {
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    users: Vec<String>,
}

pub(crate) async fn create_many(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.require("admin:groups", Resource::Any)?;
    let body: CreateMany = json_body(&body)?.unwrap_or_default();
    if body.groups.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "Must specify at least one group to create",
        ));
    }
    for name in &body.groups {
        check_names(&hub, name, &body.users)?;
    }
    let mut created = Vec::new();
    for name in body.groups {
        created.push(shown(
            &hub,
            &caller,
            groups::create(&hub, name, body.users.clone()).await?,
        ));
    }
    Ok((StatusCode::CREATED, Json(Value::Array(created))).into_response())
}

pub(crate) async fn get_one(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require_any(
        &["read:groups", "read:groups:name", "read:roles:groups"],
        Resource::Group(&name),
    )?;
    hub.linearize().await?;
    hub.read(|s| {
        s.group(&name).map(|g| {
            group_json(s, g, &caller.scopes)
                .unwrap_or_else(|| json!({"kind": "group", "name": g.name}))
        })
    })
    .map(Json)
    .ok_or_else(|| no_such_group(&name))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Members {
    users: Option<Vec<String>>,
}

pub(crate) async fn create_one(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.require("admin:groups", Resource::Any)?;
    let body: Members = json_body(&body)?.unwrap_or_default();
    check_names(&hub, &name, body.users.as_deref().unwrap_or_default())?;
    let group = shown(
        &hub,
        &caller,
        groups::create(&hub, name, body.users.unwrap_or_default()).await?,
    );
    Ok((StatusCode::CREATED, Json(group)).into_response())
}

pub(crate) async fn delete(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require("delete:groups", Resource::Group(&name))?;
    check_names(&hub, &name, &[])?;
    groups::delete(&hub, name).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn members(body: &[u8], verb: &str) -> Result<Vec<String>, ApiError> {
    let body: Members = json_body(body)?.unwrap_or_default();
    body.users.filter(|u| !u.is_empty()).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("Must specify users to {verb}"),
        )
    })
}

pub(crate) async fn add_members(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    caller.require("groups", Resource::Group(&name))?;
    let users = members(&body, "add")?;
    check_names(&hub, &name, &users)?;
    Ok(Json(shown(
        &hub,
        &caller,
        groups::add_members(&hub, name, users).await?,
    )))
}

pub(crate) async fn remove_members(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    caller.require("groups", Resource::Group(&name))?;
    let users = members(&body, "delete")?;
    check_names(&hub, &name, &users)?;
    Ok(Json(shown(
        &hub,
        &caller,
        groups::remove_members(&hub, name, users).await?,
    )))
}

pub(crate) async fn set_properties(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    caller.require("groups", Resource::Group(&name))?;
    let properties: Value = json_body(&body)?.ok_or_else(|| {
        ApiError::new(StatusCode::BAD_REQUEST, "properties must be a JSON object")
    })?;
    check_names(&hub, &name, &[])?;
    check(&hub.config.limits, Field::GroupProperties(&properties))?;
    Ok(Json(shown(
        &hub,
        &caller,
        groups::set_properties(&hub, name, properties).await?,
    )))
}
