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
pub mod authz;
pub mod dispatch;
pub mod exec;
pub mod front;
pub mod reply;
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
    /// CloudWatch Logs (its own event store under the data directory).
    pub logs: Arc<gantry_logs::Logs>,
    /// CloudWatch metrics and alarms (its own time-series store under the data directory).
    pub cloudwatch: Arc<gantry_cloudwatch::CloudWatch>,
    /// How long a task role's session lasts (`--task-credentials-duration`, default 6 hours, at
    /// most the role's MaxSessionDuration); the agent renews it at half its life.
    pub task_session: std::time::Duration,
}

/// The services besides ECS (which is the control plane itself), wired to their ports.
#[derive(Debug, Clone)]
pub struct Services {
    pub elbv2: Arc<gantry_elbv2::Elbv2>,
    pub acm: Arc<gantry_acm::Acm>,
    /// Application Auto Scaling as the binary wired it (its alarm inbox and controllers); `None`:
    /// one on the control plane and CloudWatch with AWS's settings, whose alarms invoke nothing.
    pub appautoscaling: Option<Arc<gantry_appautoscaling::AppAutoScaling>>,
    /// EC2 Auto Scaling, its instances started by the launchers the binary gives it.
    pub autoscaling: Arc<gantry_autoscaling::AutoScaling>,
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
        let autoscaling = gantry_autoscaling::AutoScaling::new(
            control.store().clone(),
            control.clock().clone(),
            control.ids().clone(),
            Arc::new(gantry_ports::autoscaling::NoLaunchers),
        );
        Services {
            elbv2: Arc::new(elbv2),
            acm: Arc::new(acm),
            appautoscaling: None,
            autoscaling: Arc::new(autoscaling),
        }
    }

    /// The same services with Auto Scaling's instances started by `launcher`.
    pub fn with_launcher(
        mut self,
        control: &ControlPlane,
        launcher: Arc<dyn gantry_ports::autoscaling::Launcher>,
    ) -> Self {
        self.autoscaling = Arc::new(gantry_autoscaling::AutoScaling::new(
            control.store().clone(),
            control.clock().clone(),
            control.ids().clone(),
            launcher,
        ));
        self
    }
}

pub(crate) struct AppState {
    pub(crate) control: ControlPlane,
    pub(crate) sts: Arc<gantry_sts::Sts>,
    pub(crate) iam: Arc<gantry_iam::Iam>,
    /// IAM's decisions, asked before every operation under `--auth sigv4`.
    pub(crate) authorizer: Arc<dyn gantry_ports::Authorizer>,
    /// IAM's roles (ECS's iam:PassRole checks).
    pub(crate) roles: Arc<dyn gantry_ports::Roles>,
    pub(crate) elbv2: Arc<gantry_elbv2::Elbv2>,
    pub(crate) acm: Arc<gantry_acm::Acm>,
    pub(crate) autoscaling: Arc<gantry_autoscaling::AutoScaling>,
    pub(crate) secretsmanager: Arc<gantry_secretsmanager::SecretsManager>,
    pub(crate) ssm: Arc<gantry_ssm::Ssm>,
    pub(crate) appautoscaling: Arc<gantry_appautoscaling::AppAutoScaling>,
    /// EventBridge's rules (the firing controller is the binary's to run).
    pub(crate) events: Arc<gantry_events::Events>,
    /// EventBridge Scheduler's schedules (its firing controller is the binary's to run).
    pub(crate) scheduler: Arc<gantry_scheduler::Scheduler>,
    /// What a task's `secrets` are resolved through (the agent channel's `secrets` route).
    pub(crate) secrets: agent::Resolvers,
    /// ECS Exec's sessions open on this server.
    pub(crate) exec: exec::Hub,
    pub(crate) auth: Authenticator,
    pub(crate) models: front::Models,
    pub(crate) config: ApiConfig,
    /// The last ECS request's context (the account's root, in one region), kept: building one
    /// costs three allocations and a format, and nearly every request is in the same region.
    pub(crate) ecs_ctx: std::sync::Mutex<Option<Arc<Ctx>>>,
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
    let appautoscaling = services.appautoscaling.unwrap_or_else(|| {
        Arc::new(gantry_appautoscaling::AppAutoScaling::new(
            control.store().clone(),
            control.clock().clone(),
            control.ids().clone(),
            Arc::new(control.clone()),
            config.cloudwatch.clone(),
            gantry_appautoscaling::Settings::default(),
        ))
    });
    let events = Arc::new(gantry_events::Events::new(control.store().clone(), control.clock().clone()));
    let scheduler =
        Arc::new(gantry_scheduler::Scheduler::new(control.store().clone(), control.clock().clone()));
    let iam = Arc::new(gantry_iam::Iam::new(
        control.store().clone(),
        control.clock().clone(),
        control.ids().clone(),
        Arc::new(gantry_core::OsSecrets),
        config.sealer.clone(),
    ));
    let authorizer: Arc<dyn gantry_ports::Authorizer> = Arc::new(gantry_iam::IamAuthorizer::new(iam.clone()));
    let sts = Arc::new(gantry_sts::Sts::with(gantry_sts::StsDeps {
        store: control.store().clone(),
        clock: control.clock().clone(),
        secrets: Arc::new(gantry_core::OsSecrets),
        sealer: config.sealer.clone(),
        roles: iam.clone(),
        authorizer: authorizer.clone(),
    }));
    // IAM users' keys and STS sessions authenticate beside the root key.
    let auth = auth.with_keys(vec![iam.clone(), sts.clone()]);
    let secrets = agent::Resolvers {
        secretsmanager: Arc::new(gantry_secretsmanager::Resolver(secretsmanager.clone())),
        ssm: Arc::new(gantry_ssm::Resolver(ssm.clone())),
    };
    let state = Arc::new(AppState {
        control,
        sts,
        roles: iam.clone(),
        iam,
        authorizer,
        elbv2: services.elbv2,
        acm: services.acm,
        autoscaling: services.autoscaling,
        secretsmanager,
        ssm,
        appautoscaling,
        events,
        scheduler,
        secrets,
        exec: exec::Hub::default(),
        auth,
        models: front::Models::load(),
        config,
        ecs_ctx: std::sync::Mutex::new(None),
    });
    let router = Router::new()
        .route("/_gantry/health", get(health))
        .route("/metrics", get(metrics))
        .route("/_gantry/reset", post(reset))
        .route("/_gantry/status", post(agent::status))
        .route("/_gantry/agent/v1/poll", post(agent::poll))
        .route("/_gantry/agent/v1/fargate", post(agent::register_fargate))
        .route("/_gantry/agent/v1/health", post(agent::health))
        .route("/_gantry/agent/v1/stats", post(agent::stats))
        .route("/_gantry/agent/v1/secrets", post(agent::secrets))
        .route("/_gantry/agent/v1/credentials", post(agent::credentials))
        .route("/_gantry/agent/v1/update", post(agent::update_status))
        .route("/_gantry/agent/v1/binary", get(agent::binary))
        .route("/_gantry/agent/v1/exec/{session}", get(exec::agent_stream))
        .route("/_gantry/exec/v1/data-channel/{session}", get(exec::caller_stream))
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
    if let Err(e) = s.config.cloudwatch.reset() {
        return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response();
    }
    if let Err(e) = s.config.logs.reset() {
        return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response();
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
) -> (reply::Answer, Option<String>) {
    let protocol = gantry_protocol::Protocol::AwsJson1_1;
    let op = match wire::operation(head.target) {
        Ok(op) => op,
        Err(e) => return (front::error(protocol, model, &e.into(), request_id).map(Into::into), None),
    };
    // The operation's name for the metrics: one that dispatch answered is known; on the error
    // paths, one of the model's or of Gantry's own extensions.
    let known = || {
        (op == "GantryExplainPlacement"
            || op == "GantryInterruptSpot"
            || gantry_model::ecs::OPERATIONS.binary_search(&op).is_ok())
        .then(|| op.to_string())
    };
    let ctx = ecs_ctx(s, front::ecs_region(caller));
    if authz::enforced(s, caller)
        && let Err(e) = authorize_ecs(s, &ctx, caller, op, body, head.source_ip)
    {
        return (front::error(protocol, model, &e, request_id).map(Into::into), known());
    }
    // ExecuteCommand opens a session of the front door's (exec.rs); every other operation is
    // the control plane's.
    let call = async {
        if op == "ExecuteCommand" {
            Box::pin(exec::execute_command(s, &ctx, caller, body, head.host)).await
        } else {
            dispatch::dispatch(&s.control, &ctx, op, body, head.host).await
        }
    };
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
        Ok(out) => (wire::ok_answer(out, request_id), Some(op.to_string())),
        Err(e) => {
            if e.kind.is_server_fault() {
                tracing::error!(op, request_id, error = %e, "request failed");
            } else {
                tracing::debug!(op, request_id, error = %e, "request rejected");
            }
            (front::error(protocol, model, &e.into(), request_id).map(Into::into), known())
        }
    }
}

/// The context of an ECS request in `region`: the last one's, if it was in the same region.
fn ecs_ctx(s: &AppState, region: &str) -> Arc<Ctx> {
    let mut last = s.ecs_ctx.lock().unwrap_or_else(|e| e.into_inner());
    match last.as_ref() {
        Some(ctx) if ctx.scope.region == region => ctx.clone(),
        _ => {
            let ctx = Arc::new(Ctx::root(Scope::new(s.config.account_id.clone(), region.to_string())));
            *last = Some(ctx.clone());
            ctx
        }
    }
}

/// IAM's decision on an ECS operation: `ecs:OP` on the resources it names, then `iam:PassRole`
/// on each role it hands to ECS (a task definition's task and execution roles, a launch's
/// overrides), which must exist.
fn authorize_ecs(
    s: &AppState,
    ctx: &Ctx,
    caller: &Caller,
    op: &str,
    body: &[u8],
    source_ip: Option<std::net::IpAddr>,
) -> Result<(), gantry_core::ServiceError> {
    let global = authz::global_context(s, caller, source_ip);
    let target = gantry_ecs::authz::target(&ctx.scope, op, body);
    let resources: Vec<(String, gantry_ports::AuthContext)> = target
        .resources
        .iter()
        .map(|(arn, keys)| {
            let mut c = global.clone();
            for (k, v) in target.context.iter().chain(keys) {
                c.set(k, v.clone());
            }
            (arn.clone(), c)
        })
        .collect();
    authz::check(s, caller, true, &format!("ecs:{op}"), &resources, None)?;
    let mut roles = target.passed_roles.clone();
    if let Some(td) = target.launches.as_deref().filter(|t| !t.is_empty()) {
        let req =
            gantry_model::DescribeTaskDefinitionRequest { task_definition: td.to_string(), include: None };
        if let Ok(found) = s.control.describe_task_definition(ctx, req)
            && let Some(def) = found.task_definition
        {
            roles.extend(def.task_role_arn.into_iter().chain(def.execution_role_arn));
        }
    }
    roles.sort();
    roles.dedup();
    for role in roles.iter().filter(|r| !r.is_empty()) {
        if s.roles.role(&ctx.scope.account, role).is_none() {
            return Err(EcsError::client("Role is not valid").into());
        }
        let mut c = global.clone();
        c.set1("iam:PassedToService", "ecs-tasks.amazonaws.com");
        authz::check(s, caller, true, "iam:PassRole", &[(role.clone(), c)], None)?;
    }
    Ok(())
}
