//! Live session events: `sessionEvents` over graphql-transport-ws on a real socket,
//! published through PostgreSQL LISTEN/NOTIFY.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use authgraph::{
    auth::jwt::parse_pem_bundle,
    auth::step_up::{Assurance, Method},
    db::users::Role,
    events::Hub,
    state::AppState,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{self, Message, client::IntoClientRequest, http::HeaderValue},
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::support::{LOGIN, PASSWORD, PgCluster, Service, TestApp, claims, email, eventually};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const EVENTS: &str = "subscription { sessionEvents { type sessionId at userAgent } }";
/// Generous for a loaded machine; events arrive in milliseconds.
const WAIT: Duration = Duration::from_secs(10);

/// Starts the LISTEN connection for `state` (what `serve` does) and waits until it listens.
async fn listen(state: &AppState, url: &str) -> CancellationToken {
    let stop = CancellationToken::new();
    authgraph::events::spawn_listener(url.to_owned(), state.events.clone(), stop.clone());
    wait_for(&state.events, "the listener", |hub| hub.listening()).await;
    stop
}

async fn wait_for(hub: &Arc<Hub>, what: &str, check: impl Fn(&Hub) -> bool) {
    let started = std::time::Instant::now();
    while !check(hub) {
        assert!(started.elapsed() < WAIT, "waited too long for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn connect(addr: SocketAddr, origin: Option<&str>) -> Result<Socket, tungstenite::Error> {
    let mut request = format!("ws://{addr}/graphql").into_client_request().unwrap();
    let headers = request.headers_mut();
    headers.insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    if let Some(origin) = origin {
        headers.insert("origin", HeaderValue::from_str(origin).unwrap());
    }
    tokio_tungstenite::connect_async(request).await.map(|(ws, _)| ws)
}

async fn send(ws: &mut Socket, message: Value) {
    ws.send(Message::text(message.to_string())).await.unwrap();
}

/// The next protocol message (pings skipped), or `Err(close code)`.
async fn receive(ws: &mut Socket) -> Result<Value, Option<u16>> {
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("nothing arrived on the socket");
        match frame {
            Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(&text).unwrap()),
            Some(Ok(Message::Close(frame))) => return Err(frame.map(|f| u16::from(f.code))),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Err(None),
        }
    }
}

async fn close_code(ws: &mut Socket) -> Option<u16> {
    loop {
        if let Err(code) = receive(ws).await {
            return code;
        }
    }
}

/// Opens a socket signed in with `token`.
async fn signed_in(addr: SocketAddr, token: &str) -> Socket {
    let mut ws = connect(addr, None).await.expect("upgrade");
    send(
        &mut ws,
        json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } }),
    )
    .await;
    assert_eq!(receive(&mut ws).await.expect("ack")["type"], "connection_ack");
    ws
}

/// Opens a signed-in socket running `sessionEvents`, once the subscription is live.
async fn subscribed(app: &AppState, addr: SocketAddr, token: &str) -> Socket {
    let user: Uuid = claims(token)["sub"].as_str().unwrap().parse().unwrap();
    let before = app.events.subscribers(user);
    let mut ws = signed_in(addr, token).await;
    send(
        &mut ws,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": EVENTS } }),
    )
    .await;
    // The socket holds one subscriber and its subscription another.
    wait_for(&app.events, "the subscription", |hub| {
        hub.subscribers(user) >= before + 2
    })
    .await;
    ws
}

/// The next `sessionEvents` event.
async fn event(ws: &mut Socket) -> Value {
    let message = receive(ws).await.expect("an event, not a close");
    assert_eq!(message["type"], "next", "{message}");
    message["payload"]["data"]["sessionEvents"].clone()
}

async fn login_as(app: &TestApp, address: &str, user_agent: &str) -> String {
    let body = app
        .post(
            LOGIN,
            json!({ "input": { "email": address, "password": PASSWORD } }),
            &[("user-agent", user_agent)],
        )
        .await
        .body;
    body["data"]["login"]["accessToken"].as_str().unwrap().to_owned()
}

fn sid(token: &str) -> String {
    claims(token)["sid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_revoked_session_hears_it_and_its_socket_closes_4403() {
    let app = TestApp::spawn().await;
    let _stop = listen(&app.state, &app.db.url).await;
    let addr = app.serve_tcp().await;
    let address = email("live");
    let a = app.register(&address, PASSWORD).await["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = login_as(&app, &address, "device-b").await;
    let mut on_a = subscribed(&app.state, addr, &a).await;
    let mut on_b = subscribed(&app.state, addr, &b).await;

    let revoked = app
        .graphql_as(
            &b,
            "mutation($id: ID!) { revokeSession(id: $id) }",
            json!({ "id": sid(&a) }),
        )
        .await;
    assert_eq!(revoked["data"]["revokeSession"], true, "{revoked}");

    let heard = event(&mut on_a).await;
    assert_eq!(heard["type"], "SESSION_REVOKED");
    assert_eq!(heard["sessionId"], sid(&a));
    assert_eq!(close_code(&mut on_a).await, Some(4403));
    // The other device hears of it too, and stays open.
    let heard = event(&mut on_b).await;
    assert_eq!(heard["type"], "SESSION_REVOKED");
    assert_eq!(heard["sessionId"], sid(&a));
    let c = login_as(&app, &address, "device-c").await;
    let heard = event(&mut on_b).await;
    assert_eq!(heard["type"], "NEW_SIGN_IN");
    assert_eq!(heard["sessionId"], sid(&c));

    // A socket without a subscription running closes too.
    let mut idle = signed_in(addr, &c).await;
    let ended = app
        .graphql_as(
            &b,
            "mutation($id: ID!) { revokeSession(id: $id) }",
            json!({ "id": sid(&c) }),
        )
        .await;
    assert_eq!(ended["data"]["revokeSession"], true, "{ended}");
    assert_eq!(close_code(&mut idle).await, Some(4403));
    let text = authgraph::metrics::render();
    assert!(
        text.contains("authgraph_live_events_sent_total{type=\"SESSION_REVOKED\"}"),
        "{text}"
    );
    assert!(text.contains("authgraph_live_sockets_open"), "{text}");
}

#[tokio::test]
async fn a_new_sign_in_and_a_password_change_reach_open_sockets() {
    let app = TestApp::spawn().await;
    let _stop = listen(&app.state, &app.db.url).await;
    let addr = app.serve_tcp().await;
    let address = email("live-new");
    let a = app.register(&address, PASSWORD).await["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut first = subscribed(&app.state, addr, &a).await;
    let mut second = subscribed(&app.state, addr, &a).await;

    let b = login_as(&app, &address, "Firefox on a new laptop").await;
    for ws in [&mut first, &mut second] {
        let heard = event(ws).await;
        assert_eq!(heard["type"], "NEW_SIGN_IN", "{heard}");
        assert_eq!(heard["sessionId"], sid(&b));
        assert_eq!(heard["userAgent"], "Firefox on a new laptop");
        assert!(heard["at"].as_str().is_some(), "{heard}");
    }

    // A password change from b: a is ended, and told so after PASSWORD_CHANGED.
    let changed = app
        .graphql_as(
            &b,
            "mutation($i: ChangePasswordInput!) { changePassword(input: $i) { accessToken } }",
            json!({ "i": { "currentPassword": PASSWORD, "newPassword": "another horse battery staple" } }),
        )
        .await;
    assert!(changed["errors"].is_null(), "{changed}");
    let mut kinds = vec![];
    while let Ok(message) = receive(&mut first).await {
        kinds.push(message["payload"]["data"]["sessionEvents"]["type"].clone());
    }
    assert!(kinds.contains(&json!("PASSWORD_CHANGED")), "{kinds:?}");
    assert!(kinds.contains(&json!("SESSION_REVOKED")), "{kinds:?}");
    assert_eq!(close_code(&mut second).await, Some(4403));
}

#[tokio::test]
async fn connection_init_refuses_expired_and_invalid_tokens() {
    let app = TestApp::spawn().await;
    let addr = app.serve_tcp().await;
    let a = app.register(&email("live-exp"), PASSWORD).await["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let (user, session) = (
        claims(&a)["sub"].as_str().unwrap().parse().unwrap(),
        sid(&a).parse().unwrap(),
    );
    let keys = app.state.auth.keys();
    let expired = keys
        .issue(
            user,
            session,
            Role::User,
            &Assurance::new(&[Method::Pwd], chrono::Utc::now()),
            chrono::Utc::now() - chrono::TimeDelta::hours(1),
        )
        .unwrap();
    for (token, expected) in [
        (expired.as_str(), 4401),
        ("not-a-jwt", 4403),
        (&a[..a.len() - 4], 4403),
    ] {
        let mut ws = connect(addr, None).await.expect("upgrade");
        send(
            &mut ws,
            json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } }),
        )
        .await;
        assert_eq!(close_code(&mut ws).await, Some(expected), "{token}");
    }
    // No payload at all, and a subscribe before the init.
    let mut ws = connect(addr, None).await.unwrap();
    send(&mut ws, json!({ "type": "connection_init" })).await;
    assert_eq!(close_code(&mut ws).await, Some(4403));
    let mut ws = connect(addr, None).await.unwrap();
    send(
        &mut ws,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": EVENTS } }),
    )
    .await;
    assert_eq!(close_code(&mut ws).await, Some(4401));

    // A token that expires while its socket is open closes it 4401.
    let ttl = chrono::TimeDelta::from_std(keys.ttl()).unwrap();
    let expiring = keys
        .issue(
            user,
            session,
            Role::User,
            &Assurance::new(&[Method::Pwd], chrono::Utc::now()),
            chrono::Utc::now() - ttl + chrono::TimeDelta::seconds(2),
        )
        .unwrap();
    let mut ws = signed_in(addr, &expiring).await;
    assert_eq!(close_code(&mut ws).await, Some(4401));
}

#[tokio::test]
async fn upgrades_from_foreign_origins_are_refused() {
    let app = TestApp::builder()
        .env("CORS_ALLOWED_ORIGINS", "https://app.example")
        .spawn()
        .await;
    let addr = app.serve_tcp().await;
    match connect(addr, Some("https://evil.example")).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("expected 403, got {:?}", other.map(|_| ())),
    }
    assert!(connect(addr, Some("https://app.example")).await.is_ok());
    assert!(
        connect(addr, None).await.is_ok(),
        "non-browser clients send no Origin"
    );
    // Without our protocol: refused before upgrading.
    let mut request = format!("ws://{addr}/graphql").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", HeaderValue::from_static("graphql-ws"));
    match tokio_tungstenite::connect_async(request).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 400),
        other => panic!("expected 400, got {:?}", other.map(|_| ())),
    }
    // Plain GETs still run queries.
    let response = reqwest::get(format!("http://{addr}/graphql?query=%7B__typename%7D"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"data":{"__typename":"Query"}}"#
    );
}

#[tokio::test]
async fn queries_and_mutations_over_the_socket_are_refused() {
    let app = TestApp::spawn().await;
    let addr = app.serve_tcp().await;
    let a = app.register(&email("live-mut"), PASSWORD).await;
    let (token, refresh) = (
        a["accessToken"].as_str().unwrap(),
        a["refreshToken"].as_str().unwrap(),
    );
    let mut ws = signed_in(addr, token).await;
    for (id, query) in [
        ("q", "{ me { id } }".to_owned()),
        ("m", format!("mutation {{ logout(refreshToken: \"{refresh}\") }}")),
    ] {
        send(
            &mut ws,
            json!({ "id": id, "type": "subscribe", "payload": { "query": query } }),
        )
        .await;
        let answer = receive(&mut ws).await.expect("an error message");
        assert_eq!(answer["type"], "error", "{answer}");
        assert_eq!(answer["id"], id);
        assert_eq!(
            answer["payload"][0]["extensions"]["code"],
            "GRAPHQL_VALIDATION_FAILED"
        );
    }
    // The mutation never ran: the session is alive.
    let me = app.graphql_as(token, "{ me { id } }", json!({})).await;
    assert!(me["errors"].is_null(), "{me}");
    // And the subscription does not run over HTTP.
    let over_http = app.graphql_as(token, EVENTS, json!({})).await;
    assert_eq!(crate::support::code(&over_http), "BAD_REQUEST", "{over_http}");
}

/// A second replica of `app`: its own state, hub, listener and router on a real socket;
/// the same database and keys. Both replicas listen for events once this returns.
pub async fn second_replica(app: &TestApp) -> (AppState, SocketAddr, [CancellationToken; 2]) {
    let keys = parse_pem_bundle(app.key_pem()).unwrap();
    let other = AppState::with_keys((*app.state.config).clone(), keys).unwrap();
    let stop_a = listen(&app.state, &app.db.url).await;
    let stop_b = listen(&other, &app.db.url).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = authgraph::app(other.clone());
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    (other, addr, [stop_a, stop_b])
}

#[tokio::test]
async fn an_event_on_one_replica_reaches_a_socket_on_the_other() {
    let app = TestApp::spawn().await;
    let (other, addr_b, _stop) = second_replica(&app).await;
    let address = email("live-replica");
    let a = app.register(&address, PASSWORD).await["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut on_b = subscribed(&other, addr_b, &a).await;
    // Logged out everywhere through replica A (the in-process router).
    let out = app
        .graphql_as(&a, "mutation { logout(allSessions: true) }", json!({}))
        .await;
    assert_eq!(out["data"]["logout"], true, "{out}");
    let heard = event(&mut on_b).await;
    assert_eq!(heard["type"], "SESSION_REVOKED");
    assert_eq!(heard["sessionId"], sid(&a));
    assert_eq!(close_code(&mut on_b).await, Some(4403));
}

/// Signs in on `service` until `ws` hears the `NEW_SIGN_IN` (the subscription, or the
/// listener after an outage, comes up asynchronously); answers the time it took.
async fn sign_in_until_heard(service: &Service, address: &str, ws: &mut Socket) -> Duration {
    let started = std::time::Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no NEW_SIGN_IN reached the socket"
        );
        let (_, body, _) = service
            .graphql(
                LOGIN,
                json!({ "input": { "email": address, "password": PASSWORD } }),
                &[],
            )
            .await;
        if body["data"]["login"].is_null() {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        let heard = tokio::time::timeout(Duration::from_secs(1), receive(ws)).await;
        if let Ok(message) = heard {
            let message = message.expect("the socket stays open");
            assert_eq!(message["payload"]["data"]["sessionEvents"]["type"], "NEW_SIGN_IN");
            return started.elapsed();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sockets_survive_a_database_restart_and_events_resume() {
    let pg = PgCluster::init();
    pg.start();
    let service = Service::builder()
        .env("DATABASE_URL", pg.url("authgraph_live_restart"))
        .spawn();
    eventually("ready", || async { service.get("/readyz").await.0 == 200 })
        .within(Duration::from_secs(60))
        .await;
    let address = email("live-restart");
    let (_, body, _) = service
        .graphql(
            crate::support::REGISTER,
            json!({ "input": { "email": address, "password": PASSWORD } }),
            &[],
        )
        .await;
    let token = body["data"]["register"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut ws = signed_in(service.addr, &token).await;
    send(
        &mut ws,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": EVENTS } }),
    )
    .await;
    sign_in_until_heard(&service, &address, &mut ws).await;

    pg.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.start();
    let resumed = sign_in_until_heard(&service, &address, &mut ws).await;
    eprintln!("events resumed {resumed:?} after the database came back");
    let lines = service.lines().join("\n");
    assert!(lines.contains("LISTEN connection lost"), "{lines}");
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// 1,000 idle signed-in sockets on one process (a debug build): all stay open, and the
/// memory they cost is printed for the report.
#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_idle_sockets_stay_open() {
    const SOCKETS: usize = 1000;
    let db = crate::support::TestDb::create();
    let service = Service::builder()
        .production(&db.url)
        .env("HTTP_RATE_LIMIT", "off")
        .env("LIVE_MAX_SOCKETS_PER_USER", "2000")
        .env("LIVE_MAX_SOCKETS_PER_ADDRESS", "2000")
        .spawn();
    let (_, body, _) = service
        .graphql(
            crate::support::REGISTER,
            json!({ "input": { "email": email("live-many"), "password": PASSWORD } }),
            &[],
        )
        .await;
    let token = body["data"]["register"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = rss_kib(service.pid());
    let mut sockets = Vec::with_capacity(SOCKETS);
    for _ in 0..SOCKETS {
        let mut ws = signed_in(service.addr, &token).await;
        send(
            &mut ws,
            json!({ "id": "1", "type": "subscribe", "payload": { "query": EVENTS } }),
        )
        .await;
        sockets.push(ws);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(service.pid());
    let metrics = service.get("/metrics").await.1;
    assert!(
        metrics.contains(&format!("authgraph_live_sockets_open {SOCKETS}")),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("live"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!(
        "{SOCKETS} idle sockets: RSS {before} KiB -> {after} KiB ({:.1} KiB per socket)",
        (after.saturating_sub(before)) as f64 / SOCKETS as f64
    );
}
