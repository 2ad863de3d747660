//! Forwarding one request: to the route's target (user servers) or to a
//! hub replica, HTTP and WebSocket upgrades alike.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use quorumhub_edge::{Client as ClientAddr, RequestBody};

use crate::client::{empty, full, Body, BoxError, HttpClient};
use crate::drain::Drain;
use crate::metrics::{Kind, ProxyMetrics};
use crate::shared::Shared;
use crate::upload::{Failure, Upload};

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1); as
/// names, so removing them parses nothing.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn error(status: StatusCode, message: &str) -> Response<Body> {
    quorumhub_edge::serve::json_error(status, message)
        .map(|b| b.map_err(|never: Infallible| match never {}).boxed())
}

/// An answer after which the client's connection is closed: its body was
/// not read to the end.
fn closing(mut resp: Response<Body>) -> Response<Body> {
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Remove hop-by-hop headers, including any named in `Connection`.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(&header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        });
    connection_upgrade && headers.contains_key(header::UPGRADE)
}

/// What forwarding needs besides the request.
#[derive(Clone)]
pub(crate) struct Forwarder {
    pub shared: Arc<Shared>,
    pub client: HttpClient,
    pub drain: Drain,
    /// Largest `/hub/...` body passed on; the hub applies its own, smaller
    /// limits per endpoint.
    pub max_hub_body: u64,
    /// `http` or `https`: what this proxy's clients speak.
    pub scheme: &'static str,
    pub metrics: Arc<ProxyMetrics>,
}

/// Handle one request from a client, counted by where it went.
pub(crate) async fn handle(fwd: Arc<Forwarder>, req: Request<RequestBody>) -> Response<Body> {
    let started = std::time::Instant::now();
    let (kind, resp) = route(&fwd, req).await;
    fwd.metrics
        .answered(kind, resp.status().as_u16(), started.elapsed());
    resp
}

async fn route(fwd: &Forwarder, req: Request<RequestBody>) -> (Kind, Response<Body>) {
    if req.uri().path() == "/_proxy/health" {
        return (Kind::Proxy, health(&fwd.shared));
    }
    let table = fwd.shared.table.load();
    match table.lookup(req.uri().path()) {
        Some(target) => {
            // The upstream URI is made while the table is held (the
            // target was parsed when the table was built); nothing of the
            // table is kept across the request.
            let uri = target.uri_for(req.uri());
            drop(table);
            let resp = match uri {
                Some(uri) => to_server(fwd, uri, req).await,
                None => error(StatusCode::BAD_GATEWAY, "bad route target"),
            };
            (Kind::Server, resp)
        }
        None => {
            drop(table);
            (Kind::Hub, to_hub(fwd, req).await)
        }
    }
}

/// 200 while serving (with or without a hub: the last table still
/// routes); 503 once draining, so load balancers take this proxy out.
fn health(shared: &Shared) -> Response<Body> {
    let table = shared.table.load();
    let draining = shared.draining.load(std::sync::atomic::Ordering::Relaxed);
    let body = format!(
        "{{\"routes\": {}, \"revision\": {}, \"draining\": {draining}, \"connected\": {}, \"last_event_age_ms\": {}}}",
        table.routes.len(),
        table.revision,
        shared.connected.load(std::sync::atomic::Ordering::Relaxed),
        shared
            .last_event_age()
            .map(|d| d.as_millis().to_string())
            .unwrap_or_else(|| "null".into())
    );
    let mut resp = Response::new(full(body));
    if draining {
        *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    }
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The client's headers made fit for the next hop: hop-by-hop headers
/// removed (an upgrade's `Connection`/`Upgrade` put back), forwarded
/// headers rewritten.
fn rewrite_headers(
    headers: &mut HeaderMap,
    upgrade: bool,
    client: Option<&ClientAddr>,
    scheme: &'static str,
) {
    let upgrade_value = if upgrade {
        headers.get(&header::UPGRADE).cloned()
    } else {
        None
    };
    strip_hop_by_hop(headers);
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(v) = upgrade_value {
            headers.insert(header::UPGRADE, v);
        }
    }
    match client {
        Some(client) => client.set_forwarded_headers(headers, scheme),
        None => {
            // Not from the edge (cannot happen when serving): believe nothing.
            for h in [
                "x-forwarded-for",
                "x-forwarded-host",
                "x-real-ip",
                "forwarded",
            ] {
                headers.remove(h);
            }
            headers.insert("x-forwarded-proto", HeaderValue::from_static(scheme));
        }
    }
}

/// Build an upstream request head from the client's, leaving the request
/// as it is (a `/hub/...` request may be tried on several replicas).
fn prepare(
    req: &Request<RequestBody>,
    scheme: &'static str,
    base: &str,
) -> Option<http::request::Parts> {
    let upgrade = is_upgrade(req.headers());
    let uri = crate::table::Target::new(base).uri_for(req.uri())?;
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = req.method().clone();
    parts.uri = uri;
    parts.headers = req.headers().clone();
    rewrite_headers(
        &mut parts.headers,
        upgrade,
        req.extensions().get::<ClientAddr>(),
        scheme,
    );
    Some(parts)
}

/// To a user's server: one attempt, so the client's request head is
/// reused in place (no copy of its headers).
async fn to_server(fwd: &Forwarder, uri: Uri, mut req: Request<RequestBody>) -> Response<Body> {
    let upgrade = is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let client = req.extensions().get::<ClientAddr>().copied();
    let (mut parts, body) = req.into_parts();
    let target = uri.authority().cloned();
    parts.uri = uri;
    // Upstream is always HTTP/1.1, whatever the client spoke; nothing of
    // the client's connection (its extensions) goes along.
    parts.version = http::Version::HTTP_11;
    parts.extensions = http::Extensions::new();
    rewrite_headers(&mut parts.headers, upgrade, client.as_ref(), fwd.scheme);
    // A request without a body (most GETs) has nothing to stall or to
    // limit: no upload bookkeeping.
    let (body, failure) = if body.is_end_stream() {
        (empty(), None)
    } else {
        let (upload, failure) = Upload::new(body, u64::MAX);
        (upload.attempt().boxed(), Some(failure))
    };
    let upstream = Request::from_parts(parts, body);
    match fwd.client.request(upstream).await {
        Ok(resp) => finish(resp, client_upgrade, &fwd.drain),
        Err(_)
            if failure
                .as_ref()
                .is_some_and(|f| f.get() == Some(Failure::Stalled)) =>
        {
            closing(error(
                StatusCode::REQUEST_TIMEOUT,
                "the request body stalled (see --body-timeout-ms)",
            ))
        }
        Err(e) => {
            let target = target.as_ref().map(|a| a.as_str()).unwrap_or("?");
            tracing::warn!(%target, error = %e, "user server unreachable");
            fwd.metrics.upstream_failed(Kind::Server);
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the user's server is not answering; it may be starting or stopping",
            )
        }
    }
}

/// To a hub replica. The body is streamed, never buffered: a replica that
/// cannot be connected to (so nothing was sent) is skipped for the next,
/// and a request whose body was already taken is never sent twice.
async fn to_hub(fwd: &Forwarder, mut req: Request<RequestBody>) -> Response<Body> {
    let shared = &fwd.shared;
    let hubs = shared.hubs.load_full();
    if hubs.ordered.is_empty() {
        fwd.metrics.upstream_failed(Kind::Hub);
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no hub replica is known yet",
        );
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > fwd.max_hub_body) {
        return too_large(fwd.max_hub_body);
    }
    let client_upgrade = is_upgrade(req.headers()).then(|| hyper::upgrade::on(&mut req));
    // Leader first as this proxy's own probes found it, silent ones last.
    let ordered = crate::health::order(&hubs.ordered, &shared.health.load());
    let heads: Vec<_> = ordered
        .iter()
        .filter_map(|h| prepare(&req, fwd.scheme, h).map(|p| (h.clone(), p)))
        .collect();
    let (body, failure) = Upload::new(req.into_body(), fwd.max_hub_body);
    let mut client_upgrade = client_upgrade;
    for (hub, parts) in heads {
        let upstream = Request::from_parts(parts, body.attempt().boxed());
        let client = shared.hub_clients.get(&hub);
        let answer = tokio::select! {
            r = client.request(upstream) => r,
            _ = crate::health::unresponsive(shared, &hub) => {
                tracing::warn!(%hub, "hub replica stopped answering its health checks while handling a request; giving up on it");
                shared.hub_clients.reset(&hub);
                fwd.metrics.upstream_failed(Kind::Hub);
                return error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "the hub replica handling this request stopped answering (paused, cut off or dead); \
                     it may or may not have taken effect: retry",
                );
            }
        };
        match answer {
            Ok(resp) => return finish(resp, client_upgrade.take(), &fwd.drain),
            Err(_) if failure.get() == Some(Failure::TooLarge) => {
                return too_large(fwd.max_hub_body);
            }
            Err(_) if failure.get() == Some(Failure::Stalled) => {
                return closing(error(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body stalled (see --body-timeout-ms)",
                ));
            }
            Err(e) if e.is_connect() && body.unsent() => {
                tracing::debug!(%hub, error = %e, "hub replica unreachable; trying the next");
                continue;
            }
            Err(e) => {
                tracing::warn!(%hub, error = %e, "hub replica failed mid-request");
                fwd.metrics.upstream_failed(Kind::Hub);
                return error(
                    StatusCode::BAD_GATEWAY,
                    "the hub replica failed while answering; retry",
                );
            }
        }
    }
    fwd.metrics.upstream_failed(Kind::Hub);
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "no hub replica is reachable",
    )
}

fn too_large(limit: u64) -> Response<Body> {
    closing(error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!(
            "request body larger than {limit} bytes, the proxy's limit for /hub/ (--max-hub-body-bytes)"
        ),
    ))
}

/// Pass the upstream response back; for a 101, splice the two upgraded
/// connections.
fn finish(
    resp: Response<Incoming>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    drain: &Drain,
) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    if parts.status == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_side) = client_upgrade else {
            return error(
                StatusCode::BAD_GATEWAY,
                "upstream switched protocols unasked",
            );
        };
        let upstream_side = hyper::upgrade::on(Response::from_parts(parts.clone(), ()));
        let guard = drain.track();
        tokio::spawn(async move {
            let _guard = guard;
            match tokio::join!(client_side, upstream_side) {
                (Ok(c), Ok(u)) => {
                    let mut c = TokioIo::new(c);
                    let mut u = TokioIo::new(u);
                    if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
                        tracing::debug!(error = %e, "upgraded connection closed");
                    }
                }
                (c, u) => tracing::debug!(client = ?c.err(), upstream = ?u.err(), "upgrade failed"),
            }
        });
        return Response::from_parts(parts, full(Bytes::new()));
    }
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, body.map_err(BoxError::from).boxed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_as_data() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, x-private"),
            ("keep-alive", "timeout=5"),
            ("x-private", "secret"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("authorization", "token t"),
            ("cookie", "a=b"),
            ("content-type", "application/json"),
        ] {
            h.append(k, HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, vec!["authorization", "content-type", "cookie"]);
    }

    #[test]
    fn upgrade_detection_and_uris() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert!(!is_upgrade(&h), "no Upgrade header");
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&h));
        let uri: Uri = "/user/alice/api?x=1&y=%20".parse().expect("uri");
        let upstream = |base: &str, uri: &Uri| {
            crate::table::Target::new(base)
                .uri_for(uri)
                .map(|u| u.to_string())
        };
        assert_eq!(
            upstream("http://127.0.0.1:9000", &uri),
            Some("http://127.0.0.1:9000/user/alice/api?x=1&y=%20".into())
        );
        assert_eq!(
            upstream("127.0.0.1:8081/", &uri),
            Some("http://127.0.0.1:8081/user/alice/api?x=1&y=%20".into())
        );
        assert_eq!(
            upstream("http://10.0.0.5:8888/base/", &uri),
            Some("http://10.0.0.5:8888/base/user/alice/api?x=1&y=%20".into())
        );
        let root: Uri = "http://example.org".parse().expect("uri");
        assert_eq!(
            upstream("http://127.0.0.1:9000", &root),
            Some("http://127.0.0.1:9000/".into())
        );
        assert_eq!(upstream("not a target", &uri), None);
    }
}
