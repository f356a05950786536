//! What IAM authorizes for each ECS operation: the resource ARNs (as the Service Authorization
//! Reference lists them for Amazon ECS: `*` where it lists none) and ECS's condition keys
//! (`ecs:cluster`, `ecs:service`, `ecs:task-definition`, `ecs:capacity-provider`,
//! `aws:RequestTag/*`, `aws:TagKeys`), read from the request body before the operation runs.
//! Pure: no store reads (what a name refers to is the operation's business, and an ARN built
//! from a name is what IAM matches).

use gantry_core::Scope;
use serde_json::Value;

/// Condition keys and their values.
pub type Keys = Vec<(String, Vec<String>)>;

/// One authorization question: the action and the resources it acts on, with context keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Each resource with its own context keys (`ecs:cluster` of that resource).
    pub resources: Vec<(String, Keys)>,
    /// Keys for every resource (request tags).
    pub context: Keys,
    /// The roles the request passes to ECS (`iam:PassRole`): taskRoleArn, executionRoleArn.
    pub passed_roles: Vec<String>,
    /// The task definition whose roles a launch passes (RunTask, StartTask, CreateService,
    /// UpdateService), resolved by the caller.
    pub launches: Option<String>,
}

fn arn(scope: &Scope, resource: &str) -> String {
    format!("arn:aws:ecs:{}:{}:{resource}", scope.region, scope.account)
}

/// The cluster a request names (a name or an ARN), as an ARN; `default` when it names none.
fn cluster_arn(scope: &Scope, v: Option<&str>) -> String {
    match v.map(str::trim).filter(|s| !s.is_empty()) {
        Some(a) if a.starts_with("arn:") => a.to_string(),
        Some(n) => arn(scope, &format!("cluster/{n}")),
        None => arn(scope, "cluster/default"),
    }
}

fn cluster_name(scope: &Scope, v: Option<&str>) -> String {
    let a = cluster_arn(scope, v);
    a.rsplit_once("cluster/").map(|x| x.1.to_string()).unwrap_or(a)
}

/// A resource of a cluster (`service`, `task`, `container-instance`) named by ARN or by ID.
fn in_cluster(scope: &Scope, kind: &str, cluster: &str, v: &str) -> String {
    if v.starts_with("arn:") { v.to_string() } else { arn(scope, &format!("{kind}/{cluster}/{v}")) }
}

fn task_definition_arn(scope: &Scope, v: &str) -> String {
    if v.starts_with("arn:") {
        v.to_string()
    } else if v.contains(':') {
        arn(scope, &format!("task-definition/{v}"))
    } else {
        // A family alone means its latest ACTIVE revision; IAM sees the family's ARN with `*`
        // matched by policies like `task-definition/web:*`.
        arn(scope, &format!("task-definition/{v}:*"))
    }
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

/// The authorization target of ECS operation `op` with JSON body `body`. A body that does not
/// parse gives the operation's target with no resources named (`*`): the operation will refuse
/// it with ECS's own error after authorization.
pub fn target(scope: &Scope, op: &str, body: &[u8]) -> Target {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let s = |k: &str| v.get(k).and_then(Value::as_str);
    let cluster = || cluster_arn(scope, s("cluster"));
    let ck = |c: &str| vec![("ecs:cluster".to_string(), vec![c.to_string()])];
    let mut t =
        Target { resources: Vec::new(), context: Vec::new(), passed_roles: Vec::new(), launches: None };
    // Request tags (ECS spells them `tags: [{key, value}]`).
    if let Some(tags) = v.get("tags").and_then(Value::as_array) {
        let mut keys = Vec::new();
        for tag in tags {
            if let (Some(k), Some(val)) =
                (tag.get("key").and_then(Value::as_str), tag.get("value").and_then(Value::as_str))
            {
                t.context.push((format!("aws:RequestTag/{k}"), vec![val.to_string()]));
                keys.push(k.to_string());
            }
        }
        if !keys.is_empty() {
            t.context.push(("aws:TagKeys".to_string(), keys));
        }
    }
    match op {
        "DeleteCluster"
        | "UpdateCluster"
        | "UpdateClusterSettings"
        | "PutClusterCapacityProviders"
        | "ListContainerInstances"
        | "RegisterContainerInstance"
        | "DeregisterContainerInstance"
        | "SubmitTaskStateChange"
        | "SubmitContainerStateChange"
        | "SubmitAttachmentStateChanges"
        | "DiscoverPollEndpoint" => {
            let c = cluster();
            t.resources.push((c.clone(), ck(&c)));
        }
        "DescribeClusters" => {
            let names = strs(&v["clusters"]);
            if names.is_empty() {
                let c = cluster_arn(scope, None);
                t.resources.push((c.clone(), ck(&c)));
            }
            for n in names {
                let c = cluster_arn(scope, Some(n));
                t.resources.push((c.clone(), ck(&c)));
            }
        }
        "DescribeServices" | "DeleteService" | "UpdateService" => {
            let c = cluster();
            let name = cluster_name(scope, s("cluster"));
            let services: Vec<&str> = if op == "DescribeServices" {
                strs(&v["services"])
            } else {
                s("service").into_iter().collect()
            };
            for svc in services {
                let a = in_cluster(scope, "service", &name, svc);
                let mut keys = ck(&c);
                keys.push(("ecs:service".into(), vec![a.clone()]));
                t.resources.push((a, keys));
            }
            if op == "UpdateService" {
                t.launches = s("taskDefinition").map(str::to_string);
            }
        }
        "CreateService" => {
            let c = cluster();
            let name = cluster_name(scope, s("cluster"));
            let a = in_cluster(scope, "service", &name, s("serviceName").unwrap_or_default());
            let mut keys = ck(&c);
            if let Some(td) = s("taskDefinition") {
                keys.push(("ecs:task-definition".into(), vec![task_definition_arn(scope, td)]));
            }
            t.resources.push((a, keys));
            t.launches = s("taskDefinition").map(str::to_string);
        }
        "RunTask" | "StartTask" => {
            let c = cluster();
            let td = s("taskDefinition").unwrap_or_default();
            let mut keys = ck(&c);
            for cp in v["capacityProviderStrategy"].as_array().into_iter().flatten() {
                if let Some(n) = cp.get("capacityProvider").and_then(Value::as_str) {
                    keys.push((
                        "ecs:capacity-provider".into(),
                        vec![arn(scope, &format!("capacity-provider/{n}"))],
                    ));
                }
            }
            t.resources.push((task_definition_arn(scope, td), keys));
            let o = &v["overrides"];
            t.passed_roles.extend(
                ["taskRoleArn", "executionRoleArn"]
                    .iter()
                    .filter_map(|k| o.get(*k)?.as_str().map(str::to_string)),
            );
            t.launches = Some(td.to_string());
        }
        "StopTask" | "DescribeTasks" | "GetTaskProtection" | "UpdateTaskProtection" | "ExecuteCommand" => {
            let c = cluster();
            let name = cluster_name(scope, s("cluster"));
            let mut tasks = strs(&v["tasks"]);
            tasks.extend(s("task"));
            for id in tasks {
                t.resources.push((in_cluster(scope, "task", &name, id), ck(&c)));
            }
        }
        "DescribeContainerInstances" | "UpdateContainerInstancesState" | "UpdateContainerAgent" => {
            let c = cluster();
            let name = cluster_name(scope, s("cluster"));
            let mut list = strs(&v["containerInstances"]);
            list.extend(s("containerInstance"));
            for id in list {
                t.resources.push((in_cluster(scope, "container-instance", &name, id), ck(&c)));
            }
        }
        "ListTasks" | "ListServices" | "ListServicesByNamespace" => {
            let c = cluster();
            t.resources.push(("*".into(), ck(&c)));
        }
        "DeleteTaskDefinitions" => {
            for td in strs(&v["taskDefinitions"]) {
                t.resources.push((task_definition_arn(scope, td), Vec::new()));
            }
        }
        "RegisterTaskDefinition" => {
            t.passed_roles
                .extend(["taskRoleArn", "executionRoleArn"].iter().filter_map(|k| s(k).map(str::to_string)));
        }
        "DescribeCapacityProviders" => {
            for n in strs(&v["capacityProviders"]) {
                let a = if n.starts_with("arn:") {
                    n.to_string()
                } else {
                    arn(scope, &format!("capacity-provider/{n}"))
                };
                t.resources.push((a, Vec::new()));
            }
        }
        "UpdateCapacityProvider" | "DeleteCapacityProvider" => {
            let n = s("name").or(s("capacityProvider")).unwrap_or_default();
            let a = if n.starts_with("arn:") {
                n.to_string()
            } else {
                arn(scope, &format!("capacity-provider/{n}"))
            };
            t.resources.push((a, Vec::new()));
        }
        // ECS Managed Daemons: the daemon named.
        "CreateDaemon" => {
            let cluster = cluster_name(scope, s("clusterArn"));
            let name = s("daemonName").unwrap_or_default();
            t.resources.push((arn(scope, &format!("daemon/{cluster}/{name}")), Vec::new()));
        }
        "UpdateDaemon" | "DeleteDaemon" | "DescribeDaemon" | "ListDaemonDeployments" => {
            if let Some(a) = s("daemonArn") {
                t.resources.push((a.to_string(), Vec::new()));
            }
        }
        // ECS Express Mode: the service.
        "CreateExpressGatewayService" => {
            let name = cluster_name(scope, s("cluster"));
            let a = in_cluster(scope, "service", &name, s("serviceName").unwrap_or_default());
            t.resources.push((a, Vec::new()));
            t.passed_roles.extend(
                ["infrastructureRoleArn", "taskRoleArn", "executionRoleArn"]
                    .iter()
                    .filter_map(|k| s(k).map(str::to_string)),
            );
            t.launches = s("taskDefinitionArn").map(str::to_string);
        }
        "UpdateExpressGatewayService" | "DeleteExpressGatewayService" | "DescribeExpressGatewayService" => {
            if let Some(a) = s("serviceArn") {
                t.resources.push((a.to_string(), Vec::new()));
            }
            t.passed_roles
                .extend(["taskRoleArn", "executionRoleArn"].iter().filter_map(|k| s(k).map(str::to_string)));
            t.launches = s("taskDefinitionArn").map(str::to_string);
        }
        // ECS Gateways: the gateway named.
        "CreateGateway" => {
            let name = s("name").unwrap_or_default();
            t.resources.push((arn(scope, &format!("gateway/{name}")), Vec::new()));
            t.passed_roles.extend(s("infrastructureRoleArn").map(str::to_string));
        }
        "DescribeGateway"
        | "UpdateGateway"
        | "DeleteGateway"
        | "AssociateGatewayWithCluster"
        | "DisassociateGatewayFromCluster"
        | "DescribeGatewayResources" => {
            if let Some(g) = s("gateway") {
                let a =
                    if g.starts_with("arn:") { g.to_string() } else { arn(scope, &format!("gateway/{g}")) };
                t.resources.push((a, Vec::new()));
            }
            if op == "UpdateGateway" {
                t.passed_roles.extend(s("infrastructureRoleArn").map(str::to_string));
            }
        }
        "TagResource" | "UntagResource" | "ListTagsForResource" => {
            if let Some(a) = s("resourceArn") {
                t.resources.push((a.to_string(), Vec::new()));
            }
        }
        _ => {}
    }
    if t.resources.is_empty() {
        t.resources.push(("*".into(), Vec::new()));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn express_services_and_gateways_name_theirs_and_pass_their_roles() {
        let scope = Scope::new("123456789012", "us-east-1");
        let t = target(
            &scope,
            "CreateExpressGatewayService",
            br#"{"serviceName":"web","infrastructureRoleArn":"arn:aws:iam::123456789012:role/infra","executionRoleArn":"arn:aws:iam::123456789012:role/exec"}"#,
        );
        assert_eq!(t.resources[0].0, "arn:aws:ecs:us-east-1:123456789012:service/default/web");
        assert_eq!(
            t.passed_roles,
            ["arn:aws:iam::123456789012:role/infra", "arn:aws:iam::123456789012:role/exec"]
        );
        let t = target(&scope, "DeleteGateway", br#"{"gateway":"edge"}"#);
        assert_eq!(t.resources[0].0, "arn:aws:ecs:us-east-1:123456789012:gateway/edge");
        let t = target(
            &scope,
            "CreateGateway",
            br#"{"name":"edge","infrastructureRoleArn":"arn:aws:iam::123456789012:role/gw"}"#,
        );
        assert_eq!(t.passed_roles, ["arn:aws:iam::123456789012:role/gw"]);
    }

    #[test]
    fn operations_name_their_resources_and_keys() {
        let scope = Scope::new("123456789012", "us-east-1");
        let t = target(
            &scope,
            "DescribeClusters",
            br#"{"clusters":["prod","arn:aws:ecs:us-east-1:123456789012:cluster/dev"]}"#,
        );
        assert_eq!(
            t.resources.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
            [
                "arn:aws:ecs:us-east-1:123456789012:cluster/prod",
                "arn:aws:ecs:us-east-1:123456789012:cluster/dev"
            ]
        );
        let t = target(&scope, "RunTask", br#"{"cluster":"prod","taskDefinition":"web:3","overrides":{"taskRoleArn":"arn:aws:iam::123456789012:role/r"}}"#);
        assert_eq!(t.resources[0].0, "arn:aws:ecs:us-east-1:123456789012:task-definition/web:3");
        assert_eq!(
            t.resources[0].1[0],
            ("ecs:cluster".to_string(), vec!["arn:aws:ecs:us-east-1:123456789012:cluster/prod".to_string()])
        );
        assert_eq!(t.passed_roles, ["arn:aws:iam::123456789012:role/r"]);
        assert_eq!(t.launches.as_deref(), Some("web:3"));
        let t = target(&scope, "StopTask", br#"{"task":"abc"}"#);
        assert_eq!(t.resources[0].0, "arn:aws:ecs:us-east-1:123456789012:task/default/abc");
        let t =
            target(&scope, "CreateCluster", br#"{"clusterName":"x","tags":[{"key":"env","value":"prod"}]}"#);
        assert_eq!(t.resources[0].0, "*");
        assert!(t.context.contains(&("aws:RequestTag/env".to_string(), vec!["prod".to_string()])));
        assert_eq!(target(&scope, "ListClusters", b"not json").resources[0].0, "*");
    }
}
