//! Optional mutual TLS on gRPC between replicas, proxies and hubctl:
//! certificates and keys from PEM files, one CA that signed them all.
//! A server configured with it requires a client certificate signed by
//! the CA; a client verifies the server's certificate against the CA (and
//! that it names the host dialled) and presents its own.
//!
//! One process has one identity, so the client side is process-wide:
//! [`install`] it once at start-up and every channel this process opens
//! ([`client_config`], [`scheme`]) uses it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// `--grpc-tls-cert`, `--grpc-tls-key`, `--grpc-tls-ca`: all three or none.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct GrpcTlsArgs {
    /// This process's certificate for gRPC (PEM; chain first), signed by
    /// --grpc-tls-ca. With --grpc-tls-key and --grpc-tls-ca, every gRPC
    /// connection (replicas, proxies, hubctl) is mutual TLS.
    #[arg(long, env = "QUORUMHUB_GRPC_TLS_CERT")]
    pub grpc_tls_cert: Option<PathBuf>,
    /// The private key of --grpc-tls-cert (PEM; mode 0600 or stricter).
    #[arg(long, env = "QUORUMHUB_GRPC_TLS_KEY")]
    pub grpc_tls_key: Option<PathBuf>,
    /// The CA certificate (PEM) that signed every replica's, proxy's and
    /// hubctl's certificate: peers are verified against it.
    #[arg(long, env = "QUORUMHUB_GRPC_TLS_CA")]
    pub grpc_tls_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum GrpcTlsError {
    #[error(
        "gRPC TLS needs all of --grpc-tls-cert, --grpc-tls-key and --grpc-tls-ca; {0} is missing"
    )]
    Incomplete(&'static str),
    #[error("cannot read {flag} {path:?}: {source}; check the path and that this process's user can read it")]
    Read {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{flag} {path:?} holds no PEM {what}; give a PEM file (-----BEGIN ...)")]
    NotPem {
        flag: &'static str,
        path: PathBuf,
        what: &'static str,
    },
    #[error(transparent)]
    Key(#[from] crate::secret_file::SecretFileError),
}

/// Loaded PEM material.
#[derive(Clone, Debug)]
pub struct GrpcTls {
    cert: Vec<u8>,
    key: Vec<u8>,
    ca: Vec<u8>,
}

fn read(flag: &'static str, path: &Path, what: &'static str) -> Result<Vec<u8>, GrpcTlsError> {
    let bytes = std::fs::read(path).map_err(|source| GrpcTlsError::Read {
        flag,
        path: path.to_owned(),
        source,
    })?;
    if !String::from_utf8_lossy(&bytes).contains("-----BEGIN ") {
        return Err(GrpcTlsError::NotPem {
            flag,
            path: path.to_owned(),
            what,
        });
    }
    Ok(bytes)
}

impl GrpcTlsArgs {
    /// `None` when no flag is given; an error when only some are.
    pub fn load(&self) -> Result<Option<GrpcTls>, GrpcTlsError> {
        let (cert, key, ca) = match (&self.grpc_tls_cert, &self.grpc_tls_key, &self.grpc_tls_ca) {
            (None, None, None) => return Ok(None),
            (Some(c), Some(k), Some(a)) => (c, k, a),
            (None, _, _) => return Err(GrpcTlsError::Incomplete("--grpc-tls-cert")),
            (_, None, _) => return Err(GrpcTlsError::Incomplete("--grpc-tls-key")),
            (_, _, None) => return Err(GrpcTlsError::Incomplete("--grpc-tls-ca")),
        };
        // The key is a secret: the same mode checks as the secret files.
        let key_text = crate::secret_file::read_secret_file("--grpc-tls-key", key)?;
        if !key_text.contains("-----BEGIN ") {
            return Err(GrpcTlsError::NotPem {
                flag: "--grpc-tls-key",
                path: key.clone(),
                what: "private key",
            });
        }
        Ok(Some(GrpcTls {
            cert: read("--grpc-tls-cert", cert, "certificate")?,
            key: key_text.into_bytes(),
            ca: read("--grpc-tls-ca", ca, "CA certificate")?,
        }))
    }
}

impl GrpcTls {
    fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert, &self.key)
    }

    /// The server side: this identity, client certificates required and
    /// verified against the CA.
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity())
            .client_ca_root(Certificate::from_pem(&self.ca))
    }

    /// The client side: the server verified against the CA, this identity
    /// presented.
    pub fn client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .identity(self.identity())
    }
}

static CLIENT: OnceLock<GrpcTls> = OnceLock::new();

/// Use `tls` for every gRPC channel this process opens from now on. A
/// second call is ignored (one identity per process).
pub fn install(tls: GrpcTls) {
    let _ = CLIENT.set(tls);
}

/// The client TLS configuration [`install`]ed, if any.
pub fn client_config() -> Option<ClientTlsConfig> {
    CLIENT.get().map(GrpcTls::client)
}

/// `addr` (host:port, or a URL) as the URI to dial: `https://` when TLS
/// is installed, else `http://`.
pub fn uri(addr: &str) -> String {
    if addr.contains("://") {
        return addr.to_string();
    }
    let scheme = if CLIENT.get().is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{addr}")
}
