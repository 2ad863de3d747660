//! When a leader-only task (raising the cluster version, replicating the
//! configured roles) gets its turn: every `every`, and at once when this
//! replica becomes the leader, never while it is a follower.

use std::time::Duration;

use quorumhub_raft::{Member as RaftMember, NodeId};
use tokio::sync::watch;

use crate::hub::Hub;

pub(crate) struct LeaderTurns {
    tick: tokio::time::Interval,
    metrics: watch::Receiver<openraft::RaftMetrics<NodeId, RaftMember>>,
    stop: watch::Receiver<bool>,
    was_leader: bool,
}

impl LeaderTurns {
    pub(crate) fn new(hub: &Hub, every: Duration, stop: watch::Receiver<bool>) -> LeaderTurns {
        let mut tick = tokio::time::interval(every);
        // A turn that ran long (a stop's grace) is not followed by a burst
        // of catch-up turns.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        LeaderTurns {
            tick,
            metrics: hub.raft.metrics(),
            stop,
            was_leader: false,
        }
    }

    /// Wait for the next turn as the leader; `false` once the replica stops.
    pub(crate) async fn next(&mut self, hub: &Hub) -> bool {
        loop {
            tokio::select! {
                _ = self.stop.wait_for(|s| *s) => return false,
                _ = self.tick.tick() => {}
                // A new leader acts at once, not a tick later.
                r = self.metrics.changed() => {
                    if r.is_err() { return false }
                    if self.was_leader || !hub.is_leader() { continue }
                }
            }
            self.was_leader = hub.is_leader();
            if self.was_leader {
                return true;
            }
        }
    }
}
