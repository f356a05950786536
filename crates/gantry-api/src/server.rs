//! The listener: HTTP/1.1 connections served with limits, so that no client can hold the
//! server's resources forever.
//!
//! - **Connections** are capped ([`Limits::max_connections`]): a connection beyond the cap is
//!   answered `503 Service Unavailable` (which AWS SDKs retry with backoff) and closed at once.
//! - **Headers** must arrive within [`Limits::header_read_timeout`] of the connection's start or
//!   of the end of the last answer, or the connection is closed; the same timeout closes a
//!   kept-alive connection that sends nothing more. Each connection has one timer for this,
//!   re-armed once per timeout at most ([`serve_connection`]), instead of hyper's own header
//!   timeout, which arms and cancels a timer on every request (about 1,500 instructions, a
//!   tenth of what the front door itself does for a request).
//! - **Bodies** are read by the front door with a size limit per protocol and
//!   [`Limits::body_read_timeout`] (see `front.rs`).

use crate::App;
use crate::reply::Reply;
use futures_util::FutureExt as _;
use futures_util::future::Either;
use futures_util::task::AtomicWaker;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

/// How much of the server one client may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections at once. The default leaves room for a 10,000-instance fleet, each agent
    /// holding one long poll.
    pub max_connections: usize,
    /// From the first byte of a request (or the end of the last one) to the end of its headers.
    pub header_read_timeout: Duration,
    /// From the end of the headers to the end of the body.
    pub body_read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 16_384,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(30),
        }
    }
}

const OVERLOADED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n\
retry-after: 1\r\nconnection: close\r\ncontent-length: 40\r\n\r\nToo many open connections; retry later.\n";

/// How each connection is served: HTTP/1.1 with keep-alive. The header timeout is
/// [`serve_connection`]'s, not hyper's (hyper would arm it when given a timer).
fn connection_builder() -> http1::Builder {
    let mut b = http1::Builder::new();
    b.header_read_timeout(None).keep_alive(true);
    b
}

/// Serves one connection with `service` until it closes, it waits past the header timeout
/// for a request, or `stop` completes (then it finishes the request in flight and closes). The
/// bench's `hyper_floor` example serves its connections with this too.
pub async fn serve_connection<S, B>(
    stream: TcpStream,
    service: S,
    limits: &Limits,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), hyper::Error>
where
    S: hyper::service::Service<hyper::Request<Incoming>, Response = hyper::Response<B>> + Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let idle = Arc::new(Idle::new());
    // The header timeout and `stop` are watched by a task of their own, which signals this one:
    // polled here, beside the connection, they would cost on every request (the timer's poll
    // and the stop channel's registration, about 700 instructions).
    let watchdog = tokio::spawn(watch(idle.clone(), limits.header_read_timeout, stop));
    let service = Watched { inner: service, idle: idle.clone() };
    // ECS Exec's session streams are upgraded connections (exec.rs).
    let conn = connection_builder().serve_connection(TokioIo::new(stream), service).with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let served = tokio::select! {
        biased;
        r = conn.as_mut() => r,
        signal = idle.signaled() => {
            if signal == STOP {
                conn.as_mut().graceful_shutdown();
                conn.await
            } else {
                tracing::debug!("connection closed: no request within the header timeout");
                Ok(())
            }
        }
    };
    watchdog.abort();
    served
}

/// What the watchdog signals: the server stops, or the connection waited past the timeout.
const STOP: u8 = 1;
const IDLE: u8 = 2;

/// A connection's watchdog: signals [`IDLE`] once it has waited `timeout` for a request, or
/// [`STOP`] when `stop` completes.
async fn watch(idle: Arc<Idle>, timeout: Duration, stop: impl Future<Output = ()>) {
    let signal = tokio::select! {
        () = idle.past(timeout) => IDLE,
        () = stop => STOP,
    };
    idle.signal.store(signal, Ordering::Release);
    idle.waker.wake();
}

/// When a connection began to wait for its next request (its start, or the end of its last
/// answer), and how many of its requests are in flight. Its clock is Tokio's, as its timer's.
struct Idle {
    base: Instant,
    /// Nanoseconds from `base`.
    since: AtomicU64,
    in_flight: AtomicUsize,
    /// The watchdog's signal (0 until it has one), and the connection's task to wake for it.
    signal: AtomicU8,
    waker: AtomicWaker,
}

impl Idle {
    fn new() -> Idle {
        Idle {
            base: Instant::now(),
            since: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            signal: AtomicU8::new(0),
            waker: AtomicWaker::new(),
        }
    }

    /// The watchdog's signal, once it has one.
    fn signaled(&self) -> impl Future<Output = u8> + '_ {
        std::future::poll_fn(|cx| {
            if let s @ 1.. = self.signal.load(Ordering::Acquire) {
                return std::task::Poll::Ready(s);
            }
            self.waker.register(cx.waker());
            match self.signal.load(Ordering::Acquire) {
                0 => std::task::Poll::Pending,
                s => std::task::Poll::Ready(s),
            }
        })
    }

    fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    fn end(&self) {
        self.since.store(self.base.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// When the connection is to be closed if nothing arrives: `timeout` after it began to
    /// wait, or none while a request is in flight.
    fn deadline(&self, timeout: Duration) -> Option<Instant> {
        (self.in_flight.load(Ordering::Relaxed) == 0)
            .then(|| self.base + Duration::from_nanos(self.since.load(Ordering::Relaxed)) + timeout)
    }

    /// Completes once the connection has waited `timeout` for a request: one timer, re-armed
    /// when it fires early (a request came and went, or one is in flight).
    async fn past(&self, timeout: Duration) {
        let sleep = tokio::time::sleep(timeout);
        let mut sleep = std::pin::pin!(sleep);
        loop {
            sleep.as_mut().await;
            let now = Instant::now();
            match self.deadline(timeout) {
                Some(at) if at <= now => return,
                Some(at) => sleep.as_mut().reset(at),
                None => sleep.as_mut().reset(now + timeout),
            }
        }
    }
}

/// A request in flight, until its answer's body is dropped (sent, or the connection gone).
struct InFlight(Arc<Idle>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// A service whose requests are counted in flight until their answers are sent.
struct Watched<S> {
    inner: S,
    idle: Arc<Idle>,
}

impl<S, B> hyper::service::Service<hyper::Request<Incoming>> for Watched<S>
where
    S: hyper::service::Service<hyper::Request<Incoming>, Response = hyper::Response<B>>,
{
    type Response = hyper::Response<Timed<B>>;
    type Error = S::Error;
    type Future = Answering<S::Future>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        self.idle.begin();
        Answering { inner: self.inner.call(req), guard: Some(InFlight(self.idle.clone())) }
    }
}

pin_project_lite::pin_project! {
    /// A request's answer being made; its guard moves into the answer's body.
    struct Answering<F> {
        #[pin]
        inner: F,
        guard: Option<InFlight>,
    }
}

impl<F, B, E> Future for Answering<F>
where
    F: Future<Output = Result<hyper::Response<B>, E>>,
{
    type Output = Result<hyper::Response<Timed<B>>, E>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let answered = std::task::ready!(this.inner.poll(cx));
        let guard = this.guard.take();
        std::task::Poll::Ready(answered.map(|r| r.map(|inner| Timed { inner, _guard: guard })))
    }
}

pin_project_lite::pin_project! {
    /// An answer's body, holding its request in flight until dropped.
    struct Timed<B> {
        #[pin]
        inner: B,
        _guard: Option<InFlight>,
    }
}

impl<B: hyper::body::Body> hyper::body::Body for Timed<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then waits for the requests in flight.
/// Gantry's own routes go through the app's router; every other request (the front door's)
/// goes straight to the front door, as the router's fallback would send it.
pub async fn serve(
    listener: TcpListener,
    app: App,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (mut stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = limits.max_connections, "connection refused: too many open connections");
            tokio::spawn(async move {
                let _ = stream.write_all(OVERLOADED).await;
                let _ = stream.shutdown().await;
            });
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = TowerToHyperService::new(app.router());
        let state = app.state.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            if App::routed(req.uri().path()) {
                Either::Left(router.call(req).map(|r| r.map(|r| r.map(Reply::Boxed))))
            } else {
                let state = state.clone();
                // The caller's address: IAM's aws:SourceIp. The body is read as hyper gives it
                // (not boxed), and answered as a `Reply`.
                Either::Right(async move {
                    Ok::<_, std::convert::Infallible>(
                        crate::front::respond(&state, req, Some(peer.ip())).await,
                    )
                })
            }
        });
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = serve_connection(stream, service, &limits, stopped).await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
            drop(permit);
        });
    }

    // Stop taking requests; let the ones in flight finish (long polls end within their timeout).
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        let _ = permits.acquire_many(limits.max_connections as u32).await;
    })
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    const TIMEOUT: Duration = Duration::from_secs(30);

    /// A server on a loopback port whose one connection is served by `serve_connection` until
    /// `stop`, each request answered after `work` (Tokio's clock, paused in these tests).
    async fn one_connection(
        work: Duration,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> (TcpStream, tokio::task::JoinHandle<Instant>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let service = hyper::service::service_fn(move |_req: hyper::Request<Incoming>| async move {
            tokio::time::sleep(work).await;
            Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                bytes::Bytes::from_static(b"done"),
            )))
        });
        let limits = Limits { header_read_timeout: TIMEOUT, ..Limits::default() };
        let served = tokio::spawn(async move {
            let _ = serve_connection(stream, service, &limits, stop).await;
            Instant::now()
        });
        (client, served)
    }

    /// Reads until the server closes the connection (within ten timeouts, or the test fails),
    /// and answers what arrived.
    async fn until_closed(client: &mut TcpStream) -> String {
        let mut got = Vec::new();
        let read = tokio::time::timeout(TIMEOUT * 10, client.read_to_end(&mut got)).await;
        assert!(read.is_ok(), "the server kept the connection open");
        String::from_utf8_lossy(&got).into_owned()
    }

    /// Half a request's headers, then nothing: the connection is closed when the header timeout
    /// has passed since it opened, and not before.
    #[tokio::test(start_paused = true)]
    async fn headers_that_stop_arriving_are_cut_off_at_the_timeout() {
        let opened = Instant::now();
        let (mut client, served) = one_connection(Duration::ZERO, std::future::pending()).await;
        client.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Tar").await.unwrap();
        assert_eq!(until_closed(&mut client).await, "", "closed without an answer");
        assert_eq!(served.await.unwrap() - opened, TIMEOUT);
    }

    /// A kept-alive connection is closed the timeout after its last answer, not after it opened;
    /// a request that takes longer than the timeout is answered, not cut off.
    #[tokio::test(start_paused = true)]
    async fn the_timeout_runs_from_the_last_answer_and_spares_requests_in_flight() {
        let opened = Instant::now();
        let (mut client, served) = one_connection(TIMEOUT * 3, std::future::pending()).await;
        tokio::time::sleep(TIMEOUT / 2).await;
        client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let got = until_closed(&mut client).await;
        assert!(got.starts_with("HTTP/1.1 200") && got.ends_with("done"), "{got}");
        let answered = TIMEOUT / 2 + TIMEOUT * 3;
        assert_eq!(served.await.unwrap() - opened, answered + TIMEOUT);
    }

    /// The server stopping lets the request in flight finish, then closes the connection.
    #[tokio::test(start_paused = true)]
    async fn stopping_finishes_the_request_in_flight_then_closes() {
        let opened = Instant::now();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (mut client, served) = one_connection(TIMEOUT / 2, async {
            let _ = stopped.await;
        })
        .await;
        client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        tokio::time::sleep(TIMEOUT / 4).await;
        stop.send(()).unwrap();
        let got = until_closed(&mut client).await;
        assert!(got.starts_with("HTTP/1.1 200") && got.ends_with("done"), "{got}");
        assert_eq!(served.await.unwrap() - opened, TIMEOUT / 2, "closed once answered");
    }
}
