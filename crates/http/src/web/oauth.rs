//! The hub as an OAuth 2 provider for single-user servers, with the
//! contract `jupyterhub-singleuser` (HubOAuth) expects:
//!
//! - `GET /hub/api/oauth2/authorize?client_id&redirect_uri&response_type=code
//!   &state[&code_challenge&code_challenge_method]`: the logged-in browser
//!   is sent back to `redirect_uri?code=..&state=..`.
//! - `POST /hub/api/oauth2/token` (form: `grant_type=authorization_code`,
//!   `code`, `redirect_uri`, `client_id`, `client_secret`, `code_verifier`):
//!   `{"access_token", "token_type": "Bearer", "expires_in", "scope"}`.
//!
//! A server's client is derived from the replicated state: its id is the
//! one recorded when its spawn was requested (`Server::client_id`:
//! `jupyterhub-user-{user}`, `jupyterhub-user-{user}!{server}` for a named
//! server; JupyterHub's `jupyterhub-user-{user}-{server}` for a server
//! spawned before log format 6), its secret the server's API token, its
//! redirect URI `/user/{user}[/{server}]/oauth_callback`. Only servers
//! spawned before log format 6 can share an id (alice's `x` and the user
//! `alice-x`); the redirect URI (authorize) or the secret (token) then
//! tells which one is meant. Codes live
//! 5 minutes, are stored hashed and are redeemed at most once (the state
//! machine removes a code in the same entry that creates the token).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{OriginalUri, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use base64::Engine;
use quorumhub_state::{OAuthCode, Rejection, TokenOwner};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{error_page, hub_error_page, redirect};
use crate::auth::session;
use crate::Ctx;
use quorumhub_core::scopes::{self, Resource};
use quorumhub_core::secrets::hash_token;
use quorumhub_core::time::now_ms;
use quorumhub_core::OpError;

/// How long a code may wait to be exchanged (JupyterHub: 300 s).
const CODE_LIFETIME_MS: u64 = 300_000;
/// How long an access token lives (JupyterHub: 14 days).
const TOKEN_LIFETIME_S: u64 = 14 * 86_400;

/// A server's or a service's OAuth client.
struct Client {
    /// The server's owner and name (empty for a service).
    user: String,
    server: String,
    /// The service, for a service's client (`service-{name}`).
    service: Option<ServiceClient>,
    redirect_uri: String,
    /// Hashes of the tokens that are its client secret: the server's API
    /// token, or a service's (configured, or its running copy's).
    secret_hashes: Vec<String>,
}

struct ServiceClient {
    name: String,
    /// JupyterHub's `oauth_no_confirm`: no consent page.
    no_confirm: bool,
}

/// The service whose OAuth client is `client_id` (`service-{name}`), if it
/// has a redirect URI (its own, or `/services/{name}/oauth_callback` when
/// the proxies route it).
fn service_client(s: &quorumhub_state::HubState, client_id: &str) -> Option<Client> {
    let name = client_id.strip_prefix("service-")?;
    let svc = s.configured_services().find(|svc| svc.name == name)?;
    let redirect_uri = svc.oauth_redirect_uri.clone().or_else(|| {
        svc.url
            .as_ref()
            .map(|_| format!("{}oauth_callback", svc.prefix()))
    })?;
    let secret_hashes = svc
        .token_hash
        .iter()
        .chain(svc.process.as_ref().map(|p| &p.token_hash))
        .cloned()
        .collect();
    Some(Client {
        user: String::new(),
        server: String::new(),
        service: Some(ServiceClient {
            name: svc.name.clone(),
            no_confirm: svc.oauth_no_confirm,
        }),
        redirect_uri,
        secret_hashes,
    })
}

/// The clients whose id is `client_id`: a service's, or the active
/// servers' (one, or none; more only for servers spawned before log format
/// 6 with JupyterHub's ambiguous ids).
fn clients(hub: &Ctx, client_id: &str) -> Vec<Client> {
    if let Some(c) = hub.read(|s| service_client(s, client_id)) {
        return vec![c];
    }
    hub.read(|s| {
        s.servers_with_client_id(client_id)
            .map(|(user, server)| {
                let secret_hashes = server
                    .spawner
                    .as_ref()
                    .and_then(|sp| sp.token_id.as_ref())
                    .and_then(|id| s.tokens.get(id))
                    .map(|t| t.hash.clone())
                    .into_iter()
                    .collect();
                Client {
                    user: user.name.clone(),
                    server: server.name.clone(),
                    service: None,
                    redirect_uri: quorumhub_state::ids::oauth_callback_url(
                        "/",
                        &user.name,
                        &server.name,
                    ),
                    secret_hashes,
                }
            })
            .collect()
    })
}

/// Which of the servers holding a client id an authorization is for: the
/// one whose redirect URI was given, or the only one.
fn pick_by_redirect(
    found: Vec<Client>,
    redirect_uri: Option<&str>,
) -> Result<Client, &'static str> {
    let n = found.len();
    let mut found = found.into_iter();
    match (n, redirect_uri) {
        (0, _) => Err("Invalid client_id parameter value."),
        (1, _) => found.next().ok_or("Invalid client_id parameter value."),
        (_, Some(uri)) => found
            .find(|c| c.redirect_uri == uri)
            .ok_or("Mismatching redirect URI."),
        (_, None) => Err("Ambiguous client_id: two servers started before an upgrade share it; give redirect_uri."),
    }
}

/// Which of the servers holding a client id a token request comes from:
/// the one whose API token is `secret`.
fn pick_by_secret(found: Vec<Client>, secret: &str) -> Option<Client> {
    let hash = hash_token(secret);
    found.into_iter().find(|c| {
        c.secret_hashes
            .iter()
            .any(|h| bool::from(h.as_bytes().ct_eq(hash.as_bytes())))
    })
}

/// 30 characters of `[A-Za-z0-9]`, like oauthlib's tokens.
fn random_code() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::thread_rng(), 30)
}

/// `redirect_uri` with `params` added to its query.
fn with_query(uri: &str, params: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        q.append_pair(k, v);
    }
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{}", q.finish())
}

// The URI as the client sent it (`OriginalUri`): these routes are nested
// under `/hub/api`, and the nested `Uri` lacks that prefix, which the login
// page's `next` and the consent form's action need.
pub(crate) async fn authorize(
    State(hub): State<Arc<Ctx>>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    authorize_inner(&hub, &headers, &uri, &q, None).await
}

/// `POST /hub/api/oauth2/authorize`: the consent form, confirmed.
pub(crate) async fn confirm(
    State(hub): State<Arc<Ctx>>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Query(q): Query<BTreeMap<String, String>>,
    form: Result<Form<BTreeMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let sent = form
        .ok()
        .and_then(|Form(f)| f.get("_xsrf").cloned())
        .unwrap_or_default();
    authorize_inner(&hub, &headers, &uri, &q, Some(sent)).await
}

/// `confirmed`: `None` for the GET (a consent page is shown when the
/// server is someone else's), `Some(token)` for the consent form's POST.
async fn authorize_inner(
    hub: &Ctx,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    q: &BTreeMap<String, String>,
    confirmed: Option<String>,
) -> Response {
    let here = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/hub/api/oauth2/authorize");
    let login = match session::login_of(hub, headers).await {
        Ok(Some(l)) => l,
        Ok(None) => return super::login_redirect(here),
        Err(e) => return hub_error_page(e),
    };
    let user = Some(login.user.as_str());
    let bad = |msg: &str| {
        tracing::info!(user = %login.user, "refused an OAuth authorization: {msg}");
        error_page(
            StatusCode::BAD_REQUEST,
            msg,
            "The link that sent you here is wrong or out of date; go back to the hub.",
            user,
        )
    };
    // login_of passed the read barrier.
    let Some(client_id) = q.get("client_id") else {
        return bad("Missing client_id parameter.");
    };
    let c = match pick_by_redirect(
        clients(hub, client_id),
        q.get("redirect_uri").map(String::as_str),
    ) {
        Ok(c) => c,
        Err(msg) => return bad(msg),
    };
    let redirect_uri = q
        .get("redirect_uri")
        .map(String::as_str)
        .unwrap_or(&c.redirect_uri);
    if redirect_uri != c.redirect_uri {
        return bad("Mismatching redirect URI.");
    }
    let state = q.get("state").map(String::as_str).unwrap_or("");
    let fail = |error: &str| {
        tracing::info!(user = %login.user, error, "OAuth authorization refused");
        redirect(&with_query(
            redirect_uri,
            &[("error", error), ("state", state)],
        ))
    };
    match q.get("response_type").map(String::as_str) {
        Some("code") => {}
        None => return fail("invalid_request"),
        Some(_) => return fail("unsupported_response_type"),
    }
    let challenge = q.get("code_challenge").cloned();
    // RFC 7636: 43-128 characters of [A-Za-z0-9-._~].
    if challenge.as_ref().is_some_and(|c| {
        !(43..=128).contains(&c.len())
            || !c
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
    }) {
        return fail("invalid_request");
    }
    let method = match (
        &challenge,
        q.get("code_challenge_method").map(String::as_str),
    ) {
        (None, _) => None,
        (Some(_), None | Some("plain")) => Some("plain".to_string()),
        (Some(_), Some("S256")) => Some("S256".to_string()),
        (Some(_), Some(_)) => return fail("invalid_request"),
    };
    let held = hub.read(|s| scopes::of_user_in(s, &login.user, false));
    let (may, what) = match &c.service {
        Some(svc) => (
            held.allows("access:services", Resource::Service(&svc.name)),
            format!("the service {}", svc.name),
        ),
        None => (
            held.allows(
                "access:servers",
                Resource::Server {
                    user: &c.user,
                    name: &c.server,
                },
            ),
            format!(
                "the server at {}",
                quorumhub_state::Route::prefix_for(&c.user, &c.server)
            ),
        ),
    };
    if !may {
        tracing::info!(user = %login.user, client = %client_id, "refused access to {what}");
        return error_page(
            StatusCode::FORBIDDEN,
            &format!("You do not have permission to access {what}"),
            if c.service.is_some() {
                "Ask an admin for access:services on it."
            } else {
                "Ask its owner or an admin."
            },
            user,
        );
    }
    // Someone else's server, or a service that asks for consent: the user
    // confirms first, with a form that carries the session's CSRF token (a
    // link alone cannot do it).
    let confirm = match &c.service {
        Some(svc) => !svc.no_confirm,
        None => c.user != login.user,
    };
    if confirm {
        let key = session::cookie_key(hub).unwrap_or_default();
        match &confirmed {
            None => {
                if session::from_script(headers) {
                    return super::pages::script_refused();
                }
                let (xsrf, set) =
                    session::xsrf_token(&key, headers, super::secure(hub), &login.session);
                let mut r = super::page(
                    StatusCode::OK,
                    "consent.html",
                    minijinja::context! {
                        user => login.user,
                        owner => c.user,
                        service => c.service.as_ref().map(|s| s.name.clone()),
                        prefix => quorumhub_state::Route::prefix_for(&c.user, &c.server),
                        xsrf => xsrf,
                        action => here,
                    },
                );
                if let Some(cookie) = set {
                    r.headers_mut().append(header::SET_COOKIE, cookie);
                }
                return r;
            }
            Some(sent) if !session::xsrf_ok(&key, headers, Some(sent), &login.session) => {
                tracing::info!(user = %login.user, "refused an OAuth consent without its CSRF token");
                return error_page(
                    StatusCode::FORBIDDEN,
                    "The confirmation did not come from this hub ('_xsrf' missing or wrong).",
                    "Open the server's link again and confirm on the page.",
                    user,
                );
            }
            Some(_) => {
                tracing::info!(user = %login.user, client = %client_id, "confirmed access to {what}");
            }
        }
    }
    let code = random_code();
    let mut granted = match &c.service {
        Some(svc) => vec![format!("access:services!service={}", svc.name)],
        None => scopes::server_access(&c.user, &c.server),
    };
    granted.extend(scopes::IDENTIFY.iter().map(|s| s.to_string()));
    let issued = quorumhub_core::ops::tokens::issue_oauth_code(
        hub,
        OAuthCode {
            hash: hash_token(&code),
            client_id: client_id.clone(),
            user: login.user.clone(),
            redirect_uri: redirect_uri.to_string(),
            scopes: granted,
            code_challenge: challenge,
            challenge_method: method,
            session: Some(login.session.clone()),
            expires_at: now_ms() + CODE_LIFETIME_MS,
        },
    )
    .await;
    match issued {
        Ok(()) => redirect(&with_query(
            redirect_uri,
            &[("code", &code), ("state", state)],
        )),
        // Logged out meanwhile (through another replica).
        Err(OpError::Rejected(Rejection::NoSuchSession)) => super::login_redirect(here),
        Err(OpError::Rejected(rejection @ Rejection::TooManyCodes)) => error_page(
            StatusCode::TOO_MANY_REQUESTS,
            &rejection.to_string(),
            "",
            user,
        ),
        Err(e) => hub_error_page(e.into_hub_error()),
    }
}

/// An OAuth error reply (RFC 6749 §5.2).
fn oauth_error(status: StatusCode, error: &str, description: Option<&str>) -> Response {
    tracing::info!(error, description, "refused an OAuth token request");
    let mut body = json!({ "error": error });
    if let Some(d) = description {
        body["error_description"] = json!(d);
    }
    let mut r = (status, Json(body)).into_response();
    no_store(r.headers_mut());
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_client\""),
        );
    }
    r
}

fn no_store(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

fn pkce_ok(challenge: &str, method: Option<&str>, verifier: &str) -> bool {
    let computed = match method {
        Some("S256") => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(verifier.as_bytes())),
        _ => verifier.to_string(),
    };
    bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

pub(crate) async fn token(
    State(hub): State<Arc<Ctx>>,
    form: Result<Form<BTreeMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("The body must be a form (application/x-www-form-urlencoded)."),
        );
    };
    let get = |k: &str| f.get(k).map(String::as_str).filter(|v| !v.is_empty());
    if get("grant_type") != Some("authorization_code") {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", None);
    }
    let Some(code) = get("code") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("Missing code parameter."),
        );
    };
    if let Err(e) = hub.linearize().await {
        return oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            Some(&e.to_string()),
        );
    }
    let (Some(client_id), Some(secret)) = (get("client_id"), get("client_secret")) else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", None);
    };
    // An unknown client and a wrong secret are the same refusal.
    let Some(c) = pick_by_secret(clients(&hub, client_id), secret) else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", None);
    };
    let code_hash = hash_token(code);
    let Some(stored) = hub.read(|s| s.oauth_code(&code_hash, now_ms()).cloned()) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", None);
    };
    // The token is the code's user's write, for admission control.
    quorumhub_core::admission::identify(&stored.user, false);
    // The code must be this client's, and (when two old servers share the
    // id) issued for this very server.
    if stored.client_id != client_id || stored.redirect_uri != c.redirect_uri {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", None);
    }
    if get("redirect_uri").is_some_and(|r| r != stored.redirect_uri) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("Mismatching redirect URI."),
        );
    }
    if let Some(challenge) = &stored.code_challenge {
        let Some(verifier) = get("code_verifier") else {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                Some("Code verifier required."),
            );
        };
        if !pkce_ok(challenge, stored.challenge_method.as_deref(), verifier) {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", None);
        }
    }
    let new = quorumhub_core::ops::tokens::NewToken {
        owner: TokenOwner::User {
            name: stored.user.clone(),
        },
        note: String::new(),
        expires_in_s: Some(TOKEN_LIFETIME_S),
        scopes: stored.scopes.clone(),
        client_id: Some(client_id.to_string()),
        session: stored.session.clone(),
    };
    match quorumhub_core::ops::tokens::redeem_oauth_code(
        &hub,
        code_hash,
        client_id.to_string(),
        new,
    )
    .await
    {
        Ok((access, _id)) => {
            tracing::info!(user = %stored.user, client = client_id, "issued an OAuth access token");
            let mut r = Json(json!({
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME_S,
                "scope": stored.scopes.join(" "),
            }))
            .into_response();
            no_store(r.headers_mut());
            r
        }
        // Redeemed or expired meanwhile (a code is redeemed once).
        Err(OpError::Rejected(_)) => oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", None),
        Err(OpError::Unexpected(m)) => {
            oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", Some(&m))
        }
        Err(OpError::Cluster(e)) => oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            Some(&e.to_string()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_as_data() {
        // The challenge computed independently, by Python's hashlib:
        // urlsafe_b64encode(sha256(verifier)) without padding.
        let verifier = "dBjftJeZ4CVP-mJ92pvkwP4cBkQ_wBN2y0PLtA0IhCg";
        let s256 = "OfICzWWGAydA0fQZO7iNsB-ikid02cEM9xiPUg46HUo";
        assert!(pkce_ok(s256, Some("S256"), verifier));
        assert!(!pkce_ok(s256, Some("S256"), "wrong"));
        assert!(pkce_ok("plain-v", Some("plain"), "plain-v"));
        assert!(pkce_ok("plain-v", None, "plain-v"));
        assert!(!pkce_ok(s256, None, verifier));
    }

    #[test]
    fn redirects_keep_the_existing_query() {
        assert_eq!(
            with_query("/cb", &[("code", "a b"), ("state", "s")]),
            "/cb?code=a+b&state=s"
        );
        assert_eq!(with_query("/cb?x=1", &[("code", "c")]), "/cb?x=1&code=c");
    }
}
