//! What the deterministic simulations share: a launcher that plays EC2 for EC2 Auto Scaling
//! by registering container instances, and request building from JSON.

use gantry_core::{Clock, Scope};
use gantry_ecs::{ControlPlane, Ctx};
use gantry_ports::autoscaling::{HostSpec, Launcher, PortFuture};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Registers a container instance for each launched host, its agent connected (as an agent
/// with Docker registers: its zone, its type, container health checks); deregisters it when the
/// host is terminated, as the binary's launchers do.
pub struct RegisteringLauncher {
    control: ControlPlane,
    clock: Arc<dyn Clock>,
    guards: Mutex<HashMap<String, gantry_ecs::agents::PollGuard>>,
}

impl RegisteringLauncher {
    pub fn new(control: &ControlPlane, clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(RegisteringLauncher { control: control.clone(), clock, guards: Mutex::default() })
    }
}

impl Launcher for RegisteringLauncher {
    fn launch<'a>(&'a self, spec: &'a HostSpec) -> PortFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let (cpu, memory) = gantry_core::ec2::resources(&spec.instance_type).ok_or("unknown type")?;
            let ctx = Ctx::root(Scope::new(spec.account.clone(), spec.region.clone()));
            let req: gantry_model::RegisterContainerInstanceRequest = serde_json::from_value(json!({
                "cluster": spec.cluster,
                "instanceIdentityDocument": json!({"instanceId": spec.instance_id, "instanceType": spec.instance_type,
                    "availabilityZone": spec.availability_zone}).to_string(),
                "totalResources": [
                    {"name": "CPU", "type": "INTEGER", "integerValue": cpu},
                    {"name": "MEMORY", "type": "INTEGER", "integerValue": memory}],
                "attributes": [{"name": "ecs.availability-zone", "value": spec.availability_zone},
                    {"name": "ecs.instance-type", "value": spec.instance_type},
                    {"name": "ecs.capability.container-health-check"}],
            }))
            .unwrap();
            let out = self.control.register_container_instance(&ctx, req).await.map_err(|e| e.to_string())?;
            let arn = out.container_instance.and_then(|c| c.container_instance_arn).unwrap_or_default();
            let (guard, _) = self.control.agents().begin_poll(&arn, self.clock.clone());
            self.guards.lock().unwrap().insert(spec.instance_id.clone(), guard);
            Ok(())
        })
    }
    fn terminate<'a>(&'a self, spec: &'a HostSpec) -> PortFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.guards.lock().unwrap().remove(&spec.instance_id);
            let ctx = Ctx::root(Scope::new(spec.account.clone(), spec.region.clone()));
            if let Some(arn) =
                self.control.container_instance_by_ec2_id(&ctx, &spec.cluster, &spec.instance_id)
            {
                let req = gantry_model::DeregisterContainerInstanceRequest {
                    cluster: Some(spec.cluster.clone()),
                    container_instance: arn,
                    force: Some(true),
                };
                self.control.deregister_container_instance(&ctx, req).await.map_err(|e| e.to_string())?;
            }
            Ok(())
        })
    }
}

/// A request (or any shape) from its JSON.
pub fn req<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap()
}
