//! A replica inside this process: the same data dir, Raft node, state
//! machine and HTTP application as a served replica ([`crate::node::run`]),
//! as the only member of a new cluster, without a listening port, gRPC or
//! the spawner controller. Requests go to [`Embedded::router`] directly
//! (e.g. with `tower::ServiceExt::oneshot`), so the REST contract, scopes
//! and pages are tested as data without starting processes.

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;

use crate::config::HubConfig;
use crate::hub::Hub;
use crate::node::{open_store, start_raft, Store};

/// A running in-process replica.
pub struct Embedded {
    pub hub: Arc<Hub>,
    router: axum::Router,
    stop: watch::Sender<bool>,
    _data_dir: quorumhub_raft::datadir::DataDir,
}

impl Embedded {
    /// Start a replica from `config`, whose `--peer` list must name only
    /// itself; returns once it leads and its bootstrap admin user exists.
    pub async fn start(mut config: HubConfig) -> anyhow::Result<Embedded> {
        config.load_secret_files()?;
        config.validate()?;
        let peers = config.peer_map()?;
        anyhow::ensure!(
            peers.len() == 1 && peers.contains_key(&config.node_id),
            "an embedded replica is the only member of its cluster: give --peer {}=...",
            config.node_id
        );
        let config = Arc::new(config);
        let auth = quorumhub_raft::auth::ClientAuth::new(&config.cluster_secret)?;
        let Store {
            data_dir,
            log_store,
            sm,
        } = open_store(&config)?;
        let (raft, election, hub) = start_raft(&config, auth, log_store, sm).await?;
        let (stop, stop_rx) = watch::channel(false);
        crate::node::spawn_replica_tasks(&hub, &election, &stop_rx);
        let admin = config.admin_user.clone();
        let ready = async {
            raft.wait(None)
                .metrics(|m| m.current_leader == Some(config.node_id), "leading")
                .await
                .context("the embedded replica never led")?;
            while hub.read(|s| s.user(&admin).is_none()) {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            anyhow::Ok(())
        };
        tokio::time::timeout(std::time::Duration::from_secs(20), ready)
            .await
            .context("the embedded replica did not start within 20 s")??;
        Ok(Embedded {
            router: crate::app::router(hub.clone()),
            hub,
            stop,
            _data_dir: data_dir,
        })
    }

    /// The replica's HTTP application, as its port would serve it.
    pub fn router(&self) -> axum::Router {
        self.router.clone()
    }

    /// Stop its tasks and its Raft node.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.hub.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not stop cleanly");
        }
    }
}
