//! The Raft log, vote and committed index, in sled.
//!
//! Durability contract (openraft `RaftLogStorage`):
//! - `append`: entries are readable when it returns and on disk when the
//!   flush callback fires; we flush before calling back.
//! - `save_vote`: the vote is on disk before it returns.
//! - write I/O is serialized by openraft; we add no concurrency of our own.
//!
//! Every log record and the vote are checksummed ([`crate::codec`]);
//! [`LogStore::open`] verifies the whole log (checksums, decodability, keys
//! matching indexes, no gaps) before the replica may serve.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogId, StorageIOError, Vote};

use crate::codec::{self, CodecError};
use crate::{NodeId, StorageResult, TypeConfig};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";

#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    #[error("cannot open the Raft log at {path}: {source}")]
    Open { path: String, source: sled::Error },
    #[error("the Raft log is damaged: {0}. This replica must not serve from it; re-seed it from a peer: quorumhub reseed --data-dir <dir> --from <peer grpc addr>")]
    Damaged(String),
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
}

/// What [`LogStore::open`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogSummary {
    pub entries: u64,
    pub first_index: Option<u64>,
    pub last_index: Option<u64>,
    pub last_purged: Option<u64>,
}

/// Told how long each append took to be durable (written and flushed),
/// and how many entries it held: for the operator's metrics, which this
/// crate knows nothing about.
pub type AppendObserver = Arc<dyn Fn(Duration, usize) + Send + Sync>;

#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    observer: Option<AppendObserver>,
}

fn key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn index_of(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

impl LogStore {
    /// Open (or create) the log under `dir` and verify every record in it.
    pub fn open(dir: &Path) -> Result<(LogStore, LogSummary), LogStoreError> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|source| LogStoreError::Open {
                path: dir.display().to_string(),
                source,
            })?;
        let log = db.open_tree("log")?;
        let meta = db.open_tree("meta")?;
        let store = LogStore {
            db,
            log,
            meta,
            observer: None,
        };
        let summary = store.verify()?;
        Ok((store, summary))
    }

    /// Report every append's latency to `observer`.
    pub fn observe_appends(&mut self, observer: AppendObserver) {
        self.observer = Some(observer);
    }

    /// How many bytes the log's files take on disk, as sled counts them
    /// (a probe that keeps working once the store is handed to Raft).
    pub fn size_probe(&self) -> impl Fn() -> Option<u64> + Send + Sync + 'static {
        let db = self.db.clone();
        move || db.size_on_disk().ok()
    }

    /// The index this replica last recorded as committed (`save_committed`:
    /// what it has learned is on a quorum), a probe like [`Self::size_probe`].
    /// `None` before anything is committed, or if the record is unreadable.
    pub fn committed_probe(&self) -> impl Fn() -> Option<u64> + Send + Sync + 'static {
        let meta = self.meta.clone();
        move || {
            let bytes = meta.get(COMMITTED).ok()??;
            let committed: Option<LogId<NodeId>> = codec::decode(&bytes).ok()?;
            committed.map(|c| c.index)
        }
    }

    /// Check every record: checksum, decodable, stored under its own index,
    /// contiguous, and following the purge point.
    pub fn verify(&self) -> Result<LogSummary, LogStoreError> {
        let damaged = LogStoreError::Damaged;
        let last_purged: Option<LogId<NodeId>> = self
            .read_meta(LAST_PURGED)
            .map_err(|e| damaged(format!("last purged log id: {e}")))?;
        let _vote: Option<Vote<NodeId>> = self
            .read_meta(VOTE)
            .map_err(|e| damaged(format!("vote: {e}")))?;
        let mut summary = LogSummary {
            last_purged: last_purged.map(|l| l.index),
            ..LogSummary::default()
        };
        let mut expected = last_purged.map(|l| l.index + 1);
        for item in self.log.iter() {
            let (k, v) = item?;
            let index = index_of(&k)
                .ok_or_else(|| damaged(format!("a key of {} bytes in the log tree", k.len())))?;
            if last_purged.is_some_and(|p| index <= p.index) {
                // Left over from a purge interrupted by a crash; never read.
                continue;
            }
            let entry: Entry<TypeConfig> =
                codec::decode(&v).map_err(|e| damaged(format!("entry at index {index}: {e}")))?;
            if entry.get_log_id().index != index {
                return Err(damaged(format!(
                    "entry stored at index {index} says it is {}",
                    entry.get_log_id()
                )));
            }
            if let Some(want) = expected {
                if index != want {
                    return Err(damaged(format!(
                        "gap in the log: expected index {want}, found {index}"
                    )));
                }
            }
            summary.first_index.get_or_insert(index);
            summary.last_index = Some(index);
            summary.entries += 1;
            expected = Some(index + 1);
        }
        Ok(summary)
    }

    fn read_meta<T: serde::de::DeserializeOwned>(&self, k: &[u8]) -> Result<Option<T>, CodecError> {
        match self.meta.get(k) {
            Ok(Some(v)) => codec::decode(&v).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(CodecError::Decode(serde_json::Error::io(
                std::io::Error::other(e),
            ))),
        }
    }

    fn write_meta<T: serde::Serialize>(&self, k: &[u8], value: &T) -> Result<(), std::io::Error> {
        let bytes = codec::encode(value).map_err(std::io::Error::other)?;
        self.meta.insert(k, bytes).map_err(std::io::Error::other)?;
        Ok(())
    }

    async fn flush(&self) -> Result<(), std::io::Error> {
        self.db.flush_async().await.map_err(std::io::Error::other)?;
        Ok(())
    }

    /// The vote as stored; used when re-seeding a replica.
    pub fn vote(&self) -> Result<Option<Vote<NodeId>>, LogStoreError> {
        self.read_meta(VOTE)
            .map_err(|e| LogStoreError::Damaged(format!("vote: {e}")))
    }

    /// Write the vote and flush (used by `reseed` before the node starts).
    pub fn put_vote(&self, vote: &Vote<NodeId>) -> Result<(), std::io::Error> {
        self.write_meta(VOTE, vote)?;
        self.db.flush().map_err(std::io::Error::other)?;
        Ok(())
    }

    fn last_purged(&self) -> StorageResult<Option<LogId<NodeId>>> {
        self.read_meta(LAST_PURGED)
            .map_err(|e| StorageIOError::read_logs(&e).into())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(i) => Bound::Included(key(*i)),
            Bound::Excluded(i) => Bound::Excluded(key(*i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Bound::Included(key(*i)),
            Bound::Excluded(i) => Bound::Excluded(key(*i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for item in self.log.range::<[u8; 8], _>((start, end)) {
            let (k, v) = item.map_err(|e| StorageIOError::read_logs(&e))?;
            let index = index_of(&k).unwrap_or_default();
            let entry =
                codec::decode(&v).map_err(|e| StorageIOError::read_log_at_index(index, &e))?;
            out.push(entry);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged = self.last_purged()?;
        let last = match self.log.last().map_err(|e| StorageIOError::read_logs(&e))? {
            Some((k, v)) => {
                let entry: Entry<TypeConfig> = codec::decode(&v).map_err(|e| {
                    StorageIOError::read_log_at_index(index_of(&k).unwrap_or_default(), &e)
                })?;
                Some(*entry.get_log_id())
            }
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        self.write_meta(VOTE, vote)
            .map_err(|e| StorageIOError::write_vote(&e))?;
        self.flush()
            .await
            .map_err(|e| StorageIOError::write_vote(&e))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        self.read_meta(VOTE)
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        // Not flushed on purpose: a committed index that is lost in a crash is
        // learned again from the leader.
        self.write_meta(COMMITTED, &committed)
            .map_err(|e| StorageIOError::write(&e))?;
        Ok(())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        let c: Option<Option<LogId<NodeId>>> = self
            .read_meta(COMMITTED)
            .map_err(|e| StorageIOError::read(&e))?;
        Ok(c.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let started = Instant::now();
        let mut count = 0;
        let mut batch = sled::Batch::default();
        for entry in entries {
            count += 1;
            let id = *entry.get_log_id();
            let bytes =
                codec::encode(&entry).map_err(|e| StorageIOError::write_log_entry(id, &e))?;
            batch.insert(&key(id.index), bytes);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        // Readable now; durable once flushed. Only then tell openraft.
        let flushed = self.flush().await;
        if let (Some(observe), true) = (&self.observer, flushed.is_ok()) {
            observe(started.elapsed(), count);
        }
        let failed = flushed.as_ref().err().map(StorageIOError::write_logs);
        callback.log_io_completed(flushed);
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let mut batch = sled::Batch::default();
        for item in self.log.range(key(log_id.index)..) {
            let (k, _) = item.map_err(|e| StorageIOError::write_logs(&e))?;
            batch.remove(k);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        self.flush()
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        // Record the purge point first: a crash in between leaves extra
        // entries below it, which verify() and reads tolerate.
        self.write_meta(LAST_PURGED, &log_id)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        let mut batch = sled::Batch::default();
        for item in self.log.range(..=key(log_id.index)) {
            let (k, _) = item.map_err(|e| StorageIOError::write_logs(&e))?;
            batch.remove(k);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        self.flush()
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }
}

/// Damage a stored log on purpose (tests and fault drills): flip a byte of
/// the entry at `index`, or remove it to make a gap.
#[doc(hidden)]
pub fn damage_entry(dir: &Path, index: u64, remove: bool) -> Result<bool, sled::Error> {
    let db = sled::open(dir)?;
    let log = db.open_tree("log")?;
    let Some(v) = log.get(key(index))? else {
        return Ok(false);
    };
    if remove {
        log.remove(key(index))?;
    } else {
        let mut bytes = v.to_vec();
        if let Some(last) = bytes.last_mut() {
            *last ^= 0x5a;
        }
        log.insert(key(index), bytes)?;
    }
    db.flush()?;
    Ok(true)
}
