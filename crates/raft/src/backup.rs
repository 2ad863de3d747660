//! Backups: the whole replicated state at one log index, in a checksummed
//! file, and restoring such a file as the starting point of a new cluster.
//!
//! - Online, a replica writes its applied state after a read barrier
//!   ([`BackupFile::seal`], served by `Admin.Backup`, `hubctl backup`).
//! - Offline, [`state_of_data_dir`] rebuilds the state from a stopped
//!   replica's snapshot plus every entry in its log: how a cluster that lost
//!   its quorum for good is started again from one survivor
//!   (`quorumhub backup --data-dir`). Entries the survivor holds but that
//!   were never committed are included, as etcd's `--force-new-cluster`
//!   does: the survivor's log is the best record left.
//! - [`restore_into`] turns a backup into an empty data dir whose snapshot
//!   is that state and whose membership is the new cluster's. Every member of
//!   the new cluster is restored from the same file, so they all start at the
//!   same log position and elect a leader as usual.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use openraft::storage::RaftLogStorage;
use openraft::{CommittedLeaderId, EntryPayload, LogId, Membership, RaftLogReader};
use quorumhub_state::HubState;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::datadir::DataDir;
use crate::log_store::LogStore;
use crate::state_machine::{check_log_format, write_restored_snapshot, StateMachineStore};
use crate::{Member, NodeId};

/// The backup file's own format.
pub const BACKUP_FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("not a quorumhub backup, or damaged: {0}")]
    Damaged(String),
    #[error("backup format {0} is not understood by this build (it reads format {BACKUP_FORMAT})")]
    Format(u32),
    #[error("{0}")]
    LogFormat(String),
    #[error("{path} is not an empty data dir: restore only into a new, empty one")]
    NotEmpty { path: String },
    #[error("data dir: {0}")]
    DataDir(#[from] crate::datadir::DataDirError),
    #[error("the Raft log: {0}")]
    Log(String),
    #[error("the snapshot: {0}")]
    Snapshot(String),
    #[error("the new cluster needs at least one member")]
    NoMembers,
    #[error("node {0} is not one of the new cluster's members")]
    NotAMember(NodeId),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BackupFile {
    pub format: u32,
    /// The cluster it was taken from (a restore may name another).
    pub cluster_id: String,
    /// The log index the state includes everything up to.
    pub index: u64,
    /// Wall clock of the taking, milliseconds since the epoch.
    pub taken_at_ms: u64,
    pub state: HubState,
}

impl BackupFile {
    pub fn seal(&self) -> Result<Vec<u8>, BackupError> {
        codec::encode(self).map_err(|e| BackupError::Damaged(e.to_string()))
    }

    pub fn open(bytes: &[u8]) -> Result<BackupFile, BackupError> {
        let mut file: BackupFile =
            codec::decode(bytes).map_err(|e| BackupError::Damaged(e.to_string()))?;
        if file.format != BACKUP_FORMAT {
            return Err(BackupError::Format(file.format));
        }
        check_log_format(file.state.cluster_version).map_err(BackupError::LogFormat)?;
        file.state.rebuild_indexes();
        Ok(file)
    }
}

/// The state of a stopped replica: its snapshot, then every entry of its
/// log after it. The replica must not be running (its data dir is locked).
pub async fn state_of_data_dir(
    root: &Path,
    cluster_id: &str,
    node_id: NodeId,
) -> Result<(HubState, u64), BackupError> {
    let dir = DataDir::open(root, cluster_id, node_id)?;
    if dir.fresh {
        return Err(BackupError::Snapshot(format!(
            "{} held no replica's data (it was empty)",
            root.display()
        )));
    }
    let sm = StateMachineStore::open(&dir.snapshot_dir())
        .map_err(|e| BackupError::Snapshot(e.to_string()))?;
    let (mut state, applied) = sm
        .shared()
        .read(|d| (d.state.clone(), d.last_applied.map(|l| l.index)));
    let (mut log, _) =
        LogStore::open(&dir.raft_dir()).map_err(|e| BackupError::Log(e.to_string()))?;
    let last = log
        .get_log_state()
        .await
        .map_err(|e| BackupError::Log(e.to_string()))?
        .last_log_id
        .map(|l| l.index);
    let from = applied.map(|i| i + 1).unwrap_or(0);
    let mut index = applied.unwrap_or(0);
    if let Some(last) = last.filter(|l| *l >= from) {
        let mut reader = log.get_log_reader().await;
        let entries = reader
            .try_get_log_entries(from..=last)
            .await
            .map_err(|e| BackupError::Log(e.to_string()))?;
        for entry in entries {
            index = entry.log_id.index;
            match entry.payload {
                EntryPayload::Normal(req) => {
                    if let quorumhub_state::Command::SetClusterVersion { version } = req.command {
                        check_log_format(version).map_err(BackupError::LogFormat)?;
                    }
                    state.apply(index, &req);
                }
                EntryPayload::Blank | EntryPayload::Membership(_) => state.advance(index),
            }
        }
    }
    Ok((state, index))
}

/// Make the empty data dir `root` the starting point of node `node_id` in a
/// new cluster of `members`, holding `backup`'s state.
pub async fn restore_into(
    root: &Path,
    cluster_id: &str,
    node_id: NodeId,
    members: &BTreeMap<NodeId, Member>,
    backup: &BackupFile,
) -> Result<LogId<NodeId>, BackupError> {
    if members.is_empty() {
        return Err(BackupError::NoMembers);
    }
    if !members.contains_key(&node_id) {
        return Err(BackupError::NotAMember(node_id));
    }
    let dir = DataDir::open(root, cluster_id, node_id)?;
    if !dir.fresh {
        return Err(BackupError::NotEmpty {
            path: root.display().to_string(),
        });
    }
    // Term 0, as openraft's own initial membership entry: the new cluster
    // elects its first leader in term 1. Every member computes the same id.
    let lowest = *members.keys().next().unwrap_or(&node_id);
    let at = LogId::new(CommittedLeaderId::new(0, lowest), backup.index.max(1));
    let voters: BTreeSet<NodeId> = members.keys().copied().collect();
    let membership = Membership::new(vec![voters], members.clone());
    let mut state = backup.state.clone();
    state.advance(at.index);
    write_restored_snapshot(&dir.snapshot_dir(), at, membership, state)
        .map_err(|e| BackupError::Snapshot(e.to_string()))?;
    let (mut log, _) =
        LogStore::open(&dir.raft_dir()).map_err(|e| BackupError::Log(e.to_string()))?;
    log.purge(at)
        .await
        .map_err(|e| BackupError::Log(e.to_string()))?;
    log.save_committed(Some(at))
        .await
        .map_err(|e| BackupError::Log(e.to_string()))?;
    Ok(at)
}
