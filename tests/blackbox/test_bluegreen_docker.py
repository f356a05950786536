"""ECS's traffic-shifting deployments behind a real ALB, on `gantry up` with real Docker, driven
with the AWS CLI, under a load generator that counts every non-2xx answer and every connection
error on the production listener:

- (b) BLUE_GREEN: the new revision's tasks start in the alternate target group; a PAUSE hook
  holds the deployment after the test traffic shift, while the test listener already serves the
  new revision and production still the old one; `aws ecs continue-service-deployment` lets it
  switch production, bake, and clean up;
- (c) CANARY 10 % then 100 %: during the canary bake time about a tenth of production requests
  reach the new revision, then all do;
- (d) a rollback: a PAUSE hook after the production shift answered ROLLBACK sends production back
  to the old revision, and the service deployment ends ROLLBACK_SUCCESSFUL.

Zero failed requests in each. `--deployment-minute 1s` makes the bake times' minutes seconds.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid

import pytest

from harness import busybox_container, free_port, wait_for
from test_lb_services_docker import _client, get

SERVE = ("mkdir -p /www && echo ok > /www/health && echo $VERSION > /www/index.html && "
         "exec httpd -f -p 8080 -h /www")
ROLE = "arn:aws:iam::000000000000:role/ecsInfrastructureRoleForLoadBalancers"


@pytest.fixture
def up(spawn_server, docker_run_id):
    return spawn_server("bg", command="up", extra_args=("--deployment-minute", "1s"))


class Load:
    """Kept-alive and new connections to one port, counting answers by body, non-2xx answers and
    connection errors."""

    def __init__(self, port: int):
        self.port = port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.bodies: dict[str, int] = {}
        self.bad: list[int] = []
        self.errors: list[str] = []
        self.threads = ([threading.Thread(target=self._kept_alive, daemon=True) for _ in range(5)]
                        + [threading.Thread(target=self._new, daemon=True) for _ in range(3)])
        self.started = time.monotonic()
        for t in self.threads:
            t.start()

    def _count(self, status: int, body: str):
        with self.lock:
            if 200 <= status < 300:
                self.bodies[body.strip()] = self.bodies.get(body.strip(), 0) + 1
            else:
                self.bad.append(status)

    def _kept_alive(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.stop.is_set():
            try:
                conn.request("GET", "/")
                r = conn.getresponse()
                self._count(r.status, r.read().decode())
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.errors.append(f"kept-alive: {e!r}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.close()

    def _new(self):
        while not self.stop.is_set():
            try:
                self._count(*get(self.port))
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.errors.append(f"new connection: {e!r}")

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.bodies)

    def finish(self, what: str):
        self.stop.set()
        for t in self.threads:
            t.join(20)
        total = sum(self.bodies.values()) + len(self.bad) + len(self.errors)
        rate = total / (time.monotonic() - self.started)
        print(f"{what}: {total} requests ({rate:.0f}/s), by body {self.bodies}, "
              f"bad {self.bad[:5]}, errors {self.errors[:5]}")
        assert self.bad == [] and self.errors == [], (what, self.bad[:10], self.errors[:10])
        assert rate >= 200, f"{what}: the load generator reached only {rate:.0f} requests/s"


def share(before: dict[str, int], after: dict[str, int], body: str) -> float:
    """The share of the requests answered between two snapshots that `body` answered."""
    n = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    total = sum(n.values())
    return n.get(body, 0) / total if total else 0.0


def target_group(up, name: str, protocol: str, *health: str) -> str:
    """A target group for port 8080's tasks, checked every 5 s, deregistering in 3 s."""
    tg = up.aws_ok("elbv2", "create-target-group", "--name", name, "--protocol", protocol,
                   "--port", "8080", "--target-type", "ip", "--vpc-id", "vpc-1",
                   "--health-check-interval-seconds", "5", "--health-check-timeout-seconds", "2",
                   "--healthy-threshold-count", "2", *health)["TargetGroups"][0]["TargetGroupArn"]
    up.aws_ok("elbv2", "modify-target-group-attributes", "--target-group-arn", tg,
              "--attributes", "Key=deregistration_delay.timeout_seconds,Value=3")
    return tg


def weighted(blue: str, green: str) -> str:
    """The AWS CLI shorthand of a forward action with all weight on `blue`."""
    return (f"Type=forward,ForwardConfig={{TargetGroups=[{{TargetGroupArn={blue},Weight=100}},"
            f"{{TargetGroupArn={green},Weight=0}}]}}")


def register_versions(up, family: str, run_id: str, versions: tuple[str, ...]):
    """Revisions 1, 2, ... of a FARGATE task definition serving VERSION on port 8080."""
    for version in versions:
        up.aws_ok("ecs", "register-task-definition", "--family", family, "--network-mode", "awsvpc",
                  "--requires-compatibilities", "FARGATE", "--cpu", "256", "--memory", "512",
                  "--container-definitions", json.dumps([
                      busybox_container("web", run_id, memory=None, command=["sh", "-c", SERVE],
                                        environment=[{"name": "VERSION", "value": version}],
                                        portMappings=[{"containerPort": 8080}])]))


def current_deployment(ecs, cluster: str) -> dict:
    """Service `web`'s current service deployment."""
    arn = ecs.describe_services(cluster=cluster, services=["web"])["services"][0]["currentServiceDeployment"]
    return ecs.describe_service_deployments(serviceDeploymentArns=[arn])["serviceDeployments"][0]


def serves(port: int, version: str, n: int = 20) -> bool:
    """Whether `n` requests in a row to `port` are all answered by `version`."""
    return all(get(port)[1].strip() == version for _ in range(n))


def test_blue_green_canary_and_rollback_behind_an_alb_fail_no_request(up, docker_run_id):
    run_id = docker_run_id
    ecs, elb = _client(up, "ecs"), _client(up, "elbv2")
    cluster = f"bg-{uuid.uuid4().hex[:6]}"
    up.aws_ok("ecs", "create-cluster", "--cluster-name", cluster)
    lb = up.aws_ok("elbv2", "create-load-balancer", "--name", cluster,
                   "--subnets", "subnet-a", "subnet-b")["LoadBalancers"][0]["LoadBalancerArn"]
    up.aws_ok("elbv2", "wait", "load-balancer-available", "--load-balancer-arns", lb)
    blue, green = (target_group(up, f"{cluster}-{color}", "HTTP", "--health-check-path", "/health",
                                "--unhealthy-threshold-count", "2") for color in ("blue", "green"))
    forward = weighted(blue, green)
    rules = []
    ports = []
    for _ in ("production", "test"):
        port = free_port()
        listener = up.aws_ok("elbv2", "create-listener", "--load-balancer-arn", lb, "--protocol", "HTTP",
                             "--port", str(port), "--default-actions",
                             "Type=fixed-response,FixedResponseConfig={StatusCode=404}")["Listeners"][0]["ListenerArn"]
        rule = up.aws_ok("elbv2", "create-rule", "--listener-arn", listener, "--priority", "1",
                         "--conditions", "Field=path-pattern,Values=/*",
                         "--actions", forward)["Rules"][0]["RuleArn"]
        rules.append(rule)
        ports.append(port)
    prod_rule, test_rule = rules
    prod_port, test_port = ports
    register_versions(up, cluster, run_id, ("v1", "v2", "v3", "v4"))
    lbs = json.dumps([{"targetGroupArn": blue, "containerName": "web", "containerPort": 8080,
                       "advancedConfiguration": {"alternateTargetGroupArn": green,
                                                 "productionListenerRule": prod_rule,
                                                 "testListenerRule": test_rule, "roleArn": ROLE}}])

    # AWS_LAMBDA hooks are refused: Gantry has no Lambda.
    rc, out = up.aws("ecs", "create-service", "--cluster", cluster, "--service-name", "web",
                     "--task-definition", f"{cluster}:1", "--desired-count", "2", "--launch-type", "FARGATE",
                     "--network-configuration", "awsvpcConfiguration={subnets=[subnet-local]}",
                     "--deployment-configuration", json.dumps({"strategy": "BLUE_GREEN", "lifecycleHooks": [
                         {"targetType": "AWS_LAMBDA", "hookTargetArn": "arn:aws:lambda:us-east-1:000000000000:function:f",
                          "roleArn": ROLE, "lifecycleStages": ["POST_SCALE_UP"]}]}),
                     "--load-balancers", lbs)
    assert rc != 0 and "InvalidParameterException" in str(out) and "Lambda" in str(out), out

    up.aws_ok("ecs", "create-service", "--cluster", cluster, "--service-name", "web",
              "--task-definition", f"{cluster}:1", "--desired-count", "2", "--launch-type", "FARGATE",
              "--network-configuration", "awsvpcConfiguration={subnets=[subnet-local]}",
              "--deployment-configuration", json.dumps({"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 1}),
              "--load-balancers", lbs)

    def sd() -> dict:
        return current_deployment(ecs, cluster)

    def finished(status: str):
        def check():
            d = sd()
            return d if d["status"] == status else None
        return check

    wait_for(finished("SUCCESSFUL"), 120, interval=0.5, what="the first deployment")
    assert serves(prod_port, "v1") and serves(test_port, "v1")

    # (b) BLUE_GREEN with the test listener checked before the switch.
    load = Load(prod_port)
    hook = [{"targetType": "PAUSE", "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"],
             "timeoutConfiguration": {"timeoutInMinutes": 600, "action": "ROLLBACK"}}]
    up.aws_ok("ecs", "update-service", "--cluster", cluster, "--service", "web", "--task-definition",
              f"{cluster}:2", "--deployment-configuration",
              json.dumps({"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 2, "lifecycleHooks": hook}))
    paused = wait_for(lambda: (lambda d: d if d.get("lifecycleStage") == "POST_TEST_TRAFFIC_SHIFT"
                               and d.get("lifecycleHookDetails") else None)(sd()),
                      120, interval=0.5, what="the deployment to pause after the test traffic shift")
    assert serves(test_port, "v2"), "the test listener serves the new revision"
    assert load.snapshot().get("v2", 0) == 0, "production still on the old revision"
    detail = paused["lifecycleHookDetails"][0]
    assert detail["status"] == "AWAITING_ACTION" and detail["hookId"].startswith("ecs-pause-"), detail
    up.aws_ok("ecs", "continue-service-deployment", "--service-deployment-arn",
              paused["serviceDeploymentArn"], "--hook-id", detail["hookId"], "--action", "CONTINUE")
    wait_for(finished("SUCCESSFUL"), 120, interval=0.5, what="the blue/green deployment")
    load.finish("BLUE_GREEN")
    assert serves(prod_port, "v2")

    # (c) CANARY 10 % then 100 %.
    load = Load(prod_port)
    up.aws_ok("ecs", "update-service", "--cluster", cluster, "--service", "web", "--task-definition",
              f"{cluster}:3", "--deployment-configuration",
              json.dumps({"strategy": "CANARY", "bakeTimeInMinutes": 0, "lifecycleHooks": [],
                          "canaryConfiguration": {"canaryPercent": 10.0, "canaryBakeTimeInMinutes": 8}}))
    wait_for(lambda: sd().get("lifecycleStage") == "PRODUCTION_TRAFFIC_SHIFT", 120, interval=0.2,
             what="the canary step")
    before = load.snapshot()
    during = wait_for(lambda: (lambda now: now if sum(now.values()) - sum(before.values()) >= 1000 else None)(
        load.snapshot()), 30, interval=0.1, what="1000 requests during the canary step")
    canary = share(before, during, "v3")
    assert 0.05 <= canary <= 0.15, f"the canary got {canary:.1%} of production requests"
    wait_for(finished("SUCCESSFUL"), 120, interval=0.5, what="the canary deployment")
    load.finish("CANARY")
    assert serves(prod_port, "v3")

    # (d) A rollback after the production shift.
    load = Load(prod_port)
    hook = [{"targetType": "PAUSE", "lifecycleStages": ["POST_PRODUCTION_TRAFFIC_SHIFT"]}]
    up.aws_ok("ecs", "update-service", "--cluster", cluster, "--service", "web", "--task-definition",
              f"{cluster}:4", "--deployment-configuration",
              json.dumps({"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 0, "lifecycleHooks": hook}))
    paused = wait_for(lambda: (lambda d: d if d.get("lifecycleStage") == "POST_PRODUCTION_TRAFFIC_SHIFT"
                               and d.get("lifecycleHookDetails") else None)(sd()),
                      120, interval=0.5, what="the deployment to pause after the production shift")
    assert serves(prod_port, "v4")
    up.aws_ok("ecs", "continue-service-deployment", "--service-deployment-arn",
              paused["serviceDeploymentArn"], "--hook-id", paused["lifecycleHookDetails"][0]["hookId"],
              "--action", "ROLLBACK")
    wait_for(finished("ROLLBACK_SUCCESSFUL"), 120, interval=0.5, what="the rollback")
    assert serves(prod_port, "v3") and serves(test_port, "v3")
    load.finish("rollback")
    weights = {g["TargetGroupArn"]: g["Weight"] for g in elb.describe_rules(RuleArns=[prod_rule])["Rules"][0]
               ["Actions"][0]["ForwardConfig"]["TargetGroups"]}
    assert sorted(weights.values()) == [0, 100], weights


def test_blue_green_behind_an_nlb_shifts_the_listener_after_ecs_ten_minute_settles(spawn_server, docker_run_id):
    """A Network Load Balancer's production "rule" is its listener: ECS shifts the listener's
    default forward action, and holds each traffic shift stage 10 minutes (here a minute is
    200 ms, so 2 s) while the NLB's data plane follows. The new revision serves through the
    NLB afterwards, with no failed connection during the switch."""
    minute = 0.2
    up = spawn_server("nlb-bg", command="up", extra_args=("--deployment-minute", "200ms"))
    run_id = docker_run_id
    ecs = _client(up, "ecs")
    cluster = f"nlbbg-{uuid.uuid4().hex[:6]}"
    up.aws_ok("ecs", "create-cluster", "--cluster-name", cluster)
    lb = up.aws_ok("elbv2", "create-load-balancer", "--name", cluster, "--type", "network",
                   "--subnets", "subnet-a", "subnet-b")["LoadBalancers"][0]["LoadBalancerArn"]
    up.aws_ok("elbv2", "wait", "load-balancer-available", "--load-balancer-arns", lb)
    blue, green = (target_group(up, f"{cluster}-{color}", "TCP", "--health-check-protocol", "TCP")
                   for color in ("blue", "green"))
    port = free_port()
    listener = up.aws_ok(
        "elbv2", "create-listener", "--load-balancer-arn", lb, "--protocol", "TCP", "--port", str(port),
        "--default-actions", weighted(blue, green))["Listeners"][0]["ListenerArn"]
    register_versions(up, cluster, run_id, ("v1", "v2"))
    lbs = json.dumps([{"targetGroupArn": blue, "containerName": "web", "containerPort": 8080,
                       "advancedConfiguration": {"alternateTargetGroupArn": green,
                                                 "productionListenerRule": listener, "roleArn": ROLE}}])
    up.aws_ok("ecs", "create-service", "--cluster", cluster, "--service-name", "web",
              "--task-definition", f"{cluster}:1", "--desired-count", "2", "--launch-type", "FARGATE",
              "--network-configuration", "awsvpcConfiguration={subnets=[subnet-local]}",
              "--deployment-configuration", json.dumps({"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 0}),
              "--load-balancers", lbs)

    def sd() -> dict:
        return current_deployment(ecs, cluster)

    wait_for(lambda: sd()["status"] == "SUCCESSFUL", 120, interval=0.5, what="the first deployment")
    wait_for(lambda: serves(port, "v1"), 30, interval=0.5, what="v1 through the NLB")

    load = Load(port)
    up.aws_ok("ecs", "update-service", "--cluster", cluster, "--service", "web",
              "--task-definition", f"{cluster}:2")
    # Time spent in the two traffic shift stages, as seen by polling.
    wait_for(lambda: sd().get("lifecycleStage") == "TEST_TRAFFIC_SHIFT", 120, interval=0.05,
             what="the test traffic shift")
    shifting = time.monotonic()
    assert load.snapshot().get("v2", 0) == 0, "production still on the old revision"
    wait_for(lambda: sd()["status"] == "SUCCESSFUL", 120, interval=0.05, what="the NLB blue/green deployment")
    held = time.monotonic() - shifting
    assert held >= 2 * 10 * minute * 0.9, f"the two shift stages lasted {held:.2f}s, not 2 x 10 minutes"
    load.finish("NLB BLUE_GREEN")
    assert serves(port, "v2")
    action = up.aws_ok("elbv2", "describe-listeners", "--listener-arns", listener)["Listeners"][0]["DefaultActions"][0]
    weights = {g["TargetGroupArn"]: g["Weight"] for g in action["ForwardConfig"]["TargetGroups"]}
    # The listener forwards everything to the group holding the new revision's tasks (the
    # sides alternate from one deployment to the next); the other group is empty.
    registered = {tg: len(up.aws_ok("elbv2", "describe-target-health", "--target-group-arn", tg)
                          ["TargetHealthDescriptions"]) for tg in (blue, green)}
    serving = max(registered, key=registered.get)
    assert registered[serving] == 2 and sum(registered.values()) == 2, registered
    assert weights[serving] == 100 and sum(weights.values()) == 100, (weights, registered)
