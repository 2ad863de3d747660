//! The HTTP edge that proxies and hub replicas share: what an
//! internet-facing server must bound before any request reaches its
//! handler.
//!
//! - [`slots`]: caps on open connections and on requests in flight, in all
//!   and per client address;
//! - [`client_addr`]: the real client behind trusted hops, and the
//!   forwarded headers a proxy passes on;
//! - [`io`]: the served socket (send timeout; holds its connection slot);
//! - [`log_limit`]: refusals logged once per interval per client;
//! - [`tls`]: HTTPS with rustls, the certificate reloaded on SIGHUP;
//! - [`serve`]: the accept loop and hyper's own timeouts put together.
//!
//! Must never know about routes, hubs, Raft or Jupyter: it serves any
//! handler.

pub mod client_addr;
pub mod io;
pub mod log_limit;
pub mod serve;
pub mod slots;
pub mod tls;

pub use client_addr::{Client, TrustedHops};
pub use log_limit::RefusalLog;
pub use serve::{Edge, RequestBody};
pub use tls::{Tls, TlsArgs};

use std::time::Duration;

/// The edge's limits, as flags (flattened into the proxy's and the hub's
/// own; the same names in the TOML file).
#[derive(clap::Args, Debug, Clone)]
pub struct EdgeArgs {
    /// Longest wait for a request's headers, counted from the connection
    /// opening or from the previous response: so also the keep-alive idle
    /// timeout. A connection over it is closed.
    #[arg(long, default_value = "20000")]
    pub header_timeout_ms: u64,
    /// Longest pause while reading a request body; then the request fails
    /// (408 or closed) and so does its connection.
    #[arg(long, default_value = "20000")]
    pub body_timeout_ms: u64,
    /// Longest a write to a client may make no progress (a client that
    /// stops reading); then the connection is closed.
    #[arg(long, default_value = "30000")]
    pub send_timeout_ms: u64,
    /// Open client connections at most (WebSockets included); further ones
    /// get a 503 and are closed. Lowered at start to fit the file
    /// descriptor limit.
    #[arg(long, default_value = "16384")]
    pub max_connections: usize,
    /// Open connections per client address (IPv6: per /64) at most; a
    /// trusted hop (`--trusted-proxies`) is exempt.
    #[arg(long, default_value = "1024")]
    pub max_connections_per_client: usize,
    /// Requests waiting for their response head, at most; further ones get
    /// 503 with Retry-After.
    #[arg(long, default_value = "8192")]
    pub max_requests_in_flight: usize,
    /// Requests in flight per client address (behind trusted hops: per
    /// real client), at most; further ones get 429 with Retry-After.
    #[arg(long, default_value = "512")]
    pub max_requests_per_client: usize,
    /// Largest request head (request line and headers); larger gets 431.
    #[arg(long, default_value = "65536")]
    pub max_header_bytes: usize,
    /// Hops whose X-Forwarded-For/-Proto/-Host are believed: the load
    /// balancers (and, for a hub, the proxies) in front of this process, as
    /// addresses, networks or host names (resolved every 5 s),
    /// comma-separated. The client is the first address from the right that
    /// is not one of them. Default: none for a proxy (its peer is the
    /// client); loopback for a hub.
    #[arg(
        long = "trusted-proxies",
        value_name = "HOPS",
        env = "QUORUMHUB_TRUSTED_PROXIES"
    )]
    pub trusted_proxies: Option<TrustedHops>,
}

impl Default for EdgeArgs {
    fn default() -> EdgeArgs {
        EdgeArgs {
            header_timeout_ms: 20_000,
            body_timeout_ms: 20_000,
            send_timeout_ms: 30_000,
            max_connections: 16_384,
            max_connections_per_client: 1024,
            max_requests_in_flight: 8192,
            max_requests_per_client: 512,
            max_header_bytes: 65_536,
            trusted_proxies: None,
        }
    }
}

impl EdgeArgs {
    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms.max(100))
    }
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms.max(100))
    }
    pub fn send_timeout(&self) -> Duration {
        Duration::from_millis(self.send_timeout_ms.max(100))
    }
}
