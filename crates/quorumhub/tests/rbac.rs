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
    call_on(c, 1, method, path, token, body).await
}

/// As [`call`], through replica `node`.
async fn call_on(
    c: &common::Cluster,
    node: u64,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = client()
        .request(method, c.url(node, path))
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
    let culler = common::venv_bin("jupyterhub-idle-culler");
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

/// The pids of the processes running `needle` (in their command line)
/// whose working directory is inside `root`.
fn processes_under(root: &std::path::Path, needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for p in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let inside =
            std::fs::read_link(p.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(root));
        let runs = std::fs::read(p.path().join("cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle));
        if inside && runs {
            out.push(pid);
        }
    }
    out.sort_unstable();
    out
}

/// Start `user`'s server through replica `node` and wait until it is ready.
async fn start_ready(c: &common::Cluster, node: u64, user: &str) {
    let (s, _) = call_on(
        c,
        node,
        Method::POST,
        &format!("/hub/api/users/{user}"),
        TOKEN,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "create {user}");
    let (s, _) = call_on(
        c,
        node,
        Method::POST,
        &format!("/hub/api/users/{user}/server"),
        TOKEN,
        None,
    )
    .await;
    assert!(s.is_success(), "start {user}: {s}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, u) = call_on(
            c,
            node,
            Method::GET,
            &format!("/hub/api/users/{user}"),
            TOKEN,
            None,
        )
        .await;
        if u["servers"][""]["ready"] == true {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{user}'s server never became ready: {u}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Wait until `user` has no server (the culler stopped it), asking `node`.
async fn wait_culled(c: &common::Cluster, node: u64, user: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let (s, u) = call_on(
            c,
            node,
            Method::GET,
            &format!("/hub/api/users/{user}"),
            TOKEN,
            None,
        )
        .await;
        if s == StatusCode::OK && u["servers"] == json!({}) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{user}'s server was not culled: {u}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The real jupyterhub-idle-culler as a managed service: the leader starts
/// it with JupyterHub's service environment and a token whose scopes come
/// from a configured role, it culls an idle server, and after a `kill -9`
/// of the leader the new leader adopts the same process (same pid, one
/// copy, its token still valid: it culls again) instead of starting a
/// second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_culler_as_a_managed_service_survives_a_leader_kill_without_running_twice() {
    let culler = common::venv_bin("jupyterhub-idle-culler");
    let conf = tempfile::tempdir().expect("tempdir");
    let file = conf.path().join("hub.toml");
    std::fs::write(
        &file,
        format!(
            "[[services]]\nname = \"idle-culler\"\ncommand = [{:?}, \"--timeout=3\", \"--cull-every=1\"]\n\n\
             [[roles]]\nname = \"idle-culler\"\n\
             scopes = [\"list:users\", \"read:users:activity\", \"read:servers\", \"delete:servers\"]\n\
             services = [\"idle-culler\"]\n",
            culler.display().to_string()
        ),
    )
    .expect("write the configuration");
    let path = file.display().to_string();
    let mut c = common::start(3, &["--services-file", &path, "--roles-file", &path]).await;
    c.start_proxy_ready().await;
    c.wait_cluster_version(quorumhub_state::LOG_FORMAT_VERSION, Duration::from_secs(10))
        .await;
    // The leader records the copy it started: the services API shows it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let pid = loop {
        let (s, v) = call(
            &c,
            Method::GET,
            "/hub/api/services/idle-culler",
            TOKEN,
            None,
        )
        .await;
        // The roles are replicated by a loop of their own: wait for both.
        if s == StatusCode::OK
            && v["pid"].as_u64().unwrap_or(0) > 0
            && v["roles"] == json!(["idle-culler"])
        {
            assert_eq!(v["kind"], "service");
            break v["pid"].as_u64().expect("pid") as u32;
        }
        assert!(
            Instant::now() < deadline,
            "the culler was not started: {s} {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        processes_under(c.dir.path(), "jupyterhub-idle-culler"),
        [pid]
    );
    let (s, list) = call(&c, Method::GET, "/hub/api/services", TOKEN, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["idle-culler"]["pid"], json!(pid), "{list}");

    start_ready(&c, 1, "sleepy").await;
    wait_culled(&c, 1, "sleepy", Duration::from_secs(30)).await;

    let leader = c.wait_leader(Duration::from_secs(5)).await;
    c.kill(leader);
    let next = c.wait_leader(Duration::from_secs(10)).await;
    assert_ne!(next, leader);
    // Give the new leader several supervision turns: it must adopt, not
    // start another copy.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        processes_under(c.dir.path(), "jupyterhub-idle-culler"),
        [pid],
        "one copy, the same process"
    );
    // Asked of the new leader (replica 1 may be the one killed).
    let (_, v) = call_on(
        &c,
        next,
        Method::GET,
        "/hub/api/services/idle-culler",
        TOKEN,
        None,
    )
    .await;
    assert_eq!(v["pid"], json!(pid), "{v}");
    // Its token still works through the new leader: it culls again.
    start_ready(&c, next, "drowsy").await;
    wait_culled(&c, next, "drowsy", Duration::from_secs(45)).await;
    assert_eq!(
        processes_under(c.dir.path(), "jupyterhub-idle-culler"),
        [pid]
    );
}

/// An external service (a URL and a token in the configuration): the
/// proxies route `/services/{name}/` to it, path and query kept; its token
/// is the service's (`GET /hub/api/user` says so) and has exactly the
/// scopes of the role that names it; the services API shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_service_is_routed_by_the_proxies_and_its_token_has_its_roles_scopes() {
    // The service: answers every request with the path it was sent.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = conn.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = head.split(' ').nth(1).unwrap_or("?").to_string();
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{path}",
                    path.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
    const SERVICE_TOKEN: &str = "dashboard-token-0123456789abcdef";
    let conf = tempfile::tempdir().expect("tempdir");
    let file = conf.path().join("hub.toml");
    std::fs::write(
        &file,
        format!(
            "[[services]]\nname = \"dashboard\"\nurl = \"http://127.0.0.1:{port}\"\napi_token = \"{SERVICE_TOKEN}\"\n\
             info = {{ team = \"ops\" }}\n\n\
             [[roles]]\nname = \"dashboard\"\nscopes = [\"list:users\"]\nservices = [\"dashboard\"]\n"
        ),
    )
    .expect("write the configuration");
    let path = file.display().to_string();
    let mut c = common::start(3, &["--services-file", &path, "--roles-file", &path]).await;
    c.start_proxy_ready().await;
    c.wait_cluster_version(quorumhub_state::LOG_FORMAT_VERSION, Duration::from_secs(10))
        .await;
    // Through the proxy, once the route is replicated and watched.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = client()
            .get(c.proxy_url("/services/dashboard/api/x?y=1"))
            .send()
            .await;
        if let Ok(r) = r {
            if r.status() == StatusCode::OK {
                assert_eq!(
                    r.text().await.expect("body"),
                    "/services/dashboard/api/x?y=1"
                );
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the proxy never routed /services/dashboard/"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Its token: the service, with its role's scopes (wait for the roles).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, me) = call(&c, Method::GET, "/hub/api/user", SERVICE_TOKEN, None).await;
        assert_eq!(s, StatusCode::OK, "{me}");
        assert_eq!(me["kind"], "service");
        assert_eq!(me["name"], "dashboard");
        if me["scopes"]
            .as_array()
            .is_some_and(|a| a.contains(&json!("list:users")))
        {
            assert_eq!(me["roles"], json!(["dashboard"]));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dashboard role never applied: {me}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (s, users) = call(&c, Method::GET, "/hub/api/users", SERVICE_TOKEN, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(users.as_array().is_some_and(|u| !u.is_empty()), "{users}");
    let (s, _) = call(
        &c,
        Method::POST,
        "/hub/api/users/intruder",
        SERVICE_TOKEN,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "no admin:users for the service");
    let (s, svc) = call(&c, Method::GET, "/hub/api/services/dashboard", TOKEN, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(svc["url"], format!("http://127.0.0.1:{port}"));
    assert_eq!(svc["prefix"], "/services/dashboard/");
    assert_eq!(svc["info"], json!({"team": "ops"}));
    assert_eq!(svc["command"], json!([]));
    let (s, _) = call(&c, Method::GET, "/hub/api/services/nope", TOKEN, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A user without services scopes sees none of them.
    let (s, _) = call(&c, Method::GET, "/hub/api/services", SERVICE_TOKEN, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}
