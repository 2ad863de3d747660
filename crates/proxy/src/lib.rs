//! The stateless proxy.
//!
//! A stack of small parts, each testable alone:
//! - [`table`]: the immutable route table and its longest-prefix lookup;
//! - [`watch`]: follows `Routes.Watch` on any hub replica, fails over, and
//!   swaps in each new table (arc-swap: the request path never locks);
//! - [`health`]: probes each hub replica, so `/hub/...` goes to the
//!   replica that leads now and skips silent ones;
//! - [`forward`]: one request to its upstream, WebSocket upgrades spliced;
//! - [`upload`]: a request body streamed upstream, retried only if unsent;
//! - [`server`]: serving through the edge (`quorumhub-edge`: timeouts,
//!   limits, the client address), and the shutdown sequence; [`drain`]:
//!   the WebSockets still open;
//! - [`metrics`]: Prometheus metrics on `--metrics-listen`;
//! - [`shared`]: what the tasks share; [`client`]: the body type and the
//!   HTTP clients. No two modules import each other, directly or not
//!   (crates/hub/tests/layering.rs, for every crate of the hub side and
//!   this one).
//!
//! The proxy holds no state of its own that matters: a restarted proxy
//! rebuilds its table from any replica. It must never clear its table
//! because hubs stop answering: running servers stay reachable.

mod client;
mod drain;
mod forward;
mod health;
mod metrics;
mod server;
mod shared;
pub mod table;
mod upload;
mod watch;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tonic::metadata::{Ascii, MetadataValue};

#[derive(clap::Args, Debug, Clone)]
pub struct ProxyConfig {
    /// Address to listen on, e.g. 127.0.0.1:8000
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: std::net::SocketAddr,
    /// Hub replica gRPC endpoints to watch, e.g. 127.0.0.1:7001 (repeat or comma-separate)
    #[arg(long = "hub-grpc", value_delimiter = ',', required = true)]
    pub hub_grpc: Vec<String>,
    /// Hub replica HTTP addresses used until the first heartbeat names them (host:port)
    #[arg(long = "hub-http", value_delimiter = ',')]
    pub hub_http: Vec<String>,
    /// Cluster secret (or env QUORUMHUB_CLUSTER_SECRET); prefer
    /// --cluster-secret-file, which keeps it out of /proc/<pid>/environ.
    #[arg(
        long,
        env = "QUORUMHUB_CLUSTER_SECRET",
        hide_env_values = true,
        default_value = "",
        hide_default_value = true
    )]
    pub cluster_secret: String,
    /// File holding the cluster secret (mode 0600 or stricter). Only for
    /// hubs in legacy mode (no --proxy-secret-file of their own); give
    /// --proxy-secret-file instead.
    #[arg(long, env = "QUORUMHUB_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<std::path::PathBuf>,
    /// The proxy credential's file (mode 0600 or stricter): the proxy
    /// presents its first line to watch routes, which is all the hubs let
    /// it do. Re-read on SIGHUP (for a rotation). Takes the place of the
    /// cluster secret.
    #[arg(long, env = "QUORUMHUB_PROXY_SECRET_FILE")]
    pub proxy_secret_file: Option<std::path::PathBuf>,
    /// A watch stream silent this long is dead: fail over.
    #[arg(long, default_value = "3000")]
    pub stream_timeout_ms: u64,
    /// Ask every hub replica `GET /hub/health` this often, to send
    /// `/hub/...` to the one that leads now and skip silent ones.
    #[arg(long, default_value = "200")]
    pub hub_probe_interval_ms: u64,
    /// A hub replica that does not answer its probe within this is sent
    /// requests last; a request waiting on it is given up (504) after two
    /// such probes in a row.
    #[arg(long, default_value = "300")]
    pub hub_probe_timeout_ms: u64,
    /// TCP connect timeout to hub replicas and users' servers.
    #[arg(long, default_value = "1000")]
    pub connect_timeout_ms: u64,
    /// How long shutdown waits for requests and WebSockets in flight.
    #[arg(long, default_value = "10000")]
    pub drain_timeout_ms: u64,
    /// On SIGTERM, keep serving this long while /_proxy/health answers 503,
    /// so a load balancer takes this proxy out before its listener closes.
    /// Set it above the balancer's check interval times its fall count.
    #[arg(long, default_value = "0")]
    pub drain_delay_ms: u64,
    /// Name used in logs and in WatchRequest.watcher
    #[arg(long, default_value = "proxy")]
    pub name: String,
    /// Largest request body passed to a hub replica (`/hub/...`), streamed;
    /// larger gets 413 here. The hub's own limits per endpoint are smaller
    /// (`--max-body-bytes` and others); no hub limit can exceed 1 MiB.
    #[arg(long, default_value = "1048576")]
    pub max_hub_body_bytes: u64,
    /// Serve Prometheus metrics at `http://ADDR/metrics` (no credential:
    /// bind an address only the scraper reaches). Off unless given.
    #[arg(long)]
    pub metrics_listen: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub edge: quorumhub_edge::EdgeArgs,
    #[command(flatten)]
    pub tls: quorumhub_edge::TlsArgs,
    #[command(flatten)]
    pub grpc_tls: quorumhub_proto::grpc_tls::GrpcTlsArgs,
}

/// The `authorization` value the proxy presents: the first line of
/// --proxy-secret-file, else of the cluster secret (legacy hubs).
fn presented_secret(config: &ProxyConfig) -> anyhow::Result<MetadataValue<Ascii>> {
    let text = match &config.proxy_secret_file {
        Some(path) => quorumhub_proto::secret_file::read_secret_file("--proxy-secret-file", path)?,
        None => quorumhub_proto::secret_file::secret_from(
            Some(&config.cluster_secret),
            "--cluster-secret (QUORUMHUB_CLUSTER_SECRET)",
            config.cluster_secret_file.as_deref(),
            "--cluster-secret-file",
        )?
        .context(
            "the proxy needs its credential: give --proxy-secret-file (or, for hubs in legacy \
             mode, --cluster-secret-file)",
        )?,
    };
    bearer(&text)
}

fn bearer(text: &str) -> anyhow::Result<MetadataValue<Ascii>> {
    let first = quorumhub_proto::secret_file::secret_lines(text)
        .into_iter()
        .next()
        .context("the proxy secret file holds no secret; write one per line")?;
    format!("Bearer {first}")
        .parse()
        .context("the proxy secret must be printable ASCII without spaces")
}

/// SIGHUP: re-read --proxy-secret-file and present its first line from the
/// next watch on (a running watch stream is not interrupted).
async fn reload_secret_on_sighup(
    path: std::path::PathBuf,
    secret: Arc<arc_swap::ArcSwap<MetadataValue<Ascii>>>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGHUP; the proxy secret is reloaded only by a restart");
            return;
        }
    };
    while hup.recv().await.is_some() {
        let fresh = quorumhub_proto::secret_file::read_secret_file("--proxy-secret-file", &path)
            .map_err(anyhow::Error::from)
            .and_then(|t| bearer(&t));
        match fresh {
            Ok(v) => {
                secret.store(Arc::new(v));
                tracing::info!("SIGHUP: proxy secret reloaded");
            }
            Err(e) => tracing::error!(
                error = %format!("{e:#}"),
                "SIGHUP: proxy secret not reloaded (the old one stays); fix the file and send SIGHUP again"
            ),
        }
    }
}

pub async fn run(
    config: ProxyConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if config.hub_grpc.is_empty() {
        anyhow::bail!("--hub-grpc needs at least one hub replica");
    }
    if let Some(tls) = config
        .grpc_tls
        .load()
        .context("loading the gRPC TLS files")?
    {
        quorumhub_proto::grpc_tls::install(tls);
    }
    let secret = Arc::new(arc_swap::ArcSwap::from_pointee(presented_secret(&config)?));
    if let Some(path) = config.proxy_secret_file.clone() {
        tokio::spawn(reload_secret_on_sighup(path, secret.clone()));
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}; is another proxy using it?",
                config.listen
            )
        })?;
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (--metrics-listen)"))?,
        ),
        None => None,
    };
    let shared = Arc::new(shared::Shared::new(config.hub_http.clone()));
    let drain = drain::Drain::default();
    let metrics = Arc::new(metrics::ProxyMetrics::new(shared.clone(), drain.clone()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let watcher = watch::Watcher {
        endpoints: config.hub_grpc.clone(),
        secret,
        stream_timeout: Duration::from_millis(config.stream_timeout_ms.max(100)),
        name: config.name.clone(),
    };
    let span = tracing::info_span!("proxy", name = %config.name);
    let watch_task = tokio::spawn(tracing::Instrument::instrument(
        watcher.run(shared.clone(), stop_rx.clone()),
        span.clone(),
    ));
    let connect_timeout = Duration::from_millis(config.connect_timeout_ms.max(1));
    let client = client::client(connect_timeout);
    let tls = match (&config.tls.tls_cert, &config.tls.tls_key) {
        (Some(cert), Some(key)) => {
            let tls = quorumhub_edge::Tls::new(cert.clone(), key.clone())?;
            tls.reload_on_sighup();
            Some(tls)
        }
        _ => None,
    };
    let edge = quorumhub_edge::Edge::new(
        config.edge.clone(),
        quorumhub_edge::TrustedHops::default(),
        "proxy",
        tls,
    );
    let scheme = edge.scheme();
    if let Some(from) = config.tls.tls_redirect_from {
        let plain = tokio::net::TcpListener::bind(from)
            .await
            .with_context(|| format!("cannot listen on {from} (--tls-redirect-from)"))?;
        let redirect_edge = quorumhub_edge::Edge::new(
            config.edge.clone(),
            quorumhub_edge::TrustedHops::default(),
            "proxy-redirect",
            None,
        );
        let https_port = config.listen.port();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let handler = move |req: http::Request<quorumhub_edge::RequestBody>| async move {
                quorumhub_edge::tls::https_redirect(&req, https_port)
            };
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            redirect_edge.serve(plain, handler, stopped).await;
        });
        tracing::info!(%from, "redirecting plain HTTP to HTTPS");
    }
    shared.hub_clients.set_connect_timeout(connect_timeout);
    let health_task = tokio::spawn(tracing::Instrument::instrument(
        health::run(
            shared.clone(),
            client::unpooled_client(connect_timeout),
            Duration::from_millis(config.hub_probe_interval_ms.max(10)),
            Duration::from_millis(config.hub_probe_timeout_ms.max(10)),
            stop_rx.clone(),
        ),
        span.clone(),
    ));
    if let Some(listener) = metrics_listener {
        tracing::info!(listen = ?config.metrics_listen, "serving metrics at /metrics");
        tokio::spawn(metrics::serve(listener, metrics.clone(), stop_rx.clone()));
    }
    tracing::info!(listen = %config.listen, hubs = ?config.hub_grpc, "proxy serving");
    tracing::Instrument::instrument(
        server::serve(
            listener,
            edge,
            forward::Forwarder {
                shared,
                client,
                drain,
                max_hub_body: config.max_hub_body_bytes,
                scheme,
                metrics,
            },
            shutdown,
            drain::DrainTiming {
                delay: Duration::from_millis(config.drain_delay_ms),
                timeout: Duration::from_millis(config.drain_timeout_ms),
            },
        ),
        span,
    )
    .await;
    let _ = stop_tx.send(true);
    let _ = watch_task.await;
    let _ = health_task.await;
    tracing::info!("proxy stopped");
    Ok(())
}
