//! The replica's metrics, in one registry with the front end's
//! (`quorumhub_http::metrics`: requests and JupyterHub's state gauges),
//! served at `/hub/metrics`:
//! - Raft, `quorumhub_raft_*`: term, role, leader, log, committed and applied indexes,
//!   snapshot and log size, replication lag per follower (on the leader),
//!   append latency (write and flush of each batch), and counters of leader
//!   changes and elections seen by this replica;
//! - `quorumhub_cluster_version` and `quorumhub_build_info{version}`;
//! - the controller, with JupyterHub's names:
//!   `jupyterhub_server_spawn_duration_seconds{status, reason}` (the front
//!   end's histogram, which also counts the starts its spawn limits refused)
//!   and `jupyterhub_server_stop_seconds{status}`, observed by the leader that
//!   started or stopped the server (a spawn adopted from a previous leader
//!   is not observed: its start was not seen here).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::hub::Hub;

/// JupyterHub's stop buckets (seconds).
const STOP_BUCKETS: [f64; 9] = [0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0];

/// A histogram of append latencies, made before the log store is handed to
/// Raft (which takes the store), registered once the replica exists.
pub(crate) fn append_latency() -> Histogram {
    // 50 µs to about 3.3 s.
    Histogram::new(exponential_buckets(0.00005, 2.0, 17))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StopLabels {
    status: &'static str,
}

/// What the controller observes.
pub(crate) struct ControllerMetrics {
    spawns: quorumhub_http::SpawnDurations,
    stops: Family<StopLabels, Histogram, fn() -> Histogram>,
}

fn stop_histogram() -> Histogram {
    Histogram::new(STOP_BUCKETS)
}

/// How a spawn ended, as JupyterHub labels it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SpawnOutcome {
    /// The server answered and its route is published.
    Success,
    /// The spawner could not start it, or it never became ready.
    Failure,
}

impl ControllerMetrics {
    /// `spawns` is the front end's histogram (registered with it), which
    /// also counts the starts a spawn limit refused.
    fn register(
        registry: &mut Registry,
        spawns: quorumhub_http::SpawnDurations,
    ) -> ControllerMetrics {
        let stops: Family<StopLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(stop_histogram);
        // As JupyterHub does: the series exist before the first event, so
        // dashboards and alerts see zeros rather than nothing.
        for status in ["success", "failure"] {
            let _ = stops.get_or_create(&StopLabels { status });
        }
        registry.register(
            "jupyterhub_server_stop_seconds",
            "Time taken for server stopping operation",
            stops.clone(),
        );
        ControllerMetrics { spawns, stops }
    }

    pub(crate) fn spawned(&self, outcome: SpawnOutcome, took: Duration) {
        let status = match outcome {
            SpawnOutcome::Success => "success",
            SpawnOutcome::Failure => "failure",
        };
        self.spawns.observe(status, "", took);
    }

    pub(crate) fn stopped(&self, recorded: bool, took: Duration) {
        let status = if recorded { "success" } else { "failure" };
        self.stops
            .get_or_create(&StopLabels { status })
            .observe(took.as_secs_f64());
    }
}

/// The replica's registry, complete: the front end's metrics, Raft's and
/// the controller's. Also starts the task that counts leader changes and
/// elections until `stop`.
pub(crate) fn registry(
    hub: &Arc<Hub>,
    append_latency: Histogram,
    log: LogProbes,
    stop: watch::Receiver<bool>,
) -> (quorumhub_http::Metrics, Arc<ControllerMetrics>) {
    let mut registry = Registry::default();
    let front = quorumhub_http::FrontEndMetrics::register(&mut registry, hub.clone());
    let leader_changes = Counter::<u64>::default();
    let elections = Counter::<u64>::default();
    registry.register(
        "quorumhub_raft_leader_changes",
        "Times this replica saw the leader change (including to none)",
        leader_changes.clone(),
    );
    registry.register(
        "quorumhub_raft_elections",
        "Terms this replica saw begin: each is an election",
        elections.clone(),
    );
    registry.register(
        "quorumhub_raft_append_duration_seconds",
        "Time to write and flush one batch of log entries to disk",
        append_latency,
    );
    registry.register_collector(Box::new(RaftGauges {
        hub: hub.clone(),
        log,
    }));
    let controller = Arc::new(ControllerMetrics::register(&mut registry, front.spawns()));
    tokio::spawn(count_changes(hub.clone(), leader_changes, elections, stop));
    (quorumhub_http::Metrics::new(registry, front), controller)
}

/// Count leader changes and new terms as the Raft metrics show them.
async fn count_changes(
    hub: Arc<Hub>,
    leader_changes: Counter<u64>,
    elections: Counter<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut metrics = hub.raft.metrics();
    let (mut leader, mut term) = {
        let m = metrics.borrow();
        (m.current_leader, m.current_term)
    };
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            r = metrics.changed() => if r.is_err() { return },
        }
        let m = metrics.borrow_and_update();
        if m.current_leader != leader {
            leader_changes.inc();
            leader = m.current_leader;
        }
        if m.current_term > term {
            elections.inc_by(m.current_term - term);
            term = m.current_term;
        }
    }
}

/// What the log store answers at each scrape once Raft owns it.
pub(crate) struct LogProbes {
    /// Bytes on disk.
    pub bytes: Box<dyn Fn() -> Option<u64> + Send + Sync>,
    /// The committed index this replica recorded (openraft's metrics have
    /// none).
    pub committed: Box<dyn Fn() -> Option<u64> + Send + Sync>,
}

/// Raft's gauges, read from openraft's metrics at each scrape.
struct RaftGauges {
    hub: Arc<Hub>,
    log: LogProbes,
}

impl fmt::Debug for RaftGauges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RaftGauges")
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for RaftGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let m = self.hub.raft.metrics().borrow().clone();
        let index = |i: Option<u64>| i.map(|i| i as i64).unwrap_or(0);
        let last_log = index(m.last_log_index);
        let purged = index(m.purged.map(|l| l.index));
        let e = &mut encoder;
        gauge(
            e,
            "quorumhub_raft_term",
            "The current Raft term",
            m.current_term as i64,
        )?;
        gauge(
            e,
            "quorumhub_raft_is_leader",
            "1 if this replica leads",
            (m.state == ServerState::Leader) as i64,
        )?;
        gauge(
            e,
            "quorumhub_raft_leader_id",
            "The node id of the leader this replica knows (0: none)",
            index(m.current_leader),
        )?;
        let mut states = e.encode_descriptor(
            "quorumhub_raft_state",
            "1 for this replica's Raft role",
            None,
            MetricType::Gauge,
        )?;
        for (name, s) in [
            ("leader", ServerState::Leader),
            ("follower", ServerState::Follower),
            ("candidate", ServerState::Candidate),
            ("learner", ServerState::Learner),
            ("shutdown", ServerState::Shutdown),
        ] {
            let labels = [("state", name)];
            ConstGauge::new((m.state == s) as i64).encode(states.encode_family(&labels)?)?;
        }
        gauge(
            e,
            "quorumhub_raft_last_log_index",
            "Index of the last entry in this replica's log",
            last_log,
        )?;
        gauge(
            e,
            "quorumhub_raft_applied_index",
            "Index of the last entry applied to this replica's state",
            index(m.last_applied.map(|l| l.index)),
        )?;
        gauge(
            e,
            "quorumhub_raft_snapshot_index",
            "Index the latest snapshot covers",
            index(m.snapshot.map(|l| l.index)),
        )?;
        gauge(
            e,
            "quorumhub_raft_log_entries",
            "Entries in the log after the purge point",
            (last_log - purged).max(0),
        )?;
        gauge(
            e,
            "quorumhub_raft_committed_index",
            "Index of the last entry this replica knows is on a quorum",
            index((self.log.committed)()),
        )?;
        if let Some(bytes) = (self.log.bytes)() {
            gauge(
                e,
                "quorumhub_raft_log_bytes",
                "Bytes the log takes on disk",
                bytes as i64,
            )?;
        }
        if let Some((bytes, _)) = self.hub.sm.current_snapshot_size() {
            gauge(
                e,
                "quorumhub_raft_snapshot_bytes",
                "Size of the latest snapshot (sealed file)",
                bytes as i64,
            )?;
        }
        gauge(
            e,
            "quorumhub_raft_voters",
            "Voters in the membership this replica knows",
            m.membership_config.membership().voter_ids().count() as i64,
        )?;
        gauge(
            e,
            "quorumhub_cluster_version",
            "The log format every member has agreed on",
            self.hub.read(|s| s.cluster_version) as i64,
        )?;
        if let Some(ms) = m.millis_since_quorum_ack {
            gauge(
                e,
                "quorumhub_raft_millis_since_quorum_ack",
                "On the leader: time since a quorum last acknowledged it",
                ms as i64,
            )?;
        }
        if let Some(replication) = &m.replication {
            let mut lag = e.encode_descriptor(
                "quorumhub_raft_replication_lag_entries",
                "On the leader: entries each other member still lacks",
                None,
                MetricType::Gauge,
            )?;
            for (id, matched) in replication.iter().filter(|(id, _)| **id != m.id) {
                let node = id.to_string();
                let labels = [("follower", node.as_str())];
                let behind = last_log - index(matched.map(|l| l.index));
                ConstGauge::new(behind.max(0)).encode(lag.encode_family(&labels)?)?;
            }
        }
        let mut info = e.encode_descriptor(
            "quorumhub_build_info",
            "The build this replica runs (value 1)",
            None,
            MetricType::Gauge,
        )?;
        let labels = [("version", env!("CARGO_PKG_VERSION"))];
        ConstGauge::new(1i64).encode(info.encode_family(&labels)?)?;
        Ok(())
    }
}
