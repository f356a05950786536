"""Services run for real: the service scheduler keeps the desired count of Docker containers
running, replaces a killed one, rolls out a new revision, trips the circuit breaker on a
revision that cannot stay up and rolls back, and drains on delete -- all driven by the AWS CLI
v1 and its waiters, unmodified.

The steps share one service and run in order (module fixture), on the session's Docker cluster.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from harness import docker, wait_for

SLEEP = ["sleep", "600"]


def service(node, name: str) -> dict:
    out = node.ecs.describe_services(cluster=node.cluster, services=[name])
    assert out["failures"] == [], out
    return out["services"][0]


def live_tasks(node, name: str) -> list[dict]:
    arns = node.ecs.list_tasks(cluster=node.cluster, serviceName=name)["taskArns"]
    if not arns:
        return []
    return node.ecs.describe_tasks(cluster=node.cluster, tasks=arns)["tasks"]


def wait_stable(node, name: str, timeout: float = 100):
    """`aws ecs wait services-stable`, bounded in time."""
    try:
        rc, err = node.aws("ecs", "wait", "services-stable", "--cluster", node.cluster,
                           "--services", name, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"services-stable still waiting after {timeout}s: "
                             f"{summary(service(node, name))}") from None
    assert rc == 0, f"aws ecs wait services-stable: {err}\n{summary(service(node, name))}"


def summary(s: dict) -> str:
    return json.dumps({
        "status": s.get("status"), "desired": s.get("desiredCount"),
        "running": s.get("runningCount"), "pending": s.get("pendingCount"),
        "deployments": [{k: d.get(k) for k in ("id", "status", "taskDefinition", "rolloutState",
                                              "rolloutStateReason", "runningCount",
                                              "failedTasks")}
                        for d in s.get("deployments", [])],
        "events": [e["message"] for e in s.get("events", [])[:8]],
    }, indent=1)


@pytest.fixture(scope="module")
def svc(docker_cluster, docker_run_id):
    node = docker_cluster
    fam = f"svc-{docker_run_id}"
    rev1 = node.register(fam, [node.container("app", command=SLEEP)])
    name = f"web-{docker_run_id}"
    state = {"node": node, "name": name, "family": fam, "rev1": rev1}
    yield state
    try:
        node.ecs.delete_service(cluster=node.cluster, service=name, force=True)
    except Exception:
        pass


def test_create_service_and_wait_stable(svc):
    node, name = svc["node"], svc["name"]
    out = node.aws_ok("ecs", "create-service", "--cluster", node.cluster, "--service-name", name,
                      "--task-definition", svc["rev1"], "--desired-count", "3",
                      "--deployment-configuration",
                      "maximumPercent=200,minimumHealthyPercent=100,"
                      "deploymentCircuitBreaker={enable=true,rollback=true}")
    created = out["service"]
    assert created["status"] == "ACTIVE" and created["desiredCount"] == 3
    assert created["deployments"][0]["rolloutState"] == "IN_PROGRESS"
    wait_stable(node, name)
    s = service(node, name)
    assert s["runningCount"] == 3 and s["pendingCount"] == 0, summary(s)
    [d] = s["deployments"]
    assert d["status"] == "PRIMARY" and d["rolloutState"] == "COMPLETED", summary(s)
    assert d["rolloutStateReason"] == f"ECS deployment {d['id']} completed."
    messages = [e["message"] for e in s["events"]]
    assert any(m.startswith(f"(service {name}) has started 3 tasks: (task ") for m in messages)
    assert f"(service {name}) has reached a steady state." in messages
    tasks = live_tasks(node, name)
    assert len(tasks) == 3
    for t in tasks:
        assert t["group"] == f"service:{name}" and t["startedBy"] == d["id"]
        assert t["lastStatus"] == "RUNNING"


def test_killed_container_is_replaced(svc):
    node, name = svc["node"], svc["name"]
    [victim, *_] = live_tasks(node, name)
    docker("kill", victim["containers"][0]["runtimeId"])
    node.wait_status(victim["taskArn"], "STOPPED")

    def replaced():
        s = service(node, name)
        tasks = live_tasks(node, name)
        running = [t for t in tasks if t["lastStatus"] == "RUNNING"]
        return s if s["runningCount"] == 3 and len(running) == 3 and \
            victim["taskArn"] not in [t["taskArn"] for t in tasks] else None
    s = wait_for(replaced, 30, interval=0.2, what="a replacement task")
    messages = [e["message"] for e in s["events"]]
    assert any(m.startswith(f"(service {name}) has started 1 tasks: (task ") for m in messages), \
        summary(s)
    wait_stable(node, name)


def test_rolling_deployment_to_a_new_revision(svc):
    node, name = svc["node"], svc["name"]
    rev2 = node.register(svc["family"], [node.container("app", command=SLEEP,
                                                        environment=[{"name": "V",
                                                                      "value": "2"}])])
    svc["rev2"] = rev2
    old = {t["taskArn"] for t in live_tasks(node, name)}
    out = node.aws_ok("ecs", "update-service", "--cluster", node.cluster, "--service", name,
                      "--task-definition", rev2)
    deps = out["service"]["deployments"]
    assert [d["status"] for d in deps] == ["PRIMARY", "ACTIVE"], deps
    wait_stable(node, name)
    s = service(node, name)
    [d] = s["deployments"]
    assert d["taskDefinition"] == rev2 and d["rolloutState"] == "COMPLETED", summary(s)
    tasks = live_tasks(node, name)
    assert len(tasks) == 3 and all(t["taskDefinitionArn"] == rev2 for t in tasks)
    for arn in old:
        t = node.describe(arn)
        assert t["lastStatus"] == "STOPPED" and t["stopCode"] == "ServiceSchedulerInitiated", t
    messages = [e["message"] for e in s["events"]]
    assert f"(service {name}) (deployment {d['id']}) deployment completed." in messages
    assert any(m.startswith(f"(service {name}) has stopped ") for m in messages)


def test_failing_revision_trips_the_circuit_breaker_and_rolls_back(svc):
    node, name = svc["node"], svc["name"]
    bad = node.register(svc["family"], [node.container("app", command=["sh", "-c", "exit 3"])])
    before = service(node, name)["deployments"][0]["id"]
    node.aws_ok("ecs", "update-service", "--cluster", node.cluster, "--service", name,
                "--task-definition", bad)

    def rolled_back():
        s = service(node, name)
        d = s["deployments"][0]
        return s if s["taskDefinition"] == svc["rev2"] and d["id"] != before else None
    s = wait_for(rolled_back, 60, interval=0.3, what="the circuit breaker's rollback")
    messages = [e["message"] for e in s["events"]]
    assert any("deployment failed: tasks failed to start." in m for m in messages), summary(s)
    d = s["deployments"][0]
    assert d["rolloutStateReason"].startswith("ECS deployment circuit breaker: rolling back to"), \
        summary(s)
    wait_stable(node, name)
    tasks = live_tasks(node, name)
    assert len(tasks) == 3 and all(t["taskDefinitionArn"] == svc["rev2"] for t in tasks)


def test_delete_force_stops_tasks_and_service_goes_inactive(svc):
    node, name = svc["node"], svc["name"]
    arns = [t["taskArn"] for t in live_tasks(node, name)]
    out = node.aws_ok("ecs", "delete-service", "--cluster", node.cluster, "--service", name,
                      "--force")
    assert out["service"]["status"] == "DRAINING"
    rc, err = node.aws("ecs", "wait", "services-inactive", "--cluster", node.cluster,
                       "--services", name, timeout=100)
    assert rc == 0, f"aws ecs wait services-inactive: {err}"
    for arn in arns:
        assert node.describe(arn)["lastStatus"] == "STOPPED"
