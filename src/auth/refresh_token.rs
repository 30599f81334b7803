//! Refresh-token rotation's sealed successor: the pair a refresh returned, kept so a
//! duplicate of that refresh inside the grace window gets the very same pair.

use anyhow::anyhow;

use super::token::OpaqueToken;

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
fn successor_key(parent: &OpaqueToken) -> anyhow::Result<aws_lc_rs::aead::LessSafeKey> {
    let mut material = b"authgraph/refresh-successor/v1\0".to_vec();
    material.extend_from_slice(parent.expose().as_bytes());
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &material);
    let key = aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, digest.as_ref())
        .map_err(|_| anyhow!("successor key"))?;
    Ok(aws_lc_rs::aead::LessSafeKey::new(key))
}

/// Encrypts the successor pair under `parent`: nonce || ciphertext || tag.
pub fn seal_successor(parent: &OpaqueToken, successor: &Successor) -> anyhow::Result<Vec<u8>> {
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
pub fn open_successor(parent: &OpaqueToken, sealed: &[u8]) -> Option<Successor> {
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
        let parent = OpaqueToken::generate().unwrap();
        let successor = Successor {
            refresh_token: "child".into(),
            access_token: "jwt".into(),
            refresh_expires_in: 60,
        };
        let sealed = seal_successor(&parent, &successor).unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("child"));
        let opened = open_successor(&parent, &sealed).unwrap();
        assert_eq!(opened.refresh_token, "child");
        let stranger = OpaqueToken::generate().unwrap();
        assert!(open_successor(&stranger, &sealed).is_none());
        assert!(open_successor(&parent, &sealed[..5]).is_none());
    }
}
