//! Moves a store written by Gantry 0.1.0 (keys without their service: `/ACCOUNT/REGION/KIND/...`,
//! `/_service/...`, `/_node/...`, `/_fargate-node/...`) to the current layout ([`crate::keys`]).
//!
//! The whole move is one transaction, guarded by the revision of every old key it reads and the
//! absence of every new key it writes: it applies entirely or not at all (a crash or a failed
//! write leaves the old layout as it was), and running it again finds nothing to move.
//!
//! Records are moved byte for byte (compressed or not). The index rows the record layer derives
//! (`td-status/`, `ci-status/`, `/_ecs/node/`, `/_ecs/service/`) are not moved but derived again
//! from the moved records through [`Record::index_keys`], and compared with the old rows, moved
//! (the keys their values hold rewritten: `/_node/`'s value holds the task's key, `/_service/`'s
//! is the service's); a difference is logged (the derived rows win). The rows still kept by hand
//! (`service-task/`, empty) are moved.

use crate::keys;
use crate::ops::instance_record::InstanceRecord;
use crate::ops::service_record::ServiceRecord;
use crate::ops::tasks::{TaskRecord, TokenRecord};
use crate::records::parse;
use crate::table::{Record, Row};
use gantry_core::{EcsError, Result, Scope};
use gantry_store::{KeyValue, Store, Txn};
use std::collections::BTreeMap;

/// The kinds of scoped keys Gantry 0.1.0 wrote (`/ACCOUNT/REGION/KIND/...`).
const OLD_KINDS: &[&str] = &[
    "account-setting",
    "capacity-provider",
    "ci-status",
    "client-token",
    "cluster",
    "container-instance",
    "family",
    "service",
    "service-deployment",
    "service-request",
    "service-revision",
    "service-task",
    "task",
    "task-definition",
    "td-status",
];

/// The old unscoped roots, and where they go.
fn unscoped(key: &str) -> Option<(&'static str, &str)> {
    [("/_service/", "service"), ("/_node/", "node"), ("/_fargate-node/", "fargate-node")]
        .into_iter()
        .find_map(|(old, new)| key.strip_prefix(old).map(|rest| (new, rest)))
}

/// An old scoped key's scope, kind and the rest.
fn old_scoped(key: &str) -> Option<(Scope, &str, &str)> {
    let mut it = key.strip_prefix('/')?.splitn(4, '/');
    let (account, region, kind, tail) = (it.next()?, it.next()?, it.next()?, it.next()?);
    if account.starts_with('_') || !OLD_KINDS.contains(&kind) {
        return None;
    }
    Some((Scope { account: account.into(), region: region.into() }, kind, tail))
}

/// The current key of a key of the old layout, or `None` if it is not one.
pub fn new_key(old: &str) -> Option<String> {
    if let Some((kind, rest)) = unscoped(old) {
        return Some(format!("/_{}/{kind}/{rest}", keys::SERVICE));
    }
    let (scope, kind, tail) = old_scoped(old)?;
    Some(format!("/{}/{}/{}/{kind}/{tail}", scope.account, scope.region, keys::SERVICE))
}

/// What a migration did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Migration {
    /// Records and hand-kept index rows moved to their new key.
    pub moved: usize,
    /// Index rows derived again by the record layer.
    pub reindexed: usize,
    /// Old index rows dropped (their derived counterparts were written instead).
    pub dropped: usize,
    /// Derived index rows that differ from the old rows, moved (missing, extra or valued
    /// otherwise); 0 for a consistent store.
    pub index_mismatches: usize,
    /// Keys the layout upgrade wrote: index rows and counters a store of an earlier layout did
    /// not have, and the layout's mark ([`upgrade`]).
    pub upgraded: usize,
    /// The store's revision after the move (0 if there was nothing to move).
    pub revision: i64,
}

/// The key that says which layout a store is in ([`LAYOUT`] and earlier; absent: 1).
pub fn layout_key() -> String {
    "/_ecs/layout".to_string()
}

/// The layout this build keeps: 2 added the counters (`cluster-count/`, `ci-count/`), ListTasks'
/// index rows, the retention's (`/_ecs/stopped-task/`, `/_ecs/client-token-expiry/`,
/// `/_ecs/inactive-service/`) and client tokens' expiry; 3 the clusters' counters of registered
/// container instances.
pub const LAYOUT: i64 = 3;

/// Every record the record layer keeps, read from the store, with what it implies: its index
/// rows and its counters, counted again from nothing.
#[derive(Debug, Default)]
pub struct Derived {
    pub rows: BTreeMap<String, Vec<u8>>,
    pub counters: BTreeMap<String, i64>,
    /// Records of an earlier release that cannot be kept (client tokens without their cluster).
    pub obsolete: Vec<String>,
}

fn derive_one<R: Record + serde::de::DeserializeOwned>(
    out: &mut Derived,
    scope: &Scope,
    kv: &KeyValue,
) -> Result<()> {
    let record: R = parse(&kv.value)
        .map_err(|e| EcsError::server(format!("The stored record {} could not be read: {e}", kv.key)))?;
    out.rows.extend(record.index_keys(scope));
    for c in record.counters(scope) {
        *out.counters.entry(c).or_default() += 1;
    }
    Ok(())
}

/// Reads every record of the store and derives its index rows and counters: what the record
/// layer would have written had every record been written through it. (The counters the store
/// holds must equal [`Derived::counters`]; the tests compare them after random histories.)
pub fn derive(store: &dyn Store) -> Result<Derived> {
    let mut out = Derived::default();
    let mut err = None;
    store.visit("/", &mut |kv| {
        let Some((scope, kind, _)) = keys::parse_scoped(&kv.key) else { return };
        let r = match kind {
            "task" => derive_one::<TaskRecord>(&mut out, &scope, kv),
            "service" => derive_one::<ServiceRecord>(&mut out, &scope, kv),
            "container-instance" => derive_one::<InstanceRecord>(&mut out, &scope, kv),
            "task-definition" => {
                derive_one::<crate::ops::task_definitions::TaskDefRecord>(&mut out, &scope, kv)
            }
            "client-token" => match parse::<TokenRecord>(&kv.value) {
                Ok(t) if t.expires_ms > 0 => derive_one::<TokenRecord>(&mut out, &scope, kv),
                _ => {
                    out.obsolete.push(kv.key.clone());
                    Ok(())
                }
            },
            _ => Ok(()),
        };
        if let Err(e) = r {
            err.get_or_insert(e);
        }
    });
    match err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// The counters the store holds now.
pub fn counters(store: &dyn Store) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    store.visit("/", &mut |kv| {
        if let Some((_, "cluster-count" | "ci-count", _)) = keys::parse_scoped(&kv.key) {
            out.insert(kv.key.clone(), gantry_store::counter(&kv.value));
        }
    });
    out
}

/// Derives, once, what a store of an earlier layout lacks ([`LAYOUT`]): every record's index rows
/// and counters ([`derive`]), written in one transaction guarded by the layout's mark, which it
/// sets. Client tokens of releases without expiry are dropped (they only make a retried RunTask
/// return its first answer). It runs before serving, so nothing else writes meanwhile. Returns
/// how many keys it wrote or deleted, and the revision it committed at.
///
/// Several servers sharing one etcd may start at the same moment: when another one's upgrade
/// commits first (the mark moved), this one finds the mark set and has nothing left to do, or
/// (the mark moved for another reason) derives again.
pub async fn upgrade(store: &dyn Store) -> Result<(usize, i64)> {
    for _ in 0..UPGRADE_ATTEMPTS {
        if let Some(done) = upgrade_once(store).await? {
            return Ok(done);
        }
    }
    Err(EcsError::server("The store changed while it was being upgraded; nothing was written."))
}

/// How often [`upgrade`] derives again when the layout's mark moved under it.
const UPGRADE_ATTEMPTS: usize = 5;

/// One attempt of [`upgrade`]: `None` when the mark moved before it could commit.
async fn upgrade_once(store: &dyn Store) -> Result<Option<(usize, i64)>> {
    let mark = store.get(&layout_key());
    if mark.as_ref().is_some_and(|kv| gantry_store::counter(&kv.value) >= LAYOUT) {
        return Ok(Some((0, 0)));
    }
    let derived = derive(store)?;
    let mut txn = Txn::new().when(layout_key(), mark.as_ref().map_or(0, |kv| kv.mod_revision));
    let mut written = 1;
    for (k, v) in &derived.rows {
        if store.get(k).is_none_or(|kv| kv.value[..] != v[..]) {
            txn = txn.put(k.clone(), v.clone());
            written += 1;
        }
    }
    let held = counters(store);
    for k in held.keys().filter(|k| !derived.counters.contains_key(*k)) {
        txn = txn.delete(k.clone());
        written += 1;
    }
    for (k, n) in &derived.counters {
        if held.get(k) != Some(n) {
            txn = txn.put(k.clone(), n.to_string().into_bytes());
            written += 1;
        }
    }
    for k in &derived.obsolete {
        txn = txn.delete(k.clone());
        written += 1;
    }
    txn = txn.put(layout_key(), LAYOUT.to_string().into_bytes());
    let result = store
        .txn(txn)
        .await
        .map_err(|e| EcsError::server(format!("The store could not be upgraded: {e}")))?;
    if !result.succeeded {
        // The store answers once its reads hold the revision that beat this one.
        tracing::info!("the layout's mark moved while deriving (another server upgrading?)");
        return Ok(None);
    }
    tracing::info!(written, layout = LAYOUT, "derived the counters and index rows of the current layout");
    Ok(Some((written, result.revision)))
}

/// A move in preparation.
#[derive(Default)]
struct Plan {
    txn: Txn,
    out: Migration,
    /// The derived index rows, and the old ones at their new keys (for the comparison).
    derived: BTreeMap<String, Vec<u8>>,
    old_rows: BTreeMap<String, Vec<u8>>,
}

impl Plan {
    fn take(&mut self, old: &KeyValue) {
        self.txn = std::mem::take(&mut self.txn).when(&old.key, old.mod_revision).delete(&old.key);
    }

    fn put(&mut self, key: String, value: Vec<u8>) {
        self.txn = std::mem::take(&mut self.txn).when(&key, 0).put(key, value);
    }

    fn derive<R: Record + serde::de::DeserializeOwned>(
        &mut self,
        scope: &Scope,
        kv: &KeyValue,
    ) -> Result<()> {
        let record: R = parse(&kv.value)
            .map_err(|e| EcsError::server(format!("The stored record {} could not be read: {e}", kv.key)))?;
        // Only the rows of the kinds the old layout had are compared; the later kinds (and the
        // counters) are the layout upgrade's ([`upgrade`]).
        let rows: Vec<Row> = record.index_keys(scope);
        self.derived.extend(rows.into_iter().filter(|(k, _)| of_release_0_1_0(k)));
        Ok(())
    }

    fn add(&mut self, kv: &KeyValue) -> Result<bool> {
        let Some(new) = new_key(&kv.key) else { return Ok(false) };
        self.take(kv);
        if let Some((kind, _)) = unscoped(&kv.key) {
            match kind {
                "node" => {
                    let (task_key, group) = keys::node_task_value_parts(&kv.value);
                    let task_key = new_key(task_key).unwrap_or_else(|| task_key.to_string());
                    self.old_rows.insert(new, keys::node_task_value(&task_key, group));
                }
                "service" => {
                    let service_key = String::from_utf8_lossy(&kv.value);
                    let service_key = new_key(&service_key).unwrap_or_else(|| service_key.into_owned());
                    self.old_rows.insert(new, service_key.into_bytes());
                }
                _ => {
                    self.put(new, kv.value.to_vec());
                    self.out.moved += 1;
                }
            }
            return Ok(true);
        }
        let Some((scope, kind, _)) = old_scoped(&kv.key) else { return Ok(true) };
        match kind {
            "td-status" | "ci-status" => {
                self.old_rows.insert(new, kv.value.to_vec());
                return Ok(true);
            }
            "task-definition" => self.derive::<crate::ops::task_definitions::TaskDefRecord>(&scope, kv)?,
            "container-instance" => self.derive::<InstanceRecord>(&scope, kv)?,
            "task" => self.derive::<TaskRecord>(&scope, kv)?,
            "service" => self.derive::<ServiceRecord>(&scope, kv)?,
            _ => {}
        }
        self.put(new, kv.value.to_vec());
        self.out.moved += 1;
        Ok(true)
    }
}

/// Whether an index row is of a kind release 0.1.0 kept.
fn of_release_0_1_0(key: &str) -> bool {
    key.starts_with("/_ecs/node/")
        || key.starts_with("/_ecs/service/")
        || keys::parse_scoped(key).is_some_and(|(_, kind, _)| kind == "td-status" || kind == "ci-status")
}

/// Brings a store to the current layout: moves the keys of release 0.1.0 ([`move_release_0_1_0`])
/// and then derives what later layouts added ([`upgrade`]). Call it after opening the store and
/// before serving; a store already current is left alone.
pub async fn migrate(store: &dyn Store) -> Result<Migration> {
    let mut m = move_release_0_1_0(store).await?;
    let (written, revision) = upgrade(store).await?;
    if written > 0 {
        m.upgraded = written;
        m.revision = revision;
    }
    Ok(m)
}

/// Moves every key of the old layout to the current one, in one transaction; a no-op when there
/// is none.
async fn move_release_0_1_0(store: &dyn Store) -> Result<Migration> {
    let mut plan = Plan::default();
    let mut old = 0;
    for kv in store.range("/", None, usize::MAX) {
        old += plan.add(&kv)? as usize;
    }
    if old == 0 {
        return Ok(Migration::default());
    }
    plan.out.dropped = plan.old_rows.len();
    plan.out.reindexed = plan.derived.len();
    plan.out.index_mismatches =
        plan.derived.iter().filter(|(k, v)| plan.old_rows.get(*k) != Some(*v)).count()
            + plan.old_rows.keys().filter(|k| !plan.derived.contains_key(*k)).count();
    if plan.out.index_mismatches > 0 {
        tracing::warn!(
            mismatches = plan.out.index_mismatches,
            "the old layout's index rows differ from those its records imply; the records' are written"
        );
    }
    let derived = std::mem::take(&mut plan.derived);
    for (k, v) in derived {
        plan.put(k, v);
    }
    let result = store
        .txn(plan.txn)
        .await
        .map_err(|e| EcsError::server(format!("The store could not be migrated: {e}")))?;
    if !result.succeeded {
        return Err(EcsError::server("The store changed while it was being migrated; nothing was moved."));
    }
    plan.out.revision = result.revision;
    let m = &plan.out;
    tracing::info!(
        moved = m.moved,
        reindexed = m.reindexed,
        dropped = m.dropped,
        revision = m.revision,
        "moved the store to the layout where every key names its service"
    );
    Ok(plan.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_keys_map_to_their_service_and_new_ones_are_left_alone() {
        let cases = [
            ("/000000000000/us-east-1/cluster/prod", Some("/000000000000/us-east-1/ecs/cluster/prod")),
            (
                "/000000000000/us-east-1/td-status/ACTIVE/web!0000000002",
                Some("/000000000000/us-east-1/ecs/td-status/ACTIVE/web!0000000002"),
            ),
            (
                "/_service/000000000000/us-east-1/prod/web",
                Some("/_ecs/service/000000000000/us-east-1/prod/web"),
            ),
            ("/_node/fargate:n/01ab", Some("/_ecs/node/fargate:n/01ab")),
            ("/_fargate-node/n", Some("/_ecs/fargate-node/n")),
            ("/000000000000/us-east-1/ecs/cluster/prod", None),
            ("/_ecs/node/fargate:n/01ab", None),
            ("/000000000000/us-east-1/elb/load-balancer/x", None),
        ];
        for (old, new) in cases {
            assert_eq!(new_key(old).as_deref(), new, "{old}");
            if let Some(n) = new {
                assert!(keys::owns(n), "{n}");
            }
        }
    }
}
