//! Cluster auto scaling: capacity providers whose Auto Scaling group ECS scales.
//!
//! One pass per cluster (the `capacity` controller: leader-only, on the injected clock, woken
//! when a task starts waiting for capacity and every few seconds):
//!
//! 1. tasks waiting for capacity (launched through a provider with managed scaling that had no
//!    room: PROVISIONING on no node) are placed on what the cluster has now;
//! 2. for each of the cluster's Auto Scaling group providers, through the
//!    `gantry_ports::autoscaling::CapacityGroups` port: `CapacityProviderReservation` as ECS
//!    documents it ([`reservation`]: M/N×100, where N is the group's instances that are not
//!    terminating and M the instances needed: those running tasks plus new ones for the tasks
//!    still waiting, binpacked on the launch configuration's instance type or, for ECS Managed
//!    Instances, on the type each task gets ([`launches_for`]); while tasks wait, an instance in
//!    its `instanceWarmupPeriod` counts as running and takes what fits it: [`m_and_n`]),
//!    published to CloudWatch (`AWS/ECS/ManagedScaling`, `CapacityProviderName` and
//!    `ClusterName`) through the `MetricSink` port at most once a minute; the group's desired
//!    capacity follows it ([`desired`]: scale out at once, but not again while an instance of the
//!    group warms up, by at least minimumScalingStepSize and at most
//!    maximumScalingStepSize; scale in only after the reservation stayed below the target for
//!    the scale-in delay, 15 minutes as the target tracking policy's alarm by default);
//! 3. managedTerminationProtection: instances running tasks are protected from scale-in, the
//!    others not (in a cluster with daemons, an instance that runs only daemon tasks counts as
//!    idle, here and in the reservation);
//! 4. managedDraining: the group carries ECS's termination hook; an instance waiting on it is
//!    set DRAINING (the service scheduler moves its tasks) and let go once nothing runs on it;
//! 5. daemon auto repair: an instance drained because a critical daemon's task failed there is
//!    replaced through its group (`CapacityGroups::replace_instance`) once only daemon tasks run
//!    on it (`daemon_scheduler.rs`).

use crate::ops::capacity_provider_record::CapacityProviderRecord;
use crate::ops::capacity_providers::BUILT_IN;
use crate::ops::cluster_record::ClusterRecord;
use crate::ops::instance_record::InstanceRecord;
use crate::ops::tasks::TaskRecord;
use crate::records::{decode, load, load_prefix};
use crate::{ControlPlane, Ctx, keys};
use gantry_core::{InstanceStatus, Result, Scope};
use gantry_ports::autoscaling::{CapacityGroups, GroupView};
use gantry_ports::{MetricDatum, MetricScope, MetricSink, MetricValue};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The hook ECS puts on a managed-draining provider's group.
pub const DRAINING_HOOK: &str = "ecs-managed-draining-termination-hook";

/// CapacityProviderReservation as ECS documents it: `M / N × 100`, with its cases: no instances
/// and nothing needed is 100 (steady), no instances but some needed is 200 (scale out), and
/// nothing needed on some instances is 0.
pub fn reservation(m: u64, n: u64) -> f64 {
    match (m, n) {
        (0, 0) => 100.0,
        (_, 0) => 200.0,
        (m, n) => m as f64 / n as f64 * 100.0,
    }
}

/// How many new instances of `capacity` (CPU units, MiB) the `needs` take, first fit by
/// decreasing memory (what a fleet of that type would be binpacked to). A need larger than an
/// instance takes one of its own (it will never fit; the count still shows demand).
pub fn instances_for(needs: &[(i64, i64)], capacity: (i64, i64)) -> u64 {
    instances_beyond(needs, Vec::new(), capacity)
}

/// How many new instances of `capacity` the `needs` take once `open` (the free room of
/// instances already on their way, CPU units and MiB) has taken what fits it, first fit by
/// decreasing memory.
pub fn instances_beyond(needs: &[(i64, i64)], open: Vec<(i64, i64)>, capacity: (i64, i64)) -> u64 {
    let mut sorted: Vec<(i64, i64)> = needs.to_vec();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    let already = open.len();
    let mut bins = open;
    for (cpu, mem) in sorted {
        match bins.iter_mut().find(|b| b.0 >= cpu && b.1 >= mem) {
            Some(b) => {
                b.0 -= cpu;
                b.1 -= mem;
            }
            None => bins.push(((capacity.0 - cpu).max(0), (capacity.1 - mem).max(0))),
        }
    }
    (bins.len() - already) as u64
}

/// The instances ECS Managed Instances launches for the waiting `needs` (CPU units, MiB): each
/// task gets the smallest type within `requirements` that fits it
/// ([`crate::ops::capacity_providers::instance_type_fitting`]; `fallback` when none does), and
/// the tasks of each type are binpacked on instances of that type. One type per new instance,
/// largest first.
pub fn launches_for(
    needs: &[(i64, i64)],
    requirements: Option<&gantry_model::InstanceRequirementsRequest>,
    fallback: &str,
) -> Vec<String> {
    let mut by_type: std::collections::BTreeMap<String, Vec<(i64, i64)>> = Default::default();
    for need in needs {
        let t = crate::ops::capacity_providers::instance_type_fitting(requirements, *need)
            .map_or_else(|| fallback.to_string(), str::to_string);
        by_type.entry(t).or_default().push(*need);
    }
    let mut out: Vec<((i64, i64), String)> = Vec::new();
    for (t, needs) in by_type {
        let capacity = gantry_core::ec2::resources(&t).unwrap_or((1024, 1024));
        for _ in 0..instances_for(&needs, capacity) {
            out.push((capacity, t.clone()));
        }
    }
    out.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    out.into_iter().map(|(_, t)| t).collect()
}

/// One of a group's live (not terminating) instances, as the reservation counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// Its container instance runs or is about to run tasks.
    pub busy: bool,
    /// When the group launched it (milliseconds since the epoch).
    pub launched_at_ms: i64,
    /// The room a waiting task could still take on it (CPU units, MiB): its type's resources
    /// until its container instance registers, then what it has left.
    pub free: (i64, i64),
}

/// `M` and `N` of CapacityProviderReservation, and whether an instance is in its warm-up.
///
/// `N` is the live instances. `M` is the instances running tasks, plus, while tasks wait, those
/// still in their warm-up (`instanceWarmupPeriod`: launched less than `warmup_ms` before `now`),
/// which count as running whether or not they have tasks yet, plus the new instances the waiting
/// `needs` take once the warming instances have taken what fits them. So the tasks a
/// just-launched instance will take do not ask for another; with nothing waiting, an idle
/// instance is idle (its scale-in has its own delay); with a warm-up of 0 nothing is warming and
/// `M` is the running instances plus the waiting tasks binpacked on new ones.
pub fn m_and_n(
    members: &[Member],
    needs: &[(i64, i64)],
    capacity: (i64, i64),
    now: i64,
    warmup_ms: i64,
) -> (u64, u64, bool) {
    let warming = |m: &Member| now - m.launched_at_ms < warmup_ms;
    let waiting = !needs.is_empty();
    let counted = members.iter().filter(|m| m.busy || (waiting && warming(m))).count() as u64;
    let open: Vec<(i64, i64)> = members.iter().filter(|m| warming(m) && !m.busy).map(|m| m.free).collect();
    let any_warming = members.iter().any(warming);
    (counted + instances_beyond(needs, open, capacity), members.len() as u64, any_warming)
}

pub use crate::ops::capacity_providers::split;

/// Managed scaling's knobs (the provider's `managedScaling`, with ECS's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scaling {
    pub target_capacity: i64,
    pub min_step: i64,
    pub max_step: i64,
    /// instanceWarmupPeriod, in milliseconds.
    pub warmup_ms: i64,
}

/// The desired capacity managed scaling asks of a group with `n` instances when `m` are
/// needed: `None` to leave it. Scale-out happens at once, unless `warming` (an instance of the
/// group is still in its warm-up: ECS's next round of calculation waits for it to end);
/// `scale_in` says whether the reservation has stayed below the target long enough to scale in.
#[allow(clippy::too_many_arguments)]
pub fn desired(
    m: u64,
    n: u64,
    s: Scaling,
    min_size: i64,
    max_size: i64,
    current: i64,
    scale_in: bool,
    warming: bool,
) -> Option<i64> {
    let (m, n) = (m as i64, n as i64);
    // The instances that make the reservation equal the target.
    let want = (m * 100 + s.target_capacity - 1) / s.target_capacity.max(1);
    if want > n {
        if warming {
            return None;
        }
        let step = (want - n).clamp(s.min_step.max(1), s.max_step.max(1));
        let to = (n + step).min(max_size);
        (to > current).then_some(to)
    } else if want < n && scale_in {
        let to = want.max(min_size);
        (to < current).then_some(to)
    } else {
        None
    }
}

/// What a pass found for one provider (for tests and the benchmark).
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderReport {
    pub provider: String,
    pub m: u64,
    pub n: u64,
    pub reservation: f64,
    pub desired: Option<i64>,
}

/// The ports and settings of cluster auto scaling, set by the binary.
pub(crate) struct CapacityPorts {
    pub(crate) groups: Arc<dyn CapacityGroups>,
    pub(crate) metrics: Arc<dyn MetricSink>,
    /// How long the reservation must stay below the target before a scale-in.
    pub(crate) scale_in_after: Duration,
}

/// Per provider and cluster: since when the reservation has been below its target, and when
/// the metric was last published.
#[derive(Default)]
pub(crate) struct CapacityState {
    below_since: Mutex<HashMap<String, i64>>,
    published: Mutex<HashMap<String, i64>>,
}

pub(crate) type CapacitySlot = Arc<OnceLock<CapacityPorts>>;

/// The most instances Gantry launches for one ECS Managed Instances provider.
pub const MANAGED_INSTANCES_MAX: i32 = 1000;

/// The group Gantry keeps for an ECS Managed Instances provider, as it should be created.
fn owned_group(p: &CapacityProviderRecord) -> Option<gantry_ports::autoscaling::OwnedGroup> {
    use crate::ops::capacity_providers::{
        DEFAULT_LAUNCHER, LAUNCHER_TAG, instance_type_for, managed_group_name,
    };
    let mi = p.managed_instances_provider.as_ref()?;
    let name = &p.name;
    let tags = p.tags.iter();
    let launcher = tags
        .clone()
        .find(|t| t.key.as_deref() == Some(LAUNCHER_TAG))
        .and_then(|t| t.value.clone())
        .unwrap_or_else(|| DEFAULT_LAUNCHER.to_string());
    let template = mi.instance_launch_template.as_ref();
    let instance_type = instance_type_for(template.and_then(|t| t.instance_requirements.as_ref()))?;
    let mut group_tags = vec![("AmazonECSManaged".to_string(), String::new())];
    if mi.propagate_tags.as_deref() == Some("CAPACITY_PROVIDER") {
        group_tags.extend(tags.filter_map(|t| Some((t.key.clone()?, t.value.clone().unwrap_or_default()))));
    }
    Some(gantry_ports::autoscaling::OwnedGroup {
        name: managed_group_name(name),
        image_id: launcher,
        instance_type: instance_type.to_string(),
        cluster: p.cluster.clone().unwrap_or_default(),
        subnets: template.and_then(|t| t.network_configuration.subnets.clone()).unwrap_or_default(),
        max_size: MANAGED_INSTANCES_MAX,
        tags: group_tags,
    })
}

fn scaling_of(p: &CapacityProviderRecord) -> Option<(String, Scaling, bool, bool)> {
    if p.managed_instances_provider.is_some() {
        // ECS Managed Instances: ECS keeps the fleet at what the tasks need (a reservation of
        // 100), never terminates an instance that runs tasks, and drains one before it goes.
        let name = crate::ops::capacity_providers::managed_group_name(&p.name);
        let scaling = Scaling { target_capacity: 100, min_step: 1, max_step: 10_000, warmup_ms: 0 };
        return Some((name, scaling, true, true));
    }
    let asg = p.auto_scaling_group_provider.as_ref()?;
    let ms = asg.managed_scaling.as_ref();
    let enabled = ms.and_then(|m| m.status.as_deref()) == Some("ENABLED");
    if !enabled {
        return None;
    }
    let ms = ms?;
    Some((
        asg.auto_scaling_group_arn.clone(),
        Scaling {
            target_capacity: i64::from(ms.target_capacity.unwrap_or(100)),
            min_step: i64::from(ms.minimum_scaling_step_size.unwrap_or(1)),
            max_step: i64::from(ms.maximum_scaling_step_size.unwrap_or(10_000)),
            warmup_ms: i64::from(ms.instance_warmup_period.unwrap_or(300)) * 1000,
        },
        asg.managed_termination_protection.as_deref() == Some("ENABLED"),
        asg.managed_draining.as_deref() != Some("DISABLED"),
    ))
}

impl ControlPlane {
    /// Wires cluster auto scaling: Auto Scaling's groups, CloudWatch's sink, and how long the
    /// reservation must stay below target before a scale-in. Set once.
    pub fn set_capacity(
        &self,
        groups: Arc<dyn CapacityGroups>,
        metrics: Arc<dyn MetricSink>,
        scale_in_after: Duration,
    ) {
        let _ = self.capacity.set(CapacityPorts { groups, metrics, scale_in_after });
    }

    /// One cluster auto scaling pass over a cluster (see the module's documentation).
    pub async fn capacity_pass(&self, scope: &Scope, cluster: &str) -> Result<Vec<ProviderReport>> {
        let ctx = Ctx::root(scope.clone());
        let Some(c) = load::<ClusterRecord>(&*self.store, &keys::cluster(scope, cluster))? else {
            return Ok(Vec::new());
        };
        if !c.value.is_active() {
            return Ok(Vec::new());
        }
        // 0. Daemons first: an instance gets its daemon tasks before other tasks.
        self.daemons_pass(&ctx, cluster).await?;
        // 1. What waits, placed on what there is.
        let waiting = self.waiting(scope, cluster)?;
        if !waiting.is_empty() {
            self.place_waiting(&ctx, cluster, waiting).await?;
        }
        let Some(ports) = self.capacity.get() else { return Ok(Vec::new()) };
        let waiting = self.waiting(scope, cluster)?;
        let instances: Vec<crate::Stored<InstanceRecord>> =
            load_prefix(&*self.store, &keys::container_instance_prefix(scope, cluster))?;
        // Task counts are counters beside the records.
        let has_daemons = !self.store.range(&keys::daemon_prefix(scope, cluster), None, 1).is_empty();
        let mut seen = Vec::with_capacity(instances.len());
        for i in instances {
            let id = i.value.id();
            let count = |what: &str| {
                self.store
                    .get(&keys::instance_count(scope, cluster, id, what))
                    .map_or(0, |kv| gantry_store::counter(&kv.value))
            };
            let mut busy = count("running") > 0 || count("pending") > 0;
            // Daemon tasks go with their instance: one that runs nothing else is idle (scaled
            // in, unprotected, let go by managed draining), as ECS Managed Instances are.
            if has_daemons && busy && !self.runs_other_than_daemons(&ctx, cluster, id)? {
                busy = false;
            }
            seen.push(Seen { ci: i.value, busy });
        }
        let by_ec2: HashMap<&str, &Seen> = seen.iter().map(|s| (s.ci.ec2_instance_id.as_str(), s)).collect();
        let mut reports = Vec::new();
        for name in &c.value.capacity_providers {
            let Some(p) =
                load::<CapacityProviderRecord>(&*self.store, &keys::capacity_provider(scope, name))?
            else {
                continue;
            };
            let Some((asg, scaling, protect, drain)) = scaling_of(&p.value) else { continue };
            if !p.value.is_active() {
                continue;
            }
            let mut group = ports.groups.group(&scope.account, &scope.region, &asg);
            if group.is_none()
                && let Some(spec) = owned_group(&p.value)
            {
                // ECS Managed Instances: the group is made when the provider is first needed.
                if let Err(e) = ports.groups.ensure_owned(&scope.account, &scope.region, &spec).await {
                    tracing::warn!(cluster, provider = %name, "cannot create the managed instances' group: {e}");
                }
                group = ports.groups.group(&scope.account, &scope.region, &asg);
            }
            let Some(group) = group else { continue };
            // ECS Managed Instances choose a type per waiting task.
            let per_task =
                p.value.managed_instances_provider.as_ref().map(|mi| {
                    mi.instance_launch_template.as_ref().and_then(|t| t.instance_requirements.clone())
                });
            let report = self
                .scale_group(
                    scope,
                    cluster,
                    name,
                    &group,
                    scaling,
                    &waiting,
                    &by_ec2,
                    ports,
                    per_task.as_ref(),
                )
                .await;
            if protect {
                self.protect_busy(scope, &group, &by_ec2, ports).await;
            }
            if drain {
                self.drain_terminating(&ctx, cluster, &group, &by_ec2, ports).await;
            }
            reports.push(report);
        }
        // 5. Daemon auto repair: instances a critical daemon drained are replaced once empty.
        self.daemon_repairs_pass(&ctx, cluster).await?;
        self.retire_managed_instances(scope, cluster, ports).await?;
        Ok(reports)
    }

    /// The Auto Scaling group (ARN or name) of a capacity provider: its own for ECS Managed
    /// Instances, the one it names otherwise.
    pub(crate) fn provider_group(&self, ctx: &Ctx, provider: &str) -> Result<Option<String>> {
        let Some(p) =
            load::<CapacityProviderRecord>(&*self.store, &keys::capacity_provider(&ctx.scope, provider))?
        else {
            return Ok(None);
        };
        Ok(scaling_of(&p.value)
            .map(|(group, ..)| group)
            .or_else(|| Some(p.value.auto_scaling_group_provider.as_ref()?.auto_scaling_group_arn.clone())))
    }

    /// The container instances (ARNs) of a capacity provider's Auto Scaling group (an ECS
    /// Managed Instances provider's own group included) that have registered into `cluster`:
    /// a provider's membership, for what runs per provider (daemons).
    pub fn capacity_provider_instances(
        &self,
        ctx: &Ctx,
        cluster: &str,
        provider: &str,
    ) -> Result<Vec<String>> {
        let scope = &ctx.scope;
        let Some(ports) = self.capacity.get() else { return Ok(Vec::new()) };
        let Some(p) =
            load::<CapacityProviderRecord>(&*self.store, &keys::capacity_provider(scope, provider))?
        else {
            return Ok(Vec::new());
        };
        let Some((group, ..)) = scaling_of(&p.value).or_else(|| {
            // A provider without managed scaling still has its group.
            let asg = p.value.auto_scaling_group_provider.as_ref()?;
            Some((
                asg.auto_scaling_group_arn.clone(),
                Scaling { target_capacity: 100, min_step: 1, max_step: 1, warmup_ms: 0 },
                false,
                false,
            ))
        }) else {
            return Ok(Vec::new());
        };
        let Some(view) = ports.groups.group(&scope.account, &scope.region, &group) else {
            return Ok(Vec::new());
        };
        let ids: std::collections::HashSet<&str> =
            view.instances.iter().map(|i| i.instance_id.as_str()).collect();
        let instances: Vec<crate::Stored<InstanceRecord>> =
            load_prefix(&*self.store, &keys::container_instance_prefix(scope, cluster))?;
        Ok(instances
            .into_iter()
            .filter(|i| ids.contains(i.value.ec2_instance_id.as_str()))
            .map(|i| i.value.container_instance_arn)
            .collect())
    }

    /// ECS Managed Instances providers of the cluster that were deleted: their group goes, its
    /// instances terminated (ForceDelete), then its launch configuration.
    async fn retire_managed_instances(
        &self,
        scope: &Scope,
        cluster: &str,
        ports: &CapacityPorts,
    ) -> Result<()> {
        for p in load_prefix::<CapacityProviderRecord>(&*self.store, &keys::capacity_provider_prefix(scope))?
        {
            let p = p.value;
            if p.managed_instances_provider.is_none()
                || p.cluster.as_deref() != Some(cluster)
                || p.status != gantry_core::CapacityProviderStatus::Inactive
            {
                continue;
            }
            let group = crate::ops::capacity_providers::managed_group_name(&p.name);
            if let Err(e) = ports.groups.delete_owned(&scope.account, &scope.region, &group).await {
                tracing::warn!(cluster, group = %group, "cannot retire the managed instances' group: {e}");
            }
        }
        Ok(())
    }

    fn waiting(&self, scope: &Scope, cluster: &str) -> Result<Vec<crate::Stored<TaskRecord>>> {
        let mut out = Vec::new();
        for kv in self.store.range(&keys::awaiting_of(scope, cluster), None, usize::MAX) {
            let key = String::from_utf8_lossy(&kv.value).into_owned();
            if let Some(t) = self.store.get(&key) {
                out.push(decode::<TaskRecord>(&t)?);
            }
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    async fn scale_group(
        &self,
        scope: &Scope,
        cluster: &str,
        provider: &str,
        group: &GroupView,
        scaling: Scaling,
        waiting: &[crate::Stored<TaskRecord>],
        by_ec2: &HashMap<&str, &Seen>,
        ports: &CapacityPorts,
        per_task: Option<&Option<gantry_model::InstanceRequirementsRequest>>,
    ) -> ProviderReport {
        let live: Vec<_> =
            group.instances.iter().filter(|i| !i.lifecycle_state.starts_with("Terminat")).collect();
        // A new instance's size: the launch configuration's type, else the largest registered.
        let capacity = gantry_core::ec2::resources(&group.instance_type)
            .unwrap_or_else(|| by_ec2.values().map(|s| registered(&s.ci)).max().unwrap_or((1024, 1024)));
        let members: Vec<Member> = live
            .iter()
            .map(|i| {
                let ci = by_ec2.get(i.instance_id.as_str());
                Member {
                    busy: ci.is_some_and(|s| s.busy),
                    launched_at_ms: i.launched_at_ms,
                    free: match ci {
                        Some(s) => remaining(&s.ci),
                        None => gantry_core::ec2::resources(&i.instance_type).unwrap_or(capacity),
                    },
                }
            })
            .collect();
        let needs: Vec<(i64, i64)> = waiting
            .iter()
            .filter(|w| w.value.task.capacity_provider_name.as_deref() == Some(provider))
            .map(|w| (w.value.reserved.cpu, w.value.reserved.memory))
            .collect();
        let now = self.clock.now().0;
        let (m, n, warming, types) = match per_task {
            Some(requirements) => {
                let types = launches_for(&needs, requirements.as_ref(), &group.instance_type);
                let (m, n, warming) = m_and_n(&members, &[], capacity, now, scaling.warmup_ms);
                (m + types.len() as u64, n, warming, types)
            }
            None => {
                let (m, n, warming) = m_and_n(&members, &needs, capacity, now, scaling.warmup_ms);
                (m, n, warming, Vec::new())
            }
        };
        let cpr = reservation(m, n);
        let key = format!("{}/{}/{cluster}/{provider}", scope.account, scope.region);
        let below = (cpr < scaling.target_capacity as f64).then(|| {
            *self
                .capacity_state
                .below_since
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(key.clone())
                .or_insert(now)
        });
        if below.is_none() {
            self.capacity_state.below_since.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
        }
        let scale_in = below.is_some_and(|since| now - since >= ports.scale_in_after.as_millis() as i64);
        let to = desired(
            m,
            n,
            scaling,
            i64::from(group.min_size),
            i64::from(group.max_size),
            i64::from(group.desired_capacity),
            scale_in,
            warming,
        );
        if let Some(to) = to {
            let cause = format!(
                "a target tracking policy of ECS capacity provider {provider} on cluster {cluster} (CapacityProviderReservation {cpr:.0}, target {})",
                scaling.target_capacity
            );
            let set = if per_task.is_some() {
                ports.groups.set_desired_types(
                    &scope.account,
                    &scope.region,
                    &group.name,
                    to as i32,
                    &cause,
                    &types,
                )
            } else {
                ports.groups.set_desired(&scope.account, &scope.region, &group.name, to as i32, &cause)
            };
            match set.await {
                Ok(()) => tracing::info!(
                    cluster,
                    provider,
                    m,
                    n,
                    reservation = cpr,
                    desired = to,
                    "managed scaling"
                ),
                Err(e) => tracing::warn!(
                    cluster,
                    provider,
                    "managed scaling could not set the desired capacity: {e}"
                ),
            }
        }
        // The metric, once a minute.
        let due = {
            let mut published = self.capacity_state.published.lock().unwrap_or_else(|e| e.into_inner());
            let last = published.get(&key).copied();
            let due = last.is_none_or(|l| now - l >= 60_000);
            if due {
                published.insert(key, now);
            }
            due
        };
        if due {
            ports.metrics.put_in(
                &MetricScope {
                    account: scope.account.clone(),
                    region: scope.region.clone(),
                    high_resolution: false,
                },
                vec![MetricDatum {
                    namespace: "AWS/ECS/ManagedScaling",
                    metric_name: "CapacityProviderReservation",
                    dimensions: vec![
                        ("CapacityProviderName", provider.to_string()),
                        ("ClusterName", cluster.to_string()),
                    ],
                    timestamp: gantry_core::Timestamp(now),
                    value: MetricValue::Value(cpr),
                    unit: "Percent",
                }],
            );
        }
        ProviderReport { provider: provider.to_string(), m, n, reservation: cpr, desired: to }
    }

    /// managedTerminationProtection: protected exactly while running tasks.
    async fn protect_busy(
        &self,
        scope: &Scope,
        group: &GroupView,
        by_ec2: &HashMap<&str, &Seen>,
        ports: &CapacityPorts,
    ) {
        let (mut on, mut off) = (Vec::new(), Vec::new());
        for i in group.instances.iter().filter(|i| i.lifecycle_state == "InService") {
            let busy = by_ec2.get(i.instance_id.as_str()).is_some_and(|s| s.busy);
            if busy && !i.protected_from_scale_in {
                on.push(i.instance_id.clone());
            } else if !busy && i.protected_from_scale_in {
                off.push(i.instance_id.clone());
            }
        }
        for (ids, protected) in [(on, true), (off, false)] {
            if ids.is_empty() {
                continue;
            }
            if let Err(e) =
                ports.groups.protect(&scope.account, &scope.region, &group.name, &ids, protected).await
            {
                tracing::warn!(group = %group.name, "managed termination protection failed: {e}");
            }
        }
    }

    /// managedDraining: ECS's hook on the group; an instance waiting on it drains, then goes.
    async fn drain_terminating(
        &self,
        ctx: &Ctx,
        cluster: &str,
        group: &GroupView,
        by_ec2: &HashMap<&str, &Seen>,
        ports: &CapacityPorts,
    ) {
        let (account, region) = (ctx.scope.account.as_str(), ctx.scope.region.as_str());
        if !group.termination_hooks.iter().any(|h| h == DRAINING_HOOK)
            && let Err(e) =
                ports.groups.put_termination_hook(account, region, &group.name, DRAINING_HOOK).await
        {
            tracing::warn!(group = %group.name, "cannot put the managed draining hook: {e}");
        }
        for i in group.instances.iter().filter(|i| i.lifecycle_state == "Terminating:Wait") {
            let ci = by_ec2.get(i.instance_id.as_str());
            // (An instance running only daemon tasks counts as idle: see the pass.)
            if let Some(s) = ci
                && s.busy
            {
                {
                    if s.ci.status == InstanceStatus::Active {
                        let req = gantry_model::UpdateContainerInstancesStateRequest {
                            cluster: Some(cluster.to_string()),
                            container_instances: vec![s.ci.container_instance_arn.clone()],
                            status: InstanceStatus::Draining.as_str().to_string(),
                        };
                        if let Err(e) = self.update_container_instances_state(ctx, req).await {
                            tracing::warn!(instance = %i.instance_id, "managed draining could not drain: {e}");
                        }
                    }
                    continue;
                }
            }
            if let Err(e) =
                ports.groups.complete(account, region, &group.name, DRAINING_HOOK, &i.instance_id).await
            {
                tracing::warn!(instance = %i.instance_id, "managed draining could not complete the lifecycle action: {e}");
            }
        }
    }

    /// The clusters cluster auto scaling looks after: those with a capacity provider of their
    /// own, and those with tasks waiting.
    pub(crate) fn capacity_keys(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for kv in self.store.range(&keys::awaiting_prefix(), None, usize::MAX) {
            if let Some(k) = cluster_key_of_awaiting(&kv.key) {
                out.push(k);
            }
        }
        // Clusters with daemons (the daemon scheduler runs in this pass).
        let daemons = keys::daemons_index_prefix();
        for kv in self.store.range(&daemons, None, usize::MAX) {
            if let Some((cluster_key, _)) = kv.key[daemons.len()..].rsplit_once('/') {
                out.push(cluster_key.to_string());
            }
        }
        if let Some(ports) = self.capacity.get() {
            for (account, region) in ports.groups.scopes() {
                let scope = Scope::new(account, region);
                // Deleted ECS Managed Instances providers whose group still has to go.
                for kv in self.store.range(&keys::capacity_provider_prefix(&scope), None, usize::MAX) {
                    if let Ok(p) = decode::<CapacityProviderRecord>(&kv)
                        && p.value.managed_instances_provider.is_some()
                        && let (name, Some(cluster)) = (p.value.name.as_str(), p.value.cluster.as_deref())
                        && ports
                            .groups
                            .group(
                                &scope.account,
                                &scope.region,
                                &crate::ops::capacity_providers::managed_group_name(name),
                            )
                            .is_some()
                    {
                        out.push(format!("{}/{}/{cluster}", scope.account, scope.region));
                    }
                }
                for kv in self.store.range(&keys::cluster_prefix(&scope), None, usize::MAX) {
                    if let Ok(c) = decode::<ClusterRecord>(&kv)
                        && c.value.capacity_providers.iter().any(|p| !BUILT_IN.contains(&p.as_str()))
                    {
                        let name = &c.value.cluster_name;
                        out.push(format!("{}/{}/{name}", scope.account, scope.region));
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// `ACCOUNT/REGION/CLUSTER` of an awaiting-capacity row.
pub(crate) fn cluster_key_of_awaiting(row: &str) -> Option<String> {
    let rest = row.strip_prefix(&keys::awaiting_prefix())?;
    let (cluster_key, _) = rest.rsplit_once('/')?;
    Some(cluster_key.to_string())
}

/// The scope and name of a cluster key of [`ControlPlane::capacity_keys`].
pub(crate) fn parse_capacity_key(key: &str) -> Option<(Scope, String)> {
    let mut it = key.splitn(3, '/');
    let (account, region, name) = (it.next()?, it.next()?, it.next()?);
    Some((Scope::new(account, region), name.to_string()))
}

/// A container instance as a capacity pass sees it: its record, and whether it runs or is about
/// to run tasks (its counters; daemon tasks alone do not count).
struct Seen {
    ci: InstanceRecord,
    busy: bool,
}

/// What an instance registered (CPU units, MiB).
fn registered(ci: &InstanceRecord) -> (i64, i64) {
    let get = |n: &str| {
        ci.registered_resources
            .iter()
            .find(|r| r.name.as_deref() == Some(n))
            .map_or(0, |r| i64::from(r.integer_value))
    };
    (get("CPU"), get("MEMORY"))
}

/// What an instance has left (CPU units, MiB).
fn remaining(ci: &InstanceRecord) -> (i64, i64) {
    let get = |n: &str| {
        ci.remaining_resources
            .iter()
            .find(|r| r.name.as_deref() == Some(n))
            .map_or(0, |r| i64::from(r.integer_value))
    };
    (get("CPU"), get("MEMORY"))
}

/// Cluster auto scaling as the runtime sees it: one pass per cluster, again every few seconds.
struct Capacity {
    cp: ControlPlane,
}

/// How often a cluster with capacity providers is looked at again.
const CAPACITY_PERIOD: Duration = Duration::from_secs(3);

impl gantry_runtime::Reconciler<String> for Capacity {
    type Error = String;

    async fn reconcile(&self, key: &String) -> std::result::Result<gantry_runtime::Action, String> {
        let Some((scope, cluster)) = parse_capacity_key(key) else {
            return Ok(gantry_runtime::Action::AwaitChange);
        };
        self.cp.capacity_pass(&scope, &cluster).await.map_err(|e| e.message)?;
        Ok(gantry_runtime::Action::Requeue(CAPACITY_PERIOD))
    }

    fn list(&self) -> Vec<String> {
        self.cp.capacity_keys()
    }
}

impl ControlPlane {
    /// Runs cluster auto scaling until `shutdown`, while `leader` says this process leads.
    pub async fn run_capacity(
        &self,
        leader: Arc<dyn gantry_runtime::Leadership>,
        shutdown: gantry_runtime::Shutdown,
    ) {
        gantry_runtime::Controller::new("capacity", self.metrics.clone())
            .resync(CAPACITY_PERIOD)
            .watches(self.store.clone(), keys::awaiting_prefix(), |e| match e.kind {
                gantry_store::EventKind::Put => cluster_key_of_awaiting(&e.kv.key).into_iter().collect(),
                gantry_store::EventKind::Delete => Vec::new(),
            })
            .run(Capacity { cp: self.clone() }, leader, shutdown)
            .await
    }
}

impl ControlPlane {
    /// The ARN of the cluster's container instance whose ec2InstanceId is `ec2_id` (an Auto
    /// Scaling group's instance), if it registered and is not INACTIVE.
    pub fn container_instance_by_ec2_id(&self, ctx: &Ctx, cluster: &str, ec2_id: &str) -> Option<String> {
        self.store
            .range(&keys::container_instance_prefix(&ctx.scope, cluster), None, usize::MAX)
            .into_iter()
            .filter_map(|kv| decode::<InstanceRecord>(&kv).ok())
            .find(|ci| ci.value.ec2_instance_id == ec2_id && ci.value.is_live())
            .map(|ci| ci.value.container_instance_arn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_cases_of_capacity_provider_reservation() {
        assert_eq!(reservation(0, 0), 100.0, "no instances, nothing needed");
        assert_eq!(reservation(3, 0), 200.0, "no instances, some needed: scale out");
        assert_eq!(reservation(0, 4), 0.0, "instances, nothing needed");
        assert_eq!(reservation(4, 4), 100.0);
        assert_eq!(reservation(5, 4), 125.0);
        assert_eq!(reservation(2, 4), 50.0);
    }

    #[test]
    fn strategies_spread_by_base_then_weight() {
        let s =
            |v: &[(&str, i64, i64)]| v.iter().map(|(p, b, w)| (p.to_string(), *b, *w)).collect::<Vec<_>>();
        let n = |v: &[(&str, usize)]| v.iter().map(|(p, c)| (p.to_string(), *c)).collect::<Vec<_>>();
        assert_eq!(split(&s(&[("a", 2, 1), ("b", 0, 3)]), 10), n(&[("a", 4), ("b", 6)]));
        assert_eq!(split(&s(&[("a", 2, 1), ("b", 0, 3)]), 1), n(&[("a", 1)]), "the base first");
        assert_eq!(
            split(&s(&[("FARGATE", 0, 1), ("FARGATE_SPOT", 0, 1)]), 3),
            n(&[("FARGATE", 2), ("FARGATE_SPOT", 1)])
        );
        assert_eq!(split(&s(&[("a", 0, 0), ("b", 0, 1)]), 4), n(&[("b", 4)]), "weight 0 takes only its base");
        assert_eq!(
            split(&s(&[("a", 1, 0)]), 3),
            n(&[("a", 3)]),
            "no weight anywhere: the first takes the rest"
        );
        assert_eq!(split(&s(&[("a", 0, 1), ("b", 0, 4)]), 10), n(&[("a", 2), ("b", 8)]));
    }

    #[test]
    fn new_instances_are_counted_by_binpacking() {
        let medium = (2048, 3840);
        assert_eq!(instances_for(&[], medium), 0);
        assert_eq!(instances_for(&[(256, 512); 7], medium), 1, "7 × 512 MiB fit in 3,840");
        assert_eq!(instances_for(&[(256, 512); 8], medium), 2);
        assert_eq!(instances_for(&[(1024, 100); 5], medium), 3, "CPU binds");
        assert_eq!(instances_for(&[(4096, 100)], medium), 1, "too large still shows demand");
    }

    #[test]
    fn desired_capacity_follows_the_reservation_within_the_steps() {
        let s = Scaling { target_capacity: 100, min_step: 1, max_step: 10_000, warmup_ms: 0 };
        assert_eq!(desired(4, 0, s, 0, 10, 0, false, false), Some(4));
        assert_eq!(desired(4, 0, s, 0, 3, 0, false, false), Some(3), "max size bounds");
        assert_eq!(desired(4, 4, s, 0, 10, 4, false, false), None, "at target");
        assert_eq!(desired(0, 4, s, 0, 10, 4, false, false), None, "below target, not yet");
        assert_eq!(desired(0, 4, s, 0, 10, 4, true, false), Some(0));
        assert_eq!(desired(0, 4, s, 1, 10, 4, true, false), Some(1), "min size bounds");
        let stepped = Scaling { target_capacity: 100, min_step: 2, max_step: 3, warmup_ms: 0 };
        assert_eq!(desired(1, 0, stepped, 0, 10, 0, false, false), Some(2), "at least the minimum step");
        assert_eq!(desired(9, 0, stepped, 0, 10, 0, false, false), Some(3), "at most the maximum step");
        let half = Scaling { target_capacity: 50, min_step: 1, max_step: 100, warmup_ms: 0 };
        assert_eq!(desired(3, 0, half, 0, 10, 0, false, false), Some(6), "target 50 keeps half free");
        assert_eq!(
            desired(4, 4, s, 0, 10, 6, false, false),
            None,
            "never lowers a desired capacity while not scaling in"
        );
    }

    #[test]
    fn instances_in_warm_up_count_as_running_and_take_the_waiting_tasks() {
        let medium = (2048, 3840);
        let now = 1_000_000;
        let fresh = Member { busy: false, launched_at_ms: now - 10_000, free: medium };
        let old = Member { busy: false, launched_at_ms: now - 400_000, free: medium };
        let busy = Member { busy: true, launched_at_ms: now - 400_000, free: (0, 0) };
        // Seven 512 MiB tasks fit the instance just launched: no new one, and M counts it.
        assert_eq!(m_and_n(&[fresh], &[(256, 512); 7], medium, now, 300_000), (1, 1, true));
        // Eight do not: one more.
        assert_eq!(m_and_n(&[fresh], &[(256, 512); 8], medium, now, 300_000), (2, 1, true));
        // Idle in warm-up counts as running while tasks wait (one that fits neither it nor a
        // busy one needs a new instance); past its warm-up, it does not.
        assert_eq!(m_and_n(&[fresh, busy], &[(4096, 512)], medium, now, 300_000), (3, 2, true));
        assert_eq!(m_and_n(&[old, busy], &[(4096, 512)], medium, now, 300_000), (2, 2, false));
        // With nothing waiting an idle instance is idle, warming or not.
        assert_eq!(m_and_n(&[fresh, busy], &[], medium, now, 300_000), (1, 2, true));
        // A warm-up of 0: nothing warms, M is the running instances plus new ones for the tasks.
        assert_eq!(m_and_n(&[fresh, busy], &[(256, 512); 7], medium, now, 0), (2, 2, false));
        assert_eq!(m_and_n(&[], &[(256, 512); 8], medium, now, 0), (2, 0, false));
    }

    #[test]
    fn no_scale_out_while_an_instance_warms_up() {
        let s = Scaling { target_capacity: 100, min_step: 1, max_step: 1, warmup_ms: 300_000 };
        assert_eq!(desired(3, 1, s, 0, 10, 1, false, true), None, "the next round waits for the warm-up");
        assert_eq!(desired(3, 1, s, 0, 10, 1, false, false), Some(2));
        assert_eq!(desired(0, 4, s, 0, 10, 4, true, true), Some(0), "scale-in is not held");
    }

    #[test]
    fn managed_instances_launch_per_task_types() {
        let r: gantry_model::InstanceRequirementsRequest =
            serde_json::from_value(serde_json::json!({"vCpuCount": {"min": 2}, "memoryMiB": {"min": 4096}}))
                .unwrap();
        let res = |t: &String| gantry_core::ec2::resources(t).unwrap();
        assert!(launches_for(&[], Some(&r), "t3.medium").is_empty());
        // Seven small tasks share one small instance; a 6 GiB one gets a larger type of its own.
        let out = launches_for(&[(256, 512); 7], Some(&r), "t3.medium");
        assert_eq!(out.iter().map(res).collect::<Vec<_>>(), vec![(2048, 3840)]);
        let mut needs = vec![(256, 512); 7];
        needs.push((1024, 6144));
        let out = launches_for(&needs, Some(&r), "t3.medium");
        assert_eq!(
            out.iter().map(res).collect::<Vec<_>>(),
            vec![(2048, 7936), (2048, 3840)],
            "largest first"
        );
        // A task no allowed type fits: the fallback, so the demand still shows.
        let capped: gantry_model::InstanceRequirementsRequest = serde_json::from_value(
            serde_json::json!({"vCpuCount": {"min": 2, "max": 2}, "memoryMiB": {"min": 0}}),
        )
        .unwrap();
        assert_eq!(launches_for(&[(8192, 512)], Some(&capped), "t3.medium"), vec!["t3.medium".to_string()]);
    }
}
