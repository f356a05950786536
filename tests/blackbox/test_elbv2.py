"""ELBv2 and ACM, driven by the AWS CLI v1 and boto3 against the real binary: load balancers,
listeners, rules, target groups, targets, tags, attributes, pagination, ELB's errors, the CLI's
waiters, and certificates imported into ACM for HTTPS listeners. (The data plane that carries
traffic is not part of this: targets are reported as nobody has probed them yet.)"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from harness import REPO, aws_cli, expect_error, wait_for

FIXTURES = REPO / "crates" / "gantry-acm" / "tests" / "fixtures"


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def client(gantry, service: str):
    return boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test",
                                 region_name="us-east-1").client(
        service, endpoint_url=gantry.endpoint,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}))


@pytest.fixture
def elb(gantry):
    return client(gantry, "elbv2")


@pytest.fixture
def acm(gantry):
    return client(gantry, "acm")


def create_lb(elb, lb_type="application", **kw):
    return elb.create_load_balancer(Name=name("lb"), Type=lb_type, Subnets=["subnet-1", "subnet-2"],
                                    **kw)["LoadBalancers"][0]


def create_tg(elb, protocol="HTTP", target_type="ip", **kw):
    return elb.create_target_group(Name=name("tg"), Protocol=protocol, Port=8080,
                                   TargetType=target_type, **kw)["TargetGroups"][0]


def forward(tg_arn):
    return [{"Type": "forward", "TargetGroupArn": tg_arn}]


def test_an_alb_with_a_target_group_listener_and_rules_through_the_cli(gantry):
    lb_name, tg_name = name("web"), name("blue")
    lb = gantry.aws_ok("elbv2", "create-load-balancer", "--name", lb_name,
                       "--subnets", "subnet-a", "subnet-b", "--security-groups", "sg-1",
                       "--tags", "Key=team,Value=web")["LoadBalancers"][0]
    assert lb["State"]["Code"] == "provisioning"
    assert lb["Type"] == "application" and lb["Scheme"] == "internet-facing"
    lb_id = lb["LoadBalancerArn"].rsplit("/", 1)[1]
    assert lb["LoadBalancerArn"] == \
        f"arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/{lb_name}/{lb_id}"
    assert lb["DNSName"] == f"{lb_name}-{lb_id}.us-east-1.elb.localhost"
    assert [z["SubnetId"] for z in lb["AvailabilityZones"]] == ["subnet-a", "subnet-b"]
    gantry.aws_ok("elbv2", "wait", "load-balancer-available", "--names", lb_name)
    gantry.aws_ok("elbv2", "wait", "load-balancer-exists", "--load-balancer-arns",
                  lb["LoadBalancerArn"])
    assert gantry.aws_ok("elbv2", "describe-load-balancers", "--names", lb_name)[
        "LoadBalancers"][0]["State"] == {"Code": "active"}

    tg = gantry.aws_ok("elbv2", "create-target-group", "--name", tg_name, "--protocol", "HTTP",
                       "--port", "8080", "--target-type", "ip", "--vpc-id", "vpc-1",
                       "--health-check-path", "/health", "--health-check-interval-seconds", "10",
                       "--matcher", "HttpCode=200-299")["TargetGroups"][0]
    assert (tg["HealthCheckPath"], tg["HealthCheckIntervalSeconds"], tg["HealthCheckTimeoutSeconds"],
            tg["HealthyThresholdCount"], tg["UnhealthyThresholdCount"], tg["Matcher"],
            tg["HealthCheckPort"], tg["HealthCheckProtocol"], tg["VpcId"]) == \
        ("/health", 10, 5, 5, 2, {"HttpCode": "200-299"}, "traffic-port", "HTTP", "vpc-1")
    assert tg["LoadBalancerArns"] == []

    listener = gantry.aws_ok("elbv2", "create-listener", "--load-balancer-arn", lb["LoadBalancerArn"],
                             "--protocol", "HTTP", "--port", "8080", "--default-actions",
                             f"Type=forward,TargetGroupArn={tg['TargetGroupArn']}")["Listeners"][0]
    assert listener["Port"] == 8080 and listener["Protocol"] == "HTTP"
    action = listener["DefaultActions"][0]
    assert action["TargetGroupArn"] == tg["TargetGroupArn"]
    assert action["ForwardConfig"] == {
        "TargetGroups": [{"TargetGroupArn": tg["TargetGroupArn"], "Weight": 1}],
        "TargetGroupStickinessConfig": {"Enabled": False}}
    assert gantry.aws_ok("elbv2", "describe-target-groups", "--names", tg_name)[
        "TargetGroups"][0]["LoadBalancerArns"] == [lb["LoadBalancerArn"]]

    larn = listener["ListenerArn"]
    rules = [
        ("30", [{"Field": "path-pattern", "Values": ["/api/*"]}]),
        ("10", [{"Field": "host-header", "HostHeaderConfig": {"Values": ["*.example.com"]}}]),
        ("20", [{"Field": "http-header", "HttpHeaderConfig": {"HttpHeaderName": "X-Canary",
                                                              "Values": ["yes"]}},
                {"Field": "http-request-method", "HttpRequestMethodConfig": {"Values": ["GET"]}}]),
        ("40", [{"Field": "query-string", "QueryStringConfig": {"Values": [{"Key": "v",
                                                                            "Value": "2"}]}},
                {"Field": "source-ip", "SourceIpConfig": {"Values": ["10.0.0.0/8"]}}]),
    ]
    arns = {}
    for prio, conds in rules:
        r = gantry.aws_ok("elbv2", "create-rule", "--listener-arn", larn, "--priority", prio,
                          "--conditions", json.dumps(conds),
                          "--actions", json.dumps(forward(tg["TargetGroupArn"])))["Rules"][0]
        arns[prio] = r["RuleArn"]
        assert r["Priority"] == prio and r["IsDefault"] is False
    described = gantry.aws_ok("elbv2", "describe-rules", "--listener-arn", larn)["Rules"]
    assert [r["Priority"] for r in described] == ["10", "20", "30", "40", "default"]
    path_rule = next(r for r in described if r["Priority"] == "30")
    assert path_rule["Conditions"] == [{"Field": "path-pattern", "Values": ["/api/*"],
                                        "PathPatternConfig": {"Values": ["/api/*"]}}]
    default = described[-1]
    assert default["IsDefault"] is True and default["Conditions"] == []

    # A fixed response, a redirect, a weighted forward.
    green = gantry.aws_ok("elbv2", "create-target-group", "--name", name("green"), "--protocol",
                          "HTTP", "--port", "8080", "--target-type", "ip")["TargetGroups"][0]
    fixed = [{"Type": "fixed-response", "FixedResponseConfig": {
        "StatusCode": "503", "ContentType": "text/plain", "MessageBody": "maintenance"}}]
    r = gantry.aws_ok("elbv2", "modify-rule", "--rule-arn", arns["30"], "--actions",
                      json.dumps(fixed))["Rules"][0]
    assert r["Actions"][0]["FixedResponseConfig"]["MessageBody"] == "maintenance"
    redirect = [{"Type": "redirect", "RedirectConfig": {"Protocol": "HTTPS", "Port": "443",
                                                        "StatusCode": "HTTP_301"}}]
    r = gantry.aws_ok("elbv2", "modify-rule", "--rule-arn", arns["40"], "--actions",
                      json.dumps(redirect))["Rules"][0]
    assert r["Actions"][0]["RedirectConfig"] == {"Protocol": "HTTPS", "Port": "443",
                                                 "Host": "#{host}", "Path": "/#{path}",
                                                 "Query": "#{query}", "StatusCode": "HTTP_301"}
    weighted = [{"Type": "forward", "ForwardConfig": {
        "TargetGroups": [{"TargetGroupArn": tg["TargetGroupArn"], "Weight": 90},
                         {"TargetGroupArn": green["TargetGroupArn"], "Weight": 10}],
        "TargetGroupStickinessConfig": {"Enabled": True, "DurationSeconds": 300}}}]
    r = gantry.aws_ok("elbv2", "modify-rule", "--rule-arn", arns["10"], "--actions",
                      json.dumps(weighted))["Rules"][0]
    assert "TargetGroupArn" not in r["Actions"][0]
    assert r["Actions"][0]["ForwardConfig"] == weighted[0]["ForwardConfig"]

    # Priorities move together; the default rule stays last.
    out = gantry.aws_ok("elbv2", "set-rule-priorities", "--rule-priorities",
                        f"RuleArn={arns['10']},Priority=50", f"RuleArn={arns['40']},Priority=5")
    assert sorted((r["RuleArn"], r["Priority"]) for r in out["Rules"]) == \
        sorted([(arns["10"], "50"), (arns["40"], "5")])
    described = gantry.aws_ok("elbv2", "describe-rules", "--listener-arn", larn)["Rules"]
    assert [r["Priority"] for r in described] == ["5", "20", "30", "50", "default"]
    gantry.aws_ok("elbv2", "delete-rule", "--rule-arn", arns["20"])
    assert len(gantry.aws_ok("elbv2", "describe-rules", "--listener-arn", larn)["Rules"]) == 4

    # The listener can move port and change its default action.
    moved = gantry.aws_ok("elbv2", "modify-listener", "--listener-arn", larn, "--port", "9090",
                          "--default-actions", json.dumps(forward(green["TargetGroupArn"])))
    assert moved["Listeners"][0]["Port"] == 9090
    assert gantry.aws_ok("elbv2", "describe-listeners", "--load-balancer-arn",
                         lb["LoadBalancerArn"])["Listeners"][0]["DefaultActions"][0][
        "TargetGroupArn"] == green["TargetGroupArn"]

    # Deleting the load balancer takes its listeners and rules; the target groups stay, unused.
    gantry.aws_ok("elbv2", "delete-load-balancer", "--load-balancer-arn", lb["LoadBalancerArn"])
    gantry.aws_ok("elbv2", "wait", "load-balancers-deleted", "--names", lb_name)
    rc, err = gantry.aws("elbv2", "describe-listeners", "--listener-arns", larn)
    assert rc != 0 and "ListenerNotFound" in err, err
    assert gantry.aws_ok("elbv2", "describe-target-groups", "--names", tg_name)[
        "TargetGroups"][0]["LoadBalancerArns"] == []
    gantry.aws_ok("elbv2", "delete-target-group", "--target-group-arn", tg["TargetGroupArn"])
    assert gantry.panics() == []


def test_elbs_errors_name_the_bad_value(elb):
    lb = create_lb(elb)
    lb_arn = lb["LoadBalancerArn"]
    # The same name and settings is the same load balancer; other settings are refused.
    again = elb.create_load_balancer(Name=lb["LoadBalancerName"], Subnets=["subnet-1", "subnet-2"])
    assert again["LoadBalancers"][0]["LoadBalancerArn"] == lb_arn
    expect_error(lambda: elb.create_load_balancer(Name=lb["LoadBalancerName"], Scheme="internal"),
                 "DuplicateLoadBalancerName",
                 f"A load balancer with the same name '{lb['LoadBalancerName']}' exists, "
                 "but with different settings")
    expect_error(lambda: elb.create_load_balancer(Name="-bad"), "ValidationError", contains="-bad")
    expect_error(lambda: elb.create_load_balancer(Name="x" * 33), "ValidationError",
                 contains="'32'")
    expect_error(lambda: elb.create_load_balancer(Name=name("lb"), Type="frob"),
                 "ValidationError", contains="'frob'")
    expect_error(lambda: elb.describe_load_balancers(Names=["nope"]), "LoadBalancerNotFound",
                 "Load balancers '[nope]' not found")
    gone = lb_arn.replace(lb_arn.rsplit("/", 2)[1], "gone")
    expect_error(lambda: elb.describe_load_balancers(LoadBalancerArns=[gone]),
                 "LoadBalancerNotFound", contains=gone)
    # Deleting what does not exist succeeds, as in ELB.
    elb.delete_load_balancer(LoadBalancerArn=gone)

    tg = create_tg(elb)
    tg_arn = tg["TargetGroupArn"]
    same = elb.create_target_group(Name=tg["TargetGroupName"], Protocol="HTTP", Port=8080,
                                   TargetType="ip")
    assert same["TargetGroups"][0]["TargetGroupArn"] == tg_arn
    expect_error(lambda: elb.create_target_group(Name=tg["TargetGroupName"], Protocol="HTTP",
                                                 Port=9090, TargetType="ip"),
                 "DuplicateTargetGroupName", contains=tg["TargetGroupName"])
    expect_error(lambda: elb.create_target_group(Name=name("tg"), Protocol="HTTP", Port=80,
                                                 HealthCheckIntervalSeconds=10,
                                                 HealthCheckTimeoutSeconds=10),
                 "ValidationError", contains="'10'")
    expect_error(lambda: elb.describe_target_groups(Names=["nope"]), "TargetGroupNotFound",
                 contains="nope")
    tcp = create_tg(elb, protocol="TCP")
    expect_error(lambda: elb.create_listener(LoadBalancerArn=lb_arn, Protocol="HTTP", Port=80,
                                             DefaultActions=forward(tcp["TargetGroupArn"])),
                 "IncompatibleProtocols", contains=tcp["TargetGroupArn"])
    expect_error(lambda: elb.create_listener(LoadBalancerArn=lb_arn, Protocol="TCP", Port=80,
                                             DefaultActions=forward(tg_arn)),
                 "UnsupportedProtocol", contains="'TCP'")

    listener = elb.create_listener(LoadBalancerArn=lb_arn, Protocol="HTTP", Port=80,
                                   DefaultActions=forward(tg_arn))["Listeners"][0]
    expect_error(lambda: elb.create_listener(LoadBalancerArn=lb_arn, Protocol="HTTP", Port=80,
                                             DefaultActions=forward(tg_arn)),
                 "DuplicateListener",
                 f"A listener already exists on this port for this load balancer '{lb_arn}'")
    expect_error(lambda: elb.create_listener(LoadBalancerArn=lb_arn, Protocol="HTTPS", Port=443,
                                             DefaultActions=forward(tg_arn)),
                 "CertificateNotFound", contains="HTTPS")
    larn = listener["ListenerArn"]
    cond = [{"Field": "path-pattern", "Values": ["/a"]}]
    elb.create_rule(ListenerArn=larn, Priority=7, Conditions=cond, Actions=forward(tg_arn))
    expect_error(lambda: elb.create_rule(ListenerArn=larn, Priority=7, Conditions=cond,
                                         Actions=forward(tg_arn)),
                 "PriorityInUse", "Priority '7' is currently in use")
    expect_error(lambda: elb.create_rule(ListenerArn=larn, Priority=8, Conditions=[
        {"Field": "path-pattern", "Values": ["/a", "/b", "/c"]},
        {"Field": "host-header", "Values": ["a", "b", "c"]}], Actions=forward(tg_arn)),
        "TooManyConditionValues", contains="'5'")
    expect_error(lambda: elb.create_rule(ListenerArn=larn, Priority=9, Conditions=[
        {"Field": "cookie", "Values": ["x"]}], Actions=forward(tg_arn)),
        "ValidationError", contains="'cookie'")
    expect_error(lambda: elb.create_rule(ListenerArn=larn, Priority=9, Conditions=cond, Actions=[
        {"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "302"}}]),
        "ValidationError", contains="'302'")
    expect_error(lambda: elb.delete_target_group(TargetGroupArn=tg_arn), "ResourceInUse",
                 f"Target group '{tg_arn}' is currently in use by a listener or a rule")
    default_arn = elb.describe_rules(ListenerArn=larn)["Rules"][-1]["RuleArn"]
    expect_error(lambda: elb.delete_rule(RuleArn=default_arn), "OperationNotPermitted",
                 contains=default_arn)
    expect_error(lambda: elb.delete_rule(RuleArn=default_arn + "x"), "RuleNotFound")
    expect_error(lambda: elb.describe_listeners(ListenerArns=[larn + "0"]), "ListenerNotFound")
    expect_error(lambda: elb.describe_listeners(), "ValidationError")
    # A target group belongs to one load balancer.
    other = create_lb(elb)
    expect_error(lambda: elb.create_listener(LoadBalancerArn=other["LoadBalancerArn"],
                                             Protocol="HTTP", Port=80,
                                             DefaultActions=forward(tg_arn)),
                 "TargetGroupAssociationLimit", contains=tg_arn)
    # Deletion protection.
    elb.modify_load_balancer_attributes(LoadBalancerArn=lb_arn, Attributes=[
        {"Key": "deletion_protection.enabled", "Value": "true"}])
    expect_error(lambda: elb.delete_load_balancer(LoadBalancerArn=lb_arn), "OperationNotPermitted",
                 contains="deletion protection")


def test_attributes_have_elbs_defaults_and_are_checked(elb):
    lb = create_lb(elb)
    attrs = {a["Key"]: a["Value"] for a in elb.describe_load_balancer_attributes(
        LoadBalancerArn=lb["LoadBalancerArn"])["Attributes"]}
    assert attrs["idle_timeout.timeout_seconds"] == "60"
    assert attrs["routing.http2.enabled"] == "true"
    assert attrs["deletion_protection.enabled"] == "false"
    out = elb.modify_load_balancer_attributes(LoadBalancerArn=lb["LoadBalancerArn"], Attributes=[
        {"Key": "idle_timeout.timeout_seconds", "Value": "120"}])["Attributes"]
    assert {"Key": "idle_timeout.timeout_seconds", "Value": "120"} in out
    expect_error(lambda: elb.modify_load_balancer_attributes(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Attributes=[{"Key": "idle_timeout.timeout_seconds", "Value": "0"}]),
        "ValidationError", contains="'0'")
    expect_error(lambda: elb.modify_load_balancer_attributes(
        LoadBalancerArn=lb["LoadBalancerArn"], Attributes=[{"Key": "frob", "Value": "1"}]),
        "ValidationError", contains="'frob'")

    tg = create_tg(elb)
    attrs = {a["Key"]: a["Value"] for a in elb.describe_target_group_attributes(
        TargetGroupArn=tg["TargetGroupArn"])["Attributes"]}
    assert (attrs["deregistration_delay.timeout_seconds"], attrs["slow_start.duration_seconds"],
            attrs["stickiness.enabled"], attrs["stickiness.type"],
            attrs["stickiness.lb_cookie.duration_seconds"], attrs["load_balancing.algorithm.type"]) \
        == ("300", "0", "false", "lb_cookie", "86400", "round_robin")
    changed = {a["Key"]: a["Value"] for a in elb.modify_target_group_attributes(
        TargetGroupArn=tg["TargetGroupArn"], Attributes=[
            {"Key": "deregistration_delay.timeout_seconds", "Value": "5"},
            {"Key": "stickiness.enabled", "Value": "true"},
            {"Key": "load_balancing.algorithm.type", "Value": "least_outstanding_requests"}])[
        "Attributes"]}
    assert changed["deregistration_delay.timeout_seconds"] == "5"
    assert changed["load_balancing.algorithm.type"] == "least_outstanding_requests"
    expect_error(lambda: elb.modify_target_group_attributes(
        TargetGroupArn=tg["TargetGroupArn"],
        Attributes=[{"Key": "slow_start.duration_seconds", "Value": "60"}]),
        "ValidationError", contains="least outstanding")
    expect_error(lambda: elb.modify_target_group_attributes(
        TargetGroupArn=tg["TargetGroupArn"],
        Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "3601"}]),
        "ValidationError", contains="3601")

    modified = elb.modify_target_group(TargetGroupArn=tg["TargetGroupArn"], HealthCheckPath="/up",
                                       HealthyThresholdCount=3)["TargetGroups"][0]
    assert (modified["HealthCheckPath"], modified["HealthyThresholdCount"],
            modified["HealthCheckIntervalSeconds"]) == ("/up", 3, 30)

    listener = elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP",
                                   Port=80, DefaultActions=forward(tg["TargetGroupArn"]))[
        "Listeners"][0]
    la = {a["Key"]: a["Value"] for a in elb.describe_listener_attributes(
        ListenerArn=listener["ListenerArn"])["Attributes"]}
    assert la["routing.http.response.server.enabled"] == "true"
    elb.modify_listener_attributes(ListenerArn=listener["ListenerArn"], Attributes=[
        {"Key": "routing.http.response.server.enabled", "Value": "false"}])
    assert {"Key": "routing.http.response.server.enabled", "Value": "false"} in \
        elb.describe_listener_attributes(ListenerArn=listener["ListenerArn"])["Attributes"]


def test_a_network_load_balancer_forwards_tcp(elb):
    lb = create_lb(elb, lb_type="network")
    assert "/net/" in lb["LoadBalancerArn"]
    tg = create_tg(elb, protocol="TCP")
    assert (tg["HealthCheckProtocol"], tg["HealthCheckTimeoutSeconds"]) == ("TCP", 10)
    assert "HealthCheckPath" not in tg and "Matcher" not in tg
    attrs = {a["Key"]: a["Value"] for a in elb.describe_target_group_attributes(
        TargetGroupArn=tg["TargetGroupArn"])["Attributes"]}
    assert attrs["stickiness.type"] == "source_ip"
    listener = elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="TCP",
                                   Port=5432, DefaultActions=forward(tg["TargetGroupArn"]))[
        "Listeners"][0]
    assert {"Key": "tcp.idle_timeout.seconds", "Value": "350"} in elb.describe_listener_attributes(
        ListenerArn=listener["ListenerArn"])["Attributes"]
    expect_error(lambda: elb.create_rule(ListenerArn=listener["ListenerArn"], Priority=1,
                                         Conditions=[{"Field": "path-pattern", "Values": ["/"]}],
                                         Actions=forward(tg["TargetGroupArn"])),
                 "ValidationError")
    lb_attrs = {a["Key"] for a in elb.describe_load_balancer_attributes(
        LoadBalancerArn=lb["LoadBalancerArn"])["Attributes"]}
    assert "load_balancing.cross_zone.enabled" in lb_attrs
    assert "idle_timeout.timeout_seconds" not in lb_attrs


def test_targets_register_drain_and_leave(gantry, elb):
    lb = create_lb(elb)
    tg = create_tg(elb)
    tg_arn = tg["TargetGroupArn"]
    elb.register_targets(TargetGroupArn=tg_arn, Targets=[{"Id": "10.0.0.5"},
                                                         {"Id": "10.0.0.6", "Port": 9000}])
    health = elb.describe_target_health(TargetGroupArn=tg_arn)["TargetHealthDescriptions"]
    # Not used by any load balancer yet: unused.
    assert sorted((h["Target"]["Id"], h["Target"]["Port"], h["TargetHealth"]["State"],
                   h["TargetHealth"]["Reason"]) for h in health) == \
        [("10.0.0.5", 8080, "unused", "Target.NotInUse"), ("10.0.0.6", 9000, "unused",
                                                           "Target.NotInUse")]
    elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=80,
                        DefaultActions=forward(tg_arn))
    health = elb.describe_target_health(TargetGroupArn=tg_arn)["TargetHealthDescriptions"]
    # Registered to a group in use and not checked yet: initial, as ELB reports it.
    assert {(h["TargetHealth"]["State"], h["TargetHealth"]["Reason"]) for h in health} == \
        {("initial", "Elb.RegistrationInProgress")}
    assert {h["HealthCheckPort"] for h in health} == {"8080", "9000"}
    expect_error(lambda: elb.register_targets(TargetGroupArn=tg_arn, Targets=[{"Id": "i-123"}]),
                 "InvalidTarget", contains="i-123")

    # Deregistered: draining for the deregistration delay, then gone.
    elb.modify_target_group_attributes(TargetGroupArn=tg_arn, Attributes=[
        {"Key": "deregistration_delay.timeout_seconds", "Value": "1"}])
    elb.deregister_targets(TargetGroupArn=tg_arn, Targets=[{"Id": "10.0.0.5"}])
    one = elb.describe_target_health(TargetGroupArn=tg_arn, Targets=[{"Id": "10.0.0.5"}])[
        "TargetHealthDescriptions"][0]["TargetHealth"]
    assert (one["State"], one["Reason"]) == ("draining", "Target.DeregistrationInProgress")

    def gone():
        h = elb.describe_target_health(TargetGroupArn=tg_arn, Targets=[{"Id": "10.0.0.5"}])[
            "TargetHealthDescriptions"][0]["TargetHealth"]
        return (h["State"], h.get("Reason")) == ("unused", "Target.NotRegistered")
    wait_for(gone, 10, interval=0.1, what="the draining target to leave")
    assert [h["Target"]["Id"] for h in elb.describe_target_health(TargetGroupArn=tg_arn)[
        "TargetHealthDescriptions"]] == ["10.0.0.6"]

    # With no delay a deregistered target leaves at once: the CLI's waiter sees it.
    elb.modify_target_group_attributes(TargetGroupArn=tg_arn, Attributes=[
        {"Key": "deregistration_delay.timeout_seconds", "Value": "0"}])
    gantry.aws_ok("elbv2", "deregister-targets", "--target-group-arn", tg_arn,
                  "--targets", "Id=10.0.0.6,Port=9000")
    gantry.aws_ok("elbv2", "wait", "target-deregistered", "--target-group-arn", tg_arn,
                  "--targets", "Id=10.0.0.6,Port=9000")


def test_tags_on_every_kind_of_resource(elb):
    lb = create_lb(elb, Tags=[{"Key": "env", "Value": "dev"}])
    tg = create_tg(elb, Tags=[{"Key": "app", "Value": "web"}])
    listener = elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=80,
                                   DefaultActions=forward(tg["TargetGroupArn"]),
                                   Tags=[{"Key": "l", "Value": "1"}])["Listeners"][0]
    rule = elb.create_rule(ListenerArn=listener["ListenerArn"], Priority=1,
                           Conditions=[{"Field": "path-pattern", "Values": ["/"]}],
                           Actions=forward(tg["TargetGroupArn"]))["Rules"][0]
    arns = [lb["LoadBalancerArn"], tg["TargetGroupArn"], listener["ListenerArn"], rule["RuleArn"]]
    elb.add_tags(ResourceArns=arns, Tags=[{"Key": "owner", "Value": "me"}, {"Key": "env",
                                                                          "Value": "prod"}])
    got = {d["ResourceArn"]: {t["Key"]: t["Value"] for t in d["Tags"]}
           for d in elb.describe_tags(ResourceArns=arns)["TagDescriptions"]}
    assert got == {
        lb["LoadBalancerArn"]: {"env": "prod", "owner": "me"},
        tg["TargetGroupArn"]: {"app": "web", "owner": "me", "env": "prod"},
        listener["ListenerArn"]: {"l": "1", "owner": "me", "env": "prod"},
        rule["RuleArn"]: {"owner": "me", "env": "prod"},
    }
    elb.remove_tags(ResourceArns=arns, TagKeys=["owner"])
    got = elb.describe_tags(ResourceArns=[lb["LoadBalancerArn"]])["TagDescriptions"][0]["Tags"]
    assert got == [{"Key": "env", "Value": "prod"}]
    expect_error(lambda: elb.add_tags(ResourceArns=[lb["LoadBalancerArn"]],
                                      Tags=[{"Key": "aws:x", "Value": "1"}]),
                 "ValidationError", contains="aws:x")
    expect_error(lambda: elb.add_tags(ResourceArns=[lb["LoadBalancerArn"]],
                                      Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(50)]),
                 "TooManyTags")
    expect_error(lambda: elb.describe_tags(ResourceArns=[tg["TargetGroupArn"] + "0"]),
                 "TargetGroupNotFound")


def test_pagination_with_markers(gantry, elb):
    names = sorted(create_lb(elb)["LoadBalancerName"] for _ in range(7))
    seen, marker, pages = [], None, 0
    while True:
        kw = {"PageSize": 3, **({"Marker": marker} if marker else {})}
        page = elb.describe_load_balancers(**kw)
        seen += [lb["LoadBalancerName"] for lb in page["LoadBalancers"]]
        pages += 1
        marker = page.get("NextMarker")
        if not marker:
            break
    assert (seen, pages) == (names, 3)
    # Through the CLI (where --page-size is the operation's own PageSize, so the CLI hands the
    # marker back instead of following it).
    out = gantry.aws_ok("elbv2", "describe-load-balancers", "--page-size", "2")
    assert [lb["LoadBalancerName"] for lb in out["LoadBalancers"]] == names[:2]
    rest = gantry.aws_ok("elbv2", "describe-load-balancers", "--marker", out["NextMarker"],
                         "--page-size", "10")
    assert [lb["LoadBalancerName"] for lb in rest["LoadBalancers"]] == names[2:]
    assert "NextMarker" not in rest
    expect_error(lambda: elb.describe_load_balancers(PageSize=401), "ValidationError",
                 contains="401")
    expect_error(lambda: elb.describe_load_balancers(Marker="nonsense"), "ValidationError",
                 contains="nonsense")
    tgs = sorted(create_tg(elb)["TargetGroupName"] for _ in range(5))
    first = elb.describe_target_groups(PageSize=4)
    second = elb.describe_target_groups(Marker=first["NextMarker"])
    assert [t["TargetGroupName"] for t in first["TargetGroups"] + second["TargetGroups"]] == tgs
    assert "NextMarker" not in second


def test_capacity_reservation_security_groups_and_subnets(elb):
    lb = create_lb(elb, SecurityGroups=["sg-1"])
    arn = lb["LoadBalancerArn"]
    assert elb.describe_capacity_reservation(LoadBalancerArn=arn)["CapacityReservationState"] == []
    assert elb.set_security_groups(LoadBalancerArn=arn, SecurityGroups=["sg-2", "sg-3"])[
        "SecurityGroupIds"] == ["sg-2", "sg-3"]
    zones = elb.set_subnets(LoadBalancerArn=arn, Subnets=["subnet-x", "subnet-y",
                                                          "subnet-z"])["AvailabilityZones"]
    assert [z["SubnetId"] for z in zones] == ["subnet-x", "subnet-y", "subnet-z"]
    described = elb.describe_load_balancers(LoadBalancerArns=[arn])["LoadBalancers"][0]
    assert described["SecurityGroups"] == ["sg-2", "sg-3"]
    assert len(described["AvailabilityZones"]) == 3
    expect_error(lambda: elb.describe_capacity_reservation(LoadBalancerArn=arn + "0"),
                 "LoadBalancerNotFound")


def test_certificates_imported_into_acm_serve_https_listeners(gantry, elb, acm, tmp_path):
    cert = gantry.aws_ok("acm", "import-certificate",
                         "--certificate", f"fileb://{FIXTURES / 'rsa.pem'}",
                         "--private-key", f"fileb://{FIXTURES / 'rsa.key'}",
                         "--tags", "Key=site,Value=www")
    cert_arn = cert["CertificateArn"]
    assert cert_arn.startswith("arn:aws:acm:us-east-1:000000000000:certificate/")
    detail = acm.describe_certificate(CertificateArn=cert_arn)["Certificate"]
    assert (detail["DomainName"], detail["SubjectAlternativeNames"], detail["KeyAlgorithm"],
            detail["Type"], detail["Status"], detail["InUseBy"]) == \
        ("www.example.com", ["www.example.com", "example.com"], "RSA_2048", "IMPORTED",
         "ISSUED", [])
    assert detail["NotAfter"] > detail["NotBefore"]
    ec = acm.import_certificate(Certificate=(FIXTURES / "ec.pem").read_bytes(),
                                PrivateKey=(FIXTURES / "ec.key").read_bytes())["CertificateArn"]
    # ListCertificates returns RSA_1024 and RSA_2048 certificates unless asked for other types.
    listed = acm.list_certificates()["CertificateSummaryList"]
    assert [c["CertificateArn"] for c in listed] == [cert_arn]
    listed = acm.list_certificates(Includes={"keyTypes": ["EC_prime256v1"]})[
        "CertificateSummaryList"]
    assert [(c["CertificateArn"], c["DomainName"]) for c in listed] == [(ec, "api.example.com")]
    expect_error(lambda: acm.import_certificate(Certificate=(FIXTURES / "rsa.pem").read_bytes(),
                                                PrivateKey=(FIXTURES / "other-rsa.key").read_bytes()),
                 "ValidationException", contains="does not match")
    got = acm.get_certificate(CertificateArn=cert_arn)["Certificate"]
    assert got.startswith("-----BEGIN CERTIFICATE-----")

    lb = create_lb(elb)
    tg = create_tg(elb)
    listener = elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTPS",
                                   Port=443, Certificates=[{"CertificateArn": cert_arn}],
                                   DefaultActions=forward(tg["TargetGroupArn"]))["Listeners"][0]
    assert listener["SslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    assert listener["Certificates"] == [{"CertificateArn": cert_arn}]
    elb.add_listener_certificates(ListenerArn=listener["ListenerArn"],
                                  Certificates=[{"CertificateArn": ec}])
    certs = elb.describe_listener_certificates(ListenerArn=listener["ListenerArn"])["Certificates"]
    assert sorted((c["CertificateArn"], c["IsDefault"]) for c in certs) == \
        sorted([(cert_arn, True), (ec, False)])
    missing = cert_arn[:-4] + "0000"
    expect_error(lambda: elb.add_listener_certificates(ListenerArn=listener["ListenerArn"],
                                                       Certificates=[{"CertificateArn": missing}]),
                 "CertificateNotFound", f"Certificate '{missing}' not found")
    expect_error(lambda: elb.modify_listener(ListenerArn=listener["ListenerArn"],
                                             SslPolicy="ELBSecurityPolicy-Nope"),
                 "SSLPolicyNotFound", contains="ELBSecurityPolicy-Nope")
    assert acm.describe_certificate(CertificateArn=cert_arn)["Certificate"]["InUseBy"] == \
        [lb["LoadBalancerArn"]]
    expect_error(lambda: acm.delete_certificate(CertificateArn=cert_arn), "ResourceInUseException",
                 contains=lb["LoadBalancerArn"])
    elb.delete_listener(ListenerArn=listener["ListenerArn"])
    acm.delete_certificate(CertificateArn=cert_arn)
    expect_error(lambda: acm.describe_certificate(CertificateArn=cert_arn),
                 "ResourceNotFoundException", contains=cert_arn)


def test_elbv2_and_acm_check_signatures_in_their_own_protocols(spawn_server):
    secure = spawn_server("secure", auth=None)
    env = secure.cli_env()
    del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(secure.data_dir / "root-credentials")

    def cli(*args):
        p = subprocess.run([aws_cli(), *args, "--output", "json"], env=env, capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)

    lb = cli("elbv2", "create-load-balancer", "--name", "signed")["LoadBalancers"][0]
    assert lb["LoadBalancerName"] == "signed"
    assert cli("acm", "list-certificates")["CertificateSummaryList"] == []
    # A key nobody issued (cli_env signs with test/test): each service's own refusal.
    for args, code in ((("elbv2", "describe-load-balancers"), "InvalidClientTokenId"),
                       (("acm", "list-certificates"), "UnrecognizedClientException")):
        rc, err = secure.aws(*args)
        assert rc != 0 and f"({code})" in err, err
