//! The HTTP/1.1 server: accepts connections up to a cap and closes those that stall.
//! `axum::serve` has neither: a client that sends half a request head, half a body, or
//! nothing at all on a kept-alive connection holds its socket (and a file descriptor)
//! for ever, and a few thousand such sockets exhaust the process.
//!
//! Per connection:
//! - **header timeout**: a request head (the first one from the accept, the next ones
//!   from their first byte) must be complete within `header`;
//! - **body timeout**: a request body must arrive whole within `body` of its head; the
//!   handler then fails the read, answers 408 and the connection closes;
//! - **idle timeout**: a kept-alive connection with no request in flight and no byte
//!   sent or received for `idle` is closed.
//!
//! hyper's own `header_read_timeout` is not used: its timer also runs while a kept-alive
//! connection waits for the next request, so it would cut idle connections at the
//! header timeout and make a separate idle timeout impossible. A per-connection watchdog
//! reads the activity the socket wrapper and the service record instead.
//!
//! At most `max_connections` connections are open at once; past that the listener stops
//! accepting and new connections wait in the kernel's backlog. Connections that upgrade
//! (WebSockets) leave the HTTP timeouts and the cap once upgraded.

use std::{
    convert::Infallible,
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Body,
    extract::ConnectInfo,
    http::{Request, Response},
};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The timeouts and the connection cap (`HTTP_*` settings).
pub use crate::config::HttpServerLimits;

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting, lets
/// requests in flight finish and closes idle connections, and returns once every
/// connection is closed (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpServerLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let max = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX >> 3);
    let permits = Arc::new(Semaphore::new(max as usize));
    let stop = CancellationToken::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was
                    // accepted: neither is fatal. A pause keeps an exhausted process
                    // from spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched {
            inner: stream,
            activity: activity.clone(),
        });
        let service = hyper::service::service_fn({
            let router = router.clone();
            let activity = activity.clone();
            let body_timeout = limits.body_timeout;
            move |request: Request<Incoming>| {
                let router = router.clone();
                let in_flight = InFlight::begin(&activity);
                async move {
                    let mut request = request.map(|body| Body::new(Deadline::new(body, body_timeout)));
                    request.extensions_mut().insert(ConnectInfo(peer));
                    let response: Response<Body> =
                        router.oneshot(request).await.unwrap_or_else(|e| match e {});
                    drop(in_flight);
                    Ok::<_, Infallible>(response)
                }
            }
        });
        let stop = stop.clone();
        let http = http.clone();
        tokio::spawn(async move {
            // The slot is the connection's until it closes (or upgrades).
            let _permit = permit;
            let connection = http.serve_connection(io, service).with_upgrades();
            tokio::pin!(connection);
            let watchdog = activity.watch(limits);
            tokio::pin!(watchdog);
            let mut stopping = false;
            loop {
                tokio::select! {
                    served = connection.as_mut() => {
                        if let Err(e) = served {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    why = &mut watchdog => {
                        tracing::debug!(reason = why, "connection closed: stalled");
                        break;
                    }
                    // Finishes the request in flight, if any, then closes.
                    () = stop.cancelled(), if !stopping => {
                        stopping = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        });
    }
    drop(listener);
    stop.cancel();
    // Every connection holds a slot until it closes: having them all back means done.
    let _all_closed = permits.acquire_many(max).await;
    Ok(())
}

/// What a connection has done lately, in milliseconds since it was accepted.
struct Activity {
    start: Instant,
    /// The last byte read or written.
    last: AtomicU64,
    /// When the request head being read began (+1; 0 while none is being read).
    head_started: AtomicU64,
    /// Requests whose response is not ready yet.
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last: AtomicU64::new(0),
            // The first request's head is due from the accept: a connection that sends
            // nothing is a stalled head, not an idle keep-alive.
            head_started: AtomicU64::new(1),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn read(&self) {
        let now = self.now();
        self.last.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            // The first byte of a new request head.
            let _ = self
                .head_started
                .compare_exchange(0, now + 1, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    fn wrote(&self) {
        self.last.store(self.now(), Ordering::Relaxed);
    }

    /// Resolves (with the reason) once the connection has stalled past a limit.
    async fn watch(&self, limits: HttpServerLimits) -> &'static str {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let (header, idle) = (millis(limits.header_timeout), millis(limits.idle_timeout));
        // Fine enough that a limit is kept to within a quarter of the shortest one.
        let tick = (limits.header_timeout.min(limits.idle_timeout) / 4)
            .clamp(Duration::from_millis(5), Duration::from_secs(1));
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            // A request in flight is the handler's (and the body deadline's) business.
            if self.in_flight.load(Ordering::Relaxed) > 0 {
                continue;
            }
            let now = self.now();
            match self.head_started.load(Ordering::Relaxed) {
                0 if now.saturating_sub(self.last.load(Ordering::Relaxed)) >= idle => {
                    return "idle";
                }
                0 => {}
                started if now.saturating_sub(started - 1) >= header => return "request head too slow",
                _ => {}
            }
        }
    }
}

/// One request between its head being read and its response being ready.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.head_started.store(0, Ordering::Relaxed);
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.wrote();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The accepted socket, recording activity for the watchdog.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The error a request body gives once its deadline has passed; the handler answers
/// 408 for it.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimeout;

/// A request body that must arrive whole before a deadline (from its head).
struct Deadline {
    inner: Incoming,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Deadline {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        Self {
            inner,
            sleep: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl HttpBody for Deadline {
    type Data = axum::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimeout.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
