//! Connections to HTTP/1 targets: each target keeps its idle connections; a request takes one
//! (or opens one), and the end of its response body puts it back. A request that a reused
//! connection could not even start (the target had closed it) is sent again on another.
//! HTTP/2 targets go through hyper's pooled client, which multiplexes. The plain-HTTP fast
//! path (`fast.rs`) keeps bare sockets instead, written and read by the client's own task.

use crate::group::Member;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

pub(crate) type Sender = hyper::client::conn::http1::SendRequest<Incoming>;

/// At most this many idle connections per target.
const MAX_IDLE: usize = 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request got no response.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The target refused the connection, or did not accept it in time.
    Connect,
    /// The connection failed while the request was sent or its response awaited.
    Failed(hyper::Error),
}

/// Sends `req` to the member; the response comes with the connection to put back when its body
/// has been read.
pub(crate) async fn send(
    member: &Arc<Member>,
    mut req: Request<Incoming>,
) -> Result<(Response<Incoming>, Sender), SendError> {
    loop {
        let (mut sender, reused) = match member.take_idle() {
            Some(s) => (s, true),
            // Boxed: opening a connection is the rare case, kept out of every request's future.
            None => (Box::pin(connect(member)).await?, false),
        };
        if !sender.is_ready() && sender.ready().await.is_err() {
            if reused {
                continue;
            }
            return Err(SendError::Connect);
        }
        match sender.try_send_request(req).await {
            Ok(resp) => return Ok((resp, sender)),
            Err(mut e) => match e.take_message() {
                Some(unsent) if reused => req = unsent,
                _ => return Err(SendError::Failed(e.into_error())),
            },
        }
    }
}

async fn connect(member: &Member) -> Result<Sender, SendError> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(member.target.address)).await
    {
        Ok(Ok(s)) => s,
        _ => return Err(SendError::Connect),
    };
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(SendError::Failed)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::trace!(error = %e, "target connection ended");
        }
    });
    Ok(sender)
}

impl Member {
    fn take_idle(&self) -> Option<Sender> {
        let mut idle = self.idle_connections.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(s) = idle.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    /// Keeps a connection whose response has been read in full, for the next request.
    pub(crate) fn put_idle(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle_connections.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(sender);
        }
    }
}

/// Opens a bare connection to the member (the fast path's).
pub(crate) async fn connect_socket(member: &Member) -> Option<TcpStream> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(member.target.address)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Some(s)
        }
        _ => None,
    }
}

impl Member {
    /// An idle bare connection. With `check`, one the target has closed (or sent something
    /// unasked on) is dropped: a syscall only when the socket was last seen readable.
    pub(crate) fn take_socket(&self, check: bool) -> Option<TcpStream> {
        let mut idle = self.idle_sockets.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(s) = idle.pop() {
            if !check
                || matches!(s.try_read(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            {
                return Some(s);
            }
        }
        None
    }

    /// Keeps a bare connection whose response has been read in full.
    pub(crate) fn put_socket(&self, socket: TcpStream) {
        let mut idle = self.idle_sockets.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(socket);
        }
    }
}
