#!/usr/bin/env python3
"""API throughput and latency benchmark: `python3 bench/api.py [--duration 10] [--connections 16]`.

Builds the release binary, starts `gantry server` on a fresh data directory, stores 1,000 task
definitions (100 families x 10 revisions) and a cluster, then drives each operation with wrk
(one client thread, so the load generator leaves the server most of the machine) and prints
req/s, p50 and p99 per operation, plus the server's resident memory when idle and after the run.

`--versus-nginx` instead compares DescribeClusters, in interleaved rounds of the same run, with
nginx (one worker, `return 200` of the same response bytes with the same content type and a
request-ID header) and any number of gantry binaries: `--gantry LABEL=PATH:MODE`, MODE being
`open` (`--auth open`, the signed-looking header), `sigv4` (`--auth sigv4`, requests signed for
real with the root key by botocore, signed again before every round so that the fixed
X-Amz-Date stays within AWS's 15 minutes), `iam` (`--auth sigv4` with enforcement: requests signed
by an IAM user whose one attached policy allows `ecs:Describe*`, so each is authorized by IAM) or
`legacy` (a binary from before `--auth`). `--floor` adds the `hyper_floor` example: Gantry's HTTP
stack (hyper, Tokio, the same settings) answering the same bytes with no front door behind it,
so that what Gantry costs above it is its own work. Each
gantry runs with one worker thread. Per round it prints req/s, p50, p99, the ratio to nginx's
req/s and the server's CPU time per request; then the median over rounds.
"""
import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from common import (release_binary, start_server, AUTH, TARGET, call, rss_kib, cpu_seconds,
                    free_port, root_credentials, signed_headers)


def taskdef(family, i):
    return {"family": family, "containerDefinitions": [{
        "name": "web", "image": f"registry.example.com/web:{i}", "cpu": 256, "memory": 512,
        "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
        "environment": [{"name": "N", "value": str(i)}],
        "logConfiguration": {"logDriver": "json-file", "options": {"max-size": "10m"}}}]}


LUA = """
wrk.method = "POST"
wrk.body = {body}
{headers}
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), summary.errors.status))
end
"""


def lua_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def open_headers(op):
    """The signed-looking headers an open server accepts."""
    return {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": TARGET + op,
            "X-Amz-Date": "20260101T000000Z", "Authorization": AUTH}


def run_wrk(port, op, body, duration, connections, tmp, headers=None):
    """wrk against `port`: (req/s, p50 ms, p99 ms, non-2xx answers). `body` is sent as
    json.dumps gives it (the bytes a signature in `headers` covers)."""
    script = os.path.join(tmp, op + ".lua")
    lines = "\n".join(f"wrk.headers[{lua_str(k)}] = {lua_str(v)}"
                       for k, v in (headers or open_headers(op)).items() if k.lower() != "host")
    with open(script, "w") as f:
        f.write(LUA.format(body=lua_str(json.dumps(body)), headers=lines))
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "-s", script,
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+)", out)
    reqs, dur_us, p50, p99, bad = map(int, m.groups())
    return reqs / (dur_us / 1e6), p50 / 1000.0, p99 / 1000.0, bad


NGINX_CONF = """
worker_processes 1;
master_process off;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    server_tokens off;
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
    client_body_temp_path {tmp}/body;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type application/x-amz-json-1.1;
            add_header x-amzn-RequestId {request_id};
            return 200 '{body}';
        }}
    }}
}}
"""


def start_nginx(body: bytes, request_id: str, tmp):
    """nginx-light, one process serving (master_process off), answering every request with
    `body`: (process, port)."""
    port = free_port()
    text = body.decode()
    if "$" in text:
        raise SystemExit("the response holds '$', which nginx's return would read as a variable")
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(tmp=tmp, port=port, request_id=request_id,
                                  body=text.replace("\\", "\\\\").replace("'", "\\'")))
    proc = subprocess.Popen(["nginx", "-c", conf, "-p", tmp], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    return answering(proc, port, body, "nginx")


def answering(proc, port, body: bytes, name):
    """(proc, port) once the server on `port` answers a request with `body`; it is killed and
    the bench stops if it answers anything else or does not come up within 10 s."""
    end = time.time() + 10
    while time.time() < end:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("POST", "/", "{}")
            got = c.getresponse().read()
            if got != body:
                proc.kill()
                raise SystemExit(f"{name} answers {got!r}, not the gantry response")
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"{name} did not come up")


def start_floor(body: bytes, tmp, env, build):
    """The `hyper_floor` example (Gantry's HTTP stack answering `body` to every request, the
    front door doing nothing), with gantry's worker threads: (process, port)."""
    from common import ROOT
    if build:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "gantry", "--example", "hyper_floor"],
                       cwd=ROOT, check=True)
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    path = os.path.join(target, "release", "examples", "hyper_floor")
    with open(os.path.join(tmp, "floor.json"), "wb") as f:
        f.write(body)
    port = free_port()
    proc = subprocess.Popen([path, str(port), os.path.join(tmp, "floor.json")], env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return answering(proc, port, body, "hyper_floor")


def iam_user(port, root):
    """An IAM user with an access key and one attached policy allowing ecs:Describe* and
    ecs:List*, made with the root key; its key pair."""
    import boto3
    iam = boto3.client("iam", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                       aws_access_key_id=root[0], aws_secret_access_key=root[1])
    iam.create_user(UserName="bench")
    doc = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["ecs:Describe*", "ecs:List*"], "Resource": "*"}]}
    arn = iam.create_policy(PolicyName="bench", PolicyDocument=json.dumps(doc))["Policy"]["Arn"]
    iam.attach_user_policy(UserName="bench", PolicyArn=arn)
    key = iam.create_access_key(UserName="bench")["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def versus_nginx(args):
    op, body = "DescribeClusters", {"clusters": ["bench"]}
    if not args.gantry:
        binary = release_binary(not args.no_build)
        args.gantry = [f"open={binary}:open", f"sigv4={binary}:sigv4", f"iam={binary}:iam"]
    tmp = tempfile.mkdtemp(prefix="gantry-bench-nginx-")
    procs, targets = [], []  # targets: (label, process, port, headers() or None, data dir)
    try:
        env = {"TOKIO_WORKER_THREADS": str(args.workers or 1)}
        response = None
        for spec in args.gantry:
            label, rest = spec.split("=", 1)
            path, mode = rest.rsplit(":", 1)
            if mode not in ("open", "sigv4", "iam", "legacy"):
                raise SystemExit(f"--gantry {spec}: the mode is open, sigv4, iam or legacy")
            auth = {"legacy": None, "iam": "sigv4"}.get(mode, mode)
            server, port, data = start_server(path, extra_env=env, auth=auth)
            procs.append((server, data))
            creds = root_credentials(data) if mode in ("sigv4", "iam") else None
            conn = http.client.HTTPConnection("127.0.0.1", port)
            call(conn, "CreateCluster", {"clusterName": "bench"}, creds)
            if mode == "iam":
                creds = iam_user(port, creds)
            conn.request("POST", "/", json.dumps(body), signed_headers(creds, f"127.0.0.1:{port}", op, json.dumps(body))
                         if creds else open_headers(op))
            r = conn.getresponse()
            got = r.read()
            if r.status != 200:
                raise SystemExit(f"{label}: {op} answered {r.status} {got!r}")
            if response is None:
                response, request_id = got, r.getheader("x-amzn-requestid")
            elif got != response:
                print(f"# note: {label} answers other bytes than the first gantry: {got!r}")
            headers = (lambda creds=creds, port=port: signed_headers(
                creds, f"127.0.0.1:{port}", op, json.dumps(body))) if creds else (lambda: open_headers(op))
            targets.append((label, server, port, headers))
        ngx, ngx_port = start_nginx(response, request_id, tmp)
        procs.append((ngx, None))
        targets.insert(0, ("nginx", ngx, ngx_port, lambda: open_headers(op)))
        if args.floor:
            floor, floor_port = start_floor(response, tmp, env, not args.no_build)
            procs.append((floor, None))
            targets.insert(1, ("hyper floor", floor, floor_port, lambda: open_headers(op)))
        cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                             capture_output=True, text=True).stdout.strip()
        print(f"# DescribeClusters versus nginx, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores "
              f"({cpu}), one server thread each, wrk -t1 -c{args.connections} -d{args.duration}s, "
              f"{args.rounds} interleaved rounds, response {len(response)} bytes")
        print(f"{'round':>5} {'server':<16} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'x nginx':>8} "
              f"{'cpu us/req':>10} {'non-2xx':>7}")
        results = {t[0]: [] for t in targets}
        for rnd in range(args.rounds):
            # Each round starts one further along, so no server always follows the same one.
            order = targets[rnd % len(targets):] + targets[:rnd % len(targets)]
            row = {}
            for label, proc, port, headers in order:
                before = cpu_seconds(proc.pid)
                rps, p50, p99, bad = run_wrk(port, op, body, args.duration, args.connections, tmp, headers())
                used = cpu_seconds(proc.pid) - before
                row[label] = (rps, p50, p99, used / (rps * args.duration) * 1e6, bad)
            for label, *_ in targets:
                rps, p50, p99, us, bad = row[label]
                ratio = rps / row["nginx"][0]
                results[label].append((rps, p50, p99, ratio, us))
                print(f"{rnd + 1:>5} {label:<16} {rps:>9.0f} {p50:>7.2f} {p99:>7.2f} {ratio:>8.2f} {us:>10.1f} {bad:>7}")
        print("median over rounds:")
        for label, *_ in targets:
            cols = list(zip(*results[label]))
            rps, p50, p99, ratio, us = (statistics.median(c) for c in cols)
            print(f"{'':>5} {label:<16} {rps:>9.0f} {p50:>7.2f} {p99:>7.2f} {ratio:>8.2f} {us:>10.1f}")
    finally:
        for p, data in procs:
            p.kill()
            p.wait()
            if data:
                shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--workers", type=int, default=0,
                    help="server worker threads (TOKIO_WORKER_THREADS); default: one per core")
    ap.add_argument("--versus-nginx", action="store_true",
                    help="DescribeClusters against nginx and the --gantry binaries, in interleaved rounds")
    ap.add_argument("--gantry", action="append", default=[], metavar="LABEL=PATH:MODE",
                    help="with --versus-nginx: a server to compare (MODE: open, sigv4, iam or legacy); "
                         "default: this tree's release build, open, sigv4 and iam")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--floor", action="store_true",
                    help="with --versus-nginx: also the hyper_floor example (Gantry's HTTP stack alone)")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    if args.versus_nginx:
        if shutil.which("nginx") is None:
            raise SystemExit("nginx is needed: apt-get install -y nginx-light")
        return versus_nginx(args)
    binary = release_binary(not args.no_build)
    # The server's default auth (sigv4), requests signed for real with its root key.
    server, port, tmp = start_server(
        binary, extra_env={"TOKIO_WORKER_THREADS": str(args.workers)} if args.workers else None,
        auth="sigv4")
    creds = root_credentials(tmp)
    try:
        idle = rss_kib(server.pid)
        conn = http.client.HTTPConnection("127.0.0.1", port)
        call(conn, "CreateCluster", {"clusterName": "bench"}, creds)
        t0 = time.time()
        for f in range(100):
            for i in range(10):
                call(conn, "RegisterTaskDefinition", taskdef(f"family-{f:03d}", i), creds)
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
            headers = signed_headers(creds, f"127.0.0.1:{port}", op, json.dumps(body))
            rps, p50, p99, bad = run_wrk(port, op, body, args.duration, args.connections, tmp, headers)
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
