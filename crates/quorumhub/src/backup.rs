//! `quorumhub backup` (offline, from a stopped replica's data dir) and
//! `quorumhub restore` (a backup file into an empty data dir of a new
//! cluster). The online backup is `hubctl backup`.

use std::path::PathBuf;

use anyhow::Context;
use quorumhub_raft::backup::{restore_into, state_of_data_dir, BackupFile, BACKUP_FORMAT};

#[derive(clap::Args, Debug, Clone)]
pub struct BackupArgs {
    /// A stopped replica's data dir (for a cluster that lost its quorum).
    #[arg(long)]
    pub data_dir: PathBuf,
    #[arg(long)]
    pub node_id: u64,
    #[arg(long, default_value = "quorumhub")]
    pub cluster_id: String,
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(clap::Args, Debug, Clone)]
pub struct RestoreArgs {
    /// The backup file (`hubctl backup` or `quorumhub backup`).
    #[arg(long)]
    pub from: PathBuf,
    /// An empty data dir for this member of the new cluster.
    #[arg(long)]
    pub data_dir: PathBuf,
    #[arg(long)]
    pub node_id: u64,
    /// The new cluster's id (may differ from the backup's).
    #[arg(long, default_value = "quorumhub")]
    pub cluster_id: String,
    /// Every member of the new cluster, exactly as each replica will get
    /// it: ID=GRPC_ADDR/HTTP_ADDR, comma-separated or repeated.
    #[arg(long = "peer", required = true)]
    pub peers: Vec<String>,
}

pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let (state, index) = state_of_data_dir(&args.data_dir, &args.cluster_id, args.node_id)
        .await
        .with_context(|| format!("cannot read the state in {}", args.data_dir.display()))?;
    let file = BackupFile {
        format: BACKUP_FORMAT,
        cluster_id: args.cluster_id.clone(),
        index,
        taken_at_ms: quorumhub_core::time::now_ms(),
        state,
    };
    let bytes = file.seal()?;
    quorumhub_raft::datadir::write_atomic(&args.out, &bytes)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!(
        "{}",
        serde_json::json!({
            "out": args.out.display().to_string(),
            "bytes": bytes.len(),
            "index": index,
            "users": file.state.users.len(),
        })
    );
    Ok(())
}

pub async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.from)
        .with_context(|| format!("cannot read {}", args.from.display()))?;
    let file = BackupFile::open(&bytes)
        .with_context(|| format!("{} is not a usable backup", args.from.display()))?;
    let members = quorumhub_hub::config::parse_peers(&args.peers)?;
    let at = restore_into(
        &args.data_dir,
        &args.cluster_id,
        args.node_id,
        &members,
        &file,
    )
    .await
    .with_context(|| format!("cannot restore into {}", args.data_dir.display()))?;
    println!(
        "{}",
        serde_json::json!({
            "data_dir": args.data_dir.display().to_string(),
            "node_id": args.node_id,
            "cluster_id": args.cluster_id,
            "index": at.index,
            "members": members.keys().collect::<Vec<_>>(),
            "users": file.state.users.len(),
        })
    );
    Ok(())
}
