//! Password hashing: argon2id with the crate's default (OWASP) parameters,
//! run off the async runtime. Hashes are PHC strings, so a later change of
//! parameters still verifies old hashes.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, SaltString};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};

/// Shortest password accepted.
pub const MIN_LEN: usize = 8;
/// Longest password accepted (bytes), so that hashing stays bounded.
pub const MAX_LEN: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the password must be at least {MIN_LEN} characters long")]
    TooShort,
    #[error("the password must be at most {MAX_LEN} bytes long")]
    TooLong,
    #[error("could not hash the password: {0}")]
    Hash(String),
}

/// Hash `password` (argon2id, random salt).
pub async fn hash(password: String) -> Result<String, PasswordError> {
    if password.chars().count() < MIN_LEN {
        return Err(PasswordError::TooShort);
    }
    if password.len() > MAX_LEN {
        return Err(PasswordError::TooLong);
    }
    let _permit = permits()
        .acquire()
        .await
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| PasswordError::Hash(e.to_string()))
    })
    .await
    .map_err(|e| PasswordError::Hash(e.to_string()))?
}

/// A hash of a password nobody knows, verified against when the user does
/// not exist, so that a wrong name costs as much time as a wrong password.
const DECOY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3BhNHVq2YJLR6gHG7gwnMSsH5OH8cdEBt2oJuL1a0a4";

/// Hashing runs at most this many at once (each takes 19 MiB and a core
/// with the default parameters); more wait their turn.
const CONCURRENT: usize = 2;

fn permits() -> &'static tokio::sync::Semaphore {
    static SEM: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SEM.get_or_init(|| tokio::sync::Semaphore::new(CONCURRENT))
}

/// Does `password` match `stored` (a PHC string, or `None` for a user
/// without a password, which never matches)?
pub async fn verify(stored: Option<String>, password: String) -> bool {
    if password.len() > MAX_LEN {
        return false;
    }
    let Ok(_permit) = permits().acquire().await else {
        return false;
    };
    let known = stored.is_some();
    let stored = stored.unwrap_or_else(|| DECOY.to_string());
    tokio::task::spawn_blocking(move || {
        let Ok(parsed) = PasswordHash::new(&stored) else {
            tracing::warn!("a stored password hash does not parse");
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
            && known
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_wrong_ones_do_not() {
        let h = hash("correct horse".into()).await.expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(Some(h.clone()), "correct horse".into()).await);
        assert!(!verify(Some(h), "correct horsf".into()).await);
        assert!(!verify(None, "anything at all".into()).await);
        assert!(!verify(Some("garbage".into()), "anything at all".into()).await);
        assert!(matches!(
            hash("short".into()).await,
            Err(PasswordError::TooShort)
        ));
        assert!(matches!(
            hash("x".repeat(2000)).await,
            Err(PasswordError::TooLong)
        ));
    }
}
