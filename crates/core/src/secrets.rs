//! Secrets: how API tokens are stored (hashed) and how new secrets are
//! made.

/// Hex SHA-256 of an API token: how tokens are stored and looked up.
pub fn hash_token(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// A new random secret (32 bytes, hex): API tokens (minted only in
/// [`crate::ops::tokens`]), session ids.
pub fn random_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}
