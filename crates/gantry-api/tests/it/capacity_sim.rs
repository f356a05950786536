//! Cluster auto scaling, deterministically: ECS's control plane and EC2 Auto Scaling on one
//! in-memory store and a fixed clock, the group's instances "launched" by registering container
//! instances whose agents count as connected. A burst of 5,000 tasks through a capacity
//! provider with managed scaling on a group starting at 0: the tasks wait for capacity, the
//! reservation says 200 (no instances, some needed), the group grows to the 1,000 instances the
//! tasks binpack to, the tasks are placed, and CapacityProviderReservation settles at 100.

use crate::support::{RegisteringLauncher, req};
use gantry_autoscaling::AutoScaling;
use gantry_core::{FixedClock, Scope, SeededIds, Timestamp};
use gantry_ecs::{ControlPlane, Ctx};
use gantry_ports::{MetricDatum, MetricSink, MetricValue};
use serde_json::json;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Recorded(Mutex<Vec<MetricDatum>>);

impl MetricSink for Recorded {
    fn put(&self, data: Vec<MetricDatum>) {
        self.0.lock().unwrap().extend(data);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_scaling_reaches_a_reservation_of_100_with_1000_instances_and_5000_tasks() {
    let store: Arc<dyn gantry_store::Store> = Arc::new(gantry_store::SqliteStore::in_memory().unwrap());
    let clock = Arc::new(FixedClock::new(Timestamp(1_800_000_000_000)));
    let control = ControlPlane::new(store.clone(), clock.clone(), Arc::new(SeededIds::new(3)));
    let launcher = RegisteringLauncher::new(&control, clock.clone());
    let asg = Arc::new(AutoScaling::new(store, clock.clone(), Arc::new(SeededIds::new(4)), launcher.clone()));
    let metrics = Arc::new(Recorded::default());
    control.set_capacity(asg.clone(), metrics.clone(), std::time::Duration::from_secs(900));
    let scope = Scope::new("123456789012", "us-east-1");
    let ctx = Ctx::root(scope.clone());

    // "ECS_CLUSTER=sim", base64.
    let call = |op: &'static str, v: serde_json::Value| {
        let (asg, scope) = (asg.clone(), scope.clone());
        async move { asg.call(&scope, op, &serde_json::to_vec(&v).unwrap()).await.unwrap() }
    };
    call(
        "CreateLaunchConfiguration",
        json!({"LaunchConfigurationName": "sim", "ImageId": "gantry-sim",
        "InstanceType": "m5.large", "UserData": "RUNTX0NMVVNURVI9c2lt"}),
    )
    .await;
    call("CreateAutoScalingGroup", json!({"AutoScalingGroupName": "fleet", "LaunchConfigurationName": "sim",
        "MinSize": 0, "MaxSize": 1000, "DesiredCapacity": 0, "AvailabilityZones": ["us-east-1a", "us-east-1b", "us-east-1c"]})).await;
    let groups: serde_json::Value = serde_json::from_slice(
        &call("DescribeAutoScalingGroups", json!({"AutoScalingGroupNames": ["fleet"]})).await,
    )
    .unwrap();
    let asg_arn = groups["AutoScalingGroups"][0]["AutoScalingGroupARN"].as_str().unwrap().to_string();

    control.create_cluster(&ctx, req(json!({"clusterName": "sim"}))).await.unwrap();
    control
        .create_capacity_provider(
            &ctx,
            req(json!({"name": "fleet-cp", "autoScalingGroupProvider": {
            "autoScalingGroupArn": asg_arn, "managedScaling": {"status": "ENABLED", "targetCapacity": 100},
            "managedTerminationProtection": "ENABLED"}})),
        )
        .await
        .unwrap();
    control
        .put_cluster_capacity_providers(
            &ctx,
            req(json!({"cluster": "sim", "capacityProviders": ["fleet-cp"],
            "defaultCapacityProviderStrategy": [{"capacityProvider": "fleet-cp", "weight": 1}]})),
        )
        .await
        .unwrap();
    // 1,536 MiB each: five fit an m5.large's 7,936 MiB, six do not.
    control
        .register_task_definition(
            &ctx,
            req(json!({"family": "work", "containerDefinitions": [
            {"name": "w", "image": "busybox", "cpu": 256, "memory": 1536}]})),
        )
        .await
        .unwrap();

    // The burst: 5,000 tasks, 10 per RunTask, none placed yet.
    for _ in 0..500 {
        let out = control
            .run_task(&ctx, req(json!({"cluster": "sim", "taskDefinition": "work", "count": 10})))
            .await
            .unwrap();
        let tasks = out.tasks.unwrap_or_default();
        assert_eq!(tasks.len(), 10, "{:?}", out.failures);
        assert!(tasks.iter().all(|t| t.last_status.as_deref() == Some("PROVISIONING")
            && t.container_instance_arn.is_none()
            && t.capacity_provider_name.as_deref() == Some("fleet-cp")));
    }

    let mut first = None;
    let mut last = None;
    for round in 0..10 {
        let reports = control.capacity_pass(&scope, "sim").await.unwrap();
        let r = reports.into_iter().next().expect("one provider");
        first.get_or_insert_with(|| r.clone());
        asg.controller().pass(&scope, "fleet").await.unwrap();
        clock.advance_ms(10_000);
        let done = r.reservation == 100.0 && r.n == 1000;
        last = Some((round, r));
        if done {
            break;
        }
    }
    let first = first.unwrap();
    assert_eq!((first.m, first.n, first.reservation, first.desired), (1000, 0, 200.0, Some(1000)));
    let (rounds, last) = last.unwrap();
    assert_eq!((last.m, last.n, last.reservation), (1000, 1000, 100.0), "after {rounds} rounds");
    assert!(rounds <= 3, "scaled in {rounds} rounds");

    // Every task placed: none waits any more.
    assert!(control.store().range(&gantry_ecs::keys::awaiting_prefix(), None, 1).is_empty());
    let c = control
        .describe_clusters(&ctx, req(json!({"clusters": ["sim"], "include": ["STATISTICS"]})))
        .unwrap();
    let c = &c.clusters.unwrap()[0];
    assert_eq!(c.registered_container_instances_count, 1000);
    assert_eq!(c.pending_tasks_count, 5000, "placed, not yet reported running by agents");
    // Every instance runs tasks (five at most fit one, so five each): managed termination
    // protection protects them all. A minute on, the metric is published again: 100.
    clock.advance_ms(60_000);
    let r = control.capacity_pass(&scope, "sim").await.unwrap();
    assert_eq!((r[0].reservation, r[0].desired), (100.0, None), "steady");
    let view =
        gantry_ports::autoscaling::CapacityGroups::group(asg.as_ref(), "123456789012", "us-east-1", "fleet")
            .unwrap();
    assert_eq!(view.desired_capacity, 1000);
    assert!(view.instances.iter().all(|i| i.protected_from_scale_in && i.lifecycle_state == "InService"));
    // The metric went to CloudWatch with ECS's namespace and dimensions.
    let m = metrics.0.lock().unwrap();
    let d = m.first().unwrap();
    assert_eq!(
        (d.namespace, d.metric_name, d.unit),
        ("AWS/ECS/ManagedScaling", "CapacityProviderReservation", "Percent")
    );
    assert_eq!(
        d.dimensions,
        vec![("CapacityProviderName", "fleet-cp".to_string()), ("ClusterName", "sim".to_string())]
    );
    assert_eq!(d.value, MetricValue::Value(200.0));
    assert!(m.iter().any(|d| d.value == MetricValue::Value(100.0)));
}

/// ECS Managed Instances: a `MANAGED_INSTANCES` provider of a cluster, whose instances Gantry
/// launches itself (the launcher its `gantry:launcher` tag names, the instance type its
/// `instanceRequirements` pick) through an Auto Scaling group of its own: tasks wait in
/// PROVISIONING, the fleet grows to what they need, shrinks to nothing once they are gone, and
/// the group goes with the provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_instances_launch_for_waiting_tasks_and_retire_when_idle() {
    let store: Arc<dyn gantry_store::Store> = Arc::new(gantry_store::SqliteStore::in_memory().unwrap());
    let clock = Arc::new(FixedClock::new(Timestamp(1_800_000_000_000)));
    let control = ControlPlane::new(store.clone(), clock.clone(), Arc::new(SeededIds::new(3)));
    let launcher = RegisteringLauncher::new(&control, clock.clone());
    let asg = Arc::new(AutoScaling::new(store, clock.clone(), Arc::new(SeededIds::new(4)), launcher.clone()));
    let metrics = Arc::new(Recorded::default());
    control.set_capacity(asg.clone(), metrics.clone(), std::time::Duration::from_secs(60));
    let scope = Scope::new("123456789012", "us-east-1");
    let ctx = Ctx::root(scope.clone());
    control.create_cluster(&ctx, req(json!({"clusterName": "mi"}))).await.unwrap();
    let template = json!({"ec2InstanceProfileArn": "arn:aws:iam::123456789012:instance-profile/ecsInstance",
        "networkConfiguration": {"subnets": ["subnet-1"]},
        "instanceRequirements": {"vCpuCount": {"min": 2}, "memoryMiB": {"min": 8192}}});
    let create = |name: &str, cluster: Option<&str>, template: serde_json::Value| {
        let mut v = json!({"name": name, "managedInstancesProvider": {
            "infrastructureRoleArn": "arn:aws:iam::123456789012:role/ecsInfrastructureRole",
            "instanceLaunchTemplate": template, "propagateTags": "CAPACITY_PROVIDER"},
            "tags": [{"key": "gantry:launcher", "value": "gantry-sim"}, {"key": "team", "value": "web"}]});
        if let Some(c) = cluster {
            v["cluster"] = json!(c);
        }
        req::<gantry_model::CreateCapacityProviderRequest>(v)
    };
    // What ECS refuses.
    let e =
        control.create_capacity_provider(&ctx, create("mi-cp", None, template.clone())).await.unwrap_err();
    assert!(e.message.starts_with("cluster must be specified"), "{}", e.message);
    let mut huge = template.clone();
    huge["instanceRequirements"]["vCpuCount"] = json!({"min": 512});
    let e = control.create_capacity_provider(&ctx, create("mi-cp", Some("mi"), huge)).await.unwrap_err();
    assert_eq!(e.message, "No instance type satisfies the specified instanceRequirements.");

    let p = control.create_capacity_provider(&ctx, create("mi-cp", Some("mi"), template)).await.unwrap();
    let p = p.capacity_provider.unwrap();
    assert_eq!(
        (p.r#type.as_deref(), p.cluster.as_deref(), p.status.as_deref()),
        (Some("MANAGED_INSTANCES"), Some("mi"), Some("ACTIVE"))
    );
    assert_eq!(p.managed_instances_provider.unwrap().propagate_tags.as_deref(), Some("CAPACITY_PROVIDER"));
    let c = control.describe_clusters(&ctx, req(json!({"clusters": ["mi"]}))).unwrap().clusters.unwrap();
    assert_eq!(c[0].capacity_providers.as_deref(), Some(&["mi-cp".to_string()][..]));

    // 1,536 MiB each: five fit the m5.large the requirements pick (2 vCPUs, 8 GiB).
    control
        .register_task_definition(
            &ctx,
            req(json!({"family": "work", "containerDefinitions": [
            {"name": "w", "image": "busybox", "cpu": 256, "memory": 1536}]})),
        )
        .await
        .unwrap();
    let out = control
        .run_task(
            &ctx,
            req(json!({"cluster": "mi", "taskDefinition": "work", "count": 10,
                "capacityProviderStrategy": [{"capacityProvider": "mi-cp", "weight": 1}]})),
        )
        .await
        .unwrap();
    let tasks = out.tasks.unwrap();
    assert_eq!(tasks.len(), 10, "they wait for capacity: {:?}", out.failures);
    assert!(tasks.iter().all(|t| t.last_status.as_deref() == Some("PROVISIONING")));

    let group_name = "ecs-managed-instances-mi-cp";
    let group = || {
        gantry_ports::autoscaling::CapacityGroups::group(
            asg.as_ref(),
            "123456789012",
            "us-east-1",
            group_name,
        )
    };
    let mut done = false;
    for _ in 0..6 {
        control.capacity_pass(&scope, "mi").await.unwrap();
        if group().is_some() {
            asg.controller().pass(&scope, group_name).await.unwrap();
        }
        clock.advance_ms(10_000);
        if control.store().range(&gantry_ecs::keys::awaiting_prefix(), None, 1).is_empty() {
            done = true;
            break;
        }
    }
    assert!(done, "every task placed");
    let view = group().unwrap();
    assert_eq!(
        (view.instance_type.as_str(), view.desired_capacity, view.instances.len()),
        ("m5.large", 2, 2)
    );
    // The group is ECS's: AmazonECSManaged, and the provider's tags propagated.
    let tags: serde_json::Value = serde_json::from_slice(
        &asg.call(&scope, "DescribeTags", &serde_json::to_vec(&json!({})).unwrap()).await.unwrap(),
    )
    .unwrap();
    let keys: Vec<&str> =
        tags["Tags"].as_array().unwrap().iter().map(|t| t["Key"].as_str().unwrap()).collect();
    assert!(keys.contains(&"AmazonECSManaged") && keys.contains(&"team"), "{keys:?}");
    // The instances are the cluster's, and busy ones are protected from scale-in.
    let instances = control
        .list_container_instances(&ctx, req(json!({"cluster": "mi"})))
        .unwrap()
        .container_instance_arns
        .unwrap();
    assert_eq!(instances.len(), 2);
    let mut members = control.capacity_provider_instances(&ctx, "mi", "mi-cp").unwrap();
    members.sort();
    let mut all = instances.clone();
    all.sort();
    assert_eq!(members, all, "the provider's instances, queryable per provider");
    control.capacity_pass(&scope, "mi").await.unwrap();
    assert!(group().unwrap().instances.iter().all(|i| i.protected_from_scale_in));

    // The provider cannot go while its tasks run.
    let d = control
        .delete_capacity_provider(&ctx, req(json!({"capacityProvider": "mi-cp"})))
        .await
        .unwrap()
        .capacity_provider
        .unwrap();
    assert_eq!(d.update_status.as_deref(), Some("DELETE_FAILED"));
    assert_eq!(d.status.as_deref(), Some("ACTIVE"));

    // The tasks end: the instances are idle, unprotected, and retired after the scale-in delay.
    for t in &tasks {
        control
            .submit_task_state_change(
                &ctx,
                req(json!({"cluster": "mi", "task": t.task_arn, "status": "STOPPED"})),
            )
            .await
            .unwrap();
    }
    for _ in 0..20 {
        control.capacity_pass(&scope, "mi").await.unwrap();
        asg.controller().pass(&scope, group_name).await.unwrap();
        clock.advance_ms(30_000);
        if group().unwrap().instances.is_empty() {
            break;
        }
    }
    let view = group().unwrap();
    assert_eq!((view.desired_capacity, view.instances.len()), (0, 0), "retired when idle");

    // Deleted, the provider leaves its cluster, and its group goes.
    let d = control
        .delete_capacity_provider(&ctx, req(json!({"capacityProvider": "mi-cp"})))
        .await
        .unwrap()
        .capacity_provider
        .unwrap();
    assert_eq!(
        (d.status.as_deref(), d.update_status.as_deref()),
        (Some("INACTIVE"), Some("DELETE_COMPLETE"))
    );
    let c = control.describe_clusters(&ctx, req(json!({"clusters": ["mi"]}))).unwrap().clusters.unwrap();
    assert!(c[0].capacity_providers.iter().flatten().next().is_none());
    for _ in 0..5 {
        control.capacity_pass(&scope, "mi").await.unwrap();
        if group().is_some() {
            asg.controller().pass(&scope, group_name).await.unwrap();
        }
    }
    assert!(group().is_none(), "the group went with the provider");
    let lcs: serde_json::Value = serde_json::from_slice(
        &asg.call(&scope, "DescribeLaunchConfigurations", &serde_json::to_vec(&json!({})).unwrap())
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(lcs["LaunchConfigurations"], json!([]), "and its launch configuration");
}

/// Managed scaling of a provider with `maximumScalingStepSize` 1 and the given
/// `instanceWarmupPeriod`, for a burst of 15 tasks (three m5.large's worth): the group's
/// desired capacity after each evaluation, one every 10 s of the fake clock for 330 s.
async fn desired_over_a_burst(warmup: i64) -> Vec<i32> {
    let store: Arc<dyn gantry_store::Store> = Arc::new(gantry_store::SqliteStore::in_memory().unwrap());
    let clock = Arc::new(FixedClock::new(Timestamp(1_800_000_000_000)));
    let control = ControlPlane::new(store.clone(), clock.clone(), Arc::new(SeededIds::new(3)));
    let launcher = RegisteringLauncher::new(&control, clock.clone());
    let asg = Arc::new(AutoScaling::new(store, clock.clone(), Arc::new(SeededIds::new(4)), launcher.clone()));
    control.set_capacity(asg.clone(), Arc::new(Recorded::default()), std::time::Duration::from_secs(900));
    let scope = Scope::new("123456789012", "us-east-1");
    let ctx = Ctx::root(scope.clone());
    let call = |op: &'static str, v: serde_json::Value| {
        let (asg, scope) = (asg.clone(), scope.clone());
        async move { asg.call(&scope, op, &serde_json::to_vec(&v).unwrap()).await.unwrap() }
    };
    call(
        "CreateLaunchConfiguration",
        json!({"LaunchConfigurationName": "lc", "ImageId": "gantry-sim",
        "InstanceType": "m5.large", "UserData": "RUNTX0NMVVNURVI9c2lt"}),
    )
    .await;
    call(
        "CreateAutoScalingGroup",
        json!({"AutoScalingGroupName": "fleet", "LaunchConfigurationName": "lc",
        "MinSize": 0, "MaxSize": 10, "DesiredCapacity": 0, "AvailabilityZones": ["us-east-1a"]}),
    )
    .await;
    let view = || {
        gantry_ports::autoscaling::CapacityGroups::group(asg.as_ref(), "123456789012", "us-east-1", "fleet")
            .unwrap()
    };
    let asg_arn = view().arn;
    control.create_cluster(&ctx, req(json!({"clusterName": "sim"}))).await.unwrap();
    control
        .create_capacity_provider(
            &ctx,
            req(json!({"name": "cp", "autoScalingGroupProvider": {
            "autoScalingGroupArn": asg_arn, "managedScaling": {"status": "ENABLED", "targetCapacity": 100,
                "maximumScalingStepSize": 1, "instanceWarmupPeriod": warmup}}})),
        )
        .await
        .unwrap();
    control
        .put_cluster_capacity_providers(
            &ctx,
            req(json!({"cluster": "sim", "capacityProviders": ["cp"],
            "defaultCapacityProviderStrategy": [{"capacityProvider": "cp", "weight": 1}]})),
        )
        .await
        .unwrap();
    control
        .register_task_definition(
            &ctx,
            req(json!({"family": "work", "containerDefinitions": [
            {"name": "w", "image": "busybox", "cpu": 256, "memory": 1536}]})),
        )
        .await
        .unwrap();
    for _ in 0..3 {
        control
            .run_task(&ctx, req(json!({"cluster": "sim", "taskDefinition": "work", "count": 5})))
            .await
            .unwrap();
    }
    let mut out = Vec::new();
    for _ in 0..34 {
        control.capacity_pass(&scope, "sim").await.unwrap();
        asg.controller().pass(&scope, "fleet").await.unwrap();
        out.push(view().desired_capacity);
        clock.advance_ms(10_000);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_warmup_holds_the_next_scale_out_until_the_warm_up_ends() {
    // Warm-up 0: one step per evaluation, as fast as the step size allows.
    let none = desired_over_a_burst(0).await;
    assert_eq!(&none[..4], &[1, 2, 3, 3], "{none:?}");
    // Warm-up 300 s: one scale-out, then nothing until the instance has warmed up (the 31st
    // evaluation is 300 s after the first launch), then the next step, and the next one after
    // that instance's warm-up.
    let warm = desired_over_a_burst(300).await;
    assert!(warm[..30].iter().all(|d| *d == 1), "{warm:?}");
    assert_eq!(warm[30], 2, "{warm:?}");
    assert_eq!(warm[33], 2, "{warm:?}");
}

/// ECS Managed Instances choose an instance type per waiting task: the smallest within the
/// provider's `instanceRequirements` that fits it. A small task and one of 6 GiB get two
/// instances of different types, each container instance reporting its `ecs.instance-type`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_instances_launch_a_type_that_fits_each_waiting_task() {
    let store: Arc<dyn gantry_store::Store> = Arc::new(gantry_store::SqliteStore::in_memory().unwrap());
    let clock = Arc::new(FixedClock::new(Timestamp(1_800_000_000_000)));
    let control = ControlPlane::new(store.clone(), clock.clone(), Arc::new(SeededIds::new(3)));
    let launcher = RegisteringLauncher::new(&control, clock.clone());
    let asg = Arc::new(AutoScaling::new(store, clock.clone(), Arc::new(SeededIds::new(4)), launcher.clone()));
    control.set_capacity(asg.clone(), Arc::new(Recorded::default()), std::time::Duration::from_secs(900));
    let scope = Scope::new("123456789012", "us-east-1");
    let ctx = Ctx::root(scope.clone());
    control.create_cluster(&ctx, req(json!({"clusterName": "mi"}))).await.unwrap();
    control
        .create_capacity_provider(
            &ctx,
            req(json!({"name": "mi-cp", "cluster": "mi", "managedInstancesProvider": {
            "infrastructureRoleArn": "arn:aws:iam::123456789012:role/ecsInfrastructureRole",
            "instanceLaunchTemplate": {
                "ec2InstanceProfileArn": "arn:aws:iam::123456789012:instance-profile/ecsInstance",
                "networkConfiguration": {"subnets": ["subnet-1"]},
                "instanceRequirements": {"vCpuCount": {"min": 2}, "memoryMiB": {"min": 4096}}}},
            "tags": [{"key": "gantry:launcher", "value": "gantry-sim"}]})),
        )
        .await
        .unwrap();
    for (family, memory) in [("small", 512), ("large", 6144)] {
        control
            .register_task_definition(
                &ctx,
                req(json!({"family": family, "containerDefinitions": [
                {"name": "w", "image": "busybox", "cpu": 256, "memory": memory}]})),
            )
            .await
            .unwrap();
        let out = control
            .run_task(
                &ctx,
                req(json!({"cluster": "mi", "taskDefinition": family,
                    "capacityProviderStrategy": [{"capacityProvider": "mi-cp", "weight": 1}]})),
            )
            .await
            .unwrap();
        assert_eq!(out.tasks.unwrap().len(), 1, "{:?}", out.failures);
    }
    let group_name = "ecs-managed-instances-mi-cp";
    let group = || {
        gantry_ports::autoscaling::CapacityGroups::group(
            asg.as_ref(),
            "123456789012",
            "us-east-1",
            group_name,
        )
    };
    for _ in 0..6 {
        control.capacity_pass(&scope, "mi").await.unwrap();
        if group().is_some() {
            asg.controller().pass(&scope, group_name).await.unwrap();
        }
        clock.advance_ms(10_000);
        if control.store().range(&gantry_ecs::keys::awaiting_prefix(), None, 1).is_empty() {
            break;
        }
    }
    assert!(control.store().range(&gantry_ecs::keys::awaiting_prefix(), None, 1).is_empty(), "both placed");
    let view = group().unwrap();
    let mut launched: Vec<(i64, i64)> =
        view.instances.iter().map(|i| gantry_core::ec2::resources(&i.instance_type).unwrap()).collect();
    launched.sort();
    assert_eq!(launched, vec![(2048, 3840), (2048, 7936)], "{:?}", view.instances);
    // Each container instance reports the type it was launched as.
    let arns = control
        .list_container_instances(&ctx, req(json!({"cluster": "mi"})))
        .unwrap()
        .container_instance_arns
        .unwrap();
    let described = control
        .describe_container_instances(&ctx, req(json!({"cluster": "mi", "containerInstances": arns})))
        .unwrap()
        .container_instances
        .unwrap();
    let mut reported: Vec<String> = described
        .iter()
        .map(|ci| {
            ci.attributes
                .iter()
                .flatten()
                .find(|a| a.name == "ecs.instance-type")
                .and_then(|a| a.value.clone())
                .unwrap()
        })
        .collect();
    reported.sort();
    let mut types: Vec<String> = view.instances.iter().map(|i| i.instance_type.clone()).collect();
    types.sort();
    assert_eq!(reported, types);
}
