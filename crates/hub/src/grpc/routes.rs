//! The Routes gRPC service: proxies watch the replicated route table.
//!
//! A watcher names the revision it holds. If this replica still holds every
//! route change after it, the watcher gets those changes; otherwise (first
//! contact, or too far behind, or a snapshot was installed since) it gets
//! the whole table. Then changes as they are applied, and a heartbeat every
//! second carrying the revision and the hub members' HTTP addresses.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use quorumhub_proto::v1::routes_server;
use quorumhub_proto::v1::watch_event::Event;
use quorumhub_proto::v1::*;
use quorumhub_state::{Route as SmRoute, RouteEvent};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::hub::Hub;

pub const HEARTBEAT: Duration = Duration::from_secs(1);

pub struct RoutesService {
    hub: Arc<Hub>,
    /// Becomes true when this replica shuts down: every watch stream ends,
    /// so its proxy reconnects to another replica at once.
    drain: watch::Receiver<bool>,
}

impl RoutesService {
    pub fn new(hub: Arc<Hub>, drain: watch::Receiver<bool>) -> RoutesService {
        RoutesService { hub, drain }
    }
}

fn route(r: &SmRoute) -> Route {
    Route {
        prefix: r.prefix.clone(),
        target: r.target.clone(),
        user: r.user.clone(),
        server_name: r.server_name.clone(),
    }
}

/// What a watcher at revision `from` must be sent now.
fn catch_up(hub: &Hub, from: u64) -> (u64, Vec<Event>) {
    hub.sm.read(|d| {
        let revision = d.state.revision;
        let changes = if from == 0 {
            None
        } else {
            d.route_log.since(from)
        };
        match changes {
            Some(changes) => {
                let events = changes
                    .into_iter()
                    .map(|(rev, e)| {
                        Event::Change(match e {
                            RouteEvent::Upsert(r) => RouteChange {
                                revision: rev,
                                prefix: r.prefix.clone(),
                                route: Some(route(&r)),
                            },
                            RouteEvent::Delete { prefix } => RouteChange {
                                revision: rev,
                                route: None,
                                prefix,
                            },
                        })
                    })
                    .collect();
                (revision.max(from), events)
            }
            None => (
                revision,
                vec![Event::Snapshot(RouteSnapshot {
                    revision,
                    routes: d.state.routes.values().map(route).collect(),
                })],
            ),
        }
    })
}

fn heartbeat(hub: &Hub, revision: u64) -> Event {
    let m = hub.raft.metrics().borrow().clone();
    let members = m
        .membership_config
        .membership()
        .nodes()
        .map(|(id, n)| Member {
            id: *id,
            grpc_addr: n.grpc_addr.clone(),
            http_addr: n.http_addr.clone(),
            voter: m
                .membership_config
                .membership()
                .voter_ids()
                .any(|v| v == *id),
        })
        .collect();
    Event::Heartbeat(Heartbeat {
        revision,
        node_id: hub.id,
        leader_id: m.current_leader.unwrap_or(0),
        members,
    })
}

async fn drained(mut drain: watch::Receiver<bool>) {
    let _ = drain.wait_for(|d| *d).await;
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, Status>> + Send>>;

#[tonic::async_trait]
impl routes_server::Routes for RoutesService {
    type WatchStream = WatchStream;

    async fn watch(&self, req: Request<WatchRequest>) -> Result<Response<WatchStream>, Status> {
        let remote = req.remote_addr();
        let WatchRequest {
            from_revision,
            watcher,
        } = req.into_inner();
        tracing::info!(?remote, %watcher, from_revision, "route watcher connected");
        let (tx, rx) = mpsc::channel::<Result<WatchEvent, Status>>(64);
        let hub = self.hub.clone();
        let drain = self.drain.clone();
        if *self.drain.borrow() {
            return Err(Status::unavailable(
                "this replica is shutting down; watch another one",
            ));
        }
        tokio::spawn(async move {
            let mut applied = hub.sm.subscribe();
            let mut held = from_revision;
            let mut tick = tokio::time::interval(HEARTBEAT);
            let drained = drained(drain);
            tokio::pin!(drained);
            loop {
                let (revision, events) = catch_up(&hub, held);
                held = revision;
                for event in events {
                    if tx
                        .send(Ok(WatchEvent { event: Some(event) }))
                        .await
                        .is_err()
                    {
                        tracing::info!(%watcher, "route watcher left");
                        return;
                    }
                }
                tokio::select! {
                    _ = &mut drained => {
                        tracing::info!(%watcher, "ending route watch: shutting down");
                        return;
                    }
                    changed = applied.changed() => if changed.is_err() { return },
                    _ = tick.tick() => {
                        let beat = WatchEvent { event: Some(heartbeat(&hub, held)) };
                        if tx.send(Ok(beat)).await.is_err() {
                            tracing::info!(%watcher, "route watcher left");
                            return;
                        }
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
