//! Log lines as an operator reads them, from the real binary: no colour codes in files
//! and pipes, each field once, rounded durations, messages that say what to do, and no
//! repeated or misleading lines while SMTP or the database is down.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::support::{PASSWORD, REGISTER, Service, TempDir, TestDb, client, email};

/// The binary with `LOG_FORMAT=pretty`, its stdout a pipe (as a log collector's is).
struct Pretty {
    child: Child,
    addr: String,
    lines: Arc<Mutex<Vec<String>>>,
    _dir: TempDir,
}

impl Pretty {
    fn spawn(vars: &[(&str, &str)]) -> Self {
        let dir = TempDir::new("pretty");
        let mut command = Command::new(env!("CARGO_BIN_EXE_authgraph"));
        command
            .current_dir(&dir.0)
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("LOG_FORMAT", "pretty")
            .env("RUST_LOG", "info")
            .env("DATA_DIR", dir.0.join("data"))
            .env("PASSWORD_HASH_CONCURRENCY", "1")
            .env_remove("NO_COLOR")
            .env_remove("APP_ENV")
            .env_remove("JWT_KEYS");
        for (name, value) in vars {
            command.env(name, value);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let collected = lines.clone();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains("authgraph listening") {
                    let _ = tx.send(line.clone());
                }
                collected.lock().unwrap().push(line);
            }
        });
        let listening = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("did not start: {:?}", lines.lock().unwrap()));
        // `addr=127.0.0.1:PORT`, possibly wrapped in colour codes.
        let addr = listening
            .split("addr")
            .nth(1)
            .and_then(|rest| {
                rest.split(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
                    .find(|s| s.contains(':'))
            })
            .map(|a| a.trim_start_matches(':').to_owned())
            .unwrap_or_else(|| panic!("no address in {listening:?}"));
        Self {
            child,
            addr,
            lines,
            _dir: dir,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for Pretty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The number of decimals `elapsed_ms=` is printed with (rounded to the microsecond:
/// at most three, not the 14 of a raw float).
fn decimals(line: &str) -> usize {
    let value = line
        .split("elapsed_ms=")
        .nth(1)
        .unwrap_or_else(|| panic!("no elapsed_ms in {line}"))
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()
        .unwrap();
    value.split_once('.').map_or(0, |(_, d)| d.len())
}

#[tokio::test]
async fn pretty_logs_in_a_pipe_are_plain_text_with_each_field_once() {
    let db = TestDb::create();
    let service = Pretty::spawn(&[("DATABASE_URL", db.url.as_str())]);
    let response = client()
        .post(format!("http://{}/graphql", service.addr))
        .header("content-type", "application/json")
        .body(json!({ "query": "query Probe { __typename }" }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        if let Some(line) = service
            .lines()
            .into_iter()
            .find(|l| l.contains("graphql operation"))
        {
            break line;
        }
        assert!(
            Instant::now() < deadline,
            "no operation line: {:?}",
            service.lines()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let all = service.lines().join("\n");
    assert!(!all.contains('\u{1b}'), "colour codes in a pipe:\n{all:?}");
    assert_eq!(line.matches("operation.name").count(), 1, "{line}");
    assert!(line.contains("operation.name=\"Probe\""), "{line}");
    assert!(decimals(&line) <= 3, "{line}");
}

#[tokio::test]
async fn json_operation_lines_carry_a_rounded_duration() {
    let db = TestDb::create();
    let service = Service::builder().env("DATABASE_URL", &db.url).spawn();
    let (status, _, _) = service
        .graphql("query Probe { __typename }", json!({}), &[])
        .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = service.json_lines();
    let line = lines
        .iter()
        .find(|l| l["message"] == "graphql operation")
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert_eq!(line["operation.name"], "Probe");
    let raw = service
        .lines()
        .into_iter()
        .find(|l| l.contains("\"graphql operation\""))
        .unwrap();
    assert!(
        decimals(&raw.replace("\"elapsed_ms\":", "elapsed_ms=")) <= 3,
        "{raw}"
    );
}

/// With no SMTP server, one failure line and one breaker line per outage, however many
/// attempts and probes fail.
#[tokio::test]
async fn an_smtp_outage_is_logged_once_not_per_attempt() {
    let db = TestDb::create();
    let service = Service::builder()
        .env("DATABASE_URL", &db.url)
        // Nothing listens on port 1: every attempt is refused at once.
        .env("SMTP_URL", "smtp://127.0.0.1:1")
        .env("MAIL_POLL_INTERVAL", "1")
        .env("MAIL_RETRY_BASE", "1")
        .env("MAIL_RETRY_MAX", "1")
        .env("MAIL_BREAKER_FAILURES", "2")
        .env("MAIL_BREAKER_OPEN", "1")
        .spawn();
    for tag in ["outage-1", "outage-2"] {
        let (_, body, _) = service
            .graphql(
                REGISTER,
                json!({ "input": { "email": email(tag), "password": PASSWORD } }),
                &[],
            )
            .await;
        assert!(body["errors"].is_null(), "{body}");
    }
    // Attempts, the opening and several failed probes.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let lines = service.json_lines();
    let count = |message: &str| lines.iter().filter(|l| l["message"] == message).count();
    let (_, metrics) = service.get("/metrics").await;
    let failed: f64 = metrics
        .lines()
        .find(|l| l.starts_with("authgraph_mail_deliveries_total{outcome=\"failed\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(
        failed >= 4.0,
        "the outage must have lasted several attempts: {failed}"
    );
    assert_eq!(count("mail delivery failed; will retry"), 1, "{lines:#?}");
    assert_eq!(
        count("SMTP circuit breaker open: delivery paused, one probe per open period"),
        1,
        "{lines:#?}"
    );
}

/// A service that never reached its database stops without claiming it failed to
/// record deliveries it never made, and its messages name no library internals.
#[tokio::test]
async fn database_down_messages_are_actionable_and_shutdown_claims_nothing() {
    let mut service = Service::builder()
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/authgraph")
        .env("MAIL_POLL_INTERVAL", "1")
        .spawn();
    tokio::time::sleep(Duration::from_secs(3)).await;
    service.sigterm();
    let status = service.wait_exit(Duration::from_secs(30)).expect("it exits");
    assert!(status.success());
    let lines = service.json_lines();
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    let text = text.join("\n");
    assert!(!text.contains("bb8"), "{text}");
    assert!(!text.contains("delivery outcome"), "{text}");
    let unreachable = lines
        .iter()
        .find(|l| l["message"] == "mail worker cannot reach the database; retrying")
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        unreachable["error"].as_str().unwrap().contains("DATABASE_URL"),
        "{unreachable}"
    );
}
