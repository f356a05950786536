//! Ports: the narrow traits through which Gantry's AWS services reach each other, and the small
//! types that cross them.
//!
//! Service crates (`gantry-ecs`, `gantry-sts`, ...) never depend on each other. When one needs
//! another's behaviour (the front door needs the keys STS and IAM issue; later ECS registers
//! targets with ELBv2, the agent resolves secrets), it asks for a trait defined here, and the
//! binary wires the implementation in. This crate holds no logic and no I/O.

pub mod autoscaling;
pub mod ingress;
pub mod lb;

use gantry_core::Secret;
use std::sync::Arc;

/// Who signed a request: what STS's GetCallerIdentity answers, and what IAM authorizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// What kind of identity it is, which says where its policies are.
    pub kind: PrincipalKind,
    /// A session's policies (AssumeRole's `Policy` and `PolicyArns`, resolved when the session
    /// was made): when present, a request must be allowed by them as well.
    pub session_policies: Option<Arc<Vec<gantry_policy::Policy>>>,
    /// A session's tags (`aws:PrincipalTag/*`, with the role's own tags beneath them).
    pub session_tags: Vec<(String, String)>,
    /// The 12-digit account.
    pub account: String,
    /// `arn:aws:iam::ACCOUNT:root`, `arn:aws:iam::ACCOUNT:user/NAME`, an assumed role's
    /// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`, ...
    pub arn: String,
    /// IAM's unique ID (`aws:userid`): the account ID for the root user, `AIDA...` for a user,
    /// `AROA...:SESSION` for an assumed role.
    pub user_id: String,
}

impl Principal {
    /// The account's root user.
    pub fn root(account: &str) -> Self {
        Principal {
            kind: PrincipalKind::Root,
            session_policies: None,
            session_tags: Vec::new(),
            account: account.to_string(),
            arn: format!("arn:aws:iam::{account}:root"),
            user_id: account.to_string(),
        }
    }

    /// Whether this is the account's root user (allowed everything).
    pub fn is_root(&self) -> bool {
        self.kind == PrincipalKind::Root
    }
}

/// The kinds of principal a key can belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalKind {
    Root,
    /// An IAM user (also through GetSessionToken's session credentials).
    User {
        name: String,
    },
    /// A session of a role (AssumeRole): `arn` is `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`.
    AssumedRole {
        role_name: String,
        role_arn: String,
        session_name: String,
    },
}

/// IAM's decision on one request, as the front door asks it.
pub use gantry_policy::{Context as AuthContext, Decision};

/// Authorization: may a principal do an action on a resource? Implemented by IAM (its users',
/// groups' and roles' policies, compiled once per principal and dropped when IAM changes);
/// the front door asks before every operation it runs for a principal other than the root.
pub trait Authorizer: Send + Sync {
    /// The decision for `action` (`ecs:CreateCluster`) on `resource` (an ARN, or `*`), with the
    /// request's condition keys in `context` (the principal's own keys are added by the
    /// authorizer). `resource_policy` is the resource's own policy document, if it has one.
    fn authorize(
        &self,
        principal: &Principal,
        action: &str,
        resource: &str,
        context: &AuthContext,
        resource_policy: Option<&str>,
    ) -> Decision;
}

/// Allows everything: `--auth open`, and tests of other parts.
#[derive(Debug, Default)]
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn authorize(&self, _: &Principal, _: &str, _: &str, _: &AuthContext, _: Option<&str>) -> Decision {
        Decision::Allow
    }
}

/// A role as STS needs it to make a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleInfo {
    pub name: String,
    pub arn: String,
    /// `AROA...`
    pub role_id: String,
    /// The trust policy (AssumeRolePolicyDocument), as stored.
    pub trust_policy: String,
    /// MaxSessionDuration, in seconds.
    pub max_session_duration: i64,
    pub tags: Vec<(String, String)>,
}

/// IAM's roles and managed policies, as STS reads them (implemented by IAM, wired by the binary).
pub trait Roles: Send + Sync {
    /// The role `arn` names in `account`, if it exists.
    fn role(&self, account: &str, arn: &str) -> Option<RoleInfo>;
    /// A managed policy's default version's document (a session's `PolicyArns`).
    fn managed_policy(&self, account: &str, arn: &str) -> Option<String>;
    /// The account of an IAM user's access key (GetAccessKeyInfo).
    fn key_account(&self, access_key_id: &str) -> Option<String>;
}

/// A key the front door accepts signatures from.
#[derive(Debug, Clone)]
pub struct Credential {
    pub access_key_id: String,
    pub secret: Secret,
    /// Temporary credentials carry a session token, which a request must present
    /// (`x-amz-security-token`) and which must match.
    pub session_token: Option<Secret>,
    /// When temporary credentials expire (epoch seconds).
    pub expires_at: Option<i64>,
    /// Shared: every request signed by the key carries it.
    pub principal: Arc<Principal>,
}

/// The store of keys (this issue: the bootstrap root key; IAM adds users' keys, STS sessions).
pub trait KeyStore: Send + Sync {
    /// The credential of an access key ID, if it is known and active.
    fn lookup(&self, access_key_id: &str) -> Option<Arc<Credential>>;
}

/// Resolves the secrets of a task at its start: a container definition's `secrets[].valueFrom`
/// (a Secrets Manager ARN with ECS's `:json-key:version-stage:version-id` suffixes, or an SSM
/// parameter's name or ARN), as the ECS agent does with the execution role's credentials.
/// Implemented by the Secrets Manager and SSM crates, each for its own references; the binary
/// wires them. The value is read from the store's mirror, so resolving does not wait.
pub trait SecretResolver: Send + Sync {
    /// The value `value_from` names, in the task's account and region; or why it cannot be
    /// had, in the ECS agent's words after "unable to pull secrets or registry auth: ".
    fn resolve(&self, account: &str, region: &str, value_from: &str) -> Result<Secret, String>;
    /// The resource policy of what `value_from` names, which IAM weighs beside the reader's own
    /// policies (Secrets Manager's secrets have them; SSM parameters do not).
    fn resource_policy(&self, account: &str, region: &str, value_from: &str) -> Option<String> {
        let _ = (account, region, value_from);
        None
    }
}

/// One CloudWatch datapoint, as a service publishes it (what `PutMetricData` carries): a metric
/// of a namespace (`AWS/ApplicationELB`), its dimensions in the order AWS lists them, and either
/// a single value or the statistics of many samples taken within the period.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricDatum {
    pub namespace: &'static str,
    pub metric_name: &'static str,
    /// `(name, value)` pairs, e.g. `("LoadBalancer", "app/web/50dc6c495c0c9188")`.
    pub dimensions: Vec<(&'static str, String)>,
    /// When the period the value covers ended.
    pub timestamp: gantry_core::Timestamp,
    pub value: MetricValue,
    /// CloudWatch's unit name: `Count`, `Seconds`, `Bytes`, ...
    pub unit: &'static str,
}

/// A datapoint's value: one number, or a statistic set (CloudWatch's `StatisticValues`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetricValue {
    Value(f64),
    Statistics { sample_count: f64, sum: f64, minimum: f64, maximum: f64 },
}

/// Where services publish their metrics (CloudWatch's side implements it). Publishers aggregate
/// before calling: a call carries a period's datapoints, never one per request.
pub trait MetricSink: Send + Sync {
    /// Datapoints of the deployment's default account and region, at standard resolution.
    fn put(&self, data: Vec<MetricDatum>);

    /// Datapoints of one account and region (ECS's per-cluster metrics), at the given storage
    /// resolution (CloudWatch's StorageResolution: 1 or 60 seconds).
    fn put_in(&self, scope: &MetricScope, data: Vec<MetricDatum>) {
        let _ = scope;
        self.put(data)
    }

    /// Datapoints whose names come from data rather than code: the metrics CloudWatch Logs
    /// extracts from log events in embedded metric format. A sink that keeps only the services'
    /// own metrics (a test's) may drop them, as this default does.
    fn put_extracted(&self, account: &str, region: &str, data: Vec<ExtractedDatum>) {
        let _ = (account, region, data);
    }
}

/// One metric extracted from a log event in embedded metric format (EMF): what a PutMetricData
/// datum with `Values` carries, with names from the event.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtractedDatum {
    pub namespace: String,
    pub metric_name: String,
    /// `(name, value)` pairs in the order the dimension set lists them.
    pub dimensions: Vec<(String, String)>,
    /// The event's `_aws.Timestamp`.
    pub timestamp: gantry_core::Timestamp,
    /// The samples (EMF's number, or each member of its array).
    pub values: Vec<f64>,
    /// CloudWatch's unit name (`None` when the definition gives none).
    pub unit: String,
    /// StorageResolution 1 (else 60).
    pub high_resolution: bool,
}

/// CloudWatch's metric units, as PutMetricData and EMF accept them.
pub const METRIC_UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// Where a service delivers log events of its own (Container Insights' performance events):
/// CloudWatch Logs' side implements it, as an AWS service writes into a customer's log group.
pub trait LogSink: Send + Sync {
    /// Appends `events` (epoch milliseconds, message; in time order) to a stream of a group of
    /// an account and region, creating the group and the stream when they do not exist. The
    /// events go through PutLogEvents' rules, embedded metric format included. The error says
    /// why nothing was written.
    fn put_events(
        &self,
        account: &str,
        region: &str,
        group: &str,
        stream: &str,
        events: Vec<(i64, String)>,
    ) -> Result<(), String>;
}

/// CloudWatch's alarm states, as ECS deployment alarms read them (implemented by CloudWatch,
/// wired by the binary).
pub trait AlarmStates: Send + Sync {
    /// Each named alarm's state, `None` for one that does not exist.
    fn states(&self, account: &str, region: &str, names: &[String]) -> Vec<Option<gantry_core::AlarmState>>;
}

/// Where [`MetricSink::put_in`]'s datapoints go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricScope {
    pub account: String,
    pub region: String,
    /// StorageResolution 1 (else 60).
    pub high_resolution: bool,
}

/// A sink that drops everything, for a publisher nobody reads yet.
#[derive(Debug, Default)]
pub struct NoMetrics;

impl MetricSink for NoMetrics {
    fn put(&self, _data: Vec<MetricDatum>) {}
}

/// An ECS service's desiredCount, as Application Auto Scaling reads and sets it (implemented
/// by ECS, wired by the binary). The calls have the semantics of DescribeServices and of
/// UpdateService with only `desiredCount`.
pub trait ServiceCapacity: Send + Sync {
    /// The desiredCount of the ACTIVE service `service` of `cluster`, or why there is none (ECS's
    /// error message).
    fn desired_count(&self, scope: &gantry_core::Scope, cluster: &str, service: &str) -> Result<i32, String>;

    /// Sets the service's desiredCount (and its PRIMARY deployment's) and adds `event` to the
    /// service's events, in one write. The error is ECS's message.
    fn set_desired_count<'a>(
        &'a self,
        scope: &'a gantry_core::Scope,
        cluster: &'a str,
        service: &'a str,
        count: i32,
        event: &'a str,
    ) -> lb::PortFuture<'a, Result<(), String>>;
}

/// An alarm as a scaling policy reads it when the alarm invokes it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmView {
    pub state: gantry_core::AlarmState,
    pub threshold: f64,
    /// `GreaterThanThreshold`, ...
    pub comparison_operator: String,
    /// The last evaluation's datapoints, newest first (none after SetAlarmState).
    pub recent_datapoints: Vec<f64>,
}

/// CloudWatch's metric alarms, as Application Auto Scaling manages those of its target
/// tracking policies (implemented by CloudWatch, wired by the binary). The calls have the
/// semantics of PutMetricAlarm, DeleteAlarms and DescribeAlarms.
pub trait MetricAlarms: Send + Sync {
    /// PutMetricAlarm with `input`, its JSON form. The error is CloudWatch's message.
    fn put_metric_alarm(&self, account: &str, region: &str, input: &[u8]) -> Result<(), String>;
    /// DeleteAlarms (an alarm that does not exist is no error).
    fn delete_alarms(&self, account: &str, region: &str, names: &[String]) -> Result<(), String>;
    /// The alarm's state, threshold and latest datapoints, if it exists.
    fn alarm(&self, account: &str, region: &str, name: &str) -> Option<AlarmView>;
}

/// ECS's RunTask, as EventBridge rules and EventBridge Scheduler call it for an ECS target
/// (implemented by gantry-ecs, wired by the binary). The request is the JSON of ECS's
/// `RunTaskRequest` (the caller builds it from its target's `EcsParameters`), so the caller needs
/// no ECS types and ECS validates it exactly as it validates the API's.
pub trait TaskLauncher: Send + Sync {
    /// Runs the tasks in `scope`: the ARNs of those started and ECS's `failures[]`, or the error
    /// RunTask answered with.
    fn run_task<'a>(
        &'a self,
        scope: &'a gantry_core::Scope,
        request: &'a [u8],
    ) -> lb::PortFuture<'a, Result<Launched, LaunchError>>;
}

/// What a RunTask started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Launched {
    pub task_arns: Vec<String>,
    /// ECS's `failures[]`: `(arn, reason)`.
    pub failures: Vec<(String, String)>,
}

/// RunTask's error: ECS's code and message, and whether it was ECS's fault (retried by the
/// caller's retry policy) rather than the request's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchError {
    pub code: String,
    pub message: String,
    pub server_fault: bool,
}

/// A launcher that refuses everything, for tests of other parts.
#[derive(Debug, Default)]
pub struct NoLaunches;

impl TaskLauncher for NoLaunches {
    fn run_task<'a>(
        &'a self,
        _: &'a gantry_core::Scope,
        _: &'a [u8],
    ) -> lb::PortFuture<'a, Result<Launched, LaunchError>> {
        Box::pin(async {
            Err(LaunchError {
                code: "ServerException".into(),
                message: "ECS is not wired".into(),
                server_fault: true,
            })
        })
    }
}

/// An event a service puts on an account's default EventBridge bus, as AWS's services do
/// (`aws.ecs`'s "ECS Task State Change", ...): implemented by `gantry-events`, which matches it
/// against the rules' event patterns and delivers it to their targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusEvent {
    /// `aws.ecs`, ...
    pub source: String,
    /// `ECS Task State Change`, ...
    pub detail_type: String,
    /// The ARNs the event is about.
    pub resources: Vec<String>,
    /// The event's `detail`, a JSON object.
    pub detail: String,
    /// When it happened (milliseconds since the epoch).
    pub time_ms: i64,
}

/// EventBridge's default bus, as the services that emit events see it.
pub trait EventBus: Send + Sync {
    /// Puts one event on the default bus of `account` and `region`; answers how many target
    /// deliveries it made.
    fn put_event<'a>(
        &'a self,
        account: &'a str,
        region: &'a str,
        event: BusEvent,
    ) -> lb::PortFuture<'a, Result<usize, String>>;
}
