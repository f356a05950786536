"""Fixtures for the black-box suite: one real `gantry server --enable-reset` per session.

The binary is not built here (scripts/test.sh does that); `GANTRY_BIN` overrides its path.
State is wiped through `POST /_gantry/reset` before every test, and names are still unique
per test so that a failed reset cannot make tests depend on each other.
"""

from __future__ import annotations

import subprocess
import uuid

import pytest

from harness import GantryServer, aws_cli


@pytest.fixture(scope="session")
def gantry_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("gantry")
    server = GantryServer(base / "data", base / "server.log")
    version = subprocess.run([aws_cli(), "--version"], capture_output=True, text=True)
    if not (version.stdout + version.stderr).startswith("aws-cli/1."):
        pytest.fail(f"the suite needs the AWS CLI v1, found {aws_cli()}: "
                    f"{version.stdout}{version.stderr}", pytrace=False)
    try:
        server.start()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def gantry(gantry_server):
    """The session's server, reset to an empty state for this test."""
    assert gantry_server.proc.poll() is None, \
        f"gantry died earlier in the session\n{gantry_server.log_tail()}"
    gantry_server.reset()
    gantry_server.mark_log()
    return gantry_server


@pytest.fixture
def ecs(gantry):
    """boto3 ECS client for us-east-1 (no retries, so a 5xx fails at once)."""
    return gantry.ecs


@pytest.fixture
def unique(request):
    """unique("cl") -> "cl-<test>-<random>", a valid ECS name unique to this test."""
    test = "".join(c if c.isascii() and c.isalnum() else "-" for c in request.node.name)
    test = test[:40].strip("-")

    def make(prefix: str) -> str:
        return f"{prefix}-{test}-{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture
def spawn_server(tmp_path):
    """Start extra servers (own data dir and port); all are killed after the test."""
    servers: list[GantryServer] = []

    def start(name: str = "extra", **kw) -> GantryServer:
        s = GantryServer(tmp_path / f"{name}-data", tmp_path / f"{name}.log", **kw)
        servers.append(s)
        s.start()
        return s

    yield start
    for s in servers:
        s.kill()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, show any Rust panic the session server logged during the test."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        server = item.funcargs.get("gantry")
        if server is not None:
            panics = server.panics()
            if panics:
                report.sections.append(("gantry panics", "\n".join(panics)))
