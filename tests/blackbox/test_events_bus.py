"""EventBridge rules with event patterns and CloudWatch Logs targets, with the AWS CLI (no
Docker): the pattern of ECS's Spot warning is accepted, a log group target in the rule's account
and region too, one elsewhere is refused as EventBridge does (a FailedEntries row). The delivery
itself is in test_spot_docker.py."""

from __future__ import annotations

import json

from harness import DEFAULT_ACCOUNT, DEFAULT_REGION

SPOT = {"source": ["aws.ecs"], "detail-type": ["ECS Task State Change"],
        "detail": {"stopCode": ["SpotInterruption"]}}


def log_group_arn(name: str, region: str = DEFAULT_REGION) -> str:
    return f"arn:aws:logs:{region}:{DEFAULT_ACCOUNT}:log-group:{name}"


def test_a_pattern_rule_takes_a_log_group_target(gantry, unique):
    rule = unique("spot-warning")
    out = gantry.aws_ok("events", "put-rule", "--name", rule, "--event-pattern", json.dumps(SPOT))
    assert out["RuleArn"].endswith(f":rule/{rule}")
    assert json.loads(gantry.aws_ok("events", "describe-rule", "--name", rule)["EventPattern"]) == SPOT
    group = f"/aws/events/{unique('spot')}"
    out = gantry.aws_ok("events", "put-targets", "--rule", rule,
                        "--targets", f"Id=log,Arn={log_group_arn(group)}")
    assert out["FailedEntryCount"] == 0, out
    targets = gantry.aws_ok("events", "list-targets-by-rule", "--rule", rule)["Targets"]
    assert [(t["Id"], t["Arn"]) for t in targets] == [("log", log_group_arn(group))]

    # A log group of another region is not this rule's to deliver to.
    elsewhere = log_group_arn(group, "eu-west-1")
    out = gantry.aws_ok("events", "put-targets", "--rule", rule, "--targets", f"Id=far,Arn={elsewhere}")
    assert out["FailedEntryCount"] == 1, out
    entry = out["FailedEntries"][0]
    assert (entry["TargetId"], entry["ErrorCode"]) == ("far", "ValidationException"), entry
    assert elsewhere in entry["ErrorMessage"], entry
    # Nor is a target Gantry cannot invoke.
    out = gantry.aws_ok("events", "put-targets", "--rule", rule, "--targets",
                        f"Id=q,Arn=arn:aws:sqs:{DEFAULT_REGION}:{DEFAULT_ACCOUNT}:queue")
    assert out["FailedEntryCount"] == 1 and out["FailedEntries"][0]["ErrorCode"] == "ValidationException", out
    gantry.aws_ok("events", "remove-targets", "--rule", rule, "--ids", "log")
    gantry.aws_ok("events", "delete-rule", "--name", rule)
