//! Tags: TagResource, UntagResource, ListTagsForResource, on every taggable resource Gantry
//! stores (clusters, task definitions, capacity providers, container instances, services, task
//! sets, tasks, daemons).
//!
//! A task set's tags live on it, in its service's record (`Service.taskSets`), so CreateTaskSet's
//! `tags`, DescribeTaskSets' `include: [TAGS]` and these operations read and write the same list.

use super::capacity_provider_record::CapacityProviderRecord;
use super::cluster_record::ClusterRecord;
use super::daemons::DaemonRecord;
use super::instance_record::InstanceRecord;
use super::services::ServiceRecord;
use super::tasks::TaskRecord;
use crate::records::{encode, load};
use crate::table::{Before, TxnExt};
use crate::{ControlPlane, Ctx, keys};
use gantry_core::validate::{check_tag_count, merge_tags, validate_tags};
use gantry_core::{Arn, EcsError, ErrorKind, Result, ServiceStatus};
use gantry_model::*;
use gantry_store::Txn;

/// A taggable resource, located by ARN.
enum Target {
    Cluster,
    TaskDefinition,
    CapacityProvider,
    ContainerInstance,
    Service,
    /// The task set with this ARN, in the service record at the key.
    TaskSet(String),
    Task,
    /// A daemon (ECS Managed Daemons): its tags are what `propagateTags DAEMON` gives its tasks.
    Daemon,
}

/// `CLUSTER/REST` of a long-format ARN's resource, or ECS's refusal of the short format.
fn long_form(resource: &str) -> Result<(&str, &str)> {
    resource
        .split_once('/')
        .ok_or_else(|| EcsError::invalid("Long arn format must be used for tagging operations"))
}

fn invalid_arn() -> EcsError {
    EcsError::invalid("The ARN provided is invalid.")
}

fn not_found(arn: &str) -> EcsError {
    EcsError::new(ErrorKind::ResourceNotFoundException, format!("The specified resource wasn't found: {arn}"))
}

impl ControlPlane {
    fn target(&self, ctx: &Ctx, arn: &str) -> Result<(Target, String)> {
        let a = Arn::parse(arn).ok_or_else(invalid_arn)?;
        if a.region != ctx.scope.region || a.account != ctx.scope.account {
            return Err(not_found(arn));
        }
        Ok(match a.resource_type.as_str() {
            "cluster" => (Target::Cluster, keys::cluster(&ctx.scope, &a.resource)),
            "task-definition" => {
                let rec = self
                    .task_definition_by_arn(ctx, arn)?
                    .ok_or_else(|| EcsError::client("Unable to describe task definition."))?;
                (Target::TaskDefinition, rec.key)
            }
            "capacity-provider" => {
                (Target::CapacityProvider, keys::capacity_provider(&ctx.scope, &a.resource))
            }
            "container-instance" => {
                let (cluster, id) = long_form(&a.resource)?;
                (Target::ContainerInstance, keys::container_instance(&ctx.scope, cluster, id))
            }
            "service" => {
                let (cluster, name) = long_form(&a.resource)?;
                (Target::Service, keys::service(&ctx.scope, cluster, name))
            }
            // task-set/CLUSTER/SERVICE/ID (the ID is `ecs-svc/DIGITS`).
            "task-set" => {
                let (cluster, rest) = long_form(&a.resource)?;
                let (service, _) = rest.split_once('/').ok_or_else(|| not_found(arn))?;
                (Target::TaskSet(arn.to_string()), keys::service(&ctx.scope, cluster, service))
            }
            "task" => {
                let (cluster, id) = long_form(&a.resource)?;
                (Target::Task, keys::task(&ctx.scope, cluster, id))
            }
            "daemon" => {
                let (cluster, name) = long_form(&a.resource)?;
                (Target::Daemon, keys::daemon(&ctx.scope, cluster, name))
            }
            _ => return Err(invalid_arn()),
        })
    }

    /// Reads the tags of the resource at `key`, applies `f`, and writes them back.
    async fn edit_tags(
        &self,
        ctx: &Ctx,
        arn: &str,
        f: impl Fn(&mut Vec<Tag>) -> Result<()>,
    ) -> Result<Vec<Tag>> {
        self.retry(|| {
            let (target, key) = self.target(ctx, arn)?;
            Ok(match target {
                Target::Cluster => {
                    let mut rec = match load::<ClusterRecord>(&*self.store, &key)? {
                        Some(r) if r.value.is_active() => r,
                        _ => return Err(EcsError::cluster_not_found()),
                    };
                    f(&mut rec.value.tags)?;
                    let out = rec.value.tags.clone();
                    (Txn::new().when(&key, rec.mod_revision).put(&key, encode(&rec.value)), out)
                }
                Target::CapacityProvider => {
                    let mut rec = match load::<CapacityProviderRecord>(&*self.store, &key)? {
                        Some(r) if r.value.is_active() => r,
                        _ => return Err(not_found(arn)),
                    };
                    let before = Before::of(&ctx.scope, &rec);
                    f(&mut rec.value.tags)?;
                    let out = rec.value.tags.clone();
                    (Txn::new().put_record(&ctx.scope, &before, &rec.value), out)
                }
                Target::ContainerInstance => {
                    let mut rec = match load::<InstanceRecord>(&*self.store, &key)? {
                        Some(r) if r.value.is_live() => r,
                        _ => return Err(not_found(arn)),
                    };
                    f(&mut rec.value.tags)?;
                    let out = rec.value.tags.clone();
                    (Txn::new().when(&key, rec.mod_revision).put(&key, encode(&rec.value)), out)
                }
                Target::Service => {
                    let mut rec = match load::<ServiceRecord>(&*self.store, &key)? {
                        Some(r) if r.value.service.status != ServiceStatus::Inactive => r,
                        _ => return Err(not_found(arn)),
                    };
                    let tags = rec.value.service.tags.get_or_insert_with(Vec::new);
                    f(tags)?;
                    let out = tags.clone();
                    (Txn::new().when(&key, rec.mod_revision).put(&key, encode(&rec.value)), out)
                }
                Target::TaskSet(set_arn) => {
                    let mut rec = match load::<ServiceRecord>(&*self.store, &key)? {
                        Some(r) if r.value.service.status != ServiceStatus::Inactive => r,
                        _ => return Err(not_found(arn)),
                    };
                    let set = rec
                        .value
                        .service
                        .task_sets
                        .iter_mut()
                        .flatten()
                        .find(|t| t.task_set_arn == *set_arn)
                        .ok_or_else(|| not_found(arn))?;
                    let tags = set.tags.get_or_insert_with(Vec::new);
                    f(tags)?;
                    let out = tags.clone();
                    (Txn::new().when(&key, rec.mod_revision).put(&key, encode(&rec.value)), out)
                }
                Target::Task => {
                    // Tags change no indexed field, so the record's bytes are put directly.
                    let mut rec = load::<TaskRecord>(&*self.store, &key)?.ok_or_else(|| not_found(arn))?;
                    let tags = &mut rec.value.task.tags;
                    f(tags)?;
                    let out = tags.clone();
                    (Txn::new().when(&key, rec.mod_revision).put(&key, encode(&rec.value)), out)
                }
                Target::Daemon => {
                    let rec = match load::<DaemonRecord>(&*self.store, &key)? {
                        Some(r) if r.value.is_active() => r,
                        _ => return Err(not_found(arn)),
                    };
                    let mut next = rec.value.clone();
                    f(&mut next.tags)?;
                    let out = next.tags.clone();
                    (Txn::new().put_record(&ctx.scope, &Before::of(&ctx.scope, &rec), &next), out)
                }
                Target::TaskDefinition => {
                    let mut rec = load::<super::task_definitions::TaskDefRecord>(&*self.store, &key)?
                        .ok_or_else(|| EcsError::client("Unable to describe task definition."))?;
                    f(&mut rec.value.tags)?;
                    let out = rec.value.tags.clone();
                    (Txn::new().when(&key, rec.mod_revision).put(&key, encode(&rec.value)), out)
                }
            })
        })
        .await
    }

    pub async fn tag_resource(&self, ctx: &Ctx, req: TagResourceRequest) -> Result<TagResourceResponse> {
        validate_tags(&req.tags)?;
        self.edit_tags(ctx, &req.resource_arn, |tags| {
            merge_tags(tags, &req.tags);
            check_tag_count(tags.len())
        })
        .await?;
        Ok(TagResourceResponse {})
    }

    pub async fn untag_resource(
        &self,
        ctx: &Ctx,
        req: UntagResourceRequest,
    ) -> Result<UntagResourceResponse> {
        self.edit_tags(ctx, &req.resource_arn, |tags| {
            tags.retain(|t| !req.tag_keys.iter().any(|k| Some(k) == t.key.as_ref()));
            Ok(())
        })
        .await?;
        Ok(UntagResourceResponse {})
    }

    pub fn list_tags_for_resource(
        &self,
        ctx: &Ctx,
        req: ListTagsForResourceRequest,
    ) -> Result<ListTagsForResourceResponse> {
        let arn = &req.resource_arn;
        let (target, key) = self.target(ctx, arn)?;
        let tags = match target {
            Target::Cluster => match load::<ClusterRecord>(&*self.store, &key)? {
                Some(c) if c.value.is_active() => Some(c.value.tags),
                _ => return Err(EcsError::cluster_not_found()),
            },
            Target::CapacityProvider => Some(
                load::<CapacityProviderRecord>(&*self.store, &key)?.ok_or_else(|| not_found(arn))?.value.tags,
            ),
            Target::ContainerInstance => {
                Some(load::<InstanceRecord>(&*self.store, &key)?.ok_or_else(|| not_found(arn))?.value.tags)
            }
            Target::Service => match load::<ServiceRecord>(&*self.store, &key)? {
                Some(r) if r.value.service.status != ServiceStatus::Inactive => r.value.service.tags,
                _ => return Err(not_found(arn)),
            },
            Target::TaskSet(set_arn) => match load::<ServiceRecord>(&*self.store, &key)? {
                Some(r) if r.value.service.status != ServiceStatus::Inactive => {
                    r.value
                        .service
                        .task_sets
                        .unwrap_or_default()
                        .into_iter()
                        .find(|t| t.task_set_arn == *set_arn)
                        .ok_or_else(|| not_found(arn))?
                        .tags
                }
                _ => return Err(not_found(arn)),
            },
            Target::Task => {
                Some(load::<TaskRecord>(&*self.store, &key)?.ok_or_else(|| not_found(arn))?.value.task.tags)
            }
            Target::Daemon => match load::<DaemonRecord>(&*self.store, &key)? {
                Some(r) if r.value.is_active() => Some(r.value.tags),
                _ => return Err(not_found(arn)),
            },
            Target::TaskDefinition => Some(
                load::<super::task_definitions::TaskDefRecord>(&*self.store, &key)?
                    .ok_or_else(|| EcsError::client("Unable to describe task definition."))?
                    .value
                    .tags,
            ),
        };
        Ok(ListTagsForResourceResponse { tags: Some(tags.unwrap_or_default()) })
    }
}
