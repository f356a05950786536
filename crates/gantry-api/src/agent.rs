//! The agent channel: a node long-polls for its assignments, registers Fargate capacity and
//! reports health. Task state itself comes back through the ECS operations
//! (SubmitTaskStateChange and friends) on `POST /`.

use crate::{AppState, auth, wire};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use gantry_core::EcsError;
use gantry_core::protocol::{FargateRegistration, PollRequest, RawAssignments, TaskHealthReport};
use std::sync::Arc;

fn respond(s: &AppState, r: Result<Vec<u8>, EcsError>) -> Response {
    let id = s.control.ids().uuid();
    match r {
        Ok(body) => wire::ok_response(body, &id),
        Err(e) => wire::error_response(&e, &id),
    }
}

/// Answers once the node's version differs from the one the agent has, or when the poll timeout
/// passes: with the whole assignment set, or (when the agent says what it holds) only what
/// changed. While the poll is open the node counts as connected.
pub(crate) async fn poll(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let r = async {
        auth::authenticate(&headers)?;
        let req: PollRequest = wire::parse("Poll", &body)?;
        let agents = s.control.agents().clone();
        let (guard, mut rx) = agents.begin_poll(&req.node, s.control.clock().clone());
        if *rx.borrow() == req.version {
            let _ = tokio::time::timeout(s.config.poll_timeout, rx.changed()).await;
        }
        let version = *rx.borrow_and_update();
        let (tasks, removed) = s.control.assignment_delta_json(&req.node, req.known.as_ref())?;
        drop(guard);
        wire::render(&RawAssignments { version, tasks, delta: req.known.is_some(), removed })
    }
    .await;
    respond(&s, r)
}

pub(crate) async fn register_fargate(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = async {
        auth::authenticate(&headers)?;
        let req: FargateRegistration = wire::parse("RegisterFargateNode", &body)?;
        wire::render(&s.control.register_fargate_node(req).await?)
    }
    .await;
    respond(&s, r)
}

pub(crate) async fn health(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let r = async {
        auth::authenticate(&headers)?;
        let req: TaskHealthReport = wire::parse("ReportTaskHealth", &body)?;
        s.control.report_task_health(req).await?;
        Ok(b"{}".to_vec())
    }
    .await;
    respond(&s, r)
}
