//! The service's operations on a fake clock and a scratch directory.

use super::*;
use gantry_core::{FixedClock, Timestamp};

const NOW: i64 = 1_800_000_000_000;

struct Env {
    logs: Logs,
    clock: Arc<FixedClock>,
    dir: PathBuf,
}

fn env(name: &str) -> Env {
    let dir = std::env::temp_dir().join(format!("gantry-logs-svc-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let clock = Arc::new(FixedClock::new(Timestamp(NOW)));
    let logs = Logs::open(dir.clone(), clock.clone()).unwrap().with_ids(Arc::new(SeededIds::new(7)));
    Env { logs, clock, dir }
}

impl Env {
    fn call(&self, op: &str, input: Value) -> Result<Value, ServiceError> {
        let p = Principal::root("123456789012");
        let out = self.logs.call(&p, "us-east-1", op, &serde_json::to_vec(&input).unwrap())?;
        Ok(serde_json::from_slice(&out).unwrap())
    }
    fn ok(&self, op: &str, input: Value) -> Value {
        self.call(op, input).unwrap_or_else(|e| panic!("{op}: {e:?}"))
    }
    fn err(&self, op: &str, input: Value) -> ServiceError {
        self.call(op, input).expect_err(op)
    }
    fn put(&self, stream: &str, events: &[(i64, &str)]) -> Value {
        let evs: Vec<Value> = events.iter().map(|(t, m)| json!({"timestamp": t, "message": m})).collect();
        self.ok("PutLogEvents", json!({"logGroupName": "g", "logStreamName": stream, "logEvents": evs}))
    }
    fn reopen(&mut self) {
        self.logs = Logs::open(self.dir.clone(), self.clock.clone()).unwrap();
    }
}

fn messages(v: &Value) -> Vec<String> {
    v["events"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap().to_string()).collect()
}

fn setup(name: &str) -> Env {
    let e = env(name);
    e.ok("CreateLogGroup", json!({"logGroupName": "g"}));
    e.ok("CreateLogStream", json!({"logGroupName": "g", "logStreamName": "s"}));
    e
}

#[test]
fn groups_streams_and_their_errors() {
    let mut e = env("groups");
    e.ok("CreateLogGroup", json!({"logGroupName": "/ecs/web", "tags": {"team": "a"}}));
    e.ok("CreateLogGroup", json!({"logGroupName": "/ecs/Worker"}));
    e.ok("CreateLogGroup", json!({"logGroupName": "other"}));
    let err = e.err("CreateLogGroup", json!({"logGroupName": "/ecs/web"}));
    assert_eq!(err.code, "ResourceAlreadyExistsException");
    let err = e.err("CreateLogGroup", json!({"logGroupName": "bad name"}));
    assert_eq!(err.code, "InvalidParameterException");
    assert!(err.message.contains("bad name"), "{}", err.message);

    let names = |v: Value| -> Vec<String> {
        v["logGroups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["logGroupName"].as_str().unwrap().into())
            .collect()
    };
    assert_eq!(
        names(e.ok("DescribeLogGroups", json!({"logGroupNamePrefix": "/ecs/"}))),
        ["/ecs/Worker", "/ecs/web"]
    );
    assert_eq!(names(e.ok("DescribeLogGroups", json!({"logGroupNamePattern": "work"}))), ["/ecs/Worker"]);
    let err = e.err("DescribeLogGroups", json!({"logGroupNamePrefix": "a", "logGroupNamePattern": "b"}));
    assert_eq!(err.code, "InvalidParameterException");
    let p1 = e.ok("DescribeLogGroups", json!({"limit": 2}));
    assert_eq!(names(p1.clone()).len(), 2);
    let p2 = e.ok("DescribeLogGroups", json!({"limit": 2, "nextToken": p1["nextToken"]}));
    assert_eq!(names(p2.clone()), ["other"]);
    assert!(p2.get("nextToken").is_none());
    let g = &e.ok("DescribeLogGroups", json!({"logGroupNamePrefix": "/ecs/web"}))["logGroups"][0];
    assert_eq!(g["arn"], "arn:aws:logs:us-east-1:123456789012:log-group:/ecs/web:*");
    assert_eq!(g["creationTime"], NOW);
    assert!(g.get("retentionInDays").is_none());

    // Retention and tags, surviving a restart.
    let err = e.err("PutRetentionPolicy", json!({"logGroupName": "/ecs/web", "retentionInDays": 2}));
    assert!(err.message.contains("'2'"), "{}", err.message);
    e.ok("PutRetentionPolicy", json!({"logGroupName": "/ecs/web", "retentionInDays": 7}));
    e.ok("TagResource", json!({"resourceArn": "arn:aws:logs:us-east-1:123456789012:log-group:/ecs/web", "tags": {"env": "prod"}}));
    e.ok("UntagLogGroup", json!({"logGroupName": "/ecs/web", "tags": ["team"]}));
    e.reopen();
    let g = &e.ok("DescribeLogGroups", json!({"logGroupNamePrefix": "/ecs/web"}))["logGroups"][0];
    assert_eq!(g["retentionInDays"], 7);
    assert_eq!(e.ok("ListTagsLogGroup", json!({"logGroupName": "/ecs/web"}))["tags"], json!({"env": "prod"}));
    assert_eq!(
        e.ok(
            "ListTagsForResource",
            json!({"resourceArn": "arn:aws:logs:us-east-1:123456789012:log-group:/ecs/web:*"})
        )["tags"],
        json!({"env": "prod"})
    );
    e.ok("DeleteRetentionPolicy", json!({"logGroupName": "/ecs/web"}));

    let err = e.err("CreateLogStream", json!({"logGroupName": "nope", "logStreamName": "s"}));
    assert_eq!(
        (err.code.as_str(), err.message.as_str()),
        ("ResourceNotFoundException", "The specified log group does not exist.")
    );
    e.ok("CreateLogStream", json!({"logGroupName": "other", "logStreamName": "b"}));
    e.ok("CreateLogStream", json!({"logGroupName": "other", "logStreamName": "a"}));
    assert_eq!(
        e.err("CreateLogStream", json!({"logGroupName": "other", "logStreamName": "a"})).code,
        "ResourceAlreadyExistsException"
    );
    e.clock.advance_ms(10);
    let evs = json!([{"timestamp": NOW, "message": "x"}]);
    e.ok("PutLogEvents", json!({"logGroupName": "other", "logStreamName": "b", "logEvents": evs}));
    let streams = |v: Value| -> Vec<String> {
        v["logStreams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["logStreamName"].as_str().unwrap().into())
            .collect()
    };
    assert_eq!(streams(e.ok("DescribeLogStreams", json!({"logGroupName": "other"}))), ["a", "b"]);
    assert_eq!(
        streams(e.ok("DescribeLogStreams", json!({"logGroupName": "other", "descending": true}))),
        ["b", "a"]
    );
    let by_time = e.ok(
        "DescribeLogStreams",
        json!({"logGroupName": "other", "orderBy": "LastEventTime", "descending": true}),
    );
    assert_eq!(streams(by_time.clone()), ["b", "a"]);
    assert_eq!(by_time["logStreams"][0]["lastEventTimestamp"], NOW);
    assert_eq!(by_time["logStreams"][0]["lastIngestionTime"], NOW + 10);
    let err = e.err(
        "DescribeLogStreams",
        json!({"logGroupName": "other", "orderBy": "LastEventTime", "logStreamNamePrefix": "a"}),
    );
    assert_eq!(err.code, "InvalidParameterException");
    e.ok("DeleteLogStream", json!({"logGroupName": "other", "logStreamName": "b"}));
    assert_eq!(
        e.err("DeleteLogStream", json!({"logGroupName": "other", "logStreamName": "b"})).message,
        "The specified log stream does not exist."
    );
    e.ok("DeleteLogGroup", json!({"logGroupName": "other"}));
    e.reopen();
    assert_eq!(e.err("DeleteLogGroup", json!({"logGroupName": "other"})).code, "ResourceNotFoundException");
}

#[test]
fn put_log_events_follows_cloudwatch_rules() {
    let e = setup("put");
    let day = 86_400_000;
    // Out of order fails the whole batch.
    let err = e
        .call(
            "PutLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s",
        "logEvents": [{"timestamp": NOW, "message": "b"}, {"timestamp": NOW - 1, "message": "a"}]}),
        )
        .unwrap_err();
    assert_eq!(err.message, "Log events in a single PutLogEvents request must be in chronological order.");
    // Span over 24 h fails.
    let err = e
        .call(
            "PutLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s",
        "logEvents": [{"timestamp": NOW - day - 2, "message": "a"}, {"timestamp": NOW, "message": "b"}]}),
        )
        .unwrap_err();
    assert!(err.message.contains("24 hours"), "{}", err.message);
    // Size: 1 MiB including 26 bytes per event.
    let big = "x".repeat(MAX_BATCH_BYTES - EVENT_OVERHEAD);
    let ok =
        json!({"logGroupName": "g", "logStreamName": "s", "logEvents": [{"timestamp": NOW, "message": big}]});
    e.ok("PutLogEvents", ok);
    let big = "x".repeat(MAX_BATCH_BYTES - EVENT_OVERHEAD + 1);
    let err = e.err(
        "PutLogEvents",
        json!({"logGroupName": "g", "logStreamName": "s", "logEvents": [{"timestamp": NOW, "message": big}]}),
    );
    assert!(err.message.contains("1048577"), "{}", err.message);
    let many: Vec<Value> = (0..10_001).map(|_| json!({"timestamp": NOW, "message": "m"})).collect();
    assert_eq!(
        e.err("PutLogEvents", json!({"logGroupName": "g", "logStreamName": "s", "logEvents": many})).code,
        "InvalidParameterException"
    );
    // Too old and too new go to rejectedLogEventsInfo; the rest is stored. The sequence token is ignored.
    let out = e.ok(
        "PutLogEvents",
        json!({"logGroupName": "g", "logStreamName": "s", "sequenceToken": "whatever",
        "logEvents": [
            {"timestamp": NOW - 15 * day, "message": "old"},
            {"timestamp": NOW - 14 * day - 1, "message": "old2"},
            {"timestamp": NOW - 1000, "message": "kept1"},
            {"timestamp": NOW + 1, "message": "kept2"},
            {"timestamp": NOW + 3 * 3_600_000, "message": "new"}]}),
    );
    assert_eq!(
        out["rejectedLogEventsInfo"],
        json!({"tooOldLogEventEndIndex": 1, "tooNewLogEventStartIndex": 4})
    );
    let got = e.ok(
        "GetLogEvents",
        json!({"logGroupName": "g", "logStreamName": "s", "startFromHead": true, "limit": 2}),
    );
    // A page holds at most 1 MiB: the big event comes on the next one.
    assert_eq!(messages(&got), ["kept1"]);
    let next = e.ok(
        "GetLogEvents",
        json!({"logGroupName": "g", "logStreamName": "s", "nextToken": got["nextForwardToken"]}),
    );
    assert_eq!(messages(&next).len(), 1);
    assert_eq!(messages(&next)[0].len(), MAX_BATCH_BYTES - EVENT_OVERHEAD);
    let next = e.ok(
        "GetLogEvents",
        json!({"logGroupName": "g", "logStreamName": "s", "nextToken": next["nextForwardToken"]}),
    );
    assert_eq!(messages(&next), ["kept2"]);
    // Older than the retention: expired.
    e.ok("PutRetentionPolicy", json!({"logGroupName": "g", "retentionInDays": 1}));
    let out = e.put("s", &[(NOW - 2 * day, "gone"), (NOW, "here")]);
    assert_eq!(out["rejectedLogEventsInfo"], json!({"expiredLogEventEndIndex": 0}));
    assert_eq!(e.err("PutLogEvents", json!({"logGroupName": "g", "logStreamName": "nope", "logEvents": [{"timestamp": NOW, "message": "m"}]})).message,
        "The specified log stream does not exist.");
}

#[test]
fn get_log_events_tokens_walk_both_ways_and_stop_at_the_end() {
    let mut e = setup("tokens");
    let msgs: Vec<String> = (0..10).map(|i| format!("line {i}")).collect();
    let batch: Vec<(i64, &str)> =
        msgs.iter().enumerate().map(|(i, m)| (NOW + i as i64, m.as_str())).collect();
    e.put("s", &batch);
    let get = |e: &Env, extra: Value| {
        let mut req = json!({"logGroupName": "g", "logStreamName": "s"});
        req.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        e.ok("GetLogEvents", req)
    };
    // Without a token: the latest events; from the head: the first.
    assert_eq!(messages(&get(&e, json!({"limit": 3}))), ["line 7", "line 8", "line 9"]);
    let head = get(&e, json!({"limit": 4, "startFromHead": true}));
    assert_eq!(messages(&head), ["line 0", "line 1", "line 2", "line 3"]);
    let p2 = get(&e, json!({"limit": 4, "nextToken": head["nextForwardToken"]}));
    assert_eq!(messages(&p2), ["line 4", "line 5", "line 6", "line 7"]);
    let back = get(&e, json!({"limit": 2, "nextToken": p2["nextBackwardToken"]}));
    assert_eq!(messages(&back), ["line 2", "line 3"]);
    let p3 = get(&e, json!({"limit": 4, "nextToken": p2["nextForwardToken"]}));
    assert_eq!(messages(&p3), ["line 8", "line 9"]);
    // At the end: no events, and the same token back.
    let end = get(&e, json!({"nextToken": p3["nextForwardToken"]}));
    assert!(messages(&end).is_empty());
    assert_eq!(end["nextForwardToken"], p3["nextForwardToken"]);
    // New events show up behind the same token, after a restart too.
    e.reopen();
    e.put("s", &[(NOW + 20, "late")]);
    let more = get(&e, json!({"nextToken": end["nextForwardToken"]}));
    assert_eq!(messages(&more), ["late"]);
    // Time range: start inclusive, end exclusive.
    assert_eq!(
        messages(&get(&e, json!({"startTime": NOW + 2, "endTime": NOW + 4, "startFromHead": true}))),
        ["line 2", "line 3"]
    );
    let err =
        e.err("GetLogEvents", json!({"logGroupName": "g", "logStreamName": "s", "nextToken": "f/bogus"}));
    assert_eq!(err.code, "InvalidParameterException");
}

#[test]
fn filter_log_events_interleaves_filters_and_pages() {
    let e = setup("filter");
    e.ok("CreateLogStream", json!({"logGroupName": "g", "logStreamName": "t"}));
    e.put("s", &[(NOW, r#"{"level":"error","ms":150}"#), (NOW + 2, "ERROR disk full"), (NOW + 4, "INFO ok")]);
    e.put(
        "t",
        &[(NOW + 1, r#"{"level":"error","ms":50}"#), (NOW + 3, "ERROR retry later"), (NOW + 5, "WARN slow")],
    );
    let filter = |extra: Value| {
        let mut req = json!({"logGroupName": "g", "interleaved": true});
        req.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        e.ok("FilterLogEvents", req)
    };
    let all = filter(json!({}));
    let ts: Vec<i64> =
        all["events"].as_array().unwrap().iter().map(|e| e["timestamp"].as_i64().unwrap()).collect();
    assert_eq!(ts, (0..6).map(|i| NOW + i).collect::<Vec<_>>());
    assert_eq!(all["events"][1]["logStreamName"], "t");
    assert_eq!(messages(&filter(json!({"filterPattern": "ERROR -retry"}))), ["ERROR disk full"]);
    assert_eq!(messages(&filter(json!({"filterPattern": "?WARN ?INFO"}))), ["INFO ok", "WARN slow"]);
    assert_eq!(
        messages(&filter(json!({"filterPattern": r#"{ $.level = "error" && $.ms > 100 }"#}))),
        [r#"{"level":"error","ms":150}"#]
    );
    assert_eq!(
        messages(&filter(json!({"logStreamNames": ["t"], "filterPattern": "ERROR"}))),
        ["ERROR retry later"]
    );
    // Pages of 4 then 2, no event twice.
    let p1 = filter(json!({"limit": 4}));
    assert_eq!(messages(&p1).len(), 4);
    let p2 = filter(json!({"limit": 4, "nextToken": p1["nextToken"]}));
    assert_eq!(messages(&p2), ["INFO ok", "WARN slow"]);
    assert!(p2.get("nextToken").is_none());
    let id = all["events"][0]["eventId"].as_str().unwrap();
    assert_eq!(id.len(), 56);
    assert_eq!(
        e.err("FilterLogEvents", json!({"logGroupName": "g", "filterPattern": "{ $.a = }"})).code,
        "InvalidParameterException"
    );
    assert_eq!(e.err("FilterLogEvents", json!({"logGroupName": "nope"})).code, "ResourceNotFoundException");
}

#[test]
fn retention_of_one_day_removes_older_segments() {
    let e = setup("retention");
    e.put("s", &[(NOW - 3_600_000, "old")]);
    // Two days later (segments roll hourly), a new event.
    e.clock.advance_ms(2 * 86_400_000);
    let later = NOW + 2 * 86_400_000;
    e.put("s", &[(later, "new")]);
    assert_eq!(e.logs.enforce_retention(), 0, "no retention yet");
    e.ok("PutRetentionPolicy", json!({"logGroupName": "g", "retentionInDays": 1}));
    let got = e.ok("GetLogEvents", json!({"logGroupName": "g", "logStreamName": "s", "startFromHead": true}));
    assert_eq!(messages(&got), ["new"]);
    assert_eq!(
        fs::read_dir(e.dir.join("123456789012/us-east-1").join(dir_name("g")).join(dir_name("s")))
            .unwrap()
            .count(),
        1
    );
}

/// Polls GetQueryResults until the query has ended (it runs on a thread of its own), for at
/// most 10,000 polls a millisecond apart.
fn finished(e: &Env, id: &str) -> Value {
    for _ in 0..10_000 {
        let out = e.ok("GetQueryResults", json!({"queryId": id}));
        if !matches!(out["status"].as_str(), Some("Scheduled" | "Running")) {
            return out;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    panic!("the query {id} did not finish");
}

#[test]
fn insights_queries_run_asynchronously_and_report_statistics() {
    let e = setup("insights");
    e.ok("CreateLogStream", json!({"logGroupName": "g", "logStreamName": "t"}));
    e.put("s", &[(NOW - 3_000, r#"{"ms":10}"#), (NOW - 2_000, r#"{"ms":30}"#)]);
    e.put("t", &[(NOW - 1_000, r#"{"ms":50}"#), (NOW - 500, "no json")]);
    let secs = NOW / 1000;
    let start = |q: &str| {
        e.ok(
            "StartQuery",
            json!({"logGroupName": "g", "startTime": secs - 60, "endTime": secs, "queryString": q}),
        )["queryId"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let id = start("filter ms >= 30 | fields ms, @logStream | sort ms desc");
    assert_eq!(id.len(), 36);
    let out = finished(&e, &id);
    assert_eq!(out["status"], "Complete");
    let rows = out["results"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0][0], json!({"field": "ms", "value": "50"}));
    assert_eq!(rows[0][1], json!({"field": "@logStream", "value": "t"}));
    assert_eq!(rows[0][2]["field"], "@ptr");
    assert_eq!(out["statistics"]["recordsScanned"], 4.0);
    assert_eq!(out["statistics"]["recordsMatched"], 2.0);
    assert_eq!(out["statistics"]["bytesScanned"], 34.0);
    let out = finished(&e, &start("stats avg(ms) as avg, count(*) as n"));
    assert_eq!(out["results"], json!([[{"field": "avg", "value": "30"}, {"field": "n", "value": "4"}]]));
    // A finished query cannot be stopped; an unknown one is not found.
    assert_eq!(e.ok("StopQuery", json!({"queryId": id})), json!({"success": false}));
    assert_eq!(e.err("GetQueryResults", json!({"queryId": "nope"})).code, "ResourceNotFoundException");

    let err = e.err(
        "StartQuery",
        json!({"logGroupName": "g", "startTime": 0, "endTime": 1, "queryString": "fields a | bogus"}),
    );
    assert_eq!(err.code, "MalformedQueryException");
    assert_eq!(
        err.fields["queryCompileError"],
        json!({"location": {"startCharOffset": 11, "endCharOffset": 16}, "message": "unexpected symbol found bogus at line 1 and position 12"})
    );
    let err = e.err(
        "StartQuery",
        json!({"logGroupName": "nope", "startTime": 0, "endTime": 1, "queryString": "limit 1"}),
    );
    assert_eq!(err.code, "ResourceNotFoundException");
    let err = e.err(
        "StartQuery",
        json!({"logGroupName": "g", "startTime": 5, "endTime": 1, "queryString": "limit 1"}),
    );
    assert_eq!(err.code, "InvalidParameterException");
}

/// Keeps what the service extracts from EMF events.
#[derive(Default)]
struct Extracted(Mutex<Vec<(String, String, gantry_ports::ExtractedDatum)>>);

impl MetricSink for Extracted {
    fn put(&self, _: Vec<gantry_ports::MetricDatum>) {}
    fn put_extracted(&self, account: &str, region: &str, data: Vec<gantry_ports::ExtractedDatum>) {
        lock(&self.0).extend(data.into_iter().map(|d| (account.to_string(), region.to_string(), d)));
    }
}

/// Events in embedded metric format become metrics once stored (every event is kept as a log
/// event too); invalid EMF and rejected events make none.
#[test]
fn embedded_metric_format_becomes_metrics() {
    let mut e = setup("emf");
    let sink = Arc::new(Extracted::default());
    e.logs = Logs::open(e.dir.clone(), e.clock.clone()).unwrap().with_metrics(sink.clone());
    let emf = |ts: i64, v: &str| {
        format!(
            r#"{{"_aws":{{"Timestamp":{ts},"CloudWatchMetrics":[{{"Namespace":"Shop","Dimensions":[["Service"]],"Metrics":[{{"Name":"Latency","Unit":"Milliseconds"}}]}}]}},"Service":"cart","Latency":{v}}}"#
        )
    };
    let good = emf(NOW - 1000, "[5, 7]");
    let invalid = emf(NOW - 1000, "\"slow\"");
    let too_old = emf(NOW - MAX_AGE_MS - 1, "1");
    e.put(
        "s",
        &[(NOW - MAX_AGE_MS - 1, &too_old), (NOW - 2000, "plain"), (NOW - 1000, &good), (NOW, &invalid)],
    );
    let got = lock(&sink.0).clone();
    assert_eq!(got.len(), 1, "{got:?}");
    let (acct, region, d) = &got[0];
    assert_eq!((acct.as_str(), region.as_str()), ("123456789012", "us-east-1"));
    assert_eq!(
        (d.namespace.as_str(), d.metric_name.as_str(), d.unit.as_str()),
        ("Shop", "Latency", "Milliseconds")
    );
    assert_eq!(d.values, vec![5.0, 7.0]);
    assert_eq!(d.timestamp.0, NOW - 1000);
    assert_eq!(d.dimensions, vec![("Service".to_string(), "cart".to_string())]);
    // Every accepted event is a log event, EMF or not.
    let all = e.ok("GetLogEvents", json!({"logGroupName": "g", "logStreamName": "s", "startFromHead": true}));
    assert_eq!(messages(&all), vec!["plain".to_string(), good, invalid]);
}

/// The LogSink port creates the group and stream it writes to, and splits large deliveries
/// into PutLogEvents' batches.
#[test]
fn log_sink_creates_group_and_stream() {
    use gantry_ports::LogSink;
    let e = env("sink");
    let events: Vec<(i64, String)> = (0..12_000).map(|i| (NOW - 12_000 + i, format!("line {i}"))).collect();
    e.logs
        .put_events(
            "123456789012",
            "us-east-1",
            "/aws/ecs/containerinsights/c/performance",
            "AgentTelemetry-1",
            events,
        )
        .unwrap();
    e.logs
        .put_events(
            "123456789012",
            "us-east-1",
            "/aws/ecs/containerinsights/c/performance",
            "AgentTelemetry-1",
            vec![(NOW, "again".into())],
        )
        .unwrap();
    let streams =
        e.ok("DescribeLogStreams", json!({"logGroupName": "/aws/ecs/containerinsights/c/performance"}));
    assert_eq!(streams["logStreams"][0]["logStreamName"], "AgentTelemetry-1");
    let last = e.ok(
        "GetLogEvents",
        json!({"logGroupName": "/aws/ecs/containerinsights/c/performance", "logStreamName": "AgentTelemetry-1", "limit": 2}),
    );
    assert_eq!(messages(&last), vec!["line 11999".to_string(), "again".to_string()]);
    let err = e
        .logs
        .put_events("123456789012", "us-east-1", "bad name!", "s", vec![(NOW, "x".into())])
        .unwrap_err();
    assert!(err.contains("bad name!"), "{err}");
}
