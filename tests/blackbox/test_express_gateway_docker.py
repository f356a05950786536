"""ECS Express Mode on `gantry up` with real Docker: one CreateExpressGatewayService call gives a
running web service with a URL.

The call registers a task definition (container `Main`), makes the cluster `default`, a FARGATE
service, and, through Gantry's own ELBv2 and Application Auto Scaling, the shared ALB
(`ecs-express-gateway-alb`, its HTTP listener on `--express-port`), a host-header rule, an `ip`
target group and a target tracking policy, all visible through `aws elbv2` and `aws
application-autoscaling`. The endpoint, `http://NAME-ID.ecs.REGION.localhost:PORT`, answers with
the container's page through the ALB (curl resolves `*.localhost` to the loopback address itself).
An update is a new service revision whose page the endpoint serves next; a delete drains the
service to INACTIVE and removes what was provisioned.
"""

from __future__ import annotations

import http.client
import json
import subprocess
from urllib.parse import urlparse

import pytest

from harness import TEST_IMAGE, docker, docker_ids, free_port, wait_for

ROLE = "arn:aws:iam::000000000000:role/ecsInfrastructureRoleForExpressServices"
EXEC_ROLE = "arn:aws:iam::000000000000:role/ecsTaskExecutionRole"


def serve(body: str) -> list[str]:
    # sh stays PID 1 and exits on SIGTERM (busybox ignores it as PID 1 otherwise).
    return ["sh", "-c",
            f"mkdir -p /www && echo ok > /www/ping && echo {body} > /www/index.html && "
            "trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"]


def get(port: int, host: str, path: str = "/", timeout: float = 5) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host})
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def answers(port: int, host: str, want: str):
    try:
        status, body = get(port, host)
    except OSError:
        return None
    return status == 200 and body.strip() == want


@pytest.fixture
def express(spawn_server, docker_run_id):
    port = free_port()
    server = spawn_server("up", command="up", extra_args=("--express-port", str(port)))
    server.express_port = port
    yield server
    # The tasks' containers carry no test-run label (Express makes the task definition): remove
    # what the service's tasks left, by their task ARN.
    rc, out = server.aws("ecs", "list-tasks", "--cluster", "default", "--desired-status", "STOPPED")
    arns = out.get("taskArns", []) if rc == 0 else []
    rc, out = server.aws("ecs", "list-tasks", "--cluster", "default")
    arns += out.get("taskArns", []) if rc == 0 else []
    for arn in arns:
        ids = docker_ids({"gantry.task-arn": arn})
        if ids:
            docker("rm", "-f", *ids)


def test_one_call_gives_a_web_service_with_a_url_then_update_and_delete(express):
    up, port = express, express.express_port
    created = up.aws_ok(
        "ecs", "create-express-gateway-service", "--service-name", "web",
        "--infrastructure-role-arn", ROLE, "--execution-role-arn", EXEC_ROLE,
        "--primary-container", json.dumps({"image": TEST_IMAGE, "containerPort": 8080,
                                           "command": serve("hello-express")}),
        "--scaling-target", "minTaskCount=1,maxTaskCount=3",
        "--tags", "key=team,value=web")["service"]
    assert created["status"]["statusCode"] == "ACTIVE"
    assert created["serviceArn"] == "arn:aws:ecs:us-east-1:000000000000:service/default/web"
    assert created["cluster"] == "arn:aws:ecs:us-east-1:000000000000:cluster/default"
    config = created["activeConfigurations"][0]
    assert (config["cpu"], config["memory"], config["healthCheckPath"]) == ("256", "512", "/ping")
    assert config["scalingTarget"] == {"minTaskCount": 1, "maxTaskCount": 3,
                                       "autoScalingMetric": "AVERAGE_CPU",
                                       "autoScalingTargetValue": 60}
    endpoint = config["ingressPaths"][0]["endpoint"]
    assert config["ingressPaths"][0]["accessType"] == "PUBLIC"
    url = urlparse(endpoint)
    assert url.hostname.startswith("web-") and url.hostname.endswith(".ecs.us-east-1.localhost")
    assert url.port == port

    # The default cluster was made; the service is FARGATE, awsvpc, behind the target group.
    cluster = up.aws_ok("ecs", "describe-clusters", "--clusters", "default")["clusters"][0]
    assert cluster["status"] == "ACTIVE"
    svc = up.aws_ok("ecs", "describe-services", "--cluster", "default", "--services", "web")["services"][0]
    assert svc["launchType"] == "FARGATE" and svc["desiredCount"] == 1
    td = up.aws_ok("ecs", "describe-task-definition", "--task-definition",
                   svc["taskDefinition"])["taskDefinition"]
    assert td["containerDefinitions"][0]["name"] == "Main"
    assert td["networkMode"] == "awsvpc" and td["requiresCompatibilities"] == ["FARGATE"]
    tg_arn = svc["loadBalancers"][0]["targetGroupArn"]

    # What ECS provisioned, as ELBv2 and Application Auto Scaling show it.
    lb = up.aws_ok("elbv2", "describe-load-balancers", "--names",
                   "ecs-express-gateway-alb")["LoadBalancers"][0]
    listener = up.aws_ok("elbv2", "describe-listeners", "--load-balancer-arn",
                         lb["LoadBalancerArn"])["Listeners"][0]
    assert listener["Port"] == port and listener["Protocol"] == "HTTP"
    rules = up.aws_ok("elbv2", "describe-rules", "--listener-arn", listener["ListenerArn"])["Rules"]
    hosts = {r["Conditions"][0]["Values"][0]: r["Actions"][0]["TargetGroupArn"]
             for r in rules if not r["IsDefault"]}
    assert hosts == {url.hostname: tg_arn}
    tg = up.aws_ok("elbv2", "describe-target-groups", "--target-group-arns", tg_arn)["TargetGroups"][0]
    assert (tg["TargetType"], tg["Port"], tg["HealthCheckPath"]) == ("ip", 8080, "/ping")
    targets = up.aws_ok("application-autoscaling", "describe-scalable-targets",
                        "--service-namespace", "ecs")["ScalableTargets"]
    assert [(t["ResourceId"], t["MinCapacity"], t["MaxCapacity"]) for t in targets] == \
        [("service/default/web", 1, 3)]
    policies = up.aws_ok("application-autoscaling", "describe-scaling-policies",
                         "--service-namespace", "ecs")["ScalingPolicies"]
    assert len(policies) == 1 and policies[0]["PolicyType"] == "TargetTrackingScaling"
    tracking = policies[0]["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["TargetValue"] == 60.0
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == \
        "ECSServiceAverageCPUUtilization"

    # The endpoint answers with the container's page, through the ALB; another host is the
    # listener's default 404.
    wait_for(lambda: answers(port, url.hostname, "hello-express"), timeout=120,
             what=f"{endpoint} answering")
    curl = subprocess.run(["curl", "-sS", "--max-time", "5", endpoint], capture_output=True, text=True)
    assert curl.returncode == 0 and curl.stdout.strip() == "hello-express", curl.stderr
    assert get(port, "elsewhere.localhost")[0] == 404

    # The service revision reports what ECS manages for it.
    managed = up.aws_ok("ecs", "describe-service-revisions", "--service-revision-arns",
                        config["serviceRevisionArn"])["serviceRevisions"][0]["ecsManagedResources"]
    path = managed["ingressPaths"][0]
    assert (path["endpoint"], path["loadBalancer"]["arn"], path["targetGroups"][0]["arn"]) == \
        (endpoint, lb["LoadBalancerArn"], tg_arn)
    assert path["listener"]["arn"] == listener["ListenerArn"] and path["loadBalancer"]["status"] == "ACTIVE"
    assert managed["autoScaling"]["scalableTarget"]["arn"] == targets[0]["ScalableTargetARN"]
    assert managed["autoScaling"]["applicationAutoScalingPolicies"][0]["arn"] == policies[0]["PolicyARN"]

    described = up.aws_ok("ecs", "describe-express-gateway-service", "--service-arn",
                          created["serviceArn"], "--include", "TAGS")["service"]
    assert described["tags"] == [{"key": "team", "value": "web"}]
    assert described["status"]["statusCode"] == "ACTIVE"
    assert "tags" not in up.aws_ok("ecs", "describe-express-gateway-service", "--service-arn",
                                   created["serviceArn"])["service"]

    # An update: a new task definition revision and service revision, served next.
    updated = up.aws_ok(
        "ecs", "update-express-gateway-service", "--service-arn", created["serviceArn"],
        "--primary-container", json.dumps({"image": TEST_IMAGE, "containerPort": 8080,
                                           "command": serve("hello-v2")}))["service"]
    target = updated["targetConfiguration"]
    assert target["taskDefinitionArn"].endswith(":2")
    assert target["serviceRevisionArn"] != config["serviceRevisionArn"]
    assert target["scalingTarget"]["maxTaskCount"] == 3
    wait_for(lambda: answers(port, url.hostname, "hello-v2"), timeout=180,
             what=f"{endpoint} answering the update")
    now = up.aws_ok("ecs", "describe-express-gateway-service", "--service-arn",
                    created["serviceArn"])["service"]
    assert now["activeConfigurations"][0]["taskDefinitionArn"] == target["taskDefinitionArn"]

    # A delete: DRAINING, then INACTIVE; what was provisioned is gone.
    deleted = up.aws_ok("ecs", "delete-express-gateway-service", "--service-arn",
                        created["serviceArn"])["service"]
    assert deleted["status"]["statusCode"] == "DRAINING"
    rc, out = up.aws("ecs", "delete-express-gateway-service", "--service-arn", created["serviceArn"])
    assert rc != 0 and "ServiceNotActiveException" in out
    wait_for(lambda: up.aws_ok("ecs", "describe-express-gateway-service", "--service-arn",
                               created["serviceArn"])["service"]["status"]["statusCode"]
             == "INACTIVE", timeout=120, what="the service INACTIVE")
    rc, out = up.aws("elbv2", "describe-load-balancers", "--names", "ecs-express-gateway-alb")
    assert rc != 0 and "LoadBalancerNotFound" in out
    rc, out = up.aws("elbv2", "describe-target-groups", "--target-group-arns", tg_arn)
    assert rc != 0 and "TargetGroupNotFound" in out
    assert up.aws_ok("application-autoscaling", "describe-scalable-targets",
                     "--service-namespace", "ecs")["ScalableTargets"] == []


def test_errors_name_what_is_wrong(express):
    up = express
    rc, out = up.aws("ecs", "create-express-gateway-service", "--infrastructure-role-arn", ROLE,
                     "--primary-container", json.dumps({"image": TEST_IMAGE}),
                     "--task-definition-arn", "arn:aws:ecs:us-east-1:000000000000:task-definition/x:1")
    assert rc != 0 and "InvalidParameterException" in out and "both" in out
    rc, out = up.aws("ecs", "create-express-gateway-service", "--infrastructure-role-arn", ROLE,
                     "--cluster", "nope", "--primary-container", json.dumps({"image": TEST_IMAGE}))
    assert rc != 0 and "ClusterNotFoundException" in out
    rc, out = up.aws("ecs", "create-express-gateway-service", "--infrastructure-role-arn", ROLE,
                     "--health-check-path", "ping",
                     "--primary-container", json.dumps({"image": TEST_IMAGE}))
    assert rc != 0 and "'ping'" in out
    missing = "arn:aws:ecs:us-east-1:000000000000:service/default/ghost"
    rc, out = up.aws("ecs", "describe-express-gateway-service", "--service-arn", missing)
    assert rc != 0 and "ResourceNotFoundException" in out
    rc, out = up.aws("ecs", "delete-express-gateway-service", "--service-arn", missing)
    assert rc != 0 and "ServiceNotFoundException" in out
