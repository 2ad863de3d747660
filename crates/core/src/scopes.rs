//! JupyterHub 2+ roles and scopes, for the subset the REST API uses.
//!
//! A scope is `name` or `name!filter`, the filter one of `user=U`,
//! `server=U/S` or a placeholder (`!user`, `!server`) filled in from the
//! token's owner. [`expand`] turns roles (`self`, `inherit`) and parent
//! scopes into the full set of leaf scopes, keeping each filter; a caller's
//! effective scopes are its token's, intersected with its owner's.
//!
//! Matching follows JupyterHub: an unfiltered scope covers everything,
//! `!user=U` also covers U's servers, `!server=U/S` covers that server only.

use std::collections::BTreeSet;

/// Every scope this hub knows, with the scopes it implies (JupyterHub's
/// scope tree, restricted to what the REST API here uses).
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

/// The `admin` role.
const ADMIN: &[&str] = &[
    "admin-ui",
    "admin:users",
    "admin:servers",
    "tokens",
    "admin:groups",
    "read:hub",
    "read:metrics",
    "access:servers",
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
}

/// Why a scope is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Unknown scope {0:?}")]
pub struct UnknownScope(pub String);

/// A set of expanded scopes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scopes(BTreeSet<String>);

impl Scopes {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn to_vec(&self) -> Vec<String> {
        self.0.iter().cloned().collect()
    }

    /// Does this set allow `name` on `resource`?
    pub fn allows(&self, name: &str, resource: Resource<'_>) -> bool {
        self.0.iter().any(|s| covers(s, name, resource))
    }

    /// Does it hold `name` at all, for some resource?
    pub fn holds(&self, name: &str) -> bool {
        self.0.iter().any(|s| base(s) == name)
    }

    /// The scopes of `self` that `owner` also holds (a token never does
    /// more than its owner may).
    pub fn within(&self, owner: &Scopes) -> Scopes {
        Scopes(
            self.0
                .iter()
                .filter(|s| owner.0.iter().any(|o| implies(o, s)))
                .cloned()
                .collect(),
        )
    }
}

fn base(scope: &str) -> &str {
    scope.split_once('!').map_or(scope, |(b, _)| b)
}

fn filter(scope: &str) -> Option<&str> {
    scope.split_once('!').map(|(_, f)| f)
}

/// Does held scope `have` cover `name` on `resource`?
fn covers(have: &str, name: &str, resource: Resource<'_>) -> bool {
    if base(have) != name {
        return false;
    }
    match (filter(have), resource) {
        (None, _) => true,
        (Some(_), Resource::Any) => false,
        (Some(f), Resource::User(u)) => f.strip_prefix("user=") == Some(u),
        (Some(f), Resource::Server { user, name }) => {
            f.strip_prefix("user=") == Some(user)
                || f.strip_prefix("server=") == Some(&format!("{user}/{name}"))
        }
    }
}

/// Does held scope `have` imply scope `want` (both expanded)?
fn implies(have: &str, want: &str) -> bool {
    if base(have) != base(want) {
        return false;
    }
    match (filter(have), filter(want)) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(h), Some(w)) if h == w => true,
        (Some(h), Some(w)) => match (h.strip_prefix("user="), w.strip_prefix("server=")) {
            (Some(u), Some(server)) => server.split_once('/').map(|(su, _)| su) == Some(u),
            _ => false,
        },
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
    Ok(Scopes(out))
}

fn valid_filter(f: &str) -> bool {
    match f.split_once('=') {
        Some(("user", u)) => !u.is_empty() && !u.contains('/'),
        Some(("server", s)) => s.split_once('/').is_some_and(|(u, _)| !u.is_empty()),
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

/// What a user may do: the admin role, or `self`.
pub fn of_user(name: &str, admin: bool) -> Scopes {
    let roles: &[&str] = if admin { &["admin", "self"] } else { &["self"] };
    expand(roles.iter().copied(), name, None).unwrap_or_default()
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

    #[test]
    fn unknown_scopes_and_bad_filters_are_refused() {
        for bad in [
            "nope",
            "read:users!group",
            "read:users!user=",
            "read:users!colour=red",
            "access:servers!server",
        ] {
            assert!(expand([bad], "alice", None).is_err(), "{bad}");
        }
    }
}
