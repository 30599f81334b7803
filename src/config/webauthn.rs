//! Passkey (WebAuthn) relying party: `WEBAUTHN_RP_ID`, `WEBAUTHN_ORIGINS`,
//! `WEBAUTHN_RP_NAME` and `WEBAUTHN_CHALLENGE_TTL`. The id and origins default from
//! `PUBLIC_URL` (its host, its origin), the frontend a browser runs the ceremonies in.

use std::time::Duration;

use anyhow::{Context, bail};
use webauthn_rs::prelude::Url;

use super::parse_duration;

/// The relying party passkeys are bound to.
#[derive(Clone, Debug)]
pub struct WebauthnConfig {
    /// `WEBAUTHN_RP_ID`: the domain credentials are scoped to (default: `PUBLIC_URL`'s host).
    pub rp_id: String,
    /// `WEBAUTHN_ORIGINS`: the origins allowed in `clientDataJSON` (default: `PUBLIC_URL`'s origin).
    pub origins: Vec<Url>,
    /// `WEBAUTHN_RP_NAME`: the name authenticators show (default: the RP id).
    pub rp_name: String,
    /// `WEBAUTHN_CHALLENGE_TTL`: how long a begun ceremony may be finished.
    pub challenge_ttl: Duration,
}

impl Default for WebauthnConfig {
    /// The development default of `PUBLIC_URL`, `http://localhost:3000`.
    fn default() -> Self {
        #[expect(clippy::expect_used, reason = "a constant that parses")]
        let origin = Url::parse("http://localhost:3000").expect("a valid URL");
        Self {
            rp_id: "localhost".into(),
            origins: vec![origin],
            rp_name: "localhost".into(),
            challenge_ttl: Duration::from_secs(300),
        }
    }
}

impl WebauthnConfig {
    /// Reads the variables above, defaulting from `public_url`.
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>, public_url: &str) -> anyhow::Result<Self> {
        let public = Url::parse(public_url).context("PUBLIC_URL must be a URL")?;
        let origins: Vec<Url> = match get("WEBAUTHN_ORIGINS") {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(|o| {
                    origin_of(o).with_context(|| format!("WEBAUTHN_ORIGINS: `{o}` is not an http(s) origin"))
                })
                .collect::<anyhow::Result<_>>()?,
            None => vec![origin_of(public.as_str()).context("PUBLIC_URL has no origin")?],
        };
        if origins.is_empty() {
            bail!("WEBAUTHN_ORIGINS must list at least one origin, e.g. `https://app.example.com`");
        }
        let rp_id = match get("WEBAUTHN_RP_ID") {
            Some(id) => id.trim().to_ascii_lowercase(),
            None => public.host_str().context("PUBLIC_URL has no host")?.to_owned(),
        };
        for origin in &origins {
            // The browser refuses a ceremony whose RP id is not its origin's domain or a
            // parent of it: say so at start-up rather than at every sign-in.
            let host = origin.host_str().unwrap_or_default();
            if !(host == rp_id || host.ends_with(&format!(".{rp_id}"))) {
                bail!(
                    "WEBAUTHN_RP_ID `{rp_id}` must be the host of every WEBAUTHN_ORIGINS entry or a parent domain of it; `{origin}` is not under it"
                );
            }
        }
        let ttl_raw = get("WEBAUTHN_CHALLENGE_TTL").unwrap_or_else(|| "5m".into());
        let challenge_ttl = parse_duration(&ttl_raw)
            .filter(|d| !d.is_zero())
            .with_context(|| {
                format!("WEBAUTHN_CHALLENGE_TTL must be a duration like `5m`, not `{ttl_raw}`")
            })?;
        Ok(Self {
            rp_name: get("WEBAUTHN_RP_NAME").unwrap_or_else(|| rp_id.clone()),
            rp_id,
            origins,
            challenge_ttl,
        })
    }
}

/// `scheme://host[:port]` of an http(s) URL.
fn origin_of(raw: &str) -> Option<Url> {
    let url = Url::parse(raw).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return None;
    }
    Url::parse(&url.origin().ascii_serialization()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(vars: &[(&str, &str)], public_url: &str) -> anyhow::Result<WebauthnConfig> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        WebauthnConfig::from_lookup(&|k: &str| map.get(k).cloned(), public_url)
    }

    #[test]
    fn defaults_come_from_public_url() {
        let c = read(&[], "https://app.example.com/welcome").unwrap();
        assert_eq!(c.rp_id, "app.example.com");
        assert_eq!(c.origins, [Url::parse("https://app.example.com").unwrap()]);
        assert_eq!(c.challenge_ttl, Duration::from_secs(300));
    }

    #[test]
    fn a_parent_domain_covers_several_origins() {
        let c = read(
            &[
                ("WEBAUTHN_RP_ID", "example.com"),
                (
                    "WEBAUTHN_ORIGINS",
                    "https://app.example.com, https://example.com:8443",
                ),
            ],
            "https://app.example.com",
        )
        .unwrap();
        assert_eq!(c.origins.len(), 2);
    }

    #[test]
    fn mismatches_name_their_variable() {
        for (vars, name) in [
            (vec![("WEBAUTHN_RP_ID", "other.com")], "WEBAUTHN_RP_ID"),
            (vec![("WEBAUTHN_ORIGINS", "app.example.com")], "WEBAUTHN_ORIGINS"),
            (
                vec![("WEBAUTHN_ORIGINS", "https://evil-example.com")],
                "WEBAUTHN_RP_ID",
            ),
            (vec![("WEBAUTHN_CHALLENGE_TTL", "0")], "WEBAUTHN_CHALLENGE_TTL"),
        ] {
            let err = read(&vars, "https://example.com").unwrap_err().to_string();
            assert!(err.contains(name), "{vars:?}: {err}");
        }
    }
}
