//! The proxy's Prometheus metrics, served on `--metrics-listen` (a port of
//! their own, off by default: bind it to an address only the scraper
//! reaches; it asks for no credential):
//! - `quorumhub_proxy_requests_total{kind, class}` and
//!   `quorumhub_proxy_request_duration_seconds{kind}` (until the response
//!   head): `kind` is `server` (a route's target), `hub` or `proxy` (its
//!   own health check), `class` the status class;
//! - `quorumhub_proxy_upstream_errors_total{kind}`: answers the proxy made
//!   because the upstream failed (unreachable, failed mid-request, given
//!   up on);
//! - read at each scrape: the route table's revision and size, whether
//!   the route watch is connected and how often it reconnected, hub
//!   replicas known, WebSockets open.
//!
//! The request path only increments handles made at start (no lookup, no
//! lock).

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::drain::Drain;
use crate::shared::Shared;

/// Where a request went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Server,
    Hub,
    Proxy,
}

const KINDS: [(Kind, &str); 3] = [
    (Kind::Server, "server"),
    (Kind::Hub, "hub"),
    (Kind::Proxy, "proxy"),
];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Seconds, 0.5 ms to 10 s.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindClass {
    kind: &'static str,
    class: &'static str,
}

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

pub(crate) struct ProxyMetrics {
    registry: Registry,
    /// By kind, then status class.
    requests: [[Counter; 5]; 3],
    durations: [Histogram; 3],
    upstream_errors: [Counter; 3],
}

impl fmt::Debug for ProxyMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProxyMetrics")
    }
}

fn slot(kind: Kind) -> usize {
    match kind {
        Kind::Server => 0,
        Kind::Hub => 1,
        Kind::Proxy => 2,
    }
}

impl ProxyMetrics {
    pub(crate) fn new(shared: Arc<Shared>, drain: Drain) -> ProxyMetrics {
        let mut registry = Registry::default();
        let requests_family: Family<KindClass, Counter> = Family::default();
        let durations_family: Family<KindLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(histogram);
        let errors_family: Family<KindLabel, Counter> = Family::default();
        // Made now, for every label set: the series exist from the start,
        // and the request path holds the handles.
        let requests = KINDS.map(|(_, kind)| {
            CLASSES.map(|class| {
                requests_family
                    .get_or_create(&KindClass { kind, class })
                    .clone()
            })
        });
        let durations =
            KINDS.map(|(_, kind)| durations_family.get_or_create(&KindLabel { kind }).clone());
        let upstream_errors =
            KINDS.map(|(_, kind)| errors_family.get_or_create(&KindLabel { kind }).clone());
        registry.register(
            "quorumhub_proxy_requests",
            "Requests answered, by where they went and the status class",
            requests_family,
        );
        registry.register(
            "quorumhub_proxy_request_duration_seconds",
            "Time until the response head, by where the request went",
            durations_family,
        );
        registry.register(
            "quorumhub_proxy_upstream_errors",
            "Answers made by the proxy because the upstream failed",
            errors_family,
        );
        registry.register_collector(Box::new(Gauges { shared, drain }));
        ProxyMetrics {
            registry,
            requests,
            durations,
            upstream_errors,
        }
    }

    pub(crate) fn answered(&self, kind: Kind, status: u16, took: Duration) {
        let class = match status {
            100..=199 => 0,
            200..=299 => 1,
            300..=399 => 2,
            400..=499 => 3,
            _ => 4,
        };
        self.requests[slot(kind)][class].inc();
        self.durations[slot(kind)].observe(took.as_secs_f64());
    }

    pub(crate) fn upstream_failed(&self, kind: Kind) {
        self.upstream_errors[slot(kind)].inc();
    }

    pub(crate) fn render(&self) -> Result<String, fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// What is read at each scrape.
struct Gauges {
    shared: Arc<Shared>,
    drain: Drain,
}

impl fmt::Debug for Gauges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Gauges")
    }
}

impl Collector for Gauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let table = self.shared.table.load();
        for (name, help, value) in [
            (
                "quorumhub_proxy_route_table_revision",
                "Revision of the route table this proxy holds",
                table.revision as i64,
            ),
            (
                "quorumhub_proxy_routes",
                "Routes in the table this proxy holds",
                table.routes.len() as i64,
            ),
            (
                "quorumhub_proxy_watch_connected",
                "1 while the route watch is connected to a hub replica",
                self.shared.connected.load(Ordering::Relaxed) as i64,
            ),
            (
                "quorumhub_proxy_hubs",
                "Hub replicas this proxy knows",
                self.shared.hubs.load().ordered.len() as i64,
            ),
            (
                "quorumhub_proxy_websockets_open",
                "Upgraded connections (WebSockets) open",
                self.drain.active() as i64,
            ),
        ] {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        let connects = self.shared.watch_connects.load(Ordering::Relaxed);
        let c = ConstCounter::new(connects.saturating_sub(1));
        c.encode(encoder.encode_descriptor(
            "quorumhub_proxy_watch_reconnects",
            "Times the route watch was lost and opened again",
            None,
            c.metric_type(),
        )?)?;
        Ok(())
    }
}

/// Connections the metrics port holds at once; more are closed at once
/// (a scraper needs one).
const MAX_CONNECTIONS: usize = 16;

/// Serve `GET /metrics` on `listener` until `stop`.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<ProxyMetrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => Some(r),
            _ = stop.wait_for(|s| *s) => None,
        };
        let stream = match accepted {
            None => return,
            Some(Ok((stream, _))) => stream,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(
                "metrics listener: {MAX_CONNECTIONS} connections open; closing one more"
            );
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&metrics, req.uri().path())) }
            });
            let conn = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            // A scraper is one client on a private port; still, a silent
            // connection is closed rather than held.
            let _ = tokio::time::timeout(
                Duration::from_secs(30),
                conn.serve_connection(TokioIo::new(stream), service),
            )
            .await;
        });
    }
}

fn answer(
    metrics: &ProxyMetrics,
    path: &str,
) -> http::Response<http_body_util::Full<bytes::Bytes>> {
    let (status, kind, body) = match (path, metrics.render()) {
        ("/metrics", Ok(text)) => (
            http::StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            text,
        ),
        ("/metrics", Err(e)) => (
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            format!("could not encode the metrics: {e}\n"),
        ),
        _ => (
            http::StatusCode::NOT_FOUND,
            "text/plain",
            "the proxy's metrics are at /metrics\n".to_string(),
        ),
    };
    let mut resp = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(kind) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_counted_by_kind_and_class() {
        let shared = Arc::new(Shared::new(vec!["127.0.0.1:1".into()]));
        let m = ProxyMetrics::new(shared, Drain::default());
        m.answered(Kind::Hub, 201, Duration::from_millis(2));
        m.answered(Kind::Server, 503, Duration::from_millis(1));
        m.upstream_failed(Kind::Server);
        let text = m.render().expect("render");
        for line in [
            "quorumhub_proxy_requests_total{kind=\"hub\",class=\"2xx\"} 1",
            "quorumhub_proxy_requests_total{kind=\"server\",class=\"5xx\"} 1",
            "quorumhub_proxy_requests_total{kind=\"proxy\",class=\"2xx\"} 0",
            "quorumhub_proxy_upstream_errors_total{kind=\"server\"} 1",
            "quorumhub_proxy_request_duration_seconds_count{kind=\"hub\"} 1",
            "quorumhub_proxy_hubs 1",
            "quorumhub_proxy_watch_connected 0",
            "quorumhub_proxy_watch_reconnects_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in:\n{text}");
        }
        assert_eq!(answer(&m, "/other").status(), http::StatusCode::NOT_FOUND);
    }
}
