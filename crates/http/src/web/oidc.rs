//! Sign in with OpenID Connect (the `openidconnect` crate): discovery,
//! the authorization code flow with PKCE (S256) and a nonce, ID token
//! validation (signature from the provider's JWKS, issuer, audience,
//! expiry, nonce), then claim → user name, allowed users/groups and admin
//! from groups.
//!
//! The flow's secrets (state, nonce, PKCE verifier, where to go next) ride
//! in a short-lived cookie signed with the cluster's cookie secret, so the
//! provider may send the browser back to any replica.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use quorumhub_core::OpError;
use quorumhub_state::{normalize_username, validate_username, Rejection};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::{error_page, hub_error_page, redirect, safe_next, secure};
use crate::auth::session;
use crate::config::HttpConfig;
use crate::Ctx;

const FLOW_COOKIE: &str = "quorumhub-oidc";
/// How long a browser may take at the provider.
const FLOW_MAX_AGE_S: u64 = 600;

/// What the flow cookie carries between the two legs.
#[derive(Serialize, Deserialize)]
struct Flow {
    state: String,
    nonce: String,
    verifier: String,
    next: Option<String>,
    /// Unix seconds the flow began.
    at: u64,
}

#[derive(Debug, thiserror::Error)]
enum OidcError {
    #[error("the identity provider could not be reached or misbehaved: {0}")]
    Provider(String),
    #[error("{0}")]
    Refused(String),
}

fn http_client() -> Result<openidconnect::reqwest::Client, OidcError> {
    openidconnect::reqwest::ClientBuilder::new()
        // The crate's advice: never follow redirects (SSRF).
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| OidcError::Provider(e.to_string()))
}

fn redirect_url(config: &HttpConfig) -> String {
    format!(
        "{}/hub/oauth_callback",
        config.public_url.trim_end_matches('/')
    )
}

/// Discover the provider and build a client (per request: a provider's
/// keys may rotate, and sign-ins are rare next to API calls).
async fn client(
    config: &HttpConfig,
    http: &openidconnect::reqwest::Client,
) -> Result<
    openidconnect::core::CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
    OidcError,
> {
    let (Some(issuer), Some(id), Some(secret)) = (
        &config.oidc.issuer,
        &config.oidc.client_id,
        &config.oidc.client_secret,
    ) else {
        return Err(OidcError::Refused(
            "OpenID Connect sign-in is not configured on this hub".into(),
        ));
    };
    let issuer = IssuerUrl::new(issuer.clone()).map_err(|e| OidcError::Provider(e.to_string()))?;
    let metadata = CoreProviderMetadata::discover_async(issuer, http)
        .await
        .map_err(|e| OidcError::Provider(format!("discovery failed: {e}")))?;
    let redirect =
        RedirectUrl::new(redirect_url(config)).map_err(|e| OidcError::Provider(e.to_string()))?;
    Ok(CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(id.clone()),
        Some(ClientSecret::new(secret.clone())),
    )
    .set_redirect_uri(redirect))
}

#[derive(Deserialize)]
pub(crate) struct StartQuery {
    next: Option<String>,
}

/// `GET /hub/oidc/login`: off to the provider.
pub(crate) async fn start(State(hub): State<Arc<Ctx>>, Query(q): Query<StartQuery>) -> Response {
    let key = match session::ensure_cookie_key(&hub).await {
        Ok(k) => k,
        Err(e) => return hub_error_page(e),
    };
    let http = match http_client() {
        Ok(h) => h,
        Err(e) => return provider_error(e),
    };
    let client = match client(&hub.config, &http).await {
        Ok(c) => c,
        Err(e) => return provider_error(e),
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut auth = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge);
    for s in hub.config.oidc.scopes.iter().filter(|s| *s != "openid") {
        auth = auth.add_scope(Scope::new(s.clone()));
    }
    let (url, state, nonce) = auth.url();
    let flow = Flow {
        state: state.secret().clone(),
        nonce: nonce.secret().clone(),
        verifier: verifier.secret().clone(),
        next: safe_next(q.next.as_deref()),
        at: now_s(),
    };
    let Ok(json) = serde_json::to_vec(&flow) else {
        return error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not start the sign-in",
            "",
            None,
        );
    };
    let value = session::signed(
        &key,
        FLOW_COOKIE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json),
    );
    let cookie = match session::set_cookie(
        FLOW_COOKIE,
        &value,
        "/hub/",
        Some(FLOW_MAX_AGE_S),
        secure(&hub),
        true,
    ) {
        Ok(c) => c,
        Err(e) => return hub_error_page(e),
    };
    let mut r = redirect(url.as_str());
    r.headers_mut().append(header::SET_COOKIE, cookie);
    r
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn provider_error(e: OidcError) -> Response {
    tracing::warn!("OpenID Connect sign-in failed: {e}");
    let status = match e {
        OidcError::Provider(_) => StatusCode::BAD_GATEWAY,
        OidcError::Refused(_) => StatusCode::FORBIDDEN,
    };
    error_page(
        status,
        &e.to_string(),
        "Try again, or sign in with a password.",
        None,
    )
}

#[derive(Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /hub/oauth_callback`: the provider sent the browser back.
pub(crate) async fn callback(
    State(hub): State<Arc<Ctx>>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let clear = session::clear_cookie(FLOW_COOKIE, "/hub/");
    let mut r = match finish(&hub, &headers, q).await {
        Ok((user, next)) => match session::start_session(&hub, &user, secure(&hub)).await {
            Ok(cookie) => {
                tracing::info!(user = %user, "logged in with OpenID Connect");
                let mut r = redirect(next.as_deref().unwrap_or("/hub/home"));
                r.headers_mut().append(header::SET_COOKIE, cookie);
                r
            }
            Err(e) => hub_error_page(e),
        },
        Err(e) => provider_error(e),
    };
    r.headers_mut().append(header::SET_COOKIE, clear);
    r
}

async fn finish(
    hub: &Ctx,
    headers: &HeaderMap,
    q: CallbackQuery,
) -> Result<(String, Option<String>), OidcError> {
    if let Some(err) = q.error {
        return Err(OidcError::Refused(format!(
            "the identity provider refused the sign-in: {err}{}",
            q.error_description
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        )));
    }
    let (Some(code), Some(state)) = (q.code, q.state) else {
        return Err(OidcError::Refused(
            "the provider's answer has no code or state".into(),
        ));
    };
    let key = session::cookie_key(hub).ok_or_else(|| {
        OidcError::Refused("no sign-in was started on this hub; start again".into())
    })?;
    let flow: Flow = session::cookie(headers, FLOW_COOKIE)
        .and_then(|raw| session::verified(&key, FLOW_COOKIE, raw))
        .and_then(|b64| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(b64)
                .ok()
        })
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or_else(|| {
            OidcError::Refused(
                "the sign-in expired or was started elsewhere (no valid flow cookie); start again"
                    .into(),
            )
        })?;
    if now_s().saturating_sub(flow.at) > FLOW_MAX_AGE_S {
        return Err(OidcError::Refused(
            "the sign-in took too long; start again".into(),
        ));
    }
    if !bool::from(flow.state.as_bytes().ct_eq(state.as_bytes())) {
        return Err(OidcError::Refused(
            "the state does not match this browser's sign-in".into(),
        ));
    }
    let http = http_client()?;
    let client = client(&hub.config, &http).await?;
    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| OidcError::Provider(e.to_string()))?
        .set_pkce_verifier(PkceCodeVerifier::new(flow.verifier.clone()))
        .request_async(&http)
        .await
        .map_err(|e| OidcError::Refused(format!("the code was not accepted: {e}")))?;
    let id_token = tokens
        .id_token()
        .ok_or_else(|| OidcError::Refused("the provider sent no ID token".into()))?;
    let claims = checked_claims(id_token, &client.id_token_verifier(), &flow.nonce)?;
    let config = &hub.config;
    let raw_name = claims
        .get(&config.oidc.username_claim)
        .and_then(|v| v.as_str())
        .ok_or_else(|| {
            OidcError::Refused(format!(
                "the ID token has no {:?} claim to name the user (see --oidc-username-claim)",
                config.oidc.username_claim
            ))
        })?;
    let subject = claims
        .get("sub")
        .and_then(|v| v.as_str())
        .filter(|sub| {
            crate::limits::check(&hub.config.limits, crate::limits::Field::OidcSubject(sub)).is_ok()
        })
        .map(|sub| {
            format!(
                "{}|{sub}",
                config.oidc.issuer.as_deref().unwrap_or_default()
            )
        })
        .ok_or_else(|| {
            OidcError::Refused(format!(
                "the ID token has no sub, or one longer than {} bytes",
                crate::limits::MAX_OIDC_SUB_BYTES
            ))
        })?;
    let name = normalize_username(raw_name);
    validate_username(&name).map_err(|why| {
        OidcError::Refused(format!(
            "the user name {raw_name:?} cannot be used here: {why}"
        ))
    })?;
    let groups: Vec<String> = claims
        .get(&config.oidc.groups_claim)
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|g| g.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if !allowed(config, &name, &groups) {
        tracing::info!(user = %name, "OpenID Connect user is not allowed");
        return Err(OidcError::Refused(format!(
            "{name} is not allowed to use this hub"
        )));
    }
    if name == config.admin_user {
        return Err(OidcError::Refused(format!(
            "{name} is this hub's bootstrap admin, a local account; it cannot sign in through the provider"
        )));
    }
    let admin = (!config.oidc.admin_groups.is_empty())
        .then(|| groups.iter().any(|g| config.oidc.admin_groups.contains(g)));
    link_user(hub, &name, &subject, admin).await?;
    Ok((name, safe_next(flow.next.as_deref())))
}

/// The ID token's claims, once its signature (the provider's keys),
/// issuer, audience (our client id), expiry and nonce check out.
fn checked_claims(
    id_token: &openidconnect::core::CoreIdToken,
    verifier: &openidconnect::core::CoreIdTokenVerifier<'_>,
    nonce: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, OidcError> {
    id_token
        .claims(verifier, &Nonce::new(nonce.to_string()))
        .map_err(|e| OidcError::Refused(format!("the ID token is not valid: {e}")))?;
    // Verified above: its payload may now be read for the configured claims.
    payload(&id_token.to_string())
        .ok_or_else(|| OidcError::Refused("the ID token's claims do not decode".into()))
}

/// The claims of a compact JWT, unverified: call only after verification.
fn payload(jwt: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let part = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Allowed: `--oidc-allow-all`, or listed by name, or in a listed group.
fn allowed(config: &HttpConfig, name: &str, groups: &[String]) -> bool {
    if config.oidc.allow_all {
        return true;
    }
    config
        .oidc
        .allowed_users
        .iter()
        .any(|u| normalize_username(u) == name)
        || groups
            .iter()
            .any(|g| config.oidc.allowed_groups.contains(g))
}

/// Link the user to the provider's identity (creating it on first
/// sign-in); keep its admin flag in step with the provider's groups when
/// admin groups are configured. A local (password) account or a user
/// linked to another identity is never taken over.
async fn link_user(
    hub: &Ctx,
    name: &str,
    subject: &str,
    admin: Option<bool>,
) -> Result<(), OidcError> {
    match quorumhub_core::ops::users::link_identity(
        hub,
        name.to_string(),
        subject.to_string(),
        admin,
    )
    .await
    {
        Ok(_) => Ok(()),
        Err(OpError::Rejected(rejection @ Rejection::IdentityMismatch { .. })) => {
            tracing::warn!(user = %name, subject, "refused an OpenID Connect sign-in into another account");
            Err(OidcError::Refused(rejection.to_string()))
        }
        Err(OpError::Rejected(rejection)) => Err(OidcError::Refused(rejection.to_string())),
        Err(e @ OpError::Cluster(_)) => Err(OidcError::Provider(format!(
            "the hub could not record the user: {e}"
        ))),
        Err(OpError::Unexpected(m)) => Err(OidcError::Provider(m)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use openidconnect::core::{
        CoreIdToken, CoreIdTokenClaims, CoreJwsSigningAlgorithm, CoreRsaPrivateSigningKey,
    };
    use openidconnect::{
        Audience, EmptyAdditionalClaims, JsonWebKeyId, JsonWebKeySet, PrivateSigningKey,
        StandardClaims, SubjectIdentifier,
    };

    /// Test-only RSA keys (generated with `openssl genrsa 2048` for this
    /// test; they protect nothing).
    const KEY_A: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA6DyGKYTlq+g3mmggcfyt09UnX/ltkiur89EObQbJ057q5OqO\n6TsFWe3OwWcDmHzkyiQTGKm6NPvW087dhKmbBznY2j24y6Ge1Qk7N8IyqX5FmVUC\nyHVgtvYm3LgZ84cYVSUKTmb6CUyNXpcw2uA8JaxybcmSOIyCjb6KjSGovfn1L4BM\nxPG0TbxOuIRlcYpHF7nMYj0Yl3UIVE+GGy7cs4Iw+WacGnQD03bqp8pD/vsJqL5B\njrj3f6P2NSBEgxqYUE2zPEi5a18HiICFN6HC3Aa/unvqY/vR5IvHa0YlPFyVvq2v\nQKl8BpvnvkAZ1JklzMm1QxV4ocvAyQgPgPSC1wIDAQABAoIBAAN6YJH/nQbxj9+e\nnpnGbH4HK7NKw4LUZ5tbrqkgWGZ0c1UhVCmXCjH6F0YbOlkOychjOOv+Ir1HZkS+\nzN9/QMSfb6l5EirujTfojvv7SxHxw64TsVp6M4wZ7KQSl8TnaYxg5SIedbEs9dMM\nVZ15jT0NM5uEUM3LAOuJhn6tmd7ad6xtG/OhNXmGz5KyPEnUHCSjb5WJ6E+wW+T/\n8kCJYvIyHveEnpmlE+jHf5SyeoFI+GjgdT+sXqRJr3lCa6/isl2WcZ+u4RE6LH0f\nzRHUO/7QsaMg+E4au8k2uLyh47DvRi19l3kxYWKEzEkSJUfiyxFFhPytbSG3PrDy\nRZ3MiYkCgYEA+9FFjdqZ+I6YlsRVnzJEYRE5WAmLAnIms3xO+UH2HPWTKK9fRcpE\nKhwJ09PgS3FWFCEe5Q65CNDBk7sNK9PgXAHMKLyT02DLwitQL+wYWv5LzsnN48gO\njE2kLgzMutxUOcP1YU8evUU6nqUGt0EMdgPvrfixmwJj9q5te4NKHT8CgYEA7Bf+\nZYU7JVHHfahVHqZ0uVwIJ+5pWvp8ecmRX3golRNWJXcg/2Oz0F00ZWplBxc8cqKn\nBd8ridVFTLZaUM/9yf2zLE7NFwx39VfljmHCDPSiLNiGhy0ySegmVyhR8k+cFmaA\nPIZAIPt/Ehk9/PoI2gV4ivS7Sr2xfzJ6nFGcfGkCgYBn2gKpYgIl9AkSBJ6bLQvu\nTEAuAqGFvLYhR576RS3O+6hZGxpbmfNKuo2DAtp5wqARZSdsqAm/jPiIiJgB/zuE\nNmmQU1VT05O03FARs3jH7iAthCSZUCRP0KVpKHY2ii9iM2K7Yvn2bNqkGsMOSJFv\nCmiKgwocN3wqe/1C9v5V2QKBgQCgHGGFPcZvt7c/i5I2WBKexkAtvGysq2URPtac\n1SNIfjWU8OZq7JW8gAkRogbjuSlgYNg+jiu7rOvza1NyrKtjee8x5DsIH4eW1kYy\nui9ck+cL3MfXEpqhLpQZ1ZlFaCHluxvKcA07kPOLNZ0pW/P2z3EBY5lExcKDDZvD\nOUGTyQKBgQDs/3Cfqhrmw87NiwnonvDDBalcsu5POLOE0QskehfVyG+Tos0HplSq\ndwBW0zjf7tQMq4cDb3Pd7pCe5nwQ+ZnVbeGG/3cxgMps6Z2fIiOYDKnEqIPNFbMg\nKbk8F+HetdI69CGkFjNT5ttrEU2NeBo1Cvk904XRuVlDqt3Vcyr90Q==\n-----END RSA PRIVATE KEY-----";
    const KEY_B: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAtAqAIqaW548Eh/Ekwlwh+nAUBvMhm4Y0AoiRZofkaOsuYNzt\nvAsLWk8RH4ONbfOLzyp3qGF+FKkqKYjHjVoq/ZD9Qdqm3XFrYjGOElaYNoHy1g1U\ngvlY/4Q8U1FJ/nmmSZHxFBkFfg9VTZsAVh5VSAvheg+ojm5WHiJ5L2aru57sa4/v\nIpO5E5sPGSvRbgJ1ZjhQk1XuMjU5wuYupAlBEgLZS/S7gIYOs9A2ipLk3BHwIhBy\nbZxEVCN1gEOUhVwKk/23jR7hJegxh8FA+gVNqtvT6Ec7EqH8fYHk8+fid2INSg3h\nwF/imGzGAejzRaVfjvzhCW0469wWYNTQ7MdhQQIDAQABAoIBAAg5QJAUnuj1yeWx\nuJWeIrkvPGLy4RKbBy4kccvGokK+l1A6VyuTL5IQ8X3IgwHGMZklXfDVfy5Pacsa\n4c6Nk1AgusiyxZNw1lBWZiBlTy+SMPbhBf6ziAKn1h+SI3iZsuRCY8oguHUBG0rf\nrRzB5vBTBpoONAtJc+qNdY6aOHbp4DaQd38FzlIUmFEu0F3Lr5Xm0CKnqeko3SZr\nzk3soTvQO084d4ngsq0r9SuSzSSfl6NwDRsZ98eDWtjz13toxzMUdVosMOzDgrz4\nxLx+Eb1lo9wCq+O/Hct4XGoGPy65U72FFM0uNgxIfLC2PRnzCuVrRre/VoDICeq0\ncee1+skCgYEA7rcd1hosQTwRyOgqaCvrd8TqqnTT62mKHzS0ARWTPUUzmq4sbvpJ\nUista6lOcMzFmhoRvk3blyrj8h8tVG/FxuWMPkH5o9qBeVvnE5GkRD7lASXWhAlZ\nF7orZqZUfCZ55lmHX1SP0jZGbd0iUOUQ3F2vZ/f5luXCwVTcgnYquW0CgYEAwRPI\nmD4gdVQv1JlTt/f7w2JpvRVq1Ge1o4grs7csaZ1kds5gST7EJouTJ/bdAAR1v1hH\n3G7Z3zDu7H+D7v2/bqqqu/yiuswG2lZlrudDNrTr+7XH6OaQTFGVs5dHcQIks81D\npjA0h2IPryRPx4Te12OSpVJw6usSTYASw934lqUCgYAhR/Rn8jQzUB2mpf+rkFv+\n0bxp0WnuS0OPgDiMYiaqByjfquLVAh4Qz6ZAeVVPUq1GA9ZvcslntPocuo4GVKL9\nTOmVkHsuhftBITgBOW/ud9pTo6PZurfqH/GHGS90M6URIXBHMTHv+9Mr5AWxw43r\nO0CGPUNV72iMrbkkkzb3rQKBgQCrw+zdu89mccnHacw3yu54KJIG/Am5ArZt0FOI\novloz/OzWfAA2UzpOZxlnlGHlXAnFOOBMEC1NTQow1xc/fMTAdO4P42Jfr7N+LSn\nP+fkwFl76YD6KjvPGXmDdp7A43ZBWufG7fWdR1jKqBQtXIBev5+TYd9ArnXu6nRH\nOa7QXQKBgEH5ne972rOWU98pya/UjZAXt66AlqPds5PMAkVRHmfq3xyp31OTtTkd\nXVUrIKFVUBiqgtpqduHXEHgvQXCVKFE6np91VgnBdMEAyUhUYbLTD8m5fMmAhY8N\n6GKufDXsaj0jjRXJV3zMgb4qJNaBRkWDFKmcjtNeUJOkh02NJ7no\n-----END RSA PRIVATE KEY-----";
    const ISSUER: &str = "https://idp.test/realm";

    fn key(pem: &str, kid: &str) -> CoreRsaPrivateSigningKey {
        CoreRsaPrivateSigningKey::from_pem(pem, Some(JsonWebKeyId::new(kid.into()))).expect("pem")
    }

    fn token(
        signer: &CoreRsaPrivateSigningKey,
        aud: &str,
        nonce: &str,
        expires_in_s: i64,
    ) -> CoreIdToken {
        let now = chrono::Utc::now();
        let claims = CoreIdTokenClaims::new(
            IssuerUrl::new(ISSUER.into()).expect("issuer"),
            vec![Audience::new(aud.into())],
            now + chrono::Duration::seconds(expires_in_s),
            now,
            StandardClaims::new(SubjectIdentifier::new("alice-sub".into()))
                .set_preferred_username(Some(openidconnect::EndUserUsername::new("alice".into()))),
            EmptyAdditionalClaims {},
        )
        .set_nonce(Some(Nonce::new(nonce.into())));
        CoreIdToken::new(
            claims,
            signer,
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            None,
            None,
        )
        .expect("sign")
    }

    /// The ID token checks, as data: only a token signed by the provider's
    /// key, for our client, unexpired, with our nonce, passes.
    #[test]
    fn id_tokens_as_data() {
        let provider = key(KEY_A, "a");
        let stranger = key(KEY_B, "a");
        let client = CoreClient::new(
            ClientId::new("quorumhub".into()),
            IssuerUrl::new(ISSUER.into()).expect("issuer"),
            JsonWebKeySet::new(vec![provider.as_verification_key()]),
        )
        .set_client_secret(ClientSecret::new("secret".into()));
        let verifier = client.id_token_verifier();
        let cases = [
            ("good", token(&provider, "quorumhub", "n1", 300), true),
            (
                "another key's signature",
                token(&stranger, "quorumhub", "n1", 300),
                false,
            ),
            (
                "another client's token",
                token(&provider, "other-client", "n1", 300),
                false,
            ),
            ("expired", token(&provider, "quorumhub", "n1", -600), false),
            (
                "an old nonce",
                token(&provider, "quorumhub", "n0", 300),
                false,
            ),
        ];
        for (what, t, ok) in cases {
            let got = checked_claims(&t, &verifier, "n1");
            assert_eq!(got.is_ok(), ok, "{what}: {:?}", got.err());
            if ok {
                assert_eq!(got.expect("claims")["preferred_username"], "alice");
            }
        }
    }

    #[test]
    fn payload_decodes_a_jwt_body() {
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"a","groups":["g"]}"#);
        let jwt = format!("e30.{body}.sig");
        let claims = payload(&jwt).expect("claims");
        assert_eq!(claims["sub"], "a");
        assert!(payload("garbage").is_none());
        assert!(payload("a.!!!.c").is_none());
    }
}
