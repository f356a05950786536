"""Scheduled tasks with the AWS CLI and real Docker (issue 17, must-show 5): an EventBridge rule
`rate(1 minute)` whose target is an ECS cluster with EcsParameters runs a busybox task twice in
a little over two minutes, each started by `events-rule/RULE-NAME`, and so does an EventBridge
Scheduler schedule (`chronos-schedule/NAME`), made at the same time so that both run in one
wait; a rule whose task definition does not exist shows its failures as AWS/Events
FailedInvocations. Wait-for-condition only."""

from __future__ import annotations

import json
import time
import uuid

from harness import DEFAULT_ACCOUNT, DEFAULT_REGION, wait_for

ROLE = f"arn:aws:iam::{DEFAULT_ACCOUNT}:role/ecsEventsRole"


def cluster_arn(name: str) -> str:
    return f"arn:aws:ecs:{DEFAULT_REGION}:{DEFAULT_ACCOUNT}:cluster/{name}"


def started_by(node, who: str) -> list[dict]:
    arns = []
    for status in ("RUNNING", "STOPPED"):
        out = node.aws_ok("ecs", "list-tasks", "--cluster", node.cluster, "--started-by", who,
                          "--desired-status", status)
        arns += out["taskArns"]
    # A task that stops between the two calls is listed by both.
    arns = list(dict.fromkeys(arns))
    if not arns:
        return []
    return node.ecs.describe_tasks(cluster=node.cluster, tasks=arns)["tasks"]


def test_a_rate_rule_and_a_schedule_run_their_task_every_minute_and_a_failing_target_shows(node, unique):
    family = unique("tick")
    td = node.aws_ok("ecs", "register-task-definition", "--family", family,
                     "--container-definitions",
                     json.dumps([node.container("tick", command=["sh", "-c", "echo tick"])]))
    td_arn = td["taskDefinition"]["taskDefinitionArn"]
    # Short names: startedBy keeps 36 characters (`events-rule/` and 24 of the name).
    tag = uuid.uuid4().hex[:10]
    rule, broken = f"em-{tag}", f"br-{tag}"
    created = time.time()
    out = node.aws_ok("events", "put-rule", "--name", rule,
                      "--schedule-expression", "rate(1 minute)")
    assert out["RuleArn"] == f"arn:aws:events:{DEFAULT_REGION}:{DEFAULT_ACCOUNT}:rule/{rule}"
    targets = [{"Id": "tick", "Arn": cluster_arn(node.cluster), "RoleArn": ROLE,
                "EcsParameters": {"TaskDefinitionArn": td_arn, "TaskCount": 1,
                                  "LaunchType": "EC2", "Group": "scheduled"},
                "Input": json.dumps({"containerOverrides": [
                    {"name": "tick", "environment": [{"name": "FROM", "value": "events"}]}]})}]
    out = node.aws_ok("events", "put-targets", "--rule", rule, "--targets", json.dumps(targets))
    assert out["FailedEntryCount"] == 0, out
    schedule = f"sc-{tag}"
    sched_target = {"Arn": cluster_arn(node.cluster), "RoleArn": ROLE,
                    "EcsParameters": {"TaskDefinitionArn": td_arn, "LaunchType": "EC2"}}
    out = node.aws_ok("scheduler", "create-schedule", "--name", schedule,
                      "--schedule-expression", "rate(1 minute)",
                      "--flexible-time-window", "Mode=OFF", "--target", json.dumps(sched_target))
    assert out["ScheduleArn"] == \
        f"arn:aws:scheduler:{DEFAULT_REGION}:{DEFAULT_ACCOUNT}:schedule/default/{schedule}"
    node.aws_ok("events", "put-rule", "--name", broken, "--schedule-expression", "rate(1 minute)")
    bad = [{"Id": "nope", "Arn": cluster_arn(node.cluster), "RoleArn": ROLE,
            "EcsParameters": {"TaskDefinitionArn": unique("no-such-family")}}]
    assert node.aws_ok("events", "put-targets", "--rule", broken,
                       "--targets", json.dumps(bad))["FailedEntryCount"] == 0

    # What the CLI shows of the rule.
    d = node.aws_ok("events", "describe-rule", "--name", rule)
    assert (d["State"], d["ScheduleExpression"], d["EventBusName"]) == \
        ("ENABLED", "rate(1 minute)", "default")
    t = node.aws_ok("events", "list-targets-by-rule", "--rule", rule)["Targets"]
    assert t[0]["EcsParameters"]["TaskDefinitionArn"] == td_arn

    # Two tasks, a minute apart, the first about a minute after the rule was made.
    who = f"events-rule/{rule}"
    tasks = wait_for(lambda: (lambda ts: ts if len(ts) >= 2 else None)(started_by(node, who)),
                     timeout=170, interval=2, what="two tasks started by the rule")
    elapsed = time.time() - created
    assert elapsed < 170, elapsed
    tasks.sort(key=lambda x: x["createdAt"])
    first, second = (x["createdAt"].timestamp() for x in tasks[:2])
    assert 50 <= first - created <= 80, first - created
    assert 50 <= second - first <= 70, second - first
    for task in tasks:
        assert task["startedBy"] == who
        assert task["group"] == "scheduled"
        assert task["taskDefinitionArn"] == td_arn
        [o] = task["overrides"]["containerOverrides"]
        assert o["environment"] == [{"name": "FROM", "value": "events"}]
    node.started += [x["taskArn"] for x in tasks]

    # The schedule's tasks, made at the same time, a minute apart too.
    by_schedule = f"chronos-schedule/{schedule}"
    stasks = wait_for(lambda: (lambda ts: ts if len(ts) >= 2 else None)(
        started_by(node, by_schedule)), timeout=30, interval=2, what="two scheduled tasks")
    stasks.sort(key=lambda x: x["createdAt"])
    s1, s2 = (x["createdAt"].timestamp() for x in stasks[:2])
    assert 50 <= s1 - created <= 80 and 50 <= s2 - s1 <= 70, (s1 - created, s2 - s1)
    assert all(x["startedBy"] == by_schedule for x in stasks)
    node.started += [x["taskArn"] for x in stasks]
    got = node.aws_ok("scheduler", "get-schedule", "--name", schedule)
    assert (got["State"], got["ScheduleExpression"]) == ("ENABLED", "rate(1 minute)")
    listed = node.aws_ok("scheduler", "list-schedules", "--name-prefix", schedule)["Schedules"]
    assert [x["Name"] for x in listed] == [schedule]
    node.aws_ok("scheduler", "delete-schedule", "--name", schedule)
    rc, err = node.aws("scheduler", "get-schedule", "--name", schedule)
    assert rc != 0 and "ResourceNotFoundException" in err, err
    # They really ran: busybox said its line and exited 0.
    done = node.wait_task(tasks[0]["taskArn"], lambda x: x["lastStatus"] == "STOPPED",
                          timeout=60, what="the first scheduled task to finish") \
        if tasks[0]["lastStatus"] != "STOPPED" else tasks[0]
    assert done["containers"][0].get("exitCode") == 0, node.summary(done)

    # The broken rule's RunTask failed each minute: AWS/Events FailedInvocations says so.
    def failed():
        out = node.aws_ok("cloudwatch", "get-metric-statistics", "--namespace", "AWS/Events",
                          "--metric-name", "FailedInvocations",
                          "--dimensions", f"Name=RuleName,Value={broken}",
                          "--start-time", str(int(created - 60)),
                          "--end-time", str(int(time.time() + 60)),
                          "--period", "60", "--statistics", "Sum")
        total = sum(p["Sum"] for p in out["Datapoints"])
        return total if total >= 1 else None
    assert wait_for(failed, timeout=30, interval=1, what="FailedInvocations") >= 1
    assert started_by(node, f"events-rule/{broken}") == []

    # Clean up as a user would: a rule with targets is not deleted.
    rc, err = node.aws("events", "delete-rule", "--name", rule)
    assert rc != 0 and "Rule can't be deleted since it has targets." in err, err
    for name, ids in ((rule, "tick"), (broken, "nope")):
        node.aws_ok("events", "remove-targets", "--rule", name, "--ids", ids)
        node.aws_ok("events", "delete-rule", "--name", name)
    assert node.aws_ok("events", "list-rules", "--name-prefix", rule)["Rules"] == []
