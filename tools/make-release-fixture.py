#!/usr/bin/env python3
"""Makes the data directory fixture of a Gantry release, for the migration test.

`crates/gantry-ecs/tests/fixtures/release-0.1.0/gantry.db` was made with this script from the
release at commit 23caba0 (the key layout before every key carried its service):

    git worktree add --detach /tmp/gantry-0.1.0 23caba0
    (cd /tmp/gantry-0.1.0 && CARGO_TARGET_DIR=/tmp/target-0.1.0 cargo build -p gantry)
    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install boto3
    /tmp/venv/bin/python tools/make-release-fixture.py /tmp/target-0.1.0/debug/gantry \\
        crates/gantry-ecs/tests/fixtures/release-0.1.0/gantry.db

It starts `gantry server` on a fresh data directory, creates through the ECS API (boto3; that
release does not check signatures) what `tests/it/migration.rs` expects to find after the
migration, stops the server with SIGTERM, and writes the store as one compact SQLite file
(`VACUUM INTO`: no WAL, no free pages). IDs and times are the server's own, so the test finds
them through the API rather than comparing them with constants.

What it creates, in account 000000000000, region us-east-1 (and one cluster in eu-west-1):
* clusters `prod` and `dev` (us-east-1) and `edge` (eu-west-1);
* task definition family `web`: revision 1 (deregistered: INACTIVE) and revision 2 (ACTIVE);
  family `fg` revision 1 (ACTIVE, FARGATE-compatible);
* two container instances in `prod` (ACTIVE), one in `dev` that is DRAINING;
* a Fargate node (`/_gantry/agent/v1/fargate`);
* service `web` in `prod` (desired count 2, `web:2`): the scheduler places its two tasks;
* RunTask in `prod`: two `web:2` tasks started by `fixture`, one reported RUNNING and one
  STOPPED; and one FARGATE task of `fg:1`.
"""

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import boto3
from botocore.config import Config

ACCOUNT = "000000000000"
AUTH = ("AWS4-HMAC-SHA256 Credential=AKIDFIXTURE/20260101/us-east-1/ecs/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64)
CPU_MEM = [
    {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
    {"name": "MEMORY", "type": "INTEGER", "integerValue": 4096},
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(endpoint: str) -> None:
    for _ in range(200):
        try:
            with urllib.request.urlopen(endpoint + "/_gantry/health", timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the server did not come up")


def container(name="app", **kw):
    c = {"name": name, "image": "public.ecr.aws/docker/library/busybox:1.36", "memory": 128}
    c.update(kw)
    return c


def identity(instance_id: str, az: str) -> str:
    return json.dumps({"instanceId": instance_id, "availabilityZone": az, "region": "us-east-1",
                       "accountId": ACCOUNT, "instanceType": "m5.large"})


def gantry_post(endpoint: str, path: str, body: dict) -> bytes:
    req = urllib.request.Request(
        endpoint + path, method="POST", data=json.dumps(body).encode(),
        headers={"Authorization": AUTH, "X-Amz-Date": "20260101T000000Z",
                 "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


def keep_connected(endpoint: str, nodes: list, stop: threading.Event) -> None:
    """Polls as the nodes' agents would, so placement sees them connected (no agent runs the
    tasks: they stay as the fixture reports them)."""
    while not stop.is_set():
        for node in list(nodes):
            gantry_post(endpoint, "/_gantry/agent/v1/poll", {"node": node, "version": 0})
        stop.wait(0.5)


def populate(endpoint: str, stop: threading.Event) -> None:
    cfg = Config(retries={"max_attempts": 1})
    mk = lambda region: boto3.client("ecs", endpoint_url=endpoint, region_name=region,  # noqa: E731
                                     aws_access_key_id="AKIDFIXTURE", aws_secret_access_key="x",
                                     config=cfg)
    ecs, eu = mk("us-east-1"), mk("eu-west-1")

    for name in ("prod", "dev"):
        ecs.create_cluster(clusterName=name)
    eu.create_cluster(clusterName="edge")

    ecs.register_task_definition(family="web", containerDefinitions=[container(command=["v1"])])
    ecs.register_task_definition(family="web", containerDefinitions=[container(command=["v2"])],
                                 tags=[{"key": "tier", "value": "front"}])
    ecs.deregister_task_definition(taskDefinition="web:1")
    ecs.register_task_definition(family="fg", requiresCompatibilities=["FARGATE"],
                                 networkMode="awsvpc", cpu="256", memory="512",
                                 containerDefinitions=[container()])

    prod = [ecs.register_container_instance(
        cluster="prod", totalResources=CPU_MEM,
        instanceIdentityDocument=identity(f"i-0prod{i}", az))["containerInstance"]["containerInstanceArn"]
        for i, az in enumerate(["us-east-1a", "us-east-1b"])]
    threading.Thread(target=keep_connected, args=(endpoint, prod, stop), daemon=True).start()
    time.sleep(0.5)
    dev = ecs.register_container_instance(cluster="dev", totalResources=CPU_MEM,
                                          instanceIdentityDocument=identity("i-0dev0", "us-east-1a"))
    ecs.update_container_instances_state(
        cluster="dev", containerInstances=[dev["containerInstance"]["containerInstanceArn"]],
        status="DRAINING")

    gantry_post(endpoint, "/_gantry/agent/v1/fargate", {
        "nodeId": "fixture-node", "cpu": 4096, "memory": 8192, "availabilityZone": "us-east-1a"})
    prod.append("fargate:fixture-node")  # its agent polls too
    time.sleep(1)

    ecs.create_service(cluster="prod", serviceName="web", taskDefinition="web:2", desiredCount=2)

    run = ecs.run_task(cluster="prod", taskDefinition="web:2", count=2, startedBy="fixture")
    assert not run["failures"], run["failures"]
    running, stopped = (t["taskArn"] for t in run["tasks"])
    ecs.submit_task_state_change(cluster="prod", task=running, status="RUNNING")
    ecs.submit_task_state_change(cluster="prod", task=stopped, status="STOPPED",
                                 reason="fixture: stopped")
    fg = ecs.run_task(cluster="prod", taskDefinition="fg:1", launchType="FARGATE",
                      networkConfiguration={"awsvpcConfiguration": {"subnets": ["subnet-fixture"]}})
    assert not fg["failures"], fg["failures"]

    # The scheduler places the service's tasks on its own; wait for them.
    for _ in range(200):
        tasks = ecs.list_tasks(cluster="prod", serviceName="web")["taskArns"]
        if len(tasks) == 2:
            break
        time.sleep(0.1)
    else:
        raise SystemExit("the service's tasks were not placed")
    for _ in range(100):
        svc = ecs.describe_services(cluster="prod", services=["web"])["services"][0]
        if svc["pendingCount"] + svc["runningCount"] == 2:
            break
        time.sleep(0.1)
    time.sleep(0.5)  # let the scheduler's last pass commit


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    binary, out = sys.argv[1], sys.argv[2]
    data = tempfile.mkdtemp(prefix="gantry-fixture-")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([binary, "server", "--listen", f"127.0.0.1:{port}", "--data-dir", data,
                               "--enable-reset"])
    stop = threading.Event()
    try:
        wait_healthy(endpoint)
        populate(endpoint, stop)
    finally:
        stop.set()
        time.sleep(1)
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if os.path.exists(out):
        os.remove(out)
    db = sqlite3.connect(os.path.join(data, "gantry.db"))
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("VACUUM INTO ?", (out,))
    rows = db.execute("SELECT count(*) FROM kv").fetchone()[0]
    db.close()
    shutil.rmtree(data)
    print(f"wrote {out}: {rows} keys, {os.path.getsize(out)} bytes")


if __name__ == "__main__":
    main()
