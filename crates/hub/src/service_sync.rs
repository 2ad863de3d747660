//! The leader's services loop (log format 8): it makes the replicated
//! services equal to its configuration (`SetServices`; [`crate::services`]
//! read and checked them) and keeps exactly one copy of each managed
//! service running.
//!
//! A copy is recorded (`ServiceStarted`: host, pid, start time, the hash of
//! its token) before anyone relies on it. A new leader passes the read
//! barrier, then adopts a recorded copy that still runs on its host instead
//! of starting a second one. A copy that exited is recorded as stopped and
//! started again (with a growing delay while it keeps exiting). A copy
//! recorded on another host cannot be seen from here: it is recorded as
//! stopped, which revokes its token, so that it can no longer act on the
//! hub, and a copy starts here.
//!
//! Every replica, leading or not, also stops the copies it started that the
//! state no longer records ([`janitor`]): one replaced by a leader on another
//! host, one whose command changed, one whose start was never recorded. How
//! a process is started, checked and stopped is the spawner crate's
//! ([`quorumhub_spawner::ServiceRunner`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quorumhub_spawner::{Liveness, ServiceCopy, ServiceLaunch, ServiceRunner};
use quorumhub_state::{Command, Response, Service};
use tokio::sync::watch;

use crate::hub::Hub;
use crate::services::Configured;

const EVERY: Duration = Duration::from_secs(1);
/// The longest wait before starting again a copy that keeps exiting.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A copy that ran this long is healthy: its next exit starts the delays
/// over.
const HEALTHY_MS: u64 = 60_000;
/// How often each replica looks for copies it started that are no longer
/// recorded.
const JANITOR_EVERY: Duration = Duration::from_secs(5);
/// A noted copy younger than this may still be on its way into the log: the
/// janitor leaves it alone (a start that fails to be recorded is stopped by
/// the supervisor itself).
const JANITOR_GRACE: Duration = Duration::from_secs(60);

/// The services as the configuration has them, to compare with the state.
fn as_configured(services: impl Iterator<Item = Service>) -> Vec<Service> {
    let mut out: Vec<Service> = services
        .filter(|s| !s.retired)
        .map(|mut s| {
            s.process = None;
            s
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

struct Supervisor {
    hub: Arc<Hub>,
    configured: Vec<Service>,
    /// Managed services' environments, by name (never replicated).
    environments: HashMap<String, BTreeMap<String, String>>,
    /// This replica has no services in its configuration: it leaves the
    /// replicated ones as they are, and says so once per leadership.
    unconfigured: bool,
    warned: bool,
    runner: ServiceRunner,
    /// When each service may be started again, and the delay after that.
    backoff: HashMap<String, (Instant, Duration)>,
    /// Copies (name, generation) this leader already supervises.
    seen: HashSet<(String, u64)>,
}

/// The leader's half. `configured`: this replica's services (`None`: it
/// has none in its configuration).
pub(crate) async fn run(
    hub: Arc<Hub>,
    configured: Option<Vec<Configured>>,
    runner: ServiceRunner,
    stop: watch::Receiver<bool>,
) {
    let mut turns = crate::leader_turns::LeaderTurns::new(&hub, EVERY, stop);
    let unconfigured = configured.is_none();
    let configured = configured.unwrap_or_default();
    let mut sup = Supervisor {
        hub: hub.clone(),
        environments: configured
            .iter()
            .map(|c| (c.service.name.clone(), c.environment.clone()))
            .collect(),
        configured: as_configured(configured.into_iter().map(|c| c.service)),
        unconfigured,
        warned: false,
        runner,
        backoff: HashMap::new(),
        seen: HashSet::new(),
    };
    while turns.next(&hub).await {
        // A new leader acts only on state that includes every committed
        // entry, so it never misses a recorded copy.
        if hub.linearize().await.is_err() {
            continue;
        }
        sup.turn().await;
    }
}

/// Every replica's half: stop the copies this replica started that the
/// state no longer records (after the read barrier, so never on a replica
/// that cannot tell).
pub(crate) async fn janitor(hub: Arc<Hub>, runner: ServiceRunner, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(JANITOR_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        let noted: Vec<_> = runner
            .local_copies()
            .into_iter()
            .filter(|(_, _, age)| *age >= JANITOR_GRACE)
            .collect();
        if noted.is_empty() || hub.linearize().await.is_err() {
            continue;
        }
        for (name, copy, _) in noted {
            let recorded = hub.read(|s| {
                s.services
                    .get(&name)
                    .and_then(|svc| svc.process.as_ref())
                    .is_some_and(|p| {
                        p.host == copy.host && p.pid == copy.pid && p.proc_start == copy.proc_start
                    })
            });
            if recorded {
                continue;
            }
            if runner.liveness(&copy) == Liveness::Running {
                tracing::warn!(service = %name, pid = copy.pid, "stopping a copy of the service that the state no longer records");
                let grace = Duration::from_secs(hub.config.stop_grace_s);
                if let Err(e) = runner.stop(&copy, grace).await {
                    tracing::warn!(service = %name, error = %e, "could not stop an unrecorded copy");
                    continue;
                }
            }
            runner.forget(&name, &copy);
        }
    }
}

impl Supervisor {
    async fn turn(&mut self) {
        let (version, services) = self.hub.read(|s| (s.cluster_version, s.services.clone()));
        if version < 8 {
            return;
        }
        if self.unconfigured {
            if !services.is_empty() && !self.warned {
                let names: Vec<&str> = services.keys().map(String::as_str).collect();
                tracing::warn!(
                    ?names,
                    "this replica leads but has no services in its configuration: the replicated \
                     services stay as they are and their managed copies are not supervised; give \
                     every replica the same services file (`services = []` removes them all)"
                );
                self.warned = true;
            }
            return;
        }
        if as_configured(services.values().cloned()) != self.configured {
            // A copy whose command or URL changes is dropped from the
            // record by SetServices: stop it first where it runs here, so
            // that the copy started next does not find its port taken.
            for old in services.values() {
                let changed = self
                    .configured
                    .iter()
                    .find(|c| c.name == old.name)
                    .is_none_or(|c| c.command != old.command || c.url != old.url);
                if let (true, Some(p)) = (changed, &old.process) {
                    let copy = ServiceCopy {
                        host: p.host.clone(),
                        pid: p.pid,
                        proc_start: p.proc_start,
                    };
                    if self.runner.liveness(&copy) == Liveness::Running {
                        let grace = Duration::from_secs(self.hub.config.stop_grace_s);
                        if let Err(e) = self.runner.stop(&copy, grace).await {
                            tracing::warn!(service = %old.name, error = %e, "could not stop the copy of a changed service");
                        }
                    }
                }
            }
            self.propose(
                Command::SetServices {
                    services: self.configured.clone(),
                },
                "replicating the configured services",
            )
            .await;
            return;
        }
        for svc in services.values() {
            match &svc.process {
                Some(p) => {
                    let copy = ServiceCopy {
                        host: p.host.clone(),
                        pid: p.pid,
                        proc_start: p.proc_start,
                    };
                    self.check(svc, &copy, p.generation).await;
                }
                None if svc.managed() && !svc.retired => self.start(svc).await,
                None => {}
            }
        }
    }

    async fn check(&mut self, svc: &Service, copy: &ServiceCopy, generation: u64) {
        let wanted = svc.managed() && !svc.retired;
        match self.runner.liveness(copy) {
            Liveness::Running if wanted => {
                if self.seen.insert((svc.name.clone(), generation)) {
                    tracing::info!(service = %svc.name, pid = copy.pid, "supervising the service's running copy");
                }
                let started = svc.process.as_ref().map_or(0, |p| p.started);
                if quorumhub_core::time::now_ms().saturating_sub(started) > HEALTHY_MS {
                    self.backoff.remove(&svc.name);
                }
            }
            Liveness::Running => {
                let grace = Duration::from_secs(self.hub.config.stop_grace_s);
                if let Err(e) = self.runner.stop(copy, grace).await {
                    tracing::warn!(service = %svc.name, error = %e, "could not stop a removed service");
                    return;
                }
                self.stopped(svc, generation, "removed from the configuration")
                    .await;
            }
            Liveness::Gone => {
                tracing::warn!(service = %svc.name, pid = copy.pid, "the service exited; starting it again");
                self.delay(&svc.name);
                self.stopped(svc, generation, "the service's process exited")
                    .await;
            }
            Liveness::Unknown => {
                tracing::warn!(
                    service = %svc.name,
                    host = %copy.host,
                    pid = copy.pid,
                    "the service's copy was started on another host, which this leader cannot see; \
                     revoking its token and starting a copy here"
                );
                self.stopped(svc, generation, "started on another host")
                    .await;
            }
        }
    }

    /// Start a copy, at most once per backoff delay.
    async fn start(&mut self, svc: &Service) {
        if self
            .backoff
            .get(&svc.name)
            .is_some_and(|(at, _)| Instant::now() < *at)
        {
            return;
        }
        let token = quorumhub_core::secrets::random_secret();
        let config = &self.hub.config;
        let launch = ServiceLaunch {
            name: svc.name.clone(),
            command: svc.command.clone(),
            environment: self
                .environments
                .get(&svc.name)
                .cloned()
                .unwrap_or_default(),
            token: token.clone(),
            hub_api_url: config.hub_api_url(),
            public_url: config.public_url.clone(),
            url: svc.url.clone(),
            oauth_callback: svc
                .oauth_redirect_uri
                .clone()
                .unwrap_or_else(|| format!("{}oauth_callback", svc.prefix())),
        };
        let copy = match self.runner.start(&launch) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(service = %svc.name, error = %e, "cannot start the service");
                self.delay(&svc.name);
                return;
            }
        };
        let recorded = self
            .hub
            .propose_local(Command::ServiceStarted {
                name: svc.name.clone(),
                host: copy.host.clone(),
                pid: copy.pid,
                proc_start: copy.proc_start,
                token_hash: quorumhub_core::secrets::hash_token(&token),
            })
            .await;
        match recorded {
            Ok(Response::Done) => {
                tracing::info!(service = %svc.name, pid = copy.pid, "started the service");
            }
            other => {
                // Not recorded (another copy is, or no quorum): nobody could
                // find this one later, and its token is not valid.
                tracing::warn!(service = %svc.name, answer = ?other, "the service's start was not recorded; stopping that copy");
                if let Err(e) = self.runner.stop(&copy, Duration::ZERO).await {
                    tracing::warn!(service = %svc.name, error = %e, "could not stop an unrecorded copy");
                }
                self.delay(&svc.name);
            }
        }
    }

    /// Wait longer before the next start of `name` (1 s, doubling, at most
    /// [`MAX_BACKOFF`]).
    fn delay(&mut self, name: &str) {
        let next = self
            .backoff
            .get(name)
            .map_or(EVERY, |(_, d)| (*d * 2).min(MAX_BACKOFF));
        self.backoff
            .insert(name.to_string(), (Instant::now() + next, next));
    }

    async fn stopped(&self, svc: &Service, generation: u64, reason: &str) {
        self.propose(
            Command::ServiceStopped {
                name: svc.name.clone(),
                generation,
                reason: reason.to_string(),
            },
            "recording the service's stop",
        )
        .await;
    }

    async fn propose(&self, command: Command, what: &str) {
        match self.hub.propose_local(command).await {
            Ok(Response::Done) => {}
            Ok(other) => tracing::warn!(answer = ?other, "{what}: refused"),
            Err(e) => tracing::warn!(error = %e, "{what}: not committed; will retry"),
        }
    }
}
