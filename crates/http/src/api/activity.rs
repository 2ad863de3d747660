//! `POST /hub/api/users/{name}/activity`: what single-user servers report
//! (`{"last_activity": ts, "servers": {"": {"last_activity": ts}}}`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use quorumhub_state::normalize_username;
use serde_json::Value;

use crate::auth::Caller;
use crate::error::{json_body, ApiError};
use crate::Ctx;
use quorumhub_core::scopes::Resource;
use quorumhub_core::time::now_ms;

/// Reports more than this far in the future are refused (JupyterHub: 59 min).
const MAX_FUTURE_MS: u64 = 59 * 60 * 1000;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, msg)
}

fn timestamp(v: &Value, what: &str) -> Result<u64, ApiError> {
    let text = v
        .as_str()
        .ok_or_else(|| bad(format!("{what} must be an ISO 8601 timestamp string")))?;
    let t = chrono::DateTime::parse_from_rfc3339(text)
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .map(|n| n.and_utc().fixed_offset())
        })
        .map_err(|e| bad(format!("{what}: invalid timestamp {text:?}: {e}")))?;
    let ms =
        u64::try_from(t.timestamp_millis()).map_err(|_| bad(format!("{what} is before 1970")))?;
    if ms > now_ms() + MAX_FUTURE_MS {
        return Err(bad(format!("{what} {text} is in the future")));
    }
    Ok(ms)
}

pub(crate) async fn record(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
    Path(raw): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let name = normalize_username(&raw);
    crate::limits::check(&hub.config.limits, crate::limits::Field::UserName(&name))?;
    caller.require("users:activity", Resource::User(&name))?;
    let body: Value = json_body(&body)?.ok_or_else(|| bad("body must be a JSON object"))?;
    let Some(obj) = body.as_object() else {
        return Err(bad("body must be a JSON object"));
    };
    let top = obj
        .get("last_activity")
        .map(|v| timestamp(v, "last_activity"))
        .transpose()?;
    let mut reports: Vec<(Option<String>, u64)> = Vec::new();
    if let Some(servers) = obj.get("servers") {
        let servers = servers
            .as_object()
            .ok_or_else(|| bad("servers must be an object of server name to activity"))?;
        hub.linearize().await?;
        for (server, v) in servers {
            let exists = hub.read(|s| s.server(&name, server).is_some());
            if !exists {
                return Err(bad(format!("No such server '{server}' for user {name}")));
            }
            let at = v
                .get("last_activity")
                .map(|t| timestamp(t, "last_activity"))
                .transpose()?
                .or(top)
                .ok_or_else(|| bad(format!("server '{server}' has no last_activity")))?;
            reports.push((Some(server.clone()), at));
        }
    }
    if reports.is_empty() {
        let at = top
            .ok_or_else(|| bad("body must contain at least one of `last_activity` or `servers`"))?;
        reports.push((None, at));
    }
    for (server_name, at) in reports {
        quorumhub_core::ops::users::record_activity(&hub, name.clone(), server_name, at).await?;
    }
    Ok(StatusCode::OK)
}
