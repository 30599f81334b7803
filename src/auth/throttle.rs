// Over 400 lines on purpose: one throttle's rules, counter keys and counting, used together.
//! Attempt throttling shared by every replica: counters in PostgreSQL, taken under row
//! locks so concurrent attempts never slip past a limit together (ASVS 15.4.2), with
//! waits that double past the limit (NIST 800-63B 5.2.2).
//!
//! An attempt is counted *before* the work it guards (a password check, a mail, a token
//! lookup) and given back or cleared when that work succeeds, so an attacker cannot
//! race the count. Login is keyed three ways:
//! - per account and address, with a low limit: a guesser on one address stalls fast;
//! - per account, with a limit far above what one address can reach, so a flood from
//!   one address never slows the owner down elsewhere (ASVS 6.1.1 malicious lockout);
//! - per address, against one address spraying many accounts.
//!
//! Address limits hit bystanders: everyone behind one NAT, one /64, or every client when
//! `TRUSTED_PROXIES` is missing shares a count. So a browser that signed in to the
//! account before (it holds a device token, OWASP's "device cookie") is counted on its
//! own device counter instead of the two address counters; the per-account limit always
//! applies. Refresh and mailed tokens (256 random bits: unguessable) are refused for
//! their address's failures only when they are unusable themselves.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use tracing::{debug, warn};

use super::{AuthError, ClientInfo, input::Email};
use crate::{
    config::{ThrottleConfig, ThrottleRule},
    db::{
        self, DbPool,
        throttle::{Settlement, Taken},
    },
};

/// One in this many attempts also deletes expired counters.
const PRUNE_EVERY: u64 = 256;

/// What a counter limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// Failed logins on one account from one address.
    LoginAccountAddress,
    /// Failed logins on one account from anywhere.
    LoginAccount,
    /// Failed logins from one address on any account.
    LoginAddress,
    /// Failed logins on one account from one browser that signed in to it before.
    LoginDevice,
    /// Registrations from one address.
    RegisterAddress,
    /// Verification and reset mail requests from one address.
    EmailAddress,
    /// Verification and reset mail requests for one email address.
    EmailRecipient,
    /// Unusable refresh, verification or reset tokens from one address.
    TokenAddress,
}

/// What a success does to the counters it was counted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OnSuccess {
    /// The right password ends the count: it was the owner.
    Clear,
    /// Only the successful attempt is given back: others behind the same address
    /// may still be guessing.
    Refund,
    /// Every attempt counts, successful or not (registrations, mails).
    Keep,
}

impl Limit {
    /// The key prefix, also used in logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::LoginAccountAddress => "login.account_address",
            Self::LoginAccount => "login.account",
            Self::LoginAddress => "login.address",
            Self::LoginDevice => "login.device",
            Self::RegisterAddress => "register.address",
            Self::EmailAddress => "email.address",
            Self::EmailRecipient => "email.recipient",
            Self::TokenAddress => "token.address",
        }
    }

    fn on_success(self) -> OnSuccess {
        match self {
            Self::LoginAccountAddress | Self::LoginAccount | Self::LoginDevice => OnSuccess::Clear,
            Self::LoginAddress | Self::TokenAddress => OnSuccess::Refund,
            Self::RegisterAddress | Self::EmailAddress | Self::EmailRecipient => OnSuccess::Keep,
        }
    }

    fn rule(self, rules: &ThrottleConfig) -> Option<ThrottleRule> {
        match self {
            Self::LoginAccountAddress => rules.login_account_address,
            Self::LoginAccount => rules.login_account,
            Self::LoginAddress => rules.login_address,
            Self::LoginDevice => rules.login_device,
            Self::RegisterAddress => rules.register_address,
            Self::EmailAddress => rules.email_address,
            Self::EmailRecipient => rules.email_recipient,
            Self::TokenAddress => rules.token_address,
        }
    }
}

/// Who an attempt is counted against: an account (by email), an address, or both.
#[derive(Clone, Debug)]
pub enum Subject<'a> {
    /// An email address, known or not (both count alike, so counts reveal nothing).
    Email(&'a Email),
    /// A client address.
    Address(IpAddr),
    /// An email address tried from a client address.
    EmailFrom(&'a Email, IpAddr),
    /// A device token, by its random id.
    Device(uuid::Uuid),
}

impl Subject<'_> {
    fn key(&self, limit: Limit) -> String {
        match self {
            Self::Email(email) => format!("{}:{}", limit.name(), email_digest(email)),
            Self::Address(ip) => format!("{}:{}", limit.name(), address(*ip)),
            Self::EmailFrom(email, ip) => {
                format!("{}:{}@{}", limit.name(), email_digest(email), address(*ip))
            }
            Self::Device(id) => format!("{}:{}", limit.name(), id.simple()),
        }
    }
}

/// Emails are kept out of the table: their SHA-256 is the subject.
fn email_digest(email: &Email) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, email.as_str().as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The addresses one client holds: an IPv4 address as is (IPv4-mapped IPv6 included);
/// an IPv6 address as its /64, the block one subscriber gets, so rotating through it
/// resets no per-client count. The HTTP limit keys on it too.
pub fn subscriber_block(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

/// The counter key of a client address: its [`subscriber_block`], written out.
pub fn address(ip: IpAddr) -> String {
    match subscriber_block(ip) {
        IpAddr::V6(block) => format!("{block}/64"),
        v4 => v4.to_string(),
    }
}

/// Attempt limits over the shared counters.
#[derive(Clone)]
pub struct Throttle {
    db: DbPool,
    rules: Arc<ThrottleConfig>,
    taken: Arc<AtomicU64>,
}

/// A counted attempt. Dropping it leaves it counted (a failure); call
/// [`Attempt::succeeded`] when the guarded work succeeded.
#[must_use = "an attempt stays counted as a failure unless `succeeded` is called"]
pub struct Attempt {
    throttle: Throttle,
    counted: Vec<(Limit, ThrottleRule, String)>,
    /// The limits this attempt made wait (for the `login.locked` audit event).
    locked: Vec<Limit>,
}

impl Throttle {
    /// Throttles with `rules` over the counters in `db`.
    pub fn new(db: DbPool, rules: ThrottleConfig) -> Self {
        Self {
            db,
            rules: Arc::new(rules),
            taken: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A login: per account and address, per account, per address; or, from a browser
    /// holding a device token of this account (`device`, its id), per account and per
    /// device, so the address's failures (a NAT neighbour spraying) do not lock it out.
    /// The device keeps its own count, so a stolen device token buys a handful of
    /// guesses, and the account's limit holds whatever the device.
    pub async fn login(
        &self,
        email: &Email,
        client: &ClientInfo,
        device: Option<uuid::Uuid>,
    ) -> Result<Attempt, AuthError> {
        self.attempt(&login_subjects(email, client, device)).await
    }

    /// [`Throttle::login`] on the caller's connection, so the count goes out pipelined
    /// with the caller's own query; [`Counted::judge`] then decides. Without a device
    /// token the subjects do not depend on the account, so login counts this way
    /// together with its account lookup.
    pub async fn count_login(
        &self,
        conn: &AsyncPgConnection,
        email: &Email,
        client: &ClientInfo,
        device: Option<uuid::Uuid>,
    ) -> Result<Counted, AuthError> {
        self.count_on(conn, &login_subjects(email, client, device)).await
    }

    /// Clears the login counts of `email` (and from the client's address) without counting
    /// an attempt: a sign-in that proved the account's owner by other means than a
    /// password (a passkey) ends the count as the right password does.
    pub async fn clear_login(&self, email: &Email, client: &ClientInfo) {
        let mut subjects = vec![(Limit::LoginAccount, Subject::Email(email))];
        if let Some(ip) = client.ip {
            subjects.push((Limit::LoginAccountAddress, Subject::EmailFrom(email, ip)));
        }
        let counted = subjects
            .iter()
            .filter_map(|(limit, subject)| Some((*limit, limit.rule(&self.rules)?, subject.key(*limit))))
            .collect();
        Attempt {
            throttle: self.clone(),
            counted,
            locked: Vec::new(),
        }
        .succeeded()
        .await;
    }

    /// A registration: per address.
    pub async fn register(&self, client: &ClientInfo) -> Result<Attempt, AuthError> {
        self.by_address(Limit::RegisterAddress, client).await
    }

    /// A verification or reset mail request: per recipient and per address.
    pub async fn mail_request(&self, email: &Email, client: &ClientInfo) -> Result<Attempt, AuthError> {
        let mut subjects = vec![(Limit::EmailRecipient, Subject::Email(email))];
        if let Some(ip) = client.ip {
            subjects.push((Limit::EmailAddress, Subject::Address(ip)));
        }
        self.attempt(&subjects).await
    }

    /// A refresh, verification or reset token presented: the address's wait is read
    /// now, but applies only if the token proves unusable ([`TokenCheck::settle`]). A
    /// valid token (256 random bits: nobody guesses one) is never refused for what others
    /// behind the same address did. The read is plain, with no lock and no write: good
    /// tokens, nearly all of them, never queue behind one another on a counter row.
    pub async fn token(&self, client: &ClientInfo) -> Result<TokenCheck, AuthError> {
        let check = self.token_check(client);
        if let Some(key) = check.key() {
            let conn = self.db.get().await?;
            check.note_wait(db::throttle::locked_until(&conn, key).await?);
        }
        Ok(check)
    }

    /// [`Throttle::token`] without its read, for a caller that pipelines
    /// `db::throttle::locked_until(key)` with its own first query and then calls
    /// [`TokenCheck::note_wait`] with the answer.
    pub fn token_check(&self, client: &ClientInfo) -> TokenCheck {
        let ip = match (self.rules.token_address, client.ip) {
            (Some(_), Some(ip)) => Some(ip),
            _ => None,
        };
        TokenCheck {
            throttle: self.clone(),
            key: ip.map(|ip| Subject::Address(ip).key(Limit::TokenAddress)),
            ip,
            waiting_until: std::sync::Mutex::new(None),
        }
    }

    async fn by_address(&self, limit: Limit, client: &ClientInfo) -> Result<Attempt, AuthError> {
        match client.ip {
            Some(ip) => self.attempt(&[(limit, Subject::Address(ip))]).await,
            None => Ok(self.nothing_counted()),
        }
    }

    fn nothing_counted(&self) -> Attempt {
        Attempt {
            throttle: self.clone(),
            counted: Vec::new(),
            locked: Vec::new(),
        }
    }

    /// Counts one attempt against every subject, or refuses with `RATE_LIMITED` when any
    /// of them is waiting (then nothing is counted). Limits that are off are skipped.
    pub async fn attempt(&self, subjects: &[(Limit, Subject<'_>)]) -> Result<Attempt, AuthError> {
        if subjects
            .iter()
            .all(|(limit, _)| limit.rule(&self.rules).is_none())
        {
            return Ok(self.nothing_counted());
        }
        let conn = self.db.get().await?;
        self.count_on(&conn, subjects).await?.judge()
    }

    /// The count of [`Throttle::attempt`] on `conn`, in one statement
    /// ([`db::throttle::Count`]), not judged yet.
    async fn count_on(
        &self,
        conn: &AsyncPgConnection,
        subjects: &[(Limit, Subject<'_>)],
    ) -> Result<Counted, AuthError> {
        let counted: Vec<(Limit, ThrottleRule, String)> = subjects
            .iter()
            .filter_map(|(limit, subject)| Some((*limit, limit.rule(&self.rules)?, subject.key(*limit))))
            .collect();
        let query = db::throttle::Count::new(counted.iter().map(|(_, rule, key)| (key.as_str(), rule)));
        let rows = db::throttle::count(conn, &query).await?;
        if !rows.is_empty() && self.taken.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            match db::throttle::prune(conn).await {
                Ok(n) => debug!(pruned = n, "expired attempt counters deleted"),
                Err(e) => debug!(error = %e, "pruning attempt counters failed"),
            }
        }
        Ok(Counted {
            throttle: self.clone(),
            counted,
            rows,
        })
    }
}

/// The subjects of a login (see [`Throttle::login`]).
fn login_subjects<'a>(
    email: &'a Email,
    client: &ClientInfo,
    device: Option<uuid::Uuid>,
) -> Vec<(Limit, Subject<'a>)> {
    let mut subjects = vec![(Limit::LoginAccount, Subject::Email(email))];
    match (device, client.ip) {
        (Some(id), _) => subjects.push((Limit::LoginDevice, Subject::Device(id))),
        (None, Some(ip)) => {
            subjects.push((Limit::LoginAccountAddress, Subject::EmailFrom(email, ip)));
            subjects.push((Limit::LoginAddress, Subject::Address(ip)));
        }
        (None, None) => {}
    }
    subjects
}

/// An attempt the database has counted or refused, not judged yet: judging logs, so a
/// caller that pipelined the count records what it learnt alongside (the account) first.
#[must_use = "`judge` turns the count into the attempt or its refusal"]
pub struct Counted {
    throttle: Throttle,
    counted: Vec<(Limit, ThrottleRule, String)>,
    rows: Vec<Taken>,
}

impl Counted {
    /// The counted [`Attempt`], or `RATE_LIMITED` with the longest wait of the keys that
    /// refused it.
    pub fn judge(self) -> Result<Attempt, AuthError> {
        let refusal = self
            .rows
            .iter()
            .filter(|row| !row.counted)
            .filter_map(|row| {
                // A wait started while the statement ran is not known: retry in a second.
                let wait = remaining_wait(row).unwrap_or_default();
                Some((wait, limit_of(&self.counted, &row.key)?))
            })
            .max_by_key(|(wait, _)| *wait);
        if let Some((wait, limit)) = refusal {
            let retry_after = retry_after(wait);
            crate::metrics::throttle_hit(limit.name());
            warn!(
                limit = limit.name(),
                retry_after, "attempt refused: too many attempts"
            );
            return Err(AuthError::RateLimited { retry_after });
        }
        let mut locked = Vec::new();
        for row in &self.rows {
            let (Some(wait), Some(limit)) = (remaining_wait(row), limit_of(&self.counted, &row.key)) else {
                continue;
            };
            locked.push(limit);
            warn!(
                limit = limit.name(),
                wait_s = wait.as_secs(),
                "attempt limit reached: waiting"
            );
        }
        Ok(Attempt {
            throttle: self.throttle,
            counted: self.counted,
            locked,
        })
    }
}

/// A token attempt, not counted yet: [`TokenCheck::settle`] decides with its outcome.
#[must_use = "call `settle` with the outcome so unusable tokens are counted"]
pub struct TokenCheck {
    throttle: Throttle,
    ip: Option<IpAddr>,
    key: Option<String>,
    waiting_until: std::sync::Mutex<Option<DateTime<Utc>>>,
}

impl TokenCheck {
    /// The counter to read for [`TokenCheck::note_wait`], when the limit is on.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// Records the counter's wait, read for [`TokenCheck::key`].
    pub fn note_wait(&self, locked_until: Option<DateTime<Utc>>) {
        *self
            .waiting_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = locked_until;
    }

    /// Applies the address's wait to the outcome and counts an unusable token. A usable
    /// token passes whatever the address did. An unknown or expired one, while the
    /// address waits, becomes `RATE_LIMITED` and is not counted again. A reused one stays
    /// `TOKEN_REUSED`: its session is already revoked, and the owner must hear why.
    pub async fn settle<T>(self, outcome: Result<T, AuthError>) -> Result<T, AuthError> {
        let Some(ip) = self.ip else { return outcome };
        if !matches!(outcome, Err(AuthError::InvalidToken | AuthError::TokenReused)) {
            return outcome;
        }
        let now = Utc::now();
        let waiting = self
            .waiting_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .filter(|until| *until > now);
        if let Some(until) = waiting {
            if matches!(outcome, Err(AuthError::InvalidToken)) {
                let retry_after = retry_after((until - now).to_std().unwrap_or_default());
                crate::metrics::throttle_hit(Limit::TokenAddress.name());
                warn!(
                    limit = Limit::TokenAddress.name(),
                    client.address = %ip,
                    retry_after,
                    "attempt refused: too many unusable tokens from this address"
                );
                return Err(AuthError::RateLimited { retry_after });
            }
            return outcome;
        }
        let counted = self
            .throttle
            .attempt(&[(Limit::TokenAddress, Subject::Address(ip))])
            .await;
        // The counted attempt is dropped as a failure, which is what it is. A refusal at
        // this point changes nothing: the attempt already failed; it starts the wait.
        drop(counted);
        outcome
    }
}

impl Attempt {
    /// Whether this attempt made the account wait (per account, or per account and
    /// address): a lockout worth an audit event.
    pub fn locked_account(&self) -> bool {
        self.locked
            .iter()
            .any(|l| matches!(l, Limit::LoginAccount | Limit::LoginAccountAddress))
    }

    /// The guarded work succeeded: a right password clears its account's counts, a good
    /// token gives its attempt back. Failing to record this is logged, not returned:
    /// the caller has already succeeded. A caller with a transaction of its own uses
    /// [`Attempt::settle_in`] instead.
    pub async fn succeeded(self) {
        let settlement = self.settlement();
        if settlement.is_empty() {
            return;
        }
        let result = async {
            let conn = self.throttle.db.get().await.map_err(AuthError::from)?;
            settlement.apply(&conn).await?;
            Ok::<_, AuthError>(())
        }
        .await;
        if let Err(e) = result {
            warn!(error = %e, "could not record a successful attempt");
        }
    }

    /// [`Attempt::succeeded`] inside the caller's transaction on `conn`, pipelined with
    /// `work` (the caller's own writes): the clear goes first, `work` next, and the
    /// refund of a shared address counter last, so that row stays locked the shortest
    /// time before COMMIT. The counts then change if and only if the caller's writes
    /// commit, with no commit of their own; a failure fails the transaction.
    pub async fn settle_in<T>(
        self,
        conn: &AsyncPgConnection,
        work: impl Future<Output = Result<T, AuthError>>,
    ) -> Result<T, AuthError> {
        let settlement = self.settlement();
        let (_, done, _) = tokio::try_join!(
            async { settlement.clear(conn).await.map_err(AuthError::from) },
            work,
            async { settlement.refund(conn).await.map_err(AuthError::from) },
        )?;
        Ok(done)
    }

    /// What success does to the counters this attempt was counted on.
    fn settlement(&self) -> Settlement {
        let mut settlement = Settlement::default();
        for (limit, rule, key) in &self.counted {
            match limit.on_success() {
                OnSuccess::Clear => settlement.clear.push(key.clone()),
                OnSuccess::Refund => settlement
                    .refund
                    .push((key.clone(), i32::try_from(rule.free).unwrap_or(i32::MAX))),
                OnSuccess::Keep => {}
            }
        }
        settlement
    }
}

fn limit_of(counted: &[(Limit, ThrottleRule, String)], key: &str) -> Option<Limit> {
    counted
        .iter()
        .find(|(_, _, k)| k == key)
        .map(|(limit, _, _)| *limit)
}

/// How long a counter still refuses attempts, by the database's clock.
fn remaining_wait(row: &Taken) -> Option<Duration> {
    let until = row.locked_until.filter(|until| *until > row.now)?;
    (until - row.now).to_std().ok()
}

/// Whole seconds to wait, rounded up, at least one.
fn retry_after(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests;
