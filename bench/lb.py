#!/usr/bin/env python3
"""Load balancer benchmark: `python3 bench/lb.py [--duration 10] [--rounds 3] [--connections 64]`.

Gantry's ALB data plane (`gantry-lb`'s `lb_serve` example: one HTTP listener, round robin over
4 targets, health checks every 5 s), HAProxy and nginx, each a single thread pinned to CPU 0
(`taskset -c 0`), in front of the same 4 backends (one nginx worker serving 4 ports with a
2-byte `return 200`, pinned to CPU 1 with the load generator). Each proxy adds X-Forwarded-For.

`--baseline BINARY` adds another `lb_serve` (an earlier build) as the row `baseline`.

Per proxy and round (rounds interleave the proxies, so a neighbour's compile hits all alike):
- keep-alive: wrk -t1 -c CONNECTIONS, req/s, p50, p99;
- new connections: the same with `Connection: close` on every request;
- latency: wrk -t1 -c1 (one request at a time), p50 and p99, and p99 added over a direct
  request to a backend (the same run's `direct` row);
and each proxy's resident memory when idle (after start, before any load). Prints each round,
then the medians and the ratios to HAProxy. `--syscalls` then counts each proxy's syscalls per
request (`strace -c -f` attached during one more keep-alive and one more new-connection run).
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import cpu_seconds, free_port, rss_kib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LUA = """
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""

BACKENDS_CONF = """
worker_processes 1;
master_process off;
daemon off;
pid {tmp}/backends.pid;
error_log {tmp}/backends.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    server_tokens off;
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
    client_body_temp_path {tmp}/body;
{servers}
}}
"""

BACKEND_SERVER = """    server {{ listen 127.0.0.1:{port} reuseport backlog=4096; location / {{ return 200 'ok'; }} }}"""

NGINX_PROXY_CONF = """
worker_processes 1;
master_process off;
daemon off;
pid {tmp}/nginx-proxy.pid;
error_log {tmp}/nginx-proxy.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    server_tokens off;
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
    client_body_temp_path {tmp}/pbody;
    proxy_temp_path {tmp}/ptemp;
    upstream backends {{
{servers}
        keepalive 256;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""

HAPROXY_CONF = """
global
    nbthread 1
    maxconn 8192
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
    option forwardfor
    http-reuse always
frontend web
    bind 127.0.0.1:{port} backlog 4096
    default_backend backends
backend backends
    balance roundrobin
{servers}
"""


def wrk(port, duration, connections, tmp, close=False, pid=None):
    """(req/s, p50 ms, p99 ms, non-2xx, socket errors, CPU µs per request of `pid`)."""
    script = os.path.join(tmp, "report.lua")
    with open(script, "w") as f:
        f.write(LUA)
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "-s", script]
    if close:
        cmd += ["-H", "Connection: close"]
    cpu = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run(cmd + [f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True).stdout
    cpu = (cpu_seconds(pid) - cpu) if pid else 0.0
    m = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)", out)
    reqs, dur_us, p50, p99, bad, errors = map(int, m.groups())
    return reqs / (dur_us / 1e6), p50 / 1000.0, p99 / 1000.0, bad, errors, cpu * 1e6 / max(reqs, 1)


def syscalls(pid, port, duration, connections, tmp, close):
    """(syscalls per request, [(name, per request)] by count) of `pid` under one wrk run, by `strace -c -f`."""
    out_file = os.path.join(tmp, "strace.out")
    tracer = subprocess.Popen(["strace", "-c", "-f", "-p", str(pid), "-o", out_file],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Until strace has attached (TracerPid), so no request goes uncounted.
    deadline = time.time() + 10
    while time.time() < deadline and not any(
            line.startswith("TracerPid:") and line.split()[1] != "0" for line in open(f"/proc/{pid}/status")):
        time.sleep(0.05)
    time.sleep(0.2)
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{duration}s"]
    if close:
        cmd += ["-H", "Connection: close"]
    out = subprocess.run(cmd + [f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True).stdout
    tracer.send_signal(2)
    tracer.wait()
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    counts = []
    for line in open(out_file):
        parts = line.split()
        # % time, seconds, usecs/call, calls, [errors,] syscall
        if len(parts) >= 5 and parts[3].isdigit() and parts[-1] != "total":
            counts.append((parts[-1], int(parts[3]) / max(reqs, 1)))
    counts.sort(key=lambda c: -c[1])
    return sum(n for _, n in counts), counts


def wait_port(port, timeout=10):
    import socket
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def build():
    env = dict(os.environ)
    subprocess.run(["cargo", "build", "--release", "-p", "gantry-lb", "--example", "lb_serve"], cwd=ROOT, check=True,
                   env=env)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return os.path.join(target, "release", "examples", "lb_serve")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--syscalls", action="store_true",
                    help="after the rounds, count each proxy's syscalls per request (strace -c -f) over keep-alive "
                         "and new connections")
    ap.add_argument("--baseline", metavar="BINARY",
                    help="another lb_serve binary (an earlier build) run as the row `baseline`, for a same-run before/after")
    args = ap.parse_args()
    for tool in ("wrk", "nginx", "haproxy", "taskset"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            raise SystemExit(f"{tool} is missing: apt-get install -y haproxy nginx-light wrk")
    binary = (os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "examples",
                           "lb_serve") if args.no_build else build())
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    tmp = tempfile.mkdtemp(prefix="gantry-lb-bench-")
    procs = []
    try:
        backend_ports = [free_port() for _ in range(4)]
        with open(f"{tmp}/backends.conf", "w") as f:
            f.write(BACKENDS_CONF.format(tmp=tmp, servers="\n".join(BACKEND_SERVER.format(port=p)
                                                                     for p in backend_ports)))
        procs.append(subprocess.Popen(["taskset", "-c", "1", nginx, "-c", f"{tmp}/backends.conf", "-p", tmp],
                                      stderr=subprocess.DEVNULL))
        for p in backend_ports:
            wait_port(p)

        proxies = {}
        port = free_port()
        p = subprocess.Popen(["taskset", "-c", "0", binary, "--port", str(port), "--threads", "1"]
                             + sum((["--target", f"127.0.0.1:{b}"] for b in backend_ports), []),
                             stderr=subprocess.DEVNULL)
        procs.append(p)
        proxies["gantry"] = (port, p)
        if args.baseline:
            port = free_port()
            p = subprocess.Popen(["taskset", "-c", "0", args.baseline, "--port", str(port), "--threads", "1"]
                                 + sum((["--target", f"127.0.0.1:{b}"] for b in backend_ports), []),
                                 stderr=subprocess.DEVNULL)
            procs.append(p)
            proxies["baseline"] = (port, p)
        port = free_port()
        with open(f"{tmp}/haproxy.cfg", "w") as f:
            f.write(HAPROXY_CONF.format(port=port, servers="\n".join(
                f"    server b{i} 127.0.0.1:{b} check inter 5s" for i, b in enumerate(backend_ports))))
        p = subprocess.Popen(["taskset", "-c", "0", haproxy, "-f", f"{tmp}/haproxy.cfg", "-db"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(p)
        proxies["haproxy"] = (port, p)
        port = free_port()
        os.makedirs(f"{tmp}/ptemp", exist_ok=True)
        with open(f"{tmp}/nginx-proxy.conf", "w") as f:
            f.write(NGINX_PROXY_CONF.format(tmp=tmp, port=port, servers="\n".join(
                f"        server 127.0.0.1:{b};" for b in backend_ports)))
        p = subprocess.Popen(["taskset", "-c", "0", nginx, "-c", f"{tmp}/nginx-proxy.conf", "-p", tmp],
                             stderr=subprocess.DEVNULL)
        procs.append(p)
        proxies["nginx"] = (port, p)
        for port, _ in proxies.values():
            wait_port(port)
        time.sleep(1.5)
        idle = {name: rss_kib(p.pid) for name, (_, p) in proxies.items()}

        cpus = os.cpu_count()
        model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                     "?")
        print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {model}, {cpus} CPUs; proxies on CPU 0, "
              f"backends and wrk on CPU 1; wrk -t1 -c{args.connections} -d{args.duration}s; latency at -c1")
        targets = dict(proxies)
        targets["direct"] = (backend_ports[0], procs[0])
        rows = {name: [] for name in targets}
        for r in range(args.rounds):
            for name, (port, proc) in targets.items():
                ka = wrk(port, args.duration, args.connections, tmp, pid=proc.pid)
                nc = wrk(port, args.duration, args.connections, tmp, close=True, pid=proc.pid)
                lat = wrk(port, max(3, args.duration // 2), 1, tmp)
                rows[name].append((ka, nc, lat))
                print(f"round {r + 1} {name:8} keep-alive {ka[0]:9.0f} req/s p50 {ka[1]:.3f} p99 {ka[2]:.3f} ms | "
                      f"new conn {nc[0]:8.0f} req/s p50 {nc[1]:.3f} p99 {nc[2]:.3f} ms | "
                      f"c1 p50 {lat[1]:.3f} p99 {lat[2]:.3f} ms | CPU/req {ka[5]:.1f} / {nc[5]:.1f} µs | errors {ka[3] + ka[4] + nc[3] + nc[4] + lat[3] + lat[4]}",
                      flush=True)

        if args.syscalls:
            for name, (port, proc) in proxies.items():
                for close in (False, True):
                    per_req = syscalls(proc.pid, port, args.duration, args.connections, tmp, close)
                    top = ", ".join(f"{c} {n:.2f}" for c, n in per_req[1][:8])
                    print(f"syscalls {name:8} {'new conn' if close else 'keep-alive'}: {per_req[0]:.2f} per request "
                          f"({top})", flush=True)

        med = {name: {
            "ka": [statistics.median(x[0][i] for x in rs) for i in range(6)],
            "nc": [statistics.median(x[1][i] for x in rs) for i in range(6)],
            "lat": [statistics.median(x[2][i] for x in rs) for i in range(3)],
            "errors": sum(x[0][3] + x[0][4] + x[1][3] + x[1][4] + x[2][3] + x[2][4] for x in rs),
        } for name, rs in rows.items()}
        print()
        print("| | keep-alive req/s | p50 ms | p99 ms | new conn req/s | p50 ms | p99 ms | c1 p50 ms | c1 p99 ms "
              "| p50 / p99 added (c1) | vs HAProxy keep-alive | vs HAProxy new conn | CPU µs/req keep-alive / new conn "
              "| idle RSS | errors |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        direct_p50, direct_p99 = med["direct"]["lat"][1], med["direct"]["lat"][2]
        for name, m in med.items():
            ka, nc, lat = m["ka"], m["nc"], m["lat"]
            rss = f"{idle[name] / 1024:.1f} MiB" if name in idle else "-"
            ratio_ka = ka[0] / med["haproxy"]["ka"][0]
            ratio_nc = nc[0] / med["haproxy"]["nc"][0]
            added = (f"{lat[1] - direct_p50:+.3f} / {lat[2] - direct_p99:+.3f}" if name != "direct" else "-")
            print(f"| {name} | {ka[0]:.0f} | {ka[1]:.3f} | {ka[2]:.3f} | {nc[0]:.0f} | {nc[1]:.3f} | {nc[2]:.3f} | "
                  f"{lat[1]:.3f} | {lat[2]:.3f} | {added} | {ratio_ka:.2f}x | {ratio_nc:.2f}x | "
                  f"{ka[5]:.1f} / {nc[5]:.1f} | {rss} | {m['errors']} |")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
