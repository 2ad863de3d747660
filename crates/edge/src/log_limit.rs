//! Refusals logged at most once per interval per client and kind, with a
//! count of those left unlogged: a flood must not become a log flood.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often one client's refusals of one kind are logged.
pub const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Keys remembered at most; beyond it stale ones are dropped, and if none
/// is stale a new key is not logged at all (memory stays bounded).
const MAX_LOG_KEYS: usize = 10_000;

/// Remembers when each key's refusal was last logged.
#[derive(Default)]
pub struct RefusalLog {
    last: Mutex<HashMap<String, (Instant, u64)>>,
}

impl RefusalLog {
    /// `Some(n)` if `key`'s refusal should be logged now (`n` refusals
    /// were left unlogged since its last line), `None` to stay quiet.
    pub fn should_log(&self, key: &str, now: Instant) -> Option<u64> {
        let mut map = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, quiet)) = map.get_mut(key) {
            if now.duration_since(*at) < LOG_INTERVAL {
                *quiet += 1;
                return None;
            }
            let n = *quiet;
            *at = now;
            *quiet = 0;
            return Some(n);
        }
        if map.len() >= MAX_LOG_KEYS {
            map.retain(|_, (at, _)| now.duration_since(*at) < LOG_INTERVAL);
            if map.len() >= MAX_LOG_KEYS {
                return None;
            }
        }
        map.insert(key.to_string(), (now, 0));
        Some(0)
    }

    /// Keys remembered now.
    pub fn len(&self) -> usize {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_logged_once_per_interval_per_key() {
        let log = RefusalLog::default();
        let t0 = Instant::now();
        assert_eq!(log.should_log("a", t0), Some(0));
        assert_eq!(log.should_log("a", t0 + Duration::from_secs(1)), None);
        assert_eq!(log.should_log("a", t0 + Duration::from_secs(2)), None);
        assert_eq!(log.should_log("b", t0 + Duration::from_secs(2)), Some(0));
        assert_eq!(log.should_log("a", t0 + LOG_INTERVAL), Some(2));
        for i in 0..(MAX_LOG_KEYS + 10) {
            log.should_log(&format!("k{i}"), t0 + Duration::from_secs(3));
        }
        assert!(log.len() <= MAX_LOG_KEYS);
    }
}
