//! Live session events: the one `LISTEN authgraph_session_events` connection of the
//! process and the in-process fan-out ([`Hub`]) that every open socket subscribes to.
//!
//! The database publishes (triggers on `sessions` and `users`, see the migration
//! `notify_session_events`), so an event reaches every replica whichever replica made
//! the change, at commit and only then. Beside `mail` in the layering: fed by storage,
//! read by the transport (the `sessionEvents` subscription), and unknown to `auth`,
//! whose use cases publish nothing themselves.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The channel the database notifies on.
pub const CHANNEL: &str = "authgraph_session_events";

/// This session ended (logout, revocation, password change or reset, deletion).
pub const SESSION_REVOKED: &str = "SESSION_REVOKED";
/// Another session of the user started.
pub const NEW_SIGN_IN: &str = "NEW_SIGN_IN";
/// The user's password changed.
pub const PASSWORD_CHANGED: &str = "PASSWORD_CHANGED";

/// Events a slow socket may fall behind by before it misses some (it is told nothing:
/// the events are advisory and a user produces a handful a day).
const PER_USER_BACKLOG: usize = 64;
/// Longest event type kept: the payload comes from our own triggers, but a stray
/// `NOTIFY` on the channel must not make a socket carry megabytes.
const TYPE_MAX: usize = 64;

/// One event as the database publishes it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct Notice {
    /// `SESSION_REVOKED`, `NEW_SIGN_IN`, `PASSWORD_CHANGED`, or a later kind.
    #[serde(rename = "type")]
    pub kind: String,
    /// Whose event.
    pub user: Uuid,
    /// The session it is about, when it is about one.
    #[serde(default)]
    pub session: Option<Uuid>,
    /// That session's user agent.
    #[serde(default, rename = "userAgent")]
    pub user_agent: Option<String>,
    /// When the database made it, in milliseconds since the epoch.
    #[serde(default)]
    at: i64,
}

impl Notice {
    /// Parses a NOTIFY payload; `None` for anything that is not ours.
    pub fn parse(payload: &str) -> Option<Self> {
        let notice: Self = serde_json::from_str(payload).ok()?;
        (!notice.kind.is_empty() && notice.kind.len() <= TYPE_MAX).then_some(notice)
    }

    /// When it happened.
    pub fn at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.at).unwrap_or_else(Utc::now)
    }

    /// Whether it ends `session`.
    pub fn ends(&self, session: Uuid) -> bool {
        self.kind == SESSION_REVOKED && self.session == Some(session)
    }
}

/// The in-process fan-out: one broadcast channel per user with an open subscription,
/// so an event wakes that user's sockets only.
#[derive(Debug, Default)]
pub struct Hub {
    users: Mutex<HashMap<Uuid, broadcast::Sender<Arc<Notice>>>>,
    listening: AtomicBool,
}

impl Hub {
    /// Receives `user`'s events from now on, until the [`Subscription`] is dropped.
    pub fn subscribe(self: &Arc<Self>, user: Uuid) -> Subscription {
        let rx = match self.users.lock() {
            Ok(mut users) => users
                .entry(user)
                .or_insert_with(|| broadcast::channel(PER_USER_BACKLOG).0)
                .subscribe(),
            // A poisoned map (a panic while holding it) delivers nothing rather than panic.
            Err(_) => broadcast::channel(1).1,
        };
        Subscription {
            hub: self.clone(),
            user,
            rx: Some(rx),
        }
    }

    /// Hands `notice` to its user's subscribers; answers how many there were.
    pub fn publish(&self, notice: Notice) -> usize {
        let Ok(users) = self.users.lock() else {
            return 0;
        };
        users
            .get(&notice.user)
            .and_then(|tx| tx.send(Arc::new(notice)).ok())
            .unwrap_or(0)
    }

    /// Whether the LISTEN connection is up (events published meanwhile are lost).
    pub fn listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }

    fn set_listening(&self, up: bool) {
        self.listening.store(up, Ordering::Relaxed);
        crate::metrics::live_listener_up(up);
    }

    /// Subscribers of one user's events (a socket holds one, plus one per running
    /// subscription).
    pub fn subscribers(&self, user: Uuid) -> usize {
        self.users
            .lock()
            .ok()
            .and_then(|users| users.get(&user).map(broadcast::Sender::receiver_count))
            .unwrap_or(0)
    }

    /// Users with at least one subscriber (for tests and metrics).
    pub fn users(&self) -> usize {
        self.users.lock().map_or(0, |u| u.len())
    }
}

/// One subscriber's view of a user's events.
#[derive(Debug)]
pub struct Subscription {
    hub: Arc<Hub>,
    user: Uuid,
    rx: Option<broadcast::Receiver<Arc<Notice>>>,
}

impl Subscription {
    /// The next event; `None` only if the hub is gone.
    pub async fn recv(&mut self) -> Option<Arc<Notice>> {
        let rx = self.rx.as_mut()?;
        loop {
            match rx.recv().await {
                Ok(notice) => return Some(notice),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(user.id = %self.user, missed, "a live socket fell behind: events skipped");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // The receiver goes first, so the count below no longer includes it; subscribing
        // takes the same lock, so no receiver appears between the count and the removal.
        drop(self.rx.take());
        if let Ok(mut users) = self.hub.users.lock()
            && users.get(&self.user).is_some_and(|tx| tx.receiver_count() == 0)
        {
            users.remove(&self.user);
        }
    }
}

/// First wait after losing the LISTEN connection; doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(10);
/// Bounds opening the connection, as `DATABASE_TIMEOUT` does for the pool, but looser:
/// nothing waits on it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the LISTEN connection until `stop`: connects, listens, hands each notification
/// to `hub`, and after any failure (a database restart, a network cut) reconnects with
/// backoff. Sockets stay open throughout; events published while it is down are lost.
pub fn spawn_listener(
    database_url: String,
    hub: Arc<Hub>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut wait = RETRY_FIRST;
        loop {
            let outcome = tokio::select! {
                outcome = listen(&database_url, &hub, &mut wait) => outcome,
                () = stop.cancelled() => break,
            };
            hub.set_listening(false);
            if let Err(err) = outcome {
                tracing::warn!(
                    error = %err,
                    retry_in_ms = wait.as_millis() as u64,
                    "live events: LISTEN connection lost; reconnecting"
                );
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stop.cancelled() => break,
            }
            wait = (wait * 2).min(RETRY_MAX);
        }
        hub.set_listening(false);
    })
}

/// One LISTEN connection's life. `wait` is reset once it is listening.
async fn listen(url: &str, hub: &Hub, wait: &mut Duration) -> anyhow::Result<()> {
    let mut config: tokio_postgres::Config = url.parse()?;
    // A dead peer that never closes (a cut cable) is noticed in about a minute, not two
    // hours; a restart closes the socket and is noticed at once.
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .connect_timeout(CONNECT_TIMEOUT)
        .application_name("authgraph-live-events");
    let connecting = config.connect(tokio_postgres::NoTls);
    let (client, mut connection) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| anyhow::anyhow!("timed out connecting"))??;
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    // The connection is driven by polling `messages`, so the LISTEN completes only while
    // it is polled too.
    let statement = format!("LISTEN {CHANNEL}");
    let listening = client.batch_execute(&statement);
    tokio::pin!(listening);
    let mut listened = false;
    loop {
        tokio::select! {
            done = &mut listening, if !listened => {
                done?;
                listened = true;
                *wait = RETRY_FIRST;
                hub.set_listening(true);
                tracing::info!("live events: listening");
            }
            message = messages.next() => match message {
                Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                    if let Some(notice) = Notice::parse(n.payload()) {
                        hub.publish(notice);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(err.into()),
                None => anyhow::bail!("the database closed the connection"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(user: Uuid, session: Uuid) -> Notice {
        Notice {
            kind: SESSION_REVOKED.into(),
            user,
            session: Some(session),
            user_agent: None,
            at: 0,
        }
    }

    #[test]
    fn payloads_parse_and_strangers_do_not() {
        let (user, session) = (Uuid::new_v4(), Uuid::new_v4());
        let payload = format!(
            r#"{{"type":"NEW_SIGN_IN","user":"{user}","session":"{session}","userAgent":"curl","at":1764484800000}}"#
        );
        let parsed = Notice::parse(&payload).expect("ours");
        assert_eq!(parsed.kind, NEW_SIGN_IN);
        assert_eq!(parsed.user_agent.as_deref(), Some("curl"));
        assert_eq!(parsed.at().timestamp(), 1_764_484_800);
        assert!(!parsed.ends(session), "a sign-in ends nothing");
        assert_eq!(Notice::parse("hello"), None);
        assert_eq!(Notice::parse(&format!(r#"{{"type":"","user":"{user}"}}"#)), None);
        let long = "X".repeat(TYPE_MAX + 1);
        assert_eq!(
            Notice::parse(&format!(r#"{{"type":"{long}","user":"{user}"}}"#)),
            None
        );
    }

    #[tokio::test]
    async fn events_reach_their_user_only_and_the_map_empties() {
        let hub = Arc::new(Hub::default());
        let (alice, bob, session) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut first = hub.subscribe(alice);
        let mut second = hub.subscribe(alice);
        let mut other = hub.subscribe(bob);
        assert_eq!(hub.publish(notice(alice, session)), 2);
        assert!(first.recv().await.expect("delivered").ends(session));
        assert!(second.recv().await.expect("delivered").ends(session));
        let nothing = tokio::time::timeout(Duration::from_millis(50), other.recv()).await;
        assert!(nothing.is_err(), "bob got alice's event");
        drop((first, second));
        assert_eq!(hub.users(), 1);
        assert_eq!(hub.publish(notice(alice, session)), 0);
        drop(other);
        assert_eq!(hub.users(), 0);
    }
}
