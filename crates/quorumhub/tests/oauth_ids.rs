//! Issue 10 part 5: OAuth client ids that cannot collide, and user URLs that
//! never loop.
//!
//! JupyterHub gives alice's named server `x` and the user `alice-x` the same
//! client id, `jupyterhub-user-alice-x`; under quorumhub before log format
//! 6, alice-x was refused at her own server ("Mismatching redirect URI").
//! Here both run the real `jupyterhub-singleuser` (JupyterLab; needs the
//! venv of scripts/jupyter-venv.sh) and each signs in at its own server
//! through the hub's OAuth provider. A server spawned before the cluster
//! reached log format 6 keeps JupyterHub's id and keeps working, and a
//! spawn that would take its id is refused with 409.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::browser::{Browser, Page};
use common::{auth, client, set_password, Cluster};
use reqwest::StatusCode;

fn hub_args(su: &str) -> Vec<&str> {
    vec![
        "--spawner-cmd",
        su,
        "--spawner-cmd",
        "--allow-root",
        "--spawn-timeout-s",
        "120",
    ]
}

async fn create_user(c: &Cluster, name: &str) {
    let r = client()
        .post(c.url(1, &format!("/hub/api/users/{name}")))
        .header("Authorization", auth())
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), StatusCode::CREATED, "create {name}");
}

fn server_path(user: &str, server: &str) -> String {
    if server.is_empty() {
        format!("/hub/api/users/{user}/server")
    } else {
        format!("/hub/api/users/{user}/servers/{server}")
    }
}

/// Ask for a spawn: the status and JSON body of the answer.
async fn request_start(c: &Cluster, user: &str, server: &str) -> (StatusCode, serde_json::Value) {
    let r = client()
        .post(c.url(1, &server_path(user, server)))
        .header("Authorization", auth())
        .send()
        .await
        .expect("start");
    let status = r.status();
    (status, r.json().await.unwrap_or_default())
}

/// `GET /hub/api/users/{user}` on replica `node`.
async fn user_model(c: &Cluster, node: u64, user: &str) -> serde_json::Value {
    client()
        .get(c.url(node, &format!("/hub/api/users/{user}")))
        .header("Authorization", auth())
        .send()
        .await
        .expect("get user")
        .json()
        .await
        .expect("json")
}

/// Start `user`'s server and wait until it is ready.
async fn start(c: &Cluster, user: &str, server: &str) {
    let (status, body) = request_start(c, user, server).await;
    assert!(
        status == StatusCode::CREATED || status == StatusCode::ACCEPTED,
        "start {user}/{server}: {status} {body}"
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let u = user_model(c, 1, user).await;
        if u["servers"][server]["ready"] == true {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{user}/{server} never ready: {u}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn stop(c: &Cluster, user: &str, server: &str) {
    let r = client()
        .delete(c.url(1, &server_path(user, server)))
        .header("Authorization", auth())
        .send()
        .await
        .expect("stop");
    assert!(
        r.status().is_success(),
        "stop {user}/{server}: {}",
        r.status()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let u = user_model(c, 1, user).await;
        if u["servers"].get(server).is_none() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{user}/{server} never stopped: {u}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The JupyterHub environment of `user`'s running server `server`, read
/// from its process (the one whose `JUPYTERHUB_API_URL` is this cluster's).
fn server_env(proxy: &str, user: &str, server: &str) -> BTreeMap<String, String> {
    let api_url = format!("http://{proxy}/hub/api");
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(raw) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let env: BTreeMap<String, String> = raw
            .split(|b| *b == 0)
            .filter_map(|kv| {
                let kv = String::from_utf8_lossy(kv);
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        let is = |k: &str, v: &str| env.get(k).map(String::as_str) == Some(v);
        if is("JUPYTERHUB_API_URL", &api_url)
            && is("JUPYTERHUB_USER", user)
            && is("JUPYTERHUB_SERVER_NAME", server)
        {
            return env;
        }
    }
    panic!("no process of {user}'s server {server:?} found");
}

fn client_id_of(proxy: &str, user: &str, server: &str) -> String {
    server_env(proxy, user, server)
        .remove("JUPYTERHUB_CLIENT_ID")
        .expect("JUPYTERHUB_CLIENT_ID")
}

async fn logged_in(proxy: &str, user: &str) -> Browser {
    let mut b = Browser::new(format!("http://{proxy}"));
    let page = b.password_login(user, &format!("{user}-password-1")).await;
    assert_eq!(
        page.status,
        StatusCode::FOUND,
        "login {user}: {}",
        page.body
    );
    b
}

/// From `{prefix}lab` through the hub's OAuth provider to JupyterLab:
/// every hop, and the client id the server sent to the authorize step.
async fn open_lab(b: &mut Browser, prefix: &str) -> (Vec<String>, String) {
    let (hops, page) = b.follow(&format!("{prefix}lab")).await;
    assert_eq!(page.status, StatusCode::OK, "{hops:#?}\n{}", page.body);
    assert!(page.body.contains("JupyterLab"), "{hops:#?}");
    let authorize = hops
        .iter()
        .find(|h| h.contains("/hub/api/oauth2/authorize?"))
        .unwrap_or_else(|| panic!("no OAuth round: {hops:#?}"));
    let query = authorize
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or_default();
    let client_id = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("client_id="))
        .map(form_decode)
        .expect("client_id in the authorize URL");
    assert!(
        hops.iter()
            .any(|h| h.contains(&format!("{prefix}oauth_callback?code="))),
        "the code went to this server's own callback: {hops:#?}"
    );
    (hops, client_id)
}

/// A form-encoded query value, decoded.
fn form_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("ascii");
                out.push(u8::from_str_radix(hex, 16).expect("hex"));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).expect("utf8")
}

fn location(p: &Page) -> Option<&str> {
    p.location.as_deref()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_server_and_a_lookalike_user_each_sign_in_at_their_own_server() {
    let su = common::singleuser().display().to_string();
    let mut c = common::start(3, &hub_args(&su)).await;
    c.start_proxy_ready().await;
    c.wait_cluster_version(quorumhub_state::LOG_FORMAT_VERSION, Duration::from_secs(20))
        .await;
    let proxy = c.proxy_addr.clone();
    for u in ["alice", "alice-x", "bob"] {
        create_user(&c, u).await;
        set_password(&c, u, &format!("{u}-password-1"));
    }
    start(&c, "alice", "x").await;
    start(&c, "alice-x", "").await;

    // The ids the servers were given differ; the default one is JupyterHub's.
    assert_eq!(
        client_id_of(&proxy, "alice", "x"),
        "jupyterhub-user-alice!x"
    );
    assert_eq!(
        client_id_of(&proxy, "alice-x", ""),
        "jupyterhub-user-alice-x"
    );

    // Each signs in at her own server (alice-x was refused before).
    let mut alice = logged_in(&proxy, "alice").await;
    let (_, id) = open_lab(&mut alice, "/user/alice/x/").await;
    assert_eq!(id, "jupyterhub-user-alice!x");
    let mut ax = logged_in(&proxy, "alice-x").await;
    let (_, id) = open_lab(&mut ax, "/user/alice-x/").await;
    assert_eq!(id, "jupyterhub-user-alice-x");
    // Each server keeps its own cookie, named after its client id.
    assert!(ax
        .cookie("jupyterhub-user-alice-x", "/user/alice-x/")
        .is_some());
    assert!(alice
        .cookie("jupyterhub-user-alice!x", "/user/alice/x/")
        .is_some());

    // A name spelled in capitals: one 307 to the name as the routes spell
    // it (path and query kept), then the server itself.
    let p = ax.get("/user/ALICE-X/lab?reset").await;
    assert_eq!(p.status, StatusCode::TEMPORARY_REDIRECT, "{}", p.body);
    assert_eq!(location(&p), Some("/user/alice-x/lab?reset"));
    let (hops, page) = ax.follow("/user/ALICE-X/lab").await;
    assert_eq!(page.status, StatusCode::OK, "{hops:#?}");
    assert_eq!(hops, ["/user/ALICE-X/lab", "/user/alice-x/lab"]);
    // The hub's user URL (JupyterHub's /hub/user/...) likewise.
    let p = ax.get("/hub/user/ALICE-X/lab").await;
    assert_eq!(p.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(location(&p), Some("/user/alice-x/lab"));
    let p = ax.get("/hub/user/alice-x/").await;
    assert_eq!(location(&p), Some("/user/alice-x/"));
    let (hops, page) = ax.follow("/hub/user/ALICE-X/").await;
    assert!(page.status.is_success(), "{hops:#?}");
    assert_eq!(hops[1], "/user/alice-x/");
    // A percent-escaped name is spelled out once too.
    let p = ax.get("/user/alice%2Dx/lab").await;
    assert_eq!(location(&p), Some("/user/alice-x/lab"));

    // Not signed in: one hop to the canonical name, then the server's own
    // way to the login page, and the chain ends.
    let mut anon = Browser::new(format!("http://{proxy}"));
    let (hops, page) = anon.follow("/user/ALICE-X/").await;
    assert_eq!(page.status, StatusCode::OK, "{hops:#?}");
    assert_eq!(hops[1], "/user/alice-x/");
    assert!(
        hops.last()
            .is_some_and(|h| h.starts_with("/hub/login?next=")),
        "{hops:#?}"
    );
    assert!(page.body.contains("Sign in") || page.body.contains("password"));

    // A user whose server is not running: one 307, then the hub's page
    // saying so (424, JupyterHub's status), never a loop.
    let page_of = |path: &str| {
        let http = anon.http.clone();
        let url = format!("http://{proxy}{path}");
        async move {
            let r = http
                .get(url)
                .header("Accept", "text/html")
                .send()
                .await
                .expect("get");
            let status = r.status();
            let to = r
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            (status, to, r.text().await.unwrap_or_default())
        }
    };
    let (s, to, _) = page_of("/user/BOB/").await;
    assert_eq!(
        (s, to.as_deref()),
        (StatusCode::TEMPORARY_REDIRECT, Some("/user/bob/"))
    );
    let (s, to, body) = page_of("/user/bob/").await;
    assert_eq!((s, to), (StatusCode::FAILED_DEPENDENCY, None), "{body}");
    assert!(
        body.contains("bob&#x27;s server is not running")
            || body.contains("bob's server is not running"),
        "{body}"
    );
    // A running server that the proxy does not route (here: asked of a
    // hub directly) gets a 503 page, not a redirect that would come
    // straight back to the hub.
    let r = anon
        .http
        .get(c.url(1, "/user/alice-x/lab"))
        .header("Accept", "text/html")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().get("location").is_none());
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    // ... which a browser reloads by itself.
    assert_eq!(
        r.headers().get("refresh").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body = r.text().await.unwrap_or_default();
    assert!(body.contains("does not route to it yet"), "{body}");

    // An API client gets JSON after the same single hop.
    let mut bob = logged_in(&proxy, "bob").await;
    let (hops, page) = bob.follow("/user/BOB/api/status").await;
    assert_eq!(hops, ["/user/BOB/api/status", "/user/bob/api/status"]);
    assert_eq!(
        page.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        page.body
    );
    // A name no user can have is not redirected.
    let p = bob.get("/hub/user/a%2Fb/").await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_spawned_before_log_format_6_keeps_its_id_and_blocks_a_lookalike() {
    let su = common::singleuser().display().to_string();
    // Two of three replicas: the third does not answer, so the cluster
    // version stays at 1, as in a rolling upgrade whose last member still
    // runs the old build.
    let mut c = Cluster::prepare(common::exe(), 3, &hub_args(&su));
    c.spawn(1);
    c.spawn(2);
    c.wait_leader(Duration::from_secs(30)).await;
    c.start_proxy_ready().await;
    let proxy = c.proxy_addr.clone();
    for u in ["alice", "alice-x"] {
        create_user(&c, u).await;
    }
    start(&c, "alice", "x").await;
    assert_eq!(
        client_id_of(&proxy, "alice", "x"),
        "jupyterhub-user-alice-x",
        "before log format 6: JupyterHub's id"
    );

    // The last replica comes up: the cluster moves to log format 6.
    c.spawn(3);
    c.wait_cluster_version(quorumhub_state::LOG_FORMAT_VERSION, Duration::from_secs(30))
        .await;
    for u in ["alice", "alice-x"] {
        set_password(&c, u, &format!("{u}-password-1"));
    }

    // The old server keeps its id, and its OAuth still works.
    let mut alice = logged_in(&proxy, "alice").await;
    let (_, id) = open_lab(&mut alice, "/user/alice/x/").await;
    assert_eq!(id, "jupyterhub-user-alice-x");

    // alice-x's default server would get the same id: refused, saying what
    // to do, and nothing is left behind.
    let (status, body) = request_start(&c, "alice-x", "").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        body["message"],
        "the OAuth client id jupyterhub-user-alice-x is already used by alice's server x, \
         started before the cluster moved to log format 6; stop that server (its next start \
         gets an id of its own) and try again"
    );
    let u = user_model(&c, 2, "alice-x").await;
    assert_eq!(u["servers"], serde_json::json!({}), "{u}");

    // Once it stops, both start, each with an id of its own, and both sign in.
    stop(&c, "alice", "x").await;
    start(&c, "alice-x", "").await;
    start(&c, "alice", "x").await;
    assert_eq!(
        client_id_of(&proxy, "alice", "x"),
        "jupyterhub-user-alice!x"
    );
    assert_eq!(
        client_id_of(&proxy, "alice-x", ""),
        "jupyterhub-user-alice-x"
    );
    alice.forget("/user/alice/x/");
    let (_, id) = open_lab(&mut alice, "/user/alice/x/").await;
    assert_eq!(id, "jupyterhub-user-alice!x");
    let mut ax = logged_in(&proxy, "alice-x").await;
    let (_, id) = open_lab(&mut ax, "/user/alice-x/").await;
    assert_eq!(id, "jupyterhub-user-alice-x");
}
