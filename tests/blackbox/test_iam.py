"""IAM, STS sessions and enforcement, black-box with the AWS CLI: a `gantry server --auth sigv4`,
the root key making users, keys, policies and roles, and those keys then used for real."""

from __future__ import annotations

import json
import subprocess
import urllib.parse

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from harness import TARGET_PREFIX, aws_cli

DESCRIBE_LIST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["ecs:Describe*", "ecs:List*"], "Resource": "*"}]}


@pytest.fixture
def secure(spawn_server):
    """A `gantry server` with enforcement (auth sigv4)."""
    return spawn_server("iam", auth="sigv4")


def root_creds(server) -> dict:
    text = (server.data_dir / "root-credentials").read_text()
    v = dict(line.split(" = ", 1) for line in text.splitlines() if " = " in line and not line.startswith("#"))
    return {"AWS_ACCESS_KEY_ID": v["aws_access_key_id"], "AWS_SECRET_ACCESS_KEY": v["aws_secret_access_key"]}


def cli(server, creds: dict, *args: str):
    """The AWS CLI as `creds`: (exit code, parsed JSON) or (exit code, stderr)."""
    env = server.cli_env()
    env.update(creds)
    p = subprocess.run([aws_cli(), *args, "--output", "json"], env=env, capture_output=True, text=True,
                       timeout=120)
    if p.returncode == 0:
        return 0, (json.loads(p.stdout) if p.stdout.strip() else {})
    return p.returncode, p.stderr


def ok(server, creds, *args):
    rc, out = cli(server, creds, *args)
    assert rc == 0, f"aws {' '.join(args)}: {out}"
    return out


def denied(server, creds, *args, code="AccessDeniedException") -> str:
    rc, out = cli(server, creds, *args)
    assert rc != 0, f"aws {' '.join(args)} was allowed: {out}"
    assert f"({code})" in out, out
    return out


def make_user(server, root, name: str, policy: dict | None = None) -> dict:
    ok(server, root, "iam", "create-user", "--user-name", name)
    key = ok(server, root, "iam", "create-access-key", "--user-name", name)["AccessKey"]
    if policy is not None:
        ok(server, root, "iam", "put-user-policy", "--user-name", name, "--policy-name", "p",
           "--policy-document", json.dumps(policy))
    return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}


def test_describe_and_list_only_user(secure):
    root = root_creds(secure)
    alice = make_user(secure, root, "alice")
    pol = ok(secure, root, "iam", "create-policy", "--policy-name", "ecs-read",
             "--policy-document", json.dumps(DESCRIBE_LIST))["Policy"]
    ok(secure, root, "iam", "attach-user-policy", "--user-name", "alice", "--policy-arn", pol["Arn"])
    acct = ok(secure, root, "sts", "get-caller-identity")["Account"]
    me = ok(secure, alice, "sts", "get-caller-identity")
    assert me["Arn"] == f"arn:aws:iam::{acct}:user/alice"
    ok(secure, root, "ecs", "create-cluster", "--cluster-name", "prod")
    assert ok(secure, alice, "ecs", "list-clusters")["clusterArns"] == [f"arn:aws:ecs:us-east-1:{acct}:cluster/prod"]
    ok(secure, alice, "ecs", "describe-clusters", "--clusters", "prod")
    msg = denied(secure, alice, "ecs", "create-cluster", "--cluster-name", "x")
    assert (f"User: arn:aws:iam::{acct}:user/alice is not authorized to perform: ecs:CreateCluster on resource: * "
            "because no identity-based policy allows the ecs:CreateCluster action") in msg
    msg = denied(secure, alice, "ecs", "run-task", "--cluster", "prod", "--task-definition", "web:1")
    assert f"ecs:RunTask on resource: arn:aws:ecs:us-east-1:{acct}:task-definition/web:1" in msg
    # Query services answer AccessDenied.
    denied(secure, alice, "iam", "list-users", code="AccessDenied")
    # The cluster was not created.
    assert len(ok(secure, root, "ecs", "list-clusters")["clusterArns"]) == 1


def test_a_deny_on_one_cluster_beats_a_wildcard_allow(secure):
    root = root_creds(secure)
    acct = ok(secure, root, "sts", "get-caller-identity")["Account"]
    prod = f"arn:aws:ecs:us-east-1:{acct}:cluster/prod"
    bob = make_user(secure, root, "bob", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ecs:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "ecs:*", "Resource": prod}]})
    ok(secure, bob, "ecs", "create-cluster", "--cluster-name", "prod")
    ok(secure, bob, "ecs", "create-cluster", "--cluster-name", "dev")
    msg = denied(secure, bob, "ecs", "describe-clusters", "--clusters", "prod")
    assert f"ecs:DescribeClusters on resource: {prod} with an explicit deny in an identity-based policy" in msg
    denied(secure, bob, "ecs", "delete-cluster", "--cluster", prod)
    assert ok(secure, bob, "ecs", "describe-clusters", "--clusters", "dev")["clusters"][0]["clusterName"] == "dev"
    ok(secure, bob, "ecs", "delete-cluster", "--cluster", "dev")


def test_without_pass_role_no_task_role(secure):
    root = root_creds(secure)
    acct = ok(secure, root, "sts", "get-caller-identity")["Account"]
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                                                     "Action": "sts:AssumeRole"}]}
    role = ok(secure, root, "iam", "create-role", "--role-name", "app-task",
              "--assume-role-policy-document", json.dumps(trust))["Role"]["Arn"]
    carol = make_user(secure, root, "carol", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ecs:*", "Resource": "*"}]})
    containers = json.dumps([{"name": "app", "image": "busybox", "memory": 64, "essential": True}])
    msg = denied(secure, carol, "ecs", "register-task-definition", "--family", "web", "--task-role-arn", role,
                 "--container-definitions", containers)
    assert f"iam:PassRole on resource: {role}" in msg
    # Registered by the root, launching it still passes the role.
    ok(secure, root, "ecs", "register-task-definition", "--family", "web", "--task-role-arn", role,
       "--container-definitions", containers)
    ok(secure, root, "ecs", "create-cluster", "--cluster-name", "c")
    msg = denied(secure, carol, "ecs", "run-task", "--cluster", "c", "--task-definition", "web:1")
    assert "iam:PassRole" in msg
    # An unknown role is ECS's error under enforcement.
    rc, out = cli(secure, carol, "ecs", "register-task-definition", "--family", "web2", "--task-role-arn",
                  f"arn:aws:iam::{acct}:role/nope", "--container-definitions", containers)
    assert rc != 0 and "(ClientException)" in out and "Role is not valid" in out, out
    # With PassRole for ECS tasks, registering works.
    ok(secure, root, "iam", "put-user-policy", "--user-name", "carol", "--policy-name", "pass",
       "--policy-document", json.dumps({"Version": "2012-10-17", "Statement": [
           {"Effect": "Allow", "Action": "iam:PassRole", "Resource": role,
            "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}}]}))
    out = ok(secure, carol, "ecs", "register-task-definition", "--family", "web", "--task-role-arn", role,
             "--container-definitions", containers)
    assert out["taskDefinition"]["taskRoleArn"] == role


def test_assume_role_sessions_work_as_the_role(secure):
    root = root_creds(secure)
    acct = ok(secure, root, "sts", "get-caller-identity")["Account"]
    dave = make_user(secure, root, "dave")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
             "Principal": {"AWS": f"arn:aws:iam::{acct}:user/dave"}, "Action": "sts:AssumeRole"}]}
    role = ok(secure, root, "iam", "create-role", "--role-name", "reader",
              "--assume-role-policy-document", json.dumps(trust))["Role"]["Arn"]
    ok(secure, root, "iam", "attach-role-policy", "--role-name", "reader",
       "--policy-arn", "arn:aws:iam::aws:policy/AmazonECS_ReadOnlyAccess")
    # Root keys may not assume roles; others not named by the trust policy neither.
    denied(secure, root, "sts", "assume-role", "--role-arn", role, "--role-session-name", "s1", code="AccessDenied")
    eve = make_user(secure, root, "eve")
    denied(secure, eve, "sts", "assume-role", "--role-arn", role, "--role-session-name", "s1", code="AccessDenied")
    out = ok(secure, dave, "sts", "assume-role", "--role-arn", role, "--role-session-name", "build-42",
             "--duration-seconds", "900")
    c = out["Credentials"]
    assert c["AccessKeyId"].startswith("ASIA")
    session = {"AWS_ACCESS_KEY_ID": c["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": c["SecretAccessKey"],
               "AWS_SESSION_TOKEN": c["SessionToken"]}
    me = ok(secure, session, "sts", "get-caller-identity")
    assert me["Arn"] == f"arn:aws:sts::{acct}:assumed-role/reader/build-42"
    ok(secure, session, "ecs", "list-clusters")
    msg = denied(secure, session, "ecs", "create-cluster", "--cluster-name", "x")
    assert f"User: arn:aws:sts::{acct}:assumed-role/reader/build-42 is not authorized" in msg
    # A session policy narrows the session further.
    out = ok(secure, dave, "sts", "assume-role", "--role-arn", role, "--role-session-name", "narrow",
             "--policy", json.dumps({"Version": "2012-10-17", "Statement": [
                 {"Effect": "Allow", "Action": "ecs:ListClusters", "Resource": "*"}]}))
    c = out["Credentials"]
    narrow = {"AWS_ACCESS_KEY_ID": c["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": c["SecretAccessKey"],
              "AWS_SESSION_TOKEN": c["SessionToken"]}
    ok(secure, narrow, "ecs", "list-clusters")
    denied(secure, narrow, "ecs", "list-task-definitions")
    # The session's token is checked: another token, or none, is refused.
    tampered = dict(session, AWS_SESSION_TOKEN=session["AWS_SESSION_TOKEN"][:-4] + "AAAA")
    denied(secure, tampered, "ecs", "list-clusters", code="UnrecognizedClientException")
    no_token = {k: v for k, v in session.items() if k != "AWS_SESSION_TOKEN"}
    denied(secure, no_token, "ecs", "list-clusters", code="UnrecognizedClientException")
    # GetAccessKeyInfo names the account.
    assert ok(secure, root, "sts", "get-access-key-info", "--access-key-id", c["AccessKeyId"])["Account"] == acct


def sign_ecs(server, creds: Credentials, op: str, body: bytes = b"{}"):
    req = AWSRequest("POST", server.endpoint + "/", data=body, headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"{TARGET_PREFIX}.{op}"})
    SigV4Auth(creds, "ecs", "us-east-1").add_auth(req)
    prepared = req.prepare()
    path = urllib.parse.urlsplit(prepared.url).path
    return server.http("POST", path, body=body, headers=dict(prepared.headers.items()))


def test_forgeries_unknown_keys_and_case_tricks_are_refused(secure):
    root = root_creds(secure)
    frank = make_user(secure, root, "frank", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ecs:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "ECS:CREATECLUSTER", "Resource": "*"}]})
    # A signature by the wrong secret for a real key, and an unknown key.
    forged = dict(frank, AWS_SECRET_ACCESS_KEY="x" * 40)
    denied(secure, forged, "ecs", "list-clusters", code="InvalidSignatureException")
    unknown = dict(frank, AWS_ACCESS_KEY_ID="AKIAUNKNOWNUNKNOWN00")
    denied(secure, unknown, "ecs", "list-clusters", code="UnrecognizedClientException")
    # A deny spelled in another case still denies, and an operation spelled in another case is
    # refused (the Deny matches it, and it names no operation).
    denied(secure, frank, "ecs", "create-cluster", "--cluster-name", "x")
    creds = Credentials(frank["AWS_ACCESS_KEY_ID"], frank["AWS_SECRET_ACCESS_KEY"])
    r = sign_ecs(secure, creds, "createcluster", b'{"clusterName":"y"}')
    assert r.status == 400 and r.error_type in ("UnknownOperationException", "AccessDeniedException"), r
    r = sign_ecs(secure, creds, "CreateCluster", b'{"clusterName":"y"}')
    assert r.error_type == "AccessDeniedException", r
    assert ok(secure, root, "ecs", "list-clusters")["clusterArns"] == []
    # A deactivated key stops working at once; a deleted one too.
    ok(secure, root, "iam", "update-access-key", "--user-name", "frank", "--access-key-id",
       frank["AWS_ACCESS_KEY_ID"], "--status", "Inactive")
    denied(secure, frank, "ecs", "list-clusters", code="UnrecognizedClientException")


def test_no_secret_in_the_data_directory(secure):
    root = root_creds(secure)
    grace = make_user(secure, root, "grace", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "sts:*", "Resource": "*"}]})
    out = ok(secure, grace, "sts", "get-session-token", "--duration-seconds", "900")["Credentials"]
    secrets = [grace["AWS_SECRET_ACCESS_KEY"], out["SecretAccessKey"], out["SessionToken"]]
    secure.stop()
    for f in secure.data_dir.rglob("*"):
        if f.is_file() and f.name != "root-credentials":
            data = f.read_bytes()
            for s in secrets:
                assert s.encode() not in data, f"{f} holds a secret in plaintext"


def test_secrets_manager_resource_policies(secure):
    root = root_creds(secure)
    acct = ok(secure, root, "sts", "get-caller-identity")["Account"]
    heidi = make_user(secure, root, "heidi")
    ivan = make_user(secure, root, "ivan")
    ok(secure, root, "iam", "attach-user-policy", "--user-name", "ivan",
       "--policy-arn", "arn:aws:iam::aws:policy/SecretsManagerReadWrite")
    arn = ok(secure, root, "secretsmanager", "create-secret", "--name", "db", "--secret-string", "pw")["ARN"]
    # Without a policy of her own or the secret's, heidi is denied, naming the secret's ARN.
    msg = denied(secure, heidi, "secretsmanager", "get-secret-value", "--secret-id", "db")
    assert f"secretsmanager:GetSecretValue on resource: {arn}" in msg
    ok(secure, root, "secretsmanager", "put-resource-policy", "--secret-id", "db", "--resource-policy", json.dumps(
        {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{acct}:user/heidi"},
             "Action": "secretsmanager:GetSecretValue", "Resource": "*"},
            {"Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::{acct}:user/ivan"},
             "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}))
    assert ok(secure, heidi, "secretsmanager", "get-secret-value", "--secret-id", "db")["SecretString"] == "pw"
    # ivan's identity policy allows secretsmanager:*, the secret's Deny wins.
    denied(secure, ivan, "secretsmanager", "get-secret-value", "--secret-id", "db")
    ok(secure, ivan, "secretsmanager", "describe-secret", "--secret-id", "db")
