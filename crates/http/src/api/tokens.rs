//! `/hub/api/users/{name}/tokens`: API tokens, as JupyterHub's tokens API.
//! Only the SHA-256 of a token is stored; its text is shown once, in the
//! reply that creates it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use quorumhub_state::{normalize_username, HubState, Token, TokenOwner};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{token_scopes, Caller};
use crate::error::{json_body, ApiError};
use crate::limits::{check, quota_full, Field};
use crate::Ctx;
use quorumhub_core::scopes::{self, Resource};
use quorumhub_core::time::{iso, now_ms};

fn token_json(s: &HubState, t: &Token) -> Value {
    let oauth_client = match (&t.owner, &t.client_id) {
        (TokenOwner::Server { user, server_name }, _) => {
            format!(
                "Server at {}",
                quorumhub_state::Route::prefix_for(user, server_name)
            )
        }
        (_, Some(client)) => client.clone(),
        (_, None) => "JupyterHub".to_string(),
    };
    json!({
        "user": t.owner.user(),
        "id": t.id,
        "kind": "api_token",
        "roles": [],
        "scopes": token_scopes(s, t).to_vec(),
        "created": iso(t.created),
        "last_activity": t.last_activity.map(iso),
        "expires_at": t.expires_at.map(iso),
        "note": t.note,
        "session_id": t.session,
        "oauth_client": oauth_client,
    })
}

fn no_such_token(id: &str, user: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("No such token {id} for user {user}"),
    )
}

pub(crate) async fn list(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let name = normalize_username(&raw);
    caller.require("read:tokens", Resource::User(&name))?;
    hub.linearize().await?;
    let now = now_ms();
    let tokens = hub.read(|s| {
        s.tokens
            .values()
            .filter(|t| t.owner.user() == name && !t.expired(now))
            .map(|t| token_json(s, t))
            .collect::<Vec<_>>()
    });
    Ok(Json(json!({ "api_tokens": tokens })))
}

pub(crate) async fn get_one(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
    Path((raw, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let name = normalize_username(&raw);
    caller.require("read:tokens", Resource::User(&name))?;
    hub.linearize().await?;
    let now = now_ms();
    hub.read(|s| {
        s.tokens
            .get(&id)
            .filter(|t| t.owner.user() == name && !t.expired(now))
            .map(|t| token_json(s, t))
    })
    .map(Json)
    .ok_or_else(|| no_such_token(&id, &name))
}

pub(crate) async fn revoke(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
    Path((raw, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let name = normalize_username(&raw);
    caller.require("tokens", Resource::User(&name))?;
    hub.linearize().await?;
    let owned = hub.read(|s| s.tokens.get(&id).is_some_and(|t| t.owner.user() == name));
    if !owned {
        return Err(no_such_token(&id, &name));
    }
    match quorumhub_core::ops::tokens::revoke(&hub, id.clone()).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(quorumhub_core::ops::OpError::Rejected(_)) => Err(no_such_token(&id, &name)),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    expires_in: Option<i64>,
    note: Option<String>,
    scopes: Option<Vec<String>>,
    roles: Option<Vec<String>>,
}

pub(crate) async fn create(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
    Path(raw): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let name = normalize_username(&raw);
    if !caller.scopes.allows("tokens", Resource::User(&name)) {
        tracing::info!(caller = %caller.name, user = %name, "refused a token request");
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("User {name} not found or no permissions to generate tokens"),
        ));
    }
    let mut body: CreateBody = json_body(&body)?.unwrap_or_default();
    // JupyterHub 3+: `roles` in a token request stand for their scopes,
    // which the token stores.
    if let Some(roles) = body.roles.take().filter(|r| !r.is_empty()) {
        if roles.len() > hub.config.limits.max_token_scopes {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "roles lists {} roles; the limit is {} (--max-token-scopes)",
                    roles.len(),
                    hub.config.limits.max_token_scopes
                ),
            ));
        }
        hub.linearize().await?;
        let from_roles = hub.read(|s| scopes::of_roles(s, &roles)).map_err(|r| {
            ApiError::new(StatusCode::BAD_REQUEST, format!("Role {r} does not exist"))
        })?;
        body.scopes.get_or_insert_with(Vec::new).extend(from_roles);
    }
    let limits = &hub.config.limits;
    if let Some(s) = body.expires_in {
        check(limits, Field::ExpiresIn(s))?;
    }
    let expires_in = body.expires_in.map(|s| s as u64);
    if let Some(note) = &body.note {
        check(limits, Field::TokenNote(note))?;
    }
    if let Some(scopes) = &body.scopes {
        check(limits, Field::TokenScopes(scopes))?;
    }
    hub.linearize().await?;
    let now = now_ms();
    let (owner, held) = hub
        .read(|s| {
            let held = s
                .tokens
                .values()
                .filter(|t| {
                    matches!(&t.owner, TokenOwner::User { name: n } if *n == name)
                        && t.client_id.is_none()
                        && !t.expired(now)
                })
                .count();
            s.user(&name)
                .map(|_| (scopes::of_user_in(s, &name, false), held))
        })
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("No such user: {name}")))?;
    if held >= limits.max_tokens_per_user {
        return Err(quota_full(format!(
            "User {name} already has {held} API tokens, the most allowed \
             (--max-tokens-per-user {}); revoke one first",
            limits.max_tokens_per_user
        )));
    }
    let requested = body.scopes.unwrap_or_default();
    let requested: Vec<String> = requested.into_iter().filter(|s| s != "inherit").collect();
    let asked = if requested.is_empty() {
        owner.clone()
    } else {
        hub.read(|s| {
            scopes::expand(requested.iter().map(String::as_str), &name, None)
                .map(|a| a.with_groups(s))
        })
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?
    };
    let missing = |held: &scopes::Scopes| -> Vec<String> {
        asked
            .iter()
            .filter(|s| !held.iter().any(|h| h == *s))
            .map(str::to_string)
            .collect()
    };
    let over_owner = missing(&asked.within(&owner));
    if !over_owner.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("Not assigning requested scopes {over_owner:?}, not held by {name}"),
        ));
    }
    // Nor more than the requester holds: a narrow token cannot mint a wider
    // one (with no scopes asked, the new token would inherit the owner's).
    let over_caller = missing(&asked.within(&caller.scopes));
    if !over_caller.is_empty() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("Not assigning requested scopes {over_caller:?}, not held by the requester"),
        ));
    }
    let note = body.note.unwrap_or_else(|| {
        if caller.service {
            format!("Requested via api by service {}", caller.name)
        } else if caller.name == name {
            "Requested via api".to_string()
        } else {
            format!("Requested via api by user {}", caller.name)
        }
    });
    let (text, id) = quorumhub_core::ops::tokens::create(
        &hub,
        quorumhub_core::ops::tokens::NewToken {
            owner: TokenOwner::User { name: name.clone() },
            note,
            expires_in_s: expires_in,
            scopes: requested,
            client_id: None,
            session: None,
        },
    )
    .await?;
    tracing::info!(user = %name, id = %id, "created an API token");
    let mut model = hub
        .read(|s| s.tokens.get(&id).map(|t| token_json(s, t)))
        .unwrap_or_else(|| json!({ "id": id }));
    model["token"] = Value::String(text);
    Ok((StatusCode::CREATED, Json(model)).into_response())
}
