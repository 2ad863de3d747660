//! Servers, routes and the proxy, end to end: a spawned single-user server
//! is reached through the proxy, keeps answering while the hub leader is
//! killed, and while no hub answers at all.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{auth, client, Cluster};
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::Value;

async fn wait_ready(c: &Cluster, user: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = client()
            .get(c.proxy_url(&format!("/hub/api/users/{user}")))
            .header("Authorization", auth())
            .send()
            .await;
        if let Ok(r) = r {
            if let Ok(v) = r.json::<Value>().await {
                if v["servers"][""]["ready"] == true {
                    return;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "{user}'s server never became ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A JSON answer to an authenticated GET.
async fn get_json(url: String) -> Value {
    client()
        .get(url)
        .header("Authorization", auth())
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json")
}

async fn get(url: &str) -> Result<(StatusCode, String), reqwest::Error> {
    let r = client().get(url).send().await?;
    let s = r.status();
    Ok((s, r.text().await.unwrap_or_default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_serves_routes_and_survives_leader_kill() {
    let mut c = common::start(3, &[]).await;
    c.start_proxy();
    // Through the proxy, the hub API answers (routed to a live replica).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = client()
            .post(c.proxy_url("/hub/api/users/alice"))
            .header("Authorization", auth())
            .send()
            .await;
        if r.is_ok_and(|r| r.status() == StatusCode::CREATED) {
            break;
        }
        assert!(Instant::now() < deadline, "proxy never reached a hub");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = client()
        .post(c.proxy_url("/hub/api/users/alice/server"))
        .header("Authorization", auth())
        .send()
        .await
        .expect("start");
    assert!(
        [StatusCode::CREATED, StatusCode::ACCEPTED].contains(&r.status()),
        "{}",
        r.status()
    );
    wait_ready(&c, "alice").await;

    // The proxy keeps the full path; the server sees it under its prefix.
    let deadline = Instant::now() + Duration::from_secs(5);
    let echo = loop {
        if let Ok((StatusCode::OK, body)) = get(&c.proxy_url("/user/alice/api/echo?x=1")).await {
            break body;
        }
        assert!(Instant::now() < deadline, "route not served by the proxy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let echo: Value = serde_json::from_str(&echo).expect("echo json");
    assert!(echo.to_string().contains("/user/alice/api/echo"), "{echo}");

    let (_, before) = get(&c.proxy_url("/user/alice/api/status"))
        .await
        .expect("status");
    let pid_before = serde_json::from_str::<Value>(&before).expect("json")["pid"].clone();
    assert!(pid_before.is_u64(), "{before}");

    // A WebSocket through the proxy.
    let ws_url = format!("ws://{}/user/alice/ws", c.proxy_addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url)
        .await
        .expect("ws connect");
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        "ping-1".into(),
    ))
    .await
    .expect("send");
    let reply = ws.next().await.expect("reply").expect("ok");
    assert_eq!(reply.into_text().expect("text").as_str(), "ping-1");

    // Requests keep succeeding while the leader (which spawned the server)
    // is killed.
    let failures = Arc::new(AtomicU64::new(0));
    let successes = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let url = c.proxy_url("/user/alice/api/status");
    let load = {
        let (failures, successes, stop) = (failures.clone(), successes.clone(), stop.clone());
        tokio::spawn(async move {
            let http = client();
            while !stop.load(Ordering::Relaxed) {
                match http.get(&url).send().await {
                    Ok(r) if r.status() == StatusCode::OK => {
                        successes.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => failures.fetch_add(1, Ordering::Relaxed),
                };
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    c.kill(leader);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Then every hub: the proxy keeps routing with its last table.
    for id in c.alive() {
        c.kill(id);
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.expect("load task");
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "requests to a running server failed"
    );
    assert!(
        successes.load(Ordering::Relaxed) > 100,
        "too few requests were made"
    );
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        "ping-2".into(),
    ))
    .await
    .expect("send");
    let reply = ws.next().await.expect("reply").expect("ok");
    assert_eq!(
        reply.into_text().expect("text").as_str(),
        "ping-2",
        "the WebSocket survived"
    );

    // Bring the hubs back: the new leader adopts the server, not restarts it.
    for id in 1..=3 {
        c.spawn(id);
    }
    c.wait_leader(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(3)).await; // past a liveness poll
    wait_ready(&c, "alice").await;
    let (_, status) = get(&c.proxy_url("/user/alice/api/status"))
        .await
        .expect("status");
    let pid_after: Value = serde_json::from_str(&status).expect("json");
    assert_eq!(
        pid_after["pid"], pid_before,
        "the same process serves: adopted, not restarted"
    );

    // Stopping removes the route; the proxy then sends /user/alice/ to a hub.
    let r = client()
        .delete(c.proxy_url("/hub/api/users/alice/server"))
        .header("Authorization", auth())
        .send()
        .await
        .expect("stop");
    assert!([StatusCode::NO_CONTENT, StatusCode::ACCEPTED].contains(&r.status()));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok((StatusCode::SERVICE_UNAVAILABLE, body)) =
            get(&c.proxy_url("/user/alice/api/status")).await
        {
            assert!(body.contains("not running"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "route not removed after stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Route watchers get the table, then every change — also after the
/// leader has compacted its log into a snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_watch_streams_changes_after_log_compaction() {
    use quorumhub_proto::v1::routes_client::RoutesClient;
    use quorumhub_proto::v1::watch_event::Event;
    use quorumhub_proto::v1::WatchRequest;

    let c = common::start(3, &["--snapshot-every", "20", "--keep-logs", "0"]).await;
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    let base = format!("http://{}", c.node(leader).http);
    for i in 0..60 {
        let r = client()
            .post(format!("{base}/hub/api/users/w{i}"))
            .header("Authorization", auth())
            .send()
            .await
            .expect("create");
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let channel = quorumhub_raft::network::channel(&c.node(leader).grpc, Duration::from_secs(1))
        .expect("channel");
    let mut routes = RoutesClient::with_interceptor(
        channel,
        quorumhub_raft::auth::ClientAuth::new(common::SECRET).expect("secret"),
    );
    let mut stream = routes
        .watch(WatchRequest {
            from_revision: 0,
            watcher: "test".into(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("in time")
        .expect("ok")
        .expect("event");
    assert!(matches!(first.event, Some(Event::Snapshot(_))), "{first:?}");
    let r = client()
        .post(format!("{base}/hub/api/users/w1/server"))
        .header("Authorization", auth())
        .send()
        .await
        .expect("spawn");
    assert_eq!(r.status(), StatusCode::CREATED);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ev = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            stream.message(),
        )
        .await
        .expect("the route change arrives in time")
        .expect("ok")
        .expect("event");
        if let Some(Event::Change(ch)) = ev.event {
            if ch.prefix == "/user/w1/" && ch.route.is_some() {
                break;
            }
        }
    }
}

/// SIGTERM with --drain-delay-ms: the health check turns 503 at once while
/// requests are still served; then the proxy exits by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_proxy_fails_its_health_check_but_still_serves() {
    let c = common::start(3, &[]).await;
    let listen = c.proxy_addr.clone();
    let grpc: Vec<String> = (1..=3).map(|i| c.node(i).grpc.clone()).collect();
    let mut proxy = c.command(
        &[
            "proxy".into(),
            "--listen".into(),
            listen.clone(),
            "--hub-grpc".into(),
            grpc.join(","),
            "--drain-delay-ms".into(),
            "1500".into(),
        ],
        "draining-proxy",
    );
    let health = || async {
        client()
            .get(format!("http://{listen}/_proxy/health"))
            .send()
            .await
            .map(|r| r.status())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while health().await.ok() != Some(StatusCode::OK) {
        assert!(std::time::Instant::now() < deadline, "proxy never healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    unsafe { libc::kill(proxy.id() as i32, libc::SIGTERM) };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(health().await.ok(), Some(StatusCode::SERVICE_UNAVAILABLE));
    let api = client()
        .get(format!("http://{listen}/hub/api/"))
        .send()
        .await
        .expect("still served while draining");
    assert_eq!(api.status(), StatusCode::OK);
    let exited = tokio::task::block_in_place(|| {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = proxy.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = proxy.kill();
        let _ = proxy.wait();
        false
    });
    assert!(exited, "the proxy did not exit by itself");
    assert!(
        health().await.is_err(),
        "the listener is closed after the drain"
    );
}

/// A `/hub/...` request sent to a leader that then stops (SIGSTOP: a long
/// stall, as `docker pause` in the chaos suite) is given up with a 504 once
/// the proxy's health probes find that replica silent, instead of hanging
/// until the client's own timeout; the next write goes to the new leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_stuck_on_a_paused_leader_is_given_up_and_the_next_one_goes_elsewhere() {
    let mut c = common::start(3, &[]).await;
    c.start_proxy_ready().await;
    let slow = reqwest::Client::builder()
        .timeout(Duration::from_secs(12))
        .build()
        .expect("client");
    let create = |name: String| {
        slow.post(c.proxy_url(&format!("/hub/api/users/{name}")))
            .header("Authorization", auth())
            .send()
    };
    // The proxy knows every replica and which one leads.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !create("warm".into())
        .await
        .is_ok_and(|r| r.status() == StatusCode::CREATED)
    {
        assert!(Instant::now() < deadline, "proxy never reached a hub");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    let pid = c.node(leader).child.as_ref().expect("running").id() as i32;
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    // Sent at once, so it reaches the leader before any probe misses it.
    let stuck = create("stuck".into()).await;
    let status = stuck.as_ref().map(|r| r.status()).ok();
    // Writes resume through the proxy while the old leader stays paused.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    loop {
        n += 1;
        if create(format!("after-{n}"))
            .await
            .is_ok_and(|r| r.status() == StatusCode::CREATED)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no write through the proxy after the pause"
        );
    }
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert_eq!(
        status,
        Some(StatusCode::GATEWAY_TIMEOUT),
        "the request on the paused leader: {stuck:?}"
    );
}

/// JupyterHub 6's named servers for a user with a Unicode name, end to end:
/// created without starting (`PUT`), started with the older body shape's
/// options kept, followed on the named server's progress stream, reached
/// through the proxy at its escaped prefix (HTTP and WebSocket), stopped
/// with its record kept, and started again with the same options.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unicode_users_named_server_through_the_proxy() {
    let mut c = common::start(3, &[]).await;
    c.wait_cluster_version(quorumhub_state::LOG_FORMAT_VERSION, Duration::from_secs(10))
        .await;
    c.start_proxy();
    // "Zoë Ünï", as a client escapes it; the hub lower-cases it.
    let raw = "Zo%C3%AB%20%C3%9Cn%C3%AF";
    let user = "zo%C3%AB%20%C3%BCn%C3%AF";
    let api = |path: &str| c.proxy_url(&format!("/hub/api/users/{path}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = client()
            .post(api(raw))
            .header("Authorization", auth())
            .send()
            .await;
        if let Ok(r) = r {
            if r.status() == StatusCode::CREATED {
                let v: Value = r.json().await.expect("json");
                assert_eq!(v["name"], "zoë ünï", "{v}");
                break;
            }
        }
        assert!(Instant::now() < deadline, "proxy never reached a hub");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let created = client()
        .put(api(&format!("{user}/servers/lab")))
        .header("Authorization", auth())
        .json(&serde_json::json!({"display_name": "Lab ünï", "user_options": {"size": 2}}))
        .send()
        .await
        .expect("put");
    assert_eq!(created.status(), StatusCode::CREATED);
    let model: Value = created.json().await.expect("json");
    assert_eq!(model["stopped"], true, "{model}");
    assert_eq!(model["url"], format!("/user/{user}/lab/"), "{model}");
    // Started with no body: the created record's options are used.
    let r = client()
        .post(api(&format!("{user}/servers/lab")))
        .header("Authorization", auth())
        .send()
        .await
        .expect("start");
    assert!(
        [StatusCode::CREATED, StatusCode::ACCEPTED].contains(&r.status()),
        "{}",
        r.status()
    );
    // The named server's own progress stream ends with ready and its url.
    let progress = client()
        .get(api(&format!("{user}/servers/lab/progress")))
        .header("Authorization", auth())
        .send()
        .await
        .expect("progress");
    assert_eq!(progress.status(), StatusCode::OK);
    let events = tokio::time::timeout(Duration::from_secs(30), progress.text())
        .await
        .expect("the progress stream ends")
        .expect("body");
    assert!(
        events.contains(r#""ready":true"#) && events.contains(&format!("/user/{user}/lab/")),
        "{events}"
    );
    let model = get_json(api(&format!("{user}/servers/lab"))).await;
    assert_eq!(
        (
            &model["ready"],
            &model["display_name"],
            &model["user_options"]
        ),
        (
            &Value::Bool(true),
            &Value::from("Lab ünï"),
            &serde_json::json!({"size": 2})
        ),
        "{model}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let echo = loop {
        if let Ok((StatusCode::OK, body)) =
            get(&c.proxy_url(&format!("/user/{user}/lab/api/echo"))).await
        {
            break body;
        }
        assert!(Instant::now() < deadline, "route not served by the proxy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        echo.contains(&format!("/user/{user}/lab/api/echo")),
        "{echo}"
    );
    let ws_url = format!("ws://{}/user/{user}/lab/ws", c.proxy_addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url)
        .await
        .expect("ws connect");
    ws.send(tokio_tungstenite::tungstenite::Message::Text("ünï".into()))
        .await
        .expect("send");
    let reply = ws.next().await.expect("reply").expect("ok");
    assert_eq!(reply.into_text().expect("text").as_str(), "ünï");
    drop(ws);
    // Stopped, it stays as JupyterHub's stopped server, and a start with
    // no options reuses them.
    let r = client()
        .delete(api(&format!("{user}/servers/lab")))
        .header("Authorization", auth())
        .send()
        .await
        .expect("stop");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let model = get_json(api(&format!("{user}/servers/lab"))).await;
    assert_eq!(
        (&model["stopped"], &model["user_options"]),
        (&Value::Bool(true), &serde_json::json!({"size": 2})),
        "{model}"
    );
    let r = client()
        .post(api(&format!("{user}/servers/lab")))
        .header("Authorization", auth())
        .send()
        .await
        .expect("start again");
    assert!(
        [StatusCode::CREATED, StatusCode::ACCEPTED].contains(&r.status()),
        "{}",
        r.status()
    );
    let model = get_json(api(&format!("{user}/servers/lab"))).await;
    assert_eq!(
        model["user_options"],
        serde_json::json!({"size": 2}),
        "{model}"
    );
    assert_eq!(model["stopped"], false, "{model}");
}
