//! The front door: every AWS API Gantry serves, on one listener.
//!
//! A request is routed to its service by the SigV4 credential scope's service name (the
//! `Authorization` header's, or a presigned query string's), else by its `X-Amz-Target` prefix,
//! its CBOR path (`/service/NAME/operation/OP`) or its query `Action`. The service's model says
//! which protocols it speaks; the request's headers say which one this is. The body is read
//! within that protocol's size limit and the body timeout, the signature is checked
//! ([`crate::auth`]), and the operation runs. Every failure is answered in the request's
//! protocol, with the code that service's SDK expects.

use crate::AppState;
use crate::auth::{AuthError, AuthMode, Caller};
use crate::reply::{Answer, Reply};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use gantry_core::ServiceError;
use gantry_protocol::{Encoded, Model, Protocol, ProtocolError};
use gantry_sigv4::{Family, SigError};
use http_body_util::BodyExt;
use std::sync::Arc;

/// The services behind the front door. Routing is one `match` on this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Ecs,
    Sts,
    Elbv2,
    Acm,
    SecretsManager,
    Ssm,
    Logs,
    CloudWatch,
    Iam,
    AppAutoScaling,
    Events,
    Scheduler,
    AutoScaling,
}

impl Service {
    pub const ALL: [Service; 13] = [
        Service::Ecs,
        Service::Sts,
        Service::Elbv2,
        Service::Acm,
        Service::SecretsManager,
        Service::Ssm,
        Service::Logs,
        Service::CloudWatch,
        Service::Iam,
        Service::AppAutoScaling,
        Service::Events,
        Service::Scheduler,
        Service::AutoScaling,
    ];

    /// The SigV4 signing name.
    pub fn signing_name(self) -> &'static str {
        match self {
            Service::Ecs => "ecs",
            Service::Sts => "sts",
            Service::Elbv2 => "elasticloadbalancing",
            Service::Acm => "acm",
            Service::SecretsManager => "secretsmanager",
            Service::Ssm => "ssm",
            Service::Logs => "logs",
            Service::CloudWatch => "monitoring",
            Service::Iam => "iam",
            Service::AppAutoScaling => "application-autoscaling",
            Service::Events => "events",
            Service::Scheduler => "scheduler",
            Service::AutoScaling => "autoscaling",
        }
    }

    fn model_json(self) -> &'static str {
        match self {
            Service::Ecs => gantry_model::ecs::MODEL,
            Service::Sts => gantry_model::sts::MODEL,
            Service::Elbv2 => gantry_model::elbv2::MODEL,
            Service::Acm => gantry_model::acm::MODEL,
            Service::SecretsManager => gantry_model::secretsmanager::MODEL,
            Service::Ssm => gantry_model::ssm::MODEL,
            Service::Logs => gantry_model::logs::MODEL,
            Service::CloudWatch => gantry_model::cloudwatch::MODEL,
            Service::Iam => gantry_model::iam::MODEL,
            Service::AppAutoScaling => gantry_model::appautoscaling::MODEL,
            Service::Events => gantry_model::events::MODEL,
            Service::Scheduler => gantry_model::scheduler::MODEL,
            Service::AutoScaling => gantry_model::autoscaling::MODEL,
        }
    }
}

/// Each service's model, loaded once, and stand-ins for answering requests to services Gantry
/// does not serve in the protocol they were sent in.
pub struct Models {
    models: Vec<(Service, Model)>,
    unknown_json: Model,
    unknown_query: Model,
    unknown_cbor: Model,
}

impl std::fmt::Debug for Models {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Models").finish_non_exhaustive()
    }
}

fn stand_in(protocol: &str, extra: &str) -> Model {
    let json = format!(
        r#"{{"metadata":{{"protocol":"{protocol}","protocols":["{protocol}"],"apiVersion":"2011-06-15"{extra}}},"operations":{{}},"shapes":{{}}}}"#
    );
    Model::from_json(json.as_bytes()).unwrap_or_else(|e| panic!("the stand-in model does not load: {e}"))
}

impl Models {
    /// Loads the generated models. They are part of the binary, so a failure is a build defect.
    pub fn load() -> Models {
        let models = Service::ALL
            .iter()
            .map(|&s| {
                let m = Model::from_json(s.model_json().as_bytes())
                    .unwrap_or_else(|e| panic!("the {} model does not load: {e}", s.signing_name()));
                (s, m)
            })
            .collect();
        Models {
            models,
            unknown_json: stand_in("json", r#","jsonVersion":"1.1""#),
            unknown_query: stand_in("query", ""),
            unknown_cbor: stand_in("smithy-rpc-v2-cbor", ""),
        }
    }

    pub fn model(&self, s: Service) -> &Model {
        match self.models.iter().find(|(x, _)| *x == s) {
            Some((_, m)) => m,
            None => &self.unknown_json,
        }
    }

    fn by_signing_name(&self, name: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|s| s.signing_name() == name)
    }

    /// The service an `X-Amz-Target` prefix or a CBOR path names.
    fn by_target(&self, target: Option<&str>, path: &str) -> Option<Service> {
        let prefix = match target {
            Some(t) => t.rsplit_once('.').map(|(p, _)| p)?,
            None => path.split("/service/").nth(1)?.split('/').next()?,
        };
        self.models.iter().find(|(_, m)| m.metadata.target_prefix.as_deref() == Some(prefix)).map(|(s, _)| *s)
    }

    /// The query service that has `action` (the first in [`Service::ALL`]'s order).
    fn by_action(&self, action: &str) -> Option<Service> {
        self.models
            .iter()
            .find(|(_, m)| m.metadata.protocols.iter().any(|p| p == "query") && m.operation(action).is_some())
            .map(|(s, _)| *s)
    }
}

/// What is known of a request before its body is read.
struct Head<'a> {
    headers: &'a HeaderMap,
    method: &'a str,
    path: &'a str,
    query: &'a str,
    target: Option<&'a str>,
    content_type: Option<&'a str>,
    smithy: Option<&'a str>,
    content_length: Option<&'a str>,
    host: Option<&'a str>,
    /// Kept as received: checking that it is text costs a pass over its ~200 bytes, and only
    /// routing without a target needs it as text (the signature check reads the bytes).
    authorization: Option<&'a HeaderValue>,
    /// The other headers that parsing a signature reads, as received, in
    /// `gantry_sigv4::SIGNATURE_HEADERS`' order: `X-Amz-Date`, `Date` and `X-Amz-Security-Token`
    /// (open mode parses the signature from these alone).
    signing: [Option<&'a HeaderValue>; 3],
}

impl<'a> Head<'a> {
    /// The request line and the headers the front door reads, found in one pass over the
    /// headers (the first value of each, as `HeaderMap::get` gives it; a value that is not
    /// text counts as absent, but for the Authorization header, kept as received).
    fn new(parts: &'a axum::http::request::Parts) -> Head<'a> {
        let mut head = Head {
            headers: &parts.headers,
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or(""),
            target: None,
            content_type: None,
            smithy: None,
            content_length: None,
            host: None,
            authorization: None,
            signing: [None; 3],
        };
        // Which of the text ones were seen (a bit each), so that a later value never replaces a
        // first one that was not text.
        let mut seen = 0u8;
        for (name, value) in &parts.headers {
            // The standard names compare as the enum the http crate keeps them as (a byte);
            // only the others are compared as text (lowercase, told apart by length first).
            let (bit, slot) = if name == axum::http::header::CONTENT_TYPE {
                (1, &mut head.content_type)
            } else if name == axum::http::header::CONTENT_LENGTH {
                (2, &mut head.content_length)
            } else if name == axum::http::header::HOST {
                (4, &mut head.host)
            } else if name == axum::http::header::AUTHORIZATION {
                head.authorization = head.authorization.or(Some(value));
                continue;
            } else {
                match name.as_str() {
                    "x-amz-target" => (8, &mut head.target),
                    "smithy-protocol" => (16, &mut head.smithy),
                    other => {
                        if let Some(i) = gantry_sigv4::SIGNATURE_HEADERS.iter().position(|h| *h == other) {
                            head.signing[i] = head.signing[i].or(Some(value));
                        }
                        continue;
                    }
                }
            };
            if seen & bit == 0 {
                seen |= bit;
                *slot = value.to_str().ok();
            }
        }
        head
    }
}

/// The protocol a request was most likely sent in, for answering one whose service is unknown.
fn guess_protocol(head: &Head<'_>) -> Protocol {
    Protocol::detect(head.content_type, head.target, head.smithy, head.path)
        .unwrap_or(if head.target.is_some() { Protocol::AwsJson1_1 } else { Protocol::AwsQuery })
}

/// Where the router sends a request.
enum Route {
    /// A service, and whether the credential scope named a different one (the signature is then
    /// refused as scoped to the wrong service).
    To(Service),
    Unknown(String),
}

fn route(models: &Models, head: &Head<'_>, guessed: Protocol, body: &[u8]) -> Route {
    if let Some(s) = models.by_target(head.target, head.path) {
        // The target names the endpoint's service; a scope for another is refused by auth.
        return Route::To(s);
    }
    let by_scope = crate::auth::scope_service(head.authorization.and_then(|v| v.to_str().ok()), head.query);
    // A query request names its action in the form (or, presigned, in the query string).
    let action = || {
        if guessed != Protocol::AwsQuery {
            return None;
        }
        let form = if body.is_empty() { head.query.as_bytes() } else { body };
        gantry_protocol::query_action(form).0.filter(|a| !a.is_empty())
    };
    match by_scope {
        Some(name) => match models.by_signing_name(name) {
            // A query action sent with a scope for a service that does not speak the query
            // protocol was meant for the service that has the action (auth refuses the scope).
            Some(s) if guessed == Protocol::AwsQuery && !speaks(models.model(s), guessed) => {
                Route::To(action().and_then(|a| models.by_action(&a)).unwrap_or(s))
            }
            Some(s) => Route::To(s),
            None => Route::Unknown(name.to_string()),
        },
        // Unsigned (auth will refuse it): find the service by its action, or answer as ECS.
        None => match action().and_then(|a| models.by_action(&a)) {
            Some(s) => Route::To(s),
            None if head.target.is_some() => Route::Unknown(head.target.unwrap_or_default().to_string()),
            None => Route::To(Service::Ecs),
        },
    }
}

fn speaks(model: &Model, p: Protocol) -> bool {
    model.metadata.protocols.iter().any(|m| m == p.model_name())
}

/// Renders an encoded protocol response.
fn encoded(e: Encoded, request_id: &str) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (status, e.body).into_response();
    let h = r.headers_mut();
    h.insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static(e.content_type));
    for (k, v) in e.headers {
        if let (Ok(k), Ok(v)) = (axum::http::HeaderName::try_from(k), HeaderValue::try_from(v)) {
            h.insert(k, v);
        }
    }
    if !h.contains_key(crate::wire::X_AMZN_REQUESTID)
        && let Ok(v) = HeaderValue::from_str(request_id)
    {
        h.insert(crate::wire::X_AMZN_REQUESTID, v);
    }
    r
}

pub(crate) fn error(protocol: Protocol, model: &Model, err: &ServiceError, request_id: &str) -> Response {
    encoded(gantry_protocol::serialize_error(protocol, model, err, request_id), request_id)
}

fn family(p: Protocol) -> Family {
    match p {
        Protocol::AwsQuery => Family::Query,
        _ => Family::Json,
    }
}

/// A refused signature as the service answers it: HTTP 400 for JSON services (as ECS and
/// DynamoDB answer), 403 for query services, except the query protocol's IncompleteSignature.
pub(crate) fn auth_error(e: &AuthError, p: Protocol) -> ServiceError {
    let f = family(p);
    match e {
        AuthError::Signature(sig) => {
            let status = match (f, sig) {
                (Family::Json, _) | (_, SigError::Incomplete(_)) => 400,
                _ => 403,
            };
            ServiceError::sender(sig.code(f), sig.message(f)).with_status(status)
        }
        AuthError::ExpiredToken => {
            let code = if f == Family::Json { "ExpiredTokenException" } else { "ExpiredToken" };
            ServiceError::sender(code, "The security token included in the request is expired")
                .with_status(if f == Family::Json { 400 } else { 403 })
        }
    }
}

/// Every request that is not one of Gantry's own (`/_gantry/...`, `/metrics`), counted and
/// timed per service and operation (an operation the service does not have counts as
/// `unknown`, so made-up names cannot grow the metrics).
pub(crate) async fn handle(State(s): State<Arc<AppState>>, req: Request) -> Response {
    respond(&s, req, None).await.map(Reply::into_body)
}

/// [`handle`] for a request from `source_ip` (IAM's `aws:SourceIp`), as the listener calls it.
///
/// Not an `async fn`: the request is taken apart before the answer's future is made, so that
/// the future this returns (which hyper moves on every request) holds it once, not twice.
pub(crate) fn respond<'a, B>(
    s: &'a AppState,
    req: axum::http::Request<B>,
    source_ip: Option<std::net::IpAddr>,
) -> impl std::future::Future<Output = Answer> + 'a
where
    B: hyper::body::Body<Data = bytes::Bytes> + 'a,
    B::Error: Into<axum::BoxError>,
{
    let started = std::time::Instant::now();
    let (parts, body) = req.into_parts();
    let answering = answer(s, parts, body, source_ip);
    // A map, not an `async` block: awaiting the future from inside a block would hold it twice
    // (as the block's capture and as the awaited value).
    futures_util::FutureExt::map(answering, move |answered| record(s, started, answered))
}

/// Counts and times an answer.
fn record(
    s: &AppState,
    started: std::time::Instant,
    answered: (Answer, Option<Service>, Option<String>),
) -> Answer {
    let (response, service, op) = answered;
    let op = match (service, op.as_deref()) {
        // ECS names only an operation it knows (its model's, or Gantry's extensions).
        (Some(Service::Ecs), Some(op)) => op,
        (Some(svc), Some(op)) if s.models.model(svc).operation(op).is_some() => op,
        _ => "unknown",
    };
    let service = service.map_or("unknown", Service::signing_name);
    s.control.metrics().api.observe(service, op, response.status().as_u16(), started.elapsed());
    response
}

async fn answer<B>(
    s: &AppState,
    parts: axum::http::request::Parts,
    body: B,
    source_ip: Option<std::net::IpAddr>,
) -> (Answer, Option<Service>, Option<String>)
where
    B: hyper::body::Body<Data = bytes::Bytes>,
    B::Error: Into<axum::BoxError>,
{
    let request_id = s.control.ids().uuid_text();
    let request_id = request_id.as_str();
    let head = Head::new(&parts);
    // The body, within the limit of the protocol the headers say, and the body timeout.
    let guessed = guess_protocol(&head);
    let limit = guessed.max_body();
    let declared = head.content_length.and_then(|v| v.parse::<u64>().ok());
    let early_error = |e: ServiceError| {
        let model = match guessed {
            Protocol::AwsQuery => &s.models.unknown_query,
            Protocol::RpcV2Cbor => &s.models.unknown_cbor,
            _ => &s.models.unknown_json,
        };
        error(guessed, model, &e, request_id).map(Reply::from)
    };
    if let Some(len) = declared.filter(|&len| len > limit as u64) {
        return (
            early_error(ProtocolError::BodyTooLarge { size: len as usize, limit }.to_service_error(guessed)),
            None,
            None,
        );
    }
    let body = match read_body(body, limit, s.config.limits.body_read_timeout).await {
        Ok(b) => b,
        Err(e) => return (early_error(e), None, None),
    };

    let (service, model, protocol) = match resolve(&s.models, &head, guessed, &body) {
        Ok(found) => found,
        Err(Unresolved::Service(e)) => return (early_error(e), None, None),
        Err(Unresolved::Protocol(service, p, e)) => {
            return (error(p, s.models.model(service), &e, request_id).map(Into::into), Some(service), None);
        }
    };
    // A presigned query request carries its parameters in the query string.
    let form: &[u8] =
        if protocol == Protocol::AwsQuery && body.is_empty() { head.query.as_bytes() } else { &body };

    // Linearizable reads (etcd's ReadIndex): with servers sharing an etcd store, this server's
    // mirror is first brought up to every write any of them had answered when the request came
    // (a write answered by another server is read here, signing keys included). Nothing to wait
    // for on SQLite.
    let store = s.control.store();
    let synced = if store.read_index_waits() { store.read_index().await.map(drop) } else { Ok(()) };
    if let Err(e) = synced {
        tracing::warn!(error = %e, "read index");
        let code =
            if protocol == Protocol::AwsQuery { "ServiceUnavailable" } else { "ServiceUnavailableException" };
        let e = ServiceError::receiver(code, format!("The store is unavailable: {e}")).with_status(503);
        return (error(protocol, model, &e, request_id).map(Into::into), Some(service), None);
    }

    let caller = match signer(s, &head, &body, service, request_id) {
        Ok(c) => c,
        Err(e) => {
            let r = error(protocol, model, &auth_error(&e, protocol), request_id);
            return (r.map(Into::into), Some(service), None);
        }
    };

    match service {
        Service::Ecs => {
            let (r, op) =
                crate::ecs(s, &head_parts(&head, source_ip), &caller, &body, request_id, model).await;
            (r, Some(service), op)
        }
        Service::Sts | Service::Iam => {
            let caller = &caller;
            let (r, op) =
                Box::pin(call_async(protocol, model, &head, form, request_id, |op, input| async move {
                    authorize(s, caller, service, false, &op, &input, source_ip)?;
                    match service {
                        Service::Sts => s.sts.call(&caller.principal, &op, &input).await,
                        _ => s.iam.call(&caller.principal, &op, &input).await,
                    }
                }))
                .await;
            (r.map(Into::into), Some(service), op)
        }
        Service::Elbv2 | Service::Acm | Service::Events | Service::AutoScaling => {
            let scope = gantry_core::Scope::new(s.config.account_id.clone(), caller.region.clone());
            let caller = &caller;
            let (r, op) =
                Box::pin(call_async(protocol, model, &head, form, request_id, |op, input| async move {
                    authorize(s, caller, service, protocol != Protocol::AwsQuery, &op, &input, source_ip)?;
                    match service {
                        Service::Elbv2 => s.elbv2.call(&scope, &op, &input).await,
                        Service::Events => s.events.call(&scope, &op, &input).await,
                        Service::AutoScaling => s.autoscaling.call(&scope, &op, &input).await,
                        _ => s.acm.call(&scope, &op, &input).await,
                    }
                }))
                .await;
            (r.map(Into::into), Some(service), op)
        }
        Service::SecretsManager | Service::Ssm => {
            let scope = gantry_core::Scope::new(caller.principal.account.clone(), caller.region.clone());
            let user = &caller.principal.arn;
            let caller = &caller;
            let (r, op) =
                Box::pin(call_async(protocol, model, &head, form, request_id, |op, input| async move {
                    authorize(s, caller, service, true, &op, &input, source_ip)?;
                    match service {
                        Service::SecretsManager => s.secretsmanager.call(&scope, &op, &input).await,
                        _ => s.ssm.call(&scope, user, &op, &input).await,
                    }
                }))
                .await;
            (r.map(Into::into), Some(service), op)
        }
        Service::AppAutoScaling => {
            let scope = gantry_core::Scope::new(caller.principal.account.clone(), caller.region.clone());
            let caller = &caller;
            let (r, op) =
                Box::pin(call_async(protocol, model, &head, form, request_id, |op, input| async move {
                    authorize(s, caller, service, true, &op, &input, source_ip)?;
                    s.appautoscaling.call(&scope, &op, &input).await
                }))
                .await;
            (r.map(Into::into), Some(service), op)
        }
        Service::Scheduler => {
            let scope = gantry_core::Scope::new(caller.principal.account.clone(), caller.region.clone());
            let caller = &caller;
            let (r, op) = Box::pin(call_rest(model, &head, &body, request_id, |op, input| async move {
                authorize(s, caller, service, true, &op, &input, source_ip)?;
                s.scheduler.call(&scope, &op, &input).await
            }))
            .await;
            (r.map(Into::into), Some(service), op)
        }
        Service::CloudWatch | Service::Logs => {
            let call = Call { protocol, model, head: &head, form, request_id, source_ip };
            let (r, op) = call_on_disk(s, &call, service, &caller);
            (r.map(Into::into), Some(service), op)
        }
    }
}

/// What a synchronous operation call needs of the request.
struct Call<'a> {
    protocol: Protocol,
    model: &'a Model,
    head: &'a Head<'a>,
    form: &'a [u8],
    request_id: &'a str,
    source_ip: Option<std::net::IpAddr>,
}

/// CloudWatch's and CloudWatch Logs' operations: they fsync their own files, so they run off the
/// async workers (`block_in_place`).
fn call_on_disk(s: &AppState, c: &Call<'_>, service: Service, caller: &Caller) -> (Response, Option<String>) {
    let (protocol, model, head, form, request_id) = (c.protocol, c.model, c.head, c.form, c.request_id);
    if service == Service::CloudWatch {
        let cw = s.config.cloudwatch.clone();
        let scope = (caller.principal.account.as_str(), caller.region.as_str());
        return call_generic(protocol, model, head, form, request_id, |op, input| {
            // PutMetricData fsyncs its log: off the async workers.
            let run = || cw.call(scope.0, scope.1, op, input);
            match tokio::runtime::Handle::current().runtime_flavor() {
                tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(run),
                _ => run(),
            }
        });
    }
    let logs = s.config.logs.clone();
    call_generic(protocol, model, head, form, request_id, |op, input| {
        authorize(s, caller, service, true, op, input, c.source_ip)?;
        // PutLogEvents fsyncs: off the async workers.
        let run = || logs.call(&caller.principal, &caller.region, op, input);
        match tokio::runtime::Handle::current().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(run),
            _ => run(),
        }
    })
}

/// Why a request found no service to answer it, or no protocol of that service.
enum Unresolved {
    /// No service by that name: its error in the guessed protocol.
    Service(ServiceError),
    /// The service, the protocol to answer in, and the error.
    Protocol(Service, Protocol, ServiceError),
}

/// The service a request is for (its signing name, then its target prefix, action or path), the
/// protocol it speaks, and that its body is within that protocol's limit.
#[inline]
fn resolve<'m>(
    models: &'m Models,
    head: &Head<'_>,
    guessed: Protocol,
    body: &[u8],
) -> Result<(Service, &'m Model, Protocol), Unresolved> {
    let service = match route(models, head, guessed, body) {
        Route::To(svc) => svc,
        Route::Unknown(name) => {
            let code =
                if guessed == Protocol::AwsQuery { "InvalidAction" } else { "UnknownOperationException" };
            let served: Vec<&str> = Service::ALL.iter().map(|s| s.signing_name()).collect();
            let err = ServiceError::sender(
                code,
                format!("Gantry does not serve '{name}'; it serves {}.", served.join(", ")),
            );
            return Err(Unresolved::Service(err));
        }
    };
    let model = models.model(service);
    let protocol = match Protocol::accept(model, head.content_type, head.target, head.smithy, head.path) {
        Ok(p) => p,
        Err(e) => {
            let p = Protocol::pick(model).unwrap_or(Protocol::AwsJson1_1);
            return Err(Unresolved::Protocol(service, p, e.to_service_error(p)));
        }
    };
    if body.len() > protocol.max_body() {
        let e = ProtocolError::BodyTooLarge { size: body.len(), limit: protocol.max_body() };
        return Err(Unresolved::Protocol(service, protocol, e.to_service_error(protocol)));
    }
    Ok((service, model, protocol))
}

/// Who signed the request (SigV4 against the key store, or anyone in open mode).
#[inline]
fn signer(
    s: &AppState,
    head: &Head<'_>,
    body: &[u8],
    service: Service,
    request_id: &str,
) -> Result<Caller, AuthError> {
    let now = s.control.clock().now().0.div_euclid(1000);
    let authenticate = |headers: &[(&str, &[u8])]| {
        let signed =
            gantry_sigv4::Request { method: head.method, path: head.path, query: head.query, headers, body };
        s.auth.authenticate(&signed, service.signing_name(), now).inspect_err(|e| {
            if let AuthError::Signature(SigError::SignatureDoesNotMatch(m)) = e {
                tracing::debug!(request_id, canonical_request = %m.canonical_request, "signature mismatch");
            }
        })
    };
    if s.auth.mode() == AuthMode::Open {
        // Open mode parses the signature and checks nothing it signed: the headers parsing
        // reads, found by `Head::new`, are all it needs (the first value of each, as parsing
        // would find them among all the headers).
        let mut few: [(&str, &[u8]); 4] = [("", &[]); 4];
        let found = std::iter::once(("authorization", head.authorization))
            .chain(gantry_sigv4::SIGNATURE_HEADERS.into_iter().zip(head.signing))
            .filter_map(|(name, value)| Some((name, value?.as_bytes())));
        let mut n = 0;
        for (slot, header) in few.iter_mut().zip(found) {
            *slot = header;
            n += 1;
        }
        return authenticate(&few[..n]);
    }
    // The headers as SigV4 reads them: in an array on the stack when there are as few as
    // requests have (one allocation less on every request), else in a Vec.
    if head.headers.len() <= 32 {
        let mut on_stack: [(&str, &[u8]); 32] = [("", &[]); 32];
        for (slot, (n, v)) in on_stack.iter_mut().zip(head.headers) {
            *slot = (n.as_str(), v.as_bytes());
        }
        authenticate(&on_stack[..head.headers.len()])
    } else {
        let in_vec: Vec<(&str, &[u8])> =
            head.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())).collect();
        authenticate(&in_vec)
    }
}

/// IAM's decision on an operation of a service other than ECS: `service:Operation` on the
/// resource its input names (IAM's users, roles, groups and policies; a secret, with its
/// resource policy), `*` for the rest. STS's AssumeRole decides for itself (the role's trust
/// policy, then the caller's own policies), and GetCallerIdentity and GetSessionToken need no
/// permission, as in AWS.
fn authorize(
    s: &AppState,
    caller: &Caller,
    service: Service,
    json: bool,
    op: &str,
    input: &[u8],
    source_ip: Option<std::net::IpAddr>,
) -> Result<(), ServiceError> {
    if !crate::authz::enforced(s, caller)
        || (service == Service::Sts && matches!(op, "GetCallerIdentity" | "GetSessionToken" | "AssumeRole"))
    {
        return Ok(());
    }
    let v: serde_json::Value = serde_json::from_slice(input).unwrap_or(serde_json::Value::Null);
    let scope = || gantry_core::Scope::new(caller.principal.account.clone(), caller.region.clone());
    let (resource, policy) = match service {
        Service::Iam => (s.iam.authz_resource(&caller.principal, op, &v), None),
        Service::SecretsManager => match v.get("SecretId").and_then(|x| x.as_str()) {
            Some(id) => match s.secretsmanager.authz_target(&scope(), id) {
                Some((arn, policy)) => (arn, policy),
                None => ("*".to_string(), None),
            },
            None => ("*".to_string(), None),
        },
        _ => ("*".to_string(), None),
    };
    let ctx = crate::authz::global_context(s, caller, source_ip);
    let action = format!("{}:{op}", service.signing_name());
    crate::authz::check(s, caller, json, &action, &[(resource, ctx)], policy.as_deref())
}

/// [`call_generic`] for a service whose operations are asynchronous (they read and write the
/// store).
async fn call_async<F, Fut>(
    protocol: Protocol,
    model: &Model,
    head: &Head<'_>,
    body: &[u8],
    request_id: &str,
    run: F,
) -> (Response, Option<String>)
where
    F: FnOnce(String, Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<u8>, ServiceError>>,
{
    let op = match gantry_protocol::operation_name(protocol, model, head.target, head.path, body) {
        Ok(op) => op,
        Err(e) => return (error(protocol, model, &e.to_service_error(protocol), request_id), None),
    };
    let input = match gantry_protocol::parse_request(protocol, model, &op, body) {
        Ok(v) => serde_json::to_vec(&v).unwrap_or_default(),
        Err(e) => return (error(protocol, model, &e.to_service_error(protocol), request_id), Some(op)),
    };
    let span = tracing::debug_span!("request", op = %op, request_id);
    let out = tracing::Instrument::instrument(run(op.clone(), input), span).await;
    (finish(protocol, model, &op, out, request_id), Some(op))
}

/// A restJson1 service: the operation found by the request's method and path, its input read
/// from the URI, query string, headers and body into the JSON form.
async fn call_rest<F, Fut>(
    model: &Model,
    head: &Head<'_>,
    body: &[u8],
    request_id: &str,
    run: F,
) -> (Response, Option<String>)
where
    F: FnOnce(String, Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<u8>, ServiceError>>,
{
    let protocol = Protocol::RestJson1;
    let (op, labels) = match gantry_protocol::rest::operation(model, head.method, head.path) {
        Ok(found) => found,
        Err(e) => return (error(protocol, model, &e.to_service_error(protocol), request_id), None),
    };
    let headers: Vec<(&str, &[u8])> = head.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())).collect();
    let req = gantry_protocol::rest::RestRequest {
        method: head.method,
        path: head.path,
        query: head.query,
        headers: &headers,
        body,
    };
    let input = match gantry_protocol::rest::parse_request(model, &op, &labels, &req) {
        Ok(v) => serde_json::to_vec(&v).unwrap_or_default(),
        Err(e) => return (error(protocol, model, &e.to_service_error(protocol), request_id), Some(op)),
    };
    let span = tracing::debug_span!("request", op = %op, request_id);
    let out = tracing::Instrument::instrument(run(op.clone(), input), span).await;
    (finish(protocol, model, &op, out, request_id), Some(op))
}

/// What the ECS handler needs of the request head.
pub(crate) struct EcsHead<'a> {
    pub target: Option<&'a str>,
    pub host: Option<&'a str>,
    pub source_ip: Option<std::net::IpAddr>,
}

fn head_parts<'a>(head: &Head<'a>, source_ip: Option<std::net::IpAddr>) -> EcsHead<'a> {
    EcsHead { target: head.target, host: head.host, source_ip }
}

/// A service whose operations take and return the JSON form: the protocol crate turns the
/// request into it and the answer out of it.
fn call_generic(
    protocol: Protocol,
    model: &Model,
    head: &Head<'_>,
    body: &[u8],
    request_id: &str,
    run: impl FnOnce(&str, &[u8]) -> Result<Vec<u8>, ServiceError>,
) -> (Response, Option<String>) {
    let op = match gantry_protocol::operation_name(protocol, model, head.target, head.path, body) {
        Ok(op) => op,
        Err(e) => return (error(protocol, model, &e.to_service_error(protocol), request_id), None),
    };
    let r = run_operation(protocol, model, &op, body, request_id, run);
    (r, Some(op))
}

fn run_operation(
    protocol: Protocol,
    model: &Model,
    op: &str,
    body: &[u8],
    request_id: &str,
    run: impl FnOnce(&str, &[u8]) -> Result<Vec<u8>, ServiceError>,
) -> Response {
    let span = tracing::debug_span!("request", op = %op, request_id);
    let _enter = span.enter();
    let input = match gantry_protocol::parse_request(protocol, model, op, body) {
        Ok(v) => serde_json::to_vec(&v).unwrap_or_default(),
        Err(e) => return error(protocol, model, &e.to_service_error(protocol), request_id),
    };
    finish(protocol, model, op, run(op, &input), request_id)
}

/// An operation's JSON output (or error) in the request's protocol.
fn finish(
    protocol: Protocol,
    model: &Model,
    op: &str,
    out: Result<Vec<u8>, ServiceError>,
    request_id: &str,
) -> Response {
    let out = out.and_then(|out| {
        serde_json::from_slice::<serde_json::Value>(&out)
            .map_err(|e| ServiceError::receiver("InternalFailure", format!("unreadable output: {e}")))
    });
    match out {
        Ok(v) => {
            encoded(gantry_protocol::serialize_response(protocol, model, op, &v, request_id), request_id)
        }
        Err(e) => {
            if !e.sender_fault {
                tracing::error!(op = %op, request_id, error = %e, "request failed");
            }
            error(protocol, model, &e, request_id)
        }
    }
}

/// Why a body was not collected.
enum BodyFault {
    /// More than the limit arrived.
    TooLarge,
    /// The connection failed or broke the framing.
    Broken(axum::Error),
}

/// The body's data frames, joined, within `limit` bytes. A body that arrived as one frame (a
/// small request, read with its head) is that frame's bytes: nothing is copied or buffered.
async fn collect_within<B>(body: B, limit: usize) -> Result<bytes::Bytes, BodyFault>
where
    B: hyper::body::Body<Data = bytes::Bytes>,
    B::Error: Into<axum::BoxError>,
{
    let mut body = std::pin::pin!(body);
    let mut first: Option<bytes::Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        // Trailers are not part of the body.
        let Ok(data) = frame.map_err(|e| BodyFault::Broken(axum::Error::new(e)))?.into_data() else {
            continue;
        };
        len += data.len();
        if len > limit {
            return Err(BodyFault::TooLarge);
        }
        if first.is_none() && joined.is_empty() {
            first = Some(data);
        } else {
            if let Some(f) = first.take() {
                joined.extend_from_slice(&f);
            }
            joined.extend_from_slice(&data);
        }
    }
    Ok(first.unwrap_or_else(|| bytes::Bytes::from(joined)))
}

async fn read_body<B>(
    body: B,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<bytes::Bytes, ServiceError>
where
    B: hyper::body::Body<Data = bytes::Bytes>,
    B::Error: Into<axum::BoxError>,
{
    use std::future::Future;
    use std::task::Poll;
    let mut collect = std::pin::pin!(collect_within(body, limit));
    // A small body has usually arrived with the head: then it is collected in one poll, without
    // arming (and disarming) a timer for it.
    let first = std::future::poll_fn(|cx| Poll::Ready(collect.as_mut().poll(cx))).await;
    let collected = match first {
        Poll::Ready(done) => Ok(done),
        Poll::Pending => tokio::time::timeout(timeout, collect).await,
    };
    match collected {
        Ok(Ok(collected)) => Ok(collected),
        Ok(Err(BodyFault::TooLarge)) => Err(ServiceError::sender(
            "RequestEntityTooLarge",
            format!("The request body is larger than the limit of {limit} bytes."),
        )
        .with_status(413)),
        Ok(Err(BodyFault::Broken(e))) => {
            Err(ServiceError::sender("IncompleteBody", format!("The request body could not be read: {e}")))
        }
        Err(_) => Err(ServiceError::sender(
            "RequestTimeout",
            format!("The request body did not arrive within {} seconds.", timeout.as_secs()),
        )
        .with_status(408)),
    }
}

impl AuthMode {
    pub fn name(self) -> &'static str {
        match self {
            AuthMode::Open => "open",
            AuthMode::SigV4 => "sigv4",
        }
    }
}

/// The caller of an ECS request, in ECS's terms.
pub(crate) fn ecs_region(caller: &Caller) -> &str {
    &caller.region
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn frames(parts: &[&'static [u8]]) -> Body {
        let chunks: Vec<Result<bytes::Bytes, std::io::Error>> =
            parts.iter().map(|p| Ok(bytes::Bytes::from_static(p))).collect();
        Body::from_stream(futures_util::stream::iter(chunks))
    }

    /// A body is its frames joined, a one-frame body is that frame's bytes (not copied), and a
    /// body past the limit or broken is refused as such.
    #[tokio::test]
    async fn bodies_are_collected_within_their_limit() {
        let got = collect_within(frames(&[b"{\"a\"", b":1", b"}"]), 100).await;
        assert_eq!(got.ok().as_deref(), Some(&b"{\"a\":1}"[..]));
        static ONE: &[u8] = b"{}";
        let got = collect_within(frames(&[ONE]), 2).await.ok().unwrap();
        assert_eq!(got.as_ptr(), ONE.as_ptr(), "one frame is not copied");
        assert_eq!(collect_within(frames(&[]), 0).await.ok().as_deref(), Some(&b""[..]));
        assert!(matches!(collect_within(frames(&[b"12", b"345"]), 4).await, Err(BodyFault::TooLarge)));
        assert!(matches!(collect_within(frames(&[b"1234"]), 4).await, Ok(b) if b.len() == 4));
        let broken = Body::from_stream(futures_util::stream::iter(vec![
            Ok(bytes::Bytes::from_static(b"{")),
            Err(std::io::Error::other("reset")),
        ]));
        assert!(
            matches!(collect_within(broken, 100).await, Err(BodyFault::Broken(e)) if e.to_string().contains("reset"))
        );
    }

    /// The head reads the first value of each header it needs, whatever the case of its name:
    /// the Authorization header as received, the others as text.
    #[test]
    fn the_head_takes_each_headers_first_text_value() {
        let req = axum::http::Request::post("/p?a=1")
            .header("X-Amz-Target", "AmazonEC2ContainerServiceV20141113.ListClusters")
            .header("x-amz-target", "Other.Op")
            .header("Content-Type", "application/x-amz-json-1.1")
            .header("host", "localhost:8080")
            .header("authorization", HeaderValue::from_bytes(b"AWS4 \xff").unwrap())
            .header("authorization", "AWS4-HMAC-SHA256 Credential=x")
            .header("content-length", "2")
            .header("X-Amz-Date", "20260101T000000Z")
            .header("x-amz-date", "20270101T000000Z")
            .header("Date", "Thu, 01 Jan 2026 00:00:00 GMT")
            .header("X-Amz-Security-Token", "token-1")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let head = Head::new(&parts);
        assert_eq!((head.method, head.path, head.query), ("POST", "/p", "a=1"));
        assert_eq!(head.target, Some("AmazonEC2ContainerServiceV20141113.ListClusters"));
        assert_eq!(head.content_type, Some("application/x-amz-json-1.1"));
        assert_eq!(head.host, Some("localhost:8080"));
        assert_eq!(head.content_length, Some("2"));
        assert_eq!(head.authorization.map(HeaderValue::as_bytes), Some(&b"AWS4 \xff"[..]), "the first value");
        assert_eq!(head.smithy, None);
        let signing = head.signing.map(|v| v.map(HeaderValue::as_bytes));
        assert_eq!(
            signing,
            [
                Some(&b"20260101T000000Z"[..]),
                Some(&b"Thu, 01 Jan 2026 00:00:00 GMT"[..]),
                Some(&b"token-1"[..])
            ],
            "the signature's headers, first values, in SIGNATURE_HEADERS' order"
        );
    }
}
