//! Newtypes checked at construction: once a value has one of these types, it is valid.

use secrecy::{ExposeSecret, SecretString};
use unicode_normalization::UnicodeNormalization;

use super::AuthError;

/// Fewest code points in a password (NIST 800-63B, ASVS 6.2.1).
pub const PASSWORD_MIN: usize = 8;
/// Most code points in a password (ASVS 6.2.9 asks for at least 64).
pub const PASSWORD_MAX: usize = 128;
/// Most characters in a display name.
pub const DISPLAY_NAME_MAX: usize = 64;
/// Longest email address (RFC 5321 path limit).
const EMAIL_MAX: usize = 254;

/// A trimmed, lowercased, syntactically valid email address.
#[derive(Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Normalises and validates; `field` names the input in the error.
    pub fn parse(raw: &str, field: &'static str) -> Result<Self, AuthError> {
        let email = raw.trim().to_lowercase();
        if email.is_empty() {
            return Err(AuthError::input(field, "email is required"));
        }
        if email.chars().count() > EMAIL_MAX {
            return Err(AuthError::input(field, "email is too long"));
        }
        // The crate accepts display-name forms and quoted locals; a login address needs
        // neither, and refusing control characters keeps mail headers clean (ASVS 1.3.11).
        let plain = !email.contains(['<', '>', '"', ' ']) && !email.chars().any(char::is_control);
        let domain_ok = email
            .rsplit_once('@')
            .is_some_and(|(_, d)| d.contains('.') && !d.starts_with('.') && !d.ends_with('.'));
        if !plain || !domain_ok || !email_address::EmailAddress::is_valid(&email) {
            return Err(AuthError::input(field, "enter a valid email address"));
        }
        Ok(Self(email))
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Email(<redacted>)")
    }
}

/// A password in NFKC form, so the NFC and NFD spellings of one password are the same
/// password. Never trimmed or truncated (ASVS 6.2.8).
pub struct Password(SecretString);

impl Password {
    /// Normalises a password given to check against a stored hash: no policy applies.
    pub fn candidate(raw: &str) -> Self {
        Self(SecretString::from(raw.nfkc().collect::<String>()))
    }

    /// Normalises and checks a new password against the policy.
    pub fn new_password(raw: &str, field: &'static str) -> Result<Self, AuthError> {
        let password = Self::candidate(raw);
        let len = password.0.expose_secret().chars().count();
        if len < PASSWORD_MIN {
            return Err(AuthError::input(
                field,
                format!("password must be at least {PASSWORD_MIN} characters"),
            ));
        }
        if len > PASSWORD_MAX {
            return Err(AuthError::input(
                field,
                format!("password must be at most {PASSWORD_MAX} characters"),
            ));
        }
        Ok(password)
    }

    /// The normalised bytes, for hashing only.
    pub fn expose(&self) -> &[u8] {
        self.0.expose_secret().as_bytes()
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A display name: trimmed, 1 to 64 characters, no control characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    /// Trims and validates.
    pub fn parse(raw: &str) -> Result<Self, AuthError> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(AuthError::input(
                "displayName",
                "display name must not be empty (leave it out or send null instead)",
            ));
        }
        if name.chars().count() > DISPLAY_NAME_MAX {
            return Err(AuthError::input(
                "displayName",
                format!("display name must be at most {DISPLAY_NAME_MAX} characters"),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(AuthError::input(
                "displayName",
                "display name must not contain control characters",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// The trimmed name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(err: AuthError) -> &'static str {
        match err {
            AuthError::InvalidInput { field, .. } => field,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn emails_are_trimmed_and_lowercased() {
        let e = Email::parse("  Alice@Example.COM ", "email").unwrap();
        assert_eq!(e.as_str(), "alice@example.com");
    }

    #[test]
    fn malformed_emails_name_their_field() {
        for bad in [
            "",
            "   ",
            "alice",
            "alice@",
            "@example.com",
            "alice@example",
            "a b@example.com",
            "Alice <alice@example.com>",
            "alice@example.com\r\nBcc: x@y.z",
            &format!("{}@example.com", "a".repeat(250)),
        ] {
            assert_eq!(
                field_of(Email::parse(bad, "email").unwrap_err()),
                "email",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn password_length_counts_code_points_after_nfkc() {
        // Seven code points, fourteen bytes: too short although bytes would pass.
        assert!(Password::new_password("ééééééé", "password").is_err());
        assert!(Password::new_password("éééééééé", "password").is_ok());
        assert!(Password::new_password(&"x".repeat(128), "password").is_ok());
        let err = Password::new_password(&"x".repeat(129), "newPassword").unwrap_err();
        assert_eq!(field_of(err), "newPassword");
    }

    #[test]
    fn nfc_and_nfd_spellings_are_the_same_password() {
        let nfc = Password::candidate("caf\u{e9} au lait");
        let nfd = Password::candidate("cafe\u{301} au lait");
        assert_eq!(nfc.expose(), nfd.expose());
    }

    #[test]
    fn passwords_are_never_trimmed() {
        let p = Password::candidate("  spaced  ");
        assert_eq!(p.expose(), b"  spaced  ");
    }

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(DisplayName::parse("  Ada  ").unwrap().as_str(), "Ada");
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse(&"n".repeat(64)).is_ok());
        assert!(DisplayName::parse(&"n".repeat(65)).is_err());
        assert!(DisplayName::parse("Ada\u{7}").is_err());
    }

    #[test]
    fn debug_output_hides_secrets_and_emails() {
        let p = Password::candidate("hunter2hunter2");
        let e = Email::parse("alice@example.com", "email").unwrap();
        let out = format!("{p:?} {e:?}");
        assert!(!out.contains("hunter2") && !out.contains("alice"), "{out}");
    }
}
