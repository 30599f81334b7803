//! Access tokens already verified by this process, so a client presenting the same
//! token on every request pays for one signature check per token, not per request
//! (ES256 verification was a quarter of the CPU of a `me`). Envoy's JWT filter keeps
//! the same kind of cache (`jwt_cache_config`).
//!
//! Safe because the key is the SHA-256 of the token's exact bytes: a hit means this very
//! token passed every check before (signature, `kid`, algorithm, `typ`, `iss`, `aud`),
//! and none of those answers can change while the process runs (its keys are fixed at
//! start-up). Time can, so `exp` is checked again on every hit. Revocation is not this
//! cache's business: the session check behind every request still runs. Only tokens
//! that verified are kept, so no one without a valid token can add an entry.

use std::{collections::HashMap, sync::Mutex};

use aws_lc_rs::digest::{SHA256, digest};

use super::Claims;

/// Entries per generation: two generations hold at most twice this many tokens (about
/// 300 bytes each), and a token used again within a generation's life stays.
const PER_GENERATION: usize = 2048;

type Digest = [u8; 32];

/// A bounded map in two generations: when the current one is full it becomes the
/// previous one and the oldest is dropped whole, without per-entry bookkeeping.
#[derive(Default)]
pub(super) struct VerifiedTokens {
    generations: Mutex<Generations>,
}

#[derive(Default)]
struct Generations {
    current: HashMap<Digest, Claims>,
    previous: HashMap<Digest, Claims>,
}

/// The digest a token is kept under.
pub(super) fn digest_of(token: &str) -> Digest {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    out
}

impl VerifiedTokens {
    /// The claims of a token verified before, if it is still kept.
    pub(super) fn get(&self, digest: &Digest) -> Option<Claims> {
        let generations = self.generations.lock().ok()?;
        generations
            .current
            .get(digest)
            .or_else(|| generations.previous.get(digest))
            .cloned()
    }

    /// Keeps the claims of a token that has just passed every check.
    pub(super) fn put(&self, digest: Digest, claims: &Claims) {
        let Ok(mut generations) = self.generations.lock() else {
            return;
        };
        if generations.current.len() >= PER_GENERATION {
            generations.previous = std::mem::take(&mut generations.current);
        }
        generations.current.insert(digest, claims.clone());
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.generations
            .lock()
            .map_or(0, |g| g.current.len() + g.previous.len())
    }
}
