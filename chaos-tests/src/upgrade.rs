//! What the rolling upgrade adds to the usual checks: the cluster-version
//! gate seen from a client. A probe renames one user back and forth
//! through the load balancer the whole time (`PATCH /hub/api/users/{name}`
//! with a new name: the first command of log format 2). Before every
//! replica runs the new release each attempt must be refused cleanly (400
//! from an old replica, which has no renames; 503 naming the cluster version
//! from a new one); afterwards the cluster version is raised by the leader
//! and renames succeed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use crate::deployment::Deployment;
use crate::workload::{Api, Clock};

/// The log format the new release brings, and the user the probe renames.
pub const NEW_FORMAT: u64 = 2;
const NAMES: [&str; 2] = ["ren-a", "ren-b"];

#[derive(Default)]
pub struct Probe {
    /// (microseconds since the start, HTTP status or 0, message)
    pub answers: Mutex<Vec<(u64, u16, String)>>,
}

pub async fn setup(api: &Api, lb: &str) -> anyhow::Result<()> {
    for name in NAMES {
        // A leftover of an earlier run is fine; only ren-a must exist.
        let _ = api
            .http
            .delete(format!("{lb}/hub/api/users/{name}"))
            .header("Authorization", format!("token {}", api.token))
            .send()
            .await;
    }
    let r = api
        .http
        .post(format!("{lb}/hub/api/users/{}", NAMES[0]))
        .header("Authorization", format!("token {}", api.token))
        .send()
        .await?;
    anyhow::ensure!(
        r.status().as_u16() == 201,
        "cannot create {}: {}",
        NAMES[0],
        r.status()
    );
    Ok(())
}

async fn rename(api: &Api, lb: &str, from: &str, to: &str) -> (u16, String) {
    let sent = api
        .http
        .patch(format!("{lb}/hub/api/users/{from}"))
        .header("Authorization", format!("token {}", api.token))
        .body(format!("{{\"name\": \"{to}\"}}"))
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

/// Renames back and forth every 300 ms until `stop`.
pub async fn run(
    api: Arc<Api>,
    lb: String,
    clock: Clock,
    probe: Arc<Probe>,
    mut stop: watch::Receiver<bool>,
) {
    let mut at = 0;
    while !*stop.borrow() {
        let (from, to) = (NAMES[at], NAMES[1 - at]);
        let (status, message) = rename(&api, &lb, from, to).await;
        if status == 200 {
            at = 1 - at;
        }
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
    let old = count(&|a| a.1 == 400 && a.2.contains("not supported"));
    let gated = count(&|a| a.1 == 503 && a.2.contains("cluster version"));
    let renamed = count(&|a| a.1 == 200);
    if let Some(bad) = answers.iter().find(|a| {
        !(a.1 == 200
            || (a.1 == 400 && a.2.contains("not supported"))
            || (a.1 == 503 && a.2.contains("cluster version")))
    }) {
        failures.push(format!(
            "rolling upgrade: a rename got {} {:?}, neither done nor refused by the gate",
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
    if renamed == 0 {
        failures.push("rolling upgrade: no rename succeeded after the upgrade".into());
    }
    let text = format!(
        "\nrolling upgrade, cluster-version gate: {} renames tried: {old} refused by an old replica, \
         {gated} refused by the gate, {renamed} done; cluster version now {}",
        answers.len(),
        version.map(|v| v.to_string()).unwrap_or("?".into())
    );
    (text, failures)
}
