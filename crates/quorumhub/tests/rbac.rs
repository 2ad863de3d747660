//! What scopes, sessions and sign-ins do across a cluster's processes: the
//! real jupyterhub-idle-culler, sign-in rate limits, CSRF tokens, a session
//! over a rolling restart. The tokens API, scopes per endpoint, groups and
//! pagination are contract tests in-process (crates/hub/tests/contract.rs).

mod common;

use std::time::{Duration, Instant};

use common::{client, TOKEN};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn call(
    c: &common::Cluster,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = client()
        .request(method, c.url(1, path))
        .header("Authorization", format!("token {token}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The real jupyterhub-idle-culler stops an idle server through the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_culler_stops_an_idle_server() {
    let venv = std::env::var("QH_JUPYTER_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/jupyter-venv")
        });
    let culler = venv.join("bin/jupyterhub-idle-culler");
    assert!(
        culler.exists(),
        "{} is missing: run scripts/jupyter-venv.sh",
        culler.display()
    );
    let mut c = common::start(3, &[]).await;
    c.start_proxy_ready().await;
    c.wait_cluster_version(quorumhub_state::LOG_FORMAT_VERSION, Duration::from_secs(10))
        .await;
    let (s, _) = call(&c, Method::POST, "/hub/api/users/idle", TOKEN, None).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = call(&c, Method::POST, "/hub/api/users/idle/server", TOKEN, None).await;
    assert_eq!(s, StatusCode::CREATED);
    // A token with exactly the scopes the culler documents.
    let (_, t) = call(
        &c,
        Method::POST,
        "/hub/api/users/admin/tokens",
        TOKEN,
        Some(json!({"scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"], "note": "culler"})),
    )
    .await;
    let token = t["token"].as_str().expect("token").to_string();
    let mut child = tokio::process::Command::new(&culler)
        .args(["--timeout=1", "--cull-every=1", "--api-page-size=10"])
        .arg(format!("--url=http://{}/hub/api", c.proxy_addr))
        .env("JUPYTERHUB_API_TOKEN", token)
        .kill_on_drop(true)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("culler");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, u) = call(&c, Method::GET, "/hub/api/users/idle", TOKEN, None).await;
        if u["servers"].as_object().is_some_and(|s| s.is_empty()) {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.start_kill();
            let out = child.wait_with_output().await.expect("output");
            panic!(
                "the culler did not stop the server: {u}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = child.start_kill();
    let out = child.wait_with_output().await.expect("output");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("Culling server idle"), "{log}");
}

/// Failed sign-ins are limited per user name and per address: after 5 the
/// hub answers 429 with Retry-After, even to the right password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sign_ins_are_rate_limited() {
    use common::browser::Browser;
    let c = common::start(1, &[]).await;
    c.wait_cluster_version(quorumhub_state::LOG_FORMAT_VERSION, Duration::from_secs(10))
        .await;
    let (s, _) = call(&c, Method::POST, "/hub/api/users/mallory", TOKEN, None).await;
    assert_eq!(s, StatusCode::CREATED);
    let mut b = Browser::new(format!("http://{}", c.node(1).http));
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let page = b.password_login("mallory", "guess-guess").await;
        statuses.push(page.status.as_u16());
    }
    assert_eq!(statuses, [403, 403, 403, 403, 403, 429]);
}

/// A CSRF token belongs to one login: another user's (or an attacker's own)
/// does not pass, and a script must send one even to read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csrf_tokens_are_bound_to_the_session() {
    use common::browser::Browser;
    let c = common::start(1, &[]).await;
    c.wait_cluster_version(quorumhub_state::LOG_FORMAT_VERSION, Duration::from_secs(10))
        .await;
    let base = format!("http://{}", c.node(1).http);
    let mut browsers = Vec::new();
    for user in ["alice", "bob"] {
        let (s, _) = call(
            &c,
            Method::POST,
            &format!("/hub/api/users/{user}"),
            TOKEN,
            None,
        )
        .await;
        assert_eq!(s, StatusCode::CREATED);
        common::set_password(&c, user, &format!("{user}-password"));
        let mut b = Browser::new(base.clone());
        let page = b.password_login(user, &format!("{user}-password")).await;
        assert_eq!(page.status, StatusCode::FOUND);
        assert_eq!(b.get("/hub/home").await.status, StatusCode::OK);
        browsers.push(b);
    }
    let bob_xsrf = browsers[1].cookie("_xsrf", "/hub/").expect("bob's token");
    let alice = &mut browsers[0];
    // alice's own token works.
    let ok = alice
        .send(Method::POST, "/hub/api/users/alice/tokens", None, true)
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
    // Without one, or with bob's planted in her cookie: refused.
    let none = alice
        .send(Method::POST, "/hub/api/users/alice/tokens", None, false)
        .await;
    assert_eq!(none.status, StatusCode::FORBIDDEN);
    alice.set_cookie("/hub/", "_xsrf", &bob_xsrf);
    let planted = alice
        .send(Method::POST, "/hub/api/users/alice/tokens", None, true)
        .await;
    assert_eq!(planted.status, StatusCode::FORBIDDEN, "{}", planted.body);
    // A script's read needs the token too; a navigation does not.
    let cookie = alice.cookie_header("/hub/api/users/alice");
    let read = |mode: &'static str| {
        let cookie = cookie.clone();
        let url = format!("{base}/hub/api/users/alice");
        async move {
            client()
                .get(url)
                .header("Cookie", cookie)
                .header("Sec-Fetch-Mode", mode)
                .send()
                .await
                .expect("read")
                .status()
        }
    };
    assert_eq!(read("cors").await, StatusCode::FORBIDDEN);
    assert_eq!(read("navigate").await, StatusCode::OK);
}

/// A browser stays logged in while every replica is restarted in turn
/// (a rolling restart): sessions and the cookie key are replicated state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_survives_a_rolling_restart() {
    use common::browser::Browser;
    let mut c = common::start(3, &[]).await;
    c.start_proxy_ready().await;
    c.wait_cluster_version(quorumhub_state::LOG_FORMAT_VERSION, Duration::from_secs(10))
        .await;
    let (s, _) = call(&c, Method::POST, "/hub/api/users/alice", TOKEN, None).await;
    assert_eq!(s, StatusCode::CREATED);
    common::set_password(&c, "alice", "alice-password");
    let mut b = Browser::new(format!("http://{}", c.proxy_addr));
    let page = b.password_login("alice", "alice-password").await;
    assert_eq!(page.status, StatusCode::FOUND);
    for id in 1..=3 {
        assert!(c.stop(id), "replica {id} did not stop by itself");
        c.spawn(id);
        c.wait_leader(Duration::from_secs(10)).await;
        // Whichever replica the proxy picks, the browser is still alice.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let home = b.get("/hub/home").await;
            if home.status == StatusCode::OK {
                assert!(home.body.contains("alice"));
                break;
            }
            assert!(
                home.status != StatusCode::FOUND,
                "logged out after restarting replica {id}"
            );
            assert!(
                std::time::Instant::now() < deadline,
                "home: {}",
                home.status
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Opening someone else's server through OAuth asks first: a consent page,
/// whose form must carry the session's CSRF token; the owner is not asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_confirms_before_opening_another_users_server() {
    use common::browser::Browser;
    let c = common::start(1, &[]).await;
    c.wait_cluster_version(quorumhub_state::LOG_FORMAT_VERSION, Duration::from_secs(10))
        .await;
    for path in ["/hub/api/users/alice", "/hub/api/users/alice/server"] {
        let (s, e) = call(&c, Method::POST, path, TOKEN, None).await;
        assert_eq!(s, StatusCode::CREATED, "{path}: {e}");
    }
    common::set_password(&c, "admin", "admin-password");
    common::set_password(&c, "alice", "alice-password");
    let authorize = "/hub/api/oauth2/authorize?client_id=jupyterhub-user-alice\
        &redirect_uri=%2Fuser%2Falice%2Foauth_callback&response_type=code&state=s1";
    let base = format!("http://{}", c.node(1).http);

    let mut admin = Browser::new(base.clone());
    assert_eq!(
        admin.password_login("admin", "admin-password").await.status,
        StatusCode::FOUND
    );
    let consent = admin.get(authorize).await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.body);
    assert!(consent.body.contains("alice") && consent.body.contains("Authorize"));
    // A bare POST (say, from another site's form) is refused.
    let forged = admin
        .send(Method::POST, authorize, Some(&[("_xsrf", "nope")]), false)
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let xsrf = admin.cookie("_xsrf", "/hub/").expect("token");
    let ok = admin
        .send(Method::POST, authorize, Some(&[("_xsrf", &xsrf)]), false)
        .await;
    let to = ok.location.expect("back to the server");
    assert!(
        to.starts_with("/user/alice/oauth_callback?code=") && to.ends_with("&state=s1"),
        "{to}"
    );

    // The owner goes straight through.
    let mut alice = Browser::new(base);
    assert_eq!(
        alice.password_login("alice", "alice-password").await.status,
        StatusCode::FOUND
    );
    let direct = alice.get(authorize).await;
    assert!(
        direct
            .location
            .as_deref()
            .is_some_and(|l| l.starts_with("/user/alice/oauth_callback?code=")),
        "{:?}",
        direct.location
    );
}

/// Roles from the TOML file (JupyterHub's `load_roles`) are replicated by
/// the leader: every replica grants them, with `!group=` filters, and a
/// new leader keeps them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_roles_are_replicated_and_grant_their_scopes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let roles = dir.path().join("roles.toml");
    std::fs::write(
        &roles,
        r#"
[[roles]]
name = "ta"
description = "Teaching assistants read the course's students"
scopes = ["list:users!group=course", "read:users:name!group=course", "read:users:activity!group=course"]
users = ["ta1"]
"#,
    )
    .expect("write");
    let roles = roles.display().to_string();
    let mut c = common::start(3, &["--roles-file", &roles]).await;
    c.wait_cluster_version(quorumhub_state::LOG_FORMAT_VERSION, Duration::from_secs(10))
        .await;
    for u in ["ta1", "alice", "carol"] {
        let (s, _) = call(
            &c,
            Method::POST,
            &format!("/hub/api/users/{u}"),
            TOKEN,
            None,
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{u}");
    }
    let (s, _) = call(
        &c,
        Method::POST,
        "/hub/api/groups/course",
        TOKEN,
        Some(json!({"users": ["alice"]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, token) = call(&c, Method::POST, "/hub/api/users/ta1/tokens", TOKEN, None).await;
    assert_eq!(s, StatusCode::CREATED, "{token}");
    let token = token["token"].as_str().expect("token").to_string();
    async fn list_at(url: String, token: &str) -> (StatusCode, Value) {
        let r = client()
            .get(url)
            .header("Authorization", format!("token {token}"))
            .send()
            .await
            .expect("list");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }
    // The leader syncs within a couple of seconds; then every replica
    // lists the course's students, and only the names and activity.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, v) = list_at(c.url(1, "/hub/api/users"), &token).await;
        if s == StatusCode::OK {
            assert_eq!(
                v,
                json!([{"admin": false, "kind": "user", "last_activity": null, "name": "alice"}])
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the role was never granted: {s} {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for node in [2, 3] {
        let (s, v) = list_at(c.url(node, "/hub/api/users"), &token).await;
        assert_eq!(
            (s, v.as_array().map(Vec::len)),
            (StatusCode::OK, Some(1)),
            "node {node}"
        );
    }
    let (_, who) = call(&c, Method::GET, "/hub/api/users/ta1", TOKEN, None).await;
    assert_eq!(who["roles"], json!(["ta", "user"]), "{who}");
    // A new leader keeps them (they are replicated state, not its config).
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    c.kill(leader);
    c.wait_leader(Duration::from_secs(10)).await;
    let alive = c.alive();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, v) = list_at(c.url(alive[0], "/hub/api/users"), &token).await;
        if s == StatusCode::OK {
            assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "after failover: {s} {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
