//! `qh-chaos`: drives the three-node container deployment (deploy/) with a
//! workload while injecting faults, then checks what users rely on:
//!
//! - the API history is linearizable per key (so no acknowledged write is
//!   lost), by a Wing–Gong search ([`checker`]);
//! - requests to running servers through the load balancer do not fail,
//!   except when the proxy holding the connection dies (and then a retried
//!   idempotent request succeeds);
//! - every fault is followed by an acknowledged write (the write gap);
//! - after healing, every replica holds the same state (digest).
//!
//! It prints a report and exits non-zero when a check fails.

mod checker;
mod deployment;
mod nemesis;
mod overload;
mod upgrade;
mod workload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Value};

use checker::{Op, ServerModel, UserModel, Verdict};
use deployment::Deployment;
use nemesis::Fault;
use workload::{Api, Clock, Keys, Log, Recorded, Targets};

#[derive(Parser, Debug)]
#[command(about = "Chaos suite for the quorumhub container deployment")]
struct Args {
    /// Compose project name.
    #[arg(long, default_value = "quorumhub")]
    project: String,
    #[arg(long, default_value = "deploy/docker-compose.yml")]
    compose_file: PathBuf,
    /// Holds QUORUMHUB_ADMIN_TOKEN (written by deploy/up.sh).
    #[arg(long, default_value = "deploy/.env")]
    env_file: PathBuf,
    #[arg(long, default_value = "quorumhub_qh")]
    network: String,
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    lb_url: String,
    /// Faults to inject, in order: `all` or a comma-separated list.
    #[arg(long, default_value = "all")]
    faults: String,
    /// Run the list this many times.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// How long each fault lasts before it is healed.
    #[arg(long, default_value_t = 3)]
    hold_s: u64,
    /// Quiet time after each heal.
    #[arg(long, default_value_t = 3)]
    settle_s: u64,
    /// Concurrent API clients (even ones via the LB, odd ones to replicas).
    #[arg(long, default_value_t = 6)]
    clients: usize,
    #[arg(long, default_value_t = 3000)]
    op_timeout_ms: u64,
    /// Write the report as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Search steps the checker may spend per key.
    #[arg(long, default_value_t = 20_000_000)]
    check_budget: u64,
    /// Image tag the `rolling-upgrade` fault moves the deployment to.
    #[arg(long)]
    upgrade_to: Option<String>,
}

struct FaultRun {
    fault: Fault,
    targets: Vec<String>,
    start: u64,
    end: u64,
    error: Option<String>,
    /// The overload nemeses' own figures.
    overload: Option<overload::Stats>,
    /// When the heal was done (clock of the run).
    healed: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let faults = nemesis::parse_list(&args.faults)?;
    let env = deployment::read_env_file(&args.env_file)?;
    let admin_token = env
        .get("QUORUMHUB_ADMIN_TOKEN")
        .cloned()
        .context("QUORUMHUB_ADMIN_TOKEN missing from the env file")?;
    let d = Deployment {
        project: args.project.clone(),
        compose_file: args.compose_file.clone(),
        network: args.network.clone(),
        hubs: vec!["hub1".into(), "hub2".into(), "hub3".into()],
        proxies: vec!["proxy1".into(), "proxy2".into()],
        lb_url: args.lb_url.trim_end_matches('/').to_string(),
        admin_token,
        upgrade_to: args.upgrade_to.clone(),
    };
    eprintln!("waiting for a healthy cluster ...");
    let status = d.wait_healthy(Duration::from_secs(90)).await?;
    eprintln!(
        "cluster healthy: leader {}, {} voters",
        status["leader"], status["voters"]
    );

    let api = Arc::new(Api::new(
        &d.admin_token,
        Duration::from_millis(args.op_timeout_ms),
    )?);
    let keys = Arc::new(Keys {
        users: (0..8).map(|i| format!("cu{i}")).collect(),
        servers: (0..3).map(|i| format!("cs{i}")).collect(),
    });
    setup(&api, &d, &keys).await?;
    let upgrading = faults.contains(&Fault::RollingUpgrade);
    if upgrading {
        upgrade::setup(&api, &d.lb_url).await?;
    }

    let clock = Clock(Instant::now());
    let log = Arc::new(Log::default());
    let targets = Targets {
        lb: d.lb_url.clone(),
        hubs: Arc::default(),
    };
    refresh_targets(&d, &targets).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        tasks.push(tokio::spawn(workload::api_client(
            c,
            api.clone(),
            targets.clone(),
            keys.clone(),
            log.clone(),
            clock,
            stop_rx.clone(),
        )));
    }
    for i in 0..2 {
        tasks.push(tokio::spawn(workload::http_session(
            format!("{}/user/cw{i}/api/status", d.lb_url),
            Duration::from_millis(50),
            log.clone(),
            clock,
            stop_rx.clone(),
        )));
    }
    let probe = Arc::new(upgrade::Probe::default());
    if upgrading {
        tasks.push(tokio::spawn(upgrade::run(
            api.clone(),
            d.lb_url.clone(),
            clock,
            probe.clone(),
            stop_rx.clone(),
        )));
    }
    let ws_base = d.lb_url.replacen("http", "ws", 1);
    for i in 0..2 {
        tasks.push(tokio::spawn(workload::ws_session(
            format!("{ws_base}/user/cw{i}/ws"),
            Duration::from_millis(100),
            log.clone(),
            clock,
            stop_rx.clone(),
        )));
    }

    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut runs = Vec::new();
    let mut hostile_token: Option<String> = None;
    for round in 0..args.rounds {
        for &fault in &faults {
            eprintln!("round {round}: {} ...", fault.name());
            let start = clock.now();
            let mut run = FaultRun {
                fault,
                targets: vec![],
                start,
                end: start,
                error: None,
                overload: None,
                healed: None,
            };
            let mut stats = overload::Stats::default();
            if fault.is_overload() {
                match overload::term(&d).await {
                    Ok(t) => stats.term_before = t,
                    Err(e) => run.error = Some(format!("no term before the fault: {e:#}")),
                }
            }
            if fault == Fault::HostileFlood && hostile_token.is_none() {
                match overload::hostile_token(&d, &api.http).await {
                    Ok(t) => hostile_token = Some(t),
                    Err(e) => run.error = Some(format!("{e:#}")),
                }
            }
            match nemesis::inject(&d, fault, clock).await {
                Ok(injected) => {
                    run.targets = injected.targets.clone();
                    run.start = injected.at;
                    let hold = nemesis::hold(fault, Duration::from_secs(args.hold_s));
                    match (fault, &hostile_token) {
                        (Fault::HostileFlood, Some(token)) => {
                            stats.hostile = overload::flood(&d, token, 8, hold).await;
                        }
                        (Fault::RestartFollower, _) => {
                            if let Err(e) =
                                nemesis::restart_loop(&d, &injected.targets[0], hold).await
                            {
                                run.error = Some(format!("restart loop failed: {e:#}"));
                            }
                        }
                        _ => tokio::time::sleep(hold).await,
                    }
                    if let Err(e) = nemesis::heal(&d, &injected).await {
                        run.error = Some(format!("heal failed: {e:#}"));
                    }
                    run.healed = Some(clock.now());
                    // Wall-clock, to line the report up with the replicas' logs.
                    eprintln!(
                        "  healed at {}",
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| format!("{:.3} s since the epoch", d.as_secs_f64()))
                            .unwrap_or_default()
                    );
                    if fault.is_overload() {
                        stats.catch_up = overload::catch_up(&d, Duration::from_secs(30)).await;
                    }
                }
                Err(e) => run.error = Some(format!("inject failed: {e:#}")),
            }
            if let Err(e) = d.wait_healthy(Duration::from_secs(90)).await {
                run.error.get_or_insert(format!("{e:#}"));
            }
            refresh_targets(&d, &targets).await;
            tokio::time::sleep(Duration::from_secs(args.settle_s)).await;
            run.end = clock.now();
            if fault.is_overload() {
                match overload::term(&d).await {
                    Ok(t) => stats.term_after = t,
                    Err(e) => {
                        run.error
                            .get_or_insert(format!("no term after the fault: {e:#}"));
                    }
                }
                run.overload = Some(stats);
            }
            eprintln!(
                "  {} on {:?}{}",
                fault.name(),
                run.targets,
                run.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
            runs.push(run);
        }
    }
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }

    // Final reads of every key, after everything healed: a lost write
    // shows up here at the latest.
    for key in &keys.users {
        record_final(&api, &d, &log, clock, key, false).await;
    }
    for key in &keys.servers {
        record_final(&api, &d, &log, clock, key, true).await;
    }

    let convergence = converge(&d).await;
    let mut report = report(&args, &runs, &log, &convergence);
    if upgrading {
        let (text, failures) = upgrade::verify(&d, &probe).await;
        report.text += &text;
        report.text += "\n";
        report.json["upgrade"] = json!({"summary": text.trim(), "failures": failures});
        report.failures.extend(failures);
    }
    println!("{}", report.text);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report.json)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if !report.failures.is_empty() {
        bail!("chaos checks failed:\n- {}", report.failures.join("\n- "));
    }
    Ok(())
}

/// Users whose servers the workload starts and stops, and two running
/// servers for the long-lived sessions.
async fn setup(api: &Api, d: &Deployment, keys: &Keys) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(90);
    let sessions = ["cw0", "cw1"];
    for name in keys.servers.iter().map(String::as_str).chain(sessions) {
        loop {
            let (out, detail) = api.user_op(&d.lb_url, name, &checker::UserOp::Create).await;
            if matches!(out, checker::Outcome::Ok(_)) {
                break;
            }
            if Instant::now() > deadline {
                bail!("cannot create {name}: {detail}");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    for name in sessions {
        let _ = api
            .server_op(&d.lb_url, name, &checker::ServerOp::Start)
            .await;
    }
    for name in sessions {
        loop {
            let (out, detail) = api
                .server_op(&d.lb_url, name, &checker::ServerOp::Read)
                .await;
            match out {
                checker::Outcome::Ok(checker::ServerResult::Seen(checker::Phase::On)) => break,
                checker::Outcome::Ok(checker::ServerResult::Seen(checker::Phase::Off)) => {
                    let _ = api
                        .server_op(&d.lb_url, name, &checker::ServerOp::Start)
                        .await;
                }
                _ => {}
            }
            if Instant::now() > deadline {
                bail!("{name}'s server did not become ready: {detail}");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // And it answers through the LB.
        loop {
            let url = format!("{}/user/{name}/api/status", d.lb_url);
            if let Ok(r) = api.http.get(&url).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!("{name}'s server does not answer through the load balancer");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    Ok(())
}

async fn refresh_targets(d: &Deployment, targets: &Targets) {
    let mut hubs = Vec::new();
    for h in &d.hubs {
        if let Some(ip) = d.ip(h).await {
            hubs.push((h.clone(), format!("http://{ip}:8081")));
        }
    }
    *targets.hubs.lock().unwrap_or_else(|p| p.into_inner()) = hubs;
}

async fn record_final(api: &Api, d: &Deployment, log: &Log, clock: Clock, key: &str, server: bool) {
    for _ in 0..10 {
        let call = clock.now();
        let (op, detail) = if server {
            let (o, detail) = api
                .server_op(&d.lb_url, key, &checker::ServerOp::Read)
                .await;
            (Recorded::Server(checker::ServerOp::Read, o), detail)
        } else {
            let (o, detail) = api.user_op(&d.lb_url, key, &checker::UserOp::Read).await;
            (Recorded::User(checker::UserOp::Read, o), detail)
        };
        let rec = workload::Record {
            client: usize::MAX,
            key: key.to_string(),
            op,
            call,
            ret: clock.now(),
            via: "lb".into(),
            detail,
        };
        let done = rec.definite();
        log.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(rec);
        if done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until every replica reports the same applied index and digest.
async fn converge(d: &Deployment) -> Result<Value, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Ok(v) = d.hubctl(&["digest"]).await {
            let replicas = v["replicas"].as_array().cloned().unwrap_or_default();
            let digests: Vec<&Value> = replicas.iter().map(|r| &r["digest"]).collect();
            let indexes: Vec<&Value> = replicas.iter().map(|r| &r["applied_index"]).collect();
            if replicas.len() == d.hubs.len()
                && digests.iter().all(|x| x.is_string() && *x == digests[0])
                && indexes.iter().all(|x| *x == indexes[0])
            {
                return Ok(v);
            }
            last = v;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!("replicas did not converge within 60 s: {last}"))
}

struct Report {
    text: String,
    json: Value,
    failures: Vec<String>,
}

/// Issue 9: after a leader is killed, cut off or paused, or a majority
/// partition heals, a write through the load balancer is acknowledged within
/// this (every CI run).
const MAX_WRITE_RESUME_US: u64 = 1_500_000;

/// For a failed resume check: the first writes through the load balancer
/// sent from `from` until `until` (offsets from `from`, in ms), and their
/// answers.
fn lb_writes_after(records: &[workload::Record], from: u64, until: u64) -> String {
    const SHOWN: usize = 24;
    let mut rows: Vec<_> = records
        .iter()
        .filter(|r| r.via == "lb" && r.is_write() && r.call >= from && r.call <= until)
        .collect();
    rows.sort_by_key(|r| r.call);
    let more = rows.len().saturating_sub(SHOWN);
    let mut shown: Vec<String> = rows
        .iter()
        .take(SHOWN)
        .map(|r| {
            format!(
                "[{:.0}..{:.0} ms {}]",
                ms(r.call - from),
                ms(r.ret.saturating_sub(from)),
                r.detail
            )
        })
        .collect();
    if more > 0 {
        shown.push(format!("(+{more} more)"));
    }
    shown.join(" ")
}

fn ms(us: u64) -> f64 {
    (us as f64 / 1000.0 * 10.0).round() / 10.0
}

fn report(
    args: &Args,
    runs: &[FaultRun],
    log: &Log,
    convergence: &Result<Value, String>,
) -> Report {
    let records = log
        .records
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let session_failures = log
        .failures
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut failures = Vec::new();
    let mut text = String::new();
    let mut fault_rows = Vec::new();
    use std::fmt::Write;

    let _ = writeln!(
        text,
        "\nquorumhub chaos report: {} faults, {} API operations ({} definite), {} requests to running servers",
        runs.len(),
        records.len(),
        records.iter().filter(|r| r.definite()).count(),
        log.session_requests.load(std::sync::atomic::Ordering::Relaxed)
    );
    let _ = writeln!(
        text,
        "\n{:<24} {:<14} {:>12} {:>13} {:>9} {:>14} {:>16}  note",
        "fault",
        "target",
        "write gap ms",
        "LB resume ms",
        "API fail",
        "server fails",
        "retried ok/all"
    );
    let mut gaps = Vec::new();
    for run in runs {
        // The longest stretch without an acknowledged write, from the
        // moment the fault was about to be injected until its window ends
        // (the Docker command itself takes tens of milliseconds, so "first
        // write after the fault" would count writes the old leader
        // committed while the command was still running).
        let mut acks: Vec<u64> = records
            .iter()
            .filter(|r| r.is_write() && r.definite() && r.ret >= run.start && r.ret <= run.end)
            .map(|r| r.ret)
            .collect();
        acks.sort_unstable();
        let gap = (!acks.is_empty()).then(|| {
            let mut prev = run.start;
            let mut longest = 0;
            for t in &acks {
                longest = longest.max(t - prev);
                prev = *t;
            }
            longest
        });
        let in_window = |t: u64| t >= run.start && t <= run.end;
        // Issue 9: how soon a write sent through the load balancer after the
        // moment writes can be taken again is acknowledged. A majority
        // partition leaves no quorum until it heals; the others leave one
        // the whole time.
        let resume_from = match run.fault {
            Fault::MajorityPartition => run.healed,
            Fault::KillLeader | Fault::IsolateLeader | Fault::PauseLeader => Some(run.start),
            _ => None,
        };
        let resume = resume_from.and_then(|from| {
            records
                .iter()
                .filter(|r| {
                    r.via == "lb"
                        && r.is_write()
                        && r.definite()
                        && r.call >= from
                        && r.ret <= run.end
                })
                .map(|r| r.ret - from)
                .min()
        });
        if let Some(from) = resume_from {
            match resume {
                Some(us) if us > MAX_WRITE_RESUME_US => {
                    failures.push(format!(
                    "{}: the first write through the load balancer sent after {} was acknowledged \
                     {:.0} ms later (at most {} ms); what the writes through it got: {}",
                    run.fault.name(),
                    if Some(from) == run.healed { "the heal" } else { "the fault" },
                    ms(us),
                    MAX_WRITE_RESUME_US / 1000,
                    lb_writes_after(&records, from, from + us)
                ))
                }
                None => failures.push(format!(
                    "{}: no write through the load balancer was acknowledged after the {}",
                    run.fault.name(),
                    if Some(from) == run.healed {
                        "heal"
                    } else {
                        "fault"
                    }
                )),
                _ => {}
            }
        }
        let api_fail = records
            .iter()
            .filter(|r| !r.definite() && in_window(r.call))
            .count();
        let sess: Vec<_> = session_failures
            .iter()
            .filter(|f| in_window(f.at))
            .collect();
        let http_fails: Vec<_> = sess.iter().filter(|f| f.kind == "http").collect();
        let recovered = http_fails.iter().filter(|f| f.recovered_by_retry).count();
        let note = run.error.clone().unwrap_or_default();
        let _ = writeln!(
            text,
            "{:<24} {:<14} {:>12} {:>13} {:>9} {:>14} {:>16}  {}",
            run.fault.name(),
            run.targets.join(","),
            gap.map(|g| format!("{:.1}", ms(g)))
                .unwrap_or("none".into()),
            resume
                .map(|g| format!("{:.1}", ms(g)))
                .unwrap_or("-".into()),
            api_fail,
            sess.len(),
            format!("{recovered}/{}", http_fails.len()),
            note
        );
        if let Some(e) = &run.error {
            failures.push(format!("{}: {e}", run.fault.name()));
        }
        match gap {
            Some(g) => gaps.push(g),
            None => failures.push(format!(
                "{}: no acknowledged write after the fault",
                run.fault.name()
            )),
        }
        if !run.fault.may_break_sessions() && !sess.is_empty() {
            failures.push(format!(
                "{}: {} failed requests to running servers (first: {})",
                run.fault.name(),
                sess.len(),
                sess[0].error
            ));
        }
        // A rolling upgrade is planned: not one request through the load
        // balancer may fail.
        // (A start that ends in "failed to start" lost a race with a
        // concurrent stop of the workload: an answer, not a failure.)
        let lb_failed: Vec<&workload::Record> = records
            .iter()
            .filter(|r| !r.definite() && in_window(r.call) && r.via == "lb")
            .filter(|r| !r.detail.contains("failed to start"))
            .collect();
        let lb_fail = lb_failed.len();
        if run.fault == Fault::RollingUpgrade && lb_fail > 0 {
            failures.push(format!(
                "{}: {lb_fail} API requests through the load balancer failed",
                run.fault.name()
            ));
            for r in lb_failed.iter().take(10) {
                let _ = writeln!(
                    text,
                    "  failed via lb at {:.1} ms, after {:.1} ms: {:?} {}: {}",
                    ms(r.call),
                    ms(r.ret) - ms(r.call),
                    r.op,
                    r.key,
                    r.detail
                );
            }
        }
        if run.fault.may_break_sessions() && recovered < http_fails.len() {
            failures.push(format!(
                "{}: {} HTTP requests to running servers failed even when retried",
                run.fault.name(),
                http_fails.len() - recovered
            ));
        }
        // A proxy that goes away takes its WebSockets with it (a drained
        // one only after its deadline); the client must get a new session
        // at once.
        let ws_fails: Vec<_> = sess.iter().filter(|f| f.kind == "ws").collect();
        let ws_lost = ws_fails.iter().filter(|f| !f.recovered_by_retry).count();
        if run.fault.may_break_sessions() && ws_lost > 0 {
            failures.push(format!(
                "{}: {ws_lost} WebSocket sessions broke and could not reconnect",
                run.fault.name()
            ));
        }
        // A planned upgrade may not fail a single HTTP request.
        if run.fault == Fault::RollingUpgrade && !http_fails.is_empty() {
            failures.push(format!(
                "{}: {} HTTP requests to running servers failed (first: {})",
                run.fault.name(),
                http_fails.len(),
                http_fails[0].error
            ));
        }
        fault_rows.push(json!({
            "fault": run.fault.name(),
            "targets": run.targets,
            "write_gap_ms": gap.map(ms),
            "lb_write_resume_ms": resume.map(ms),
            "api_indeterminate": api_fail,
            "api_indeterminate_via_lb": lb_fail,
            "server_request_failures": sess.len(),
            "http_failures_recovered_by_retry": recovered,
            "http_failures": http_fails.len(),
            "websocket_breaks": ws_fails.len(),
            "websocket_breaks_reconnected": ws_fails.len() - ws_lost,
            "error": run.error,
        }));
    }
    // The overload nemeses: bystanders, elections, catch-up (issue 9).
    let overloads: Vec<&FaultRun> = runs.iter().filter(|r| r.overload.is_some()).collect();
    let mut overload_rows = Vec::new();
    if !overloads.is_empty() {
        let _ = writeln!(
            text,
            "\n{:<24} {:>18} {:>7} {:>7} {:>10} {:>12}  hostile client's answers",
            "overload", "bystander p99 ms", "writes", "failed", "elections", "catch-up ms"
        );
    }
    for run in overloads {
        let Some(stats) = &run.overload else { continue };
        let (p99, writes, failed) = overload::bystanders(&records, (run.start, run.end));
        let elections = stats.term_after.saturating_sub(stats.term_before);
        let hostile: Vec<String> = stats
            .hostile
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let _ = writeln!(
            text,
            "{:<24} {:>18} {:>7} {:>7} {:>10} {:>12}  {}",
            run.fault.name(),
            p99.map(|p| format!("{:.1}", ms(p)))
                .unwrap_or("none".into()),
            writes,
            failed,
            elections,
            stats
                .catch_up
                .map(|c| format!("{:.0}", c.as_secs_f64() * 1000.0))
                .unwrap_or("never".into()),
            hostile.join(", ")
        );
        failures.extend(overload::accept(run.fault.name(), stats, p99, failed));
        overload_rows.push(json!({
            "fault": run.fault.name(),
            "bystander_write_p99_ms": p99.map(ms),
            "bystander_writes": writes,
            "bystander_failures": failed,
            "elections": elections,
            "term_before": stats.term_before,
            "term_after": stats.term_after,
            "catch_up_ms": stats.catch_up.map(|c| c.as_secs_f64() * 1000.0),
            "hostile_answers": stats.hostile,
        }));
    }
    let outside: Vec<_> = session_failures
        .iter()
        .filter(|f| !runs.iter().any(|r| f.at >= r.start && f.at <= r.end))
        .collect();
    if !outside.is_empty() {
        failures.push(format!(
            "{} failed requests to running servers outside any fault (first: {})",
            outside.len(),
            outside[0].error
        ));
    }
    gaps.sort_unstable();
    let p50 = gaps.get(gaps.len() / 2).copied();
    let max = gaps.last().copied();
    let _ = writeln!(
        text,
        "\nwrite gap over all faults: p50 {} ms, max {} ms",
        p50.map(|g| format!("{:.1}", ms(g))).unwrap_or("-".into()),
        max.map(|g| format!("{:.1}", ms(g))).unwrap_or("-".into())
    );

    // Linearizability, per key.
    let mut users = Vec::new();
    let mut servers = Vec::new();
    for r in &records {
        match &r.op {
            Recorded::User(i, o) => users.push((
                r.key.clone(),
                Op {
                    input: i.clone(),
                    output: o.clone(),
                    call: r.call,
                    ret: r.ret,
                },
            )),
            Recorded::Server(i, o) => servers.push((
                r.key.clone(),
                Op {
                    input: i.clone(),
                    output: o.clone(),
                    call: r.call,
                    ret: r.ret,
                },
            )),
        }
    }
    let mut verdicts = checker::check_by_key(&UserModel, users, args.check_budget);
    verdicts.extend(checker::check_by_key(
        &ServerModel,
        servers,
        args.check_budget,
    ));
    let _ = writeln!(text, "\nlinearizability (Wing–Gong search per key):");
    let mut verdict_rows = Vec::new();
    for (key, n, v) in &verdicts {
        let _ = writeln!(text, "  {key:<6} {n:>5} ops  {v:?}");
        verdict_rows.push(json!({"key": key, "ops": n, "verdict": format!("{v:?}")}));
        match v {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable => {
                failures.push(format!("history of {key} is not linearizable"));
                let _ = writeln!(text, "    history of {key}:");
                for r in records.iter().filter(|r| &r.key == key) {
                    let _ = writeln!(
                        text,
                        "      [{:>10.1} ms .. {:>10.1} ms] client {:>3} via {:<5} {:?} ({})",
                        ms(r.call),
                        ms(r.ret),
                        r.client as i64,
                        r.via,
                        r.op,
                        r.detail
                    );
                }
            }
            Verdict::Unknown => failures.push(format!(
                "checker budget exhausted on {key}; raise --check-budget"
            )),
        }
    }
    match convergence {
        Ok(v) => {
            let _ = writeln!(
                text,
                "\nconvergence: all replicas at applied index {} with digest {}",
                v["replicas"][0]["applied_index"], v["replicas"][0]["digest"]
            );
        }
        Err(e) => {
            let _ = writeln!(text, "\nconvergence: FAILED: {e}");
            failures.push(e.clone());
        }
    }
    let _ = writeln!(
        text,
        "\nverdict: {}",
        if failures.is_empty() {
            "PASS".to_string()
        } else {
            format!("FAIL ({} problems)", failures.len())
        }
    );
    let json = json!({
        "faults": fault_rows,
        "overload": overload_rows,
        "write_gap_ms": {"p50": p50.map(ms), "max": max.map(ms)},
        "api_operations": records.len(),
        "session_requests": log.session_requests.load(std::sync::atomic::Ordering::Relaxed),
        "linearizability": verdict_rows,
        "converged": convergence.is_ok(),
        "failures": failures,
    });
    Report {
        text,
        json,
        failures,
    }
}
