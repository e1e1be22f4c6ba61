//! Outbound target checks against server-side request forgery (SSRF).
//!
//! A merchant chooses the URL we POST webhooks to, so without these checks
//! they could make the coordinator call its own admin ports, a cloud
//! metadata service (169.254.169.254) or anything else on the internal
//! network. The sender must:
//!
//! 1. accept the URL only through [`parse_endpoint_url`] (when it is
//!    registered, and again before each delivery);
//! 2. resolve the host itself, then call [`check_resolved`] on every
//!    address of the answer;
//! 3. connect only to those checked addresses (for example with a fixed
//!    resolver override for that host), never re-resolving, so a DNS answer
//!    that changes between check and connect (DNS rebinding) cannot reach an
//!    internal address; and not follow redirects.
//!
//! Nothing here does I/O: resolution is the caller's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::Url;

/// Longest endpoint URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// Why an endpoint URL or its addresses are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// The URL is longer than [`MAX_URL_LEN`].
    #[error("the endpoint URL is {len} bytes long; the limit is {MAX_URL_LEN}")]
    TooLong {
        /// Length of the refused URL.
        len: usize,
    },
    /// The URL does not parse.
    #[error("the endpoint URL does not parse ({0}); write it in full, as https://host/path")]
    Parse(url::ParseError),
    /// A scheme other than `https` or `http`.
    #[error("the endpoint URL's scheme `{0}` is not allowed; use https (or http)")]
    Scheme(String),
    /// A user name or password in the URL.
    #[error("the endpoint URL carries a user name or password; remove it: webhooks are authenticated by their signature")]
    UserInfo,
    /// No host in the URL.
    #[error("the endpoint URL has no host; write it as https://host/path")]
    NoHost,
    /// A `#fragment`, which HTTP clients never send.
    #[error("the endpoint URL has a #fragment, which is never sent to the server; remove it")]
    Fragment,
    /// The host resolved to no address at all.
    #[error("the endpoint's host resolved to no address; check its DNS records")]
    NoAddress,
    /// The host resolved to a private, loopback, link-local or otherwise
    /// non-public address.
    #[error("the endpoint's host resolves to {0}, which is not a public address (private, loopback, link-local or reserved); webhooks are only sent to public addresses")]
    PrivateAddress(IpAddr),
}

/// Parses an endpoint URL and checks its form: `https` or `http` only, no
/// user name or password, a host, at most [`MAX_URL_LEN`] bytes, no
/// fragment.
///
/// This does not look at the address: a literal IP host (which the `url`
/// crate normalizes, so `http://2130706433/` and `http://0x7f.1/` both
/// become `127.0.0.1`) is still checked by [`check_resolved`] like any
/// resolved name.
pub fn parse_endpoint_url(input: &str) -> Result<Url, TargetError> {
    if input.len() > MAX_URL_LEN {
        return Err(TargetError::TooLong { len: input.len() });
    }
    let url = Url::parse(input).map_err(TargetError::Parse)?;
    // Parsing percent-encodes, so the serialized form can be longer.
    if url.as_str().len() > MAX_URL_LEN {
        return Err(TargetError::TooLong {
            len: url.as_str().len(),
        });
    }
    match url.scheme() {
        "https" | "http" => {}
        other => return Err(TargetError::Scheme(other.to_owned())),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::UserInfo);
    }
    if url.host().is_none() {
        return Err(TargetError::NoHost);
    }
    if url.fragment().is_some() {
        return Err(TargetError::Fragment);
    }
    Ok(url)
}

/// Checks the addresses a host resolved to: refuses an empty answer, and,
/// unless `allow_private` (tests and private deployments), any answer with
/// even one non-public address, since the client might pick that one.
pub fn check_resolved(addrs: &[IpAddr], allow_private: bool) -> Result<(), TargetError> {
    if addrs.is_empty() {
        return Err(TargetError::NoAddress);
    }
    if allow_private {
        return Ok(());
    }
    match addrs.iter().find(|ip| is_private(**ip)) {
        Some(ip) => Err(TargetError::PrivateAddress(*ip)),
        None => Ok(()),
    }
}

/// Whether `ip` is not a public unicast address, i.e. must not be a
/// webhook target.
///
/// IPv4: 0.0.0.0/8 (with the unspecified address), 10/8, 100.64/10 (CGNAT),
/// 127/8, 169.254/16, 172.16/12, 192.0.0/24 (IETF), 192.0.2/24,
/// 198.51.100/24 and 203.0.113/24 (documentation), 192.168/16, 198.18/15
/// (benchmarking), 224/4 (multicast) and 240/4 (reserved, with the
/// broadcast address).
///
/// IPv6: an address embedding an IPv4 address is judged by that address
/// (IPv4-mapped `::ffff:0:0/96`, IPv4-translated `::ffff:0:0:0/96`, NAT64
/// `64:ff9b::/96`, 6to4 `2002::/16`, and Teredo `2001::/32` by its server
/// and client addresses). Also non-public: the whole deprecated
/// IPv4-compatible range `::/96` (with `::` and `::1`; no host uses it,
/// and some stacks route it to IPv4), local-use NAT64 `64:ff9b:1::/48`,
/// benchmarking `2001:2::/48`, ORCHID `2001:10::/28` and `2001:20::/28`,
/// documentation `2001:db8::/32` and `3fff::/20`, and everything outside
/// global unicast `2000::/3`: among others discard-only `100::/64`,
/// unique-local `fc00::/7`, link-local `fe80::/10`, site-local
/// `fec0::/10` and multicast `ff00::/8`.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => is_private_v6(v6),
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0 // "this network", with 0.0.0.0
        || a == 10
        || (a == 100 && (64..=127).contains(&b)) // CGNAT 100.64/10
        || a == 127
        || (a == 169 && b == 254)
        || (a == 172 && (16..=31).contains(&b))
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 192 && b == 168)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18/15
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || a >= 224 // multicast 224/4, reserved 240/4, broadcast
}

fn is_private_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let v4 = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    // IPv4-mapped ::ffff:a.b.c.d: the socket layer connects over IPv4.
    if s[..5] == [0; 5] && s[5] == 0xffff {
        return is_private_v4(v4(s[6], s[7]));
    }
    // IPv4-translated ::ffff:0:a.b.c.d (SIIT).
    if s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0 {
        return is_private_v4(v4(s[6], s[7]));
    }
    // IPv4-compatible ::a.b.c.d, ::, ::1: deprecated, never a real target.
    if s[..6] == [0; 6] {
        return true;
    }
    // NAT64 well-known prefix: a gateway forwards to the embedded IPv4.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_private_v4(v4(s[6], s[7]));
    }
    // Local-use NAT64 prefix 64:ff9b:1::/48 (RFC 8215): site-specific.
    if s[..3] == [0x64, 0xff9b, 1] {
        return true;
    }
    // 6to4 2002:aabb:ccdd::/48: relayed to the embedded IPv4.
    if s[0] == 0x2002 {
        return is_private_v4(v4(s[1], s[2]));
    }
    if s[0] == 0x2001 {
        match s[1] {
            // Teredo: server IPv4 in clear, client IPv4 bit-inverted.
            0 => return is_private_v4(v4(s[2], s[3])) || is_private_v4(v4(!s[6], !s[7])),
            // Benchmarking 2001:2::/48.
            2 if s[2] == 0 => return true,
            // ORCHID 2001:10::/28 and ORCHIDv2 2001:20::/28: not routable.
            0x10..=0x2f => return true,
            // Documentation 2001:db8::/32.
            0xdb8 => return true,
            _ => {}
        }
    }
    // Documentation 3fff::/20 (RFC 9637).
    if s[0] == 0x3fff && s[1] & 0xf000 == 0 {
        return true;
    }
    // Only global unicast 2000::/3 is public; that excludes ULA fc00::/7,
    // link-local fe80::/10, site-local fec0::/10, multicast ff00::/8,
    // discard 100::/64 and every unassigned range.
    s[0] & 0xe000 != 0x2000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_ipv4() {
        for s in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.1",
            "192.0.0.171",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(is_private(ip(s)), "{s} should be private");
        }
    }

    #[test]
    fn public_ipv4() {
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.1",
            "169.253.0.1",
            "169.255.0.1",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.0.3.1",
            "192.167.0.1",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.99.1",
            "203.0.112.1",
            "223.255.255.255",
        ] {
            assert!(!is_private(ip(s)), "{s} should be public");
        }
    }

    #[test]
    fn private_ipv6() {
        for s in [
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0.0.0.0",
            "::ffff:0:10.0.0.1",
            "::127.0.0.1",
            "::8.8.8.8",
            "64:ff9b::a00:1",
            "64:ff9b::127.0.0.1",
            "64:ff9b::169.254.169.254",
            "64:ff9b:1::8.8.8.8",
            "2002:7f00:1::",
            "2002:a00:1::1",
            "2002:c0a8:101::1",
            // Teredo with a private server, and with client 10.0.0.1
            // stored inverted (f5ff:fffe).
            "2001:0:a00:1::1",
            "2001:0:101:101::f5ff:fffe",
            "2001:2::1",
            "2001:10::1",
            "2001:2f::1",
            "2001:db8::1",
            "3fff::1",
            "3fff:fff::1",
            "100::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "ff05::2",
            "4000::1",
            "1::1",
        ] {
            assert!(is_private(ip(s)), "{s} should be private");
        }
    }

    #[test]
    fn public_ipv6() {
        for s in [
            "2606:4700::1111",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "2a00:1450:4001::1",
            "::ffff:1.1.1.1",
            "::ffff:0:8.8.8.8",
            "64:ff9b::101:101",
            "64:ff9b::8.8.8.8",
            "2002:101:101::1",
            // Teredo with public server 1.1.1.1 and client 8.8.8.8 (inverted).
            "2001:0:101:101::f7f7:f7f7",
            "2001:3::1",
            "2001:db9::1",
            "3ffe::1",
            "3fff:1000::1",
        ] {
            assert!(!is_private(ip(s)), "{s} should be public");
        }
    }

    #[test]
    fn resolved_answers() {
        assert_eq!(check_resolved(&[ip("1.1.1.1")], false), Ok(()));
        assert_eq!(
            check_resolved(&[ip("1.1.1.1"), ip("2606:4700::1111")], false),
            Ok(())
        );
        // One private address among public ones is enough to refuse.
        assert_eq!(
            check_resolved(&[ip("1.1.1.1"), ip("::ffff:127.0.0.1")], false),
            Err(TargetError::PrivateAddress(ip("::ffff:127.0.0.1")))
        );
        assert_eq!(
            check_resolved(&[ip("10.0.0.1")], false),
            Err(TargetError::PrivateAddress(ip("10.0.0.1")))
        );
        assert_eq!(check_resolved(&[ip("10.0.0.1")], true), Ok(()));
        assert_eq!(check_resolved(&[], false), Err(TargetError::NoAddress));
        assert_eq!(check_resolved(&[], true), Err(TargetError::NoAddress));
        let msg = check_resolved(&[ip("127.0.0.1")], false)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("127.0.0.1") && msg.contains("public"), "{msg}");
    }

    #[test]
    fn urls_accepted() {
        let u = parse_endpoint_url("https://hooks.example.com/keyfold?x=1").unwrap();
        assert_eq!(u.host_str(), Some("hooks.example.com"));
        assert!(parse_endpoint_url("http://example.com:8080/").is_ok());
        assert!(parse_endpoint_url("HTTPS://Example.COM/").is_ok());
        let a = "https://example.com/".to_owned() + &"a".repeat(MAX_URL_LEN - 20);
        assert_eq!(a.len(), MAX_URL_LEN);
        assert!(parse_endpoint_url(&a).is_ok());
    }

    #[test]
    fn urls_refused() {
        use TargetError::*;
        let e = |s: &str| parse_endpoint_url(s).unwrap_err();
        assert_eq!(e("ftp://example.com/"), Scheme("ftp".into()));
        assert_eq!(e("file:///etc/passwd"), Scheme("file".into()));
        assert_eq!(e("gopher://example.com/"), Scheme("gopher".into()));
        assert_eq!(e("javascript:alert(1)"), Scheme("javascript".into()));
        assert_eq!(e("https://user@example.com/"), UserInfo);
        assert_eq!(e("https://user:pw@example.com/"), UserInfo);
        assert_eq!(e("https://:pw@example.com/"), UserInfo);
        assert_eq!(e("https://example.com/#frag"), Fragment);
        assert_eq!(e("https://example.com/#"), Fragment);
        assert!(matches!(e("http://"), Parse(_)));
        assert!(matches!(e("example.com/hook"), Parse(_)));
        assert!(matches!(e(""), Parse(_)));
        assert!(matches!(e("https://exa mple.com/"), Parse(_)));
        let long = "https://example.com/".to_owned() + &"a".repeat(MAX_URL_LEN);
        assert!(matches!(e(&long), TooLong { .. }));
        // Percent-encoding can push a URL over the limit after parsing.
        let grows = "https://example.com/".to_owned() + &"\"".repeat(1000);
        assert!(grows.len() <= MAX_URL_LEN);
        assert!(matches!(e(&grows), TooLong { .. }));
    }

    #[test]
    fn literal_hosts_are_normalized_for_the_address_check() {
        // The url crate turns every IPv4 spelling into one address, so the
        // caller's check of the literal catches them.
        for s in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[64:ff9b::a00:1]/",
            "http://0.0.0.0/",
            "http://100.64.0.1/",
        ] {
            let url = parse_endpoint_url(s).unwrap();
            let addr = match url.host() {
                Some(url::Host::Ipv4(a)) => IpAddr::V4(a),
                Some(url::Host::Ipv6(a)) => IpAddr::V6(a),
                other => panic!("{s}: {other:?}"),
            };
            assert!(
                matches!(
                    check_resolved(&[addr], false),
                    Err(TargetError::PrivateAddress(_))
                ),
                "{s}"
            );
        }
    }
}
