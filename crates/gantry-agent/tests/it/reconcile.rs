//! The agent's reconcile loop against the fake runtime and a recording control plane, on tokio's
//! paused clock: adoption after a restart, containers that die or vanish, a stop during start.

use crate::control::{Recorder, agent, config};
use gantry_agent::agent::{Agent, AgentConfig, Decision, decide};
use gantry_agent::fake::FakeRuntime;
use gantry_agent::runtime::{ContainerStatus, Health};
use gantry_core::protocol::{Assignment, Assignments};
use gantry_core::{FixedClock, Timestamp};
use gantry_model::*;
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Records the agent's 169.254.170.2 redirects.
#[derive(Default)]
struct Redirects(Mutex<Vec<String>>);

impl gantry_agent::credentials::Redirect for Redirects {
    fn add(&self, mac: &str, port: u16, tag: &str) -> Result<(), String> {
        self.0.lock().unwrap().push(format!("add {mac} {port} {tag}"));
        Ok(())
    }
    fn remove(&self, tag: &str) {
        self.0.lock().unwrap().push(format!("remove {tag}"));
    }
}

fn assignment(id: &str, desired: &str, containers: serde_json::Value) -> Assignment {
    let arn = format!("arn:aws:ecs:us-east-1:000000000000:task/c/{id}");
    Assignment {
        task: serde_json::from_value(
            json!({"taskArn": arn, "clusterArn": "arn:aws:ecs:us-east-1:000000000000:cluster/c",
            "desiredStatus": desired, "lastStatus": "PROVISIONING"}),
        )
        .unwrap(),
        task_definition: serde_json::from_value(
            json!({"family": "f", "revision": 1, "containerDefinitions": containers}),
        )
        .unwrap(),
        network_configuration: None,
        revision: 1,
    }
}

/// Waits (on the paused clock) until `cond` holds.
async fn until(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..2_000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for: {what}");
}

fn web() -> serde_json::Value {
    json!([{"name": "web", "image": "img", "memory": 64}])
}

fn arn(id: &str) -> String {
    format!("arn:aws:ecs:us-east-1:000000000000:task/c/{id}")
}

#[test]
fn decide_table() {
    let running: HashSet<String> = ["r".to_string()].into();
    let finished: HashSet<String> = ["f".to_string()].into();
    let found: BTreeMap<String, Vec<String>> =
        [("a".to_string(), vec!["c1".to_string()]), ("stray".to_string(), vec!["c9".to_string()])].into();
    let desired = vec![
        ("a".to_string(), true),
        ("r".to_string(), false),
        ("f".to_string(), false),
        ("new".to_string(), true),
    ];
    let d = decide(&desired, &running, &finished, &found);
    assert_eq!(
        d,
        vec![
            Decision::Run { task_arn: "a".into(), adopt: vec!["c1".into()] },
            Decision::Stop { task_arn: "r".into() },
            Decision::Resend { task_arn: "f".into() },
            Decision::Run { task_arn: "new".into(), adopt: vec![] },
            Decision::RemoveStray { task_arn: "stray".into(), containers: vec!["c9".into()] },
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn runs_a_task_and_reports_an_essential_exit() {
    let (rt, rec) = (Arc::new(FakeRuntime::new()), Arc::new(Recorder::default()));
    rt.add_image("img");
    let a = agent(&rt, &rec);
    a.reconcile(vec![assignment("t1", "RUNNING", web())]).await.unwrap();
    until("RUNNING reported", || rec.statuses(&arn("t1")).contains(&"RUNNING".to_string())).await;
    let running = rec.last(&arn("t1"), "RUNNING").unwrap();
    let c = &running.containers.unwrap()[0];
    assert!(c.runtime_id.is_some());
    // The task got going before its PENDING report left, so RUNNING alone says it all.
    assert!(running.pull_started_at.is_some() && running.pull_stopped_at.is_some());
    assert_eq!(rec.statuses(&arn("t1")), vec!["RUNNING"]);

    rt.exit("ecs-web-t1", 3);
    until("STOPPED reported", || rec.last(&arn("t1"), "STOPPED").is_some()).await;
    let stopped = rec.last(&arn("t1"), "STOPPED").unwrap();
    assert_eq!(stopped.reason.as_deref(), Some("Essential container in task exited"));
    assert_eq!(stopped.containers.unwrap()[0].exit_code, Some(3));
    until("containers removed", || rt.containers().is_empty()).await;
}

#[tokio::test(start_paused = true)]
async fn adopts_running_containers_after_a_restart() {
    let (rt, rec) = (Arc::new(FakeRuntime::new()), Arc::new(Recorder::default()));
    rt.add_image("img");
    let first = agent(&rt, &rec);
    first.reconcile(vec![assignment("t1", "RUNNING", web())]).await.unwrap();
    until("RUNNING", || rec.statuses(&arn("t1")).contains(&"RUNNING".to_string())).await;
    let id = rt.containers()[0].id.clone();
    first.abandon();

    let second = agent(&rt, &rec);
    second.reconcile(vec![assignment("t1", "RUNNING", web())]).await.unwrap();
    until("re-reported RUNNING", || rec.statuses(&arn("t1")).iter().filter(|s| *s == "RUNNING").count() == 2)
        .await;
    // Same container, no second create.
    assert_eq!(rt.containers().len(), 1);
    assert_eq!(rt.containers()[0].id, id);
    assert_eq!(rt.calls().iter().filter(|c| c.starts_with("create")).count(), 1);
    let again = rec.last(&arn("t1"), "RUNNING").unwrap();
    assert_eq!(again.containers.unwrap()[0].runtime_id.as_deref(), Some(id.as_str()));
    // And it still watches it.
    rt.exit(&id, 0);
    until("STOPPED", || rec.last(&arn("t1"), "STOPPED").is_some()).await;
}

#[tokio::test(start_paused = true)]
async fn reports_tasks_whose_containers_died_while_it_was_down() {
    let (rt, rec) = (Arc::new(FakeRuntime::new()), Arc::new(Recorder::default()));
    rt.add_image("img");
    let first = agent(&rt, &rec);
    first.reconcile(vec![assignment("t1", "RUNNING", web())]).await.unwrap();
    until("RUNNING", || rec.statuses(&arn("t1")).contains(&"RUNNING".to_string())).await;
    first.abandon();
    rt.exit("ecs-web-t1", 2);

    let second = agent(&rt, &rec);
    second.reconcile(vec![assignment("t1", "RUNNING", web())]).await.unwrap();
    until("STOPPED", || rec.last(&arn("t1"), "STOPPED").is_some()).await;
    let s = rec.last(&arn("t1"), "STOPPED").unwrap();
    assert_eq!(s.containers.unwrap()[0].exit_code, Some(2));
    assert_eq!(rt.calls().iter().filter(|c| c.starts_with("create")).count(), 1, "nothing restarted");
}

#[tokio::test(start_paused = true)]
async fn a_lost_container_stops_the_task() {
    let (rt, rec) = (Arc::new(FakeRuntime::new()), Arc::new(Recorder::default()));
    rt.add_image("img");
    let a = agent(&rt, &rec);
    a.reconcile(vec![assignment("t1", "RUNNING", web())]).await.unwrap();
    until("RUNNING", || rec.statuses(&arn("t1")).contains(&"RUNNING".to_string())).await;
    rt.vanish("ecs-web-t1");
    until("STOPPED", || rec.last(&arn("t1"), "STOPPED").is_some()).await;
    assert!(a.running().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_stop_during_start_never_reports_running_and_leaves_nothing() {
    let (rt, rec) = (Arc::new(FakeRuntime::new()), Arc::new(Recorder::default()));
    rt.add_image("img");
    // "app" waits for "db" to be HEALTHY, which it never becomes.
    let containers = json!([
        {"name": "db", "image": "img", "memory": 64, "healthCheck": {"command": ["CMD", "true"]}},
        {"name": "app", "image": "img", "memory": 64, "dependsOn": [{"containerName": "db", "condition": "HEALTHY"}]}
    ]);
    let a = agent(&rt, &rec);
    a.reconcile(vec![assignment("t1", "RUNNING", containers.clone())]).await.unwrap();
    until("db started", || {
        rt.containers().iter().any(|c| c.name == "ecs-db-t1" && c.status == ContainerStatus::Running)
    })
    .await;
    let app = rt.containers().into_iter().find(|c| c.name == "ecs-app-t1").unwrap();
    assert_eq!(app.status, ContainerStatus::Created, "app must wait for db to be healthy");

    a.reconcile(vec![assignment("t1", "STOPPED", containers)]).await.unwrap();
    until("STOPPED", || rec.last(&arn("t1"), "STOPPED").is_some()).await;
    assert!(!rec.statuses(&arn("t1")).contains(&"RUNNING".to_string()));
    until("removed", || rt.containers().is_empty()).await;
}

#[tokio::test(start_paused = true)]
async fn depends_on_healthy_waits_for_health() {
    let (rt, rec) = (Arc::new(FakeRuntime::new()), Arc::new(Recorder::default()));
    rt.add_image("img");
    let containers = json!([
        {"name": "db", "image": "img", "memory": 64, "healthCheck": {"command": ["CMD", "true"]}},
        {"name": "app", "image": "img", "memory": 64, "dependsOn": [{"containerName": "db", "condition": "HEALTHY"}]}
    ]);
    let a = agent(&rt, &rec);
    a.reconcile(vec![assignment("t1", "RUNNING", containers)]).await.unwrap();
    until("db started", || {
        rt.containers().iter().any(|c| c.name == "ecs-db-t1" && c.status == ContainerStatus::Running)
    })
    .await;
    // While it waits, its PENDING report has gone out.
    until("PENDING", || rec.statuses(&arn("t1")) == vec!["PENDING"]).await;
    rt.set_health("ecs-db-t1", Health::Healthy);
    until("RUNNING", || rec.statuses(&arn("t1")).contains(&"RUNNING".to_string())).await;
    assert_eq!(rec.statuses(&arn("t1")), vec!["PENDING", "RUNNING"]);
    let starts: Vec<_> = rt.calls().into_iter().filter(|c| c.starts_with("start")).collect();
    assert_eq!(starts.len(), 2);
    until("health reported", || {
        rec.health
            .lock()
            .unwrap()
            .iter()
            .any(|h| h.containers.contains(&("db".to_string(), "HEALTHY".to_string())))
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_missing_image_fails_the_task_with_cannot_pull() {
    let (rt, rec) = (Arc::new(FakeRuntime::new()), Arc::new(Recorder::default()));
    let a = agent(&rt, &rec);
    a.reconcile(vec![assignment("t1", "RUNNING", json!([{"name": "web", "image": "nope:1", "memory": 64}]))])
        .await
        .unwrap();
    until("STOPPED", || rec.last(&arn("t1"), "STOPPED").is_some()).await;
    let s = rec.last(&arn("t1"), "STOPPED").unwrap();
    assert!(s.reason.as_deref().unwrap().starts_with("CannotPullContainerError:"), "{:?}", s.reason);
    assert!(s.containers.unwrap()[0].reason.as_deref().unwrap().starts_with("CannotPullContainerError:"));
    assert!(rt.containers().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_non_essential_exit_keeps_the_task_running() {
    let (rt, rec) = (Arc::new(FakeRuntime::new()), Arc::new(Recorder::default()));
    rt.add_image("img");
    let containers = json!([
        {"name": "web", "image": "img", "memory": 64},
        {"name": "init", "image": "img", "memory": 64, "essential": false}
    ]);
    let a = agent(&rt, &rec);
    a.reconcile(vec![assignment("t1", "RUNNING", containers)]).await.unwrap();
    until("RUNNING", || rec.statuses(&arn("t1")).contains(&"RUNNING".to_string())).await;
    rt.exit("ecs-init-t1", 0);
    // The container's change travels in a task state change without a task status.
    let change = || {
        let tasks = rec.tasks.lock().unwrap();
        tasks.iter().find(|r| r.status.is_none()).and_then(|r| r.containers.clone())
    };
    until("container STOPPED", || change().is_some()).await;
    let c = &change().unwrap()[0];
    assert_eq!(
        (c.container_name.as_deref(), c.status.as_deref(), c.exit_code),
        (Some("init"), Some("STOPPED"), Some(0))
    );
    assert!(rec.last(&arn("t1"), "STOPPED").is_none());
    assert_eq!(a.running().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn containers_of_unassigned_tasks_are_removed() {
    let (rt, rec) = (Arc::new(FakeRuntime::new()), Arc::new(Recorder::default()));
    rt.add_image("img");
    let first = agent(&rt, &rec);
    first.reconcile(vec![assignment("gone", "RUNNING", web())]).await.unwrap();
    until("RUNNING", || rec.statuses(&arn("gone")).contains(&"RUNNING".to_string())).await;
    first.abandon();
    // The server stopped the task while the agent was away and no longer assigns it.
    let second = agent(&rt, &rec);
    second.reconcile(vec![]).await.unwrap();
    assert!(rt.containers().is_empty());
}

#[tokio::test(start_paused = true)]
async fn awsvpc_tasks_share_a_namespace_holder_and_report_their_address() {
    let (rt, rec) = (Arc::new(FakeRuntime::new()), Arc::new(Recorder::default()));
    rt.add_image("img");
    let mut a = assignment(
        "t1",
        "RUNNING",
        json!([{"name": "web", "image": "img"}, {"name": "side", "image": "img"}]),
    );
    a.task_definition.network_mode = Some("awsvpc".into());
    a.task.attachments = Some(vec![Attachment {
        id: Some("att1".into()),
        r#type: Some("ElasticNetworkInterface".into()),
        ..Default::default()
    }]);
    let ag = agent(&rt, &rec);
    ag.reconcile(vec![a.clone()]).await.unwrap();
    until("RUNNING", || rec.statuses(&arn("t1")).contains(&"RUNNING".to_string())).await;
    assert!(rt.calls().contains(&"import gantry/pause:1".to_string()));
    let pause = rt.containers().into_iter().find(|c| c.labels["gantry.container-name"] == "~pause").unwrap();
    for name in ["ecs-web-t1", "ecs-side-t1"] {
        let spec = rt.spec(name).unwrap();
        assert_eq!(spec.network, gantry_agent::runtime::Network::Container(pause.id.clone()), "{name}");
    }
    let ip = rec.health.lock().unwrap().iter().find_map(|h| h.private_ipv4_address.clone());
    assert_eq!(ip, pause.ip_address);
    let att = rec.attachments.lock().unwrap()[0].attachments[0].clone();
    assert_eq!(att.attachment_arn, "arn:aws:ecs:us-east-1:000000000000:attachment/c/t1/att1");
    assert_eq!(att.status, "ATTACHED");

    a.task.desired_status = Some("STOPPED".into());
    ag.reconcile(vec![a]).await.unwrap();
    until("STOPPED", || rec.last(&arn("t1"), "STOPPED").is_some()).await;
    until("all removed, the holder too", || rt.containers().is_empty()).await;
    // ECS's order on the way down: STOPPING, DEPROVISIONING (the network), STOPPED.
    let statuses = rec.statuses(&arn("t1"));
    let pos =
        |s: &str| statuses.iter().position(|x| x == s).unwrap_or_else(|| panic!("no {s} in {statuses:?}"));
    assert!(pos("DEPROVISIONING") < pos("STOPPED"));
    assert!(statuses.contains(&"STOPPING".to_string()));
    assert!(rec.attachments.lock().unwrap().iter().any(|r| r.attachments[0].status == "DELETED"));
}

#[tokio::test(start_paused = true)]
async fn an_essential_container_that_exits_at_once_stops_the_task() {
    let (rt, rec) = (Arc::new(FakeRuntime::new()), Arc::new(Recorder::default()));
    rt.add_image("img");
    rt.exit_on_start("ecs-web-t1", 3);
    let a = agent(&rt, &rec);
    a.reconcile(vec![assignment("t1", "RUNNING", web())]).await.unwrap();
    until("STOPPED", || rec.last(&arn("t1"), "STOPPED").is_some()).await;
    let s = rec.last(&arn("t1"), "STOPPED").unwrap();
    assert_eq!(s.reason.as_deref(), Some("Essential container in task exited"));
    assert_eq!(s.containers.unwrap()[0].exit_code, Some(3));
}

#[tokio::test(start_paused = true)]
async fn reserved_gpus_reach_the_engine() {
    let (rt, rec) = (Arc::new(FakeRuntime::new()), Arc::new(Recorder::default()));
    rt.add_image("img");
    let a = agent(&rt, &rec);
    let mut asg = assignment(
        "g1",
        "RUNNING",
        json!([{"name": "train", "image": "img", "memory": 64,
                "resourceRequirements": [{"type": "GPU", "value": "2"}]},
               {"name": "log", "image": "img", "memory": 64}]),
    );
    // The control plane's reservation, as the task's containers carry it.
    asg.task.containers = Some(vec![
        Container {
            name: Some("train".into()),
            gpu_ids: Some(vec!["GPU-a".into(), "GPU-b".into()]),
            ..Default::default()
        },
        Container { name: Some("log".into()), ..Default::default() },
    ]);
    a.reconcile(vec![asg]).await.unwrap();
    until("RUNNING reported", || rec.statuses(&arn("g1")).contains(&"RUNNING".to_string())).await;
    let train = rt.spec("ecs-train-g1").unwrap();
    assert_eq!(train.gpus, vec!["GPU-a".to_string(), "GPU-b".to_string()]);
    assert!(train.env.contains(&("NVIDIA_VISIBLE_DEVICES".into(), "GPU-a,GPU-b".into())));
    let log = rt.spec("ecs-log-g1").unwrap();
    assert!(log.gpus.is_empty());
    assert!(!log.env.iter().any(|(k, _)| k == "NVIDIA_VISIBLE_DEVICES"));
}

fn delta(tasks: Vec<Assignment>, removed: &[&str]) -> Assignments {
    Assignments {
        version: 0,
        tasks,
        delta: true,
        removed: removed.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn deltas_merge_into_what_the_agent_holds() {
    let (rt, rec) = (Arc::new(FakeRuntime::new()), Arc::new(Recorder::default()));
    rt.add_image("img");
    let a = agent(&rt, &rec);
    a.apply(delta(vec![assignment("t1", "RUNNING", web()), assignment("t2", "RUNNING", web())], &[]))
        .await
        .unwrap();
    until("both RUNNING", || a.running().len() == 2 && rec.statuses(&arn("t2")).contains(&"RUNNING".into()))
        .await;
    assert_eq!(a.known(), BTreeMap::from([("t1".to_string(), 1), ("t2".to_string(), 1)]));

    // A delta that names only t2 (its desired status changed) leaves t1 alone.
    let mut stop = assignment("t2", "STOPPED", web());
    stop.revision = 7;
    a.apply(delta(vec![stop], &[])).await.unwrap();
    until("t2 STOPPED", || rec.last(&arn("t2"), "STOPPED").is_some()).await;
    assert_eq!(a.running(), HashSet::from([arn("t1")]));
    assert_eq!(a.known(), BTreeMap::from([("t1".to_string(), 1), ("t2".to_string(), 7)]));
    assert_eq!(rt.calls().iter().filter(|c| c.starts_with("create")).count(), 2, "t1 was not started again");

    // The server took the final report: t2 is removed; an empty delta changes nothing.
    a.apply(delta(vec![], &["t2"])).await.unwrap();
    a.apply(delta(vec![], &[])).await.unwrap();
    assert_eq!(a.known(), BTreeMap::from([("t1".to_string(), 1)]));
    assert_eq!(a.running(), HashSet::from([arn("t1")]));
    assert_eq!(rec.statuses(&arn("t2")).iter().filter(|s| *s == "STOPPED").count(), 1, "sent once");

    // A whole set (an older server, or no `known`) replaces what the agent holds.
    a.reconcile(vec![assignment("t1", "RUNNING", web()), assignment("t3", "RUNNING", web())]).await.unwrap();
    assert_eq!(a.known().keys().cloned().collect::<Vec<_>>(), vec!["t1", "t3"]);
}

#[tokio::test(start_paused = true)]
async fn polls_say_what_the_agent_holds() {
    let (rt, rec) = (Arc::new(FakeRuntime::new()), Arc::new(Recorder::default()));
    rt.add_image("img");
    let mut first = assignment("t1", "RUNNING", web());
    first.revision = 5;
    rec.answers.lock().unwrap().extend([
        Assignments { version: 3, ..delta(vec![first], &[]) },
        Assignments { version: 4, ..delta(vec![assignment("t2", "RUNNING", web())], &["t1"]) },
    ]);
    let a = agent(&rt, &rec);
    let loop_ = tokio::spawn(a.clone().run());
    until("three polls", || rec.polls.lock().unwrap().len() == 3).await;
    let polls = rec.polls.lock().unwrap().clone();
    loop_.abort();
    let held: Vec<_> = polls.iter().map(|p| (p.version, p.known.clone().unwrap())).collect();
    assert_eq!(
        held,
        vec![
            (0, BTreeMap::new()),
            (3, BTreeMap::from([("t1".to_string(), 5)])),
            (4, BTreeMap::from([("t2".to_string(), 1)])),
        ],
        "a restarted agent knows nothing and gets everything; then each poll sends what it holds"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unacknowledged_final_report_is_sent_again() {
    let (rt, rec) = (Arc::new(FakeRuntime::new()), Arc::new(Recorder::default()));
    rt.add_image("img");
    let a = agent(&rt, &rec);
    a.apply(delta(vec![assignment("t1", "RUNNING", web())], &[])).await.unwrap();
    until("started", || rt.containers().iter().any(|c| c.status == ContainerStatus::Running)).await;
    *rec.fail_stopped.lock().unwrap() = true;
    rt.exit("ecs-web-t1", 1);
    until("the STOPPED report failed", || *rec.stopped_attempts.lock().unwrap() == 1).await;
    *rec.fail_stopped.lock().unwrap() = false;
    // The next poll answers nothing new about t1, yet the report goes again, once.
    a.apply(delta(vec![], &[])).await.unwrap();
    a.apply(delta(vec![], &[])).await.unwrap();
    assert_eq!(*rec.stopped_attempts.lock().unwrap(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_task_role_gets_credentials_served_to_its_own_address_only() {
    let (rt, rec) = (Arc::new(FakeRuntime::new()), Arc::new(Recorder::default()));
    rt.add_image("img");
    let redirects = Arc::new(Redirects::default());
    let clock = Arc::new(FixedClock::new(Timestamp(1_700_000_000_000)));
    let ag = Agent::new(
        rt.clone(),
        rec.clone(),
        clock.clone(),
        AgentConfig {
            credentials: Some(gantry_agent::agent::CredentialsConfig {
                port: 4242,
                redirect: redirects.clone(),
            }),
            ..config()
        },
    );
    let mut a = assignment("t1", "RUNNING", json!([{"name": "web", "image": "img"}]));
    a.task_definition.network_mode = Some("awsvpc".into());
    a.task_definition.task_role_arn = Some("arn:aws:iam::000000000000:role/app".into());
    ag.reconcile(vec![a.clone()]).await.unwrap();
    until("RUNNING", || rec.statuses(&arn("t1")).contains(&"RUNNING".to_string())).await;

    // The container finds the endpoint and the front door through its environment.
    let env = rt.spec("ecs-web-t1").unwrap().env;
    let uri = env.iter().find(|(k, _)| k == "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").unwrap().1.clone();
    let id = uri.strip_prefix("/v2/credentials/").unwrap().to_string();
    assert_eq!(id.len(), 36);
    assert!(env.contains(&("AWS_ENDPOINT_URL".into(), "http://169.254.170.2".into())));
    // The namespace holder got its MAC address and its route before it started.
    let pause = rt.containers().into_iter().find(|c| c.labels["gantry.container-name"] == "~pause").unwrap();
    let mac = rt.spec(&pause.id).unwrap().mac_address.unwrap();
    assert_eq!(mac, gantry_agent::credentials::mac_address(&arn("t1"), "~pause"));
    assert_eq!(*redirects.0.lock().unwrap(), [format!("add {mac} 4242 gantry-creds:t1")]);

    // Served to the task's own address, refused to another and for an unknown ID.
    let own: std::net::IpAddr = pause.ip_address.clone().unwrap().parse().unwrap();
    let c = ag.task_credentials(&id, own).await.unwrap();
    assert_eq!(c.access_key_id, "ASIAEXAMPLE1");
    assert!(ag.task_credentials(&id, "10.9.9.9".parse().unwrap()).await.is_none());
    assert!(ag.task_credentials("nope", own).await.is_none());

    // Renewed at half their life.
    clock.advance_ms(1_801_000);
    let renew = tokio::spawn(ag.clone().renew_credentials(Duration::from_secs(1)));
    until("renewed", || ag_key(&rec) == 2).await;
    until("served renewed", || {
        futures_util::FutureExt::now_or_never(ag.task_credentials(&id, own))
            .flatten()
            .is_some_and(|c| c.access_key_id == "ASIAEXAMPLE2")
    })
    .await;
    renew.abort();

    // Stopped: the route and the credentials go.
    a.task.desired_status = Some("STOPPED".into());
    ag.reconcile(vec![a]).await.unwrap();
    until("STOPPED", || rec.last(&arn("t1"), "STOPPED").is_some()).await;
    assert!(redirects.0.lock().unwrap().contains(&"remove gantry-creds:t1".to_string()));
    assert!(ag.task_credentials(&id, own).await.is_none());
}

fn ag_key(rec: &Recorder) -> usize {
    rec.credentials_asked.lock().unwrap().len()
}

fn awsvpc(id: &str, desired: &str) -> Assignment {
    let mut a = assignment(id, desired, web());
    a.task_definition.network_mode = Some("awsvpc".into());
    a
}

/// The node's pool-labelled containers: (name, id, running).
fn pool_labelled(rt: &FakeRuntime) -> Vec<(String, String, bool)> {
    let mut v: Vec<_> = rt
        .containers()
        .into_iter()
        .filter(|c| c.labels.contains_key("gantry.holder-pool"))
        .map(|c| (c.name.clone(), c.id.clone(), c.status == ContainerStatus::Running))
        .collect();
    v.sort();
    v
}

fn free_members(rt: &FakeRuntime) -> Vec<String> {
    pool_labelled(rt)
        .into_iter()
        .filter(|(n, _, _)| n.starts_with("ecs-internalecspause-pool-"))
        .map(|x| x.1)
        .collect()
}

/// A ready namespace holder goes to an awsvpc task (renamed to the task's holder name, nothing
/// created or started for it on the task's path), and the pool refills. After a restart the
/// new agent takes the free running member back, removes a dead one, adopts each task with the
/// holder it was given (never into the pool), removes the holder of a task no longer assigned,
/// and refills without leaking a holder.
#[tokio::test(start_paused = true)]
async fn awsvpc_tasks_take_ready_holders_and_a_restart_keeps_pool_and_tasks_apart() {
    let (rt, rec) = (Arc::new(FakeRuntime::new()), Arc::new(Recorder::default()));
    rt.add_image("img");
    let first = agent(&rt, &rec);
    first.set_holder_pool(2);
    first.restore_holders().await;
    first.fill_holders().await;
    let ready = free_members(&rt);
    assert_eq!(ready.len(), 2);
    assert!(pool_labelled(&rt).iter().all(|(_, _, running)| *running), "made ready: started");
    let mut free = first.free_holders();
    free.sort();
    assert_eq!(free, ready);

    first.reconcile(vec![awsvpc("t1", "RUNNING"), awsvpc("t2", "RUNNING")]).await.unwrap();
    for t in ["t1", "t2"] {
        until("RUNNING", || rec.statuses(&arn(t)).contains(&"RUNNING".to_string())).await;
    }
    let holder =
        |t: &str| rt.containers().into_iter().find(|c| c.name == format!("ecs-internalecspause-{t}"));
    let (h1, h2) = (holder("t1").unwrap(), holder("t2").unwrap());
    assert!(ready.contains(&h1.id) && ready.contains(&h2.id), "the ready holders were taken");
    assert_eq!(
        rt.spec("ecs-web-t1").unwrap().network,
        gantry_agent::runtime::Network::Container(h1.id.clone())
    );
    let calls = rt.calls();
    assert!(!calls.iter().any(|c| c.starts_with("create ecs-internalecspause-t")), "{calls:?}");
    let started_h1 = calls.iter().filter(|c| *c == &format!("start {}", h1.id)).count();
    assert_eq!(started_h1, 1, "started once, when made ready: {calls:?}");
    let ip = rec
        .health
        .lock()
        .unwrap()
        .iter()
        .find(|h| h.task_arn == arn("t1"))
        .and_then(|h| h.private_ipv4_address.clone());
    assert_eq!(ip, h1.ip_address);
    assert!(first.free_holders().is_empty());
    first.fill_holders().await;
    assert_eq!(free_members(&rt).len(), 2, "refilled");
    assert!(free_members(&rt).iter().all(|id| !ready.contains(id)), "with new holders");

    // The agent dies; one free member dies too.
    first.abandon();
    let members = free_members(&rt);
    rt.exit(&members[0], 137);
    let second = agent(&rt, &rec);
    second.set_holder_pool(2);
    second.restore_holders().await;
    assert_eq!(second.free_holders(), vec![members[1].clone()], "the running member is reused");
    assert!(rt.containers().iter().all(|c| c.id != members[0]), "the dead one is removed");
    // t1 is still assigned, t2 no longer.
    second.reconcile(vec![awsvpc("t1", "RUNNING")]).await.unwrap();
    until("t1 re-reported RUNNING", || {
        rec.statuses(&arn("t1")).iter().filter(|s| *s == "RUNNING").count() == 2
    })
    .await;
    until("t2's holder and container removed", || holder("t2").is_none() && rt.spec("ecs-web-t2").is_none())
        .await;
    assert_eq!(holder("t1").map(|c| c.id), Some(h1.id.clone()), "t1 keeps its holder");
    assert!(!second.free_holders().contains(&h1.id), "a task's holder never joins the pool");
    second.fill_holders().await;
    let pool = pool_labelled(&rt);
    assert_eq!(pool.len(), 3, "two ready and t1's: {pool:?}");
    assert_eq!(free_members(&rt).len(), 2);

    // t1 stops: its holder goes with it; the ready ones stay.
    second.reconcile(vec![awsvpc("t1", "STOPPED")]).await.unwrap();
    until("t1 STOPPED", || rec.last(&arn("t1"), "STOPPED").is_some()).await;
    until("t1's holder removed", || holder("t1").is_none()).await;
    assert_eq!(free_members(&rt).len(), 2);
}
