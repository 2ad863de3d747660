//! `quorumhub dev`: three hub replicas and a proxy on this machine, with
//! secrets generated on first run and kept in the dev directory, so a second
//! run resumes the same cluster.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

#[derive(clap::Args, Debug, Clone)]
pub struct DevArgs {
    /// Where data dirs, secrets and logs go.
    #[arg(long, default_value = ".quorumhub-dev")]
    pub dir: PathBuf,
    #[arg(long, default_value_t = 3)]
    pub replicas: u64,
    /// Proxy port (the URL users open).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// First replica's gRPC port; the others follow.
    #[arg(long, default_value_t = 7001)]
    pub grpc_port: u16,
    /// First replica's HTTP port; the others follow.
    #[arg(long, default_value_t = 8081)]
    pub http_port: u16,
    /// Serve the real JupyterLab: every user's server is
    /// `jupyterhub-singleuser`, found on the PATH (`pip install jupyterhub
    /// jupyterlab`), instead of the built-in demo server.
    #[arg(long)]
    pub jupyterlab: bool,
    /// Flags for every hub replica, after `--`: the spawner's (for example
    /// `-- --spawner-cmd jupyterhub-singleuser --spawner-cmd --debug`) or any
    /// other `quorumhub hub` flag.
    #[arg(last = true, value_name = "HUB FLAGS")]
    pub hub_args: Vec<String>,
}

/// The first executable named `name` on `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The spawner flags `dev` gives every replica: `--jupyterlab`'s, then the
/// operator's own after `--`. With neither, the built-in demo server runs,
/// and the banner offers JupyterLab when `jupyterhub-singleuser` is on the
/// PATH (the returned hint).
fn spawner_flags(args: &DevArgs) -> anyhow::Result<(Vec<String>, Option<String>)> {
    let own_cmd = args
        .hub_args
        .iter()
        .any(|a| a == "--spawner-cmd" || a.starts_with("--spawner-cmd="));
    let found = on_path("jupyterhub-singleuser");
    if !args.jupyterlab {
        let hint = match (&found, own_cmd) {
            (Some(p), false) => Some(format!(
                "JupyterLab: {} is on your PATH; `quorumhub dev --jupyterlab` serves it instead of the demo server",
                p.display()
            )),
            _ => None,
        };
        return Ok((args.hub_args.clone(), hint));
    }
    if own_cmd {
        bail!("--jupyterlab chooses the server command itself; drop it or the --spawner-cmd after `--`");
    }
    let Some(exe) = found else {
        bail!(
            "--jupyterlab needs jupyterhub-singleuser on the PATH, and it is not there: install it \
             (`python3 -m venv .venv && .venv/bin/pip install jupyterhub jupyterlab`, or \
             scripts/jupyter-venv.sh) and put its bin directory first on the PATH"
        );
    };
    let mut flags = vec!["--spawner-cmd".to_string(), exe.display().to_string()];
    // Jupyter refuses to run as root unless told to.
    if quorumhub_spawner::account::effective_uid() == 0 {
        flags.extend(["--spawner-cmd".to_string(), "--allow-root".to_string()]);
    }
    flags.extend(args.hub_args.iter().cloned());
    Ok((flags, None))
}

/// The secret kept in `path` (mode 0600: the replicas and the proxy read
/// it with --cluster-secret-file / --admin-token-file), made on first use.
fn secret(path: &Path) -> anyhow::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let private = || {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot chmod 600 {}", path.display()))
    };
    if let Ok(s) = std::fs::read_to_string(path) {
        let s = s.trim().to_string();
        if s.len() >= 16 {
            // Files of earlier versions were written with the umask's mode.
            private()?;
            return Ok(s);
        }
    }
    use rand::RngCore;
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    let s = hex::encode(bytes);
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        f.write_all(s.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    private()?;
    Ok(s)
}

fn spawn(exe: &Path, args: &[String], env: &[(&str, &str)], log: &Path) -> anyhow::Result<Child> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    let mut cmd = Command::new(exe);
    cmd.args(args);
    // Secrets travel in files (the --*-file flags), never in the
    // environment: /proc/<pid>/environ of a replica must hold none.
    for key in crate::secrets::SECRET_ENV {
        cmd.env_remove(key);
    }
    cmd.envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .kill_on_drop(true);
    // The replicas die with this process, even if it is killed.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    cmd.spawn()
        .with_context(|| format!("cannot start {}", exe.display()))
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    if args.replicas == 0 {
        bail!("--replicas must be at least 1");
    }
    let (spawner_flags, jupyterlab_hint) = spawner_flags(&args)?;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let dir = args.dir.canonicalize()?;
    let cluster_secret = secret(&dir.join("cluster-secret"))?;
    let admin_token = secret(&dir.join("admin-token"))?;
    // One credential per role (docs/operations.md, Credentials): the
    // proxy's only watches routes, hubctl's (the admin one) administers.
    let admin_secret = secret(&dir.join("admin-secret"))?;
    secret(&dir.join("proxy-secret"))?;
    let cluster_id = format!("dev-{}", &secret(&dir.join("cluster-id"))?[..12]);
    let exe = std::env::current_exe().context("cannot find this binary")?;

    let grpc = |i: u64| format!("127.0.0.1:{}", args.grpc_port as u64 + i - 1);
    let http = |i: u64| format!("127.0.0.1:{}", args.http_port as u64 + i - 1);
    let peers: Vec<String> = (1..=args.replicas)
        .map(|i| format!("{i}={}/{}", grpc(i), http(i)))
        .collect();
    let public_url = format!("http://127.0.0.1:{}", args.port);
    let env: [(&str, &str); 0] = [];
    let secret_file = dir.join("cluster-secret").display().to_string();
    let token_file = dir.join("admin-token").display().to_string();
    let admin_secret_file = dir.join("admin-secret").display().to_string();
    let proxy_secret_file = dir.join("proxy-secret").display().to_string();

    let mut procs = Vec::new();
    for i in 1..=args.replicas {
        let data = dir.join(format!("node{i}"));
        std::fs::create_dir_all(&data)?;
        let hub_args = vec![
            "hub".into(),
            "--node-id".into(),
            i.to_string(),
            "--data-dir".into(),
            data.display().to_string(),
            "--cluster-id".into(),
            cluster_id.clone(),
            "--grpc-listen".into(),
            grpc(i),
            "--http-listen".into(),
            http(i),
            "--peer".into(),
            peers.join(","),
            "--public-url".into(),
            public_url.clone(),
            "--cluster-secret-file".into(),
            secret_file.clone(),
            "--admin-token-file".into(),
            token_file.clone(),
            "--proxy-secret-file".into(),
            proxy_secret_file.clone(),
            "--admin-secret-file".into(),
            admin_secret_file.clone(),
            // A development cluster: every server runs as this user (the
            // hub logs a warning), no system accounts needed.
            "--spawner-run-as-hub-user".into(),
        ];
        let mut hub_args = hub_args;
        hub_args.extend(spawner_flags.iter().cloned());
        procs.push(Supervised::start(
            format!("hub{i}"),
            &exe,
            hub_args,
            &env,
            dir.join(format!("hub{i}.log")),
        )?);
    }
    let grpcs: Vec<String> = (1..=args.replicas).map(grpc).collect();
    let https: Vec<String> = (1..=args.replicas).map(http).collect();
    let proxy_args = vec![
        "proxy".into(),
        "--listen".into(),
        format!("127.0.0.1:{}", args.port),
        "--hub-grpc".into(),
        grpcs.join(","),
        "--hub-http".into(),
        https.join(","),
        "--name".into(),
        "proxy-1".into(),
        "--proxy-secret-file".into(),
        proxy_secret_file.clone(),
    ];
    procs.push(Supervised::start(
        "proxy".into(),
        &exe,
        proxy_args,
        &env,
        dir.join("proxy.log"),
    )?);

    wait_ready(&public_url, &admin_token, &mut procs).await?;
    let admin_password = secret(&dir.join("admin-password"))?;
    set_admin_password(&grpc(1), &admin_secret, &admin_password).await?;
    println!(
        "\nquorumhub dev cluster is up: {n} hub replicas, 1 proxy\n\n  proxy (open this)   {public_url}\n  sign in             {public_url}/hub/login as admin / {admin_password}\n  hub REST API        {public_url}/hub/api/\n  replica gRPC        {g}\n  data and logs       {d}\n\n  admin token         {admin_token}\n  cluster secret      {cluster_secret}\n\nTry:\n  curl -H 'Authorization: token {admin_token}' {public_url}/hub/api/users\n  curl -X POST -H 'Authorization: token {admin_token}' {public_url}/hub/api/users/alice\n  curl -X POST -H 'Authorization: token {admin_token}' {public_url}/hub/api/users/alice/server\n  curl {public_url}/user/alice/\n  cargo run --release --bin hubctl -- --admin-secret-file {d}/admin-secret --hub {g0} status\n\nCtrl-C stops the cluster (data stays in {d}).",
        n = args.replicas,
        g = grpcs.join(", "),
        g0 = grpcs[0],
        d = dir.display(),
    );
    if let Some(cmd) = spawner_flags
        .windows(2)
        .find(|w| w[0] == "--spawner-cmd")
        .map(|w| w[1].clone())
    {
        println!(
            "\nUsers' servers run {cmd} (see {}/hub*.log if one does not start).",
            dir.display()
        );
    }
    if let Some(hint) = jupyterlab_hint {
        println!("\n{hint}.");
    }

    // Supervise: a process that dies (a crash, or `kill -9` in README's
    // experiment) is reported and started again with backoff; the cluster
    // keeps serving meanwhile. Ctrl-C (or SIGTERM) stops everything.
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let stop = crate::signals::terminated();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {
                for p in &mut procs {
                    p.supervise(&exe, &env);
                }
            }
        }
    }
    for p in &mut procs {
        p.signal(libc::SIGTERM);
    }
    for p in &mut procs {
        p.wait(Duration::from_secs(10)).await;
    }
    Ok(())
}

/// The first restart waits this long; each further one twice as long as
/// the last, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A process that ran this long before it died is restarted at once.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// One cluster process that `dev` keeps running.
struct Supervised {
    name: String,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    started: Instant,
    backoff: Duration,
    /// When the process died and its restart is due.
    restart_at: Option<Instant>,
}

impl Supervised {
    fn start(
        name: String,
        exe: &Path,
        args: Vec<String>,
        env: &[(&str, &str)],
        log: PathBuf,
    ) -> anyhow::Result<Supervised> {
        let child = spawn(exe, &args, env, &log)?;
        Ok(Supervised {
            name,
            args,
            log,
            child: Some(child),
            started: Instant::now(),
            backoff: FIRST_BACKOFF,
            restart_at: None,
        })
    }

    /// The exit status if the process has ended since the last look.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Some(status)
            }
            _ => None,
        }
    }

    /// Notice a death and schedule the restart; restart when it is due.
    fn supervise(&mut self, exe: &Path, env: &[(&str, &str)]) {
        if let Some(status) = self.exited() {
            if self.started.elapsed() >= STABLE_AFTER {
                self.backoff = FIRST_BACKOFF;
            }
            let wait = if self.started.elapsed() >= STABLE_AFTER {
                Duration::ZERO
            } else {
                self.backoff
            };
            eprintln!(
                "{} exited unexpectedly ({status}); restarting it in {:.1} s (log: {})",
                self.name,
                wait.as_secs_f64(),
                self.log.display()
            );
            self.restart_at = Some(Instant::now() + wait);
        }
        let Some(due) = self.restart_at else { return };
        if Instant::now() < due {
            return;
        }
        match spawn(exe, &self.args, env, &self.log) {
            Ok(child) => {
                eprintln!("{} restarted (pid {})", self.name, child.id().unwrap_or(0));
                self.child = Some(child);
                self.started = Instant::now();
                self.restart_at = None;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) => {
                eprintln!("{} could not be restarted: {e:#}; trying again", self.name);
                self.restart_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    fn signal(&self, sig: i32) {
        if let Some(pid) = self.child.as_ref().and_then(|c| c.id()) {
            unsafe { libc::kill(pid as i32, sig) };
        }
    }

    async fn wait(&mut self, limit: Duration) {
        if let Some(c) = self.child.as_mut() {
            let _ = tokio::time::timeout(limit, c.wait()).await;
        }
    }
}

async fn wait_ready(public_url: &str, token: &str, procs: &mut [Supervised]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let url = format!("{public_url}/hub/api/users");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    loop {
        for p in procs.iter_mut() {
            if let Some(status) = p.exited() {
                bail!(
                    "{} exited during start-up ({status}); see {}",
                    p.name,
                    p.log.display()
                );
            }
        }
        let answer = client
            .get(&url)
            .header("Authorization", format!("token {token}"))
            .send()
            .await;
        if answer.is_ok_and(|r| r.status() == reqwest::StatusCode::OK) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the cluster did not answer {url} within 60 s; see the logs in the dev directory"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Give the `admin` user the dev password, so a browser can sign in. Waits
/// (up to 30 s) for the cluster to enable passwords (log format 3).
async fn set_admin_password(grpc: &str, secret: &str, password: &str) -> anyhow::Result<()> {
    let auth =
        quorumhub_raft::auth::ClientAuth::for_role(secret, quorumhub_raft::auth::Role::Admin)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let channel = quorumhub_raft::network::channel(grpc, Duration::from_secs(2))?;
        let mut client =
            quorumhub_proto::v1::admin_client::AdminClient::with_interceptor(channel, auth.clone());
        let res = client
            .set_password(quorumhub_proto::v1::SetPasswordRequest {
                name: "admin".into(),
                password: password.to_string(),
            })
            .await;
        match res {
            Ok(_) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                bail!("could not set the admin password: {}", e.message())
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}
