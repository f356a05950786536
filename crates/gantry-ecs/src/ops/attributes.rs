//! Attributes: PutAttributes, DeleteAttributes, ListAttributes. Attributes live on container
//! instances (ECS's only target type).

use super::container_instances::{check_attribute, check_custom_limit, instance_id, upsert_attributes};
use super::instance_record::InstanceRecord;
use crate::records::{decode, encode};
use crate::{ControlPlane, Ctx, keys};
use gantry_core::page::{PageRequest, encode_token};
use gantry_core::{EcsError, ErrorKind, Result};
use gantry_model::*;
use gantry_store::Txn;
use std::collections::BTreeMap;

fn check_target_type(t: Option<&str>) -> Result<()> {
    match t {
        None | Some("container-instance") => Ok(()),
        Some(other) => Err(EcsError::invalid(format!(
            "targetType should be one of [container-instance], but was '{other}'."
        ))),
    }
}

impl ControlPlane {
    /// Groups attributes by target instance ID, validating targets and the cluster.
    fn group_by_target(
        &self,
        ctx: &Ctx,
        cluster: &str,
        attrs: &[Attribute],
    ) -> Result<BTreeMap<String, Vec<Attribute>>> {
        let mut by_target: BTreeMap<String, Vec<Attribute>> = BTreeMap::new();
        for a in attrs {
            check_target_type(a.target_type.as_deref())?;
            let target = a.target_id.as_deref().filter(|t| !t.is_empty()).ok_or_else(|| {
                EcsError::invalid(format!("targetId is required for attribute '{}'.", a.name))
            })?;
            let id = instance_id(ctx, cluster, target).ok_or_else(|| {
                EcsError::new(ErrorKind::TargetNotFoundException, format!("Could not find {target}"))
            })?;
            by_target.entry(id).or_default().push(a.clone());
        }
        Ok(by_target)
    }

    async fn change_attributes(
        &self,
        ctx: &Ctx,
        cluster_ref: Option<&str>,
        attrs: &[Attribute],
        put: bool,
    ) -> Result<Vec<Attribute>> {
        // The attributes' own fields first, then the cluster, as ECS does.
        for a in attrs {
            check_target_type(a.target_type.as_deref())?;
        }
        let cluster = self.active_cluster(ctx, cluster_ref)?;
        let cname = cluster.value.cluster_name;
        let by_target = self.group_by_target(ctx, &cname, attrs)?;
        self.retry(|| {
            let mut txn = Txn::new();
            for (id, list) in &by_target {
                let key = keys::container_instance(&ctx.scope, &cname, id);
                let mut inst = match crate::records::load::<InstanceRecord>(&*self.store, &key)? {
                    Some(i) if i.value.is_live() => i,
                    _ => {
                        let shown = list[0].target_id.clone().unwrap_or_default();
                        return Err(EcsError::new(
                            ErrorKind::TargetNotFoundException,
                            format!("Could not find {shown}"),
                        ));
                    }
                };
                let current = &mut inst.value.attributes;
                if put {
                    upsert_attributes(current, list);
                    check_custom_limit(current)?;
                } else {
                    current.retain(|a| {
                        !list.iter().any(|d| d.name == a.name && (d.value.is_none() || d.value == a.value))
                    });
                }
                txn = txn.when(&key, inst.mod_revision).put(&key, encode(&inst.value));
            }
            Ok((txn, ()))
        })
        .await?;
        Ok(by_target
            .iter()
            .flat_map(|(id, list)| {
                let arn = ctx.scope.container_instance_arn(&cname, id);
                list.iter().map(move |a| Attribute {
                    name: a.name.clone(),
                    value: a.value.clone(),
                    target_type: a.target_type.clone(),
                    target_id: Some(arn.clone()),
                })
            })
            .collect())
    }

    pub async fn put_attributes(
        &self,
        ctx: &Ctx,
        req: PutAttributesRequest,
    ) -> Result<PutAttributesResponse> {
        if req.attributes.is_empty() {
            return Err(EcsError::invalid("attributes can not be empty"));
        }
        for a in &req.attributes {
            check_attribute(a)?;
        }
        let out = self.change_attributes(ctx, req.cluster.as_deref(), &req.attributes, true).await?;
        Ok(PutAttributesResponse { attributes: Some(out) })
    }

    pub async fn delete_attributes(
        &self,
        ctx: &Ctx,
        req: DeleteAttributesRequest,
    ) -> Result<DeleteAttributesResponse> {
        if req.attributes.is_empty() {
            return Err(EcsError::invalid("attributes can not be empty"));
        }
        let out = self.change_attributes(ctx, req.cluster.as_deref(), &req.attributes, false).await?;
        Ok(DeleteAttributesResponse { attributes: Some(out) })
    }

    pub fn list_attributes(&self, ctx: &Ctx, req: ListAttributesRequest) -> Result<ListAttributesResponse> {
        check_target_type(Some(&req.target_type))?;
        if req.attribute_value.is_some() && req.attribute_name.is_none() {
            return Err(EcsError::invalid(
                "attributeValue can only be specified together with attributeName.",
            ));
        }
        let page = PageRequest::new(req.max_results, req.next_token.as_deref(), 100, 100)?;
        let cluster = self.active_cluster(ctx, req.cluster.as_deref())?;
        let cname = cluster.value.cluster_name;
        let mut rows: Vec<(String, Attribute)> = Vec::new();
        for kv in self.store.range(&keys::container_instance_prefix(&ctx.scope, &cname), None, usize::MAX) {
            let inst = decode::<InstanceRecord>(&kv)?;
            if !inst.value.is_live() {
                continue;
            }
            let arn = inst.value.container_instance_arn.clone();
            let id = kv.key.rsplit('/').next().unwrap_or_default().to_string();
            for a in &inst.value.attributes {
                if req.attribute_name.as_ref().is_some_and(|n| *n != a.name) {
                    continue;
                }
                if req.attribute_value.is_some() && req.attribute_value != a.value {
                    continue;
                }
                let k = format!("{id}!{}", a.name);
                if page.after.as_ref().is_some_and(|after| k <= *after) {
                    continue;
                }
                rows.push((
                    k,
                    Attribute {
                        name: a.name.clone(),
                        value: a.value.clone(),
                        target_type: Some("container-instance".into()),
                        target_id: Some(arn.clone()),
                    },
                ));
            }
        }
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        let next = (rows.len() > page.limit).then(|| encode_token(&rows[page.limit - 1].0));
        rows.truncate(page.limit);
        Ok(ListAttributesResponse {
            attributes: Some(rows.into_iter().map(|(_, a)| a).collect()),
            next_token: next,
        })
    }
}
