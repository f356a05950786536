//! An ALB listener's HTTP side: HTTP/1.1 with keep-alive and HTTP/2 (h2c, or ALPN `h2` over
//! TLS) from clients, rules evaluated per request, and the actions: forward (through a pooled
//! client to the target, WebSocket upgrades included), redirect and fixed-response. ALB's
//! headers (`X-Forwarded-*`, `X-Amzn-Trace-Id`), its stickiness cookies and its own error pages.

use crate::body::Body;
use crate::config::{FixedResponse, Redirect, Stickiness, XffMode};
use crate::group::{InFlight, Member};
use crate::pool;
use crate::rules::{RequestView, matches_all};
use crate::table::{Act, ForwardPlan, Slot, Table};
use bytes::Bytes;
use gantry_core::Clock;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// Why a target gave no answer.
enum SendError {
    Connect,
    Other,
}

/// What every connection of every listener shares: the client to HTTP/2 targets (HTTP/1 ones
/// have their own connections, `pool.rs`), the clock, trace IDs.
pub(crate) struct Shared {
    pub clock: Arc<dyn Clock>,
    http2: Client<HttpConnector, Incoming>,
    trace_seed: u64,
    trace_turn: AtomicU64,
}

impl Shared {
    pub fn new(clock: Arc<dyn Clock>, trace_seed: u64) -> Self {
        let connector = || {
            let mut c = HttpConnector::new();
            c.set_nodelay(true);
            c.set_connect_timeout(Some(Duration::from_secs(10)));
            c
        };
        let mut builder = Client::builder(TokioExecutor::new());
        builder.pool_timer(TokioTimer::new()).pool_idle_timeout(Duration::from_secs(60)).set_host(false);
        let http2 = builder.http2_only(true).timer(TokioTimer::new()).build(connector());
        Shared { clock, http2, trace_seed, trace_turn: AtomicU64::new(0) }
    }

    /// `Root=1-EPOCHHEX-96BITSHEX`, as ALB generates it (`prefix` is `Root` or `Self`).
    pub(crate) fn trace_id(&self, prefix: &[u8; 4]) -> [u8; 40] {
        let secs = (self.clock.now().0 / 1000) as u32;
        let n = self.trace_turn.fetch_add(1, Relaxed);
        let a = splitmix(self.trace_seed ^ n);
        let b = splitmix(a ^ n.rotate_left(32));
        let mut out = [0u8; 40];
        out[..4].copy_from_slice(prefix);
        out[4..7].copy_from_slice(b"=1-");
        hex(&mut out[7..15], u64::from(secs));
        out[15] = b'-';
        hex(&mut out[16..24], a >> 32);
        hex(&mut out[24..40], b);
        out
    }

    /// The `X-Amzn-Trace-Id` to forward, appended to `out`: an incoming trace ID with a Root
    /// keeps it and gains a Self field; anything else gets a new Root.
    pub(crate) fn trace_value(&self, incoming: Option<&[u8]>, out: &mut Vec<u8>) {
        match incoming {
            Some(t) if t.windows(5).any(|w| w == b"Root=") => {
                out.extend_from_slice(&self.trace_id(b"Self"));
                out.push(b';');
                out.extend_from_slice(t);
            }
            _ => out.extend_from_slice(&self.trace_id(b"Root")),
        }
    }
}

/// Headers of one hop, never forwarded (RFC 9110 §7.6.1 and the proxies' own), lowercase.
pub(crate) const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "keep-alive",
    "proxy-connection",
];

/// Writes the low `4 * out.len()` bits of `v` as lowercase hex.
fn hex(out: &mut [u8], v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let n = out.len();
    for (i, o) in out.iter_mut().enumerate() {
        *o = DIGITS[((v >> (4 * (n - 1 - i))) & 0xf) as usize];
    }
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One client connection.
struct Conn {
    slot: Arc<Slot>,
    shared: Arc<Shared>,
    peer: SocketAddr,
    /// The client's address as `X-Forwarded-For` carries it.
    peer_ip: HeaderValue,
    https: bool,
}

/// Which HTTP a client connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Http1,
    Http2,
    /// Not known yet: the first bytes tell (HTTP/2's preface or not).
    Detect,
}

/// HTTP/2's connection preface.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How much of a plain connection's first bytes one read takes (a usual request's head fits).
const FIRST_READ: usize = 4096;

/// A plain connection's mode, from its first bytes: read here (one read, where a peek would
/// need a second one for hyper) and handed back to be replayed through [`Rewind`]. `Detect`
/// while they are a strict prefix of HTTP/2's preface. `None` when the client closed first.
pub(crate) async fn sniff(stream: &mut tokio::net::TcpStream) -> Option<(Mode, bytes::BytesMut)> {
    use tokio::io::AsyncReadExt;
    let mut buf = bytes::BytesMut::with_capacity(FIRST_READ);
    let n = stream.read_buf(&mut buf).await.ok()?;
    if n == 0 {
        return None;
    }
    let m = n.min(PREFACE.len());
    let mode = if buf[..m] != PREFACE[..m] {
        Mode::Http1
    } else if m == PREFACE.len() {
        Mode::Http2
    } else {
        Mode::Detect
    };
    Some((mode, buf))
}

/// A stream whose first bytes were already read: they are read again first.
pub(crate) struct Rewind<T> {
    first: Bytes,
    inner: T,
}

impl<T> Rewind<T> {
    pub(crate) fn new(first: Bytes, inner: T) -> Self {
        Rewind { first, inner }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if !self.first.is_empty() {
            let n = self.first.len().min(buf.remaining());
            buf.put_slice(&self.first[..n]);
            if n == self.first.len() {
                // Frees the first read's buffer.
                self.first = Bytes::new();
            } else {
                bytes::Buf::advance(&mut self.first, n);
            }
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves HTTP/1.1 or HTTP/2 on a client connection until it closes.
pub(crate) async fn serve<IO>(
    io: IO,
    peer: SocketAddr,
    slot: Arc<Slot>,
    shared: Arc<Shared>,
    https: bool,
    mode: Mode,
    idle: Duration,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer_ip = HeaderValue::try_from(peer.ip().to_canonical().to_string())
        .unwrap_or(HeaderValue::from_static("0.0.0.0"));
    let conn = Arc::new(Conn { slot, shared, peer, peer_ip, https });
    let service = hyper::service::service_fn(move |req| {
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(handle(req, &conn).await) }
    });
    let io = TokioIo::new(io);
    let result = match mode {
        Mode::Http1 => hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(idle)
            .keep_alive(true)
            .serve_connection(io, service)
            .with_upgrades()
            .await
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
        // Boxed: HTTP/1's future, the common one, stays as small as its own state.
        Mode::Http2 => Box::pin(
            hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .serve_connection(io, service),
        )
        .await
        .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
        Mode::Detect => {
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).header_read_timeout(idle).keep_alive(true);
            builder.http2().timer(TokioTimer::new());
            Box::pin(builder.serve_connection_with_upgrades(io, service)).await
        }
    };
    if let Err(e) = result {
        tracing::trace!(error = %e, %peer, "client connection ended");
    }
}

async fn handle(mut req: Request<Incoming>, conn: &Conn) -> Response<Body> {
    let table = conn.slot.table.load_full();
    table.counters.own.requests.fetch_add(1, Relaxed);
    let host = host_of(&req).map(str::to_owned);
    let chosen = {
        let view = RequestView {
            method: req.method().as_str(),
            path: req.uri().path(),
            query: req.uri().query(),
            host: host.as_deref().map(strip_port),
            headers: req.headers(),
            source: conn.peer.ip(),
        };
        table.rules.iter().position(|r| matches_all(&r.conditions, &view))
    };
    let Some(i) = chosen else { return elb_error(&table, StatusCode::SERVICE_UNAVAILABLE) };
    match &table.rules[i].action {
        Act::Fixed(f) => fixed(&table, f),
        Act::Redirect(r) => {
            let proto = if conn.https { "HTTPS" } else { "HTTP" };
            let location =
                redirect_location(r, proto, host.as_deref().map(strip_port).unwrap_or(""), table.port, &req);
            redirect(&table, r, location)
        }
        Act::Forward(plan) => {
            let plan = plan.clone();
            let upgrade = is_upgrade(req.headers()).then(|| hyper::upgrade::on(&mut req));
            forward(req, upgrade, &table, &plan, conn, host).await
        }
    }
}

/// The request's host: HTTP/2's `:authority`, else `Host`.
fn host_of<B>(req: &Request<B>) -> Option<&str> {
    req.uri()
        .authority()
        .map(Authority::as_str)
        .or_else(|| req.headers().get(header::HOST).and_then(|v| v.to_str().ok()))
}

pub(crate) fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    host.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map_or(host, |(h, _)| h)
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade"))))
}

/// Headers that belong to one hop, never forwarded (with those `Connection` names).
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

static TRACE: HeaderName = HeaderName::from_static("x-amzn-trace-id");
static XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
static XFPROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static XFPORT: HeaderName = HeaderName::from_static("x-forwarded-port");

async fn forward(
    req: Request<Incoming>,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
    table: &Table,
    plan: &ForwardPlan,
    conn: &Conn,
    host: Option<String>,
) -> Response<Body> {
    let cookies = Cookies::of(req.headers());
    let sticky_group = plan.stickiness.and_then(|_| cookies.key("AWSALBTG")).and_then(|k| plan.sticky(k));
    let Some(gi) = sticky_group.or_else(|| plan.choose()) else {
        return elb_error(table, StatusCode::SERVICE_UNAVAILABLE);
    };
    let weighted = &plan.groups[gi];
    let group = &weighted.group;
    weighted.counters.requests.fetch_add(1, Relaxed);
    let settings = group.settings();
    let sticky_target = match &settings.stickiness {
        Some(Stickiness::LbCookie { .. }) => cookies.key("AWSALB"),
        Some(Stickiness::AppCookie { .. }) => cookies.key("AWSALBAPP-0"),
        _ => None,
    };
    let Some(member) = group.pick(sticky_target) else {
        return elb_error(table, StatusCode::SERVICE_UNAVAILABLE);
    };
    let guard = member.start();

    let (mut parts, body) = req.into_parts();
    let upgrade_value = upgrade.as_ref().and_then(|_| parts.headers.get(header::UPGRADE).cloned());
    strip_hop_by_hop(&mut parts.headers);
    if let Some(v) = upgrade_value {
        // A WebSocket handshake is passed on, with its hop-by-hop headers.
        parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, v);
    }
    add_forwarded(&mut parts.headers, conn, table, &conn.shared);
    if parts.version == Version::HTTP_2
        && let Some(h) = host.as_deref().and_then(|h| HeaderValue::from_str(h).ok())
    {
        parts.headers.insert(header::HOST, h);
    }
    let started = stopwatch();
    let answer = if settings.http2 {
        parts.version = Version::HTTP_2;
        parts.uri = target_uri(&member, parts.uri.path_and_query());
        let request = Request::from_parts(parts, body);
        let sent =
            Box::pin(tokio::time::timeout(table.idle_timeout, conn.shared.http2.request(request))).await;
        sent.map(|r| {
            r.map(|r| (r, None))
                .map_err(|e| if e.is_connect() { SendError::Connect } else { SendError::Other })
        })
    } else {
        // HTTP/1.1 in origin form, on one of the target's own connections.
        parts.version = Version::HTTP_11;
        parts.uri =
            Uri::from(parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/")));
        if !parts.headers.contains_key(header::HOST)
            && let Ok(h) = HeaderValue::from_str(member.authority.as_str())
        {
            parts.headers.insert(header::HOST, h);
        }
        let request = Request::from_parts(parts, body);
        let sent = tokio::time::timeout(table.idle_timeout, pool::send(&member, request)).await;
        sent.map(|r| {
            r.map(|(r, sender)| (r, Some(sender))).map_err(|e| match e {
                pool::SendError::Connect => SendError::Connect,
                pool::SendError::Failed(e) => {
                    tracing::debug!(error = %e, "target failed");
                    SendError::Other
                }
            })
        })
    };
    let (mut response, sender) = match answer {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::debug!(target = %member.target.address, "target failed");
            if matches!(e, SendError::Connect) {
                weighted.counters.target_connection_errors.fetch_add(1, Relaxed);
                table.counters.own.target_connection_errors.fetch_add(1, Relaxed);
            }
            return elb_error(table, StatusCode::BAD_GATEWAY);
        }
        Err(_) => return elb_error(table, StatusCode::GATEWAY_TIMEOUT),
    };
    let micros = started.elapsed().as_micros() as u64;
    let status = response.status().as_u16();
    weighted.counters.target_response(status, micros);
    table.counters.own.target_response(status, micros);

    if status == 101
        && let Some(client_side) = upgrade
    {
        let target_side = hyper::upgrade::on(&mut response);
        tokio::spawn(tunnel(client_side, target_side, guard));
        return response.map(|_| Body::empty());
    }
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let now = conn.shared.clock.now().0;
    if let Some(stickiness) = &settings.stickiness {
        sticky_cookies(&mut parts.headers, stickiness, &member, now);
    }
    if let Some(d) = plan.stickiness {
        let v = format!("{:016x}", group.key);
        set_cookie(&mut parts.headers, "AWSALBTG", &v, now, d, false);
        set_cookie(&mut parts.headers, "AWSALBTGCORS", &v, now, d, true);
    }
    let connection = sender.map(|s| (s, member.clone()));
    Response::from_parts(parts, Body::Proxied { inner: body, guard: Some(guard), connection })
}

/// Starts timing a target's answer (TargetResponseTime), for both HTTP paths.
pub(crate) fn stopwatch() -> std::time::Instant {
    std::time::Instant::now()
}

fn target_uri(member: &Member, pq: Option<&PathAndQuery>) -> Uri {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(member.authority.clone());
    parts.path_and_query = Some(pq.cloned().unwrap_or_else(|| PathAndQuery::from_static("/")));
    Uri::from_parts(parts).unwrap_or_default()
}

/// `X-Forwarded-For` (appended), `-Proto`, `-Port` and `X-Amzn-Trace-Id`.
fn add_forwarded(headers: &mut HeaderMap, conn: &Conn, table: &Table, shared: &Shared) {
    let port = table.port;
    match table.xff {
        XffMode::Append => match headers.get(&XFF).map(HeaderValue::as_bytes) {
            Some(prior) if !prior.is_empty() => {
                let mut v = Vec::with_capacity(prior.len() + 2 + conn.peer_ip.len());
                v.extend_from_slice(prior);
                v.extend_from_slice(b", ");
                v.extend_from_slice(conn.peer_ip.as_bytes());
                if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(v)) {
                    headers.insert(&XFF, v);
                }
            }
            _ => {
                headers.insert(&XFF, conn.peer_ip.clone());
            }
        },
        XffMode::Preserve => {}
        XffMode::Remove => {
            headers.remove(&XFF);
        }
    }
    headers.insert(&XFPROTO, HeaderValue::from_static(if conn.https { "https" } else { "http" }));
    headers.insert(&XFPORT, HeaderValue::from(port));
    let incoming = headers.get(&TRACE).map(HeaderValue::as_bytes);
    let mut trace = Vec::with_capacity(41 + incoming.map_or(0, <[u8]>::len));
    shared.trace_value(incoming, &mut trace);
    if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(trace)) {
        headers.insert(&TRACE, v);
    }
}

async fn tunnel(client: hyper::upgrade::OnUpgrade, target: hyper::upgrade::OnUpgrade, guard: InFlight) {
    let (client, target) = tokio::join!(client, target);
    if let (Ok(client), Ok(target)) = (client, target) {
        let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(target)).await;
    }
    drop(guard);
}

/// The client's cookies.
pub(crate) struct Cookies<'a>(pub(crate) Vec<&'a str>);

impl<'a> Cookies<'a> {
    fn of(headers: &'a HeaderMap) -> Self {
        Cookies(headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).collect())
    }

    fn get(&self, name: &str) -> Option<&'a str> {
        self.0.iter().flat_map(|h| h.split(';')).find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then_some(v)
        })
    }

    /// A stickiness key (16 hex digits).
    pub(crate) fn key(&self, name: &str) -> Option<u64> {
        self.get(name).and_then(|v| u64::from_str_radix(v, 16).ok())
    }
}

pub(crate) fn sticky_cookies(headers: &mut HeaderMap, stickiness: &Stickiness, member: &Member, now: i64) {
    let v = format!("{:016x}", member.key);
    match stickiness {
        Stickiness::LbCookie { duration } => {
            set_cookie(headers, "AWSALB", &v, now, *duration, false);
            set_cookie(headers, "AWSALBCORS", &v, now, *duration, true);
        }
        Stickiness::AppCookie { cookie_name, duration } => {
            let prefix = format!("{cookie_name}=");
            let sets_it = headers
                .get_all(header::SET_COOKIE)
                .iter()
                .any(|c| c.to_str().is_ok_and(|c| c.trim_start().starts_with(&prefix)));
            if sets_it {
                set_cookie(headers, "AWSALBAPP-0", &v, now, *duration, false);
            }
        }
        Stickiness::SourceIp => {}
    }
}

pub(crate) fn set_cookie(
    headers: &mut HeaderMap,
    name: &str,
    value: &str,
    now_ms: i64,
    duration: Duration,
    cors: bool,
) {
    let expires = http_date(now_ms / 1000 + duration.as_secs() as i64);
    let extra = if cors { "; SameSite=None; Secure" } else { "" };
    if let Ok(v) = HeaderValue::from_str(&format!("{name}={value}; Expires={expires}; Path=/{extra}")) {
        headers.append(header::SET_COOKIE, v);
    }
}

/// `Tue, 15 Nov 1994 08:12:31 GMT`.
pub(crate) fn http_date(epoch_secs: i64) -> String {
    let days = epoch_secs.div_euclid(86_400);
    let secs = epoch_secs.rem_euclid(86_400);
    let (y, m, d) = gantry_core::civil::civil_from_days(days);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        [(m - 1) as usize];
    format!("{weekday}, {d:02} {month} {y} {:02}:{:02}:{:02} GMT", secs / 3600, secs / 60 % 60, secs % 60)
}

fn own_response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Body::full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::SERVER, HeaderValue::from_static("awselb/2.0"));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// ALB's own error page.
pub(crate) fn elb_error(table: &Table, status: StatusCode) -> Response<Body> {
    table.counters.own.elb_response(status.as_u16());
    let title = match status.as_u16() {
        502 => "502 Bad Gateway",
        503 => "503 Service Temporarily Unavailable",
        504 => "504 Gateway Time-out",
        400 => "400 Bad Request",
        _ => status.canonical_reason().unwrap_or("Error"),
    };
    let body = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n</body>\r\n</html>\r\n"
    );
    own_response(status, "text/html", Bytes::from(body))
}

pub(crate) fn fixed(table: &Table, f: &FixedResponse) -> Response<Body> {
    table.counters.own.fixed_responses.fetch_add(1, Relaxed);
    let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::OK);
    table.counters.own.elb_response(f.status);
    let mut r = Response::new(Body::full(f.body.clone().unwrap_or_default()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::SERVER, HeaderValue::from_static("awselb/2.0"));
    if let Some(ct) = f.content_type.as_deref().and_then(|c| HeaderValue::from_str(c).ok()) {
        r.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    r
}

pub(crate) fn redirect(table: &Table, r: &Redirect, location: String) -> Response<Body> {
    table.counters.own.redirects.fetch_add(1, Relaxed);
    let status = if r.permanent { StatusCode::MOVED_PERMANENTLY } else { StatusCode::FOUND };
    table.counters.own.elb_response(status.as_u16());
    let title = if r.permanent { "301 Moved Permanently" } else { "302 Found" };
    let body = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n</body>\r\n</html>\r\n"
    );
    let mut resp = own_response(status, "text/html", Bytes::from(body));
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// The `Location` of a redirect: each part with `#{protocol}`, `#{host}`, `#{port}`, `#{path}`
/// (without its leading `/`) and `#{query}` replaced by the request's; the port left out when it
/// is the protocol's default.
pub(crate) fn redirect_location<B>(
    r: &Redirect,
    protocol: &str,
    host: &str,
    port: u16,
    req: &Request<B>,
) -> String {
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    let port = port.to_string();
    let subst = |s: &str| {
        s.replace("#{protocol}", protocol)
            .replace("#{host}", host)
            .replace("#{port}", &port)
            .replace("#{path}", path.strip_prefix('/').unwrap_or(path))
            .replace("#{query}", query)
    };
    let scheme = subst(&r.protocol).to_ascii_lowercase();
    let to_port = subst(&r.port);
    let default_port = matches!((scheme.as_str(), to_port.as_str()), ("http", "80") | ("https", "443"));
    let mut location = format!("{scheme}://{}", subst(&r.host));
    if !default_port && !to_port.is_empty() {
        location.push(':');
        location.push_str(&to_port);
    }
    location.push_str(&subst(&r.path));
    let q = subst(&r.query);
    if !q.is_empty() {
        location.push('?');
        location.push_str(&q);
    }
    location
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(r: &Redirect, proto: &str, port: u16, uri: &str) -> String {
        let req = Request::builder().uri(uri).body(()).unwrap();
        redirect_location(r, proto, "example.com", port, &req)
    }

    #[test]
    fn redirects() {
        let https =
            Redirect { protocol: "HTTPS".into(), port: "443".into(), permanent: true, ..Redirect::default() };
        assert_eq!(location(&https, "HTTP", 80, "/a/b?x=1"), "https://example.com/a/b?x=1");
        assert_eq!(location(&Redirect::default(), "HTTP", 8080, "/"), "http://example.com:8080/");
        let moved = Redirect {
            host: "new.#{host}".into(),
            path: "/v2/#{path}".into(),
            query: "".into(),
            ..Redirect::default()
        };
        assert_eq!(location(&moved, "HTTPS", 443, "/x?q"), "https://new.example.com/v2/x");
        let odd = Redirect {
            port: "8443".into(),
            protocol: "HTTPS".into(),
            query: "#{query}&from=lb".into(),
            ..Redirect::default()
        };
        assert_eq!(location(&odd, "HTTP", 80, "/p?a=1"), "https://example.com:8443/p?a=1&from=lb");
    }

    #[tokio::test]
    async fn rewind_replays_the_first_read_then_reads_on() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(64);
        let mut io = Rewind::new(Bytes::from_static(b"GET / HT"), server);
        let mut buf = [0u8; 5];
        io.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"GET /");
        client.write_all(b"TP/1.1\r\n").await.unwrap();
        let mut rest = [0u8; 11];
        io.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b" HTTP/1.1\r\n");
        io.write_all(b"ok").await.unwrap();
        let mut answer = [0u8; 2];
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"ok");
    }

    #[test]
    fn hosts_without_ports() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
    }

    #[test]
    fn dates() {
        assert_eq!(http_date(784_887_151), "Tue, 15 Nov 1994 08:12:31 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    }

    #[test]
    fn cookies() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1; AWSALB=00000000000000ff".parse().unwrap());
        h.append(header::COOKIE, "AWSALBTG=zz".parse().unwrap());
        let c = Cookies::of(&h);
        assert_eq!(c.key("AWSALB"), Some(255));
        assert_eq!(c.key("AWSALBTG"), None);
        assert_eq!(c.get("a"), Some("1"));
    }
}
