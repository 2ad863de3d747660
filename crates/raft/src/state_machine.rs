//! The state machine: committed entries applied to an in-memory
//! [`HubState`], snapshots on disk.
//!
//! The state itself is not written on every apply: the log is the durable
//! record, and a restarted replica rebuilds its state from the latest
//! snapshot plus the committed log after it. Snapshots are checksummed and
//! written atomically (temp file, fsync, rename).

use std::collections::VecDeque;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageIOError,
    StoredMembership,
};
use quorumhub_state::{Command, HubState, Request, Response, RouteEvent, LOG_FORMAT_VERSION};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::codec;
use crate::datadir::write_atomic;
use crate::{Member, NodeId, StorageResult, TypeConfig};

const SNAPSHOT_FILE: &str = "current.snap";

/// How many route changes a replica keeps for watchers to resume from;
/// a watcher further behind gets a full snapshot of the table instead.
pub const ROUTE_LOG_CAPACITY: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot {path} is damaged: {detail}. Re-seed this replica from a peer: quorumhub reseed --data-dir <dir> --from <peer grpc addr>")]
    Damaged { path: String, detail: String },
    #[error("cannot read snapshot {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("snapshot {path}: {detail}")]
    TooNew { path: String, detail: String },
}

/// A build may only apply a log whose agreed format it understands: once
/// the cluster version is above this build's [`LOG_FORMAT_VERSION`], later
/// entries may hold commands it cannot decode, so it must stop applying.
pub fn check_log_format(cluster_version: u32) -> Result<(), String> {
    if cluster_version > LOG_FORMAT_VERSION {
        return Err(format!(
            "the cluster has moved to log format {cluster_version}, but this build of quorumhub \
             understands only up to {LOG_FORMAT_VERSION}. Run this replica with the newer \
             release the others run (a cluster cannot be downgraded)"
        ));
    }
    Ok(())
}

/// Recent route changes, for watchers that resume from a revision.
#[derive(Debug, Default)]
pub struct RouteLog {
    /// Changes with a revision <= base are no longer held.
    base: u64,
    events: VecDeque<(u64, RouteEvent)>,
}

impl RouteLog {
    fn push(&mut self, revision: u64, event: RouteEvent) {
        self.events.push_back((revision, event));
        while self.events.len() > ROUTE_LOG_CAPACITY {
            if let Some((rev, _)) = self.events.pop_front() {
                self.base = rev;
            }
        }
    }

    fn reset(&mut self, base: u64) {
        self.base = base;
        self.events.clear();
    }

    /// Changes after `revision`, or `None` when they are no longer all held
    /// (the watcher needs a snapshot).
    pub fn since(&self, revision: u64) -> Option<Vec<(u64, RouteEvent)>> {
        if revision < self.base {
            return None;
        }
        Some(
            self.events
                .iter()
                .filter(|(rev, _)| *rev > revision)
                .cloned()
                .collect(),
        )
    }
}

/// Everything the state machine holds, behind one lock so that a reader
/// always sees state, membership and route log at the same revision.
#[derive(Debug, Default)]
pub struct SmData {
    pub state: HubState,
    pub last_applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, Member>,
    pub route_log: RouteLog,
}

/// Shared between the state machine (writer) and the hub (readers).
#[derive(Debug)]
pub struct SmShared {
    pub data: RwLock<SmData>,
    /// The revision (last applied index) after each apply or install.
    pub revision: watch::Sender<u64>,
    current: Mutex<Option<StoredSnapshot>>,
    snapshot_dir: PathBuf,
}

impl SmShared {
    /// Run `f` with a consistent view of the state.
    pub fn read<T>(&self, f: impl FnOnce(&SmData) -> T) -> T {
        let guard = self.data.read().unwrap_or_else(|p| p.into_inner());
        f(&guard)
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }

    /// The current snapshot as stored (sealed file bytes) and the index it
    /// covers, if one was built or installed.
    pub fn current_snapshot(&self) -> Option<(Vec<u8>, u64)> {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        current.as_ref().map(|s| {
            (
                s.bytes.clone(),
                s.meta.last_log_id.map(|l| l.index).unwrap_or(0),
            )
        })
    }

    /// The current snapshot's size in bytes and the index it covers.
    pub fn current_snapshot_size(&self) -> Option<(u64, u64)> {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        current.as_ref().map(|s| {
            (
                s.bytes.len() as u64,
                s.meta.last_log_id.map(|l| l.index).unwrap_or(0),
            )
        })
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, SmData> {
        self.data.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Clone, Debug)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, Member>,
    /// The sealed file content, also what is sent to peers.
    bytes: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<NodeId, Member>,
    state: HubState,
}

fn decode_snapshot(bytes: &[u8]) -> Result<SnapshotFile, String> {
    let mut file: SnapshotFile = codec::decode(bytes).map_err(|e| e.to_string())?;
    file.state.rebuild_indexes();
    Ok(file)
}

pub struct StateMachineStore {
    shared: Arc<SmShared>,
}

impl StateMachineStore {
    /// Open the state machine, restoring the latest snapshot in `dir`.
    pub fn open(dir: &Path) -> Result<StateMachineStore, SnapshotError> {
        let path = dir.join(SNAPSHOT_FILE);
        let mut data = SmData::default();
        let mut current = None;
        match std::fs::read(&path) {
            Ok(bytes) => {
                let file = decode_snapshot(&bytes).map_err(|detail| SnapshotError::Damaged {
                    path: path.display().to_string(),
                    detail,
                })?;
                check_log_format(file.state.cluster_version).map_err(|detail| {
                    SnapshotError::TooNew {
                        path: path.display().to_string(),
                        detail,
                    }
                })?;
                data.state = file.state;
                data.last_applied = file.meta.last_log_id;
                data.membership = file.meta.last_membership.clone();
                data.route_log.reset(data.state.revision);
                current = Some(StoredSnapshot {
                    meta: file.meta,
                    bytes,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(SnapshotError::Io {
                    path: path.display().to_string(),
                    source,
                })
            }
        }
        let (revision, _) = watch::channel(data.state.revision);
        Ok(StateMachineStore {
            shared: Arc::new(SmShared {
                data: RwLock::new(data),
                revision,
                current: Mutex::new(current),
                snapshot_dir: dir.to_path_buf(),
            }),
        })
    }

    pub fn shared(&self) -> Arc<SmShared> {
        self.shared.clone()
    }
}

/// Seed a re-seeded replica's (empty) snapshot dir with a peer's current
/// snapshot, verified first; returns the log id it covers.
pub fn seed_snapshot(dir: &Path, bytes: &[u8]) -> Result<LogId<NodeId>, String> {
    let file = decode_snapshot(bytes)?;
    check_log_format(file.state.cluster_version)?;
    let at = file
        .meta
        .last_log_id
        .ok_or_else(|| "the peer's snapshot covers no entry".to_string())?;
    write_atomic(&dir.join(SNAPSHOT_FILE), bytes).map_err(|e| e.to_string())?;
    Ok(at)
}

/// The snapshot of a data dir being restored from a backup (the state
/// machine is not open): `state` as of `at`, with the new cluster's
/// `membership`.
pub fn write_restored_snapshot(
    dir: &Path,
    at: LogId<NodeId>,
    membership: openraft::Membership<NodeId, Member>,
    state: HubState,
) -> std::io::Result<()> {
    let file = SnapshotFile {
        meta: SnapshotMeta {
            last_log_id: Some(at),
            last_membership: StoredMembership::new(Some(at), membership),
            snapshot_id: format!("restored-{}", at.index),
        },
        state,
    };
    let bytes = codec::encode(&file).map_err(std::io::Error::other)?;
    write_atomic(&dir.join(SNAPSHOT_FILE), &bytes)
}

fn persist(dir: &Path, snapshot: &StoredSnapshot) -> std::io::Result<()> {
    write_atomic(&dir.join(SNAPSHOT_FILE), &snapshot.bytes)
}

pub struct SnapshotBuilder {
    shared: Arc<SmShared>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let file = self.shared.read(|d| {
            let last = d.last_applied;
            SnapshotFile {
                meta: SnapshotMeta {
                    last_log_id: last,
                    last_membership: d.membership.clone(),
                    snapshot_id: match last {
                        Some(l) => {
                            format!("{}-{}-{}", l.leader_id.term, l.leader_id.node_id, l.index)
                        }
                        None => "0-0-0".into(),
                    },
                },
                state: d.state.clone(),
            }
        });
        // The copy above is the only part under the lock. Encoding (tens of
        // MB at 100k users) and the write run on a blocking thread, so
        // neither the async runtime nor writers wait for them.
        let dir = self.shared.snapshot_dir.clone();
        let signature = file.meta.signature();
        let stored = tokio::task::spawn_blocking(move || {
            let bytes = codec::encode(&file).map_err(std::io::Error::other)?;
            let stored = StoredSnapshot {
                meta: file.meta,
                bytes,
            };
            persist(&dir, &stored).map(|_| stored)
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(Some(signature.clone()), &e))?
        .map_err(|e| StorageIOError::write_snapshot(Some(signature), &e))?;
        tracing::info!(snapshot = %stored.meta.snapshot_id, bytes = stored.bytes.len(), "snapshot built");
        let snapshot = Snapshot {
            meta: stored.meta.clone(),
            snapshot: Box::new(Cursor::new(stored.bytes.clone())),
        };
        *self
            .shared
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(stored);
        Ok(snapshot)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, Member>)> {
        Ok(self.shared.read(|d| (d.last_applied, d.membership.clone())))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Response>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        let revision = {
            let mut guard = self.shared.write();
            let d = &mut *guard;
            for entry in entries {
                let index = entry.log_id.index;
                if let EntryPayload::Normal(Request {
                    command: Command::SetClusterVersion { version },
                    ..
                }) = &entry.payload
                {
                    if let Err(detail) = check_log_format(*version) {
                        // Stop before the entry: nothing of it is applied,
                        // and openraft halts this node on the error.
                        tracing::error!(index, %detail, "cannot apply: this replica stops");
                        let e = std::io::Error::other(detail);
                        drop(guard);
                        self.shared
                            .revision
                            .send_replace(self.shared.read(|d| d.state.revision));
                        return Err(StorageIOError::apply(entry.log_id, &e).into());
                    }
                }
                d.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => {
                        d.state.advance(index);
                        responses.push(Response::Done);
                    }
                    EntryPayload::Normal(req) => {
                        let applied = d.state.apply(index, &req);
                        if applied.duplicate {
                            tracing::debug!(client = %req.client_id, serial = req.serial, "duplicate request answered from the dedupe table");
                        }
                        for event in applied.route_events {
                            d.route_log.push(index, event);
                        }
                        responses.push(applied.response);
                    }
                    EntryPayload::Membership(m) => {
                        d.membership = StoredMembership::new(Some(entry.log_id), m);
                        d.state.advance(index);
                        responses.push(Response::Done);
                    }
                }
            }
            d.state.revision
        };
        self.shared.revision.send_replace(revision);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            shared: self.shared.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let bytes = snapshot.into_inner();
        let file = decode_snapshot(&bytes).map_err(|detail| {
            StorageIOError::read_snapshot(Some(meta.signature()), &std::io::Error::other(detail))
        })?;
        if let Err(detail) = check_log_format(file.state.cluster_version) {
            tracing::error!(%detail, "refusing a snapshot of a newer log format; this replica stops");
            let e = std::io::Error::other(detail);
            return Err(StorageIOError::read_snapshot(Some(meta.signature()), &e).into());
        }
        if file.meta.last_log_id != meta.last_log_id {
            let e = std::io::Error::other(format!(
                "snapshot content is for {:?}, announced as {:?}",
                file.meta.last_log_id, meta.last_log_id
            ));
            return Err(StorageIOError::read_snapshot(Some(meta.signature()), &e).into());
        }
        let stored = StoredSnapshot {
            meta: meta.clone(),
            bytes,
        };
        let dir = self.shared.snapshot_dir.clone();
        let to_write = stored.clone();
        tokio::task::spawn_blocking(move || persist(&dir, &to_write))
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        let revision = {
            let mut d = self.shared.write();
            d.state = file.state;
            d.last_applied = meta.last_log_id;
            d.membership = meta.last_membership.clone();
            let revision = d
                .state
                .revision
                .max(meta.last_log_id.map(|l| l.index).unwrap_or(0));
            d.state.advance(revision);
            d.route_log.reset(revision);
            revision
        };
        *self
            .shared
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(stored);
        self.shared.revision.send_replace(revision);
        tracing::info!(snapshot = %meta.snapshot_id, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let current = self
            .shared
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Ok(current.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.bytes)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorumhub_state::Route;

    #[test]
    fn route_log_resumes_or_asks_for_a_snapshot() {
        let mut log = RouteLog::default();
        let route = |n: &str| {
            RouteEvent::Upsert(Route {
                prefix: format!("/user/{n}/"),
                target: "http://t".into(),
                user: n.into(),
                server_name: String::new(),
            })
        };
        log.push(3, route("a"));
        log.push(5, route("b"));
        assert_eq!(log.since(0).map(|v| v.len()), Some(2));
        assert_eq!(log.since(3).map(|v| v.len()), Some(1));
        assert_eq!(log.since(5).map(|v| v.len()), Some(0));
        log.reset(10);
        assert!(log.since(9).is_none(), "older than what is held: snapshot");
        assert_eq!(log.since(10).map(|v| v.len()), Some(0));
        for i in 0..(ROUTE_LOG_CAPACITY as u64 + 5) {
            log.push(11 + i, route("c"));
        }
        assert!(log.since(10).is_none());
        assert!(log.since(16).is_some());
    }
}
