//! AddTags, RemoveTags and DescribeTags, on load balancers, target groups, listeners and rules.
//! Every resource named in one call is changed in one transaction.

use crate::records::{LbRecord, TgRecord};
use crate::validate::{self, validation};
use crate::{
    ATTEMPTS, Elbv2, conflict, keys, lb_not_found, listener_not_found, rule_not_found, tg_not_found,
};
use gantry_core::{Scope, ServiceError};
use gantry_model::elbv2::*;
use gantry_runtime::records::{Before, Stored, TxnExt};
use gantry_store::Txn;

/// The records a call touches, each read once.
#[derive(Default)]
struct Touched {
    lbs: Vec<(Stored<LbRecord>, Before)>,
    tgs: Vec<(Stored<TgRecord>, Before)>,
}

impl Touched {
    fn txn(&self, scope: &Scope) -> Txn {
        let mut txn = Txn::new();
        for (r, b) in &self.lbs {
            txn = txn.put_record(scope, b, &r.value);
        }
        for (r, b) in &self.tgs {
            txn = txn.put_record(scope, b, &r.value);
        }
        txn
    }
}

impl Elbv2 {
    /// The tags of the resource an ARN names, for reading or changing, from `touched` (reading
    /// its record into it first).
    fn tags_of<'a>(
        &self,
        scope: &Scope,
        touched: &'a mut Touched,
        arn: &str,
    ) -> Result<&'a mut Vec<Tag>, ServiceError> {
        let not_found = || match keys::parse_arn(scope, arn) {
            Some(keys::ArnRef::TargetGroup { .. }) => tg_not_found(&[arn.to_string()]),
            Some(keys::ArnRef::Listener { .. }) => listener_not_found(&[arn.to_string()]),
            Some(keys::ArnRef::Rule { .. }) => rule_not_found(&[arn.to_string()]),
            Some(keys::ArnRef::LoadBalancer { .. }) => lb_not_found(&[arn.to_string()]),
            None => validation(format!("'{arn}' is not a valid resource ARN")),
        };
        let lb_name = match keys::parse_arn(scope, arn) {
            Some(keys::ArnRef::TargetGroup { name }) => {
                let i = match touched.tgs.iter().position(|(t, _)| t.value.arn() == arn) {
                    Some(i) => i,
                    None => {
                        let tg = self.tg_by_arn(scope, arn)?;
                        let before = Before::of(scope, &tg);
                        touched.tgs.push((tg, before));
                        touched.tgs.len() - 1
                    }
                };
                let _ = name;
                return Ok(&mut touched.tgs[i].0.value.tags);
            }
            Some(keys::ArnRef::LoadBalancer { name })
            | Some(keys::ArnRef::Listener { lb_name: name, .. })
            | Some(keys::ArnRef::Rule { lb_name: name, .. }) => name,
            None => return Err(not_found()),
        };
        let i = match touched.lbs.iter().position(|(l, _)| l.value.name() == lb_name) {
            Some(i) => i,
            None => {
                let lb = self.load_lb(scope, &lb_name)?.ok_or_else(not_found)?;
                let before = Before::of(scope, &lb);
                touched.lbs.push((lb, before));
                touched.lbs.len() - 1
            }
        };
        let lb = &mut touched.lbs[i].0.value;
        if lb.arn() == arn {
            return Ok(&mut lb.tags);
        }
        for l in lb.listeners.iter_mut() {
            if l.arn() == arn {
                return Ok(&mut l.tags);
            }
            if l.default_rule_arn() == arn {
                return Ok(&mut l.default_rule_tags);
            }
            if let Some(r) = l.rules.iter_mut().find(|r| r.arn() == arn) {
                return Ok(&mut r.tags);
            }
        }
        Err(not_found())
    }

    pub(crate) async fn add_tags(
        &self,
        scope: &Scope,
        req: AddTagsInput,
    ) -> Result<AddTagsOutput, ServiceError> {
        validate::tags(&req.tags)?;
        if req.resource_arns.len() > 20 {
            return Err(validation("You can specify at most 20 resources"));
        }
        for _ in 0..ATTEMPTS {
            let mut touched = Touched::default();
            for arn in &req.resource_arns {
                let tags = self.tags_of(scope, &mut touched, arn)?;
                validate::merge_tags(tags, &req.tags, arn)?;
            }
            if self.commit(touched.txn(scope)).await? {
                return Ok(AddTagsOutput {});
            }
        }
        Err(conflict())
    }

    pub(crate) async fn remove_tags(
        &self,
        scope: &Scope,
        req: RemoveTagsInput,
    ) -> Result<RemoveTagsOutput, ServiceError> {
        if req.resource_arns.len() > 20 {
            return Err(validation("You can specify at most 20 resources"));
        }
        for _ in 0..ATTEMPTS {
            let mut touched = Touched::default();
            for arn in &req.resource_arns {
                let tags = self.tags_of(scope, &mut touched, arn)?;
                tags.retain(|t| !req.tag_keys.contains(&t.key));
            }
            if self.commit(touched.txn(scope)).await? {
                return Ok(RemoveTagsOutput {});
            }
        }
        Err(conflict())
    }

    pub(crate) fn describe_tags(
        &self,
        scope: &Scope,
        req: DescribeTagsInput,
    ) -> Result<DescribeTagsOutput, ServiceError> {
        if req.resource_arns.len() > 20 {
            return Err(validation("You can specify at most 20 resources"));
        }
        let mut touched = Touched::default();
        let mut out = Vec::new();
        for arn in &req.resource_arns {
            let tags = self.tags_of(scope, &mut touched, arn)?.clone();
            out.push(TagDescription { resource_arn: Some(arn.clone()), tags: Some(tags) });
        }
        Ok(DescribeTagsOutput { tag_descriptions: Some(out) })
    }
}
