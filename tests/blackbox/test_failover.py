"""Failover under load (issue 18): a 3-member etcd cluster (Debian's etcd, free loopback ports),
three Gantry servers sharing it, listening on a bridge's address, and three agent hosts: network
namespaces on that bridge (tests/blackbox/hosts.py), each running `gantry sim` with one instance
(a real agent over HTTP on the simulated runtime, no Docker) given all three servers' URLs.
Needs root (namespaces); fails, never skips, without it.

Each trial: a write load of RunTask, CreateService and RegisterTaskDefinition, one writer per
server, recording what each acknowledged; a rolling deployment of a service started; the leader
killed with SIGKILL. Then: a new leader is scheduling (its scheduler's first pass) within 5 s,
the deployment completes, every acknowledged write is in the final state, and the service never
had more tasks than maximumPercent allows, reconstructed from every one of its tasks' createdAt
and stoppedAt (a task counts from its creation until it is STOPPED, as ECS counts PENDING,
RUNNING and STOPPING tasks). The killed server is started again on its port before the next
trial. Trial 1 also cuts one agent host's link (down from just after the kill until a new
leader schedules and a task was started on its instance, or refused as its agent is gone): once
the link is back its agent reconnects, its instance is connected again, a task started on it
runs, and nothing acknowledged is lost.
`GANTRY_FAILOVER_TRIALS` sets the number of trials (default 10).

And the etcd side: one etcd member killed and started again under the same load: writes go on
through the other two, and every acknowledged write is there after.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from harness import GantryServer, free_port, wait_for
from hosts import Hosts, missing_prerequisites

CLUSTER = "failover"
SERVICE = "web"
DESIRED = 6
MAX_PERCENT = 150
MIN_PERCENT = 50


class EtcdCluster:
    """A 3-member etcd cluster of the test's own, each member's data in a temporary directory."""

    def __init__(self, tmp_path: Path, members: int = 3):
        self.binary = os.environ.get("GANTRY_ETCD_BIN") or shutil.which("etcd")
        if not self.binary:
            raise RuntimeError("etcd is not installed (Debian: apt-get install etcd-server; "
                               "scripts/prereqs.sh installs it)")
        self.dir = tmp_path
        # Distinct ports: a port probed free and closed may be handed out again at once.
        distinct: list[int] = []
        while len(distinct) < 2 * members:
            if (p := free_port()) not in distinct:
                distinct.append(p)
        self.ports = list(zip(distinct[0::2], distinct[1::2]))
        self.initial = ",".join(f"m{i}=http://127.0.0.1:{peer}" for i, (_, peer) in enumerate(self.ports))
        self.token = f"gantry-failover-{os.getpid()}-{id(self)}"
        self.procs: list[subprocess.Popen | None] = [None] * members
        try:
            for i in range(members):
                self.spawn(i)
            for i in range(members):
                wait_for(lambda i=i: self.healthy(i), 30, interval=0.05, what=f"etcd member {i}'s /health")
        except BaseException:
            self.close()
            raise

    def spawn(self, i: int):
        client_port, peer_port = self.ports[i]
        client, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
        log = open(self.dir / f"etcd-m{i}.log", "ab")
        self.procs[i] = subprocess.Popen(
            [self.binary, "--name", f"m{i}", "--data-dir", str(self.dir / f"etcd-m{i}"),
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", self.initial, "--initial-cluster-state", "new",
             "--initial-cluster-token", self.token, "--max-txn-ops", "10000",
             "--logger", "zap", "--log-level", "warn"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

    def healthy(self, i: int) -> bool:
        assert self.procs[i].poll() is None, f"etcd member {i} exited with {self.procs[i].returncode}"
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.ports[i][0], timeout=1)
            conn.request("GET", "/health")
            return b'"health":"true"' in conn.getresponse().read()
        except OSError:
            return False

    def url(self, root: str) -> str:
        return "etcd://" + ",".join(f"127.0.0.1:{c}" for c, _ in self.ports) + f"/{root}"

    def kill(self, i: int):
        p = self.procs[i]
        if p and p.poll() is None:
            p.kill()
            p.wait(timeout=30)

    def restart(self, i: int):
        self.kill(i)
        self.spawn(i)
        wait_for(lambda: self.healthy(i), 30, interval=0.05, what=f"etcd member {i} back")

    def close(self):
        for i in range(len(self.procs)):
            self.kill(i)


def metrics(server: GantryServer) -> str | None:
    try:
        r = server.http("GET", "/metrics", timeout=2)
    except OSError:
        return None
    return r.body.decode() if r.status == 200 else None


def leads(text: str | None) -> bool:
    return bool(text) and any(l == "gantry_leader 1" for l in text.splitlines())


def scheduler_passes(text: str | None) -> float:
    """Passes of this server's service scheduler (every outcome)."""
    total = 0.0
    for line in (text or "").splitlines():
        if line.startswith('gantry_controller_reconciles_total{') and 'controller="scheduler"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def client(server: GantryServer):
    # A client of its own per thread: one attempt, so an error is an unacknowledged write.
    return boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test",
                                 region_name="us-east-1").client(
        "ecs", endpoint_url=server.endpoint,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=10, connect_timeout=2))


@dataclass
class Acked:
    """What one writer's requests acknowledged."""
    tasks: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    revisions: dict[tuple[str, int], str] = field(default_factory=dict)  # (family, rev) -> image
    errors: int = 0
    messages: list[str] = field(default_factory=list)


class Writer(threading.Thread):
    """RunTask, CreateService and RegisterTaskDefinition in turn against one server."""

    def __init__(self, server: GantryServer, name: str):
        super().__init__(daemon=True)
        self.ecs = client(server)
        self.name_ = name
        self.acked = Acked()
        self.halt = threading.Event()

    def run(self):
        n = 0
        while not self.halt.is_set():
            n += 1
            try:
                if n % 3 == 0:
                    image = f"load/{self.name_}:{n}"
                    td = self.ecs.register_task_definition(family=f"load-{self.name_}", containerDefinitions=[
                        {"name": "app", "image": image, "memory": 8}])["taskDefinition"]
                    self.acked.revisions[(td["family"], td["revision"])] = image
                elif n % 3 == 1:
                    out = self.ecs.run_task(cluster=CLUSTER, taskDefinition="failover-job", count=1,
                                            startedBy=f"load-{self.name_}")
                    self.acked.tasks.extend(t["taskArn"] for t in out["tasks"])
                else:
                    name = f"svc-{self.name_}-{n}"
                    self.ecs.create_service(cluster=CLUSTER, serviceName=name, taskDefinition="failover-job",
                                            desiredCount=1)
                    self.acked.services.append(name)
            except Exception as e:  # an error or a timeout: not acknowledged, nothing is claimed
                self.acked.errors += 1
                if len(self.acked.messages) < 20:
                    self.acked.messages.append(f"{time.monotonic():.2f} {e}")
                self.halt.wait(0.05)  # pace retries against a server that is down


def check_acknowledged(ecs, acked: list[Acked]):
    tasks = [t for a in acked for t in a.tasks]
    for i in range(0, len(tasks), 100):
        out = ecs.describe_tasks(cluster=CLUSTER, tasks=tasks[i:i + 100])
        assert out["failures"] == [], f"acknowledged tasks lost: {out['failures'][:5]}"
        assert len(out["tasks"]) == len(tasks[i:i + 100])
    services = [s for a in acked for s in a.services]
    for i in range(0, len(services), 10):
        out = ecs.describe_services(cluster=CLUSTER, services=services[i:i + 10])
        assert out["failures"] == [], f"acknowledged services lost: {out['failures'][:5]}"
        assert {s["serviceName"] for s in out["services"] if s["status"] == "ACTIVE"} == set(services[i:i + 10])
    for a in acked:
        for (family, rev), image in a.revisions.items():
            td = ecs.describe_task_definition(taskDefinition=f"{family}:{rev}")["taskDefinition"]
            assert td["containerDefinitions"][0]["image"] == image, (family, rev)
    return len(tasks) + len(services) + sum(len(a.revisions) for a in acked)


def service_tasks(ecs, service: str) -> list[dict]:
    arns = []
    for status in ("RUNNING", "STOPPED"):
        for page in ecs.get_paginator("list_tasks").paginate(cluster=CLUSTER, serviceName=service,
                                                            desiredStatus=status):
            arns.extend(page["taskArns"])
    found = []
    for i in range(0, len(arns), 100):
        found.extend(ecs.describe_tasks(cluster=CLUSTER, tasks=arns[i:i + 100])["tasks"])
    return found


def most_at_once(tasks: list[dict]) -> tuple[int, float]:
    """The most tasks that were not STOPPED at one instant, and when: each task counts from its
    createdAt until its stoppedAt (a stop at the same instant as a start counts first)."""
    events = []
    for t in tasks:
        events.append((t["createdAt"].timestamp(), 1))
        if t.get("stoppedAt"):
            events.append((t["stoppedAt"].timestamp(), -1))
    events.sort(key=lambda e: (e[0], e[1]))
    live, most, at = 0, 0, 0.0
    for when, d in events:
        live += d
        if live > most:
            most, at = live, when
    return most, at


def deployed(ecs, task_definition: str) -> bool:
    [svc] = ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"]
    deps = svc["deployments"]
    return (len(deps) == 1 and deps[0]["taskDefinition"].endswith(task_definition)
            and deps[0].get("rolloutState") == "COMPLETED" and deps[0]["runningCount"] == DESIRED
            and svc["runningCount"] == DESIRED and svc["pendingCount"] == 0)


class Fleet:
    """The etcd cluster, three servers on it listening on a bridge's address, and three agent
    hosts (tests/blackbox/hosts.py: network namespaces on that bridge, Docker-free), each running
    `gantry sim` with one instance of the fleet (zone-a, zone-b, zone-c) and all three servers'
    URLs, so its agent moves to another server when its own dies."""

    def __init__(self, tmp_path: Path, root: str = "failover"):
        why = missing_prerequisites(docker=False)
        if why:
            pytest.fail(f"the failover trials' agent hosts cannot be made: {why}", pytrace=False)
        self.tmp = tmp_path
        self.hosts: Hosts | None = None
        self.servers: list[GantryServer] = []
        self.etcd = EtcdCluster(tmp_path)
        try:
            self.hosts = Hosts(tmp_path / "hosts")
            self.servers = [GantryServer(tmp_path / f"s{i}-data", tmp_path / f"s{i}.log", enable_reset=False,
                                         host=self.hosts.gateway, extra_args=("--store", self.etcd.url(root)))
                            for i in range(3)]
            self.setup()
        except BaseException:
            self.close()
            raise

    def setup(self):
        for s in self.servers:
            s.start()
        ecs = self.servers[0].ecs
        ecs.create_cluster(clusterName=CLUSTER)
        for i in range(3):
            self.hosts.add(docker=False).start_sim(self.servers, CLUSTER, seed=18, zones=3, first=i)

        def registered():
            arns = ecs.list_container_instances(cluster=CLUSTER)["containerInstanceArns"]
            if len(arns) < 3:
                return None
            found = ecs.describe_container_instances(cluster=CLUSTER, containerInstances=arns)
            return [(zone(i), i["containerInstanceArn"], i["ec2InstanceId"]) for i in found["containerInstances"]]

        found = wait_for(registered, 60, interval=0.1, what="3 agent hosts")
        assert len(found) == 3, f"more instances than hosts: {found}"
        by_zone = {z: arn for z, arn, _ in found}
        # Host n runs the fleet's instance n-1, in zone-a, zone-b, zone-c.
        self.instances = {h.n: by_zone[f"zone-{'abc'[h.n - 1]}"] for h in self.hosts.hosts}
        ecs.register_task_definition(family="failover-job", containerDefinitions=[
            {"name": "app", "image": "example/job:1", "memory": 8, "cpu": 1}])
        ecs.register_task_definition(family="failover-web", containerDefinitions=[
            {"name": "app", "image": "example/web:0", "memory": 8, "cpu": 1}])
        ecs.create_service(cluster=CLUSTER, serviceName=SERVICE, taskDefinition="failover-web:1",
                           desiredCount=DESIRED, deploymentConfiguration={
                               "maximumPercent": MAX_PERCENT, "minimumHealthyPercent": MIN_PERCENT})
        wait_for(lambda: deployed(ecs, "failover-web:1"), 60, interval=0.1, what="the service's first deployment")

    def leader(self, timeout: float = 15) -> int:
        def one():
            flags = [leads(metrics(s)) for s in self.servers]
            return flags.index(True) if flags.count(True) == 1 else None
        return wait_for(lambda: (i := one()) is not None and i + 1, timeout, interval=0.05,
                        what="exactly one leader") - 1

    def close(self):
        errors = []
        for s in self.servers:
            s.kill()
        if self.hosts:
            try:
                self.hosts.close()   # the sims, the namespaces, the bridge
            except Exception as e:  # noqa: BLE001  (etcd is stopped regardless)
                errors.append(str(e))
        self.etcd.close()
        if errors:
            raise RuntimeError("; ".join(errors))


def zone(instance: dict) -> str:
    return next(a["value"] for a in instance["attributes"] if a["name"] == "ecs.availability-zone")


@dataclass
class Trial:
    failover: float
    acked: int
    errors: int
    most: int
    deployed_after: float
    # The trials with an agent host cut off: how long after its link came back the task
    # started on it while it was cut off was RUNNING.
    reconnected: float | None = None


def cuts_a_host(n: int) -> bool:
    """Trial 1 also cuts one agent host's link (a network fault on the agent side; one trial,
    as it adds about 8 s to the suite's run)."""
    return n == 1


def trial(fleet: Fleet, n: int) -> Trial:
    leader = fleet.leader()
    survivors = [s for i, s in enumerate(fleet.servers) if i != leader]
    writers = [Writer(s, f"t{n}w{i}") for i, s in enumerate(fleet.servers)]
    for w in writers:
        w.start()
    ecs = survivors[0].client(max_attempts=3)
    rev = ecs.register_task_definition(family="failover-web", containerDefinitions=[
        {"name": "app", "image": f"example/web:{n + 1}", "memory": 8, "cpu": 1}])["taskDefinition"]["revision"]
    before = [scheduler_passes(metrics(s)) for s in survivors]
    ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=f"failover-web:{rev}")
    # The deployment has started (the leader's scheduler launches its first tasks) when the
    # leader dies.
    fleet.servers[leader].kill()
    killed = time.monotonic()
    # Some trials also cut one agent host off (its link down, its agent's connections hanging)
    # from just after the kill until a new leader schedules and a task was started on its
    # instance. (After the kill: an agent whose server died during the cut would hear of it only
    # from its client's 30 s timeout, the connection being half-open.)
    cut = fleet.hosts.hosts[n % 3] if cuts_a_host(n) else None
    if cut:
        cut.link(False)

    def scheduling():
        for s, b in zip(survivors, before):
            text = metrics(s)
            if leads(text) and scheduler_passes(text) > b:
                return True
        return False

    wait_for(scheduling, 15, interval=0.02, what="a new leader's scheduler")
    failover = time.monotonic() - killed
    # The load goes on a little under the new leader; the killed server comes back on its port.
    fleet.servers[leader].start(port=fleet.servers[leader].port)
    reconnected, stranded = None, Acked()
    if cut:
        instance = fleet.instances[cut.n]
        # Started while its agent cannot hear of it: acknowledged if the server still counts
        # the agent connected (its heartbeat is recent), else refused (reason AGENT) once the
        # agent's server gave up on its poll, as ECS does. Either way, once the link is back the
        # agent reconnects (to its server, or another if that was the one killed): the instance
        # is connected again, and a task started on it runs.
        out = ecs.start_task(cluster=CLUSTER, taskDefinition="failover-job", startedBy=f"cut-{n}",
                             containerInstances=[instance])
        assert all((f.get("arn"), f.get("reason")) == (instance, "AGENT") for f in out["failures"]), out["failures"]
        assert len(out["tasks"]) + len(out["failures"]) == 1, out
        stranded.tasks = [t["taskArn"] for t in out["tasks"]]
        cut.link(True)
        healed = time.monotonic()

        def connected():
            [i] = ecs.describe_container_instances(cluster=CLUSTER, containerInstances=[instance])["containerInstances"]
            return i["agentConnected"]

        wait_for(connected, 60, interval=0.05, what=f"trial {n}: the cut-off host h{cut.n}'s agent to reconnect")
        if not stranded.tasks:
            out = ecs.start_task(cluster=CLUSTER, taskDefinition="failover-job", startedBy=f"cut-{n}",
                                 containerInstances=[instance])
            assert out["failures"] == [], out["failures"]
            stranded.tasks = [t["taskArn"] for t in out["tasks"]]
        wait_for(lambda: ecs.describe_tasks(cluster=CLUSTER, tasks=stranded.tasks)["tasks"][0]["lastStatus"]
                 == "RUNNING", 60, interval=0.05, what=f"trial {n}: the task started on the cut-off host h{cut.n}")
        reconnected = time.monotonic() - healed
    for w in writers:
        w.halt.set()
    for w in writers:
        w.join(timeout=30)
    wait_for(lambda: deployed(ecs, f"failover-web:{rev}"), 60, interval=0.1,
             what=f"trial {n}'s deployment to complete")
    deployed_after = time.monotonic() - killed
    acked = check_acknowledged(ecs, [w.acked for w in writers] + [stranded])
    most, at = most_at_once(service_tasks(ecs, SERVICE))
    limit = DESIRED * MAX_PERCENT // 100
    assert most <= limit, f"trial {n}: {most} tasks of {SERVICE} at {at} (maximumPercent allows {limit})"
    return Trial(failover, acked, sum(w.acked.errors for w in writers), most, deployed_after, reconnected)


def run_trials(tmp_path: Path, trials: int, report=print) -> list[Trial]:
    fleet = Fleet(tmp_path)
    results = []
    try:
        for n in range(trials):
            t = trial(fleet, n)
            cut = ("" if t.reconnected is None else
                   f"; a host cut off, its task RUNNING {t.reconnected:.2f} s after the link came back")
            report(f"trial {n}: new leader scheduling {t.failover:.2f} s after the kill; deployment "
                   f"complete after {t.deployed_after:.2f} s; {t.acked} acknowledged writes all present "
                   f"({t.errors} errors); at most {t.most} tasks of {DESIRED}{cut}")
            results.append(t)
        for s in fleet.servers:
            assert s.panics() == [], s.panics()
    finally:
        fleet.close()
    return results


def test_the_most_tasks_at_once_are_counted_from_creation_to_stop():
    from datetime import datetime, timezone

    def task(created, stopped=None):
        at = lambda s: datetime.fromtimestamp(s, timezone.utc)
        return {"createdAt": at(created), **({"stoppedAt": at(stopped)} if stopped is not None else {})}

    # Two replaced one after the other never overlap; a third overlapping both makes 2, then 3.
    assert most_at_once([task(0, 10), task(10, 20)]) == (1, 0.0)
    assert most_at_once([task(0, 10), task(10, 20), task(5)]) == (2, 5.0)
    assert most_at_once([task(0, 10), task(10, 20), task(5), task(15)]) == (3, 15.0)


def test_failover_under_load_loses_nothing_and_keeps_maximum_percent(tmp_path):
    trials = int(os.environ.get("GANTRY_FAILOVER_TRIALS", "10"))
    results = run_trials(tmp_path, trials)
    times = sorted(t.failover for t in results)
    print(f"failover over {trials} trials: min {times[0]:.2f} s, median {statistics.median(times):.2f} s, "
          f"max {times[-1]:.2f} s")
    assert times[-1] < 5, f"a new leader was scheduling only {times[-1]:.2f} s after the kill"
    assert sum(t.acked for t in results) > 0
    assert trials < 2 or any(t.reconnected is not None for t in results)


def test_an_etcd_member_restarted_under_load_loses_nothing(tmp_path):
    fleet = Fleet(tmp_path, root="member")
    try:
        writers = [Writer(s, f"m{i}") for i, s in enumerate(fleet.servers)]
        for w in writers:
            w.start()
        ecs = fleet.servers[0].client(max_attempts=3)

        def acked_count():
            return sum(len(w.acked.tasks) + len(w.acked.services) + len(w.acked.revisions) for w in writers)

        for member in range(3):
            # Each member in turn (the raft leader among them, at some point): killed, writes
            # go on through the other two, and it comes back.
            fleet.etcd.kill(member)
            during = acked_count()
            wait_for(lambda: acked_count() >= during + 20, 30, interval=0.05,
                     what=f"writes acknowledged with etcd member {member} down")
            fleet.etcd.restart(member)
        for w in writers:
            w.halt.set()
        for w in writers:
            w.join(timeout=30)
        total = check_acknowledged(ecs, [w.acked for w in writers])
        print(f"{total} acknowledged writes, all present; {sum(w.acked.errors for w in writers)} errors")
        for w in writers:
            print("\n".join(w.acked.messages[:8]))
        for s in fleet.servers:
            assert s.panics() == [], s.panics()
    finally:
        fleet.close()
