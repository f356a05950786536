//! Clusters: CreateCluster, DescribeClusters, ListClusters, UpdateCluster, UpdateClusterSettings,
//! PutClusterCapacityProviders, DeleteCluster.

use super::cluster_record::ClusterRecord;
use super::services::ServiceRecord;
use super::tasks::{PROVIDER_TASKS, STOPPING_TASKS};
use super::{check_batch, check_include, includes};
use crate::records::{decode, encode, load, load_prefix};
use crate::{ControlPlane, Ctx, keys};
use gantry_core::arn::cluster_name;
use gantry_core::page::{PageRequest, paginate};
use gantry_core::validate::{is_valid_name, validate_tags};
use gantry_core::{ClusterStatus, EcsError, ErrorKind, Result, ServiceStatus};
use gantry_model::*;
use gantry_store::Txn;

pub(crate) const INCLUDE: &[&str] = &["ATTACHMENTS", "CONFIGURATIONS", "SETTINGS", "STATISTICS", "TAGS"];

/// Validates cluster settings: only `containerInsights`, with `enabled`, `disabled` or `enhanced`.
pub(crate) fn check_settings(settings: &[ClusterSetting]) -> Result<()> {
    for s in settings {
        match s.name.as_deref() {
            Some("containerInsights") => {}
            other => {
                return Err(EcsError::invalid(format!(
                    "Invalid setting 'name': '{}' is not a cluster setting; valid names are [containerInsights].",
                    other.unwrap_or_default()
                )));
            }
        }
        match s.value.as_deref() {
            Some("enabled" | "disabled" | "enhanced") => {}
            other => {
                return Err(EcsError::invalid(format!(
                    "Invalid setting 'value': '{}' is not one of [enabled, disabled, enhanced].",
                    other.unwrap_or_default()
                )));
            }
        }
    }
    Ok(())
}

fn merge_settings(current: &mut Vec<ClusterSetting>, new: &[ClusterSetting]) {
    for s in new {
        match current.iter_mut().find(|c| c.name == s.name) {
            Some(c) => c.value = s.value.clone(),
            None => current.push(s.clone()),
        }
    }
}

/// ECS's cluster statistics, in the (alphabetical) order DescribeClusters lists them.
const STATISTICS: [&str; 12] = [
    "activeEC2ServiceCount",
    "activeExternalServiceCount",
    "activeFargateServiceCount",
    "drainingEC2ServiceCount",
    "drainingExternalServiceCount",
    "drainingFargateServiceCount",
    "pendingEC2TasksCount",
    "pendingExternalTasksCount",
    "pendingFargateTasksCount",
    "runningEC2TasksCount",
    "runningExternalTasksCount",
    "runningFargateTasksCount",
];

impl ControlPlane {
    /// Loads an ACTIVE cluster by reference, or fails with ClusterNotFoundException.
    pub(crate) fn active_cluster(
        &self,
        ctx: &Ctx,
        reference: Option<&str>,
    ) -> Result<crate::Stored<ClusterRecord>> {
        let name = cluster_name(&ctx.scope, reference)?;
        match load::<ClusterRecord>(&*self.store, &keys::cluster(&ctx.scope, &name))? {
            Some(c) if c.value.is_active() => Ok(c),
            _ => Err(EcsError::cluster_not_found()),
        }
    }

    /// Checks a capacity provider strategy against the providers a cluster (or request) has.
    pub(crate) fn check_strategy(
        &self,
        strategy: &[CapacityProviderStrategyItem],
        providers: &[String],
    ) -> Result<()> {
        let mut with_base = 0;
        for item in strategy {
            if !providers.contains(&item.capacity_provider) {
                return Err(EcsError::invalid(format!(
                    "The specified capacity provider strategy cannot contain a capacity provider that is not associated with the cluster. Associate the capacity provider with the cluster or specify a valid capacity provider and try again. ('{}')",
                    item.capacity_provider
                )));
            }
            if !(0..=1000).contains(&item.weight) {
                return Err(EcsError::invalid(format!(
                    "The capacity provider strategy weight for '{}' must be between 0 and 1000, but was {}.",
                    item.capacity_provider, item.weight
                )));
            }
            if !(0..=100000).contains(&item.base) {
                return Err(EcsError::invalid(format!(
                    "The capacity provider strategy base for '{}' must be between 0 and 100000, but was {}.",
                    item.capacity_provider, item.base
                )));
            }
            if item.base > 0 {
                with_base += 1;
            }
        }
        if with_base > 1 {
            return Err(EcsError::invalid(
                "Only one capacity provider in a capacity provider strategy can have a base defined.",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for item in strategy {
            if !seen.insert(&item.capacity_provider) {
                return Err(EcsError::invalid(format!(
                    "The capacity provider strategy contains '{}' more than once.",
                    item.capacity_provider
                )));
            }
        }
        let fargate = strategy.iter().any(|i| i.capacity_provider.starts_with("FARGATE"));
        let other = strategy.iter().any(|i| !i.capacity_provider.starts_with("FARGATE"));
        if fargate && other {
            return Err(EcsError::invalid(
                "A capacity provider strategy cannot contain both Fargate capacity providers and Auto Scaling group capacity providers.",
            ));
        }
        Ok(())
    }

    /// Resolves capacity provider references to names, checking each exists and is ACTIVE.
    pub(crate) fn resolve_providers(&self, ctx: &Ctx, refs: &[String]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for r in refs {
            let name = super::capacity_providers::provider_name(&ctx.scope, r);
            if !self.provider_exists(ctx, &name)? {
                return Err(EcsError::invalid(format!(
                    "The specified capacity provider was not found. Specify a valid capacity provider and try again. ('{r}')"
                )));
            }
            if out.contains(&name) {
                return Err(EcsError::invalid(format!(
                    "The capacity provider '{name}' is listed more than once."
                )));
            }
            out.push(name);
        }
        Ok(out)
    }

    pub async fn create_cluster(
        &self,
        ctx: &Ctx,
        req: CreateClusterRequest,
    ) -> Result<CreateClusterResponse> {
        let name = req.cluster_name.clone().unwrap_or_else(|| "default".to_string());
        if !is_valid_name(&name) {
            return Err(EcsError::invalid(format!(
                "Invalid cluster name '{name}': up to 255 letters (uppercase and lowercase), numbers, underscores, and hyphens are allowed."
            )));
        }
        let tags = req.tags.clone().unwrap_or_default();
        validate_tags(&tags)?;
        let mut settings = vec![ClusterSetting {
            name: Some("containerInsights".into()),
            value: Some(self.effective_setting(ctx, "containerInsights")?),
        }];
        if let Some(s) = &req.settings {
            check_settings(s)?;
            merge_settings(&mut settings, s);
        }
        let providers = self.resolve_providers(ctx, req.capacity_providers.as_deref().unwrap_or_default())?;
        let strategy = req.default_capacity_provider_strategy.clone().unwrap_or_default();
        self.check_strategy(&strategy, &providers)?;
        let key = keys::cluster(&ctx.scope, &name);
        let cluster = ClusterRecord {
            cluster_arn: ctx.scope.cluster_arn(&name),
            cluster_name: name.clone(),
            status: ClusterStatus::Active,
            configuration: req.configuration.clone(),
            settings,
            capacity_providers: providers,
            default_capacity_provider_strategy: strategy,
            tags,
            service_connect_defaults: req
                .service_connect_defaults
                .as_ref()
                .map(|d| ClusterServiceConnectDefaults { namespace: Some(d.namespace.clone()) }),
            attachments: vec![],
            attachments_status: None,
        };
        let out = self
            .retry(|| {
                let existing = load::<ClusterRecord>(&*self.store, &key)?;
                match existing {
                    // CreateCluster is idempotent: an ACTIVE cluster of that name is returned.
                    Some(c) if c.value.is_active() => Ok((Txn::new(), c.value)),
                    other => {
                        let rev = other.map_or(0, |c| c.mod_revision);
                        Ok((Txn::new().when(&key, rev).put(&key, encode(&cluster)), cluster.clone()))
                    }
                }
            })
            .await?;
        let include: Vec<String> =
            ["SETTINGS", "CONFIGURATIONS", "TAGS"].iter().map(|s| s.to_string()).collect();
        Ok(CreateClusterResponse { cluster: Some(self.render_cluster(ctx, &out, Some(&include))?) })
    }

    /// A cluster for output: the parts `include` asks for, with its counts.
    fn render_cluster(&self, ctx: &Ctx, r: &ClusterRecord, include: Option<&Vec<String>>) -> Result<Cluster> {
        let mut c = r.to_wire(include);
        let name = r.cluster_name.as_str();
        let (counts, registered) = self.cluster_counts(ctx, name);
        c.registered_container_instances_count = registered.clamp(0, i32::MAX as i64) as i32;
        let sum = |state: &str| -> i32 {
            STATISTICS.iter().zip(counts).filter(|(n, _)| n.starts_with(state)).map(|(_, v)| v).sum()
        };
        // ECS counts neither DRAINING services nor any task that is not pending or running.
        c.running_tasks_count = sum("running");
        c.pending_tasks_count = sum("pending");
        c.active_services_count = sum("active");
        c.statistics = Some(if includes(include, "STATISTICS") {
            STATISTICS
                .iter()
                .zip(counts)
                .map(|(k, v)| KeyValuePair { name: Some(k.to_string()), value: Some(v.to_string()) })
                .collect()
        } else {
            vec![]
        });
        Ok(c)
    }

    /// ECS's cluster statistics, in [`STATISTICS`]' order: read from the cluster's counters,
    /// which the record layer keeps in the same transactions as the tasks' and services' states
    /// (`TaskRecord::counters`, `ServiceRecord::counters`), so nothing here reads a task.
    fn cluster_statistics(&self, ctx: &Ctx, cluster: &str) -> Result<[i32; STATISTICS.len()]> {
        Ok(self.cluster_counts(ctx, cluster).0)
    }

    /// The statistics and the registered instances' counter (kept under the same prefix by
    /// `InstanceRecord::counters`), in one walk of the cluster's counters.
    fn cluster_counts(&self, ctx: &Ctx, cluster: &str) -> ([i32; STATISTICS.len()], i64) {
        let (mut counts, mut registered) = ([0; STATISTICS.len()], 0);
        let prefix = keys::cluster_counts_prefix(&ctx.scope, cluster);
        self.store.visit(&prefix, &mut |kv| {
            let name = &kv.key[prefix.len()..];
            if let Ok(i) = STATISTICS.binary_search(&name) {
                counts[i] = gantry_store::counter(&kv.value).clamp(0, i32::MAX as i64) as i32;
            } else if name == super::instance_record::REGISTERED_INSTANCES {
                registered = gantry_store::counter(&kv.value);
            }
        });
        (counts, registered)
    }

    /// One of the cluster's counters (0 when absent).
    pub(crate) fn cluster_counter(&self, ctx: &Ctx, cluster: &str, name: &str) -> i64 {
        self.store
            .get(&keys::cluster_count(&ctx.scope, cluster, name))
            .map_or(0, |kv| gantry_store::counter(&kv.value))
    }

    /// How many of the cluster's tasks are not STOPPED.
    fn active_tasks(&self, ctx: &Ctx, cluster: &str) -> Result<i64> {
        let counts = self.cluster_statistics(ctx, cluster)?;
        let live: i64 = STATISTICS
            .iter()
            .zip(counts)
            .filter(|(n, _)| n.starts_with("pending") || n.starts_with("running"))
            .map(|(_, v)| i64::from(v))
            .sum();
        Ok(live + self.cluster_counter(ctx, cluster, STOPPING_TASKS))
    }

    pub fn describe_clusters(
        &self,
        ctx: &Ctx,
        req: DescribeClustersRequest,
    ) -> Result<DescribeClustersResponse> {
        check_include("include", req.include.as_ref(), INCLUDE)?;
        let refs = req.clusters.unwrap_or_else(|| vec!["default".to_string()]);
        check_batch("clusters", refs.len(), 100)?;
        let mut clusters = Vec::with_capacity(refs.len());
        let mut failures = Vec::new();
        for r in &refs {
            let found = match cluster_name(&ctx.scope, Some(r)) {
                Ok(name) => self.clusters.load(&*self.store, &keys::cluster(&ctx.scope, &name))?,
                Err(_) => None,
            };
            match found {
                Some(c) => clusters.push(self.render_cluster(ctx, &c, req.include.as_ref())?),
                None => failures.push(super::missing(r, |r| ctx.scope.cluster_arn(r))),
            }
        }
        Ok(DescribeClustersResponse { clusters: Some(clusters), failures: Some(failures) })
    }

    pub fn list_clusters(&self, ctx: &Ctx, req: ListClustersRequest) -> Result<ListClustersResponse> {
        let page = PageRequest::new(req.max_results, req.next_token.as_deref(), 100, 100)?;
        let prefix = keys::cluster_prefix(&ctx.scope);
        let mut out = Vec::new();
        let mut after = page.after.clone();
        // Scan in chunks so INACTIVE clusters do not shorten a page.
        loop {
            let chunk = self.store.range(&prefix, after.as_deref(), 256);
            if chunk.is_empty() {
                break;
            }
            after = chunk.last().map(|kv| kv.key.clone());
            for kv in &chunk {
                let c = decode::<ClusterRecord>(kv)?;
                if c.value.is_active() {
                    out.push(c);
                }
            }
            if out.len() > page.limit {
                break;
            }
        }
        let (items, next) = paginate(out, page.limit, |c| c.key.clone());
        Ok(ListClustersResponse {
            cluster_arns: Some(items.into_iter().map(|c| c.value.cluster_arn).collect()),
            next_token: next,
        })
    }

    async fn modify_cluster(
        &self,
        ctx: &Ctx,
        reference: &str,
        f: impl Fn(&mut ClusterRecord) -> Result<()>,
    ) -> Result<ClusterRecord> {
        self.retry(|| {
            let mut c = self.active_cluster(ctx, Some(reference))?;
            f(&mut c.value)?;
            Ok((Txn::new().when(&c.key, c.mod_revision).put(&c.key, encode(&c.value)), c.value))
        })
        .await
    }

    pub async fn update_cluster(
        &self,
        ctx: &Ctx,
        req: UpdateClusterRequest,
    ) -> Result<UpdateClusterResponse> {
        if let Some(s) = &req.settings {
            check_settings(s)?;
        }
        let c = self
            .modify_cluster(ctx, &req.cluster, |c| {
                if let Some(s) = &req.settings {
                    merge_settings(&mut c.settings, s);
                }
                if let Some(conf) = &req.configuration {
                    c.configuration = Some(conf.clone());
                }
                if let Some(d) = &req.service_connect_defaults {
                    c.service_connect_defaults =
                        Some(ClusterServiceConnectDefaults { namespace: Some(d.namespace.clone()) });
                }
                Ok(())
            })
            .await?;
        let include: Vec<String> =
            ["SETTINGS", "CONFIGURATIONS", "TAGS"].iter().map(|s| s.to_string()).collect();
        Ok(UpdateClusterResponse { cluster: Some(self.render_cluster(ctx, &c, Some(&include))?) })
    }

    pub async fn update_cluster_settings(
        &self,
        ctx: &Ctx,
        req: UpdateClusterSettingsRequest,
    ) -> Result<UpdateClusterSettingsResponse> {
        check_settings(&req.settings)?;
        let c = self
            .modify_cluster(ctx, &req.cluster, |c| {
                merge_settings(&mut c.settings, &req.settings);
                Ok(())
            })
            .await?;
        let include: Vec<String> = ["SETTINGS", "TAGS"].iter().map(|s| s.to_string()).collect();
        Ok(UpdateClusterSettingsResponse { cluster: Some(self.render_cluster(ctx, &c, Some(&include))?) })
    }

    pub async fn put_cluster_capacity_providers(
        &self,
        ctx: &Ctx,
        req: PutClusterCapacityProvidersRequest,
    ) -> Result<PutClusterCapacityProvidersResponse> {
        let providers = self.resolve_providers(ctx, &req.capacity_providers)?;
        self.check_strategy(&req.default_capacity_provider_strategy, &providers)?;
        let c = self
            .modify_cluster(ctx, &req.cluster, |c| {
                for removed in c.capacity_providers.iter().filter(|p| !providers.contains(p)) {
                    if self.provider_in_use(ctx, &c.cluster_name, removed)? {
                        return Err(EcsError::new(
                            ErrorKind::ResourceInUseException,
                            format!("The specified capacity provider is in use and cannot be removed. ('{removed}')"),
                        ));
                    }
                }
                c.capacity_providers = providers.clone();
                c.default_capacity_provider_strategy = req.default_capacity_provider_strategy.clone();
                Ok(())
            })
            .await?;
        let include: Vec<String> =
            ["SETTINGS", "CONFIGURATIONS", "TAGS"].iter().map(|s| s.to_string()).collect();
        Ok(PutClusterCapacityProvidersResponse {
            cluster: Some(self.render_cluster(ctx, &c, Some(&include))?),
        })
    }

    /// Whether any task or service of the cluster uses the capacity provider.
    pub(crate) fn provider_in_use(&self, ctx: &Ctx, cluster: &str, provider: &str) -> Result<bool> {
        let uses = |s: &Option<Vec<CapacityProviderStrategyItem>>| {
            s.iter().flatten().any(|i| i.capacity_provider == provider)
        };
        if self.cluster_counter(ctx, cluster, &format!("{PROVIDER_TASKS}{provider}")) > 0 {
            return Ok(true);
        }
        let services =
            load_prefix::<ServiceRecord>(&*self.store, &keys::service_prefix(&ctx.scope, cluster))?;
        Ok(services
            .iter()
            .map(|s| &s.value.service)
            .any(|s| s.status != ServiceStatus::Inactive && uses(&s.capacity_provider_strategy)))
    }

    pub async fn delete_cluster(
        &self,
        ctx: &Ctx,
        req: DeleteClusterRequest,
    ) -> Result<DeleteClusterResponse> {
        let c = self
            .retry(|| {
                let mut c = self.active_cluster(ctx, Some(&req.cluster))?;
                let name = c.value.cluster_name.clone();
                let services =
                    load_prefix::<ServiceRecord>(&*self.store, &keys::service_prefix(&ctx.scope, &name))?;
                if services.iter().any(|s| {
                    matches!(s.value.service.status, ServiceStatus::Active | ServiceStatus::Draining)
                }) {
                    return Err(EcsError::new(
                        ErrorKind::ClusterContainsServicesException,
                        "The Cluster cannot be deleted while Services are active.",
                    ));
                }
                if self.registered_instances(ctx, &name) > 0 {
                    return Err(EcsError::new(
                        ErrorKind::ClusterContainsContainerInstancesException,
                        "The Cluster cannot be deleted while Container Instances are active.",
                    ));
                }
                if self.active_tasks(ctx, &name)? > 0 {
                    return Err(EcsError::new(
                        ErrorKind::ClusterContainsTasksException,
                        "The Cluster cannot be deleted while Tasks are active.",
                    ));
                }
                c.value.status = ClusterStatus::Inactive;
                // Registering an instance or creating a service rewrites the cluster record in
                // its own transaction, so if one lands after the reads above, this compare fails
                // and the checks run again.
                Ok((Txn::new().when(&c.key, c.mod_revision).put(&c.key, encode(&c.value)), c.value))
            })
            .await?;
        let include: Vec<String> =
            ["SETTINGS", "CONFIGURATIONS", "TAGS"].iter().map(|s| s.to_string()).collect();
        Ok(DeleteClusterResponse { cluster: Some(self.render_cluster(ctx, &c, Some(&include))?) })
    }
}

#[cfg(test)]
mod tests {
    use super::STATISTICS;

    #[test]
    fn statistics_are_listed_in_order_and_indexed_by_state_and_launch_type() {
        assert!(STATISTICS.windows(2).all(|w| w[0] < w[1]));
        for (state, at) in [("active", 0), ("draining", 3), ("pending", 6), ("running", 9)] {
            for (launch, off) in [("EC2", 0), ("External", 1), ("Fargate", 2)] {
                assert!(STATISTICS[at + off].starts_with(&format!("{state}{launch}")));
            }
        }
    }
}
