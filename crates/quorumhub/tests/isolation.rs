//! Each user's server isolated: servers run as their users' own Unix
//! accounts, and a real server process that tries to read what it must not
//! (the hub's /proc environ, the hub's data dir, the cluster secret file,
//! another user's directory and home) is refused. Secrets never reach a
//! server's environment, and the hub's /proc/<pid>/environ holds none.
//!
//! These tests create system accounts, so they need root, which CI runs as.
//! Not as root they are skipped with a loud message, except under CI=true.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{auth, client, SECRET, TOKEN};
use reqwest::StatusCode;

/// True when root; otherwise says so loudly (and fails under CI).
fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert_ne!(
        std::env::var("CI").as_deref(),
        Ok("true"),
        "{test} needs root (it creates system accounts), and CI runs as root"
    );
    eprintln!("\n!!!!! SKIPPED {test}: it needs root (it creates system accounts) !!!!!\n");
    false
}

/// System accounts made for one test, removed (processes, home and all)
/// when it ends.
struct Accounts(Vec<String>);

impl Accounts {
    /// `useradd` with a private home under `homes`.
    fn create(&mut self, name: &str, homes: &Path) {
        let home = homes.join(name);
        let out = Command::new("useradd")
            .args([
                "--create-home",
                "--user-group",
                "--shell",
                "/bin/sh",
                "--home-dir",
            ])
            .arg(&home)
            .arg("--")
            .arg(name)
            .output()
            .expect("run useradd");
        assert!(
            out.status.success(),
            "useradd {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.0.push(name.to_string());
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    }

    /// Remembers an account someone else (the hub) creates.
    fn adopt(&mut self, name: &str) {
        self.0.push(name.to_string());
    }
}

impl Drop for Accounts {
    fn drop(&mut self) {
        for name in &self.0 {
            if let Some(uid) = uid_of(name) {
                kill_processes_of(uid);
            }
            let _ = Command::new("userdel")
                .args(["--remove", "--"])
                .arg(name)
                .output();
        }
    }
}

fn uid_of(name: &str) -> Option<u32> {
    let out = Command::new("id").args(["-u", "--", name]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// SIGKILL to every process of `uid` (only the test's own accounts).
fn kill_processes_of(uid: u32) {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for p in procs.flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if std::fs::metadata(p.path()).is_ok_and(|m| m.uid() == uid) {
            // SAFETY: plain kill(2) of a process of the test's account.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// A prefix for this test's account names, unique per test process.
fn prefix(tag: &str) -> String {
    format!("qh{tag}{}-", std::process::id() % 100_000)
}

/// The probe: a real server command that first tries to read what it must
/// not, prints `PROBE <what> readable|denied` lines to its log, and then
/// runs the built-in single-user server. Arguments: data dir, secret file,
/// homes dir, the quorumhub binary.
const PROBE: &str = r#"
data=$1; secret=$2; homes=$3; bin=$4
try() { what=$1; shift; if "$@" >/dev/null 2>&1; then echo "PROBE $what readable"; else echo "PROBE $what denied"; fi; }
echo "PROBE uid $(id -u)"
echo "PROBE user $JUPYTERHUB_USER"
echo "PROBE cwd $(pwd)"
try hub-environ cat /proc/$PPID/environ
if cat /proc/$PPID/environ 2>/dev/null | tr '\0' '\n' | grep -q -e "@SECRET@" -e "@TOKEN@"; then echo "PROBE hub-environ-secret present"; else echo "PROBE hub-environ-secret absent"; fi
try data-dir ls "$data"
try raft-log ls "$data/raft"
try servers-dir ls "$data/servers"
try secret-file cat "$secret"
for other in "$homes"/*; do
  [ "$other" = "$HOME" ] && continue
  try "other-home $(basename "$other")" ls "$other"
done
try own-home touch "$HOME/probe-was-here"
if env | grep -q '^QUORUMHUB_'; then echo "PROBE env-quorumhub present"; else echo "PROBE env-quorumhub absent"; fi
echo "PROBE done"
exec "$bin" singleuser
"#;

/// A cluster of one replica whose servers run the probe. `prepare` may
/// change the cluster before it starts.
struct ProbeCluster {
    c: common::Cluster,
    homes: PathBuf,
}

async fn probe_cluster(
    extra: &[&str],
    secret_files: bool,
    as_hub_user: bool,
    prepare: impl FnOnce(&Path),
) -> ProbeCluster {
    let mut c = common::Cluster::prepare(common::exe(), 1, &[]);
    // Everything of the test's own is open to others (0755), so whatever
    // refuses a probe below is the hub's doing, not the temp dir's mode.
    let root = c.dir.path().to_path_buf();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let homes = root.join("homes");
    std::fs::create_dir(&homes).expect("mkdir");
    std::fs::set_permissions(&homes, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // A copy of the binary every account may run (the build's may sit
    // under a private directory such as /root).
    let bin = root.join("quorumhub");
    std::fs::copy(common::exe(), &bin).expect("copy the binary");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let probe = root.join("probe.sh");
    let script = PROBE.replace("@SECRET@", SECRET).replace("@TOKEN@", TOKEN);
    std::fs::write(&probe, script).expect("write probe");
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    prepare(&homes);

    if secret_files {
        c.use_secret_files();
    }
    c.servers_as_hub_user = as_hub_user;
    let data = c.node(1).data.clone();
    let secret_file = root.join("cluster-secret");
    let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    for a in [
        "/bin/sh".to_string(),
        probe.display().to_string(),
        data.display().to_string(),
        secret_file.display().to_string(),
        homes.display().to_string(),
        bin.display().to_string(),
    ] {
        args.push("--spawner-cmd".into());
        args.push(a);
    }
    c.extra_args = args;
    c.spawn(1);
    c.wait_leader(Duration::from_secs(30)).await;
    c.wait_cluster_version(quorumhub_state::LOG_FORMAT_VERSION, Duration::from_secs(10))
        .await;
    ProbeCluster { c, homes }
}

impl ProbeCluster {
    async fn create_user(&self, name: &str) {
        let r = client()
            .post(self.c.url(1, &format!("/hub/api/users/{name}")))
            .header("Authorization", auth())
            .send()
            .await
            .expect("create user");
        assert_eq!(r.status(), StatusCode::CREATED, "create {name}");
    }

    /// POST the user's default server: status and body.
    async fn start(&self, name: &str) -> (StatusCode, String) {
        let r = client()
            .post(self.c.url(1, &format!("/hub/api/users/{name}/server")))
            .header("Authorization", auth())
            .send()
            .await
            .expect("start server");
        let status = r.status();
        (status, r.text().await.unwrap_or_default())
    }

    async fn stop(&self, name: &str) {
        let _ = client()
            .delete(self.c.url(1, &format!("/hub/api/users/{name}/server")))
            .header("Authorization", auth())
            .send()
            .await;
    }

    fn data(&self) -> PathBuf {
        self.c.node(1).data.clone()
    }

    /// The probe's findings in a server log: `what -> result`.
    fn findings(&self, log: &Path) -> std::collections::BTreeMap<String, String> {
        let text =
            std::fs::read_to_string(log).unwrap_or_else(|e| panic!("read {}: {e}", log.display()));
        assert!(text.contains("PROBE done"), "probe did not finish: {text}");
        text.lines()
            .filter_map(|l| l.strip_prefix("PROBE "))
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

fn hub_environ(c: &common::Cluster) -> Vec<u8> {
    let pid = c.node(1).child.as_ref().expect("running").id();
    std::fs::read(format!("/proc/{pid}/environ")).expect("read the hub's environ")
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_run_as_their_own_accounts_and_read_nothing_of_the_hub_or_each_other() {
    if !root_or_skip("servers_run_as_their_own_accounts") {
        return;
    }
    let pre = prefix("i");
    let (alice, bob) = (format!("{pre}alice"), format!("{pre}bob"));
    let mut accounts = Accounts(Vec::new());
    let pc = probe_cluster(&["--system-user-prefix", &pre], true, false, |homes| {
        accounts.create(&alice, homes);
        accounts.create(&bob, homes);
    })
    .await;
    let data = pc.data();
    // The hub made its data dir private: servers run as other users.
    let mode = std::fs::metadata(&data).expect("stat").mode() & 0o777;
    assert_eq!(mode, 0o700, "data dir mode {mode:o}");
    // Started with the file flags: the hub's environment holds no secret.
    let environ = hub_environ(&pc.c);
    assert!(
        !contains(&environ, SECRET) && !contains(&environ, TOKEN),
        "the hub's /proc environ holds a secret"
    );

    for user in ["alice", "bob"] {
        pc.create_user(user).await;
        let (status, body) = pc.start(user).await;
        assert_eq!(status, StatusCode::CREATED, "{user}: {body}");
    }
    for (user, account, other) in [("alice", &alice, &bob), ("bob", &bob, &alice)] {
        let dir = data.join("servers").join(user);
        let meta = std::fs::metadata(&dir).expect("user dir");
        let uid = uid_of(account).expect("uid");
        assert_eq!(
            (meta.uid(), meta.mode() & 0o777),
            (uid, 0o700),
            "{user}'s dir"
        );
        let log = dir.join("default.log");
        let lmeta = std::fs::metadata(&log).expect("log");
        assert_eq!(
            (lmeta.uid(), lmeta.mode() & 0o777),
            (uid, 0o600),
            "{user}'s log"
        );
        let f = pc.findings(&log);
        let get = |k: &str| f.get(k).map(String::as_str);
        assert_eq!(get("uid"), Some(uid.to_string().as_str()), "{user}: {f:?}");
        assert_eq!(get("user"), Some(user), "{f:?}");
        let home = pc.homes.join(account);
        assert_eq!(get("cwd"), Some(home.to_str().expect("utf-8")), "{f:?}");
        for denied in [
            "hub-environ".to_string(),
            "data-dir".into(),
            "raft-log".into(),
            "servers-dir".into(),
            "secret-file".into(),
            format!("other-home {other}"),
        ] {
            assert_eq!(
                get(&denied),
                Some("denied"),
                "{user} could read {denied}: {f:?}"
            );
        }
        assert_eq!(get("own-home"), Some("readable"), "{user}: {f:?}");
        assert_eq!(get("env-quorumhub"), Some("absent"), "{user}: {f:?}");
    }
    // The servers' processes (now the single-user server) run as their
    // accounts, per /proc.
    for account in [&alice, &bob] {
        let uid = uid_of(account).expect("uid");
        let running = std::fs::read_dir("/proc")
            .expect("/proc")
            .flatten()
            .filter(|p| p.file_name().to_string_lossy().parse::<u32>().is_ok())
            .filter(|p| std::fs::metadata(p.path()).is_ok_and(|m| m.uid() == uid))
            .count();
        assert!(running >= 1, "no process runs as {account}");
    }

    // A user without an account: refused, with the reason, never run as
    // the hub's user.
    pc.create_user("carol").await;
    let (status, body) = pc.start("carol").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(
        body.contains("has no system account") && body.contains(&format!("{pre}carol")),
        "{body}"
    );
    assert!(
        !data.join("servers").join("carol").exists(),
        "carol got a directory"
    );
    pc.stop("alice").await;
    pc.stop("bob").await;
    drop(pc);
    drop(accounts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_account_is_created_with_create_system_users() {
    if !root_or_skip("a_missing_account_is_created") {
        return;
    }
    let pre = prefix("c");
    let dave = format!("{pre}dave");
    let mut accounts = Accounts(Vec::new());
    accounts.adopt(&dave);
    let pc = probe_cluster(
        &["--system-user-prefix", &pre, "--create-system-users"],
        true,
        false,
        |_| {},
    )
    .await;
    assert_eq!(uid_of(&dave), None, "{dave} exists before the test");
    pc.create_user("dave").await;
    let (status, body) = pc.start("dave").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let uid = uid_of(&dave).expect("the hub created the account");
    assert_ne!(uid, 0);
    let f = pc.findings(&pc.data().join("servers/dave/default.log"));
    assert_eq!(f.get("uid"), Some(&uid.to_string()), "{f:?}");
    assert_eq!(f.get("hub-environ").map(String::as_str), Some("denied"));
    assert_eq!(f.get("secret-file").map(String::as_str), Some("denied"));
    assert_eq!(f.get("own-home").map(String::as_str), Some("readable"));
    let home = f.get("cwd").cloned().expect("cwd");
    let mode = std::fs::metadata(&home).expect("home").mode() & 0o777;
    assert_eq!(mode, 0o700, "the new account's home {home} is not private");
    pc.stop("dave").await;
    drop(pc);
    drop(accounts);
}

/// The opt-in: every server as the hub's user. Its probe *can* read the
/// hub's /proc environ (same user), which shows the probe works, and finds
/// no secret in it even though this hub was given both secrets by
/// environment: they are erased at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_given_by_environment_are_erased_from_the_hubs_environ() {
    let pc = probe_cluster(&[], false, true, |_| {}).await;
    let environ = hub_environ(&pc.c);
    assert!(
        contains(&environ, "QUORUMHUB_LOG="),
        "the hub's environ was not read"
    );
    assert!(
        !contains(&environ, SECRET) && !contains(&environ, TOKEN),
        "the hub's /proc environ still holds a secret"
    );
    pc.create_user("erin").await;
    let (status, body) = pc.start("erin").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let f = pc.findings(&pc.data().join("servers/erin/default.log"));
    assert_eq!(
        f.get("hub-environ").map(String::as_str),
        Some("readable"),
        "{f:?}"
    );
    assert_eq!(
        f.get("hub-environ-secret").map(String::as_str),
        Some("absent"),
        "{f:?}"
    );
    assert_eq!(
        f.get("env-quorumhub").map(String::as_str),
        Some("absent"),
        "{f:?}"
    );
    pc.stop("erin").await;
}
