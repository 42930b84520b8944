//! Rate limits on the public listener: per client address and per
//! endpoint, each a token bucket (GCRA, `governor`), answering 429 with
//! `Retry-After` — Jira retries a 429 later — instead of letting one flood
//! fill the queue for everyone.
//!
//! The client address is the connection's peer, unless the peer is one of
//! the trusted proxies (`--trusted-proxy`): then it is the right-most address
//! of `X-Forwarded-For` that is not itself a trusted proxy. A header from
//! anyone else is ignored, so a client cannot pick its own bucket. IPv6
//! clients share a bucket per /64 (one host usually holds a whole /64).

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// A sustained rate and the burst allowed above it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

impl Rate {
    /// `None` when `per_second` is 0 (the limit is off); a burst of 0 means
    /// the rate itself.
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        let per_second = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(burst).unwrap_or(per_second);
        Some(Self { per_second, burst })
    }

    fn quota(self) -> Quota {
        Quota::per_second(self.per_second).allow_burst(self.burst)
    }
}

/// What the guard enforces (`relay serve --client-rate`, `--client-burst`,
/// `--endpoint-rate`, `--endpoint-burst`, `--trusted-proxy`).
#[derive(Clone, Debug)]
pub struct GuardSettings {
    pub per_client: Option<Rate>,
    pub per_endpoint: Option<Rate>,
    /// Whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The configured endpoints: only these get a bucket of their own (an
    /// unknown name is answered 404 by the intake, within the client's rate).
    pub endpoints: Vec<String>,
}

impl Default for GuardSettings {
    fn default() -> Self {
        Self {
            per_client: Rate::new(50, 200),
            per_endpoint: Rate::new(500, 1000),
            trusted_proxies: Vec::new(),
            endpoints: Vec::new(),
        }
    }
}

/// A request the guard turned away.
pub struct Refused {
    pub reason: &'static str,
    /// Who (for the log): the client address and, for an endpoint, its name.
    pub client: String,
    pub retry_after: Duration,
}

impl Refused {
    /// 429 with `Retry-After` in whole seconds (at least 1).
    pub fn answer(&self) -> http::Response<axum::body::Body> {
        let secs = self.retry_after.as_secs_f64().ceil().max(1.0) as u64;
        http::Response::builder()
            .status(http::StatusCode::TOO_MANY_REQUESTS)
            .header(http::header::RETRY_AFTER, secs.to_string())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from(
                r#"{"error":"too many requests; retry after the time in Retry-After"}"#,
            ))
            .unwrap_or_else(|_| http::Response::new(axum::body::Body::empty()))
    }
}

/// The limiters, shared by every connection.
#[derive(Clone)]
pub struct Guard {
    clients: Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>,
    endpoints: Option<Arc<DefaultKeyedRateLimiter<String>>>,
    known: Arc<HashSet<String>>,
    trusted: Arc<Vec<ipnet::IpNet>>,
}

impl Guard {
    pub fn new(s: &GuardSettings) -> Self {
        Self {
            clients: s
                .per_client
                .map(|r| Arc::new(governor::RateLimiter::keyed(r.quota()))),
            endpoints: s
                .per_endpoint
                .map(|r| Arc::new(governor::RateLimiter::keyed(r.quota()))),
            known: Arc::new(s.endpoints.iter().cloned().collect()),
            trusted: Arc::new(s.trusted_proxies.clone()),
        }
    }

    /// Takes a token from the client's bucket, then from the endpoint's.
    pub fn admit<B>(&self, peer: IpAddr, req: &http::Request<B>) -> Result<(), Refused> {
        let client = self.client_of(peer, req.headers());
        if let Some(l) = &self.clients {
            if let Err(wait) = l.check_key(&bucket(client)) {
                return Err(Refused {
                    reason: "rate_limited_client",
                    client: client.to_string(),
                    retry_after: wait.wait_time_from(DefaultClock::default().now()),
                });
            }
        }
        if let (Some(l), Some(name)) = (&self.endpoints, endpoint_of(req.uri().path())) {
            if self.known.contains(name) {
                if let Err(wait) = l.check_key(&name.to_owned()) {
                    return Err(Refused {
                        reason: "rate_limited_endpoint",
                        client: format!("{client} → endpoint {name}"),
                        retry_after: wait.wait_time_from(DefaultClock::default().now()),
                    });
                }
            }
        }
        Ok(())
    }

    /// The client's address: the peer, or what a trusted proxy says.
    pub fn client_of(&self, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.is_trusted(peer) {
            return peer;
        }
        let mut client = peer;
        // Right to left: the nearest hop first; every hop until the first
        // untrusted one was added by a proxy of ours.
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop) else {
                // Garbage a proxy of ours did not write: stop at what we know.
                return client;
            };
            client = ip;
            if !self.is_trusted(ip) {
                return ip;
            }
        }
        client
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// Forgets buckets that are full again (idle clients).
    pub fn prune(&self) {
        if let Some(l) = &self.clients {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.endpoints {
            l.retain_recent();
        }
    }
}

/// Prunes the guard's buckets every `every`, forever.
pub async fn prune_every(guard: Guard, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        guard.prune();
    }
}

/// `/webhooks/{name}` → `name`.
fn endpoint_of(path: &str) -> Option<&str> {
    let name = path.strip_prefix("/webhooks/")?;
    (!name.is_empty() && !name.contains('/')).then_some(name)
}

/// An `X-Forwarded-For` entry: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or
/// `[2001:db8::1]:5678`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = hop.parse::<std::net::SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    None
}

/// The bucket a client shares: its IPv4 address, or its IPv6 /64.
fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(trusted: &[&str]) -> Guard {
        Guard::new(&GuardSettings {
            per_client: Rate::new(1, 2),
            per_endpoint: Rate::new(1, 3),
            trusted_proxies: trusted.iter().map(|t| t.parse().unwrap()).collect(),
            endpoints: vec!["jira".into()],
        })
    }

    fn xff(v: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert("x-forwarded-for", v.parse().unwrap());
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let g = guard(&["10.0.0.0/8"]);
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        // a stranger cannot choose its bucket
        assert_eq!(g.client_of(stranger, &xff("198.51.100.1")), stranger);
        // a trusted proxy names the client; hops it added are skipped
        assert_eq!(
            g.client_of(proxy, &xff("198.51.100.1, 203.0.113.7, 10.0.0.5")),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            g.client_of(proxy, &xff("[2001:db8::1]:443")),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        // no header, or garbage: the proxy itself
        assert_eq!(g.client_of(proxy, &http::HeaderMap::new()), proxy);
        assert_eq!(g.client_of(proxy, &xff("unknown")), proxy);
        // an IPv4-mapped peer is the IPv4 address
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(
            g.client_of(mapped, &xff("192.0.2.1")),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn a_client_over_its_burst_waits_while_another_is_served() {
        let g = guard(&[]);
        let req = |path: &str| http::Request::post(path).body(()).unwrap();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(g.admit(a, &req("/webhooks/jira")).is_ok());
        assert!(g.admit(a, &req("/webhooks/jira")).is_ok());
        let refused = g.admit(a, &req("/webhooks/jira")).err().unwrap();
        assert_eq!(refused.reason, "rate_limited_client");
        assert!(refused.retry_after > Duration::ZERO);
        assert_eq!(refused.answer().headers()[http::header::RETRY_AFTER], "1");
        assert!(g.admit(b, &req("/webhooks/jira")).is_ok());
        // the endpoint's burst (3) is spent by a and b together
        let c: IpAddr = "192.0.2.3".parse().unwrap();
        assert_eq!(
            g.admit(c, &req("/webhooks/jira")).err().unwrap().reason,
            "rate_limited_endpoint"
        );
        // unknown endpoints get no bucket of their own
        assert!(g.admit(c, &req("/webhooks/nope")).is_ok());
        // one IPv6 /64 is one client
        let v6a: IpAddr = "2001:db8:1:2::a".parse().unwrap();
        let v6b: IpAddr = "2001:db8:1:2::b".parse().unwrap();
        assert!(g.admit(v6a, &req("/health")).is_ok());
        assert!(g.admit(v6b, &req("/health")).is_ok());
        assert_eq!(
            g.admit(v6a, &req("/health")).err().unwrap().reason,
            "rate_limited_client"
        );
    }
}
