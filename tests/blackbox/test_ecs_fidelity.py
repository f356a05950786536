"""Behaviours that match ECS exactly: Fargate's pidMode and ipcMode limits, DeregisterTaskDefinition's
revision messages, EFS volumes' default root directory, tagging task sets (and tasks),
CreateService's wording about roles and load balancers, and the order ECS validates in: a
request's own fields before the cluster is looked up.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from harness import arn, expect_error, gantry_bin, simple_container, tags_dict, wait_for

FARGATE = {"networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"], "cpu": "256",
           "memory": "512"}
FARGATE_CONTAINER = {"name": "app", "image": "public.ecr.aws/docker/library/busybox:1.36"}


# ---- Fargate limits -------------------------------------------------------------------------

def test_fargate_refuses_host_pid_mode_and_any_ipc_mode(ecs, unique):
    family = unique("fg")
    expect_error(lambda: ecs.register_task_definition(
        family=family, containerDefinitions=[FARGATE_CONTAINER], pidMode="host", **FARGATE),
        "ClientException",
        "Tasks using the Fargate launch type do not support pidMode 'host'. "
        "The supported value for pidMode is 'task'.")
    for mode in ("host", "task", "none"):
        expect_error(lambda: ecs.register_task_definition(
            family=family, containerDefinitions=[FARGATE_CONTAINER], ipcMode=mode, **FARGATE),
            "ClientException", "Fargate compatible task definitions do not support ipcMode.")
    # Nothing was registered; pidMode task is what Fargate supports.
    expect_error(lambda: ecs.describe_task_definition(taskDefinition=family), "ClientException")
    td = ecs.register_task_definition(family=family, containerDefinitions=[FARGATE_CONTAINER],
                                      pidMode="task", **FARGATE)["taskDefinition"]
    assert td["revision"] == 1 and td["pidMode"] == "task"
    assert "FARGATE" in td["compatibilities"]
    # On EC2 both are fine, and such a definition is not Fargate-compatible.
    td = ecs.register_task_definition(family=unique("ec2"), pidMode="host", ipcMode="host",
                                      containerDefinitions=[simple_container()])["taskDefinition"]
    assert td["pidMode"] == "host" and td["ipcMode"] == "host"
    assert "FARGATE" not in td["compatibilities"]


def test_fargate_pid_mode_through_the_cli(gantry, unique):
    rc, err = gantry.aws("ecs", "register-task-definition", "--family", unique("fg"),
                         "--network-mode", "awsvpc", "--requires-compatibilities", "FARGATE",
                         "--cpu", "256", "--memory", "512", "--pid-mode", "host",
                         "--container-definitions", json.dumps([FARGATE_CONTAINER]))
    assert rc == 255
    assert ("An error occurred (ClientException) when calling the RegisterTaskDefinition operation: "
            "Tasks using the Fargate launch type do not support pidMode 'host'. "
            "The supported value for pidMode is 'task'.") in err, err


# ---- DeregisterTaskDefinition ---------------------------------------------------------------

def test_deregister_needs_a_numeric_revision(ecs, unique):
    family = unique("dereg")
    td = ecs.register_task_definition(family=family, containerDefinitions=[simple_container()])
    td_arn = td["taskDefinition"]["taskDefinitionArn"]
    expect_error(lambda: ecs.deregister_task_definition(taskDefinition=f"{family}:foo"),
                 "ClientException", "Invalid revision number. Number: foo")
    expect_error(lambda: ecs.deregister_task_definition(taskDefinition=td_arn.replace(":1", ":x1")),
                 "ClientException", "Invalid revision number. Number: x1")
    expect_error(lambda: ecs.deregister_task_definition(taskDefinition=family),
                 "ClientException", "Revision is missing.")
    expect_error(lambda: ecs.deregister_task_definition(
        taskDefinition=arn("task-definition", family)), "ClientException", "Revision is missing.")
    # A well-formed revision that does not exist, and one that does.
    expect_error(lambda: ecs.deregister_task_definition(taskDefinition=f"{family}:2"),
                 "ClientException", "Unable to describe task definition.")
    out = ecs.deregister_task_definition(taskDefinition=f"{family}:1")["taskDefinition"]
    assert out["status"] == "INACTIVE"


def test_deregister_messages_through_the_cli(gantry, unique):
    family = unique("dereg")
    gantry.aws_ok("ecs", "register-task-definition", "--family", family,
                  "--container-definitions", json.dumps([simple_container()]))
    rc, err = gantry.aws("ecs", "deregister-task-definition", "--task-definition", family)
    assert rc == 255 and "(ClientException) when calling the DeregisterTaskDefinition operation: " \
        "Revision is missing." in err, err
    rc, err = gantry.aws("ecs", "deregister-task-definition", "--task-definition", f"{family}:foo")
    assert rc == 255 and "Invalid revision number. Number: foo" in err, err


def test_other_operations_refuse_a_non_numeric_revision(ecs, unique):
    cluster = ecs.create_cluster(clusterName=unique("rev"))["cluster"]["clusterName"]
    family = unique("rev")
    ecs.register_task_definition(family=family, containerDefinitions=[simple_container()])
    message = "Invalid revision number. Number: latest"
    expect_error(lambda: ecs.run_task(cluster=cluster, taskDefinition=f"{family}:latest"),
                 "InvalidParameterException", message)
    expect_error(lambda: ecs.create_service(cluster=cluster, serviceName="s", desiredCount=1,
                                            taskDefinition=f"{family}:latest"),
                 "InvalidParameterException", message)


# ---- EFS volumes ----------------------------------------------------------------------------

def test_efs_volume_without_root_directory_is_stored_with_slash(ecs, gantry, unique):
    family = unique("efs")
    volumes = [
        {"name": "data", "efsVolumeConfiguration": {"fileSystemId": "fs-0123456789abcdef0"}},
        {"name": "logs", "efsVolumeConfiguration": {"fileSystemId": "fs-0123456789abcdef0",
                                                    "rootDirectory": "/logs",
                                                    "transitEncryption": "ENABLED"}},
    ]
    container = dict(FARGATE_CONTAINER, mountPoints=[{"sourceVolume": "data",
                                                      "containerPath": "/data"}])
    registered = ecs.register_task_definition(family=family, containerDefinitions=[container],
                                              volumes=volumes, **FARGATE)["taskDefinition"]
    described = ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
    cli = gantry.aws_ok("ecs", "describe-task-definition", "--task-definition", family)["taskDefinition"]
    for td in (registered, described, cli):
        efs = {v["name"]: v["efsVolumeConfiguration"] for v in td["volumes"]}
        assert efs["data"] == {"fileSystemId": "fs-0123456789abcdef0", "rootDirectory": "/"}, td
        assert efs["logs"]["rootDirectory"] == "/logs"


# ---- Tagging task sets and tasks ------------------------------------------------------------

def external_service(ecs, unique):
    cluster = ecs.create_cluster(clusterName=unique("ts"))["cluster"]["clusterName"]
    family = unique("ts")
    ecs.register_task_definition(family=family, containerDefinitions=[simple_container()])
    ecs.create_service(cluster=cluster, serviceName="web", desiredCount=0,
                       deploymentController={"type": "EXTERNAL"})
    return cluster, family


def test_task_sets_are_tagged_like_every_other_resource(ecs, gantry, unique):
    cluster, family = external_service(ecs, unique)
    created = ecs.create_task_set(cluster=cluster, service="web", taskDefinition=family,
                                  tags=[{"key": "born", "value": "create"}])["taskSet"]
    set_arn = created["taskSetArn"]
    assert set_arn.startswith(f"arn:aws:ecs:us-east-1:000000000000:task-set/{cluster}/web/ecs-svc/")
    assert tags_dict(created["tags"]) == {"born": "create"}

    def describe(include=True):
        kw = {"include": ["TAGS"]} if include else {}
        [t] = ecs.describe_task_sets(cluster=cluster, service="web", taskSets=[set_arn],
                                     **kw)["taskSets"]
        return t

    assert tags_dict(ecs.list_tags_for_resource(resourceArn=set_arn)["tags"]) == {"born": "create"}
    ecs.tag_resource(resourceArn=set_arn, tags=[{"key": "env", "value": "blue"},
                                                {"key": "team", "value": "web"}])
    assert tags_dict(describe()["tags"]) == {"born": "create", "env": "blue", "team": "web"}
    assert "tags" not in describe(include=False)
    ecs.untag_resource(resourceArn=set_arn, tagKeys=["born", "team"])
    assert tags_dict(ecs.list_tags_for_resource(resourceArn=set_arn)["tags"]) == {"env": "blue"}
    assert tags_dict(describe()["tags"]) == {"env": "blue"}
    # Through the AWS CLI as well.
    gantry.aws_ok("ecs", "tag-resource", "--resource-arn", set_arn, "--tags", "key=cli,value=yes")
    out = gantry.aws_ok("ecs", "list-tags-for-resource", "--resource-arn", set_arn)
    assert tags_dict(out["tags"]) == {"env": "blue", "cli": "yes"}

    # A task set that is not there.
    ghost = set_arn.rsplit("/", 1)[0] + "/1234567890123456789"
    for call in (lambda: ecs.list_tags_for_resource(resourceArn=ghost),
                 lambda: ecs.tag_resource(resourceArn=ghost, tags=[{"key": "a", "value": "b"}]),
                 lambda: ecs.untag_resource(resourceArn=ghost, tagKeys=["a"])):
        expect_error(call, "ResourceNotFoundException", f"The specified resource wasn't found: {ghost}")


def test_tasks_are_taggable(spawn_server, unique, tmp_path):
    """On a simulated instance (`gantry sim`: a real agent over HTTP, no Docker)."""
    server = spawn_server("tasks")
    ecs = server.ecs
    cluster = ecs.create_cluster(clusterName=unique("tt"))["cluster"]["clusterName"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANTRY_")}
    with open(tmp_path / "sim.log", "wb") as log:
        sim = subprocess.Popen([str(gantry_bin()), "sim", "--server", server.endpoint, "--cluster",
                                cluster, "--instances", "1", "--zones", "1"],
                               stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        def connected():
            arns = ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]
            return arns and ecs.describe_container_instances(
                cluster=cluster, containerInstances=arns)["containerInstances"][0]["agentConnected"]

        wait_for(connected, 30, interval=0.1, what="the simulated instance")
        family = unique("tt")
        ecs.register_task_definition(family=family, containerDefinitions=[simple_container()])
        [task] = ecs.run_task(cluster=cluster, taskDefinition=family,
                              tags=[{"key": "born", "value": "run"}])["tasks"]
        task_arn = task["taskArn"]
        ecs.tag_resource(resourceArn=task_arn, tags=[{"key": "env", "value": "dev"}])
        assert tags_dict(ecs.list_tags_for_resource(resourceArn=task_arn)["tags"]) == \
            {"born": "run", "env": "dev"}
        ecs.untag_resource(resourceArn=task_arn, tagKeys=["born"])
        [t] = ecs.describe_tasks(cluster=cluster, tasks=[task_arn], include=["TAGS"])["tasks"]
        assert tags_dict(t["tags"]) == {"env": "dev"}
        # Tagging did not disturb the task's lifecycle: it still runs, and stops when asked.
        wait_for(lambda: ecs.describe_tasks(cluster=cluster, tasks=[task_arn])["tasks"][0]
                 ["lastStatus"] == "RUNNING", 30, interval=0.1, what="the task to run")
        ecs.stop_task(cluster=cluster, task=task_arn)
        wait_for(lambda: ecs.describe_tasks(cluster=cluster, tasks=[task_arn])["tasks"][0]
                 ["lastStatus"] == "STOPPED", 30, interval=0.1, what="the task to stop")
        ghost = arn("task", f"{cluster}/0123456789abcdef0123456789abcdef")
        expect_error(lambda: ecs.list_tags_for_resource(resourceArn=ghost),
                     "ResourceNotFoundException")
        expect_error(lambda: ecs.list_tags_for_resource(
            resourceArn=arn("task", task_arn.rsplit("/", 1)[1])),
            "InvalidParameterException", "Long arn format must be used for tagging operations")
    finally:
        sim.kill()
        sim.wait(timeout=30)


# ---- CreateService wording ------------------------------------------------------------------

def test_create_service_wording_for_roles_and_load_balancers(ecs, unique):
    cluster = ecs.create_cluster(clusterName=unique("svc"))["cluster"]["clusterName"]
    family = unique("svc")
    ecs.register_task_definition(family=family, containerDefinitions=[
        simple_container("web", portMappings=[{"containerPort": 80}])])
    base = {"cluster": cluster, "serviceName": "web", "taskDefinition": family, "desiredCount": 1}
    expect_error(lambda: ecs.create_service(role="ecsServiceRole", **base),
                 "InvalidParameterException",
                 "IAM roles are only valid for services configured to use load balancers.")
    both = [{"loadBalancerName": "classic", "containerName": "web", "containerPort": 80,
             "targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:000000000000:"
                               "targetgroup/web/0123456789abcdef"}]
    expect_error(lambda: ecs.create_service(loadBalancers=both, **base),
                 "InvalidParameterException",
                 "loadBalancerName and targetGroupArn cannot both be specified. You must specify "
                 "either a loadBalancerName or a targetGroupArn.")
    assert ecs.list_services(cluster=cluster)["serviceArns"] == []


# ---- Validation order: the request's fields, then the cluster -------------------------------

BAD_PLACEMENT = [{"type": "bogus"}]
BAD_TAGS = [{"key": "", "value": "v"}]
LAUNCH_TYPE = "launchType should be one of [EC2,FARGATE,EXTERNAL], but was 'FOO'."
BOTH = ("Specifying both a launch type and capacity provider strategy is not supported. "
        "Remove one and try again.")
STRATEGY = "placement strategy type should be one of [random,spread,binpack], but was 'bogus'."
CONSTRAINT = ("placement constraint type should be one of [distinctInstance,memberOf], "
              "but was 'bogus'.")
TAG = "Invalid tag key ''"
CPS = [{"capacityProvider": "FARGATE"}]

# (operation, request without its cluster, message of the InvalidParameterException ECS gives
# before it would say the cluster does not exist).
BEFORE_CLUSTER = [
    ("run_task", {"taskDefinition": "x", "launchType": "FOO"}, LAUNCH_TYPE),
    ("run_task", {"taskDefinition": "x", "launchType": "EC2", "capacityProviderStrategy": CPS}, BOTH),
    ("run_task", {"taskDefinition": "x", "placementStrategy": BAD_PLACEMENT}, STRATEGY),
    ("run_task", {"taskDefinition": "x", "placementConstraints": BAD_PLACEMENT}, CONSTRAINT),
    ("run_task", {"taskDefinition": "x", "tags": BAD_TAGS}, TAG),
    ("run_task", {"taskDefinition": "x", "startedBy": "s" * 37}, "startedBy longer than 36."),
    ("run_task", {"taskDefinition": "x", "count": 11}, "count must be between 1 and 10, but was 11."),
    ("run_task", {"taskDefinition": "x", "propagateTags": "ALL"},
     "propagateTags should be one of [TASK_DEFINITION,SERVICE,NONE], but was 'ALL'."),
    ("run_task", {"taskDefinition": "x:latest"}, "Invalid revision number. Number: latest"),
    ("start_task", {"taskDefinition": "x", "containerInstances": []},
     "containerInstances can not be empty."),
    ("start_task", {"taskDefinition": "x", "containerInstances": ["i"], "tags": BAD_TAGS}, TAG),
    ("stop_task", {"task": "t", "reason": "r" * 256}, "reason can have at most 255 characters."),
    ("describe_tasks", {"tasks": []}, "Tasks cannot be empty."),
    ("describe_tasks", {"tasks": ["t"], "include": ["FOO"]},
     "include should be one of [TAGS], but was 'FOO'."),
    ("list_tasks", {"desiredStatus": "FOO"},
     "desiredStatus should be one of [RUNNING,PENDING,STOPPED], but was 'FOO'."),
    ("list_tasks", {"launchType": "FOO"}, LAUNCH_TYPE),
    ("list_tasks", {"maxResults": 101}, "maxResults must be between 1 and 100, but was 101."),
    ("describe_container_instances", {"containerInstances": []},
     "Container Instances cannot be empty."),
    ("update_container_instances_state", {"containerInstances": [], "status": "DRAINING"},
     "Container Instances cannot be empty."),
    ("update_container_instances_state", {"containerInstances": ["i"], "status": "FOO"},
     "Container instances status can only be ACTIVE or DRAINING, but was 'FOO'."),
    ("list_container_instances", {"status": "FOO"}, "status should be one of"),
    ("create_service", {"serviceName": "s", "taskDefinition": "x", "desiredCount": 1,
                        "launchType": "FOO"}, LAUNCH_TYPE),
    ("create_service", {"serviceName": "s", "taskDefinition": "x", "desiredCount": 1,
                        "launchType": "EC2", "capacityProviderStrategy": CPS}, BOTH),
    ("create_service", {"serviceName": "s", "taskDefinition": "x", "desiredCount": 1,
                        "schedulingStrategy": "FOO"},
     "schedulingStrategy should be one of [REPLICA,DAEMON], but was 'FOO'."),
    ("create_service", {"serviceName": "s", "taskDefinition": "x", "desiredCount": -1},
     "desiredCount must be at least 0, but was -1."),
    ("create_service", {"serviceName": "s", "taskDefinition": "x", "desiredCount": 1,
                        "role": "ecsServiceRole"},
     "IAM roles are only valid for services configured to use load balancers."),
    ("create_service", {"serviceName": "s", "taskDefinition": "x", "desiredCount": 1,
                        "placementStrategy": BAD_PLACEMENT}, STRATEGY),
    ("create_service", {"serviceName": "s", "taskDefinition": "x", "desiredCount": 1,
                        "tags": BAD_TAGS}, TAG),
    ("create_service", {"serviceName": "s", "taskDefinition": "x", "desiredCount": 1,
                        "propagateTags": "ALL"},
     "propagateTags should be one of [TASK_DEFINITION,SERVICE,NONE], but was 'ALL'."),
    ("create_service", {"serviceName": "s", "taskDefinition": "x", "desiredCount": 1,
                        "deploymentController": {"type": "FOO"}},
     "deploymentController.type should be one of [ECS,CODE_DEPLOY,EXTERNAL], but was 'FOO'."),
    ("create_service", {"serviceName": "s", "desiredCount": 1},
     "A task definition must be specified to create a service."),
    ("update_service", {"service": "s", "desiredCount": -1},
     "desiredCount must be at least 0, but was -1."),
    ("update_service", {"service": "s", "placementStrategy": BAD_PLACEMENT}, STRATEGY),
    ("update_service", {"service": "s", "propagateTags": "ALL"},
     "propagateTags should be one of [TASK_DEFINITION,SERVICE,NONE], but was 'ALL'."),
    ("update_service", {"service": "s", "taskDefinition": "x:latest"},
     "Invalid revision number. Number: latest"),
    ("describe_services", {"services": []}, "Services cannot be empty."),
    ("list_services", {"launchType": "FOO"}, LAUNCH_TYPE),
    ("create_task_set", {"service": "s", "taskDefinition": "x", "launchType": "FOO"}, LAUNCH_TYPE),
    ("update_task_protection", {"tasks": [], "protectionEnabled": True}, "Tasks cannot be empty."),
    ("put_attributes", {"attributes": [{"name": "a", "value": "b", "targetType": "FOO",
                                        "targetId": "i"}]},
     "targetType should be one of [container-instance], but was 'FOO'."),
    ("list_attributes", {"targetType": "FOO"},
     "targetType should be one of [container-instance], but was 'FOO'."),
]


@pytest.fixture
def unvalidated(gantry):
    """An ECS client that sends what it is given (botocore checks nothing client-side)."""
    import boto3
    from botocore.config import Config
    return boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test",
                                 region_name="us-east-1").client(
        "ecs", endpoint_url=gantry.endpoint,
        config=Config(retries={"max_attempts": 1}, parameter_validation=False))


@pytest.mark.parametrize("operation,request_fields,message", BEFORE_CLUSTER,
                         ids=[f"{op}-{i}" for i, (op, _, _) in enumerate(BEFORE_CLUSTER)])
def test_request_fields_are_validated_before_the_cluster_is_looked_up(
        unvalidated, unique, operation, request_fields, message):
    call = getattr(unvalidated, operation)
    expect_error(lambda: call(cluster=unique("nowhere"), **request_fields),
                 "InvalidParameterException", contains=message)


def test_a_valid_request_on_a_missing_cluster_is_cluster_not_found(ecs, unique):
    """The counterpart: with nothing wrong in the request, the cluster is what is missing."""
    cluster = unique("nowhere")
    for call in (lambda: ecs.run_task(cluster=cluster, taskDefinition="x", launchType="EC2"),
                 lambda: ecs.stop_task(cluster=cluster, task="t", reason="r"),
                 lambda: ecs.list_tasks(cluster=cluster, launchType="FARGATE"),
                 lambda: ecs.update_container_instances_state(
                     cluster=cluster, containerInstances=["i"], status="DRAINING"),
                 lambda: ecs.create_service(cluster=cluster, serviceName="s", taskDefinition="x",
                                            desiredCount=1, launchType="EC2"),
                 lambda: ecs.update_service(cluster=cluster, service="s", desiredCount=1)):
        expect_error(call, "ClusterNotFoundException", "Cluster not found.")
