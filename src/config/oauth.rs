//! Social sign-in settings: `OAUTH_PROVIDERS`, per provider `OAUTH_<ID>_KIND`, `_ISSUER`,
//! `_CLIENT_ID`, `_CLIENT_SECRET`, `_NAME`, `_TRUST_EMAIL`, `_AUTH_URL`, `_TOKEN_URL`,
//! `_API_URL`; `OAUTH_REDIRECT_URIS`, `OAUTH_STATE_TTL`, `OAUTH_HTTP_TIMEOUT`,
//! `OAUTH_BREAKER_FAILURES` and `OAUTH_BREAKER_OPEN`.

use std::time::Duration;

use anyhow::bail;
use secrecy::SecretString;

use super::parse_duration;

/// GitHub's authorization endpoint.
pub const GITHUB_AUTH_URL: &str = "https://github.com/login/oauth/authorize";
/// GitHub's token endpoint.
pub const GITHUB_TOKEN_URL: &str = "https://github.com/login/oauth/access_token";
/// GitHub's REST API.
pub const GITHUB_API_URL: &str = "https://api.github.com";

/// How a provider is spoken to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderKind {
    /// OpenID Connect: endpoints and keys from the issuer's discovery document.
    Oidc {
        /// `OAUTH_<ID>_ISSUER`, exactly as the ID tokens' `iss` claim spells it.
        issuer: String,
    },
    /// GitHub's plain OAuth2 with its user and verified-emails endpoints.
    Github {
        /// `OAUTH_<ID>_AUTH_URL`.
        auth_url: String,
        /// `OAUTH_<ID>_TOKEN_URL`.
        token_url: String,
        /// `OAUTH_<ID>_API_URL`: `/user` and `/user/emails` below it.
        api_url: String,
    },
}

/// One configured provider.
#[derive(Clone, Debug)]
pub struct ProviderConfig {
    /// The id clients pass to `startOAuth` (lower case).
    pub id: String,
    /// `OAUTH_<ID>_NAME`: shown by `oauthProviders`.
    pub name: String,
    /// `OAUTH_<ID>_KIND` and its endpoints.
    pub kind: ProviderKind,
    /// `OAUTH_<ID>_CLIENT_ID`.
    pub client_id: String,
    /// `OAUTH_<ID>_CLIENT_SECRET` (none for a public client relying on PKCE alone).
    pub client_secret: Option<SecretString>,
    /// `OAUTH_<ID>_TRUST_EMAIL`: this provider's `email_verified` is believed.
    pub trust_email: bool,
}

/// Social sign-in as a whole.
#[derive(Clone, Debug)]
pub struct OAuthConfig {
    /// The providers of `OAUTH_PROVIDERS`, in its order.
    pub providers: Vec<ProviderConfig>,
    /// `OAUTH_REDIRECT_URIS`: `startOAuth`'s `redirectUri` must equal one of them.
    pub redirect_uris: Vec<String>,
    /// `OAUTH_STATE_TTL`: how long a started flow may be completed.
    pub state_ttl: Duration,
    /// `OAUTH_HTTP_TIMEOUT`: longest any one call to a provider may take.
    pub http_timeout: Duration,
    /// `OAUTH_BREAKER_FAILURES`: consecutive provider failures that open its breaker.
    pub breaker_failures: u32,
    /// `OAUTH_BREAKER_OPEN`: how long an open breaker refuses calls.
    pub breaker_open: Duration,
}

fn http_url(name: &str, raw: &str) -> anyhow::Result<String> {
    let url = raw.trim();
    match url::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() => {
            Ok(url.to_owned())
        }
        _ => bail!("{name} must be an http(s) URL"),
    }
}

impl OAuthConfig {
    /// Reads the variables above. `public_url` gives the default redirect URI.
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>, public_url: &str) -> anyhow::Result<Self> {
        let duration = |name: &str, default: &str| -> anyhow::Result<Duration> {
            let raw = get(name).unwrap_or_else(|| default.to_owned());
            match parse_duration(&raw) {
                Some(d) if !d.is_zero() => Ok(d),
                _ => bail!("{name} must be a duration longer than zero like `90s`, `10m` or plain seconds"),
            }
        };
        let mut providers: Vec<ProviderConfig> = Vec::new();
        for id in get("OAUTH_PROVIDERS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|id| !id.is_empty())
        {
            let id = id.to_ascii_lowercase();
            if !id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                bail!("OAUTH_PROVIDERS must list ids of letters, digits and `_`, not `{id}`");
            }
            if providers.iter().any(|p| p.id == id) {
                bail!("OAUTH_PROVIDERS lists `{id}` twice");
            }
            let prefix = format!("OAUTH_{}_", id.to_ascii_uppercase());
            let var = |suffix: &str| get(&format!("{prefix}{suffix}"));
            let kind = match var("KIND").as_deref().map(str::to_ascii_lowercase).as_deref() {
                None | Some("oidc") => {
                    let Some(issuer) = var("ISSUER") else {
                        bail!("{prefix}ISSUER must be set for an OpenID Connect provider");
                    };
                    ProviderKind::Oidc {
                        issuer: http_url(&format!("{prefix}ISSUER"), &issuer)?,
                    }
                }
                Some("github") => ProviderKind::Github {
                    auth_url: http_url(
                        &format!("{prefix}AUTH_URL"),
                        &var("AUTH_URL").unwrap_or_else(|| GITHUB_AUTH_URL.into()),
                    )?,
                    token_url: http_url(
                        &format!("{prefix}TOKEN_URL"),
                        &var("TOKEN_URL").unwrap_or_else(|| GITHUB_TOKEN_URL.into()),
                    )?,
                    api_url: http_url(
                        &format!("{prefix}API_URL"),
                        &var("API_URL").unwrap_or_else(|| GITHUB_API_URL.into()),
                    )?
                    .trim_end_matches('/')
                    .to_owned(),
                },
                Some(other) => bail!("{prefix}KIND must be `oidc` or `github`, not `{other}`"),
            };
            let Some(client_id) = var("CLIENT_ID") else {
                bail!("{prefix}CLIENT_ID must be set");
            };
            let trust_email = match var("TRUST_EMAIL")
                .as_deref()
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                None | Some("false") => false,
                Some("true") => true,
                Some(_) => bail!("{prefix}TRUST_EMAIL must be `true` or `false`"),
            };
            providers.push(ProviderConfig {
                name: var("NAME").unwrap_or_else(|| id.clone()),
                id,
                kind,
                client_id,
                client_secret: var("CLIENT_SECRET").map(SecretString::from),
                trust_email,
            });
        }
        let redirect_uris = match get("OAUTH_REDIRECT_URIS") {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(|u| http_url("OAUTH_REDIRECT_URIS", u))
                .collect::<anyhow::Result<Vec<_>>>()?,
            None => vec![format!("{public_url}/auth/callback")],
        };
        let breaker_failures = match get("OAUTH_BREAKER_FAILURES") {
            None => 3,
            Some(raw) => match raw.trim().parse::<u32>() {
                Ok(n) if n > 0 => n,
                _ => bail!("OAUTH_BREAKER_FAILURES must be a whole number above zero"),
            },
        };
        Ok(Self {
            providers,
            redirect_uris,
            state_ttl: duration("OAUTH_STATE_TTL", "10m")?,
            http_timeout: duration("OAUTH_HTTP_TIMEOUT", "10s")?,
            breaker_failures,
            breaker_open: duration("OAUTH_BREAKER_OPEN", "30s")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use secrecy::ExposeSecret;

    use super::*;

    fn read(vars: &[(&str, &str)]) -> anyhow::Result<OAuthConfig> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        OAuthConfig::from_lookup(&|k: &str| map.get(k).cloned(), "https://app.example")
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = read(&[]).unwrap();
        assert!(c.providers.is_empty());
        assert_eq!(c.redirect_uris, ["https://app.example/auth/callback"]);
        assert_eq!(c.state_ttl, Duration::from_secs(600));
    }

    #[test]
    fn providers_are_read_per_id() {
        let c = read(&[
            ("OAUTH_PROVIDERS", "Google, github"),
            ("OAUTH_GOOGLE_ISSUER", "https://accounts.google.com"),
            ("OAUTH_GOOGLE_CLIENT_ID", "g-id"),
            ("OAUTH_GOOGLE_CLIENT_SECRET", "g-secret"),
            ("OAUTH_GOOGLE_TRUST_EMAIL", "true"),
            ("OAUTH_GOOGLE_NAME", "Google"),
            ("OAUTH_GITHUB_KIND", "github"),
            ("OAUTH_GITHUB_CLIENT_ID", "gh-id"),
        ])
        .unwrap();
        let [google, github] = &c.providers[..] else {
            panic!()
        };
        assert_eq!(google.id, "google");
        assert_eq!(google.name, "Google");
        assert!(google.trust_email);
        assert_eq!(google.client_secret.as_ref().unwrap().expose_secret(), "g-secret");
        assert_eq!(github.name, "github");
        assert!(!github.trust_email);
        assert_eq!(
            github.kind,
            ProviderKind::Github {
                auth_url: GITHUB_AUTH_URL.into(),
                token_url: GITHUB_TOKEN_URL.into(),
                api_url: GITHUB_API_URL.into(),
            }
        );
    }

    #[test]
    fn a_missing_or_bad_setting_names_its_variable_and_not_the_secret() {
        let err = read(&[("OAUTH_PROVIDERS", "acme"), ("OAUTH_ACME_CLIENT_ID", "x")]).unwrap_err();
        assert!(err.to_string().contains("OAUTH_ACME_ISSUER"), "{err}");
        let err = read(&[
            ("OAUTH_PROVIDERS", "acme"),
            ("OAUTH_ACME_ISSUER", "https://idp.example"),
            ("OAUTH_ACME_CLIENT_SECRET", "hunter2"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("OAUTH_ACME_CLIENT_ID"), "{err}");
        assert!(!format!("{err:?}").contains("hunter2"));
        let err = read(&[("OAUTH_REDIRECT_URIS", "javascript:alert(1)")]).unwrap_err();
        assert!(err.to_string().contains("OAUTH_REDIRECT_URIS"), "{err}");
    }
}
