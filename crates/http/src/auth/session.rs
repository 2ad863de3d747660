//! Browser sessions and CSRF tokens.
//!
//! - The login cookie `jupyterhub-hub-login` holds `{id}.{mac}`: a random
//!   session id and its HMAC-SHA256 under the cluster's cookie secret
//!   (replicated state, so every replica verifies every cookie). The
//!   session itself is replicated too, stored under the id's SHA-256; logout
//!   removes it, so a copied cookie stops working everywhere at once.
//! - The CSRF token `_xsrf` is a signed double-submit cookie
//!   (`{nonce}.{mac}`): a form or an `X-XSRFToken` header must carry the
//!   same value as the cookie, and the MAC must verify.

use axum::http::{header, HeaderMap, HeaderValue};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::Ctx;
use quorumhub_core::ops::sessions::{self, SESSION_DAYS};
use quorumhub_core::secrets::hash_token;
use quorumhub_core::{HubError, OpError};

pub(crate) const LOGIN_COOKIE: &str = "jupyterhub-hub-login";
pub(crate) const XSRF_COOKIE: &str = "_xsrf";

/// A logged-in browser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Login {
    pub user: String,
    /// SHA-256 of the session id: the replicated session's key.
    pub session: String,
}

fn mac(key: &[u8], purpose: &str, value: &str) -> String {
    // HMAC accepts keys of any length.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    m.update(purpose.as_bytes());
    m.update(b"|");
    m.update(value.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

pub(crate) fn signed(key: &[u8], purpose: &str, value: &str) -> String {
    format!("{value}.{}", mac(key, purpose, value))
}

pub(crate) fn verified<'a>(key: &[u8], purpose: &str, signed: &'a str) -> Option<&'a str> {
    if key.is_empty() {
        // No cookie secret yet: nothing can have been signed.
        return None;
    }
    let (value, tag) = signed.rsplit_once('.')?;
    let want = mac(key, purpose, value);
    bool::from(want.as_bytes().ct_eq(tag.as_bytes())).then_some(value)
}

/// The value of cookie `name`, if the request sent it.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// The cluster's cookie key, if one has been set.
pub(crate) fn cookie_key(hub: &Ctx) -> Option<Vec<u8>> {
    sessions::cookie_key(hub)
}

/// The cookie key, setting a random one first if the cluster has none.
pub(crate) async fn ensure_cookie_key(hub: &Ctx) -> Result<Vec<u8>, HubError> {
    sessions::ensure_cookie_key(hub)
        .await
        .map_err(OpError::into_hub_error)
}

/// The login the request's cookie proves, if any. When it returns a login,
/// this replica has passed the read barrier: callers read state directly. A forged or damaged
/// cookie is refused by its MAC before any state is read; a genuine one is
/// looked up after a read barrier, so a session created or ended a moment
/// ago through another replica is seen as it is.
pub(crate) async fn login_of(hub: &Ctx, headers: &HeaderMap) -> Result<Option<Login>, HubError> {
    let Some(raw) = cookie(headers, LOGIN_COOKIE) else {
        return Ok(None);
    };
    let Some(key) = cookie_key(hub) else {
        return Ok(None);
    };
    let Some(id) = verified(&key, LOGIN_COOKIE, raw) else {
        tracing::info!("refused a login cookie whose signature does not verify");
        return Ok(None);
    };
    let hash = hash_token(id);
    // After the barrier: a logout through another replica is seen here.
    let user = sessions::user_of(hub, &hash)
        .await
        .map_err(OpError::into_hub_error)?;
    if let Some(user) = &user {
        quorumhub_core::admission::identify(user, false);
    }
    Ok(user.map(|user| Login {
        user,
        session: hash,
    }))
}

/// Create a session for `user` (ending its oldest past
/// `--max-sessions-per-user`); returns the `Set-Cookie` value.
pub(crate) async fn start_session(
    hub: &Ctx,
    user: &str,
    secure: bool,
) -> Result<HeaderValue, HubError> {
    let key = ensure_cookie_key(hub).await?;
    let id = sessions::start(hub, user, hub.config.limits.max_sessions_per_user)
        .await
        .map_err(OpError::into_hub_error)?;
    let value = signed(&key, LOGIN_COOKIE, &id);
    set_cookie(
        LOGIN_COOKIE,
        &value,
        "/hub/",
        Some(SESSION_DAYS * 86_400),
        secure,
        true,
    )
}

/// End the session (logout): it and every token it obtained are revoked.
pub(crate) async fn end_session(hub: &Ctx, login: &Login) -> Result<(), HubError> {
    sessions::end(hub, login.session.clone())
        .await
        .map_err(OpError::into_hub_error)
}

/// A `Set-Cookie` header value.
pub(crate) fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    max_age_s: Option<u64>,
    secure: bool,
    http_only: bool,
) -> Result<HeaderValue, HubError> {
    let mut c = format!("{name}={value}; Path={path}; SameSite=Lax");
    if let Some(age) = max_age_s {
        c += &format!("; Max-Age={age}");
    }
    if http_only {
        c += "; HttpOnly";
    }
    if secure {
        c += "; Secure";
    }
    HeaderValue::from_str(&c).map_err(|e| HubError::Internal(e.to_string()))
}

/// A `Set-Cookie` value that deletes cookie `name`.
pub(crate) fn clear_cookie(name: &str, path: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{name}=; Path={path}; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("_=; Max-Age=0"))
}

/// What a CSRF token is bound to: the login session's hash, or
/// `anonymous` before login. A token taken from another session (or made
/// by an attacker for their own) does not verify.
pub(crate) const ANONYMOUS: &str = "anonymous";

fn xsrf_purpose(bound: &str) -> String {
    format!("{XSRF_COOKIE}|{bound}")
}

/// The request's CSRF token if its cookie carries one valid for `bound`,
/// else a new one with the cookie that sets it.
pub(crate) fn xsrf_token(
    key: &[u8],
    headers: &HeaderMap,
    secure: bool,
    bound: &str,
) -> (String, Option<HeaderValue>) {
    let purpose = xsrf_purpose(bound);
    if let Some(v) = cookie(headers, XSRF_COOKIE) {
        if verified(key, &purpose, v).is_some() {
            return (v.to_string(), None);
        }
    }
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let token = signed(key, &purpose, &nonce);
    let cookie = set_cookie(XSRF_COOKIE, &token, "/hub/", None, secure, false).ok();
    (token, cookie)
}

/// Does `sent` (a form field, header or query parameter) match the
/// request's CSRF cookie, valid for `bound`?
pub(crate) fn xsrf_ok(key: &[u8], headers: &HeaderMap, sent: Option<&str>, bound: &str) -> bool {
    let (Some(cookie), Some(sent)) = (cookie(headers, XSRF_COOKIE), sent) else {
        return false;
    };
    verified(key, &xsrf_purpose(bound), cookie).is_some()
        && bool::from(cookie.as_bytes().ct_eq(sent.as_bytes()))
}

/// A request made by a script (`fetch`, `EventSource`) rather than by the
/// user navigating: browsers say so in `Sec-Fetch-Mode`.
pub(crate) fn from_script(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-mode")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|m| m != "navigate")
}

/// The CSRF token a script sent: in a header, or as `_xsrf` in the query
/// (an `EventSource` cannot set headers).
pub(crate) fn xsrf_sent<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<&'a str> {
    ["x-xsrftoken", "x-csrftoken"]
        .iter()
        .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
        .or_else(|| {
            query?
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == "_xsrf")
                .map(|(_, v)| v)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_as_data() {
        let key = b"k1";
        let good = signed(key, "p", "abc");
        let cases = [
            (good.as_str(), Some("abc")),
            ("abc.00", None),
            ("abc", None),
            ("", None),
            (&*good.replace("abc", "abd"), None),
        ];
        for (input, want) in cases {
            assert_eq!(verified(key, "p", input), want, "{input}");
        }
        // Another purpose or key does not verify.
        assert_eq!(verified(key, "q", &good), None);
        assert_eq!(verified(b"k2", "p", &good), None);
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; _xsrf=\"t.x\"; b=2"),
        );
        assert_eq!(cookie(&h, "_xsrf"), Some("t.x"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
