//! The hub's HTTP error: JupyterHub's JSON `{"status": N, "message": "..."}`,
//! with what the state, the cluster and the operations can refuse mapped
//! to a status in one place each; and the marker that a refusal by a limit
//! is logged once per client per interval.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use quorumhub_state::Rejection;
use serde_json::json;

use quorumhub_core::ops::OpError;
use quorumhub_core::HubError;

/// Marks a response refused by a limit or quota (see [`crate::limits`]):
/// the kind of refusal (`body`, `field`, `quota` or `admission`) and the
/// message the client got.
#[derive(Clone, Debug)]
pub(crate) struct Refused {
    pub kind: &'static str,
    pub message: String,
}

/// The message of an API error response, for the request layer's log line
/// (the body already holds it as JSON).
#[derive(Clone, Debug)]
pub(crate) struct ErrorMessage(pub String);

/// Marks a response that refused a start because of a spawn limit, with
/// JupyterHub's metric reason (`throttled`, `too-many-users`): the request
/// layer counts it in `jupyterhub_server_spawn_duration_seconds`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SpawnRefused(pub &'static str);

/// A JupyterHub-style JSON error: `{"status": N, "message": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
    refused: Option<&'static str>,
    spawn_refused: Option<&'static str>,
}

impl ApiError {
    /// Ask the client to wait `secs` before retrying (`Retry-After`).
    pub(crate) fn retry_after(mut self, secs: u64) -> ApiError {
        self.retry_after = Some(secs);
        self
    }

    /// Mark as refused by a limit of kind `kind`: logged at most once per
    /// client per interval.
    pub(crate) fn refusal(mut self, kind: &'static str) -> ApiError {
        self.refused = Some(kind);
        self
    }

    /// Mark as a start refused by a spawn limit (`reason`: JupyterHub's).
    fn spawn_refusal(mut self, reason: &'static str) -> ApiError {
        self.spawn_refused = Some(reason);
        self
    }

    /// The marker [`SpawnRefused`] for a response built from this error's
    /// parts (the pages' error pages).
    pub(crate) fn spawn_refused(&self) -> Option<SpawnRefused> {
        self.spawn_refused.map(SpawnRefused)
    }

    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    pub(crate) fn parts(self) -> (StatusCode, String) {
        (self.status, self.message)
    }

    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
            refused: None,
            spawn_refused: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(json!({ "status": self.status.as_u16(), "message": self.message })),
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(reason) = self.spawn_refused {
            r.extensions_mut().insert(SpawnRefused(reason));
        }
        match self.refused {
            Some(kind) => {
                r.extensions_mut().insert(Refused {
                    kind,
                    message: self.message,
                });
            }
            None => {
                r.extensions_mut().insert(ErrorMessage(self.message));
            }
        }
        r
    }
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> ApiError {
        let status = match e {
            HubError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            // Temporary: the cluster is mid-upgrade.
            HubError::NotYetEnabled(_) => StatusCode::SERVICE_UNAVAILABLE,
            HubError::UserBusy { .. } => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        let retry_after = e.retry_after();
        let mut err = ApiError::new(status, e.to_string());
        if let Some(secs) = retry_after {
            err = err.retry_after(secs).refusal("admission");
        }
        err
    }
}

/// JupyterHub's `spawn_throttle_retry_range`: a throttled spawn is told
/// to wait a random 30 to 60 s, so refused users do not all retry at once.
const SPAWN_RETRY_RANGE_S: std::ops::RangeInclusive<u64> = 30..=60;

/// JupyterHub's answer to a throttled spawn: the wait rounded for people
/// (up to 10 s steps below 90 s, else minutes).
fn throttled(retry: u64) -> ApiError {
    let human = if retry <= 90 {
        format!("{}0 seconds", retry.div_ceil(10))
    } else {
        format!("{} minutes", (retry + 30) / 60)
    };
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!("Too many users trying to log in right now. Try again in {human}."),
    )
    .retry_after(retry)
    .refusal("quota")
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> ApiError {
        use rand::Rng;
        match &r {
            // Logged as refusals (rate-limited), with the message.
            Rejection::SpawnThrottled { .. } => {
                return throttled(rand::thread_rng().gen_range(SPAWN_RETRY_RANGE_S))
                    .spawn_refusal("throttled");
            }
            Rejection::ActiveServerLimit { .. } => {
                return ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Active user limit exceeded. Try again in a few minutes.",
                )
                .refusal("quota")
                .spawn_refusal("too-many-users");
            }
            _ => {}
        }
        let status = match &r {
            Rejection::UserExists { .. }
            | Rejection::TokenExists { .. }
            | Rejection::GroupExists { .. }
            | Rejection::ServerExists { .. }
            | Rejection::ClientIdTaken { .. } => StatusCode::CONFLICT,
            Rejection::NoSuchUser { .. }
            | Rejection::NoSuchToken { .. }
            | Rejection::NoSuchServer { .. }
            | Rejection::NoSuchGroup { .. } => StatusCode::NOT_FOUND,
            Rejection::StaleGeneration { .. } => StatusCode::CONFLICT,
            Rejection::CommandTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, r.to_string())
    }
}

/// Parse an optional JSON body: empty is `None`, malformed is a 400.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
) -> Result<Option<T>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body).map(Some).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("Invalid JSON in body: {e}"),
        )
    })
}

impl From<OpError> for ApiError {
    fn from(e: OpError) -> ApiError {
        match e {
            OpError::Cluster(e) => e.into(),
            OpError::Rejected(r) => r.into(),
            OpError::Unexpected(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttled_spawns_are_told_when_to_retry_as_jupyterhub_says_it() {
        for (retry, want) in [
            (30, "30 seconds"),
            (31, "40 seconds"),
            (60, "60 seconds"),
            (90, "90 seconds"),
            (91, "2 minutes"),
            (170, "3 minutes"),
        ] {
            let (status, message) = throttled(retry).parts();
            assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(
                message,
                format!("Too many users trying to log in right now. Try again in {want}.")
            );
        }
        let r = ApiError::from(Rejection::SpawnThrottled {
            pending: 3,
            limit: 3,
        })
        .into_response();
        let secs: u64 = r.headers()[axum::http::header::RETRY_AFTER]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("seconds");
        assert!(SPAWN_RETRY_RANGE_S.contains(&secs), "{secs}");
    }
}
