//! Email: verification and reset end to end through a real SMTP socket, the outbox
//! through an outage, the circuit breaker, and several workers on one database.

use std::{collections::HashSet, time::Duration};

use authgraph::mail::BreakerState;
use serde_json::json;

use crate::support::{
    GRACE, ME_VERIFIED, PASSWORD, REGISTER, REQUEST_RESET, REQUEST_VERIFICATION, RESET, SmtpSink, TestApp,
    VERIFY, code, count, email, eventually, pending, start_worker, start_worker_on, text,
};

const NEW_PASSWORD: &str = "a brand new passphrase";

fn message_ids(messages: &[crate::support::Received]) -> HashSet<String> {
    messages.iter().map(|m| m.message_id()).collect()
}

#[tokio::test]
async fn registration_mails_a_link_that_verifies_the_email_once() {
    let sink = SmtpSink::start().await;
    let app = TestApp::builder().mail_to(&sink).spawn().await;
    let worker = start_worker(&app, |_| {});
    let address = email("verify");
    let payload = app.register(&address, PASSWORD).await;
    let access = payload["accessToken"].as_str().unwrap();

    let mail = sink.wait_for(1).await.remove(0);
    assert_eq!(mail.rcpt_to, vec![address.clone()]);
    assert_eq!(mail.subject(), "Confirm your email address");
    let token = mail.token("http://localhost:3000/verify-email");
    assert!(token.len() >= 43, "{token}");
    assert!(mail.html().contains(&format!("/verify-email?token={token}")));
    let stored_id = text(&app, "select message_id as t from outbox").await;
    assert_eq!(format!("<{}>", mail.message_id()), stored_id);

    let me = app.graphql_as(access, ME_VERIFIED, json!({})).await;
    assert_eq!(me["data"]["me"]["emailVerified"], false);
    let verified = app.graphql(VERIFY, json!({ "token": token })).await;
    assert_eq!(verified["data"]["verifyEmail"], true, "{verified}");
    let me = app.graphql_as(access, ME_VERIFIED, json!({})).await;
    assert_eq!(me["data"]["me"]["emailVerified"], true);

    let again = app.graphql(VERIFY, json!({ "token": token })).await;
    assert_eq!(code(&again), "INVALID_TOKEN");
    // Delivered mail keeps no token in the database.
    assert_eq!(
        count(
            &app,
            "select count(*) as n from outbox where body_text is not null or body_html is not null"
        )
        .await,
        0
    );
    worker.shutdown(GRACE).await;
}

#[tokio::test]
async fn a_newer_verification_link_voids_the_older_and_a_verified_user_gets_none() {
    let sink = SmtpSink::start().await;
    let app = TestApp::builder().mail_to(&sink).spawn().await;
    let worker = start_worker(&app, |_| {});
    let payload = app.register(&email("again"), PASSWORD).await;
    let access = payload["accessToken"].as_str().unwrap();
    let first = sink.wait_for(1).await[0].token("/verify-email");

    let requested = app.graphql_as(access, REQUEST_VERIFICATION, json!({})).await;
    assert_eq!(requested["data"]["requestEmailVerification"], true, "{requested}");
    let messages = sink.wait_for(2).await;
    let second = messages[1].token("/verify-email");
    assert_ne!(first, second);
    assert_ne!(messages[0].message_id(), messages[1].message_id());

    let old = app.graphql(VERIFY, json!({ "token": first })).await;
    assert_eq!(code(&old), "INVALID_TOKEN");
    let new = app.graphql(VERIFY, json!({ "token": second })).await;
    assert_eq!(new["data"]["verifyEmail"], true, "{new}");

    let requested = app.graphql_as(access, REQUEST_VERIFICATION, json!({})).await;
    assert_eq!(requested["data"]["requestEmailVerification"], true);
    assert_eq!(count(&app, "select count(*) as n from outbox").await, 2);
    worker.shutdown(GRACE).await;
}

#[tokio::test]
async fn requesting_verification_needs_an_access_token() {
    let app = TestApp::spawn().await;
    let body = app.graphql(REQUEST_VERIFICATION, json!({})).await;
    assert_eq!(code(&body), "UNAUTHENTICATED");
}

#[tokio::test]
async fn a_reset_link_sets_a_new_password_ends_every_session_and_verifies_the_email() {
    let sink = SmtpSink::start().await;
    let app = TestApp::builder().mail_to(&sink).spawn().await;
    let worker = start_worker(&app, |_| {});
    let address = email("reset");
    let payload = app.register(&address, PASSWORD).await;
    let access = payload["accessToken"].as_str().unwrap();
    let other_session = app.login(&address, PASSWORD).await;
    assert!(other_session["errors"].is_null(), "{other_session}");
    sink.wait_for(1).await;

    // A stale Authorization header is ignored by a mutation that needs no token.
    let requested = app
        .post(
            REQUEST_RESET,
            json!({ "email": address.to_uppercase() }),
            &[("authorization", "Bearer not-a-jwt")],
        )
        .await
        .body;
    assert_eq!(requested["data"]["requestPasswordReset"], true, "{requested}");
    let mail = sink.wait_for(2).await.remove(1);
    assert_eq!(mail.rcpt_to, vec![address.clone()]);
    assert_eq!(mail.subject(), "Reset your password");
    let token = mail.token("/reset-password");

    let reset = app
        .graphql(
            RESET,
            json!({ "input": { "token": token, "newPassword": NEW_PASSWORD } }),
        )
        .await;
    assert_eq!(reset["data"]["resetPassword"], true, "{reset}");

    let me = app.graphql_as(access, ME_VERIFIED, json!({})).await;
    assert_eq!(code(&me), "UNAUTHENTICATED", "the old session ended");
    assert_eq!(
        count(
            &app,
            "select count(*) as n from sessions where revoked_at is null"
        )
        .await,
        0
    );
    assert_eq!(code(&app.login(&address, PASSWORD).await), "INVALID_CREDENTIALS");
    let login = app.login(&address, NEW_PASSWORD).await;
    let access = login["data"]["login"]["accessToken"].as_str().unwrap();
    let me = app.graphql_as(access, ME_VERIFIED, json!({})).await;
    assert_eq!(me["data"]["me"]["emailVerified"], true);

    let again = app
        .graphql(
            RESET,
            json!({ "input": { "token": token, "newPassword": "yet another passphrase" } }),
        )
        .await;
    assert_eq!(code(&again), "INVALID_TOKEN");
    worker.shutdown(GRACE).await;
}

#[tokio::test]
async fn a_newer_reset_link_voids_the_older() {
    let app = TestApp::spawn().await;
    let address = email("twice");
    app.register(&address, PASSWORD).await;
    for _ in 0..2 {
        let body = app.graphql(REQUEST_RESET, json!({ "email": address })).await;
        assert_eq!(body["data"]["requestPasswordReset"], true);
    }
    assert_eq!(
        count(
            &app,
            "select count(*) as n from outbox where kind = 'reset_password'"
        )
        .await,
        2
    );
    assert_eq!(
        count(
            &app,
            "select count(*) as n from email_tokens where purpose = 'reset_password'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_reset_for_an_unknown_email_answers_true_and_queues_nothing() {
    let app = TestApp::spawn().await;
    let body = app
        .graphql(REQUEST_RESET, json!({ "email": email("nobody") }))
        .await;
    assert_eq!(body["data"]["requestPasswordReset"], true, "{body}");
    assert_eq!(count(&app, "select count(*) as n from outbox").await, 0);
    assert_eq!(count(&app, "select count(*) as n from email_tokens").await, 0);

    let bad = app
        .graphql(REQUEST_RESET, json!({ "email": "not an email" }))
        .await;
    assert_eq!(code(&bad), "BAD_USER_INPUT");
    assert_eq!(bad["errors"][0]["extensions"]["field"], "email");
}

#[tokio::test]
async fn token_mutations_name_the_offending_field_and_refuse_unknown_or_expired_tokens() {
    let app = TestApp::spawn().await;
    let body = app.graphql(VERIFY, json!({ "token": " " })).await;
    assert_eq!(code(&body), "BAD_USER_INPUT");
    assert_eq!(body["errors"][0]["extensions"]["field"], "token");
    let body = app.graphql(VERIFY, json!({ "token": "no-such-token" })).await;
    assert_eq!(code(&body), "INVALID_TOKEN");

    let reset = |token: &str, password: &str| json!({ "input": { "token": token, "newPassword": password } });
    let body = app.graphql(RESET, reset("", NEW_PASSWORD)).await;
    assert_eq!(body["errors"][0]["extensions"]["field"], "token");
    let body = app.graphql(RESET, reset("no-such-token", "short")).await;
    assert_eq!(code(&body), "BAD_USER_INPUT");
    assert_eq!(body["errors"][0]["extensions"]["field"], "newPassword");
    let body = app.graphql(RESET, reset("no-such-token", NEW_PASSWORD)).await;
    assert_eq!(code(&body), "INVALID_TOKEN");

    // An expired link is refused like an unknown one.
    let sink = SmtpSink::start().await;
    let app = TestApp::builder().mail_to(&sink).spawn().await;
    let worker = start_worker(&app, |_| {});
    let address = email("expired");
    app.register(&address, PASSWORD).await;
    app.graphql(REQUEST_RESET, json!({ "email": address })).await;
    let messages = sink.wait_for(2).await;
    app.sql("update email_tokens set expires_at = now() - interval '1 second'")
        .await;
    let body = app
        .graphql(VERIFY, json!({ "token": messages[0].token("/verify-email") }))
        .await;
    assert_eq!(code(&body), "INVALID_TOKEN");
    let body = app
        .graphql(RESET, reset(&messages[1].token("/reset-password"), NEW_PASSWORD))
        .await;
    assert_eq!(code(&body), "INVALID_TOKEN");
    worker.shutdown(GRACE).await;
}

#[tokio::test]
async fn a_failed_registration_queues_no_mail() {
    let app = TestApp::spawn().await;
    let address = email("once");
    app.register(&address, PASSWORD).await;
    let again = app
        .graphql(
            REGISTER,
            json!({ "input": { "email": address, "password": PASSWORD } }),
        )
        .await;
    assert_eq!(code(&again), "EMAIL_TAKEN");
    assert_eq!(count(&app, "select count(*) as n from outbox").await, 1);
}

#[tokio::test]
async fn an_smtp_outage_neither_fails_registrations_nor_loses_or_repeats_mail() {
    let sink = SmtpSink::start().await;
    sink.stop().await;
    let app = TestApp::builder().mail_to(&sink).spawn().await;
    let worker = start_worker(&app, |_| {});
    let addresses: Vec<String> = (0..5).map(|i| email(&format!("outage{i}"))).collect();
    for address in &addresses {
        app.register(address, PASSWORD).await;
    }
    // Delivery was tried (and failed) while the server was down.
    eventually("failed attempts", || async { worker.stats().failed >= 2 }).await;
    assert_eq!(sink.messages().len(), 0);

    sink.restart();
    eventually("an empty outbox", || async { pending(&app).await == 0 }).await;
    let messages = sink.messages();
    assert_eq!(messages.len(), 5, "every mail arrives exactly once");
    assert_eq!(message_ids(&messages).len(), 5);
    let received: HashSet<String> = messages.iter().flat_map(|m| m.rcpt_to.clone()).collect();
    assert_eq!(received, addresses.into_iter().collect());
    worker.shutdown(GRACE).await;
}

#[tokio::test]
async fn an_open_breaker_lets_only_probes_reach_the_smtp_server_and_a_probe_closes_it() {
    const THRESHOLD: u64 = 2;
    let sink = SmtpSink::start().await;
    sink.refuse(true);
    let app = TestApp::builder().mail_to(&sink).spawn().await;
    let worker = start_worker(&app, |mail| {
        mail.breaker_failures = THRESHOLD as u32;
        mail.breaker_open = Duration::from_millis(200);
        // Mail is always due again long before the breaker lets a probe out: only the
        // breaker holds the worker back.
        mail.retry_base = Duration::from_millis(1);
        mail.retry_max = Duration::from_millis(2);
    });
    for i in 0..4 {
        app.register(&email(&format!("breaker{i}")), PASSWORD).await;
    }
    eventually("three probes", || async { worker.stats().probes >= 3 }).await;
    // Connections are read before probes: each probe is counted before it connects.
    let connections = sink.connections() as u64;
    let stats = worker.stats();
    assert!(
        connections <= THRESHOLD + stats.probes,
        "{connections} connections, {stats:?}"
    );
    assert_ne!(worker.breaker_state(), BreakerState::Closed);
    assert_eq!(sink.messages().len(), 0);

    sink.refuse(false);
    let messages = sink.wait_for(4).await;
    eventually("an empty outbox", || async { pending(&app).await == 0 }).await;
    let stats = worker.stats();
    assert_eq!(worker.breaker_state(), BreakerState::Closed);
    // The first attempts until the breaker opened, then probes only, until the first
    // probe that found the server back closed it.
    assert_eq!(stats.failed, THRESHOLD + stats.probes - 1, "{stats:?}");
    assert_eq!(stats.sent, 4);
    assert_eq!(
        count(&app, "select sum(attempts)::bigint as n from outbox").await,
        i64::try_from(stats.failed).unwrap()
    );
    assert_eq!(message_ids(&messages).len(), 4);
    worker.shutdown(GRACE).await;
}

#[tokio::test]
async fn a_mail_is_marked_dead_after_the_last_attempt() {
    let sink = SmtpSink::start().await;
    sink.refuse(true);
    let app = TestApp::builder().mail_to(&sink).spawn().await;
    let worker = start_worker(&app, |mail| {
        mail.max_attempts = 3;
        mail.breaker_failures = 100;
        mail.retry_base = Duration::from_millis(1);
        mail.retry_max = Duration::from_millis(2);
    });
    app.register(&email("dead"), PASSWORD).await;
    eventually("a dead mail", || async {
        count(&app, "select count(*) as n from outbox where status = 'dead'").await == 1
    })
    .await;
    assert_eq!(
        count(&app, "select max(attempts)::bigint as n from outbox").await,
        3
    );
    assert_eq!(
        count(
            &app,
            "select count(*) as n from outbox where body_text is null and body_html is null"
        )
        .await,
        1
    );
    assert_eq!(text(&app, "select last_error as t from outbox").await, "smtp 421");
    assert_eq!(worker.stats().dead, 1);
    // Dead mail is never tried again.
    let connections = sink.connections();
    assert_eq!(connections, 3);
    worker.shutdown(GRACE).await;
    assert_eq!(sink.connections(), connections);
}

#[tokio::test]
async fn two_workers_on_one_database_deliver_a_batch_with_no_duplicates() {
    const BATCH: usize = 30;
    let sink = SmtpSink::start().await;
    let app = TestApp::builder().mail_to(&sink).spawn().await;
    app.sql(&format!(
        "insert into outbox (id, kind, recipient, subject, body_text, body_html, message_id)
         select gen_random_uuid(), 'verify_email', 'user' || i || '@example.com', 'batch',
                'text ' || i, '<p>html ' || i || '</p>', '<batch-' || i || '@example.com>'
         from generate_series(1, {BATCH}) as i"
    ))
    .await;
    // Two pools, as two replicas would have.
    let config = &app.state.config;
    let pool = |_| authgraph::db::pool(&app.db.url, 2, Duration::from_secs(5));
    let a = start_worker_on(pool(0), config, |_| {});
    let b = start_worker_on(pool(1), config, |_| {});
    eventually("an empty outbox", || async { pending(&app).await == 0 }).await;
    let (sa, sb) = (a.stats(), b.stats());
    a.shutdown(GRACE).await;
    b.shutdown(GRACE).await;

    let messages = sink.messages();
    assert_eq!(messages.len(), BATCH, "each mail exactly once");
    assert_eq!(message_ids(&messages).len(), BATCH);
    assert_eq!(sa.sent + sb.sent, BATCH as u64, "{sa:?} {sb:?}");
    assert_eq!(
        count(&app, "select count(*) as n from outbox where status = 'sent'").await,
        BATCH as i64
    );
}

#[tokio::test]
async fn shutdown_releases_a_mail_stuck_in_delivery_for_the_next_worker() {
    let sink = SmtpSink::start().await;
    sink.stall(true);
    let app = TestApp::builder().mail_to(&sink).spawn().await;
    let worker = start_worker(&app, |mail| mail.smtp_timeout = Duration::from_secs(60));
    app.register(&email("stuck"), PASSWORD).await;
    eventually("a delivery in flight", || async { sink.connections() == 1 }).await;
    assert_eq!(
        count(
            &app,
            "select count(*) as n from outbox where claimed_by is not null"
        )
        .await,
        1
    );
    worker.shutdown(Duration::from_millis(100)).await;
    assert_eq!(
        count(
            &app,
            "select count(*) as n from outbox
             where status = 'pending' and claimed_by is null and attempts = 0"
        )
        .await,
        1,
        "released, with no attempt counted"
    );

    sink.stall(false);
    let worker = start_worker(&app, |_| {});
    sink.wait_for(1).await;
    eventually("an empty outbox", || async { pending(&app).await == 0 }).await;
    assert_eq!(sink.messages().len(), 1);
    worker.shutdown(GRACE).await;
}
