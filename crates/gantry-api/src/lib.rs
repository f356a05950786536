//! Gantry's front door: Amazon ECS's JSON 1.1 protocol over HTTP.
//!
//! `POST /` with `X-Amz-Target: AmazonEC2ContainerServiceV20141113.<Operation>` is
//! authenticated ([`auth`]), its body parsed into the generated request shape ([`wire`]),
//! dispatched to the control plane by one `match` on the operation name ([`dispatch`]), and the
//! result rendered as ECS renders it. This is the only crate that knows HTTP; errors become
//! `{"__type", "message"}` bodies in one function ([`wire::error_response`]).

pub mod agent;
pub mod auth;
pub mod dispatch;
pub mod wire;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gantry_core::{EcsError, Scope};
use gantry_ecs::{ControlPlane, Ctx};
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Turns a panic while serving one request into a ServerException for that request (the panic
/// itself is logged by the panic hook), instead of a dropped connection.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = std::thread::Result<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// What the API needs besides the control plane.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The account in every ARN.
    pub account_id: String,
    /// Whether `POST /_gantry/reset` may wipe all state.
    pub enable_reset: bool,
    /// How long an agent's poll waits for a change before answering anyway.
    pub poll_timeout: std::time::Duration,
}

pub(crate) struct AppState {
    pub(crate) control: ControlPlane,
    pub(crate) config: ApiConfig,
}

/// The HTTP application: the ECS endpoint plus Gantry's own `/_gantry/*` routes.
pub fn router(control: ControlPlane, config: ApiConfig) -> Router {
    let state = Arc::new(AppState { control, config });
    Router::new()
        .route("/", post(ecs))
        .route("/_gantry/health", get(health))
        .route("/metrics", get(metrics))
        .route("/_gantry/reset", post(reset))
        .route("/_gantry/agent/v1/poll", post(agent::poll))
        .route("/_gantry/agent/v1/fargate", post(agent::register_fargate))
        .route("/_gantry/agent/v1/health", post(agent::health))
        .with_state(state)
}

async fn health() -> &'static str {
    "ok\n"
}

/// Gantry's own metrics, in the OpenMetrics text format Prometheus scrapes.
async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    let text = s.control.metrics().render();
    ([(axum::http::header::CONTENT_TYPE, gantry_runtime::metrics::CONTENT_TYPE)], text).into_response()
}

async fn reset(State(s): State<Arc<AppState>>) -> Response {
    if !s.config.enable_reset {
        return (
            StatusCode::NOT_FOUND,
            "the reset endpoint is disabled; start the server with --enable-reset\n",
        )
            .into_response();
    }
    match s.control.reset().await {
        Ok(()) => {
            tracing::info!("state reset");
            (StatusCode::OK, "reset\n").into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn ecs(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let started = std::time::Instant::now();
    let response = answer(&s, &headers, body).await;
    // The operation as a metric label only if it is one (a made-up name is "unknown").
    let op = match wire::operation(&headers) {
        Ok(op) if op == "GantryExplainPlacement" || gantry_model::OPERATIONS.contains(&op) => op,
        _ => "unknown",
    };
    s.control.metrics().api.observe("ecs", op, response.status().as_u16(), started.elapsed());
    response
}

async fn answer(s: &AppState, headers: &HeaderMap, body: Bytes) -> Response {
    let request_id = s.control.ids().uuid();
    let caller = match auth::authenticate(headers) {
        Ok(c) => c,
        Err(e) => return wire::error_response(&e, &request_id),
    };
    let op = match wire::operation(headers) {
        Ok(op) => op,
        Err(e) => return wire::error_response(&e, &request_id),
    };
    let ctx = Ctx::root(Scope::new(s.config.account_id.clone(), caller.region));
    let span = tracing::debug_span!("ecs", op, request_id = %request_id, region = %ctx.scope.region);
    let base_url =
        format!("http://{}", headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1"));
    let call =
        tracing::Instrument::instrument(dispatch::dispatch(&s.control, &ctx, op, &body, &base_url), span);
    let result = match CatchUnwind(Box::pin(call)).await {
        Ok(r) => r,
        Err(_) => Err(EcsError::server(format!("An internal error occurred while processing {op}."))),
    };
    match result {
        Ok(out) => wire::ok_response(out, &request_id),
        Err(e) => {
            if e.kind.is_server_fault() {
                tracing::error!(op, request_id, error = %e, "request failed");
            } else {
                tracing::debug!(op, request_id, error = %e, "request rejected");
            }
            wire::error_response(&e, &request_id)
        }
    }
}
