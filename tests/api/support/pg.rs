//! A throwaway PostgreSQL cluster of the test's own, on a free port, that the test can
//! stop and start: outages are rehearsed here, never on the shared server at 5432.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use super::process::TempDir;

/// A cluster made with `initdb` in a temporary directory; stopped and removed on drop.
pub struct PgCluster {
    bin: PathBuf,
    dir: TempDir,
    pub port: u16,
}

/// The newest installed server's `bin` directory (`PG_BIN` overrides).
fn server_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("PG_BIN") {
        return PathBuf::from(bin);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("a PostgreSQL server under /usr/lib/postgresql (or set PG_BIN)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop().expect("pg_ctl under /usr/lib/postgresql/*/bin")
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PgCluster {
    /// Creates the cluster (trust authentication, user `postgres`) without starting it.
    pub fn init() -> Self {
        let bin = server_bin();
        let dir = TempDir::new("pg");
        if running_as_root() {
            // The server refuses to run as root: the cluster belongs to `postgres`.
            run(Command::new("chown").args(["postgres:postgres"]).arg(&dir.0));
        }
        let cluster = Self {
            bin,
            dir,
            port: free_port(),
        };
        cluster.pg(
            "initdb",
            &[
                "-D",
                &cluster.data(),
                "--auth=trust",
                "--username=postgres",
                "--no-sync",
                "--no-instructions",
            ],
        );
        cluster
    }

    fn data(&self) -> String {
        self.dir.0.join("data").display().to_string()
    }

    fn pg(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let mut command = if running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        command.args(args).current_dir(&self.dir.0);
        run(&mut command);
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=30",
            self.port,
            self.dir.0.display()
        );
        let log = self.dir.0.join("server.log").display().to_string();
        self.pg(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    /// Stops the server the way an operator's restart does: clients are disconnected.
    pub fn stop(&self) {
        self.pg(
            "pg_ctl",
            &["-D", &self.data(), "-m", "fast", "-w", "-t", "60", "stop"],
        );
    }

    /// A connection URL for database `name` on this cluster.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if Path::new(&self.data()).join("postmaster.pid").exists() {
            let exe = self.bin.join("pg_ctl");
            let mut command = if running_as_root() {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(&exe);
                c
            } else {
                Command::new(&exe)
            };
            let _ = command
                .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
                .current_dir(&self.dir.0)
                .output();
        }
    }
}

fn run(command: &mut Command) {
    let out = command.output().expect("running a PostgreSQL tool");
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
