//! Shared by the integration tests: the launcher lives in quorumhub-testkit.

#![allow(dead_code, unused_imports)]

pub mod browser;

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

/// Start `n` replicas whose public URL is the proxy at `proxy_addr` (for a
/// test that must know that address before the cluster starts).
pub async fn start_with_proxy_addr(n: u64, proxy_addr: &str, extra_args: &[&str]) -> Cluster {
    let mut c = Cluster::prepare(exe(), n, extra_args);
    c.proxy_addr = proxy_addr.to_string();
    for id in 1..=n {
        c.spawn(id);
    }
    c.wait_leader(std::time::Duration::from_secs(30)).await;
    c
}
