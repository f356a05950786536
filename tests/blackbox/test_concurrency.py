"""Concurrent writers: revisions are never handed out twice, idempotent creates stay single."""

from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from harness import arn, simple_container

TOO_MANY = "Too many concurrent attempts to create a new revision of the specified family."


def test_concurrent_registrations_get_distinct_revisions(gantry, unique):
    family = unique("race")
    threads, per_thread = 4, 25

    clients = [_fresh_client(gantry) for _ in range(threads)]

    def worker(w):
        ecs = clients[w]
        got = []
        for i in range(per_thread):
            for _ in range(50):  # ECS may ask the caller to retry; nothing else is allowed
                try:
                    td = ecs.register_task_definition(family=family, containerDefinitions=[
                        simple_container(image=f"img:{w}-{i}")])["taskDefinition"]
                    got.append((td["revision"], f"img:{w}-{i}"))
                    break
                except ClientError as e:
                    if e.response["Error"].get("Message") != TOO_MANY:
                        raise
            else:
                raise AssertionError("never got a revision")
        return got

    with ThreadPoolExecutor(threads) as pool:
        results = [r for rs in pool.map(worker, range(threads)) for r in rs]
    revisions = sorted(r for r, _ in results)
    assert revisions == list(range(1, threads * per_thread + 1))
    ecs = gantry.ecs
    for rev, image in results[::7]:
        td = ecs.describe_task_definition(taskDefinition=f"{family}:{rev}")["taskDefinition"]
        assert td["containerDefinitions"][0]["image"] == image
    listed = [a for page in ecs.get_paginator("list_task_definitions").paginate(familyPrefix=family)
              for a in page["taskDefinitionArns"]]
    assert listed == [arn("task-definition", f"{family}:{r}") for r in revisions]


def test_concurrent_create_cluster_same_name(gantry, unique):
    name = unique("same")

    clients = [_fresh_client(gantry) for _ in range(4)]

    def create(i):
        return clients[i % 4].create_cluster(clusterName=name)["cluster"]["clusterArn"]

    with ThreadPoolExecutor(4) as pool:
        arns = list(pool.map(create, range(12)))
    assert set(arns) == {arn("cluster", name)}
    assert gantry.ecs.list_clusters()["clusterArns"] == [arn("cluster", name)]


def _fresh_client(gantry):
    """A client of its own (own connection pool), made on the main thread."""
    return boto3.session.Session(
        aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1",
    ).client("ecs", endpoint_url=gantry.endpoint,
             config=Config(retries={"max_attempts": 1, "mode": "standard"}))
