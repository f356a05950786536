"""The service API through the AWS CLI and boto3: CreateService, DescribeServices, ListServices,
UpdateService, DeleteService, ListServicesByNamespace, tags on services, and task protection
errors. These assert on what the API returns, not on the scheduler's progress (which may move
counts, events and rollout states at any moment), so nothing here waits for tasks."""

import boto3
import pytest

from harness import arn, expect_error, free_port, simple_container, tags_dict


def setup_cluster(ecs, unique, **cluster_kw):
    """A cluster and two task definitions: bridge EC2 (`web`) and awsvpc FARGATE (`vpc`)."""
    name = unique("svc")
    ecs.create_cluster(clusterName=name, **cluster_kw)
    web = ecs.register_task_definition(
        family=f"{name}-web",
        containerDefinitions=[simple_container("web", portMappings=[{"containerPort": 80}])],
    )["taskDefinition"]["taskDefinitionArn"]
    vpc = ecs.register_task_definition(
        family=f"{name}-vpc", networkMode="awsvpc", requiresCompatibilities=["FARGATE"],
        cpu="256", memory="512", containerDefinitions=[simple_container("app")],
    )["taskDefinition"]["taskDefinitionArn"]
    return name, web, vpc


def test_cli_service_lifecycle(gantry, unique):
    cluster = unique("cli")
    gantry.aws_ok("ecs", "create-cluster", "--cluster-name", cluster)
    td = gantry.aws_ok("ecs", "register-task-definition", "--family", cluster,
                       "--container-definitions",
                       '[{"name":"web","image":"busybox","memory":64}]')["taskDefinition"]
    out = gantry.aws_ok("ecs", "create-service", "--cluster", cluster, "--service-name", "api",
                        "--task-definition", cluster, "--desired-count", "0",
                        "--tags", "key=team,value=core")
    s = out["service"]
    assert s["serviceArn"] == arn("service", f"{cluster}/api")
    assert s["clusterArn"] == arn("cluster", cluster)
    assert s["status"] == "ACTIVE"
    assert s["taskDefinition"] == td["taskDefinitionArn"]
    assert s["launchType"] == "EC2"
    assert s["schedulingStrategy"] == "REPLICA"
    assert s["deploymentConfiguration"]["maximumPercent"] == 200
    assert s["deploymentConfiguration"]["minimumHealthyPercent"] == 100
    assert s["deploymentConfiguration"]["deploymentCircuitBreaker"] == \
        {"enable": False, "rollback": False}
    [d] = s["deployments"]
    assert d["status"] == "PRIMARY" and d["rolloutState"] == "IN_PROGRESS"
    assert d["id"].startswith("ecs-svc/") and len(d["id"]) == len("ecs-svc/") + 19
    assert d["rolloutStateReason"] == f"ECS deployment {d['id']} in progress."

    listed = gantry.aws_ok("ecs", "list-services", "--cluster", cluster)
    assert listed["serviceArns"] == [s["serviceArn"]]

    described = gantry.aws_ok("ecs", "describe-services", "--cluster", cluster,
                              "--services", "api", "nope", "--include", "TAGS")
    assert [x["serviceName"] for x in described["services"]] == ["api"]
    assert tags_dict(described["services"][0]["tags"]) == {"team": "core"}
    assert described["failures"] == [
        {"arn": arn("service", f"{cluster}/nope"), "reason": "MISSING"}]

    gantry.aws_ok("ecs", "update-service", "--cluster", cluster, "--service", "api",
                  "--desired-count", "0", "--force-new-deployment")
    deleted = gantry.aws_ok("ecs", "delete-service", "--cluster", cluster, "--service", "api")
    assert deleted["service"]["status"] == "DRAINING"
    assert deleted["service"]["desiredCount"] == 0

    rc, err = gantry.aws("ecs", "update-service", "--cluster", cluster, "--service", "ghost",
                         "--desired-count", "1")
    assert rc == 255
    assert "An error occurred (ServiceNotFoundException) when calling the UpdateService " \
           "operation: Service not found." in err


def test_create_service_shapes(ecs, unique):
    cluster, web, vpc = setup_cluster(ecs, unique)
    s = ecs.create_service(
        cluster=cluster, serviceName="far", taskDefinition=vpc, desiredCount=0,
        launchType="FARGATE", propagateTags="SERVICE", enableECSManagedTags=True,
        healthCheckGracePeriodSeconds=30,
        networkConfiguration={"awsvpcConfiguration": {"subnets": ["subnet-1"],
                                                      "assignPublicIp": "ENABLED"}},
        deploymentConfiguration={"deploymentCircuitBreaker": {"enable": True, "rollback": True},
                                 "maximumPercent": 150, "minimumHealthyPercent": 50},
    )["service"]
    assert s["platformVersion"] == "LATEST"
    assert s["propagateTags"] == "SERVICE"
    assert s["enableECSManagedTags"] is True
    assert s["healthCheckGracePeriodSeconds"] == 30
    assert s["deploymentConfiguration"]["deploymentCircuitBreaker"] == \
        {"enable": True, "rollback": True}
    assert s["deploymentConfiguration"]["maximumPercent"] == 150
    assert s["networkConfiguration"]["awsvpcConfiguration"]["subnets"] == ["subnet-1"]
    assert s["deployments"][0]["launchType"] == "FARGATE"
    assert s["createdBy"].startswith("arn:aws:iam::")

    d = ecs.create_service(cluster=cluster, serviceName="daemon", taskDefinition=web,
                           schedulingStrategy="DAEMON")["service"]
    assert d["schedulingStrategy"] == "DAEMON"
    assert d["deploymentConfiguration"]["maximumPercent"] == 100
    assert d["deploymentConfiguration"]["minimumHealthyPercent"] == 0

    tg_arn = alb_target_group(ecs, unique("tg")[-32:], "instance")
    lb = ecs.create_service(
        cluster=cluster, serviceName="lb", taskDefinition=web, desiredCount=0,
        loadBalancers=[{"targetGroupArn": tg_arn, "containerName": "web", "containerPort": 80}],
        role="ecsServiceRole",
    )["service"]
    assert lb["loadBalancers"][0]["containerPort"] == 80
    assert lb["roleArn"] == "arn:aws:iam::000000000000:role/ecsServiceRole"

    # The same request again returns the service; a different one is not idempotent.
    again = ecs.create_service(cluster=cluster, serviceName="daemon", taskDefinition=web,
                               schedulingStrategy="DAEMON")["service"]
    assert again["deployments"][0]["id"] == d["deployments"][0]["id"]
    expect_error(lambda: ecs.create_service(cluster=cluster, serviceName="daemon",
                                            taskDefinition=web, desiredCount=1),
                 "InvalidParameterException", "Creation of service was not idempotent.")


def alb_target_group(ecs, name: str, target_type: str, listener: bool = True) -> str:
    """A target group (of `target_type`) behind an ALB's listener, made through ELBv2."""
    elb = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test",
                                region_name="us-east-1").client(
        "elbv2", endpoint_url=ecs.meta.endpoint_url)
    name = name.strip("-")
    tg = elb.create_target_group(Name=name, Protocol="HTTP", Port=80, TargetType=target_type,
                                 VpcId="vpc-1")["TargetGroups"][0]["TargetGroupArn"]
    if listener:
        lb = elb.create_load_balancer(Name=name, Subnets=["subnet-1"])["LoadBalancers"][0]
        elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP",
                            Port=free_port(),
                            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}])
    return tg


def test_a_services_target_groups_are_checked_against_elbv2(ecs, unique):
    cluster, web, _ = setup_cluster(ecs, unique)
    vpc = ecs.register_task_definition(
        family=f"{cluster}-vpcweb", networkMode="awsvpc", requiresCompatibilities=["FARGATE"],
        cpu="256", memory="512",
        containerDefinitions=[simple_container("web", portMappings=[{"containerPort": 80}])],
    )["taskDefinition"]["taskDefinitionArn"]
    ip = alb_target_group(ecs, unique("ip")[-32:], "ip")
    instance = alb_target_group(ecs, unique("in")[-32:], "instance")
    alone = alb_target_group(ecs, unique("al")[-32:], "instance", listener=False)
    ghost = ip.rsplit("/", 2)[0] + "/ghost/0123456789abcdef"
    net = {"awsvpcConfiguration": {"subnets": ["subnet-1"]}}

    def lbs(arn):
        return [{"targetGroupArn": arn, "containerName": "web", "containerPort": 80}]
    expect_error(lambda: ecs.create_service(cluster=cluster, serviceName="s", desiredCount=0,
                                            taskDefinition=web,
                                            loadBalancers=lbs(ghost)),
                 "InvalidParameterException",
                 f"The target group with targetGroupArn {ghost} does not exist.")
    expect_error(lambda: ecs.create_service(cluster=cluster, serviceName="s", desiredCount=0,
                                            taskDefinition=web,
                                            loadBalancers=lbs(alone)),
                 "InvalidParameterException",
                 f"The target group with targetGroupArn {alone} does not have an associated "
                 "load balancer.")
    expect_error(lambda: ecs.create_service(cluster=cluster, serviceName="s", desiredCount=0,
                                            taskDefinition=web,
                                            loadBalancers=lbs(ip)),
                 "InvalidParameterException",
                 f"The provided target group {ip} has target type ip, which is incompatible "
                 "with the bridge network mode specified in the task definition.")
    expect_error(lambda: ecs.create_service(cluster=cluster, serviceName="s", desiredCount=0,
                                            taskDefinition=vpc,
                                            launchType="FARGATE", networkConfiguration=net,
                                            loadBalancers=lbs(instance)),
                 "InvalidParameterException",
                 f"The provided target group {instance} has target type instance, which is "
                 "incompatible with the awsvpc network mode specified in the task definition.")
    assert ecs.list_services(cluster=cluster)["serviceArns"] == []
    s = ecs.create_service(cluster=cluster, serviceName="s", desiredCount=0,
                                            taskDefinition=vpc,
                           launchType="FARGATE", networkConfiguration=net,
                           loadBalancers=lbs(ip))["service"]
    assert s["loadBalancers"] == lbs(ip)
    # UpdateService checks the new target groups too.
    expect_error(lambda: ecs.update_service(cluster=cluster, service="s",
                                            loadBalancers=lbs(instance)),
                 "InvalidParameterException",
                 f"The provided target group {instance} has target type instance, which is "
                 "incompatible with the awsvpc network mode specified in the task definition.")


@pytest.mark.parametrize("kw,code,message", [
    ({"serviceName": "bad name"}, "InvalidParameterException",
     "Invalid service name: up to 255 letters (uppercase and lowercase), numbers, underscores, "
     "and hyphens are allowed."),
    ({"cluster": "no-such-cluster"}, "ClusterNotFoundException", "Cluster not found."),
    ({"taskDefinition": "no-such-family"}, "ClientException", "TaskDefinition not found."),
    ({"desiredCount": None}, "InvalidParameterException",
     "desiredCount is required for services using the REPLICA scheduling strategy."),
    ({"schedulingStrategy": "DAEMON"}, "InvalidParameterException",
     "The daemon scheduling strategy does not support a desired count for services. "
     "Remove the desired count value and try again"),
    ({"launchType": "FARGATE"}, "ClientException",
     "Task definition does not support launch_type FARGATE."),
    ({"networkConfiguration": {"awsvpcConfiguration": {"subnets": ["s"]}}},
     "InvalidParameterException",
     "Network Configuration is not valid for the given networkMode of this task definition."),
    ({"loadBalancers": [{"targetGroupArn": "tg", "containerName": "web", "containerPort": 81}]},
     "InvalidParameterException", "The container web did not have a container port 81 defined."),
    ({"propagateTags": "ALL"}, "InvalidParameterException",
     "propagateTags should be one of [TASK_DEFINITION,SERVICE,NONE], but was 'ALL'."),
    ({"deploymentController": {"type": "CODE_DEPLOY"}}, "UnsupportedFeatureException",
     "The CODE_DEPLOY deployment controller is not supported by this version of Gantry."),
])
def test_create_service_errors(ecs, unique, kw, code, message):
    cluster, web, _ = setup_cluster(ecs, unique)
    args = {"cluster": cluster, "serviceName": "s", "taskDefinition": web, "desiredCount": 1}
    args.update(kw)
    args = {k: v for k, v in args.items() if v is not None}
    expect_error(lambda: ecs.create_service(**args), code, message)
    assert ecs.list_services(cluster=cluster)["serviceArns"] == []


def test_update_service_deployments(ecs, unique):
    cluster, web, _ = setup_cluster(ecs, unique)
    first = ecs.create_service(cluster=cluster, serviceName="s", taskDefinition=web,
                               desiredCount=0)["service"]["deployments"][0]
    u = ecs.update_service(cluster=cluster, service="s", desiredCount=0)["service"]
    assert [d["id"] for d in u["deployments"]] == [first["id"]]
    web2 = ecs.register_task_definition(
        family=f"{cluster}-web",
        containerDefinitions=[simple_container("web", portMappings=[{"containerPort": 80}])],
    )["taskDefinition"]["taskDefinitionArn"]
    u = ecs.update_service(cluster=cluster, service=arn("service", f"{cluster}/s"),
                           taskDefinition=web2)["service"]
    assert u["taskDefinition"] == web2
    primary = u["deployments"][0]
    assert primary["status"] == "PRIMARY" and primary["taskDefinition"] == web2
    assert primary["id"] != first["id"]
    old = [d for d in u["deployments"] if d["id"] == first["id"]]
    assert len(old) <= 1 and all(d["status"] == "ACTIVE" for d in old)

    expect_error(lambda: ecs.update_service(cluster=cluster, service="ghost", desiredCount=1),
                 "ServiceNotFoundException", "Service not found.")
    expect_error(lambda: ecs.update_service(cluster="no-such", service="s", desiredCount=1),
                 "ClusterNotFoundException", "Cluster not found.")
    ecs.delete_service(cluster=cluster, service="s")
    expect_error(lambda: ecs.update_service(cluster=cluster, service="s", desiredCount=1),
                 "ServiceNotActiveException", "Service was not ACTIVE.")


def test_delete_service(ecs, unique):
    cluster, web, _ = setup_cluster(ecs, unique)
    ecs.create_service(cluster=cluster, serviceName="s", taskDefinition=web, desiredCount=3)
    expect_error(lambda: ecs.delete_service(cluster=cluster, service="s"),
                 "InvalidParameterException",
                 "The service cannot be stopped while it is scaled above 0.")
    s = ecs.delete_service(cluster=cluster, service="s", force=True)["service"]
    assert (s["status"], s["desiredCount"]) == ("DRAINING", 0)
    described = ecs.describe_services(cluster=cluster, services=["s"])["services"][0]
    assert described["status"] in ("DRAINING", "INACTIVE")
    expect_error(lambda: ecs.delete_service(cluster=cluster, service="ghost"),
                 "ServiceNotFoundException", "Service not found.")


def test_list_services_pages_and_filters(ecs, unique):
    cluster, web, vpc = setup_cluster(ecs, unique)
    for i in range(12):
        ecs.create_service(cluster=cluster, serviceName=f"s{i:02}", taskDefinition=web,
                           desiredCount=0)
    ecs.create_service(cluster=cluster, serviceName="far", taskDefinition=vpc, desiredCount=0,
                       launchType="FARGATE",
                       networkConfiguration={"awsvpcConfiguration": {"subnets": ["s"]}})
    page = ecs.list_services(cluster=cluster)
    assert len(page["serviceArns"]) == 10 and "nextToken" in page
    paginator = ecs.get_paginator("list_services")
    arns = [a for p in paginator.paginate(cluster=cluster, PaginationConfig={"PageSize": 5})
            for a in p["serviceArns"]]
    assert len(arns) == 13 and len(set(arns)) == 13
    assert ecs.list_services(cluster=cluster, launchType="FARGATE")["serviceArns"] == \
        [arn("service", f"{cluster}/far")]
    assert ecs.list_services(cluster=cluster, schedulingStrategy="DAEMON")["serviceArns"] == []
    expect_error(lambda: ecs.list_services(cluster=cluster, maxResults=101),
                 "InvalidParameterException", "maxResults must be between 1 and 100, but was 101.")
    expect_error(lambda: ecs.list_services(cluster="no-such"),
                 "ClusterNotFoundException", "Cluster not found.")


def test_describe_services_limits(ecs, unique):
    cluster, _, _ = setup_cluster(ecs, unique)
    expect_error(lambda: ecs.describe_services(cluster=cluster, services=[f"s{i}" for i in range(11)]),
                 "InvalidParameterException", "services can have at most 10 items.")
    r = ecs.describe_services(cluster=cluster, services=["a"])
    assert r["services"] == [] and r["failures"][0]["reason"] == "MISSING"


def test_service_tags_and_namespace(ecs, unique):
    cluster, web, _ = setup_cluster(ecs, unique)
    s = ecs.create_service(cluster=cluster, serviceName="s", taskDefinition=web, desiredCount=0,
                           tags=[{"key": "a", "value": "1"}],
                           serviceConnectConfiguration={"enabled": True, "namespace": "shop"})
    service_arn = s["service"]["serviceArn"]
    ecs.tag_resource(resourceArn=service_arn, tags=[{"key": "b", "value": "2"}])
    ecs.untag_resource(resourceArn=service_arn, tagKeys=["a"])
    assert tags_dict(ecs.list_tags_for_resource(resourceArn=service_arn)["tags"]) == {"b": "2"}

    assert ecs.list_services_by_namespace(namespace="shop")["serviceArns"] == [service_arn]
    expect_error(lambda: ecs.list_services_by_namespace(namespace="nowhere"),
                 "NamespaceNotFoundException", "The specified namespace wasn't found.")


def test_task_protection_errors(ecs, unique):
    cluster, _, _ = setup_cluster(ecs, unique)
    r = ecs.update_task_protection(cluster=cluster, tasks=["0123456789abcdef"],
                                   protectionEnabled=True)
    assert r["protectedTasks"] == []
    assert r["failures"] == [{"arn": arn("task", f"{cluster}/0123456789abcdef"),
                              "reason": "MISSING"}]
    expect_error(lambda: ecs.update_task_protection(cluster=cluster, tasks=["t"],
                                                    protectionEnabled=True, expiresInMinutes=2881),
                 "InvalidParameterException",
                 "expiresInMinutes must be between 1 and 2880, but was 2881.")
    expect_error(lambda: ecs.get_task_protection(cluster="no-such", tasks=["t"]),
                 "ClusterNotFoundException", "Cluster not found.")
    r = ecs.get_task_protection(cluster=cluster, tasks=["t"])
    assert r["failures"][0]["reason"] == "MISSING"
