//! Managed services (JupyterHub's `services` with a `command`): a local
//! process the leader starts with JupyterHub's service environment, in its
//! own session so that it outlives the hub that started it. A later leader
//! on the same host finds it again by pid and start time ([`ServiceRunner::liveness`]);
//! the hub's supervisor records it in the replicated state and knows
//! nothing of processes itself.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::{Liveness, ProcessSpec, SpawnError};

/// One copy of a managed service to start.
#[derive(Clone, Debug)]
pub struct ServiceLaunch {
    pub name: String,
    pub command: Vec<String>,
    /// From the configuration; JupyterHub's variables win over it.
    pub environment: BTreeMap<String, String>,
    /// The copy's API token (`JUPYTERHUB_API_TOKEN`).
    pub token: String,
    /// `JUPYTERHUB_API_URL`.
    pub hub_api_url: String,
    /// The hub's public URL (`JUPYTERHUB_PUBLIC_HUB_URL`, `JUPYTERHUB_HOST`).
    pub public_url: String,
    /// Where the service listens (`JUPYTERHUB_SERVICE_URL`), if it does.
    pub url: Option<String>,
    /// Where the OAuth provider sends users back
    /// (`JUPYTERHUB_OAUTH_CALLBACK_URL`): the service's `oauth_redirect_uri`,
    /// or `/services/{name}/oauth_callback`.
    pub oauth_callback: String,
}

/// A started copy: how to find it again.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServiceCopy {
    pub host: String,
    pub pid: u32,
    pub proc_start: u64,
}

/// JupyterHub's environment of a managed service (`Service.start` and its
/// `_ServiceSpawner`), over the configured `environment`.
pub fn service_env(l: &ServiceLaunch) -> BTreeMap<String, String> {
    let mut env = l.environment.clone();
    let public = l.public_url.trim_end_matches('/');
    let origin = match public.find("://") {
        Some(i) => match public[i + 3..].find('/') {
            Some(j) => &public[..i + 3 + j],
            None => public,
        },
        None => public,
    };
    let prefix = format!("/services/{}/", crate::url_escape_path(&l.name));
    let access = format!(r#"["access:services!service={}"]"#, l.name);
    let mut set = |k: &str, v: String| {
        env.insert(k.to_string(), v);
    };
    set("JUPYTERHUB_SERVICE_NAME", l.name.clone());
    set("JUPYTERHUB_API_TOKEN", l.token.clone());
    set("JPY_API_TOKEN", l.token.clone());
    set("JUPYTERHUB_API_URL", l.hub_api_url.clone());
    set("JUPYTERHUB_BASE_URL", "/".into());
    set("JUPYTERHUB_CLIENT_ID", format!("service-{}", l.name));
    set("JUPYTERHUB_HOST", origin.to_string());
    set("JUPYTERHUB_PUBLIC_HUB_URL", format!("{public}/hub/"));
    set("JUPYTERHUB_OAUTH_CALLBACK_URL", l.oauth_callback.clone());
    set("JUPYTERHUB_OAUTH_SCOPES", access.clone());
    set("JUPYTERHUB_OAUTH_ACCESS_SCOPES", access);
    set("JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES", "[]".into());
    if let Some(url) = &l.url {
        set("JUPYTERHUB_SERVICE_URL", url.clone());
        set("JUPYTERHUB_SERVICE_PREFIX", prefix.clone());
        set("JUPYTERHUB_PUBLIC_URL", format!("{origin}{prefix}"));
    }
    env
}

/// Starts, finds and stops the copies of managed services, as processes of
/// the hub's own user (as JupyterHub runs them) with their working
/// directory and log in `<data-dir>/services/<name>/`.
#[derive(Clone, Debug)]
pub struct ServiceRunner {
    dir: PathBuf,
}

impl ServiceRunner {
    pub fn new(dir: PathBuf) -> ServiceRunner {
        ServiceRunner { dir }
    }

    fn service_dir(&self, name: &str) -> PathBuf {
        self.dir.join(crate::account::dir_escape(name))
    }

    /// Starts a copy and notes it in `<dir>/<name>/copy` before returning,
    /// so that this replica finds it again ([`ServiceRunner::local_copies`])
    /// even if the copy is never recorded in the replicated state.
    pub fn start(&self, l: &ServiceLaunch) -> Result<ServiceCopy, SpawnError> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = self.service_dir(&l.name);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&dir)
            .map_err(|source| SpawnError::ServersDir {
                path: dir.clone(),
                source,
            })?;
        let spawned = crate::spawn_process(&ProcessSpec {
            cmd: l.command.clone(),
            env: service_env(l),
            cwd: Some(dir.clone()),
            log_path: Some(dir.join("service.log")),
            run_as: None,
        })?;
        let copy = ServiceCopy {
            host: spawned.host,
            pid: spawned.pid,
            proc_start: spawned.proc_start,
        };
        let note = serde_json::json!({ "name": l.name, "copy": copy });
        if let Err(e) = std::fs::write(dir.join("copy"), note.to_string()) {
            tracing::warn!(service = %l.name, error = %e, "cannot note the started copy; only the replicated record knows it");
        }
        Ok(copy)
    }

    /// The copies this replica started and has not forgotten, each with its
    /// service's name and how long ago it was noted.
    pub fn local_copies(&self) -> Vec<(String, ServiceCopy, Duration)> {
        let Ok(dirs) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for d in dirs.flatten() {
            let path = d.path().join("copy");
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let age = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .unwrap_or_default();
            #[derive(serde::Deserialize)]
            struct Note {
                name: String,
                copy: ServiceCopy,
            }
            match serde_json::from_str::<Note>(&text) {
                Ok(n) => out.push((n.name, n.copy, age)),
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "ignoring an unreadable service copy note")
                }
            }
        }
        out
    }

    /// Forget the note of `name`'s copy, if it is `copy`.
    pub fn forget(&self, name: &str, copy: &ServiceCopy) {
        let path = self.service_dir(name).join("copy");
        let noted = self
            .local_copies()
            .into_iter()
            .any(|(n, c, _)| n == name && &c == copy);
        if noted {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Whether the copy runs: `Unknown` for one on another host, which
    /// this one cannot see.
    pub fn liveness(&self, copy: &ServiceCopy) -> Liveness {
        if copy.host != crate::host_name() {
            Liveness::Unknown
        } else if crate::is_alive(copy.pid, copy.proc_start) {
            Liveness::Running
        } else {
            Liveness::Gone
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; a copy on another host cannot
    /// be signalled from here.
    pub async fn stop(&self, copy: &ServiceCopy, grace: Duration) -> Result<(), SpawnError> {
        if copy.host != crate::host_name() {
            return Err(SpawnError::OtherHost {
                host: copy.host.clone(),
                pid: copy.pid,
            });
        }
        crate::stop_process(copy.pid, copy.proc_start, grace).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real process: started, noted, found alive, stopped, forgotten.
    #[tokio::test]
    async fn copies_are_noted_found_stopped_and_forgotten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runner = ServiceRunner::new(dir.path().join("services"));
        let launch = ServiceLaunch {
            name: "sleeper".into(),
            command: vec!["sleep".into(), "30".into()],
            environment: BTreeMap::new(),
            token: "t0k3n-t0k3n-t0k3n".into(),
            hub_api_url: "http://127.0.0.1:1/hub/api".into(),
            public_url: "http://127.0.0.1:1".into(),
            url: None,
            oauth_callback: "/services/sleeper/oauth_callback".into(),
        };
        let copy = runner.start(&launch).expect("start");
        let noted = runner.local_copies();
        assert_eq!(noted.len(), 1);
        assert_eq!((noted[0].0.as_str(), &noted[0].1), ("sleeper", &copy));
        assert_eq!(runner.liveness(&copy), Liveness::Running);
        let elsewhere = ServiceCopy {
            host: format!("{}-other", crate::host_name()),
            ..copy.clone()
        };
        assert_eq!(runner.liveness(&elsewhere), Liveness::Unknown);
        assert!(runner.stop(&elsewhere, Duration::ZERO).await.is_err());
        // Forgetting another copy keeps the note.
        runner.forget(
            "sleeper",
            &ServiceCopy {
                pid: 1,
                ..copy.clone()
            },
        );
        assert_eq!(runner.local_copies().len(), 1);
        runner
            .stop(&copy, Duration::from_secs(1))
            .await
            .expect("stop");
        assert_eq!(runner.liveness(&copy), Liveness::Gone);
        runner.forget("sleeper", &copy);
        assert!(runner.local_copies().is_empty());
    }

    #[test]
    fn a_services_environment_is_jupyterhubs() {
        let l = ServiceLaunch {
            name: "idle-culler".into(),
            command: vec!["cull".into()],
            environment: BTreeMap::from([
                ("JUPYTERHUB_API_TOKEN".to_string(), "mine".to_string()),
                ("TZ".to_string(), "UTC".to_string()),
            ]),
            token: "t0k3n".into(),
            hub_api_url: "http://127.0.0.1:8081/hub/api".into(),
            public_url: "https://hub.example.org/".into(),
            url: Some("http://127.0.0.1:10101".into()),
            oauth_callback: "/services/idle-culler/oauth_callback".into(),
        };
        let env = service_env(&l);
        let want = [
            ("JUPYTERHUB_SERVICE_NAME", "idle-culler"),
            ("JUPYTERHUB_API_TOKEN", "t0k3n"),
            ("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api"),
            ("JUPYTERHUB_CLIENT_ID", "service-idle-culler"),
            ("JUPYTERHUB_HOST", "https://hub.example.org"),
            ("JUPYTERHUB_PUBLIC_HUB_URL", "https://hub.example.org/hub/"),
            (
                "JUPYTERHUB_OAUTH_CALLBACK_URL",
                "/services/idle-culler/oauth_callback",
            ),
            (
                "JUPYTERHUB_OAUTH_ACCESS_SCOPES",
                r#"["access:services!service=idle-culler"]"#,
            ),
            ("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101"),
            ("JUPYTERHUB_SERVICE_PREFIX", "/services/idle-culler/"),
            (
                "JUPYTERHUB_PUBLIC_URL",
                "https://hub.example.org/services/idle-culler/",
            ),
            ("TZ", "UTC"),
        ];
        for (k, v) in want {
            assert_eq!(env.get(k).map(String::as_str), Some(v), "{k}");
        }
        let external = ServiceLaunch {
            url: None,
            oauth_callback: "https://dash.example.org/cb".into(),
            ..l
        };
        assert_eq!(
            service_env(&external)["JUPYTERHUB_OAUTH_CALLBACK_URL"],
            "https://dash.example.org/cb"
        );
        assert!(!service_env(&external).contains_key("JUPYTERHUB_SERVICE_URL"));
    }
}
