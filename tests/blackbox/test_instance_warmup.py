"""Managed scaling's instanceWarmupPeriod with the AWS CLI and `gantry-sim` instances (no
Docker): a burst of tasks that needs three m5.large instances, on a provider that scales one
instance at a time (maximumScalingStepSize 1). With a warm-up of 0 the group steps at each
evaluation (every few seconds) up to 3; with a warm-up of 300 s it launches once and waits for
the instance's warm-up before the next step (the negative check waits a bounded time, as
test_autoscaling_docker.py does for an instance that must stay)."""

from __future__ import annotations

import json

import pytest

from harness import wait_for


def burst(server, unique, warmup: int) -> tuple[str, str]:
    cluster = unique("warm")
    group = unique("warm-asg")
    server.aws_ok("autoscaling", "create-launch-configuration", "--launch-configuration-name", group,
                  "--image-id", "gantry-sim", "--instance-type", "m5.large",
                  "--user-data", f"#!/bin/bash\necho ECS_CLUSTER={cluster} >> /etc/ecs/ecs.config")
    server.aws_ok("autoscaling", "create-auto-scaling-group", "--auto-scaling-group-name", group,
                  "--launch-configuration-name", group, "--min-size", "0", "--max-size", "5",
                  "--desired-capacity", "0", "--availability-zones", "us-east-1a")
    arn = server.aws_ok("autoscaling", "describe-auto-scaling-groups", "--auto-scaling-group-names",
                        group)["AutoScalingGroups"][0]["AutoScalingGroupARN"]
    server.aws_ok("ecs", "create-cluster", "--cluster-name", cluster)
    provider = unique("warm-cp")
    server.aws_ok("ecs", "create-capacity-provider", "--name", provider, "--auto-scaling-group-provider",
                  json.dumps({"autoScalingGroupArn": arn, "managedScaling": {
                      "status": "ENABLED", "targetCapacity": 100, "maximumScalingStepSize": 1,
                      "instanceWarmupPeriod": warmup}}))
    server.aws_ok("ecs", "put-cluster-capacity-providers", "--cluster", cluster,
                  "--capacity-providers", provider, "--default-capacity-provider-strategy",
                  f"capacityProvider={provider},weight=1")
    # 1,536 MiB each: five fit an m5.large, so fifteen need three.
    server.aws_ok("ecs", "register-task-definition", "--family", "burst", "--container-definitions",
                  json.dumps([{"name": "w", "image": "example/work:1", "cpu": 256, "memory": 1536}]))
    for _ in range(3):
        out = server.aws_ok("ecs", "run-task", "--cluster", cluster, "--task-definition", "burst",
                            "--count", "5")
        assert len(out["tasks"]) == 5, out
    return cluster, group


def desired(server, group: str) -> int:
    return server.aws_ok("autoscaling", "describe-auto-scaling-groups", "--auto-scaling-group-names",
                         group)["AutoScalingGroups"][0]["DesiredCapacity"]


def test_without_warm_up_the_group_steps_at_each_evaluation(spawn_server, unique):
    server = spawn_server("warm0")
    _, group = burst(server, unique, 0)
    wait_for(lambda: desired(server, group) == 3, 60, interval=0.5, what="three instances")


def test_with_warm_up_one_launch_waits_for_the_warm_up(spawn_server, unique):
    server = spawn_server("warm300")
    cluster, group = burst(server, unique, 300)
    wait_for(lambda: desired(server, group) == 1, 30, interval=0.5, what="the first launch")
    # The instance joins and takes five tasks; the other ten wait for the next step.
    def running() -> int:
        arns = server.aws_ok("ecs", "list-tasks", "--cluster", cluster)["taskArns"]
        ts = server.ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"]
        return sum(t["lastStatus"] == "RUNNING" for t in ts)

    wait_for(lambda: running() == 5, 30, interval=0.5, what="five tasks running on the first instance")
    with pytest.raises(TimeoutError):
        wait_for(lambda: desired(server, group) > 1, 12, interval=1,
                 what="a second launch within the warm-up (there must be none)")
    acts = server.aws_ok("autoscaling", "describe-scaling-activities",
                         "--auto-scaling-group-name", group)["Activities"]
    assert sum(a["Description"].startswith("Launching a new EC2 instance") for a in acts) == 1, acts
