//! The route table: immutable, swapped whole (arc-swap) by the watcher.

use std::collections::BTreeMap;

use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use quorumhub_proto::v1::{Route, RouteChange, RouteSnapshot};

/// One version of the routing state the request path reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteTable {
    /// Revision (hub log index) this table reflects.
    pub revision: u64,
    /// Route prefix ("/user/alice/") → target ("http://127.0.0.1:40123").
    pub routes: BTreeMap<String, Target>,
}

/// A route's target as given ("http://127.0.0.1:40123", or "host:port"
/// meaning http), parsed once when the table is built, so a request only
/// puts its own path and query behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    raw: String,
    /// Scheme, authority and the target's own path (no trailing '/',
    /// usually empty); `None` when `raw` is not a usable URI.
    parsed: Option<(Scheme, Authority, String)>,
}

impl Target {
    pub fn new(raw: impl Into<String>) -> Target {
        let raw = raw.into();
        let base = raw.trim_end_matches('/');
        let with_scheme;
        let base = if base.contains("://") {
            base
        } else {
            with_scheme = format!("http://{base}");
            &with_scheme
        };
        let parsed = base.parse::<Uri>().ok().and_then(|u| {
            let parts = u.into_parts();
            let path = parts
                .path_and_query
                .as_ref()
                .map(|p| p.as_str().trim_end_matches('/').to_string())
                .unwrap_or_default();
            // A query in a target would end up inside the request's path.
            if path.contains('?') {
                return None;
            }
            Some((parts.scheme?, parts.authority?, path))
        });
        Target { raw, parsed }
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The upstream URI for a request to `original`: the target, then the
    /// request's path and query unchanged. `None` for an unusable target.
    pub fn uri_for(&self, original: &Uri) -> Option<Uri> {
        let (scheme, authority, path) = self.parsed.as_ref()?;
        let pq = match (original.path_and_query(), path.is_empty()) {
            // The common case: no copy, no parse.
            (Some(pq), true) => pq.clone(),
            (None, true) => PathAndQuery::from_static("/"),
            (pq, false) => {
                let pq = pq.map(|p| p.as_str()).unwrap_or("/");
                PathAndQuery::try_from(format!("{path}{pq}")).ok()?
            }
        };
        Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query(pq)
            .build()
            .ok()
    }
}

impl RouteTable {
    pub fn from_snapshot(s: &RouteSnapshot) -> RouteTable {
        RouteTable {
            revision: s.revision,
            routes: s
                .routes
                .iter()
                .map(|r| (r.prefix.clone(), Target::new(r.target.as_str())))
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
                next.routes
                    .insert(prefix.clone(), Target::new(target.as_str()));
            }
            None => {
                next.routes.remove(&change.prefix);
            }
        }
        Some(next)
    }

    /// Longest route prefix of `path`. "/user/alice" (no trailing slash)
    /// matches "/user/alice/".
    pub fn lookup(&self, path: &str) -> Option<&Target> {
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
                .map(|(p, t)| (p.to_string(), Target::new(*t)))
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
            assert_eq!(t.lookup(path).map(Target::as_str), *want, "{path}");
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
        assert_eq!(t2.lookup("/user/bob/").map(Target::as_str), Some("B"));
        let t3 = t2.with_change(&delete(6, "/user/alice/")).expect("newer");
        assert!(t3.lookup("/user/alice/").is_none());
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
