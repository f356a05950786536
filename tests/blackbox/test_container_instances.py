"""Container instances (RegisterContainerInstance, DescribeContainerInstances,
ListContainerInstances, DeregisterContainerInstance) and attributes (PutAttributes,
DeleteAttributes, ListAttributes), whose targets are container instances."""

import json
import re

from harness import CPU_MEM, arn, expect_error, register_instance, tags_dict

CI_ARN = r"^arn:aws:ecs:us-east-1:000000000000:container-instance/{cluster}/[A-Za-z0-9-]+$"


def ci_id(ci_arn: str) -> str:
    return ci_arn.rsplit("/", 1)[1]


def resources(ci, key):
    return {r["name"]: r for r in ci[key]}


# ---- container instances ---------------------------------------------------------------------

def test_cli_register_describe_list_deregister(gantry, unique):
    cluster = unique("ci")
    gantry.aws_ok("ecs", "create-cluster", "--cluster-name", cluster)
    out = gantry.aws_ok("ecs", "register-container-instance", "--cluster", cluster,
                        "--total-resources", json.dumps(CPU_MEM))
    ci = out["containerInstance"]
    assert re.match(CI_ARN.format(cluster=cluster), ci["containerInstanceArn"]), ci
    assert ci["status"] == "ACTIVE"
    registered = resources(ci, "registeredResources")
    assert registered["CPU"]["integerValue"] == 2048
    assert registered["MEMORY"]["integerValue"] == 4096
    remaining = resources(ci, "remainingResources")
    assert remaining["CPU"]["integerValue"] == 2048

    out = gantry.aws_ok("ecs", "list-container-instances", "--cluster", cluster)
    assert out["containerInstanceArns"] == [ci["containerInstanceArn"]]

    out = gantry.aws_ok("ecs", "describe-container-instances", "--cluster", cluster,
                        "--container-instances", ci_id(ci["containerInstanceArn"]))
    assert [c["containerInstanceArn"] for c in out["containerInstances"]] == [
        ci["containerInstanceArn"]]
    assert out["failures"] == []

    out = gantry.aws_ok("ecs", "deregister-container-instance", "--cluster", cluster,
                        "--container-instance", ci["containerInstanceArn"])
    assert out["containerInstance"]["status"] == "INACTIVE"
    out = gantry.aws_ok("ecs", "list-container-instances", "--cluster", cluster)
    assert out["containerInstanceArns"] == []
    gantry.aws_ok("ecs", "delete-cluster", "--cluster", cluster)


def test_register_with_tags_attributes_and_counts(ecs, unique):
    cluster = unique("ci")
    ecs.create_cluster(clusterName=cluster)
    ci = register_instance(ecs, cluster,
                           attributes=[{"name": "stack", "value": "blue"}],
                           tags=[{"key": "rack", "value": "r1"}],
                           versionInfo={"agentVersion": "1.86.0", "dockerVersion": "25.0.3"})
    [d] = ecs.describe_container_instances(cluster=cluster,
                                           containerInstances=[ci["containerInstanceArn"]],
                                           include=["TAGS"])["containerInstances"]
    assert tags_dict(d["tags"]) == {"rack": "r1"}
    assert {"name": "stack", "value": "blue"}.items() <= next(
        a for a in d["attributes"] if a["name"] == "stack").items()
    assert d["versionInfo"]["agentVersion"] == "1.86.0"
    assert d["runningTasksCount"] == 0 and d["pendingTasksCount"] == 0

    second = register_instance(ecs, cluster)
    assert second["containerInstanceArn"] != ci["containerInstanceArn"]
    [c] = ecs.describe_clusters(clusters=[cluster])["clusters"]
    assert c["registeredContainerInstancesCount"] == 2
    assert sorted(ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]) == \
        sorted([ci["containerInstanceArn"], second["containerInstanceArn"]])


def test_describe_container_instances_missing(ecs, unique):
    cluster = unique("ci")
    ecs.create_cluster(clusterName=cluster)
    ci = register_instance(ecs, cluster)
    ghost_id = "0123456789abcdef0123456789abcdef"
    out = ecs.describe_container_instances(cluster=cluster, containerInstances=[
        ci["containerInstanceArn"], ghost_id])
    assert [c["containerInstanceArn"] for c in out["containerInstances"]] == [
        ci["containerInstanceArn"]]
    assert len(out["failures"]) == 1, out["failures"]
    failure = out["failures"][0]
    assert failure["reason"] == "MISSING"
    assert failure["arn"] in (ghost_id, arn("container-instance", f"{cluster}/{ghost_id}")), failure


def test_container_instance_ops_on_unknown_cluster(ecs, unique):
    ghost = unique("ghost")
    nf = ("ClusterNotFoundException", "Cluster not found.")
    expect_error(lambda: ecs.list_container_instances(cluster=ghost), *nf)
    expect_error(lambda: ecs.register_container_instance(cluster=ghost, totalResources=CPU_MEM),
                 *nf)
    expect_error(lambda: ecs.describe_container_instances(cluster=ghost, containerInstances=["x"]),
                 *nf)
    expect_error(lambda: ecs.deregister_container_instance(cluster=ghost, containerInstance="x"),
                 *nf)


def test_deregister_unknown_container_instance(ecs, unique):
    cluster = unique("ci")
    ecs.create_cluster(clusterName=cluster)
    expect_error(lambda: ecs.deregister_container_instance(
        cluster=cluster, containerInstance="0123456789abcdef0123456789abcdef"),
        ("ClientException", "InvalidParameterException"))


def test_instances_are_per_cluster(ecs, unique):
    a, b = unique("a"), unique("b")
    ecs.create_cluster(clusterName=a)
    ecs.create_cluster(clusterName=b)
    ci = register_instance(ecs, a)
    assert ecs.list_container_instances(cluster=b)["containerInstanceArns"] == []
    out = ecs.describe_container_instances(cluster=b,
                                           containerInstances=[ci["containerInstanceArn"]])
    assert out["containerInstances"] == []
    assert [f["reason"] for f in out["failures"]] == ["MISSING"]


# ---- attributes ------------------------------------------------------------------------------

def setup_instance(ecs, unique):
    cluster = unique("attr")
    ecs.create_cluster(clusterName=cluster)
    ci = register_instance(ecs, cluster)
    return cluster, ci["containerInstanceArn"]


def custom(attrs, prefix="custom."):
    return sorted(((a["name"], a.get("value"), a.get("targetId")) for a in attrs
                   if a["name"].startswith(prefix)), key=lambda t: t[0])


def test_put_list_delete_attributes(gantry, ecs, unique):
    cluster, ci_arn = setup_instance(ecs, unique)
    out = ecs.put_attributes(cluster=cluster, attributes=[
        {"name": "custom.stack", "value": "prod", "targetType": "container-instance",
         "targetId": ci_arn},
        {"name": "custom.flag", "targetId": ci_arn},
    ])
    assert custom(out["attributes"]) == [("custom.flag", None, ci_arn),
                                         ("custom.stack", "prod", ci_arn)]

    listed = ecs.list_attributes(cluster=cluster, targetType="container-instance")["attributes"]
    assert custom(listed) == [("custom.flag", None, ci_arn), ("custom.stack", "prod", ci_arn)]
    for a in listed:
        if a["name"].startswith("custom."):
            assert a["targetType"] == "container-instance"

    by_name = ecs.list_attributes(cluster=cluster, targetType="container-instance",
                                  attributeName="custom.stack")["attributes"]
    assert custom(by_name) == [("custom.stack", "prod", ci_arn)]
    by_value = ecs.list_attributes(cluster=cluster, targetType="container-instance",
                                   attributeName="custom.stack",
                                   attributeValue="prod")["attributes"]
    assert custom(by_value) == [("custom.stack", "prod", ci_arn)]
    assert ecs.list_attributes(cluster=cluster, targetType="container-instance",
                               attributeName="custom.stack",
                               attributeValue="dev")["attributes"] == []

    # The attribute shows up on the instance itself.
    [d] = ecs.describe_container_instances(cluster=cluster,
                                           containerInstances=[ci_arn])["containerInstances"]
    assert ("custom.stack", "prod") in {(a["name"], a.get("value")) for a in d["attributes"]}

    # Putting again overwrites the value.
    ecs.put_attributes(cluster=cluster, attributes=[
        {"name": "custom.stack", "value": "staging", "targetId": ci_arn}])
    listed = ecs.list_attributes(cluster=cluster, targetType="container-instance",
                                 attributeName="custom.stack")["attributes"]
    assert custom(listed) == [("custom.stack", "staging", ci_arn)]

    out = gantry.aws_ok("ecs", "delete-attributes", "--cluster", cluster, "--attributes",
                        f"name=custom.stack,targetId={ci_arn}")
    assert [a["name"] for a in out["attributes"]] == ["custom.stack"]
    listed = ecs.list_attributes(cluster=cluster, targetType="container-instance")["attributes"]
    assert custom(listed) == [("custom.flag", None, ci_arn)]


def test_attributes_by_instance_id(gantry, ecs, unique):
    cluster, ci_arn = setup_instance(ecs, unique)
    out = gantry.aws_ok("ecs", "put-attributes", "--cluster", cluster, "--attributes",
                        f"name=custom.zone,value=a,targetType=container-instance,"
                        f"targetId={ci_id(ci_arn)}")
    assert out["attributes"][0]["name"] == "custom.zone"
    out = gantry.aws_ok("ecs", "list-attributes", "--cluster", cluster,
                        "--target-type", "container-instance", "--attribute-name", "custom.zone")
    assert [(a["name"], a["value"]) for a in out["attributes"]] == [("custom.zone", "a")]
    # The target comes back as the full ARN.
    assert out["attributes"][0]["targetId"] == ci_arn

    deleted = ecs.delete_attributes(cluster=cluster, attributes=[
        {"name": "custom.zone", "targetType": "container-instance",
         "targetId": ci_id(ci_arn)}])["attributes"]
    assert [a["name"] for a in deleted] == ["custom.zone"]
    assert ecs.list_attributes(cluster=cluster, targetType="container-instance",
                               attributeName="custom.zone")["attributes"] == []


def test_attribute_errors(ecs, unique):
    cluster, ci_arn = setup_instance(ecs, unique)
    ghost_arn = arn("container-instance", f"{cluster}/0123456789abcdef0123456789abcdef")
    expect_error(lambda: ecs.put_attributes(cluster=cluster, attributes=[
        {"name": "custom.x", "value": "1", "targetId": ghost_arn}]), "TargetNotFoundException")
    expect_error(lambda: ecs.put_attributes(cluster=cluster, attributes=[]),
                 ("InvalidParameterException", "ClientException"))
    expect_error(lambda: ecs.list_attributes(cluster=cluster, targetType="spaceship"),
                 "InvalidParameterException")
    expect_error(lambda: ecs.list_attributes(cluster=unique("ghost"),
                                             targetType="container-instance"),
                 "ClusterNotFoundException", "Cluster not found.")
    expect_error(lambda: ecs.put_attributes(cluster=cluster, attributes=[
        {"name": "bad name!", "value": "1", "targetId": ci_arn}]), "InvalidParameterException")


def test_attribute_limit(ecs, unique):
    cluster, ci_arn = setup_instance(ecs, unique)
    ecs.put_attributes(cluster=cluster, attributes=[
        {"name": f"custom.a{i}", "value": "v", "targetId": ci_arn} for i in range(10)])
    expect_error(lambda: ecs.put_attributes(cluster=cluster, attributes=[
        {"name": "custom.eleventh", "value": "v", "targetId": ci_arn}]),
        "AttributeLimitExceededException")
