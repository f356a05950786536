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
                 env: dict[str, str] | None = None, cli_home: Path | None = None):
        self.data_dir = Path(data_dir)
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
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0, port: int | None = None) -> "GantryServer":
        binary = gantry_bin()
        if not binary.exists():
            raise RuntimeError(f"gantry binary not found at {binary}; run `cargo build -p gantry` "
                               "(or set GANTRY_BIN)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        last_error = None
        # A free port can be taken between probing and binding; try a few.
        for _ in range(3):
            self.port = port or free_port()
            args = [str(binary), self.command, "--listen", f"127.0.0.1:{self.port}",
                    "--data-dir", str(self.data_dir), *self.extra_args]
            if self.enable_reset and self.command == "server":
                args.append("--enable-reset")
            env = {k: v for k, v in os.environ.items() if not k.startswith("GANTRY_")}
            env.setdefault("RUST_BACKTRACE", "1")
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
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
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
