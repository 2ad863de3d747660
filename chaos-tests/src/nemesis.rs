//! Faults, each injected into the running deployment and healed again.

use std::time::Duration;

use anyhow::{bail, Context};

use crate::deployment::{docker, Deployment};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Fault {
    /// `kill -9` of the leader's container, restarted after the hold.
    KillLeader,
    /// `kill -9` of a follower's container.
    KillFollower,
    /// `kill -9` of a proxy.
    KillProxy,
    /// The leader cut off from every other container.
    IsolateLeader,
    /// One follower cut off (the majority keeps a quorum).
    MinorityPartition,
    /// Two of three replicas cut off, the leader among them: no side has a
    /// quorum until the partition heals.
    MajorityPartition,
    /// `docker pause` of the leader (a long GC-like stall), then resume.
    PauseLeader,
    /// Every replica killed at once, then all started again.
    RestartAll,
    /// A follower's data dir wiped; it is re-seeded from a peer and
    /// catches up by snapshot.
    WipeFollower,
    /// Overload: a non-admin user floods the hubs through the load balancer
    /// with maximum-size requests and past its quotas (see `overload.rs`).
    HostileFlood,
    /// Overload: `docker pause` of a follower for the hold, then resume.
    PauseFollower,
    /// Overload: a follower killed (`kill -9`) and started again, in a loop
    /// for the hold.
    RestartFollower,
    /// Not a fault: `deploy/rolling-upgrade.sh` to the `--upgrade-to` tag,
    /// under the same workload and checks. Not part of `all`.
    RollingUpgrade,
}

impl Fault {
    pub const ALL: [Fault; 12] = [
        Fault::KillLeader,
        Fault::KillFollower,
        Fault::KillProxy,
        Fault::IsolateLeader,
        Fault::MinorityPartition,
        Fault::MajorityPartition,
        Fault::PauseLeader,
        Fault::RestartAll,
        Fault::WipeFollower,
        Fault::HostileFlood,
        Fault::PauseFollower,
        Fault::RestartFollower,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::KillLeader => "kill -9 leader",
            Fault::KillFollower => "kill -9 follower",
            Fault::KillProxy => "kill -9 proxy",
            Fault::IsolateLeader => "isolate leader",
            Fault::MinorityPartition => "minority partition",
            Fault::MajorityPartition => "majority partition",
            Fault::PauseLeader => "pause leader",
            Fault::RestartAll => "restart all replicas",
            Fault::WipeFollower => "wipe follower's data",
            Fault::RollingUpgrade => "rolling upgrade",
            Fault::HostileFlood => "hostile flood",
            Fault::PauseFollower => "pause follower",
            Fault::RestartFollower => "restart follower loop",
        }
    }

    /// The overload nemeses, held to the bystander, election and catch-up
    /// bar of `overload::accept`.
    pub fn is_overload(self) -> bool {
        matches!(
            self,
            Fault::HostileFlood | Fault::PauseFollower | Fault::RestartFollower
        )
    }

    /// Whether losing requests to running servers is expected: only when
    /// the proxy holding the connection dies.
    pub fn may_break_sessions(self) -> bool {
        matches!(self, Fault::KillProxy | Fault::RollingUpgrade)
    }
}

/// What an injected fault needs to be healed.
pub struct Injected {
    pub fault: Fault,
    pub targets: Vec<String>,
    /// The targets' addresses on the cut network before a partition, to
    /// reconnect them with the same ones.
    pub addrs: Vec<Option<String>>,
    /// When the fault took effect (the clock of the run), taken right
    /// before the action, after finding the targets.
    pub at: u64,
}

async fn followers(d: &Deployment, leader: &str) -> Vec<String> {
    d.hubs.iter().filter(|h| *h != leader).cloned().collect()
}

async fn disconnect(d: &Deployment, service: &str) -> anyhow::Result<()> {
    docker(&["network", "disconnect", &d.network, &d.container(service)]).await?;
    Ok(())
}

async fn connect(d: &Deployment, service: &str, ip: Option<&str>) -> anyhow::Result<()> {
    // The alias is what peers resolve; a reconnected container needs it
    // back, and its fixed address (the hubs listen on it).
    let container = d.container(service);
    let mut args = vec!["network", "connect", "--alias", service];
    if let Some(ip) = ip {
        args.extend(["--ip", ip]);
    }
    args.extend([d.network.as_str(), container.as_str()]);
    docker(&args).await?;
    Ok(())
}

pub async fn inject(
    d: &Deployment,
    fault: Fault,
    clock: crate::workload::Clock,
) -> anyhow::Result<Injected> {
    let leader = d.leader().await.context("finding the leader")?;
    let follower = followers(d, &leader)
        .await
        .into_iter()
        .next()
        .context("no follower")?;
    let targets = match fault {
        Fault::KillLeader => vec![leader],
        Fault::KillFollower
        | Fault::MinorityPartition
        | Fault::WipeFollower
        | Fault::PauseFollower
        | Fault::RestartFollower => vec![follower],
        // The flood goes through the load balancer, to every replica.
        Fault::HostileFlood => vec!["lb".to_string()],
        Fault::KillProxy => vec![d.proxies.first().context("no proxy")?.clone()],
        Fault::IsolateLeader | Fault::PauseLeader => vec![leader],
        Fault::MajorityPartition => vec![leader, follower],
        Fault::RestartAll => d.hubs.clone(),
        Fault::RollingUpgrade => d.hubs.iter().chain(&d.proxies).cloned().collect(),
    };
    let mut addrs = Vec::new();
    for t in &targets {
        addrs.push(d.ip(t).await);
    }
    let at = clock.now();
    match fault {
        Fault::RollingUpgrade => {
            let tag = d
                .upgrade_to
                .as_deref()
                .context("the rolling upgrade needs --upgrade-to TAG")?;
            crate::deployment::run_with_env(
                "deploy/rolling-upgrade.sh",
                &[tag],
                &[("QH_PROJECT", d.project.as_str())],
            )
            .await
            .context("deploy/rolling-upgrade.sh failed")?;
        }
        Fault::KillLeader | Fault::KillFollower | Fault::KillProxy | Fault::RestartAll => {
            let mut args = vec!["kill".to_string(), "-s".into(), "KILL".into()];
            args.extend(targets.iter().map(|t| d.container(t)));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            docker(&args).await?;
        }
        Fault::IsolateLeader | Fault::MinorityPartition | Fault::MajorityPartition => {
            for t in &targets {
                disconnect(d, t).await?;
            }
        }
        Fault::PauseLeader | Fault::PauseFollower => {
            docker(&["pause", &d.container(&targets[0])]).await?;
        }
        // Driven during the hold by qh-chaos itself (main.rs).
        Fault::HostileFlood | Fault::RestartFollower => {}
        Fault::WipeFollower => {
            let t = &targets[0];
            docker(&["kill", "-s", "KILL", &d.container(t)]).await?;
            let path = d.volume_path(t).await?;
            // The disk is replaced: nothing of the old data dir is left.
            for entry in std::fs::read_dir(&path)
                .with_context(|| format!("cannot list {}", path.display()))?
            {
                let p = entry?.path();
                if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                }
                .with_context(|| format!("cannot remove {}", p.display()))?;
            }
        }
    }
    Ok(Injected {
        fault,
        targets,
        addrs,
        at,
    })
}

pub async fn heal(d: &Deployment, injected: &Injected) -> anyhow::Result<()> {
    match injected.fault {
        Fault::RollingUpgrade => {}
        Fault::KillLeader | Fault::KillFollower | Fault::KillProxy | Fault::RestartAll => {
            let mut args = vec!["start".to_string()];
            args.extend(injected.targets.iter().map(|t| d.container(t)));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            docker(&args).await?;
        }
        Fault::IsolateLeader | Fault::MinorityPartition | Fault::MajorityPartition => {
            for (t, ip) in injected.targets.iter().zip(&injected.addrs) {
                connect(d, t, ip.as_deref()).await?;
            }
        }
        Fault::PauseLeader | Fault::PauseFollower => {
            docker(&["unpause", &d.container(&injected.targets[0])]).await?;
        }
        Fault::HostileFlood => {}
        Fault::RestartFollower => {
            // Whatever state the loop left it in: running.
            docker(&["start", &d.container(&injected.targets[0])]).await?;
        }
        Fault::WipeFollower => {
            let t = &injected.targets[0];
            let id = Deployment::hub_id(t).context("not a hub")?;
            let donor = d
                .hubs
                .iter()
                .find(|h| *h != t)
                .context("no healthy replica to re-seed from")?;
            // The documented procedure (docs/operations.md): re-seed, start.
            let id = id.to_string();
            // Its qh address: the name may resolve to its users address.
            let from = format!(
                "{}:7000",
                d.ip(donor)
                    .await
                    .context("the donor replica has no address on the qh network")?
            );
            d.compose(&[
                "run",
                "--rm",
                "--no-deps",
                t,
                "reseed",
                "--data-dir",
                "/var/lib/quorumhub/data",
                "--node-id",
                &id,
                "--from",
                &from,
            ])
            .await
            .context("re-seeding the wiped replica")?;
            docker(&["start", &d.container(t)]).await?;
        }
    }
    Ok(())
}

/// How long a fault is held before it is healed.
pub fn hold(fault: Fault, base: Duration) -> Duration {
    match fault {
        // Long enough that the cluster notices the stall.
        Fault::PauseLeader | Fault::PauseFollower => base.max(Duration::from_secs(3)),
        // The script ran to its end inside inject.
        Fault::RollingUpgrade => Duration::ZERO,
        _ => base,
    }
}

pub fn parse_list(s: &str) -> anyhow::Result<Vec<Fault>> {
    use clap::ValueEnum;
    if s == "all" {
        return Ok(Fault::ALL.to_vec());
    }
    s.split(',')
        .map(|f| match Fault::from_str(f.trim(), true) {
            Ok(f) => Ok(f),
            Err(_) => bail!(
                "unknown fault {f:?}; choose from: all, {}",
                Fault::ALL
                    .iter()
                    .filter_map(|f| f.to_possible_value().map(|v| v.get_name().to_string()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
        .collect()
}

/// The restart loop: during `hold`, kill the follower and start it again,
/// over and over, each time waiting until its container runs.
pub async fn restart_loop(d: &Deployment, target: &str, hold: Duration) -> anyhow::Result<u32> {
    let until = tokio::time::Instant::now() + hold;
    let container = d.container(target);
    let mut restarts = 0;
    while tokio::time::Instant::now() < until {
        docker(&["kill", "-s", "KILL", &container]).await?;
        docker(&["start", &container]).await?;
        restarts += 1;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    Ok(restarts)
}
