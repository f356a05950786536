//! The agent channel: a node long-polls for its assignments, registers Fargate capacity and
//! reports health. Task state itself comes back through the ECS operations
//! (SubmitTaskStateChange and friends) on `POST /`.

use crate::front::{Service, error};
use crate::{AppState, wire};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use gantry_core::ServiceError;
use gantry_core::protocol::{
    AgentUpdateReport, Assignment, FargateRegistration, PollRequest, RawAssignments, ResolvedSecret,
    SecretsRequest, SecretsResponse, TaskCredentials, TaskCredentialsRequest, TaskHealthReport,
    TaskStatsReport,
};
use gantry_ports::{Authorizer, Principal, SecretResolver};
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
pub(crate) fn authenticate(
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

/// An agent call's body, its signature checked ([`authenticate`]): every agent handler takes
/// one, so none runs for a request that is not signed by a known key.
pub(crate) struct Signed(pub(crate) Bytes);

impl FromRequest<Arc<AppState>> for Signed {
    type Rejection = Response;

    async fn from_request(req: Request, s: &Arc<AppState>) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let (method, uri, headers) =
            (parts.method.clone(), parts.uri.clone(), std::mem::take(&mut parts.headers));
        let body =
            Bytes::from_request(Request::from_parts(parts, body), s).await.map_err(|e| e.into_response())?;
        authenticate(s, &method, &uri, &headers, &body).map_err(|e| respond(s, Err(e)))?;
        Ok(Signed(body))
    }
}

/// Answers once the node's version differs from the one the agent has, or when the poll timeout
/// passes: with the whole assignment set, or (when the agent says what it holds) only what
/// changed. While the poll is open the node counts as connected.
pub(crate) async fn poll(State(s): State<Arc<AppState>>, Signed(body): Signed) -> Response {
    let r = async {
        let req: PollRequest = wire::parse("Poll", &body)?;
        let agents = s.control.agents().clone();
        let (guard, mut rx) = agents.begin_poll(&req.node, s.control.clock().clone());
        if *rx.borrow() == req.version {
            let _ = tokio::time::timeout(s.config.poll_timeout, rx.changed()).await;
        }
        let version = *rx.borrow_and_update();
        let (tasks, removed) = s.control.assignment_delta_json(&req.node, req.known.as_ref())?;
        drop(guard);
        let mut exec = s.exec.take_for(&req.node);
        if s.control.agents().shares_store() {
            exec.extend(s.control.take_execs(&req.node).await);
        }
        let update = s.control.agent_update_for(&req.node);
        let delta = req.known.is_some();
        Ok(wire::render(&RawAssignments { version, tasks, delta, removed, exec, update })?)
    }
    .await;
    respond(&s, r)
}

pub(crate) async fn register_fargate(State(s): State<Arc<AppState>>, Signed(body): Signed) -> Response {
    let r = async {
        let req: FargateRegistration = wire::parse("RegisterFargateNode", &body)?;
        Ok(wire::render(&s.control.register_fargate_node(req).await?)?)
    }
    .await;
    respond(&s, r)
}

pub(crate) async fn health(State(s): State<Arc<AppState>>, Signed(body): Signed) -> Response {
    let r = async {
        let req: TaskHealthReport = wire::parse("ReportTaskHealth", &body)?;
        s.control.report_task_health(req).await?;
        Ok(b"{}".to_vec())
    }
    .await;
    respond(&s, r)
}

/// An agent's progress through an update UpdateContainerAgent asked for.
pub(crate) async fn update_status(State(s): State<Arc<AppState>>, Signed(body): Signed) -> Response {
    let r = async {
        let req: AgentUpdateReport = wire::parse("ReportAgentUpdate", &body)?;
        s.control.report_agent_update(req).await?;
        Ok(b"{}".to_vec())
    }
    .await;
    respond(&s, r)
}

/// The agent binary agents update to (the server's own executable), streamed, with its size
/// and SHA-256 in `x-gantry-sha256` as the server read them when it started. Signed like the
/// agent's other calls (a `GET` without a body).
pub(crate) async fn binary(State(s): State<Arc<AppState>>, _: Signed) -> Response {
    let r = async {
        let b = s.control.agent_binary().cloned().ok_or_else(|| {
            ServiceError::sender("NoUpdateAvailableException", "This server has no agent binary to offer.")
        })?;
        let file = tokio::fs::File::open(&b.path).await.map_err(|e| {
            ServiceError::receiver(
                "ServerException",
                format!("The agent binary {} cannot be read: {e}", b.path.display()),
            )
        })?;
        let len = file.metadata().await.map(|m| m.len()).unwrap_or_default();
        let chunks = futures_util::stream::unfold(file, |mut f| async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; 256 * 1024];
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok::<_, std::io::Error>(Bytes::from(buf)), f))
                }
                Err(e) => Some((Err(e), f)),
            }
        });
        Ok::<_, ServiceError>(
            (
                [
                    (axum::http::header::CONTENT_TYPE, "application/octet-stream".to_string()),
                    (axum::http::header::CONTENT_LENGTH, len.to_string()),
                    (axum::http::HeaderName::from_static("x-gantry-sha256"), b.sha256),
                ],
                axum::body::Body::from_stream(chunks),
            )
                .into_response(),
        )
    }
    .await;
    r.unwrap_or_else(|e| respond(&s, Err(e)))
}

/// `gantry status`: the servers sharing the store, the leader and the agents, signed like the
/// agent's calls.
pub(crate) async fn status(State(s): State<Arc<AppState>>, _: Signed) -> Response {
    let r = (|| Ok(wire::render(&s.control.status())?))();
    respond(&s, r)
}

/// An agent's container stats: kept for the AWS/ECS metrics.
pub(crate) async fn stats(State(s): State<Arc<AppState>>, Signed(body): Signed) -> Response {
    let r = (|| {
        let req: TaskStatsReport = wire::parse("ReportTaskStats", &body)?;
        s.control.record_task_stats(req);
        Ok(b"{}".to_vec())
    })();
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

    fn resource_policy(&self, account: &str, region: &str, value_from: &str) -> Option<String> {
        let is_asm = value_from.split(':').nth(2) == Some("secretsmanager");
        let r = if is_asm { &self.secretsmanager } else { &self.ssm };
        r.resource_policy(account, region, value_from)
    }

    /// Whether the execution role's session `reader` may read `value_from` (Secrets Manager's
    /// GetSecretValue on the secret, SSM's GetParameters on the parameter): `None` when it may,
    /// else the ECS agent's words for the AccessDeniedException it would get. IAM weighs the
    /// role's policies and the secret's resource policy.
    fn may_read(
        &self,
        reader: (&Principal, &dyn Authorizer),
        account: &str,
        region: &str,
        value_from: &str,
    ) -> Option<String> {
        let (who, authorizer) = reader;
        let retried = "execution resource retrieval failed";
        let (action, resource, how) = if value_from.split(':').nth(2) == Some("secretsmanager") {
            let arn: String = value_from.split(':').take(7).collect::<Vec<_>>().join(":");
            let how = format!(
                "{retried}: unable to retrieve secret from asm: service call has been retried 1 time(s): failed to fetch secret {arn} from secrets manager"
            );
            ("secretsmanager:GetSecretValue", arn, how)
        } else {
            let arn = if value_from.starts_with("arn:") {
                value_from.to_string()
            } else {
                format!("arn:aws:ssm:{region}:{account}:parameter/{}", value_from.trim_start_matches('/'))
            };
            let how = format!(
                "{retried}: unable to retrieve secrets from ssm: service call has been retried 1 time(s)"
            );
            ("ssm:GetParameters", arn, how)
        };
        let policy = self.resource_policy(account, region, value_from);
        let context = gantry_ports::AuthContext::new();
        let decision = authorizer.authorize(who, action, &resource, &context, policy.as_deref());
        (decision != gantry_ports::Decision::Allow).then(|| {
            let denied_by_identity = policy.is_none()
                || authorizer.authorize(who, action, &resource, &context, None)
                    == gantry_ports::Decision::ExplicitDeny;
            let because = match decision {
                gantry_ports::Decision::ExplicitDeny if denied_by_identity => {
                    "with an explicit deny in an identity-based policy".to_string()
                }
                gantry_ports::Decision::ExplicitDeny => "with an explicit deny in a resource-based policy".to_string(),
                _ => format!("because no identity-based policy allows the {action} action"),
            };
            format!(
                "{how}: AccessDeniedException: User: {} is not authorized to perform: {action} on resource: {resource} {because}",
                who.arn
            )
        })
    }

    /// Every secret of an assignment, or the first that cannot be had. The task's account and
    /// Region come from its ARN. With `reader` (under enforcement: the task execution role's
    /// session and IAM), each read must be allowed to it, as the ECS agent reads them with the
    /// execution role's credentials.
    pub(crate) fn for_task(
        &self,
        a: &gantry_core::protocol::Assignment,
        reader: Option<(&Principal, &dyn Authorizer)>,
    ) -> SecretsResponse {
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
                    if let Some(why) = reader.and_then(|r| self.may_read(r, account, region, &sec.value_from))
                    {
                        return SecretsResponse { error: Some(why), ..Default::default() };
                    }
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
            if let Some(creds) = &def.repository_credentials {
                let secret = asm_reference(account, region, &creds.credentials_parameter);
                let auth = match reader.and_then(|r| self.may_read(r, account, region, &secret)) {
                    Some(why) => Err(why),
                    None => self.resolve(account, region, &secret).and_then(|v| registry_auth(&v)),
                };
                match auth {
                    Ok(auth) => {
                        out.registry_auth.insert(name.clone(), auth);
                    }
                    Err(why) => return SecretsResponse { error: Some(why), ..Default::default() },
                }
            }
        }
        out
    }
}

/// `repositoryCredentials.credentialsParameter` names a Secrets Manager secret by ARN or, in the
/// task's own Region and account, by name: the name as the secret's (partial) ARN.
fn asm_reference(account: &str, region: &str, parameter: &str) -> String {
    if parameter.starts_with("arn:") {
        parameter.to_string()
    } else {
        format!("arn:aws:secretsmanager:{region}:{account}:secret:{parameter}")
    }
}

/// A registry's credentials from a secret's value, checked as the ECS agent checks them (its
/// words, after "execution resource retrieval failed: ").
fn registry_auth(value: &gantry_core::Secret) -> Result<gantry_core::protocol::RegistryAuth, String> {
    #[derive(serde::Deserialize)]
    struct AuthData {
        username: Option<String>,
        password: Option<String>,
    }
    let failed = "execution resource retrieval failed";
    if value.expose().is_empty() {
        return Err(format!("{failed}: asm fetching authorization data: empty secrets value"));
    }
    let data: AuthData = serde_json::from_str(value.expose()).map_err(|_| {
        format!("{failed}: asm fetching authorization data: unable to unmarshal secret value, invalid schema")
    })?;
    let username = data.username.filter(|u| !u.is_empty()).ok_or_else(|| {
        format!("{failed}: asm fetching username: AuthorizationData is malformed, empty field")
    })?;
    let password = data.password.filter(|p| !p.is_empty()).ok_or_else(|| {
        format!("{failed}: asm fetching password: AuthorizationData is malformed, empty field")
    })?;
    Ok(gantry_core::protocol::RegistryAuth { username, password: gantry_core::Secret::new(password) })
}

/// The task execution role's session for a task (the principal its secrets are read as): the
/// role must exist and trust `ecs-tasks.amazonaws.com`. Or why there is none, in words that
/// follow "unable to pull secrets or registry auth: ".
fn execution_principal(s: &AppState, a: &Assignment) -> Result<Principal, String> {
    let arn = a.task.task_arn.as_deref().unwrap_or_default();
    let account = arn.split(':').nth(4).unwrap_or_default();
    let task_id = arn.rsplit('/').next().unwrap_or_default();
    let role_arn = a
        .task
        .overrides
        .as_ref()
        .and_then(|o| o.execution_role_arn.as_deref())
        .or(a.task_definition.execution_role_arn.as_deref())
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            "execution resource retrieval failed: the task definition has no executionRoleArn, whose credentials secrets are read with".to_string()
        })?;
    let role = s.sts.service_may_assume(account, role_arn, "ecs-tasks.amazonaws.com").map_err(|e| {
        format!(
            "execution resource retrieval failed: unable to assume the task execution role: {}",
            e.message
        )
    })?;
    Ok(Principal {
        kind: gantry_ports::PrincipalKind::AssumedRole {
            role_name: role.name.clone(),
            role_arn: role.arn.clone(),
            session_name: task_id.to_string(),
        },
        session_policies: None,
        session_tags: Vec::new(),
        account: account.to_string(),
        arn: format!("arn:aws:sts::{account}:assumed-role/{}/{task_id}", role.name),
        user_id: format!("{}:{task_id}", role.role_id),
    })
}

/// The secrets of a task assigned to the asking node, resolved from its definition's
/// references. A task not assigned to that node is refused: an agent reads only its own tasks'.
pub(crate) async fn secrets(State(s): State<Arc<AppState>>, Signed(body): Signed) -> Response {
    let r = async {
        let req: SecretsRequest = wire::parse("GetTaskSecrets", &body)?;
        let a = &assigned_task(&s, &req.node, &req.task_arn)?;
        // Under enforcement, secrets are read as the task execution role's session.
        let resolved = if s.auth.mode() == crate::AuthMode::SigV4 {
            match execution_principal(&s, a) {
                Ok(p) => s.secrets.for_task(a, Some((&p, &*s.authorizer))),
                Err(why) => SecretsResponse { error: Some(why), ..Default::default() },
            }
        } else {
            s.secrets.for_task(a, None)
        };
        if let Some(why) = &resolved.error {
            tracing::info!(task = %req.task_arn, reason = %why, "a task's secrets cannot be resolved");
        }
        Ok(wire::render(&resolved)?)
    }
    .await;
    respond(&s, r)
}

/// A task assigned to node `node`: an agent reads only its own tasks' secrets and credentials.
fn assigned_task(s: &AppState, node: &str, task_arn: &str) -> Result<Assignment, ServiceError> {
    s.control
        .assignments(node)?
        .into_iter()
        .find(|a| a.task.task_arn.as_deref() == Some(task_arn))
        .ok_or_else(|| {
            ServiceError::sender(
                "InvalidParameterException",
                format!("The task {task_arn} is not assigned to node {node}."),
            )
        })
}

/// The role a task runs as: its override, else its definition's.
pub(crate) fn task_role(a: &Assignment) -> Option<&str> {
    a.task
        .overrides
        .as_ref()
        .and_then(|o| o.task_role_arn.as_deref())
        .or(a.task_definition.task_role_arn.as_deref())
        .filter(|r| !r.is_empty())
}

/// The credentials of a task's role, for a task assigned to the asking node: an STS session of
/// the role for `ecs-tasks.amazonaws.com` (which the role's trust policy must allow), named
/// after the task ID, as ECS hands the agent a task's credentials.
pub(crate) async fn credentials(State(s): State<Arc<AppState>>, Signed(body): Signed) -> Response {
    let r = async {
        let req: TaskCredentialsRequest = wire::parse("GetTaskCredentials", &body)?;
        let a = &assigned_task(&s, &req.node, &req.task_arn)?;
        let role = task_role(a).ok_or_else(|| {
            ServiceError::sender("InvalidParameterException", format!("The task {} has no task role.", req.task_arn))
        })?;
        let arn = req.task_arn.as_str();
        let account = arn.split(':').nth(4).unwrap_or_default();
        let task_id = arn.rsplit('/').next().unwrap_or_default();
        // ECS's task credentials last hours and the agent renews them well before they expire.
        let seconds = i64::try_from(s.config.task_session.as_secs()).unwrap_or(i64::MAX);
        let session = s
            .sts
            .assume_role_for_service(account, role, "ecs-tasks.amazonaws.com", task_id, seconds)
            .await
            .inspect_err(|e| {
                tracing::warn!(task = %arn, role = %role, reason = %e.message, "a task's role cannot be assumed");
            })?;
        Ok(wire::render(&TaskCredentials {
            role_arn: session.role_arn,
            access_key_id: session.access_key_id,
            secret_access_key: session.secret_access_key,
            session_token: session.session_token,
            expiration: session.expiration,
        })?)
    }
    .await;
    respond(&s, r)
}
