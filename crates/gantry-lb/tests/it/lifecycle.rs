//! Health transitions, draining, and reconfiguration under load.

use crate::support::*;
use gantry_lb::config::{Action, Forward};
use gantry_lb::{Reason, State};
use gantry_ports::lb::TargetHealthSource;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

fn state_of(lb: &gantry_lb::LoadBalancer, name: &str, b: &Backend) -> (State, Option<Reason>) {
    let h = lb.target_health(&tg_arn(name)).unwrap();
    let t = h.iter().find(|t| t.port == b.addr.port()).expect("target listed");
    (t.state, t.reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_walk_initial_healthy_unhealthy_and_back() {
    let (a, b) = (backend("a").await, backend("b").await);
    let (lb, _) = load_balancer();
    let port = free_port();
    let mut g = group("a", &[&a, &b]);
    g.health_check.interval = Duration::from_millis(200);
    lb.apply(&config(vec![http_listener(1, port, forward("a"))], vec![g.clone()])).unwrap();
    // Registered: initial, its first check pending or under way (the prober starts at once).
    let (state, reason) = state_of(&lb, "a", &a);
    assert_eq!(state, State::Initial);
    assert!(
        matches!(reason, Some(Reason::RegistrationInProgress | Reason::InitialHealthChecking)),
        "{reason:?}"
    );
    eventually(5, "initial checking", async || {
        state_of(&lb, "a", &a).1 == Some(Reason::InitialHealthChecking)
    })
    .await;
    all_healthy(&lb, "a").await;
    let observed = lb.health(&tg_arn("a"), &a.addr.ip().to_string(), a.addr.port()).unwrap();
    assert_eq!(observed.state.as_str(), "healthy");

    // b's check starts failing: unhealthy with the code, and it gets no more requests.
    b.health.store(503, SeqCst);
    eventually(5, "b unhealthy", async || state_of(&lb, "a", &b).0 == State::Unhealthy).await;
    assert_eq!(state_of(&lb, "a", &b).1, Some(Reason::ResponseCodeMismatch));
    let report = lb.target_health(&tg_arn("a")).unwrap();
    let t = report.iter().find(|t| t.port == b.addr.port()).unwrap();
    assert_eq!(t.description.as_deref(), Some("Health checks failed with these codes: [503]"));
    let cl = client();
    for _ in 0..10 {
        assert_eq!(get(&cl, port, "/", &[]).await.2, "a");
    }

    // Every target unhealthy: ALB fails open and both get requests.
    a.health.store(500, SeqCst);
    eventually(5, "a unhealthy", async || state_of(&lb, "a", &a).0 == State::Unhealthy).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..10 {
        let (status, _, body) = get(&cl, port, "/", &[]).await;
        assert_eq!(status, 200);
        seen.insert(body);
    }
    assert_eq!(seen.len(), 2, "fail-open over {seen:?}");

    // Recovered.
    a.health.store(200, SeqCst);
    b.health.store(200, SeqCst);
    all_healthy(&lb, "a").await;

    // A stopped target: its checks time out or are refused.
    b.stop();
    eventually(5, "b unhealthy again", async || state_of(&lb, "a", &b).0 == State::Unhealthy).await;
    assert_eq!(state_of(&lb, "a", &b).1, Some(Reason::FailedHealthChecks));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newly_registered_target_is_checked_at_once_not_at_the_groups_next_round() {
    let (a, b) = (backend("a").await, backend("b").await);
    let (lb, _) = load_balancer();
    let port = free_port();
    // A minute between checks: within this test every target gets exactly its first one.
    let mut g = group("a", &[&a]);
    g.health_check.interval = Duration::from_secs(60);
    g.health_check.timeout = Duration::from_secs(5);
    lb.apply(&config(vec![http_listener(1, port, forward("a"))], vec![g.clone()])).unwrap();
    eventually(5, "a's first check", async || {
        state_of(&lb, "a", &a).1 == Some(Reason::InitialHealthChecking)
    })
    .await;
    // b registered later, with the same checks (the prober keeps running): its first check
    // comes now, not a minute after a's.
    g.targets.push(b.target());
    lb.apply(&config(vec![http_listener(1, port, forward("a"))], vec![g])).unwrap();
    eventually(5, "b's first check", async || {
        state_of(&lb, "a", &b).1 == Some(Reason::InitialHealthChecking)
    })
    .await;
    // a keeps its own schedule: no second check yet, so it is still initial.
    assert_eq!(state_of(&lb, "a", &a), (State::Initial, Some(Reason::InitialHealthChecking)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_groups_are_not_checked() {
    let a = backend("a").await;
    let (lb, _) = load_balancer();
    lb.apply(&config(vec![], vec![group("a", &[&a])])).unwrap();
    assert_eq!(state_of(&lb, "a", &a), (State::Unused, Some(Reason::NotInUse)));
    assert_eq!(a.hits.load(SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_lets_an_in_flight_request_finish() {
    let (a, b) = (backend("a").await, backend("b").await);
    let (lb, _) = load_balancer();
    let port = free_port();
    lb.apply(&config(vec![http_listener(1, port, forward("a"))], vec![group("a", &[&a])])).unwrap();
    all_healthy(&lb, "a").await;
    let cl = client();
    // A 3 s request starts just before a is deregistered.
    let slow = tokio::spawn({
        let cl = cl.clone();
        async move { get(&cl, port, "/slow?ms=3000", &[]).await }
    });
    eventually(5, "the slow request at a", async || a.hits.load(SeqCst) == 1).await;
    lb.apply(&config(vec![http_listener(1, port, forward("a"))], vec![group("a", &[&b])])).unwrap();
    assert_eq!(state_of(&lb, "a", &a), (State::Draining, Some(Reason::DeregistrationInProgress)));
    assert!(!lb.drained(&tg_arn("a"), &a.addr.ip().to_string(), a.addr.port()));
    // New requests go to b (fail-open while it is still initial).
    for _ in 0..5 {
        assert_eq!(get(&cl, port, "/", &[]).await.2, "b");
    }
    let (status, _, body) = slow.await.unwrap();
    assert_eq!((status, body.as_str()), (200, "a"));
    // Nothing in flight: a leaves at once rather than after the 30 s delay.
    eventually(2, "a gone", async || lb.target_health(&tg_arn("a")).unwrap().len() == 1).await;
    assert!(lb.drained(&tg_arn("a"), &a.addr.ip().to_string(), a.addr.port()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_driven_draining_ends_at_its_deadline() {
    let a = backend("a").await;
    let (lb, _) = load_balancer();
    let port = free_port();
    lb.apply(&config(vec![http_listener(1, port, forward("a"))], vec![group("a", &[&a])])).unwrap();
    all_healthy(&lb, "a").await;
    let cl = client();
    let slow = tokio::spawn({
        let cl = cl.clone();
        async move { get(&cl, port, "/slow?ms=5000", &[]).await }
    });
    eventually(5, "the slow request at a", async || a.hits.load(SeqCst) == 1).await;
    // The API lists it as draining until 300 ms from now.
    let mut g = group("a", &[&a]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    g.targets[0].draining_until_ms = Some(now + 300);
    lb.apply(&config(vec![http_listener(1, port, forward("a"))], vec![g])).unwrap();
    assert_eq!(get(&cl, port, "/", &[]).await.0, 503, "no new requests to a draining target");
    assert!(lb.health(&tg_arn("a"), &a.addr.ip().to_string(), a.addr.port()).is_none());
    eventually(3, "drained at the deadline", async || {
        lb.drained(&tg_arn("a"), &a.addr.ip().to_string(), a.addr.port())
    })
    .await;
    slow.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfiguration_under_load_fails_no_request() {
    let backends: Vec<Backend> = futures_join(["a", "b", "c", "d"]).await;
    let (lb, _) = load_balancer();
    let port = free_port();
    let cfg = |weights: [u32; 2], members: &[usize]| {
        let ga = group("a", &members.iter().filter(|i| **i < 2).map(|i| &backends[*i]).collect::<Vec<_>>());
        let gb = group("b", &members.iter().filter(|i| **i >= 2).map(|i| &backends[*i]).collect::<Vec<_>>());
        let action = Action::Forward(Forward {
            target_groups: vec![(tg_arn("a"), weights[0]), (tg_arn("b"), weights[1])],
            stickiness: None,
        });
        config(vec![http_listener(1, port, action)], vec![ga, gb])
    };
    lb.apply(&cfg([1, 0], &[0, 1, 2, 3])).unwrap();
    all_healthy(&lb, "a").await;
    all_healthy(&lb, "b").await;

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for fresh_connections in [false, false, true] {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            let kept = client();
            while !stop.load(SeqCst) {
                let cl = if fresh_connections { client() } else { kept.clone() };
                let req = http::Request::get(format!("http://127.0.0.1:{port}/"))
                    .body(http_body_util::Empty::new())
                    .unwrap();
                match cl.request(req).await {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, SeqCst),
                    _ => failed.fetch_add(1, SeqCst),
                };
            }
        }));
    }
    // Shift weight from a to b, and take targets out and put them back, while load runs.
    let steps: [([u32; 2], &[usize]); 6] = [
        ([9, 1], &[0, 1, 2, 3]),
        ([5, 5], &[0, 2, 3]),
        ([1, 9], &[0, 1, 2]),
        ([0, 1], &[1, 2, 3]),
        ([1, 1], &[0, 1, 3]),
        ([1, 0], &[0, 1, 2, 3]),
    ];
    for (weights, members) in steps {
        let before = ok.load(SeqCst);
        lb.apply(&cfg(weights, members)).unwrap();
        eventually(5, "requests after the change", async || ok.load(SeqCst) > before + 200).await;
    }
    stop.store(true, SeqCst);
    for l in load {
        l.await.unwrap();
    }
    assert_eq!(failed.load(SeqCst), 0, "failed requests (of {} ok)", ok.load(SeqCst));
    assert!(ok.load(SeqCst) > 1200);
}

async fn futures_join<const N: usize>(names: [&str; N]) -> Vec<Backend> {
    let mut out = Vec::with_capacity(N);
    for n in names {
        out.push(backend(n).await);
    }
    out
}
