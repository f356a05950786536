//! `gantry_ports::ingress::ServiceScaling`: the scalable target and target tracking policy ECS
//! manages for an Express service, made with this service's own operations (so that
//! `aws application-autoscaling describe-*` shows them and they scale as any other).

use crate::AppAutoScaling;
use gantry_core::{Scope, ServiceError};
use gantry_ports::ingress::{ScalingRefs, ServiceScaling, TargetTracking};
use gantry_ports::lb::PortFuture;
use serde_json::{Value, json};

impl AppAutoScaling {
    async fn json(&self, scope: &Scope, op: &str, input: Value) -> Result<Value, ServiceError> {
        let out = self.call(scope, op, input.to_string().as_bytes()).await?;
        Ok(serde_json::from_slice(&out).unwrap_or(Value::Null))
    }

    async fn put_tracking(
        &self,
        scope: &Scope,
        cluster: &str,
        service: &str,
        spec: &TargetTracking,
    ) -> Result<ScalingRefs, ServiceError> {
        let resource = format!("service/{cluster}/{service}");
        let target = self
            .json(
                scope,
                "RegisterScalableTarget",
                json!({
                    "ServiceNamespace": "ecs",
                    "ResourceId": resource,
                    "ScalableDimension": "ecs:service:DesiredCount",
                    "MinCapacity": spec.min_capacity,
                    "MaxCapacity": spec.max_capacity,
                }),
            )
            .await?;
        let mut metric = json!({ "PredefinedMetricType": spec.predefined_metric });
        if let Some(label) = &spec.resource_label {
            metric["ResourceLabel"] = json!(label);
        }
        let policy = self
            .json(
                scope,
                "PutScalingPolicy",
                json!({
                    "PolicyName": spec.policy_name,
                    "ServiceNamespace": "ecs",
                    "ResourceId": resource,
                    "ScalableDimension": "ecs:service:DesiredCount",
                    "PolicyType": "TargetTrackingScaling",
                    "TargetTrackingScalingPolicyConfiguration": {
                        "TargetValue": spec.target_value,
                        "PredefinedMetricSpecification": metric,
                    },
                }),
            )
            .await?;
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        Ok(ScalingRefs {
            scalable_target_arn: text(&target, "ScalableTargetARN"),
            policy_arn: text(&policy, "PolicyARN"),
        })
    }
}

impl ServiceScaling for AppAutoScaling {
    fn put_target_tracking<'a>(
        &'a self,
        scope: &'a Scope,
        cluster: &'a str,
        service: &'a str,
        spec: &'a TargetTracking,
    ) -> PortFuture<'a, Result<ScalingRefs, String>> {
        Box::pin(async move { self.put_tracking(scope, cluster, service, spec).await.map_err(|e| e.message) })
    }

    fn remove<'a>(
        &'a self,
        scope: &'a Scope,
        cluster: &'a str,
        service: &'a str,
    ) -> PortFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let out = self
                .json(
                    scope,
                    "DeregisterScalableTarget",
                    json!({
                        "ServiceNamespace": "ecs",
                        "ResourceId": format!("service/{cluster}/{service}"),
                        "ScalableDimension": "ecs:service:DesiredCount",
                    }),
                )
                .await;
            match out {
                Ok(_) => Ok(()),
                Err(e) if e.code == "ObjectNotFoundException" => Ok(()),
                Err(e) => Err(e.message),
            }
        })
    }
}
