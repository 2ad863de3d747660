//! What the rolling upgrade adds to the usual checks: the cluster-version
//! gate seen from a client. A probe creates a group through the load
//! balancer every 300 ms the whole time (`POST /hub/api/groups/{name}`:
//! a command of log format 3). Before every replica runs the new release
//! each attempt must be refused cleanly (404 from an old replica, which has
//! no groups API; 503 naming the cluster version from a new one);
//! afterwards the cluster version is raised by the leader and groups are
//! created.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use crate::deployment::Deployment;
use crate::workload::{Api, Clock};

/// The log format the new release brings.
pub const NEW_FORMAT: u64 = 3;
/// The probe's groups are named `{PREFIX}{n}`.
const PREFIX: &str = "upgrade-probe-";

#[derive(Default)]
pub struct Probe {
    /// (microseconds since the start, HTTP status or 0, message)
    pub answers: Mutex<Vec<(u64, u16, String)>>,
}

pub async fn setup(_api: &Api, _lb: &str) -> anyhow::Result<()> {
    // Each run starts on fresh volumes: no group exists yet.
    Ok(())
}

async fn create_group(api: &Api, lb: &str, name: &str) -> (u16, String) {
    let sent = api
        .http
        .post(format!("{lb}/hub/api/groups/{name}"))
        .header("Authorization", format!("token {}", api.token))
        .send()
        .await;
    match sent {
        Ok(r) => {
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            let message = body["message"]
                .as_str()
                .or(body["name"].as_str())
                .unwrap_or_default()
                .to_string();
            (status, message)
        }
        Err(e) => (0, e.to_string()),
    }
}

/// Creates a new group every 300 ms until `stop`.
pub async fn run(
    api: Arc<Api>,
    lb: String,
    clock: Clock,
    probe: Arc<Probe>,
    mut stop: watch::Receiver<bool>,
) {
    let mut n = 0;
    while !*stop.borrow() {
        // A new name every time, so that no answer depends on an earlier one.
        let (status, message) = create_group(&api, &lb, &format!("{PREFIX}{n}")).await;
        n += 1;
        probe
            .answers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((clock.now(), status, message));
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            _ = stop.changed() => {}
        }
    }
}

/// What the probe saw, and what went wrong.
pub async fn verify(d: &Deployment, probe: &Probe) -> (String, Vec<String>) {
    let answers = probe
        .answers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut failures = Vec::new();
    let count = |f: &dyn Fn(&(u64, u16, String)) -> bool| answers.iter().filter(|a| f(a)).count();
    let old = count(&|a| a.1 == 404 && a.2 == "Not Found");
    let gated = count(&|a| a.1 == 503 && a.2.contains("cluster version"));
    let created = count(&|a| a.1 == 201);
    if let Some(bad) = answers.iter().find(|a| {
        !(a.1 == 201
            || (a.1 == 404 && a.2 == "Not Found")
            || (a.1 == 503 && a.2.contains("cluster version")))
    }) {
        failures.push(format!(
            "rolling upgrade: a group creation got {} {:?}, neither done nor refused by the gate",
            bad.1, bad.2
        ));
    }
    let version = match d.hubctl(&["status"]).await {
        Ok(s) => s["cluster_version"].as_u64(),
        Err(_) => None,
    };
    if version < Some(NEW_FORMAT) {
        failures.push(format!(
            "rolling upgrade: the cluster version is {version:?} after the upgrade, not {NEW_FORMAT}"
        ));
    }
    if created == 0 {
        failures.push("rolling upgrade: no group was created after the upgrade".into());
    }
    let text = format!(
        "\nrolling upgrade, cluster-version gate: {} group creations tried: {old} refused by an old \
         replica, {gated} refused by the gate, {created} done; cluster version now {}",
        answers.len(),
        version.map(|v| v.to_string()).unwrap_or("?".into())
    );
    (text, failures)
}
