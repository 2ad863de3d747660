//! The built-in single-user server: a tiny stand-in for
//! `jupyterhub-singleuser`, for demos and tests.
//!
//! It reads its address from `JUPYTERHUB_SERVICE_URL`, its prefix from
//! `JUPYTERHUB_SERVICE_PREFIX` and its owner from `JUPYTERHUB_USER` (flags
//! override), and serves only under the prefix (404 elsewhere):
//!
//! - `GET {prefix}`, `{prefix}api`, `{prefix}api/status`: 200 JSON
//!   `{"server": "quorumhub-singleuser", "user": ..., "prefix": ..., "pid": ...}`
//! - `{prefix}api/echo[/...]` (any method): the request's method, path,
//!   query, headers and body as JSON
//! - `GET {prefix}ws`: WebSocket echo (text and binary)
//! - `GET {prefix}api/events?every_ms=N&count=K`: a server-sent event
//!   stream, one `data: <i>` event every N ms (default 1000, 10 ms to
//!   60 s), K of them (default 10, at most 10,000)
//! - anything else under the prefix: a small HTML page naming the owner
//! - `{prefix}` without its trailing `/`: 302 to `{prefix}`
//!
//! SIGTERM (or SIGINT) closes WebSockets with 1001 "going away", lets
//! in-flight requests finish and exits 0.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// Name reported in the `server` field of status answers.
pub const SERVER_NAME: &str = "quorumhub-singleuser";
/// Largest request body `api/echo` reads.
const ECHO_BODY_LIMIT: usize = 64 * 1024;
/// How long shutdown waits for requests and WebSockets to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Flags of `quorumhub singleuser`; each overrides its environment variable.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct SingleUserArgs {
    /// Port to listen on [default: the port of $JUPYTERHUB_SERVICE_URL, else 8888].
    #[arg(long)]
    pub port: Option<u16>,
    /// Address to listen on [default: the host of $JUPYTERHUB_SERVICE_URL, else 127.0.0.1].
    #[arg(long)]
    pub ip: Option<String>,
    /// URL prefix to serve under, e.g. /user/alice/ [default: $JUPYTERHUB_SERVICE_PREFIX, else /].
    #[arg(long)]
    pub prefix: Option<String>,
    /// Owner shown in answers [default: $JUPYTERHUB_USER].
    #[arg(long)]
    pub user: Option<String>,
}

/// What the server runs with, once flags and environment are combined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub ip: String,
    pub port: u16,
    /// Starts and ends with `/`.
    pub prefix: String,
    pub user: Option<String>,
}

/// Why the built-in server could not run.
#[derive(thiserror::Error, Debug)]
pub enum SingleUserError {
    #[error("JUPYTERHUB_SERVICE_URL={url:?} is unusable: {reason}; set it to http://IP:PORT/PREFIX/ or pass --ip and --port")]
    BadServiceUrl { url: String, reason: String },
    #[error("cannot listen on {addr}: {source}; pick another --port (or fix JUPYTERHUB_SERVICE_URL), or stop what holds it")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot install the SIGTERM handler: {0}")]
    Signal(std::io::Error),
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
}

impl SingleUserArgs {
    /// Combines flags with the environment as read by `env` (for
    /// [`run`], `std::env::var`).
    pub fn resolve(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, SingleUserError> {
        let (mut ip, mut port, mut url_prefix) = ("127.0.0.1".to_owned(), 8888, None);
        if let Some(url) = env("JUPYTERHUB_SERVICE_URL").filter(|u| !u.is_empty()) {
            let (h, p, path) = parse_service_url(&url)?;
            ip = h;
            port = p;
            url_prefix = Some(path);
        }
        let prefix = self
            .prefix
            .clone()
            .or_else(|| env("JUPYTERHUB_SERVICE_PREFIX").filter(|p| !p.is_empty()))
            .or(url_prefix)
            .unwrap_or_else(|| "/".to_owned());
        Ok(Settings {
            ip: self
                .ip
                .clone()
                .map(|i| i.trim_start_matches('[').trim_end_matches(']').to_owned())
                .unwrap_or(ip),
            port: self.port.unwrap_or(port),
            prefix: normalize_prefix(&prefix),
            user: self
                .user
                .clone()
                .or_else(|| env("JUPYTERHUB_USER"))
                .filter(|u| !u.is_empty()),
        })
    }
}

fn parse_service_url(url: &str) -> Result<(String, u16, String), SingleUserError> {
    let bad = |reason: &str| SingleUserError::BadServiceUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(_) => return Err(bad("only http:// is supported by the built-in server")),
        None => return Err(bad("the scheme is missing")),
    }
    let authority = uri.authority().ok_or_else(|| bad("the host is missing"))?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    if host.is_empty() {
        return Err(bad("the host is missing"));
    }
    Ok((
        host,
        authority.port_u16().unwrap_or(80),
        uri.path().to_owned(),
    ))
}

fn normalize_prefix(p: &str) -> String {
    let trimmed = p.trim_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        format!("/{trimmed}/")
    }
}

/// Runs the server with flags `args` and the process environment until
/// SIGTERM or SIGINT; returns `Ok` after a graceful shutdown.
pub async fn run(args: SingleUserArgs) -> Result<(), SingleUserError> {
    let settings = args.resolve(|k| std::env::var(k).ok())?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(SingleUserError::Signal)?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(SingleUserError::Signal)?;
    let listener = bind(&settings).await?;
    serve(listener, settings, async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
            _ = int.recv() => tracing::info!("SIGINT received; shutting down"),
        }
    })
    .await
}

/// Binds `settings.ip:settings.port`.
pub async fn bind(settings: &Settings) -> Result<TcpListener, SingleUserError> {
    TcpListener::bind((settings.ip.as_str(), settings.port))
        .await
        .map_err(|source| SingleUserError::Bind {
            addr: format!("{}:{}", crate::env::fmt_ip_url(&settings.ip), settings.port),
            source,
        })
}

struct App {
    settings: Settings,
    /// Becomes true when shutdown starts.
    stopping: watch::Receiver<bool>,
    /// Each WebSocket holds a clone; shutdown waits for all to drop.
    ws_alive: mpsc::Sender<()>,
}

/// Serves on `listener` until `shutdown` completes, then closes WebSockets
/// and waits (at most 5 s) for in-flight requests.
pub async fn serve(
    listener: TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), SingleUserError> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(?addr, prefix = %settings.prefix, user = ?settings.user, "built-in single-user server listening");
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ws_tx, mut ws_rx) = mpsc::channel::<()>(1);
    let app = Arc::new(App {
        settings,
        stopping: stop_rx.clone(),
        ws_alive: ws_tx,
    });
    let router = Router::new().fallback(handle).with_state(app);
    let mut graceful = stop_rx;
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        let _ = graceful.wait_for(|s| *s).await;
    });
    let mut server = Box::pin(server.into_future());
    tokio::select! {
        res = &mut server => return res.map_err(SingleUserError::Serve),
        () = shutdown => {}
    }
    let _ = stop_tx.send(true);
    match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
        Ok(res) => res.map_err(SingleUserError::Serve)?,
        Err(_) => tracing::warn!("requests still running after {SHUTDOWN_GRACE:?}; exiting anyway"),
    }
    drop(server);
    // The router (and so the App with its sender) is gone with the server;
    // what is left are the WebSocket tasks' clones.
    if tokio::time::timeout(SHUTDOWN_GRACE, ws_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!("WebSockets still open after {SHUTDOWN_GRACE:?}; exiting anyway");
    }
    tracing::info!("built-in single-user server stopped");
    Ok(())
}

async fn handle(State(app): State<Arc<App>>, req: Request) -> Response {
    let prefix = app.settings.prefix.as_str();
    let path = req.uri().path().to_owned();
    tracing::debug!(method = %req.method(), %path, "request");
    let Some(rest) = path.strip_prefix(prefix) else {
        if prefix != "/" && path == prefix.trim_end_matches('/') {
            let location = match req.uri().query() {
                Some(q) => format!("{prefix}?{q}"),
                None => prefix.to_owned(),
            };
            return redirect(&location);
        }
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"status": 404, "message": format!("not found: this server only serves under {prefix}")})),
        )
            .into_response();
    };
    match rest {
        "" | "api" | "api/" | "api/status" => {
            if req.method() != Method::GET && req.method() != Method::HEAD {
                return StatusCode::METHOD_NOT_ALLOWED.into_response();
            }
            Json(json!({
                "server": SERVER_NAME,
                "user": app.settings.user,
                "prefix": prefix,
                "pid": std::process::id(),
            }))
            .into_response()
        }
        "ws" => websocket(app, req).await,
        "api/events" => events(req.uri()),
        r if r == "api/echo" || r.starts_with("api/echo/") => echo(req).await,
        _ => page(&app.settings),
    }
}

/// A server-sent event stream: long-lived, with pauses between events.
fn events(uri: &Uri) -> Response {
    let mut every_ms: u64 = 1000;
    let mut count: u64 = 10;
    for pair in uri.query().unwrap_or("").split('&') {
        match pair.split_once('=') {
            Some(("every_ms", v)) => every_ms = v.parse().unwrap_or(every_ms),
            Some(("count", v)) => count = v.parse().unwrap_or(count),
            _ => {}
        }
    }
    let every = Duration::from_millis(every_ms.clamp(10, 60_000));
    let count = count.min(10_000);
    let stream = futures::stream::unfold(0u64, move |i| async move {
        if i >= count {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(every).await;
        }
        let frame = bytes::Bytes::from(format!("data: {i}\n\n"));
        Some((Ok::<_, std::convert::Infallible>(frame), i + 1))
    });
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

fn redirect(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => (StatusCode::FOUND, [(header::LOCATION, v)]).into_response(),
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

async fn echo(req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let mut headers = serde_json::Map::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match headers.get_mut(name.as_str()) {
            Some(serde_json::Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), value.into());
            }
        }
    }
    let body = match axum::body::to_bytes(body, ECHO_BODY_LIMIT).await {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(_) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("echo reads at most {ECHO_BODY_LIMIT} bytes of body\n"),
            )
                .into_response()
        }
    };
    Json(json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "uri": parts.uri.to_string(),
        "headers": headers,
        "body": body,
    }))
    .into_response()
}

fn page(settings: &Settings) -> Response {
    let owner = settings.user.as_deref().unwrap_or("(unknown user)");
    let body = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{SERVER_NAME}</title></head>\n<body><h1>{SERVER_NAME}</h1>\n<p>This server belongs to <b>{}</b> and serves under <code>{}</code>.</p></body></html>\n",
        html_escape(owner),
        html_escape(&settings.prefix),
    );
    Html(body).into_response()
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

async fn websocket(app: Arc<App>, req: Request) -> Response {
    let (mut parts, _body) = req.into_parts();
    let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let stopping = app.stopping.clone();
    let alive = app.ws_alive.clone();
    ws.on_upgrade(move |socket| async move {
        ws_echo(socket, stopping).await;
        drop(alive);
    })
}

async fn ws_echo(mut socket: WebSocket, mut stopping: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            msg = socket.recv() => {
                let reply = match msg {
                    Some(Ok(Message::Text(t))) => Message::Text(t),
                    Some(Ok(Message::Binary(b))) => Message::Binary(b),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | None => return,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "websocket error");
                        return;
                    }
                };
                if socket.send(reply).await.is_err() {
                    return;
                }
            }
            stopped = async { stopping.wait_for(|s| *s).await.is_ok() } => {
                if stopped {
                    let frame = CloseFrame { code: close_code::AWAY, reason: "server shutting down".into() };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                    // Give the client a moment to answer the close.
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        while let Some(Ok(m)) = socket.recv().await {
                            if matches!(m, Message::Close(_)) {
                                break;
                            }
                        }
                    })
                    .await;
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn defaults_without_environment() {
        let s = SingleUserArgs::default()
            .resolve(env_of(&[]))
            .expect("resolves");
        assert_eq!(
            s,
            Settings {
                ip: "127.0.0.1".into(),
                port: 8888,
                prefix: "/".into(),
                user: None
            }
        );
    }

    #[test]
    fn reads_jupyterhub_environment() {
        let env = env_of(&[
            ("JUPYTERHUB_SERVICE_URL", "http://[::1]:40123/user/alice/"),
            ("JUPYTERHUB_SERVICE_PREFIX", "/user/alice/"),
            ("JUPYTERHUB_USER", "alice"),
        ]);
        let s = SingleUserArgs::default().resolve(env).expect("resolves");
        assert_eq!(
            s,
            Settings {
                ip: "::1".into(),
                port: 40123,
                prefix: "/user/alice/".into(),
                user: Some("alice".into())
            }
        );
    }

    #[test]
    fn prefix_falls_back_to_service_url_path_and_flags_win() {
        let env = env_of(&[
            ("JUPYTERHUB_SERVICE_URL", "http://127.0.0.2:5000/user/bob"),
            ("JUPYTERHUB_USER", "bob"),
        ]);
        let s = SingleUserArgs::default().resolve(&env).expect("resolves");
        assert_eq!(
            (s.ip.as_str(), s.port, s.prefix.as_str()),
            ("127.0.0.2", 5000, "/user/bob/")
        );
        let args = SingleUserArgs {
            port: Some(1),
            ip: Some("0.0.0.0".into()),
            prefix: Some("x".into()),
            user: Some("z".into()),
        };
        let s = args.resolve(&env).expect("resolves");
        assert_eq!(
            s,
            Settings {
                ip: "0.0.0.0".into(),
                port: 1,
                prefix: "/x/".into(),
                user: Some("z".into())
            }
        );
    }

    #[test]
    fn bad_service_url_says_what_to_do() {
        let err = SingleUserArgs::default()
            .resolve(env_of(&[(
                "JUPYTERHUB_SERVICE_URL",
                "https://127.0.0.1:1/",
            )]))
            .expect_err("https is refused");
        assert!(err.to_string().contains("--port"), "{err}");
    }

    #[test]
    fn escapes_html() {
        assert_eq!(
            html_escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
