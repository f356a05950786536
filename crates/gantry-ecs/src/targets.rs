//! A service's tasks in its load balancers' target groups: ECS's ACTIVATING and DEACTIVATING.
//!
//! A task launched for a service (or task set) with `loadBalancers` carries its bindings
//! ([`TaskTargets`]). The agent's RUNNING report makes it ACTIVATING (`ops/tasks.rs`); then
//! the scheduler's pass, through [`ControlPlane::move_targets`]:
//! 1. works out its targets (an `ip` group: the task's awsvpc address and the container port;
//!    an `instance` group: its container instance's EC2 instance ID and the host port the
//!    container port is bound to) and writes them into the task record, so that whatever
//!    happens next knows what to deregister;
//! 2. registers them (ELBv2's RegisterTargets, through the `TargetRegistry` port) and makes
//!    the task RUNNING;
//! 3. once the task is asked to stop (DEACTIVATING: StopTask, scale-in, a deployment, an
//!    unhealthy target), deregisters them and waits until ELB has forgotten them (the target
//!    group's deregistration delay, or sooner when nothing is in flight), then makes the task
//!    STOPPING and wakes its agent, which stops the containers;
//! 4. deregisters the targets of a task that stopped on its own.
//!
//! Each step is one compare-and-swap write of the task record; the port calls between them
//! are idempotent (registering a registered target, or deregistering a gone one, changes
//! nothing), so a pass that loses its write just does the step again. Target health is read
//! on every pass ([`ControlPlane::lb_health`]) and turned into the scheduler's
//! [`sched::LbHealth`]: health lives in the data plane's memory, not the store, so a service
//! with targets asks to be looked at again soon ([`LB_POLL_MS`], [`LB_WATCH_MS`]).

use crate::ops::instance_record::InstanceRecord;
use crate::ops::tasks::{BoundTarget, TaskRecord, TaskTargets};
use crate::records::load;
use crate::table::{Before, TxnExt};
use crate::{ControlPlane, Ctx, keys};
use gantry_core::{EcsError, ErrorKind, Result, TaskStatus};
use gantry_ports::lb::{TargetRef, TargetRegistry, TargetState, TargetType};
use gantry_sched as sched;
use gantry_store::Txn;
use std::collections::BTreeMap;
use std::sync::Arc;

/// While a task of the service is activating, deactivating or not yet healthy in its target
/// groups: how soon to look again (milliseconds). Health and draining live in the data plane,
/// which wakes nobody: each step of a rolling deployment (healthy, drained) waits for this poll,
/// so it is short (a pass over one service's records from the mirror is cheap).
pub(crate) const LB_POLL_MS: i64 = 250;
/// While a service has tasks behind a load balancer: how soon to look at their health again.
pub(crate) const LB_WATCH_MS: i64 = 5_000;

/// What [`ControlPlane::move_targets`] did.
#[derive(Debug, Default)]
pub(crate) struct Moved {
    /// A task record was written: the pass should start again from what is stored.
    pub changed: bool,
    /// Look again after this many milliseconds.
    pub wake_in: Option<i64>,
    pub events: Vec<String>,
}

impl Moved {
    fn wake(&mut self, ms: i64) {
        self.wake_in = Some(self.wake_in.map_or(ms, |w| w.min(ms)));
    }
}

/// Counts of targets per target group, for ECS's events.
type PerGroup = BTreeMap<String, usize>;

fn refs(targets: &[BoundTarget], group: &str) -> Vec<TargetRef> {
    targets
        .iter()
        .filter(|t| t.target_group_arn == group)
        .map(|t| TargetRef { id: t.id.clone(), port: t.port })
        .collect()
}

fn groups(targets: &[BoundTarget]) -> Vec<String> {
    let mut g: Vec<String> = targets.iter().map(|t| t.target_group_arn.clone()).collect();
    g.dedup();
    g.sort();
    g.dedup();
    g
}

fn status_of(rec: &TaskRecord) -> Option<TaskStatus> {
    Some(rec.task.last_status)
}

fn port_error(message: String) -> EcsError {
    EcsError::new(ErrorKind::ServerException, message)
}

impl ControlPlane {
    fn registry(&self) -> Option<Arc<dyn TargetRegistry>> {
        self.target_groups.get().cloned()
    }

    /// Whether service tasks record load balancer bindings: only when a registry is wired (a
    /// control plane without ELBv2 runs them as if they had none).
    pub(crate) fn registers_targets(&self) -> bool {
        self.target_groups.get().is_some()
    }

    /// Moves the service's tasks through their load balancer states (see the module's doc),
    /// one step per task.
    pub(crate) async fn move_targets(
        &self,
        ctx: &Ctx,
        cluster: &str,
        service: &str,
        records: &[(String, Option<TaskRecord>)],
    ) -> Result<Moved> {
        let mut out = Moved::default();
        let Some(registry) = self.registry() else { return Ok(out) };
        let (mut registered, mut deregistered) = (PerGroup::new(), PerGroup::new());
        let mut draining_tasks = 0;
        for (id, rec) in records {
            let Some(rec) = rec else { continue };
            let Some(tt) = &rec.targets else { continue };
            let stop_wanted = rec.task.stop_wanted();
            match status_of(rec) {
                Some(TaskStatus::Activating) if !stop_wanted && !tt.registered => {
                    out.wake(LB_POLL_MS);
                    if tt.targets.is_empty() {
                        let Some(targets) = self.targets_of(ctx, cluster, rec, registry.as_ref())? else {
                            continue; // its address is not known yet
                        };
                        out.changed |= self
                            .update_task(ctx, cluster, id, |r| {
                                let activating = status_of(r) == Some(TaskStatus::Activating);
                                let t = r.targets.as_mut()?;
                                if !activating || !t.targets.is_empty() {
                                    return None;
                                }
                                t.targets = targets.clone();
                                Some(false)
                            })
                            .await?;
                        continue;
                    }
                    for g in groups(&tt.targets) {
                        registry
                            .register(&ctx.scope, &g, &refs(&tt.targets, &g))
                            .await
                            .map_err(port_error)?;
                    }
                    let now = self.clock.now();
                    let written = self
                        .update_task(ctx, cluster, id, |r| {
                            let t = r.targets.as_mut()?;
                            if t.registered || t.targets.is_empty() {
                                return None;
                            }
                            t.registered = true;
                            if status_of(r) == Some(TaskStatus::Activating) && !r.task.stop_wanted() {
                                r.task.last_status = TaskStatus::Running;
                                r.task.started_at = Some(now);
                            }
                            Some(false)
                        })
                        .await?;
                    if written {
                        out.changed = true;
                        for g in groups(&tt.targets) {
                            *registered.entry(g.clone()).or_default() += refs(&tt.targets, &g).len();
                        }
                    }
                }
                Some(TaskStatus::Deactivating) if !tt.deregistered => {
                    out.wake(LB_POLL_MS);
                    self.deregister_all(ctx, registry.as_ref(), tt).await?;
                    if self.mark_deregistered(ctx, cluster, id).await? {
                        out.changed = true;
                        draining_tasks += 1;
                        for g in groups(&tt.targets) {
                            *deregistered.entry(g.clone()).or_default() += refs(&tt.targets, &g).len();
                        }
                    }
                }
                Some(TaskStatus::Deactivating) => {
                    // Deregistered: STOPPING once ELB has forgotten every target (draining over).
                    let gone = tt.targets.iter().all(|t| {
                        let r = TargetRef { id: t.id.clone(), port: t.port };
                        registry.health(&ctx.scope, &t.target_group_arn, &r).is_none()
                    });
                    if !gone {
                        out.wake(LB_POLL_MS);
                        continue;
                    }
                    let mut node = None;
                    let written = self
                        .update_task(ctx, cluster, id, |r| {
                            if status_of(r) != Some(TaskStatus::Deactivating) {
                                return None;
                            }
                            r.task.last_status = TaskStatus::Stopping;
                            node = Some(r.node.clone());
                            Some(true)
                        })
                        .await?;
                    if written {
                        out.changed = true;
                        if let Some(n) = node {
                            self.agents.bump(&n);
                        }
                    }
                }
                Some(s) if s > TaskStatus::Deactivating && tt.must_deactivate() => {
                    // Stopped (or stopping) without going through DEACTIVATING: its containers
                    // exited. Its targets go at once.
                    self.deregister_all(ctx, registry.as_ref(), tt).await?;
                    if self.mark_deregistered(ctx, cluster, id).await? {
                        out.changed = true;
                        for g in groups(&tt.targets) {
                            *deregistered.entry(g.clone()).or_default() += refs(&tt.targets, &g).len();
                        }
                    }
                }
                _ => {}
            }
        }
        for (g, n) in registered {
            out.events.push(format!("(service {service}) registered {n} targets in (target-group {g})"));
        }
        if draining_tasks > 0 {
            out.events.push(format!(
                "(service {service}) has begun draining connections on {draining_tasks} tasks."
            ));
        }
        for (g, n) in deregistered {
            out.events.push(format!("(service {service}) deregistered {n} targets in (target-group {g})"));
        }
        Ok(out)
    }

    async fn deregister_all(&self, ctx: &Ctx, registry: &dyn TargetRegistry, tt: &TaskTargets) -> Result<()> {
        for g in groups(&tt.targets) {
            match registry.deregister(&ctx.scope, &g, &refs(&tt.targets, &g)).await {
                Ok(()) => {}
                // A target group deleted since has nothing left to drain.
                Err(_) if registry.target_group(&ctx.scope, &g).is_none() => {}
                Err(e) => return Err(port_error(e)),
            }
        }
        Ok(())
    }

    async fn mark_deregistered(&self, ctx: &Ctx, cluster: &str, id: &str) -> Result<bool> {
        self.update_task(ctx, cluster, id, |r| {
            let t = r.targets.as_mut()?;
            if t.deregistered {
                return None;
            }
            t.deregistered = true;
            Some(false)
        })
        .await
    }

    /// Changes a task record with `f` in one compare-and-swap write: `f` returns `None` to write
    /// nothing, or whether the task's agent must hear of the change. True if written.
    async fn update_task(
        &self,
        ctx: &Ctx,
        cluster: &str,
        id: &str,
        mut f: impl FnMut(&mut TaskRecord) -> Option<bool>,
    ) -> Result<bool> {
        self.retry(|| {
            let Some(mut rec) = self.load_task(ctx, cluster, id)? else { return Ok((Txn::new(), false)) };
            let before = Before::of(&ctx.scope, &rec);
            let Some(wake) = f(&mut rec.value) else { return Ok((Txn::new(), false)) };
            rec.value.task.version += 1;
            let txn = Txn::new().put_record(&ctx.scope, &before, &rec.value);
            let txn = if wake { self.reassign(txn, &rec.value.node, &rec.key) } else { txn };
            Ok((txn, true))
        })
        .await
    }

    /// The task's targets, one per binding, or `None` while its address (or host port) is not
    /// known. A binding whose target group is gone is left out.
    fn targets_of(
        &self,
        ctx: &Ctx,
        cluster: &str,
        rec: &TaskRecord,
        registry: &dyn TargetRegistry,
    ) -> Result<Option<Vec<BoundTarget>>> {
        let Some(tt) = &rec.targets else { return Ok(Some(Vec::new())) };
        let t = &rec.task;
        let mut out = Vec::new();
        for b in &tt.bindings {
            let (Some(arn), Some(port)) = (b.target_group_arn.as_deref(), b.container_port) else { continue };
            let Some(tg) = registry.target_group(&ctx.scope, arn) else { continue };
            let target = match tg.target_type {
                TargetType::Ip => {
                    let ip = t
                        .attachments
                        .iter()
                        .flat_map(|a| a.details.iter().flatten())
                        .find(|d| d.name.as_deref() == Some("privateIPv4Address"))
                        .and_then(|d| d.value.clone())
                        .filter(|v| !v.is_empty());
                    let Some(ip) = ip else { return Ok(None) };
                    (ip, port)
                }
                TargetType::Instance => {
                    let host_port = t
                        .containers
                        .iter()
                        .filter(|c| Some(c.name.as_str()) == b.container_name.as_deref())
                        .flat_map(|c| c.network_bindings.iter().flatten())
                        .find(|nb| nb.container_port == Some(port))
                        .and_then(|nb| nb.host_port);
                    let instance = t.container_instance_arn.as_deref().and_then(|a| a.rsplit('/').next());
                    let ec2 = match instance {
                        Some(i) => load::<InstanceRecord>(
                            &*self.store,
                            &keys::container_instance(&ctx.scope, cluster, i),
                        )?
                        .map(|ci| ci.value.ec2_instance_id),
                        None => None,
                    };
                    let (Some(id), Some(hp)) = (ec2, host_port) else { return Ok(None) };
                    (id, hp)
                }
            };
            let Ok(port) = u16::try_from(target.1) else { continue };
            out.push(BoundTarget { target_group_arn: arn.to_string(), id: target.0, port });
        }
        Ok(Some(out))
    }

    /// How a task's targets are doing, for the scheduler: `None` for a task without targets.
    pub(crate) fn lb_health(&self, ctx: &Ctx, rec: &TaskRecord) -> sched::LbHealth {
        let (Some(tt), Some(registry)) = (&rec.targets, self.registry()) else {
            return sched::LbHealth::None;
        };
        if !tt.registered {
            return sched::LbHealth::Pending;
        }
        let mut pending = false;
        for t in &tt.targets {
            let r = TargetRef { id: t.id.clone(), port: t.port };
            match registry.health(&ctx.scope, &t.target_group_arn, &r) {
                Some(h) if h.state == TargetState::Healthy => {}
                // Health checks disabled: ELB sends it traffic, and so it counts.
                Some(h) if h.state == TargetState::Unavailable => {}
                Some(h) if h.state == TargetState::Unhealthy => {
                    let reason = h
                        .description
                        .or_else(|| h.reason.map(|r| r.as_str().to_string()))
                        .unwrap_or_else(|| "Health checks failed".into());
                    return sched::LbHealth::Unhealthy {
                        target_group: t.target_group_arn.clone(),
                        port: t.port,
                        reason,
                    };
                }
                _ => pending = true,
            }
        }
        if pending { sched::LbHealth::Pending } else { sched::LbHealth::Healthy }
    }
}

/// The attribute in which an agent reports its host's address (`gantry agent --host-address`, or
/// the address it reaches its server from).
pub const HOST_ADDRESS_ATTRIBUTE: &str = "gantry.host-address";

/// ELBv2's `instance` targets are reached at their container instance's host address.
impl gantry_ports::lb::InstanceAddresses for ControlPlane {
    fn addresses(&self, scope: &gantry_core::Scope) -> std::collections::HashMap<String, std::net::IpAddr> {
        let instances = match crate::records::load_prefix::<InstanceRecord>(
            &*self.store,
            &keys::container_instances_of(scope),
        ) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(error = %e.message, "container instances unreadable for instance targets");
                return Default::default();
            }
        };
        instances
            .into_iter()
            .filter_map(|ci| {
                let ci = ci.value;
                let address = ci.attribute(HOST_ADDRESS_ATTRIBUTE)?.parse().ok()?;
                Some((ci.ec2_instance_id, address))
            })
            .collect()
    }

    fn affects(&self, key: &str) -> bool {
        keys::is_container_instance(key)
    }
}
