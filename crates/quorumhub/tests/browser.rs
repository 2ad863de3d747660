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
    let hops = open_lab(&mut b).await;
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

    oauth_bad_input(&mut b, &proxy, &hops).await;

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

/// The API token the hub gave alice's server (its OAuth client secret),
/// read from the server process's environment.
fn server_secret(proxy: &str) -> String {
    let api_url = format!("JUPYTERHUB_API_URL=http://{proxy}/hub/api");
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let vars: Vec<&[u8]> = env.split(|b| *b == 0).collect();
        let has = |want: &str| vars.contains(&want.as_bytes());
        if has(&api_url) && has("JUPYTERHUB_CLIENT_ID=jupyterhub-user-alice") {
            for v in vars {
                if let Some(t) = v.strip_prefix(b"JUPYTERHUB_API_TOKEN=") {
                    return String::from_utf8_lossy(t).into_owned();
                }
            }
        }
    }
    panic!("alice's server process not found");
}

/// Every way to misuse the OAuth provider is refused with the status
/// JupyterHub gives, and changes nothing.
async fn oauth_bad_input(b: &mut Browser, proxy: &str, hops: &[String]) {
    let secret = server_secret(proxy);
    let used_code = hops
        .iter()
        .find_map(|h| h.split("code=").nth(1))
        .and_then(|c| c.split('&').next())
        .expect("the code")
        .to_string();
    let token_url = format!("http://{proxy}/hub/api/oauth2/token");
    let http = b.http.clone();
    let exchange = |form: Vec<(&'static str, String)>| {
        let http = http.clone();
        let url = token_url.clone();
        async move {
            let r = http.post(url).form(&form).send().await.expect("token");
            let status = r.status();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            (status, body)
        }
    };
    let base = |code: &str, secret: &str| {
        vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code.to_string()),
            ("client_id", "jupyterhub-user-alice".to_string()),
            ("client_secret", secret.to_string()),
            ("redirect_uri", "/user/alice/oauth_callback".to_string()),
        ]
    };
    // Replayed code, wrong secret, wrong grant type.
    let (s, body) = exchange(base(&used_code, &secret)).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (s, body) = exchange(base(&used_code, "not-the-secret")).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    let mut f = base(&used_code, &secret);
    f[0].1 = "password".into();
    let (s, body) = exchange(f).await;
    assert_eq!(body["error"], "unsupported_grant_type", "{s}");

    // A fresh code with a PKCE challenge: no verifier, a wrong one, a
    // wrong redirect URI are refused; the code still works afterwards.
    let verifier = "a-verifier-that-is-long-enough-0123456789abcdef";
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(<sha2::Sha256 as sha2::Digest>::digest(verifier.as_bytes()));
    let authorize = format!(
        "/hub/api/oauth2/authorize?client_id=jupyterhub-user-alice&redirect_uri=%2Fuser%2Falice%2Foauth_callback&response_type=code&state=st&code_challenge={challenge}&code_challenge_method=S256"
    );
    let page = b.get(&authorize).await;
    let to = page.location.expect("a redirect with a code");
    assert!(to.starts_with("/user/alice/oauth_callback?code="), "{to}");
    let code = to
        .split("code=")
        .nth(1)
        .and_then(|c| c.split('&').next())
        .expect("code")
        .to_string();
    let (s, body) = exchange(base(&code, &secret)).await;
    assert_eq!(
        (s, body["error_description"].as_str()),
        (StatusCode::BAD_REQUEST, Some("Code verifier required."))
    );
    let mut f = base(&code, &secret);
    f.push(("code_verifier", "wrong".into()));
    let (s, body) = exchange(f).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let mut f = base(&code, &secret);
    f[4].1 = "/user/mallory/oauth_callback".into();
    f.push(("code_verifier", verifier.into()));
    let (s, body) = exchange(f).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let mut f = base(&code, &secret);
    f.push(("code_verifier", verifier.into()));
    let (s, body) = exchange(f).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");

    // Authorize: an unknown client or another redirect URI is a 400 page;
    // an unsupported response type goes back with the error.
    let page = b
        .get("/hub/api/oauth2/authorize?client_id=jupyterhub-user-nobody&response_type=code")
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("Invalid client_id"));
    let page = b
        .get("/hub/api/oauth2/authorize?client_id=jupyterhub-user-alice&redirect_uri=https%3A%2F%2Fevil.example%2Fcb&response_type=code")
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("Mismatching redirect URI"));
    let page = b
        .get("/hub/api/oauth2/authorize?client_id=jupyterhub-user-alice&redirect_uri=%2Fuser%2Falice%2Foauth_callback&response_type=token&state=s")
        .await;
    assert_eq!(
        page.location.as_deref(),
        Some("/user/alice/oauth_callback?error=unsupported_response_type&state=s")
    );
    // A forged login cookie is no login.
    let mut forged = Browser::new(b.base.clone());
    forged.set_cookie("/hub/", "jupyterhub-hub-login", "0123.abcd");
    let page = forged.get(&authorize).await;
    assert!(page
        .location
        .as_deref()
        .is_some_and(|l| l.starts_with("/hub/login?next=")));
}
