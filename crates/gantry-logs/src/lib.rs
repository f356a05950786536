//! Amazon CloudWatch Logs (JSON 1.1, `Logs_20140328`): log groups, log streams, and their events.
//!
//! Operations take their input and return their output in the JSON form of the generated shapes
//! (`gantry_model::logs`); this crate knows no HTTP and depends on no other service. Events live
//! in a store of their own ([`segments`]: append-only segment files per stream, indexed by time),
//! never in the key-value store. Group and stream metadata (names, creation times, retention,
//! tags) is small and lives beside them, one `groups.json` per account and region, rewritten
//! atomically (written, fsynced, renamed) on every change; the streams' event times and sizes are
//! derived from their segments' indexes. Time comes from the injected [`Clock`], so retention and
//! PutLogEvents' time windows are tested on a fake clock.

pub mod emf;
pub mod filter;
pub mod insights;
pub mod segments;

use filter::Pattern;
use gantry_core::{Clock, IdGen, SeededIds, ServiceError};
use gantry_ports::{MetricSink, NoMetrics, Principal};
use segments::{Event, StreamLog, dir_name};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Events older than this are rejected by PutLogEvents (14 days).
pub const MAX_AGE_MS: i64 = 14 * 86_400_000;
/// Events further in the future than this are rejected (2 hours).
pub const MAX_FUTURE_MS: i64 = 2 * 3_600_000;
/// The largest batch: the messages' UTF-8 bytes plus 26 bytes per event.
pub const MAX_BATCH_BYTES: usize = 1_048_576;
pub const EVENT_OVERHEAD: usize = 26;
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// A batch may not span more than this (24 hours).
pub const MAX_BATCH_SPAN_MS: i64 = 86_400_000;
/// The retention periods CloudWatch Logs accepts, in days.
pub const RETENTION_DAYS: &[i32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
];
/// GetLogEvents and FilterLogEvents answer at most this many bytes (messages plus overhead).
const MAX_RESPONSE_BYTES: usize = 1_048_576;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct GroupMeta {
    name: String,
    creation_time: i64,
    #[serde(default)]
    retention_in_days: Option<i32>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    kms_key_id: Option<String>,
    #[serde(default)]
    class: Option<String>,
    #[serde(default)]
    streams: BTreeMap<String, i64>,
}

/// A group's streams by name.
type Streams = Vec<(String, Arc<Mutex<StreamLog>>)>;

struct Group {
    meta: GroupMeta,
    streams: BTreeMap<String, Arc<Mutex<StreamLog>>>,
}

/// One account and region's groups.
#[derive(Default)]
struct Region {
    groups: BTreeMap<String, Group>,
}

/// The CloudWatch Logs service.
pub struct Logs {
    root: PathBuf,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGen>,
    regions: Mutex<BTreeMap<(String, String), Region>>,
    queries: Arc<Mutex<BTreeMap<String, QueryRun>>>,
    /// Where metrics extracted from events in embedded metric format go (CloudWatch).
    metrics: Arc<dyn MetricSink>,
}

/// Logs Insights queries running at once per account, as CloudWatch limits them.
pub const MAX_CONCURRENT_QUERIES: usize = 30;
/// Finished queries are kept this long (CloudWatch keeps results for 7 days).
pub const QUERY_KEEP_MS: i64 = 7 * 86_400_000;
/// At most this many queries are remembered per server (the oldest finished go first).
const MAX_KEPT_QUERIES: usize = 10_000;

/// A Logs Insights query and what it found so far.
#[derive(Debug)]
struct QueryRun {
    account: String,
    region: String,
    created: i64,
    status: &'static str,
    rows: Vec<Vec<(String, String)>>,
    matched: u64,
    scanned: u64,
    bytes: u64,
    groups: usize,
    cancel: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for Logs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logs").field("root", &self.root).finish_non_exhaustive()
    }
}

/// The log groups a `StartQuery` names: exactly one of its three members, 1 to 50 groups,
/// ARNs read as names.
fn queried_groups(req: &gantry_model::logs::StartQueryRequest) -> Result<Vec<String>, ServiceError> {
    let mut names: Vec<String> = Vec::new();
    let given =
        [req.log_group_name.is_some(), req.log_group_names.is_some(), req.log_group_identifiers.is_some()];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(invalid(
            "Exactly one of logGroupName, logGroupNames or logGroupIdentifiers must be specified",
        ));
    }
    names.extend(req.log_group_name.clone());
    names.extend(req.log_group_names.clone().unwrap_or_default());
    for id in req.log_group_identifiers.clone().unwrap_or_default() {
        // An ARN (`arn:aws:logs:REGION:ACCOUNT:log-group:NAME[:*]`) or a name.
        let name = match id.strip_prefix("arn:") {
            Some(_) => {
                let rest = id.splitn(7, ':').nth(6).unwrap_or("");
                rest.strip_suffix(":*").unwrap_or(rest).to_string()
            }
            None => id,
        };
        names.push(name);
    }
    if names.is_empty() || names.len() > 50 {
        return Err(invalid(format!("Between 1 and 50 log groups may be queried; got {}", names.len())));
    }
    Ok(names)
}

/// The time range, the limit (0: none) and the query string's length.
fn check_query_bounds(req: &gantry_model::logs::StartQueryRequest) -> Result<Option<usize>, ServiceError> {
    if req.end_time < req.start_time {
        return Err(invalid(format!(
            "endTime ({}) must not be before startTime ({})",
            req.end_time, req.start_time
        )));
    }
    let limit = match req.limit {
        0 => None,
        l @ 1..=10_000 => Some(l as usize),
        l => {
            return Err(invalid(format!(
                "1 validation error detected: Value '{l}' at 'limit' failed to satisfy constraint: Member must have value between 1 and 10000"
            )));
        }
    };
    if req.query_string.is_empty() || req.query_string.len() > 10_000 {
        return Err(invalid("queryString must be between 1 and 10000 characters"));
    }
    Ok(limit)
}

/// The query, or `MalformedQueryException` with where it fails to compile.
fn parse_query(text: &str) -> Result<insights::Query, ServiceError> {
    let query = insights::Query::parse(text).map_err(|e| {
        let mut err = ServiceError::sender("MalformedQueryException", e.message.clone());
        err.fields.insert(
            "queryCompileError".into(),
            json!({"location": {"startCharOffset": e.start, "endCharOffset": e.end}, "message": e.message}),
        );
        err
    })?;
    Ok(query)
}

/// A scheduled Logs Insights query: what its thread reads and where it reports.
struct QueryJob {
    queries: Arc<Mutex<BTreeMap<String, QueryRun>>>,
    id: String,
    account: String,
    /// The time range in milliseconds, inclusive.
    start: i64,
    end: i64,
    limit: usize,
    query: insights::Query,
    groups: Vec<(String, Streams)>,
    cancel: Arc<std::sync::atomic::AtomicBool>,
}

impl QueryJob {
    /// Reads the streams' events in the range and runs the query over them, reporting its
    /// progress and result in the query's record; stops when cancelled.
    fn run(self) {
        let QueryJob { queries, id: qid, account, start, end, limit, query, groups, cancel } = self;
        let set = |f: &mut dyn FnMut(&mut QueryRun)| {
            if let Some(q) = lock(&queries).get_mut(&qid) {
                f(q)
            }
        };
        set(&mut |q| q.status = "Running");
        let stop = || cancel.load(std::sync::atomic::Ordering::Relaxed);
        let mut sources = Vec::new();
        let mut records = Vec::new();
        let (mut scanned, mut bytes) = (0u64, 0u64);
        for (group, streams) in groups {
            for (stream, log) in streams {
                if stop() {
                    return;
                }
                let events = match lock(&log).read(start, end) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!(query = %qid, error = %e, "a Logs Insights query could not read a stream");
                        set(&mut |q| q.status = "Failed");
                        return;
                    }
                };
                sources.push(insights::Source { log: format!("{account}:{group}"), stream });
                for event in events {
                    scanned += 1;
                    bytes += event.message.len() as u64;
                    records.push(insights::Record { source: sources.len() - 1, event });
                }
            }
        }
        set(&mut |q| {
            q.scanned = scanned;
            q.bytes = bytes;
        });
        match query.run(&records, &sources, limit, &stop) {
            Some(out) => {
                let mut out = Some(out);
                set(&mut |q| {
                    if q.status == "Running" {
                        let o = out.take();
                        if let Some(o) = o {
                            q.matched = o.matched;
                            q.rows = o.rows;
                        }
                        q.status = "Complete";
                    }
                });
            }
            None => set(&mut |q| q.status = "Cancelled"),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn internal(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::receiver("ServiceUnavailableException", format!("The log store failed: {e}"))
}

fn invalid(msg: impl Into<String>) -> ServiceError {
    ServiceError::sender("InvalidParameterException", msg)
}

fn no_group() -> ServiceError {
    ServiceError::sender("ResourceNotFoundException", "The specified log group does not exist.")
}

fn no_stream() -> ServiceError {
    ServiceError::sender("ResourceNotFoundException", "The specified log stream does not exist.")
}

fn parse<T: serde::de::DeserializeOwned>(input: &[u8]) -> Result<T, ServiceError> {
    serde_json::from_slice(input).map_err(|e| invalid(format!("The request is not valid: {e}")))
}

fn render(v: &Value) -> Result<Vec<u8>, ServiceError> {
    serde_json::to_vec(v).map_err(internal)
}

/// Checks a log group name as CloudWatch does (1-512 of `[.\-_/#A-Za-z0-9]`).
pub fn validate_group_name(name: &str, field: &str) -> Result<(), ServiceError> {
    let ok = !name.is_empty()
        && name.len() <= 512
        && name.chars().all(|c| c.is_ascii_alphanumeric() || ".-_/#".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "1 validation error detected: Value '{name}' at '{field}' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_/#A-Za-z0-9]+"
        )))
    }
}

/// Checks a log stream name (1-512 characters, no `:` or `*`).
pub fn validate_stream_name(name: &str) -> Result<(), ServiceError> {
    if name.is_empty() || name.len() > 512 || name.contains([':', '*']) {
        return Err(invalid(format!(
            "1 validation error detected: Value '{name}' at 'logStreamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [^:*]*"
        )));
    }
    Ok(())
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().ok_or_else(|| std::io::Error::other("no parent"))?;
    fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

/// A read position: the sort key of an event (timestamp, then a tiebreak), rendered as AWS-like
/// digit strings.
fn token_key(ts: i64, a: u64, b: u64) -> String {
    format!("{:020}{:020}{:020}", (ts as u64) ^ (1 << 63), a, b)
}

fn parse_key(s: &str) -> Option<(i64, u64, u64)> {
    if s.len() != 60 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ts = s[0..20].parse::<u64>().ok()? ^ (1 << 63);
    Some((ts as i64, s[20..40].parse().ok()?, s[40..60].parse().ok()?))
}

/// A stable number for a stream name (FilterLogEvents' tiebreak and event IDs).
fn name_hash(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    h >> 1
}

/// A page of names: where a `nextToken` says to start, and the `nextToken` after `limit`.
fn page<'a, T>(
    items: Vec<(String, T)>,
    token: Option<&str>,
    limit: usize,
) -> Result<(Vec<T>, Option<String>), ServiceError>
where
    T: 'a,
{
    let start = match token {
        None => 0,
        Some(t) => {
            t.parse::<usize>().map_err(|_| invalid(format!("The specified nextToken is invalid: {t}")))?
        }
    };
    let total = items.len();
    let out: Vec<T> = items.into_iter().skip(start).take(limit).map(|(_, v)| v).collect();
    let next = (start + out.len() < total).then(|| (start + out.len()).to_string());
    Ok((out, next))
}

impl Logs {
    /// Opens the store under `root` (`DATA_DIR/logs`), loading every group's metadata and
    /// indexing its streams' segments.
    pub fn open(root: PathBuf, clock: Arc<dyn Clock>) -> std::io::Result<Logs> {
        let mut regions = BTreeMap::new();
        if root.exists() {
            for acct in fs::read_dir(&root)? {
                let acct = acct?.path();
                if !acct.is_dir() {
                    continue;
                }
                for reg in fs::read_dir(&acct)? {
                    let reg = reg?.path();
                    let meta = reg.join("groups.json");
                    if !meta.exists() {
                        continue;
                    }
                    let metas: Vec<GroupMeta> = serde_json::from_slice(&fs::read(&meta)?)
                        .map_err(|e| std::io::Error::other(format!("{}: {e}", meta.display())))?;
                    let mut region = Region::default();
                    for m in metas {
                        let mut streams = BTreeMap::new();
                        for s in m.streams.keys() {
                            let dir = reg.join(dir_name(&m.name)).join(dir_name(s));
                            streams.insert(s.clone(), Arc::new(Mutex::new(StreamLog::open(dir)?)));
                        }
                        region.groups.insert(m.name.clone(), Group { meta: m, streams });
                    }
                    let name =
                        |p: &Path| p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
                    regions.insert((name(&acct), name(&reg)), region);
                }
            }
        }
        Ok(Logs {
            root,
            clock,
            ids: Arc::new(SeededIds::from_entropy()),
            regions: Mutex::new(regions),
            queries: Default::default(),
            metrics: Arc::new(NoMetrics),
        })
    }

    /// Metrics extracted from events in embedded metric format go to `sink` (the binary passes
    /// CloudWatch's); without one they are dropped.
    pub fn with_metrics(mut self, sink: Arc<dyn MetricSink>) -> Logs {
        self.metrics = sink;
        self
    }

    /// Query IDs come from `ids` (the binary passes its own; tests a seeded one).
    pub fn with_ids(mut self, ids: Arc<dyn IdGen>) -> Logs {
        self.ids = ids;
        self
    }

    fn region_dir(&self, account: &str, region: &str) -> PathBuf {
        self.root.join(account).join(region)
    }

    fn save(&self, account: &str, region: &str, r: &Region) -> Result<(), ServiceError> {
        let metas: Vec<&GroupMeta> = r.groups.values().map(|g| &g.meta).collect();
        let data = serde_json::to_vec(&metas).map_err(internal)?;
        write_atomic(&self.region_dir(account, region).join("groups.json"), &data).map_err(internal)
    }

    fn now(&self) -> i64 {
        self.clock.now().0
    }

    /// Runs one operation: its input as JSON, its output as JSON.
    pub fn call(
        &self,
        caller: &Principal,
        region: &str,
        op: &str,
        input: &[u8],
    ) -> Result<Vec<u8>, ServiceError> {
        let acct = caller.account.as_str();
        let out = match op {
            "CreateLogGroup" => self.create_log_group(acct, region, parse(input)?),
            "DeleteLogGroup" => self.delete_log_group(acct, region, parse(input)?),
            "DescribeLogGroups" => self.describe_log_groups(acct, region, parse(input)?),
            "PutRetentionPolicy" => self.put_retention(acct, region, parse(input)?),
            "DeleteRetentionPolicy" => self.delete_retention(acct, region, parse(input)?),
            "TagResource" | "UntagResource" | "ListTagsForResource" => {
                self.tags_by_arn(acct, region, op, serde_json::from_slice(input).map_err(internal)?)
            }
            "TagLogGroup" | "UntagLogGroup" | "ListTagsLogGroup" => {
                self.tags_by_name(acct, region, op, serde_json::from_slice(input).map_err(internal)?)
            }
            "CreateLogStream" => self.create_log_stream(acct, region, parse(input)?),
            "DeleteLogStream" => self.delete_log_stream(acct, region, parse(input)?),
            "DescribeLogStreams" => self.describe_log_streams(acct, region, parse(input)?),
            "PutLogEvents" => self.put_log_events(acct, region, parse(input)?),
            "GetLogEvents" => self.get_log_events(acct, region, parse(input)?),
            "FilterLogEvents" => self.filter_log_events(acct, region, parse(input)?),
            "StartQuery" => self.start_query(acct, region, parse(input)?),
            "GetQueryResults" => self.get_query_results(acct, region, parse(input)?),
            "StopQuery" => self.stop_query(acct, region, parse(input)?),
            _ => Err(ServiceError::sender("UnknownOperationException", format!("Unknown operation {op}"))),
        }?;
        render(&out)
    }

    fn group_arn(account: &str, region: &str, name: &str) -> String {
        format!("arn:aws:logs:{region}:{account}:log-group:{name}")
    }

    pub fn create_log_group(
        &self,
        acct: &str,
        region: &str,
        req: gantry_model::logs::CreateLogGroupRequest,
    ) -> Result<Value, ServiceError> {
        validate_group_name(&req.log_group_name, "logGroupName")?;
        if let Some(c) = &req.log_group_class
            && !["STANDARD", "INFREQUENT_ACCESS", "DELIVERY"].contains(&c.as_str())
        {
            return Err(invalid(format!(
                "1 validation error detected: Value '{c}' at 'logGroupClass' failed to satisfy constraint: Member must satisfy enum value set: [STANDARD, DELIVERY, INFREQUENT_ACCESS]"
            )));
        }
        let tags = req.tags.unwrap_or_default();
        validate_tags(&tags)?;
        let mut regions = lock(&self.regions);
        let r = regions.entry((acct.to_string(), region.to_string())).or_default();
        if r.groups.contains_key(&req.log_group_name) {
            return Err(ServiceError::sender(
                "ResourceAlreadyExistsException",
                "The specified log group already exists",
            ));
        }
        let meta = GroupMeta {
            name: req.log_group_name.clone(),
            creation_time: self.now(),
            retention_in_days: None,
            tags,
            kms_key_id: req.kms_key_id,
            class: req.log_group_class,
            streams: BTreeMap::new(),
        };
        r.groups.insert(req.log_group_name.clone(), Group { meta, streams: BTreeMap::new() });
        if let Err(e) = self.save(acct, region, r) {
            r.groups.remove(&req.log_group_name);
            return Err(e);
        }
        Ok(json!({}))
    }

    pub fn delete_log_group(
        &self,
        acct: &str,
        region: &str,
        req: gantry_model::logs::DeleteLogGroupRequest,
    ) -> Result<Value, ServiceError> {
        let mut regions = lock(&self.regions);
        let r = regions.entry((acct.to_string(), region.to_string())).or_default();
        let g = r.groups.remove(&req.log_group_name).ok_or_else(no_group)?;
        self.save(acct, region, r)?;
        drop(regions);
        for (_, s) in g.streams {
            if let Ok(m) = Arc::try_unwrap(s).map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner())) {
                m.destroy().map_err(internal)?;
            }
        }
        let _ = fs::remove_dir_all(self.region_dir(acct, region).join(dir_name(&req.log_group_name)));
        Ok(json!({}))
    }

    fn group_json(&self, acct: &str, region: &str, g: &Group) -> Value {
        let arn = Self::group_arn(acct, region, &g.meta.name);
        let stored: u64 = g.streams.values().map(|s| lock(s).stored_bytes()).sum();
        let mut v = json!({
            "logGroupName": g.meta.name,
            "creationTime": g.meta.creation_time,
            "metricFilterCount": 0,
            "arn": format!("{arn}:*"),
            "logGroupArn": arn,
            "storedBytes": stored,
            "logGroupClass": g.meta.class.as_deref().unwrap_or("STANDARD"),
            "deletionProtectionEnabled": false,
        });
        if let Some(d) = g.meta.retention_in_days {
            v["retentionInDays"] = json!(d);
        }
        if let Some(k) = &g.meta.kms_key_id {
            v["kmsKeyId"] = json!(k);
        }
        v
    }

    pub fn describe_log_groups(
        &self,
        acct: &str,
        region: &str,
        req: gantry_model::logs::DescribeLogGroupsRequest,
    ) -> Result<Value, ServiceError> {
        if req.log_group_name_prefix.is_some() && req.log_group_name_pattern.is_some() {
            return Err(invalid(
                "LogGroup name prefix and LogGroup name pattern are mutually exclusive parameters.",
            ));
        }
        let limit = check_limit(req.limit, 50)?;
        let regions = lock(&self.regions);
        let empty = Region::default();
        let r = regions.get(&(acct.to_string(), region.to_string())).unwrap_or(&empty);
        let pattern = req.log_group_name_pattern.as_deref().map(str::to_lowercase);
        let items: Vec<(String, Value)> = r
            .groups
            .values()
            .filter(|g| req.log_group_name_prefix.as_deref().is_none_or(|p| g.meta.name.starts_with(p)))
            .filter(|g| pattern.as_deref().is_none_or(|p| g.meta.name.to_lowercase().contains(p)))
            .filter(|g| {
                req.log_group_class
                    .as_deref()
                    .is_none_or(|c| g.meta.class.as_deref().unwrap_or("STANDARD") == c)
            })
            .filter(|g| {
                req.log_group_identifiers.as_ref().is_none_or(|ids| {
                    ids.iter().any(|i| i == &g.meta.name || i == &Self::group_arn(acct, region, &g.meta.name))
                })
            })
            .map(|g| (g.meta.name.clone(), self.group_json(acct, region, g)))
            .collect();
        let (groups, next) = page(items, req.next_token.as_deref(), limit)?;
        let mut out = json!({ "logGroups": groups });
        if let Some(n) = next {
            out["nextToken"] = json!(n);
        }
        Ok(out)
    }

    pub fn put_retention(
        &self,
        acct: &str,
        region: &str,
        req: gantry_model::logs::PutRetentionPolicyRequest,
    ) -> Result<Value, ServiceError> {
        if !RETENTION_DAYS.contains(&req.retention_in_days) {
            let set: Vec<String> = RETENTION_DAYS.iter().map(|d| d.to_string()).collect();
            return Err(invalid(format!(
                "1 validation error detected: Value '{}' at 'retentionInDays' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
                req.retention_in_days,
                set.join(", ")
            )));
        }
        self.update_group(acct, region, &req.log_group_name, |m| {
            m.retention_in_days = Some(req.retention_in_days)
        })?;
        self.enforce_retention();
        Ok(json!({}))
    }

    pub fn delete_retention(
        &self,
        acct: &str,
        region: &str,
        req: gantry_model::logs::DeleteRetentionPolicyRequest,
    ) -> Result<Value, ServiceError> {
        self.update_group(acct, region, &req.log_group_name, |m| m.retention_in_days = None)?;
        Ok(json!({}))
    }

    fn update_group(
        &self,
        acct: &str,
        region: &str,
        name: &str,
        f: impl FnOnce(&mut GroupMeta),
    ) -> Result<(), ServiceError> {
        let mut regions = lock(&self.regions);
        let r = regions.get_mut(&(acct.to_string(), region.to_string())).ok_or_else(no_group)?;
        let g = r.groups.get_mut(name).ok_or_else(no_group)?;
        let before = g.meta.clone();
        f(&mut g.meta);
        if let Err(e) = self.save(acct, region, r) {
            if let Some(g) = r.groups.get_mut(name) {
                g.meta = before;
            }
            return Err(e);
        }
        Ok(())
    }

    fn tags_by_arn(&self, acct: &str, region: &str, op: &str, req: Value) -> Result<Value, ServiceError> {
        let arn = req["resourceArn"].as_str().unwrap_or_default();
        let prefix = format!("arn:aws:logs:{region}:{acct}:log-group:");
        let name = arn
            .strip_prefix(&prefix)
            .map(|n| n.strip_suffix(":*").unwrap_or(n))
            .filter(|n| !n.is_empty() && !n.contains(':'))
            .ok_or_else(|| {
                if arn.starts_with("arn:") {
                    ServiceError::sender(
                        "ResourceNotFoundException",
                        format!("The specified resource does not exist: {arn}"),
                    )
                } else {
                    invalid(format!("Invalid resource ARN: {arn}"))
                }
            })?
            .to_string();
        self.tag_op(acct, region, &name, op, &req, "tags", "tagKeys")
    }

    fn tags_by_name(&self, acct: &str, region: &str, op: &str, req: Value) -> Result<Value, ServiceError> {
        let name = req["logGroupName"].as_str().unwrap_or_default().to_string();
        self.tag_op(acct, region, &name, op, &req, "tags", "tags")
    }

    #[allow(clippy::too_many_arguments)]
    fn tag_op(
        &self,
        acct: &str,
        region: &str,
        name: &str,
        op: &str,
        req: &Value,
        add_field: &str,
        remove_field: &str,
    ) -> Result<Value, ServiceError> {
        if op.starts_with("List") {
            let regions = lock(&self.regions);
            let g = regions
                .get(&(acct.to_string(), region.to_string()))
                .and_then(|r| r.groups.get(name))
                .ok_or_else(no_group)?;
            return Ok(json!({ "tags": g.meta.tags }));
        }
        if op.starts_with("Tag") {
            let tags: BTreeMap<String, String> =
                serde_json::from_value(req[add_field].clone()).map_err(|e| invalid(format!("tags: {e}")))?;
            validate_tags(&tags)?;
            let mut over = false;
            self.update_group(acct, region, name, |m| {
                let mut merged = m.tags.clone();
                merged.extend(tags);
                if merged.len() > 50 {
                    over = true;
                } else {
                    m.tags = merged;
                }
            })?;
            if over {
                return Err(invalid("A log group can have at most 50 tags."));
            }
        } else {
            let keys: Vec<String> = serde_json::from_value(req[remove_field].clone())
                .map_err(|e| invalid(format!("tagKeys: {e}")))?;
            self.update_group(acct, region, name, |m| {
                for k in &keys {
                    m.tags.remove(k);
                }
            })?;
        }
        Ok(json!({}))
    }

    pub fn create_log_stream(
        &self,
        acct: &str,
        region: &str,
        req: gantry_model::logs::CreateLogStreamRequest,
    ) -> Result<Value, ServiceError> {
        validate_stream_name(&req.log_stream_name)?;
        let mut regions = lock(&self.regions);
        let r = regions.get_mut(&(acct.to_string(), region.to_string())).ok_or_else(no_group)?;
        let g = r.groups.get_mut(&req.log_group_name).ok_or_else(no_group)?;
        if g.streams.contains_key(&req.log_stream_name) {
            return Err(ServiceError::sender(
                "ResourceAlreadyExistsException",
                "The specified log stream already exists",
            ));
        }
        let dir = self
            .region_dir(acct, region)
            .join(dir_name(&req.log_group_name))
            .join(dir_name(&req.log_stream_name));
        // A stream deleted earlier left nothing; a fresh directory starts empty.
        let _ = fs::remove_dir_all(&dir);
        let log = StreamLog::open(dir).map_err(internal)?;
        g.streams.insert(req.log_stream_name.clone(), Arc::new(Mutex::new(log)));
        g.meta.streams.insert(req.log_stream_name.clone(), self.now());
        if let Err(e) = self.save(acct, region, r) {
            if let Some(g) = r.groups.get_mut(&req.log_group_name) {
                g.streams.remove(&req.log_stream_name);
                g.meta.streams.remove(&req.log_stream_name);
            }
            return Err(e);
        }
        Ok(json!({}))
    }

    pub fn delete_log_stream(
        &self,
        acct: &str,
        region: &str,
        req: gantry_model::logs::DeleteLogStreamRequest,
    ) -> Result<Value, ServiceError> {
        let mut regions = lock(&self.regions);
        let r = regions.get_mut(&(acct.to_string(), region.to_string())).ok_or_else(no_group)?;
        let g = r.groups.get_mut(&req.log_group_name).ok_or_else(no_group)?;
        let s = g.streams.remove(&req.log_stream_name).ok_or_else(no_stream)?;
        g.meta.streams.remove(&req.log_stream_name);
        self.save(acct, region, r)?;
        drop(regions);
        let dir = self
            .region_dir(acct, region)
            .join(dir_name(&req.log_group_name))
            .join(dir_name(&req.log_stream_name));
        drop(s);
        let _ = fs::remove_dir_all(dir);
        Ok(json!({}))
    }

    /// The group's streams, or ResourceNotFoundException; with its retention.
    fn streams_of(&self, acct: &str, region: &str, name: &str) -> Result<(GroupMeta, Streams), ServiceError> {
        let regions = lock(&self.regions);
        let g = regions
            .get(&(acct.to_string(), region.to_string()))
            .and_then(|r| r.groups.get(name))
            .ok_or_else(no_group)?;
        Ok((g.meta.clone(), g.streams.iter().map(|(k, v)| (k.clone(), v.clone())).collect()))
    }

    pub fn describe_log_streams(
        &self,
        acct: &str,
        region: &str,
        req: gantry_model::logs::DescribeLogStreamsRequest,
    ) -> Result<Value, ServiceError> {
        let group = group_name(req.log_group_name.as_deref(), req.log_group_identifier.as_deref())?;
        let limit = check_limit(req.limit, 50)?;
        let by_time = match req.order_by.as_deref() {
            None | Some("LogStreamName") => false,
            Some("LastEventTime") => true,
            Some(o) => {
                return Err(invalid(format!(
                    "1 validation error detected: Value '{o}' at 'orderBy' failed to satisfy constraint: Member must satisfy enum value set: [LogStreamName, LastEventTime]"
                )));
            }
        };
        if by_time && req.log_stream_name_prefix.is_some() {
            return Err(invalid("Cannot order by LastEventTime with a logStreamNamePrefix."));
        }
        let (meta, streams) = self.streams_of(acct, region, &group)?;
        let arn = Self::group_arn(acct, region, &group);
        let mut items: Vec<(String, i64, Value)> = streams
            .into_iter()
            .filter(|(n, _)| req.log_stream_name_prefix.as_deref().is_none_or(|p| n.starts_with(p)))
            .map(|(n, log)| {
                let log = lock(&log);
                let mut v = json!({
                    "logStreamName": n,
                    "creationTime": meta.streams.get(&n).copied().unwrap_or(meta.creation_time),
                    "arn": format!("{arn}:log-stream:{n}"),
                    "storedBytes": 0,
                });
                let mut last = 0;
                if let Some((first, l, ingested)) = log.times() {
                    v["firstEventTimestamp"] = json!(first);
                    v["lastEventTimestamp"] = json!(l);
                    v["lastIngestionTime"] = json!(ingested);
                    last = l;
                }
                (n, last, v)
            })
            .collect();
        if by_time {
            items.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        }
        if req.descending {
            items.reverse();
        }
        let (streams, next) =
            page(items.into_iter().map(|(n, _, v)| (n, v)).collect(), req.next_token.as_deref(), limit)?;
        let mut out = json!({ "logStreams": streams });
        if let Some(n) = next {
            out["nextToken"] = json!(n);
        }
        Ok(out)
    }

    pub fn put_log_events(
        &self,
        acct: &str,
        region: &str,
        req: gantry_model::logs::PutLogEventsRequest,
    ) -> Result<Value, ServiceError> {
        let events = &req.log_events;
        if events.is_empty() {
            return Err(invalid(
                "1 validation error detected: Value '[]' at 'logEvents' failed to satisfy constraint: Member must have length greater than or equal to 1",
            ));
        }
        if events.len() > MAX_BATCH_EVENTS {
            return Err(invalid(format!(
                "1 validation error detected: Value at 'logEvents' failed to satisfy constraint: Member must have length less than or equal to {MAX_BATCH_EVENTS}"
            )));
        }
        let size: usize = events.iter().map(|e| e.message.len() + EVENT_OVERHEAD).sum();
        if size > MAX_BATCH_BYTES {
            return Err(invalid(format!(
                "Upload too large: {size} bytes exceeds limit of {MAX_BATCH_BYTES}"
            )));
        }
        if events.windows(2).any(|w| w[1].timestamp < w[0].timestamp) {
            return Err(invalid(
                "Log events in a single PutLogEvents request must be in chronological order.",
            ));
        }
        if let Some(e) = events.iter().find(|e| e.message.is_empty()) {
            return Err(invalid(format!(
                "1 validation error detected: Value '' at 'logEvents.{}.member.message' failed to satisfy constraint: Member must have length greater than or equal to 1",
                events.iter().position(|x| std::ptr::eq(x, e)).unwrap_or(0) + 1
            )));
        }
        let (meta, streams) = self.streams_of(acct, region, &req.log_group_name)?;
        let log = streams
            .into_iter()
            .find(|(n, _)| n == &req.log_stream_name)
            .map(|(_, l)| l)
            .ok_or_else(no_stream)?;
        let now = self.now();
        let too_old = now - MAX_AGE_MS;
        let expired = meta.retention_in_days.map(|d| now - d as i64 * 86_400_000);
        let too_new = now + MAX_FUTURE_MS;
        // Events are in order, so the rejected ones are a prefix (too old / expired) and a
        // suffix (too new).
        let old_end = events.iter().rposition(|e| e.timestamp < too_old);
        let expired_end = expired.and_then(|x| events.iter().rposition(|e| e.timestamp < x));
        let new_start = events.iter().position(|e| e.timestamp > too_new);
        let first = old_end.max(expired_end).map_or(0, |i| i + 1);
        let last = new_start.unwrap_or(events.len());
        let accepted: Vec<(i64, &str)> = events
            .get(first..last.max(first))
            .unwrap_or_default()
            .iter()
            .map(|e| (e.timestamp, e.message.as_str()))
            .collect();
        if let (Some(a), Some(b)) = (accepted.first(), accepted.last())
            && b.0 - a.0 > MAX_BATCH_SPAN_MS
        {
            return Err(invalid(
                "The batch of log events in a single PutLogEvents request cannot span more than 24 hours.",
            ));
        }
        lock(&log).append(&accepted, now).map_err(internal)?;
        self.extract_metrics(acct, region, &accepted, now);
        let mut out = json!({});
        let mut rejected = serde_json::Map::new();
        if let Some(i) = new_start {
            rejected.insert("tooNewLogEventStartIndex".into(), json!(i));
        }
        if let Some(i) = old_end {
            rejected.insert("tooOldLogEventEndIndex".into(), json!(i));
        }
        if let Some(i) = expired_end {
            rejected.insert("expiredLogEventEndIndex".into(), json!(i));
        }
        if !rejected.is_empty() {
            out["rejectedLogEventsInfo"] = Value::Object(rejected);
        }
        Ok(out)
    }

    /// Sends the metrics of the events in embedded metric format to the metric sink, once the
    /// events are stored. An invalid EMF document stays a plain log event (logged at debug).
    fn extract_metrics(&self, acct: &str, region: &str, events: &[(i64, &str)], now: i64) {
        let mut data = Vec::new();
        for (_, message) in events.iter().filter(|(_, m)| emf::candidate(m)) {
            match emf::extract(message, now) {
                Ok(Some(d)) => data.extend(d),
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "a log event is not valid embedded metric format"),
            }
        }
        if !data.is_empty() {
            self.metrics.put_extracted(acct, region, data);
        }
    }

    pub fn get_log_events(
        &self,
        acct: &str,
        region: &str,
        req: gantry_model::logs::GetLogEventsRequest,
    ) -> Result<Value, ServiceError> {
        let group = group_name(req.log_group_name.as_deref(), req.log_group_identifier.as_deref())?;
        let limit = check_limit(req.limit, 10_000)?;
        let (_, streams) = self.streams_of(acct, region, &group)?;
        let log = streams
            .into_iter()
            .find(|(n, _)| n == &req.log_stream_name)
            .map(|(_, l)| l)
            .ok_or_else(no_stream)?;
        let end = if req.end_time > 0 { req.end_time } else { i64::MAX };
        let mut events = lock(&log).read(req.start_time, end).map_err(internal)?;
        events.sort_by_key(|e| (e.timestamp, e.seq));
        let key = |e: &Event| (e.timestamp, e.seq);
        let bad_token = || {
            invalid(format!(
                "The specified nextToken is invalid: {}",
                req.next_token.as_deref().unwrap_or("")
            ))
        };
        // (forward?, position) of the token, if any.
        let token = match req.next_token.as_deref() {
            None => None,
            Some(t) => {
                let (dir, rest) = t.split_once('/').ok_or_else(bad_token)?;
                let (ts, seq, _) = parse_key(rest).ok_or_else(bad_token)?;
                match dir {
                    "f" => Some((true, (ts, seq))),
                    "b" => Some((false, (ts, seq))),
                    _ => return Err(bad_token()),
                }
            }
        };
        let forward = token.map_or(req.start_from_head, |(f, _)| f);
        let window: &[Event] = match token {
            None => &events,
            Some((true, k)) => {
                let at = events.partition_point(|e| key(e) <= k);
                &events[at..]
            }
            Some((false, k)) => {
                let at = events.partition_point(|e| key(e) < k);
                &events[..at]
            }
        };
        let chosen: &[Event] = if forward {
            let mut n = 0;
            let mut bytes = 0;
            for e in window.iter().take(limit) {
                bytes += e.message.len() + EVENT_OVERHEAD;
                if bytes > MAX_RESPONSE_BYTES && n > 0 {
                    break;
                }
                n += 1;
            }
            &window[..n]
        } else {
            let mut n = 0;
            let mut bytes = 0;
            for e in window.iter().rev().take(limit) {
                bytes += e.message.len() + EVENT_OVERHEAD;
                if bytes > MAX_RESPONSE_BYTES && n > 0 {
                    break;
                }
                n += 1;
            }
            &window[window.len() - n..]
        };
        let (fwd, back) = match (chosen.first(), chosen.last()) {
            (Some(a), Some(b)) => (key(b), key(a)),
            // Nothing here: the same position back (AWS answers the token it was given).
            _ => match token {
                Some((_, k)) => (k, k),
                None if forward => ((i64::MIN, 0), (i64::MIN, 0)),
                None => {
                    let k = events.last().map_or((i64::MIN, 0), key);
                    (k, k)
                }
            },
        };
        let out: Vec<Value> = chosen
            .iter()
            .map(|e| json!({"timestamp": e.timestamp, "message": e.message, "ingestionTime": e.ingestion_time}))
            .collect();
        Ok(json!({
            "events": out,
            "nextForwardToken": format!("f/{}", token_key(fwd.0, fwd.1, 0)),
            "nextBackwardToken": format!("b/{}", token_key(back.0, back.1, 0)),
        }))
    }

    pub fn filter_log_events(
        &self,
        acct: &str,
        region: &str,
        req: gantry_model::logs::FilterLogEventsRequest,
    ) -> Result<Value, ServiceError> {
        let group = group_name(req.log_group_name.as_deref(), req.log_group_identifier.as_deref())?;
        if req.log_stream_names.is_some() && req.log_stream_name_prefix.is_some() {
            return Err(invalid("You cannot specify both LogStreamNames and LogStreamNamePrefix"));
        }
        let limit = check_limit(req.limit, 10_000)?;
        let pattern = Pattern::parse(req.filter_pattern.as_deref().unwrap_or("")).map_err(invalid)?;
        let (_, streams) = self.streams_of(acct, region, &group)?;
        let after = match req.next_token.as_deref() {
            None => None,
            Some(t) => Some(
                parse_key(t).ok_or_else(|| invalid(format!("The specified nextToken is invalid: {t}")))?,
            ),
        };
        let end = if req.end_time > 0 { req.end_time } else { i64::MAX };
        let mut found: Vec<(i64, u64, u64, String, Event)> = Vec::new();
        for (name, log) in streams {
            if let Some(names) = &req.log_stream_names
                && !names.contains(&name)
            {
                continue;
            }
            if let Some(p) = &req.log_stream_name_prefix
                && !name.starts_with(p.as_str())
            {
                continue;
            }
            let h = name_hash(&name);
            lock(&log)
                .scan(req.start_time, end, |seq, timestamp, ingestion_time, message| {
                    if after.is_some_and(|k| (timestamp, h, seq) <= k) || !pattern.matches(message) {
                        return;
                    }
                    let e = Event { seq, timestamp, ingestion_time, message: message.to_string() };
                    found.push((timestamp, h, seq, name.clone(), e));
                })
                .map_err(internal)?;
        }
        found.sort_by_key(|a| (a.0, a.1, a.2));
        let mut bytes = 0;
        let mut n = 0;
        for f in found.iter().take(limit) {
            bytes += f.4.message.len() + EVENT_OVERHEAD;
            if bytes > MAX_RESPONSE_BYTES && n > 0 {
                break;
            }
            n += 1;
        }
        let more = n < found.len();
        let events: Vec<Value> = found[..n]
            .iter()
            .map(|(ts, h, seq, name, e)| {
                json!({
                    "logStreamName": name,
                    "timestamp": ts,
                    "message": e.message,
                    "ingestionTime": e.ingestion_time,
                    "eventId": token_key(*ts, *h, *seq)[1..57].to_string(),
                })
            })
            .collect();
        let mut out = json!({ "events": events, "searchedLogStreams": [] });
        if more && let Some((ts, h, seq, _, _)) = found[..n].last() {
            out["nextToken"] = json!(token_key(*ts, *h, *seq));
        }
        Ok(out)
    }

    /// StartQuery: the query is parsed now (a malformed one is refused with where it went
    /// wrong) and runs on a thread of its own: Scheduled, Running, then Complete (or Cancelled
    /// by StopQuery). Its events are those of the groups' streams between `startTime` and
    /// `endTime` (epoch seconds, both included).
    pub fn start_query(
        &self,
        acct: &str,
        region: &str,
        req: gantry_model::logs::StartQueryRequest,
    ) -> Result<Value, ServiceError> {
        if let Some(l) = req.query_language.as_deref()
            && l != "CWLI"
        {
            return Err(invalid(format!("Query language {l} is not supported; use CWLI")));
        }
        let names = queried_groups(&req)?;
        let limit = check_query_bounds(&req)?;
        let query = parse_query(&req.query_string)?;
        let groups = self.query_sources(acct, region, &names)?;
        let now = self.now();
        let id = self.ids.uuid();
        let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
        self.schedule_query(acct, region, &id, now, groups.len(), cancel.clone())?;
        let run = QueryJob {
            queries: self.queries.clone(),
            id: id.clone(),
            account: acct.to_string(),
            start: req.start_time.saturating_mul(1000),
            end: req.end_time.saturating_mul(1000).saturating_add(999),
            limit: limit.or(query.limit()).unwrap_or(10_000).min(query.limit().unwrap_or(10_000)),
            query,
            groups,
            cancel,
        };
        let spawned = std::thread::Builder::new().name("logs-query".into()).spawn(move || run.run());
        if let Err(e) = spawned {
            lock(&self.queries).remove(&id);
            return Err(internal(e));
        }
        Ok(json!({ "queryId": id }))
    }

    /// The log groups' streams, each group named as queried.
    fn query_sources(
        &self,
        acct: &str,
        region: &str,
        names: &[String],
    ) -> Result<Vec<(String, Streams)>, ServiceError> {
        let mut groups = Vec::new();
        for n in names {
            let (_, streams) = self.streams_of(acct, region, n).map_err(|_| {
                ServiceError::sender(
                    "ResourceNotFoundException",
                    format!("Log group '{n}' does not exist for account ID '{acct}'"),
                )
            })?;
            groups.push((n.clone(), streams));
        }
        Ok(groups)
    }

    /// Records query `id` as scheduled, within the account's concurrency limit, dropping the
    /// oldest finished queries beyond those kept.
    fn schedule_query(
        &self,
        acct: &str,
        region: &str,
        id: &str,
        now: i64,
        groups: usize,
        cancel: Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<(), ServiceError> {
        let mut qs = lock(&self.queries);
        let running =
            qs.values().filter(|q| q.account == acct && matches!(q.status, "Scheduled" | "Running")).count();
        if running >= MAX_CONCURRENT_QUERIES {
            return Err(ServiceError::sender(
                "LimitExceededException",
                format!("Account maximum query concurrency limit of [{MAX_CONCURRENT_QUERIES}] reached."),
            ));
        }
        qs.retain(|_, q| now - q.created < QUERY_KEEP_MS);
        while qs.len() >= MAX_KEPT_QUERIES {
            let oldest = qs
                .iter()
                .filter(|(_, q)| !matches!(q.status, "Scheduled" | "Running"))
                .min_by_key(|(_, q)| q.created)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => qs.remove(&k),
                None => break,
            };
        }
        qs.insert(
            id.to_string(),
            QueryRun {
                account: acct.to_string(),
                region: region.to_string(),
                created: now,
                status: "Scheduled",
                rows: Vec::new(),
                matched: 0,
                scanned: 0,
                bytes: 0,
                groups,
                cancel,
            },
        );
        Ok(())
    }

    fn query_of<'a>(
        qs: &'a mut BTreeMap<String, QueryRun>,
        acct: &str,
        region: &str,
        id: &str,
    ) -> Result<&'a mut QueryRun, ServiceError> {
        qs.get_mut(id).filter(|q| q.account == acct && q.region == region).ok_or_else(|| {
            ServiceError::sender("ResourceNotFoundException", format!("Query with id {id} does not exist"))
        })
    }

    /// GetQueryResults: the status, the rows found (once Complete) and the statistics.
    pub fn get_query_results(
        &self,
        acct: &str,
        region: &str,
        req: gantry_model::logs::GetQueryResultsRequest,
    ) -> Result<Value, ServiceError> {
        let mut qs = lock(&self.queries);
        let q = Self::query_of(&mut qs, acct, region, &req.query_id)?;
        let results: Vec<Value> = q
            .rows
            .iter()
            .map(|row| Value::Array(row.iter().map(|(f, v)| json!({"field": f, "value": v})).collect()))
            .collect();
        Ok(json!({
            "queryLanguage": "CWLI",
            "results": results,
            "statistics": {
                "recordsMatched": q.matched as f64,
                "recordsScanned": q.scanned as f64,
                "bytesScanned": q.bytes as f64,
                "estimatedRecordsSkipped": 0.0,
                "estimatedBytesSkipped": 0.0,
                "logGroupsScanned": q.groups as f64,
            },
            "status": q.status,
        }))
    }

    /// StopQuery: a Scheduled or Running query is Cancelled (`success` true); a finished one
    /// is left as it is (`success` false).
    pub fn stop_query(
        &self,
        acct: &str,
        region: &str,
        req: gantry_model::logs::StopQueryRequest,
    ) -> Result<Value, ServiceError> {
        let mut qs = lock(&self.queries);
        let q = Self::query_of(&mut qs, acct, region, &req.query_id)?;
        if !matches!(q.status, "Scheduled" | "Running") {
            return Ok(json!({"success": false}));
        }
        q.cancel.store(true, std::sync::atomic::Ordering::Relaxed);
        q.status = "Cancelled";
        Ok(json!({"success": true}))
    }

    /// Forgets every group and removes every event (the test-isolation reset).
    pub fn reset(&self) -> std::io::Result<()> {
        let mut regions = lock(&self.regions);
        regions.clear();
        match fs::remove_dir_all(&self.root) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes the segments older than each group's retention. Returns how many were removed.
    pub fn enforce_retention(&self) -> usize {
        let now = self.now();
        let targets: Vec<(i64, Arc<Mutex<StreamLog>>)> = {
            let regions = lock(&self.regions);
            regions
                .values()
                .flat_map(|r| r.groups.values())
                .filter_map(|g| g.meta.retention_in_days.map(|d| (now - d as i64 * 86_400_000, g)))
                .flat_map(|(cutoff, g)| g.streams.values().map(move |s| (cutoff, s.clone())))
                .collect()
        };
        let mut removed = 0;
        for (cutoff, s) in targets {
            match lock(&s).expire(cutoff) {
                Ok(n) => removed += n,
                Err(e) => tracing::warn!(error = %e, "removing expired log segments failed"),
            }
        }
        removed
    }
}

impl gantry_ports::LogSink for Logs {
    fn put_events(
        &self,
        account: &str,
        region: &str,
        group: &str,
        stream: &str,
        events: Vec<(i64, String)>,
    ) -> Result<(), String> {
        let exists = |e: &ServiceError| e.code == "ResourceAlreadyExistsException";
        let group_req = gantry_model::logs::CreateLogGroupRequest {
            log_group_name: group.to_string(),
            ..Default::default()
        };
        match self.create_log_group(account, region, group_req) {
            Err(e) if !exists(&e) => return Err(e.message),
            _ => {}
        }
        let stream_req = gantry_model::logs::CreateLogStreamRequest {
            log_group_name: group.to_string(),
            log_stream_name: stream.to_string(),
        };
        match self.create_log_stream(account, region, stream_req) {
            Err(e) if !exists(&e) => return Err(e.message),
            _ => {}
        }
        // PutLogEvents' limits: batches of at most 10,000 events and 1 MiB.
        let mut rest = events.as_slice();
        while !rest.is_empty() {
            let (mut n, mut size) = (0, 0);
            while n < rest.len()
                && n < MAX_BATCH_EVENTS
                && size + rest[n].1.len() + EVENT_OVERHEAD <= MAX_BATCH_BYTES
            {
                size += rest[n].1.len() + EVENT_OVERHEAD;
                n += 1;
            }
            let n = n.max(1);
            let log_events: Vec<gantry_model::logs::InputLogEvent> = rest[..n]
                .iter()
                .map(|(t, m)| gantry_model::logs::InputLogEvent { timestamp: *t, message: m.clone() })
                .collect();
            let req = gantry_model::logs::PutLogEventsRequest {
                log_group_name: group.to_string(),
                log_stream_name: stream.to_string(),
                log_events,
                ..Default::default()
            };
            self.put_log_events(account, region, req).map_err(|e| e.message)?;
            rest = &rest[n..];
        }
        Ok(())
    }
}

/// One stream's events as [`task_streams`] finds them.
#[derive(Debug, Clone)]
pub struct StoredStream {
    pub group: String,
    pub stream: String,
    pub events: Vec<Event>,
}

/// The streams of an ECS task in the log store under `root` (`DATA_DIR/logs`), read without
/// changing anything (the server may be running): those named `PREFIX/CONTAINER/TASK_ID`, as the
/// awslogs driver names them, in every account and region. For `gantry logs`.
pub fn task_streams(root: &Path, task_id: &str) -> std::io::Result<Vec<StoredStream>> {
    let mut out = Vec::new();
    let suffix = format!("/{task_id}");
    for acct in fs::read_dir(root).into_iter().flatten().flatten() {
        for reg in fs::read_dir(acct.path()).into_iter().flatten().flatten() {
            let Ok(data) = fs::read(reg.path().join("groups.json")) else { continue };
            let metas: Vec<GroupMeta> = serde_json::from_slice(&data)
                .map_err(|e| std::io::Error::other(format!("{}: {e}", reg.path().display())))?;
            for m in metas {
                for s in m.streams.keys().filter(|s| s.ends_with(&suffix)) {
                    let dir = reg.path().join(dir_name(&m.name)).join(dir_name(s));
                    let events = segments::read_only(&dir).unwrap_or_default();
                    out.push(StoredStream { group: m.name.clone(), stream: s.clone(), events });
                }
            }
        }
    }
    out.sort_by(|a, b| (&a.stream, &a.group).cmp(&(&b.stream, &b.group)));
    Ok(out)
}

fn group_name(name: Option<&str>, identifier: Option<&str>) -> Result<String, ServiceError> {
    match (name, identifier) {
        (Some(_), Some(_)) => {
            Err(invalid("LogGroup name and LogGroup identifier are mutually exclusive parameters."))
        }
        (Some(n), None) => Ok(n.to_string()),
        (None, Some(i)) => Ok(match i.split_once(":log-group:") {
            Some((_, n)) => n.strip_suffix(":*").unwrap_or(n).to_string(),
            None => i.to_string(),
        }),
        (None, None) => Err(invalid("Should provide either a logGroupName or a logGroupIdentifier.")),
    }
}

fn check_limit(limit: i32, max: i32) -> Result<usize, ServiceError> {
    if limit == 0 {
        return Ok(max as usize);
    }
    if !(1..=max).contains(&limit) {
        return Err(invalid(format!(
            "1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: Member must have value {}",
            if limit < 1 {
                "greater than or equal to 1".to_string()
            } else {
                format!("less than or equal to {max}")
            }
        )));
    }
    Ok(limit as usize)
}

fn validate_tags(tags: &BTreeMap<String, String>) -> Result<(), ServiceError> {
    if tags.len() > 50 {
        return Err(invalid("A log group can have at most 50 tags."));
    }
    for (k, v) in tags {
        if k.is_empty() || k.len() > 128 || k.starts_with("aws:") {
            return Err(invalid(format!("Invalid tag key: {k}")));
        }
        if v.len() > 256 {
            return Err(invalid(format!("Invalid tag value for key {k}: longer than 256 characters")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
