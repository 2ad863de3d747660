//! The process spawner: each server is a local process on the leading
//! replica's host, run as its user's own system account (or, opted in, as
//! the hub's user), in its own session so it outlives the hub that
//! started it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use quorumhub_state::SpawnerState;

use crate::account::{self, Account};
use crate::spawner::{
    Launch, Liveness, Revoke, SpawnerArgs, SpawnerConfigError, SpawnerContext, SpawnerKind,
};
use crate::{ProcessSpec, SpawnError};

/// The process spawner's flags.
#[derive(clap::Args, Clone, Debug)]
pub struct ProcessArgs {
    /// Process and Slurm spawners: run every server as the hub's own Unix
    /// user (the process spawner: in the shared <data-dir>/servers) instead
    /// of as its user's own system account. Every user's server can then read every other's files and
    /// the hub's; for `quorumhub dev` and tests only. Logged as a warning.
    #[arg(long)]
    pub spawner_run_as_hub_user: bool,
    /// Process and Slurm spawners: the system account of hub user NAME is
    /// PREFIX + NAME (e.g. `jupyter-` makes alice's `jupyter-alice`).
    #[arg(long, default_value = "")]
    pub system_user_prefix: String,
    /// Process spawner: create a missing system account (with `useradd`,
    /// home directory included) instead of refusing to start the server.
    #[arg(long)]
    pub create_system_users: bool,
}

impl ProcessArgs {
    pub(crate) fn validate(&self) -> Result<(), SpawnerConfigError> {
        if !self.system_user_prefix.is_empty() {
            // The prefix plus a valid hub name must make a valid account
            // name: check it with a one-letter name.
            let probe = format!("{}a", self.system_user_prefix);
            account::validate_account_name(&probe).map_err(|e| {
                SpawnerConfigError::SystemUserPrefix(self.system_user_prefix.clone(), e.to_string())
            })?;
        }
        Ok(())
    }
}

/// Starts servers as local processes.
pub struct ProcessSpawner {
    args: ProcessArgs,
    /// Empty: this binary's `singleuser`.
    cmd: Vec<String>,
    servers_dir: PathBuf,
}

impl ProcessSpawner {
    pub fn new(args: &SpawnerArgs, ctx: &SpawnerContext) -> ProcessSpawner {
        ProcessSpawner {
            args: args.process.clone(),
            cmd: args.cmd.clone(),
            servers_dir: ctx.servers_dir.clone(),
        }
    }

    fn spec(&self, launch: &Launch, port: u16) -> Result<ProcessSpec, SpawnError> {
        let mut server_env = launch.server_env(port);
        server_env.env_keep = crate::env_keep_from_os(crate::DEFAULT_ENV_KEEP);
        let mut env = crate::jupyterhub_env(&server_env);
        launch.overrides.apply_env(&mut env);
        let cmd = if self.cmd.is_empty() && launch.overrides.cmd.is_none() {
            let exe = std::env::current_exe().map_err(SpawnError::CurrentExe)?;
            vec![exe.display().to_string(), "singleuser".into()]
        } else {
            self.cmd.clone()
        };
        let cmd = launch.overrides.command(cmd);
        let log_name = quorumhub_state::ids::server_log_file(&launch.server);
        if self.args.spawner_run_as_hub_user {
            // Opt-in (dev, tests): the hub's user; the same file names as
            // below, in directories of the hub's.
            let user_dir = self.servers_dir.join(account::dir_escape(&launch.user));
            {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .recursive(true)
                    .create(&user_dir)
                    .map_err(|source| SpawnError::ServersDir {
                        path: user_dir.clone(),
                        source,
                    })?;
            }
            return Ok(ProcessSpec {
                cmd,
                env,
                cwd: Some(self.servers_dir.clone()),
                log_path: Some(user_dir.join(log_name)),
                run_as: None,
            });
        }
        let account = self.account(&launch.user)?;
        let user_dir = user_server_dir(&self.servers_dir, &launch.user, &account)?;
        if !account.home.is_dir() {
            return Err(SpawnError::NoHome {
                home: account.home.clone(),
                account: account.name.clone(),
            });
        }
        // JupyterHub's LocalProcessSpawner.user_env.
        env.insert("USER".into(), account.name.clone());
        env.insert("LOGNAME".into(), account.name.clone());
        env.insert("HOME".into(), account.home.display().to_string());
        env.insert("SHELL".into(), account.shell.clone());
        Ok(ProcessSpec {
            cmd,
            env,
            cwd: Some(account.home.clone()),
            log_path: Some(user_dir.join(log_name)),
            run_as: Some(account.run_as()),
        })
    }

    /// The system account `user`'s servers run as: `--system-user-prefix`
    /// + the name, created with `--create-system-users` when missing.
    ///   Without an account the spawn is refused, never run as the hub's
    ///   user; root never runs a server.
    fn account(&self, user: &str) -> Result<Account, SpawnError> {
        let name = format!("{}{user}", self.args.system_user_prefix);
        let found = match account::lookup_account(&name)? {
            Some(a) => a,
            None if self.args.create_system_users => account::create_account(&name)?,
            None => {
                return Err(SpawnError::NoAccount {
                    user: user.into(),
                    account: name,
                    host: crate::host_name(),
                })
            }
        };
        if found.uid == 0 {
            return Err(SpawnError::RootAccount {
                user: user.into(),
                account: name,
            });
        }
        Ok(found)
    }
}

/// `<servers>/<escaped user>`, owned by the account, mode 0700; `<servers>`
/// itself the hub's, mode 0700.
fn user_server_dir(
    servers_dir: &Path,
    user: &str,
    account: &Account,
) -> Result<PathBuf, SpawnError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(servers_dir)
        .and_then(|()| {
            std::fs::set_permissions(servers_dir, std::fs::Permissions::from_mode(0o700))
        })
        .map_err(|source| SpawnError::ServersDir {
            path: servers_dir.to_path_buf(),
            source,
        })?;
    let dir = servers_dir.join(account::dir_escape(user));
    account::prepare_user_dir(&dir, account)?;
    Ok(dir)
}

/// Whether the recorded process runs, here: a process on another host
/// cannot be seen, and counts as gone.
fn running_here(sp: &SpawnerState) -> bool {
    sp.host == crate::host_name() && crate::is_alive(sp.pid, sp.proc_start)
}

#[async_trait::async_trait]
impl crate::Spawner for ProcessSpawner {
    fn kind(&self) -> SpawnerKind {
        SpawnerKind::Process
    }

    async fn start(
        &self,
        launch: &Launch,
        _revoke: &dyn Revoke,
    ) -> Result<SpawnerState, SpawnError> {
        // A process an earlier leader started but never recorded is not
        // found again (it is nobody's); its token is the controller's to
        // drop, as it was never recorded either.
        let port = crate::pick_free_port().map_err(SpawnError::NoFreePort)?;
        let spec = self.spec(launch, port)?;
        let spawned = crate::spawn_process(&spec)?;
        Ok(SpawnerState {
            kind: SpawnerKind::Process.as_str().into(),
            host: spawned.host,
            pid: spawned.pid,
            proc_start: spawned.proc_start,
            port,
            target: format!("http://127.0.0.1:{port}"),
            token_id: Some(launch.token_id.clone()),
        })
    }

    async fn liveness(&self, state: &SpawnerState) -> Liveness {
        if running_here(state) {
            Liveness::Running
        } else {
            Liveness::Gone
        }
    }

    fn may_be_running(&self, state: &SpawnerState) -> bool {
        running_here(state)
    }

    async fn stop(&self, state: &SpawnerState, grace: Duration) -> Result<(), SpawnError> {
        if state.host != crate::host_name() {
            return Err(SpawnError::OtherHost {
                host: state.host.clone(),
                pid: state.pid,
            });
        }
        crate::stop_process(state.pid, state.proc_start, grace).await
    }
}
