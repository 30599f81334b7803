//! Unit tests of `db`.

use super::{is_unavailable, maintenance_url, read_only};
use diesel::result::{DatabaseErrorKind, Error};

#[test]
fn lost_and_read_only_connections_are_unavailability() {
    let err = |kind, message: &str| Error::DatabaseError(kind, Box::new(message.to_owned()));
    // What diesel-async makes of tokio-postgres's "connection closed".
    assert!(is_unavailable(&err(
        DatabaseErrorKind::UnableToSendCommand,
        "connection closed"
    )));
    assert!(is_unavailable(&err(DatabaseErrorKind::ClosedConnection, "")));
    assert!(is_unavailable(&err(
        DatabaseErrorKind::Unknown,
        "the database system is starting up"
    )));
    assert!(!read_only::suspected());
    assert!(is_unavailable(&err(
        DatabaseErrorKind::ReadOnlyTransaction,
        "cannot execute INSERT in a read-only transaction"
    )));
    assert!(
        read_only::suspected(),
        "a refusal makes the pool check connections"
    );
    assert!(!is_unavailable(&err(
        DatabaseErrorKind::UniqueViolation,
        "duplicate key"
    )));
    assert!(!is_unavailable(&Error::NotFound));
}

#[test]
fn maintenance_url_keeps_server_and_options() {
    let (name, admin) =
        maintenance_url("postgres://postgres@127.0.0.1:5432/authgraph?sslmode=disable").unwrap();
    assert_eq!(name, "authgraph");
    assert_eq!(
        admin,
        "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
    );
    assert!(maintenance_url("postgres://host").is_err());
    let (name, admin) =
        maintenance_url("postgres://u@h1:5432,h2:5433/app?target_session_attrs=read-write").unwrap();
    assert_eq!(name, "app");
    assert_eq!(
        admin,
        "postgres://u@h1:5432,h2:5433/postgres?target_session_attrs=read-write"
    );
}
