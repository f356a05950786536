//! How the agent talks to the control plane. [`ControlClient`] is the contract; [`HttpClient`]
//! speaks it over HTTP to a Gantry server, exactly as a remote agent would (the in-process agent
//! of `gantry up` uses it too, over loopback).

use crate::runtime::BoxFuture;
use gantry_core::protocol::{
    AgentUpdateReport, Assignments, FargateRegistration, PollRequest, SecretsRequest, SecretsResponse,
    TaskCredentials, TaskCredentialsRequest, TaskHealthReport, TaskStatsReport,
};
use gantry_core::{Clock, Secret, SystemClock};
use gantry_model::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an ECS error.
    #[error("{kind}: {message}")]
    Api { kind: String, message: String },
    /// The server could not be reached or answered garbage.
    #[error("control plane unreachable: {0}")]
    Transport(String),
}

pub type ClientResult<T> = Result<T, ClientError>;

/// The control-plane calls an agent makes.
pub trait ControlClient: Send + Sync + 'static {
    /// Long-polls for the node's assignments.
    fn poll<'a>(&'a self, req: &'a PollRequest) -> BoxFuture<'a, ClientResult<Assignments>>;
    /// Reports a task's state, its containers' states, or both.
    fn submit_task<'a>(&'a self, req: &'a SubmitTaskStateChangeRequest) -> BoxFuture<'a, ClientResult<()>>;
    fn report_health<'a>(&'a self, req: &'a TaskHealthReport) -> BoxFuture<'a, ClientResult<()>>;
    fn submit_attachments<'a>(
        &'a self,
        req: &'a SubmitAttachmentStateChangesRequest,
    ) -> BoxFuture<'a, ClientResult<()>>;
    /// The secrets of a task assigned to this node, resolved by the server from the task's
    /// definition (the ECS agent fetches them with the execution role). A client that has no
    /// server behind it (a test's) has none to give.
    fn task_secrets<'a>(&'a self, _req: &'a SecretsRequest) -> BoxFuture<'a, ClientResult<SecretsResponse>> {
        Box::pin(async { Ok(SecretsResponse::default()) })
    }
    /// The session credentials of a task's role (the task credentials endpoint serves them).
    /// Clients without a server behind them (test doubles) have none.
    fn task_credentials<'a>(
        &'a self,
        req: &'a TaskCredentialsRequest,
    ) -> BoxFuture<'a, ClientResult<TaskCredentials>> {
        Box::pin(async move {
            Err(ClientError::Transport(format!("no credentials for {} from this client", req.task_arn)))
        })
    }
    /// Passes an AWS API request from a task on to the server as it is (its signature covers
    /// its `host` header, which is kept): the front door as tasks reach it through the agent.
    /// Clients without a server behind them (test doubles) refuse it.
    fn forward(&self, req: Forwarded) -> BoxFuture<'_, ClientResult<Forwarded>> {
        let _ = req;
        Box::pin(async { Err(ClientError::Transport("this control-plane client forwards nothing".into())) })
    }
    /// Reports the node's tasks' resource use (AWS/ECS metrics). Clients without a server behind
    /// them (test doubles) drop it.
    fn report_stats<'a>(&'a self, _req: &'a TaskStatsReport) -> BoxFuture<'a, ClientResult<()>> {
        Box::pin(async { Ok(()) })
    }
    /// Connects the agent's end of an exec session (which the server pairs with the caller's)
    /// at `server` (the server holding the session, `http://host:port`), or, without one, at
    /// the server in use. Clients without a server behind them (test doubles) have none.
    fn exec_stream<'a>(
        &'a self,
        session_id: &'a str,
        node: &'a str,
        server: Option<&'a str>,
    ) -> BoxFuture<'a, ClientResult<ExecStream>> {
        let _ = (node, server);
        Box::pin(async move {
            Err(ClientError::Transport(format!(
                "this control-plane client cannot join exec session {session_id}"
            )))
        })
    }
    /// Reports the agent's progress through an update. Clients without a server behind them
    /// (test doubles) drop it.
    fn report_update<'a>(&'a self, _req: &'a AgentUpdateReport) -> BoxFuture<'a, ClientResult<()>> {
        Box::pin(async { Ok(()) })
    }
    /// Downloads the server's agent binary into `sink`: its SHA-256 and size as received.
    /// Clients without a server behind them (test doubles) have none.
    fn download_agent<'a>(&'a self, sink: crate::update::Sink) -> BoxFuture<'a, ClientResult<(String, u64)>> {
        let _ = sink;
        Box::pin(async {
            Err(ClientError::Transport("this control-plane client has no agent binary".into()))
        })
    }
    /// Calls a CloudWatch Logs operation (the awslogs driver): JSON in, JSON out. Clients
    /// without Logs (test doubles) refuse it.
    fn logs<'a>(
        &'a self,
        region: &'a str,
        op: &'a str,
        body: serde_json::Value,
    ) -> BoxFuture<'a, ClientResult<serde_json::Value>> {
        let _ = (region, body);
        Box::pin(async move {
            Err(ClientError::Transport(format!("this control-plane client cannot call Logs {op}")))
        })
    }
}

/// A byte stream both ways: an exec session's upgraded connection.
pub trait Duplex: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Duplex for T {}

/// An exec session's stream (see `gantry_core::exec` for what it carries).
pub type ExecStream = Box<dyn Duplex>;

/// The protocol an exec session's connection upgrades to (HTTP/1.1 `Upgrade`).
pub const EXEC_UPGRADE: &str = "gantry-exec";

/// An HTTP request or answer passed through the agent: the method (empty for an answer) and
/// path with query, or the status; headers; body.
#[derive(Debug, Clone, Default)]
pub struct Forwarded {
    pub method: String,
    pub path_and_query: String,
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: bytes::Bytes,
}

/// The key the client signs its requests with (SigV4, service `ecs`), as any ECS client does.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    pub access_key_id: String,
    pub secret: Secret,
    pub session_token: Option<Secret>,
}

impl ClientCredentials {
    /// A key no server knows: enough for a server whose auth is `open` (`gantry up`).
    pub fn anonymous() -> Self {
        ClientCredentials {
            access_key_id: "gantry-agent".into(),
            secret: Secret::new("gantry-agent"),
            session_token: None,
        }
    }

    /// The AWS SDKs' usual places, in their order: `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY` (with `AWS_SESSION_TOKEN`), then the profile `AWS_PROFILE`
    /// (default `default`) of the credentials file `AWS_SHARED_CREDENTIALS_FILE` (default
    /// `~/.aws/credentials`). None when neither has a key.
    pub fn from_environment() -> Option<Self> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let (Some(id), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            return Some(ClientCredentials {
                access_key_id: id,
                secret: Secret::new(secret),
                session_token: var("AWS_SESSION_TOKEN").map(Secret::new),
            });
        }
        let file = var("AWS_SHARED_CREDENTIALS_FILE")
            .map(std::path::PathBuf::from)
            .or_else(|| var("HOME").map(|h| std::path::Path::new(&h).join(".aws/credentials")))?;
        let profile = var("AWS_PROFILE").unwrap_or_else(|| "default".into());
        Self::from_file(&std::fs::read_to_string(file).ok()?, &profile)
    }

    /// The key of `profile` in the text of an AWS credentials file.
    pub fn from_file(text: &str, profile: &str) -> Option<Self> {
        let mut in_profile = false;
        let (mut id, mut secret, mut token) = (None, None, None);
        for line in text.lines().map(str::trim) {
            if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                in_profile = section.trim() == profile;
            } else if let (true, Some((k, v))) = (in_profile, line.split_once('=')) {
                let v = v.trim().to_string();
                match k.trim() {
                    "aws_access_key_id" => id = Some(v),
                    "aws_secret_access_key" => secret = Some(Secret::new(v)),
                    "aws_session_token" => token = Some(Secret::new(v)),
                    _ => {}
                }
            }
        }
        Some(ClientCredentials { access_key_id: id?, secret: secret?, session_token: token })
    }
}

/// The HTTP implementation. It may be given several servers (of one store): it talks to one at a
/// time and moves to the next when a request cannot reach it (connection refused or dropped, or
/// no answer within [`REQUEST_TIMEOUT`]), trying each once per request.
#[derive(Clone)]
pub struct HttpClient {
    endpoints: Arc<[Endpoint]>,
    /// The index of the endpoint in use, shared by the clones (a simulated fleet's agents move
    /// together).
    current: Arc<std::sync::atomic::AtomicUsize>,
    region: String,
    credentials: Arc<ClientCredentials>,
    clock: Arc<dyn Clock>,
    http: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    >,
}

/// One server: its URL and the `host[:port]` signed as the `host` header.
#[derive(Debug, Clone)]
struct Endpoint {
    base: String,
    authority: String,
}

impl Endpoint {
    /// A server's URL (`http://host:port`, a trailing `/` ignored) and its authority.
    fn parse(url: &str) -> Self {
        let base = url.trim().trim_end_matches('/');
        let authority =
            base.split_once("://").map_or(base, |(_, r)| r).split('/').next().unwrap_or("").to_string();
        Endpoint { base: base.to_string(), authority }
    }
}

/// How long a request may go unanswered before its server counts as unreachable: well above the
/// poll's 5 s.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long connecting to a server may take before it counts as unreachable: a SYN lost to a
/// partition is sent again only after 1, 3, 7, 15 s..., so without this an agent cut off while it
/// connected would wait out [`REQUEST_TIMEOUT`] after the link came back (a loaded server's full
/// accept queue still gets the 1 s and 3 s retries).
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

const TARGET: &str = "AmazonEC2ContainerServiceV20141113.";

impl HttpClient {
    /// `base` is the server's URL (`http://host:port`), or several separated by commas (servers
    /// sharing one store); `region` goes into the credential scope. It signs with
    /// [`ClientCredentials::anonymous`] until given a key.
    pub fn new(base: &str, region: &str) -> Self {
        Self::build(base, region, None, Arc::new(ClientCredentials::anonymous()), Arc::new(SystemClock))
    }

    /// The same client, signing with `credentials`.
    pub fn with_credentials(mut self, credentials: ClientCredentials) -> Self {
        self.credentials = Arc::new(credentials);
        self
    }

    /// The same client, reading the time it signs with from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The same servers, over connections of its own made from the local address `local`.
    pub fn bound_to(&self, local: std::net::IpAddr) -> Self {
        let bases: Vec<&str> = self.endpoints.iter().map(|e| e.base.as_str()).collect();
        Self::build(&bases.join(","), &self.region, Some(local), self.credentials.clone(), self.clock.clone())
    }

    /// The URL of the server in use.
    pub fn base(&self) -> &str {
        &self.endpoint().1.base
    }

    fn endpoint(&self) -> (usize, &Endpoint) {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed) % self.endpoints.len();
        (i, &self.endpoints[i])
    }

    /// The server at `i` could not be reached: use the next one (unless another request moved
    /// on already).
    fn unreachable(&self, i: usize) {
        let next = (i + 1) % self.endpoints.len();
        let moved = self.current.compare_exchange(
            i,
            next,
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
        );
        if moved.is_ok() && next != i {
            tracing::warn!(from = %self.endpoints[i].base, to = %self.endpoints[next].base, "server unreachable: moving to the next");
        }
    }

    /// The server's address, when the URL names an IP address rather than a host name.
    pub fn server_ip(&self) -> Option<std::net::IpAddr> {
        let base = self.base();
        let host = base.split_once("://").map_or(base, |(_, rest)| rest);
        let host = host.split('/').next().unwrap_or_default();
        let host = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => host.rsplit_once(':').map_or(host, |(h, _)| h),
        };
        host.parse().ok()
    }

    fn build(
        bases: &str,
        region: &str,
        local: Option<std::net::IpAddr>,
        credentials: Arc<ClientCredentials>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_local_address(local);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        // Idle connections are closed after 30 s. The pool only looks for them when it has a
        // timer: without one, the connections a burst opened (a simulated fleet registering
        // 10,000 instances) stay open for good, on both sides.
        let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(connector);
        let mut endpoints: Vec<Endpoint> = bases
            .split(',')
            .map(|b| b.trim().trim_end_matches('/'))
            .filter(|b| !b.is_empty())
            .map(Endpoint::parse)
            .collect();
        if endpoints.is_empty() {
            endpoints.push(Endpoint { base: String::new(), authority: String::new() });
        }
        HttpClient {
            endpoints: endpoints.into(),
            current: Arc::default(),
            region: region.to_string(),
            credentials,
            clock,
            http,
        }
    }

    async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        target: Option<&str>,
        body: &Req,
    ) -> ClientResult<Resp> {
        self.post_as(path, target.map(|t| format!("{TARGET}{t}")), "ecs", &self.region, body).await
    }

    /// Posts a JSON 1.1 request signed for `service` in `region`.
    async fn post_as<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        target: Option<String>,
        service: &str,
        region: &str,
        body: &Req,
    ) -> ClientResult<Resp> {
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Transport(e.to_string()))?;
        let mut tries = self.endpoints.len();
        loop {
            let (i, endpoint) = self.endpoint();
            match self.send(endpoint, path, target.as_deref(), service, region, &body).await {
                Err(ClientError::Transport(e)) if tries > 1 => {
                    tracing::debug!(server = %endpoint.base, error = %e, "request failed");
                    self.unreachable(i);
                    tries -= 1;
                }
                Err(ClientError::Transport(e)) => {
                    if self.endpoints.len() > 1 {
                        self.unreachable(i);
                    }
                    return Err(ClientError::Transport(e));
                }
                Err(e) => return Err(e),
                Ok((status, bytes)) => {
                    if !status.is_success() {
                        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                        return Err(ClientError::Api {
                            kind: v["__type"].as_str().unwrap_or("Unknown").to_string(),
                            message: v["message"].as_str().unwrap_or_default().to_string(),
                        });
                    }
                    return serde_json::from_slice(&bytes)
                        .map_err(|e| ClientError::Transport(format!("bad response: {e}")));
                }
            }
        }
    }

    /// One signed request to one server: its status and body, or a transport error.
    async fn send(
        &self,
        endpoint: &Endpoint,
        path: &str,
        target: Option<&str>,
        service: &str,
        region: &str,
        body: &[u8],
    ) -> ClientResult<(hyper::StatusCode, bytes::Bytes)> {
        use http_body_util::BodyExt;
        let mut headers: Vec<(&str, &[u8])> =
            vec![("host", endpoint.authority.as_bytes()), ("content-type", b"application/x-amz-json-1.1")];
        if let Some(t) = target {
            headers.push(("x-amz-target", t.as_bytes()));
        }
        let creds = gantry_sigv4::Credentials {
            access_key: &self.credentials.access_key_id,
            secret: self.credentials.secret.expose(),
            session_token: self.credentials.session_token.as_ref().map(|t| t.expose()),
        };
        let now = self.clock.now().0.div_euclid(1000);
        let unsigned = gantry_sigv4::Request { method: "POST", path, query: "", headers: &headers, body };
        let signature = gantry_sigv4::sign(&unsigned, &creds, region, service, now);
        let mut req = hyper::Request::post(format!("{}{path}", endpoint.base));
        for (name, value) in &headers {
            req = req.header(*name, *value);
        }
        for (name, value) in &signature {
            req = req.header(*name, value.as_str());
        }
        let req = req
            .body(http_body_util::Full::new(bytes::Bytes::copy_from_slice(body)))
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let exchange = async {
            let resp = self.http.request(req).await.map_err(|e| ClientError::Transport(e.to_string()))?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| ClientError::Transport(e.to_string()))?
                .to_bytes();
            Ok((status, bytes))
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Transport(format!(
                "no answer from {} within {REQUEST_TIMEOUT:?}",
                endpoint.base
            ))),
        }
    }

    /// Calls an ECS operation.
    pub async fn ecs<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        op: &str,
        body: &Req,
    ) -> ClientResult<Resp> {
        self.post("/", Some(op), body).await
    }

    /// What the server knows of its store's servers and agents (`gantry status`).
    pub async fn status(&self) -> ClientResult<serde_json::Value> {
        self.post("/_gantry/status", None, &serde_json::json!({})).await
    }

    pub async fn register_fargate(&self, reg: &FargateRegistration) -> ClientResult<serde_json::Value> {
        self.post("/_gantry/agent/v1/fargate", None, reg).await
    }

    /// Opens `url` (on any server) as an exec session's stream: a `GET` upgraded to
    /// [`EXEC_UPGRADE`], with `headers` (the session's token, or a signature).
    pub async fn upgrade(&self, url: &str, headers: &[(&str, String)]) -> ClientResult<ExecStream> {
        let t = |e: String| ClientError::Transport(e);
        let mut b = hyper::Request::get(url).header("connection", "upgrade").header("upgrade", EXEC_UPGRADE);
        for (k, v) in headers {
            b = b.header(*k, v.as_str());
        }
        let req = b.body(http_body_util::Full::new(bytes::Bytes::new())).map_err(|e| t(e.to_string()))?;
        let resp = self.http.request(req).await.map_err(|e| t(e.to_string()))?;
        if resp.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
            use http_body_util::BodyExt;
            let status = resp.status();
            let bytes = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            return Err(match v["__type"].as_str() {
                Some(kind) => ClientError::Api {
                    kind: kind.to_string(),
                    message: v["message"].as_str().unwrap_or_default().to_string(),
                },
                None => {
                    t(format!("the exec session was refused ({status}): {}", String::from_utf8_lossy(&bytes)))
                }
            });
        }
        let upgraded = hyper::upgrade::on(resp).await.map_err(|e| t(e.to_string()))?;
        Ok(Box::new(hyper_util::rt::TokioIo::new(upgraded)))
    }

    /// The headers that sign a body-less `GET path` to the server at `authority` as an ECS
    /// request.
    fn signed_get(&self, authority: &str, path: &str, query: &str) -> Vec<(&'static str, String)> {
        let headers: Vec<(&str, &[u8])> = vec![("host", authority.as_bytes())];
        let creds = gantry_sigv4::Credentials {
            access_key: &self.credentials.access_key_id,
            secret: self.credentials.secret.expose(),
            session_token: self.credentials.session_token.as_ref().map(|t| t.expose()),
        };
        let now = self.clock.now().0.div_euclid(1000);
        let unsigned = gantry_sigv4::Request { method: "GET", path, query, headers: &headers, body: b"" };
        let mut signed = gantry_sigv4::sign(&unsigned, &creds, &self.region, "ecs", now);
        signed.push(("host", authority.to_string()));
        signed
    }
}

impl ControlClient for HttpClient {
    fn task_secrets<'a>(&'a self, req: &'a SecretsRequest) -> BoxFuture<'a, ClientResult<SecretsResponse>> {
        Box::pin(self.post("/_gantry/agent/v1/secrets", None, req))
    }

    fn task_credentials<'a>(
        &'a self,
        req: &'a TaskCredentialsRequest,
    ) -> BoxFuture<'a, ClientResult<TaskCredentials>> {
        Box::pin(self.post("/_gantry/agent/v1/credentials", None, req))
    }

    fn forward(&self, req: Forwarded) -> BoxFuture<'_, ClientResult<Forwarded>> {
        Box::pin(async move {
            use http_body_util::BodyExt;
            let t = |e: String| ClientError::Transport(e);
            let mut b = hyper::Request::builder().method(req.method.as_str()).uri(format!(
                "{}{}",
                self.base(),
                req.path_and_query
            ));
            for (k, v) in &req.headers {
                b = b.header(k.as_str(), v.as_slice());
            }
            let r = b.body(http_body_util::Full::new(req.body)).map_err(|e| t(e.to_string()))?;
            let resp = self.http.request(r).await.map_err(|e| t(e.to_string()))?;
            let status = resp.status().as_u16();
            let headers =
                resp.headers().iter().map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec())).collect();
            let body = resp.into_body().collect().await.map_err(|e| t(e.to_string()))?.to_bytes();
            Ok(Forwarded { status, headers, body, ..Default::default() })
        })
    }

    fn poll<'a>(&'a self, req: &'a PollRequest) -> BoxFuture<'a, ClientResult<Assignments>> {
        Box::pin(self.post("/_gantry/agent/v1/poll", None, req))
    }

    fn exec_stream<'a>(
        &'a self,
        session_id: &'a str,
        node: &'a str,
        server: Option<&'a str>,
    ) -> BoxFuture<'a, ClientResult<ExecStream>> {
        Box::pin(async move {
            let path = format!("/_gantry/agent/v1/exec/{session_id}");
            let node: String = node
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        (b as char).to_string()
                    }
                    b => format!("%{b:02X}"),
                })
                .collect();
            let query = format!("node={node}");
            // One server for the signature and the connection: the session's, or the one in use.
            let server = match server {
                Some(url) => Endpoint::parse(url),
                None => self.endpoint().1.clone(),
            };
            let headers = self.signed_get(&server.authority, &path, &query);
            self.upgrade(&format!("{}{path}?{query}", server.base), &headers).await
        })
    }

    fn submit_task<'a>(&'a self, req: &'a SubmitTaskStateChangeRequest) -> BoxFuture<'a, ClientResult<()>> {
        Box::pin(
            async move { self.ecs::<_, serde_json::Value>("SubmitTaskStateChange", req).await.map(|_| ()) },
        )
    }

    fn report_health<'a>(&'a self, req: &'a TaskHealthReport) -> BoxFuture<'a, ClientResult<()>> {
        Box::pin(async move {
            self.post::<_, serde_json::Value>("/_gantry/agent/v1/health", None, req).await.map(|_| ())
        })
    }

    fn report_stats<'a>(&'a self, req: &'a TaskStatsReport) -> BoxFuture<'a, ClientResult<()>> {
        Box::pin(async move {
            self.post::<_, serde_json::Value>("/_gantry/agent/v1/stats", None, req).await.map(|_| ())
        })
    }

    fn report_update<'a>(&'a self, req: &'a AgentUpdateReport) -> BoxFuture<'a, ClientResult<()>> {
        Box::pin(async move {
            self.post::<_, serde_json::Value>("/_gantry/agent/v1/update", None, req).await.map(|_| ())
        })
    }

    fn download_agent<'a>(
        &'a self,
        mut sink: crate::update::Sink,
    ) -> BoxFuture<'a, ClientResult<(String, u64)>> {
        Box::pin(async move {
            use http_body_util::BodyExt;
            let t = |e: String| ClientError::Transport(e);
            let path = "/_gantry/agent/v1/binary";
            // One server for the signature and the connection.
            let (_, server) = self.endpoint();
            let mut b = hyper::Request::get(format!("{}{path}", server.base));
            for (k, v) in self.signed_get(&server.authority, path, "") {
                b = b.header(k, v);
            }
            let req = b.body(http_body_util::Full::new(bytes::Bytes::new())).map_err(|e| t(e.to_string()))?;
            let resp = tokio::time::timeout(REQUEST_TIMEOUT, self.http.request(req))
                .await
                .map_err(|_| t(format!("no answer from {} within {REQUEST_TIMEOUT:?}", server.base)))?
                .map_err(|e| t(e.to_string()))?;
            let status = resp.status();
            let mut body = resp.into_body();
            if !status.is_success() {
                let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                return Err(ClientError::Api {
                    kind: v["__type"].as_str().unwrap_or("Unknown").to_string(),
                    message: v["message"].as_str().unwrap_or_default().to_string(),
                });
            }
            // Streamed to the file: a stall of REQUEST_TIMEOUT between two chunks gives up.
            loop {
                let frame = tokio::time::timeout(REQUEST_TIMEOUT, body.frame())
                    .await
                    .map_err(|_| t(format!("the download from {} stalled", server.base)))?;
                match frame {
                    None => break,
                    Some(Err(e)) => return Err(t(e.to_string())),
                    Some(Ok(f)) => {
                        if let Ok(data) = f.into_data() {
                            sink.write(&data).map_err(|e| t(format!("cannot write the download: {e}")))?;
                        }
                    }
                }
            }
            sink.finish().map_err(|e| t(format!("cannot write the download: {e}")))
        })
    }

    fn submit_attachments<'a>(
        &'a self,
        req: &'a SubmitAttachmentStateChangesRequest,
    ) -> BoxFuture<'a, ClientResult<()>> {
        Box::pin(async move {
            self.ecs::<_, serde_json::Value>("SubmitAttachmentStateChanges", req).await.map(|_| ())
        })
    }

    fn logs<'a>(
        &'a self,
        region: &'a str,
        op: &'a str,
        body: serde_json::Value,
    ) -> BoxFuture<'a, ClientResult<serde_json::Value>> {
        Box::pin(async move {
            let region = if region.is_empty() { self.region.as_str() } else { region };
            self.post_as("/", Some(format!("Logs_20140328.{op}")), "logs", region, &body).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Accepts one connection on `l`, reads its request head, answers `101` and echoes what
    /// comes after: the head.
    async fn upgrade_once(l: tokio::net::TcpListener) -> String {
        let (mut s, _) = l.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut byte).await.unwrap(), 1, "the request head ended early");
            head.push(byte[0]);
        }
        s.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: gantry-exec\r\n\r\n",
        )
        .await
        .unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.unwrap();
        s.write_all(&buf).await.unwrap();
        String::from_utf8(head).unwrap()
    }

    /// An exec session naming its server is joined there, signed for that server, not at the
    /// server the agent polls; without one, at the server polled.
    #[tokio::test]
    async fn an_exec_stream_goes_to_the_server_holding_the_session() {
        let polled = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let holder = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (polled_at, holder_at) = (polled.local_addr().unwrap(), holder.local_addr().unwrap());
        let client = HttpClient::new(&format!("http://{polled_at}"), "us-east-1");
        let holder_url = format!("http://{holder_at}/");
        for (listener, server, at) in
            [(holder, Some(holder_url.as_str()), holder_at), (polled, None, polled_at)]
        {
            let serving = tokio::spawn(upgrade_once(listener));
            // Sent to the other server, the request is never answered: fail instead of hanging.
            let joined = client.exec_stream("ecs-execute-command-1", "arn:node/c/i 1", server);
            let mut io = tokio::time::timeout(std::time::Duration::from_secs(10), joined)
                .await
                .expect("the stream went to another server")
                .unwrap();
            io.write_all(b"hello").await.unwrap();
            let mut back = [0u8; 5];
            io.read_exact(&mut back).await.unwrap();
            assert_eq!(&back, b"hello");
            let head = serving.await.unwrap().to_ascii_lowercase();
            assert!(
                head.starts_with("get /_gantry/agent/v1/exec/ecs-execute-command-1?node=arn%3anode%2fc%2fi%201 http/1.1\r\n"),
                "{head}"
            );
            assert!(head.contains(&format!("\r\nhost: {at}\r\n")), "{head}");
            assert!(head.contains("\r\nauthorization: aws4-hmac-sha256 "), "{head}");
        }
    }
}
