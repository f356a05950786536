"""Fixtures for the black-box suite: one real `gantry server --enable-reset` per session (with
pytest-xdist, per worker: every session fixture here is a worker's own).

The binary is not built here (scripts/test.sh does that); `GANTRY_BIN` overrides its path.
State is wiped through `POST /_gantry/reset` before every test, and names are still unique
per test so that a failed reset cannot make tests depend on each other.
"""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from harness import (IMAGE_BUILD_SCRIPT, DockerCluster, GantryAgent, GantryServer, aws_cli,
                     docker_unavailable, remove_labelled_containers)


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


# ---- real Docker ------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def docker_run_id(tmp_path_factory):
    """A label value unique to this session: every test task definition puts it on its
    containers as `gantry.test-run`, and all containers carrying it are removed at the end.
    Skips when there is no Docker daemon; builds the local test image (no registry needed)."""
    why = docker_unavailable()
    if why:
        # The README's test command (scripts/test.sh) requires Docker: there a missing daemon
        # fails the run instead of quietly skipping what it cannot test.
        if os.environ.get("GANTRY_REQUIRE_DOCKER") == "1":
            pytest.fail(f"real-Docker tests need Docker: {why}", pytrace=False)
        pytest.skip(f"real-Docker tests need Docker: {why}")
    build = subprocess.run([str(IMAGE_BUILD_SCRIPT)], capture_output=True, text=True,
                           timeout=600)
    if build.returncode != 0:
        pytest.fail(f"{IMAGE_BUILD_SCRIPT} failed: {build.stderr}", pytrace=False)
    run_id = f"bb-{uuid.uuid4().hex[:12]}"
    yield run_id
    remove_labelled_containers(run_id)


@pytest.fixture(scope="session")
def docker_server(tmp_path_factory, docker_run_id):
    """A `gantry server` of its own for the real-Docker tests, never reset (agents' container
    instances must outlive every test)."""
    base = tmp_path_factory.mktemp("gantry-docker")
    server = GantryServer(base / "data", base / "server.log", enable_reset=False)
    try:
        server.start()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def docker_cluster(docker_server, docker_run_id, tmp_path_factory):
    """A cluster with one `gantry agent` (this host as an EC2 container instance)."""
    base = tmp_path_factory.mktemp("agent")
    cluster = DockerCluster(docker_server, f"docker-{docker_run_id}", docker_run_id)
    docker_server.ecs.create_cluster(clusterName=cluster.cluster)
    agent = GantryAgent(docker_server, cluster.cluster, base / "data", base / "agent.log")
    cluster.agents.append(agent)
    try:
        agent.start()
    except RuntimeError as e:
        agent.kill()
        pytest.fail(str(e), pytrace=False)
    yield cluster
    agent.kill()


@pytest.fixture
def node(docker_cluster):
    """The session's Docker cluster and agent; tasks the test started through it are stopped
    afterwards."""
    for agent in docker_cluster.agents:
        assert agent.alive, f"the session's agent died earlier\n{agent.log_tail()}"
    docker_cluster.server.mark_log()
    yield docker_cluster
    docker_cluster.forget_tasks()


@pytest.fixture
def spawn_agent(docker_server, docker_run_id, tmp_path):
    """spawn_agent() -> a DockerCluster with a new cluster and its own running agent, for tests
    that kill or restart agents. Its agents are killed after the test (their containers go at
    the end of the session)."""
    clusters: list[DockerCluster] = []

    def start(name: str = "own", **agent_kw) -> DockerCluster:
        n = len(clusters)
        cluster = DockerCluster(docker_server, f"{name}-{n}-{uuid.uuid4().hex[:8]}",
                                docker_run_id)
        docker_server.ecs.create_cluster(clusterName=cluster.cluster)
        agent = GantryAgent(docker_server, cluster.cluster, tmp_path / f"agent-{n}",
                            tmp_path / f"agent-{n}.log", **agent_kw)
        cluster.agents.append(agent)
        clusters.append(cluster)
        agent.start()
        return cluster

    start.clusters = clusters
    yield start
    for cluster in clusters:
        cluster.forget_tasks()
        for agent in cluster.agents:
            agent.kill()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, show any Rust panic the session server logged during the test, and for
    real-Docker tests the server's and agents' log tails."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        server = item.funcargs.get("gantry")
        if server is not None:
            panics = server.panics()
            if panics:
                report.sections.append(("gantry panics", "\n".join(panics)))
        clusters = []
        for value in item.funcargs.values():
            if isinstance(value, DockerCluster):
                clusters.append(value)
            clusters += getattr(value, "clusters", None) or []
        seen = set()
        for cluster in clusters:
            if id(cluster) not in seen and isinstance(cluster, DockerCluster):
                seen.add(id(cluster))
                report.sections.extend(cluster.failure_sections())


# The files that take longest (minutes each, measured with `--durations`), run first so that
# pytest-xdist's workers (`--dist loadfile` hands out files in collection order) do not end on
# one of them while the others idle. Order only: a file missing here runs after these.
SLOW_FIRST = (
    "test_task_credentials.py",
    "test_appautoscaling_docker.py",
    "test_iam.py",
    "test_daemons.py",
    "test_bluegreen_docker.py",
    "test_failover.py",
    "test_events_docker.py",
    "test_lb_services_docker.py",
)


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FIRST)))
