//! The hub's pages: login, logout, home, spawn and spawn-pending.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use minijinja::context;
use quorumhub_state::{normalize_username, validate_username, Phase, DEFAULT_SERVER};
use serde::Deserialize;
use std::collections::HashMap;

use super::{error_page, hub_error_page, page, redirect, safe_next, secure};
use crate::auth::session::{self, Login};
use crate::auth::LoginLimiter;
use crate::error::ApiError;
use crate::Ctx;
use quorumhub_core::ops::{servers, OpError};
use quorumhub_core::scopes::{self, Resource};

#[derive(Deserialize, Default)]
pub(crate) struct NextQuery {
    next: Option<String>,
}

/// The login the request's cookie proves, or the redirect to the login
/// page (coming back to `here` afterwards).
pub(crate) async fn require_login(
    hub: &Ctx,
    headers: &HeaderMap,
    here: &str,
) -> Result<Login, Response> {
    match session::login_of(hub, headers).await {
        Ok(Some(login)) => Ok(login),
        Ok(None) => Err(super::login_redirect(here)),
        Err(e) => Err(hub_error_page(e)),
    }
}

pub(crate) async fn root(State(hub): State<Arc<Ctx>>, headers: HeaderMap) -> Response {
    match require_login(&hub, &headers, "/hub/").await {
        Ok(_) => redirect("/hub/home"),
        Err(r) => r,
    }
}

pub(crate) async fn login_form(
    State(hub): State<Arc<Ctx>>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    if let Ok(Some(_)) = session::login_of(&hub, &headers).await {
        return redirect(next.as_deref().unwrap_or("/hub/home"));
    }
    render_login(&hub, &headers, next.as_deref(), "", None, StatusCode::OK).await
}

async fn render_login(
    hub: &Ctx,
    headers: &HeaderMap,
    next: Option<&str>,
    username: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let key = match session::ensure_cookie_key(hub).await {
        Ok(k) => k,
        Err(e) => return hub_error_page(e),
    };
    let (xsrf, set) = session::xsrf_token(&key, headers, secure(hub), session::ANONYMOUS);
    let mut r = page(
        status,
        "login.html",
        context! {
            next => next.unwrap_or(""), xsrf => xsrf, username => username, error => error,
            oidc => hub.config.oidc.issuer.is_some().then_some(&hub.config.oidc.display_name),
        },
    );
    if let Some(c) = set {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    r
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(rename = "_xsrf", default)]
    xsrf: Option<String>,
}

/// The client's address as the edge resolved it (behind
/// `--trusted-proxies`), for rate limiting.
fn client_addr(client: Option<&quorumhub_edge::Client>) -> String {
    client
        .map(|c| c.addr.to_string())
        .unwrap_or_else(|| "direct".into())
}

pub(crate) async fn login(
    State(hub): State<Arc<Ctx>>,
    State(login_limiter): State<Arc<LoginLimiter>>,
    headers: HeaderMap,
    client: Option<axum::Extension<quorumhub_edge::Client>>,
    Query(q): Query<NextQuery>,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    let Ok(Form(form)) = form else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "The login form was malformed.",
            "Go back and sign in again.",
            None,
        );
    };
    let key = match session::ensure_cookie_key(&hub).await {
        Ok(k) => k,
        Err(e) => return hub_error_page(e),
    };
    if !session::xsrf_ok(&key, &headers, form.xsrf.as_deref(), session::ANONYMOUS) {
        tracing::info!("refused a login post without a valid CSRF token");
        return error_page(
            StatusCode::FORBIDDEN,
            "The login form expired or did not come from this hub ('_xsrf' missing or wrong).",
            "Reload the login page and sign in again.",
            None,
        );
    }
    let name = normalize_username(&form.username);
    let addr = client_addr(client.as_deref());
    if validate_username(&name).is_err() {
        // No such user can exist: refuse without hashing or remembering it.
        tracing::info!(addr = %addr, "failed login: invalid user name");
        return render_login(
            &hub,
            &headers,
            next.as_deref(),
            "",
            Some("Invalid username or password"),
            StatusCode::FORBIDDEN,
        )
        .await;
    }
    let keys = [format!("user:{name}"), format!("addr:{addr}")];
    let now = Instant::now();
    if let Some(wait) = login_limiter.blocked(&keys, now) {
        tracing::warn!(user = %name, addr = %addr, "login rate limited");
        let mut r = render_login(
            &hub,
            &headers,
            next.as_deref(),
            &name,
            Some(&format!(
                "Too many failed sign-ins. Try again in {} s.",
                wait.as_secs().max(1)
            )),
            StatusCode::TOO_MANY_REQUESTS,
        )
        .await;
        if let Ok(v) = wait.as_secs().max(1).to_string().parse() {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    // Counted before the (slow) check, so parallel guesses count too.
    login_limiter.failed(&keys, now);
    if let Err(e) = hub.linearize().await {
        return hub_error_page(e);
    }
    let stored = hub.read(|s| s.user(&name).and_then(|u| u.password_hash.clone()));
    if !quorumhub_core::password::verify(stored, form.password).await {
        tracing::info!(user = %name, addr = %addr, "failed login");
        return render_login(
            &hub,
            &headers,
            next.as_deref(),
            &name,
            Some("Invalid username or password"),
            StatusCode::FORBIDDEN,
        )
        .await;
    }
    login_limiter.undo(&keys[1], now);
    login_limiter.succeeded(&keys[0]);
    let cookie = match session::start_session(&hub, &name, secure(&hub)).await {
        Ok(c) => c,
        Err(e) => return hub_error_page(e),
    };
    tracing::info!(user = %name, "logged in");
    let mut r = redirect(next.as_deref().unwrap_or("/hub/home"));
    r.headers_mut().append(header::SET_COOKIE, cookie);
    r
}

pub(crate) async fn logout(State(hub): State<Arc<Ctx>>, headers: HeaderMap) -> Response {
    if let Ok(Some(login)) = session::login_of(&hub, &headers).await {
        if let Err(e) = session::end_session(&hub, &login).await {
            return hub_error_page(e);
        }
        tracing::info!(user = %login.user, "logged out");
    }
    let mut r = redirect("/hub/login");
    r.headers_mut().append(
        header::SET_COOKIE,
        session::clear_cookie(session::LOGIN_COOKIE, "/hub/"),
    );
    r
}

pub(crate) async fn home(State(hub): State<Arc<Ctx>>, headers: HeaderMap) -> Response {
    let login = match require_login(&hub, &headers, "/hub/home").await {
        Ok(l) => l,
        Err(r) => return r,
    };
    if session::from_script(&headers) {
        return script_refused();
    }
    let key = session::cookie_key(&hub).unwrap_or_default();
    let (xsrf, set) = session::xsrf_token(&key, &headers, secure(&hub), &login.session);
    let (state, pending) = hub.read(|s| match s.server(&login.user, DEFAULT_SERVER) {
        Some(sv) if sv.phase == Phase::Running => ("running", ""),
        Some(sv) => ("pending", sv.pending().unwrap_or("")),
        None => ("stopped", ""),
    });
    let url = quorumhub_state::Route::prefix_for(&login.user, DEFAULT_SERVER);
    let admin = hub.read(|s| s.user(&login.user).is_some_and(|u| u.admin));
    let named: Vec<serde_json::Value> = hub.read(|s| {
        s.user(&login.user)
            .map(|u| {
                u.servers
                    .values()
                    .filter(|sv| !sv.name.is_empty())
                    .map(|sv| {
                        serde_json::json!({
                            "name": sv.name,
                            "state": if sv.ready() { "running" } else { sv.pending().unwrap_or("pending") },
                            "url": quorumhub_state::Route::prefix_for(&u.name, &sv.name),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    });
    // JupyterHub's services menu: the services to display that the
    // proxies route.
    let services: Vec<serde_json::Value> = hub.read(|s| {
        s.configured_services()
            .filter(|svc| svc.display && svc.url.is_some())
            .map(|svc| serde_json::json!({"name": svc.name, "url": svc.prefix()}))
            .collect()
    });
    let mut r = page(
        StatusCode::OK,
        "home.html",
        context! {
            user => login.user, admin => admin, server => state, pending => pending, url => url,
            xsrf => xsrf, named => named, services => services,
            with_options => !hub.config.profiles.is_empty(),
        },
    );
    if let Some(c) = set {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    r
}

pub(crate) async fn spawn_own(State(hub): State<Arc<Ctx>>, headers: HeaderMap) -> Response {
    let login = match require_login(&hub, &headers, "/hub/spawn").await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let user = login.user.clone();
    spawn(&hub, &headers, &login, &user, DEFAULT_SERVER, "/hub/spawn").await
}

/// The options form's answer for one's own server.
pub(crate) async fn spawn_own_form(
    State(hub): State<Arc<Ctx>>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let login = match require_login(&hub, &headers, "/hub/spawn").await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let user = login.user.clone();
    spawn_posted(
        &hub,
        &headers,
        &login,
        &user,
        DEFAULT_SERVER,
        "/hub/spawn",
        form,
    )
    .await
}

/// Where the options form of `user`'s server `server` posts to, `next`
/// kept.
fn spawn_for_action(user: &str, server: &str, next: Option<&str>) -> String {
    let mut action = format!("/hub/spawn/{}", quorumhub_state::ids::url_escape_path(user));
    if !server.is_empty() {
        action += "/";
        action += &quorumhub_state::ids::url_escape_path(server);
    }
    if let Some(next) = next {
        action += "?next=";
        action.extend(url::form_urlencoded::byte_serialize(next.as_bytes()));
    }
    action
}

/// The pending page of `user`'s server `server`.
fn pending_url(user: &str, server: &str) -> String {
    if server.is_empty() {
        format!("/hub/spawn-pending/{user}")
    } else {
        format!(
            "/hub/spawn-pending/{user}/{}",
            quorumhub_state::ids::url_escape_path(server)
        )
    }
}

/// After a start from `/hub/spawn/{user}[/{server}]?next=...`: to the
/// pending page, which goes on to `next`.
fn with_next(r: Response, user: &str, server: &str, next: Option<&str>) -> Response {
    match safe_next(next) {
        Some(next) if r.status() == StatusCode::FOUND => redirect(&format!(
            "{}?next={}",
            pending_url(user, server),
            url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
        )),
        _ => r,
    }
}

pub(crate) async fn spawn_for(
    State(hub): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Query(q): Query<NextQuery>,
) -> Response {
    spawn_page(&hub, &headers, &raw, DEFAULT_SERVER, q).await
}

/// `GET /hub/spawn/{user}/{server}`: a named server (JupyterHub's spawn
/// page for it).
pub(crate) async fn spawn_named(
    State(hub): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path((raw, server)): Path<(String, String)>,
    Query(q): Query<NextQuery>,
) -> Response {
    spawn_page(&hub, &headers, &raw, &server, q).await
}

/// A server name outside the rule: a 400 page saying why.
fn bad_server_name(server: &str, login: &Login) -> Option<Response> {
    let why = quorumhub_state::validate_server_name(server).err()?;
    Some(error_page(
        StatusCode::BAD_REQUEST,
        &format!("Invalid server name {server:?}: {why}"),
        "Go back to the home page.",
        Some(&login.user),
    ))
}

async fn spawn_page(
    hub: &Ctx,
    headers: &HeaderMap,
    raw: &str,
    server: &str,
    q: NextQuery,
) -> Response {
    let user = normalize_username(raw);
    let here = spawn_for_action(&user, server, None);
    let login = match require_login(hub, headers, &here).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    if let Some(r) = bad_server_name(server, &login).filter(|_| !server.is_empty()) {
        return r;
    }
    // Starting someone else's server by a link from another site: refused.
    if login.user != user && cross_site(headers) {
        tracing::info!(user = %login.user, target = %user, server, "refused a cross-site spawn");
        return error_page(
            StatusCode::FORBIDDEN,
            &format!("A link from another site asked to start {user}'s server."),
            "Start it from the admin page.",
            Some(&login.user),
        );
    }
    let next = safe_next(q.next.as_deref());
    let action = spawn_for_action(&user, server, next.as_deref());
    let r = spawn(hub, headers, &login, &user, server, &action).await;
    with_next(r, &user, server, next.as_deref())
}

/// The options form's answer for `user`'s server.
pub(crate) async fn spawn_for_form(
    State(hub): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Query(q): Query<NextQuery>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    spawn_form_answer(&hub, &headers, &raw, DEFAULT_SERVER, q, form).await
}

/// The options form's answer for `user`'s named server `server`.
pub(crate) async fn spawn_named_form(
    State(hub): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path((raw, server)): Path<(String, String)>,
    Query(q): Query<NextQuery>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    spawn_form_answer(&hub, &headers, &raw, &server, q, form).await
}

async fn spawn_form_answer(
    hub: &Ctx,
    headers: &HeaderMap,
    raw: &str,
    server: &str,
    q: NextQuery,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let user = normalize_username(raw);
    let here = spawn_for_action(&user, server, None);
    let login = match require_login(hub, headers, &here).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    if let Some(r) = bad_server_name(server, &login).filter(|_| !server.is_empty()) {
        return r;
    }
    let next = safe_next(q.next.as_deref());
    let action = spawn_for_action(&user, server, next.as_deref());
    let r = spawn_posted(hub, headers, &login, &user, server, &action, form).await;
    with_next(r, &user, server, next.as_deref())
}

/// Whether `login` may start and stop `user`'s server `server`.
fn may_manage(hub: &Ctx, login: &Login, user: &str, server: &str) -> bool {
    hub.read(|s| scopes::of_user_in(s, &login.user, false))
        .allows("servers", Resource::Server { user, name: server })
}

/// `Sec-Fetch-Site` says the request came from another site.
fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site" || v == "same-site")
}

/// Pages that carry a CSRF token are for the user's own navigation, never
/// for a script (JavaScript on a user's server shares this origin).
pub(crate) fn script_refused() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "This page cannot be fetched by a script.",
        "Open it in the browser.",
        None,
    )
}

fn may_not_start(login: &Login, user: &str) -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        &format!("You may not start {user}'s server."),
        "Only the owner and admins can start a server.",
        Some(&login.user),
    )
}

/// `GET /hub/spawn[/{user}]`: with profiles, the options form for a server
/// that is not active; otherwise the start itself.
async fn spawn(
    hub: &Ctx,
    headers: &HeaderMap,
    login: &Login,
    user: &str,
    server: &str,
    action: &str,
) -> Response {
    if !may_manage(hub, login, user, server) {
        return may_not_start(login, user);
    }
    // require_login passed the read barrier.
    let active = hub.read(|s| s.server(user, server).is_some());
    if !hub.config.profiles.is_empty() && !active {
        if session::from_script(headers) {
            return script_refused();
        }
        let chosen = hub
            .config
            .profiles
            .default_profile()
            .map(|p| p.slug.clone());
        return options_form(hub, headers, login, user, server, action, chosen, None);
    }
    start(hub, login, user, server, serde_json::Value::Null).await
}

/// The options form (JupyterHub's spawn page), with the profile `chosen`
/// checked and, after a refused answer, why (status 400).
// The page's parts, as the handlers have them.
#[allow(clippy::too_many_arguments)]
fn options_form(
    hub: &Ctx,
    headers: &HeaderMap,
    login: &Login,
    user: &str,
    server: &str,
    action: &str,
    chosen: Option<String>,
    error: Option<String>,
) -> Response {
    let key = session::cookie_key(hub).unwrap_or_default();
    let (xsrf, set) = session::xsrf_token(&key, headers, secure(hub), &login.session);
    let profiles: Vec<serde_json::Value> = hub
        .config
        .profiles
        .list()
        .iter()
        .map(|p| {
            serde_json::json!({
                "slug": p.slug, "display_name": p.display_name, "description": p.description,
            })
        })
        .collect();
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let mut r = page(
        status,
        "spawn.html",
        context! {
            user => login.user, target => user, server => server, action => action, xsrf => xsrf,
            profiles => profiles, chosen => chosen, error => error,
        },
    );
    if let Some(c) = set {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    r
}

/// `POST /hub/spawn[/{user}]`: the options form's answer, checked on the
/// server (CSRF token, who may start, a profile this hub offers).
async fn spawn_posted(
    hub: &Ctx,
    headers: &HeaderMap,
    login: &Login,
    user: &str,
    server: &str,
    action: &str,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "The options form could not be read.",
            "Go back to the spawn page and try again.",
            Some(&login.user),
        );
    };
    let key = session::cookie_key(hub).unwrap_or_default();
    if !session::xsrf_ok(
        &key,
        headers,
        form.get("_xsrf").map(String::as_str),
        &login.session,
    ) {
        tracing::info!(user = %login.user, "refused a spawn form without its CSRF token");
        return error_page(
            StatusCode::FORBIDDEN,
            "The form did not come from this hub ('_xsrf' missing or wrong).",
            "Go back to the spawn page and try again.",
            Some(&login.user),
        );
    }
    if !may_manage(hub, login, user, server) {
        return may_not_start(login, user);
    }
    // KubeSpawner's `options_from_form`: the chosen profile's slug.
    let options = match form.get("profile") {
        Some(slug) => serde_json::json!({ "profile": slug }),
        None => serde_json::json!({}),
    };
    if let Err(e) = hub.config.profiles.choose(&options) {
        tracing::info!(user = %login.user, error = %e, "refused a spawn form");
        let chosen = hub
            .config
            .profiles
            .default_profile()
            .map(|p| p.slug.clone());
        return options_form(
            hub,
            headers,
            login,
            user,
            server,
            action,
            chosen,
            Some(e.to_string()),
        );
    }
    start(hub, login, user, server, options).await
}

/// Ask for the start (a new named server within
/// `--named-server-limit-per-user`) and send the browser to the pending
/// page.
async fn start(
    hub: &Ctx,
    login: &Login,
    user: &str,
    server: &str,
    options: serde_json::Value,
) -> Response {
    let pending = pending_url(user, server);
    let limit = hub.config.limits.named_server_limit_per_user;
    // require_login passed the read barrier.
    if let Some(message) = hub.read(|s| servers::named_limit_refusal(s, user, server, limit)) {
        return error_page(
            StatusCode::BAD_REQUEST,
            &message,
            "Delete one of your named servers from the home page first.",
            Some(&login.user),
        );
    }
    let limits = hub.config.limits.spawn_limits();
    match servers::ensure_spawning(hub, user, server, options, limits).await {
        Ok(()) => redirect(&pending),
        Err(e) => op_error_page(e, Some(&login.user), &pending),
    }
}

pub(crate) async fn stop_own(
    State(hub): State<Arc<Ctx>>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let login = match require_login(&hub, &headers, "/hub/home").await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let key = session::cookie_key(&hub).unwrap_or_default();
    let sent = form
        .as_ref()
        .ok()
        .and_then(|Form(f)| f.get("_xsrf").cloned());
    if !session::xsrf_ok(&key, &headers, sent.as_deref(), &login.session) {
        tracing::info!(user = %login.user, "refused a stop without its CSRF token");
        return error_page(
            StatusCode::FORBIDDEN,
            "The form did not come from this hub ('_xsrf' missing or wrong).",
            "Go back to the home page and try again.",
            Some(&login.user),
        );
    }
    match servers::ensure_stopping(&hub, &login.user, DEFAULT_SERVER).await {
        Ok(()) => redirect("/hub/home"),
        Err(e) => op_error_page(e, Some(&login.user), "/hub/home"),
    }
}

pub(crate) async fn spawn_pending(
    State(hub): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Query(q): Query<NextQuery>,
) -> Response {
    pending_page(&hub, &headers, &raw, DEFAULT_SERVER, q).await
}

/// `GET /hub/spawn-pending/{user}/{server}`: a named server's.
pub(crate) async fn spawn_pending_named(
    State(hub): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path((raw, server)): Path<(String, String)>,
    Query(q): Query<NextQuery>,
) -> Response {
    pending_page(&hub, &headers, &raw, &server, q).await
}

async fn pending_page(
    hub: &Ctx,
    headers: &HeaderMap,
    raw: &str,
    server: &str,
    q: NextQuery,
) -> Response {
    let user = normalize_username(raw);
    let here = pending_url(&user, server);
    let login = match require_login(hub, headers, &here).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    if !may_manage(hub, &login, &user, server) {
        return error_page(
            StatusCode::NOT_FOUND,
            &format!("No server of {user} that you may see."),
            "",
            Some(&login.user),
        );
    }
    // require_login passed the read barrier.
    let url = quorumhub_state::Route::prefix_for(&user, server);
    let next = safe_next(q.next.as_deref()).unwrap_or_else(|| url.clone());
    let key = session::cookie_key(hub).unwrap_or_default();
    let (xsrf, set) = session::xsrf_token(&key, headers, secure(hub), &login.session);
    let progress = if server.is_empty() {
        format!("/hub/api/users/{user}/server/progress")
    } else {
        format!(
            "/hub/api/users/{user}/servers/{}/progress",
            quorumhub_state::ids::url_escape_path(server)
        )
    };
    let mut r = match hub.read(|s| s.server(&user, server).map(|sv| sv.phase)) {
        Some(Phase::Running) => redirect(&next),
        Some(_) => page(
            StatusCode::OK,
            "spawn_pending.html",
            context! {
                user => login.user,
                url => here,
                next => next,
                progress_url => format!("{progress}?_xsrf={xsrf}"),
            },
        ),
        None => {
            // As JupyterHub's pending page shows a failed spawn's error: the
            // reason this server last stopped (Slurm's refusal, a server
            // that never answered, ...).
            let why = hub.read(|s| {
                s.user(&user)
                    .and_then(|u| u.last_stop.as_ref())
                    .filter(|r| r.server_name == server)
                    .map(|r| r.reason.clone())
            });
            let hint = match why {
                Some(reason) => format!("It stopped: {reason}. Start it from the home page."),
                None => "Start it from the home page.".to_string(),
            };
            error_page(
                StatusCode::OK,
                &format!(
                    "{user}'s server{} is not running.",
                    if server.is_empty() {
                        String::new()
                    } else {
                        format!(" {server}")
                    }
                ),
                &hint,
                Some(&login.user),
            )
        }
    };
    if let Some(c) = set {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    r
}

/// An operation's error as a page, with a link back.
fn op_error_page(e: OpError, user: Option<&str>, back: &str) -> Response {
    let api = ApiError::from(e);
    let spawn_refused = api.spawn_refused();
    let (status, message) = api.parts();
    let hint = format!("Go to {back}.");
    let mut r = error_page(status, &message, &hint, user);
    if status == StatusCode::BAD_REQUEST && message.contains("already running") {
        r = redirect(back);
    }
    let mut r = r.into_response();
    if let Some(marker) = spawn_refused {
        r.extensions_mut().insert(marker);
    }
    r
}
