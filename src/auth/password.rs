//! Password hashing: argon2id (OWASP parameters) off the async runtime, with bounded
//! concurrency and reused memory, so a login storm neither stalls other requests nor
//! grows the process by 19 MiB per attempt.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};

use anyhow::{Context, anyhow};
use argon2::{
    ARGON2ID_IDENT, Algorithm, Argon2, Block, Params, PasswordHash, Version,
    password_hash::phc::{Output, ParamsString, Salt},
};
use tokio::sync::Semaphore;

use super::{AuthError, input::Password};

/// OWASP Password Storage Cheat Sheet: m=19456 KiB, t=2, p=1.
const M_COST: u32 = 19_456;
const T_COST: u32 = 2;
const P_COST: u32 = 1;
const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;

/// Hashes and verifies passwords on the blocking pool, at most `concurrency` at a time.
#[derive(Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
}

struct Inner {
    permits: Arc<Semaphore>,
    /// One buffer per job that ever ran at once: never more than `concurrency`.
    buffers: Mutex<Vec<Vec<Block>>>,
    params: Params,
    /// A hash of a random password, verified when the email is unknown so that costs
    /// the same as a wrong password (ASVS 6.3.8).
    dummy: String,
    waiting: AtomicUsize,
}

impl PasswordHasher {
    /// Builds the hasher; computes the dummy hash once, which takes one hash's time.
    pub fn new(concurrency: usize) -> anyhow::Result<Self> {
        let params = Params::new(M_COST, T_COST, P_COST, Some(HASH_LEN))
            .map_err(|e| anyhow!("argon2 parameters: {e}"))?;
        let mut random = [0u8; 32];
        aws_lc_rs::rand::fill(&mut random).map_err(|_| anyhow!("system random source"))?;
        let mut buffer = vec![Block::default(); params.block_count()];
        let dummy = hash_with(&params, &random, &mut buffer)?;
        Ok(Self {
            inner: Arc::new(Inner {
                permits: Arc::new(Semaphore::new(concurrency.max(1))),
                buffers: Mutex::new(vec![buffer]),
                params,
                dummy,
                waiting: AtomicUsize::new(0),
            }),
        })
    }

    /// Hashes a new password into a PHC string.
    pub async fn hash(&self, password: Password) -> Result<String, AuthError> {
        self.run("hash", move |params, buffer| {
            hash_with(params, password.expose(), buffer)
        })
        .await?
        .map_err(AuthError::Internal)
    }

    /// Checks a password against a stored PHC string, or against the dummy hash when
    /// there is none (unknown email), so both cost one full verification.
    pub async fn verify(&self, password: Password, phc: Option<String>) -> Result<bool, AuthError> {
        let inner = self.inner.clone();
        let matched = self
            .run("verify", move |params, buffer| {
                let phc = phc.as_deref().unwrap_or(&inner.dummy);
                verify_with(params, password.expose(), phc, buffer)
            })
            .await?
            .map_err(AuthError::Internal)?;
        Ok(matched)
    }

    /// Jobs waiting for a slot right now.
    pub fn queue_depth(&self) -> usize {
        self.inner.waiting.load(Ordering::Relaxed)
    }

    async fn run<T: Send + 'static>(
        &self,
        op: &'static str,
        job: impl FnOnce(&Params, &mut [Block]) -> T + Send + 'static,
    ) -> Result<T, AuthError> {
        // The depth is sampled when /metrics is scraped (`queue_depth`). A guard, so a
        // request cancelled while it waits (client gone) leaves the queue too.
        let queued = Queued::enter(&self.inner.waiting);
        let permit = self.inner.permits.clone().acquire_owned().await;
        drop(queued);
        let permit = permit.context("password hasher closed")?;
        let inner = self.inner.clone();
        // The blocking thread logs into the caller's span and through the caller's
        // subscriber (a test's scoped one included), not the thread's global default.
        let span = tracing::Span::current();
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        tokio::task::spawn_blocking(move || {
            tracing::dispatcher::with_default(&dispatch, || {
                // The job owns the permit: a client that disconnects mid-hash cannot free
                // its slot while the hash still burns a core.
                let _permit = permit;
                yield_to_requests();
                let _span = span.enter();
                let started = std::time::Instant::now();
                let reused = inner.buffers.lock().ok().and_then(|mut b| b.pop());
                let mut buffer = reused.unwrap_or_else(|| vec![Block::default(); inner.params.block_count()]);
                let out = job(&inner.params, &mut buffer);
                crate::metrics::password_hash(op, started.elapsed());
                if let Ok(mut buffers) = inner.buffers.lock() {
                    buffers.push(buffer);
                }
                tracing::trace!(elapsed_ms = started.elapsed().as_millis(), "argon2 job done");
                out
            })
        })
        .await
        .map_err(|e| AuthError::Internal(anyhow!("password hashing task failed: {e}")))
    }
}

/// One job waiting for a slot, counted in `waiting` while it lives.
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    fn enter(waiting: &'a AtomicUsize) -> Self {
        waiting.fetch_add(1, Ordering::Relaxed);
        Self(waiting)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Lowers the calling thread's scheduling priority (to nice 19) the first time it runs
/// a hash: with every core busy hashing during a login storm, the threads serving
/// token checks (and the database) still win the CPU at once, so `me` keeps its latency
/// while logins queue. Hashing still gets every cycle nothing else wants; under a load
/// that saturates the cores with other requests, logins slow down first, by design. The
/// blocking-pool thread keeps the lower priority for later jobs, which in this service
/// are hashes too. Failure (a platform without per-thread nice) only costs that benefit.
fn yield_to_requests() {
    use std::cell::Cell;
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy, set_thread_priority_and_policy,
        thread_native_id,
    };
    thread_local! {
        static LOWERED: Cell<bool> = const { Cell::new(false) };
    }
    LOWERED.with(|lowered| {
        if !lowered.replace(true) {
            let _ = set_thread_priority_and_policy(
                thread_native_id(),
                ThreadPriority::Min,
                ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other),
            );
        }
    });
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn hash_with(params: &Params, password: &[u8], buffer: &mut [Block]) -> anyhow::Result<String> {
    let mut salt = [0u8; SALT_LEN];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| anyhow!("system random source"))?;
    let mut out = [0u8; HASH_LEN];
    argon2(params)
        .hash_password_into_with_memory(password, &salt, &mut out, &mut buffer[..params.block_count()])
        .map_err(|e| anyhow!("argon2: {e}"))?;
    let phc = PasswordHash {
        algorithm: ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| anyhow!("argon2 parameters: {e}"))?,
        salt: Some(Salt::new(&salt).map_err(|e| anyhow!("salt: {e}"))?),
        hash: Some(Output::new(&out).map_err(|e| anyhow!("argon2 output: {e}"))?),
    };
    Ok(phc.to_string())
}

fn verify_with(current: &Params, password: &[u8], phc: &str, buffer: &mut [Block]) -> anyhow::Result<bool> {
    let phc = PasswordHash::new(phc).map_err(|e| anyhow!("stored password hash: {e}"))?;
    anyhow::ensure!(
        phc.algorithm == ARGON2ID_IDENT && phc.version == Some(Version::V0x13.into()),
        "stored password hash is not an argon2id v19 PHC string"
    );
    let (Some(salt), Some(expected)) = (&phc.salt, &phc.hash) else {
        anyhow::bail!("stored password hash lacks its salt or output");
    };
    let params = Params::try_from(&phc).map_err(|e| anyhow!("stored argon2 params: {e}"))?;
    let mut out = vec![0u8; expected.len()];
    let blocks = params.block_count();
    // Hashes made with other parameters (an older policy) still verify, with their own memory.
    let mut own;
    let memory = if blocks <= buffer.len() && params.m_cost() <= current.m_cost() {
        &mut buffer[..blocks]
    } else {
        own = vec![Block::default(); blocks];
        &mut own[..]
    };
    argon2(&params)
        .hash_password_into_with_memory(password, salt, &mut out, memory)
        .map_err(|e| anyhow!("argon2: {e}"))?;
    Ok(aws_lc_rs::constant_time::verify_slices_are_equal(&out, expected.as_bytes()).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hasher = PasswordHasher::new(2).unwrap();
        let phc = hasher.hash(Password::candidate("correct horse")).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(
            hasher
                .verify(Password::candidate("correct horse"), Some(phc.clone()))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify(Password::candidate("correct horsE"), Some(phc))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn unknown_users_verify_against_the_dummy_and_fail() {
        let hasher = PasswordHasher::new(1).unwrap();
        assert!(
            !hasher
                .verify(Password::candidate("anything"), None)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn buffers_are_reused_not_multiplied() {
        let hasher = PasswordHasher::new(2).unwrap();
        let jobs: Vec<_> = (0..8)
            .map(|i| {
                let h = hasher.clone();
                tokio::spawn(async move { h.hash(Password::candidate(&format!("pw{i}"))).await })
            })
            .collect();
        for job in jobs {
            job.await.unwrap().unwrap();
        }
        let buffers = hasher.inner.buffers.lock().unwrap().len();
        assert!(buffers <= 2, "{buffers} buffers for a concurrency of 2");
    }

    #[test]
    fn hashes_with_other_parameters_still_verify() {
        let params = Params::new(8 * 1024, 1, 1, Some(32)).unwrap();
        let mut small = vec![Block::default(); params.block_count()];
        let phc = hash_with(&params, b"older policy", &mut small).unwrap();
        let current = Params::new(M_COST, T_COST, P_COST, Some(HASH_LEN)).unwrap();
        let mut buffer = vec![Block::default(); current.block_count()];
        assert!(verify_with(&current, b"older policy", &phc, &mut buffer).unwrap());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn hashing_threads_yield_to_request_threads() {
        let nice = || {
            let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
            // Field 19 (nice); the command name before it may hold spaces, so count from ')'.
            let after = &stat[stat.rfind(')').unwrap() + 2..];
            after.split_whitespace().nth(16).unwrap().parse::<i32>().unwrap()
        };
        let (before, after) = std::thread::spawn(move || {
            let before = nice();
            yield_to_requests();
            (before, nice())
        })
        .join()
        .unwrap();
        assert!(after > before, "nice {before} -> {after}");
    }

    #[test]
    fn garbage_hashes_are_errors_not_matches() {
        let current = Params::new(M_COST, T_COST, P_COST, Some(HASH_LEN)).unwrap();
        let mut buffer = vec![Block::default(); current.block_count()];
        assert!(verify_with(&current, b"x", "$2b$12$bcrypt", &mut buffer).is_err());
    }
}
