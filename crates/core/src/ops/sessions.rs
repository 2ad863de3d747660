//! Browser sessions and the cookie key: the replicated half of signing in.
//! The cookie itself (its MAC, its attributes) is the HTTP side's business;
//! here is what every replica must agree on: the key that signs cookies,
//! and which sessions exist.

use quorumhub_state::{Command, Rejection, Session};

use super::{outcome, OpError};
use crate::cluster::Cluster;
use crate::secrets::{hash_token, random_secret};
use crate::time::now_ms;

/// How long a login lasts (JupyterHub's `cookie_max_age_days` default).
pub const SESSION_DAYS: u64 = 14;

/// The cluster's cookie key, if one has been set (no barrier).
pub fn cookie_key(hub: &dyn Cluster) -> Option<Vec<u8>> {
    hub.read(|s| s.cookie_secret.clone())
        .and_then(|k| hex::decode(k).ok())
}

/// The cookie key, setting a random one first if the cluster has none
/// (the first proposal wins; a concurrent one is refused and re-read).
pub async fn ensure_cookie_key(hub: &dyn Cluster) -> Result<Vec<u8>, OpError> {
    if let Some(k) = cookie_key(hub) {
        return Ok(k);
    }
    hub.linearize().await?;
    if let Some(k) = cookie_key(hub) {
        return Ok(k);
    }
    let secret: [u8; 32] = rand::random();
    outcome::done_unless(
        hub.propose(Command::SetCookieSecret {
            secret: hex::encode(secret),
        })
        .await?,
        |r| matches!(r, Rejection::CookieSecretSet),
    )?;
    hub.linearize().await?;
    cookie_key(hub).ok_or_else(|| OpError::Unexpected("the cookie secret was not set".into()))
}

/// The user whose live session `hash` is, after a read barrier (so a
/// session ended a moment ago through another replica is seen as ended).
pub async fn user_of(hub: &dyn Cluster, hash: &str) -> Result<Option<String>, OpError> {
    hub.linearize().await?;
    Ok(hub.read(|s| {
        s.session(hash, now_ms())
            .filter(|sess| s.user(&sess.user).is_some())
            .map(|sess| sess.user.clone())
    }))
}

/// Start a session for `user`, first ending its oldest ones past
/// `max_sessions` (as a logout there would: their OAuth tokens go too), so
/// that a user is never locked out and the sessions stay bounded. Returns
/// the session id, the secret the cookie carries.
pub async fn start(hub: &dyn Cluster, user: &str, max_sessions: usize) -> Result<String, OpError> {
    make_room(hub, user, max_sessions).await?;
    let id = random_secret();
    let now = now_ms();
    let session = Session {
        hash: hash_token(&id),
        user: user.to_string(),
        created: now,
        expires_at: now + SESSION_DAYS * 86_400_000,
    };
    outcome::done(hub.propose(Command::CreateSession { session }).await?)?;
    Ok(id)
}

/// Counted on this replica's state after the read barrier.
async fn make_room(hub: &dyn Cluster, user: &str, max: usize) -> Result<(), OpError> {
    hub.linearize().await?;
    let now = now_ms();
    let mut live: Vec<(u64, String)> = hub.read(|s| {
        s.sessions
            .values()
            .filter(|sess| sess.user == user && sess.expires_at > now)
            .map(|sess| (sess.created, sess.hash.clone()))
            .collect()
    });
    if live.len() < max {
        return Ok(());
    }
    live.sort();
    let excess = live.len() + 1 - max;
    tracing::info!(
        user,
        ended = excess,
        "a login past --max-sessions-per-user ends the user's oldest sessions"
    );
    for (_, hash) in live.into_iter().take(excess) {
        end(hub, hash).await?;
    }
    Ok(())
}

/// End a session (logout): it and every token it obtained are revoked. An
/// already ended session is fine.
pub async fn end(hub: &dyn Cluster, hash: String) -> Result<(), OpError> {
    outcome::done_unless(hub.propose(Command::EndSession { hash }).await?, |r| {
        matches!(r, Rejection::NoSuchSession)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;
    use crate::memory::MemoryCluster;

    #[tokio::test]
    async fn sessions_start_end_and_stay_bounded() {
        let c = MemoryCluster::new(1, &Limits::default());
        let hub: &dyn Cluster = &c;
        crate::ops::users::create(hub, "ada".into(), false)
            .await
            .expect("user");
        let key = ensure_cookie_key(hub).await.expect("key");
        assert_eq!(ensure_cookie_key(hub).await.expect("same key"), key);
        // Sessions are ordered by their creation time (ms): apart.
        let tick = || tokio::time::sleep(std::time::Duration::from_millis(3));
        let first = start(hub, "ada", 2).await.expect("first");
        tick().await;
        let second = start(hub, "ada", 2).await.expect("second");
        tick().await;
        let user = |id: &str| {
            let hash = hash_token(id);
            async move { user_of(hub, &hash).await }
        };
        assert_eq!(user(&first).await.expect("read"), Some("ada".into()));
        // A third login ends the oldest.
        let third = start(hub, "ada", 2).await.expect("third");
        assert_eq!(user(&first).await.expect("read"), None);
        assert_eq!(user(&second).await.expect("read"), Some("ada".into()));
        end(hub, hash_token(&third)).await.expect("logout");
        end(hub, hash_token(&third)).await.expect("twice is fine");
        assert_eq!(user(&third).await.expect("read"), None);
        assert!(start(hub, "nobody", 2).await.is_err());
    }
}
