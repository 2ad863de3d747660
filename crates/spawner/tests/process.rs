//! The process functions against real processes (`sh`, `sleep`, `env`).

mod common;

use std::time::{Duration, Instant};

use common::{env_keys, eventually, self_args, sh, KillOnDrop};
use quorumhub_spawner::{is_alive, spawn_process, stop_process, ProcessSpec, SpawnError};

fn pgid_of(pid: u32) -> libc::pid_t {
    // SAFETY: getpgid only reads.
    unsafe { libc::getpgid(pid as libc::pid_t) }
}

fn sid_of(pid: u32) -> libc::pid_t {
    // SAFETY: getsid only reads.
    unsafe { libc::getsid(pid as libc::pid_t) }
}

#[tokio::test]
async fn spawned_process_runs_detached_and_stops_on_sigterm() {
    let s = spawn_process(&sh("exec sleep 30")).expect("spawn sleep");
    let _guard = KillOnDrop {
        pid: s.pid,
        start: s.proc_start,
    };
    assert!(!s.host.is_empty());
    assert!(is_alive(s.pid, s.proc_start), "fresh child must be alive");
    // Own session and process group, not the test's.
    assert_eq!(
        pgid_of(s.pid),
        s.pid as libc::pid_t,
        "leads its own process group"
    );
    assert_eq!(sid_of(s.pid), s.pid as libc::pid_t, "leads its own session");
    // SAFETY: getpgrp only reads.
    assert_ne!(pgid_of(s.pid), unsafe { libc::getpgrp() });
    // No handle to it is left in this test: it keeps running.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        is_alive(s.pid, s.proc_start),
        "must survive without a Child handle"
    );

    let t = Instant::now();
    stop_process(s.pid, s.proc_start, Duration::from_secs(10))
        .await
        .expect("stop");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "SIGTERM should suffice, took {:?}",
        t.elapsed()
    );
    assert!(!is_alive(s.pid, s.proc_start), "gone after stop");
    // Stopping again is fine.
    stop_process(s.pid, s.proc_start, Duration::from_secs(1))
        .await
        .expect("second stop");
    // Our reaper collects it: the /proc entry disappears (no zombie left).
    assert!(
        eventually(Duration::from_secs(5), || !std::path::Path::new(&format!(
            "/proc/{}",
            s.pid
        ))
        .exists())
        .await,
        "child was not reaped"
    );
}

#[tokio::test]
async fn wrong_start_time_is_not_alive_and_never_signalled() {
    let s = spawn_process(&sh("exec sleep 30")).expect("spawn sleep");
    let _guard = KillOnDrop {
        pid: s.pid,
        start: s.proc_start,
    };
    assert!(is_alive(s.pid, s.proc_start));
    assert!(!is_alive(s.pid, s.proc_start + 1));
    assert!(!is_alive(s.pid, s.proc_start.wrapping_sub(1)));
    stop_process(s.pid, s.proc_start + 1, Duration::from_millis(200))
        .await
        .expect("stop of another process is a no-op");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        is_alive(s.pid, s.proc_start),
        "a process with another start time must not be signalled"
    );
    stop_process(s.pid, s.proc_start, Duration::from_secs(5))
        .await
        .expect("stop");
    assert!(!is_alive(s.pid, s.proc_start));
}

#[tokio::test]
async fn stop_escalates_to_sigkill_when_sigterm_is_ignored() {
    let s = spawn_process(&sh("trap '' TERM; sleep 30; echo done")).expect("spawn");
    let _guard = KillOnDrop {
        pid: s.pid,
        start: s.proc_start,
    };
    // Let sh install its trap.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let grace = Duration::from_millis(500);
    let t = Instant::now();
    stop_process(s.pid, s.proc_start, grace)
        .await
        .expect("stop with SIGKILL");
    let took = t.elapsed();
    assert!(
        took >= grace,
        "must wait the grace period before SIGKILL, took {took:?}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(!is_alive(s.pid, s.proc_start));
}

#[tokio::test]
async fn environment_is_minimal_plus_spec_and_output_is_appended() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("logs").join("server.log");
    std::fs::create_dir_all(log.parent().expect("parent")).expect("mkdir");
    let mut spec = ProcessSpec {
        cmd: vec!["env".into()],
        log_path: Some(log.clone()),
        cwd: Some(dir.path().to_path_buf()),
        ..ProcessSpec::default()
    };
    spec.env.insert("FOO".into(), "bar baz".into());
    spec.env.insert("LANG".into(), "C.UTF-8".into());
    let s = spawn_process(&spec).expect("spawn env");
    assert!(eventually(Duration::from_secs(5), || !is_alive(s.pid, s.proc_start)).await);

    let out = std::fs::read_to_string(&log).expect("log written");
    let env = env_keys(&out);
    assert_eq!(env.get("FOO").map(String::as_str), Some("bar baz"));
    assert_eq!(
        env.get("LANG").map(String::as_str),
        Some("C.UTF-8"),
        "spec.env overrides the inherited LANG"
    );
    assert!(env.contains_key("PATH"), "PATH is inherited: {out}");
    for key in env.keys() {
        assert!(
            ["PATH", "HOME", "LANG", "FOO"].contains(&key.as_str()),
            "unexpected variable {key} leaked: {out}"
        );
    }

    // Second run: stdout and stderr are appended, cwd is honoured.
    spec.cmd = vec!["sh".into(), "-c".into(), "pwd; echo to-stderr >&2".into()];
    let s = spawn_process(&spec).expect("spawn sh");
    assert!(eventually(Duration::from_secs(5), || !is_alive(s.pid, s.proc_start)).await);
    let out = std::fs::read_to_string(&log).expect("log");
    assert!(
        out.contains("FOO=bar baz"),
        "first run's output kept: {out}"
    );
    assert!(out.contains("to-stderr"), "stderr captured: {out}");
    let cwd = dir.path().canonicalize().expect("canonical");
    assert!(
        out.contains(cwd.to_str().expect("utf-8 path")),
        "cwd used: {out}"
    );
}

/// As root, a process started with `run_as` (here the system's `nobody`)
/// has that uid, gid and groups, writes a log it owns (0600), and gets no
/// `QUORUMHUB_*` variable even when the spec holds one.
#[tokio::test]
async fn run_as_switches_to_the_account_and_keeps_hub_variables_out() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI runs as root"
        );
        eprintln!("\n!!!!! SKIPPED run_as_switches_to_the_account: needs root !!!!!\n");
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let nobody = quorumhub_spawner::account::lookup_account("nobody")
        .expect("lookup")
        .expect("the system has a `nobody` account");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("nobody.log");
    let mut spec = sh("id -u; id -g; id -G; env");
    spec.log_path = Some(log.clone());
    spec.run_as = Some(nobody.run_as());
    spec.env
        .insert("QUORUMHUB_CLUSTER_SECRET".into(), "must-not-pass".into());
    spec.env.insert("JUPYTERHUB_USER".into(), "nobody".into());
    let s = spawn_process(&spec).expect("spawn as nobody");
    assert!(eventually(Duration::from_secs(5), || !is_alive(s.pid, s.proc_start)).await);
    let out = std::fs::read_to_string(&log).expect("log");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some(nobody.uid.to_string().as_str()), "{out}");
    assert_eq!(lines.next(), Some(nobody.gid.to_string().as_str()), "{out}");
    let groups: Vec<u32> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|g| g.parse().ok())
        .collect();
    assert!(!groups.contains(&0), "root's group kept: {out}");
    assert!(out.contains("JUPYTERHUB_USER=nobody"), "{out}");
    assert!(!out.contains("QUORUMHUB_"), "a hub variable leaked: {out}");
    let meta = std::fs::metadata(&log).expect("stat");
    assert_eq!((meta.uid(), meta.mode() & 0o777), (nobody.uid, 0o600));
}

#[test]
fn spawn_errors_say_what_to_do() {
    let err = spawn_process(&ProcessSpec {
        cmd: vec!["/nonexistent/quorumhub-nope".into()],
        ..ProcessSpec::default()
    })
    .expect_err("missing program");
    assert!(matches!(err, SpawnError::Spawn { .. }), "{err:?}");
    assert!(err.to_string().contains("PATH"), "{err}");

    let err = spawn_process(&ProcessSpec {
        cmd: vec!["true".into()],
        log_path: Some("/nonexistent-dir/x.log".into()),
        ..ProcessSpec::default()
    })
    .expect_err("bad log path");
    assert!(matches!(err, SpawnError::LogFile { .. }), "{err:?}");

    let err = spawn_process(&ProcessSpec {
        cmd: vec!["true".into()],
        cwd: Some("/nonexistent-dir".into()),
        ..ProcessSpec::default()
    })
    .expect_err("bad cwd");
    assert!(matches!(err, SpawnError::Cwd { .. }), "{err:?}");
    assert!(matches!(spawn_process(&sh("")).map(|_| ()), Ok(())));
    assert!(matches!(
        spawn_process(&ProcessSpec {
            cmd: vec![String::new()],
            ..ProcessSpec::default()
        }),
        Err(SpawnError::EmptyCommand)
    ));
}

/// A "hub" that spawns a server and exits at once; the next test adopts it.
#[test]
#[ignore = "helper run as a child process by `server_outlives_the_hub_and_is_adopted`"]
fn child_role_spawning_hub() {
    if std::env::var("QH_TEST_ROLE").as_deref() != Ok("hub") {
        return;
    }
    let s = spawn_process(&sh("exec sleep 30")).expect("spawn in child hub");
    println!("SPAWNED {} {}", s.pid, s.proc_start);
}

#[tokio::test]
async fn server_outlives_the_hub_and_is_adopted() {
    let exe = std::env::current_exe().expect("test binary path");
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(exe)
            .args(self_args("child_role_spawning_hub"))
            .env("QH_TEST_ROLE", "hub")
            .stdin(std::process::Stdio::null())
            .output(),
    )
    .await
    .expect("child hub timed out")
    .expect("run child hub");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child hub failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("SPAWNED ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no SPAWNED line in {stdout}"));
    let mut parts = line
        .split_whitespace()
        .map(|p| p.parse::<u64>().expect("number"));
    let (pid, start) = (
        parts.next().expect("pid") as u32,
        parts.next().expect("start"),
    );
    let _guard = KillOnDrop { pid, start };

    // The hub that started it is gone; the server is not, and is not ours.
    assert!(
        is_alive(pid, start),
        "server must outlive the hub process that started it"
    );
    assert_eq!(pgid_of(pid), pid as libc::pid_t);
    let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(1).map(str::to_owned))
        });
    assert_ne!(
        ppid,
        Some(std::process::id().to_string()),
        "not a child of this process"
    );

    let t = Instant::now();
    stop_process(pid, start, Duration::from_secs(10))
        .await
        .expect("adopted stop");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    assert!(!is_alive(pid, start));
}

#[tokio::test]
async fn a_process_outside_its_own_group_is_stopped_alone() {
    // A plain child shares this test's process group: stopping it must not
    // signal the group (that would kill the test runner).
    let mut child = tokio::process::Command::new("sleep")
        .arg("30")
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sleep");
    let pid = child.id().expect("pid");
    let start = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(19).map(str::to_owned))
        })
        .and_then(|s| s.parse::<u64>().ok())
        .expect("start time");
    assert!(is_alive(pid, start));
    // SAFETY: getpgrp only reads.
    assert_eq!(pgid_of(pid), unsafe { libc::getpgrp() });
    let (stopped, status) = tokio::join!(
        stop_process(pid, start, Duration::from_secs(5)),
        child.wait()
    );
    stopped.expect("stop");
    let status = status.expect("wait");
    assert!(!status.success(), "killed by SIGTERM: {status}");
    assert!(!is_alive(pid, start));
}
