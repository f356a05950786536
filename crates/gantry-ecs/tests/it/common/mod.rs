//! Helpers shared by the control-plane test files.

use gantry_core::{FixedClock, Scope, SeededIds, Timestamp};
use gantry_ecs::{ControlPlane, Ctx};
use std::sync::Arc;

/// A control plane on an in-memory store, a fixed clock and seeded IDs, and a root context.
pub fn setup() -> (ControlPlane, Ctx, Arc<FixedClock>) {
    let store = Arc::new(gantry_store::SqliteStore::in_memory().unwrap());
    let clock = Arc::new(FixedClock::new(Timestamp(1_700_000_000_000)));
    let cp = ControlPlane::new(store, clock.clone(), Arc::new(SeededIds::new(9)));
    (cp, Ctx::root(Scope::new("000000000000", "us-east-1")), clock)
}

/// A request shape from JSON.
pub fn req<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap()
}

/// Registers a container instance and keeps its agent connected while the guard lives.
pub async fn connected_instance(
    cp: &ControlPlane,
    ctx: &Ctx,
    clock: &Arc<FixedClock>,
    registration: gantry_model::RegisterContainerInstanceRequest,
) -> (String, gantry_ecs::agents::PollGuard) {
    let arn = cp
        .register_container_instance(ctx, registration)
        .await
        .unwrap()
        .container_instance
        .unwrap()
        .container_instance_arn
        .unwrap();
    let (guard, _) = cp.agents().begin_poll(&arn, clock.clone());
    (arn, guard)
}
