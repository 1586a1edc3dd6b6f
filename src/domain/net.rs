//! Address ranges (`[webhook] allow_private`), parsed once and compared by
//! value.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address range such as `10.0.0.0/8` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `addr/prefix` (or a bare address: a single host).
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let net: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an address range such as 10.0.0.0/8"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            p.trim()
                .parse::<u8>()
                .ok()
                .filter(|&n| n <= max)
                .ok_or_else(|| format!("{s:?}: the prefix must be 0-{max}"))?
        };
        Ok(Cidr { net, prefix })
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, unmap(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) as the IPv4 it carries.
pub fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The IPv4 addresses an IPv6 address carries and could reach, by the
/// standard ways of embedding one: IPv4-mapped (`::ffff:a.b.c.d`),
/// IPv4-compatible (`::a.b.c.d`, deprecated but still routed by some
/// stacks), NAT64 (`64:ff9b::a.b.c.d`, and the local-use `64:ff9b:1::/48`),
/// 6to4 (`2002:AABB:CCDD::/48`) and Teredo (`2001:0::/32`: the server, and
/// the client address stored inverted).
pub fn embedded_v4(v6: Ipv6Addr) -> Vec<Ipv4Addr> {
    let s = v6.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    let mut out = Vec::new();
    if let Some(a) = v6.to_ipv4_mapped() {
        out.push(a);
    }
    let low_zero = s[..6].iter().all(|&x| x == 0);
    if low_zero && (s[6] != 0 || s[7] > 1) {
        out.push(v4(s[6], s[7])); // IPv4-compatible (not :: or ::1)
    }
    if (s[0], s[1]) == (0x64, 0xff9b) {
        out.push(v4(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        out.push(v4(s[1], s[2]));
    }
    if (s[0], s[1]) == (0x2001, 0) {
        out.push(v4(s[2], s[3]));
        out.push(v4(!s[6], !s[7]));
    }
    out
}
