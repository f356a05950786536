"""Resources are kept per region; the region comes from each request's SigV4 scope."""

from harness import arn, expect_error, simple_container


def test_cluster_invisible_from_other_region(gantry, unique):
    name = unique("reg")
    us, eu = gantry.client("us-east-1"), gantry.client("eu-west-1")
    out = gantry.aws_ok("ecs", "create-cluster", "--cluster-name", name, region="us-east-1")
    assert out["cluster"]["clusterArn"] == arn("cluster", name, "us-east-1")

    assert gantry.aws_ok("ecs", "list-clusters", region="eu-west-1")["clusterArns"] == []
    assert eu.list_clusters()["clusterArns"] == []
    out = eu.describe_clusters(clusters=[name])
    assert out["clusters"] == []
    assert out["failures"] == [{"arn": arn("cluster", name, "eu-west-1"), "reason": "MISSING"}]
    expect_error(lambda: eu.delete_cluster(cluster=name), "ClusterNotFoundException",
                 "Cluster not found.")

    # The same name in another region is a different cluster.
    eu_cluster = eu.create_cluster(clusterName=name)["cluster"]
    assert eu_cluster["clusterArn"] == arn("cluster", name, "eu-west-1")
    eu.delete_cluster(cluster=name)
    assert us.list_clusters()["clusterArns"] == [arn("cluster", name, "us-east-1")]


def test_cli_region_flag(gantry, unique):
    name = unique("flag")
    out = gantry.aws_ok("ecs", "create-cluster", "--cluster-name", name, "--region", "eu-west-1")
    assert out["cluster"]["clusterArn"] == arn("cluster", name, "eu-west-1")
    assert gantry.aws_ok("ecs", "list-clusters")["clusterArns"] == []
    assert gantry.aws_ok("ecs", "list-clusters", "--region", "eu-west-1")["clusterArns"] == [
        arn("cluster", name, "eu-west-1")]


def test_task_definitions_per_region(gantry, unique):
    family = unique("tdreg")
    us, eu = gantry.client("us-east-1"), gantry.client("eu-west-1")
    for _ in range(2):
        us.register_task_definition(family=family, containerDefinitions=[simple_container()])
    expect_error(lambda: eu.describe_task_definition(taskDefinition=family), "ClientException",
                 "Unable to describe task definition.")
    td = eu.register_task_definition(family=family,
                                     containerDefinitions=[simple_container()])["taskDefinition"]
    assert td["revision"] == 1
    assert td["taskDefinitionArn"] == arn("task-definition", f"{family}:1", "eu-west-1")
    assert eu.list_task_definition_families()["families"] == [family]
    assert len(us.list_task_definitions(familyPrefix=family)["taskDefinitionArns"]) == 2


def test_capacity_providers_and_settings_per_region(gantry, unique):
    us, eu = gantry.client("us-east-1"), gantry.client("eu-west-1")
    name = unique("cpreg")
    us.create_capacity_provider(name=name, autoScalingGroupProvider={
        "autoScalingGroupArn": "arn:aws:autoscaling:us-east-1:000000000000:autoScalingGroup:"
                               f"11111111-2222-3333-4444-555555555555:autoScalingGroupName/{name}"})
    out = eu.describe_capacity_providers(capacityProviders=[name, "FARGATE"])
    assert [p["capacityProviderArn"] for p in out["capacityProviders"]] == [
        arn("capacity-provider", "FARGATE", "eu-west-1")]
    assert out["failures"] == [{"arn": arn("capacity-provider", name, "eu-west-1"),
                                "reason": "MISSING"}]

    us.put_account_setting(name="containerInsights", value="enabled")
    assert eu.list_account_settings(name="containerInsights")["settings"] == []
