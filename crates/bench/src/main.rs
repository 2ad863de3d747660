//! `qh-bench`: measures a real cluster (3 replica processes + 1 proxy on
//! loopback, durable writes) the way the JupyterHub figures in the README
//! were taken, so the two can be read side by side.
//!
//! ```text
//! cargo build --release && cargo run --release -p quorumhub-bench -- [--quick]
//! ```
//!
//! Workloads:
//! 1. `POST /hub/api/users/{name}` through the proxy at concurrency 1 and 32:
//!    throughput, p50, p99.
//! 2. Write gap after `kill -9` of the leader: from the kill to the first
//!    acknowledged write, writers running through the proxy; several trials.
//! 3. Route propagation: from the route's commit, as observed by a watcher
//!    of the leader's route stream, to the first request the proxy serves on
//!    it (polled every 0.5 ms). Observation is after the commit, so this is
//!    a lower bound on the true delay, floored at 0 when the proxy is first.
//! 4. Overload (issue 9, `overload.rs`): bystander writes alone and beside a
//!    hostile non-admin flood; elections on an idle cluster while every core
//!    and the disk are busy; a follower catching up a backlog of large
//!    entries; the slowest write across a snapshot at many users.

mod overload;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use quorumhub_proto::v1::routes_client::RoutesClient;
use quorumhub_proto::v1::watch_event::Event;
use quorumhub_proto::v1::WatchRequest;
use quorumhub_testkit::{auth, Cluster, SECRET};
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// The quorumhub binary (default: target/release/quorumhub next to this one).
    #[arg(long)]
    exe: Option<PathBuf>,
    /// Creates at concurrency 1.
    #[arg(long, default_value_t = 1000)]
    c1: usize,
    /// Creates at concurrency 32.
    #[arg(long, default_value_t = 4000)]
    c32: usize,
    /// Leader-kill trials.
    #[arg(long, default_value_t = 5)]
    trials: usize,
    /// Route propagation samples.
    #[arg(long, default_value_t = 20)]
    routes: usize,
    /// Seconds of bystander writes alone, then beside the hostile flood.
    #[arg(long, default_value_t = 10)]
    flood_s: u64,
    /// Seconds an idle cluster is watched for elections under CPU and disk load.
    #[arg(long, default_value_t = 120)]
    elections_s: u64,
    /// Entries of the backlog a stopped follower catches up (0: skip).
    #[arg(long, default_value_t = 2000)]
    backlog_entries: usize,
    /// Size of each backlog entry (group properties, under the 16 KiB limit).
    #[arg(long, default_value_t = 15_000)]
    backlog_entry_bytes: usize,
    /// Users to create before measuring a snapshot's write pause (0: skip).
    #[arg(long, default_value_t = 100_000)]
    snapshot_users: usize,
    /// Small numbers, for a smoke run.
    #[arg(long)]
    quick: bool,
    /// Extra flags for every hub replica, e.g. "--heartbeat-ms 20".
    #[arg(long, allow_hyphen_values = true)]
    hub_args: Option<String>,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

async fn creates(
    c: &Cluster,
    prefix: &str,
    total: usize,
    concurrency: usize,
) -> anyhow::Result<serde_json::Value> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let lat = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, next, lat) = (http.clone(), next.clone(), lat.clone());
        let base = c.proxy_url("/hub/api/users/");
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<(), anyhow::Error>(());
                }
                let t = Instant::now();
                let r = http
                    .post(format!("{base}{prefix}-{i}"))
                    .header("Authorization", auth())
                    .send()
                    .await?;
                if r.status() != reqwest::StatusCode::CREATED {
                    bail!("create answered {}", r.status());
                }
                lat.lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .push(t.elapsed());
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed();
    let mut lat = lat.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    lat.sort();
    Ok(json!({
        "concurrency": concurrency,
        "requests": total,
        "per_second": (total as f64 / elapsed.as_secs_f64()).round(),
        "p50_ms": ms(percentile(&lat, 0.5)),
        "p99_ms": ms(percentile(&lat, 0.99)),
    }))
}

/// Kill the leader while 4 writers run through the proxy; the gap is from
/// the kill to the first acknowledgement of a write sent after it (a write
/// already committed before the kill may be acknowledged later; it does not
/// count).
async fn write_gap(c: &mut Cluster, trial: usize, keep_alive: bool) -> anyhow::Result<Duration> {
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let acks: Arc<Mutex<Vec<(Instant, Instant)>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..4 {
        let (stop, acks) = (stop.clone(), acks.clone());
        let base = c.proxy_url("/hub/api/users/");
        writers.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .pool_max_idle_per_host(if keep_alive { 8 } else { 0 })
                .build()
                .expect("client");
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let sent = Instant::now();
                let r = http
                    .post(format!("{base}gap-{keep_alive}-{trial}-{w}-{i}"))
                    .header("Authorization", auth())
                    .send()
                    .await;
                if r.is_ok_and(|r| r.status() == reqwest::StatusCode::CREATED) {
                    if let Ok(mut a) = acks.lock() {
                        a.push((sent, Instant::now()));
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.kill(leader);
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(20);
    let gap = loop {
        let first = acks.lock().ok().and_then(|a| {
            a.iter()
                .filter(|(sent, _)| *sent > killed)
                .map(|(_, acked)| *acked)
                .min()
        });
        if let Some(t) = first {
            break t - killed;
        }
        if Instant::now() > deadline {
            bail!("no write was acknowledged within 20 s of the leader's death");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.await;
    }
    c.spawn(leader);
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(gap)
}

/// Route commit (the leader's watch stream) → first 200 through the proxy.
async fn route_propagation(c: &Cluster, samples: usize) -> anyhow::Result<Vec<Duration>> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let mut out = Vec::new();
    for i in 0..samples {
        let user = format!("route-{i}");
        let r = http
            .post(c.proxy_url(&format!("/hub/api/users/{user}")))
            .header("Authorization", auth())
            .send()
            .await?;
        if r.status() != reqwest::StatusCode::CREATED {
            bail!("create {user}: {}", r.status());
        }
        let leader = c.wait_leader(Duration::from_secs(5)).await;
        let channel =
            quorumhub_raft::network::channel(&c.node(leader).grpc, Duration::from_secs(1))?;
        let mut routes =
            RoutesClient::with_interceptor(channel, quorumhub_raft::auth::ClientAuth::new(SECRET)?);
        let mut stream = routes
            .watch(WatchRequest {
                from_revision: 0,
                watcher: "bench".into(),
            })
            .await?
            .into_inner();
        let prefix = format!("/user/{user}/");
        let committed: Arc<Mutex<Option<Instant>>> = Arc::default();
        let seen = committed.clone();
        let watcher = tokio::spawn(async move {
            // The first sight of the route on the leader: a change, or a
            // snapshot if the stream (re)started after the commit.
            while let Ok(Some(ev)) = stream.message().await {
                let found = match ev.event {
                    Some(Event::Change(ch)) => ch.route.is_some() && ch.prefix == prefix,
                    Some(Event::Snapshot(s)) => s.routes.iter().any(|r| r.prefix == prefix),
                    _ => false,
                };
                if found {
                    if let Ok(mut s) = seen.lock() {
                        *s = Some(Instant::now());
                    }
                    return;
                }
            }
        });
        let start = http
            .post(c.proxy_url(&format!("/hub/api/users/{user}/server")))
            .header("Authorization", auth());
        let starter = tokio::spawn(start.send());
        let url = c.proxy_url(&format!("/user/{user}/api/status"));
        let deadline = Instant::now() + Duration::from_secs(30);
        let served = loop {
            if http
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status() == reqwest::StatusCode::OK)
            {
                break Instant::now();
            }
            if Instant::now() > deadline {
                bail!("{user}'s route was never served");
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        };
        let _ = starter.await;
        // The bench's own stream may see the route after the proxy served
        // it: wait for it rather than lose the sample.
        let _ = tokio::time::timeout(Duration::from_secs(5), watcher).await;
        let committed = committed
            .lock()
            .ok()
            .and_then(|c| *c)
            .context("the leader's watch stream never showed the route")?;
        out.push(served.saturating_duration_since(committed));
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.quick {
        (args.c1, args.c32, args.trials, args.routes) = (100, 400, 2, 5);
        (
            args.flood_s,
            args.elections_s,
            args.backlog_entries,
            args.snapshot_users,
        ) = (3, 10, 300, 0);
    }
    let exe = match args.exe.clone() {
        Some(e) => e,
        None => std::env::current_exe()?.with_file_name("quorumhub"),
    };
    if !exe.exists() {
        bail!(
            "{} not found: build it first (cargo build --release) or pass --exe",
            exe.display()
        );
    }
    eprintln!("starting 3 replicas + proxy from {}", exe.display());
    let extra: Vec<&str> = args
        .hub_args
        .as_deref()
        .map(|a| a.split_whitespace().collect())
        .unwrap_or_default();
    let mut c = Cluster::start(exe, 3, &extra).await;
    c.start_proxy();
    // Wait until the proxy reaches a hub.
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http
        .get(c.proxy_url("/hub/api/users"))
        .header("Authorization", auth())
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        if Instant::now() > deadline {
            bail!("proxy never answered");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    eprintln!("creates at concurrency 1 ...");
    let c1 = creates(&c, "c1", args.c1, 1).await?;
    eprintln!("{c1}");
    eprintln!("creates at concurrency 32 ...");
    let c32 = creates(&c, "c32", args.c32, 32).await?;
    eprintln!("{c32}");

    eprintln!("route propagation ...");
    let mut routes = route_propagation(&c, args.routes).await?;
    routes.sort();
    let routes_json = json!({
        "samples": routes.len(),
        "p50_ms": ms(percentile(&routes, 0.5)),
        "p99_ms": ms(percentile(&routes, 0.99)),
        "max_ms": ms(routes.last().copied().unwrap_or_default()),
    });
    eprintln!("{routes_json}");

    eprintln!("bystanders alone, then beside a hostile flood ...");
    let flood = overload::hostile_flood(&c, args.flood_s).await?;
    eprintln!("{flood}");
    eprintln!("elections on an idle cluster under CPU and disk load ...");
    let elections = overload::elections_under_load(&c, args.elections_s).await?;
    eprintln!("{elections}");
    let catch_up = if args.backlog_entries > 0 {
        eprintln!("a stopped follower catches up a backlog ...");
        let v = overload::follower_catch_up(&mut c, args.backlog_entries, args.backlog_entry_bytes)
            .await?;
        eprintln!("{v}");
        v
    } else {
        serde_json::Value::Null
    };

    let mut gap_json = serde_json::Map::new();
    for (label, keep_alive) in [
        ("new_connection_per_request", false),
        ("keep_alive_clients", true),
    ] {
        eprintln!("leader kill -9 trials, {label} ...");
        let mut gaps = Vec::new();
        for t in 0..args.trials {
            let g = write_gap(&mut c, t, keep_alive).await?;
            eprintln!("  trial {t}: {} ms", ms(g));
            gaps.push(g);
        }
        gaps.sort();
        gap_json.insert(
            label.to_string(),
            json!({
                "trials": gaps.len(),
                "p50_ms": ms(percentile(&gaps, 0.5)),
                "max_ms": ms(gaps.last().copied().unwrap_or_default()),
                "all_ms": gaps.iter().map(|g| ms(*g)).collect::<Vec<_>>(),
            }),
        );
    }
    let snapshot = if args.snapshot_users > 0 {
        eprintln!(
            "filling {} users, then writes across a snapshot ...",
            args.snapshot_users
        );
        let v = overload::snapshot_pause(&c, args.snapshot_users, 6000).await?;
        eprintln!("{v}");
        v
    } else {
        serde_json::Value::Null
    };
    let report = json!({
        "cluster": "3 hub replicas + 1 proxy, loopback, durable (fsync) writes",
        "create_users_c1": c1,
        "create_users_c32": c32,
        "route_propagation": routes_json,
        "leader_kill_write_gap": gap_json,
        "hostile_flood": flood,
        "elections_under_load": elections,
        "follower_catch_up": catch_up,
        "snapshot_write_pause": snapshot,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}
