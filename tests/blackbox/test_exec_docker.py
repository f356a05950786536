"""ECS Exec for real: `gantry exec` runs a command in a running task's container through the
task's agent (`docker exec`), ExecuteCommand answers as ECS does through the AWS CLI, and every
session is recorded in CloudWatch Logs.

The AWS CLI's `execute-command` runs AWS's session-manager-plugin, which cannot be installed
here: these tests put a stand-in on PATH that only records what the CLI hands it (the session
ExecuteCommand returned), so the CLI's own call and its errors are the real ones.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest

from harness import gantry_bin


@pytest.fixture(scope="module")
def exec_task(docker_cluster, docker_run_id):
    """A running task with exec enabled (two containers) and one without."""
    node = docker_cluster
    fam = f"exec-{docker_run_id}"
    node.aws_ok("ecs", "register-task-definition", "--family", fam, "--container-definitions",
                json.dumps([node.container("app"), node.container("side")]))
    out = node.aws_ok("ecs", "run-task", "--cluster", node.cluster, "--task-definition", fam,
                      "--enable-execute-command")
    assert out["failures"] == [], out
    [task] = out["tasks"]
    # Not through node.run: the node fixture stops the tasks a test started after each test.
    [plain] = node.ecs.run_task(cluster=node.cluster, taskDefinition=fam)["tasks"]
    node.wait_status(task["taskArn"], "RUNNING")
    node.wait_status(plain["taskArn"], "RUNNING")
    yield {"arn": task["taskArn"], "run": task, "plain": plain["taskArn"]}
    for arn in (task["taskArn"], plain["taskArn"]):
        node.ecs.stop_task(cluster=node.cluster, task=arn)


def gantry_exec(node, task: str, *command: str, container: str | None = "app",
                interactive: bool = False, stdin: str = "") -> subprocess.CompletedProcess:
    args = [str(gantry_bin()), "exec", "--cluster", node.cluster, "--task", task]
    if container:
        args += ["--container", container]
    if interactive:
        args.append("--interactive")
    return subprocess.run([*args, "--", *command], input=stdin, capture_output=True, text=True,
                          env=node.server.cli_env(), timeout=60)


def test_run_task_with_exec_enabled_carries_the_managed_agent(node, exec_task):
    assert exec_task["run"]["enableExecuteCommand"] is True
    [task] = node.aws_ok("ecs", "describe-tasks", "--cluster", node.cluster,
                         "--tasks", exec_task["arn"])["tasks"]
    assert task["enableExecuteCommand"] is True
    for c in task["containers"]:
        [agent] = c["managedAgents"]
        assert agent["name"] == "ExecuteCommandAgent" and agent["lastStatus"] == "RUNNING", c
        assert agent["lastStartedAt"]
    plain = node.describe(exec_task["plain"])
    assert plain["enableExecuteCommand"] is False
    assert all("managedAgents" not in c for c in plain["containers"])


def test_gantry_exec_prints_hi(node, exec_task):
    p = gantry_exec(node, exec_task["arn"], "sh", "-c", "echo hi")
    assert (p.returncode, p.stdout) == (0, "hi\n"), p.stderr


def test_exit_code_and_stderr_come_back(node, exec_task):
    p = gantry_exec(node, exec_task["arn"], "sh", "-c", "echo oops >&2; exit 7", container="side")
    assert (p.returncode, p.stdout, p.stderr) == (7, "", "oops\n")


def test_stdin_reaches_the_command(node, exec_task):
    p = gantry_exec(node, exec_task["arn"], "sh", "-c", "tr a-z A-Z", stdin="from stdin\nline 2\n")
    assert (p.returncode, p.stdout) == (0, "FROM STDIN\nLINE 2\n"), p.stderr


def test_interactive_sessions_get_a_terminal(node, exec_task):
    p = gantry_exec(node, exec_task["arn"], "tty", interactive=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("/dev/pts/"), p.stdout
    # Without --interactive there is none.
    p = gantry_exec(node, exec_task["arn"], "tty")
    assert (p.returncode, p.stdout) == (1, "not a tty\n")


def test_errors_as_ecs_answers_them(node, exec_task):
    p = gantry_exec(node, exec_task["plain"], "sh")
    assert p.returncode == 255
    assert "(InvalidParameterException) when calling the ExecuteCommand operation: The execute " \
           "command failed because execute command was not enabled when the task was run" in p.stderr
    p = gantry_exec(node, exec_task["arn"], "sh", container=None)
    assert p.returncode == 255 and "You must specify a container name." in p.stderr


@pytest.fixture
def fake_plugin(tmp_path):
    """A stand-in session-manager-plugin on PATH: records its arguments."""
    record = tmp_path / "plugin-args.json"
    plugin = tmp_path / "session-manager-plugin"
    plugin.write_text("#!/usr/bin/env python3\nimport json, sys\n"
                      f"if len(sys.argv) > 1: open({str(record)!r}, 'w').write(json.dumps(sys.argv[1:]))\n")
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    return tmp_path, record


def cli_exec(node, path_dir, *args: str) -> subprocess.CompletedProcess:
    env = node.server.cli_env()
    env["PATH"] = f"{path_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    from harness import aws_cli
    return subprocess.run([aws_cli(), "ecs", "execute-command", "--cluster", node.cluster, *args],
                          env=env, capture_output=True, text=True, timeout=60)


def test_aws_cli_execute_command(node, exec_task, fake_plugin):
    path_dir, record = fake_plugin
    p = cli_exec(node, path_dir, "--task", exec_task["arn"], "--container", "app",
                 "--interactive", "--command", "sh")
    assert p.returncode == 0, p.stderr
    session, region, action, _profile, target, endpoint = json.loads(record.read_text())
    session = json.loads(session)
    assert session["sessionId"].startswith("ecs-execute-command-")
    assert session["streamUrl"].startswith(f"{node.server.endpoint}/_gantry/exec/v1/data-channel/")
    assert len(session["tokenValue"]) == 64
    assert (region, action, endpoint) == ("us-east-1", "StartSession", node.server.endpoint)
    assert json.loads(target)["Target"].startswith(f"ecs:{node.cluster}_")

    def error(*args):
        p = cli_exec(node, path_dir, "--task", exec_task["arn"], *args)
        assert p.returncode == 255, p
        return p.stderr.strip()

    assert error("--container", "app", "--non-interactive", "--command", "sh") == (
        "An error occurred (InvalidParameterException) when calling the ExecuteCommand "
        "operation: Interactive is the only mode supported currently.")
    assert error("--container", "nope", "--interactive", "--command", "sh") == (
        "An error occurred (InvalidParameterException) when calling the ExecuteCommand "
        f"operation: The container nope does not exist in the task {exec_task['arn']}.")
    p = cli_exec(node, path_dir, "--task", exec_task["plain"], "--container", "app",
                 "--interactive", "--command", "sh")
    assert p.returncode == 255 and "execute command was not enabled" in p.stderr
    p = cli_exec(node, path_dir, "--cluster", "no-such-cluster", "--task", exec_task["arn"],
                 "--container", "app", "--interactive", "--command", "sh")
    assert p.returncode == 255 and "(ClusterNotFoundException)" in p.stderr


def test_every_session_is_recorded(node, exec_task):
    p = gantry_exec(node, exec_task["arn"], "sh", "-c", "echo recorded; exit 3")
    assert p.returncode == 3, p.stderr
    logs = node.server.client().__class__  # noqa: F841 (the session's clients are boto3's)
    import boto3
    client = boto3.client("logs", endpoint_url=node.server.endpoint, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
    group = f"/aws/ecs/exec/{node.cluster}"
    events = [json.loads(e["message"]) for e in
              client.filter_log_events(logGroupName=group)["events"]]
    mine = [e for e in events if e["command"] == "sh -c 'echo recorded; exit 3'"]
    assert [e["event"] for e in mine] == ["SessionStarted", "SessionEnded"], events
    start, end = mine
    assert start["sessionId"] == end["sessionId"]
    assert start["taskArn"] == exec_task["arn"] and start["containerName"] == "app"
    assert start["principalArn"].startswith("arn:aws:")
    assert end["exitCode"] == 3 and end["time"] >= start["time"]
    # The token never reaches the record.
    assert all("token" not in json.dumps(e).lower() for e in mine)
    streams = client.describe_log_streams(logGroupName=group)["logStreams"]
    assert start["sessionId"] in {s["logStreamName"] for s in streams}
