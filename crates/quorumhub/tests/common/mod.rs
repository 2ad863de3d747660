//! Shared by the integration tests: the launcher lives in quorumhub-testkit.

#![allow(dead_code, unused_imports)]

pub mod browser;

use std::path::PathBuf;

pub use quorumhub_testkit::{auth, client, kill_processes_under, Node, SECRET, TOKEN};

pub fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_quorumhub"))
}

pub type Cluster = quorumhub_testkit::Cluster;

/// The program `name` of the Jupyter venv (scripts/jupyter-venv.sh
/// installs jupyterhub, JupyterLab and the idle culler there, or
/// `QH_JUPYTER_VENV` names another one).
pub fn venv_bin(name: &str) -> PathBuf {
    let venv = std::env::var("QH_JUPYTER_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/jupyter-venv")
        });
    let exe = venv.join("bin").join(name);
    assert!(
        exe.exists(),
        "{} is missing: run scripts/jupyter-venv.sh (or set QH_JUPYTER_VENV)",
        exe.display()
    );
    exe
}

/// The real `jupyterhub-singleuser`.
pub fn singleuser() -> PathBuf {
    venv_bin("jupyterhub-singleuser")
}

/// Start `n` replicas of this build's binary.
pub async fn start(n: u64, extra_args: &[&str]) -> Cluster {
    Cluster::start(exe(), n, extra_args).await
}

/// Start `n` replicas whose public URL is the proxy at `proxy_addr` (for a
/// test that must know that address before the cluster starts).
pub async fn start_with_proxy_addr(n: u64, proxy_addr: &str, extra_args: &[&str]) -> Cluster {
    let mut c = Cluster::prepare(exe(), n, extra_args);
    c.proxy_addr = proxy_addr.to_string();
    for id in 1..=n {
        c.spawn(id);
    }
    c.wait_leader(std::time::Duration::from_secs(30)).await;
    c
}

/// Run `hubctl ARGS` against replica 1 with `stdin` piped in.
pub fn hubctl_stdin(c: &Cluster, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(exe())
        .args(["ctl", "--hub", &c.node(1).grpc])
        .args(args)
        .env("QUORUMHUB_CLUSTER_SECRET", SECRET)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("hubctl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write");
    child.wait_with_output().expect("hubctl")
}

/// Set `user`'s password with `hubctl users set-password`.
pub fn set_password(c: &Cluster, user: &str, password: &str) {
    let out = hubctl_stdin(
        c,
        &["users", "set-password", user],
        &format!("{password}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
