//! TLS at the edge (rustls): the certificate chain and key from PEM files,
//! reloaded on SIGHUP without dropping a connection (each new handshake
//! takes the configuration current at that moment), HTTP/2 or HTTP/1.1 by
//! ALPN, and a handshake that must finish within the header timeout.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

/// TLS flags (flattened into the proxy's).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// PEM certificate chain (leaf first) to serve HTTPS with; needs
    /// --tls-key. Reloaded, with the key, on SIGHUP.
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Also listen on this address for plain HTTP and answer every request
    /// with a permanent redirect to the same path over HTTPS.
    #[arg(long, requires = "tls_cert", value_name = "ADDR")]
    pub tls_redirect_from: Option<std::net::SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate chain {path}: {source}; give a PEM file with the leaf certificate first")]
    Cert {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{0} holds no certificate; give a PEM file with the leaf certificate first")]
    NoCert(PathBuf),
    #[error(
        "cannot read the TLS private key {path}: {source}; give a PEM PKCS#8, PKCS#1 or SEC1 key"
    )]
    Key {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error(
        "the TLS certificate and key do not go together, or the key type is not supported: {0}"
    )]
    Config(rustls::Error),
}

/// Load a server configuration from PEM files, ALPN `h2` then `http/1.1`.
pub fn load(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Cert {
            path: cert.to_path_buf(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCert(cert.to_path_buf()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Key {
        path: key.to_path_buf(),
        source,
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(TlsError::Config)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The configuration new handshakes use, swapped on reload.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: ArcSwap<ServerConfig>,
}

impl Tls {
    /// Load the files now (a bad file fails the start).
    pub fn new(cert: PathBuf, key: PathBuf) -> Result<Arc<Tls>, TlsError> {
        let config = load(&cert, &key)?;
        Ok(Arc::new(Tls {
            cert,
            key,
            current: ArcSwap::from_pointee(config),
        }))
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.load_full())
    }

    /// Read the files again; on error keep serving with the old pair.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = load(&self.cert, &self.key)?;
        self.current.store(Arc::new(config));
        Ok(())
    }

    /// Reload on every SIGHUP, for as long as the process runs.
    pub fn reload_on_sighup(self: &Arc<Self>) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGHUP; the TLS certificate will not be reloaded");
                return;
            }
        };
        let tls = self.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match tls.reload() {
                    Ok(()) => {
                        tracing::info!(cert = %tls.cert.display(), "SIGHUP: TLS certificate and key reloaded; new connections use them")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "SIGHUP: TLS reload failed; still serving the previous certificate")
                    }
                }
            }
        });
    }
}

/// The answer of the plain-HTTP listener next to an HTTPS one: a permanent
/// redirect (308: the method and body are kept) to the same host, path and
/// query over HTTPS on `https_port`. A request without a usable `Host`
/// gets 400.
pub fn https_redirect<B>(
    req: &http::Request<B>,
    https_port: u16,
) -> http::Response<http_body_util::Full<bytes::Bytes>> {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<http::uri::Authority>().ok());
    let Some(host) = host else {
        return crate::serve::json_error(
            http::StatusCode::BAD_REQUEST,
            "this port only redirects to HTTPS, and the request has no valid Host header",
        );
    };
    let name = host.host();
    let authority = if https_port == 443 {
        name.to_string()
    } else {
        format!("{name}:{https_port}")
    };
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let location = format!("https://{authority}{pq}");
    let mut resp = http::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
    *resp.status_mut() = http::StatusCode::PERMANENT_REDIRECT;
    match http::HeaderValue::from_str(&location) {
        Ok(v) => {
            resp.headers_mut().insert(http::header::LOCATION, v);
            resp
        }
        Err(_) => crate::serve::json_error(
            http::StatusCode::BAD_REQUEST,
            "cannot build the HTTPS address for this request",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect(host: Option<&str>, uri: &str, port: u16) -> (u16, Option<String>) {
        let mut b = http::Request::builder().uri(uri);
        if let Some(h) = host {
            b = b.header("host", h);
        }
        let req = b.body(()).expect("req");
        let resp = https_redirect(&req, port);
        (
            resp.status().as_u16(),
            resp.headers()
                .get("location")
                .map(|v| v.to_str().expect("ascii").to_string()),
        )
    }

    #[test]
    fn redirects_as_data() {
        assert_eq!(
            redirect(
                Some("hub.example:80"),
                "/hub/login?next=%2Fuser%2Fa%2F",
                443
            ),
            (
                308,
                Some("https://hub.example/hub/login?next=%2Fuser%2Fa%2F".into())
            )
        );
        assert_eq!(
            redirect(Some("127.0.0.1:8000"), "/", 8443),
            (308, Some("https://127.0.0.1:8443/".into()))
        );
        assert_eq!(
            redirect(Some("[::1]:80"), "/x", 443),
            (308, Some("https://[::1]/x".into()))
        );
        assert_eq!(redirect(None, "/", 443).0, 400);
        assert_eq!(redirect(Some("bad host/x"), "/", 443).0, 400);
    }

    #[test]
    fn pem_files_load_and_bad_ones_are_refused() {
        let dir = std::env::temp_dir().join(format!("qh-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, cert.cert.pem()).expect("write");
        std::fs::write(&k, cert.key_pair.serialize_pem()).expect("write");
        let config = load(&c, &k).expect("load");
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").expect("write");
        assert!(matches!(load(&empty, &k), Err(TlsError::NoCert(_))));
        assert!(matches!(load(&c, &empty), Err(TlsError::Key { .. })));
        let other = rcgen::generate_simple_self_signed(vec!["x".into()]).expect("cert");
        let k2 = dir.join("key2.pem");
        std::fs::write(&k2, other.key_pair.serialize_pem()).expect("write");
        let err = load(&c, &k2).expect_err("mismatched pair");
        assert!(err.to_string().contains("do not go together"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
