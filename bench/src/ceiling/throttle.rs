//! The ceiling's attempt limits: the service's `THROTTLE_*` rules, counted by one
//! statement ([`super::sql::COUNT`]) instead of a locking read and a write.

use anyhow::Context;

/// One attempt limit, as `THROTTLE_*` spells it: `ATTEMPTS/WINDOW[,FIRST..MAX]`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Rule {
    pub(super) free: i32,
    window_s: f64,
    first_wait_s: f64,
    max_wait_s: f64,
}

/// The limits a login and a registration are counted on (the service's defaults).
pub(super) struct Rules {
    pub(super) account: Option<Rule>,
    pub(super) account_address: Option<Rule>,
    pub(super) address: Option<Rule>,
    pub(super) register_address: Option<Rule>,
}

impl Rules {
    pub(super) fn from_env() -> anyhow::Result<Self> {
        let rule = |name: &str, default: &str| -> anyhow::Result<Option<Rule>> {
            let raw = std::env::var(name).unwrap_or_else(|_| default.to_owned());
            Rule::parse(&raw).with_context(|| format!("{name}: `{raw}`"))
        };
        Ok(Self {
            account: rule("THROTTLE_LOGIN_ACCOUNT", "100/24h,1s..15m")?,
            account_address: rule("THROTTLE_LOGIN_ACCOUNT_ADDRESS", "5/24h,1s..1h")?,
            address: rule("THROTTLE_LOGIN_ADDRESS", "50/1h,1s..15m")?,
            register_address: rule("THROTTLE_REGISTER_ADDRESS", "10/1h")?,
        })
    }
}

impl Rule {
    fn parse(raw: &str) -> Option<Option<Self>> {
        let raw = raw.trim();
        if raw.eq_ignore_ascii_case("off") {
            return Some(None);
        }
        let seconds = |s: &str| -> Option<f64> {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let n: f64 = s[..split].parse().ok()?;
            Some(match &s[split..] {
                "ms" => n / 1000.0,
                "" | "s" => n,
                "m" => n * 60.0,
                "h" => n * 3600.0,
                "d" => n * 86_400.0,
                _ => return None,
            })
        };
        let (limit, waits) = raw.split_once(',').map_or((raw, None), |(l, w)| (l, Some(w)));
        let (free, window) = limit.split_once('/')?;
        let window_s = seconds(window)?;
        let (first_wait_s, max_wait_s) = match waits {
            None => (window_s, window_s),
            Some(w) => {
                let (first, max) = w.split_once("..")?;
                (seconds(first)?, seconds(max)?)
            }
        };
        Some(Some(Self {
            free: free.trim().parse().ok()?,
            window_s,
            first_wait_s,
            max_wait_s,
        }))
    }
}

/// The arrays of [`super::sql::COUNT`].
pub(super) struct CountParams<'a> {
    keys: Vec<&'a str>,
    free: Vec<i32>,
    window: Vec<f64>,
    first: Vec<f64>,
    max: Vec<f64>,
}

impl<'a> CountParams<'a> {
    pub(super) fn of(counted: &'a [(String, Rule)]) -> Self {
        Self {
            keys: counted.iter().map(|(k, _)| k.as_str()).collect(),
            free: counted.iter().map(|(_, r)| r.free).collect(),
            window: counted.iter().map(|(_, r)| r.window_s).collect(),
            first: counted.iter().map(|(_, r)| r.first_wait_s).collect(),
            max: counted.iter().map(|(_, r)| r.max_wait_s).collect(),
        }
    }

    /// How many keys took the attempt (a waiting key does not).
    pub(super) async fn run(
        &self,
        conn: &tokio_postgres::Client,
        statement: &tokio_postgres::Statement,
    ) -> Result<usize, tokio_postgres::Error> {
        if self.keys.is_empty() {
            return Ok(0);
        }
        let rows = conn
            .query(
                statement,
                &[&self.keys, &self.free, &self.window, &self.first, &self.max],
            )
            .await?;
        Ok(rows.len())
    }
}
