//! Daemon task definitions: RegisterDaemonTaskDefinition, DescribeDaemonTaskDefinition,
//! ListDaemonTaskDefinitions, DeleteDaemonTaskDefinition.
//!
//! Storage mirrors task definitions': a family record (`daemon-family/FAMILY`) holds the last
//! revision handed out, a record per revision (`daemon-task-definition/FAMILY!REV`) holds the
//! definition and its tags, and an index by status (`dtd-status/STATUS/FAMILY!REV`) serves the
//! listings of one status in ECS's order. Deleting a revision no daemon uses makes it DELETED at
//! once; one an ACTIVE daemon still uses stays DELETE_IN_PROGRESS until the daemon lets it go.

use super::task_definitions::FamilyRecord;
use super::taskdef_record::StoredDaemonTaskDefinition;
use crate::records::{encode, load};
use crate::table::{Before, Record, Row, TxnExt};
use crate::{ControlPlane, Ctx, Stored, keys};
use gantry_core::daemon;
use gantry_core::page::{PageRequest, encode_token};
use gantry_core::taskdef::{Registration, TaskDefRef};
use gantry_core::{DaemonTaskDefinitionStatus, EcsError, Result, Scope};
use gantry_model::*;
use gantry_store::Txn;
use serde::{Deserialize, Serialize};

/// A revision as stored: its definition and its tags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonTaskDefRecord {
    pub definition: StoredDaemonTaskDefinition,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

impl Record for DaemonTaskDefRecord {
    fn key(&self, scope: &Scope) -> String {
        keys::daemon_task_definition(scope, &self.definition.family, self.definition.revision)
    }
    fn index_keys(&self, scope: &Scope) -> Vec<Row> {
        let d = &self.definition;
        vec![(keys::dtd_status(scope, d.status.as_str(), &d.family, d.revision), Vec::new())]
    }
}

fn unable_to_describe() -> EcsError {
    EcsError::client("Unable to describe daemon task definition.")
}

impl ControlPlane {
    /// A daemon task definition by reference: a bare family means its latest ACTIVE revision.
    pub(crate) fn find_daemon_task_definition(
        &self,
        ctx: &Ctx,
        reference: &str,
    ) -> Result<Option<Stored<DaemonTaskDefRecord>>> {
        let Some(r) = daemon::parse_ref(&ctx.scope, reference) else {
            return Ok(None);
        };
        self.load_daemon_task_definition(ctx, &r)
    }

    fn load_daemon_task_definition(
        &self,
        ctx: &Ctx,
        r: &TaskDefRef,
    ) -> Result<Option<Stored<DaemonTaskDefRecord>>> {
        let revision = match r.revision {
            Some(rev) => rev,
            None => {
                let prefix = format!(
                    "{}{}!",
                    keys::dtd_status_prefix(&ctx.scope, DaemonTaskDefinitionStatus::Active.as_str()),
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
        load(&*self.store, &keys::daemon_task_definition(&ctx.scope, &r.family, revision))
    }

    pub async fn register_daemon_task_definition(
        &self,
        ctx: &Ctx,
        req: RegisterDaemonTaskDefinitionRequest,
    ) -> Result<RegisterDaemonTaskDefinitionResponse> {
        let probe = Registration {
            scope: &ctx.scope,
            revision: 1,
            now: self.clock.now(),
            registered_by: &ctx.principal,
        };
        daemon::build(&req, &probe)?;
        if let Some(tags) = &req.tags {
            gantry_core::validate::validate_tags(tags)?;
        }
        let family = req.family.trim().to_string();
        let family_key = keys::daemon_family(&ctx.scope, &family);
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
                let definition = StoredDaemonTaskDefinition::from_built(daemon::build(&req, &reg)?, reg.now)
                    .map_err(EcsError::server)?;
                let record = DaemonTaskDefRecord { definition, tags: tags.clone() };
                let txn = Txn::new()
                    .when(&family_key, guard)
                    .put(&family_key, encode(&FamilyRecord { last_revision: rev }))
                    .put_record(&ctx.scope, &Before::absent(), &record);
                Ok((txn, record))
            })
            .await?;
        Ok(RegisterDaemonTaskDefinitionResponse {
            daemon_task_definition_arn: Some(record.definition.daemon_task_definition_arn),
        })
    }

    pub fn describe_daemon_task_definition(
        &self,
        ctx: &Ctx,
        req: DescribeDaemonTaskDefinitionRequest,
    ) -> Result<DescribeDaemonTaskDefinitionResponse> {
        let found = self
            .find_daemon_task_definition(ctx, &req.daemon_task_definition)?
            .ok_or_else(unable_to_describe)?;
        Ok(DescribeDaemonTaskDefinitionResponse {
            daemon_task_definition: Some(found.value.definition.into_wire()),
        })
    }

    pub fn list_daemon_task_definitions(
        &self,
        ctx: &Ctx,
        req: ListDaemonTaskDefinitionsRequest,
    ) -> Result<ListDaemonTaskDefinitionsResponse> {
        let status = req.status.as_deref().unwrap_or(DaemonTaskDefinitionStatus::Active.as_str());
        super::one_of("status", status, &["ACTIVE", "DELETE_IN_PROGRESS", "ALL"])?;
        if let Some(r) = &req.revision {
            super::one_of("revision", r, &["LAST_REGISTERED"])?;
        }
        let desc = match req.sort.as_deref() {
            None => false,
            Some(s) => {
                super::one_of("sort", s, &["ASC", "DESC"])?;
                s == "DESC"
            }
        };
        if req.family.is_some() && req.family_prefix.is_some() {
            return Err(EcsError::invalid("family and familyPrefix can not both be specified."));
        }
        let page = PageRequest::new(req.max_results, req.next_token.as_deref(), 100, 100)?;
        // ALL reads the revisions themselves (every one is a candidate); one status reads its index.
        let base = if status == "ALL" {
            keys::daemon_task_definitions_prefix(&ctx.scope)
        } else {
            keys::dtd_status_prefix(&ctx.scope, status)
        };
        let prefix = match (req.family.as_deref(), req.family_prefix.as_deref().filter(|f| !f.is_empty())) {
            (Some(f), _) => format!("{base}{f}!"),
            (None, Some(p)) => format!("{base}{p}"),
            (None, None) => base.clone(),
        };
        let last_only = req.revision.is_some();
        let mut after = page.after.as_ref().map(|a| format!("{base}{a}"));
        let mut out = Vec::new();
        let mut more = false;
        'scan: loop {
            let chunk = if desc {
                self.store.range_rev(&prefix, after.as_deref(), 256)
            } else {
                self.store.range(&prefix, after.as_deref(), 256)
            };
            let Some(last) = chunk.last() else { break };
            after = Some(last.key.clone());
            for kv in &chunk {
                let tail = &kv.key[base.len()..];
                let Some((family, rev)) = keys::parse_td_tail(tail) else { continue };
                if last_only {
                    let fam = load::<FamilyRecord>(&*self.store, &keys::daemon_family(&ctx.scope, family))?;
                    if fam.is_none_or(|f| f.value.last_revision != rev) {
                        continue;
                    }
                }
                if out.len() == page.limit {
                    more = true;
                    break 'scan;
                }
                let Some(rec) = load::<DaemonTaskDefRecord>(
                    &*self.store,
                    &keys::daemon_task_definition(&ctx.scope, family, rev),
                )?
                else {
                    continue;
                };
                out.push((tail.to_string(), rec.value.definition.summary()));
            }
        }
        let next_token = if more { out.last().map(|(t, _)| encode_token(t)) } else { None };
        Ok(ListDaemonTaskDefinitionsResponse {
            daemon_task_definitions: Some(out.into_iter().map(|(_, s)| s).collect()),
            next_token,
        })
    }

    pub async fn delete_daemon_task_definition(
        &self,
        ctx: &Ctx,
        req: DeleteDaemonTaskDefinitionRequest,
    ) -> Result<DeleteDaemonTaskDefinitionResponse> {
        let r = match daemon::parse_ref(&ctx.scope, &req.daemon_task_definition) {
            Some(r) if r.revision.is_some() => r,
            Some(_) => return Err(EcsError::client("Revision is missing.")),
            None => {
                return Err(EcsError::client(format!(
                    "Invalid daemon task definition identifier '{}'. Specify family:revision or the full ARN.",
                    req.daemon_task_definition
                )));
            }
        };
        let arn = self
            .retry(|| {
                let mut rec = self.load_daemon_task_definition(ctx, &r)?.ok_or_else(unable_to_describe)?;
                let before = Before::of(&ctx.scope, &rec);
                let arn = rec.value.definition.daemon_task_definition_arn.clone();
                if !rec.value.definition.is_active() {
                    return Err(EcsError::client(format!(
                        "The daemon task definition {arn} is not in ACTIVE status and can not be deleted."
                    )));
                }
                // In use by a daemon: DELETE_IN_PROGRESS until no daemon refers to it.
                let in_use = self.daemons_using(ctx, &arn)?;
                let d = &mut rec.value.definition;
                d.status = if in_use {
                    DaemonTaskDefinitionStatus::DeleteInProgress
                } else {
                    DaemonTaskDefinitionStatus::Deleted
                };
                d.delete_requested_at = Some(self.clock.now());
                Ok((Txn::new().put_record(&ctx.scope, &before, &rec.value), arn))
            })
            .await?;
        Ok(DeleteDaemonTaskDefinitionResponse { daemon_task_definition_arn: Some(arn) })
    }
}
