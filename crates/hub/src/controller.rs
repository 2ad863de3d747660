//! The spawner controller: makes running processes match the replicated
//! wishes (servers to spawn, servers to stop).
//!
//! It runs on every replica and acts only while that replica leads, so a new
//! leader simply resumes: a server recorded as started is adopted (checked
//! alive by pid and start time), not started again. Everything it learns is
//! committed as a command before anyone relies on it; spawn generations
//! fence off reports about an earlier spawn of the same server.
//!
//! How a server is started, checked and stopped is its spawner's
//! ([`quorumhub_spawner::Spawner`]); the controller knows no spawner by
//! name. New servers go to the chosen spawner; a recorded server is always
//! handled by the spawner whose kind it records.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quorumhub_spawner::{Launch, Liveness, Profiles, Revoke, Spawner, Spawners};
use quorumhub_state::{Command, Phase, Response, Route, SpawnerState, TokenOwner};
use tokio::sync::watch;

use crate::hub::Hub;
use crate::metrics::{ControllerMetrics, SpawnOutcome};
use quorumhub_core::ops::tokens::{Minted, NewToken};
use quorumhub_core::ops::OpError;

/// How often running servers are checked for liveness.
const POLL: Duration = Duration::from_secs(2);

/// How often the leader asks its spawners for what nobody owns
/// ([`Spawner::reap`]).
const REAP_EVERY: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
struct Job {
    user: String,
    server: String,
    generation: u64,
    phase: Phase,
    spawner: Option<SpawnerState>,
    /// The OAuth client id recorded for this spawn (or JupyterHub's, for a
    /// spawn requested before log format 6): what the server is given.
    client_id: String,
    /// The options the server was started with (its profile among them).
    user_options: serde_json::Value,
}

type Key = (String, String, u64);

pub(crate) async fn run(
    hub: Arc<Hub>,
    spawners: Arc<Spawners>,
    profiles: Arc<Profiles>,
    timings: Arc<ControllerMetrics>,
    mut stop: watch::Receiver<bool>,
) {
    let mut applied = hub.sm.subscribe();
    let mut metrics = hub.raft.metrics();
    let inflight: Arc<Mutex<HashSet<Key>>> = Arc::default();
    let unknown: Arc<Mutex<HashSet<Key>>> = Arc::default();
    let mut poll = tokio::time::interval(POLL);
    let mut was_leader = false;
    let make = || Controller {
        hub: hub.clone(),
        spawners: spawners.clone(),
        profiles: profiles.clone(),
        unknown: unknown.clone(),
        metrics: timings.clone(),
    };
    let mut last_reap = Instant::now();
    let reaping: Arc<tokio::sync::Mutex<()>> = Arc::default();
    loop {
        let polling = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            r = applied.changed() => { if r.is_err() { return } false }
            r = metrics.changed() => { if r.is_err() { return } false }
            _ = poll.tick() => true,
        };
        let leader = hub.is_leader();
        if !leader {
            was_leader = false;
            continue;
        }
        if !was_leader {
            // A new leader acts only on state that includes every committed
            // entry: pass the read barrier first.
            if hub.linearize().await.is_err() {
                continue;
            }
            tracing::info!("leading: resuming the spawner controller");
            was_leader = true;
        }
        if polling && last_reap.elapsed() >= REAP_EVERY {
            last_reap = Instant::now();
            if let Ok(guard) = reaping.clone().try_lock_owned() {
                let ctl = make();
                tokio::spawn(async move {
                    ctl.reap().await;
                    drop(guard);
                });
            }
        }
        let jobs: Vec<Job> = hub.read(|s| {
            s.active_servers()
                .filter(|(_, srv)| polling || srv.phase != Phase::Running)
                .map(|(u, srv)| Job {
                    user: u.name.clone(),
                    server: srv.name.clone(),
                    generation: srv.generation,
                    phase: srv.phase,
                    spawner: srv.spawner.clone(),
                    client_id: srv.client_id(&u.name),
                    user_options: if srv.phase == Phase::Spawning && srv.spawner.is_none() {
                        srv.user_options.clone()
                    } else {
                        serde_json::Value::Null
                    },
                })
                .collect()
        });
        for job in jobs {
            let key = (job.user.clone(), job.server.clone(), job.generation);
            if !inflight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key.clone())
            {
                continue;
            }
            let ctl = make();
            let inflight = inflight.clone();
            tokio::spawn(async move {
                let span = tracing::info_span!("server", user = %job.user, server = %job.server, generation = job.generation);
                tracing::Instrument::instrument(ctl.handle(job), span).await;
                inflight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&key);
            });
        }
    }
}

/// What one job needs: the replica (to read and propose) and the spawners.
struct Controller {
    hub: Arc<Hub>,
    spawners: Arc<Spawners>,
    /// The profiles a server's `user_options` choose from.
    profiles: Arc<Profiles>,
    /// Servers of an unknown spawner kind already warned about (once each).
    unknown: Arc<Mutex<HashSet<Key>>>,
    metrics: Arc<ControllerMetrics>,
}

#[async_trait::async_trait]
impl Revoke for Controller {
    /// Revokes a server token that no active server has recorded as its
    /// own. Spawners pass ids they read back from what they started (a
    /// container's label, a Slurm job's comment, which the job's owner can
    /// set): any other token (a user's, an admin's, a service's, or a
    /// running server's) is left alone, so no such id can revoke it.
    async fn revoke(&self, token_id: &str) {
        let refusal = self.hub.read(|s| match s.tokens.get(token_id) {
            None => Some("no such token"),
            Some(t) if !matches!(t.owner, TokenOwner::Server { .. }) => {
                Some("not a server's token")
            }
            Some(_)
                if s.active_servers().any(|(_, srv)| {
                    srv.spawner.as_ref().and_then(|sp| sp.token_id.as_deref()) == Some(token_id)
                }) =>
            {
                Some("the token of a recorded server")
            }
            Some(_) => None,
        });
        if let Some(why) = refusal {
            tracing::debug!(token = token_id, why, "not revoking");
            return;
        }
        if let Err(e) = self
            .hub
            .propose_local(Command::RevokeToken {
                id: token_id.to_string(),
            })
            .await
        {
            tracing::warn!(token = token_id, error = %e, "could not revoke an unused server token");
        }
    }
}

/// Longest stop reason recorded (it is replicated and shown by the API).
const MAX_REASON_CHARS: usize = 2000;

impl Controller {
    async fn handle(&self, job: Job) {
        if let Some(sp) = &job.spawner {
            if self.spawners.of(sp).is_none() {
                // Recorded by a spawner this build lacks (a newer release,
                // mid-upgrade): a replica that has it will act on it. Never
                // declared stopped from here, which would drop its record
                // and token while it may still run.
                self.unknown_kind(&job, sp);
                return;
            }
        }
        match (job.phase, &job.spawner) {
            (Phase::Spawning, None) => self.spawn(&job).await,
            (Phase::Spawning, Some(sp)) => self.adopt(&job, sp.clone()).await,
            (Phase::Running, Some(sp)) => {
                if self.liveness(sp).await == Liveness::Gone {
                    let reason = self.gone_reason(sp, "the server process exited").await;
                    tracing::warn!(pid = sp.pid, host = %sp.host, %reason, "server process is gone");
                    self.stopped(&job, &reason).await;
                }
            }
            (Phase::Running, None) => {
                self.stopped(&job, "running without a process record").await;
            }
            (Phase::Stopping, sp) => {
                let started = Instant::now();
                if let Some(sp) = sp {
                    self.terminate(sp).await;
                }
                let recorded = self.stopped(&job, "stopped on request").await;
                self.metrics.stopped(recorded, started.elapsed());
            }
        }
    }

    /// The spawner that started a recorded server (`handle` has already
    /// left servers of an unknown kind alone).
    fn spawner_of(&self, sp: &SpawnerState) -> Option<&dyn Spawner> {
        self.spawners.of(sp)
    }

    /// Warn, once per spawn, about a server this build cannot handle.
    fn unknown_kind(&self, job: &Job, sp: &SpawnerState) {
        let key = (job.user.clone(), job.server.clone(), job.generation);
        let first = self
            .unknown
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key);
        if first {
            tracing::warn!(
                kind = %sp.kind,
                phase = ?job.phase,
                "server recorded by a spawner this build does not have; leaving it to a replica that has it (upgrade this one)"
            );
        }
    }

    /// Whether the server runs: `Gone` only when that is known for sure (a
    /// Docker engine that does not answer is not proof that a container
    /// died, nor is a spawner this build lacks).
    async fn liveness(&self, sp: &SpawnerState) -> Liveness {
        match self.spawner_of(sp) {
            Some(spawner) => spawner.liveness(sp).await,
            None => Liveness::Unknown,
        }
    }

    /// The spawner's account of why a gone server ended, else `fallback`.
    async fn gone_reason(&self, sp: &SpawnerState, fallback: &str) -> String {
        match self.spawner_of(sp) {
            Some(spawner) => spawner.gone_reason(sp).await,
            None => None,
        }
        .unwrap_or_else(|| fallback.to_string())
    }

    /// Let every spawner remove what no active spawn owns, on state read
    /// after a read barrier (so a deposed leader never reaps a newer
    /// leader's servers).
    async fn reap(&self) {
        if self.hub.linearize().await.is_err() || !self.hub.is_leader() {
            return;
        }
        let owned: Vec<(quorumhub_spawner::OwnedSpawn, Option<String>)> = self.hub.read(|s| {
            s.active_servers()
                .map(|(u, srv)| {
                    (
                        quorumhub_spawner::OwnedSpawn {
                            user: u.name.clone(),
                            server: srv.name.clone(),
                            generation: srv.generation,
                            recorded_id: srv.spawner.as_ref().map(|sp| sp.pid),
                        },
                        srv.spawner.as_ref().map(|sp| sp.kind.clone()),
                    )
                })
                .collect()
        });
        let active = self.spawners.active().kind();
        for spawner in self.spawners.all() {
            let kind = spawner.kind().as_str();
            // Only spawners in use: one this replica starts servers with,
            // or one an active server was recorded by.
            if spawner.kind() != active && !owned.iter().any(|(_, k)| k.as_deref() == Some(kind)) {
                continue;
            }
            // A spawn recorded by another kind claims nothing of this one's
            // by id; one not yet recorded may be this kind's, in flight.
            let mine: Vec<quorumhub_spawner::OwnedSpawn> = owned
                .iter()
                .filter(|(_, k)| k.as_deref().is_none_or(|k| k == kind))
                .map(|(o, _)| o.clone())
                .collect();
            spawner.reap(&mine, self).await;
        }
    }

    async fn terminate(&self, sp: &SpawnerState) {
        let grace = Duration::from_secs(self.hub.config.stop_grace_s);
        if let Some(spawner) = self.spawner_of(sp) {
            if let Err(e) = spawner.stop(sp, grace).await {
                tracing::warn!(host = %sp.host, pid = sp.pid, error = %e, "stopping the server failed");
            }
        }
    }

    /// Record the end of the spawn; whether it was recorded.
    async fn stopped(&self, job: &Job, reason: &str) -> bool {
        let cmd = Command::ServerStopped {
            user: job.user.clone(),
            server_name: job.server.clone(),
            generation: job.generation,
            reason: reason.chars().take(MAX_REASON_CHARS).collect(),
        };
        match self.hub.propose_local(cmd).await {
            Ok(Response::Done) => {
                tracing::info!(reason, "server stopped");
                true
            }
            Ok(other) => {
                tracing::debug!(?other, "server-stopped not applied");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not record the stop; will retry");
                false
            }
        }
    }

    /// The server's current phase and generation in the applied state.
    fn current(&self, job: &Job) -> Option<Phase> {
        self.hub.read(|s| {
            s.server(&job.user, &job.server)
                .filter(|srv| srv.generation == job.generation)
                .map(|srv| srv.phase)
        })
    }

    async fn spawn(&self, job: &Job) {
        let started = Instant::now();
        let outcome = match self.start(job).await {
            Ok(sp) => {
                tracing::info!(kind = %sp.kind, pid = sp.pid, host = %sp.host, port = sp.port, "server started");
                self.wait_and_publish(job, sp).await
            }
            Err(reason) => {
                tracing::warn!(%reason, "spawn failed");
                self.stopped(job, &reason).await;
                Some(SpawnOutcome::Failure)
            }
        };
        if let Some(outcome) = outcome {
            self.metrics.spawned(outcome, started.elapsed());
        }
    }

    /// Mint the server's token, start it with the chosen spawner and record
    /// the start; whatever fails on the way is undone.
    async fn start(&self, job: &Job) -> Result<SpawnerState, String> {
        let hub = &self.hub;
        // Checked when asked for, and again here: the options were stored
        // by a replica whose profiles may differ from this leader's.
        let overrides = match self.profiles.choose(&job.user_options) {
            Ok(profile) => {
                if let Some(p) = profile {
                    tracing::info!(profile = %p.slug, "starting with a profile");
                }
                profile.map(|p| p.overrides.clone()).unwrap_or_default()
            }
            Err(e) => {
                return Err(format!(
                    "{e} (the profiles of the leading replica; check that every replica has the same profiles file)"
                ))
            }
        };
        let Minted {
            secret: token,
            token: record,
        } = NewToken {
            owner: TokenOwner::Server {
                user: job.user.clone(),
                server_name: job.server.clone(),
            },
            note: format!(
                "server token for {}",
                Route::prefix_for(&job.user, &job.server)
            ),
            expires_in_s: None,
            scopes: vec![],
            client_id: None,
            session: None,
        }
        .mint();
        // Proposed here, never forwarded: only the leader's controller acts.
        let created = hub
            .propose_local(Command::CreateToken { token: record })
            .await
            .map_err(OpError::from)
            .and_then(quorumhub_core::ops::tokens::created);
        let token_id = match created {
            Ok(id) => id,
            Err(e) => return Err(format!("could not create the server's API token: {e}")),
        };
        let launch = Launch {
            user: job.user.clone(),
            server: job.server.clone(),
            generation: job.generation,
            client_id: job.client_id.clone(),
            token,
            token_id: token_id.clone(),
            hub_api_url: hub.config.hub_api_url(),
            public_url: hub.config.public_url.clone(),
            overrides,
            wanted: {
                let (hub, user, server, generation) = (
                    self.hub.clone(),
                    job.user.clone(),
                    job.server.clone(),
                    job.generation,
                );
                quorumhub_spawner::Wanted(Arc::new(move || {
                    hub.read(|s| {
                        s.server(&user, &server).is_some_and(|srv| {
                            srv.generation == generation && srv.phase == Phase::Spawning
                        })
                    })
                }))
            },
        };
        let sp = match self.spawners.active().start(&launch, self).await {
            Ok(sp) => sp,
            Err(e) => {
                self.revoke(&token_id).await;
                return Err(e.to_string());
            }
        };
        let recorded = hub
            .propose_local(Command::SpawnStarted {
                user: job.user.clone(),
                server_name: job.server.clone(),
                generation: job.generation,
                spawner: sp.clone(),
            })
            .await;
        match recorded {
            Ok(Response::Done) => Ok(sp),
            other => {
                // Not recorded (another leader's process won, or no quorum).
                // Stop it and drop its token, unless the cluster records this
                // very server, as a new leader that adopted what this one
                // started does; a replica that cannot pass the read barrier
                // (deposed, cut off) stops nothing and leaves it to the
                // leader's reap.
                let fresh = hub.linearize().await.is_ok();
                let recorded_elsewhere = self.hub.read(|s| {
                    s.server(&job.user, &job.server).is_some_and(|srv| {
                        srv.spawner.as_ref().is_some_and(|r| {
                            r.kind == sp.kind && r.pid == sp.pid && r.host == sp.host
                        })
                    })
                });
                if fresh && !recorded_elsewhere {
                    self.terminate(&sp).await;
                    if let Some(t) = sp.token_id.as_deref().filter(|t| *t != token_id) {
                        self.revoke(t).await;
                    }
                }
                self.revoke(&token_id).await;
                Err(format!("could not record the started process: {other:?}"))
            }
        }
    }

    async fn revoke(&self, token_id: &str) {
        Revoke::revoke(self, token_id).await
    }

    async fn adopt(&self, job: &Job, sp: SpawnerState) {
        if self.liveness(&sp).await == Liveness::Gone {
            let reason = self
                .gone_reason(&sp, "the server process died before it was ready")
                .await;
            self.stopped(job, &reason).await;
            return;
        }
        tracing::info!(
            pid = sp.pid,
            host = %sp.host,
            "adopting a server that was starting under the previous leader"
        );
        self.wait_and_publish(job, sp).await;
    }

    /// Wait for the server to answer, then publish its route: how the spawn
    /// ended, if it did here (`None`: stopped meanwhile, or left to the
    /// next pass).
    async fn wait_and_publish(&self, job: &Job, sp: SpawnerState) -> Option<SpawnOutcome> {
        let hub = &self.hub;
        let url = format!("{}{}", sp.target, Route::prefix_for(&job.user, &job.server));
        let limit = Duration::from_secs(hub.config.spawn_timeout_s);
        // The spawner's cheap check; where it knows nothing (a container's
        // liveness needs the engine), the spawn timeout bounds the wait for
        // a server that died.
        let spawners = self.spawners.clone();
        let probe = sp.clone();
        let check = move || spawners.of(&probe).is_none_or(|s| s.may_be_running(&probe));
        if let Err(e) = quorumhub_spawner::wait_http_ready(&url, limit, check).await {
            tracing::warn!(error = %e, "server never answered");
            self.terminate(&sp).await;
            self.stopped(job, &format!("the server did not become ready: {e}"))
                .await;
            return Some(SpawnOutcome::Failure);
        }
        if self.current(job) != Some(Phase::Spawning) {
            // Stopped (or replaced) meanwhile: the Stopping job will clean up.
            return None;
        }
        // Something answered; make sure the server itself still runs (a
        // Slurm job whose server failed to bind its port has ended, and
        // whatever answered there is not it).
        if self.liveness(&sp).await == Liveness::Gone {
            let reason = self.gone_reason(&sp, "the server process exited").await;
            tracing::warn!(%reason, "an answer came from the server's address, but the server is gone");
            self.stopped(job, &format!("the server did not become ready: {reason}"))
                .await;
            return Some(SpawnOutcome::Failure);
        }
        match hub
            .propose_local(Command::ServerReady {
                user: job.user.clone(),
                server_name: job.server.clone(),
                generation: job.generation,
            })
            .await
        {
            Ok(Response::Done) => {
                tracing::info!("server ready; route published");
                Some(SpawnOutcome::Success)
            }
            Ok(other) => {
                tracing::info!(?other, "server-ready not applied");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not publish the route; will retry on the next pass");
                None
            }
        }
    }
}
