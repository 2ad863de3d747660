//! Exactly-once apply for retried requests.
//!
//! Every proposer (a hub replica process) has a client id and numbers its
//! requests. The table remembers the response of the last `capacity`
//! applied requests; a request seen again is answered from the table. The
//! eviction order is the apply order, so the table is deterministic too.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::command::Response;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dedupe {
    capacity: usize,
    responses: BTreeMap<String, Response>,
    order: VecDeque<String>,
}

/// Enough to cover every retry in flight: a proposer retries for seconds,
/// and even at 10k writes/s this keeps several seconds of history.
pub const DEFAULT_CAPACITY: usize = 100_000;

impl Default for Dedupe {
    fn default() -> Self {
        Dedupe::with_capacity(DEFAULT_CAPACITY)
    }
}

impl Dedupe {
    pub fn with_capacity(capacity: usize) -> Self {
        Dedupe {
            capacity: capacity.max(1),
            responses: BTreeMap::new(),
            order: VecDeque::new(),
        }
    }

    pub(crate) fn key(client_id: &str, serial: u64) -> String {
        format!("{client_id}/{serial}")
    }

    pub fn get(&self, client_id: &str, serial: u64) -> Option<&Response> {
        self.responses.get(&Self::key(client_id, serial))
    }

    pub(crate) fn record(&mut self, client_id: &str, serial: u64, response: Response) {
        let key = Self::key(client_id, serial);
        if self.responses.insert(key.clone(), response).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.responses.remove(&old);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.responses.len()
    }

    pub fn is_empty(&self) -> bool {
        self.responses.is_empty()
    }
}
