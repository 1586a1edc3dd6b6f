//! Outbound safety for webhooks: a callback URL may not reach loopback,
//! link-local, private or other internal addresses unless the operator
//! allowlists the range (`[webhook] allow_private`), and never the daemon's
//! own API port. The check runs on the addresses a name resolves to, inside
//! the HTTP client's resolver, so the address checked is the address
//! connected to (no second lookup a rebinding DNS server could answer
//! differently). IP literals, which skip the resolver, are checked before
//! the request. Redirects are never followed, so a 3xx cannot lead inside.
//! IPv6 addresses that embed an IPv4 one (mapped, compatible, NAT64, 6to4,
//! Teredo) are judged by the IPv4 they carry. The own-API rule also holds
//! for names: a request to a name on the API's port is resolved first, any
//! local address refuses it, and it is then sent to exactly the addresses
//! checked (see `webhook.rs`), so no second lookup can lead elsewhere.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

pub use crate::domain::Cidr;
use crate::domain::{embedded_v4, unmap};

/// Why an address counts as internal, if it does.
pub fn internal(ip: IpAddr) -> Option<&'static str> {
    match unmap(ip) {
        IpAddr::V4(a) => internal_v4(a),
        IpAddr::V6(a) => internal_v6(a).or_else(|| {
            embedded_v4(a)
                .into_iter()
                .find_map(internal_v4)
                .map(|_| "IPv6-embedded internal IPv4")
        }),
    }
}

/// Whether an address is this machine (loopback or unspecified), directly
/// or through an embedded IPv4.
fn is_local(ip: IpAddr) -> bool {
    let v4_local = |a: Ipv4Addr| a.is_loopback() || a.is_unspecified();
    match unmap(ip) {
        IpAddr::V4(a) => v4_local(a),
        IpAddr::V6(a) => {
            a.is_loopback() || a.is_unspecified() || embedded_v4(a).into_iter().any(v4_local)
        }
    }
}

/// A host name as compared: lower case, without the root's trailing dot.
fn normal_host(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn internal_v4(a: Ipv4Addr) -> Option<&'static str> {
    let o = a.octets();
    if a.is_loopback() {
        Some("loopback")
    } else if a.is_unspecified() || o[0] == 0 {
        Some("unspecified")
    } else if a.is_link_local() {
        Some("link-local (cloud metadata lives here)")
    } else if a.is_private() {
        Some("private")
    } else if o[0] == 100 && (64..128).contains(&o[1]) {
        Some("carrier-grade NAT")
    } else if a.is_multicast() || a.is_broadcast() || o[0] >= 240 {
        Some("multicast, broadcast or reserved")
    } else {
        None
    }
}

fn internal_v6(a: Ipv6Addr) -> Option<&'static str> {
    let s = a.segments();
    if a.is_loopback() {
        Some("loopback")
    } else if a.is_unspecified() {
        Some("unspecified")
    } else if s[0] & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if s[0] & 0xfe00 == 0xfc00 {
        Some("unique local (private)")
    } else if a.is_multicast() {
        Some("multicast")
    } else {
        None
    }
}

/// The outbound policy.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    /// Internal ranges the operator allows.
    pub allow: Vec<Cidr>,
    /// The daemon's own API port, never a target on a local address.
    pub api_port: Option<u16>,
}

impl Guard {
    /// Whether a webhook may connect to `ip` (port unknown: the resolver).
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), String> {
        match internal(ip) {
            Some(kind) if !self.allow.iter().any(|c| c.contains(ip)) => Err(format!(
                "{ip} is a {kind} address; allow its range in [webhook] allow_private if it is meant"
            )),
            _ => Ok(()),
        }
    }

    /// Whether a webhook may connect to `addr`.
    pub fn check(&self, addr: SocketAddr) -> Result<(), String> {
        self.check_ip(addr.ip())?;
        if is_local(addr.ip()) && Some(addr.port()) == self.api_port {
            return Err(format!("{addr} is sightline's own API"));
        }
        Ok(())
    }

    /// Whether `url`'s host is a name aimed at the API's port: such a
    /// request must be resolved and pinned by the caller (its port is not
    /// known to the resolver).
    pub fn names_api_port(&self, url: &reqwest::Url) -> bool {
        matches!(url.host(), Some(url::Host::Domain(_)))
            && self.api_port.is_some()
            && url.port_or_known_default() == self.api_port
    }

    /// The check for a URL whose host is an IP literal; `None` for names
    /// (the resolver checks those).
    pub fn check_url(&self, url: &reqwest::Url) -> Option<Result<(), String>> {
        let port = url.port_or_known_default().unwrap_or(0);
        let ip = match url.host()? {
            url::Host::Ipv4(a) => IpAddr::V4(a),
            url::Host::Ipv6(a) => IpAddr::V6(a),
            url::Host::Domain(d) => {
                // A name that is the loopback by definition (with or
                // without the root's trailing dot).
                let d = normal_host(d);
                if d == "localhost" || d.ends_with(".localhost") {
                    IpAddr::V4(Ipv4Addr::LOCALHOST)
                } else {
                    return None;
                }
            }
        };
        Some(self.check(SocketAddr::new(ip, port)))
    }
}

/// The HTTP client's resolver: the `hosts` table (a seam for tests, as
/// /etc/hosts is for the system), else the system's lookup; then the guard
/// on every address. A name with no allowed address fails to resolve.
pub struct Resolver {
    pub guard: Arc<Guard>,
    pub hosts: Arc<HashMap<String, Vec<IpAddr>>>,
}

impl Resolver {
    /// The system's lookup, checked by `guard`.
    pub fn new(guard: Arc<Guard>) -> Resolver {
        Resolver {
            guard,
            hosts: Arc::default(),
        }
    }

    /// The addresses of `host` on `port`: the hosts table, else the system.
    pub async fn lookup(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        match self.hosts.get(&normal_host(host)) {
            Some(ips) => Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect()),
            None => Ok(tokio::net::lookup_host((host, port)).await?.collect()),
        }
    }
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let this = Resolver {
            guard: Arc::clone(&self.guard),
            hosts: Arc::clone(&self.hosts),
        };
        Box::pin(async move {
            let host = name.as_str().to_string();
            let guard = Arc::clone(&this.guard);
            let addrs = this.lookup(&host, 0).await?;
            let mut refused = Vec::new();
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| match guard.check_ip(a.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        refused.push(e);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let why = refused
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "no address".into());
                return Err(format!("{host} refused: {why}").into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn internal_ranges_are_refused_unless_allowed() {
        let g = Guard::default();
        for bad in [
            "127.0.0.1",
            "::1",
            "169.254.169.254",
            "10.1.2.3",
            "172.20.0.1",
            "192.168.1.20",
            "100.64.0.1",
            "0.0.0.0",
            "fe80::1",
            "fd12::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
            // IPv6 forms that carry an internal IPv4.
            "::127.0.0.1",
            "::10.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "2002:c0a8:0101::1",
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
        ] {
            assert!(g.check_ip(ip(bad)).is_err(), "{bad} refused");
        }
        for good in [
            "93.184.216.34",
            "2606:2800:220:1::1",
            "172.32.0.1",
            "100.128.0.1",
            // The same forms carrying a public IPv4.
            "64:ff9b::5db8:d822",
            "2002:5db8:d822::1",
        ] {
            assert!(g.check_ip(ip(good)).is_ok(), "{good} allowed");
        }
        let g = Guard {
            allow: vec![Cidr::parse("192.168.1.0/24").expect("cidr")],
            ..Guard::default()
        };
        assert!(g.check_ip(ip("192.168.1.20")).is_ok());
        assert!(g.check_ip(ip("192.168.2.20")).is_err());
    }

    #[test]
    fn the_api_port_is_never_a_target() {
        let g = Guard {
            allow: vec![Cidr::parse("127.0.0.0/8").expect("cidr")],
            api_port: Some(8420),
        };
        assert!(g.check("127.0.0.1:9000".parse().expect("addr")).is_ok());
        assert!(g.check("127.0.0.1:8420".parse().expect("addr")).is_err());
        let url = reqwest::Url::parse("http://localhost:8420/x").expect("url");
        assert!(g.check_url(&url).is_some_and(|r| r.is_err()));
        let url = reqwest::Url::parse("http://example.com:8420/x").expect("url");
        assert!(
            g.check_url(&url).is_none(),
            "names are left to the resolver"
        );
    }

    #[test]
    fn ranges_parse_and_match() {
        assert!(Cidr::parse("10.0.0.0/8")
            .expect("cidr")
            .contains(ip("10.255.0.1")));
        assert!(Cidr::parse("fd00::/8")
            .expect("cidr")
            .contains(ip("fd12::1")));
        assert!(Cidr::parse("0.0.0.0/0")
            .expect("cidr")
            .contains(ip("8.8.8.8")));
        assert!(Cidr::parse("10.0.0.1")
            .expect("cidr")
            .contains(ip("10.0.0.1")));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("ten/8").is_err());
    }
}
