//! The load driver: closed-loop workers (one keep-alive connection each) and a paced
//! open-loop driver whose latencies count from the scheduled send time, so a stalled
//! server cannot hide its stall (no coordinated omission).

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, client::conn::http1::SendRequest};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use crate::graphql_body;

const ME: &str = "{ me { id email } }";
const LOGIN: &str = "mutation($input: LoginInput!) { login(input: $input) { accessToken refreshToken } }";
const REGISTER: &str = "mutation($input: RegisterInput!) { register(input: $input) { accessToken } }";
const REFRESH: &str = "mutation($t: String) { refresh(refreshToken: $t) { accessToken refreshToken } }";

/// The email of the n-th benchmark user.
pub fn user_email(n: usize) -> String {
    format!("user-{n}@bench.local")
}

/// Where requests go.
#[derive(Clone)]
pub struct Target {
    addr: String,
}

impl Target {
    pub fn new(addr: &str) -> Self {
        Self {
            addr: addr.to_owned(),
        }
    }

    async fn connect(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let stream = tokio::net::TcpStream::connect(&self.addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(sender)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<u16> {
        let mut sender = self.connect().await?;
        let request = Request::get(path)
            .header("host", &self.addr)
            .body(Full::new(Bytes::new()))?;
        Ok(sender.send_request(request).await?.status().as_u16())
    }
}

/// One kind of request.
#[derive(Clone)]
pub enum Op {
    /// `me` through GraphQL with one of these access tokens.
    Me(Arc<Vec<String>>),
    /// `GET /me` on the ceiling.
    CeilingMe(Arc<Vec<String>>),
    /// `login` through GraphQL, cycling over these emails.
    Login(Arc<Vec<String>>, String),
    /// `POST /login` on the ceiling.
    CeilingLogin(Arc<Vec<String>>, String),
    /// `register` with fresh emails.
    Register,
    /// `POST /register` on the ceiling, with fresh emails.
    CeilingRegister,
    /// `refresh`: worker i follows the rotation chain starting at token i.
    Refresh(Arc<Vec<String>>),
}

struct Worker {
    sender: SendRequest<Full<Bytes>>,
    host: String,
    id: usize,
    sent: usize,
    chain: Option<String>,
}

static REGISTERED: AtomicUsize = AtomicUsize::new(0);

impl Worker {
    async fn new(target: &Target, op: &Op, id: usize) -> anyhow::Result<Self> {
        let chain = match op {
            Op::Refresh(tokens) => Some(
                tokens
                    .get(id)
                    .context("fewer refresh chains than connections")?
                    .clone(),
            ),
            _ => None,
        };
        Ok(Self {
            sender: target.connect().await?,
            host: target.addr.clone(),
            id,
            sent: 0,
            chain,
        })
    }

    fn request(&self, op: &Op) -> anyhow::Result<Request<Full<Bytes>>> {
        let n = self.id + self.sent * 64;
        let post = |path: &str, body: Bytes| {
            Request::post(path)
                .header("host", &self.host)
                .header("content-type", "application/json")
                .body(Full::new(body))
        };
        Ok(match op {
            Op::Me(tokens) => {
                let mut r = post("/graphql", graphql_body(ME, json!({})))?;
                r.headers_mut().insert(
                    "authorization",
                    format!("Bearer {}", tokens[self.id % tokens.len()]).parse()?,
                );
                r
            }
            Op::CeilingMe(tokens) => Request::get("/me")
                .header("host", &self.host)
                .header(
                    "authorization",
                    format!("Bearer {}", tokens[self.id % tokens.len()]),
                )
                .body(Full::new(Bytes::new()))?,
            Op::Login(emails, password) => post(
                "/graphql",
                graphql_body(
                    LOGIN,
                    json!({ "input": { "email": emails[n % emails.len()], "password": password } }),
                ),
            )?,
            Op::CeilingLogin(emails, password) => post(
                "/login",
                Bytes::from(json!({ "email": emails[n % emails.len()], "password": password }).to_string()),
            )?,
            Op::Register => {
                let k = REGISTERED.fetch_add(1, Ordering::Relaxed);
                let email = format!("new-{}-{k}@bench.local", std::process::id());
                post(
                    "/graphql",
                    graphql_body(
                        REGISTER,
                        json!({ "input": { "email": email, "password": crate::PASSWORD } }),
                    ),
                )?
            }
            Op::CeilingRegister => {
                let k = REGISTERED.fetch_add(1, Ordering::Relaxed);
                let email = format!("new-{}-{k}@bench.local", std::process::id());
                post(
                    "/register",
                    Bytes::from(json!({ "email": email, "password": crate::PASSWORD }).to_string()),
                )?
            }
            Op::Refresh(_) => post("/graphql", graphql_body(REFRESH, json!({ "t": self.chain })))?,
        })
    }

    /// Sends one request; answers whether it succeeded.
    async fn send(&mut self, op: &Op) -> anyhow::Result<bool> {
        let request = self.request(op)?;
        self.sent += 1;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let ok_status = response.status().is_success();
        let body = response.into_body().collect().await?.to_bytes();
        if !ok_status {
            return Ok(false);
        }
        if let Op::Refresh(_) = op {
            let value: Value = serde_json::from_slice(&body)?;
            match value["data"]["refresh"]["refreshToken"].as_str() {
                Some(next) => self.chain = Some(next.to_owned()),
                None => return Ok(false),
            }
            return Ok(true);
        }
        Ok(!body.windows(9).any(|w| w == b"\"errors\":"))
    }
}

/// Figures of one phase.
#[derive(Clone, Debug)]
pub struct Stats {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: usize,
}

impl Stats {
    fn from(mut latencies_us: Vec<u64>, errors: usize, elapsed: Duration) -> Self {
        latencies_us.sort_unstable();
        let pick = |q: f64| {
            latencies_us
                .get(((latencies_us.len() as f64 * q) as usize).min(latencies_us.len().saturating_sub(1)))
                .map_or(f64::NAN, |us| *us as f64 / 1000.0)
        };
        Self {
            rps: latencies_us.len() as f64 / elapsed.as_secs_f64(),
            p50_ms: pick(0.50),
            p99_ms: pick(0.99),
            errors,
        }
    }

    pub fn line(&self) -> String {
        format!(
            "{:>9.1} req/s  p50 {:>7.2} ms  p99 {:>8.2} ms  errors {}",
            self.rps, self.p50_ms, self.p99_ms, self.errors
        )
    }
}

/// Raw figures of one or more runs.
#[derive(Default)]
pub struct Sample {
    latencies_us: Vec<u64>,
    errors: usize,
    elapsed: Duration,
}

impl Sample {
    fn merge(&mut self, other: Sample) {
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
        self.elapsed += other.elapsed;
    }

    pub fn stats(self) -> Stats {
        Stats::from(self.latencies_us, self.errors, self.elapsed)
    }
}

/// Runs `a` and `b` in alternating slices (`rounds` of each, `duration` in all per side),
/// so both see the same machine: a noisy neighbour moves both sides of the ratio.
pub async fn paired(
    a: (&Target, Op),
    b: (&Target, Op),
    conns: usize,
    duration: Duration,
    rounds: u32,
) -> anyhow::Result<(Stats, Stats)> {
    let slice = duration / rounds;
    let (mut sa, mut sb) = (Sample::default(), Sample::default());
    for _ in 0..rounds {
        sa.merge(run(a.0, a.1.clone(), conns, slice).await?);
        sb.merge(run(b.0, b.1.clone(), conns, slice).await?);
    }
    Ok((sa.stats(), sb.stats()))
}

/// `conns` workers, each sending back to back on its own connection for `duration`.
pub async fn closed_loop(target: &Target, op: Op, conns: usize, duration: Duration) -> anyhow::Result<Stats> {
    Ok(run(target, op, conns, duration).await?.stats())
}

async fn run(target: &Target, op: Op, conns: usize, duration: Duration) -> anyhow::Result<Sample> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for id in 0..conns {
        let (target, op) = (target.clone(), op.clone());
        tasks.push(tokio::spawn(async move {
            let mut worker = Worker::new(&target, &op, id).await?;
            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            while Instant::now() < deadline {
                let t = Instant::now();
                match worker.send(&op).await {
                    Ok(true) => latencies.push(t.elapsed().as_micros() as u64),
                    Ok(false) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        worker = Worker::new(&target, &op, id).await?;
                    }
                }
            }
            anyhow::Ok((latencies, errors))
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for task in tasks {
        let (latencies, e) = task.await??;
        all.extend(latencies);
        errors += e;
    }
    Ok(Sample {
        latencies_us: all,
        errors,
        elapsed: start.elapsed(),
    })
}

/// `rate` requests per second spread over 16 connections, latency counted from each
/// request's scheduled time.
pub async fn paced(target: &Target, op: Op, rate: u32, duration: Duration) -> anyhow::Result<Stats> {
    const CONNS: u32 = 16;
    let interval = Duration::from_secs_f64(f64::from(CONNS) / f64::from(rate));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for id in 0..CONNS as usize {
        let (target, op) = (target.clone(), op.clone());
        tasks.push(tokio::spawn(async move {
            let mut worker = Worker::new(&target, &op, id).await?;
            // Stagger the connections across one interval.
            let first = tokio::time::Instant::now() + interval.mul_f64(id as f64 / f64::from(CONNS));
            let mut ticker = tokio::time::interval_at(first, interval);
            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            loop {
                let scheduled = ticker.tick().await;
                if scheduled.into_std() >= start + duration {
                    break;
                }
                match worker.send(&op).await {
                    Ok(true) => latencies.push(scheduled.elapsed().as_micros() as u64),
                    _ => errors += 1,
                }
            }
            anyhow::Ok((latencies, errors))
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for task in tasks {
        let (latencies, e) = task.await??;
        all.extend(latencies);
        errors += e;
    }
    Ok(Stats::from(all, errors, duration))
}

async fn graphql(sender: &mut SendRequest<Full<Bytes>>, host: &str, body: Bytes) -> anyhow::Result<Value> {
    let request = Request::post("/graphql")
        .header("host", host)
        .header("content-type", "application/json")
        .body(Full::new(body))?;
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok(serde_json::from_slice(&bytes)?)
}

/// Registers users `0..n` through the API, 16 at a time.
pub async fn create_users(target: &Target, n: usize, password: &str) -> anyhow::Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (target, next, password) = (target.clone(), next.clone(), password.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut sender = target.connect().await?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                let body = graphql_body(
                    REGISTER,
                    json!({ "input": { "email": user_email(i), "password": password } }),
                );
                let value = graphql(&mut sender, &target.addr, body).await?;
                anyhow::ensure!(value["errors"].is_null(), "register failed: {value}");
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// Logs each email in; answers (access token, refresh token) pairs.
pub async fn login_many(
    target: &Target,
    emails: &[String],
    password: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut sender = target.connect().await?;
    let mut out = Vec::new();
    for email in emails {
        let body = graphql_body(
            LOGIN,
            json!({ "input": { "email": email, "password": password } }),
        );
        let value = graphql(&mut sender, &target.addr, body).await?;
        let login = &value["data"]["login"];
        out.push((
            login["accessToken"]
                .as_str()
                .context(format!("login failed: {value}"))?
                .to_owned(),
            login["refreshToken"]
                .as_str()
                .context("no refresh token")?
                .to_owned(),
        ));
    }
    Ok(out)
}

/// Median login time for unknown emails and for wrong passwords, interleaved on one
/// connection so both see the same machine.
pub async fn enumeration_timing(
    target: &Target,
    emails: &[String],
    rounds: usize,
) -> anyhow::Result<(f64, f64)> {
    let mut sender = target.connect().await?;
    let (mut unknown, mut wrong) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        for (known, times) in [(false, &mut unknown), (true, &mut wrong)] {
            let email = if known {
                emails[i % emails.len()].clone()
            } else {
                format!("ghost-{i}@bench.local")
            };
            let body = graphql_body(
                LOGIN,
                json!({ "input": { "email": email, "password": "not the password" } }),
            );
            let t = Instant::now();
            let value = graphql(&mut sender, &target.addr, body).await?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(
                value["errors"][0]["extensions"]["code"] == "INVALID_CREDENTIALS",
                "unexpected answer: {value}"
            );
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Ok((median(&mut unknown), median(&mut wrong)))
}
