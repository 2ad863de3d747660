//! Enforcing [`Limits`] at the HTTP edge: request bodies (413), fields
//! (400) and per-user quotas (429), all checked on the replica that takes
//! the request, before anything is proposed. Every refusal is a
//! JupyterHub-style JSON error that names the limit and the flag that
//! raises it.
//!
//! Refusals are logged at most once per client per [`LOG_INTERVAL`]
//! ([`RefusalLog`]), so a flood does not become a flood of log lines.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

pub use quorumhub_core::limits::*;

use crate::error::ApiError;
use crate::Ctx;

/// How often a refusal is logged per client (and per kind of refusal).
pub const LOG_INTERVAL: Duration = quorumhub_edge::log_limit::LOG_INTERVAL;

/// The body limit of one request, and the flag that sets it.
pub(crate) fn body_limit_for<'a>(
    limits: &Limits,
    method: &Method,
    path: &'a str,
) -> (usize, &'static str) {
    let segments: Vec<&'a str> = path
        .strip_prefix("/hub/api/")
        .unwrap_or("")
        .trim_end_matches('/')
        .split('/')
        .collect();
    match (method, segments.as_slice()) {
        (&Method::POST, ["users"]) => (limits.max_users_body_bytes, "--max-users-body-bytes"),
        (&Method::POST, ["users", _, "server"] | ["users", _, "servers", _]) => {
            (limits.max_user_options_bytes, "--max-user-options-bytes")
        }
        (&Method::PUT, ["groups", _, "properties"]) => (
            limits.max_group_properties_bytes,
            "--max-group-properties-bytes",
        ),
        _ => (limits.max_body_bytes, "--max-body-bytes"),
    }
}

fn body_too_large(limit: usize, flag: &str) -> Response {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "Request body is larger than this endpoint's limit of {limit} bytes (the hub's {flag})"
        ),
    )
    .refusal("body")
    .into_response()
}

/// Middleware: read the body up to its endpoint's limit, or answer a JSON
/// 413 (tower-http's `RequestBodyLimitLayer` and axum's `DefaultBodyLimit`
/// answer plain text).
pub(crate) async fn limit_body(
    State(hub): State<std::sync::Arc<Ctx>>,
    req: Request,
    next: Next,
) -> Response {
    match read_limited(&hub.config.limits, req).await {
        Ok(req) => next.run(req).await,
        Err(refused) => refused,
    }
}

/// The request with its body read (at most its endpoint's limit), or the
/// answer that refuses it. A declared `Content-Length` over the limit is
/// refused before a byte of the body is read; a chunked body as soon as it
/// passes the limit.
async fn read_limited(limits: &Limits, req: Request) -> Result<Request, Response> {
    let (limit, flag) = body_limit_for(limits, req.method(), req.uri().path());
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        let (_, body) = req.into_parts();
        drain(body).await;
        return Err(closing(body_too_large(limit, flag)));
    }
    let (parts, mut body) = req.into_parts();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        use http_body_util::BodyExt;
        match body.frame().await {
            None => return Ok(Request::from_parts(parts, Body::from(buf))),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if buf.len() + data.len() > limit {
                        drain(body).await;
                        return Err(closing(body_too_large(limit, flag)));
                    }
                    buf.extend_from_slice(&data);
                }
            }
            Some(Err(e)) => {
                // The client went away mid-body, or sent a broken one.
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("Failed to read the request body: {e}"),
                )
                .into_response());
            }
        }
    }
}

/// How much of a refused body is read and thrown away before answering, and
/// for how long: a peer (our proxy) that is still sending it then reads the
/// 413 instead of a connection reset, and no other request is lost on it.
const DRAIN_BYTES: usize = 16 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

async fn drain(body: Body) {
    use http_body_util::BodyExt;
    let mut body = http_body_util::Limited::new(body, DRAIN_BYTES);
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(_)) = body.frame().await {}
    })
    .await;
}

/// A refusal after which the connection is not reused: its body may not
/// have been read to the end.
fn closing(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    resp
}

/// A field a client sent, to be checked against its limit.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Field<'a> {
    TokenNote(&'a str),
    TokenScopes(&'a [String]),
    ExpiresIn(i64),
    UserOptions(&'a Value),
    GroupProperties(&'a Value),
    UserName(&'a str),
    ServerName(&'a str),
    GroupName(&'a str),
    OidcSubject(&'a str),
}

fn bad(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message).refusal("field")
}

/// At most 64 characters of `s`, for echoing a client's value back.
fn shown(s: &str) -> String {
    if s.chars().count() <= 64 {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(64).collect();
        format!("{head:?}... ({} bytes)", s.len())
    }
}

/// Nesting depth of objects and arrays (a scalar is 0).
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn encoded_len(v: &Value) -> usize {
    serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX)
}

/// 400 unless `field` is within its limit.
pub(crate) fn check(limits: &Limits, field: Field<'_>) -> Result<(), ApiError> {
    let name = |what: &str, raw: &str, r: Result<(), String>| {
        r.map_err(|why| bad(format!("Invalid {what} {}: {why}", shown(raw))))
    };
    match field {
        Field::TokenNote(note) if note.len() > limits.max_token_note_bytes => Err(bad(format!(
            "note is {} bytes; the limit is {} (--max-token-note-bytes)",
            note.len(),
            limits.max_token_note_bytes
        ))),
        Field::TokenScopes(scopes) if scopes.len() > limits.max_token_scopes => Err(bad(format!(
            "scopes lists {} scopes; the limit is {} (--max-token-scopes)",
            scopes.len(),
            limits.max_token_scopes
        ))),
        Field::TokenScopes(scopes) => {
            match scopes.iter().find(|s| s.len() > limits.max_scope_bytes) {
                Some(long) => Err(bad(format!(
                    "scope {} is longer than {} bytes (--max-scope-bytes)",
                    shown(long),
                    limits.max_scope_bytes
                ))),
                None => Ok(()),
            }
        }
        Field::ExpiresIn(s) if s > MAX_EXPIRES_IN_S => Err(bad(format!(
            "expires_in may be at most {MAX_EXPIRES_IN_S} s (10 years), not {s}"
        ))),
        Field::ExpiresIn(s) if s < 1 => Err(bad(format!(
            "expires_in must be a positive number of seconds, not {s}"
        ))),
        Field::UserOptions(v) if !(v.is_null() || v.is_object()) => {
            Err(bad("user_options must be a JSON object".into()))
        }
        Field::UserOptions(v) if depth(v) > limits.max_user_options_depth => Err(bad(format!(
            "user_options nests {} levels deep; the limit is {} (--max-user-options-depth)",
            depth(v),
            limits.max_user_options_depth
        ))),
        Field::UserOptions(v) if encoded_len(v) > limits.max_user_options_bytes => {
            Err(bad(format!(
                "user_options is {} bytes encoded; the limit is {} (--max-user-options-bytes)",
                encoded_len(v),
                limits.max_user_options_bytes
            )))
        }
        Field::GroupProperties(v) if !v.is_object() => {
            Err(bad("properties must be a JSON object".into()))
        }
        Field::GroupProperties(v) if encoded_len(v) > limits.max_group_properties_bytes => {
            Err(bad(format!(
                "properties is {} bytes encoded; the limit is {} (--max-group-properties-bytes)",
                encoded_len(v),
                limits.max_group_properties_bytes
            )))
        }
        Field::UserName(raw) => name("username", raw, quorumhub_state::validate_username(raw)),
        Field::ServerName(raw) => name(
            "server name",
            raw,
            quorumhub_state::validate_server_name(raw),
        ),
        Field::GroupName(raw) => name(
            "group name",
            raw,
            quorumhub_state::validate_group_name(raw)
                .map_err(|why| why.replacen("username", "group name", 1)),
        ),
        Field::OidcSubject(sub) if sub.len() > MAX_OIDC_SUB_BYTES => Err(bad(format!(
            "the ID token's sub is {} bytes; OpenID Connect allows at most {MAX_OIDC_SUB_BYTES}",
            sub.len()
        ))),
        _ => Ok(()),
    }
}

/// A per-user quota is full: 429.
pub(crate) fn quota_full(message: String) -> ApiError {
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, message).refusal("quota")
}

/// Remembers when each client's refusal was last logged (the edge's).
pub(crate) use quorumhub_edge::RefusalLog;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(levels: usize) -> Value {
        let mut v = json!(1);
        for _ in 0..levels {
            v = json!({ "a": v });
        }
        v
    }

    #[test]
    fn fields_as_data() {
        let l = Limits::default();
        let scopes_many: Vec<String> = (0..65).map(|i| format!("read:users!user=u{i}")).collect();
        let scopes_ok: Vec<String> = vec!["read:users".into(), "tokens!user=a".into()];
        let scope_long = vec!["x".repeat(256)];
        let big_options = json!({ "blob": "x".repeat(64 * 1024) });
        let ok_options = json!({ "image": "lab", "cpu": 2, "env": {"A": "1"} });
        let big_props = json!({ "blob": "x".repeat(16 * 1024) });
        let long_name = "a".repeat(256);
        let long_sub = "s".repeat(256);
        let (note_max, note_over) = ("n".repeat(1024), "n".repeat(1025));
        let (deep_ok, deep_over) = (nested(10), nested(11));
        let (array, props_ok, string) = (json!([1]), json!({"k": "v"}), json!("s"));
        // (field, expected status, fragment of the message)
        let cases: Vec<(Field<'_>, u16, &str)> = vec![
            (Field::TokenNote("a note"), 200, ""),
            (Field::TokenNote(&note_max), 200, ""),
            (
                Field::TokenNote(&note_over),
                400,
                "note is 1025 bytes; the limit is 1024 (--max-token-note-bytes)",
            ),
            (Field::TokenScopes(&scopes_ok), 200, ""),
            (
                Field::TokenScopes(&scopes_many),
                400,
                "scopes lists 65 scopes; the limit is 64 (--max-token-scopes)",
            ),
            (Field::TokenScopes(&scope_long), 400, "(--max-scope-bytes)"),
            (Field::ExpiresIn(3600), 200, ""),
            (Field::ExpiresIn(0), 400, "expires_in must be a positive"),
            (Field::ExpiresIn(MAX_EXPIRES_IN_S + 1), 400, "at most"),
            (Field::UserOptions(&Value::Null), 200, ""),
            (Field::UserOptions(&ok_options), 200, ""),
            (Field::UserOptions(&array), 400, "must be a JSON object"),
            (Field::UserOptions(&deep_ok), 200, ""),
            (
                Field::UserOptions(&deep_over),
                400,
                "user_options nests 11 levels deep; the limit is 10 (--max-user-options-depth)",
            ),
            (
                Field::UserOptions(&big_options),
                400,
                "the limit is 65536 (--max-user-options-bytes)",
            ),
            (Field::GroupProperties(&props_ok), 200, ""),
            (
                Field::GroupProperties(&string),
                400,
                "must be a JSON object",
            ),
            (
                Field::GroupProperties(&big_props),
                400,
                "the limit is 16384 (--max-group-properties-bytes)",
            ),
            (Field::UserName("alice"), 200, ""),
            (Field::UserName(&long_name), 400, "Invalid username \"aaaa"),
            (Field::UserName("a b"), 200, ""),
            (Field::UserName("ünï"), 200, ""),
            (Field::UserName("a/b"), 400, "Invalid username"),
            (Field::UserName(".."), 400, "Invalid username"),
            (Field::GroupName("a b"), 400, "Invalid group name"),
            (Field::ServerName(""), 200, ""),
            (Field::ServerName("lab-1"), 200, ""),
            (Field::ServerName(&long_name), 400, "longer than 255"),
            (Field::GroupName("staff"), 200, ""),
            (Field::GroupName("a/b"), 400, "Invalid group name"),
            (Field::OidcSubject("248289761001"), 200, ""),
            (Field::OidcSubject(&long_sub), 400, "at most 255"),
        ];
        let mut failures = Vec::new();
        for (field, status, fragment) in &cases {
            let (got, message) = match check(&l, *field) {
                Ok(()) => (200, String::new()),
                Err(e) => {
                    let (s, m) = e.parts();
                    (s.as_u16(), m)
                }
            };
            if got != *status || !message.contains(fragment) {
                failures.push(format!("{field:?}: {got} {message}"));
            }
            // A message never echoes a whole long value.
            assert!(message.len() < 300, "{message}");
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn body_limits_per_endpoint_as_data() {
        let l = Limits::default();
        let cases = [
            (
                Method::POST,
                "/hub/api/users",
                256 * 1024,
                "--max-users-body-bytes",
            ),
            (
                Method::POST,
                "/hub/api/users/",
                256 * 1024,
                "--max-users-body-bytes",
            ),
            (
                Method::POST,
                "/hub/api/users/a",
                16 * 1024,
                "--max-body-bytes",
            ),
            (
                Method::POST,
                "/hub/api/users/a/server",
                64 * 1024,
                "--max-user-options-bytes",
            ),
            (
                Method::POST,
                "/hub/api/users/a/servers/x",
                64 * 1024,
                "--max-user-options-bytes",
            ),
            (
                Method::DELETE,
                "/hub/api/users/a/server",
                16 * 1024,
                "--max-body-bytes",
            ),
            (
                Method::POST,
                "/hub/api/users/a/tokens",
                16 * 1024,
                "--max-body-bytes",
            ),
            (
                Method::PUT,
                "/hub/api/groups/g/properties",
                16 * 1024,
                "--max-group-properties-bytes",
            ),
            (Method::POST, "/hub/login", 16 * 1024, "--max-body-bytes"),
            (
                Method::POST,
                "/hub/api/oauth2/token",
                16 * 1024,
                "--max-body-bytes",
            ),
        ];
        for (method, path, limit, flag) in cases {
            assert_eq!(
                body_limit_for(&l, &method, path),
                (limit, flag),
                "{method} {path}"
            );
        }
    }

    fn request(path: &str, content_length: Option<usize>, chunks: usize) -> Request {
        let stream = futures::stream::iter(
            (0..chunks).map(|_| Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b' '; 1024]))),
        );
        let mut b = Request::builder().method(Method::POST).uri(path);
        if let Some(n) = content_length {
            b = b.header(header::CONTENT_LENGTH, n);
        }
        b.body(Body::from_stream(stream)).expect("request")
    }

    #[tokio::test]
    async fn bodies_over_the_limit_get_a_json_413() {
        let l = Limits::default();
        // (path, declared length, 1 KiB chunks, refused with the flag)
        let cases = [
            ("/hub/api/users/a/tokens", None, 16, None),
            (
                "/hub/api/users/a/tokens",
                None,
                17,
                Some("--max-body-bytes"),
            ),
            (
                "/hub/api/users/a/tokens",
                Some(1 << 20),
                1,
                Some("--max-body-bytes"),
            ),
            ("/hub/api/users/a/server", None, 40, None),
            (
                "/hub/api/users/a/server",
                None,
                65,
                Some("--max-user-options-bytes"),
            ),
            ("/hub/api/users", None, 300, Some("--max-users-body-bytes")),
        ];
        for (path, declared, chunks, refused) in cases {
            let got = read_limited(&l, request(path, declared, chunks)).await;
            match (got, refused) {
                (Ok(req), None) => {
                    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
                        .await
                        .expect("body");
                    assert_eq!(body.len(), chunks * 1024, "{path}");
                }
                (Err(resp), Some(flag)) => {
                    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE, "{path}");
                    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
                        .await
                        .expect("body");
                    let v: Value = serde_json::from_slice(&body).expect("a JSON body");
                    assert_eq!(v["status"], 413);
                    let m = v["message"].as_str().expect("message");
                    assert!(m.contains(flag), "{path}: {m}");
                }
                (Ok(_), Some(_)) => panic!("{path} with {chunks} KiB was let through"),
                (Err(r), None) => panic!("{path} with {chunks} KiB was refused: {}", r.status()),
            }
        }
    }
}
