//! High availability, for real: the binary on a pg_auto_failover formation (a monitor,
//! a primary and a synchronous secondary, built by `scripts/ha.sh`) through a two-host
//! `DATABASE_URL`, under a steady mixed load, through (1) a planned switchover and (2)
//! an unplanned failover (the primary's keeper and postmaster killed with SIGKILL).
//! Checked against the client's own log of acknowledged operations: nothing
//! acknowledged is missing afterwards, no refresh chain breaks, no request gets an
//! internal error, and every mail is delivered once.
//!
//! `just ha-bench` runs this test with `--nocapture` for the figures.

use std::{
    collections::HashMap,
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::support::{
    LOGIN, ME, PASSWORD, REFRESH, REGISTER, Service, SmtpSink, TempDir, email, eventually, pg::free_port,
};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ha.sh");
const LOGOUT: &str = "mutation($t: String) { logout(refreshToken: $t) }";

/// The formation, torn down (every process stopped, its directory removed) on drop.
struct Formation {
    dir: TempDir,
    url: String,
}

fn script(args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(SCRIPT)
        .args(args)
        .output()
        .expect("running scripts/ha.sh");
    assert!(
        out.status.success(),
        "scripts/ha.sh {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Installs pg_auto_failover with apt-get when it is missing (as root, the way the e2e
/// suite installs Chromium); otherwise fails saying what to install. Never skips.
fn ensure_pg_auto_failover() {
    let installed = || {
        Command::new("sh")
            .args([
                "-c",
                "command -v pg_autoctl >/dev/null && test -e \"$(ls -d /usr/lib/postgresql/*/lib/pgautofailover.so | tail -1)\"",
            ])
            .status()
            .is_ok_and(|s| s.success())
    };
    if installed() {
        return;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    assert!(
        root,
        "the HA test needs pg_auto_failover: run `apt-get install -y --no-install-recommends \
         postgresql-15-auto-failover pg-auto-failover-cli` as root, then the test again"
    );
    eprintln!("ha: installing pg_auto_failover with apt-get");
    let install = || {
        Command::new("apt-get")
            .args([
                "install",
                "-y",
                "--no-install-recommends",
                "postgresql-15-auto-failover",
                "pg-auto-failover-cli",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        let _ = Command::new("apt-get").arg("update").status();
        assert!(install(), "apt-get could not install pg_auto_failover");
    }
    assert!(installed(), "apt-get ran but pg_auto_failover is still missing");
}

impl Formation {
    fn up() -> Self {
        ensure_pg_auto_failover();
        let dir = TempDir::new("ha");
        let (m, p1, p2) = (free_port(), free_port(), free_port());
        let mut formation = Self {
            url: String::new(),
            dir,
        };
        let printed = script(&[
            "up",
            &formation.dir(),
            &m.to_string(),
            &p1.to_string(),
            &p2.to_string(),
        ]);
        let url = printed.lines().last().unwrap().to_owned();
        assert!(url.contains("target_session_attrs=read-write"), "{printed}");
        formation.url = url;
        formation
    }

    fn dir(&self) -> String {
        self.dir.0.display().to_string()
    }

    fn primary_port(&self) -> String {
        script(&["primary-port", &self.dir()])
    }
}

impl Drop for Formation {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(SCRIPT)
            .args(["down", &self.dir()])
            .output();
    }
}

/// What a request came back with, as the load client sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    Unavailable,
    /// An error code other than SERVICE_UNAVAILABLE (each one is a failure of the test
    /// unless it is the expected answer).
    Failed,
}

/// One session the client holds: its latest acknowledged refresh token.
struct Chain {
    refresh: String,
    access: String,
    /// Logout acknowledged: the token must be dead afterwards.
    logged_out: bool,
    /// The last refresh got no answer: the client presents the same token again.
    retrying: bool,
}

/// The client's own log.
#[derive(Default)]
struct Log {
    /// (when, outcome) of every request.
    requests: Vec<(Instant, Outcome)>,
    /// Every error code seen other than SERVICE_UNAVAILABLE, with its body.
    unexpected: Vec<String>,
    /// Emails of acknowledged registrations.
    registered: Vec<String>,
    chains: Vec<Chain>,
    /// When a refresh answered TOKEN_REUSED or INVALID_TOKEN on a live chain.
    broken_at: Vec<Instant>,
    /// Acknowledged refresh rotations.
    rotations: usize,
    /// Refreshes that succeeded when the same token was presented again after a try
    /// that got no answer.
    retried_refreshes: usize,
}

fn classify(status: u16, body: &Value) -> (Outcome, Option<String>) {
    if status == 200 && body["errors"].is_null() && !body["data"].is_null() {
        return (Outcome::Ok, None);
    }
    match body["errors"][0]["extensions"]["code"].as_str() {
        Some("SERVICE_UNAVAILABLE") => (Outcome::Unavailable, None),
        Some(code) => (Outcome::Failed, Some(code.to_owned())),
        None => (Outcome::Failed, Some(format!("HTTP {status}: {body}"))),
    }
}

/// One client: registers, logs in, refreshes and reads `me` in a loop until `stop`,
/// retrying a refresh whose answer it did not get with the same token (as a client
/// whose response was lost would).
async fn client(service: Arc<Service>, log: Arc<Mutex<Log>>, stop: Arc<AtomicBool>, id: usize) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = service.url("/graphql");
    let post = |query: &'static str, variables: Value, bearer: Option<String>| {
        let mut request = http.post(&url).header("content-type", "application/json");
        if let Some(token) = bearer {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        async move {
            match request
                .body(json!({ "query": query, "variables": variables }).to_string())
                .send()
                .await
            {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    (status, body)
                }
                Err(e) => (0, json!({ "transport": e.to_string() })),
            }
        }
    };
    let record = |outcome: Outcome, problem: Option<String>| {
        let mut log = log.lock().unwrap();
        log.requests.push((Instant::now(), outcome));
        if let Some(problem) = problem {
            log.unexpected.push(problem);
        }
    };
    let mut mine: Vec<usize> = Vec::new();
    let mut emails: Vec<String> = Vec::new();
    let mut round = 0usize;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        // Register.
        let address = email(&format!("ha{id}"));
        let (status, body) = post(
            REGISTER,
            json!({ "input": { "email": address, "password": PASSWORD } }),
            None,
        )
        .await;
        let (outcome, problem) = classify(status, &body);
        record(outcome, problem);
        if outcome == Outcome::Ok {
            let data = &body["data"]["register"];
            let mut log = log.lock().unwrap();
            log.registered.push(address.clone());
            log.chains.push(Chain {
                refresh: data["refreshToken"].as_str().unwrap().to_owned(),
                access: data["accessToken"].as_str().unwrap().to_owned(),
                logged_out: false,
                retrying: false,
            });
            mine.push(log.chains.len() - 1);
            emails.push(address);
        }
        // Log in again to an account of this client's (a second session).
        if round.is_multiple_of(3)
            && let Some(address) = emails.last()
        {
            let (status, body) = post(
                LOGIN,
                json!({ "input": { "email": address, "password": PASSWORD } }),
                None,
            )
            .await;
            let (outcome, problem) = classify(status, &body);
            record(outcome, problem);
            if outcome == Outcome::Ok {
                let data = &body["data"]["login"];
                let mut log = log.lock().unwrap();
                log.chains.push(Chain {
                    refresh: data["refreshToken"].as_str().unwrap().to_owned(),
                    access: data["accessToken"].as_str().unwrap().to_owned(),
                    logged_out: false,
                    retrying: false,
                });
                mine.push(log.chains.len() - 1);
            }
        }
        // Refresh and read every live session of this client's.
        for &chain in &mine {
            let (token, access, dead) = {
                let log = log.lock().unwrap();
                let c = &log.chains[chain];
                (c.refresh.clone(), c.access.clone(), c.logged_out)
            };
            if dead {
                continue;
            }
            let (status, body) = post(REFRESH, json!({ "t": token }), None).await;
            let (outcome, problem) = classify(status, &body);
            let broken = matches!(problem.as_deref(), Some("TOKEN_REUSED" | "INVALID_TOKEN"));
            record(outcome, problem);
            {
                let mut log = log.lock().unwrap();
                if outcome == Outcome::Ok {
                    let data = &body["data"]["refresh"];
                    let c = &mut log.chains[chain];
                    c.refresh = data["refreshToken"].as_str().unwrap().to_owned();
                    c.access = data["accessToken"].as_str().unwrap().to_owned();
                    let retried = std::mem::take(&mut c.retrying);
                    log.rotations += 1;
                    log.retried_refreshes += usize::from(retried);
                } else if broken {
                    log.broken_at.push(Instant::now());
                    log.chains[chain].logged_out = true;
                } else {
                    log.chains[chain].retrying = true;
                }
            }
            let (status, body) = post(ME, json!({}), Some(access)).await;
            let (outcome, problem) = classify(status, &body);
            record(outcome, problem);
        }
        // Now and then end a session: its logout must survive the switch too.
        if round.is_multiple_of(4)
            && let Some(&chain) = mine.first()
        {
            let token = log.lock().unwrap().chains[chain].refresh.clone();
            let (status, body) = post(LOGOUT, json!({ "t": token }), None).await;
            let (outcome, problem) = classify(status, &body);
            record(outcome, problem);
            if outcome == Outcome::Ok {
                log.lock().unwrap().chains[chain].logged_out = true;
                mine.remove(0);
            }
        }
        // Keep each client's working set small so a round stays short, but never let go
        // of a chain whose last refresh got no answer: a real client keeps presenting
        // that token until it hears back.
        if mine.len() > 4 {
            let log = log.lock().unwrap();
            if let Some(i) = mine.iter().position(|&c| !log.chains[c].retrying) {
                mine.remove(i);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Figures for one phase of the load.
#[derive(Debug)]
struct Figures {
    requests: usize,
    failed: usize,
    unavailable_seconds: f64,
}

fn figures(log: &Log, from: Instant, to: Instant) -> Figures {
    let within: Vec<&(Instant, Outcome)> = log
        .requests
        .iter()
        .filter(|(t, _)| *t >= from && *t < to)
        .collect();
    let unavailable: Vec<Instant> = within
        .iter()
        .filter(|(_, o)| *o == Outcome::Unavailable)
        .map(|(t, _)| *t)
        .collect();
    let unavailable_seconds = match (unavailable.first(), unavailable.last()) {
        (Some(first), Some(last)) => (*last - *first).as_secs_f64(),
        _ => 0.0,
    };
    Figures {
        requests: within.len(),
        failed: within.iter().filter(|(_, o)| *o != Outcome::Ok).count(),
        unavailable_seconds,
    }
}

/// How many of `emails` (acknowledged registrations) have no account on the primary.
async fn missing_registrations(url: &str, emails: &[String]) -> usize {
    use diesel::{ExpressionMethods, QueryDsl};
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    diesel::table! { users (id) { id -> Uuid, email -> Text, } }
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    let found: Vec<String> = users::table
        .filter(users::email.eq_any(emails))
        .select(users::email)
        .load(&mut conn)
        .await
        .unwrap();
    emails.len() - found.len()
}

/// Runs `what` (a blocking formation command) while the load goes on.
async fn during_load(what: &'static str, dir: String) -> String {
    tokio::task::spawn_blocking(move || script(&[what, &dir]))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn switchover_and_failover_lose_nothing_acknowledged() {
    let started = Instant::now();
    let formation = Formation::up();
    eprintln!("ha: formation up in {:?}: {}", started.elapsed(), formation.url);
    {
        // Acknowledged means on both nodes: the primary waits for the secondary.
        use diesel::{dsl::sql, sql_types::Text};
        use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
        let mut conn = AsyncPgConnection::establish(&formation.url).await.unwrap();
        let names: String = diesel::select(sql::<Text>("current_setting('synchronous_standby_names')"))
            .get_result(&mut conn)
            .await
            .unwrap();
        assert!(!names.is_empty(), "synchronous replication is on");
        eprintln!("ha: synchronous_standby_names = {names}");
    }
    let sink = SmtpSink::start().await;
    let mut service = Service::builder()
        .env("DATABASE_URL", &formation.url)
        .env("DATABASE_POOL_SIZE", "8")
        .env("PASSWORD_HASH_CONCURRENCY", "2")
        .env("SMTP_URL", sink.url())
        .env("MAIL_POLL_INTERVAL", "200ms")
        .env("MAIL_RETRY_BASE", "200ms")
        .env("MAIL_RETRY_MAX", "1s")
        // A mail claimed on the primary that is then killed waits for its claim to lapse
        // (MAIL_SMTP_TIMEOUT + 60 s) before another worker takes it: kept short here.
        .env("MAIL_SMTP_TIMEOUT", "3s")
        // A refresh whose answer the kill lost is sent again after the failover and must
        // get the same pair: the README's advice, a grace window above the failover time
        // (about 8 s here, more on a loaded machine; the default is 10 s).
        .env("REFRESH_GRACE_SECONDS", "30")
        .env("HTTP_RATE_LIMIT", "off")
        .env("THROTTLE_LOGIN_ACCOUNT", "off")
        .env("THROTTLE_LOGIN_ACCOUNT_ADDRESS", "off")
        .env("THROTTLE_LOGIN_ADDRESS", "off")
        .env("THROTTLE_REGISTER_ADDRESS", "off")
        .env("THROTTLE_TOKEN_ADDRESS", "off")
        .env("THROTTLE_EMAIL_ADDRESS", "off")
        .env("THROTTLE_EMAIL_RECIPIENT", "off");
    if let Ok(bin) = std::env::var("AUTHGRAPH_BIN") {
        service = service.bin(bin);
    }
    let service = Arc::new(service.spawn());
    eventually("ready on the formation", || async {
        service.get("/readyz").await.0 == 200
    })
    .within(Duration::from_secs(60))
    .await;

    let log = Arc::new(Mutex::new(Log::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|id| tokio::spawn(client(service.clone(), log.clone(), stop.clone(), id)))
        .collect();
    let served = || log.lock().unwrap().requests.len();
    let recovered = |since: Instant, log: &Arc<Mutex<Log>>| {
        let log = log.lock().unwrap();
        log.requests
            .iter()
            .filter(|(t, o)| *t > since && *o == Outcome::Ok)
            .count()
            > 20
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(served() > 20, "the load runs before the switch");

    // (1) Planned: pg_autoctl perform switchover, under load.
    let before = formation.primary_port();
    let t1 = Instant::now();
    during_load("switchover", formation.dir()).await;
    let after = formation.primary_port();
    assert_ne!(before, after, "the switchover moved the primary");
    let switched = Instant::now();
    eventually("served again after the switchover", || async {
        recovered(switched, &log)
    })
    .await;
    script(&["wait-healthy", &formation.dir(), "60"]);
    let t2 = Instant::now();

    let registered_before_kill = log.lock().unwrap().registered.clone();
    let missing_after_switchover = missing_registrations(&formation.url, &registered_before_kill).await;

    // (2) Unplanned: SIGKILL the primary's keeper and postmaster at once.
    let killed = during_load("kill-primary", formation.dir()).await;
    let dead_port = after;
    let mut new_primary = String::new();
    eventually("a new primary after the kill", || {
        new_primary = formation.primary_port();
        let moved = !new_primary.is_empty() && new_primary != dead_port;
        async move { moved }
    })
    .within(Duration::from_secs(60))
    .await;
    let failed_over = Instant::now();
    eventually("served again after the failover", || async {
        recovered(failed_over, &log)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let t3 = Instant::now();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    eprintln!(
        "ha: killed {killed}; failover to port {new_primary} seen after {:?}",
        failed_over - t2
    );

    // The client's log against the new primary, through the same two-host URL.
    let log = Arc::try_unwrap(log).ok().unwrap().into_inner().unwrap();
    let probe = reqwest::Client::new();
    let missing_registrations = missing_registrations(&formation.url, &log.registered).await;
    // Every chain's last acknowledged token: a live one refreshes (its rotation and its
    // login are on the new primary), a logged-out one is refused.
    let mut broken_chains = log.broken_at.len();
    let mut missing_logouts = 0;
    for chain in &log.chains {
        let body: Value = probe
            .post(service.url("/graphql"))
            .header("content-type", "application/json")
            .body(json!({ "query": REFRESH, "variables": { "t": chain.refresh } }).to_string())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ok = body["errors"].is_null();
        match (chain.logged_out, ok) {
            (false, false) => {
                eprintln!(
                    "ha: a chain's last acknowledged token is refused (its last try {}): {body}",
                    if chain.retrying {
                        "got no answer"
                    } else {
                        "was answered"
                    }
                );
                broken_chains += 1;
            }
            (true, true) => missing_logouts += 1,
            _ => {}
        }
    }
    // A lost registration is a lost write, not a late mail: say so first.
    assert_eq!(
        missing_registrations, 0,
        "acknowledged registrations missing on the new primary"
    );
    // Every acknowledged registration's verification mail arrives, each exactly once;
    // one claimed at the moment of the kill arrives once its claim lapses.
    let registered = log.registered.len();
    eventually("every verification mail delivered", || async {
        let got: std::collections::HashSet<String> =
            sink.messages().iter().flat_map(|m| m.rcpt_to.clone()).collect();
        log.registered.iter().all(|e| got.contains(e))
    })
    .within(Duration::from_secs(90))
    .await;
    let mut per_recipient: HashMap<String, usize> = HashMap::new();
    for m in sink.messages() {
        for r in m.rcpt_to {
            *per_recipient.entry(r).or_default() += 1;
        }
    }
    let duplicated = per_recipient.values().filter(|n| **n > 1).count();

    let planned = figures(&log, t1, t2);
    let unplanned = figures(&log, t2, t3);
    let internal = log
        .unexpected
        .iter()
        .filter(|c| c.contains("INTERNAL_SERVER_ERROR"))
        .count();
    let broken_in =
        |from: Instant, to: Instant| log.broken_at.iter().filter(|t| **t >= from && **t < to).count();
    eprintln!(
        "ha: switchover: {:.1} s of SERVICE_UNAVAILABLE, {} of {} requests failed, \
         acknowledged registrations missing after it: {missing_after_switchover}, refresh chains broken: {}",
        planned.unavailable_seconds,
        planned.failed,
        planned.requests,
        broken_in(t1, t2)
    );
    eprintln!(
        "ha: failover (SIGKILL): {:.1} s of SERVICE_UNAVAILABLE, {} of {} requests failed, \
         refresh chains broken: {}",
        unplanned.unavailable_seconds,
        unplanned.failed,
        unplanned.requests,
        broken_in(t2, t3)
    );
    eprintln!(
        "ha: whole run: {} requests, {registered} registrations, {} sessions and {} refresh \
         rotations acknowledged ({} after a try that got no answer); acknowledged writes \
         missing: {missing_registrations} registrations, {missing_logouts} logouts; refresh \
         chains broken: {broken_chains}; mails duplicated: {duplicated}; test took {:?}",
        log.requests.len(),
        log.chains.len(),
        log.rotations,
        log.retried_refreshes,
        started.elapsed()
    );

    assert!(
        registered > 20,
        "too little load to prove anything: {registered} registrations"
    );
    assert_eq!(
        missing_after_switchover, 0,
        "acknowledged registrations missing after the switchover"
    );
    assert_eq!(missing_logouts, 0, "acknowledged logouts undone");
    assert_eq!(broken_chains, 0, "refresh chains broken");
    assert_eq!(internal, 0, "INTERNAL_SERVER_ERROR: {:?}", log.unexpected);
    assert!(
        log.unexpected.is_empty(),
        "unexpected errors: {:?}",
        log.unexpected
    );
    assert_eq!(duplicated, 0, "mails delivered more than once");
}

/// A server that turns read-only under open connections (what a demoted primary is):
/// writes answer SERVICE_UNAVAILABLE, never an internal error, the pool drops the
/// read-only connections instead of reusing them, and writes succeed again once the
/// server takes them. Needs no pg_auto_failover: `default_transaction_read_only` on a
/// cluster of the test's own refuses writes with the same SQLSTATE (25006) a standby does.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_turned_read_only_is_unavailable_and_its_connections_are_dropped() {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

    let pg = crate::support::PgCluster::init();
    pg.start();
    let service = Service::builder()
        .env("DATABASE_URL", pg.url("authgraph_ro"))
        .spawn();
    eventually("ready", || async { service.get("/readyz").await.0 == 200 })
        .within(Duration::from_secs(60))
        .await;
    let register = |tag: &'static str| {
        let service = &service;
        async move {
            service
                .graphql(
                    REGISTER,
                    json!({ "input": { "email": email(tag), "password": PASSWORD } }),
                    &[],
                )
                .await
        }
    };
    let (_, body, _) = register("before").await;
    assert!(body["errors"].is_null(), "{body}");

    let mut admin = AsyncPgConnection::establish(&pg.url("postgres")).await.unwrap();
    let read_only = async |admin: &mut AsyncPgConnection, on: bool| {
        diesel::sql_query(format!("alter system set default_transaction_read_only = {on}"))
            .execute(admin)
            .await
            .unwrap();
        diesel::sql_query("select pg_reload_conf()")
            .execute(admin)
            .await
            .unwrap();
        // Every backend applies a reload at its next command; give them a moment.
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    read_only(&mut admin, true).await;
    for _ in 0..3 {
        let (http, body, _) = register("readonly").await;
        assert_eq!(
            (http, crate::support::code(&body)),
            (200, "SERVICE_UNAVAILABLE"),
            "{body}"
        );
    }
    read_only(&mut admin, false).await;
    let (_, body, _) = register("after").await;
    assert!(body["errors"].is_null(), "{body}");

    let (_, metrics) = service.get("/metrics").await;
    let closed = metrics
        .lines()
        .find_map(|l| l.strip_prefix("authgraph_db_pool_connections_closed_total{reason=\"invalid\"} "))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(
        closed > 0.0,
        "read-only connections were dropped on checkout: {metrics}"
    );
    let lines = service.json_lines();
    assert!(!lines.iter().any(|l| l["level"] == "ERROR"), "{lines:#?}");
}
