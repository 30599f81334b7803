//! `--only retention`: `me` latency while the retention job prunes a million ended
//! sessions (and their refresh tokens), against the same load with them merely present.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use authgraph::config::RetentionConfig;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::load::{self, Op, Stats, Target};

/// Seeds `sessions` sessions that ended 60 days ago, each with one refresh token, spread
/// over the existing users.
async fn seed(db_url: &str, sessions: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut conn = AsyncPgConnection::establish(db_url).await?;
    for statement in [
        format!(
            "insert into sessions (user_id, created_at, last_used_at, expires_at, absolute_expires_at, \
             revoked_at, revoked_reason, amr, acr, auth_time) \
             select u.ids[1 + g % array_length(u.ids, 1)], now() - interval '100 days', \
             now() - interval '100 days', now() - interval '60 days', now() - interval '10 days', \
             now() - interval '60 days', 'bench', '{{pwd}}', 'aal1', now() - interval '100 days' \
             from generate_series(1, {sessions}) g, (select array_agg(id) as ids from users) u"
        ),
        "insert into refresh_tokens (token_hash, session_id, issued_at, expires_at) \
         select sha256(id::text::bytea), id, created_at, expires_at from sessions \
         where revoked_reason = 'bench'"
            .to_owned(),
        // Settled first, so neither measurement meets autovacuum's work on the insert.
        "vacuum analyze sessions, refresh_tokens".to_owned(),
        "checkpoint".to_owned(),
    ] {
        diesel::sql_query(statement).execute(&mut conn).await?;
    }
    println!(
        "seeded {sessions} ended sessions with a refresh token each in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Measures `me` at `rate` per second for `d` with the rows in place, then again while
/// one retention pass deletes them; prints both and the pass's pace.
pub async fn scenario(
    svc: &Target,
    db_url: &str,
    tokens: Arc<Vec<String>>,
    sessions: usize,
    rate: u32,
    d: Duration,
) -> anyhow::Result<(Stats, Stats)> {
    seed(db_url, sessions).await?;
    let quiet = load::paced(svc, Op::Me(tokens.clone()), rate, d).await?;
    println!("  {:<36} {}", format!("me @{rate}/s, rows present"), quiet.line());

    let url = db_url.to_owned();
    let started = Instant::now();
    let pass = tokio::spawn(async move {
        let pruned = authgraph::retention::prune_once(&url, &RetentionConfig::default()).await;
        (pruned, started.elapsed())
    });
    let during = load::paced(svc, Op::Me(tokens.clone()), rate, d).await?;
    println!(
        "  {:<36} {}",
        format!("me @{rate}/s, while pruning"),
        during.line()
    );
    let (pruned, took) = pass.await?;
    let pruned = pruned?.ok_or_else(|| anyhow::anyhow!("the retention lock was taken"))?;
    println!(
        "  pruned {} sessions and {} refresh tokens in {:.1}s ({:.0} rows/s){}",
        pruned.sessions,
        pruned.refresh_tokens,
        took.as_secs_f64(),
        pruned.total() as f64 / took.as_secs_f64(),
        if took < d {
            " (the pass ended before the measurement: its tail ran without pruning)"
        } else {
            ""
        }
    );
    Ok((quiet, during))
}
