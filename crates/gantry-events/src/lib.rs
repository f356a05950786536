//! Amazon EventBridge, as far as scheduled tasks need it: rules on the `default` event bus with a
//! `ScheduleExpression` (`rate(...)`, `cron(...)`, UTC) or an `EventPattern` (matched against
//! the events services put on the default bus through `gantry_ports::EventBus`: [`bus`]), their
//! targets (ECS clusters with `EcsParameters`, whose RunTask the firing controller calls through
//! `gantry_ports::TaskLauncher`; CloudWatch Logs log groups, for event-pattern rules), and tags.
//!
//! Operations take and return the JSON form of the generated shapes (`gantry_model::events`,
//! awsJson1_1); the front door does the wire. A rule is one record,
//! `/ACCOUNT/REGION/events/rule/BUS/NAME`, with its targets and tags inside, so a target change
//! and the rule it belongs to are one compare-and-swap. An enabled rule with a schedule has an
//! index row under `/_events/scheduled/` (see [`keys`]), which is what [`fire::Firing`] (the
//! controller that runs due rules' targets) watches. Expressions and when they fire next are
//! `gantry_core::schedule`'s.
//!
//! This crate knows no HTTP and no wire format, and depends on no other service's crate.

pub mod bus;
pub mod fire;
pub mod keys;

use gantry_core::{Clock, Scope, ServiceError};
use gantry_model::events::*;
use gantry_runtime::records::{Before, Record, Stored, TxnExt, load, load_prefix};
use gantry_store::{Op, Store, Txn};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The service's name in keys and ARNs.
pub const SERVICE: &str = "events";
/// The one event bus.
pub const DEFAULT_BUS: &str = "default";
/// Targets a rule may have (EventBridge's quota).
pub const MAX_TARGETS: usize = 5;

pub(crate) const ATTEMPTS: usize = 32;

gantry_core::status_enum! {
    /// A rule's `State`.
    RuleState {
        Enabled => "ENABLED",
        Disabled => "DISABLED",
        EnabledWithAllCloudtrailManagementEvents => "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS",
    }
}

// Declared by `status_enum!`, which derives no `Default`.
#[allow(clippy::derivable_impls)]
impl Default for RuleState {
    fn default() -> Self {
        RuleState::Enabled
    }
}

impl RuleState {
    /// Whether the rule matches events (either enabled state).
    pub fn is_enabled(self) -> bool {
        self != RuleState::Disabled
    }
}

/// A rule as stored: what DescribeRule shows, its targets, its tags, and where its schedule is.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RuleRecord {
    pub name: String,
    pub bus: String,
    pub arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_expression: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_pattern: Option<String>,
    /// A state that is not EventBridge's is a failed read naming it.
    pub state: RuleState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    pub created_by: String,
    #[serde(default)]
    pub targets: Vec<Target>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// When the schedule was last set or enabled: a rate counts from here.
    #[serde(default)]
    pub scheduled_at_ms: i64,
    /// The next firing the controller settled on for the schedule as it is (none yet: it has not
    /// looked since the schedule was set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_fire_ms: Option<i64>,
}

impl RuleRecord {
    /// Whether the controller fires it.
    pub fn scheduled(&self) -> bool {
        self.schedule_expression.is_some() && self.state.is_enabled()
    }

    fn rule(&self) -> Rule {
        Rule {
            name: Some(self.name.clone()),
            arn: Some(self.arn.clone()),
            event_pattern: self.event_pattern.clone(),
            state: Some(self.state.as_str().into()),
            description: self.description.clone(),
            schedule_expression: self.schedule_expression.clone(),
            role_arn: self.role_arn.clone(),
            managed_by: None,
            event_bus_name: Some(self.bus.clone()),
        }
    }
}

impl Record for RuleRecord {
    fn key(&self, scope: &Scope) -> String {
        keys::rule(scope, &self.bus, &self.name)
    }

    fn index_keys(&self, scope: &Scope) -> Vec<gantry_runtime::records::Row> {
        if !self.scheduled() {
            return Vec::new();
        }
        // The value changes whenever the schedule does, so the controller hears of it.
        let value = format!(
            "{}\n{}\n{}",
            self.key(scope),
            self.schedule_expression.as_deref().unwrap_or_default(),
            self.scheduled_at_ms
        );
        vec![(keys::scheduled(scope, &self.bus, &self.name), value.into_bytes())]
    }
}

fn err(code: &str, msg: impl Into<String>) -> ServiceError {
    ServiceError::sender(code, msg)
}

fn validation(msg: impl Into<String>) -> ServiceError {
    err("ValidationException", msg)
}

fn internal(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::receiver("InternalException", e.to_string())
}

fn parse<T: serde::de::DeserializeOwned>(input: &[u8]) -> Result<T, ServiceError> {
    serde_json::from_slice(input).map_err(|e| validation(format!("The request is not valid: {e}")))
}

fn render<T: Serialize>(v: T) -> Result<Vec<u8>, ServiceError> {
    serde_json::to_vec(&v).map_err(internal)
}

fn rule_missing(name: &str, bus: &str) -> ServiceError {
    err("ResourceNotFoundException", format!("Rule {name} does not exist on EventBus {bus}."))
}

/// A name as EventBridge's model constrains it (rule names, target IDs).
fn check_name(what: &str, v: &str, max: usize) -> Result<(), ServiceError> {
    let ok = !v.is_empty()
        && v.chars().count() <= max
        && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        return Ok(());
    }
    Err(validation(format!(
        "1 validation error detected: Value '{v}' at '{what}' failed to satisfy constraint: Member must \
         satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+ and have length between 1 and {max}"
    )))
}

/// Validates an event pattern: a JSON object whose leaves are arrays (EventBridge's rule).
fn check_pattern(p: &str) -> Result<(), ServiceError> {
    let bad =
        |why: &str| err("InvalidEventPatternException", format!("Event pattern is not valid. Reason: {why}"));
    let v: serde_json::Value = serde_json::from_str(p).map_err(|e| bad(&e.to_string()))?;
    fn walk(v: &serde_json::Value, top: bool) -> Result<(), String> {
        match v {
            serde_json::Value::Object(m) => {
                if top && m.is_empty() {
                    return Err("Empty objects are not allowed".into());
                }
                m.iter().try_for_each(|(k, v)| match v {
                    serde_json::Value::Object(_) => walk(v, false),
                    serde_json::Value::Array(a) if !a.is_empty() => Ok(()),
                    serde_json::Value::Array(_) => Err(format!("Empty arrays are not allowed at '{k}'")),
                    _ => Err(format!("\"{k}\" must be an object or an array")),
                })
            }
            _ => Err("Filter is not an object".into()),
        }
    }
    walk(&v, true).map_err(|w| bad(&w))
}

/// The bus an `EventBusName` (a name or an ARN) names: only `default` exists.
fn bus(scope: &Scope, name: Option<&str>) -> Result<String, ServiceError> {
    let name = name.filter(|n| !n.is_empty()).unwrap_or(DEFAULT_BUS);
    let short = name.strip_prefix(&format!("arn:aws:events:{}:{}:event-bus/", scope.region, scope.account));
    let short = short.unwrap_or(name);
    if short == DEFAULT_BUS {
        Ok(DEFAULT_BUS.to_string())
    } else {
        Err(err("ResourceNotFoundException", format!("Event bus {short} does not exist.")))
    }
}

/// The rule ARN of a rule on the default bus.
pub fn rule_arn(scope: &Scope, name: &str) -> String {
    format!("arn:aws:events:{}:{}:rule/{name}", scope.region, scope.account)
}

/// The ECS cluster an ECS target's ARN names, if it is one in `scope`'s partition.
fn ecs_cluster(arn: &str) -> Option<(&str, &str, &str)> {
    let rest = arn.strip_prefix("arn:aws:ecs:")?;
    let mut it = rest.splitn(3, ':');
    let (region, account, resource) = (it.next()?, it.next()?, it.next()?);
    let name = resource.strip_prefix("cluster/")?;
    (!name.is_empty()).then_some((region, account, name))
}

fn check_tags(tags: &[Tag]) -> Result<(), ServiceError> {
    for t in tags {
        if t.key.is_empty() || t.key.chars().count() > 128 || t.value.chars().count() > 256 {
            return Err(validation(format!(
                "Tag key '{}' must be 1 to 128 characters and its value at most 256",
                t.key
            )));
        }
    }
    Ok(())
}

/// The EventBridge service.
pub struct Events {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

impl Events {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Events { store, clock }
    }

    /// Runs one operation in `scope`: its input as JSON, its output as JSON.
    pub async fn call(&self, scope: &Scope, op: &str, input: &[u8]) -> Result<Vec<u8>, ServiceError> {
        match op {
            "PutRule" => render(self.put_rule(scope, parse(input)?).await?),
            "DescribeRule" => {
                let r: DescribeRuleRequest = parse(input)?;
                let b = bus(scope, r.event_bus_name.as_deref())?;
                let rule = self.load(scope, &b, &r.name)?.ok_or_else(|| rule_missing(&r.name, &b))?.value;
                render(DescribeRuleResponse {
                    name: Some(rule.name.clone()),
                    arn: Some(rule.arn.clone()),
                    event_pattern: rule.event_pattern.clone(),
                    schedule_expression: rule.schedule_expression.clone(),
                    state: Some(rule.state.as_str().into()),
                    description: rule.description.clone(),
                    role_arn: rule.role_arn.clone(),
                    managed_by: None,
                    event_bus_name: Some(rule.bus.clone()),
                    created_by: Some(rule.created_by.clone()),
                })
            }
            "DeleteRule" => {
                let r: DeleteRuleRequest = parse(input)?;
                self.delete_rule(scope, r).await?;
                Ok(b"{}".to_vec())
            }
            "EnableRule" | "DisableRule" => {
                let r: EnableRuleRequest = parse(input)?;
                let enable = op == "EnableRule";
                let now = self.clock.now().0;
                self.update(scope, r.event_bus_name.as_deref(), &r.name, |rule| {
                    // Enabling a rule in either enabled state leaves it as it is.
                    if enable != rule.state.is_enabled() {
                        rule.state = if enable { RuleState::Enabled } else { RuleState::Disabled };
                        // A rate counts again from when the rule is enabled.
                        rule.scheduled_at_ms = now;
                        rule.next_fire_ms = None;
                    }
                    Ok(())
                })
                .await?;
                Ok(b"{}".to_vec())
            }
            "ListRules" => render(self.list_rules(scope, parse(input)?)?),
            "PutTargets" => render(self.put_targets(scope, parse(input)?).await?),
            "RemoveTargets" => {
                let r: RemoveTargetsRequest = parse(input)?;
                if r.ids.is_empty() || r.ids.len() > 100 {
                    return Err(validation("Ids must hold 1 to 100 target IDs"));
                }
                self.update(scope, r.event_bus_name.as_deref(), &r.rule, |rule| {
                    rule.targets.retain(|t| !r.ids.contains(&t.id));
                    Ok(())
                })
                .await?;
                render(RemoveTargetsResponse { failed_entry_count: 0, failed_entries: Some(Vec::new()) })
            }
            "ListTargetsByRule" => {
                let r: ListTargetsByRuleRequest = parse(input)?;
                let b = bus(scope, r.event_bus_name.as_deref())?;
                let rule = self.load(scope, &b, &r.rule)?.ok_or_else(|| rule_missing(&r.rule, &b))?.value;
                let (page, next) = page(rule.targets, |t| t.id.clone(), r.next_token.as_deref(), r.limit)?;
                render(ListTargetsByRuleResponse { targets: Some(page), next_token: next })
            }
            "ListRuleNamesByTarget" => {
                let r: ListRuleNamesByTargetRequest = parse(input)?;
                let b = bus(scope, r.event_bus_name.as_deref())?;
                let names: Vec<String> = self
                    .rules(scope, &b)?
                    .into_iter()
                    .filter(|x| x.value.targets.iter().any(|t| t.arn == r.target_arn))
                    .map(|x| x.value.name)
                    .collect();
                let (page, next) = page(names, |n| n.clone(), r.next_token.as_deref(), r.limit)?;
                render(ListRuleNamesByTargetResponse { rule_names: Some(page), next_token: next })
            }
            "TagResource" => {
                let r: TagResourceRequest = parse(input)?;
                check_tags(&r.tags)?;
                let name = self.rule_of_arn(scope, &r.resource_arn)?;
                self.update(scope, None, &name, |rule| {
                    for t in &r.tags {
                        match rule.tags.iter_mut().find(|e| e.key == t.key) {
                            Some(e) => e.value = t.value.clone(),
                            None => rule.tags.push(t.clone()),
                        }
                    }
                    if rule.tags.len() > 50 {
                        return Err(err(
                            "LimitExceededException",
                            "The requested resource exceeds the maximum number allowed.",
                        ));
                    }
                    Ok(())
                })
                .await?;
                Ok(b"{}".to_vec())
            }
            "UntagResource" => {
                let r: UntagResourceRequest = parse(input)?;
                let name = self.rule_of_arn(scope, &r.resource_arn)?;
                self.update(scope, None, &name, |rule| {
                    rule.tags.retain(|t| !r.tag_keys.contains(&t.key));
                    Ok(())
                })
                .await?;
                Ok(b"{}".to_vec())
            }
            "ListTagsForResource" => {
                let r: ListTagsForResourceRequest = parse(input)?;
                let name = self.rule_of_arn(scope, &r.resource_arn)?;
                let rule = self
                    .load(scope, DEFAULT_BUS, &name)?
                    .ok_or_else(|| rule_missing(&name, DEFAULT_BUS))?
                    .value;
                render(ListTagsForResourceResponse { tags: Some(rule.tags) })
            }
            _ => Err(err(
                "UnknownOperationException",
                format!("Operation {op} is not supported by Gantry's EventBridge"),
            )),
        }
    }

    /// The rule a rule ARN names (on the default bus of `scope`).
    fn rule_of_arn(&self, scope: &Scope, arn: &str) -> Result<String, ServiceError> {
        let prefix = format!("arn:aws:events:{}:{}:rule/", scope.region, scope.account);
        match arn.strip_prefix(&prefix) {
            Some(name) if !name.contains('/') && !name.is_empty() => Ok(name.to_string()),
            Some(rest) => match rest.split_once('/') {
                Some((b, _)) => {
                    Err(err("ResourceNotFoundException", format!("Event bus {b} does not exist.")))
                }
                None => Err(rule_missing(rest, DEFAULT_BUS)),
            },
            None => Err(validation(format!("Provided ARN '{arn}' is not a valid rule ARN"))),
        }
    }

    fn load(&self, scope: &Scope, bus: &str, name: &str) -> Result<Option<Stored<RuleRecord>>, ServiceError> {
        load(self.store.as_ref(), &keys::rule(scope, bus, name)).map_err(internal)
    }

    fn rules(&self, scope: &Scope, bus: &str) -> Result<Vec<Stored<RuleRecord>>, ServiceError> {
        load_prefix(self.store.as_ref(), &keys::rules(scope, bus)).map_err(internal)
    }

    async fn commit(&self, txn: Txn) -> Result<bool, ServiceError> {
        commit(self.store.as_ref(), txn).await
    }

    async fn update(
        &self,
        scope: &Scope,
        bus_name: Option<&str>,
        name: &str,
        f: impl Fn(&mut RuleRecord) -> Result<(), ServiceError>,
    ) -> Result<(), ServiceError> {
        let b = bus(scope, bus_name)?;
        for _ in 0..ATTEMPTS {
            let mut rule = self.load(scope, &b, name)?.ok_or_else(|| rule_missing(name, &b))?;
            let before = Before::of(scope, &rule);
            let old = rule.value.clone();
            f(&mut rule.value)?;
            if rule.value == old {
                return Ok(());
            }
            if self.commit(Txn::new().put_record(scope, &before, &rule.value)).await? {
                return Ok(());
            }
        }
        Err(conflict())
    }

    async fn put_rule(&self, scope: &Scope, r: PutRuleRequest) -> Result<PutRuleResponse, ServiceError> {
        check_name("name", &r.name, 64)?;
        let b = bus(scope, r.event_bus_name.as_deref())?;
        let schedule = r.schedule_expression.clone().filter(|s| !s.is_empty());
        let pattern = r.event_pattern.clone().filter(|s| !s.is_empty());
        if schedule.is_none() && pattern.is_none() {
            return Err(validation("Parameter(s) EventPattern or ScheduleExpression must be specified."));
        }
        if let Some(s) = &schedule
            && (s.len() > 256 || gantry_core::schedule::Schedule::parse(s, false).is_err())
        {
            return Err(validation("Parameter ScheduleExpression is not valid."));
        }
        if let Some(p) = &pattern {
            check_pattern(p)?;
        }
        let given = r.state.as_deref().unwrap_or(RuleState::Enabled.as_str());
        let Some(state) = RuleState::parse(given) else {
            let state = given;
            return Err(validation(format!(
                "1 validation error detected: Value '{state}' at 'state' failed to satisfy constraint: Member \
                 must satisfy enum value set: [ENABLED, DISABLED, ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS]"
            )));
        };
        if r.description.as_ref().is_some_and(|d| d.chars().count() > 512) {
            return Err(validation("Description must be at most 512 characters"));
        }
        let tags = r.tags.clone().unwrap_or_default();
        check_tags(&tags)?;
        let now = self.clock.now().0;
        for _ in 0..ATTEMPTS {
            let old = self.load(scope, &b, &r.name)?;
            let (before, mut rule) = match &old {
                Some(o) => (Before::of(scope, o), o.value.clone()),
                None => (
                    Before::absent(),
                    RuleRecord {
                        name: r.name.clone(),
                        bus: b.clone(),
                        arn: rule_arn(scope, &r.name),
                        created_by: scope.account.clone(),
                        tags: tags.clone(),
                        ..Default::default()
                    },
                ),
            };
            let was_scheduled = old.as_ref().is_some_and(|o| o.value.scheduled());
            let same_schedule = old.as_ref().is_some_and(|o| o.value.schedule_expression == schedule);
            rule.schedule_expression = schedule.clone();
            rule.event_pattern = pattern.clone();
            rule.state = state;
            rule.description = r.description.clone();
            rule.role_arn = r.role_arn.clone();
            if !(was_scheduled && same_schedule && rule.scheduled()) {
                rule.scheduled_at_ms = now;
                rule.next_fire_ms = None;
            }
            if self.commit(Txn::new().put_record(scope, &before, &rule)).await? {
                return Ok(PutRuleResponse { rule_arn: Some(rule.arn) });
            }
        }
        Err(conflict())
    }

    async fn delete_rule(&self, scope: &Scope, r: DeleteRuleRequest) -> Result<(), ServiceError> {
        let b = bus(scope, r.event_bus_name.as_deref())?;
        for _ in 0..ATTEMPTS {
            // Deleting a rule that does not exist succeeds, as in EventBridge.
            let Some(rule) = self.load(scope, &b, &r.name)? else { return Ok(()) };
            if !rule.value.targets.is_empty() {
                return Err(validation("Rule can't be deleted since it has targets."));
            }
            if self.commit(Txn::new().delete_record(&Before::of(scope, &rule))).await? {
                return Ok(());
            }
        }
        Err(conflict())
    }

    fn list_rules(&self, scope: &Scope, r: ListRulesRequest) -> Result<ListRulesResponse, ServiceError> {
        let b = bus(scope, r.event_bus_name.as_deref())?;
        let prefix = r.name_prefix.clone().unwrap_or_default();
        let rules: Vec<Rule> = self
            .rules(scope, &b)?
            .into_iter()
            .filter(|x| x.value.name.starts_with(&prefix))
            .map(|x| x.value.rule())
            .collect();
        let (page, next) =
            page(rules, |x| x.name.clone().unwrap_or_default(), r.next_token.as_deref(), r.limit)?;
        Ok(ListRulesResponse { rules: Some(page), next_token: next })
    }

    async fn put_targets(
        &self,
        scope: &Scope,
        r: PutTargetsRequest,
    ) -> Result<PutTargetsResponse, ServiceError> {
        if r.targets.is_empty() || r.targets.len() > 10 {
            return Err(validation(format!(
                "1 validation error detected: Value at 'targets' failed to satisfy constraint: Member must \
                 have length less than or equal to 10 and greater than or equal to 1 (it has {})",
                r.targets.len()
            )));
        }
        let mut accepted = Vec::new();
        let mut failed = Vec::new();
        for t in r.targets {
            check_name("targets.member.id", &t.id, 64)?;
            match check_target(scope, t) {
                Ok(t) => accepted.push(t),
                Err((id, code, message)) => failed.push(PutTargetsResultEntry {
                    target_id: Some(id),
                    error_code: Some(code),
                    error_message: Some(message),
                }),
            }
        }
        self.update(scope, r.event_bus_name.as_deref(), &r.rule, |rule| {
            for t in &accepted {
                match rule.targets.iter_mut().find(|x| x.id == t.id) {
                    Some(x) => *x = t.clone(),
                    None => rule.targets.push(t.clone()),
                }
            }
            if rule.targets.len() > MAX_TARGETS {
                return Err(err(
                    "LimitExceededException",
                    "The requested resource exceeds the maximum number allowed.",
                ));
            }
            Ok(())
        })
        .await?;
        Ok(PutTargetsResponse { failed_entry_count: failed.len() as i32, failed_entries: Some(failed) })
    }
}

fn conflict() -> ServiceError {
    err(
        "ConcurrentModificationException",
        "There is concurrent modification on a rule, target, archive, or replay.",
    )
}

pub(crate) async fn commit(store: &dyn Store, txn: Txn) -> Result<bool, ServiceError> {
    for op in &txn.ops {
        let (Op::Put(k, _) | Op::Delete(k) | Op::DeletePrefix(k) | Op::Add(k, _)) = op;
        if !keys::owns(k) {
            return Err(internal(format!("EventBridge may not write {k}")));
        }
    }
    let r = store.txn(txn).await.map_err(internal)?;
    Ok(r.succeeded)
}

/// A target as PutTargets accepts it, normalized (TaskCount 1 when absent), or the FailedEntries
/// entry it becomes: `(id, code, message)`. Gantry can invoke ECS clusters only.
fn check_target(scope: &Scope, mut t: Target) -> Result<Target, (String, String, String)> {
    let fail = |code: &str, msg: String| (t.id.clone(), code.to_string(), msg);
    if t.arn.is_empty() || t.arn.len() > 1600 {
        return Err(fail("ValidationException", format!("Target {} has no valid Arn", t.id)));
    }
    if let Some(rest) = t.arn.strip_prefix("arn:aws:logs:") {
        // A CloudWatch Logs log group: event-pattern rules deliver their events to it.
        return match bus::log_group(scope, &t.arn) {
            Some(_) => Ok(t),
            None if rest.contains(":log-group:") => Err(fail(
                "ValidationException",
                format!("The target {} is not in this account and region.", t.arn),
            )),
            None => Err(fail("ValidationException", format!("Target {} has no valid Arn", t.id))),
        };
    }
    let Some((region, account, _)) = ecs_cluster(&t.arn) else {
        return Err(fail(
            "ValidationException",
            format!(
                "Gantry invokes ECS cluster and CloudWatch Logs log group targets only; {} is neither.",
                t.arn
            ),
        ));
    };
    if region != scope.region || account != scope.account {
        return Err(fail(
            "ValidationException",
            format!("The target {} is not in this account and region.", t.arn),
        ));
    }
    let Some(ecs) = t.ecs_parameters.as_mut() else {
        return Err(fail(
            "ValidationException",
            format!("Parameter(s) EcsParameters must be specified for target: {}.", t.id),
        ));
    };
    if ecs.task_count == 0 {
        ecs.task_count = 1;
    }
    if ecs.task_count < 0 {
        return Err(fail("ValidationException", format!("TaskCount {} must be at least 1.", ecs.task_count)));
    }
    if let Some(l) = &ecs.launch_type
        && !["EC2", "FARGATE", "EXTERNAL"].contains(&l.as_str())
    {
        return Err(fail(
            "ValidationException",
            format!("LaunchType '{l}' is not one of EC2, FARGATE, EXTERNAL."),
        ));
    }
    if let Some(input) = &t.input {
        match serde_json::from_str::<serde_json::Value>(input) {
            Ok(serde_json::Value::Object(_)) => {}
            _ => return Err(fail("ValidationException", "Parameter Input is not valid JSON.".to_string())),
        }
    }
    if let Some(p) = &t.retry_policy
        && (!(0..=185).contains(&p.maximum_retry_attempts)
            || !(0 == p.maximum_event_age_in_seconds
                || (60..=86_400).contains(&p.maximum_event_age_in_seconds)))
    {
        return Err(fail(
            "ValidationException",
            "RetryPolicy: MaximumRetryAttempts must be 0 to 185 and MaximumEventAgeInSeconds 60 to 86400."
                .to_string(),
        ));
    }
    Ok(t)
}

/// One page of `items` (in key order) after the token (the last key of the previous page).
fn page<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> String,
    token: Option<&str>,
    limit: i32,
) -> Result<(Vec<T>, Option<String>), ServiceError> {
    let limit = match limit {
        0 => 100,
        1..=100 => limit as usize,
        n => {
            return Err(validation(format!(
                "1 validation error detected: Value '{n}' at 'limit' failed to satisfy constraint: Member must \
                 have value between 1 and 100"
            )));
        }
    };
    let mut items: Vec<(String, T)> = items.into_iter().map(|t| (key(&t), t)).collect();
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let start = match token.filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => {
            let after = decode_token(t).ok_or_else(|| validation("The NextToken is not valid."))?;
            items.iter().position(|(k, _)| *k > after).unwrap_or(items.len())
        }
    };
    let rest: Vec<(String, T)> = items.into_iter().skip(start).collect();
    let next = (rest.len() > limit).then(|| encode_token(&rest[limit - 1].0));
    Ok((rest.into_iter().take(limit).map(|(_, t)| t).collect(), next))
}

fn encode_token(key: &str) -> String {
    key.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_token(t: &str) -> Option<String> {
    if !t.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> =
        (0..t.len()).step_by(2).map(|i| u8::from_str_radix(t.get(i..i + 2)?, 16).ok()).collect();
    String::from_utf8(bytes?).ok()
}

#[cfg(test)]
mod tests;
