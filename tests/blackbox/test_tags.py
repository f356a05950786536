"""TagResource, UntagResource, ListTagsForResource on every taggable resource kind, and `tags`
on the create calls."""

import pytest

from harness import arn, expect_error, register_instance, simple_container, tags_dict


def make_resources(ecs, unique):
    """One of each taggable kind, each created with one tag; returns {kind: arn}."""
    name = unique("tag")
    out = {}
    out["cluster"] = ecs.create_cluster(
        clusterName=name, tags=[{"key": "born", "value": "cluster"}])["cluster"]["clusterArn"]
    out["task-definition"] = ecs.register_task_definition(
        family=name, containerDefinitions=[simple_container()],
        tags=[{"key": "born", "value": "task-definition"}])["taskDefinition"]["taskDefinitionArn"]
    out["capacity-provider"] = ecs.create_capacity_provider(
        name=name, tags=[{"key": "born", "value": "capacity-provider"}],
        autoScalingGroupProvider={
            "autoScalingGroupArn": "arn:aws:autoscaling:us-east-1:000000000000:autoScalingGroup:"
                                   f"11111111-2222-3333-4444-555555555555:autoScalingGroupName/{name}",
        })["capacityProvider"]["capacityProviderArn"]
    out["container-instance"] = register_instance(
        ecs, name, tags=[{"key": "born", "value": "container-instance"}])["containerInstanceArn"]
    return out


def test_tags_on_create_and_tag_untag_every_kind(ecs, unique):
    resources = make_resources(ecs, unique)
    for kind, resource_arn in resources.items():
        assert tags_dict(ecs.list_tags_for_resource(resourceArn=resource_arn)["tags"]) == \
            {"born": kind}, kind

        ecs.tag_resource(resourceArn=resource_arn, tags=[
            {"key": "env", "value": "prod"}, {"key": "owner", "value": "me"}])
        assert tags_dict(ecs.list_tags_for_resource(resourceArn=resource_arn)["tags"]) == \
            {"born": kind, "env": "prod", "owner": "me"}, kind

        # Re-tagging a key overwrites its value.
        ecs.tag_resource(resourceArn=resource_arn, tags=[{"key": "env", "value": "dev"}])
        ecs.untag_resource(resourceArn=resource_arn, tagKeys=["owner", "born", "never-set"])
        assert tags_dict(ecs.list_tags_for_resource(resourceArn=resource_arn)["tags"]) == \
            {"env": "dev"}, kind

        ecs.untag_resource(resourceArn=resource_arn, tagKeys=["env"])
        assert ecs.list_tags_for_resource(resourceArn=resource_arn)["tags"] == [], kind


def test_cli_tagging(gantry, unique):
    name = unique("clitag")
    cluster_arn = gantry.aws_ok("ecs", "create-cluster", "--cluster-name", name)[
        "cluster"]["clusterArn"]
    gantry.aws_ok("ecs", "tag-resource", "--resource-arn", cluster_arn,
                  "--tags", "key=a,value=1", "key=b,value=2")
    out = gantry.aws_ok("ecs", "list-tags-for-resource", "--resource-arn", cluster_arn)
    assert tags_dict(out["tags"]) == {"a": "1", "b": "2"}
    gantry.aws_ok("ecs", "untag-resource", "--resource-arn", cluster_arn, "--tag-keys", "a")
    out = gantry.aws_ok("ecs", "list-tags-for-resource", "--resource-arn", cluster_arn)
    assert tags_dict(out["tags"]) == {"b": "2"}


def test_tags_visible_through_describe(ecs, unique):
    name = unique("desc")
    ecs.create_cluster(clusterName=name)
    ecs.tag_resource(resourceArn=arn("cluster", name), tags=[{"key": "k", "value": "v"}])
    [c] = ecs.describe_clusters(clusters=[name], include=["TAGS"])["clusters"]
    assert tags_dict(c["tags"]) == {"k": "v"}


def test_tag_values_may_be_empty_and_unicode(ecs, unique):
    name = unique("uni")
    cluster_arn = ecs.create_cluster(clusterName=name)["cluster"]["clusterArn"]
    tags = [{"key": "empty", "value": ""}, {"key": "ünïcode key", "value": "välue + = . _ : / @"}]
    ecs.tag_resource(resourceArn=cluster_arn, tags=tags)
    assert tags_dict(ecs.list_tags_for_resource(resourceArn=cluster_arn)["tags"]) == \
        tags_dict(tags)


def test_tagging_unknown_resources(ecs, unique):
    missing = [arn("cluster", unique("ghost")),
               arn("task-definition", f"{unique('ghost')}:1"),
               arn("capacity-provider", unique("ghost"))]
    for resource_arn in missing:
        kinds = ("ClusterNotFoundException", "ResourceNotFoundException",
                 "InvalidParameterException", "ClientException")
        expect_error(lambda: ecs.list_tags_for_resource(resourceArn=resource_arn), kinds)
        expect_error(lambda: ecs.tag_resource(resourceArn=resource_arn,
                                              tags=[{"key": "a", "value": "b"}]), kinds)
        expect_error(lambda: ecs.untag_resource(resourceArn=resource_arn, tagKeys=["a"]), kinds)


@pytest.mark.parametrize("bad", ["not-an-arn", "arn:aws:ecr:us-east-1:000000000000:repository/x",
                                 "arn:aws:ecs:us-east-1:000000000000:spaceship/x"])
def test_tagging_invalid_arn(ecs, bad):
    expect_error(lambda: ecs.list_tags_for_resource(resourceArn=bad), "InvalidParameterException")


def test_tag_limits(ecs, unique):
    cluster_arn = ecs.create_cluster(clusterName=unique("lim"))["cluster"]["clusterArn"]
    ecs.tag_resource(resourceArn=cluster_arn,
                     tags=[{"key": f"k{i}", "value": "v"} for i in range(50)])
    expect_error(lambda: ecs.tag_resource(resourceArn=cluster_arn,
                                          tags=[{"key": "one-too-many", "value": "v"}]),
                 "InvalidParameterException")
    assert len(ecs.list_tags_for_resource(resourceArn=cluster_arn)["tags"]) == 50

    other = ecs.create_cluster(clusterName=unique("lim2"))["cluster"]["clusterArn"]
    for tags in ([{"key": "k" * 129, "value": "v"}],
                 [{"key": "k", "value": "v" * 257}],
                 [{"key": "aws:reserved", "value": "v"}]):
        expect_error(lambda: ecs.tag_resource(resourceArn=other, tags=tags),
                     "InvalidParameterException")
    assert ecs.list_tags_for_resource(resourceArn=other)["tags"] == []
