"""Task definitions: RegisterTaskDefinition (faithful storage, computed fields),
DescribeTaskDefinition, ListTaskDefinitions, ListTaskDefinitionFamilies,
DeregisterTaskDefinition, DeleteTaskDefinitions."""

import time

import pytest

from harness import arn, assert_subset, expect_error, simple_container, tags_dict

SECRET = "arn:aws:secretsmanager:us-east-1:000000000000:secret:registry-creds-Ab12Cd"


def kitchen_sink_ec2(family: str) -> dict:
    """Every container- and task-level field that a bridge-mode EC2 task definition accepts."""
    return {
        "family": family,
        "taskRoleArn": "arn:aws:iam::000000000000:role/task",
        "executionRoleArn": "arn:aws:iam::000000000000:role/exec",
        "networkMode": "bridge",
        "requiresCompatibilities": ["EC2"],
        "cpu": "1024",
        "memory": "2048",
        "pidMode": "task",
        "ipcMode": "task",
        "runtimePlatform": {"operatingSystemFamily": "LINUX", "cpuArchitecture": "ARM64"},
        "placementConstraints": [
            {"type": "memberOf", "expression": "attribute:ecs.instance-type =~ t3.*"}],
        "volumes": [
            {"name": "data", "host": {"sourcePath": "/srv/data"}},
            {"name": "scratch", "dockerVolumeConfiguration": {
                "scope": "shared", "autoprovision": True, "driver": "local",
                "driverOpts": {"type": "tmpfs", "device": "tmpfs"},
                "labels": {"purpose": "scratch"}}},
            {"name": "shared-fs", "efsVolumeConfiguration": {
                "fileSystemId": "fs-0123456789abcdef0", "rootDirectory": "/",
                "transitEncryption": "ENABLED", "transitEncryptionPort": 2049,
                "authorizationConfig": {"accessPointId": "fsap-0123456789abcdef0",
                                        "iam": "ENABLED"}}},
        ],
        "containerDefinitions": [
            {
                "name": "web",
                "image": "public.ecr.aws/nginx/nginx:1.27",
                "repositoryCredentials": {"credentialsParameter": SECRET},
                "cpu": 256,
                "memory": 512,
                "memoryReservation": 256,
                "links": ["db:database"],
                "portMappings": [
                    {"containerPort": 80, "hostPort": 8080, "protocol": "tcp"},
                    {"containerPort": 53, "hostPort": 5353, "protocol": "udp"},
                    {"containerPort": 9000, "hostPort": 9000, "protocol": "tcp"},
                ],
                "essential": True,
                "restartPolicy": {"enabled": True, "ignoredExitCodes": [0, 143],
                                  "restartAttemptPeriod": 180},
                "entryPoint": ["/bin/sh", "-c"],
                "command": ["exec nginx -g 'daemon off;'"],
                "environment": [{"name": "A", "value": "1"}, {"name": "B", "value": "two words"}],
                "environmentFiles": [{"value": "arn:aws:s3:::my-bucket/web.env", "type": "s3"}],
                "mountPoints": [
                    {"sourceVolume": "data", "containerPath": "/data", "readOnly": False},
                    {"sourceVolume": "scratch", "containerPath": "/scratch", "readOnly": True},
                ],
                "volumesFrom": [{"sourceContainer": "db", "readOnly": True}],
                "linuxParameters": {
                    "capabilities": {"add": ["NET_ADMIN"], "drop": ["MKNOD"]},
                    "devices": [{"hostPath": "/dev/fuse", "containerPath": "/dev/fuse",
                                 "permissions": ["read", "write"]}],
                    "initProcessEnabled": True,
                    "sharedMemorySize": 64,
                    "tmpfs": [{"containerPath": "/tmp", "size": 64,
                               "mountOptions": ["rw", "noexec"]}],
                    "maxSwap": 1024,
                    "swappiness": 60,
                },
                "secrets": [{"name": "TOKEN", "valueFrom": SECRET}],
                "dependsOn": [{"containerName": "db", "condition": "HEALTHY"}],
                "startTimeout": 60,
                "stopTimeout": 30,
                "versionConsistency": "disabled",
                "hostname": "web",
                "user": "1000:1000",
                "workingDirectory": "/srv",
                "disableNetworking": False,
                "privileged": False,
                "readonlyRootFilesystem": True,
                "dnsServers": ["10.0.0.2"],
                "dnsSearchDomains": ["example.internal"],
                "extraHosts": [{"hostname": "metadata", "ipAddress": "169.254.169.254"}],
                "dockerSecurityOptions": ["no-new-privileges"],
                "interactive": False,
                "pseudoTerminal": False,
                "dockerLabels": {"com.example.team": "web", "com.example.tier": "front"},
                "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 4096}],
                "logConfiguration": {"logDriver": "json-file",
                                     "options": {"max-size": "10m", "max-file": "3"}},
                "healthCheck": {"command": ["CMD", "curl", "-f", "http://localhost/"],
                                "interval": 10, "timeout": 3, "retries": 2, "startPeriod": 5},
                "systemControls": [{"namespace": "net.core.somaxconn", "value": "1024"}],
            },
            {
                "name": "db",
                "image": "postgres:16",
                "cpu": 256,
                "memory": 512,
                "essential": False,
                "resourceRequirements": [{"type": "GPU", "value": "1"}],
                "healthCheck": {"command": ["CMD-SHELL", "pg_isready -U postgres"],
                                "interval": 5, "timeout": 2, "retries": 5},
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {"awslogs-group": "/ecs/db", "awslogs-region": "us-east-1",
                                "awslogs-stream-prefix": "db"},
                    "secretOptions": [{"name": "token", "valueFrom": SECRET}],
                },
            },
        ],
    }


def kitchen_sink_fargate(family: str) -> dict:
    """awsvpc/Fargate-only fields: proxyConfiguration, ephemeralStorage, firelens, fault injection."""
    return {
        "family": family,
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "1024",
        "memory": "3072",
        "executionRoleArn": "arn:aws:iam::000000000000:role/exec",
        "ephemeralStorage": {"sizeInGiB": 50},
        "enableFaultInjection": True,
        "pidMode": "task",
        "runtimePlatform": {"operatingSystemFamily": "LINUX", "cpuArchitecture": "X86_64"},
        "proxyConfiguration": {
            "type": "APPMESH", "containerName": "envoy",
            "properties": [
                {"name": "IgnoredUID", "value": "1337"},
                {"name": "ProxyIngressPort", "value": "15000"},
                {"name": "ProxyEgressPort", "value": "15001"},
                {"name": "AppPorts", "value": "8080"},
                {"name": "EgressIgnoredIPs", "value": "169.254.170.2,169.254.169.254"},
            ]},
        "containerDefinitions": [
            {"name": "app", "image": "example/app:1", "essential": True,
             "portMappings": [{"containerPort": 8080, "hostPort": 8080, "protocol": "tcp",
                               "name": "app-http", "appProtocol": "http2"}],
             "logConfiguration": {"logDriver": "awsfirelens",
                                  "options": {"Name": "cloudwatch", "region": "us-east-1"}},
             "dependsOn": [{"containerName": "envoy", "condition": "START"}]},
            {"name": "envoy", "image": "public.ecr.aws/appmesh/aws-appmesh-envoy:v1.29",
             "essential": True, "user": "1337", "memoryReservation": 256},
            {"name": "log_router", "image": "public.ecr.aws/aws-observability/aws-for-fluent-bit:2",
             "essential": True,
             "firelensConfiguration": {"type": "fluentbit",
                                       "options": {"enable-ecs-log-metadata": "true"}}},
        ],
    }


# ---- register + describe ---------------------------------------------------------------------

def test_register_ec2_kitchen_sink_is_stored_faithfully(ecs, unique):
    family = unique("sink")
    body = kitchen_sink_ec2(family)
    reg = ecs.register_task_definition(**body)["taskDefinition"]
    assert_subset(body, reg)
    got = ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
    assert_subset(body, got)
    assert got["revision"] == 1
    assert got["status"] == "ACTIVE"
    assert got["taskDefinitionArn"] == arn("task-definition", f"{family}:1")
    assert "EC2" in got["compatibilities"]
    assert "FARGATE" not in got["compatibilities"]


def test_register_fargate_kitchen_sink_is_stored_faithfully(ecs, unique):
    family = unique("sinkfg")
    body = kitchen_sink_fargate(family)
    reg = ecs.register_task_definition(**body)["taskDefinition"]
    assert_subset(body, reg)
    got = ecs.describe_task_definition(taskDefinition=f"{family}:1")["taskDefinition"]
    assert_subset(body, got)
    assert {"EC2", "FARGATE"} <= set(got["compatibilities"])


def test_revisions_and_describe_forms(ecs, unique):
    family = unique("rev")
    before = time.time()
    r1 = ecs.register_task_definition(family=family, containerDefinitions=[
        simple_container(image="busybox:1")])["taskDefinition"]
    r2 = ecs.register_task_definition(family=family, containerDefinitions=[
        simple_container(image="busybox:2")])["taskDefinition"]
    assert (r1["revision"], r2["revision"]) == (1, 2)
    assert r1["taskDefinitionArn"] == arn("task-definition", f"{family}:1")
    assert r2["taskDefinitionArn"] == arn("task-definition", f"{family}:2")

    latest = ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
    assert latest["revision"] == 2
    assert latest["containerDefinitions"][0]["image"] == "busybox:2"
    first = ecs.describe_task_definition(taskDefinition=f"{family}:1")["taskDefinition"]
    assert first["containerDefinitions"][0]["image"] == "busybox:1"
    by_arn = ecs.describe_task_definition(taskDefinition=r1["taskDefinitionArn"])["taskDefinition"]
    assert by_arn["revision"] == 1

    for td in (first, latest):
        registered_at = td["registeredAt"].timestamp()  # boto3 parses epoch seconds
        assert before - 60 <= registered_at <= time.time() + 60
        assert isinstance(td["registeredBy"], str) and td["registeredBy"]
        assert td["family"] == family
        assert isinstance(td["requiresAttributes"], list)


def test_describe_unknown_task_definition(ecs, unique):
    family = unique("nope")
    msg = "Unable to describe task definition."
    expect_error(lambda: ecs.describe_task_definition(taskDefinition=family), "ClientException", msg)
    ecs.register_task_definition(family=family, containerDefinitions=[simple_container()])
    expect_error(lambda: ecs.describe_task_definition(taskDefinition=f"{family}:2"),
                 "ClientException", msg)
    expect_error(lambda: ecs.describe_task_definition(
        taskDefinition=arn("task-definition", f"{family}:9")), "ClientException", msg)


def test_describe_include_tags(gantry, ecs, unique):
    family = unique("tags")
    ecs.register_task_definition(family=family, containerDefinitions=[simple_container()],
                                 tags=[{"key": "team", "value": "a"}, {"key": "env", "value": "b"}])
    out = ecs.describe_task_definition(taskDefinition=family, include=["TAGS"])
    assert tags_dict(out["tags"]) == {"team": "a", "env": "b"}
    out = gantry.aws_ok("ecs", "describe-task-definition", "--task-definition", f"{family}:1",
                        "--include", "TAGS")
    assert tags_dict(out["tags"]) == {"team": "a", "env": "b"}


def test_container_defaults_are_filled(ecs, unique):
    family = unique("defaults")
    td = ecs.register_task_definition(family=family, containerDefinitions=[
        {"name": "only", "image": "busybox", "memory": 64}])["taskDefinition"]
    c = td["containerDefinitions"][0]
    # ECS fills `essential` (true unless told otherwise) and returns the empty lists.
    assert c["essential"] is True
    for key in ("portMappings", "environment", "mountPoints", "volumesFrom"):
        assert c[key] == [], (key, c)
    assert td["volumes"] == [] and td["placementConstraints"] == []


@pytest.mark.parametrize("cpu,memory,want_cpu,want_memory", [
    ("1 vCPU", "2 GB", "1024", "2048"),
    ("2 vcpu", "4 gb", "2048", "4096"),
    ("512", "1024", "512", "1024"),
])
def test_cpu_memory_units_are_normalised(ecs, unique, cpu, memory, want_cpu, want_memory):
    td = ecs.register_task_definition(family=unique("units"), cpu=cpu, memory=memory,
                                      containerDefinitions=[simple_container()])["taskDefinition"]
    assert (td["cpu"], td["memory"]) == (want_cpu, want_memory)


@pytest.mark.parametrize("cpu,memory", [
    ("256", "512"), ("256", "2048"), ("512", "4096"), ("1024", "3072"), ("2048", "16384"),
    ("4096", "30720"), ("8192", "61440"), ("16384", "122880"),
])
def test_valid_fargate_sizes(ecs, unique, cpu, memory):
    td = ecs.register_task_definition(
        family=unique("fgok"), networkMode="awsvpc", requiresCompatibilities=["FARGATE"],
        cpu=cpu, memory=memory,
        containerDefinitions=[{"name": "a", "image": "busybox"}])["taskDefinition"]
    assert "FARGATE" in td["compatibilities"]


# ---- deregister / delete ---------------------------------------------------------------------

def test_deregister(gantry, ecs, unique):
    family = unique("dereg")
    for _ in range(3):
        ecs.register_task_definition(family=family, containerDefinitions=[simple_container()])
    out = gantry.aws_ok("ecs", "deregister-task-definition", "--task-definition", f"{family}:3")
    assert out["taskDefinition"]["status"] == "INACTIVE"
    assert isinstance(out["taskDefinition"]["deregisteredAt"], (int, float))
    td = ecs.deregister_task_definition(
        taskDefinition=arn("task-definition", f"{family}:1"))["taskDefinition"]
    assert td["status"] == "INACTIVE" and td["revision"] == 1

    # The family name alone resolves to the latest ACTIVE revision.
    assert ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]["revision"] == 2
    inactive = ecs.describe_task_definition(taskDefinition=f"{family}:3")["taskDefinition"]
    assert inactive["status"] == "INACTIVE"

    arns = ecs.list_task_definitions(familyPrefix=family)["taskDefinitionArns"]
    assert arns == [arn("task-definition", f"{family}:2")]
    arns = ecs.list_task_definitions(familyPrefix=family, status="INACTIVE")["taskDefinitionArns"]
    assert arns == [arn("task-definition", f"{family}:1"), arn("task-definition", f"{family}:3")]

    # A new revision continues after the highest one, deregistered or not.
    td = ecs.register_task_definition(family=family,
                                      containerDefinitions=[simple_container()])["taskDefinition"]
    assert td["revision"] == 4


def test_deregister_errors(ecs, unique):
    family = unique("deregerr")
    ecs.register_task_definition(family=family, containerDefinitions=[simple_container()])
    expect_error(lambda: ecs.deregister_task_definition(taskDefinition=f"{family}:7"),
                 ("ClientException", "InvalidParameterException"))
    expect_error(lambda: ecs.deregister_task_definition(taskDefinition=family),
                 ("ClientException", "InvalidParameterException"))
    expect_error(lambda: ecs.deregister_task_definition(taskDefinition=f"{unique('ghost')}:1"),
                 ("ClientException", "InvalidParameterException"))


def test_delete_task_definitions(gantry, ecs, unique):
    family, ghost = unique("del"), unique("ghost")
    for _ in range(3):
        ecs.register_task_definition(family=family, containerDefinitions=[simple_container()])
    ecs.deregister_task_definition(taskDefinition=f"{family}:1")
    ecs.deregister_task_definition(taskDefinition=f"{family}:2")

    out = ecs.delete_task_definitions(taskDefinitions=[
        f"{family}:1", arn("task-definition", f"{family}:3"), f"{ghost}:1"])
    assert [(t["taskDefinitionArn"], t["status"]) for t in out["taskDefinitions"]] == [
        (arn("task-definition", f"{family}:1"), "DELETE_IN_PROGRESS")]
    failures = {f["arn"]: f for f in out["failures"]}
    assert len(failures) == 2, out["failures"]
    active = [f for a, f in failures.items() if a.endswith(f"{family}:3")]
    assert active and "ACTIVE" in active[0]["reason"], out["failures"]
    assert [a for a in failures if a.endswith(f"{ghost}:1")], out["failures"]

    out = gantry.aws_ok("ecs", "delete-task-definitions", "--task-definitions", f"{family}:2")
    assert out["taskDefinitions"][0]["status"] == "DELETE_IN_PROGRESS"
    assert out["failures"] == []

    deleting = ecs.list_task_definitions(familyPrefix=family,
                                         status="DELETE_IN_PROGRESS")["taskDefinitionArns"]
    assert deleting == [arn("task-definition", f"{family}:1"), arn("task-definition", f"{family}:2")]
    assert ecs.list_task_definitions(familyPrefix=family,
                                     status="INACTIVE")["taskDefinitionArns"] == []
    assert ecs.list_task_definitions(familyPrefix=family)["taskDefinitionArns"] == [
        arn("task-definition", f"{family}:3")]


def test_delete_task_definitions_bad_input(ecs, unique):
    expect_error(lambda: ecs.delete_task_definitions(taskDefinitions=[]),
                 "InvalidParameterException")
    family = unique("many")
    expect_error(lambda: ecs.delete_task_definitions(
        taskDefinitions=[f"{family}:{i}" for i in range(1, 12)]), "InvalidParameterException")


# ---- ListTaskDefinitions ---------------------------------------------------------------------

def register_n(ecs, family, n):
    for _ in range(n):
        ecs.register_task_definition(family=family, containerDefinitions=[simple_container()])


def test_list_task_definitions_prefix_is_exact_family_and_sorted(gantry, ecs, unique):
    base = unique("ltd")
    web, webapp, api = f"{base}-web", f"{base}-webapp", f"{base}-api"
    register_n(ecs, web, 3)
    register_n(ecs, webapp, 1)
    register_n(ecs, api, 2)

    everything = [arn("task-definition", x) for x in
                  [f"{api}:1", f"{api}:2", f"{web}:1", f"{web}:2", f"{web}:3", f"{webapp}:1"]]
    assert ecs.list_task_definitions()["taskDefinitionArns"] == everything
    assert ecs.list_task_definitions(sort="DESC")["taskDefinitionArns"] == everything[::-1]

    only_web = [arn("task-definition", f"{web}:{i}") for i in (1, 2, 3)]
    assert ecs.list_task_definitions(familyPrefix=web)["taskDefinitionArns"] == only_web
    out = gantry.aws_ok("ecs", "list-task-definitions", "--family-prefix", web, "--sort", "DESC")
    assert out["taskDefinitionArns"] == only_web[::-1]
    # A prefix that is not a whole family matches nothing.
    assert ecs.list_task_definitions(familyPrefix=f"{base}-we")["taskDefinitionArns"] == []


def test_list_task_definitions_invalid_status(ecs):
    expect_error(lambda: ecs.list_task_definitions(status="SLEEPING"), "InvalidParameterException")


# ---- ListTaskDefinitionFamilies --------------------------------------------------------------

def three_families(ecs, unique):
    """alpha: one ACTIVE revision left; alpine: none ACTIVE; beta: ACTIVE."""
    base = unique("fam")
    alpha, alpine, beta = f"{base}-alpha", f"{base}-alpine", f"{base}-beta"
    register_n(ecs, alpha, 2)
    register_n(ecs, alpine, 2)
    register_n(ecs, beta, 1)
    ecs.deregister_task_definition(taskDefinition=f"{alpha}:1")
    ecs.deregister_task_definition(taskDefinition=f"{alpine}:1")
    ecs.deregister_task_definition(taskDefinition=f"{alpine}:2")
    return base, alpha, alpine, beta


def test_list_task_definition_families_status_filter(gantry, ecs, unique):
    base, alpha, alpine, beta = three_families(ecs, unique)

    def fams(**kw):
        return ecs.list_task_definition_families(**kw)["families"]

    assert fams(familyPrefix=base, status="ALL") == [alpha, alpine, beta]
    assert fams(familyPrefix=base, status="ACTIVE") == [alpha, beta]
    assert fams(familyPrefix=base, status="INACTIVE") == [alpine]
    # familyPrefix here is a real prefix.
    assert fams(familyPrefix=f"{base}-alp", status="ALL") == [alpha, alpine]
    out = gantry.aws_ok("ecs", "list-task-definition-families", "--family-prefix", f"{base}-alp",
                        "--status", "ACTIVE")
    assert out["families"] == [alpha]
    assert fams(familyPrefix=unique("none"), status="ALL") == []


def test_list_task_definition_families_default_is_all(ecs, unique):
    # API reference: "By default, both ACTIVE and INACTIVE task definition families are listed."
    base, alpha, alpine, beta = three_families(ecs, unique)
    assert ecs.list_task_definition_families(familyPrefix=base)["families"] == [
        alpha, alpine, beta]
