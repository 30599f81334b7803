//! Live-events sockets: `LIVE_MAX_SOCKETS_PER_USER`, `LIVE_MAX_SOCKETS_PER_ADDRESS`,
//! `LIVE_MAX_MESSAGE_BYTES`, `LIVE_PING_INTERVAL` and `LIVE_INIT_TIMEOUT`.

use std::time::Duration;

use anyhow::bail;

use super::{duration, positive};

/// Limits of the live-events sockets.
#[derive(Clone, Debug)]
pub struct LiveConfig {
    /// `LIVE_MAX_SOCKETS_PER_USER`: open sockets one user may hold (every tab and app).
    pub max_sockets_per_user: usize,
    /// `LIVE_MAX_SOCKETS_PER_ADDRESS`: open sockets from one client address, signed in
    /// or not (an office behind one NAT address holds many).
    pub max_sockets_per_address: usize,
    /// `LIVE_MAX_MESSAGE_BYTES`: largest message a client may send.
    pub max_message_bytes: usize,
    /// `LIVE_PING_INTERVAL`: how often the server pings; a socket silent for two
    /// intervals is closed.
    pub ping_interval: Duration,
    /// `LIVE_INIT_TIMEOUT`: how long a socket may stay open without `connection_init`.
    pub init_timeout: Duration,
}

impl LiveConfig {
    /// Reads the variables above.
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let config = Self {
            max_sockets_per_user: positive(get, "LIVE_MAX_SOCKETS_PER_USER", 20)?,
            max_sockets_per_address: positive(get, "LIVE_MAX_SOCKETS_PER_ADDRESS", 200)?,
            max_message_bytes: positive(get, "LIVE_MAX_MESSAGE_BYTES", 16 * 1024)?,
            ping_interval: duration(get, "LIVE_PING_INTERVAL", Duration::from_secs(30))?,
            init_timeout: duration(get, "LIVE_INIT_TIMEOUT", Duration::from_secs(10))?,
        };
        for (name, interval) in [
            ("LIVE_PING_INTERVAL", config.ping_interval),
            ("LIVE_INIT_TIMEOUT", config.init_timeout),
        ] {
            if interval.is_zero() {
                bail!("{name} must be greater than zero");
            }
        }
        Ok(config)
    }
}
