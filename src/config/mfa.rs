//! Second-factor settings: `MFA_ENCRYPTION_KEY`, `STEP_UP_MAX_AGE`, `MFA_TOKEN_TTL` and
//! `TOTP_ISSUER`.

use std::time::Duration;

use anyhow::bail;
use secrecy::{ExposeSecret, SecretString};

use super::parse_duration;

/// Second factors and step-up.
#[derive(Clone, Debug)]
pub struct MfaConfig {
    /// `MFA_ENCRYPTION_KEY`: 32 random bytes, base64, encrypting TOTP secrets at rest.
    /// Required in production; in development generated in `DATA_DIR/mfa.key`.
    pub encryption_key: Option<SecretString>,
    /// `STEP_UP_MAX_AGE`: how recent a second factor (or, without one, a sign-in) must
    /// be for sensitive operations.
    pub step_up_max_age: Duration,
    /// `MFA_TOKEN_TTL`: lifetime of the `mfaToken` of `MFA_REQUIRED`.
    pub token_ttl: Duration,
    /// `TOTP_ISSUER`: the name authenticator apps show beside the account.
    pub totp_issuer: String,
}

impl MfaConfig {
    /// Reads the variables above; `production` makes the key mandatory.
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let duration = |name: &str, default: &str| -> anyhow::Result<Duration> {
            let raw = get(name).unwrap_or_else(|| default.to_owned());
            match parse_duration(&raw) {
                Some(d) if !d.is_zero() => Ok(d),
                _ => bail!(
                    "{name} must be a duration longer than zero like `90s`, `10m` or plain seconds, not `{raw}`"
                ),
            }
        };
        let encryption_key = get("MFA_ENCRYPTION_KEY").map(SecretString::from);
        // The error names the variable and never quotes the value. (Required only to
        // serve in production, `Config::require_signing_keys`: operator commands decrypt
        // nothing.)
        if let Some(key) = &encryption_key {
            crate::auth::mfa::cipher::decode_key(key.expose_secret())?;
        }
        let totp_issuer = get("TOTP_ISSUER").unwrap_or_else(|| "authgraph".into());
        if totp_issuer.contains(':') || totp_issuer.chars().any(char::is_control) {
            bail!("TOTP_ISSUER must be a plain name without `:` (authenticator apps split labels on it)");
        }
        Ok(Self {
            encryption_key,
            step_up_max_age: duration("STEP_UP_MAX_AGE", "10m")?,
            token_ttl: duration("MFA_TOKEN_TTL", "5m")?,
            totp_issuer,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(vars: &[(&str, &str)], _production: bool) -> anyhow::Result<MfaConfig> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        MfaConfig::from_lookup(&|k: &str| map.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = read(&[], false).unwrap();
        assert_eq!(c.step_up_max_age, Duration::from_secs(600));
        assert_eq!(c.token_ttl, Duration::from_secs(300));
        assert_eq!(c.totp_issuer, "authgraph");
        assert!(c.encryption_key.is_none());
    }

    #[test]
    fn a_bad_key_is_named_not_echoed() {
        let key = "c2hvcnQta2V5LWh1bnRlcjI="; // 16 bytes
        let err = read(&[("MFA_ENCRYPTION_KEY", key)], true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("MFA_ENCRYPTION_KEY") && !err.contains(key), "{err}");
        let good = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        assert!(read(&[("MFA_ENCRYPTION_KEY", good)], true).is_ok());
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        for (name, value) in [
            ("STEP_UP_MAX_AGE", "soon"),
            ("STEP_UP_MAX_AGE", "0"),
            ("MFA_TOKEN_TTL", "-5"),
            ("TOTP_ISSUER", "https://auth.example.com"),
        ] {
            let err = read(&[(name, value)], false).unwrap_err().to_string();
            assert!(err.contains(name), "{name}: {err}");
        }
    }
}
