//! JupyterHub's JSON shapes for users and servers.

use quorumhub_state::{Route, Server, User};
use serde_json::{json, Value};

use quorumhub_core::time::iso;

pub(crate) fn server_json(user: &User, s: &Server) -> Value {
    let progress = if s.name.is_empty() {
        format!("/hub/api/users/{}/server/progress", user.name)
    } else {
        format!("/hub/api/users/{}/servers/{}/progress", user.name, s.name)
    };
    json!({
        "name": s.name,
        "last_activity": s.last_activity.map(iso),
        "started": s.started.map(iso),
        "pending": s.pending(),
        "ready": s.ready(),
        "stopped": false,
        "url": Route::prefix_for(&user.name, &s.name),
        "user_options": if s.user_options.is_null() { json!({}) } else { s.user_options.clone() },
        "progress_url": progress,
        "full_url": null,
        "full_progress_url": null,
    })
}

pub(crate) fn user_json(user: &User, with_servers: bool) -> Value {
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
    if with_servers {
        let servers: serde_json::Map<String, Value> = user
            .servers
            .values()
            .map(|s| (s.name.clone(), server_json(user, s)))
            .collect();
        v["servers"] = Value::Object(servers);
    }
    v
}
