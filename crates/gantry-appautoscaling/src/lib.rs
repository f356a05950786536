//! Application Auto Scaling (JSON 1.1, `AnyScaleFrontendService`) for ECS services'
//! `ecs:service:DesiredCount`: scalable targets, target tracking and step scaling policies,
//! scheduled actions, scaling activities and tags.
//!
//! A scalable target is one record at `/ACCOUNT/REGION/application-autoscaling/target/RESOURCE_ID`
//! (written through `gantry_runtime::records`) holding its policies, its scheduled actions, its
//! latest activities and its tags, so that deregistering it takes everything with it in one
//! write; an index row maps its ARN's ID to it, and one under `/_application-autoscaling/` lists
//! the targets with scheduled actions for the scheduler ([`scheduler`]).
//!
//! Capacity changes go through the [`gantry_ports::ServiceCapacity`] port (ECS's UpdateService
//! of `desiredCount`, with a service event saying who asked); a target tracking policy's alarms
//! are made and deleted through [`gantry_ports::MetricAlarms`] (CloudWatch). CloudWatch invokes a
//! policy through its alarm actions: the binary routes `arn:aws:autoscaling:...:scalingPolicy:...`
//! actions to [`Inbox::invoke`], which only queues (CloudWatch calls it while holding its alarms);
//! [`AppAutoScaling::run_invocations`] carries them out. This crate knows no HTTP and no other
//! service.

mod ingress;
pub mod policy;
pub mod schedule;
pub mod scheduler;

use gantry_core::{Clock, IdGen, Scope, ServiceError};
use gantry_model::appautoscaling as m;
use gantry_ports::{MetricAlarms, ServiceCapacity};
use gantry_runtime::records::{self, Before, Record, Row, TxnExt};
use gantry_store::{Store, Txn};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub const NAMESPACE: &str = "ecs";
pub const DIMENSION: &str = "ecs:service:DesiredCount";
/// The activities a target keeps, newest first.
const MAX_ACTIVITIES: usize = 100;
const NAMESPACES: &[&str] = &[
    "ecs",
    "elasticmapreduce",
    "ec2",
    "appstream",
    "dynamodb",
    "rds",
    "sagemaker",
    "custom-resource",
    "comprehend",
    "lambda",
    "cassandra",
    "kafka",
    "elasticache",
    "neptune",
    "workspaces",
];

/// How target tracking builds its alarms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settings {
    /// Gantry's setting (`--appscaling-high-resolution`): target tracking alarms use 10-second
    /// periods (with ECS metrics published every 10 s) instead of AWS's 60, so a local service
    /// scales in seconds, not minutes. Off, everything is as AWS does it.
    pub high_resolution: bool,
}

impl Settings {
    /// The period of target tracking alarms.
    pub fn period(&self) -> i32 {
        if self.high_resolution { 10 } else { 60 }
    }
}

/// A stored scalable target with everything that belongs to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetRecord {
    pub account: String,
    pub region: String,
    pub resource_id: String,
    pub min: i32,
    pub max: i32,
    pub role_arn: String,
    pub created: f64,
    #[serde(default)]
    pub suspended: m::SuspendedState,
    /// The ID in the target's ARN.
    pub arn_id: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub policies: Vec<PolicyRecord>,
    #[serde(default)]
    pub scheduled: Vec<ScheduledRecord>,
    /// Newest first.
    #[serde(default)]
    pub activities: Vec<m::ScalingActivity>,
}

/// A scaling policy: its configuration as given (the JSON of the request's member, so absent
/// bounds stay absent), its alarms and its cooldown state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyRecord {
    pub name: String,
    pub arn: String,
    pub policy_type: String,
    #[serde(default)]
    pub step: Option<Value>,
    #[serde(default)]
    pub tracking: Option<Value>,
    #[serde(default)]
    pub alarms: Vec<m::Alarm>,
    pub created: f64,
    #[serde(default)]
    pub cooldowns: policy::Cooldowns,
}

/// A scheduled action and when it fires next.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduledRecord {
    pub name: String,
    pub arn: String,
    pub schedule: String,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub start: Option<f64>,
    #[serde(default)]
    pub end: Option<f64>,
    /// ScalableTargetAction as given (MinCapacity and/or MaxCapacity).
    #[serde(default)]
    pub min: Option<i32>,
    #[serde(default)]
    pub max: Option<i32>,
    pub created: f64,
    /// When it fires next (epoch ms); `None`: never again.
    #[serde(default)]
    pub next_ms: Option<i64>,
}

fn prefix(scope: &Scope) -> String {
    format!("/{}/{}/application-autoscaling/", scope.account, scope.region)
}

fn target_key(scope: &Scope, resource_id: &str) -> String {
    format!("{}target/{resource_id}", prefix(scope))
}

fn arn_key(scope: &Scope, id: &str) -> String {
    format!("{}arn/{id}", prefix(scope))
}

/// The scheduler's index: targets with scheduled actions.
pub const SCHEDULED_PREFIX: &str = "/_application-autoscaling/scheduled/";

fn scheduled_key(scope: &Scope, resource_id: &str) -> String {
    format!("{SCHEDULED_PREFIX}{}/{}/{resource_id}", scope.account, scope.region)
}

impl Record for TargetRecord {
    fn key(&self, scope: &Scope) -> String {
        target_key(scope, &self.resource_id)
    }

    fn index_keys(&self, scope: &Scope) -> Vec<Row> {
        let mut rows = vec![(arn_key(scope, &self.arn_id), self.resource_id.clone().into_bytes())];
        if !self.scheduled.is_empty() {
            rows.push((scheduled_key(scope, &self.resource_id), Vec::new()));
        }
        rows
    }
}

impl TargetRecord {
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:application-autoscaling:{}:{}:scalable-target/{}",
            self.region, self.account, self.arn_id
        )
    }

    /// `(cluster, service)` of `service/CLUSTER/SERVICE`.
    pub fn service(&self) -> (&str, &str) {
        service_of(&self.resource_id).unwrap_or(("", ""))
    }

    fn render(&self) -> m::ScalableTarget {
        m::ScalableTarget {
            service_namespace: NAMESPACE.into(),
            resource_id: self.resource_id.clone(),
            scalable_dimension: DIMENSION.into(),
            min_capacity: self.min,
            max_capacity: self.max,
            predicted_capacity: 0,
            role_arn: self.role_arn.clone(),
            creation_time: self.created,
            suspended_state: Some(self.suspended.clone()),
            scalable_target_arn: Some(self.arn()),
        }
    }
}

fn service_of(resource_id: &str) -> Option<(&str, &str)> {
    let rest = resource_id.strip_prefix("service/")?;
    let (c, s) = rest.split_once('/')?;
    (!c.is_empty() && !s.is_empty() && !s.contains('/')).then_some((c, s))
}

// ---- errors, in Application Auto Scaling's words ---------------------------------------------

fn validation(msg: impl Into<String>) -> ServiceError {
    ServiceError::sender("ValidationException", msg)
}

fn internal(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::receiver("InternalServiceException", e.to_string())
}

fn no_target(resource_id: &str) -> ServiceError {
    ServiceError::sender(
        "ObjectNotFoundException",
        format!(
            "No scalable target registered for service namespace: {NAMESPACE}, resource ID: {resource_id}, scalable dimension: {DIMENSION}"
        ),
    )
}

fn parse<'a, T: Deserialize<'a>>(input: &'a [u8]) -> Result<T, ServiceError> {
    let input = if input.is_empty() { b"{}".as_slice() } else { input };
    serde_json::from_slice(input).map_err(|e| ServiceError::sender("SerializationException", e.to_string()))
}

fn render<T: Serialize>(v: &T) -> Result<Vec<u8>, ServiceError> {
    serde_json::to_vec(v).map_err(internal)
}

/// The namespace, resource ID and dimension a request names, checked as AWS checks them: an
/// unknown namespace fails its enum constraint, a known one other than ECS (or a dimension or
/// resource that is not an ECS service's) is not supported.
fn check_ids(namespace: &str, resource_id: &str, dimension: Option<&str>) -> Result<(), ServiceError> {
    if !NAMESPACES.contains(&namespace) {
        return Err(validation(format!(
            "1 validation error detected: Value '{namespace}' at 'serviceNamespace' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            NAMESPACES.join(", ")
        )));
    }
    if resource_id.is_empty() || resource_id.len() > 1600 {
        return Err(validation(format!(
            "1 validation error detected: Value '{resource_id}' at 'resourceId' failed to satisfy constraint: Member must have length between 1 and 1600"
        )));
    }
    let supported = namespace == NAMESPACE
        && dimension.is_none_or(|d| d == DIMENSION)
        && service_of(resource_id).is_some();
    if !supported {
        return Err(validation("Unsupported service namespace, resource type or scalable dimension"));
    }
    Ok(())
}

/// A number member of a request's JSON, if present (the generated shapes read absent as zero).
fn int_of(v: &Value, name: &str) -> Option<i32> {
    v.get(name).and_then(Value::as_i64).map(|n| n.clamp(i32::MIN as i64, i32::MAX as i64) as i32)
}

fn float_of(v: &Value, name: &str) -> Option<f64> {
    v.get(name).and_then(Value::as_f64)
}

/// What a policy invocation carries from its alarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub account: String,
    pub region: String,
    pub alarm_name: String,
    pub policy_arn: String,
    pub state: gantry_core::AlarmState,
}

/// The parts of a policy ARN: region, account, resource ID, policy name.
pub fn parse_policy_arn(arn: &str) -> Option<(&str, &str, &str, &str)> {
    let rest = arn.strip_prefix("arn:aws:autoscaling:")?;
    let (region, rest) = rest.split_once(':')?;
    let (account, rest) = rest.split_once(':')?;
    let rest = rest.strip_prefix("scalingPolicy:")?;
    let (_id, rest) = rest.split_once(":resource/")?;
    let (resource, name) = rest.split_once(":policyName/")?;
    let resource = resource.strip_prefix("ecs/")?;
    Some((region, account, resource, name))
}

/// Where CloudWatch's alarm actions for scaling policies are queued.
#[derive(Clone)]
pub struct Inbox {
    store: Arc<dyn Store>,
    tx: tokio::sync::mpsc::UnboundedSender<Invocation>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox").finish_non_exhaustive()
    }
}

impl Inbox {
    /// Whether an alarm action is an Application Auto Scaling policy's (this service's to carry
    /// out): `...:scalingPolicy:ID:resource/...`. EC2 Auto Scaling's policies share the prefix but
    /// name `autoScalingGroupName/` instead.
    pub fn handles(action: &str) -> bool {
        action.starts_with("arn:aws:autoscaling:")
            && action.contains(":scalingPolicy:")
            && action.contains(":resource/")
    }

    /// Queues a policy's invocation by an alarm; an error (CloudWatch's history shows it) when the
    /// policy does not exist. Never waits: CloudWatch calls it holding its alarms.
    pub fn invoke(&self, inv: Invocation) -> Result<(), String> {
        let Some((region, account, resource, name)) = parse_policy_arn(&inv.policy_arn) else {
            return Err(format!("Invalid policy ARN: {}", inv.policy_arn));
        };
        let scope = Scope::new(account.to_string(), region.to_string());
        let found = self
            .store
            .get(&target_key(&scope, resource))
            .and_then(|kv| records::parse::<TargetRecord>(&kv.value).ok())
            .is_some_and(|t| t.policies.iter().any(|p| p.name == name && p.arn == inv.policy_arn));
        if !found {
            return Err(format!("No scaling policy found for ARN {}", inv.policy_arn));
        }
        self.tx.send(inv).map_err(|_| "Application Auto Scaling is shutting down".to_string())
    }
}

/// The Application Auto Scaling service.
pub struct AppAutoScaling {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGen>,
    capacity: Arc<dyn ServiceCapacity>,
    alarms: Arc<dyn MetricAlarms>,
    settings: Settings,
}

impl std::fmt::Debug for AppAutoScaling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppAutoScaling").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// What a scaling decision changes.
struct Change {
    to: i32,
    cause: String,
}

impl AppAutoScaling {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGen>,
        capacity: Arc<dyn ServiceCapacity>,
        alarms: Arc<dyn MetricAlarms>,
        settings: Settings,
    ) -> Self {
        AppAutoScaling { store, clock, ids, capacity, alarms, settings }
    }

    /// An inbox for alarm actions and the receiver [`Self::run_invocations`] reads.
    pub fn inbox(store: Arc<dyn Store>) -> (Inbox, tokio::sync::mpsc::UnboundedReceiver<Invocation>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (Inbox { store, tx }, rx)
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().0
    }

    fn now(&self) -> f64 {
        self.now_ms() as f64 / 1000.0
    }

    /// Runs one operation: its input as JSON, its output as JSON.
    pub async fn call(&self, scope: &Scope, op: &str, input: &[u8]) -> Result<Vec<u8>, ServiceError> {
        match op {
            "RegisterScalableTarget" => render(&self.register(scope, input).await?),
            "DeregisterScalableTarget" => render(&self.deregister(scope, parse(input)?).await?),
            "DescribeScalableTargets" => render(&self.describe_targets(scope, parse(input)?)?),
            "PutScalingPolicy" => render(&self.put_policy(scope, input).await?),
            "DescribeScalingPolicies" => render(&self.describe_policies(scope, parse(input)?)?),
            "DeleteScalingPolicy" => render(&self.delete_policy(scope, parse(input)?).await?),
            "PutScheduledAction" => render(&self.put_scheduled(scope, input).await?),
            "DescribeScheduledActions" => render(&self.describe_scheduled(scope, parse(input)?)?),
            "DeleteScheduledAction" => render(&self.delete_scheduled(scope, parse(input)?).await?),
            "DescribeScalingActivities" => render(&self.describe_activities(scope, parse(input)?)?),
            "TagResource" => render(&self.tag(scope, parse(input)?).await?),
            "UntagResource" => render(&self.untag(scope, parse(input)?).await?),
            "ListTagsForResource" => render(&self.list_tags(scope, parse(input)?)?),
            _ => Err(ServiceError::sender("UnknownOperationException", format!("{op} is not served."))),
        }
    }

    fn load(
        &self,
        scope: &Scope,
        resource_id: &str,
    ) -> Result<Option<records::Stored<TargetRecord>>, ServiceError> {
        records::load(&*self.store, &target_key(scope, resource_id)).map_err(internal)
    }

    fn all(&self, scope: &Scope) -> Vec<TargetRecord> {
        self.store
            .range(&format!("{}target/", prefix(scope)), None, usize::MAX)
            .into_iter()
            .filter_map(|kv| records::parse(&kv.value).ok())
            .collect()
    }

    async fn commit(&self, txn: Txn) -> Result<bool, ServiceError> {
        Ok(self.store.txn(txn).await.map_err(internal)?.succeeded)
    }

    /// Reads, changes and writes back one target under compare-and-swap.
    async fn update<T>(
        &self,
        scope: &Scope,
        resource_id: &str,
        mut change: impl FnMut(&mut TargetRecord) -> Result<T, ServiceError>,
    ) -> Result<T, ServiceError> {
        loop {
            let stored = self.load(scope, resource_id)?.ok_or_else(|| no_target(resource_id))?;
            let before = Before::of(scope, &stored);
            let mut rec = stored.value;
            let out = change(&mut rec)?;
            if self.commit(Txn::new().put_record(scope, &before, &rec)).await? {
                return Ok(out);
            }
        }
    }

    // ---- scalable targets ---------------------------------------------------------------------

    async fn register(
        &self,
        scope: &Scope,
        input: &[u8],
    ) -> Result<m::RegisterScalableTargetResponse, ServiceError> {
        let req: m::RegisterScalableTargetRequest = parse(input)?;
        let raw: Value = parse(input)?;
        check_ids(&req.service_namespace, &req.resource_id, Some(&req.scalable_dimension))?;
        let (min, max) = (int_of(&raw, "MinCapacity"), int_of(&raw, "MaxCapacity"));
        for (v, name) in [(min, "minCapacity"), (max, "maxCapacity")] {
            if let Some(v) = v
                && v < 0
            {
                return Err(validation(format!(
                    "1 validation error detected: Value '{v}' at '{name}' failed to satisfy constraint: Member must have value greater than or equal to 0"
                )));
            }
        }
        let (cluster, service) = service_of(&req.resource_id).unwrap_or(("", ""));
        self.capacity
            .desired_count(scope, cluster, service)
            .map_err(|_| validation(format!("ECS service doesn't exist: {}", req.resource_id)))?;
        let suspended: Option<m::SuspendedState> = raw
            .get("SuspendedState")
            .map(|s| serde_json::from_value(s.clone()))
            .transpose()
            .map_err(internal)?;
        let now = self.now();
        let (arn, bounds_changed) = loop {
            let stored = self.load(scope, &req.resource_id)?;
            let (before, mut rec) = match stored {
                Some(s) => (Before::of(scope, &s), s.value),
                None => {
                    if min.is_none() || max.is_none() {
                        return Err(validation(
                            "MinCapacity and MaxCapacity are required for registering a new scalable target",
                        ));
                    }
                    let rec = TargetRecord {
                        account: scope.account.clone(),
                        region: scope.region.clone(),
                        resource_id: req.resource_id.clone(),
                        min: 0,
                        max: 0,
                        role_arn: format!(
                            "arn:aws:iam::{}:role/aws-service-role/ecs.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_ECSService",
                            scope.account
                        ),
                        created: now,
                        suspended: m::SuspendedState::default(),
                        arn_id: format!("{:032x}", self.ids.next_u128())[..32].to_string(),
                        tags: BTreeMap::new(),
                        policies: vec![],
                        scheduled: vec![],
                        activities: vec![],
                    };
                    (Before::absent(), rec)
                }
            };
            let (new_min, new_max) = (min.unwrap_or(rec.min), max.unwrap_or(rec.max));
            if new_min > new_max {
                return Err(validation("Minimum capacity cannot be greater than maximum capacity"));
            }
            let changed = (new_min != rec.min, new_max != rec.max);
            rec.min = new_min;
            rec.max = new_max;
            if let Some(s) = &suspended {
                rec.suspended = s.clone();
            }
            if let Some(t) = &req.tags {
                check_tags(t)?;
                rec.tags.extend(t.clone());
            }
            if self.commit(Txn::new().put_record(scope, &before, &rec)).await? {
                break (rec.arn(), changed);
            }
        };
        // A desired count outside the new bounds is brought within them at once, as AWS does.
        let cause = match bounds_changed {
            (true, true) => {
                format!(
                    "minimum capacity was set to {} and maximum capacity was set to {}",
                    min.unwrap_or(0),
                    max.unwrap_or(0)
                )
            }
            (true, false) => format!("minimum capacity was set to {}", min.unwrap_or(0)),
            (false, true) => format!("maximum capacity was set to {}", max.unwrap_or(0)),
            _ => String::new(),
        };
        if !cause.is_empty() {
            self.enforce_bounds(scope, &req.resource_id, &cause).await;
        }
        Ok(m::RegisterScalableTargetResponse { scalable_target_arn: Some(arn) })
    }

    /// Brings the desired count within the target's bounds (after they changed).
    async fn enforce_bounds(&self, scope: &Scope, resource_id: &str, cause: &str) {
        let Ok(Some(t)) = self.load(scope, resource_id) else { return };
        let (cluster, service) = t.value.service();
        let Ok(current) = self.capacity.desired_count(scope, cluster, service) else { return };
        let to = policy::bounded(current, t.value.min, t.value.max);
        if to != current {
            self.apply(scope, resource_id, current, Change { to, cause: cause.to_string() }, None).await;
        }
    }

    async fn deregister(
        &self,
        scope: &Scope,
        req: m::DeregisterScalableTargetRequest,
    ) -> Result<m::DeregisterScalableTargetResponse, ServiceError> {
        check_ids(&req.service_namespace, &req.resource_id, Some(&req.scalable_dimension))?;
        let alarms = loop {
            let stored = self.load(scope, &req.resource_id)?.ok_or_else(|| no_target(&req.resource_id))?;
            let before = Before::of(scope, &stored);
            let alarms: Vec<String> = stored
                .value
                .policies
                .iter()
                .flat_map(|p| p.alarms.iter().map(|a| a.alarm_name.clone()))
                .collect();
            if self.commit(Txn::new().delete_record(&before)).await? {
                break alarms;
            }
        };
        if !alarms.is_empty() {
            let _ = self.alarms.delete_alarms(&scope.account, &scope.region, &alarms);
        }
        Ok(m::DeregisterScalableTargetResponse {})
    }

    fn describe_targets(
        &self,
        scope: &Scope,
        req: m::DescribeScalableTargetsRequest,
    ) -> Result<m::DescribeScalableTargetsResponse, ServiceError> {
        check_namespace(&req.service_namespace)?;
        let ids = req.resource_ids.unwrap_or_default();
        let mut all: Vec<m::ScalableTarget> = if req.service_namespace != NAMESPACE
            || req.scalable_dimension.as_deref().is_some_and(|d| d != DIMENSION)
        {
            vec![]
        } else {
            self.all(scope)
                .iter()
                .filter(|t| ids.is_empty() || ids.contains(&t.resource_id))
                .map(TargetRecord::render)
                .collect()
        };
        all.sort_by(|a, b| a.resource_id.cmp(&b.resource_id));
        let (page, next) = page(all, req.max_results, req.next_token.as_deref(), 50)?;
        Ok(m::DescribeScalableTargetsResponse { scalable_targets: Some(page), next_token: next })
    }

    // ---- scaling policies -----------------------------------------------------------------------

    fn policy_arn(&self, scope: &Scope, resource_id: &str, name: &str) -> String {
        format!(
            "arn:aws:autoscaling:{}:{}:scalingPolicy:{}:resource/ecs/{resource_id}:policyName/{name}",
            scope.region,
            scope.account,
            self.ids.uuid()
        )
    }

    async fn put_policy(
        &self,
        scope: &Scope,
        input: &[u8],
    ) -> Result<m::PutScalingPolicyResponse, ServiceError> {
        let req: m::PutScalingPolicyRequest = parse(input)?;
        let raw: Value = parse(input)?;
        check_ids(&req.service_namespace, &req.resource_id, Some(&req.scalable_dimension))?;
        check_name(&req.policy_name, "policyName")?;
        let kind = req.policy_type.clone().unwrap_or_else(|| "StepScaling".into());
        let (step, tracking) = match kind.as_str() {
            "StepScaling" => {
                let c = raw.get("StepScalingPolicyConfiguration").cloned().ok_or_else(|| {
                    validation("StepScalingPolicyConfiguration is required when PolicyType is StepScaling")
                })?;
                check_step(&c)?;
                (Some(c), None)
            }
            "TargetTrackingScaling" => {
                let c = raw.get("TargetTrackingScalingPolicyConfiguration").cloned().ok_or_else(|| {
                    validation(
                        "TargetTrackingScalingPolicyConfiguration is required when PolicyType is TargetTrackingScaling",
                    )
                })?;
                check_tracking(&c)?;
                (None, Some(c))
            }
            "PredictiveScaling" => {
                return Err(validation(
                    "PredictiveScaling is not supported for ecs:service:DesiredCount in Gantry",
                ));
            }
            other => {
                return Err(validation(format!(
                    "1 validation error detected: Value '{other}' at 'policyType' failed to satisfy constraint: Member must satisfy enum value set: [PredictiveScaling, StepScaling, TargetTrackingScaling]"
                )));
            }
        };
        let existing = self.load(scope, &req.resource_id)?.ok_or_else(|| no_target(&req.resource_id))?;
        let old = existing.value.policies.iter().find(|p| p.name == req.policy_name).cloned();
        if let Some(o) = &old
            && o.policy_type != kind
        {
            return Err(validation(format!(
                "Policy type cannot be changed from {} to {kind} for policy {}",
                o.policy_type, req.policy_name
            )));
        }
        let arn = old
            .as_ref()
            .map(|o| o.arn.clone())
            .unwrap_or_else(|| self.policy_arn(scope, &req.resource_id, &req.policy_name));
        // Target tracking makes (or remakes) its alarms before the policy is stored, so a policy
        // never names alarms that are not there.
        let alarms = match &tracking {
            Some(c) => {
                let names = old.as_ref().map(|o| o.alarms.clone()).unwrap_or_default();
                let (cluster, service) = service_of(&req.resource_id).unwrap_or(("", ""));
                let made =
                    self.tracking_alarms(scope, &req.resource_id, cluster, service, &arn, c, &names)?;
                let stale: Vec<String> = names
                    .iter()
                    .filter(|n| !made.iter().any(|m| m.alarm_name == n.alarm_name))
                    .map(|a| a.alarm_name.clone())
                    .collect();
                if !stale.is_empty() {
                    let _ = self.alarms.delete_alarms(&scope.account, &scope.region, &stale);
                }
                made
            }
            None => old.as_ref().map(|o| o.alarms.clone()).unwrap_or_default(),
        };
        let now = self.now();
        let name = req.policy_name.clone();
        let record = PolicyRecord {
            name: name.clone(),
            arn: arn.clone(),
            policy_type: kind,
            step,
            tracking,
            alarms: alarms.clone(),
            created: old.as_ref().map_or(now, |o| o.created),
            cooldowns: old.as_ref().map(|o| o.cooldowns).unwrap_or_default(),
        };
        self.update(scope, &req.resource_id, |t| {
            match t.policies.iter_mut().find(|p| p.name == name) {
                Some(p) => *p = record.clone(),
                None => {
                    if t.policies.len() >= 50 {
                        return Err(ServiceError::sender(
                            "LimitExceededException",
                            "You have reached the maximum number of scaling policies (50) for this scalable target",
                        ));
                    }
                    t.policies.push(record.clone())
                }
            }
            Ok(())
        })
        .await?;
        let shown = if record.policy_type == "TargetTrackingScaling" { Some(alarms) } else { None };
        Ok(m::PutScalingPolicyResponse { policy_arn: arn, alarms: shown })
    }

    /// Puts a target tracking policy's alarms, AWS's way: AlarmHigh (3 of 3 periods above the
    /// target) and, unless scale-in is disabled, AlarmLow (15 of 15 below 90 % of it), each
    /// invoking the policy. Existing alarms keep their names.
    #[allow(clippy::too_many_arguments)]
    fn tracking_alarms(
        &self,
        scope: &Scope,
        resource_id: &str,
        cluster: &str,
        service: &str,
        policy_arn: &str,
        c: &Value,
        existing: &[m::Alarm],
    ) -> Result<Vec<m::Alarm>, ServiceError> {
        let target = float_of(c, "TargetValue").unwrap_or(0.0);
        let disable_in = c.get("DisableScaleIn").and_then(Value::as_bool).unwrap_or(false);
        let period = self.settings.period();
        let metric = tracking_metric(c, cluster, service, period)?;
        let mut out = Vec::new();
        for (high, evals, threshold, op) in
            [(true, 3, target, "GreaterThanThreshold"), (false, 15, target * 0.9, "LessThanThreshold")]
        {
            if !high && disable_in {
                continue;
            }
            let tag = if high { "AlarmHigh" } else { "AlarmLow" };
            let name = existing
                .iter()
                .find(|a| a.alarm_name.contains(&format!("-{tag}-")))
                .map(|a| a.alarm_name.clone())
                .unwrap_or_else(|| format!("TargetTracking-{resource_id}-{tag}-{}", self.ids.uuid()));
            let mut input = json!({
                "AlarmName": name,
                "AlarmDescription": format!("DO NOT EDIT OR DELETE. For TargetTrackingScaling policy {policy_arn}."),
                "ActionsEnabled": true,
                "AlarmActions": [policy_arn],
                "EvaluationPeriods": evals,
                "DatapointsToAlarm": evals,
                "Threshold": threshold,
                "ComparisonOperator": op,
            });
            for (k, v) in metric.as_object().into_iter().flatten() {
                input[k] = v.clone();
            }
            let bytes = serde_json::to_vec(&input).map_err(internal)?;
            self.alarms.put_metric_alarm(&scope.account, &scope.region, &bytes).map_err(validation)?;
            out.push(m::Alarm {
                alarm_arn: format!("arn:aws:cloudwatch:{}:{}:alarm:{name}", scope.region, scope.account),
                alarm_name: name,
            });
        }
        Ok(out)
    }

    fn describe_policies(
        &self,
        scope: &Scope,
        req: m::DescribeScalingPoliciesRequest,
    ) -> Result<Value, ServiceError> {
        check_namespace(&req.service_namespace)?;
        let names = req.policy_names.unwrap_or_default();
        let mut out = Vec::new();
        if req.service_namespace == NAMESPACE {
            for t in self.all(scope) {
                if req.resource_id.as_ref().is_some_and(|r| *r != t.resource_id) {
                    continue;
                }
                for p in &t.policies {
                    if !names.is_empty() && !names.contains(&p.name) {
                        continue;
                    }
                    out.push(render_policy(&t, p)?);
                }
            }
        }
        let (page, next) = page(out, req.max_results, req.next_token.as_deref(), 50)?;
        Ok(with_token(json!({ "ScalingPolicies": page }), next))
    }

    async fn delete_policy(
        &self,
        scope: &Scope,
        req: m::DeleteScalingPolicyRequest,
    ) -> Result<m::DeleteScalingPolicyResponse, ServiceError> {
        check_ids(&req.service_namespace, &req.resource_id, Some(&req.scalable_dimension))?;
        let name = req.policy_name.clone();
        let removed = self
            .update(scope, &req.resource_id, |t| {
                let i = t.policies.iter().position(|p| p.name == name).ok_or_else(|| {
                    ServiceError::sender(
                        "ObjectNotFoundException",
                        format!(
                            "No scaling policy found for service namespace: {NAMESPACE}, resource ID: {}, scalable dimension: {DIMENSION}, policy name: {name}",
                            req.resource_id
                        ),
                    )
                })?;
                Ok(t.policies.remove(i))
            })
            .await?;
        let names: Vec<String> = removed.alarms.iter().map(|a| a.alarm_name.clone()).collect();
        if !names.is_empty() {
            let _ = self.alarms.delete_alarms(&scope.account, &scope.region, &names);
        }
        Ok(m::DeleteScalingPolicyResponse {})
    }

    // ---- scheduled actions ----------------------------------------------------------------------

    async fn put_scheduled(
        &self,
        scope: &Scope,
        input: &[u8],
    ) -> Result<m::PutScheduledActionResponse, ServiceError> {
        let req: m::PutScheduledActionRequest = parse(input)?;
        let raw: Value = parse(input)?;
        check_ids(&req.service_namespace, &req.resource_id, Some(&req.scalable_dimension))?;
        check_name(&req.scheduled_action_name, "scheduledActionName")?;
        let action = raw.get("ScalableTargetAction");
        let (min, max) =
            (action.and_then(|a| int_of(a, "MinCapacity")), action.and_then(|a| int_of(a, "MaxCapacity")));
        if let (Some(a), Some(b)) = (min, max)
            && a > b
        {
            return Err(validation("Minimum capacity cannot be greater than maximum capacity"));
        }
        let name = req.scheduled_action_name.clone();
        let now_ms = self.now_ms();
        let arn_base = format!(
            "arn:aws:autoscaling:{}:{}:scheduledAction:{}:resource/ecs/{}:scheduledActionName/{name}",
            scope.region,
            scope.account,
            self.ids.uuid(),
            req.resource_id
        );
        self.update(scope, &req.resource_id, |t| {
            let old = t.scheduled.iter().find(|s| s.name == name).cloned();
            let schedule = req.schedule.clone().or(old.as_ref().map(|o| o.schedule.clone())).ok_or_else(|| {
                validation("Schedule is required for a new scheduled action")
            })?;
            let timezone = req.timezone.clone().or(old.as_ref().and_then(|o| o.timezone.clone()));
            let parsed = schedule::parse(&schedule).map_err(validation)?;
            let zone = schedule::zone(timezone.as_deref()).map_err(validation)?;
            let start = req.start_time.or(old.as_ref().and_then(|o| o.start));
            let end = req.end_time.or(old.as_ref().and_then(|o| o.end));
            let created = old.as_ref().map_or(now_ms as f64 / 1000.0, |o| o.created);
            let ms = |s: Option<f64>| s.map(|v| (v * 1000.0) as i64);
            let rec = ScheduledRecord {
                name: name.clone(),
                arn: old.as_ref().map_or(arn_base.clone(), |o| o.arn.clone()),
                schedule,
                timezone,
                start,
                end,
                min: if action.is_some() { min } else { old.as_ref().and_then(|o| o.min) },
                max: if action.is_some() { max } else { old.as_ref().and_then(|o| o.max) },
                created,
                next_ms: schedule::next_after(
                    &parsed,
                    now_ms - 1,
                    (created * 1000.0) as i64,
                    ms(start),
                    ms(end),
                    &zone,
                ),
            };
            match t.scheduled.iter_mut().find(|s| s.name == name) {
                Some(s) => *s = rec,
                None => {
                    if t.scheduled.len() >= 200 {
                        return Err(ServiceError::sender(
                            "LimitExceededException",
                            "You have reached the maximum number of scheduled actions (200) for this scalable target",
                        ));
                    }
                    t.scheduled.push(rec)
                }
            }
            Ok(())
        })
        .await?;
        Ok(m::PutScheduledActionResponse {})
    }

    fn describe_scheduled(
        &self,
        scope: &Scope,
        req: m::DescribeScheduledActionsRequest,
    ) -> Result<Value, ServiceError> {
        check_namespace(&req.service_namespace)?;
        let names = req.scheduled_action_names.unwrap_or_default();
        let mut out = Vec::new();
        if req.service_namespace == NAMESPACE {
            for t in self.all(scope) {
                if req.resource_id.as_ref().is_some_and(|r| *r != t.resource_id) {
                    continue;
                }
                for s in &t.scheduled {
                    if !names.is_empty() && !names.contains(&s.name) {
                        continue;
                    }
                    out.push(m::ScheduledAction {
                        scheduled_action_name: s.name.clone(),
                        scheduled_action_arn: s.arn.clone(),
                        service_namespace: NAMESPACE.into(),
                        schedule: s.schedule.clone(),
                        timezone: s.timezone.clone(),
                        resource_id: t.resource_id.clone(),
                        scalable_dimension: Some(DIMENSION.into()),
                        start_time: s.start,
                        end_time: s.end,
                        scalable_target_action: None,
                        creation_time: s.created,
                    });
                }
            }
        }
        // ScalableTargetAction with only the members given (the shape reads absent as zero).
        let (page, next) = page(out, req.max_results, req.next_token.as_deref(), 50)?;
        let all = self.all(scope);
        let actions: Vec<Value> = page
            .into_iter()
            .map(|a| {
                let mut v = serde_json::to_value(&a).unwrap_or_default();
                if let Some(s) = all
                    .iter()
                    .find(|t| t.resource_id == a.resource_id)
                    .and_then(|t| t.scheduled.iter().find(|s| s.name == a.scheduled_action_name))
                {
                    let mut sta = serde_json::Map::new();
                    if let Some(n) = s.min {
                        sta.insert("MinCapacity".into(), n.into());
                    }
                    if let Some(n) = s.max {
                        sta.insert("MaxCapacity".into(), n.into());
                    }
                    v["ScalableTargetAction"] = Value::Object(sta);
                }
                v
            })
            .collect();
        Ok(with_token(json!({ "ScheduledActions": actions }), next))
    }

    async fn delete_scheduled(
        &self,
        scope: &Scope,
        req: m::DeleteScheduledActionRequest,
    ) -> Result<m::DeleteScheduledActionResponse, ServiceError> {
        check_ids(&req.service_namespace, &req.resource_id, Some(&req.scalable_dimension))?;
        let name = req.scheduled_action_name.clone();
        self.update(scope, &req.resource_id, |t| {
            let i = t.scheduled.iter().position(|s| s.name == name).ok_or_else(|| {
                ServiceError::sender(
                    "ObjectNotFoundException",
                    format!(
                        "No scheduled action found for service namespace: {NAMESPACE}, resource ID: {}, scalable dimension: {DIMENSION}, scheduled action name: {name}",
                        req.resource_id
                    ),
                )
            })?;
            t.scheduled.remove(i);
            Ok(())
        })
        .await?;
        Ok(m::DeleteScheduledActionResponse {})
    }

    // ---- activities and tags ----------------------------------------------------------------------

    fn describe_activities(
        &self,
        scope: &Scope,
        req: m::DescribeScalingActivitiesRequest,
    ) -> Result<m::DescribeScalingActivitiesResponse, ServiceError> {
        check_namespace(&req.service_namespace)?;
        let mut out = Vec::new();
        if req.service_namespace == NAMESPACE {
            for t in self.all(scope) {
                if req.resource_id.as_ref().is_some_and(|r| *r != t.resource_id) {
                    continue;
                }
                out.extend(t.activities.iter().cloned());
            }
        }
        out.sort_by(|a, b| b.start_time.total_cmp(&a.start_time));
        let (page, next) = page(out, req.max_results, req.next_token.as_deref(), 50)?;
        Ok(m::DescribeScalingActivitiesResponse { scaling_activities: Some(page), next_token: next })
    }

    fn target_of_arn(&self, scope: &Scope, arn: &str) -> Result<String, ServiceError> {
        let not_found = || {
            ServiceError::sender(
                "ResourceNotFoundException",
                format!("No scalable target found for ARN {arn}."),
            )
        };
        let prefix =
            format!("arn:aws:application-autoscaling:{}:{}:scalable-target/", scope.region, scope.account);
        let id = arn.strip_prefix(&prefix).ok_or_else(|| {
            if arn.starts_with("arn:") { not_found() } else { validation(format!("Invalid ARN: {arn}")) }
        })?;
        let kv = self.store.get(&arn_key(scope, id)).ok_or_else(not_found)?;
        String::from_utf8(kv.value.to_vec()).map_err(internal)
    }

    async fn tag(
        &self,
        scope: &Scope,
        req: m::TagResourceRequest,
    ) -> Result<m::TagResourceResponse, ServiceError> {
        check_tags(&req.tags)?;
        let resource = self.target_of_arn(scope, &req.resource_arn)?;
        self.update(scope, &resource, |t| {
            t.tags.extend(req.tags.clone());
            if t.tags.len() > 50 {
                return Err(ServiceError::sender(
                    "TooManyTagsException",
                    "The number of tags exceeds the limit of 50 tags per resource",
                ));
            }
            Ok(())
        })
        .await?;
        Ok(m::TagResourceResponse {})
    }

    async fn untag(
        &self,
        scope: &Scope,
        req: m::UntagResourceRequest,
    ) -> Result<m::UntagResourceResponse, ServiceError> {
        let resource = self.target_of_arn(scope, &req.resource_arn)?;
        self.update(scope, &resource, |t| {
            for k in &req.tag_keys {
                t.tags.remove(k);
            }
            Ok(())
        })
        .await?;
        Ok(m::UntagResourceResponse {})
    }

    fn list_tags(
        &self,
        scope: &Scope,
        req: m::ListTagsForResourceRequest,
    ) -> Result<m::ListTagsForResourceResponse, ServiceError> {
        let resource = self.target_of_arn(scope, &req.resource_arn)?;
        let t = self.load(scope, &resource)?.ok_or_else(|| no_target(&resource))?;
        Ok(m::ListTagsForResourceResponse { tags: Some(t.value.tags) })
    }

    // ---- scaling ----------------------------------------------------------------------------------

    /// Carries out alarm invocations as they arrive, until the inbox closes.
    pub async fn run_invocations(self: Arc<Self>, mut rx: tokio::sync::mpsc::UnboundedReceiver<Invocation>) {
        while let Some(inv) = rx.recv().await {
            if let Err(e) = self.invoke(&inv).await {
                tracing::warn!(policy = %inv.policy_arn, alarm = %inv.alarm_name, error = %e.message, "scaling policy not carried out");
            }
        }
    }

    /// Runs a policy for its alarm: the capacity it asks for, within the target's bounds, its
    /// cooldowns and the target's suspended state; a change is made through ECS and recorded as
    /// an activity.
    pub async fn invoke(&self, inv: &Invocation) -> Result<(), ServiceError> {
        let Some((region, account, resource, name)) = parse_policy_arn(&inv.policy_arn) else {
            return Err(validation(format!("Invalid policy ARN: {}", inv.policy_arn)));
        };
        if inv.state != gantry_core::AlarmState::Alarm {
            return Ok(());
        }
        let scope = Scope::new(account.to_string(), region.to_string());
        let t = self.load(&scope, resource)?.ok_or_else(|| no_target(resource))?.value;
        let Some(p) = t.policies.iter().find(|p| p.name == name && p.arn == inv.policy_arn).cloned() else {
            return Ok(());
        };
        let (cluster, service) = t.service();
        let current = self.capacity.desired_count(&scope, cluster, service).map_err(validation)?;
        let view = self.alarms.alarm(&scope.account, &scope.region, &inv.alarm_name);
        let now = self.now_ms();
        let (wanted, out_s, in_s) = match (&p.step, &p.tracking) {
            (Some(c), _) => {
                let Some(v) = view.as_ref() else { return Ok(()) };
                let agg = c.get("MetricAggregationType").and_then(Value::as_str).unwrap_or("Average");
                // Without datapoints (SetAlarmState), the breach is taken as the threshold itself.
                let breach = policy::aggregate(&v.recent_datapoints, agg).map_or(0.0, |x| x - v.threshold);
                let steps = steps_of(c);
                let Some(step) = policy::select_step(&steps, breach) else { return Ok(()) };
                let kind = c
                    .get("AdjustmentType")
                    .and_then(Value::as_str)
                    .and_then(policy::AdjustmentType::parse)
                    .unwrap_or(policy::AdjustmentType::ChangeInCapacity);
                // During a scale-out cooldown, the capacity the initiating scale-out added counts
                // toward this one: the adjustment applies to the capacity before it.
                let base = if step.adjustment > 0 && now < p.cooldowns.out_until_ms {
                    p.cooldowns.out_base
                } else {
                    current
                };
                let to = policy::adjusted(base, kind, step.adjustment, int_of(c, "MinAdjustmentMagnitude"));
                let cd = int_of(c, "Cooldown").unwrap_or(300) as i64;
                (to, cd, cd)
            }
            (None, Some(c)) => {
                let Some(v) = view.as_ref() else { return Ok(()) };
                let Some(&value) = v.recent_datapoints.first() else { return Ok(()) };
                let target = float_of(c, "TargetValue").unwrap_or(0.0);
                let high = inv.alarm_name.contains("-AlarmHigh-");
                let to = policy::tracking_capacity(current, value, target);
                // AlarmHigh only scales out, AlarmLow only in.
                let to = if high { to.max(current) } else { to.min(current) };
                let disable_in = c.get("DisableScaleIn").and_then(Value::as_bool).unwrap_or(false);
                let to = if disable_in { to.max(current) } else { to };
                let out_s = int_of(c, "ScaleOutCooldown").unwrap_or(300) as i64;
                let in_s = int_of(c, "ScaleInCooldown").unwrap_or(300) as i64;
                (to, out_s, in_s)
            }
            _ => return Ok(()),
        };
        let wanted = policy::bounded(wanted, t.min, t.max);
        let suspended = if wanted > current {
            t.suspended.dynamic_scaling_out_suspended
        } else {
            t.suspended.dynamic_scaling_in_suspended
        };
        if suspended {
            return Ok(());
        }
        let Some(to) = policy::gate(current, wanted, now, &p.cooldowns) else { return Ok(()) };
        let cause = format!("monitor alarm {} in state ALARM triggered policy {}", inv.alarm_name, p.name);
        let cooldowns = policy::after(&p.cooldowns, current, to, now, out_s, in_s);
        self.apply(&scope, resource, current, Change { to, cause }, Some((&p.name, cooldowns))).await;
        Ok(())
    }

    /// Sets the desired count through ECS and records the activity (and the policy's new
    /// cooldowns) on the target.
    async fn apply(
        &self,
        scope: &Scope,
        resource_id: &str,
        from: i32,
        change: Change,
        policy: Option<(&str, policy::Cooldowns)>,
    ) {
        let start = self.now();
        let (cluster, service) = service_of(resource_id).unwrap_or(("", ""));
        let event = format!(
            "(service {service}) desired count changed from {from} to {} by Application Auto Scaling: {}.",
            change.to, change.cause
        );
        let result = self.capacity.set_desired_count(scope, cluster, service, change.to, &event).await;
        let (status, message) = match &result {
            Ok(()) => (
                "Successful",
                format!(
                    "Successfully set desired count to {}. Change successfully fulfilled by ecs.",
                    change.to
                ),
            ),
            Err(e) => ("Failed", format!("Failed to set desired count to {}. Reason: {e}", change.to)),
        };
        let activity = m::ScalingActivity {
            activity_id: self.ids.uuid(),
            service_namespace: NAMESPACE.into(),
            resource_id: resource_id.to_string(),
            scalable_dimension: DIMENSION.into(),
            description: format!("Setting desired count to {}.", change.to),
            cause: change.cause,
            start_time: start,
            end_time: Some(self.now()),
            status_code: status.into(),
            status_message: Some(message),
            details: None,
            not_scaled_reasons: None,
        };
        let ok = result.is_ok();
        let written = self
            .update(scope, resource_id, |t| {
                t.activities.insert(0, activity.clone());
                t.activities.truncate(MAX_ACTIVITIES);
                if ok
                    && let Some((name, c)) = policy
                    && let Some(p) = t.policies.iter_mut().find(|p| p.name == name)
                {
                    p.cooldowns = c;
                }
                Ok(())
            })
            .await;
        if let Err(e) = written {
            tracing::warn!(resource_id, error = %e.message, "scaling activity not recorded");
        }
    }
}

fn check_namespace(ns: &str) -> Result<(), ServiceError> {
    if !NAMESPACES.contains(&ns) {
        return Err(validation(format!(
            "1 validation error detected: Value '{ns}' at 'serviceNamespace' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            NAMESPACES.join(", ")
        )));
    }
    Ok(())
}

fn check_name(name: &str, member: &str) -> Result<(), ServiceError> {
    if name.is_empty() || name.len() > 256 {
        return Err(validation(format!(
            "1 validation error detected: Value '{name}' at '{member}' failed to satisfy constraint: Member must have length between 1 and 256"
        )));
    }
    if name.contains(':') || name.contains('/') || name.contains('|') {
        return Err(validation(format!(
            "1 validation error detected: Value '{name}' at '{member}' failed to satisfy constraint: Member must satisfy regular expression pattern: \\p{{Print}}&&[^|:/]+"
        )));
    }
    Ok(())
}

fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), ServiceError> {
    if tags.len() > 50 {
        return Err(ServiceError::sender(
            "TooManyTagsException",
            "The number of tags exceeds the limit of 50 tags per resource",
        ));
    }
    for (k, v) in tags {
        if k.is_empty() || k.len() > 128 || v.len() > 256 || k.starts_with("aws:") {
            return Err(validation(format!("Invalid tag: {k}={v}")));
        }
    }
    Ok(())
}

fn steps_of(c: &Value) -> Vec<policy::Step> {
    c.get("StepAdjustments")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|s| policy::Step {
                    lower: float_of(s, "MetricIntervalLowerBound"),
                    upper: float_of(s, "MetricIntervalUpperBound"),
                    adjustment: int_of(s, "ScalingAdjustment").unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A step scaling configuration as AWS validates it.
fn check_step(c: &Value) -> Result<(), ServiceError> {
    let kind = c.get("AdjustmentType").and_then(Value::as_str);
    match kind {
        None => return Err(validation("AdjustmentType is required for a step scaling policy")),
        Some(k) if policy::AdjustmentType::parse(k).is_none() => {
            return Err(validation(format!(
                "1 validation error detected: Value '{k}' at 'stepScalingPolicyConfiguration.adjustmentType' failed to satisfy constraint: Member must satisfy enum value set: [ExactCapacity, PercentChangeInCapacity, ChangeInCapacity]"
            )));
        }
        _ => {}
    }
    if c.get("MinAdjustmentMagnitude").is_some() && kind != Some("PercentChangeInCapacity") {
        return Err(validation(
            "MinAdjustmentMagnitude is only supported with the PercentChangeInCapacity adjustment type",
        ));
    }
    if let Some(a) = c.get("MetricAggregationType").and_then(Value::as_str)
        && !["Average", "Minimum", "Maximum"].contains(&a)
    {
        return Err(validation(format!(
            "1 validation error detected: Value '{a}' at 'stepScalingPolicyConfiguration.metricAggregationType' failed to satisfy constraint: Member must satisfy enum value set: [Maximum, Minimum, Average]"
        )));
    }
    let steps = steps_of(c);
    if steps.is_empty() {
        return Err(validation("StepAdjustments are required for a step scaling policy"));
    }
    let mut sorted = steps.clone();
    sorted.sort_by(|a, b| {
        a.lower.unwrap_or(f64::NEG_INFINITY).total_cmp(&b.lower.unwrap_or(f64::NEG_INFINITY))
    });
    for s in &sorted {
        if s.lower.is_none() && s.upper.is_none() && steps.len() > 1 {
            return Err(validation("Step adjustments must not overlap"));
        }
        if let (Some(l), Some(u)) = (s.lower, s.upper)
            && l >= u
        {
            return Err(validation("Upper bound must be greater than lower bound"));
        }
    }
    for w in sorted.windows(2) {
        let (a, b) = (w[0], w[1]);
        match (a.upper, b.lower) {
            (Some(u), Some(l)) if u == l => {}
            (Some(u), Some(l)) if u > l => return Err(validation("Step adjustments must not overlap")),
            _ => return Err(validation("Step adjustments must not have gaps")),
        }
    }
    if sorted.iter().filter(|s| s.lower.is_none()).count() > 1
        || sorted.iter().filter(|s| s.upper.is_none()).count() > 1
    {
        return Err(validation("Step adjustments must not overlap"));
    }
    Ok(())
}

const PREDEFINED: &[&str] =
    &["ECSServiceAverageCPUUtilization", "ECSServiceAverageMemoryUtilization", "ALBRequestCountPerTarget"];

fn check_tracking(c: &Value) -> Result<(), ServiceError> {
    if float_of(c, "TargetValue").is_none() {
        return Err(validation("TargetValue is required for a target tracking scaling policy"));
    }
    let pre = c.get("PredefinedMetricSpecification");
    let custom = c.get("CustomizedMetricSpecification");
    match (pre, custom) {
        (Some(_), Some(_)) | (None, None) => Err(validation(
            "Exactly one of PredefinedMetricSpecification and CustomizedMetricSpecification must be specified",
        )),
        (Some(p), None) => {
            let kind = p.get("PredefinedMetricType").and_then(Value::as_str).unwrap_or_default();
            if !PREDEFINED.contains(&kind) {
                return Err(validation(format!(
                    "Unsupported metric type {kind} for service namespace ecs and scalable dimension ecs:service:DesiredCount"
                )));
            }
            if kind == "ALBRequestCountPerTarget" && !p.get("ResourceLabel").is_some_and(Value::is_string) {
                return Err(validation(
                    "ResourceLabel is required for the ALBRequestCountPerTarget metric type",
                ));
            }
            Ok(())
        }
        (None, Some(m)) => {
            if m.get("Metrics").is_some() {
                let returned = m["Metrics"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter(|q| q.get("ReturnData").and_then(Value::as_bool).unwrap_or(true))
                            .count()
                    })
                    .unwrap_or(0);
                if returned != 1 {
                    return Err(validation("Exactly one metric data query must have ReturnData set to true"));
                }
                Ok(())
            } else if m.get("MetricName").is_some()
                && m.get("Namespace").is_some()
                && m.get("Statistic").is_some()
            {
                Ok(())
            } else {
                Err(validation(
                    "MetricName, Namespace and Statistic are required for a customized metric specification",
                ))
            }
        }
    }
}

/// The metric part of a target tracking alarm (CloudWatch's PutMetricAlarm members).
fn tracking_metric(c: &Value, cluster: &str, service: &str, period: i32) -> Result<Value, ServiceError> {
    if let Some(p) = c.get("PredefinedMetricSpecification") {
        let kind = p.get("PredefinedMetricType").and_then(Value::as_str).unwrap_or_default();
        let ecs = |name: &str| {
            json!({
                "Namespace": "AWS/ECS", "MetricName": name, "Statistic": "Average", "Period": period,
                "Dimensions": [{"Name": "ClusterName", "Value": cluster}, {"Name": "ServiceName", "Value": service}],
            })
        };
        return Ok(match kind {
            "ECSServiceAverageCPUUtilization" => ecs("CPUUtilization"),
            "ECSServiceAverageMemoryUtilization" => ecs("MemoryUtilization"),
            _ => {
                // app/NAME/ID/targetgroup/NAME/ID: the alarm's TargetGroup and LoadBalancer.
                let label = p.get("ResourceLabel").and_then(Value::as_str).unwrap_or_default();
                let (lb, tg) = label
                    .split_once("/targetgroup/")
                    .ok_or_else(|| validation(format!("Invalid ResourceLabel: {label}")))?;
                json!({
                    "Namespace": "AWS/ApplicationELB", "MetricName": "RequestCountPerTarget", "Statistic": "Sum",
                    "Period": period,
                    "Dimensions": [{"Name": "TargetGroup", "Value": format!("targetgroup/{tg}")}, {"Name": "LoadBalancer", "Value": lb}],
                })
            }
        });
    }
    let m = c.get("CustomizedMetricSpecification").cloned().unwrap_or_default();
    if let Some(queries) = m.get("Metrics").and_then(Value::as_array) {
        let metrics: Vec<Value> = queries
            .iter()
            .map(|q| {
                let mut out = json!({"Id": q.get("Id").cloned().unwrap_or_default()});
                for k in ["Expression", "Label", "ReturnData"] {
                    if let Some(v) = q.get(k) {
                        out[k] = v.clone();
                    }
                }
                if let Some(s) = q.get("MetricStat") {
                    let mut stat = s.clone();
                    stat["Period"] = json!(period);
                    out["MetricStat"] = stat;
                }
                if q.get("Expression").is_some() {
                    out["Period"] = json!(period);
                }
                out
            })
            .collect();
        return Ok(json!({ "Metrics": metrics }));
    }
    let mut out = json!({"Period": period});
    for k in ["Namespace", "MetricName", "Dimensions", "Statistic", "Unit"] {
        if let Some(v) = m.get(k) {
            out[k] = v.clone();
        }
    }
    Ok(out)
}

/// A policy as DescribeScalingPolicies shows it, its configuration as it was given (the
/// generated shape would show absent step bounds as zero).
fn render_policy(t: &TargetRecord, p: &PolicyRecord) -> Result<Value, ServiceError> {
    let mut v = json!({
        "PolicyARN": p.arn, "PolicyName": p.name, "ServiceNamespace": NAMESPACE, "ResourceId": t.resource_id,
        "ScalableDimension": DIMENSION, "PolicyType": p.policy_type, "Alarms": p.alarms, "CreationTime": p.created,
    });
    if let Some(s) = &p.step {
        v["StepScalingPolicyConfiguration"] = s.clone();
    }
    if let Some(s) = &p.tracking {
        v["TargetTrackingScalingPolicyConfiguration"] = s.clone();
    }
    Ok(v)
}

fn with_token(mut v: Value, next: Option<String>) -> Value {
    if let Some(t) = next {
        v["NextToken"] = json!(t);
    }
    v
}

/// One page of a Describe call: NextToken is the offset of the next item.
/// MaxResults 0 is absent (the generated shape reads an absent number as zero).
fn page<T>(
    items: Vec<T>,
    max: i32,
    token: Option<&str>,
    default: usize,
) -> Result<(Vec<T>, Option<String>), ServiceError> {
    let max = (max != 0).then_some(max);
    let limit = match max {
        Some(n) if !(1..=50).contains(&n) => {
            return Err(validation(format!(
                "1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to 50"
            )));
        }
        Some(n) => n as usize,
        None => default,
    };
    let start = match token {
        None => 0,
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| ServiceError::sender("InvalidNextTokenException", "Invalid token"))?,
    };
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(start).take(limit).collect();
    let next = (start + limit < total).then(|| (start + limit).to_string());
    Ok((page, next))
}

#[cfg(test)]
mod tests;
