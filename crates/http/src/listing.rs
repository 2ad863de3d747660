//! Choosing which users a list shows, in which order: JupyterHub's `GET
//! /users` parameters (`state`, `name_filter`, `sort`), shared by the REST
//! API and the admin page, so that both page through 100k users the same
//! way.

use quorumhub_state::{HubState, User};

/// The order of a user list (JupyterHub's `sort`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SortKey {
    /// Creation order (JupyterHub's database id): by creation time, ties
    /// by name.
    Id,
    Name,
    /// Users without activity first (last when descending).
    LastActivity,
}

/// A parsed `sort`: the key and whether descending (a leading `-`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sort {
    pub key: SortKey,
    pub descending: bool,
}

impl Sort {
    /// JupyterHub's default, `id`.
    pub(crate) const DEFAULT: Sort = Sort {
        key: SortKey::Id,
        descending: false,
    };

    /// `id`, `name` or `last_activity`, each with an optional leading `-`;
    /// the error is JupyterHub's message.
    pub(crate) fn parse(raw: &str) -> Result<Sort, String> {
        let (key, descending) = match raw.strip_prefix('-') {
            Some(k) => (k, true),
            None => (raw, false),
        };
        let key = match key {
            "id" => SortKey::Id,
            "name" => SortKey::Name,
            "last_activity" => SortKey::LastActivity,
            _ => {
                return Err(format!(
                    "sort must be 'id', 'name', or 'last_activity', not '{raw}'"
                ))
            }
        };
        Ok(Sort { key, descending })
    }

    /// As [`Sort::parse`] reads it.
    pub(crate) fn as_param(&self) -> String {
        let key = match self.key {
            SortKey::Id => "id",
            SortKey::Name => "name",
            SortKey::LastActivity => "last_activity",
        };
        if self.descending {
            format!("-{key}")
        } else {
            key.to_string()
        }
    }
}

/// JupyterHub's `state` filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StateFilter {
    /// Has an active server (spawning, running or stopping).
    Active,
    /// Has a running server.
    Ready,
    /// Has no active server.
    Inactive,
}

impl StateFilter {
    pub(crate) fn parse(raw: &str) -> Result<Option<StateFilter>, String> {
        Ok(Some(match raw {
            "" => return Ok(None),
            "active" => StateFilter::Active,
            "ready" => StateFilter::Ready,
            "inactive" => StateFilter::Inactive,
            other => {
                return Err(format!(
                    "Unrecognized state filter: {other:?}; use active, ready or inactive"
                ))
            }
        }))
    }

    pub(crate) fn as_param(&self) -> &'static str {
        match self {
            StateFilter::Active => "active",
            StateFilter::Ready => "ready",
            StateFilter::Inactive => "inactive",
        }
    }

    fn keeps(&self, u: &User) -> bool {
        match self {
            StateFilter::Active => !u.servers.is_empty(),
            StateFilter::Ready => u.servers.values().any(|s| s.ready()),
            StateFilter::Inactive => u.servers.is_empty(),
        }
    }
}

/// What a user list shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Selection {
    pub state: Option<StateFilter>,
    /// Lower-cased: users whose (lower-cased) name contains it.
    pub name_filter: Option<String>,
    pub sort: Sort,
}

/// The users of `s` that `sel` and `visible` keep, in `sel`'s order.
pub(crate) fn select<'a>(
    s: &'a HubState,
    sel: &Selection,
    visible: impl Fn(&User) -> bool,
) -> Vec<&'a User> {
    let mut users: Vec<&User> = s
        .users
        .values()
        .filter(|u| sel.state.is_none_or(|f| f.keeps(u)))
        .filter(|u| {
            sel.name_filter
                .as_deref()
                .is_none_or(|f| u.name.to_lowercase().contains(f))
        })
        .filter(|u| visible(u))
        .collect();
    // The state keeps users by name: that is already `name`'s order.
    match sel.sort.key {
        SortKey::Name => {}
        SortKey::Id => users.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name))),
        SortKey::LastActivity => {
            users.sort_by(|a, b| (a.last_activity, &a.name).cmp(&(b.last_activity, &b.name)))
        }
    }
    // `None` sorts first: reversed, users without activity come last.
    if sel.sort.descending {
        users.reverse();
    }
    users
}
