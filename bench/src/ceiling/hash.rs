//! The ceiling's own argon2id: OWASP parameters (19 MiB, t=2, p=1) for new hashes, the
//! stored PHC string's own parameters for verification, on a blocking pool bounded to
//! the cores, with memory reused between jobs.

use std::sync::{Arc, Mutex};

use anyhow::{Context, anyhow, bail};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::{Engine, engine::general_purpose::STANDARD_NO_PAD as B64};
use tokio::sync::Semaphore;

const M_COST: u32 = 19_456;
const T_COST: u32 = 2;
const P_COST: u32 = 1;

/// Hashes and verifies off the async runtime, at most one job per core at a time.
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    buffers: Arc<Mutex<Vec<Vec<Block>>>>,
    /// Verified when the email is unknown, so that costs a wrong password's time.
    dummy: Arc<str>,
}

impl Hasher {
    pub fn new(cores: usize) -> anyhow::Result<Self> {
        let dummy = hash(b"not a password: unknown accounts verify against this")?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(cores.max(1))),
            buffers: Arc::new(Mutex::new(Vec::new())),
            dummy: dummy.into(),
        })
    }

    pub async fn verify(&self, password: String, phc: Option<String>) -> anyhow::Result<bool> {
        let dummy = self.dummy.clone();
        self.run(move |memory| verify_with(password.as_bytes(), phc.as_deref().unwrap_or(&dummy), memory))
            .await
    }

    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        self.run(move |memory| hash_with(password.as_bytes(), memory))
            .await
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Vec<Block>) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let permit = self.permits.clone().acquire_owned().await?;
        let buffers = self.buffers.clone();
        tokio::task::spawn_blocking(move || {
            // Held by the job, not the request: a client gone mid-hash frees no core.
            let _permit = permit;
            let mut memory = buffers.lock().ok().and_then(|mut b| b.pop()).unwrap_or_default();
            let out = job(&mut memory);
            if let Ok(mut b) = buffers.lock() {
                b.push(memory);
            }
            out
        })
        .await?
    }
}

fn params() -> anyhow::Result<Params> {
    Params::new(M_COST, T_COST, P_COST, Some(32)).map_err(|e| anyhow!("argon2 params: {e}"))
}

fn memory_for<'a>(params: &Params, memory: &'a mut Vec<Block>) -> &'a mut [Block] {
    if memory.len() < params.block_count() {
        memory.resize(params.block_count(), Block::default());
    }
    &mut memory[..params.block_count()]
}

/// A new PHC string with the OWASP parameters and a random 16-byte salt.
pub fn hash(password: &[u8]) -> anyhow::Result<String> {
    hash_with(password, &mut Vec::new())
}

fn hash_with(password: &[u8], memory: &mut Vec<Block>) -> anyhow::Result<String> {
    let params = params()?;
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| anyhow!("random source"))?;
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password, &salt, &mut out, memory_for(&params, memory))
        .map_err(|e| anyhow!("argon2: {e}"))?;
    Ok(format!(
        "$argon2id$v=19$m={M_COST},t={T_COST},p={P_COST}${}${}",
        B64.encode(salt),
        B64.encode(out)
    ))
}

/// Checks a password against a PHC string, with the parameters the string carries.
pub fn verify_with(password: &[u8], phc: &str, memory: &mut Vec<Block>) -> anyhow::Result<bool> {
    let parts: Vec<&str> = phc.split('$').collect();
    let ["", "argon2id", "v=19", costs, salt, expected] = parts[..] else {
        bail!("not an argon2id v19 PHC string");
    };
    let (mut m, mut t, mut p) = (None, None, None);
    for pair in costs.split(',') {
        match pair.split_once('=') {
            Some(("m", v)) => m = v.parse().ok(),
            Some(("t", v)) => t = v.parse().ok(),
            Some(("p", v)) => p = v.parse().ok(),
            _ => bail!("unknown argon2 parameter"),
        }
    }
    let (Some(m), Some(t), Some(p)) = (m, t, p) else {
        bail!("PHC string lacks m, t or p");
    };
    let expected = B64.decode(expected).context("PHC hash")?;
    let salt = B64.decode(salt).context("PHC salt")?;
    let params = Params::new(m, t, p, Some(expected.len())).map_err(|e| anyhow!("argon2 params: {e}"))?;
    let mut out = vec![0u8; expected.len()];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password, &salt, &mut out, memory_for(&params, memory))
        .map_err(|e| anyhow!("argon2: {e}"))?;
    // Constant time over the whole output.
    Ok(out.iter().zip(&expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0)
}

/// Seconds one verification takes while every core verifies at once: `cores` threads
/// verify together, `rounds` times; the median round.
pub fn parallel_verify_seconds(cores: usize, rounds: usize) -> anyhow::Result<f64> {
    let phc = hash(b"correct horse battery staple")?;
    let barrier = std::sync::Barrier::new(cores);
    let times: Vec<Vec<f64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..cores)
            .map(|_| {
                scope.spawn(|| {
                    let mut memory = Vec::new();
                    let mut times = Vec::with_capacity(rounds);
                    for _ in 0..rounds {
                        barrier.wait();
                        let started = std::time::Instant::now();
                        let _ = verify_with(b"wrong guess", &phc, &mut memory);
                        times.push(started.elapsed().as_secs_f64());
                    }
                    times
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    // A round lasts as long as its slowest thread.
    let mut rounds_s: Vec<f64> = (0..rounds)
        .map(|r| times.iter().filter_map(|t| t.get(r)).copied().fold(0.0, f64::max))
        .collect();
    anyhow::ensure!(!rounds_s.is_empty(), "no argon2 rounds measured");
    rounds_s.sort_by(f64::total_cmp);
    Ok(rounds_s[rounds_s.len() / 2])
}
