//! Unit tests of `throttle`. The counting rule runs in PostgreSQL
//! (`db::throttle::Count`), so the tests of the rule run it on a real server
//! (`TEST_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432`), in a database of
//! their own, and move time by moving the counters' timestamps back.

use diesel::sql_types::Double;
use diesel_async::RunQueryDsl;

use super::*;
use crate::db::{
    test_db::TestDb,
    throttle::{Count, count},
};

fn rule(raw: &str) -> ThrottleRule {
    ThrottleRule::parse(raw).unwrap().unwrap()
}

/// Moves time forward by `secs` for every counter (their timestamps go back).
async fn advance(conn: &mut AsyncPgConnection, secs: f64) {
    diesel::sql_query(
        "update throttle_counters set window_ends_at = window_ends_at - make_interval(secs => $1), \
         locked_until = locked_until - make_interval(secs => $1)",
    )
    .bind::<Double, _>(secs)
    .execute(conn)
    .await
    .unwrap();
}

/// One attempt on `keys`, each with `rule`.
async fn take(conn: &AsyncPgConnection, keys: &[&str], rule: &ThrottleRule) -> Vec<Taken> {
    count(conn, &Count::new(keys.iter().map(|key| (*key, rule))))
        .await
        .unwrap()
}

/// A key's attempts and seconds left in its window, by the database's clock.
async fn state(conn: &mut AsyncPgConnection, key: &str) -> (i32, i64) {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        attempts: i32,
        #[diesel(sql_type = diesel::sql_types::Double)]
        window_s: f64,
    }
    let row: Row = diesel::sql_query(
        "select attempts, extract(epoch from window_ends_at - now())::float8 as window_s \
         from throttle_counters where key = $1",
    )
    .bind::<diesel::sql_types::Text, _>(key)
    .get_result(conn)
    .await
    .unwrap();
    #[expect(clippy::cast_possible_truncation, reason = "a test's whole seconds")]
    (row.attempts, row.window_s.round() as i64)
}

/// Whether an answer counted, and the wait it carries in whole seconds (rounded up:
/// real time passes between statements).
fn outcome(rows: &[Taken]) -> (bool, Option<u64>) {
    let [row] = rows else {
        panic!("one key, one row: {rows:?}")
    };
    (row.counted, remaining_wait(row).map(retry_after))
}

/// When a client retrying the moment each wait ends makes its attempts, from 0 s up to
/// `horizon` seconds.
async fn attempt_times(conn: &mut AsyncPgConnection, rule: &ThrottleRule, horizon: f64) -> Vec<i64> {
    let mut now = 0.0;
    let mut times = Vec::new();
    while now < horizon {
        let rows = take(conn, &["k"], rule).await;
        let [row] = rows.as_slice() else {
            panic!("{rows:?}")
        };
        if row.counted {
            #[expect(clippy::cast_possible_truncation, reason = "whole seconds")]
            times.push(now.round() as i64);
        } else {
            let wait = remaining_wait(row).unwrap().as_secs_f64();
            advance(conn, wait).await;
            now += wait;
        }
    }
    times
}

/// The most attempts inside any interval of `span` seconds.
fn most_in_any(times: &[i64], span: i64) -> usize {
    times
        .iter()
        .enumerate()
        .map(|(i, start)| times[i..].iter().take_while(|t| **t < start + span).count())
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn the_limit_passes_free_attempts_then_waits_grow() {
    let db = TestDb::new("throttle").await;
    let mut conn = db.conn().await;
    let r = rule("3/1h,10s..40s");
    for n in 1..=2 {
        assert_eq!(outcome(&take(&conn, &["k"], &r).await), (true, None));
        assert_eq!(state(&mut conn, "k").await, (n, 3600));
    }
    assert_eq!(outcome(&take(&conn, &["k"], &r).await), (true, Some(10)));
    advance(&mut conn, 4.0).await;
    // Refused while waiting, with the wait left, and not counted.
    assert_eq!(outcome(&take(&conn, &["k"], &r).await), (false, Some(6)));
    assert_eq!(state(&mut conn, "k").await.0, 3);
    advance(&mut conn, 6.0).await;
    assert_eq!(outcome(&take(&conn, &["k"], &r).await), (true, Some(20)));
    advance(&mut conn, 20.0).await;
    assert_eq!(outcome(&take(&conn, &["k"], &r).await), (true, Some(40)));
    advance(&mut conn, 40.0).await;
    assert_eq!(
        outcome(&take(&conn, &["k"], &r).await),
        (true, Some(40)),
        "capped at 40 s"
    );
    // A new window starts the count over.
    advance(&mut conn, 3600.0 - 70.0).await;
    assert_eq!(outcome(&take(&conn, &["k"], &r).await), (true, None));
    assert_eq!(state(&mut conn, "k").await, (1, 3600));
    drop(conn);
    db.drop().await;
}

#[tokio::test]
async fn a_refused_attempt_counts_none_of_its_keys() {
    let db = TestDb::new("throttle").await;
    let mut conn = db.conn().await;
    let one = rule("1/1h");
    let r = rule("3/1h");
    assert_eq!(outcome(&take(&conn, &["b"], &one).await), (true, Some(3600)));
    take(&conn, &["a", "c"], &r).await;
    let rows = count(&conn, &Count::new([("a", &r), ("b", &one), ("c", &r)]))
        .await
        .unwrap();
    assert!(rows.iter().all(|row| !row.counted), "{rows:?}");
    assert_eq!(
        rows.iter()
            .map(|row| remaining_wait(row).is_some())
            .collect::<Vec<_>>(),
        [false, true, false],
        "the waiting key says how long"
    );
    assert_eq!(state(&mut conn, "a").await.0, 1);
    assert_eq!(state(&mut conn, "c").await.0, 1);
    drop(conn);
    db.drop().await;
}

#[tokio::test]
async fn concurrent_attempts_never_pass_the_limit_together() {
    let db = TestDb::new("throttle").await;
    let r = rule("3/1h,1h..1h");
    let mut conns = Vec::new();
    for _ in 0..8 {
        conns.push(db.conn().await);
    }
    // Every attempt names the same keys, in different orders: none deadlocks.
    let taken = futures_util::future::join_all(conns.iter().enumerate().map(|(i, conn)| {
        let keys: &[&str] = if i % 2 == 0 { &["x", "y"] } else { &["y", "x"] };
        take(conn, keys, &r)
    }))
    .await;
    let passed = taken
        .iter()
        .filter(|rows| rows.iter().all(|row| row.counted))
        .count();
    assert_eq!(passed, 3);
    drop(conns);
    db.drop().await;
}

#[tokio::test]
async fn one_address_cannot_slow_down_the_account_for_its_owner() {
    let db = TestDb::new("throttle").await;
    let mut conn = db.conn().await;
    let defaults = ThrottleConfig::default();
    let pair = defaults.login_account_address.unwrap();
    let account = defaults.login_account.unwrap();
    let window = i64::try_from(account.window.as_secs()).unwrap();
    #[expect(clippy::cast_precision_loss, reason = "a few days in seconds")]
    let times = attempt_times(&mut conn, &pair, 3.0 * window as f64).await;
    let most = most_in_any(&times, window);
    // Not even two addresses flooding together reach the account's limit.
    assert!(
        2 * most < account.free as usize,
        "one address makes {most} attempts per account window against a limit of {}",
        account.free
    );
    // And the one address gets a handful of quick guesses, then about one an hour.
    assert_eq!(most_in_any(&times, 60), 10);
    assert!(most <= 45, "{most}");
    drop(conn);
    db.drop().await;
}

#[tokio::test]
async fn every_statement_is_prepared_once_per_connection() {
    let db = TestDb::new("throttle").await;
    let mut conn = db.conn().await;
    let r = rule("3/1h");
    let settlement = Settlement {
        clear: vec!["a".into()],
        refund: vec![("b".into(), 3)],
    };
    for _ in 0..3 {
        take(&conn, &["a", "b"], &r).await;
        settlement.apply(&conn).await.unwrap();
    }
    // Statements diesel does not cache run unnamed, and are not listed (but this one).
    #[derive(diesel::QueryableByName)]
    struct Prepared {
        #[diesel(sql_type = diesel::sql_types::Text)]
        statement: String,
    }
    let prepared: Vec<Prepared> = diesel::sql_query(
        "select statement from pg_prepared_statements \
         where statement like '%throttle_counters%' and statement not like '%pg_prepared%'",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let prepared: Vec<String> = prepared.into_iter().map(|p| p.statement).collect();
    assert_eq!(
        prepared.len(),
        3,
        "count, clear and refund, each once: {prepared:#?}"
    );
    drop(conn);
    db.drop().await;
}

#[test]
fn retry_after_rounds_up_to_whole_seconds() {
    assert_eq!(retry_after(Duration::from_millis(1)), 1);
    assert_eq!(retry_after(Duration::from_millis(1500)), 2);
    assert_eq!(retry_after(Duration::from_secs(60)), 60);
    assert_eq!(retry_after(Duration::ZERO), 1, "a wait not known yet");
}

#[test]
fn ipv6_clients_are_counted_by_their_64_block() {
    let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
    assert_eq!(address(a), address(b));
    assert_eq!(address(a), "2001:db8:1:2::/64");
    assert_eq!(address("::ffff:192.0.2.1".parse().unwrap()), "192.0.2.1");
    assert_eq!(address("192.0.2.1".parse().unwrap()), "192.0.2.1");
}

#[test]
fn keys_never_hold_an_email() {
    let email = Email::parse("Alice@Example.com", "email").unwrap();
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    for (limit, subject) in [
        (Limit::LoginAccount, Subject::Email(&email)),
        (Limit::LoginAccountAddress, Subject::EmailFrom(&email, ip)),
    ] {
        let key = subject.key(limit);
        assert!(!key.to_lowercase().contains("alice"), "{key}");
        assert!(key.starts_with(limit.name()), "{key}");
    }
    assert_eq!(
        Subject::Address(ip).key(Limit::LoginAddress),
        "login.address:192.0.2.1"
    );
}
