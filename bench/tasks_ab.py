#!/usr/bin/env python3
"""RunTask, DescribeTasks and ListTasks against two or more gantry binaries in one run:
`python3 bench/tasks_ab.py --gantry before=PATH --gantry after=PATH [--rounds 3] [--calls 200]`.

For each round and each binary in turn (interleaved, so both see the same machine), starts
`gantry server` (auth open) on a fresh data directory and `gantry sim` (20 simulated container
instances, tasks "run" at once without Docker), registers a task definition, then times over one
kept-alive connection: RunTask (count 10) `--calls / 10` times, DescribeTasks of 100 tasks (with
TAGS) and ListTasks (desired RUNNING, then by family and launch type, which reads the records)
`--calls` times each. Prints per round and binary the mean and p50 latency (ms) of each
operation, then the median over rounds.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

from common import ENV, Api, pct, wait_for, start_server

INSTANCES = 20


def timed(fn, n):
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def one(binary, calls):
    server, port, tmp = start_server(binary)
    sim = None
    try:
        api = Api(port)
        api("CreateCluster", {"clusterName": "bench"})
        sim = subprocess.Popen([binary, "sim", "--server", f"http://127.0.0.1:{port}", "--cluster", "bench",
                                "--instances", str(INSTANCES)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        wait_for(lambda: len(api("ListContainerInstances", {"cluster": "bench"})["containerInstanceArns"]) == INSTANCES)
        api("RegisterTaskDefinition", {"family": "bench", "containerDefinitions": [
            {"name": "app", "image": "busybox", "memory": 16, "cpu": 8,
             "portMappings": [{"containerPort": 80, "hostPort": 0}]}]})
        arns = []

        def run():
            r = api("RunTask", {"cluster": "bench", "taskDefinition": "bench", "count": 10,
                                "tags": [{"key": "k", "value": "v"}]})
            if r["failures"]:
                raise SystemExit(f"RunTask failed: {r['failures']}")
            arns.extend(t["taskArn"] for t in r["tasks"])

        res = {"RunTask": timed(run, max(1, calls // 10))}
        batch = arns[:100]
        wait_for(lambda: all(t["lastStatus"] == "RUNNING" for t in
                             api("DescribeTasks", {"cluster": "bench", "tasks": batch})["tasks"]))
        res["DescribeTasks"] = timed(
            lambda: api("DescribeTasks", {"cluster": "bench", "tasks": batch, "include": ["TAGS"]}), calls)
        res["ListTasks"] = timed(lambda: api("ListTasks", {"cluster": "bench"}), calls)
        res["ListTasks (filter)"] = timed(
            lambda: api("ListTasks", {"cluster": "bench", "family": "bench", "launchType": "EC2"}), calls)
        return res
    finally:
        for p in (sim, server):
            if p:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gantry", action="append", required=True, metavar="LABEL=PATH")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=200)
    args = ap.parse_args()
    bins = [g.split("=", 1) for g in args.gantry]
    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                         capture_output=True, text=True).stdout.strip()
    print(f"# tasks A/B, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores ({cpu}), {INSTANCES} sim instances, "
          f"{args.calls} calls per operation per round (RunTask: {max(1, args.calls // 10)} x count 10)")
    means = {}
    for r in range(args.rounds):
        for label, path in bins:
            res = one(path, args.calls)
            for op, xs in res.items():
                means.setdefault((op, label), []).append(statistics.mean(xs))
                print(f"round {r + 1} {label:<10} {op:<20} mean {statistics.mean(xs):7.2f} ms  p50 {pct(xs, 50):7.2f} ms",
                      flush=True)
    print("# median over rounds of the mean (ms)")
    ops = sorted({op for op, _ in means})
    print(f"{'operation':<20}" + "".join(f"{label:>12}" for label, _ in bins))
    for op in ops:
        print(f"{op:<20}" + "".join(f"{statistics.median(means[(op, label)]):>12.2f}" for label, _ in bins))


if __name__ == "__main__":
    sys.exit(main())
