"""Private images on real Docker: a container's `repositoryCredentials` names a Secrets Manager
secret holding `{"username": ..., "password": ...}`, which the agent reads with the task
execution role (through the server) and hands to the engine for the pull, as the ECS agent does.

The registry is a real one: Debian's `docker-registry` (the CNCF distribution registry) with
htpasswd basic auth, on loopback (which the Docker engine treats as an insecure registry, so
plain HTTP is fine). The test pushes the local test image into it under a fresh tag and removes
the local copy, so the only way a task can run it is by pulling it with the right credentials.

Needs Docker, the local test image, `docker-registry` and `htpasswd` (scripts/prereqs.sh).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
import uuid

import pytest

from harness import TEST_IMAGE, free_port, wait_for

EXEC_ROLE = "arn:aws:iam::000000000000:role/ecsTaskExecutionRole"
USER = "gantry-puller"


def run(*args: str, env: dict | None = None, timeout: float = 120) -> str:
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})})
    assert p.returncode == 0, f"{' '.join(args)} failed ({p.returncode}): {p.stderr.strip()}"
    return p.stdout


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A registry with basic auth on a free loopback port, holding one private image; yields
    (image, password). Stopped, and its image removed locally, afterwards."""
    for tool in ("docker-registry", "htpasswd"):
        assert shutil.which(tool), f"{tool} is not installed (scripts/prereqs.sh installs it)"
    base = tmp_path_factory.mktemp("registry")
    password = uuid.uuid4().hex
    (base / "htpasswd").write_text(run("htpasswd", "-Bbn", USER, password))
    port = free_port()
    (base / "config.yml").write_text(json.dumps({   # YAML is a superset of JSON
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(base / "data")}},
        "http": {"addr": f"127.0.0.1:{port}"},
        "auth": {"htpasswd": {"realm": "gantry-test", "path": str(base / "htpasswd")}},
    }))
    log = open(base / "registry.log", "w")
    proc = subprocess.Popen(["docker-registry", "serve", str(base / "config.yml")],
                            stdout=log, stderr=subprocess.STDOUT)
    image = f"127.0.0.1:{port}/gantry-test/private:{uuid.uuid4().hex[:12]}"
    try:
        def up() -> bool:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2)
                return True
            except urllib.error.HTTPError as e:   # 401: up, and asking for credentials
                assert e.code == 401, e
                return True
            except OSError:
                assert proc.poll() is None, (base / "registry.log").read_text()
                return False

        wait_for(up, timeout=20, what="the registry to listen")
        # Push with a Docker client config of the test's own (the user's stays untouched).
        cfg = {"DOCKER_CONFIG": str(base / "docker-config")}
        run("docker", "tag", TEST_IMAGE, image)
        subprocess.run(
            ["docker", "login", "--username", USER, "--password-stdin", f"127.0.0.1:{port}"],
            input=password, capture_output=True, text=True, check=True, timeout=60,
            env={**os.environ, **cfg})
        run("docker", "push", image, env=cfg)
        run("docker", "rmi", image)
        yield image, password
    finally:
        subprocess.run(["docker", "rmi", "-f", image], capture_output=True, timeout=60)
        proc.kill()
        proc.wait()
        log.close()


def image_present(image: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", image], capture_output=True,
                          timeout=60).returncode == 0


def test_a_private_image_is_pulled_with_the_repository_credentials_secret(node, registry, unique):
    image, password = registry
    assert not image_present(image)
    # By name: ECS accepts a secret's name in the task's own Region.
    name = unique("registry-creds")
    node.aws_ok("secretsmanager", "create-secret", "--name", name,
                "--secret-string", json.dumps({"username": USER, "password": password}))
    td = node.register(unique("private"), [node.container(
        "main", image=image, command=["sh", "-c", "exit 7"],
        repositoryCredentials={"credentialsParameter": name})], executionRoleArn=EXEC_ROLE)
    task = node.wait_status(node.run(td)["taskArn"], "STOPPED", timeout=60)
    # It ran: the image's own shell exited with the code it was told to.
    assert task["containers"][0].get("exitCode") == 7, task
    assert image_present(image)
    assert password not in node.server.log_text()
    assert password not in json.dumps(node.aws_ok(
        "ecs", "describe-tasks", "--cluster", node.cluster, "--tasks", task["taskArn"]))


def test_a_wrong_password_or_no_credentials_cannot_pull(node, registry, unique):
    image, password = registry
    subprocess.run(["docker", "rmi", "-f", image], capture_output=True, timeout=60)
    wrong = node.aws_ok("secretsmanager", "create-secret", "--name", unique("wrong-creds"),
                        "--secret-string", json.dumps({"username": USER, "password": "not-" + password}))
    for creds in ({"credentialsParameter": wrong["ARN"]}, None):
        td = node.register(unique("private-denied"), [node.container(
            "main", image=image, command=["true"], repositoryCredentials=creds)],
            executionRoleArn=EXEC_ROLE)
        task = node.wait_status(node.run(td)["taskArn"], "STOPPED", timeout=60)
        reason = task["containers"][0].get("reason", "")
        assert reason.startswith("CannotPullContainerError"), (creds, task)
        assert task.get("stopCode") == "TaskFailedToStart", task
        assert not image_present(image)


def test_credentials_that_are_not_a_username_and_password_stop_the_task_as_ecs_does(node, registry, unique):
    image, _ = registry
    cases = [
        ("not json", "asm fetching authorization data: unable to unmarshal secret value, invalid schema"),
        (json.dumps({"username": USER}), "asm fetching password: AuthorizationData is malformed, empty field"),
        (json.dumps({"password": "x"}), "asm fetching username: AuthorizationData is malformed, empty field"),
    ]
    for value, words in cases:
        secret = node.aws_ok("secretsmanager", "create-secret", "--name", unique("bad-creds"),
                             "--secret-string", value)
        td = node.register(unique("private-bad"), [node.container(
            "main", image=image, command=["true"],
            repositoryCredentials={"credentialsParameter": secret["ARN"]})],
            executionRoleArn=EXEC_ROLE)
        task = node.wait_status(node.run(td)["taskArn"], "STOPPED", timeout=60)
        assert task.get("stopCode") == "TaskFailedToStart", task
        assert task.get("stoppedReason") == (
            "ResourceInitializationError: unable to pull secrets or registry auth: "
            f"execution resource retrieval failed: {words}"), task
