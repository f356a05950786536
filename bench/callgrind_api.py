#!/usr/bin/env python3
"""Instructions per DescribeClusters, counted by callgrind:
`python3 bench/callgrind_api.py BINARY [--auth open|sigv4|iam] [--requests 2000]`.

Starts BINARY (`gantry server`, one worker thread) under `valgrind --tool=callgrind`, creates a
cluster, sends 200 DescribeClusters to warm up, zeroes the counters (`callgrind_control -z`),
sends `--requests` more on the same kept-alive connection and prints the instructions counted
divided by the requests. Deterministic, unlike the wall clock on a loaded machine. sigv4 needs
botocore (e.g. the black-box suite's venv); the requests are signed once. `iam` is sigv4 with the
requests signed by an IAM user whose one attached policy allows ecs:Describe* and ecs:List*
(so each request is authorized by IAM's policy evaluation); it needs boto3.
"""
import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import ENV, call, free_port, root_credentials, signed_headers  # noqa: E402
from api import iam_user, open_headers  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--auth", default="open", choices=["open", "sigv4", "iam"])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--out", help="keep the callgrind output here")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="gantry-callgrind-")
    out = args.out or os.path.join(tmp, "callgrind.out")
    port = free_port()
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", args.binary, "server",
         "--listen", f"127.0.0.1:{port}", "--data-dir", os.path.join(tmp, "data"), "--auth", "sigv4" if args.auth == "iam" else args.auth],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**ENV, "TOKIO_WORKER_THREADS": "1"})
    try:
        deadline = time.time() + 120
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/_gantry/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise SystemExit("the server did not start")
            time.sleep(0.5)
        creds = root_credentials(os.path.join(tmp, "data")) if args.auth != "open" else None
        conn = http.client.HTTPConnection("127.0.0.1", port)
        call(conn, "CreateCluster", {"clusterName": "bench"}, creds)
        if args.auth == "iam":
            creds = iam_user(port, creds)
        op, body = "DescribeClusters", json.dumps({"clusters": ["bench"]})
        headers = signed_headers(creds, f"127.0.0.1:{port}", op, body) if creds else open_headers(op)

        def send(n):
            for _ in range(n):
                conn.request("POST", "/", body, headers)
                r = conn.getresponse()
                got = r.read()
                if r.status != 200:
                    raise SystemExit(f"{op} answered {r.status} {got!r}")

        send(200)
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
        send(args.requests)
        st = subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True, text=True)
        time.sleep(1)
        dumps = sorted(f for f in os.listdir(os.path.dirname(out)) if os.path.basename(f).startswith(os.path.basename(out)) and f != os.path.basename(out))
        total = None
        for f in dumps:
            for line in open(os.path.join(os.path.dirname(out), f)):
                m = re.match(r"(?:summary|totals): (\d+)", line)
                if m:
                    total = int(m.group(1))
        if total is None:
            raise SystemExit(f"no dump found: {st.stdout} {dumps}")
        print(f"{args.binary} --auth {args.auth}: {total / args.requests:,.0f} instructions/request "
              f"({total:,} over {args.requests})")
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
