//! `eventually`: waiting for something another task, process or server does on its own time.

use std::{
    future::IntoFuture,
    pin::Pin,
    time::{Duration, Instant},
};

/// How long a test waits for what should happen promptly (a mail sent, a row pruned).
pub const WAIT: Duration = Duration::from_secs(30);

/// Waits until `check` holds, for at most [`WAIT`] unless `.within(limit)` says otherwise;
/// panics naming `what` when it does not:
/// `eventually("an empty outbox", || async { pending(&app).await == 0 }).await`.
pub fn eventually<'a, F, Fut>(what: &'a str, check: F) -> Eventually<'a, F>
where
    F: FnMut() -> Fut + 'a,
    Fut: Future<Output = bool> + 'a,
{
    Eventually {
        what,
        check,
        limit: WAIT,
    }
}

/// A wait from [`eventually`]; runs when awaited.
#[must_use = "a wait does nothing until it is awaited"]
pub struct Eventually<'a, F> {
    what: &'a str,
    check: F,
    limit: Duration,
}

impl<F> Eventually<'_, F> {
    /// Waits at most `limit` instead of [`WAIT`].
    pub fn within(mut self, limit: Duration) -> Self {
        self.limit = limit;
        self
    }
}

impl<'a, F, Fut> IntoFuture for Eventually<'a, F>
where
    F: FnMut() -> Fut + 'a,
    Fut: Future<Output = bool> + 'a,
{
    type Output = ();
    type IntoFuture = Pin<Box<dyn Future<Output = ()> + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        let Self {
            what,
            mut check,
            limit,
        } = self;
        Box::pin(async move {
            let deadline = Instant::now() + limit;
            // Quick conditions are seen within milliseconds; slow ones (a server starting, a
            // failover) are not polled harder than five times a second.
            let mut pause = Duration::from_millis(10);
            while !check().await {
                assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(200));
            }
        })
    }
}
