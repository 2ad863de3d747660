//! Elections that never disrupt a healthy cluster: a pre-vote in front of
//! openraft's own election.
//!
//! openraft 0.9 has no pre-vote. A follower that restarts, or comes back
//! from a pause or a partition, times out before the leader reaches it
//! again, campaigns with a higher term, and the leader steps down when it
//! sees that term. So openraft's election timer is switched off
//! (`Config::enable_elect = false`) and this module decides when to call
//! `raft.trigger().elect()`:
//!
//! 1. A replica counts time since it last heard from a leader it accepted
//!    ([`Election::heard_from_leader`], called by the Raft service for every
//!    AppendEntries or InstallSnapshot openraft took, and for every vote it
//!    granted). A replica that just started counts from its start.
//! 2. After the leader lease plus a random election timeout without contact
//!    (the same wait openraft's own timer uses), it asks every other voter
//!    `PreVote`. A voter grants only if it has not heard from a leader for a
//!    whole lease itself (a leader: if no quorum acknowledged it within the
//!    lease), and the candidate's last log id is not behind its own.
//! 3. With grants from a majority (itself included) it campaigns; otherwise
//!    it waits another random timeout and asks again.
//!
//! Why this is safe: Raft's safety never depends on when an election starts,
//! only its liveness does; the pre-vote changes no vote and no term.
//! Liveness: when the leader is gone, every survivor stops hearing from it,
//! so after one lease they all grant, and the first to ask with the longest
//! log wins; randomised waits break ties as in Raft. One exception, bounded
//! in time: during a leader transfer the leader and its target grant only
//! the target (`Election::hand_off`, at most 3 × election-timeout-max + 1 s
//! on the leader, 2 × election-timeout-max + 1 s on the target). A voter whose lease has
//! run out also accepts openraft's real vote request, which checks the same
//! lease (`leader_lease = election_timeout_max`), so a granted pre-vote is
//! not refused for the lease. A peer of an older release answers
//! `UNIMPLEMENTED`; that counts as a grant (such a peer still runs
//! openraft's own timer, which is no stricter).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::storage::RaftLogStorage;
use openraft::ServerState;
use quorumhub_proto::v1::raft_client::RaftClient;
use quorumhub_proto::v1::{PreVoteReply, PreVoteRequest};
use rand::Rng;
use tokio::sync::watch;
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;

use crate::auth::ClientAuth;
use crate::log_store::LogStore;
use crate::{NodeId, Raft};

/// The election timing, from openraft's config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// openraft's leader lease (= election timeout max): a voter refuses a
    /// vote while it heard from its leader within it.
    pub lease: Duration,
    pub timeout_min: Duration,
    pub timeout_max: Duration,
}

impl Timing {
    pub fn from_config(c: &openraft::Config) -> Timing {
        Timing {
            lease: Duration::from_millis(c.election_timeout_max),
            timeout_min: Duration::from_millis(c.election_timeout_min),
            timeout_max: Duration::from_millis(c.election_timeout_max),
        }
    }

    /// How long a replica waits without contact before it asks for votes:
    /// lease plus a random election timeout, as openraft's own timer.
    #[cfg(test)]
    fn candidate_wait(&self) -> Duration {
        self.lease + self.random_timeout()
    }

    /// A random election timeout in `[timeout_min, timeout_max)`.
    fn random_timeout(&self) -> Duration {
        let (lo, hi) = (
            self.timeout_min.as_millis() as u64,
            self.timeout_max.as_millis() as u64,
        );
        let t = if hi > lo {
            rand::thread_rng().gen_range(lo..hi)
        } else {
            lo
        };
        Duration::from_millis(t)
    }
}

/// A last log id as `(term, index)`; `None` for an empty log. Ordered as
/// Raft orders logs: term first, then index.
pub type LastLog = Option<(u64, u64)>;

/// What a voter knows when it judges a pre-vote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoterView {
    /// This replica leads.
    pub leading: bool,
    /// A leader: how long ago a quorum last acknowledged it.
    pub quorum_ack_ago: Option<Duration>,
    /// How long ago this replica last heard from a leader.
    pub contact_ago: Duration,
    pub last_log: LastLog,
    /// Leadership is being handed to this node (the leader transferring, or
    /// the target it asked to campaign): no other candidate is granted
    /// meanwhile, so the hand-off is not lost to a rival's election.
    pub handing_to: Option<u64>,
}

/// Whether a voter in `view` grants a pre-vote to a candidate whose log
/// ends at `candidate`. Pure: the rules of this module, testable as data.
pub fn judge(
    view: &VoterView,
    candidate_id: u64,
    candidate: LastLog,
    lease: Duration,
) -> Result<(), &'static str> {
    if view.handing_to.is_some_and(|to| to != candidate_id) {
        return Err("leadership is being handed to another replica");
    }
    if view.leading {
        if view.quorum_ack_ago.is_some_and(|ago| ago <= lease) {
            return Err("I lead, and a quorum acknowledged me within the lease");
        }
    } else if view.contact_ago <= lease {
        return Err("I heard from the leader within its lease");
    }
    if candidate < view.last_log {
        return Err("my log is ahead of yours");
    }
    Ok(())
}

/// One replica's election state: leader contact, timing, and the log to
/// compare with candidates'.
pub struct Election {
    epoch: Instant,
    /// Milliseconds after `epoch` of the last leader contact.
    contact_ms: AtomicU64,
    timing: Timing,
    log: LogStore,
    cluster_id: String,
    /// A hand-off in progress: to whom, until when.
    hand_off: std::sync::Mutex<Option<(u64, Instant)>>,
}

impl Election {
    pub fn new(timing: Timing, log: LogStore, cluster_id: String) -> Arc<Election> {
        Arc::new(Election {
            epoch: Instant::now(),
            contact_ms: AtomicU64::new(0),
            timing,
            log,
            cluster_id,
            hand_off: std::sync::Mutex::new(None),
        })
    }

    /// Leadership is being handed to `to` for at most `limit`: refuse every
    /// other candidate's pre-vote meanwhile. Called by a transferring leader
    /// for its target, and by the target when asked to campaign; ended by
    /// [`Election::hand_off_done`] or by the time limit.
    pub fn hand_off(&self, to: u64, limit: Duration) {
        *self.hand_off.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((to, Instant::now() + limit));
    }

    pub fn hand_off_done(&self) {
        *self.hand_off.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn handing_to(&self) -> Option<u64> {
        let mut h = self.hand_off.lock().unwrap_or_else(|p| p.into_inner());
        match *h {
            Some((to, until)) if Instant::now() < until => Some(to),
            Some(_) => {
                *h = None;
                None
            }
            None => None,
        }
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// A leader this replica accepted just reached it (or it granted a vote).
    pub fn heard_from_leader(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.contact_ms.fetch_max(now, Ordering::Relaxed);
    }

    /// Time since the last leader contact (or since start).
    pub fn since_contact(&self) -> Duration {
        let at = Duration::from_millis(self.contact_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(at)
    }

    async fn last_log(&self) -> LastLog {
        let mut log = self.log.clone();
        match log.get_log_state().await {
            Ok(s) => s.last_log_id.map(|l| (l.leader_id.term, l.index)),
            // Unreadable log: claim the longest possible, so this replica
            // neither wins nor grants on a log it cannot see.
            Err(_) => Some((u64::MAX, u64::MAX)),
        }
    }

    /// Answer a candidate's pre-vote.
    pub async fn answer(&self, raft: &Raft, req: &PreVoteRequest) -> PreVoteReply {
        if req.cluster_id != self.cluster_id {
            return PreVoteReply {
                granted: false,
                reason: format!("this replica belongs to cluster {:?}", self.cluster_id),
            };
        }
        let (leading, quorum_ack_ago) = {
            let m = raft.metrics();
            let m = m.borrow();
            (
                m.state == ServerState::Leader,
                m.millis_since_quorum_ack.map(Duration::from_millis),
            )
        };
        let view = VoterView {
            leading,
            quorum_ack_ago,
            contact_ago: self.since_contact(),
            last_log: self.last_log().await,
            handing_to: self.handing_to(),
        };
        let candidate = req
            .has_last_log
            .then_some((req.last_log_term, req.last_log_index));
        let verdict = judge(&view, req.candidate, candidate, self.timing.lease);
        tracing::debug!(candidate = req.candidate, ?view, ?verdict, "pre-vote");
        PreVoteReply {
            granted: verdict.is_ok(),
            reason: verdict.err().unwrap_or("granted").to_string(),
        }
    }

    /// Decide when this replica campaigns, until `stop` turns true or the
    /// Raft node stops.
    pub async fn run(
        self: Arc<Self>,
        raft: Raft,
        id: NodeId,
        auth: ClientAuth,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut last_attempt = Instant::now();
        loop {
            let retry = self.timing.random_timeout();
            let wait = self.timing.lease + retry;
            // Sleep until `wait` (lease plus a random timeout) has passed
            // since the last contact, and the random timeout alone since the
            // last attempt: a replica already past the lease asks again soon
            // (a pre-vote changes nothing), so the first ask after a heal
            // comes within one timeout. Contact may come meanwhile.
            loop {
                let to_contact = wait.saturating_sub(self.since_contact());
                let to_retry = retry.saturating_sub(last_attempt.elapsed());
                let left = to_contact.max(to_retry);
                if left.is_zero() {
                    break;
                }
                let nap = left.max(Duration::from_millis(2));
                tokio::select! {
                    _ = tokio::time::sleep(nap) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
            last_attempt = Instant::now();
            let m = raft.metrics().borrow().clone();
            if m.running_state.is_err() {
                return;
            }
            if m.state == ServerState::Leader {
                continue;
            }
            let membership = m.membership_config.membership().clone();
            let voters: Vec<NodeId> = membership.voter_ids().collect();
            if !voters.contains(&id) {
                continue; // a learner never campaigns
            }
            let last = self.last_log().await;
            let req = PreVoteRequest {
                cluster_id: self.cluster_id.clone(),
                candidate: id,
                has_last_log: last.is_some(),
                last_log_term: last.map(|l| l.0).unwrap_or(0),
                last_log_index: last.map(|l| l.1).unwrap_or(0),
            };
            let limit = self.timing.timeout_max.max(Duration::from_millis(100));
            let asked_at = Instant::now();
            let mut asks = futures::stream::FuturesUnordered::new();
            for peer in voters.iter().filter(|v| **v != id) {
                let Some(node) = membership.get_node(peer) else {
                    continue;
                };
                // A fresh connection each round, as openraft does for its
                // votes: after a partition heals, a cached one may be dead
                // for seconds (until HTTP/2 keep-alive notices) and every
                // pre-vote on it would time out.
                let Ok(ch) = crate::network::channel(&node.grpc_addr, limit) else {
                    continue;
                };
                let client = RaftClient::with_interceptor(ch, auth.clone());
                asks.push(ask(client, req.clone(), limit, *peer));
            }
            // Campaign as soon as a majority granted: a peer that is still
            // cut off would otherwise hold every round up for `limit`.
            let mut answers = Vec::new();
            let mut granted = 1;
            while granted * 2 <= voters.len() {
                let Some(answer) = futures::StreamExt::next(&mut asks).await else {
                    break;
                };
                granted += usize::from(answer.1);
                answers.push(answer);
            }
            // A leader was heard from, or this replica granted someone's
            // vote, while it asked: that one is campaigning or leads, and a
            // second candidate would only split the votes.
            let contact_meanwhile = self.since_contact() < asked_at.elapsed();
            if granted * 2 > voters.len() && contact_meanwhile {
                tracing::debug!(
                    "pre-vote granted, but a leader or candidate was heard from meanwhile; not campaigning"
                );
            } else if granted * 2 > voters.len() {
                tracing::info!(
                    granted,
                    voters = voters.len(),
                    since_contact_ms = self.since_contact().as_millis() as u64,
                    term = m.current_term,
                    "no leader heard from; a majority granted the pre-vote: campaigning"
                );
                if raft.trigger().elect().await.is_err() {
                    return;
                }
            } else {
                let refusals: Vec<String> = answers
                    .iter()
                    .filter(|(_, ok, _)| !*ok)
                    .map(|(peer, _, why)| format!("{peer}: {why}"))
                    .collect();
                tracing::debug!(?refusals, "pre-vote refused; not campaigning");
            }
        }
    }
}

type PeerClient = RaftClient<InterceptedService<Channel, ClientAuth>>;

async fn ask(
    mut client: PeerClient,
    req: PreVoteRequest,
    limit: Duration,
    peer: NodeId,
) -> (NodeId, bool, String) {
    let mut call = tonic::Request::new(req);
    call.set_timeout(limit);
    match tokio::time::timeout(limit, client.pre_vote(call)).await {
        Ok(Ok(r)) => {
            let r = r.into_inner();
            (peer, r.granted, r.reason)
        }
        // A peer of an older release: it runs openraft's own timer.
        Ok(Err(s)) if s.code() == tonic::Code::Unimplemented => {
            (peer, true, "older release".into())
        }
        Ok(Err(s)) => (peer, false, format!("unreachable: {}", s.message())),
        Err(_) => (peer, false, "no answer in time".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_votes_as_data() {
        let lease = Duration::from_millis(100);
        let ms = Duration::from_millis;
        let follower = |contact: u64, last: LastLog| VoterView {
            leading: false,
            quorum_ack_ago: None,
            contact_ago: ms(contact),
            last_log: last,
            handing_to: None,
        };
        let leader = |ack: Option<u64>| VoterView {
            leading: true,
            quorum_ack_ago: ack.map(ms),
            contact_ago: ms(0),
            last_log: Some((3, 10)),
            handing_to: None,
        };
        let cases: &[(&str, VoterView, LastLog, Result<(), &str>)] = &[
            (
                "follower that hears its leader refuses a restarted peer",
                follower(20, Some((3, 10))),
                Some((3, 10)),
                Err("I heard from the leader within its lease"),
            ),
            (
                "lease exactly reached still refuses",
                follower(100, Some((3, 10))),
                Some((3, 10)),
                Err("I heard from the leader within its lease"),
            ),
            (
                "leader gone, equal logs: granted",
                follower(101, Some((3, 10))),
                Some((3, 10)),
                Ok(()),
            ),
            (
                "leader gone, candidate longer: granted",
                follower(500, Some((3, 10))),
                Some((3, 12)),
                Ok(()),
            ),
            (
                "leader gone, candidate shorter: refused",
                follower(500, Some((3, 10))),
                Some((3, 9)),
                Err("my log is ahead of yours"),
            ),
            (
                "a later term beats a longer log",
                follower(500, Some((3, 10))),
                Some((4, 2)),
                Ok(()),
            ),
            (
                "an older term loses to a shorter log",
                follower(500, Some((4, 2))),
                Some((3, 10)),
                Err("my log is ahead of yours"),
            ),
            (
                "empty candidate log against a non-empty one",
                follower(500, Some((1, 1))),
                None,
                Err("my log is ahead of yours"),
            ),
            (
                "both empty (a new cluster)",
                follower(500, None),
                None,
                Ok(()),
            ),
            (
                "a leader with a fresh quorum refuses",
                leader(Some(30)),
                Some((3, 10)),
                Err("I lead, and a quorum acknowledged me within the lease"),
            ),
            (
                "an isolated leader grants",
                leader(Some(400)),
                Some((3, 10)),
                Ok(()),
            ),
            (
                "a leader never acknowledged grants",
                leader(None),
                Some((3, 10)),
                Ok(()),
            ),
            (
                "during a hand-off to the candidate (9): granted as usual",
                VoterView {
                    handing_to: Some(9),
                    ..follower(500, Some((3, 10)))
                },
                Some((3, 10)),
                Ok(()),
            ),
            (
                "during a hand-off to another node: refused, leader gone or not",
                VoterView {
                    handing_to: Some(2),
                    ..follower(500, Some((3, 10)))
                },
                Some((3, 12)),
                Err("leadership is being handed to another replica"),
            ),
            (
                "a transferring leader refuses a rival of its target",
                VoterView {
                    handing_to: Some(2),
                    ..leader(Some(400))
                },
                Some((3, 10)),
                Err("leadership is being handed to another replica"),
            ),
        ];
        for (what, view, candidate, want) in cases {
            // The candidate asking is node 9.
            assert_eq!(judge(view, 9, *candidate, lease), *want, "{what}");
        }
    }

    #[test]
    fn candidates_wait_lease_plus_a_random_timeout() {
        let t = Timing {
            lease: Duration::from_millis(100),
            timeout_min: Duration::from_millis(50),
            timeout_max: Duration::from_millis(100),
        };
        for _ in 0..200 {
            let w = t.candidate_wait();
            assert!(
                w >= Duration::from_millis(150) && w < Duration::from_millis(200),
                "{w:?}"
            );
        }
    }
}
