//! The Docker spawner: each single-user server is a container of its own on
//! a Docker network that the proxies can reach.
//!
//! A server in its own container outlives, and is unaffected by, whatever
//! happens to the hub replica that started it: a `kill -9`, a pause, a
//! network partition or an upgrade of that replica. Any replica that can
//! reach the same Docker engine finds it again by its recorded name, and
//! finds containers that a leader started but died before recording by
//! their labels (cluster, user, server, generation).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use quorumhub_state::SpawnerState;
use tokio::sync::OnceCell;

use crate::spawner::{
    Launch, Liveness, Revoke, SpawnerArgs, SpawnerConfigError, SpawnerContext, SpawnerKind,
};
use crate::SpawnError;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, ListContainersOptions, RemoveContainerOptions,
    StopContainerOptions,
};
use bollard::Docker;

/// Labels every server container carries, so operators (and `deploy/down.sh`)
/// can find them: `docker ps --filter label=quorumhub.cluster`.
pub const LABEL_CLUSTER: &str = "quorumhub.cluster";
pub const LABEL_USER: &str = "quorumhub.user";
pub const LABEL_SERVER: &str = "quorumhub.server";
pub const LABEL_GENERATION: &str = "quorumhub.generation";
/// Id of the API token the container was given (to revoke it if the
/// container is replaced before it was recorded).
pub const LABEL_TOKEN_ID: &str = "quorumhub.token-id";

/// Port the server listens on inside its container.
pub const CONTAINER_PORT: u16 = 8888;

/// What to start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerSpec {
    /// From [`container_name`].
    pub name: String,
    pub image: String,
    /// Network the container joins; the proxies must be on it too.
    pub network: String,
    /// Command (the image's entrypoint stays); empty = the image's default.
    pub cmd: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// Memory limit in bytes (the profile's `mem_limit`).
    pub memory: Option<u64>,
    /// CPU limit in billionths of a CPU (the profile's `cpu_limit`).
    pub nano_cpus: Option<i64>,
}

/// A CPU count as Docker's `NanoCpus`.
fn nano_cpus(cpus: f64) -> i64 {
    (cpus * 1e9).round().clamp(1.0, i64::MAX as f64) as i64
}

/// A container as the spawner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub running: bool,
    /// Its address on the spawner's network, while it runs.
    pub ip: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// The container name for one attempt to spawn one server, within Docker's
/// `[a-zA-Z0-9][a-zA-Z0-9_.-]*`: `qh.{cluster}.{user}.{server}.g{generation}.{attempt}`,
/// each field escaped so that distinct inputs never share a name
/// ([`quorumhub_state::ids::container_name`], which proves it); `attempt`
/// tells apart two leaders' attempts at the same generation.
pub fn container_name(
    cluster: &str,
    user: &str,
    server: &str,
    generation: u64,
    attempt: &str,
) -> String {
    quorumhub_state::ids::container_name(cluster, user, server, generation, attempt)
}

/// A connection to the Docker engine.
#[derive(Clone, Debug)]
pub struct Engine {
    docker: Docker,
}

fn docker_err(op: &'static str, e: bollard::errors::Error) -> SpawnError {
    SpawnError::Docker {
        op,
        detail: e.to_string(),
    }
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

impl Engine {
    /// Connects to the engine's Unix socket and agrees on an API version.
    pub async fn connect(socket: &str) -> Result<Self, SpawnError> {
        let docker =
            Docker::connect_with_unix(socket, 30, bollard::API_DEFAULT_VERSION).map_err(|e| {
                SpawnError::DockerSocket {
                    socket: socket.to_string(),
                    detail: e.to_string(),
                }
            })?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| SpawnError::DockerSocket {
                socket: socket.to_string(),
                detail: e.to_string(),
            })?;
        Ok(Self { docker })
    }

    /// The container called `name`, if it exists.
    pub async fn inspect(
        &self,
        name: &str,
        network: &str,
    ) -> Result<Option<ContainerInfo>, SpawnError> {
        let resp = match self
            .docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
        {
            Ok(r) => r,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(docker_err("inspect", e)),
        };
        let running = resp.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        let ip = resp
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref())
            .and_then(|n| n.get(network))
            .and_then(|n| n.ip_address.clone())
            .filter(|ip| !ip.is_empty());
        let labels = resp
            .config
            .and_then(|c| c.labels)
            .map(|l| l.into_iter().collect())
            .unwrap_or_default();
        Ok(Some(ContainerInfo {
            id: resp.id.unwrap_or_default(),
            running,
            ip,
            labels,
        }))
    }

    /// Creates and starts the container.
    pub async fn start(&self, spec: &ContainerSpec) -> Result<ContainerInfo, SpawnError> {
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            hostname: Some(spec.name.chars().take(63).collect()),
            cmd: (!spec.cmd.is_empty()).then(|| spec.cmd.clone()),
            env: Some(
                spec.env
                    .iter()
                    .filter(|(k, _)| !crate::is_hub_only_env(k))
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect(),
            ),
            labels: Some(
                spec.labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<HashMap<_, _>>(),
            ),
            host_config: Some(HostConfig {
                network_mode: Some(spec.network.clone()),
                init: Some(true),
                // Crafting packets (raw sockets) or changing routes would
                // let a server address what its network cannot route to,
                // such as a hub's address on another network.
                cap_drop: Some(vec!["NET_RAW".into(), "NET_ADMIN".into()]),
                memory: spec.memory.and_then(|m| i64::try_from(m).ok()),
                nano_cpus: spec.nano_cpus,
                ..Default::default()
            }),
            ..Default::default()
        };
        self.docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(spec.name.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(|e| match e {
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 404,
                    message,
                } => SpawnError::DockerImage {
                    image: spec.image.clone(),
                    detail: message,
                },
                e => docker_err("create", e),
            })?;
        self.docker
            .start_container(&spec.name, None)
            .await
            .map_err(|e| docker_err("start", e))?;
        match self.inspect(&spec.name, &spec.network).await? {
            Some(info) => Ok(info),
            None => Err(SpawnError::Docker {
                op: "inspect",
                detail: format!("container {} vanished right after it started", spec.name),
            }),
        }
    }

    /// Names and labels of every container (running or not) that carries
    /// all of `labels`.
    pub async fn find_labelled(
        &self,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<(String, BTreeMap<String, String>)>, SpawnError> {
        let filter: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(HashMap::from([("label".to_string(), filter)])),
                ..Default::default()
            }))
            .await
            .map_err(|e| docker_err("list", e))?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let name = c.names?.first()?.trim_start_matches('/').to_string();
                let labels = c.labels.unwrap_or_default().into_iter().collect();
                Some((name, labels))
            })
            .collect())
    }

    /// Whether the container runs (a missing container does not).
    pub async fn is_running(&self, name: &str) -> Result<bool, SpawnError> {
        match self
            .docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
        {
            Ok(r) => Ok(r.state.and_then(|s| s.running).unwrap_or(false)),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(docker_err("inspect", e)),
        }
    }

    /// Stops (SIGTERM, then SIGKILL after `grace`) and removes the
    /// container; a container that is already gone is fine.
    pub async fn stop_and_remove(&self, name: &str, grace: Duration) -> Result<(), SpawnError> {
        let t = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        match self
            .docker
            .stop_container(
                name,
                Some(StopContainerOptions {
                    t: Some(t),
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => return Ok(()),
            // 304: already stopped.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => {}
            Err(e) => return Err(docker_err("stop", e)),
        }
        match self
            .docker
            .remove_container(
                name,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            // 409: removal already in progress.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(docker_err("remove", e)),
        }
    }
}

/// The Docker spawner's flags.
#[derive(clap::Args, Clone, Debug)]
pub struct DockerArgs {
    /// Docker spawner: image of the single-user servers.
    #[arg(long, default_value = "quorumhub:dev")]
    pub docker_image: String,
    /// Docker spawner: network the server containers join; the proxies must
    /// be on it (e.g. the compose network `quorumhub_qh`).
    #[arg(long)]
    pub docker_network: Option<String>,
    /// Docker spawner: the engine's socket.
    #[arg(long, default_value = "/var/run/docker.sock")]
    pub docker_socket: String,
}

impl DockerArgs {
    pub(crate) fn validate(&self) -> Result<(), SpawnerConfigError> {
        if self.docker_network.as_deref().unwrap_or("").is_empty() {
            return Err(SpawnerConfigError::DockerNetwork);
        }
        Ok(())
    }
}

/// Starts each server as a container of its own. Its name is fixed by
/// (cluster, user, server, generation) plus the attempt, and its labels by
/// the first four, so a container left by a leader that died before
/// recording it is found, reported (for its token) and replaced.
pub struct DockerSpawner {
    args: DockerArgs,
    /// Empty: the image's `singleuser`.
    cmd: Vec<String>,
    cluster_id: String,
    /// Connected on first use: a replica that never leads, or leads only
    /// process servers, needs no engine.
    engine: OnceCell<Engine>,
}

impl DockerSpawner {
    pub fn new(args: &SpawnerArgs, ctx: &SpawnerContext) -> DockerSpawner {
        DockerSpawner {
            args: args.docker.clone(),
            cmd: args.cmd.clone(),
            cluster_id: ctx.cluster_id.clone(),
            engine: OnceCell::new(),
        }
    }

    /// The engine connection, made on first use.
    pub async fn engine(&self) -> Result<&Engine, SpawnError> {
        self.engine
            .get_or_try_init(|| Engine::connect(&self.args.docker_socket))
            .await
    }
}

#[async_trait::async_trait]
impl crate::Spawner for DockerSpawner {
    fn kind(&self) -> SpawnerKind {
        SpawnerKind::Docker
    }

    async fn start(
        &self,
        launch: &Launch,
        revoke: &dyn Revoke,
    ) -> Result<SpawnerState, SpawnError> {
        let d = self.engine().await?;
        let network = self.args.docker_network.clone().unwrap_or_default();
        let labels: BTreeMap<String, String> = [
            (LABEL_CLUSTER, self.cluster_id.clone()),
            (LABEL_USER, launch.user.clone()),
            (LABEL_SERVER, launch.server.clone()),
            (LABEL_GENERATION, launch.generation.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        // Containers of this generation that nobody recorded: a leader
        // started them and lost leadership (or died) before its start was
        // committed.
        for (old, old_labels) in d.find_labelled(&labels).await? {
            tracing::info!(container = %old, "removing a container a previous leader started but never recorded");
            if let Some(old_token) = old_labels.get(LABEL_TOKEN_ID) {
                revoke.revoke(old_token).await;
            }
            d.stop_and_remove(&old, Duration::ZERO).await?;
        }
        let attempt = launch.attempt();
        let name = container_name(
            &self.cluster_id,
            &launch.user,
            &launch.server,
            launch.generation,
            &attempt,
        );
        let mut server_env = launch.server_env(CONTAINER_PORT);
        server_env.ip = "0.0.0.0".into();
        let mut env = crate::jupyterhub_env(&server_env);
        launch.overrides.apply_env(&mut env);
        let cmd = if self.cmd.is_empty() {
            vec!["singleuser".to_string()]
        } else {
            self.cmd.clone()
        };
        let cmd = launch.overrides.command(cmd);
        let mut labels = labels;
        labels.insert(LABEL_TOKEN_ID.to_string(), launch.token_id.clone());
        let spec = ContainerSpec {
            name: name.clone(),
            image: launch
                .overrides
                .image
                .clone()
                .unwrap_or_else(|| self.args.docker_image.clone()),
            network: network.clone(),
            cmd,
            env,
            labels,
            memory: launch.overrides.mem_limit,
            nano_cpus: launch.overrides.cpu_limit.map(nano_cpus),
        };
        let info = d.start(&spec).await?;
        let Some(ip) = info.ip else {
            let _ = d.stop_and_remove(&name, Duration::ZERO).await;
            return Err(SpawnError::NoContainerAddress { name, network });
        };
        Ok(SpawnerState {
            kind: SpawnerKind::Docker.as_str().into(),
            host: name,
            pid: 0,
            proc_start: 0,
            port: CONTAINER_PORT,
            target: format!("http://{}:{}", crate::fmt_ip_url(&ip), CONTAINER_PORT),
            token_id: Some(launch.token_id.clone()),
        })
    }

    async fn liveness(&self, state: &SpawnerState) -> Liveness {
        let running = match self.engine().await {
            Ok(d) => d.is_running(&state.host).await,
            Err(e) => Err(e),
        };
        match running {
            Ok(true) => Liveness::Running,
            Ok(false) => Liveness::Gone,
            Err(e) => {
                tracing::warn!(container = %state.host, error = %e, "cannot check the server container");
                Liveness::Unknown
            }
        }
    }

    async fn stop(&self, state: &SpawnerState, grace: Duration) -> Result<(), SpawnError> {
        self.engine()
            .await?
            .stop_and_remove(&state.host, grace)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_readable_and_distinct() {
        let cases = [
            ("quorumhub", "alice", "", 1, "qh.quorumhub.alice..g1.x1"),
            (
                "quorumhub",
                "bob@example.org",
                "lab",
                7,
                "qh.quorumhub.bob_40example_2Eorg.lab.g7.x1",
            ),
            ("c", "a-b", "", 1, "qh.c.a-b..g1.x1"),
        ];
        for (cluster, user, server, generation, want) in cases {
            let name = container_name(cluster, user, server, generation, "x1");
            assert_eq!(name, want);
            assert!(name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)));
        }
        // Injectivity is proved and tested in quorumhub_state::ids.
    }
}
