//! Follows the replicated route table over `Routes.Watch`, failing over
//! between hub replicas. The table is only ever replaced by a newer one:
//! a lost stream leaves the last table in place.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quorumhub_proto::v1::routes_client::RoutesClient;
use quorumhub_proto::v1::watch_event::Event;
use quorumhub_proto::v1::{Heartbeat, WatchEvent, WatchRequest};
use rand::Rng;
use tokio::sync::watch;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Endpoint;

use crate::shared::{Hubs, Shared};
use crate::table::RouteTable;

impl Shared {
    /// Apply one event; returns whether the route table changed.
    pub fn apply(&self, event: WatchEvent) -> bool {
        self.touch();
        match event.event {
            Some(Event::Snapshot(s)) if s.revision < self.table.load().revision => {
                tracing::debug!(
                    revision = s.revision,
                    "ignoring a snapshot older than the table"
                );
                false
            }
            Some(Event::Snapshot(s)) => {
                let next = RouteTable::from_snapshot(&s);
                tracing::info!(
                    revision = next.revision,
                    routes = next.routes.len(),
                    "route table snapshot"
                );
                self.table.store(Arc::new(next));
                true
            }
            Some(Event::Change(c)) => match self.table.load().with_change(&c) {
                Some(next) => {
                    tracing::debug!(revision = next.revision, prefix = %c.prefix, upsert = c.route.is_some(), "route change");
                    self.table.store(Arc::new(next));
                    true
                }
                None => false,
            },
            Some(Event::Heartbeat(h)) => {
                self.hubs_from(&h);
                false
            }
            None => false,
        }
    }

    fn hubs_from(&self, h: &Heartbeat) {
        if h.members.is_empty() {
            return;
        }
        let mut ordered: Vec<String> = h
            .members
            .iter()
            .filter(|m| m.id == h.leader_id)
            .chain(h.members.iter().filter(|m| m.id != h.leader_id))
            .map(|m| m.http_addr.clone())
            .filter(|a| !a.is_empty())
            .collect();
        ordered.dedup();
        if ordered != self.hubs.load().ordered {
            tracing::info!(hubs = ?ordered, "hub replicas");
            self.hubs.store(Arc::new(Hubs { ordered }));
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum WatchError {
    #[error("bad endpoint {0}")]
    Endpoint(String),
    #[error("cannot connect: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("{}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    #[error("no event for {0:?}: the stream is dead")]
    Silent(Duration),
    #[error("the hub ended the stream")]
    Ended,
    #[error("the hub has known no leader for {0:?}; it may be cut off from the others")]
    NoLeader(Duration),
}

pub(crate) struct Watcher {
    pub endpoints: Vec<String>,
    /// What to present; replaced on a reload (SIGHUP).
    pub secret: Arc<arc_swap::ArcSwap<MetadataValue<Ascii>>>,
    pub stream_timeout: Duration,
    pub name: String,
}

impl Watcher {
    /// Follow the route table until `stop` turns true.
    pub async fn run(self, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
        let mut next = 0usize;
        let mut backoff = Duration::from_millis(50);
        loop {
            let endpoint = self.endpoints[next % self.endpoints.len()].clone();
            next += 1;
            let followed = tokio::select! {
                r = self.follow(&shared, &endpoint) => r,
                _ = stop.wait_for(|s| *s) => return,
            };
            shared.connected.store(false, Ordering::Relaxed);
            match followed {
                Err(WatchError::Status(s)) if s.code() == tonic::Code::Unauthenticated => {
                    tracing::error!(%endpoint, error = %s.message(), "hub refused the proxy's credential: check --proxy-secret-file against the hubs' one");
                }
                Err(WatchError::Status(s)) if s.code() == tonic::Code::PermissionDenied => {
                    tracing::error!(%endpoint, error = %s.message(), "hub refused the proxy's credential for the route watch: give the proxy --proxy-secret-file, the file the hubs have as --proxy-secret-file");
                }
                Err(e) => {
                    tracing::warn!(%endpoint, error = %e, "route watch lost; keeping the last table")
                }
                Ok(()) => {}
            }
            // Another replica is tried at once; only after a whole round
            // without a working stream does the watcher back off.
            let pause = if next.is_multiple_of(self.endpoints.len()) {
                let jitter = rand::thread_rng().gen_range(0..=backoff.as_millis() as u64 / 2);
                let p = backoff + Duration::from_millis(jitter);
                backoff = (backoff * 2).min(Duration::from_secs(1));
                p
            } else {
                Duration::from_millis(10)
            };
            if shared
                .last_event_age()
                .is_some_and(|age| age < self.stream_timeout * 2)
            {
                backoff = Duration::from_millis(50);
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    async fn follow(&self, shared: &Shared, endpoint: &str) -> Result<(), WatchError> {
        let uri = quorumhub_proto::grpc_tls::uri(endpoint);
        let mut ep =
            Endpoint::from_shared(uri).map_err(|_| WatchError::Endpoint(endpoint.to_string()))?;
        if let Some(tls) = quorumhub_proto::grpc_tls::client_config() {
            ep = ep.tls_config(tls)?;
        }
        let channel = ep
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .connect()
            .await?;
        let secret: MetadataValue<Ascii> = (**self.secret.load()).clone();
        let mut client =
            RoutesClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
                req.metadata_mut()
                    .insert(quorumhub_proto::AUTH_METADATA, secret.clone());
                Ok(req)
            })
            .max_decoding_message_size(256 << 20);
        let from_revision = shared.table.load().revision;
        let request = WatchRequest {
            from_revision,
            watcher: self.name.clone(),
        };
        let mut stream = tokio::time::timeout(self.stream_timeout, client.watch(request))
            .await
            .map_err(|_| WatchError::Silent(self.stream_timeout))??
            .into_inner();
        shared.connected.store(true, Ordering::Relaxed);
        shared.watch_connects.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%endpoint, from_revision, "watching routes");
        // A replica cut off from the quorum still streams heartbeats, but
        // knows no leader and learns no new routes: move to another one.
        let mut leaderless_since: Option<Instant> = None;
        loop {
            match tokio::time::timeout(self.stream_timeout, stream.message()).await {
                Err(_) => return Err(WatchError::Silent(self.stream_timeout)),
                Ok(Err(status)) => return Err(status.into()),
                Ok(Ok(None)) => return Err(WatchError::Ended),
                Ok(Ok(Some(event))) => {
                    if let Some(Event::Heartbeat(h)) = &event.event {
                        if h.leader_id == 0 {
                            let since = *leaderless_since.get_or_insert_with(Instant::now);
                            if since.elapsed() > self.stream_timeout {
                                return Err(WatchError::NoLeader(since.elapsed()));
                            }
                        } else {
                            leaderless_since = None;
                        }
                    }
                    shared.apply(event);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use quorumhub_proto::v1::{Member, Route, RouteChange, RouteSnapshot};

    use super::*;

    fn ev(e: Event) -> WatchEvent {
        WatchEvent { event: Some(e) }
    }

    fn route(prefix: &str, target: &str) -> Route {
        Route {
            prefix: prefix.into(),
            target: target.into(),
            user: String::new(),
            server_name: String::new(),
        }
    }

    #[test]
    fn events_only_move_the_table_forward() {
        let shared = Shared::new(vec!["static:1".into()]);
        let snap = |rev, routes| {
            ev(Event::Snapshot(RouteSnapshot {
                revision: rev,
                routes,
            }))
        };
        assert!(shared.apply(snap(10, vec![route("/user/a/", "A")])));
        assert!(
            !shared.apply(snap(5, vec![])),
            "an older snapshot is ignored"
        );
        assert_eq!(
            shared.table.load().lookup("/user/a/x").map(|t| t.as_str()),
            Some("A")
        );
        let change = |rev, r: Option<Route>, prefix: &str| {
            ev(Event::Change(RouteChange {
                revision: rev,
                route: r,
                prefix: prefix.into(),
            }))
        };
        assert!(!shared.apply(change(10, None, "/user/a/")), "not newer");
        assert!(shared.apply(change(11, Some(route("/user/b/", "B")), "/user/b/")));
        assert!(shared.apply(change(12, None, "/user/a/")));
        let t = shared.table.load();
        assert_eq!(
            (
                t.revision,
                t.lookup("/user/a/").map(|t| t.as_str()),
                t.lookup("/user/b/").map(|t| t.as_str())
            ),
            (12, None, Some("B"))
        );
        assert!(shared.last_event_age().is_some());
    }

    #[test]
    fn heartbeats_put_the_leader_first() {
        let shared = Shared::new(vec!["static:1".into()]);
        let member = |id, http: &str| Member {
            id,
            grpc_addr: String::new(),
            http_addr: http.into(),
            voter: true,
        };
        shared.apply(ev(Event::Heartbeat(Heartbeat {
            revision: 1,
            node_id: 1,
            leader_id: 3,
            members: vec![member(1, "h1"), member(2, "h2"), member(3, "h3")],
        })));
        assert_eq!(shared.hubs.load().ordered, vec!["h3", "h1", "h2"]);
        // A heartbeat naming no members keeps what is known.
        shared.apply(ev(Event::Heartbeat(Heartbeat {
            revision: 1,
            node_id: 1,
            leader_id: 0,
            members: vec![],
        })));
        assert_eq!(shared.hubs.load().ordered, vec!["h3", "h1", "h2"]);
    }
}
