//! Prometheus metrics, served at `/hub/metrics` (OpenMetrics text) with
//! JupyterHub's names where they apply, so its Grafana dashboards work:
//! - `jupyterhub_request_duration_seconds{method, handler, code}`: every
//!   HTTP request this replica answered; `handler` is the route's pattern
//!   (`/hub/api/users/{name}`), not the path, so the labels stay few;
//! - `jupyterhub_total_users`, `jupyterhub_running_servers` and
//!   `jupyterhub_active_users{period="24h"|"7d"|"30d"}`, read from this
//!   replica's applied state at each scrape (no barrier: a follower may be
//!   a few milliseconds behind);
//! - `jupyterhub_server_spawn_duration_seconds{status, reason}`, JupyterHub
//!   6's series ([`SpawnDurations`]): this replica observes the starts its
//!   spawn limits refused (`failure` with `throttled` or `too-many-users`);
//!   the leader's controller observes the spawns it ran.
//!
//! The composition root registers the rest (Raft's, the controller's) in
//! the same [`Registry`] before handing it here. Who may read it:
//! `read:metrics` (the admin role has it), or anyone with
//! `--authenticate-prometheus false`, as JupyterHub's
//! `authenticate_prometheus`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use quorumhub_core::time::now_ms;
use quorumhub_core::Cluster;
use quorumhub_state::Phase;

/// The `Content-Type` of a scrape.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Python `prometheus_client`'s default buckets, which JupyterHub's
/// request histogram uses.
const REQUEST_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// JupyterHub's `active_users` periods.
const PERIODS: [(&str, u64); 3] = [
    ("24h", 86_400_000),
    ("7d", 7 * 86_400_000),
    ("30d", 30 * 86_400_000),
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: &'static str,
    pub handler: String,
    pub code: u16,
}

type Requests = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// JupyterHub's spawn buckets (seconds).
const SPAWN_BUCKETS: [f64; 12] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SpawnLabels {
    status: &'static str,
    reason: &'static str,
}

/// JupyterHub 6's `jupyterhub_server_spawn_duration_seconds{status,
/// reason}`: `status` is `success`, `failure` or `error`; `reason` is empty,
/// or why a start was refused before it began (`throttled`,
/// `too-many-users`, `already-pending`).
#[derive(Clone)]
pub struct SpawnDurations {
    family: Family<SpawnLabels, Histogram, fn() -> Histogram>,
}

fn spawn_histogram() -> Histogram {
    Histogram::new(SPAWN_BUCKETS)
}

impl SpawnDurations {
    fn register(registry: &mut Registry) -> SpawnDurations {
        let family: Family<SpawnLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(spawn_histogram);
        // As JupyterHub does: the series exist before the first event, so
        // dashboards and alerts see zeros rather than nothing.
        for status in ["success", "failure", "error"] {
            let _ = family.get_or_create(&SpawnLabels { status, reason: "" });
        }
        for reason in ["throttled", "too-many-users", "already-pending"] {
            let _ = family.get_or_create(&SpawnLabels {
                status: "failure",
                reason,
            });
        }
        registry.register(
            "jupyterhub_server_spawn_duration_seconds",
            "Time taken for server spawning operation",
            family.clone(),
        );
        SpawnDurations { family }
    }

    /// One spawn that ended with `status` (and `reason`, or "") after `took`.
    pub fn observe(&self, status: &'static str, reason: &'static str, took: Duration) {
        self.family
            .get_or_create(&SpawnLabels { status, reason })
            .observe(took.as_secs_f64());
    }
}

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS)
}

/// The front end's metrics, registered in a registry the composition root
/// then completes.
#[derive(Clone)]
pub struct FrontEndMetrics {
    requests: Requests,
    spawns: SpawnDurations,
}

impl FrontEndMetrics {
    /// Register the request histogram and the state gauges of `cluster`.
    pub fn register(registry: &mut Registry, cluster: Arc<dyn Cluster>) -> FrontEndMetrics {
        let requests: Requests = Family::new_with_constructor(request_histogram);
        registry.register(
            "jupyterhub_request_duration_seconds",
            "Request duration for all HTTP requests",
            requests.clone(),
        );
        registry.register_collector(Box::new(StateGauges { cluster }));
        let spawns = SpawnDurations::register(registry);
        FrontEndMetrics { requests, spawns }
    }

    /// The spawn histogram, for the controller's observations.
    pub fn spawns(&self) -> SpawnDurations {
        self.spawns.clone()
    }
}

/// What `/hub/metrics` serves, and where requests are counted.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    front: FrontEndMetrics,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// `registry`, complete, with the front end's metrics in it.
    pub fn new(registry: Registry, front: FrontEndMetrics) -> Metrics {
        Metrics {
            registry: Arc::new(registry),
            front,
        }
    }

    /// A registry with only the front end's metrics (tests, or a front
    /// end without a Raft node behind it).
    pub fn of(cluster: Arc<dyn Cluster>) -> Metrics {
        let mut registry = Registry::default();
        let front = FrontEndMetrics::register(&mut registry, cluster);
        Metrics::new(registry, front)
    }

    /// Count one answered request.
    pub(crate) fn observe(&self, method: &'static str, handler: &str, code: u16, took: Duration) {
        self.front
            .requests
            .get_or_create(&RequestLabels {
                method,
                handler: handler.to_string(),
                code,
            })
            .observe(took.as_secs_f64());
    }

    /// Count a start refused by a spawn limit, as a failed spawn with the
    /// limit's reason (JupyterHub's `throttled`, `too-many-users`).
    pub(crate) fn spawn_refused(&self, reason: &'static str, took: Duration) {
        self.front.spawns.observe("failure", reason, took);
    }

    /// Every metric, as OpenMetrics text.
    pub fn render(&self) -> Result<String, fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// JupyterHub's state gauges, computed from the applied state at scrape
/// time: O(users), about a millisecond per 100k users.
struct StateGauges {
    cluster: Arc<dyn Cluster>,
}

impl fmt::Debug for StateGauges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StateGauges")
    }
}

impl Collector for StateGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let now = now_ms();
        let (total, running, active) = self.cluster.read(|s| {
            let running = s
                .active_servers()
                .filter(|(_, srv)| srv.phase == Phase::Running)
                .count();
            let mut active = [0i64; PERIODS.len()];
            for at in s.users.values().filter_map(|u| u.last_activity) {
                for (n, (_, period)) in active.iter_mut().zip(PERIODS) {
                    if now.saturating_sub(at) <= period {
                        *n += 1;
                    }
                }
            }
            (s.users.len() as i64, running as i64, active)
        });
        for (name, help, value) in [
            ("jupyterhub_total_users", "Total number of users", total),
            (
                "jupyterhub_running_servers",
                "The number of user servers currently running",
                running,
            ),
        ] {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let mut family = encoder.encode_descriptor(
            "jupyterhub_active_users",
            "Number of users who were active in the given time period",
            None,
            MetricType::Gauge,
        )?;
        for ((label, _), n) in PERIODS.iter().zip(active) {
            let labels = [("period", *label)];
            ConstGauge::new(n).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorumhub_core::limits::Limits;
    use quorumhub_core::memory::MemoryCluster;

    #[tokio::test]
    async fn a_scrape_shows_jupyterhubs_gauges_and_the_requests() {
        let cluster = Arc::new(MemoryCluster::new(1, &Limits::default()));
        let c: &dyn Cluster = &*cluster;
        for name in ["ada", "bob"] {
            quorumhub_core::ops::users::create(c, name.into(), false)
                .await
                .expect("user");
        }
        quorumhub_core::ops::users::record_activity(c, "ada".into(), None, now_ms())
            .await
            .expect("activity");
        let metrics = Metrics::of(cluster.clone());
        metrics.observe("GET", "/hub/api/users", 200, Duration::from_millis(3));
        let text = metrics.render().expect("render");
        for line in [
            "jupyterhub_total_users 2",
            "jupyterhub_running_servers 0",
            "jupyterhub_active_users{period=\"24h\"} 1",
            "jupyterhub_active_users{period=\"30d\"} 1",
            "jupyterhub_request_duration_seconds_count{method=\"GET\",handler=\"/hub/api/users\",code=\"200\"} 1",
            "jupyterhub_request_duration_seconds_bucket{le=\"0.005\",method=\"GET\",handler=\"/hub/api/users\",code=\"200\"} 1",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in:\n{text}");
        }
    }
}
