//! The REST API's answers to bad input, as data: request → status + message.

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
async fn rest_bad_input_gets_jupyterhub_errors() {
    let c = common::start(3, &[]).await;
    c.wait_cluster_version(quorumhub_state::LOG_FORMAT_VERSION, Duration::from_secs(10))
        .await;
    let cases = [
        case(
            Method::GET,
            "/hub/api/users",
            None,
            None,
            403,
            "Missing or invalid credentials",
        ),
        case(
            Method::GET,
            "/hub/api/users",
            Some("wrong-token-wrong-token"),
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
            "/hub/api/users/bad%20name",
            ADMIN,
            None,
            400,
            "Invalid username",
        ),
        case(
            Method::POST,
            "/hub/api/users/.dot",
            ADMIN,
            None,
            400,
            "Invalid username",
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
            Method::POST,
            "/hub/api/users/bob",
            ADMIN,
            Some("{\"admin\": \"yes\"}"),
            400,
            "Invalid JSON in body",
        ),
        case(
            Method::POST,
            "/hub/api/users/bob",
            ADMIN,
            Some("{\"unknown\": 1}"),
            400,
            "Invalid JSON in body",
        ),
        case(
            Method::GET,
            "/hub/api/users/nobody",
            ADMIN,
            None,
            404,
            "No such user: nobody",
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
            Method::POST,
            "/hub/api/users",
            ADMIN,
            Some("{\"usernames\": []}"),
            400,
            "at least one user",
        ),
        case(
            Method::POST,
            "/hub/api/users",
            ADMIN,
            Some("[1,2]"),
            400,
            "Invalid JSON in body",
        ),
        case(
            Method::POST,
            "/hub/api/users",
            ADMIN,
            Some("{\"usernames\": [\"alice\"]}"),
            409,
            "already exist",
        ),
        case(
            Method::POST,
            "/hub/api/users/nobody/server",
            ADMIN,
            None,
            404,
            "No such user: nobody",
        ),
        case(
            Method::DELETE,
            "/hub/api/users/alice/server",
            ADMIN,
            None,
            400,
            "alice has no active server",
        ),
        case(
            Method::DELETE,
            "/hub/api/users/alice/servers/gpu",
            ADMIN,
            None,
            404,
            "has no server named 'gpu'",
        ),
        case(
            Method::POST,
            "/hub/api/users/alice/servers/bad%2Fname",
            ADMIN,
            None,
            400,
            "Invalid server name",
        ),
        case(
            Method::POST,
            "/hub/api/users/alice/server",
            ADMIN,
            Some("[\"not an object\"]"),
            400,
            "user_options must be a JSON object",
        ),
        case(
            Method::GET,
            "/hub/api/users?state=weird",
            ADMIN,
            None,
            400,
            "Unrecognized state filter",
        ),
        case(Method::GET, "/hub/api/users?offset=x", ADMIN, None, 400, ""),
        case(
            Method::GET,
            "/hub/api/no-such-endpoint",
            ADMIN,
            None,
            404,
            "Not Found",
        ),
        case(
            Method::DELETE,
            "/hub/api/users/admin",
            ADMIN,
            None,
            400,
            "Cannot delete yourself",
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
