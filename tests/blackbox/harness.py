"""Start the real `gantry` binary and talk to it the way users do.

Everything here is client-side: the server is a black box reached over loopback with the
unmodified AWS CLI v1, boto3, or raw HTTP (for requests no SDK would send).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

REPO = Path(__file__).resolve().parents[2]
TARGET_PREFIX = "AmazonEC2ContainerServiceV20141113"
DEFAULT_ACCOUNT = "000000000000"
DEFAULT_REGION = "us-east-1"


def gantry_bin() -> Path:
    return Path(os.environ.get("GANTRY_BIN", REPO / "target" / "debug" / "gantry"))


def aws_cli() -> str:
    """The AWS CLI v1 of this interpreter's venv, else the one on PATH."""
    beside = Path(sys.executable).parent / "aws"
    if beside.exists():
        return str(beside)
    found = shutil.which("aws")
    if not found:
        raise RuntimeError("the AWS CLI v1 (`aws`) is neither in this venv nor on PATH")
    return found


def remove_ready_holders(data_dir: Path):
    """`gantry up` keeps awsvpc namespace holders ready (labelled `gantry.holder-pool` with its
    Fargate node) and removes them when it stops; a killed one (its data directory `data_dir`)
    leaves them behind: they go here."""
    try:
        node = (Path(data_dir) / "fargate" / "fargate-node-id").read_text().strip()
    except OSError:
        return
    if node and not docker_unavailable():
        ids = docker_ids({"gantry.holder-pool": f"fargate:{node}"})
        free = [c["Id"] for c in docker_inspect(ids)
                if c.get("Name", "").lstrip("/").startswith("ecs-internalecspause-pool-")]
        if free:
            docker("rm", "-f", *free, check=False, timeout=120)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, interval: float = 0.02, what: str = "condition"):
    """Poll `predicate` until it returns a truthy value; no fixed sleeps in tests."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class RawResponse:
    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    @property
    def error_type(self):
        """`__type` as botocore reads it (namespace before '#' and suffix after ':' dropped)."""
        t = self.json().get("__type")
        if t is None:
            return None
        return t.split(":")[0].rsplit("#", 1)[-1]

    def __repr__(self):
        return f"<RawResponse {self.status} {self.body[:300]!r}>"


class GantryServer:
    """One `gantry` process on a free loopback port with its own data dir."""

    def __init__(self, data_dir: Path, log_path: Path, *, command: str = "server",
                 enable_reset: bool = True, extra_args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None, cli_home: Path | None = None,
                 auth: str | None = "open", host: str = "127.0.0.1", binary: Path | None = None):
        self.data_dir = Path(data_dir)
        # The address it listens on (a test network's bridge address for agents in namespaces).
        self.host = host
        # The executable to run (default: gantry_bin()).
        self.binary = binary
        # `gantry server` checks signatures against known keys by default; the suite's servers
        # accept any (`--auth open`) unless a test asks for the default (auth=None).
        self.auth = auth
        self.log_path = Path(log_path)
        self.command = command
        self.enable_reset = enable_reset
        self.extra_args = tuple(extra_args)
        self.extra_env = dict(env or {})
        self.cli_home = Path(cli_home or self.data_dir.parent / (self.data_dir.name + "-cli"))
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self._log = None
        self._clients: dict[str, object] = {}
        self.log_mark = 0  # panics() looks at the log after this offset

    # ---- lifecycle -------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0, port: int | None = None) -> "GantryServer":
        binary = Path(self.binary or gantry_bin())
        if not binary.exists():
            raise RuntimeError(f"gantry binary not found at {binary}; run `cargo build -p gantry` "
                               "(or set GANTRY_BIN)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        last_error = None
        # A free port can be taken between probing and binding; try a few.
        for _ in range(3):
            self.port = port or free_port()
            args = [str(binary), self.command, "--listen", f"{self.host}:{self.port}",
                    "--data-dir", str(self.data_dir), *self.extra_args]
            if self.enable_reset and self.command == "server":
                args.append("--enable-reset")
            if self.auth and self.command == "server":
                args += ["--auth", self.auth]
            env = {k: v for k, v in os.environ.items() if not k.startswith("GANTRY_")}
            env.setdefault("RUST_BACKTRACE", "1")
            if self.command == "up":
                # `gantry up` writes the AWS CLI profile `gantry`: into this server's CLI home,
                # never the user's ~/.aws.
                self.cli_home.mkdir(parents=True, exist_ok=True)
                env["AWS_CONFIG_FILE"] = str(self.cli_home / "config")
                env["AWS_SHARED_CREDENTIALS_FILE"] = str(self.cli_home / "credentials")
            env.update(self.extra_env)
            self._log = open(self.log_path, "ab")
            self._log.write(f"\n===== {' '.join(args)}\n".encode())
            self._log.flush()
            self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env)
            try:
                wait_for(self._ready_or_dead, timeout, what=f"{self.endpoint}/_gantry/health")
            except TimeoutError as e:
                self.kill()
                raise RuntimeError(f"gantry did not become healthy: {e}\n{self.log_tail()}")
            if self.proc.poll() is None:
                self._clients.clear()
                return self
            last_error = f"gantry exited with {self.proc.returncode}\n{self.log_tail()}"
            self._close_log()
            if port:
                break
        raise RuntimeError(last_error)

    def _ready_or_dead(self) -> bool:
        if self.proc.poll() is not None:
            return True
        try:
            return self.http("GET", "/_gantry/health", timeout=1).status == 200
        except OSError:
            return False

    def kill(self):
        """SIGKILL: no chance to flush anything."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        self._close_log()
        self.remove_ready_holders()

    def remove_ready_holders(self):
        if self.command != "up" or (self.proc and self.proc.poll() is None):
            return
        remove_ready_holders(self.data_dir)

    def stop(self, timeout: float = 15.0):
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._close_log()
        self.remove_ready_holders()

    def _close_log(self):
        if self._log:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 40) -> str:
        lines = self.log_text().splitlines()[-n:]
        return f"--- last {len(lines)} lines of {self.log_path} ---\n" + "\n".join(lines)

    def mark_log(self):
        self.log_mark = len(self.log_text())

    def panics(self) -> list[str]:
        """Distinct Rust panic messages logged since mark_log() ("FILE:LINE: MESSAGE")."""
        lines = self.log_text()[self.log_mark:].splitlines()
        found = []
        for i, line in enumerate(lines):
            if "panicked at" in line:
                text = line.split("panicked at", 1)[1].strip()
                if i + 1 < len(lines):
                    text += " " + lines[i + 1].strip()
                if text not in found:
                    found.append(text)
        return found

    def reset(self):
        r = self.http("POST", "/_gantry/reset")
        assert r.status == 200, f"reset failed: {r}"

    # ---- clients ---------------------------------------------------------------------------

    def client(self, region: str = DEFAULT_REGION, *, max_attempts: int = 1,
               read_timeout: float = 30, connect_timeout: float = 5):
        key = f"{region}/{max_attempts}/{read_timeout}/{connect_timeout}"
        if key not in self._clients:
            session = boto3.session.Session(aws_access_key_id="test",
                                            aws_secret_access_key="test",
                                            region_name=region)
            self._clients[key] = session.client(
                "ecs", endpoint_url=self.endpoint,
                config=Config(retries={"max_attempts": max_attempts, "mode": "standard"},
                              read_timeout=read_timeout, connect_timeout=connect_timeout))
        return self._clients[key]

    @property
    def ecs(self):
        return self.client()

    def cli_env(self, region: str = DEFAULT_REGION) -> dict[str, str]:
        self.cli_home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("AWS_") and not k.startswith("GANTRY_")}
        env.update({
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": region,
            # Keep the user's ~/.aws out of it.
            "AWS_CONFIG_FILE": str(self.cli_home / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.cli_home / "credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
        })
        # The CLI keeps its default retry settings: they do not touch 4xx errors, and changing
        # them would change its error text ("... (reached max retries: 0): ...").
        return env

    def aws(self, *args: str, region: str | None = None, timeout: float = 120):
        """Run the AWS CLI v1: (exit code, parsed JSON stdout) or (exit code, stderr)."""
        cmd = [aws_cli(), *args, "--output", "json"]
        env = self.cli_env(region or DEFAULT_REGION)
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if p.returncode == 0:
            out = p.stdout.strip()
            return 0, (json.loads(out) if out else {})
        return p.returncode, p.stderr

    def aws_ok(self, *args: str, region: str | None = None):
        rc, out = self.aws(*args, region=region)
        assert rc == 0, f"aws {' '.join(args)} failed ({rc}): {out}"
        return out

    # ---- raw HTTP --------------------------------------------------------------------------

    def http(self, method: str, path: str, body: bytes = b"", headers: dict | None = None,
             timeout: float = 30) -> RawResponse:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return RawResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        finally:
            conn.close()

    def raw(self, operation: str | None, body, *, region: str = DEFAULT_REGION, sign: bool = True,
            headers: dict | None = None, target: str | None = None) -> RawResponse:
        """POST / with an ECS target; `body` may be a dict (JSON-encoded) or raw bytes/str."""
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = body
        h = {"Content-Type": "application/x-amz-json-1.1"}
        if target is not None:
            h["X-Amz-Target"] = target
        elif operation is not None:
            h["X-Amz-Target"] = f"{TARGET_PREFIX}.{operation}"
        if sign:
            req = AWSRequest(method="POST", url=self.endpoint + "/", data=data, headers=h)
            SigV4Auth(Credentials("test", "test"), "ecs", region).add_auth(req)
            h = dict(req.headers.items())
        h.update(headers or {})
        return self.http("POST", "/", data, h)


# ---- assertion helpers -------------------------------------------------------------------------

def expect_error(fn, code: str | tuple[str, ...], message: str | None = None, *,
                 contains: str | None = None, status: int = 400):
    """Call `fn`; it must raise a ClientError with this code (and message), never a 5xx."""
    try:
        result = fn()
    except ClientError as e:
        err = e.response["Error"]
        got_status = e.response["ResponseMetadata"]["HTTPStatusCode"]
        codes = (code,) if isinstance(code, str) else code
        assert err["Code"] in codes, f"expected {codes}, got {err} (HTTP {got_status})"
        assert got_status == status, f"expected HTTP {status}, got {got_status}: {err}"
        if message is not None:
            assert err.get("Message") == message, f"message {err.get('Message')!r} != {message!r}"
        if contains is not None:
            assert contains in (err.get("Message") or ""), \
                f"message {err.get('Message')!r} does not mention {contains!r}"
        return err
    raise AssertionError(f"expected {code}, but the call succeeded: {result}")


def assert_subset(sent, got, path: str = "$"):
    """Every value that was sent comes back unchanged (the server may add computed fields)."""
    if isinstance(sent, dict):
        assert isinstance(got, dict), f"{path}: expected an object, got {got!r}"
        for k, v in sent.items():
            assert k in got, f"{path}.{k} missing from response (sent {v!r})"
            assert_subset(v, got[k], f"{path}.{k}")
    elif isinstance(sent, list):
        assert isinstance(got, list), f"{path}: expected a list, got {got!r}"
        assert len(sent) == len(got), f"{path}: sent {len(sent)} items, got {len(got)}: {got!r}"
        for i, (a, b) in enumerate(zip(sent, got)):
            assert_subset(a, b, f"{path}[{i}]")
    else:
        assert type(sent) is type(got) and sent == got, f"{path}: sent {sent!r}, got {got!r}"


def arn(kind: str, name: str, region: str = DEFAULT_REGION, account: str = DEFAULT_ACCOUNT) -> str:
    return f"arn:aws:ecs:{region}:{account}:{kind}/{name}"


def tags_dict(tags) -> dict:
    return {t["key"]: t["value"] for t in tags or []}


CPU_MEM = [
    {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
    {"name": "MEMORY", "type": "INTEGER", "integerValue": 4096},
]


def register_instance(ecs, cluster: str, **kw) -> dict:
    return ecs.register_container_instance(cluster=cluster, totalResources=CPU_MEM,
                                           **kw)["containerInstance"]


def simple_container(name: str = "app", **kw) -> dict:
    c = {"name": name, "image": "public.ecr.aws/docker/library/busybox:1.36", "memory": 128}
    c.update(kw)
    return c


# ---- real Docker: agents, container instances and tasks ----------------------------------------
#
# Tests that run tasks in Docker start their own `gantry server` (no resets: an agent's container
# instance must outlive every test) and `gantry agent` processes. Every task definition they
# register labels its containers `gantry.test-run=<run id>`, so that the session removes exactly
# the containers it created, even on a Docker daemon shared with other test runs.

TEST_IMAGE = "gantry-test/busybox:latest"
RUN_LABEL = "gantry.test-run"
EPHEMERAL_PORTS = range(49153, 65536)   # ECS's dynamic host port range
IMAGE_BUILD_SCRIPT = REPO / "tests" / "images" / "build.sh"


def docker(*args: str, check: bool = True, timeout: float = 60) -> str:
    """Run the docker CLI; its stdout."""
    p = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


def docker_unavailable() -> str | None:
    """Why Docker cannot be used here, or None when it can."""
    if not shutil.which("docker"):
        return "the docker CLI is not installed"
    try:
        p = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                           capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "the Docker daemon does not answer"
    if p.returncode != 0:
        return f"cannot reach the Docker daemon: {p.stderr.strip()}"
    return None


def docker_ids(labels: dict[str, str], stopped: bool = True) -> list[str]:
    """IDs of the containers carrying all these labels (with stopped=False, running ones only)."""
    args = ["ps", "-q", "--no-trunc"] + (["-a"] if stopped else [])
    for k, v in labels.items():
        args += ["--filter", f"label={k}={v}"]
    return docker(*args).split()


def docker_inspect(ids: list[str]) -> list[dict]:
    """`docker inspect` of these containers ([] for none; a container removed meanwhile is
    left out)."""
    if not ids:
        return []
    p = subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, timeout=60)
    out = p.stdout.strip()
    return json.loads(out) if out else []


def task_containers(task_arn: str, stopped: bool = True) -> dict[str, dict]:
    """The Docker containers of one task, by `gantry.container-name`, as `docker inspect` shows
    them. Fails if two containers claim the same name (a duplicate)."""
    found: dict[str, dict] = {}
    for c in docker_inspect(docker_ids({"gantry.task-arn": task_arn}, stopped=stopped)):
        name = c["Config"]["Labels"].get("gantry.container-name")
        assert name not in found, \
            f"two Docker containers for {name!r} of {task_arn}: {found[name]['Id']} and {c['Id']}"
        found[name] = c
    return found


def remove_labelled_containers(run_id: str):
    ids = docker_ids({RUN_LABEL: run_id})
    if ids:
        # An awsvpc task's namespace holder taken from `gantry up`'s ready pool does not carry
        # the task's labels: it is named after the task.
        tasks = {c["Config"]["Labels"].get("gantry.task-arn", "").rsplit("/", 1)[-1]
                 for c in docker_inspect(ids)}
        holders = [f"ecs-internalecspause-{t}" for t in sorted(tasks) if t]
        docker("rm", "-f", *ids, *holders, check=False, timeout=120)


def busybox_container(name: str, run_id: str, **kw) -> dict:
    """A container definition on the local test image: small, quick to stop (busybox as PID 1
    ignores SIGTERM, hence stopTimeout 2), labelled for this test run's cleanup."""
    c = {"name": name, "image": TEST_IMAGE, "memory": 32, "stopTimeout": 2,
         "command": ["sleep", "600"]}
    c.update(kw)
    c = {k: v for k, v in c.items() if v is not None}   # memory=None: no hard limit
    labels = dict(c.get("dockerLabels") or {})
    labels[RUN_LABEL] = run_id
    c["dockerLabels"] = labels
    return c


def resource_value(resources: list[dict], name: str):
    for r in resources:
        if r["name"] == name:
            return r.get("integerValue") if r["type"] == "INTEGER" else r
    raise KeyError(f"no {name} in {resources}")


class GantryAgent:
    """One `gantry agent` process joined to a cluster of a GantryServer, with its own data dir.

    It is found among the cluster's container instances by a custom attribute
    (`gantry.test-agent=<tag>`) unique to it, so nothing depends on how it stores its identity.
    """

    log_text = GantryServer.log_text
    log_tail = GantryServer.log_tail
    mark_log = GantryServer.mark_log
    panics = GantryServer.panics
    _close_log = GantryServer._close_log

    def __init__(self, server: GantryServer, cluster: str, data_dir: Path, log_path: Path, *,
                 extra_args: tuple[str, ...] = (), env: dict[str, str] | None = None,
                 prefix: tuple[str, ...] = (), binary: Path | None = None):
        self.server = server
        # A command it runs under, e.g. `nsenter --net=...` to run it on a host of hosts.py.
        self.prefix = tuple(prefix)
        # The executable to run (default: gantry_bin()).
        self.binary = binary
        # Extra environment, e.g. the key it signs with (AWS_ACCESS_KEY_ID, ...) under sigv4.
        self.extra_env = dict(env or {})
        self.cluster = cluster
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path)
        self.extra_args = tuple(extra_args)
        self.tag = os.urandom(6).hex()
        self.proc: subprocess.Popen | None = None
        self._log = None
        self.log_mark = 0
        self.instance_arn: str | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30.0, wait_connected: bool = True) -> "GantryAgent":
        """Start the agent; with wait_connected, until its container instance is ACTIVE with
        agentConnected true (sets instance_arn)."""
        binary = Path(self.binary or gantry_bin())
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [*self.prefix, str(binary), "agent", "--server", self.server.endpoint,
                "--cluster", self.cluster, "--data-dir", str(self.data_dir),
                "--attribute", f"gantry.test-agent={self.tag}", *self.extra_args]
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("GANTRY_") and not k.startswith("AWS_")}
        env.setdefault("RUST_BACKTRACE", "1")
        env["NO_COLOR"] = "1"
        env.update(self.extra_env)
        self._log = open(self.log_path, "ab")
        self._log.write(f"\n===== {' '.join(args)}\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env)
        if wait_connected:
            def connected():
                if not self.alive:
                    raise RuntimeError(f"gantry agent exited with {self.proc.returncode}\n"
                                       f"{self.log_tail()}")
                return [ci for ci in self.instances() if ci.get("agentConnected")]
            try:
                found = wait_for(connected, timeout, interval=0.1,
                                 what=f"the agent's container instance in {self.cluster}")
            except TimeoutError as e:
                raise RuntimeError(f"{e}\n{self.log_tail()}\n{self.server.log_tail()}")
            assert len(found) == 1, f"several instances for one agent: {found}"
            self.instance_arn = found[0]["containerInstanceArn"]
        return self

    def instances(self) -> list[dict]:
        """The cluster's ACTIVE/DRAINING container instances that this agent registered."""
        ecs = self.server.ecs
        arns = []
        for page in ecs.get_paginator("list_container_instances").paginate(cluster=self.cluster):
            arns += page["containerInstanceArns"]
        found = []
        for i in range(0, len(arns), 100):
            out = ecs.describe_container_instances(cluster=self.cluster,
                                                   containerInstances=arns[i:i + 100])
            for ci in out["containerInstances"]:
                attrs = {a["name"]: a.get("value") for a in ci.get("attributes", [])}
                if attrs.get("gantry.test-agent") == self.tag:
                    found.append(ci)
        return found

    def describe(self) -> dict:
        [ci] = self.server.ecs.describe_container_instances(
            cluster=self.cluster, containerInstances=[self.instance_arn])["containerInstances"]
        return ci

    def kill(self):
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        self._close_log()

    def stop(self, timeout: float = 15.0):
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._close_log()


class DockerCluster:
    """A cluster on a Gantry server, the agents joined to it, and task helpers that remember
    the tasks they started (forget_tasks() stops those still wanted)."""

    def __init__(self, server: GantryServer, cluster: str, run_id: str):
        self.server = server
        self.cluster = cluster
        self.run_id = run_id
        self.agents: list[GantryAgent] = []
        self.started: list[str] = []

    @property
    def ecs(self):
        return self.server.ecs

    @property
    def agent(self) -> GantryAgent:
        return self.agents[0]

    def aws(self, *args, **kw):
        return self.server.aws(*args, **kw)

    def aws_ok(self, *args, **kw):
        return self.server.aws_ok(*args, **kw)

    def aws_wait(self, waiter: str, task_arn: str, timeout: float = 45):
        """`aws ecs wait WAITER` (tasks-running, tasks-stopped) on one task, bounded in time
        (the CLI's own bound is 10 minutes): (exit code, stderr). A timeout fails the test
        with the task's last state."""
        try:
            return self.aws("ecs", "wait", waiter, "--cluster", self.cluster,
                            "--tasks", task_arn, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"aws ecs wait {waiter} still waiting after {timeout}s; "
                                 f"the task: {self.summary(self.describe(task_arn))}") from None

    def container(self, name: str, **kw) -> dict:
        return busybox_container(name, self.run_id, **kw)

    def register(self, family: str, containers: list[dict], **kw) -> str:
        """Register a task definition; its ARN."""
        td = self.ecs.register_task_definition(family=family, containerDefinitions=containers,
                                               **kw)["taskDefinition"]
        return td["taskDefinitionArn"]

    def run(self, task_definition: str, **kw) -> dict:
        """RunTask (EC2) that must place its task: the task as RunTask returned it."""
        out = self.ecs.run_task(cluster=self.cluster, taskDefinition=task_definition, **kw)
        assert out["failures"] == [] and len(out["tasks"]) >= 1, f"run-task: {out}"
        self.started += [t["taskArn"] for t in out["tasks"]]
        return out["tasks"][0]

    def describe(self, task_arn: str) -> dict:
        out = self.ecs.describe_tasks(cluster=self.cluster, tasks=[task_arn])
        assert out["failures"] == [] and len(out["tasks"]) == 1, f"describe-tasks: {out}"
        return out["tasks"][0]

    def wait_task(self, task_arn: str, predicate, timeout: float = 30, what: str = "") -> dict:
        """Poll DescribeTasks until predicate(task) holds; the task. Gives up at once when the
        task is STOPPED without the predicate holding; failures show the task's last state."""
        last = {}

        def check():
            t = last["task"] = self.describe(task_arn)
            if predicate(t):
                return t
            if t["lastStatus"] == "STOPPED":
                raise AssertionError(f"the task STOPPED while waiting for {what or 'it'}: "
                                     f"{self.summary(t)}")
            return None
        try:
            return wait_for(check, timeout, interval=0.2, what=what or "the task")
        except TimeoutError as e:
            raise AssertionError(f"{e}; last seen: {self.summary(last.get('task', {}))}") \
                from None

    @staticmethod
    def summary(t: dict) -> str:
        s = {k: t.get(k) for k in ("lastStatus", "desiredStatus", "healthStatus", "stopCode",
                                   "stoppedReason")}
        s["containers"] = [{k: c.get(k) for k in ("name", "lastStatus", "exitCode", "reason",
                                                   "healthStatus", "runtimeId")}
                           for c in t.get("containers", [])]
        return json.dumps(s)

    def wait_status(self, task_arn: str, status: str, timeout: float = 30) -> dict:
        return self.wait_task(task_arn, lambda t: t["lastStatus"] == status, timeout,
                              what=f"lastStatus {status}")

    def forget_tasks(self):
        """Stop the tasks this helper started that are still wanted (no waiting)."""
        for task_arn in self.started:
            try:
                self.ecs.stop_task(cluster=self.cluster, task=task_arn, reason="test cleanup")
            except Exception:
                pass
        self.started = []

    def failure_sections(self) -> list[tuple[str, str]]:
        """Log tails and panics of the server and agents, for a failed test's report."""
        sections = []
        for name, proc in [("server", self.server)] + [
                (f"agent {i} ({a.cluster})", a) for i, a in enumerate(self.agents)]:
            panics = proc.panics()
            if panics:
                sections.append((f"gantry {name} panics", "\n".join(panics)))
            sections.append((f"gantry {name} log", proc.log_tail(30)))
        return sections
