"""CloudWatch Logs through the unmodified AWS CLI v1 (`aws logs ...`) and boto3."""

import json
import threading
import time

import boto3
from botocore.config import Config

from harness import GantryServer, expect_error


def now_ms() -> int:
    return int(time.time() * 1000)


def logs_client(server):
    return boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test",
                                 region_name="us-east-1").client(
        "logs", endpoint_url=server.endpoint,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=10))


def test_groups_streams_events_with_the_cli(gantry, unique):
    group = "/ecs/" + unique("web")
    gantry.aws_ok("logs", "create-log-group", "--log-group-name", group, "--tags", "team=a")
    rc, err = gantry.aws("logs", "create-log-group", "--log-group-name", group)
    assert rc != 0 and "ResourceAlreadyExistsException" in err, err
    gantry.aws_ok("logs", "put-retention-policy", "--log-group-name", group, "--retention-in-days", "7")
    out = gantry.aws_ok("logs", "describe-log-groups", "--log-group-name-prefix", group)
    [g] = out["logGroups"]
    assert g["logGroupName"] == group and g["retentionInDays"] == 7
    assert g["arn"] == f"arn:aws:logs:us-east-1:000000000000:log-group:{group}:*"
    assert gantry.aws_ok("logs", "list-tags-log-group", "--log-group-name", group)["tags"] == {"team": "a"}

    gantry.aws_ok("logs", "create-log-stream", "--log-group-name", group, "--log-stream-name", "app/1")
    gantry.aws_ok("logs", "create-log-stream", "--log-group-name", group, "--log-stream-name", "app/2")
    t = now_ms()
    events = [{"timestamp": t + i, "message": f"line {i}"} for i in range(5)]
    gantry.aws_ok("logs", "put-log-events", "--log-group-name", group, "--log-stream-name", "app/1",
                  "--log-events", json.dumps(events))
    gantry.aws_ok("logs", "put-log-events", "--log-group-name", group, "--log-stream-name", "app/2",
                  "--log-events", json.dumps([{"timestamp": t + 2, "message": '{"level":"error","ms":500}'},
                                              {"timestamp": t + 3, "message": '{"level":"error","ms":5}'}]))
    got = gantry.aws_ok("logs", "get-log-events", "--log-group-name", group, "--log-stream-name", "app/1",
                        "--start-from-head")
    assert [e["message"] for e in got["events"]] == [f"line {i}" for i in range(5)]
    assert got["nextForwardToken"].startswith("f/")
    again = gantry.aws_ok("logs", "get-log-events", "--log-group-name", group, "--log-stream-name", "app/1",
                          "--next-token", got["nextForwardToken"])
    assert again["events"] == [] and again["nextForwardToken"] == got["nextForwardToken"]

    found = gantry.aws_ok("logs", "filter-log-events", "--log-group-name", group, "--interleaved")
    assert [e["timestamp"] for e in found["events"]] == sorted(e["timestamp"] for e in found["events"])
    assert len(found["events"]) == 7
    found = gantry.aws_ok("logs", "filter-log-events", "--log-group-name", group,
                          "--filter-pattern", '{ $.level = "error" && $.ms > 100 }')
    assert [(e["logStreamName"], e["message"]) for e in found["events"]] == \
        [("app/2", '{"level":"error","ms":500}')]
    found = gantry.aws_ok("logs", "filter-log-events", "--log-group-name", group,
                          "--filter-pattern", '"line 3"')
    assert [e["message"] for e in found["events"]] == ["line 3"]

    streams = gantry.aws_ok("logs", "describe-log-streams", "--log-group-name", group,
                            "--order-by", "LastEventTime", "--descending")["logStreams"]
    assert [s["logStreamName"] for s in streams] == ["app/1", "app/2"]
    assert streams[0]["lastEventTimestamp"] == t + 4

    rc, err = gantry.aws("logs", "get-log-events", "--log-group-name", group + "-nope",
                         "--log-stream-name", "x")
    assert rc != 0 and "ResourceNotFoundException" in err and "The specified log group does not exist." in err, err
    gantry.aws_ok("logs", "delete-log-group", "--log-group-name", group)
    assert gantry.aws_ok("logs", "describe-log-groups", "--log-group-name-prefix", group)["logGroups"] == []


def test_put_log_events_rules(gantry, unique):
    logs = logs_client(gantry)
    group = unique("g")
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    t = now_ms()
    expect_error(lambda: logs.put_log_events(logGroupName=group, logStreamName="s",
                                             logEvents=[{"timestamp": t, "message": "b"},
                                                        {"timestamp": t - 5, "message": "a"}]),
                 "InvalidParameterException",
                 "Log events in a single PutLogEvents request must be in chronological order.")
    out = logs.put_log_events(logGroupName=group, logStreamName="s", sequenceToken="ignored",
                              logEvents=[{"timestamp": t - 15 * 86_400_000, "message": "old"},
                                         {"timestamp": t, "message": "ok"},
                                         {"timestamp": t + 3 * 3_600_000, "message": "future"}])
    assert out["rejectedLogEventsInfo"] == {"tooOldLogEventEndIndex": 0, "tooNewLogEventStartIndex": 2}
    got = logs.get_log_events(logGroupName=group, logStreamName="s", startFromHead=True)
    assert [e["message"] for e in got["events"]] == ["ok"]
    expect_error(lambda: logs.put_log_events(logGroupName=group, logStreamName="s",
                                             logEvents=[{"timestamp": t, "message": "x" * 1_048_551}]),
                 "InvalidParameterException")


def test_insights_queries_with_the_cli(gantry, unique):
    """`aws logs start-query` / `get-query-results` / `stop-query`: a query runs asynchronously
    (Scheduled/Running, then Complete) and reports its statistics; a malformed one is refused
    with MalformedQueryException and where it went wrong."""
    group = "/ecs/" + unique("insights")
    gantry.aws_ok("logs", "create-log-group", "--log-group-name", group)
    logs = logs_client(gantry)
    t0 = now_ms() - 120_000
    for stream, offset in (("a", 0), ("b", 1)):
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
        logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=[
            {"timestamp": t0 + i * 1000 + offset,
             "message": json.dumps({"level": "error" if i % 4 == 0 else "info", "ms": i,
                                    "path": f"/p{i % 3}"})}
            for i in range(100)])
    start, end = str(t0 // 1000 - 1), str(now_ms() // 1000 + 1)

    def run(query: str) -> dict:
        qid = gantry.aws_ok("logs", "start-query", "--log-group-name", group, "--start-time", start,
                            "--end-time", end, "--query-string", query)["queryId"]
        deadline = time.monotonic() + 30
        while True:
            out = gantry.aws_ok("logs", "get-query-results", "--query-id", qid)
            if out["status"] not in ("Scheduled", "Running"):
                return out
            assert time.monotonic() < deadline, out

    def rows(out: dict) -> list[dict]:
        return [{f["field"]: f["value"] for f in r if f["field"] != "@ptr"} for r in out["results"]]

    out = run('fields @timestamp, ms, @logStream | filter level = "error" and ms >= 90 '
              "| sort ms desc, @logStream asc | limit 3")
    assert out["status"] == "Complete"
    assert [(r["ms"], r["@logStream"]) for r in rows(out)] == [("96", "a"), ("96", "b"), ("92", "a")]
    assert all("@ptr" in {f["field"] for f in r} for r in out["results"])
    assert out["statistics"]["recordsScanned"] == 200
    assert out["statistics"]["recordsMatched"] == 4  # 92 and 96 in each stream

    out = run("filter path like /p[12]$/ | stats count(*) as n, avg(ms) as avg, max(ms), "
              "pct(ms, 50) as p50 by path | sort path")
    assert rows(out) == [
        {"path": "/p1", "n": "66", "avg": "49", "max(ms)": "97", "p50": "49"},
        {"path": "/p2", "n": "66", "avg": "50", "max(ms)": "98", "p50": "50"},
    ]
    out = run("parse @message '\"path\": \"/p*\"' as p | filter p = 0 | stats count() by bin(1h)")
    bins = rows(out)  # one hour, or two when the events straddle an hour boundary
    assert sum(int(r["count()"]) for r in bins) == 68 and 1 <= len(bins) <= 2, bins
    assert all(r["bin(1h)"].endswith(":00:00.000") for r in bins), bins

    rc, err = gantry.aws("logs", "start-query", "--log-group-name", group, "--start-time", start,
                         "--end-time", end, "--query-string", "fields ms | sortt ms")
    assert rc != 0 and "MalformedQueryException" in err, err
    try:
        logs.start_query(logGroupName=group, startTime=0, endTime=1,
                         queryString="fields ms | sortt ms")
        raise AssertionError("a malformed query was accepted")
    except logs.exceptions.MalformedQueryException as e:
        assert e.response["queryCompileError"]["location"] == {"startCharOffset": 12,
                                                               "endCharOffset": 17}
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    expect_error(lambda: logs.start_query(logGroupName=group + "-missing", startTime=0, endTime=1,
                                          queryString="limit 1"), "ResourceNotFoundException")
    stopped = logs.stop_query(queryId=logs.start_query(
        logGroupName=group, startTime=0, endTime=1, queryString="limit 1")["queryId"])
    assert stopped["success"] in (True, False)  # it may already have finished


def test_acknowledged_events_survive_kill_9(tmp_path):
    """Events PutLogEvents acknowledged are there after SIGKILL and a restart."""
    server = GantryServer(tmp_path / "data", tmp_path / "server.log").start()
    acked = []
    try:
        logs = logs_client(server)
        logs.create_log_group(logGroupName="durable")
        logs.create_log_stream(logGroupName="durable", logStreamName="s")
        stop = threading.Event()

        def write():
            i = 0
            while not stop.is_set():
                msg = f"event {i}"
                try:
                    logs.put_log_events(logGroupName="durable", logStreamName="s",
                                        logEvents=[{"timestamp": now_ms(), "message": msg}])
                except Exception:
                    return
                acked.append(msg)
                i += 1

        w = threading.Thread(target=write, daemon=True)
        w.start()
        from harness import wait_for
        wait_for(lambda: len(acked) >= 200, timeout=30, what="200 acknowledged writes")
        server.kill()
        stop.set()
        w.join(timeout=10)
        server.start()
        logs = logs_client(server)
        stored = []
        token = None
        while True:
            kw = {"nextToken": token} if token else {}
            page = logs.get_log_events(logGroupName="durable", logStreamName="s", startFromHead=True, **kw)
            if not page["events"]:
                break
            stored += [e["message"] for e in page["events"]]
            token = page["nextForwardToken"]
        assert stored[:len(acked)] == acked, (len(stored), len(acked))
        assert len(stored) <= len(acked) + 1
    finally:
        server.stop()
