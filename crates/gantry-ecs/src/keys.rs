//! The layout of ECS's part of Gantry's key space. Every key names its service: a scoped key
//! starts with `/ACCOUNT/REGION/ecs/` (so resources are kept per account and region, and one
//! prefix deletion wipes ECS's state of a scope), an unscoped one with `/_ecs/`. Other services
//! sharing the store take their own name in the same places (`/ACCOUNT/REGION/elb/...`,
//! `/_elb/...`); ECS writes only under [`owns`]'s prefixes.
//!
//! Where a key has a name followed by more components, the separator is `!`, which sorts before
//! every character a name may contain: key order then equals ECS's listing order (family `a`
//! before `a-b`, revision 2 before 10 thanks to zero padding).

use gantry_core::Scope;

/// The service's name, as it appears in every key.
pub const SERVICE: &str = "ecs";

/// The root of ECS's keys outside any scope.
const UNSCOPED: &str = "/_ecs/";

fn base(s: &Scope) -> String {
    scoped(s, &[])
}

/// `/ACCOUNT/REGION/ecs/` followed by `parts`, in one allocation of the right size (keys are
/// built on every read; `format!` cost a Describe call more than looking the key up).
fn scoped(s: &Scope, parts: &[&str]) -> String {
    let len =
        s.account.len() + s.region.len() + SERVICE.len() + 4 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut k = String::with_capacity(len);
    for p in ["/", &s.account, "/", &s.region, "/", SERVICE, "/"] {
        k.push_str(p);
    }
    for p in parts {
        k.push_str(p);
    }
    k
}

/// Whether `key` is one of ECS's: `/_ecs/...` or `/ACCOUNT/REGION/ecs/...`.
pub fn owns(key: &str) -> bool {
    if key.starts_with(UNSCOPED) {
        return true;
    }
    let mut it = key.strip_prefix('/').unwrap_or_default().splitn(4, '/');
    matches!(
        (it.next(), it.next(), it.next(), it.next()),
        (Some(account), Some(_), Some(SERVICE), Some(_)) if !account.is_empty() && !account.starts_with('_')
    )
}

/// A scoped key's parts: its scope, its kind (`service`, `task`, ...) and the rest after the
/// kind's `/`. `None` for a key that is not ECS's or not scoped.
pub fn parse_scoped(key: &str) -> Option<(Scope, &str, &str)> {
    let mut it = key.strip_prefix('/')?.splitn(5, '/');
    let (account, region, service, kind, tail) = (it.next()?, it.next()?, it.next()?, it.next()?, it.next()?);
    if service != SERVICE || account.starts_with('_') {
        return None;
    }
    Some((Scope { account: account.into(), region: region.into() }, kind, tail))
}

pub fn cluster_prefix(s: &Scope) -> String {
    scoped(s, &["cluster/"])
}
pub fn cluster(s: &Scope, name: &str) -> String {
    scoped(s, &["cluster/", name])
}

pub fn capacity_provider_prefix(s: &Scope) -> String {
    format!("{}capacity-provider/", base(s))
}
pub fn capacity_provider(s: &Scope, name: &str) -> String {
    format!("{}{name}", capacity_provider_prefix(s))
}

pub fn family_prefix(s: &Scope) -> String {
    format!("{}family/", base(s))
}
pub fn family(s: &Scope, name: &str) -> String {
    format!("{}{name}", family_prefix(s))
}

pub fn task_definition(s: &Scope, family: &str, revision: i32) -> String {
    format!("{}task-definition/{family}!{revision:010}", base(s))
}

/// The index of task definitions by status: `.../td-status/STATUS/FAMILY!REVISION`.
pub fn td_status_prefix(s: &Scope, status: &str) -> String {
    format!("{}td-status/{status}/", base(s))
}
pub fn td_status(s: &Scope, status: &str, family: &str, revision: i32) -> String {
    format!("{}{family}!{revision:010}", td_status_prefix(s, status))
}
/// Splits the tail of a status-index key (`FAMILY!REVISION`).
pub fn parse_td_tail(tail: &str) -> Option<(&str, i32)> {
    let (f, r) = tail.split_once('!')?;
    Some((f, r.parse().ok()?))
}

/// Every cluster's container instances in a scope.
pub fn container_instances_of(s: &Scope) -> String {
    format!("{}container-instance/", base(s))
}

/// Whether `key` is a container instance's record.
pub fn is_container_instance(key: &str) -> bool {
    owns(key) && key.splitn(5, '/').nth(4).is_some_and(|rest| rest.starts_with("container-instance/"))
}

pub fn container_instance_prefix(s: &Scope, cluster: &str) -> String {
    format!("{}container-instance/{cluster}/", base(s))
}
pub fn container_instance(s: &Scope, cluster: &str, id: &str) -> String {
    format!("{}{id}", container_instance_prefix(s, cluster))
}

/// The index of container instances by status: `.../ci-status/CLUSTER/STATUS/ID`.
pub fn ci_status_prefix(s: &Scope, cluster: &str, status: &str) -> String {
    scoped(s, &["ci-status/", cluster, "/", status, "/"])
}
pub fn ci_status(s: &Scope, cluster: &str, status: &str, id: &str) -> String {
    format!("{}{id}", ci_status_prefix(s, cluster, status))
}

/// Every cluster's services: `.../service/` (ListServicesByNamespace reads across clusters).
pub fn services_prefix(s: &Scope) -> String {
    format!("{}service/", base(s))
}
pub fn service_prefix(s: &Scope, cluster: &str) -> String {
    scoped(s, &["service/", cluster, "/"])
}
pub fn service(s: &Scope, cluster: &str, name: &str) -> String {
    format!("{}{name}", service_prefix(s, cluster))
}

/// The CreateService request a service was made from (its canonical JSON), so a repeated
/// identical request returns the service and a different one is "not idempotent":
/// `.../service-request/CLUSTER/NAME`.
pub fn service_request(s: &Scope, cluster: &str, name: &str) -> String {
    format!("{}service-request/{cluster}/{name}", base(s))
}

/// The tasks the scheduler started for a service, until it has accounted for them STOPPED:
/// `.../service-task/CLUSTER/SERVICE/TASK-ID` (empty values).
pub fn service_tasks_prefix(s: &Scope, cluster: &str, service: &str) -> String {
    format!("{}service-task/{cluster}/{service}/", base(s))
}
pub fn service_task(s: &Scope, cluster: &str, service: &str, task_id: &str) -> String {
    format!("{}{task_id}", service_tasks_prefix(s, cluster, service))
}

/// A service's deployment history (ECS's `ServiceDeployment`, one per deployment that was not a
/// rollback): `.../service-deployment/CLUSTER/SERVICE/ID`, ID being the 19 digits of the
/// deployment's `ecs-svc/` ID.
pub fn service_deployments_prefix(s: &Scope, cluster: &str, service: &str) -> String {
    format!("{}service-deployment/{cluster}/{service}/", base(s))
}
pub fn service_deployment(s: &Scope, cluster: &str, service: &str, id: &str) -> String {
    format!("{}{id}", service_deployments_prefix(s, cluster, service))
}

/// What a deployment ran (ECS's `ServiceRevision`): `.../service-revision/CLUSTER/SERVICE/ID`.
pub fn service_revision(s: &Scope, cluster: &str, service: &str, id: &str) -> String {
    format!("{}service-revision/{cluster}/{service}/{id}", base(s))
}

/// Every service the scheduler looks after, across accounts and regions:
/// `/_ecs/service/ACCOUNT/REGION/CLUSTER/NAME`, whose value is the service's key: the service
/// record's index row (`table::Record`), present while the service is not INACTIVE.
pub fn scheduled_services_prefix() -> String {
    format!("{UNSCOPED}service/")
}
pub fn scheduled_service(s: &Scope, cluster: &str, name: &str) -> String {
    format!("{}{}/{}/{cluster}/{name}", scheduled_services_prefix(), s.account, s.region)
}

pub fn task_prefix(s: &Scope, cluster: &str) -> String {
    scoped(s, &["task/", cluster, "/"])
}
pub fn task(s: &Scope, cluster: &str, id: &str) -> String {
    format!("{}{id}", task_prefix(s, cluster))
}

/// RunTask idempotency: `.../client-token/CLUSTER/TOKEN`.
pub fn client_token(s: &Scope, cluster: &str, token: &str) -> String {
    format!("{}client-token/{cluster}/{token}", base(s))
}

/// The tasks assigned to a node, across accounts and regions: `/_ecs/node/NODE/TASK-ID`, whose value
/// is the task's key and its group (see [`node_task_value`]), so placement can count groups
/// without reading the tasks.
pub fn node_tasks_prefix(node: &str) -> String {
    format!("{}{node}/", node_tasks_root())
}
/// Every node's tasks: `/_ecs/node/`.
pub fn node_tasks_root() -> String {
    format!("{UNSCOPED}node/")
}
pub fn node_task(node: &str, task_id: &str) -> String {
    format!("{}{task_id}", node_tasks_prefix(node))
}

/// An agent's liveness as the server it polls last recorded it: `/_ecs/heartbeat/NODE` (see
/// [`crate::agents`]).
pub fn heartbeat_prefix() -> String {
    format!("{UNSCOPED}heartbeat/")
}
pub fn heartbeat(node: &str) -> String {
    format!("{}{node}", heartbeat_prefix())
}

/// An agent update announced to a node (UpdateContainerAgent, agentUpdateStatus PENDING), until
/// its agent takes it up: `/_ecs/agent-update/NODE`, holding the [`AgentUpdate`] as JSON.
///
/// [`AgentUpdate`]: gantry_core::protocol::AgentUpdate
pub fn agent_update(node: &str) -> String {
    format!("{}{node}", agent_update_root())
}
/// Every node's announced agent update: `/_ecs/agent-update/`.
pub fn agent_update_root() -> String {
    format!("{UNSCOPED}agent-update/")
}

/// ECS Exec sessions waiting for their node's agent, across servers sharing the store:
/// `/_ecs/exec/NODE/SESSION`, holding the request and when it expires (see
/// [`crate::ops::exec`]).
pub fn exec_root() -> String {
    format!("{UNSCOPED}exec/")
}
pub fn exec_prefix(node: &str) -> String {
    format!("{}{node}/", exec_root())
}
pub fn exec_request(node: &str, session: &str) -> String {
    format!("{}{session}", exec_prefix(node))
}

/// The Gantry servers sharing the store, each under its own ID: `/_ecs/server/ID`.
pub fn server_prefix() -> String {
    format!("{UNSCOPED}server/")
}
pub fn server(id: &str) -> String {
    format!("{}{id}", server_prefix())
}

/// Fargate nodes (capacity `gantry up` provides for every account and region).
pub fn fargate_node_prefix() -> String {
    format!("{UNSCOPED}fargate-node/")
}
pub fn fargate_node(id: &str) -> String {
    format!("{}{id}", fargate_node_prefix())
}

pub fn account_setting_prefix(s: &Scope) -> String {
    format!("{}account-setting/", base(s))
}
/// Settings of one principal: `.../account-setting/PRINCIPAL!NAME`.
pub fn account_setting(s: &Scope, principal: &str, name: &str) -> String {
    format!("{}{principal}!{name}", account_setting_prefix(s))
}

/// The value of a node-task index entry: `TASK-KEY<TAB>GROUP`.
pub fn node_task_value(task_key: &str, group: &str) -> Vec<u8> {
    format!("{task_key}\t{group}").into_bytes()
}

/// The task key and group of a node-task index entry.
pub fn node_task_value_parts(v: &[u8]) -> (&str, &str) {
    let s = std::str::from_utf8(v).unwrap_or_default();
    s.split_once('\t').unwrap_or((s, ""))
}

/// A cluster's counters (`gantry_store::Op::Add`, kept by the record layer): the tasks by state
/// and launch type, under ECS's statistic names (`runningEC2TasksCount`, ...), the services by
/// status and launch type (`activeFargateServiceCount`, ...), and Gantry's own
/// `stoppingTasksCount` and `provider!NAME` (tasks not STOPPED that a capacity provider
/// launched): `.../cluster-count/CLUSTER/NAME`.
pub fn cluster_counts_prefix(s: &Scope, cluster: &str) -> String {
    scoped(s, &["cluster-count/", cluster, "/"])
}
pub fn cluster_count(s: &Scope, cluster: &str, name: &str) -> String {
    scoped(s, &["cluster-count/", cluster, "/", name])
}

/// A container instance's task counts: `.../ci-count/CLUSTER/ID!running` and `...!pending`.
pub fn instance_count(s: &Scope, cluster: &str, id: &str, what: &str) -> String {
    scoped(s, &["ci-count/", cluster, "/", id, "!", what])
}

/// ListTasks' indexes (empty values; the task's ID ends the key, so the ARN needs no read):
/// `.../task-desired/CLUSTER/DESIRED/ID`, and by family, group and container instance ID:
/// `.../task-family/CLUSTER/FAMILY/DESIRED/ID`, `.../task-group/CLUSTER/GROUP/DESIRED/ID`,
/// `.../task-instance/CLUSTER/INSTANCE-ID/DESIRED/ID`. A group may hold `/`: a row whose rest
/// after the prefix is not a bare ID belongs to another group and is skipped.
pub fn task_index_prefix(s: &Scope, cluster: &str, by: TaskIndex<'_>, desired: &str) -> String {
    match by {
        TaskIndex::Desired => scoped(s, &["task-desired/", cluster, "/", desired, "/"]),
        TaskIndex::Family(f) => scoped(s, &["task-family/", cluster, "/", f, "/", desired, "/"]),
        TaskIndex::Group(g) => scoped(s, &["task-group/", cluster, "/", g, "/", desired, "/"]),
        TaskIndex::Instance(i) => scoped(s, &["task-instance/", cluster, "/", i, "/", desired, "/"]),
    }
}

/// Which of ListTasks' indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskIndex<'a> {
    Desired,
    Family(&'a str),
    Group(&'a str),
    Instance(&'a str),
}

/// STOPPED tasks by the time they stopped, across accounts and regions, for the retention's
/// cleanup: `/_ecs/stopped-task/MILLIS/ACCOUNT/REGION/CLUSTER/ID` (MILLIS zero-padded to 15
/// digits, so key order is time order), valued with the task's key.
pub fn stopped_tasks_prefix() -> String {
    format!("{UNSCOPED}stopped-task/")
}
/// Tasks waiting for capacity (launched through a capacity provider with managed scaling that
/// had no room): `/_ecs/awaiting-capacity/ACCOUNT/REGION/CLUSTER/TASK-ID`, valued with the
/// task's key. What cluster auto scaling counts and places once instances register.
pub fn awaiting_prefix() -> String {
    "/_ecs/awaiting-capacity/".to_string()
}
pub fn awaiting_of(s: &Scope, cluster: &str) -> String {
    format!("{}{}/{}/{cluster}/", awaiting_prefix(), s.account, s.region)
}
pub fn awaiting(s: &Scope, cluster: &str, id: &str) -> String {
    format!("{}{id}", awaiting_of(s, cluster))
}

pub fn stopped_task(s: &Scope, stopped_at_ms: i64, cluster: &str, id: &str) -> String {
    format!(
        "{}{:015}/{}/{}/{cluster}/{id}",
        stopped_tasks_prefix(),
        stopped_at_ms.max(0),
        s.account,
        s.region
    )
}
/// The first key of [`stopped_task`]'s that stopped at or after `ms`.
pub fn stopped_task_bound(ms: i64) -> String {
    format!("{}{:015}", stopped_tasks_prefix(), ms.max(0))
}

/// Fargate Spot tasks interrupted and not yet stopped, by when their capacity is reclaimed:
/// `/_ecs/spot-reclaim/MILLIS/ACCOUNT/REGION/CLUSTER/ID`, valued with the task's key. What the
/// cleanup stops once the two-minute warning is over.
pub fn spot_reclaims_prefix() -> String {
    format!("{UNSCOPED}spot-reclaim/")
}
pub fn spot_reclaim(s: &Scope, at_ms: i64, cluster: &str, id: &str) -> String {
    format!("{}{:015}/{}/{}/{cluster}/{id}", spot_reclaims_prefix(), at_ms.max(0), s.account, s.region)
}
/// The first key of [`spot_reclaim`]'s due at or after `ms`.
pub fn spot_reclaim_bound(ms: i64) -> String {
    format!("{}{:015}", spot_reclaims_prefix(), ms.max(0))
}

/// INACTIVE services, across accounts and regions, whose history the cleanup prunes:
/// `/_ecs/inactive-service/ACCOUNT/REGION/CLUSTER/NAME`, valued with the service's key.
pub fn inactive_services_prefix() -> String {
    format!("{UNSCOPED}inactive-service/")
}
pub fn inactive_service(s: &Scope, cluster: &str, name: &str) -> String {
    format!("{}{}/{}/{cluster}/{name}", inactive_services_prefix(), s.account, s.region)
}

/// RunTask's client tokens by the time they expire, across accounts and regions:
/// `/_ecs/client-token-expiry/MILLIS/ACCOUNT/REGION/CLUSTER/TOKEN`, valued with the token's key.
pub fn token_expiries_prefix() -> String {
    format!("{UNSCOPED}client-token-expiry/")
}
pub fn token_expiry(s: &Scope, expires_ms: i64, cluster: &str, token: &str) -> String {
    format!(
        "{}{:015}/{}/{}/{cluster}/{token}",
        token_expiries_prefix(),
        expires_ms.max(0),
        s.account,
        s.region
    )
}
/// The first key of [`token_expiry`]'s that expire at or after `ms`.
pub fn token_expiry_bound(ms: i64) -> String {
    format!("{}{:015}", token_expiries_prefix(), ms.max(0))
}

/// Daemon task definition families: `.../daemon-family/FAMILY` (the last revision handed out).
pub fn daemon_family(s: &Scope, name: &str) -> String {
    scoped(s, &["daemon-family/", name])
}
/// Every daemon task definition revision: `.../daemon-task-definition/FAMILY!REVISION`.
pub fn daemon_task_definitions_prefix(s: &Scope) -> String {
    scoped(s, &["daemon-task-definition/"])
}
pub fn daemon_task_definition(s: &Scope, family: &str, revision: i32) -> String {
    format!("{}{family}!{revision:010}", daemon_task_definitions_prefix(s))
}
/// The index of daemon task definitions by status: `.../dtd-status/STATUS/FAMILY!REVISION`.
pub fn dtd_status_prefix(s: &Scope, status: &str) -> String {
    scoped(s, &["dtd-status/", status, "/"])
}
pub fn dtd_status(s: &Scope, status: &str, family: &str, revision: i32) -> String {
    format!("{}{family}!{revision:010}", dtd_status_prefix(s, status))
}

/// Daemons: `.../daemon/CLUSTER/NAME`.
pub fn daemons_prefix(s: &Scope) -> String {
    scoped(s, &["daemon/"])
}
pub fn daemon_prefix(s: &Scope, cluster: &str) -> String {
    scoped(s, &["daemon/", cluster, "/"])
}
pub fn daemon(s: &Scope, cluster: &str, name: &str) -> String {
    scoped(s, &["daemon/", cluster, "/", name])
}
/// A daemon's deployments: `.../daemon-deployment/CLUSTER/NAME/ID`.
pub fn daemon_deployments_prefix(s: &Scope, cluster: &str, name: &str) -> String {
    scoped(s, &["daemon-deployment/", cluster, "/", name, "/"])
}
pub fn daemon_deployment(s: &Scope, cluster: &str, name: &str, id: &str) -> String {
    format!("{}{id}", daemon_deployments_prefix(s, cluster, name))
}
/// A daemon's revisions: `.../daemon-revision/CLUSTER/NAME/ID`.
pub fn daemon_revision(s: &Scope, cluster: &str, name: &str, id: &str) -> String {
    scoped(s, &["daemon-revision/", cluster, "/", name, "/", id])
}

/// Container instances a critical daemon's failed task drained, to be replaced once they run
/// nothing but daemon tasks: `.../daemon-repair/CLUSTER/INSTANCE-ID`, valued with a
/// `DaemonRepair` (JSON).
pub fn daemon_repair_prefix(s: &Scope, cluster: &str) -> String {
    scoped(s, &["daemon-repair/", cluster, "/"])
}
pub fn daemon_repair(s: &Scope, cluster: &str, instance_id: &str) -> String {
    scoped(s, &["daemon-repair/", cluster, "/", instance_id])
}

/// Every daemon that exists, across scopes: `/_ecs/daemon/ACCOUNT/REGION/CLUSTER/NAME` (empty;
/// the daemon record's index row: the clusters the daemon scheduler visits).
pub fn daemons_index_prefix() -> String {
    format!("{UNSCOPED}daemon/")
}
pub fn daemon_index(s: &Scope, cluster: &str, name: &str) -> String {
    format!("{}{}/{}/{cluster}/{name}", daemons_index_prefix(), s.account, s.region)
}

/// An Express service's managed resources and configurations: `.../express/CLUSTER/NAME`.
pub fn express(s: &Scope, cluster: &str, name: &str) -> String {
    scoped(s, &["express/", cluster, "/", name])
}

/// A gateway: `.../gateway/NAME`.
pub fn gateway(s: &Scope, name: &str) -> String {
    scoped(s, &["gateway/", name])
}
/// Every gateway: `.../gateway/`.
pub fn gateways_prefix(s: &Scope) -> String {
    scoped(s, &["gateway/"])
}
/// A gateway's association with a cluster: `.../gateway-assoc/GATEWAY/CLUSTER`.
pub fn gateway_assoc(s: &Scope, gateway: &str, cluster: &str) -> String {
    scoped(s, &["gateway-assoc/", gateway, "/", cluster])
}
/// Every association: `.../gateway-assoc/`.
pub fn gateway_assocs_prefix(s: &Scope) -> String {
    scoped(s, &["gateway-assoc/"])
}
/// A gateway route: `.../gateway-route/GATEWAY/ID`.
pub fn gateway_route(s: &Scope, gateway: &str, id: &str) -> String {
    scoped(s, &["gateway-route/", gateway, "/", id])
}
/// Every gateway route: `.../gateway-route/`.
pub fn gateway_routes_prefix(s: &Scope) -> String {
    scoped(s, &["gateway-route/"])
}
