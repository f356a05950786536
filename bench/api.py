#!/usr/bin/env python3
"""API throughput and latency benchmark: `python3 bench/api.py [--duration 10] [--connections 16]`.

Builds the release binary, starts `gantry server` on a fresh data directory, stores 1,000 task
definitions (100 families x 10 revisions) and a cluster, then drives each operation with wrk
(one client thread, so the load generator leaves the server most of the machine) and prints
req/s, p50 and p99 per operation, plus the server's resident memory when idle and after the run.
"""
import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import time

from common import release_binary, start_server, AUTH, TARGET, call, rss_kib


def taskdef(family, i):
    return {"family": family, "containerDefinitions": [{
        "name": "web", "image": f"registry.example.com/web:{i}", "cpu": 256, "memory": 512,
        "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
        "environment": [{"name": "N", "value": str(i)}],
        "logConfiguration": {"logDriver": "json-file", "options": {"max-size": "10m"}}}]}


LUA = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/x-amz-json-1.1"
wrk.headers["X-Amz-Target"] = "{target}"
wrk.headers["X-Amz-Date"] = "20260101T000000Z"
wrk.headers["Authorization"] = "{auth}"
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), summary.errors.status))
end
"""


def lua_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_wrk(port, op, body, duration, connections, tmp):
    script = os.path.join(tmp, op + ".lua")
    with open(script, "w") as f:
        f.write(LUA.format(body=lua_str(json.dumps(body)), target=TARGET + op, auth=AUTH))
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "-s", script,
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+)", out)
    reqs, dur_us, p50, p99, bad = map(int, m.groups())
    return reqs / (dur_us / 1e6), p50 / 1000.0, p99 / 1000.0, bad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--workers", type=int, default=0,
                    help="server worker threads (TOKIO_WORKER_THREADS); default: one per core")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    binary = release_binary(not args.no_build)
    server, port, tmp = start_server(
        binary, extra_env={"TOKIO_WORKER_THREADS": str(args.workers)} if args.workers else None)
    try:
        idle = rss_kib(server.pid)
        conn = http.client.HTTPConnection("127.0.0.1", port)
        call(conn, "CreateCluster", {"clusterName": "bench"})
        t0 = time.time()
        for f in range(100):
            for i in range(10):
                call(conn, "RegisterTaskDefinition", taskdef(f"family-{f:03d}", i))
        seed = time.time() - t0
        loaded = rss_kib(server.pid)
        cases = [
            ("DescribeClusters", {"clusters": ["bench"]}),
            ("DescribeTaskDefinition", {"taskDefinition": "family-050:7"}),
            ("ListTaskDefinitions", {"familyPrefix": "family-050"}),
            ("ListTaskDefinitions", {"maxResults": 100}),
            ("RegisterTaskDefinition", taskdef("bench-register", 1)),
        ]
        cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                             capture_output=True, text=True).stdout.strip()
        print(f"# gantry API benchmark, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores ({cpu}), "
              f"server workers {args.workers or os.cpu_count()}, wrk -t1 -c{args.connections} -d{args.duration}s, "
              f"1,000 task definitions stored "
              f"(seeded in {seed:.1f}s)")
        print(f"{'operation':<48} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
        for op, body in cases:
            rps, p50, p99, bad = run_wrk(port, op, body, args.duration, args.connections, tmp)
            label = op + ("" if op != "ListTaskDefinitions" else
                          (" (one family)" if "familyPrefix" in body else " (100 per page)"))
            print(f"{label:<48} {rps:>10.0f} {p50:>8.2f} {p99:>8.2f} {bad:>8}")
        after = rss_kib(server.pid)
        print(f"resident memory: idle {idle / 1024:.1f} MiB, with 1,000 task definitions "
              f"{loaded / 1024:.1f} MiB, after the run {after / 1024:.1f} MiB")
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
