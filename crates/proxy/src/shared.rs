//! What the proxy's tasks share: the route table and hub list the watcher
//! publishes, the findings of the health probes, and one connection pool
//! per hub replica. The request path only reads it (arc-swap: no locks).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::client::HttpClient;
use crate::table::RouteTable;

/// The last probe of one hub replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Probe {
    /// It answered: whether it says it leads, and its term.
    Up { leads: bool, term: u64 },
    /// No usable answer. `misses`: probes in a row that found it silent or
    /// unreachable (paused, cut off); 0 when its host refused the
    /// connection (stopped, or draining: a draining replica still finishes
    /// what it has).
    Down { misses: u32 },
}

pub(crate) type HealthMap = HashMap<String, Probe>;

/// One HTTP client (one connection pool) per hub replica, so that the pool
/// of a replica that went silent can be thrown away: its idle connections
/// may be half-open or lead to an address the replica no longer has, and a
/// request sent on one would hang.
pub(crate) struct HubClients {
    connect_timeout: std::sync::Mutex<Duration>,
    clients: std::sync::Mutex<HashMap<String, HttpClient>>,
}

impl Default for HubClients {
    fn default() -> Self {
        HubClients {
            connect_timeout: std::sync::Mutex::new(Duration::from_secs(1)),
            clients: Default::default(),
        }
    }
}

impl HubClients {
    pub(crate) fn set_connect_timeout(&self, d: Duration) {
        *self
            .connect_timeout
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = d;
    }

    pub(crate) fn get(&self, addr: &str) -> HttpClient {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(addr) {
            return c.clone();
        }
        let timeout = *self
            .connect_timeout
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let c = crate::client::client(timeout);
        clients.insert(addr.to_string(), c.clone());
        c
    }

    /// Forget `addr`'s pool: the next request connects anew.
    pub(crate) fn reset(&self, addr: &str) {
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(addr);
    }
}

/// Where `/hub/...` goes: the leader first (no forwarding hop for writes),
/// then the others.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Hubs {
    pub ordered: Vec<String>,
}

/// What the watcher publishes and the request path reads.
pub(crate) struct Shared {
    pub table: ArcSwap<RouteTable>,
    pub hubs: ArcSwap<Hubs>,
    /// What this proxy's own probes found (see `health`).
    pub health: ArcSwap<HealthMap>,
    /// Sent after every round of probes.
    pub health_changed: watch::Sender<()>,
    /// One connection pool per hub replica.
    pub hub_clients: HubClients,
    pub connected: AtomicBool,
    /// Route watch streams opened (the first, then each reconnect).
    pub watch_connects: AtomicU64,
    /// Shutting down: the health check says so, so that the load balancer
    /// stops sending new requests before the listener closes.
    pub draining: AtomicBool,
    started: Instant,
    last_event_ms: AtomicU64,
}

impl Shared {
    pub fn new(static_hubs: Vec<String>) -> Shared {
        Shared {
            table: ArcSwap::from_pointee(RouteTable::default()),
            hubs: ArcSwap::from_pointee(Hubs {
                ordered: static_hubs,
            }),
            health: ArcSwap::from_pointee(Default::default()),
            health_changed: watch::channel(()).0,
            hub_clients: Default::default(),
            connected: AtomicBool::new(false),
            watch_connects: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            started: Instant::now(),
            last_event_ms: AtomicU64::new(0),
        }
    }

    pub fn last_event_age(&self) -> Option<Duration> {
        let at = self.last_event_ms.load(Ordering::Relaxed);
        (at > 0).then(|| {
            self.started
                .elapsed()
                .saturating_sub(Duration::from_millis(at))
        })
    }

    pub(crate) fn touch(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_event_ms.store(ms.max(1), Ordering::Relaxed);
    }
}
