//! Task scale-in protection: UpdateTaskProtection and GetTaskProtection.
//!
//! Protection lives on the task record ([`super::tasks::Protection`]) as an expiry instant; it
//! lapses by itself, so nothing has to clear it. Only tasks of a service can be protected, as in
//! ECS: a standalone task is reported in `failures[]` with reason `TASK_NOT_VALID`.

use super::check_batch;
use super::tasks::{Protection, TaskRecord, protected_until_ms};
use crate::records::{decode, encode};
use crate::{ControlPlane, Ctx, keys};
use gantry_core::{EcsError, Result};
use gantry_model::*;
use gantry_store::Txn;

/// ECS's default protection period (2 hours) and its longest (48 hours), in minutes.
const DEFAULT_MINUTES: i32 = 120;
const MAX_MINUTES: i32 = 2880;

fn not_valid(arn: &str) -> Failure {
    Failure {
        arn: Some(arn.to_string()),
        reason: Some("TASK_NOT_VALID".into()),
        detail: Some("The task is not part of a service.".into()),
    }
}

fn in_service(rec: &TaskRecord) -> bool {
    rec.task.group.starts_with("service:")
}

/// The protection ECS shows for a task at `now_ms`: lapsed protection is off.
fn shown(rec: &TaskRecord, now_ms: i64) -> ProtectedTask {
    let until = protected_until_ms(rec).filter(|u| *u > now_ms);
    ProtectedTask {
        task_arn: Some(rec.task.task_arn.clone()),
        protection_enabled: until.is_some(),
        expiration_date: until.map(|u| u as f64 / 1000.0),
    }
}

impl ControlPlane {
    pub async fn update_task_protection(
        &self,
        ctx: &Ctx,
        req: UpdateTaskProtectionRequest,
    ) -> Result<UpdateTaskProtectionResponse> {
        if req.tasks.is_empty() {
            return Err(EcsError::invalid("Tasks cannot be empty."));
        }
        check_batch("tasks", req.tasks.len(), 10)?;
        let minutes = req.expires_in_minutes.unwrap_or(DEFAULT_MINUTES);
        if req.protection_enabled && !(1..=MAX_MINUTES).contains(&minutes) {
            return Err(EcsError::invalid(format!(
                "expiresInMinutes must be between 1 and {MAX_MINUTES}, but was {minutes}."
            )));
        }
        let cluster = self.active_cluster(ctx, Some(&req.cluster))?;
        let cname = cluster.value.cluster_name;
        let mut protected = Vec::new();
        let mut failures = Vec::new();
        for r in &req.tasks {
            let outcome = self
                .retry(|| {
                    let Some(mut rec) = self.load_task(ctx, &cname, r)? else {
                        let arn = |id: &str| ctx.scope.arn(&format!("task/{cname}/{id}"));
                        return Ok((Txn::new(), Err(super::missing(r, arn))));
                    };
                    let arn = rec.value.task.task_arn.clone();
                    if !in_service(&rec.value) {
                        return Ok((Txn::new(), Err(not_valid(&arn))));
                    }
                    let now_ms = self.clock.now().0;
                    rec.value.protection = req
                        .protection_enabled
                        .then(|| Protection { expires_at_ms: now_ms + i64::from(minutes) * 60_000 });
                    let out = shown(&rec.value, now_ms);
                    Ok((
                        Txn::new().when(&rec.key, rec.mod_revision).put(&rec.key, encode(&rec.value)),
                        Ok(out),
                    ))
                })
                .await?;
            match outcome {
                Ok(p) => protected.push(p),
                Err(f) => failures.push(f),
            }
        }
        Ok(UpdateTaskProtectionResponse { protected_tasks: Some(protected), failures: Some(failures) })
    }

    pub fn get_task_protection(
        &self,
        ctx: &Ctx,
        req: GetTaskProtectionRequest,
    ) -> Result<GetTaskProtectionResponse> {
        if let Some(t) = &req.tasks {
            check_batch("tasks", t.len(), 100)?;
        }
        let cluster = self.active_cluster(ctx, Some(&req.cluster))?;
        let cname = cluster.value.cluster_name;
        let now_ms = self.clock.now().0;
        let mut protected = Vec::new();
        let mut failures = Vec::new();
        match &req.tasks {
            Some(list) => {
                for r in list {
                    match self.load_task(ctx, &cname, r)? {
                        None => failures
                            .push(super::missing(r, |id| ctx.scope.arn(&format!("task/{cname}/{id}")))),
                        Some(rec) if !in_service(&rec.value) => {
                            failures.push(not_valid(&rec.value.task.task_arn))
                        }
                        Some(rec) => protected.push(shown(&rec.value, now_ms)),
                    }
                }
            }
            // No list: every running service task of the cluster.
            None => {
                for kv in self.store.range(&keys::task_prefix(&ctx.scope, &cname), None, usize::MAX) {
                    let rec = decode::<TaskRecord>(&kv)?;
                    if in_service(&rec.value) && !rec.value.task.is_stopped() {
                        protected.push(shown(&rec.value, now_ms));
                    }
                }
            }
        }
        Ok(GetTaskProtectionResponse { protected_tasks: Some(protected), failures: Some(failures) })
    }
}
