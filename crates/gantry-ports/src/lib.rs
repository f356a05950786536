//! Ports: the narrow traits through which Gantry's AWS services reach each other, and the small
//! types that cross them.
//!
//! Service crates (`gantry-ecs`, `gantry-sts`, ...) never depend on each other. When one needs
//! another's behaviour (the front door needs the keys STS and IAM issue; later ECS registers
//! targets with ELBv2, the agent resolves secrets), it asks for a trait defined here, and the
//! binary wires the implementation in. This crate holds no logic and no I/O.

pub mod lb;

use gantry_core::Secret;
use std::sync::Arc;

/// Who signed a request: what STS's GetCallerIdentity answers, and what IAM will authorize.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
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
            account: account.to_string(),
            arn: format!("arn:aws:iam::{account}:root"),
            user_id: account.to_string(),
        }
    }
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
    fn put(&self, data: Vec<MetricDatum>);
}

/// A sink that drops everything, for a publisher nobody reads yet.
#[derive(Debug, Default)]
pub struct NoMetrics;

impl MetricSink for NoMetrics {
    fn put(&self, _data: Vec<MetricDatum>) {}
}
