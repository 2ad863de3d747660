//! Login attempts, limited per user name and per client address.
//!
//! Each key may fail `MAX_FAILURES` times in a sliding `WINDOW`; after that
//! every attempt is refused with 429 until the oldest failure ages out. The
//! counts are kept per replica (a load balancer spreads an attacker over
//! at most as many replicas as there are).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) const MAX_FAILURES: usize = 5;
pub(crate) const WINDOW: Duration = Duration::from_secs(300);
/// Keys remembered at most: when full, stale keys are dropped, then the
/// key whose last failure is oldest, so a flood of names cannot grow memory
/// without bound.
const MAX_KEYS: usize = 10_000;

#[derive(Default)]
pub(crate) struct LoginLimiter {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginLimiter {
    /// `Some(wait)` if any of `keys` is over its limit.
    pub(crate) fn blocked(&self, keys: &[String], now: Instant) -> Option<Duration> {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .filter_map(|k| {
                let q = map.get_mut(k)?;
                while q.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
                    q.pop_front();
                }
                (q.len() >= MAX_FAILURES)
                    .then(|| {
                        q.front()
                            .map(|t| WINDOW.saturating_sub(now.duration_since(*t)))
                    })
                    .flatten()
            })
            .max()
    }

    pub(crate) fn failed(&self, keys: &[String], now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for k in keys {
            if !map.contains_key(k) && map.len() >= MAX_KEYS {
                map.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
                if map.len() >= MAX_KEYS {
                    let oldest = map
                        .iter()
                        .min_by_key(|(_, q)| q.back().copied())
                        .map(|(k, _)| k.clone());
                    if let Some(o) = oldest {
                        map.remove(&o);
                    }
                }
            }
            let q = map.entry(k.clone()).or_default();
            q.push_back(now);
            while q.len() > MAX_FAILURES {
                q.pop_front();
            }
        }
    }

    /// Take back the failure counted for `key` at `at` (the attempt was
    /// counted before the password was checked, and it was right).
    pub(crate) fn undo(&self, key: &str, at: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(q) = map.get_mut(key) {
            if let Some(pos) = q.iter().rposition(|t| *t == at) {
                q.remove(pos);
            }
        }
    }

    pub(crate) fn succeeded(&self, user_key: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(user_key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_and_forgets_after_the_window() {
        let l = LoginLimiter::default();
        let t0 = Instant::now();
        let keys = vec!["user:alice".to_string(), "addr:1.2.3.4".to_string()];
        for i in 0..MAX_FAILURES {
            assert_eq!(l.blocked(&keys, t0), None, "attempt {i}");
            l.failed(&keys, t0);
        }
        assert!(l.blocked(&keys, t0).is_some());
        // Another name from the same address is blocked too.
        assert!(l
            .blocked(&["user:bob".into(), "addr:1.2.3.4".into()], t0)
            .is_some());
        assert!(l
            .blocked(&["user:bob".into(), "addr:5.6.7.8".into()], t0)
            .is_none());
        assert_eq!(l.blocked(&keys, t0 + WINDOW), None);
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_names() {
        let l = LoginLimiter::default();
        let t0 = Instant::now();
        for i in 0..(MAX_KEYS + 500) {
            l.failed(&[format!("user:{i}")], t0);
        }
        assert!(l.failures.lock().expect("lock").len() <= MAX_KEYS);
    }
}
