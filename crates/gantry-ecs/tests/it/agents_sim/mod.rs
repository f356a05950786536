//! Simulated agents and service helpers shared by the scheduler's simulation tests: what a real
//! agent would report for each task, decided by its image (`crash` stops at once, `stuck` never
//! starts, anything else starts on the next step), and reads of a service and its tasks.

use crate::common::req;
use gantry_ecs::{ControlPlane, Ctx};
use gantry_model::*;
use serde_json::json;

/// A service as DescribeServices shows it.
pub fn service(cp: &ControlPlane, ctx: &Ctx, cluster: &str, name: &str) -> Service {
    let out = cp.describe_services(ctx, req(json!({"cluster": cluster, "services": [name]}))).unwrap();
    out.services.unwrap().remove(0)
}

/// Every task of the cluster, STOPPED ones included, in listing order.
pub fn tasks(cp: &ControlPlane, ctx: &Ctx, cluster: &str) -> Vec<Task> {
    let mut all = Vec::new();
    for status in ["RUNNING", "STOPPED"] {
        let arns = cp
            .list_tasks(ctx, req(json!({"cluster": cluster, "desiredStatus": status, "maxResults": 100})))
            .unwrap()
            .task_arns
            .unwrap();
        if !arns.is_empty() {
            let d = cp.describe_tasks(ctx, req(json!({"cluster": cluster, "tasks": arns}))).unwrap();
            all.extend(d.tasks.unwrap());
        }
    }
    all
}

/// The tasks of the cluster that are not STOPPED.
pub fn live(cp: &ControlPlane, ctx: &Ctx, cluster: &str) -> Vec<Task> {
    tasks(cp, ctx, cluster).into_iter().filter(|t| t.last_status.as_deref() != Some("STOPPED")).collect()
}

/// One round of the agents: carry out stop requests, start (or crash) what is pending.
pub async fn agents(cp: &ControlPlane, ctx: &Ctx, cluster: &str) {
    for t in live(cp, ctx, cluster) {
        let image = t.containers.iter().flatten().find_map(|c| c.image.clone()).unwrap_or_default();
        let status = if t.desired_status.as_deref() == Some("STOPPED") || image == "crash" {
            "STOPPED"
        } else if t.last_status.as_deref() != Some("RUNNING") && image != "stuck" {
            "RUNNING"
        } else {
            continue;
        };
        cp.submit_task_state_change(
            ctx,
            req(json!({"cluster": cluster, "task": t.task_arn, "status": status})),
        )
        .await
        .unwrap();
    }
}
