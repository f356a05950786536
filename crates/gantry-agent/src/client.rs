//! How the agent talks to the control plane. [`ControlClient`] is the contract; [`HttpClient`]
//! speaks it over HTTP to a Gantry server, exactly as a remote agent would (the in-process agent
//! of `gantry up` uses it too, over loopback).

use crate::runtime::BoxFuture;
use gantry_core::protocol::{Assignments, FargateRegistration, PollRequest, TaskHealthReport};
use gantry_model::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

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
}

/// The HTTP implementation.
#[derive(Clone)]
pub struct HttpClient {
    base: String,
    region: String,
    http: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    >,
}

const TARGET: &str = "AmazonEC2ContainerServiceV20141113.";

impl HttpClient {
    /// `base` is the server's URL (`http://host:port`); `region` goes into the credential scope.
    pub fn new(base: &str, region: &str) -> Self {
        Self::build(base, region, None)
    }

    /// The same server, over connections of its own made from the local address `local`.
    pub fn bound_to(&self, local: std::net::IpAddr) -> Self {
        Self::build(&self.base, &self.region, Some(local))
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

    fn build(base: &str, region: &str, local: Option<std::net::IpAddr>) -> Self {
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
        HttpClient { base: base.trim_end_matches('/').to_string(), region: region.to_string(), http }
    }

    async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        target: Option<&str>,
        body: &Req,
    ) -> ClientResult<Resp> {
        use http_body_util::BodyExt;
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Transport(e.to_string()))?;
        let date = "20260101T000000Z";
        let mut req = hyper::Request::post(format!("{}{path}", self.base))
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-date", date)
            .header(
                "authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential=gantry-agent/20260101/{}/ecs/aws4_request, SignedHeaders=host;x-amz-date, Signature=0",
                    self.region
                ),
            );
        if let Some(t) = target {
            req = req.header("x-amz-target", format!("{TARGET}{t}"));
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
