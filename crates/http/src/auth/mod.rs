//! Who is asking, shared by the REST API and the browser pages: the
//! [`Caller`] behind a token or a login cookie, the login session and its
//! CSRF token ([`session`]), and the failed-login limiter ([`ratelimit`]).
//! Neither front end imports the other; both import this.

mod caller;
pub(crate) mod ratelimit;
pub(crate) mod session;

pub(crate) use caller::{forbidden, token_scopes};
use std::sync::Arc;

use axum::extract::FromRef;

use crate::Ctx;

pub use caller::Caller;
pub(crate) use ratelimit::LoginLimiter;

/// What the HTTP handlers share: the replica, and this replica's own
/// bookkeeping of its HTTP clients, which is not the replica's business
/// (failed logins, the refusal log). A handler asks for the part it needs
/// (`State<Arc<Ctx>>`, `State<Arc<LoginLimiter>>`).
#[derive(Clone)]
pub struct HttpState {
    pub hub: Arc<Ctx>,
    /// Failed logins per user name and per address (this replica's count).
    pub(crate) login_limiter: Arc<LoginLimiter>,
    /// When each client's refusal (413, 400 on a limit, 429) was last
    /// logged.
    pub(crate) refusals: Arc<crate::limits::RefusalLog>,
    /// What `/hub/metrics` serves; every answer is counted in it.
    pub(crate) metrics: crate::metrics::Metrics,
}

impl HttpState {
    pub fn new(hub: Arc<Ctx>, metrics: crate::metrics::Metrics) -> HttpState {
        HttpState {
            hub,
            login_limiter: Arc::default(),
            refusals: Arc::default(),
            metrics,
        }
    }
}

impl FromRef<HttpState> for Arc<Ctx> {
    fn from_ref(state: &HttpState) -> Arc<Ctx> {
        state.hub.clone()
    }
}

impl FromRef<HttpState> for Arc<LoginLimiter> {
    fn from_ref(state: &HttpState) -> Arc<LoginLimiter> {
        state.login_limiter.clone()
    }
}
