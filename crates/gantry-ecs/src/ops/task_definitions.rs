//! Task definitions: RegisterTaskDefinition, DescribeTaskDefinition, ListTaskDefinitions,
//! ListTaskDefinitionFamilies, DeregisterTaskDefinition, DeleteTaskDefinitions.
//!
//! Storage: a family record holds the last revision handed out (revisions are never reused), a
//! record per revision holds the definition and its tags, and an index keyed by status, family
//! and revision serves the listings in ECS's order without decoding definitions.

use super::taskdef_record::StoredTaskDefinition;
use super::{check_batch, check_include, includes};
use crate::records::{encode, load};
use crate::table::{Before, Record, Row, TxnExt};
use crate::{ControlPlane, Ctx, Stored, keys};
use gantry_core::page::{PageRequest, encode_token};
use gantry_core::taskdef::{self, Registration, TaskDefRef};
use gantry_core::{EcsError, Result, Scope, TaskDefinitionStatus};
use gantry_model::*;
use gantry_store::Txn;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct FamilyRecord {
    pub last_revision: i32,
}

/// A revision as stored: its definition and its tags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDefRecord {
    pub definition: StoredTaskDefinition,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// A revision's key, and its row in the status index (`td-status/STATUS/FAMILY!REVISION`, empty)
/// that the listings read.
impl Record for TaskDefRecord {
    fn key(&self, scope: &Scope) -> String {
        keys::task_definition(scope, &self.definition.family, self.definition.revision)
    }
    fn index_keys(&self, scope: &Scope) -> Vec<Row> {
        let d = &self.definition;
        vec![(keys::td_status(scope, d.status.as_str(), &d.family, d.revision), Vec::new())]
    }
}

fn unable_to_describe() -> EcsError {
    EcsError::client("Unable to describe task definition.")
}

impl ControlPlane {
    /// Finds a task definition by reference: `family` means its latest ACTIVE revision.
    pub fn find_task_definition(&self, ctx: &Ctx, reference: &str) -> Result<Option<Stored<TaskDefRecord>>> {
        let Some(r) = taskdef::parse_ref(&ctx.scope, reference) else {
            // A daemon's task names its daemon task definition: the task definition it runs.
            if reference.starts_with("arn:")
                && let Some(d) = self.find_daemon_task_definition(ctx, reference)?
            {
                let registered_at = d.value.definition.registered_at;
                let daemon = d.value.definition.into_wire();
                let built = gantry_core::daemon::as_task_definition(&ctx.scope, &daemon, &ctx.principal)?;
                let definition =
                    StoredTaskDefinition::from_built(built, TaskDefinitionStatus::Active, registered_at)
                        .map_err(EcsError::server)?;
                return Ok(Some(Stored {
                    key: d.key,
                    value: TaskDefRecord { definition, tags: Vec::new() },
                    mod_revision: d.mod_revision,
                }));
            }
            return Ok(None);
        };
        self.load_task_definition(ctx, &r)
    }

    fn load_task_definition(&self, ctx: &Ctx, r: &TaskDefRef) -> Result<Option<Stored<TaskDefRecord>>> {
        let revision = match r.revision {
            Some(rev) => rev,
            None => {
                let prefix = format!(
                    "{}{}!",
                    keys::td_status_prefix(&ctx.scope, TaskDefinitionStatus::Active.as_str()),
                    r.family
                );
                match self.store.range_rev(&prefix, None, 1).first() {
                    Some(kv) => match kv.key.rsplit_once('!').and_then(|(_, n)| n.parse().ok()) {
                        Some(n) => n,
                        None => return Ok(None),
                    },
                    None => return Ok(None),
                }
            }
        };
        load(&*self.store, &keys::task_definition(&ctx.scope, &r.family, revision))
    }

    pub async fn register_task_definition(
        &self,
        ctx: &Ctx,
        req: RegisterTaskDefinitionRequest,
    ) -> Result<RegisterTaskDefinitionResponse> {
        // Validate once up front, so a bad request never touches the store.
        let probe = Registration {
            scope: &ctx.scope,
            revision: 1,
            now: self.clock.now(),
            registered_by: &ctx.principal,
        };
        taskdef::build(&req, &probe)?;
        let family = req.family.trim().to_string();
        let family_key = keys::family(&ctx.scope, &family);
        let tags = req.tags.clone().unwrap_or_default();
        let record = self
            .retry_locked(&family_key, || {
                let fam = load::<FamilyRecord>(&*self.store, &family_key)?;
                let (rev, guard) = match &fam {
                    Some(f) => (f.value.last_revision + 1, f.mod_revision),
                    None => (1, 0),
                };
                let reg = Registration {
                    scope: &ctx.scope,
                    revision: rev,
                    now: self.clock.now(),
                    registered_by: &ctx.principal,
                };
                let definition = StoredTaskDefinition::from_built(
                    taskdef::build(&req, &reg)?,
                    TaskDefinitionStatus::Active,
                    reg.now,
                )
                .map_err(EcsError::server)?;
                let record = TaskDefRecord { definition, tags: tags.clone() };
                let txn = Txn::new()
                    .when(&family_key, guard)
                    .put(&family_key, encode(&FamilyRecord { last_revision: rev }))
                    .put_record(&ctx.scope, &Before::absent(), &record);
                Ok((txn, record))
            })
            .await
            .map_err(|e| {
                if e.message.starts_with("Too many concurrent") {
                    EcsError::client(
                        "Too many concurrent attempts to create a new revision of the specified family.",
                    )
                } else {
                    e
                }
            })?;
        Ok(RegisterTaskDefinitionResponse {
            task_definition: Some(record.definition.into_wire()),
            tags: Some(record.tags),
        })
    }

    pub fn describe_task_definition(
        &self,
        ctx: &Ctx,
        req: DescribeTaskDefinitionRequest,
    ) -> Result<DescribeTaskDefinitionResponse> {
        check_include("include", req.include.as_ref(), &["TAGS"])?;
        let found = self.find_task_definition(ctx, &req.task_definition)?.ok_or_else(unable_to_describe)?;
        let tags = includes(req.include.as_ref(), "TAGS").then_some(found.value.tags);
        Ok(DescribeTaskDefinitionResponse { task_definition: Some(found.value.definition.into_wire()), tags })
    }

    pub fn list_task_definitions(
        &self,
        ctx: &Ctx,
        req: ListTaskDefinitionsRequest,
    ) -> Result<ListTaskDefinitionsResponse> {
        let status = req.status.as_deref().unwrap_or(TaskDefinitionStatus::Active.as_str());
        if TaskDefinitionStatus::parse(status).is_none() {
            return Err(EcsError::invalid(format!(
                "status should be one of [ACTIVE,INACTIVE,DELETE_IN_PROGRESS], but was '{status}'."
            )));
        }
        let desc = match req.sort.as_deref() {
            None | Some("ASC") => false,
            Some("DESC") => true,
            Some(other) => {
                return Err(EcsError::invalid(format!(
                    "sort should be one of [ASC,DESC], but was '{other}'."
                )));
            }
        };
        let page = PageRequest::new(req.max_results, req.next_token.as_deref(), 100, 100)?;
        let status_prefix = keys::td_status_prefix(&ctx.scope, status);
        let prefix = match req.family_prefix.as_deref().filter(|f| !f.is_empty()) {
            Some(f) => format!("{status_prefix}{f}!"),
            None => status_prefix.clone(),
        };
        let after = page.after.as_ref().map(|a| format!("{status_prefix}{a}"));
        let kvs = if desc {
            self.store.range_rev(&prefix, after.as_deref(), page.limit + 1)
        } else {
            self.store.range(&prefix, after.as_deref(), page.limit + 1)
        };
        let mut arns = Vec::with_capacity(kvs.len().min(page.limit));
        let mut last = None;
        for kv in kvs.iter().take(page.limit) {
            let tail = &kv.key[status_prefix.len()..];
            if let Some((family, rev)) = keys::parse_td_tail(tail) {
                arns.push(ctx.scope.task_definition_arn(family, rev));
            }
            last = Some(tail);
        }
        let next_token = (kvs.len() > page.limit).then(|| encode_token(last.unwrap_or_default()));
        Ok(ListTaskDefinitionsResponse { task_definition_arns: Some(arns), next_token })
    }

    pub fn list_task_definition_families(
        &self,
        ctx: &Ctx,
        req: ListTaskDefinitionFamiliesRequest,
    ) -> Result<ListTaskDefinitionFamiliesResponse> {
        // ECS lists ACTIVE and INACTIVE families unless asked for one status.
        let status = req.status.as_deref().unwrap_or("ALL");
        if !["ACTIVE", "INACTIVE", "ALL"].contains(&status) {
            return Err(EcsError::invalid(format!(
                "status should be one of [ACTIVE,INACTIVE,ALL], but was '{status}'."
            )));
        }
        let page = PageRequest::new(req.max_results, req.next_token.as_deref(), 100, 100)?;
        let base = keys::family_prefix(&ctx.scope);
        let prefix = format!("{base}{}", req.family_prefix.as_deref().unwrap_or(""));
        let after = page.after.as_ref().map(|a| format!("{base}{a}"));
        let active_prefix = keys::td_status_prefix(&ctx.scope, TaskDefinitionStatus::Active.as_str());
        let mut families = Vec::new();
        let mut cursor = after;
        let mut more = false;
        'scan: loop {
            let chunk = self.store.range(&prefix, cursor.as_deref(), 256);
            if chunk.is_empty() {
                break;
            }
            cursor = chunk.last().map(|kv| kv.key.clone());
            for kv in &chunk {
                let name = &kv.key[base.len()..];
                let active = self.store.range(&format!("{active_prefix}{name}!"), None, 1).len() == 1;
                let keep = match status {
                    "ACTIVE" => active,
                    "INACTIVE" => !active,
                    _ => true,
                };
                if keep {
                    if families.len() == page.limit {
                        more = true;
                        break 'scan;
                    }
                    families.push(name.to_string());
                }
            }
        }
        let next_token = if more { families.last().map(|f| encode_token(f)) } else { None };
        Ok(ListTaskDefinitionFamiliesResponse { families: Some(families), next_token })
    }

    pub async fn deregister_task_definition(
        &self,
        ctx: &Ctx,
        req: DeregisterTaskDefinitionRequest,
    ) -> Result<DeregisterTaskDefinitionResponse> {
        // ECS reads the revision first: one must be given, and be a number.
        if taskdef::revision_text(&req.task_definition).is_none() {
            return Err(EcsError::client("Revision is missing."));
        }
        if let Some(message) = taskdef::invalid_revision(&req.task_definition) {
            return Err(EcsError::client(message));
        }
        let r = match taskdef::parse_ref(&ctx.scope, &req.task_definition) {
            Some(r) => r,
            // A well-formed reference to no revision there can be (0, another region's ARN).
            None => {
                let body = req.task_definition.trim();
                let family = body.split(':').next().unwrap_or_default();
                return Err(if body.starts_with("arn:") || gantry_core::validate::is_valid_name(family) {
                    unable_to_describe()
                } else {
                    EcsError::client("Family contains invalid characters.")
                });
            }
        };
        let def = self
            .retry(|| {
                let mut rec = self.load_task_definition(ctx, &r)?.ok_or_else(unable_to_describe)?;
                let before = Before::of(&ctx.scope, &rec);
                let d = &mut rec.value.definition;
                if !d.is_active() {
                    // Deregistering again changes nothing.
                    return Ok((Txn::new(), rec.value.definition));
                }
                d.status = TaskDefinitionStatus::Inactive;
                d.deregistered_at = Some(self.clock.now());
                let txn = Txn::new().put_record(&ctx.scope, &before, &rec.value);
                Ok((txn, rec.value.definition))
            })
            .await?;
        Ok(DeregisterTaskDefinitionResponse { task_definition: Some(def.into_wire()) })
    }

    pub async fn delete_task_definitions(
        &self,
        ctx: &Ctx,
        req: DeleteTaskDefinitionsRequest,
    ) -> Result<DeleteTaskDefinitionsResponse> {
        if req.task_definitions.is_empty() {
            return Err(EcsError::invalid("taskDefinitions can not be empty."));
        }
        check_batch("taskDefinitions", req.task_definitions.len(), 10)?;
        let mut deleted = Vec::new();
        let mut failures = Vec::new();
        for reference in &req.task_definitions {
            let fail = |reason: &str| Failure {
                arn: Some(reference.clone()),
                reason: Some(reason.to_string()),
                detail: None,
            };
            let r = match taskdef::parse_ref(&ctx.scope, reference) {
                Some(r) if r.revision.is_some() => r,
                _ => {
                    failures.push(fail(
                        "The specified task definition identifier is invalid. Specify a valid name or ARN and try again.",
                    ));
                    continue;
                }
            };
            let outcome = self
                .retry(|| {
                    let Some(mut rec) = self.load_task_definition(ctx, &r)? else {
                        return Ok((Txn::new(), Err(
                            "The specified task definition does not exist. Specify a valid account, family, revision and try again.",
                        )));
                    };
                    let before = Before::of(&ctx.scope, &rec);
                    let d = &mut rec.value.definition;
                    match d.status {
                        TaskDefinitionStatus::Active => {
                            return Ok((Txn::new(), Err(
                                "The specified task definition is still in ACTIVE status. Please deregister the target and try again.",
                            )));
                        }
                        TaskDefinitionStatus::DeleteInProgress => {
                            return Ok((Txn::new(), Ok(rec.value.definition)));
                        }
                        TaskDefinitionStatus::Inactive => {}
                    }
                    d.status = TaskDefinitionStatus::DeleteInProgress;
                    d.delete_requested_at = Some(self.clock.now());
                    let txn = Txn::new().put_record(&ctx.scope, &before, &rec.value);
                    Ok((txn, Ok(rec.value.definition)))
                })
                .await?;
            match outcome {
                Ok(d) => deleted.push(d.into_wire()),
                Err(reason) => failures.push(fail(reason)),
            }
        }
        Ok(DeleteTaskDefinitionsResponse { task_definitions: Some(deleted), failures: Some(failures) })
    }

    /// Decodes every task definition record under a scope (for tagging lookups).
    pub(crate) fn task_definition_by_arn(
        &self,
        ctx: &Ctx,
        arn: &str,
    ) -> Result<Option<Stored<TaskDefRecord>>> {
        match taskdef::parse_ref(&ctx.scope, arn) {
            Some(r) if r.revision.is_some() => self.load_task_definition(ctx, &r),
            _ => Ok(None),
        }
    }
}
