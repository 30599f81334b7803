//! What a new user meets on first use: start-up and command-line messages that name what
//! is wrong (the variable, the server, the cause), run as the real binary.

use std::{
    io::Read,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::json;

use crate::support::{ME, PASSWORD, REGISTER, Service, TempDir, TestApp, TestDb, email};

/// Nothing listens here: connecting is refused at once.
const REFUSED_URL: &str = "postgres://postgres@127.0.0.1:1/authgraph";

struct Run {
    /// `None` when the process was still running at the deadline (and was killed).
    success: Option<bool>,
    stdout: String,
    stderr: String,
}

/// Runs `authgraph args` with `vars` on a clean configuration (own working directory, so
/// no `.env`), for at most `limit`.
fn authgraph(args: &[&str], vars: &[(&str, &str)], limit: Duration) -> Run {
    let dir = TempDir::new("cli");
    let mut command = Command::new(env!("CARGO_BIN_EXE_authgraph"));
    command
        .args(args)
        .current_dir(&dir.0)
        .env("DATA_DIR", dir.0.join("data"))
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for name in [
        "APP_ENV",
        "DATABASE_URL",
        "JWT_KEYS",
        "DATABASE_TIMEOUT",
        "RUST_LOG",
    ] {
        command.env_remove(name);
    }
    for (name, value) in vars {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("starting the authgraph binary");
    let deadline = Instant::now() + limit;
    let success = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status.success());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    Run {
        success,
        stdout,
        stderr,
    }
}

/// `url` with a first host where nothing listens: the connection must go on to the next.
fn multi_host(url: &str) -> String {
    let (user, rest) = url.split_once('@').expect("test database URLs name a user");
    let sep = if rest.contains('?') { '&' } else { '?' };
    format!("{user}@127.0.0.1:1,{rest}{sep}target_session_attrs=read-write")
}

#[test]
fn a_malformed_database_url_stops_start_up_naming_the_variable() {
    for (url, says) in [
        ("nonsense", "PostgreSQL URL"),
        ("mysql://root@127.0.0.1:3306/authgraph", "`mysql://`"),
        ("postgres://postgres@127.0.0.1:5432", "names no database"),
    ] {
        let run = authgraph(&["serve"], &[("DATABASE_URL", url)], Duration::from_secs(20));
        assert_eq!(
            run.success,
            Some(false),
            "{url}: serve must stop at once\nstdout: {}\nstderr: {}",
            run.stdout,
            run.stderr
        );
        assert!(
            run.stderr.contains("DATABASE_URL") && run.stderr.contains(says),
            "{url}: {}",
            run.stderr
        );
    }
}

#[test]
fn commands_with_the_database_down_name_the_server_and_the_cause() {
    for (args, env) in [
        (vec!["migrate"], "development"),
        (vec!["migrate"], "production"),
        (
            vec!["user", "set-role", "ada@example.com", "ADMIN"],
            "development",
        ),
        (vec!["user", "set-role", "ada@example.com", "ADMIN"], "production"),
    ] {
        let run = authgraph(
            &args,
            &[("DATABASE_URL", REFUSED_URL), ("APP_ENV", env)],
            Duration::from_secs(60),
        );
        assert_eq!(run.success, Some(false), "{args:?} ({env}): {}", run.stderr);
        let said = run.stderr.to_lowercase();
        assert!(
            said.contains("127.0.0.1:1")
                && said.contains("connection refused")
                && said.contains("database_url"),
            "{args:?} ({env}) must name the server and the cause: {}",
            run.stderr
        );
        for internal in ["temporarily unavailable", "retry shortly", "jwt_keys", "bb8"] {
            assert!(!said.contains(internal), "{args:?} ({env}): {}", run.stderr);
        }
    }
}

#[tokio::test]
async fn production_operator_commands_need_no_signing_keys() {
    let app = TestApp::spawn().await;
    let ada = email("ada");
    app.register(&ada, PASSWORD).await;
    let vars = [("APP_ENV", "production"), ("DATABASE_URL", app.db.url.as_str())];
    let migrate = authgraph(&["migrate"], &vars, Duration::from_secs(60));
    assert_eq!(migrate.success, Some(true), "{}", migrate.stderr);
    let set_role = authgraph(
        &["user", "set-role", &ada, "ADMIN"],
        &vars,
        Duration::from_secs(60),
    );
    assert_eq!(set_role.success, Some(true), "{}", set_role.stderr);
    assert!(
        set_role.stdout.contains("role set to ADMIN"),
        "{}",
        set_role.stdout
    );
}

#[tokio::test]
async fn listen_addr_takes_a_host_name() {
    let db = TestDb::create();
    let service = Service::builder()
        .env("DATABASE_URL", &db.url)
        .env("LISTEN_ADDR", "localhost:0")
        .spawn();
    assert!(service.addr.ip().is_loopback(), "{}", service.addr);
    let (status, _) = service.get("/healthz").await;
    assert_eq!(status, 200);
}

#[test]
fn a_bad_listen_addr_says_what_it_needs() {
    let run = authgraph(
        &["serve"],
        &[("LISTEN_ADDR", "8080"), ("DATABASE_URL", REFUSED_URL)],
        Duration::from_secs(20),
    );
    assert_eq!(run.success, Some(false), "{}", run.stderr);
    assert!(
        run.stderr.contains("LISTEN_ADDR") && run.stderr.contains("127.0.0.1:8080"),
        "{}",
        run.stderr
    );
}

/// Multi-host URLs (high availability) reach the database through every connection
/// path: migrations and database creation, the pool behind requests, the throttle and
/// the mail worker.
#[tokio::test]
async fn multi_host_database_urls_reach_the_database_everywhere() {
    let db = TestDb::create();
    let url = multi_host(&db.url);
    let migrate = authgraph(&["migrate"], &[("DATABASE_URL", &url)], Duration::from_secs(60));
    assert_eq!(migrate.success, Some(true), "{}", migrate.stderr);

    let service = Service::builder()
        .production(&url)
        .env("MAIL_POLL_INTERVAL", "1")
        .spawn();
    let (status, body) = service.get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    let (_, body, _) = service
        .graphql(
            REGISTER,
            json!({ "input": { "email": email("multi"), "password": PASSWORD } }),
            &[],
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
    let token = body["data"]["register"]["accessToken"].as_str().unwrap();
    let (_, me, _) = service
        .graphql(ME, json!({}), &[("authorization", &format!("Bearer {token}"))])
        .await;
    assert!(me["errors"].is_null(), "{me}");
    // The worker reads the outbox through the same pool: no "cannot reach" line.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let lines = service.lines().join("\n");
    assert!(!lines.contains("cannot reach the database"), "{lines}");
    let (_, metrics) = service.get("/metrics").await;
    assert!(
        metrics.contains("authgraph_mail_outbox_depth"),
        "the worker sampled the outbox"
    );
}

#[tokio::test]
async fn a_bearer_token_that_is_no_jwt_is_called_invalid() {
    let app = TestApp::spawn().await;
    let body = app
        .post(ME, json!({}), &[("authorization", "Bearer abc.def.ghi")])
        .await
        .body;
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{body}"
    );
    assert!(!message.contains("header must be"), "{message}");
    assert!(message.contains("access token is not valid"), "{message}");
    // A header that really is wrong still says so.
    let body = app
        .post(ME, json!({}), &[("authorization", "Token abc")])
        .await
        .body;
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("Bearer <access token>"), "{message}");
}
