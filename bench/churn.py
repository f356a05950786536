#!/usr/bin/env python3
"""Churn: N tasks run and stopped on a simulated fleet, and what that does to the server.

`python3 bench/churn.py [--tasks 20000] [--instances 20] [--live 200] [--retention 30s]
                        [--every 2000] [--baseline PATH] [--no-build]`

Starts `gantry server` (with `--stopped-task-retention RETENTION`) and `gantry sim` (a fleet of
simulated instances: real agents over HTTP whose tasks "run" at once), then runs tasks ten at a
time and stops the oldest whenever more than `--live` are running, until `--tasks` have been
run. Every `--every` tasks it lets the fleet settle (every live task RUNNING, every stopped one
STOPPED) and prints: DescribeClusters' running/pending counts against the truth, the p50 of
DescribeClusters, of ListTasks (desiredStatus RUNNING) and of ListTasks (STOPPED, first page),
how many tasks ListTasks STOPPED lists, the server's resident memory, the data directory's size
(the SQLite file, its write-ahead log and the rest) and the SQLite file's alone. With `--baseline PATH` it first does the same with another binary (one built from main,
say; it gets no retention flag if it has none), so before and after come from one run.
"""
import argparse
import os
import subprocess
import sys
import time

from common import ENV, Api, pct, release_binary, start_server, rss_kib, teardown


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def p50_ms(api, op, body, n=30):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        out = api(op, body)
        times.append((time.perf_counter() - t) * 1000)
    return pct(times, 50), out


def wait_settled(api, live, stopping, timeout=120):
    """Until every live task is RUNNING and every stopping one STOPPED."""
    end = time.time() + timeout
    want = [(arns, "RUNNING") for arns in chunks(live)] + [(arns, "STOPPED") for arns in chunks(stopping)]
    for arns, status in want:
        while True:
            tasks = api("DescribeTasks", {"cluster": "churn", "tasks": arns})["tasks"]
            if all(t["lastStatus"] == status for t in tasks):
                break
            if time.time() > end:
                raise SystemExit(f"the fleet did not settle: tasks not {status}")
            time.sleep(0.05)


def chunks(xs, n=100):
    return [xs[i:i + n] for i in range(0, len(xs), n)]


def supports(binary, flag):
    out = subprocess.run([binary, "server", "--help"], capture_output=True, text=True).stdout
    return flag in out


def run(binary, label, args):
    extra = []
    if supports(binary, "--stopped-task-retention"):
        extra = ["--stopped-task-retention", args.retention]
    server, port, tmp = start_server(binary, "server", extra_args=extra)
    sim = subprocess.Popen([binary, "sim", "--server", f"http://127.0.0.1:{port}", "--cluster", "churn",
                            "--instances", str(args.instances), "--seed", "7"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    procs = [sim, server]
    rows = []
    try:
        api = Api(port)
        api("CreateCluster", {"clusterName": "churn"})
        end = time.time() + 60
        while len(api("ListContainerInstances", {"cluster": "churn"}).get("containerInstanceArns", [])) < args.instances:
            if time.time() > end:
                raise SystemExit("the simulated fleet did not register")
            time.sleep(0.1)
        api("RegisterTaskDefinition", {"family": "churn", "containerDefinitions": [
            {"name": "app", "image": "example/app:1", "memory": 16, "cpu": 8}]})
        live, stopping = [], []
        started = time.time()
        ran = 0
        print(f"\n== {label}: {binary} {' '.join(extra)}")
        print(f"{'tasks':>6} {'secs':>5} {'running':>9} {'pending':>8} {'DescClus':>9} {'ListRun':>8} "
              f"{'ListStop':>9} {'stopped listed':>14} {'RSS MiB':>8} {'data MB':>8} {'db MB':>6}")
        while ran < args.tasks:
            out = api("RunTask", {"cluster": "churn", "taskDefinition": "churn", "count": 10})
            new = [t["taskArn"] for t in out["tasks"]]
            live.extend(new)
            ran += len(new)
            if not new:
                time.sleep(0.01)
            while len(live) > args.live:
                arn = live.pop(0)
                api("StopTask", {"cluster": "churn", "task": arn})
                stopping.append(arn)
            if ran % args.every < 10 or ran >= args.tasks:
                wait_settled(api, live, stopping)
                stopping = []
                dc_ms, dc = p50_ms(api, "DescribeClusters", {"clusters": ["churn"]})
                c = dc["clusters"][0]
                lr_ms, _ = p50_ms(api, "ListTasks", {"cluster": "churn", "desiredStatus": "RUNNING"})
                ls_ms, _ = p50_ms(api, "ListTasks", {"cluster": "churn", "desiredStatus": "STOPPED"}, n=10)
                listed, token = 0, None
                while True:
                    body = {"cluster": "churn", "desiredStatus": "STOPPED", "maxResults": 100}
                    if token:
                        body["nextToken"] = token
                    page = api("ListTasks", body)
                    listed += len(page["taskArns"])
                    token = page.get("nextToken")
                    if not token:
                        break
                row = (ran, time.time() - started, c["runningTasksCount"], len(live), c["pendingTasksCount"],
                       dc_ms, lr_ms, ls_ms, listed, rss_kib(server.pid) / 1024, dir_bytes(tmp) / 1e6,
                       os.path.getsize(os.path.join(tmp, "gantry.db")) / 1e6)
                rows.append(row)
                print(f"{row[0]:>6} {row[1]:>5.0f} {row[2]:>4}/{row[3]:<4} {row[4]:>4}/0   {row[5]:>7.2f}ms "
                      f"{row[6]:>6.2f}ms {row[7]:>7.2f}ms {row[8]:>14} {row[9]:>8.1f} {row[10]:>8.1f} {row[11]:>6.1f}",
                      flush=True)
    finally:
        teardown(procs, tmp, "gantry.test-run=bench-churn")
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=20000)
    ap.add_argument("--instances", type=int, default=20)
    ap.add_argument("--live", type=int, default=200)
    ap.add_argument("--retention", default="30s")
    ap.add_argument("--every", type=int, default=2000)
    ap.add_argument("--baseline", help="another gantry binary to run first (e.g. built from main)")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    binary = release_binary(not args.no_build)
    print(f"churn: {args.tasks} tasks on {args.instances} simulated instances, {args.live} live at a time, "
          f"retention {args.retention}; counts are reported/truth once the fleet settles")
    if args.baseline:
        run(args.baseline, "baseline", args)
    run(binary, "this build", args)


if __name__ == "__main__":
    sys.exit(main())
