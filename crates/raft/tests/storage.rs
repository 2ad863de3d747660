//! The sled store against openraft's own storage conformance suite, and
//! against damage on disk.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use quorumhub_raft::auth::ClientAuth;
use quorumhub_raft::log_store::{damage_entry, LogStore, LogStoreError};
use quorumhub_raft::network::Network;
use quorumhub_raft::state_machine::StateMachineStore;
use quorumhub_raft::{Member, NodeId, Raft, TypeConfig};
use quorumhub_state::{Command, Request};

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for SledBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, _) = LogStore::open(&dir.path().join("raft")).expect("opens");
        std::fs::create_dir_all(dir.path().join("snap")).expect("mkdir");
        let sm = StateMachineStore::open(&dir.path().join("snap")).expect("opens");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    if let Err(e) = Suite::test_all(SledBuilder) {
        panic!("the sled store fails openraft's storage suite: {e}");
    }
}

/// A one-replica cluster that writes `n` entries through openraft, then
/// stops and releases its store.
async fn write_entries(dir: &std::path::Path, n: u64) -> anyhow::Result<()> {
    let (log, _) = LogStore::open(&dir.join("raft"))?;
    std::fs::create_dir_all(dir.join("snap"))?;
    let sm = StateMachineStore::open(&dir.join("snap"))?;
    let config = Arc::new(openraft::Config::default().validate()?);
    let network = Network::new(ClientAuth::new("0123456789abcdef0123")?, "c".into());
    let raft = Raft::new(1, config, network, log, sm).await?;
    raft.initialize(BTreeMap::from([(1, Member::default())]))
        .await?;
    raft.wait(Some(Duration::from_secs(5)))
        .current_leader(1, "leader")
        .await?;
    for serial in 0..n {
        raft.client_write(Request {
            client_id: "t".into(),
            serial,
            at: 0,
            command: Command::Noop,
        })
        .await?;
    }
    raft.shutdown().await?;
    drop(raft);
    Ok(())
}

#[tokio::test]
async fn damage_is_found_when_the_store_opens() -> anyhow::Result<()> {
    for (index, remove, expect) in [
        (3, false, "entry at index 3: checksum mismatch"),
        (4, true, "gap in the log: expected index 4, found 5"),
    ] {
        let dir = tempfile::tempdir()?;
        write_entries(dir.path(), 6).await?;
        let summary = LogStore::open(&dir.path().join("raft"))?.1;
        assert_eq!(
            summary.last_index,
            Some(7),
            "membership + blank + 6 writes, from index 0"
        );
        // sled needs the previous handle gone before it reopens the dir.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(damage_entry(&dir.path().join("raft"), index, remove)?);
        match LogStore::open(&dir.path().join("raft")) {
            Err(LogStoreError::Damaged(detail)) => {
                assert!(detail.contains(expect), "{detail}");
            }
            Err(other) => panic!("unexpected error: {other}"),
            Ok(_) => panic!("a damaged log opened without complaint"),
        }
    }
    Ok(())
}

/// A build must never apply a log whose agreed format is newer than it
/// understands: it stops before the entry that raises the cluster version
/// past it, and applies nothing after.
#[tokio::test]
async fn a_replica_halts_before_a_log_format_it_does_not_know() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (log, _) = LogStore::open(&dir.path().join("raft"))?;
    std::fs::create_dir_all(dir.path().join("snap"))?;
    let sm = StateMachineStore::open(&dir.path().join("snap"))?;
    let shared = sm.shared();
    let config = Arc::new(openraft::Config::default().validate()?);
    let network = Network::new(ClientAuth::new("0123456789abcdef0123")?, "c".into());
    let raft = Raft::new(1, config, network, log, sm).await?;
    raft.initialize(BTreeMap::from([(1, Member::default())]))
        .await?;
    raft.wait(Some(Duration::from_secs(5)))
        .current_leader(1, "leader")
        .await?;
    let write = |serial, command| Request {
        client_id: "t".into(),
        serial,
        at: 0,
        command,
    };
    raft.client_write(write(1, Command::Noop)).await?;
    let before = shared.read(|d| (d.state.revision, d.state.cluster_version));
    let too_new = Command::SetClusterVersion {
        version: quorumhub_state::LOG_FORMAT_VERSION + 1,
    };
    let out = tokio::time::timeout(Duration::from_secs(5), raft.client_write(write(2, too_new)))
        .await
        .expect("the write returns instead of hanging");
    assert!(
        out.is_err(),
        "a replica applied a newer log format: {out:?}"
    );
    assert_eq!(
        shared.read(|d| (d.state.revision, d.state.cluster_version)),
        before,
        "nothing of the entry was applied"
    );
    // The node has stopped: it takes no more writes.
    let after = tokio::time::timeout(
        Duration::from_secs(5),
        raft.client_write(write(3, Command::Noop)),
    )
    .await
    .expect("returns");
    assert!(after.is_err());
    Ok(())
}
