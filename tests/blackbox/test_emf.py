"""Embedded metric format: log events sent through PutLogEvents (the AWS CLI's `aws logs
put-log-events`) that carry `_aws.CloudWatchMetrics` become CloudWatch metrics, read back with
`aws cloudwatch`; an invalid document stays a plain log event and makes no metric."""

import datetime as dt
import json
import time


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def emf(ts_ms: int, namespace: str, latency, **extra) -> str:
    doc = {"_aws": {"Timestamp": ts_ms, "CloudWatchMetrics": [{
        "Namespace": namespace, "Dimensions": [["Service"], ["Service", "Operation"]],
        "Metrics": [{"Name": "Latency", "Unit": "Milliseconds"}, {"Name": "Hits", "Unit": "Count",
                                                                 "StorageResolution": 1}]}]},
           "Service": "cart", "Operation": "add", "Latency": latency, "Hits": 1, "requestId": "r-1"}
    doc.update(extra)
    return json.dumps(doc)


def test_emf_events_become_metrics_and_invalid_ones_stay_logs(gantry, unique):
    ns = unique("Shop")
    group = "/app/" + unique("emf")
    gantry.aws_ok("logs", "create-log-group", "--log-group-name", group)
    gantry.aws_ok("logs", "create-log-stream", "--log-group-name", group, "--log-stream-name", "s")
    now = time.time()
    base = now - now % 60 - 120
    t = int(base * 1000)
    events = [
        {"timestamp": t, "message": "plain text"},
        {"timestamp": t + 1, "message": emf(t + 1, ns, [10, 20])},
        {"timestamp": t + 2, "message": emf(t + 2, ns, 30)},
        # Invalid: a dimension target that is not a string; no metric comes of it.
        {"timestamp": t + 3, "message": emf(t + 3, ns, 1000, Service=7)},
        # Invalid: an unknown unit.
        {"timestamp": t + 4, "message": json.dumps({"_aws": {"Timestamp": t + 4, "CloudWatchMetrics": [{
            "Namespace": ns, "Dimensions": [["Service"]], "Metrics": [{"Name": "Latency", "Unit": "Parsecs"}]}]},
            "Service": "cart", "Latency": 5000})},
    ]
    gantry.aws_ok("logs", "put-log-events", "--log-group-name", group, "--log-stream-name", "s",
                  "--log-events", json.dumps(events))
    # Every event is a log event.
    got = gantry.aws_ok("logs", "get-log-events", "--log-group-name", group, "--log-stream-name", "s",
                        "--start-from-head")
    assert [e["message"] for e in got["events"]] == [e["message"] for e in events]

    stats = gantry.aws_ok("cloudwatch", "get-metric-statistics", "--namespace", ns, "--metric-name", "Latency",
                          "--dimensions", "Name=Service,Value=cart", "--start-time", iso(base),
                          "--end-time", iso(base + 60), "--period", "60",
                          "--statistics", "SampleCount", "Sum", "Maximum")
    [dp] = stats["Datapoints"]
    assert (dp["SampleCount"], dp["Sum"], dp["Maximum"], dp["Unit"]) == (3.0, 60.0, 30.0, "Milliseconds")
    # The second dimension set is a metric of its own.
    stats = gantry.aws_ok("cloudwatch", "get-metric-statistics", "--namespace", ns, "--metric-name", "Latency",
                          "--dimensions", "Name=Service,Value=cart", "Name=Operation,Value=add",
                          "--start-time", iso(base), "--end-time", iso(base + 60), "--period", "60",
                          "--statistics", "SampleCount")
    assert [d["SampleCount"] for d in stats["Datapoints"]] == [3.0]
    listed = gantry.aws_ok("cloudwatch", "list-metrics", "--namespace", ns)["Metrics"]
    assert sorted((m["MetricName"], len(m["Dimensions"])) for m in listed) == \
        [("Hits", 1), ("Hits", 2), ("Latency", 1), ("Latency", 2)]
    # Hits was StorageResolution 1: it answers at a 1-second period.
    hits = gantry.aws_ok("cloudwatch", "get-metric-statistics", "--namespace", ns, "--metric-name", "Hits",
                         "--dimensions", "Name=Service,Value=cart", "--start-time", iso(base),
                         "--end-time", iso(base + 1), "--period", "1", "--statistics", "Sum")
    assert [d["Sum"] for d in hits["Datapoints"]] == [2.0]
