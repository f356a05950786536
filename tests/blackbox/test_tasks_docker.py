"""Tasks run for real: `gantry agent` registers this host as an EC2 container instance and runs
tasks as Docker containers, reported through the ECS API as ECS reports them.

Needs a Docker daemon (the module is skipped without one) and builds `gantry-test/busybox`
locally with tests/images/build.sh: nothing is pulled from a registry. A dedicated server and
agent serve the whole session (fixtures in conftest.py); tests that kill or restart an agent
start one of their own on a cluster of their own.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import time
from datetime import datetime, timezone

import pytest

from harness import (EPHEMERAL_PORTS, docker, docker_ids, docker_inspect, free_port,
                     resource_value, task_containers, wait_for)

HTTPD = ["httpd", "-f", "-p", "8080", "-h", "/www"]


def docker_time(value: str) -> datetime:
    """Docker's RFC 3339 times have nanoseconds; datetime takes microseconds."""
    date, _, frac = value.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{date}.{(frac + '000000')[:6]}").replace(tzinfo=timezone.utc)


def http_get(port: int, path: str = "/", timeout: float = 2) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def by_name(task: dict) -> dict[str, dict]:
    return {c["name"]: c for c in task["containers"]}


# ---- the headline flows, with the AWS CLI ------------------------------------------------------

@pytest.fixture(scope="module")
def httpd_task(docker_cluster, docker_run_id):
    """An httpd task on a dynamic host port, started with `aws ecs run-task` and awaited with
    `aws ecs wait tasks-running` (shared by the run and the stop tests, in that order)."""
    node = docker_cluster
    fam = f"httpd-{docker_run_id}"
    node.aws_ok("ecs", "register-task-definition", "--family", fam, "--container-definitions",
                json.dumps([node.container("web", command=HTTPD,
                                           portMappings=[{"containerPort": 8080}])]))
    out = node.aws_ok("ecs", "run-task", "--cluster", node.cluster, "--task-definition", fam,
                      "--started-by", "blackbox")
    assert out["failures"] == [], out
    [task] = out["tasks"]
    rc, err = node.aws_wait("tasks-running", task["taskArn"])
    yield {"arn": task["taskArn"], "wait_rc": rc, "wait_err": err, "run": task}
    node.ecs.stop_task(cluster=node.cluster, task=task["taskArn"])


def test_httpd_on_dynamic_host_port(node, httpd_task):
    assert httpd_task["run"]["containerInstanceArn"] == node.agent.instance_arn
    assert httpd_task["run"]["launchType"] == "EC2"
    assert httpd_task["wait_rc"] == 0, f"aws ecs wait tasks-running: {httpd_task['wait_err']}"
    out = node.aws_ok("ecs", "describe-tasks", "--cluster", node.cluster,
                      "--tasks", httpd_task["arn"])
    [task] = out["tasks"]
    assert task["lastStatus"] == "RUNNING" and task["desiredStatus"] == "RUNNING"
    times = {k: task.get(k) for k in ("createdAt", "pullStartedAt", "pullStoppedAt",
                                      "startedAt")}
    assert all(times.values()), f"timestamps missing: {times}"
    assert times["createdAt"] <= times["pullStartedAt"] <= times["pullStoppedAt"] \
        <= times["startedAt"], times
    [web] = task["containers"]
    assert web["lastStatus"] == "RUNNING"
    assert web.get("runtimeId"), web
    [binding] = web["networkBindings"]
    assert binding["containerPort"] == 8080 and binding["protocol"] == "tcp", binding
    port = binding["hostPort"]
    assert port in EPHEMERAL_PORTS, f"hostPort {port} outside ECS's ephemeral range"

    # RUNNING means the container started, not that httpd listens yet: allow it a moment.
    def get():
        try:
            return http_get(port)
        except OSError:
            return None
    status, body = wait_for(get, 10, interval=0.1, what=f"httpd on 127.0.0.1:{port}")
    assert status == 200 and b"gantry test page" in body, (status, body)

    # The runtimeId is the Docker container, which publishes that port.
    [c] = task_containers(httpd_task["arn"]).values()
    assert c["Id"] == web["runtimeId"]
    labels = c["Config"]["Labels"]
    assert labels.get("gantry.node") == node.agent.instance_arn, labels
    assert labels.get("gantry.container-name") == "web", labels
    assert labels.get("gantry.cluster") in (node.cluster, task["clusterArn"]), labels
    published = c["NetworkSettings"]["Ports"]["8080/tcp"]
    assert str(port) in {p["HostPort"] for p in published}, published


def test_stop_task_with_reason(node, httpd_task):
    task_arn = httpd_task["arn"]
    assert task_containers(task_arn), "the httpd task has no container to stop"
    out = node.aws_ok("ecs", "stop-task", "--cluster", node.cluster, "--task", task_arn,
                      "--reason", "black-box says stop")
    assert out["task"]["desiredStatus"] == "STOPPED", out
    rc, err = node.aws_wait("tasks-stopped", task_arn)
    assert rc == 0, f"aws ecs wait tasks-stopped: {err}"
    [task] = node.aws_ok("ecs", "describe-tasks", "--cluster", node.cluster,
                         "--tasks", task_arn)["tasks"]
    assert task["lastStatus"] == "STOPPED" and task["desiredStatus"] == "STOPPED"
    assert task.get("stopCode") == "UserInitiated", task
    assert task.get("stoppedReason") == "black-box says stop", task
    for field in ("stoppingAt", "executionStoppedAt", "stoppedAt"):
        assert task.get(field), f"{field} missing: {task}"
    [web] = task["containers"]
    assert web["lastStatus"] == "STOPPED"
    assert isinstance(web.get("exitCode"), int), web
    # Stopping a task removes its containers.
    wait_for(lambda: not docker_ids({"gantry.task-arn": task_arn}), 10, interval=0.1,
             what="the task's containers to be removed")


def test_essential_container_exit_code(node, unique):
    fam = unique("exit3")
    node.aws_ok("ecs", "register-task-definition", "--family", fam, "--container-definitions",
                json.dumps([node.container("main", command=["sh", "-c", "exit 3"])]))
    # Two at once: the container exits as soon as it starts, which is racy for an agent.
    out = node.aws_ok("ecs", "run-task", "--cluster", node.cluster, "--task-definition", fam,
                      "--count", "2")
    arns = [t["taskArn"] for t in out["tasks"]]
    assert len(arns) == 2, out
    node.started += arns
    for task_arn in arns:
        rc, err = node.aws_wait("tasks-stopped", task_arn, timeout=30)
        assert rc == 0, f"aws ecs wait tasks-stopped: {err}"
    for task in node.aws_ok("ecs", "describe-tasks", "--cluster", node.cluster,
                            "--tasks", *arns)["tasks"]:
        assert task["lastStatus"] == "STOPPED"
        assert task["desiredStatus"] == "STOPPED"
        assert task.get("stopCode") == "EssentialContainerExited", task
        assert task.get("stoppedReason") == "Essential container in task exited", task
        [main] = task["containers"]
        assert main["lastStatus"] == "STOPPED"
        assert main.get("exitCode") == 3, main


def test_overrides_command_and_environment(node, unique):
    td = node.register(unique("override"), [node.container(
        "main", environment=[{"name": "CODE", "value": "4"}], command=["sleep", "600"])])
    task = node.run(td, overrides={"containerOverrides": [{
        "name": "main", "command": ["sh", "-c", "sleep 1; exit $CODE"],
        "environment": [{"name": "CODE", "value": "5"}]}]})
    task = node.wait_status(task["taskArn"], "STOPPED", timeout=30)
    assert task["containers"][0].get("exitCode") == 5, task["containers"][0]
    assert task.get("stopCode") == "EssentialContainerExited"


def test_too_large_for_the_instance(node, unique):
    fam = unique("huge")
    node.aws_ok("ecs", "register-task-definition", "--family", fam, "--container-definitions",
                json.dumps([node.container("main", memory=10_000_000)]))
    out = node.aws_ok("ecs", "run-task", "--cluster", node.cluster, "--task-definition", fam)
    assert out["tasks"] == [], out
    assert out["failures"] == [{"arn": node.agent.instance_arn, "reason": "RESOURCE:MEMORY"}], out
    listed = node.aws_ok("ecs", "list-tasks", "--cluster", node.cluster, "--family", fam)
    assert listed["taskArns"] == []

    fam = unique("hungry")
    total_cpu = resource_value(node.agent.describe()["registeredResources"], "CPU")
    node.ecs.register_task_definition(family=fam, containerDefinitions=[
        node.container("main", cpu=total_cpu + 1024)])
    out = node.ecs.run_task(cluster=node.cluster, taskDefinition=fam)
    assert out["tasks"] == [], out
    assert [(f["arn"], f["reason"]) for f in out["failures"]] == [
        (node.agent.instance_arn, "RESOURCE:CPU")], out


# ---- failures ----------------------------------------------------------------------------------

def test_static_host_port_taken(node, unique):
    """A static host port is a resource of the instance: a second task wanting it is not
    placed (RESOURCE:PORTS), and the first one serves on it."""
    port = free_port()
    td = node.register(unique("static"), [node.container(
        "web", command=HTTPD, portMappings=[{"containerPort": 8080, "hostPort": port}])])
    first = node.wait_status(node.run(td)["taskArn"], "RUNNING")
    [binding] = first["containers"][0]["networkBindings"]
    assert binding["hostPort"] == port, binding
    out = node.ecs.run_task(cluster=node.cluster, taskDefinition=td)
    assert out["tasks"] == [], out
    assert [(f["arn"], f["reason"]) for f in out["failures"]] == [
        (node.agent.instance_arn, "RESOURCE:PORTS")], out

def test_missing_image_cannot_pull(node, unique):
    fam = unique("noimage")
    td = node.register(fam, [node.container("main", image="gantry-test/does-not-exist:1")])
    started = time.monotonic()
    task = node.run(td)
    task = node.wait_status(task["taskArn"], "STOPPED", timeout=30)
    elapsed = time.monotonic() - started
    assert elapsed < 30
    assert task.get("stopCode") == "TaskFailedToStart", task
    assert task.get("stoppedReason", "").startswith("CannotPullContainerError"), task
    [main] = task["containers"]
    assert main["lastStatus"] == "STOPPED"
    assert main.get("reason", "").startswith("CannotPullContainerError"), main
    assert not task.get("startedAt"), f"a task that never started has startedAt: {task}"
    assert docker_ids({"gantry.task-arn": task["taskArn"]}) == [], "nothing is left half-started"


def test_static_host_port_held_by_another_process(node, unique):
    """A static host port that something outside Gantry listens on: the task fails to start,
    ECS-style, and leaves no container behind."""
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        port = holder.getsockname()[1]
        td = node.register(unique("held"), [node.container(
            "web", command=HTTPD, portMappings=[{"containerPort": 8080, "hostPort": port}])])
        task = node.wait_status(node.run(td)["taskArn"], "STOPPED", timeout=30)
    assert task.get("stopCode") == "TaskFailedToStart", task
    assert task.get("stoppedReason", "").startswith("CannotStartContainerError"), task
    assert task["containers"][0].get("reason", "").startswith("CannotStartContainerError")
    assert docker_ids({"gantry.task-arn": task["taskArn"]}) == [], "nothing is left half-started"


# ---- container-definition fields ---------------------------------------------------------------

def test_depends_on_success(node, unique):
    """b waits for a to exit 0: a's exit comes before b's start (Docker's own times)."""
    fam = unique("deps")
    td = node.register(fam, [
        node.container("a", essential=False, command=["sh", "-c", "sleep 1; exit 0"]),
        node.container("b", dependsOn=[{"containerName": "a", "condition": "SUCCESS"}]),
    ])
    task = node.run(td)
    task = node.wait_task(task["taskArn"], lambda t: by_name(t)["b"]["lastStatus"] == "RUNNING",
                          timeout=30, what="container b RUNNING")
    assert task["lastStatus"] == "RUNNING", "a non-essential container's exit stops nothing"
    a = by_name(task)["a"]
    assert a["lastStatus"] == "STOPPED" and a.get("exitCode") == 0, a
    containers = task_containers(task["taskArn"])
    assert set(containers) == {"a", "b"}, f"containers in Docker: {sorted(containers)}"
    a_finished = docker_time(containers["a"]["State"]["FinishedAt"])
    b_started = docker_time(containers["b"]["State"]["StartedAt"])
    a_started = docker_time(containers["a"]["State"]["StartedAt"])
    assert a_started < a_finished <= b_started, \
        f"a ran {a_started}..{a_finished}, b started {b_started}"


def test_depends_on_complete_and_start(node, unique):
    """COMPLETE is met by any exit (here 1); START as soon as the dependency started."""
    fam = unique("deps2")
    td = node.register(fam, [
        node.container("c", essential=False, command=["sh", "-c", "sleep 1; exit 1"]),
        node.container("d", dependsOn=[{"containerName": "c", "condition": "COMPLETE"}]),
        node.container("e", dependsOn=[{"containerName": "d", "condition": "START"}]),
    ])
    task = node.run(td)
    task = node.wait_task(
        task["taskArn"],
        lambda t: all(by_name(t)[n]["lastStatus"] == "RUNNING" for n in ("d", "e")),
        timeout=30, what="containers d and e RUNNING")
    assert by_name(task)["c"].get("exitCode") == 1
    containers = task_containers(task["taskArn"])
    assert set(containers) == {"c", "d", "e"}, f"containers in Docker: {sorted(containers)}"
    c_finished = docker_time(containers["c"]["State"]["FinishedAt"])
    d_started = docker_time(containers["d"]["State"]["StartedAt"])
    e_started = docker_time(containers["e"]["State"]["StartedAt"])
    assert c_finished <= d_started, f"c finished {c_finished}, d started {d_started}"
    assert d_started <= e_started, f"d started {d_started}, e started {e_started}"


def test_health_checks(node, unique):
    def health(cmd):
        return {"command": ["CMD-SHELL", cmd], "interval": 5, "retries": 1, "startPeriod": 0,
                "timeout": 2}
    good = node.run(node.register(unique("healthy"),
                                  [node.container("main", healthCheck=health("true"))]))
    bad = node.run(node.register(unique("unhealthy"),
                                 [node.container("main", healthCheck=health("false"))]))
    plain = node.run(node.register(unique("nocheck"), [node.container("main")]))

    good = node.wait_task(good["taskArn"], lambda t: t["containers"][0].get("healthStatus")
                          not in (None, "UNKNOWN") and t.get("healthStatus") != "UNKNOWN",
                          timeout=30, what="a health status")
    assert good["containers"][0]["healthStatus"] == "HEALTHY", good["containers"][0]
    assert good["healthStatus"] == "HEALTHY", good
    bad = node.wait_task(bad["taskArn"], lambda t: t["containers"][0].get("healthStatus")
                         not in (None, "UNKNOWN") and t.get("healthStatus") != "UNKNOWN",
                         timeout=30, what="a health status")
    assert bad["containers"][0]["healthStatus"] == "UNHEALTHY", bad["containers"][0]
    assert bad["healthStatus"] == "UNHEALTHY", bad
    assert bad["lastStatus"] == "RUNNING", "an unhealthy standalone task keeps running"
    # The check is Docker's own.
    [c] = task_containers(good["taskArn"]).values()
    assert c["Config"]["Healthcheck"]["Test"] == ["CMD-SHELL", "true"], c["Config"]
    assert c["Config"]["Healthcheck"]["Interval"] == 5 * 10**9

    plain = node.wait_status(plain["taskArn"], "RUNNING")
    assert plain["containers"][0].get("healthStatus", "UNKNOWN") == "UNKNOWN"
    assert plain["healthStatus"] == "UNKNOWN"


def test_cpu_and_memory_limits(node, unique):
    td = node.register(unique("limits"), [
        node.container("hard", cpu=256, memory=96, memoryReservation=48),
        node.container("soft", memory=None, memoryReservation=40),
    ])
    task = node.wait_status(node.run(td)["taskArn"], "RUNNING")
    containers = task_containers(task["taskArn"])
    hard = containers["hard"]["HostConfig"]
    soft = containers["soft"]["HostConfig"]
    assert hard["Memory"] == 96 * 1048576, hard["Memory"]
    assert hard["MemoryReservation"] == 48 * 1048576, hard["MemoryReservation"]
    assert hard["CpuShares"] == 256, hard["CpuShares"]
    assert soft["Memory"] == 0, soft["Memory"]
    assert soft["MemoryReservation"] == 40 * 1048576, soft["MemoryReservation"]


def test_stop_timeout_and_init_process(node, unique):
    """Busybox as PID 1 ignores SIGTERM: stopTimeout 2 ends in SIGKILL (137) after ~2 s; with
    initProcessEnabled, Docker's init forwards SIGTERM and the container exits at once (143)."""
    stubborn = node.run(node.register(unique("stubborn"), [node.container("main")]))
    inited = node.run(node.register(unique("inited"), [node.container(
        "main", stopTimeout=20, linuxParameters={"initProcessEnabled": True})]))
    for t in (stubborn, inited):
        node.wait_status(t["taskArn"], "RUNNING")
    [c] = task_containers(inited["taskArn"]).values()
    assert c["HostConfig"].get("Init") is True, c["HostConfig"].get("Init")

    took = {}
    for name, t in (("stubborn", stubborn), ("inited", inited)):
        started = time.monotonic()
        node.ecs.stop_task(cluster=node.cluster, task=t["taskArn"])
        t = node.wait_status(t["taskArn"], "STOPPED", timeout=30)
        took[name] = (time.monotonic() - started, t["containers"][0].get("exitCode"))
    assert took["stubborn"][1] == 137 and 1.5 <= took["stubborn"][0] < 12, took
    assert took["inited"][1] == 143 and took["inited"][0] < 10, took


def test_list_tasks_filters(node, unique):
    fam_a, fam_b = unique("lta"), unique("ltb")
    node.aws_ok("ecs", "register-task-definition", "--family", fam_a, "--container-definitions",
                json.dumps([node.container("main")]))
    node.aws_ok("ecs", "register-task-definition", "--family", fam_b, "--container-definitions",
                json.dumps([node.container("main")]))
    starter = unique("starter")[:36]
    a = node.run(fam_a, startedBy=starter)["taskArn"]
    b = node.run(fam_b)["taskArn"]

    def ls(*args):
        return node.aws_ok("ecs", "list-tasks", "--cluster", node.cluster, *args)["taskArns"]
    assert ls("--started-by", starter) == [a]
    assert ls("--family", fam_a) == [a]
    assert ls("--family", fam_b) == [b]
    assert ls("--family", fam_a, "--desired-status", "STOPPED") == []

    node.ecs.stop_task(cluster=node.cluster, task=a, reason="listing")
    assert ls("--family", fam_a, "--desired-status", "STOPPED") == [a]
    assert ls("--family", fam_a) == [], "desiredStatus defaults to RUNNING"
    assert ls("--started-by", starter, "--desired-status", "STOPPED") == [a]
    assert a not in ls("--desired-status", "RUNNING")
    assert b in ls("--desired-status", "RUNNING")
    assert ls("--container-instance", node.agent.instance_arn, "--family", fam_b) == [b]


# ---- agents: instances, connection and restarts -------------------------------------------------

def test_container_instance_resources_and_connection(spawn_agent, unique):
    node = spawn_agent("res")
    agent = node.agent
    ci = agent.describe()
    assert ci["agentConnected"] is True
    assert ci["status"] == "ACTIVE"
    total_mem = resource_value(ci["registeredResources"], "MEMORY")
    total_cpu = resource_value(ci["registeredResources"], "CPU")
    assert total_mem > 256 and total_cpu >= 1024, ci["registeredResources"]

    task = node.run(node.register(unique("res"), [
        node.container("main", cpu=256, memory=128)]))
    node.wait_status(task["taskArn"], "RUNNING")
    ci = wait_for(lambda: (lambda c: c if c["runningTasksCount"] == 1 else None)(agent.describe()),
                  10, interval=0.2, what="runningTasksCount 1")
    assert ci["pendingTasksCount"] == 0
    assert resource_value(ci["remainingResources"], "MEMORY") == total_mem - 128, ci
    assert resource_value(ci["remainingResources"], "CPU") == total_cpu - 256, ci

    agent.kill()
    killed = time.monotonic()
    wait_for(lambda: agent.describe()["agentConnected"] is False, 15, interval=0.2,
             what="agentConnected false after the agent was killed")
    noticed = time.monotonic() - killed
    assert noticed <= 10, f"a lost agent took {noticed:.1f}s to be noticed"


def test_agent_restart_adopts_running_task(spawn_agent, unique):
    node = spawn_agent("restart")
    agent = node.agent
    instance = agent.instance_arn
    fam = unique("adopt")
    td = node.register(fam, [node.container("main")])
    task = node.wait_status(node.run(td)["taskArn"], "RUNNING")
    runtime_id = task["containers"][0]["runtimeId"]
    assert list(c["Id"] for c in task_containers(task["taskArn"]).values()) == [runtime_id]

    for how in ("SIGTERM", "SIGKILL"):
        if how == "SIGTERM":
            agent.stop()
        else:
            agent.kill()
        [c] = task_containers(task["taskArn"]).values()
        assert c["State"]["Running"], f"the agent's {how} stopped the task's container"
        agent.start(wait_connected=False)
        # A task placed after the restart is running: the new agent is connected and past
        # its first reconciliation.
        barrier = node.wait_status(node.run(td)["taskArn"], "RUNNING", timeout=30)
        assert barrier["containerInstanceArn"] == instance
        assert [ci["containerInstanceArn"] for ci in agent.instances()] == [instance], \
            f"after {how} the agent re-registered as another container instance"
        assert agent.describe()["agentConnected"] is True

        again = node.describe(task["taskArn"])
        assert again["lastStatus"] == "RUNNING" and again["desiredStatus"] == "RUNNING", again
        assert again["containers"][0]["runtimeId"] == runtime_id, f"after {how}"
        ids = docker_ids({"gantry.task-arn": task["taskArn"]})
        assert ids == [runtime_id], f"after {how}: containers {ids}, expected {runtime_id}"
        node.ecs.stop_task(cluster=node.cluster, task=barrier["taskArn"])

    node.ecs.stop_task(cluster=node.cluster, task=task["taskArn"], reason="done")
    stopped = node.wait_status(task["taskArn"], "STOPPED", timeout=30)
    assert stopped["stopCode"] == "UserInitiated"
    wait_for(lambda: not docker_ids({"gantry.task-arn": task["taskArn"]}), 10, interval=0.1,
             what="the adopted task's container to be removed")


def test_agent_restart_reconciles_changes_made_while_away(spawn_agent, unique):
    """While the agent is down, one task's container dies and another task is stopped through
    the API; once back, the agent reports the first and stops the second."""
    node = spawn_agent("away")
    agent = node.agent
    td = node.register(unique("away"), [node.container("main")])
    died = node.wait_status(node.run(td)["taskArn"], "RUNNING")
    unwanted = node.wait_status(node.run(td)["taskArn"], "RUNNING")

    agent.kill()
    docker("kill", died["containers"][0]["runtimeId"])
    node.ecs.stop_task(cluster=node.cluster, task=unwanted["taskArn"], reason="while away")
    agent.start(wait_connected=False)

    died = node.wait_status(died["taskArn"], "STOPPED", timeout=30)
    assert died["stopCode"] == "EssentialContainerExited", died
    assert died["containers"][0].get("exitCode") == 137, died["containers"][0]
    unwanted = node.wait_status(unwanted["taskArn"], "STOPPED", timeout=30)
    assert unwanted["stopCode"] == "UserInitiated"
    assert unwanted["stoppedReason"] == "while away"
    for t in (died, unwanted):
        wait_for(lambda: not docker_ids({"gantry.task-arn": t["taskArn"]}), 10, interval=0.1,
                 what="the stopped tasks' containers to be removed")


# ---- inside the container -----------------------------------------------------------------------

def test_metadata_endpoint_v4_from_inside(node, unique):
    """ECS_CONTAINER_METADATA_URI_V4 is injected and answers from inside the container."""
    td = node.register(unique("meta"), [node.container("main")])
    task = node.wait_status(node.run(td)["taskArn"], "RUNNING")
    runtime_id = task["containers"][0]["runtimeId"]
    env = dict(e.split("=", 1) for e in docker_inspect([runtime_id])[0]["Config"]["Env"])
    uri_var = "ECS_CONTAINER_METADATA_URI_V4"
    assert env.get(uri_var), f"not injected: {sorted(env)}"

    def fetch(path):
        # (No `wget -T`: the test image's static busybox segfaults on it.)
        p = subprocess.run(["docker", "exec", runtime_id, "sh", "-c",
                            f'wget -q -O - "$ECS_CONTAINER_METADATA_URI_V4{path}"'],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0 and p.stdout.strip(), \
            f"GET $ECS_CONTAINER_METADATA_URI_V4{path} from inside ({env[uri_var]}): " \
            f"exit {p.returncode} {p.stderr.strip()!r}"
        return json.loads(p.stdout)
    container = fetch("")
    assert container.get("DockerId") == runtime_id and container.get("Name") == "main", container
    meta = fetch("/task")
    assert meta and meta.get("TaskARN") == task["taskArn"], meta
    assert meta.get("Cluster") in (node.cluster, task["clusterArn"]), meta
    assert [c.get("DockerId") for c in meta.get("Containers", [])] == [runtime_id], meta
    assert "cpu_stats" in fetch("/stats")
    stats = fetch("/task/stats")
    assert runtime_id in stats, stats
