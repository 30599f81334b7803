//! Webhook settings: `WEBHOOK_ENDPOINTS`, `WEBHOOK_SECRET`, `WEBHOOK_EVENTS`, and the
//! delivery tuning `WEBHOOK_TIMEOUT`, `WEBHOOK_MAX_ATTEMPTS`, `WEBHOOK_RETRY_BASE`,
//! `WEBHOOK_RETRY_MAX`, `WEBHOOK_BREAKER_FAILURES`, `WEBHOOK_BREAKER_OPEN`,
//! `WEBHOOK_POLL_INTERVAL`. No endpoint: the feature is off and nothing is queued.

use std::time::Duration;

use anyhow::bail;
use base64::Engine;
use secrecy::{ExposeSecret, SecretBox};

use super::parse_duration;
use crate::auth::audit::EventType;

/// The prefix of a Standard Webhooks secret.
const SECRET_PREFIX: &str = "whsec_";
/// Fewer key bytes than this is a secret someone could guess (the spec's own are 24 to 64).
const SECRET_MIN_BYTES: usize = 16;

/// Webhooks as a whole; `None` in [`super::Config`] when `WEBHOOK_ENDPOINTS` is unset.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// `WEBHOOK_ENDPOINTS`: every URL receives every subscribed event, in this order.
    pub endpoints: Vec<String>,
    /// `WEBHOOK_SECRET`, decoded: the HMAC key shared by every endpoint.
    pub secret: WebhookSecret,
    /// `WEBHOOK_EVENTS`: the types sent (every type when unset).
    pub events: Vec<EventType>,
    /// `WEBHOOK_TIMEOUT`: the longest one delivery may take, connection included.
    pub timeout: Duration,
    /// `WEBHOOK_MAX_ATTEMPTS`: failed attempts after which a delivery is marked dead.
    pub max_attempts: u32,
    /// `WEBHOOK_RETRY_BASE`: wait after the first failure; doubles with each further one.
    pub retry_base: Duration,
    /// `WEBHOOK_RETRY_MAX`: the longest wait between two attempts.
    pub retry_max: Duration,
    /// `WEBHOOK_BREAKER_FAILURES`: consecutive failures of one endpoint that open its breaker.
    pub breaker_failures: u32,
    /// `WEBHOOK_BREAKER_OPEN`: how long an open breaker waits before one probe.
    pub breaker_open: Duration,
    /// `WEBHOOK_POLL_INTERVAL`: how often an idle endpoint's worker looks for due deliveries.
    pub poll_interval: Duration,
}

/// The decoded key bytes of `WEBHOOK_SECRET`; `Debug` never shows them.
#[derive(Clone)]
pub struct WebhookSecret(std::sync::Arc<SecretBox<Vec<u8>>>);

impl WebhookSecret {
    /// Parses `whsec_` + base64 (the spec's format, which its libraries read as is).
    pub fn parse(raw: &str) -> anyhow::Result<Self> {
        let Some(encoded) = raw.trim().strip_prefix(SECRET_PREFIX) else {
            bail!("WEBHOOK_SECRET must be `whsec_` followed by base64");
        };
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
            bail!("WEBHOOK_SECRET must be `whsec_` followed by base64");
        };
        if bytes.len() < SECRET_MIN_BYTES {
            bail!("WEBHOOK_SECRET must hold at least {SECRET_MIN_BYTES} bytes of key");
        }
        Ok(Self(std::sync::Arc::new(SecretBox::new(Box::new(bytes)))))
    }

    /// The HMAC key.
    pub fn bytes(&self) -> &[u8] {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret([REDACTED])")
    }
}

impl WebhookConfig {
    /// Reads the variables above: `None` when no endpoint is configured.
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<Self>> {
        let mut endpoints: Vec<String> = Vec::new();
        for raw in get("WEBHOOK_ENDPOINTS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            let url = endpoint(raw)?;
            if endpoints.contains(&url) {
                bail!("WEBHOOK_ENDPOINTS lists `{url}` twice");
            }
            endpoints.push(url);
        }
        let events = events(get("WEBHOOK_EVENTS").as_deref())?;
        if endpoints.is_empty() {
            return Ok(None);
        }
        let Some(secret) = get("WEBHOOK_SECRET") else {
            bail!("WEBHOOK_SECRET must be set when WEBHOOK_ENDPOINTS is");
        };
        let secret = WebhookSecret::parse(&secret)?;
        let duration = |name: &str, default: &str| -> anyhow::Result<Duration> {
            match parse_duration(&get(name).unwrap_or_else(|| default.to_owned())) {
                Some(d) if !d.is_zero() => Ok(d),
                _ => bail!("{name} must be a duration longer than zero like `5s`, `10m` or plain seconds"),
            }
        };
        let count = |name: &str, default: u32| -> anyhow::Result<u32> {
            match get(name).map(|v| v.trim().parse::<u32>()) {
                None => Ok(default),
                Some(Ok(n)) if n > 0 => Ok(n),
                Some(_) => bail!("{name} must be a whole number above zero"),
            }
        };
        Ok(Some(Self {
            endpoints,
            secret,
            events,
            timeout: duration("WEBHOOK_TIMEOUT", "5s")?,
            max_attempts: count("WEBHOOK_MAX_ATTEMPTS", 12)?,
            retry_base: duration("WEBHOOK_RETRY_BASE", "30s")?,
            retry_max: duration("WEBHOOK_RETRY_MAX", "1h")?,
            breaker_failures: count("WEBHOOK_BREAKER_FAILURES", 5)?,
            breaker_open: duration("WEBHOOK_BREAKER_OPEN", "60s")?,
            poll_interval: duration("WEBHOOK_POLL_INTERVAL", "1s")?,
        }))
    }

    /// Whether events of `kind` are sent.
    pub fn sends(&self, kind: EventType) -> bool {
        self.events.contains(&kind)
    }
}

/// An absolute http(s) URL with a host; printed back in errors (an endpoint is not a
/// secret, but one carrying a password in its user-info would be, so that is refused).
fn endpoint(raw: &str) -> anyhow::Result<String> {
    match url::Url::parse(raw) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
            if !url.username().is_empty() || url.password().is_some() {
                bail!(
                    "WEBHOOK_ENDPOINTS: put no credentials in an endpoint URL (authenticate by the signature)"
                );
            }
            Ok(raw.to_owned())
        }
        _ => bail!("WEBHOOK_ENDPOINTS must list http(s) URLs, not `{raw}`"),
    }
}

/// `WEBHOOK_EVENTS`: dotted names of the audit event types, every type when unset.
fn events(raw: Option<&str>) -> anyhow::Result<Vec<EventType>> {
    let Some(raw) = raw else {
        return Ok(EventType::ALL.to_vec());
    };
    let mut events = Vec::new();
    for name in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let Some(kind) = EventType::parse(name) else {
            bail!("WEBHOOK_EVENTS: unknown event type `{name}` (the audit event names of the README)");
        };
        if !events.contains(&kind) {
            events.push(kind);
        }
    }
    if events.is_empty() {
        bail!("WEBHOOK_EVENTS must name at least one event type, or be unset for all");
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn parse(vars: &[(&str, &str)]) -> anyhow::Result<Option<WebhookConfig>> {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        WebhookConfig::from_lookup(&|k: &str| map.get(k).map(|v| (*v).to_owned()))
    }

    fn error(vars: &[(&str, &str)]) -> String {
        format!("{:#}", parse(vars).unwrap_err())
    }

    #[test]
    fn no_endpoint_turns_webhooks_off() {
        assert!(parse(&[]).unwrap().is_none());
        assert!(parse(&[("WEBHOOK_SECRET", SECRET)]).unwrap().is_none());
    }

    #[test]
    fn endpoints_secret_and_default_events_are_read() {
        let c = parse(&[
            (
                "WEBHOOK_ENDPOINTS",
                " https://a.example/hook , http://127.0.0.1:9/x",
            ),
            ("WEBHOOK_SECRET", SECRET),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.endpoints, ["https://a.example/hook", "http://127.0.0.1:9/x"]);
        assert_eq!(c.events, EventType::ALL.to_vec());
        assert_eq!(c.secret.bytes().len(), 24);
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert!(
            !format!("{c:?}").contains("MfKQ9r8"),
            "the secret is never printed"
        );
    }

    #[test]
    fn bad_endpoints_are_refused_by_name() {
        let secret = ("WEBHOOK_SECRET", SECRET);
        for bad in [
            "ftp://a.example/",
            "not a url",
            "/relative",
            "https://user:pw@a.example/",
        ] {
            let e = error(&[("WEBHOOK_ENDPOINTS", bad), secret]);
            assert!(e.contains("WEBHOOK_ENDPOINTS"), "{bad}: {e}");
            assert!(!e.contains("pw@"), "{e}");
        }
        let e = error(&[
            ("WEBHOOK_ENDPOINTS", "https://a.example,https://a.example"),
            secret,
        ]);
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn the_secret_is_required_well_formed_and_never_echoed() {
        let url = ("WEBHOOK_ENDPOINTS", "https://a.example/hook");
        assert!(error(&[url]).contains("WEBHOOK_SECRET must be set"));
        for bad in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_!!notbase64!!",
            "whsec_c2hvcnQ=",
        ] {
            let e = error(&[url, ("WEBHOOK_SECRET", bad)]);
            assert!(e.contains("WEBHOOK_SECRET"), "{e}");
            assert!(!e.contains(bad.trim_start_matches("whsec_")), "{e}");
        }
    }

    #[test]
    fn events_are_checked_against_the_audit_names() {
        let base = [
            ("WEBHOOK_ENDPOINTS", "https://a.example/hook"),
            ("WEBHOOK_SECRET", SECRET),
        ];
        let c = parse(&[
            base[0],
            base[1],
            ("WEBHOOK_EVENTS", "user.created, user.deleted,user.created"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.events, [EventType::UserCreated, EventType::UserDeleted]);
        assert!(c.sends(EventType::UserDeleted) && !c.sends(EventType::LoginSucceeded));
        let e = error(&[base[0], base[1], ("WEBHOOK_EVENTS", "user.created,user.exploded")]);
        assert!(e.contains("WEBHOOK_EVENTS") && e.contains("user.exploded"), "{e}");
        // Checked even while no endpoint is set: a typo stops start-up before it matters.
        assert!(error(&[("WEBHOOK_EVENTS", "nope")]).contains("nope"));
    }
}
