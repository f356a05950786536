"""maxResults/nextToken pagination on every List* call, through more than 100 items, with the
CLI's automatic pagination and with manual boto3 loops."""

import pytest

from harness import arn, expect_error, register_instance, simple_container


def pages(call, key, **kw):
    """Follow nextToken by hand; returns the list of pages."""
    out, token = [], None
    for _ in range(1000):
        args = dict(kw)
        if token:
            args["nextToken"] = token
        resp = call(**args)
        out.append(resp[key])
        token = resp.get("nextToken")
        if not token:
            return out
    raise AssertionError("pagination never ended")


def flatten(page_list):
    return [x for p in page_list for x in p]


def assert_complete(items, expected):
    assert len(items) == len(set(items)), "duplicates across pages"
    assert sorted(items) == sorted(expected), (
        f"missing {sorted(set(expected) - set(items))[:5]}, extra {sorted(set(items) - set(expected))[:5]}")


@pytest.fixture
def clusters_120(ecs, unique):
    base = unique("pg")
    names = [f"{base}-{i:03d}" for i in range(120)]
    for n in names:
        ecs.create_cluster(clusterName=n)
    return [arn("cluster", n) for n in names]


def test_list_clusters_cli_auto_pagination(gantry, clusters_120):
    out = gantry.aws_ok("ecs", "list-clusters")
    assert_complete(out["clusterArns"], clusters_120)
    assert "nextToken" not in out and "NextToken" not in out
    out = gantry.aws_ok("ecs", "list-clusters", "--page-size", "7")
    assert_complete(out["clusterArns"], clusters_120)


def test_list_clusters_cli_max_items_and_starting_token(gantry, clusters_120):
    first = gantry.aws_ok("ecs", "list-clusters", "--max-items", "50", "--page-size", "30")
    assert len(first["clusterArns"]) == 50
    token = first["NextToken"]
    rest = gantry.aws_ok("ecs", "list-clusters", "--starting-token", token, "--page-size", "30")
    assert_complete(first["clusterArns"] + rest["clusterArns"], clusters_120)


def test_list_clusters_boto3_manual(ecs, clusters_120):
    page_list = pages(ecs.list_clusters, "clusterArns", maxResults=25)
    assert [len(p) for p in page_list] == [25, 25, 25, 25, 20]
    assert_complete(flatten(page_list), clusters_120)

    # Without maxResults a page holds at most 100.
    first = ecs.list_clusters()
    assert 0 < len(first["clusterArns"]) <= 100
    assert first.get("nextToken")
    assert_complete(flatten(pages(ecs.list_clusters, "clusterArns")), clusters_120)

    # maxResults=100 exactly: two pages.
    page_list = pages(ecs.list_clusters, "clusterArns", maxResults=100)
    assert [len(p) for p in page_list] == [100, 20]


def test_list_clusters_boto3_paginator(ecs, clusters_120):
    paginator = ecs.get_paginator("list_clusters")
    items = [a for page in paginator.paginate(PaginationConfig={"PageSize": 11})
             for a in page["clusterArns"]]
    assert_complete(items, clusters_120)


def test_task_definition_revisions_130(gantry, ecs, unique):
    family = unique("revs")
    for _ in range(130):
        ecs.register_task_definition(family=family, containerDefinitions=[simple_container()])
    expected = [arn("task-definition", f"{family}:{i}") for i in range(1, 131)]

    out = gantry.aws_ok("ecs", "list-task-definitions", "--family-prefix", family)
    assert out["taskDefinitionArns"] == expected  # ascending, numeric revision order
    out = gantry.aws_ok("ecs", "list-task-definitions", "--family-prefix", family,
                        "--sort", "DESC", "--page-size", "17")
    assert out["taskDefinitionArns"] == expected[::-1]

    page_list = pages(ecs.list_task_definitions, "taskDefinitionArns", familyPrefix=family,
                      maxResults=40)
    assert [len(p) for p in page_list] == [40, 40, 40, 10]
    assert flatten(page_list) == expected
    page_list = pages(ecs.list_task_definitions, "taskDefinitionArns", familyPrefix=family,
                      sort="DESC", maxResults=33)
    assert flatten(page_list) == expected[::-1]
    assert len(ecs.list_task_definitions(familyPrefix=family)["taskDefinitionArns"]) == 100


def test_task_definition_families_105(gantry, ecs, unique):
    base = unique("fams")
    families = [f"{base}-{i:03d}" for i in range(105)]
    for f in families:
        ecs.register_task_definition(family=f, containerDefinitions=[simple_container()])
    out = gantry.aws_ok("ecs", "list-task-definition-families", "--family-prefix", base)
    assert out["families"] == families
    page_list = pages(ecs.list_task_definition_families, "families", familyPrefix=base,
                      maxResults=50)
    assert [len(p) for p in page_list] == [50, 50, 5]
    assert flatten(page_list) == families


def test_list_container_instances_pages(gantry, ecs, unique):
    cluster = unique("cis")
    ecs.create_cluster(clusterName=cluster)
    arns = [register_instance(ecs, cluster)["containerInstanceArn"] for _ in range(5)]
    page_list = pages(ecs.list_container_instances, "containerInstanceArns", cluster=cluster,
                      maxResults=2)
    assert [len(p) for p in page_list] == [2, 2, 1]
    assert_complete(flatten(page_list), arns)
    out = gantry.aws_ok("ecs", "list-container-instances", "--cluster", cluster,
                        "--page-size", "2")
    assert_complete(out["containerInstanceArns"], arns)


def test_list_attributes_pages(ecs, unique):
    cluster = unique("attrs")
    ecs.create_cluster(clusterName=cluster)
    ci = register_instance(ecs, cluster)["containerInstanceArn"]
    names = [f"custom.p{i}" for i in range(7)]
    ecs.put_attributes(cluster=cluster, attributes=[
        {"name": n, "value": "v", "targetId": ci} for n in names])
    page_list = pages(ecs.list_attributes, "attributes", cluster=cluster,
                      targetType="container-instance", maxResults=3)
    assert all(len(p) <= 3 for p in page_list)
    got = [a["name"] for a in flatten(page_list)]
    assert len(got) == len(set(got))
    assert set(names) <= set(got)
    assert len(page_list) >= 3


def test_list_account_settings_pages(gantry, ecs):
    # ListAccountSettings takes maxResults 1..10 (10 by default).
    everything = flatten(pages(ecs.list_account_settings, "settings", effectiveSettings=True,
                               maxResults=10))
    names = [s["name"] for s in everything]
    assert len(names) >= 5 and len(names) == len(set(names)), names
    page_list = pages(ecs.list_account_settings, "settings", effectiveSettings=True, maxResults=2)
    assert all(len(p) <= 2 for p in page_list)
    assert len(page_list) >= 3
    assert sorted(s["name"] for s in flatten(page_list)) == sorted(names)
    out = gantry.aws_ok("ecs", "list-account-settings", "--effective-settings")
    assert sorted(s["name"] for s in out["settings"]) == sorted(names)
    expect_error(lambda: ecs.list_account_settings(maxResults=11), "InvalidParameterException")


def test_describe_capacity_providers_pages(ecs, unique):
    base = unique("cpp")
    names = [f"{base}-{i:02d}" for i in range(12)]
    for n in names:
        ecs.create_capacity_provider(name=n, autoScalingGroupProvider={
            "autoScalingGroupArn": "arn:aws:autoscaling:us-east-1:000000000000:autoScalingGroup:"
                                   f"11111111-2222-3333-4444-555555555555:autoScalingGroupName/{n}"})
    got, token = [], None
    for _ in range(20):
        kw = {"maxResults": 5}
        if token:
            kw["nextToken"] = token
        resp = ecs.describe_capacity_providers(**kw)
        assert len(resp["capacityProviders"]) <= 5
        got += [p["name"] for p in resp["capacityProviders"]]
        token = resp.get("nextToken")
        if not token:
            break
    assert len(got) == len(set(got))
    assert set(names) | {"FARGATE", "FARGATE_SPOT"} == set(got)


@pytest.mark.parametrize("op,kw", [
    ("list_clusters", {}),
    ("list_task_definitions", {}),
    ("list_task_definition_families", {}),
    ("list_account_settings", {}),
])
def test_invalid_next_token(ecs, op, kw):
    expect_error(lambda: getattr(ecs, op)(nextToken="this-is-not-a-token", **kw),
                 "InvalidParameterException")


@pytest.mark.parametrize("max_results", [0, 101, -5])
def test_max_results_out_of_range(ecs, max_results):
    expect_error(lambda: ecs.list_clusters(maxResults=max_results), "InvalidParameterException")
    expect_error(lambda: ecs.list_task_definitions(maxResults=max_results),
                 "InvalidParameterException")
