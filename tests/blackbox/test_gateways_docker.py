"""ECS Gateways on `gantry up` with real Docker, driven with the AWS CLI.

A gateway (`hostSharedAlb`) is associated with a cluster; a service whose gateway connectors
name its task definition's port names gets a gateway route per connector: a target group and a
host-header rule on the gateway's own ALB (made with the first route, removed with the last),
and a service URL, `http://SERVICE-ID.gw.REGION.localhost:PORT`, that answers with the
container's page through that ALB. ListGateways, ListGatewayClusterAssociations and
ListGatewayRoutes page through the CLI's paginators; disassociation waits (DISASSOCIATING) for
the services' routes to go; deletion protection and associations keep a gateway from deletion.

The CLI v1 in the venv vendors an older botocore without the Gateway operations, so these calls
point it (AWS_DATA_PATH) at the venv's own botocore models, which have them.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import uuid
from pathlib import Path
from urllib.parse import urlparse

import botocore
import pytest

from harness import aws_cli, busybox_container, wait_for

MODELS = str(Path(botocore.__file__).parent / "data")
ROLE = "arn:aws:iam::000000000000:role/ecsInfrastructureRoleForGateways"
# Two ports: 8080 serves the page and /health, 8081 the same (a second connector).
SERVE = ("mkdir -p /www && echo ok > /www/health && echo hello-gateway > /www/index.html && "
         "httpd -p 8081 -h /www && exec httpd -f -p 8080 -h /www")


def cli(server, *args: str):
    env = server.cli_env()
    env["AWS_DATA_PATH"] = MODELS
    p = subprocess.run([aws_cli(), *args, "--output", "json"], env=env, capture_output=True,
                       text=True, timeout=120)
    if p.returncode == 0:
        return 0, json.loads(p.stdout) if p.stdout.strip() else {}
    return p.returncode, p.stderr


def ok(server, *args: str):
    rc, out = cli(server, *args)
    assert rc == 0, f"aws {' '.join(args)} failed ({rc}): {out}"
    return out


def answers(port: int, host: str, want: str):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/", headers={"Host": host})
        r = conn.getresponse()
        return r.status == 200 and r.read().decode().strip() == want
    except OSError:
        return None
    finally:
        conn.close()


@pytest.fixture
def up(spawn_server, docker_run_id):
    return spawn_server("up", command="up")


def test_a_service_connected_to_a_gateway_answers_at_its_url(up, docker_run_id):
    from harness import free_port
    port = free_port()
    cluster = f"gw-{uuid.uuid4().hex[:6]}"
    ok(up, "ecs", "create-cluster", "--cluster-name", cluster)
    gw = ok(up, "ecs", "create-gateway", "--name", "edge", "--infrastructure-role-arn", ROLE,
            "--configuration", json.dumps({"hostSharedAlb": {"port": port}}),
            "--tags", "key=team,value=edge")
    assert gw == {"gatewayArn": "arn:aws:ecs:us-east-1:000000000000:gateway/edge",
                  "name": "edge", "status": "ACTIVE"}
    described = ok(up, "ecs", "describe-gateway", "--gateway", "edge")["gateway"]
    assert described["deletionProtection"] is True and described["accessType"] == "PUBLIC"
    assert described["configuration"]["hostSharedAlb"]["currentAlbCount"] == 0
    assert described["propagateTags"] == "GATEWAY"
    assoc = ok(up, "ecs", "associate-gateway-with-cluster", "--gateway", "edge", "--cluster", cluster)
    assert assoc["status"] == "ACTIVE"
    # Nothing is provisioned before a service uses the gateway.
    rc, out = cli(up, "elbv2", "describe-load-balancers")
    assert rc == 0 and out["LoadBalancers"] == []

    ok(up, "ecs", "register-task-definition", "--family", cluster, "--network-mode", "awsvpc",
       "--requires-compatibilities", "FARGATE", "--cpu", "256", "--memory", "512",
       "--container-definitions", json.dumps([busybox_container(
           "web", docker_run_id, memory=None, command=["sh", "-c", SERVE],
           portMappings=[{"containerPort": 8080, "name": "web"},
                         {"containerPort": 8081, "name": "alt"}])]))
    connectors = [{"portName": "web", "healthCheck": {"healthCheckPath": "/health",
                                                     "healthCheckIntervalSeconds": 5},
                   "deregistrationDelay": {"timeoutSeconds": 5}},
                  {"portName": "alt", "healthCheck": {"healthCheckPath": "/health"},
                   "deregistrationDelay": {"timeoutSeconds": 5}}]
    ok(up, "ecs", "create-service", "--cluster", cluster, "--service-name", "web",
       "--task-definition", cluster, "--desired-count", "1", "--launch-type", "FARGATE",
       "--network-configuration", "awsvpcConfiguration={subnets=[subnet-local]}",
       "--gateway-connectors", json.dumps(connectors))

    # One route per connector; the paginator walks them one page at a time.
    routes = ok(up, "ecs", "list-gateway-routes", "--gateway", "edge", "--page-size", "1")["gatewayRoutes"]
    assert sorted(r["serviceContainerPortName"] for r in routes) == ["alt", "web"]
    assert {r["status"] for r in routes} == {"ACTIVE"}
    first = ok(up, "ecs", "list-gateway-routes", "--gateway", "edge", "--max-items", "1")
    assert len(first["gatewayRoutes"]) == 1 and first["NextToken"]
    rest = ok(up, "ecs", "list-gateway-routes", "--gateway", "edge", "--max-items", "1",
              "--starting-token", first["NextToken"])
    assert {first["gatewayRoutes"][0]["gatewayRouteArn"], rest["gatewayRoutes"][0]["gatewayRouteArn"]} \
        == {r["gatewayRouteArn"] for r in routes}
    web = next(r for r in routes if r["serviceContainerPortName"] == "web")
    assert ok(up, "ecs", "list-gateway-routes", "--service-container-port-name", "alt")["gatewayRoutes"] \
        == [r for r in routes if r["serviceContainerPortName"] == "alt"]
    route = ok(up, "ecs", "describe-gateway-route", "--gateway-route-arn",
               web["gatewayRouteArn"])["gatewayRoute"]
    assert route["serviceArn"].endswith(f":service/{cluster}/web")
    url = urlparse(route["serviceUrl"])
    assert url.hostname.endswith(".gw.us-east-1.localhost") and url.port == port
    alb = route["resources"]["hostSharedAlb"][0]

    # The route's resources, as ELBv2 shows them: the gateway's ALB, a rule for the host.
    lbs = ok(up, "elbv2", "describe-load-balancers")["LoadBalancers"]
    assert [lb["LoadBalancerArn"] for lb in lbs] == [alb["loadBalancerArn"]]
    rule = ok(up, "elbv2", "describe-rules", "--rule-arns", alb["listenerRuleArn"])["Rules"][0]
    assert rule["Conditions"][0]["Values"] == [url.hostname]
    tg = ok(up, "elbv2", "describe-target-groups", "--target-group-arns",
            rule["Actions"][0]["TargetGroupArn"])["TargetGroups"][0]
    assert (tg["TargetType"], tg["Port"], tg["HealthCheckPath"]) == ("ip", 8080, "/health")
    resources = ok(up, "ecs", "describe-gateway-resources", "--gateway", "edge")["gatewayResources"]
    assert resources["resources"]["hostSharedAlb"][0]["loadBalancerArn"] == alb["loadBalancerArn"]
    assert sorted(resources["resources"]["hostSharedAlb"][0]["gatewayRouteArns"]) == \
        sorted(r["gatewayRouteArn"] for r in routes)
    assert ok(up, "ecs", "describe-gateway", "--gateway", "edge")["gateway"]["configuration"][
        "hostSharedAlb"]["currentAlbCount"] == 1

    wait_for(lambda: answers(port, url.hostname, "hello-gateway"), timeout=120,
             what=f"{route['serviceUrl']} answering")
    curl = subprocess.run(["curl", "-sS", "--max-time", "5", route["serviceUrl"]],
                          capture_output=True, text=True)
    assert curl.returncode == 0 and curl.stdout.strip() == "hello-gateway", curl.stderr

    # The service revision reports its connectors.
    sd = ok(up, "ecs", "list-service-deployments", "--cluster", cluster, "--service", "web")[
        "serviceDeployments"][0]
    rev = ok(up, "ecs", "describe-service-revisions", "--service-revision-arns",
             sd["targetServiceRevisionArn"])["serviceRevisions"][0]
    assert sorted(c["portName"] for c in rev["gatewayConnectors"]) == ["alt", "web"]

    # Associations: at most 5 gateways per cluster; the paginator walks them.
    for i in range(1, 6):
        ok(up, "ecs", "create-gateway", "--name", f"edge-{i}", "--infrastructure-role-arn", ROLE,
           "--configuration", json.dumps({"hostSharedAlb": {"port": free_port()}}))
    for i in range(1, 5):
        ok(up, "ecs", "associate-gateway-with-cluster", "--gateway", f"edge-{i}", "--cluster", cluster)
    rc, out = cli(up, "ecs", "associate-gateway-with-cluster", "--gateway", "edge-5", "--cluster", cluster)
    assert rc != 0 and "InvalidParameterException" in out and "5 gateways" in out
    assocs = ok(up, "ecs", "list-gateway-cluster-associations", "--cluster", cluster,
                "--page-size", "2")["gatewayClusterAssociations"]
    assert sorted(a["gatewayArn"].rsplit("/", 1)[1] for a in assocs) == \
        ["edge", "edge-1", "edge-2", "edge-3", "edge-4"]
    names = [g["name"] for g in ok(up, "ecs", "list-gateways", "--page-size", "2")["gateways"]]
    assert sorted(names) == ["edge", "edge-1", "edge-2", "edge-3", "edge-4", "edge-5"]
    assert [g["name"] for g in ok(up, "ecs", "list-gateways", "--names", "edge-5")["gateways"]] == ["edge-5"]

    # Deletion: protection first, then the association; disassociating waits for the routes.
    rc, out = cli(up, "ecs", "delete-gateway", "--gateway", "edge")
    assert rc != 0 and "deletion protection" in out
    assert ok(up, "ecs", "update-gateway", "--gateway", "edge", "--no-deletion-protection")[
        "status"] == "UPDATE_IN_PROGRESS"
    assert ok(up, "ecs", "describe-gateway", "--gateway", "edge")["gateway"]["status"] == "UPDATE_COMPLETE"
    assert ok(up, "ecs", "disassociate-gateway-from-cluster", "--gateway", "edge",
              "--cluster", cluster)["status"] == "DISASSOCIATING"
    rc, out = cli(up, "ecs", "delete-gateway", "--gateway", "edge")
    assert rc != 0 and "ClientException" in out
    ok(up, "ecs", "update-service", "--cluster", cluster, "--service", "web", "--gateway-connectors", "[]")
    assert ok(up, "ecs", "list-gateway-routes", "--gateway", "edge")["gatewayRoutes"] == []
    assert ok(up, "ecs", "list-gateway-cluster-associations", "--gateway", "edge")[
        "gatewayClusterAssociations"] == []
    rc, out = cli(up, "elbv2", "describe-load-balancers", "--load-balancer-arns", alb["loadBalancerArn"])
    assert rc != 0 and "LoadBalancerNotFound" in out
    assert ok(up, "ecs", "delete-gateway", "--gateway", "edge")["status"] == "DELETED"
    rc, out = cli(up, "ecs", "describe-gateway", "--gateway", "edge")
    assert rc != 0 and "GatewayNotFoundException" in out
    ok(up, "ecs", "delete-service", "--cluster", cluster, "--service", "web", "--force")
