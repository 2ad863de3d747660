//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use quorumhub_spawner::{is_alive, ProcessSpec};

/// Upper bound for any single network step in the tests.
pub const STEP: Duration = Duration::from_secs(10);

pub fn sh(script: &str) -> ProcessSpec {
    ProcessSpec {
        cmd: vec!["sh".into(), "-c".into(), script.into()],
        ..ProcessSpec::default()
    }
}

/// SIGKILLs the process group on drop if the process is still alive, so a
/// failing test leaves nothing running.
pub struct KillOnDrop {
    pub pid: u32,
    pub start: u64,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if is_alive(self.pid, self.start) {
            if let Ok(pgid) = libc::pid_t::try_from(self.pid) {
                // SAFETY: plain kill(2) of a group we verified is ours.
                unsafe {
                    libc::kill(-pgid, libc::SIGKILL);
                }
            }
        }
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port`, bounded by [`STEP`].
pub async fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let fut = async {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", format!("127.0.0.1:{port}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("request");
        let resp = sender.send_request(req).await.expect("response");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    };
    tokio::time::timeout(STEP, fut)
        .await
        .expect("request timed out")
}

pub async fn get(port: u16, path: &str) -> Reply {
    request(port, "GET", path, &[], "").await
}

/// Polls `cond` every 20 ms for up to `limit`.
pub async fn eventually(limit: Duration, cond: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

/// Arguments that make this test binary run only the ignored test `name`.
pub fn self_args(name: &str) -> Vec<String> {
    [
        name,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

pub fn env_keys(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}
