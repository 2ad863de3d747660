//! What browsers see: the pages under `/hub/` (login, home, spawn,
//! spawn-pending, logout) and the OAuth provider under
//! `/hub/api/oauth2/`, rendered on the server with minijinja templates
//! compiled into the binary.

mod admin;
mod oauth;
mod oidc;
mod pages;

use std::sync::OnceLock;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use minijinja::Environment;

use crate::auth::HttpState;
use crate::Ctx;
use quorumhub_core::HubError;

pub fn router() -> Router<HttpState> {
    Router::new()
        .route("/hub/", get(pages::root))
        .route("/hub", get(pages::root))
        .route("/hub/login", get(pages::login_form).post(pages::login))
        .route("/hub/logout", get(pages::logout).post(pages::logout))
        .route("/hub/home", get(pages::home))
        .route(
            "/hub/spawn",
            get(pages::spawn_own).post(pages::spawn_own_form),
        )
        .route(
            "/hub/spawn/{user}",
            get(pages::spawn_for).post(pages::spawn_for_form),
        )
        .route("/hub/stop", post(pages::stop_own))
        .route(
            "/hub/spawn/{user}/{server}",
            get(pages::spawn_named).post(pages::spawn_named_form),
        )
        .route("/hub/spawn-pending/{user}", get(pages::spawn_pending))
        .route(
            "/hub/spawn-pending/{user}/{server}",
            get(pages::spawn_pending_named),
        )
        .route("/hub/oidc/login", get(oidc::start))
        .route("/hub/oauth_callback", get(oidc::callback))
        .route("/hub/admin", get(admin::admin))
        .route("/hub/cluster", get(admin::cluster))
        .route("/hub/token", get(admin::token))
}

/// The OAuth provider's routes, nested under `/hub/api`.
pub(crate) fn oauth_routes() -> Router<HttpState> {
    Router::new()
        .route(
            "/oauth2/authorize",
            get(oauth::authorize).post(oauth::confirm),
        )
        .route("/oauth2/token", post(oauth::token))
}

fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, text) in [
            ("base.html", include_str!("../../templates/base.html")),
            ("login.html", include_str!("../../templates/login.html")),
            ("home.html", include_str!("../../templates/home.html")),
            (
                "spawn_pending.html",
                include_str!("../../templates/spawn_pending.html"),
            ),
            ("spawn.html", include_str!("../../templates/spawn.html")),
            ("error.html", include_str!("../../templates/error.html")),
            ("admin.html", include_str!("../../templates/admin.html")),
            ("cluster.html", include_str!("../../templates/cluster.html")),
            ("token.html", include_str!("../../templates/token.html")),
            ("consent.html", include_str!("../../templates/consent.html")),
        ] {
            if let Err(e) = env.add_template(name, text) {
                tracing::error!("template {name} does not compile: {e}");
            }
        }
        env
    })
}

/// Render `name` with `ctx` as an HTML response with `status`.
pub(crate) fn page(status: StatusCode, name: &str, ctx: minijinja::Value) -> Response {
    let rendered = templates().get_template(name).and_then(|t| t.render(ctx));
    match rendered {
        Ok(html) => {
            let mut r = (status, Html(html)).into_response();
            r.headers_mut().insert(
                "content-security-policy",
                HeaderValue::from_static("frame-ancestors 'none'"),
            );
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => {
            tracing::error!("rendering {name} failed: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

/// An HTML error page that says what to do.
pub(crate) fn error_page(
    status: StatusCode,
    message: &str,
    hint: &str,
    user: Option<&str>,
) -> Response {
    page(
        status,
        "error.html",
        minijinja::context! {
            status => status.as_u16(),
            reason => status.canonical_reason().unwrap_or(""),
            message => message,
            hint => hint,
            user => user,
        },
    )
}

/// A hub failure shown to a browser.
pub(crate) fn hub_error_page(e: HubError) -> Response {
    let retry_after = e.retry_after();
    if retry_after.is_none() {
        tracing::warn!("page failed: {e}");
    }
    // The same status as the API's (crate::error).
    let (status, message) = crate::error::ApiError::from(e).parts();
    let mut r = error_page(status, &message, "Try again in a moment.", None);
    if let Some(secs) = retry_after {
        // Shed by admission control: logged once per client per interval.
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        r.extensions_mut().insert(crate::error::Refused {
            kind: "admission",
            message,
        });
    }
    r
}

/// A 302 to the login page, coming back to `here` afterwards.
pub(crate) fn login_redirect(here: &str) -> Response {
    redirect(&format!(
        "/hub/login?next={}",
        url::form_urlencoded::byte_serialize(here.as_bytes()).collect::<String>()
    ))
}

/// A 302 to `to`.
pub(crate) fn redirect(to: &str) -> Response {
    match HeaderValue::from_str(to) {
        Ok(v) => (StatusCode::FOUND, [(header::LOCATION, v)]).into_response(),
        Err(_) => redirect("/hub/home"),
    }
}

/// `next` if it is a path on this site, else `None`: never an absolute
/// URL or a scheme-relative `//host` (an open redirect).
pub(crate) fn safe_next(next: Option<&str>) -> Option<String> {
    let next = next?.trim();
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(|c| c.is_control());
    ok.then(|| next.to_string())
}

/// Are pages served over TLS (cookies then get `Secure`)?
pub(crate) fn secure(hub: &Ctx) -> bool {
    hub.config.public_url.starts_with("https://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_urls_as_data() {
        let cases = [
            (Some("/hub/home"), Some("/hub/home")),
            (Some("/user/a/lab?x=1"), Some("/user/a/lab?x=1")),
            (Some("//evil.example/x"), None),
            (Some("https://evil.example/x"), None),
            (Some("/\\evil.example"), None),
            (Some("/a\nb"), None),
            (Some("relative"), None),
            (None, None),
        ];
        for (input, want) in cases {
            assert_eq!(safe_next(input).as_deref(), want, "{input:?}");
        }
    }

    #[test]
    fn every_template_renders() {
        for name in [
            "login.html",
            "home.html",
            "spawn_pending.html",
            "spawn.html",
            "error.html",
        ] {
            let t = templates().get_template(name).expect(name);
            t.render(minijinja::context! {
                user => "alice", next => "/x", xsrf => "t", users => Vec::<String>::new(),
                cluster => serde_json::json!({"members": [], "term": 1, "cluster_version": 3}),
            })
            .expect(name);
        }
    }
}
