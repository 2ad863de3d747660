//! [`HubState`] and its deterministic `apply`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::command::{Command, Rejection, Request, Response, SpawnLimits};
use crate::dedupe::Dedupe;
use crate::ids;
use crate::model::{
    Group, OAuthCode, Phase, Role, Route, RouteEvent, Server, Service, Session, StopRecord,
    StoppedServer, Token, TokenOwner, User,
};
use crate::names::{validate_display_name, validate_server_name, validate_username_at};
use crate::Millis;

/// Version of the command set and entry encoding this build understands.
/// A command introduced in version N may only be proposed once every voter
/// runs a build with `LOG_FORMAT_VERSION >= N`.
///
/// 1: the commands up to `SetClusterVersion`. 2: `RenameUser`. 3: passwords,
/// the cookie secret, browser sessions and OAuth codes. 4: `apply` refuses a
/// command larger than [`MAX_COMMAND_BYTES`] (no new command; the version
/// only gates that refusal, so replicas of two releases never disagree).
/// 5: `ServerStopped` keeps its reason in the user's `last_stop` (no new
/// command; gated the same way). 6: `RequestSpawn` records the server's
/// OAuth client id by the injective scheme of [`crate::ids`] and refuses a
/// spawn whose id an active server already holds (no new command; gated
/// the same way). 7: a server's record outlives its stop (`User::stopped`,
/// JupyterHub's stopped servers), with `CreateServer`, `UpdateServer`,
/// `RemoveServer`, `display_name` on `RequestSpawn` and `remove` on
/// `RequestStop`; usernames follow JupyterHub's rule (Unicode); and roles
/// from the configuration (`SetRoles`). 8: `limits` on `RequestSpawn`
/// (JupyterHub's `concurrent_spawn_limit` and `active_server_limit`).
pub const LOG_FORMAT_VERSION: u32 = 8;

/// The largest command (its JSON encoding) `apply` executes once the cluster
/// version is 4 or more. Every replica refuses larger ones before proposing
/// (the REST limits are far below it); this is the last line of defence, so
/// that no entry that no limit allowed ever changes the state.
pub const MAX_COMMAND_BYTES: usize = 1 << 20;

/// The length of `value`'s JSON encoding, without building it.
fn encoded_len<T: Serialize>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    match serde_json::to_writer(&mut c, value) {
        Ok(()) => c.0,
        Err(_) => usize::MAX,
    }
}

fn initial_cluster_version() -> u32 {
    1
}

/// The whole replicated state of the hub.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubState {
    /// Log index of the last applied entry: the revision watchers resume from.
    pub revision: u64,
    pub users: BTreeMap<String, User>,
    /// The proxy route table, by prefix.
    pub routes: BTreeMap<String, Route>,
    pub tokens: BTreeMap<String, Token>,
    pub next_token_id: u64,
    pub dedupe: Dedupe,
    /// The newest log format every member understands, as last agreed: no
    /// command newer than this may be proposed. Only ever rises.
    #[serde(default = "initial_cluster_version")]
    pub cluster_version: u32,
    /// Log format 3: the key that signs browser cookies (hex), set once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_secret: Option<String>,
    /// Log format 3: browser sessions by hash.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sessions: BTreeMap<String, Session>,
    /// Log format 3: OAuth codes not yet redeemed, by hash.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub oauth_codes: BTreeMap<String, OAuthCode>,
    /// Log format 3: groups by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<String, Group>,
    /// Log format 7: the configured roles by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub roles: BTreeMap<String, Role>,
    /// Log format 8: the configured services by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, Service>,
    /// Derived: service name by the hash of its token(s).
    #[serde(skip)]
    pub(crate) service_by_hash: HashMap<String, String>,
    /// Derived: token id by hash. Rebuilt after a snapshot is restored.
    #[serde(skip)]
    token_by_hash: HashMap<String, String>,
    /// Derived: every active server as (user, server name).
    #[serde(skip)]
    active: BTreeSet<(String, String)>,
    /// Derived: the active servers still starting (phase `Spawning`), for
    /// `concurrent_spawn_limit`.
    #[serde(skip)]
    spawning: BTreeSet<(String, String)>,
    /// Derived: the active servers by OAuth client id ([`Server::client_id`]).
    /// Two servers share an id only if both were spawned before log format 6.
    #[serde(skip)]
    clients: BTreeMap<String, BTreeSet<(String, String)>>,
}

/// The outcome of applying one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub response: Response,
    /// Changes to the route table, in order.
    pub route_events: Vec<RouteEvent>,
    /// The request had been applied before; this is the recorded response.
    pub duplicate: bool,
}

pub(crate) type Outcome = Result<(Response, Vec<RouteEvent>), Rejection>;

impl Default for HubState {
    fn default() -> HubState {
        HubState {
            revision: 0,
            users: BTreeMap::new(),
            routes: BTreeMap::new(),
            tokens: BTreeMap::new(),
            next_token_id: 0,
            dedupe: Dedupe::default(),
            cluster_version: initial_cluster_version(),
            cookie_secret: None,
            sessions: BTreeMap::new(),
            oauth_codes: BTreeMap::new(),
            groups: BTreeMap::new(),
            roles: BTreeMap::new(),
            services: BTreeMap::new(),
            service_by_hash: HashMap::new(),
            token_by_hash: HashMap::new(),
            active: BTreeSet::new(),
            spawning: BTreeSet::new(),
            clients: BTreeMap::new(),
        }
    }
}

impl HubState {
    /// Apply the request stored at log `index`.
    pub fn apply(&mut self, index: u64, req: &Request) -> Applied {
        self.revision = self.revision.max(index);
        if let Some(prev) = self.dedupe.get(&req.client_id, req.serial) {
            return Applied {
                response: prev.clone(),
                route_events: Vec::new(),
                duplicate: true,
            };
        }
        let outcome = if self.cluster_version >= 4 {
            let bytes = encoded_len(&req.command);
            if bytes > MAX_COMMAND_BYTES {
                Err(Rejection::CommandTooLarge {
                    bytes,
                    limit: MAX_COMMAND_BYTES,
                })
            } else {
                self.exec(index, req.at, &req.command)
            }
        } else {
            self.exec(index, req.at, &req.command)
        };
        let (response, route_events) = match outcome {
            Ok(ok) => ok,
            Err(rejection) => (Response::Rejected { rejection }, Vec::new()),
        };
        self.dedupe
            .record(&req.client_id, req.serial, response.clone());
        Applied {
            response,
            route_events,
            duplicate: false,
        }
    }

    /// Advance the revision for a log entry that carries no command
    /// (a leader's blank entry or a membership change).
    pub fn advance(&mut self, index: u64) {
        self.revision = self.revision.max(index);
    }

    fn exec(&mut self, index: u64, at: Millis, cmd: &Command) -> Outcome {
        match cmd {
            Command::CreateUser { name, admin } => self.create_user(name, *admin, at),
            Command::DeleteUser { name } => self.delete_user(name),
            Command::SetAdmin { name, admin } => {
                let user = self.user_mut(name)?;
                user.admin = *admin;
                Ok((user_response(user), vec![]))
            }
            Command::RenameUser { name, new_name } => self.rename_user(name, new_name),
            Command::RequestSpawn {
                user,
                server_name,
                user_options,
                display_name,
                limits,
            } => self.request_spawn(
                index,
                at,
                user,
                server_name,
                user_options,
                display_name.as_deref(),
                *limits,
            ),
            Command::SpawnStarted {
                user,
                server_name,
                generation,
                spawner,
            } => {
                let server = self.server_mut(user, server_name, *generation)?;
                if server.phase == Phase::Running {
                    return Err(already_running(user, server_name));
                }
                // Two leaders may both have started a process for the same
                // spawn (the old one did not know it had lost): the first
                // record wins, the other process must be stopped by its
                // starter.
                if let Some(existing) = &server.spawner {
                    return Err(Rejection::ProcessAlreadyRecorded {
                        user: user.to_string(),
                        pid: existing.pid,
                    });
                }
                server.spawner = Some(spawner.clone());
                Ok((Response::Done, vec![]))
            }
            Command::ServerReady {
                user,
                server_name,
                generation,
            } => self.server_ready(at, user, server_name, *generation),
            Command::RequestStop {
                user,
                server_name,
                remove,
            } => self.request_stop(user, server_name, *remove),
            Command::ServerStopped {
                user,
                server_name,
                generation,
                reason,
            } => self.server_stopped(at, user, server_name, *generation, reason),
            Command::CreateToken { token } => self.create_token(token),
            Command::RevokeToken { id } => {
                self.remove_token(id)
                    .ok_or_else(|| Rejection::NoSuchToken { id: id.clone() })?;
                Ok((Response::Done, vec![]))
            }
            Command::RecordActivity {
                user,
                server_name,
                at,
            } => {
                let u = self.user_mut(user)?;
                u.last_activity = Some(u.last_activity.unwrap_or(0).max(*at));
                if let Some(s) = server_name.as_ref().and_then(|n| u.servers.get_mut(n)) {
                    s.last_activity = Some(s.last_activity.unwrap_or(0).max(*at));
                }
                Ok((Response::Done, vec![]))
            }
            Command::Noop => Ok((Response::Done, vec![])),
            Command::SetClusterVersion { version } => {
                if *version < self.cluster_version {
                    return Err(Rejection::ClusterVersionDowngrade {
                        current: self.cluster_version,
                        requested: *version,
                    });
                }
                self.cluster_version = *version;
                Ok((Response::Done, vec![]))
            }
            Command::SetPassword { name, hash } => {
                self.user_mut(name)?.password_hash = hash.clone();
                Ok((Response::Done, vec![]))
            }
            Command::SetCookieSecret { secret } => self.set_cookie_secret(secret),
            Command::CreateSession { session } => self.create_session(at, session),
            Command::EndSession { hash } => self.end_session(at, hash),
            Command::IssueOAuthCode { code } => self.issue_oauth_code(at, code),
            Command::RedeemOAuthCode {
                hash,
                client_id,
                token,
            } => self.redeem_oauth_code(at, hash, client_id, token),
            Command::CreateGroup { name, users } => self.create_group(name, users),
            Command::DeleteGroup { name } => self.delete_group(name),
            Command::AddGroupMembers { name, users } => self.add_group_members(name, users),
            Command::RemoveGroupMembers { name, users } => self.remove_group_members(name, users),
            Command::SetGroupProperties { name, properties } => {
                self.set_group_properties(name, properties)
            }
            Command::LinkIdentity {
                name,
                subject,
                admin,
            } => self.link_identity(at, name, subject, *admin),
            Command::CreateServer {
                user,
                server_name,
                display_name,
                user_options,
            } => self.create_server(user, server_name, display_name.as_deref(), user_options),
            Command::UpdateServer {
                user,
                server_name,
                new_name,
                display_name,
                user_options,
            } => self.update_server(
                user,
                server_name,
                new_name.as_deref(),
                display_name.as_deref(),
                user_options.as_ref(),
            ),
            Command::SetRoles { roles } => self.set_roles(roles),
            Command::SetServices { services } => self.set_services(services),
            Command::ServiceStarted {
                name,
                host,
                pid,
                proc_start,
                token_hash,
            } => self.service_started(index, at, name, (host, *pid, *proc_start, token_hash)),
            Command::ServiceStopped {
                name, generation, ..
            } => self.service_stopped(name, *generation),
            Command::RemoveServer { user, server_name } => {
                let u = self.user_mut(user)?;
                if u.servers.contains_key(server_name) {
                    return Err(server_active(user, server_name));
                }
                u.stopped
                    .remove(server_name)
                    .ok_or_else(|| no_such_server(user, server_name))?;
                Ok((Response::Done, vec![]))
            }
        }
    }

    pub(crate) fn create_user(&mut self, name: &str, admin: bool, at: Millis) -> Outcome {
        validate_username_at(self.cluster_version, name).map_err(|why| Rejection::InvalidName {
            name: name.to_string(),
            why,
        })?;
        if self.users.contains_key(name) {
            return Err(Rejection::UserExists {
                name: name.to_string(),
            });
        }
        let user = User::new(name.to_string(), admin, at);
        let response = user_response(&user);
        self.users.insert(name.to_string(), user);
        Ok((response, vec![]))
    }

    fn rename_user(&mut self, name: &str, new_name: &str) -> Outcome {
        validate_username_at(self.cluster_version, new_name).map_err(|why| {
            Rejection::InvalidName {
                name: new_name.to_string(),
                why,
            }
        })?;
        let user = self.user(name).ok_or_else(|| no_such_user(name))?;
        if !user.servers.is_empty() {
            return Err(Rejection::HasActiveServers {
                user: name.to_string(),
            });
        }
        if self.users.contains_key(new_name) {
            return Err(Rejection::UserExists {
                name: new_name.to_string(),
            });
        }
        let mut user = self.users.remove(name).ok_or_else(|| no_such_user(name))?;
        user.name = new_name.to_string();
        for token in self.tokens.values_mut() {
            match &mut token.owner {
                TokenOwner::User { name: owner } if owner == name => *owner = new_name.to_string(),
                TokenOwner::Server { user: owner, .. } if owner == name => {
                    *owner = new_name.to_string()
                }
                _ => {}
            }
        }
        self.rename_logins(name, new_name);
        self.rename_in_groups(name, new_name);
        let response = user_response(&user);
        self.users.insert(new_name.to_string(), user);
        Ok((response, vec![]))
    }

    fn delete_user(&mut self, name: &str) -> Outcome {
        let user = self.user(name).ok_or_else(|| no_such_user(name))?;
        if !user.servers.is_empty() {
            return Err(Rejection::HasActiveServers {
                user: name.to_string(),
            });
        }
        self.users.remove(name);
        let owned: Vec<String> = self
            .tokens
            .values()
            .filter(|t| t.owner.user() == name)
            .map(|t| t.id.clone())
            .collect();
        for id in owned {
            self.remove_token(&id);
        }
        self.forget_logins_of(name);
        self.leave_all_groups(name);
        Ok((Response::Done, vec![]))
    }

    // One argument per field of the command, as the other arms pass them.
    #[allow(clippy::too_many_arguments)]
    fn request_spawn(
        &mut self,
        index: u64,
        at: Millis,
        user: &str,
        server_name: &str,
        user_options: &serde_json::Value,
        display_name: Option<&str>,
        limits: Option<SpawnLimits>,
    ) -> Outcome {
        validate_server_name(server_name).map_err(|why| Rejection::InvalidName {
            name: server_name.to_string(),
            why,
        })?;
        if let Some(d) = display_name {
            check_display_name(d)?;
        }
        let u = self.user(user).ok_or_else(|| no_such_user(user))?;
        if let Some(existing) = u.servers.get(server_name) {
            return Err(match existing.pending() {
                None => already_running(user, server_name),
                Some(p) => Rejection::Pending {
                    user: user.to_string(),
                    server_name: server_name.to_string(),
                    pending: p.to_string(),
                },
            });
        }
        // Log format 8: JupyterHub's limits, in its order, over the servers
        // active when the entry is applied.
        if let Some(l) = limits {
            let pending = self.spawning.len() as u64;
            if l.concurrent > 0 && pending >= u64::from(l.concurrent) {
                return Err(Rejection::SpawnThrottled {
                    pending,
                    limit: l.concurrent,
                });
            }
            let active = self.active.len() as u64;
            if l.active > 0 && active >= u64::from(l.active) {
                return Err(Rejection::ActiveServerLimit {
                    active,
                    limit: l.active,
                });
            }
        }
        // Log format 6: the id is recorded, and one that an active server
        // holds is refused. Ids of the injective scheme never meet, so the
        // holder is a server spawned earlier with JupyterHub's id.
        let oauth_client_id = if self.cluster_version >= 6 {
            let id = ids::oauth_client_id(user, server_name);
            if let Some((owner, owner_server)) = self.clients.get(&id).and_then(|h| h.first()) {
                return Err(Rejection::ClientIdTaken {
                    client_id: id,
                    owner: owner.clone(),
                    owner_server: owner_server.clone(),
                });
            }
            Some(id)
        } else {
            None
        };
        // Log format 7: a stopped record lends its display name and, when
        // the request names none, its options; the record becomes the
        // running server.
        let keep_records = self.cluster_version >= 7;
        let u = self.user_mut(user)?;
        let record = if keep_records {
            u.stopped.remove(server_name)
        } else {
            None
        };
        let (user_options, display_name, last_activity) = match record {
            Some(r) => (
                if user_options.is_null() {
                    r.user_options
                } else {
                    user_options.clone()
                },
                display_name.map(str::to_string).or(r.display_name),
                r.last_activity,
            ),
            None => (
                user_options.clone(),
                display_name.map(str::to_string).filter(|_| keep_records),
                None,
            ),
        };
        let server = Server {
            name: server_name.to_string(),
            phase: Phase::Spawning,
            generation: index,
            requested: at,
            started: None,
            last_activity,
            user_options,
            spawner: None,
            oauth_client_id,
            display_name,
            remove_on_stop: false,
        };
        let client_id = server.client_id(user);
        u.servers.insert(server_name.to_string(), server);
        let key = (user.to_string(), server_name.to_string());
        self.clients
            .entry(client_id)
            .or_default()
            .insert(key.clone());
        self.spawning.insert(key.clone());
        self.active.insert(key);
        Ok((Response::SpawnRequested { generation: index }, vec![]))
    }

    fn server_ready(
        &mut self,
        at: Millis,
        user: &str,
        server_name: &str,
        generation: u64,
    ) -> Outcome {
        let server = self.server_mut(user, server_name, generation)?;
        match server.phase {
            Phase::Running => return Err(already_running(user, server_name)),
            Phase::Stopping => {
                return Err(Rejection::Pending {
                    user: user.to_string(),
                    server_name: server_name.to_string(),
                    pending: "stop".into(),
                })
            }
            Phase::Spawning => {}
        }
        let Some(target) = server.spawner.as_ref().map(|s| s.target.clone()) else {
            return Err(Rejection::NotRunning {
                user: user.to_string(),
                server_name: server_name.to_string(),
            });
        };
        server.phase = Phase::Running;
        server.started = Some(at);
        server.last_activity = Some(at);
        let route = Route {
            prefix: Route::prefix_for(user, server_name),
            target,
            user: user.to_string(),
            server_name: server_name.to_string(),
        };
        self.routes.insert(route.prefix.clone(), route.clone());
        self.spawning
            .remove(&(user.to_string(), server_name.to_string()));
        Ok((Response::Done, vec![RouteEvent::Upsert(route)]))
    }

    fn request_stop(&mut self, user: &str, server_name: &str, remove: bool) -> Outcome {
        let keep_records = self.cluster_version >= 7;
        let u = self.user_mut(user)?;
        let not_running = || Rejection::NotRunning {
            user: user.to_string(),
            server_name: server_name.to_string(),
        };
        let server = u.servers.get_mut(server_name).ok_or_else(not_running)?;
        // Log format 7: `remove` asked again while stopping is recorded
        // (JupyterHub removes the server once its stop completes).
        if server.phase == Phase::Stopping && remove && keep_records && !server.remove_on_stop {
            server.remove_on_stop = true;
            return Ok((Response::Done, vec![]));
        }
        if server.phase == Phase::Stopping {
            return Err(Rejection::Pending {
                user: user.to_string(),
                server_name: server_name.to_string(),
                pending: "stop".into(),
            });
        }
        server.phase = Phase::Stopping;
        server.remove_on_stop |= remove && keep_records;
        self.spawning
            .remove(&(user.to_string(), server_name.to_string()));
        Ok((Response::Done, self.remove_route(user, server_name)))
    }

    fn server_stopped(
        &mut self,
        at: Millis,
        user: &str,
        server_name: &str,
        generation: u64,
        reason: &str,
    ) -> Outcome {
        let server = self.server_mut(user, server_name, generation)?;
        let token_id = server.spawner.as_ref().and_then(|s| s.token_id.clone());
        let client_id = server.client_id(user);
        let keep_reason = self.cluster_version >= 5;
        let keep_record = self.cluster_version >= 7;
        if let Some(u) = self.users.get_mut(user) {
            if let Some(s) = u.servers.remove(server_name) {
                if keep_record && !s.remove_on_stop {
                    u.stopped.insert(
                        server_name.to_string(),
                        StoppedServer {
                            name: s.name,
                            display_name: s.display_name,
                            user_options: s.user_options,
                            last_activity: s.last_activity,
                        },
                    );
                }
            }
            if keep_reason {
                u.last_stop = Some(StopRecord {
                    server_name: server_name.to_string(),
                    generation,
                    reason: reason.to_string(),
                    at,
                });
            }
        }
        let key = (user.to_string(), server_name.to_string());
        if let Some(holders) = self.clients.get_mut(&client_id) {
            holders.remove(&key);
            if holders.is_empty() {
                self.clients.remove(&client_id);
            }
        }
        self.spawning.remove(&key);
        self.active.remove(&key);
        if let Some(id) = token_id {
            self.remove_token(&id);
        }
        Ok((Response::Done, self.remove_route(user, server_name)))
    }

    fn set_roles(&mut self, roles: &[Role]) -> Outcome {
        let mut by_name = BTreeMap::new();
        for r in roles {
            crate::names::validate_group_name(&r.name).map_err(|why| Rejection::InvalidName {
                name: r.name.clone(),
                why,
            })?;
            if by_name.contains_key(&r.name) {
                return Err(Rejection::RoleTwice {
                    name: r.name.clone(),
                });
            }
            let mut r = r.clone();
            for list in [&mut r.scopes, &mut r.users, &mut r.groups, &mut r.services] {
                list.sort();
                list.dedup();
            }
            by_name.insert(r.name.clone(), r);
        }
        self.roles = by_name;
        Ok((Response::Done, vec![]))
    }

    fn create_server(
        &mut self,
        user: &str,
        server_name: &str,
        display_name: Option<&str>,
        user_options: &serde_json::Value,
    ) -> Outcome {
        if server_name.is_empty() {
            return Err(server_exists(user, server_name));
        }
        validate_server_name(server_name).map_err(|why| Rejection::InvalidName {
            name: server_name.to_string(),
            why,
        })?;
        if let Some(d) = display_name {
            check_display_name(d)?;
        }
        let u = self.user_mut(user)?;
        if u.servers.contains_key(server_name) || u.stopped.contains_key(server_name) {
            return Err(server_exists(user, server_name));
        }
        u.stopped.insert(
            server_name.to_string(),
            StoppedServer {
                name: server_name.to_string(),
                display_name: display_name.map(str::to_string),
                user_options: user_options.clone(),
                last_activity: None,
            },
        );
        Ok((Response::Done, vec![]))
    }

    fn update_server(
        &mut self,
        user: &str,
        server_name: &str,
        new_name: Option<&str>,
        display_name: Option<&str>,
        user_options: Option<&serde_json::Value>,
    ) -> Outcome {
        if new_name == Some("") {
            return Err(Rejection::InvalidName {
                name: String::new(),
                why: "a server cannot be renamed to the default server".into(),
            });
        }
        if let Some(n) = new_name {
            validate_server_name(n).map_err(|why| Rejection::InvalidName {
                name: n.to_string(),
                why,
            })?;
        }
        if let Some(d) = display_name {
            check_display_name(d)?;
        }
        let u = self.user_mut(user)?;
        if u.servers.contains_key(server_name) {
            return Err(server_active(user, server_name));
        }
        let new_name = new_name.filter(|n| *n != server_name);
        if let Some(n) = new_name {
            if u.servers.contains_key(n) || u.stopped.contains_key(n) {
                return Err(server_exists(user, n));
            }
        }
        // The default server always exists: its first record is made here.
        let mut record = match u.stopped.remove(server_name) {
            Some(r) => r,
            None if server_name.is_empty() => StoppedServer {
                name: String::new(),
                display_name: None,
                user_options: serde_json::Value::Null,
                last_activity: None,
            },
            None => return Err(no_such_server(user, server_name)),
        };
        if let Some(d) = display_name {
            record.display_name = Some(d.to_string());
        }
        if let Some(o) = user_options {
            record.user_options = o.clone();
        }
        if let Some(n) = new_name {
            record.name = n.to_string();
        }
        u.stopped.insert(record.name.clone(), record);
        Ok((Response::Done, vec![]))
    }

    pub(crate) fn create_token(&mut self, token: &Token) -> Outcome {
        if !self.users.contains_key(token.owner.user()) {
            return Err(no_such_user(token.owner.user()));
        }
        if let Some(id) = self.token_by_hash.get(&token.hash) {
            return Err(Rejection::TokenExists { id: id.clone() });
        }
        self.next_token_id += 1;
        let id = format!("a{}", self.next_token_id);
        let mut stored = token.clone();
        stored.id = id.clone();
        self.token_by_hash.insert(stored.hash.clone(), id.clone());
        self.tokens.insert(id.clone(), stored);
        Ok((Response::TokenCreated { id }, vec![]))
    }

    pub(crate) fn remove_token(&mut self, id: &str) -> Option<Token> {
        let token = self.tokens.remove(id)?;
        self.token_by_hash.remove(&token.hash);
        Some(token)
    }

    fn remove_route(&mut self, user: &str, server_name: &str) -> Vec<RouteEvent> {
        let prefix = Route::prefix_for(user, server_name);
        match self.routes.remove(&prefix) {
            Some(_) => vec![RouteEvent::Delete { prefix }],
            None => vec![],
        }
    }

    pub(crate) fn user_mut(&mut self, name: &str) -> Result<&mut User, Rejection> {
        self.users.get_mut(name).ok_or_else(|| no_such_user(name))
    }

    fn server_mut(
        &mut self,
        user: &str,
        server_name: &str,
        generation: u64,
    ) -> Result<&mut Server, Rejection> {
        let server = self
            .user_mut(user)?
            .servers
            .get_mut(server_name)
            .ok_or_else(|| Rejection::NotRunning {
                user: user.to_string(),
                server_name: server_name.to_string(),
            })?;
        if server.generation != generation {
            return Err(Rejection::StaleGeneration {
                user: user.to_string(),
                got: generation,
                current: server.generation,
            });
        }
        Ok(server)
    }

    // ----- reads -----

    /// The configured roles `user` holds: named in the role, or through one
    /// of the user's groups (log format 7).
    pub fn roles_of<'a>(&'a self, user: &'a User) -> impl Iterator<Item = &'a Role> + 'a {
        self.roles.values().filter(move |r| {
            r.users.binary_search(&user.name).is_ok()
                || user
                    .groups
                    .iter()
                    .any(|g| r.groups.binary_search(g).is_ok())
        })
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    pub fn server(&self, user: &str, server_name: &str) -> Option<&Server> {
        self.users.get(user)?.servers.get(server_name)
    }

    /// Every active server (spawning, running or stopping), in a stable order.
    pub fn active_servers(&self) -> impl Iterator<Item = (&User, &Server)> {
        self.active.iter().filter_map(|(u, s)| {
            let user = self.users.get(u)?;
            Some((user, user.servers.get(s)?))
        })
    }

    /// The active servers whose OAuth client id is `client_id`: at most one,
    /// unless two were spawned before log format 6 with JupyterHub's
    /// ambiguous ids.
    pub fn servers_with_client_id<'a>(
        &'a self,
        client_id: &str,
    ) -> impl Iterator<Item = (&'a User, &'a Server)> + 'a {
        self.clients
            .get(client_id)
            .into_iter()
            .flatten()
            .filter_map(|(u, s)| {
                let user = self.users.get(u)?;
                Some((user, user.servers.get(s)?))
            })
    }

    /// The token whose hash is `hash`, if it exists and has not expired.
    pub fn token_by_hash(&self, hash: &str, now: Millis) -> Option<&Token> {
        let id = self.token_by_hash.get(hash)?;
        self.tokens.get(id).filter(|t| !t.expired(now))
    }

    pub fn tokens_of(&self, owner: &TokenOwner) -> impl Iterator<Item = &Token> {
        let owner = owner.clone();
        self.tokens.values().filter(move |t| t.owner == owner)
    }

    // ----- snapshots -----

    /// Canonical encoding: every map is ordered, so equal states encode to
    /// equal bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("HubState serializes: all keys are strings")
    }

    pub fn decode(bytes: &[u8]) -> Result<HubState, serde_json::Error> {
        let mut state: HubState = serde_json::from_slice(bytes)?;
        state.rebuild_indexes();
        Ok(state)
    }

    /// Rebuild the derived indexes; call after deserializing a `HubState`
    /// by other means than [`HubState::decode`].
    pub fn rebuild_indexes(&mut self) {
        self.token_by_hash = self
            .tokens
            .values()
            .map(|t| (t.hash.clone(), t.id.clone()))
            .collect();
        self.active = self
            .users
            .values()
            .flat_map(|u| u.servers.keys().map(|s| (u.name.clone(), s.clone())))
            .collect();
        self.spawning = self
            .users
            .values()
            .flat_map(|u| {
                u.servers
                    .values()
                    .filter(|s| s.phase == Phase::Spawning)
                    .map(|s| (u.name.clone(), s.name.clone()))
            })
            .collect();
        self.rebuild_service_index();
        self.clients = BTreeMap::new();
        for u in self.users.values() {
            for s in u.servers.values() {
                self.clients
                    .entry(s.client_id(&u.name))
                    .or_default()
                    .insert((u.name.clone(), s.name.clone()));
            }
        }
    }

    /// Hex SHA-256 of the canonical encoding; equal on replicas that applied
    /// the same log prefix.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.encode()))
    }
}

fn user_response(user: &User) -> Response {
    Response::User {
        user: Box::new(user.clone()),
    }
}

pub(crate) fn no_such_user(name: &str) -> Rejection {
    Rejection::NoSuchUser {
        name: name.to_string(),
    }
}

fn server_exists(user: &str, server_name: &str) -> Rejection {
    Rejection::ServerExists {
        user: user.to_string(),
        server_name: server_name.to_string(),
    }
}

fn no_such_server(user: &str, server_name: &str) -> Rejection {
    Rejection::NoSuchServer {
        user: user.to_string(),
        server_name: server_name.to_string(),
    }
}

fn server_active(user: &str, server_name: &str) -> Rejection {
    Rejection::ServerActive {
        user: user.to_string(),
        server_name: server_name.to_string(),
    }
}

fn check_display_name(name: &str) -> Result<(), Rejection> {
    validate_display_name(name).map_err(|why| Rejection::InvalidName {
        name: name.to_string(),
        why,
    })
}

fn already_running(user: &str, server_name: &str) -> Rejection {
    Rejection::AlreadyRunning {
        user: user.to_string(),
        server_name: server_name.to_string(),
    }
}

#[cfg(test)]
mod tests;
