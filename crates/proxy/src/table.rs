//! The route table: immutable, swapped whole (arc-swap) by the watcher.

use std::collections::BTreeMap;

use quorumhub_proto::v1::{Route, RouteChange, RouteSnapshot};

/// One version of the routing state the request path reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteTable {
    /// Revision (hub log index) this table reflects.
    pub revision: u64,
    /// Route prefix ("/user/alice/") → target ("http://127.0.0.1:40123").
    pub routes: BTreeMap<String, String>,
}

impl RouteTable {
    pub fn from_snapshot(s: &RouteSnapshot) -> RouteTable {
        RouteTable {
            revision: s.revision,
            routes: s
                .routes
                .iter()
                .map(|r| (r.prefix.clone(), r.target.clone()))
                .collect(),
        }
    }

    /// The table after `change`, or `None` when the change is not newer.
    pub fn with_change(&self, change: &RouteChange) -> Option<RouteTable> {
        if change.revision <= self.revision {
            return None;
        }
        let mut next = self.clone();
        next.revision = change.revision;
        match &change.route {
            Some(Route { prefix, target, .. }) => {
                next.routes.insert(prefix.clone(), target.clone());
            }
            None => {
                next.routes.remove(&change.prefix);
            }
        }
        Some(next)
    }

    /// Longest route prefix of `path`. "/user/alice" (no trailing slash)
    /// matches "/user/alice/".
    pub fn lookup(&self, path: &str) -> Option<&str> {
        if self.routes.is_empty() {
            return None;
        }
        let with_slash;
        let path = if path.ends_with('/') {
            path
        } else {
            with_slash = format!("{path}/");
            &with_slash
        };
        path.char_indices()
            .rev()
            .filter(|(_, c)| *c == '/')
            .find_map(|(i, _)| self.routes.get(&path[..=i]))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(routes: &[(&str, &str)]) -> RouteTable {
        RouteTable {
            revision: 1,
            routes: routes
                .iter()
                .map(|(p, t)| (p.to_string(), t.to_string()))
                .collect(),
        }
    }

    #[test]
    fn lookup_as_data() {
        let t = table(&[
            ("/user/alice/", "A"),
            ("/user/alice/gpu/", "G"),
            ("/user/bob/", "B"),
        ]);
        let cases: &[(&str, Option<&str>)] = &[
            ("/user/alice/", Some("A")),
            ("/user/alice", Some("A")),
            ("/user/alice/lab/tree/x.ipynb", Some("A")),
            ("/user/alice/gpu/", Some("G")),
            ("/user/alice/gpu", Some("G")),
            ("/user/alice/gpu/api/kernels", Some("G")),
            ("/user/alice/gpux/", Some("A")),
            ("/user/alic/", None),
            ("/user/alicex/", None),
            ("/user/bob/api", Some("B")),
            ("/hub/api/users", None),
            ("/", None),
            ("", None),
        ];
        for (path, want) in cases {
            assert_eq!(t.lookup(path), *want, "{path}");
        }
    }

    #[test]
    fn changes_apply_only_forward() {
        let t = table(&[("/user/alice/", "A")]);
        let upsert = |rev, prefix: &str, target: &str| RouteChange {
            revision: rev,
            prefix: prefix.into(),
            route: Some(Route {
                prefix: prefix.into(),
                target: target.into(),
                user: String::new(),
                server_name: String::new(),
            }),
        };
        let delete = |rev, prefix: &str| RouteChange {
            revision: rev,
            prefix: prefix.into(),
            route: None,
        };
        assert!(
            t.with_change(&upsert(1, "/user/x/", "X")).is_none(),
            "not newer"
        );
        let t2 = t.with_change(&upsert(5, "/user/bob/", "B")).expect("newer");
        assert_eq!(t2.revision, 5);
        assert_eq!(t2.lookup("/user/bob/"), Some("B"));
        let t3 = t2.with_change(&delete(6, "/user/alice/")).expect("newer");
        assert_eq!(t3.lookup("/user/alice/"), None);
        assert_eq!(t3.routes.len(), 1);
        let snap = RouteTable::from_snapshot(&RouteSnapshot {
            revision: 9,
            routes: vec![],
        });
        assert_eq!(
            snap,
            RouteTable {
                revision: 9,
                routes: BTreeMap::new()
            }
        );
    }
}
