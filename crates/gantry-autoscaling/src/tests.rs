//! The operations and the group controller against a real in-memory store, on a fixed clock,
//! with a launcher that records its calls.

use super::*;
use gantry_core::{FixedClock, SeededIds, Timestamp};
use gantry_ports::autoscaling::{CapacityGroups, HostSpec, PortFuture};
use gantry_store::SqliteStore;
use serde_json::{Value, json};
use std::sync::Mutex;

#[derive(Default)]
struct FakeLauncher {
    launched: Mutex<Vec<HostSpec>>,
    terminated: Mutex<Vec<String>>,
    fail: Mutex<Option<String>>,
}

impl Launcher for FakeLauncher {
    fn launch<'a>(&'a self, spec: &'a HostSpec) -> PortFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if let Some(m) = self.fail.lock().unwrap().clone() {
                return Err(m);
            }
            self.launched.lock().unwrap().push(spec.clone());
            Ok(())
        })
    }
    fn terminate<'a>(&'a self, spec: &'a HostSpec) -> PortFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.terminated.lock().unwrap().push(spec.instance_id.clone());
            Ok(())
        })
    }
}

struct Fixture {
    asg: Arc<AutoScaling>,
    launcher: Arc<FakeLauncher>,
    clock: Arc<FixedClock>,
    scope: Scope,
}

fn fixture() -> Fixture {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
    let clock = Arc::new(FixedClock::new(Timestamp(1_800_000_000_000)));
    let launcher = Arc::new(FakeLauncher::default());
    let asg = AutoScaling::new(store, clock.clone(), Arc::new(SeededIds::new(7)), launcher.clone());
    Fixture { asg: Arc::new(asg), launcher, clock, scope: Scope::new("123456789012", "us-east-1") }
}

impl Fixture {
    async fn call(&self, op: &str, input: Value) -> Result<Value, ServiceError> {
        let out = self.asg.call(&self.scope, op, &serde_json::to_vec(&input).unwrap()).await?;
        Ok(serde_json::from_slice(&out).unwrap())
    }
    async fn ok(&self, op: &str, input: Value) -> Value {
        self.call(op, input).await.unwrap_or_else(|e| panic!("{op}: {e:?}"))
    }
    async fn err(&self, op: &str, input: Value) -> ServiceError {
        self.call(op, input).await.expect_err(op)
    }
    async fn group(&self, name: &str, min: i32, max: i32, desired: i32) {
        // "#!/bin/bash\necho ECS_CLUSTER=prod >> /etc/ecs/ecs.config", base64 as EC2 takes it.
        let user_data = "IyEvYmluL2Jhc2gKZWNobyBFQ1NfQ0xVU1RFUj1wcm9kID4+IC9ldGMvZWNzL2Vjcy5jb25maWc=";
        if self
            .call("DescribeLaunchConfigurations", json!({"LaunchConfigurationNames": ["lc"]}))
            .await
            .unwrap()["LaunchConfigurations"]
            .as_array()
            .unwrap()
            .is_empty()
        {
            self.ok(
                "CreateLaunchConfiguration",
                json!({"LaunchConfigurationName": "lc", "ImageId": "gantry-sim", "InstanceType": "t3.medium", "UserData": user_data}),
            )
            .await;
        }
        self.ok(
            "CreateAutoScalingGroup",
            json!({"AutoScalingGroupName": name, "LaunchConfigurationName": "lc", "MinSize": min, "MaxSize": max,
                   "DesiredCapacity": desired, "AvailabilityZones": ["us-east-1a", "us-east-1b"]}),
        )
        .await;
    }
    async fn pass(&self, name: &str) -> controller::PassReport {
        self.asg.controller().pass(&self.scope, name).await.unwrap().0
    }
    async fn describe(&self, name: &str) -> Value {
        self.ok("DescribeAutoScalingGroups", json!({"AutoScalingGroupNames": [name]})).await["AutoScalingGroups"][0].clone()
    }
    async fn states(&self, name: &str) -> Vec<String> {
        let g = self.describe(name).await;
        g["Instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["LifecycleState"].as_str().unwrap().to_string())
            .collect()
    }
}

#[tokio::test]
async fn a_group_launches_its_desired_capacity_with_activities() {
    let f = fixture();
    f.group("web", 0, 4, 2).await;
    assert_eq!(f.states("web").await, Vec::<String>::new(), "nothing until the controller runs");
    let report = f.pass("web").await;
    assert_eq!(report.launched.len(), 2);
    assert_eq!(f.states("web").await, vec!["InService", "InService"]);
    let launched = f.launcher.launched.lock().unwrap().clone();
    for spec in &launched {
        assert!(spec.instance_id.starts_with("i-") && spec.instance_id.len() == 19, "{}", spec.instance_id);
        assert!(spec.instance_id[2..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(spec.cluster, "prod", "ECS_CLUSTER from the user data");
        assert_eq!(spec.image_id, "gantry-sim");
        assert_eq!(spec.instance_type, "t3.medium");
    }
    let zones: std::collections::BTreeSet<_> = launched.iter().map(|s| s.availability_zone.clone()).collect();
    assert_eq!(zones.len(), 2, "spread over the zones");
    let acts = f.ok("DescribeScalingActivities", json!({"AutoScalingGroupName": "web"})).await;
    let acts = acts["Activities"].as_array().unwrap();
    assert_eq!(acts.len(), 2);
    for a in acts {
        assert_eq!(a["StatusCode"], "Successful");
        assert_eq!(a["Progress"], 100);
        assert!(a["Description"].as_str().unwrap().starts_with("Launching a new EC2 instance: i-"));
        let cause = a["Cause"].as_str().unwrap();
        assert!(
            cause.contains(
                "a user request created an AutoScalingGroup changing the desired capacity from 0 to 2"
            ),
            "{cause}"
        );
        assert!(cause.contains("increasing the capacity from 0 to 2"), "{cause}");
    }
    // A second pass has nothing to do.
    assert_eq!(f.pass("web").await, controller::PassReport::default());
    let inst = f.ok("DescribeAutoScalingInstances", json!({})).await;
    assert_eq!(inst["AutoScalingInstances"].as_array().unwrap().len(), 2);
    assert_eq!(inst["AutoScalingInstances"][0]["LifecycleState"], "INSERVICE");
}

#[tokio::test]
async fn the_errors_auto_scaling_answers() {
    let f = fixture();
    f.group("web", 1, 2, 1).await;
    let e = f
        .err(
            "CreateLaunchConfiguration",
            json!({"LaunchConfigurationName": "lc", "ImageId": "gantry-sim", "InstanceType": "t3.medium"}),
        )
        .await;
    assert_eq!(e.code, "AlreadyExistsFault");
    assert!(e.message.contains("lc"), "{}", e.message);
    let e = f.err("CreateAutoScalingGroup", json!({"AutoScalingGroupName": "web", "LaunchConfigurationName": "lc", "MinSize": 0, "MaxSize": 1, "AvailabilityZones": ["a"]})).await;
    assert_eq!(e.code, "AlreadyExistsFault");
    let e = f.err("CreateAutoScalingGroup", json!({"AutoScalingGroupName": "x", "LaunchConfigurationName": "nope", "MinSize": 0, "MaxSize": 1, "AvailabilityZones": ["a"]})).await;
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("ValidationError", "Launch configuration name not found - Launch configuration nope not found")
    );
    let e = f.err("CreateAutoScalingGroup", json!({"AutoScalingGroupName": "x", "LaunchConfigurationName": "lc", "MinSize": 0, "MaxSize": 1, "DesiredCapacity": 5, "AvailabilityZones": ["a"]})).await;
    assert_eq!(e.message, "Desired capacity:5 must be between the specified min size:0 and max size:1");
    let e = f
        .err(
            "CreateAutoScalingGroup",
            json!({"AutoScalingGroupName": "x", "LaunchConfigurationName": "lc", "MinSize": 0, "MaxSize": 1}),
        )
        .await;
    assert_eq!(e.message, "At least one Availability Zone or VPC Subnet is required.");
    let e = f.err("SetDesiredCapacity", json!({"AutoScalingGroupName": "web", "DesiredCapacity": 3})).await;
    assert_eq!(e.message, "New SetDesiredCapacity value 3 is above max value 2 for the AutoScalingGroup.");
    let e = f.err("SetDesiredCapacity", json!({"AutoScalingGroupName": "nope", "DesiredCapacity": 1})).await;
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("ValidationError", "AutoScalingGroup name not found - AutoScalingGroup 'nope' not found")
    );
    let e = f.err("DeleteLaunchConfiguration", json!({"LaunchConfigurationName": "lc"})).await;
    assert_eq!(e.code, "ResourceInUseFault");
    assert_eq!(
        e.message,
        "Cannot delete launch configuration lc because it is attached to AutoScalingGroup web"
    );
    f.pass("web").await;
    let e = f.err("DeleteAutoScalingGroup", json!({"AutoScalingGroupName": "web"})).await;
    assert_eq!(e.code, "ResourceInUseFault");
    let e = f.err("SetInstanceProtection", json!({"AutoScalingGroupName": "web", "InstanceIds": ["i-00000000000000000"], "ProtectedFromScaleIn": true})).await;
    assert_eq!(e.message, "The instance i-00000000000000000 is not part of Auto Scaling group web.");
    let e = f
        .err(
            "TerminateInstanceInAutoScalingGroup",
            json!({"InstanceId": "i-00000000000000000", "ShouldDecrementDesiredCapacity": false}),
        )
        .await;
    assert_eq!(
        e.message,
        "Instance Id not found - No managed instance found for instance ID: i-00000000000000000"
    );
    let e = f
        .err(
            "CreateAutoScalingGroup",
            json!({"AutoScalingGroupName": "x", "MinSize": 0, "MaxSize": 1, "AvailabilityZones": ["a"]}),
        )
        .await;
    assert_eq!(e.code, "ValidationError");
    let e = f.err("DescribeAutoScalingGroups", json!({"MaxRecords": 101})).await;
    assert_eq!(e.code, "ValidationError");
    let e = f.err("NoSuchThing", json!({})).await;
    assert_eq!(e.code, "InvalidAction");
    // ForceDelete: the instances go, then the group.
    f.ok("DeleteAutoScalingGroup", json!({"AutoScalingGroupName": "web", "ForceDelete": true})).await;
    assert_eq!(f.describe("web").await["Status"], "Delete in progress");
    let report = f.pass("web").await;
    assert_eq!(report.terminated.len(), 1);
    let out = f.ok("DescribeAutoScalingGroups", json!({"AutoScalingGroupNames": ["web"]})).await;
    assert!(out["AutoScalingGroups"].as_array().unwrap().is_empty());
    f.ok("DeleteLaunchConfiguration", json!({"LaunchConfigurationName": "lc"})).await;
}

#[tokio::test]
async fn scale_in_spares_protected_instances_and_waits_on_termination_hooks() {
    let f = fixture();
    f.group("web", 0, 4, 3).await;
    f.pass("web").await;
    let ids: Vec<String> = f.describe("web").await["Instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["InstanceId"].as_str().unwrap().to_string())
        .collect();
    f.ok(
        "SetInstanceProtection",
        json!({"AutoScalingGroupName": "web", "InstanceIds": [ids[0], ids[1]], "ProtectedFromScaleIn": true}),
    )
    .await;
    f.ok("PutLifecycleHook", json!({"AutoScalingGroupName": "web", "LifecycleHookName": "drain",
        "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING", "HeartbeatTimeout": 60, "DefaultResult": "CONTINUE"})).await;
    f.ok("SetDesiredCapacity", json!({"AutoScalingGroupName": "web", "DesiredCapacity": 0})).await;
    f.pass("web").await;
    // Only the unprotected one goes, and it waits on the hook.
    let g = f.describe("web").await;
    let state = |id: &str| {
        g["Instances"].as_array().unwrap().iter().find(|i| i["InstanceId"] == id).unwrap()["LifecycleState"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(state(&ids[0]), "InService");
    assert_eq!(state(&ids[1]), "InService");
    assert_eq!(state(&ids[2]), "Terminating:Wait");
    assert!(f.launcher.terminated.lock().unwrap().is_empty());
    let e = f
        .err(
            "CompleteLifecycleAction",
            json!({"AutoScalingGroupName": "web", "LifecycleHookName": "drain",
        "InstanceId": ids[0], "LifecycleActionResult": "CONTINUE"}),
        )
        .await;
    assert_eq!(e.message, format!("No active Lifecycle Action found with instance ID {}", ids[0]));
    f.ok(
        "CompleteLifecycleAction",
        json!({"AutoScalingGroupName": "web", "LifecycleHookName": "drain",
        "InstanceId": ids[2], "LifecycleActionResult": "CONTINUE"}),
    )
    .await;
    f.pass("web").await;
    assert_eq!(*f.launcher.terminated.lock().unwrap(), vec![ids[2].clone()]);
    assert_eq!(f.states("web").await, vec!["InService", "InService"]);
    // Unprotected, one goes on the hook's deadline (its DefaultResult) without any completion.
    f.clock.advance_ms(1_000);
    f.ok(
        "SetInstanceProtection",
        json!({"AutoScalingGroupName": "web", "InstanceIds": [ids[1]], "ProtectedFromScaleIn": false}),
    )
    .await;
    f.pass("web").await;
    assert_eq!(f.states("web").await, vec!["InService", "Terminating:Wait"]);
    f.clock.advance_ms(59_000);
    f.pass("web").await;
    assert_eq!(f.launcher.terminated.lock().unwrap().len(), 1, "not before the heartbeat timeout");
    f.clock.advance_ms(1_000);
    f.pass("web").await;
    assert_eq!(f.launcher.terminated.lock().unwrap().len(), 2);
    assert_eq!(f.states("web").await, vec!["InService"]);
    let acts =
        f.ok("DescribeScalingActivities", json!({"AutoScalingGroupName": "web", "MaxRecords": 1})).await;
    assert!(acts["Activities"][0]["Description"].as_str().unwrap().starts_with("Terminating EC2 instance: "));
    assert!(acts["NextToken"].is_string(), "paginated");
}

#[tokio::test]
async fn a_failed_launch_is_a_failed_activity_and_is_tried_again_later() {
    let f = fixture();
    *f.launcher.fail.lock().unwrap() = Some("No launcher serves ImageId 'ami-123'.".into());
    f.group("web", 0, 2, 1).await;
    let report = f.pass("web").await;
    assert_eq!(report.failed.len(), 1);
    assert!(f.states("web").await.is_empty());
    let acts = f.ok("DescribeScalingActivities", json!({"AutoScalingGroupName": "web"})).await;
    assert_eq!(acts["Activities"][0]["StatusCode"], "Failed");
    assert_eq!(acts["Activities"][0]["StatusMessage"], "No launcher serves ImageId 'ami-123'.");
    *f.launcher.fail.lock().unwrap() = None;
    assert_eq!(f.pass("web").await, controller::PassReport::default(), "not before the retry delay");
    f.clock.advance_ms(controller::LAUNCH_RETRY_MS);
    assert_eq!(f.pass("web").await.launched.len(), 1);
}

#[tokio::test]
async fn tags_and_the_capacity_port() {
    let f = fixture();
    f.group("web", 0, 5, 0).await;
    f.ok("CreateOrUpdateTags", json!({"Tags": [
        {"ResourceId": "web", "ResourceType": "auto-scaling-group", "Key": "AmazonECSManaged", "Value": "", "PropagateAtLaunch": true},
        {"ResourceId": "web", "ResourceType": "auto-scaling-group", "Key": "team", "Value": "a"}]})).await;
    let tags =
        f.ok("DescribeTags", json!({"Filters": [{"Name": "key", "Values": ["AmazonECSManaged"]}]})).await;
    assert_eq!(tags["Tags"].as_array().unwrap().len(), 1);
    assert_eq!(tags["Tags"][0]["PropagateAtLaunch"], true);
    let g =
        f.ok("DescribeAutoScalingGroups", json!({"Filters": [{"Name": "tag:team", "Values": ["a"]}]})).await;
    assert_eq!(g["AutoScalingGroups"].as_array().unwrap().len(), 1);
    f.ok("DeleteTags", json!({"Tags": [{"ResourceId": "web", "Key": "team"}]})).await;
    assert_eq!(f.describe("web").await["Tags"].as_array().unwrap().len(), 1);
    // What ECS's capacity providers do through the port.
    let arn = f.describe("web").await["AutoScalingGroupARN"].as_str().unwrap().to_string();
    let view = f.asg.group("123456789012", "us-east-1", &arn).unwrap();
    assert_eq!((view.name.as_str(), view.max_size, view.instance_type.as_str()), ("web", 5, "t3.medium"));
    CapacityGroups::set_desired(f.asg.as_ref(), "123456789012", "us-east-1", &arn, 2, "a test")
        .await
        .unwrap();
    f.asg
        .put_termination_hook("123456789012", "us-east-1", &arn, "ecs-managed-draining-termination-hook")
        .await
        .unwrap();
    f.pass("web").await;
    let view = f.asg.group("123456789012", "us-east-1", "web").unwrap();
    assert_eq!(view.instances.len(), 2);
    assert_eq!(view.termination_hooks, vec!["ecs-managed-draining-termination-hook"]);
    assert_eq!(f.asg.scopes(), vec![("123456789012".to_string(), "us-east-1".to_string())]);
    let ids: Vec<String> = view.instances.iter().map(|i| i.instance_id.clone()).collect();
    f.asg.protect("123456789012", "us-east-1", "web", &ids, true).await.unwrap();
    assert!(
        f.asg
            .group("123456789012", "us-east-1", "web")
            .unwrap()
            .instances
            .iter()
            .all(|i| i.protected_from_scale_in)
    );
    let acts = f.ok("DescribeScalingActivities", json!({"AutoScalingGroupName": "web"})).await;
    assert!(
        acts["Activities"][0]["Cause"]
            .as_str()
            .unwrap()
            .contains("a test changing the desired capacity from 0 to 2")
    );
}

#[tokio::test]
async fn the_capacity_port_replaces_an_instance_keeping_the_desired_capacity() {
    let f = fixture();
    f.group("web", 0, 5, 2).await;
    f.pass("web").await;
    f.asg
        .put_termination_hook("123456789012", "us-east-1", "web", "ecs-managed-draining-termination-hook")
        .await
        .unwrap();
    let view = f.asg.group("123456789012", "us-east-1", "web").unwrap();
    let old = view.instances[0].instance_id.clone();
    let replace = |id: String| {
        let asg = f.asg.clone();
        async move {
            asg.replace_instance("123456789012", "us-east-1", "web", &id, "ECS daemon auto repair").await
        }
    };
    replace(old.clone()).await.unwrap();
    // Asked again while it terminates, or once it is gone: what was asked is under way.
    replace(old.clone()).await.unwrap();
    let g = f.describe("web").await;
    assert_eq!(g["DesiredCapacity"], 2);
    let state = |g: &Value, id: &str| {
        g["Instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["InstanceId"] == id)
            .map(|i| i["LifecycleState"].clone())
    };
    assert_eq!(state(&g, &old), Some(json!("Terminating:Wait")), "it waits on the hook: {g}");
    let acts = f.ok("DescribeScalingActivities", json!({"AutoScalingGroupName": "web"})).await;
    let causes: Vec<&str> =
        acts["Activities"].as_array().unwrap().iter().filter_map(|a| a["Cause"].as_str()).collect();
    let cause = causes.iter().find(|c| c.contains("daemon auto repair")).copied().unwrap_or_default();
    assert!(
        cause.ends_with(&format!(
            "instance {old} was taken out of service in response to ECS daemon auto repair."
        )),
        "{cause}"
    );
    // The group launches the replacement at once; the old one goes once the hook completes.
    f.pass("web").await;
    let live = |g: &Value| {
        g["Instances"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["LifecycleState"] != "Terminating:Wait")
            .count()
    };
    assert_eq!(live(&f.describe("web").await), 2);
    f.asg
        .complete("123456789012", "us-east-1", "web", "ecs-managed-draining-termination-hook", &old)
        .await
        .unwrap();
    f.pass("web").await;
    f.pass("web").await;
    let g = f.describe("web").await;
    assert_eq!(state(&g, &old), None, "{g}");
    assert_eq!((g["DesiredCapacity"].clone(), g["Instances"].as_array().unwrap().len()), (json!(2), 2));
    replace(old).await.unwrap();
    assert_eq!(f.describe("web").await["Instances"].as_array().unwrap().len(), 2);
}

#[test]
fn the_cluster_comes_from_the_user_data() {
    assert_eq!(controller::cluster_of("").0, "default");
    assert_eq!(controller::cluster_of("ECS_CLUSTER=plain").0, "plain");
    // "echo \"ECS_CLUSTER=quoted\" >> /etc/ecs/ecs.config" in base64.
    assert_eq!(
        controller::cluster_of("ZWNobyAiRUNTX0NMVVNURVI9cXVvdGVkIiA+PiAvZXRjL2Vjcy9lY3MuY29uZmln").0,
        "quoted"
    );
}

#[tokio::test]
async fn every_groups_activities_page_newest_first_without_losing_any() {
    let f = fixture();
    // b's first launch, then a's, then b's second: newest first, the groups interleave.
    f.group("b", 0, 2, 1).await;
    f.pass("b").await;
    f.clock.advance_ms(1_000);
    f.group("a", 0, 2, 1).await;
    f.pass("a").await;
    f.clock.advance_ms(1_000);
    f.ok("SetDesiredCapacity", json!({"AutoScalingGroupName": "b", "DesiredCapacity": 2})).await;
    f.pass("b").await;
    let all = f.ok("DescribeScalingActivities", json!({})).await["Activities"].as_array().unwrap().clone();
    let groups: Vec<&str> = all.iter().map(|a| a["AutoScalingGroupName"].as_str().unwrap()).collect();
    assert_eq!(groups, ["b", "a", "b"], "newest first across groups");
    let mut paged = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut input = json!({"MaxRecords": 1});
        if let Some(t) = &token {
            input["NextToken"] = json!(t);
        }
        let page = f.ok("DescribeScalingActivities", input).await;
        paged.extend(page["Activities"].as_array().unwrap().iter().cloned());
        match page["NextToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(paged, all, "one at a time, the same activities in the same order");
}
