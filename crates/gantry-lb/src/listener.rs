//! A bound port: the accept loop, and each connection handed to the HTTP or TCP side by the
//! listener's protocol (TLS terminated first for HTTPS and TLS), as the table says when the
//! connection arrives.

use crate::config::Protocol;
use crate::http::{Mode, Shared};
use crate::table::Slot;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// How long a client has to finish a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `addr` (SO_REUSEADDR, TCP_NODELAY, a backlog of 1024). Must run within a tokio runtime.
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket =
        if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    // Linux's accepted connections inherit it: no setsockopt per connection.
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Whether an accepted socket has the listening socket's TCP_NODELAY (checked by a test).
const INHERITS_NODELAY: bool = cfg!(target_os = "linux");

/// Accepts connections until the task is aborted.
pub(crate) async fn accept_loop(listener: TcpListener, slot: Arc<Slot>, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if !INHERITS_NODELAY {
                    let _ = stream.set_nodelay(true);
                }
                tokio::spawn(connection(stream, peer, slot.clone(), shared.clone()));
            }
            Err(e) => {
                // Out of descriptors and the like: wait a little rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(stream: TcpStream, peer: SocketAddr, slot: Arc<Slot>, shared: Arc<Shared>) {
    let table = slot.table.load_full();
    let counters = table.counters.clone();
    counters.own.connection_opened();
    let idle = table.idle_timeout;
    // Each protocol's future is boxed: the task's own future stays small (tokio moves it into
    // the task and writes over it when it ends), and a plain HTTP connection's is only as
    // large as its own state, not the largest of the TLS and TCP ones.
    match (table.protocol, table.tls.clone()) {
        (Protocol::Http, _) => {
            drop(table);
            Box::pin(plain_http(stream, peer, slot, shared, idle)).await;
        }
        (Protocol::Tcp, _) => Box::pin(crate::tcp::serve(stream, peer, table)).await,
        (Protocol::Https, Some(tls)) => Box::pin(https(stream, tls, peer, slot, shared, idle)).await,
        (Protocol::Tls, Some(tls)) => {
            let accepted =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio_rustls::TlsAcceptor::from(tls).accept(stream));
            if let Ok(Ok(stream)) = Box::pin(accepted).await {
                Box::pin(crate::tcp::serve(stream, peer, table)).await;
            }
        }
        (Protocol::Https | Protocol::Tls, None) => {}
    }
    counters.own.connection_closed();
}

async fn plain_http(
    mut stream: TcpStream,
    peer: SocketAddr,
    slot: Arc<Slot>,
    shared: Arc<Shared>,
    idle: Duration,
) {
    // A client that connects and says nothing is dropped after the idle timeout.
    match tokio::time::timeout(idle, crate::http::sniff(&mut stream)).await {
        // HTTP/1.1: the fast path, which hands hyper's path what it does not handle.
        Ok(Some((Mode::Http1, first))) => crate::fast::serve(stream, first, peer, slot, shared, idle).await,
        Ok(Some((mode, first))) => {
            let stream = crate::http::Rewind::new(first.freeze(), stream);
            Box::pin(crate::http::serve(stream, peer, slot, shared, false, mode, idle)).await;
        }
        _ => {}
    }
}

async fn https(
    stream: TcpStream,
    tls: Arc<rustls::ServerConfig>,
    peer: SocketAddr,
    slot: Arc<Slot>,
    shared: Arc<Shared>,
    idle: Duration,
) {
    let accepted =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio_rustls::TlsAcceptor::from(tls).accept(stream)).await;
    if let Ok(Ok(stream)) = accepted {
        let mode = match stream.get_ref().1.alpn_protocol() {
            Some(b"h2") => Mode::Http2,
            _ => Mode::Http1,
        };
        crate::http::serve(stream, peer, slot, shared, true, mode, idle).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_have_nodelay_without_asking() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        if INHERITS_NODELAY {
            assert!(accepted.nodelay().unwrap());
        }
    }
}
