"""Service deployment history through the AWS CLI and boto3, against the real binary without
Docker: a service on a cluster with no instances (its tasks cannot be placed, so a deployment
that wants tasks stays IN_PROGRESS), ListServiceDeployments, DescribeServiceDeployments,
DescribeServiceRevisions and StopServiceDeployment, with their shapes and errors."""

from harness import arn, expect_error, simple_container, wait_for


def test_deployment_history_and_stop(gantry, ecs, unique):
    cluster = unique("hist")
    ecs.create_cluster(clusterName=cluster)
    v1 = ecs.register_task_definition(
        family=cluster, containerDefinitions=[simple_container("app")])["taskDefinition"]
    v2 = ecs.register_task_definition(
        family=cluster, containerDefinitions=[simple_container("app")])["taskDefinition"]
    ecs.create_service(cluster=cluster, serviceName="web", taskDefinition=v1["taskDefinitionArn"],
                       desiredCount=0)

    def deployments():
        return ecs.list_service_deployments(cluster=cluster, service="web")["serviceDeployments"]

    # Desired 0: the first deployment completes at once.
    [first] = wait_for(lambda: [d for d in deployments() if d["status"] == "SUCCESSFUL"] or None,
                       timeout=30, what="the first deployment to succeed")
    assert first["serviceArn"] == arn("service", f"{cluster}/web")
    assert first["clusterArn"] == arn("cluster", cluster)
    assert first["serviceDeploymentArn"].startswith(arn("service-deployment", f"{cluster}/web/"))
    rev1 = first["targetServiceRevisionArn"]
    assert rev1.startswith(arn("service-revision", f"{cluster}/web/"))
    assert "finishedAt" in first and "createdAt" in first and "startedAt" in first

    # An update that wants a task nowhere to place it: IN_PROGRESS, listed first.
    ecs.update_service(cluster=cluster, service="web", taskDefinition=v2["taskDefinitionArn"],
                       desiredCount=1)
    listed = gantry.aws_ok("ecs", "list-service-deployments", "--cluster", cluster,
                           "--service", "web")["serviceDeployments"]
    assert [d["status"] for d in listed] == ["IN_PROGRESS", "SUCCESSFUL"]
    second = listed[0]["serviceDeploymentArn"]
    svc = ecs.describe_services(cluster=cluster, services=["web"])["services"][0]
    assert svc["currentServiceDeployment"] == second
    assert {r["arn"] for r in svc["currentServiceRevisions"]} >= {listed[0]["targetServiceRevisionArn"]}

    unknown = arn("service-deployment", f"{cluster}/web/1234567890123456789")
    out = ecs.describe_service_deployments(serviceDeploymentArns=[second, unknown])
    [sd] = out["serviceDeployments"]
    assert out["failures"] == [{"arn": unknown, "reason": "MISSING"}]
    assert sd["status"] == "IN_PROGRESS"
    assert sd["targetServiceRevision"]["requestedTaskCount"] == 1
    assert [s["arn"] for s in sd["sourceServiceRevisions"]] == [rev1]
    assert sd["deploymentCircuitBreaker"] == {"status": "DISABLED", "failureCount": 0, "threshold": 3}
    assert sd["deploymentConfiguration"]["maximumPercent"] == 200

    unknown_rev = arn("service-revision", f"{cluster}/web/1234567890123456789")
    out = ecs.describe_service_revisions(serviceRevisionArns=[rev1, unknown_rev])
    [rev] = out["serviceRevisions"]
    assert out["failures"] == [{"arn": unknown_rev, "reason": "MISSING"}]
    assert rev["serviceRevisionArn"] == rev1
    assert rev["taskDefinition"] == v1["taskDefinitionArn"]
    assert rev["launchType"] == "EC2"
    assert rev["containerImages"] == [{"containerName": "app", "image": simple_container()["image"]}]

    # Errors.
    expect_error(lambda: ecs.stop_service_deployment(serviceDeploymentArn=second, stopType="ABORT"),
                 "UnsupportedFeatureException")
    expect_error(lambda: ecs.stop_service_deployment(serviceDeploymentArn="nope"),
                 "InvalidParameterException")
    expect_error(lambda: ecs.stop_service_deployment(serviceDeploymentArn=unknown),
                 "ServiceDeploymentNotFoundException")
    expect_error(lambda: ecs.stop_service_deployment(
        serviceDeploymentArn=first["serviceDeploymentArn"]), "ConflictException")
    expect_error(lambda: ecs.describe_service_deployments(serviceDeploymentArns=["nope"]),
                 "InvalidParameterException")
    expect_error(lambda: ecs.list_service_deployments(cluster=cluster, service="nope"),
                 "ServiceNotFoundException")
    expect_error(lambda: ecs.list_service_deployments(cluster=unique("none"), service="web"),
                 "ClusterNotFoundException")
    expect_error(lambda: ecs.list_service_deployments(cluster=cluster, service="web",
                                                      status=["DONE"]),
                 "InvalidParameterException")

    # Paging: one at a time, newest first.
    page = ecs.list_service_deployments(cluster=cluster, service="web", maxResults=1)
    assert [d["serviceDeploymentArn"] for d in page["serviceDeployments"]] == [second]
    page = ecs.list_service_deployments(cluster=cluster, service="web", maxResults=1,
                                        nextToken=page["nextToken"])
    assert [d["serviceDeploymentArn"] for d in page["serviceDeployments"]] == \
        [first["serviceDeploymentArn"]]
    assert "nextToken" not in page
    only = ecs.list_service_deployments(cluster=cluster, service="web", status=["SUCCESSFUL"])
    assert [d["serviceDeploymentArn"] for d in only["serviceDeployments"]] == \
        [first["serviceDeploymentArn"]]

    # Stop with ROLLBACK (the default): requested at once, then the scheduler rolls back to
    # revision 1 (whose task cannot be placed either, so the rollback stays in progress).
    out = ecs.stop_service_deployment(serviceDeploymentArn=second)
    assert out["serviceDeploymentArn"] == second
    status = ecs.describe_service_deployments(serviceDeploymentArns=[second])[
        "serviceDeployments"][0]["status"]
    assert status in ("ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS")
    sd = wait_for(lambda: [d for d in ecs.describe_service_deployments(
        serviceDeploymentArns=[second])["serviceDeployments"]
        if d["status"] == "ROLLBACK_IN_PROGRESS"], timeout=30, what="the rollback")[0]
    assert sd["rollback"]["serviceRevisionArn"] == rev1
    assert sd["rollback"]["reason"].startswith(
        "ECS deployment rollback requested: rolling back to deploymentId ecs-svc/")
    assert "startedAt" in sd["rollback"]
    svc = ecs.describe_services(cluster=cluster, services=["web"])["services"][0]
    assert svc["taskDefinition"] == v1["taskDefinitionArn"]
    assert svc["currentServiceDeployment"] == second
    assert len(deployments()) == 2, "a rollback has no service deployment of its own"
    # Asking again continues the rollback.
    ecs.stop_service_deployment(serviceDeploymentArn=second, stopType="ROLLBACK")

    ecs.delete_service(cluster=cluster, service="web", force=True)
