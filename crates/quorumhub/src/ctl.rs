//! hubctl: the gRPC admin client. Every command prints text by default and
//! JSON with `--output json`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use quorumhub_proto::v1::admin_client::AdminClient;
use quorumhub_proto::v1::*;
use quorumhub_raft::auth::ClientAuth;
use serde_json::{json, Value};
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;

type Client = AdminClient<InterceptedService<Channel, ClientAuth>>;

#[derive(Args, Debug, Clone)]
pub struct CtlArgs {
    /// Hub replica gRPC address(es) to talk to; the first that answers is used.
    #[arg(
        long,
        env = "QUORUMHUB_HUB",
        default_value = "127.0.0.1:7001",
        value_delimiter = ','
    )]
    pub hub: Vec<String>,
    /// Cluster secret (or env QUORUMHUB_CLUSTER_SECRET).
    #[arg(
        long,
        env = "QUORUMHUB_CLUSTER_SECRET",
        hide_env_values = true,
        default_value = "",
        hide_default_value = true
    )]
    pub cluster_secret: String,
    /// File holding the cluster secret (mode 0600 or stricter), e.g.
    /// `.quorumhub-dev/cluster-secret`.
    #[arg(long, env = "QUORUMHUB_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<std::path::PathBuf>,
    /// File holding the admin credential (the hubs' --admin-secret-file;
    /// mode 0600 or stricter): presented (its first line) instead of the
    /// cluster secret. Needed for membership, users, backup and leader
    /// transfer once the hubs have their own admin secret.
    #[arg(long, env = "QUORUMHUB_ADMIN_SECRET_FILE")]
    pub admin_secret_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub grpc_tls: quorumhub_proto::grpc_tls::GrpcTlsArgs,
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
    /// Per-call timeout in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
    #[command(subcommand)]
    pub cmd: CtlCmd,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

#[derive(Subcommand, Debug, Clone)]
pub enum CtlCmd {
    /// Members, leader, term, indexes and each member's lag.
    Status,
    /// Add or remove replicas.
    #[command(subcommand)]
    Members(MembersCmd),
    /// Move leadership to another voter (default: the most up-to-date one).
    TransferLeader {
        #[arg(long)]
        to: Option<u64>,
    },
    /// Manage users.
    #[command(subcommand)]
    Users(UsersCmd),
    /// A digest of each replica's applied state, to check they agree.
    Digest,
    /// Wait until member NODE answers, follows the current leader and has
    /// applied every entry the leader held when the wait began. The step
    /// between two replicas of a rolling upgrade.
    WaitReady {
        node: u64,
        #[arg(long, default_value_t = 60)]
        timeout_s: u64,
    },
    /// Write the whole state, after a read barrier, to a backup file
    /// (restore it with `quorumhub restore`).
    Backup {
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

#[derive(Subcommand, Debug, Clone)]
pub enum MembersCmd {
    /// Add a replica: as a learner first, then, once it has caught up, as a voter.
    Add {
        id: u64,
        #[arg(long)]
        grpc: String,
        #[arg(long)]
        http: String,
        /// Leave it a learner (non-voting).
        #[arg(long)]
        learner: bool,
    },
    /// Remove a replica from the cluster.
    Remove { id: u64 },
}

#[derive(Subcommand, Debug, Clone)]
pub enum UsersCmd {
    List,
    Add {
        name: String,
        #[arg(long)]
        admin: bool,
        /// Also set a password, read as one line from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    Remove {
        name: String,
    },
    /// Set a user's password for browser login, read as one line from
    /// standard input (never from the command line, where `ps` shows it).
    SetPassword {
        name: String,
    },
}

async fn connect(addr: &str, auth: &ClientAuth) -> anyhow::Result<Client> {
    let channel = quorumhub_raft::network::channel(addr, Duration::from_secs(2))
        .with_context(|| format!("bad hub address {addr}"))?;
    Ok(AdminClient::with_interceptor(channel, auth.clone()).max_decoding_message_size(256 << 20))
}

fn req<T>(msg: T, timeout: Duration) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(timeout);
    r
}

fn explain(status: tonic::Status) -> anyhow::Error {
    match status.code() {
        tonic::Code::Unauthenticated => anyhow::anyhow!(
            "{} (check --admin-secret-file, or --cluster-secret-file for hubs in legacy mode)",
            status.message()
        ),
        tonic::Code::PermissionDenied => anyhow::anyhow!(
            "{} (give hubctl --admin-secret-file: the file the hubs have as --admin-secret-file)",
            status.message()
        ),
        tonic::Code::Unavailable => anyhow::anyhow!("hub unavailable: {}", status.message()),
        _ => anyhow::anyhow!("{}: {}", status.code(), status.message()),
    }
}

/// How long a membership change is retried while the hubs answer
/// "unavailable" (no leader known, or leadership moved mid-change).
const MEMBERSHIP_RETRY: Duration = Duration::from_secs(30);

/// `call` again while it fails with `Unavailable`, for up to
/// [`MEMBERSHIP_RETRY`]: a membership change that meets an election (the
/// leader stepped down mid-change, or none is known yet) is retried rather
/// than failed. Only for calls that are safe to repeat: adding a learner
/// that is one already, promoting a voter, and removing a removed member
/// change nothing the second time.
async fn retry_unavailable<T, F, Fut>(mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let deadline = tokio::time::Instant::now() + MEMBERSHIP_RETRY;
    let mut pause = Duration::from_millis(100);
    loop {
        match call().await {
            Err(e)
                if e.code() == tonic::Code::Unavailable
                    && tokio::time::Instant::now() + pause < deadline =>
            {
                eprintln!("hub unavailable ({}); retrying", e.message());
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            r => return r,
        }
    }
}

/// The first address in `--hub` that answers NodeStatus.
async fn first_live(
    args: &CtlArgs,
    auth: &ClientAuth,
    timeout: Duration,
) -> anyhow::Result<(Client, NodeStatusReply)> {
    let mut last = None;
    for addr in &args.hub {
        let mut client = connect(addr, auth).await?;
        match client.node_status(req(NodeStatusRequest {}, timeout)).await {
            Ok(s) => return Ok((client, s.into_inner())),
            Err(e)
                if matches!(
                    e.code(),
                    tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                ) =>
            {
                return Err(explain(e))
            }
            Err(e) => last = Some(format!("{addr}: {}", e.message())),
        }
    }
    bail!(
        "no hub replica answered ({}); check --hub, and if the hubs use mutual TLS give --grpc-tls-cert, --grpc-tls-key and --grpc-tls-ca",
        last.unwrap_or_default()
    )
}

/// What hubctl presents: the first line of --admin-secret-file, else of the
/// cluster secret (hubs in legacy mode accept it for everything).
fn credential(args: &CtlArgs) -> anyhow::Result<ClientAuth> {
    use quorumhub_raft::auth::Role;
    match &args.admin_secret_file {
        Some(path) => {
            let text = quorumhub_proto::secret_file::read_secret_file("--admin-secret-file", path)?;
            ClientAuth::for_role(&text, Role::Admin).context("reading --admin-secret-file")
        }
        None => {
            // `quorumhub ctl` has read the file already; the `hubctl`
            // binary reads it here.
            let secret = quorumhub_proto::secret_file::secret_from(
                Some(args.cluster_secret.as_str()),
                "--cluster-secret (QUORUMHUB_CLUSTER_SECRET)",
                args.cluster_secret_file.as_deref(),
                "--cluster-secret-file",
            )?
            .unwrap_or_else(|| args.cluster_secret.clone());
            if secret.is_empty() {
                anyhow::bail!(
                    "hubctl needs a credential: give --admin-secret-file (or --cluster-secret-file for hubs in legacy mode)"
                );
            }
            ClientAuth::new(&secret).context("reading the cluster secret")
        }
    }
}

pub async fn run(args: CtlArgs) -> anyhow::Result<ExitCode> {
    if let Some(tls) = args.grpc_tls.load().context("loading the gRPC TLS files")? {
        quorumhub_proto::grpc_tls::install(tls);
    }
    let auth = credential(&args)?;
    let timeout = Duration::from_millis(args.timeout_ms);
    let (mut client, me) = first_live(&args, &auth, timeout).await?;
    let out = match &args.cmd {
        CtlCmd::Status => status(&auth, &mut client, me, timeout).await?,
        CtlCmd::Backup { out } => {
            let reply = client
                .backup(req(BackupRequest {}, Duration::from_secs(120)))
                .await
                .map_err(explain)?
                .into_inner();
            // Check what arrived before it replaces anything.
            let file = quorumhub_raft::backup::BackupFile::open(&reply.file)
                .context("the backup the hub sent does not verify")?;
            quorumhub_raft::datadir::write_atomic(out, &reply.file)
                .with_context(|| format!("cannot write {}", out.display()))?;
            json!({
                "out": out.display().to_string(),
                "bytes": reply.file.len(),
                "index": file.index,
                "cluster_id": file.cluster_id,
                "users": file.state.users.len(),
            })
        }
        CtlCmd::WaitReady { node, timeout_s } => {
            wait_ready(
                &auth,
                &mut client,
                &me,
                *node,
                Duration::from_secs(*timeout_s),
                timeout,
            )
            .await?
        }
        CtlCmd::Members(MembersCmd::Add {
            id,
            grpc,
            http,
            learner,
        }) => {
            let member = Member {
                id: *id,
                grpc_addr: grpc.clone(),
                http_addr: http.clone(),
                voter: false,
            };
            let added = retry_unavailable(|| {
                let (mut c, member) = (client.clone(), member.clone());
                async move {
                    c.add_learner(req(
                        AddLearnerRequest {
                            member: Some(member),
                        },
                        Duration::from_secs(120),
                    ))
                    .await
                }
            })
            .await
            .map_err(explain)?
            .into_inner();
            let reply = if *learner {
                added
            } else {
                retry_unavailable(|| {
                    let mut c = client.clone();
                    async move {
                        c.promote_voter(req(MemberRequest { id: *id }, timeout))
                            .await
                    }
                })
                .await
                .map_err(explain)?
                .into_inner()
            };
            members_json(&reply.members, reply.log_index)
        }
        CtlCmd::Members(MembersCmd::Remove { id }) => {
            let reply = retry_unavailable(|| {
                let mut c = client.clone();
                async move {
                    c.remove_member(req(MemberRequest { id: *id }, timeout))
                        .await
                }
            })
            .await
            .map_err(explain)?
            .into_inner();
            members_json(&reply.members, reply.log_index)
        }
        CtlCmd::TransferLeader { to } => {
            let r = client
                .transfer_leader(req(
                    TransferLeaderRequest {
                        target: to.unwrap_or(0),
                    },
                    Duration::from_secs(30),
                ))
                .await
                .map_err(explain)?
                .into_inner();
            json!({"new_leader": r.new_leader, "term": r.term, "elapsed_ms": r.elapsed_ms})
        }
        CtlCmd::Users(UsersCmd::List) => {
            let r = client
                .list_users(req(ListUsersRequest {}, timeout))
                .await
                .map_err(explain)?
                .into_inner();
            json!({"revision": r.revision, "users": r.users.iter().map(user_json).collect::<Vec<_>>()})
        }
        CtlCmd::Users(UsersCmd::Add {
            name,
            admin,
            password_stdin,
        }) => {
            let password = if *password_stdin {
                Some(read_password_line()?)
            } else {
                None
            };
            let r = client
                .add_user(req(
                    AddUserRequest {
                        name: name.clone(),
                        admin: *admin,
                    },
                    timeout,
                ))
                .await
                .map_err(explain)?
                .into_inner();
            if let Some(password) = password {
                set_password(&mut client, name, password, timeout).await?;
            }
            r.user.as_ref().map(user_json).unwrap_or(Value::Null)
        }
        CtlCmd::Users(UsersCmd::SetPassword { name }) => {
            set_password(&mut client, name, read_password_line()?, timeout).await?;
            json!({"password_set": name})
        }
        CtlCmd::Users(UsersCmd::Remove { name }) => {
            client
                .remove_user(req(RemoveUserRequest { name: name.clone() }, timeout))
                .await
                .map_err(explain)?;
            json!({"removed": name})
        }
        CtlCmd::Digest => digest(&auth, me, timeout).await?,
    };
    print(&args, &out);
    Ok(ExitCode::SUCCESS)
}

fn user_json(u: &UserInfo) -> Value {
    json!({"name": u.name, "admin": u.admin, "created": u.created, "server": u.server, "pending": u.pending})
}

fn members_json(members: &[Member], log_index: u64) -> Value {
    json!({
        "log_index": log_index,
        "members": members.iter().map(|m| json!({"id": m.id, "grpc": m.grpc_addr, "http": m.http_addr, "voter": m.voter})).collect::<Vec<_>>()
    })
}

async fn status(
    auth: &ClientAuth,
    client: &mut Client,
    me: NodeStatusReply,
    timeout: Duration,
) -> anyhow::Result<Value> {
    let cluster = client
        .cluster_status(req(ClusterStatusRequest {}, timeout))
        .await
        .map(|r| r.into_inner());
    let mut members = Vec::new();
    for m in &me.members {
        let node = match connect(&m.grpc_addr, auth).await {
            Ok(mut c) => c
                .node_status(req(NodeStatusRequest {}, timeout))
                .await
                .ok()
                .map(|r| r.into_inner()),
            Err(_) => None,
        };
        let progress = cluster
            .as_ref()
            .ok()
            .and_then(|c| c.progress.iter().find(|p| p.id == m.id).cloned());
        members.push(json!({
            "id": m.id,
            "grpc": m.grpc_addr,
            "http": m.http_addr,
            "voter": m.voter,
            "reachable": node.is_some(),
            "role": node.as_ref().map(|n| n.role.clone()),
            "term": node.as_ref().map(|n| n.term),
            "last_log_index": node.as_ref().map(|n| n.last_log_index),
            "applied_index": node.as_ref().map(|n| n.applied_index),
            "snapshot_index": node.as_ref().filter(|n| n.has_snapshot).map(|n| n.snapshot_index),
            "version": node.as_ref().map(|n| n.version.clone()),
            "log_format_version": node.as_ref().map(|n| n.log_format_version),
            "matched_index": progress.as_ref().filter(|p| p.has_matched).map(|p| p.matched_index),
            "lag": progress.as_ref().map(|p| p.lag),
        }));
    }
    let (leader, term, last_log) = match &cluster {
        Ok(c) => (Some(c.leader_id), c.term, c.last_log_index),
        Err(_) => (
            me.has_leader.then_some(me.leader_id),
            me.term,
            me.last_log_index,
        ),
    };
    Ok(json!({
        "cluster_id": me.cluster_id,
        "leader": leader,
        "term": term,
        "last_log_index": last_log,
        "commit_index": cluster.as_ref().ok().map(|c| c.committed_index),
        "voters": me.members.iter().filter(|m| m.voter).count(),
        "cluster_version": me.cluster_version,
        "members": members,
        "error": cluster.err().map(|e| e.message().to_string()),
    }))
}

async fn wait_ready(
    auth: &ClientAuth,
    client: &mut Client,
    me: &NodeStatusReply,
    node: u64,
    limit: Duration,
    timeout: Duration,
) -> anyhow::Result<Value> {
    let started = std::time::Instant::now();
    let Some(member) = me.members.iter().find(|m| m.id == node) else {
        bail!(
            "node {node} is not a member of cluster {} (members: {:?})",
            me.cluster_id,
            me.members.iter().map(|m| m.id).collect::<Vec<_>>()
        );
    };
    let mut target = None;
    let mut why = String::from("no answer yet");
    while started.elapsed() < limit {
        let cluster = client
            .cluster_status(req(ClusterStatusRequest {}, timeout))
            .await
            .map(|r| r.into_inner());
        match cluster {
            Err(e) => why = format!("no leader: {}", e.message()),
            Ok(c) => {
                let target = *target.get_or_insert(c.last_log_index);
                let status = match connect(&member.grpc_addr, auth).await {
                    Ok(mut n) => n
                        .node_status(req(NodeStatusRequest {}, timeout))
                        .await
                        .map(|r| r.into_inner())
                        .map_err(|e| e.message().to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match status {
                    Err(e) => why = format!("node {node} does not answer: {e}"),
                    Ok(s) if !(s.has_leader && s.leader_id == c.leader_id) => {
                        why = format!(
                            "node {node} does not follow leader {} yet (it sees {})",
                            c.leader_id,
                            if s.has_leader {
                                s.leader_id.to_string()
                            } else {
                                "none".into()
                            }
                        )
                    }
                    Ok(s) if s.applied_index < target => {
                        why = format!("node {node} has applied {} of {target}", s.applied_index)
                    }
                    Ok(s) => {
                        return Ok(json!({
                            "node": node,
                            "leader": c.leader_id,
                            "applied_index": s.applied_index,
                            "log_format_version": s.log_format_version,
                            "cluster_version": s.cluster_version,
                            "waited_ms": started.elapsed().as_millis() as u64,
                        }))
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("node {node} not ready after {limit:?}: {why}")
}

async fn digest(
    auth: &ClientAuth,
    me: NodeStatusReply,
    timeout: Duration,
) -> anyhow::Result<Value> {
    let mut replicas = Vec::new();
    for m in &me.members {
        let d = match connect(&m.grpc_addr, auth).await {
            Ok(mut c) => c
                .state_digest(req(StateDigestRequest {}, timeout))
                .await
                .ok()
                .map(|r| r.into_inner()),
            Err(_) => None,
        };
        replicas.push(json!({
            "id": m.id,
            "applied_index": d.as_ref().map(|d| d.applied_index),
            "digest": d.as_ref().map(|d| d.digest.clone()),
            "users": d.as_ref().map(|d| d.users),
            "routes": d.as_ref().map(|d| d.routes),
        }));
    }
    Ok(json!({"replicas": replicas}))
}

fn print(args: &CtlArgs, v: &Value) {
    if args.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        return;
    }
    match &args.cmd {
        CtlCmd::Status => {
            println!(
                "cluster {}  leader {}  term {}  last log {}  voters {}  cluster version {}",
                v["cluster_id"].as_str().unwrap_or("?"),
                v["leader"],
                v["term"],
                v["last_log_index"],
                v["voters"],
                v["cluster_version"]
            );
            if let Some(e) = v["error"].as_str() {
                println!("warning: {e}");
            }
            println!(
                "{:<4} {:<9} {:<6} {:<10} {:<10} {:<8} {:<8} {:<7} GRPC",
                "ID", "ROLE", "VOTER", "APPLIED", "MATCHED", "LAG", "TERM", "FORMAT"
            );
            for m in v["members"].as_array().into_iter().flatten() {
                let s = |k: &str| match &m[k] {
                    Value::Null => "-".to_string(),
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                println!(
                    "{:<4} {:<9} {:<6} {:<10} {:<10} {:<8} {:<8} {:<7} {}",
                    s("id"),
                    if m["reachable"] == json!(false) {
                        "down".into()
                    } else {
                        s("role")
                    },
                    s("voter"),
                    s("applied_index"),
                    s("matched_index"),
                    s("lag"),
                    s("term"),
                    s("log_format_version"),
                    s("grpc")
                );
            }
        }
        CtlCmd::Users(UsersCmd::List) => {
            for u in v["users"].as_array().into_iter().flatten() {
                println!(
                    "{}{}{}",
                    u["name"].as_str().unwrap_or_default(),
                    if u["admin"] == json!(true) {
                        " (admin)"
                    } else {
                        ""
                    },
                    match u["server"].as_str() {
                        Some(s) if !s.is_empty() => format!("  running at {s}"),
                        _ => String::new(),
                    }
                );
            }
        }
        _ => println!("{}", serde_json::to_string_pretty(v).unwrap_or_default()),
    }
}

/// One line from standard input, without its line ending.
fn read_password_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| anyhow::anyhow!("cannot read the password from standard input: {e}"))?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        anyhow::bail!("no password on standard input (pipe it in: echo \"$PW\" | hubctl users set-password NAME)");
    }
    Ok(password)
}

async fn set_password(
    client: &mut Client,
    name: &str,
    password: String,
    timeout: Duration,
) -> anyhow::Result<()> {
    client
        .set_password(req(
            SetPasswordRequest {
                name: name.to_string(),
                password,
            },
            timeout,
        ))
        .await
        .map_err(explain)?;
    Ok(())
}
