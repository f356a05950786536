//! The plain-HTTP/1.1 fast path over raw sockets: keep-alive and pipelining, bodies in both
//! directions (length, chunked, until close), a client leaving mid-body, targets that reset or
//! stall, and what goes on to hyper's path (upgrades, malformed and oversized heads).

use crate::support::*;
use gantry_lb::config::{Protocol, Target, TargetGroup};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A target written by hand, so the test decides every byte: by path,
/// `/chunked` (a chunked answer), `/close` (a body until close), `/reset` (a TCP reset),
/// `/stall` (no answer), `/echo` (the request's body bytes as they arrived, chunked framing
/// included, with a length), anything else `ok` with `x-seen: <the request head>`.
/// What it read of each request goes to `seen` (the head, then the body or `EOF` if the
/// connection ended mid-body).
struct RawTarget {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn raw_target(seen: mpsc::UnboundedSender<String>) -> RawTarget {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else { continue };
            count.fetch_add(1, SeqCst);
            tokio::spawn(raw_connection(s, seen.clone()));
        }
    });
    RawTarget { addr, connections, task }
}

async fn raw_connection(mut s: TcpStream, seen: mpsc::UnboundedSender<String>) {
    let mut buf = Vec::new();
    loop {
        let Some(end) = read_until(&mut s, &mut buf, b"\r\n\r\n").await else { return };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let _ = seen.send(head.clone());
        let lower = head.to_ascii_lowercase();
        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
        // The body: by length, or chunked up to its last chunk.
        let body = if let Some(l) = lower.split("\r\ncontent-length: ").nth(1) {
            let l: usize = l.split("\r\n").next().unwrap().trim().parse().unwrap();
            while buf.len() < l {
                if !read_more(&mut s, &mut buf).await {
                    let _ = seen.send("EOF".into());
                    return;
                }
            }
            buf.drain(..l).collect::<Vec<u8>>()
        } else if lower.contains("transfer-encoding: chunked") {
            let Some(end) = read_until(&mut s, &mut buf, b"0\r\n\r\n").await else {
                let _ = seen.send("EOF".into());
                return;
            };
            buf.drain(..end).collect()
        } else {
            Vec::new()
        };
        let answer: Vec<u8> = match path.as_str() {
            "/chunked" => {
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
                    .to_vec()
            }
            "/close" => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\nuntil").await;
                let _ = s.write_all(b" close").await;
                return;
            }
            "/reset" => {
                let _ = s.set_zero_linger();
                return;
            }
            "/stall" => {
                std::future::pending::<()>().await;
                return;
            }
            "/echo" => {
                let mut a = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
                a.extend_from_slice(&body);
                a
            }
            _ => {
                let x_seen = head.lines().skip(1).collect::<Vec<_>>().join("|");
                format!("HTTP/1.1 200 OK\r\nx-seen: {x_seen}\r\ncontent-length: 2\r\n\r\nok").into_bytes()
            }
        };
        if s.write_all(&answer).await.is_err() {
            return;
        }
    }
}

async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    buf.reserve(16384);
    matches!(s.read_buf(buf).await, Ok(n) if n > 0)
}

/// Reads until `pat` is in `buf`; the index just after it.
async fn read_until(s: &mut TcpStream, buf: &mut Vec<u8>, pat: &[u8]) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(pat.len()).position(|w| w == pat) {
            return Some(i + pat.len());
        }
        if !read_more(s, buf).await {
            return None;
        }
    }
}

/// An answer as the client reads it: status, head (lowercased), body.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| l.strip_prefix(&format!("{name}: ")))
    }
}

/// Reads one answer off a client connection (length, chunked or until-close body).
async fn answer(s: &mut TcpStream, buf: &mut Vec<u8>) -> Answer {
    let end = read_until(s, buf, b"\r\n\r\n").await.expect("an answer");
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    buf.drain(..end);
    let status = head[9..12].parse().unwrap();
    let mut a = Answer { status, head, body: Vec::new() };
    if let Some(l) = a.header("content-length") {
        let l: usize = l.trim().parse().unwrap();
        while buf.len() < l {
            assert!(read_more(s, buf).await, "body cut short");
        }
        a.body = buf.drain(..l).collect();
    } else if a.header("transfer-encoding") == Some("chunked") {
        let end = read_until(s, buf, b"0\r\n\r\n").await.expect("the last chunk");
        a.body = buf.drain(..end).collect();
    } else {
        while read_more(s, buf).await {}
        a.body = std::mem::take(buf);
    }
    a
}

fn raw_group(name: &str, targets: &[SocketAddr]) -> TargetGroup {
    let mut tg = TargetGroup::new(&tg_arn(name), Protocol::Http);
    tg.health_check.enabled = false;
    tg.targets = targets.iter().map(|a| Target::ip(*a)).collect();
    tg
}

/// A load balancer forwarding one listener to one raw target.
async fn setup(idle: Duration) -> (gantry_lb::LoadBalancer, u16, RawTarget, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let t = raw_target(tx).await;
    let (lb, _) = load_balancer();
    let port = free_port();
    let mut l = http_listener(1, port, forward("raw"));
    l.idle_timeout = idle;
    lb.apply(&config(vec![l], vec![raw_group("raw", &[t.addr])])).unwrap();
    (lb, port, t, rx)
}

async fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_and_pipelined_requests_share_one_target_connection() {
    let (_lb, port, t, mut seen) = setup(Duration::from_secs(10)).await;
    let mut c = connect(port).await;
    let mut buf = Vec::new();
    for i in 0..3 {
        c.write_all(format!("GET /k{i}?q=1 HTTP/1.1\r\nHost: app.test\r\nX-Drop: 1\r\nConnection: keep-alive, x-drop\r\n\r\n").as_bytes()).await.unwrap();
        let a = answer(&mut c, &mut buf).await;
        assert_eq!((a.status, a.body.as_slice()), (200, &b"ok"[..]), "{a:?}");
        assert!(a.header("date").is_some(), "{a:?}");
        let head = seen.recv().await.unwrap();
        assert!(head.starts_with(&format!("GET /k{i}?q=1 HTTP/1.1\r\n")), "{head}");
        let lower = head.to_ascii_lowercase();
        assert!(lower.contains("host: app.test\r\n"), "{head}");
        assert!(lower.contains("x-forwarded-for: 127.0.0.1\r\n"), "{head}");
        assert!(lower.contains("x-forwarded-proto: http\r\n"), "{head}");
        assert!(lower.contains(&format!("x-forwarded-port: {port}\r\n")), "{head}");
        assert!(lower.contains("x-amzn-trace-id: root=1-"), "{head}");
        // This hop's headers, and those `Connection` names, stay here.
        assert!(!lower.contains("connection:") && !lower.contains("x-drop"), "{head}");
    }
    // Two requests in one write: two answers, in order.
    c.write_all(b"GET /p1 HTTP/1.1\r\nHost: a\r\n\r\nGET /p2 HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    for p in ["/p1", "/p2"] {
        assert_eq!(answer(&mut c, &mut buf).await.status, 200);
        assert!(seen.recv().await.unwrap().starts_with(&format!("GET {p} ")));
    }
    assert_eq!(t.connections.load(SeqCst), 1, "one target connection, reused");
    // `Connection: close`: answered with it, then closed.
    c.write_all(b"GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await.unwrap();
    let a = answer(&mut c, &mut buf).await;
    assert_eq!(a.header("connection"), Some("close"));
    assert_eq!(c.read(&mut [0u8; 1]).await.unwrap(), 0, "closed after the answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_response_bodies_stream_by_length_chunks_and_close() {
    let (_lb, port, _t, mut seen) = setup(Duration::from_secs(10)).await;
    let mut c = connect(port).await;
    let mut buf = Vec::new();
    // A length body larger than one read, sent in two writes.
    let big = vec![b'x'; 100_000];
    c.write_all(
        format!("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n", big.len()).as_bytes(),
    )
    .await
    .unwrap();
    c.write_all(&big[..50_000]).await.unwrap();
    c.write_all(&big[50_000..]).await.unwrap();
    let a = answer(&mut c, &mut buf).await;
    assert_eq!((a.status, a.body.len()), (200, big.len()));
    assert!(seen.recv().await.unwrap().to_ascii_lowercase().contains("content-length: 100000\r\n"));
    // A chunked body, the last chunk in a later write: relayed as chunks.
    c.write_all(b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n")
        .await
        .unwrap();
    c.write_all(b"5\r\npedia\r\n0\r\n\r\n").await.unwrap();
    let a = answer(&mut c, &mut buf).await;
    assert_eq!(a.body, b"4\r\nwiki\r\n5\r\npedia\r\n0\r\n\r\n");
    assert!(seen.recv().await.unwrap().to_ascii_lowercase().contains("transfer-encoding: chunked\r\n"));
    // A chunked answer.
    c.write_all(b"GET /chunked HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    let a = answer(&mut c, &mut buf).await;
    assert_eq!(a.header("transfer-encoding"), Some("chunked"));
    assert_eq!(a.body, b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    seen.recv().await.unwrap();
    // A HEAD answer has no body even with a length.
    c.write_all(b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\nGET /y HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    let end = read_until(&mut c, &mut buf, b"\r\n\r\n").await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase().contains("content-length: 2\r\n"));
    buf.drain(..end);
    assert_eq!(answer(&mut c, &mut buf).await.body, b"ok", "the next answer follows the HEAD's head at once");
    // A body until the target closes: passed on, then the client connection closes too.
    c.write_all(b"GET /close HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    let a = answer(&mut c, &mut buf).await;
    assert_eq!(a.header("connection"), Some("close"));
    assert_eq!(a.body, b"until close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_mid_body_closes_the_target_connection() {
    let (_lb, port, _t, mut seen) = setup(Duration::from_secs(10)).await;
    let mut c = connect(port).await;
    c.write_all(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nonly ten b").await.unwrap();
    assert!(seen.recv().await.unwrap().starts_with("POST /echo "));
    drop(c);
    assert_eq!(seen.recv().await.unwrap(), "EOF");
    // The load balancer serves on.
    let mut c = connect(port).await;
    let mut buf = Vec::new();
    c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    assert_eq!(answer(&mut c, &mut buf).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_chunked_body_is_400_and_closes() {
    let (_lb, port, _t, mut seen) = setup(Duration::from_secs(10)).await;
    let mut buf = Vec::new();
    // Malformed in the first write, with the head: no target hears of it.
    let mut c = connect(port).await;
    c.write_all(b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nwiki\r\n")
        .await
        .unwrap();
    let a = answer(&mut c, &mut buf).await;
    assert_eq!((a.status, a.header("connection")), (400, Some("close")), "{a:?}");
    assert!(String::from_utf8_lossy(&a.body).contains("400 Bad Request"), "{a:?}");
    assert_eq!(a.header("server"), Some("awselb/2.0"));
    assert_eq!(c.read(&mut [0u8; 1]).await.unwrap(), 0, "closed after the answer");
    // Malformed in a later write, once the head went to the target: 400 too, and the target's
    // connection is dropped.
    let mut c = connect(port).await;
    buf.clear();
    c.write_all(b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n")
        .await
        .unwrap();
    assert!(seen.recv().await.unwrap().starts_with("POST /echo "));
    c.write_all(b"not a chunk size\r\n").await.unwrap();
    let a = answer(&mut c, &mut buf).await;
    assert_eq!((a.status, a.header("connection")), (400, Some("close")), "{a:?}");
    assert_eq!(c.read(&mut [0u8; 1]).await.unwrap(), 0, "closed after the answer");
    assert_eq!(seen.recv().await.unwrap(), "EOF");
    // The load balancer serves on.
    let mut c = connect(port).await;
    buf.clear();
    c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    assert_eq!(answer(&mut c, &mut buf).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_and_stalled_targets_are_502_and_504() {
    let (lb, port, _t, _seen) = setup(Duration::from_millis(300)).await;
    let mut c = connect(port).await;
    let mut buf = Vec::new();
    c.write_all(b"GET /reset HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    let a = answer(&mut c, &mut buf).await;
    assert_eq!(a.status, 502, "{a:?}");
    assert!(String::from_utf8_lossy(&a.body).contains("502 Bad Gateway"));
    assert_eq!(a.header("server"), Some("awselb/2.0"));
    // The same client connection carries on.
    c.write_all(b"GET /stall HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    let a = answer(&mut c, &mut buf).await;
    assert_eq!(a.status, 504, "{a:?}");
    assert!(String::from_utf8_lossy(&a.body).contains("504 Gateway Time-out"));
    // With a body still unread, the answer comes, then the connection closes.
    c.write_all(b"POST /stall HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n12345").await.unwrap();
    let a = answer(&mut c, &mut buf).await;
    assert_eq!((a.status, a.header("connection")), (504, Some("close")));
    // No target at all: 503; nothing listening: 502.
    let (tx, _rx) = mpsc::unbounded_channel();
    let gone = raw_target(tx).await;
    let gone_addr = gone.addr;
    drop(gone);
    let mut l = http_listener(1, port, forward("raw"));
    l.idle_timeout = Duration::from_millis(300);
    lb.apply(&config(vec![l.clone()], vec![raw_group("raw", &[])])).unwrap();
    let mut c = connect(port).await;
    c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    assert_eq!(answer(&mut c, &mut buf).await.status, 503);
    lb.apply(&config(vec![l], vec![raw_group("raw", &[gone_addr])])).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    assert_eq!(answer(&mut c, &mut buf).await.status, 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_malformed_and_oversized_heads_go_to_hyper() {
    let a = backend("a").await;
    let (lb, _) = load_balancer();
    let port = free_port();
    lb.apply(&config(vec![http_listener(1, port, forward("a"))], vec![group("a", &[&a])])).unwrap();
    all_healthy(&lb, "a").await;
    let mut buf = Vec::new();
    // A fast-path request, then a WebSocket upgrade on the same connection.
    let mut c = connect(port).await;
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert_eq!(answer(&mut c, &mut buf).await.status, 200);
    c.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        .await
        .unwrap();
    let end = read_until(&mut c, &mut buf, b"\r\n\r\n").await.unwrap();
    assert!(buf.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&buf));
    buf.drain(..end);
    c.write_all(b"through the tunnel").await.unwrap();
    let mut echoed = [0u8; 18];
    c.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"through the tunnel");
    // HTTP/1.0: hyper's path, which closes after the answer.
    let mut c = connect(port).await;
    c.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).await.unwrap();
    assert!(
        got.starts_with(b"HTTP/1.0 200") || got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert!(got.ends_with(b"\r\n\r\na"), "{}", String::from_utf8_lossy(&got));
    // Malformed: hyper's 400.
    let mut c = connect(port).await;
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).await.unwrap();
    assert!(got.starts_with(b"HTTP/1.1 400"), "{}", String::from_utf8_lossy(&got));
    // A head past the fast path's limit but within hyper's: forwarded whole.
    let big = "y".repeat(100_000);
    let (status, headers, body) = get(&client(), port, "/echo-head", &[("x-a", &big)]).await;
    assert_eq!((status, body.as_str()), (200, "a"));
    assert_eq!(headers["x-seen-abc-bytes"], "100000");
    // More headers than hyper takes (100): its 431, as before.
    let mut c = connect(port).await;
    let mut req = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..120 {
        req.push_str(&format!("x-{i}: v\r\n"));
    }
    req.push_str("\r\n");
    c.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got).await;
    assert!(got.starts_with(b"HTTP/1.1 431"), "{}", String::from_utf8_lossy(&got[..got.len().min(200)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_closes_after_the_idle_timeout() {
    let (_lb, port, _t, _seen) = setup(Duration::from_millis(200)).await;
    let mut c = connect(port).await;
    let mut buf = Vec::new();
    c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    assert_eq!(answer(&mut c, &mut buf).await.status, 200);
    let started = tokio::time::Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(10), c.read(&mut [0u8; 1])).await;
    assert!(matches!(closed, Ok(Ok(0))), "{closed:?}");
    assert!(started.elapsed() >= Duration::from_millis(150), "not before the idle timeout");
}
