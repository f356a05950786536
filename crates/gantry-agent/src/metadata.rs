//! The task metadata endpoint, version 4: what a container learns about itself and its task
//! from `ECS_CONTAINER_METADATA_URI_V4`, in ECS's JSON shapes.
//!
//! Paths, under `/v4/TASK-ID/CONTAINER-NAME` (the value of the variable):
//! `` (the container), `/task` (the task and all its containers), `/stats` (the container's
//! Docker stats) and `/task/stats` (Docker ID → stats for every container of the task).
//! The agent keeps a [`TaskMeta`] per running task; this module only renders and serves it,
//! reading through [`Source`], which the agent implements (this module does not know it).

use crate::runtime::Runtime;
use gantry_core::protocol::Assignment;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A container as the metadata endpoint reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerMeta {
    pub docker_id: String,
    pub docker_name: String,
    pub known_status: String,
    pub created_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub exit_code: Option<i64>,
    pub health: Option<String>,
}

/// A task as the metadata endpoint reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskMeta {
    pub assignment: std::sync::Arc<Assignment>,
    pub known_status: String,
    pub containers: BTreeMap<String, ContainerMeta>,
    pub pull_started_at: Option<String>,
    pub pull_stopped_at: Option<String>,
    /// The task's own address (awsvpc), or none.
    pub ipv4: Option<String>,
}

/// What the endpoint serves from: the record of each task the agent runs, and the engine they
/// run in (for stats). Implemented by `agent::Agent`.
pub trait Source: Send + Sync + 'static {
    type Runtime: Runtime;
    /// The metadata of a task the agent runs, by task ID.
    fn task_meta(&self, task_id: &str) -> Option<TaskMeta>;
    /// The engine the tasks' containers run in.
    fn runtime(&self) -> &Arc<Self::Runtime>;
    /// The task credentials of a credentials ID, if `peer` may have them (see
    /// [`crate::credentials`]).
    fn task_credentials(
        &self,
        id: &str,
        peer: std::net::IpAddr,
    ) -> impl std::future::Future<Output = Option<gantry_core::protocol::TaskCredentials>> + Send;
    /// Passes a request for the front door on to the control plane (a task's `AWS_ENDPOINT_URL`).
    fn forward(
        &self,
        req: crate::client::Forwarded,
    ) -> impl std::future::Future<Output = Option<crate::client::Forwarded>> + Send;
}

/// The largest request body passed on to the front door (its own limits are lower).
const FORWARD_LIMIT: usize = 32 << 20;

/// Whether a path is the endpoint's own (metadata, credentials) rather than the front door's.
fn own_path(path: &str) -> bool {
    path.starts_with("/v4/") || path.starts_with("/v2/credentials")
}

async fn forward<S: Source>(
    agent: &S,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    use http_body_util::BodyExt;
    let (parts, body) = req.into_parts();
    let body = http_body_util::Limited::new(body, FORWARD_LIMIT).collect().await.map(|b| b.to_bytes());
    let answer = match body {
        Ok(body) => {
            let f = crate::client::Forwarded {
                method: parts.method.as_str().to_string(),
                path_and_query: parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
                status: 0,
                headers: parts
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
                    .collect(),
                body,
            };
            agent.forward(f).await
        }
        Err(_) => None,
    };
    let Some(a) = answer else {
        return hyper::Response::builder()
            .status(502)
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                b"the Gantry server cannot be reached\n",
            )))
            .unwrap_or_default();
    };
    let mut b = hyper::Response::builder().status(a.status);
    for (k, v) in &a.headers {
        if !k.eq_ignore_ascii_case("transfer-encoding") && !k.eq_ignore_ascii_case("connection") {
            b = b.header(k.as_str(), v.as_slice());
        }
    }
    b.body(http_body_util::Full::new(a.body)).unwrap_or_default()
}

pub use crate::credentials::rfc3339;

fn network_mode(meta: &TaskMeta) -> String {
    meta.assignment.task_definition.network_mode.clone().unwrap_or_else(|| "bridge".into())
}

/// The container document (`${ECS_CONTAINER_METADATA_URI_V4}`).
pub fn container_document(meta: &TaskMeta, name: &str) -> Option<Value> {
    let c = meta.containers.get(name)?;
    let def = meta
        .assignment
        .task_definition
        .container_definitions
        .iter()
        .flatten()
        .find(|d| d.name.as_deref() == Some(name))?;
    let task = &meta.assignment.task;
    let container_arn = task
        .containers
        .iter()
        .flatten()
        .find(|x| x.name.as_deref() == Some(name))
        .and_then(|x| x.container_arn.clone());
    let mut labels: BTreeMap<String, String> = def.docker_labels.clone().unwrap_or_default();
    labels.insert("com.amazonaws.ecs.cluster".into(), task.cluster_arn.clone().unwrap_or_default());
    labels.insert("com.amazonaws.ecs.container-name".into(), name.into());
    labels.insert("com.amazonaws.ecs.task-arn".into(), task.task_arn.clone().unwrap_or_default());
    labels.insert(
        "com.amazonaws.ecs.task-definition-family".into(),
        meta.assignment.task_definition.family.clone().unwrap_or_default(),
    );
    labels.insert(
        "com.amazonaws.ecs.task-definition-version".into(),
        meta.assignment.task_definition.revision.to_string(),
    );
    let mut network = json!({"NetworkMode": network_mode(meta)});
    if let Some(ip) = &meta.ipv4 {
        network["IPv4Addresses"] = json!([ip]);
    }
    let mut doc = json!({
        "DockerId": c.docker_id,
        "Name": name,
        "DockerName": c.docker_name,
        "Image": def.image,
        "ImageID": "",
        "Labels": labels,
        "DesiredStatus": task.desired_status,
        "KnownStatus": c.known_status,
        "Limits": {"CPU": def.cpu, "Memory": def.memory.or(def.memory_reservation).unwrap_or(0)},
        "Type": "NORMAL",
        "ContainerARN": container_arn,
        "LogDriver": def.log_configuration.as_ref().map(|l| l.log_driver.clone()).unwrap_or_else(|| "json-file".into()),
        "LogOptions": def.log_configuration.as_ref().and_then(|l| l.options.clone()).unwrap_or_default(),
        "Networks": [network],
    });
    if let Some(t) = &c.created_at {
        doc["CreatedAt"] = json!(t);
    }
    if let Some(t) = &c.started_at {
        doc["StartedAt"] = json!(t);
    }
    if let Some(t) = &c.finished_at {
        doc["FinishedAt"] = json!(t);
    }
    if let Some(code) = c.exit_code {
        doc["ExitCode"] = json!(code);
    }
    if let Some(h) = &c.health {
        doc["Health"] = json!({"status": h});
    }
    Some(doc)
}

/// The task document (`${ECS_CONTAINER_METADATA_URI_V4}/task`).
pub fn task_document(meta: &TaskMeta) -> Value {
    let task = &meta.assignment.task;
    let td = &meta.assignment.task_definition;
    let containers: Vec<Value> = meta.containers.keys().filter_map(|n| container_document(meta, n)).collect();
    let mut doc = json!({
        "Cluster": task.cluster_arn,
        "TaskARN": task.task_arn,
        "Family": td.family,
        "Revision": td.revision.to_string(),
        "DesiredStatus": task.desired_status,
        "KnownStatus": meta.known_status,
        "Containers": containers,
        "LaunchType": task.launch_type,
        "AvailabilityZone": task.availability_zone,
    });
    let cpu = task.cpu.as_deref().and_then(|c| c.parse::<f64>().ok());
    let mem = task.memory.as_deref().and_then(|m| m.parse::<i64>().ok());
    if td.cpu.is_some() || td.memory.is_some() {
        doc["Limits"] = json!({"CPU": cpu.map(|c| c / 1024.0), "Memory": mem});
    }
    if let Some(t) = &meta.pull_started_at {
        doc["PullStartedAt"] = json!(t);
    }
    if let Some(t) = &meta.pull_stopped_at {
        doc["PullStoppedAt"] = json!(t);
    }
    if let Some(ip) = &meta.ipv4 {
        doc["Networks"] = json!([{"NetworkMode": "awsvpc", "IPv4Addresses": [ip]}]);
    }
    doc
}

/// Serves the endpoint on `listener` until the process ends.
pub async fn serve<S: Source>(agent: Arc<S>, listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else { continue };
        let agent = agent.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let agent = agent.clone();
                async move {
                    if !own_path(req.uri().path()) {
                        return Ok::<_, std::convert::Infallible>(forward(&*agent, req).await);
                    }
                    let (status, body) = respond(&*agent, req.uri().path(), peer.ip()).await;
                    let resp = hyper::Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                        .unwrap_or_default();
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
        });
    }
}

async fn respond<S: Source>(agent: &S, path: &str, peer: std::net::IpAddr) -> (u16, Vec<u8>) {
    if let Some(id) = path.strip_prefix(crate::credentials::PATH_PREFIX).or_else(|| {
        (path.trim_end_matches('/') == crate::credentials::PATH_PREFIX.trim_end_matches('/')).then_some("")
    }) {
        if id.is_empty() {
            return crate::credentials::no_id();
        }
        // An IPv4 peer may arrive as an IPv4-mapped IPv6 address on a dual-stack socket.
        let peer = match peer {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, std::net::IpAddr::V4),
            v4 => v4,
        };
        return match agent.task_credentials(id, peer).await {
            Some(c) => (200, crate::credentials::document(&c)),
            None => crate::credentials::not_found(),
        };
    }
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let not_found = (404, br#"{"error":"not found"}"#.to_vec());
    let (task_id, container, rest) = match parts.as_slice() {
        ["v4", t, c, rest @ ..] => (*t, *c, rest),
        _ => return not_found,
    };
    let Some(meta) = agent.task_meta(task_id) else { return not_found };
    let doc = match rest {
        [] => container_document(&meta, container),
        ["task"] => meta.containers.contains_key(container).then(|| task_document(&meta)),
        ["stats"] => match meta.containers.get(container) {
            Some(c) => agent.runtime().stats(&c.docker_id).await.ok(),
            None => None,
        },
        ["task", "stats"] if meta.containers.contains_key(container) => {
            let mut all = serde_json::Map::new();
            for c in meta.containers.values() {
                if !c.docker_id.is_empty() {
                    all.insert(
                        c.docker_id.clone(),
                        agent.runtime().stats(&c.docker_id).await.unwrap_or(Value::Null),
                    );
                }
            }
            Some(Value::Object(all))
        }
        _ => None,
    };
    match doc {
        Some(d) => (200, serde_json::to_vec(&d).unwrap_or_default()),
        None => not_found,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_rfc3339() {
        assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_700_000_000.5), "2023-11-14T22:13:20.500000000Z");
        assert_eq!(rfc3339(951_782_400.0), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn documents_have_ecs_fields() {
        let assignment: Assignment = serde_json::from_value(json!({
            "task": {"taskArn": "arn:aws:ecs:us-east-1:1:task/c/t1", "clusterArn": "arn:aws:ecs:us-east-1:1:cluster/c",
                     "desiredStatus": "RUNNING", "launchType": "FARGATE", "cpu": "512", "memory": "1024",
                     "containers": [{"name": "web", "containerArn": "arn:aws:ecs:us-east-1:1:container/c/t1/x"}]},
            "taskDefinition": {"family": "f", "revision": 2, "networkMode": "awsvpc", "cpu": "512", "memory": "1024",
                     "containerDefinitions": [{"name": "web", "image": "img", "cpu": 256, "memory": 512}]}
        }))
        .unwrap();
        let mut containers = BTreeMap::new();
        containers.insert(
            "web".to_string(),
            ContainerMeta {
                docker_id: "d1".into(),
                docker_name: "ecs-web-t1".into(),
                known_status: "RUNNING".into(),
                ..Default::default()
            },
        );
        let meta = TaskMeta {
            assignment: assignment.into(),
            known_status: "RUNNING".into(),
            containers,
            pull_started_at: None,
            pull_stopped_at: None,
            ipv4: Some("172.29.0.5".into()),
        };
        let c = container_document(&meta, "web").unwrap();
        assert_eq!(c["DockerId"], "d1");
        assert_eq!(c["Limits"]["Memory"], 512);
        assert_eq!(c["ContainerARN"], "arn:aws:ecs:us-east-1:1:container/c/t1/x");
        assert_eq!(c["Networks"][0]["IPv4Addresses"][0], "172.29.0.5");
        assert_eq!(c["Labels"]["com.amazonaws.ecs.task-definition-family"], "f");
        assert!(container_document(&meta, "nope").is_none());
        let t = task_document(&meta);
        assert_eq!(t["TaskARN"], "arn:aws:ecs:us-east-1:1:task/c/t1");
        assert_eq!(t["Revision"], "2");
        assert_eq!(t["Limits"]["CPU"], 0.5);
        assert_eq!(t["Containers"].as_array().unwrap().len(), 1);
    }
}
