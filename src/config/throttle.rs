//! Attempt throttles: `THROTTLE_LOGIN_ACCOUNT_ADDRESS`, `THROTTLE_LOGIN_ACCOUNT`,
//! `THROTTLE_LOGIN_ADDRESS`, `THROTTLE_LOGIN_DEVICE`, `THROTTLE_REGISTER_ADDRESS`,
//! `THROTTLE_EMAIL_ADDRESS`, `THROTTLE_EMAIL_RECIPIENT` and `THROTTLE_TOKEN_ADDRESS`.

use std::time::Duration;

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
}
