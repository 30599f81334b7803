//! The ceiling: the work of `me` and `login` behind a bare axum handler, without
//! GraphQL — same keys, same token check, same session query, same password hasher.

use std::net::SocketAddr;

use authgraph::{auth::ClientInfo, config::Config, state::AppState};
use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};

pub fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let config = Config::from_env()?;
        let addr = config.http.listen_addr;
        let state = AppState::new(config)?;
        let app = Router::new()
            .route("/me", get(me))
            .route("/login", post(login))
            .route("/readyz", get(|| async { "ok" }))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind(addr).await?;
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
        Ok(())
    })
}

async fn me(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match state.auth.authenticate(authorization).await {
        Ok(viewer) => Json(json!({ "id": viewer.user.id, "email": viewer.user.email })).into_response(),
        Err(_) => StatusCode::UNAUTHORIZED.into_response(),
    }
}

async fn login(State(state): State<AppState>, Json(body): Json<Value>) -> Response {
    let email = body["email"].as_str().unwrap_or_default();
    let password = body["password"].as_str().unwrap_or_default();
    match state.auth.login(email, password, &ClientInfo::default()).await {
        Ok(issued) => Json(json!({
            "accessToken": issued.access_token,
            "refreshToken": issued.refresh_token.expose(),
        }))
        .into_response(),
        Err(_) => StatusCode::UNAUTHORIZED.into_response(),
    }
}
