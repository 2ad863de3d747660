//! The spawner controller: makes running processes match the replicated
//! wishes (servers to spawn, servers to stop).
//!
//! It runs on every replica and acts only while that replica leads, so a new
//! leader simply resumes: a server recorded as started is adopted (checked
//! alive by pid and start time), not started again. Everything it learns is
//! committed as a command before anyone relies on it; spawn generations
//! fence off reports about an earlier spawn of the same server.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quorumhub_spawner::docker::{self, ContainerSpec, DockerSpawner};
use quorumhub_spawner::{ProcessSpec, ServerEnv};
use quorumhub_state::{Command, Phase, Response, Route, SpawnerState, Token, TokenOwner};
use tokio::sync::watch;

use crate::config::SpawnerKind;
use crate::hub::{hash_token, new_token, Hub};
use crate::time::now_ms;

/// How often running servers are checked for liveness.
const POLL: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
struct Job {
    user: String,
    server: String,
    generation: u64,
    phase: Phase,
    spawner: Option<SpawnerState>,
    /// The OAuth client id recorded for this spawn (or JupyterHub's, for a
    /// spawn requested before log format 6): what the server is given.
    client_id: String,
}

type Key = (String, String, u64);

pub(crate) async fn run(hub: Arc<Hub>, mut stop: watch::Receiver<bool>) {
    let mut applied = hub.sm.subscribe();
    let mut metrics = hub.raft.metrics();
    let inflight: Arc<Mutex<HashSet<Key>>> = Arc::default();
    let mut poll = tokio::time::interval(POLL);
    let mut was_leader = false;
    loop {
        let polling = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            r = applied.changed() => { if r.is_err() { return } false }
            r = metrics.changed() => { if r.is_err() { return } false }
            _ = poll.tick() => true,
        };
        let leader = hub.is_leader();
        if !leader {
            was_leader = false;
            continue;
        }
        if !was_leader {
            // A new leader acts only on state that includes every committed
            // entry: pass the read barrier first.
            if hub.linearize().await.is_err() {
                continue;
            }
            tracing::info!("leading: resuming the spawner controller");
            was_leader = true;
        }
        let jobs: Vec<Job> = hub.read(|s| {
            s.active_servers()
                .filter(|(_, srv)| polling || srv.phase != Phase::Running)
                .map(|(u, srv)| Job {
                    user: u.name.clone(),
                    server: srv.name.clone(),
                    generation: srv.generation,
                    phase: srv.phase,
                    spawner: srv.spawner.clone(),
                    client_id: srv.client_id(&u.name),
                })
                .collect()
        });
        for job in jobs {
            let key = (job.user.clone(), job.server.clone(), job.generation);
            if !inflight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key.clone())
            {
                continue;
            }
            let hub = hub.clone();
            let inflight = inflight.clone();
            tokio::spawn(async move {
                let span = tracing::info_span!("server", user = %job.user, server = %job.server, generation = job.generation);
                tracing::Instrument::instrument(handle(&hub, job), span).await;
                inflight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&key);
            });
        }
    }
}

async fn handle(hub: &Hub, job: Job) {
    match (job.phase, &job.spawner) {
        (Phase::Spawning, None) => spawn(hub, &job).await,
        (Phase::Spawning, Some(sp)) => adopt(hub, &job, sp.clone()).await,
        (Phase::Running, Some(sp)) => {
            if alive(hub, sp).await == Some(false) {
                tracing::warn!(pid = sp.pid, host = %sp.host, "server process is gone");
                stopped(hub, &job, "the server process exited").await;
            }
        }
        (Phase::Running, None) => stopped(hub, &job, "running without a process record").await,
        (Phase::Stopping, sp) => {
            if let Some(sp) = sp {
                terminate(hub, sp).await;
            }
            stopped(hub, &job, "stopped on request").await;
        }
    }
}

/// Whether the server's process or container runs: `Some(false)` only when
/// that is known for sure (a Docker engine that does not answer is not
/// proof that a container died).
async fn alive(hub: &Hub, sp: &SpawnerState) -> Option<bool> {
    match SpawnerKind::of(sp) {
        Some(SpawnerKind::Docker) => match docker_client(hub).await {
            Ok(d) => match d.is_running(&sp.host).await {
                Ok(running) => Some(running),
                Err(e) => {
                    tracing::warn!(container = %sp.host, error = %e, "cannot check the server container");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot check the server container");
                None
            }
        },
        _ => Some(process_alive(sp)),
    }
}

fn process_alive(sp: &SpawnerState) -> bool {
    sp.host == quorumhub_spawner::host_name() && quorumhub_spawner::is_alive(sp.pid, sp.proc_start)
}

/// The Docker engine connection, made on first use.
async fn docker_client(hub: &Hub) -> Result<&DockerSpawner, quorumhub_spawner::SpawnError> {
    hub.docker
        .get_or_try_init(|| DockerSpawner::connect(&hub.config.docker_socket))
        .await
}

async fn terminate(hub: &Hub, sp: &SpawnerState) {
    let grace = Duration::from_secs(hub.config.stop_grace_s);
    if SpawnerKind::of(sp) == Some(SpawnerKind::Docker) {
        let result = match docker_client(hub).await {
            Ok(d) => d.stop_and_remove(&sp.host, grace).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(container = %sp.host, error = %e, "stopping the server container failed");
        }
        return;
    }
    if sp.host != quorumhub_spawner::host_name() {
        tracing::warn!(host = %sp.host, pid = sp.pid, "server runs on another host; cannot signal it from here");
        return;
    }
    if let Err(e) = quorumhub_spawner::stop_process(sp.pid, sp.proc_start, grace).await {
        tracing::warn!(pid = sp.pid, error = %e, "stopping the server process failed");
    }
}

/// Longest stop reason recorded (it is replicated and shown by the API).
const MAX_REASON_CHARS: usize = 2000;

async fn stopped(hub: &Hub, job: &Job, reason: &str) {
    let cmd = Command::ServerStopped {
        user: job.user.clone(),
        server_name: job.server.clone(),
        generation: job.generation,
        reason: reason.chars().take(MAX_REASON_CHARS).collect(),
    };
    match hub.propose_local(cmd).await {
        Ok(Response::Done) => tracing::info!(reason, "server stopped"),
        Ok(other) => tracing::debug!(?other, "server-stopped not applied"),
        Err(e) => tracing::warn!(error = %e, "could not record the stop; will retry"),
    }
}

/// The server's current phase and generation in the applied state.
fn current(hub: &Hub, job: &Job) -> Option<Phase> {
    hub.read(|s| {
        s.server(&job.user, &job.server)
            .filter(|srv| srv.generation == job.generation)
            .map(|srv| srv.phase)
    })
}

async fn spawn(hub: &Hub, job: &Job) {
    match start_process(hub, job).await {
        Ok(sp) => {
            tracing::info!(pid = sp.pid, port = sp.port, "server process started");
            wait_and_publish(hub, job, sp).await;
        }
        Err(reason) => {
            tracing::warn!(%reason, "spawn failed");
            stopped(hub, job, &reason).await;
        }
    }
}

async fn start_process(hub: &Hub, job: &Job) -> Result<SpawnerState, String> {
    let token = new_token();
    let token_id = match hub
        .propose_local(Command::CreateToken {
            token: Token {
                id: String::new(),
                owner: TokenOwner::Server {
                    user: job.user.clone(),
                    server_name: job.server.clone(),
                },
                hash: hash_token(&token),
                prefix: token.chars().take(4).collect(),
                note: format!(
                    "server token for {}",
                    Route::prefix_for(&job.user, &job.server)
                ),
                created: now_ms(),
                expires_at: None,
                last_activity: None,
                scopes: vec![],
                client_id: None,
                session: None,
            },
        })
        .await
    {
        Ok(Response::TokenCreated { id }) => id,
        Ok(other) => {
            return Err(format!(
                "could not create the server's API token: {other:?}"
            ))
        }
        Err(e) => return Err(format!("could not create the server's API token: {e}")),
    };
    let started = match hub.config.spawner {
        SpawnerKind::Process => start_local(hub, job, token, &token_id),
        SpawnerKind::Docker => start_container(hub, job, token, &token_id).await,
    };
    let sp = match started {
        Ok(sp) => sp,
        Err(e) => {
            revoke(hub, &token_id).await;
            return Err(e);
        }
    };
    let recorded = hub
        .propose_local(Command::SpawnStarted {
            user: job.user.clone(),
            server_name: job.server.clone(),
            generation: job.generation,
            spawner: sp.clone(),
        })
        .await;
    match recorded {
        Ok(Response::Done) => Ok(sp),
        other => {
            // Not recorded (another leader's process won, or no quorum):
            // nobody could find this process later. Stop it, drop its token.
            terminate(hub, &sp).await;
            revoke(hub, &token_id).await;
            Err(format!("could not record the started process: {other:?}"))
        }
    }
}

/// Starts the server as a local process (the process spawner).
fn start_local(
    hub: &Hub,
    job: &Job,
    token: String,
    token_id: &str,
) -> Result<SpawnerState, String> {
    let port = quorumhub_spawner::pick_free_port().map_err(|e| format!("no free port: {e}"))?;
    let mut server_env = ServerEnv::new(
        job.user.clone(),
        job.server.clone(),
        token,
        hub.config.hub_api_url(),
        Some(hub.config.public_url.clone()),
        port,
    );
    server_env.oauth_client_id = Some(job.client_id.clone());
    server_env.env_keep = quorumhub_spawner::env_keep_from_os(quorumhub_spawner::DEFAULT_ENV_KEEP);
    let mut env = quorumhub_spawner::jupyterhub_env(&server_env);
    let cmd = if hub.config.spawner_cmd.is_empty() {
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot find the quorumhub binary: {e}"))?;
        vec![exe.display().to_string(), "singleuser".into()]
    } else {
        hub.config.spawner_cmd.clone()
    };
    let servers_dir = hub.config.data_dir.join("servers");
    let spec = if hub.config.spawner_run_as_hub_user {
        // Opt-in (dev, tests): the hub's user; the same file names as below,
        // in directories of the hub's.
        let user_dir = servers_dir.join(quorumhub_spawner::account::dir_escape(&job.user));
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .recursive(true)
                .create(&user_dir)
                .map_err(|e| {
                    format!(
                        "cannot create {} (mode 0700): {e}; check the data dir",
                        user_dir.display()
                    )
                })?;
        }
        ProcessSpec {
            cmd,
            env,
            cwd: Some(servers_dir.clone()),
            log_path: Some(user_dir.join(server_log_name(&job.server))),
            run_as: None,
        }
    } else {
        let account = user_account(hub, &job.user)?;
        let user_dir = user_server_dir(&servers_dir, &job.user, &account)?;
        if !account.home.is_dir() {
            return Err(format!(
                "the home directory {} of system account {:?} does not exist; create it \
                 (mkdir -m 700 {0} && chown {1}: {0})",
                account.home.display(),
                account.name
            ));
        }
        // JupyterHub's LocalProcessSpawner.user_env.
        env.insert("USER".into(), account.name.clone());
        env.insert("LOGNAME".into(), account.name.clone());
        env.insert("HOME".into(), account.home.display().to_string());
        env.insert("SHELL".into(), account.shell.clone());
        ProcessSpec {
            cmd,
            env,
            cwd: Some(account.home.clone()),
            log_path: Some(user_dir.join(server_log_name(&job.server))),
            run_as: Some(account.run_as()),
        }
    };
    let spawned = quorumhub_spawner::spawn_process(&spec).map_err(|e| e.to_string())?;
    Ok(SpawnerState {
        kind: SpawnerKind::Process.as_str().into(),
        host: spawned.host,
        pid: spawned.pid,
        proc_start: spawned.proc_start,
        port,
        target: format!("http://127.0.0.1:{port}"),
        token_id: Some(token_id.to_string()),
    })
}

/// The system account `user`'s servers run as: `--system-user-prefix` +
/// the name, created with `--create-system-users` when missing. Without an
/// account the spawn is refused, never run as the hub's user; root never
/// runs a server.
fn user_account(hub: &Hub, user: &str) -> Result<quorumhub_spawner::Account, String> {
    use quorumhub_spawner::account;
    let name = format!("{}{user}", hub.config.system_user_prefix);
    let found = account::lookup_account(&name).map_err(|e| e.to_string())?;
    let found = match found {
        Some(a) => a,
        None if hub.config.create_system_users => {
            account::create_account(&name).map_err(|e| e.to_string())?
        }
        None => {
            return Err(format!(
                "user {user} has no system account {name:?} on host {}, and servers run as \
                 their users' own accounts: create it (useradd -m {name}), or start the hubs \
                 with --create-system-users",
                quorumhub_spawner::host_name()
            ))
        }
    };
    if found.uid == 0 {
        return Err(format!(
            "system account {name:?} of user {user} is root (uid 0); servers never run as root: \
             give the user an unprivileged account, or set --system-user-prefix"
        ));
    }
    Ok(found)
}

/// `<servers>/<escaped user>`, owned by the account, mode 0700; `<servers>`
/// itself the hub's, mode 0700.
fn user_server_dir(
    servers_dir: &std::path::Path,
    user: &str,
    account: &quorumhub_spawner::Account,
) -> Result<std::path::PathBuf, String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(servers_dir)
        .and_then(|()| {
            std::fs::set_permissions(servers_dir, std::fs::Permissions::from_mode(0o700))
        })
        .map_err(|e| {
            format!(
                "cannot create {} (mode 0700): {e}; check the data dir",
                servers_dir.display()
            )
        })?;
    let dir = servers_dir.join(quorumhub_spawner::account::dir_escape(user));
    quorumhub_spawner::account::prepare_user_dir(&dir, account).map_err(|e| e.to_string())?;
    Ok(dir)
}

/// The log of a server in its user's directory: `default.log` for the
/// default server, `server-<escaped name>.log` for a named one
/// ([`quorumhub_state::ids::server_log_file`]: no two servers share one).
pub(crate) fn server_log_name(server: &str) -> String {
    quorumhub_state::ids::server_log_file(server)
}

/// Starts the server as a container of its own (the Docker spawner). Its
/// name is fixed by (cluster, user, server, generation), so a container
/// left by a leader that died before recording it is found here, its token
/// revoked and the container replaced.
async fn start_container(
    hub: &Hub,
    job: &Job,
    token: String,
    token_id: &str,
) -> Result<SpawnerState, String> {
    let d = docker_client(hub).await.map_err(|e| e.to_string())?;
    let network = hub.config.docker_network.clone().unwrap_or_default();
    let labels: std::collections::BTreeMap<String, String> = [
        (docker::LABEL_CLUSTER, hub.cluster_id.clone()),
        (docker::LABEL_USER, job.user.clone()),
        (docker::LABEL_SERVER, job.server.clone()),
        (docker::LABEL_GENERATION, job.generation.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    // Containers of this generation that nobody recorded: a leader started
    // them and lost leadership (or died) before SpawnStarted committed.
    for (old, old_labels) in d.find_labelled(&labels).await.map_err(|e| e.to_string())? {
        tracing::info!(container = %old, "removing a container a previous leader started but never recorded");
        if let Some(old_token) = old_labels.get(docker::LABEL_TOKEN_ID) {
            revoke(hub, old_token).await;
        }
        d.stop_and_remove(&old, Duration::ZERO)
            .await
            .map_err(|e| e.to_string())?;
    }
    let attempt: String = token_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(8)
        .collect();
    let name = docker::container_name(
        &hub.cluster_id,
        &job.user,
        &job.server,
        job.generation,
        &attempt,
    );
    let mut server_env = ServerEnv::new(
        job.user.clone(),
        job.server.clone(),
        token,
        hub.config.hub_api_url(),
        Some(hub.config.public_url.clone()),
        docker::CONTAINER_PORT,
    );
    server_env.ip = "0.0.0.0".into();
    server_env.oauth_client_id = Some(job.client_id.clone());
    let env = quorumhub_spawner::jupyterhub_env(&server_env);
    let cmd = if hub.config.spawner_cmd.is_empty() {
        vec!["singleuser".to_string()]
    } else {
        hub.config.spawner_cmd.clone()
    };
    let mut labels = labels;
    labels.insert(docker::LABEL_TOKEN_ID.to_string(), token_id.to_string());
    let spec = ContainerSpec {
        name: name.clone(),
        image: hub.config.docker_image.clone(),
        network: network.clone(),
        cmd,
        env,
        labels,
    };
    let info = d.start(&spec).await.map_err(|e| e.to_string())?;
    let Some(ip) = info.ip else {
        let _ = d.stop_and_remove(&name, Duration::ZERO).await;
        return Err(format!(
            "container {name} has no address on network {network:?}; check --docker-network"
        ));
    };
    Ok(SpawnerState {
        kind: SpawnerKind::Docker.as_str().into(),
        host: name,
        pid: 0,
        proc_start: 0,
        port: docker::CONTAINER_PORT,
        target: format!(
            "http://{}:{}",
            quorumhub_spawner::fmt_ip_url(&ip),
            docker::CONTAINER_PORT
        ),
        token_id: Some(token_id.to_string()),
    })
}

async fn revoke(hub: &Hub, token_id: &str) {
    if let Err(e) = hub
        .propose_local(Command::RevokeToken {
            id: token_id.to_string(),
        })
        .await
    {
        tracing::warn!(token = token_id, error = %e, "could not revoke an unused server token");
    }
}

async fn adopt(hub: &Hub, job: &Job, sp: SpawnerState) {
    if alive(hub, &sp).await == Some(false) {
        stopped(hub, job, "the server process died before it was ready").await;
        return;
    }
    tracing::info!(
        pid = sp.pid,
        "adopting a server that was starting under the previous leader"
    );
    wait_and_publish(hub, job, sp).await;
}

async fn wait_and_publish(hub: &Hub, job: &Job, sp: SpawnerState) {
    let url = format!("{}{}", sp.target, Route::prefix_for(&job.user, &job.server));
    let limit = Duration::from_secs(hub.config.spawn_timeout_s);
    let probe = sp.clone();
    // A container's liveness needs the engine (async); the spawn timeout
    // bounds the wait for one that died.
    let check =
        move || SpawnerKind::of(&probe) != Some(SpawnerKind::Process) || process_alive(&probe);
    if let Err(e) = quorumhub_spawner::wait_http_ready(&url, limit, check).await {
        tracing::warn!(error = %e, "server never answered");
        terminate(hub, &sp).await;
        stopped(hub, job, &format!("the server did not become ready: {e}")).await;
        return;
    }
    if current(hub, job) != Some(Phase::Spawning) {
        // Stopped (or replaced) meanwhile: the Stopping job will clean up.
        return;
    }
    match hub
        .propose_local(Command::ServerReady {
            user: job.user.clone(),
            server_name: job.server.clone(),
            generation: job.generation,
        })
        .await
    {
        Ok(Response::Done) => tracing::info!("server ready; route published"),
        Ok(other) => tracing::info!(?other, "server-ready not applied"),
        Err(e) => {
            tracing::warn!(error = %e, "could not publish the route; will retry on the next pass")
        }
    }
}
