//! The real client address, and the forwarded headers a proxy passes on.
//!
//! Every hop appends the address it received a connection from to
//! `X-Forwarded-For`, so the list reads left to right from the client to the
//! last hop, and only entries added by hops we trust are true. The client is
//! therefore the first address, walking from the right (the TCP peer first),
//! that is not a trusted hop: what nginx's `real_ip_recursive`, Envoy's
//! `xff_num_trusted_hops` and JupyterHub's `trusted_downstream_ips` do. Every
//! `X-Forwarded-For` line is merged (a balancer may add its own line).
//! Entries left of the client are claims nobody vouches for: they are
//! dropped, so the first entry a server sees is the client.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static X_SCHEME: HeaderName = HeaderName::from_static("x-scheme");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// Entries of `X-Forwarded-For` looked at, at most: a longer chain is a
/// spoof or a loop, and its left part is ignored.
const MAX_HOPS: usize = 32;

/// The hops whose forwarded headers are believed: load balancers and
/// proxies in front of this process, as addresses, CIDR networks or host
/// names. Names (a container's service name, say) are resolved in the
/// background and again every [`RESOLVE_EVERY`]; until a name resolves it
/// trusts nothing.
#[derive(Clone, Debug, Default)]
pub struct TrustedHops {
    nets: Vec<IpNet>,
    names: Vec<String>,
    resolved: Arc<ArcSwap<Vec<IpAddr>>>,
}

/// How often host names in the trusted list are resolved again.
pub const RESOLVE_EVERY: Duration = Duration::from_secs(5);

impl PartialEq for TrustedHops {
    fn eq(&self, other: &TrustedHops) -> bool {
        self.nets == other.nets && self.names == other.names
    }
}

impl Eq for TrustedHops {}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("'{0}' is not an IP address, network or host name (examples: 10.0.0.7, 10.0.0.0/8, fd00::/8, lb)")]
pub struct BadHop(String);

/// A DNS name: labels of letters, digits and '-', dots between.
fn is_host_name(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && s.bytes().any(|b| b.is_ascii_alphabetic())
}

impl FromStr for TrustedHops {
    type Err = BadHop;

    /// Comma- or space-separated addresses, networks and host names.
    fn from_str(s: &str) -> Result<TrustedHops, BadHop> {
        let mut hops = TrustedHops::default();
        for item in s.split([',', ' ']).map(str::trim).filter(|i| !i.is_empty()) {
            if let Ok(n) = item.parse::<IpNet>() {
                hops.nets.push(n.trunc());
            } else if let Ok(ip) = item.parse::<IpAddr>() {
                hops.nets.push(IpNet::from(canonical(ip)));
            } else if is_host_name(item) {
                hops.names.push(item.to_ascii_lowercase());
            } else {
                return Err(BadHop(item.to_string()));
            }
        }
        Ok(hops)
    }
}

impl TrustedHops {
    pub fn new(nets: Vec<IpNet>) -> TrustedHops {
        TrustedHops {
            nets,
            ..TrustedHops::default()
        }
    }

    /// Loopback only: for processes whose proxies run on the same host.
    pub fn loopback() -> TrustedHops {
        TrustedHops::new(vec![
            "127.0.0.0/8".parse().expect("static net"),
            "::1/128".parse().expect("static net"),
        ])
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
            || (!self.names.is_empty() && self.resolved.load().contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty() && self.names.is_empty()
    }

    /// The host names in the list.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Resolve every name now; a name that does not resolve keeps the
    /// addresses it had. The addresses now trusted by name.
    pub async fn resolve(&self) -> Vec<IpAddr> {
        let before = self.resolved.load_full();
        let mut out: Vec<IpAddr> = Vec::new();
        for name in &self.names {
            match tokio::net::lookup_host((name.as_str(), 0)).await {
                Ok(addrs) => out.extend(addrs.map(|a| canonical(a.ip()))),
                Err(e) => {
                    tracing::debug!(%name, error = %e, "a trusted proxy name does not resolve (yet)");
                    // Keep what it resolved to before: a DNS hiccup must
                    // not untrust a live balancer.
                    out.extend(before.iter().copied());
                }
            }
        }
        out.sort();
        out.dedup();
        if out != *before {
            tracing::info!(names = ?self.names, addresses = ?out, "trusted proxies resolved");
            self.resolved.store(Arc::new(out.clone()));
        }
        out
    }

    /// Resolve the names now and every [`RESOLVE_EVERY`], in the background,
    /// for as long as the process runs (nothing to do without names).
    pub fn keep_resolved(&self) {
        if self.names.is_empty() {
            return;
        }
        let hops = self.clone();
        tokio::spawn(async move {
            loop {
                hops.resolve().await;
                tokio::time::sleep(RESOLVE_EVERY).await;
            }
        });
    }
}

/// IPv4-mapped IPv6 addresses compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Who sent a request, as far as can be told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Client {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The first untrusted hop from the right: the client.
    pub addr: IpAddr,
    /// Whether the TCP peer is a trusted hop, whose `X-Forwarded-Proto`
    /// and `-Host` are believed.
    pub peer_trusted: bool,
}

/// One `X-Forwarded-For` entry: an address, maybe with a port or brackets
/// (`[::1]:80`, `1.2.3.4:5`), which some balancers add.
fn parse_entry(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    let inner = s.strip_prefix('[').and_then(|r| r.strip_suffix(']'))?;
    inner.parse().ok()
}

/// Every `X-Forwarded-For` entry in order, all lines merged; `None` in
/// place of an entry that is not an address (`unknown`, garbage).
fn chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut out: Vec<Option<IpAddr>> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("garbage").split(','))
        .map(parse_entry)
        .collect();
    if out.len() > MAX_HOPS {
        out.drain(..out.len() - MAX_HOPS);
    }
    out
}

impl Client {
    /// Resolve the client of a request that came from `peer`.
    pub fn resolve(peer: SocketAddr, headers: &HeaderMap, trusted: &TrustedHops) -> Client {
        let peer_ip = canonical(peer.ip());
        let peer_trusted = trusted.contains(peer_ip);
        let mut addr = peer_ip;
        if peer_trusted {
            for entry in chain(headers).into_iter().rev() {
                match entry {
                    // Garbage from a trusted hop: stop at the last good one.
                    None => break,
                    Some(ip) => {
                        addr = canonical(ip);
                        if !trusted.contains(addr) {
                            break;
                        }
                    }
                }
            }
        }
        Client {
            peer,
            addr,
            peer_trusted,
        }
    }

    /// Rewrite the forwarded headers for the next hop, as a proxy: the
    /// `X-Forwarded-For` chain from the client on, plus the peer; scheme
    /// and host believed only from a trusted peer, else set from what this
    /// proxy saw; `X-Real-IP` is the client. `Forwarded` and `X-Scheme`,
    /// which nothing here vouches for, are removed.
    pub fn set_forwarded_headers(&self, headers: &mut HeaderMap, scheme: &'static str) {
        let mut kept: Vec<IpAddr> = Vec::new();
        if self.peer_trusted {
            // The part of the chain right of (and including) the client.
            let entries = chain(headers);
            let mut tail: Vec<IpAddr> = Vec::new();
            for entry in entries.into_iter().rev() {
                match entry {
                    None => break,
                    Some(ip) => {
                        tail.push(ip);
                        if canonical(ip) == self.addr {
                            break;
                        }
                    }
                }
            }
            tail.reverse();
            kept = tail;
        }
        // Written once into one buffer that becomes the header's bytes.
        let mut xff = String::with_capacity(16 * (kept.len() + 1));
        for ip in &kept {
            let _ = write!(xff, "{}, ", canonical(*ip));
        }
        let _ = write!(xff, "{}", canonical(self.peer.ip()));
        headers.remove(&X_FORWARDED_FOR);
        let xff = HeaderValue::from_maybe_shared(Bytes::from(xff)).ok();
        // Straight from the peer, the client is the whole chain: one value.
        let alone = kept.is_empty() && canonical(self.peer.ip()) == self.addr;
        let real_ip = match (&xff, alone) {
            (Some(v), true) => Some(v.clone()),
            _ => HeaderValue::from_maybe_shared(Bytes::from(self.addr.to_string())).ok(),
        };
        if let Some(v) = xff {
            headers.insert(X_FORWARDED_FOR.clone(), v);
        }
        if let Some(v) = real_ip {
            headers.insert(X_REAL_IP.clone(), v);
        }
        headers.remove(&FORWARDED);
        headers.remove(&X_SCHEME);
        let believe = self.peer_trusted;
        let proto_ok = believe
            && headers
                .get(&X_FORWARDED_PROTO)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| matches!(v.trim(), "http" | "https"));
        if !proto_ok {
            headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(scheme));
        }
        if !(believe && headers.contains_key(&X_FORWARDED_HOST)) {
            match headers.get(http::header::HOST).cloned() {
                Some(host) => {
                    headers.insert(X_FORWARDED_HOST.clone(), host);
                }
                None => {
                    headers.remove(&X_FORWARDED_HOST);
                }
            }
        }
        if !believe {
            headers.remove(&X_FORWARDED_PORT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    /// One case: the trusted list, the peer, the request's headers; the
    /// outcome is the client, and the headers passed on.
    fn check(trusted: &str, peer: &str, headers: &[(&str, &str)], expected: Expect) {
        let trusted: TrustedHops = trusted.parse().expect("trusted");
        let peer: SocketAddr = peer.parse().expect("peer");
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        let client = Client::resolve(peer, &h, &trusted);
        client.set_forwarded_headers(&mut h, "http");
        let mut out = format!(
            "client={} trusted_peer={}\n",
            client.addr, client.peer_trusted
        );
        let mut names: Vec<_> = h.keys().map(|k| k.as_str().to_string()).collect();
        names.sort();
        names.dedup();
        for n in names {
            for v in h.get_all(n.as_str()) {
                out.push_str(&format!("{n}: {}\n", v.to_str().unwrap_or("?")));
            }
        }
        expected.assert_eq(&out);
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        check(
            "10.0.0.0/8",
            "203.0.113.9:5000",
            &[
                ("host", "hub.example"),
                ("x-forwarded-for", "1.1.1.1"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "evil.example"),
                ("x-real-ip", "1.1.1.1"),
                ("forwarded", "for=1.1.1.1"),
            ],
            expect![[r#"
                client=203.0.113.9 trusted_peer=false
                host: hub.example
                x-forwarded-for: 203.0.113.9
                x-forwarded-host: hub.example
                x-forwarded-proto: http
                x-real-ip: 203.0.113.9
            "#]],
        );
    }

    #[test]
    fn behind_a_trusted_balancer_every_line_is_merged_and_the_rightmost_untrusted_wins() {
        // The client spoofed 6.6.6.6; the balancer appended the client's
        // real address on a second line.
        check(
            "10.0.0.0/8",
            "10.0.0.5:4000",
            &[
                ("host", "hub.example"),
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-for", "198.51.100.7"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "hub.example"),
            ],
            expect![[r#"
                client=198.51.100.7 trusted_peer=true
                host: hub.example
                x-forwarded-for: 198.51.100.7, 10.0.0.5
                x-forwarded-host: hub.example
                x-forwarded-proto: https
                x-real-ip: 198.51.100.7
            "#]],
        );
    }

    #[test]
    fn several_trusted_hops_are_skipped() {
        check(
            "10.0.0.0/8, 192.168.1.1",
            "10.0.0.5:4000",
            &[("x-forwarded-for", "198.51.100.7, 192.168.1.1 ,10.1.1.1")],
            expect![[r#"
                client=198.51.100.7 trusted_peer=true
                x-forwarded-for: 198.51.100.7, 192.168.1.1, 10.1.1.1, 10.0.0.5
                x-forwarded-proto: http
                x-real-ip: 198.51.100.7
            "#]],
        );
    }

    #[test]
    fn garbage_and_ports_in_the_chain() {
        // Garbage stops the walk at the last good entry (a trusted hop).
        check(
            "10.0.0.0/8",
            "10.0.0.5:4000",
            &[("x-forwarded-for", "198.51.100.7, unknown, 10.0.0.9")],
            expect![[r#"
                client=10.0.0.9 trusted_peer=true
                x-forwarded-for: 10.0.0.9, 10.0.0.5
                x-forwarded-proto: http
                x-real-ip: 10.0.0.9
            "#]],
        );
        check(
            "10.0.0.0/8",
            "10.0.0.5:4000",
            &[("x-forwarded-for", "[2001:db8::1]:443, 198.51.100.7:5555")],
            expect![[r#"
                client=198.51.100.7 trusted_peer=true
                x-forwarded-for: 198.51.100.7, 10.0.0.5
                x-forwarded-proto: http
                x-real-ip: 198.51.100.7
            "#]],
        );
    }

    #[test]
    fn a_trusted_peer_with_no_chain_is_the_client() {
        check(
            "127.0.0.1",
            "127.0.0.1:4000",
            &[("x-forwarded-proto", "gopher")],
            expect![[r#"
                client=127.0.0.1 trusted_peer=true
                x-forwarded-for: 127.0.0.1
                x-forwarded-proto: http
                x-real-ip: 127.0.0.1
            "#]],
        );
    }

    #[test]
    fn mapped_ipv6_and_networks() {
        let t: TrustedHops = "10.0.0.0/8 fd00::/8".parse().expect("parse");
        assert!(t.contains("::ffff:10.1.2.3".parse().expect("ip")));
        assert!(t.contains("fd12::1".parse().expect("ip")));
        assert!(!t.contains("11.0.0.1".parse().expect("ip")));
        assert_eq!(
            "10.0.0.0/8, bad/name!".parse::<TrustedHops>(),
            Err(BadHop("bad/name!".into()))
        );
        assert_eq!("-lb".parse::<TrustedHops>(), Err(BadHop("-lb".into())));
        let named: TrustedHops = "proxy1, LB.internal 10.0.0.1".parse().expect("names");
        assert_eq!(named.names(), ["proxy1", "lb.internal"]);
        assert!("".parse::<TrustedHops>().expect("empty").is_empty());
    }

    #[tokio::test]
    async fn names_are_trusted_once_resolved() {
        let t: TrustedHops = "localhost".parse().expect("parse");
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        assert!(
            !t.contains(ip),
            "nothing is trusted before the name resolves"
        );
        let got = t.resolve().await;
        assert!(got.contains(&ip), "{got:?}");
        assert!(t.contains(ip));
        assert!(!t.contains("10.1.1.1".parse().expect("ip")));
        // Clones share the resolved set (the edge keeps one, the task another).
        let clone = t.clone();
        assert!(clone.contains(ip));
        let unknown: TrustedHops = "no-such-host.invalid".parse().expect("parse");
        assert!(unknown.resolve().await.is_empty());
    }

    #[test]
    fn a_very_long_chain_is_cut() {
        let long = vec!["10.0.0.1"; 100].join(",");
        let h = {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-for", HeaderValue::from_str(&long).expect("v"));
            h
        };
        assert_eq!(chain(&h).len(), MAX_HOPS);
    }
}
