//! The domain model: what the hub remembers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Millis;

/// The default (unnamed) server of a user.
pub const DEFAULT_SERVER: &str = "";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub admin: bool,
    pub created: Millis,
    pub last_activity: Option<Millis>,
    /// Active servers by name ("" is the default server). A stopped server is
    /// removed from this map.
    pub servers: BTreeMap<String, Server>,
    /// Reserved for groups and roles (later issues); kept sorted.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Log format 3: the argon2id PHC string of the user's password, hashed
    /// by the proposer; `None` means password login is off for this user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// Log format 3: the external identity (OpenID Connect `issuer|sub`)
    /// this user signs in as, once linked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Log format 5: how this user's last server to stop ended (the
    /// spawner's reason, e.g. why a spawn failed), so the API can say why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_stop: Option<StopRecord>,
    /// Log format 7: servers that exist but do not run, by name, as
    /// JupyterHub keeps a stopped server's record (its display name and
    /// options) until it is deleted with `remove`. A name is never in both
    /// this map and `servers`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stopped: BTreeMap<String, StoppedServer>,
}

/// A server that exists but does not run (log format 7): created with
/// `PUT`, or stopped without `remove`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoppedServer {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The options of its last start (or as set by `PUT`/`PATCH`): the next
    /// start without options uses them, as JupyterHub does.
    pub user_options: serde_json::Value,
    pub last_activity: Option<Millis>,
}

/// Why a server stopped, as the spawner reported it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopRecord {
    pub server_name: String,
    pub generation: u64,
    pub reason: String,
    pub at: Millis,
}

impl User {
    pub fn new(name: String, admin: bool, created: Millis) -> Self {
        User {
            name,
            admin,
            created,
            last_activity: None,
            servers: BTreeMap::new(),
            groups: Vec::new(),
            password_hash: None,
            subject: None,
            last_stop: None,
            stopped: BTreeMap::new(),
        }
    }
}

/// Where a server is in its life. A stopped server does not exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Requested; the leader's spawner is starting it.
    Spawning,
    /// Answering HTTP; its route is in the route table.
    Running,
    /// Stop requested; the leader's spawner is stopping it.
    Stopping,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Server {
    pub name: String,
    pub phase: Phase,
    /// Distinguishes one spawn of this server from the next, so that a late
    /// report about an earlier spawn can be recognised and refused. It is the
    /// log index of the command that requested the spawn.
    pub generation: u64,
    pub requested: Millis,
    /// When it became ready.
    pub started: Option<Millis>,
    pub last_activity: Option<Millis>,
    pub user_options: serde_json::Value,
    /// What the spawner needs to find the process again; set once the
    /// process exists.
    pub spawner: Option<SpawnerState>,
    /// Log format 6: the OAuth client id this spawn was given
    /// ([`crate::ids::oauth_client_id`]), recorded when it was requested.
    /// `None` for a spawn requested before the cluster reached version 6:
    /// that server has JupyterHub's id ([`crate::ids::legacy_oauth_client_id`])
    /// in its environment and keeps it ([`Server::client_id`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth_client_id: Option<String>,
    /// Log format 7: JupyterHub's `display_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Log format 7: once stopped, forget the server's record instead of
    /// keeping it in [`User::stopped`] (`DELETE` with `{"remove": true}`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remove_on_stop: bool,
}

impl Server {
    pub fn ready(&self) -> bool {
        self.phase == Phase::Running
    }

    /// The OAuth client id of this spawn of `user`'s server: the recorded
    /// one, else (spawned before log format 6) JupyterHub's.
    pub fn client_id(&self, user: &str) -> String {
        match &self.oauth_client_id {
            Some(id) => id.clone(),
            None => crate::ids::legacy_oauth_client_id(user, &self.name),
        }
    }

    /// JupyterHub's `pending` field.
    pub fn pending(&self) -> Option<&'static str> {
        match self.phase {
            Phase::Spawning => Some("spawn"),
            Phase::Stopping => Some("stop"),
            Phase::Running => None,
        }
    }
}

/// Replicated so that a new leader can adopt a running server instead of
/// starting it again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnerState {
    /// Which spawner started it ("process", later "docker", ...).
    pub kind: String,
    /// Host (name) the process runs on.
    pub host: String,
    pub pid: u32,
    /// Process start time as the kernel reports it (clock ticks since boot),
    /// to tell the process from a later one that reuses its pid.
    pub proc_start: u64,
    pub port: u16,
    /// Base URL the proxy forwards to, e.g. `http://127.0.0.1:40123`.
    pub target: String,
    /// Id of the API token handed to the server.
    pub token_id: Option<String>,
}

/// One entry of the proxy's route table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Path prefix, always starting and ending with `/`.
    pub prefix: String,
    pub target: String,
    pub user: String,
    pub server_name: String,
}

impl Route {
    /// `/user/{user}/` or `/user/{user}/{server}/`, each name escaped as
    /// JupyterHub escapes it ([`crate::ids::url_escape_path`]); names of the
    /// characters allowed before log format 7 are unchanged by it.
    pub fn prefix_for(user: &str, server_name: &str) -> String {
        let user = crate::ids::url_escape_path(user);
        if server_name.is_empty() {
            format!("/user/{user}/")
        } else {
            format!("/user/{user}/{}/", crate::ids::url_escape_path(server_name))
        }
    }
}

/// A change to the route table, produced by `apply` for watchers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RouteEvent {
    Upsert(Route),
    Delete { prefix: String },
}

/// Who a token acts for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TokenOwner {
    User {
        name: String,
    },
    /// The token handed to one of a user's servers.
    Server {
        user: String,
        server_name: String,
    },
}

impl TokenOwner {
    pub fn user(&self) -> &str {
        match self {
            TokenOwner::User { name } => name,
            TokenOwner::Server { user, .. } => user,
        }
    }
}

/// An API token. Only its SHA-256 hash is stored; the plain text is shown
/// once, to whoever created it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub id: String,
    pub owner: TokenOwner,
    /// Hex SHA-256 of the token text.
    pub hash: String,
    /// First characters of the token, to help people tell tokens apart.
    pub prefix: String,
    pub note: String,
    pub created: Millis,
    pub expires_at: Option<Millis>,
    pub last_activity: Option<Millis>,
    /// Scopes; empty means the owner's default scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Log format 3: the OAuth client the token was issued to (an access
    /// token from `/hub/api/oauth2/token`), `None` for API tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Log format 3: hash of the browser session that obtained it; ending
    /// that session (logout) revokes the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

impl Token {
    pub fn expired(&self, now: Millis) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

/// A browser login (log format 3). The cookie holds the session id signed
/// with the cluster's cookie secret; only the id's SHA-256 is stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Hex SHA-256 of the session id.
    pub hash: String,
    pub user: String,
    pub created: Millis,
    pub expires_at: Millis,
}

/// An OAuth authorization code waiting to be exchanged (log format 3).
/// Only its SHA-256 is stored; it is redeemed at most once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthCode {
    /// Hex SHA-256 of the code.
    pub hash: String,
    pub client_id: String,
    pub user: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    /// PKCE (RFC 7636): the challenge and its method (`S256` or `plain`).
    pub code_challenge: Option<String>,
    pub challenge_method: Option<String>,
    /// Hash of the browser session that approved it.
    pub session: Option<String>,
    pub expires_at: Millis,
}

/// A role from the hub's configuration (log format 7), as JupyterHub's
/// `load_roles`: scopes granted to the users, groups and services it
/// names. Membership is by name, so a role may name a user before the
/// user exists. Lists are kept sorted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub services: Vec<String>,
}

/// A group of users (log format 3), as JupyterHub's `/hub/api/groups`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    /// Members, sorted; each also lists the group in `User::groups`.
    pub users: Vec<String>,
    /// Free-form JSON object (`PUT /hub/api/groups/{name}/properties`).
    #[serde(default)]
    pub properties: serde_json::Value,
}

/// A service (log format 8), as JupyterHub's `services` configuration has
/// it: external (a URL and a token) or managed (a command the leader
/// runs). The leader replicates its configuration (`SetServices`) but for
/// a managed service's `environment`, which may hold secrets and stays in
/// the replicas' configuration; a managed service's running copy is
/// recorded in `process`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    /// Where the service listens (`scheme://host:port`): the proxies send
    /// `/services/{name}/` there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A managed service's command; empty for an external one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Shown on the home page's services menu (JupyterHub's `display`).
    #[serde(default)]
    pub display: bool,
    /// Free-form (JupyterHub's `info`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub info: BTreeMap<String, String>,
    /// Hex SHA-256 of the configured API token (JupyterHub's `api_token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_hash: Option<String>,
    /// Where the OAuth provider sends users back (JupyterHub's
    /// `oauth_redirect_uri`); default `/services/{name}/oauth_callback`
    /// when the proxies route the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth_redirect_uri: Option<String>,
    /// JupyterHub's `oauth_no_confirm`: users are not asked to confirm.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oauth_no_confirm: bool,
    /// Set by the state: the running copy of a managed service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ServiceProcess>,
    /// Set by the state: removed from the configuration while its process
    /// ran; kept until that process is recorded as stopped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retired: bool,
}

impl Service {
    pub fn managed(&self) -> bool {
        !self.command.is_empty()
    }

    /// `/services/{name}/`, the name escaped as a user's is.
    pub fn prefix(&self) -> String {
        format!("/services/{}/", crate::ids::url_escape_path(&self.name))
    }

    /// JupyterHub's OAuth client id of a service.
    pub fn oauth_client_id(&self) -> String {
        format!("service-{}", self.name)
    }
}

/// The running copy of a managed service, as the leader that started it
/// recorded it (log format 8).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceProcess {
    /// The log index of its `ServiceStarted`: fences reports about an
    /// earlier copy.
    pub generation: u64,
    pub host: String,
    pub pid: u32,
    pub proc_start: u64,
    /// Hex SHA-256 of the token this copy was given; it goes with the copy.
    pub token_hash: String,
    pub started: Millis,
}
