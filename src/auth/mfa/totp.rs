//! TOTP per RFC 6238 as authenticator apps expect it: SHA-1, 6 digits, 30-second steps,
//! one step of clock skew either way. Which step a code matched is returned, so the
//! caller can refuse a step already used (RFC 6238 section 5.2).

use anyhow::anyhow;
use totp_rs::{Algorithm, Builder, Secret, Totp};

/// Digits of a code.
pub const DIGITS: u8 = 6;
/// Seconds per time step.
pub const STEP_SECONDS: u64 = 30;
/// Steps accepted before and after the current one.
const SKEW: u16 = 1;

/// A new secret: 160 random bits, RFC 4226's recommended length.
pub fn generate_secret() -> Vec<u8> {
    Secret::generate().as_bytes().to_vec()
}

fn totp(secret: &[u8], issuer: Option<&str>, account: &str) -> anyhow::Result<Totp> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS)
        .with_step_duration(STEP_SECONDS)
        .with_skew(SKEW)
        .with_secret(secret.to_vec())
        .with_issuer(issuer)
        .with_account_name(account)
        .build()
        .map_err(|e| anyhow!("building a TOTP: {e}"))
}

/// The time step `code` matches at `unix_time`, if any.
pub fn check(secret: &[u8], code: &str, unix_time: u64) -> anyhow::Result<Option<u64>> {
    Ok(totp(secret, None, "")?.check(code, unix_time))
}

/// The code of `secret` at `unix_time` (tests, and nothing else, need this).
pub fn code_at(secret: &[u8], unix_time: u64) -> anyhow::Result<String> {
    Ok(totp(secret, None, "")?.generate(unix_time).to_string())
}

/// The secret in base32, as users type it into an authenticator app.
pub fn base32(secret: &[u8]) -> String {
    Secret::from(secret.to_vec()).to_base32()
}

/// The `otpauth://totp/...` URI authenticator apps read from the QR code. `issuer` and
/// `account` must not contain a colon (the label's separator): colons are replaced.
pub fn otpauth_uri(secret: &[u8], issuer: &str, account: &str) -> anyhow::Result<String> {
    let issuer = issuer.replace(':', " ");
    let account = account.replace(':', "_");
    totp(secret, Some(&issuer), &account)?
        .to_url()
        .map_err(|e| anyhow!("writing the otpauth URI: {e}"))
}

/// The URI as a QR code in SVG.
pub fn qr_svg(uri: &str) -> anyhow::Result<String> {
    let code = qrcode::QrCode::new(uri.as_bytes()).map_err(|e| anyhow!("QR code: {e}"))?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B's SHA-1 secret and vectors (the last 6 of their 8 digits).
    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn codes_match_rfc_6238_vectors() {
        for (time, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(code_at(RFC_SECRET, time).unwrap(), code, "at {time}");
        }
    }

    #[test]
    fn one_step_of_skew_either_way_and_the_matched_step_is_returned() {
        let now = 1_800_000_015;
        let step = now / STEP_SECONDS;
        for (offset, expected) in [(-30i64, Some(step - 1)), (0, Some(step)), (30, Some(step + 1))] {
            let code = code_at(RFC_SECRET, now.saturating_add_signed(offset)).unwrap();
            assert_eq!(check(RFC_SECRET, &code, now).unwrap(), expected, "{offset}");
        }
        for offset in [-60i64, 60] {
            let code = code_at(RFC_SECRET, now.saturating_add_signed(offset)).unwrap();
            assert_eq!(check(RFC_SECRET, &code, now).unwrap(), None, "{offset}");
        }
        assert_eq!(check(RFC_SECRET, "+12345", now).unwrap(), None);
        assert_eq!(check(RFC_SECRET, "1234567", now).unwrap(), None);
    }

    #[test]
    fn the_uri_and_qr_code_carry_the_secret_for_apps() {
        let secret = generate_secret();
        assert_eq!(secret.len(), 20);
        let uri = otpauth_uri(&secret, "authgraph", "ada@example.com").unwrap();
        assert!(
            uri.starts_with("otpauth://totp/authgraph:ada%40example.com?"),
            "{uri}"
        );
        assert!(uri.contains(&format!("secret={}", base32(&secret))), "{uri}");
        assert!(uri.contains("issuer=authgraph"), "{uri}");
        let svg = qr_svg(&uri).unwrap();
        assert!(svg.contains("<svg") && svg.ends_with("</svg>"), "{svg}");
    }
}
