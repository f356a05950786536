//! The plain-HTTP/1.1 fast path of an ALB listener: the client's task parses each request head
//! (`httparse`), routes it through the same rules, target choice, stickiness, metrics and
//! in-flight counting as `http.rs`, and writes it to a bare pooled target connection itself
//! (no hyper connection state, no hop to another task), streams the bodies (`Content-Length`,
//! chunked, until close), relays the response and loops for keep-alive.
//!
//! What it does not handle goes to hyper's path (`http::serve`) with the bytes already read
//! replayed: a version other than HTTP/1.1, `Upgrade` (WebSocket, h2c), `Expect`, a
//! request target not in origin form, an ambiguous body length, a malformed head (hyper answers
//! 400 as before) or one longer than [`MAX_HEAD`] (hyper's limit and its 431), HTTP/2 target
//! groups, and a request with a body that the load balancer answers itself.

use crate::body::Body;
use crate::config::{Condition, Stickiness, XffMode};
use crate::group::{InFlight, Member};
use crate::http::{self as h, Cookies, Mode, Shared};
use crate::rules::{RequestView, matches_all};
use crate::table::{Act, ForwardPlan, Slot, Table};
use bytes::{Buf, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Response, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Headers per head, as hyper allows.
const MAX_HEADERS: usize = 100;
/// A request head still incomplete at this size goes to hyper (which reads on to its own
/// limit and answers 431 past it, as before).
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// A target's response head longer than this is a 502 (hyper's client's buffer limit).
const MAX_RESPONSE_HEAD: usize = 8192 + 4096 * 100;
/// How much a read asks for at least.
const READ_SIZE: usize = 8192;
/// How long, and how much, a connection closed with an unread request body is drained so that
/// the client reads its answer rather than a reset.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 256 * 1024;

/// Serves a plain connection whose first bytes (`buf`) are not HTTP/2's preface.
pub(crate) async fn serve(
    mut stream: TcpStream,
    mut buf: BytesMut,
    peer: SocketAddr,
    slot: Arc<Slot>,
    shared: Arc<Shared>,
    idle: Duration,
) {
    let peer_ip = peer.ip().to_canonical().to_string();
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    let mut tbuf = BytesMut::new();
    loop {
        // A whole head, or the connection ends (the client closed or stayed idle too long).
        let head = tokio::time::timeout(idle, async {
            loop {
                if !buf.is_empty() {
                    let table = slot.table.load_full();
                    match plan(&buf, &table, peer, &peer_ip, &shared, &mut out) {
                        Parsed::Partial if buf.len() < MAX_HEAD => {}
                        Parsed::Partial => return Some(Parsed::Fallback),
                        parsed => return Some(parsed),
                    }
                }
                if buf.capacity() - buf.len() < 1024 {
                    buf.reserve(READ_SIZE);
                }
                match stream.read_buf(&mut buf).await {
                    Ok(n) if n > 0 => {}
                    _ => return None,
                }
            }
        })
        .await;
        let plan = match head {
            Ok(Some(Parsed::Plan(p))) => p,
            Ok(Some(_)) => {
                let io = h::Rewind::new(buf.freeze(), stream);
                Box::pin(h::serve(io, peer, slot, shared, false, Mode::Http1, idle)).await;
                return;
            }
            _ => return,
        };
        let keep = match plan {
            Plan::Own { head_len, close } => {
                buf.advance(head_len);
                stream.write_all(&out).await.is_ok() && !close
            }
            Plan::Forward(f) => forward(*f, &mut stream, &mut buf, &mut tbuf, &mut out, &shared).await,
        };
        if !keep {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

enum Parsed {
    /// More bytes are needed.
    Partial,
    /// For hyper's path.
    Fallback,
    Plan(Plan),
}

enum Plan {
    /// The load balancer's own answer, in `out`.
    Own { head_len: usize, close: bool },
    /// To a target; the request's head for it in `out`.
    Forward(Box<Forward>),
}

struct Forward {
    table: Arc<Table>,
    plan: Arc<ForwardPlan>,
    gi: usize,
    stickiness: Option<Stickiness>,
    member: Arc<Member>,
    guard: InFlight,
    head_len: usize,
    body: Framing,
    /// The client asked for the connection to close after this exchange.
    close: bool,
    head_request: bool,
    /// The request may be sent again on another connection if a reused one fails before any
    /// answer (its method is idempotent).
    idempotent: bool,
}

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Until the sender closes (responses only).
    Close,
}

/// What the head scan found.
#[derive(Default)]
struct Scan<'a> {
    host: Option<&'a [u8]>,
    length: Option<u64>,
    chunked: bool,
    /// A response's `Transfer-Encoding` other than `chunked`: its body runs until close.
    other_coding: bool,
    /// The `Transfer-Encoding` of a chunked response, passed on as it is.
    coding: Option<&'a [u8]>,
    close: bool,
    xff: Option<&'a [u8]>,
    trace: Option<&'a [u8]>,
    has_date: bool,
    /// Header names listed in `Connection`, not forwarded.
    named: Vec<&'a [u8]>,
}

/// Headers of one hop, never forwarded (`Content-Length` and `Transfer-Encoding` are written
/// again as the body is framed).
fn hop_by_hop(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"content-length")
        || h::HOP_BY_HOP.iter().any(|h| h.as_bytes().eq_ignore_ascii_case(name))
}

fn is(name: &str, lower: &str) -> bool {
    name.len() == lower.len() && name.eq_ignore_ascii_case(lower)
}

/// `Connection`'s tokens.
fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(|t| t.trim_ascii()).filter(|t| !t.is_empty())
}

/// A `Content-Length` value: digits only.
fn length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Whether a header value is visible ASCII (what `HeaderValue::to_str` accepts).
fn visible(v: &[u8]) -> Option<&str> {
    v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)).then(|| std::str::from_utf8(v).ok()).flatten()
}

/// Scans a message's headers; `None` when they need hyper (or, for a response, are invalid).
fn scan<'a>(headers: &[httparse::Header<'a>], request: bool) -> Option<Scan<'a>> {
    let mut s = Scan::default();
    for hd in headers {
        let (n, v) = (hd.name, hd.value);
        if is(n, "content-length") {
            let l = length(v)?;
            if s.length.is_some_and(|p| p != l) {
                return None;
            }
            s.length = Some(l);
        } else if is(n, "transfer-encoding") {
            // A request: only a single `chunked` (hyper's path judges anything else). A
            // response: chunked when that is its last coding (`gzip, chunked`).
            let last_chunked = v
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            let only_chunked = v.trim_ascii().eq_ignore_ascii_case(b"chunked");
            if s.chunked || s.other_coding || !(if request { only_chunked } else { last_chunked }) {
                if request {
                    return None;
                }
                s.chunked = false;
                s.other_coding = true;
                continue;
            }
            s.chunked = true;
            s.coding = Some(v);
        } else if is(n, "connection") {
            for t in tokens(v) {
                if t.eq_ignore_ascii_case(b"close") {
                    s.close = true;
                } else if t.eq_ignore_ascii_case(b"upgrade") && request {
                    return None;
                } else if !t.eq_ignore_ascii_case(b"keep-alive") {
                    s.named.push(t);
                }
            }
        } else if request && (is(n, "upgrade") || is(n, "expect")) {
            return None;
        } else if request && is(n, "host") {
            s.host.get_or_insert(v);
        } else if request && is(n, "x-forwarded-for") {
            s.xff.get_or_insert(v);
        } else if request && is(n, "x-amzn-trace-id") {
            s.trace.get_or_insert(v);
        } else if !request && is(n, "date") {
            s.has_date = true;
        }
    }
    if request && s.chunked && s.length.is_some() {
        return None;
    }
    Some(s)
}

/// Whether the rules look at headers (then a `HeaderMap` is built for them).
fn rules_read_headers(table: &Table) -> bool {
    table.rules.iter().any(|r| r.conditions.iter().any(|c| matches!(c, Condition::HttpHeader { .. })))
}

/// Parses the head at the start of `buf` and decides what to do with it; the bytes to write
/// (an own answer, or the head for the target) go to `out`.
fn plan(
    buf: &[u8],
    table: &Arc<Table>,
    peer: SocketAddr,
    peer_ip: &str,
    shared: &Shared,
    out: &mut Vec<u8>,
) -> Parsed {
    let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut hs);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Fallback,
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Parsed::Fallback;
    };
    if !target.starts_with('/') {
        return Parsed::Fallback;
    }
    // Validated as hyper's path does it (which answers 400 where this fails).
    let Ok(pq) = PathAndQuery::try_from(target) else { return Parsed::Fallback };
    let headers = &*req.headers;
    let Some(s) = scan(headers, true) else { return Parsed::Fallback };
    let has_body = s.chunked || s.length.is_some_and(|l| l > 0);
    let host = s.host.and_then(visible);

    let map;
    let empty = HeaderMap::new();
    let view_headers = if rules_read_headers(table) {
        map = header_map(headers);
        &map
    } else {
        &empty
    };
    let chosen = {
        let view = RequestView {
            method,
            path: pq.path(),
            query: pq.query(),
            host: host.map(h::strip_port),
            headers: view_headers,
            source: peer.ip(),
        };
        table.rules.iter().position(|r| matches_all(&r.conditions, &view))
    };
    let act = chosen.map(|i| &table.rules[i].action);
    let fplan = match act {
        Some(Act::Forward(p)) => p,
        // Answered here, with a body still to skip: hyper's path does that.
        _ if has_body => return Parsed::Fallback,
        None => {
            table.counters.own.requests.fetch_add(1, Relaxed);
            let r = h::elb_error(table, StatusCode::SERVICE_UNAVAILABLE);
            return own(out, &r, head_len, s.close, shared);
        }
        Some(Act::Fixed(f)) => {
            table.counters.own.requests.fetch_add(1, Relaxed);
            let r = h::fixed(table, f);
            return own(out, &r, head_len, s.close, shared);
        }
        Some(Act::Redirect(r)) => {
            table.counters.own.requests.fetch_add(1, Relaxed);
            let req = http::Request::builder().uri(http::Uri::from(pq.clone())).body(()).unwrap_or_default();
            let location =
                h::redirect_location(r, "HTTP", host.map(h::strip_port).unwrap_or(""), table.port, &req);
            let resp = h::redirect(table, r, location);
            return own(out, &resp, head_len, s.close, shared);
        }
    };
    if fplan.groups.iter().any(|w| w.group.settings().http2) {
        return Parsed::Fallback;
    }
    let cookies = Cookies(
        headers.iter().filter(|hd| is(hd.name, "cookie")).filter_map(|hd| visible(hd.value)).collect(),
    );
    let sticky_group = fplan.stickiness.and_then(|_| cookies.key("AWSALBTG")).and_then(|k| fplan.sticky(k));
    let gi = sticky_group.or_else(|| fplan.choose());
    let Some(gi) = gi else {
        if has_body {
            return Parsed::Fallback;
        }
        table.counters.own.requests.fetch_add(1, Relaxed);
        let r = h::elb_error(table, StatusCode::SERVICE_UNAVAILABLE);
        return own(out, &r, head_len, s.close, shared);
    };
    let weighted = &fplan.groups[gi];
    let settings = weighted.group.settings();
    let sticky_target = match &settings.stickiness {
        Some(Stickiness::LbCookie { .. }) => cookies.key("AWSALB"),
        Some(Stickiness::AppCookie { .. }) => cookies.key("AWSALBAPP-0"),
        _ => None,
    };
    let member = weighted.group.pick(sticky_target);
    if member.is_none() && has_body {
        return Parsed::Fallback;
    }
    table.counters.own.requests.fetch_add(1, Relaxed);
    weighted.counters.requests.fetch_add(1, Relaxed);
    let Some(member) = member else {
        let r = h::elb_error(table, StatusCode::SERVICE_UNAVAILABLE);
        return own(out, &r, head_len, s.close, shared);
    };
    let guard = member.start();

    let body = target_head(out, method, target, headers, &s, table, &member, peer_ip, shared);
    Parsed::Plan(Plan::Forward(Box::new(Forward {
        table: table.clone(),
        plan: fplan.clone(),
        gi,
        stickiness: settings.stickiness.clone(),
        member,
        guard,
        head_len,
        body,
        close: s.close,
        head_request: method == "HEAD",
        idempotent: matches!(method, "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"),
    })))
}

/// Writes the head for the target to `out`: HTTP/1.1 in origin form, without this hop's
/// headers, with X-Forwarded-For (as the table's mode says), -Proto and -Port and
/// X-Amzn-Trace-Id, and the body's framing, which it returns.
#[allow(clippy::too_many_arguments)]
fn target_head(
    out: &mut Vec<u8>,
    method: &str,
    target: &str,
    headers: &[httparse::Header<'_>],
    s: &Scan<'_>,
    table: &Table,
    member: &Member,
    peer_ip: &str,
    shared: &Shared,
) -> Framing {
    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let xff_replaced = table.xff != XffMode::Preserve;
    for hd in headers {
        let n = hd.name;
        if hop_by_hop(n.as_bytes())
            || s.named.iter().any(|t| t.eq_ignore_ascii_case(n.as_bytes()))
            || (xff_replaced && is(n, "x-forwarded-for"))
            || is(n, "x-forwarded-proto")
            || is(n, "x-forwarded-port")
            || is(n, "x-amzn-trace-id")
        {
            continue;
        }
        line(out, n.as_bytes(), hd.value);
    }
    if s.host.is_none() {
        line(out, b"host", member.authority.as_str().as_bytes());
    }
    if table.xff == XffMode::Append {
        out.extend_from_slice(b"x-forwarded-for: ");
        if let Some(prior) = s.xff.filter(|p| !p.is_empty()) {
            out.extend_from_slice(prior);
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(peer_ip.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"x-forwarded-proto: http\r\nx-forwarded-port: ");
    decimal(out, u64::from(table.port));
    out.extend_from_slice(b"\r\nx-amzn-trace-id: ");
    shared.trace_value(s.trace, out);
    out.extend_from_slice(b"\r\n");
    let framing = if s.chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        Framing::Chunked
    } else if let Some(l) = s.length {
        out.extend_from_slice(b"content-length: ");
        decimal(out, l);
        out.extend_from_slice(b"\r\n");
        if l > 0 { Framing::Length(l) } else { Framing::None }
    } else {
        Framing::None
    };
    out.extend_from_slice(b"\r\n");
    framing
}

/// Writes `n` in decimal, without allocating.
fn decimal(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn header_map(headers: &[httparse::Header<'_>]) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(headers.len());
    for hd in headers {
        if let (Ok(n), Ok(v)) =
            (HeaderName::from_bytes(hd.name.as_bytes()), HeaderValue::from_bytes(hd.value))
        {
            map.append(n, v);
        }
    }
    map
}

/// The load balancer's own answer, serialized to `out`.
fn own(out: &mut Vec<u8>, r: &Response<Body>, head_len: usize, close: bool, shared: &Shared) -> Parsed {
    out.clear();
    let status = r.status();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (n, v) in r.headers() {
        line(out, n.as_str().as_bytes(), v.as_bytes());
    }
    let body: &[u8] = match r.body() {
        Body::Full(Some(b)) => b,
        _ => b"",
    };
    out.extend_from_slice(b"content-length: ");
    decimal(out, body.len() as u64);
    out.extend_from_slice(b"\r\n");
    if !r.headers().contains_key(header::DATE) {
        date(out, shared);
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    Parsed::Plan(Plan::Own { head_len, close })
}

/// A `date` header line, formatted once a second per thread.
fn date(out: &mut Vec<u8>, shared: &Shared) {
    thread_local! {
        static DATE: std::cell::RefCell<(i64, String)> = const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    let secs = shared.clock.now().0.div_euclid(1000);
    DATE.with_borrow_mut(|(at, s)| {
        if *at != secs {
            *at = secs;
            *s = h::http_date(secs);
        }
        line(out, b"date", s.as_bytes());
    });
}

/// Why a target gave no answer.
enum Failure {
    /// No connection to it.
    Connect,
    /// The connection failed, or the answer was not HTTP.
    Target,
    /// The client went away mid-body.
    Client,
    /// The client's chunked body is not chunked encoding: 400, as hyper's path (and the ALB)
    /// answers a malformed request, and the connection closes.
    BadBody,
}

/// What the target answered: its head for the client is in `out`.
struct Answer {
    socket: TcpStream,
    status: u16,
    body: Framing,
    /// The target keeps the connection open after this answer.
    target_keeps: bool,
}

/// Forwards one request and relays its answer. Whether the client connection stays open.
async fn forward(
    f: Forward,
    client: &mut TcpStream,
    buf: &mut BytesMut,
    tbuf: &mut BytesMut,
    out: &mut Vec<u8>,
    shared: &Shared,
) -> bool {
    buf.advance(f.head_len);
    let table = f.table.clone();
    let weighted = &f.plan.groups[f.gi];
    // The first write carries what of the body is already here.
    let mut chunks = Chunks::default();
    let mut left = 0u64;
    let mut body_open = false;
    let mut bad_body = false;
    match f.body {
        Framing::Length(n) => {
            let k = buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
            out.extend_from_slice(&buf[..k]);
            buf.advance(k);
            left = n - k as u64;
            body_open = left > 0;
        }
        Framing::Chunked => match chunks.feed(buf) {
            Ok(Some(k)) => {
                out.extend_from_slice(&buf[..k]);
                buf.advance(k);
            }
            Ok(None) => {
                out.extend_from_slice(buf);
                buf.clear();
                body_open = true;
            }
            Err(()) => bad_body = true,
        },
        Framing::None | Framing::Close => {}
    }
    let had_body = f.body != Framing::None;
    let started = h::stopwatch();
    let sent = if bad_body {
        // Nothing of it goes to a target.
        Ok(Err(Failure::BadBody))
    } else {
        tokio::time::timeout(
            table.idle_timeout,
            exchange(&f, client, buf, tbuf, out, body_open, left, &mut chunks, shared),
        )
        .await
    };
    let status = match sent {
        Ok(Ok(answer)) => return relay(f, answer, client, tbuf, out, started).await,
        Ok(Err(Failure::Client)) => return false,
        Ok(Err(Failure::Connect)) => {
            weighted.counters.target_connection_errors.fetch_add(1, Relaxed);
            table.counters.own.target_connection_errors.fetch_add(1, Relaxed);
            StatusCode::BAD_GATEWAY
        }
        Ok(Err(Failure::Target)) => StatusCode::BAD_GATEWAY,
        Ok(Err(Failure::BadBody)) => StatusCode::BAD_REQUEST,
        Err(_) => StatusCode::GATEWAY_TIMEOUT,
    };
    tracing::debug!(target = %f.member.target.address, %status, "answered by the load balancer");
    drop(f.guard);
    // A body not read to its end: the connection closes after the answer.
    let close = f.close || had_body;
    own(out, &h::elb_error(&table, status), 0, close, shared);
    if client.write_all(out).await.is_err() {
        return false;
    }
    if close && had_body {
        linger(client, buf).await;
    }
    !close
}

/// Closes the sending side and reads what the client still sends for a while, so that it reads
/// the answer rather than a reset.
async fn linger(client: &mut TcpStream, buf: &mut BytesMut) {
    let _ = client.shutdown().await;
    let _ = tokio::time::timeout(LINGER, async {
        let mut read = 0;
        while read < LINGER_BYTES {
            buf.clear();
            buf.reserve(READ_SIZE);
            match client.read_buf(buf).await {
                Ok(n) if n > 0 => read += n,
                _ => return,
            }
        }
    })
    .await;
}

/// Sends the request (its head and what of the body was here in `out`, the rest as the client
/// sends it) and reads the answer's head, whose version for the client goes to `out`.
#[allow(clippy::too_many_arguments)]
async fn exchange(
    f: &Forward,
    client: &mut TcpStream,
    buf: &mut BytesMut,
    tbuf: &mut BytesMut,
    out: &mut Vec<u8>,
    mut body_open: bool,
    mut left: u64,
    chunks: &mut Chunks,
    shared: &Shared,
) -> Result<Answer, Failure> {
    // Sent again on another connection when a reused one turns out closed before any answer.
    let retry = !body_open && f.idempotent;
    'connection: loop {
        let (mut socket, reused) = match f.member.take_socket(!retry) {
            Some(s) => (s, true),
            None => match Box::pin(crate::pool::connect_socket(&f.member)).await {
                Some(s) => (s, false),
                None => return Err(Failure::Connect),
            },
        };
        if socket.write_all(out).await.is_err() {
            if reused && retry {
                continue;
            }
            return Err(Failure::Target);
        }
        while body_open {
            buf.clear();
            buf.reserve(READ_SIZE);
            match client.read_buf(buf).await {
                Ok(n) if n > 0 => {}
                _ => return Err(Failure::Client),
            }
            let k = if left > 0 {
                let k = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                left -= k as u64;
                body_open = left > 0;
                k
            } else {
                match chunks.feed(buf) {
                    Ok(Some(k)) => {
                        body_open = false;
                        k
                    }
                    Ok(None) => buf.len(),
                    Err(()) => return Err(Failure::BadBody),
                }
            };
            if socket.write_all(&buf[..k]).await.is_err() {
                return Err(Failure::Target);
            }
            buf.advance(k);
        }
        tbuf.clear();
        let mut answered = false;
        loop {
            if !tbuf.is_empty() {
                match response_head(tbuf, out, f, shared) {
                    Head::Partial if tbuf.len() < MAX_RESPONSE_HEAD => {}
                    Head::Partial | Head::Invalid => return Err(Failure::Target),
                    Head::Informational(n) => {
                        tbuf.advance(n);
                        continue;
                    }
                    Head::Done { head_len, status, body, target_keeps } => {
                        tbuf.advance(head_len);
                        return Ok(Answer { socket, status, body, target_keeps });
                    }
                }
            }
            if tbuf.capacity() - tbuf.len() < 1024 {
                tbuf.reserve(READ_SIZE);
            }
            match socket.read_buf(tbuf).await {
                Ok(n) if n > 0 => answered = true,
                _ if reused && retry && !answered => continue 'connection,
                _ => return Err(Failure::Target),
            }
        }
    }
}

enum Head {
    Partial,
    Invalid,
    /// A 1xx answer of this length, skipped.
    Informational(usize),
    Done {
        head_len: usize,
        status: u16,
        body: Framing,
        target_keeps: bool,
    },
}

/// Parses the target's answer head; when it is whole, writes the client's version to `out`:
/// without this hop's headers, with stickiness cookies and a date.
fn response_head(tbuf: &[u8], out: &mut Vec<u8>, f: &Forward, shared: &Shared) -> Head {
    let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut hs);
    let head_len = match resp.parse(tbuf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::Invalid,
    };
    let (Some(code), Some(version)) = (resp.code, resp.version) else { return Head::Invalid };
    if (100..200).contains(&code) {
        // The fast path sends no upgrades: a 101 answers nothing it asked.
        return if code == 101 { Head::Invalid } else { Head::Informational(head_len) };
    }
    let Ok(status) = StatusCode::from_u16(code) else { return Head::Invalid };
    let headers = &*resp.headers;
    let Some(s) = scan(headers, false) else { return Head::Invalid };
    let body = if f.head_request || code == 204 || code == 304 {
        Framing::None
    } else if s.other_coding {
        Framing::Close
    } else if s.chunked {
        Framing::Chunked
    } else {
        match s.length {
            Some(0) => Framing::None,
            Some(l) => Framing::Length(l),
            None => Framing::Close,
        }
    };
    let target_keeps = version == 1 && !s.close && body != Framing::Close;

    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    match resp.reason {
        Some(r) if !r.is_empty() => out.extend_from_slice(r.as_bytes()),
        _ => out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes()),
    }
    out.extend_from_slice(b"\r\n");
    for hd in headers {
        let n = hd.name.as_bytes();
        if hop_by_hop(n) || s.named.iter().any(|t| t.eq_ignore_ascii_case(n)) {
            continue;
        }
        line(out, n, hd.value);
    }
    match (body, s.length) {
        (Framing::Chunked, _) => line(out, b"transfer-encoding", s.coding.unwrap_or(b"chunked")),
        (Framing::Close, _) => {}
        (_, Some(l)) => {
            out.extend_from_slice(b"content-length: ");
            decimal(out, l);
            out.extend_from_slice(b"\r\n");
        }
        (_, None) => {}
    }
    if body == Framing::Close || f.close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    if f.stickiness.is_some() || f.plan.stickiness.is_some() {
        let mut cookies = HeaderMap::new();
        for hd in headers.iter().filter(|hd| is(hd.name, "set-cookie")) {
            if let Ok(v) = HeaderValue::from_bytes(hd.value) {
                cookies.append(header::SET_COOKIE, v);
            }
        }
        let before = cookies.len();
        let now = shared.clock.now().0;
        if let Some(st) = &f.stickiness {
            h::sticky_cookies(&mut cookies, st, &f.member, now);
        }
        if let Some(d) = f.plan.stickiness {
            let v = format!("{:016x}", f.plan.groups[f.gi].group.key);
            h::set_cookie(&mut cookies, "AWSALBTG", &v, now, d, false);
            h::set_cookie(&mut cookies, "AWSALBTGCORS", &v, now, d, true);
        }
        for v in cookies.get_all(header::SET_COOKIE).iter().skip(before) {
            line(out, b"set-cookie", v.as_bytes());
        }
    }
    if !s.has_date {
        date(out, shared);
    }
    out.extend_from_slice(b"\r\n");
    Head::Done { head_len, status: code, body, target_keeps }
}

/// Sends the answer's head (in `out`) and relays its body from the target; the connection goes
/// back to the target's idle ones when the body ended as framed.
async fn relay(
    f: Forward,
    mut answer: Answer,
    client: &mut TcpStream,
    tbuf: &mut BytesMut,
    out: &mut Vec<u8>,
    started: std::time::Instant,
) -> bool {
    let micros = started.elapsed().as_micros() as u64;
    f.plan.groups[f.gi].counters.target_response(answer.status, micros);
    f.table.counters.own.target_response(answer.status, micros);
    let idle = f.table.idle_timeout;
    let mut chunks = Chunks::default();
    let mut left = 0u64;
    let mut open = false;
    match answer.body {
        Framing::None => {}
        Framing::Length(n) => {
            let k = tbuf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
            out.extend_from_slice(&tbuf[..k]);
            tbuf.advance(k);
            left = n - k as u64;
            open = left > 0;
        }
        Framing::Chunked => match chunks.feed(tbuf) {
            Ok(Some(k)) => {
                out.extend_from_slice(&tbuf[..k]);
                tbuf.advance(k);
            }
            Ok(None) => {
                out.extend_from_slice(tbuf);
                tbuf.clear();
                open = true;
            }
            Err(()) => return false,
        },
        Framing::Close => {
            out.extend_from_slice(tbuf);
            tbuf.clear();
            open = true;
        }
    }
    if client.write_all(out).await.is_err() {
        return false;
    }
    while open {
        tbuf.clear();
        tbuf.reserve(READ_SIZE);
        let n = match tokio::time::timeout(idle, answer.socket.read_buf(tbuf)).await {
            Ok(Ok(n)) => n,
            _ => return false,
        };
        if n == 0 {
            // The end of an until-close body (the client connection closes after it), or a
            // body cut short: either way the connection to the target is done.
            return false;
        }
        let k = match answer.body {
            Framing::Length(_) => {
                let k = n.min(usize::try_from(left).unwrap_or(usize::MAX));
                left -= k as u64;
                open = left > 0;
                k
            }
            Framing::Chunked => match chunks.feed(tbuf) {
                Ok(Some(k)) => {
                    open = false;
                    k
                }
                Ok(None) => n,
                Err(()) => return false,
            },
            _ => n,
        };
        if client.write_all(&tbuf[..k]).await.is_err() {
            return false;
        }
        tbuf.advance(k);
    }
    if answer.target_keeps && tbuf.is_empty() {
        f.member.put_socket(answer.socket);
    }
    drop(f.guard);
    !f.close && answer.body != Framing::Close
}

/// Follows a chunked body (to relay it as it is) to find its end.
#[derive(Debug, Default)]
struct Chunks {
    state: ChunkState,
    size: u64,
    digits: u8,
    /// The current trailer line's length.
    line: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    Trailer,
    TrailerLf,
}

impl Chunks {
    /// Reads on through `data`: `Some(n)` when the body ends with `data[..n]`; an error when
    /// it is not chunked encoding.
    fn feed(&mut self, data: &[u8]) -> Result<Option<usize>, ()> {
        use ChunkState::*;
        let mut i = 0;
        while i < data.len() {
            if self.state == Data {
                let k = self.size.min((data.len() - i) as u64);
                i += k as usize;
                self.size -= k;
                if self.size == 0 {
                    self.state = DataCr;
                }
                continue;
            }
            let b = data[i];
            i += 1;
            self.state = match (self.state, b) {
                (Size, _) if b.is_ascii_hexdigit() => {
                    if self.digits == 16 {
                        return Err(());
                    }
                    self.digits += 1;
                    self.size = self.size << 4 | u64::from((b as char).to_digit(16).unwrap_or(0));
                    Size
                }
                (Size, b';' | b' ' | b'\t') if self.digits > 0 => Extension,
                (Size, b'\r') if self.digits > 0 => SizeLf,
                (Extension, b'\r') => SizeLf,
                (Extension, b'\n') => return Err(()),
                (Extension, _) => Extension,
                (SizeLf, b'\n') => {
                    self.digits = 0;
                    if self.size == 0 {
                        self.line = 0;
                        Trailer
                    } else {
                        Data
                    }
                }
                (DataCr, b'\r') => DataLf,
                (DataLf, b'\n') => Size,
                (Trailer, b'\r') => TrailerLf,
                (Trailer, _) => {
                    self.line += 1;
                    Trailer
                }
                (TrailerLf, b'\n') if self.line == 0 => return Ok(Some(i)),
                (TrailerLf, b'\n') => {
                    self.line = 0;
                    Trailer
                }
                _ => return Err(()),
            };
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end_of(pieces: &[&[u8]]) -> Result<Option<usize>, ()> {
        let mut c = Chunks::default();
        let mut total = 0;
        for p in pieces {
            if let Some(n) = c.feed(p)? {
                return Ok(Some(total + n));
            }
            total += p.len();
        }
        Ok(None)
    }

    #[test]
    fn chunked_bodies_end_where_they_end() {
        let body = b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\nGET /next";
        let whole = body.len() - b"GET /next".len();
        assert_eq!(end_of(&[body]), Ok(Some(whole)));
        // Split at every byte.
        for cut in 1..whole {
            assert_eq!(end_of(&[&body[..cut], &body[cut..]]), Ok(Some(whole)), "cut at {cut}");
        }
        let trailers = b"3\r\nabc\r\n0\r\nx-sum: 1\r\n\r\n";
        assert_eq!(end_of(&[trailers]), Ok(Some(trailers.len())));
        assert_eq!(end_of(&[b"3\r\nabc\r\n"]), Ok(None));
        assert_eq!(end_of(&[b"zz\r\n"]), Err(()));
        assert_eq!(end_of(&[b"3\r\nabcX"]), Err(()));
        assert_eq!(end_of(&[b"\r\n"]), Err(()));
        assert_eq!(end_of(&[b"11111111111111111\r\n"]), Err(()));
    }

    #[test]
    fn decimals() {
        for n in [0, 7, 10, 443, 65535, u64::MAX] {
            let mut out = b"x".to_vec();
            decimal(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes());
        }
    }

    #[test]
    fn response_codings() {
        let scan_response = |head: &str, f: &dyn Fn(&Scan<'_>)| {
            let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut hs);
            resp.parse(head.as_bytes()).unwrap();
            f(&scan(resp.headers, false).unwrap());
        };
        scan_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", &|s| {
            assert!(s.chunked && !s.other_coding);
            assert_eq!(s.coding, Some(&b"gzip, chunked"[..]));
        });
        scan_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", &|s| {
            assert!(!s.chunked && s.other_coding);
        });
        scan_response("HTTP/1.1 200 OK\r\nConnection: close, x-hop\r\nContent-Length: 2\r\n\r\n", &|s| {
            assert!(s.close && s.length == Some(2));
            assert_eq!(s.named, vec![&b"x-hop"[..]]);
        });
    }

    #[test]
    fn heads_that_go_to_hyper() {
        let parse = |head: &str| {
            let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut hs);
            req.parse(head.as_bytes()).unwrap();
            scan(req.headers, true).is_some()
        };
        assert!(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, x-drop\r\n\r\n"));
        assert!(parse("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n"));
        assert!(parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"));
        assert!(!parse("GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"));
        assert!(!parse("GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n"));
        assert!(!parse("POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"));
        assert!(!parse("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"));
        assert!(!parse("POST / HTTP/1.1\r\nContent-Length: -3\r\n\r\n"));
        assert!(!parse("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"));
        assert!(!parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"));
    }
}
