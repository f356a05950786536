#!/usr/bin/env python3
"""Service scheduler speed on real Docker, against `docker run -d` of the same image, in one run.

`python3 bench/services.py [--kills 10] [--deployments 3] [--no-build]`

Starts `gantry server` and `gantry agent` (bridge mode, this host as a container instance),
creates a service of 10 tasks and then measures:
  * replacement: `docker kill` of one service task's container until a replacement task of the
    service is RUNNING (polling DescribeServices/ListTasks/DescribeTasks every 5 ms), next to
    `docker run -d` of the same image (the time Docker itself needs to start a container);
  * rolling deployment: UpdateService to a new revision (minimumHealthyPercent 100,
    maximumPercent 200) until the PRIMARY deployment's rolloutState is COMPLETED.
Containers are labelled and removed afterwards.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

from common import ENV, Api, pct, teardown, release_binary, start_server, ROOT

IMAGE = "gantry-test/busybox:latest"
LABEL = "gantry.test-run=bench-services"


def poll(pred, timeout=120, interval=0.005):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise SystemExit("timed out")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--deployments", type=int, default=3)
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    subprocess.run([os.path.join(ROOT, "tests/images/build.sh")], check=True, stdout=subprocess.DEVNULL)
    binary = release_binary(not args.no_build)
    server, port, tmp = start_server(binary)
    procs = [server]
    try:
        api = Api(port)
        api("CreateCluster", {"clusterName": "bench"})
        procs.append(subprocess.Popen([binary, "agent", "--server", f"http://127.0.0.1:{port}", "--cluster", "bench",
                                       "--data-dir", os.path.join(tmp, "agent")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV))
        poll(lambda: api("ListContainerInstances", {"cluster": "bench"})["containerInstanceArns"], 30, 0.05)

        def revision(n):
            c = {"name": "app", "image": IMAGE, "command": ["sleep", "3600"], "stopTimeout": 1, "memory": 16,
                 "environment": [{"name": "REV", "value": str(n)}],
                 "dockerLabels": {"gantry.test-run": "bench-services"}}
            return api("RegisterTaskDefinition", {"family": "bench", "containerDefinitions": [c]})[
                "taskDefinition"]["taskDefinitionArn"]

        def svc():
            return api("DescribeServices", {"cluster": "bench", "services": ["web"]})["services"][0]

        def tasks():
            arns = api("ListTasks", {"cluster": "bench", "serviceName": "web"})["taskArns"]
            return api("DescribeTasks", {"cluster": "bench", "tasks": arns})["tasks"] if arns else []

        def completed():
            d = svc()["deployments"]
            return len(d) == 1 and d[0]["rolloutState"] == "COMPLETED"

        # Warm up Docker's path once.
        subprocess.run(["docker", "run", "-d", "--label", LABEL, IMAGE, "sleep", "3600"], check=True,
                       stdout=subprocess.DEVNULL)
        t0 = time.perf_counter()
        api("CreateService", {"cluster": "bench", "serviceName": "web", "taskDefinition": revision(1),
                              "desiredCount": 10,
                              "deploymentConfiguration": {"minimumHealthyPercent": 100, "maximumPercent": 200}})
        poll(completed)
        create_s = time.perf_counter() - t0

        docker_ms, replace_ms = [], []
        for _ in range(args.kills):
            t0 = time.perf_counter()
            subprocess.run(["docker", "run", "-d", "--label", LABEL, IMAGE, "sleep", "3600"], check=True,
                           stdout=subprocess.DEVNULL)
            docker_ms.append((time.perf_counter() - t0) * 1000)

            before = tasks()
            victim = before[0]
            known = {t["taskArn"] for t in before}
            t0 = time.perf_counter()
            subprocess.run(["docker", "kill", victim["containers"][0]["runtimeId"]], check=True,
                           stdout=subprocess.DEVNULL)
            poll(lambda: [t for t in tasks() if t["taskArn"] not in known and t["lastStatus"] == "RUNNING"])
            replace_ms.append((time.perf_counter() - t0) * 1000)
            poll(completed)

        deploy_s = []
        for n in range(args.deployments):
            td = revision(n + 2)
            t0 = time.perf_counter()
            api("UpdateService", {"cluster": "bench", "service": "web", "taskDefinition": td})
            poll(lambda: completed() and svc()["deployments"][0]["taskDefinition"] == td)
            deploy_s.append(time.perf_counter() - t0)

        cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                             capture_output=True, text=True).stdout.strip()
        dv = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True,
                            text=True).stdout.strip()
        print(f"# Services on real Docker, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores ({cpu}), "
              f"Docker {dv}; a service of 10 tasks")
        print(f"create-service (10 tasks) to COMPLETED: {create_s:.2f} s")
        print(f"{'':<40} {'p50 ms':>8} {'p90 ms':>8} {'max ms':>8}")
        print(f"{'docker run -d':<40} {pct(docker_ms, 50):>8.1f} {pct(docker_ms, 90):>8.1f} {max(docker_ms):>8.1f}")
        print(f"{'docker kill -> replacement RUNNING':<40} {pct(replace_ms, 50):>8.1f} {pct(replace_ms, 90):>8.1f} "
              f"{max(replace_ms):>8.1f}")
        print(f"replacement overhead over docker run -d at p50: {pct(replace_ms, 50) - pct(docker_ms, 50):+.1f} ms")
        print(f"rolling deployment of 10 tasks (100/200) to COMPLETED: "
              + ", ".join(f"{s:.2f} s" for s in deploy_s) + f" (mean {statistics.mean(deploy_s):.2f} s)")
    finally:
        teardown(procs, tmp, LABEL)


if __name__ == "__main__":
    sys.exit(main())
