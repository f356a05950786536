//! The control plane called directly, over an in-memory store, a fixed clock and seeded IDs.

use gantry_core::{ErrorKind, FixedClock, Scope, SeededIds, Timestamp};
use gantry_ecs::{ControlPlane, Ctx};
use gantry_model::*;
use gantry_store::SqliteStore;
use serde_json::json;
use std::sync::Arc;

fn setup() -> (ControlPlane, Ctx) {
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let cp = ControlPlane::new(
        store,
        Arc::new(FixedClock::new(Timestamp(1_700_000_000_000))),
        Arc::new(SeededIds::new(1)),
    );
    (cp, Ctx::root(Scope::new("000000000000", "us-east-1")))
}

fn req<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn taskdef(family: &str) -> RegisterTaskDefinitionRequest {
    req(json!({"family": family, "containerDefinitions": [{"name": "a", "image": "busybox", "memory": 64}]}))
}

async fn cluster(cp: &ControlPlane, ctx: &Ctx, name: &str) {
    cp.create_cluster(ctx, req(json!({"clusterName": name}))).await.unwrap();
}

async fn instance(cp: &ControlPlane, ctx: &Ctx, cluster: &str) -> String {
    let r = cp
        .register_container_instance(
            ctx,
            req(json!({"cluster": cluster, "totalResources": [
                {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
                {"name": "MEMORY", "type": "INTEGER", "integerValue": 4096}]})),
        )
        .await
        .unwrap();
    r.container_instance.unwrap().container_instance_arn.unwrap()
}

#[tokio::test]
async fn cluster_lifecycle() {
    let (cp, ctx) = setup();
    cluster(&cp, &ctx, "web").await;
    // Idempotent create.
    cluster(&cp, &ctx, "web").await;
    let list = cp.list_clusters(&ctx, req(json!({}))).unwrap();
    assert_eq!(list.cluster_arns.unwrap(), vec![ctx.scope.cluster_arn("web")]);

    let ci = instance(&cp, &ctx, "web").await;
    let d = cp.describe_clusters(&ctx, req(json!({"clusters": ["web", "gone"]}))).unwrap();
    assert_eq!(d.clusters.as_ref().unwrap()[0].registered_container_instances_count, 1);
    let f = &d.failures.unwrap()[0];
    assert_eq!(
        (f.arn.as_deref(), f.reason.as_deref()),
        (Some(ctx.scope.cluster_arn("gone").as_str()), Some("MISSING"))
    );

    let e = cp.delete_cluster(&ctx, req(json!({"cluster": "web"}))).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::ClusterContainsContainerInstancesException);
    cp.deregister_container_instance(&ctx, req(json!({"cluster": "web", "containerInstance": ci})))
        .await
        .unwrap();
    let gone = cp.delete_cluster(&ctx, req(json!({"cluster": "web"}))).await.unwrap();
    assert_eq!(gone.cluster.unwrap().status.as_deref(), Some("INACTIVE"));
    // Deleted clusters stay describable as INACTIVE but are not listed, and are not found for updates.
    let d = cp.describe_clusters(&ctx, req(json!({"clusters": ["web"]}))).unwrap();
    assert_eq!(d.clusters.unwrap()[0].status.as_deref(), Some("INACTIVE"));
    assert!(cp.list_clusters(&ctx, req(json!({}))).unwrap().cluster_arns.unwrap().is_empty());
    let e = cp
        .update_cluster_settings(
            &ctx,
            req(json!({"cluster": "web", "settings": [{"name": "containerInsights", "value": "enabled"}]})),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::ClusterNotFoundException);
}

#[tokio::test]
async fn cluster_settings_and_include() {
    let (cp, ctx) = setup();
    cp.create_cluster(
        &ctx,
        req(json!({"clusterName": "c", "tags": [{"key": "team", "value": "a"}],
        "configuration": {"executeCommandConfiguration": {"logging": "DEFAULT"}}})),
    )
    .await
    .unwrap();
    let bad = cp
        .update_cluster_settings(
            &ctx,
            req(json!({"cluster": "c", "settings": [{"name": "containerInsights", "value": "on"}]})),
        )
        .await
        .unwrap_err();
    assert_eq!(bad.kind, ErrorKind::InvalidParameterException);
    cp.update_cluster_settings(
        &ctx,
        req(json!({"cluster": "c", "settings": [{"name": "containerInsights", "value": "enhanced"}]})),
    )
    .await
    .unwrap();
    let plain =
        cp.describe_clusters(&ctx, req(json!({"clusters": ["c"]}))).unwrap().clusters.unwrap().remove(0);
    assert!(plain.settings.is_none() && plain.configuration.is_none());
    assert_eq!(plain.tags, Some(vec![]));
    let full = cp
        .describe_clusters(
            &ctx,
            req(json!({"clusters": ["c"], "include": ["SETTINGS", "TAGS", "CONFIGURATIONS", "STATISTICS"]})),
        )
        .unwrap()
        .clusters
        .unwrap()
        .remove(0);
    assert_eq!(full.settings.unwrap()[0].value.as_deref(), Some("enhanced"));
    assert_eq!(full.tags.unwrap()[0].key.as_deref(), Some("team"));
    assert!(full.configuration.is_some());
    assert!(full.statistics.unwrap().iter().any(|s| s.name.as_deref() == Some("runningFargateTasksCount")));
    let e = cp.describe_clusters(&ctx, req(json!({"include": ["EVERYTHING"]}))).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidParameterException);
}

#[tokio::test]
async fn capacity_providers() {
    let (cp, ctx) = setup();
    let all = cp.describe_capacity_providers(&ctx, req(json!({}))).unwrap().capacity_providers.unwrap();
    let names: Vec<_> = all.iter().map(|p| p.name.clone().unwrap()).collect();
    assert_eq!(names, ["FARGATE", "FARGATE_SPOT"]);
    for bad in ["aws-x", "ECSthing", "fargate2", "a b"] {
        let e = cp
            .create_capacity_provider(
                &ctx,
                req(json!({"name": bad, "autoScalingGroupProvider": {"autoScalingGroupArn": "asg"}})),
            )
            .await
            .unwrap_err();
        assert!(e.message.contains("capacity provider name is invalid"), "{bad}: {e}");
    }
    let p = cp
        .create_capacity_provider(
            &ctx,
            req(json!({"name": "cp1", "autoScalingGroupProvider": {"autoScalingGroupArn": "asg-1"}})),
        )
        .await
        .unwrap();
    let p = p.capacity_provider.unwrap();
    assert_eq!(p.auto_scaling_group_provider.unwrap().managed_scaling.unwrap().target_capacity, Some(100));
    let dup = cp
        .create_capacity_provider(
            &ctx,
            req(json!({"name": "cp1", "autoScalingGroupProvider": {"autoScalingGroupArn": "asg-2"}})),
        )
        .await
        .unwrap_err();
    assert!(dup.message.contains("already exists"));
    let reuse = cp
        .create_capacity_provider(
            &ctx,
            req(json!({"name": "cp2", "autoScalingGroupProvider": {"autoScalingGroupArn": "asg-1"}})),
        )
        .await
        .unwrap_err();
    assert!(reuse.message.contains("already being used"));

    cluster(&cp, &ctx, "c").await;
    let e = cp
        .put_cluster_capacity_providers(
            &ctx,
            req(
                json!({"cluster": "c", "capacityProviders": ["nope"], "defaultCapacityProviderStrategy": []}),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidParameterException);
    let e = cp.put_cluster_capacity_providers(&ctx, req(json!({"cluster": "c", "capacityProviders": ["cp1"], "defaultCapacityProviderStrategy": [{"capacityProvider": "FARGATE", "weight": 1}]}))).await.unwrap_err();
    assert!(e.message.contains("not associated with the cluster"));
    cp.put_cluster_capacity_providers(&ctx, req(json!({"cluster": "c", "capacityProviders": ["cp1"], "defaultCapacityProviderStrategy": [{"capacityProvider": "cp1", "weight": 1, "base": 1}]}))).await.unwrap();

    // Associated: the delete "succeeds" with DELETE_FAILED, as in ECS.
    let d = cp
        .delete_capacity_provider(&ctx, req(json!({"capacityProvider": "cp1"})))
        .await
        .unwrap()
        .capacity_provider
        .unwrap();
    assert_eq!((d.status.as_deref(), d.update_status.as_deref()), (Some("ACTIVE"), Some("DELETE_FAILED")));
    cp.put_cluster_capacity_providers(
        &ctx,
        req(json!({"cluster": "c", "capacityProviders": [], "defaultCapacityProviderStrategy": []})),
    )
    .await
    .unwrap();
    let d = cp
        .delete_capacity_provider(
            &ctx,
            req(json!({"capacityProvider": ctx.scope.capacity_provider_arn("cp1")})),
        )
        .await
        .unwrap()
        .capacity_provider
        .unwrap();
    assert_eq!(d.status.as_deref(), Some("INACTIVE"));
    let e = cp
        .update_capacity_provider(&ctx, req(json!({"name": "cp1", "autoScalingGroupProvider": {}})))
        .await
        .unwrap_err();
    assert!(e.message.contains("does not exist"));
    let e = cp.delete_capacity_provider(&ctx, req(json!({"capacityProvider": "FARGATE"}))).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::ClientException);
    let missing = cp.describe_capacity_providers(&ctx, req(json!({"capacityProviders": ["ghost"]}))).unwrap();
    assert_eq!(missing.failures.unwrap()[0].reason.as_deref(), Some("MISSING"));
}

#[tokio::test]
async fn task_definition_revisions_listing_and_deletion() {
    let (cp, ctx) = setup();
    for f in ["a-b", "a", "b"] {
        for _ in 0..3 {
            cp.register_task_definition(&ctx, taskdef(f)).await.unwrap();
        }
    }
    let list = |v: serde_json::Value| cp.list_task_definitions(&ctx, req(v)).unwrap();
    let arns = list(json!({})).task_definition_arns.unwrap();
    let short: Vec<_> = arns.iter().map(|a| a.rsplit('/').next().unwrap().to_string()).collect();
    // ECS order: families lexicographically ("a" before "a-b"), revisions ascending.
    assert_eq!(short, ["a:1", "a:2", "a:3", "a-b:1", "a-b:2", "a-b:3", "b:1", "b:2", "b:3"]);
    let desc = list(json!({"familyPrefix": "a", "sort": "DESC"})).task_definition_arns.unwrap();
    assert_eq!(
        desc,
        vec![
            ctx.scope.task_definition_arn("a", 3),
            ctx.scope.task_definition_arn("a", 2),
            ctx.scope.task_definition_arn("a", 1)
        ]
    );

    // Pages of two, ascending and descending, cover everything once.
    for sort in ["ASC", "DESC"] {
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let r = list(json!({"maxResults": 2, "nextToken": token, "sort": sort}));
            seen.extend(r.task_definition_arns.unwrap());
            token = r.next_token;
            if token.is_none() {
                break;
            }
        }
        let mut expected = arns.clone();
        if sort == "DESC" {
            expected.reverse();
        }
        assert_eq!(seen, expected, "{sort}");
    }

    // Latest ACTIVE revision by family name; deregistering it falls back to the previous one.
    let d = cp.describe_task_definition(&ctx, req(json!({"taskDefinition": "a"}))).unwrap();
    assert_eq!(d.task_definition.unwrap().revision, 3);
    let dr = cp.deregister_task_definition(&ctx, req(json!({"taskDefinition": "a:3"}))).await.unwrap();
    assert_eq!(dr.task_definition.unwrap().status.as_deref(), Some("INACTIVE"));
    assert_eq!(
        cp.describe_task_definition(&ctx, req(json!({"taskDefinition": "a"})))
            .unwrap()
            .task_definition
            .unwrap()
            .revision,
        2
    );
    // An explicit revision is still describable.
    assert_eq!(
        cp.describe_task_definition(&ctx, req(json!({"taskDefinition": "a:3"})))
            .unwrap()
            .task_definition
            .unwrap()
            .status
            .as_deref(),
        Some("INACTIVE")
    );
    assert_eq!(
        list(json!({"status": "INACTIVE"})).task_definition_arns.unwrap(),
        vec![ctx.scope.task_definition_arn("a", 3)]
    );
    // Revisions are never reused.
    assert_eq!(
        cp.register_task_definition(&ctx, taskdef("a")).await.unwrap().task_definition.unwrap().revision,
        4
    );

    let del = cp
        .delete_task_definitions(&ctx, req(json!({"taskDefinitions": ["a:3", "a:2", "zzz:1", "a"]})))
        .await
        .unwrap();
    let deleted = del.task_definitions.unwrap();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].status.as_deref(), Some("DELETE_IN_PROGRESS"));
    let reasons: Vec<_> =
        del.failures.unwrap().into_iter().map(|f| (f.arn.unwrap(), f.reason.unwrap())).collect();
    assert!(reasons[0].0 == "a:2" && reasons[0].1.contains("still in ACTIVE status"));
    assert!(reasons[1].1.contains("does not exist"));
    assert!(reasons[2].1.contains("identifier is invalid"));
    assert_eq!(list(json!({"status": "DELETE_IN_PROGRESS"})).task_definition_arns.unwrap().len(), 1);

    let e = cp.describe_task_definition(&ctx, req(json!({"taskDefinition": "nope"}))).unwrap_err();
    assert_eq!(e.message, "Unable to describe task definition.");
    let e = cp.deregister_task_definition(&ctx, req(json!({"taskDefinition": "a"}))).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::ClientException);
}

#[tokio::test]
async fn task_definition_families() {
    let (cp, ctx) = setup();
    for f in ["api", "api-worker", "web"] {
        cp.register_task_definition(&ctx, taskdef(f)).await.unwrap();
    }
    cp.deregister_task_definition(&ctx, req(json!({"taskDefinition": "web:1"}))).await.unwrap();
    let fams =
        |v: serde_json::Value| cp.list_task_definition_families(&ctx, req(v)).unwrap().families.unwrap();
    assert_eq!(fams(json!({})), ["api", "api-worker", "web"]);
    assert_eq!(fams(json!({"status": "ACTIVE"})), ["api", "api-worker"]);
    assert_eq!(fams(json!({"status": "INACTIVE"})), ["web"]);
    assert_eq!(fams(json!({"status": "ALL"})), ["api", "api-worker", "web"]);
    assert_eq!(fams(json!({"familyPrefix": "api-"})), ["api-worker"]);
    assert_eq!(fams(json!({"familyPrefix": "w", "status": "ACTIVE"})), Vec::<String>::new());
    let page =
        cp.list_task_definition_families(&ctx, req(json!({"status": "ALL", "maxResults": 2}))).unwrap();
    assert_eq!(page.families.unwrap(), ["api", "api-worker"]);
    let rest = fams(json!({"status": "ALL", "nextToken": page.next_token.unwrap()}));
    assert_eq!(rest, ["web"]);
}

#[tokio::test]
async fn concurrent_registrations_get_distinct_revisions() {
    let (cp, ctx) = setup();
    let mut handles = Vec::new();
    for _ in 0..40 {
        let (cp, ctx) = (cp.clone(), ctx.clone());
        handles.push(tokio::spawn(async move {
            cp.register_task_definition(&ctx, taskdef("hot")).await.unwrap().task_definition.unwrap().revision
        }));
    }
    let mut revs = Vec::new();
    for h in handles {
        revs.push(h.await.unwrap());
    }
    revs.sort();
    assert_eq!(revs, (1..=40).collect::<Vec<_>>());
}

#[tokio::test]
async fn tags_on_every_resource() {
    let (cp, ctx) = setup();
    cluster(&cp, &ctx, "c").await;
    let td = cp
        .register_task_definition(&ctx, taskdef("t"))
        .await
        .unwrap()
        .task_definition
        .unwrap()
        .task_definition_arn
        .unwrap();
    cp.create_capacity_provider(
        &ctx,
        req(json!({"name": "cp", "autoScalingGroupProvider": {"autoScalingGroupArn": "asg"}})),
    )
    .await
    .unwrap();
    let ci = instance(&cp, &ctx, "c").await;
    for arn in [ctx.scope.cluster_arn("c"), td, ctx.scope.capacity_provider_arn("cp"), ci] {
        cp.tag_resource(
            &ctx,
            req(
                json!({"resourceArn": arn, "tags": [{"key": "a", "value": "1"}, {"key": "b", "value": "2"}]}),
            ),
        )
        .await
        .unwrap();
        cp.tag_resource(&ctx, req(json!({"resourceArn": arn, "tags": [{"key": "a", "value": "3"}]})))
            .await
            .unwrap();
        cp.untag_resource(&ctx, req(json!({"resourceArn": arn, "tagKeys": ["b"]}))).await.unwrap();
        let tags = cp.list_tags_for_resource(&ctx, req(json!({"resourceArn": arn}))).unwrap().tags.unwrap();
        assert_eq!(tags, vec![Tag { key: Some("a".into()), value: Some("3".into()) }], "{arn}");
    }
    let e = cp.list_tags_for_resource(&ctx, req(json!({"resourceArn": "not-an-arn"}))).unwrap_err();
    assert_eq!(e.message, "The ARN provided is invalid.");
    let e = cp
        .list_tags_for_resource(&ctx, req(json!({"resourceArn": ctx.scope.cluster_arn("ghost")})))
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::ClusterNotFoundException);
    let many: Vec<_> = (0..51).map(|i| json!({"key": format!("k{i}"), "value": "v"})).collect();
    let e = cp
        .tag_resource(&ctx, req(json!({"resourceArn": ctx.scope.cluster_arn("c"), "tags": many})))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidParameterException);
}

#[tokio::test]
async fn attributes_on_instances() {
    let (cp, ctx) = setup();
    cluster(&cp, &ctx, "c").await;
    let ci = instance(&cp, &ctx, "c").await;
    let id = ci.rsplit('/').next().unwrap().to_string();
    let put = cp
        .put_attributes(
            &ctx,
            req(json!({"cluster": "c", "attributes": [{"name": "stack", "value": "prod", "targetId": id}]})),
        )
        .await
        .unwrap();
    assert_eq!(put.attributes.unwrap()[0].target_id.as_deref(), Some(ci.as_str()));
    let listed = cp
        .list_attributes(
            &ctx,
            req(json!({"cluster": "c", "targetType": "container-instance", "attributeName": "stack"})),
        )
        .unwrap();
    assert_eq!(listed.attributes.unwrap()[0].value.as_deref(), Some("prod"));
    let e = cp
        .put_attributes(&ctx, req(json!({"cluster": "c", "attributes": [{"name": "x", "targetId": "0123"}]})))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::TargetNotFoundException);
    let ten: Vec<_> = (0..10).map(|i| json!({"name": format!("a{i}"), "targetId": ci})).collect();
    let e = cp.put_attributes(&ctx, req(json!({"cluster": "c", "attributes": ten}))).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::AttributeLimitExceededException);
    cp.delete_attributes(
        &ctx,
        req(json!({"cluster": "c", "attributes": [{"name": "stack", "targetId": ci}]})),
    )
    .await
    .unwrap();
    let listed = cp
        .list_attributes(
            &ctx,
            req(json!({"cluster": "c", "targetType": "container-instance", "attributeName": "stack"})),
        )
        .unwrap();
    assert!(listed.attributes.unwrap().is_empty());
    let e = cp
        .list_attributes(&ctx, req(json!({"cluster": "nope", "targetType": "container-instance"})))
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::ClusterNotFoundException);
}

#[tokio::test]
async fn account_settings_resolve_principal_then_default_then_aws() {
    let (cp, ctx) = setup();
    let user = Ctx { scope: ctx.scope.clone(), principal: "arn:aws:iam::000000000000:user/dev".into() };
    let eff = |c: &Ctx| {
        cp.list_account_settings(c, req(json!({"name": "containerInsights", "effectiveSettings": true})))
            .unwrap()
            .settings
            .unwrap()
            .remove(0)
    };
    let s = eff(&user);
    assert_eq!((s.value.as_deref(), s.r#type.as_deref()), (Some("disabled"), Some("aws_managed")));
    cp.put_account_setting_default(&ctx, req(json!({"name": "containerInsights", "value": "enabled"})))
        .await
        .unwrap();
    assert_eq!(eff(&user).value.as_deref(), Some("enabled"));
    cp.put_account_setting(&user, req(json!({"name": "containerInsights", "value": "enhanced"})))
        .await
        .unwrap();
    assert_eq!(eff(&user).value.as_deref(), Some("enhanced"));
    // The cluster default follows the caller's effective setting.
    cp.create_cluster(&user, req(json!({"clusterName": "ci"}))).await.unwrap();
    let c = cp
        .describe_clusters(&user, req(json!({"clusters": ["ci"], "include": ["SETTINGS"]})))
        .unwrap()
        .clusters
        .unwrap()
        .remove(0);
    assert_eq!(c.settings.unwrap()[0].value.as_deref(), Some("enhanced"));
    cp.delete_account_setting(&user, req(json!({"name": "containerInsights"}))).await.unwrap();
    assert_eq!(eff(&user).value.as_deref(), Some("enabled"));
    let e = cp
        .put_account_setting(&ctx, req(json!({"name": "containerInsights", "value": "ENABLED"})))
        .await
        .unwrap_err();
    assert_eq!(e.message, "Invalid setting 'value'");
    let e = cp.put_account_setting(&ctx, req(json!({"name": "nope", "value": "enabled"}))).await.unwrap_err();
    assert!(e.message.starts_with("Invalid setting 'name'"));
    // All settings, effective, paginated by ten.
    let first = cp.list_account_settings(&ctx, req(json!({"effectiveSettings": true}))).unwrap();
    assert_eq!(first.settings.unwrap().len(), 10);
    let rest = cp
        .list_account_settings(
            &ctx,
            req(json!({"effectiveSettings": true, "nextToken": first.next_token.unwrap()})),
        )
        .unwrap();
    assert_eq!(rest.settings.unwrap().len(), 1);
}

#[tokio::test]
async fn scopes_are_isolated() {
    let (cp, ctx) = setup();
    cluster(&cp, &ctx, "c").await;
    let eu = Ctx::root(Scope::new("000000000000", "eu-west-1"));
    let d = cp.describe_clusters(&eu, req(json!({"clusters": ["c"]}))).unwrap();
    assert!(d.clusters.unwrap().is_empty());
    cp.reset().await.unwrap();
    assert!(cp.list_clusters(&ctx, req(json!({}))).unwrap().cluster_arns.unwrap().is_empty());
}

#[tokio::test]
async fn list_container_instances_filter_and_status() {
    let (cp, ctx) = setup();
    cluster(&cp, &ctx, "c").await;
    let mut arns = Vec::new();
    for zone in ["zone-a", "zone-b"] {
        let r = cp
            .register_container_instance(
                &ctx,
                req(
                    json!({"cluster": "c", "attributes": [{"name": "ecs.availability-zone", "value": zone}]}),
                ),
            )
            .await
            .unwrap();
        arns.push(r.container_instance.unwrap().container_instance_arn.unwrap());
    }
    let list = |v: serde_json::Value| {
        cp.list_container_instances(&ctx, req(v)).unwrap().container_instance_arns.unwrap()
    };
    assert_eq!(
        list(json!({"cluster": "c", "filter": "attribute:ecs.availability-zone == zone-b"})),
        vec![arns[1].clone()]
    );
    assert_eq!(list(json!({"cluster": "c", "filter": "attribute:ecs.availability-zone exists"})).len(), 2);
    let e =
        cp.list_container_instances(&ctx, req(json!({"cluster": "c", "filter": "zone == b"}))).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidParameterException);
    cp.update_container_instances_state(
        &ctx,
        req(json!({"cluster": "c", "containerInstances": [arns[0]], "status": "DRAINING"})),
    )
    .await
    .unwrap();
    assert_eq!(list(json!({"cluster": "c", "status": "DRAINING"})), vec![arns[0].clone()]);
    assert_eq!(list(json!({"cluster": "c", "status": "ACTIVE"})), vec![arns[1].clone()]);
    let d = cp.describe_clusters(&ctx, req(json!({"clusters": ["c"]}))).unwrap();
    assert_eq!(
        d.clusters.unwrap()[0].registered_container_instances_count,
        2,
        "DRAINING instances are still registered"
    );
}
