//! Retention: back-dated rows go, recent and live ones stay, in bounded batches, on one
//! replica at a time, and `serve` runs the job.

use std::time::Duration;

use authgraph::{config::RetentionConfig, db::retention::LOCK_KEY, retention::Pruned};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::support::{Service, TestApp, TestDb, count, eventually, text};

const USER: &str = "00000000-0000-0000-0000-0000000000aa";

/// Sessions `a…` ended more than 30 days ago (revoked, idle, past their absolute
/// lifetime); `b…` ended less than 30 days ago or are live (`b…4` went idle a minute
/// short of 30 days: inside the index's hour-rounded range, kept by the exact check). Each has three refresh
/// tokens. Outbox `c…1-2` finished 8 days ago, `c…3-5` recently or never (pending);
/// email tokens `01…` expired 8 days ago, `02…`, `03…` recently or not at all.
const SEED: &str = "
insert into users (id, email, password_hash) values ('00000000-0000-0000-0000-0000000000aa', 'kept@example.com', 'x');
insert into sessions (id, user_id, expires_at, absolute_expires_at, revoked_at, revoked_reason, amr, acr, auth_time)
select ('a0000000-0000-0000-0000-00000000000' || g)::uuid, '00000000-0000-0000-0000-0000000000aa',
       now() + interval '20 days', now() + interval '60 days', now() - interval '31 days', 'logout', '{pwd}', 'aal1', now()
from generate_series(1, 5) g;
insert into sessions (id, user_id, expires_at, absolute_expires_at, amr, acr, auth_time) values
  ('a0000000-0000-0000-0000-000000000006', '00000000-0000-0000-0000-0000000000aa', now() - interval '31 days', now() + interval '59 days', '{pwd}', 'aal1', now()),
  ('a0000000-0000-0000-0000-000000000007', '00000000-0000-0000-0000-0000000000aa', now() - interval '40 days', now() - interval '31 days', '{pwd}', 'aal1', now()),
  ('b0000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-0000000000aa', now() - interval '29 days', now() + interval '61 days', '{pwd}', 'aal1', now()),
  ('b0000000-0000-0000-0000-000000000003', '00000000-0000-0000-0000-0000000000aa', now() + interval '30 days', now() + interval '90 days', '{pwd}', 'aal1', now()),
  ('b0000000-0000-0000-0000-000000000004', '00000000-0000-0000-0000-0000000000aa', now() - interval '30 days' + interval '1 minute', now() + interval '60 days', '{pwd}', 'aal1', now());
insert into sessions (id, user_id, expires_at, absolute_expires_at, revoked_at, revoked_reason, amr, acr, auth_time) values
  ('b0000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-0000000000aa', now() + interval '1 day', now() + interval '60 days', now() - interval '29 days', 'reuse', '{pwd}', 'aal1', now());
insert into refresh_tokens (token_hash, session_id, expires_at, rotated_at)
select decode(md5(s.id::text || t), 'hex'), s.id, s.expires_at, case when t < 3 then now() end
from sessions s, generate_series(1, 3) t;
insert into outbox (id, kind, recipient, subject, message_id, status, sent_at, next_attempt_at, created_at) values
  ('c0000000-0000-0000-0000-000000000001', 'verify_email', 'a@example.com', 's', '<1@x>', 'sent', now() - interval '8 days', now() - interval '8 days', now() - interval '8 days'),
  ('c0000000-0000-0000-0000-000000000002', 'verify_email', 'a@example.com', 's', '<2@x>', 'dead', null, now() - interval '8 days', now() - interval '9 days'),
  ('c0000000-0000-0000-0000-000000000003', 'verify_email', 'a@example.com', 's', '<3@x>', 'sent', now() - interval '6 days', now() - interval '6 days', now() - interval '6 days'),
  ('c0000000-0000-0000-0000-000000000004', 'verify_email', 'a@example.com', 's', '<4@x>', 'dead', null, now() - interval '6 days', now() - interval '7 days'),
  ('c0000000-0000-0000-0000-000000000005', 'verify_email', 'a@example.com', 's', '<5@x>', 'pending', null, now() - interval '30 days', now() - interval '30 days');
insert into email_tokens (token_hash, user_id, purpose, email, expires_at) values
  ('\\x01', '00000000-0000-0000-0000-0000000000aa', 'verify_email', 'kept@example.com', now() - interval '8 days'),
  ('\\x02', '00000000-0000-0000-0000-0000000000aa', 'reset_password', 'kept@example.com', now() - interval '6 days'),
  ('\\x03', '00000000-0000-0000-0000-0000000000aa', 'verify_email', 'kept@example.com', now() + interval '1 day');
";

async fn seed(url: &str) {
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    diesel::sql_query("begin").execute(&mut conn).await.unwrap();
    for statement in SEED.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
        diesel::sql_query(statement)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    diesel::sql_query("commit").execute(&mut conn).await.unwrap();
}

async fn ids(app: &TestApp, query: &str) -> String {
    text(
        app,
        &format!("select coalesce(string_agg(x, ',' order by x), '') as t from ({query}) q(x)"),
    )
    .await
}

fn small_batches() -> RetentionConfig {
    RetentionConfig {
        batch: 2,
        ..RetentionConfig::default()
    }
}

#[tokio::test]
async fn one_pass_deletes_exactly_the_rows_past_their_retention() {
    let app = TestApp::spawn().await;
    authgraph::metrics::install();
    seed(&app.db.url).await;

    let pruned = authgraph::retention::prune_once(&app.db.url, &small_batches())
        .await
        .unwrap()
        .expect("no other replica holds the lock");
    assert_eq!(
        pruned,
        Pruned {
            sessions: 7,
            refresh_tokens: 21,
            outbox: 2,
            email_tokens: 1,
            webhooks: 0,
        }
    );
    assert_eq!(
        ids(&app, "select id::text from sessions").await,
        "b0000000-0000-0000-0000-000000000001,b0000000-0000-0000-0000-000000000002,b0000000-0000-0000-0000-000000000003,\
         b0000000-0000-0000-0000-000000000004"
    );
    assert_eq!(count(&app, "select count(*) as n from refresh_tokens").await, 12);
    assert_eq!(
        count(
            &app,
            "select count(*) as n from refresh_tokens where session_id::text not like 'b%'"
        )
        .await,
        0
    );
    assert_eq!(
        ids(&app, "select id::text from outbox").await,
        "c0000000-0000-0000-0000-000000000003,c0000000-0000-0000-0000-000000000004,c0000000-0000-0000-0000-000000000005"
    );
    assert_eq!(
        ids(&app, "select encode(token_hash, 'hex') from email_tokens").await,
        "02,03"
    );
    assert_eq!(
        count(
            &app,
            &format!("select count(*) as n from users where id = '{USER}'")
        )
        .await,
        1,
        "users are never pruned"
    );

    let metrics = authgraph::metrics::render();
    for table in ["sessions", "refresh_tokens", "outbox", "email_tokens"] {
        assert!(
            metrics.contains(&format!(
                "authgraph_retention_pruned_rows_total{{table=\"{table}\"}}"
            )),
            "{table} missing from /metrics:\n{metrics}"
        );
    }

    let again = authgraph::retention::prune_once(&app.db.url, &small_batches())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, Pruned::default(), "a second pass finds nothing");
}

#[tokio::test]
async fn a_replica_finding_the_lock_taken_skips_its_pass() {
    let app = TestApp::spawn().await;
    seed(&app.db.url).await;
    let mut other = AsyncPgConnection::establish(&app.db.url).await.unwrap();
    diesel::sql_query(format!("select pg_advisory_lock({LOCK_KEY})"))
        .execute(&mut other)
        .await
        .unwrap();

    let skipped = authgraph::retention::prune_once(&app.db.url, &RetentionConfig::default())
        .await
        .unwrap();
    assert_eq!(skipped, None);
    assert_eq!(count(&app, "select count(*) as n from sessions").await, 11);

    // The holder going away (a replica that died mid-pass) frees the lock.
    drop(other);
    let pruned = authgraph::retention::prune_once(&app.db.url, &RetentionConfig::default())
        .await
        .unwrap();
    assert_eq!(pruned.map(|p| p.sessions), Some(7));
}

#[tokio::test]
async fn the_prune_queries_use_their_indexes() {
    let app = TestApp::spawn().await;
    let mut conn = AsyncPgConnection::establish(&app.db.url).await.unwrap();
    // An empty table is read whole whatever its indexes: plan as for a big one.
    diesel::sql_query("set enable_seqscan = off")
        .execute(&mut conn)
        .await
        .unwrap();
    for (query, index) in [
        (
            "select id from sessions where least(revoked_at, expires_hour, absolute_expires_at) < now() - interval '30 days' \
             and least(revoked_at, expires_at, absolute_expires_at) < now() - interval '30 days' limit 1000",
            "sessions_ended_at_idx",
        ),
        (
            "select ctid from outbox where status <> 'pending' and coalesce(sent_at, next_attempt_at) < now() - interval '7 days' limit 1000",
            "outbox_finished_at_idx",
        ),
        (
            "select ctid from email_tokens where expires_at < now() - interval '7 days' limit 1000",
            "email_tokens_expires_at_idx",
        ),
    ] {
        #[derive(diesel::QueryableByName)]
        struct Plan {
            #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
            line: String,
        }
        let plan: Vec<Plan> = diesel::sql_query(format!("explain {query}"))
            .load(&mut conn)
            .await
            .unwrap();
        let plan: Vec<String> = plan.into_iter().map(|p| p.line).collect();
        assert!(
            plan.iter().any(|line| line.contains(index)),
            "{query}\n{}",
            plan.join("\n")
        );
    }
}

#[tokio::test]
async fn serve_runs_the_job_and_stops_it_at_shutdown() {
    let db = TestDb::create();
    seed(&db.url).await;
    let mut service = Service::builder()
        .env("DATABASE_URL", &db.url)
        .env("RETENTION_INTERVAL", "1s")
        .spawn();
    let url = db.url.clone();
    eventually("the old sessions are pruned", || {
        let url = url.clone();
        async move {
            let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
            #[derive(diesel::QueryableByName)]
            struct N {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                n: i64,
            }
            diesel::sql_query("select count(*) as n from sessions")
                .get_result::<N>(&mut conn)
                .await
                .unwrap()
                .n
                == 4
        }
    })
    .await;
    let (_, metrics) = service.get("/metrics").await;
    assert!(
        metrics.contains("authgraph_retention_pruned_rows_total{table=\"sessions\"} 7"),
        "{metrics}"
    );
    service.sigterm();
    let status = service.wait_exit(Duration::from_secs(20)).expect("exited");
    assert!(status.success());
    let lines = service.json_lines();
    let pruned = lines
        .iter()
        .find(|l| l["message"] == "expired rows pruned")
        .expect("the pass is logged");
    assert_eq!(pruned["sessions"], 7);
    assert!(
        lines.iter().any(|l| l["message"] == "retention job stopped"),
        "{lines:?}"
    );
}
