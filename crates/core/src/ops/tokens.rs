//! API tokens: the one place a token's secret is made and hashed, for
//! every owner (a user asking the API, the OAuth provider redeeming a code,
//! the controller handing a server its token).

use quorumhub_state::{Command, OAuthCode, Response, Token, TokenOwner};

use super::OpError;
use crate::cluster::Cluster;
use crate::secrets::{hash_token, random_secret};
use crate::time::now_ms;

/// What a new token is for.
#[derive(Clone, Debug)]
pub struct NewToken {
    pub owner: TokenOwner,
    pub note: String,
    /// Seconds from now; `None`: never expires.
    pub expires_in_s: Option<u64>,
    /// Empty: the owner's own scopes.
    pub scopes: Vec<String>,
    /// The OAuth client it was issued to.
    pub client_id: Option<String>,
    /// The browser session it was issued in (ends with it).
    pub session: Option<String>,
}

/// A token made but not yet recorded: its secret, shown once to whoever
/// asked, and what the state records (only the hash and a prefix).
#[derive(Clone, Debug)]
pub struct Minted {
    pub secret: String,
    pub token: Token,
}

impl NewToken {
    pub fn mint(self) -> Minted {
        let secret = random_secret();
        let now = now_ms();
        let token = Token {
            id: String::new(),
            owner: self.owner,
            hash: hash_token(&secret),
            prefix: secret.chars().take(4).collect(),
            note: self.note,
            created: now,
            expires_at: self
                .expires_in_s
                .map(|s| now.saturating_add(s.saturating_mul(1000))),
            last_activity: None,
            scopes: self.scopes,
            client_id: self.client_id,
            session: self.session,
        };
        Minted { secret, token }
    }
}

/// The outcome of proposing a token's creation: its id.
pub fn created(outcome: Response) -> Result<String, OpError> {
    super::outcome::token_created(outcome)
}

/// Make and record a token: its secret and id.
pub async fn create(hub: &dyn Cluster, new: NewToken) -> Result<(String, String), OpError> {
    let Minted { secret, token } = new.mint();
    let id = created(hub.propose(Command::CreateToken { token }).await?)?;
    Ok((secret, id))
}

/// Record an OAuth authorization code (refused if its session ended
/// meanwhile, or its user holds too many).
pub async fn issue_oauth_code(hub: &dyn Cluster, code: OAuthCode) -> Result<(), OpError> {
    super::outcome::done(hub.propose(Command::IssueOAuthCode { code }).await?)
}

/// Redeem an OAuth authorization code (by its hash) for `client_id`: the
/// code is consumed and the new access token recorded in one command, so a
/// code is redeemed at most once. The token's secret and id.
pub async fn redeem_oauth_code(
    hub: &dyn Cluster,
    code_hash: String,
    client_id: String,
    new: NewToken,
) -> Result<(String, String), OpError> {
    let Minted { secret, token } = new.mint();
    let id = created(
        hub.propose(Command::RedeemOAuthCode {
            hash: code_hash,
            client_id,
            token,
        })
        .await?,
    )?;
    Ok((secret, id))
}

/// Revoke a token by id.
pub async fn revoke(hub: &dyn Cluster, id: String) -> Result<(), OpError> {
    super::outcome::done(hub.propose(Command::RevokeToken { id }).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_token_records_only_its_hash_and_prefix() {
        let new = NewToken {
            owner: TokenOwner::User {
                name: "alice".into(),
            },
            note: "n".into(),
            expires_in_s: Some(60),
            scopes: vec!["read:users".into()],
            client_id: Some("c".into()),
            session: Some("s".into()),
        };
        let a = new.clone().mint();
        let b = new.mint();
        assert_ne!(a.secret, b.secret, "every token is new");
        assert_eq!(a.secret.len(), 64, "32 random bytes, hex");
        assert_eq!(a.token.hash, hash_token(&a.secret));
        assert_eq!(a.token.prefix, a.secret[..4]);
        assert!(!format!("{:?}", a.token).contains(&a.secret));
        assert_eq!(a.token.expires_at, Some(a.token.created + 60_000));
        assert_eq!(a.token.id, "", "the state assigns the id");
        assert_eq!(
            (a.token.client_id.as_deref(), a.token.session.as_deref()),
            (Some("c"), Some("s"))
        );
        let never = NewToken {
            expires_in_s: None,
            ..b_new()
        }
        .mint();
        assert_eq!(never.token.expires_at, None);
    }

    fn b_new() -> NewToken {
        NewToken {
            owner: TokenOwner::Server {
                user: "bob".into(),
                server_name: String::new(),
            },
            note: String::new(),
            expires_in_s: Some(1),
            scopes: vec![],
            client_id: None,
            session: None,
        }
    }
}
