//! Opaque tokens (refresh, email, MFA, OAuth state): 256 random bits, handed out once,
//! stored only as a SHA-256 hash.

use anyhow::anyhow;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64URL};
use secrecy::{ExposeSecret, SecretString};

/// Random bytes in a token (ASVS 7.2.3 asks for at least 128 bits).
const TOKEN_BYTES: usize = 32;

/// An opaque token as its holder has it: a refresh token, an email link's token, an
/// MFA challenge token or an OAuth state.
pub struct OpaqueToken(SecretString);

impl OpaqueToken {
    /// Draws a new token from the system CSPRNG.
    pub fn generate() -> anyhow::Result<Self> {
        let mut bytes = [0u8; TOKEN_BYTES];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow!("system random source"))?;
        Ok(Self(SecretString::from(B64URL.encode(bytes))))
    }

    /// Wraps a token a client presented.
    pub fn presented(token: &str) -> Self {
        Self(SecretString::from(token.trim().to_owned()))
    }

    /// The hash under which it is stored and looked up.
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(self.0.expose_secret().as_bytes())
    }

    /// The token itself, to hand to its owner exactly once.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for OpaqueToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpaqueToken(<redacted>)")
    }
}

/// SHA-256 of a token. A full-entropy token needs no salt or slow hash: the hash alone
/// cannot be turned back into a usable token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// The digest, as stored.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The digest by value.
    pub fn to_array(self) -> [u8; 32] {
        self.0
    }

    /// Hashes token bytes.
    pub fn of(bytes: &[u8]) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Self(out)
    }
}

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_256_bits_and_differ() {
        let a = OpaqueToken::generate().unwrap();
        let b = OpaqueToken::generate().unwrap();
        assert_eq!(B64URL.decode(a.expose()).unwrap().len(), 32);
        assert_ne!(a.expose(), b.expose());
        assert!(a.hash() != b.hash());
        assert!(OpaqueToken::presented(a.expose()).hash() == a.hash());
    }

    #[test]
    fn debug_output_redacts() {
        let t = OpaqueToken::generate().unwrap();
        assert!(!format!("{t:?}{:?}", t.hash()).contains(t.expose()));
    }
}
