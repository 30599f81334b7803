//! `just bench`: measures authgraph against an independent bare-axum ceiling (see
//! `ceiling`) and the argon2 limit.
//!
//! One run, one machine, one table: every target is a ratio between figures measured
//! in this run, so a noisy shared machine moves both sides of each ratio together.
//! The service and the ceiling run as their own processes; this process only drives load.

mod ceiling;
mod load;
mod retention;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use authgraph::auth::jwt::{KeyAlgorithm, SigningKey};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use load::{Op, Stats, Target};
use serde_json::json;

const SERVICE_ADDR: &str = "127.0.0.1:18080";
const CEILING_ADDR: &str = "127.0.0.1:18081";
const DB_NAME: &str = "authgraph_bench";
const PASSWORD: &str = "correct horse battery staple";

struct Options {
    duration: Duration,
    users: usize,
    scale_users: usize,
    paced_rate: u32,
    /// Run only this phase against the service (for profiling it).
    only: Option<String>,
}

impl Options {
    fn from_args() -> anyhow::Result<Self> {
        let mut options = Self {
            duration: Duration::from_secs(6),
            users: 1000,
            scale_users: 1_000_000,
            paced_rate: 200,
            only: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().context("missing value");
            match arg.as_str() {
                "--duration" => options.duration = Duration::from_secs(value()?.parse()?),
                "--users" => options.users = value()?.parse()?,
                "--scale-users" => options.scale_users = value()?.parse()?,
                "--paced-rate" => options.paced_rate = value()?.parse()?,
                "--only" => options.only = Some(value()?),
                "run" => {}
                other => bail!("unknown argument {other}"),
            }
        }
        Ok(options)
    }
}

fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("ceiling") {
        return ceiling::main();
    }
    let options = Options::from_args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(options))
}

fn server_url() -> String {
    std::env::var("BENCH_DATABASE_SERVER").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

async fn admin() -> anyhow::Result<AsyncPgConnection> {
    Ok(AsyncPgConnection::establish(&format!("{}/postgres", server_url())).await?)
}

/// Both processes get the same environment: same database, same keys.
fn service_env(keys: &Path) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("APP_ENV", "production".into()),
        ("DATABASE_URL", format!("{}/{DB_NAME}", server_url())),
        ("JWT_KEYS", keys.display().to_string()),
        // Production needs it to serve; the benchmark has no TOTP secrets to keep.
        (
            "MFA_ENCRYPTION_KEY",
            "YmVuY2htYXJrLW9ubHktbWZhLWtleS0zMi1ieXRlcyE=".into(),
        ),
        // Default logging (info, one JSON line per operation), as a deployment runs it:
        // the per-request line is part of what `me` costs.
        // `BENCH_SERVICE_LOG=warn` measures what the per-request line costs.
        (
            "RUST_LOG",
            std::env::var("BENCH_SERVICE_LOG").unwrap_or_else(|_| "info".into()),
        ),
        ("LOG_FORMAT", "json".into()),
        // The benchmark hammers a few accounts from one address on purpose. The limits
        // are relaxed, not switched off, so the throttle's own work is in every figure.
        ("HTTP_RATE_LIMIT", "1000000/s".into()),
        ("HTTP_RATE_LIMIT_BURST", "1000000".into()),
        ("TRUSTED_PROXIES", String::new()),
    ];
    env.extend(
        authgraph::config::throttle::THROTTLE_DEFAULTS
            .iter()
            .map(|(name, _)| (*name, "1000000000/1h".to_owned())),
    );
    env
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(binary: &Path, args: &[&str], env: &[(&'static str, String)], listen: &str) -> anyhow::Result<Proc> {
    let child = Command::new(binary)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("LISTEN_ADDR", listen)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    Ok(Proc(child))
}

async fn wait_ready(addr: &str) -> anyhow::Result<()> {
    let target = Target::new(addr);
    for _ in 0..100 {
        if target.get("/readyz").await.is_ok_and(|s| s == 200) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{addr} did not become ready")
}

/// Peak resident set of a process, from the kernel's high-water mark.
fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn binaries() -> anyhow::Result<(PathBuf, PathBuf)> {
    let me = std::env::current_exe()?;
    let dir = me.parent().context("bench binary has no directory")?;
    let service = dir.join("authgraph");
    anyhow::ensure!(
        service.exists(),
        "{} missing: run `cargo build --release --workspace`",
        service.display()
    );
    Ok((service, me))
}

async fn run(options: Options) -> anyhow::Result<()> {
    let (service_bin, bench_bin) = binaries()?;
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    println!(
        "authgraph benchmark: {cores} cores, {}s per phase",
        options.duration.as_secs()
    );

    let mut conn = admin().await?;
    diesel::sql_query(format!("drop database if exists {DB_NAME} with (force)"))
        .execute(&mut conn)
        .await?;
    diesel::sql_query(format!("create database {DB_NAME}"))
        .execute(&mut conn)
        .await?;
    drop(conn);
    let db_url = format!("{}/{DB_NAME}", server_url());
    authgraph::db::run_migrations(&db_url).await?;

    let dir = std::env::temp_dir().join(format!("authgraph-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let keys = dir.join("keys.pem");
    let (_, pem) = SigningKey::generate(KeyAlgorithm::Es256)?;
    authgraph::auth::jwt::write_private(&keys, secrecy::ExposeSecret::expose_secret(&pem))?;
    let env = service_env(&keys);

    let service = spawn(&service_bin, &["serve"], &env, SERVICE_ADDR)?;
    let ceiling = spawn(&bench_bin, &["ceiling"], &env, CEILING_ADDR)?;
    wait_ready(SERVICE_ADDR).await?;
    wait_ready(CEILING_ADDR).await?;
    let svc = Target::new(SERVICE_ADDR);
    let ceil = Target::new(CEILING_ADDR);

    // Users through the API, as a client would create them.
    let started = Instant::now();
    load::create_users(&svc, options.users, PASSWORD).await?;
    println!(
        "created {} users through the API in {:.1}s",
        options.users,
        started.elapsed().as_secs_f64()
    );
    let emails: Arc<Vec<String>> = Arc::new((0..options.users).map(load::user_email).collect());
    let tokens: Arc<Vec<String>> = Arc::new(
        load::login_many(&svc, &emails[..64], PASSWORD)
            .await?
            .into_iter()
            .map(|p| p.0)
            .collect(),
    );

    let d = options.duration;
    if options.only.as_deref() == Some("retention") {
        retention::scenario(
            &svc,
            &db_url,
            tokens.clone(),
            options.scale_users,
            options.paced_rate,
            d,
        )
        .await?;
        return Ok(());
    }
    if options.only.as_deref() == Some("storm") {
        println!("service pid {}", service.0.id());
        let (alone, during) = storm(&svc, &tokens, &emails, options.paced_rate, d).await?;
        println!("  me p99 in storm / alone: {:.2}", during.p99_ms / alone.p99_ms);
        return Ok(());
    }
    if let Some(only) = options.only.as_deref() {
        println!("service pid {}", service.0.id());
        let op = match only {
            "me" => Op::Me(tokens.clone()),
            "refresh" => {
                let chains = load::login_many(&svc, &emails[64..128], PASSWORD).await?;
                Op::Refresh(Arc::new(chains.into_iter().map(|p| p.1).collect()))
            }
            "login" => Op::Login(emails.clone(), PASSWORD.into()),
            "register" => Op::Register,
            "ceiling-me" => Op::CeilingMe(tokens.clone()),
            "ceiling-login" => Op::CeilingLogin(emails.clone(), PASSWORD.into()),
            "ceiling-register" => Op::CeilingRegister,
            other => bail!(
                "--only takes me, login, register, refresh, ceiling-me, ceiling-login, \
                 ceiling-register, storm or retention, not {other}"
            ),
        };
        let target = if only.starts_with("ceiling-") { &ceil } else { &svc };
        let conns = if matches!(op, Op::Me(_) | Op::CeilingMe(_) | Op::Refresh(_)) {
            64
        } else {
            32
        };
        let stats = load::closed_loop(target, op, conns, d).await?;
        println!("  {only:<28} {}", stats.line());
        return Ok(());
    }
    let mut rows: Vec<(String, Stats)> = Vec::new();

    // Warm both processes up (pools, caches) before anything counts.
    load::closed_loop(&svc, Op::Me(tokens.clone()), 64, Duration::from_secs(1)).await?;
    load::closed_loop(&ceil, Op::CeilingMe(tokens.clone()), 64, Duration::from_secs(1)).await?;

    let login_op = || Op::Login(emails.clone(), PASSWORD.into());
    let (me_ceiling, me) = pair(
        &mut rows,
        d,
        ("me (ceiling, 64 conns)", &ceil, Op::CeilingMe(tokens.clone())),
        ("me (64 conns)", &svc, Op::Me(tokens.clone())),
        64,
    )
    .await?;
    // Logins take ~0.5 s each under this load: longer slices keep the cut-off at each
    // slice's end from weighing on the figures.
    let (login_ceiling, login) = pair(
        &mut rows,
        d * 2,
        (
            "login (ceiling, 32 conns)",
            &ceil,
            Op::CeilingLogin(emails.clone(), PASSWORD.into()),
        ),
        ("login (32 conns)", &svc, login_op()),
        32,
    )
    .await?;
    let (register_ceiling, register) = pair(
        &mut rows,
        d * 2,
        ("register (ceiling, 32 conns)", &ceil, Op::CeilingRegister),
        ("register (32 conns)", &svc, Op::Register),
        32,
    )
    .await?;
    let chains = load::login_many(&svc, &emails[64..128], PASSWORD).await?;
    let refresh_op = Op::Refresh(Arc::new(chains.into_iter().map(|p| p.1).collect()));
    let (me_again, refresh) = pair(
        &mut rows,
        d,
        ("me (64 conns, again)", &svc, Op::Me(tokens.clone())),
        ("refresh (64 conns, own chains)", &svc, refresh_op),
        64,
    )
    .await?;

    let (paced_alone, paced_storm) = storm(&svc, &tokens, &emails, options.paced_rate, d).await?;
    rows.push((format!("me @{}/s alone", options.paced_rate), paced_alone.clone()));
    rows.push((
        format!("me @{}/s during login storm", options.paced_rate),
        paced_storm.clone(),
    ));

    // argon2: the verification cost on this machine with every core hashing at once
    // (cores share caches and memory bandwidth, so one hash alone is faster than each of
    // two together), measured in this process with the ceiling's hasher. Both servers
    // are idle now.
    let (argon2_alone, argon2_median) = tokio::task::spawn_blocking(move || {
        Ok::<_, anyhow::Error>((
            ceiling::parallel_verify_seconds(1, 15)?,
            ceiling::parallel_verify_seconds(cores, 15)?,
        ))
    })
    .await??;
    let argon2_limit = cores as f64 / argon2_median;
    println!(
        "  argon2 verification median {:.1} ms alone, {:.1} ms with {cores} in parallel: \
         limit {argon2_limit:.1}/s on {cores} cores",
        argon2_alone * 1e3,
        argon2_median * 1e3,
    );

    let (unknown_ms, wrong_ms) = load::enumeration_timing(&svc, &emails, 40).await?;
    println!("  login median: unknown email {unknown_ms:.1} ms, wrong password {wrong_ms:.1} ms");

    // Scale: the same figures with a million users in the table.
    let (me_1k, login_1k) = (
        phase(
            &mut rows,
            d,
            "me (64 conns, 1k users)",
            &svc,
            Op::Me(tokens.clone()),
            64,
        )
        .await?,
        phase(&mut rows, d, "login (32 conns, 1k users)", &svc, login_op(), 32).await?,
    );
    let (me_1m, login_1m) = if options.scale_users > options.users {
        let started = Instant::now();
        let mut conn = AsyncPgConnection::establish(&db_url).await?;
        diesel::sql_query(format!(
            "insert into users (email, password_hash) \
             select 'seed-' || g || '@bench.local', (select password_hash from users limit 1) \
             from generate_series(1, {}) g",
            options.scale_users - options.users
        ))
        .execute(&mut conn)
        .await?;
        // Settle the database so background work after a bulk insert does not land
        // inside the measured phases.
        diesel::sql_query("vacuum analyze users")
            .execute(&mut conn)
            .await?;
        diesel::sql_query("checkpoint").execute(&mut conn).await?;
        println!(
            "seeded {} users in SQL in {:.1}s",
            options.scale_users,
            started.elapsed().as_secs_f64()
        );
        let me_1m = phase(
            &mut rows,
            d,
            "me (64 conns, 1M users)",
            &svc,
            Op::Me(tokens.clone()),
            64,
        )
        .await?;
        let login_1m = phase(
            &mut rows,
            d,
            "login (32 conns, 1M users)",
            &svc,
            Op::Login(emails.clone(), PASSWORD.into()),
            32,
        )
        .await?;
        (Some(me_1m), Some(login_1m))
    } else {
        (None, None)
    };

    let rss = peak_rss_mb(service.0.id());
    drop(ceiling);
    drop(service);

    let mut targets = vec![
        Goal::at_least("me / ceiling me", me.rps / me_ceiling.rps, 0.85),
        Goal::at_least("login / ceiling login", login.rps / login_ceiling.rps, 0.95),
        Goal::at_least(
            "register / ceiling register",
            register.rps / register_ceiling.rps,
            0.95,
        ),
        Goal::at_least("refresh / me", refresh.rps / me_again.rps, 0.3),
        Goal::at_most(
            "me p99 in storm / alone",
            paced_storm.p99_ms / paced_alone.p99_ms,
            4.0,
        ),
        Goal::at_most("peak RSS (MB)", rss, 64.0),
        Goal::at_most(
            "|unknown - wrong| / wrong login",
            (unknown_ms - wrong_ms).abs() / wrong_ms,
            0.10,
        ),
    ];
    if let (Some(me_1m), Some(login_1m)) = (&me_1m, &login_1m) {
        targets.push(Goal::at_most(
            "me rps 1M vs 1k (loss)",
            1.0 - me_1m.rps / me_1k.rps,
            0.10,
        ));
        targets.push(Goal::at_most(
            "login rps 1M vs 1k (loss)",
            1.0 - login_1m.rps / login_1k.rps,
            0.10,
        ));
    }

    let mut report = String::new();
    report.push_str("| operation | req/s | p50 ms | p99 ms | errors |\n|---|---:|---:|---:|---:|\n");
    for (name, s) in &rows {
        report.push_str(&format!(
            "| {name} | {:.0} | {:.2} | {:.2} | {} |\n",
            s.rps, s.p50_ms, s.p99_ms, s.errors
        ));
    }
    report.push_str(&format!(
        "\nargon2id verification median {:.1} ms alone, {:.1} ms with {cores} verifying in \
         parallel → limit {:.1} logins/s on {cores} cores; \
         login median unknown email {unknown_ms:.1} ms vs wrong password {wrong_ms:.1} ms; \
         service peak RSS {rss:.1} MB.\n\n",
        argon2_alone * 1e3,
        argon2_median * 1e3,
        argon2_limit
    ));
    report.push_str("| target | measured | goal | result |\n|---|---:|---:|---|\n");
    let mut all = true;
    for t in &targets {
        all &= t.pass();
        report.push_str(&format!(
            "| {} | {:.3} | {} {} | {} |\n",
            t.name,
            t.value,
            if t.max { "≤" } else { "≥" },
            t.goal,
            if t.pass() { "pass" } else { "FAIL" }
        ));
    }
    report.push_str(&format!(
        "\n(Of the argon2 limit, login reached {:.0}% and the ceiling's login {:.0}%; \
         register {:.0}% and the ceiling's register {:.0}%.)\n",
        100.0 * login.rps / argon2_limit,
        100.0 * login_ceiling.rps / argon2_limit,
        100.0 * register.rps / argon2_limit,
        100.0 * register_ceiling.rps / argon2_limit,
    ));
    println!("\n{report}");
    let out = Path::new("target/bench");
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("latest.md"), &report)?;
    println!("written to target/bench/latest.md");
    let _ = std::fs::remove_dir_all(&dir);
    if !all {
        bail!("some targets were missed");
    }
    Ok(())
}

/// Two operations measured in alternating slices (see [`load::paired`]).
/// `me` paced at `rate` alone, then during a login storm (32 connections logging in
/// without pause), each for `duration`; prints both.
async fn storm(
    svc: &Target,
    tokens: &Arc<Vec<String>>,
    emails: &Arc<Vec<String>>,
    rate: u32,
    duration: Duration,
) -> anyhow::Result<(Stats, Stats)> {
    let alone = load::paced(svc, Op::Me(tokens.clone()), rate, duration).await?;
    println!("  {:<28} {}", format!("me @{rate}/s alone"), alone.line());
    let logins = {
        let svc = svc.clone();
        let emails = emails.clone();
        tokio::spawn(async move {
            load::closed_loop(&svc, Op::Login(emails, PASSWORD.into()), 32, duration).await
        })
    };
    // Let the storm fill the hash queue before measuring.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = load::paced(svc, Op::Me(tokens.clone()), rate, duration).await?;
    let logins = logins.await??;
    println!(
        "  {:<28} {}",
        format!("me @{rate}/s in login storm"),
        during.line()
    );
    println!("  {:<28} {}", "  (the storm: login, 32 conns)", logins.line());
    Ok((alone, during))
}

async fn pair(
    rows: &mut Vec<(String, Stats)>,
    duration: Duration,
    a: (&str, &Target, Op),
    b: (&str, &Target, Op),
    conns: usize,
) -> anyhow::Result<(Stats, Stats)> {
    let (sa, sb) = load::paired((a.1, a.2), (b.1, b.2), conns, duration, 3).await?;
    for (name, stats) in [(a.0, &sa), (b.0, &sb)] {
        println!("  {name:<28} {}", stats.line());
        rows.push((name.to_owned(), stats.clone()));
    }
    Ok((sa, sb))
}

async fn phase(
    rows: &mut Vec<(String, Stats)>,
    duration: Duration,
    name: &str,
    target: &Target,
    op: Op,
    conns: usize,
) -> anyhow::Result<Stats> {
    let stats = load::closed_loop(target, op, conns, duration).await?;
    println!("  {name:<28} {}", stats.line());
    rows.push((name.to_owned(), stats.clone()));
    Ok(stats)
}

struct Goal {
    name: &'static str,
    value: f64,
    goal: f64,
    max: bool,
}

impl Goal {
    fn at_least(name: &'static str, value: f64, goal: f64) -> Self {
        Self {
            name,
            value,
            goal,
            max: false,
        }
    }

    fn at_most(name: &'static str, value: f64, goal: f64) -> Self {
        Self {
            name,
            value,
            goal,
            max: true,
        }
    }

    fn pass(&self) -> bool {
        if self.max {
            self.value <= self.goal
        } else {
            self.value >= self.goal
        }
    }
}

/// Used by `load` for request bodies.
pub(crate) fn graphql_body(query: &str, variables: serde_json::Value) -> bytes::Bytes {
    bytes::Bytes::from(json!({ "query": query, "variables": variables }).to_string())
}
