//! The REST API's contract as data, in-process (issue 11, step 6): each
//! request goes through the hub's HTTP application (`router`, with
//! `oneshot`) over an in-memory cluster (`MemoryCluster`: the real state
//! machine, no Raft, no port), and its answer is written as one transcript line,
//! compared with the expected transcript (`expect-test`;
//! `UPDATE_EXPECT=1 cargo test` rewrites it after a deliberate change).
//!
//! What only processes show (forwarding between replicas, failover,
//! proxies, browsers, real Jupyter clients) stays in crates/quorumhub/tests.

use axum::body::Body;
use expect_test::{expect, Expect};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use quorumhub_core::limits::Limits;
use quorumhub_core::memory::MemoryCluster;
use quorumhub_core::Cluster;
use quorumhub_http::HttpConfig;
use quorumhub_state::Command;

const TOKEN: &str = "contract-admin-token-0123456789";
/// The configured token of the service `dash`, as transcripts' `dash`.
const DASH_TOKEN: &str = "contract-dash-service-token-0123";

/// A hub over a new in-memory cluster, with the bootstrap admin (token
/// [`TOKEN`]) and the rest of its configuration at the defaults a replica
/// starts with.
async fn replica() -> (axum::Router, Arc<MemoryCluster>) {
    replica_with(
        Limits::default(),
        Default::default(),
        Duration::from_secs(10),
    )
    .await
}

/// As [`replica`], with these limits, profiles and slow spawn timeout.
async fn replica_with(
    limits: Limits,
    profiles: quorumhub_state::Profiles,
    slow_spawn_timeout: Duration,
) -> (axum::Router, Arc<MemoryCluster>) {
    let cluster = Arc::new(MemoryCluster::new(1, &limits));
    let config = HttpConfig {
        public_url: "http://127.0.0.1:8000".into(),
        hub_api_url: "http://127.0.0.1:8000/hub/api".into(),
        jupyterhub_version: "6.1.1".into(),
        admin_user: "admin".into(),
        admin_token_hash: Some(quorumhub_core::secrets::hash_token(TOKEN)),
        slow_spawn_timeout,
        limits,
        oidc: <OidcFlags as clap::Parser>::parse_from(["quorumhub"]).oidc,
        authenticate_prometheus: true,
        spawner: "process".into(),
        profiles: Arc::new(profiles),
    };
    let as_cluster: &dyn Cluster = &*cluster;
    as_cluster
        .propose(Command::CreateUser {
            name: "admin".into(),
            admin: true,
        })
        .await
        .expect("bootstrap admin");
    let metrics = quorumhub_http::Metrics::of(cluster.clone());
    (
        quorumhub_http::router(cluster.clone(), config, metrics),
        cluster,
    )
}

/// The OIDC flags at their defaults (no provider).
#[derive(clap::Parser)]
struct OidcFlags {
    #[command(flatten)]
    oidc: quorumhub_http::OidcArgs,
}

/// Values that differ run to run, masked in transcripts.
const VOLATILE: &[&str] = &[
    "created",
    "last_activity",
    "expires_at",
    "token",
    "started",
    "session_id",
    "access_token",
    "sys_executable",
];

fn masked(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if VOLATILE.contains(&k.as_str()) && !x.is_null() {
                    *x = serde_json::Value::String("…".into());
                } else {
                    masked(x);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(masked),
        _ => {}
    }
}

/// "Try again in … s." (the rest of a window, which depends on how long
/// the test ran) as "Try again in … s.".
fn masked_wait(message: &str) -> String {
    match message.split_once("Try again in ") {
        Some((before, after)) if after.starts_with(|c: char| c.is_ascii_digit()) => {
            let rest = after.trim_start_matches(|c: char| c.is_ascii_digit());
            format!("{before}Try again in …{rest}")
        }
        Some(_) => message.to_string(),
        None => message.to_string(),
    }
}

/// A redirect's OAuth `code=` (random) masked.
fn masked_code(location: &str) -> String {
    match location.split_once("code=") {
        Some((before, after)) => {
            let rest = after.find('&').map(|i| &after[i..]).unwrap_or("");
            format!("{before}code=…{rest}")
        }
        None => location.to_string(),
    }
}

/// Run each line of `script`, `[WHO] METHOD PATH [BODY] [=> NAME]`, where
/// WHO is `admin` (the bootstrap admin token), `wrong` (a token nobody
/// issued) or a token saved earlier with
/// `=> NAME` (a line that creates a token saves its text as NAME and its id
/// as `$NAME_id`, usable in later paths); `@NAME`: a browser, which keeps
/// the cookies it is sent (one jar per NAME) and sends them back, and
/// whose `form:a=1&b=2` body is a form with `$XSRF` replaced by its
/// `_xsrf` cookie (`@NAME COOKIE k=v` gives it a cookie, e.g. a forged
/// one); no WHO: no credentials. Each
/// answer is one line, `WHO METHOD PATH [BODY] → STATUS what`: a JSON
/// error's message, a success's JSON with what differs run to run (times,
/// token texts) masked, a redirect's `Location`, or an HTML page's title.
async fn transcript(router: &axum::Router, script: &str) -> String {
    transcript_with(router, script, Vec::new()).await
}

/// As [`transcript`], with `vars` (`$NAME`, value) replaced in paths and
/// bodies. A redirect line ending in `=> NAME` saves the redirect's OAuth
/// `code` as `$NAME`.
async fn transcript_with(
    router: &axum::Router,
    script: &str,
    mut vars: Vec<(String, String)>,
) -> String {
    let mut tokens: std::collections::BTreeMap<String, String> = [
        ("admin".to_string(), TOKEN.to_string()),
        ("wrong".to_string(), "wrong-token-wrong-token".to_string()),
        ("dash".to_string(), DASH_TOKEN.to_string()),
    ]
    .into();
    let mut jars: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut out = String::new();
    for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (line, save) = match line.rsplit_once(" => ") {
            Some((l, name)) => (l, Some(name.trim().to_string())),
            None => (line, None),
        };
        let first = line.split(' ').next().unwrap_or_default();
        let (who, rest) =
            if first.parse::<Method>().is_ok() && first.chars().all(|c| c.is_ascii_uppercase()) {
                (None, line)
            } else {
                (Some(first), line[first.len()..].trim_start())
            };
        // `@NAME COOKIE k=v`: the browser holds a cookie it was not sent.
        if let (Some(name), Some(kv)) = (
            who.and_then(|w| w.strip_prefix('@')),
            rest.strip_prefix("COOKIE "),
        ) {
            let (k, v) = kv.split_once('=').expect("COOKIE k=v");
            jars.entry(name.to_string())
                .or_default()
                .insert(k.to_string(), v.to_string());
            out.push_str(&format!("{line}\n"));
            continue;
        }
        let mut parts = rest.splitn(3, ' ');
        let method: Method = parts.next().expect("method").parse().expect("a method");
        let mut path = parts.next().expect("path").to_string();
        for (k, v) in &vars {
            path = path.replace(k.as_str(), v);
        }
        let body = parts.next();
        let browser = who.and_then(|w| w.strip_prefix('@'));
        let mut req = Request::builder().method(method.clone()).uri(path.as_str());
        let mut sent_body = body.unwrap_or_default().to_string();
        for (k, v) in &vars {
            sent_body = sent_body.replace(k.as_str(), v);
        }
        let mut form = false;
        if let Some(name) = browser {
            let jar = jars.entry(name.to_string()).or_default();
            if !jar.is_empty() {
                let cookies: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
                req = req.header("cookie", cookies.join("; "));
            }
            if let Some(fields) = sent_body.strip_prefix("form:") {
                let xsrf = jar.get("_xsrf").cloned().unwrap_or_default();
                sent_body = fields.replace("$XSRF", &xsrf);
                form = true;
                req = req.header("content-type", "application/x-www-form-urlencoded");
            } else if let Some(xsrf) = jar.get("_xsrf") {
                // As the pages' scripts call the API.
                req = req.header("x-xsrftoken", xsrf.as_str());
            }
        } else if let Some(who) = who {
            let token = tokens
                .get(who)
                .unwrap_or_else(|| panic!("no token saved as {who}"));
            req = req.header("authorization", format!("token {token}"));
        }
        if body.is_some() && !form {
            req = req.header("content-type", "application/json");
        }
        // As the idle culler asks for pages.
        if path.contains("limit=") {
            req = req.header("accept", "application/jupyterhub-pagination+json");
        }
        let req = req.body(Body::from(sent_body)).expect("request");
        let resp = router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        if let Some(name) = browser {
            let jar = jars.entry(name.to_string()).or_default();
            for c in resp.headers().get_all("set-cookie") {
                let c = c.to_str().expect("a cookie is ASCII");
                let (pair, attrs) = c.split_once(';').unwrap_or((c, ""));
                let (k, v) = pair.split_once('=').expect("name=value");
                if v.is_empty() || attrs.contains("Max-Age=0") {
                    jar.remove(k.trim());
                } else {
                    jar.insert(k.trim().to_string(), v.trim().to_string());
                }
            }
        }
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let location = header("location");
        let html = header("content-type").is_some_and(|t| t.starts_with("text/html"));
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let json: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
        if let (Some(name), true) = (&save, status.is_redirection()) {
            let code = location
                .as_deref()
                .and_then(|l| l.split_once("code="))
                .map(|(_, c)| c.split('&').next().unwrap_or_default().to_string())
                .unwrap_or_else(|| panic!("{line}: no code in {location:?}"));
            vars.push((format!("${name}"), code));
        } else if let (Some(name), Some(j)) = (&save, &json) {
            let text = j["token"]
                .as_str()
                .or(j["access_token"].as_str())
                .unwrap_or_else(|| panic!("{line}: no token in {j}"));
            tokens.insert(name.clone(), text.to_string());
            if let Some(id) = j["id"].as_str() {
                vars.push((format!("${name}_id"), id.to_string()));
            }
        }
        let said = match json {
            // A redirect: where to.
            _ if status.is_redirection() => {
                format!(
                    "to {}",
                    masked_code(location.as_deref().unwrap_or("(no Location)"))
                )
            }
            // A page: its <title> (the rest holds per-request tokens).
            None if html => {
                let page = String::from_utf8_lossy(&bytes);
                let title = page
                    .split_once("<title>")
                    .and_then(|(_, t)| t.split_once("</title>"))
                    .map(|(t, _)| t.trim().to_string())
                    .unwrap_or_default();
                // And what it tells the user went wrong, if anything.
                let alert = page
                    .split_once("role=\"alert\">")
                    .and_then(|(_, t)| t.split_once('<'))
                    .map(|(t, _)| format!(": {}", masked_wait(t.trim())))
                    .unwrap_or_default();
                format!("page {title:?}{alert}")
            }
            // The OAuth provider's errors (RFC 6749 §5.2).
            Some(v) if !status.is_success() && path.starts_with("/hub/api/oauth2/") => {
                format!(
                    "oauth {}: {}",
                    v["error"].as_str().unwrap_or("(no error)"),
                    v["error_description"].as_str().unwrap_or("")
                )
            }
            // JupyterHub's error shape: the status repeated, and a message.
            Some(v) if !status.is_success() => {
                assert_eq!(
                    v["status"],
                    status.as_u16(),
                    "{line}: the error body repeats the status"
                );
                masked_wait(v["message"].as_str().unwrap_or("(no message)"))
            }
            Some(mut v) => {
                masked(&mut v);
                v.to_string()
            }
            // Text: its first line.
            None => String::from_utf8_lossy(&bytes)
                .lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(100)
                .collect(),
        };
        let who = who.map(|w| format!("{w} ")).unwrap_or_default();
        let sent = body.map(|b| format!(" {b}")).unwrap_or_default();
        out.push_str(&format!(
            "{who}{method} {path}{sent} → {} {said}\n",
            status.as_u16()
        ));
    }
    out
}

/// Run `script` on a new replica and compare its transcript; then hand
/// the replica to `after` for what the transcript cannot show.
async fn check(script: &str, expect: Expect, after: impl FnOnce(&dyn Cluster)) {
    check_after(Vec::new(), script, expect, after).await
}

/// As [`check`], with `setup` committed first (what the transcript's API
/// cannot do, such as setting a password, which only `hubctl` can).
async fn check_after(
    setup: Vec<Command>,
    script: &str,
    expect: Expect,
    after: impl FnOnce(&dyn Cluster),
) {
    let (router, cluster) = replica().await;
    let c: &dyn Cluster = &*cluster;
    for command in setup {
        let outcome = c.propose(command).await.expect("setup committed");
        assert!(
            !matches!(outcome, quorumhub_state::Response::Rejected { .. }),
            "setup refused: {outcome:?}"
        );
    }
    let got = transcript(&router, script).await;
    after(&*cluster);
    expect.assert_eq(&got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_jupyterhub_errors() {
    check(
        r#"
        GET /hub/api/users
        wrong GET /hub/api/users
        admin POST /hub/api/users/alice
        admin POST /hub/api/users/alice
        admin POST /hub/api/users/ALICE
        admin POST /hub/api/users/bad%2Fname
        admin POST /hub/api/users/%2E%2E
        admin POST /hub/api/users/bob {not json
        admin POST /hub/api/users/bob {"admin": "yes"}
        admin POST /hub/api/users/bob {"unknown": 1}
        admin GET /hub/api/users/nobody
        admin DELETE /hub/api/users/nobody
        admin POST /hub/api/users {"usernames": []}
        admin POST /hub/api/users [1,2]
        admin POST /hub/api/users {"usernames": ["alice"]}
        admin POST /hub/api/users/nobody/server
        admin DELETE /hub/api/users/alice/server
        admin DELETE /hub/api/users/alice/servers/gpu
        admin POST /hub/api/users/alice/servers/bad%2Fname
        admin POST /hub/api/users/alice/server ["not an object"]
        admin GET /hub/api/users?state=weird
        admin GET /hub/api/users?offset=x
        admin GET /hub/api/info
        wrong GET /hub/api/info
        admin GET /hub/api/no-such-endpoint
        admin DELETE /hub/api/users/admin
        admin PATCH /hub/api/users/alice {"name": "admin"}
        GET /user/nobody/lab
        "#,
        expect![[r#"
            GET /hub/api/users → 403 Missing or invalid credentials
            wrong GET /hub/api/users → 403 Missing or invalid credentials
            admin POST /hub/api/users/alice → 201 {"admin":false,"auth_state":null,"created":"…","groups":[],"kind":"user","last_activity":null,"name":"alice","pending":null,"roles":["user"],"server":null,"servers":{}}
            admin POST /hub/api/users/alice → 409 User alice already exists
            admin POST /hub/api/users/ALICE → 409 User alice already exists
            admin POST /hub/api/users/bad%2Fname → 400 Invalid username "bad/name": username must not contain '/'
            admin POST /hub/api/users/%2E%2E → 400 Invalid username "..": username must not be only dots
            admin POST /hub/api/users/bob {not json → 400 Invalid JSON in body: key must be a string at line 1 column 2
            admin POST /hub/api/users/bob {"admin": "yes"} → 400 Invalid JSON in body: invalid type: string "yes", expected a boolean at line 1 column 15
            admin POST /hub/api/users/bob {"unknown": 1} → 400 Invalid JSON in body: unknown field `unknown`, expected `admin` or `groups` at line 1 column 10
            admin GET /hub/api/users/nobody → 404 No such user: nobody
            admin DELETE /hub/api/users/nobody → 404 No such user: nobody
            admin POST /hub/api/users {"usernames": []} → 400 Must specify at least one user to create
            admin POST /hub/api/users [1,2] → 400 Invalid JSON in body: invalid type: integer `1`, expected a sequence at line 1 column 2
            admin POST /hub/api/users {"usernames": ["alice"]} → 409 All 1 users already exist
            admin POST /hub/api/users/nobody/server → 404 No such user: nobody
            admin DELETE /hub/api/users/alice/server → 204 
            admin DELETE /hub/api/users/alice/servers/gpu → 404 alice has no server named 'gpu'
            admin POST /hub/api/users/alice/servers/bad%2Fname → 400 Invalid server name "bad/name": server name contains '/'; allowed are a-z, 0-9 and -_.@
            admin POST /hub/api/users/alice/server ["not an object"] → 400 Body must be a JSON object
            admin GET /hub/api/users?state=weird → 400 Unrecognized state filter: "weird"; use active, ready or inactive
            admin GET /hub/api/users?offset=x → 400 Invalid argument type, offset and limit must be integers
            admin GET /hub/api/info → 200 {"authenticator":{"class":"quorumhub.auth.Password","version":"0.1.0"},"python":"quorumhub 0.1.0 (Rust; no Python)","spawner":{"class":"quorumhub.spawner.process","version":"0.1.0"},"sys_executable":"…","version":"6.1.1"}
            wrong GET /hub/api/info → 403 Missing or invalid credentials
            admin GET /hub/api/no-such-endpoint → 404 Not Found
            admin DELETE /hub/api/users/admin → 400 Cannot delete yourself!
            admin PATCH /hub/api/users/alice {"name": "admin"} → 409 User admin already exists
            GET /user/nobody/lab → 503 nobody's server is not running; start it with POST /hub/api/users/nobody/server
        "#]],
        |replica| {
            // Nothing the refused requests carried reached the state.
            let names: Vec<String> = replica.read(|s| s.users.keys().cloned().collect());
            assert_eq!(names, ["admin", "alice"]);
        },
    )
    .await;
}

/// JupyterHub 6's server endpoints on servers that do not run (PUT, GET,
/// PATCH, DELETE with `remove`), the user list's sorting, filtering and
/// stopped servers, groups in pages, OPTIONS and Unicode names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jupyterhub_6_servers_lists_and_names() {
    let activity = |user: &str, at| Command::RecordActivity {
        user: user.into(),
        server_name: None,
        at,
    };
    check_after(
        vec![
            Command::CreateUser { name: "carol".into(), admin: false },
            Command::CreateUser { name: "alice".into(), admin: false },
            Command::CreateUser { name: "bob".into(), admin: false },
            activity("carol", 1_000),
            activity("alice", 2_000),
            Command::CreateGroup { name: "g1".into(), users: vec![] },
            Command::CreateGroup { name: "g2".into(), users: vec![] },
            Command::CreateGroup { name: "g3".into(), users: vec![] },
        ],
        r#"
        admin PUT /hub/api/users/alice/servers/gpu {"display_name": "My GPU", "user_options": {"size": 2}}
        admin PUT /hub/api/users/alice/servers/gpu
        admin PUT /hub/api/users/alice/server
        admin PUT /hub/api/users/alice/servers/cpu {"size": 1}
        admin PUT /hub/api/users/alice/servers/x {"display_name": "  two"}
        admin PUT /hub/api/users/alice/servers/y {"display_name": 7}
        admin PUT /hub/api/users/nobody/servers/gpu
        admin GET /hub/api/users/alice/servers/gpu
        admin GET /hub/api/users/alice/server
        admin GET /hub/api/users/alice/servers/nope
        admin GET /hub/api/users/alice
        admin GET /hub/api/users/alice?include_stopped_servers
        admin PATCH /hub/api/users/alice/servers/gpu {"name": "big", "user_options": {"size": 8}}
        admin PATCH /hub/api/users/alice/servers/big {"display_name": "Big one"}
        admin PATCH /hub/api/users/alice/servers/big {"name": "cpu"}
        admin PATCH /hub/api/users/alice/servers/big {}
        admin PATCH /hub/api/users/alice/servers/big {"colour": "red"}
        admin PATCH /hub/api/users/alice/servers/big {"user_options": null}
        admin PATCH /hub/api/users/alice/servers/nope {"display_name": "x"}
        admin GET /hub/api/users/alice/servers/big/progress
        admin GET /hub/api/users/alice/servers/nope/progress
        admin DELETE /hub/api/users/alice/servers/big
        admin GET /hub/api/users/alice/servers/big
        admin DELETE /hub/api/users/alice/servers/big {"remove": true}
        admin GET /hub/api/users/alice/servers/big
        admin DELETE /hub/api/users/alice/servers/big
        admin DELETE /hub/api/users/alice/server
        admin DELETE /hub/api/users/alice/server {"remove": true}
        admin DELETE /hub/api/users/alice/server {"remove": "yes"}
        admin GET /hub/api/users?sort=name&limit=2
        admin GET /hub/api/users?sort=-last_activity&limit=4
        admin GET /hub/api/users?sort=last_activity&limit=4
        admin GET /hub/api/users?sort=age
        admin GET /hub/api/users?name_filter=AL&limit=10
        admin GET /hub/api/users?state=inactive&name_filter=o&sort=-name&offset=0&limit=1
        admin GET /hub/api/groups?limit=2
        admin GET /hub/api/groups?offset=2&limit=2
        OPTIONS /hub/api/users
        OPTIONS /hub/api/no-such-endpoint
        admin POST /hub/api/users/%C3%9CN%C3%8F%20b
        admin GET /hub/api/users/%C3%BCn%C3%AF%20b
        admin GET /hub/api/users/%C3%BCn%C3%AF%20b/server
        admin POST /hub/api/users/a%2Fb
        admin POST /hub/api/users/%2E
        admin POST /hub/api/groups/%C3%BC
        "#,
        expect![[r#"
            admin PUT /hub/api/users/alice/servers/gpu {"display_name": "My GPU", "user_options": {"size": 2}} → 201 {"display_name":"My GPU","full_name":"alice/gpu","full_progress_url":null,"full_url":null,"last_activity":null,"name":"gpu","pending":null,"progress_url":"/hub/api/users/alice/servers/gpu/progress","ready":false,"started":null,"stopped":true,"url":"/user/alice/gpu/","user_options":{"size":2}}
            admin PUT /hub/api/users/alice/servers/gpu → 409 User alice already has server gpu
            admin PUT /hub/api/users/alice/server → 409 User alice already has a default server
            admin PUT /hub/api/users/alice/servers/cpu {"size": 1} → 201 {"display_name":"cpu","full_name":"alice/cpu","full_progress_url":null,"full_url":null,"last_activity":null,"name":"cpu","pending":null,"progress_url":"/hub/api/users/alice/servers/cpu/progress","ready":false,"started":null,"stopped":true,"url":"/user/alice/cpu/","user_options":{"size":1}}
            admin PUT /hub/api/users/alice/servers/x {"display_name": "  two"} → 400 Invalid display_name: display_name must not start or end with a space or hold two in a row
            admin PUT /hub/api/users/alice/servers/y {"display_name": 7} → 400 display_name must be a string
            admin PUT /hub/api/users/nobody/servers/gpu → 404 No such user: nobody
            admin GET /hub/api/users/alice/servers/gpu → 200 {"display_name":"My GPU","full_name":"alice/gpu","full_progress_url":null,"full_url":null,"last_activity":null,"name":"gpu","pending":null,"progress_url":"/hub/api/users/alice/servers/gpu/progress","ready":false,"started":null,"stopped":true,"url":"/user/alice/gpu/","user_options":{"size":2}}
            admin GET /hub/api/users/alice/server → 200 {"display_name":"","full_name":"alice/","full_progress_url":null,"full_url":null,"last_activity":null,"name":"","pending":null,"progress_url":"/hub/api/users/alice/server/progress","ready":false,"started":null,"stopped":true,"url":"/user/alice/","user_options":{}}
            admin GET /hub/api/users/alice/servers/nope → 404 alice has no server named 'nope'
            admin GET /hub/api/users/alice → 200 {"admin":false,"auth_state":null,"created":"…","groups":[],"kind":"user","last_activity":"…","name":"alice","pending":null,"roles":["user"],"server":null,"servers":{}}
            admin GET /hub/api/users/alice?include_stopped_servers → 200 {"admin":false,"auth_state":null,"created":"…","groups":[],"kind":"user","last_activity":"…","name":"alice","pending":null,"roles":["user"],"server":null,"servers":{"cpu":{"display_name":"cpu","full_name":"alice/cpu","full_progress_url":null,"full_url":null,"last_activity":null,"name":"cpu","pending":null,"progress_url":"/hub/api/users/alice/servers/cpu/progress","ready":false,"started":null,"stopped":true,"url":"/user/alice/cpu/","user_options":{"size":1}},"gpu":{"display_name":"My GPU","full_name":"alice/gpu","full_progress_url":null,"full_url":null,"last_activity":null,"name":"gpu","pending":null,"progress_url":"/hub/api/users/alice/servers/gpu/progress","ready":false,"started":null,"stopped":true,"url":"/user/alice/gpu/","user_options":{"size":2}}}}
            admin PATCH /hub/api/users/alice/servers/gpu {"name": "big", "user_options": {"size": 8}} → 200 {"display_name":"My GPU","full_name":"alice/big","full_progress_url":null,"full_url":null,"last_activity":null,"name":"big","pending":null,"progress_url":"/hub/api/users/alice/servers/big/progress","ready":false,"started":null,"stopped":true,"url":"/user/alice/big/","user_options":{"size":8}}
            admin PATCH /hub/api/users/alice/servers/big {"display_name": "Big one"} → 200 {"display_name":"Big one","full_name":"alice/big","full_progress_url":null,"full_url":null,"last_activity":null,"name":"big","pending":null,"progress_url":"/hub/api/users/alice/servers/big/progress","ready":false,"started":null,"stopped":true,"url":"/user/alice/big/","user_options":{"size":8}}
            admin PATCH /hub/api/users/alice/servers/big {"name": "cpu"} → 409 User alice already has server cpu
            admin PATCH /hub/api/users/alice/servers/big {} → 400 Must specify at least one field to modify.
            admin PATCH /hub/api/users/alice/servers/big {"colour": "red"} → 400 Unexpected fields: colour, supported fields: display_name, name, user_options
            admin PATCH /hub/api/users/alice/servers/big {"user_options": null} → 400 user_options must be a dict
            admin PATCH /hub/api/users/alice/servers/nope {"display_name": "x"} → 404 User alice has no such server nope
            admin GET /hub/api/users/alice/servers/big/progress → 400 alice's server big is not starting...
            admin GET /hub/api/users/alice/servers/nope/progress → 404 alice has no server named 'nope'
            admin DELETE /hub/api/users/alice/servers/big → 204 
            admin GET /hub/api/users/alice/servers/big → 200 {"display_name":"Big one","full_name":"alice/big","full_progress_url":null,"full_url":null,"last_activity":null,"name":"big","pending":null,"progress_url":"/hub/api/users/alice/servers/big/progress","ready":false,"started":null,"stopped":true,"url":"/user/alice/big/","user_options":{"size":8}}
            admin DELETE /hub/api/users/alice/servers/big {"remove": true} → 204 
            admin GET /hub/api/users/alice/servers/big → 404 alice has no server named 'big'
            admin DELETE /hub/api/users/alice/servers/big → 404 alice has no server named 'big'
            admin DELETE /hub/api/users/alice/server → 204 
            admin DELETE /hub/api/users/alice/server {"remove": true} → 400 Cannot delete the default server
            admin DELETE /hub/api/users/alice/server {"remove": "yes"} → 400 Invalid JSON in body: invalid type: string "yes", expected a boolean at line 1 column 16
            admin GET /hub/api/users?sort=name&limit=2 → 200 {"_pagination":{"limit":2,"next":{"limit":2,"offset":2,"url":"http://127.0.0.1:8000/hub/api/users?sort=name&offset=2&limit=2"},"offset":0,"total":4},"items":[{"admin":true,"auth_state":null,"created":"…","groups":[],"kind":"user","last_activity":null,"name":"admin","pending":null,"roles":["admin","user"],"server":null,"servers":{}},{"admin":false,"auth_state":null,"created":"…","groups":[],"kind":"user","last_activity":"…","name":"alice","pending":null,"roles":["user"],"server":null,"servers":{}}]}
            admin GET /hub/api/users?sort=-last_activity&limit=4 → 200 {"_pagination":{"limit":4,"next":null,"offset":0,"total":4},"items":[{"admin":false,"auth_state":null,"created":"…","groups":[],"kind":"user","last_activity":"…","name":"alice","pending":null,"roles":["user"],"server":null,"servers":{}},{"admin":false,"auth_state":null,"created":"…","groups":[],"kind":"user","last_activity":"…","name":"carol","pending":null,"roles":["user"],"server":null,"servers":{}},{"admin":false,"auth_state":null,"created":"…","groups":[],"kind":"user","last_activity":null,"name":"bob","pending":null,"roles":["user"],"server":null,"servers":{}},{"admin":true,"auth_state":null,"created":"…","groups":[],"kind":"user","last_activity":null,"name":"admin","pending":null,"roles":["admin","user"],"server":null,"servers":{}}]}
            admin GET /hub/api/users?sort=last_activity&limit=4 → 200 {"_pagination":{"limit":4,"next":null,"offset":0,"total":4},"items":[{"admin":true,"auth_state":null,"created":"…","groups":[],"kind":"user","last_activity":null,"name":"admin","pending":null,"roles":["admin","user"],"server":null,"servers":{}},{"admin":false,"auth_state":null,"created":"…","groups":[],"kind":"user","last_activity":null,"name":"bob","pending":null,"roles":["user"],"server":null,"servers":{}},{"admin":false,"auth_state":null,"created":"…","groups":[],"kind":"user","last_activity":"…","name":"carol","pending":null,"roles":["user"],"server":null,"servers":{}},{"admin":false,"auth_state":null,"created":"…","groups":[],"kind":"user","last_activity":"…","name":"alice","pending":null,"roles":["user"],"server":null,"servers":{}}]}
            admin GET /hub/api/users?sort=age → 400 sort must be 'id', 'name', or 'last_activity', not 'age'
            admin GET /hub/api/users?name_filter=AL&limit=10 → 200 {"_pagination":{"limit":10,"next":null,"offset":0,"total":1},"items":[{"admin":false,"auth_state":null,"created":"…","groups":[],"kind":"user","last_activity":"…","name":"alice","pending":null,"roles":["user"],"server":null,"servers":{}}]}
            admin GET /hub/api/users?state=inactive&name_filter=o&sort=-name&offset=0&limit=1 → 200 {"_pagination":{"limit":1,"next":{"limit":1,"offset":1,"url":"http://127.0.0.1:8000/hub/api/users?state=inactive&name_filter=o&sort=-name&offset=1&limit=1"},"offset":0,"total":2},"items":[{"admin":false,"auth_state":null,"created":"…","groups":[],"kind":"user","last_activity":"…","name":"carol","pending":null,"roles":["user"],"server":null,"servers":{}}]}
            admin GET /hub/api/groups?limit=2 → 200 {"_pagination":{"limit":2,"next":{"limit":2,"offset":2,"url":"http://127.0.0.1:8000/hub/api/groups?offset=2&limit=2"},"offset":0,"total":3},"items":[{"kind":"group","name":"g1","properties":{},"roles":[],"users":[]},{"kind":"group","name":"g2","properties":{},"roles":[],"users":[]}]}
            admin GET /hub/api/groups?offset=2&limit=2 → 200 {"_pagination":{"limit":2,"next":null,"offset":2,"total":3},"items":[{"kind":"group","name":"g3","properties":{},"roles":[],"users":[]}]}
            OPTIONS /hub/api/users → 200 
            OPTIONS /hub/api/no-such-endpoint → 200 
            admin POST /hub/api/users/%C3%9CN%C3%8F%20b → 201 {"admin":false,"auth_state":null,"created":"…","groups":[],"kind":"user","last_activity":null,"name":"ünï b","pending":null,"roles":["user"],"server":null,"servers":{}}
            admin GET /hub/api/users/%C3%BCn%C3%AF%20b → 200 {"admin":false,"auth_state":null,"created":"…","groups":[],"kind":"user","last_activity":null,"name":"ünï b","pending":null,"roles":["user"],"server":null,"servers":{}}
            admin GET /hub/api/users/%C3%BCn%C3%AF%20b/server → 200 {"display_name":"","full_name":"ünï b/","full_progress_url":null,"full_url":null,"last_activity":null,"name":"","pending":null,"progress_url":"/hub/api/users/%C3%BCn%C3%AF%20b/server/progress","ready":false,"started":null,"stopped":true,"url":"/user/%C3%BCn%C3%AF%20b/","user_options":{}}
            admin POST /hub/api/users/a%2Fb → 400 Invalid username "a/b": username must not contain '/'
            admin POST /hub/api/users/%2E → 400 Invalid username ".": username must not be only dots
            admin POST /hub/api/groups/%C3%BC → 400 Invalid group name "ü": group name contains 'ü'; allowed are a-z, 0-9 and -_.@
        "#]],
        |replica| {
            let servers: Vec<(String, Vec<String>)> = replica.read(|s| {
                s.users
                    .values()
                    .map(|u| (u.name.clone(), u.stopped.keys().cloned().collect()))
                    .collect()
            });
            assert_eq!(
                servers,
                [
                    ("admin".to_string(), vec![]),
                    ("alice".to_string(), vec!["cpu".to_string()]),
                    ("bob".to_string(), vec![]),
                    ("carol".to_string(), vec![]),
                    ("ünï b".to_string(), vec![]),
                ]
            );
        },
    )
    .await;
}

/// Scope → endpoint → the fields visible, as JupyterHub trims models;
/// roles from the configuration (replicated `SetRoles`) with `!group=`
/// filters; `roles` in a token request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_trim_models_and_configured_roles_grant_them() {
    let role =
        |name: &str, scopes: &[&str], users: &[&str], groups: &[&str]| quorumhub_state::Role {
            name: name.into(),
            description: String::new(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            users: users.iter().map(|s| s.to_string()).collect(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            services: vec![],
        };
    let user = |name: &str| Command::CreateUser {
        name: name.into(),
        admin: false,
    };
    check_after(
        vec![
            user("alice"),
            user("bob"),
            user("carol"),
            user("ta1"),
            Command::CreateGroup {
                name: "course".into(),
                users: vec!["alice".into(), "bob".into()],
            },
            Command::CreateGroup {
                name: "other".into(),
                users: vec!["carol".into()],
            },
            Command::SetRoles {
                roles: vec![role(
                    "ta",
                    &[
                        "list:users!group=course",
                        "read:users:name!group=course",
                        "read:users:activity!group=course",
                        "read:groups!group=course",
                        "list:groups!group=course",
                    ],
                    &["ta1"],
                    &[],
                )],
            },
        ],
        r#"
        admin POST /hub/api/users/alice/tokens {"scopes": ["read:users:name!user=alice"]} => ident
        admin POST /hub/api/users/alice/tokens {"scopes": ["read:users:groups!user=alice", "read:users:activity!user=alice"]} => groupsact
        admin POST /hub/api/users/alice/tokens {"scopes": ["read:servers!user=alice"]} => servers
        admin POST /hub/api/users/ta1/tokens {"scopes": ["list:users!user=alice", "read:users:name!user=alice"]} => lister
        admin POST /hub/api/users/ta1/tokens => ta
        admin POST /hub/api/users/ta1/tokens {"roles": ["ta"]} => tarole
        admin POST /hub/api/users/ta1/tokens {"roles": ["nope"]}
        admin POST /hub/api/users/ta1/tokens {"scopes": ["read:users:name!group=other"]}
        ident GET /hub/api/user
        ident GET /hub/api/users/alice
        groupsact GET /hub/api/users/alice
        servers GET /hub/api/users/alice
        lister GET /hub/api/users
        lister GET /hub/api/users/alice
        ta GET /hub/api/users
        ta GET /hub/api/users/bob
        ta GET /hub/api/users/carol
        ta GET /hub/api/groups
        ta GET /hub/api/groups/course
        ta GET /hub/api/groups/other
        ta GET /hub/api/user
        tarole GET /hub/api/users/alice
        tarole GET /hub/api/users/ta1
        admin GET /hub/api/users/ta1
        admin GET /hub/api/groups/course
        "#,
        expect![[r#"
            admin POST /hub/api/users/alice/tokens {"scopes": ["read:users:name!user=alice"]} → 201 {"created":"…","expires_at":null,"id":"a1","kind":"api_token","last_activity":null,"note":"Requested via api by user admin","oauth_client":"JupyterHub","roles":[],"scopes":["read:users:name!user=alice"],"session_id":null,"token":"…","user":"alice"}
            admin POST /hub/api/users/alice/tokens {"scopes": ["read:users:groups!user=alice", "read:users:activity!user=alice"]} → 201 {"created":"…","expires_at":null,"id":"a2","kind":"api_token","last_activity":null,"note":"Requested via api by user admin","oauth_client":"JupyterHub","roles":[],"scopes":["read:users:activity!user=alice","read:users:groups!user=alice"],"session_id":null,"token":"…","user":"alice"}
            admin POST /hub/api/users/alice/tokens {"scopes": ["read:servers!user=alice"]} → 201 {"created":"…","expires_at":null,"id":"a3","kind":"api_token","last_activity":null,"note":"Requested via api by user admin","oauth_client":"JupyterHub","roles":[],"scopes":["read:servers!user=alice","read:users:name!user=alice"],"session_id":null,"token":"…","user":"alice"}
            admin POST /hub/api/users/ta1/tokens {"scopes": ["list:users!user=alice", "read:users:name!user=alice"]} → 201 {"created":"…","expires_at":null,"id":"a4","kind":"api_token","last_activity":null,"note":"Requested via api by user admin","oauth_client":"JupyterHub","roles":[],"scopes":["list:users!user=alice","read:users:name!user=alice"],"session_id":null,"token":"…","user":"ta1"}
            admin POST /hub/api/users/ta1/tokens → 201 {"created":"…","expires_at":null,"id":"a5","kind":"api_token","last_activity":null,"note":"Requested via api by user admin","oauth_client":"JupyterHub","roles":[],"scopes":["access:servers!user=ta1","delete:servers!user=ta1","list:groups!group=course","list:users!group=course","read:groups!group=course","read:groups:name!group=course","read:servers!user=ta1","read:tokens!user=ta1","read:users!user=ta1","read:users:activity!group=course","read:users:activity!user=ta1","read:users:groups!user=ta1","read:users:name!group=course","read:users:name!user=ta1","servers!user=ta1","start:servers!user=ta1","tokens!user=ta1","users:activity!user=ta1"],"session_id":null,"token":"…","user":"ta1"}
            admin POST /hub/api/users/ta1/tokens {"roles": ["ta"]} → 201 {"created":"…","expires_at":null,"id":"a6","kind":"api_token","last_activity":null,"note":"Requested via api by user admin","oauth_client":"JupyterHub","roles":[],"scopes":["list:groups!group=course","list:users!group=course","read:groups!group=course","read:groups:name!group=course","read:users:activity!group=course","read:users:name!group=course"],"session_id":null,"token":"…","user":"ta1"}
            admin POST /hub/api/users/ta1/tokens {"roles": ["nope"]} → 400 Role nope does not exist
            admin POST /hub/api/users/ta1/tokens {"scopes": ["read:users:name!group=other"]} → 400 Not assigning requested scopes ["read:users:name!group=other"], not held by ta1
            ident GET /hub/api/user → 200 {"admin":false,"groups":["course"],"kind":"user","name":"alice","scopes":["read:users:name!user=alice"],"session_id":null,"token_id":"a1","user_info":null}
            ident GET /hub/api/users/alice → 200 {"admin":false,"kind":"user","name":"alice"}
            groupsact GET /hub/api/users/alice → 200 {"groups":["course"],"kind":"user","last_activity":null,"name":"alice"}
            servers GET /hub/api/users/alice → 200 {"admin":false,"kind":"user","name":"alice","servers":{}}
            lister GET /hub/api/users → 200 [{"admin":false,"kind":"user","name":"alice"}]
            lister GET /hub/api/users/alice → 200 {"admin":false,"kind":"user","name":"alice"}
            ta GET /hub/api/users → 200 [{"admin":false,"kind":"user","last_activity":null,"name":"alice"},{"admin":false,"kind":"user","last_activity":null,"name":"bob"}]
            ta GET /hub/api/users/bob → 200 {"admin":false,"kind":"user","last_activity":null,"name":"bob"}
            ta GET /hub/api/users/carol → 404 No access to resources or resources not found
            ta GET /hub/api/groups → 200 [{"kind":"group","name":"course","properties":{},"users":["alice","bob"]}]
            ta GET /hub/api/groups/course → 200 {"kind":"group","name":"course","properties":{},"users":["alice","bob"]}
            ta GET /hub/api/groups/other → 404 No access to resources or resources not found
            ta GET /hub/api/user → 200 {"admin":false,"created":"…","groups":[],"kind":"user","last_activity":null,"name":"ta1","pending":null,"roles":["ta","user"],"scopes":["access:servers!user=ta1","delete:servers!user=ta1","list:groups!group=course","list:users!group=course","read:groups!group=course","read:groups:name!group=course","read:servers!user=ta1","read:tokens!user=ta1","read:users!user=ta1","read:users:activity!group=course","read:users:activity!user=ta1","read:users:groups!user=ta1","read:users:name!group=course","read:users:name!user=ta1","servers!user=ta1","start:servers!user=ta1","tokens!user=ta1","users:activity!user=ta1"],"server":null,"servers":{},"session_id":null,"token_id":"a5","user_info":null}
            tarole GET /hub/api/users/alice → 200 {"admin":false,"kind":"user","last_activity":null,"name":"alice"}
            tarole GET /hub/api/users/ta1 → 404 No access to resources or resources not found
            admin GET /hub/api/users/ta1 → 200 {"admin":false,"auth_state":null,"created":"…","groups":[],"kind":"user","last_activity":null,"name":"ta1","pending":null,"roles":["ta","user"],"server":null,"servers":{}}
            admin GET /hub/api/groups/course → 200 {"kind":"group","name":"course","properties":{},"roles":[],"users":["alice","bob"]}
        "#]],
        |_| {},
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_tokens_groups_and_pages() {
    check(
        r#"
        admin POST /hub/api/users/alice
        admin POST /hub/api/users/bob
        admin POST /hub/api/users/alice/tokens {"scopes": ["read:users!user=alice"], "note": "narrow", "expires_in": 3600} => narrow
        narrow GET /hub/api/users/alice
        narrow GET /hub/api/users/bob
        narrow GET /hub/api/users
        narrow POST /hub/api/users/alice/server
        narrow POST /hub/api/users/carol
        narrow GET /hub/api/users/alice/tokens
        narrow GET /hub/api/groups
        narrow GET /hub/api/user
        admin POST /hub/api/users/alice/tokens {"scopes": ["admin:users"]}
        admin POST /hub/api/users/alice/tokens {"scopes": ["no-such-scope"]}
        admin POST /hub/api/users/alice/tokens {"expires_in": 0}
        admin POST /hub/api/users/alice/tokens {"roles": ["admin"]}
        admin POST /hub/api/users/alice/tokens {"colour": "red"}
        admin POST /hub/api/users/alice/tokens => full
        full POST /hub/api/users/alice/tokens {"note": "mine"}
        admin POST /hub/api/users/alice/tokens {"scopes": ["tokens!user=alice"]} => minter
        minter POST /hub/api/users/alice/tokens
        minter POST /hub/api/users/alice/tokens {"scopes": ["read:tokens!user=alice"]}
        full POST /hub/api/users/bob/tokens
        full GET /hub/api/users/alice/tokens
        full DELETE /hub/api/users/alice/tokens/$narrow_id
        narrow GET /hub/api/users/alice
        full GET /hub/api/users/alice/tokens/$narrow_id
        full DELETE /hub/api/users/bob/tokens/a1
        admin POST /hub/api/groups/g1 {"users": ["alice"]}
        admin POST /hub/api/groups/g1
        admin POST /hub/api/groups/g1/users {"users": ["nobody"]}
        admin POST /hub/api/groups/g1/users {}
        admin POST /hub/api/groups/g1/users {"users": ["bob"]}
        admin GET /hub/api/users/bob
        admin PUT /hub/api/groups/g1/properties {"course": "x"}
        admin DELETE /hub/api/groups/g1/users {"users": ["alice"]}
        admin GET /hub/api/groups
        admin DELETE /hub/api/groups/g1
        admin GET /hub/api/groups/g1
        admin GET /hub/api/users/bob
        admin GET /hub/api/users?limit=1
        admin GET /hub/api/users?limit=x
        "#,
        expect![[r#"
            admin POST /hub/api/users/alice → 201 {"admin":false,"auth_state":null,"created":"…","groups":[],"kind":"user","last_activity":null,"name":"alice","pending":null,"roles":["user"],"server":null,"servers":{}}
            admin POST /hub/api/users/bob → 201 {"admin":false,"auth_state":null,"created":"…","groups":[],"kind":"user","last_activity":null,"name":"bob","pending":null,"roles":["user"],"server":null,"servers":{}}
            admin POST /hub/api/users/alice/tokens {"scopes": ["read:users!user=alice"], "note": "narrow", "expires_in": 3600} → 201 {"created":"…","expires_at":"…","id":"a1","kind":"api_token","last_activity":null,"note":"narrow","oauth_client":"JupyterHub","roles":[],"scopes":["read:users!user=alice","read:users:activity!user=alice","read:users:groups!user=alice","read:users:name!user=alice"],"session_id":null,"token":"…","user":"alice"}
            narrow GET /hub/api/users/alice → 200 {"admin":false,"created":"…","groups":[],"kind":"user","last_activity":null,"name":"alice","pending":null,"roles":["user"],"server":null}
            narrow GET /hub/api/users/bob → 404 No access to resources or resources not found
            narrow GET /hub/api/users → 403 Action is not authorized with current scopes; requires any of [list:users]
            narrow POST /hub/api/users/alice/server → 403 Action is not authorized with current scopes; requires any of [start:servers]
            narrow POST /hub/api/users/carol → 403 Action is not authorized with current scopes; requires any of [admin:users]
            narrow GET /hub/api/users/alice/tokens → 403 Action is not authorized with current scopes; requires any of [read:tokens]
            narrow GET /hub/api/groups → 403 Action is not authorized with current scopes; requires any of [list:groups]
            narrow GET /hub/api/user → 200 {"admin":false,"created":"…","groups":[],"kind":"user","last_activity":null,"name":"alice","pending":null,"roles":["user"],"scopes":["read:users!user=alice","read:users:activity!user=alice","read:users:groups!user=alice","read:users:name!user=alice"],"server":null,"session_id":null,"token_id":"a1","user_info":null}
            admin POST /hub/api/users/alice/tokens {"scopes": ["admin:users"]} → 400 Not assigning requested scopes ["admin:auth_state", "admin:users", "delete:users", "list:users", "read:roles:users", "read:users", "read:users:activity", "read:users:groups", "read:users:name", "users", "users:activity"], not held by alice
            admin POST /hub/api/users/alice/tokens {"scopes": ["no-such-scope"]} → 400 Unknown scope "no-such-scope"
            admin POST /hub/api/users/alice/tokens {"expires_in": 0} → 400 expires_in must be a positive number of seconds, not 0
            admin POST /hub/api/users/alice/tokens {"roles": ["admin"]} → 400 Not assigning requested scopes ["access:servers", "access:services", "admin-ui", "admin:auth_state", "admin:groups", "admin:server_state", "admin:servers", "admin:services", "admin:users", "delete:groups", "delete:servers", "delete:users", "groups", "list:groups", "list:services", "list:users", "read:groups", "read:groups:name", "read:hub", "read:metrics", "read:roles", "read:roles:groups", "read:roles:services", "read:roles:users", "read:servers", "read:services", "read:services:name", "read:tokens", "read:users", "read:users:activity", "read:users:groups", "read:users:name", "servers", "start:servers", "tokens", "users", "users:activity"], not held by alice
            admin POST /hub/api/users/alice/tokens {"colour": "red"} → 400 Invalid JSON in body: unknown field `colour`, expected one of `expires_in`, `note`, `scopes`, `roles` at line 1 column 9
            admin POST /hub/api/users/alice/tokens → 201 {"created":"…","expires_at":null,"id":"a2","kind":"api_token","last_activity":null,"note":"Requested via api by user admin","oauth_client":"JupyterHub","roles":[],"scopes":["access:servers!user=alice","delete:servers!user=alice","read:servers!user=alice","read:tokens!user=alice","read:users!user=alice","read:users:activity!user=alice","read:users:groups!user=alice","read:users:name!user=alice","servers!user=alice","start:servers!user=alice","tokens!user=alice","users:activity!user=alice"],"session_id":null,"token":"…","user":"alice"}
            full POST /hub/api/users/alice/tokens {"note": "mine"} → 201 {"created":"…","expires_at":null,"id":"a3","kind":"api_token","last_activity":null,"note":"mine","oauth_client":"JupyterHub","roles":[],"scopes":["access:servers!user=alice","delete:servers!user=alice","read:servers!user=alice","read:tokens!user=alice","read:users!user=alice","read:users:activity!user=alice","read:users:groups!user=alice","read:users:name!user=alice","servers!user=alice","start:servers!user=alice","tokens!user=alice","users:activity!user=alice"],"session_id":null,"token":"…","user":"alice"}
            admin POST /hub/api/users/alice/tokens {"scopes": ["tokens!user=alice"]} → 201 {"created":"…","expires_at":null,"id":"a4","kind":"api_token","last_activity":null,"note":"Requested via api by user admin","oauth_client":"JupyterHub","roles":[],"scopes":["read:tokens!user=alice","tokens!user=alice"],"session_id":null,"token":"…","user":"alice"}
            minter POST /hub/api/users/alice/tokens → 403 Not assigning requested scopes ["access:servers!user=alice", "delete:servers!user=alice", "read:servers!user=alice", "read:users!user=alice", "read:users:activity!user=alice", "read:users:groups!user=alice", "read:users:name!user=alice", "servers!user=alice", "start:servers!user=alice", "users:activity!user=alice"], not held by the requester
            minter POST /hub/api/users/alice/tokens {"scopes": ["read:tokens!user=alice"]} → 201 {"created":"…","expires_at":null,"id":"a5","kind":"api_token","last_activity":null,"note":"Requested via api","oauth_client":"JupyterHub","roles":[],"scopes":["read:tokens!user=alice"],"session_id":null,"token":"…","user":"alice"}
            full POST /hub/api/users/bob/tokens → 403 User bob not found or no permissions to generate tokens
            full GET /hub/api/users/alice/tokens → 200 {"api_tokens":[{"created":"…","expires_at":"…","id":"a1","kind":"api_token","last_activity":null,"note":"narrow","oauth_client":"JupyterHub","roles":[],"scopes":["read:users!user=alice","read:users:activity!user=alice","read:users:groups!user=alice","read:users:name!user=alice"],"session_id":null,"user":"alice"},{"created":"…","expires_at":null,"id":"a2","kind":"api_token","last_activity":null,"note":"Requested via api by user admin","oauth_client":"JupyterHub","roles":[],"scopes":["access:servers!user=alice","delete:servers!user=alice","read:servers!user=alice","read:tokens!user=alice","read:users!user=alice","read:users:activity!user=alice","read:users:groups!user=alice","read:users:name!user=alice","servers!user=alice","start:servers!user=alice","tokens!user=alice","users:activity!user=alice"],"session_id":null,"user":"alice"},{"created":"…","expires_at":null,"id":"a3","kind":"api_token","last_activity":null,"note":"mine","oauth_client":"JupyterHub","roles":[],"scopes":["access:servers!user=alice","delete:servers!user=alice","read:servers!user=alice","read:tokens!user=alice","read:users!user=alice","read:users:activity!user=alice","read:users:groups!user=alice","read:users:name!user=alice","servers!user=alice","start:servers!user=alice","tokens!user=alice","users:activity!user=alice"],"session_id":null,"user":"alice"},{"created":"…","expires_at":null,"id":"a4","kind":"api_token","last_activity":null,"note":"Requested via api by user admin","oauth_client":"JupyterHub","roles":[],"scopes":["read:tokens!user=alice","tokens!user=alice"],"session_id":null,"user":"alice"},{"created":"…","expires_at":null,"id":"a5","kind":"api_token","last_activity":null,"note":"Requested via api","oauth_client":"JupyterHub","roles":[],"scopes":["read:tokens!user=alice"],"session_id":null,"user":"alice"}]}
            full DELETE /hub/api/users/alice/tokens/a1 → 204 
            narrow GET /hub/api/users/alice → 403 Missing or invalid credentials
            full GET /hub/api/users/alice/tokens/a1 → 404 No such token a1 for user alice
            full DELETE /hub/api/users/bob/tokens/a1 → 404 No access to resources or resources not found
            admin POST /hub/api/groups/g1 {"users": ["alice"]} → 201 {"kind":"group","name":"g1","properties":{},"roles":[],"users":["alice"]}
            admin POST /hub/api/groups/g1 → 409 Group g1 already exists
            admin POST /hub/api/groups/g1/users {"users": ["nobody"]} → 404 No such user: nobody
            admin POST /hub/api/groups/g1/users {} → 400 Must specify users to add
            admin POST /hub/api/groups/g1/users {"users": ["bob"]} → 200 {"kind":"group","name":"g1","properties":{},"roles":[],"users":["alice","bob"]}
            admin GET /hub/api/users/bob → 200 {"admin":false,"auth_state":null,"created":"…","groups":["g1"],"kind":"user","last_activity":null,"name":"bob","pending":null,"roles":["user"],"server":null,"servers":{}}
            admin PUT /hub/api/groups/g1/properties {"course": "x"} → 200 {"kind":"group","name":"g1","properties":{"course":"x"},"roles":[],"users":["alice","bob"]}
            admin DELETE /hub/api/groups/g1/users {"users": ["alice"]} → 200 {"kind":"group","name":"g1","properties":{"course":"x"},"roles":[],"users":["bob"]}
            admin GET /hub/api/groups → 200 [{"kind":"group","name":"g1","properties":{"course":"x"},"roles":[],"users":["bob"]}]
            admin DELETE /hub/api/groups/g1 → 204 
            admin GET /hub/api/groups/g1 → 404 No such group: g1
            admin GET /hub/api/users/bob → 200 {"admin":false,"auth_state":null,"created":"…","groups":[],"kind":"user","last_activity":null,"name":"bob","pending":null,"roles":["user"],"server":null,"servers":{}}
            admin GET /hub/api/users?limit=1 → 200 {"_pagination":{"limit":1,"next":{"limit":1,"offset":1,"url":"http://127.0.0.1:8000/hub/api/users?offset=1&limit=1"},"offset":0,"total":3},"items":[{"admin":true,"auth_state":null,"created":"…","groups":[],"kind":"user","last_activity":null,"name":"admin","pending":null,"roles":["admin","user"],"server":null,"servers":{}}]}
            admin GET /hub/api/users?limit=x → 400 Invalid argument type, offset and limit must be integers
        "#]],
        |_| {},
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_send_browsers_without_a_session_to_sign_in() {
    check(
        r#"
        GET /hub/
        GET /hub/home
        GET /hub/spawn
        GET /hub/spawn/alice
        GET /hub/spawn-pending/alice
        GET /hub/admin
        GET /hub/cluster
        GET /hub/token
        GET /hub/login
        GET /hub/login?next=https://evil.example/
        POST /hub/login
        GET /hub/logout
        GET /hub/user/ALICE/lab?x=1
        GET /hub/user/alice/lab
        GET /user/ALICE/lab
        GET /hub/api/oauth2/authorize?client_id=jupyterhub-user-alice&redirect_uri=/user/alice/oauth_callback&response_type=code
        POST /hub/api/oauth2/token {"grant_type": "authorization_code", "code": "x"}
        GET /hub/health
        "#,
        expect![[r#"
            GET /hub/ → 302 to /hub/login?next=%2Fhub%2F
            GET /hub/home → 302 to /hub/login?next=%2Fhub%2Fhome
            GET /hub/spawn → 302 to /hub/login?next=%2Fhub%2Fspawn
            GET /hub/spawn/alice → 302 to /hub/login?next=%2Fhub%2Fspawn%2Falice
            GET /hub/spawn-pending/alice → 302 to /hub/login?next=%2Fhub%2Fspawn-pending%2Falice
            GET /hub/admin → 302 to /hub/login?next=%2Fhub%2Fadmin
            GET /hub/cluster → 302 to /hub/login?next=%2Fhub%2Fcluster
            GET /hub/token → 302 to /hub/login?next=%2Fhub%2Ftoken
            GET /hub/login → 200 page "Sign in · quorumhub"
            GET /hub/login?next=https://evil.example/ → 200 page "Sign in · quorumhub"
            POST /hub/login → 400 page "400 · quorumhub": The login form was malformed.
            GET /hub/logout → 302 to /hub/login
            GET /hub/user/ALICE/lab?x=1 → 307 to /user/alice/lab?x=1
            GET /hub/user/alice/lab → 307 to /user/alice/lab
            GET /user/ALICE/lab → 307 to /user/alice/lab
            GET /hub/api/oauth2/authorize?client_id=jupyterhub-user-alice&redirect_uri=/user/alice/oauth_callback&response_type=code → 302 to /hub/login?next=%2Fhub%2Fapi%2Foauth2%2Fauthorize%3Fclient_id%3Djupyterhub-user-alice%26redirect_uri%3D%2Fuser%2Falice%2Foauth_callback%26response_type%3Dcode
            POST /hub/api/oauth2/token {"grant_type": "authorization_code", "code": "x"} → 400 oauth invalid_request: The body must be a form (application/x-www-form-urlencoded).
            GET /hub/health → 200 {"applied":3,"leader":1,"node":1,"term":1}
        "#]],
        |_| {},
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_and_the_oauth_providers_refusals() {
    let hash = quorumhub_core::password::hash("alice-pw-0123".into())
        .await
        .expect("hash");
    check_after(
        vec![
            Command::CreateUser {
                name: "alice".into(),
                admin: false,
            },
            Command::SetPassword {
                name: "alice".into(),
                hash: Some(hash),
            },
        ],
        r#"
        @eve GET /hub/login
        @eve POST /hub/login form:username=alice&password=alice-pw-0123
        @eve POST /hub/login form:username=alice&password=wrong&_xsrf=$XSRF
        @eve POST /hub/login form:username=bad%2Fname&password=x&_xsrf=$XSRF
        @alice GET /hub/login?next=/hub/token
        @alice POST /hub/login?next=/hub/token form:username=ALICE&password=alice-pw-0123&_xsrf=$XSRF
        @alice GET /hub/token
        @alice GET /hub/home
        @alice GET /hub/admin
        @alice GET /hub/cluster
        @alice GET /hub/api/user
        @alice POST /hub/api/users/alice/server {}
        @alice GET /hub/api/oauth2/authorize?client_id=jupyterhub-user-nobody&response_type=code
        @alice GET /hub/api/oauth2/authorize?client_id=jupyterhub-user-alice&redirect_uri=https%3A%2F%2Fevil.example%2Fcb&response_type=code
        @alice GET /hub/api/oauth2/authorize?client_id=jupyterhub-user-alice&redirect_uri=%2Fuser%2Falice%2Foauth_callback&response_type=token&state=s
        @alice GET /hub/api/oauth2/authorize?client_id=jupyterhub-user-alice&redirect_uri=%2Fuser%2Falice%2Foauth_callback&response_type=code&state=s
        @alice GET /hub/api/oauth2/authorize?client_id=jupyterhub-user-alice&redirect_uri=%2Fuser%2Falice%2Foauth_callback&response_type=code&code_challenge=abc&code_challenge_method=plain
        @eve GET /hub/api/oauth2/authorize?client_id=jupyterhub-user-alice&redirect_uri=%2Fuser%2Falice%2Foauth_callback&response_type=code
        @eve POST /hub/api/oauth2/token form:grant_type=authorization_code&code=forged&client_id=jupyterhub-user-alice&client_secret=guess&redirect_uri=/user/alice/oauth_callback
        @eve POST /hub/api/oauth2/token form:grant_type=password&username=alice&password=alice-pw-0123
        @alice GET /hub/logout
        @alice GET /hub/home
        @alice GET /hub/api/user
        @eve POST /hub/login form:username=carol&password=1&_xsrf=$XSRF
        @eve POST /hub/login form:username=carol&password=2&_xsrf=$XSRF
        @eve POST /hub/login form:username=carol&password=3&_xsrf=$XSRF
        @eve POST /hub/login form:username=carol&password=4&_xsrf=$XSRF
        @eve POST /hub/login form:username=carol&password=5&_xsrf=$XSRF
        @eve POST /hub/login form:username=carol&password=6&_xsrf=$XSRF
        "#,
        expect![[r#"
            @eve GET /hub/login → 200 page "Sign in · quorumhub"
            @eve POST /hub/login form:username=alice&password=alice-pw-0123 → 403 page "403 · quorumhub": The login form expired or did not come from this hub (&#x27;_xsrf&#x27; missing or wrong).
            @eve POST /hub/login form:username=alice&password=wrong&_xsrf=$XSRF → 403 page "Sign in · quorumhub": Invalid username or password
            @eve POST /hub/login form:username=bad%2Fname&password=x&_xsrf=$XSRF → 403 page "Sign in · quorumhub": Invalid username or password
            @alice GET /hub/login?next=/hub/token → 200 page "Sign in · quorumhub"
            @alice POST /hub/login?next=/hub/token form:username=ALICE&password=alice-pw-0123&_xsrf=$XSRF → 302 to /hub/token
            @alice GET /hub/token → 200 page "Tokens · quorumhub"
            @alice GET /hub/home → 200 page "Home · quorumhub"
            @alice GET /hub/admin → 403 page "403 · quorumhub": This page is for admins.
            @alice GET /hub/cluster → 403 page "403 · quorumhub": This page is for admins.
            @alice GET /hub/api/user → 200 {"admin":false,"created":"…","groups":[],"kind":"user","last_activity":null,"name":"alice","pending":null,"roles":["user"],"scopes":["access:servers!user=alice","delete:servers!user=alice","read:servers!user=alice","read:tokens!user=alice","read:users!user=alice","read:users:activity!user=alice","read:users:groups!user=alice","read:users:name!user=alice","servers!user=alice","start:servers!user=alice","tokens!user=alice","users:activity!user=alice"],"server":null,"servers":{},"session_id":"…","token_id":null,"user_info":null}
            @alice POST /hub/api/users/alice/server {} → 202 
            @alice GET /hub/api/oauth2/authorize?client_id=jupyterhub-user-nobody&response_type=code → 400 page "400 · quorumhub": Invalid client_id parameter value.
            @alice GET /hub/api/oauth2/authorize?client_id=jupyterhub-user-alice&redirect_uri=https%3A%2F%2Fevil.example%2Fcb&response_type=code → 400 page "400 · quorumhub": Mismatching redirect URI.
            @alice GET /hub/api/oauth2/authorize?client_id=jupyterhub-user-alice&redirect_uri=%2Fuser%2Falice%2Foauth_callback&response_type=token&state=s → 302 to /user/alice/oauth_callback?error=unsupported_response_type&state=s
            @alice GET /hub/api/oauth2/authorize?client_id=jupyterhub-user-alice&redirect_uri=%2Fuser%2Falice%2Foauth_callback&response_type=code&state=s → 302 to /user/alice/oauth_callback?code=…&state=s
            @alice GET /hub/api/oauth2/authorize?client_id=jupyterhub-user-alice&redirect_uri=%2Fuser%2Falice%2Foauth_callback&response_type=code&code_challenge=abc&code_challenge_method=plain → 302 to /user/alice/oauth_callback?error=invalid_request&state=
            @eve GET /hub/api/oauth2/authorize?client_id=jupyterhub-user-alice&redirect_uri=%2Fuser%2Falice%2Foauth_callback&response_type=code → 302 to /hub/login?next=%2Fhub%2Fapi%2Foauth2%2Fauthorize%3Fclient_id%3Djupyterhub-user-alice%26redirect_uri%3D%252Fuser%252Falice%252Foauth_callback%26response_type%3Dcode
            @eve POST /hub/api/oauth2/token form:grant_type=authorization_code&code=forged&client_id=jupyterhub-user-alice&client_secret=guess&redirect_uri=/user/alice/oauth_callback → 401 oauth invalid_client: 
            @eve POST /hub/api/oauth2/token form:grant_type=password&username=alice&password=alice-pw-0123 → 400 oauth unsupported_grant_type: 
            @alice GET /hub/logout → 302 to /hub/login
            @alice GET /hub/home → 302 to /hub/login?next=%2Fhub%2Fhome
            @alice GET /hub/api/user → 403 Missing or invalid credentials
            @eve POST /hub/login form:username=carol&password=1&_xsrf=$XSRF → 403 page "Sign in · quorumhub": Invalid username or password
            @eve POST /hub/login form:username=carol&password=2&_xsrf=$XSRF → 403 page "Sign in · quorumhub": Invalid username or password
            @eve POST /hub/login form:username=carol&password=3&_xsrf=$XSRF → 403 page "Sign in · quorumhub": Invalid username or password
            @eve POST /hub/login form:username=carol&password=4&_xsrf=$XSRF → 403 page "Sign in · quorumhub": Invalid username or password
            @eve POST /hub/login form:username=carol&password=5&_xsrf=$XSRF → 429 page "Sign in · quorumhub": Too many failed sign-ins. Try again in … s.
            @eve POST /hub/login form:username=carol&password=6&_xsrf=$XSRF → 429 page "Sign in · quorumhub": Too many failed sign-ins. Try again in … s.
        "#]],
        |_| {},
    )
    .await;
}

/// RFC 7636, appendix B: a code verifier and its S256 challenge.
const PKCE_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const PKCE_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oauth_token_exchange_and_its_refusals() {
    use quorumhub_core::ops::{servers, tokens};
    use quorumhub_state::{SpawnerState, TokenOwner};
    let (router, cluster) = replica().await;
    let c: &dyn Cluster = &*cluster;
    quorumhub_core::ops::users::create(c, "alice".into(), false)
        .await
        .expect("alice");
    let hash = quorumhub_core::password::hash("alice-pw-0123".into())
        .await
        .expect("hash");
    quorumhub_core::ops::users::set_password(c, "alice".into(), Some(hash))
        .await
        .expect("password");
    // What the controller does for a spawn (there is none in memory): the
    // server's token, which is its OAuth client secret, then the record of
    // the started server naming it.
    let generation = servers::spawn(
        c,
        "alice",
        "",
        serde_json::Value::Null,
        None,
        Default::default(),
    )
    .await
    .expect("spawn");
    let (secret, token_id) = tokens::create(
        c,
        tokens::NewToken {
            owner: TokenOwner::Server {
                user: "alice".into(),
                server_name: String::new(),
            },
            note: "server token for /user/alice/".into(),
            expires_in_s: None,
            scopes: vec![],
            client_id: None,
            session: None,
        },
    )
    .await
    .expect("server token");
    let started = c
        .propose(Command::SpawnStarted {
            user: "alice".into(),
            server_name: String::new(),
            generation,
            spawner: SpawnerState {
                kind: "process".into(),
                host: "memory".into(),
                pid: 1,
                proc_start: 1,
                port: 1,
                target: "http://127.0.0.1:1".into(),
                token_id: Some(token_id),
            },
        })
        .await
        .expect("started");
    assert_eq!(started, quorumhub_state::Response::Done);
    let vars = vec![
        ("$SECRET".to_string(), secret),
        ("$CHALLENGE".to_string(), PKCE_CHALLENGE.to_string()),
        ("$VERIFIER".to_string(), PKCE_VERIFIER.to_string()),
    ];
    let got = transcript_with(
        &router,
        r#"
        @alice GET /hub/login
        @alice POST /hub/login form:username=alice&password=alice-pw-0123&_xsrf=$XSRF
        @alice GET /hub/api/oauth2/authorize?client_id=jupyterhub-user-alice&redirect_uri=%2Fuser%2Falice%2Foauth_callback&response_type=code&state=st => plain
        @srv POST /hub/api/oauth2/token form:grant_type=authorization_code&code=$plain&client_id=jupyterhub-user-alice&client_secret=not-the-secret&redirect_uri=/user/alice/oauth_callback
        @srv POST /hub/api/oauth2/token form:grant_type=authorization_code&code=$plain&client_id=jupyterhub-user-nobody&client_secret=$SECRET&redirect_uri=/user/alice/oauth_callback
        @srv POST /hub/api/oauth2/token form:grant_type=authorization_code&code=$plain&client_id=jupyterhub-user-alice&client_secret=$SECRET&redirect_uri=/user/mallory/oauth_callback
        @srv POST /hub/api/oauth2/token form:grant_type=authorization_code&code=$plain&client_id=jupyterhub-user-alice&client_secret=$SECRET&redirect_uri=/user/alice/oauth_callback => access
        @srv POST /hub/api/oauth2/token form:grant_type=authorization_code&code=$plain&client_id=jupyterhub-user-alice&client_secret=$SECRET&redirect_uri=/user/alice/oauth_callback
        access GET /hub/api/user
        access GET /hub/api/users
        access GET /hub/api/users/alice
        @alice GET /hub/api/oauth2/authorize?client_id=jupyterhub-user-alice&redirect_uri=%2Fuser%2Falice%2Foauth_callback&response_type=code&code_challenge=$CHALLENGE&code_challenge_method=S256 => pkce
        @srv POST /hub/api/oauth2/token form:grant_type=authorization_code&code=$pkce&client_id=jupyterhub-user-alice&client_secret=$SECRET&redirect_uri=/user/alice/oauth_callback
        @srv POST /hub/api/oauth2/token form:grant_type=authorization_code&code=$pkce&client_id=jupyterhub-user-alice&client_secret=$SECRET&redirect_uri=/user/alice/oauth_callback&code_verifier=wrong
        @srv POST /hub/api/oauth2/token form:grant_type=authorization_code&code=$pkce&client_id=jupyterhub-user-alice&client_secret=$SECRET&redirect_uri=/user/alice/oauth_callback&code_verifier=$VERIFIER
        @mallory COOKIE jupyterhub-hub-login=0123.abcd
        @mallory GET /hub/api/oauth2/authorize?client_id=jupyterhub-user-alice&redirect_uri=%2Fuser%2Falice%2Foauth_callback&response_type=code
        @mallory GET /hub/home
        @alice GET /hub/logout
        access GET /hub/api/user
        "#,
        vars,
    )
    .await;
    expect![[r#"
        @alice GET /hub/login → 200 page "Sign in · quorumhub"
        @alice POST /hub/login form:username=alice&password=alice-pw-0123&_xsrf=$XSRF → 302 to /hub/home
        @alice GET /hub/api/oauth2/authorize?client_id=jupyterhub-user-alice&redirect_uri=%2Fuser%2Falice%2Foauth_callback&response_type=code&state=st → 302 to /user/alice/oauth_callback?code=…&state=st
        @srv POST /hub/api/oauth2/token form:grant_type=authorization_code&code=$plain&client_id=jupyterhub-user-alice&client_secret=not-the-secret&redirect_uri=/user/alice/oauth_callback → 401 oauth invalid_client: 
        @srv POST /hub/api/oauth2/token form:grant_type=authorization_code&code=$plain&client_id=jupyterhub-user-nobody&client_secret=$SECRET&redirect_uri=/user/alice/oauth_callback → 401 oauth invalid_client: 
        @srv POST /hub/api/oauth2/token form:grant_type=authorization_code&code=$plain&client_id=jupyterhub-user-alice&client_secret=$SECRET&redirect_uri=/user/mallory/oauth_callback → 400 oauth invalid_request: Mismatching redirect URI.
        @srv POST /hub/api/oauth2/token form:grant_type=authorization_code&code=$plain&client_id=jupyterhub-user-alice&client_secret=$SECRET&redirect_uri=/user/alice/oauth_callback → 200 {"access_token":"…","expires_in":1209600,"scope":"access:servers!server=alice/ read:users:name!user read:users:groups!user","token_type":"Bearer"}
        @srv POST /hub/api/oauth2/token form:grant_type=authorization_code&code=$plain&client_id=jupyterhub-user-alice&client_secret=$SECRET&redirect_uri=/user/alice/oauth_callback → 400 oauth invalid_grant: 
        access GET /hub/api/user → 200 {"admin":false,"groups":[],"kind":"user","name":"alice","scopes":["access:servers!server=alice/","read:users:groups!user=alice","read:users:name!user=alice"],"session_id":"…","token_id":"a2","user_info":null}
        access GET /hub/api/users → 403 Action is not authorized with current scopes; requires any of [list:users]
        access GET /hub/api/users/alice → 200 {"admin":false,"groups":[],"kind":"user","name":"alice"}
        @alice GET /hub/api/oauth2/authorize?client_id=jupyterhub-user-alice&redirect_uri=%2Fuser%2Falice%2Foauth_callback&response_type=code&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256 → 302 to /user/alice/oauth_callback?code=…&state=
        @srv POST /hub/api/oauth2/token form:grant_type=authorization_code&code=$pkce&client_id=jupyterhub-user-alice&client_secret=$SECRET&redirect_uri=/user/alice/oauth_callback → 400 oauth invalid_request: Code verifier required.
        @srv POST /hub/api/oauth2/token form:grant_type=authorization_code&code=$pkce&client_id=jupyterhub-user-alice&client_secret=$SECRET&redirect_uri=/user/alice/oauth_callback&code_verifier=wrong → 400 oauth invalid_grant: 
        @srv POST /hub/api/oauth2/token form:grant_type=authorization_code&code=$pkce&client_id=jupyterhub-user-alice&client_secret=$SECRET&redirect_uri=/user/alice/oauth_callback&code_verifier=$VERIFIER → 200 {"access_token":"…","expires_in":1209600,"scope":"access:servers!server=alice/ read:users:name!user read:users:groups!user","token_type":"Bearer"}
        @mallory COOKIE jupyterhub-hub-login=0123.abcd
        @mallory GET /hub/api/oauth2/authorize?client_id=jupyterhub-user-alice&redirect_uri=%2Fuser%2Falice%2Foauth_callback&response_type=code → 302 to /hub/login?next=%2Fhub%2Fapi%2Foauth2%2Fauthorize%3Fclient_id%3Djupyterhub-user-alice%26redirect_uri%3D%252Fuser%252Falice%252Foauth_callback%26response_type%3Dcode
        @mallory GET /hub/home → 302 to /hub/login?next=%2Fhub%2Fhome
        @alice GET /hub/logout → 302 to /hub/login
        access GET /hub/api/user → 403 Missing or invalid credentials
    "#]].assert_eq(&got);
}

/// A scrape through the router: JupyterHub's gauges and each request
/// counted under its route's pattern, and no metrics without
/// `read:metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_per_route_for_read_metrics_only() {
    let (router, _cluster) = replica().await;
    let got = transcript(
        &router,
        r#"
        admin POST /hub/api/users/ada
        admin POST /hub/api/users/bob
        admin GET /hub/api/users/ada
        GET /hub/metrics
        wrong GET /hub/metrics
        admin POST /hub/api/users/admin/tokens {"scopes": ["read:metrics"]} => scraper
        admin POST /hub/api/users/ada/tokens {"scopes": ["read:users!user=ada"]} => reader
        reader GET /hub/metrics
        scraper GET /hub/metrics
        "#,
    )
    .await;
    expect![[r#"
        admin POST /hub/api/users/ada → 201 {"admin":false,"auth_state":null,"created":"…","groups":[],"kind":"user","last_activity":null,"name":"ada","pending":null,"roles":["user"],"server":null,"servers":{}}
        admin POST /hub/api/users/bob → 201 {"admin":false,"auth_state":null,"created":"…","groups":[],"kind":"user","last_activity":null,"name":"bob","pending":null,"roles":["user"],"server":null,"servers":{}}
        admin GET /hub/api/users/ada → 200 {"admin":false,"auth_state":null,"created":"…","groups":[],"kind":"user","last_activity":null,"name":"ada","pending":null,"roles":["user"],"server":null,"servers":{}}
        GET /hub/metrics → 403 Missing or invalid credentials
        wrong GET /hub/metrics → 403 Missing or invalid credentials
        admin POST /hub/api/users/admin/tokens {"scopes": ["read:metrics"]} → 201 {"created":"…","expires_at":null,"id":"a1","kind":"api_token","last_activity":null,"note":"Requested via api","oauth_client":"JupyterHub","roles":[],"scopes":["read:metrics"],"session_id":null,"token":"…","user":"admin"}
        admin POST /hub/api/users/ada/tokens {"scopes": ["read:users!user=ada"]} → 201 {"created":"…","expires_at":null,"id":"a2","kind":"api_token","last_activity":null,"note":"Requested via api by user admin","oauth_client":"JupyterHub","roles":[],"scopes":["read:users!user=ada","read:users:activity!user=ada","read:users:groups!user=ada","read:users:name!user=ada"],"session_id":null,"token":"…","user":"ada"}
        reader GET /hub/metrics → 403 Action is not authorized with current scopes; requires any of [read:metrics]
        scraper GET /hub/metrics → 200 # HELP jupyterhub_request_duration_seconds Request duration for all HTTP requests.
    "#]].assert_eq(&got);
    let (status, kind, text) = scrape(&router, TOKEN).await;
    assert_eq!(status, 200, "{text}");
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    for line in [
        "jupyterhub_total_users 3",
        "jupyterhub_running_servers 0",
        "jupyterhub_request_duration_seconds_count{method=\"POST\",handler=\"/hub/api/users/{name}\",code=\"201\"} 2",
        "jupyterhub_request_duration_seconds_count{method=\"GET\",handler=\"/hub/api/users/{name}\",code=\"200\"} 1",
        "jupyterhub_request_duration_seconds_count{method=\"GET\",handler=\"/hub/metrics\",code=\"403\"} 3",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} in:\n{text}");
    }
}

/// `GET /hub/metrics` with `token`: the status, the content type, the text.
async fn scrape(router: &axum::Router, token: &str) -> (StatusCode, String, String) {
    let req = Request::builder()
        .uri("/hub/metrics")
        .header("authorization", format!("token {token}"))
        .body(Body::empty())
        .expect("request");
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let kind = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, kind, String::from_utf8_lossy(&body).into_owned())
}

/// The starts the spawn limits refused, as JupyterHub 6 counts them:
/// `(throttled, too-many-users)`.
async fn spawn_refusals(router: &axum::Router) -> (String, String) {
    let (_, _, text) = scrape(router, TOKEN).await;
    let count = |reason: &str| {
        let series = format!(
            "jupyterhub_server_spawn_duration_seconds_count{{status=\"failure\",reason=\"{reason}\"}} "
        );
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .unwrap_or("missing")
            .to_string()
    };
    (count("throttled"), count("too-many-users"))
}

/// Profiles (`user_options.profile`, the spawn page's options form) and
/// JupyterHub's spawn limits. The in-memory cluster runs no controller, so
/// every start stays pending: what the limits count.
#[tokio::test]
async fn profiles_the_options_form_and_the_spawn_limits() {
    use quorumhub_state::{Profile, Profiles};
    let profile = |slug: &str, name: &str, default| Profile {
        slug: slug.into(),
        display_name: name.into(),
        description: format!("{name}, for tests"),
        default,
        ..Profile::default()
    };
    let profiles = Profiles::new(vec![
        profile("small", "Small", false),
        profile("gpu", "GPU", true),
    ]);
    let limits = Limits {
        concurrent_spawn_limit: 3,
        active_server_limit: 4,
        ..Limits::default()
    };
    let (router, cluster) = replica_with(limits, profiles, Duration::from_millis(20)).await;
    let c: &dyn Cluster = &*cluster;
    let hash = quorumhub_core::password::hash("alice-pw-0123".into())
        .await
        .expect("hash");
    for name in ["alice", "bob", "carol", "dave"] {
        c.propose(Command::CreateUser {
            name: name.into(),
            admin: false,
        })
        .await
        .expect("user");
    }
    c.propose(Command::SetPassword {
        name: "alice".into(),
        hash: Some(hash),
    })
    .await
    .expect("password");
    let got = transcript(
        &router,
        r#"
        admin POST /hub/api/users/bob/server {"profile": "huge"}
        admin POST /hub/api/users/bob/server {"user_options": {"profile": 3}}
        admin PUT /hub/api/users/bob/servers/lab {"user_options": {"profile": "nope"}}
        admin PATCH /hub/api/users/bob/server {"user_options": {"profile": "nope"}}
        admin POST /hub/api/users/bob/server {"user_options": {"profile": "small", "partition": "gpu"}}
        admin PUT /hub/api/users/bob/servers/lab {"req_memory": "4G"}
        @alice GET /hub/login
        @alice POST /hub/login form:username=alice&password=alice-pw-0123&_xsrf=$XSRF
        @alice GET /hub/spawn
        @alice POST /hub/spawn form:profile=huge&_xsrf=$XSRF
        @alice POST /hub/spawn form:profile=small
        @alice POST /hub/spawn/bob form:profile=small&_xsrf=$XSRF
        @alice POST /hub/spawn form:profile=small&_xsrf=$XSRF
        @alice GET /hub/spawn
        @alice GET /hub/spawn/alice/lab
        @alice POST /hub/spawn/alice/lab?next=/user/alice/lab/tree form:profile=gpu&_xsrf=$XSRF
        @alice GET /hub/spawn-pending/alice/lab
        @alice GET /hub/spawn/alice/.hidden
        @alice GET /hub/spawn/bob/lab
        admin POST /hub/api/users/bob/server {"user_options": {"profile": "gpu", "image": "kept, not used"}}
        admin POST /hub/api/users/carol/server
        admin GET /hub/api/users/carol/server
        "#,
    )
    .await;
    expect![[r#"
        admin POST /hub/api/users/bob/server {"profile": "huge"} → 400 No such profile: huge. Options include: small, gpu
        admin POST /hub/api/users/bob/server {"user_options": {"profile": 3}} → 400 user_options.profile must be a string naming one of the profiles: small, gpu
        admin PUT /hub/api/users/bob/servers/lab {"user_options": {"profile": "nope"}} → 400 No such profile: nope. Options include: small, gpu
        admin PATCH /hub/api/users/bob/server {"user_options": {"profile": "nope"}} → 400 No such profile: nope. Options include: small, gpu
        admin POST /hub/api/users/bob/server {"user_options": {"profile": "small", "partition": "gpu"}} → 400 user_options.partition is not for users to set: the hub's profiles set it. Choose one with user_options.profile: small, gpu
        admin PUT /hub/api/users/bob/servers/lab {"req_memory": "4G"} → 400 user_options.req_memory is not for users to set: the hub's profiles set it. Choose one with user_options.profile: small, gpu
        @alice GET /hub/login → 200 page "Sign in · quorumhub"
        @alice POST /hub/login form:username=alice&password=alice-pw-0123&_xsrf=$XSRF → 302 to /hub/home
        @alice GET /hub/spawn → 200 page "Server options · quorumhub"
        @alice POST /hub/spawn form:profile=huge&_xsrf=$XSRF → 400 page "Server options · quorumhub": No such profile: huge. Options include: small, gpu
        @alice POST /hub/spawn form:profile=small → 403 page "403 · quorumhub": The form did not come from this hub (&#x27;_xsrf&#x27; missing or wrong).
        @alice POST /hub/spawn/bob form:profile=small&_xsrf=$XSRF → 403 page "403 · quorumhub": You may not start bob&#x27;s server.
        @alice POST /hub/spawn form:profile=small&_xsrf=$XSRF → 302 to /hub/spawn-pending/alice
        @alice GET /hub/spawn → 302 to /hub/spawn-pending/alice
        @alice GET /hub/spawn/alice/lab → 200 page "Server options · quorumhub"
        @alice POST /hub/spawn/alice/lab?next=/user/alice/lab/tree form:profile=gpu&_xsrf=$XSRF → 302 to /hub/spawn-pending/alice/lab?next=%2Fuser%2Falice%2Flab%2Ftree
        @alice GET /hub/spawn-pending/alice/lab → 200 page "Starting · quorumhub"
        @alice GET /hub/spawn/alice/.hidden → 400 page "400 · quorumhub": Invalid server name &quot;.hidden&quot;: server name must not start with &#x27;.&#x27; or &#x27;-&#x27;
        @alice GET /hub/spawn/bob/lab → 403 page "403 · quorumhub": You may not start bob&#x27;s server.
        admin POST /hub/api/users/bob/server {"user_options": {"profile": "gpu", "image": "kept, not used"}} → 202 
        admin POST /hub/api/users/carol/server → 429 Too many users trying to log in right now. Try again in … seconds.
        admin GET /hub/api/users/carol/server → 200 {"display_name":"","full_name":"carol/","full_progress_url":null,"full_url":null,"last_activity":null,"name":"","pending":null,"progress_url":"/hub/api/users/carol/server/progress","ready":false,"started":null,"stopped":true,"url":"/user/carol/","user_options":{}}
    "#]]
    .assert_eq(&got);
    let options = |user: &str| {
        c.read(|s: &quorumhub_state::HubState| s.server(user, "").map(|sv| sv.user_options.clone()))
    };
    assert_eq!(
        options("alice"),
        Some(serde_json::json!({"profile": "small"}))
    );
    assert_eq!(
        c.read(|s: &quorumhub_state::HubState| {
            s.server("alice", "lab").map(|sv| sv.user_options.clone())
        }),
        Some(serde_json::json!({"profile": "gpu"}))
    );
    assert_eq!(
        options("bob"),
        Some(serde_json::json!({"profile": "gpu", "image": "kept, not used"}))
    );
    assert_eq!(options("carol"), None, "throttled: nothing recorded");
    assert_eq!(spawn_refusals(&router).await, ("1".into(), "0".into()));

    // The active server limit: three servers are active once one of the
    // two pending has started.
    let limits = Limits {
        concurrent_spawn_limit: 0,
        active_server_limit: 2,
        ..Limits::default()
    };
    let (router, cluster) =
        replica_with(limits, Profiles::default(), Duration::from_millis(20)).await;
    let c: &dyn Cluster = &*cluster;
    for name in ["bob", "carol", "dave"] {
        c.propose(Command::CreateUser {
            name: name.into(),
            admin: false,
        })
        .await
        .expect("user");
    }
    let got = transcript(
        &router,
        r#"
        admin POST /hub/api/users/bob/server {"profile": "gpu"}
        admin POST /hub/api/users/bob/server
        admin POST /hub/api/users/carol/server {"size": "any"}
        admin POST /hub/api/users/dave/server
        admin DELETE /hub/api/users/carol/server
        admin POST /hub/api/users/dave/server
        "#,
    )
    .await;
    expect![[r#"
        admin POST /hub/api/users/bob/server {"profile": "gpu"} → 400 No such profile: gpu. This hub offers no profiles; start the server without one
        admin POST /hub/api/users/bob/server → 202 
        admin POST /hub/api/users/carol/server {"size": "any"} → 202 
        admin POST /hub/api/users/dave/server → 429 Active user limit exceeded. Try again in a few minutes.
        admin DELETE /hub/api/users/carol/server → 202 
        admin POST /hub/api/users/dave/server → 429 Active user limit exceeded. Try again in a few minutes.
    "#]]
    .assert_eq(&got);
    assert_eq!(spawn_refusals(&router).await, ("0".into(), "2".into()));
}

/// Services (log format 8): the services API with JupyterHub's model and
/// access map, a service's token (who it is, its role's scopes and no
/// more), and a user who may see one service's name only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_their_tokens_and_the_services_api() {
    let service = |name: &str, url: Option<&str>, command: &[&str], token: Option<&str>| {
        quorumhub_state::Service {
            name: name.into(),
            url: url.map(str::to_string),
            command: command.iter().map(|c| c.to_string()).collect(),
            display: true,
            info: BTreeMap::from([("team".to_string(), "ops".to_string())]),
            token_hash: token.map(quorumhub_core::secrets::hash_token),
            oauth_redirect_uri: None,
            oauth_no_confirm: false,
            process: None,
            retired: false,
        }
    };
    let role =
        |name: &str, scopes: &[&str], users: &[&str], services: &[&str]| quorumhub_state::Role {
            name: name.into(),
            description: String::new(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            users: users.iter().map(|s| s.to_string()).collect(),
            groups: vec![],
            services: services.iter().map(|s| s.to_string()).collect(),
        };
    check_after(
        vec![
            Command::CreateUser {
                name: "alice".into(),
                admin: false,
            },
            Command::SetServices {
                services: vec![
                    service("dash", Some("http://10.0.0.5:9000"), &[], Some(DASH_TOKEN)),
                    service("culler", None, &["cull", "--timeout=3600"], None),
                ],
            },
            Command::SetRoles {
                roles: vec![
                    role("dash", &["list:users", "read:users:name"], &[], &["dash"]),
                    role("peek", &["read:services:name!service=dash"], &["alice"], &[]),
                ],
            },
        ],
        r#"
        admin GET /hub/api/services
        admin GET /hub/api/services/culler
        admin GET /hub/api/services/nope
        dash GET /hub/api/user
        dash GET /hub/api/users
        dash POST /hub/api/users/bob
        dash GET /hub/api/services
        admin POST /hub/api/users/alice/tokens => alice
        alice GET /hub/api/services/dash
        alice GET /hub/api/services/culler
        alice GET /hub/api/services
        "#,
        expect![[r#"
            admin GET /hub/api/services → 200 {"culler":{"admin":false,"command":["cull","--timeout=3600"],"display":true,"info":{"team":"ops"},"kind":"service","name":"culler","pid":0,"prefix":"","roles":[],"url":""},"dash":{"admin":false,"command":[],"display":true,"info":{"team":"ops"},"kind":"service","name":"dash","pid":0,"prefix":"/services/dash/","roles":["dash"],"url":"http://10.0.0.5:9000"}}
            admin GET /hub/api/services/culler → 200 {"admin":false,"command":["cull","--timeout=3600"],"display":true,"info":{"team":"ops"},"kind":"service","name":"culler","pid":0,"prefix":"","roles":[],"url":""}
            admin GET /hub/api/services/nope → 404 No such service: nope
            dash GET /hub/api/user → 200 {"admin":false,"command":[],"display":true,"info":{"team":"ops"},"kind":"service","name":"dash","pid":0,"prefix":"/services/dash/","roles":["dash"],"scopes":["list:users","read:users:name"],"url":"http://10.0.0.5:9000"}
            dash GET /hub/api/users → 200 [{"admin":true,"kind":"user","name":"admin"},{"admin":false,"kind":"user","name":"alice"}]
            dash POST /hub/api/users/bob → 403 Action is not authorized with current scopes; requires any of [admin:users]
            dash GET /hub/api/services → 403 Action is not authorized with current scopes; requires any of [list:services]
            admin POST /hub/api/users/alice/tokens → 201 {"created":"…","expires_at":null,"id":"a1","kind":"api_token","last_activity":null,"note":"Requested via api by user admin","oauth_client":"JupyterHub","roles":[],"scopes":["access:servers!user=alice","delete:servers!user=alice","read:servers!user=alice","read:services:name!service=dash","read:tokens!user=alice","read:users!user=alice","read:users:activity!user=alice","read:users:groups!user=alice","read:users:name!user=alice","servers!user=alice","start:servers!user=alice","tokens!user=alice","users:activity!user=alice"],"session_id":null,"token":"…","user":"alice"}
            alice GET /hub/api/services/dash → 200 {"admin":false,"kind":"service","name":"dash"}
            alice GET /hub/api/services/culler → 404 No access to resources or resources not found
            alice GET /hub/api/services → 403 Action is not authorized with current scopes; requires any of [list:services]
        "#]],
        |_| {},
    )
    .await;
}
