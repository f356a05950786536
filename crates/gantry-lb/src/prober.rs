//! The active health checker: one task per target group in use, checking each registered
//! target every interval (HTTP, HTTPS or TCP, on the traffic port or the configured one) and
//! feeding the results to `health::Health::observe`. Each target keeps its own schedule: a
//! newly registered one is checked at once, as ELB starts checking a target on registration,
//! rather than at the group's next round (up to an interval later).

use crate::config::{HealthCheck, Protocol};
use crate::group::{Group, Member};
use crate::health::{Probe, code_matches};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Checks the group's targets until aborted.
pub(crate) async fn run(group: Arc<Group>, tls: Arc<rustls::ClientConfig>) {
    let check = group.settings().health_check.clone();
    let interval = check.interval.max(std::time::Duration::from_millis(10));
    let mut probes = JoinSet::new();
    // The targets being checked now (one check at a time per target).
    let mut checking: Vec<Arc<Member>> = Vec::new();
    loop {
        let now = Instant::now();
        let mut next = now + interval;
        for m in group.checked_members() {
            let mut due = m.next_check.lock().unwrap_or_else(|e| e.into_inner());
            let at = due.unwrap_or(now);
            if at <= now && !checking.iter().any(|c| Arc::ptr_eq(c, &m)) {
                // Every interval from its first check; a late round does not make up for
                // the missed ones (tokio's `MissedTickBehavior::Delay`).
                let following = if at + interval > now { at + interval } else { now + interval };
                *due = Some(following);
                next = next.min(following);
                drop(due);
                checking.push(m.clone());
                let (check, tls) = (check.clone(), tls.clone());
                probes.spawn(async move {
                    let result = probe(&m, &check, &tls).await;
                    (m, result)
                });
            } else if at > now {
                next = next.min(at);
            }
            // (A target due while its last check still runs is looked at again when it ends.)
        }
        tokio::select! {
            Some(done) = probes.join_next(), if !probes.is_empty() => {
                let Ok((m, result)) = done else { continue };
                checking.retain(|c| !Arc::ptr_eq(c, &m));
                observe(&group, &m, &result, &check);
            }
            () = tokio::time::sleep_until(next) => {}
            () = group.registered.notified() => {}
        }
    }
}

fn observe(group: &Group, m: &Member, result: &Probe, check: &HealthCheck) {
    let mut h = m.health();
    let before = h.state;
    if h.observe(result, check) {
        let after = h.state;
        drop(h);
        m.record_transition(before, after, group.now_ms());
        tracing::debug!(target_group = %group.arn, target = %m.target.address, state = after.as_str(), "target health changed");
    }
}

/// One health check of one target.
pub(crate) async fn probe(m: &Member, check: &HealthCheck, tls: &Arc<rustls::ClientConfig>) -> Probe {
    let addr = SocketAddr::new(m.target.address.ip(), check.port.unwrap_or(m.target.address.port()));
    match tokio::time::timeout(check.timeout, attempt(addr, check, tls)).await {
        Ok(result) => result,
        Err(_) => Probe::TimedOut,
    }
}

async fn attempt(addr: SocketAddr, check: &HealthCheck, tls: &Arc<rustls::ClientConfig>) -> Probe {
    let Ok(stream) = TcpStream::connect(addr).await else { return Probe::Failed };
    match check.protocol {
        Protocol::Tcp => Probe::Passed,
        Protocol::Tls | Protocol::Https => {
            let connector = tokio_rustls::TlsConnector::from(tls.clone());
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            let Ok(stream) = connector.connect(name, stream).await else { return Probe::Failed };
            if check.protocol == Protocol::Tls { Probe::Passed } else { http_get(stream, addr, check).await }
        }
        Protocol::Http => http_get(stream, addr, check).await,
    }
}

/// `GET path` as ELB's checker sends it; only the status line is read.
async fn http_get<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    addr: SocketAddr,
    check: &HealthCheck,
) -> Probe {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: ELB-HealthChecker/2.0\r\nAccept-Encoding: gzip, compressed\r\nConnection: close\r\n\r\n",
        check.path
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        return Probe::Failed;
    }
    let mut buf = [0u8; 512];
    let mut len = 0;
    loop {
        match stream.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => return Probe::Failed,
            Ok(n) => len += n,
        }
        if let Some(end) = buf[..len].windows(2).position(|w| w == b"\r\n") {
            return status(&buf[..end], &check.matcher);
        }
        if len == buf.len() {
            return Probe::Failed;
        }
    }
}

fn status(line: &[u8], matcher: &str) -> Probe {
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else { return Probe::Failed };
    let Ok(code) = code.parse::<u16>() else { return Probe::Failed };
    if !version.starts_with("HTTP/") {
        Probe::Failed
    } else if code_matches(matcher, code) {
        Probe::Passed
    } else {
        Probe::CodeMismatch(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(status(b"HTTP/1.1 200 OK", "200"), Probe::Passed);
        assert_eq!(status(b"HTTP/1.0 204 No Content", "200-299"), Probe::Passed);
        assert_eq!(status(b"HTTP/1.1 500 Internal Server Error", "200"), Probe::CodeMismatch(500));
        assert_eq!(status(b"SSH-2.0-OpenSSH", "200"), Probe::Failed);
        assert_eq!(status(b"HTTP/1.1 abc", "200"), Probe::Failed);
    }
}
