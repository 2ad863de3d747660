//! Admin pages: users and their servers (`/hub/admin`), the cluster
//! (`/hub/cluster`, something JupyterHub cannot show), and every user's
//! token page (`/hub/token`). Buttons call the REST API from a few lines
//! of JavaScript with the CSRF token in `X-XSRFToken`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use minijinja::context;
use quorumhub_proto::v1::{ClusterStatusRequest, NodeStatusRequest};
use serde_json::json;

use super::pages::require_login;
use super::{error_page, page, secure};
use crate::auth::session::{self, Login};
use crate::hub::Hub;
use crate::scopes::{self, Resource};
use crate::time::iso;

fn is_admin(hub: &Hub, login: &Login) -> bool {
    let admin = hub.read(|s| s.user(&login.user).is_some_and(|u| u.admin));
    scopes::of_user(&login.user, admin).allows("admin-ui", Resource::Any)
}

fn with_xsrf(
    hub: &Hub,
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

pub(crate) async fn admin(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> Response {
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

pub(crate) async fn token(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> Response {
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

pub(crate) async fn cluster(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> Response {
    let login = match require_login(&hub, &headers, "/hub/cluster").await {
        Ok(l) => l,
        Err(r) => return r,
    };
    if !is_admin(&hub, &login) {
        return not_admin(&login);
    }
    let view = cluster_view(&hub).await;
    page(
        StatusCode::OK,
        "cluster.html",
        context! { user => login.user, admin => true, cluster => view },
    )
}

/// Each member as it reports itself, and the leader's view of its lag.
async fn cluster_view(hub: &Hub) -> serde_json::Value {
    let m = hub.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let members: Vec<(u64, String, String)> = membership
        .nodes()
        .map(|(id, n)| (*id, n.grpc_addr.clone(), n.http_addr.clone()))
        .collect();
    let leader_addr = m
        .current_leader
        .and_then(|l| members.iter().find(|(id, _, _)| *id == l))
        .map(|(_, g, _)| g.clone());
    let limit = Duration::from_millis(800);
    let progress = match leader_addr.map(|a| hub.admin(&a)) {
        Some(Ok(mut c)) => tokio::time::timeout(limit, c.cluster_status(ClusterStatusRequest {}))
            .await
            .ok()
            .and_then(|r| r.ok())
            .map(|r| r.into_inner()),
        _ => None,
    };
    let mut rows = Vec::new();
    for (id, grpc, http) in &members {
        let status = match hub.admin(grpc) {
            Ok(mut c) => tokio::time::timeout(limit, c.node_status(NodeStatusRequest {}))
                .await
                .ok()
                .and_then(|r| r.ok())
                .map(|r| r.into_inner()),
            Err(_) => None,
        };
        let p = progress
            .as_ref()
            .and_then(|p| p.progress.iter().find(|x| x.id == *id).cloned());
        rows.push(json!({
            "id": id,
            "grpc": grpc,
            "http": http,
            "voter": voters.contains(id),
            "reachable": status.is_some(),
            "role": status.as_ref().map(|s| s.role.clone()).unwrap_or_else(|| "down".into()),
            "term": status.as_ref().map(|s| s.term),
            "applied": status.as_ref().map(|s| s.applied_index),
            "format": status.as_ref().map(|s| s.log_format_version),
            "version": status.as_ref().map(|s| s.version.clone()),
            "matched": p.as_ref().filter(|p| p.has_matched).map(|p| p.matched_index),
            "lag": p.as_ref().map(|p| p.lag),
        }));
    }
    json!({
        "leader": m.current_leader,
        "term": m.current_term,
        "last_log": progress.as_ref().map(|p| p.last_log_index),
        "committed": progress.as_ref().map(|p| p.committed_index),
        "cluster_version": hub.read(|s| s.cluster_version),
        "served_by": hub.id,
        "members": rows,
    })
}
