//! What ECS forgets, Gantry forgets too: the cleanup controller.
//!
//! * A STOPPED task stays visible to DescribeTasks and ListTasks for the stopped-task retention
//!   (`--stopped-task-retention`, 1 hour by default: ECS keeps stopped tasks "at least an hour"),
//!   then it is deleted with its index rows and counts (`TxnExt::delete_record`) and its
//!   service's `service-task/` row, if the scheduler has not dropped it yet.
//! * A RunTask client token expires `CLIENT_TOKEN_TTL_MS` (24 hours, as ECS's) after its
//!   request.
//! * An INACTIVE service's deployment history is kept for [`HISTORY_RETENTION_MS`] (90 days: ECS
//!   shows "the most recent 90-day history" of service deployments): each service deployment
//!   goes 90 days after it last changed; once none is left and the service itself has not
//!   changed for 90 days, its revisions, its record, its CreateService request and any
//!   `service-task/` rows left go too (DescribeServices then answers MISSING, as ECS does once
//!   it "purges" an INACTIVE service).
//!
//! Each is found through an index ordered by when it expires (`/_ecs/stopped-task/`,
//! `/_ecs/client-token-expiry/`) or listing only what is concerned (`/_ecs/inactive-service/`),
//! so a pass costs what it deletes, never what is stored. Deletes are guarded by the revision
//! each record was read at: a record changed meanwhile is looked at again on the next pass.
//! Time is the control plane's [`Clock`](gantry_core::Clock), so the tests move a fake clock;
//! the controller (`gantry-runtime`, behind `Leadership`) runs a pass when an index row is added
//! (the store's watch) and when the next expiry is due.

use crate::ops::service_deployments::ServiceDeploymentRecord;
use crate::ops::service_record::ServiceRecord;
use crate::ops::tasks::{TaskRecord, TokenRecord};
use crate::records::{decode, load, parse};
use crate::table::{Before, TxnExt};
use crate::{ControlPlane, keys};
use gantry_core::Result;
use gantry_runtime::{Action, Backoff, Controller, Leadership, Reconciler, Shutdown};
use gantry_store::Txn;
use std::sync::Arc;
use std::time::Duration;

/// How long an INACTIVE service's deployment history is kept: ECS's 90 days.
pub const HISTORY_RETENTION_MS: i64 = 90 * 24 * 3600 * 1000;

/// The default stopped-task retention: ECS keeps a stopped task visible for at least an hour.
pub const DEFAULT_STOPPED_TASK_RETENTION: Duration = Duration::from_secs(3600);

/// Records deleted per transaction.
const BATCH: usize = 128;

/// The longest a pass waits before looking again, whatever the next expiry says: the queue
/// waits on tokio's clock, the expiries are in the control plane's.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// What one pass of the cleanup looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Sweep {
    StoppedTasks,
    ClientTokens,
    InactiveServices,
    /// Interrupted Fargate Spot tasks whose warning is over (`ops::spot`).
    SpotReclaims,
}

impl std::fmt::Display for Sweep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Sweep::StoppedTasks => "stopped-tasks",
            Sweep::ClientTokens => "client-tokens",
            Sweep::InactiveServices => "inactive-services",
            Sweep::SpotReclaims => "spot-reclaims",
        })
    }
}

/// What a sweep did: how many records it deleted, and when (epoch milliseconds) the next one
/// it knows of expires.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub deleted: usize,
    pub next_ms: Option<i64>,
}

/// The milliseconds a row of a time-ordered index starts with (after `prefix`).
fn row_ms(key: &str, prefix: &str) -> i64 {
    key.get(prefix.len()..prefix.len() + 15).and_then(|d| d.parse().ok()).unwrap_or(0)
}

/// An INACTIVE service's last change (epoch milliseconds): its newest event or deployment update.
fn service_changed_ms(s: &ServiceRecord) -> i64 {
    let s = &s.service;
    let events = s.events.iter().map(|e| e.created_at.0);
    let deployments = s.deployments.iter().map(|d| d.updated_at.0.max(d.created_at.0));
    events.chain(deployments).chain([s.created_at.0]).fold(0, i64::max)
}

impl ControlPlane {
    /// Deletes the STOPPED tasks that stopped `retention` ago or longer.
    pub async fn sweep_stopped_tasks(&self, retention: Duration) -> Result<Swept> {
        let prefix = keys::stopped_tasks_prefix();
        let cutoff = self.clock.now().0 - retention.as_millis() as i64;
        let bound = keys::stopped_task_bound(cutoff + 1);
        let mut deleted = 0;
        loop {
            let rows: Vec<_> =
                self.store.range(&prefix, None, BATCH).into_iter().take_while(|kv| kv.key < bound).collect();
            if rows.is_empty() {
                break;
            }
            let mut txn = Txn::new();
            for row in &rows {
                txn = self.forget_task(txn, &row.key, &String::from_utf8_lossy(&row.value))?;
            }
            if self.commit(txn).await? {
                deleted += rows.len();
                continue;
            }
            // Something of the batch changed meanwhile: one at a time, each read again.
            for row in &rows {
                let task_key = String::from_utf8_lossy(&row.value).into_owned();
                let row_key = row.key.clone();
                self.retry(|| {
                    if self.store.get(&row_key).is_none() {
                        return Ok((Txn::new(), ()));
                    }
                    Ok((self.forget_task(Txn::new(), &row_key, &task_key)?, ()))
                })
                .await?;
                deleted += 1;
            }
        }
        let next = self.store.range(&prefix, None, 1).first().map(|kv| row_ms(&kv.key, &prefix));
        Ok(Swept { deleted, next_ms: next.map(|ms| ms + retention.as_millis() as i64) })
    }

    /// Adds to `txn` the deletion of a stopped task (by its row in the stopped-task index): its
    /// record with its rows and counts, and its service's row of it.
    fn forget_task(&self, txn: Txn, row_key: &str, task_key: &str) -> Result<Txn> {
        let Some(kv) = self.store.get(task_key) else {
            // A row whose task is gone (it cannot be, but a row never outlives what it names).
            let rev = self.store.get(row_key).map_or(0, |kv| kv.mod_revision);
            return Ok(txn.when(row_key, rev).delete(row_key));
        };
        let rec = decode::<TaskRecord>(&kv)?;
        let Some((scope, _, _)) = keys::parse_scoped(task_key) else {
            let rev = self.store.get(row_key).map_or(0, |kv| kv.mod_revision);
            return Ok(txn.when(row_key, rev).delete(row_key));
        };
        // The row is the record's own (`delete_record` takes it), and deleted by name as well, so
        // a row that does not match its record cannot hold the sweep at one place.
        let mut txn = txn.delete_record(&Before::of(&scope, &rec)).delete(row_key);
        if let Some(service) = rec.value.task.service() {
            let row = keys::service_task(&scope, rec.value.cluster(), service, rec.value.id());
            if self.store.get(&row).is_some() {
                txn = txn.delete(row);
            }
        }
        Ok(txn)
    }

    /// Deletes the RunTask client tokens that have expired.
    pub async fn sweep_client_tokens(&self) -> Result<Swept> {
        let prefix = keys::token_expiries_prefix();
        let now = self.clock.now().0;
        let bound = keys::token_expiry_bound(now + 1);
        let mut deleted = 0;
        loop {
            let rows: Vec<_> =
                self.store.range(&prefix, None, BATCH).into_iter().take_while(|kv| kv.key < bound).collect();
            if rows.is_empty() {
                break;
            }
            for row in rows {
                let token_key = String::from_utf8_lossy(&row.value).into_owned();
                self.retry(|| {
                    let Some(scope) = keys::parse_scoped(&token_key).map(|(s, _, _)| s) else {
                        return Ok((Txn::new().when(&row.key, row.mod_revision).delete(&row.key), ()));
                    };
                    Ok(match load::<TokenRecord>(&*self.store, &token_key)? {
                        Some(t) => (Txn::new().delete_record(&Before::of(&scope, &t)).delete(&row.key), ()),
                        None => match self.store.get(&row.key) {
                            Some(kv) => (Txn::new().when(&row.key, kv.mod_revision).delete(&row.key), ()),
                            None => (Txn::new(), ()),
                        },
                    })
                })
                .await?;
                deleted += 1;
            }
        }
        let next = self.store.range(&prefix, None, 1).first().map(|kv| row_ms(&kv.key, &prefix));
        Ok(Swept { deleted, next_ms: next })
    }

    /// Prunes INACTIVE services' deployment history older than [`HISTORY_RETENTION_MS`], and
    /// forgets a service whose history is gone and that has not changed for as long.
    pub async fn sweep_inactive_services(&self) -> Result<Swept> {
        let now = self.clock.now().0;
        let cutoff = now - HISTORY_RETENTION_MS;
        let mut deleted = 0;
        let mut next: Option<i64> = None;
        let mut soonest = |ms: i64| next = Some(next.map_or(ms, |n| n.min(ms)));
        for row in self.store.range(&keys::inactive_services_prefix(), None, usize::MAX) {
            let service_key = String::from_utf8_lossy(&row.value).into_owned();
            let Some((scope, _, tail)) = keys::parse_scoped(&service_key) else { continue };
            let Some((cluster, name)) = tail.split_once('/') else { continue };
            let Some(rec) = load::<ServiceRecord>(&*self.store, &service_key)? else { continue };
            let history = keys::service_deployments_prefix(&scope, cluster, name);
            let mut txn = Txn::new();
            let mut kept = 0;
            for kv in self.store.range(&history, None, usize::MAX) {
                let changed = parse::<ServiceDeploymentRecord>(&kv.value).map_or(0, |d| d.changed_at().0);
                if changed <= cutoff {
                    txn = txn.when(&kv.key, kv.mod_revision).delete(&kv.key);
                    deleted += 1;
                } else {
                    kept += 1;
                    soonest(changed + HISTORY_RETENTION_MS);
                }
            }
            let changed = service_changed_ms(&rec.value);
            if kept == 0 && changed <= cutoff {
                txn = txn
                    .delete_record(&Before::of(&scope, &rec))
                    .delete_prefix(keys::service_revision(&scope, cluster, name, ""))
                    .delete_prefix(keys::service_tasks_prefix(&scope, cluster, name))
                    .delete(keys::service_request(&scope, cluster, name));
                deleted += 1;
            } else {
                soonest(changed.max(now) + HISTORY_RETENTION_MS);
            }
            // A service written meanwhile (CreateService again) is looked at on the next pass.
            self.commit(txn).await?;
        }
        Ok(Swept { deleted, next_ms: next })
    }

    /// Runs the cleanup until `shutdown`, while `leader` says this process leads.
    pub async fn run_cleanup(&self, retention: Duration, leader: Arc<dyn Leadership>, shutdown: Shutdown) {
        let stopped = keys::stopped_tasks_prefix();
        let tokens = keys::token_expiries_prefix();
        let inactive = keys::inactive_services_prefix();
        let spot = keys::spot_reclaims_prefix();
        Controller::new("cleanup", self.metrics.clone())
            .workers(1)
            .resync(MAX_WAIT)
            .backoff(Backoff { base: Duration::from_secs(1), max: Duration::from_secs(60) })
            .watches(self.store.clone(), "/_ecs/", move |e| {
                let k = &e.kv.key;
                if e.kind != gantry_store::EventKind::Put {
                    vec![]
                } else if k.starts_with(&stopped) {
                    vec![Sweep::StoppedTasks]
                } else if k.starts_with(&tokens) {
                    vec![Sweep::ClientTokens]
                } else if k.starts_with(&inactive) {
                    vec![Sweep::InactiveServices]
                } else if k.starts_with(&spot) {
                    vec![Sweep::SpotReclaims]
                } else {
                    vec![]
                }
            })
            .run(Cleanup { cp: self.clone(), retention }, leader, shutdown)
            .await
    }
}

/// The cleanup as the runtime sees it: one pass is one sweep.
struct Cleanup {
    cp: ControlPlane,
    retention: Duration,
}

impl Reconciler<Sweep> for Cleanup {
    type Error = String;

    async fn reconcile(&self, key: &Sweep) -> std::result::Result<Action, String> {
        let cp = &self.cp;
        let swept = match key {
            Sweep::StoppedTasks => cp.sweep_stopped_tasks(self.retention).await,
            Sweep::ClientTokens => cp.sweep_client_tokens().await,
            Sweep::InactiveServices => cp.sweep_inactive_services().await,
            Sweep::SpotReclaims => cp.sweep_spot_reclaims().await,
        }
        .map_err(|e| e.message)?;
        if swept.deleted > 0 {
            tracing::debug!(?key, deleted = swept.deleted, "cleanup");
        }
        // The next expiry is in the control plane's clock; the queue waits on tokio's.
        Ok(match swept.next_ms {
            Some(at) => {
                let wait = Duration::from_millis((at - cp.clock.now().0).max(0) as u64);
                Action::Requeue(wait.min(MAX_WAIT))
            }
            None => Action::AwaitChange,
        })
    }

    fn list(&self) -> Vec<Sweep> {
        vec![Sweep::StoppedTasks, Sweep::ClientTokens, Sweep::InactiveServices, Sweep::SpotReclaims]
    }
}
