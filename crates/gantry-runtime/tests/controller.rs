//! The controller driver on tokio's paused clock: no real sleeps, and times are exact.

use gantry_runtime::{
    Action, AlwaysLeader, Backoff, Controller, Leadership, ManualLeadership, Metrics, Reconciler, shutdown,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// A reconciler that records its passes and does what its script says.
#[derive(Clone, Default)]
struct Script {
    keys: Vec<&'static str>,
    /// How long a pass takes.
    takes: Duration,
    /// The first N passes of each key fail.
    fail_first: u32,
    /// What a successful pass returns.
    action: Option<Action>,
    log: Arc<Mutex<Vec<(&'static str, Duration)>>>,
    running: Arc<Mutex<HashMap<&'static str, u32>>>,
    overlap: Arc<AtomicBool>,
    calls: Arc<Mutex<HashMap<&'static str, u32>>>,
    start: Option<Instant>,
}

impl Script {
    fn new(keys: &[&'static str]) -> Self {
        Script { keys: keys.to_vec(), start: Some(Instant::now()), ..Default::default() }
    }
    fn log(&self) -> Vec<(&'static str, Duration)> {
        self.log.lock().unwrap().clone()
    }
    fn passes(&self, key: &str) -> Vec<Duration> {
        self.log().into_iter().filter(|(k, _)| *k == key).map(|(_, t)| t).collect()
    }
}

impl Reconciler<&'static str> for Script {
    type Error = String;

    async fn reconcile(&self, key: &&'static str) -> Result<Action, String> {
        let key = *key;
        let at = Instant::now() - self.start.unwrap();
        self.log.lock().unwrap().push((key, at));
        {
            let mut r = self.running.lock().unwrap();
            let n = r.entry(key).or_default();
            *n += 1;
            if *n > 1 {
                self.overlap.store(true, Ordering::SeqCst);
            }
        }
        tokio::time::sleep(self.takes).await;
        *self.running.lock().unwrap().get_mut(key).unwrap() -= 1;
        let n = {
            let mut c = self.calls.lock().unwrap();
            let n = c.entry(key).or_default();
            *n += 1;
            *n
        };
        if n <= self.fail_first {
            return Err(format!("failure {n} of {key}"));
        }
        Ok(self.action.unwrap_or(Action::AwaitChange))
    }

    fn list(&self) -> Vec<&'static str> {
        self.keys.clone()
    }
}

fn controller(m: &Arc<Metrics>) -> Controller<&'static str> {
    Controller::new("test", m.clone()).workers(4)
}

const S: fn(u64) -> Duration = Duration::from_secs;

#[tokio::test(start_paused = true)]
async fn listed_keys_run_once_and_a_key_never_runs_twice_at_once() {
    let m = Arc::new(Metrics::new());
    let c = controller(&m);
    let q = c.queue();
    let script = Script { takes: S(10), ..Script::new(&["a", "b"]) };
    let (stop, signal) = shutdown();
    let run = tokio::spawn(c.run(script.clone(), Arc::new(AlwaysLeader::default()), signal));
    tokio::time::sleep(S(1)).await;
    // Both passes are in flight; "a" changes twice during its pass.
    q.add("a");
    q.add("a");
    tokio::time::sleep(S(60)).await;
    assert_eq!(script.passes("a"), [S(0), S(10)], "once, then once more after its pass");
    assert_eq!(script.passes("b"), [S(0)]);
    assert!(!script.overlap.load(Ordering::SeqCst), "never two passes of one key at once");
    stop.trigger();
    run.await.unwrap();
    let text = m.render();
    assert!(
        text.contains(r#"gantry_controller_reconciles_total{controller="test",outcome="ok"} 3"#),
        "{text}"
    );
    assert!(text.contains(r#"gantry_controller_reconcile_duration_seconds_count{controller="test"} 3"#));
}

#[tokio::test(start_paused = true)]
async fn requeue_runs_the_key_again_after_the_delay() {
    let m = Arc::new(Metrics::new());
    let script = Script { action: Some(Action::Requeue(S(5))), ..Script::new(&["a"]) };
    let (stop, signal) = shutdown();
    let run = tokio::spawn(controller(&m).run(script.clone(), Arc::new(AlwaysLeader::default()), signal));
    tokio::time::sleep(S(12)).await;
    assert_eq!(script.passes("a"), [S(0), S(5), S(10)]);
    stop.trigger();
    run.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn errors_are_retried_with_growing_backoff_and_success_resets_it() {
    let m = Arc::new(Metrics::new());
    let c = controller(&m).backoff(Backoff { base: S(1), max: S(3) });
    let q = c.queue();
    let script = Script { fail_first: 4, ..Script::new(&["a"]) };
    let (stop, signal) = shutdown();
    let run = tokio::spawn(c.run(script.clone(), Arc::new(AlwaysLeader::default()), signal));
    tokio::time::sleep(S(30)).await;
    // Failures at 0, 1, 3, 6 (waits of 1, 2, 3 = the maximum, 3), then success at 9.
    assert_eq!(script.passes("a"), [S(0), S(1), S(3), S(6), S(9)]);
    q.add("a");
    tokio::time::sleep(S(1)).await;
    assert_eq!(script.passes("a").len(), 6, "a success ends the retries; a change runs it once");
    stop.trigger();
    run.await.unwrap();
    assert!(
        m.render().contains(r#"gantry_controller_reconciles_total{controller="test",outcome="error"} 4"#)
    );
}

#[tokio::test(start_paused = true)]
async fn a_panicking_pass_is_an_error_of_its_key() {
    struct Panics;
    impl Reconciler<&'static str> for Panics {
        type Error = String;
        async fn reconcile(&self, _: &&'static str) -> Result<Action, String> {
            panic!("boom")
        }
        fn list(&self) -> Vec<&'static str> {
            vec!["a"]
        }
    }
    let m = Arc::new(Metrics::new());
    let (stop, signal) = shutdown();
    let run = tokio::spawn(controller(&m).run(Panics, Arc::new(AlwaysLeader::default()), signal));
    tokio::time::sleep(S(4)).await; // passes at 0, 1, 3
    stop.trigger();
    run.await.unwrap();
    assert!(
        m.render().contains(r#"gantry_controller_reconciles_total{controller="test",outcome="error"} 3"#)
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_passes_in_flight_and_starts_no_new_one() {
    let m = Arc::new(Metrics::new());
    let c = controller(&m);
    let q = c.queue();
    let script = Script { takes: S(10), ..Script::new(&["a"]) };
    let (stop, signal) = shutdown();
    let run = tokio::spawn(c.run(script.clone(), Arc::new(AlwaysLeader::default()), signal));
    tokio::time::sleep(S(1)).await;
    stop.trigger();
    q.add("b");
    let t = Instant::now();
    run.await.unwrap();
    assert_eq!(Instant::now() - t, S(9), "run returned when the pass in flight finished");
    assert_eq!(*script.calls.lock().unwrap().get("a").unwrap(), 1, "the pass in flight finished");
    assert_eq!(script.passes("b"), [], "no pass started after the signal");
}

#[tokio::test(start_paused = true)]
async fn a_non_leader_runs_nothing_until_it_leads_and_stops_when_it_no_longer_does() {
    let m = Arc::new(Metrics::new());
    let c = controller(&m).resync(S(10));
    let q = c.queue();
    let script = Script::new(&["a"]);
    let leader = Arc::new(ManualLeadership::new(false));
    let (stop, signal) = shutdown();
    let run = tokio::spawn(c.run(script.clone(), leader.clone() as Arc<dyn Leadership>, signal));
    q.add("b");
    tokio::time::sleep(S(60)).await;
    assert_eq!(script.log(), [], "nothing runs while another process leads");
    leader.set(true);
    tokio::time::sleep(S(1)).await;
    let mut first: Vec<_> = script.log().into_iter().map(|(k, _)| k).collect();
    first.sort();
    assert_eq!(first, ["a", "b"], "leading lists every key (and runs what was queued)");
    leader.set(false);
    tokio::time::sleep(S(60)).await;
    assert_eq!(script.log().len(), 2, "no resync, no pass once leadership is lost");
    leader.set(true);
    tokio::time::sleep(S(1)).await;
    assert_eq!(script.log().len(), 3, "leading again lists again");
    stop.trigger();
    run.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_watch_feeds_keys_and_resync_is_the_safety_net() {
    use gantry_store::{SqliteStore, Store, Txn};
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
    let m = Arc::new(Metrics::new());
    let script = Script::new(&[]);
    let c = controller(&m).resync(S(10)).watches(store.clone(), "/w/", |e| match e.kv.key.as_str() {
        "/w/a" => vec!["a"],
        _ => vec![],
    });
    let (stop, signal) = shutdown();
    let run = tokio::spawn(c.run(script.clone(), Arc::new(AlwaysLeader::default()), signal));
    tokio::time::sleep(S(1)).await;
    store.txn(Txn::new().put("/w/a", b"1".to_vec())).await.unwrap();
    store.txn(Txn::new().put("/w/other", b"1".to_vec())).await.unwrap();
    tokio::time::sleep(S(1)).await;
    assert_eq!(script.passes("a").len(), 1, "the change to /w/a ran a");
    stop.trigger();
    run.await.unwrap();
}
