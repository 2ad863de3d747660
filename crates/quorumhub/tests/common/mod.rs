//! Shared by the integration tests: the launcher lives in quorumhub-testkit.

#![allow(dead_code, unused_imports)]

use std::path::PathBuf;

pub use quorumhub_testkit::{auth, client, kill_processes_under, Node, SECRET, TOKEN};

pub fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_quorumhub"))
}

pub type Cluster = quorumhub_testkit::Cluster;

/// Start `n` replicas of this build's binary.
pub async fn start(n: u64, extra_args: &[&str]) -> Cluster {
    Cluster::start(exe(), n, extra_args).await
}
