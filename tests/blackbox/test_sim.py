"""`gantry sim`: a simulated fleet that drives the server exactly as real agents do (registration,
long polls, state reports), with tasks that "run" at once and no Docker."""

from __future__ import annotations

import os
import subprocess
from collections import Counter

from harness import gantry_bin, wait_for


def test_simulated_fleet_registers_and_runs_tasks(spawn_server, unique, tmp_path):
    server = spawn_server("sim")
    cluster = unique("sim")
    log = open(tmp_path / "sim.log", "wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANTRY_")}
    sim = subprocess.Popen([str(gantry_bin()), "sim", "--server", server.endpoint, "--cluster", cluster,
                            "--instances", "30", "--zones", "3", "--seed", "5"],
                           stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        ecs = server.ecs

        def registered():
            arns = ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]
            if len(arns) < 30:
                return None
            found = ecs.describe_container_instances(cluster=cluster, containerInstances=arns)["containerInstances"]
            return found if all(i["agentConnected"] for i in found) else None

        instances = wait_for(registered, 30, interval=0.2, what="30 connected simulated instances")
        zones = Counter(a["value"] for i in instances for a in i["attributes"] if a["name"] == "ecs.availability-zone")
        assert zones == {"zone-a": 10, "zone-b": 10, "zone-c": 10}
        types = {a["value"] for i in instances for a in i["attributes"] if a["name"] == "ecs.instance-type"}
        assert len(types) > 2, types

        ecs.register_task_definition(family="simmed", containerDefinitions=[
            {"name": "app", "image": "example/app:1", "memory": 256}])
        out = ecs.run_task(cluster=cluster, taskDefinition="simmed", count=9,
                           placementStrategy=[{"type": "spread", "field": "attribute:ecs.availability-zone"}])
        assert out["failures"] == []
        assert Counter(t["availabilityZone"] for t in out["tasks"]) == {"zone-a": 3, "zone-b": 3, "zone-c": 3}
        arns = [t["taskArn"] for t in out["tasks"]]

        def all_running():
            tasks = ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"]
            return all(t["lastStatus"] == "RUNNING" for t in tasks)

        wait_for(all_running, 20, interval=0.1, what="the simulated tasks to run")
        ecs.stop_task(cluster=cluster, task=arns[0])
        wait_for(lambda: ecs.describe_tasks(cluster=cluster, tasks=arns[:1])["tasks"][0]["lastStatus"] == "STOPPED",
                 20, interval=0.1, what="the stopped task")
    finally:
        sim.kill()
        sim.wait()
        log.close()
