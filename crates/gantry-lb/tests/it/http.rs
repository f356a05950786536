//! ALB listeners over real sockets: rules, actions, weights, stickiness, headers, errors.

use crate::support::*;
use gantry_lb::config::{Action, Cidr, Condition, FixedResponse, Forward, Redirect, Rule, Stickiness};
use std::collections::HashMap;
use std::time::Duration;

fn rule(priority: u32, conditions: Vec<Condition>, action: Action) -> Rule {
    Rule { arn: format!("rule-{priority}"), priority, conditions, actions: vec![action] }
}

fn v(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| x.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_route_by_path_host_header_method_query_and_source() {
    let (a, b, c, d, e) =
        (backend("a").await, backend("b").await, backend("c").await, backend("d").await, backend("e").await);
    let (lb, _) = load_balancer();
    let port = free_port();
    let mut l = http_listener(1, port, forward("e"));
    l.rules = vec![
        // Out of order on purpose: priority decides.
        rule(
            30,
            vec![Condition::HttpHeader { name: "X-Tenant".into(), values: v(&["gold*"]) }],
            forward("c"),
        ),
        rule(10, vec![Condition::PathPattern(v(&["/api/*"]))], forward("a")),
        rule(20, vec![Condition::HostHeader(v(&["*.example.com"]))], forward("b")),
        rule(
            5,
            vec![Condition::PathPattern(v(&["/api/*"])), Condition::HttpRequestMethod(v(&["DELETE"]))],
            forward("d"),
        ),
        rule(40, vec![Condition::QueryString(vec![(Some("v".into()), "2".into())])], forward("d")),
        rule(50, vec![Condition::SourceIp(vec![Cidr::parse("10.0.0.0/8").unwrap()])], forward("a")),
        rule(
            60,
            vec![Condition::PathPattern(v(&["/fixed"]))],
            Action::FixedResponse(FixedResponse {
                status: 418,
                content_type: Some("application/json".into()),
                body: Some("{\"teapot\":true}".into()),
            }),
        ),
        rule(
            70,
            vec![Condition::PathPattern(v(&["/old/*"]))],
            Action::Redirect(Redirect {
                protocol: "HTTPS".into(),
                port: "443".into(),
                path: "/new/#{path}".into(),
                permanent: true,
                ..Redirect::default()
            }),
        ),
    ];
    let groups =
        vec![group("a", &[&a]), group("b", &[&b]), group("c", &[&c]), group("d", &[&d]), group("e", &[&e])];
    lb.apply(&config(vec![l], groups)).unwrap();
    for name in ["a", "b", "c", "d", "e"] {
        all_healthy(&lb, name).await;
    }
    let cl = client();
    let backend_of = async |path: &str, headers: &[(&str, &str)]| {
        let (status, h, body) = get(&cl, port, path, headers).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(h["x-backend"], body.as_str());
        body
    };
    assert_eq!(backend_of("/api/x", &[]).await, "a");
    assert_eq!(backend_of("/", &[("host", "shop.Example.com")]).await, "b");
    assert_eq!(backend_of("/", &[("x-tenant", "GOLD-1")]).await, "c");
    assert_eq!(backend_of("/?v=2", &[]).await, "d");
    assert_eq!(backend_of("/?v=3", &[]).await, "e");
    assert_eq!(backend_of("/other", &[]).await, "e");
    // Priority 5 wins over 10 only for DELETE.
    let req = http::Request::delete(format!("http://127.0.0.1:{port}/api/x"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let resp = cl.request(req).await.unwrap();
    assert_eq!(resp.headers()["x-backend"], "d");

    let (status, h, body) = get(&cl, port, "/fixed", &[]).await;
    assert_eq!((status, body.as_str()), (418, "{\"teapot\":true}"));
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["server"], "awselb/2.0");

    let (status, h, _) = get(&cl, port, "/old/page?x=1", &[("host", "example.com")]).await;
    assert_eq!(status, 301);
    assert_eq!(h["location"], "https://example.com/new/old/page?x=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_as_alb_adds_them() {
    let a = backend("a").await;
    let (lb, _) = load_balancer();
    let port = free_port();
    lb.apply(&config(vec![http_listener(1, port, forward("a"))], vec![group("a", &[&a])])).unwrap();
    all_healthy(&lb, "a").await;
    let cl = client();
    let (_, h, _) = get(&cl, port, "/", &[("x-forwarded-for", "203.0.113.7"), ("host", "app.test")]).await;
    assert_eq!(h["x-seen-xff"], "203.0.113.7, 127.0.0.1");
    assert_eq!(h["x-seen-proto"], "http");
    assert_eq!(h["x-seen-port"], port.to_string().as_str());
    assert_eq!(h["x-seen-host"], "app.test");
    let trace = h["x-seen-trace"].to_str().unwrap();
    assert!(trace.starts_with("Root=1-") && trace.len() == "Root=1-".len() + 8 + 1 + 24, "{trace}");
    let (_, h, _) =
        get(&cl, port, "/", &[("x-amzn-trace-id", "Root=1-5759e988-bd862e3fe1be46a994272793")]).await;
    let trace = h["x-seen-trace"].to_str().unwrap();
    assert!(
        trace.starts_with("Self=1-") && trace.ends_with(";Root=1-5759e988-bd862e3fe1be46a994272793"),
        "{trace}"
    );
    // Hop-by-hop headers of the target are not passed on; the body is.
    let (status, _, body) = get(&cl, port, "/status/404", &[]).await;
    assert_eq!((status, body.as_str()), (404, "a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_split_traffic_within_five_percent() {
    let (a, b) = (backend("a").await, backend("b").await);
    let (lb, _) = load_balancer();
    let port = free_port();
    let weighted = Action::Forward(Forward {
        target_groups: vec![(tg_arn("a"), 20), (tg_arn("b"), 80)],
        stickiness: None,
    });
    lb.apply(&config(vec![http_listener(1, port, weighted)], vec![group("a", &[&a]), group("b", &[&b])]))
        .unwrap();
    all_healthy(&lb, "a").await;
    all_healthy(&lb, "b").await;
    let cl = client();
    let mut counts: HashMap<String, usize> = HashMap::new();
    let n = 10_000;
    for _ in 0..n {
        let (status, _, body) = get(&cl, port, "/", &[]).await;
        assert_eq!(status, 200);
        *counts.entry(body).or_default() += 1;
    }
    let share = counts["a"] as f64 / n as f64;
    // Within 5 % of the 20 % asked for.
    assert!((share - 0.20).abs() <= 0.05 * 0.20, "a got {share} of {counts:?}");
    assert_eq!(counts["a"] + counts["b"], n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lb_cookie_and_target_group_stickiness() {
    let (a1, a2, b) = (backend("a1").await, backend("a2").await, backend("b").await);
    let (lb, _) = load_balancer();
    let port = free_port();
    let mut ga = group("a", &[&a1, &a2]);
    ga.stickiness = Some(Stickiness::LbCookie { duration: Duration::from_secs(3600) });
    let weighted = Action::Forward(Forward {
        target_groups: vec![(tg_arn("a"), 50), (tg_arn("b"), 50)],
        stickiness: Some(Duration::from_secs(600)),
    });
    lb.apply(&config(vec![http_listener(1, port, weighted)], vec![ga, group("b", &[&b])])).unwrap();
    all_healthy(&lb, "a").await;
    all_healthy(&lb, "b").await;
    let cl = client();
    // Find a response from group a, and keep its cookies.
    let mut cookies = None;
    for _ in 0..10 {
        let (_, h, body) = get(&cl, port, "/", &[]).await;
        if body.starts_with('a') {
            let set: Vec<String> =
                h.get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect();
            let pick = |name: &str| set.iter().find(|c| c.starts_with(&format!("{name}="))).cloned().unwrap();
            assert!(pick("AWSALBCORS").contains("SameSite=None; Secure"));
            assert!(pick("AWSALB").contains("Expires=") && pick("AWSALB").contains("Path=/"));
            let value = |c: String| c.split(';').next().unwrap().to_string();
            cookies = Some((body, format!("{}; {}", value(pick("AWSALB")), value(pick("AWSALBTG")))));
            break;
        }
    }
    let (first, cookie) = cookies.expect("group a answered");
    for _ in 0..50 {
        let (_, _, body) = get(&cl, port, "/", &[("cookie", &cookie)]).await;
        assert_eq!(body, first, "sticky to one target of one group");
    }
    // Without cookies, both groups and both targets of a answer.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        seen.insert(get(&cl, port, "/", &[]).await.2);
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_cookie_stickiness() {
    let (a1, a2) = (backend("a1").await, backend("a2").await);
    let (lb, _) = load_balancer();
    let port = free_port();
    let mut ga = group("a", &[&a1, &a2]);
    ga.stickiness =
        Some(Stickiness::AppCookie { cookie_name: "app".into(), duration: Duration::from_secs(60) });
    lb.apply(&config(vec![http_listener(1, port, forward("a"))], vec![ga])).unwrap();
    all_healthy(&lb, "a").await;
    let cl = client();
    let (_, h, first) = get(&cl, port, "/cookie", &[]).await;
    let app = h
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.starts_with("AWSALBAPP-0="))
        .expect("AWSALBAPP-0 set beside the app's cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    for _ in 0..20 {
        assert_eq!(get(&cl, port, "/", &[("cookie", &format!("app=1; {app}"))]).await.2, first);
    }
    // A plain response sets no AWSALBAPP cookie.
    let (_, h, _) = get(&cl, port, "/", &[]).await;
    assert!(h.get("set-cookie").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alb_errors_502_503_504() {
    let a = backend("a").await;
    let gone = backend("gone").await;
    let (lb, sink) = load_balancer();
    let port = free_port();
    let mut l = http_listener(1, port, forward("a"));
    l.idle_timeout = Duration::from_millis(500);
    l.rules = vec![
        rule(1, vec![Condition::PathPattern(v(&["/empty"]))], forward("empty")),
        rule(2, vec![Condition::PathPattern(v(&["/refused"]))], forward("gone")),
    ];
    let mut g = group("gone", &[&gone]);
    g.health_check.enabled = false;
    lb.apply(&config(vec![l], vec![group("a", &[&a]), group("empty", &[]), g])).unwrap();
    all_healthy(&lb, "a").await;
    gone.stop();
    let cl = client();
    let (status, h, body) = get(&cl, port, "/empty", &[]).await;
    assert_eq!(status, 503);
    assert_eq!(h["server"], "awselb/2.0");
    assert!(body.contains("<title>503 Service Temporarily Unavailable</title>"), "{body}");
    let (status, _, body) = get(&cl, port, "/refused", &[]).await;
    assert_eq!(status, 502);
    assert!(body.contains("502 Bad Gateway"));
    let (status, _, body) = get(&cl, port, "/slow?ms=2000", &[]).await;
    assert_eq!(status, 504);
    assert!(body.contains("504 Gateway Time-out"));
    let (status, _, _) = get(&cl, port, "/status/500", &[]).await;
    assert_eq!(status, 500);

    lb.flush_metrics();
    let data = sink.0.lock().unwrap().clone();
    let value = |name: &str, tg: Option<&str>| {
        data.iter()
            .filter(|d| d.metric_name == name)
            .filter(|d| match tg {
                None => d.dimensions.len() == 1,
                Some(t) => d.dimensions.iter().any(|(k, v)| *k == "TargetGroup" && v.contains(t)),
            })
            .map(|d| match d.value {
                gantry_ports::MetricValue::Value(v) => v,
                gantry_ports::MetricValue::Statistics { sample_count, .. } => sample_count,
            })
            .sum::<f64>()
    };
    assert_eq!(value("RequestCount", None), 4.0);
    assert_eq!(value("HTTPCode_ELB_5XX_Count", None), 3.0);
    assert_eq!(value("HTTPCode_ELB_502_Count", None), 1.0);
    assert_eq!(value("HTTPCode_ELB_503_Count", None), 1.0);
    assert_eq!(value("HTTPCode_ELB_504_Count", None), 1.0);
    assert_eq!(value("HTTPCode_Target_5XX_Count", None), 1.0);
    assert_eq!(value("TargetResponseTime", None), 1.0);
    assert_eq!(value("HealthyHostCount", Some("targetgroup/a/")), 1.0);
    assert_eq!(value("RequestCount", Some("targetgroup/a/")), 2.0);
    assert_eq!(value("RequestCountPerTarget", Some("targetgroup/a/")), 2.0);
    assert!(value("ActiveConnectionCount", None) >= 1.0);
    let d = data.iter().find(|d| d.metric_name == "RequestCount").unwrap();
    assert_eq!(d.namespace, "AWS/ApplicationELB");
    assert_eq!(d.dimensions, vec![("LoadBalancer", "app/web/50dc6c495c0c9188".to_string())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_cleartext_and_to_http2_targets() {
    let a = backend("a").await;
    let (lb, _) = load_balancer();
    let port = free_port();
    let mut g = group("a", &[&a]);
    g.http2 = true;
    lb.apply(&config(vec![http_listener(1, port, forward("a"))], vec![g])).unwrap();
    all_healthy(&lb, "a").await;
    let h2: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let req =
        http::Request::get(format!("http://127.0.0.1:{port}/x")).body(http_body_util::Empty::new()).unwrap();
    let resp = h2.request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.headers()["x-backend"], "a");
    assert_eq!(resp.headers()["x-seen-version"], "HTTP/2.0");
    assert_eq!(resp.headers()["x-seen-host"], format!("127.0.0.1:{port}").as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_longer_than_the_first_read_is_forwarded_whole() {
    let a = backend("a").await;
    let (lb, _) = load_balancer();
    let port = free_port();
    lb.apply(&config(vec![http_listener(1, port, forward("a"))], vec![group("a", &[&a])])).unwrap();
    all_healthy(&lb, "a").await;
    // 3 headers of 3,000 bytes: the listener's first read (4 KiB) ends inside the head.
    let big = "x".repeat(3000);
    let (status, headers, body) =
        get(&client(), port, "/echo-head", &[("x-a", &big), ("x-b", &big), ("x-c", &big)]).await;
    assert_eq!((status, body.as_str()), (200, "a"));
    assert_eq!(headers["x-seen-abc-bytes"], "9000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_is_tunnelled() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = backend("a").await;
    let (lb, _) = load_balancer();
    let port = free_port();
    lb.apply(&config(vec![http_listener(1, port, forward("a"))], vec![group("a", &[&a])])).unwrap();
    all_healthy(&lb, "a").await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 1024];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    s.write_all(b"ping over the tunnel").await.unwrap();
    let mut echoed = vec![0u8; 20];
    s.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"ping over the tunnel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_that_close_their_connections_fail_no_request() {
    let a = closing_backend("a").await;
    let (lb, _) = load_balancer();
    let port = free_port();
    lb.apply(&config(vec![http_listener(1, port, forward("a"))], vec![group("a", &[&a])])).unwrap();
    all_healthy(&lb, "a").await;
    let cl = client();
    for _ in 0..300 {
        let (status, _, body) = get(&cl, port, "/", &[]).await;
        assert_eq!((status, body.as_str()), (200, "a"));
    }
}
