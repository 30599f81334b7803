//! The database: `DATABASE_URL`, `DATABASE_POOL_SIZE` and `DATABASE_TIMEOUT`.

use std::time::Duration;

use anyhow::bail;
use secrecy::SecretString;

use super::{nonzero_duration, positive};

/// Where the database is and how the pool reaches it.
#[derive(Clone, Debug)]
pub struct DatabaseConfig {
    /// `DATABASE_URL`, trimmed and otherwise handed to the connection unchanged: it may
    /// carry a password, hence secret.
    pub url: SecretString,
    /// The servers and database `url` names, for messages that must not quote it.
    pub target: DatabaseTarget,
    /// `DATABASE_POOL_SIZE`: connections per process.
    pub pool_size: u32,
    /// `DATABASE_TIMEOUT`: how long a request waits for a connection before `SERVICE_UNAVAILABLE`.
    pub timeout: Duration,
}

impl DatabaseConfig {
    /// Reads the variables above.
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let raw =
            get("DATABASE_URL").unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/authgraph".into());
        let target = DatabaseTarget::parse(&raw)?;
        Ok(Self {
            url: SecretString::from(raw.trim().to_owned()),
            target,
            pool_size: positive(get, "DATABASE_POOL_SIZE", 10)?,
            // Below 2 s, so a request needing a database that is down answers
            // SERVICE_UNAVAILABLE within 2 s, checkout and all.
            timeout: nonzero_duration(get, "DATABASE_TIMEOUT", Duration::from_secs(1))?,
        })
    }
}

/// Where `DATABASE_URL` points, read the way the connection reads it (tokio-postgres),
/// for messages that name the server and for creating the database in development.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabaseTarget {
    /// Every `host:port` (or socket directory) in the URL, in order, comma-separated.
    pub servers: String,
    /// The database name (percent-decoded).
    pub dbname: String,
}

impl DatabaseTarget {
    /// Reads a `postgres://` or `postgresql://` URL naming at least one host and a
    /// database. Multi-host URLs (`postgres://u@h1:5432,h2:5432/db?target_session_attrs=read-write`)
    /// are well-formed. Errors name `DATABASE_URL` and never echo it (it may carry a
    /// password).
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        const EXAMPLE: &str = "postgres://user:password@host:5432/dbname";
        let url = url.trim();
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        match scheme {
            Some("postgres" | "postgresql") => {}
            // A scheme holds no secret: naming it tells a `mysql://` from a typo.
            Some(other)
                if !other.is_empty()
                    && other.len() <= 20
                    && other
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
            {
                bail!("DATABASE_URL must be a PostgreSQL URL like {EXAMPLE}, not a `{other}://` URL")
            }
            _ => bail!("DATABASE_URL must be a PostgreSQL URL like {EXAMPLE}"),
        }
        let config: tokio_postgres::Config = url.parse().map_err(|e| {
            anyhow::anyhow!("DATABASE_URL is not a valid PostgreSQL URL ({e}); expected {EXAMPLE}")
        })?;
        let hosts = config.get_hosts();
        if hosts.is_empty() {
            bail!("DATABASE_URL names no host; expected {EXAMPLE}");
        }
        let ports = config.get_ports();
        if ports.len() > 1 && ports.len() != hosts.len() {
            bail!(
                "DATABASE_URL lists {} ports for {} hosts: give one port per host, or one for all",
                ports.len(),
                hosts.len()
            );
        }
        let servers = hosts
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
                match host {
                    tokio_postgres::config::Host::Tcp(name) if name.contains(':') => {
                        format!("[{name}]:{port}")
                    }
                    tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                    #[cfg(unix)]
                    tokio_postgres::config::Host::Unix(dir) => format!("{}/.s.PGSQL.{port}", dir.display()),
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        // In the path, where the development start-up finds it to create the database
        // (and where every example puts it); without one the server would pick a
        // database named after the user.
        let (base, _) = url.split_once('?').unwrap_or((url, ""));
        let in_path = base
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('/'))
            .is_some_and(|(_, path)| !path.is_empty());
        let dbname = config.get_dbname().filter(|name| in_path && !name.is_empty());
        let Some(dbname) = dbname else {
            bail!(
                "DATABASE_URL names no database: put its name after the host, as in postgres://postgres@127.0.0.1:5432/authgraph"
            );
        };
        Ok(Self {
            servers,
            dbname: dbname.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_host_urls_are_well_formed() {
        let target =
            DatabaseTarget::parse("postgres://u:pw@h1:5432,h2:5433/db?target_session_attrs=read-write")
                .unwrap();
        assert_eq!(target.servers, "h1:5432, h2:5433");
        assert_eq!(target.dbname, "db");
        let target = DatabaseTarget::parse("postgresql://u@h1,h2:6432/my%20db").unwrap();
        assert_eq!(target.servers, "h1:5432, h2:6432");
        assert_eq!(target.dbname, "my db");
        assert_eq!(
            DatabaseTarget::parse("postgres://postgres@127.0.0.1/authgraph")
                .unwrap()
                .servers,
            "127.0.0.1:5432"
        );
    }
}
