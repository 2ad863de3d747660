//! Services (log format 8): the configured set, replaced whole by the
//! leader (`SetServices`), their `/services/{name}/` routes, and the
//! running copy of each managed service (`ServiceStarted`,
//! `ServiceStopped`). A service's token is only ever stored as a hash: the
//! configured one in the service, a managed copy's in its process record,
//! which goes when the copy is recorded as stopped.

use std::collections::BTreeMap;

use crate::command::{Rejection, Response};
use crate::model::{Route, RouteEvent, Service, ServiceProcess};
use crate::names::validate_group_name;
use crate::state::{HubState, Outcome};
use crate::Millis;

impl HubState {
    pub(crate) fn set_services(&mut self, services: &[Service]) -> Outcome {
        let mut next: BTreeMap<String, Service> = BTreeMap::new();
        for s in services {
            validate_group_name(&s.name).map_err(|why| Rejection::InvalidName {
                name: s.name.clone(),
                why: why.replacen("username", "service name", 1),
            })?;
            if next.contains_key(&s.name) {
                return Err(Rejection::InvalidName {
                    name: s.name.clone(),
                    why: "service defined twice".into(),
                });
            }
            let mut s = s.clone();
            // What only the state sets. A running copy stays recorded while
            // the service stays managed with the same command and URL; a
            // changed one is dropped (its token with it), and the leader
            // starts one as now configured.
            s.retired = false;
            s.process = self
                .services
                .get(&s.name)
                .filter(|old| old.command == s.command && old.url == s.url)
                .and_then(|old| old.process.clone())
                .filter(|_| s.managed());
            next.insert(s.name.clone(), s);
        }
        // A removed service whose copy runs stays, retired, until the
        // leader has stopped that copy; one that became external keeps the
        // record of its old copy until then. (A copy whose command or URL
        // changed is simply dropped above: its token goes at once, and the
        // replica on its host stops it.)
        let mut gone_clients = Vec::new();
        for (name, old) in &self.services {
            if !next.contains_key(name) && !old.retired {
                gone_clients.push(old.oauth_client_id());
            }
            let Some(p) = &old.process else { continue };
            match next.get_mut(name) {
                Some(s) if !s.managed() => s.process = Some(p.clone()),
                Some(_) => {}
                None => {
                    let mut retired = old.clone();
                    retired.retired = true;
                    retired.url = None;
                    next.insert(name.clone(), retired);
                }
            }
        }
        // JupyterHub deletes a removed service's OAuth client, and with it
        // the tokens users gave it.
        let revoked: Vec<String> = self
            .tokens
            .values()
            .filter(|t| {
                t.client_id
                    .as_ref()
                    .is_some_and(|c| gone_clients.contains(c))
            })
            .map(|t| t.id.clone())
            .collect();
        for id in revoked {
            self.remove_token(&id);
        }
        let mut events = Vec::new();
        for old in self.services.values() {
            let prefix = old.prefix();
            let still = next.get(&old.name).and_then(|s| s.url.as_ref()).is_some();
            if !still && self.routes.remove(&prefix).is_some() {
                events.push(RouteEvent::Delete { prefix });
            }
        }
        for s in next.values() {
            let Some(url) = &s.url else { continue };
            let route = Route {
                prefix: s.prefix(),
                target: url.clone(),
                user: String::new(),
                server_name: String::new(),
            };
            if self.routes.get(&route.prefix) != Some(&route) {
                self.routes.insert(route.prefix.clone(), route.clone());
                events.push(RouteEvent::Upsert(route));
            }
        }
        self.services = next;
        self.rebuild_service_index();
        Ok((Response::Done, events))
    }

    pub(crate) fn service_started(
        &mut self,
        index: u64,
        at: Millis,
        name: &str,
        process: (&str, u32, u64, &str),
    ) -> Outcome {
        let (host, pid, proc_start, token_hash) = process;
        let s = self
            .services
            .get_mut(name)
            .filter(|s| s.managed() && !s.retired)
            .ok_or_else(|| Rejection::NoSuchService {
                name: name.to_string(),
            })?;
        if let Some(p) = &s.process {
            return Err(Rejection::ServiceRunning {
                name: name.to_string(),
                host: p.host.clone(),
                pid: p.pid,
            });
        }
        s.process = Some(ServiceProcess {
            generation: index,
            host: host.to_string(),
            pid,
            proc_start,
            token_hash: token_hash.to_string(),
            started: at,
        });
        self.rebuild_service_index();
        Ok((Response::Done, vec![]))
    }

    pub(crate) fn service_stopped(&mut self, name: &str, generation: u64) -> Outcome {
        let s = self
            .services
            .get_mut(name)
            .ok_or_else(|| Rejection::NoSuchService {
                name: name.to_string(),
            })?;
        match &s.process {
            Some(p) if p.generation == generation => {}
            other => {
                return Err(Rejection::StaleServiceCopy {
                    name: name.to_string(),
                    got: generation,
                    current: other.as_ref().map_or(0, |p| p.generation),
                })
            }
        }
        s.process = None;
        if s.retired {
            self.services.remove(name);
        }
        self.rebuild_service_index();
        Ok((Response::Done, vec![]))
    }

    /// The service whose token (configured, or its running copy's) hashes
    /// to `hash`.
    pub fn service_by_token_hash(&self, hash: &str) -> Option<&Service> {
        self.service_by_hash
            .get(hash)
            .and_then(|name| self.services.get(name))
    }

    /// The services as the API shows them (not the retired ones).
    pub fn configured_services(&self) -> impl Iterator<Item = &Service> {
        self.services.values().filter(|s| !s.retired)
    }

    pub(crate) fn rebuild_service_index(&mut self) {
        self.service_by_hash = self
            .services
            .values()
            .flat_map(|s| {
                let configured = s.token_hash.clone().filter(|_| !s.retired);
                let copy = s.process.as_ref().map(|p| p.token_hash.clone());
                configured
                    .into_iter()
                    .chain(copy)
                    .map(move |h| (h, s.name.clone()))
            })
            .collect();
    }
}
