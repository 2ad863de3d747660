//! The built-in single-user server (in-process and as a real child process)
//! and `wait_http_ready`.

mod common;

use std::time::{Duration, Instant};

use common::{get, request, self_args, sh, KillOnDrop, STEP};
use futures::{SinkExt, StreamExt};
use quorumhub_spawner::singleuser::{self, Settings, SingleUserArgs};
use quorumhub_spawner::{
    is_alive, jupyterhub_env, pick_free_port, spawn_process, stop_process, wait_http_ready,
    ProcessSpec, ServerEnv, SpawnError,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

struct Running {
    port: u16,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), singleuser::SingleUserError>>,
}

async fn start(prefix: &str, user: Option<&str>) -> Running {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let settings = Settings {
        ip: "127.0.0.1".into(),
        port,
        prefix: prefix.into(),
        user: user.map(str::to_owned),
    };
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(singleuser::serve(listener, settings, async move {
        let _ = rx.await;
    }));
    Running {
        port,
        stop: Some(tx),
        task,
    }
}

impl Running {
    async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let res = tokio::time::timeout(STEP, &mut self.task)
            .await
            .expect("server did not stop in time");
        res.expect("server task panicked")
            .expect("server returned an error");
    }
}

#[tokio::test]
async fn status_endpoints_answer_under_the_prefix_only() {
    let srv = start("/user/alice/", Some("alice")).await;
    for path in ["/user/alice/", "/user/alice/api", "/user/alice/api/status"] {
        let r = get(srv.port, path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let v = r.json();
        assert_eq!(v["server"], "quorumhub-singleuser", "{path}");
        assert_eq!(v["user"], "alice");
        assert_eq!(v["prefix"], "/user/alice/");
        assert_eq!(v["pid"], std::process::id());
    }
    for path in [
        "/",
        "/user/bob/",
        "/user/alicex/api",
        "/hub/api",
        "/ws",
        "/api/status",
    ] {
        assert_eq!(
            get(srv.port, path).await.status,
            404,
            "{path} is outside the prefix"
        );
    }
    let r = get(srv.port, "/user/alice?a=1").await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.headers.get("location").and_then(|v| v.to_str().ok()),
        Some("/user/alice/?a=1")
    );

    let r = get(srv.port, "/user/alice/tree/notebooks/x.ipynb").await;
    assert_eq!(r.status, 200);
    let ct = r
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(ct.starts_with("text/html"), "{ct}");
    assert!(r.body.contains("<b>alice</b>"), "{}", r.body);
    srv.shutdown().await;
}

#[tokio::test]
async fn echo_keeps_method_path_query_headers_and_body() {
    let srv = start("/user/alice/", Some("alice")).await;
    let r = request(
        srv.port,
        "GET",
        "/user/alice/api/echo?x=1&y=a%20b",
        &[("x-test", "yes")],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/user/alice/api/echo");
    assert_eq!(v["query"], "x=1&y=a%20b");
    assert_eq!(v["headers"]["x-test"], "yes");
    assert_eq!(v["headers"]["host"], format!("127.0.0.1:{}", srv.port));

    let r = request(
        srv.port,
        "POST",
        "/user/alice/api/echo/deep/path%2Fx",
        &[],
        "hello body",
    )
    .await;
    let v = r.json();
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/user/alice/api/echo/deep/path%2Fx");
    assert_eq!(v["query"], serde_json::Value::Null);
    assert_eq!(v["body"], "hello body");
    srv.shutdown().await;
}

#[tokio::test]
async fn root_prefix_serves_everything() {
    let srv = start("/", None).await;
    let v = get(srv.port, "/api/status").await.json();
    assert_eq!(v["prefix"], "/");
    assert_eq!(v["user"], serde_json::Value::Null);
    assert_eq!(get(srv.port, "/anything").await.status, 200);
    srv.shutdown().await;
}

#[tokio::test]
async fn websocket_echoes_and_is_closed_on_shutdown() {
    let srv = start("/user/alice/", Some("alice")).await;
    let url = format!("ws://127.0.0.1:{}/user/alice/ws", srv.port);
    let (mut ws, resp) = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect timeout")
        .expect("ws");
    assert_eq!(resp.status().as_u16(), 101);

    ws.send(Message::text("hello")).await.expect("send text");
    let m = tokio::time::timeout(STEP, ws.next())
        .await
        .expect("timeout")
        .expect("open")
        .expect("frame");
    assert_eq!(m, Message::text("hello"));
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .expect("send binary");
    let m = tokio::time::timeout(STEP, ws.next())
        .await
        .expect("timeout")
        .expect("open")
        .expect("frame");
    assert_eq!(m, Message::binary(vec![0u8, 1, 2, 255]));

    let mut srv = srv;
    if let Some(tx) = srv.stop.take() {
        let _ = tx.send(());
    }
    let m = tokio::time::timeout(STEP, ws.next())
        .await
        .expect("no close frame")
        .expect("open")
        .expect("frame");
    match m {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected a close frame, got {other:?}"),
    }
    drop(ws);
    srv.shutdown().await;
}

#[tokio::test]
async fn wait_http_ready_succeeds_once_the_server_listens() {
    let port = pick_free_port().expect("port");
    let url = format!("http://127.0.0.1:{port}/user/late/");
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let settings = Settings {
            ip: "127.0.0.1".into(),
            port,
            prefix: "/user/late/".into(),
            user: None,
        };
        let listener = singleuser::bind(&settings).await.expect("bind late");
        singleuser::serve(listener, settings, async move {
            let _ = rx.await;
        })
        .await
    });
    let t = Instant::now();
    wait_http_ready(&url, Duration::from_secs(10), || true)
        .await
        .expect("ready");
    assert!(
        t.elapsed() >= Duration::from_millis(350),
        "answered before the server existed?"
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    let _ = tx.send(());
    tokio::time::timeout(STEP, server)
        .await
        .expect("stop")
        .expect("join")
        .expect("serve");
}

#[tokio::test]
async fn wait_http_ready_fails_fast_when_the_process_died() {
    let s = spawn_process(&sh("exit 3")).expect("spawn");
    let port = pick_free_port().expect("port");
    let url = format!("http://127.0.0.1:{port}/");
    let t = Instant::now();
    let err = wait_http_ready(&url, Duration::from_secs(30), || {
        is_alive(s.pid, s.proc_start)
    })
    .await
    .expect_err("nothing listens and the process is gone");
    assert!(matches!(err, SpawnError::Died { .. }), "{err:?}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    assert!(err.to_string().contains("log"), "{err}");
}

#[tokio::test]
async fn wait_http_ready_times_out_and_treats_5xx_as_not_ready() {
    let port = pick_free_port().expect("port");
    let err = wait_http_ready(
        &format!("http://127.0.0.1:{port}/"),
        Duration::from_millis(300),
        || true,
    )
    .await
    .expect_err("nothing listens");
    assert!(matches!(err, SpawnError::NotReady { .. }), "{err:?}");

    // A server that answers 503 is not ready yet.
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let app = axum::Router::new()
        .fallback(|| async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "starting") });
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let t = Instant::now();
    let err = wait_http_ready(
        &format!("http://127.0.0.1:{port}/"),
        Duration::from_millis(500),
        || true,
    )
    .await
    .expect_err("503 is not ready");
    match &err {
        SpawnError::NotReady { last, .. } => assert_eq!(last, "HTTP 503"),
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(3));
    server.abort();

    // A 404 is up, as in JupyterHub.
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move { axum::serve(listener, axum::Router::new()).await });
    wait_http_ready(
        &format!("http://127.0.0.1:{port}/nope"),
        Duration::from_secs(5),
        || true,
    )
    .await
    .expect("404 is up");
    server.abort();

    assert!(matches!(
        wait_http_ready("https://127.0.0.1:1/", Duration::from_secs(1), || true).await,
        Err(SpawnError::BadUrl { .. })
    ));
}

/// Runs `singleuser::run` with the environment this process was given.
#[test]
#[ignore = "helper run as a child process by the singleuser process tests"]
fn child_role_singleuser() {
    if std::env::var("QH_TEST_ROLE").as_deref() != Ok("singleuser") {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(singleuser::run(SingleUserArgs::default()))
        .expect("singleuser::run");
}

fn server_env(user: &str, port: u16) -> ServerEnv {
    ServerEnv::new(
        user,
        "",
        "secret-token",
        "http://127.0.0.1:1/hub/api",
        Some("http://127.0.0.1:8000".into()),
        port,
    )
}

#[tokio::test]
async fn spawned_builtin_server_reads_jupyterhub_env_and_stops_gracefully() {
    let port = pick_free_port().expect("port");
    let e = server_env("dora", port);
    let mut env = jupyterhub_env(&e);
    env.insert("QH_TEST_ROLE".into(), "singleuser".into());
    let exe = std::env::current_exe().expect("test binary");
    let mut cmd = vec![exe.to_string_lossy().into_owned()];
    cmd.extend(self_args("child_role_singleuser"));
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("dora.log");
    let s = spawn_process(&ProcessSpec {
        cmd,
        env,
        cwd: None,
        log_path: Some(log.clone()),
        run_as: None,
    })
    .expect("spawn");
    let _guard = KillOnDrop {
        pid: s.pid,
        start: s.proc_start,
    };

    let url = format!("{}{}", e.target_url(), e.service_prefix());
    assert_eq!(url, format!("http://127.0.0.1:{port}/user/dora/"));
    wait_http_ready(&url, Duration::from_secs(20), || {
        is_alive(s.pid, s.proc_start)
    })
    .await
    .unwrap_or_else(|err| {
        panic!(
            "{err}; log: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    let v = get(port, "/user/dora/api/status").await.json();
    assert_eq!(v["user"], "dora");
    assert_eq!(v["prefix"], "/user/dora/");
    assert_eq!(v["pid"], s.pid, "the answering process is the spawned one");
    assert_eq!(get(port, "/user/other/").await.status, 404);

    let t = Instant::now();
    stop_process(s.pid, s.proc_start, Duration::from_secs(15))
        .await
        .expect("stop");
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "SIGTERM should stop it gracefully, took {:?}",
        t.elapsed()
    );
    assert!(!is_alive(s.pid, s.proc_start));
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        out.contains("test result: ok"),
        "the server exited cleanly: {out}"
    );
}

#[tokio::test]
async fn sigterm_closes_websockets_and_exits_zero() {
    let port = pick_free_port().expect("port");
    let exe = std::env::current_exe().expect("test binary");
    let mut child = tokio::process::Command::new(exe)
        .args(self_args("child_role_singleuser"))
        .env("QH_TEST_ROLE", "singleuser")
        .env(
            "JUPYTERHUB_SERVICE_URL",
            format!("http://127.0.0.1:{port}/user/tess/"),
        )
        .env("JUPYTERHUB_SERVICE_PREFIX", "/user/tess/")
        .env("JUPYTERHUB_USER", "tess")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn child server");
    let pid = child.id().expect("pid");
    wait_http_ready(
        &format!("http://127.0.0.1:{port}/user/tess/"),
        Duration::from_secs(20),
        || true,
    )
    .await
    .expect("child server ready");
    assert_eq!(get(port, "/user/tess/").await.json()["user"], "tess");

    let url = format!("ws://127.0.0.1:{port}/user/tess/ws");
    let (mut ws, _) = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(url))
        .await
        .expect("timeout")
        .expect("ws");
    ws.send(Message::text("ping?")).await.expect("send");
    let m = tokio::time::timeout(STEP, ws.next())
        .await
        .expect("timeout")
        .expect("open")
        .expect("frame");
    assert_eq!(m, Message::text("ping?"));

    // SAFETY: plain kill(2) of our own child.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) }, 0);
    let m = tokio::time::timeout(STEP, ws.next())
        .await
        .expect("no close frame")
        .expect("open")
        .expect("frame");
    match m {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected a close frame, got {other:?}"),
    }
    drop(ws);
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exit in time")
        .expect("wait");
    assert!(status.success(), "graceful exit code 0, got {status}");
}
