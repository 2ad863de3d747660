//! The hub's HTTP application: the REST API ([`crate::api`]) and the
//! browser pages ([`crate::web`]) side by side, which never import each
//! other, composed here with what every request passes (its span and
//! refusal log, the body limits) and what no route of theirs matches
//! (`/hub/health`, `/hub/user/...`, and `/user/...` reaching a hub because
//! the proxy has no route for it).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::auth::{Caller, HttpState};
use crate::config::HttpConfig;
use crate::error::{ApiError, ErrorMessage, Refused, SpawnRefused};
use crate::metrics::Metrics;
use crate::{Cluster, Ctx};
use quorumhub_core::scopes::Resource;

/// The replica's HTTP application over `cluster`, serving `metrics` at
/// `/hub/metrics`.
pub fn router(cluster: Arc<dyn Cluster>, config: HttpConfig, metrics: Metrics) -> Router {
    let authenticate_metrics = config.authenticate_prometheus;
    let hub = Ctx::new(cluster, config);
    let state = HttpState::new(hub.clone(), metrics);
    let api = crate::api::routes()
        .merge(crate::web::oauth_routes())
        .fallback(crate::api::not_found)
        .layer(axum::middleware::from_fn(crate::api::options));
    Router::new()
        .route("/hub/api/", get(crate::api::version))
        .nest("/hub/api", api)
        .merge(crate::web::router())
        .route("/hub/user/{*rest}", axum::routing::any(hub_user))
        .route("/hub/health", get(health))
        .route(
            "/hub/metrics",
            if authenticate_metrics {
                get(metrics_for_caller)
            } else {
                get(metrics_for_anyone)
            },
        )
        .fallback(no_route)
        // Inside the request span, so that a 413 is logged like any refusal.
        .layer(axum::middleware::from_fn_with_state(
            hub.clone(),
            crate::limits::limit_body,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_span,
        ))
        .with_state(state)
}

/// Every request gets an id (from `X-Request-Id` or new) and a span with
/// the node id, so one request can be followed across replicas.
async fn request_span(State(state): State<HttpState>, req: Request, next: Next) -> Response {
    let hub = &state.hub;
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let node = hub.node();
    let span = tracing::info_span!("http", node = node.id, term = node.term, request_id = %id, method = %req.method(), path = %req.uri().path());
    let started = std::time::Instant::now();
    let client = client_of(&req);
    // The route's pattern, not the path, and only the standard methods: a
    // client cannot make up new series.
    let handler = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "none".into());
    let method: &'static str = match req.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    };
    let writer = std::sync::Arc::new(quorumhub_core::admission::Writer::default());
    let mut resp = tracing::Instrument::instrument(
        quorumhub_core::admission::scope(writer.clone(), next.run(req)),
        span.clone(),
    )
    .await;
    let status = resp.status();
    state
        .metrics
        .observe(method, &handler, status.as_u16(), started.elapsed());
    if let Some(SpawnRefused(reason)) = resp.extensions_mut().remove::<SpawnRefused>() {
        state.metrics.spawn_refused(reason, started.elapsed());
    }
    let refused = resp.extensions_mut().remove::<Refused>();
    let error = resp.extensions_mut().remove::<ErrorMessage>();
    let who = writer.user().map(|u| format!("user {u}")).unwrap_or(client);
    span.in_scope(|| {
        if let Some(Refused { kind, message }) = refused {
            // A limit or quota: logged once per client per interval, so a
            // flood does not become a flood of log lines.
            let key = format!("{kind}:{who}");
            match state
                .refusals
                .should_log(&key, std::time::Instant::now())
            {
                Some(unlogged) => tracing::info!(
                    status = status.as_u16(),
                    client = %who,
                    kind,
                    unlogged,
                    "request refused by a limit: {message} (logged once a minute per client and kind; \
                     `unlogged`: refusals since the last line)"
                ),
                None => tracing::debug!(status = status.as_u16(), client = %who, kind, "request refused by a limit: {message}"),
            }
        } else if status.is_server_error() {
            tracing::warn!(
                status = status.as_u16(),
                ms = started.elapsed().as_millis() as u64,
                "request failed"
            );
        } else if status.is_client_error() {
            // Bad input: logged with what the client was told, once per
            // client and status per interval (the rest at debug).
            // Quoted and cut short: it may echo what the client sent. The
            // pages' error pages carry none.
            let message = error
                .map(|ErrorMessage(m)| format!(": {:?}", m.chars().take(300).collect::<String>()))
                .unwrap_or_default();
            let key = format!("{}:{who}", status.as_u16());
            match state.refusals.should_log(&key, std::time::Instant::now()) {
                Some(unlogged) => tracing::info!(
                    status = status.as_u16(),
                    client = %who,
                    ms = started.elapsed().as_millis() as u64,
                    unlogged,
                    "request refused{message} (logged once a minute per client and status; \
                     `unlogged`: refusals since the last line)"
                ),
                None => tracing::debug!(
                    status = status.as_u16(),
                    client = %who,
                    ms = started.elapsed().as_millis() as u64,
                    "request refused{message}"
                ),
            }
        } else {
            tracing::debug!(
                status = status.as_u16(),
                ms = started.elapsed().as_millis() as u64,
                "request"
            );
        }
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    // jupyterhub-singleuser compares this with its own version.
    if let Ok(v) = HeaderValue::from_str(&hub.config.jupyterhub_version) {
        resp.headers_mut().insert("x-jupyterhub-version", v);
    }
    // Shutting down: close each keep-alive connection after its response,
    // so the client (a proxy) never sends another request on a connection
    // this replica is about to close.
    if hub.draining() {
        resp.headers_mut().insert(
            axum::http::header::CONNECTION,
            HeaderValue::from_static("close"),
        );
    }
    resp
}

/// Who sent a request, before authentication: the client address the
/// edge resolved (behind `--trusted-proxies`), else `direct`.
fn client_of(req: &Request) -> String {
    match req.extensions().get::<quorumhub_edge::Client>() {
        Some(c) => format!("address {}", c.addr),
        None => "address direct".into(),
    }
}

/// `/hub/metrics` for a caller with `read:metrics`.
async fn metrics_for_caller(
    State(state): State<HttpState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require("read:metrics", Resource::Any)?;
    Ok(metrics_for_anyone(State(state)).await)
}

/// `/hub/metrics` without authentication (`--authenticate-prometheus false`).
async fn metrics_for_anyone(State(state): State<HttpState>) -> Response {
    match state.metrics.render() {
        Ok(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                crate::metrics::CONTENT_TYPE,
            )],
            text,
        )
            .into_response(),
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("could not encode the metrics: {e}"),
        )
        .into_response(),
    }
}

async fn health(State(hub): State<Arc<Ctx>>) -> Response {
    let m = hub.node();
    let body = json!({
        "node": m.id,
        "leader": m.leader,
        "term": m.term,
        "applied": m.applied,
    });
    let status = if m.leader.is_some() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// The user a `/user/{name}{tail}` path names, split from `rest` (the path
/// after `/user/`), with the name decoded and normalised as every lookup
/// normalises it (JupyterHub's lower case); and, when the path spelled the
/// name differently, the path spelled as the proxy's routes spell it.
/// Normalising is idempotent, so the canonical path has no canonical path
/// of its own: one redirect, never a loop.
pub(crate) fn user_path(rest: &str) -> (String, Option<String>) {
    let (segment, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    // Bytes that are not UTF-8 name no user: no redirect.
    let Some(decoded) = quorumhub_state::ids::percent_decode(segment) else {
        return (quorumhub_state::normalize_username(segment), None);
    };
    let user = quorumhub_state::normalize_username(&decoded);
    let canonical = quorumhub_state::ids::url_escape_path(&user);
    let other = (canonical != segment && quorumhub_state::validate_username(&user).is_ok())
        .then(|| format!("/user/{canonical}{tail}"));
    (user, other)
}

/// A 307 (method and body kept) to `path` with the request's query.
fn temporary_redirect(path: &str, query: Option<&str>) -> Response {
    let to = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    match HeaderValue::from_str(&to) {
        Ok(v) => (
            StatusCode::TEMPORARY_REDIRECT,
            [(axum::http::header::LOCATION, v)],
        )
            .into_response(),
        Err(_) => ApiError::new(StatusCode::BAD_REQUEST, "Invalid path").into_response(),
    }
}

/// `/hub/user/{name}/...` (JupyterHub's hub-side user URL, found in old
/// links): a 307 to `/user/{name}/...` with the name normalised, where the
/// proxy sends it to the server or, when it is not running, back to a hub
/// ([`no_route`]), which never redirects to `/hub/user/`.
async fn hub_user(req: Request) -> Response {
    let rest = req
        .uri()
        .path()
        .strip_prefix("/hub/user/")
        .unwrap_or_default();
    let (user, canonical) = user_path(rest);
    if quorumhub_state::validate_username(&user).is_err() {
        return ApiError::new(StatusCode::NOT_FOUND, "Not Found").into_response();
    }
    let path = canonical.unwrap_or_else(|| format!("/user/{rest}"));
    temporary_redirect(&path, req.uri().query())
}

/// A request that reached a hub but matches no hub page: for `/user/...`
/// the server is not running (the proxy has no route for it). A name
/// spelled otherwise than the routes spell it (`/user/ALICE/`) is first
/// sent, once, to its canonical spelling. A browser asking for a page is
/// sent to the spawn-pending page while the server starts, or gets a 424
/// page with a link to start it (JupyterHub's rule); API clients get JSON.
/// A server that runs but that the proxy does not route yet gets a 503
/// page: redirecting would bring the browser straight back here.
async fn no_route(State(hub): State<Arc<Ctx>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let Some(rest) = path.strip_prefix("/user/") else {
        return ApiError::new(StatusCode::NOT_FOUND, "Not Found").into_response();
    };
    let (user, canonical) = user_path(rest);
    if let Some(canonical) = canonical {
        return temporary_redirect(&canonical, req.uri().query());
    }
    let wants_html = req.method() == axum::http::Method::GET
        && !path.contains("/api/")
        && req
            .headers()
            .get(axum::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
    if !wants_html {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{user}'s server is not running; start it with POST /hub/api/users/{user}/server"
            ),
        )
        .into_response();
    }
    let uri = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or(&path)
        .to_string();
    let next: String = url::form_urlencoded::byte_serialize(uri.as_bytes()).collect();
    let phase = hub.read(|s| {
        s.server(&user, quorumhub_state::DEFAULT_SERVER)
            .map(|sv| sv.phase)
    });
    match phase {
        Some(quorumhub_state::Phase::Running) => {
            let mut r = crate::web::error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("{user}'s server is running, but the proxy does not route to it yet."),
                "Reload in a moment. If this persists, check the proxy (its log, and hubctl status).",
                None,
            );
            r.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(1));
            // Browsers reload by themselves after a second (the HTML
            // `Refresh` header): the proxy's route is usually there by then.
            r.headers_mut().insert(
                axum::http::HeaderName::from_static("refresh"),
                HeaderValue::from(1),
            );
            return r;
        }
        Some(_) => {
            return crate::web::redirect(&format!("/hub/spawn-pending/{user}?next={next}"));
        }
        None => {}
    }
    crate::web::error_page(
        StatusCode::FAILED_DEPENDENCY,
        &format!("{user}'s server is not running."),
        &format!("Start it from /hub/spawn/{user}?next={next} or the home page."),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_paths_as_data() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("alice-x/", "alice-x", None),
            ("alice-x", "alice-x", None),
            ("alice/x/lab", "alice", None),
            ("ALICE-X/", "alice-x", Some("/user/alice-x/")),
            ("ALICE-X", "alice-x", Some("/user/alice-x")),
            ("Alice/X/lab?q", "alice", Some("/user/alice/X/lab?q")),
            ("alice%40x/api", "alice@x", Some("/user/alice@x/api")),
            ("alice@x/", "alice@x", None),
            ("%41lice/", "alice", Some("/user/alice/")),
            ("%20alice/", "alice", Some("/user/alice/")),
            // Not a name a user can have: no redirect, whatever it says.
            ("a%2Fb/", "a/b", None),
            ("%FF/", "%ff", None),
            ("", "", None),
            // A user may be named "%": its path escapes it.
            ("%", "%", Some("/user/%25")),
            ("%C3%9CN%C3%8F/", "ünï", Some("/user/%C3%BCn%C3%AF/")),
            ("%C3%BCn%C3%AF/lab", "ünï", None),
        ];
        for (rest, user, canonical) in cases {
            let (u, c) = user_path(rest);
            assert_eq!((u.as_str(), c.as_deref()), (*user, *canonical), "{rest:?}");
            // One redirect at most: the canonical path is its own.
            if let Some(c) = c {
                let again = user_path(c.strip_prefix("/user/").unwrap_or_default());
                assert_eq!(again, (u.clone(), None), "{c}");
            }
        }
    }
}
