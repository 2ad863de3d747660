//! The accept loop: connection caps at accept, hyper's header timeout
//! (which is also its keep-alive idle timeout), a body timeout, a send
//! timeout, request caps, and the client address resolved once per
//! request for the handler.

use std::convert::Infallible;
use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tower_http::timeout::TimeoutBody;

use crate::client_addr::{Client, TrustedHops};
use crate::io::Socket;
use crate::log_limit::RefusalLog;
use crate::slots::{Full as SlotsFull, Slots};
use crate::tls::Tls;
use crate::EdgeArgs;

/// What a handler reads: the client's body, failing after a pause longer
/// than the body timeout.
pub type RequestBody = TimeoutBody<Incoming>;

/// File descriptors kept for everything but client connections (hub
/// connections, logs, the store).
const RESERVED_FDS: usize = 256;

/// The edge of one listener: its limits and its counters.
pub struct Edge {
    args: EdgeArgs,
    trusted: TrustedHops,
    conns: Arc<Slots>,
    requests: Arc<Slots>,
    log: RefusalLog,
    builder: auto::Builder<TokioExecutor>,
    tls: Option<Arc<Tls>>,
    name: &'static str,
}

impl Edge {
    /// An edge with these limits; `default_trusted` applies when
    /// `--trusted-proxies` is not given. The connection cap is lowered to
    /// fit the file descriptor limit (raised to its hard limit first), with
    /// two descriptors per connection: the client's and an upstream's.
    /// With `tls`, it serves HTTPS (see [`Tls`]).
    pub fn new(
        args: EdgeArgs,
        default_trusted: TrustedHops,
        name: &'static str,
        tls: Option<Arc<Tls>>,
    ) -> Arc<Edge> {
        let fds = raise_fd_limit();
        let fit = fds.saturating_sub(RESERVED_FDS) / 2;
        let max_connections = if fit > 0 && fit < args.max_connections {
            tracing::warn!(
                configured = args.max_connections,
                fds,
                max_connections = fit,
                "--max-connections lowered to fit the file descriptor limit; raise `ulimit -n` for more"
            );
            fit.max(16)
        } else {
            args.max_connections
        };
        let trusted = args.trusted_proxies.clone().unwrap_or(default_trusted);
        trusted.keep_resolved();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(args.header_timeout())
            .max_buf_size(args.max_header_bytes.max(8192));
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(256)
            .max_header_list_size(u32::try_from(args.max_header_bytes).unwrap_or(u32::MAX))
            .max_pending_accept_reset_streams(Some(64))
            .max_local_error_reset_streams(Some(1024))
            .keep_alive_interval(Some(Duration::from_secs(20)))
            .keep_alive_timeout(Duration::from_secs(20));
        Arc::new(Edge {
            conns: Slots::new(max_connections, args.max_connections_per_client),
            requests: Slots::new(args.max_requests_in_flight, args.max_requests_per_client),
            args,
            trusted,
            log: RefusalLog::default(),
            builder,
            tls,
            name,
        })
    }

    /// `https` when serving TLS, else `http`: for X-Forwarded-Proto.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    pub fn trusted(&self) -> &TrustedHops {
        &self.trusted
    }

    /// Open client connections now.
    pub fn open_connections(&self) -> usize {
        self.conns.open()
    }

    /// Accept and serve connections until `stop` resolves; then stop
    /// accepting and hand back the connections still open, to be drained
    /// with [`GracefulShutdown::shutdown`] under the caller's deadline.
    pub async fn serve<H, Fut, B>(
        self: Arc<Self>,
        listener: TcpListener,
        handler: H,
        stop: impl Future<Output = ()>,
    ) -> GracefulShutdown
    where
        H: Fn(Request<RequestBody>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<B>> + Send + 'static,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let graceful = GracefulShutdown::new();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => self.connection(stream, peer, handler.clone(), &graceful),
                    Err(e) => self.accept_failed(e).await,
                },
                _ = &mut stop => break,
            }
        }
        drop(listener);
        graceful
    }

    fn connection<H, Fut, B>(
        self: &Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        handler: H,
        graceful: &GracefulShutdown,
    ) where
        H: Fn(Request<RequestBody>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<B>> + Send + 'static,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let trusted = self.trusted.contains(peer.ip());
        let slot = match self.conns.acquire(peer.ip(), trusted) {
            Ok(slot) => slot,
            Err(full) => {
                self.refuse_connection(&stream, peer, full);
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        let socket = Socket::new(stream, self.args.send_timeout(), slot);
        let watcher = graceful.watcher();
        let edge = self.clone();
        match &self.tls {
            None => {
                tokio::spawn(async move { edge.http(socket, peer, handler, watcher).await });
            }
            Some(tls) => {
                let acceptor = tls.acceptor();
                // The handshake is bounded like a request's headers: a
                // client that opens and stalls holds its slot no longer.
                let limit = self.args.header_timeout();
                tokio::spawn(async move {
                    match tokio::time::timeout(limit, acceptor.accept(socket)).await {
                        Ok(Ok(tls)) => edge.http(tls, peer, handler, watcher).await,
                        Ok(Err(e)) => {
                            tracing::debug!(listener = edge.name, %peer, error = %e, "TLS handshake failed")
                        }
                        Err(_) => {
                            tracing::debug!(listener = edge.name, %peer, "TLS handshake timed out")
                        }
                    }
                });
            }
        }
    }

    /// Serve HTTP/1.1 or HTTP/2 (by ALPN, or by the preface in clear) on
    /// one connection until it closes.
    async fn http<I, H, Fut, B>(
        self: Arc<Self>,
        io: I,
        peer: SocketAddr,
        handler: H,
        watcher: Watcher,
    ) where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        H: Fn(Request<RequestBody>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<B>> + Send + 'static,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let edge = self.clone();
        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
            let edge = edge.clone();
            let handler = handler.clone();
            async move { Ok::<_, Infallible>(edge.request(peer, req, handler).await) }
        });
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), svc)
            .into_owned();
        if let Err(e) = watcher.watch(conn).await {
            tracing::debug!(listener = self.name, %peer, error = %e, "connection ended with an error");
        }
    }

    async fn request<H, Fut, B>(
        &self,
        peer: SocketAddr,
        req: Request<Incoming>,
        handler: H,
    ) -> Response<Either<B, Full<Bytes>>>
    where
        H: Fn(Request<RequestBody>) -> Fut,
        Fut: Future<Output = Response<B>>,
    {
        let client = Client::resolve(peer, req.headers(), &self.trusted);
        let _slot = match self.requests.acquire(client.addr, false) {
            Ok(slot) => slot,
            Err(full) => return self.refuse_request(&client, full),
        };
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(client);
        let req = Request::from_parts(parts, TimeoutBody::new(self.args.body_timeout(), body));
        handler(req).await.map(Either::Left)
    }

    fn refuse_request<B>(
        &self,
        client: &Client,
        full: SlotsFull,
    ) -> Response<Either<B, Full<Bytes>>> {
        let (status, flag, message) = match full {
            SlotsFull::All => (
                StatusCode::SERVICE_UNAVAILABLE,
                "--max-requests-in-flight",
                "too many requests in flight on this server; retry shortly",
            ),
            SlotsFull::Client => (
                StatusCode::TOO_MANY_REQUESTS,
                "--max-requests-per-client",
                "too many requests in flight from your address; wait for some to finish",
            ),
        };
        self.log_refusal("request", client.addr.to_string(), flag);
        let mut resp = json_error(status, message);
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        resp.map(Either::Right)
    }

    /// Over a connection cap: a short 503 written without waiting (a new
    /// socket's send buffer always takes it), then closed at once, so a
    /// flood of refused connections holds no descriptor.
    fn refuse_connection(&self, stream: &TcpStream, peer: SocketAddr, full: SlotsFull) {
        let flag = match full {
            SlotsFull::All => "--max-connections",
            SlotsFull::Client => "--max-connections-per-client",
        };
        let body = format!(
            "{{\"status\": 503, \"message\": \"too many open connections ({flag}); retry shortly\"}}"
        );
        let head = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.try_write(head.as_bytes());
        self.log_refusal("connection", peer.ip().to_string(), flag);
    }

    fn log_refusal(&self, kind: &'static str, client: String, flag: &'static str) {
        let key = format!("{kind} {client}");
        if let Some(unlogged) = self.log.should_log(&key, Instant::now()) {
            tracing::warn!(
                listener = self.name,
                %client,
                kind,
                limit = flag,
                unlogged,
                "refused: over a limit (logged once a minute per client)"
            );
        }
    }

    /// `accept` failing must not spin: out of descriptors or memory, wait
    /// for connections to close; anything else (a connection reset before
    /// it was accepted) is that one connection's problem.
    async fn accept_failed(&self, e: std::io::Error) {
        let exhausted = matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        );
        if self.log.should_log("accept", Instant::now()).is_some() {
            tracing::warn!(listener = self.name, error = %e, open = self.conns.open(), "accept failed (logged once a minute)");
        }
        if exhausted || e.kind() == ErrorKind::OutOfMemory {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `{"status": N, "message": "..."}`, as every refusal of the edge.
pub fn json_error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = format!(
        "{{\"status\": {}, \"message\": {}}}",
        status.as_u16(),
        quote(message)
    );
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A JSON string literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Raise the soft file descriptor limit to the hard one (as nginx's
/// `worker_rlimit_nofile` does); the soft limit in effect.
pub fn raise_fd_limit() -> usize {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        let want = lim.rlim_max.min(1 << 20);
        if lim.rlim_cur < want {
            let raised = libc::rlimit {
                rlim_cur: want,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = want;
            }
        }
        usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
    }
}
