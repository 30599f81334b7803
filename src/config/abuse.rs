//! Abuse-resistance settings: attempt throttles (`THROTTLE_*`), the per-client HTTP
//! limit (`HTTP_RATE_LIMIT`, `HTTP_RATE_LIMIT_BURST`) and `TRUSTED_PROXIES`.

use std::time::Duration;

use anyhow::bail;
use ipnet::IpNet;

use super::parse_duration;

/// One attempt limit: `free` attempts per `window`, then growing waits.
///
/// Written `ATTEMPTS/WINDOW[,FIRST..MAX]`, for example `5/24h,1s..1h`: five attempts,
/// then a wait of one second that doubles with each further attempt up to an hour; the
/// count starts over when the window (from the first attempt) has passed. Without waits
/// (`10/1h`) the limit is reached after ten attempts and lasts a whole window. `off`
/// disables the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleRule {
    /// Attempts in a window before the first wait.
    pub free: u32,
    /// How long counts are kept, from the first attempt of a window.
    pub window: Duration,
    /// The first wait; each further attempt doubles it.
    pub first_wait: Duration,
    /// The longest wait.
    pub max_wait: Duration,
}

impl ThrottleRule {
    /// Parses `ATTEMPTS/WINDOW[,FIRST..MAX]`; `None` for `off`.
    pub fn parse(raw: &str) -> Option<Option<Self>> {
        let raw = raw.trim();
        if raw.eq_ignore_ascii_case("off") {
            return Some(None);
        }
        let (limit, waits) = match raw.split_once(',') {
            Some((limit, waits)) => (limit, Some(waits)),
            None => (raw, None),
        };
        let (free, window) = limit.split_once('/')?;
        let free: u32 = free.trim().parse().ok().filter(|n| *n > 0)?;
        let window = parse_duration(window).filter(|d| !d.is_zero())?;
        let (first_wait, max_wait) = match waits {
            None => (window, window),
            Some(waits) => {
                let (first, max) = waits.split_once("..")?;
                (parse_duration(first)?, parse_duration(max)?)
            }
        };
        if first_wait.is_zero() || max_wait < first_wait {
            return None;
        }
        Some(Some(Self {
            free,
            window,
            first_wait,
            max_wait,
        }))
    }

    /// The wait after the attempt that brought the count to `attempts` (none below
    /// `free`): `first_wait`, doubled for each attempt past `free`, at most `max_wait`.
    pub fn wait_after(&self, attempts: u32) -> Option<Duration> {
        let past = attempts.checked_sub(self.free)?;
        let factor = 1u32.checked_shl(past.min(31)).unwrap_or(u32::MAX);
        Some(self.first_wait.saturating_mul(factor).min(self.max_wait))
    }
}

/// Every attempt limit; `None` is off.
#[derive(Clone, Debug)]
pub struct ThrottleConfig {
    /// `THROTTLE_LOGIN_ACCOUNT_ADDRESS`: failed logins on one account from one address.
    pub login_account_address: Option<ThrottleRule>,
    /// `THROTTLE_LOGIN_ACCOUNT`: failed logins on one account from anywhere.
    pub login_account: Option<ThrottleRule>,
    /// `THROTTLE_LOGIN_ADDRESS`: failed logins from one address on any account.
    pub login_address: Option<ThrottleRule>,
    /// `THROTTLE_LOGIN_DEVICE`: failed logins on one account from a browser holding a
    /// device token of it (instead of the two address limits).
    pub login_device: Option<ThrottleRule>,
    /// `THROTTLE_REGISTER_ADDRESS`: registrations from one address.
    pub register_address: Option<ThrottleRule>,
    /// `THROTTLE_EMAIL_ADDRESS`: verification and reset mail requests from one address.
    pub email_address: Option<ThrottleRule>,
    /// `THROTTLE_EMAIL_RECIPIENT`: verification and reset mail requests for one email.
    pub email_recipient: Option<ThrottleRule>,
    /// `THROTTLE_TOKEN_ADDRESS`: unusable refresh, verification or reset tokens from one address.
    pub token_address: Option<ThrottleRule>,
}

/// The defaults, with their reasons in the README ("Abuse resistance").
pub const THROTTLE_DEFAULTS: [(&str, &str); 8] = [
    ("THROTTLE_LOGIN_ACCOUNT_ADDRESS", "5/24h,1s..1h"),
    ("THROTTLE_LOGIN_ACCOUNT", "100/24h,1s..15m"),
    ("THROTTLE_LOGIN_ADDRESS", "50/1h,1s..15m"),
    ("THROTTLE_LOGIN_DEVICE", "5/24h,1s..1h"),
    ("THROTTLE_REGISTER_ADDRESS", "10/1h"),
    ("THROTTLE_EMAIL_ADDRESS", "20/1h"),
    ("THROTTLE_EMAIL_RECIPIENT", "3/1h"),
    ("THROTTLE_TOKEN_ADDRESS", "50/1h,1s..15m"),
];

impl ThrottleConfig {
    /// Reads every `THROTTLE_*` variable, with [`THROTTLE_DEFAULTS`].
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let rule = |name: &str| -> anyhow::Result<Option<ThrottleRule>> {
            let default = THROTTLE_DEFAULTS
                .iter()
                .find(|(n, _)| *n == name)
                .map_or("off", |(_, d)| *d);
            let raw = get(name).unwrap_or_else(|| default.to_owned());
            ThrottleRule::parse(&raw).ok_or_else(|| {
                anyhow::anyhow!(
                    "{name} must be `ATTEMPTS/WINDOW` or `ATTEMPTS/WINDOW,FIRST_WAIT..MAX_WAIT` \
                     (like `5/24h,1s..1h`) or `off`, not `{raw}`"
                )
            })
        };
        Ok(Self {
            login_account_address: rule("THROTTLE_LOGIN_ACCOUNT_ADDRESS")?,
            login_account: rule("THROTTLE_LOGIN_ACCOUNT")?,
            login_address: rule("THROTTLE_LOGIN_ADDRESS")?,
            login_device: rule("THROTTLE_LOGIN_DEVICE")?,
            register_address: rule("THROTTLE_REGISTER_ADDRESS")?,
            email_address: rule("THROTTLE_EMAIL_ADDRESS")?,
            email_recipient: rule("THROTTLE_EMAIL_RECIPIENT")?,
            token_address: rule("THROTTLE_TOKEN_ADDRESS")?,
        })
    }

    /// Every limit off.
    pub fn off() -> Self {
        Self {
            login_account_address: None,
            login_account: None,
            login_address: None,
            login_device: None,
            register_address: None,
            email_address: None,
            email_recipient: None,
            token_address: None,
        }
    }
}

impl Default for ThrottleConfig {
    /// [`THROTTLE_DEFAULTS`] (a unit test proves they parse).
    fn default() -> Self {
        Self::from_lookup(&|_| None).unwrap_or_else(|_| Self::off())
    }
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

/// Parses `PASSWORDS_BREACH_CHECK_URL`: the base of a Have I Been Pwned–style range API
/// (`https://api.pwnedpasswords.com/range`); unset, no breach check.
pub fn breach_check_url(raw: Option<String>) -> anyhow::Result<Option<String>> {
    let Some(raw) = raw.map(|v| v.trim().trim_end_matches('/').to_owned()) else {
        return Ok(None);
    };
    let host = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"))
        .unwrap_or("");
    if host.is_empty() || host.starts_with('/') || raw.contains(['?', '#', ' ']) {
        bail!(
            "PASSWORDS_BREACH_CHECK_URL must be the http(s) base of a range API, like \
             `https://api.pwnedpasswords.com/range`, not `{raw}`"
        );
    }
    Ok(Some(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(raw: &str) -> ThrottleRule {
        ThrottleRule::parse(raw).unwrap().unwrap()
    }

    #[test]
    fn rules_parse_with_and_without_waits() {
        let r = rule("5/24h,1s..1h");
        assert_eq!(
            (r.free, r.window, r.first_wait, r.max_wait),
            (
                5,
                Duration::from_secs(86_400),
                Duration::from_secs(1),
                Duration::from_secs(3600)
            )
        );
        let r = rule("10/1h");
        assert_eq!((r.first_wait, r.max_wait), (r.window, r.window));
        assert_eq!(ThrottleRule::parse("OFF"), Some(None));
        for bad in [
            "",
            "5",
            "0/1h",
            "5/0s",
            "5/1h,",
            "5/1h,10s..1s",
            "5/1h,0s..1s",
            "x/1h",
        ] {
            assert_eq!(ThrottleRule::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn waits_start_at_the_limit_and_double_up_to_the_cap() {
        let r = rule("3/1h,2s..10s");
        assert_eq!(r.wait_after(2), None);
        assert_eq!(r.wait_after(3), Some(Duration::from_secs(2)));
        assert_eq!(r.wait_after(4), Some(Duration::from_secs(4)));
        assert_eq!(r.wait_after(5), Some(Duration::from_secs(8)));
        assert_eq!(r.wait_after(6), Some(Duration::from_secs(10)));
        assert_eq!(r.wait_after(u32::MAX), Some(Duration::from_secs(10)));
    }

    #[test]
    fn defaults_parse() {
        let t = ThrottleConfig::from_lookup(&|_| None).unwrap();
        assert_eq!(t.login_account_address.unwrap().free, 5);
        assert_eq!(t.login_account.unwrap().free, 100);
        assert!(t.token_address.is_some());
    }

    #[test]
    fn http_limits_parse() {
        let get = |v: &'static [(&'static str, &'static str)]| {
            move |k: &str| v.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
        };
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
        let get = |v: &'static [(&'static str, &'static str)]| {
            move |k: &str| v.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
        };
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
    fn breach_check_urls_are_http_bases() {
        assert_eq!(breach_check_url(None).unwrap(), None);
        assert_eq!(
            breach_check_url(Some("https://api.pwnedpasswords.com/range/".into())).unwrap(),
            Some("https://api.pwnedpasswords.com/range".into())
        );
        for bad in [
            "api.pwnedpasswords.com/range",
            "https://",
            "https://x/range?k=",
            "ftp://x",
        ] {
            assert!(breach_check_url(Some(bad.into())).is_err(), "{bad}");
        }
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
