"""What the benchmark commands share: the repository root, a signed-looking request header (enough
for a server whose auth is open), real SigV4 signatures (botocore) for one whose auth is sigv4,
free ports, a server started on one, resident memory and CPU time, and an ECS JSON 1.1 call over a
kept-alive connection."""
import http.client
import json
import os
import socket
import time

ENV = {**os.environ, "GANTRY_LOG": "warn"}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = "AmazonEC2ContainerServiceV20141113."
AUTH = ("AWS4-HMAC-SHA256 Credential=AKIDBENCH/20260101/us-east-1/ecs/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=0")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    """User plus system CPU time the process has used so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def signed_headers(credentials, host, op, body: str, region="us-east-1"):
    """The headers of an ECS JSON 1.1 request to `host` signed with `credentials` (a pair of
    access key and secret) by botocore, as the AWS SDKs sign it, dated now: the server accepts
    the same bytes for 15 minutes."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    req = AWSRequest(method="POST", url=f"http://{host}/", data=body.encode(), headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": TARGET + op, "Host": host})
    SigV4Auth(Credentials(*credentials), "ecs", region).add_auth(req)
    return {k: v for k, v in req.headers.items()}


def root_credentials(data_dir):
    """The root access key `gantry server` (auth sigv4) wrote to DATA_DIR/root-credentials."""
    import configparser
    c = configparser.ConfigParser()
    c.read(os.path.join(data_dir, "root-credentials"))
    return c["default"]["aws_access_key_id"], c["default"]["aws_secret_access_key"]


def call(conn: http.client.HTTPConnection, op, body, credentials=None):
    """One ECS operation, signed for real when `credentials` are given (else with the fake
    header an open server accepts); exits the benchmark on an error answer."""
    data = json.dumps(body)
    if credentials:
        headers = signed_headers(credentials, f"{conn.host}:{conn.port}", op, data)
    else:
        headers = {"X-Amz-Target": TARGET + op, "Content-Type": "application/x-amz-json-1.1",
                   "Authorization": AUTH, "X-Amz-Date": "20260101T000000Z"}
    conn.request("POST", "/", data, headers)
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise SystemExit(f"{op} failed: {r.status} {data!r}")
    return json.loads(data)


def release_binary(build: bool) -> str:
    """The release `gantry` binary, built first unless told not to (`GANTRY_BIN` overrides)."""
    import subprocess
    if os.environ.get("GANTRY_BIN"):
        return os.environ["GANTRY_BIN"]
    if build:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "gantry"], cwd=ROOT, check=True)
    return os.path.join(os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"), "release/gantry")


def wait_healthy(port: int, timeout: float = 10):
    """Waits until the server on `port` answers its health check."""
    import time
    end = time.time() + timeout
    while time.time() < end:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/_gantry/health")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"the server on port {port} did not come up")


def start_server(binary: str, command: str = "server", extra_env=None, auth="open", extra_args=()):
    """Starts `gantry server` (or `up`) on a free port with a fresh data directory and waits
    until it answers: (process, port, data directory). `auth` is the server's `--auth` mode
    (`open` unless told: the benchmarks send a signed-looking header; `sigv4` for real
    signatures, see `root_credentials`), or None for a binary from before the flag; `extra_args`
    are added to the command line."""
    import shutil
    import subprocess
    import tempfile
    tmp = tempfile.mkdtemp(prefix="gantry-bench-")
    port = free_port()
    flags = ["--auth", auth] if auth else []
    proc = subprocess.Popen([binary, command, "--listen", f"127.0.0.1:{port}", "--data-dir", tmp, *flags, *extra_args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**ENV, **(extra_env or {})})
    try:
        wait_healthy(port)
    except BaseException:
        proc.kill()
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return proc, port, tmp


class Api:
    """ECS operations over one kept-alive connection: api("RunTask", {...})."""

    def __init__(self, port, credentials=None):
        self.conn = http.client.HTTPConnection("127.0.0.1", port)
        self.credentials = credentials

    def __call__(self, op, body):
        return call(self.conn, op, body, self.credentials)


def wait_for(pred, timeout=60):
    """Polls `pred` every 50 ms until it returns something truthy (returned), or exits."""
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise SystemExit("timed out")


def pct(xs, p):
    """The p-th percentile of xs (nearest rank)."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def teardown(procs, tmp, label):
    """Kills the benchmark's processes, removes the containers carrying `label` and its data."""
    import shutil
    import subprocess
    for p in procs:
        p.kill()
        p.wait()
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={label}"], capture_output=True,
                         text=True).stdout.split()
    # `gantry up`'s awsvpc namespace holders (ready ones, and tasks' taken from them) carry its
    # Fargate node's label, not the benchmark's.
    try:
        with open(os.path.join(tmp, "fargate", "fargate-node-id")) as f:
            node = f.read().strip()
    except OSError:
        node = ""
    if node:
        ids += subprocess.run(["docker", "ps", "-aq", "--filter", f"label=gantry.holder-pool=fargate:{node}"],
                              capture_output=True, text=True).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], stdout=subprocess.DEVNULL)
    shutil.rmtree(tmp, ignore_errors=True)
