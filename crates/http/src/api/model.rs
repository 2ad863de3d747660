//! JupyterHub's JSON shapes for users and servers.

use quorumhub_state::ids::url_escape_path;
use quorumhub_state::{Route, Server, StoppedServer, User};
use serde_json::{json, Value};

use quorumhub_core::time::iso;

/// `/hub/api/users/{user}/server/progress` or `.../servers/{name}/progress`,
/// each name escaped as JupyterHub's `User.progress_url` escapes it.
pub(crate) fn progress_url(user: &str, server: &str) -> String {
    let user = url_escape_path(user);
    if server.is_empty() {
        format!("/hub/api/users/{user}/server/progress")
    } else {
        format!(
            "/hub/api/users/{user}/servers/{}/progress",
            url_escape_path(server)
        )
    }
}

/// The fields every server model has, running or not.
fn base(
    user: &User,
    name: &str,
    display_name: Option<&str>,
    user_options: &Value,
    last_activity: Option<u64>,
) -> Value {
    json!({
        "name": name,
        // JupyterHub names a named server after itself until given a
        // display name; the default server's is empty.
        "display_name": display_name.unwrap_or(name),
        "full_name": format!("{}/{name}", user.name),
        "last_activity": last_activity.map(iso),
        "started": null,
        "pending": null,
        "ready": false,
        "stopped": true,
        "url": Route::prefix_for(&user.name, name),
        "user_options": if user_options.is_null() { json!({}) } else { user_options.clone() },
        "progress_url": progress_url(&user.name, name),
        "full_url": null,
        "full_progress_url": null,
    })
}

pub(crate) fn server_json(user: &User, s: &Server) -> Value {
    let mut v = base(
        user,
        &s.name,
        s.display_name.as_deref(),
        &s.user_options,
        s.last_activity,
    );
    v["started"] = json!(s.started.map(iso));
    v["pending"] = json!(s.pending());
    v["ready"] = json!(s.ready());
    v["stopped"] = json!(false);
    v
}

/// A server that exists but does not run (JupyterHub's stopped spawner).
pub(crate) fn stopped_json(user: &User, s: &StoppedServer) -> Value {
    base(
        user,
        &s.name,
        s.display_name.as_deref(),
        &s.user_options,
        s.last_activity,
    )
}

/// Which servers a user model lists: none, the active ones (JupyterHub's
/// default), or also the stopped ones (`include_stopped_servers`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Servers {
    None,
    Active,
    All,
}

pub(crate) fn user_json(user: &User, servers: Servers) -> Value {
    let default = user.servers.get("");
    let mut v = json!({
        "kind": "user",
        "name": user.name,
        "admin": user.admin,
        "roles": if user.admin { vec!["admin", "user"] } else { vec!["user"] },
        "groups": user.groups,
        "server": default.filter(|s| s.ready()).map(|_| Route::prefix_for(&user.name, "")),
        "pending": default.and_then(|s| s.pending()),
        "created": iso(user.created),
        "last_activity": user.last_activity.map(iso),
    });
    if servers != Servers::None {
        let mut map: serde_json::Map<String, Value> = user
            .servers
            .values()
            .map(|s| (s.name.clone(), server_json(user, s)))
            .collect();
        if servers == Servers::All {
            for s in user.stopped.values() {
                map.insert(s.name.clone(), stopped_json(user, s));
            }
        }
        v["servers"] = Value::Object(map);
    }
    v
}
