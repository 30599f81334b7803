//! Password hashing and checking: `PASSWORD_HASH_CONCURRENCY` and
//! `PASSWORDS_BREACH_CHECK_URL`.

use anyhow::bail;

use super::positive;

/// How passwords are hashed and checked.
#[derive(Clone, Debug)]
pub struct PasswordConfig {
    /// `PASSWORD_HASH_CONCURRENCY`: password hashes run at once (default: the number of cores).
    pub hash_concurrency: usize,
    /// `PASSWORDS_BREACH_CHECK_URL`: a breached-password range API (`None`: no check).
    pub breach_check_url: Option<String>,
}

impl PasswordConfig {
    /// Reads the variables above.
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Ok(Self {
            hash_concurrency: positive(get, "PASSWORD_HASH_CONCURRENCY", cores)?,
            breach_check_url: breach_check_url(get("PASSWORDS_BREACH_CHECK_URL"))?,
        })
    }
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
}
