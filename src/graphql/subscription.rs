//! The subscription root: `sessionEvents`, run only over the live socket (see
//! `http::live`), which authenticates at `connection_init` and puts a [`LiveConnection`]
//! in the connection's data.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use async_graphql::{Context, ErrorExtensions, ID, Result, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use futures_util::{Stream, stream};
use tokio::sync::watch;
use uuid::Uuid;

use super::Code;
use crate::events::{Hub, Notice};

/// Close code of a socket whose session ended (API.md).
pub const CLOSE_SESSION_ENDED: u16 = 4403;

/// Something that happened to the signed-in user's sessions or account.
#[derive(SimpleObject, Clone, Debug)]
pub struct SessionEvent {
    /// `SESSION_REVOKED`, `NEW_SIGN_IN`, `PASSWORD_CHANGED` (later: factor and passkey
    /// changes).
    #[graphql(name = "type")]
    pub kind: String,
    /// The session the event is about (the ended or the new one), when it is about one.
    pub session_id: Option<ID>,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// That session's user agent.
    pub user_agent: Option<String>,
}

impl From<&Notice> for SessionEvent {
    fn from(notice: &Notice) -> Self {
        Self {
            kind: notice.kind.clone(),
            session_id: notice.session.map(|s| ID(s.to_string())),
            at: notice.at(),
            user_agent: notice.user_agent.clone(),
        }
    }
}

/// The signed-in socket a subscription runs on.
pub struct LiveConnection {
    /// The socket's user.
    pub user_id: Uuid,
    /// The session of its access token.
    pub session_id: Uuid,
    /// Where the user's events come from.
    pub hub: Arc<Hub>,
    /// How the subscription asks the socket to close.
    pub control: Arc<SocketControl>,
}

/// Shared by a socket and its subscriptions: the close request and the number of
/// subscriptions running.
#[derive(Debug)]
pub struct SocketControl {
    close: watch::Sender<Option<u16>>,
    running: AtomicUsize,
}

impl Default for SocketControl {
    fn default() -> Self {
        Self {
            close: watch::channel(None).0,
            running: AtomicUsize::new(0),
        }
    }
}

impl SocketControl {
    /// Asks the socket to close with `code` (the first request wins).
    pub fn close(&self, code: u16) {
        self.close.send_if_modified(|current| {
            let first = current.is_none();
            if first {
                *current = Some(code);
            }
            first
        });
    }

    /// Watches for a close request.
    pub fn watch(&self) -> watch::Receiver<Option<u16>> {
        self.close.subscribe()
    }

    /// Subscriptions running on the socket.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }
}

/// Counts one running subscription while it lives.
struct Running(Arc<SocketControl>);

impl Running {
    fn new(control: Arc<SocketControl>) -> Self {
        control.running.fetch_add(1, Ordering::Relaxed);
        Self(control)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The subscription root.
pub struct SubscriptionRoot;

#[Subscription]
impl SubscriptionRoot {
    /// The signed-in user's session events, for every socket of the user. A socket
    /// whose own session ends gets `SESSION_REVOKED` and is then closed (4403).
    async fn session_events(&self, ctx: &Context<'_>) -> Result<impl Stream<Item = SessionEvent> + use<>> {
        let live = ctx.data_opt::<Arc<LiveConnection>>().ok_or_else(|| {
            async_graphql::Error::new(
                "subscriptions run over the WebSocket at /graphql (graphql-transport-ws)",
            )
            .extend_with(|_, e| e.set("code", Code::BadRequest.as_str()))
        })?;
        let state = Feed {
            events: live.hub.subscribe(live.user_id),
            session: live.session_id,
            running: Running::new(live.control.clone()),
            ended: false,
        };
        Ok(stream::unfold(state, |mut feed| async move {
            if feed.ended {
                // Runs when the socket asks for the event after the revocation, so the
                // event was handed over before the close is requested.
                feed.running.0.close(CLOSE_SESSION_ENDED);
                return None;
            }
            let notice = feed.events.recv().await?;
            feed.ended = notice.ends(feed.session);
            crate::metrics::live_event_sent(&notice.kind);
            Some((SessionEvent::from(&*notice), feed))
        }))
    }
}

struct Feed {
    events: crate::events::Subscription,
    session: Uuid,
    running: Running,
    ended: bool,
}
