"""ECS Managed Instances with the AWS CLI: a MANAGED_INSTANCES capacity provider whose instances
Gantry launches itself (here with the `gantry-sim` launcher, named by the provider's
`gantry:launcher` tag): tasks wait in PROVISIONING, instances join the cluster, the tasks run;
once they stop, the idle instances are retired, and deleting the provider removes its group.

The server runs with `--capacity-scale-in-delay 5s` (ECS waits 15 minutes of low reservation).
"""

from __future__ import annotations

import json

from harness import wait_for


def test_managed_instances_grow_for_tasks_and_retire_when_idle(spawn_server, unique):
    server = spawn_server("mi", extra_args=("--capacity-scale-in-delay", "5s"))
    cluster = unique("mi")
    provider = unique("mi-cp")
    group = f"ecs-managed-instances-{provider}"
    server.aws_ok("ecs", "create-cluster", "--cluster-name", cluster)
    config = {
        "infrastructureRoleArn": "arn:aws:iam::000000000000:role/ecsInfrastructureRole",
        "instanceLaunchTemplate": {
            "ec2InstanceProfileArn": "arn:aws:iam::000000000000:instance-profile/ecsInstance",
            "networkConfiguration": {"subnets": ["subnet-a", "subnet-b"]},
            "instanceRequirements": {"vCpuCount": {"min": 2}, "memoryMiB": {"min": 8192}},
        },
    }
    rc, err = server.aws("ecs", "create-capacity-provider", "--name", provider,
                         "--managed-instances-provider", json.dumps(config))
    assert rc != 0 and "cluster must be specified" in err, err
    out = server.aws_ok("ecs", "create-capacity-provider", "--name", provider, "--cluster", cluster,
                        "--managed-instances-provider", json.dumps(config),
                        "--tags", "key=gantry:launcher,value=gantry-sim")
    cp = out["capacityProvider"]
    assert (cp["type"], cp["cluster"], cp["status"]) == ("MANAGED_INSTANCES", cluster, "ACTIVE")
    assert cp["managedInstancesProvider"]["instanceLaunchTemplate"]["instanceRequirements"]["vCpuCount"] == {"min": 2}
    c = server.aws_ok("ecs", "describe-clusters", "--clusters", cluster)["clusters"][0]
    assert c["capacityProviders"] == [provider]

    server.aws_ok("ecs", "register-task-definition", "--family", "work", "--container-definitions",
                  json.dumps([{"name": "w", "image": "example/work:1", "cpu": 256, "memory": 1536}]))
    out = server.aws_ok("ecs", "run-task", "--cluster", cluster, "--task-definition", "work", "--count", "6",
                        "--capacity-provider-strategy", f"capacityProvider={provider},weight=1")
    arns = [t["taskArn"] for t in out["tasks"]]
    assert len(arns) == 6 and all(t["lastStatus"] == "PROVISIONING" for t in out["tasks"]), out
    rc, err = server.aws("ecs", "wait", "tasks-running", "--cluster", cluster, "--tasks", *arns)
    assert rc == 0, err

    # Five fit an m5.large (the smallest type with 2 vCPUs and 8 GiB): two instances.
    g = server.aws_ok("autoscaling", "describe-auto-scaling-groups",
                      "--auto-scaling-group-names", group)["AutoScalingGroups"][0]
    assert g["DesiredCapacity"] == 2, g
    assert any(t["Key"] == "AmazonECSManaged" for t in g["Tags"])
    lc = server.aws_ok("autoscaling", "describe-launch-configurations",
                       "--launch-configuration-names", group)["LaunchConfigurations"][0]
    assert (lc["ImageId"], lc["InstanceType"]) == ("gantry-sim", "m5.large")
    instances = server.aws_ok("ecs", "list-container-instances", "--cluster", cluster)["containerInstanceArns"]
    assert len(instances) == 2

    # In use, the provider is not deleted.
    d = server.aws_ok("ecs", "delete-capacity-provider", "--capacity-provider", provider)["capacityProvider"]
    assert (d["status"], d["updateStatus"]) == ("ACTIVE", "DELETE_FAILED"), d

    for a in arns:
        server.aws_ok("ecs", "stop-task", "--cluster", cluster, "--task", a)
    rc, err = server.aws("ecs", "wait", "tasks-stopped", "--cluster", cluster, "--tasks", *arns)
    assert rc == 0, err

    def retired():
        g = server.aws_ok("autoscaling", "describe-auto-scaling-groups",
                          "--auto-scaling-group-names", group)["AutoScalingGroups"][0]
        return g if g["DesiredCapacity"] == 0 and not g["Instances"] else None

    wait_for(retired, 90, interval=0.5, what="the idle managed instances to be retired")

    d = server.aws_ok("ecs", "delete-capacity-provider", "--capacity-provider", provider)["capacityProvider"]
    assert (d["status"], d["updateStatus"]) == ("INACTIVE", "DELETE_COMPLETE"), d
    wait_for(lambda: not server.aws_ok("autoscaling", "describe-auto-scaling-groups",
                                       "--auto-scaling-group-names", group)["AutoScalingGroups"],
             60, interval=0.5, what="the provider's group to go")


def test_managed_instances_launch_a_type_that_fits_each_task(spawn_server, unique):
    """Each instance is of the smallest type within instanceRequirements that fits the task
    waiting for it, and its container instance says which (`ecs.instance-type`)."""
    server = spawn_server("mi-types")
    cluster = unique("mi")
    provider = unique("mi-cp")
    server.aws_ok("ecs", "create-cluster", "--cluster-name", cluster)
    config = {
        "infrastructureRoleArn": "arn:aws:iam::000000000000:role/ecsInfrastructureRole",
        "instanceLaunchTemplate": {
            "ec2InstanceProfileArn": "arn:aws:iam::000000000000:instance-profile/ecsInstance",
            "networkConfiguration": {"subnets": ["subnet-a"]},
            "instanceRequirements": {"vCpuCount": {"min": 2}, "memoryMiB": {"min": 4096}},
        },
    }
    server.aws_ok("ecs", "create-capacity-provider", "--name", provider, "--cluster", cluster,
                  "--managed-instances-provider", json.dumps(config),
                  "--tags", "key=gantry:launcher,value=gantry-sim")
    arns = []
    for family, memory in (("small", 512), ("large", 6144)):
        server.aws_ok("ecs", "register-task-definition", "--family", family, "--container-definitions",
                      json.dumps([{"name": "w", "image": "example/work:1", "cpu": 256, "memory": memory}]))
        out = server.aws_ok("ecs", "run-task", "--cluster", cluster, "--task-definition", family,
                            "--capacity-provider-strategy", f"capacityProvider={provider},weight=1")
        arns += [t["taskArn"] for t in out["tasks"]]
    assert len(arns) == 2
    rc, err = server.aws("ecs", "wait", "tasks-running", "--cluster", cluster, "--tasks", *arns)
    assert rc == 0, err

    instances = server.aws_ok("ecs", "list-container-instances", "--cluster", cluster)["containerInstanceArns"]
    cis = server.aws_ok("ecs", "describe-container-instances", "--cluster", cluster,
                        "--container-instances", *instances)["containerInstances"]
    by_type = {}
    for ci in cis:
        [t] = [a["value"] for a in ci["attributes"] if a["name"] == "ecs.instance-type"]
        memory = next(r["integerValue"] for r in ci["registeredResources"] if r["name"] == "MEMORY")
        by_type[t] = memory
    # 4 GiB (3,840 MiB registered) for the small task, 8 GiB for the one of 6 GiB.
    assert sorted(by_type.values()) == [3840, 7936], by_type
    # Auto Scaling shows the same types for the group's instances.
    asg = server.aws_ok("autoscaling", "describe-auto-scaling-instances")["AutoScalingInstances"]
    assert sorted(i["InstanceType"] for i in asg
                  if i["AutoScalingGroupName"] == f"ecs-managed-instances-{provider}") == sorted(by_type), asg
