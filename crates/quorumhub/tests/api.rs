//! The REST API across a cluster: every replica refuses bad input alike,
//! renames, limits and quotas that need several replicas or many clients.
//! (The REST contract itself is in-process: crates/hub/tests/contract.rs.)

mod common;

use std::time::Duration;

use common::{client, TOKEN};
use reqwest::{Method, StatusCode};
use serde_json::Value;

struct Case {
    method: Method,
    path: &'static str,
    token: Option<&'static str>,
    body: Option<&'static str>,
    status: u16,
    /// A fragment the JSON `message` must contain.
    message: &'static str,
}

const fn case(
    method: Method,
    path: &'static str,
    token: Option<&'static str>,
    body: Option<&'static str>,
    status: u16,
    message: &'static str,
) -> Case {
    Case {
        method,
        path,
        token,
        body,
        status,
        message,
    }
}

const ADMIN: Option<&str> = Some(TOKEN);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_refuses_bad_input_alike() {
    let c = common::start(3, &[]).await;
    c.wait_cluster_version(quorumhub_state::LOG_FORMAT_VERSION, Duration::from_secs(10))
        .await;
    // The full table runs in-process (crates/hub/tests/contract.rs); here,
    // what needs the cluster: the same answers from every replica, writes
    // refused on followers after being forwarded to the leader.
    let cases = [
        case(
            Method::GET,
            "/hub/api/users",
            None,
            None,
            403,
            "Missing or invalid credentials",
        ),
        case(Method::POST, "/hub/api/users/alice", ADMIN, None, 201, ""),
        case(
            Method::POST,
            "/hub/api/users/alice",
            ADMIN,
            None,
            409,
            "User alice already exists",
        ),
        case(
            Method::POST,
            "/hub/api/users/ALICE",
            ADMIN,
            None,
            409,
            "User alice already exists",
        ),
        case(
            Method::POST,
            "/hub/api/users/bob",
            ADMIN,
            Some("{not json"),
            400,
            "Invalid JSON in body",
        ),
        case(
            Method::DELETE,
            "/hub/api/users/nobody",
            ADMIN,
            None,
            404,
            "No such user: nobody",
        ),
        case(
            Method::DELETE,
            "/hub/api/users/alice/servers/nope",
            ADMIN,
            None,
            404,
            "alice has no server named 'nope'",
        ),
        case(
            Method::PATCH,
            "/hub/api/users/alice",
            ADMIN,
            Some("{\"name\": \"admin\"}"),
            409,
            "User admin already exists",
        ),
        case(
            Method::GET,
            "/user/nobody/lab",
            None,
            None,
            503,
            "nobody's server is not running",
        ),
    ];
    let mut failures = Vec::new();
    for (i, k) in cases.iter().enumerate() {
        // Spread the cases over the replicas: every replica must answer alike.
        let node = 1 + (i as u64 % 3);
        let mut req = client().request(k.method.clone(), c.url(node, k.path));
        if let Some(t) = k.token {
            req = req.header("Authorization", format!("token {t}"));
        }
        if let Some(b) = k.body {
            req = req
                .body(b.to_string())
                .header("Content-Type", "application/json");
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let ok_status = status == StatusCode::from_u16(k.status).expect("status");
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_default();
        let ok_message = k.message.is_empty() || message.contains(k.message);
        let ok_shape = status.is_success()
            || serde_json::from_str::<Value>(&text).is_ok_and(|v| v["status"] == k.status);
        if !(ok_status && ok_message && ok_shape) {
            failures.push(format!(
                "{} {} → {} {text}",
                k.method,
                k.path,
                status.as_u16()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "unexpected answers:\n{}",
        failures.join("\n")
    );

    // Nothing the refused requests carried reached the state.
    let users: Vec<Value> = client()
        .get(c.url(2, "/hub/api/users"))
        .header("Authorization", format!("token {TOKEN}"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let names: Vec<&str> = users.iter().filter_map(|u| u["name"].as_str()).collect();
    assert_eq!(names, vec!["admin", "alice"]);
    let alice = &users[1];
    for key in [
        "kind",
        "name",
        "admin",
        "roles",
        "groups",
        "server",
        "pending",
        "created",
        "last_activity",
        "servers",
    ] {
        assert!(alice.get(key).is_some(), "user model lacks {key}: {alice}");
    }
    assert_eq!(alice["kind"], "user");
    assert_eq!(alice["server"], Value::Null);
    let version: Value = client()
        .get(c.url(3, "/hub/api/"))
        .send()
        .await
        .expect("v")
        .json()
        .await
        .expect("json");
    assert!(version["version"].is_string());
}

/// `PATCH /users/{name}` with a new name (log format 2): the user, its
/// admin flag and its tokens move; every replica sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_a_user() {
    let c = common::start(3, &[]).await;
    c.wait_cluster_version(2, Duration::from_secs(10)).await;
    let admin = format!("token {TOKEN}");
    let r = client()
        .post(c.url(1, "/hub/api/users/dora"))
        .header("Authorization", &admin)
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = client()
        .patch(c.url(2, "/hub/api/users/dora"))
        .header("Authorization", &admin)
        .body(r#"{"name": "Dorothy", "admin": true}"#)
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.expect("json");
    assert_eq!(
        (body["name"].as_str(), body["admin"].as_bool()),
        (Some("dorothy"), Some(true))
    );
    for node in 1..=3 {
        let get = |name: &'static str| {
            client()
                .get(c.url(node, &format!("/hub/api/users/{name}")))
                .header("Authorization", &admin)
                .send()
        };
        assert_eq!(get("dorothy").await.expect("get").status(), StatusCode::OK);
        assert_eq!(
            get("dora").await.expect("get").status(),
            StatusCode::NOT_FOUND
        );
    }
}

/// A new user `name` and an API token for it (made by the bootstrap admin).
async fn user_with_token(c: &common::Cluster, name: &str) -> String {
    let admin = format!("token {TOKEN}");
    let r = client()
        .post(c.url(1, &format!("/hub/api/users/{name}")))
        .header("Authorization", &admin)
        .send()
        .await
        .expect("create user");
    assert_eq!(r.status(), StatusCode::CREATED, "create {name}");
    let r = client()
        .post(c.url(1, &format!("/hub/api/users/{name}/tokens")))
        .header("Authorization", &admin)
        .send()
        .await
        .expect("create token");
    assert_eq!(r.status(), StatusCode::CREATED, "token for {name}");
    let body: Value = r.json().await.expect("json");
    body["token"].as_str().expect("token").to_string()
}

/// Body, field and quota limits, as a non-admin user sees them: each
/// refusal is JupyterHub's JSON error naming the flag, and nothing that a
/// refused request carried reaches the state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_refuse_before_anything_is_proposed() {
    let c = common::start(3, &["--max-tokens-per-user", "3"]).await;
    c.wait_cluster_version(quorumhub_state::LOG_FORMAT_VERSION, Duration::from_secs(10))
        .await;
    let token = user_with_token(&c, "lim").await;
    let auth = format!("token {token}");
    let mega = "x".repeat(1 << 20);
    let deep = format!("{}1{}", "[".repeat(20), "]".repeat(20));
    let huge_options = format!("{{\"blob\": \"{mega}\"}}");
    let deep_options = format!("{{\"a\": {deep}}}");
    let long_note = format!("{{\"note\": \"{}\"}}", "n".repeat(2000));
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "/hub/api/users/lim/tokens",
            format!("{{\"note\": \"{mega}\"}}"),
            413,
            "limit of 16384 bytes (the hub's --max-body-bytes)",
        ),
        (
            "/hub/api/users/lim/server",
            huge_options,
            413,
            "limit of 65536 bytes (the hub's --max-user-options-bytes)",
        ),
        (
            "/hub/api/users/lim/servers/lab",
            deep_options,
            400,
            "(--max-user-options-depth)",
        ),
        (
            "/hub/api/users/lim/tokens",
            long_note,
            400,
            "note is 2000 bytes; the limit is 1024 (--max-token-note-bytes)",
        ),
        ("/hub/api/users/lim/tokens", "{}".into(), 201, ""),
        ("/hub/api/users/lim/tokens", "{}".into(), 201, ""),
        (
            "/hub/api/users/lim/tokens",
            "{}".into(),
            429,
            "User lim already has 3 API tokens, the most allowed (--max-tokens-per-user 3)",
        ),
    ];
    let mut failures = Vec::new();
    for (i, (path, body, status, message)) in cases.iter().enumerate() {
        // Through every replica in turn: each checks its own.
        let node = 1 + (i as u64 % 3);
        let resp = client()
            .post(c.url(node, path))
            .header("Authorization", &auth)
            .header("Content-Type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("request");
        let got = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let json = serde_json::from_str::<Value>(&text).unwrap_or_default();
        let ok = got == *status
            && (got == 201
                || (json["status"] == *status
                    && json["message"]
                        .as_str()
                        .is_some_and(|m| m.contains(message))));
        if !ok {
            failures.push(format!("POST {path} (node {node}) → {got} {text:.300}"));
        }
    }
    assert!(
        failures.is_empty(),
        "unexpected answers:\n{}",
        failures.join("\n")
    );

    // Nothing refused reached the state: lim holds the three tokens it was
    // given, and no server was requested.
    let tokens: Value = client()
        .get(c.url(3, "/hub/api/users/lim/tokens"))
        .header("Authorization", &auth)
        .send()
        .await
        .expect("tokens")
        .json()
        .await
        .expect("json");
    let notes: Vec<&str> = tokens["api_tokens"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|t| t["note"].as_str())
        .collect();
    assert_eq!(notes.len(), 3, "{tokens}");
    assert!(notes.iter().all(|n| n.len() < 100), "{notes:?}");
    let user: Value = client()
        .get(c.url(2, "/hub/api/users/lim"))
        .header("Authorization", &auth)
        .send()
        .await
        .expect("user")
        .json()
        .await
        .expect("json");
    assert_eq!(user["servers"], serde_json::json!({}), "{user}");
}

/// One user floods a replica with writes; another user's writes through
/// the same replica all succeed meanwhile. With two write slots and one per
/// user, the flood can hold only one, so the other user always finds the
/// second: without per-user admission it would be shed with 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_users_flood_leaves_room_for_others() {
    let c = common::start(
        3,
        &[
            "--max-writes-in-flight",
            "2",
            "--max-write-queue",
            "0",
            "--max-user-writes-in-flight",
            "1",
        ],
    )
    .await;
    c.wait_cluster_version(quorumhub_state::LOG_FORMAT_VERSION, Duration::from_secs(10))
        .await;
    let flood = user_with_token(&c, "flood").await;
    let calm = user_with_token(&c, "calm").await;
    // A follower, so that every write is forwarded and stays in flight a
    // little longer.
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let node = if leader == 1 { 2 } else { 1 };
    let activity = |who: &str, token: &str| {
        client()
            .post(c.url(node, &format!("/hub/api/users/{who}/activity")))
            .header("Authorization", format!("token {token}"))
            .header("Content-Type", "application/json")
            .body(r#"{"last_activity": "2026-01-01T00:00:00Z"}"#)
            .send()
    };
    let mut refused = 0;
    let mut calm_ok = 0;
    let mut other = Vec::new();
    for _round in 0..20 {
        let burst = futures::future::join_all((0..32).map(|_| activity("flood", &flood)));
        let steady = async {
            let mut oks = 0;
            for _ in 0..5 {
                let r = activity("calm", &calm).await.expect("calm");
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                assert_eq!(status, StatusCode::OK, "calm's write was refused: {text}");
                oks += 1;
            }
            oks
        };
        let (answers, oks) = tokio::join!(burst, steady);
        calm_ok += oks;
        for r in answers {
            let r = r.expect("flood request");
            match r.status() {
                StatusCode::OK => {}
                StatusCode::TOO_MANY_REQUESTS => {
                    assert_eq!(
                        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
                        Some("1")
                    );
                    let body: Value = r.json().await.expect("json");
                    assert_eq!(body["status"], 429);
                    assert!(
                        body["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("--max-user-writes-in-flight")),
                        "{body}"
                    );
                    refused += 1;
                }
                s => other.push(format!("{s} {}", r.text().await.unwrap_or_default())),
            }
        }
        if refused > 0 {
            break;
        }
    }
    assert!(other.is_empty(), "the flood got other answers: {other:?}");
    assert!(calm_ok >= 5);
    assert!(refused > 0, "no flood write was ever refused with 429");
}

/// Per-user quotas that need real servers and logins: a named server past
/// `--named-server-limit-per-user` is refused with 400, JupyterHub's answer
/// (and nothing is requested), stopped named servers count until removed,
/// and a login past `--max-sessions-per-user` ends the user's
/// oldest session instead of locking the user out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_server_and_session_quotas() {
    use common::browser::Browser;
    let c = common::start(
        3,
        &[
            "--named-server-limit-per-user",
            "1",
            "--max-sessions-per-user",
            "2",
        ],
    )
    .await;
    c.wait_cluster_version(quorumhub_state::LOG_FORMAT_VERSION, Duration::from_secs(10))
        .await;
    let token = user_with_token(&c, "quota").await;
    let start = |node: u64, server: &'static str| {
        client()
            .post(c.url(node, &format!("/hub/api/users/quota/servers/{server}")))
            .header("Authorization", format!("token {token}"))
            .send()
    };
    let first = start(1, "one").await.expect("start one");
    assert!(
        [StatusCode::CREATED, StatusCode::ACCEPTED].contains(&first.status()),
        "{}",
        first.status()
    );
    let second = start(2, "two").await.expect("start two");
    assert_eq!(second.status(), StatusCode::BAD_REQUEST);
    let body: Value = second.json().await.expect("json");
    assert_eq!(body["status"], 400);
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("already has the maximum of 1 named servers")
            && message.contains("--named-server-limit-per-user"),
        "{body}"
    );
    let servers_of = |include_stopped: bool| {
        let url = c.url(
            3,
            if include_stopped {
                "/hub/api/users/quota?include_stopped_servers=1"
            } else {
                "/hub/api/users/quota"
            },
        );
        async move {
            let user: Value = client()
                .get(url)
                .header("Authorization", format!("token {TOKEN}"))
                .send()
                .await
                .expect("user")
                .json()
                .await
                .expect("json");
            user["servers"]
                .as_object()
                .expect("servers")
                .iter()
                .map(|(k, v)| (k.clone(), v["stopped"].as_bool().unwrap_or_default()))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(servers_of(false).await, [("one".to_string(), false)]);
    // Stopped, its record stays (JupyterHub's stopped server) and still
    // counts; removed, it frees the place.
    let delete = |node: u64, body: Option<&'static str>| {
        let mut req = client()
            .delete(c.url(node, "/hub/api/users/quota/servers/one"))
            .header("Authorization", format!("token {TOKEN}"));
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        req.send()
    };
    let stopped = delete(2, None).await.expect("stop one");
    assert!(
        [StatusCode::NO_CONTENT, StatusCode::ACCEPTED].contains(&stopped.status()),
        "{}",
        stopped.status()
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !servers_of(false).await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "one never stopped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(servers_of(true).await, [("one".to_string(), true)]);
    let again = start(1, "two").await.expect("start two again");
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    let removed = delete(3, Some(r#"{"remove": true}"#))
        .await
        .expect("remove one");
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    assert_eq!(servers_of(true).await, []);
    let third = start(2, "two").await.expect("start two after removal");
    assert!(
        [StatusCode::CREATED, StatusCode::ACCEPTED].contains(&third.status()),
        "{}",
        third.status()
    );

    common::set_password(&c, "quota", "quota-password");
    let mut browsers = Vec::new();
    for node in 1..=3 {
        let mut b = Browser::new(format!("http://{}", c.node(node).http));
        let page = b.password_login("quota", "quota-password").await;
        assert_eq!(
            page.status,
            StatusCode::FOUND,
            "login {node}: {}",
            page.body
        );
        browsers.push(b);
    }
    let mut home = Vec::new();
    for b in &mut browsers {
        home.push(b.get("/hub/home").await.status);
    }
    // The first login's session was ended by the third; the others stay.
    assert_eq!(
        home,
        [StatusCode::FOUND, StatusCode::OK, StatusCode::OK],
        "home pages after three logins with room for two"
    );
}

/// The environment of the running process whose `JUPYTERHUB_USER` is
/// `user` and whose working directory is inside `root` (the server this
/// test's process spawner started, not another test's), as `KEY=value`
/// lines.
fn server_environ(root: &std::path::Path, user: &str) -> Option<Vec<String>> {
    let needle = format!("JUPYTERHUB_USER={user}");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let inside =
            std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(root));
        let Ok(raw) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if !inside {
            continue;
        }
        let vars: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        if vars.contains(&needle) {
            return Some(vars);
        }
    }
    None
}

/// Profiles from the configuration shape the real server process (its
/// environment, JupyterHub's `MEM_LIMIT` and `CPU_LIMIT`), a profile the
/// hub does not offer is refused by every replica, and the active server
/// limit refuses a start past it with JupyterHub's 429 wherever it lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_shape_the_server_and_the_active_limit_refuses_past_it() {
    let conf = tempfile::tempdir().expect("tempdir");
    let file = conf.path().join("hub.toml");
    std::fs::write(
        &file,
        "[[profiles]]\ndisplay_name = \"Plain\"\ndefault = true\n\n\
         [[profiles]]\nslug = \"ml\"\ndisplay_name = \"Machine learning\"\n\
         description = \"2 CPUs, 2 GiB\"\ncpu_limit = 2\nmem_limit = \"2G\"\n\
         env = { COURSE = \"ml-101\" }\n",
    )
    .expect("write profiles");
    let path = file.display().to_string();
    let c = common::start(3, &["--profiles-file", &path, "--active-server-limit", "2"]).await;
    c.wait_cluster_version(quorumhub_state::LOG_FORMAT_VERSION, Duration::from_secs(10))
        .await;
    let admin = format!("token {TOKEN}");
    for user in ["pa", "pb", "pc"] {
        let r = client()
            .post(c.url(1, &format!("/hub/api/users/{user}")))
            .header("Authorization", &admin)
            .send()
            .await
            .expect("create");
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let start = |node: u64, user: &'static str, body: &'static str| {
        client()
            .post(c.url(node, &format!("/hub/api/users/{user}/server")))
            .header("Authorization", &admin)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for node in 1..=3 {
        let r = start(node, "pa", r#"{"user_options": {"profile": "gpu"}}"#)
            .await
            .expect("refused start");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "replica {node}");
        let body: Value = r.json().await.expect("json");
        assert_eq!(
            body["message"], "No such profile: gpu. Options include: plain, ml",
            "replica {node}"
        );
    }
    let ready = |user: &'static str| {
        let url = c.url(3, &format!("/hub/api/users/{user}"));
        let admin = admin.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                let u: Value = client()
                    .get(&url)
                    .header("Authorization", &admin)
                    .send()
                    .await
                    .expect("user")
                    .json()
                    .await
                    .expect("json");
                if u["servers"][""]["ready"] == true {
                    return u;
                }
                assert!(tokio::time::Instant::now() < deadline, "{user}: {u}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let r = start(2, "pa", r#"{"user_options": {"profile": "ml"}}"#)
        .await
        .expect("start pa");
    assert!(r.status().is_success(), "{}", r.status());
    let r = start(3, "pb", "").await.expect("start pb");
    assert!(r.status().is_success(), "{}", r.status());
    let pa = ready("pa").await;
    assert_eq!(pa["servers"][""]["user_options"]["profile"], "ml");
    ready("pb").await;
    let env = server_environ(c.dir.path(), "pa").expect("pa's server process");
    for want in ["COURSE=ml-101", "MEM_LIMIT=2147483648", "CPU_LIMIT=2"] {
        assert!(env.iter().any(|v| v == want), "{want} not in {env:?}");
    }
    // The default profile ("plain") changes nothing.
    let env = server_environ(c.dir.path(), "pb").expect("pb's server process");
    assert!(
        !env.iter()
            .any(|v| v.starts_with("COURSE=") || v.starts_with("MEM_LIMIT=")),
        "{env:?}"
    );
    // Two servers active: a third start is refused on every replica, and
    // nothing is recorded.
    for node in 1..=3 {
        let r = start(node, "pc", "").await.expect("start pc");
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "replica {node}");
        let body: Value = r.json().await.expect("json");
        assert_eq!(
            body["message"],
            "Active user limit exceeded. Try again in a few minutes."
        );
    }
    let pc: Value = client()
        .get(c.url(1, "/hub/api/users/pc"))
        .header("Authorization", &admin)
        .send()
        .await
        .expect("pc")
        .json()
        .await
        .expect("json");
    assert_eq!(pc["servers"], serde_json::json!({}), "{pc}");
    for user in ["pa", "pb"] {
        let r = client()
            .delete(c.url(1, &format!("/hub/api/users/{user}/server")))
            .header("Authorization", &admin)
            .send()
            .await
            .expect("stop");
        assert!(r.status().is_success(), "{}", r.status());
    }
}
