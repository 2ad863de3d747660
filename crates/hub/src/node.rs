//! Start a replica: data dir, Raft node, gRPC and HTTP servers, bootstrap,
//! controller; run until the shutdown signal.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use quorumhub_proto::v1::admin_server::AdminServer;
use quorumhub_proto::v1::raft_server::RaftServer;
use quorumhub_proto::v1::routes_server::RoutesServer;
use quorumhub_raft::auth::{ClientAuth, ServerAuth};
use quorumhub_raft::datadir::DataDir;
use quorumhub_raft::election::{Election, Timing};
use quorumhub_raft::log_store::LogStore;
use quorumhub_raft::network::Network;
use quorumhub_raft::service::RaftService;
use quorumhub_raft::state_machine::StateMachineStore;
use quorumhub_raft::Raft;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;

use crate::config::HubConfig;
use crate::grpc::admin::AdminService;
use crate::grpc::routes::RoutesService;
use crate::hub::Hub;

/// Largest gRPC message accepted (snapshots travel in chunks below this).
const MAX_MESSAGE: usize = 256 << 20;

/// A secret in two roles' files has both roles: right while moving off
/// legacy mode, wrong if left so.
fn warn_shared(keyring: &quorumhub_raft::auth::Keyring) {
    for (a, b) in keyring.shared_roles() {
        tracing::warn!(
            "the same secret is in the files of the {} and the {}: it has both roles; rotate one \
             of them to a secret of its own (docs/operations.md, Credentials)",
            a.credential(),
            b.credential()
        );
    }
}

/// On SIGHUP, re-read the credential files: the keyring this replica
/// accepts and the cluster secret it presents (the first line). A file
/// that does not read or check keeps the credentials as they were.
async fn reload_credentials_on_sighup(
    config: Arc<HubConfig>,
    server: ServerAuth,
    client: ClientAuth,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGHUP; credentials are reloaded only by a restart");
            return;
        }
    };
    while hup.recv().await.is_some() {
        match config.reload_credentials() {
            Ok((cluster, keyring)) => {
                if let Err(e) = client.set(&cluster, quorumhub_raft::auth::Role::Replica) {
                    tracing::error!(error = %e, "SIGHUP: credentials not reloaded; fix the file and send SIGHUP again");
                    continue;
                }
                let legacy: Vec<&str> = keyring.legacy_roles().iter().map(|r| r.name()).collect();
                warn_shared(&keyring);
                server.replace(keyring);
                tracing::info!(?legacy, "SIGHUP: credentials reloaded");
            }
            Err(e) => tracing::error!(
                error = %e,
                "SIGHUP: credentials not reloaded (the old ones stay in force); fix the file and send SIGHUP again"
            ),
        }
    }
}

/// Run one replica until `shutdown` resolves.
pub async fn run(
    config: HubConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut config = config;
    config.load_secret_files()?;
    config.validate()?;
    // Read once: the front end and the controller offer the same list.
    let profiles = Arc::new(config.profiles()?);
    let config = Arc::new(config);
    if config.spawner.servers_as_hub_user() {
        tracing::warn!(
            "--spawner-run-as-hub-user: every server runs as the hub's own Unix user, so each \
             user's server can read the others' files, the hub's data dir and its secrets; \
             use it for development only"
        );
    }
    let grpc_tls = config
        .grpc_tls
        .load()
        .context("loading the gRPC TLS files")?;
    if let Some(tls) = &grpc_tls {
        quorumhub_proto::grpc_tls::install(tls.clone());
        tracing::info!("gRPC: mutual TLS (peers verified against --grpc-tls-ca)");
    }
    let auth = ClientAuth::new(&config.cluster_secret)?;
    let keyring = config.keyring()?;
    for role in keyring.legacy_roles() {
        tracing::warn!(
            "no --{}-secret-file: the cluster secret is accepted as the {} too (legacy mode); \
             give each role its own secret, see docs/operations.md, Credentials",
            role.name(),
            role.credential()
        );
    }
    warn_shared(&keyring);
    let server_auth = ServerAuth::new(keyring);
    crate::preflight::check_peers(&config, &auth).await?;
    let Store {
        data_dir,
        mut log_store,
        sm,
    } = open_store(&config)?;
    let append_latency = crate::metrics::append_latency();
    log_store.observe_appends({
        let h = append_latency.clone();
        Arc::new(move |took, _entries| h.observe(took.as_secs_f64()))
    });
    let log_probes = crate::metrics::LogProbes {
        bytes: Box::new(log_store.size_probe()),
        committed: Box::new(log_store.committed_probe()),
    };

    // Bind both listeners before anything starts, so a taken port fails fast.
    let grpc_listener = TcpListener::bind(config.grpc_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen for gRPC on {}; is another replica using it?",
                config.grpc_listen
            )
        })?;
    let http_listener = TcpListener::bind(config.http_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen for HTTP on {}; is another replica using it?",
                config.http_listen
            )
        })?;

    let (raft, election, hub) = start_raft(&config, auth, log_store, sm).await?;

    // Shutdown runs in two steps: `drain` closes the HTTP API and the route
    // watches (proxies move to another replica), `stop` then ends gRPC (and
    // with it this replica's part in Raft), bootstrap and the controller.
    let (drain_tx, drain_rx) = watch::channel(false);
    let (unwatch_tx, unwatch_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    tokio::spawn(reload_credentials_on_sighup(
        config.clone(),
        server_auth.clone(),
        hub.auth.clone(),
    ));
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &grpc_tls {
        builder = builder
            .tls_config(tls.server())
            .context("the gRPC TLS certificate or key does not load; check --grpc-tls-cert and --grpc-tls-key (PEM)")?;
    }
    let grpc = builder
        .add_service(
            server_auth.guard(
                RaftServer::new(RaftService::new(
                    raft.clone(),
                    config.cluster_id.clone(),
                    election.clone(),
                ))
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            ),
        )
        .add_service(
            server_auth.guard(
                AdminServer::new(AdminService::new(hub.clone()))
                    .max_decoding_message_size(MAX_MESSAGE)
                    .max_encoding_message_size(MAX_MESSAGE),
            ),
        )
        .add_service(server_auth.guard(RoutesServer::new(RoutesService::new(
            hub.clone(),
            unwatch_rx,
        ))))
        .serve_with_incoming_shutdown(
            TcpListenerStream::new(grpc_listener),
            stopped(stop_rx.clone()),
        );
    let grpc_task = tokio::spawn(grpc);

    // The HTTP port through the edge: header, body and send timeouts,
    // connection and request caps; the client address is believed from
    // `--trusted-proxies` only (loopback unless configured).
    let edge = quorumhub_edge::Edge::new(
        config.edge.clone(),
        quorumhub_edge::TrustedHops::loopback(),
        "hub-http",
        None,
    );
    let (metrics, controller_metrics) =
        crate::metrics::registry(&hub, append_latency, log_probes, stop_rx.clone());
    let router = quorumhub_http::router(hub.clone(), config.http_config(profiles.clone()), metrics);
    let handler = move |req: http::Request<quorumhub_edge::RequestBody>| {
        let router = router.clone();
        async move {
            use tower::ServiceExt;
            match router.oneshot(req.map(axum::body::Body::new)).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            }
        }
    };
    let drain = stopped(drain_rx.clone());
    let http_task = tokio::spawn(async move {
        edge.serve(http_listener, handler, drain)
            .await
            .shutdown()
            .await;
        Ok::<(), std::io::Error>(())
    });

    tracing::info!(
        grpc = %config.grpc_listen,
        http = %config.http_listen,
        cluster = %config.cluster_id,
        "replica serving"
    );

    spawn_replica_tasks(&hub, &election, &stop_rx);
    let spawners = quorumhub_spawner::Spawners::from_args(
        &config.spawner,
        &quorumhub_spawner::SpawnerContext {
            cluster_id: config.cluster_id.clone(),
            servers_dir: config.data_dir.join("servers"),
        },
    );
    tokio::spawn(crate::controller::run(
        hub.clone(),
        Arc::new(spawners),
        profiles,
        controller_metrics,
        stop_rx.clone(),
    ));

    let died = tokio::select! {
        _ = shutdown => false,
        _ = raft_stopped(&hub) => true,
    };
    let signals = StopSignals {
        unwatch: unwatch_tx,
        drain: drain_tx,
        stop: stop_tx,
    };
    graceful_stop(&hub, signals, http_task, grpc_task).await;
    drop(data_dir);
    if died {
        anyhow::bail!(
            "Raft stopped on its own, most likely on a storage error (logged above, e.g. \
             \"No space left on device\"); nothing acknowledged is lost. Fix the cause, then start \
             this replica again: it verifies its store and catches up"
        );
    }
    Ok(())
}

/// What every replica runs beside its servers, until `stop`: the pre-vote
/// election, forming the cluster and the bootstrap admin, the cluster
/// version gate.
pub(crate) fn spawn_replica_tasks(
    hub: &Arc<Hub>,
    election: &Arc<Election>,
    stop: &watch::Receiver<bool>,
) {
    tokio::spawn(
        election
            .clone()
            .run(hub.raft.clone(), hub.id, hub.auth.clone(), stop.clone()),
    );
    tokio::spawn(crate::bootstrap::run(hub.clone(), stop.clone()));
    tokio::spawn(crate::version::run(hub.clone(), stop.clone()));
    // Checked at start-up (`HubConfig::validate`).
    let runner = quorumhub_spawner::ServiceRunner::new(hub.config.data_dir.join("services"));
    tokio::spawn(crate::service_sync::janitor(
        hub.clone(),
        runner.clone(),
        stop.clone(),
    ));
    match hub.config.services() {
        Ok(services) => {
            tokio::spawn(crate::service_sync::run(
                hub.clone(),
                services,
                runner,
                stop.clone(),
            ));
        }
        Err(e) => {
            tracing::error!(error = %e, "the services file changed since start-up; services not synced")
        }
    }
    match hub.config.roles() {
        Ok(Some(roles)) => {
            tokio::spawn(crate::role_sync::run(hub.clone(), roles, stop.clone()));
        }
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %e, "the roles file changed since start-up; roles not synced")
        }
    }
}

/// A replica's verified data dir and its two stores.
pub(crate) struct Store {
    pub data_dir: DataDir,
    pub log_store: LogStore,
    pub sm: StateMachineStore,
}

/// Open and verify the data dir and the stores in it.
pub(crate) fn open_store(config: &HubConfig) -> anyhow::Result<Store> {
    let data_dir = DataDir::open(&config.data_dir, &config.cluster_id, config.node_id)?;
    if config.spawner.servers_as_user_accounts() {
        make_private(&config.data_dir)?;
    }
    let (log_store, summary) = LogStore::open(&data_dir.raft_dir())?;
    let sm = StateMachineStore::open(&data_dir.snapshot_dir())?;
    let shared = sm.shared();
    let snapshot_revision = shared.read(|d| d.state.revision);
    tracing::info!(
        data_dir = %config.data_dir.display(),
        fresh = data_dir.fresh,
        log_entries = summary.entries,
        last_index = ?summary.last_index,
        snapshot_revision,
        "data dir verified"
    );
    Ok(Store {
        data_dir,
        log_store,
        sm,
    })
}

/// Start the Raft node over the stores, and the replica around it.
pub(crate) async fn start_raft(
    config: &Arc<HubConfig>,
    auth: ClientAuth,
    log_store: LogStore,
    sm: StateMachineStore,
) -> anyhow::Result<(Raft, Arc<Election>, Arc<Hub>)> {
    let shared = sm.shared();
    let raft_config = Arc::new(
        config
            .raft_config()
            .validate()
            .context("invalid Raft timing configuration")?,
    );
    let network = Network::new(auth.clone(), config.cluster_id.clone())
        .max_append_bytes(config.raft.raft_max_append_bytes);
    let election = Election::new(
        Timing::from_config(&raft_config),
        log_store.clone(),
        config.cluster_id.clone(),
    );
    let raft = Raft::new(config.node_id, raft_config, network, log_store, sm)
        .await
        .context("starting the Raft node")?;
    let hub = Arc::new(Hub::new(
        raft.clone(),
        shared,
        config.clone(),
        auth,
        election.clone(),
    ));
    Ok((raft, election, hub))
}

/// Resolves when the Raft node stops without being asked to (openraft
/// stops on any storage error): a replica that can no longer take part
/// exits, so that whatever supervises it sees the failure.
async fn raft_stopped(hub: &Hub) {
    let mut metrics = hub.raft.metrics();
    loop {
        if metrics.borrow().state == openraft::ServerState::Shutdown {
            tracing::error!("the Raft node has stopped; this replica exits");
            return;
        }
        if metrics.changed().await.is_err() {
            tracing::error!("the Raft node is gone; this replica exits");
            return;
        }
    }
}

/// How long shutdown keeps serving HTTP, every response closing its
/// connection, before it stops accepting: long enough for the proxies,
/// whose route watches on this replica have ended, to learn the new leader
/// from another replica's first heartbeat and send nothing here any more.
const HTTP_DRAIN_DELAY: Duration = Duration::from_millis(1500);
/// How long shutdown waits for HTTP requests in flight.
const HTTP_DRAIN: Duration = Duration::from_secs(10);
/// How long shutdown waits for gRPC calls in flight (Raft RPCs are short).
const GRPC_DRAIN: Duration = Duration::from_secs(3);

/// The steps of a graceful stop, in order.
struct StopSignals {
    /// End the route watches (proxies move to another replica).
    unwatch: watch::Sender<bool>,
    /// Stop accepting HTTP; finish what is in flight.
    drain: watch::Sender<bool>,
    /// Stop gRPC, bootstrap, the controller and the version check.
    stop: watch::Sender<bool>,
}

/// SIGTERM: hand leadership to another voter, let the proxies move away,
/// finish what is in flight, then leave. A replica stopped this way costs
/// no election timeout, and no request that reached it fails.
async fn graceful_stop(
    hub: &Arc<Hub>,
    signals: StopSignals,
    http_task: tokio::task::JoinHandle<std::io::Result<()>>,
    grpc_task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
) {
    let started = Instant::now();
    tracing::info!("shutting down");
    hand_over_leadership(hub).await;
    hub.draining
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = signals.unwatch.send(true);
    if hub.raft.metrics().borrow().state != openraft::ServerState::Shutdown {
        tokio::time::sleep(HTTP_DRAIN_DELAY).await;
    }
    let _ = signals.drain.send(true);
    if tokio::time::timeout(HTTP_DRAIN, http_task).await.is_err() {
        tracing::warn!(
            "HTTP requests still in flight after {} s; closing them",
            HTTP_DRAIN.as_secs()
        );
    }
    let _ = signals.stop.send(true);
    if let Err(e) = hub.raft.shutdown().await {
        tracing::warn!(error = %e, "raft did not stop cleanly");
    }
    if tokio::time::timeout(GRPC_DRAIN, grpc_task).await.is_err() {
        tracing::warn!("gRPC calls still in flight; closing them");
    }
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "stopped");
}

/// If this replica leads and another voter can take over, move leadership
/// there first; otherwise (single voter, transfer refused) just go on.
async fn hand_over_leadership(hub: &Hub) {
    let m = hub.raft.metrics().borrow().clone();
    if m.state != openraft::ServerState::Leader || m.current_leader != Some(hub.id) {
        return;
    }
    let voters = m.membership_config.membership().voter_ids().count();
    if voters < 2 {
        return;
    }
    match crate::transfer::transfer(hub, 0).await {
        Ok(t) => tracing::info!(
            new_leader = t.new_leader,
            elapsed_ms = t.elapsed.as_millis() as u64,
            "leadership handed over before stopping"
        ),
        Err(e) => tracing::warn!(
            error = %e,
            "could not hand over leadership; stopping anyway (the others elect a leader)"
        ),
    }
}

/// Servers run as other Unix users: the data dir (Raft log, snapshots,
/// servers' logs) must be the hub's alone. A dir others may enter is made
/// 0700, and that is logged.
fn make_private(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("cannot stat the data dir {}", dir.display()))?
        .permissions()
        .mode()
        & 0o7777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).with_context(
            || {
                format!(
                    "cannot make the data dir {} private (chmod 700); do it by hand",
                    dir.display()
                )
            },
        )?;
        tracing::info!(data_dir = %dir.display(), old_mode = format!("{mode:04o}"), "made the data dir private (0700): servers run as other users");
    }
    Ok(())
}
