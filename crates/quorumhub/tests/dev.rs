//! `quorumhub dev` as README runs it: kill any one replica (`kill -9`) and
//! the cluster keeps serving; the supervisor restarts the replica.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `n` consecutive free loopback ports.
fn free_ports(n: u16) -> u16 {
    for _ in 0..200 {
        let base = quorumhub_testkit::free_port();
        if base.checked_add(n).is_none() {
            continue;
        }
        if (base..base + n).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}

/// Pids of the processes whose command line names `dir` and `--node-id id`.
fn replica_pids(dir: &Path, id: u64) -> Vec<i32> {
    let dir = dir.display().to_string();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let named = args
            .windows(2)
            .any(|w| w[0] == "--node-id" && w[1] == id.to_string());
        if args.get(1).map(String::as_str) == Some("hub")
            && named
            && args.iter().any(|a| a.starts_with(&dir))
        {
            pids.push(pid);
        }
    }
    pids
}

fn token(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("admin-token"))
        .expect("admin token")
        .trim()
        .to_string()
}

async fn create(url: &str, token: &str, name: &str) -> Option<reqwest::StatusCode> {
    quorumhub_testkit::client()
        .post(format!("{url}/hub/api/users/{name}"))
        .header("Authorization", format!("token {token}"))
        .send()
        .await
        .ok()
        .map(|r| r.status())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_restarts_a_killed_replica_and_keeps_serving() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("dev");
    let port = free_ports(7);
    let (grpc, http) = (port + 1, port + 4);
    let mut dev = Command::new(common::exe())
        .args(["dev", "--dir", &dir.display().to_string()])
        .args(["--port", &port.to_string()])
        .args(["--grpc-port", &grpc.to_string()])
        .args(["--http-port", &http.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("quorumhub dev");
    let stdout = dev.stdout.take().expect("stdout");
    let stderr = dev.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    for pipe in [
        Box::new(stdout) as Box<dyn std::io::Read + Send>,
        Box::new(stderr),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let mut seen = Vec::new();
    let mut wait_for = |needle: &str, limit: Duration| {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if seen.iter().any(|l: &String| l.contains(needle)) {
                return;
            }
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => seen.push(l),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(_) => {}
            }
        }
        panic!(
            "dev never printed {needle:?}; it printed:\n{}",
            seen.join("\n")
        );
    };
    wait_for("quorumhub dev cluster is up", Duration::from_secs(60));

    let url = format!("http://127.0.0.1:{port}");
    let token = token(&dir);
    assert_eq!(
        create(&url, &token, "before").await,
        Some(reqwest::StatusCode::CREATED)
    );
    let victim = replica_pids(&dir, 2);
    assert_eq!(victim.len(), 1, "one process runs replica 2: {victim:?}");
    // The replicas read their secrets from files: none is in a replica's
    // environment, where /proc/<pid>/environ (or a server) could see it.
    let secret = std::fs::read_to_string(dir.join("cluster-secret")).expect("secret");
    let environ = std::fs::read(format!("/proc/{}/environ", victim[0])).expect("environ");
    let environ = String::from_utf8_lossy(&environ);
    for needle in [secret.trim(), token.as_str(), "QUORUMHUB_CLUSTER_SECRET="] {
        assert!(
            !environ.contains(needle),
            "replica 2's environ holds {needle:?}"
        );
    }
    unsafe { libc::kill(victim[0], libc::SIGKILL) };

    // Writes go on through the proxy (a bounded wait: no timing asserted).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    let mut created = 0;
    while created < 20 {
        n += 1;
        if create(&url, &token, &format!("after-{n}")).await == Some(reqwest::StatusCode::CREATED) {
            created += 1;
        }
        assert!(
            Instant::now() < deadline,
            "writes did not resume after the kill"
        );
    }
    wait_for("hub2 exited unexpectedly", Duration::from_secs(10));
    wait_for("hub2 restarted", Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = replica_pids(&dir, 2);
        if now.len() == 1 && now[0] != victim[0] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica 2 was not restarted: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        dev.try_wait().expect("dev").is_none(),
        "dev itself kept running"
    );

    // The restarted replica serves again, with every write.
    let replica2 = format!("http://127.0.0.1:{}", http + 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = quorumhub_testkit::client()
            .get(format!("{replica2}/hub/api/users/after-{n}"))
            .header("Authorization", format!("token {token}"))
            .send()
            .await;
        if r.is_ok_and(|r| r.status() == reqwest::StatusCode::OK) {
            break;
        }
        assert!(Instant::now() < deadline, "replica 2 did not serve again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Ctrl-C (SIGINT) stops everything.
    unsafe { libc::kill(dev.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while dev.try_wait().expect("dev").is_none() {
        assert!(Instant::now() < deadline, "dev did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(100));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while (1..=3).any(|id| !replica_pids(&dir, id).is_empty()) {
        assert!(Instant::now() < deadline, "replicas outlived dev");
        std::thread::sleep(Duration::from_millis(100));
    }
}
