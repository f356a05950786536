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
    let r = Req { scope, op, v: serde_json::from_slice(body).unwrap_or(Value::Null) };
    let mut t = Target {
        resources: Vec::new(),
        context: request_tags(&r.v),
        passed_roles: Vec::new(),
        launches: None,
    };
    // The operations by the resource they act on.
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
        | "DiscoverPollEndpoint" => the_cluster(&r, &mut t),
        "DescribeClusters" => clusters_described(&r, &mut t),
        "ListTasks" | "ListServices" | "ListServicesByNamespace" => cluster_listing(&r, &mut t),
        "DescribeServices" | "DeleteService" | "UpdateService" => services_named(&r, &mut t),
        "CreateService" => service_created(&r, &mut t),
        "RunTask" | "StartTask" => tasks_launched(&r, &mut t),
        "StopTask" | "DescribeTasks" | "GetTaskProtection" | "UpdateTaskProtection" | "ExecuteCommand" => {
            tasks_named(&r, &mut t)
        }
        "DescribeContainerInstances" | "UpdateContainerInstancesState" | "UpdateContainerAgent" => {
            container_instances_named(&r, &mut t)
        }
        "DeleteTaskDefinitions" | "RegisterTaskDefinition" => task_definitions(&r, &mut t),
        "DescribeCapacityProviders" | "UpdateCapacityProvider" | "DeleteCapacityProvider" => {
            capacity_providers(&r, &mut t)
        }
        "CreateDaemon" | "UpdateDaemon" | "DeleteDaemon" | "DescribeDaemon" | "ListDaemonDeployments" => {
            daemons(&r, &mut t)
        }
        "CreateExpressGatewayService"
        | "UpdateExpressGatewayService"
        | "DeleteExpressGatewayService"
        | "DescribeExpressGatewayService" => express_services(&r, &mut t),
        "CreateGateway"
        | "DescribeGateway"
        | "UpdateGateway"
        | "DeleteGateway"
        | "AssociateGatewayWithCluster"
        | "DisassociateGatewayFromCluster"
        | "DescribeGatewayResources" => gateways(&r, &mut t),
        "TagResource" | "UntagResource" | "ListTagsForResource" => {
            t.resources.extend(r.s("resourceArn").map(|a| (a.to_string(), Vec::new())));
        }
        _ => {}
    }
    if t.resources.is_empty() {
        t.resources.push(("*".into(), Vec::new()));
    }
    t
}

/// A request as the targets read it.
struct Req<'a> {
    scope: &'a Scope,
    op: &'a str,
    v: Value,
}

impl Req<'_> {
    /// A string member of the body.
    fn s(&self, k: &str) -> Option<&str> {
        self.v.get(k).and_then(Value::as_str)
    }
    /// The cluster the request names, as an ARN.
    fn cluster(&self) -> String {
        cluster_arn(self.scope, self.s("cluster"))
    }
    /// The cluster the request names, by name (for the ARNs of its services, tasks, ...).
    fn cluster_name(&self) -> String {
        cluster_name(self.scope, self.s("cluster"))
    }
    /// The roles named by `members` of the body.
    fn roles<'s>(&'s self, members: &'s [&'s str]) -> impl Iterator<Item = String> + 's {
        members.iter().filter_map(|k| self.s(k).map(str::to_string))
    }
}

/// The `ecs:cluster` key of cluster ARN `c`.
fn ck(c: &str) -> Keys {
    vec![("ecs:cluster".to_string(), vec![c.to_string()])]
}

/// The request's tags as `aws:RequestTag/*` and `aws:TagKeys` (ECS spells them
/// `tags: [{key, value}]`).
fn request_tags(v: &Value) -> Keys {
    let mut context = Vec::new();
    if let Some(tags) = v.get("tags").and_then(Value::as_array) {
        let mut keys = Vec::new();
        for tag in tags {
            if let (Some(k), Some(val)) =
                (tag.get("key").and_then(Value::as_str), tag.get("value").and_then(Value::as_str))
            {
                context.push((format!("aws:RequestTag/{k}"), vec![val.to_string()]));
                keys.push(k.to_string());
            }
        }
        if !keys.is_empty() {
            context.push(("aws:TagKeys".to_string(), keys));
        }
    }
    context
}

/// Operations on the cluster the request names, and those of its agents.
fn the_cluster(r: &Req, t: &mut Target) {
    let c = r.cluster();
    t.resources.push((c.clone(), ck(&c)));
}

/// `DescribeClusters`: each cluster listed, `default` when none is.
fn clusters_described(r: &Req, t: &mut Target) {
    let names = strs(&r.v["clusters"]);
    if names.is_empty() {
        let c = cluster_arn(r.scope, None);
        t.resources.push((c.clone(), ck(&c)));
    }
    for n in names {
        let c = cluster_arn(r.scope, Some(n));
        t.resources.push((c.clone(), ck(&c)));
    }
}

/// Listings within a cluster: `*` with the cluster's key.
fn cluster_listing(r: &Req, t: &mut Target) {
    let c = r.cluster();
    t.resources.push(("*".into(), ck(&c)));
}

/// The services named (`services` or `service`); `UpdateService` launches its task definition.
fn services_named(r: &Req, t: &mut Target) {
    let c = r.cluster();
    let name = r.cluster_name();
    let services: Vec<&str> = if r.op == "DescribeServices" {
        strs(&r.v["services"])
    } else {
        r.s("service").into_iter().collect()
    };
    for svc in services {
        let a = in_cluster(r.scope, "service", &name, svc);
        let mut keys = ck(&c);
        keys.push(("ecs:service".into(), vec![a.clone()]));
        t.resources.push((a, keys));
    }
    if r.op == "UpdateService" {
        t.launches = r.s("taskDefinition").map(str::to_string);
    }
}

/// `CreateService`: the new service, with its task definition's key; it launches that.
fn service_created(r: &Req, t: &mut Target) {
    let c = r.cluster();
    let name = r.cluster_name();
    let a = in_cluster(r.scope, "service", &name, r.s("serviceName").unwrap_or_default());
    let mut keys = ck(&c);
    if let Some(td) = r.s("taskDefinition") {
        keys.push(("ecs:task-definition".into(), vec![task_definition_arn(r.scope, td)]));
    }
    t.resources.push((a, keys));
    t.launches = r.s("taskDefinition").map(str::to_string);
}

/// `RunTask`, `StartTask`: the task definition, with the capacity providers' keys; the roles of
/// the overrides are passed.
fn tasks_launched(r: &Req, t: &mut Target) {
    let c = r.cluster();
    let td = r.s("taskDefinition").unwrap_or_default();
    let mut keys = ck(&c);
    for cp in r.v["capacityProviderStrategy"].as_array().into_iter().flatten() {
        if let Some(n) = cp.get("capacityProvider").and_then(Value::as_str) {
            keys.push((
                "ecs:capacity-provider".into(),
                vec![arn(r.scope, &format!("capacity-provider/{n}"))],
            ));
        }
    }
    t.resources.push((task_definition_arn(r.scope, td), keys));
    let o = &r.v["overrides"];
    t.passed_roles.extend(
        ["taskRoleArn", "executionRoleArn"].iter().filter_map(|k| o.get(*k)?.as_str().map(str::to_string)),
    );
    t.launches = Some(td.to_string());
}

/// The tasks named (`tasks` and `task`).
fn tasks_named(r: &Req, t: &mut Target) {
    let c = r.cluster();
    let name = r.cluster_name();
    let mut tasks = strs(&r.v["tasks"]);
    tasks.extend(r.s("task"));
    for id in tasks {
        t.resources.push((in_cluster(r.scope, "task", &name, id), ck(&c)));
    }
}

/// The container instances named (`containerInstances` and `containerInstance`).
fn container_instances_named(r: &Req, t: &mut Target) {
    let c = r.cluster();
    let name = r.cluster_name();
    let mut list = strs(&r.v["containerInstances"]);
    list.extend(r.s("containerInstance"));
    for id in list {
        t.resources.push((in_cluster(r.scope, "container-instance", &name, id), ck(&c)));
    }
}

/// `DeleteTaskDefinitions`: each one listed; `RegisterTaskDefinition`: `*`, passing its roles.
fn task_definitions(r: &Req, t: &mut Target) {
    if r.op == "RegisterTaskDefinition" {
        t.passed_roles.extend(r.roles(&["taskRoleArn", "executionRoleArn"]));
        return;
    }
    for td in strs(&r.v["taskDefinitions"]) {
        t.resources.push((task_definition_arn(r.scope, td), Vec::new()));
    }
}

/// The capacity providers named (`capacityProviders`, or `name` / `capacityProvider`).
fn capacity_providers(r: &Req, t: &mut Target) {
    let provider = |n: &str| {
        if n.starts_with("arn:") { n.to_string() } else { arn(r.scope, &format!("capacity-provider/{n}")) }
    };
    if r.op == "DescribeCapacityProviders" {
        for n in strs(&r.v["capacityProviders"]) {
            t.resources.push((provider(n), Vec::new()));
        }
    } else {
        let n = r.s("name").or(r.s("capacityProvider")).unwrap_or_default();
        t.resources.push((provider(n), Vec::new()));
    }
}

/// ECS Managed Daemons: the daemon named.
fn daemons(r: &Req, t: &mut Target) {
    if r.op == "CreateDaemon" {
        let cluster = cluster_name(r.scope, r.s("clusterArn"));
        let name = r.s("daemonName").unwrap_or_default();
        t.resources.push((arn(r.scope, &format!("daemon/{cluster}/{name}")), Vec::new()));
    } else if let Some(a) = r.s("daemonArn") {
        t.resources.push((a.to_string(), Vec::new()));
    }
}

/// ECS Express Mode: the service, passing its roles and launching its task definition.
fn express_services(r: &Req, t: &mut Target) {
    if r.op == "CreateExpressGatewayService" {
        let name = r.cluster_name();
        let a = in_cluster(r.scope, "service", &name, r.s("serviceName").unwrap_or_default());
        t.resources.push((a, Vec::new()));
        t.passed_roles.extend(r.roles(&["infrastructureRoleArn", "taskRoleArn", "executionRoleArn"]));
    } else {
        if let Some(a) = r.s("serviceArn") {
            t.resources.push((a.to_string(), Vec::new()));
        }
        t.passed_roles.extend(r.roles(&["taskRoleArn", "executionRoleArn"]));
    }
    t.launches = r.s("taskDefinitionArn").map(str::to_string);
}

/// ECS Gateways: the gateway named; creating and updating one passes its infrastructure role.
fn gateways(r: &Req, t: &mut Target) {
    if r.op == "CreateGateway" {
        let name = r.s("name").unwrap_or_default();
        t.resources.push((arn(r.scope, &format!("gateway/{name}")), Vec::new()));
    } else if let Some(g) = r.s("gateway") {
        let a = if g.starts_with("arn:") { g.to_string() } else { arn(r.scope, &format!("gateway/{g}")) };
        t.resources.push((a, Vec::new()));
    }
    if r.op == "CreateGateway" || r.op == "UpdateGateway" {
        t.passed_roles.extend(r.roles(&["infrastructureRoleArn"]));
    }
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
