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
