//! `GET /hub/api/services` and `GET /hub/api/services/{name}`: the
//! configured services, as JupyterHub shows them, trimmed to the caller's
//! scopes with JupyterHub's access map.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use quorumhub_state::{HubState, Service};
use serde_json::{json, Map, Value};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::Ctx;
use quorumhub_core::scopes::{Resource, Scopes};

/// JupyterHub's access map of the service model.
const SERVICE_FIELDS: &[(&str, &[&str])] = &[
    (
        "read:services",
        &[
            "kind", "name", "admin", "url", "prefix", "command", "pid", "info", "display",
        ],
    ),
    ("read:services:name", &["kind", "name", "admin"]),
    ("read:roles:services", &["kind", "name", "roles", "admin"]),
];

/// The whole model (JupyterHub's `service_model`).
pub(crate) fn service_json(s: &HubState, svc: &Service) -> Value {
    let roles: Vec<&str> = s
        .roles
        .values()
        .filter(|r| r.services.contains(&svc.name))
        .map(|r| r.name.as_str())
        .collect();
    json!({
        "kind": "service",
        "name": svc.name,
        "roles": roles,
        "admin": roles.contains(&"admin"),
        "url": svc.url.clone().unwrap_or_default(),
        "prefix": if svc.url.is_some() { svc.prefix() } else { String::new() },
        "command": svc.command,
        "pid": svc.process.as_ref().map_or(0, |p| p.pid),
        "info": svc.info,
        "display": svc.display,
    })
}

/// The model trimmed to what `view` shows; `None` if nothing.
fn trimmed(s: &HubState, svc: &Service, view: &Scopes) -> Option<Value> {
    let mut allowed: BTreeSet<&str> = BTreeSet::new();
    for (scope, fields) in SERVICE_FIELDS {
        if view.allows(scope, Resource::Service(&svc.name)) {
            allowed.extend(fields.iter().copied());
        }
    }
    let Value::Object(full) = service_json(s, svc) else {
        return None;
    };
    let v: Map<String, Value> = full
        .into_iter()
        .filter(|(k, _)| allowed.contains(k.as_str()))
        .collect();
    (!v.is_empty()).then_some(Value::Object(v))
}

pub(crate) async fn list(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller
        .require("list:services", Resource::Any)
        .or_else(|e| {
            // A filtered `list:services` lists the services it names.
            if caller.scopes.holds("list:services") {
                Ok(())
            } else {
                Err(e)
            }
        })?;
    hub.linearize().await?;
    let listed: Map<String, Value> = hub.read(|s| {
        s.configured_services()
            .filter(|svc| {
                caller
                    .scopes
                    .allows("list:services", Resource::Service(&svc.name))
            })
            .filter_map(|svc| Some((svc.name.clone(), trimmed(s, svc, &caller.scopes)?)))
            .collect()
    });
    Ok(Json(Value::Object(listed)))
}

pub(crate) async fn get_one(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require_any(
        &["read:services", "read:services:name", "read:roles:services"],
        Resource::Service(&name),
    )?;
    hub.linearize().await?;
    hub.read(|s| {
        let svc = s.configured_services().find(|svc| svc.name == name)?;
        trimmed(s, svc, &caller.scopes)
    })
    .map(Json)
    .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("No such service: {name}")))
}
