//! Browser logins and the OAuth provider's codes (log format 3).
//!
//! Everything here is deterministic: hashes and expiry times arrive inside
//! the commands, and "expired" is judged against the request's own time.

use crate::command::{Rejection, Response};
use crate::model::{OAuthCode, Session, Token};
use crate::state::{no_such_user, HubState, Outcome};
use crate::Millis;

/// Codes one browser session may have waiting at once.
pub const MAX_CODES_PER_SESSION: usize = 20;

impl HubState {
    pub(crate) fn set_cookie_secret(&mut self, secret: &str) -> Outcome {
        if self.cookie_secret.is_some() {
            return Err(Rejection::CookieSecretSet);
        }
        self.cookie_secret = Some(secret.to_string());
        Ok((Response::Done, vec![]))
    }

    pub(crate) fn create_session(&mut self, at: Millis, session: &Session) -> Outcome {
        if !self.users.contains_key(&session.user) {
            return Err(no_such_user(&session.user));
        }
        self.sessions.retain(|_, s| s.expires_at > at);
        self.sessions.insert(session.hash.clone(), session.clone());
        Ok((Response::Done, vec![]))
    }

    /// Logout: the session goes, and with it every token it obtained.
    pub(crate) fn end_session(&mut self, at: Millis, hash: &str) -> Outcome {
        self.sessions.retain(|_, s| s.expires_at > at);
        let known = self.sessions.remove(hash).is_some();
        let obtained: Vec<String> = self
            .tokens
            .values()
            .filter(|t| t.session.as_deref() == Some(hash))
            .map(|t| t.id.clone())
            .collect();
        if !known && obtained.is_empty() {
            return Err(Rejection::NoSuchSession);
        }
        for id in obtained {
            self.remove_token(&id);
        }
        // Codes it approved can no longer be exchanged.
        self.oauth_codes
            .retain(|_, c| c.session.as_deref() != Some(hash));
        Ok((Response::Done, vec![]))
    }

    pub(crate) fn issue_oauth_code(&mut self, at: Millis, code: &OAuthCode) -> Outcome {
        if !self.users.contains_key(&code.user) {
            return Err(no_such_user(&code.user));
        }
        // Only a live session may approve a code (a logout may have won
        // the race), and each may hold only a few at a time.
        if let Some(session) = &code.session {
            if self.session(session, at).is_none() {
                return Err(Rejection::NoSuchSession);
            }
        }
        self.oauth_codes.retain(|_, c| c.expires_at > at);
        let pending = self
            .oauth_codes
            .values()
            .filter(|c| c.session == code.session && c.user == code.user)
            .count();
        if pending >= MAX_CODES_PER_SESSION {
            return Err(Rejection::TooManyCodes);
        }
        self.oauth_codes.insert(code.hash.clone(), code.clone());
        Ok((Response::Done, vec![]))
    }

    pub(crate) fn redeem_oauth_code(
        &mut self,
        at: Millis,
        hash: &str,
        client_id: &str,
        token: &Token,
    ) -> Outcome {
        self.oauth_codes.retain(|_, c| c.expires_at > at);
        let code = self
            .oauth_codes
            .remove(hash)
            .ok_or(Rejection::InvalidGrant)?;
        if code.client_id != client_id || token.owner.user() != code.user {
            return Err(Rejection::InvalidGrant);
        }
        if let Some(session) = &code.session {
            if self.session(session, at).is_none() {
                return Err(Rejection::InvalidGrant);
            }
        }
        self.create_token(token)
    }

    /// Sign-in through an external identity: the first one creates (or
    /// claims a password-less, unlinked) user; later ones must match it.
    pub(crate) fn link_identity(
        &mut self,
        at: Millis,
        name: &str,
        subject: &str,
        admin: Option<bool>,
    ) -> Outcome {
        if !self.users.contains_key(name) {
            self.create_user(name, admin.unwrap_or(false), at)?;
        }
        let user = self.user_mut(name)?;
        let claimable = user.subject.is_none() && user.password_hash.is_none();
        if user.subject.as_deref() != Some(subject) && !claimable {
            return Err(Rejection::IdentityMismatch {
                name: name.to_string(),
            });
        }
        user.subject = Some(subject.to_string());
        if let Some(a) = admin {
            user.admin = a;
        }
        Ok((
            Response::User {
                user: Box::new(user.clone()),
            },
            vec![],
        ))
    }

    /// A deleted user's sessions and pending codes go with it.
    pub(crate) fn forget_logins_of(&mut self, user: &str) {
        self.sessions.retain(|_, s| s.user != user);
        self.oauth_codes.retain(|_, c| c.user != user);
    }

    /// A renamed user's sessions and pending codes follow it.
    pub(crate) fn rename_logins(&mut self, from: &str, to: &str) {
        for s in self.sessions.values_mut().filter(|s| s.user == from) {
            s.user = to.to_string();
        }
        for c in self.oauth_codes.values_mut().filter(|c| c.user == from) {
            c.user = to.to_string();
        }
    }

    // ----- reads -----

    /// The unexpired session whose id hashes to `hash`.
    pub fn session(&self, hash: &str, now: Millis) -> Option<&Session> {
        self.sessions.get(hash).filter(|s| s.expires_at > now)
    }

    /// The unexpired OAuth code whose hash is `hash`.
    pub fn oauth_code(&self, hash: &str, now: Millis) -> Option<&OAuthCode> {
        self.oauth_codes.get(hash).filter(|c| c.expires_at > now)
    }
}
