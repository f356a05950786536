"""ECS Managed Daemons with the AWS CLI: daemon task definitions (register, describe, list,
delete, and their two waiters), daemons on an ECS Managed Instances capacity provider (create,
describe, list, update, delete, the DaemonActive waiter) and their history (deployments,
revisions). No Docker: nothing here runs a container."""

from __future__ import annotations

import json

from harness import wait_for

MI_CONFIG = {
    "infrastructureRoleArn": "arn:aws:iam::000000000000:role/ecsInfrastructureRole",
    "instanceLaunchTemplate": {
        "ec2InstanceProfileArn": "arn:aws:iam::000000000000:instance-profile/ecsInstance",
        "networkConfiguration": {"subnets": ["subnet-a"]},
    },
}
CONTAINERS = json.dumps([{"name": "agent", "image": "example/agent:1", "memory": 64}])


def register(server, family: str, image: str = "example/agent:1") -> str:
    out = server.aws_ok("ecs", "register-daemon-task-definition", "--family", family,
                        "--container-definitions",
                        json.dumps([{"name": "agent", "image": image, "memory": 64}]))
    return out["daemonTaskDefinitionArn"]


def test_daemon_task_definitions_register_list_delete_and_waiters(gantry, unique):
    family = unique("dtd")
    a1 = register(gantry, family)
    a2 = register(gantry, family, "example/agent:2")
    assert a1 == f"arn:aws:ecs:us-east-1:000000000000:daemon-task-definition/{family}:1"
    assert a2.endswith(f"/{family}:2")

    rc, err = gantry.aws("ecs", "wait", "daemon-task-definition-active", "--daemon-task-definition", a2,
                         timeout=60)
    assert rc == 0, err
    d = gantry.aws_ok("ecs", "describe-daemon-task-definition",
                      "--daemon-task-definition", family)["daemonTaskDefinition"]
    assert (d["revision"], d["status"]) == (2, "ACTIVE"), d
    assert d["containerDefinitions"][0]["image"] == "example/agent:2"
    assert d["registeredBy"] and d["registeredAt"]

    # ECS's validation, with its error codes.
    rc, err = gantry.aws("ecs", "register-daemon-task-definition", "--family", "bad family",
                         "--container-definitions", CONTAINERS)
    assert rc != 0 and "ClientException" in err and "Family contains invalid characters" in err, err
    rc, err = gantry.aws("ecs", "register-daemon-task-definition", "--family", family,
                         "--container-definitions", CONTAINERS, "--pid-mode", "host")
    assert rc != 0 and "InvalidParameterException" in err and "pidMode" in err, err

    other = unique("other")
    register(gantry, other)
    listed = gantry.aws_ok("ecs", "list-daemon-task-definitions", "--family-prefix", family)
    assert [s["arn"] for s in listed["daemonTaskDefinitions"]] == [a1, a2]
    last = gantry.aws_ok("ecs", "list-daemon-task-definitions", "--family", family,
                         "--revision", "LAST_REGISTERED")
    assert [s["arn"] for s in last["daemonTaskDefinitions"]] == [a2]
    desc = gantry.aws_ok("ecs", "list-daemon-task-definitions", "--family", family, "--sort", "DESC")
    assert [s["arn"] for s in desc["daemonTaskDefinitions"]] == [a2, a1]
    page = gantry.aws_ok("ecs", "list-daemon-task-definitions", "--family", family,
                         "--max-results", "1")
    assert len(page["daemonTaskDefinitions"]) == 1 and page.get("nextToken"), page
    rest = gantry.aws_ok("ecs", "list-daemon-task-definitions", "--family", family,
                         "--next-token", page["nextToken"])
    assert [s["arn"] for s in page["daemonTaskDefinitions"] + rest["daemonTaskDefinitions"]] == [a1, a2]

    # Deleted (no daemon uses it): DELETED at once, out of the default (ACTIVE) listing.
    out = gantry.aws_ok("ecs", "delete-daemon-task-definition", "--daemon-task-definition", f"{family}:1")
    assert out["daemonTaskDefinitionArn"] == a1
    rc, err = gantry.aws("ecs", "wait", "daemon-task-definition-deleted", "--daemon-task-definition", a1,
                         timeout=60)
    assert rc == 0, err
    rc, err = gantry.aws("ecs", "wait", "daemon-task-definition-active", "--daemon-task-definition", a1,
                         timeout=60)
    assert rc != 0 and "DELETED" in err, err
    listed = gantry.aws_ok("ecs", "list-daemon-task-definitions", "--family", family)
    assert [s["arn"] for s in listed["daemonTaskDefinitions"]] == [a2]
    every = gantry.aws_ok("ecs", "list-daemon-task-definitions", "--family", family, "--status", "ALL")
    assert [(s["arn"], s["status"]) for s in every["daemonTaskDefinitions"]] == [(a1, "DELETED"), (a2, "ACTIVE")]
    rc, err = gantry.aws("ecs", "delete-daemon-task-definition", "--daemon-task-definition", a1)
    assert rc != 0 and "not in ACTIVE status" in err, err
    rc, err = gantry.aws("ecs", "list-daemon-task-definitions", "--status", "INACTIVE")
    assert rc != 0 and "InvalidParameterException" in err, err


def managed_cluster(server, unique):
    cluster = unique("dmn")
    provider = unique("dmn-cp")
    server.aws_ok("ecs", "create-cluster", "--cluster-name", cluster)
    server.aws_ok("ecs", "create-capacity-provider", "--name", provider, "--cluster", cluster,
                  "--managed-instances-provider", json.dumps(MI_CONFIG))
    return cluster, provider


def test_daemons_create_update_delete_with_history(gantry, unique):
    cluster, provider = managed_cluster(gantry, unique)
    family = unique("agent")
    td1 = register(gantry, family)
    td2 = register(gantry, family, "example/agent:2")
    cp_arn = f"arn:aws:ecs:us-east-1:000000000000:capacity-provider/{provider}"

    # Only ECS Managed Instances providers carry daemons.
    rc, err = gantry.aws("ecs", "create-daemon", "--daemon-name", "x", "--cluster-arn", cluster,
                         "--daemon-task-definition-arn", td1, "--capacity-provider-arns", "FARGATE")
    assert rc != 0 and "UnsupportedFeatureException" in err, err
    rc, err = gantry.aws("ecs", "create-daemon", "--daemon-name", "x", "--cluster-arn", "nope",
                         "--daemon-task-definition-arn", td1, "--capacity-provider-arns", cp_arn)
    assert rc != 0 and "ClusterNotFoundException" in err, err

    out = gantry.aws_ok("ecs", "create-daemon", "--daemon-name", "monitor", "--cluster-arn", cluster,
                        "--daemon-task-definition-arn", td1, "--capacity-provider-arns", cp_arn,
                        "--deployment-configuration", "drainPercent=50,bakeTimeInMinutes=0")
    daemon = out["daemonArn"]
    assert daemon == f"arn:aws:ecs:us-east-1:000000000000:daemon/{cluster}/monitor"
    assert out["status"] == "ACTIVE"
    first = out["deploymentArn"]
    rc, err = gantry.aws("ecs", "wait", "daemon-active", "--daemon-arn", daemon, timeout=60)
    assert rc == 0, err
    rc, err = gantry.aws("ecs", "create-daemon", "--daemon-name", "monitor", "--cluster-arn", cluster,
                         "--daemon-task-definition-arn", td1, "--capacity-provider-arns", cp_arn)
    assert rc != 0 and "already exists" in err, err

    d = gantry.aws_ok("ecs", "describe-daemon", "--daemon-arn", daemon)["daemon"]
    assert (d["status"], d["deploymentArn"]) == ("ACTIVE", first), d
    assert d["currentRevisions"][0]["capacityProviders"][0]["arn"] == cp_arn
    listed = gantry.aws_ok("ecs", "list-daemons", "--cluster-arn", cluster)["daemonSummariesList"]
    assert [s["daemonArn"] for s in listed] == [daemon]

    # Daemons are taggable.
    gantry.aws_ok("ecs", "tag-resource", "--resource-arn", daemon, "--tags", "key=team,value=ops",
                  "key=tier,value=1")
    gantry.aws_ok("ecs", "untag-resource", "--resource-arn", daemon, "--tag-keys", "tier")
    tags = gantry.aws_ok("ecs", "list-tags-for-resource", "--resource-arn", daemon)["tags"]
    assert tags == [{"key": "team", "value": "ops"}], tags
    rc, err = gantry.aws("ecs", "list-tags-for-resource", "--resource-arn", daemon.replace("monitor", "nothing"))
    assert rc != 0 and "ResourceNotFoundException" in err, err
    assert gantry.aws_ok("ecs", "list-daemons", "--cluster-arn", cluster,
                         "--capacity-provider-arns", "other")["daemonSummariesList"] == []

    # The definition a daemon runs is only DELETE_IN_PROGRESS when deleted.
    gantry.aws_ok("ecs", "delete-daemon-task-definition", "--daemon-task-definition", td1)
    s = gantry.aws_ok("ecs", "describe-daemon-task-definition", "--daemon-task-definition", td1)
    assert s["daemonTaskDefinition"]["status"] == "DELETE_IN_PROGRESS", s

    out = gantry.aws_ok("ecs", "update-daemon", "--daemon-arn", daemon, "--daemon-task-definition-arn", td2,
                        "--capacity-provider-arns", cp_arn)
    second = out["deploymentArn"]
    assert second != first
    # Once no daemon uses it, the deleted definition is DELETED.
    s = gantry.aws_ok("ecs", "describe-daemon-task-definition", "--daemon-task-definition", td1)
    assert s["daemonTaskDefinition"]["status"] == "DELETED", s

    deps = gantry.aws_ok("ecs", "describe-daemon-deployments", "--daemon-deployment-arns", first, second,
                         f"{second}-gone")
    by_arn = {x["daemonDeploymentArn"]: x for x in deps["daemonDeployments"]}
    assert by_arn[second]["deploymentConfiguration"]["drainPercent"] == 25.0
    assert deps["failures"] == [{"arn": f"{second}-gone", "reason": "MISSING"}]
    # No instance to wait for: the deployments succeed (a waiter that sees MISSING fails).
    rc, err = gantry.aws("ecs", "wait", "daemon-deployment-successful", "--daemon-deployment-arns", first,
                         second, timeout=150)
    assert rc == 0, err
    rc, err = gantry.aws("ecs", "wait", "daemon-deployment-successful", "--daemon-deployment-arns",
                         f"{second}-gone", timeout=60)
    assert rc != 0 and "MISSING" in err, err
    listed = gantry.aws_ok("ecs", "list-daemon-deployments", "--daemon-arn", daemon)["daemonDeployments"]
    assert [x["daemonDeploymentArn"] for x in listed] == [second, first]
    only = gantry.aws_ok("ecs", "list-daemon-deployments", "--daemon-arn", daemon, "--status", "STOPPED")
    assert only["daemonDeployments"] == []

    target = by_arn[second]["targetDaemonRevision"]["arn"]
    revs = gantry.aws_ok("ecs", "describe-daemon-revisions", "--daemon-revision-arns", target)
    r = revs["daemonRevisions"][0]
    assert (r["daemonArn"], r["daemonTaskDefinitionArn"]) == (daemon, td2), r
    assert r["containerImages"] == [{"containerName": "agent", "image": "example/agent:2"}]

    out = gantry.aws_ok("ecs", "delete-daemon", "--daemon-arn", daemon)
    assert out["status"] == "DELETE_IN_PROGRESS"
    rc, err = gantry.aws("ecs", "update-daemon", "--daemon-arn", daemon, "--daemon-task-definition-arn", td2,
                         "--capacity-provider-arns", cp_arn)
    # Not ACTIVE while it is being deleted, not found once gone (it has no task to stop here).
    assert rc != 0 and ("DaemonNotActiveException" in err or "DaemonNotFoundException" in err), err
    wait_for(lambda: "DaemonNotFoundException" in str(gantry.aws("ecs", "describe-daemon", "--daemon-arn", daemon)[1]),
             30, interval=0.5, what="the deleted daemon to go")
    rc, err = gantry.aws("ecs", "describe-daemon", "--daemon-arn", daemon.replace("monitor", "nothing"))
    assert rc != 0 and "DaemonNotFoundException" in err, err


def daemon_tasks(server, cluster, daemon_name):
    arns = server.aws_ok("ecs", "list-tasks", "--cluster", cluster)["taskArns"]
    if not arns:
        return []
    tasks = server.aws_ok("ecs", "describe-tasks", "--cluster", cluster, "--tasks", *arns)["tasks"]
    return [t for t in tasks if t.get("group") == f"daemon:{daemon_name}"]


def test_a_daemon_runs_on_every_managed_instance_and_rolls_out_revisions(spawn_server, unique):
    """Simulated instances (the `gantry-sim` launcher): the daemon's task lands on each instance
    the provider brings up, a stopped one is replaced, and a new revision rolls out until the
    DaemonDeploymentSuccessful waiter returns."""
    server = spawn_server("dmn")
    cluster = unique("dmn")
    provider = unique("dmn-cp")
    server.aws_ok("ecs", "create-cluster", "--cluster-name", cluster)
    server.aws_ok("ecs", "create-capacity-provider", "--name", provider, "--cluster", cluster,
                  "--managed-instances-provider", json.dumps(MI_CONFIG),
                  "--tags", "key=gantry:launcher,value=gantry-sim")
    family = unique("agent")
    td1 = register(server, family)
    td2 = register(server, family, "example/agent:2")
    out = server.aws_ok("ecs", "create-daemon", "--daemon-name", "monitor", "--cluster-arn", cluster,
                        "--daemon-task-definition-arn", td1, "--capacity-provider-arns", provider,
                        "--deployment-configuration", "drainPercent=100")
    daemon, first = out["daemonArn"], out["deploymentArn"]

    # No instance yet: the first deployment has nothing to wait for.
    rc, err = server.aws("ecs", "wait", "daemon-deployment-successful", "--daemon-deployment-arns", first,
                         timeout=150)
    assert rc == 0, err

    # A task through the provider brings up an instance; the daemon's task lands on it too.
    server.aws_ok("ecs", "register-task-definition", "--family", "work", "--container-definitions",
                  json.dumps([{"name": "w", "image": "example/work:1", "cpu": 256, "memory": 512}]))
    out = server.aws_ok("ecs", "run-task", "--cluster", cluster, "--task-definition", "work",
                        "--capacity-provider-strategy", f"capacityProvider={provider},weight=1")
    work = out["tasks"][0]["taskArn"]
    rc, err = server.aws("ecs", "wait", "tasks-running", "--cluster", cluster, "--tasks", work)
    assert rc == 0, err
    instances = server.aws_ok("ecs", "list-container-instances", "--cluster", cluster)["containerInstanceArns"]
    assert len(instances) == 1

    def one_running():
        ts = [t for t in daemon_tasks(server, cluster, "monitor") if t["lastStatus"] == "RUNNING"]
        return ts if len(ts) == 1 and ts[0]["containerInstanceArn"] == instances[0] else None

    running = wait_for(one_running, 60, interval=0.5, what="the daemon's task on the new instance")
    assert running[0]["taskDefinitionArn"] == td1
    assert (running[0]["launchType"], running[0]["capacityProviderName"]) == ("MANAGED_INSTANCES", provider)
    d = server.aws_ok("ecs", "describe-daemon", "--daemon-arn", daemon)["daemon"]
    assert d["currentRevisions"][0]["totalRunningCount"] == 1, d

    # A daemon task that stops is replaced.
    server.aws_ok("ecs", "stop-task", "--cluster", cluster, "--task", running[0]["taskArn"])
    wait_for(lambda: (r := one_running()) and r[0]["taskArn"] != running[0]["taskArn"], 60, interval=0.5,
             what="the stopped daemon task to be replaced")

    # A new revision rolls out; the old task goes.
    out = server.aws_ok("ecs", "update-daemon", "--daemon-arn", daemon, "--daemon-task-definition-arn", td2,
                        "--capacity-provider-arns", provider)
    second = out["deploymentArn"]
    rc, err = server.aws("ecs", "wait", "daemon-deployment-successful", "--daemon-deployment-arns", second,
                         timeout=150)
    assert rc == 0, err
    now = one_running()
    assert now and now[0]["taskDefinitionArn"] == td2, now
    dep = server.aws_ok("ecs", "describe-daemon-deployments",
                        "--daemon-deployment-arns", second)["daemonDeployments"][0]
    assert dep["targetDaemonRevision"]["totalRunningInstanceCount"] == 1, dep
    assert dep["finishedAt"] >= dep["createdAt"]

    # A revision that cannot be placed (more memory than the instance has) never finishes; the
    # next update stops its deployment.
    big = server.aws_ok("ecs", "register-daemon-task-definition", "--family", family, "--container-definitions",
                        json.dumps([{"name": "agent", "image": "example/agent:3", "memory": 1048576}]))
    third = server.aws_ok("ecs", "update-daemon", "--daemon-arn", daemon, "--daemon-task-definition-arn",
                          big["daemonTaskDefinitionArn"], "--capacity-provider-arns", provider)["deploymentArn"]
    wait_for(lambda: server.aws_ok("ecs", "describe-daemon-deployments", "--daemon-deployment-arns", third)
             ["daemonDeployments"][0]["status"] == "IN_PROGRESS", 30, interval=0.5,
             what="the unplaceable revision's deployment to start")
    server.aws_ok("ecs", "update-daemon", "--daemon-arn", daemon, "--daemon-task-definition-arn", td2,
                  "--capacity-provider-arns", provider)
    rc, err = server.aws("ecs", "wait", "daemon-deployment-stopped", "--daemon-deployment-arns", third,
                         timeout=150)
    assert rc == 0, err

    # Deleted: its tasks stop and the daemon goes.
    server.aws_ok("ecs", "delete-daemon", "--daemon-arn", daemon)
    wait_for(lambda: not [t for t in daemon_tasks(server, cluster, "monitor") if t["lastStatus"] != "STOPPED"],
             60, interval=0.5, what="the deleted daemon's tasks to stop")
    wait_for(lambda: server.aws("ecs", "describe-daemon", "--daemon-arn", daemon)[0] != 0, 30, interval=0.5,
             what="the deleted daemon to go")


def test_a_critical_daemons_failed_task_drains_and_replaces_its_instance(spawn_server, unique):
    """Daemon auto repair on simulated instances: a critical daemon's task whose essential
    container exits (reported as the agent would) drains its instance; the service's task moves,
    the instance is terminated by the provider's Auto Scaling group (its desired capacity kept,
    the scaling activity saying why) and a new instance comes up running the daemon's task."""
    server = spawn_server("dmnrepair")
    cluster = unique("dmnr")
    provider = unique("dmnr-cp")
    group = f"ecs-managed-instances-{provider}"
    server.aws_ok("ecs", "create-cluster", "--cluster-name", cluster)
    server.aws_ok("ecs", "create-capacity-provider", "--name", provider, "--cluster", cluster,
                  "--managed-instances-provider", json.dumps(MI_CONFIG),
                  "--tags", "key=gantry:launcher,value=gantry-sim")
    td = register(server, unique("agent"))
    server.aws_ok("ecs", "create-daemon", "--daemon-name", "guard", "--cluster-arn", cluster,
                  "--daemon-task-definition-arn", td, "--capacity-provider-arns", provider)
    server.aws_ok("ecs", "register-task-definition", "--family", "web", "--container-definitions",
                  json.dumps([{"name": "w", "image": "example/web:1", "cpu": 256, "memory": 512}]))
    server.aws_ok("ecs", "create-service", "--cluster", cluster, "--service-name", "web",
                  "--task-definition", "web", "--desired-count", "1",
                  "--capacity-provider-strategy", f"capacityProvider={provider},weight=1")

    def tasks(group_name):
        arns = server.aws_ok("ecs", "list-tasks", "--cluster", cluster)["taskArns"]
        if not arns:
            return []
        ts = server.aws_ok("ecs", "describe-tasks", "--cluster", cluster, "--tasks", *arns)["tasks"]
        return [t for t in ts if t.get("group") == group_name and t["lastStatus"] == "RUNNING"]

    def both_on_one():
        d, s = tasks("daemon:guard"), tasks("service:web")
        if len(d) == 1 and len(s) == 1 and d[0]["containerInstanceArn"] == s[0]["containerInstanceArn"]:
            return d[0], s[0]
        return None

    daemon_task, web_task = wait_for(both_on_one, 90, interval=0.5, what="the daemon's and the service's task")
    old = daemon_task["containerInstanceArn"]
    old_ec2 = server.aws_ok("ecs", "describe-container-instances", "--cluster", cluster,
                            "--container-instances", old)["containerInstances"][0]["ec2InstanceId"]
    desired = server.aws_ok("autoscaling", "describe-auto-scaling-groups", "--auto-scaling-group-names",
                            group)["AutoScalingGroups"][0]["DesiredCapacity"]

    # The daemon's essential container exits.
    server.aws_ok("ecs", "submit-task-state-change", "--cluster", cluster, "--task", daemon_task["taskArn"],
                  "--status", "STOPPED", "--reason", "Essential container in task exited")

    def repair_activity():
        acts = server.aws_ok("autoscaling", "describe-scaling-activities", "--auto-scaling-group-name",
                             group)["Activities"]
        return next((a for a in acts if "daemon auto repair" in a.get("Cause", "")), None)

    act = wait_for(repair_activity, 90, interval=0.5, what="the repair's scaling activity")
    assert f"instance {old_ec2} was taken out of service in response to ECS daemon auto repair" in act["Cause"], act
    assert "critical daemon guard" in act["Cause"], act

    # A new instance runs the daemon's task and the service's task; the old one is gone.
    def replaced():
        d, s = tasks("daemon:guard"), tasks("service:web")
        if len(s) == 1 and s[0]["containerInstanceArn"] != old and s[0]["taskArn"] != web_task["taskArn"] \
                and any(t["containerInstanceArn"] == s[0]["containerInstanceArn"] for t in d):
            return s[0]
        return None

    wait_for(replaced, 120, interval=0.5, what="the service's task on a new instance beside the daemon's")
    wait_for(lambda: not [i for i in server.aws_ok("autoscaling", "describe-auto-scaling-groups",
                                                   "--auto-scaling-group-names", group)
                          ["AutoScalingGroups"][0]["Instances"] if i["InstanceId"] == old_ec2],
             90, interval=0.5, what="the drained instance to leave its group")
    g = server.aws_ok("autoscaling", "describe-auto-scaling-groups",
                      "--auto-scaling-group-names", group)["AutoScalingGroups"][0]
    assert g["DesiredCapacity"] >= desired, g
    active = server.aws_ok("ecs", "list-container-instances", "--cluster", cluster,
                           "--status", "ACTIVE")["containerInstanceArns"]
    assert old not in active and active, active
