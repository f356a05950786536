"""FARGATE_SPOT interruption on `gantry up`, with real Docker and the AWS CLI: `gantry spot
interrupt` gives a Spot task ECS's warning (desiredStatus STOPPED, stopCode SpotInterruption,
SIGTERM to its containers); a task that exits on SIGTERM stops with its own exit code, one that
ignores it is stopped when the warning is over (`--warning-seconds`, two minutes by default);
a service on FARGATE_SPOT replaces its interrupted task.

Needs Docker (see conftest.py's docker_run_id) and the local test image.
"""

from __future__ import annotations

import json
import subprocess
import time

from harness import busybox_container, docker_ids, gantry_bin, wait_for

NETWORK = "awsvpcConfiguration={subnets=[subnet-local],assignPublicIp=DISABLED}"
# Exits 143 on SIGTERM (the shell runs the trap between two short sleeps).
POLITE = ["sh", "-c", "trap 'exit 143' TERM; while true; do sleep 0.2; done"]
# Ignores SIGTERM, and would have 120 s to go: only the end of the warning stops it.
STUBBORN = ["sh", "-c", "trap '' TERM; while true; do sleep 0.2; done"]


def interrupt(up, cluster: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(gantry_bin()), "spot", "interrupt", "--server", up.endpoint,
                           "--cluster", cluster, *args],
                          env=up.cli_env(), capture_output=True, text=True, timeout=60)


def register(up, family: str, run_id: str, command: list[str], stop_timeout: int) -> None:
    up.aws_ok("ecs", "register-task-definition", "--family", family, "--network-mode", "awsvpc",
              "--requires-compatibilities", "FARGATE", "--cpu", "256", "--memory", "512",
              "--container-definitions", json.dumps([
                  busybox_container("app", run_id, memory=None, command=command,
                                    stopTimeout=stop_timeout)]))


def run_spot(up, cluster: str, family: str) -> str:
    def run():
        out = up.aws_ok("ecs", "run-task", "--cluster", cluster, "--task-definition", family,
                        "--capacity-provider-strategy", "capacityProvider=FARGATE_SPOT,weight=1",
                        "--network-configuration", NETWORK)
        return out["tasks"][0] if out["tasks"] else None

    task = wait_for(run, 20, interval=0.2, what="Fargate capacity")
    assert task["capacityProviderName"] == "FARGATE_SPOT"
    rc, err = up.aws("ecs", "wait", "tasks-running", "--cluster", cluster, "--tasks", task["taskArn"])
    assert rc == 0, err
    return task["taskArn"]


def describe(up, cluster: str, arn: str) -> dict:
    return up.aws_ok("ecs", "describe-tasks", "--cluster", cluster, "--tasks", arn)["tasks"][0]


def test_spot_interruption_warns_then_reclaims_and_a_service_replaces_its_task(
        spawn_server, docker_run_id, unique):
    up = spawn_server("up", command="up")
    cluster = unique("spot")
    up.aws_ok("ecs", "create-cluster", "--cluster-name", cluster,
              "--capacity-providers", "FARGATE", "FARGATE_SPOT")
    polite, stubborn = unique("polite"), unique("stubborn")
    register(up, polite, docker_run_id, POLITE, 30)
    register(up, stubborn, docker_run_id, STUBBORN, 120)

    # 1. A task that exits on SIGTERM: stopped within the warning, with its own exit code.
    arn = run_spot(up, cluster, polite)
    p = interrupt(up, cluster, "--task", arn)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [arn]
    t = describe(up, cluster, arn)
    assert t["desiredStatus"] == "STOPPED" and t["stopCode"] == "SpotInterruption", t
    assert t["stoppedReason"] == "Your Spot Task was interrupted."
    rc, err = up.aws("ecs", "wait", "tasks-stopped", "--cluster", cluster, "--tasks", arn)
    assert rc == 0, err
    t = describe(up, cluster, arn)
    assert t["stopCode"] == "SpotInterruption"
    assert t["containers"][0]["exitCode"] == 143, t["containers"]

    # 2. A task that ignores SIGTERM (stopTimeout 120): gone when a 3-second warning is over.
    arn = run_spot(up, cluster, stubborn)
    started = time.monotonic()
    p = interrupt(up, cluster, "--count", "1", "--warning-seconds", "3")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [arn]
    rc, err = up.aws("ecs", "wait", "tasks-stopped", "--cluster", cluster, "--tasks", arn)
    assert rc == 0, err
    assert time.monotonic() - started < 60, "reclaimed at the end of the warning, not stopTimeout"
    t = describe(up, cluster, arn)
    assert (t["stopCode"], t["stoppedReason"]) == ("SpotInterruption", "Your Spot Task was interrupted.")
    wait_for(lambda: not docker_ids({"gantry.task-arn": arn}), 30, what="the reclaimed task's containers to go")

    # An on-demand task is not Spot capacity: named, it is refused; counted, it is left alone.
    out = up.aws_ok("ecs", "run-task", "--cluster", cluster, "--task-definition", polite,
                    "--launch-type", "FARGATE", "--network-configuration", NETWORK)
    on_demand = out["tasks"][0]["taskArn"]
    p = interrupt(up, cluster, "--task", on_demand)
    assert p.returncode != 0 and "NOT_SPOT" in p.stderr, (p.stdout, p.stderr)

    # 3. A service on FARGATE_SPOT: its interrupted task is replaced through its strategy.
    service = unique("svc")
    up.aws_ok("ecs", "create-service", "--cluster", cluster, "--service-name", service,
              "--task-definition", polite, "--desired-count", "1",
              "--capacity-provider-strategy", "capacityProvider=FARGATE_SPOT,weight=1",
              "--network-configuration", NETWORK)
    rc, err = up.aws("ecs", "wait", "services-stable", "--cluster", cluster, "--services", service,
                     timeout=180)
    assert rc == 0, err
    first = up.aws_ok("ecs", "list-tasks", "--cluster", cluster, "--service-name", service)["taskArns"]
    assert len(first) == 1
    p = interrupt(up, cluster, "--task", first[0], "--warning-seconds", "5")
    assert p.returncode == 0, p.stderr

    def replaced():
        arns = up.aws_ok("ecs", "list-tasks", "--cluster", cluster, "--service-name", service,
                         "--desired-status", "RUNNING")["taskArns"]
        new = [a for a in arns if a != first[0]]
        if not new:
            return None
        t = describe(up, cluster, new[0])
        return t if t["lastStatus"] == "RUNNING" else None

    t = wait_for(replaced, 90, interval=0.5, what="the service to replace its interrupted task")
    assert t["capacityProviderName"] == "FARGATE_SPOT"
    old = describe(up, cluster, first[0])
    assert old["stopCode"] == "SpotInterruption"
    up.aws_ok("ecs", "stop-task", "--cluster", cluster, "--task", on_demand)


def test_the_spot_warning_is_an_eventbridge_event_before_the_task_stops(spawn_server, docker_run_id, unique):
    """ECS's "ECS Task State Change" for the warning reaches a rule with ECS's documented
    pattern (here delivered to a CloudWatch Logs log group) while the task still runs."""
    up = spawn_server("up", command="up")
    cluster = unique("spot-ev")
    up.aws_ok("ecs", "create-cluster", "--cluster-name", cluster,
              "--capacity-providers", "FARGATE", "FARGATE_SPOT")
    stubborn = unique("stubborn")
    register(up, stubborn, docker_run_id, STUBBORN, 120)
    group = f"/aws/events/{unique('spot')}"
    rule = unique("spot-warning")
    pattern = {"source": ["aws.ecs"], "detail-type": ["ECS Task State Change"],
               "detail": {"stopCode": ["SpotInterruption"]}}
    up.aws_ok("events", "put-rule", "--name", rule, "--event-pattern", json.dumps(pattern))
    out = up.aws_ok("events", "put-targets", "--rule", rule, "--targets",
                    f"Id=log,Arn=arn:aws:logs:us-east-1:000000000000:log-group:{group}")
    assert out["FailedEntryCount"] == 0, out
    arn = run_spot(up, cluster, stubborn)

    def delivered():
        rc, _ = up.aws("logs", "describe-log-groups", "--log-group-name-prefix", group)
        out = up.aws_ok("logs", "filter-log-events", "--log-group-name", group) if rc == 0 else {}
        return [json.loads(e["message"]) for e in out.get("events", [])] if out else []

    assert not up.aws_ok("logs", "describe-log-groups", "--log-group-name-prefix", group)["logGroups"]
    p = interrupt(up, cluster, "--task", arn, "--warning-seconds", "10")
    assert p.returncode == 0, p.stderr
    events = wait_for(delivered, 10, interval=0.2, what="the warning event in the log group")
    assert describe(up, cluster, arn)["lastStatus"] != "STOPPED", "warned before it stops"
    assert len(events) == 1, events
    e = events[0]
    assert (e["source"], e["detail-type"], e["resources"]) == ("aws.ecs", "ECS Task State Change", [arn]), e
    d = e["detail"]
    assert (d["taskArn"], d["desiredStatus"], d["lastStatus"]) == (arn, "STOPPED", "RUNNING"), d
    assert (d["stopCode"], d["stoppedReason"]) == ("SpotInterruption", "Your Spot Task was interrupted."), d
    # The warning over, the task stops.
    rc, err = up.aws("ecs", "wait", "tasks-stopped", "--cluster", cluster, "--tasks", arn)
    assert rc == 0, err
