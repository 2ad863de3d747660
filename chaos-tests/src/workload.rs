//! The workload: API clients whose every operation is recorded for the
//! checker, and long-lived sessions to running servers through the load
//! balancer whose every failure is recorded.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use rand::Rng;
use serde_json::Value;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::checker::{Outcome, Phase, ServerOp, ServerResult, UserOp, UserResult};

/// One recorded API operation.
#[derive(Clone, Debug)]
pub enum Recorded {
    User(UserOp, Outcome<UserResult>),
    Server(ServerOp, Outcome<ServerResult>),
}

#[derive(Clone, Debug)]
pub struct Record {
    pub client: usize,
    pub key: String,
    pub op: Recorded,
    /// Microseconds since the run started.
    pub call: u64,
    pub ret: u64,
    /// Where it was sent (`lb` or a hub service), and the HTTP status or
    /// error, for the report.
    pub via: String,
    pub detail: String,
}

impl Record {
    pub fn is_write(&self) -> bool {
        !matches!(
            self.op,
            Recorded::User(UserOp::Read, _) | Recorded::Server(ServerOp::Read, _)
        )
    }
    pub fn definite(&self) -> bool {
        !matches!(
            self.op,
            Recorded::User(_, Outcome::Unknown) | Recorded::Server(_, Outcome::Unknown)
        )
    }
}

/// A request to a running server that failed.
#[derive(Clone, Debug)]
pub struct SessionFailure {
    pub at: u64,
    /// `http` or `ws`.
    pub kind: &'static str,
    pub error: String,
    /// HTTP: the idempotent request retried at once succeeded. WebSocket:
    /// a new session opened at once.
    pub recovered_by_retry: bool,
}

#[derive(Default)]
pub struct Log {
    pub records: Mutex<Vec<Record>>,
    pub failures: Mutex<Vec<SessionFailure>>,
    pub session_requests: std::sync::atomic::AtomicU64,
}

/// The clock every record uses.
#[derive(Clone, Copy)]
pub struct Clock(pub Instant);

impl Clock {
    pub fn now(&self) -> u64 {
        self.0.elapsed().as_micros() as u64
    }
}

/// Where API clients send requests: the load balancer or one replica.
#[derive(Clone, Debug)]
pub struct Targets {
    pub lb: String,
    /// `(hub service, http://ip:8081)` for replicas that have an address.
    pub hubs: Arc<Mutex<Vec<(String, String)>>>,
}

impl Targets {
    fn pick(&self, client: usize, rng: &mut impl Rng) -> (String, String) {
        // Even clients go through the LB; odd ones to a random replica.
        if client.is_multiple_of(2) {
            return ("lb".into(), self.lb.clone());
        }
        let hubs = self.hubs.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if hubs.is_empty() {
            return ("lb".into(), self.lb.clone());
        }
        hubs[rng.gen_range(0..hubs.len())].clone()
    }
}

pub struct Api {
    pub http: reqwest::Client,
    pub token: String,
    /// The timeout of a server's start or stop, which the hub may hold for
    /// up to its `--slow-spawn-timeout-s` (10 s by default) before it
    /// answers 202: the client's own timeout must not be shorter.
    slow_timeout: Duration,
}

/// What a server's start or stop may wait in the hub (its default
/// `--slow-spawn-timeout-s`), and some slack for a leader change meanwhile.
const SLOW_OP_TIMEOUT: Duration = Duration::from_secs(15);

impl Api {
    pub fn new(token: &str, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .pool_idle_timeout(Duration::from_secs(30))
                .build()?,
            token: token.to_string(),
            slow_timeout: timeout.max(SLOW_OP_TIMEOUT),
        })
    }

    async fn send(&self, method: reqwest::Method, url: String) -> Result<(u16, Value), String> {
        self.send_within(method, url, None).await
    }

    /// `send` with a timeout of its own in place of the client's.
    async fn send_within(
        &self,
        method: reqwest::Method,
        url: String,
        timeout: Option<Duration>,
    ) -> Result<(u16, Value), String> {
        let mut request = self
            .http
            .request(method, url)
            .header("Authorization", format!("token {}", self.token));
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        let resp = request.send().await.map_err(|e| describe(&e))?;
        let status = resp.status().as_u16();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// Performs one operation and classifies the answer.
    pub async fn user_op(
        &self,
        base: &str,
        key: &str,
        op: &UserOp,
    ) -> (Outcome<UserResult>, String) {
        let url = format!("{base}/hub/api/users/{key}");
        let (method, yes, no) = match op {
            UserOp::Create => (reqwest::Method::POST, 201, 409),
            UserOp::Delete => (reqwest::Method::DELETE, 204, 404),
            UserOp::Read => (reqwest::Method::GET, 200, 404),
        };
        match self.send(method, url).await {
            Ok((s, _)) if s == yes => (Outcome::Ok(UserResult::Yes), s.to_string()),
            Ok((s, _)) if s == no => (Outcome::Ok(UserResult::No), s.to_string()),
            Ok((s, body)) => (Outcome::Unknown, format!("{s} {body}")),
            Err(e) => (Outcome::Unknown, e),
        }
    }

    pub async fn server_op(
        &self,
        base: &str,
        key: &str,
        op: &ServerOp,
    ) -> (Outcome<ServerResult>, String) {
        let answer = match op {
            ServerOp::Start => self
                .send_within(
                    reqwest::Method::POST,
                    format!("{base}/hub/api/users/{key}/server"),
                    Some(self.slow_timeout),
                )
                .await
                .map(|(s, b)| match s {
                    201 | 202 => (Outcome::Ok(ServerResult::Accepted), s.to_string()),
                    400 => (Outcome::Ok(ServerResult::Refused), s.to_string()),
                    _ => (Outcome::Unknown, format!("{s} {b}")),
                }),
            ServerOp::Stop => self
                .send_within(
                    reqwest::Method::DELETE,
                    format!("{base}/hub/api/users/{key}/server"),
                    Some(self.slow_timeout),
                )
                .await
                .map(|(s, b)| match s {
                    202 => (Outcome::Ok(ServerResult::Accepted), s.to_string()),
                    204 => (Outcome::Ok(ServerResult::Stopped), s.to_string()),
                    400 => (Outcome::Ok(ServerResult::Refused), s.to_string()),
                    _ => (Outcome::Unknown, format!("{s} {b}")),
                }),
            ServerOp::Read => self
                .send(reqwest::Method::GET, format!("{base}/hub/api/users/{key}"))
                .await
                .map(|(s, b)| match (s, phase_of(&b)) {
                    (200, Some(p)) => (Outcome::Ok(ServerResult::Seen(p)), s.to_string()),
                    _ => (Outcome::Unknown, format!("{s} {b}")),
                }),
        };
        answer.unwrap_or_else(|e| (Outcome::Unknown, e))
    }
}

/// A failed request in words: reqwest's own text ("error sending request
/// for url ...") says neither that it timed out nor what broke, so the
/// causes follow it.
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if e.is_timeout() {
        text.push_str(" (timed out)");
    }
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// The default server's phase in a JupyterHub user model.
pub fn phase_of(user: &Value) -> Option<Phase> {
    let pending = user.get("pending")?;
    Some(match pending.as_str() {
        Some("spawn") => Phase::Starting,
        Some("stop") => Phase::Stopping,
        Some(_) => return None,
        None if user.get("server").is_some_and(|s| !s.is_null()) => Phase::On,
        None => Phase::Off,
    })
}

pub struct Keys {
    /// Users that are created and deleted.
    pub users: Vec<String>,
    /// Users whose server is started and stopped (never deleted).
    pub servers: Vec<String>,
}

/// One API client: random operations until `stop`.
pub async fn api_client(
    client: usize,
    api: Arc<Api>,
    targets: Targets,
    keys: Arc<Keys>,
    log: Arc<Log>,
    clock: Clock,
    mut stop: watch::Receiver<bool>,
) {
    let mut rng = rand::rngs::StdRng::from_entropy();
    while !*stop.borrow() {
        let (via, base) = targets.pick(client, &mut rng);
        let server_turn = rng.gen_ratio(1, 5) && !keys.servers.is_empty();
        let call = clock.now();
        let (key, op, detail) = if server_turn {
            let key = keys.servers[rng.gen_range(0..keys.servers.len())].clone();
            let op = match rng.gen_range(0..4) {
                0 => ServerOp::Start,
                1 => ServerOp::Stop,
                _ => ServerOp::Read,
            };
            let (out, detail) = api.server_op(&base, &key, &op).await;
            (key, Recorded::Server(op, out), detail)
        } else {
            let key = keys.users[rng.gen_range(0..keys.users.len())].clone();
            let op = match rng.gen_range(0..3) {
                0 => UserOp::Create,
                1 => UserOp::Delete,
                _ => UserOp::Read,
            };
            let (out, detail) = api.user_op(&base, &key, &op).await;
            (key, Recorded::User(op, out), detail)
        };
        let ret = clock.now();
        log.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Record {
                client,
                key,
                op,
                call,
                ret,
                via,
                detail,
            });
        let pause = Duration::from_millis(rng.gen_range(5..30));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => {}
        }
    }
}

use rand::SeedableRng;

/// Keep-alive HTTP requests to a running server through the LB, every
/// `every`; a failure is retried once at once.
pub async fn http_session(
    url: String,
    every: Duration,
    log: Arc<Log>,
    clock: Clock,
    mut stop: watch::Receiver<bool>,
) {
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
    {
        Ok(h) => h,
        Err(_) => return,
    };
    let get = |http: &reqwest::Client| {
        let req = http.get(&url);
        async move {
            match req.send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("HTTP {}", r.status())),
                Err(e) => Err(e.to_string()),
            }
        }
    };
    while !*stop.borrow() {
        log.session_requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Err(error) = get(&http).await {
            let at = clock.now();
            let recovered_by_retry = get(&http).await.is_ok();
            log.failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(SessionFailure {
                    at,
                    kind: "http",
                    error,
                    recovered_by_retry,
                });
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => {}
        }
    }
}

/// A WebSocket to a running server through the LB: a message every
/// `every`, each echo awaited; a broken socket is recorded and reopened.
pub async fn ws_session(
    url: String,
    every: Duration,
    log: Arc<Log>,
    clock: Clock,
    mut stop: watch::Receiver<bool>,
) {
    let mut n = 0u64;
    let connect = || async {
        match tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(url.as_str()),
        )
        .await
        {
            Ok(Ok((ws, _))) => Ok(ws),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("connect timed out".to_string()),
        }
    };
    // Set when a session broke and the client (as JupyterLab does for its
    // kernels) reconnected at once.
    let mut reconnected = None;
    'outer: while !*stop.borrow() {
        let mut ws = match reconnected.take() {
            Some(ws) => ws,
            None => match connect().await {
                Ok(ws) => ws,
                Err(error) => {
                    record_ws(&log, &clock, error, false);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        loop {
            if *stop.borrow() {
                let _ = ws.close(None).await;
                break 'outer;
            }
            n += 1;
            let text = format!("ping {n}");
            log.session_requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let sent = ws.send(Message::text(text.clone())).await;
            let echoed = match sent {
                Err(e) => Err(e.to_string()),
                Ok(()) => loop {
                    match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
                        Ok(Some(Ok(Message::Text(t)))) if t.as_str() == text => break Ok(()),
                        Ok(Some(Ok(Message::Text(_)))) => {
                            break Err("echo did not match".to_string())
                        }
                        Ok(Some(Ok(Message::Close(c)))) => {
                            break Err(format!("closed by the server side: {c:?}"))
                        }
                        Ok(Some(Ok(_))) => continue,
                        Ok(Some(Err(e))) => break Err(e.to_string()),
                        Ok(None) => break Err("stream ended".to_string()),
                        Err(_) => break Err("no echo within 5 s".to_string()),
                    }
                },
            };
            if let Err(error) = echoed {
                let at = clock.now();
                reconnected = connect().await.ok();
                record_ws_at(&log, at, error, reconnected.is_some());
                continue 'outer;
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

fn record_ws(log: &Log, clock: &Clock, error: String, recovered: bool) {
    record_ws_at(log, clock.now(), error, recovered)
}

/// A broken WebSocket session; `recovered`: a new session was opened at once.
fn record_ws_at(log: &Log, at: u64, error: String, recovered: bool) {
    log.failures
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(SessionFailure {
            at,
            kind: "ws",
            error,
            recovered_by_retry: recovered,
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A hub that answers every request after `delay`, with `status`.
    async fn slow_hub(delay: Duration, status: u16) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf).await;
                    tokio::time::sleep(delay).await;
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = conn.write_all(answer.as_bytes()).await;
                });
            }
        });
        format!("http://{addr}")
    }

    // The hub may hold a stop for its --slow-spawn-timeout-s before it
    // answers; the client must wait for that answer rather than call the
    // stop failed (which failed a rolling upgrade's "no request through the
    // load balancer fails" once). Other calls keep the client's timeout.
    #[tokio::test]
    async fn a_start_or_stop_outwaits_the_client_timeout_and_other_calls_do_not() {
        let api = Api::new("t", Duration::from_millis(200)).unwrap();
        let base = slow_hub(Duration::from_millis(800), 204).await;
        let (out, detail) = api.server_op(&base, "u", &ServerOp::Stop).await;
        assert_eq!(
            (out, detail.as_str()),
            (Outcome::Ok(ServerResult::Stopped), "204")
        );
        let (out, detail) = api.user_op(&base, "u", &UserOp::Read).await;
        assert_eq!(out, Outcome::Unknown);
        assert!(detail.contains("(timed out)"), "{detail}");
    }
}
