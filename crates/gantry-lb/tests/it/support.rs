//! Test backends (tiny hyper servers in-process), clients, and configuration helpers.

use bytes::Bytes;
use gantry_core::{SeededIds, SystemClock};
use gantry_lb::config::{Action, Config, Forward, Listener, Protocol, Target, TargetGroup};
use gantry_lb::{LoadBalancer, Options};
use gantry_ports::{MetricDatum, MetricSink};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const LB: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/50dc6c495c0c9188";
pub const NLB: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/tcp/60dc6c495c0c9188";

pub fn tg_arn(name: &str) -> String {
    format!("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/{name}/6d0ecf831eec9f09")
}

pub fn listener_arn(n: u16) -> String {
    format!("arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/50dc6c495c0c9188/{n:016x}")
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A metric sink that keeps what it is given.
#[derive(Default)]
pub struct Kept(pub Mutex<Vec<MetricDatum>>);

impl MetricSink for Kept {
    fn put(&self, data: Vec<MetricDatum>) {
        self.0.lock().unwrap().extend(data);
    }
}

pub fn load_balancer() -> (LoadBalancer, Arc<Kept>) {
    let sink = Arc::new(Kept::default());
    let lb = LoadBalancer::new(Options::default(), Arc::new(SystemClock), &SeededIds::new(7), sink.clone());
    (lb, sink)
}

/// A backend: answers with its name, echoes the forwarding headers, and obeys a few paths:
/// `/health` (the code in `health`), `/slow?ms=N`, `/status/N`, `/cookie` (sets `app=1`),
/// and WebSocket-style upgrades (echoes the upgraded bytes).
pub struct Backend {
    pub addr: SocketAddr,
    pub health: Arc<AtomicU16>,
    pub hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    pub fn target(&self) -> Target {
        Target::ip(self.addr)
    }

    /// Stops listening (and serving) at once.
    pub fn stop(&self) {
        self.task.abort();
    }
}

pub async fn backend(name: &str) -> Backend {
    backend_with(name, true).await
}

/// A backend that closes every connection after one response (HTTP/1.1 without keep-alive).
pub async fn closing_backend(name: &str) -> Backend {
    backend_with(name, false).await
}

async fn backend_with(name: &str, keep_alive: bool) -> Backend {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let health = Arc::new(AtomicU16::new(200));
    let hits = Arc::new(AtomicUsize::new(0));
    let (n, h, c) = (name.to_string(), health.clone(), hits.clone());
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (n, h, c) = (n.clone(), h.clone(), c.clone());
            conns.spawn(async move {
                let svc = hyper::service::service_fn(move |req| serve(req, n.clone(), h.clone(), c.clone()));
                if keep_alive {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(false)
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                }
            });
        }
    });
    Backend { addr, health, hits, task }
}

async fn serve(
    mut req: Request<Incoming>,
    name: String,
    health: Arc<AtomicU16>,
    hits: Arc<AtomicUsize>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    if path == "/health" {
        let code = StatusCode::from_u16(health.load(SeqCst)).unwrap();
        return Ok(Response::builder().status(code).body(Full::new(Bytes::new())).unwrap());
    }
    hits.fetch_add(1, SeqCst);
    if req.headers().contains_key(http::header::UPGRADE) {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 64];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        return Ok(Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(Full::new(Bytes::new()))
            .unwrap());
    }
    if path == "/slow" {
        let ms: u64 =
            req.uri().query().and_then(|q| q.strip_prefix("ms=")).and_then(|v| v.parse().ok()).unwrap_or(0);
        // The behaviour under test: a request that takes this long at the target.
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let status = path.strip_prefix("/status/").and_then(|s| s.parse().ok()).unwrap_or(200);
    let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let mut resp = Response::builder()
        .status(status)
        .header("x-backend", &name)
        .header("x-seen-xff", header("x-forwarded-for"))
        .header("x-seen-proto", header("x-forwarded-proto"))
        .header("x-seen-port", header("x-forwarded-port"))
        .header("x-seen-trace", header("x-amzn-trace-id"))
        .header("x-seen-host", header("host"))
        .header("x-seen-version", format!("{:?}", req.version()))
        .header(
            "x-seen-abc-bytes",
            (header("x-a").len() + header("x-b").len() + header("x-c").len()).to_string(),
        );
    if path == "/cookie" {
        resp = resp.header("set-cookie", "app=1; Path=/");
    }
    Ok(resp.body(Full::new(Bytes::from(name))).unwrap())
}

/// A TCP echo server.
pub async fn echo() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, task)
}

pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// A GET through the load balancer: status, headers, body.
pub async fn get(
    c: &HttpClient,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, http::HeaderMap, String) {
    let mut req = Request::get(format!("http://127.0.0.1:{port}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = c.request(req.body(Empty::new()).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// A target group with fast health checks on `/health`.
pub fn group(name: &str, targets: &[&Backend]) -> TargetGroup {
    let mut tg = TargetGroup::new(&tg_arn(name), Protocol::Http);
    tg.health_check.interval = Duration::from_millis(50);
    tg.health_check.timeout = Duration::from_millis(500);
    tg.health_check.healthy_threshold = 2;
    tg.health_check.unhealthy_threshold = 2;
    tg.health_check.path = "/health".into();
    tg.deregistration_delay = Duration::from_secs(30);
    tg.targets = targets.iter().map(|b| b.target()).collect();
    tg
}

pub fn forward(name: &str) -> Action {
    Action::Forward(Forward { target_groups: vec![(tg_arn(name), 1)], stickiness: None })
}

pub fn http_listener(n: u16, port: u16, default: Action) -> Listener {
    let mut l = Listener::new(&listener_arn(n), LB, port, Protocol::Http);
    l.default_actions = vec![default];
    l
}

pub fn config(listeners: Vec<Listener>, groups: Vec<TargetGroup>) -> Config {
    Config { listeners, target_groups: groups }
}

/// Waits for a condition, checking every 20 ms, for at most `secs` seconds.
pub async fn eventually(secs: u64, what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if cond().await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every target of the group is healthy.
pub async fn all_healthy(lb: &LoadBalancer, name: &str) {
    eventually(10, "healthy targets", async || {
        let h = lb.target_health(&tg_arn(name)).unwrap();
        !h.is_empty() && h.iter().all(|t| t.state == gantry_lb::State::Healthy)
    })
    .await;
}
