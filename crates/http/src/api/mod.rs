//! The JupyterHub-compatible REST API under `/hub/api`.
//!
//! Same paths, JSON shapes and status codes as JupyterHub for what it
//! covers. Every handler: authenticate, authorise, then either pass the
//! read barrier and read, or run a use case (`quorumhub_core::ops`) and
//! map its `OpError`.

mod activity;
mod groups;
mod model;
mod paging;
mod progress;
mod servers;
mod services;
mod tokens;
mod users;

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::auth::{Caller, HttpState};
use crate::error::ApiError;
use crate::Ctx;
use quorumhub_core::scopes::Resource;

/// The REST API's routes, to be nested under `/hub/api` (see
/// [`crate::app::router`]).
pub(crate) fn routes() -> Router<HttpState> {
    Router::new()
        .route("/", get(version))
        .route("/info", get(info))
        .route("/user", get(users::whoami))
        .route("/users", get(users::list).post(users::create_many))
        .route(
            "/users/{name}",
            get(users::get_one)
                .post(users::create_one)
                .patch(users::patch)
                .delete(users::delete),
        )
        .route(
            "/users/{name}/server",
            get(servers::get_default)
                .put(servers::create_default)
                .patch(servers::patch_default)
                .post(servers::start_default)
                .delete(servers::stop_default),
        )
        .route(
            "/users/{name}/servers/{server}",
            get(servers::get_named)
                .put(servers::create_named)
                .patch(servers::patch_named)
                .post(servers::start_named)
                .delete(servers::stop_named),
        )
        .route("/users/{name}/activity", post(activity::record))
        .route(
            "/users/{name}/tokens",
            get(tokens::list).post(tokens::create),
        )
        .route(
            "/users/{name}/tokens/{id}",
            get(tokens::get_one).delete(tokens::revoke),
        )
        .route("/services", get(services::list))
        .route("/services/{name}", get(services::get_one))
        .route("/groups", get(groups::list).post(groups::create_many))
        .route(
            "/groups/{name}",
            get(groups::get_one)
                .post(groups::create_one)
                .delete(groups::delete),
        )
        .route(
            "/groups/{name}/users",
            post(groups::add_members).delete(groups::remove_members),
        )
        .route(
            "/groups/{name}/properties",
            axum::routing::put(groups::set_properties),
        )
        .route("/users/{name}/server/progress", get(progress::default))
        .route(
            "/users/{name}/servers/{server}/progress",
            get(progress::named),
        )
}

/// `OPTIONS` on any API path answers 200 with no body, as JupyterHub's
/// `APIHandler.options` does (CORS preflights), without authentication.
pub(crate) async fn options(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if req.method() == axum::http::Method::OPTIONS {
        return StatusCode::OK.into_response();
    }
    next.run(req).await
}

pub(crate) async fn version(State(hub): State<Arc<Ctx>>) -> Json<serde_json::Value> {
    Json(json!({ "version": hub.config.jupyterhub_version }))
}

/// `GET /hub/api/info` (`read:hub`): JupyterHub's shape. There is no
/// Python here: `python` and `sys_executable` name this build instead, and
/// the spawner and authenticator are quorumhub's own.
pub(crate) async fn info(
    State(hub): State<Arc<Ctx>>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require("read:hub", Resource::Any)?;
    let build = env!("CARGO_PKG_VERSION");
    let authenticator = if hub.config.oidc.issuer.is_some() {
        "quorumhub.auth.OpenIDConnect"
    } else {
        "quorumhub.auth.Password"
    };
    Ok(Json(json!({
        "version": hub.config.jupyterhub_version,
        "python": format!("quorumhub {build} (Rust; no Python)"),
        "sys_executable": std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        "spawner": {
            "class": format!("quorumhub.spawner.{}", hub.config.spawner),
            "version": build,
        },
        "authenticator": {"class": authenticator, "version": build},
    })))
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "Not Found")
}
