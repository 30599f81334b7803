//! Database outages, for real: the binary against a PostgreSQL cluster of the test's own
//! that is down at start, comes up, goes down and comes back (SECURITY.md: Keycloak kept
//! stale connections after a restart and did not recover when started without its
//! database).

use std::time::Duration;

use serde_json::json;

use crate::support::{LOGIN, ME, PASSWORD, PgCluster, REGISTER, Service, code, email, eventually};

async fn status(service: &Service, path: &str) -> u16 {
    service.get(path).await.0
}

/// Asserts the service answers like it should while the database is down, and
/// returns how long the slowest GraphQL answer took (for the report, not asserted).
async fn assert_degraded(service: &Service, token: Option<&str>) -> Duration {
    assert_eq!(status(service, "/healthz").await, 200, "liveness stays up");
    assert_eq!(
        status(service, "/readyz").await,
        503,
        "readiness follows the database"
    );
    assert_eq!(
        status(service, "/.well-known/jwks.json").await,
        200,
        "what needs no database keeps working"
    );
    let mut slowest = Duration::ZERO;
    let (http, body, took) = service
        .graphql(
            LOGIN,
            json!({ "input": { "email": email("down"), "password": PASSWORD } }),
            &[],
        )
        .await;
    assert_eq!((http, code(&body)), (200, "SERVICE_UNAVAILABLE"), "{body}");
    slowest = slowest.max(took);
    if let Some(token) = token {
        let auth = format!("Bearer {token}");
        let (http, body, took) = service.graphql(ME, json!({}), &[("authorization", &auth)]).await;
        assert_eq!((http, code(&body)), (200, "SERVICE_UNAVAILABLE"), "{body}");
        slowest = slowest.max(took);
    }
    slowest
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_starts_without_its_database_and_rides_out_an_outage() {
    let pg = PgCluster::init();
    // Development mode: the service creates and migrates its database once it can.
    let service = Service::builder()
        .env("DATABASE_URL", pg.url("authgraph_outage"))
        .spawn();

    // 1. Started while PostgreSQL is down: alive, not ready, answering quickly.
    let took = assert_degraded(&service, None).await;
    eprintln!("down at start: SERVICE_UNAVAILABLE after {took:?}");

    // 2. PostgreSQL appears: ready without a restart.
    pg.start();
    eventually("ready once PostgreSQL is up", || async {
        status(&service, "/readyz").await == 200
    })
    .within(Duration::from_secs(60))
    .await;
    let address = email("outage");
    let (_, body, _) = service
        .graphql(
            REGISTER,
            json!({ "input": { "email": address, "password": PASSWORD } }),
            &[],
        )
        .await;
    let token = body["data"]["register"]["accessToken"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned();
    let auth = format!("Bearer {token}");
    let (_, body, _) = service.graphql(ME, json!({}), &[("authorization", &auth)]).await;
    assert_eq!(body["data"]["me"]["email"], address.as_str(), "{body}");

    // 3. PostgreSQL goes away (its pooled connections die with it).
    pg.stop();
    let took = assert_degraded(&service, Some(&token)).await;
    eprintln!("outage: slowest SERVICE_UNAVAILABLE after {took:?}");
    // Still degraded, not hanging, on a second round (no stuck pool).
    let took = assert_degraded(&service, Some(&token)).await;
    eprintln!("outage, second round: slowest after {took:?}");

    // 4. PostgreSQL comes back: the very first request is served (connections the
    // restart broke are replaced before use, not handed out), with the same session.
    pg.start();
    let (_, body, _) = service.graphql(ME, json!({}), &[("authorization", &auth)]).await;
    assert_eq!(body["data"]["me"]["email"], address.as_str(), "{body}");
    assert_eq!(status(&service, "/readyz").await, 200);
    let (_, body, _) = service
        .graphql(
            LOGIN,
            json!({ "input": { "email": address, "password": PASSWORD } }),
            &[],
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");

    // 5. A quick restart with idle connections in the pool (Keycloak's failure): the
    // stale ones are caught on checkout, and the next request is served.
    pg.stop();
    pg.start();
    let (_, body, _) = service.graphql(ME, json!({}), &[("authorization", &auth)]).await;
    assert_eq!(body["data"]["me"]["email"], address.as_str(), "{body}");

    // The restart is visible to an operator.
    let (_, metrics) = service.get("/metrics").await;
    assert!(metrics.contains("authgraph_db_up 1"), "{metrics}");
    assert!(
        metrics.contains("authgraph_graphql_operations_total{operation=\"Login\",type=\"mutation\",outcome=\"error\",code=\"SERVICE_UNAVAILABLE\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("authgraph_db_connect_errors_total"), "{metrics}");
    let closed = |reason: &str| {
        let series = format!("authgraph_db_pool_connections_closed_total{{reason=\"{reason}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert!(closed("invalid") + closed("broken") > 0.0, "{metrics}");

    // The log says when the database went and came back, once each time, not per probe.
    let lines = service.json_lines();
    let count = |message: &str| lines.iter().filter(|l| l["message"] == message).count();
    assert_eq!(count("database unreachable: not ready"), 2, "{lines:#?}");
    assert_eq!(count("database reachable again: ready"), 2, "{lines:#?}");
    assert!(!lines.iter().any(|l| l["level"] == "ERROR"), "{lines:#?}");
}
