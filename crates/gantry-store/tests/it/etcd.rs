//! The etcd backend beyond the shared contract: a member restarted under two open stores, and
//! the leader election with its fence.

use gantry_store::election::{Elected, Fence, fenced};
use gantry_store::testing::EtcdProcess;
use gantry_store::{EtcdStore, Store, StoreError, StoreMetrics, Txn, TxnResult};
use std::time::Duration;

/// Sends `txn` until etcd answers (its connection comes back after a restart), for at most 20 s.
async fn until_answered(store: &EtcdStore, txn: Txn) -> TxnResult {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout(Duration::from_secs(2), store.txn(txn.clone())).await {
            Ok(Ok(r)) => return r,
            Ok(Err(e)) if tokio::time::Instant::now() < deadline => eprintln!("not yet: {e}"),
            Err(_) if tokio::time::Instant::now() < deadline => eprintln!("not yet: no answer in 2 s"),
            other => panic!("etcd did not come back: {other:?}"),
        }
    }
}

#[tokio::test]
async fn mirrors_and_watches_follow_etcd_through_a_member_restart() {
    let mut etcd = EtcdProcess::start().expect("etcd (Debian's etcd-server) must be installed");
    let a = EtcdStore::connect(&etcd.target("restart"), StoreMetrics::default()).await.unwrap();
    let b = EtcdStore::connect(&etcd.target("restart"), StoreMetrics::default()).await.unwrap();
    let r1 = a.txn(Txn::new().put("k", b"1".to_vec())).await.unwrap().revision;
    // b's watch from r1: b's history began when it connected, before r1.
    let mut w = b.watch("k", r1).unwrap();
    assert_eq!(w.next().await.unwrap().kv.mod_revision, r1);

    etcd.restart().unwrap();
    let r2 = until_answered(&a, Txn::new().when("k", r1).put("k", b"2".to_vec())).await;
    assert!(r2.succeeded, "the write before the restart is still there");
    // b's mirror resumed its etcd watch from where it was: the watch goes on with no gap, and
    // b's own next write waits until b's mirror is past a's write.
    let e = tokio::time::timeout(Duration::from_secs(20), w.next()).await.unwrap().unwrap();
    assert_eq!((e.kv.mod_revision, &e.kv.value[..]), (r2.revision, &b"2"[..]));
    let mine = until_answered(&b, Txn::new().put("other", vec![])).await;
    assert!(mine.revision > r2.revision);
    let k = b.get("k").unwrap();
    assert_eq!((&k.value[..], k.version), (&b"2"[..], 2));
}

async fn leads(elected: &mut Elected, within: Duration) -> Fence {
    let f = tokio::time::timeout(within, elected.wait_for(|v| v.is_some())).await;
    f.expect("no leader in time").expect("the campaign ended").expect("leads")
}

#[tokio::test]
async fn one_leader_at_a_time_and_a_deposed_leaders_writes_fail() {
    let etcd = EtcdProcess::start().expect("etcd (Debian's etcd-server) must be installed");
    let a = EtcdStore::connect(&etcd.target("elect"), StoreMetrics::default()).await.unwrap();
    let b = EtcdStore::connect(&etcd.target("elect"), StoreMetrics::default()).await.unwrap();
    let ca = a.campaign("a");
    let fa = leads(&mut ca.elected(), Duration::from_secs(10)).await;
    let cb = b.campaign("b");
    // The leader's fenced writes go through; a failed compare of its own is still `false`.
    let r = fenced(fa, a.txn(Txn::new().put("x", b"1".to_vec()))).await.unwrap();
    assert!(r.succeeded);
    let r = fenced(fa, a.txn(Txn::new().when("x", 0).put("x", b"0".to_vec()))).await.unwrap();
    assert!(!r.succeeded);
    // b does not lead while a does.
    b.txn(Txn::new().put("seen", vec![])).await.unwrap();
    assert!(cb.elected().borrow().is_none(), "two leaders");
    assert_eq!(ca.wins(), 1);

    // a resigns: b wins a later term at once.
    ca.resign().await;
    let fb = leads(&mut cb.elected(), Duration::from_secs(2)).await;
    assert!(fb.revision > fa.revision);
    // a, deposed, still writing in its old term: refused, and nothing written.
    match fenced(fa, a.txn(Txn::new().put("x", b"stale".to_vec()))).await {
        Err(StoreError::Fenced(term)) => assert_eq!(term, fa.revision),
        other => panic!("a deposed leader's write: {other:?}"),
    }
    assert_eq!(&a.get("x").unwrap().value[..], b"1");
    // The new leader's fenced writes and anyone's unfenced ones (the API's) go through.
    assert!(fenced(fb, b.txn(Txn::new().put("x", b"2".to_vec()))).await.unwrap().succeeded);
    assert!(a.txn(Txn::new().put("y", b"api".to_vec())).await.unwrap().succeeded);
    assert_eq!(&a.get("x").unwrap().value[..], b"2");
}

#[tokio::test]
async fn a_dead_leaders_lease_expires_and_another_server_takes_over() {
    let etcd = EtcdProcess::start().expect("etcd (Debian's etcd-server) must be installed");
    let a = EtcdStore::connect(&etcd.target("dead"), StoreMetrics::default()).await.unwrap();
    let b = EtcdStore::connect(&etcd.target("dead"), StoreMetrics::default()).await.unwrap();
    let ca = a.campaign("a");
    let fa = leads(&mut ca.elected(), Duration::from_secs(10)).await;
    let cb = b.campaign("b");
    b.txn(Txn::new().put("seen", vec![])).await.unwrap();
    assert!(cb.elected().borrow().is_none());
    // a dies without resigning: its lease is no longer kept alive and expires.
    drop(ca);
    let died = tokio::time::Instant::now();
    let fb = leads(&mut cb.elected(), Duration::from_secs(10)).await;
    let took = died.elapsed();
    assert!(took < Duration::from_secs(5), "took over after {took:?}");
    assert!(fb.revision > fa.revision);
    assert!(matches!(fenced(fa, a.txn(Txn::new().put("z", vec![]))).await, Err(StoreError::Fenced(_))));
}

/// Adds to one counter from many writers at once, each also creating a record of its own (as
/// agents' reports move a cluster's task counts): within one process they take turns on the
/// counter, so none is sent again; across two processes the guard catches the other's adds and
/// the sum is still exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_adds_in_one_process_take_turns_and_across_processes_stay_exact() {
    let etcd = EtcdProcess::start().expect("etcd (Debian's etcd-server) must be installed");
    let metrics = [StoreMetrics::default(), StoreMetrics::default()];
    let mut stores = Vec::new();
    for m in &metrics {
        stores.push(std::sync::Arc::new(EtcdStore::connect(&etcd.target("adds"), m.clone()).await.unwrap()));
    }
    let adds = |store: std::sync::Arc<EtcdStore>, who: usize, n: usize| {
        (0..n)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let txn =
                        Txn::new().when(format!("task/{who}-{i}"), 0).put(format!("task/{who}-{i}"), vec![]);
                    store.txn(txn.add("running", 1).add("pending", -1).add("pending", 2)).await.unwrap()
                })
            })
            .collect::<Vec<_>>()
    };
    for t in adds(stores[0].clone(), 0, 60) {
        assert!(t.await.unwrap().succeeded);
    }
    let counter =
        |s: &EtcdStore, k: &str| s.get(k).map(|kv| std::str::from_utf8(&kv.value).unwrap().to_string());
    assert_eq!(counter(&stores[0], "running").as_deref(), Some("60"));
    assert_eq!(counter(&stores[0], "pending").as_deref(), Some("60"));
    assert_eq!(metrics[0].etcd_counter_moved.get(), 0, "one process's writers failed each other's guard");
    assert_eq!(metrics[0].etcd_committed.get(), 60);

    // Two processes at once: each one's writers take turns, and the other's adds fail a guard
    // now and then (sent again with etcd's value): nothing is lost or counted twice.
    let mut all = adds(stores[0].clone(), 1, 60);
    all.extend(adds(stores[1].clone(), 2, 60));
    for t in all {
        assert!(t.await.unwrap().succeeded);
    }
    let last = stores[1].txn(Txn::new().put("sync-both", vec![])).await.unwrap().revision;
    stores[0].txn(Txn::new().put("sync-both", vec![])).await.unwrap();
    assert!(stores[0].revision() >= last);
    for s in &stores {
        assert_eq!(counter(s, "running").as_deref(), Some("180"));
        assert_eq!(counter(s, "pending").as_deref(), Some("180"));
    }
    eprintln!(
        "two processes: {} and {} transactions sent again after the other's add",
        metrics[0].etcd_counter_moved.get(),
        metrics[1].etcd_counter_moved.get()
    );
}
