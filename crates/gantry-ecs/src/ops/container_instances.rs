//! Container instances: RegisterContainerInstance, DescribeContainerInstances,
//! ListContainerInstances, DeregisterContainerInstance.

use super::instance_record::InstanceRecord;
use super::{check_batch, check_include, includes};
use crate::records::{encode, load};
use crate::table::{Before, TxnExt};
use crate::{ControlPlane, Ctx, Stored, keys};
use gantry_core::page::{PageRequest, paginate};
use gantry_core::validate::validate_tags;
use gantry_core::{AgentUpdateStatus, Arn, EcsError, InstanceStatus, Result, Scope};
use gantry_model::*;
use gantry_store::Txn;

/// Ports the ECS agent reserves on every instance (SSH, Docker, the agent's introspection API).
const RESERVED_PORTS: &[&str] = &["22", "2375", "2376", "51678", "51679"];

/// The most custom attributes an instance may carry.
pub const MAX_CUSTOM_ATTRIBUTES: usize = 10;

/// Whether an attribute is one ECS or its agent defines (these do not count against the limit).
pub fn is_builtin_attribute(name: &str) -> bool {
    name.starts_with("ecs.") || name.starts_with("com.amazonaws.ecs.")
}

/// Validates an attribute's name and value with ECS's character rules.
pub fn check_attribute(a: &Attribute) -> Result<()> {
    let name_ok = !a.name.is_empty()
        && a.name.len() <= 128
        && a.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_/\\.".contains(c));
    if !name_ok {
        return Err(EcsError::invalid(format!(
            "Invalid attribute name '{}': up to 128 letters, numbers, hyphens, underscores, forward slashes, back slashes, or periods are allowed.",
            a.name
        )));
    }
    if let Some(v) = &a.value {
        let ok = !v.is_empty()
            && v.len() <= 128
            && !v.starts_with(' ')
            && !v.ends_with(' ')
            && v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@/\\: ".contains(c));
        if !ok {
            return Err(EcsError::invalid(format!(
                "Invalid attribute value '{v}' for '{}': up to 128 letters, numbers, hyphens, underscores, periods, at signs, forward slashes, back slashes, colons, or spaces are allowed, not starting or ending with a space.",
                a.name
            )));
        }
    }
    Ok(())
}

fn custom_count(attrs: &[Attribute]) -> usize {
    attrs.iter().filter(|a| !is_builtin_attribute(&a.name)).count()
}

pub(crate) fn check_custom_limit(attrs: &[Attribute]) -> Result<()> {
    if custom_count(attrs) > MAX_CUSTOM_ATTRIBUTES {
        return Err(EcsError::new(
            gantry_core::ErrorKind::AttributeLimitExceededException,
            format!(
                "You can apply up to {MAX_CUSTOM_ATTRIBUTES} custom attributes for each resource. You can view the attributes of a resource with ListAttributes. You can remove existing attributes on a resource with DeleteAttributes."
            ),
        ));
    }
    Ok(())
}

/// Sets (or replaces, by name) attributes on an instance's list.
pub(crate) fn upsert_attributes(attrs: &mut Vec<Attribute>, new: &[Attribute]) {
    for a in new {
        let a =
            Attribute { name: a.name.clone(), value: a.value.clone(), target_type: None, target_id: None };
        match attrs.iter_mut().find(|x| x.name == a.name) {
            Some(x) => *x = a,
            None => attrs.push(a),
        }
    }
}

/// The ID in a container instance reference (ID or ARN), checked against the cluster.
pub(crate) fn instance_id(ctx: &Ctx, cluster: &str, reference: &str) -> Option<String> {
    if reference.starts_with("arn:") {
        let a = Arn::parse(reference)?;
        if a.resource_type != "container-instance"
            || a.region != ctx.scope.region
            || a.account != ctx.scope.account
        {
            return None;
        }
        // Long form: CLUSTER/ID; the old short form is just ID.
        match a.resource.split_once('/') {
            Some((c, id)) if c == cluster => Some(id.to_string()),
            Some(_) => None,
            None => Some(a.resource),
        }
    } else {
        Some(reference.to_string())
    }
}

/// One status's rows of the `ci-status/` index, read in chunks, in ID order.
struct IdCursor {
    prefix: String,
    after: Option<String>,
    buffered: std::collections::VecDeque<String>,
    done: bool,
}

impl IdCursor {
    /// The next ID, reading the next chunk when the last one is used up.
    fn head(&mut self, store: &dyn gantry_store::Store) -> Option<&String> {
        if self.buffered.is_empty() && !self.done {
            let chunk = store.range(&self.prefix, self.after.as_deref(), 128);
            self.done = chunk.len() < 128;
            if let Some(last) = chunk.last() {
                self.after = Some(last.key.clone());
            }
            self.buffered.extend(chunk.into_iter().map(|kv| kv.key[self.prefix.len()..].to_string()));
        }
        self.buffered.front()
    }
}

impl ControlPlane {
    /// What an instance registering `registered` has left, given the tasks it still holds: an
    /// agent that restarts and registers again must not free what they use (GPU IDs above all).
    fn remaining_after_tasks(&self, arn: &str, registered: &[Resource]) -> Result<Vec<Resource>> {
        let mut remaining = registered.to_vec();
        for kv in self.store.range(&keys::node_tasks_prefix(arn), None, usize::MAX) {
            let (key, _) = keys::node_task_value_parts(&kv.value);
            if let Some(t) = load::<super::tasks::TaskRecord>(&*self.store, key)?
                && !t.value.task.is_stopped()
            {
                crate::reservation::apply(&mut remaining, &t.value.reserved, -1);
            }
        }
        Ok(remaining)
    }

    /// How many instances of a cluster are registered (ACTIVE or DRAINING).
    /// The cluster's ACTIVE and DRAINING instances: its counter, which the record layer keeps in
    /// the instances' own transactions (one read, whatever the fleet's size).
    pub(crate) fn registered_instances(&self, ctx: &Ctx, cluster: &str) -> usize {
        self.cluster_counter(ctx, cluster, super::instance_record::REGISTERED_INSTANCES).max(0) as usize
    }

    pub(crate) fn load_instance(
        &self,
        ctx: &Ctx,
        cluster: &str,
        reference: &str,
    ) -> Result<Option<Stored<InstanceRecord>>> {
        match instance_id(ctx, cluster, reference) {
            Some(id) => load(&*self.store, &keys::container_instance(&ctx.scope, cluster, &id)),
            None => Ok(None),
        }
    }

    pub async fn register_container_instance(
        &self,
        ctx: &Ctx,
        req: RegisterContainerInstanceRequest,
    ) -> Result<RegisterContainerInstanceResponse> {
        let tags = req.tags.clone().unwrap_or_default();
        validate_tags(&tags)?;
        let attrs = req.attributes.clone().unwrap_or_default();
        for a in &attrs {
            check_attribute(a)?;
        }
        check_custom_limit(&attrs)?;
        let mut resources = req.total_resources.clone().unwrap_or_default();
        for r in &resources {
            if !matches!(r.r#type.as_deref(), Some("INTEGER" | "LONG" | "DOUBLE" | "STRINGSET")) {
                return Err(EcsError::invalid(format!(
                    "Invalid resource type '{}' for '{}': should be one of [INTEGER,LONG,DOUBLE,STRINGSET].",
                    r.r#type.as_deref().unwrap_or_default(),
                    r.name.as_deref().unwrap_or_default()
                )));
            }
        }
        for (name, default) in [("PORTS", RESERVED_PORTS), ("PORTS_UDP", &[][..])] {
            if !resources.iter().any(|r| r.name.as_deref() == Some(name)) {
                resources.push(Resource {
                    name: Some(name.into()),
                    r#type: Some("STRINGSET".into()),
                    string_set_value: Some(default.iter().map(|s| s.to_string()).collect()),
                    ..Default::default()
                });
            }
        }
        let doc: serde_json::Value = req
            .instance_identity_document
            .as_deref()
            .map(|d| {
                serde_json::from_str(d)
                    .map_err(|_| EcsError::invalid("instanceIdentityDocument is not a valid JSON document."))
            })
            .transpose()?
            .unwrap_or(serde_json::Value::Null);
        let ec2_id = doc
            .get("instanceId")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| format!("i-{}", &self.ids.hex_id()[..17]));
        let new_id = self.ids.hex_id();
        let now = self.clock.now();
        let out = self
            .retry(|| {
                let cluster = self.active_cluster(ctx, req.cluster.as_deref())?;
                let cname = cluster.value.cluster_name.clone();
                let existing = match &req.container_instance_arn {
                    Some(r) => Some(self.load_instance(ctx, &cname, r)?.ok_or_else(|| {
                        EcsError::invalid(format!(
                            "Container instance '{r}' was not found in cluster '{cname}'."
                        ))
                    })?),
                    None => None,
                };
                let (before, inst) = match existing {
                    Some(mut e) => {
                        let before = InstanceRecord::before(&ctx.scope, &e);
                        let i = &mut e.value;
                        i.version += 1;
                        i.registered_resources = resources.clone();
                        i.remaining_resources =
                            self.remaining_after_tasks(&i.container_instance_arn, &resources)?;
                        i.version_info = req.version_info.clone().or(i.version_info.take());
                        // An agent that took an update up registers again once it re-executed:
                        // running the server's binary it is UPDATED, else the update FAILED.
                        if matches!(
                            i.agent_update_status,
                            Some(
                                AgentUpdateStatus::Staging
                                    | AgentUpdateStatus::Staged
                                    | AgentUpdateStatus::Updating
                            )
                        ) {
                            let hash = i.version_info.as_ref().and_then(|v| v.agent_hash.as_deref());
                            let server = self.agent_binary.get().map(|b| b.sha256.as_str());
                            let done = hash.is_some() && hash == server;
                            i.agent_update_status = Some(if done {
                                AgentUpdateStatus::Updated
                            } else {
                                AgentUpdateStatus::Failed
                            });
                        }
                        upsert_attributes(&mut i.attributes, &attrs);
                        check_custom_limit(&i.attributes)?;
                        i.status = InstanceStatus::Active;
                        (before, e.value)
                    }
                    None => {
                        let mut a = Vec::new();
                        upsert_attributes(&mut a, &attrs);
                        let inst = InstanceRecord {
                            container_instance_arn: ctx.scope.container_instance_arn(&cname, &new_id),
                            ec2_instance_id: ec2_id.clone(),
                            capacity_provider_name: None,
                            version: 1,
                            version_info: req.version_info.clone(),
                            remaining_resources: resources.clone(),
                            registered_resources: resources.clone(),
                            status: InstanceStatus::Active,
                            status_reason: None,
                            agent_update_status: None,
                            attributes: a,
                            registered_at: now,
                            attachments: vec![],
                            tags: tags.clone(),
                            health_status: None,
                            gpu_devices: None,
                        };
                        (Before::absent(), inst)
                    }
                };
                let txn = Txn::new()
                    .when(&cluster.key, cluster.mod_revision)
                    // Rewriting the cluster makes a concurrent DeleteCluster re-check.
                    .put(&cluster.key, encode(&cluster.value))
                    .put_record(&ctx.scope, &before, &inst);
                Ok((txn, inst))
            })
            .await?;
        Ok(RegisterContainerInstanceResponse { container_instance: Some(out.to_wire()) })
    }

    pub fn describe_container_instances(
        &self,
        ctx: &Ctx,
        req: DescribeContainerInstancesRequest,
    ) -> Result<DescribeContainerInstancesResponse> {
        check_include("include", req.include.as_ref(), &["TAGS", "CONTAINER_INSTANCE_HEALTH"])?;
        if req.container_instances.is_empty() {
            return Err(EcsError::invalid("Container Instances cannot be empty."));
        }
        check_batch("containerInstances", req.container_instances.len(), 100)?;
        let cluster = self.active_cluster(ctx, req.cluster.as_deref())?;
        let cname = cluster.value.cluster_name;
        let mut found = Vec::new();
        let mut failures = Vec::new();
        for r in &req.container_instances {
            match self.load_instance(ctx, &cname, r)? {
                Some(i) => {
                    let mut i = self.render_instance(&i.value);
                    if !includes(req.include.as_ref(), "TAGS") {
                        i.tags = None;
                    }
                    found.push(i);
                }
                None => failures.push(super::missing(r, |r| ctx.scope.container_instance_arn(&cname, r))),
            }
        }
        Ok(DescribeContainerInstancesResponse { container_instances: Some(found), failures: Some(failures) })
    }

    pub fn list_container_instances(
        &self,
        ctx: &Ctx,
        req: ListContainerInstancesRequest,
    ) -> Result<ListContainerInstancesResponse> {
        let page = PageRequest::new(req.max_results, req.next_token.as_deref(), 100, 100)?;
        let wanted = match req.status.as_deref() {
            None => None,
            Some(s) => match InstanceStatus::parse(s) {
                Some(st) if st != InstanceStatus::Inactive => Some(st),
                _ => {
                    return Err(EcsError::invalid(format!(
                        "status should be one of [ACTIVE,DRAINING,REGISTERING,DEREGISTERING,REGISTRATION_FAILED], but was '{s}'."
                    )));
                }
            },
        };
        let filter = match req.filter.as_deref().filter(|f| !f.trim().is_empty()) {
            Some(f) => Some(gantry_core::query::Filter::parse(f)?),
            None => None,
        };
        let cluster = self.active_cluster(ctx, req.cluster.as_deref())?;
        let cname = cluster.value.cluster_name;
        let prefix = keys::container_instance_prefix(&ctx.scope, &cname);
        // The status index's rows of the statuses asked for (every one but INACTIVE by default:
        // deregistered instances are not read), merged in ID order, which is the listing's.
        let statuses: Vec<InstanceStatus> = match wanted {
            Some(s) => vec![s],
            None => InstanceStatus::ALL.iter().copied().filter(|s| *s != InstanceStatus::Inactive).collect(),
        };
        let after_id = page.after.as_deref().and_then(|a| a.strip_prefix(&prefix));
        let mut cursors: Vec<IdCursor> = statuses
            .iter()
            .map(|st| {
                let p = keys::ci_status_prefix(&ctx.scope, &cname, st.as_str());
                let after = after_id.map(|id| format!("{p}{id}"));
                IdCursor { prefix: p, after, buffered: Default::default(), done: false }
            })
            .collect();
        let mut out = Vec::new();
        while out.len() <= page.limit {
            // The smallest ID any status has next.
            let mut next: Option<(usize, String)> = None;
            for (n, c) in cursors.iter_mut().enumerate() {
                if let Some(id) = c.head(&*self.store)
                    && next.as_ref().is_none_or(|(_, best)| id < best)
                {
                    next = Some((n, id.clone()));
                }
            }
            let Some((n, id)) = next else { break };
            cursors[n].buffered.pop_front();
            let Some(i) = load::<InstanceRecord>(&*self.store, &format!("{prefix}{id}"))? else {
                continue;
            };
            let keep = filter.as_ref().is_none_or(|f| {
                let attrs = &i.value.attributes;
                f.matches(|n| attrs.iter().find(|a| a.name == n).map(|a| a.value.as_deref()))
            });
            if keep {
                out.push(i);
            }
        }
        let (items, next) = paginate(out, page.limit, |i| i.key.clone());
        Ok(ListContainerInstancesResponse {
            container_instance_arns: Some(
                items.into_iter().map(|i| i.value.container_instance_arn).collect(),
            ),
            next_token: next,
        })
    }

    pub async fn deregister_container_instance(
        &self,
        ctx: &Ctx,
        req: DeregisterContainerInstanceRequest,
    ) -> Result<DeregisterContainerInstanceResponse> {
        let force = req.force.unwrap_or(false);
        let out = self
            .retry(|| {
                let cluster = self.active_cluster(ctx, req.cluster.as_deref())?;
                let cname = cluster.value.cluster_name;
                let mut i = match self.load_instance(ctx, &cname, &req.container_instance)? {
                    Some(i) if i.value.is_live() => i,
                    _ => {
                        return Err(EcsError::invalid(format!(
                            "Container instance '{}' is not registered in cluster '{cname}'.",
                            req.container_instance
                        )));
                    }
                };
                // The instance's tasks are counted by its counters (the stored record's counts are
                // not kept); the transaction is guarded by the counters as read, so a task placed
                // meanwhile makes it read again.
                let mut txn = Txn::new();
                if !force {
                    let id = i.value.id();
                    let mut tasks = 0;
                    for what in ["running", "pending"] {
                        let key = keys::instance_count(&ctx.scope, &cname, id, what);
                        let kv = self.store.get(&key);
                        tasks += kv.as_ref().map_or(0, |kv| gantry_store::counter(&kv.value));
                        txn = txn.when(&key, kv.map_or(0, |kv| kv.mod_revision));
                    }
                    if tasks > 0 {
                        return Err(EcsError::invalid("Found running tasks on the instance."));
                    }
                }
                let before = InstanceRecord::before(&ctx.scope, &i);
                i.value.status = InstanceStatus::Inactive;
                let txn = txn.put_record(&ctx.scope, &before, &i.value);
                let txn = txn.delete(keys::agent_update(&i.value.container_instance_arn));
                Ok((txn, i.value))
            })
            .await?;
        Ok(DeregisterContainerInstanceResponse { container_instance: Some(out.to_wire()) })
    }
}

/// The agent version this server ships.
pub const SERVER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The `agentUpdateStatus` values of an update under way.
const UPDATE_IN_PROGRESS: &[AgentUpdateStatus] = &[
    AgentUpdateStatus::Pending,
    AgentUpdateStatus::Staging,
    AgentUpdateStatus::Staged,
    AgentUpdateStatus::Updating,
];

impl ControlPlane {
    /// UpdateContainerAgent. An agent is up to date when it runs the server's binary: its
    /// `versionInfo.agentHash` is the SHA-256 of the server's executable
    /// (NoUpdateAvailableException). One that reports no hash cannot be judged
    /// (MissingVersionException), one already updating is UpdateInProgressException. Otherwise
    /// the instance's `agentUpdateStatus` becomes PENDING and the update is announced to its
    /// agent on its next poll; the agent reports STAGING, STAGED, UPDATING (or FAILED) and, once
    /// it registers again running the server's binary, the instance reads UPDATED.
    pub async fn update_container_agent(
        &self,
        ctx: &Ctx,
        req: UpdateContainerAgentRequest,
    ) -> Result<UpdateContainerAgentResponse> {
        let binary = self.agent_binary.get().cloned();
        let out = self
            .retry(|| {
                let cluster = self.active_cluster(ctx, req.cluster.as_deref())?;
                let cname = cluster.value.cluster_name;
                let mut i = match self.load_instance(ctx, &cname, &req.container_instance)? {
                    Some(i) if i.value.is_live() => i,
                    _ => {
                        return Err(EcsError::invalid(format!(
                            "Container instance '{}' is not registered in cluster '{cname}'.",
                            req.container_instance
                        )));
                    }
                };
                if i.value.agent_update_status.is_some_and(|s| UPDATE_IN_PROGRESS.contains(&s)) {
                    return Err(EcsError::new(
                        gantry_core::ErrorKind::UpdateInProgressException,
                        "There is already a current agent update in progress.",
                    ));
                }
                let arn = i.value.container_instance_arn.clone();
                let hash = i
                    .value
                    .version_info
                    .as_ref()
                    .and_then(|v| v.agent_hash.as_deref())
                    .filter(|h| !h.is_empty());
                let Some(hash) = hash else {
                    return Err(EcsError::new(
                        gantry_core::ErrorKind::MissingVersionException,
                        format!("The container instance {arn} does not report its agent's version (versionInfo.agentHash)."),
                    ));
                };
                let Some(binary) = binary.as_ref().filter(|b| b.sha256 != hash) else {
                    return Err(EcsError::new(
                        gantry_core::ErrorKind::NoUpdateAvailableException,
                        format!(
                            "There is no update available for the agent of container instance {arn}: it runs the server's agent ({hash})."
                        ),
                    ));
                };
                let before = InstanceRecord::before(&ctx.scope, &i);
                i.value.agent_update_status = Some(AgentUpdateStatus::Pending);
                i.value.version += 1;
                let update = gantry_core::protocol::AgentUpdate { sha256: binary.sha256.clone(), size: binary.size };
                let txn = Txn::new()
                    .put_record(&ctx.scope, &before, &i.value)
                    .put(keys::agent_update(&arn), encode(&update));
                Ok((txn, i.value))
            })
            .await?;
        // The announcement wakes the node's poll on whichever server it polls, through the
        // watch on `/_ecs/agent-update/` (here too, without a watch).
        self.agents.bump(&out.container_instance_arn);
        Ok(UpdateContainerAgentResponse { container_instance: Some(self.render_instance(&out)) })
    }

    /// The update announced to `node`'s agent and not taken up yet, if any (what its poll
    /// carries).
    pub fn agent_update_for(&self, node: &str) -> Option<gantry_core::protocol::AgentUpdate> {
        load(&*self.store, &keys::agent_update(node)).ok().flatten().map(|u: Stored<_>| u.value)
    }

    /// An agent's progress through its update: STAGING (it took the update up), STAGED,
    /// UPDATING (it re-executes itself next) or FAILED. Only an instance with an update under
    /// way moves; its announcement is withdrawn once the agent has taken it up.
    pub async fn report_agent_update(&self, report: gantry_core::protocol::AgentUpdateReport) -> Result<()> {
        let node = report.node.as_str();
        let bad_node = || EcsError::invalid(format!("Invalid container instance ARN: {node}"));
        let a = Arn::parse(node).filter(|a| a.resource_type == "container-instance").ok_or_else(bad_node)?;
        let (cname, id) = a.resource.split_once('/').ok_or_else(bad_node)?;
        let ctx = Ctx::root(Scope::new(a.account.clone(), a.region.clone()));
        let status = report.status.as_str();
        let reported = match AgentUpdateStatus::parse(status) {
            Some(
                s @ (AgentUpdateStatus::Staging
                | AgentUpdateStatus::Staged
                | AgentUpdateStatus::Updating
                | AgentUpdateStatus::Failed),
            ) => s,
            _ => {
                return Err(EcsError::invalid(format!(
                    "Invalid agentUpdateStatus '{status}': an agent reports STAGING, STAGED, UPDATING or FAILED."
                )));
            }
        };
        self.retry(|| {
            let mut i = match self.load_instance(&ctx, cname, id)? {
                Some(i) if i.value.is_live() => i,
                _ => {
                    return Err(EcsError::invalid(format!(
                        "Container instance '{node}' is not registered in cluster '{cname}'."
                    )));
                }
            };
            if !i.value.agent_update_status.is_some_and(|s| UPDATE_IN_PROGRESS.contains(&s)) {
                return Err(EcsError::invalid(format!(
                    "Container instance '{node}' has no agent update in progress."
                )));
            }
            let before = InstanceRecord::before(&ctx.scope, &i);
            i.value.agent_update_status = Some(reported);
            i.value.version += 1;
            let txn = Txn::new().put_record(&ctx.scope, &before, &i.value).delete(keys::agent_update(node));
            Ok((txn, ()))
        })
        .await?;
        match (status, report.reason.as_deref()) {
            ("FAILED", reason) => {
                tracing::warn!(instance = %node, reason = reason.unwrap_or("unknown"), "an agent update failed")
            }
            _ => tracing::info!(instance = %node, status, "agent update"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::parse;
    use crate::table::Record;
    use gantry_core::Timestamp;
    use serde_json::{Value, json};

    const ARN: &str =
        "arn:aws:ecs:us-east-1:000000000000:container-instance/prod/19597061dad2821af67b997a88648c16";

    fn resource(name: &str, n: i32) -> Resource {
        Resource {
            name: Some(name.into()),
            r#type: Some("INTEGER".into()),
            integer_value: n,
            ..Default::default()
        }
    }

    /// An instance as the release before this type (gantry-model's `ContainerInstance`) stored
    /// it: registered, then taking an agent update up, draining, with attributes and tags.
    fn as_main_wrote_it() -> ContainerInstance {
        let ports = Resource {
            name: Some("PORTS".into()),
            r#type: Some("STRINGSET".into()),
            string_set_value: Some(RESERVED_PORTS.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        ContainerInstance {
            container_instance_arn: Some(ARN.into()),
            ec2_instance_id: Some("i-0123456789abcdef0".into()),
            version: 4,
            version_info: Some(VersionInfo {
                agent_version: Some("0.1.0".into()),
                agent_hash: Some("abc".into()),
                docker_version: Some("27.0".into()),
            }),
            remaining_resources: Some(vec![resource("CPU", 1024), resource("MEMORY", 3072), ports.clone()]),
            registered_resources: Some(vec![resource("CPU", 2048), resource("MEMORY", 4096), ports]),
            status: Some("DRAINING".into()),
            agent_connected: false,
            running_tasks_count: 0,
            pending_tasks_count: 0,
            agent_update_status: Some("STAGING".into()),
            attributes: Some(vec![Attribute {
                name: "ecs.availability-zone".into(),
                value: Some("us-east-1a".into()),
                target_type: None,
                target_id: None,
            }]),
            registered_at: Some(1796334291.992),
            attachments: Some(vec![]),
            tags: Some(vec![Tag { key: Some("team".into()), value: Some("web".into()) }]),
            ..Default::default()
        }
    }

    /// What the record does not store: computed when the API renders it.
    const COMPUTED: [&str; 3] = ["agentConnected", "runningTasksCount", "pendingTasksCount"];

    #[test]
    fn an_instance_main_wrote_reads_and_writes_back_the_same_json() {
        let old = as_main_wrote_it();
        let stored = encode(&old);
        let rec: InstanceRecord = parse(&stored).unwrap();
        assert_eq!(rec.container_instance_arn, ARN);
        assert_eq!(rec.id(), "19597061dad2821af67b997a88648c16");
        assert_eq!(rec.cluster_and_id().0, "prod");
        assert_eq!(rec.ec2_instance_id, "i-0123456789abcdef0");
        assert_eq!(rec.status, InstanceStatus::Draining);
        assert_eq!(rec.agent_update_status, Some(AgentUpdateStatus::Staging));
        assert_eq!(rec.registered_at, Timestamp(1_796_334_291_992));
        assert_eq!(rec.attribute("ecs.availability-zone"), Some("us-east-1a"));
        assert_eq!(crate::reservation::resource_int(&rec.remaining_resources, "MEMORY"), 3072);

        // Written back, it is the JSON main wrote, less what is computed.
        let written = encode(&rec);
        let mut new: Value = parse(&written).unwrap();
        let mut was: Value = serde_json::to_value(&old).unwrap();
        for k in COMPUTED {
            assert!(new.get(k).is_none(), "{k} is not stored");
            was.as_object_mut().unwrap().remove(k);
        }
        assert_eq!(new, was);
        // And main reads it back as it was.
        let back: ContainerInstance = parse(&written).unwrap();
        assert_eq!(back, old);
        // The wire shape is what main answered from its record.
        assert_eq!(rec.to_wire(), old);
        new.as_object_mut().unwrap().insert("status".into(), json!("ACTIVE"));
        let active: InstanceRecord = serde_json::from_value(new).unwrap();
        assert_eq!(active.status, InstanceStatus::Active);
    }

    #[test]
    fn an_instance_without_a_status_is_active_and_an_unknown_status_does_not_read() {
        let mut v: Value = serde_json::to_value(as_main_wrote_it()).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("status");
        o.remove("agentUpdateStatus");
        let rec: InstanceRecord = serde_json::from_value(v.clone()).unwrap();
        assert_eq!((rec.status, rec.agent_update_status), (InstanceStatus::Active, None));
        let scope = Scope::new("000000000000", "us-east-1");
        let rows = rec.index_keys(&scope);
        assert_eq!(rows.len(), 1);
        assert!(rows[0].0.contains("/ACTIVE/19597061dad2821af67b997a88648c16"), "{}", rows[0].0);
        assert_eq!(rec.key(&scope), keys::container_instance(&scope, "prod", rec.id()));

        v.as_object_mut().unwrap().insert("status".into(), json!("BOGUS"));
        let err = serde_json::from_value::<InstanceRecord>(v).unwrap_err().to_string();
        assert!(err.contains("BOGUS"), "{err}");
    }
}
