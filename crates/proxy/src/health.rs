//! Health of each hub replica, probed by this proxy itself, so that
//! `/hub/...` stops going to a leader that is gone, paused or cut off as
//! soon as another replica leads, without waiting for the watch stream to
//! time out.
//!
//! Every `interval` each known hub HTTP address is asked `GET /hub/health`
//! (node, leader, term) with a deadline. [`order`] then puts first the
//! answering replica that says it leads in the highest term, then the other
//! answering ones, then the silent ones (still tried, last: the probe may be
//! wrong). The route table is never touched.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Request;
use http_body_util::BodyExt;
use tokio::sync::watch;

use crate::client::{full, HttpClient};
use crate::shared::{HealthMap, Probe, Shared};

/// A request waiting on a hub replica is given up (504) once that many
/// probes in a row found the replica silent after the request was sent
/// (about 0.8 s with the defaults): it is paused or cut off, and the client
/// is better off retrying than waiting for its own timeout. A replica that
/// refuses connections (stopping or draining) is not silent: what it still
/// holds, it answers, or its connection breaks.
pub(crate) const GIVE_UP_AFTER_MISSES: u32 = 2;

fn misses(health: &HealthMap, addr: &str) -> u32 {
    match health.get(addr) {
        Some(Probe::Down { misses }) => *misses,
        _ => 0,
    }
}

/// Whether a request sent to `addr` when the probes said `at_send` (and
/// `start` misses) is given up now: after [`GIVE_UP_AFTER_MISSES`] more
/// misses in a row; or after one, when `addr` led at the send and another
/// replica now answers that it leads in a higher term. That leader's
/// election means `addr` lost its quorum (paused or cut off): what it holds
/// can no longer commit, so there is no point waiting for the second miss.
/// Pure, for tests as data.
pub(crate) fn give_up(at_send: Option<&Probe>, start: u32, addr: &str, now: &HealthMap) -> bool {
    let missed = misses(now, addr).saturating_sub(start);
    if missed >= GIVE_UP_AFTER_MISSES {
        return true;
    }
    let Some(Probe::Up { leads: true, term }) = at_send else {
        return false;
    };
    missed >= 1
        && now
            .iter()
            .any(|(a, p)| a != addr && matches!(p, Probe::Up { leads: true, term: t } if t > term))
}

/// Resolves once a request sent to `addr` now should be given up
/// ([`give_up`]).
pub(crate) async fn unresponsive(shared: &Shared, addr: &str) {
    let mut changed = shared.health_changed.subscribe();
    let (at_send, start) = {
        let h = shared.health.load();
        (h.get(addr).cloned(), misses(&h, addr))
    };
    loop {
        if give_up(at_send.as_ref(), start, addr, &shared.health.load()) {
            return;
        }
        if changed.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// `addrs` (leader first, as the hubs last said) reordered by what the
/// probes found. Pure, for tests as data.
pub(crate) fn order(addrs: &[String], health: &HealthMap) -> Vec<String> {
    let leader = addrs
        .iter()
        .filter_map(|a| match health.get(a) {
            Some(Probe::Up { leads: true, term }) => Some((*term, a)),
            _ => None,
        })
        .max_by_key(|(term, _)| *term)
        .map(|(_, a)| a.clone());
    let down = |a: &String| matches!(health.get(a), Some(Probe::Down { .. }));
    let mut out = Vec::with_capacity(addrs.len());
    out.extend(leader.iter().cloned());
    out.extend(
        addrs
            .iter()
            .filter(|a| Some(*a) != leader.as_ref() && !down(a))
            .cloned(),
    );
    out.extend(addrs.iter().filter(|a| down(a)).cloned());
    out
}

#[derive(serde::Deserialize)]
struct Health {
    node: u64,
    leader: Option<u64>,
    term: u64,
}

async fn probe(client: &HttpClient, addr: &str, limit: Duration) -> Probe {
    let Ok(req) = Request::get(format!("http://{addr}/hub/health"))
        .header(http::header::USER_AGENT, "quorumhub-proxy-health")
        .body(full(""))
    else {
        return Probe::Down { misses: 1 };
    };
    let answer = tokio::time::timeout(limit, async {
        let resp = match client.request(req).await {
            Ok(r) => r,
            // Nothing listens there: stopped or draining (still finishing
            // what it holds), not silent.
            Err(e) if refused(&e) => return None,
            // Unreachable host or network, reset mid-way: cut off.
            Err(_) => return Some(None),
        };
        let Ok(body) = resp.into_body().collect().await else {
            return Some(None);
        };
        Some(serde_json::from_slice::<Health>(&body.to_bytes()).ok())
    })
    .await;
    match answer {
        // 503 (no leader known) still parses: the replica is up.
        Ok(Some(Some(h))) => Probe::Up {
            leads: h.leader == Some(h.node),
            term: h.term,
        },
        // Refused: nothing listens (stopped or draining).
        Ok(None) => Probe::Down { misses: 0 },
        // Unreachable, or an answer that is not its health; or silence.
        Ok(Some(None)) | Err(_) => Probe::Down { misses: 1 },
    }
}

/// Whether a failed request was refused outright (`ECONNREFUSED`).
fn refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::ConnectionRefused;
        }
        cur = err.source();
    }
    false
}

/// Probe every known hub each `interval` until `stop`.
pub(crate) async fn run(
    shared: Arc<Shared>,
    client: HttpClient,
    interval: Duration,
    limit: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_logged: HashMap<String, Probe> = HashMap::new();
    loop {
        let started = Instant::now();
        let addrs = shared.hubs.load().ordered.clone();
        let probes =
            futures::future::join_all(addrs.iter().map(|a| probe(&client, a, limit))).await;
        let previous = shared.health.load_full();
        let map: HealthMap = addrs
            .into_iter()
            .zip(probes)
            .map(|(a, p)| {
                let p = match p {
                    Probe::Down { misses: 0 } => Probe::Down { misses: 0 },
                    Probe::Down { .. } => Probe::Down {
                        misses: misses(&previous, &a) + 1,
                    },
                    up => up,
                };
                (a, p)
            })
            .collect();
        for (addr, p) in &map {
            let was_down = matches!(last_logged.get(addr), Some(Probe::Down { .. }));
            let is_down = matches!(p, Probe::Down { .. });
            if was_down && !is_down {
                // Back: its old connections may be dead; start afresh.
                shared.hub_clients.reset(addr);
            }
            if was_down != is_down || !last_logged.contains_key(addr) {
                if is_down {
                    tracing::warn!(hub = %addr, "hub replica not answering its health check; sending it requests last");
                } else if was_down {
                    tracing::info!(hub = %addr, "hub replica answers again");
                }
            }
        }
        last_logged = map.clone();
        shared.health.store(Arc::new(map));
        shared.health_changed.send_replace(());
        let nap = interval.saturating_sub(started.elapsed());
        tokio::select! {
            _ = tokio::time::sleep(nap) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hubs_ordered_by_health_as_data() {
        let up = |leads, term| Probe::Up { leads, term };
        let addrs: Vec<String> = ["h1", "h2", "h3"].iter().map(|s| s.to_string()).collect();
        type Case = (&'static str, Vec<(&'static str, Probe)>, [&'static str; 3]);
        let cases: &[Case] = &[
            ("no probe yet: as the hubs said", vec![], ["h1", "h2", "h3"]),
            (
                "all up, h1 leads",
                vec![
                    ("h1", up(true, 2)),
                    ("h2", up(false, 2)),
                    ("h3", up(false, 2)),
                ],
                ["h1", "h2", "h3"],
            ),
            (
                "old leader silent, h3 leads a newer term",
                vec![
                    ("h1", Probe::Down { misses: 1 }),
                    ("h2", up(false, 3)),
                    ("h3", up(true, 3)),
                ],
                ["h3", "h2", "h1"],
            ),
            (
                "a cut-off old leader still claims its old term",
                vec![
                    ("h1", up(true, 2)),
                    ("h2", up(false, 3)),
                    ("h3", up(true, 3)),
                ],
                ["h3", "h1", "h2"],
            ),
            (
                "election in progress: no one leads, silent one last",
                vec![
                    ("h1", Probe::Down { misses: 1 }),
                    ("h2", up(false, 3)),
                    ("h3", up(false, 3)),
                ],
                ["h2", "h3", "h1"],
            ),
        ];
        for (what, probes, want) in cases {
            let map: HealthMap = probes
                .iter()
                .map(|(a, p)| (a.to_string(), p.clone()))
                .collect();
            assert_eq!(order(&addrs, &map), want.to_vec(), "{what}");
        }
    }

    #[test]
    fn when_a_request_waiting_on_a_silent_replica_is_given_up_as_data() {
        let up = |leads, term| Probe::Up { leads, term };
        let down = |misses| Probe::Down { misses };
        #[allow(clippy::type_complexity)]
        let cases: &[(&str, Option<Probe>, u32, Vec<(&str, Probe)>, bool)] = &[
            (
                "answering: wait",
                Some(up(true, 2)),
                0,
                vec![("h1", up(true, 2))],
                false,
            ),
            (
                "one miss, no one else leads: wait",
                Some(up(true, 2)),
                0,
                vec![("h1", down(1)), ("h2", up(false, 2))],
                false,
            ),
            (
                "one miss, h2 leads a newer term: give up",
                Some(up(true, 2)),
                0,
                vec![("h1", down(1)), ("h2", up(true, 3))],
                true,
            ),
            (
                "h2 leads a newer term but h1 still answers: wait",
                Some(up(true, 2)),
                0,
                vec![("h1", up(false, 3)), ("h2", up(true, 3))],
                false,
            ),
            (
                "h1 was a follower at the send: only two misses count",
                Some(up(false, 2)),
                0,
                vec![("h1", down(1)), ("h2", up(true, 3))],
                false,
            ),
            (
                "two misses: give up",
                Some(up(false, 2)),
                0,
                vec![("h1", down(2)), ("h2", up(false, 2))],
                true,
            ),
            (
                "misses before the send do not count",
                Some(down(3)),
                3,
                vec![("h1", down(4)), ("h2", up(true, 3))],
                false,
            ),
            (
                "refused (misses 0) is not silence",
                Some(up(true, 2)),
                0,
                vec![("h1", down(0)), ("h2", up(true, 3))],
                false,
            ),
        ];
        for (what, at_send, start, now, want) in cases {
            let map: HealthMap = now
                .iter()
                .map(|(a, p)| (a.to_string(), p.clone()))
                .collect();
            assert_eq!(
                give_up(at_send.as_ref(), *start, "h1", &map),
                *want,
                "{what}"
            );
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_not_silence_but_a_mute_listener_is() {
        let client = crate::client::unpooled_client(Duration::from_millis(200));
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let closed_addr = closed.local_addr().expect("addr").to_string();
        drop(closed);
        assert_eq!(
            probe(&client, &closed_addr, Duration::from_millis(300)).await,
            Probe::Down { misses: 0 }
        );
        // Accepts and never answers: a paused process.
        let mute = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let mute_addr = mute.local_addr().expect("addr").to_string();
        let _held = tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((c, _)) = mute.accept().await {
                conns.push(c);
            }
        });
        assert_eq!(
            probe(&client, &mute_addr, Duration::from_millis(300)).await,
            Probe::Down { misses: 1 }
        );
    }
}
