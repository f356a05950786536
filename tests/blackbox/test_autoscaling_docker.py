"""Cluster auto scaling for real (issue 17, must-show 4): an Auto Scaling group of
`gantry-local` instances (real `gantry agent` processes running their tasks in Docker) behind a
capacity provider with managed scaling, managed termination protection and managed draining,
all driven by the AWS CLI v1, unmodified.

- The group starts at 0. CreateService with 4 tasks through the provider: the tasks wait in
  PROVISIONING on no instance, managed scaling sets the group's desired capacity, the group
  launches instances that join the cluster named in their user data, and the tasks run.
- One task is protected (UpdateTaskProtection) and the service scaled to 0: the instance that
  keeps the protected task stays protected from scale-in and is never terminated, while the
  empty one is drained (ECS's lifecycle hook) and terminated.
- Deleting the service scales the group in to 0, with draining.

The server runs with `--capacity-scale-in-delay 5s` (ECS waits 15 minutes of low reservation).
"""

from __future__ import annotations

import json

import pytest

from harness import GantryServer, busybox_container, wait_for


@pytest.fixture
def server(tmp_path, docker_run_id):
    s = GantryServer(tmp_path / "data", tmp_path / "server.log",
                     extra_args=("--capacity-scale-in-delay", "5s"))
    s.start()
    yield s
    # Hosts are children of the server: a group forced to 0 first, then the server stops them.
    s.aws("autoscaling", "delete-auto-scaling-group", "--auto-scaling-group-name", "cas",
          "--force-delete")
    try:
        wait_for(lambda: not s.aws("autoscaling", "describe-auto-scaling-groups",
                                   "--auto-scaling-group-names", "cas")[1]
                 .get("AutoScalingGroups"), 60, interval=0.5, what="the group gone")
    except TimeoutError:
        pass
    s.stop()


def group(s) -> dict:
    out = s.aws_ok("autoscaling", "describe-auto-scaling-groups", "--auto-scaling-group-names", "cas")
    return out["AutoScalingGroups"][0]


def tasks(s, cluster: str, service: str) -> list[dict]:
    arns = s.ecs.list_tasks(cluster=cluster, serviceName=service)["taskArns"]
    return s.ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"] if arns else []


def test_a_capacity_provider_grows_and_shrinks_its_group_of_local_instances(server, docker_run_id):
    s = server
    cluster = f"cas-{docker_run_id}"
    # The CLI base64-encodes the user data, as EC2 takes it.
    s.aws_ok("autoscaling", "create-launch-configuration", "--launch-configuration-name", "local",
             "--image-id", "gantry-local", "--instance-type", "t3.medium",
             "--user-data", f"#!/bin/bash\necho ECS_CLUSTER={cluster} >> /etc/ecs/ecs.config")
    s.aws_ok("autoscaling", "create-auto-scaling-group", "--auto-scaling-group-name", "cas",
             "--launch-configuration-name", "local", "--min-size", "0", "--max-size", "3",
             "--desired-capacity", "0", "--availability-zones", "us-east-1a",
             "--new-instances-protected-from-scale-in",
             "--tags", "Key=AmazonECSManaged,Value=,PropagateAtLaunch=true")
    asg_arn = group(s)["AutoScalingGroupARN"]
    s.aws_ok("ecs", "create-cluster", "--cluster-name", cluster)
    s.aws_ok("ecs", "create-capacity-provider", "--name", "cas-cp", "--auto-scaling-group-provider",
             json.dumps({"autoScalingGroupArn": asg_arn,
                         "managedScaling": {"status": "ENABLED", "targetCapacity": 100},
                         "managedTerminationProtection": "ENABLED", "managedDraining": "ENABLED"}))
    s.aws_ok("ecs", "put-cluster-capacity-providers", "--cluster", cluster,
             "--capacity-providers", "cas-cp", "--default-capacity-provider-strategy",
             "capacityProvider=cas-cp,weight=1,base=0")
    # 1,024 MiB each: three fit a t3.medium's 3,840 MiB, so four need two instances.
    td = s.aws_ok("ecs", "register-task-definition", "--family", f"cas-{docker_run_id}",
                  "--container-definitions", json.dumps([busybox_container(
                      "app", docker_run_id, memory=1024, cpu=256)]))
    td_arn = td["taskDefinition"]["taskDefinitionArn"]
    s.aws_ok("ecs", "create-service", "--cluster", cluster, "--service-name", "web",
             "--task-definition", td_arn, "--desired-count", "4",
             "--capacity-provider-strategy", "capacityProvider=cas-cp,weight=1")

    # The tasks wait for capacity: PROVISIONING, on no instance, through the provider.
    wait_for(lambda: len(tasks(s, cluster, "web")) == 4, 30, interval=0.2, what="4 tasks")
    first = tasks(s, cluster, "web")
    assert all(t["capacityProviderName"] == "cas-cp" for t in first)

    # Managed scaling grows the group to 2; the instances join; the tasks run.
    def running():
        ts = tasks(s, cluster, "web")
        return len(ts) == 4 and all(t["lastStatus"] == "RUNNING" for t in ts)
    try:
        wait_for(running, 180, interval=1, what="4 RUNNING tasks")
    except TimeoutError:
        raise AssertionError(json.dumps({"group": group(s), "tasks": [
            (t["lastStatus"], t.get("containerInstanceArn")) for t in tasks(s, cluster, "web")]},
            indent=1, default=str) + "\n" + s.log_tail(60))
    g = group(s)
    assert g["DesiredCapacity"] == 2, g
    asg_ids = {i["InstanceId"] for i in g["Instances"]}
    assert len(asg_ids) == 2 and all(i.startswith("i-") and len(i) == 19 for i in asg_ids)
    cis = s.ecs.describe_container_instances(
        cluster=cluster, containerInstances=s.ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]
    )["containerInstances"]
    assert {ci["ec2InstanceId"] for ci in cis} == asg_ids, "the container instances are the group's"
    assert all(ci["registeredResources"][0]["integerValue"] == 2048 for ci in cis), "t3.medium: 2 vCPUs"
    # Every task existed before any instance did: they waited for capacity (PROVISIONING).
    assert max(t["createdAt"] for t in first) < min(ci["registeredAt"] for ci in cis)
    # Both run tasks: managed termination protection protects them.
    wait_for(lambda: all(i["ProtectedFromScaleIn"] for i in group(s)["Instances"]), 20, interval=0.5,
             what="both instances protected")
    acts = s.aws_ok("autoscaling", "describe-scaling-activities", "--auto-scaling-group-name", "cas")["Activities"]
    assert sum(a["Description"].startswith("Launching a new EC2 instance: i-") and a["StatusCode"] == "Successful"
               for a in acts) == 2, acts
    hooks = s.aws_ok("autoscaling", "describe-lifecycle-hooks", "--auto-scaling-group-name", "cas")
    assert [h["LifecycleHookName"] for h in hooks["LifecycleHooks"]] == ["ecs-managed-draining-termination-hook"]

    # One task protected, the service scaled to 0: that task's instance is never terminated.
    ts = tasks(s, cluster, "web")
    kept = ts[0]
    s.aws_ok("ecs", "update-task-protection", "--cluster", cluster, "--tasks", kept["taskArn"],
             "--protection-enabled", "--expires-in-minutes", "60")
    kept_ci = next(ci for ci in cis if ci["containerInstanceArn"] == kept["containerInstanceArn"])
    s.aws_ok("ecs", "update-service", "--cluster", cluster, "--service", "web", "--desired-count", "0")
    wait_for(lambda: [t["taskArn"] for t in tasks(s, cluster, "web") if t["desiredStatus"] == "RUNNING"]
             == [kept["taskArn"]], 60, interval=0.5, what="only the protected task left")
    # The empty instance drains and goes; the other stays, protected.
    wait_for(lambda: [i["InstanceId"] for i in group(s)["Instances"]] == [kept_ci["ec2InstanceId"]], 90,
             interval=1, what="the empty instance terminated")
    g = group(s)
    assert g["Instances"][0]["ProtectedFromScaleIn"] and g["Instances"][0]["LifecycleState"] == "InService"
    acts = s.aws_ok("autoscaling", "describe-scaling-activities", "--auto-scaling-group-name", "cas")["Activities"]
    term = [a for a in acts if a["Description"].startswith("Terminating EC2 instance: ")]
    assert len(term) == 1 and term[0]["StatusCode"] == "Successful", term
    assert kept_ci["ec2InstanceId"] not in term[0]["Description"]
    # Well past the scale-in delay, the instance with the protected task is still there.
    with pytest.raises(TimeoutError):
        wait_for(lambda: [i["InstanceId"] for i in group(s)["Instances"]] != [kept_ci["ec2InstanceId"]],
                 12, interval=1, what="the protected task's instance to go (it must not)")

    # Deleting the service (its protection lifted) scales the group in to 0, with draining.
    s.aws_ok("ecs", "update-task-protection", "--cluster", cluster, "--tasks", kept["taskArn"],
             "--no-protection-enabled")
    s.aws_ok("ecs", "delete-service", "--cluster", cluster, "--service", "web", "--force")
    wait_for(lambda: group(s)["Instances"] == [], 120, interval=1, what="the group at 0")
    assert group(s)["DesiredCapacity"] == 0
    wait_for(lambda: not s.ecs.list_container_instances(cluster=cluster)["containerInstanceArns"], 30,
             interval=0.5, what="the container instances deregistered")
