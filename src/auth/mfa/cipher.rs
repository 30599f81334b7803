//! `MFA_ENCRYPTION_KEY`: AES-256-GCM over TOTP secrets at rest, so a copy of the database
//! alone yields no factor (the secret is not stored in the clear beside the password hash).

use std::path::Path;

use anyhow::{Context, anyhow};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use secrecy::{ExposeSecret, SecretString};

/// Length of the key, in bytes.
pub const KEY_LEN: usize = 32;

/// Seals and opens TOTP secrets.
pub struct SecretCipher {
    key: LessSafeKey,
}

impl std::fmt::Debug for SecretCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretCipher(<redacted>)")
    }
}

impl SecretCipher {
    /// A cipher over 32 key bytes.
    pub fn new(key: &[u8]) -> anyhow::Result<Self> {
        anyhow::ensure!(key.len() == KEY_LEN, "the key must be {KEY_LEN} bytes");
        let key = UnboundKey::new(&AES_256_GCM, key).map_err(|_| anyhow!("AES-256-GCM key"))?;
        Ok(Self {
            key: LessSafeKey::new(key),
        })
    }

    /// Parses the base64 form of `MFA_ENCRYPTION_KEY`. The error never quotes the value.
    pub fn from_base64(value: &str) -> anyhow::Result<Self> {
        let bytes = decode_key(value)?;
        Self::new(&bytes)
    }

    /// A cipher with a random key that lives as long as the process (tests, and states
    /// built without configuration).
    pub fn ephemeral() -> anyhow::Result<Self> {
        Self::new(&random_key()?)
    }

    /// Encrypts `plain`, bound to `context` (the row it belongs in): nonce || ciphertext || tag.
    pub fn seal(&self, plain: &[u8], context: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| anyhow!("system random source"))?;
        let mut data = plain.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(context), &mut data)
            .map_err(|_| anyhow!("sealing a secret"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(out)
    }

    /// Opens what [`SecretCipher::seal`] sealed with the same `context`. Fails for another
    /// key (a changed `MFA_ENCRYPTION_KEY`), another row, or altered bytes.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> anyhow::Result<Vec<u8>> {
        let (nonce, data) = sealed
            .split_at_checked(NONCE_LEN)
            .context("sealed secret too short")?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| anyhow!("nonce"))?;
        let mut data = data.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context), &mut data)
            .map_err(|_| anyhow!("a TOTP secret does not open: was MFA_ENCRYPTION_KEY changed?"))?;
        Ok(plain.to_vec())
    }
}

fn random_key() -> anyhow::Result<[u8; KEY_LEN]> {
    let mut key = [0u8; KEY_LEN];
    aws_lc_rs::rand::fill(&mut key).map_err(|_| anyhow!("system random source"))?;
    Ok(key)
}

/// Decodes a base64 key (standard or URL-safe alphabet, padded or not) of 32 bytes.
pub fn decode_key(value: &str) -> anyhow::Result<Vec<u8>> {
    let value = value.trim();
    let bytes = B64
        .decode(value)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(value))
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(value))
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(value))
        .map_err(|_| {
            anyhow!("MFA_ENCRYPTION_KEY must be base64 (generate one with `openssl rand -base64 32`)")
        })?;
    anyhow::ensure!(
        bytes.len() == KEY_LEN,
        "MFA_ENCRYPTION_KEY must hold {KEY_LEN} bytes, not {}",
        bytes.len()
    );
    Ok(bytes)
}

/// The key from `MFA_ENCRYPTION_KEY`, or in development from `<DATA_DIR>/mfa.key`,
/// generated there on first start (as the development signing key is).
pub fn load_key(configured: Option<&SecretString>, dev_dir: &Path) -> anyhow::Result<SecretCipher> {
    if let Some(value) = configured {
        return SecretCipher::from_base64(value.expose_secret());
    }
    let path = dev_dir.join("mfa.key");
    if !path.exists() {
        super::super::jwt::write_private(&path, &format!("{}\n", B64.encode(random_key()?)))?;
        tracing::info!(path = %path.display(), "generated a development MFA encryption key");
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the development MFA key from {}", path.display()))?;
    SecretCipher::from_base64(&text).with_context(|| format!("development MFA key in {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_key_and_row_open_a_secret() {
        let cipher = SecretCipher::ephemeral().unwrap();
        let sealed = cipher.seal(b"JBSWY3DPEHPK3PXP", b"row-1").unwrap();
        assert!(!sealed.windows(4).any(|w| w == b"JBSW"));
        assert_eq!(cipher.open(&sealed, b"row-1").unwrap(), b"JBSWY3DPEHPK3PXP");
        assert!(cipher.open(&sealed, b"row-2").is_err(), "moved to another row");
        let other = SecretCipher::ephemeral().unwrap();
        assert!(other.open(&sealed, b"row-1").is_err(), "another key");
        assert!(cipher.open(&sealed[..8], b"row-1").is_err());
    }

    #[test]
    fn keys_are_32_bytes_of_base64_and_never_echoed() {
        let key = B64.encode([7u8; 32]);
        assert!(SecretCipher::from_base64(&key).is_ok());
        assert!(SecretCipher::from_base64(key.trim_end_matches('=')).is_ok());
        let short = B64.encode([7u8; 16]);
        let err = SecretCipher::from_base64(&short).unwrap_err().to_string();
        assert!(err.contains("32 bytes") && !err.contains(&short), "{err}");
        let err = SecretCipher::from_base64("hunter2 not base64!")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("MFA_ENCRYPTION_KEY") && !err.contains("hunter2"),
            "{err}"
        );
    }

    #[test]
    fn development_keys_are_generated_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("authgraph-mfa-{}", uuid::Uuid::new_v4()));
        let first = load_key(None, &dir).unwrap();
        let sealed = first.seal(b"secret", b"ctx").unwrap();
        let again = load_key(None, &dir).unwrap();
        assert_eq!(again.open(&sealed, b"ctx").unwrap(), b"secret");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
