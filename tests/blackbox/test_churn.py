"""Churn on a simulated fleet: DescribeClusters' counts stay right while tasks run and stop, and
a STOPPED task stays visible for `--stopped-task-retention`, then disappears from ListTasks and
DescribeTasks (ListTasks on STOPPED lists only the retained tasks)."""

from __future__ import annotations

import os
import subprocess
import time

from harness import gantry_bin, wait_for

RETENTION_S = 2


def counts(ecs, cluster):
    c = ecs.describe_clusters(clusters=[cluster], include=["STATISTICS"])["clusters"][0]
    stats = {s["name"]: int(s["value"]) for s in c["statistics"]}
    return c["runningTasksCount"], c["pendingTasksCount"], stats


def listed(ecs, cluster, status):
    pages = ecs.get_paginator("list_tasks").paginate(cluster=cluster, desiredStatus=status)
    return {arn for page in pages for arn in page["taskArns"]}


def test_counts_stay_right_and_stopped_tasks_go_after_the_retention(spawn_server, unique, tmp_path):
    server = spawn_server("churn", extra_args=("--stopped-task-retention", f"{RETENTION_S}s"))
    cluster = unique("churn")
    # Made here, not by the sim: a ListContainerInstances before the sim's first registration
    # would otherwise find no cluster (seen under load).
    server.ecs.create_cluster(clusterName=cluster)
    log = open(tmp_path / "sim.log", "wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANTRY_")}
    sim = subprocess.Popen([str(gantry_bin()), "sim", "--server", server.endpoint, "--cluster", cluster,
                            "--instances", "4", "--zones", "2", "--seed", "3"],
                           stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        ecs = server.ecs
        wait_for(lambda: len(ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]) == 4,
                 30, interval=0.1, what="4 simulated instances")
        ecs.register_task_definition(family="churn", containerDefinitions=[
            {"name": "app", "image": "example/app:1", "memory": 64}])

        first = [t["taskArn"] for t in ecs.run_task(cluster=cluster, taskDefinition="churn", count=6)["tasks"]]
        assert len(first) == 6

        def all_running(arns):
            def check():
                tasks = ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"]
                return all(t["lastStatus"] == "RUNNING" for t in tasks)
            return check

        wait_for(all_running(first), 20, interval=0.05, what="the first tasks to run")
        running, pending, stats = counts(ecs, cluster)
        assert (running, pending) == (6, 0)
        assert stats["runningEC2TasksCount"] == 6
        assert stats["pendingEC2TasksCount"] == 0
        assert sum(i["runningTasksCount"] for i in ecs.describe_container_instances(
            cluster=cluster, containerInstances=ecs.list_container_instances(cluster=cluster)[
                "containerInstanceArns"])["containerInstances"]) == 6

        # Stop half: they are STOPPED, still listed and described, and no longer counted.
        stopped = first[:3]
        for arn in stopped:
            ecs.stop_task(cluster=cluster, task=arn)
        wait_for(lambda: all(t["lastStatus"] == "STOPPED" for t in
                             ecs.describe_tasks(cluster=cluster, tasks=stopped)["tasks"]),
                 20, interval=0.05, what="the stopped tasks")
        stopped_seen = time.monotonic()
        assert counts(ecs, cluster)[:2] == (3, 0)
        # Within the retention, ListTasks on STOPPED lists them (unless the machine was slow
        # enough for the retention to pass already; the test then checks only what follows).
        early = listed(ecs, cluster, "STOPPED")
        if time.monotonic() - stopped_seen < RETENTION_S / 2:
            assert early == set(stopped)
        assert listed(ecs, cluster, "RUNNING") == set(first[3:])

        # A second wave, while the first wave's stopped tasks expire.
        second = [t["taskArn"] for t in ecs.run_task(cluster=cluster, taskDefinition="churn", count=4)["tasks"]]
        wait_for(all_running(second), 20, interval=0.05, what="the second tasks to run")
        assert counts(ecs, cluster)[:2] == (7, 0)

        # After the retention the first wave's stopped tasks are gone from both.
        wait_for(lambda: not listed(ecs, cluster, "STOPPED"), 30, interval=0.1,
                 what="the stopped tasks to leave ListTasks")
        assert time.monotonic() - stopped_seen >= RETENTION_S - 0.5, "not before the retention"
        gone = ecs.describe_tasks(cluster=cluster, tasks=stopped)
        assert gone["tasks"] == []
        assert {f["reason"] for f in gone["failures"]} == {"MISSING"}

        # Stop the second wave: only its tasks are listed as STOPPED, then none.
        for arn in second:
            ecs.stop_task(cluster=cluster, task=arn)
        wait_for(lambda: listed(ecs, cluster, "STOPPED") == set(second) or not listed(ecs, cluster, "STOPPED"),
                 20, interval=0.05, what="the second wave to be STOPPED")
        assert listed(ecs, cluster, "STOPPED") <= set(second)
        assert counts(ecs, cluster)[:2] == (3, 0)
        wait_for(lambda: not listed(ecs, cluster, "STOPPED"), 30, interval=0.1,
                 what="the second wave to leave ListTasks")
        running, pending, stats = counts(ecs, cluster)
        assert (running, pending) == (3, 0)
        assert listed(ecs, cluster, "RUNNING") == set(first[3:])
        assert not server.panics()
    finally:
        sim.kill()
        sim.wait()
        log.close()
