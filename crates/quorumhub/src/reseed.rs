//! `quorumhub reseed`: rebuild a replica whose store is damaged.
//!
//! The damaged data dir is moved aside (never deleted), a fresh one is
//! initialised with the cluster's current term recorded as this replica's
//! vote (so it cannot vote twice in a term it may already have voted in),
//! and the replica, once started, receives the leader's snapshot and log.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use openraft::storage::RaftLogStorage;
use openraft::Vote;
use quorumhub_proto::v1::admin_client::AdminClient;
use quorumhub_proto::v1::{CurrentVoteReply, CurrentVoteRequest, NodeStatusRequest};
use quorumhub_raft::auth::ClientAuth;
use quorumhub_raft::datadir::DataDir;
use quorumhub_raft::log_store::LogStore;

#[derive(clap::Args, Debug, Clone)]
pub struct ReseedArgs {
    /// The damaged replica's data dir (the replica must be stopped).
    #[arg(long)]
    pub data_dir: PathBuf,
    #[arg(long)]
    pub node_id: u64,
    #[arg(long, default_value = "quorumhub")]
    pub cluster_id: String,
    /// gRPC address of a healthy replica of the same cluster.
    #[arg(long)]
    pub from: String,
    /// The cluster secret (or env QUORUMHUB_CLUSTER_SECRET); prefer
    /// --cluster-secret-file.
    #[arg(
        long,
        env = "QUORUMHUB_CLUSTER_SECRET",
        hide_env_values = true,
        default_value = "",
        hide_default_value = true
    )]
    pub cluster_secret: String,
    /// File holding the cluster secret (mode 0600 or stricter).
    #[arg(long, env = "QUORUMHUB_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    #[command(flatten)]
    pub grpc_tls: quorumhub_proto::grpc_tls::GrpcTlsArgs,
}

/// The replica holds an exclusive lock on its data dir while it runs.
fn refuse_if_running(dir: &std::path::Path) -> anyhow::Result<()> {
    let lock = dir.join("quorumhub.lock");
    let Ok(file) = std::fs::OpenOptions::new().write(true).open(&lock) else {
        return Ok(());
    };
    match fs4::fs_std::FileExt::try_lock_exclusive(&file) {
        Ok(true) => Ok(()),
        _ => bail!(
            "{} is in use by a running replica; stop it before re-seeding",
            dir.display()
        ),
    }
}

pub async fn run(args: ReseedArgs) -> anyhow::Result<()> {
    if args.data_dir.exists() {
        refuse_if_running(&args.data_dir)?;
    }
    if let Some(tls) = args.grpc_tls.load()? {
        quorumhub_proto::grpc_tls::install(tls);
    }
    let auth = ClientAuth::new(&args.cluster_secret)?;
    let channel = quorumhub_raft::network::channel(&args.from, Duration::from_secs(2))?;
    let mut peer = AdminClient::with_interceptor(channel, auth);
    let status = peer
        .node_status(NodeStatusRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("peer {} did not answer: {}", args.from, s.message()))?
        .into_inner();
    if status.cluster_id != args.cluster_id {
        bail!(
            "peer {} belongs to cluster {:?}, not {:?}",
            args.from,
            status.cluster_id,
            args.cluster_id
        );
    }
    if !status.members.iter().any(|m| m.id == args.node_id) {
        bail!(
            "node {} is not a member of the cluster; add it with `hubctl members add` instead",
            args.node_id
        );
    }
    if !status.has_leader {
        bail!("the cluster has no leader right now; re-seed once it has one");
    }

    // Before anything is touched: the leader's vote and snapshot.
    let view = leader_view_retrying(&args, status.clone()).await.context(
        "nothing was changed: reseed needs a leader that answers and every other replica caught up",
    )?;
    let vote = view.vote;

    let dir = &args.data_dir;
    if dir.exists() {
        refuse_if_running(dir)?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let name = dir
            .file_name()
            .context("--data-dir has no final component")?
            .to_string_lossy();
        let aside = dir.with_file_name(format!("{name}.damaged-{stamp}"));
        std::fs::rename(dir, &aside).with_context(|| {
            format!("cannot move {} aside to {}", dir.display(), aside.display())
        })?;
        println!("moved the old data dir to {}", aside.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let data = DataDir::open(dir, &args.cluster_id, args.node_id)?;
    let (log, _) = LogStore::open(&data.raft_dir())?;
    // Recorded as a vote this replica granted to the current leader, never
    // as a committed one: openraft starts a replica whose committed vote
    // names itself as that term's leader.
    log.put_vote(&Vote::new(vote.term, vote.node_id))?;
    // Start from the leader's snapshot, so that the leader only has to send
    // the entries after it (it holds every entry after its own snapshot).
    let seeded = match &view.snapshot {
        Some((bytes, _)) => {
            let at = quorumhub_raft::state_machine::seed_snapshot(&data.snapshot_dir(), bytes)
                .map_err(|e| anyhow::anyhow!("the leader's snapshot does not verify: {e}"))?;
            let mut log = log;
            log.purge(at)
                .await
                .map_err(|e| anyhow::anyhow!("cannot set the purge point: {e}"))?;
            Some(at.index)
        }
        None => None,
    };
    println!(
        "re-seeded {}: vote set to term {} (leader {}){}. Start the replica as before; it catches up from the leader.",
        dir.display(),
        vote.term,
        vote.node_id,
        seeded
            .map(|i| format!(", starting from the leader's snapshot at index {i}"))
            .unwrap_or_default()
    );
    Ok(())
}

/// What the reseed needs from the leader.
struct LeaderView {
    /// The leader's own vote: its term and its id.
    vote: CurrentVoteReply,
    /// Its current snapshot file and the index it covers, if it has one.
    snapshot: Option<(Vec<u8>, u64)>,
}

/// [`leader_view`], asking `--from` again for the leader for up to
/// 10 s: right after an election (or if the leader it named has just gone)
/// the first answer may name a leader that is not there.
async fn leader_view_retrying(
    args: &ReseedArgs,
    mut status: quorumhub_proto::v1::NodeStatusReply,
) -> anyhow::Result<LeaderView> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match leader_view(args, &status).await {
            Ok(found) => return Ok(found),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let auth = ClientAuth::new(&args.cluster_secret)?;
        let channel = quorumhub_raft::network::channel(&args.from, Duration::from_secs(2))?;
        if let Ok(s) = AdminClient::with_interceptor(channel, auth)
            .node_status(NodeStatusRequest {})
            .await
        {
            status = s.into_inner();
        }
    }
}

/// The leader's own status and current snapshot.
async fn leader_view(
    args: &ReseedArgs,
    status: &quorumhub_proto::v1::NodeStatusReply,
) -> anyhow::Result<LeaderView> {
    let leader = status
        .members
        .iter()
        .find(|m| m.id == status.leader_id)
        .context("the leader is not among the members")?;
    let auth = ClientAuth::new(&args.cluster_secret)?;
    let channel = quorumhub_raft::network::channel(&leader.grpc_addr, Duration::from_secs(2))?;
    let mut client =
        AdminClient::with_interceptor(channel, auth).max_decoding_message_size(256 << 20);
    let fail = |s: tonic::Status| {
        anyhow::anyhow!(
            "leader {} at {}: {}",
            leader.id,
            leader.grpc_addr,
            s.message()
        )
    };
    let own = client
        .node_status(NodeStatusRequest {})
        .await
        .map_err(fail)?
        .into_inner();
    if own.role != "leader" {
        anyhow::bail!("node {} no longer leads", leader.id);
    }
    // The vote comes from the leader itself, not from `--from`: right after
    // the re-seeded replica (then the leader) died, another replica can
    // still hold that replica's own vote, and a replica that starts with a
    // committed vote for itself starts as the leader of that old term.
    let vote = client
        .current_vote(CurrentVoteRequest {})
        .await
        .map_err(fail)?
        .into_inner();
    if vote.node_id != leader.id || vote.node_id == args.node_id {
        anyhow::bail!(
            "node {} answered with a vote for node {} in term {}; the leadership is changing",
            leader.id,
            vote.node_id,
            vote.term
        );
    }
    // Every other voter must hold what the leader holds now, which covers
    // every entry the lost disk acknowledged. Otherwise the empty replica
    // could vote for one that lacks such an entry, and an acknowledged
    // write would be lost.
    let target = own.last_log_index;
    let progress = client
        .cluster_status(quorumhub_proto::v1::ClusterStatusRequest {})
        .await
        .map_err(fail)?
        .into_inner();
    for m in status
        .members
        .iter()
        .filter(|m| m.voter && m.id != leader.id && m.id != args.node_id)
    {
        let matched = progress
            .progress
            .iter()
            .find(|p| p.id == m.id && p.has_matched)
            .map(|p| p.matched_index);
        if matched < Some(target) {
            anyhow::bail!(
                "replica {} holds the log up to {} of the leader's {target}: re-seed once every \
                 other replica has caught up (hubctl status: lag 0), or the re-seeded one could \
                 help elect a leader that lacks writes its old disk acknowledged",
                m.id,
                matched
                    .map(|i| i.to_string())
                    .unwrap_or("nothing known".into())
            );
        }
    }
    let reply = client
        .raft_snapshot(quorumhub_proto::v1::RaftSnapshotRequest {})
        .await
        .map_err(fail)?
        .into_inner();
    Ok(LeaderView {
        vote,
        snapshot: (!reply.file.is_empty()).then_some((reply.file, reply.index)),
    })
}
