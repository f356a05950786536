//! The agent channel: a node long-polls for its assignments, registers Fargate capacity and
//! reports health. Task state itself comes back through the ECS operations
//! (SubmitTaskStateChange and friends) on `POST /`.

use crate::front::{Service, error};
use crate::{AppState, wire};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use gantry_core::ServiceError;
use gantry_core::protocol::{
    FargateRegistration, PollRequest, RawAssignments, ResolvedSecret, SecretsRequest, SecretsResponse,
    TaskHealthReport,
};
use gantry_ports::SecretResolver;
use gantry_protocol::Protocol;
use std::sync::Arc;

fn respond(s: &AppState, r: Result<Vec<u8>, ServiceError>) -> Response {
    let id = s.control.ids().uuid();
    match r {
        Ok(body) => wire::ok_response(body, &id),
        Err(e) => error(Protocol::AwsJson1_1, s.models.model(Service::Ecs), &e, &id),
    }
}

/// The agent signs its requests as any ECS client does (service `ecs`), and the front door's
/// authenticator checks them the same way.
fn authenticate(
    s: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), ServiceError> {
    let list: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())).collect();
    let req = gantry_sigv4::Request {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        headers: &list,
        body,
    };
    let now = s.control.clock().now().0.div_euclid(1000);
    s.auth
        .authenticate(&req, "ecs", now)
        .map(|_| ())
        .map_err(|e| crate::front::auth_error(&e, Protocol::AwsJson1_1))
}

/// Answers once the node's version differs from the one the agent has, or when the poll timeout
/// passes: with the whole assignment set, or (when the agent says what it holds) only what
/// changed. While the poll is open the node counts as connected.
pub(crate) async fn poll(
    State(s): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = async {
        authenticate(&s, &method, &uri, &headers, &body)?;
        let req: PollRequest = wire::parse("Poll", &body)?;
        let agents = s.control.agents().clone();
        let (guard, mut rx) = agents.begin_poll(&req.node, s.control.clock().clone());
        if *rx.borrow() == req.version {
            let _ = tokio::time::timeout(s.config.poll_timeout, rx.changed()).await;
        }
        let version = *rx.borrow_and_update();
        let (tasks, removed) = s.control.assignment_delta_json(&req.node, req.known.as_ref())?;
        drop(guard);
        Ok(wire::render(&RawAssignments { version, tasks, delta: req.known.is_some(), removed })?)
    }
    .await;
    respond(&s, r)
}

pub(crate) async fn register_fargate(
    State(s): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = async {
        authenticate(&s, &method, &uri, &headers, &body)?;
        let req: FargateRegistration = wire::parse("RegisterFargateNode", &body)?;
        Ok(wire::render(&s.control.register_fargate_node(req).await?)?)
    }
    .await;
    respond(&s, r)
}

pub(crate) async fn health(
    State(s): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = async {
        authenticate(&s, &method, &uri, &headers, &body)?;
        let req: TaskHealthReport = wire::parse("ReportTaskHealth", &body)?;
        s.control.report_task_health(req).await?;
        Ok(b"{}".to_vec())
    }
    .await;
    respond(&s, r)
}

/// Resolves a task's secret references: Secrets Manager ARNs go to Secrets Manager, anything
/// else (an SSM parameter's name or ARN) to SSM, as the ECS agent routes them. Wired to the two
/// services' [`SecretResolver`]s by [`crate::app`].
#[derive(Clone)]
pub(crate) struct Resolvers {
    pub(crate) secretsmanager: Arc<dyn SecretResolver>,
    pub(crate) ssm: Arc<dyn SecretResolver>,
}

impl Resolvers {
    fn resolve(&self, account: &str, region: &str, value_from: &str) -> Result<gantry_core::Secret, String> {
        let is_asm = value_from.split(':').nth(2) == Some("secretsmanager");
        let r = if is_asm { &self.secretsmanager } else { &self.ssm };
        r.resolve(account, region, value_from)
    }

    /// Every secret of an assignment, or the first that cannot be had. The task's account and
    /// Region come from its ARN.
    pub(crate) fn for_task(&self, a: &gantry_core::protocol::Assignment) -> SecretsResponse {
        let arn = a.task.task_arn.as_deref().unwrap_or_default();
        let mut parts = arn.split(':');
        let region = parts.nth(3).unwrap_or_default();
        let account = parts.next().unwrap_or_default();
        let mut out = SecretsResponse::default();
        for def in &a.task_definition.container_definitions.clone().unwrap_or_default() {
            let name = def.name.clone().unwrap_or_default();
            let groups = [
                (def.secrets.as_deref().unwrap_or_default(), false),
                (
                    def.log_configuration
                        .as_ref()
                        .and_then(|l| l.secret_options.as_deref())
                        .unwrap_or_default(),
                    true,
                ),
            ];
            for (secrets, log) in groups {
                for sec in secrets {
                    match self.resolve(account, region, &sec.value_from) {
                        Ok(value) => {
                            let map = if log { &mut out.log_options } else { &mut out.environment };
                            map.entry(name.clone())
                                .or_default()
                                .push(ResolvedSecret { name: sec.name.clone(), value });
                        }
                        Err(why) => {
                            return SecretsResponse { error: Some(why), ..Default::default() };
                        }
                    }
                }
            }
            if let Some(creds) = &def.repository_credentials
                && let Err(why) = self.resolve(account, region, &creds.credentials_parameter)
            {
                return SecretsResponse { error: Some(why), ..Default::default() };
            }
        }
        out
    }
}

/// The secrets of a task assigned to the asking node, resolved from its definition's
/// references. A task not assigned to that node is refused: an agent reads only its own tasks'.
pub(crate) async fn secrets(
    State(s): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = async {
        authenticate(&s, &method, &uri, &headers, &body)?;
        let req: SecretsRequest = wire::parse("GetTaskSecrets", &body)?;
        let assigned = s.control.assignments(&req.node)?;
        let a = assigned
            .iter()
            .find(|a| a.task.task_arn.as_deref() == Some(req.task_arn.as_str()))
            .ok_or_else(|| {
                ServiceError::sender(
                    "InvalidParameterException",
                    format!("The task {} is not assigned to node {}.", req.task_arn, req.node),
                )
            })?;
        let resolved = s.secrets.for_task(a);
        if let Some(why) = &resolved.error {
            tracing::info!(task = %req.task_arn, reason = %why, "a task's secrets cannot be resolved");
        }
        Ok(wire::render(&resolved)?)
    }
    .await;
    respond(&s, r)
}
