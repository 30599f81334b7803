//! Unit tests of `sessions`, on a real PostgreSQL.

use chrono::{TimeDelta, Utc};
use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use super::{NewSession, find_live_owner, open, revoke};
use crate::db::{
    test_db::TestDb,
    users::{self, NewUser},
};

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
    let (with_password, without) = (Uuid::new_v4(), Uuid::new_v4());
    for (id, email, hash) in [
        (with_password, "a@example.com", "$argon2id$stub"),
        (without, "b@example.com", ""),
    ] {
        users::insert(
            &conn,
            &NewUser {
                id,
                email,
                password_hash: hash,
                display_name: Some("Ada"),
            },
        )
        .await
        .unwrap();
    }
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
