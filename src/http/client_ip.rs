//! The client address: the TCP peer, unless the peer is a proxy listed in
//! `TRUSTED_PROXIES`; then the forwarding header that proxy writes names the client.
//! A client can write any header it likes, so headers from anyone else are ignored
//! (ASVS 4.1.3).

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use axum::http::{HeaderMap, header};
use ipnet::IpNet;

use crate::config::ForwardedHeader;

/// The resolved client address, stored in the request's extensions; `None` when the
/// server was not given connection info.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ClientAddr(pub Option<IpAddr>);

/// The proxies whose forwarding header is believed, and which header they write.
#[derive(Clone, Debug)]
pub(crate) struct TrustedProxies {
    nets: Arc<Vec<IpNet>>,
    header: ForwardedHeader,
}

impl TrustedProxies {
    pub(crate) fn new(nets: Vec<IpNet>, header: ForwardedHeader) -> Self {
        Self {
            nets: Arc::new(nets),
            header,
        }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client behind `peer`: walking the forwarding chain from the nearest hop
    /// outwards, the first address that is not a trusted proxy. An entry that does not
    /// parse ends the walk at the last trusted hop, since nothing before it is vouched for.
    pub(crate) fn client(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let mut client = peer?.to_canonical();
        if !self.trusts(client) {
            return Some(client);
        }
        let hops = match self.header {
            ForwardedHeader::XForwardedFor => x_forwarded_for(headers),
            ForwardedHeader::Forwarded => forwarded(headers),
        };
        for hop in hops.into_iter().rev() {
            let Some(hop) = hop else { break };
            client = hop.to_canonical();
            if !self.trusts(client) {
                break;
            }
        }
        Some(client)
    }
}

/// Every `X-Forwarded-For` entry, in order (several header lines read as one list).
fn x_forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("\u{0}").split(','))
        .map(|entry| parse_node(entry.trim()))
        .collect()
}

/// The `for=` of every RFC 7239 `Forwarded` element, in order; an element without one,
/// or with an obfuscated or `unknown` node, is an unparseable hop.
fn forwarded(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all(header::FORWARDED)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("\u{0}").split(','))
        .map(|element| {
            element.split(';').find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| parse_node(value.trim().trim_matches('"')))?
            })
        })
        .collect()
}

/// `192.0.2.1`, `192.0.2.1:443`, `2001:db8::1` or `[2001:db8::1]:443`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        let (v6, _port) = rest.split_once(']')?;
        return v6.parse().ok();
    }
    node.parse::<SocketAddr>().ok().map(|s| s.ip())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    fn proxies(header: ForwardedHeader) -> TrustedProxies {
        TrustedProxies::new(
            vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
            header,
        )
    }

    #[test]
    fn headers_from_an_untrusted_peer_are_ignored() {
        let t = proxies(ForwardedHeader::XForwardedFor);
        let h = headers(&[("x-forwarded-for", "198.51.100.1")]);
        assert_eq!(t.client(Some(ip("203.0.113.5")), &h), Some(ip("203.0.113.5")));
        let none = TrustedProxies::new(Vec::new(), ForwardedHeader::XForwardedFor);
        assert_eq!(none.client(Some(ip("10.0.0.1")), &h), Some(ip("10.0.0.1")));
    }

    #[test]
    fn a_trusted_proxy_names_the_client_and_forged_entries_are_skipped() {
        let t = proxies(ForwardedHeader::XForwardedFor);
        // The client wrote `1.2.3.4`; the edge proxy appended the real address; an inner
        // proxy (10.0.0.9) appended the edge proxy's.
        let h = headers(&[("x-forwarded-for", "1.2.3.4, 198.51.100.7, 10.0.0.9")]);
        assert_eq!(t.client(Some(ip("10.0.0.2")), &h), Some(ip("198.51.100.7")));
        // Two header lines read as one list; ports and brackets are accepted.
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "[2001:db8::7]:4711"),
        ]);
        assert_eq!(t.client(Some(ip("::1")), &h), Some(ip("2001:db8::7")));
        // No header: the proxy itself is the client.
        assert_eq!(
            t.client(Some(ip("10.0.0.2")), &HeaderMap::new()),
            Some(ip("10.0.0.2"))
        );
        // Garbage ends the walk at the last trusted hop.
        let h = headers(&[("x-forwarded-for", "198.51.100.7, nonsense")]);
        assert_eq!(t.client(Some(ip("10.0.0.2")), &h), Some(ip("10.0.0.2")));
    }

    #[test]
    fn forwarded_is_read_only_when_configured() {
        let h = headers(&[
            (
                "forwarded",
                r#"for=1.2.3.4, for="[2001:db8::9]:443";proto=https, for=10.0.0.5"#,
            ),
            ("x-forwarded-for", "192.0.2.200"),
        ]);
        let t = proxies(ForwardedHeader::Forwarded);
        assert_eq!(t.client(Some(ip("10.0.0.2")), &h), Some(ip("2001:db8::9")));
        let t = proxies(ForwardedHeader::XForwardedFor);
        assert_eq!(t.client(Some(ip("10.0.0.2")), &h), Some(ip("192.0.2.200")));
        let obfuscated = headers(&[("forwarded", "for=_hidden, for=198.51.100.3")]);
        assert_eq!(
            proxies(ForwardedHeader::Forwarded).client(Some(ip("10.0.0.2")), &obfuscated),
            Some(ip("198.51.100.3"))
        );
    }

    #[test]
    fn mapped_ipv4_peers_match_ipv4_networks() {
        let t = proxies(ForwardedHeader::XForwardedFor);
        let h = headers(&[("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(
            t.client(Some(ip("::ffff:10.1.2.3")), &h),
            Some(ip("198.51.100.7"))
        );
    }

    proptest! {
        /// Whatever the headers say, an untrusted peer is the client.
        #[test]
        fn no_header_moves_an_untrusted_client(
            a in any::<[u8; 4]>(),
            xff in "[0-9a-f.:, \\[\\]]{0,80}",
            fwd in "[ -~]{0,80}",
        ) {
            let peer = IpAddr::from(a);
            prop_assume!(!proxies(ForwardedHeader::XForwardedFor).trusts(peer));
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&xff) { h.insert("x-forwarded-for", v); }
            if let Ok(v) = HeaderValue::from_str(&fwd) { h.insert("forwarded", v); }
            for header in [ForwardedHeader::XForwardedFor, ForwardedHeader::Forwarded] {
                prop_assert_eq!(proxies(header).client(Some(peer), &h), Some(peer));
            }
        }

        /// Behind a trusted proxy, the client is never a trusted address unless every
        /// hop was one, and never comes from the left of the first untrusted hop.
        #[test]
        fn the_rightmost_untrusted_hop_is_the_client(hops in proptest::collection::vec(any::<[u8; 4]>(), 1..6)) {
            let t = proxies(ForwardedHeader::XForwardedFor);
            let list: Vec<String> = hops.iter().map(|h| IpAddr::from(*h).to_string()).collect();
            let h = headers(&[("x-forwarded-for", &list.join(", "))]);
            let expected = hops
                .iter()
                .rev()
                .map(|h| IpAddr::from(*h))
                .find(|ip| !t.trusts(*ip))
                .unwrap_or_else(|| IpAddr::from(hops[0]));
            prop_assert_eq!(t.client(Some(ip("10.0.0.1")), &h), Some(expected));
        }
    }
}
