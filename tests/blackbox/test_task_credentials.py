"""Credentials inside tasks, black-box with the AWS CLI and real Docker: a container of a task
with a role fetches its credentials from 169.254.170.2 (busybox, through
`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`), they are an STS session of the role named after the
task that Gantry authorizes as the role, and another task cannot read them. Bridge mode on an
EC2 container instance (`gantry agent`) and awsvpc on Fargate (`gantry up`), both with
enforcement (`--auth sigv4`).

Needs Docker (see conftest.py's docker_run_id) and the local test image.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import time

import pytest

from harness import GantryAgent, busybox_container, docker_ids, wait_for
from test_iam import cli, denied, ok, root_creds

# Prints the credentials endpoint's whole HTTP answer for PATH (headers and body), then waits to
# be stopped; `nc` shows the body of an error answer too (busybox wget does not). Its input stays
# open until the answer came (the endpoint, like the ECS agent's, ends a connection whose client
# stopped sending).
FETCH = ('{ printf "GET %s HTTP/1.0\\r\\nHost: 169.254.170.2\\r\\n\\r\\n" "$P"; sleep 3; } '
         '| nc 169.254.170.2 80; '
         'echo; echo "URI=$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"; '
         # The front door through AWS_ENDPOINT_URL (the agent passes it on).
         'echo "EP=$AWS_ENDPOINT_URL"; wget -q -O - "$AWS_ENDPOINT_URL/_gantry/health"; echo END; sleep 600')


def fetch_container(run_id: str, path_expr: str = "$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") -> dict:
    return busybox_container("main", run_id, command=["sh", "-c", f'P="{path_expr}"; {FETCH}'])


def task_role(server, root, acct: str, name: str) -> str:
    """A role ECS tasks may assume, allowed to list clusters only."""
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
             "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    arn = ok(server, root, "iam", "create-role", "--role-name", name,
             "--assume-role-policy-document", json.dumps(trust))["Role"]["Arn"]
    ok(server, root, "iam", "put-role-policy", "--role-name", name, "--policy-name", "list",
       "--policy-document", json.dumps({"Version": "2012-10-17", "Statement": [
           {"Effect": "Allow", "Action": "ecs:ListClusters", "Resource": "*"}]}))
    return arn


def output_of(task_arn: str, timeout: float = 30) -> tuple[dict, str]:
    """The HTTP answer a task's container printed: (headers and status line, body), and its URI."""
    def printed():
        ids = docker_ids({"gantry.task-arn": task_arn, "gantry.container-name": "main"})
        if not ids:
            return None
        out = subprocess.run(["docker", "logs", ids[0]], capture_output=True, text=True).stdout
        return out if "END" in out else None
    out = wait_for(printed, timeout, interval=0.2, what=f"the output of {task_arn}")
    # (text mode reads the answer's CRLFs as newlines)
    head, _, rest = out.partition("\n\n")
    body, _, tail = rest.partition("\nURI=")
    return {"status": head.splitlines()[0] if head else "", "body": body.strip(),
            "uri": tail.split("\n")[0].strip(), "raw": out,
            "endpoint": tail.split("EP=", 1)[-1].split("\n")[0].strip(),
            "health": tail.split("EP=", 1)[-1].split("\n")[1].strip()}


def session_of(doc: dict) -> dict:
    return {"AWS_ACCESS_KEY_ID": doc["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": doc["SecretAccessKey"],
            "AWS_SESSION_TOKEN": doc["Token"]}


def check_credentials(server, root, acct: str, role: str, role_arn: str, first: dict, first_arn: str,
                      other: dict):
    """What every network mode must show, given one task's answer and another's attempt at it."""
    assert first["status"].split()[1:2] == ["200"], first
    doc = json.loads(first["body"])
    assert set(doc) == {"RoleArn", "AccessKeyId", "SecretAccessKey", "Token", "Expiration"}, doc
    assert doc["RoleArn"] == role_arn
    assert doc["AccessKeyId"].startswith("ASIA")
    assert doc["Expiration"].endswith("Z")
    assert first["uri"].startswith("/v2/credentials/")
    task_id = first_arn.rsplit("/", 1)[1]
    session = session_of(doc)
    me = ok(server, session, "sts", "get-caller-identity")
    assert me["Arn"] == f"arn:aws:sts::{acct}:assumed-role/{role}/{task_id}", me
    ok(server, session, "ecs", "list-clusters")
    msg = denied(server, session, "ecs", "create-cluster", "--cluster-name", "not-allowed")
    assert f"assumed-role/{role}/{task_id} is not authorized to perform: ecs:CreateCluster" in msg
    # Another task asking for this task's credentials path is refused, with the ECS agent's body.
    assert other["status"].split()[1:2] == ["400"], other
    assert json.loads(other["body"]) == {"code": "InvalidIdInRequest",
                                         "message": "CredentialsV2Request: Credentials not found",
                                         "HTTPErrorCode": 400}
    assert doc["SecretAccessKey"] not in server.log_text()
    # AWS_ENDPOINT_URL reaches the front door from inside the task.
    assert first["endpoint"] == "http://169.254.170.2", first
    assert first["health"] == "ok", first


@pytest.fixture
def secure_node(spawn_server, tmp_path, unique):
    """A `gantry server --auth sigv4` with one `gantry agent` (signing with the root key) in a
    cluster of its own: (server, root credentials, account, cluster)."""
    server = spawn_server("creds", auth="sigv4")
    root = root_creds(server)
    acct = ok(server, root, "sts", "get-caller-identity")["Account"]
    cluster = unique("creds")
    ok(server, root, "ecs", "create-cluster", "--cluster-name", cluster)
    agent = GantryAgent(server, cluster, tmp_path / "agent", tmp_path / "agent.log", env=root)
    agent.start(wait_connected=False)
    try:
        wait_for(lambda: ok(server, root, "ecs", "list-container-instances", "--cluster", cluster)
                 ["containerInstanceArns"], 30, interval=0.2, what="the agent's container instance")
        yield server, root, acct, cluster
    finally:
        agent.kill()


def run_bridge(server, root, cluster: str, family: str, container: dict, **td) -> str:
    args = ["ecs", "register-task-definition", "--family", family, "--network-mode", "bridge",
            "--container-definitions", json.dumps([container])]
    for k, v in td.items():
        args += [k, v]
    ok(server, root, *args)
    out = ok(server, root, "ecs", "run-task", "--cluster", cluster, "--task-definition", family)
    assert out["tasks"], out
    return out["tasks"][0]["taskArn"]


def test_bridge_task_fetches_its_role_credentials(secure_node, docker_run_id, unique):
    server, root, acct, cluster = secure_node
    role = unique("taskrole")
    role_arn = task_role(server, root, acct, role)
    first_arn = run_bridge(server, root, cluster, unique("creds-a"), fetch_container(docker_run_id),
                           **{"--task-role-arn": role_arn})
    first = output_of(first_arn)
    # Another task (with a role of its own, so 169.254.170.2 is routed for it) asks for the
    # first task's path.
    other_arn = run_bridge(server, root, cluster, unique("creds-b"),
                           fetch_container(docker_run_id, first["uri"]), **{"--task-role-arn": role_arn})
    other = output_of(other_arn)
    check_credentials(server, root, acct, role, role_arn, first, first_arn, other)
    for arn in (first_arn, other_arn):
        ok(server, root, "ecs", "stop-task", "--cluster", cluster, "--task", arn)
    # Once the task stopped, its redirect is gone.
    wait_for(lambda: not docker_ids({"gantry.task-arn": first_arn}), 30, interval=0.2,
             what="the first task's containers to go")
    rules = subprocess.run(["iptables", "-t", "nat", "-S", "PREROUTING"], capture_output=True,
                           text=True).stdout
    assert f"gantry-creds:{first_arn.rsplit('/', 1)[1]}" not in rules, rules


def test_host_network_task_fetches_its_role_credentials_on_loopback(secure_node, docker_run_id, unique):
    """A host-network container shares the host's addresses: it gets a full URI on the loopback
    address (which SDKs accept) instead of 169.254.170.2, and the path's ID alone protects it."""
    server, root, acct, cluster = secure_node
    role = unique("hostrole")
    role_arn = task_role(server, root, acct, role)
    show = ('echo "URI=$AWS_CONTAINER_CREDENTIALS_FULL_URI REL=$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"; '
            'wget -q -O - "$AWS_CONTAINER_CREDENTIALS_FULL_URI"; echo; '
            'wget -q -O - "${AWS_CONTAINER_CREDENTIALS_FULL_URI%/*}/not-an-id" || echo REFUSED; '
            'echo END; sleep 600')
    container = busybox_container("main", docker_run_id, command=["sh", "-c", show])
    family = unique("creds-host")
    ok(server, root, "ecs", "register-task-definition", "--family", family, "--network-mode", "host",
       "--task-role-arn", role_arn, "--container-definitions", json.dumps([container]))
    arn = ok(server, root, "ecs", "run-task", "--cluster", cluster, "--task-definition", family)["tasks"][0]["taskArn"]

    def printed():
        ids = docker_ids({"gantry.task-arn": arn, "gantry.container-name": "main"})
        out = subprocess.run(["docker", "logs", ids[0]], capture_output=True, text=True).stdout if ids else ""
        return out if "END" in out else None
    out = wait_for(printed, 30, interval=0.2, what="the host-network task's output")
    lines = out.splitlines()
    uri, rel = lines[0].split(" ")
    assert uri.startswith("URI=http://127.0.0.1:") and "/v2/credentials/" in uri, lines
    assert rel == "REL=", "no relative URI: 169.254.170.2 is not routed for the host's network"
    doc = json.loads(lines[1])
    assert doc["RoleArn"] == role_arn and doc["AccessKeyId"].startswith("ASIA"), doc
    task_id = arn.rsplit("/", 1)[1]
    me = ok(server, session_of(doc), "sts", "get-caller-identity")
    assert me["Arn"] == f"arn:aws:sts::{acct}:assumed-role/{role}/{task_id}", me
    assert "REFUSED" in lines[2:], lines


def test_secrets_are_read_as_the_execution_role(secure_node, docker_run_id, unique):
    """Under enforcement a task's secrets are read with its execution role: a role without
    secretsmanager:GetSecretValue gets ECS's ResourceInitializationError; with it, the value
    reaches the container."""
    server, root, acct, cluster = secure_node
    secret = ok(server, root, "secretsmanager", "create-secret", "--name", unique("pw"),
                "--secret-string", "hunter2")["ARN"]
    role = unique("exec")
    role_arn = task_role(server, root, acct, role)   # may list clusters, not read secrets
    container = busybox_container("main", docker_run_id, command=["sh", "-c", 'test "$PW" = hunter2'],
                                  secrets=[{"name": "PW", "valueFrom": secret}])
    arn = run_bridge(server, root, cluster, unique("exec-a"), container, **{"--execution-role-arn": role_arn})

    def stopped():
        t = ok(server, root, "ecs", "describe-tasks", "--cluster", cluster, "--tasks", arn)["tasks"][0]
        return t if t["lastStatus"] == "STOPPED" else None
    t = wait_for(stopped, 30, interval=0.2, what="the task to stop")
    task_id = arn.rsplit("/", 1)[1]
    assert t.get("stopCode") == "TaskFailedToStart", t
    assert t["stoppedReason"] == (
        "ResourceInitializationError: unable to pull secrets or registry auth: execution resource "
        "retrieval failed: unable to retrieve secret from asm: service call has been retried 1 time(s): "
        f"failed to fetch secret {secret} from secrets manager: AccessDeniedException: User: "
        f"arn:aws:sts::{acct}:assumed-role/{role}/{task_id} is not authorized to perform: "
        f"secretsmanager:GetSecretValue on resource: {secret} because no identity-based policy "
        "allows the secretsmanager:GetSecretValue action"), t["stoppedReason"]
    assert docker_ids({"gantry.task-arn": arn}) == []
    # Once the role may read it, the next task gets the value.
    ok(server, root, "iam", "put-role-policy", "--role-name", role, "--policy-name", "read",
       "--policy-document", json.dumps({"Version": "2012-10-17", "Statement": [
           {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": secret}]}))
    arn = run_bridge(server, root, cluster, unique("exec-b"), container, **{"--execution-role-arn": role_arn})
    t = wait_for(stopped, 30, interval=0.2, what="the task to stop")
    assert t["containers"][0].get("exitCode") == 0, t
    # The secret's resource policy counts too: it denies that role, and grants another role
    # that no identity policy of its own allows.
    other = unique("exec2")
    other_arn = task_role(server, root, acct, other)
    ok(server, root, "secretsmanager", "put-resource-policy", "--secret-id", secret,
       "--resource-policy", json.dumps({"Version": "2012-10-17", "Statement": [
           {"Effect": "Deny", "Principal": {"AWS": role_arn}, "Action": "secretsmanager:GetSecretValue",
            "Resource": "*"},
           {"Effect": "Allow", "Principal": {"AWS": other_arn}, "Action": "secretsmanager:GetSecretValue",
            "Resource": "*"}]}))
    arn = run_bridge(server, root, cluster, unique("exec-c"), container, **{"--execution-role-arn": role_arn})
    t = wait_for(stopped, 30, interval=0.2, what="the task to stop")
    assert t.get("stopCode") == "TaskFailedToStart", t
    assert t["stoppedReason"].endswith(
        f"is not authorized to perform: secretsmanager:GetSecretValue on resource: {secret} "
        "with an explicit deny in a resource-based policy"), t["stoppedReason"]
    arn = run_bridge(server, root, cluster, unique("exec-d"), container, **{"--execution-role-arn": other_arn})
    t = wait_for(stopped, 30, interval=0.2, what="the task to stop")
    assert t["containers"][0].get("exitCode") == 0, t


def test_fargate_task_fetches_its_role_credentials(spawn_server, docker_run_id, unique):
    up = spawn_server("up", command="up", extra_args=("--auth", "sigv4"))
    root = root_creds(up)
    acct = ok(up, root, "sts", "get-caller-identity")["Account"]
    role = unique("fgrole")
    role_arn = task_role(up, root, acct, role)
    cluster = unique("fgcreds")
    ok(up, root, "ecs", "create-cluster", "--cluster-name", cluster)

    def run(family: str, container: dict, with_role: bool = True) -> str:
        container = dict(container)
        container.pop("memory", None)
        args = ["ecs", "register-task-definition", "--family", family, "--network-mode", "awsvpc",
                "--requires-compatibilities", "FARGATE", "--cpu", "256", "--memory", "512",
                "--container-definitions", json.dumps([container])]
        if with_role:
            args += ["--task-role-arn", role_arn]
        ok(up, root, *args)

        def launched():
            rc, out = cli(up, root, "ecs", "run-task", "--cluster", cluster, "--launch-type", "FARGATE",
                          "--task-definition", family, "--network-configuration",
                          "awsvpcConfiguration={subnets=[subnet-local],assignPublicIp=DISABLED}")
            return out["tasks"][0]["taskArn"] if rc == 0 and out["tasks"] else None
        return wait_for(launched, 20, interval=0.2, what="Fargate capacity")

    first_arn = run(unique("fg-a"), fetch_container(docker_run_id))
    first = output_of(first_arn)
    other_arn = run(unique("fg-b"), fetch_container(docker_run_id, first["uri"]))
    other = output_of(other_arn)
    check_credentials(up, root, acct, role, role_arn, first, first_arn, other)
    for arn in (first_arn, other_arn):
        ok(up, root, "ecs", "stop-task", "--cluster", cluster, "--task", arn)


def test_a_restarted_agent_serves_the_credentials_of_the_tasks_it_adopts(spawn_server, tmp_path,
                                                                        docker_run_id, unique):
    """kill -9 the agent while a task with a role runs: the agent that comes back adopts the
    task and answers its containers' credentials path again (the same path, given at start)."""
    server = spawn_server("creds-restart", auth="sigv4")
    root = root_creds(server)
    acct = ok(server, root, "sts", "get-caller-identity")["Account"]
    cluster = unique("creds-rs")
    ok(server, root, "ecs", "create-cluster", "--cluster-name", cluster)
    agent = GantryAgent(server, cluster, tmp_path / "agent", tmp_path / "agent.log", env=root)
    agent.start(wait_connected=False)
    try:
        wait_for(lambda: ok(server, root, "ecs", "list-container-instances", "--cluster", cluster)
                 ["containerInstanceArns"], 30, interval=0.2, what="the agent's container instance")
        role_arn = task_role(server, root, acct, unique("rsrole"))
        # Asks for its credentials twice a second, printing the time and the status line.
        poll = ('while true; do S=$({ printf "GET %s HTTP/1.0\\r\\nHost: 169.254.170.2\\r\\n\\r\\n" '
                '"$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"; sleep 1; } | nc 169.254.170.2 80 | head -1); '
                'echo "T=$(date +%s) $S"; sleep 0.5; done')
        container = busybox_container("main", docker_run_id, command=["sh", "-c", poll])
        arn = run_bridge(server, root, cluster, unique("creds-rs"), container, **{"--task-role-arn": role_arn})

        def statuses(after: int) -> list[str]:
            ids = docker_ids({"gantry.task-arn": arn, "gantry.container-name": "main"})
            if not ids:
                return []
            out = subprocess.run(["docker", "logs", ids[0]], capture_output=True, text=True).stdout
            lines = [ln.split(" ", 1) for ln in out.splitlines() if ln.startswith("T=")]
            return [rest for t, rest in (x for x in lines if len(x) == 2) if int(t[2:]) > after]

        wait_for(lambda: any(" 200 " in f" {s} " for s in statuses(0)), 30, interval=0.2,
                 what="the task's first credentials")
        agent.kill()
        restarted = int(time.time()) + 1
        agent.start(wait_connected=False)
        try:
            wait_for(lambda: any(" 200 " in f" {s} " for s in statuses(restarted)), 30, interval=0.2,
                     what="credentials from the restarted agent")
        except TimeoutError as e:
            raise AssertionError(f"{e}: the task saw {statuses(restarted)[-5:]}\n{agent.log_tail()}") from None
        # Still the one task: it was adopted, not started again.
        tasks = ok(server, root, "ecs", "list-tasks", "--cluster", cluster)["taskArns"]
        assert tasks == [arn], tasks
        assert len(docker_ids({"gantry.task-arn": arn, "gantry.container-name": "main"})) == 1
    finally:
        agent.kill()


def test_an_agent_at_start_removes_the_redirects_of_containers_that_are_gone(spawn_server, docker_run_id, unique):
    """An agent killed while its tasks' containers were removed leaves their 169.254.170.2
    redirects behind; the next agent to start on the host removes those whose MAC address no
    container has, and keeps those of containers that still exist (any agent's)."""
    from harness import docker
    tag = unique("gantry-creds:sweep")
    gone_mac, live_mac = "0a:ff:00:5e:e9:01", "0a:ff:00:5e:e9:02"

    def rule(op: str, mac: str) -> list[str]:
        return ["iptables", "-w", "5", "-t", "nat", op, "PREROUTING", "-d", "169.254.170.2/32", "-p", "tcp",
                "-m", "mac", "--mac-source", mac, "-m", "tcp", "--dport", "80", "-m", "comment",
                "--comment", tag, "-j", "REDIRECT", "--to-ports", "9"]

    def rules() -> str:
        return subprocess.run(["iptables", "-t", "nat", "-S", "PREROUTING"], capture_output=True,
                              text=True, check=True).stdout.lower()

    # A container that still exists (created, never started) with its chosen MAC address.
    docker("create", "--label", f"gantry.test-run={docker_run_id}", "--label", f"gantry.mac-address={live_mac}",
           "gantry-test/busybox:latest", "true")
    for mac in (gone_mac, live_mac):
        subprocess.run(rule("-I", mac), check=True)
    try:
        assert gone_mac in rules() and live_mac in rules()
        spawn_server("up-sweep", command="up")
        wait_for(lambda: gone_mac not in rules(), 30, interval=0.2, what="the stale redirect to go")
        assert live_mac in rules(), "the live container's redirect was removed"
    finally:
        for mac in (gone_mac, live_mac):
            subprocess.run(rule("-D", mac), capture_output=True)


def epoch(stamp: str) -> float:
    """Seconds since the epoch of an RFC 3339 UTC time (Docker's nanoseconds cut to micro)."""
    head, _, frac = stamp.rstrip("Z").partition(".")
    t = datetime.datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return t.timestamp() + (float("0." + frac) if frac else 0.0)


def test_task_credentials_are_renewed_before_they_expire(spawn_server, tmp_path, docker_run_id, unique):
    """With 20-second task credentials (`--task-credentials-duration 20s`), the container sees
    new credentials from the same endpoint path before the first expire; the new ones work
    while the first, once expired, are refused."""
    server = spawn_server("renew", auth="sigv4", extra_args=("--task-credentials-duration", "20s"))
    root = root_creds(server)
    acct = ok(server, root, "sts", "get-caller-identity")["Account"]
    cluster = unique("renew")
    ok(server, root, "ecs", "create-cluster", "--cluster-name", cluster)
    agent = GantryAgent(server, cluster, tmp_path / "agent", tmp_path / "agent.log", env=root)
    agent.start(wait_connected=False)
    try:
        role = unique("renewrole")
        role_arn = task_role(server, root, acct, role)
        # Prints the credentials document once a second, one line each.
        loop = ('while true; do wget -q -O - "169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"; '
                'echo; sleep 1; done')
        arn = run_bridge(server, root, cluster, unique("renew"),
                         busybox_container("main", docker_run_id, command=["sh", "-c", loop]),
                         **{"--task-role-arn": role_arn})

        def documents() -> list[dict]:
            """The documents the container printed, each with `seen`: when it printed it."""
            ids = docker_ids({"gantry.task-arn": arn, "gantry.container-name": "main"})
            out = subprocess.run(["docker", "logs", "-t", ids[0]], capture_output=True,
                                 text=True).stdout if ids else ""
            docs = []
            for line in out.splitlines():
                stamp, _, text = line.partition(" ")
                if text.startswith("{"):
                    doc = json.loads(text)
                    doc["seen"] = epoch(stamp)
                    docs.append(doc)
            return docs

        def two_sessions():
            docs = documents()
            keys = list(dict.fromkeys(d["AccessKeyId"] for d in docs))
            return docs if len(keys) >= 2 else None
        docs = wait_for(two_sessions, 45, interval=0.5, what="a second session in the task")
        first = docs[0]
        second = next(d for d in docs if d["AccessKeyId"] != first["AccessKeyId"])
        assert first["Expiration"] < second["Expiration"], (first, second)
        # The container saw the renewed session before the first one expired.
        assert second["seen"] < epoch(first["Expiration"]), (first, second)
        task_id = arn.rsplit("/", 1)[1]
        me = ok(server, session_of(second), "sts", "get-caller-identity")
        assert me["Arn"] == f"arn:aws:sts::{acct}:assumed-role/{role}/{task_id}", me
        # Once past its Expiration the first is refused, while the renewed session is served.
        def first_refused():
            rc, out = cli(server, session_of(first), "ecs", "list-clusters")
            return out if rc != 0 else None
        out = wait_for(first_refused, 30, interval=0.5, what="the first session to expire")
        assert "ExpiredToken" in out, out
        latest = documents()[-1]
        assert latest["AccessKeyId"] != first["AccessKeyId"]
        ok(server, session_of(latest), "ecs", "list-clusters")
    finally:
        agent.kill()
