//! ECS's side of [`gantry_ports::TaskLauncher`]: RunTask for EventBridge rules' and EventBridge
//! Scheduler's ECS targets. The request is RunTask's own JSON, so it is validated, placed and
//! remembered (its `clientToken`) exactly as an API call is; the caller acts as the account's
//! root, as those services act with the target's role.

use crate::{ControlPlane, Ctx};
use gantry_core::Scope;
use gantry_model::RunTaskRequest;
use gantry_ports::lb::PortFuture;
use gantry_ports::{LaunchError, Launched, TaskLauncher};

impl TaskLauncher for ControlPlane {
    fn run_task<'a>(
        &'a self,
        scope: &'a Scope,
        request: &'a [u8],
    ) -> PortFuture<'a, Result<Launched, LaunchError>> {
        Box::pin(async move {
            let req: RunTaskRequest = serde_json::from_slice(request).map_err(|e| LaunchError {
                code: "InvalidParameterException".into(),
                message: format!("The RunTask request is not valid: {e}"),
                server_fault: false,
            })?;
            let ctx = Ctx::root(scope.clone());
            match ControlPlane::run_task(self, &ctx, req).await {
                Ok(out) => Ok(Launched {
                    task_arns: out.tasks.unwrap_or_default().into_iter().filter_map(|t| t.task_arn).collect(),
                    failures: out
                        .failures
                        .unwrap_or_default()
                        .into_iter()
                        .map(|f| (f.arn.unwrap_or_default(), f.reason.unwrap_or_default()))
                        .collect(),
                }),
                Err(e) => Err(LaunchError {
                    code: e.kind.name().to_string(),
                    message: e.message,
                    server_fault: e.kind.is_server_fault(),
                }),
            }
        })
    }
}
