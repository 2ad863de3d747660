//! Waiting until a freshly started server answers HTTP.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::SpawnError;

/// Pause between two attempts.
const INTERVAL: Duration = Duration::from_millis(75);
/// Longest a single attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// Polls `GET url` every 75 ms until the server answers with any status below
/// 500 (as JupyterHub's `wait_for_http_server` does: even a 404 or a redirect
/// means it is up; a 5xx means "not yet"). Fails at once when `alive()`
/// returns false (the process died), and after `timeout` otherwise.
///
/// Only `http://` URLs are supported (quorumhub does not do internal TLS).
pub async fn wait_http_ready(
    url: &str,
    timeout: Duration,
    alive: impl Fn() -> bool,
) -> Result<(), SpawnError> {
    let target = Target::parse(url)?;
    let deadline = Instant::now() + timeout;
    let mut last = "no attempt made".to_owned();
    loop {
        if !alive() {
            return Err(SpawnError::Died {
                url: url.to_owned(),
            });
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(SpawnError::NotReady {
                url: url.to_owned(),
                timeout,
                last,
            });
        }
        let budget = ATTEMPT_TIMEOUT.min(deadline - now);
        match tokio::time::timeout(budget, target.get()).await {
            Ok(Ok(status)) if status < 500 => {
                tracing::debug!(url, status, "server is up");
                return Ok(());
            }
            Ok(Ok(status)) => last = format!("HTTP {status}"),
            Ok(Err(e)) => last = e,
            Err(_) => last = format!("no answer within {budget:?}"),
        }
        if !alive() {
            return Err(SpawnError::Died {
                url: url.to_owned(),
            });
        }
        tokio::time::sleep(INTERVAL.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

struct Target {
    host: String,
    port: u16,
    authority: String,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Self, SpawnError> {
        let bad = |reason: &str| SpawnError::BadUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = url.parse().map_err(|_| bad("not a valid URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(_) => return Err(bad("only http:// is supported")),
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
        let port = authority.port_u16().unwrap_or(80);
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        Ok(Self {
            host,
            port,
            authority: authority.as_str().to_owned(),
            path,
        })
    }

    /// One `GET`: the status code, or why there is none.
    async fn get(&self) -> Result<u16, String> {
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let conn = tokio::spawn(conn);
        let req = Request::get(self.path.as_str())
            .header(hyper::header::HOST, self.authority.as_str())
            .header(hyper::header::USER_AGENT, "quorumhub-spawner")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("request: {e}"))?;
        let result = sender.send_request(req).await;
        conn.abort();
        result
            .map(|r| r.status().as_u16())
            .map_err(|e| format!("request: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        let t = Target::parse("http://127.0.0.1:4000/user/a/?x=1").expect("valid");
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 4000, "/user/a/?x=1")
        );
        let t = Target::parse("http://[::1]:5/").expect("valid");
        assert_eq!((t.host.as_str(), t.authority.as_str()), ("::1", "[::1]:5"));
        assert!(matches!(
            Target::parse("https://x/"),
            Err(SpawnError::BadUrl { .. })
        ));
        assert!(matches!(
            Target::parse("/only/a/path"),
            Err(SpawnError::BadUrl { .. })
        ));
    }
}
