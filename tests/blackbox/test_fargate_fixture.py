"""The README's first session: a typical Fargate web API task definition, registered from a JSON
file with the AWS CLI and described back unchanged."""

import json
import time
from pathlib import Path

from harness import arn, assert_subset, tags_dict

FIXTURE = Path(__file__).parent / "fixtures" / "fargate-web-api.json"


def test_register_fixture_with_cli_and_describe_faithfully(gantry):
    sent = json.loads(FIXTURE.read_text())
    family = sent["family"]
    before = time.time()

    out = gantry.aws_ok("ecs", "register-task-definition", "--cli-input-json", f"file://{FIXTURE}")
    reg = out["taskDefinition"]
    assert reg["taskDefinitionArn"] == arn("task-definition", f"{family}:1")
    assert reg["revision"] == 1
    assert tags_dict(out.get("tags")) == tags_dict(sent["tags"])

    out = gantry.aws_ok("ecs", "describe-task-definition", "--task-definition", family,
                        "--include", "TAGS")
    got = out["taskDefinition"]

    # Task-level fields, one by one.
    for key, value in sent.items():
        if key in ("tags", "containerDefinitions"):
            continue
        assert key in got, f"{key} missing from describe-task-definition"
        assert_subset(value, got[key], f"taskDefinition.{key}")
    assert got["cpu"] == "512" and got["memory"] == "1024"
    assert got["networkMode"] == "awsvpc"
    assert got["requiresCompatibilities"] == ["FARGATE"]

    # The container, field by field.
    assert len(got["containerDefinitions"]) == 1
    want_c, got_c = sent["containerDefinitions"][0], got["containerDefinitions"][0]
    for key, value in want_c.items():
        assert key in got_c, f"containerDefinitions[0].{key} missing"
        assert_subset(value, got_c[key], f"containerDefinitions[0].{key}")
    assert got_c["portMappings"][0]["containerPort"] == 8080
    assert got_c["portMappings"][0]["protocol"] == "tcp"
    secrets = {s["name"]: s["valueFrom"] for s in got_c["secrets"]}
    assert secrets["DATABASE_URL"].startswith("arn:aws:secretsmanager:")
    assert secrets["API_KEY"].startswith("arn:aws:ssm:")
    assert got_c["logConfiguration"]["logDriver"] == "awslogs"
    assert got_c["healthCheck"]["command"][0] == "CMD-SHELL"

    assert tags_dict(out["tags"]) == {"app": "web-api", "team": "platform"}

    # Computed fields.
    assert got["taskDefinitionArn"] == arn("task-definition", f"{family}:1")
    assert got["family"] == family
    assert got["revision"] == 1
    assert got["status"] == "ACTIVE"
    assert {"EC2", "FARGATE"} <= set(got["compatibilities"]), got["compatibilities"]
    reqs = got["requiresAttributes"]
    assert isinstance(reqs, list) and reqs, reqs
    for r in reqs:
        assert isinstance(r, dict) and isinstance(r.get("name"), str) and r["name"], r
    # The CLI v1 prints timestamps as received: epoch seconds.
    assert isinstance(got["registeredAt"], (int, float)), got["registeredAt"]
    assert before - 60 <= got["registeredAt"] <= time.time() + 60
    assert isinstance(got["registeredBy"], str) and got["registeredBy"]


def test_fixture_requires_attributes_name_the_capabilities_it_uses(gantry):
    """ECS derives requiresAttributes from the features used: awsvpc needs task ENIs, awslogs
    needs the logging driver, secrets need the ASM/SSM capabilities, and so on."""
    gantry.aws_ok("ecs", "register-task-definition", "--cli-input-json", f"file://{FIXTURE}")
    td = gantry.ecs.describe_task_definition(taskDefinition="web-api")["taskDefinition"]
    names = {r["name"] for r in td["requiresAttributes"]}
    for expected in ("com.amazonaws.ecs.capability.logging-driver.awslogs",
                     "ecs.capability.task-eni",
                     "ecs.capability.secrets.asm.environment-variables",
                     "ecs.capability.secrets.ssm.environment-variables",
                     "com.amazonaws.ecs.capability.task-iam-role",
                     "ecs.capability.container-health-check"):
        assert expected in names, (expected, sorted(names))


def test_registering_the_fixture_twice_makes_revision_2(gantry):
    gantry.aws_ok("ecs", "register-task-definition", "--cli-input-json", f"file://{FIXTURE}")
    out = gantry.aws_ok("ecs", "register-task-definition", "--cli-input-json", f"file://{FIXTURE}")
    assert out["taskDefinition"]["revision"] == 2
    out = gantry.aws_ok("ecs", "list-task-definitions", "--family-prefix", "web-api")
    assert out["taskDefinitionArns"] == [arn("task-definition", "web-api:1"),
                                         arn("task-definition", "web-api:2")]
