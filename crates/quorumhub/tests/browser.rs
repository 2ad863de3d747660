//! Browser users and the real Jupyter single-user server.
//!
//! A browser-like client (cookies by path, redirects followed one by one so
//! each step is checked) logs in with a password, starts its server, goes
//! through the hub's OAuth provider to the real `jupyterhub-singleuser`
//! (JupyterLab), opens a kernel WebSocket, and does it all again after the
//! leader is killed. Needs the Python packages from scripts/jupyter-venv.sh.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::browser::{Browser, Page};
use common::{auth, hubctl_stdin};
use futures::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};

async fn login(b: &mut Browser, user: &str, password: &str) -> Page {
    let form = b.get("/hub/login?next=%2Fhub%2Fhome").await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    let xsrf = b
        .cookie("_xsrf", "/hub/")
        .expect("the login page sets _xsrf");
    assert!(form.body.contains(&xsrf), "the form carries the token");
    b.send(
        Method::POST,
        "/hub/login?next=%2Fhub%2Fhome",
        Some(&[("username", user), ("password", password), ("_xsrf", &xsrf)]),
        false,
    )
    .await
}

/// From `/user/alice/lab` through the OAuth provider to JupyterLab's page.
async fn open_lab(b: &mut Browser) -> Vec<String> {
    let (hops, page) = b.follow("/user/alice/lab").await;
    assert_eq!(page.status, StatusCode::OK, "{hops:?}\n{}", page.body);
    assert!(
        page.body.contains("JupyterLab"),
        "{}",
        &page.body[..page.body.len().min(500)]
    );
    assert!(
        hops.iter()
            .any(|h| h.contains("/hub/api/oauth2/authorize?")),
        "{hops:?}"
    );
    assert!(
        hops.iter()
            .any(|h| h.contains("/user/alice/oauth_callback?code=")),
        "{hops:?}"
    );
    eprintln!("opened JupyterLab via {hops:#?}");
    hops
}

/// Start a kernel through the proxy and talk to it over its WebSocket.
async fn kernel_round_trip(b: &mut Browser, proxy: &str) {
    let created = b
        .send(Method::POST, "/user/alice/api/kernels", None, true)
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let kernel: serde_json::Value = serde_json::from_str(&created.body).expect("json");
    let id = kernel["id"].as_str().expect("kernel id");
    let path = format!("/user/alice/api/kernels/{id}/channels");
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{proxy}{path}"),
    )
    .expect("request");
    req.headers_mut()
        .insert("cookie", b.cookie_header(&path).parse().expect("cookie"));
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("kernel websocket");
    let msg = serde_json::json!({
        "header": {"msg_id": "qh-1", "msg_type": "kernel_info_request", "username": "alice",
                   "session": "qh", "version": "5.3", "date": "2026-11-25T00:00:00Z"},
        "parent_header": {}, "metadata": {}, "content": {}, "channel": "shell", "buffers": []
    });
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        msg.to_string().into(),
    ))
    .await
    .expect("send");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let next = tokio::time::timeout_at(deadline.into(), ws.next())
            .await
            .expect("no kernel_info_reply within 60 s")
            .expect("websocket closed")
            .expect("websocket error");
        if let tokio_tungstenite::tungstenite::Message::Text(t) = next {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
            if v["header"]["msg_type"] == "kernel_info_reply" {
                assert_eq!(v["parent_header"]["msg_id"], "qh-1");
                break;
            }
        }
    }
    let _ = ws.close(None).await;
}

/// The OAuth access token the single-user server keeps in its cookie
/// (tornado's signed value: `2|1:0|10:ts|N:name|M:base64(token)|sig`).
fn access_token_in(b: &Browser) -> String {
    let v = b
        .cookie("jupyterhub-user-alice", "/user/alice/")
        .expect("server cookie");
    let field = v.trim_matches('"').split('|').nth(4).expect("value field");
    let b64 = field.split_once(':').expect("length prefix").1;
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64"),
    )
    .expect("utf8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_logs_in_opens_jupyterlab_and_stays_logged_in_after_a_leader_kill() {
    let su = common::singleuser().display().to_string();
    let mut c = common::start(
        3,
        &[
            "--spawner-cmd",
            &su,
            "--spawner-cmd",
            "--allow-root",
            "--spawn-timeout-s",
            "90",
        ],
    )
    .await;
    c.start_proxy_ready().await;
    c.wait_cluster_version(3, Duration::from_secs(20)).await;
    let created = common::client()
        .post(c.url(1, "/hub/api/users/alice"))
        .header("Authorization", auth())
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), StatusCode::CREATED);
    let out = hubctl_stdin(&c, &["users", "set-password", "alice"], "short\n");
    assert!(!out.status.success(), "a short password is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 8"));
    let out = hubctl_stdin(
        &c,
        &["users", "set-password", "alice"],
        "alice-password-1\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let proxy = c.proxy_addr.clone();
    let mut b = Browser::new(format!("http://{proxy}"));
    // Not logged in: pages send the browser to the login page.
    let home = b.get("/hub/home").await;
    assert_eq!(
        home.location.as_deref(),
        Some("/hub/login?next=%2Fhub%2Fhome")
    );
    // Wrong password, and a post without the CSRF token: refused.
    let wrong = login(&mut b, "alice", "not-the-password").await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert!(wrong.body.contains("Invalid username or password"));
    let forged = b
        .send(
            Method::POST,
            "/hub/login",
            Some(&[("username", "alice"), ("password", "alice-password-1")]),
            false,
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(b.cookie("jupyterhub-hub-login", "/hub/").is_none());
    // Right password.
    let ok = login(&mut b, "alice", "alice-password-1").await;
    assert_eq!(ok.status, StatusCode::FOUND, "{}", ok.body);
    assert_eq!(ok.location.as_deref(), Some("/hub/home"));
    let home = b.get("/hub/home").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains("alice") && home.body.contains("not running"));

    // Start the server and follow its progress to ready.
    let spawn = b.get("/hub/spawn").await;
    assert_eq!(spawn.location.as_deref(), Some("/hub/spawn-pending/alice"));
    let progress = b.get("/hub/api/users/alice/server/progress").await;
    assert_eq!(progress.status, StatusCode::OK, "{}", progress.body);
    let last = progress
        .body
        .lines()
        .rfind(|l| l.starts_with("data:"))
        .expect("events");
    assert!(last.contains("\"ready\":true"), "{}", progress.body);
    let pending = b.get("/hub/spawn-pending/alice").await;
    assert_eq!(pending.location.as_deref(), Some("/user/alice/"));

    // Through OAuth to JupyterLab, and a kernel over its WebSocket.
    open_lab(&mut b).await;
    kernel_round_trip(&mut b, &proxy).await;
    let me = b
        .http
        .get(format!("http://{proxy}/hub/api/user"))
        .header("Authorization", format!("token {}", access_token_in(&b)))
        .send()
        .await
        .expect("whoami");
    let me: serde_json::Value = me.json().await.expect("json");
    assert_eq!(me["name"], "alice");
    assert!(
        me["scopes"]
            .as_array()
            .expect("scopes")
            .contains(&"access:servers!server=alice/".into()),
        "{me}"
    );

    // Every misuse of the OAuth provider (replayed and forged codes, wrong
    // secrets, PKCE, redirect URIs) is checked in-process:
    // crates/http/tests/contract.rs::the_oauth_token_exchange_and_its_refusals.

    // The leader dies. The browser is still logged in, whichever replica
    // answers, and a new OAuth round and a new kernel work.
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    c.kill(leader);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let home = b.get("/hub/home").await;
        if home.status == StatusCode::OK {
            assert!(
                home.body.contains("Your server is running"),
                "{}",
                home.body
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "home after the kill: {} {:?}",
            home.status,
            home.location
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    b.forget("/user/alice/");
    open_lab(&mut b).await;
    kernel_round_trip(&mut b, &proxy).await;

    // Logout ends the session and revokes the OAuth token it obtained.
    let token = access_token_in(&b);
    let out = b.get("/hub/logout").await;
    assert_eq!(out.location.as_deref(), Some("/hub/login"));
    assert_eq!(b.get("/hub/home").await.status, StatusCode::FOUND);
    let me = b
        .http
        .get(format!("http://{proxy}/hub/api/user"))
        .header("Authorization", format!("token {token}"))
        .send()
        .await
        .expect("whoami");
    assert_eq!(me.status(), StatusCode::FORBIDDEN);
}

/// A spawn that fails: the pending page says why, as JupyterHub's shows the
/// spawn's error (the Slurm spawner's refusals reach users this way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pending_page_of_a_failed_spawn_says_why() {
    let mut c = common::start(1, &["--spawner-cmd", "/bin/false"]).await;
    c.start_proxy_ready().await;
    let created = common::client()
        .post(c.url(1, "/hub/api/users/alice"))
        .header("Authorization", auth())
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), StatusCode::CREATED);
    let out = hubctl_stdin(
        &c,
        &["users", "set-password", "alice"],
        "alice-password-1\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut b = Browser::new(format!("http://{}", c.proxy_addr));
    let ok = login(&mut b, "alice", "alice-password-1").await;
    assert_eq!(ok.status, StatusCode::FOUND, "{}", ok.body);
    // Before any spawn: no reason to give.
    let page = b.get("/hub/spawn-pending/alice").await;
    assert!(page.body.contains("server is not running"), "{}", page.body);
    assert!(!page.body.contains("It stopped"), "{}", page.body);
    let spawn = b.get("/hub/spawn").await;
    assert_eq!(spawn.location.as_deref(), Some("/hub/spawn-pending/alice"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = b.get("/hub/spawn-pending/alice").await;
        if page.body.contains("It stopped:") {
            assert!(
                page.body.contains("exited before it answered HTTP"),
                "{}",
                page.body
            );
            break;
        }
        assert!(Instant::now() < deadline, "no reason shown: {}", page.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
