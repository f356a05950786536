"""Capacity providers: CreateCapacityProvider, DescribeCapacityProviders, UpdateCapacityProvider,
DeleteCapacityProvider (FARGATE and FARGATE_SPOT exist by default)."""

import pytest

from harness import arn, expect_error, tags_dict

INVALID_NAME = ("The specified capacity provider name is invalid. Up to 255 characters are "
                "allowed, including letters (upper and lowercase), numbers, underscores, and "
                "hyphens. The name cannot be prefixed with \"aws\", \"ecs\", or \"fargate\". "
                "Specify a valid name and try again.")
ALREADY_EXISTS = ("The specified capacity provider already exists. To change the configuration "
                  "of an existing capacity provider, update the capacity provider.")
DOES_NOT_EXIST = ("The specified capacity provider does not exist. Specify a valid name or ARN "
                  "and try again.")


def asg_arn(name: str) -> str:
    return ("arn:aws:autoscaling:us-east-1:000000000000:autoScalingGroup:"
            f"8df1e3c4-0b3b-4d1e-9c8f-2f9e1c7a5b6d:autoScalingGroupName/{name}")


def asg_provider(name: str, **scaling) -> dict:
    managed = {"status": "ENABLED", "targetCapacity": 90, "minimumScalingStepSize": 1,
               "maximumScalingStepSize": 10, "instanceWarmupPeriod": 300}
    managed.update(scaling)
    return {"autoScalingGroupArn": asg_arn(name), "managedScaling": managed,
            "managedTerminationProtection": "DISABLED"}


def test_default_providers_exist(ecs):
    out = ecs.describe_capacity_providers()
    by_name = {p["name"]: p for p in out["capacityProviders"]}
    assert {"FARGATE", "FARGATE_SPOT"} <= set(by_name), by_name
    for name in ("FARGATE", "FARGATE_SPOT"):
        assert by_name[name]["capacityProviderArn"] == arn("capacity-provider", name)
        assert by_name[name]["status"] == "ACTIVE"
    out = ecs.describe_capacity_providers(capacityProviders=["FARGATE_SPOT"])
    assert [p["name"] for p in out["capacityProviders"]] == ["FARGATE_SPOT"]


def test_cli_create_describe_delete(gantry, unique):
    name = unique("cp")
    provider = asg_provider(name)
    out = gantry.aws_ok("ecs", "create-capacity-provider", "--name", name,
                        "--auto-scaling-group-provider",
                        f"autoScalingGroupArn={provider['autoScalingGroupArn']},"
                        "managedScaling={status=ENABLED,targetCapacity=90,"
                        "minimumScalingStepSize=1,maximumScalingStepSize=10,"
                        "instanceWarmupPeriod=300},managedTerminationProtection=DISABLED",
                        "--tags", "key=owner,value=ops")
    cp = out["capacityProvider"]
    assert cp["name"] == name
    assert cp["capacityProviderArn"] == arn("capacity-provider", name)
    assert cp["status"] == "ACTIVE"
    assert cp["autoScalingGroupProvider"]["autoScalingGroupArn"] == provider["autoScalingGroupArn"]

    out = gantry.aws_ok("ecs", "describe-capacity-providers", "--capacity-providers", name,
                        "--include", "TAGS")
    [d] = out["capacityProviders"]
    for key, value in provider.items():
        if isinstance(value, dict):
            for k, v in value.items():
                assert d["autoScalingGroupProvider"][key][k] == v, (key, k, d)
        else:
            assert d["autoScalingGroupProvider"][key] == value, (key, d)
    assert tags_dict(d["tags"]) == {"owner": "ops"}

    out = gantry.aws_ok("ecs", "delete-capacity-provider", "--capacity-provider", name)
    assert out["capacityProvider"]["name"] == name
    out = gantry.aws_ok("ecs", "describe-capacity-providers", "--capacity-providers", name)
    still = [p for p in out["capacityProviders"] if p["status"] == "ACTIVE"]
    assert still == [], out


def test_create_and_describe_by_arn(ecs, unique):
    name = unique("cparn")
    ecs.create_capacity_provider(name=name, autoScalingGroupProvider=asg_provider(name),
                                 tags=[{"key": "a", "value": "1"}])
    out = ecs.describe_capacity_providers(capacityProviders=[arn("capacity-provider", name)],
                                          include=["TAGS"])
    [d] = out["capacityProviders"]
    assert d["name"] == name
    assert tags_dict(d["tags"]) == {"a": "1"}
    assert out.get("failures", []) == []


def test_describe_missing_provider(ecs, unique):
    ghost = unique("ghost")
    out = ecs.describe_capacity_providers(capacityProviders=["FARGATE", ghost])
    assert [p["name"] for p in out["capacityProviders"]] == ["FARGATE"]
    assert out["failures"] == [{"arn": arn("capacity-provider", ghost), "reason": "MISSING"}]


def test_create_duplicate(ecs, unique):
    name = unique("dup")
    ecs.create_capacity_provider(name=name, autoScalingGroupProvider=asg_provider(name))
    expect_error(lambda: ecs.create_capacity_provider(
        name=name, autoScalingGroupProvider=asg_provider(name + "-other")),
        "ClientException", ALREADY_EXISTS)


@pytest.mark.parametrize("bad", ["aws-provider", "ecs-provider", "fargate-provider",
                                 "AWSProvider", "EcsCp", "Fargate2", "has space", "dot.name",
                                 "p" * 256])
def test_create_invalid_name(ecs, bad):
    expect_error(lambda: ecs.create_capacity_provider(
        name=bad, autoScalingGroupProvider=asg_provider("x")),
        ("ClientException", "InvalidParameterException"), INVALID_NAME)


def test_update_provider(gantry, ecs, unique):
    name = unique("upd")
    ecs.create_capacity_provider(name=name, autoScalingGroupProvider=asg_provider(name))
    cp = ecs.update_capacity_provider(name=name, autoScalingGroupProvider={
        "managedScaling": {"status": "ENABLED", "targetCapacity": 55,
                           "minimumScalingStepSize": 2, "maximumScalingStepSize": 20},
        "managedTerminationProtection": "DISABLED",
    })["capacityProvider"]
    assert cp["name"] == name
    [d] = ecs.describe_capacity_providers(capacityProviders=[name])["capacityProviders"]
    scaling = d["autoScalingGroupProvider"]["managedScaling"]
    assert scaling["targetCapacity"] == 55
    assert scaling["minimumScalingStepSize"] == 2
    assert scaling["maximumScalingStepSize"] == 20
    # The ASG itself cannot change.
    assert d["autoScalingGroupProvider"]["autoScalingGroupArn"] == asg_arn(name)

    out = gantry.aws_ok("ecs", "update-capacity-provider", "--name", name,
                        "--auto-scaling-group-provider",
                        "managedScaling={status=DISABLED},managedTerminationProtection=DISABLED")
    assert out["capacityProvider"]["name"] == name
    [d] = ecs.describe_capacity_providers(capacityProviders=[name])["capacityProviders"]
    assert d["autoScalingGroupProvider"]["managedScaling"]["status"] == "DISABLED"


def test_update_unknown_provider(ecs, unique):
    expect_error(lambda: ecs.update_capacity_provider(name=unique("ghost"), autoScalingGroupProvider={
        "managedScaling": {"status": "ENABLED"}}), "ClientException")


def test_delete_unknown_provider(ecs, unique):
    expect_error(lambda: ecs.delete_capacity_provider(capacityProvider=unique("ghost")),
                 "ClientException", DOES_NOT_EXIST)


def test_delete_builtin_provider_refused(ecs):
    expect_error(lambda: ecs.delete_capacity_provider(capacityProvider="FARGATE"),
                 ("ClientException", "InvalidParameterException"))
    names = [p["name"] for p in ecs.describe_capacity_providers()["capacityProviders"]]
    assert "FARGATE" in names


def test_delete_by_arn(ecs, unique):
    name = unique("delarn")
    ecs.create_capacity_provider(name=name, autoScalingGroupProvider=asg_provider(name))
    cp = ecs.delete_capacity_provider(capacityProvider=arn("capacity-provider", name))
    assert cp["capacityProvider"]["name"] == name
    out = ecs.describe_capacity_providers(capacityProviders=[name])
    assert [p for p in out["capacityProviders"] if p["status"] == "ACTIVE"] == []


def test_custom_provider_on_cluster(ecs, unique):
    name, cluster = unique("oncl"), unique("cl")
    ecs.create_capacity_provider(name=name, autoScalingGroupProvider=asg_provider(name))
    ecs.create_cluster(clusterName=cluster)
    ecs.put_cluster_capacity_providers(
        cluster=cluster, capacityProviders=[name],
        defaultCapacityProviderStrategy=[{"capacityProvider": name, "weight": 1}])
    [d] = ecs.describe_clusters(clusters=[cluster])["clusters"]
    assert d["capacityProviders"] == [name]

    # Deleting a provider that a cluster uses does not remove it (ECS reports DELETE_FAILED).
    out = ecs.delete_capacity_provider(capacityProvider=name)["capacityProvider"]
    assert out.get("updateStatus") == "DELETE_FAILED", out
    [p] = ecs.describe_capacity_providers(capacityProviders=[name])["capacityProviders"]
    assert p["status"] == "ACTIVE"
