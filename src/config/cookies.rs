//! The refresh-token (and device) cookie: `REFRESH_COOKIE_PATH` and `REFRESH_COOKIE_SAMESITE`.

use anyhow::bail;

/// `SameSite` attribute of the refresh-token cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameSite {
    /// Sent only on same-site requests (the default).
    Strict,
    /// Sent on top-level navigations too.
    Lax,
    /// Sent cross-site (needs `Secure`); for frontends on another site.
    None,
}

impl SameSite {
    /// The attribute value as it appears in `Set-Cookie`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Strict => "Strict",
            Self::Lax => "Lax",
            Self::None => "None",
        }
    }
}

/// Attributes of the cookies this service sets.
#[derive(Clone, Debug)]
pub struct CookieConfig {
    /// `REFRESH_COOKIE_PATH`.
    pub path: String,
    /// `REFRESH_COOKIE_SAMESITE`.
    pub same_site: SameSite,
}

impl CookieConfig {
    /// Reads the variables above.
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let same_site = match get("REFRESH_COOKIE_SAMESITE")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("strict") => SameSite::Strict,
            Some("lax") => SameSite::Lax,
            Some("none") => SameSite::None,
            Some(_) => bail!("REFRESH_COOKIE_SAMESITE must be `Strict`, `Lax` or `None`"),
        };
        let path = get("REFRESH_COOKIE_PATH").unwrap_or_else(|| "/graphql".into());
        if !path.starts_with('/') || path.contains([';', ' ']) {
            bail!("REFRESH_COOKIE_PATH must be a URL path starting with `/`");
        }
        Ok(Self { path, same_site })
    }
}
