//! The ceiling: `me`, `login` and `register` behind bare axum handlers, independent of
//! the service's code. It shares the database, the schema and the key file; everything
//! else is its own: a tokio-postgres pool with statements prepared once per connection,
//! jsonwebtoken ES256 on aws-lc-rs, argon2id on a blocking pool bounded to the cores.
//! It makes the writes the service makes (throttle counts, session, refresh token, audit
//! row, verification mail), in as few statements and commits as they allow, so its rate
//! is what that work costs on this machine without GraphQL or the service's layers.
//!
//! Where it does less than the service, on paths the benchmark does not take: a waiting
//! throttle key still lets the others count (the service counts none), a second factor
//! or a disabled account is a plain 401, and a new password is checked for length only.

mod hash;
mod rows;
mod sql;
mod throttle;
mod tokens;

pub use hash::parallel_verify_seconds;

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::SystemTime,
};

use anyhow::Context;
use axum::{
    Json, Router,
    extract::{ConnectInfo, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use rows::{VerificationMail, audit_params, device_cookie, hex_sha256, random_token, sha256, unix};
use serde::Deserialize;
use serde_json::json;
use sql::PgUuid;
use throttle::{CountParams, Rule, Rules};
use tokio_postgres::NoTls;
use uuid::Uuid;

/// The service's defaults: `REFRESH_TOKEN_TTL` 30 days, `SESSION_MAX_LIFETIME` 90 days.
const REFRESH_TTL_S: f64 = 30.0 * 86_400.0;
const SESSION_MAX_S: f64 = 90.0 * 86_400.0;
const USER_AGENT_MAX: usize = 256;

type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);

pub fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let url = std::env::var("DATABASE_URL").context("DATABASE_URL")?;
        let pool_size = std::env::var("DATABASE_POOL_SIZE")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10);
        let manager = Manager::from_config(
            url.parse()?,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let state = Arc::new(Ceiling {
            pool: Pool::builder(manager).max_size(pool_size).build()?,
            keys: tokens::Keys::from_env()?,
            hasher: hash::Hasher::new(cores)?,
            rules: Rules::from_env()?,
        });
        let addr: SocketAddr = std::env::var("LISTEN_ADDR")
            .unwrap_or_else(|_| "127.0.0.1:8081".into())
            .parse()?;
        let app = Router::new()
            .route("/me", get(me))
            .route("/login", post(login))
            .route("/register", post(register))
            .route("/readyz", get(|| async { "ok" }))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind(addr).await?;
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
        Ok(())
    })
}

struct Ceiling {
    pool: Pool,
    keys: tokens::Keys,
    hasher: hash::Hasher,
    rules: Rules,
}

/// Why a request failed; the service's codes are not reproduced, only the outcome.
enum Fail {
    Unauthorized,
    TooMany,
    Taken,
    BadInput,
    Internal(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Fail {
    fn from(e: E) -> Self {
        Self::Internal(e.into())
    }
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED.into_response(),
            Self::TooMany => StatusCode::TOO_MANY_REQUESTS.into_response(),
            Self::Taken => StatusCode::CONFLICT.into_response(),
            Self::BadInput => StatusCode::BAD_REQUEST.into_response(),
            Self::Internal(e) => {
                eprintln!("ceiling: {e:#}");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}

async fn me(State(c): State<Arc<Ceiling>>, headers: HeaderMap) -> Result<Response, Fail> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or(Fail::Unauthorized)?;
    let claims = c.keys.verify(token).ok_or(Fail::Unauthorized)?;
    let conn = c.pool.get().await?;
    let statement = conn.prepare_cached(sql::ME).await?;
    let row = conn
        .query_opt(&statement, &[&PgUuid(claims.sid), &PgUuid(claims.sub)])
        .await?
        .ok_or(Fail::Unauthorized)?;
    drop(conn);
    let id: PgUuid = row.try_get(0)?;
    let email: Option<&str> = row.try_get(1)?;
    Ok(Json(json!({ "data": { "me": { "id": id.0, "email": email } } })).into_response())
}

#[derive(Deserialize)]
struct Credentials {
    email: String,
    password: String,
}

/// Who is calling, as the audit rows record it.
struct Client {
    ip: IpAddr,
    user_agent: Option<String>,
    request_id: String,
}

impl Client {
    fn of(peer: SocketAddr, headers: &HeaderMap) -> Self {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        Self {
            ip: peer.ip(),
            user_agent: text("user-agent").map(|ua| ua.chars().take(USER_AGENT_MAX).collect()),
            request_id: text("x-request-id").map_or_else(|| Uuid::new_v4().to_string(), str::to_owned),
        }
    }
}

async fn login(
    State(c): State<Arc<Ceiling>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(body): Json<Credentials>,
) -> Result<Response, Fail> {
    let client = Client::of(peer, &headers);
    let email = body.email.trim().to_lowercase();
    let digest = hex_sha256(email.as_bytes());
    let ip = client.ip.to_string();
    let account = c.rules.account.map(|r| (format!("login.account:{digest}"), r));
    let account_address = c
        .rules
        .account_address
        .map(|r| (format!("login.account_address:{digest}@{ip}"), r));
    let address = c.rules.address.map(|r| (format!("login.address:{ip}"), r));
    let counted: Vec<(String, Rule)> = [account.clone(), account_address.clone(), address.clone()]
        .into_iter()
        .flatten()
        .collect();

    // The account and the count, pipelined on one connection, released before the hash.
    let conn = c.pool.get().await?;
    let (find, count) = tokio::try_join!(
        conn.prepare_cached(sql::FIND_LOGIN),
        conn.prepare_cached(sql::COUNT)
    )?;
    let count_params = CountParams::of(&counted);
    let find_params: [Param<'_>; 1] = [&email];
    let (user, taken) = tokio::try_join!(
        conn.query_opt(&find, &find_params),
        count_params.run(&conn, &count)
    )?;
    drop(conn);
    if taken < counted.len() {
        return Err(Fail::TooMany);
    }
    let user = user
        .map(|row| -> Result<_, tokio_postgres::Error> {
            Ok((
                row.try_get::<_, PgUuid>(0)?.0,
                row.try_get::<_, Option<String>>(1)?,
                row.try_get::<_, bool>(2)?,
                row.try_get::<_, bool>(3)?,
            ))
        })
        .transpose()?;
    let phc = user.as_ref().and_then(|u| u.1.clone());
    let matched = c.hasher.verify(body.password, phc).await?;
    let Some((user_id, _, disabled, has_factor)) = user.filter(|_| matched) else {
        let conn = c.pool.get().await?;
        let audit = conn.prepare_cached(sql::INSERT_AUDIT).await?;
        let details = json!({ "reason": "invalid_password" }).to_string();
        conn.execute(
            &audit,
            &audit_params(&client, "login.failed", None, None, &details).refs(),
        )
        .await?;
        return Err(Fail::Unauthorized);
    };
    if disabled || has_factor {
        return Err(Fail::Unauthorized);
    }

    let now = SystemTime::now();
    let session_id = Uuid::new_v4();
    let refresh = random_token()?;
    let refresh_hash = sha256(refresh.as_bytes());
    let clear: Vec<&str> = [&account, &account_address]
        .into_iter()
        .flatten()
        .map(|(key, _)| key.as_str())
        .collect();
    let mut conn = c.pool.get().await?;
    let (clear_st, refund_st, session_st, refresh_st, audit_st) = tokio::try_join!(
        conn.prepare_cached(sql::CLEAR),
        conn.prepare_cached(sql::REFUND),
        conn.prepare_cached(sql::INSERT_SESSION),
        conn.prepare_cached(sql::INSERT_REFRESH),
        conn.prepare_cached(sql::INSERT_AUDIT),
    )?;
    let details = r#"{"method":"password"}"#;
    let audit = audit_params(
        &client,
        "login.succeeded",
        Some(user_id),
        Some(session_id),
        details,
    );
    let ua = client.user_agent.as_deref();
    let (sid, uid, token_hash) = (PgUuid(session_id), PgUuid(user_id), refresh_hash.as_slice());
    let clear_params: [Param<'_>; 1] = [&clear];
    let session_params: [Param<'_>; 6] = [&sid, &uid, &ua, &now, &REFRESH_TTL_S, &SESSION_MAX_S];
    let refresh_params: [Param<'_>; 4] = [&token_hash, &sid, &now, &REFRESH_TTL_S];
    let audit_refs = audit.refs();
    let tx = conn.transaction().await?;
    // One round trip: PostgreSQL runs them in order. The shared address counter is
    // refunded last, so its row lock is held the shortest time before COMMIT.
    let refund = async {
        match &address {
            Some((key, rule)) => tx.execute(&refund_st, &[key, &rule.free]).await,
            None => Ok(0),
        }
    };
    tokio::try_join!(
        tx.execute(&clear_st, &clear_params),
        tx.execute(&session_st, &session_params),
        tx.execute(&refresh_st, &refresh_params),
        tx.execute(&audit_st, &audit_refs),
        refund,
    )?;
    tx.commit().await?;
    drop(conn);
    let iat = unix(now);
    let access = c.keys.access(user_id, session_id, iat)?;
    let device = c.keys.device(user_id, iat)?;
    Ok((
        [(header::SET_COOKIE, device_cookie(&device))],
        Json(json!({ "data": { "login": { "accessToken": access, "refreshToken": refresh } } })),
    )
        .into_response())
}

async fn register(
    State(c): State<Arc<Ceiling>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(body): Json<Credentials>,
) -> Result<Response, Fail> {
    let client = Client::of(peer, &headers);
    let email = body.email.trim().to_lowercase();
    if !email.contains('@') || !(8..=128).contains(&body.password.chars().count()) {
        return Err(Fail::BadInput);
    }
    if let Some(rule) = c.rules.register_address {
        let counted = [(format!("register.address:{}", client.ip), rule)];
        let conn = c.pool.get().await?;
        let count = conn.prepare_cached(sql::COUNT).await?;
        if CountParams::of(&counted).run(&conn, &count).await? < 1 {
            return Err(Fail::TooMany);
        }
    }
    let phc = c.hasher.hash(body.password).await?;

    let now = SystemTime::now();
    let (user_id, session_id) = (Uuid::new_v4(), Uuid::new_v4());
    let refresh = random_token()?;
    let refresh_hash = sha256(refresh.as_bytes());
    let verify = random_token()?;
    let verify_hash = sha256(verify.as_bytes());
    let mail = VerificationMail::new(&email, &verify);
    let mut conn = c.pool.get().await?;
    let (user_st, token_st, mail_st, session_st, refresh_st, audit_st) = tokio::try_join!(
        conn.prepare_cached(sql::INSERT_USER),
        conn.prepare_cached(sql::INSERT_EMAIL_TOKEN),
        conn.prepare_cached(sql::INSERT_MAIL),
        conn.prepare_cached(sql::INSERT_SESSION),
        conn.prepare_cached(sql::INSERT_REFRESH),
        conn.prepare_cached(sql::INSERT_AUDIT),
    )?;
    let audit = audit_params(&client, "user.created", Some(user_id), Some(session_id), "{}");
    let ua = client.user_agent.as_deref();
    let (uid, sid, mail_id) = (PgUuid(user_id), PgUuid(session_id), PgUuid(mail.id));
    let (token_hash, verify_hash) = (refresh_hash.as_slice(), verify_hash.as_slice());
    let user_params: [Param<'_>; 3] = [&uid, &email, &phc];
    let token_params: [Param<'_>; 3] = [&verify_hash, &uid, &email];
    let mail_params: [Param<'_>; 6] = [&mail_id, &uid, &email, &mail.text, &mail.html, &mail.message_id];
    let session_params: [Param<'_>; 6] = [&sid, &uid, &ua, &now, &REFRESH_TTL_S, &SESSION_MAX_S];
    let refresh_params: [Param<'_>; 4] = [&token_hash, &sid, &now, &REFRESH_TTL_S];
    let audit_refs = audit.refs();
    let tx = conn.transaction().await?;
    // One round trip, in order: the user row before the rows that refer to it.
    let inserted = tokio::try_join!(
        tx.execute(&user_st, &user_params),
        tx.execute(&token_st, &token_params),
        tx.execute(&mail_st, &mail_params),
        tx.execute(&session_st, &session_params),
        tx.execute(&refresh_st, &refresh_params),
        tx.execute(&audit_st, &audit_refs),
    );
    if let Err(e) = inserted {
        let taken = e.as_db_error().and_then(|d| d.constraint()) == Some("users_email_key");
        return Err(if taken { Fail::Taken } else { e.into() });
    }
    tx.commit().await?;
    drop(conn);
    let iat = unix(now);
    let access = c.keys.access(user_id, session_id, iat)?;
    let device = c.keys.device(user_id, iat)?;
    Ok((
        [(header::SET_COOKIE, device_cookie(&device))],
        Json(json!({ "data": { "register": { "accessToken": access, "refreshToken": refresh } } })),
    )
        .into_response())
}
