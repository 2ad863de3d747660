//! Admission control for writes: what stands between clients and Raft.
//!
//! Each replica lets at most `--max-writes-in-flight` writes through
//! [`Cluster::propose`](crate::cluster::Cluster::propose) at once; up to
//! `--max-write-queue` more wait for a slot (until their write deadline),
//! and the rest are shed at once with 503 + `Retry-After`. Before that,
//! each user may have at most `--max-user-writes-in-flight` writes in
//! flight or waiting at the replica; one more is refused with 429 +
//! `Retry-After`, so one user's flood is answered without taking the slots
//! other users need.
//!
//! Who is writing comes from the HTTP request the write belongs to: the
//! request middleware opens a [`scope`], and authentication ([`identify`])
//! records the caller's name in it. Writes outside any request (the
//! spawner controller, which uses `propose_local` and never passes here,
//! bootstrap, the cluster-version raise) are internal and never refused;
//! nor are the bootstrap admin's, so an operator can always act.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::error::HubError;
use crate::limits::Limits;

pub use crate::error::RETRY_AFTER_S;

/// The writer of one HTTP request, once authentication has named it.
#[derive(Default, Debug)]
pub struct Writer {
    user: OnceLock<String>,
    exempt: AtomicBool,
}

impl Writer {
    pub fn user(&self) -> Option<&str> {
        self.user.get().map(String::as_str)
    }
}

tokio::task_local! {
    static WRITER: Arc<Writer>;
}

/// Run one request's handling with `writer` as its (not yet known) writer.
pub fn scope<F: Future>(writer: Arc<Writer>, f: F) -> impl Future<Output = F::Output> {
    WRITER.scope(writer, f)
}

/// Record who the current request acts as (the first name wins);
/// `exempt` for the bootstrap admin. Outside a request it does nothing.
pub fn identify(user: &str, exempt: bool) {
    let _ = WRITER.try_with(|w| {
        if w.user.set(user.to_string()).is_ok() && exempt {
            w.exempt.store(true, Ordering::Relaxed);
        }
    });
}

/// Who the current write is for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    /// Not part of a client's request, or the bootstrap admin.
    Internal,
    /// A request whose caller is not (yet) known: a login form, say.
    Anonymous,
    User(String),
}

fn current() -> Who {
    WRITER
        .try_with(|w| {
            if w.exempt.load(Ordering::Relaxed) {
                return Who::Internal;
            }
            match w.user.get() {
                Some(u) => Who::User(u.clone()),
                None => Who::Anonymous,
            }
        })
        .unwrap_or(Who::Internal)
}

pub struct Admission {
    slots: Semaphore,
    max_in_flight: usize,
    waiting: AtomicUsize,
    max_waiting: usize,
    per_user: Mutex<HashMap<String, usize>>,
    max_per_user: usize,
}

/// Held while one admitted write is in flight.
pub struct Ticket<'a> {
    _slot: Option<SemaphorePermit<'a>>,
    _user: Option<UserSlot<'a>>,
}

struct UserSlot<'a> {
    admission: &'a Admission,
    user: String,
}

impl Drop for UserSlot<'_> {
    fn drop(&mut self) {
        let mut map = self
            .admission
            .per_user
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.user);
            }
        }
    }
}

struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission {
    pub fn new(limits: &Limits) -> Admission {
        Admission {
            slots: Semaphore::new(limits.max_writes_in_flight),
            max_in_flight: limits.max_writes_in_flight,
            waiting: AtomicUsize::new(0),
            max_waiting: limits.max_write_queue,
            per_user: Mutex::new(HashMap::new()),
            max_per_user: limits.max_user_writes_in_flight,
        }
    }

    /// Admit the current request's write, waiting for a slot at most
    /// until `deadline`.
    pub async fn admit(&self, deadline: Instant) -> Result<Ticket<'_>, HubError> {
        self.admit_as(current(), deadline).await
    }

    async fn admit_as(&self, who: Who, deadline: Instant) -> Result<Ticket<'_>, HubError> {
        let user = match who {
            Who::Internal => {
                return Ok(Ticket {
                    _slot: None,
                    _user: None,
                })
            }
            Who::Anonymous => None,
            Who::User(u) => Some(self.take_user_slot(u)?),
        };
        let slot = match self.slots.try_acquire() {
            Ok(p) => p,
            Err(_) => {
                let queued = self.waiting.fetch_add(1, Ordering::Relaxed);
                let _waiting = Waiting(&self.waiting);
                if queued >= self.max_waiting {
                    return Err(self.overloaded(queued));
                }
                match tokio::time::timeout_at(deadline.into(), self.slots.acquire()).await {
                    Ok(Ok(p)) => p,
                    Ok(Err(_)) => return Err(HubError::ShuttingDown),
                    Err(_) => return Err(self.overloaded(queued)),
                }
            }
        };
        Ok(Ticket {
            _slot: Some(slot),
            _user: user,
        })
    }

    fn take_user_slot(&self, user: String) -> Result<UserSlot<'_>, HubError> {
        let mut map = self.per_user.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(user.clone()).or_insert(0);
        if *n >= self.max_per_user {
            return Err(HubError::UserBusy {
                user,
                limit: self.max_per_user,
            });
        }
        *n += 1;
        Ok(UserSlot {
            admission: self,
            user,
        })
    }

    fn overloaded(&self, waiting: usize) -> HubError {
        HubError::Overloaded {
            in_flight: self.max_in_flight,
            waiting,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(in_flight: usize, queue: usize, per_user: usize) -> Limits {
        Limits {
            max_writes_in_flight: in_flight,
            max_write_queue: queue,
            max_user_writes_in_flight: per_user,
            ..Limits::default()
        }
    }

    fn user(u: &str) -> Who {
        Who::User(u.to_string())
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn one_users_flood_leaves_room_for_others() {
        let a = Admission::new(&limits(4, 0, 2));
        let t1 = a.admit_as(user("flood"), soon()).await.expect("first");
        let t2 = a.admit_as(user("flood"), soon()).await.expect("second");
        match a.admit_as(user("flood"), soon()).await {
            Err(HubError::UserBusy { user, limit: 2 }) => assert_eq!(user, "flood"),
            other => panic!("third write of one user: {:?}", other.err()),
        }
        // Others still get in, and internal writes never wait for a slot.
        let c1 = a.admit_as(user("calm"), soon()).await.expect("calm");
        let c2 = a.admit_as(user("other"), soon()).await.expect("other");
        let _internal = a.admit_as(Who::Internal, soon()).await.expect("internal");
        // All four slots are taken: with no queue, the next is shed.
        assert!(matches!(
            a.admit_as(Who::Anonymous, soon()).await.err(),
            Some(HubError::Overloaded { .. })
        ));
        drop((t1, c1, c2));
        // A slot freed by a finished write is taken again, and the user's
        // count went down with it.
        let _t3 = a.admit_as(user("flood"), soon()).await.expect("again");
        drop(t2);
        assert_eq!(a.per_user.lock().expect("lock").get("flood"), Some(&1));
    }

    #[tokio::test]
    async fn the_queue_is_bounded_and_waits_at_most_until_the_deadline() {
        let a = Arc::new(Admission::new(&limits(1, 1, 8)));
        let held = a.admit_as(user("a"), soon()).await.expect("slot");
        // One may wait; it is let in when the slot frees up.
        let waiter = {
            let a = a.clone();
            tokio::spawn(async move { a.admit_as(user("b"), soon()).await.is_ok() })
        };
        while a.waiting.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        // The queue is full: the next is shed at once.
        assert!(matches!(
            a.admit_as(user("c"), soon()).await.err(),
            Some(HubError::Overloaded { .. })
        ));
        drop(held);
        assert!(waiter.await.expect("join"));
        // A waiter whose deadline passes gives up (and leaves the queue).
        let held = a.admit_as(user("a"), soon()).await.expect("slot");
        let late = a.admit_as(user("d"), Instant::now()).await;
        assert!(matches!(late.err(), Some(HubError::Overloaded { .. })));
        assert_eq!(a.waiting.load(Ordering::Relaxed), 0);
        drop(held);
        // Users that finished are forgotten: the map stays small.
        assert!(a.per_user.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn the_scope_names_the_writer() {
        assert_eq!(current(), Who::Internal);
        let w = Arc::new(Writer::default());
        let seen = scope(w.clone(), async {
            let before = current();
            identify("alice", false);
            identify("mallory", false);
            (before, current())
        })
        .await;
        assert_eq!(seen, (Who::Anonymous, user("alice")));
        assert_eq!(w.user(), Some("alice"));
        let admin = scope(Arc::new(Writer::default()), async {
            identify("admin", true);
            current()
        })
        .await;
        assert_eq!(admin, Who::Internal);
    }
}
