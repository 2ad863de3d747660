//! The embedded process spawner, the Docker spawner ([`docker`]) and the
//! built-in single-user server.
//!
//! The hub's controller uses [`spawn_process`] to start a single-user server
//! with the environment from [`jupyterhub_env`], records
//! `(pid, proc_start, host, port, target)` in replicated state, waits with
//! [`wait_http_ready`] and then commits the route. Servers run in their own
//! session and outlive the hub that started them, so a later leader on the
//! same host adopts them with [`is_alive`] and [`stop_process`], which
//! identify a process by pid *and* start time and never signal a different
//! process that reuses the pid.
//!
//! By default a server runs as its user's own system account ([`account`]):
//! the hub looks the account up, and [`spawn_process`] switches to it
//! before `exec`. Its environment is cleared and rebuilt from an allowlist,
//! so no variable of the hub's reaches it.
//!
//! [`singleuser`] is a small stand-in for `jupyterhub-singleuser` (run as
//! `quorumhub singleuser`), so demos and tests need nothing outside the
//! workspace.

pub mod account;
pub mod docker;
mod env;
pub mod local;
mod process;
mod ready;
pub mod service;
pub mod singleuser;
pub mod slurm;
mod spawner;

use std::path::PathBuf;
use std::time::Duration;

pub use account::{Account, RunAs};
pub use env::{
    env_keep_from_os, fmt_ip_url, jupyterhub_env, oauth_callback_url, oauth_client_id,
    server_prefix, url_escape_path, url_path_join, ServerEnv, DEFAULT_ENV_KEEP,
};
pub use process::{
    host_name, is_alive, is_hub_only_env, pick_free_port, spawn_process, stop_process, ProcessSpec,
    Spawned, INHERITED_ENV,
};
pub use quorumhub_state::profiles::{Overrides, Profile, Profiles};
pub use ready::wait_http_ready;
pub use service::{ServiceCopy, ServiceLaunch, ServiceRunner};
pub use spawner::{
    Launch, Liveness, Owned, OwnedSpawn, Revoke, Spawner, SpawnerArgs, SpawnerConfigError,
    SpawnerContext, SpawnerKind, Spawners, Wanted,
};

/// Why starting, watching or stopping a server failed; each message says
/// what to do about it.
#[derive(thiserror::Error, Debug)]
pub enum SpawnError {
    #[error("the spawner command is empty: set --spawner-cmd to a program and its arguments")]
    EmptyCommand,
    #[error("cannot start {program:?}: {source}; check that it exists, is executable and is on the hub's PATH (or give an absolute path in --spawner-cmd)")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("cannot start {program:?} as uid {uid}: {source}; the hub must run as root to start a server as its user's account, and the program and every directory above it must be readable and executable by that user (or start the hub with --spawner-run-as-hub-user)")]
    SpawnAs {
        program: String,
        uid: u32,
        source: std::io::Error,
    },
    #[error("cannot look up the system account {account:?}: {source}; check /etc/nsswitch.conf and the password database")]
    AccountLookup {
        account: String,
        source: std::io::Error,
    },
    #[error("{name:?} cannot be a system account name: {reason}; use hub user names that are valid Unix names, or set --system-user-prefix, or create the accounts yourself")]
    BadAccountName { name: String, reason: String },
    #[error("cannot create the system account {name:?}: {detail}; create it by hand (useradd -m {name}) or fix the cause")]
    CreateAccount { name: String, detail: String },
    #[error("cannot prepare the server directory {path:?}: {source}; the hub (root) must be able to create it and give it to the user")]
    UserDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("working directory {path:?} does not exist or is not a directory; create it or change the server's working directory")]
    Cwd { path: PathBuf },
    #[error("cannot open log file {path:?}: {source}; make sure its directory exists and is writable by the hub's user")]
    LogFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read /proc/{pid}/stat: {source}; the spawner needs Linux with /proc mounted to track processes")]
    ProcStat { pid: u32, source: std::io::Error },
    #[error("cannot signal process group {pid}: {source}; the hub must run as the same user as the server (or as root)")]
    Signal { pid: u32, source: std::io::Error },
    #[error("process {pid} is still running {waited:?} after SIGTERM and SIGKILL; it may be stuck in the kernel (check `ps -o stat= -p {pid}`) and must be killed by hand")]
    StillRunning { pid: u32, waited: Duration },
    #[error("cannot poll {url:?}: {reason}; give an http:// URL with a host and port")]
    BadUrl { url: String, reason: String },
    #[error("the server process exited before it answered HTTP at {url}; read its log file for the reason")]
    Died { url: String },
    #[error("cannot reach the Docker engine at {socket}: {detail}; mount the engine's socket into the hub (e.g. -v /var/run/docker.sock:/var/run/docker.sock) or set --docker-socket")]
    DockerSocket { socket: String, detail: String },
    #[error("Docker image {image:?} not found ({detail}); build it on every Docker host (deploy/build-images.sh) or set --docker-image")]
    DockerImage { image: String, detail: String },
    #[error("Docker {op} failed: {detail}")]
    Docker { op: &'static str, detail: String },
    #[error("no free port on this host for the server: {0}; free ports or raise the local port range (net.ipv4.ip_local_port_range)")]
    NoFreePort(std::io::Error),
    #[error("cannot find the quorumhub binary to run its built-in single-user server: {0}; set --spawner-cmd")]
    CurrentExe(std::io::Error),
    #[error("cannot create {} (mode 0700): {source}; check the data dir", path.display())]
    ServersDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("user {user} has no system account {account:?} on host {host}, and servers run as their users' own accounts: create it (useradd -m {account}), or start the hubs with --create-system-users")]
    NoAccount {
        user: String,
        account: String,
        host: String,
    },
    #[error("system account {account:?} of user {user} is root (uid 0); servers never run as root: give the user an unprivileged account, or set --system-user-prefix")]
    RootAccount { user: String, account: String },
    #[error("the home directory {} of system account {account:?} does not exist; create it (mkdir -m 700 {0} && chown {account}: {0})", home.display())]
    NoHome { home: PathBuf, account: String },
    #[error("the server runs on host {host} (pid {pid}); it cannot be signalled from here: stop it on that host")]
    OtherHost { host: String, pid: u32 },
    #[error("container {name} has no address on network {network:?}; check --docker-network")]
    NoContainerAddress { name: String, network: String },
    #[error("{0}")]
    Slurm(String),
    #[error("the server did not answer HTTP at {url} within {timeout:?} (last attempt: {last}); read its log file, or raise --spawn-timeout-s if it is just slow")]
    NotReady {
        url: String,
        timeout: Duration,
        last: String,
    },
}
