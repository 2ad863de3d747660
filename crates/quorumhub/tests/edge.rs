//! The HTTP edge against hostile clients, with real sockets against real
//! proxy and hub processes: half-sent requests, stalled uploads, idle
//! floods, spoofed forwarded headers. Other clients must not notice, the
//! hostile connections must be closed, memory must stay bounded; WebSockets
//! and event streams, which are quiet but not idle, must keep working.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{auth, client, Cluster};
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The attacker's address: another loopback address than the clients'.
const ATTACKER: &str = "127.0.0.2";

async fn connect_from(source: &str, to: &str) -> TcpStream {
    let to: SocketAddr = to.parse().expect("addr");
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{source}:0").parse().expect("source"))
        .expect("bind");
    socket.connect(to).await.expect("connect")
}

/// Open `n` connections from the attacker that each send `head` (and
/// `body_bytes` of body) and then stall, holding them open.
async fn stall(n: usize, to: &str, head: &str, body_bytes: usize) -> Vec<TcpStream> {
    let mut out = Vec::with_capacity(n);
    let body = vec![b'x'; body_bytes];
    for _ in 0..n {
        let mut s = connect_from(ATTACKER, to).await;
        // A refused or closed socket may fail the write: that is fine.
        let _ = s.write_all(head.as_bytes()).await;
        if !body.is_empty() {
            let _ = s.write_all(&body).await;
        }
        out.push(s);
    }
    out
}

/// Wait until every stalled connection is closed by the other side (EOF or
/// reset); the time the last one took.
async fn all_closed(conns: Vec<TcpStream>, limit: Duration) -> Duration {
    let started = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => continue, // a 503/408/413 before the close
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let left = limit.saturating_sub(started.elapsed());
        assert!(
            tokio::time::timeout(left, t).await.is_ok(),
            "a stalled connection was still open after {limit:?}"
        );
    }
    started.elapsed()
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kb / 1024.0
}

/// Latencies of `n` normal requests from a well-behaved client.
async fn normal_requests(url: &str, n: usize) -> Vec<Duration> {
    let http = client();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = http.get(url).send().await.expect("normal request");
        assert_eq!(r.status(), StatusCode::OK, "normal request refused");
        let _ = r.bytes().await;
        out.push(t.elapsed());
    }
    out.sort();
    out
}

async fn start_server(c: &Cluster, user: &str) {
    let http = client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = http
            .post(c.proxy_url(&format!("/hub/api/users/{user}")))
            .header("Authorization", auth())
            .send()
            .await;
        if r.is_ok_and(|r| [StatusCode::CREATED, StatusCode::CONFLICT].contains(&r.status())) {
            break;
        }
        assert!(Instant::now() < deadline, "proxy never reached a hub");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    http.post(c.proxy_url(&format!("/hub/api/users/{user}/server")))
        .header("Authorization", auth())
        .send()
        .await
        .expect("start");
    loop {
        let v: Value = http
            .get(c.proxy_url(&format!("/hub/api/users/{user}")))
            .header("Authorization", auth())
            .send()
            .await
            .expect("get")
            .json()
            .await
            .unwrap_or_default();
        if v["servers"][""]["ready"] == true {
            // And the proxy has the route.
            let r = http
                .get(c.proxy_url(&format!("/user/{user}/api/status")))
                .send()
                .await;
            if r.is_ok_and(|r| r.status() == StatusCode::OK) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{user}'s server never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The acceptance: 300 half-sent requests and 25 stalled 16 MB
/// uploads (and 25 stalled chunked ones, which the proxy streams to a hub)
/// held open against the proxy, and 100 half-sent requests against a
/// hub's own HTTP port. Normal requests are answered fast meanwhile, every
/// stalled connection is closed within 30 s, and the proxy stays small.
/// Default limits: this is the configuration that ships.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_and_half_sent_requests_are_closed_and_do_not_slow_others() {
    let mut c = common::start(3, &[]).await;
    c.start_proxy_ready().await;
    start_server(&c, "alice").await;
    let proxy = c.proxy_addr.clone();
    let pid = c.proxy_pid().expect("proxy pid");
    let rss_before = rss_mib(pid);

    let opened = Instant::now();
    let mut held = stall(
        300,
        &proxy,
        "GET /hub/api/ HTTP/1.1\r\nHost: hub.example\r\nX-Half: ",
        0,
    )
    .await;
    held.extend(
        stall(
            25,
            &proxy,
            "POST /hub/api/users HTTP/1.1\r\nHost: hub.example\r\nContent-Type: application/json\r\n\
             Content-Length: 16777216\r\n\r\n",
            64 * 1024,
        )
        .await,
    );
    held.extend(
        stall(
            25,
            &proxy,
            "POST /hub/api/users HTTP/1.1\r\nHost: hub.example\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\n\r\n10000\r\n",
            64 * 1024,
        )
        .await,
    );
    // Uploads to a user's server are streamed too, and stall the same way.
    held.extend(
        stall(
            25,
            &proxy,
            "POST /user/alice/api/echo HTTP/1.1\r\nHost: hub.example\r\nContent-Length: 16777216\r\n\r\n",
            64 * 1024,
        )
        .await,
    );
    let hub_http = c.node(1).http.clone();
    let held_on_hub = stall(
        100,
        &hub_http,
        "GET /hub/api/ HTTP/1.1\r\nHost: hub.example\r\nX-Half: ",
        0,
    )
    .await;
    let setup = opened.elapsed();

    // Meanwhile: the hub API and a user's server, through the proxy, and a
    // hub's own port, answer a well-behaved client at once.
    let api = normal_requests(&c.proxy_url("/hub/api/"), 20).await;
    let server = normal_requests(&c.proxy_url("/user/alice/api/status"), 20).await;
    let direct = normal_requests(&c.url(1, "/hub/api/"), 20).await;
    let rss_during = rss_mib(pid);
    eprintln!(
        "setup {setup:?}; median/max: api {:?}/{:?}, server {:?}/{:?}, hub port {:?}/{:?}; \
         proxy RSS {rss_before:.1} -> {rss_during:.1} MiB",
        api[10], api[19], server[10], server[19], direct[10], direct[19]
    );
    for (what, lat) in [
        ("hub API", &api),
        ("user server", &server),
        ("hub port", &direct),
    ] {
        assert!(
            lat[10] < Duration::from_millis(100),
            "{what}: median {:?} with hostile connections held",
            lat[10]
        );
        assert!(
            lat[19] < Duration::from_secs(1),
            "{what}: slowest {:?} with hostile connections held",
            lat[19]
        );
    }
    assert!(
        rss_during < 150.0,
        "proxy RSS {rss_during:.1} MiB with stalled uploads held"
    );

    // Every stalled connection is closed by the server within 30 s of being
    // opened (the header and body timeouts are 20 s by default).
    let limit = Duration::from_secs(30).saturating_sub(opened.elapsed());
    let took = all_closed(held, limit).await;
    let took_hub = all_closed(held_on_hub, Duration::from_secs(5)).await;
    eprintln!("all stalled connections closed {took:?} (hub port {took_hub:?}) after the check");
    // And the proxy still serves.
    let after = normal_requests(&c.proxy_url("/hub/api/"), 5).await;
    assert!(after[4] < Duration::from_secs(1));
    assert!(rss_mib(pid) < 150.0);
}

/// A flood of idle connections from one address meets the per-client
/// connection cap: the excess get a 503 and are closed at once, and other
/// clients are served. The global cap refuses the same way instead of
/// running out of file descriptors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_caps_refuse_the_excess_and_spare_other_clients() {
    let mut c = common::start(1, &[]).await;
    c.start_proxy_ready_with(&[
        "--max-connections-per-client",
        "50",
        "--max-connections",
        "120",
    ])
    .await;
    let proxy = c.proxy_addr.clone();
    let idle = stall(100, &proxy, "", 0).await;
    // The first 50 are held; the other 50 were answered 503 and closed.
    let mut refused = 0;
    let mut open = Vec::new();
    for mut s in idle {
        let mut buf = vec![0u8; 512];
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                let head = String::from_utf8_lossy(&buf[..n]);
                assert!(head.starts_with("HTTP/1.1 503"), "{head}");
                assert!(head.contains("--max-connections-per-client"), "{head}");
                refused += 1;
            }
            Ok(_) => refused += 1,
            Err(_) => open.push(s),
        }
    }
    assert_eq!(refused, 50, "per-client cap of 50");
    assert_eq!(open.len(), 50);
    // Another client is served meanwhile.
    let lat = normal_requests(&c.proxy_url("/_proxy/health"), 5).await;
    assert!(lat[4] < Duration::from_secs(1));
    // Other addresses fill the global cap (120, the 50 held included).
    let mut others = Vec::new();
    for i in 3..=8 {
        for _ in 0..20 {
            others.push(connect_from(&format!("127.0.0.{i}"), &proxy).await);
        }
    }
    let mut over_global = 0;
    for mut s in others {
        let mut buf = vec![0u8; 512];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await
        {
            if n > 0 {
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                assert!(head.contains("--max-connections)"), "{head}");
                over_global += 1;
            }
        }
    }
    // 120 slots: 50 held + 1 pooled client connection, maybe, + 70 of these.
    assert!(
        (49..=50).contains(&over_global),
        "{over_global} refused over the global cap"
    );
    drop(open);
    // Slots come back when connections close.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lat = normal_requests(&c.proxy_url("/_proxy/health"), 3).await;
    assert!(lat[2] < Duration::from_secs(1));
}

/// Quiet is not idle: with 1 s header and body timeouts, a WebSocket left
/// silent for 3 s still echoes, and an event stream whose events come every
/// 1.5 s runs to its end; an idle keep-alive connection and a half-sent
/// request, meanwhile, are closed after about 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_and_event_streams_outlive_the_idle_timeouts() {
    let mut c = common::start(1, &[]).await;
    c.start_proxy_ready_with(&["--header-timeout-ms", "1000", "--body-timeout-ms", "1000"])
        .await;
    start_server(&c, "alice").await;
    let proxy = c.proxy_addr.clone();

    let ws_url = format!("ws://{proxy}/user/alice/ws");
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url)
        .await
        .expect("ws connect");
    let events = tokio::spawn({
        let url = c.proxy_url("/user/alice/api/events?every_ms=1500&count=4");
        async move {
            let r = client().get(url).send().await.expect("events");
            assert_eq!(r.status(), StatusCode::OK);
            let t = Instant::now();
            let body = r.text().await.expect("event stream ended early");
            (body, t.elapsed())
        }
    });
    let half = stall(1, &proxy, "GET / HTTP/1.1\r\nHost: x\r\n", 0).await;
    let mut keepalive = connect_from("127.0.0.1", &proxy).await;
    keepalive
        .write_all(b"GET /_proxy/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 4096];
    let n = keepalive.read(&mut buf).await.expect("response");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    let closed = all_closed(half, Duration::from_secs(3)).await;
    let t = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(3), keepalive.read(&mut buf))
        .await
        .expect("an idle keep-alive connection must be closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "idle connection got data instead of a close");
    eprintln!(
        "half-sent closed after {closed:?}; idle keep-alive {:?} later",
        t.elapsed()
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        "still-here".into(),
    ))
    .await
    .expect("send after a quiet spell");
    let reply = ws.next().await.expect("reply").expect("ok");
    assert_eq!(reply.into_text().expect("text").as_str(), "still-here");

    let (body, took) = events.await.expect("events task");
    assert_eq!(body, "data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\n");
    assert!(took >= Duration::from_millis(4000), "{took:?}");
}

/// Forwarded headers from an untrusted client are replaced, not believed:
/// the user's server sees the proxy's view of the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_forwarded_headers_do_not_reach_servers() {
    let mut c = common::start(1, &[]).await;
    c.start_proxy_ready().await;
    start_server(&c, "alice").await;
    let v: Value = client()
        .get(c.proxy_url("/user/alice/api/echo"))
        .header("X-Forwarded-For", "6.6.6.6")
        .header("X-Forwarded-Host", "evil.example")
        .header("X-Forwarded-Proto", "https")
        .header("X-Real-IP", "6.6.6.6")
        .header("Forwarded", "for=6.6.6.6")
        .send()
        .await
        .expect("echo")
        .json()
        .await
        .expect("json");
    let h = &v["headers"];
    assert_eq!(h["x-forwarded-for"], "127.0.0.1", "{h}");
    assert_eq!(h["x-real-ip"], "127.0.0.1", "{h}");
    assert_eq!(h["x-forwarded-proto"], "http", "{h}");
    assert_eq!(h["x-forwarded-host"], c.proxy_addr.as_str(), "{h}");
    assert!(h.get("forwarded").is_none(), "{h}");
}

/// A TLS client that trusts `ca_pem` and offers `alpn`.
fn tls_client(ca_pem: &str, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("pem")).expect("root");
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

fn self_signed(dir: &std::path::Path, tag: &str) -> String {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("cert");
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).expect("write cert");
    std::fs::write(dir.join("key.pem"), cert.key_pair.serialize_pem()).expect("write key");
    eprintln!("certificate {tag} written");
    cert.cert.pem()
}

async fn tls_connect(
    proxy: &str,
    ca: &str,
    alpn: &[&[u8]],
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, std::io::Error> {
    let tcp = TcpStream::connect(proxy).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    tls_client(ca, alpn).connect(name, tcp).await
}

async fn http1_get(s: &mut tokio_rustls::client::TlsStream<TcpStream>, path: &str) -> String {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut buf = vec![0u8; 8192];
    let n = s.read(&mut buf).await.expect("read");
    String::from_utf8_lossy(&buf[..n]).to_string()
}

/// HTTPS at the proxy: HTTP/2 and HTTP/1.1 by ALPN, the plain port
/// redirecting; SIGHUP swaps the
/// certificate for new handshakes while an open connection keeps working,
/// and a bad file on reload keeps the old pair.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_alpn_redirect_and_reload_on_sighup() {
    let dir = tempfile::tempdir().expect("dir");
    let first = self_signed(dir.path(), "1");
    let mut c = common::start(1, &[]).await;
    let plain = format!("127.0.0.1:{}", quorumhub_testkit::free_port());
    let cert = dir.path().join("cert.pem").display().to_string();
    let key = dir.path().join("key.pem").display().to_string();
    c.start_proxy_with(&[
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-redirect-from",
        &plain,
    ]);
    let proxy = c.proxy_addr.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut old = loop {
        if let Ok(s) = tls_connect(&proxy, &first, &[b"http/1.1"]).await {
            break s;
        }
        assert!(Instant::now() < deadline, "the TLS proxy never came up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(old.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let resp = http1_get(&mut old, "/_proxy/health").await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let h2 = tls_connect(&proxy, &first, &[b"h2", b"http/1.1"])
        .await
        .expect("h2 handshake");
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(h2),
    )
    .await
    .expect("h2");
    tokio::spawn(conn);
    let req = http::Request::get("https://localhost/_proxy/health")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("req");
    let resp = send.send_request(req).await.expect("h2 request");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);

    // The plain port redirects, keeping the path.
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(format!("http://{plain}/hub/login?next=%2F"))
        .header("Host", "localhost:80")
        .send()
        .await
        .expect("plain");
    assert_eq!(r.status(), 308);
    let port = proxy.rsplit(':').next().expect("port");
    assert_eq!(
        r.headers()["location"],
        format!("https://localhost:{port}/hub/login?next=%2F").as_str()
    );

    // Rotate: new files, SIGHUP. New handshakes trust only the new one.
    let second = self_signed(dir.path(), "2");
    let pid = c.proxy_pid().expect("pid") as i32;
    unsafe { libc::kill(pid, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if tls_connect(&proxy, &second, &[b"http/1.1"]).await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        tls_connect(&proxy, &first, &[b"http/1.1"]).await.is_err(),
        "the old certificate is still served after SIGHUP"
    );
    // The connection opened before the reload still works.
    let resp = http1_get(&mut old, "/_proxy/health").await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    // A bad file on reload keeps the current pair.
    std::fs::write(dir.path().join("key.pem"), "not a key").expect("write");
    unsafe { libc::kill(pid, libc::SIGHUP) };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut s = tls_connect(&proxy, &second, &[b"http/1.1"])
        .await
        .expect("still serving the second certificate");
    let resp = http1_get(&mut s, "/_proxy/health").await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}
