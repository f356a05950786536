"""Clusters: CreateCluster, DescribeClusters, ListClusters, UpdateCluster, UpdateClusterSettings,
PutClusterCapacityProviders, DeleteCluster."""

import pytest

from harness import arn, expect_error, register_instance, tags_dict

ALL_INCLUDES = ["SETTINGS", "TAGS", "CONFIGURATIONS", "STATISTICS", "ATTACHMENTS"]

EXEC_CONFIG = {
    "kmsKeyId": "arn:aws:kms:us-east-1:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "logging": "OVERRIDE",
    "logConfiguration": {
        "cloudWatchLogGroupName": "/ecs/exec",
        "cloudWatchEncryptionEnabled": True,
        "s3BucketName": "exec-logs",
        "s3EncryptionEnabled": True,
        "s3KeyPrefix": "exec/",
    },
}


# ---- AWS CLI headline flow -------------------------------------------------------------------

def test_cli_cluster_lifecycle(gantry, unique):
    name = unique("cli")
    out = gantry.aws_ok("ecs", "create-cluster", "--cluster-name", name,
                        "--tags", "key=env,value=dev",
                        "--settings", "name=containerInsights,value=enabled")
    c = out["cluster"]
    assert c["clusterName"] == name
    assert c["clusterArn"] == arn("cluster", name)
    assert c["status"] == "ACTIVE"
    for counter in ("registeredContainerInstancesCount", "runningTasksCount",
                    "pendingTasksCount", "activeServicesCount"):
        assert c[counter] == 0, (counter, c)

    out = gantry.aws_ok("ecs", "list-clusters")
    assert out["clusterArns"] == [arn("cluster", name)]

    out = gantry.aws_ok("ecs", "describe-clusters", "--clusters", name,
                        "--include", "SETTINGS", "TAGS")
    assert out["failures"] == []
    [d] = out["clusters"]
    assert d["clusterArn"] == arn("cluster", name)
    assert tags_dict(d["tags"]) == {"env": "dev"}
    assert {"name": "containerInsights", "value": "enabled"} in d["settings"]

    out = gantry.aws_ok("ecs", "delete-cluster", "--cluster", name)
    assert out["cluster"]["status"] == "INACTIVE"
    assert gantry.aws_ok("ecs", "list-clusters")["clusterArns"] == []


def test_cli_unknown_cluster_error(gantry, unique):
    rc, err = gantry.aws("ecs", "delete-cluster", "--cluster", unique("ghost"))
    assert rc == 255, (rc, err)
    assert ("An error occurred (ClusterNotFoundException) when calling the DeleteCluster "
            "operation: Cluster not found.") in err


# ---- CreateCluster ---------------------------------------------------------------------------

def test_create_cluster_with_everything(ecs, unique):
    name = unique("full")
    c = ecs.create_cluster(
        clusterName=name,
        tags=[{"key": "team", "value": "infra"}, {"key": "cost", "value": "42"}],
        settings=[{"name": "containerInsights", "value": "enhanced"}],
        configuration={"executeCommandConfiguration": EXEC_CONFIG},
        capacityProviders=["FARGATE", "FARGATE_SPOT"],
        defaultCapacityProviderStrategy=[
            {"capacityProvider": "FARGATE", "weight": 1, "base": 2},
            {"capacityProvider": "FARGATE_SPOT", "weight": 3},
        ],
    )["cluster"]
    assert c["clusterArn"] == arn("cluster", name)
    assert c["capacityProviders"] == ["FARGATE", "FARGATE_SPOT"]

    [d] = ecs.describe_clusters(clusters=[name], include=ALL_INCLUDES)["clusters"]
    assert tags_dict(d["tags"]) == {"team": "infra", "cost": "42"}
    assert {"name": "containerInsights", "value": "enhanced"} in d["settings"]
    assert d["configuration"]["executeCommandConfiguration"] == EXEC_CONFIG
    assert d["capacityProviders"] == ["FARGATE", "FARGATE_SPOT"]
    strategy = {s["capacityProvider"]: s for s in d["defaultCapacityProviderStrategy"]}
    assert strategy["FARGATE"]["weight"] == 1 and strategy["FARGATE"]["base"] == 2
    assert strategy["FARGATE_SPOT"]["weight"] == 3 and strategy["FARGATE_SPOT"].get("base", 0) == 0
    assert isinstance(d["statistics"], list)
    for stat in d["statistics"]:
        assert set(stat) >= {"name", "value"}, stat
    assert isinstance(d.get("attachments", []), list)


def test_create_cluster_default_name(ecs):
    c = ecs.create_cluster()["cluster"]
    assert c["clusterName"] == "default"
    assert c["clusterArn"] == arn("cluster", "default")
    # DescribeClusters without names describes the default cluster.
    [d] = ecs.describe_clusters()["clusters"]
    assert d["clusterName"] == "default"


def test_create_cluster_is_idempotent(ecs, unique):
    name = unique("idem")
    a = ecs.create_cluster(clusterName=name)["cluster"]
    b = ecs.create_cluster(clusterName=name)["cluster"]
    assert a["clusterArn"] == b["clusterArn"]
    assert ecs.list_clusters()["clusterArns"] == [a["clusterArn"]]


def test_create_cluster_default_settings(ecs, unique):
    name = unique("defset")
    ecs.create_cluster(clusterName=name)
    [d] = ecs.describe_clusters(clusters=[name], include=["SETTINGS"])["clusters"]
    assert {"name": "containerInsights", "value": "disabled"} in d["settings"]


@pytest.mark.parametrize("bad", ["has space", "slash/name", "dot.name", "x" * 256, "émoji"])
def test_create_cluster_invalid_name(ecs, bad):
    expect_error(lambda: ecs.create_cluster(clusterName=bad), "InvalidParameterException")


def test_create_cluster_max_length_name(ecs):
    name = "c" * 255
    assert ecs.create_cluster(clusterName=name)["cluster"]["clusterName"] == name


def test_create_cluster_invalid_setting(ecs, unique):
    expect_error(lambda: ecs.create_cluster(clusterName=unique("s"), settings=[
        {"name": "containerInsights", "value": "sometimes"}]), "InvalidParameterException")
    expect_error(lambda: ecs.create_cluster(clusterName=unique("s"), settings=[
        {"name": "notASetting", "value": "enabled"}]), "InvalidParameterException")


def test_create_cluster_unknown_capacity_provider(ecs, unique):
    expect_error(lambda: ecs.create_cluster(clusterName=unique("cp"),
                                            capacityProviders=["no-such-provider"]),
                 "InvalidParameterException")


# ---- DescribeClusters ------------------------------------------------------------------------

def test_describe_clusters_by_name_and_arn_with_missing(ecs, unique):
    a, b, ghost = unique("a"), unique("b"), unique("ghost")
    ecs.create_cluster(clusterName=a)
    ecs.create_cluster(clusterName=b)
    out = ecs.describe_clusters(clusters=[a, arn("cluster", b), ghost])
    assert sorted(c["clusterName"] for c in out["clusters"]) == sorted([a, b])
    assert out["failures"] == [{"arn": arn("cluster", ghost), "reason": "MISSING"}]


def test_describe_clusters_missing_by_arn(ecs, unique):
    ghost = arn("cluster", unique("ghost"))
    out = ecs.describe_clusters(clusters=[ghost])
    assert out["clusters"] == []
    assert out["failures"] == [{"arn": ghost, "reason": "MISSING"}]


def test_describe_default_cluster_missing(ecs):
    out = ecs.describe_clusters()
    assert out["clusters"] == []
    assert out["failures"] == [{"arn": arn("cluster", "default"), "reason": "MISSING"}]


def test_describe_clusters_include_statistics_and_counts(ecs, unique):
    name = unique("stats")
    ecs.create_cluster(clusterName=name)
    register_instance(ecs, name)
    [d] = ecs.describe_clusters(clusters=[name], include=["STATISTICS"])["clusters"]
    assert d["registeredContainerInstancesCount"] == 1
    assert isinstance(d["statistics"], list)


def test_describe_clusters_each_include_alone(ecs, unique):
    name = unique("inc")
    ecs.create_cluster(clusterName=name, tags=[{"key": "k", "value": "v"}],
                       configuration={"executeCommandConfiguration": {"logging": "DEFAULT"}})
    for include in ALL_INCLUDES:
        out = ecs.describe_clusters(clusters=[name], include=[include])
        assert [c["clusterName"] for c in out["clusters"]] == [name], include
    [d] = ecs.describe_clusters(clusters=[name], include=["TAGS"])["clusters"]
    assert tags_dict(d["tags"]) == {"k": "v"}
    [d] = ecs.describe_clusters(clusters=[name], include=["CONFIGURATIONS"])["clusters"]
    assert d["configuration"]["executeCommandConfiguration"]["logging"] == "DEFAULT"


def test_describe_clusters_invalid_include(ecs, unique):
    name = unique("badinc")
    ecs.create_cluster(clusterName=name)
    expect_error(lambda: ecs.describe_clusters(clusters=[name], include=["EVERYTHING"]),
                 "InvalidParameterException")


def test_describe_clusters_over_100(ecs):
    names = [f"n{i}" for i in range(101)]
    expect_error(lambda: ecs.describe_clusters(clusters=names), "InvalidParameterException")


# ---- ListClusters ----------------------------------------------------------------------------

def test_list_clusters_excludes_deleted(ecs, unique):
    keep, gone = unique("keep"), unique("gone")
    ecs.create_cluster(clusterName=keep)
    ecs.create_cluster(clusterName=gone)
    assert sorted(ecs.list_clusters()["clusterArns"]) == sorted(
        [arn("cluster", keep), arn("cluster", gone)])
    ecs.delete_cluster(cluster=gone)
    assert ecs.list_clusters()["clusterArns"] == [arn("cluster", keep)]


# ---- UpdateCluster / UpdateClusterSettings ---------------------------------------------------

def test_update_cluster(ecs, unique):
    name = unique("upd")
    ecs.create_cluster(clusterName=name)
    c = ecs.update_cluster(cluster=name,
                           settings=[{"name": "containerInsights", "value": "enabled"}],
                           configuration={"executeCommandConfiguration": EXEC_CONFIG})["cluster"]
    assert c["clusterArn"] == arn("cluster", name)
    [d] = ecs.describe_clusters(clusters=[name], include=["SETTINGS", "CONFIGURATIONS"])["clusters"]
    assert {"name": "containerInsights", "value": "enabled"} in d["settings"]
    assert d["configuration"]["executeCommandConfiguration"] == EXEC_CONFIG


def test_cli_update_cluster(gantry, ecs, unique):
    name = unique("cliupd")
    ecs.create_cluster(clusterName=name)
    out = gantry.aws_ok("ecs", "update-cluster", "--cluster", name,
                        "--settings", "name=containerInsights,value=enhanced",
                        "--configuration",
                        '{"executeCommandConfiguration": {"logging": "NONE"}}')
    assert out["cluster"]["clusterName"] == name
    [d] = ecs.describe_clusters(clusters=[name], include=["SETTINGS", "CONFIGURATIONS"])["clusters"]
    assert {"name": "containerInsights", "value": "enhanced"} in d["settings"]
    assert d["configuration"]["executeCommandConfiguration"]["logging"] == "NONE"


def test_update_cluster_by_arn_and_unknown(ecs, unique):
    name = unique("updarn")
    ecs.create_cluster(clusterName=name)
    c = ecs.update_cluster(cluster=arn("cluster", name),
                           settings=[{"name": "containerInsights", "value": "enabled"}])["cluster"]
    assert c["clusterName"] == name
    expect_error(lambda: ecs.update_cluster(cluster=unique("ghost"), settings=[
        {"name": "containerInsights", "value": "enabled"}]),
        "ClusterNotFoundException", "Cluster not found.")


def test_update_cluster_settings(gantry, ecs, unique):
    name = unique("settings")
    ecs.create_cluster(clusterName=name)
    out = gantry.aws_ok("ecs", "update-cluster-settings", "--cluster", name,
                        "--settings", "name=containerInsights,value=enhanced")
    assert {"name": "containerInsights", "value": "enhanced"} in out["cluster"]["settings"]
    [d] = ecs.describe_clusters(clusters=[name], include=["SETTINGS"])["clusters"]
    assert {"name": "containerInsights", "value": "enhanced"} in d["settings"]
    # Back to disabled.
    ecs.update_cluster_settings(cluster=name,
                                settings=[{"name": "containerInsights", "value": "disabled"}])
    [d] = ecs.describe_clusters(clusters=[name], include=["SETTINGS"])["clusters"]
    assert {"name": "containerInsights", "value": "disabled"} in d["settings"]


def test_update_cluster_settings_errors(ecs, unique):
    name = unique("seterr")
    ecs.create_cluster(clusterName=name)
    expect_error(lambda: ecs.update_cluster_settings(
        cluster=name, settings=[{"name": "containerInsights", "value": "ENABLED"}]),
        "InvalidParameterException")
    expect_error(lambda: ecs.update_cluster_settings(
        cluster=unique("ghost"), settings=[{"name": "containerInsights", "value": "enabled"}]),
        "ClusterNotFoundException", "Cluster not found.")


# ---- PutClusterCapacityProviders -------------------------------------------------------------

def test_put_cluster_capacity_providers(gantry, ecs, unique):
    name = unique("pccp")
    ecs.create_cluster(clusterName=name)
    out = gantry.aws_ok(
        "ecs", "put-cluster-capacity-providers", "--cluster", name,
        "--capacity-providers", "FARGATE", "FARGATE_SPOT",
        "--default-capacity-provider-strategy",
        "capacityProvider=FARGATE,weight=1,base=1", "capacityProvider=FARGATE_SPOT,weight=4")
    assert out["cluster"]["capacityProviders"] == ["FARGATE", "FARGATE_SPOT"]
    [d] = ecs.describe_clusters(clusters=[name])["clusters"]
    assert d["capacityProviders"] == ["FARGATE", "FARGATE_SPOT"]
    strategy = {s["capacityProvider"]: s for s in d["defaultCapacityProviderStrategy"]}
    assert strategy["FARGATE"]["weight"] == 1 and strategy["FARGATE"]["base"] == 1
    assert strategy["FARGATE_SPOT"]["weight"] == 4

    # Replacing with an empty set clears both.
    c = ecs.put_cluster_capacity_providers(cluster=name, capacityProviders=[],
                                           defaultCapacityProviderStrategy=[])["cluster"]
    assert c.get("capacityProviders", []) == []
    assert c.get("defaultCapacityProviderStrategy", []) == []


def test_put_cluster_capacity_providers_errors(ecs, unique):
    name = unique("pccperr")
    ecs.create_cluster(clusterName=name)
    expect_error(lambda: ecs.put_cluster_capacity_providers(
        cluster=name, capacityProviders=["nope"], defaultCapacityProviderStrategy=[]),
        "InvalidParameterException")
    expect_error(lambda: ecs.put_cluster_capacity_providers(
        cluster=unique("ghost"), capacityProviders=["FARGATE"],
        defaultCapacityProviderStrategy=[]),
        "ClusterNotFoundException", "Cluster not found.")


# ---- DeleteCluster ---------------------------------------------------------------------------

def test_delete_cluster(ecs, unique):
    name = unique("del")
    ecs.create_cluster(clusterName=name)
    c = ecs.delete_cluster(cluster=arn("cluster", name))["cluster"]
    assert c["clusterName"] == name and c["status"] == "INACTIVE"
    out = ecs.describe_clusters(clusters=[name])
    # Either forgotten (MISSING) or still shown as INACTIVE, as real ECS does for a while.
    if out["clusters"]:
        assert out["clusters"][0]["status"] == "INACTIVE"
    else:
        assert out["failures"] == [{"arn": arn("cluster", name), "reason": "MISSING"}]


def test_delete_unknown_cluster(ecs, unique):
    expect_error(lambda: ecs.delete_cluster(cluster=unique("ghost")),
                 "ClusterNotFoundException", "Cluster not found.")


def test_delete_cluster_with_container_instances(ecs, unique):
    name = unique("busy")
    ecs.create_cluster(clusterName=name)
    ci = register_instance(ecs, name)
    expect_error(lambda: ecs.delete_cluster(cluster=name),
                 "ClusterContainsContainerInstancesException",
                 "The Cluster cannot be deleted while Container Instances are active.")
    assert ecs.list_clusters()["clusterArns"] == [arn("cluster", name)]
    ecs.deregister_container_instance(cluster=name, containerInstance=ci["containerInstanceArn"])
    assert ecs.delete_cluster(cluster=name)["cluster"]["status"] == "INACTIVE"


def test_recreate_deleted_cluster(ecs, unique):
    name = unique("again")
    ecs.create_cluster(clusterName=name, tags=[{"key": "gen", "value": "1"}])
    ecs.delete_cluster(cluster=name)
    c = ecs.create_cluster(clusterName=name)["cluster"]
    assert c["status"] == "ACTIVE"
    [d] = ecs.describe_clusters(clusters=[name], include=["TAGS"])["clusters"]
    assert d["status"] == "ACTIVE"
    assert d.get("tags", []) == [], "a re-created cluster must not inherit the old one's tags"
    assert ecs.list_clusters()["clusterArns"] == [arn("cluster", name)]
