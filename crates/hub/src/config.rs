//! Replica configuration: flags, environment, or a TOML file (see the
//! binary's `--config`), validated before anything starts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use quorumhub_raft::{Member, NodeId};

#[derive(clap::Args, Debug, Clone)]
pub struct HubConfig {
    /// This replica's id in the cluster (a positive integer, unique, stable).
    #[arg(long)]
    pub node_id: NodeId,
    /// Data directory: must exist; an empty one is initialised, a foreign
    /// or another cluster's one is refused.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Cluster id; replicas, data dirs and Raft messages of another cluster
    /// are refused.
    #[arg(long, default_value = "quorumhub")]
    pub cluster_id: String,
    /// The replica credential: the secret replicas present to each other
    /// (Raft, forwarded writes). Without --proxy-secret-file and
    /// --admin-secret-file it is also the proxies' and hubctl's (legacy
    /// mode). Prefer --cluster-secret-file: a flag or environment variable
    /// is visible in /proc/<pid>/cmdline or /proc/<pid>/environ.
    #[arg(
        long,
        env = "QUORUMHUB_CLUSTER_SECRET",
        hide_env_values = true,
        default_value = "",
        hide_default_value = true
    )]
    pub cluster_secret: String,
    /// File holding the cluster secret (mode 0600 or stricter), one
    /// secret per line: all are accepted, the first is presented to peers.
    /// Re-read on SIGHUP.
    #[arg(long, env = "QUORUMHUB_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// The proxy credential's file (one secret per line, all accepted):
    /// what proxies present to watch routes, which is all it allows. Not
    /// given: the cluster secret is accepted instead (legacy mode).
    /// Re-read on SIGHUP.
    #[arg(long, env = "QUORUMHUB_PROXY_SECRET_FILE")]
    pub proxy_secret_file: Option<PathBuf>,
    /// The admin credential's file (one secret per line, all accepted):
    /// what hubctl presents for membership, users and backups. Not given:
    /// the cluster secret is accepted instead (legacy mode). Re-read on
    /// SIGHUP.
    #[arg(long, env = "QUORUMHUB_ADMIN_SECRET_FILE")]
    pub admin_secret_file: Option<PathBuf>,
    /// Where the cluster secret was read from, kept for reloads.
    #[arg(skip)]
    pub cluster_secret_source: Option<PathBuf>,
    /// gRPC listen address (Raft, admin, route watch).
    #[arg(long, default_value = "127.0.0.1:7001")]
    pub grpc_listen: SocketAddr,
    /// HTTP listen address (REST API).
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub http_listen: SocketAddr,
    /// gRPC address peers use to reach this replica (default: its --peer
    /// entry, else --grpc-listen).
    #[arg(long)]
    pub advertise_grpc: Option<String>,
    /// HTTP address proxies use to reach this replica.
    #[arg(long)]
    pub advertise_http: Option<String>,
    /// Initial members, `ID=GRPC_ADDR/HTTP_ADDR`, e.g. `2=hub2:7000/hub2:8081`
    /// (repeat or comma-separate; include this replica).
    #[arg(long = "peer", value_delimiter = ',')]
    pub peers: Vec<String>,
    /// Never form a new cluster: wait to be added with `hubctl members add`.
    #[arg(long)]
    pub join: bool,
    /// Bootstrap admin API token (stored only as a hash in memory).
    /// Prefer --admin-token-file.
    #[arg(long, env = "QUORUMHUB_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// File holding the bootstrap admin token (mode 0600 or stricter).
    #[arg(long, env = "QUORUMHUB_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Name the bootstrap admin token acts as; created on first start.
    #[arg(long, default_value = "admin")]
    pub admin_user: String,
    /// Public URL of the proxy in front of the hubs.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub public_url: String,
    /// Hub API URL handed to single-user servers (default: PUBLIC_URL/hub/api).
    #[arg(long)]
    pub hub_api_url: Option<String>,
    /// Raft timing, message and snapshot sizes (`--heartbeat-ms`,
    /// `--election-timeout-*`, `--snapshot-*`, ...) and the write timeout.
    #[command(flatten)]
    pub raft: RaftArgs,
    /// Which spawner starts servers, its command and each spawner's own
    /// flags (`--spawner`, `--spawner-cmd`, `--docker-*`, the process
    /// spawner's accounts).
    #[command(flatten)]
    pub spawner: quorumhub_spawner::SpawnerArgs,
    /// How long a new server has to answer HTTP.
    #[arg(long, default_value_t = 30)]
    pub spawn_timeout_s: u64,
    /// How long the API waits for a spawn or stop before answering 202.
    #[arg(long, default_value_t = 10)]
    pub slow_spawn_timeout_s: u64,
    /// SIGTERM → SIGKILL grace when stopping a server.
    #[arg(long, default_value_t = 5)]
    pub stop_grace_s: u64,
    /// Version reported by `GET /hub/api/`.
    #[arg(long, default_value = "6.1.1")]
    pub jupyterhub_version: String,
    /// Whether `/hub/metrics` needs a token with `read:metrics` (the admin
    /// role has it); `false` lets anyone who reaches the hub scrape it
    /// (JupyterHub's `authenticate_prometheus`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub authenticate_prometheus: bool,
    /// Roles (JupyterHub's `load_roles`): a TOML file whose `[[roles]]`
    /// tables each have `name`, `description`, `scopes`, `users`, `groups`
    /// (and `services`); the `--config` file's own `[[roles]]` set it. The
    /// leader replicates them; without it the replicated roles stay as they
    /// are.
    #[arg(long)]
    pub roles_file: Option<PathBuf>,
    /// Profiles (KubeSpawner's `profile_list`): a TOML file whose
    /// `[[profiles]]` tables each have `display_name`, `slug`,
    /// `description`, `default` and the overrides `image` (Docker),
    /// `cmd`, `args`, `env`, `cpu_limit`, `mem_limit`; the `--config`
    /// file's own `[[profiles]]` set it. Users choose one on the spawn page
    /// or with `user_options.profile`.
    #[arg(long, env = "QUORUMHUB_PROFILES_FILE")]
    pub profiles_file: Option<PathBuf>,
    /// Services (JupyterHub's `services`): a TOML file whose `[[services]]`
    /// tables each have `name` and `command` (a managed service, which the
    /// leader runs) or `url` and `api_token`/`api_token_file` (an external
    /// one), `environment`, `display`, `info`; the `--config` file's own
    /// `[[services]]` set it. Roles grant them scopes (`services = [...]`).
    #[arg(long, env = "QUORUMHUB_SERVICES_FILE")]
    pub services_file: Option<PathBuf>,
    /// Sign-in with an OpenID Connect provider (`--oidc-*`).
    #[command(flatten)]
    pub oidc: quorumhub_http::OidcArgs,
    /// Bounds on what clients may store, and admission control for writes
    /// (see `limits.rs` and docs/operations.md, "Limits").
    #[command(flatten)]
    pub limits: quorumhub_core::limits::Limits,
    /// The HTTP port's timeouts and connection limits, and the hops
    /// (proxies, balancers) whose forwarded headers it believes.
    #[command(flatten)]
    pub edge: quorumhub_edge::EdgeArgs,
    #[command(flatten)]
    pub grpc_tls: quorumhub_proto::grpc_tls::GrpcTlsArgs,
}

/// Raft timing and sizes, and how long a write may wait.
#[derive(clap::Args, Debug, Clone)]
pub struct RaftArgs {
    /// Leader heartbeat interval.
    #[arg(long, default_value_t = 20)]
    pub heartbeat_ms: u64,
    /// A follower that heard nothing from the leader for its lease
    /// (election-timeout-max) plus a random election timeout in
    /// [min, max) campaigns: 150–200 ms with these defaults (openraft's own
    /// 150/300 gives 450–600 ms). Measured in qh-bench; see docs.
    #[arg(long, default_value_t = 50)]
    pub election_timeout_min_ms: u64,
    #[arg(long, default_value_t = 100)]
    pub election_timeout_max_ms: u64,
    /// Cap on one AppendEntries message, in bytes: larger batches are sent
    /// in parts (openraft 0.9 gives each message one heartbeat interval).
    #[arg(long, default_value_t = quorumhub_raft::network::DEFAULT_MAX_APPEND_BYTES)]
    pub raft_max_append_bytes: usize,
    /// Snapshots travel in chunks of this many bytes ...
    #[arg(long, default_value_t = 1 << 20)]
    pub snapshot_chunk_bytes: u64,
    /// ... each of which must be sent and stored within this time.
    #[arg(long, default_value_t = 2000)]
    pub snapshot_chunk_timeout_ms: u64,
    /// Build a snapshot after this many log entries.
    #[arg(long, default_value_t = 5000)]
    pub snapshot_every: u64,
    /// Entries kept after a snapshot for followers that lag a little.
    #[arg(long, default_value_t = 1000)]
    pub keep_logs: u64,
    /// How long a write waits and retries (e.g. during an election) before
    /// failing with 503.
    #[arg(long, default_value_t = 10_000)]
    pub write_timeout_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--node-id must be a positive integer")]
    ZeroNodeId,
    #[error("bad --peer {0:?}: expected ID=GRPC_ADDR/HTTP_ADDR, e.g. 2=hub2:7000/hub2:8081")]
    BadPeer(String),
    #[error("--peer lists node {0} twice")]
    DuplicatePeer(NodeId),
    #[error("--peer does not include this replica (node {0}); list every initial member")]
    SelfNotInPeers(NodeId),
    #[error("give --peer with the initial members to form a new cluster (one entry for a single replica), or --join to be added to an existing one")]
    NoPeersNoJoin,
    #[error("{0}")]
    Secret(#[from] quorumhub_raft::auth::SecretError),
    #[error("--admin-token must be at least 16 characters")]
    WeakAdminToken,
    #[error("timeouts must satisfy 0 < heartbeat ({0} ms) < election-timeout-min ({1} ms) < election-timeout-max ({2} ms)")]
    Timeouts(u64, u64, u64),
    #[error("--admin-user: {0}")]
    AdminUser(String),
    #[error(transparent)]
    Spawner(#[from] quorumhub_spawner::SpawnerConfigError),
    #[error("--oidc-issuer needs --oidc-client-id and --oidc-client-secret-file (or --oidc-client-secret / QUORUMHUB_OIDC_CLIENT_SECRET)")]
    OidcIncomplete,
    #[error("--oidc-issuer {0:?} is not an http(s) URL")]
    OidcIssuer(String),
    #[error("say who may sign in through the provider: --oidc-allowed-users, --oidc-allowed-groups, or --oidc-allow-all")]
    OidcWhoMay,
    #[error("{0}")]
    Limits(String),
    #[error("{0}")]
    SecretFile(#[from] quorumhub_proto::secret_file::SecretFileError),
    #[error("service {0:?} has the bootstrap admin token (--admin-token) as its api_token; give it a token of its own")]
    ServiceHasAdminToken(String),
    /// A `[[roles]]`, `[[profiles]]` or `[[services]]` table.
    #[error(transparent)]
    Tables(#[from] crate::tables::TableError),
}

impl HubConfig {
    /// Reads the `--*-file` secrets into their fields. Giving a secret both
    /// as a value (flag or environment) and as a file is refused.
    pub fn load_secret_files(&mut self) -> Result<(), ConfigError> {
        use quorumhub_proto::secret_file::secret_from;
        if let Some(s) = secret_from(
            Some(&self.cluster_secret),
            "--cluster-secret (QUORUMHUB_CLUSTER_SECRET)",
            self.cluster_secret_file.as_deref(),
            "--cluster-secret-file",
        )? {
            self.cluster_secret = s;
        }
        if let Some(path) = self.cluster_secret_file.clone() {
            self.cluster_secret_source = Some(path);
        }
        self.admin_token = secret_from(
            self.admin_token.as_deref(),
            "--admin-token (QUORUMHUB_ADMIN_TOKEN)",
            self.admin_token_file.as_deref(),
            "--admin-token-file",
        )?;
        self.oidc.client_secret = secret_from(
            self.oidc.client_secret.as_deref(),
            "--oidc-client-secret (QUORUMHUB_OIDC_CLIENT_SECRET)",
            self.oidc.client_secret_file.as_deref(),
            "--oidc-client-secret-file",
        )?;
        // Read once: a later call must not find both forms set.
        self.cluster_secret_file = None;
        self.admin_token_file = None;
        self.oidc.client_secret_file = None;
        Ok(())
    }

    /// The credentials this replica accepts, read from the files (the
    /// proxy and admin ones are read here, each time: this is also the
    /// reload).
    pub fn keyring(&self) -> Result<quorumhub_raft::auth::Keyring, ConfigError> {
        use quorumhub_proto::secret_file::read_secret_file;
        let proxy = self
            .proxy_secret_file
            .as_deref()
            .map(|p| read_secret_file("--proxy-secret-file", p))
            .transpose()?;
        let admin = self
            .admin_secret_file
            .as_deref()
            .map(|p| read_secret_file("--admin-secret-file", p))
            .transpose()?;
        Ok(quorumhub_raft::auth::Keyring::new(
            &self.cluster_secret,
            proxy.as_deref(),
            admin.as_deref(),
        )?)
    }

    /// Re-read every credential file (SIGHUP): the cluster secret's text
    /// (when it came from a file) and the keyring.
    pub fn reload_credentials(
        &self,
    ) -> Result<(String, quorumhub_raft::auth::Keyring), ConfigError> {
        let cluster = match &self.cluster_secret_source {
            Some(p) => quorumhub_proto::secret_file::read_secret_file("--cluster-secret-file", p)?,
            None => self.cluster_secret.clone(),
        };
        let mut fresh = self.clone();
        fresh.cluster_secret = cluster.clone();
        Ok((cluster, fresh.keyring()?))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(ConfigError::ZeroNodeId);
        }
        self.keyring()?;
        if self.admin_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(ConfigError::WeakAdminToken);
        }
        let (h, lo, hi) = (
            self.raft.heartbeat_ms,
            self.raft.election_timeout_min_ms,
            self.raft.election_timeout_max_ms,
        );
        if !(h > 0 && h < lo && lo < hi) {
            return Err(ConfigError::Timeouts(h, lo, hi));
        }
        quorumhub_state::validate_username(&self.admin_user).map_err(ConfigError::AdminUser)?;
        self.limits.validate().map_err(ConfigError::Limits)?;
        if let Some(issuer) = &self.oidc.issuer {
            if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
                return Err(ConfigError::OidcIssuer(issuer.clone()));
            }
            if self.oidc.client_id.is_none() || self.oidc.client_secret.is_none() {
                return Err(ConfigError::OidcIncomplete);
            }
            if !self.oidc.allow_all
                && self.oidc.allowed_users.is_empty()
                && self.oidc.allowed_groups.is_empty()
            {
                return Err(ConfigError::OidcWhoMay);
            }
        }
        self.spawner.validate()?;
        self.roles()?;
        self.profiles()?;
        let peers = self.peer_map()?;
        if peers.is_empty() && !self.join {
            return Err(ConfigError::NoPeersNoJoin);
        }
        if !peers.is_empty() && !peers.contains_key(&self.node_id) {
            return Err(ConfigError::SelfNotInPeers(self.node_id));
        }
        Ok(())
    }

    /// The configured roles, checked; `None` without a roles file (or
    /// with one that has no `roles`).
    pub fn roles(&self) -> Result<Option<Vec<quorumhub_state::Role>>, ConfigError> {
        let services: Vec<String> = self
            .services()?
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.service.name)
            .collect();
        match &self.roles_file {
            None => Ok(None),
            Some(path) => Ok(crate::roles::load(path, &services)?),
        }
    }

    /// The configured services, checked; `None` without a services file
    /// (or with one that has no `services`).
    pub fn services(&self) -> Result<Option<Vec<crate::services::Configured>>, ConfigError> {
        let Some(path) = &self.services_file else {
            return Ok(None);
        };
        let services = crate::services::load(path)?;
        // The bootstrap admin token is resolved first: a service holding it
        // would be the admin.
        let admin = self
            .admin_token
            .as_deref()
            .map(quorumhub_core::secrets::hash_token);
        if let Some(c) = services
            .iter()
            .flatten()
            .find(|c| admin.is_some() && c.service.token_hash == admin)
        {
            return Err(ConfigError::ServiceHasAdminToken(c.service.name.clone()));
        }
        Ok(services)
    }

    /// The configured profiles, checked against the spawner; empty without
    /// a profiles file (or with one that has no `profiles`).
    pub fn profiles(&self) -> Result<quorumhub_state::Profiles, ConfigError> {
        let Some(path) = &self.profiles_file else {
            return Ok(Default::default());
        };
        Ok(crate::profiles::load(path, self.spawner.kind)?)
    }

    pub fn peer_map(&self) -> Result<BTreeMap<NodeId, Member>, ConfigError> {
        let mut map = BTreeMap::new();
        for raw in self.peers.iter().filter(|p| !p.trim().is_empty()) {
            let (id, member) = parse_peer(raw)?;
            if map.insert(id, member).is_some() {
                return Err(ConfigError::DuplicatePeer(id));
            }
        }
        Ok(map)
    }

    /// How peers and proxies reach this replica.
    pub fn me(&self) -> Member {
        let listed = self
            .peer_map()
            .ok()
            .and_then(|m| m.get(&self.node_id).cloned());
        Member {
            grpc_addr: self
                .advertise_grpc
                .clone()
                .or_else(|| listed.as_ref().map(|m| m.grpc_addr.clone()))
                .unwrap_or_else(|| self.grpc_listen.to_string()),
            http_addr: self
                .advertise_http
                .clone()
                .or_else(|| listed.as_ref().map(|m| m.http_addr.clone()))
                .unwrap_or_else(|| self.http_listen.to_string()),
        }
    }

    pub fn raft_config(&self) -> openraft::Config {
        openraft::Config {
            cluster_name: self.cluster_id.clone(),
            heartbeat_interval: self.raft.heartbeat_ms,
            election_timeout_min: self.raft.election_timeout_min_ms,
            election_timeout_max: self.raft.election_timeout_max_ms,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(
                self.raft.snapshot_every.max(1),
            ),
            max_in_snapshot_log_to_keep: self.raft.keep_logs,
            // openraft purges in batches (default 256); never wait for more
            // than one snapshot interval's worth.
            purge_batch_size: self.raft.snapshot_every.clamp(1, 256),
            snapshot_max_chunk_size: self.raft.snapshot_chunk_bytes.max(1024),
            install_snapshot_timeout: self.raft.snapshot_chunk_timeout_ms.max(1),
            // Elections are started by `quorumhub_raft::election` after a
            // pre-vote, never by openraft's own timer: a restarting or
            // rejoining replica must not depose a healthy leader.
            enable_elect: false,
            ..Default::default()
        }
    }

    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.raft.write_timeout_ms)
    }

    /// What the HTTP front end is configured with, `profiles` included
    /// (read once, by [`HubConfig::profiles`]).
    pub fn http_config(
        &self,
        profiles: std::sync::Arc<quorumhub_state::Profiles>,
    ) -> quorumhub_http::HttpConfig {
        quorumhub_http::HttpConfig {
            public_url: self.public_url.clone(),
            hub_api_url: self.hub_api_url(),
            jupyterhub_version: self.jupyterhub_version.clone(),
            admin_user: self.admin_user.clone(),
            admin_token_hash: self
                .admin_token
                .as_deref()
                .map(quorumhub_core::secrets::hash_token),
            slow_spawn_timeout: Duration::from_secs(self.slow_spawn_timeout_s),
            limits: self.limits.clone(),
            oidc: self.oidc.clone(),
            authenticate_prometheus: self.authenticate_prometheus,
            spawner: self.spawner.kind.as_str().to_string(),
            profiles,
        }
    }

    pub fn hub_api_url(&self) -> String {
        self.hub_api_url
            .clone()
            .unwrap_or_else(|| format!("{}/hub/api", self.public_url.trim_end_matches('/')))
    }
}

/// `ID=GRPC_ADDR/HTTP_ADDR` entries (comma-separated or repeated), as
/// `--peer` takes them.
pub fn parse_peers(
    raw: &[String],
) -> Result<std::collections::BTreeMap<NodeId, Member>, ConfigError> {
    let mut map = std::collections::BTreeMap::new();
    for entry in raw
        .iter()
        .flat_map(|r| r.split(','))
        .filter(|p| !p.trim().is_empty())
    {
        let (id, member) = parse_peer(entry)?;
        if map.insert(id, member).is_some() {
            return Err(ConfigError::DuplicatePeer(id));
        }
    }
    Ok(map)
}

fn parse_peer(raw: &str) -> Result<(NodeId, Member), ConfigError> {
    let bad = || ConfigError::BadPeer(raw.to_string());
    let (id, addrs) = raw.trim().split_once('=').ok_or_else(bad)?;
    let id: NodeId = id.trim().parse().map_err(|_| bad())?;
    let (grpc, http) = addrs.split_once('/').ok_or_else(bad)?;
    let valid = |a: &str| {
        a.rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
    };
    if id == 0 || !valid(grpc) || !valid(http) {
        return Err(bad());
    }
    Ok((
        id,
        Member {
            grpc_addr: grpc.to_string(),
            http_addr: http.to_string(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Operators' flags and config files name the flags: grouping them
    /// into structs must not rename one.
    #[test]
    fn grouped_flags_keep_their_names() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            hub: HubConfig,
        }
        let args = [
            "quorumhub",
            "--node-id",
            "2",
            "--data-dir",
            "/d",
            "--heartbeat-ms",
            "21",
            "--election-timeout-min-ms",
            "61",
            "--election-timeout-max-ms",
            "111",
            "--raft-max-append-bytes",
            "4096",
            "--snapshot-chunk-bytes",
            "2048",
            "--snapshot-chunk-timeout-ms",
            "3000",
            "--snapshot-every",
            "77",
            "--keep-logs",
            "88",
            "--write-timeout-ms",
            "999",
            "--spawner",
            "docker",
            "--spawner-cmd",
            "x",
            "--docker-image",
            "img",
            "--docker-network",
            "net",
            "--docker-socket",
            "/s",
            "--system-user-prefix",
            "j-",
            "--create-system-users",
            "--spawner-run-as-hub-user",
            "--oidc-issuer",
            "https://idp",
            "--oidc-client-id",
            "cid",
            "--oidc-client-secret",
            "cs",
            "--oidc-scopes",
            "openid,email",
            "--oidc-username-claim",
            "u",
            "--oidc-groups-claim",
            "g",
            "--oidc-allowed-users",
            "a,b",
            "--oidc-allowed-groups",
            "ga",
            "--oidc-admin-groups",
            "adm",
            "--oidc-allow-all",
            "--oidc-display-name",
            "IdP",
        ];
        let c = Flags::try_parse_from(args).expect("every flag parses").hub;
        let r = &c.raft;
        assert_eq!(
            (
                r.heartbeat_ms,
                r.election_timeout_min_ms,
                r.election_timeout_max_ms
            ),
            (21, 61, 111)
        );
        assert_eq!(
            (
                r.raft_max_append_bytes,
                r.snapshot_chunk_bytes,
                r.snapshot_chunk_timeout_ms
            ),
            (4096, 2048, 3000)
        );
        assert_eq!(
            (r.snapshot_every, r.keep_logs, r.write_timeout_ms),
            (77, 88, 999)
        );
        let sp = &c.spawner;
        assert_eq!(sp.kind, quorumhub_spawner::SpawnerKind::Docker);
        assert_eq!(sp.cmd, ["x"]);
        assert_eq!(
            (
                sp.docker.docker_image.as_str(),
                sp.docker.docker_network.as_deref(),
                sp.docker.docker_socket.as_str()
            ),
            ("img", Some("net"), "/s")
        );
        assert_eq!(sp.process.system_user_prefix, "j-");
        assert!(sp.process.create_system_users && sp.process.spawner_run_as_hub_user);
        let o = &c.oidc;
        assert_eq!(o.issuer.as_deref(), Some("https://idp"));
        assert_eq!(o.client_id.as_deref(), Some("cid"));
        assert_eq!(o.client_secret.as_deref(), Some("cs"));
        assert_eq!(o.scopes, ["openid", "email"]);
        assert_eq!(
            (o.username_claim.as_str(), o.groups_claim.as_str()),
            ("u", "g")
        );
        assert_eq!(o.allowed_users, ["a", "b"]);
        assert_eq!(
            (o.allowed_groups.as_slice(), o.admin_groups.as_slice()),
            (&["ga".to_string()][..], &["adm".to_string()][..])
        );
        assert!(o.allow_all);
        assert_eq!(o.display_name, "IdP");
    }

    #[test]
    fn peers_as_data() {
        type Expected = Option<(u64, &'static str, &'static str)>;
        let cases: &[(&str, Expected)] = &[
            (
                "1=127.0.0.1:7001/127.0.0.1:8081",
                Some((1, "127.0.0.1:7001", "127.0.0.1:8081")),
            ),
            (
                " 2=hub2:7000/hub2:8081 ",
                Some((2, "hub2:7000", "hub2:8081")),
            ),
            ("0=a:1/b:2", None),
            ("x=a:1/b:2", None),
            ("1=a:1", None),
            ("1=a/b:2", None),
            ("1=a:99999/b:2", None),
            ("1:a:1/b:2", None),
        ];
        for (raw, want) in cases {
            let got = parse_peer(raw)
                .ok()
                .map(|(id, m)| (id, m.grpc_addr, m.http_addr));
            let want = want.map(|(i, g, h)| (i, g.to_string(), h.to_string()));
            assert_eq!(got, want, "{raw}");
        }
    }
}
