#!/usr/bin/env python3
"""End-to-end placement throughput: RunTask (count 10) over HTTP against a simulated fleet.

`python3 bench/placement.py [--instances 1000] [--seed-tasks 10000] [--seconds 10] [--clients 4]`

Builds the release binary, starts `gantry server` and `gantry sim --instances N`, places
`--seed-tasks` tasks first (binpack, so the fleet is partly used), then for each case runs
RunTask with count 10 from several client threads for the given time and prints tasks placed
per second, the CPU time each process spent per task placed (less noisy than the rate on a shared
2-core machine: the server, the simulated fleet and the clients all compete for it), and the
server's resident memory with the fleet and the first tasks loaded, and again at the end (every
case adds the tasks it placed).
"""
import argparse
import http.client
import shutil
import subprocess
import sys
import threading
import time

from common import ENV, release_binary, start_server, call, rss_kib, cpu_seconds

CASES = [
    ("binpack(memory)", {"placementStrategy": [{"type": "binpack", "field": "memory"}]}),
    ("spread(attribute:ecs.availability-zone), binpack(memory)",
     {"placementStrategy": [{"type": "spread", "field": "attribute:ecs.availability-zone"},
                            {"type": "binpack", "field": "memory"}]}),
    ("memberOf(attribute:ecs.availability-zone == zone-b)",
     {"placementConstraints": [{"type": "memberOf", "expression": "attribute:ecs.availability-zone == zone-b"}]}),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=1000)
    ap.add_argument("--seed-tasks", type=int, default=10000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--only", default="", help="run only the cases whose name contains this text")
    args = ap.parse_args()
    binary = release_binary(not args.no_build)
    server, port, tmp = start_server(binary)
    procs = [server]
    try:
        sim = subprocess.Popen([binary, "sim", "--server", f"http://127.0.0.1:{port}", "--cluster", "bench",
                                "--instances", str(args.instances)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               env=ENV, text=True)
        procs.append(sim)
        print(sim.stdout.readline().strip())
        conn = http.client.HTTPConnection("127.0.0.1", port)
        call(conn, "RegisterTaskDefinition", {"family": "bench", "containerDefinitions": [
            {"name": "app", "image": "example/app:1", "memory": 128, "cpu": 64}]})
        t0 = time.time()
        seeded = 0
        while seeded < args.seed_tasks:
            out = call(conn, "RunTask", {"cluster": "bench", "taskDefinition": "bench", "count": 10,
                                         "placementStrategy": [{"type": "binpack", "field": "memory"}]})
            if not out["tasks"]:
                break
            seeded += len(out["tasks"])
        print(f"# {args.instances} simulated instances, {seeded} tasks placed first in {time.time() - t0:.1f}s; "
              f"RunTask count 10 from {args.clients} clients for {args.seconds:.0f}s per case")
        print(f"server resident memory with the fleet and those {seeded} tasks: {rss_kib(server.pid) / 1024:.1f} MiB")
        total = seeded
        for name, extra in [c for c in CASES if args.only in c[0]]:
            placed = [0] * args.clients
            stop = time.time() + args.seconds

            def client(n):
                c = http.client.HTTPConnection("127.0.0.1", port)
                while time.time() < stop:
                    out = call(c, "RunTask", {"cluster": "bench", "taskDefinition": "bench", "count": 10, **extra})
                    placed[n] += len(out["tasks"])

            threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
            cpu0 = (cpu_seconds(server.pid), cpu_seconds(sim.pid), time.process_time())
            start = time.time()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.time() - start
            cpu1 = (cpu_seconds(server.pid), cpu_seconds(sim.pid), time.process_time())
            total += sum(placed)
            n = max(sum(placed), 1)
            per_task = [(b - a) * 1e6 / n for a, b in zip(cpu0, cpu1)]
            print(f"{name:<58} {sum(placed) / elapsed:>7.0f} tasks/s   CPU per task: server {per_task[0]:.0f} us, "
                  f"simulated fleet {per_task[1]:.0f} us, clients {per_task[2]:.0f} us")
        print(f"server resident memory at the end, with {total} tasks: {rss_kib(server.pid) / 1024:.1f} MiB")
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
