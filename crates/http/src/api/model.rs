//! JupyterHub's JSON shapes for users and servers.

use std::collections::BTreeSet;

use quorumhub_state::ids::url_escape_path;
use quorumhub_state::{Group, HubState, Route, Server, StoppedServer, User};
use serde_json::{json, Value};

use quorumhub_core::scopes::{Resource, Scopes};
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

/// The roles a user model names: the built-in `admin` and `user`, then
/// the configured roles the user holds.
fn role_names(s: &HubState, user: &User) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    if user.admin {
        names.push("admin".into());
    }
    for r in s.roles_of(user) {
        if !names.contains(&r.name) {
            names.push(r.name.clone());
        }
    }
    if !names.iter().any(|n| n == "user") {
        names.push("user".into());
    }
    names.sort();
    names
}

/// The fields of a user model each scope shows (JupyterHub's
/// `user_model` access map).
const USER_FIELDS: &[(&str, &[&str])] = &[
    (
        "read:users",
        &[
            "kind",
            "name",
            "user_info",
            "admin",
            "roles",
            "groups",
            "server",
            "pending",
            "created",
            "last_activity",
        ],
    ),
    ("read:users:name", &["kind", "name", "user_info", "admin"]),
    ("read:users:groups", &["kind", "name", "groups"]),
    ("read:users:activity", &["kind", "name", "last_activity"]),
    ("read:servers", &["kind", "name", "servers"]),
    ("read:roles:users", &["kind", "name", "roles", "admin"]),
    ("admin:auth_state", &["kind", "name", "auth_state"]),
];

/// `user`'s model as `view` (the caller's scopes) may see it, trimmed as
/// JupyterHub trims it; `None` when it may see nothing of it. Servers are
/// listed one by one as `read:servers` allows them.
pub(crate) fn user_json(
    s: &HubState,
    user: &User,
    servers: Servers,
    view: &Scopes,
) -> Option<Value> {
    let resource = Resource::User(&user.name);
    let mut allowed: BTreeSet<&str> = BTreeSet::new();
    for (scope, fields) in USER_FIELDS {
        if view.allows(scope, resource) {
            allowed.extend(fields.iter().copied());
        }
    }
    let default = user.servers.get("");
    let full = json!({
        "kind": "user",
        "name": user.name,
        "admin": user.admin,
        "roles": role_names(s, user),
        "groups": user.groups,
        "server": default.filter(|s| s.ready()).map(|_| Route::prefix_for(&user.name, "")),
        "pending": default.and_then(|s| s.pending()),
        "created": iso(user.created),
        "last_activity": user.last_activity.map(iso),
        "auth_state": null,
    });
    let mut v = serde_json::Map::new();
    if let Value::Object(full) = full {
        for (k, val) in full {
            if allowed.contains(k.as_str()) {
                v.insert(k, val);
            }
        }
    }
    if servers != Servers::None {
        let visible = |name: &str| {
            view.allows(
                "read:servers",
                Resource::Server {
                    user: &user.name,
                    name,
                },
            )
        };
        let mut map: serde_json::Map<String, Value> = user
            .servers
            .values()
            .filter(|s| visible(&s.name))
            .map(|s| (s.name.clone(), server_json(user, s)))
            .collect();
        if servers == Servers::All {
            for st in user.stopped.values().filter(|st| visible(&st.name)) {
                map.insert(st.name.clone(), stopped_json(user, st));
            }
        }
        if allowed.contains("servers") || !map.is_empty() {
            v.insert("servers".into(), Value::Object(map));
        }
    }
    if v.is_empty() {
        return None;
    }
    Some(Value::Object(v))
}

/// The fields of a group model each scope shows.
const GROUP_FIELDS: &[(&str, &[&str])] = &[
    ("read:groups", &["kind", "name", "properties", "users"]),
    ("read:groups:name", &["kind", "name"]),
    ("read:roles:groups", &["kind", "name", "roles"]),
];

/// A group's model as `view` may see it; `None` when nothing. A group
/// scope's filter is `!group=<name>`.
pub(crate) fn group_json(s: &HubState, g: &Group, view: &Scopes) -> Option<Value> {
    let mut allowed: BTreeSet<&str> = BTreeSet::new();
    for (scope, fields) in GROUP_FIELDS {
        if view.allows(scope, Resource::Group(&g.name)) {
            allowed.extend(fields.iter().copied());
        }
    }
    let roles: Vec<&str> = s
        .roles
        .values()
        .filter(|r| r.groups.binary_search(&g.name).is_ok())
        .map(|r| r.name.as_str())
        .collect();
    let full = json!({
        "kind": "group",
        "name": g.name,
        "roles": roles,
        "users": g.users,
        "properties": if g.properties.is_null() { json!({}) } else { g.properties.clone() },
    });
    let Value::Object(full) = full else {
        return None;
    };
    let v: serde_json::Map<String, Value> = full
        .into_iter()
        .filter(|(k, _)| allowed.contains(k.as_str()))
        .collect();
    (!v.is_empty()).then_some(Value::Object(v))
}
