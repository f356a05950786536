"""Durability: writes are durable before they are acknowledged.

The test runs its own server, streams writes at it from several threads, SIGKILLs it in the
middle, restarts it on the same data dir and checks that every acknowledged write is there.
Writes that were in flight at the kill may or may not have landed; nothing is said about them.
"""

import threading
import time

import pytest
from botocore.exceptions import ClientError

from harness import CPU_MEM, GantryServer, arn, wait_for

WRITERS = 3
MAX_WRITES_PER_WRITER = 3000   # bounded in count ...
MAX_SECONDS = 60               # ... and in time


class Writer(threading.Thread):
    """Alternates CreateCluster, RegisterTaskDefinition and TagResource; records every 200."""

    def __init__(self, server: GantryServer, wid: int, prefix: str):
        super().__init__(daemon=True)
        self.ecs = server.client(max_attempts=1, read_timeout=10, connect_timeout=2)
        self.wid = wid
        self.prefix = prefix
        self.clusters: list[str] = []
        self.revisions: dict[str, int] = {}       # family -> highest acknowledged revision
        self.images: dict[tuple[str, int], str] = {}
        self.tags: dict[str, str] = {}            # cluster arn -> acknowledged tag value
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.unexpected: list[str] = []

    @property
    def acked(self) -> int:
        return len(self.clusters) + len(self.images) + len(self.tags)

    def run(self):
        deadline = time.monotonic() + MAX_SECONDS
        for i in range(MAX_WRITES_PER_WRITER):
            if self.stop.is_set() or time.monotonic() > deadline:
                return
            try:
                self.write(i)
            except ClientError as e:  # an API error is a bug, not the crash
                self.unexpected.append(repr(e))
                return
            except Exception as e:  # connection refused/reset: the server is gone
                self.error = e
                return

    def write(self, i: int):
        kind = i % 3
        if kind == 0:
            name = f"{self.prefix}-w{self.wid}-c{i}"
            self.ecs.create_cluster(clusterName=name)
            self.clusters.append(name)
        elif kind == 1:
            family = f"{self.prefix}-w{self.wid}-f{i % 4}"
            image = f"example/app:{self.wid}-{i}"
            td = self.ecs.register_task_definition(family=family, containerDefinitions=[
                {"name": "app", "image": image, "memory": 64}])["taskDefinition"]
            rev = td["revision"]
            self.revisions[family] = max(self.revisions.get(family, 0), rev)
            self.images[(family, rev)] = image
        elif self.clusters:
            cluster_arn = arn("cluster", self.clusters[-1])
            value = f"v{i}"
            self.ecs.tag_resource(resourceArn=cluster_arn, tags=[{"key": "gen", "value": value}])
            self.tags[cluster_arn] = value


def check_acknowledged(server: GantryServer, writers: list[Writer]):
    ecs = server.client()
    clusters = [c for w in writers for c in w.clusters]
    for i in range(0, len(clusters), 100):
        chunk = clusters[i:i + 100]
        out = ecs.describe_clusters(clusters=chunk)
        assert out["failures"] == [], f"acknowledged clusters lost: {out['failures'][:5]}"
        assert sorted(c["clusterName"] for c in out["clusters"]) == sorted(chunk)
    listed = set()
    paginator = ecs.get_paginator("list_clusters")
    for page in paginator.paginate():
        listed.update(page["clusterArns"])
    assert {arn("cluster", c) for c in clusters} <= listed

    for w in writers:
        for (family, rev), image in w.images.items():
            td = ecs.describe_task_definition(taskDefinition=f"{family}:{rev}")["taskDefinition"]
            assert td["containerDefinitions"][0]["image"] == image, (family, rev)
        for cluster_arn, value in w.tags.items():
            tags = ecs.list_tags_for_resource(resourceArn=cluster_arn)["tags"]
            # A later tag write may have landed unacknowledged; it would carry a larger gen.
            got = {t["key"]: t["value"] for t in tags}.get("gen")
            assert got is not None and int(got[1:]) >= int(value[1:]), (cluster_arn, value, tags)

    # Revisions keep counting up after the crash: no acknowledged revision number is reused.
    for w in writers:
        for family, rev in w.revisions.items():
            td = ecs.register_task_definition(family=family, containerDefinitions=[
                {"name": "app", "image": "after-restart", "memory": 64}])["taskDefinition"]
            assert td["revision"] > rev, (family, rev, td["revision"])


def run_round(server: GantryServer, prefix: str, kill_after: int) -> list[Writer]:
    writers = [Writer(server, w, prefix) for w in range(WRITERS)]
    for w in writers:
        w.start()
    try:
        wait_for(lambda: sum(w.acked for w in writers) >= kill_after
                 or not any(w.is_alive() for w in writers),
                 timeout=MAX_SECONDS, interval=0.005, what=f"{kill_after} acknowledged writes")
    finally:
        server.kill()  # SIGKILL mid-stream
        for w in writers:
            w.stop.set()
            w.join(timeout=30)
    for w in writers:
        assert not w.is_alive(), "writer thread did not stop"
        assert not w.unexpected, f"API error during the write stream: {w.unexpected}"
    assert sum(w.acked for w in writers) >= kill_after, \
        f"writers stopped early: {[repr(w.error) for w in writers]}\n{server.log_tail()}"
    # The kill must have hit the stream while it was running.
    assert any(w.error is not None for w in writers), "no write was interrupted by the kill"
    print(f"round {prefix}: acked={[w.acked for w in writers]} errors={[type(w.error).__name__ for w in writers]}")
    return writers


@pytest.fixture
def durable_server(tmp_path):
    server = GantryServer(tmp_path / "data", tmp_path / "server.log", enable_reset=False)
    yield server
    server.kill()


def test_acknowledged_writes_survive_sigkill(durable_server):
    server = durable_server
    all_writers = []
    for round_no, kill_after in enumerate((150, 40, 600)):
        server.start()
        if all_writers:  # what earlier rounds acknowledged is still there after each restart
            check_acknowledged(server, all_writers)
        writers = run_round(server, f"dur{round_no}", kill_after)
        all_writers.extend(writers)
        server.start()
        check_acknowledged(server, writers)
        server.kill()
    server.start()
    check_acknowledged(server, all_writers)


def test_state_survives_graceful_restart(durable_server):
    server = durable_server.start()
    ecs = server.client()
    ecs.create_cluster(clusterName="graceful", tags=[{"key": "a", "value": "b"}],
                       settings=[{"name": "containerInsights", "value": "enabled"}])
    ecs.register_task_definition(family="graceful", containerDefinitions=[
        {"name": "app", "image": "busybox", "memory": 64}])
    ecs.deregister_task_definition(taskDefinition="graceful:1")
    ecs.register_task_definition(family="graceful", containerDefinitions=[
        {"name": "app", "image": "busybox:2", "memory": 64}])
    ecs.put_account_setting_default(name="containerInsights", value="enhanced")
    ci = ecs.register_container_instance(cluster="graceful",
                                         totalResources=CPU_MEM)["containerInstance"]
    ecs.put_attributes(cluster="graceful", attributes=[
        {"name": "custom.k", "value": "v", "targetId": ci["containerInstanceArn"]}])
    server.stop()

    server.start()
    ecs = server.client()
    [c] = ecs.describe_clusters(clusters=["graceful"], include=["TAGS", "SETTINGS"])["clusters"]
    assert {t["key"]: t["value"] for t in c["tags"]} == {"a": "b"}
    assert {"name": "containerInsights", "value": "enabled"} in c["settings"]
    assert c["registeredContainerInstancesCount"] == 1
    assert ecs.describe_task_definition(taskDefinition="graceful:1")["taskDefinition"][
        "status"] == "INACTIVE"
    assert ecs.describe_task_definition(taskDefinition="graceful")["taskDefinition"][
        "revision"] == 2
    eff = ecs.list_account_settings(name="containerInsights", effectiveSettings=True)["settings"]
    assert [s["value"] for s in eff] == ["enhanced"]
    attrs = ecs.list_attributes(cluster="graceful", targetType="container-instance",
                                attributeName="custom.k")["attributes"]
    assert [(a["name"], a["value"]) for a in attrs] == [("custom.k", "v")]
