//! The group controller: makes each Auto Scaling group's instances what its desired capacity
//! says, as EC2 Auto Scaling does, with a scaling activity for every launch and termination.
//!
//! A pass over a group (1) decides, in one compare-and-swap write: lifecycle actions past their
//! deadline take their hook's DefaultResult; missing instances are added `Pending` (spread over
//! the group's zones, fewest first) and surplus ones chosen for termination by the default
//! policy (never one protected from scale-in: the zone with the most instances, then an
//! instance of another launch configuration than the group's, then the newest), `Terminating`
//! or, when the group has a termination hook, `Terminating:Wait` until CompleteLifecycleAction
//! or the hook's heartbeat timeout; (2) calls the launcher for every `Pending` instance not yet
//! started and every terminating one free to go; (3) writes what came of it: `InService`, or
//! the instance gone and its activity `Failed` with the launcher's words (no launch is tried
//! again for 10 s), or a terminated instance removed. Launcher calls are idempotent per
//! instance, so a lost write only repeats them. Time is the injected clock.

use crate::keys;
use crate::ops::{begin_termination, iso};
use crate::records::{
    GroupRecord, InstanceHealth, InstanceRecord, LcRecord, LifecycleState, StoredInstance, unreadable,
};
use gantry_core::{Clock, IdGen, Scope, ServiceError};
use gantry_model::autoscaling::{Activity, LifecycleHook};
use gantry_ports::autoscaling::{HostSpec, Launcher};
use gantry_runtime::records::{Before, Stored, TxnExt, encode, load, parse};
use gantry_runtime::{Action, Controller, Leadership, Metrics, Reconciler, Shutdown};
use gantry_store::{EventKind, Store, Txn};
use std::sync::Arc;
use std::time::Duration;

/// How long a group waits after a failed launch before it launches again.
pub const LAUNCH_RETRY_MS: i64 = 10_000;
/// Launcher calls in flight at once in one pass.
const CONCURRENCY: usize = 128;

/// The reconciler: one pass per group (keyed by its index row).
pub struct GroupController {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGen>,
    launcher: Arc<dyn Launcher>,
}

/// What a pass did, for tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    pub launched: Vec<String>,
    pub failed: Vec<String>,
    pub terminated: Vec<String>,
}

/// The cluster an instance joins: `ECS_CLUSTER=` in its user data (base64, as EC2 takes it;
/// plain text is read as it is), else `default`, as the ECS agent does.
pub fn cluster_of(user_data: &str) -> (String, String) {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD
        .decode(user_data.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_else(|| user_data.to_string());
    let cluster = text
        .split("ECS_CLUSTER=")
        .nth(1)
        .map(|rest| {
            rest.trim_start_matches(['"', '\''])
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect::<String>()
        })
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "default".into());
    (cluster, text)
}

impl GroupController {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGen>,
        launcher: Arc<dyn Launcher>,
    ) -> Self {
        GroupController { store, clock, ids, launcher }
    }

    /// Runs the controller until `shutdown`, while `leader` says this process leads.
    pub async fn run(self, metrics: Arc<Metrics>, leader: Arc<dyn Leadership>, shutdown: Shutdown) {
        let controller = Controller::<String>::new("autoscaling-groups", metrics)
            .resync(Duration::from_secs(10))
            .watches(self.store.clone(), keys::group_index_prefix(), |e| match e.kind {
                EventKind::Put => vec![e.kv.key.clone()],
                EventKind::Delete => Vec::new(),
            });
        controller.run(self, leader, shutdown).await
    }

    fn spec(&self, scope: &Scope, g: &GroupRecord, i: &InstanceRecord) -> Result<HostSpec, ServiceError> {
        let lc_name = i.instance.launch_configuration_name.clone().unwrap_or_default();
        let lc: Option<Stored<LcRecord>> =
            load(self.store.as_ref(), &keys::lc(scope, &lc_name)).map_err(unreadable)?;
        let (cluster, user_data) =
            cluster_of(lc.as_ref().and_then(|l| l.value.lc.user_data.as_deref()).unwrap_or_default());
        Ok(HostSpec {
            account: scope.account.clone(),
            region: scope.region.clone(),
            instance_id: i.instance.instance_id.clone(),
            group: g.name().to_string(),
            image_id: i.instance.image_id.clone().unwrap_or_default(),
            instance_type: i.instance.instance_type.clone().unwrap_or_default(),
            availability_zone: i.instance.availability_zone.clone(),
            cluster,
            user_data,
        })
    }

    /// Step 1: the decisions, written under compare-and-swap. The group as written, or `None`
    /// when it is gone.
    async fn decide(&self, scope: &Scope, name: &str) -> Result<Option<GroupRecord>, ServiceError> {
        for _ in 0..crate::ATTEMPTS {
            let Some(mut g) =
                load::<GroupRecord>(self.store.as_ref(), &keys::group(scope, name)).map_err(unreadable)?
            else {
                return Ok(None);
            };
            let before = Before::of(scope, &g);
            let now = self.clock.now().0;
            let mut changed = false;
            let hooks: Vec<LifecycleHook> = g
                .value
                .hooks
                .iter()
                .filter(|h| h.lifecycle_transition.as_deref() == Some("autoscaling:EC2_INSTANCE_TERMINATING"))
                .cloned()
                .collect();
            for i in &mut g.value.instances {
                if let Some(w) = &mut i.wait
                    && w.result.is_none()
                    && w.deadline_ms <= now
                {
                    let default = hooks
                        .iter()
                        .find(|h| h.lifecycle_hook_name.as_deref() == Some(w.hook.as_str()))
                        .and_then(|h| h.default_result.clone())
                        .unwrap_or_else(|| "ABANDON".into());
                    w.result = Some(default);
                    i.instance.lifecycle_state = LifecycleState::TerminatingProceed;
                    changed = true;
                }
            }
            let live = g.value.live().count() as i32;
            let desired = g.value.group.desired_capacity;
            if live < desired && g.value.retry_after_ms <= now {
                let lc_name = g.value.group.launch_configuration_name.clone().unwrap_or_default();
                let lc: Option<Stored<LcRecord>> =
                    load(self.store.as_ref(), &keys::lc(scope, &lc_name)).map_err(unreadable)?;
                if let Some(lc) = lc {
                    for _ in live..desired {
                        self.add_instance(scope, &mut g.value, &lc.value, live, now);
                    }
                    changed = true;
                }
            } else if live > desired {
                let victims = choose_victims(&g.value, (live - desired) as usize);
                if !victims.is_empty() {
                    let cause = format!(
                        "{}  At {} an instance was taken out of service in response to a difference between desired and actual capacity, shrinking the capacity from {live} to {desired}.",
                        g.value.cause,
                        iso(now)
                    );
                    for pos in victims {
                        begin_termination(
                            self.ids.as_ref(),
                            scope,
                            &mut g.value,
                            pos,
                            &hooks,
                            now,
                            cause.trim(),
                        );
                    }
                    changed = true;
                }
            }
            if !changed {
                return Ok(Some(g.value));
            }
            g.value.sync();
            let mut txn = Txn::new().put_record(scope, &before, &g.value);
            for (key, a) in std::mem::take(&mut g.value.new_activities) {
                txn = txn.put(key, encode(&a));
            }
            if crate::commit(self.store.as_ref(), txn).await? {
                return Ok(Some(g.value));
            }
        }
        Err(ServiceError::receiver("InternalFailure", format!("group {name} kept conflicting")))
    }

    fn add_instance(&self, scope: &Scope, g: &mut GroupRecord, lc: &LcRecord, from: i32, now: i64) {
        let id = format!("i-{}", &self.ids.hex_id()[..17]);
        // The zone with the fewest live instances, in the group's order.
        let zones = &g.group.availability_zones;
        let zone = zones
            .iter()
            .min_by_key(|z| g.live().filter(|i| &i.instance.availability_zone == *z).count())
            .cloned()
            .unwrap_or_else(|| format!("{}a", scope.region));
        let activity_id = self.ids.uuid();
        let key = keys::activity(scope, g.name(), now, &activity_id);
        let to = g.group.desired_capacity;
        let cause = format!(
            "{}  At {} an instance was started in response to a difference between desired and actual capacity, increasing the capacity from {from} to {to}.",
            g.cause,
            iso(now)
        );
        g.new_activities.push((
            key.clone(),
            Activity {
                activity_id,
                auto_scaling_group_name: g.name().to_string(),
                description: Some(format!("Launching a new EC2 instance: {id}")),
                cause: cause.trim().to_string(),
                start_time: now as f64 / 1000.0,
                end_time: None,
                status_code: "PreInService".into(),
                status_message: None,
                progress: Some(30),
                details: Some(serde_json::json!({"Availability Zone": zone}).to_string()),
                auto_scaling_group_state: None,
                auto_scaling_group_arn: g.group.auto_scaling_group_arn.clone(),
            },
        ));
        // The type ECS asked for this launch, else the launch configuration's.
        let instance_type =
            if g.next_types.is_empty() { lc.lc.instance_type.clone() } else { g.next_types.remove(0) };
        g.instances.push(InstanceRecord {
            instance: StoredInstance {
                instance_id: id,
                instance_type: Some(instance_type),
                availability_zone: zone,
                lifecycle_state: LifecycleState::Pending,
                health_status: InstanceHealth::Healthy,
                launch_configuration_name: Some(lc.lc.launch_configuration_name.clone()),
                launch_template: None,
                image_id: Some(lc.lc.image_id.clone()),
                protected_from_scale_in: g.group.new_instances_protected_from_scale_in == Some(true),
            },
            launched_ms: now,
            started: false,
            activity: key,
            wait: None,
        });
    }

    /// One pass over a group: decide, call the launcher, record what came of it.
    pub async fn pass(&self, scope: &Scope, name: &str) -> Result<(PassReport, Action), ServiceError> {
        let Some(g) = self.decide(scope, name).await? else {
            return Ok((PassReport::default(), Action::AwaitChange));
        };
        let to_launch: Vec<HostSpec> = g
            .instances
            .iter()
            .filter(|i| i.instance.lifecycle_state == LifecycleState::Pending && !i.started)
            .map(|i| self.spec(scope, &g, i))
            .collect::<Result<_, _>>()?;
        let to_stop: Vec<HostSpec> = g
            .instances
            .iter()
            .filter(|i| {
                matches!(
                    i.instance.lifecycle_state,
                    LifecycleState::Terminating | LifecycleState::TerminatingProceed
                )
            })
            .map(|i| self.spec(scope, &g, i))
            .collect::<Result<_, _>>()?;
        let mut launched = Vec::new();
        for chunk in to_launch.chunks(CONCURRENCY) {
            let results = futures_util::future::join_all(chunk.iter().map(|s| self.launcher.launch(s))).await;
            launched.extend(chunk.iter().map(|s| s.instance_id.clone()).zip(results));
        }
        let mut stopped = Vec::new();
        for chunk in to_stop.chunks(CONCURRENCY) {
            let results =
                futures_util::future::join_all(chunk.iter().map(|s| self.launcher.terminate(s))).await;
            stopped.extend(chunk.iter().map(|s| s.instance_id.clone()).zip(results));
        }
        let report = self.record(scope, name, &launched, &stopped).await?;
        // Wake again for the earliest lifecycle deadline, and after a failed launch.
        let now = self.clock.now().0;
        let current =
            load::<GroupRecord>(self.store.as_ref(), &keys::group(scope, name)).map_err(unreadable)?;
        let mut next: Option<i64> = None;
        if let Some(g) = &current {
            for w in g.value.instances.iter().filter_map(|i| i.wait.as_ref()).filter(|w| w.result.is_none()) {
                next = Some(next.map_or(w.deadline_ms, |n| n.min(w.deadline_ms)));
            }
            if g.value.retry_after_ms > now {
                next = Some(next.map_or(g.value.retry_after_ms, |n| n.min(g.value.retry_after_ms)));
            }
        }
        let action = match next {
            Some(at) => Action::Requeue(Duration::from_millis((at - now).clamp(0, 60_000) as u64)),
            None if !stopped.iter().all(|(_, r)| r.is_ok()) => Action::Requeue(Duration::from_secs(10)),
            None => Action::AwaitChange,
        };
        Ok((report, action))
    }

    /// Step 3: writes what the launcher calls came to.
    async fn record(
        &self,
        scope: &Scope,
        name: &str,
        launched: &[(String, Result<(), String>)],
        stopped: &[(String, Result<(), String>)],
    ) -> Result<PassReport, ServiceError> {
        if launched.is_empty() && stopped.is_empty() {
            return Ok(PassReport::default());
        }
        for _ in 0..crate::ATTEMPTS {
            let Some(mut g) =
                load::<GroupRecord>(self.store.as_ref(), &keys::group(scope, name)).map_err(unreadable)?
            else {
                return Ok(PassReport::default());
            };
            let before = Before::of(scope, &g);
            let now = self.clock.now().0;
            let mut report = PassReport::default();
            let mut txn = Txn::new();
            let finish = |txn: Txn, key: &str, ok: Result<(), &str>| -> Result<Txn, ServiceError> {
                let Some(kv) = self.store.get(key) else { return Ok(txn) };
                let mut a: Activity =
                    parse(&kv.value).map_err(|e| ServiceError::receiver("InternalFailure", e))?;
                a.end_time = Some(now as f64 / 1000.0);
                a.progress = Some(100);
                match ok {
                    Ok(()) => a.status_code = "Successful".into(),
                    Err(m) => {
                        a.status_code = "Failed".into();
                        a.status_message = Some(m.to_string());
                    }
                }
                Ok(txn.put(key, encode(&a)))
            };
            for (id, r) in launched {
                let Some(pos) = g.value.instances.iter().position(|i| &i.instance.instance_id == id) else {
                    continue;
                };
                let inst = &mut g.value.instances[pos];
                match r {
                    Ok(()) => {
                        inst.started = true;
                        if inst.instance.lifecycle_state == LifecycleState::Pending {
                            inst.instance.lifecycle_state = LifecycleState::InService;
                        }
                        let key = inst.activity.clone();
                        txn = finish(txn, &key, Ok(()))?;
                        report.launched.push(id.clone());
                    }
                    Err(m) => {
                        let key = inst.activity.clone();
                        g.value.instances.remove(pos);
                        g.value.retry_after_ms = now + LAUNCH_RETRY_MS;
                        txn = finish(txn, &key, Err(m))?;
                        report.failed.push(id.clone());
                    }
                }
            }
            for (id, r) in stopped {
                let Some(pos) = g.value.instances.iter().position(|i| &i.instance.instance_id == id) else {
                    continue;
                };
                if let Err(m) = r {
                    tracing::warn!(instance = %id, group = %name, "terminating failed: {m}");
                    continue;
                }
                let key = g.value.instances[pos].activity.clone();
                g.value.instances.remove(pos);
                txn = finish(txn, &key, Ok(()))?;
                report.terminated.push(id.clone());
            }
            if g.value.deleting() && g.value.instances.is_empty() {
                txn = txn.delete_record(&before).delete_prefix(keys::activities_of(scope, name));
                // Activities written above are dropped with the group.
                txn.ops.retain(|op| !matches!(op, gantry_store::Op::Put(k, _) if k.starts_with(&keys::activities_of(scope, name))));
            } else {
                g.value.sync();
                txn = txn.put_record(scope, &before, &g.value);
            }
            if crate::commit(self.store.as_ref(), txn).await? {
                return Ok(report);
            }
        }
        Err(ServiceError::receiver("InternalFailure", format!("group {name} kept conflicting")))
    }
}

/// The default termination policy over the live, unprotected instances: the zone with the
/// most live instances first, then instances of another launch configuration than the group's,
/// then the newest. At most `n`; fewer when protection leaves fewer.
fn choose_victims(g: &GroupRecord, n: usize) -> Vec<usize> {
    let mut chosen: Vec<usize> = Vec::new();
    let current_lc = g.group.launch_configuration_name.as_deref();
    for _ in 0..n {
        let live_in = |zone: &str| {
            g.instances
                .iter()
                .enumerate()
                .filter(|(p, i)| {
                    !chosen.contains(p)
                        && !i.instance.lifecycle_state.is_leaving()
                        && i.instance.availability_zone == zone
                })
                .count()
        };
        let best = g
            .instances
            .iter()
            .enumerate()
            .filter(|(p, i)| {
                !chosen.contains(p)
                    && !i.instance.lifecycle_state.is_leaving()
                    && !i.instance.protected_from_scale_in
            })
            .max_by_key(|(_, i)| {
                (
                    live_in(&i.instance.availability_zone),
                    i.instance.launch_configuration_name.as_deref() != current_lc,
                    i.launched_ms,
                    i.instance.instance_id.clone(),
                )
            })
            .map(|(p, _)| p);
        match best {
            Some(p) => chosen.push(p),
            None => break,
        }
    }
    chosen
}

impl Reconciler<String> for GroupController {
    type Error = ServiceError;

    async fn reconcile(&self, row: &String) -> Result<Action, Self::Error> {
        let Some((scope, name)) = keys::parse_group_index(row) else { return Ok(Action::AwaitChange) };
        self.pass(&scope, &name).await.map(|(_, a)| a)
    }

    fn list(&self) -> Vec<String> {
        self.store.range(&keys::group_index_prefix(), None, usize::MAX).into_iter().map(|kv| kv.key).collect()
    }
}
