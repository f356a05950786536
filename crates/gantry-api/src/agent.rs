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
use gantry_core::protocol::{FargateRegistration, PollRequest, RawAssignments, TaskHealthReport};
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
