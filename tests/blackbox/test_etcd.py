"""`gantry server --store etcd://...`: the whole server on a real etcd (Debian's etcd-server, a
throwaway member on free loopback ports), killed with SIGKILL and started again: every
acknowledged write is there, and the simulated fleet's tasks keep their state."""

from __future__ import annotations

import http.client
import os
import shutil
import time
import subprocess
from collections import Counter

import pytest

from harness import GantryServer, free_port, gantry_bin, wait_for
from test_durability import check_acknowledged, run_round


class Etcd:
    """One etcd member of the test's own, its data in a temporary directory."""

    def __init__(self, tmp_path):
        binary = os.environ.get("GANTRY_ETCD_BIN") or shutil.which("etcd")
        if not binary:
            raise RuntimeError("etcd is not installed (Debian: apt-get install etcd-server; "
                               "scripts/prereqs.sh installs it)")
        self.client_port, peer_port = free_port(), free_port()
        client, peer = f"http://127.0.0.1:{self.client_port}", f"http://127.0.0.1:{peer_port}"
        self.log = open(tmp_path / "etcd.log", "wb")
        self.proc = subprocess.Popen(
            [binary, "--name", "bb", "--data-dir", str(tmp_path / "etcd-data"),
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"bb={peer}", "--max-txn-ops", "10000",
             "--logger", "zap", "--log-level", "warn"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for(self.healthy, 30, interval=0.05, what="etcd's /health")

    def healthy(self) -> bool:
        assert self.proc.poll() is None, f"etcd exited with {self.proc.returncode}"
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.client_port, timeout=1)
            conn.request("GET", "/health")
            return b'"health":"true"' in conn.getresponse().read()
        except OSError:
            return False

    def url(self, root: str) -> str:
        return f"etcd://127.0.0.1:{self.client_port}/{root}"

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.log.close()


@pytest.fixture
def etcd(tmp_path):
    e = Etcd(tmp_path)
    yield e
    e.kill()


def on_etcd(tmp_path, etcd: Etcd, name: str) -> GantryServer:
    return GantryServer(tmp_path / f"{name}-data", tmp_path / f"{name}.log", enable_reset=False,
                        extra_args=("--store", etcd.url(name)))


def test_acknowledged_writes_on_etcd_survive_sigkill(tmp_path, etcd):
    server = on_etcd(tmp_path, etcd, "durable")
    try:
        all_writers = []
        for round_no, kill_after in enumerate((120, 400)):
            server.start()
            if all_writers:
                check_acknowledged(server, all_writers)
            all_writers.extend(run_round(server, f"etcd{round_no}", kill_after))
        server.start()
        check_acknowledged(server, all_writers)
        # The state is in etcd, not in the data directory.
        assert not (server.data_dir / "gantry.db").exists()
    finally:
        server.kill()


def test_tasks_on_a_simulated_fleet_survive_a_sigkilled_server(tmp_path, etcd):
    server = on_etcd(tmp_path, etcd, "fleet").start()
    port = server.port
    log = open(tmp_path / "sim.log", "wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANTRY_")}
    sim = subprocess.Popen([str(gantry_bin()), "sim", "--server", server.endpoint, "--cluster", "onetcd",
                            "--instances", "6", "--zones", "3", "--seed", "3"],
                           stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        ecs = server.ecs

        def connected(n):
            arns = ecs.list_container_instances(cluster="onetcd")["containerInstanceArns"]
            if len(arns) < n:
                return None
            found = ecs.describe_container_instances(cluster="onetcd", containerInstances=arns)["containerInstances"]
            return found if all(i["agentConnected"] for i in found) else None

        wait_for(lambda: connected(6), 30, interval=0.1, what="6 connected simulated instances")
        td = ecs.register_task_definition(family="onetcd", containerDefinitions=[
            {"name": "app", "image": "example/app:1", "memory": 128}])["taskDefinition"]
        assert td["revision"] == 1
        out = ecs.run_task(cluster="onetcd", taskDefinition="onetcd", count=6,
                           placementStrategy=[{"type": "spread", "field": "attribute:ecs.availability-zone"}])
        assert out["failures"] == []
        assert Counter(t["availabilityZone"] for t in out["tasks"]) == {"zone-a": 2, "zone-b": 2, "zone-c": 2}
        arns = [t["taskArn"] for t in out["tasks"]]

        def states():
            found = {t["taskArn"]: t["lastStatus"] for t in server.ecs.describe_tasks(cluster="onetcd", tasks=arns)["tasks"]}
            return [found.get(a) for a in arns]

        wait_for(lambda: states() == ["RUNNING"] * 6, 30, interval=0.1, what="the tasks to run")
        [cluster] = ecs.describe_clusters(clusters=["onetcd"])["clusters"]
        assert (cluster["runningTasksCount"], cluster["registeredContainerInstancesCount"]) == (6, 6)

        server.kill()
        server.start(port=port)
        ecs = server.ecs
        # Everything acknowledged before the kill is there; the agents reconnect to the new
        # process on the same address.
        assert states() == ["RUNNING"] * 6
        [cluster] = ecs.describe_clusters(clusters=["onetcd"])["clusters"]
        assert (cluster["runningTasksCount"], cluster["registeredContainerInstancesCount"]) == (6, 6)
        assert ecs.describe_task_definition(taskDefinition="onetcd")["taskDefinition"]["revision"] == 1
        wait_for(lambda: connected(6), 30, interval=0.1, what="the instances to reconnect")
        # And the server keeps working: a new revision, a task stopped through the agent.
        assert ecs.register_task_definition(family="onetcd", containerDefinitions=[
            {"name": "app", "image": "example/app:2", "memory": 128}])["taskDefinition"]["revision"] == 2
        ecs.stop_task(cluster="onetcd", task=arns[0])
        wait_for(lambda: states()[0] == "STOPPED", 30, interval=0.1, what="the stopped task")
        [cluster] = ecs.describe_clusters(clusters=["onetcd"])["clusters"]
        assert cluster["runningTasksCount"] == 5
    finally:
        sim.kill()
        sim.wait()
        log.close()
        server.kill()


def test_a_bad_store_url_is_refused_naming_it(tmp_path):
    out = subprocess.run([str(gantry_bin()), "server", "--data-dir", str(tmp_path / "d"),
                          "--store", "etcd://nohost"], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "'nohost'" in out.stderr, out.stderr


def leads(server: GantryServer) -> bool | None:
    """What `gantry_leader` on the server's /metrics says (None: the server does not answer)."""
    try:
        text = server.http("GET", "/metrics", timeout=2).body.decode()
    except OSError:
        return None
    [line] = [l for l in text.splitlines() if l.startswith("gantry_leader ")]
    return line.split()[1] == "1"


def test_two_servers_elect_one_leader_and_the_other_takes_over_from_a_sigkilled_one(tmp_path, etcd):
    a = GantryServer(tmp_path / "a-data", tmp_path / "a.log", enable_reset=False,
                     extra_args=("--store", etcd.url("pair"))).start()
    b = GantryServer(tmp_path / "b-data", tmp_path / "b.log", enable_reset=False,
                     extra_args=("--store", etcd.url("pair"))).start()
    log = open(tmp_path / "sim.log", "wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANTRY_")}
    sim = None
    try:
        wait_for(lambda: [leads(a), leads(b)] in ([True, False], [False, True]), 15, interval=0.05,
                 what="exactly one leader")
        leader, other = (a, b) if leads(a) else (b, a)
        # Both answer the API from the one store: a write through one is read through the other.
        leader.ecs.create_cluster(clusterName="pair")
        assert other.ecs.describe_clusters(clusters=["pair"])["clusters"][0]["status"] == "ACTIVE"
        sim = subprocess.Popen([str(gantry_bin()), "sim", "--server", other.endpoint, "--cluster", "pair",
                                "--instances", "3", "--zones", "3", "--seed", "4"],
                               stdout=log, stderr=subprocess.STDOUT, env=env)
        other.ecs.register_task_definition(family="pair", containerDefinitions=[
            {"name": "app", "image": "example/app:1", "memory": 64}])
        wait_for(lambda: len(other.ecs.list_container_instances(cluster="pair")["containerInstanceArns"]) == 3,
                 30, interval=0.1, what="3 simulated instances")

        leader.kill()  # SIGKILL: no resignation, the lease has to expire
        killed = time.monotonic()
        wait_for(lambda: leads(other), 10, interval=0.05, what="the other server to lead")
        took = time.monotonic() - killed
        print(f"failover took {took:.2f} s")
        assert took < 5, f"the other server led only after {took:.2f} s"
        # The new leader's controllers run: its service scheduler brings a service up.
        other.ecs.create_service(cluster="pair", serviceName="web", taskDefinition="pair", desiredCount=3)

        def running():
            [svc] = other.ecs.describe_services(cluster="pair", services=["web"])["services"]
            return svc["runningCount"] == 3

        wait_for(running, 30, interval=0.1, what="the service's 3 tasks to run")
    finally:
        if sim:
            sim.kill()
            sim.wait()
        log.close()
        a.kill()
        b.kill()
