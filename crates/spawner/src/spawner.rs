//! The [`Spawner`] trait the hub's controller drives, the spawners it can
//! choose from ([`SpawnerKind`]), their flags ([`SpawnerArgs`]) and the
//! registry that finds the spawner of a recorded server ([`Spawners`]).
//!
//! A spawner knows how to start, check and stop one server; it knows
//! nothing about Raft, tokens or routes. The controller mints the server's
//! token, records what [`Spawner::start`] returns as the server's
//! replicated `SpawnerState`, and revokes tokens when a spawner asks it to
//! ([`Revoke`]).
//!
//! Adding a spawner: implement [`Spawner`] in this crate, add its variant
//! to [`SpawnerKind`] and one line to [`Spawners::from_args`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use quorumhub_state::SpawnerState;

use crate::SpawnError;

/// One server to start: whose, which spawn of it, and what it is given.
#[derive(Clone, Debug)]
pub struct Launch {
    pub user: String,
    pub server: String,
    /// The spawn generation: a spawner names what it starts by it, so a
    /// start that a previous leader never recorded can be found again.
    pub generation: u64,
    /// The OAuth client id the server authenticates its users with.
    pub client_id: String,
    /// The server's API token (`JUPYTERHUB_API_TOKEN`) and its id.
    pub token: String,
    pub token_id: String,
    /// `JUPYTERHUB_API_URL` as the server must reach it.
    pub hub_api_url: String,
    /// The hub's public URL (`JUPYTERHUB_PUBLIC_URL`).
    pub public_url: String,
    /// What the server's profile changes (none without profiles).
    pub overrides: crate::Overrides,
    /// Whether the spawn is still wanted (`false` once the server is asked
    /// to stop): a spawner that waits long (a Slurm job in the queue) asks
    /// it now and then and gives up, removing what it started.
    pub wanted: Wanted,
}

/// [`Launch::wanted`]: a check of the replicated state, cheap and
/// synchronous.
#[derive(Clone)]
pub struct Wanted(pub std::sync::Arc<dyn Fn() -> bool + Send + Sync>);

impl Wanted {
    /// Always wanted.
    pub fn always() -> Wanted {
        Wanted(std::sync::Arc::new(|| true))
    }

    pub fn check(&self) -> bool {
        (self.0)()
    }
}

impl std::fmt::Debug for Wanted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Wanted(..)")
    }
}

impl Launch {
    /// What tells this attempt at the spawn from another leader's: the
    /// first letters and digits of its token's id (names of containers and
    /// Slurm jobs end with it).
    pub fn attempt(&self) -> String {
        self.token_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(8)
            .collect()
    }

    /// The JupyterHub environment of this launch for a server listening on
    /// `port`, its OAuth client id included.
    pub fn server_env(&self, port: u16) -> crate::ServerEnv {
        let mut env = crate::ServerEnv::new(
            self.user.clone(),
            self.server.clone(),
            self.token.clone(),
            self.hub_api_url.clone(),
            Some(self.public_url.clone()),
            port,
        );
        env.oauth_client_id = Some(self.client_id.clone());
        env
    }
}

/// Revokes an API token (the controller's, through the replicated state):
/// a spawner that finds a server an earlier leader started for the same
/// spawn but never recorded revokes that server's token before removing
/// it, so no token outlives its server whatever fails next.
#[async_trait::async_trait]
pub trait Revoke: Send + Sync {
    async fn revoke(&self, token_id: &str);
}

/// Whether a recorded server still runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    Running,
    /// Known for sure to be gone.
    Gone,
    /// Cannot tell now (e.g. the Docker engine does not answer): not proof
    /// that the server died.
    Unknown,
}

/// Starts, finds and stops single-user servers of one kind.
#[async_trait::async_trait]
pub trait Spawner: Send + Sync + 'static {
    /// The kind recorded in every `SpawnerState` this spawner returns.
    fn kind(&self) -> SpawnerKind;

    /// Start the server and return what to record as its replicated state
    /// (`kind` names this spawner); it must answer HTTP at `target` plus its
    /// prefix once it is up (the controller waits for that). Servers of the
    /// same spawn left by an earlier leader have their tokens revoked with
    /// `revoke`, then are removed.
    async fn start(&self, launch: &Launch, revoke: &dyn Revoke)
        -> Result<SpawnerState, SpawnError>;

    /// Whether the recorded server still runs.
    async fn liveness(&self, state: &SpawnerState) -> Liveness;

    /// A cheap, synchronous check while waiting for the server to answer:
    /// `false` once it is known to be gone. The default knows nothing.
    fn may_be_running(&self, state: &SpawnerState) -> bool {
        let _ = state;
        true
    }

    /// Stop the server, with `grace` between asking and forcing, and
    /// remove what it leaves behind.
    async fn stop(&self, state: &SpawnerState, grace: Duration) -> Result<(), SpawnError>;

    /// Why a server that [`Spawner::liveness`] found gone ended, in the
    /// spawner's words (e.g. Slurm's `TIMEOUT (TimeLimit)`); `None`: it
    /// cannot tell.
    async fn gone_reason(&self, state: &SpawnerState) -> Option<String> {
        let _ = state;
        None
    }

    /// Remove what this spawner started for this cluster that no spawn in
    /// `owned` claims (a server stopped while its start was never
    /// recorded), revoking its token. Called by the leader now and then,
    /// after a read barrier; a spawner must leave alone anything too young
    /// to be known for sure to be nobody's. The default does nothing.
    async fn reap(&self, owned: &Owned, revoke: &dyn Revoke) {
        let _ = (owned, revoke);
    }
}

/// One spawn the replicated state knows (see [`Spawner::reap`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedSpawn {
    pub user: String,
    pub server: String,
    pub generation: u64,
    /// The recorded `SpawnerState::pid` of this spawner's kind, if any.
    pub recorded_id: Option<u32>,
}

/// Every active spawn, as [`Spawner::reap`] is given them.
pub type Owned = [OwnedSpawn];

/// The spawners this build has, by the name their servers record.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpawnerKind {
    /// A local process on the leading replica's host.
    Process,
    /// A container per server, which outlives any hub replica.
    Docker,
    /// A Slurm batch job per server, on the cluster's compute nodes.
    Slurm,
}

impl SpawnerKind {
    pub const ALL: [SpawnerKind; 3] = [
        SpawnerKind::Process,
        SpawnerKind::Docker,
        SpawnerKind::Slurm,
    ];

    /// The name recorded in a server's replicated `SpawnerState::kind`:
    /// part of the log format, so it never changes.
    pub fn as_str(self) -> &'static str {
        match self {
            SpawnerKind::Process => "process",
            SpawnerKind::Docker => "docker",
            SpawnerKind::Slurm => "slurm",
        }
    }

    /// The spawner that started a server, from its recorded kind; `None`
    /// for a name this build does not know.
    pub fn of(sp: &SpawnerState) -> Option<SpawnerKind> {
        SpawnerKind::ALL.into_iter().find(|k| k.as_str() == sp.kind)
    }
}

/// The spawner flags of a hub replica.
#[derive(clap::Args, Clone, Debug)]
pub struct SpawnerArgs {
    /// Which spawner starts single-user servers: `process` (a local process
    /// on the leading replica's host), `docker` (a container per server,
    /// which outlives and is unaffected by any hub replica) or `slurm` (a
    /// Slurm batch job per server, on the cluster's compute nodes).
    #[arg(long = "spawner", value_enum, default_value_t = SpawnerKind::Process)]
    pub kind: SpawnerKind,
    /// Command that runs a single-user server (default: this binary's
    /// built-in `singleuser`; with `--spawner docker`, `singleuser` as the
    /// image's command). Repeat for arguments.
    #[arg(long = "spawner-cmd", allow_hyphen_values = true)]
    pub cmd: Vec<String>,
    #[command(flatten)]
    pub process: crate::local::ProcessArgs,
    #[command(flatten)]
    pub docker: crate::docker::DockerArgs,
    #[command(flatten)]
    pub slurm: crate::slurm::SlurmArgs,
}

/// A spawner flag that cannot work; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum SpawnerConfigError {
    #[error("--spawner docker needs --docker-network: the Docker network the proxies are on")]
    DockerNetwork,
    #[error("the process spawner runs each server as its user's own system account, which needs the hub to run as root (it runs as uid {0}); run it as root, or start it with --spawner-run-as-hub-user to run every server as the hub's own user (no isolation between users)")]
    NotRootForUserAccounts(u32),
    #[error("--system-user-prefix {0:?}: {1}")]
    SystemUserPrefix(String, String),
    #[error("{0}")]
    Slurm(String),
}

impl SpawnerArgs {
    /// Whether servers run as their users' own system accounts.
    pub fn servers_as_user_accounts(&self) -> bool {
        self.kind == SpawnerKind::Process && !self.process.spawner_run_as_hub_user
    }

    /// Whether servers run as the hub's own Unix user (the opt-in that
    /// `dev` uses, to be logged as a warning).
    pub fn servers_as_hub_user(&self) -> bool {
        self.kind == SpawnerKind::Process && self.process.spawner_run_as_hub_user
    }

    pub fn validate(&self) -> Result<(), SpawnerConfigError> {
        self.process.validate()?;
        if self.servers_as_user_accounts() {
            let uid = crate::account::effective_uid();
            if uid != 0 {
                return Err(SpawnerConfigError::NotRootForUserAccounts(uid));
            }
        }
        if self.kind == SpawnerKind::Docker {
            self.docker.validate()?;
        }
        if self.kind == SpawnerKind::Slurm {
            self.slurm.validate()?;
            let uid = crate::account::effective_uid();
            if !self.process.spawner_run_as_hub_user && uid != 0 {
                return Err(SpawnerConfigError::Slurm(format!(
                    "the Slurm spawner submits each server's job as its user's own account (sbatch --uid), which needs the hub to run as root (it runs as uid {uid}); run it as root, or start it with --spawner-run-as-hub-user to run every job as the hub's own user"
                )));
            }
        }
        Ok(())
    }
}

/// What every spawner of a replica shares.
#[derive(Clone, Debug)]
pub struct SpawnerContext {
    /// The cluster's id: names and labels what its spawners start.
    pub cluster_id: String,
    /// `<data-dir>/servers`: the servers' directories and logs.
    pub servers_dir: PathBuf,
}

/// Every spawner of this build, one of them starting new servers.
///
/// All of them stay registered whichever is chosen, so servers recorded by
/// another kind (before an operator switched `--spawner`) are still checked
/// and stopped by the spawner that started them.
pub struct Spawners {
    active: SpawnerKind,
    all: Vec<Arc<dyn Spawner>>,
}

impl Spawners {
    /// The registration of this build's spawners.
    pub fn from_args(args: &SpawnerArgs, ctx: &SpawnerContext) -> Spawners {
        let all: Vec<Arc<dyn Spawner>> = vec![
            Arc::new(crate::local::ProcessSpawner::new(args, ctx)),
            Arc::new(crate::docker::DockerSpawner::new(args, ctx)),
            Arc::new(crate::slurm::SlurmSpawner::new(args, ctx)),
        ];
        Spawners::new(args.kind, all)
    }

    /// `all` must hold a spawner of kind `active`, and one per kind.
    pub fn new(active: SpawnerKind, all: Vec<Arc<dyn Spawner>>) -> Spawners {
        assert!(
            all.iter().any(|s| s.kind() == active),
            "no spawner registered for the chosen kind {active:?}"
        );
        Spawners { active, all }
    }

    /// Every registered spawner.
    pub fn all(&self) -> impl Iterator<Item = &dyn Spawner> {
        self.all.iter().map(|s| &**s)
    }

    /// The spawner that starts new servers.
    pub fn active(&self) -> &dyn Spawner {
        self.kind(self.active)
            .expect("checked when the registry was made")
    }

    pub fn kind(&self, kind: SpawnerKind) -> Option<&dyn Spawner> {
        self.all.iter().find(|s| s.kind() == kind).map(|s| &**s)
    }

    /// The spawner that started a recorded server; `None` for a kind this
    /// build does not know (recorded by a newer release, mid-upgrade).
    pub fn of(&self, state: &SpawnerState) -> Option<&dyn Spawner> {
        SpawnerKind::of(state).and_then(|k| self.kind(k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(kind: &str) -> SpawnerState {
        SpawnerState {
            kind: kind.into(),
            host: String::new(),
            pid: 0,
            proc_start: 0,
            port: 0,
            target: String::new(),
            token_id: None,
        }
    }

    #[test]
    fn spawner_kinds_keep_their_recorded_names_and_flag_names() {
        use clap::ValueEnum;
        // The recorded names are in every replica's state: never rename.
        let names: Vec<_> = SpawnerKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names, ["process", "docker", "slurm"]);
        for k in SpawnerKind::ALL {
            // `--spawner NAME` names a kind as its servers record it.
            let flag = k.to_possible_value().map(|v| v.get_name().to_string());
            assert_eq!(flag.as_deref(), Some(k.as_str()));
            assert_eq!(SpawnerKind::of(&state(k.as_str())), Some(k));
        }
        assert_eq!(SpawnerKind::ALL.len(), SpawnerKind::value_variants().len());
        assert_eq!(SpawnerKind::of(&state("kubernetes")), None);
    }

    #[test]
    fn the_registry_finds_each_recorded_kind_and_no_other() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            spawner: SpawnerArgs,
        }
        let ctx = SpawnerContext {
            cluster_id: "c1".into(),
            servers_dir: "/nonexistent/servers".into(),
        };
        for (flags, active) in [
            (&["x"][..], SpawnerKind::Process),
            (
                &["x", "--spawner", "docker", "--docker-network", "n"][..],
                SpawnerKind::Docker,
            ),
            (&["x", "--spawner", "slurm"][..], SpawnerKind::Slurm),
        ] {
            let args = Flags::parse_from(flags).spawner;
            let spawners = Spawners::from_args(&args, &ctx);
            assert_eq!(spawners.active().kind(), active);
            for k in SpawnerKind::ALL {
                let found = spawners.of(&state(k.as_str())).map(|s| s.kind());
                assert_eq!(found, Some(k), "a server recorded as {k:?}");
            }
            assert!(spawners.of(&state("kubernetes")).is_none());
            assert!(spawners.of(&state("")).is_none());
        }
    }
}
