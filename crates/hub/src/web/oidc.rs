//! Sign in with OpenID Connect (the `openidconnect` crate): discovery,
//! the authorization code flow with PKCE (S256) and a nonce, ID token
//! validation (signature from the provider's JWKS, issuer, audience,
//! expiry, nonce), then claim → user name, allowed users/groups and admin
//! from groups.
//!
//! The flow's secrets (state, nonce, PKCE verifier, where to go next) ride
//! in a short-lived cookie signed with the cluster's cookie secret, so the
//! provider may send the browser back to any replica.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use quorumhub_state::{
    normalize_username, validate_username, Command, Rejection, Response as SmResponse,
};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::session;
use super::{error_page, hub_error_page, redirect, safe_next, secure};
use crate::config::HubConfig;
use crate::hub::Hub;

const FLOW_COOKIE: &str = "quorumhub-oidc";
/// How long a browser may take at the provider.
const FLOW_MAX_AGE_S: u64 = 600;

/// What the flow cookie carries between the two legs.
#[derive(Serialize, Deserialize)]
struct Flow {
    state: String,
    nonce: String,
    verifier: String,
    next: Option<String>,
    /// Unix seconds the flow began.
    at: u64,
}

#[derive(Debug, thiserror::Error)]
enum OidcError {
    #[error("the identity provider could not be reached or misbehaved: {0}")]
    Provider(String),
    #[error("{0}")]
    Refused(String),
}

fn http_client() -> Result<openidconnect::reqwest::Client, OidcError> {
    openidconnect::reqwest::ClientBuilder::new()
        // The crate's advice: never follow redirects (SSRF).
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| OidcError::Provider(e.to_string()))
}

fn redirect_url(config: &HubConfig) -> String {
    format!(
        "{}/hub/oauth_callback",
        config.public_url.trim_end_matches('/')
    )
}

/// Discover the provider and build a client (per request: a provider's
/// keys may rotate, and sign-ins are rare next to API calls).
async fn client(
    config: &HubConfig,
    http: &openidconnect::reqwest::Client,
) -> Result<
    openidconnect::core::CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
    OidcError,
> {
    let (Some(issuer), Some(id), Some(secret)) = (
        &config.oidc_issuer,
        &config.oidc_client_id,
        &config.oidc_client_secret,
    ) else {
        return Err(OidcError::Refused(
            "OpenID Connect sign-in is not configured on this hub".into(),
        ));
    };
    let issuer = IssuerUrl::new(issuer.clone()).map_err(|e| OidcError::Provider(e.to_string()))?;
    let metadata = CoreProviderMetadata::discover_async(issuer, http)
        .await
        .map_err(|e| OidcError::Provider(format!("discovery failed: {e}")))?;
    let redirect =
        RedirectUrl::new(redirect_url(config)).map_err(|e| OidcError::Provider(e.to_string()))?;
    Ok(CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(id.clone()),
        Some(ClientSecret::new(secret.clone())),
    )
    .set_redirect_uri(redirect))
}

#[derive(Deserialize)]
pub(crate) struct StartQuery {
    next: Option<String>,
}

/// `GET /hub/oidc/login`: off to the provider.
pub(crate) async fn start(State(hub): State<Arc<Hub>>, Query(q): Query<StartQuery>) -> Response {
    let key = match session::ensure_cookie_key(&hub).await {
        Ok(k) => k,
        Err(e) => return hub_error_page(e),
    };
    let http = match http_client() {
        Ok(h) => h,
        Err(e) => return provider_error(e),
    };
    let client = match client(&hub.config, &http).await {
        Ok(c) => c,
        Err(e) => return provider_error(e),
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut auth = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge);
    for s in hub.config.oidc_scopes.iter().filter(|s| *s != "openid") {
        auth = auth.add_scope(Scope::new(s.clone()));
    }
    let (url, state, nonce) = auth.url();
    let flow = Flow {
        state: state.secret().clone(),
        nonce: nonce.secret().clone(),
        verifier: verifier.secret().clone(),
        next: safe_next(q.next.as_deref()),
        at: now_s(),
    };
    let Ok(json) = serde_json::to_vec(&flow) else {
        return error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not start the sign-in",
            "",
            None,
        );
    };
    let value = session::sign(
        &key,
        FLOW_COOKIE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json),
    );
    let cookie = match session::set_cookie(
        FLOW_COOKIE,
        &value,
        "/hub/",
        Some(FLOW_MAX_AGE_S),
        secure(&hub),
        true,
    ) {
        Ok(c) => c,
        Err(e) => return hub_error_page(e),
    };
    let mut r = redirect(url.as_str());
    r.headers_mut().append(header::SET_COOKIE, cookie);
    r
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn provider_error(e: OidcError) -> Response {
    tracing::warn!("OpenID Connect sign-in failed: {e}");
    let status = match e {
        OidcError::Provider(_) => StatusCode::BAD_GATEWAY,
        OidcError::Refused(_) => StatusCode::FORBIDDEN,
    };
    error_page(
        status,
        &e.to_string(),
        "Try again, or sign in with a password.",
        None,
    )
}

#[derive(Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /hub/oauth_callback`: the provider sent the browser back.
pub(crate) async fn callback(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let clear = session::clear_cookie(FLOW_COOKIE, "/hub/");
    let mut r = match finish(&hub, &headers, q).await {
        Ok((user, next)) => match session::start_session(&hub, &user, secure(&hub)).await {
            Ok(cookie) => {
                tracing::info!(user = %user, "logged in with OpenID Connect");
                let mut r = redirect(next.as_deref().unwrap_or("/hub/home"));
                r.headers_mut().append(header::SET_COOKIE, cookie);
                r
            }
            Err(e) => hub_error_page(e),
        },
        Err(e) => provider_error(e),
    };
    r.headers_mut().append(header::SET_COOKIE, clear);
    r
}

async fn finish(
    hub: &Hub,
    headers: &HeaderMap,
    q: CallbackQuery,
) -> Result<(String, Option<String>), OidcError> {
    if let Some(err) = q.error {
        return Err(OidcError::Refused(format!(
            "the identity provider refused the sign-in: {err}{}",
            q.error_description
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        )));
    }
    let (Some(code), Some(state)) = (q.code, q.state) else {
        return Err(OidcError::Refused(
            "the provider's answer has no code or state".into(),
        ));
    };
    let key = session::cookie_key(hub).ok_or_else(|| {
        OidcError::Refused("no sign-in was started on this hub; start again".into())
    })?;
    let flow: Flow = session::cookie(headers, FLOW_COOKIE)
        .and_then(|raw| session::verify(&key, FLOW_COOKIE, raw))
        .and_then(|b64| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(b64)
                .ok()
        })
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or_else(|| {
            OidcError::Refused(
                "the sign-in expired or was started elsewhere (no valid flow cookie); start again"
                    .into(),
            )
        })?;
    if now_s().saturating_sub(flow.at) > FLOW_MAX_AGE_S {
        return Err(OidcError::Refused(
            "the sign-in took too long; start again".into(),
        ));
    }
    if !bool::from(flow.state.as_bytes().ct_eq(state.as_bytes())) {
        return Err(OidcError::Refused(
            "the state does not match this browser's sign-in".into(),
        ));
    }
    let http = http_client()?;
    let client = client(&hub.config, &http).await?;
    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| OidcError::Provider(e.to_string()))?
        .set_pkce_verifier(PkceCodeVerifier::new(flow.verifier.clone()))
        .request_async(&http)
        .await
        .map_err(|e| OidcError::Refused(format!("the code was not accepted: {e}")))?;
    let id_token = tokens
        .id_token()
        .ok_or_else(|| OidcError::Refused("the provider sent no ID token".into()))?;
    let verifier = client.id_token_verifier();
    id_token
        .claims(&verifier, &Nonce::new(flow.nonce.clone()))
        .map_err(|e| OidcError::Refused(format!("the ID token is not valid: {e}")))?;
    // Verified above: its payload may now be read for the configured claims.
    let claims = payload(&id_token.to_string())
        .ok_or_else(|| OidcError::Refused("the ID token's claims do not decode".into()))?;
    let config = &hub.config;
    let raw_name = claims
        .get(&config.oidc_username_claim)
        .and_then(|v| v.as_str())
        .ok_or_else(|| {
            OidcError::Refused(format!(
                "the ID token has no {:?} claim to name the user (see --oidc-username-claim)",
                config.oidc_username_claim
            ))
        })?;
    let subject = claims
        .get("sub")
        .and_then(|v| v.as_str())
        .map(|sub| {
            format!(
                "{}|{sub}",
                config.oidc_issuer.as_deref().unwrap_or_default()
            )
        })
        .ok_or_else(|| OidcError::Refused("the ID token has no sub".into()))?;
    let name = normalize_username(raw_name);
    validate_username(&name).map_err(|why| {
        OidcError::Refused(format!(
            "the user name {raw_name:?} cannot be used here: {why}"
        ))
    })?;
    let groups: Vec<String> = claims
        .get(&config.oidc_groups_claim)
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|g| g.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if !allowed(config, &name, &groups) {
        tracing::info!(user = %name, "OpenID Connect user is not allowed");
        return Err(OidcError::Refused(format!(
            "{name} is not allowed to use this hub"
        )));
    }
    if name == config.admin_user {
        return Err(OidcError::Refused(format!(
            "{name} is this hub's bootstrap admin, a local account; it cannot sign in through the provider"
        )));
    }
    let admin = (!config.oidc_admin_groups.is_empty())
        .then(|| groups.iter().any(|g| config.oidc_admin_groups.contains(g)));
    link_user(hub, &name, &subject, admin).await?;
    Ok((name, safe_next(flow.next.as_deref())))
}

/// The claims of a compact JWT, unverified: call only after verification.
fn payload(jwt: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let part = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Allowed: `--oidc-allow-all`, or listed by name, or in a listed group.
fn allowed(config: &HubConfig, name: &str, groups: &[String]) -> bool {
    if config.oidc_allow_all {
        return true;
    }
    config
        .oidc_allowed_users
        .iter()
        .any(|u| normalize_username(u) == name)
        || groups
            .iter()
            .any(|g| config.oidc_allowed_groups.contains(g))
}

/// Link the user to the provider's identity (creating it on first
/// sign-in); keep its admin flag in step with the provider's groups when
/// admin groups are configured. A local (password) account or a user
/// linked to another identity is never taken over.
async fn link_user(
    hub: &Hub,
    name: &str,
    subject: &str,
    admin: Option<bool>,
) -> Result<(), OidcError> {
    let outcome = hub
        .propose(Command::LinkIdentity {
            name: name.to_string(),
            subject: subject.to_string(),
            admin,
        })
        .await
        .map_err(|e| OidcError::Provider(format!("the hub could not record the user: {e}")))?;
    match outcome {
        SmResponse::User { .. } => Ok(()),
        SmResponse::Rejected {
            rejection: rejection @ Rejection::IdentityMismatch { .. },
        } => {
            tracing::warn!(user = %name, subject, "refused an OpenID Connect sign-in into another account");
            Err(OidcError::Refused(rejection.to_string()))
        }
        SmResponse::Rejected { rejection } => Err(OidcError::Refused(rejection.to_string())),
        other => Err(OidcError::Provider(format!("unexpected outcome {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_decodes_a_jwt_body() {
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"a","groups":["g"]}"#);
        let jwt = format!("e30.{body}.sig");
        let claims = payload(&jwt).expect("claims");
        assert_eq!(claims["sub"], "a");
        assert!(payload("garbage").is_none());
        assert!(payload("a.!!!.c").is_none());
    }
}
