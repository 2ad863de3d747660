//! `/hub/metrics` and the proxy's `--metrics-listen` scraped by a real
//! Prometheus server (Debian's `prometheus` package; .ci/run installs it):
//! every replica's series, with JupyterHub's names and Raft's, and the
//! proxy's, reach its query API.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{client, TOKEN};
use reqwest::StatusCode;
use serde_json::Value;

const PROMETHEUS: &str = "/usr/bin/prometheus";

/// Prometheus's answer to the instant query `q`: its result vector.
async fn query(base: &str, q: &str) -> Vec<Value> {
    let r = client()
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .await;
    let Ok(r) = r else { return Vec::new() };
    let v: Value = r.json().await.unwrap_or_default();
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// The value of each series of `q`, by its `instance` label (empty for an
/// aggregate).
async fn by_instance(base: &str, q: &str) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = query(base, q)
        .await
        .iter()
        .filter_map(|s| {
            let instance = s["metric"]["instance"].as_str().unwrap_or("").to_string();
            let value = s["value"][1].as_str()?.parse().ok()?;
            Some((instance, value))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Poll `check` until it holds (or fail with what Prometheus last said).
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match check().await {
            Ok(()) => return,
            Err(last) if Instant::now() > deadline => panic!("{what}: {last}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

fn prometheus_config(dir: &Path, targets: &[String], proxy: &str) -> std::path::PathBuf {
    let list = targets
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n  - job_name: quorumhub\n    metrics_path: /hub/metrics\n\
         \x20   authorization:\n      type: token\n      credentials: {TOKEN}\n\
         \x20   static_configs:\n      - targets: [{list}]\n\
         \x20 - job_name: proxy\n    metrics_path: /metrics\n\
         \x20   static_configs:\n      - targets: ['{proxy}']\n"
    );
    let path = dir.join("prometheus.yml");
    std::fs::write(&path, text).expect("write prometheus.yml");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_every_replica() {
    assert!(
        Path::new(PROMETHEUS).exists(),
        "{PROMETHEUS} is missing: apt-get install prometheus (.ci/run does)"
    );
    let mut c = common::start(3, &[]).await;
    let proxy_metrics = format!("127.0.0.1:{}", quorumhub_testkit::free_port());
    c.start_proxy_ready_with(&["--metrics-listen", &proxy_metrics])
        .await;
    for name in ["ada", "bob", "cy"] {
        let r = client()
            .post(c.url(1, &format!("/hub/api/users/{name}")))
            .header("Authorization", format!("token {TOKEN}"))
            .send()
            .await
            .expect("create");
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    // A spawn the leader's controller times.
    let r = client()
        .post(c.url(2, "/hub/api/users/ada/server"))
        .header("Authorization", format!("token {TOKEN}"))
        .send()
        .await
        .expect("spawn");
    assert!(r.status().is_success(), "{}", r.status());

    // Without read:metrics, no metrics.
    let r = client()
        .get(c.url(1, "/hub/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    let targets: Vec<String> = c.nodes.iter().map(|n| n.http.clone()).collect();
    // Through the proxy: to the hub, and to the started server.
    for path in ["/hub/api/users/bob", "/hub/api/users/cy"] {
        let r = client()
            .get(c.proxy_url(path))
            .header("Authorization", format!("token {TOKEN}"))
            .send()
            .await
            .expect("through the proxy");
        assert_eq!(r.status(), StatusCode::OK);
    }
    let config = prometheus_config(c.dir.path(), &targets, &proxy_metrics);
    let port = quorumhub_testkit::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(c.dir.path().join("prometheus.log")).expect("log");
    let mut prometheus = tokio::process::Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            c.dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("start prometheus");

    let want = |q: &'static str, expect: fn(&[(String, f64)]) -> bool| {
        let base = base.clone();
        move || {
            let base = base.clone();
            async move {
                let got = by_instance(&base, q).await;
                if expect(&got) {
                    Ok(())
                } else {
                    Err(format!("{q} = {got:?}"))
                }
            }
        }
    };
    let limit = Duration::from_secs(30);
    eventually(
        "every replica is up",
        limit,
        want("up", |v| v.len() == 4 && v.iter().all(|(_, x)| *x == 1.0)),
    )
    .await;
    // The admin and the three new users, on every replica.
    eventually(
        "jupyterhub_total_users",
        limit,
        want("jupyterhub_total_users", |v| {
            v.len() == 3 && v.iter().all(|(_, x)| *x == 4.0)
        }),
    )
    .await;
    eventually(
        "one leader",
        limit,
        want("sum(quorumhub_raft_is_leader)", |v| {
            v.first().is_some_and(|(_, x)| *x == 1.0)
        }),
    )
    .await;
    eventually(
        "one term everywhere",
        limit,
        want("count(count_values(\"term\", quorumhub_raft_term))", |v| {
            v.first().is_some_and(|(_, x)| *x == 1.0)
        }),
    )
    .await;
    eventually(
        "the spawn is timed by the leader",
        limit,
        want(
            "sum(jupyterhub_server_spawn_duration_seconds_count{status=\"success\"})",
            |v| v.first().is_some_and(|(_, x)| *x == 1.0),
        ),
    )
    .await;
    eventually(
        "the leader sees both followers caught up",
        limit,
        want("max(quorumhub_raft_replication_lag_entries)", |v| {
            v.first().is_some_and(|(_, x)| *x == 0.0)
        }),
    )
    .await;
    eventually(
        "requests are counted per route",
        limit,
        want(
            "sum(jupyterhub_request_duration_seconds_count{handler=\"/hub/api/users/{name}\",method=\"POST\",code=\"201\"})",
            |v| v.first().is_some_and(|(_, x)| *x == 3.0),
        ),
    )
    .await;
    eventually(
        "every replica knows a committed index",
        limit,
        want("count(quorumhub_raft_committed_index > 0)", |v| {
            v.first().is_some_and(|(_, x)| *x == 3.0)
        }),
    )
    .await;
    eventually(
        "appends are timed",
        limit,
        want("min(quorumhub_raft_append_duration_seconds_count)", |v| {
            v.first().is_some_and(|(_, x)| *x > 0.0)
        }),
    )
    .await;
    eventually(
        "the proxy counts what it forwarded to the hubs",
        limit,
        want(
            "quorumhub_proxy_requests_total{kind=\"hub\",class=\"2xx\"}",
            |v| v.first().is_some_and(|(_, x)| *x >= 2.0),
        ),
    )
    .await;
    eventually(
        "the proxy watches a table that holds ada's route",
        limit,
        want(
            "quorumhub_proxy_routes * on() quorumhub_proxy_watch_connected",
            |v| v.first().is_some_and(|(_, x)| *x == 1.0),
        ),
    )
    .await;
    let _ = prometheus.kill().await;
}
