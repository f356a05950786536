#!/usr/bin/env python3
"""RunTask → RUNNING latency against `docker run -d` of the same image, in one run.

`python3 bench/runtask.py [--tasks 20] [--mode ec2|fargate] [--holder-pool N]`

Builds the release binary, starts `gantry server` plus `gantry agent` (ec2: bridge mode on a
container instance) or `gantry up` (fargate: awsvpc on the built-in Fargate node), then for each
of N rounds: times `docker run -d` of the test image (until the command returns, i.e. the
container is started), and times RunTask until DescribeTasks reports lastStatus RUNNING (polling
every 2 ms over a kept-alive connection). Prints p50/p90 of both and the difference, and the
agent's resident memory while idle. Containers are labelled and removed. `--holder-pool N`
(fargate) is `gantry up --fargate-holder-pool N`: 0 makes each task create and start its own
namespace holder, as before the pool.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

from common import ENV, Api, pct, wait_for, teardown, release_binary, start_server, ROOT, rss_kib

IMAGE = "gantry-test/busybox:latest"
LABEL = "gantry.test-run=bench-runtask"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=20)
    ap.add_argument("--mode", choices=["ec2", "fargate"], default="ec2")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--holder-pool", type=int, default=None)
    args = ap.parse_args()
    subprocess.run([os.path.join(ROOT, "tests/images/build.sh")], check=True, stdout=subprocess.DEVNULL)
    binary = release_binary(not args.no_build)
    extra = ["--fargate-holder-pool", str(args.holder_pool)] if args.holder_pool is not None else []
    server, port, tmp = start_server(binary, "up" if args.mode == "fargate" else "server", extra_args=extra)
    procs = [server]
    try:
        api = Api(port)
        api("CreateCluster", {"clusterName": "bench"})
        container = {"name": "app", "image": IMAGE, "command": ["sleep", "3600"], "stopTimeout": 1,
                     "dockerLabels": {"gantry.test-run": "bench-runtask"}}
        if args.mode == "ec2":
            agent = subprocess.Popen([binary, "agent", "--server", f"http://127.0.0.1:{port}", "--cluster", "bench",
                                      "--data-dir", os.path.join(tmp, "agent")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
            procs.append(agent)
            wait_for(lambda: api("ListContainerInstances", {"cluster": "bench"})["containerInstanceArns"])
            api("RegisterTaskDefinition", {"family": "bench", "containerDefinitions": [{**container, "memory": 32}]})
            run = {"cluster": "bench", "taskDefinition": "bench"}
            agent_pid = agent.pid
        else:
            api("RegisterTaskDefinition", {"family": "bench", "networkMode": "awsvpc",
                                           "requiresCompatibilities": ["FARGATE"], "cpu": "256", "memory": "512",
                                           "containerDefinitions": [container]})
            run = {"cluster": "bench", "taskDefinition": "bench", "launchType": "FARGATE",
                   "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-bench"]}}}
            agent_pid = procs[0].pid
        # Warm up both paths once (image cache, network creation, the pause image).
        subprocess.run(["docker", "run", "-d", "--label", LABEL, IMAGE, "sleep", "3600"], check=True,
                       stdout=subprocess.DEVNULL)
        t = api("RunTask", run)["tasks"][0]["taskArn"]
        wait_for(lambda: api("DescribeTasks", {"cluster": "bench", "tasks": [t]})["tasks"][0]["lastStatus"] == "RUNNING")
        api("StopTask", {"cluster": "bench", "task": t})
        time.sleep(1.5)
        idle_rss = rss_kib(agent_pid)

        docker_ms, gantry_ms = [], []
        for _ in range(args.tasks):
            t0 = time.perf_counter()
            subprocess.run(["docker", "run", "-d", "--label", LABEL, IMAGE, "sleep", "3600"], check=True,
                           stdout=subprocess.DEVNULL)
            docker_ms.append((time.perf_counter() - t0) * 1000)

            t0 = time.perf_counter()
            arn = api("RunTask", run)["tasks"][0]["taskArn"]
            while True:
                status = api("DescribeTasks", {"cluster": "bench", "tasks": [arn]})["tasks"][0]["lastStatus"]
                if status == "RUNNING":
                    break
                if status == "STOPPED":
                    raise SystemExit("the task stopped")
                time.sleep(0.002)
            gantry_ms.append((time.perf_counter() - t0) * 1000)
            api("StopTask", {"cluster": "bench", "task": arn})

        cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                             capture_output=True, text=True).stdout.strip()
        dv = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True,
                            text=True).stdout.strip()
        print(f"# RunTask -> RUNNING vs docker run -d, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores ({cpu}), "
              f"Docker {dv}, mode {args.mode}, {args.tasks} tasks"
              + (f", holder pool {args.holder_pool}" if args.holder_pool is not None else ""))
        print(f"{'':<28} {'p50 ms':>8} {'p90 ms':>8} {'mean ms':>8}")
        print(f"{'docker run -d':<28} {pct(docker_ms, 50):>8.1f} {pct(docker_ms, 90):>8.1f} {statistics.mean(docker_ms):>8.1f}")
        print(f"{'RunTask -> RUNNING':<28} {pct(gantry_ms, 50):>8.1f} {pct(gantry_ms, 90):>8.1f} {statistics.mean(gantry_ms):>8.1f}")
        print(f"overhead at p50: {pct(gantry_ms, 50) - pct(docker_ms, 50):+.1f} ms; "
              f"agent resident memory when idle: {idle_rss / 1024:.1f} MiB"
              + (" (the whole gantry up process)" if args.mode == "fargate" else ""))
    finally:
        teardown(procs, tmp, LABEL)


if __name__ == "__main__":
    sys.exit(main())
