//! Admin pages: users and their servers (`/hub/admin`), the cluster
//! (`/hub/cluster`, something JupyterHub cannot show), and every user's
//! token page (`/hub/token`). Buttons call the REST API from a few lines
//! of JavaScript with the CSRF token in `X-XSRFToken`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use minijinja::context;
use serde_json::json;

use super::pages::require_login;
use super::{error_page, page, secure};
use crate::auth::session::{self, Login};
use crate::listing::{self, Selection, Sort};
use crate::Ctx;
use quorumhub_core::scopes::{self, Resource};
use quorumhub_core::time::iso;

fn is_admin(hub: &Ctx, login: &Login) -> bool {
    hub.read(|s| scopes::of_user_in(s, &login.user, false))
        .allows("admin-ui", Resource::Any)
}

fn with_xsrf(
    hub: &Ctx,
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

/// `/hub/admin`'s query: a page of users, as JupyterHub's admin page asks
/// the API for one (`offset`, `limit`, `sort`, `name_filter`).
#[derive(serde::Deserialize, Default)]
pub(crate) struct AdminQuery {
    offset: Option<String>,
    limit: Option<String>,
    sort: Option<String>,
    name_filter: Option<String>,
}

/// Rows per page by default, and at most (JupyterHub's API page sizes).
const PAGE: usize = 50;
const MAX_PAGE: usize = 200;
/// Groups listed on the page; the rest are counted.
const GROUPS_SHOWN: usize = 100;

/// `/hub/admin?offset&limit&sort&name_filter` as a link.
fn admin_url(offset: usize, limit: usize, sort: &Sort, name_filter: &str) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("offset", &offset.to_string());
    q.append_pair("limit", &limit.to_string());
    q.append_pair("sort", &sort.as_param());
    if !name_filter.is_empty() {
        q.append_pair("name_filter", name_filter);
    }
    format!("/hub/admin?{}", q.finish())
}

/// The users page: one page of users (server-side paging, sorting and a
/// name filter, so 100k users cost what 50 do), the groups, the forms.
pub(crate) async fn admin(
    State(hub): State<Arc<Ctx>>,
    headers: HeaderMap,
    query: Result<Query<AdminQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let login = match require_login(&hub, &headers, "/hub/admin").await {
        Ok(l) => l,
        Err(r) => return r,
    };
    // require_login passed the read barrier.
    if !is_admin(&hub, &login) {
        return not_admin(&login);
    }
    let bad = |why: String| {
        error_page(
            StatusCode::BAD_REQUEST,
            &why,
            "Fix the address, or open /hub/admin for the first page.",
            Some(&login.user),
        )
    };
    let Ok(Query(q)) = query else {
        return bad("The page's parameters are malformed.".into());
    };
    let number = |v: Option<&str>, default: usize| -> Result<usize, String> {
        match v.filter(|s| !s.is_empty()) {
            None => Ok(default),
            Some(s) => s
                .parse::<usize>()
                .map_err(|_| format!("offset and limit must be whole numbers, not {s:?}")),
        }
    };
    let (offset, limit) = match (
        number(q.offset.as_deref(), 0),
        number(q.limit.as_deref(), PAGE),
    ) {
        (Ok(o), Ok(l)) => (o, l.clamp(1, MAX_PAGE)),
        (Err(e), _) | (_, Err(e)) => return bad(e),
    };
    let sort = match q.sort.as_deref().filter(|s| !s.is_empty()) {
        None => Sort::parse("name").unwrap_or(Sort::DEFAULT),
        Some(raw) => match Sort::parse(raw) {
            Ok(s) => s,
            Err(e) => return bad(e),
        },
    };
    let name_filter = q.name_filter.unwrap_or_default();
    let sel = Selection {
        state: None,
        name_filter: Some(name_filter.to_lowercase()).filter(|f| !f.is_empty()),
        sort,
    };
    let (users, total, all_users, running, groups, more_groups) = hub.read(|s| {
        let matching = listing::select(s, &sel, |_| true);
        let total = matching.len();
        let users: Vec<_> = matching
            .into_iter()
            .skip(offset)
            .take(limit)
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
                    "named": u.servers.keys().filter(|k| !k.is_empty()).count(),
                    "last_activity": u.last_activity.map(iso).unwrap_or_default(),
                    "created": iso(u.created),
                })
            })
            .collect();
        let running = s.active_servers().filter(|(_, sv)| sv.ready()).count();
        let groups: Vec<_> = s
            .groups
            .values()
            .take(GROUPS_SHOWN)
            .map(|g| json!({"name": g.name, "users": g.users.len()}))
            .collect();
        let more_groups = s.groups.len().saturating_sub(GROUPS_SHOWN);
        (users, total, s.users.len(), running, groups, more_groups)
    });
    let first = if users.is_empty() { 0 } else { offset + 1 };
    let last = offset + users.len();
    let prev =
        (offset > 0).then(|| admin_url(offset.saturating_sub(limit), limit, &sort, &name_filter));
    let next = (last < total).then(|| admin_url(last, limit, &sort, &name_filter));
    // Each sortable column's link: its key, the other way round when it is
    // the current one.
    let sort_link = |key: &str| {
        let flip = Sort::parse(key)
            .map(|k| Sort {
                descending: k.key == sort.key && !sort.descending,
                ..k
            })
            .unwrap_or(Sort::DEFAULT);
        admin_url(0, limit, &flip, &name_filter)
    };
    let sorted_by = sort.as_param();
    let sort_name = sort_link("name");
    let sort_activity = sort_link("last_activity");
    let sort_created = sort_link("id");
    with_xsrf(&hub, &headers, &login, |xsrf| {
        page(
            StatusCode::OK,
            "admin.html",
            context! {
                user => login.user, admin => true, users => users, groups => groups,
                more_groups => more_groups, xsrf => xsrf, total => total, all_users => all_users,
                running => running, first => first, last => last, prev => prev, next => next,
                name_filter => name_filter, limit => limit, sorted_by => sorted_by,
                sort_name => sort_name, sort_activity => sort_activity, sort_created => sort_created,
            },
        )
    })
}

pub(crate) async fn token(State(hub): State<Arc<Ctx>>, headers: HeaderMap) -> Response {
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

pub(crate) async fn cluster(State(hub): State<Arc<Ctx>>, headers: HeaderMap) -> Response {
    let login = match require_login(&hub, &headers, "/hub/cluster").await {
        Ok(l) => l,
        Err(r) => return r,
    };
    if !is_admin(&hub, &login) {
        return not_admin(&login);
    }
    let view = hub.members().await;
    page(
        StatusCode::OK,
        "cluster.html",
        context! { user => login.user, admin => true, cluster => view },
    )
}
