"""ECS `secrets` on real Docker: values from Secrets Manager (a JSON key of a secret, and a whole
secret) and an SSM SecureString reach the container's environment; a secret that cannot be
resolved stops the task before any container exists, with ECS's ResourceInitializationError.

Needs Docker (see conftest.py's docker_run_id) and the local test image.
"""

from __future__ import annotations

import json

from harness import docker_ids

# Exits 0 when the environment holds what the test put in the stores, else 1 (the exit code is
# the assertion: it can fail).
EXEC_ROLE = "arn:aws:iam::000000000000:role/ecsTaskExecutionRole"
CHECK = ('test "$DB_USER" = admin && test "$DB_PASS" = "$WANT_PASS" '
         '&& test "$API_TOKEN" = tok-from-ssm && test "$WHOLE" = \'{"user":"admin"}\'')


def test_secrets_reach_the_environment_and_follow_awscurrent(docker_cluster, unique):
    node = docker_cluster
    db = node.aws_ok("secretsmanager", "create-secret", "--name", unique("db"),
                     "--secret-string", json.dumps({"user": "admin", "pass": "first"}))
    whole = node.aws_ok("secretsmanager", "create-secret", "--name", unique("whole"),
                        "--secret-string", '{"user":"admin"}')
    param = "/" + unique("api") + "/token"
    node.aws_ok("ssm", "put-parameter", "--name", param, "--value", "tok-from-ssm", "--type", "SecureString")

    def task_with(want_pass: str) -> dict:
        td = node.register(unique("sec"), [node.container(
            "main", command=["sh", "-c", CHECK],
            environment=[{"name": "WANT_PASS", "value": want_pass}],
            secrets=[{"name": "DB_USER", "valueFrom": f"{db['ARN']}:user::"},
                     {"name": "DB_PASS", "valueFrom": f"{db['ARN']}:pass:AWSCURRENT:"},
                     {"name": "WHOLE", "valueFrom": whole["ARN"]},
                     {"name": "API_TOKEN", "valueFrom": param}])],
            executionRoleArn=EXEC_ROLE)
        task = node.run(td)
        return node.wait_status(task["taskArn"], "STOPPED", timeout=45)

    first = task_with("first")
    assert first["containers"][0].get("exitCode") == 0, first
    assert first.get("stopCode") == "EssentialContainerExited"
    described = json.dumps(node.aws_ok("ecs", "describe-tasks", "--cluster", node.cluster,
                                       "--tasks", first["taskArn"]))
    assert "tok-from-ssm" not in described and "first" not in described

    # A new value between two tasks: the second sees the new AWSCURRENT.
    node.aws_ok("secretsmanager", "put-secret-value", "--secret-id", db["ARN"],
                "--secret-string", json.dumps({"user": "admin", "pass": "second"}))
    second = task_with("second")
    assert second["containers"][0].get("exitCode") == 0, second
    assert "tok-from-ssm" not in node.server.log_text()


def test_unresolvable_secret_stops_the_task_before_it_starts(docker_cluster, unique):
    node = docker_cluster
    missing = f"arn:aws:secretsmanager:us-east-1:000000000000:secret:{unique('gone')}-AbCdEf"
    td = node.register(unique("nosec"), [node.container(
        "main", secrets=[{"name": "X", "valueFrom": missing}])], executionRoleArn=EXEC_ROLE)
    task = node.run(td)
    stopped = node.wait_status(task["taskArn"], "STOPPED", timeout=30)
    assert stopped.get("stopCode") == "TaskFailedToStart", stopped
    assert stopped["stoppedReason"] == (
        "ResourceInitializationError: unable to pull secrets or registry auth: execution resource "
        "retrieval failed: unable to retrieve secret from asm: service call has been retried 1 "
        f"time(s): failed to fetch secret {missing} from secrets manager: ResourceNotFoundException: "
        "Secrets Manager can't find the specified secret."), stopped["stoppedReason"]
    assert docker_ids({"gantry.task-arn": task["taskArn"]}) == []

    param = "/" + unique("nothing")
    td = node.register(unique("nossm"), [node.container(
        "main", secrets=[{"name": "X", "valueFrom": param}])], executionRoleArn=EXEC_ROLE)
    stopped = node.wait_status(node.run(td)["taskArn"], "STOPPED", timeout=30)
    assert stopped.get("stopCode") == "TaskFailedToStart", stopped
    assert stopped["stoppedReason"].startswith(
        "ResourceInitializationError: unable to pull secrets or registry auth: execution resource "
        "retrieval failed: unable to retrieve secrets from ssm"), stopped["stoppedReason"]
    assert stopped["stoppedReason"].endswith(f"invalid parameters: {param}")


def test_fargate_task_gets_its_secrets(spawn_server, docker_run_id, unique):
    from harness import busybox_container, wait_for
    up = spawn_server("up", command="up")
    cluster = unique("fargate")
    up.aws_ok("ecs", "create-cluster", "--cluster-name", cluster)
    db = up.aws_ok("secretsmanager", "create-secret", "--name", unique("db"),
                   "--secret-string", json.dumps({"user": "admin", "pass": "fp"}))
    whole = up.aws_ok("secretsmanager", "create-secret", "--name", unique("whole"),
                      "--secret-string", '{"user":"admin"}')
    param = "/" + unique("api") + "/token"
    up.aws_ok("ssm", "put-parameter", "--name", param, "--value", "tok-from-ssm", "--type", "SecureString")
    family = unique("fsec")
    up.aws_ok("ecs", "register-task-definition", "--family", family, "--network-mode", "awsvpc",
              "--requires-compatibilities", "FARGATE", "--cpu", "256", "--memory", "512",
              "--execution-role-arn", EXEC_ROLE, "--container-definitions", json.dumps([
                  busybox_container("main", docker_run_id, memory=None, command=["sh", "-c", CHECK],
                                    environment=[{"name": "WANT_PASS", "value": "fp"}],
                                    secrets=[{"name": "DB_USER", "valueFrom": f"{db['ARN']}:user::"},
                                             {"name": "DB_PASS", "valueFrom": f"{db['ARN']}:pass::"},
                                             {"name": "WHOLE", "valueFrom": whole["ARN"]},
                                             {"name": "API_TOKEN", "valueFrom": param}])]))

    def run():
        out = up.aws_ok("ecs", "run-task", "--cluster", cluster, "--launch-type", "FARGATE",
                        "--task-definition", family, "--network-configuration",
                        "awsvpcConfiguration={subnets=[subnet-local],assignPublicIp=DISABLED}")
        return out["tasks"][0] if out["tasks"] else None

    arn = wait_for(run, 20, interval=0.2, what="Fargate capacity")["taskArn"]
    rc, err = up.aws("ecs", "wait", "tasks-stopped", "--cluster", cluster, "--tasks", arn)
    assert rc == 0, err
    t = up.ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]
    assert t["containers"][0].get("exitCode") == 0, t
    assert "tok-from-ssm" not in up.log_text()
