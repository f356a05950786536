//! How the agent talks to the control plane. [`ControlClient`] is the contract; [`HttpClient`]
//! speaks it over HTTP to a Gantry server, exactly as a remote agent would (the in-process agent
//! of `gantry up` uses it too, over loopback).

use crate::runtime::BoxFuture;
use gantry_core::protocol::{
    Assignments, FargateRegistration, PollRequest, SecretsRequest, SecretsResponse, TaskHealthReport,
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

/// The HTTP implementation.
#[derive(Clone)]
pub struct HttpClient {
    base: String,
    /// `host[:port]` of `base`, the signed `host` header.
    authority: String,
    region: String,
    credentials: Arc<ClientCredentials>,
    clock: Arc<dyn Clock>,
    http: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    >,
}

const TARGET: &str = "AmazonEC2ContainerServiceV20141113.";

impl HttpClient {
    /// `base` is the server's URL (`http://host:port`); `region` goes into the credential scope.
    /// It signs with [`ClientCredentials::anonymous`] until given a key.
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

    /// The same server, over connections of its own made from the local address `local`.
    pub fn bound_to(&self, local: std::net::IpAddr) -> Self {
        Self::build(&self.base, &self.region, Some(local), self.credentials.clone(), self.clock.clone())
    }

    /// The server's address, when the URL names an IP address rather than a host name.
    pub fn server_ip(&self) -> Option<std::net::IpAddr> {
        let host = self.base.split_once("://").map_or(self.base.as_str(), |(_, rest)| rest);
        let host = host.split('/').next().unwrap_or_default();
        let host = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => host.rsplit_once(':').map_or(host, |(h, _)| h),
        };
        host.parse().ok()
    }

    fn build(
        base: &str,
        region: &str,
        local: Option<std::net::IpAddr>,
        credentials: Arc<ClientCredentials>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_local_address(local);
        // Idle connections are closed after 30 s. The pool only looks for them when it has a
        // timer: without one, the connections a burst opened (a simulated fleet registering
        // 10,000 instances) stay open for good, on both sides.
        let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(connector);
        let base = base.trim_end_matches('/').to_string();
        let authority = base
            .split_once("://")
            .map_or(base.as_str(), |(_, r)| r)
            .split('/')
            .next()
            .unwrap_or("")
            .to_string();
        HttpClient { base, authority, region: region.to_string(), credentials, clock, http }
    }

    async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        target: Option<&str>,
        body: &Req,
    ) -> ClientResult<Resp> {
        use http_body_util::BodyExt;
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Transport(e.to_string()))?;
        let target = target.map(|t| format!("{TARGET}{t}"));
        let mut headers: Vec<(&str, &[u8])> =
            vec![("host", self.authority.as_bytes()), ("content-type", b"application/x-amz-json-1.1")];
        if let Some(t) = &target {
            headers.push(("x-amz-target", t.as_bytes()));
        }
        let creds = gantry_sigv4::Credentials {
            access_key: &self.credentials.access_key_id,
            secret: self.credentials.secret.expose(),
            session_token: self.credentials.session_token.as_ref().map(|t| t.expose()),
        };
        let now = self.clock.now().0.div_euclid(1000);
        let unsigned =
            gantry_sigv4::Request { method: "POST", path, query: "", headers: &headers, body: &body };
        let signature = gantry_sigv4::sign(&unsigned, &creds, &self.region, "ecs", now);
        let mut req = hyper::Request::post(format!("{}{path}", self.base));
        for (name, value) in &headers {
            req = req.header(*name, *value);
        }
        for (name, value) in &signature {
            req = req.header(*name, value.as_str());
        }
        let req = req
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let resp = self.http.request(req).await.map_err(|e| ClientError::Transport(e.to_string()))?;
        let status = resp.status();
        let bytes =
            resp.into_body().collect().await.map_err(|e| ClientError::Transport(e.to_string()))?.to_bytes();
        if !status.is_success() {
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            return Err(ClientError::Api {
                kind: v["__type"].as_str().unwrap_or("Unknown").to_string(),
                message: v["message"].as_str().unwrap_or_default().to_string(),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Transport(format!("bad response: {e}")))
    }

    /// Calls an ECS operation.
    pub async fn ecs<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        op: &str,
        body: &Req,
    ) -> ClientResult<Resp> {
        self.post("/", Some(op), body).await
    }

    pub async fn register_fargate(&self, reg: &FargateRegistration) -> ClientResult<serde_json::Value> {
        self.post("/_gantry/agent/v1/fargate", None, reg).await
    }
}

impl ControlClient for HttpClient {
    fn task_secrets<'a>(&'a self, req: &'a SecretsRequest) -> BoxFuture<'a, ClientResult<SecretsResponse>> {
        Box::pin(self.post("/_gantry/agent/v1/secrets", None, req))
    }

    fn poll<'a>(&'a self, req: &'a PollRequest) -> BoxFuture<'a, ClientResult<Assignments>> {
        Box::pin(self.post("/_gantry/agent/v1/poll", None, req))
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

    fn submit_attachments<'a>(
        &'a self,
        req: &'a SubmitAttachmentStateChangesRequest,
    ) -> BoxFuture<'a, ClientResult<()>> {
        Box::pin(async move {
            self.ecs::<_, serde_json::Value>("SubmitAttachmentStateChanges", req).await.map(|_| ())
        })
    }
}
