//! HTTP: `LISTEN_ADDR`, `BODY_LIMIT`, `REQUEST_TIMEOUT`, `SHUTDOWN_TIMEOUT`,
//! `CORS_ALLOWED_ORIGINS`, `CORS_MAX_AGE`, `TRUSTED_PROXIES`, `TRUSTED_PROXY_HEADER`,
//! `HTTP_RATE_LIMIT`, `HTTP_RATE_LIMIT_BURST`, the server's `HTTP_*` timeouts and
//! connection cap, `GRAPHIQL` and `GRAPHIQL_CDN_URL`.

use std::{net::SocketAddr, time::Duration};

use anyhow::bail;
use ipnet::IpNet;

use super::{duration, nonzero_duration, parse, parse_duration, positive};

/// How the service listens and what it accepts.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// `LISTEN_ADDR`.
    pub listen_addr: SocketAddr,
    /// `BODY_LIMIT`: largest accepted request body, in bytes.
    pub body_limit: usize,
    /// `REQUEST_TIMEOUT`: longest a request may run.
    pub request_timeout: Duration,
    /// `SHUTDOWN_TIMEOUT`: after SIGTERM or Ctrl-C, how long in-flight requests may still run.
    pub shutdown_timeout: Duration,
    /// `CORS_ALLOWED_ORIGINS`.
    pub cors_allowed_origins: Vec<String>,
    /// `CORS_MAX_AGE`: how long browsers may cache a preflight answer.
    pub cors_max_age: Duration,
    /// `TRUSTED_PROXIES`: peers whose `Forwarded`/`X-Forwarded-For` name the client.
    pub trusted_proxies: Vec<IpNet>,
    /// `TRUSTED_PROXY_HEADER`: which forwarding header those proxies write.
    pub trusted_proxy_header: ForwardedHeader,
    /// `HTTP_RATE_LIMIT`, `HTTP_RATE_LIMIT_BURST`: per-client request limit (`None`: off).
    pub rate_limit: Option<HttpRateLimit>,
    /// `HTTP_HEADER_TIMEOUT`, `HTTP_BODY_TIMEOUT`, `HTTP_IDLE_TIMEOUT`, `HTTP_MAX_CONNECTIONS`.
    pub server: HttpServerLimits,
    /// `GRAPHIQL`: serve `/graphiql` (default: in development).
    pub graphiql: bool,
    /// `GRAPHIQL_CDN_URL`: where the GraphiQL page loads its assets from.
    pub graphiql_cdn_url: Option<String>,
}

impl HttpConfig {
    /// Reads the variables above; `dev` turns GraphiQL on by default.
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>, dev: bool) -> anyhow::Result<Self> {
        Ok(Self {
            listen_addr: listen_addr(get("LISTEN_ADDR"))?,
            body_limit: positive(get, "BODY_LIMIT", 64 * 1024)?,
            request_timeout: nonzero_duration(get, "REQUEST_TIMEOUT", Duration::from_secs(30))?,
            shutdown_timeout: nonzero_duration(get, "SHUTDOWN_TIMEOUT", Duration::from_secs(30))?,
            cors_allowed_origins: cors_allowed_origins(get("CORS_ALLOWED_ORIGINS"))?,
            cors_max_age: duration(get, "CORS_MAX_AGE", Duration::from_secs(3600))?,
            trusted_proxies: trusted_proxies(get("TRUSTED_PROXIES"))?,
            trusted_proxy_header: ForwardedHeader::parse(get("TRUSTED_PROXY_HEADER"))?,
            rate_limit: HttpRateLimit::from_lookup(get)?,
            server: HttpServerLimits::from_lookup(get)?,
            graphiql: parse(get, "GRAPHIQL", dev)?,
            graphiql_cdn_url: graphiql_cdn_url(get("GRAPHIQL_CDN_URL"))?,
        })
    }
}

/// `LISTEN_ADDR` as `IP:port` or `host:port`; a host name is resolved once, preferring
/// its IPv4 address (so `localhost:8080` listens where browsers look first).
fn listen_addr(raw: Option<String>) -> anyhow::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    let Some(raw) = raw else {
        return Ok(SocketAddr::from(([127, 0, 0, 1], 8080)));
    };
    let raw = raw.trim();
    if let Ok(addr) = raw.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let hint =
        "give IP:port or host:port, such as 127.0.0.1:8080, 0.0.0.0:8080 (every interface) or localhost:8080";
    if raw
        .rsplit_once(':')
        .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
    {
        bail!("LISTEN_ADDR `{raw}` has no valid port: {hint}");
    }
    let addrs: Vec<SocketAddr> = raw
        .to_socket_addrs()
        .map_err(|e| anyhow::anyhow!("LISTEN_ADDR `{raw}`: the host name does not resolve ({e}): {hint}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| anyhow::anyhow!("LISTEN_ADDR `{raw}`: the host name has no address: {hint}"))
}

/// `CORS_ALLOWED_ORIGINS`: comma-separated http(s) origins, never a wildcard.
fn cors_allowed_origins(raw: Option<String>) -> anyhow::Result<Vec<String>> {
    let origins = raw
        .map(|v| {
            v.split(',')
                .map(|o| o.trim().trim_end_matches('/').to_owned())
                .filter(|o| !o.is_empty())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if let Some(bad) = origins.iter().find(|o| {
        *o == "*"
            || !(o.starts_with("http://") || o.starts_with("https://"))
            || o.chars()
                .any(|c| c.is_whitespace() || c.is_control() || !c.is_ascii())
    }) {
        bail!("CORS_ALLOWED_ORIGINS must list http(s) origins (no wildcard), not `{bad}`");
    }
    Ok(origins)
}

/// `GRAPHIQL_CDN_URL`, without a trailing `/`.
fn graphiql_cdn_url(raw: Option<String>) -> anyhow::Result<Option<String>> {
    let url = raw
        .map(|url| url.trim().trim_end_matches('/').to_owned())
        .filter(|url| !url.is_empty());
    // Written into the page's script and link tags: an absolute http(s) URL or a path
    // on this origin, with nothing that could close the attribute.
    if let Some(url) = &url
        && (!(url.starts_with("http://") || url.starts_with("https://") || url.starts_with('/'))
            || url.starts_with("//")
            || url.contains(|c: char| c.is_whitespace() || "\"'<>\\".contains(c)))
    {
        bail!("GRAPHIQL_CDN_URL must be an http(s) URL or an absolute path such as /graphiql-assets");
    }
    Ok(url)
}

/// The per-client HTTP limit: a bucket of `burst` requests, one more every `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpRateLimit {
    /// How long a client waits for one more request once its burst is spent.
    pub period: Duration,
    /// Requests a client may send at once.
    pub burst: u32,
}

impl HttpRateLimit {
    /// Reads `HTTP_RATE_LIMIT` (`N/s`, `N/m`, `N/h`, or `off`) and `HTTP_RATE_LIMIT_BURST`.
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<Self>> {
        let raw = get("HTTP_RATE_LIMIT").unwrap_or_else(|| "20/s".to_owned());
        if raw.trim().eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let period = raw.trim().split_once('/').and_then(|(n, unit)| {
            let n: u32 = n.trim().parse().ok().filter(|n| *n > 0)?;
            let unit = match unit.trim() {
                "s" => Duration::from_secs(1),
                "m" => Duration::from_secs(60),
                "h" => Duration::from_secs(3600),
                _ => return None,
            };
            Some(unit / n).filter(|p| !p.is_zero())
        });
        let Some(period) = period else {
            bail!("HTTP_RATE_LIMIT must be like `20/s`, `600/m` or `off`, not `{raw}`");
        };
        let burst = match get("HTTP_RATE_LIMIT_BURST") {
            None => 100,
            Some(raw) => match raw.trim().parse::<u32>() {
                Ok(n) if n > 0 => n,
                _ => bail!("HTTP_RATE_LIMIT_BURST must be a positive number, not `{raw}`"),
            },
        };
        Ok(Some(Self { period, burst }))
    }
}

/// The HTTP server's timeouts and connection cap (see `http::server`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpServerLimits {
    /// `HTTP_HEADER_TIMEOUT`: a request head must be complete within this, from the
    /// connection's accept or the head's first byte.
    pub header_timeout: Duration,
    /// `HTTP_BODY_TIMEOUT`: a request body must be complete within this of its head.
    pub body_timeout: Duration,
    /// `HTTP_IDLE_TIMEOUT`: a kept-alive connection with nothing in flight is closed
    /// after this long without a byte either way.
    pub idle_timeout: Duration,
    /// `HTTP_MAX_CONNECTIONS`: connections open at once; past it new ones wait in the
    /// listen backlog.
    pub max_connections: usize,
}

impl Default for HttpServerLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
        }
    }
}

impl HttpServerLimits {
    /// Reads the `HTTP_*` server variables, with the defaults of [`Default`].
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let defaults = Self::default();
        let duration = |name: &str, default: Duration| -> anyhow::Result<Duration> {
            match get(name) {
                None => Ok(default),
                Some(raw) => match parse_duration(&raw) {
                    Some(d) if !d.is_zero() => Ok(d),
                    _ => bail!("{name} must be a positive duration like `10s` or `1m`, not `{raw}`"),
                },
            }
        };
        let max_connections = match get("HTTP_MAX_CONNECTIONS") {
            None => defaults.max_connections,
            Some(raw) => match raw.trim().parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => bail!("HTTP_MAX_CONNECTIONS must be a positive number, not `{raw}`"),
            },
        };
        Ok(Self {
            header_timeout: duration("HTTP_HEADER_TIMEOUT", defaults.header_timeout)?,
            body_timeout: duration("HTTP_BODY_TIMEOUT", defaults.body_timeout)?,
            idle_timeout: duration("HTTP_IDLE_TIMEOUT", defaults.idle_timeout)?,
            max_connections,
        })
    }
}

/// The forwarding header the trusted proxies write (`TRUSTED_PROXY_HEADER`). Only that
/// one is read: a client can send the other, and a proxy passes it through untouched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` (the default: nginx, HAProxy, Envoy, cloud load balancers).
    XForwardedFor,
    /// RFC 7239 `Forwarded`.
    Forwarded,
}

impl ForwardedHeader {
    /// Reads `TRUSTED_PROXY_HEADER`.
    pub fn parse(raw: Option<String>) -> anyhow::Result<Self> {
        match raw.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("x-forwarded-for") => Ok(Self::XForwardedFor),
            Some("forwarded") => Ok(Self::Forwarded),
            Some(_) => bail!("TRUSTED_PROXY_HEADER must be `X-Forwarded-For` or `Forwarded`"),
        }
    }
}

/// Parses `TRUSTED_PROXIES`: comma-separated CIDRs or single addresses.
pub fn trusted_proxies(raw: Option<String>) -> anyhow::Result<Vec<IpNet>> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| {
                    anyhow::anyhow!(
                        "TRUSTED_PROXIES must list CIDRs like `10.0.0.0/8` or addresses, not `{s}`"
                    )
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn http_limits_parse() {
        assert_eq!(
            HttpRateLimit::from_lookup(&get(&[])).unwrap(),
            Some(HttpRateLimit {
                period: Duration::from_millis(50),
                burst: 100
            })
        );
        assert_eq!(
            HttpRateLimit::from_lookup(&get(&[("HTTP_RATE_LIMIT", "120/m")]))
                .unwrap()
                .unwrap()
                .period,
            Duration::from_millis(500)
        );
        assert!(HttpRateLimit::from_lookup(&get(&[("HTTP_RATE_LIMIT", "20")])).is_err());
        assert_eq!(
            HttpRateLimit::from_lookup(&get(&[("HTTP_RATE_LIMIT", "off")])).unwrap(),
            None
        );
        assert!(HttpRateLimit::from_lookup(&get(&[("HTTP_RATE_LIMIT", "fast")])).is_err());
        assert!(HttpRateLimit::from_lookup(&get(&[("HTTP_RATE_LIMIT_BURST", "0")])).is_err());
    }

    #[test]
    fn server_limits_have_defaults_and_refuse_zero() {
        let d = HttpServerLimits::from_lookup(&get(&[])).unwrap();
        assert_eq!(
            (d.header_timeout, d.body_timeout, d.idle_timeout),
            (
                Duration::from_secs(10),
                Duration::from_secs(30),
                Duration::from_secs(60)
            )
        );
        assert!(d.max_connections >= 2000);
        let c = HttpServerLimits::from_lookup(&get(&[
            ("HTTP_HEADER_TIMEOUT", "2s"),
            ("HTTP_MAX_CONNECTIONS", "10"),
        ]))
        .unwrap();
        assert_eq!(
            (c.header_timeout, c.max_connections),
            (Duration::from_secs(2), 10)
        );
        assert!(HttpServerLimits::from_lookup(&get(&[("HTTP_IDLE_TIMEOUT", "0s")])).is_err());
        assert!(HttpServerLimits::from_lookup(&get(&[("HTTP_MAX_CONNECTIONS", "0")])).is_err());
    }

    #[test]
    fn trusted_proxies_take_cidrs_and_addresses() {
        let nets = trusted_proxies(Some("10.0.0.0/8, 192.168.1.7,::1,fd00::1/64".into())).unwrap();
        assert_eq!(nets.len(), 4);
        assert_eq!(nets[1].to_string(), "192.168.1.7/32");
        assert_eq!(nets[3].to_string(), "fd00::/64");
        assert!(trusted_proxies(Some("10.0.0.0/33".into())).is_err());
        assert!(trusted_proxies(Some("proxy.local".into())).is_err());
        assert!(trusted_proxies(None).unwrap().is_empty());
    }
}
