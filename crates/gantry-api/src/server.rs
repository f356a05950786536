//! The listener: HTTP/1.1 connections served with limits, so that no client can hold the
//! server's resources forever.
//!
//! - **Connections** are capped ([`Limits::max_connections`]): a connection beyond the cap is
//!   answered `503 Service Unavailable` (which AWS SDKs retry with backoff) and closed at once.
//! - **Headers** must arrive within [`Limits::header_read_timeout`], or the connection is closed;
//!   the same timeout closes a kept-alive connection that sends nothing more.
//! - **Bodies** are read by the front door with a size limit per protocol and
//!   [`Limits::body_read_timeout`] (see `front.rs`).

use crate::App;
use crate::reply::Reply;
use futures_util::FutureExt as _;
use futures_util::future::Either;
use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

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

/// How each connection is served: HTTP/1.1 with keep-alive and the header read timeout (the
/// bench's `hyper_floor` example serves with the same).
pub fn connection_builder(limits: &Limits) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
    b
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
            let mut conn = connection_builder(&limits)
                .serve_connection(TokioIo::new(stream), service)
                // ECS Exec's session streams are upgraded connections (exec.rs).
                .with_upgrades();
            let mut conn = std::pin::Pin::new(&mut conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended");
                    }
                }
                _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
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
