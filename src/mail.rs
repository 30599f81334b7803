//! Mail: composing the verification and reset mails that `auth` writes to the outbox,
//! and the worker that delivers the outbox over SMTP (lettre) through a circuit breaker.
//!
//! A mail row is inserted in the transaction of the change that causes it, so it exists
//! if and only if that change committed; the worker sends it later, at least once, with
//! a Message-ID fixed at insert so a resend after an ambiguous failure is recognisable.

pub mod breaker;
pub mod compose;
pub mod worker;

pub use breaker::{BreakerState, CircuitBreaker};
pub use compose::Composer;
pub use worker::{Worker, WorkerHandle, WorkerStats};
