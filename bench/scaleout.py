#!/usr/bin/env python3
"""Scale-out (issue 18): RunTask end to end at 1,000 simulated instances on SQLite and on a
3-member etcd, in the same run, with the etcd writes per task placed; then the failover times
of `tests/blackbox/test_failover.py`'s trials (the leader killed during a rolling deployment
under load), min, median and max.

`python3 bench/scaleout.py [--instances 1000] [--latency-tasks 50] [--seconds 10] [--clients 4]
[--trials 10] [--no-build]` (run with the test suite's Python for the failover part: boto3).

Per store: `gantry server` (one; on etcd, given all three members) and `gantry sim --instances
N`; then (1) RunTask → RUNNING latency, one task at a time, polling DescribeTasks every 2 ms;
(2) RunTask count 10 from C clients for S seconds, then until every task placed is RUNNING:
tasks/s, and etcd's revisions over that window (every Gantry transaction is one etcd revision)
per task placed, beside the revisions the idle fleet writes (agent heartbeats, the servers'
records) over as long a window, and the server's etcd transactions per task placed by outcome
(committed, failed on a compare, sent again because only a counter moved).
"""
import argparse
import base64
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from common import ENV, ROOT, call, free_port, pct, release_binary, wait_healthy


class Etcd3:
    """A 3-member etcd cluster on free loopback ports, its data in `tmp`."""

    def __init__(self, tmp):
        self.ports = [(free_port(), free_port()) for _ in range(3)]
        initial = ",".join(f"m{i}=http://127.0.0.1:{p}" for i, (_, p) in enumerate(self.ports))
        self.procs = []
        for i, (c, p) in enumerate(self.ports):
            self.procs.append(subprocess.Popen(
                ["etcd", "--name", f"m{i}", "--data-dir", os.path.join(tmp, f"etcd-m{i}"),
                 "--listen-client-urls", f"http://127.0.0.1:{c}", "--advertise-client-urls", f"http://127.0.0.1:{c}",
                 "--listen-peer-urls", f"http://127.0.0.1:{p}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{p}",
                 "--initial-cluster", initial, "--initial-cluster-state", "new", "--max-txn-ops", "10000",
                 "--logger", "zap", "--log-level", "error"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        end = time.time() + 30
        while time.time() < end:
            try:
                self.revision()
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("etcd did not start")

    def url(self, root):
        return "etcd://" + ",".join(f"127.0.0.1:{c}" for c, _ in self.ports) + f"/{root}"

    def revision(self):
        """etcd's current revision (a linearizable read through the JSON gateway)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.ports[0][0], timeout=5)
        conn.request("POST", "/v3/kv/range", json.dumps({"key": base64.b64encode(b"/").decode(), "count_only": True}))
        r = conn.getresponse()
        body = json.loads(r.read())
        if r.status != 200:
            raise OSError(f"etcd: {r.status} {body}")
        return int(body["header"]["revision"])

    def close(self):
        for p in self.procs:
            p.kill()
            p.wait()


def run_store(binary, store, etcd, args):
    tmp = tempfile.mkdtemp(prefix="gantry-bench-scaleout-")
    port = free_port()
    extra = ["--store", etcd.url("bench")] if etcd else []
    server = subprocess.Popen([binary, "server", "--listen", f"127.0.0.1:{port}", "--data-dir", tmp, "--auth", "open",
                               *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    procs = [server]
    try:
        wait_healthy(port, 30)
        conn = http.client.HTTPConnection("127.0.0.1", port)
        call(conn, "CreateCluster", {"clusterName": "bench"})
        sim = subprocess.Popen([binary, "sim", "--server", f"http://127.0.0.1:{port}", "--cluster", "bench",
                                "--instances", str(args.instances)], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, env=ENV, text=True)
        procs.append(sim)
        sim.stdout.readline()
        # A connection of its own from here: the server may have closed the first one while the
        # fleet registered (a debug build takes minutes for 1,000 instances).
        conn = http.client.HTTPConnection("127.0.0.1", port)
        end = time.time() + 120
        while count_instances(conn) < args.instances:
            if time.time() > end:
                raise SystemExit(f"{store}: the simulated fleet did not register")
            time.sleep(0.5)
        call(conn, "RegisterTaskDefinition", {"family": "bench", "containerDefinitions": [
            {"name": "app", "image": "example/app:1", "memory": 128, "cpu": 64}]})

        # (1) One task at a time, RunTask until DescribeTasks says RUNNING.
        latency = []
        for _ in range(args.latency_tasks):
            t0 = time.perf_counter()
            arn = call(conn, "RunTask", {"cluster": "bench", "taskDefinition": "bench"})["tasks"][0]["taskArn"]
            while call(conn, "DescribeTasks", {"cluster": "bench", "tasks": [arn]})["tasks"][0]["lastStatus"] != "RUNNING":
                time.sleep(0.002)
            latency.append((time.perf_counter() - t0) * 1000)

        # The idle fleet's own writes, over as long a window as the throughput case.
        idle = None
        if etcd:
            r0, t0 = etcd.revision(), time.time()
            time.sleep(args.seconds)
            idle = (etcd.revision() - r0) / (time.time() - t0)

        # (2) Throughput, then until every task placed runs.
        placed = [[] for _ in range(args.clients)]
        stop = time.time() + args.seconds

        def client(n):
            c = http.client.HTTPConnection("127.0.0.1", port)
            while time.time() < stop:
                out = call(c, "RunTask", {"cluster": "bench", "taskDefinition": "bench", "count": 10})
                placed[n].extend(t["taskArn"] for t in out["tasks"])

        r0 = etcd.revision() if etcd else 0
        m0 = txn_outcomes(port)
        start = time.time()
        threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        placing = time.time() - start
        arns = [a for p in placed for a in p]
        pending = list(arns)
        while pending:
            left = []
            for i in range(0, len(pending), 100):
                for t in call(conn, "DescribeTasks", {"cluster": "bench", "tasks": pending[i:i + 100]})["tasks"]:
                    if t["lastStatus"] != "RUNNING":
                        left.append(t["taskArn"])
            pending = left
            if pending:
                time.sleep(0.1)
        window = time.time() - start
        writes = (etcd.revision() - r0) if etcd else None
        outcomes = {k: v - m0.get(k, 0) for k, v in txn_outcomes(port).items()}
        result = {"store": store, "p50": pct(latency, 50), "p90": pct(latency, 90), "placed": len(arns),
                  "placed_per_s": len(arns) / placing, "running_per_s": len(arns) / window}
        if etcd:
            result["writes_per_task"] = writes / max(len(arns), 1)
            result["idle_per_s"] = idle
            result["net_per_task"] = (writes - idle * window) / max(len(arns), 1)
            result["outcomes"] = {k: v / max(len(arns), 1) for k, v in outcomes.items()}
        return result
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def txn_outcomes(port):
    """The server's etcd transactions so far by outcome (committed, compare_failed,
    counter_moved: each one a raft round and a revision), from its /metrics."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics")
    out = {}
    for line in c.getresponse().read().decode().splitlines():
        if line.startswith("gantry_store_etcd_txns_"):
            name, value = line.split()[:2]
            out[name.removeprefix("gantry_store_etcd_txns_").removesuffix("_total")] = float(value)
    return out


def count_instances(conn):
    n, token = 0, None
    while True:
        body = {"cluster": "bench", "maxResults": 100, **({"nextToken": token} if token else {})}
        out = call(conn, "ListContainerInstances", body)
        n += len(out["containerInstanceArns"])
        token = out.get("nextToken")
        if not token:
            return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=1000)
    ap.add_argument("--latency-tasks", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    binary = release_binary(not args.no_build)
    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                         capture_output=True, text=True).stdout.strip()
    etcd_version = subprocess.run(["etcd", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    print(f"# scale-out, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores ({cpu}), "
          f"{etcd_version}, {args.instances} simulated instances, binary {binary}")
    results = [run_store(binary, "SQLite", None, args)]
    tmp = tempfile.mkdtemp(prefix="gantry-bench-etcd-")
    etcd = Etcd3(tmp)
    try:
        results.append(run_store(binary, "etcd, 3 members", etcd, args))
    finally:
        etcd.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'store':<16} {'RunTask→RUNNING p50/p90 ms':>27} {'placed/s':>9} {'RUNNING/s':>10} {'etcd revisions/task':>20}")
    for r in results:
        per = (f"{r['writes_per_task']:.2f} ({r['net_per_task']:.2f} net of {r['idle_per_s']:.1f}/s idle)"
               if "writes_per_task" in r else "-")
        print(f"{r['store']:<16} {r['p50']:>13.1f} / {r['p90']:<11.1f} {r['placed_per_s']:>9.0f} "
              f"{r['running_per_s']:>10.0f}   {per}")
        if r.get("outcomes"):
            print(" " * 17 + "etcd transactions per task placed: "
                  + ", ".join(f"{k} {v:.2f}" for k, v in sorted(r["outcomes"].items())))

    if args.trials:
        sys.path.insert(0, os.path.join(ROOT, "tests", "blackbox"))
        os.environ.setdefault("GANTRY_BIN", binary)
        from pathlib import Path
        import test_failover
        tmp = Path(tempfile.mkdtemp(prefix="gantry-bench-failover-"))
        try:
            trials = test_failover.run_trials(tmp, args.trials, report=lambda line: print("  " + line))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        times = sorted(t.failover for t in trials)
        print(f"failover (kill -9 of the leader → the new leader's first scheduler pass) over {len(times)} trials: "
              f"min {times[0]:.2f} s, median {statistics.median(times):.2f} s, max {times[-1]:.2f} s")


if __name__ == "__main__":
    sys.exit(main())
