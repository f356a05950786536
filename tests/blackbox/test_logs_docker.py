"""The awslogs driver with real Docker: a service's output in CloudWatch Logs, read back with
the AWS CLI (`aws logs get-log-events`, `filter-log-events`), across a kill -9 of the agent."""

from __future__ import annotations

import json
import subprocess
import time

import boto3

from harness import busybox_container, gantry_bin, wait_for

# Prints {"n":0,"t":MS,"w":"seven"}, {"n":1,"t":MS}, ... every 50 ms: MS is the print time in
# Unix milliseconds (busybox's date has no sub-second format; adjtimex reads the clock, its
# `tv_usec` in nanoseconds when the kernel's status has STA_NANO, 8192, as NTP daemons set it),
# and every seventh line carries the word "seven".
AWK = r"""/status/{st=$2} /tv_sec/{s=$2} /tv_usec/{u=$2} END{
  ms = and(st, 8192) ? int(u/1000000) : int(u/1000);
  printf "{\"n\":%d,\"t\":%d%03d%s}\n", n, s, ms, (n%7==0 ? ",\"w\":\"seven\"" : "")}"""
COUNTER = ["sh", "-c", f"i=0; while true; do adjtimex | awk -v n=$i '{AWK}'; i=$((i+1)); "
           "usleep 50000; done"]


def awslogs(group: str, **extra) -> dict:
    options = {"awslogs-group": group, "awslogs-region": "us-east-1", "awslogs-stream-prefix": "app"}
    options.update(extra)
    return {"logDriver": "awslogs", "options": options}


def all_events(node, group: str, stream: str) -> list[dict]:
    """Every event of a stream with the AWS CLI, following nextForwardToken to the end (AWS
    answers an empty page at the end). The stream must no longer grow: on a live stream each
    CLI call (~1 s) finds the lines printed meanwhile, and the loop would never end."""
    events, token = [], None
    while True:
        args = ["logs", "get-log-events", "--log-group-name", group, "--log-stream-name", stream,
                "--start-from-head"]
        if token:
            args += ["--next-token", token]
        page = node.aws_ok(*args)
        if not page["events"]:
            return events
        events += page["events"]
        token = page["nextForwardToken"]


def logs_client(node):
    return boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test",
                                 region_name="us-east-1").client(
        "logs", endpoint_url=node.server.endpoint)


def numbered(logs, group: str, stream: str) -> list[dict]:
    """The stream's events so far, parsed (`n`, `t` and the event's times), read with boto3:
    each poll is one or two quick calls, so a poll sees the stream within a few ms. Paging
    stops at the first page that ends before its limit (the rest is still being written)."""
    out, token = [], None
    while True:
        kw = {"nextToken": token} if token else {"startFromHead": True}
        page = logs.get_log_events(logGroupName=group, logStreamName=stream, limit=10000, **kw)
        for e in page["events"]:
            out.append({**json.loads(e["message"]), "ts": e["timestamp"],
                        "ingested": e["ingestionTime"]})
        if len(page["events"]) < 10000:
            return out
        token = page["nextForwardToken"]


def test_awslogs_every_line_in_order_within_a_second_and_across_an_agent_kill(spawn_agent, unique):
    node = spawn_agent("awslogs")
    logs = logs_client(node)
    group = "/ecs/" + unique("counter")
    node.aws_ok("logs", "create-log-group", "--log-group-name", group)
    td = node.register(unique("counter"), [node.container("main", command=COUNTER,
                                                          logConfiguration=awslogs(group))])
    name = unique("printer")
    node.aws_ok("ecs", "create-service", "--cluster", node.cluster, "--service-name", name,
                "--task-definition", td, "--desired-count", "1")

    def running_task():
        arns = node.ecs.list_tasks(cluster=node.cluster, serviceName=name)["taskArns"]
        tasks = node.ecs.describe_tasks(cluster=node.cluster, tasks=arns)["tasks"] if arns else []
        return next((t for t in tasks if t["lastStatus"] == "RUNNING"), None)
    task = wait_for(running_task, 60, interval=0.2, what="the service's task RUNNING")
    stream = f"app/main/{task['taskArn'].rsplit('/', 1)[1]}"

    def at_least(count: int):
        def check():
            seen = numbered(logs, group, stream)
            return seen if len(seen) >= count else None
        return check
    first = wait_for(at_least(60), 60, interval=0.05, what="60 lines shipped")

    # Every line in order, each in CloudWatch within 1 s of its printing.
    assert [e["n"] for e in first] == list(range(len(first))), "lines out of order or missing"
    slow = [e for e in first if e["ingested"] - e["t"] > 1000]
    assert not slow, f"{len(slow)} of {len(first)} lines took over 1 s: {slow[:5]}"
    # The event's timestamp is the engine's time of the line, the moment it was printed.
    assert all(abs(e["ts"] - e["t"]) < 250 for e in first), first[:5]

    # A term, a JSON pattern, --interleaved: exactly the matching lines (with the AWS CLI),
    # up to the last line read above.
    until = ["--end-time", str(first[-1]["ts"] + 1), "--interleaved"]

    def filtered(pattern: str) -> list[int]:
        found = node.aws_ok("logs", "filter-log-events", "--log-group-name", group,
                            "--filter-pattern", pattern, *until)
        assert {e["logStreamName"] for e in found["events"]} <= {stream}
        return [json.loads(e["message"])["n"] for e in found["events"]]
    assert filtered("seven") == [e["n"] for e in first if e["n"] % 7 == 0]
    assert filtered("{ $.n >= 10 && $.n < 20 }") == list(range(10, 20))
    assert filtered('{ $.n = 3 || $.w = "seven" }') == \
        [e["n"] for e in first if e["n"] % 7 == 0 or e["n"] == 3]

    # kill -9 the agent while the container keeps printing; a new agent process on the same
    # data directory adopts the task and resumes shipping from the container's log position.
    node.agent.kill()
    killed_ms = int(time.time() * 1000)
    stranded = len(numbered(logs, group, stream))
    node.agent.start(wait_connected=False)
    after = wait_for(at_least(stranded + 100), 60, interval=0.05,
                     what="shipping to resume after the agent's restart")
    resumed_ms = next(e["ingested"] for e in after if e["n"] >= stranded)

    # Stop printing: scale the service to 0 and wait for the task to stop (its last lines are
    # shipped before the container is removed); then count every line with the AWS CLI.
    node.aws_ok("ecs", "update-service", "--cluster", node.cluster, "--service", name,
                "--desired-count", "0")
    node.wait_status(task["taskArn"], "STOPPED", timeout=60)
    events = [json.loads(e["message"]) | {"ts": e["timestamp"], "ingested": e["ingestionTime"]}
              for e in all_events(node, group, stream)]
    numbers = [e["n"] for e in events]
    assert len(numbers) >= stranded + 100
    dups = len(numbers) - len(set(numbers))
    lost = sorted(set(range(max(numbers) + 1)) - set(numbers))
    assert dups == 0 and lost == [], f"{dups} duplicated, lost {lost[:20]}"
    assert numbers == list(range(len(numbers))), "lines out of order"
    # Lines printed while no agent ran waited for the new one; all others took under 1 s.
    slow = [e for e in events
            if e["ingested"] - e["t"] > 1000 and not killed_ms - 1000 <= e["t"] <= resumed_ms]
    assert not slow, f"{len(slow)} lines took over 1 s outside the agent's absence: {slow[:5]}"
    # `gantry logs` reads the same store: the same lines, in the same order.
    shown = subprocess.run([str(gantry_bin()), "logs", task["taskArn"], "--data-dir",
                            str(node.server.data_dir)], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert [json.loads(x)["n"] for x in shown.stdout.splitlines()] == numbers
    node.ecs.delete_service(cluster=node.cluster, service=name, force=True)


def test_awslogs_missing_group_fails_the_task_unless_created(node, unique):
    group = "/ecs/" + unique("missing")
    td = node.register(unique("nogroup"), [node.container("main", command=["echo", "hi"],
                                                          logConfiguration=awslogs(group))])
    stopped = node.wait_status(node.run(td)["taskArn"], "STOPPED")
    reason = stopped["stoppedReason"]
    assert reason.startswith("CannotStartContainerError: Error response from daemon: failed to "
                             "initialize logging driver: failed to create Cloudwatch log stream: "
                             "ResourceNotFoundException: The specified log group does not exist."), reason
    assert stopped["containers"][0]["reason"] == reason

    td = node.register(unique("mkgroup"), [node.container(
        "main", command=["sh", "-c", "echo hello; echo world >&2"],
        logConfiguration=awslogs(group, **{"awslogs-create-group": "true"}))])
    task = node.run(td)
    stream = f"app/main/{task['taskArn'].rsplit('/', 1)[1]}"
    node.wait_status(task["taskArn"], "STOPPED")
    got = node.aws_ok("logs", "get-log-events", "--log-group-name", group,
                      "--log-stream-name", stream, "--start-from-head")
    assert sorted(e["message"] for e in got["events"]) == ["hello", "world"]


def test_splunk_and_firelens_tasks_are_refused_by_ec2_instances(node, unique):
    """FireLens and Splunk are out of Gantry's scope: as on ECS, an EC2 instance without the
    drivers' capability attributes never gets the task (RunTask's failure `ATTRIBUTE`)."""
    for driver, options, extra in (
            ("splunk", {"splunk-url": "https://splunk.example.com:8088", "splunk-token": "t"}, {}),
            ("awsfirelens", {"Name": "cloudwatch"}, {})):
        td = node.register(unique(driver), [node.container(
            "main", command=["true"], logConfiguration={"logDriver": driver, "options": options},
            **extra)])
        out = node.ecs.run_task(cluster=node.cluster, taskDefinition=td)
        assert out["tasks"] == [], out
        assert [f["reason"] for f in out["failures"]] == ["ATTRIBUTE"], out
        assert out["failures"][0]["arn"] == node.agent.instance_arn, out


def test_a_fargate_task_with_splunk_stops_at_start(spawn_server, docker_run_id, unique):
    """On Fargate (`gantry up`'s in-process node) a Splunk container cannot be served: the task
    stops before any container runs, with the error a host without the driver gives."""
    up = spawn_server("up", command="up")
    cluster = unique("fargate")
    up.aws_ok("ecs", "create-cluster", "--cluster-name", cluster)
    family = unique("splunk")
    up.aws_ok("ecs", "register-task-definition", "--family", family, "--network-mode", "awsvpc",
              "--requires-compatibilities", "FARGATE", "--cpu", "256", "--memory", "512",
              "--container-definitions", json.dumps([busybox_container(
                  "main", docker_run_id, memory=None, command=["sleep", "60"],
                  logConfiguration={"logDriver": "splunk", "options": {
                      "splunk-url": "https://splunk.example.com:8088", "splunk-token": "t"}})]))

    def run():
        out = up.aws_ok("ecs", "run-task", "--cluster", cluster, "--launch-type", "FARGATE",
                        "--task-definition", family, "--network-configuration",
                        "awsvpcConfiguration={subnets=[subnet-local],assignPublicIp=DISABLED}")
        return out["tasks"][0] if out["tasks"] else None
    arn = wait_for(run, 20, interval=0.2, what="Fargate capacity")["taskArn"]

    def stopped():
        t = up.ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]
        return t if t["lastStatus"] == "STOPPED" else None
    t = wait_for(stopped, 60, interval=0.2, what="the task to stop")
    reason = ("CannotStartContainerError: Error response from daemon: failed to initialize "
              "logging driver: logging driver splunk is not supported by Gantry")
    assert t["stoppedReason"] == reason, t
    assert t["containers"][0]["reason"] == reason, t
    assert t["stopCode"] == "TaskFailedToStart", t
