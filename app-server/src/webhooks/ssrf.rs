//! Where a webhook may be delivered: the address classifier, and the DNS resolver that lets
//! a delivery connect only to addresses the classifier allows.
//!
//! A webhook URL is typed by a user and fetched by the server, so without a guard it is a
//! way into whatever the server can reach and the user cannot: a database on loopback, an
//! admin panel on the private network, the cloud's metadata service and the credentials it
//! hands out (server-side request forgery, OWASP API7:2023). The guard is on the address the
//! connection is made to, not on the name: [`Reach::check`] decides on an [`IpAddr`], and
//! [`CheckedResolver`] resolves a name once, drops every address the check refuses and hands
//! the HTTP client only what is left, so a name that answers with a public address when the
//! URL is registered and with a private one at delivery (DNS rebinding) reaches nothing. A URL
//! whose host is an IP literal never asks the resolver: the delivery checks it itself.
//!
//! Classes follow the IANA special-purpose registries (RFC 6890 and its updates). Internal
//! classes (loopback, private, link-local, shared CGNAT) are allowed by
//! `--webhooks-allow-private`; the rest are never a receiver (metadata services,
//! unspecified, multicast, broadcast, documentation, benchmarking, reserved), switch or not.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::{Ipv4Net, Ipv6Net};

/// Why an address is not a public unicast address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Loopback,
    /// RFC 1918 and, for IPv6, unique local addresses (RFC 4193) and local-use NAT64.
    Private,
    LinkLocal,
    /// 100.64.0.0/10, the carrier-grade NAT space (RFC 6598).
    SharedCgnat,
    /// A cloud's instance metadata service: refused even with `--webhooks-allow-private`.
    Metadata,
    Unspecified,
    Multicast,
    Broadcast,
    Documentation,
    Benchmarking,
    /// Reserved, deprecated or special-purpose space that no receiver lives in.
    Reserved,
}

impl Kind {
    /// Reachable inside this host or site only: allowed with `--webhooks-allow-private`.
    pub fn internal(self) -> bool {
        matches!(
            self,
            Kind::Loopback | Kind::Private | Kind::LinkLocal | Kind::SharedCgnat
        )
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::Loopback => "a loopback address",
            Kind::Private => "a private address",
            Kind::LinkLocal => "a link-local address",
            Kind::SharedCgnat => "a carrier-grade NAT address (100.64.0.0/10)",
            Kind::Metadata => "a cloud metadata service",
            Kind::Unspecified => "an unspecified address",
            Kind::Multicast => "a multicast address",
            Kind::Broadcast => "the broadcast address",
            Kind::Documentation => "a documentation address",
            Kind::Benchmarking => "a benchmarking address",
            Kind::Reserved => "a reserved address",
        }
    }
}

/// Instance metadata services: AWS, GCP, Azure and OpenStack (169.254.169.254), AWS ECS task
/// metadata (169.254.170.2), Alibaba (100.100.100.200), Oracle (192.0.0.192), Azure's
/// WireServer (168.63.129.16, a public address that only answers inside Azure), and AWS's
/// IPv6 endpoint (fd00:ec2::254).
const METADATA_V4: [Ipv4Addr; 5] = [
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(169, 254, 170, 2),
    Ipv4Addr::new(100, 100, 100, 200),
    Ipv4Addr::new(192, 0, 0, 192),
    Ipv4Addr::new(168, 63, 129, 16),
];
const METADATA_V6: [Ipv6Addr; 1] = [Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)];

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)
}

#[allow(clippy::too_many_arguments)]
const fn v6(a: u16, b: u16, c: u16, d: u16, e: u16, f: u16, len: u8) -> Ipv6Net {
    Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, e, f, 0, 0), len)
}

/// IPv4 special-purpose blocks, most specific first.
const SPECIAL_V4: [(Ipv4Net, Kind); 16] = [
    (v4(255, 255, 255, 255, 32), Kind::Broadcast),
    (v4(0, 0, 0, 0, 8), Kind::Unspecified),
    (v4(10, 0, 0, 0, 8), Kind::Private),
    (v4(100, 64, 0, 0, 10), Kind::SharedCgnat),
    (v4(127, 0, 0, 0, 8), Kind::Loopback),
    (v4(169, 254, 0, 0, 16), Kind::LinkLocal),
    (v4(172, 16, 0, 0, 12), Kind::Private),
    (v4(192, 0, 0, 0, 24), Kind::Reserved),
    (v4(192, 0, 2, 0, 24), Kind::Documentation),
    (v4(192, 88, 99, 0, 24), Kind::Reserved),
    (v4(192, 168, 0, 0, 16), Kind::Private),
    (v4(198, 18, 0, 0, 15), Kind::Benchmarking),
    (v4(198, 51, 100, 0, 24), Kind::Documentation),
    (v4(203, 0, 113, 0, 24), Kind::Documentation),
    (v4(224, 0, 0, 0, 4), Kind::Multicast),
    (v4(240, 0, 0, 0, 4), Kind::Reserved),
];

/// IPv6 special-purpose blocks that embed no IPv4 address.
const SPECIAL_V6: [(Ipv6Net, Kind); 11] = [
    (v6(0x64, 0xff9b, 1, 0, 0, 0, 48), Kind::Private), // local-use NAT64 (RFC 8215)
    (v6(0x100, 0, 0, 0, 0, 0, 64), Kind::Reserved),    // discard-only (RFC 6666)
    (v6(0x2001, 0, 0, 0, 0, 0, 32), Kind::Reserved),   // Teredo tunnels
    (v6(0x2001, 2, 0, 0, 0, 0, 48), Kind::Benchmarking),
    (v6(0x2001, 0x10, 0, 0, 0, 0, 28), Kind::Reserved), // ORCHID, ORCHIDv2
    (v6(0x2001, 0x20, 0, 0, 0, 0, 28), Kind::Reserved),
    (v6(0x2001, 0xdb8, 0, 0, 0, 0, 32), Kind::Documentation),
    (v6(0x3fff, 0, 0, 0, 0, 0, 20), Kind::Documentation), // RFC 9637
    (v6(0xfc00, 0, 0, 0, 0, 0, 7), Kind::Private),        // unique local (RFC 4193)
    (v6(0xfe80, 0, 0, 0, 0, 0, 10), Kind::LinkLocal),
    (v6(0xfec0, 0, 0, 0, 0, 0, 10), Kind::Reserved), // site-local, deprecated
];

/// What kind of special address `ip` is; `None` for a public unicast address. An IPv6
/// address that carries an IPv4 one (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64
/// `64:ff9b::a.b.c.d`, 6to4 `2002:aabb:ccdd::`) is what its IPv4 address is, since that is
/// where a connection to it ends up.
pub fn classify(ip: IpAddr) -> Option<Kind> {
    match ip {
        IpAddr::V4(ip) => classify_v4(ip),
        IpAddr::V6(ip) => classify_v6(ip),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Kind> {
    if METADATA_V4.contains(&ip) {
        return Some(Kind::Metadata);
    }
    SPECIAL_V4
        .iter()
        .find(|(net, _)| net.contains(&ip))
        .map(|(_, kind)| *kind)
}

fn classify_v6(ip: Ipv6Addr) -> Option<Kind> {
    if ip.is_unspecified() {
        return Some(Kind::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Kind::Loopback);
    }
    if METADATA_V6.contains(&ip) {
        return Some(Kind::Metadata);
    }
    if ip.is_multicast() {
        return Some(Kind::Multicast);
    }
    if let Some(embedded) = embedded_v4(ip) {
        return classify_v4(embedded);
    }
    SPECIAL_V6
        .iter()
        .find(|(net, _)| net.contains(&ip))
        .map(|(_, kind)| *kind)
}

/// The IPv4 address an IPv6 address stands for, if it is one of the forms that carry one.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let [a, b, c, d] = ip.octets()[12..] else {
        return None;
    };
    let low = Ipv4Addr::new(a, b, c, d);
    match s {
        // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated)
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0, 0, _, _] => Some(low),
        // 64:ff9b::a.b.c.d, the well-known NAT64 prefix (RFC 6052)
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        // 2002:aabb:ccdd::/48, 6to4 (RFC 3056)
        [0x2002, hi, lo, ..] => {
            let [a, b] = hi.to_be_bytes();
            let [c, d] = lo.to_be_bytes();
            Some(Ipv4Addr::new(a, b, c, d))
        }
        _ => None,
    }
}

/// Which addresses deliveries may reach: public ones, and internal ones with
/// `--webhooks-allow-private`.
#[derive(Debug, Clone, Copy)]
pub struct Reach {
    pub allow_private: bool,
}

/// An address a webhook may not be delivered to, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub ip: IpAddr,
    pub kind: Kind,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is {}", self.ip, self.kind.describe())?;
        if self.kind.internal() {
            f.write_str(" (allowed only with --webhooks-allow-private)")?;
        }
        Ok(())
    }
}

impl std::error::Error for Refused {}

impl Reach {
    /// Whether a delivery may connect to `ip`.
    pub fn check(self, ip: IpAddr) -> Result<(), Refused> {
        match classify(ip) {
            None => Ok(()),
            Some(kind) if kind.internal() && self.allow_private => Ok(()),
            Some(kind) => Err(Refused { ip, kind }),
        }
    }

    /// The addresses of `addrs` a delivery may connect to; `Err` with the first refusal when
    /// none is left.
    pub fn filter(
        self,
        addrs: impl IntoIterator<Item = SocketAddr>,
    ) -> Result<Vec<SocketAddr>, ResolveError> {
        let mut allowed = Vec::new();
        let mut first_refusal = None;
        for addr in addrs {
            match self.check(addr.ip()) {
                Ok(()) => allowed.push(addr),
                Err(refused) => {
                    first_refusal.get_or_insert(refused);
                }
            }
        }
        match (allowed.is_empty(), first_refusal) {
            (false, _) => Ok(allowed),
            (true, Some(refused)) => Err(ResolveError::Refused(refused)),
            (true, None) => Err(ResolveError::NoAddress),
        }
    }
}

/// Why a webhook's host gave no address to connect to.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{0}")]
    Refused(Refused),
    #[error("the host has no address")]
    NoAddress,
    #[error("the host does not resolve: {0}")]
    Lookup(std::io::Error),
}

/// The addresses of `host` (a name, or an IP literal with or without brackets) for `port`.
pub async fn lookup(host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
    let literal = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(ResolveError::Lookup)?
        .collect();
    if addrs.is_empty() {
        return Err(ResolveError::NoAddress);
    }
    Ok(addrs)
}

/// [`lookup`], keeping what `reach` allows.
pub async fn resolve(reach: Reach, host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
    reach.filter(lookup(host, port).await?)
}

/// The delivery client's resolver: the system's, with every address [`Reach`] refuses
/// removed, so the connection can only be made to an address that was checked.
pub struct CheckedResolver {
    pub reach: Reach,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let reach = self.reach;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: reqwest puts the URL's port in.
            let addrs = resolve(reach, &host, 0).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(ip: &str) -> Option<Kind> {
        classify(ip.parse().expect("an address"))
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.215.14",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(kind(ip), None, "{ip}");
        }
    }

    #[test]
    fn each_special_range_has_its_kind() {
        use Kind::*;
        for (ip, expected) in [
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("::1", Loopback),
            ("10.0.0.1", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("fc00::1", Private),
            ("fdff:ffff::1", Private),
            ("64:ff9b:1::a00:1", Private),
            ("169.254.1.1", LinkLocal),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("100.64.0.1", SharedCgnat),
            ("100.127.255.255", SharedCgnat),
            ("169.254.169.254", Metadata),
            ("169.254.170.2", Metadata),
            ("100.100.100.200", Metadata),
            ("192.0.0.192", Metadata),
            ("168.63.129.16", Metadata),
            ("fd00:ec2::254", Metadata),
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("::", Unspecified),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("ff02::1", Multicast),
            ("255.255.255.255", Broadcast),
            ("240.0.0.1", Reserved),
            ("192.0.2.1", Documentation),
            ("198.51.100.7", Documentation),
            ("203.0.113.9", Documentation),
            ("2001:db8::1", Documentation),
            ("3fff::1", Documentation),
            ("198.18.0.1", Benchmarking),
            ("198.19.255.255", Benchmarking),
            ("2001:2::1", Benchmarking),
            ("192.0.0.1", Reserved),
            ("192.88.99.1", Reserved),
            ("100::1", Reserved),
            ("2001::1", Reserved),
            ("fec0::1", Reserved),
        ] {
            assert_eq!(kind(ip), Some(expected), "{ip}");
        }
    }

    #[test]
    fn ipv6_forms_of_an_ipv4_address_are_what_it_is() {
        use Kind::*;
        for (ip, expected) in [
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:7f00:1", Loopback),
            ("::127.0.0.1", Loopback),
            ("::ffff:10.1.2.3", Private),
            ("::ffff:169.254.169.254", Metadata),
            ("::ffff:0.0.0.0", Unspecified),
            ("64:ff9b::127.0.0.1", Loopback),
            ("64:ff9b::10.0.0.1", Private),
            ("64:ff9b::a9fe:a9fe", Metadata),
            ("64:ff9b::192.168.0.1", Private),
            ("2002:7f00:1::", Loopback),
            ("2002:c0a8:101::1", Private),
            ("2002:a9fe:a9fe::", Metadata),
        ] {
            assert_eq!(kind(ip), Some(expected), "{ip}");
        }
    }

    #[test]
    fn the_switch_opens_internal_addresses_only() {
        let strict = Reach {
            allow_private: false,
        };
        let open = Reach {
            allow_private: true,
        };
        for ip in [
            "127.0.0.1",
            "::1",
            "10.0.0.1",
            "fd12::1",
            "169.254.3.4",
            "100.64.1.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(strict.check(ip).is_err(), "{ip}");
            assert!(open.check(ip).is_ok(), "{ip}");
        }
        for ip in [
            "169.254.169.254",
            "fd00:ec2::254",
            "0.0.0.0",
            "::",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(open.check(ip).is_err(), "{ip} is never a receiver");
        }
        let refused = strict.check("127.0.0.1".parse().unwrap()).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "127.0.0.1 is a loopback address (allowed only with --webhooks-allow-private)"
        );
        let refused = open.check("169.254.169.254".parse().unwrap()).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "169.254.169.254 is a cloud metadata service"
        );
    }

    #[test]
    fn filtering_keeps_only_allowed_addresses() {
        let strict = Reach {
            allow_private: false,
        };
        let addr = |s: &str| -> SocketAddr { s.parse().unwrap() };
        // A rebinding answer mixing a public and a private address: only the public one is
        // ever connected to.
        let kept = strict
            .filter([addr("10.0.0.1:443"), addr("93.184.215.14:443")])
            .unwrap();
        assert_eq!(kept, [addr("93.184.215.14:443")]);
        match strict.filter([addr("127.0.0.1:443"), addr("[::1]:443")]) {
            Err(ResolveError::Refused(r)) => assert_eq!(r.kind, Kind::Loopback),
            other => panic!("{other:?}"),
        }
        assert!(matches!(strict.filter([]), Err(ResolveError::NoAddress)));
    }
}
