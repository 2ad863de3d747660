//! JupyterHub's pagination of collections (`/users`, `/groups`): `offset`
//! and `limit` in the query; with `Accept:
//! application/jupyterhub-pagination+json` the answer is
//! `{"items": [..], "_pagination": {offset, limit, total, next}}` with pages
//! of at most [`MAX_PAGE`], else a plain list of everything asked for.

use axum::http::{header, HeaderMap, StatusCode};
use serde_json::{json, Value};

use crate::error::ApiError;

const PAGINATION: &str = "application/jupyterhub-pagination+json";
/// JupyterHub's `api_page_default_limit` and `api_page_max_limit`.
pub(crate) const DEFAULT_PAGE: usize = 50;
pub(crate) const MAX_PAGE: usize = 200;

/// One request's page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Page {
    pub offset: usize,
    pub limit: usize,
    /// The client asked for the paginated shape.
    pub paginated: bool,
}

impl Page {
    /// From the raw query parameters and the `Accept` header. Without the
    /// header the limit defaults to everything (JupyterHub caps it at its
    /// max page and logs that the list was truncated; a quorumhub list is
    /// never silently cut).
    pub(crate) fn of(
        headers: &HeaderMap,
        offset: Option<&str>,
        limit: Option<&str>,
    ) -> Result<Page, ApiError> {
        let paginated = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains(PAGINATION));
        let int = |v: Option<&str>| -> Result<Option<usize>, ApiError> {
            v.filter(|s| !s.is_empty())
                .map(|s| {
                    s.trim_start_matches('-').parse::<usize>().map_err(|_| {
                        ApiError::new(
                            StatusCode::BAD_REQUEST,
                            "Invalid argument type, offset and limit must be integers",
                        )
                    })
                })
                .transpose()
        };
        let offset = int(offset)?.unwrap_or(0);
        let limit = match (paginated, int(limit)?) {
            (true, l) => l.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE),
            (false, l) => l.unwrap_or(usize::MAX).max(1),
        };
        Ok(Page {
            offset,
            limit,
            paginated,
        })
    }

    /// The answer for this page of `total` items: `query` is the request's
    /// other parameters, kept in the `next` link as JupyterHub keeps them.
    pub(crate) fn answer(
        &self,
        items: Vec<Value>,
        total: usize,
        url: &str,
        query: &[(&str, String)],
    ) -> Value {
        if !self.paginated {
            return Value::Array(items);
        }
        let next_offset = self.offset.saturating_add(self.limit);
        let next = (next_offset < total).then(|| {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in query {
                q.append_pair(k, v);
            }
            q.append_pair("offset", &next_offset.to_string());
            q.append_pair("limit", &self.limit.to_string());
            json!({
                "offset": next_offset,
                "limit": self.limit,
                "url": format!("{url}?{}", q.finish()),
            })
        });
        json!({
            "items": items,
            "_pagination": {"offset": self.offset, "limit": self.limit, "total": total, "next": next},
        })
    }
}
