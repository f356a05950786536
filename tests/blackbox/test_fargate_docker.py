"""FARGATE tasks on `gantry up`: its in-process agent is the Fargate capacity of the host. Tasks
use awsvpc: each gets its own IP on a Gantry network (reported in the ENI attachment), and its
containers share one network namespace, reaching each other on localhost. No container instance
is involved, as in ECS.

Needs Docker (see conftest.py's docker_run_id) and the local test image.
"""

from __future__ import annotations

import http.client
import json

import pytest

import signal

from harness import busybox_container, docker_ids, docker_inspect, wait_for

HTTPD = ["httpd", "-f", "-p", "8080", "-h", "/www"]
# Exits 0 once it has fetched the main container's page over localhost, 1 if it never could.
SIDECAR = ["sh", "-c", "for i in $(seq 1 40); do wget -q -O /dev/null http://localhost:8080/ && exit 0; "
           "sleep 0.25; done; exit 1"]


def test_fargate_awsvpc_task_gets_its_own_ip_and_a_shared_localhost(spawn_server, docker_run_id, unique):
    up = spawn_server("up", command="up")
    cluster = unique("fargate")
    up.aws_ok("ecs", "create-cluster", "--cluster-name", cluster)
    family = unique("web")
    up.aws_ok("ecs", "register-task-definition", "--family", family, "--network-mode", "awsvpc",
              "--requires-compatibilities", "FARGATE", "--cpu", "256", "--memory", "512",
              "--container-definitions", json.dumps([
                  busybox_container("web", docker_run_id, memory=None, command=HTTPD,
                                    portMappings=[{"containerPort": 8080}]),
                  busybox_container("side", docker_run_id, memory=None, command=SIDECAR, essential=False),
              ]))
    # The Fargate node registers itself shortly after the API is up.
    def run():
        out = up.aws_ok("ecs", "run-task", "--cluster", cluster, "--launch-type", "FARGATE",
                        "--task-definition", family, "--network-configuration",
                        "awsvpcConfiguration={subnets=[subnet-local],assignPublicIp=DISABLED}")
        return out["tasks"][0] if out["tasks"] else None

    task = wait_for(run, 20, interval=0.2, what="Fargate capacity")
    arn = task["taskArn"]
    assert task["launchType"] == "FARGATE"
    assert "containerInstanceArn" not in task
    assert task["attachments"][0]["type"] == "ElasticNetworkInterface"
    rc, err = up.aws("ecs", "wait", "tasks-running", "--cluster", cluster, "--tasks", arn)
    assert rc == 0, err

    # The sidecar reached the main container on localhost and exited 0 (it is not essential).
    def side_done():
        t = up.ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]
        side = next(c for c in t["containers"] if c["name"] == "side")
        return t if side.get("exitCode") is not None else None

    t = wait_for(side_done, 30, interval=0.2, what="the sidecar to finish")
    side = next(c for c in t["containers"] if c["name"] == "side")
    assert side["exitCode"] == 0, t
    assert t["lastStatus"] == "RUNNING"

    # The task's own IP, in the attachment and on the containers, answers from the host.
    att = t["attachments"][0]
    details = {d["name"]: d["value"] for d in att["details"]}
    ip = details["privateIPv4Address"]
    assert ip and att["status"] == "ATTACHED", att
    web = next(c for c in t["containers"] if c["name"] == "web")
    assert web["networkInterfaces"][0]["privateIpv4Address"] == ip
    conn = http.client.HTTPConnection(ip, 8080, timeout=5)
    conn.request("GET", "/")
    assert conn.getresponse().status == 200

    # Stopping removes every container of the task, the namespace holder included.
    up.aws_ok("ecs", "stop-task", "--cluster", cluster, "--task", arn)
    rc, err = up.aws("ecs", "wait", "tasks-stopped", "--cluster", cluster, "--tasks", arn)
    assert rc == 0, err
    stopped = up.ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]
    assert stopped["stopCode"] == "UserInitiated"
    wait_for(lambda: not docker_ids({"gantry.task-arn": arn}), 15, what="the task's containers to go")


def test_fargate_task_without_network_configuration_is_rejected(spawn_server, unique):
    up = spawn_server("up2", command="up")
    cluster = unique("fargate")
    up.ecs.create_cluster(clusterName=cluster)
    family = unique("web")
    up.ecs.register_task_definition(family=family, networkMode="awsvpc", requiresCompatibilities=["FARGATE"],
                                    cpu="256", memory="512",
                                    containerDefinitions=[{"name": "web", "image": "gantry-test/busybox:latest"}])
    rc, err = up.aws("ecs", "run-task", "--cluster", cluster, "--launch-type", "FARGATE", "--task-definition", family)
    assert rc != 0 and "InvalidParameterException" in err and "Network Configuration must be provided" in err, err


def test_a_task_given_an_earlier_tasks_address_answers_at_once(spawn_server, docker_run_id, unique):
    """Each awsvpc task's interface has a MAC address of its own (the credentials endpoint's
    route is keyed on it), and the engine hands a freed address to the next task. The host must
    then reach the new task at once, not send its packets to the departed task's MAC address
    until its neighbor entry expires (tens of seconds while other tasks keep the bridge up).
    No ready namespace holders here: a ready holder has its address before the task comes, so
    the freed address would go to the next holder made, not to the next task."""
    up = spawn_server("up3", command="up", extra_args=["--fargate-holder-pool", "0"])
    cluster = unique("fargate")
    up.ecs.create_cluster(clusterName=cluster)
    family = unique("web")
    up.ecs.register_task_definition(
        family=family, networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
        containerDefinitions=[busybox_container("web", docker_run_id, memory=None, command=HTTPD,
                                                portMappings=[{"containerPort": 8080}])])
    net = {"awsvpcConfiguration": {"subnets": ["subnet-local"], "assignPublicIp": "DISABLED"}}

    def run_one() -> tuple[str, str]:
        def run():
            out = up.ecs.run_task(cluster=cluster, taskDefinition=family, launchType="FARGATE",
                                  networkConfiguration=net)
            return out["tasks"][0]["taskArn"] if out["tasks"] else None

        arn = wait_for(run, 20, interval=0.2, what="Fargate capacity")
        up.ecs.get_waiter("tasks_running").wait(cluster=cluster, tasks=[arn], WaiterConfig={"Delay": 1})
        t = up.ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]
        details = {d["name"]: d["value"] for d in t["attachments"][0]["details"]}
        return arn, details["privateIPv4Address"]

    def get(ip: str) -> int:
        conn = http.client.HTTPConnection(ip, 8080, timeout=3)
        conn.request("GET", "/")
        return conn.getresponse().status

    # One task keeps the bridge up (a bridge without ports forgets every entry).
    run_one()
    first, first_ip = run_one()
    assert get(first_ip) == 200
    up.ecs.stop_task(cluster=cluster, task=first)
    up.ecs.get_waiter("tasks_stopped").wait(cluster=cluster, tasks=[first], WaiterConfig={"Delay": 1})
    wait_for(lambda: not docker_ids({"gantry.task-arn": first}), 15, what="the first task's containers to go")

    second, second_ip = run_one()
    if second_ip != first_ip:
        pytest.skip(f"the engine gave the next task a new address ({second_ip}, not {first_ip})")
    assert get(second_ip) == 200


def test_ready_holders_go_to_tasks_and_go_away_with_gantry_up(spawn_server, docker_run_id, unique):
    """`gantry up` keeps two awsvpc namespace holders ready: a task takes one (renamed after the
    task, its containers in its namespace), the pool is made full again, and a `gantry up` that
    stops removes the ready ones, leaving the task's."""
    up = spawn_server("up4", command="up")
    node_file = up.data_dir / "fargate" / "fargate-node-id"
    wait_for(node_file.exists, 20, what="the Fargate node")
    pool = {"gantry.holder-pool": f"fargate:{node_file.read_text().strip()}"}

    def ready() -> dict[str, str]:
        return {c["Name"].lstrip("/"): c["Id"] for c in docker_inspect(docker_ids(pool))
                if c["Name"].lstrip("/").startswith("ecs-internalecspause-pool-")
                and c["State"]["Running"]}

    before = wait_for(lambda: (r := ready()) and len(r) == 2 and r, 30, what="two ready holders")
    cluster = unique("pool")
    up.ecs.create_cluster(clusterName=cluster)
    family = unique("web")
    up.ecs.register_task_definition(
        family=family, networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
        containerDefinitions=[busybox_container("web", docker_run_id, memory=None, command=HTTPD)])
    arn = up.ecs.run_task(cluster=cluster, taskDefinition=family, launchType="FARGATE", networkConfiguration={
        "awsvpcConfiguration": {"subnets": ["subnet-local"]}})["tasks"][0]["taskArn"]
    up.ecs.get_waiter("tasks_running").wait(cluster=cluster, tasks=[arn], WaiterConfig={"Delay": 1})
    task_id = arn.rsplit("/", 1)[-1]
    holder = docker_inspect([f"ecs-internalecspause-{task_id}"])
    assert len(holder) == 1 and holder[0]["Id"] in before.values(), (holder, before)
    web = docker_inspect(docker_ids({"gantry.task-arn": arn}))
    assert [c["HostConfig"]["NetworkMode"] for c in web] == [f"container:{holder[0]['Id']}"]
    refilled = wait_for(lambda: (r := ready()) and len(r) == 2 and r, 30, what="the pool made full again")
    assert holder[0]["Id"] not in refilled.values()

    # Stopped (SIGTERM, not the harness's clean-up): the ready holders go, the task's stays.
    up.proc.send_signal(signal.SIGTERM)
    up.proc.wait(timeout=30)
    assert ready() == {}
    assert [c["Id"] for c in docker_inspect([f"ecs-internalecspause-{task_id}"])] == [holder[0]["Id"]]
