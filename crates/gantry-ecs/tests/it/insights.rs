//! Container Insights' performance events: made for clusters with `containerInsights` enabled or
//! enhanced (and only those), from the agents' stats as the fake runtime reports them
//! (deterministic: a task burning one core is 1,024 CPU units), in embedded metric format.

use crate::common::{connected_instance, req, setup};
use gantry_core::Clock;
use gantry_core::protocol::{ContainerStats, TaskStats, TaskStatsReport};
use gantry_ecs::insights::PerformanceEvents;
use serde_json::{Value, json};

async fn cluster(
    cp: &gantry_ecs::ControlPlane,
    ctx: &gantry_ecs::Ctx,
    clock: &std::sync::Arc<gantry_core::FixedClock>,
    name: &str,
    insights: Option<&str>,
) -> (String, gantry_ecs::agents::PollGuard) {
    let mut body = json!({"clusterName": name});
    if let Some(v) = insights {
        body["settings"] = json!([{"name": "containerInsights", "value": v}]);
    }
    cp.create_cluster(ctx, req(body)).await.unwrap();
    connected_instance(
        cp,
        ctx,
        clock,
        req(json!({"cluster": name, "totalResources": [
            {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": 1024}]})),
    )
    .await
}

async fn running_task(
    cp: &gantry_ecs::ControlPlane,
    ctx: &gantry_ecs::Ctx,
    cluster: &str,
    group: &str,
) -> String {
    let out = cp
        .run_task(ctx, req(json!({"cluster": cluster, "taskDefinition": "web", "group": group})))
        .await
        .unwrap();
    let tasks = out.tasks.unwrap_or_default();
    assert_eq!(tasks.len(), 1, "{:?}", out.failures);
    let arn = tasks[0].task_arn.clone().unwrap();
    cp.submit_task_state_change(
        ctx,
        req(json!({"cluster": cluster, "task": arn, "status": "RUNNING",
            "containers": [{"containerName": "web", "status": "RUNNING"}]})),
    )
    .await
    .unwrap();
    arn
}

fn stats(task: &str, rx: u64) -> TaskStats {
    TaskStats {
        task_arn: task.to_string(),
        cpu_units: 1024.0,
        memory_bytes: 64 << 20,
        network_rx_bytes: rx,
        network_tx_bytes: 500,
        storage_read_bytes: 4096,
        storage_write_bytes: 8192,
        containers: vec![ContainerStats {
            name: "web".into(),
            cpu_units: 1024.0,
            memory_bytes: 64 << 20,
            network_rx_bytes: rx,
            network_tx_bytes: 500,
            storage_read_bytes: 4096,
            storage_write_bytes: 8192,
        }],
    }
}

fn of_type(events: Vec<Value>, kind: &str) -> Vec<Value> {
    events.into_iter().filter(|e| e["Type"] == kind).collect()
}

fn events(batches: &[PerformanceEvents], stream_prefix: &str) -> Vec<Value> {
    batches
        .iter()
        .filter(|b| b.stream.starts_with(stream_prefix))
        .flat_map(|b| b.events.iter().map(|(_, e)| serde_json::from_str(e).unwrap()))
        .collect()
}

#[tokio::test]
async fn performance_events_only_for_clusters_with_insights() {
    let (cp, ctx, clock) = setup();
    let (on_ci, _g1) = cluster(&cp, &ctx, &clock, "on", Some("enhanced")).await;
    let (off_ci, _g2) = cluster(&cp, &ctx, &clock, "off", None).await;
    cp.register_task_definition(
        &ctx,
        req(json!({"family": "web",
            "containerDefinitions": [{"name": "web", "image": "img", "cpu": 512, "memory": 256}]})),
    )
    .await
    .unwrap();
    cp.create_service(
        &ctx,
        req(json!({"cluster": "on", "serviceName": "api", "taskDefinition": "web", "desiredCount": 2})),
    )
    .await
    .unwrap();
    let on = running_task(&cp, &ctx, "on", "service:api").await;
    let off = running_task(&cp, &ctx, "off", "family:web").await;
    for (node, task) in [(&on_ci, &on), (&off_ci, &off)] {
        cp.record_task_stats(TaskStatsReport { node: node.clone(), tasks: vec![stats(task, 1000)] });
    }
    let first = cp.container_insights();
    assert!(first.iter().all(|b| b.group == "/aws/ecs/containerinsights/on/performance"), "{first:?}");
    let [task] = of_type(events(&first, "AgentTelemetry-"), "Task").try_into().unwrap();
    assert_eq!(task["NetworkRxBytes"], 0.0, "no rate before a second sample");

    // A minute later the receive counter grew by 6,000 bytes: 100 bytes per second.
    clock.advance_ms(60_000);
    for (node, task) in [(&on_ci, &on), (&off_ci, &off)] {
        cp.record_task_stats(TaskStatsReport { node: node.clone(), tasks: vec![stats(task, 7000)] });
    }
    let batches = cp.container_insights();
    let instance_id = on_ci.rsplit('/').next().unwrap();
    let streams: Vec<&str> = batches.iter().map(|b| b.stream.as_str()).collect();
    assert_eq!(streams, vec![format!("AgentTelemetry-{instance_id}").as_str(), "ClusterTelemetry"]);
    let now = clock.now().0;
    let [task] = of_type(events(&batches, "AgentTelemetry-"), "Task").try_into().unwrap();
    let task_id = on.rsplit('/').next().unwrap();
    // Enhanced: the container too, against its own reservation (cpu 512, memory 256).
    let [container] = of_type(events(&batches, "AgentTelemetry-"), "Container").try_into().unwrap();
    for (k, v) in [
        ("ContainerName", json!("web")),
        ("TaskId", json!(task_id)),
        ("ServiceName", json!("api")),
        ("ClusterName", json!("on")),
        ("ContainerCpuUtilized", json!(1024.0)),
        ("ContainerCpuReserved", json!(512.0)),
        ("ContainerCpuUtilization", json!(200.0)),
        ("ContainerMemoryUtilized", json!(64.0)),
        ("ContainerMemoryReserved", json!(256.0)),
        ("ContainerMemoryUtilization", json!(25.0)),
        ("ContainerNetworkRxBytes", json!(100.0)),
        ("ContainerStorageWriteBytes", json!(8192)),
    ] {
        assert_eq!(container[k], v, "{k} in {container}");
    }
    assert_eq!(
        container["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([
            ["ClusterName", "ContainerName", "TaskDefinitionFamily"],
            ["ClusterName", "ContainerName", "TaskDefinitionFamily", "TaskId"],
            ["ClusterName", "ContainerName", "ServiceName"],
            ["ClusterName", "ContainerName", "ServiceName", "TaskId"]
        ])
    );
    let cnames: Vec<&str> = container["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Name"].as_str().unwrap())
        .collect();
    assert!(cnames.iter().all(|n| container[*n].is_number()), "{container}");
    for (k, v) in [
        ("Type", json!("Task")),
        ("TaskId", json!(task_id)),
        ("TaskDefinitionFamily", json!("web")),
        ("TaskDefinitionRevision", json!("1")),
        ("ClusterName", json!("on")),
        ("ServiceName", json!("api")),
        ("ContainerInstanceId", json!(instance_id)),
        ("Timestamp", json!(now)),
        ("CpuUtilized", json!(1024.0)),
        ("CpuReserved", json!(512.0)),
        ("MemoryUtilized", json!(64.0)),
        ("MemoryReserved", json!(256.0)),
        ("NetworkRxBytes", json!(100.0)),
        ("NetworkTxBytes", json!(0.0)),
        ("StorageReadBytes", json!(4096)),
        ("StorageWriteBytes", json!(8192)),
        ("TaskCpuUtilization", json!(200.0)),
        ("TaskMemoryUtilization", json!(25.0)),
    ] {
        assert_eq!(task[k], v, "{k} in {task}");
    }
    let directive = &task["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(task["_aws"]["Timestamp"], json!(now));
    assert_eq!(directive["Namespace"], "ECS/ContainerInsights");
    assert_eq!(
        directive["Dimensions"],
        json!([
            ["ClusterName"],
            ["ClusterName", "TaskDefinitionFamily"],
            ["ClusterName", "ServiceName"],
            ["ClusterName", "TaskDefinitionFamily", "TaskId"],
            ["ClusterName", "ServiceName", "TaskId"]
        ])
    );
    let names: Vec<&str> =
        directive["Metrics"].as_array().unwrap().iter().map(|m| m["Name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 10, "{names:?}");
    // Every metric the directive names is a number on the root, as EMF requires.
    assert!(names.iter().all(|n| task[*n].is_number()), "{task}");

    let cluster_events = events(&batches, "ClusterTelemetry");
    let service = cluster_events.iter().find(|e| e["Type"] == "Service").unwrap();
    for (k, v) in [
        ("ServiceName", json!("api")),
        ("ClusterName", json!("on")),
        ("DesiredTaskCount", json!(2)),
        ("RunningTaskCount", json!(0)),
        ("PendingTaskCount", json!(0)),
        ("DeploymentCount", json!(1)),
        ("TaskSetCount", json!(0)),
    ] {
        assert_eq!(service[k], v, "{k} in {service}");
    }
    assert_eq!(
        service["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["ServiceName", "ClusterName"]])
    );
    let c = cluster_events.iter().find(|e| e["Type"] == "Cluster").unwrap();
    assert_eq!(
        (c["TaskCount"].clone(), c["ContainerInstanceCount"].clone(), c["ServiceCount"].clone()),
        (json!(1), json!(1), json!(1))
    );

    // Turned off, the cluster has no more events; `enabled` has no task-level dimensions.
    cp.update_cluster_settings(
        &ctx,
        req(json!({"cluster": "on", "settings": [{"name": "containerInsights", "value": "disabled"}]})),
    )
    .await
    .unwrap();
    assert_eq!(cp.container_insights(), vec![]);
    cp.update_cluster_settings(
        &ctx,
        req(json!({"cluster": "off", "settings": [{"name": "containerInsights", "value": "enabled"}]})),
    )
    .await
    .unwrap();
    let batches = cp.container_insights();
    let [task] = events(&batches, "AgentTelemetry-").try_into().unwrap();
    assert_eq!(task["ClusterName"], "off");
    assert_eq!(task["Type"], "Task", "no Container events without enhanced");
    assert_eq!(
        task["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["ClusterName"], ["ClusterName", "TaskDefinitionFamily"]])
    );
    assert!(task.get("TaskCpuUtilization").is_none());
}

#[tokio::test]
async fn an_idle_cluster_still_gets_its_service_and_cluster_events() {
    let (cp, ctx, _clock) = setup();
    // Container Insights on, a service scaled to zero, no instance, no stats ever reported.
    cp.create_cluster(
        &ctx,
        req(json!({"clusterName": "idle", "settings": [{"name": "containerInsights", "value": "enabled"}]})),
    )
    .await
    .unwrap();
    cp.register_task_definition(
        &ctx,
        req(
            json!({"family": "web", "containerDefinitions": [{"name": "web", "image": "img", "memory": 64}]}),
        ),
    )
    .await
    .unwrap();
    cp.create_service(
        &ctx,
        req(json!({"cluster": "idle", "serviceName": "api", "taskDefinition": "web", "desiredCount": 0})),
    )
    .await
    .unwrap();
    let batches = cp.container_insights();
    let cluster_events = events(&batches, "ClusterTelemetry");
    let [service] = of_type(cluster_events.clone(), "Service").try_into().unwrap();
    assert_eq!(
        (service["ServiceName"].clone(), service["DesiredTaskCount"].clone()),
        (json!("api"), json!(0))
    );
    let [c] = of_type(cluster_events, "Cluster").try_into().unwrap();
    assert_eq!(
        (c["ClusterName"].clone(), c["ServiceCount"].clone(), c["TaskCount"].clone()),
        (json!("idle"), json!(1), json!(0))
    );
    assert!(events(&batches, "AgentTelemetry-").is_empty());
}
