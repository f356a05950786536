"""FARGATE services behind an Application Load Balancer, on `gantry up` with real Docker: the
ECS side of load balancing, driven with the AWS CLI (and boto3 where a test polls).

- A service of 3 tasks registers its tasks' awsvpc addresses in an `ip` target group (each task
  ACTIVATING, then RUNNING); DescribeTargetHealth walks initial -> healthy and `aws elbv2 wait
  target-in-service` returns; requests through the listener reach all three tasks; scaling in
  to 2 takes a task through DEACTIVATING (its target draining, then gone) before it stops.
- A task whose health path starts failing (its file removed inside the container) is found
  unhealthy by the target group's checks and replaced, with ECS's event and stoppedReason.
- A rolling deployment of a service of N tasks (GANTRY_LB_ROLLING_TASKS, default 10) under a
  load generator (kept-alive and new connections, at least 200 requests/s) and 3-second
  requests running the whole time: every request answers 200, none fails to connect.

Each task is busybox's httpd on port 8080 serving `/` (its hostname), `/health` (a file) and
`/cgi-bin/slow` (answers after 3 s).
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
import uuid

import boto3
import pytest
from botocore.config import Config

from harness import busybox_container, docker, docker_ids, free_port, wait_for

# Every page the task serves is written by its command; `exec` makes httpd PID 1's successor so
# that SIGTERM stops it.
SERVE = ("mkdir -p /www/cgi-bin && echo ok > /www/health && hostname > /www/index.html && "
         "printf '#!/bin/sh\\nsleep 3\\nprintf \"Content-Type: text/plain\\\\r\\\\n\\\\r\\\\nslow\\\\n\"\\n' "
         "> /www/cgi-bin/slow && chmod +x /www/cgi-bin/slow && exec httpd -f -p 8080 -h /www")


def _client(server, service: str):
    return boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test",
                                 region_name="us-east-1").client(
        service, endpoint_url=server.endpoint,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=30))


def get(port: int, path: str = "/", timeout: float = 10) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


class Stack:
    """An ALB with an HTTP listener on a free port, an `ip` target group checking /health every
    5 s (2 to be healthy, 2 to be unhealthy) with a 5 s deregistration delay, a FARGATE task
    definition serving it, and helpers to look at them."""

    def __init__(self, up, run_id: str, name: str, *, launch_type: str = "FARGATE",
                 cluster: str | None = None):
        self.up = up
        self.ecs = _client(up, "ecs")
        self.elb = _client(up, "elbv2")
        self.launch_type = launch_type
        self.service = "web"
        if cluster:
            self.cluster = cluster
        else:
            self.cluster = f"{name}-{uuid.uuid4().hex[:6]}"
            up.aws_ok("ecs", "create-cluster", "--cluster-name", self.cluster)
        lb_arn = up.aws_ok("elbv2", "create-load-balancer", "--name", self.cluster,
                           "--subnets", "subnet-a", "subnet-b")["LoadBalancers"][0]["LoadBalancerArn"]
        up.aws_ok("elbv2", "wait", "load-balancer-available", "--load-balancer-arns", lb_arn)
        self.tg = up.aws_ok(
            "elbv2", "create-target-group", "--name", self.cluster, "--protocol", "HTTP",
            "--port", "8080", "--target-type", "ip", "--vpc-id", "vpc-1",
            "--health-check-path", "/health", "--health-check-interval-seconds", "5",
            "--health-check-timeout-seconds", "2", "--healthy-threshold-count", "2",
            "--unhealthy-threshold-count", "2")["TargetGroups"][0]["TargetGroupArn"]
        up.aws_ok("elbv2", "modify-target-group-attributes", "--target-group-arn", self.tg,
                  "--attributes", "Key=deregistration_delay.timeout_seconds,Value=5")
        self.port = free_port()
        up.aws_ok("elbv2", "create-listener", "--load-balancer-arn", lb_arn, "--protocol", "HTTP",
                  "--port", str(self.port), "--default-actions",
                  f"Type=forward,TargetGroupArn={self.tg}")
        self.family = self.cluster
        # FARGATE: the smallest size; EC2: only the container's 32 MiB reserved, so that the
        # host's two cores are not what limits how many tasks run.
        size = (["--cpu", "256", "--memory", "512"] if launch_type == "FARGATE" else [])
        up.aws_ok("ecs", "register-task-definition", "--family", self.family,
                  "--network-mode", "awsvpc", "--requires-compatibilities", launch_type,
                  *size, "--container-definitions", json.dumps([
                      busybox_container("web", run_id,
                                        memory=None if launch_type == "FARGATE" else 32,
                                        command=["sh", "-c", SERVE],
                                        portMappings=[{"containerPort": 8080}])]))

    def create_service(self, count: int):
        def create():
            rc, out = self.up.aws(
                "ecs", "create-service", "--cluster", self.cluster, "--service-name", self.service,
                "--task-definition", self.family, "--desired-count", str(count),
                "--launch-type", self.launch_type, "--network-configuration",
                "awsvpcConfiguration={subnets=[subnet-local],assignPublicIp=DISABLED}",
                "--load-balancers",
                f"targetGroupArn={self.tg},containerName=web,containerPort=8080")
            assert rc == 0, out
            return out["service"]
        return create()

    def health(self) -> dict[str, tuple[str, str | None]]:
        out = self.elb.describe_target_health(TargetGroupArn=self.tg)["TargetHealthDescriptions"]
        return {h["Target"]["Id"]: (h["TargetHealth"]["State"], h["TargetHealth"].get("Reason"))
                for h in out}

    def describe(self) -> dict:
        return self.ecs.describe_services(cluster=self.cluster, services=[self.service])["services"][0]

    def events(self) -> list[str]:
        return [e["message"] for e in self.describe()["events"]]

    def tasks(self, status: str = "RUNNING") -> list[dict]:
        arns = self.ecs.list_tasks(cluster=self.cluster, desiredStatus=status)["taskArns"]
        return self.ecs.describe_tasks(cluster=self.cluster, tasks=arns)["tasks"] if arns else []

    def all_tasks(self) -> list[dict]:
        return self.tasks("RUNNING") + self.tasks("STOPPED")


def ip_of(task: dict) -> str | None:
    for a in task.get("attachments", []):
        for d in a.get("details", []):
            if d["name"] == "privateIPv4Address" and d.get("value"):
                return d["value"]
    return None


def healthy_count(stack: Stack, n: int):
    h = stack.health()
    return h if len(h) == n and all(s == "healthy" for s, _ in h.values()) else None


@pytest.fixture
def up(spawn_server, docker_run_id):
    return spawn_server("up", command="up")


def test_a_fargate_service_behind_an_alb_registers_serves_drains_and_replaces(up, docker_run_id):
    s = Stack(up, docker_run_id, "alb")
    s.create_service(3)

    # Targets appear `initial`, then turn `healthy`. (Each task is ACTIVATING while its target
    # is registered: a few milliseconds here, too short to catch from outside; the control
    # plane's tests, tests/it/load_balancers.rs, step through it.)
    seen_health: dict[str, list[str]] = {}

    def registered():
        for ip, (state, _) in s.health().items():
            if not seen_health.get(ip) or seen_health[ip][-1] != state:
                seen_health.setdefault(ip, []).append(state)
        return len(seen_health) == 3 and all(v[-1] == "healthy" for v in seen_health.values())

    wait_for(registered, 90, interval=0.2, what="3 targets to register and turn healthy")
    assert all(v[0] == "initial" and v[-1] == "healthy" for v in seen_health.values()), seen_health
    rc, err = up.aws("elbv2", "wait", "target-in-service", "--target-group-arn", s.tg)
    assert rc == 0, err
    tasks = s.tasks()
    assert {t["lastStatus"] for t in tasks} == {"RUNNING"}
    assert sorted(ip_of(t) for t in tasks) == sorted(seen_health), (tasks, seen_health)
    assert {p for p in (h["Target"]["Port"] for h in s.elb.describe_target_health(
        TargetGroupArn=s.tg)["TargetHealthDescriptions"])} == {8080}
    assert any(e.startswith(f"(service {s.service}) registered ") and e.endswith(f"targets in (target-group {s.tg})")
               for e in s.events()), s.events()
    rc, err = up.aws("ecs", "wait", "services-stable", "--cluster", s.cluster, "--services", s.service)
    assert rc == 0, err

    # Through the listener: every task answers.
    hostnames = {get(s.port)[1].strip() for _ in range(30)}
    assert len(hostnames) == 3, hostnames

    # Scale in while 3-second requests are in flight on every task: the task chosen goes
    # DEACTIVATING (desired STOPPED, its target draining, still serving what it has), and once
    # its requests are done its target goes and the task stops.
    slow: list[tuple[int, str]] = []
    threads = [threading.Thread(target=lambda: slow.append(get(s.port, "/cgi-bin/slow", timeout=30)),
                                daemon=True) for _ in range(6)]
    for t in threads:
        t.start()
    s.ecs.update_service(cluster=s.cluster, service=s.service, desiredCount=2)
    leaving = wait_for(lambda: next((t for t in s.tasks("STOPPED") if t["lastStatus"] == "DEACTIVATING"), None),
                       30, interval=0.05, what="a task to be DEACTIVATING")
    gone_ip = ip_of(leaving)
    states = []

    def drained():
        st = s.health().get(gone_ip, ("gone", None))[0]
        if not states or states[-1] != st:
            states.append(st)
        return st == "gone"

    wait_for(drained, 30, interval=0.05, what="the target to drain and go")
    # DEACTIVATING is ECS deregistering the target: it may read healthy for the moment
    # before the deregistration lands, and then it drains and goes.
    while states and states[0] == "healthy":
        states.pop(0)
    assert states == ["draining", "gone"], states
    for t in threads:
        t.join(30)
    assert sorted(slow) == [(200, "slow\n")] * 6, slow
    rc, err = up.aws("elbv2", "wait", "target-deregistered", "--target-group-arn", s.tg,
                     "--targets", f"Id={gone_ip},Port=8080")
    assert rc == 0, err
    arn = leaving["taskArn"]
    rc, err = up.aws("ecs", "wait", "tasks-stopped", "--cluster", s.cluster, "--tasks", arn)
    assert rc == 0, err
    stopped = s.ecs.describe_tasks(cluster=s.cluster, tasks=[arn])["tasks"][0]
    assert stopped["stopCode"] == "ServiceSchedulerInitiated", stopped
    assert any("has begun draining connections on 1 tasks." in e for e in s.events())
    assert any(f"deregistered 1 targets in (target-group {s.tg})" in e for e in s.events())
    assert len(s.health()) == 2

    # Health replacement: one task's /health goes away inside its container.
    victim = s.tasks()[0]
    vid = victim["taskArn"].rsplit("/", 1)[1]
    web = docker_ids({"gantry.task-arn": victim["taskArn"], "gantry.container-name": "web"},
                     stopped=False)
    assert len(web) == 1, web
    docker("exec", web[0], "rm", "/www/health")
    wait_for(lambda: s.health().get(ip_of(victim), ("gone",))[0] in ("unhealthy", "draining", "gone"),
             40, interval=0.2, what="the target to fail its checks")
    message = f"(service {s.service}) (task {vid}) (port 8080) is unhealthy in (target-group {s.tg}) due to (reason"
    wait_for(lambda: any(e.startswith(message) for e in s.events()), 30, interval=0.2,
             what="the unhealthy event")
    rc, err = up.aws("ecs", "wait", "tasks-stopped", "--cluster", s.cluster, "--tasks", victim["taskArn"])
    assert rc == 0, err
    t = s.ecs.describe_tasks(cluster=s.cluster, tasks=[victim["taskArn"]])["tasks"][0]
    assert t["stoppedReason"] == f"Task failed ELB health checks in (target-group {s.tg})", t
    event = next(e for e in s.events() if e.startswith(message))
    assert "Health checks failed with these codes: [404]" in event, event
    # Replaced: two healthy targets again, neither of them the victim.
    h = wait_for(lambda: healthy_count(s, 2), 60, interval=0.2, what="the replacement to be healthy")
    assert ip_of(victim) not in h


def test_a_rolling_deployment_behind_an_alb_fails_no_request(spawn_agent, docker_run_id):
    # EC2 (awsvpc, on this host's agent): FARGATE tasks take 256 CPU units each, and a 2-core
    # host's Fargate node has 2048, fewer than 10 old and 10 new tasks need.
    n = int(os.environ.get("GANTRY_LB_ROLLING_TASKS", "10"))
    node = spawn_agent("roll")
    s = Stack(node.server, docker_run_id, "roll", launch_type="EC2", cluster=node.cluster)
    s.create_service(n)
    wait_for(lambda: healthy_count(s, n), 180, interval=0.5, what=f"{n} healthy targets")
    rc, err = s.up.aws("ecs", "wait", "services-stable", "--cluster", s.cluster, "--services", s.service)
    assert rc == 0, err
    old = {t["taskArn"] for t in s.tasks()}

    stop = threading.Event()
    lock = threading.Lock()
    results = {"ok": 0, "bad": [], "errors": [], "slow_ok": 0, "slow_bad": []}

    def kept_alive():
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
        while not stop.is_set():
            try:
                conn.request("GET", "/")
                r = conn.getresponse()
                r.read()
                with lock:
                    if r.status == 200:
                        results["ok"] += 1
                    else:
                        results["bad"].append(r.status)
            except (OSError, http.client.HTTPException) as e:
                with lock:
                    results["errors"].append(f"kept-alive: {e!r}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
        conn.close()

    def new_connections():
        while not stop.is_set():
            try:
                status, _ = get(s.port)
                with lock:
                    if status == 200:
                        results["ok"] += 1
                    else:
                        results["bad"].append(status)
            except (OSError, http.client.HTTPException) as e:
                with lock:
                    results["errors"].append(f"new connection: {e!r}")

    def slow():
        # 3-second requests back to back: at any moment some are in flight, so some start just
        # before their task's target is deregistered.
        while not stop.is_set():
            try:
                status, body = get(s.port, "/cgi-bin/slow", timeout=30)
                with lock:
                    if status == 200 and body.strip() == "slow":
                        results["slow_ok"] += 1
                    else:
                        results["slow_bad"].append((status, body))
            except (OSError, http.client.HTTPException) as e:
                with lock:
                    results["slow_bad"].append(repr(e))

    threads = ([threading.Thread(target=kept_alive, daemon=True) for _ in range(3)]
               + [threading.Thread(target=new_connections, daemon=True) for _ in range(2)]
               + [threading.Thread(target=slow, daemon=True) for _ in range(4)])
    started = time.monotonic()
    for t in threads:
        t.start()
    try:
        deployed_at = time.time()
        s.ecs.update_service(cluster=s.cluster, service=s.service, forceNewDeployment=True)
        deployed = time.monotonic()

        def rolled():
            svc = s.describe()
            d = svc["deployments"]
            return (len(d) == 1 and d[0]["rolloutState"] == "COMPLETED" and svc["runningCount"] == n
                    and not old & {t["taskArn"] for t in s.tasks()})

        wait_for(rolled, 300, interval=0.2, what="the rolling deployment to complete")
        completed = time.monotonic() - deployed
        # The old tasks went through DEACTIVATING; let the last 3-second requests finish.
        wait_for(lambda: results["slow_ok"] >= 8, 30, interval=0.2, what="slow requests")
    finally:
        stop.set()
        for t in threads:
            t.join(40)
    elapsed = time.monotonic() - started
    total = results["ok"] + len(results["bad"]) + len(results["errors"])
    rate = total / elapsed
    print(f"rolling deployment of {n} tasks: COMPLETED after {completed:.1f} s; {total} requests in {elapsed:.1f} s ({rate:.0f}/s), "
          f"{results['slow_ok']} slow requests, bad {results['bad'][:5]}, errors {results['errors'][:5]}")
    _print_timeline(s, old, deployed_at)
    assert results["bad"] == [] and results["errors"] == [], results
    assert results["slow_bad"] == [], results["slow_bad"]
    assert rate >= 200, f"the load generator reached only {rate:.0f} requests/s"
    stopped = s.ecs.describe_tasks(cluster=s.cluster, tasks=list(old))["tasks"]
    assert {t["lastStatus"] for t in stopped} == {"STOPPED"}
    assert {t["stopCode"] for t in stopped} == {"ServiceSchedulerInitiated"}
    assert len(s.health()) == n


def _print_timeline(s: Stack, old: set[str], since: float) -> None:
    """Where a rolling deployment's time went (for BENCHMARKS.md): the service's events and the
    tasks' timestamps, in seconds after UpdateService (`pytest -s` shows it)."""
    lines = [(e["createdAt"].timestamp(), "event: " + e["message"][:110]) for e in s.describe()["events"]]
    everything = s.tasks() + s.ecs.describe_tasks(cluster=s.cluster, tasks=list(old))["tasks"]
    for t in everything:
        who = ("old " if t["taskArn"] in old else "new ") + t["taskArn"][-6:]
        for field in ("createdAt", "startedAt", "stoppingAt", "executionStoppedAt", "stoppedAt"):
            if field in t:
                lines.append((t[field].timestamp(), f"{who} {field}"))
    for at, what in sorted(lines):
        if at >= since - 0.5:
            print(f"  {at - since:7.2f} s  {what}")


def test_an_ec2_bridge_service_behind_an_instance_target_group_serves_through_the_alb(spawn_agent, docker_run_id):
    """ECS's classic EC2 pattern: bridge networking with dynamic host ports, registered in an
    `instance` target group as (EC2 instance ID, host port). The ALB reaches each task at its
    container instance's host address (reported by the agent as `gantry.host-address`)."""
    node = spawn_agent("inst")
    up = node.server
    cluster = node.cluster
    elb = _client(up, "elbv2")
    lb_arn = up.aws_ok("elbv2", "create-load-balancer", "--name", cluster,
                       "--subnets", "subnet-a", "subnet-b")["LoadBalancers"][0]["LoadBalancerArn"]
    up.aws_ok("elbv2", "wait", "load-balancer-available", "--load-balancer-arns", lb_arn)
    tg = up.aws_ok(
        "elbv2", "create-target-group", "--name", cluster, "--protocol", "HTTP", "--port", "80",
        "--target-type", "instance", "--vpc-id", "vpc-1", "--health-check-path", "/health",
        "--health-check-interval-seconds", "5", "--health-check-timeout-seconds", "2",
        "--healthy-threshold-count", "2")["TargetGroups"][0]["TargetGroupArn"]
    port = free_port()
    up.aws_ok("elbv2", "create-listener", "--load-balancer-arn", lb_arn, "--protocol", "HTTP",
              "--port", str(port), "--default-actions", f"Type=forward,TargetGroupArn={tg}")
    up.aws_ok("ecs", "register-task-definition", "--family", cluster, "--network-mode", "bridge",
              "--container-definitions", json.dumps([busybox_container(
                  "web", docker_run_id, command=["sh", "-c", SERVE],
                  portMappings=[{"containerPort": 8080, "hostPort": 0}])]))
    up.aws_ok("ecs", "create-service", "--cluster", cluster, "--service-name", "web",
              "--task-definition", cluster, "--desired-count", "2", "--launch-type", "EC2",
              "--load-balancers", f"targetGroupArn={tg},containerName=web,containerPort=8080")

    instance = up.aws_ok("ecs", "describe-container-instances", "--cluster", cluster, "--container-instances",
                         up.aws_ok("ecs", "list-container-instances", "--cluster", cluster)
                         ["containerInstanceArns"][0])["containerInstances"][0]
    attrs = {a["name"]: a.get("value") for a in instance["attributes"]}
    assert attrs.get("gantry.host-address") == "127.0.0.1", attrs

    def healthy():
        h = elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
        return h if len(h) == 2 and all(d["TargetHealth"]["State"] == "healthy" for d in h) else None
    targets = wait_for(healthy, 120, interval=0.5, what="two healthy instance targets")
    # Both are the instance, each at its task's dynamic host port.
    assert {d["Target"]["Id"] for d in targets} == {instance["ec2InstanceId"]}, targets
    assert len({d["Target"]["Port"] for d in targets}) == 2, targets
    hostnames = {get(port)[1].strip() for _ in range(20)}
    assert len(hostnames) == 2, f"requests reached {hostnames}, not both tasks"
