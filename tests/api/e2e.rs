//! The Node end-to-end suites of `tests/e2e`, driven from `cargo test` so the README's one
//! test command runs them too: each test serves the real app on a real socket and runs one
//! suite with `node`, failing with the suite's output when it fails.
//!
//! Prerequisites: `npm ci` runs when `node_modules` is missing or older than
//! `package-lock.json`. Chromium is a system package, so it is never installed from here
//! (`.ci/run` and `just e2e` install it): the GraphiQL test fails saying how to get it.
//! These suites are never skipped.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    time::{Duration, SystemTime},
};

use crate::support::TestApp;

const E2E_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e");
/// A guard against a hung browser or server, not a performance bound.
const SUITE_DEADLINE: Duration = Duration::from_secs(300);
/// Where the GraphiQL page of the self-hosting check loads its assets (answered by the suite).
const SELF_HOSTED_ASSETS: &str = "http://assets.test/npm";

/// Runs a command to completion; its combined output on failure.
fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: could not start: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    path.metadata().and_then(|m| m.modified()).ok()
}

/// Node.js 20 or newer, and `tests/e2e/node_modules` as `package-lock.json` pins it.
fn node_modules() -> Result<(), String> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    READY
        .get_or_init(|| {
            let missing = "the e2e suites need Node.js 20 or newer with npm on PATH \
                           (`node --version`); install them, then run `cargo test` again";
            let version = Command::new("node")
                .arg("--version")
                .output()
                .map_err(|_| missing.to_owned())?;
            let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
            let major: u32 = version
                .trim_start_matches('v')
                .split('.')
                .next()
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            if major < 20 {
                return Err(format!("{missing} (found `{version}`)"));
            }
            let dir = Path::new(E2E_DIR);
            let lock =
                modified(&dir.join("package-lock.json")).ok_or("tests/e2e/package-lock.json is missing")?;
            // npm writes this file on every install: it dates node_modules.
            let installed = modified(&dir.join("node_modules/.package-lock.json"));
            if installed.is_none_or(|installed| installed < lock) {
                eprintln!("e2e: installing tests/e2e/node_modules with `npm ci`");
                run(
                    Command::new("npm")
                        .args(["ci", "--no-audit", "--no-fund"])
                        .current_dir(dir),
                    "`npm ci` in tests/e2e",
                )?;
            }
            Ok(())
        })
        .clone()
}

/// How to get Chromium, in the failure of the one suite that needs it. `cargo test`
/// installs no system package itself: as root that once pulled in ~120 recommended
/// packages (avahi, cups, samba libraries), with the notice hidden by the test runner.
const CHROMIUM_HINT: &str = "install Debian's Chromium with \
    `apt-get install -y --no-install-recommends chromium` (as root), or run `just e2e`, \
    which installs it the same way; or set CHROMIUM_PATH to a Chromium elsewhere. \
    Then run `cargo test` again.";

/// Chromium at `path`, or what to do to get it.
fn chromium_at(path: &Path) -> Result<PathBuf, String> {
    if path.is_file() {
        Ok(path.to_path_buf())
    } else {
        Err(format!(
            "the GraphiQL end-to-end suite needs Chromium, and there is none at {}: {CHROMIUM_HINT}",
            path.display()
        ))
    }
}

/// Debian's Chromium (`CHROMIUM_PATH` overrides where it is).
fn chromium() -> Result<PathBuf, String> {
    let path = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    chromium_at(Path::new(&path))
}

/// Runs `node <suite>` in tests/e2e with `env`; panics with its output unless it passes.
async fn suite(script: &str, env: &[(&str, String)]) {
    if let Err(problem) = node_modules() {
        panic!("{problem}");
    }
    let mut node = tokio::process::Command::new("node");
    node.arg(script)
        .current_dir(E2E_DIR)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    // Async, so the in-process server keeps answering while node runs.
    let output = tokio::time::timeout(SUITE_DEADLINE, node.output())
        .await
        .unwrap_or_else(|_| panic!("{script} was still running after {SUITE_DEADLINE:?}: stopped"))
        .unwrap_or_else(|e| panic!("could not start `node {script}`: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "tests/e2e/{script} failed ({}):\n{text}",
        output.status
    );
    println!("{text}");
}

async fn served(app: &TestApp) -> String {
    format!("http://{}", app.serve_tcp().await)
}

/// The `graphql-http` audits: zero MUST failures, every other warning fixed or explained.
#[tokio::test]
async fn graphql_over_http_audit_passes() {
    let app = TestApp::spawn().await;
    suite("audit.mjs", &[("AUTHGRAPH_URL", served(&app).await)]).await;
}

/// Composition with an `orders` subgraph, Apollo Gateway and Hive gateway in front.
#[tokio::test]
async fn gateways_compose_and_verify_our_tokens() {
    let app = TestApp::spawn().await;
    suite("gateway.mjs", &[("AUTHGRAPH_URL", served(&app).await)]).await;
}

/// GraphiQL in headless Chromium: login, then `me` with the header; assets self-hostable.
#[tokio::test]
async fn graphiql_works_in_a_real_browser() {
    let browser = chromium().unwrap_or_else(|problem| panic!("{problem}"));
    let app = TestApp::spawn().await;
    let self_hosted = TestApp::builder()
        .env("GRAPHIQL_CDN_URL", SELF_HOSTED_ASSETS)
        .spawn()
        .await;
    suite(
        "graphiql.mjs",
        &[
            ("AUTHGRAPH_URL", served(&app).await),
            ("AUTHGRAPH_SELF_HOSTED_URL", served(&self_hosted).await),
            ("GRAPHIQL_CDN_URL", SELF_HOSTED_ASSETS.to_owned()),
            ("CHROMIUM_PATH", browser.display().to_string()),
        ],
    )
    .await;
}

/// Social sign-in against a real OpenID Connect provider (the `oidc-provider` package on
/// 127.0.0.1, development login and consent): startOAuth, the provider's redirects with a
/// cookie jar, completeOAuth, tokens. The provider is found lazily (first `startOAuth`),
/// so the app is configured with the port before the suite starts the provider on it.
#[tokio::test]
async fn social_sign_in_with_a_real_openid_provider() {
    const CLIENT_ID: &str = "authgraph-e2e";
    const CLIENT_SECRET: &str = "e2e-client-secret-0123456789abcdef";
    const REDIRECT_URI: &str = "https://app.example/auth/callback";
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let issuer = format!("http://127.0.0.1:{port}");
    let app = TestApp::builder()
        .env("OAUTH_PROVIDERS", "local")
        .env("OAUTH_LOCAL_NAME", "Local OIDC")
        .env("OAUTH_LOCAL_ISSUER", &issuer)
        .env("OAUTH_LOCAL_CLIENT_ID", CLIENT_ID)
        .env("OAUTH_LOCAL_CLIENT_SECRET", CLIENT_SECRET)
        .env("OAUTH_LOCAL_TRUST_EMAIL", "true")
        .env("OAUTH_REDIRECT_URIS", REDIRECT_URI)
        .spawn()
        .await;
    suite(
        "oidc.mjs",
        &[
            ("AUTHGRAPH_URL", served(&app).await),
            ("OIDC_PORT", port.to_string()),
            ("OIDC_CLIENT_ID", CLIENT_ID.to_owned()),
            ("OIDC_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
            ("OIDC_REDIRECT_URI", REDIRECT_URI.to_owned()),
            ("OIDC_PROVIDER_ID", "local".to_owned()),
        ],
    )
    .await;
}

/// Live events with the `graphql-ws` client across two replicas on one database: a
/// session revoked through one replica closes its socket on the other (4403).
#[tokio::test(flavor = "multi_thread")]
async fn live_events_sign_a_device_out_across_replicas() {
    let app = TestApp::spawn().await;
    let (_replica, replica_addr, _stop) = crate::live::second_replica(&app).await;
    suite(
        "live.mjs",
        &[
            ("AUTHGRAPH_URL", served(&app).await),
            ("AUTHGRAPH_REPLICA_URL", format!("http://{replica_addr}")),
        ],
    )
    .await;
}

#[test]
fn a_missing_chromium_fails_saying_how_to_get_it() {
    let problem = chromium_at(Path::new("/nonexistent/chromium")).unwrap_err();
    for hint in [
        "/nonexistent/chromium",
        "apt-get install -y --no-install-recommends chromium",
        "just e2e",
        "CHROMIUM_PATH",
    ] {
        assert!(problem.contains(hint), "{hint}: {problem}");
    }
}

/// Where the passkey page is served from in the browser (answered by the suite itself, so
/// nothing listens on it): the relying party origin authgraph is configured with.
const PASSKEY_PAGE_ORIGIN: &str = "http://localhost:48123";

/// Passkeys in headless Chromium with a CDP virtual authenticator: a page on the relying
/// party's origin registers one through GraphQL and signs in with it, by email and
/// discoverable; the screenshot is kept under target/.
#[tokio::test]
async fn passkeys_register_and_sign_in_in_a_real_browser() {
    let browser = chromium().unwrap_or_else(|problem| panic!("{problem}"));
    let app = TestApp::builder()
        .env("WEBAUTHN_RP_ID", "localhost")
        .env("WEBAUTHN_ORIGINS", PASSKEY_PAGE_ORIGIN)
        .spawn()
        .await;
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-artifacts");
    suite(
        "passkeys.mjs",
        &[
            ("AUTHGRAPH_URL", served(&app).await),
            ("PAGE_ORIGIN", PASSKEY_PAGE_ORIGIN.to_owned()),
            ("ARTIFACTS_DIR", artifacts.display().to_string()),
            ("CHROMIUM_PATH", browser.display().to_string()),
        ],
    )
    .await;
    assert!(
        artifacts.join("passkeys.png").exists(),
        "the screenshot was not kept"
    );
}
