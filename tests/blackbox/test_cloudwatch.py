"""CloudWatch metrics and alarms through the AWS CLI and boto3, in each of CloudWatch's three
protocols (JSON 1.0, query, RPC v2 CBOR), and the metric store's durability across kill -9."""

from __future__ import annotations

import copy
import datetime as dt
import gzip
import json
import os
import time
from pathlib import Path

import boto3
import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from harness import wait_for

PROTOCOLS = ["json", "query", "smithy-rpc-v2-cbor"]


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def minute(t: float) -> float:
    return t - t % 60


def cloudwatch(server, protocol: str | None, tmp_path: Path):
    """A boto3 CloudWatch client, with botocore's choice of protocol forced to `protocol`."""
    bs = botocore.session.Session()
    if protocol is not None:
        loader = bs.get_component("data_loader")
        model = copy.deepcopy(loader.load_service_model("cloudwatch", "service-2"))
        model["metadata"]["protocols"] = [protocol]
        model["metadata"]["protocol"] = protocol
        root = tmp_path / f"models-{protocol}"
        version = model["metadata"]["apiVersion"]
        (root / "cloudwatch" / version).mkdir(parents=True, exist_ok=True)
        (root / "cloudwatch" / version / "service-2.json").write_text(json.dumps(model))
        loader.search_paths.insert(0, str(root))
    session = boto3.session.Session(botocore_session=bs, aws_access_key_id="test",
                                    aws_secret_access_key="test", region_name="us-east-1")
    return session.client("cloudwatch", endpoint_url=server.endpoint,
                           config=Config(retries={"max_attempts": 1}))


def test_cli_put_get_statistics_math_list_and_errors(gantry):
    now = time.time()
    base = minute(now) - 600
    for k in range(5):
        gantry.aws_ok("cloudwatch", "put-metric-data", "--namespace", "Shop", "--metric-name", "Latency",
                      "--dimensions", "Service=cart", "--unit", "Milliseconds",
                      "--timestamp", iso(base + 60 * k), "--value", str(10 * (k + 1)))
    gantry.aws_ok("cloudwatch", "put-metric-data", "--namespace", "Shop", "--metric-data",
                  json.dumps([{"MetricName": "Latency", "Dimensions": [{"Name": "Service", "Value": "cart"}],
                               "Timestamp": iso(base), "Values": [1, 2, 3], "Counts": [1, 1, 98],
                               "Unit": "Milliseconds"}]))
    out = gantry.aws_ok("cloudwatch", "get-metric-statistics", "--namespace", "Shop", "--metric-name", "Latency",
                        "--dimensions", "Name=Service,Value=cart", "--start-time", iso(base),
                        "--end-time", iso(base + 300), "--period", "60",
                        "--statistics", "Average", "SampleCount", "Maximum", "--extended-statistics", "p99")
    dps = sorted(out["Datapoints"], key=lambda d: d["Timestamp"])
    assert [d["SampleCount"] for d in dps] == [101.0, 1.0, 1.0, 1.0, 1.0]
    assert [d["Maximum"] for d in dps] == [10.0, 20.0, 30.0, 40.0, 50.0]
    assert dps[0]["Average"] == pytest.approx((10 + 1 + 2 + 3 * 98) / 101)
    assert dps[0]["ExtendedStatistics"]["p99"] == pytest.approx(3.0, rel=0.01)
    assert all(d["Unit"] == "Milliseconds" for d in dps)

    queries = [
        {"Id": "lat", "MetricStat": {"Metric": {"Namespace": "Shop", "MetricName": "Latency",
                                                "Dimensions": [{"Name": "Service", "Value": "cart"}]},
                                     "Period": 60, "Stat": "Maximum"}, "ReturnData": False},
        {"Id": "scaled", "Expression": "IF(lat > 25, lat / 10, 0)", "Label": "scaled"},
        {"Id": "rate", "Expression": "RATE(lat)"},
    ]
    out = gantry.aws_ok("cloudwatch", "get-metric-data", "--start-time", iso(base), "--end-time", iso(base + 300),
                        "--scan-by", "TimestampAscending", "--metric-data-queries", json.dumps(queries))
    results = {r["Id"]: r for r in out["MetricDataResults"]}
    assert set(results) == {"scaled", "rate"}
    assert results["scaled"]["Values"] == [0.0, 0.0, 3.0, 4.0, 5.0]
    assert results["scaled"]["Label"] == "scaled"
    assert results["rate"]["Values"] == pytest.approx([10 / 60] * 4)

    metrics = gantry.aws_ok("cloudwatch", "list-metrics", "--namespace", "Shop")["Metrics"]
    assert metrics == [{"Namespace": "Shop", "MetricName": "Latency",
                        "Dimensions": [{"Name": "Service", "Value": "cart"}]}]

    rc, err = gantry.aws("cloudwatch", "put-metric-data", "--namespace", "AWS/ECS", "--metric-name", "x",
                         "--value", "1")
    assert rc != 0 and "(InvalidParameterValue)" in err and "The value AWS/ for parameter Namespace is invalid." in err
    rc, err = gantry.aws("cloudwatch", "get-metric-statistics", "--namespace", "Shop", "--metric-name", "Latency",
                         "--start-time", iso(base), "--end-time", iso(base + 86400 * 2), "--period", "60",
                         "--statistics", "Sum")
    assert rc != 0 and "(InvalidParameterCombination)" in err and "exceeds the limit of 1,440" in err


def test_cli_alarms_set_state_history_and_tags(gantry):
    gantry.aws_ok("cloudwatch", "put-metric-alarm", "--alarm-name", "cart-slow", "--namespace", "Shop",
                  "--metric-name", "Latency", "--dimensions", "Name=Service,Value=cart", "--statistic", "Average",
                  "--period", "60", "--evaluation-periods", "2", "--threshold", "100",
                  "--comparison-operator", "GreaterThanThreshold", "--treat-missing-data", "notBreaching",
                  "--tags", "Key=team,Value=shop")
    alarm = gantry.aws_ok("cloudwatch", "describe-alarms", "--alarm-names", "cart-slow")["MetricAlarms"][0]
    # A new alarm starts INSUFFICIENT_DATA; the evaluator (every 5 s) may already have moved it,
    # so its first state change in the history says where it started (checked below).
    assert alarm["StateValue"] in ("INSUFFICIENT_DATA", "OK")
    assert alarm["AlarmArn"] == "arn:aws:cloudwatch:us-east-1:000000000000:alarm:cart-slow"
    # The evaluator runs every 5 s: with no data and notBreaching, the alarm goes OK.
    def state():
        return gantry.aws_ok("cloudwatch", "describe-alarms", "--alarm-names", "cart-slow")["MetricAlarms"][0]
    ok = wait_for(lambda: (a := state())["StateValue"] == "OK" and a, 30, 0.5, "the alarm to be evaluated")
    assert ok["StateReason"] == ("Threshold Crossed: no datapoints were received for 2 periods and "
                                 "2 missing datapoints were treated as [NonBreaching].")
    gantry.aws_ok("cloudwatch", "set-alarm-state", "--alarm-name", "cart-slow", "--state-value", "ALARM",
                  "--state-reason", "drill")
    assert gantry.aws_ok("cloudwatch", "describe-alarms", "--state-value", "ALARM")["MetricAlarms"][0][
        "StateReason"] == "drill"
    hist = gantry.aws_ok("cloudwatch", "describe-alarm-history", "--alarm-name", "cart-slow",
                         "--history-item-type", "StateUpdate")["AlarmHistoryItems"]
    assert [h["HistorySummary"] for h in hist] == ["Alarm updated from OK to ALARM",
                                                   "Alarm updated from INSUFFICIENT_DATA to OK"]
    tags = gantry.aws_ok("cloudwatch", "list-tags-for-resource", "--resource-arn", alarm["AlarmArn"])["Tags"]
    assert tags == [{"Key": "team", "Value": "shop"}]
    rc, err = gantry.aws("cloudwatch", "set-alarm-state", "--alarm-name", "nope", "--state-value", "OK",
                         "--state-reason", "x")
    assert rc != 0 and "(ResourceNotFound)" in err
    gantry.aws_ok("cloudwatch", "delete-alarms", "--alarm-names", "cart-slow")
    assert gantry.aws_ok("cloudwatch", "describe-alarms")["MetricAlarms"] == []


def test_the_three_protocols_give_equal_results(gantry, tmp_path):
    clients = {p: cloudwatch(gantry, p, tmp_path) for p in PROTOCOLS}
    base = minute(time.time()) - 600
    for p, c in clients.items():
        ns = f"Proto/{p}"
        c.put_metric_data(Namespace=ns, MetricData=[
            {"MetricName": "Req", "Dimensions": [{"Name": "Api", "Value": "v1"}],
             "Timestamp": dt.datetime.fromtimestamp(base + 60 * k, dt.timezone.utc),
             "Values": [k, k + 0.5], "Counts": [2, 1], "Unit": "Count", "StorageResolution": 60}
            for k in range(6)] + [
            {"MetricName": "Set", "Timestamp": dt.datetime.fromtimestamp(base, dt.timezone.utc),
             "StatisticValues": {"SampleCount": 4, "Sum": 10, "Minimum": 1, "Maximum": 4}}])

    def read(c, ns):
        out = c.get_metric_data(
            StartTime=dt.datetime.fromtimestamp(base, dt.timezone.utc),
            EndTime=dt.datetime.fromtimestamp(base + 360, dt.timezone.utc),
            MetricDataQueries=[
                {"Id": "r", "MetricStat": {"Metric": {"Namespace": ns, "MetricName": "Req",
                                                      "Dimensions": [{"Name": "Api", "Value": "v1"}]},
                                           "Period": 60, "Stat": "Sum"}},
                {"Id": "p", "MetricStat": {"Metric": {"Namespace": ns, "MetricName": "Req",
                                                      "Dimensions": [{"Name": "Api", "Value": "v1"}]},
                                           "Period": 120, "Stat": "p50"}},
                {"Id": "e", "Expression": "FILL(r, 0) * 2 + 1"}])
        stats = c.get_metric_statistics(
            Namespace=ns, MetricName="Set", StartTime=dt.datetime.fromtimestamp(base, dt.timezone.utc),
            EndTime=dt.datetime.fromtimestamp(base + 60, dt.timezone.utc), Period=60,
            Statistics=["Average", "Minimum", "Maximum", "SampleCount", "Sum"])
        results = [(r["Id"], r["Label"], [t.timestamp() for t in r["Timestamps"]], r["Values"], r["StatusCode"])
                   for r in out["MetricDataResults"]]
        dps = [{k: (v.timestamp() if k == "Timestamp" else v) for k, v in d.items()} for d in stats["Datapoints"]]
        return results, dps

    answers = {(reader, ns): read(c, f"Proto/{ns}") for reader, c in clients.items() for ns in PROTOCOLS}
    first = answers[("json", "json")]
    assert first[0][0][3] == [k * 2 + k + 0.5 for k in range(6)][::-1]
    assert first[1] == [{"Timestamp": base, "Average": 2.5, "Minimum": 1.0, "Maximum": 4.0,
                         "SampleCount": 4.0, "Sum": 10.0, "Unit": "None"}]
    for key, answer in answers.items():
        assert answer == first, key
    # Errors come back in each protocol with CloudWatch's code.
    for p, c in clients.items():
        with pytest.raises(ClientError) as e:
            c.put_metric_data(Namespace="AWS/X", MetricData=[{"MetricName": "m", "Value": 1}])
        assert e.value.response["Error"]["Code"] == "InvalidParameterValue", p
        assert e.value.response["Error"]["Message"] == "The value AWS/ for parameter Namespace is invalid.", p


def test_acknowledged_datapoints_survive_kill_9(spawn_server, tmp_path):
    server = spawn_server("cw-durable")
    c = cloudwatch(server, None, tmp_path)
    base = minute(time.time()) - 300
    for k in range(50):
        c.put_metric_data(Namespace="Durable", MetricData=[
            {"MetricName": "Count", "Value": 1.0,
             "Timestamp": dt.datetime.fromtimestamp(base + k, dt.timezone.utc)}])
    server.kill()
    server.start()
    c = cloudwatch(server, None, tmp_path)
    out = c.get_metric_statistics(Namespace="Durable", MetricName="Count",
                                  StartTime=dt.datetime.fromtimestamp(base, dt.timezone.utc),
                                  EndTime=dt.datetime.fromtimestamp(base + 60, dt.timezone.utc),
                                  Period=60, Statistics=["Sum"])
    assert [d["Sum"] for d in out["Datapoints"]] == [50.0]


def test_deployment_alarm_in_alarm_rolls_the_deployment_back(gantry, ecs, unique):
    """deploymentConfiguration.alarms: an alarm set to ALARM (SetAlarmState) during a deployment
    fails it, and it rolls back to the last completed one, with ECS's reasons. (No instances: the
    new deployment's task cannot be placed, so it stays IN_PROGRESS until the alarm fires.)"""
    from harness import simple_container
    cluster = unique("dalarm")
    ecs.create_cluster(clusterName=cluster)
    v1, v2 = (ecs.register_task_definition(family=cluster, containerDefinitions=[simple_container("app")])[
        "taskDefinition"]["taskDefinitionArn"] for _ in range(2))
    gantry.aws_ok("cloudwatch", "put-metric-alarm", "--alarm-name", f"{cluster}-errors", "--namespace", "Shop",
                  "--metric-name", "Errors", "--statistic", "Sum", "--period", "60", "--evaluation-periods", "1",
                  "--threshold", "1", "--comparison-operator", "GreaterThanOrEqualToThreshold",
                  # With no data, `ignore` keeps the state SetAlarmState gives until data comes.
                  "--treat-missing-data", "ignore")
    alarms = {"alarmNames": [f"{cluster}-errors"], "enable": True, "rollback": True}
    ecs.create_service(cluster=cluster, serviceName="web", taskDefinition=v1, desiredCount=0,
                       deploymentConfiguration={"alarms": alarms})

    def service():
        return ecs.describe_services(cluster=cluster, services=["web"])["services"][0]
    wait_for(lambda: service()["deployments"][0]["rolloutState"] == "COMPLETED", 30, 0.2, "the first deployment")
    ecs.update_service(cluster=cluster, service="web", taskDefinition=v2, desiredCount=1)
    failed_id = service()["deployments"][0]["id"]
    assert service()["deployments"][0]["rolloutState"] == "IN_PROGRESS"
    gantry.aws_ok("cloudwatch", "set-alarm-state", "--alarm-name", f"{cluster}-errors", "--state-value", "ALARM",
                  "--state-reason", "errors during the deployment")

    def rolled_back():
        s = service()
        return s if s["taskDefinition"] == v1 and s["deployments"][0]["id"] != failed_id else None
    s = wait_for(rolled_back, 30, 0.2, "the deployment to roll back")
    primary = s["deployments"][0]
    assert primary["rolloutStateReason"].startswith("ECS deployment detected triggered alarms: rolling back to deploymentId ")
    failed = [d for d in s["deployments"] if d["id"] == failed_id]
    if failed:
        assert failed[0]["rolloutState"] == "FAILED"
        assert failed[0]["rolloutStateReason"] == f"ECS deployment failed: alarm(s) detected: {cluster}-errors."
    messages = [e["message"] for e in s["events"]]
    assert any(f"(deployment {failed_id}) deployment failed: alarm detected." in m for m in messages), messages
    ecs.delete_service(cluster=cluster, service="web", force=True)
