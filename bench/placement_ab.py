#!/usr/bin/env python3
"""Two `gantry` binaries side by side, in lockstep: which one places tasks for less CPU.

`python3 bench/placement_ab.py BIN_A BIN_B [--rounds 4] [--seconds 8] [--case memberOf]
[--instances 10000] [--seed-tasks 100000]`

This machine's speed moves by up to half between runs, so two binaries measured one after the
other cannot show a gain of a few percent. Here each binary gets its own server, simulated fleet
and clients (a child process each, so the clients do not share an interpreter lock), both are
seeded, and then every round starts the case on both at the same moment: both see the same
machine. Each round prints tasks per second and the CPU the server and the fleet spent per task
placed; the CPU per task is the steadier figure (the two compete for the same two cores).
"""
import argparse
import http.client
import json
import shutil
import subprocess
import sys
import threading
import time

from common import ENV, start_server, call, cpu_seconds, rss_kib

CASES = {
    "binpack": {"placementStrategy": [{"type": "binpack", "field": "memory"}]},
    "spread": {"placementStrategy": [{"type": "spread", "field": "attribute:ecs.availability-zone"},
                                     {"type": "binpack", "field": "memory"}]},
    "memberOf": {"placementConstraints": [{"type": "memberOf",
                                           "expression": "attribute:ecs.availability-zone == zone-b"}]},
}
CLIENTS = 4


def runner(binary, instances, seed_tasks):
    """One side: seeds, says `ready`, then runs a case for each `go CASE SECONDS` line on stdin."""
    server, port, tmp = start_server(binary)
    sim = subprocess.Popen([binary, "sim", "--server", f"http://127.0.0.1:{port}", "--cluster", "bench",
                            "--instances", str(instances)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           env=ENV, text=True)
    try:
        sim.stdout.readline()
        conn = http.client.HTTPConnection("127.0.0.1", port)
        call(conn, "RegisterTaskDefinition", {"family": "bench", "containerDefinitions": [
            {"name": "app", "image": "example/app:1", "memory": 128, "cpu": 64}]})
        seeded = 0
        while seeded < seed_tasks:
            out = call(conn, "RunTask", {"cluster": "bench", "taskDefinition": "bench", "count": 10,
                                         "placementStrategy": [{"type": "binpack", "field": "memory"}]})
            if not out["tasks"]:
                break
            seeded += len(out["tasks"])
        print(json.dumps({"rss_mib": rss_kib(server.pid) // 1024}), flush=True)
        for line in sys.stdin:
            _, case, seconds = line.split()
            extra, stop = CASES[case], time.time() + float(seconds)
            placed = [0] * CLIENTS

            def client(n):
                c = http.client.HTTPConnection("127.0.0.1", port)
                while time.time() < stop:
                    out = call(c, "RunTask", {"cluster": "bench", "taskDefinition": "bench", "count": 10, **extra})
                    placed[n] += len(out["tasks"])

            threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
            cpu0, t0 = (cpu_seconds(server.pid), cpu_seconds(sim.pid)), time.time()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed, n = time.time() - t0, max(sum(placed), 1)
            cpu1 = (cpu_seconds(server.pid), cpu_seconds(sim.pid))
            print(json.dumps({"rate": n / elapsed, "server_us": (cpu1[0] - cpu0[0]) * 1e6 / n,
                              "sim_us": (cpu1[1] - cpu0[1]) * 1e6 / n, "rss_mib": rss_kib(server.pid) // 1024}),
                  flush=True)
    finally:
        for p in (server, sim):
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    if sys.argv[1:2] == ["--runner"]:
        return runner(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--case", choices=sorted(CASES), default="memberOf")
    ap.add_argument("--instances", type=int, default=10000)
    ap.add_argument("--seed-tasks", type=int, default=100000)
    args = ap.parse_args()
    sides = [(name, subprocess.Popen([sys.executable, __file__, "--runner", name, str(args.instances),
                                      str(args.seed_tasks)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
             for name in (args.a, args.b)]
    try:
        for name, p in sides:
            print(f"{name}: seeded, {json.loads(p.stdout.readline())['rss_mib']} MiB")
        results = {name: [] for name, _ in sides}
        for r in range(args.rounds):
            for _, p in sides:
                p.stdin.write(f"go {args.case} {args.seconds}\n")
                p.stdin.flush()
            line = []
            for name, p in sides:
                d = json.loads(p.stdout.readline())
                results[name].append(d)
                line.append(f"{name}: {d['rate']:.0f} tasks/s, server {d['server_us']:.0f} us, "
                            f"fleet {d['sim_us']:.0f} us per task")
            print(f"round {r + 1}: " + "  |  ".join(line), flush=True)
        for name, rs in results.items():
            mean = {k: sum(d[k] for d in rs) / len(rs) for k in ("rate", "server_us", "sim_us")}
            print(f"{name}: mean {mean['rate']:.0f} tasks/s, server {mean['server_us']:.0f} us and fleet "
                  f"{mean['sim_us']:.0f} us per task; {rs[-1]['rss_mib']} MiB at the end")
    finally:
        for _, p in sides:
            p.stdin.close()
            p.wait()


if __name__ == "__main__":
    sys.exit(main())
