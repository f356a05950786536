"""Several hosts (tests/blackbox/hosts.py: network namespaces on a bridge, a dockerd and a
`gantry agent --task-subnet` in each, the server on the bridge address, `gantry routes` on the
server's side): awsvpc tasks on two hosts reach each other by their private IPs, an ALB in the
server reaches tasks on either host, tasks see each other's own addresses, and a partitioned
host's instance goes disconnected, its service task is replaced on the other host, and after
healing its agent stops the replaced task (no duplicate), with Docker hosts and with Docker-free
ones (`gantry sim`). Needs root and Docker; fails, never skips, when either is missing."""

from __future__ import annotations

import http.client
import ipaddress
import json
import subprocess
import uuid
from dataclasses import dataclass

import boto3
import pytest
from botocore.config import Config

from harness import GantryServer, busybox_container, free_port, gantry_bin, wait_for
from hosts import Host, Hosts, missing_prerequisites

# Serves $WHO at / and the caller's address at /cgi-bin/ip on 8080.
SERVE = ("""mkdir -p /tmp/w/cgi-bin && echo "$WHO" > /tmp/w/index.html && """
         """printf '#!/bin/sh\\necho "Content-Type: text/plain"\\necho\\necho "$REMOTE_ADDR"\\n' """
         """> /tmp/w/cgi-bin/ip && chmod +x /tmp/w/cgi-bin/ip && exec httpd -f -p 8080 -h /tmp/w""")
AWSVPC = {"awsvpcConfiguration": {"subnets": ["subnet-local"]}}


@dataclass
class Env:
    hosts: Hosts
    server: GantryServer
    cluster: str
    a: Host
    b: Host


@pytest.fixture(scope="module")
def env(tmp_path_factory, docker_run_id):
    why = missing_prerequisites()
    if why:
        pytest.fail(f"the several-hosts tests cannot run: {why}", pytrace=False)
    base = tmp_path_factory.mktemp("hosts")
    hosts = Hosts(base)
    server = None
    try:
        a, b = hosts.add(), hosts.add()
        server = GantryServer(base / "data", base / "server.log", enable_reset=False, host=hosts.gateway,
                              extra_args=("--lost-instance-timeout", "5s")).start()
        cluster = f"hosts-{hosts.tag}-{uuid.uuid4().hex[:6]}"
        server.ecs.create_cluster(clusterName=cluster)
        a.start_agent(server, cluster)
        b.start_agent(server, cluster)
        hosts.routes(server, cluster)
        yield Env(hosts, server, cluster, a, b)
    finally:
        if server:
            server.kill()
        hosts.close()


def attrs(ci: dict) -> dict:
    return {x["name"]: x.get("value") for x in ci.get("attributes", [])}


def task_ip(task: dict) -> str:
    details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
    return details["privateIPv4Address"]


def describe(env: Env, arns: list[str]) -> list[dict]:
    return env.server.ecs.describe_tasks(cluster=env.cluster, tasks=arns)["tasks"]


def start_on(env: Env, host: Host, family: str, who: str) -> dict:
    out = env.server.ecs.start_task(
        cluster=env.cluster, taskDefinition=family, containerInstances=[host.agent.instance_arn],
        networkConfiguration=AWSVPC,
        overrides={"containerOverrides": [{"name": "web", "environment": [{"name": "WHO", "value": who}]}]})
    assert not out.get("failures"), out
    arn = out["tasks"][0]["taskArn"]

    def running():
        [t] = describe(env, [arn])
        assert t["lastStatus"] != "STOPPED", f"the task stopped: {t.get('stoppedReason')}"
        return t if t["lastStatus"] == "RUNNING" else None

    return wait_for(running, 90, interval=0.3, what=f"the task on {host.netns} to run")


def wget(host: Host, url: str, *, container: str | None = None) -> str:
    """GET `url` from a task's container of `host` (docker exec), or from the host's namespace."""
    if container:
        # (This busybox's `wget -T` crashes: `timeout` bounds it instead.)
        return host.docker("exec", container, "timeout", "5", "wget", "-qO-", url, check=False, timeout=20)
    return host.exec("curl", "-sS", "-m", "5", url, check=False, timeout=20).stdout


def web_container(host: Host, task_arn: str) -> str:
    ids = host.docker("ps", "-q", "--filter", f"label=gantry.task-arn={task_arn}",
                      "--filter", "label=gantry.container-name=web").split()
    assert len(ids) == 1, f"containers of {task_arn} on {host.netns}: {ids}"
    return ids[0]


def register_web(env: Env, family: str, run_id: str):
    env.server.ecs.register_task_definition(
        family=family, networkMode="awsvpc", requiresCompatibilities=["EC2"],
        containerDefinitions=[busybox_container("web", run_id, command=["sh", "-c", SERVE],
                                                environment=[{"name": "WHO", "value": "nobody"}],
                                                portMappings=[{"containerPort": 8080}])])


def test_awsvpc_tasks_reach_each_other_across_hosts_and_an_alb_reaches_both(env, docker_run_id):
    a, b = env.a, env.b
    # Each instance reports its subnet and the address its peers route it through.
    for h in (a, b):
        got = attrs(h.agent.describe())
        assert (got.get("gantry.task-subnet"), got.get("gantry.host-address")) == (h.task_subnet, h.address)

    family = f"web-{env.hosts.tag}"
    register_web(env, family, docker_run_id)
    on_a = start_on(env, a, family, "on-a")
    on_b = start_on(env, b, family, "on-b")
    ip_a, ip_b = task_ip(on_a), task_ip(on_b)
    assert ipaddress.ip_address(ip_a) in ipaddress.ip_network(a.task_subnet), (ip_a, a.task_subnet)
    assert ipaddress.ip_address(ip_b) in ipaddress.ip_network(b.task_subnet), (ip_b, b.task_subnet)

    # Each agent routes the other's subnet through the other's host address.
    wait_for(lambda: f"{b.task_subnet} via {b.address}" in a.exec("ip", "-4", "route").stdout, 30,
             interval=0.2, what=f"{a.netns}'s route to {b.task_subnet}")
    wait_for(lambda: f"{a.task_subnet} via {a.address}" in b.exec("ip", "-4", "route").stdout, 30,
             interval=0.2, what=f"{b.netns}'s route to {a.task_subnet}")

    # Task to task, both ways, by private IP.
    web_a, web_b = web_container(a, on_a["taskArn"]), web_container(b, on_b["taskArn"])
    wait_for(lambda: wget(a, f"http://{ip_b}:8080/", container=web_a).strip() == "on-b", 30,
             interval=0.3, what="the task on A reaching the task on B")
    wait_for(lambda: wget(b, f"http://{ip_a}:8080/", container=web_b).strip() == "on-a", 30,
             interval=0.3, what="the task on B reaching the task on A")
    # A task sees its peer task's own address (no masquerade between task subnets); a host's
    # own connection arrives from the host's address.
    def caller(body: str) -> str:
        """httpd's REMOTE_ADDR, `[::ffff:10.0.0.1]` for an IPv4 caller on its dual-stack socket."""
        return body.strip().removeprefix("[::ffff:").removesuffix("]")

    assert caller(wget(a, f"http://{ip_b}:8080/cgi-bin/ip", container=web_a)) == ip_a
    assert caller(wget(b, f"http://{ip_a}:8080/cgi-bin/ip", container=web_b)) == ip_b
    assert caller(wget(a, f"http://{ip_b}:8080/cgi-bin/ip")) == a.address
    # Host to the other host's task, and the server's host (root namespace) to both.
    assert wget(a, f"http://{ip_b}:8080/").strip() == "on-b"
    assert wget(b, f"http://{ip_a}:8080/").strip() == "on-a"

    def from_root(ip: str) -> str:
        conn = http.client.HTTPConnection(ip, 8080, timeout=3)
        try:
            conn.request("GET", "/")
            return conn.getresponse().read().decode().strip()
        finally:
            conn.close()

    wait_for(lambda: from_root(ip_a) == "on-a" and from_root(ip_b) == "on-b", 30, interval=0.3,
             what="the server's host reaching the tasks of both hosts")

    # An ALB (in the server) with both tasks as ip targets serves from both hosts.
    elb = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test",
                                region_name="us-east-1").client(
        "elbv2", endpoint_url=env.server.endpoint, config=Config(retries={"max_attempts": 1}))
    lb = elb.create_load_balancer(Name=f"hosts-{env.hosts.tag}",
                                  Subnets=["subnet-a", "subnet-b"])["LoadBalancers"][0]["LoadBalancerArn"]
    tg = elb.create_target_group(
        Name=f"hosts-{env.hosts.tag}", Protocol="HTTP", Port=8080, TargetType="ip", VpcId="vpc-1",
        HealthCheckPath="/", HealthCheckIntervalSeconds=5, HealthCheckTimeoutSeconds=2,
        HealthyThresholdCount=2)["TargetGroups"][0]["TargetGroupArn"]
    port = free_port()
    elb.create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=port,
                        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}])
    elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": ip_a, "Port": 8080}, {"Id": ip_b, "Port": 8080}])

    def healthy():
        out = elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
        states = {d["Target"]["Id"]: d["TargetHealth"]["State"] for d in out}
        return states == {ip_a: "healthy", ip_b: "healthy"}

    wait_for(healthy, 60, interval=0.5, what="both targets healthy")
    seen = {}
    for _ in range(20):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/")
        r = conn.getresponse()
        body = r.read().decode().strip()
        conn.close()
        assert r.status == 200, (r.status, body)
        seen[body] = seen.get(body, 0) + 1
    assert set(seen) == {"on-a", "on-b"}, seen

    for t in (on_a, on_b):
        env.server.ecs.stop_task(cluster=env.cluster, task=t["taskArn"])


def test_a_partitioned_host_is_disconnected_and_replaced_and_healing_leaves_no_duplicate(env, docker_run_id):
    ecs = env.server.ecs
    family = f"part-{env.hosts.tag}"
    register_web(env, family, docker_run_id)
    ecs.create_service(cluster=env.cluster, serviceName="part", taskDefinition=family, desiredCount=1,
                       launchType="EC2", networkConfiguration=AWSVPC,
                       deploymentConfiguration={"maximumPercent": 100, "minimumHealthyPercent": 0})

    def service_tasks() -> list[dict]:
        arns = []
        for status in ("RUNNING", "STOPPED"):
            arns += ecs.list_tasks(cluster=env.cluster, serviceName="part", desiredStatus=status)["taskArns"]
        return describe(env, arns) if arns else []

    def live() -> list[dict]:
        found = [t for t in service_tasks() if t["lastStatus"] != "STOPPED"]
        assert len(found) <= 1, f"above maximumPercent: {[(t['taskArn'], t['lastStatus']) for t in found]}"
        return found

    [old] = wait_for(lambda: (lambda t: t if [x["lastStatus"] for x in t] == ["RUNNING"] else None)(live()),
                     90, interval=0.3, what="the service's task to run")
    by_arn = {h.agent.instance_arn: h for h in (env.a, env.b)}
    cut = by_arn[old["containerInstanceArn"]]
    other = env.b if cut is env.a else env.a
    old_container = web_container(cut, old["taskArn"])

    cut.link(False)
    try:
        wait_for(lambda: cut.agent.describe()["agentConnected"] is False, 45, interval=0.3,
                 what=f"{cut.netns}'s instance disconnected")
        assert other.agent.describe()["agentConnected"] is True

        def replaced():
            found = live()
            return found if len(found) == 1 and found[0]["containerInstanceArn"] == other.agent.instance_arn \
                and found[0]["lastStatus"] == "RUNNING" else None

        [new] = wait_for(replaced, 90, interval=0.3, what="the service task replaced on the other host")
        [stopped] = [t for t in service_tasks() if t["taskArn"] == old["taskArn"]]
        assert stopped["stopCode"] == "ServiceSchedulerInitiated"
        assert "disconnected for more than 5 seconds" in stopped["stoppedReason"]
        # The partitioned host cannot know: its container still runs.
        assert cut.docker("inspect", "-f", "{{.State.Running}}", old_container).strip() == "true"
    finally:
        cut.link(True)

    wait_for(lambda: cut.agent.describe()["agentConnected"] is True, 45, interval=0.3,
             what=f"{cut.netns}'s instance connected again")

    def old_gone():
        ids = cut.docker("ps", "-q", "--filter", f"label=gantry.task-arn={old['taskArn']}").split()
        return not ids

    wait_for(old_gone, 60, interval=0.3, what="the returning agent stopping the replaced task")
    assert [t["taskArn"] for t in live()] == [new["taskArn"]]
    [svc] = ecs.describe_services(cluster=env.cluster, services=["part"])["services"]
    assert (svc["runningCount"], svc["desiredCount"]) == (1, 1)
    # The replacement serves at its private IP, from the healed host too.
    ip = task_ip(new)
    wait_for(lambda: wget(cut, f"http://{ip}:8080/").strip() == "nobody", 30, interval=0.3,
             what="the healed host reaching the replacement task")
    ecs.update_service(cluster=env.cluster, service="part", desiredCount=0)
    print(json.dumps({"replaced": new["taskArn"], "on": other.netns}))


def test_an_agent_refuses_a_task_network_on_another_subnet(env, docker_run_id):
    """A host whose engine already has the task network on another subnet: its awsvpc tasks fail
    with a reason naming both subnets instead of getting addresses no peer routes to."""
    c = env.hosts.add()
    c.docker("network", "create", "--subnet", "172.30.0.0/24", "gantry-tasks")
    c.start_agent(env.server, env.cluster)
    family = f"other-{env.hosts.tag}"
    register_web(env, family, docker_run_id)
    out = env.server.ecs.start_task(cluster=env.cluster, taskDefinition=family,
                                    containerInstances=[c.agent.instance_arn], networkConfiguration=AWSVPC)
    arn = out["tasks"][0]["taskArn"]
    [t] = wait_for(lambda: (lambda ts: ts if ts[0]["lastStatus"] == "STOPPED" else None)(describe(env, [arn])),
                   60, interval=0.3, what="the task on the mismatched network to stop")
    reason = t.get("stoppedReason", "")
    assert "172.30.0.0/24" in reason and c.task_subnet in reason, reason
    assert not c.docker("ps", "-q", "--filter", f"label=gantry.task-arn={arn}").split()


@pytest.mark.parametrize("args, message", [
    (("--task-subnet", "10.232.1.5/24"), "host bits set"),
    (("--task-subnet", "10.232.1.0"), "is not an IPv4 network"),
    (("--host-address", "10.0.0.1"), "--task-subnet"),
])
def test_agent_task_subnet_options_are_checked(args, message, tmp_path):
    p = subprocess.run([str(gantry_bin()), "agent", "--server", "http://127.0.0.1:1", "--data-dir",
                        str(tmp_path), *args], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and message in p.stderr, (p.returncode, p.stderr)


def test_an_agent_with_a_task_subnet_needs_an_address_its_peers_can_reach(tmp_path, docker_run_id):
    """The server on loopback says nothing of the host's address: --host-address is asked for."""
    p = subprocess.run([str(gantry_bin()), "agent", "--server", "http://127.0.0.1:1", "--data-dir",
                        str(tmp_path), "--task-subnet", "10.232.1.0/24"], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode != 0 and "--host-address" in p.stderr, (p.returncode, p.stderr)


def test_a_partitioned_docker_free_host_is_replaced_and_healing_leaves_no_duplicate(env):
    """The same partition with Docker-free hosts (`gantry sim` in two more namespaces)."""
    ecs = env.server.ecs
    cluster = f"sim-{env.hosts.tag}"
    ecs.create_cluster(clusterName=cluster)

    def connected() -> dict[str, bool]:
        arns = ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]
        found = ecs.describe_container_instances(cluster=cluster, containerInstances=arns) if arns else {}
        return {i["containerInstanceArn"]: i["agentConnected"] for i in found.get("containerInstances", [])}

    first, second = env.hosts.add(docker=False), env.hosts.add(docker=False)
    first.start_sim(env.server, cluster, seed=21)
    [on_first] = wait_for(lambda: [a for a, up in connected().items() if up], 30, interval=0.2,
                          what="the first simulated instance")
    second.start_sim(env.server, cluster, seed=22)
    wait_for(lambda: len(connected()) == 2 and all(connected().values()), 30, interval=0.2,
             what="both simulated instances")
    host_of = {on_first: first, next(a for a in connected() if a != on_first): second}
    ecs.register_task_definition(family=cluster, containerDefinitions=[
        {"name": "app", "image": "example/app:1", "memory": 16}])
    ecs.create_service(cluster=cluster, serviceName="svc", taskDefinition=cluster, desiredCount=1,
                       deploymentConfiguration={"maximumPercent": 100, "minimumHealthyPercent": 0})

    def live() -> list[dict]:
        arns = ecs.list_tasks(cluster=cluster, desiredStatus="RUNNING")["taskArns"]
        found = [t for t in (ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"] if arns else [])
                 if t["lastStatus"] != "STOPPED"]
        assert len(found) <= 1, f"above maximumPercent: {found}"
        return found

    [old] = wait_for(lambda: (lambda t: t if [x["lastStatus"] for x in t] == ["RUNNING"] else None)(live()),
                     30, interval=0.2, what="the service's task to run")
    cut = host_of[old["containerInstanceArn"]]
    stays = next(a for a in host_of if a != old["containerInstanceArn"])
    cut.link(False)
    try:
        wait_for(lambda: connected()[old["containerInstanceArn"]] is False, 45, interval=0.3,
                 what="the partitioned instance disconnected")
        [new] = wait_for(lambda: (lambda t: t if len(t) == 1 and t[0]["containerInstanceArn"] == stays
                                  and t[0]["lastStatus"] == "RUNNING" else None)(live()),
                         60, interval=0.3, what="the task replaced on the other instance")
    finally:
        cut.link(True)
    wait_for(lambda: connected()[old["containerInstanceArn"]] is True, 45, interval=0.3,
             what="the partitioned instance connected again")
    [stopped] = ecs.describe_tasks(cluster=cluster, tasks=[old["taskArn"]])["tasks"]
    assert stopped["lastStatus"] == "STOPPED" and stopped["stopCode"] == "ServiceSchedulerInitiated"
    assert [t["taskArn"] for t in live()] == [new["taskArn"]]
    [svc] = ecs.describe_services(cluster=cluster, services=["svc"])["services"]
    assert (svc["runningCount"], svc["desiredCount"]) == (1, 1)
