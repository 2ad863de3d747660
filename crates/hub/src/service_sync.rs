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
//! hub, and a copy starts here. How a process is started, checked and
//! stopped is the spawner crate's ([`quorumhub_spawner::ServiceRunner`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quorumhub_spawner::{Liveness, ServiceCopy, ServiceLaunch, ServiceRunner};
use quorumhub_state::{Command, Response, Service};
use tokio::sync::watch;

use crate::hub::Hub;

const EVERY: Duration = Duration::from_secs(1);
/// The longest wait before starting again a copy that keeps exiting.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

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
    runner: ServiceRunner,
    /// When each service may be started again, and the delay after that.
    backoff: HashMap<String, (Instant, Duration)>,
    /// Copies (name, generation) this leader already supervises.
    seen: HashSet<(String, u64)>,
}

pub(crate) async fn run(
    hub: Arc<Hub>,
    configured: Vec<Service>,
    runner: ServiceRunner,
    stop: watch::Receiver<bool>,
) {
    let mut turns = crate::leader_turns::LeaderTurns::new(&hub, EVERY, stop);
    let mut sup = Supervisor {
        hub: hub.clone(),
        configured: as_configured(configured.into_iter()),
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

impl Supervisor {
    async fn turn(&mut self) {
        let (version, services) = self.hub.read(|s| (s.cluster_version, s.services.clone()));
        if version < 8 {
            return;
        }
        if as_configured(services.values().cloned()) != self.configured {
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
            environment: svc.environment.clone(),
            token: token.clone(),
            hub_api_url: config.hub_api_url(),
            public_url: config.public_url.clone(),
            url: svc.url.clone(),
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
