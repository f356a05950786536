//! The operations against a real in-memory store, on a fixed clock: what the record layer
//! writes, concurrent writers, draining by the clock, the activator and the data plane's
//! configuration.

use super::*;
use gantry_core::{FixedClock, SeededIds, Timestamp};
use gantry_ports::lb::{self, NoCertificates, NoHealthChecks, ObservedHealth, TargetReason, TargetState};
use gantry_store::SqliteStore;
use serde_json::{Value, json};

struct Fixture {
    elb: Arc<Elbv2>,
    store: Arc<dyn Store>,
    clock: Arc<FixedClock>,
    scope: Scope,
}

fn fixture_with(health: Arc<dyn TargetHealthSource>) -> Fixture {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
    let clock = Arc::new(FixedClock::new(Timestamp(1_800_000_000_000)));
    let elb = Elbv2::new(
        store.clone(),
        clock.clone(),
        Arc::new(SeededIds::new(7)),
        health,
        Arc::new(NoCertificates),
    );
    Fixture { elb: Arc::new(elb), store, clock, scope: Scope::new("123456789012", "eu-west-1") }
}

fn fixture() -> Fixture {
    fixture_with(Arc::new(NoHealthChecks))
}

impl Fixture {
    async fn call(&self, op: &str, input: Value) -> Result<Value, ServiceError> {
        let out = self.elb.call(&self.scope, op, &serde_json::to_vec(&input).unwrap()).await?;
        Ok(serde_json::from_slice(&out).unwrap())
    }

    async fn ok(&self, op: &str, input: Value) -> Value {
        self.call(op, input).await.unwrap_or_else(|e| panic!("{op}: {e}"))
    }

    async fn lb(&self, name: &str) -> String {
        let out = self.ok("CreateLoadBalancer", json!({"Name": name})).await;
        out["LoadBalancers"][0]["LoadBalancerArn"].as_str().unwrap().to_string()
    }

    async fn tg(&self, name: &str) -> String {
        let out = self
            .ok(
                "CreateTargetGroup",
                json!({"Name": name, "Protocol": "HTTP", "Port": 80, "TargetType": "ip"}),
            )
            .await;
        out["TargetGroups"][0]["TargetGroupArn"].as_str().unwrap().to_string()
    }

    async fn listener(&self, lb: &str, port: u16, tg: &str) -> Result<Value, ServiceError> {
        self.call(
            "CreateListener",
            json!({"LoadBalancerArn": lb, "Protocol": "HTTP", "Port": port,
                   "DefaultActions": [{"Type": "forward", "TargetGroupArn": tg}]}),
        )
        .await
    }

    fn keys(&self) -> Vec<String> {
        self.store.range("/", None, usize::MAX).into_iter().map(|kv| kv.key).collect()
    }
}

#[tokio::test]
async fn records_and_their_index_rows_are_written_together_and_removed_together() {
    let f = fixture();
    let lb = f.lb("web").await;
    let tg = f.tg("blue").await;
    f.listener(&lb, 80, &tg).await.unwrap();
    f.ok("RegisterTargets", json!({"TargetGroupArn": tg, "Targets": [{"Id": "10.0.0.1"}]})).await;
    let keys = f.keys();
    let base = "/123456789012/eu-west-1/elasticloadbalancing/";
    assert_eq!(
        keys,
        [
            format!("{base}lb/web"),
            format!("{base}target/blue/10.0.0.1!00080"),
            format!("{base}tg/blue"),
            "/_elasticloadbalancing/provisioning/123456789012/eu-west-1/web".to_string(),
            "/_elasticloadbalancing/resource/123456789012/eu-west-1/lb/web".to_string(),
            "/_elasticloadbalancing/resource/123456789012/eu-west-1/tg/blue".to_string(),
        ]
    );
    // The activator makes it active, and the provisioning row goes in the same write.
    let activator = activator::Activator::new(f.store.clone());
    let row = "/_elasticloadbalancing/provisioning/123456789012/eu-west-1/web";
    assert_eq!(gantry_runtime::Reconciler::list(&activator), [row.to_string()]);
    assert!(activator.activate(row).await.unwrap());
    assert!(!activator.activate(row).await.unwrap());
    assert!(f.store.get(row).is_none());
    let out = f.ok("DescribeLoadBalancers", json!({"Names": ["web"]})).await;
    assert_eq!(out["LoadBalancers"][0]["State"]["Code"], "active");
    // Deleting drops the record and its rows; the target group and its targets stay.
    let listener_err = f.call("DeleteTargetGroup", json!({"TargetGroupArn": tg})).await.unwrap_err();
    assert_eq!(listener_err.code, "ResourceInUse");
    f.ok("DeleteLoadBalancer", json!({"LoadBalancerArn": lb})).await;
    assert!(f.keys().iter().all(|k| !k.contains("/lb/web")), "{:?}", f.keys());
    f.ok("DeleteTargetGroup", json!({"TargetGroupArn": tg})).await;
    assert!(f.keys().is_empty(), "{:?}", f.keys());
}

#[tokio::test]
async fn concurrent_writers_never_share_a_port_or_a_priority() {
    let f = fixture();
    let lb = f.lb("web").await;
    let tg = f.tg("blue").await;
    let runs = (0..8).map(|_| {
        let (elb, scope, lb, tg) = (f.elb.clone(), f.scope.clone(), lb.clone(), tg.clone());
        tokio::spawn(async move {
            let input = json!({"LoadBalancerArn": lb, "Protocol": "HTTP", "Port": 80,
                               "DefaultActions": [{"Type": "forward", "TargetGroupArn": tg}]});
            elb.call(&scope, "CreateListener", &serde_json::to_vec(&input).unwrap()).await
        })
    });
    let results: Vec<_> = futures_join(runs).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|e| e.code == "DuplicateListener"));
    let listener = f.ok("DescribeListeners", json!({"LoadBalancerArn": lb})).await;
    assert_eq!(listener["Listeners"].as_array().unwrap().len(), 1);
    let larn = listener["Listeners"][0]["ListenerArn"].as_str().unwrap().to_string();
    let runs = (0..8).map(|i| {
        let (elb, scope, larn, tg) = (f.elb.clone(), f.scope.clone(), larn.clone(), tg.clone());
        tokio::spawn(async move {
            let input = json!({"ListenerArn": larn, "Priority": 5,
                               "Conditions": [{"Field": "path-pattern", "Values": [format!("/{i}")]}],
                               "Actions": [{"Type": "forward", "TargetGroupArn": tg}]});
            elb.call(&scope, "CreateRule", &serde_json::to_vec(&input).unwrap()).await
        })
    });
    let results: Vec<_> = futures_join(runs).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|e| e.code == "PriorityInUse"));
}

async fn futures_join<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn a_deregistered_target_drains_until_the_delay_has_passed_on_the_clock() {
    let f = fixture();
    let lb = f.lb("web").await;
    let tg = f.tg("blue").await;
    f.listener(&lb, 80, &tg).await.unwrap();
    f.ok(
        "ModifyTargetGroupAttributes",
        json!({"TargetGroupArn": tg, "Attributes": [{"Key": "deregistration_delay.timeout_seconds", "Value": "30"}]}),
    )
    .await;
    f.ok(
        "RegisterTargets",
        json!({"TargetGroupArn": tg, "Targets": [{"Id": "10.0.0.1"}, {"Id": "10.0.0.2"}]}),
    )
    .await;
    f.ok("DeregisterTargets", json!({"TargetGroupArn": tg, "Targets": [{"Id": "10.0.0.1"}]})).await;
    let state = |out: &Value, id: &str| -> (String, String) {
        let d = out["TargetHealthDescriptions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["Target"]["Id"] == id)
            .cloned();
        d.map(|d| {
            (
                d["TargetHealth"]["State"].as_str().unwrap().to_string(),
                d["TargetHealth"]["Reason"].as_str().unwrap().to_string(),
            )
        })
        .unwrap_or_default()
    };
    let out = f.ok("DescribeTargetHealth", json!({"TargetGroupArn": tg})).await;
    assert_eq!(state(&out, "10.0.0.1"), ("draining".into(), "Target.DeregistrationInProgress".into()));
    assert_eq!(state(&out, "10.0.0.2"), ("initial".into(), "Elb.RegistrationInProgress".into()));
    // The data plane's configuration carries the deadline.
    let config = config::build(f.store.as_ref(), &NoCertificates, &gantry_ports::lb::NoInstances).unwrap();
    let t = &config.target_groups[0].targets[0];
    assert_eq!(
        t.draining,
        Some(lb::Draining { since_ms: 1_800_000_000_000, deadline_ms: 1_800_000_030_000 })
    );
    f.clock.advance_ms(29_999);
    let out = f.ok("DescribeTargetHealth", json!({"TargetGroupArn": tg})).await;
    assert_eq!(state(&out, "10.0.0.1").0, "draining");
    f.clock.advance_ms(1);
    let out =
        f.ok("DescribeTargetHealth", json!({"TargetGroupArn": tg, "Targets": [{"Id": "10.0.0.1"}]})).await;
    assert_eq!(state(&out, "10.0.0.1"), ("unused".into(), "Target.NotRegistered".into()));
    // The next write to the group's targets removes the record.
    assert_eq!(f.keys().iter().filter(|k| k.contains("/target/")).count(), 2);
    f.ok("RegisterTargets", json!({"TargetGroupArn": tg, "Targets": [{"Id": "10.0.0.3"}]})).await;
    let targets: Vec<String> = f.keys().into_iter().filter(|k| k.contains("/target/")).collect();
    assert_eq!(targets.len(), 2, "{targets:?}");
    assert!(!targets.iter().any(|k| k.contains("10.0.0.1")));
    // The drainer ends draining at the deadline: record and index row go together.
    f.ok("DeregisterTargets", json!({"TargetGroupArn": tg, "Targets": [{"Id": "10.0.0.3"}]})).await;
    let row = "/_elasticloadbalancing/draining/123456789012/eu-west-1/blue/10.0.0.3!00080";
    let drainer = f.elb.drainer();
    assert_eq!(gantry_runtime::Reconciler::list(&drainer), [row.to_string()]);
    assert_eq!(drainer.drain(row).await.unwrap(), Some(drainer::POLL));
    f.clock.advance_ms(29_500);
    assert_eq!(drainer.drain(row).await.unwrap(), Some(std::time::Duration::from_millis(500)));
    f.clock.advance_ms(500);
    assert_eq!(drainer.drain(row).await.unwrap(), None);
    assert!(!f.keys().iter().any(|k| k.contains("10.0.0.3")), "{:?}", f.keys());
    // Registering a draining target again makes it a new registration.
    f.ok("DeregisterTargets", json!({"TargetGroupArn": tg, "Targets": [{"Id": "10.0.0.2"}]})).await;
    f.ok("RegisterTargets", json!({"TargetGroupArn": tg, "Targets": [{"Id": "10.0.0.2"}]})).await;
    let out =
        f.ok("DescribeTargetHealth", json!({"TargetGroupArn": tg, "Targets": [{"Id": "10.0.0.2"}]})).await;
    assert_eq!(state(&out, "10.0.0.2").0, "initial");
}

/// A data plane that has checked every target and found it healthy, and has nothing in flight.
struct AllHealthy;

impl TargetHealthSource for AllHealthy {
    fn health(&self, _: &str, _: &str, _: u16) -> Option<ObservedHealth> {
        Some(ObservedHealth { state: TargetState::Healthy, reason: None, description: None })
    }
    fn drained(&self, _: &str, _: &str, _: u16) -> bool {
        true
    }
}

#[tokio::test]
async fn the_data_planes_health_is_what_describe_target_health_reports() {
    let f = fixture_with(Arc::new(AllHealthy));
    let lb = f.lb("web").await;
    let tg = f.tg("blue").await;
    f.listener(&lb, 80, &tg).await.unwrap();
    f.ok("RegisterTargets", json!({"TargetGroupArn": tg, "Targets": [{"Id": "10.0.0.1"}]})).await;
    let out = f.ok("DescribeTargetHealth", json!({"TargetGroupArn": tg})).await;
    assert_eq!(out["TargetHealthDescriptions"][0]["TargetHealth"], json!({"State": "healthy"}));
    // Nothing in flight: draining ends at once, whatever the delay.
    f.ok("DeregisterTargets", json!({"TargetGroupArn": tg, "Targets": [{"Id": "10.0.0.1"}]})).await;
    let out = f.ok("DescribeTargetHealth", json!({"TargetGroupArn": tg})).await;
    assert_eq!(out["TargetHealthDescriptions"], json!([]));
    assert_eq!(TargetReason::TargetNotInUse.as_str(), "Target.NotInUse");
}

#[tokio::test]
async fn the_configuration_is_what_the_records_say_and_the_feed_follows_them() {
    let f = fixture();
    let (feed, mut rx) = config::ConfigFeed::new(
        f.store.clone(),
        Arc::new(NoCertificates),
        Arc::new(gantry_ports::lb::NoInstances),
    );
    let (stop, shutdown) = gantry_runtime::shutdown();
    let task = tokio::spawn(feed.run(shutdown));
    let lb = f.lb("web").await;
    let blue = f.tg("blue").await;
    let green = f.tg("green").await;
    let l = f.listener(&lb, 8080, &blue).await.unwrap();
    let larn = l["Listeners"][0]["ListenerArn"].as_str().unwrap().to_string();
    f.ok(
        "CreateRule",
        json!({"ListenerArn": larn, "Priority": 2,
               "Conditions": [{"Field": "host-header", "Values": ["*.example.com"]},
                              {"Field": "source-ip", "SourceIpConfig": {"Values": ["10.0.0.0/8"]}}],
               "Actions": [{"Type": "forward", "ForwardConfig": {"TargetGroups": [
                   {"TargetGroupArn": blue, "Weight": 80}, {"TargetGroupArn": green, "Weight": 20}],
                   "TargetGroupStickinessConfig": {"Enabled": true, "DurationSeconds": 60}}}]}),
    )
    .await;
    f.ok(
        "CreateRule",
        json!({"ListenerArn": larn, "Priority": 1,
               "Conditions": [{"Field": "path-pattern", "Values": ["/old/*"]}],
               "Actions": [{"Type": "redirect", "RedirectConfig": {"Path": "/new/#{path}", "StatusCode": "HTTP_302"}}]}),
    )
    .await;
    f.ok("RegisterTargets", json!({"TargetGroupArn": green, "Targets": [{"Id": "10.1.2.3", "Port": 9000}]}))
        .await;
    let revision = f.store.revision();
    let config = rx.wait_for(|c| c.revision >= revision).await.unwrap().clone();
    assert_eq!(config.load_balancers.len(), 1);
    let l = &config.load_balancers[0].listeners[0];
    assert_eq!((l.port, l.protocol), (8080, lb::ListenerProtocol::Http));
    let prios: Vec<Option<u32>> = l.rules.iter().map(|r| r.priority).collect();
    assert_eq!(prios, [Some(1), Some(2), None]);
    assert_eq!(
        l.rules[0].action,
        lb::Action::Redirect(lb::Redirect {
            protocol: "#{protocol}".into(),
            host: "#{host}".into(),
            port: "#{port}".into(),
            path: "/new/#{path}".into(),
            query: "#{query}".into(),
            status_code: 302,
        })
    );
    assert_eq!(
        l.rules[1].conditions,
        [
            lb::Condition::HostHeader(vec!["*.example.com".into()]),
            lb::Condition::SourceIp(vec![lb::Cidr { addr: "10.0.0.0".parse().unwrap(), prefix_len: 8 }]),
        ]
    );
    assert_eq!(
        l.rules[1].action,
        lb::Action::Forward(lb::Forward {
            target_groups: vec![
                lb::WeightedTargetGroup { arn: blue.clone(), weight: 80 },
                lb::WeightedTargetGroup { arn: green.clone(), weight: 20 },
            ],
            stickiness_seconds: Some(60),
        })
    );
    let g = config.target_groups.iter().find(|t| t.arn == green).unwrap();
    assert_eq!(g.load_balancer_arns, std::slice::from_ref(&lb));
    assert_eq!(g.targets[0].address, Some("10.1.2.3".parse().unwrap()));
    assert_eq!(g.targets[0].port, 9000);
    assert_eq!(g.health_check.path.as_deref(), Some("/"));
    assert_eq!(g.attributes.deregistration_delay_seconds, 300);
    assert_eq!(config.load_balancers[0].attributes.idle_timeout_seconds, 60);
    // A change to something else in the store does not publish a new configuration.
    f.store
        .txn(gantry_store::Txn::new().put("/123456789012/eu-west-1/ecs/cluster/x", b"{}".to_vec()))
        .await
        .unwrap();
    f.ok("DeleteLoadBalancer", json!({"LoadBalancerArn": lb})).await;
    let revision = f.store.revision();
    let config = rx.wait_for(|c| c.revision >= revision).await.unwrap().clone();
    assert!(config.load_balancers.is_empty());
    stop.trigger();
    task.await.unwrap();
}

#[tokio::test]
async fn missing_members_and_unknown_actions_are_the_query_protocols_errors() {
    let f = fixture();
    let e = f.call("CreateLoadBalancer", json!({})).await.unwrap_err();
    assert_eq!(e.code, "ValidationError");
    assert!(e.message.contains("'name'"), "{}", e.message);
    let e = f.call("Frobnicate", json!({})).await.unwrap_err();
    assert_eq!((e.code.as_str(), e.message.contains("Frobnicate")), ("InvalidAction", true));
}

#[tokio::test]
async fn ecs_registers_deregisters_and_reads_health_through_the_target_registry() {
    let f = fixture();
    let lb = f.lb("web").await;
    let tg = f.tg("svc").await;
    f.listener(&lb, 80, &tg).await.unwrap();
    f.ok(
        "ModifyTargetGroupAttributes",
        json!({"TargetGroupArn": tg,
        "Attributes": [{"Key": "deregistration_delay.timeout_seconds", "Value": "5"}]}),
    )
    .await;
    let reg: &dyn TargetRegistry = f.elb.as_ref();
    let target = lb::TargetRef { id: "10.0.3.7".into(), port: 8080 };
    assert_eq!(reg.health(&f.scope, &tg, &target), None, "not registered");
    reg.register(&f.scope, &tg, std::slice::from_ref(&target)).await.unwrap();
    // Registering again changes nothing.
    reg.register(&f.scope, &tg, std::slice::from_ref(&target)).await.unwrap();
    let h = reg.health(&f.scope, &tg, &target).unwrap();
    assert_eq!((h.state, h.reason), (TargetState::Initial, Some(TargetReason::ElbRegistrationInProgress)));
    let out = f.ok("DescribeTargetHealth", json!({"TargetGroupArn": tg})).await;
    assert_eq!(out["TargetHealthDescriptions"][0]["Target"], json!({"Id": "10.0.3.7", "Port": 8080}));
    // ELB's own errors come back as its message.
    let e =
        reg.register(&f.scope, &tg, &[lb::TargetRef { id: "not-an-ip".into(), port: 80 }]).await.unwrap_err();
    assert!(e.contains("not-an-ip"), "{e}");
    reg.deregister(&f.scope, &tg, std::slice::from_ref(&target)).await.unwrap();
    let h = reg.health(&f.scope, &tg, &target).unwrap();
    assert_eq!(
        (h.state, h.reason),
        (TargetState::Draining, Some(TargetReason::TargetDeregistrationInProgress))
    );
    // The deregistration delay passes: gone.
    f.clock.advance_ms(5_000);
    assert_eq!(reg.health(&f.scope, &tg, &target), None);
    // Deregistering what is gone is no error.
    reg.deregister(&f.scope, &tg, std::slice::from_ref(&target)).await.unwrap();
    let missing = tg.replace("/svc/", "/nope/");
    assert!(reg.register(&f.scope, &missing, std::slice::from_ref(&target)).await.is_err());
    assert_eq!(reg.health(&f.scope, &missing, &target), None);
}

/// Container instances' host addresses, as ECS would answer.
struct Hosts(std::collections::HashMap<String, std::net::IpAddr>);

impl gantry_ports::lb::InstanceAddresses for Hosts {
    fn addresses(&self, _scope: &Scope) -> std::collections::HashMap<String, std::net::IpAddr> {
        self.0.clone()
    }
    fn affects(&self, key: &str) -> bool {
        key.contains("/container-instance/")
    }
}

#[tokio::test]
async fn instance_targets_are_reached_at_their_instances_host_address() {
    let f = fixture();
    let lb = f.lb("web").await;
    let tg = f
        .ok(
            "CreateTargetGroup",
            json!({"Name": "inst", "Protocol": "HTTP", "Port": 80, "VpcId": "vpc-1", "TargetType": "instance"}),
        )
        .await["TargetGroups"][0]["TargetGroupArn"]
        .as_str()
        .unwrap()
        .to_string();
    f.listener(&lb, 80, &tg).await.unwrap();
    f.ok(
        "RegisterTargets",
        json!({"TargetGroupArn": tg, "Targets": [{"Id": "i-0a", "Port": 32768}, {"Id": "i-0b", "Port": 32769}]}),
    )
    .await;
    let hosts = Hosts([("i-0a".to_string(), "10.231.0.11".parse().unwrap())].into_iter().collect());
    let config = config::build(f.store.as_ref(), &NoCertificates, &hosts).unwrap();
    let g = &config.target_groups[0];
    let address = |id: &str| g.targets.iter().find(|t| t.id == id).unwrap().address;
    assert_eq!(address("i-0a"), Some("10.231.0.11".parse().unwrap()));
    assert_eq!(address("i-0b"), None, "an instance without an address is not reachable yet");
    let none = config::build(f.store.as_ref(), &NoCertificates, &gantry_ports::lb::NoInstances).unwrap();
    assert_eq!(none.target_groups[0].targets.iter().filter(|t| t.address.is_some()).count(), 0);
}
