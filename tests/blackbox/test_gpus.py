"""GPUs, ECS-style, on a simulated fleet (no GPU or Docker needed): instances register a `GPU`
string set of device IDs, tasks ask for GPUs with `resourceRequirements`, each task's containers
get distinct IDs (`gpuIds`) reserved from their instance, and a stopped task gives them back."""

from __future__ import annotations

import os
import subprocess
from collections import Counter

from harness import gantry_bin, wait_for


def gpu_set(resources):
    return sorted(next(r["stringSetValue"] for r in resources if r["name"] == "GPU"))


def test_gpu_ids_are_reserved_from_the_instance_and_given_back(spawn_server, unique, tmp_path):
    server = spawn_server("gpus")
    cluster = unique("gpu")
    log = open(tmp_path / "sim.log", "wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANTRY_")}
    sim = subprocess.Popen([str(gantry_bin()), "sim", "--server", server.endpoint, "--cluster", cluster,
                            "--instances", "2", "--zones", "1", "--gpus", "4"],
                           stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        ecs = server.ecs

        def instances():
            arns = ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]
            if len(arns) < 2:
                return None
            found = ecs.describe_container_instances(cluster=cluster, containerInstances=arns)["containerInstances"]
            return {i["containerInstanceArn"]: i for i in found} if all(i["agentConnected"] for i in found) else None

        before = wait_for(instances, 30, interval=0.2, what="2 connected simulated instances with GPUs")
        registered = {}
        for arn, i in before.items():
            registered[arn] = gpu_set(i["registeredResources"])
            assert len(registered[arn]) == 4
            assert gpu_set(i["remainingResources"]) == registered[arn]
            assert any(a["name"] == "ecs.capability.gpu" for a in i["attributes"])

        td = ecs.register_task_definition(family=unique("train"), containerDefinitions=[
            {"name": "train", "image": "example/train:1", "memory": 128,
             "resourceRequirements": [{"type": "GPU", "value": "2"}]}])["taskDefinition"]
        assert {"name": "ecs.capability.gpu"} in td["requiresAttributes"]
        family = td["family"]

        out = ecs.run_task(cluster=cluster, taskDefinition=family, count=4)
        assert out["failures"] == []
        tasks = out["tasks"]
        held = {}
        for t in tasks:
            ids = t["containers"][0]["gpuIds"]
            assert len(ids) == 2 and len(set(ids)) == 2, ids
            assert set(ids) <= set(registered[t["containerInstanceArn"]])
            held[t["taskArn"]] = (t["containerInstanceArn"], ids)
        # No ID is given twice on an instance: 2 instances x 4 GPUs, all taken.
        pairs = Counter((ci, g) for ci, ids in held.values() for g in ids)
        assert len(pairs) == 8 and max(pairs.values()) == 1
        after = instances()
        assert all(gpu_set(i["remainingResources"]) == [] for i in after.values())

        full = ecs.run_task(cluster=cluster, taskDefinition=family)
        assert full["tasks"] == []
        assert {f["reason"] for f in full["failures"]} == {"RESOURCE:GPU"}

        arns = list(held)
        wait_for(lambda: all(t["lastStatus"] == "RUNNING"
                             for t in ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"]),
                 20, interval=0.1, what="the GPU tasks to run")
        described = ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"]
        assert {t["taskArn"]: t["containers"][0]["gpuIds"] for t in described} == \
            {a: ids for a, (_, ids) in held.items()}

        # Stopping one gives its two IDs back to its instance; the next task gets exactly them.
        ci, ids = held[arns[0]]
        ecs.stop_task(cluster=cluster, task=arns[0])
        wait_for(lambda: gpu_set(ecs.describe_container_instances(
            cluster=cluster, containerInstances=[ci])["containerInstances"][0]["remainingResources"]) == sorted(ids),
                 20, interval=0.1, what="the stopped task's GPUs back on its instance")
        again = ecs.run_task(cluster=cluster, taskDefinition=family)
        assert again["failures"] == []
        assert again["tasks"][0]["containerInstanceArn"] == ci
        assert sorted(again["tasks"][0]["containers"][0]["gpuIds"]) == sorted(ids)
    finally:
        sim.kill()
        sim.wait()
        log.close()
