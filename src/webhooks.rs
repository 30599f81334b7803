//! The webhook worker: one task per endpoint claims that endpoint's due deliveries one
//! at a time, POSTs them signed (Standard Webhooks) through the endpoint's own circuit
//! breaker, and records the outcome (delivered, retry later, or dead).
//!
//! Beside `mail`, and built from its parts: the claim and lease rules of the outbox,
//! [`crate::mail::breaker`] and [`crate::mail::worker::backoff`]. A task per endpoint
//! means a slow or dead endpoint holds back only itself; nothing here runs on the
//! request path, which only inserts rows.

pub mod signature;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::{
    config::WebhookConfig,
    db::{self, DbPool, webhook_deliveries::ClaimedDelivery},
    mail::{
        breaker::{Admission, BreakerState, CircuitBreaker},
        worker::{backoff, random_unit},
    },
};

/// How long past `WEBHOOK_TIMEOUT` a claim lasts: time to record the outcome. A worker
/// that died mid-delivery has its delivery picked up by another once the claim lapses.
const CLAIM_MARGIN: Duration = Duration::from_secs(60);

/// Counts of what a worker did (all endpoints), for tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WebhookStats {
    /// Deliveries a receiver answered with 2xx.
    pub delivered: u64,
    /// Failed attempts (non-2xx, timeout, connection).
    pub failed: u64,
    /// Deliveries given up on.
    pub dead: u64,
}

#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    failed: AtomicU64,
    dead: AtomicU64,
}

/// A webhook worker, ready to [`spawn`](Worker::spawn). Any number of workers (in one
/// process or in several replicas) can share a database: each delivery is claimed by one.
pub struct Worker {
    pool: DbPool,
    config: Arc<WebhookConfig>,
}

/// A running worker: stop it with [`shutdown`](WorkerHandle::shutdown).
pub struct WorkerHandle {
    id: Uuid,
    pool: DbPool,
    stop: CancellationToken,
    abandon: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    breakers: Vec<Arc<CircuitBreaker>>,
    counters: Arc<Counters>,
}

/// One endpoint's loop and what it shares with the others.
struct Endpoint {
    /// The run's id, the claim owner (shared by its endpoint tasks).
    worker: Uuid,
    /// 1-based position in `WEBHOOK_ENDPOINTS`: the label in logs and metrics, since
    /// the URL may carry a token in its path or query.
    index: String,
    url: String,
    pool: DbPool,
    client: reqwest::Client,
    config: Arc<WebhookConfig>,
    breaker: Arc<CircuitBreaker>,
    counters: Arc<Counters>,
    abandon: CancellationToken,
}

/// What one attempt came to.
enum Outcome {
    Delivered,
    Failed(String),
}

impl Worker {
    /// A worker for the endpoints of `config`.
    pub fn new(pool: DbPool, config: &WebhookConfig) -> Self {
        Self {
            pool,
            config: Arc::new(config.clone()),
        }
    }

    /// Starts one task per endpoint on the current tokio runtime.
    pub fn spawn(self) -> anyhow::Result<WorkerHandle> {
        crate::auth::breach::install_tls_provider();
        let client = reqwest::Client::builder()
            .timeout(self.config.timeout)
            // A receiver that moved must be reconfigured: following a redirect would
            // re-send a signed event to wherever a compromised endpoint points.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("authgraph-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let id = Uuid::new_v4();
        let stop = CancellationToken::new();
        let abandon = CancellationToken::new();
        let counters = Arc::<Counters>::default();
        let mut tasks = Vec::new();
        let mut breakers = Vec::new();
        for (i, url) in self.config.endpoints.iter().enumerate() {
            let breaker = Arc::new(CircuitBreaker::new(
                self.config.breaker_failures,
                self.config.breaker_open,
            ));
            breakers.push(Arc::clone(&breaker));
            let endpoint = Endpoint {
                worker: id,
                index: (i + 1).to_string(),
                url: url.clone(),
                pool: self.pool.clone(),
                client: client.clone(),
                config: Arc::clone(&self.config),
                breaker,
                counters: Arc::clone(&counters),
                abandon: abandon.clone(),
            };
            tasks.push(tokio::spawn(endpoint.run(stop.clone())));
        }
        info!(worker.id = %id, endpoints = tasks.len(), "webhook worker started");
        Ok(WorkerHandle {
            id,
            pool: self.pool,
            stop,
            abandon,
            tasks,
            breakers,
            counters,
        })
    }
}

impl WorkerHandle {
    /// Stops the worker: no more claims, a delivery in flight gets `grace` to finish,
    /// and one unfinished then is released (no attempt counted) for another worker or
    /// the next start. The receiver may have seen it: it comes again with the same id.
    pub async fn shutdown(self, grace: Duration) {
        self.stop.cancel();
        let mut tasks = self.tasks;
        let all = futures_util::future::join_all(tasks.iter_mut());
        if tokio::time::timeout(grace, all).await.is_err() {
            self.abandon.cancel();
            futures_util::future::join_all(tasks).await;
        }
        match db::webhook_deliveries::release_claims(&self.pool, self.id).await {
            Ok(0) => {}
            Ok(n) => info!(count = n, "webhook worker released its claimed deliveries"),
            Err(e) => warn!(
                error = e,
                "webhook worker could not release its claims; they lapse on their own"
            ),
        }
        info!(worker.id = %self.id, "webhook worker stopped");
    }

    /// Each endpoint's breaker state now, in `WEBHOOK_ENDPOINTS` order.
    pub fn breaker_states(&self) -> Vec<BreakerState> {
        let now = Instant::now();
        self.breakers.iter().map(|b| b.state(now)).collect()
    }

    /// What the worker has done so far.
    pub fn stats(&self) -> WebhookStats {
        WebhookStats {
            delivered: self.counters.delivered.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
            dead: self.counters.dead.load(Ordering::Relaxed),
        }
    }
}

impl Endpoint {
    async fn run(self, stop: CancellationToken) {
        let mut db_down = false;
        while !stop.is_cancelled() {
            crate::metrics::webhook_breaker(&self.index, self.breaker.state(Instant::now()).as_str());
            let wait = match self.breaker.admit(Instant::now()) {
                Admission::Wait(d) => d,
                admission => match self.claim(&mut db_down).await {
                    Some(delivery) => {
                        self.deliver(delivery).await;
                        continue;
                    }
                    None => {
                        if admission == Admission::Probe {
                            self.breaker.probe_unused();
                        }
                        self.config.poll_interval
                    }
                },
            };
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn claim(&self, db_down: &mut bool) -> Option<ClaimedDelivery> {
        let lease = self.config.timeout + CLAIM_MARGIN;
        let claimed = match self.pool.get().await {
            Ok(mut conn) => db::webhook_deliveries::claim_next(&mut conn, &self.url, self.worker, lease)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(db::pool_error_message(&e)),
        };
        match claimed {
            Ok(found) => {
                if std::mem::take(db_down) {
                    info!(endpoint = %self.index, "webhook worker reaches the database again");
                }
                found
            }
            Err(e) => {
                if !std::mem::replace(db_down, true) {
                    warn!(endpoint = %self.index, error = %e, "webhook worker cannot reach the database; retrying");
                }
                None
            }
        }
    }

    /// One attempt at a claimed delivery, and its outcome recorded.
    async fn deliver(&self, delivery: ClaimedDelivery) {
        let outcome = tokio::select! {
            outcome = self.post(&delivery) => outcome,
            () = self.abandon.cancelled() => {
                // Shutting down: the claim is released by `shutdown`.
                info!(endpoint = %self.index, webhook.id = %delivery.event_id, "webhook delivery abandoned by shutdown; released");
                return;
            }
        };
        let error = match outcome {
            Outcome::Delivered => {
                if self.breaker.succeeded() {
                    info!(endpoint = %self.index, "webhook circuit breaker closed: the endpoint answers again");
                }
                self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                crate::metrics::webhook_delivery(&self.index, "delivered");
                debug!(endpoint = %self.index, webhook.id = %delivery.event_id, webhook.type = %delivery.kind, "webhook delivered");
                self.record_delivered(delivery.id).await;
                return;
            }
            Outcome::Failed(error) => error,
        };
        if self.breaker.failed(Instant::now()) {
            warn!(
                endpoint = %self.index, error = %error,
                open_for_ms = u64::try_from(self.config.breaker_open.as_millis()).unwrap_or(u64::MAX),
                "webhook circuit breaker open: deliveries to this endpoint paused, one probe per open period"
            );
        }
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
        crate::metrics::webhook_delivery(&self.index, "failed");
        let attempts = u32::try_from(delivery.attempts).unwrap_or(0).saturating_add(1);
        let Ok(mut conn) = self.pool.get().await else {
            warn!(endpoint = %self.index, "webhook worker cannot record a failed attempt; retried once its claim lapses");
            return;
        };
        let recorded = if attempts >= self.config.max_attempts {
            self.counters.dead.fetch_add(1, Ordering::Relaxed);
            crate::metrics::webhook_delivery(&self.index, "dead");
            warn!(
                endpoint = %self.index, webhook.id = %delivery.event_id, webhook.type = %delivery.kind,
                attempts, error = %error, "webhook dead: giving up after the last attempt"
            );
            db::webhook_deliveries::mark_dead(&mut conn, delivery.id, self.worker, &error).await
        } else {
            let delay = backoff(
                attempts,
                self.config.retry_base,
                self.config.retry_max,
                random_unit(),
            );
            debug!(
                endpoint = %self.index, webhook.id = %delivery.event_id, attempts, error = %error,
                retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                "webhook delivery failed; will retry"
            );
            db::webhook_deliveries::reschedule(&mut conn, delivery.id, self.worker, delay, &error).await
        };
        if let Err(e) = recorded {
            warn!(endpoint = %self.index, error = %e, "webhook worker cannot record a failed attempt; retried once its claim lapses");
        }
    }

    /// POSTs the stored body, signed for this attempt's timestamp (receivers refuse
    /// stale timestamps, so a retry is signed anew; its id and body are the same).
    async fn post(&self, delivery: &ClaimedDelivery) -> Outcome {
        let timestamp = chrono::Utc::now().timestamp();
        let signature = signature::sign(
            self.config.secret.bytes(),
            &delivery.event_id,
            timestamp,
            &delivery.payload,
        );
        let sent = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("webhook-id", &delivery.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(delivery.payload.clone())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => Outcome::Delivered,
            Ok(response) => Outcome::Failed(format!("http {}", response.status().as_u16())),
            Err(e) if e.is_timeout() => Outcome::Failed("timeout".to_owned()),
            Err(e) if e.is_connect() => Outcome::Failed("connection".to_owned()),
            Err(_) => Outcome::Failed("request".to_owned()),
        }
    }

    /// Marks a delivery delivered. A record lost (the database away) means the
    /// delivery is sent again once its claim lapses, with the same `webhook-id`.
    async fn record_delivered(&self, id: Uuid) {
        let result = match self.pool.get().await {
            Ok(mut conn) => db::webhook_deliveries::mark_delivered(&mut conn, id, self.worker)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(db::pool_error_message(&e)),
        };
        match result {
            Ok(true) => {}
            Ok(false) => {
                warn!(endpoint = %self.index, "webhook claim lapsed before its outcome was recorded")
            }
            Err(e) => {
                warn!(endpoint = %self.index, error = %e, "webhook worker cannot record a delivery; it is sent again once its claim lapses")
            }
        }
    }
}
