//! Unit tests of `metrics`.

use super::*;

#[test]
fn operation_names_are_bounded() {
    let names = OperationNames::default();
    assert_eq!(names.label(None), "anonymous");
    assert_eq!(names.label(Some("Login")), "Login");
    assert_eq!(names.label(Some(&"x".repeat(65))), "other");
    for i in 0..MAX_OPERATION_NAMES {
        names.label(Some(&format!("Op{i}")));
    }
    assert_eq!(
        names.label(Some("Login")),
        "Login",
        "known names keep their label"
    );
    assert_eq!(names.label(Some("OneTooMany")), "other");
}

#[test]
fn names_follow_prometheus_conventions() {
    for name in [
        HTTP_REQUESTS_TOTAL,
        GRAPHQL_OPERATIONS_TOTAL,
        LOGINS_TOTAL,
        THROTTLE_HITS_TOTAL,
        REFRESH_TOKEN_REUSE_TOTAL,
        DB_POOL_GETS_TOTAL,
        DB_POOL_CONNECTIONS_CLOSED_TOTAL,
        DB_CONNECT_ERRORS_TOTAL,
        MAIL_DELIVERIES_TOTAL,
    ] {
        assert!(
            name.starts_with("authgraph_") && name.ends_with("_total"),
            "{name}"
        );
    }
    for name in [
        HTTP_REQUEST_DURATION_SECONDS,
        GRAPHQL_OPERATION_DURATION_SECONDS,
        PASSWORD_HASH_DURATION_SECONDS,
        MAIL_OUTBOX_OLDEST_AGE_SECONDS,
    ] {
        assert!(name.ends_with("_seconds"), "{name}");
    }
}
