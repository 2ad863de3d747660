//! The compose deployment under test, seen from the host: its containers,
//! their addresses, and the Docker CLI calls the nemeses use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::Value;
use tokio::process::Command;

/// Runs a command, returning its stdout; a non-zero exit is an error that
/// carries stderr.
pub async fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    run_with_env(program, args, &[]).await
}

/// [`run`] with extra environment variables, for the deploy scripts: up to
/// ten minutes, and their narration (stderr) is echoed.
pub async fn run_with_env(
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<String> {
    let mut cmd = Command::new(program);
    cmd.args(args).kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let limit = if env.is_empty() {
        Duration::from_secs(120)
    } else {
        Duration::from_secs(600)
    };
    let out = tokio::time::timeout(limit, cmd.output())
        .await
        .with_context(|| format!("{program} {} timed out", args.join(" ")))?
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    if !env.is_empty() {
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub async fn docker(args: &[&str]) -> anyhow::Result<String> {
    run("docker", args).await
}

#[derive(Clone, Debug)]
pub struct Deployment {
    /// Compose project name (container names are `{project}_{service}_1`).
    pub project: String,
    pub compose_file: PathBuf,
    /// The Docker network every container is on.
    pub network: String,
    pub hubs: Vec<String>,
    pub proxies: Vec<String>,
    /// The load balancer, as the host reaches it.
    pub lb_url: String,
    pub admin_token: String,
    /// The image tag `rolling-upgrade` moves the deployment to.
    pub upgrade_to: Option<String>,
}

/// `KEY=VALUE` lines (deploy/.env).
pub fn read_env_file(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {} (run deploy/up.sh first)", path.display()))?;
    Ok(text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

impl Deployment {
    pub fn container(&self, service: &str) -> String {
        format!("{}_{}_1", self.project, service)
    }

    /// The replica id of a hub service (`hub2` → 2).
    pub fn hub_id(service: &str) -> Option<u64> {
        service.strip_prefix("hub")?.parse().ok()
    }

    pub fn hub_service(id: u64) -> String {
        format!("hub{id}")
    }

    /// The service's address on the deployment's network, if it has one.
    pub async fn ip(&self, service: &str) -> Option<String> {
        let format = format!(
            "{{{{with index .NetworkSettings.Networks \"{}\"}}}}{{{{.IPAddress}}}}{{{{end}}}}",
            self.network
        );
        let out = docker(&["inspect", "-f", &format, &self.container(service)])
            .await
            .ok()?;
        let ip = out.trim().to_string();
        (!ip.is_empty() && ip != "<no value>").then_some(ip)
    }

    /// `docker-compose` with this deployment's project and file.
    pub async fn compose(&self, args: &[&str]) -> anyhow::Result<String> {
        let file = self.compose_file.display().to_string();
        let mut all = vec!["-p", &self.project, "-f", &file];
        all.extend_from_slice(args);
        run("docker-compose", &all).await
    }

    /// `hubctl --output json ARGS` run inside the first hub container that
    /// answers (the member addresses are service names, which resolve only
    /// inside the network).
    pub async fn hubctl(&self, args: &[&str]) -> anyhow::Result<Value> {
        // Their addresses on the qh network: a service name may resolve to
        // a hub's address on the users network, where it does not listen.
        let mut hubs = Vec::new();
        for h in &self.hubs {
            if let Some(ip) = self.ip(h).await {
                hubs.push(format!("{ip}:7000"));
            }
        }
        let hubs = hubs.join(",");
        let mut last = anyhow!("no hub container to run hubctl in");
        for service in &self.hubs {
            let container = self.container(service);
            let mut all = vec![
                "exec",
                &container,
                "/usr/local/bin/hubctl",
                "--hub",
                &hubs,
                "--timeout-ms",
                "1500",
                "--output",
                "json",
            ];
            all.extend_from_slice(args);
            match tokio::time::timeout(Duration::from_secs(20), docker(&all)).await {
                Ok(Ok(out)) => {
                    return serde_json::from_str(&out)
                        .with_context(|| format!("hubctl printed no JSON: {out}"))
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = anyhow!("hubctl in {container} timed out"),
            }
        }
        Err(last)
    }

    /// The current leader's service name, per `hubctl status`.
    pub async fn leader(&self) -> anyhow::Result<String> {
        let status = self.hubctl(&["status"]).await?;
        let id = status["leader"]
            .as_u64()
            .ok_or_else(|| anyhow!("no leader: {status}"))?;
        Ok(Self::hub_service(id))
    }

    /// Waits until every hub is reachable and there is a leader that all
    /// agree on.
    pub async fn wait_healthy(&self, limit: Duration) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut last = Value::Null;
        while tokio::time::Instant::now() < deadline {
            if let Ok(s) = self.hubctl(&["status"]).await {
                let members = s["members"].as_array().cloned().unwrap_or_default();
                let all_up = !members.is_empty()
                    && members.iter().all(|m| m["reachable"] == Value::Bool(true));
                if all_up && s["leader"].is_u64() && s["error"].is_null() {
                    return Ok(s);
                }
                last = s;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        bail!("the cluster did not become healthy within {limit:?}; last status: {last}")
    }

    /// Where the data volume of a hub service lives on the host.
    pub async fn volume_path(&self, service: &str) -> anyhow::Result<PathBuf> {
        let out = docker(&[
            "inspect",
            "-f",
            "{{range .Mounts}}{{if eq .Destination \"/var/lib/quorumhub\"}}{{.Source}}{{end}}{{end}}",
            &self.container(service),
        ])
        .await?;
        let p = out.trim();
        if p.is_empty() {
            bail!("{service} has no volume at /var/lib/quorumhub");
        }
        Ok(PathBuf::from(p))
    }
}
