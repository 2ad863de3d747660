//! Slots in all and per client address: for open connections (taken at
//! accept: a connection over either cap gets a short 503 and is closed, so
//! a flood of idle sockets cannot use up the process's file descriptors and
//! make `accept` fail for everybody) and for requests in flight (over
//! either cap, 503 or 429 at once instead of a queue).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Which cap a refused connection hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Full {
    /// Every slot is taken.
    All,
    /// This client address holds its share.
    Client,
}

#[derive(Debug)]
pub struct Slots {
    max: usize,
    per_client: usize,
    open: AtomicUsize,
    by_client: Mutex<HashMap<IpAddr, usize>>,
}

/// Held for as long as the connection is open or the request in flight.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<Slots>,
    key: Option<IpAddr>,
}

/// IPv6 clients are counted per /64: one host usually holds a whole one.
fn key_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

impl Slots {
    pub fn new(max: usize, per_client: usize) -> Arc<Slots> {
        Arc::new(Slots {
            max: max.max(1),
            per_client: per_client.max(1),
            open: AtomicUsize::new(0),
            by_client: Mutex::new(HashMap::new()),
        })
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Take a slot for `peer`. A trusted hop (a load balancer carrying many
    /// clients) is exempt from the per-client cap.
    pub fn acquire(self: &Arc<Self>, peer: IpAddr, trusted: bool) -> Result<Permit, Full> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Full::All);
        }
        let key = if trusted {
            None
        } else {
            let key = key_of(peer);
            let mut map = self.by_client.lock().unwrap_or_else(|p| p.into_inner());
            let n = map.entry(key).or_insert(0);
            if *n >= self.per_client {
                drop(map);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err(Full::Client);
            }
            *n += 1;
            Some(key)
        };
        Ok(Permit {
            limiter: self.clone(),
            key,
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            let mut map = self
                .limiter
                .by_client
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(n) = map.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&key);
                }
            }
        }
        self.limiter.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn caps_in_all_and_per_client() {
        let l = Slots::new(4, 2);
        let a1 = l.acquire(ip("1.1.1.1"), false).expect("a1");
        let _a2 = l.acquire(ip("1.1.1.1"), false).expect("a2");
        assert_eq!(l.acquire(ip("1.1.1.1"), false).err(), Some(Full::Client));
        let _b1 = l.acquire(ip("2.2.2.2"), false).expect("b1");
        // A trusted balancer is not held to the per-client cap ...
        let _t = l.acquire(ip("10.0.0.1"), true).expect("t");
        // ... but everyone is to the global one.
        assert_eq!(l.acquire(ip("3.3.3.3"), false).err(), Some(Full::All));
        assert_eq!(l.open(), 4);
        drop(a1);
        assert_eq!(l.open(), 3);
        let _a3 = l.acquire(ip("1.1.1.1"), false).expect("a3 after a1 closed");
        assert_eq!(l.acquire(ip("1.1.1.1"), false).err(), Some(Full::All));
    }

    #[test]
    fn ipv6_clients_count_per_64_and_mapped_as_v4() {
        let l = Slots::new(100, 1);
        let _a = l.acquire(ip("2001:db8:1:2::1"), false).expect("a");
        assert_eq!(
            l.acquire(ip("2001:db8:1:2::ffff"), false).err(),
            Some(Full::Client)
        );
        let _b = l.acquire(ip("2001:db8:1:3::1"), false).expect("other /64");
        let _c = l.acquire(ip("1.2.3.4"), false).expect("c");
        assert_eq!(
            l.acquire(ip("::ffff:1.2.3.4"), false).err(),
            Some(Full::Client)
        );
    }

    #[test]
    fn the_map_forgets_closed_clients() {
        let l = Slots::new(10, 10);
        for i in 0..5 {
            drop(l.acquire(ip(&format!("1.1.1.{i}")), false).expect("p"));
        }
        assert!(l.by_client.lock().expect("lock").is_empty());
        assert_eq!(l.open(), 0);
    }
}
