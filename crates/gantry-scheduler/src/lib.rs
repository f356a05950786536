//! Amazon EventBridge Scheduler (restJson1): schedules (`at(...)`, `rate(...)`, `cron(...)` in a
//! `ScheduleExpressionTimezone`, StartDate/EndDate, FlexibleTimeWindow, RetryPolicy, State,
//! ActionAfterCompletion) in schedule groups, with ECS targets (`EcsParameters`: RunTask through
//! `gantry_ports::TaskLauncher`), and tags on groups.
//!
//! Operations take and return the JSON form of the generated shapes
//! (`gantry_model::scheduler`); the front door and gantry-protocol's `rest` do the wire. A
//! schedule is one record, `/ACCOUNT/REGION/scheduler/schedule/GROUP/NAME`, a group
//! `/ACCOUNT/REGION/scheduler/group/NAME` (the `default` group exists without one); an enabled
//! schedule has an index row `/_scheduler/scheduled/ACCOUNT/REGION/GROUP/NAME`, which
//! [`fire::Firing`] works through. Time zones are the system's TZif files
//! (`/usr/share/zoneinfo`), read through [`zone`].
//!
//! This crate knows no HTTP and no wire format, and depends on no other service's crate.

pub mod fire;

use gantry_core::schedule::{Schedule, Tzif};
use gantry_core::{Clock, Scope, ServiceError};
use gantry_model::scheduler::*;
use gantry_runtime::records::{Before, Record, Row, Stored, TxnExt, load, load_prefix};
use gantry_store::{Op, Store, Txn};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub const SERVICE: &str = "scheduler";
pub const DEFAULT_GROUP: &str = "default";
pub(crate) const ATTEMPTS: usize = 32;

gantry_core::status_enum! {
    /// A schedule's `State`.
    ScheduleState {
        Enabled => "ENABLED",
        Disabled => "DISABLED",
    }
}

/// A schedule group's `State`: Gantry deletes a group at once, so a stored one is ACTIVE.
pub const GROUP_ACTIVE: &str = "ACTIVE";

/// A schedule as stored: what GetSchedule shows, and where its firing is.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ScheduleRecord {
    pub schedule: GetScheduleOutput,
    /// When the schedule was created or last updated: a rate without StartDate counts from here.
    #[serde(default)]
    pub scheduled_at_ms: i64,
    /// The firing being worked on: its nominal time (as the expression says).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nominal_ms: Option<i64>,
    /// When to invoke next: the nominal time plus the flexible window's delay, or a retry's time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_fire_ms: Option<i64>,
    /// Attempts made for the nominal firing (retries after the first).
    #[serde(default)]
    pub attempts: u32,
}

impl ScheduleRecord {
    fn group(&self) -> &str {
        self.schedule.group_name.as_deref().unwrap_or(DEFAULT_GROUP)
    }
    fn name(&self) -> &str {
        self.schedule.name.as_deref().unwrap_or_default()
    }
    /// Whether it fires: a state other than DISABLED (Gantry writes ENABLED or DISABLED).
    pub fn enabled(&self) -> bool {
        self.schedule.state.as_deref().and_then(ScheduleState::parse) != Some(ScheduleState::Disabled)
    }
}

impl Record for ScheduleRecord {
    fn key(&self, scope: &Scope) -> String {
        keys::schedule(scope, self.group(), self.name())
    }
    fn index_keys(&self, scope: &Scope) -> Vec<Row> {
        if !self.enabled() {
            return Vec::new();
        }
        let value = format!("{}\n{}", self.key(scope), self.scheduled_at_ms);
        vec![(keys::scheduled(scope, self.group(), self.name()), value.into_bytes())]
    }
}

/// A schedule group as stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct GroupRecord {
    pub group: GetScheduleGroupOutput,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

impl Record for GroupRecord {
    fn key(&self, scope: &Scope) -> String {
        keys::group(scope, self.group.name.as_deref().unwrap_or_default())
    }
}

pub mod keys {
    //! Scheduler's keys: within `/ACCOUNT/REGION/scheduler/`, `group/NAME` and
    //! `schedule/GROUP/NAME`; within `/_scheduler/`, `scheduled/ACCOUNT/REGION/GROUP/NAME` (an
    //! enabled schedule's index row; value: its key and when it was set).
    use gantry_core::Scope;

    pub fn groups(s: &Scope) -> String {
        format!("/{}/{}/{}/group/", s.account, s.region, crate::SERVICE)
    }
    pub fn group(s: &Scope, name: &str) -> String {
        format!("{}{name}", groups(s))
    }
    pub fn schedules(s: &Scope) -> String {
        format!("/{}/{}/{}/schedule/", s.account, s.region, crate::SERVICE)
    }
    pub fn schedule(s: &Scope, group: &str, name: &str) -> String {
        format!("{}{group}/{name}", schedules(s))
    }
    pub fn scheduled_prefix() -> String {
        "/_scheduler/scheduled/".to_string()
    }
    pub fn scheduled(s: &Scope, group: &str, name: &str) -> String {
        format!("{}{}/{}/{group}/{name}", scheduled_prefix(), s.account, s.region)
    }
    pub fn scope_of(key: &str) -> Option<Scope> {
        let mut it = key.strip_prefix('/')?.splitn(4, '/');
        let (account, region, service) = (it.next()?, it.next()?, it.next()?);
        (service == crate::SERVICE).then(|| Scope::new(account, region))
    }
    pub fn owns(key: &str) -> bool {
        key.starts_with("/_scheduler/") || scope_of(key).is_some_and(|s| !s.account.starts_with('_'))
    }
}

/// The time zone named `name` (an IANA name such as `Europe/Berlin`), from the system's files.
pub fn zone(name: Option<&str>) -> Option<Tzif> {
    Tzif::named(name.filter(|n| !n.is_empty()).unwrap_or("UTC"))
}

fn err(code: &str, msg: impl Into<String>) -> ServiceError {
    ServiceError::sender(code, msg)
}
fn validation(msg: impl Into<String>) -> ServiceError {
    err("ValidationException", msg)
}
pub(crate) fn internal(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::receiver("InternalServerException", e.to_string())
}
fn parse<T: serde::de::DeserializeOwned>(input: &[u8]) -> Result<T, ServiceError> {
    serde_json::from_slice(input).map_err(|e| validation(format!("The request is not valid: {e}")))
}
fn render<T: Serialize>(v: T) -> Result<Vec<u8>, ServiceError> {
    serde_json::to_vec(&v).map_err(internal)
}
fn schedule_missing(name: &str) -> ServiceError {
    err("ResourceNotFoundException", format!("Schedule {name} does not exist."))
}
fn group_missing(name: &str) -> ServiceError {
    err("ResourceNotFoundException", format!("Schedule group {name} does not exist."))
}
fn conflict() -> ServiceError {
    err("ConflictException", "The request conflicted with a concurrent change; try again.")
}

fn check_name(what: &str, v: &str) -> Result<(), ServiceError> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(validation(format!(
            "1 validation error detected: Value '{v}' at '{what}' failed to satisfy constraint: Member must satisfy regular expression pattern: [0-9a-zA-Z-_.]+"
        )))
    }
}

pub(crate) async fn commit(store: &dyn Store, txn: Txn) -> Result<bool, ServiceError> {
    for op in &txn.ops {
        let (Op::Put(k, _) | Op::Delete(k) | Op::DeletePrefix(k) | Op::Add(k, _)) = op;
        if !keys::owns(k) {
            return Err(internal(format!("Scheduler may not write {k}")));
        }
    }
    Ok(store.txn(txn).await.map_err(internal)?.succeeded)
}

/// The schedule input as Create and Update share it.
struct Spec {
    name: String,
    group: Option<String>,
    expression: String,
    timezone: Option<String>,
    start: Option<f64>,
    end: Option<f64>,
    description: Option<String>,
    state: Option<String>,
    kms: Option<String>,
    target: Target,
    flexible: FlexibleTimeWindow,
    after: Option<String>,
}

/// A `Spec` from CreateScheduleInput or UpdateScheduleInput (two generated shapes with the same
/// members).
macro_rules! spec_of {
    ($r:expr) => {{
        let r = $r;
        Spec {
            name: r.name,
            group: r.group_name,
            expression: r.schedule_expression,
            timezone: r.schedule_expression_timezone,
            start: r.start_date,
            end: r.end_date,
            description: r.description,
            state: r.state,
            kms: r.kms_key_arn,
            target: r.target,
            flexible: r.flexible_time_window,
            after: r.action_after_completion,
        }
    }};
}

fn validate(s: &Spec) -> Result<(), ServiceError> {
    check_name("name", &s.name)?;
    if let Some(g) = &s.group {
        check_name("groupName", g)?;
    }
    if Schedule::parse(&s.expression, true).is_err() {
        return Err(validation(format!("Invalid Schedule Expression {}.", s.expression)));
    }
    if zone(s.timezone.as_deref()).is_none() {
        return Err(validation(format!(
            "Invalid ScheduleExpressionTimezone {}.",
            s.timezone.as_deref().unwrap_or_default()
        )));
    }
    if let (Some(a), Some(b)) = (s.start, s.end)
        && b <= a
    {
        return Err(validation("The EndDate must be later than the StartDate."));
    }
    match (s.flexible.mode.as_str(), s.flexible.maximum_window_in_minutes) {
        ("OFF", None) => {}
        ("FLEXIBLE", Some(1..=1440)) => {}
        ("OFF", Some(_)) => {
            return Err(validation("MaximumWindowInMinutes must not be set when Mode is OFF."));
        }
        ("FLEXIBLE", _) => {
            return Err(validation(
                "MaximumWindowInMinutes must be between 1 and 1440 when Mode is FLEXIBLE.",
            ));
        }
        (m, _) => return Err(validation(format!("Invalid FlexibleTimeWindow Mode {m}."))),
    }
    if let Some(st) = &s.state
        && ScheduleState::parse(st).is_none()
    {
        return Err(validation(format!("Invalid State {st}.")));
    }
    if let Some(a) = &s.after
        && a != "NONE"
        && a != "DELETE"
    {
        return Err(validation(format!("Invalid ActionAfterCompletion {a}.")));
    }
    if let Some(p) = &s.target.retry_policy {
        if p.maximum_retry_attempts.is_some_and(|n| !(0..=185).contains(&n)) {
            return Err(validation("MaximumRetryAttempts must be between 0 and 185."));
        }
        if p.maximum_event_age_in_seconds.is_some_and(|n| !(60..=86_400).contains(&n)) {
            return Err(validation("MaximumEventAgeInSeconds must be between 60 and 86400."));
        }
    }
    if !s.target.arn.starts_with("arn:aws:ecs:")
        || !s.target.arn.contains(":cluster/")
        || s.target.ecs_parameters.is_none()
    {
        return Err(validation(format!(
            "Gantry's Scheduler invokes ECS cluster targets with EcsParameters only; {} is not one.",
            s.target.arn
        )));
    }
    Ok(())
}

/// An operation Gantry's Scheduler does not answer.
fn unknown_op(op: &str) -> ServiceError {
    err("UnknownOperationException", format!("Operation {op} is not supported by Gantry's Scheduler"))
}

/// The Scheduler service.
pub struct Scheduler {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").finish_non_exhaustive()
    }
}

impl Scheduler {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Scheduler { store, clock }
    }

    fn now_s(&self) -> f64 {
        self.clock.now().as_epoch_seconds()
    }

    /// Runs one operation in `scope`: its input as JSON (URI, query and body members together),
    /// its output as JSON.
    pub async fn call(&self, scope: &Scope, op: &str, input: &[u8]) -> Result<Vec<u8>, ServiceError> {
        match op {
            "TagResource" | "UntagResource" | "ListTagsForResource" => self.tags(scope, op, input).await,
            _ if op.contains("ScheduleGroup") => self.group_op(scope, op, input).await,
            _ if op.contains("Schedule") => self.schedule_op(scope, op, input).await,
            _ => Err(unknown_op(op)),
        }
    }

    /// The schedules: `CreateSchedule` ... `ListSchedules`.
    async fn schedule_op(&self, scope: &Scope, op: &str, input: &[u8]) -> Result<Vec<u8>, ServiceError> {
        match op {
            "CreateSchedule" => self.create_schedule(scope, input).await,
            "UpdateSchedule" => self.update_schedule(scope, input).await,
            "GetSchedule" => self.get_schedule(scope, input),
            "DeleteSchedule" => self.delete_schedule(scope, input).await,
            "ListSchedules" => self.list_schedules(scope, input),
            _ => Err(unknown_op(op)),
        }
    }

    /// The schedule groups: `CreateScheduleGroup` ... `ListScheduleGroups`.
    async fn group_op(&self, scope: &Scope, op: &str, input: &[u8]) -> Result<Vec<u8>, ServiceError> {
        match op {
            "CreateScheduleGroup" => self.create_group(scope, input).await,
            "GetScheduleGroup" => {
                let r: GetScheduleGroupInput = parse(input)?;
                render(self.group_or_default(scope, &r.name)?.group)
            }
            "DeleteScheduleGroup" => self.delete_group(scope, input).await,
            "ListScheduleGroups" => self.list_groups(scope, input),
            _ => Err(unknown_op(op)),
        }
    }

    /// `CreateSchedule`: the request as a `Spec`, put if absent.
    async fn create_schedule(&self, scope: &Scope, input: &[u8]) -> Result<Vec<u8>, ServiceError> {
        let r: CreateScheduleInput = parse(input)?;
        let spec = spec_of!(r);
        let arn = self.put(scope, spec, true).await?;
        render(CreateScheduleOutput { schedule_arn: arn })
    }

    /// `UpdateSchedule`: the request as a `Spec`, put over the existing schedule.
    async fn update_schedule(&self, scope: &Scope, input: &[u8]) -> Result<Vec<u8>, ServiceError> {
        let r: UpdateScheduleInput = parse(input)?;
        let spec = spec_of!(r);
        let arn = self.put(scope, spec, false).await?;
        render(UpdateScheduleOutput { schedule_arn: arn })
    }

    /// `GetSchedule`, in the default group unless named.
    fn get_schedule(&self, scope: &Scope, input: &[u8]) -> Result<Vec<u8>, ServiceError> {
        let r: GetScheduleInput = parse(input)?;
        let g = r.group_name.unwrap_or_else(|| DEFAULT_GROUP.into());
        let s = self.load_schedule(scope, &g, &r.name)?.ok_or_else(|| schedule_missing(&r.name))?;
        render(s.value.schedule)
    }

    /// `DeleteSchedule`, retried on a conflicting write.
    async fn delete_schedule(&self, scope: &Scope, input: &[u8]) -> Result<Vec<u8>, ServiceError> {
        let r: DeleteScheduleInput = parse(input)?;
        let g = r.group_name.unwrap_or_else(|| DEFAULT_GROUP.into());
        for _ in 0..ATTEMPTS {
            let s = self.load_schedule(scope, &g, &r.name)?.ok_or_else(|| schedule_missing(&r.name))?;
            if commit(self.store.as_ref(), Txn::new().delete_record(&Before::of(scope, &s))).await? {
                return Ok(b"{}".to_vec());
            }
        }
        Err(conflict())
    }

    /// `ListSchedules`: filtered by group, name prefix and state, then paged.
    fn list_schedules(&self, scope: &Scope, input: &[u8]) -> Result<Vec<u8>, ServiceError> {
        let r: ListSchedulesInput = parse(input)?;
        let all: Vec<Stored<ScheduleRecord>> =
            load_prefix(self.store.as_ref(), &keys::schedules(scope)).map_err(internal)?;
        let items: Vec<(String, ScheduleSummary)> = all
            .into_iter()
            .map(|s| s.value.schedule)
            .filter(|s| r.group_name.as_ref().is_none_or(|g| s.group_name.as_ref() == Some(g)))
            .filter(|s| {
                r.name_prefix
                    .as_ref()
                    .is_none_or(|p| s.name.as_deref().unwrap_or_default().starts_with(p.as_str()))
            })
            .filter(|s| r.state.as_ref().is_none_or(|st| s.state.as_ref() == Some(st)))
            .map(|s| {
                let key = format!(
                    "{}/{}",
                    s.group_name.clone().unwrap_or_default(),
                    s.name.clone().unwrap_or_default()
                );
                (
                    key,
                    ScheduleSummary {
                        arn: s.arn,
                        name: s.name,
                        group_name: s.group_name,
                        state: s.state,
                        creation_date: s.creation_date,
                        last_modification_date: s.last_modification_date,
                        target: s.target.map(|t| TargetSummary { arn: t.arn }),
                    },
                )
            })
            .collect();
        let (page, next) = page(items, r.next_token.as_deref(), r.max_results)?;
        render(ListSchedulesOutput { next_token: next, schedules: page })
    }

    /// `CreateScheduleGroup`: a new, active group (`default` always exists).
    async fn create_group(&self, scope: &Scope, input: &[u8]) -> Result<Vec<u8>, ServiceError> {
        let r: CreateScheduleGroupInput = parse(input)?;
        check_name("name", &r.name)?;
        if r.name == DEFAULT_GROUP || self.load_group(scope, &r.name)?.is_some() {
            return Err(err("ConflictException", format!("Schedule group {} already exists.", r.name)));
        }
        let now = self.now_s();
        let rec = GroupRecord {
            group: GetScheduleGroupOutput {
                arn: Some(group_arn(scope, &r.name)),
                name: Some(r.name.clone()),
                state: Some(GROUP_ACTIVE.into()),
                creation_date: Some(now),
                last_modification_date: Some(now),
            },
            tags: r.tags.unwrap_or_default(),
        };
        if !commit(self.store.as_ref(), Txn::new().put_record(scope, &Before::absent(), &rec)).await? {
            return Err(err("ConflictException", format!("Schedule group {} already exists.", r.name)));
        }
        render(CreateScheduleGroupOutput { schedule_group_arn: group_arn(scope, &r.name) })
    }

    /// `DeleteScheduleGroup`: the group and its schedules in one transaction.
    async fn delete_group(&self, scope: &Scope, input: &[u8]) -> Result<Vec<u8>, ServiceError> {
        let r: DeleteScheduleGroupInput = parse(input)?;
        if r.name == DEFAULT_GROUP {
            return Err(validation("The default schedule group cannot be deleted."));
        }
        for _ in 0..ATTEMPTS {
            let g = self.load_group(scope, &r.name)?.ok_or_else(|| group_missing(&r.name))?;
            // The group goes with its schedules.
            let schedules: Vec<Stored<ScheduleRecord>> =
                load_prefix(self.store.as_ref(), &format!("{}{}/", keys::schedules(scope), r.name))
                    .map_err(internal)?;
            let mut txn = Txn::new().delete_record(&Before::of(scope, &g));
            for s in &schedules {
                txn = txn.delete_record(&Before::of(scope, s));
            }
            if commit(self.store.as_ref(), txn).await? {
                return Ok(b"{}".to_vec());
            }
        }
        Err(conflict())
    }

    /// `ListScheduleGroups`: `default` and the stored groups, by name prefix, paged.
    fn list_groups(&self, scope: &Scope, input: &[u8]) -> Result<Vec<u8>, ServiceError> {
        let r: ListScheduleGroupsInput = parse(input)?;
        let mut groups = vec![self.group_or_default(scope, DEFAULT_GROUP)?];
        let stored: Vec<Stored<GroupRecord>> =
            load_prefix(self.store.as_ref(), &keys::groups(scope)).map_err(internal)?;
        groups.extend(stored.into_iter().map(|g| g.value));
        let items: Vec<(String, ScheduleGroupSummary)> = groups
            .into_iter()
            .map(|g| g.group)
            .filter(|g| {
                r.name_prefix
                    .as_ref()
                    .is_none_or(|p| g.name.as_deref().unwrap_or_default().starts_with(p.as_str()))
            })
            .map(|g| {
                (
                    g.name.clone().unwrap_or_default(),
                    ScheduleGroupSummary {
                        arn: g.arn,
                        name: g.name,
                        state: g.state,
                        creation_date: g.creation_date,
                        last_modification_date: g.last_modification_date,
                    },
                )
            })
            .collect();
        let (page, next) = page(items, r.next_token.as_deref(), r.max_results)?;
        render(ListScheduleGroupsOutput { next_token: next, schedule_groups: page })
    }

    async fn tags(&self, scope: &Scope, op: &str, input: &[u8]) -> Result<Vec<u8>, ServiceError> {
        let v: serde_json::Value = parse(input)?;
        let arn = v.get("ResourceArn").and_then(|a| a.as_str()).unwrap_or_default().to_string();
        let name = arn
            .strip_prefix(&format!("arn:aws:scheduler:{}:{}:schedule-group/", scope.region, scope.account))
            .map(str::to_string)
            .ok_or_else(|| validation(format!("Invalid ResourceArn {arn}.")))?;
        if op == "ListTagsForResource" {
            let g = self.load_group(scope, &name)?.ok_or_else(|| group_missing(&name))?;
            return render(ListTagsForResourceOutput { tags: Some(g.value.tags) });
        }
        for _ in 0..ATTEMPTS {
            let mut g = self.load_group(scope, &name)?.ok_or_else(|| group_missing(&name))?;
            let before = Before::of(scope, &g);
            if op == "TagResource" {
                let r: TagResourceInput = parse(input)?;
                for t in r.tags {
                    match g.value.tags.iter_mut().find(|x| x.key == t.key) {
                        Some(x) => x.value = t.value,
                        None => g.value.tags.push(t),
                    }
                }
            } else {
                let r: UntagResourceInput = parse(input)?;
                g.value.tags.retain(|t| !r.tag_keys.contains(&t.key));
            }
            if commit(self.store.as_ref(), Txn::new().put_record(scope, &before, &g.value)).await? {
                return Ok(b"{}".to_vec());
            }
        }
        Err(conflict())
    }

    fn load_schedule(
        &self,
        scope: &Scope,
        group: &str,
        name: &str,
    ) -> Result<Option<Stored<ScheduleRecord>>, ServiceError> {
        load(self.store.as_ref(), &keys::schedule(scope, group, name)).map_err(internal)
    }

    fn load_group(&self, scope: &Scope, name: &str) -> Result<Option<Stored<GroupRecord>>, ServiceError> {
        load(self.store.as_ref(), &keys::group(scope, name)).map_err(internal)
    }

    fn group_or_default(&self, scope: &Scope, name: &str) -> Result<GroupRecord, ServiceError> {
        if name == DEFAULT_GROUP {
            return Ok(GroupRecord {
                group: GetScheduleGroupOutput {
                    arn: Some(group_arn(scope, DEFAULT_GROUP)),
                    name: Some(DEFAULT_GROUP.into()),
                    state: Some(GROUP_ACTIVE.into()),
                    creation_date: Some(0.0),
                    last_modification_date: Some(0.0),
                },
                tags: Vec::new(),
            });
        }
        Ok(self.load_group(scope, name)?.ok_or_else(|| group_missing(name))?.value)
    }

    async fn put(&self, scope: &Scope, s: Spec, create: bool) -> Result<String, ServiceError> {
        validate(&s)?;
        let group = s.group.clone().unwrap_or_else(|| DEFAULT_GROUP.into());
        if group != DEFAULT_GROUP && self.load_group(scope, &group)?.is_none() {
            return Err(group_missing(&group));
        }
        let arn = format!("arn:aws:scheduler:{}:{}:schedule/{group}/{}", scope.region, scope.account, s.name);
        let now = self.clock.now();
        let mut target = s.target.clone();
        if let Some(p) = target.ecs_parameters.as_mut()
            && p.task_count.is_none()
        {
            p.task_count = Some(1);
        }
        if target.retry_policy.is_none() {
            target.retry_policy = Some(RetryPolicy {
                maximum_event_age_in_seconds: Some(86_400),
                maximum_retry_attempts: Some(185),
            });
        }
        for _ in 0..ATTEMPTS {
            let old = self.load_schedule(scope, &group, &s.name)?;
            let before = match (&old, create) {
                (Some(_), true) => {
                    return Err(err("ConflictException", format!("Schedule {} already exists.", s.name)));
                }
                (None, false) => return Err(schedule_missing(&s.name)),
                (Some(o), false) => Before::of(scope, o),
                (None, true) => Before::absent(),
            };
            let created =
                old.as_ref().and_then(|o| o.value.schedule.creation_date).unwrap_or(now.as_epoch_seconds());
            let rec = ScheduleRecord {
                schedule: GetScheduleOutput {
                    arn: Some(arn.clone()),
                    group_name: Some(group.clone()),
                    name: Some(s.name.clone()),
                    schedule_expression: Some(s.expression.clone()),
                    start_date: s.start,
                    end_date: s.end,
                    description: s.description.clone(),
                    schedule_expression_timezone: Some(s.timezone.clone().unwrap_or_else(|| "UTC".into())),
                    state: Some(s.state.clone().unwrap_or_else(|| ScheduleState::Enabled.as_str().into())),
                    creation_date: Some(created),
                    last_modification_date: Some(now.as_epoch_seconds()),
                    kms_key_arn: s.kms.clone(),
                    target: Some(target.clone()),
                    flexible_time_window: Some(s.flexible.clone()),
                    action_after_completion: Some(s.after.clone().unwrap_or_else(|| "NONE".into())),
                },
                scheduled_at_ms: now.0,
                nominal_ms: None,
                next_fire_ms: None,
                attempts: 0,
            };
            if commit(self.store.as_ref(), Txn::new().put_record(scope, &before, &rec)).await? {
                return Ok(arn);
            }
        }
        Err(conflict())
    }
}

fn group_arn(scope: &Scope, name: &str) -> String {
    format!("arn:aws:scheduler:{}:{}:schedule-group/{name}", scope.region, scope.account)
}

fn page<T>(
    mut items: Vec<(String, T)>,
    token: Option<&str>,
    max: Option<i32>,
) -> Result<(Vec<T>, Option<String>), ServiceError> {
    let max = match max {
        None => 100,
        Some(n @ 1..=100) => n as usize,
        Some(n) => return Err(validation(format!("MaxResults {n} must be between 1 and 100."))),
    };
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let start = match token.filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => items.iter().position(|(k, _)| k.as_str() > t).unwrap_or(items.len()),
    };
    let rest: Vec<(String, T)> = items.into_iter().skip(start).collect();
    let next = (rest.len() > max).then(|| rest[max - 1].0.clone());
    Ok((rest.into_iter().take(max).map(|(_, t)| t).collect(), next))
}

#[cfg(test)]
mod tests;
