//! The overload figures of issue 9, on the same loopback cluster:
//! bystander writes under a hostile flood, a follower catching up a large
//! backlog, the write pause of a snapshot at many users, and elections on
//! an idle cluster while the machine's cores and disk are busy.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use quorumhub_proto::v1::NodeStatusRequest;
use quorumhub_testkit::{auth, Cluster};
use serde_json::{json, Value};

use crate::{ms, percentile};

/// Each replica's `(term, applied index)`, for those that answer.
async fn statuses(c: &Cluster) -> Vec<(u64, u64, u64)> {
    let mut out = Vec::new();
    for id in c.alive() {
        let mut a = c.admin(id).await;
        let mut req = tonic::Request::new(NodeStatusRequest {});
        req.set_timeout(Duration::from_millis(500));
        if let Ok(s) = a.node_status(req).await {
            let s = s.into_inner();
            out.push((id, s.term, s.applied_index));
        }
    }
    out
}

async fn max_term(c: &Cluster) -> u64 {
    statuses(c).await.iter().map(|s| s.1).max().unwrap_or(0)
}

/// Writers creating users through the proxy (the bystanders), until `stop`.
fn bystanders(
    c: &Cluster,
    prefix: &str,
    writers: usize,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<(Vec<Duration>, usize)>> {
    (0..writers)
        .map(|w| {
            let (stop, base, prefix) = (
                stop.clone(),
                c.proxy_url("/hub/api/users/"),
                prefix.to_string(),
            );
            tokio::spawn(async move {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(15))
                    .build()
                    .expect("client");
                let (mut lat, mut failed, mut i) = (Vec::new(), 0, 0);
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let t = Instant::now();
                    let r = http
                        .post(format!("{base}{prefix}-{w}-{i}"))
                        .header("Authorization", auth())
                        .send()
                        .await;
                    if r.is_ok_and(|r| r.status() == reqwest::StatusCode::CREATED) {
                        lat.push(t.elapsed());
                    } else {
                        failed += 1;
                    }
                }
                (lat, failed)
            })
        })
        .collect()
}

async fn collect(
    tasks: Vec<tokio::task::JoinHandle<(Vec<Duration>, usize)>>,
) -> (Vec<Duration>, usize) {
    let (mut all, mut failed) = (Vec::new(), 0);
    for t in tasks {
        if let Ok((l, f)) = t.await {
            all.extend(l);
            failed += f;
        }
    }
    all.sort();
    (all, failed)
}

fn latency_json(lat: &[Duration], failed: usize) -> Value {
    json!({
        "writes": lat.len(),
        "failed": failed,
        "p50_ms": ms(percentile(lat, 0.5)),
        "p99_ms": ms(percentile(lat, 0.99)),
        "max_ms": ms(lat.last().copied().unwrap_or_default()),
    })
}

/// Bystander writes for `secs` alone, then for `secs` beside 8 clients of
/// one non-admin user sending maximum-size and over-quota requests.
pub async fn hostile_flood(c: &Cluster, secs: u64) -> anyhow::Result<Value> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()?;
    let r = http
        .post(c.proxy_url("/hub/api/users/hostile"))
        .header("Authorization", auth())
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("cannot create the hostile user: {}", r.status());
    }
    let r: Value = http
        .post(c.proxy_url("/hub/api/users/hostile/tokens"))
        .header("Authorization", auth())
        .json(&json!({"note": "bench: hostile"}))
        .send()
        .await?
        .json()
        .await?;
    let token = r["token"]
        .as_str()
        .context("no token for the hostile user")?
        .to_string();

    let term_before = max_term(c).await;
    let stop = Arc::new(AtomicBool::new(false));
    let base = bystanders(c, "calm", 4, stop.clone());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let (calm, calm_failed) = collect(base).await;

    let stop = Arc::new(AtomicBool::new(false));
    let by = bystanders(c, "flooded", 4, stop.clone());
    let counts: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let until = Instant::now() + Duration::from_secs(secs);
    let mut flood = Vec::new();
    for f in 0..8u64 {
        let (http, counts, token) = (http.clone(), counts.clone(), token.clone());
        let cluster_proxy = c.proxy_url("").trim_end_matches('/').to_string();
        flood.push(tokio::spawn(async move {
            let mut n = f;
            while Instant::now() < until {
                let req = hostile_at(&http, &cluster_proxy, &token, n);
                let key = match req.send().await {
                    Ok(r) => r.status().as_u16().to_string(),
                    Err(_) => "error".into(),
                };
                if let Ok(mut m) = counts.lock() {
                    *m.entry(key).or_default() += 1;
                }
                n += 8;
            }
        }));
    }
    for f in flood {
        let _ = f.await;
    }
    stop.store(true, Ordering::Relaxed);
    let (flooded, flooded_failed) = collect(by).await;
    let term_after = max_term(c).await;
    let answers = counts.lock().map(|m| m.clone()).unwrap_or_default();
    Ok(json!({
        "seconds_each": secs,
        "bystanders_alone": latency_json(&calm, calm_failed),
        "bystanders_under_flood": latency_json(&flooded, flooded_failed),
        "hostile_answers": answers,
        "elections": term_after.saturating_sub(term_before),
    }))
}

/// One hostile request by number (as in the chaos suite's flood): the
/// largest allowed note until the token quota answers 429, a note over the
/// limit (400), a 1 MB body (413), an oversized `user_options` (413).
fn hostile_at(http: &reqwest::Client, proxy: &str, token: &str, n: u64) -> reqwest::RequestBuilder {
    let base = format!("{proxy}/hub/api/users/hostile");
    match n % 4 {
        0 => http
            .post(format!("{base}/tokens"))
            .json(&json!({"note": "n".repeat(1024)})),
        1 => http
            .post(format!("{base}/tokens"))
            .json(&json!({"note": "n".repeat(2048)})),
        2 => http
            .post(format!("{base}/tokens"))
            .header("content-type", "application/json")
            .body(vec![b' '; 1 << 20]),
        _ => http
            .post(format!("{base}/servers/x{}", n % 7))
            .json(&json!({"user_options": {"x": "o".repeat(100 << 10)}})),
    }
    .header("Authorization", format!("token {token}"))
}

/// A follower stopped while `entries` group-property writes of about
/// `bytes` each are committed, then started: the time until it has applied
/// everything the leader had.
pub async fn follower_catch_up(
    c: &mut Cluster,
    entries: usize,
    bytes: usize,
) -> anyhow::Result<Value> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()?;
    let r = http
        .post(c.proxy_url("/hub/api/groups/bench-backlog"))
        .header("Authorization", auth())
        .send()
        .await?;
    if !(r.status().is_success() || r.status() == reqwest::StatusCode::CONFLICT) {
        bail!("cannot create the backlog group: {}", r.status());
    }
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let follower = (1..=3).find(|i| *i != leader).context("no follower")?;
    c.kill(follower);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (http, next, url) = (
            http.clone(),
            next.clone(),
            c.proxy_url("/hub/api/groups/bench-backlog/properties"),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= entries {
                    return Ok::<(), anyhow::Error>(());
                }
                let body = json!({"i": i, "pad": "p".repeat(bytes.saturating_sub(40))});
                let r = http
                    .put(&url)
                    .header("Authorization", auth())
                    .json(&body)
                    .send()
                    .await?;
                if !r.status().is_success() {
                    bail!("backlog write answered {}", r.status());
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let target = statuses(c)
        .await
        .iter()
        .find(|s| s.0 == leader)
        .map(|s| s.2)
        .context("the leader does not answer")?;
    let term_before = max_term(c).await;
    let started = Instant::now();
    c.spawn(follower);
    let caught_up = loop {
        if statuses(c)
            .await
            .iter()
            .any(|s| s.0 == follower && s.2 >= target)
        {
            break started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("the follower did not catch up within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    Ok(json!({
        "entries": entries,
        "entry_bytes": bytes,
        "backlog_mb": (entries * bytes) as f64 / 1e6,
        "catch_up_ms_from_start": ms(caught_up),
        "elections": max_term(c).await.saturating_sub(term_before),
    }))
}

/// Create users until there are `users`, then write one at a time across
/// `window` entries (at least one snapshot is built meanwhile, every
/// `--snapshot-every` entries): the slowest write is the snapshot's pause.
pub async fn snapshot_pause(c: &Cluster, users: usize, window: usize) -> anyhow::Result<Value> {
    let fill = crate::creates(c, "snap", users, 32).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut lat = Vec::with_capacity(window);
    for i in 0..window {
        let t = Instant::now();
        let r = http
            .post(c.proxy_url(&format!("/hub/api/users/snap-w-{i}")))
            .header("Authorization", auth())
            .send()
            .await?;
        if r.status() != reqwest::StatusCode::CREATED {
            bail!("create answered {}", r.status());
        }
        lat.push(t.elapsed());
    }
    lat.sort();
    Ok(json!({
        "users": users,
        "fill": fill,
        "writes_across_a_snapshot": window,
        "p50_ms": ms(percentile(&lat, 0.5)),
        "p99_ms": ms(percentile(&lat, 0.99)),
        "max_ms_the_pause": ms(lat.last().copied().unwrap_or_default()),
    }))
}

/// Count elections on an idle cluster for `secs` while this process keeps
/// every core busy and writes and fsyncs 64 MB files in a loop.
pub async fn elections_under_load(c: &Cluster, secs: u64) -> anyhow::Result<Value> {
    let term_before = max_term(c).await;
    let stop = Arc::new(AtomicBool::new(false));
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let mut load = Vec::new();
    for _ in 0..cores {
        let stop = stop.clone();
        load.push(std::thread::spawn(move || {
            let mut x: u64 = 1;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..100_000 {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                }
                std::hint::black_box(x);
            }
        }));
    }
    let dir = tempfile::tempdir()?;
    {
        let stop = stop.clone();
        let path = dir.path().join("load");
        load.push(std::thread::spawn(move || {
            use std::io::Write;
            let chunk = vec![7u8; 1 << 20];
            while !stop.load(Ordering::Relaxed) {
                if let Ok(mut f) = std::fs::File::create(&path) {
                    for _ in 0..64 {
                        let _ = f.write_all(&chunk);
                    }
                    let _ = f.sync_all();
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        let _ = t.join();
    }
    let elections = max_term(c).await.saturating_sub(term_before);
    Ok(json!({
        "seconds": secs,
        "busy_threads": cores,
        "disk_writer": "64 MB files, fsynced, in a loop",
        "elections": elections,
        "elections_per_hour": (elections as f64 * 3600.0 / secs as f64).round(),
    }))
}
