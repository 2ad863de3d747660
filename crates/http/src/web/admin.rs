//! Admin pages: users and their servers (`/hub/admin`), the cluster
//! (`/hub/cluster`, something JupyterHub cannot show), and every user's
//! token page (`/hub/token`). Buttons call the REST API from a few lines
//! of JavaScript with the CSRF token in `X-XSRFToken`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use minijinja::context;
use serde_json::json;

use super::pages::require_login;
use super::{error_page, page, secure};
use crate::auth::session::{self, Login};
use crate::Ctx;
use quorumhub_core::scopes::{self, Resource};
use quorumhub_core::time::iso;

fn is_admin(hub: &Ctx, login: &Login) -> bool {
    hub.read(|s| scopes::of_user_in(s, &login.user, false))
        .allows("admin-ui", Resource::Any)
}

fn with_xsrf(
    hub: &Ctx,
    headers: &HeaderMap,
    login: &Login,
    render: impl FnOnce(String) -> Response,
) -> Response {
    if session::from_script(headers) {
        return super::pages::script_refused();
    }
    let key = session::cookie_key(hub).unwrap_or_default();
    let (xsrf, set) = session::xsrf_token(&key, headers, secure(hub), &login.session);
    let mut r = render(xsrf);
    if let Some(c) = set {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    r
}

fn not_admin(login: &Login) -> Response {
    tracing::info!(user = %login.user, "refused an admin page");
    error_page(
        StatusCode::FORBIDDEN,
        "This page is for admins.",
        "Ask an admin if you need something changed.",
        Some(&login.user),
    )
}

pub(crate) async fn admin(State(hub): State<Arc<Ctx>>, headers: HeaderMap) -> Response {
    let login = match require_login(&hub, &headers, "/hub/admin").await {
        Ok(l) => l,
        Err(r) => return r,
    };
    // require_login passed the read barrier.
    if !is_admin(&hub, &login) {
        return not_admin(&login);
    }
    let (users, groups) = hub.read(|s| {
        let users: Vec<_> = s
            .users
            .values()
            .map(|u| {
                let server = u.servers.get("");
                json!({
                    "name": u.name,
                    "admin": u.admin,
                    "groups": u.groups.join(", "),
                    "server": match server {
                        Some(sv) if sv.ready() => "running".to_string(),
                        Some(sv) => sv.pending().unwrap_or("pending").to_string(),
                        None => "stopped".to_string(),
                    },
                    "last_activity": u.last_activity.map(iso).unwrap_or_default(),
                })
            })
            .collect();
        let groups: Vec<_> = s
            .groups
            .values()
            .map(|g| json!({"name": g.name, "users": g.users.join(", ")}))
            .collect();
        (users, groups)
    });
    with_xsrf(&hub, &headers, &login, |xsrf| {
        page(
            StatusCode::OK,
            "admin.html",
            context! { user => login.user, admin => true, users => users, groups => groups, xsrf => xsrf },
        )
    })
}

pub(crate) async fn token(State(hub): State<Arc<Ctx>>, headers: HeaderMap) -> Response {
    let login = match require_login(&hub, &headers, "/hub/token").await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let admin = is_admin(&hub, &login);
    with_xsrf(&hub, &headers, &login, |xsrf| {
        page(
            StatusCode::OK,
            "token.html",
            context! { user => login.user, admin => admin, xsrf => xsrf },
        )
    })
}

pub(crate) async fn cluster(State(hub): State<Arc<Ctx>>, headers: HeaderMap) -> Response {
    let login = match require_login(&hub, &headers, "/hub/cluster").await {
        Ok(l) => l,
        Err(r) => return r,
    };
    if !is_admin(&hub, &login) {
        return not_admin(&login);
    }
    let view = hub.members().await;
    page(
        StatusCode::OK,
        "cluster.html",
        context! { user => login.user, admin => true, cluster => view },
    )
}
