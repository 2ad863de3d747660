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

/// A running `quorumhub dev` and the lines it printed.
struct Dev {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    port: u16,
    http: u16,
    child: std::process::Child,
    rx: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Dev {
    /// `quorumhub dev` on free ports, with `args` and, first on its PATH,
    /// `path` (where `jupyterhub-singleuser` is, for `--jupyterlab`).
    fn start(args: &[&str], path: Option<&Path>) -> Dev {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("dev");
        let port = free_ports(7);
        let (grpc, http) = (port + 1, port + 4);
        let mut cmd = Command::new(common::exe());
        cmd.args(["dev", "--dir", &dir.display().to_string()])
            .args(["--port", &port.to_string()])
            .args(["--grpc-port", &grpc.to_string()])
            .args(["--http-port", &http.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(p) = path {
            let old = std::env::var_os("PATH").unwrap_or_default();
            let mut dirs = vec![p.to_path_buf()];
            dirs.extend(std::env::split_paths(&old));
            cmd.env("PATH", std::env::join_paths(dirs).expect("PATH"));
        }
        let mut child = cmd.spawn().expect("quorumhub dev");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
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
        Dev {
            _tmp: tmp,
            dir,
            port,
            http,
            child,
            rx,
            seen: Vec::new(),
        }
    }

    fn wait_for(&mut self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.seen.iter().any(|l: &String| l.contains(needle)) {
                return;
            }
            match self.rx.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => self.seen.push(l),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(_) => {}
            }
        }
        panic!(
            "dev never printed {needle:?}; it printed:\n{}",
            self.seen.join("\n")
        );
    }

    /// SIGINT, as Ctrl-C: dev and every replica stop.
    fn stop(mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().expect("dev").is_none() {
            assert!(Instant::now() < deadline, "dev did not stop on SIGINT");
            std::thread::sleep(Duration::from_millis(100));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while (1..=3).any(|id| !replica_pids(&self.dir, id).is_empty()) {
            assert!(Instant::now() < deadline, "replicas outlived dev");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_restarts_a_killed_replica_and_keeps_serving() {
    let mut d = Dev::start(&[], None);
    d.wait_for("quorumhub dev cluster is up", Duration::from_secs(60));
    let (dir, port, http) = (d.dir.clone(), d.port, d.http);
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
    d.wait_for("hub2 exited unexpectedly", Duration::from_secs(10));
    d.wait_for("hub2 restarted", Duration::from_secs(10));
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
        d.child.try_wait().expect("dev").is_none(),
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
    d.stop();
}

/// `quorumhub dev --jupyterlab` serves the real JupyterLab: a user's
/// server is the `jupyterhub-singleuser` found on the PATH, reached
/// through dev's proxy; without the flag, dev offers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_serves_the_real_jupyterlab_from_the_path() {
    let venv_bin = common::singleuser()
        .parent()
        .expect("the venv's bin")
        .to_path_buf();
    let mut d = Dev::start(&["--jupyterlab"], Some(&venv_bin));
    d.wait_for("quorumhub dev cluster is up", Duration::from_secs(60));
    d.wait_for("jupyterhub-singleuser", Duration::from_secs(5));
    let url = format!("http://127.0.0.1:{}", d.port);
    let token = token(&d.dir);
    assert_eq!(
        create(&url, &token, "alice").await,
        Some(reqwest::StatusCode::CREATED)
    );
    let http = quorumhub_testkit::client();
    let started = http
        .post(format!("{url}/hub/api/users/alice/server"))
        .header("Authorization", format!("token {token}"))
        .send()
        .await
        .expect("start");
    assert!(
        [reqwest::StatusCode::CREATED, reqwest::StatusCode::ACCEPTED].contains(&started.status()),
        "{}",
        started.status()
    );
    // Jupyter Server's own API, behind the hub's auth, through the proxy.
    let deadline = Instant::now() + Duration::from_secs(90);
    let api = loop {
        let r = http
            .get(format!("{url}/user/alice/api/status"))
            .header("Authorization", format!("token {token}"))
            .send()
            .await;
        if let Ok(r) = r {
            if r.status() == reqwest::StatusCode::OK {
                break r.json::<serde_json::Value>().await.expect("json");
            }
        }
        assert!(Instant::now() < deadline, "JupyterLab never answered");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        api.get("kernels").is_some() && api.get("started").is_some(),
        "not Jupyter Server's status: {api}"
    );
    let lab = http
        .get(format!("{url}/user/alice/lab"))
        .header("Authorization", format!("token {token}"))
        .send()
        .await
        .expect("lab");
    assert_eq!(lab.status(), reqwest::StatusCode::OK);
    assert!(lab.text().await.unwrap_or_default().contains("JupyterLab"));
    // Users' servers outlive the hub's processes by design (a new leader
    // adopts them): stop it before dev.
    let stopped = http
        .delete(format!("{url}/hub/api/users/alice/server"))
        .header("Authorization", format!("token {token}"))
        .send()
        .await
        .expect("stop");
    assert_eq!(stopped.status(), reqwest::StatusCode::NO_CONTENT);
    d.stop();

    // Without the flag, dev offers it (and runs the demo server).
    let mut d = Dev::start(&[], Some(&venv_bin));
    d.wait_for("quorumhub dev --jupyterlab", Duration::from_secs(60));
    d.stop();
    // With the flag and nothing on the PATH, dev refuses, saying what to do.
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = Command::new(common::exe())
        .args(["dev", "--jupyterlab", "--dir"])
        .arg(tmp.path().join("dev"))
        .env("PATH", "/nonexistent")
        .output()
        .expect("dev");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pip install jupyterhub jupyterlab"), "{err}");
    assert!(!tmp.path().join("dev").exists(), "nothing was created");
}
