//! Credentials on every RPC: clients attach one, servers check it before
//! any handler runs, and which credential a method accepts is one table,
//! [`ACCESS`].
//!
//! Three roles, each with its own secret (or secrets, one per line, during
//! a rotation):
//!
//! * `replica`: the cluster secret (`--cluster-secret-file`): Raft traffic,
//!   writes and read-index forwarded between replicas, status.
//! * `proxy` (`--proxy-secret-file`): the route watch, nothing else.
//! * `admin` (`--admin-secret-file`): hubctl: membership, users, backup,
//!   leader transfer, status.
//!
//! A replica given no proxy or no admin secret file leaves that role to the
//! cluster secret (the legacy mode of releases that had one secret): a
//! cluster upgraded replica by replica keeps working, and the split takes
//! effect once the operator configures the files.

use std::convert::Infallible;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use quorumhub_proto::AUTH_METADATA;
use subtle::ConstantTimeEq;
use tonic::body::Body;
use tonic::codegen::{http, BoxFuture, Service};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::server::NamedService;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Shortest secret accepted; shorter ones are refused at start-up.
pub const MIN_SECRET_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the {0} is empty; set its file (--cluster-secret-file, --proxy-secret-file or --admin-secret-file)")]
    Empty(&'static str),
    #[error("a secret of the {0} is {1} characters; use at least {MIN_SECRET_LEN} (e.g. `openssl rand -hex 32`)")]
    TooShort(&'static str, usize),
    #[error("the {0} must be printable ASCII without spaces, one secret per line")]
    NotAscii(&'static str),
}

/// What a credential may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Replica,
    Proxy,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Replica, Role::Proxy, Role::Admin];

    const fn bit(self) -> u8 {
        match self {
            Role::Replica => 1,
            Role::Proxy => 2,
            Role::Admin => 4,
        }
    }

    /// How errors and logs name this role's credential.
    pub fn credential(self) -> &'static str {
        match self {
            Role::Replica => "replica credential (the cluster secret, --cluster-secret-file)",
            Role::Proxy => "proxy credential (--proxy-secret-file)",
            Role::Admin => "admin credential (--admin-secret-file)",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Replica => "replica",
            Role::Proxy => "proxy",
            Role::Admin => "admin",
        }
    }
}

/// A set of roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Roles(u8);

impl Roles {
    pub const NONE: Roles = Roles(0);
    pub const REPLICA: Roles = Roles(Role::Replica.bit());
    pub const PROXY: Roles = Roles(Role::Proxy.bit());
    pub const ADMIN: Roles = Roles(Role::Admin.bit());
    pub const REPLICA_OR_ADMIN: Roles = Roles(Role::Replica.bit() | Role::Admin.bit());

    pub fn contains(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    pub fn intersects(self, other: Roles) -> bool {
        self.0 & other.0 != 0
    }

    pub fn with(self, role: Role) -> Roles {
        Roles(self.0 | role.bit())
    }

    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |r| self.contains(*r))
    }

    /// "the admin credential (...) or the replica credential (...)".
    fn describe(self) -> String {
        let names: Vec<&str> = self.iter().map(Role::credential).collect();
        if names.is_empty() {
            "no credential (this method is not in the access table)".into()
        } else {
            format!("the {}", names.join(" or the "))
        }
    }
}

/// Which credential each RPC accepts: every method of every service in
/// proto/quorumhub.proto, by its gRPC path. A method missing here is
/// refused to everyone (and a unit test fails).
pub const ACCESS: &[(&str, Roles)] = &[
    // Consensus traffic between replicas.
    ("/quorumhub.v1.Raft/AppendEntries", Roles::REPLICA),
    ("/quorumhub.v1.Raft/Vote", Roles::REPLICA),
    ("/quorumhub.v1.Raft/InstallSnapshot", Roles::REPLICA),
    ("/quorumhub.v1.Raft/PreVote", Roles::REPLICA),
    // Status: replicas ask each other (preflight, bootstrap, the cluster
    // version, the web admin page), hubctl shows it.
    ("/quorumhub.v1.Admin/NodeStatus", Roles::REPLICA_OR_ADMIN),
    ("/quorumhub.v1.Admin/ClusterStatus", Roles::REPLICA_OR_ADMIN),
    // Writes and read-index forwarded by a follower to its leader. Any
    // command can be proposed here, so only replicas may.
    ("/quorumhub.v1.Admin/Propose", Roles::REPLICA),
    ("/quorumhub.v1.Admin/ReadIndex", Roles::REPLICA),
    // Membership and leadership: hubctl. A follower forwards these to the
    // leader with the caller's own credential, never its own.
    ("/quorumhub.v1.Admin/AddLearner", Roles::ADMIN),
    ("/quorumhub.v1.Admin/PromoteVoter", Roles::ADMIN),
    ("/quorumhub.v1.Admin/RemoveMember", Roles::ADMIN),
    ("/quorumhub.v1.Admin/TransferLeader", Roles::ADMIN),
    // Sent by the leader to the target of a leader transfer.
    ("/quorumhub.v1.Admin/Campaign", Roles::REPLICA),
    // Users: hubctl.
    ("/quorumhub.v1.Admin/ListUsers", Roles::ADMIN),
    ("/quorumhub.v1.Admin/AddUser", Roles::ADMIN),
    ("/quorumhub.v1.Admin/RemoveUser", Roles::ADMIN),
    ("/quorumhub.v1.Admin/SetPassword", Roles::ADMIN),
    // Comparing replicas: hubctl digest.
    ("/quorumhub.v1.Admin/StateDigest", Roles::REPLICA_OR_ADMIN),
    // Re-seeding a damaged replica (`quorumhub reseed`, run on the
    // replica's host with its cluster secret).
    ("/quorumhub.v1.Admin/CurrentVote", Roles::REPLICA),
    ("/quorumhub.v1.Admin/RaftSnapshot", Roles::REPLICA),
    // The whole state, cookie secret included: operators only.
    ("/quorumhub.v1.Admin/Backup", Roles::ADMIN),
    // What proxies do, and all they may do.
    ("/quorumhub.v1.Routes/Watch", Roles::PROXY),
];

/// The roles that may call `path` (a gRPC path, `/package.Service/Method`).
pub fn allowed(path: &str) -> Roles {
    ACCESS
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, r)| *r)
        .unwrap_or(Roles::NONE)
}

/// Checks one secret.
pub fn validate_secret(secret: &str) -> Result<(), SecretError> {
    validate_secret_of(secret, Role::Replica)
}

fn validate_secret_of(secret: &str, role: Role) -> Result<(), SecretError> {
    let what = role.credential();
    if secret.is_empty() {
        return Err(SecretError::Empty(what));
    }
    if !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(SecretError::NotAscii(what));
    }
    if secret.len() < MIN_SECRET_LEN {
        return Err(SecretError::TooShort(what, secret.len()));
    }
    Ok(())
}

/// The secrets of a credential's text (a file's content or a flag's
/// value), one per line, each checked; at least one.
pub fn secrets_of(text: &str, role: Role) -> Result<Vec<String>, SecretError> {
    let lines = quorumhub_proto::secret_file::secret_lines(text);
    if lines.is_empty() {
        return Err(SecretError::Empty(role.credential()));
    }
    lines
        .into_iter()
        .map(|s| validate_secret_of(s, role).map(|()| s.to_owned()))
        .collect()
}

/// Attaches `authorization: Bearer <secret>` to outgoing calls: the first
/// secret of its credential. Clones share the secret, so [`ClientAuth::set`]
/// (on a reload) changes what every clone presents from its next call on.
/// A call that already carries a credential (one a replica forwards on a
/// caller's behalf) keeps it.
#[derive(Clone)]
pub struct ClientAuth {
    header: Arc<RwLock<MetadataValue<Ascii>>>,
}

fn header_of(text: &str, role: Role) -> Result<MetadataValue<Ascii>, SecretError> {
    let first = secrets_of(text, role)?.remove(0);
    format!("Bearer {first}")
        .parse()
        .map_err(|_| SecretError::NotAscii(role.credential()))
}

impl ClientAuth {
    /// Presents the first secret of `text` (one per line).
    pub fn new(text: &str) -> Result<ClientAuth, SecretError> {
        Self::for_role(text, Role::Replica)
    }

    pub fn for_role(text: &str, role: Role) -> Result<ClientAuth, SecretError> {
        Ok(ClientAuth {
            header: Arc::new(RwLock::new(header_of(text, role)?)),
        })
    }

    /// Present the first secret of `text` from now on.
    pub fn set(&self, text: &str, role: Role) -> Result<(), SecretError> {
        let header = header_of(text, role)?;
        *self.header.write().unwrap_or_else(|p| p.into_inner()) = header;
        Ok(())
    }

    pub fn header(&self) -> MetadataValue<Ascii> {
        self.header
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Interceptor for ClientAuth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if !req.metadata().contains_key(AUTH_METADATA) {
            req.metadata_mut().insert(AUTH_METADATA, self.header());
        }
        Ok(req)
    }
}

/// The secrets a server accepts, each with the roles it grants.
#[derive(Debug)]
pub struct Keyring {
    keys: Vec<(Vec<u8>, Roles)>,
    /// Roles that fell back to the cluster secret (no file of their own).
    legacy: Vec<Role>,
    /// Pairs of roles whose files share a secret.
    shared: Vec<(Role, Role)>,
}

impl Keyring {
    /// `replica` is the cluster secret's text; `proxy` and `admin` those
    /// of the role files, `None` when not configured (that role is then
    /// granted to the cluster secret). Every text may hold several
    /// secrets, one per line; a secret in two roles' texts has both roles
    /// (see [`Keyring::shared_roles`]).
    pub fn new(
        replica: &str,
        proxy: Option<&str>,
        admin: Option<&str>,
    ) -> Result<Keyring, SecretError> {
        let mut legacy = Vec::new();
        let mut replica_roles = Roles::REPLICA;
        let mut own: Vec<(Role, Vec<String>)> =
            vec![(Role::Replica, secrets_of(replica, Role::Replica)?)];
        for (role, text) in [(Role::Proxy, proxy), (Role::Admin, admin)] {
            match text {
                Some(t) => own.push((role, secrets_of(t, role)?)),
                None => {
                    legacy.push(role);
                    replica_roles = replica_roles.with(role);
                }
            }
        }
        // A secret in two roles' files has both roles: how a cluster moves
        // from legacy mode to the split without downtime (the role files
        // start out holding the cluster secret, then each is rotated to a
        // secret of its own). Reported, so that it is not left so.
        let mut shared = Vec::new();
        for (i, (a, sa)) in own.iter().enumerate() {
            for (b, sb) in &own[i + 1..] {
                if sa.iter().any(|s| sb.contains(s)) {
                    shared.push((*a, *b));
                }
            }
        }
        let mut keys: Vec<(Vec<u8>, Roles)> = Vec::new();
        for (role, secrets) in own {
            let roles = if role == Role::Replica {
                replica_roles
            } else {
                Roles::NONE.with(role)
            };
            for s in secrets {
                let key = format!("Bearer {s}").into_bytes();
                match keys.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, r)) => *r = Roles(r.0 | roles.0),
                    None => keys.push((key, roles)),
                }
            }
        }
        Ok(Keyring {
            keys,
            legacy,
            shared,
        })
    }

    /// Pairs of roles whose files share a secret (which then has both).
    pub fn shared_roles(&self) -> &[(Role, Role)] {
        &self.shared
    }

    /// Roles left to the cluster secret because their file is not given.
    pub fn legacy_roles(&self) -> &[Role] {
        &self.legacy
    }

    /// The roles `given` (the whole `authorization` value) grants. Every
    /// key is compared, in constant time, whatever matched before.
    pub fn roles(&self, given: &[u8]) -> Roles {
        let mut roles = Roles::NONE;
        for (key, r) in &self.keys {
            let same = key.len() == given.len() && bool::from(given.ct_eq(key));
            if same {
                roles = Roles(roles.0 | r.0);
            }
        }
        roles
    }

    /// Ok with the caller's roles, or the status to refuse `path` with.
    pub fn check(&self, path: &str, given: Option<&[u8]>) -> Result<Roles, Status> {
        let roles = self.roles(given.unwrap_or_default());
        if roles == Roles::NONE {
            return Err(Status::unauthenticated(if given.is_none() {
                "no credential: present the replica, proxy or admin secret of this cluster as `authorization: Bearer <secret>`".to_string()
            } else {
                "unknown credential: this cluster accepts none such; check the secret file this client reads (--cluster-secret-file, --proxy-secret-file or --admin-secret-file) against the hubs' ones".to_string()
            }));
        }
        let needed = allowed(path);
        if roles.intersects(needed) {
            return Ok(roles);
        }
        let presented: Vec<&str> = roles.iter().map(Role::name).collect();
        Err(Status::permission_denied(format!(
            "{path} needs {}; this call presented the {} credential",
            needed.describe(),
            presented.join("/")
        )))
    }
}

/// The server side: the current [`Keyring`], replaceable on a reload
/// (calls already admitted are not affected).
#[derive(Clone)]
pub struct ServerAuth {
    keyring: Arc<RwLock<Arc<Keyring>>>,
}

impl ServerAuth {
    pub fn new(keyring: Keyring) -> ServerAuth {
        ServerAuth {
            keyring: Arc::new(RwLock::new(Arc::new(keyring))),
        }
    }

    /// Legacy mode: one secret (or several, one per line) for every role.
    pub fn shared(secret: &str) -> Result<ServerAuth, SecretError> {
        Ok(ServerAuth::new(Keyring::new(secret, None, None)?))
    }

    pub fn replace(&self, keyring: Keyring) {
        *self.keyring.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keyring);
    }

    pub fn keyring(&self) -> Arc<Keyring> {
        self.keyring
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Wrap a tonic service so that every call is checked against
    /// [`ACCESS`] before it reaches the service.
    pub fn guard<S>(&self, inner: S) -> Guard<S> {
        Guard {
            auth: self.clone(),
            inner,
        }
    }
}

/// A tonic service behind [`ServerAuth`]: refused calls get
/// UNAUTHENTICATED (no or unknown credential) or PERMISSION_DENIED (a
/// credential of a role the method does not accept), logged.
#[derive(Clone)]
pub struct Guard<S> {
    auth: ServerAuth,
    inner: S,
}

impl<S: NamedService> NamedService for Guard<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for Guard<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<http::Response<Body>, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let given = req.headers().get(AUTH_METADATA).map(|v| v.as_bytes());
        match self.auth.keyring().check(req.uri().path(), given) {
            Ok(roles) => {
                let mut req = req;
                req.extensions_mut().insert(roles);
                let fut = self.inner.call(req);
                Box::pin(fut)
            }
            Err(status) => {
                tracing::warn!(
                    method = req.uri().path(),
                    code = ?status.code(),
                    has_credentials = given.is_some(),
                    "refused an RPC: {}",
                    status.message()
                );
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const R: &str = "replica-secret-0123456789";
    const P: &str = "proxy-secret-0123456789";
    const A: &str = "admin-secret-0123456789";

    fn bearer(s: &str) -> Vec<u8> {
        format!("Bearer {s}").into_bytes()
    }

    #[test]
    fn secrets_as_data() {
        assert!(validate_secret("0123456789abcdef").is_ok());
        assert!(matches!(validate_secret(""), Err(SecretError::Empty(_))));
        assert!(matches!(
            validate_secret("short"),
            Err(SecretError::TooShort(_, 5))
        ));
        assert!(matches!(
            validate_secret("has a space in it!"),
            Err(SecretError::NotAscii(_))
        ));
        assert_eq!(
            secrets_of("new-0123456789abcdef\nold-0123456789abcdef\n", Role::Admin).expect("two"),
            vec!["new-0123456789abcdef", "old-0123456789abcdef"]
        );
        assert!(secrets_of("ok-0123456789abcdef\nshort\n", Role::Admin).is_err());
        assert!(secrets_of("\n# nothing\n", Role::Admin).is_err());
    }

    /// Every RPC of every service in the .proto has exactly one entry: a
    /// new RPC without one fails here.
    #[test]
    fn access_table_lists_every_rpc_once() {
        let proto = include_str!("../../../proto/quorumhub.proto");
        let mut service = None;
        let mut in_proto = BTreeSet::new();
        for line in proto.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("service ") {
                service = rest.split_whitespace().next().map(str::to_owned);
            } else if let Some(rest) = line.strip_prefix("rpc ") {
                let method = rest.split('(').next().expect("rpc name").trim();
                let service = service.as_deref().expect("rpc outside a service");
                in_proto.insert(format!("/quorumhub.v1.{service}/{method}"));
            }
        }
        assert!(in_proto.len() > 20, "parsed {in_proto:?}");
        let in_table: Vec<&str> = ACCESS.iter().map(|(p, _)| *p).collect();
        let unique: BTreeSet<String> = in_table.iter().map(|s| s.to_string()).collect();
        assert_eq!(unique.len(), in_table.len(), "a method listed twice");
        assert_eq!(
            unique, in_proto,
            "ACCESS must list exactly the RPCs of the .proto"
        );
        for (path, roles) in ACCESS {
            assert_ne!(*roles, Roles::NONE, "{path} accepts nobody");
        }
    }

    /// The table's decisions that matter most, as data.
    #[test]
    fn who_may_call_what() {
        let k = Keyring::new(R, Some(P), Some(A)).expect("keyring");
        let code = |path: &str, s: Option<&str>| {
            let given = s.map(bearer);
            k.check(path, given.as_deref())
                .map(|_| ())
                .map_err(|e| e.code())
        };
        use tonic::Code::{PermissionDenied as Denied, Unauthenticated as Unauth};
        let cases: &[(&str, &str, Result<(), tonic::Code>)] = &[
            ("/quorumhub.v1.Admin/Propose", P, Err(Denied)),
            ("/quorumhub.v1.Admin/Backup", P, Err(Denied)),
            ("/quorumhub.v1.Raft/AppendEntries", P, Err(Denied)),
            ("/quorumhub.v1.Admin/NodeStatus", P, Err(Denied)),
            ("/quorumhub.v1.Routes/Watch", P, Ok(())),
            ("/quorumhub.v1.Admin/Backup", A, Ok(())),
            ("/quorumhub.v1.Admin/AddLearner", A, Ok(())),
            ("/quorumhub.v1.Admin/Propose", A, Err(Denied)),
            ("/quorumhub.v1.Raft/Vote", A, Err(Denied)),
            ("/quorumhub.v1.Routes/Watch", A, Err(Denied)),
            ("/quorumhub.v1.Admin/NodeStatus", A, Ok(())),
            ("/quorumhub.v1.Admin/Propose", R, Ok(())),
            ("/quorumhub.v1.Raft/AppendEntries", R, Ok(())),
            ("/quorumhub.v1.Admin/Backup", R, Err(Denied)),
            ("/quorumhub.v1.Admin/AddUser", R, Err(Denied)),
            ("/quorumhub.v1.Routes/Watch", R, Err(Denied)),
            ("/quorumhub.v1.Admin/NodeStatus", R, Ok(())),
            ("/quorumhub.v1.Admin/Unknown", R, Err(Denied)),
            (
                "/quorumhub.v1.Admin/NodeStatus",
                "wrong-secret-0123456789",
                Err(Unauth),
            ),
        ];
        for (path, secret, want) in cases {
            assert_eq!(code(path, Some(secret)), *want, "{path} with {secret}");
        }
        assert_eq!(code("/quorumhub.v1.Routes/Watch", None), Err(Unauth));
        let e = k
            .check("/quorumhub.v1.Admin/Backup", Some(&bearer(P)))
            .expect_err("denied");
        assert!(
            e.message().contains("--admin-secret-file"),
            "{}",
            e.message()
        );
        assert!(e.message().contains("proxy credential"), "{}", e.message());
    }

    #[test]
    fn legacy_mode_gives_the_cluster_secret_every_missing_role() {
        let k = Keyring::new(R, None, None).expect("keyring");
        assert_eq!(k.legacy_roles(), &[Role::Proxy, Role::Admin]);
        for (path, _) in ACCESS {
            assert!(k.check(path, Some(&bearer(R))).is_ok(), "{path}");
        }
        // Only the admin role split: the cluster secret still watches routes.
        let k = Keyring::new(R, None, Some(A)).expect("keyring");
        assert!(k
            .check("/quorumhub.v1.Routes/Watch", Some(&bearer(R)))
            .is_ok());
        assert!(k
            .check("/quorumhub.v1.Admin/Backup", Some(&bearer(R)))
            .is_err());
        assert!(k
            .check("/quorumhub.v1.Admin/Backup", Some(&bearer(A)))
            .is_ok());
    }

    /// Moving from legacy mode without downtime: role files that still
    /// hold the cluster secret keep it working in those roles.
    #[test]
    fn a_secret_in_two_roles_files_has_both_and_is_reported() {
        let k = Keyring::new(R, Some(&format!("{P}\n{R}")), Some(R)).expect("keyring");
        assert!(k.legacy_roles().is_empty());
        assert_eq!(
            k.shared_roles(),
            &[
                (Role::Replica, Role::Proxy),
                (Role::Replica, Role::Admin),
                (Role::Proxy, Role::Admin)
            ]
        );
        for (path, _) in ACCESS {
            assert!(k.check(path, Some(&bearer(R))).is_ok(), "{path}");
        }
        assert!(k
            .check("/quorumhub.v1.Routes/Watch", Some(&bearer(P)))
            .is_ok());
        assert!(k
            .check("/quorumhub.v1.Admin/Backup", Some(&bearer(P)))
            .is_err());
        let k = Keyring::new(R, Some(P), Some(A)).expect("keyring");
        assert!(k.shared_roles().is_empty());
    }

    #[test]
    fn every_line_is_accepted_the_first_is_presented() {
        let old = "old-admin-secret-0123456789";
        let k = Keyring::new(R, Some(P), Some(&format!("{A}\n{old}\n"))).expect("keyring");
        for s in [A, old] {
            assert!(k
                .check("/quorumhub.v1.Admin/Backup", Some(&bearer(s)))
                .is_ok());
        }
        let client = ClientAuth::for_role(&format!("{A}\n{old}"), Role::Admin).expect("client");
        assert_eq!(client.header().as_bytes(), bearer(A).as_slice());
        let clone = client.clone();
        client.set(old, Role::Admin).expect("set");
        assert_eq!(clone.header().as_bytes(), bearer(old).as_slice());
    }

    #[test]
    fn server_accepts_only_the_exact_secret() {
        let secret = "0123456789abcdef-secret";
        let server = ServerAuth::shared(secret).expect("keyring");
        let mut client = ClientAuth::new(secret).expect("ascii");
        let ok = client.call(Request::new(())).expect("attaches");
        let given = ok.metadata().get(AUTH_METADATA).map(|v| v.as_bytes());
        assert!(server
            .keyring()
            .check("/quorumhub.v1.Admin/NodeStatus", given)
            .is_ok());
        for wrong in ["0123456789abcdef-secreT", "0123456789abcdef-secret2", "x"] {
            let w = bearer(wrong);
            assert_eq!(
                server
                    .keyring()
                    .check("/quorumhub.v1.Admin/NodeStatus", Some(&w))
                    .map(|_| ())
                    .map_err(|s| s.code()),
                Err(tonic::Code::Unauthenticated),
                "{wrong}"
            );
        }
        // A forwarded call keeps the caller's credential.
        let mut fwd = Request::new(());
        fwd.metadata_mut()
            .insert(AUTH_METADATA, "Bearer caller".parse().expect("ascii"));
        let fwd = client.call(fwd).expect("attaches");
        assert_eq!(
            fwd.metadata().get(AUTH_METADATA).map(|v| v.as_bytes()),
            Some(&b"Bearer caller"[..])
        );
    }
}
