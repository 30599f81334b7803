//! Unit tests of `sessions`, on a real PostgreSQL.

use chrono::{TimeDelta, Utc};
use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use super::{NewSession, find_live_owner, open, revoke};
use crate::db::{
    refresh_tokens::{Rotation, lock_for_rotation, record_rotation},
    test_db::TestDb,
    users::{self, NewUser},
};

/// A user with `email` and `password_hash` (empty: none), named Ada.
async fn user_of(conn: &AsyncPgConnection, email: &str, password_hash: &str) -> Uuid {
    let id = Uuid::new_v4();
    let new = NewUser {
        id,
        email,
        password_hash,
        display_name: Some("Ada"),
    };
    users::insert(conn, &new).await.unwrap();
    id
}

async fn session_of(conn: &AsyncPgConnection, user_id: Uuid, expires_in: TimeDelta) -> Uuid {
    let now = Utc::now();
    let id = Uuid::new_v4();
    let new = NewSession {
        id,
        user_id,
        user_agent: None,
        created_at: now,
        last_used_at: now,
        expires_at: now + expires_in,
        absolute_expires_at: now + TimeDelta::days(1),
        amr: vec!["pwd".into()],
        acr: "aal1",
        auth_time: now,
    };
    open(conn, &new, id.as_bytes(), now + expires_in).await.unwrap();
    id
}

/// The constant SQL reads the same columns, in the same order, as the query builder's
/// `Account::as_select()`, and refuses what the session check refuses.
#[tokio::test]
async fn the_live_owner_is_the_account_as_the_query_builder_reads_it() {
    let db = TestDb::new("sessions").await;
    let mut conn = db.conn().await;
    let with_password = user_of(&conn, "a@example.com", "$argon2id$stub").await;
    let without = user_of(&conn, "b@example.com", "").await;
    for user_id in [with_password, without] {
        let session = session_of(&conn, user_id, TimeDelta::hours(1)).await;
        let found = find_live_owner(&conn, session, user_id).await.unwrap().unwrap();
        let built = users::find(&mut conn, user_id).await.unwrap().unwrap();
        assert_eq!(
            (found.id, &found.email, found.has_password, &found.display_name),
            (built.id, &built.email, built.has_password, &built.display_name)
        );
        assert_eq!(
            (found.role, found.email_verified_at, found.created_at),
            (built.role, built.email_verified_at, built.created_at)
        );
        assert_eq!(
            (found.updated_at, found.disabled_at),
            (built.updated_at, built.disabled_at)
        );
        // Someone else's session, or none, is nobody's.
        let other = if user_id == with_password {
            without
        } else {
            with_password
        };
        assert!(find_live_owner(&conn, session, other).await.unwrap().is_none());
        assert!(
            find_live_owner(&conn, Uuid::new_v4(), user_id)
                .await
                .unwrap()
                .is_none()
        );
        revoke(&mut conn, session, "test").await.unwrap();
        assert!(find_live_owner(&conn, session, user_id).await.unwrap().is_none());
    }
    let idle = session_of(&conn, with_password, TimeDelta::seconds(-1)).await;
    assert!(
        find_live_owner(&conn, idle, with_password)
            .await
            .unwrap()
            .is_none()
    );
    drop(conn);
    db.drop().await;
}

/// The writes of sign-up, sign-in and refresh are prepared once per connection, though
/// diesel on its own prepares an UPDATE, or an INSERT with an `Option`, every time
/// (`db::cached`).
#[tokio::test]
async fn the_hot_writes_are_prepared_once_per_connection() {
    use diesel_async::RunQueryDsl;
    let db = TestDb::new("sessions").await;
    let mut conn = db.conn().await;
    for n in 0..3 {
        let user_id = user_of(&conn, &format!("u{n}@example.com"), "$argon2id$stub").await;
        let session_id = session_of(&conn, user_id, TimeDelta::hours(1)).await;
        let now = Utc::now();
        let child = Uuid::new_v4();
        record_rotation(
            &conn,
            &Rotation {
                session_id,
                parent_hash: session_id.as_bytes(),
                successor_sealed: b"sealed",
                child_hash: child.as_bytes(),
                child_expires_at: now + TimeDelta::hours(1),
                at: now,
                grace_cutoff: now - TimeDelta::seconds(10),
            },
        )
        .await
        .unwrap();
    }
    #[derive(diesel::QueryableByName)]
    struct Prepared {
        #[diesel(sql_type = diesel::sql_types::Text)]
        statement: String,
    }
    let prepared: Vec<Prepared> = diesel::sql_query(
        "select statement from pg_prepared_statements \
         where statement like 'INSERT%' or statement like 'UPDATE%' or statement like 'with child%'",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let mut prepared: Vec<String> = prepared
        .into_iter()
        .map(|p| {
            p.statement
                .split(" SET ")
                .next()
                .unwrap_or_default()
                .chars()
                .take(40)
                .collect()
        })
        .collect();
    prepared.sort();
    assert_eq!(
        prepared,
        [
            r#"INSERT INTO "refresh_tokens" ("token_has"#,
            r#"INSERT INTO "sessions" ("id", "user_id","#,
            r#"INSERT INTO "users" ("id", "email", "pas"#,
            "with child as (insert into refresh_token",
        ],
        "each statement once"
    );
    // And the rotation did its writes: children stored, parents marked, their successors
    // sealed, sessions touched.
    use crate::db::schema::{refresh_token_successors, refresh_tokens, sessions};
    use diesel::prelude::*;
    let marked: i64 = refresh_tokens::table
        .inner_join(
            refresh_token_successors::table.on(refresh_token_successors::parent_hash
                .eq(refresh_tokens::token_hash)
                .and(
                    refresh_token_successors::rotated_at
                        .nullable()
                        .eq(refresh_tokens::rotated_at),
                )),
        )
        .filter(refresh_token_successors::sealed.eq(b"sealed".to_vec()))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    let tokens: i64 = refresh_tokens::table.count().get_result(&mut conn).await.unwrap();
    let touched: i64 = sessions::table
        .filter(sessions::expires_at.ne(sessions::absolute_expires_at))
        .filter(sessions::last_used_at.ne(sessions::created_at))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!((marked, tokens, touched), (3, 6, 3));
    drop(conn);
    db.drop().await;
}

/// The refresh's one read answers what the query builder reads (columns in field order),
/// with the address's wait; and a refresh that waited for the lock sees the rotation it
/// waited for, which it would not if only the session were locked.
#[tokio::test]
async fn the_rotation_lock_reads_the_token_as_the_rotation_before_it_left_it() {
    use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
    let db = TestDb::new("sessions").await;
    let mut conn = db.conn().await;
    let user_id = user_of(&conn, "a@example.com", "$argon2id$stub").await;
    let session_id = session_of(&conn, user_id, TimeDelta::hours(1)).await;
    let parent = session_id.as_bytes();
    diesel::sql_query(
        "insert into throttle_counters (key, attempts, window_ends_at, locked_until) \
         values ('token:1.2.3.4', 9, now() + interval '1 hour', '2100-01-01Z')",
    )
    .execute(&mut conn)
    .await
    .unwrap();

    let read = lock_for_rotation(&conn, parent, Some("token:1.2.3.4"))
        .await
        .unwrap()
        .unwrap();
    let session = super::lock(&mut conn, session_id).await.unwrap().unwrap();
    let token = crate::db::refresh_tokens::find(&mut conn, parent)
        .await
        .unwrap()
        .unwrap();
    let owner = users::find(&mut conn, user_id).await.unwrap().unwrap();
    assert_eq!(format!("{:?}", read.session), format!("{session:?}"));
    assert_eq!(
        (
            &read.token.token_hash,
            read.token.session_id,
            read.token.issued_at
        ),
        (&token.token_hash, token.session_id, token.issued_at)
    );
    assert_eq!(
        (read.token.expires_at, read.token.rotated_at),
        (token.expires_at, token.rotated_at)
    );
    assert_eq!(
        (
            read.owner.id,
            &read.owner.email,
            read.owner.has_password,
            read.owner.role
        ),
        (owner.id, &owner.email, owner.has_password, owner.role)
    );
    assert_eq!(
        read.locked_until.unwrap().to_rfc3339(),
        "2100-01-01T00:00:00+00:00"
    );
    let unthrottled = lock_for_rotation(&conn, parent, None).await.unwrap().unwrap();
    assert!(unthrottled.locked_until.is_none());
    assert!(
        lock_for_rotation(&conn, b"unknown", Some("token:1.2.3.4"))
            .await
            .unwrap()
            .is_none()
    );

    // One refresh holds the lock and rotates; the other waits for it, then must see the
    // token rotated, and find its sealed successor.
    let mut other = db.conn().await;
    conn.batch_execute("begin").await.unwrap();
    assert!(lock_for_rotation(&conn, parent, None).await.unwrap().is_some());
    let waiting = tokio::spawn(async move {
        other.batch_execute("begin").await.unwrap();
        let read = lock_for_rotation(&other, session_id.as_bytes(), None)
            .await
            .unwrap()
            .unwrap();
        let sealed = crate::db::refresh_tokens::sealed_successor(&mut other, &read.token)
            .await
            .unwrap();
        other.batch_execute("rollback").await.unwrap();
        (read.token.rotated_at, sealed)
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the second refresh waits for the lock");
    let now = Utc::now();
    record_rotation(
        &conn,
        &Rotation {
            session_id,
            parent_hash: parent,
            successor_sealed: b"sealed",
            child_hash: b"child",
            child_expires_at: now + TimeDelta::hours(1),
            at: now,
            grace_cutoff: now - TimeDelta::seconds(10),
        },
    )
    .await
    .unwrap();
    conn.batch_execute("commit").await.unwrap();
    let (seen, sealed) = waiting.await.unwrap();
    assert_eq!(
        seen.map(|t| t.timestamp_micros()),
        Some(now.timestamp_micros()),
        "the waiting refresh reads the rotation it waited for"
    );
    assert_eq!(
        sealed.as_deref(),
        Some(&b"sealed"[..]),
        "and its sealed successor"
    );
    drop(conn);
    db.drop().await;
}
