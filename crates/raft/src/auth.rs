//! The cluster secret on every RPC: clients attach it, servers check it
//! before any handler runs.

use std::sync::Arc;

use quorumhub_proto::AUTH_METADATA;
use subtle::ConstantTimeEq;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Shortest secret accepted; shorter ones are refused at start-up.
pub const MIN_SECRET_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the cluster secret is empty; set --cluster-secret-file (or --cluster-secret / QUORUMHUB_CLUSTER_SECRET)")]
    Empty,
    #[error("the cluster secret is {0} characters; use at least {MIN_SECRET_LEN} (e.g. `openssl rand -hex 32`)")]
    TooShort(usize),
    #[error("the cluster secret must be printable ASCII without spaces")]
    NotAscii,
}

pub fn validate_secret(secret: &str) -> Result<(), SecretError> {
    if secret.is_empty() {
        return Err(SecretError::Empty);
    }
    if !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(SecretError::NotAscii);
    }
    if secret.len() < MIN_SECRET_LEN {
        return Err(SecretError::TooShort(secret.len()));
    }
    Ok(())
}

/// Attaches `authorization: Bearer <secret>` to outgoing calls.
#[derive(Clone)]
pub struct ClientAuth {
    header: MetadataValue<Ascii>,
}

impl ClientAuth {
    pub fn new(secret: &str) -> Result<ClientAuth, SecretError> {
        let header = format!("Bearer {secret}")
            .parse()
            .map_err(|_| SecretError::NotAscii)?;
        Ok(ClientAuth { header })
    }
}

impl Interceptor for ClientAuth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut()
            .insert(AUTH_METADATA, self.header.clone());
        Ok(req)
    }
}

/// Refuses calls that do not carry the cluster secret.
#[derive(Clone)]
pub struct ServerAuth {
    expected: Arc<[u8]>,
}

impl ServerAuth {
    pub fn new(secret: &str) -> ServerAuth {
        ServerAuth {
            expected: format!("Bearer {secret}").into_bytes().into(),
        }
    }
}

impl Interceptor for ServerAuth {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let given = req
            .metadata()
            .get(AUTH_METADATA)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if given.len() == self.expected.len() && bool::from(given.ct_eq(&self.expected)) {
            return Ok(req);
        }
        tracing::warn!(
            remote = ?req.remote_addr(),
            has_credentials = !given.is_empty(),
            "refused an RPC without the cluster secret"
        );
        Err(Status::unauthenticated(
            "missing or wrong cluster secret: every replica, proxy and hubctl of a cluster must use the same --cluster-secret",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_as_data() {
        assert!(validate_secret("0123456789abcdef").is_ok());
        assert!(matches!(validate_secret(""), Err(SecretError::Empty)));
        assert!(matches!(
            validate_secret("short"),
            Err(SecretError::TooShort(5))
        ));
        assert!(matches!(
            validate_secret("has a space in it!"),
            Err(SecretError::NotAscii)
        ));
    }

    #[test]
    fn server_accepts_only_the_exact_secret() {
        let secret = "0123456789abcdef-secret";
        let mut server = ServerAuth::new(secret);
        let mut client = ClientAuth::new(secret).expect("ascii");
        let ok = client.call(Request::new(())).expect("attaches");
        assert!(server.call(ok).is_ok());

        assert_eq!(
            server
                .call(Request::new(()))
                .map(|_| ())
                .map_err(|s| s.code()),
            Err(tonic::Code::Unauthenticated)
        );
        for wrong in ["0123456789abcdef-secreT", "0123456789abcdef-secret2", "x"] {
            let mut c = ClientAuth::new(wrong).expect("ascii");
            let req = c.call(Request::new(())).expect("attaches");
            assert!(server.call(req).is_err(), "{wrong}");
        }
    }
}
