//! Fargate Spot interruptions: Gantry reclaiming FARGATE_SPOT capacity, as AWS reclaims Spot
//! capacity (Gantry's extension operation `GantryInterruptSpot`, behind `gantry spot
//! interrupt`).
//!
//! ECS's contract, which this keeps: an interrupted task gets a two-minute warning, sent as a
//! task state change (desiredStatus STOPPED, lastStatus still RUNNING, stopCode
//! `SpotInterruption`, stoppedReason "Your Spot Task was interrupted.") and as SIGTERM to its
//! containers; its containers then have their stopTimeout to exit, and at the end of the
//! warning the capacity is gone whatever they did. Here the stop request is StopTask's path
//! (`request_stop_by`: the agent sends SIGTERM and, after stopTimeout, SIGKILL), and the task
//! carries when its capacity is reclaimed (`TaskRecord::reclaim_at_ms`, indexed under
//! `/_ecs/spot-reclaim/`); a task still not STOPPED then is stopped by the cleanup's
//! [`ControlPlane::sweep_spot_reclaims`] (its reservation given back, its node's row dropped, so
//! its agent removes what is left). A service replaces the task as it replaces any stopped one,
//! through its capacity provider strategy. The warning defaults to ECS's two minutes; a caller
//! may shorten it (tests do).

use crate::ops::tasks::TaskRecord;
use crate::records::{decode, load};
use crate::table::{Before, TxnExt};
use crate::{ControlPlane, Ctx, keys};
use gantry_core::{EcsError, Result, TaskStatus};
use gantry_store::Txn;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The capacity provider whose tasks can be interrupted.
pub const FARGATE_SPOT: &str = "FARGATE_SPOT";
/// ECS's stop code and reason for an interrupted Spot task.
pub const STOP_CODE: &str = "SpotInterruption";
pub const STOPPED_REASON: &str = "Your Spot Task was interrupted.";
/// ECS's warning: two minutes between the interruption notice and the capacity going.
pub const DEFAULT_WARNING_SECONDS: i64 = 120;

/// `GantryInterruptSpot`'s request: the cluster, and either tasks by ARN or ID, or how many of
/// its FARGATE_SPOT tasks to interrupt (the oldest first); neither means all of them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InterruptSpotRequest {
    pub cluster: Option<String>,
    #[serde(default)]
    pub tasks: Option<Vec<String>>,
    #[serde(default)]
    pub count: Option<i64>,
    /// Seconds between the warning and the capacity going (1 to 120; 120 when absent).
    #[serde(default)]
    pub warning_seconds: Option<i64>,
}

/// The tasks interrupted, as DescribeTasks shows them at once, and those that could not be.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InterruptSpotResponse {
    pub tasks: Vec<gantry_model::Task>,
    pub failures: Vec<gantry_model::Failure>,
}

fn is_spot(t: &TaskRecord) -> bool {
    t.task.capacity_provider_name.as_deref() == Some(FARGATE_SPOT)
}

fn interruptible(t: &TaskRecord) -> bool {
    is_spot(t) && !t.task.stop_wanted() && t.task.last_status != TaskStatus::Stopped
}

impl ControlPlane {
    /// Wires EventBridge's default bus, where ECS puts its events (the Spot warning's "ECS
    /// Task State Change"). Set once.
    pub fn set_event_bus(&self, bus: Arc<dyn gantry_ports::EventBus>) {
        let _ = self.event_bus.set(bus);
    }

    /// Puts "ECS Task State Change" for `task` on the default bus, if one is wired: its detail
    /// is the task as DescribeTasks shows it, as ECS sends it.
    pub(crate) async fn task_state_change_event(&self, ctx: &Ctx, task: &gantry_model::Task) {
        let Some(bus) = self.event_bus.get() else { return };
        let event = gantry_ports::BusEvent {
            source: "aws.ecs".into(),
            detail_type: "ECS Task State Change".into(),
            resources: task.task_arn.iter().cloned().collect(),
            detail: serde_json::to_string(task).unwrap_or_else(|_| "{}".into()),
            time_ms: self.clock.now().0,
        };
        if let Err(e) = bus.put_event(&ctx.scope.account, &ctx.scope.region, event).await {
            tracing::warn!(task = ?task.task_arn, "cannot put the task state change event: {e}");
        }
    }

    /// Interrupts FARGATE_SPOT tasks of a cluster (see the module's documentation).
    pub async fn interrupt_spot(
        &self,
        ctx: &Ctx,
        req: InterruptSpotRequest,
    ) -> Result<InterruptSpotResponse> {
        let warning = req.warning_seconds.unwrap_or(DEFAULT_WARNING_SECONDS);
        if !(1..=DEFAULT_WARNING_SECONDS).contains(&warning) {
            return Err(EcsError::invalid(format!(
                "warningSeconds must be between 1 and {DEFAULT_WARNING_SECONDS}, but was {warning}."
            )));
        }
        if req.count.is_some() && req.tasks.is_some() {
            return Err(EcsError::invalid("Specify either tasks or count, not both."));
        }
        if let Some(n) = req.count
            && n < 1
        {
            return Err(EcsError::invalid(format!("count must be at least 1, but was {n}.")));
        }
        let cluster = self.active_cluster(ctx, req.cluster.as_deref())?;
        let cname = cluster.value.cluster_name.clone();
        let mut failures = Vec::new();
        let chosen: Vec<String> = match &req.tasks {
            Some(refs) => {
                let mut out = Vec::new();
                for r in refs {
                    match self.load_task(ctx, &cname, r)? {
                        Some(t) if interruptible(&t.value) => out.push(t.value.task.task_arn.clone()),
                        Some(t) => failures.push(gantry_model::Failure {
                            arn: Some(t.value.task.task_arn.clone()),
                            reason: Some(if is_spot(&t.value) { "STOPPED" } else { "NOT_SPOT" }.into()),
                            detail: Some(if is_spot(&t.value) {
                                "The task is already stopping or stopped.".into()
                            } else {
                                format!("The task does not run on {FARGATE_SPOT} capacity.")
                            }),
                        }),
                        None => failures.push(crate::ops::missing(r, |id| {
                            format!(
                                "arn:aws:ecs:{}:{}:task/{cname}/{id}",
                                ctx.scope.region, ctx.scope.account
                            )
                        })),
                    }
                }
                out
            }
            None => {
                // The cluster's tasks that should run, oldest first (task IDs start with the
                // time they were created).
                let prefix = keys::task_index_prefix(&ctx.scope, &cname, keys::TaskIndex::Desired, "RUNNING");
                let mut out = Vec::new();
                for kv in self.store.range(&prefix, None, usize::MAX) {
                    let id = &kv.key[prefix.len()..];
                    if let Some(t) = load::<TaskRecord>(&*self.store, &keys::task(&ctx.scope, &cname, id))?
                        && interruptible(&t.value)
                    {
                        out.push(t.value.task.task_arn.clone());
                    }
                    if req.count.is_some_and(|n| out.len() as i64 >= n) {
                        break;
                    }
                }
                out
            }
        };
        let reclaim_at = self.clock.now().0 + warning * 1000;
        let mut tasks = Vec::new();
        for arn in chosen {
            let was = self.load_task(ctx, &cname, &arn)?.map(|t| t.value.task.last_status);
            if let Some(rec) =
                self.request_stop_by(ctx, &cname, &arn, STOP_CODE, STOPPED_REASON, Some(reclaim_at)).await?
            {
                tracing::info!(task = %arn, cluster = %cname, warning, "Fargate Spot interruption");
                // ECS's two-minute warning, as an event while the task still runs: its
                // lastStatus is what it was when the notice came (RUNNING), as ECS sends it.
                let mut warned = rec.task.clone();
                if let Some(was) = was {
                    warned.last_status = was;
                }
                self.task_state_change_event(ctx, &warned.into_wire()).await;
                tasks.push(rec.task.into_wire());
            }
        }
        Ok(InterruptSpotResponse { tasks, failures })
    }

    /// Stops the interrupted Spot tasks whose warning is over and that have not stopped yet:
    /// their capacity is gone. Returns how many it stopped and when the next one is due.
    pub async fn sweep_spot_reclaims(&self) -> Result<crate::cleanup::Swept> {
        let prefix = keys::spot_reclaims_prefix();
        let now = self.clock.now().0;
        let bound = keys::spot_reclaim_bound(now + 1);
        let mut deleted = 0;
        let rows: Vec<_> =
            self.store.range(&prefix, None, usize::MAX).into_iter().take_while(|kv| kv.key < bound).collect();
        for row in rows {
            let task_key = String::from_utf8_lossy(&row.value).into_owned();
            let node = self
                .retry(|| {
                    let Some(kv) = self.store.get(&task_key) else { return Ok((Txn::new(), None)) };
                    let mut rec = decode::<TaskRecord>(&kv)?;
                    let Some((scope, _, _)) = keys::parse_scoped(&task_key) else {
                        return Ok((Txn::new(), None));
                    };
                    if rec.value.task.is_stopped() {
                        return Ok((Txn::new(), None));
                    }
                    let ctx = Ctx::root(scope.clone());
                    let before = Before::of(&scope, &rec);
                    let cluster = rec.value.cluster().to_string();
                    let node = rec.value.node.clone();
                    let secs = gantry_core::Timestamp(now);
                    let t = &mut rec.value.task;
                    t.last_status = TaskStatus::Stopped;
                    t.desired_status = TaskStatus::Stopped;
                    t.stop_code = Some(STOP_CODE.into());
                    t.stopped_reason.get_or_insert_with(|| STOPPED_REASON.into());
                    t.stopping_at.get_or_insert(secs);
                    t.execution_stopped_at = Some(secs);
                    t.stopped_at = Some(secs);
                    t.connectivity = Some(crate::ops::tasks::Connectivity::Disconnected);
                    for c in &mut t.containers {
                        c.last_status = TaskStatus::Stopped;
                    }
                    crate::ops::tasks::attachments_deleted(t);
                    t.version += 1;
                    let txn = if node.is_empty() {
                        Txn::new()
                    } else {
                        self.release(Txn::new(), &node, &rec.value.reserved, &ctx, &cluster)?
                    };
                    // STOPPED drops the node's row (the agent removes the containers left) and
                    // the reclaim row.
                    Ok((txn.put_record(&scope, &before, &rec.value), Some(node)))
                })
                .await?;
            if let Some(node) = node {
                deleted += 1;
                if !node.is_empty() {
                    self.agents.bump(&node);
                }
            }
        }
        let next =
            self.store.range(&prefix, None, 1).first().map(|kv| {
                kv.key.get(prefix.len()..prefix.len() + 15).and_then(|d| d.parse().ok()).unwrap_or(0)
            });
        Ok(crate::cleanup::Swept { deleted, next_ms: next })
    }
}
