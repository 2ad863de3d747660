//! Commands (what goes into the Raft log) and their outcomes.

use serde::{Deserialize, Serialize};

use crate::model::{Group, OAuthCode, Role, Service, Session, SpawnerState, Token, User};
use crate::Millis;

/// One entry of the Raft log.
///
/// `client_id` + `serial` name the request uniquely: a proposer that retries
/// after a leader change sends the same pair again, and `apply` answers the
/// retry with the response recorded the first time instead of applying it
/// twice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub client_id: String,
    pub serial: u64,
    /// The proposer's wall clock; used for every timestamp the command sets.
    pub at: Millis,
    pub command: Command,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    CreateUser {
        name: String,
        admin: bool,
    },
    /// Deleting a user with an active server is refused; stop it first.
    DeleteUser {
        name: String,
    },
    SetAdmin {
        name: String,
        admin: bool,
    },
    /// Log format 2. Refused while the user has an active server (its
    /// prefix and token name the old name); the user's tokens follow.
    RenameUser {
        name: String,
        new_name: String,
    },
    /// `user_options` `null`: those of the server's stopped record, if any
    /// (log format 7), as JupyterHub reuses a server's last options.
    RequestSpawn {
        user: String,
        server_name: String,
        #[serde(default)]
        user_options: serde_json::Value,
        /// Log format 7 (the command needs it only when set).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        display_name: Option<String>,
        /// Log format 8 (needed only when set): JupyterHub's spawn limits
        /// of the replica that took the request, checked when the entry
        /// is applied, so concurrent requests on different replicas never
        /// overshoot them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limits: Option<SpawnLimits>,
    },
    /// The leader's spawner started the process of spawn `generation`.
    SpawnStarted {
        user: String,
        server_name: String,
        generation: u64,
        spawner: SpawnerState,
    },
    /// The process answers HTTP: publish its route.
    ServerReady {
        user: String,
        server_name: String,
        generation: u64,
    },
    RequestStop {
        user: String,
        server_name: String,
        /// Log format 7 (the command needs it only when set): forget the
        /// server once stopped instead of keeping its record.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        remove: bool,
    },
    /// The process is gone (stopped on request, failed to start, or found
    /// dead): remove the server, its route and its token.
    ServerStopped {
        user: String,
        server_name: String,
        generation: u64,
        reason: String,
    },
    CreateToken {
        token: Token,
    },
    RevokeToken {
        id: String,
    },
    RecordActivity {
        user: String,
        server_name: Option<String>,
        at: Millis,
    },
    /// Does nothing; used to probe the write path.
    Noop,
    /// Allow commands of log format `version` from now on. Proposed by the
    /// leader once every member reports a build that understands it.
    SetClusterVersion {
        version: u32,
    },
    /// Log format 3: set (or with `None` clear) a user's password hash.
    SetPassword {
        name: String,
        hash: Option<String>,
    },
    /// Log format 3: the cluster-wide key that signs browser cookies. Set
    /// once; a second proposal is refused and the first one stays.
    SetCookieSecret {
        secret: String,
    },
    /// Log format 3: a browser logged in.
    CreateSession {
        session: Session,
    },
    /// Log format 3: logout. Removes the session and every token obtained
    /// through it (the OAuth tokens single-user servers hold in cookies).
    EndSession {
        hash: String,
    },
    /// Log format 3: an authorization code was handed to a browser.
    IssueOAuthCode {
        code: OAuthCode,
    },
    /// Log format 3: exchange a code for an access token. The code must
    /// exist, be unexpired at the request's time and belong to `client_id`;
    /// it is removed either way, so it can never be used twice.
    RedeemOAuthCode {
        hash: String,
        client_id: String,
        token: Token,
    },
    /// Log format 3: a new group, with its first members.
    CreateGroup {
        name: String,
        #[serde(default)]
        users: Vec<String>,
    },
    /// Log format 3: members leave the group with it.
    DeleteGroup {
        name: String,
    },
    /// Log format 3: add members (already members are ignored).
    AddGroupMembers {
        name: String,
        users: Vec<String>,
    },
    /// Log format 3: remove members (non-members are ignored).
    RemoveGroupMembers {
        name: String,
        users: Vec<String>,
    },
    /// Log format 3: replace the group's properties (a JSON object).
    SetGroupProperties {
        name: String,
        properties: serde_json::Value,
    },
    /// Log format 3: link a user to an external identity (OpenID Connect
    /// `issuer|sub`), creating the user if needed. Refused when the user
    /// is linked to another identity or has a password (a local account).
    LinkIdentity {
        name: String,
        subject: String,
        admin: Option<bool>,
    },
    /// Log format 7: a named server that exists but is not started
    /// (JupyterHub 6's `PUT /users/{name}/servers/{server}`).
    CreateServer {
        user: String,
        server_name: String,
        display_name: Option<String>,
        #[serde(default)]
        user_options: serde_json::Value,
    },
    /// Log format 7: change a server that does not run (`PATCH`): rename
    /// it, set its display name, replace its options.
    UpdateServer {
        user: String,
        server_name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        new_name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        display_name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_options: Option<serde_json::Value>,
    },
    /// Log format 7: forget a stopped server's record (`DELETE` with
    /// `remove`); a server that runs must be stopped with `remove` instead.
    RemoveServer {
        user: String,
        server_name: String,
    },
    /// Log format 7: the configured roles, replacing the previous set
    /// (proposed by the leader when its configuration differs).
    SetRoles {
        roles: Vec<Role>,
    },
    /// Log format 8: the configured services, replacing the previous set
    /// (proposed by the leader when its configuration differs); a managed
    /// service's recorded process is kept.
    SetServices {
        services: Vec<Service>,
    },
    /// Log format 8: the leader started a copy of a managed service.
    ServiceStarted {
        name: String,
        host: String,
        pid: u32,
        proc_start: u64,
        token_hash: String,
    },
    /// Log format 8: the copy of spawn `generation` is gone (its token with
    /// it).
    ServiceStopped {
        name: String,
        generation: u64,
        reason: String,
    },
}

impl Command {
    /// Short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Command::CreateUser { .. } => "create_user",
            Command::DeleteUser { .. } => "delete_user",
            Command::SetAdmin { .. } => "set_admin",
            Command::RenameUser { .. } => "rename_user",
            Command::RequestSpawn { .. } => "request_spawn",
            Command::SpawnStarted { .. } => "spawn_started",
            Command::ServerReady { .. } => "server_ready",
            Command::RequestStop { .. } => "request_stop",
            Command::ServerStopped { .. } => "server_stopped",
            Command::CreateToken { .. } => "create_token",
            Command::RevokeToken { .. } => "revoke_token",
            Command::RecordActivity { .. } => "record_activity",
            Command::Noop => "noop",
            Command::SetClusterVersion { .. } => "set_cluster_version",
            Command::SetPassword { .. } => "set_password",
            Command::SetCookieSecret { .. } => "set_cookie_secret",
            Command::CreateSession { .. } => "create_session",
            Command::EndSession { .. } => "end_session",
            Command::IssueOAuthCode { .. } => "issue_oauth_code",
            Command::RedeemOAuthCode { .. } => "redeem_oauth_code",
            Command::CreateGroup { .. } => "create_group",
            Command::DeleteGroup { .. } => "delete_group",
            Command::AddGroupMembers { .. } => "add_group_members",
            Command::RemoveGroupMembers { .. } => "remove_group_members",
            Command::SetGroupProperties { .. } => "set_group_properties",
            Command::LinkIdentity { .. } => "link_identity",
            Command::CreateServer { .. } => "create_server",
            Command::UpdateServer { .. } => "update_server",
            Command::RemoveServer { .. } => "remove_server",
            Command::SetRoles { .. } => "set_roles",
            Command::SetServices { .. } => "set_services",
            Command::ServiceStarted { .. } => "service_started",
            Command::ServiceStopped { .. } => "service_stopped",
        }
    }

    /// The log format version that introduced this command: it may be
    /// proposed only once the cluster version is at least this, so that no
    /// replica is ever sent an entry its build cannot decode.
    pub fn min_version(&self) -> u32 {
        match self {
            Command::RequestSpawn {
                limits: Some(_), ..
            }
            | Command::SetServices { .. }
            | Command::ServiceStarted { .. }
            | Command::ServiceStopped { .. } => 8,
            Command::RequestSpawn {
                display_name: Some(_),
                ..
            }
            | Command::RequestStop { remove: true, .. }
            | Command::CreateServer { .. }
            | Command::UpdateServer { .. }
            | Command::RemoveServer { .. }
            | Command::SetRoles { .. } => 7,
            Command::CreateUser { .. }
            | Command::DeleteUser { .. }
            | Command::SetAdmin { .. }
            | Command::RequestSpawn { .. }
            | Command::SpawnStarted { .. }
            | Command::ServerReady { .. }
            | Command::RequestStop { .. }
            | Command::ServerStopped { .. }
            | Command::CreateToken { .. }
            | Command::RevokeToken { .. }
            | Command::RecordActivity { .. }
            | Command::Noop
            | Command::SetClusterVersion { .. } => 1,
            Command::RenameUser { .. } => 2,
            Command::SetPassword { .. }
            | Command::SetCookieSecret { .. }
            | Command::CreateSession { .. }
            | Command::EndSession { .. }
            | Command::IssueOAuthCode { .. }
            | Command::RedeemOAuthCode { .. }
            | Command::CreateGroup { .. }
            | Command::DeleteGroup { .. }
            | Command::AddGroupMembers { .. }
            | Command::RemoveGroupMembers { .. }
            | Command::SetGroupProperties { .. }
            | Command::LinkIdentity { .. } => 3,
        }
    }
}

/// JupyterHub's `concurrent_spawn_limit` and `active_server_limit`; 0 is
/// no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnLimits {
    /// Spawns pending at once (servers still starting).
    pub concurrent: u32,
    /// Servers active at once (starting, running or stopping).
    pub active: u32,
}

impl SpawnLimits {
    /// `None` when neither limit is set: the command then needs no newer
    /// log format.
    pub fn if_any(self) -> Option<SpawnLimits> {
        (self.concurrent > 0 || self.active > 0).then_some(self)
    }
}

/// What applying a command produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Done,
    User {
        user: Box<User>,
    },
    /// The generation of the spawn that was requested.
    SpawnRequested {
        generation: u64,
    },
    TokenCreated {
        id: String,
    },
    Group {
        group: Box<Group>,
    },
    Rejected {
        rejection: Rejection,
    },
}

/// Why a command changed nothing. Every rejection is a normal outcome of
/// apply, replicated like any other, and leaves the state untouched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Rejection {
    /// Log format 8: JupyterHub's 429 for `concurrent_spawn_limit`.
    #[error(
        "Too many users trying to log in right now ({pending} of at most {limit} spawns pending)"
    )]
    SpawnThrottled { pending: u64, limit: u32 },
    /// Log format 8: JupyterHub's 429 for `active_server_limit`.
    #[error("Active user limit exceeded ({active} of at most {limit} servers active). Try again in a few minutes.")]
    ActiveServerLimit { active: u64, limit: u32 },
    /// Log format 8.
    #[error("No such service: {name}")]
    NoSuchService { name: String },
    /// Log format 8: a report about a copy of a managed service that is
    /// not the recorded one.
    #[error("report for an earlier copy of service {name} (generation {got}, current {current})")]
    StaleServiceCopy {
        name: String,
        got: u64,
        current: u64,
    },
    /// Log format 8: another copy of the managed service is recorded.
    #[error("service {name} already runs (pid {pid} on {host})")]
    ServiceRunning {
        name: String,
        host: String,
        pid: u32,
    },
    #[error("User {name} already exists")]
    UserExists { name: String },
    #[error("No such user: {name}")]
    NoSuchUser { name: String },
    #[error("Invalid name {name:?}: {why}")]
    InvalidName { name: String, why: String },
    #[error("{user}'s server{} is already running", server_label(.server_name))]
    AlreadyRunning { user: String, server_name: String },
    #[error("{user}'s server{} is pending {pending}, please wait", server_label(.server_name))]
    Pending {
        user: String,
        server_name: String,
        pending: String,
    },
    #[error("{user} has no active server{}", server_label(.server_name))]
    NotRunning { user: String, server_name: String },
    /// Log format 7.
    #[error("User {user} already has server {server_name}")]
    ServerExists { user: String, server_name: String },
    /// Log format 7.
    #[error("User {user} has no such server {server_name}")]
    NoSuchServer { user: String, server_name: String },
    /// Log format 7.
    #[error("Role {name} is defined twice")]
    RoleTwice { name: String },
    /// Log format 7: a running server's record cannot be changed.
    #[error("{user}'s server{} is active. Please stop it before modifying it.", server_label(.server_name))]
    ServerActive { user: String, server_name: String },
    #[error("{user} still has an active server; stop it first")]
    HasActiveServers { user: String },
    #[error(
        "report for an earlier spawn of {user}'s server (generation {got}, current {current})"
    )]
    StaleGeneration {
        user: String,
        got: u64,
        current: u64,
    },
    #[error("a process is already recorded for this spawn of {user}'s server (pid {pid})")]
    ProcessAlreadyRecorded { user: String, pid: u32 },
    #[error("No such token: {id}")]
    NoSuchToken { id: String },
    #[error("Token {id} already exists")]
    TokenExists { id: String },
    #[error("the cluster version is {current}; it never goes back to {requested}")]
    ClusterVersionDowngrade { current: u32, requested: u32 },
    #[error("the cookie secret is already set")]
    CookieSecretSet,
    #[error("No such session")]
    NoSuchSession,
    /// The code is unknown, already used, expired or not this client's.
    #[error("invalid_grant")]
    InvalidGrant,
    #[error("Group {name} already exists")]
    GroupExists { name: String },
    #[error("No such group: {name}")]
    NoSuchGroup { name: String },
    #[error("group properties must be a JSON object")]
    PropertiesNotAnObject,
    #[error("too many OAuth codes are waiting for this session; use or let them expire")]
    TooManyCodes,
    #[error("{name} is already linked to another identity, or is a local account")]
    IdentityMismatch { name: String },
    /// Log format 6: the server to start would get an OAuth client id that
    /// an active server holds (one spawned before log format 6, with
    /// JupyterHub's ambiguous id).
    #[error(
        "the OAuth client id {client_id} is already used by {owner}'s server{}, started before the \
         cluster moved to log format 6; stop that server (its next start gets an id of its own) \
         and try again",
        server_label(.owner_server)
    )]
    ClientIdTaken {
        client_id: String,
        owner: String,
        owner_server: String,
    },
    /// Log format 4: a command above `MAX_COMMAND_BYTES` is never executed.
    #[error(
        "the request is {bytes} bytes encoded; the hub stores at most {limit} bytes per change"
    )]
    CommandTooLarge { bytes: usize, limit: usize },
}

fn server_label(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!(" {name}")
    }
}
