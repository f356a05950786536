"""Agents across several servers on one etcd (Debian's etcd-server, a throwaway member): an agent
long-polling server B runs a task created through server A at once (the poll is woken by the
store's watch, not by its timeout), moves to A when B is killed with SIGKILL, and a killed
agent's instance reads `agentConnected: false` on every server while its service task is
replaced on another instance after `--lost-instance-timeout`."""

from __future__ import annotations

import json
import os
import subprocess
import time

from harness import GantryServer, gantry_bin, wait_for
from test_etcd import Etcd, etcd  # noqa: F401  (the fixture)


def server(tmp_path, etcd_: Etcd, name: str, root: str, *extra: str) -> GantryServer:
    return GantryServer(tmp_path / f"{name}-data", tmp_path / f"{name}.log", enable_reset=False,
                        extra_args=("--store", etcd_.url(root), *extra)).start()


def sim(tmp_path, name: str, servers: list[GantryServer], cluster: str, seed: int) -> subprocess.Popen:
    """One simulated instance whose agent polls the first of `servers` (then the next...)."""
    log = open(tmp_path / f"{name}.log", "wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANTRY_")}
    endpoints = ",".join(s.endpoint for s in servers)
    return subprocess.Popen([str(gantry_bin()), "sim", "--server", endpoints, "--cluster", cluster,
                             "--instances", "1", "--zones", "1", "--seed", str(seed)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)


def connected(s: GantryServer, cluster: str) -> dict[str, bool]:
    """Each container instance's agentConnected, as server `s` answers it."""
    arns = s.ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]
    if not arns:
        return {}
    found = s.ecs.describe_container_instances(cluster=cluster, containerInstances=arns)["containerInstances"]
    return {i["containerInstanceArn"]: i["agentConnected"] for i in found}


def status(s: GantryServer) -> dict:
    out = subprocess.run([str(gantry_bin()), "status", "--server", s.endpoint, "--json"],
                         capture_output=True, text=True, timeout=30, env={
                             k: v for k, v in os.environ.items() if not k.startswith("GANTRY_")})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_an_agent_polling_b_runs_what_a_placed_at_once_and_moves_to_a_when_b_dies(tmp_path, etcd):
    a = server(tmp_path, etcd, "a", "wake")
    b = server(tmp_path, etcd, "b", "wake")
    agent = sim(tmp_path, "sim", [b, a], "wake", seed=5)
    try:
        wait_for(lambda: list(connected(a, "wake").values()) == [True], 30, interval=0.1,
                 what="the instance, polling B, connected as A sees it")
        assert list(connected(b, "wake").values()) == [True]
        [instance] = connected(a, "wake")
        # `gantry status` names both servers, one leader, and the agent heard through B.
        st = status(a)
        urls = {s["url"]: s for s in st["servers"]}
        assert set(urls) == {a.endpoint, b.endpoint}
        assert all(s["up"] for s in urls.values())
        assert sum(s["leader"] for s in urls.values()) == 1
        [heard] = [x for x in st["agents"] if x["node"] == instance]
        assert heard["connected"] and urls[b.endpoint]["id"] == heard["server"]
        assert st["store"].startswith("etcd://")

        # DiscoverPollEndpoint hands out the servers, the same one for one instance on both.
        endpoint = a.ecs.discover_poll_endpoint(containerInstance=instance, cluster="wake")["endpoint"]
        assert endpoint in (f"{a.endpoint}/_gantry/agent/v1/", f"{b.endpoint}/_gantry/agent/v1/")
        assert b.ecs.discover_poll_endpoint(containerInstance=instance, cluster="wake")["endpoint"] == endpoint

        a.ecs.register_task_definition(family="wake", containerDefinitions=[
            {"name": "app", "image": "example/app:1", "memory": 16}])

        def run_through(s: GantryServer) -> float:
            started = time.monotonic()
            arn = s.ecs.run_task(cluster="wake", taskDefinition="wake")["tasks"][0]["taskArn"]

            def running():
                [t] = s.ecs.describe_tasks(cluster="wake", tasks=[arn])["tasks"]
                return t["lastStatus"] == "RUNNING"

            wait_for(running, 20, interval=0.02, what=f"task {arn} to run")
            return time.monotonic() - started

        # Without a wake-up the agent would learn of each task at its next poll, up to the
        # server's 5 s poll timeout later; five in a row all within 1.5 s is no coincidence.
        took = [run_through(a) for _ in range(5)]
        print("RunTask through A to RUNNING via B:", " ".join(f"{t:.3f}s" for t in took))
        assert max(took) < 1.5, took

        b.kill()
        # The agent moves to A and goes on running what A places.
        took = run_through(a)
        print(f"after B's SIGKILL, RunTask through A to RUNNING: {took:.2f}s")
        assert connected(a, "wake") == {instance: True}

        def heard_by_a():
            st = status(a)
            return [x["server"] for x in st["agents"] if x["node"] == instance] == [st["server"]]

        # A records the agent as its own within a second (its next heartbeat flush).
        wait_for(heard_by_a, 5, interval=0.1, what="A to record the agent's heartbeat")
    finally:
        agent.kill()
        agent.wait()
        a.kill()
        b.kill()


def test_a_killed_agent_is_disconnected_on_every_server_and_its_service_task_replaced(tmp_path, etcd):
    a = server(tmp_path, etcd, "a", "lost", "--lost-instance-timeout", "5s")
    b = server(tmp_path, etcd, "b", "lost", "--lost-instance-timeout", "5s")
    first = sim(tmp_path, "sim1", [b], "lost", seed=11)
    second = None
    try:
        wait_for(lambda: list(connected(a, "lost").values()) == [True], 30, interval=0.1,
                 what="the first instance")
        [on_b] = connected(a, "lost")
        second = sim(tmp_path, "sim2", [a], "lost", seed=12)
        wait_for(lambda: len(connected(b, "lost")) == 2 and all(connected(b, "lost").values()), 30,
                 interval=0.1, what="both instances connected, as B sees them")
        [on_a] = [i for i in connected(a, "lost") if i != on_b]
        a.ecs.register_task_definition(family="lost", containerDefinitions=[
            {"name": "app", "image": "example/app:1", "memory": 16}])
        a.ecs.create_service(cluster="lost", serviceName="svc", taskDefinition="lost", desiredCount=1,
                             deploymentConfiguration={"maximumPercent": 100, "minimumHealthyPercent": 0})

        def tasks(s: GantryServer) -> list[dict]:
            arns = (s.ecs.list_tasks(cluster="lost", desiredStatus="RUNNING")["taskArns"]
                    + s.ecs.list_tasks(cluster="lost", desiredStatus="STOPPED")["taskArns"])
            return s.ecs.describe_tasks(cluster="lost", tasks=arns)["tasks"] if arns else []

        def live(s: GantryServer) -> list[dict]:
            found = [t for t in tasks(s) if t["lastStatus"] != "STOPPED"]
            assert len(found) <= 1, f"above maximumPercent: {found}"
            return found

        wait_for(lambda: [t["lastStatus"] for t in live(a)] == ["RUNNING"], 30, interval=0.1,
                 what="the service's task to run")
        [old] = live(a)
        if old["containerInstanceArn"] != on_b:
            # It was placed on the second instance: that agent is the one to kill.
            on_b, on_a = on_a, on_b
            first, second = second, first
        first.kill()
        first.wait()
        killed = time.monotonic()
        wait_for(lambda: connected(a, "lost")[on_b] is False and connected(b, "lost")[on_b] is False,
                 20, interval=0.1, what="the killed agent's instance disconnected on both servers")
        print(f"disconnected everywhere {time.monotonic() - killed:.2f}s after the kill")
        assert connected(a, "lost")[on_a] and connected(b, "lost")[on_a]
        # Its task keeps its state until the timeout, then is replaced on the other instance.
        assert [t["taskArn"] for t in live(b)] == [old["taskArn"]]

        def replaced():
            found = live(b)
            return len(found) == 1 and found[0]["containerInstanceArn"] == on_a \
                and found[0]["lastStatus"] == "RUNNING"

        wait_for(replaced, 60, interval=0.1, what="the service task replaced on the other instance")
        print(f"replaced {time.monotonic() - killed:.2f}s after the kill")
        [stopped] = [t for t in tasks(a) if t["taskArn"] == old["taskArn"]]
        assert stopped["lastStatus"] == "STOPPED"
        assert stopped["stopCode"] == "ServiceSchedulerInitiated"
        assert "disconnected for more than 5 seconds" in stopped["stoppedReason"]
        [svc] = a.ecs.describe_services(cluster="lost", services=["svc"])["services"]
        assert (svc["runningCount"], svc["desiredCount"]) == (1, 1)
    finally:
        for p in (first, second):
            if p:
                p.kill()
                p.wait()
        a.kill()
        b.kill()
