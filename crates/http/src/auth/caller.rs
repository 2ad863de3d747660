//! Who is calling, and what they may do.
//!
//! Credentials, in order: `Authorization: token <t>` (or `bearer <t>`, or
//! `?token=<t>`), resolved against the bootstrap admin token (from config,
//! the same on every replica) and the replicated token table (tokens are
//! stored as SHA-256 hashes, read behind the read barrier); else the
//! browser's login cookie (then a request other than GET/HEAD must carry
//! the CSRF token in `X-XSRFToken`).
//!
//! The caller's scopes are its token's, never more than its owner's
//! (see `scopes.rs`); every endpoint asks [`Caller::require`].

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use quorumhub_state::{HubState, Token, TokenOwner};
use subtle::ConstantTimeEq;

use super::session;
use crate::error::ApiError;
use crate::Ctx;
use quorumhub_core::scopes::{self, Resource, Scopes};
use quorumhub_core::secrets::hash_token;
use quorumhub_core::time::now_ms;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub admin: bool,
    /// Set when the token belongs to one of the user's servers.
    pub server: Option<String>,
    pub scopes: Scopes,
    /// The token used (`a<N>`), if any.
    pub token_id: Option<String>,
    /// The browser session behind the token or cookie, if any.
    pub session: Option<String>,
    /// The caller is the service `name` (its token), not a user.
    pub service: bool,
}

impl Caller {
    /// JupyterHub's rule: without the scope at all, 403; with it, but not
    /// for this resource, 404 (so nobody learns what exists).
    pub fn require(&self, scope: &str, resource: Resource<'_>) -> Result<(), ApiError> {
        if self.scopes.allows(scope, resource) {
            return Ok(());
        }
        if self.scopes.holds(scope) && resource != Resource::Any {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "No access to resources or resources not found",
            ));
        }
        tracing::info!(caller = %self.name, scope, "refused: missing scope");
        Err(forbidden(scope))
    }

    /// As [`Caller::require`], for an endpoint any of `scopes` opens
    /// (JupyterHub's `needs_scope` with several).
    pub fn require_any(&self, scopes: &[&str], resource: Resource<'_>) -> Result<(), ApiError> {
        if scopes.iter().any(|s| self.scopes.allows(s, resource)) {
            return Ok(());
        }
        if scopes.iter().any(|s| self.scopes.holds(s)) && resource != Resource::Any {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "No access to resources or resources not found",
            ));
        }
        tracing::info!(caller = %self.name, ?scopes, "refused: missing scope");
        Err(forbidden(&scopes.join(", ")))
    }

    /// The caller's effective scopes, for `GET /hub/api/user`.
    pub fn scope_list(&self) -> Vec<String> {
        self.scopes.to_vec()
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

/// The scopes a token grants in `state`, within its owner's (the owner's
/// roles as `state` has them).
pub(crate) fn token_scopes(state: &HubState, token: &Token) -> Scopes {
    let user = token.owner.user();
    let owner = scopes::of_user_in(state, user, false);
    let asked = match &token.owner {
        TokenOwner::Server { server_name, .. } => scopes::of_server_token(user, server_name),
        TokenOwner::User { .. } if token.scopes.is_empty() => return owner,
        TokenOwner::User { .. } => {
            let listed = token.scopes.iter().map(String::as_str).chain(
                token
                    .client_id
                    .is_some()
                    .then_some(scopes::IDENTIFY)
                    .into_iter()
                    .flatten()
                    .copied(),
            );
            match scopes::expand(listed, user, None) {
                Ok(s) => s.with_groups(state),
                Err(e) => {
                    tracing::warn!(token = %token.id, "a stored token has an unknown scope: {e}");
                    Scopes::default()
                }
            }
        }
    };
    asked.within(&owner)
}

fn resolve(hub: &Ctx, hash: &str) -> Option<Caller> {
    hub.read(|s| {
        let token = s.token_by_hash(hash, now_ms())?;
        let user = s.user(token.owner.user())?;
        Some(Caller {
            name: user.name.clone(),
            admin: user.admin && matches!(token.owner, TokenOwner::User { .. }),
            server: match &token.owner {
                TokenOwner::Server { server_name, .. } => Some(server_name.clone()),
                TokenOwner::User { .. } => None,
            },
            scopes: token_scopes(s, token),
            token_id: Some(token.id.clone()),
            session: token.session.clone(),
            service: false,
        })
    })
}

/// A service's token (configured, or its running copy's): the service's
/// scopes, from the roles that name it.
fn resolve_service(hub: &Ctx, hash: &str) -> Option<Caller> {
    hub.read(|s| {
        let service = s.service_by_token_hash(hash)?;
        Some(Caller {
            name: service.name.clone(),
            admin: false,
            server: None,
            scopes: scopes::of_service_in(s, &service.name),
            token_id: None,
            session: None,
            service: true,
        })
    })
}

impl FromRequestParts<super::HttpState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &super::HttpState,
    ) -> Result<Caller, ApiError> {
        let hub = &state.hub;
        let missing = || ApiError::new(StatusCode::FORBIDDEN, "Missing or invalid credentials");
        let Some(token) = token_from(parts) else {
            return from_cookie(parts, hub).await?.ok_or_else(missing);
        };
        let hash = hash_token(&token);
        if let Some(admin) = &hub.config.admin_token_hash {
            if bool::from(admin.as_bytes().ct_eq(hash.as_bytes())) {
                let name = hub.config.admin_user.clone();
                // The operator's token: never shed by admission control.
                quorumhub_core::admission::identify(&name, true);
                return Ok(Caller {
                    scopes: scopes::of_user(&name, true),
                    name,
                    admin: true,
                    server: None,
                    token_id: None,
                    session: None,
                    service: false,
                });
            }
        }
        // Tokens, and the admin flag of their owner, are replicated state: a
        // lagging replica could still hold a revoked token or a demoted
        // admin. Pass the read barrier first.
        hub.linearize().await?;
        let caller = resolve(hub, &hash)
            .or_else(|| resolve_service(hub, &hash))
            .ok_or_else(|| {
                tracing::info!("refused a request with an unknown or expired token");
                missing()
            })?;
        // A service is admitted as itself, never as a user: no user name
        // contains `/`.
        let writer = if caller.service {
            format!("service/{}", caller.name)
        } else {
            caller.name.clone()
        };
        quorumhub_core::admission::identify(&writer, false);
        Ok(caller)
    }
}

/// A browser's login cookie as credentials for the API.
async fn from_cookie(parts: &Parts, hub: &Ctx) -> Result<Option<Caller>, ApiError> {
    let Some(login) = session::login_of(hub, &parts.headers).await? else {
        return Ok(None);
    };
    // Scripts (and every write) must prove they come from our own pages:
    // the CSRF token bound to this session, in a header or `?_xsrf=`.
    if !matches!(parts.method, Method::GET | Method::HEAD) || session::from_script(&parts.headers) {
        let key = session::cookie_key(hub).unwrap_or_default();
        let sent = session::xsrf_sent(&parts.headers, parts.uri.query());
        if !session::xsrf_ok(&key, &parts.headers, sent, &login.session) {
            tracing::info!(user = %login.user, "refused a cookie request without its CSRF token");
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "'_xsrf' missing or wrong; send the X-XSRFToken header from a hub page",
            ));
        }
    }
    // login_of passed the read barrier.
    Ok(hub.read(|s| {
        let user = s.user(&login.user)?;
        Some(Caller {
            name: user.name.clone(),
            admin: user.admin,
            server: None,
            scopes: scopes::of_user_in(s, &user.name, false),
            token_id: None,
            session: Some(login.session.clone()),
            service: false,
        })
    }))
}
