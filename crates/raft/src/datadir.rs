//! A replica's data directory: identity, exclusive lock, layout.
//!
//! ```text
//! <data-dir>/
//!   quorumhub.lock     exclusive flock held while the replica runs
//!   identity.json      {cluster_id, node_id, format} written once, checksummed
//!   raft/              sled: log, vote, committed index
//!   snapshots/         the latest state-machine snapshot (checksummed)
//!   servers/           logs of the single-user servers this replica started
//! ```
//!
//! A directory is only ever initialised when it is empty; a directory that
//! is missing, locked, foreign, or belongs to another cluster or node is
//! refused without writing anything to it.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::NodeId;

/// Version of the on-disk layout.
pub const LAYOUT_FORMAT: u32 = 1;

const IDENTITY: &str = "identity.json";
const LOCK: &str = "quorumhub.lock";

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error(
        "data dir {0} does not exist; create it (mkdir -p) or point --data-dir at the right place"
    )]
    Missing(PathBuf),
    #[error("data dir {0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("data dir {0} is locked by another running replica; stop it first, or use another --data-dir")]
    Locked(PathBuf),
    #[error("data dir {path} is not empty and holds no quorumhub identity; refusing to touch it (found {found})")]
    Foreign { path: PathBuf, found: String },
    #[error("data dir {path} belongs to cluster {found:?}, not {expected:?}; it is another cluster's data. Use an empty dir to join this cluster")]
    OtherCluster {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("data dir {path} belongs to node {found}, not node {expected}; check --node-id")]
    WrongNode {
        path: PathBuf,
        found: NodeId,
        expected: NodeId,
    },
    #[error("data dir {path} has layout format {found}; this build reads format {LAYOUT_FORMAT}. Run a build that matches")]
    Format { path: PathBuf, found: u32 },
    #[error("data dir {path}: identity file is damaged ({detail}); re-seed this replica: quorumhub reseed --data-dir {path} ...")]
    DamagedIdentity { path: PathBuf, detail: String },
    #[error("data dir {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub cluster_id: String,
    pub node_id: NodeId,
    pub format: u32,
}

/// An opened, locked data directory. The lock is released on drop.
#[derive(Debug)]
pub struct DataDir {
    root: PathBuf,
    identity: Identity,
    /// True when this open created the identity (the directory was empty).
    pub fresh: bool,
    _lock: File,
}

impl DataDir {
    pub fn open(root: &Path, cluster_id: &str, node_id: NodeId) -> Result<DataDir, DataDirError> {
        let io = |source| DataDirError::Io {
            path: root.to_path_buf(),
            source,
        };
        let meta = match fs::metadata(root) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(DataDirError::Missing(root.to_path_buf()))
            }
            Err(e) => return Err(io(e)),
        };
        if !meta.is_dir() {
            return Err(DataDirError::NotADirectory(root.to_path_buf()));
        }
        let entries = list(root).map_err(io)?;
        let has_identity = entries.iter().any(|e| e == IDENTITY);
        let stray: Vec<&String> = entries.iter().filter(|e| e.as_str() != LOCK).collect();
        if !has_identity && !stray.is_empty() {
            let found = stray
                .iter()
                .take(3)
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(DataDirError::Foreign {
                path: root.to_path_buf(),
                found,
            });
        }

        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join(LOCK))
            .map_err(io)?;
        match fs4::fs_std::FileExt::try_lock_exclusive(&lock) {
            Ok(true) => {}
            Ok(false) => return Err(DataDirError::Locked(root.to_path_buf())),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(DataDirError::Locked(root.to_path_buf()))
            }
            Err(e) => return Err(io(e)),
        }

        let (identity, fresh) = if has_identity {
            let bytes = fs::read(root.join(IDENTITY)).map_err(io)?;
            let identity: Identity =
                codec::decode(&bytes).map_err(|e| DataDirError::DamagedIdentity {
                    path: root.to_path_buf(),
                    detail: e.to_string(),
                })?;
            if identity.format != LAYOUT_FORMAT {
                return Err(DataDirError::Format {
                    path: root.to_path_buf(),
                    found: identity.format,
                });
            }
            if identity.cluster_id != cluster_id {
                return Err(DataDirError::OtherCluster {
                    path: root.to_path_buf(),
                    found: identity.cluster_id,
                    expected: cluster_id.to_string(),
                });
            }
            if identity.node_id != node_id {
                return Err(DataDirError::WrongNode {
                    path: root.to_path_buf(),
                    found: identity.node_id,
                    expected: node_id,
                });
            }
            (identity, false)
        } else {
            let identity = Identity {
                cluster_id: cluster_id.to_string(),
                node_id,
                format: LAYOUT_FORMAT,
            };
            let bytes = codec::encode(&identity).map_err(|e| io(std::io::Error::other(e)))?;
            write_atomic(&root.join(IDENTITY), &bytes).map_err(io)?;
            (identity, true)
        };
        for sub in ["raft", "snapshots", "servers"] {
            fs::create_dir_all(root.join(sub)).map_err(io)?;
        }
        Ok(DataDir {
            root: root.to_path_buf(),
            identity,
            fresh,
            _lock: lock,
        })
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn raft_dir(&self) -> PathBuf {
        self.root.join("raft")
    }
    pub fn snapshot_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }
    pub fn servers_dir(&self) -> PathBuf {
        self.root.join("servers")
    }
}

fn list(root: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(root)? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Write `bytes` to `path` so that a crash leaves either the old or the new
/// content: temp file, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_ours_and_touches_nothing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let missing = tmp.path().join("nope");
        assert!(matches!(
            DataDir::open(&missing, "c", 1),
            Err(DataDirError::Missing(_))
        ));
        assert!(!missing.exists(), "a missing dir is not created");

        let foreign = tmp.path().join("foreign");
        fs::create_dir(&foreign).expect("mkdir");
        fs::write(foreign.join("precious.txt"), b"keep me").expect("write");
        assert!(matches!(
            DataDir::open(&foreign, "c", 1),
            Err(DataDirError::Foreign { .. })
        ));
        assert_eq!(list(&foreign).expect("ls"), vec!["precious.txt"]);

        let dir = tmp.path().join("d");
        fs::create_dir(&dir).expect("mkdir");
        let first = DataDir::open(&dir, "c", 1).expect("empty dir is initialised");
        assert!(first.fresh);
        assert!(matches!(
            DataDir::open(&dir, "c", 1),
            Err(DataDirError::Locked(_))
        ));
        drop(first);

        let again = DataDir::open(&dir, "c", 1).expect("reopens");
        assert!(!again.fresh);
        drop(again);
        assert!(matches!(
            DataDir::open(&dir, "other", 1),
            Err(DataDirError::OtherCluster { .. })
        ));
        assert!(matches!(
            DataDir::open(&dir, "c", 2),
            Err(DataDirError::WrongNode { .. })
        ));

        let mut bytes = fs::read(dir.join(IDENTITY)).expect("read");
        bytes[6] ^= 0xff;
        fs::write(dir.join(IDENTITY), &bytes).expect("write");
        assert!(matches!(
            DataDir::open(&dir, "c", 1),
            Err(DataDirError::DamagedIdentity { .. })
        ));
    }
}
