//! The real `authgraph` binary as a child process: started on a free port with
//! `LOG_FORMAT=json`, its log lines collected, signalled and awaited like an operator would.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use authgraph::auth::jwt::{KeyAlgorithm, SigningKey};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

/// A running service process; killed on drop if still running.
pub struct Service {
    child: Child,
    pub addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
    _dir: TempDir,
}

/// How a [`Service`] starts: environment variables on top of a clean configuration (its own
/// working directory, so no `.env` is read; `LISTEN_ADDR` on a free port; JSON logs), and
/// which build of the binary. `Service::builder().env("DATABASE_URL", &db.url).spawn()`.
#[derive(Clone, Default)]
#[must_use = "the service starts only with `.spawn()`"]
pub struct ServiceBuilder {
    bin: Option<PathBuf>,
    env: Vec<(String, String)>,
}

impl ServiceBuilder {
    /// Sets an environment variable of the process (a later one wins).
    pub fn env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.env.push((name.to_owned(), value.into()));
        self
    }

    /// Sets each of `vars`, as [`Self::env`] does.
    pub fn envs<K: AsRef<str>, V: Into<String>>(self, vars: impl IntoIterator<Item = (K, V)>) -> Self {
        vars.into_iter()
            .fold(self, |builder, (name, value)| builder.env(name.as_ref(), value))
    }

    /// Production mode (`APP_ENV=production`) on the database at `url`, signing with a
    /// fresh ES256 key; every service spawned from this builder shares it, as replicas do.
    pub fn production(self, url: &str) -> Self {
        let (_, pem) = SigningKey::generate(KeyAlgorithm::Es256).unwrap();
        self.env("APP_ENV", "production")
            .env("DATABASE_URL", url)
            .env("JWT_KEYS", pem.expose_secret())
    }

    /// Runs another build of the binary (a release build, for figures).
    pub fn bin(mut self, path: impl Into<PathBuf>) -> Self {
        self.bin = Some(path.into());
        self
    }

    /// Starts the process and waits until it listens.
    pub fn spawn(&self) -> Service {
        let dir = TempDir::new("svc");
        let mut command = Command::new(
            self.bin
                .as_deref()
                .unwrap_or_else(|| Path::new(env!("CARGO_BIN_EXE_authgraph"))),
        );
        command
            .current_dir(&dir.0)
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .env("DATA_DIR", dir.0.join("data"))
            .env("PASSWORD_HASH_CONCURRENCY", "1")
            .env("MFA_ENCRYPTION_KEY", super::app::TEST_MFA_KEY)
            .env("DATABASE_POOL_SIZE", "3");
        for name in ["APP_ENV", "DATABASE_URL", "JWT_KEYS", "DATABASE_TIMEOUT"] {
            command.env_remove(name);
        }
        for (name, value) in &self.env {
            command.env(name, value);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting the authgraph binary");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        let collected = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v["message"] == "authgraph listening"
                    && let Some(addr) = v["addr"].as_str().and_then(|a| a.parse().ok())
                {
                    let _ = addr_tx.send(addr);
                }
                collected.lock().unwrap().push(line);
            }
        });
        let addr: SocketAddr = addr_rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the service did not start: {:?}", lines.lock().unwrap()));
        Service {
            child,
            addr,
            lines,
            _dir: dir,
        }
    }
}

impl Service {
    /// Starts describing a process; `.spawn()` starts it.
    pub fn builder() -> ServiceBuilder {
        ServiceBuilder::default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every line the process wrote to stdout so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The log lines as JSON; panics on a line that is not one JSON object.
    pub fn json_lines(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
                assert!(v.is_object(), "not an object: {l}");
                v
            })
            .collect()
    }

    /// The process id (to read its memory from /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM, as an orchestrator stopping the container would.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// POSTs a GraphQL operation; returns status, body and the time it took.
    pub async fn graphql(
        &self,
        query: &str,
        variables: Value,
        headers: &[(&str, &str)],
    ) -> (u16, Value, Duration) {
        let mut request = client()
            .post(self.url("/graphql"))
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let started = Instant::now();
        let response = request
            .body(json!({ "query": query, "variables": variables }).to_string())
            .send()
            .await
            .expect("the request did not complete (the service hangs?)");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body, started.elapsed())
    }

    /// GETs a path; returns status and body text.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = client()
            .get(self.url(path))
            .send()
            .await
            .expect("the request did not complete (the service hangs?)");
        (response.status().as_u16(), response.text().await.unwrap())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A client that gives up after 5 s: a request that takes longer counts as a hang.
pub fn client() -> reqwest::Client {
    // reqwest's rustls has no provider of its own (see auth::breach).
    authgraph::auth::breach::install_tls_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// A directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "authgraph-{tag}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
