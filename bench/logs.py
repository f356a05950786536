#!/usr/bin/env python3
"""CloudWatch Logs benchmarks: `python3 bench/logs.py [--events 1000000] [--skip-agent]`.

1. **Ingestion**: `gantry server` (release build, fresh data directory) pinned to CPU 0 with one
   worker thread; client threads pinned to CPU 1 send PutLogEvents in batches of 1,000 (about
   100-byte JSON lines, one stream per client, kept-alive connections, bodies built before the
   clock starts). Prints events/s of wall-clock time and events per second of the server's own
   CPU time. Baseline in the same run: writing the same bytes to a file and fdatasync-ing once
   per batch (the durability floor every acknowledged batch pays).
2. **FilterLogEvents** over the events just stored (`--events`, default 1,000,000): a JSON
   pattern and a term that each match 1 event in 1,000, over the whole group; median of 5.
   Baseline in the same run: `grep -c` of the same term over the same lines in a flat file.
3. **The agent's CPU** (needs Docker, skipped with `--skip-agent`): a `gantry agent` runs a task
   whose container prints about 10,000 lines/s, once with `awslogs` (shipping to the server) and
   once with the default json-file driver only; the agent's CPU time over the same window.
   Containers carry the label `gantry.bench=<run>` and are removed by it.
"""
import argparse
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
import uuid

from common import ENV, cpu_seconds, free_port, release_binary, wait_healthy

LOGS = "Logs_20140328."
AUTH = ("AWS4-HMAC-SHA256 Credential=AKIDBENCH/20260101/us-east-1/logs/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=0")
ECS_AUTH = AUTH.replace("/logs/", "/ecs/")


def call(conn, op, body, target=LOGS, auth=AUTH):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    conn.request("POST", "/", data, {"X-Amz-Target": target + op, "Authorization": auth,
                                     "Content-Type": "application/x-amz-json-1.1",
                                     "X-Amz-Date": "20260101T000000Z"})
    r = conn.getresponse()
    out = r.read()
    if r.status != 200:
        raise SystemExit(f"{op} failed: {r.status} {out[:300]!r}")
    return json.loads(out)


def ecs(conn, op, body):
    return call(conn, op, body, target="AmazonEC2ContainerServiceV20141113.", auth=ECS_AUTH)


def line(i):
    level = "error" if i % 1000 == 7 else "info"
    return json.dumps({"level": level, "n": i, "path": f"/api/v1/items/{i % 97}",
                       "ms": i % 250, "user": f"u{i % 1013}"})


def start_server(binary, cpu=None):
    tmp = tempfile.mkdtemp(prefix="gantry-bench-logs-")
    port = free_port()
    cmd = [binary, "server", "--listen", f"127.0.0.1:{port}", "--data-dir", tmp, "--auth", "open"]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu)] + cmd
    env = {**ENV, "TOKIO_WORKER_THREADS": "1"} if cpu is not None else ENV
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wait_healthy(port)
    return proc, port, tmp


def ingest(port, total, clients):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    call(conn, "CreateLogGroup", {"logGroupName": "bench"})
    per = total // clients
    now = int(time.time() * 1000) - 3_600_000
    bodies = []
    for c in range(clients):
        stream = f"s{c}"
        call(conn, "CreateLogStream", {"logGroupName": "bench", "logStreamName": stream})
        mine = []
        for b in range(per // 1000):
            base = c * per + b * 1000
            events = [{"timestamp": now + (base + k) // 100, "message": line(base + k)}
                      for k in range(1000)]
            mine.append(json.dumps({"logGroupName": "bench", "logStreamName": stream,
                                    "logEvents": events}).encode())
        bodies.append(mine)
    payload = sum(len(b) for m in bodies for b in m)

    def run(mine):
        c = http.client.HTTPConnection("127.0.0.1", port)
        for body in mine:
            call(c, "PutLogEvents", body)
    threads = [threading.Thread(target=run, args=(m,)) for m in bodies]
    return threads, payload, bodies


def fsync_baseline(bodies, directory):
    path = os.path.join(directory, "baseline.seg")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    t = time.perf_counter()
    n = 0
    for mine in bodies:
        for body in mine:
            os.write(fd, body)
            os.fdatasync(fd)
            n += 1000
    elapsed = time.perf_counter() - t
    os.close(fd)
    os.unlink(path)
    return n / elapsed


def bench_ingest_and_filter(binary, total, clients):
    os.sched_setaffinity(0, {1})
    proc, port, tmp = start_server(binary, cpu=0)
    try:
        threads, payload, bodies = ingest(port, total, clients)
        cpu0 = cpu_seconds(proc.pid)
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t
        cpu = cpu_seconds(proc.pid) - cpu0
        n = sum(len(m) for m in bodies) * 1000
        print(f"PutLogEvents, batches of 1,000, {clients} clients, {n:,} events "
              f"({payload / 1e6:.0f} MB of requests):")
        print(f"  {n / wall:,.0f} events/s wall-clock ({wall:.2f} s), "
              f"{n / cpu:,.0f} events per server CPU-second ({cpu:.2f} s CPU, one core)")
        print(f"  baseline, the same bytes appended and fdatasync'ed per batch: "
              f"{fsync_baseline(bodies, tmp):,.0f} events/s")
        del bodies

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        print(f"FilterLogEvents over {n:,} events ({clients} streams), median of 5:")
        for label, pattern, term in (("JSON", '{ $.level = "error" }', None),
                                     ("term", "error", None)):
            times, found = [], 0
            for _ in range(5):
                t = time.perf_counter()
                out = call(conn, "FilterLogEvents", {"logGroupName": "bench", "filterPattern": pattern,
                                                    "limit": 10000})
                times.append(time.perf_counter() - t)
                found = len(out["events"])
            print(f"  {label:5} {pattern:28} {found:5} events  {statistics.median(times) * 1000:7.0f} ms"
                  f"  (min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f})")
        flat = os.path.join(tmp, "flat.log")
        with open(flat, "w") as f:
            for i in range(n):
                f.write(line(i) + "\n")
        times = []
        for _ in range(5):
            t = time.perf_counter()
            out = subprocess.run(["grep", "-c", '"level": "error"', flat], capture_output=True, text=True)
            times.append(time.perf_counter() - t)
        print(f"  baseline: grep -c over the same lines in one flat file: {out.stdout.strip()} lines "
              f"{statistics.median(times) * 1000:7.0f} ms")
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
        os.sched_setaffinity(0, set(range(os.cpu_count())))


PRINTER = ("i=0; while true; do seq $i $((i+999)); i=$((i+1000)); usleep 98000; done")


def bench_agent(binary, seconds):
    run_id = uuid.uuid4().hex[:8]
    proc, port, tmp = start_server(binary)
    agent = None
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        cluster = f"bench-{run_id}"
        ecs(conn, "CreateCluster", {"clusterName": cluster})
        agent = subprocess.Popen([binary, "agent", "--server", f"http://127.0.0.1:{port}",
                                  "--cluster", cluster, "--data-dir", os.path.join(tmp, "agent")],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        end = time.time() + 30
        while not ecs(conn, "ListContainerInstances", {"cluster": cluster})["containerInstanceArns"]:
            if time.time() > end:
                raise SystemExit("the agent did not register")
            time.sleep(0.1)
        call(conn, "CreateLogGroup", {"logGroupName": "/bench/agent"})
        results = {}
        for label, logcfg in (("json-file only", None),
                              ("awslogs", {"logDriver": "awslogs", "options": {
                                  "awslogs-group": "/bench/agent", "awslogs-region": "us-east-1",
                                  "awslogs-stream-prefix": "b"}})):
            c = {"name": "printer", "image": "gantry-test/busybox:latest", "memory": 128,
                 "essential": True, "command": ["sh", "-c", PRINTER],
                 "dockerLabels": {"gantry.bench": run_id}}
            if logcfg:
                c["logConfiguration"] = logcfg
            td = ecs(conn, "RegisterTaskDefinition", {"family": f"printer-{run_id}",
                                                      "containerDefinitions": [c]})
            arn = td["taskDefinition"]["taskDefinitionArn"]
            task = ecs(conn, "RunTask", {"cluster": cluster, "taskDefinition": arn})["tasks"][0]
            end = time.time() + 60
            while True:
                t = ecs(conn, "DescribeTasks", {"cluster": cluster, "tasks": [task["taskArn"]]})["tasks"][0]
                if t["lastStatus"] == "RUNNING":
                    break
                if time.time() > end or t["lastStatus"] == "STOPPED":
                    raise SystemExit(f"the printer did not run: {t.get('stoppedReason')}")
                time.sleep(0.2)
            cid = t["containers"][0]["runtimeId"]
            time.sleep(3)  # let the shipper reach its steady state
            lines0 = int(subprocess.run(f"docker logs {cid} 2>&1 | wc -l", shell=True,
                                        capture_output=True, text=True).stdout)
            cpu0, t0 = cpu_seconds(agent.pid), time.perf_counter()
            time.sleep(seconds)
            cpu, wall = cpu_seconds(agent.pid) - cpu0, time.perf_counter() - t0
            lines = int(subprocess.run(f"docker logs {cid} 2>&1 | wc -l", shell=True,
                                       capture_output=True, text=True).stdout) - lines0
            results[label] = (cpu / wall, lines / wall)
            ecs(conn, "StopTask", {"cluster": cluster, "task": task["taskArn"]})
            end = time.time() + 60
            while ecs(conn, "DescribeTasks", {"cluster": cluster, "tasks": [task["taskArn"]]})[
                    "tasks"][0]["lastStatus"] != "STOPPED" and time.time() < end:
                time.sleep(0.2)
        # Every line the awslogs run printed is in its stream (GetLogEvents, all pages; the
        # stream's storedBytes is always 0, as on CloudWatch since 2019).
        shipped = 0
        streams = call(conn, "DescribeLogStreams", {"logGroupName": "/bench/agent"})["logStreams"]
        for s in streams:
            token = None
            while True:
                req = {"logGroupName": "/bench/agent", "logStreamName": s["logStreamName"],
                       "startFromHead": True, "limit": 10000}
                if token:
                    req["nextToken"] = token
                page = call(conn, "GetLogEvents", req)
                shipped += len(page["events"])
                if not page["events"] or page.get("nextForwardToken") == token:
                    break
                token = page.get("nextForwardToken")
        print(f"The agent's CPU over {seconds} s while a container prints (`docker logs` counts):")
        for label, (cpu, rate) in results.items():
            print(f"  {label:15} {rate:8,.0f} lines/s   agent CPU {cpu * 100:5.1f} % of one core")
        print(f"  (the awslogs run's stream holds {shipped:,} events, every line printed until "
              f"its task stopped)")
    finally:
        if agent:
            agent.kill()
            agent.wait()
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=gantry.bench={run_id}"],
                             capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
        proc.kill()
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--agent-seconds", type=int, default=20)
    p.add_argument("--skip-agent", action="store_true")
    p.add_argument("--no-build", action="store_true")
    args = p.parse_args()
    binary = release_binary(not args.no_build)
    print(f"gantry {binary}; {os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    bench_ingest_and_filter(binary, args.events, args.clients)
    if not args.skip_agent:
        bench_agent(binary, args.agent_seconds)


if __name__ == "__main__":
    sys.exit(main())
