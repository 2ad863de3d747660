//! [`Ctx`]: what every handler is given: the [`Cluster`] and the front
//! end's configuration. It dereferences to the cluster, so a handler reads
//! `hub.read(..)`, `hub.propose(..)` and `hub.config.limits`.

use std::ops::Deref;
use std::sync::Arc;

use quorumhub_core::{Cluster, HubError, MembersView, NodeView};
use quorumhub_state::{Command, HubState, Response};

use crate::config::HttpConfig;

pub struct Ctx {
    pub cluster: Arc<dyn Cluster>,
    pub config: HttpConfig,
}

impl Ctx {
    pub fn new(cluster: Arc<dyn Cluster>, config: HttpConfig) -> Arc<Ctx> {
        Arc::new(Ctx { cluster, config })
    }
}

impl Deref for Ctx {
    type Target = dyn Cluster;

    fn deref(&self) -> &(dyn Cluster + 'static) {
        &*self.cluster
    }
}

/// The handlers pass their `Ctx` to the use cases as the cluster.
#[async_trait::async_trait]
impl Cluster for Ctx {
    async fn propose(&self, command: Command) -> Result<Response, HubError> {
        self.cluster.propose(command).await
    }
    async fn linearize(&self) -> Result<(), HubError> {
        self.cluster.linearize().await
    }
    fn read_with(&self, f: &mut dyn FnMut(&HubState)) {
        self.cluster.read_with(f)
    }
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.cluster.subscribe()
    }
    fn node(&self) -> NodeView {
        self.cluster.node()
    }
    async fn members(&self) -> MembersView {
        self.cluster.members().await
    }
    fn draining(&self) -> bool {
        self.cluster.draining()
    }
}
