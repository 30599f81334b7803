// Over 400 lines on purpose: one socket's life, upgrade to close, its steps sharing state.
//! The live socket: `graphql-transport-ws` over a WebSocket upgrade of `GET /graphql`,
//! running the `sessionEvents` subscription and nothing else (API.md).
//!
//! async-graphql-axum speaks the protocol; this module owns the socket around it and
//! does what the crate cannot: the Origin check and per-address limit before upgrading,
//! `connection_init` answered with the close codes of API.md (the crate closes every
//! refused init with 1002), queries and mutations refused before they run (so nothing
//! bypasses the HTTP limits), the per-user limit, message size, ping/pong keep-alive, and
//! closing the socket when its session ends (4403) or its access token expires (4401).

use std::{
    collections::HashMap,
    hash::Hash,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_graphql::{http::WebSocketProtocols, parser::types::OperationType};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::{
    extract::{
        FromRequestParts,
        ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade},
    },
    http::{StatusCode, header, request::Parts},
    response::Response,
};
use futures_util::{SinkExt, StreamExt, stream::SplitSink};
use serde_json::{Value, json};
use tracing::info;
use uuid::Uuid;

use super::{
    Http,
    client_ip::ClientAddr,
    response::{Negotiated, error_response},
};
use crate::{
    auth::{AuthError, TokenProblem},
    graphql::{
        self, Code,
        subscription::{CLOSE_SESSION_ENDED, LiveConnection, SocketControl},
    },
};

/// graphql-transport-ws close codes (the protocol's, and API.md's 4401/4403).
const CLOSE_BAD_REQUEST: u16 = 4400;
const CLOSE_UNAUTHORIZED: u16 = 4401;
const CLOSE_INIT_TIMEOUT: u16 = 4408;
const CLOSE_TOO_MANY: u16 = 4429;
/// RFC 6455: the server cannot serve now (the database is down); the client retries.
const CLOSE_TRY_AGAIN: u16 = 1013;
/// RFC 6455: a message over the size limit, or a client flooding the socket.
const CLOSE_TOO_BIG: u16 = 1009;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_GOING_AWAY: u16 = 1001;

/// Read and write buffer of a socket: messages both ways are a few hundred bytes.
const SOCKET_BUFFER: usize = 4 * 1024;
/// Subscriptions one socket may run at once (a client needs one).
const MAX_SUBSCRIPTIONS: usize = 8;
/// Client messages buffered for async-graphql; a client sending faster is flooding.
const INBOX: usize = 32;
/// How long a socket whose session ended waits for its subscription to deliver the
/// `SESSION_REVOKED` before it is closed anyway.
const REVOKED_GRACE: Duration = Duration::from_secs(2);

/// Whether a `GET /graphql` asks for a WebSocket.
pub(crate) fn is_upgrade(parts: &Parts) -> bool {
    parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

/// Open sockets by a key, each held by a [`Held`] that gives its place back on drop.
pub(crate) struct Counts<K>(Mutex<HashMap<K, usize>>);

impl<K> Default for Counts<K> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

impl<K: Hash + Eq + Copy> Counts<K> {
    fn take(self: &Arc<Self>, key: K, max: usize) -> Option<Held<K>> {
        let mut map = self.0.lock().ok()?;
        let count = map.entry(key).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Held {
            counts: self.clone(),
            key,
        })
    }
}

pub(crate) struct Held<K: Hash + Eq + Copy> {
    counts: Arc<Counts<K>>,
    key: K,
}

impl<K: Hash + Eq + Copy> Drop for Held<K> {
    fn drop(&mut self) {
        if let Ok(mut map) = self.counts.0.lock()
            && let Some(count) = map.get_mut(&self.key)
        {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// The process's open sockets, for the per-address and per-user limits.
#[derive(Default)]
pub(crate) struct Sockets {
    by_address: Arc<Counts<IpAddr>>,
    by_user: Arc<Counts<Uuid>>,
}

/// One open socket on the gauge while it lives.
struct Open;

impl Open {
    fn new() -> Self {
        crate::metrics::live_socket(1.0);
        Self
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        crate::metrics::live_socket(-1.0);
    }
}

/// `GET /graphql` with `Upgrade: websocket`.
pub(crate) async fn upgrade(http: Http, mut parts: Parts) -> Response {
    let config = &http.state.config;
    let refuse = |status, code, message: &str| error_response(status, code, message, Negotiated::Json);
    // A browser sends the page's Origin: only the configured frontends may hold a
    // signed-in socket (cross-site WebSocket hijacking). Clients outside browsers send
    // none.
    if let Some(origin) = parts.headers.get(header::ORIGIN) {
        let allowed = origin.to_str().is_ok_and(|origin| {
            config
                .http
                .cors_allowed_origins
                .iter()
                .any(|a| a.eq_ignore_ascii_case(origin.trim_end_matches('/')))
        });
        if !allowed {
            return refuse(
                StatusCode::FORBIDDEN,
                Code::Forbidden,
                "this Origin may not open a socket: it is not in CORS_ALLOWED_ORIGINS",
            );
        }
    }
    let transport_ws = WebSocketProtocols::GraphQLWS.sec_websocket_protocol();
    let offered = parts
        .headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == transport_ws);
    if !offered {
        return refuse(
            StatusCode::BAD_REQUEST,
            Code::BadRequest,
            "the socket speaks `Sec-WebSocket-Protocol: graphql-transport-ws` only",
        );
    }
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return refuse(
                rejection.status(),
                Code::BadRequest,
                "not a usable WebSocket upgrade request",
            );
        }
    };
    let address = parts.extensions.get::<ClientAddr>().and_then(|a| a.0);
    let address_slot = match address {
        Some(ip) => match http.live.by_address.take(ip, config.live.max_sockets_per_address) {
            Some(slot) => Some(slot),
            None => {
                crate::metrics::live_refused("address");
                let mut response = refuse(
                    StatusCode::TOO_MANY_REQUESTS,
                    Code::RateLimited,
                    "too many open sockets from this address",
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
                return response;
            }
        },
        None => None,
    };
    let max = config.live.max_message_bytes;
    upgrade
        .protocols([WebSocketProtocols::GraphQLWS.sec_websocket_protocol()])
        .max_message_size(max)
        .max_frame_size(max)
        // tungstenite's defaults (128 KiB each) suit bulk transfer; an idle socket
        // carrying a few small events a day would hold a quarter MiB.
        .read_buffer_size(SOCKET_BUFFER)
        .write_buffer_size(SOCKET_BUFFER)
        .on_upgrade(move |socket| async move {
            let _open = Open::new();
            let _address_slot = address_slot;
            let started = Instant::now();
            let outcome = serve(http, socket).await;
            // The one line per connection: who, how long, how it ended. Never the token.
            info!(
                user.id = outcome.user.map(|u| u.to_string()),
                session.id = outcome.session.map(|s| s.to_string()),
                close_code = outcome.code,
                seconds = started.elapsed().as_secs(),
                "live socket closed"
            );
        })
}

/// How a socket ended, for its log line.
#[derive(Default)]
struct Outcome {
    user: Option<Uuid>,
    session: Option<Uuid>,
    code: Option<u16>,
}

type Sink = SplitSink<WebSocket, Message>;

async fn close(sink: &mut Sink, outcome: &mut Outcome, code: u16, reason: &str) {
    outcome.code = Some(code);
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = sink.send(Message::Close(Some(frame))).await;
}

/// Authenticates the socket at `connection_init`, then runs the protocol until either
/// side ends it.
async fn serve(http: Http, socket: WebSocket) -> Outcome {
    let mut outcome = Outcome::default();
    let live = http.state.config.live.clone();
    let (mut sink, mut stream) = socket.split();

    // `connection_init` first, within the init timeout (the protocol's 4408).
    let first = tokio::time::timeout(live.init_timeout, async {
        loop {
            match stream.next().await {
                Some(Ok(Message::Text(text))) => return Some(text.as_str().to_owned()),
                Some(Ok(Message::Binary(bytes))) => {
                    return Some(String::from_utf8_lossy(&bytes).into_owned());
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => return None,
            }
        }
    })
    .await;
    let init_text = match first {
        Ok(Some(text)) => text,
        Ok(None) => return outcome,
        Err(_) => {
            close(
                &mut sink,
                &mut outcome,
                CLOSE_INIT_TIMEOUT,
                "Connection initialisation timeout",
            )
            .await;
            return outcome;
        }
    };
    let Ok(init) = serde_json::from_str::<Value>(&init_text) else {
        close(
            &mut sink,
            &mut outcome,
            CLOSE_BAD_REQUEST,
            "Invalid message received",
        )
        .await;
        return outcome;
    };
    if init["type"] != "connection_init" {
        // The protocol: anything before the acknowledgement is unauthorized.
        close(&mut sink, &mut outcome, CLOSE_UNAUTHORIZED, "Unauthorized").await;
        return outcome;
    }
    let authorization = init["payload"].as_object().and_then(|payload| {
        payload
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            .and_then(|(_, v)| v.as_str())
    });
    let (viewer, expires_at) = match authenticate(&http, authorization).await {
        Ok(signed_in) => signed_in,
        Err((code, reason)) => {
            close(&mut sink, &mut outcome, code, reason).await;
            return outcome;
        }
    };
    outcome.user = Some(viewer.user.id);
    outcome.session = Some(viewer.session_id);
    let Some(_user_slot) = http.live.by_user.take(viewer.user.id, live.max_sockets_per_user) else {
        crate::metrics::live_refused("user");
        close(
            &mut sink,
            &mut outcome,
            CLOSE_TOO_MANY,
            "too many open sockets for this user",
        )
        .await;
        return outcome;
    };

    let control = Arc::new(SocketControl::default());
    let connection = Arc::new(LiveConnection {
        user_id: viewer.user.id,
        session_id: viewer.session_id,
        hub: http.state.events.clone(),
        control: control.clone(),
    });
    let mut data = async_graphql::Data::default();
    data.insert(connection);
    // async-graphql runs over a pair of channels, so this loop keeps the socket: it
    // filters what reaches the crate and can close the socket with its own codes.
    let (inbox, inbox_rx) = tokio::sync::mpsc::channel::<Message>(INBOX);
    let (outbox_tx, mut outbox) = tokio::sync::mpsc::channel::<Message>(INBOX);
    let input = futures_util::stream::unfold(inbox_rx, |mut rx| async move {
        rx.recv().await.map(|m| (Ok::<_, axum::Error>(m), rx))
    });
    let output = futures_util::sink::unfold(outbox_tx, |tx, m: Message| async move {
        tx.send(m).await.map(|()| tx)
    });
    // Replayed so the crate answers `connection_ack`.
    let _ = inbox.try_send(Message::Text(init_text.into()));
    let Some(protocol) = transport_ws_protocol().await else {
        return outcome;
    };
    let graphql = GraphQLWebSocket::new_with_pair(output, input, http.schema.clone(), protocol)
        .with_data(data)
        .serve();
    tokio::pin!(graphql);
    let mut graphql_done = false;

    let mut close_requested = control.watch();
    let mut own_events = http.state.events.subscribe(viewer.user.id);
    let ends_in =
        Duration::from_secs(u64::try_from(expires_at - chrono::Utc::now().timestamp()).unwrap_or(0));
    let expiry = tokio::time::sleep(ends_in);
    tokio::pin!(expiry);
    let revoked_grace = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(revoked_grace);
    let mut revoked = false;
    let mut ping = tokio::time::interval_at(
        tokio::time::Instant::now() + live.ping_interval,
        live.ping_interval,
    );
    let mut last_heard = Instant::now();

    loop {
        tokio::select! {
            biased;
            message = outbox.recv() => match message {
                Some(message) => {
                    let closing = matches!(message, Message::Close(_));
                    if let Message::Close(Some(frame)) = &message {
                        outcome.code = Some(frame.code);
                    }
                    if sink.send(message).await.is_err() || closing {
                        break;
                    }
                }
                None => break,
            },
            _ = close_requested.changed() => {
                let code = close_requested.borrow().unwrap_or(CLOSE_SESSION_ENDED);
                close(&mut sink, &mut outcome, code, "the session has ended: sign in again").await;
                break;
            }
            () = &mut graphql, if !graphql_done => {
                // Its last messages are in the outbox, which then ends: the branch above
                // sends them and stops.
                graphql_done = true;
            }
            frame = stream.next() => {
                last_heard = Instant::now();
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text.as_str().to_owned(),
                    Some(Ok(Message::Binary(bytes))) => String::from_utf8_lossy(&bytes).into_owned(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Err(err)) => {
                        if is_too_big(&err) {
                            close(&mut sink, &mut outcome, CLOSE_TOO_BIG, "message too big").await;
                        }
                        break;
                    }
                    Some(Ok(Message::Close(_))) | None => break,
                };
                if let Some(refusal) = refusal(&text, &control) {
                    if sink.send(Message::Text(refusal.into())).await.is_err() {
                        break;
                    }
                    continue;
                }
                if graphql_done || inbox.try_send(Message::Text(text.into())).is_err() {
                    crate::metrics::live_refused("messages");
                    close(&mut sink, &mut outcome, CLOSE_POLICY, "too many messages").await;
                    break;
                }
            }
            notice = own_events.recv() => match notice {
                // The subscription delivers the event then asks for the close; without
                // one running, or if it stalls, the socket closes here.
                Some(notice) if notice.ends(viewer.session_id) && !revoked => {
                    revoked = true;
                    if control.running() == 0 {
                        control.close(CLOSE_SESSION_ENDED);
                    } else {
                        revoked_grace.as_mut().reset(tokio::time::Instant::now() + REVOKED_GRACE);
                    }
                }
                Some(_) => {}
                None => break,
            },
            () = &mut revoked_grace, if revoked => control.close(CLOSE_SESSION_ENDED),
            () = &mut expiry => {
                close(&mut sink, &mut outcome, CLOSE_UNAUTHORIZED, "the access token has expired: refresh it and reconnect").await;
                break;
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > live.ping_interval * 2 {
                    crate::metrics::live_refused("keepalive");
                    close(&mut sink, &mut outcome, CLOSE_GOING_AWAY, "no answer to pings").await;
                    break;
                }
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
        }
    }
    outcome
}

/// `GraphQLProtocol` for graphql-transport-ws. The crate builds one only from request
/// headers (its field is private), and a client offering both protocols would get the
/// legacy one it lists first, so it is built from a request offering ours alone.
async fn transport_ws_protocol() -> Option<GraphQLProtocol> {
    let request = axum::http::Request::builder()
        .header(
            header::SEC_WEBSOCKET_PROTOCOL,
            WebSocketProtocols::GraphQLWS.sec_websocket_protocol(),
        )
        .body(())
        .ok()?;
    let (mut parts, ()) = request.into_parts();
    GraphQLProtocol::from_request_parts(&mut parts, &()).await.ok()
}

/// The signed-in caller and its token's `exp`, or the close code and reason.
async fn authenticate(
    http: &Http,
    authorization: Option<&str>,
) -> Result<(crate::auth::Viewer, i64), (u16, &'static str)> {
    let auth = &http.state.auth;
    let refused = |err: AuthError| match err {
        AuthError::Unauthenticated(TokenProblem::Expired) => (
            CLOSE_UNAUTHORIZED,
            "the access token has expired: refresh it and reconnect",
        ),
        AuthError::Unavailable => (CLOSE_TRY_AGAIN, "the service is unavailable: retry shortly"),
        _ => (
            CLOSE_SESSION_ENDED,
            "connection_init needs {\"Authorization\": \"Bearer <access token>\"} of a live session",
        ),
    };
    // Verified here for its expiry (and so an expired token is told apart before any
    // database read); `authenticate` checks the session is live.
    let token = authorization
        .and_then(|h| h.trim().split_once(' '))
        .map(|(_, token)| token.trim())
        .unwrap_or("");
    let claims = auth
        .keys()
        .verify(token)
        .map_err(|problem| refused(AuthError::Unauthenticated(problem)))?;
    let viewer = auth.authenticate(authorization).await.map_err(refused)?;
    Ok((viewer, claims.exp))
}

fn is_too_big(err: &axum::Error) -> bool {
    let text = err.to_string();
    text.contains("Space limit exceeded") || text.contains("too long") || text.contains("too big")
}

/// The `error` message answering a `subscribe` that must not run here: a query or
/// mutation (API.md: the socket runs subscriptions only), or one subscription too many.
fn refusal(text: &str, control: &SocketControl) -> Option<String> {
    let message: Value = serde_json::from_str(text).ok()?;
    if message["type"] != "subscribe" {
        return None;
    }
    let error = |why: &str| {
        json!({
            "id": message["id"],
            "type": "error",
            "payload": [{ "message": why, "extensions": { "code": Code::ValidationFailed.as_str() } }],
        })
        .to_string()
    };
    if control.running() >= MAX_SUBSCRIPTIONS {
        crate::metrics::live_refused("subscriptions");
        return Some(error("too many subscriptions on this socket"));
    }
    let query = message["payload"]["query"].as_str()?;
    let name = message["payload"]["operationName"].as_str();
    // A document too deep or that does not parse is the schema's to refuse, with its
    // usual errors; this only tells operation types apart.
    if !graphql::limits::nesting_within(query, graphql::limits::MAX_NESTING) {
        return None;
    }
    let document = async_graphql::parser::parse_query(query).ok()?;
    let selected = match name {
        Some(name) => document
            .operations
            .iter()
            .find(|(n, _)| n.is_some_and(|n| n.as_str() == name)),
        None => document.operations.iter().next(),
    };
    match selected {
        Some((_, op)) if op.node.ty != OperationType::Subscription => Some(error(
            "only subscriptions run over the socket: send queries and mutations over HTTP",
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_subscriptions_pass() {
        let control = SocketControl::default();
        let subscribe = |query: &str| {
            json!({ "id": "1", "type": "subscribe", "payload": { "query": query } }).to_string()
        };
        assert_eq!(
            refusal(&subscribe("subscription { sessionEvents { type } }"), &control),
            None
        );
        for refused in ["{ me { id } }", "mutation { logout(refreshToken: \"x\") }"] {
            let answer: Value =
                serde_json::from_str(&refusal(&subscribe(refused), &control).expect("refused")).unwrap();
            assert_eq!(answer["type"], "error");
            assert_eq!(answer["id"], "1");
            assert_eq!(
                answer["payload"][0]["extensions"]["code"],
                "GRAPHQL_VALIDATION_FAILED"
            );
        }
        assert_eq!(refusal(r#"{"type":"ping"}"#, &control), None);
    }

    #[test]
    fn counts_give_their_place_back() {
        let counts = Arc::new(Counts::<u8>::default());
        let first = counts.take(1, 2).expect("room");
        let _second = counts.take(1, 2).expect("room");
        assert!(counts.take(1, 2).is_none());
        assert!(counts.take(2, 2).is_some(), "per key");
        drop(first);
        assert!(counts.take(1, 2).is_some());
    }
}
