//! Gantry's front door: every AWS API it serves, over HTTP on one listener.
//!
//! [`server`] accepts connections within [`Limits`]; [`front`] routes each request to its
//! service (by SigV4 scope, `X-Amz-Target`, CBOR path or query `Action`), reads its body within
//! the protocol's limit, has [`auth`] check its signature, and runs the operation: ECS's through
//! the one `match` in [`dispatch`] with its JSON 1.1 bodies read straight into the generated
//! shapes ([`wire`]), every other service's through gantry-protocol's model-driven codecs.
//! Errors are rendered by gantry-protocol in the request's protocol. This is the only crate that
//! knows HTTP.

pub mod agent;
pub mod auth;
pub mod dispatch;
pub mod front;
pub mod server;
pub mod wire;

pub use auth::{AuthMode, Authenticator};
pub use server::{Limits, serve};

use auth::Caller;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gantry_core::{EcsError, Scope};
use gantry_ecs::{ControlPlane, Ctx};
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

pin_project_lite::pin_project! {
    /// Turns a panic while serving one request into a ServerException for that request (the
    /// panic itself is logged by the panic hook), instead of a dropped connection. The
    /// operation's future is not boxed here: `dispatch` boxes each asynchronous operation's own
    /// future, so what is moved around (hyper moves the request's future into its connection)
    /// stays small.
    struct CatchUnwind<F> {
        #[pin]
        inner: F,
    }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = std::thread::Result<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.project().inner;
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// What the API needs besides the services.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The account in every ARN.
    pub account_id: String,
    /// Whether `POST /_gantry/reset` may wipe all state.
    pub enable_reset: bool,
    /// How long an agent's poll waits for a change before answering anyway.
    pub poll_timeout: std::time::Duration,
    /// Connection, header and body limits.
    pub limits: Limits,
    /// Seals Secrets Manager's and SSM's secret values at rest (the master key).
    pub sealer: gantry_core::Sealer,
}

/// The services besides ECS (which is the control plane itself), wired to their ports.
#[derive(Debug, Clone)]
pub struct Services {
    pub elbv2: Arc<gantry_elbv2::Elbv2>,
    pub acm: Arc<gantry_acm::Acm>,
}

impl Services {
    /// ELBv2 and ACM on the control plane's store, clock and IDs, wired to each other, with
    /// `health` as what the data plane's health checks found.
    pub fn new(control: &ControlPlane, health: Arc<dyn gantry_ports::lb::TargetHealthSource>) -> Self {
        let store = control.store().clone();
        let elbv2 = gantry_elbv2::Elbv2::new(
            store.clone(),
            control.clock().clone(),
            control.ids().clone(),
            health,
            Arc::new(gantry_acm::AcmCertificates::new(store.clone())),
        );
        let acm = gantry_acm::Acm::new(
            store.clone(),
            control.clock().clone(),
            control.ids().clone(),
            Arc::new(gantry_elbv2::CertificateUsers::new(store)),
        );
        Services { elbv2: Arc::new(elbv2), acm: Arc::new(acm) }
    }
}

pub(crate) struct AppState {
    pub(crate) control: ControlPlane,
    pub(crate) sts: gantry_sts::Sts,
    pub(crate) elbv2: Arc<gantry_elbv2::Elbv2>,
    pub(crate) acm: Arc<gantry_acm::Acm>,
    pub(crate) secretsmanager: Arc<gantry_secretsmanager::SecretsManager>,
    pub(crate) ssm: Arc<gantry_ssm::Ssm>,
    /// What a task's `secrets` are resolved through (the agent channel's `secrets` route).
    pub(crate) secrets: agent::Resolvers,
    pub(crate) auth: Authenticator,
    pub(crate) models: front::Models,
    pub(crate) config: ApiConfig,
}

/// The HTTP application: every AWS API at `/` (the front door) plus Gantry's own `/_gantry/*`
/// routes and `/metrics`. [`serve`] answers the front door's requests without going through
/// the router (one less layer on the hot path); [`App::router`] is the whole application as
/// one axum `Router`.
#[derive(Clone)]
pub struct App {
    router: Router,
    state: Arc<AppState>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

impl App {
    /// The whole application as one router (the front door as its fallback).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Whether the router has a route for `path`: Gantry's own routes; everything else is the
    /// front door's.
    pub(crate) fn routed(path: &str) -> bool {
        path.starts_with("/_gantry/") || path == "/metrics"
    }
}

/// The HTTP application: see [`App`]. ELBv2 reports targets as nobody has checked them yet.
pub fn app(control: ControlPlane, auth: Authenticator, config: ApiConfig) -> App {
    let services = Services::new(&control, Arc::new(gantry_ports::lb::NoHealthChecks));
    app_with(control, services, auth, config)
}

/// The HTTP application with the services the binary wired.
pub fn app_with(control: ControlPlane, services: Services, auth: Authenticator, config: ApiConfig) -> App {
    let secretsmanager = Arc::new(gantry_secretsmanager::SecretsManager::new(
        control.store().clone(),
        control.clock().clone(),
        control.ids().clone(),
        Arc::new(gantry_core::OsSecrets),
        config.sealer.clone(),
    ));
    let ssm = Arc::new(gantry_ssm::Ssm::new(
        control.store().clone(),
        control.clock().clone(),
        config.sealer.clone(),
    ));
    let secrets = agent::Resolvers {
        secretsmanager: Arc::new(gantry_secretsmanager::Resolver(secretsmanager.clone())),
        ssm: Arc::new(gantry_ssm::Resolver(ssm.clone())),
    };
    let state = Arc::new(AppState {
        control,
        sts: gantry_sts::Sts::new(),
        elbv2: services.elbv2,
        acm: services.acm,
        secretsmanager,
        ssm,
        secrets,
        auth,
        models: front::Models::load(),
        config,
    });
    let router = Router::new()
        .route("/_gantry/health", get(health))
        .route("/metrics", get(metrics))
        .route("/_gantry/reset", post(reset))
        .route("/_gantry/agent/v1/poll", post(agent::poll))
        .route("/_gantry/agent/v1/fargate", post(agent::register_fargate))
        .route("/_gantry/agent/v1/health", post(agent::health))
        .route("/_gantry/agent/v1/secrets", post(agent::secrets))
        .fallback(front::handle)
        .with_state(state.clone());
    App { router, state }
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

/// One ECS operation, signed by `caller`: the JSON 1.1 body straight into the generated shape,
/// the answer straight out of it (no intermediate form on ECS's hot path).
pub(crate) async fn ecs(
    s: &AppState,
    head: &front::EcsHead<'_>,
    caller: &Caller,
    body: &[u8],
    request_id: &str,
    model: &gantry_protocol::Model,
) -> Response {
    let protocol = gantry_protocol::Protocol::AwsJson1_1;
    let op = match wire::operation(head.target) {
        Ok(op) => op,
        Err(e) => return front::error(protocol, model, &e.into(), request_id),
    };
    let ctx = Ctx::root(Scope::new(s.config.account_id.clone(), front::ecs_region(caller).to_string()));
    let call = dispatch::dispatch(&s.control, &ctx, op, body, head.host);
    // The span only when something listens for it (instrumenting costs even when it is off).
    let span = tracing::debug_span!("ecs", op, request_id = %request_id, region = %ctx.scope.region);
    let call = if span.is_disabled() {
        futures_util::future::Either::Left(call)
    } else {
        futures_util::future::Either::Right(tracing::Instrument::instrument(call, span))
    };
    let caught = CatchUnwind { inner: call }.await;
    let result = match caught {
        Ok(r) => r,
        Err(_) => Err(EcsError::server(format!("An internal error occurred while processing {op}."))),
    };
    match result {
        Ok(out) => wire::ok_response(out, request_id),
        Err(e) => {
            if e.kind.is_server_fault() {
                tracing::error!(op, request_id, error = %e, "request failed");
            } else {
                tracing::debug!(op, request_id, error = %e, "request rejected");
            }
            front::error(protocol, model, &e.into(), request_id)
        }
    }
}
