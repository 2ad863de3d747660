//! A real cluster on loopback: hub replica and proxy processes of the
//! `quorumhub` binary, each with its own data dir in a temp dir. Everything
//! is killed when the `Cluster` drops, user servers included.
//!
//! Used by the integration tests (which pass `CARGO_BIN_EXE_quorumhub`) and
//! by the benchmark (which finds the release binary).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use quorumhub_proto::v1::admin_client::AdminClient;
use quorumhub_proto::v1::NodeStatusRequest;
use quorumhub_raft::auth::ClientAuth;

pub const SECRET: &str = "test-cluster-secret-0123456789";
pub const TOKEN: &str = "test-admin-token-0123456789abcdef";
/// The proxy and admin credentials of [`Cluster::use_role_secrets`].
pub const PROXY_SECRET: &str = "test-proxy-secret-0123456789";
pub const ADMIN_SECRET: &str = "test-admin-secret-0123456789";

/// A port nothing listens on, for a process the test starts next.
///
/// Taken below the kernel's ephemeral range (32768 and up), walking from a
/// start that depends on the test process: a port from `bind(0)` comes from
/// that range, and any outgoing connection (a client, a browser) could take
/// it before the replica binds it, which then fails to start.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7_919) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + (start + n) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN)
}

pub struct Node {
    pub id: u64,
    pub grpc: String,
    pub http: String,
    pub data: PathBuf,
    pub child: Option<Child>,
}

pub struct Cluster {
    pub exe: PathBuf,
    pub dir: tempfile::TempDir,
    pub cluster_id: String,
    pub nodes: Vec<Node>,
    pub proxy: Option<Child>,
    pub proxy_addr: String,
    pub extra_args: Vec<String>,
    /// Pass `--spawner-run-as-hub-user` (the default: test users have no
    /// system accounts); tests of per-user accounts turn it off.
    pub servers_as_hub_user: bool,
    /// Give replicas and the proxy their secrets in files
    /// ([`Cluster::use_secret_files`]) instead of environment variables.
    pub secret_files: Option<(PathBuf, PathBuf)>,
    /// `--proxy-secret-file` and `--admin-secret-file`
    /// ([`Cluster::use_role_secrets`]); `None`: legacy mode, the cluster
    /// secret has every role.
    pub role_files: Option<(PathBuf, PathBuf)>,
}

impl Cluster {
    /// Start `n` replicas and wait until they have a leader.
    pub async fn start(exe: PathBuf, n: u64, extra_args: &[&str]) -> Cluster {
        let mut c = Cluster::prepare(exe, n, extra_args);
        for id in 1..=n {
            c.spawn(id);
        }
        c.wait_leader(Duration::from_secs(30)).await;
        c
    }

    /// Data dirs, ports and ids for `n` replicas, none started (e.g. to
    /// restore a backup into the data dirs first).
    pub fn prepare(exe: PathBuf, n: u64, extra_args: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let nodes = (1..=n)
            .map(|id| {
                let data = dir.path().join(format!("node{id}"));
                std::fs::create_dir_all(&data).expect("mkdir");
                Node {
                    id,
                    grpc: format!("127.0.0.1:{}", free_port()),
                    http: format!("127.0.0.1:{}", free_port()),
                    data,
                    child: None,
                }
            })
            .collect();
        Cluster {
            exe,
            cluster_id: format!("test-{}", free_port()),
            dir,
            nodes,
            proxy: None,
            proxy_addr: format!("127.0.0.1:{}", free_port()),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            servers_as_hub_user: true,
            secret_files: None,
            role_files: None,
        }
    }

    pub fn node(&self, id: u64) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    pub fn peers(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("{}={}/{}", n.id, n.grpc, n.http))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn hub_args(&self, id: u64) -> Vec<String> {
        let n = self.node(id);
        let mut args: Vec<String> = vec![
            "hub".into(),
            "--node-id".into(),
            id.to_string(),
            "--data-dir".into(),
            n.data.display().to_string(),
            "--cluster-id".into(),
            self.cluster_id.clone(),
            "--grpc-listen".into(),
            n.grpc.clone(),
            "--http-listen".into(),
            n.http.clone(),
            "--peer".into(),
            self.peers(),
            "--public-url".into(),
            format!("http://{}", self.proxy_addr),
        ];
        if self.servers_as_hub_user {
            args.push("--spawner-run-as-hub-user".into());
        }
        if let Some((secret, token)) = &self.secret_files {
            args.push("--cluster-secret-file".into());
            args.push(secret.display().to_string());
            args.push("--admin-token-file".into());
            args.push(token.display().to_string());
        }
        if let Some((proxy, admin)) = &self.role_files {
            args.push("--proxy-secret-file".into());
            args.push(proxy.display().to_string());
            args.push("--admin-secret-file".into());
            args.push(admin.display().to_string());
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// Write `text` to the private file `name` in the temp dir (mode 0600),
    /// replacing it; for secrets a test rotates.
    pub fn write_secret(&self, name: &str, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("write secret");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        p
    }

    /// From now on, replicas get their own proxy and admin credentials
    /// ([`PROXY_SECRET`], [`ADMIN_SECRET`], in the files `proxy-secret`
    /// and `admin-secret`), and the proxy presents the proxy one.
    pub fn use_role_secrets(&mut self) {
        self.role_files = Some((
            self.write_secret("proxy-secret", PROXY_SECRET),
            self.write_secret("admin-secret", ADMIN_SECRET),
        ));
    }

    /// From now on, replicas and the proxy read [`SECRET`] and [`TOKEN`]
    /// from files in the temp dir (mode 0600) and get no secret in their
    /// environment.
    pub fn use_secret_files(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let write = |name: &str, text: &str| {
            let p = self.dir.path().join(name);
            std::fs::write(&p, text).expect("write secret");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            p
        };
        self.secret_files = Some((write("cluster-secret", SECRET), write("admin-token", TOKEN)));
    }

    /// Start replica `id` and return immediately.
    pub fn spawn(&mut self, id: u64) {
        let args = self.hub_args(id);
        let child = self.command(&args, &format!("hub{id}"));
        self.nodes[(id - 1) as usize].child = Some(child);
    }

    /// Run the binary with the cluster's secrets; output goes to a log file
    /// in the temp dir (printed by `dump_logs` when a test fails).
    pub fn command(&self, args: &[String], log: &str) -> Child {
        let log = self.dir.path().join(format!("{log}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let mut cmd = Command::new(&self.exe);
        cmd.args(args);
        match &self.secret_files {
            None => {
                cmd.env("QUORUMHUB_CLUSTER_SECRET", SECRET)
                    .env("QUORUMHUB_ADMIN_TOKEN", TOKEN);
            }
            Some((secret, _)) => {
                cmd.env_remove("QUORUMHUB_CLUSTER_SECRET")
                    .env_remove("QUORUMHUB_ADMIN_TOKEN");
                if args.first().map(String::as_str) == Some("proxy") {
                    cmd.arg("--cluster-secret-file").arg(secret);
                }
            }
        }
        cmd
            // QH_TEST_LOG overrides the log filter, e.g. "debug,openraft=debug".
            .env(
                "QUORUMHUB_LOG",
                std::env::var("QH_TEST_LOG").unwrap_or("info,openraft=warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("spawn quorumhub")
    }

    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.nodes[(id - 1) as usize].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait (graceful stop). True if the process exited by
    /// itself within 15 s; false if it had to be killed (or was not running).
    pub fn stop(&mut self, id: u64) -> bool {
        if let Some(mut child) = self.nodes[(id - 1) as usize].child.take() {
            unsafe { libc_kill(child.id() as i32, 15) };
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        false
    }

    pub fn alive(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.id)
            .collect()
    }

    pub async fn admin(
        &self,
        id: u64,
    ) -> AdminClient<tonic::codegen::InterceptedService<tonic::transport::Channel, ClientAuth>>
    {
        self.admin_as(id, SECRET)
    }

    /// An admin client of replica `id` presenting `secret`.
    pub fn admin_as(
        &self,
        id: u64,
        secret: &str,
    ) -> AdminClient<tonic::codegen::InterceptedService<tonic::transport::Channel, ClientAuth>>
    {
        let channel = quorumhub_raft::network::channel(&self.node(id).grpc, Duration::from_secs(1))
            .expect("channel");
        AdminClient::with_interceptor(channel, ClientAuth::new(secret).expect("secret"))
    }

    /// The leader as seen by a live replica that knows one.
    pub async fn leader(&self) -> Option<u64> {
        for id in self.alive() {
            let mut c = self.admin(id).await;
            let mut req = tonic::Request::new(NodeStatusRequest {});
            req.set_timeout(Duration::from_millis(500));
            if let Ok(s) = c.node_status(req).await {
                let s = s.into_inner();
                if s.has_leader && self.alive().contains(&s.leader_id) {
                    // A replica restored from disk may name the leader of
                    // its saved vote before that process is even up: ask
                    // the leader itself.
                    let mut l = self.admin(s.leader_id).await;
                    let mut req = tonic::Request::new(NodeStatusRequest {});
                    req.set_timeout(Duration::from_millis(500));
                    if let Ok(ls) = l.node_status(req).await {
                        if ls.into_inner().role == "leader" {
                            return Some(s.leader_id);
                        }
                    }
                }
            }
        }
        None
    }

    pub async fn wait_leader(&self, limit: Duration) -> u64 {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(l) = self.leader().await {
                return l;
            }
            if Instant::now() > deadline {
                self.dump_logs();
                panic!("no leader within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until every live replica has applied cluster version `version`
    /// (a new cluster starts at 1; its leader raises it at once).
    pub async fn wait_cluster_version(&self, version: u32, limit: Duration) {
        let deadline = Instant::now() + limit;
        'again: loop {
            assert!(
                Instant::now() < deadline,
                "cluster version {version} not reached within {limit:?}"
            );
            for id in self.alive() {
                let mut c = self.admin(id).await;
                let mut req = tonic::Request::new(NodeStatusRequest {});
                req.set_timeout(Duration::from_millis(500));
                let at = c
                    .node_status(req)
                    .await
                    .map(|s| s.into_inner().cluster_version)
                    .unwrap_or(0);
                if at < version {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue 'again;
                }
            }
            return;
        }
    }

    pub fn url(&self, id: u64, path: &str) -> String {
        format!("http://{}{}", self.node(id).http, path)
    }

    pub fn proxy_url(&self, path: &str) -> String {
        format!("http://{}{}", self.proxy_addr, path)
    }

    /// Start the proxy and wait (up to 30 s) until it answers its health
    /// check, so a test's first request through it cannot race its start.
    pub async fn start_proxy_ready(&mut self) {
        self.start_proxy_ready_with(&[]).await;
    }

    /// [`Cluster::start_proxy_ready`] with extra flags.
    pub async fn start_proxy_ready_with(&mut self, extra: &[&str]) {
        self.start_proxy_with(extra);
        let url = self.proxy_url("/_proxy/health");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client().get(&url).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the proxy at {url} did not come up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn start_proxy(&mut self) {
        self.start_proxy_with(&[]);
    }

    /// Start the proxy with extra flags (limits, timeouts).
    pub fn start_proxy_with(&mut self, extra: &[&str]) {
        let grpc: Vec<String> = self.nodes.iter().map(|n| n.grpc.clone()).collect();
        let http: Vec<String> = self.nodes.iter().map(|n| n.http.clone()).collect();
        let args = vec![
            "proxy".to_string(),
            "--listen".into(),
            self.proxy_addr.clone(),
            "--hub-grpc".into(),
            grpc.join(","),
            "--hub-http".into(),
            http.join(","),
            "--name".into(),
            "test-proxy".into(),
        ];
        let mut args = args;
        if let Some((proxy, _)) = self
            .role_files
            .as_ref()
            .filter(|_| !extra.contains(&"--proxy-secret-file"))
        {
            args.push("--proxy-secret-file".into());
            args.push(proxy.display().to_string());
        }
        let args: Vec<String> = args
            .into_iter()
            .chain(extra.iter().map(|a| a.to_string()))
            .collect();
        self.proxy = Some(self.command(&args, "proxy"));
    }

    /// The running proxy's process id.
    pub fn proxy_pid(&self) -> Option<u32> {
        self.proxy.as_ref().map(|p| p.id())
    }

    pub fn dump_logs(&self) {
        if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "log") {
                    let text = std::fs::read_to_string(&p).unwrap_or_default();
                    // A panic is the first thing to look at, wherever it is.
                    for (n, l) in text
                        .lines()
                        .enumerate()
                        .filter(|(_, l)| l.contains("panicked"))
                        .take(5)
                    {
                        eprintln!("===== {} line {}: {l}", p.display(), n + 1);
                    }
                    let tail: Vec<&str> = text.lines().rev().take(40).collect();
                    eprintln!("===== {} (last 40 lines)", p.display());
                    for l in tail.iter().rev() {
                        eprintln!("{l}");
                    }
                }
            }
        }
    }
}

unsafe fn libc_kill(pid: i32, sig: i32) -> i32 {
    libc::kill(pid, sig)
}

/// Kill every process whose working directory is inside `root`: the user
/// servers a test's replicas started (they run in their own session, by
/// design, and would outlive the test otherwise).
pub fn kill_processes_under(root: &Path) {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for p in procs.flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cwd) = std::fs::read_link(p.path().join("cwd")) {
            if cwd.starts_with(root) {
                unsafe { libc_kill(pid, 9) };
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if let Some(mut p) = self.proxy.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
        kill_processes_under(self.dir.path());
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

pub fn auth() -> String {
    format!("token {TOKEN}")
}
