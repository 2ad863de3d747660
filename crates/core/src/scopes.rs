//! JupyterHub 2+ roles and scopes.
//!
//! A scope is `name` or `name!filter`, the filter one of `user=U`,
//! `server=U/S`, `group=G` or a placeholder (`!user`, `!server`) filled in
//! from the token's owner. [`expand`] turns roles (`self`, `admin`) and
//! parent scopes into the full set of leaf scopes, keeping each filter; a
//! caller's effective scopes are its token's, intersected with its
//! owner's; an owner's are its roles' ([`of_user_in`]: the built-in `user`
//! and `admin` roles and the configured ones, replicated in the state).
//!
//! Matching follows JupyterHub: an unfiltered scope covers everything,
//! `!user=U` also covers U's servers, `!server=U/S` covers that server only,
//! `!group=G` covers G's members and their servers. Group filters are
//! resolved against one state ([`Scopes::with_groups`]), the one a request
//! reads.

use std::collections::{BTreeMap, BTreeSet};

use quorumhub_state::HubState;

/// Every scope JupyterHub 6 defines, with the scopes it implies
/// (`jupyterhub/scopes.py`'s `scope_definitions`). Scopes of endpoints
/// quorumhub does not have (services' admin, shares, proxy, shutdown) are
/// recognised, so roles and tokens written for JupyterHub are accepted.
const TREE: &[(&str, &[&str])] = &[
    (
        "admin:users",
        &[
            "admin:auth_state",
            "users",
            "read:roles:users",
            "delete:users",
        ],
    ),
    ("users", &["read:users", "list:users", "users:activity"]),
    ("list:users", &["read:users:name"]),
    (
        "read:users",
        &[
            "read:users:name",
            "read:users:groups",
            "read:users:activity",
        ],
    ),
    ("users:activity", &["read:users:activity"]),
    ("admin:servers", &["admin:server_state", "servers"]),
    (
        "servers",
        &["read:servers", "start:servers", "delete:servers"],
    ),
    ("read:servers", &["read:users:name"]),
    ("tokens", &["read:tokens"]),
    (
        "admin:groups",
        &["groups", "read:roles:groups", "delete:groups"],
    ),
    ("groups", &["read:groups", "list:groups"]),
    ("list:groups", &["read:groups:name"]),
    ("read:groups", &["read:groups:name"]),
    ("read:hub", &[]),
    ("read:metrics", &[]),
    ("access:servers", &[]),
    ("access:services", &[]),
    (
        "read:roles",
        &[
            "read:roles:users",
            "read:roles:services",
            "read:roles:groups",
        ],
    ),
    ("read:roles:services", &[]),
    (
        "admin:services",
        &["list:services", "read:services", "read:roles:services"],
    ),
    ("list:services", &["read:services:name"]),
    ("read:services", &["read:services:name"]),
    ("read:services:name", &[]),
    ("users:shares", &["read:users:shares"]),
    ("read:users:shares", &[]),
    ("groups:shares", &["read:groups:shares"]),
    ("read:groups:shares", &[]),
    ("read:shares", &[]),
    (
        "shares",
        &[
            "access:servers",
            "read:shares",
            "users:shares",
            "groups:shares",
        ],
    ),
    ("proxy", &[]),
    ("shutdown", &[]),
    ("admin-ui", &[]),
    ("read:roles:users", &[]),
    ("read:roles:groups", &[]),
    ("admin:auth_state", &[]),
    ("admin:server_state", &[]),
    ("read:users:name", &[]),
    ("read:users:groups", &[]),
    ("read:users:activity", &[]),
    ("start:servers", &[]),
    ("delete:servers", &[]),
    ("delete:users", &[]),
    ("delete:groups", &[]),
    ("read:groups:name", &[]),
    ("read:tokens", &[]),
];

/// The `admin` role (JupyterHub 6's, but for the scopes of endpoints
/// quorumhub does not have: `proxy`, `shutdown`, `shares`).
const ADMIN: &[&str] = &[
    "admin-ui",
    "admin:users",
    "admin:servers",
    "admin:services",
    "tokens",
    "admin:groups",
    "list:services",
    "read:services",
    "read:hub",
    "access:services",
    "access:servers",
    "read:roles",
    "read:metrics",
];

/// What `self` means for a user (JupyterHub's `user` role).
const SELF: &[&str] = &[
    "read:users",
    "users:activity",
    "servers",
    "tokens",
    "access:servers",
];

/// The `server` role: the scopes of the token a spawned server holds.
const SERVER: &[&str] = &["users:activity!user", "access:servers!server"];

/// What an OAuth client may always obtain: who the user is.
pub const IDENTIFY: &[&str] = &["read:users:name!user", "read:users:groups!user"];

/// A resource a scope may be limited to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource<'a> {
    /// No particular resource (listing endpoints, the hub itself).
    Any,
    User(&'a str),
    Server {
        user: &'a str,
        name: &'a str,
    },
    /// A group (for the group scopes, whose filter is `!group=`).
    Group(&'a str),
    /// A service (for the service scopes, whose filter is `!service=`).
    Service(&'a str),
}

/// Why a scope is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Unknown scope {0:?}")]
pub struct UnknownScope(pub String);

/// A set of expanded scopes, with the members of the groups its filters
/// name (once resolved).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scopes(BTreeSet<String>, BTreeMap<String, BTreeSet<String>>);

impl Scopes {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn to_vec(&self) -> Vec<String> {
        self.0.iter().cloned().collect()
    }

    /// Does this set allow `name` on `resource`?
    pub fn allows(&self, name: &str, resource: Resource<'_>) -> bool {
        self.0.iter().any(|s| covers(s, name, resource, &self.1))
    }

    /// Does it hold `name` at all, for some resource?
    pub fn holds(&self, name: &str) -> bool {
        self.0.iter().any(|s| base(s) == name)
    }

    /// Does it hold `name` with a filter other than `user=`/`group=`
    /// (JupyterHub refuses to list users or groups under a `!server=`
    /// filter)?
    pub fn holds_only_as_server(&self, name: &str) -> bool {
        self.holds(name)
            && self
                .0
                .iter()
                .filter(|s| base(s) == name)
                .all(|s| filter(s).is_some_and(|f| f.starts_with("server=")))
    }

    /// The scopes of `self` that `owner` also holds (a token never does
    /// more than its owner may).
    pub fn within(&self, owner: &Scopes) -> Scopes {
        Scopes(
            self.0
                .iter()
                .filter(|s| owner.0.iter().any(|o| implies(o, s, &owner.1)))
                .cloned()
                .collect(),
            self.1.clone(),
        )
    }

    /// With the members of every group a `!group=` filter names, as
    /// `state` has them.
    pub fn with_groups(mut self, state: &HubState) -> Scopes {
        for s in &self.0 {
            if let Some(g) = filter(s).and_then(|f| f.strip_prefix("group=")) {
                if !self.1.contains_key(g) {
                    let members = state
                        .groups
                        .get(g)
                        .map(|g| g.users.iter().cloned().collect())
                        .unwrap_or_default();
                    self.1.insert(g.to_string(), members);
                }
            }
        }
        self
    }

    /// The union of two sets.
    pub fn union(mut self, other: Scopes) -> Scopes {
        self.0.extend(other.0);
        for (g, m) in other.1 {
            self.1.entry(g).or_default().extend(m);
        }
        self
    }
}

fn base(scope: &str) -> &str {
    scope.split_once('!').map_or(scope, |(b, _)| b)
}

fn filter(scope: &str) -> Option<&str> {
    scope.split_once('!').map(|(_, f)| f)
}

type Members = BTreeMap<String, BTreeSet<String>>;

/// Is `user` in the group a `group=G` filter names?
fn in_group(f: &str, user: &str, members: &Members) -> bool {
    f.strip_prefix("group=")
        .and_then(|g| members.get(g))
        .is_some_and(|m| m.contains(user))
}

/// Does held scope `have` cover `name` on `resource`?
fn covers(have: &str, name: &str, resource: Resource<'_>, members: &Members) -> bool {
    if base(have) != name {
        return false;
    }
    match (filter(have), resource) {
        (None, _) => true,
        (Some(_), Resource::Any) => false,
        (Some(f), Resource::User(u)) => {
            f.strip_prefix("user=") == Some(u) || in_group(f, u, members)
        }
        (Some(f), Resource::Server { user, name }) => {
            f.strip_prefix("user=") == Some(user)
                || f.strip_prefix("server=") == Some(&format!("{user}/{name}"))
                || in_group(f, user, members)
        }
        (Some(f), Resource::Group(g)) => f.strip_prefix("group=") == Some(g),
        (Some(f), Resource::Service(n)) => f.strip_prefix("service=") == Some(n),
    }
}

/// Does held scope `have` imply scope `want` (both expanded)? `members`:
/// of the groups `have`'s set names.
fn implies(have: &str, want: &str, members: &Members) -> bool {
    if base(have) != base(want) {
        return false;
    }
    match (filter(have), filter(want)) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(h), Some(w)) if h == w => true,
        (Some(h), Some(w)) => {
            let user_of_want = w.strip_prefix("user=").or_else(|| {
                w.strip_prefix("server=")
                    .and_then(|s| s.split_once('/').map(|(u, _)| u))
            });
            match (
                h.strip_prefix("user="),
                w.strip_prefix("server="),
                user_of_want,
            ) {
                (Some(u), Some(server), _) => server.split_once('/').map(|(su, _)| su) == Some(u),
                (None, _, Some(wu)) => in_group(h, wu, members),
                _ => false,
            }
        }
    }
}

/// Expand roles, parents and placeholders into leaf-and-parent scopes.
/// `user` fills `!user`; `server` (user, name) fills `!server`.
pub fn expand<'a>(
    scopes: impl IntoIterator<Item = &'a str>,
    user: &str,
    server: Option<(&str, &str)>,
) -> Result<Scopes, UnknownScope> {
    let mut out = BTreeSet::new();
    for scope in scopes {
        match scope {
            "self" => {
                for s in SELF {
                    add(&mut out, s, Some(format!("user={user}")));
                }
            }
            "admin" => {
                for s in ADMIN {
                    add(&mut out, s, None);
                }
            }
            _ => {
                let (name, f) = match scope.split_once('!') {
                    Some((n, f)) => (n, Some(f)),
                    None => (scope, None),
                };
                if !TREE.iter().any(|(n, _)| *n == name) {
                    return Err(UnknownScope(scope.to_string()));
                }
                let f = match f {
                    None => None,
                    Some("user") => Some(format!("user={user}")),
                    Some("server") => match server {
                        Some((u, s)) => Some(format!("server={u}/{s}")),
                        None => return Err(UnknownScope(scope.to_string())),
                    },
                    Some(f) if valid_filter(f) => Some(f.to_string()),
                    Some(_) => return Err(UnknownScope(scope.to_string())),
                };
                add(&mut out, name, f);
            }
        }
    }
    Ok(Scopes(out, BTreeMap::new()))
}

fn valid_filter(f: &str) -> bool {
    match f.split_once('=') {
        Some(("user", u)) => !u.is_empty() && !u.contains('/'),
        Some(("server", s)) => s.split_once('/').is_some_and(|(u, _)| !u.is_empty()),
        Some(("group", g)) => !g.is_empty(),
        Some(("service", n)) => !n.is_empty(),
        _ => false,
    }
}

fn add(out: &mut BTreeSet<String>, name: &str, f: Option<String>) {
    let scoped = match &f {
        Some(f) => format!("{name}!{f}"),
        None => name.to_string(),
    };
    if !out.insert(scoped) {
        return;
    }
    let children = TREE
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(&[][..], |(_, c)| c);
    for child in children {
        // JupyterHub drops `!server=` filters' user-reading subscopes.
        if f.as_deref().is_some_and(|f| f.starts_with("server=")) && child.starts_with("read:users")
        {
            continue;
        }
        add(out, child, f.clone());
    }
}

/// What a user may do by the built-in roles alone: `admin` and `user`
/// (`self`), or `user`.
pub fn of_user(name: &str, admin: bool) -> Scopes {
    let roles: &[&str] = if admin { &["admin", "self"] } else { &["self"] };
    expand(roles.iter().copied(), name, None).unwrap_or_default()
}

/// The built-in roles' names: `admin`'s scopes cannot be configured, a
/// configured `user` role replaces the default `["self"]`, `server` and
/// `token` are JupyterHub's and not configurable here.
pub const BUILT_IN_ROLES: [&str; 4] = ["admin", "user", "server", "token"];

/// What `name` may do in `state`: the `user` role (its configured scopes,
/// else `self`), `admin` when the user is an admin or the configured
/// `admin` role names it (or one of its groups), and every configured role
/// it holds, with group filters resolved. A user `state` does not know
/// gets the built-in roles only.
pub fn of_user_in(state: &HubState, name: &str, admin: bool) -> Scopes {
    let Some(user) = state.user(name) else {
        return of_user(name, admin).with_groups(state);
    };
    let mut out = BTreeSet::new();
    let mut admin = admin || user.admin;
    let mut user_role = false;
    for role in state.roles_of(user) {
        match role.name.as_str() {
            "admin" => admin = true,
            _ => {
                user_role |= role.name == "user";
                for scope in &role.scopes {
                    // A stored role's scopes were checked at start-up; one
                    // a newer release knows and this one does not is left
                    // out (a replica never grants what it cannot check).
                    if let Ok(s) = expand([scope.as_str()], name, None) {
                        out.extend(s.0);
                    }
                }
            }
        }
    }
    if let Some(r) = state.roles.get("user") {
        user_role = true;
        for scope in &r.scopes {
            if let Ok(s) = expand([scope.as_str()], name, None) {
                out.extend(s.0);
            }
        }
    }
    let mut builtin: Vec<&str> = Vec::new();
    if !user_role {
        builtin.push("self");
    }
    if admin {
        builtin.push("admin");
    }
    if let Ok(s) = expand(builtin, name, None) {
        out.extend(s.0);
    }
    Scopes(out, BTreeMap::new()).with_groups(state)
}

/// What the service `name` may do in `state`: the scopes of every
/// configured role that names it (JupyterHub gives services nothing by
/// default). A scope that needs a user (`self`, `!user`) means nothing for
/// a service and is left out.
pub fn of_service_in(state: &HubState, name: &str) -> Scopes {
    let mut out = BTreeSet::new();
    for role in state.roles.values() {
        if !role.services.iter().any(|s| s.as_str() == name) {
            continue;
        }
        let listed: Vec<&str> = if role.name == "admin" {
            vec!["admin"]
        } else {
            role.scopes.iter().map(String::as_str).collect()
        };
        for scope in listed {
            if scope == "self" || scope.ends_with("!user") {
                continue;
            }
            if let Ok(s) = expand([scope], "", None) {
                out.extend(s.0);
            }
        }
    }
    Scopes(out, BTreeMap::new()).with_groups(state)
}

/// The scopes the roles `names` grant (JupyterHub's `roles` in a token
/// request), unexpanded; the first name that is no configured or built-in
/// (`admin`, `user`) role is the error.
pub fn of_roles(state: &HubState, names: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for n in names {
        match (n.as_str(), state.roles.get(n)) {
            ("admin", _) => out.push("admin".to_string()),
            (_, Some(r)) => out.extend(r.scopes.iter().cloned()),
            ("user", None) => out.push("self".to_string()),
            _ => return Err(n.clone()),
        }
    }
    Ok(out)
}

/// A configured role's scopes, checked as [`expand`] would for any user:
/// the first unknown scope or bad filter is the error.
pub fn check_role_scopes(scopes: &[String]) -> Result<(), UnknownScope> {
    expand(scopes.iter().map(String::as_str), "user-placeholder", None).map(|_| ())
}

/// The scopes of the token a server of `user` holds.
pub fn of_server_token(user: &str, server: &str) -> Scopes {
    expand(SERVER.iter().copied(), user, Some((user, server))).unwrap_or_default()
}

/// The access scopes the single-user server `user/server` requires
/// (`JUPYTERHUB_OAUTH_ACCESS_SCOPES`), which its OAuth tokens carry.
pub fn server_access(user: &str, server: &str) -> Vec<String> {
    vec![format!("access:servers!server={user}/{server}")]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(s: &Scopes) -> String {
        s.to_vec().join("\n")
    }

    #[test]
    fn self_expands_with_the_user_filter() {
        expect_test::expect![[r#"
            access:servers!user=alice
            delete:servers!user=alice
            read:servers!user=alice
            read:tokens!user=alice
            read:users!user=alice
            read:users:activity!user=alice
            read:users:groups!user=alice
            read:users:name!user=alice
            servers!user=alice
            start:servers!user=alice
            tokens!user=alice
            users:activity!user=alice"#]]
        .assert_eq(&show(&of_user("alice", false)));
    }

    #[test]
    fn the_server_token() {
        expect_test::expect![[r#"
            access:servers!server=alice/
            read:users:activity!user=alice
            users:activity!user=alice"#]]
        .assert_eq(&show(&of_server_token("alice", "")));
    }

    #[test]
    fn matching_as_data() {
        let alice = of_user("alice", false);
        let admin = of_user("root", true);
        let server = of_server_token("alice", "");
        let cases: &[(&Scopes, &str, Resource, bool)] = &[
            (
                &alice,
                "access:servers",
                Resource::Server {
                    user: "alice",
                    name: "",
                },
                true,
            ),
            (
                &alice,
                "access:servers",
                Resource::Server {
                    user: "bob",
                    name: "",
                },
                false,
            ),
            (&alice, "admin:users", Resource::Any, false),
            (&alice, "read:users", Resource::User("alice"), true),
            (&alice, "read:users", Resource::Any, false),
            (
                &admin,
                "access:servers",
                Resource::Server {
                    user: "bob",
                    name: "x",
                },
                true,
            ),
            (&admin, "delete:users", Resource::User("bob"), true),
            (&admin, "list:users", Resource::Any, true),
            (&server, "users:activity", Resource::User("alice"), true),
            (
                &server,
                "access:servers",
                Resource::Server {
                    user: "alice",
                    name: "",
                },
                true,
            ),
            (
                &server,
                "access:servers",
                Resource::Server {
                    user: "alice",
                    name: "other",
                },
                false,
            ),
            (&server, "start:servers", Resource::User("alice"), false),
        ];
        for (have, name, resource, want) in cases {
            assert_eq!(
                have.allows(name, *resource),
                *want,
                "{name} on {resource:?}"
            );
        }
    }

    #[test]
    fn a_token_never_exceeds_its_owner() {
        let asked = expand(
            [
                "admin:users",
                "read:users!user=bob",
                "access:servers!server=alice/",
            ],
            "alice",
            None,
        )
        .expect("known");
        let got = asked.within(&of_user("alice", false));
        expect_test::expect!["access:servers!server=alice/"].assert_eq(&show(&got));
    }

    /// A state with users, a group `course` (alice, bob) and `tas` (ta2),
    /// and the configured roles `roles`.
    fn state_with(roles: Vec<quorumhub_state::Role>) -> HubState {
        use quorumhub_state::{Command, Request};
        let mut s = HubState::default();
        let mut cmds = vec![Command::SetClusterVersion { version: 7 }];
        for u in ["alice", "bob", "carol", "ta1", "ta2"] {
            cmds.push(Command::CreateUser {
                name: u.into(),
                admin: false,
            });
        }
        cmds.push(Command::CreateGroup {
            name: "course".into(),
            users: vec!["alice".into(), "bob".into()],
        });
        cmds.push(Command::CreateGroup {
            name: "tas".into(),
            users: vec!["ta2".into()],
        });
        cmds.push(Command::SetRoles { roles });
        for (i, command) in cmds.into_iter().enumerate() {
            let i = i as u64 + 1;
            s.apply(
                i,
                &Request {
                    client_id: "t".into(),
                    serial: i,
                    at: 1,
                    command,
                },
            );
        }
        s
    }

    fn role(name: &str, scopes: &[&str], users: &[&str], groups: &[&str]) -> quorumhub_state::Role {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        quorumhub_state::Role {
            name: name.into(),
            description: String::new(),
            scopes: v(scopes),
            users: v(users),
            groups: v(groups),
            services: vec![],
        }
    }

    #[test]
    fn group_filters_and_configured_roles_as_data() {
        let state = state_with(vec![
            role(
                "ta",
                &[
                    "list:users!group=course",
                    "read:users!group=course",
                    "access:servers!group=course",
                ],
                &["ta1"],
                &["tas"],
            ),
            role("admin", &[], &["carol"], &[]),
        ]);
        let ta1 = of_user_in(&state, "ta1", false);
        let ta2 = of_user_in(&state, "ta2", false);
        let alice = of_user_in(&state, "alice", false);
        let carol = of_user_in(&state, "carol", false);
        let srv = |user| Resource::Server { user, name: "" };
        let cases: &[(&str, &Scopes, &str, Resource, bool)] = &[
            (
                "ta1 reads a student",
                &ta1,
                "read:users",
                Resource::User("alice"),
                true,
            ),
            (
                "ta1 reads another student",
                &ta1,
                "read:users",
                Resource::User("bob"),
                true,
            ),
            (
                "ta1 does not read a non-student",
                &ta1,
                "read:users",
                Resource::User("carol"),
                false,
            ),
            (
                "ta1 reaches a student's server",
                &ta1,
                "access:servers",
                srv("bob"),
                true,
            ),
            (
                "ta1 keeps its own user role",
                &ta1,
                "servers",
                srv("ta1"),
                true,
            ),
            (
                "ta1 cannot stop a student's server",
                &ta1,
                "delete:servers",
                srv("alice"),
                false,
            ),
            (
                "the role through the group",
                &ta2,
                "read:users",
                Resource::User("alice"),
                true,
            ),
            (
                "a student holds no role",
                &alice,
                "read:users",
                Resource::User("bob"),
                false,
            ),
            (
                "the admin role makes an admin",
                &carol,
                "admin:users",
                Resource::Any,
                true,
            ),
            (
                "group scopes name the group",
                &of_user("x", true),
                "read:groups",
                Resource::Group("course"),
                true,
            ),
        ];
        for (what, have, name, resource, want) in cases {
            assert_eq!(have.allows(name, *resource), *want, "{what}");
        }
        // A token of ta1 asking for one student keeps it, one outside the
        // group loses it.
        let asked = expand(
            ["read:users!user=alice", "read:users!user=carol"],
            "ta1",
            None,
        )
        .expect("known")
        .with_groups(&state);
        expect_test::expect!["read:users!user=alice"].assert_eq(
            &asked
                .within(&ta1)
                .iter()
                .filter(|s| s.starts_with("read:users!"))
                .collect::<Vec<_>>()
                .join(" "),
        );
        // A configured `user` role replaces `self`.
        let narrow = state_with(vec![role("user", &["read:users:name!user"], &[], &[])]);
        expect_test::expect!["read:users:name!user=alice"]
            .assert_eq(&show(&of_user_in(&narrow, "alice", false)));
        assert_eq!(
            of_roles(&state, &["ta".into(), "user".into()]),
            Ok(vec![
                "access:servers!group=course".to_string(),
                "list:users!group=course".into(),
                "read:users!group=course".into(),
                "self".into()
            ])
        );
        assert_eq!(of_roles(&state, &["nope".into()]), Err("nope".to_string()));
    }

    /// A service's scopes are its roles' (nothing by default); a scope that
    /// needs a user is left out; `!service=` filters name one service.
    #[test]
    fn services_scopes_as_data() {
        let mut culler = role(
            "culler",
            &[
                "list:users",
                "delete:servers",
                "self",
                "read:users!user",
                "access:services!service=dash",
            ],
            &[],
            &[],
        );
        culler.services = vec!["idle-culler".into()];
        let mut ops = role("admin", &[], &[], &[]);
        ops.services = vec!["ops".into()];
        let state = state_with(vec![culler, ops]);
        let idle = of_service_in(&state, "idle-culler");
        let ops = of_service_in(&state, "ops");
        let nobody = of_service_in(&state, "other");
        let cases: &[(&str, &Scopes, &str, Resource, bool)] = &[
            (
                "the culler lists users",
                &idle,
                "list:users",
                Resource::Any,
                true,
            ),
            (
                "the culler stops servers",
                &idle,
                "delete:servers",
                Resource::Server {
                    user: "alice",
                    name: "",
                },
                true,
            ),
            (
                "the culler creates no user",
                &idle,
                "admin:users",
                Resource::Any,
                false,
            ),
            (
                "self means nothing for a service",
                &idle,
                "servers",
                Resource::Server {
                    user: "idle-culler",
                    name: "",
                },
                false,
            ),
            (
                "nor does !user",
                &idle,
                "read:users",
                Resource::User("idle-culler"),
                false,
            ),
            (
                "a service filter names its service",
                &idle,
                "access:services",
                Resource::Service("dash"),
                true,
            ),
            (
                "and no other",
                &idle,
                "access:services",
                Resource::Service("ops"),
                false,
            ),
            (
                "the admin role holds every service scope",
                &ops,
                "read:services",
                Resource::Service("dash"),
                true,
            ),
            (
                "a service no role names holds nothing",
                &nobody,
                "list:users",
                Resource::Any,
                false,
            ),
        ];
        for (what, scopes, name, resource, want) in cases {
            assert_eq!(scopes.allows(name, *resource), *want, "{what}");
        }
        assert!(nobody.to_vec().is_empty());
    }

    #[test]
    fn unknown_scopes_and_bad_filters_are_refused() {
        for bad in [
            "nope",
            "read:users!group",
            "read:users!group=",
            "read:users!user=",
            "read:users!colour=red",
            "access:servers!server",
        ] {
            assert!(expand([bad], "alice", None).is_err(), "{bad}");
        }
    }
}
