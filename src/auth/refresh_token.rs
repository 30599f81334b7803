//! Opaque refresh tokens: 256 random bits, handed out once, stored only as a SHA-256 hash.

use anyhow::anyhow;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64URL};
use secrecy::{ExposeSecret, SecretString};

/// Random bytes in a token (ASVS 7.2.3 asks for at least 128 bits).
const TOKEN_BYTES: usize = 32;

/// A refresh token as the client holds it.
pub struct PlainToken(SecretString);

impl PlainToken {
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

impl std::fmt::Debug for PlainToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlainToken(<redacted>)")
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
        let a = PlainToken::generate().unwrap();
        let b = PlainToken::generate().unwrap();
        assert_eq!(B64URL.decode(a.expose()).unwrap().len(), 32);
        assert_ne!(a.expose(), b.expose());
        assert!(a.hash() != b.hash());
        assert!(PlainToken::presented(a.expose()).hash() == a.hash());
    }

    #[test]
    fn debug_output_redacts() {
        let t = PlainToken::generate().unwrap();
        assert!(!format!("{t:?}{:?}", t.hash()).contains(t.expose()));
    }
}

/// The pair a refresh returned, kept sealed under its parent token so a duplicate of
/// that refresh inside the grace window can be answered with the very same pair.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Successor {
    /// The new refresh token.
    pub refresh_token: String,
    /// The new access token.
    pub access_token: String,
    /// Seconds the new refresh token had to live when issued.
    pub refresh_expires_in: i64,
}

impl std::fmt::Debug for Successor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Successor(<redacted>)")
    }
}

const NONCE_LEN: usize = 12;

/// AES-256-GCM key derived from the parent token: only a holder of the parent can open
/// what is sealed under it, so the database never holds a usable token (domain-separated
/// from the lookup hash, which is public to anyone reading the table).
fn successor_key(parent: &PlainToken) -> anyhow::Result<aws_lc_rs::aead::LessSafeKey> {
    let mut material = b"authgraph/refresh-successor/v1\0".to_vec();
    material.extend_from_slice(parent.expose().as_bytes());
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &material);
    let key = aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, digest.as_ref())
        .map_err(|_| anyhow!("successor key"))?;
    Ok(aws_lc_rs::aead::LessSafeKey::new(key))
}

/// Encrypts the successor pair under `parent`: nonce || ciphertext || tag.
pub fn seal_successor(parent: &PlainToken, successor: &Successor) -> anyhow::Result<Vec<u8>> {
    use aws_lc_rs::aead::{Aad, Nonce};
    let key = successor_key(parent)?;
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| anyhow!("system random source"))?;
    let mut data = serde_json::to_vec(successor)?;
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
        .map_err(|_| anyhow!("sealing the successor"))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&data);
    Ok(out)
}

/// Opens what [`seal_successor`] sealed; `None` when `parent` is not the right token.
pub fn open_successor(parent: &PlainToken, sealed: &[u8]) -> Option<Successor> {
    use aws_lc_rs::aead::{Aad, Nonce};
    let (nonce, data) = sealed.split_at_checked(NONCE_LEN)?;
    let key = successor_key(parent).ok()?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut data = data.to_vec();
    let plain = key.open_in_place(nonce, Aad::empty(), &mut data).ok()?;
    serde_json::from_slice(plain).ok()
}

#[cfg(test)]
mod sealing_tests {
    use super::*;

    #[test]
    fn only_the_parent_opens_its_successor() {
        let parent = PlainToken::generate().unwrap();
        let successor = Successor {
            refresh_token: "child".into(),
            access_token: "jwt".into(),
            refresh_expires_in: 60,
        };
        let sealed = seal_successor(&parent, &successor).unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("child"));
        let opened = open_successor(&parent, &sealed).unwrap();
        assert_eq!(opened.refresh_token, "child");
        let stranger = PlainToken::generate().unwrap();
        assert!(open_successor(&stranger, &sealed).is_none());
        assert!(open_successor(&parent, &sealed[..5]).is_none());
    }
}
