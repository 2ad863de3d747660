//! Who is calling: `Authorization: token <t>` (or `bearer <t>`, or
//! `?token=<t>`), resolved against the bootstrap admin token (from config,
//! the same on every replica) and the replicated token table (tokens are
//! stored as SHA-256 hashes), read behind the read barrier.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use quorumhub_state::TokenOwner;
use subtle::ConstantTimeEq;

use super::ApiError;
use crate::hub::{hash_token, Hub};
use crate::time::now_ms;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub admin: bool,
    /// Set when the token belongs to one of the user's servers.
    pub server: Option<String>,
}

impl Caller {
    /// Admins act on anyone; a user acts on itself.
    pub fn may_act_for(&self, user: &str) -> bool {
        self.admin || self.name == user
    }

    pub fn require_admin(&self, scope: &str) -> Result<(), ApiError> {
        if self.admin {
            return Ok(());
        }
        Err(forbidden(scope))
    }
}

pub(crate) fn forbidden(scope: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        format!("Action is not authorized with current scopes; requires any of [{scope}]"),
    )
}

fn token_from(parts: &Parts) -> Option<String> {
    if let Some(value) = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = value.trim().split_once(' ')?;
        if scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer") {
            return Some(token.trim().to_string()).filter(|t| !t.is_empty());
        }
        return None;
    }
    parts.uri.query().and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| v.to_string())
            .filter(|t| !t.is_empty())
    })
}

fn resolve(hub: &Hub, hash: &str) -> Option<Caller> {
    hub.read(|s| {
        let token = s.token_by_hash(hash, now_ms())?;
        let user = s.user(token.owner.user())?;
        Some(match &token.owner {
            TokenOwner::User { .. } => Caller {
                name: user.name.clone(),
                admin: user.admin,
                server: None,
            },
            TokenOwner::Server { server_name, .. } => Caller {
                name: user.name.clone(),
                admin: false,
                server: Some(server_name.clone()),
            },
        })
    })
}

impl FromRequestParts<Arc<Hub>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, hub: &Arc<Hub>) -> Result<Caller, ApiError> {
        let missing = || ApiError::new(StatusCode::FORBIDDEN, "Missing or invalid credentials");
        let token = token_from(parts).ok_or_else(missing)?;
        let hash = hash_token(&token);
        if let Some(admin) = &hub.admin_token_hash {
            if bool::from(admin.as_bytes().ct_eq(hash.as_bytes())) {
                return Ok(Caller {
                    name: hub.config.admin_user.clone(),
                    admin: true,
                    server: None,
                });
            }
        }
        // Tokens, and the admin flag of their owner, are replicated state: a
        // lagging replica could still hold a revoked token or a demoted
        // admin. Pass the read barrier first.
        hub.linearize().await?;
        resolve(hub, &hash).ok_or_else(|| {
            tracing::info!("refused a request with an unknown or expired token");
            missing()
        })
    }
}
