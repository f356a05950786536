//! The store contract, run against both backends: each case below runs once on SQLite and once
//! on etcd (a real `etcd` process of the test's own, on free loopback ports). Revisions are
//! compared with each other, never with constants: etcd starts at revision 1 and counts its
//! own bookkeeping.

use gantry_store::testing::EtcdProcess;
use gantry_store::{EtcdStore, EventKind, SqliteStore, Store, StoreError, StoreMetrics, Txn, counter};
use std::sync::Arc;

/// A backend a case runs on: the store, and how to open it again over the same data.
trait Backend {
    fn store(&self) -> Arc<dyn Store>;
    /// Drops the open store and opens the same data again (a restart).
    async fn reopen(&mut self) -> Arc<dyn Store>;
    /// A second, independent store over the same data, if the backend can share it.
    async fn second(&self) -> Option<Arc<dyn Store>>;
}

struct Sqlite {
    dir: std::path::PathBuf,
    store: Option<Arc<dyn Store>>,
}

impl Sqlite {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("gantry-conformance-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("db")).unwrap());
        Sqlite { dir, store: Some(store) }
    }
}

impl Drop for Sqlite {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Backend for Sqlite {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone().unwrap()
    }
    async fn reopen(&mut self) -> Arc<dyn Store> {
        self.store = None;
        // The writer thread closes the database once the last handle is gone.
        let path = self.dir.join("db");
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
        self.store = Some(store.clone());
        store
    }
    async fn second(&self) -> Option<Arc<dyn Store>> {
        None
    }
}

struct Etcd {
    etcd: EtcdProcess,
    store: Arc<dyn Store>,
}

impl Etcd {
    async fn new() -> Self {
        let etcd = EtcdProcess::start().expect("etcd (Debian's etcd-server) must be installed");
        let store =
            Arc::new(EtcdStore::connect(&etcd.target("conformance"), StoreMetrics::default()).await.unwrap());
        Etcd { etcd, store }
    }
}

impl Backend for Etcd {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
    async fn reopen(&mut self) -> Arc<dyn Store> {
        let target = self.etcd.target("conformance");
        self.store = Arc::new(EtcdStore::connect(&target, StoreMetrics::default()).await.unwrap());
        self.store.clone()
    }
    async fn second(&self) -> Option<Arc<dyn Store>> {
        let target = self.etcd.target("conformance");
        Some(Arc::new(EtcdStore::connect(&target, StoreMetrics::default()).await.unwrap()))
    }
}

fn keys(kvs: Vec<gantry_store::KeyValue>) -> Vec<String> {
    kvs.into_iter().map(|kv| kv.key).collect()
}

async fn put_get_range_and_revisions(b: &mut impl Backend) {
    let s = b.store();
    let start = s.revision();
    let r1 = s.txn(Txn::new().put("a/1", b"x".to_vec()).put("a/2", b"y".to_vec())).await.unwrap();
    assert!(r1.succeeded);
    assert!(r1.revision > start);
    // Read-your-writes: the store answered only once its reads see the write.
    assert_eq!(s.revision(), r1.revision);
    let r2 = s.txn(Txn::new().put("b/1", b"z".to_vec())).await.unwrap();
    assert!(r2.revision > r1.revision, "revisions strictly increase");
    let kv = s.get("a/1").unwrap();
    assert_eq!(
        (&kv.value[..], kv.create_revision, kv.mod_revision, kv.version),
        (&b"x"[..], r1.revision, r1.revision, 1)
    );
    assert_eq!(s.get("a/2").unwrap().mod_revision, r1.revision, "one transaction, one revision");
    assert_eq!(keys(s.range("a/", None, 10)), ["a/1", "a/2"]);
    assert_eq!(keys(s.range("a/", Some("a/1"), 10)), ["a/2"]);
    assert_eq!(keys(s.range("", None, 2)), ["a/1", "a/2"], "limit");
    assert_eq!(keys(s.range_rev("a/", None, 10)), ["a/2", "a/1"]);
    assert_eq!(keys(s.range_rev("a/", Some("a/2"), 10)), ["a/1"]);
    assert_eq!(s.count(""), 3);
    assert_eq!(s.count("a/"), 2);
    let mut visited = Vec::new();
    s.visit("a/", &mut |kv| visited.push(kv.key.clone()));
    assert_eq!(visited, ["a/1", "a/2"]);
    let r3 = s.txn(Txn::new().put("a/1", b"x2".to_vec())).await.unwrap();
    let kv = s.get("a/1").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (r1.revision, r3.revision, 2));
    // Everything acknowledged is there after a restart, with its revisions.
    let s = b.reopen().await;
    assert_eq!(s.revision(), r3.revision);
    assert_eq!(s.count(""), 3);
    let kv = s.get("a/1").unwrap();
    assert_eq!(
        (&kv.value[..], kv.create_revision, kv.mod_revision, kv.version),
        (&b"x2"[..], r1.revision, r3.revision, 2)
    );
}

async fn multi_key_compare_and_swap(b: &mut impl Backend) {
    let s = b.store();
    // Create-if-absent succeeds once.
    let first = s.txn(Txn::new().when("k", 0).put("k", b"1".to_vec())).await.unwrap();
    assert!(first.succeeded);
    assert!(!s.txn(Txn::new().when("k", 0).put("k", b"2".to_vec())).await.unwrap().succeeded);
    assert_eq!(&s.get("k").unwrap().value[..], b"1");
    // An update at the key's revision succeeds, at a stale one fails.
    let second = s.txn(Txn::new().when("k", first.revision).put("k", b"3".to_vec())).await.unwrap();
    assert!(second.succeeded);
    assert!(!s.txn(Txn::new().when("k", first.revision).put("k", b"4".to_vec())).await.unwrap().succeeded);
    assert_eq!(&s.get("k").unwrap().value[..], b"3");
    // Several keys: all compares must hold, and then every op applies at one revision.
    let other = s.txn(Txn::new().put("j", b"a".to_vec())).await.unwrap();
    let stale = Txn::new()
        .when("k", second.revision)
        .when("j", other.revision - 1)
        .put("k", b"5".to_vec())
        .put("j", b"b".to_vec())
        .delete("gone");
    assert!(!s.txn(stale).await.unwrap().succeeded);
    assert_eq!((&s.get("k").unwrap().value[..], &s.get("j").unwrap().value[..]), (&b"3"[..], &b"a"[..]));
    let both = Txn::new()
        .when("k", second.revision)
        .when("j", other.revision)
        .when("absent", 0)
        .put("k", b"5".to_vec())
        .put("j", b"b".to_vec());
    let r = s.txn(both).await.unwrap();
    assert!(r.succeeded);
    assert_eq!(
        (s.get("k").unwrap().mod_revision, s.get("j").unwrap().mod_revision),
        (r.revision, r.revision)
    );
    // A delete, then a compare that the key is absent.
    let d = s.txn(Txn::new().when("j", r.revision).delete("j")).await.unwrap();
    assert!(d.succeeded);
    assert!(s.get("j").is_none());
    assert!(s.txn(Txn::new().when("j", 0).put("j", b"c".to_vec())).await.unwrap().succeeded);
    // A transaction that only compares changes nothing.
    let before = s.get("k").unwrap();
    assert!(s.txn(Txn::new().when("k", before.mod_revision)).await.unwrap().succeeded);
    assert!(!s.txn(Txn::new().when("k", 0)).await.unwrap().succeeded);
    assert_eq!(s.get("k").unwrap(), before);
}

async fn concurrent_compare_and_swap_has_one_winner(b: &mut impl Backend) {
    let s = b.store();
    let futs: Vec<_> =
        (0..50).map(|i| s.txn(Txn::new().when("slot", 0).put("slot", vec![i as u8]))).collect();
    let mut wins = Vec::new();
    for (i, f) in futs.into_iter().enumerate() {
        if f.await.unwrap().succeeded {
            wins.push(i as u8);
        }
    }
    assert_eq!(wins.len(), 1);
    assert_eq!(&s.get("slot").unwrap().value[..], &wins[..]);
}

async fn delete_prefix_with_writes_in_the_same_transaction(b: &mut impl Backend) {
    let s = b.store();
    s.txn(
        Txn::new()
            .put("p/a", b"1".to_vec())
            .put("p/b", b"2".to_vec())
            .put("p/c", b"3".to_vec())
            .put("q", b"4".to_vec()),
    )
    .await
    .unwrap();
    let mut w = s.watch("p/", s.revision() + 1).unwrap();
    // Put before the delete is undone by it; put after it stays; a key written twice keeps
    // the last write.
    let r = s
        .txn(
            Txn::new()
                .put("p/z", b"gone".to_vec())
                .delete_prefix("p/")
                .put("p/b", b"new".to_vec())
                .put("p/d", b"x".to_vec())
                .put("p/d", b"y".to_vec()),
        )
        .await
        .unwrap();
    assert!(r.succeeded);
    assert_eq!(keys(s.range("p/", None, 10)), ["p/b", "p/d"]);
    // (Its `version` and `create_revision` differ: SQLite applies the ops in turn, so p/b was
    // created again; etcd cannot delete and put one key in one transaction, so the put alone
    // is sent and p/b lives on. Nothing reads them; see `KeyValue`.)
    let b2 = s.get("p/b").unwrap();
    assert_eq!((&b2.value[..], b2.mod_revision), (&b"new"[..], r.revision));
    assert_eq!(&s.get("p/d").unwrap().value[..], b"y");
    assert!(s.get("q").is_some(), "outside the prefix");
    let mut seen = Vec::new();
    for _ in 0..4 {
        let e = w.next().await.unwrap();
        assert_eq!(e.kv.mod_revision, r.revision);
        seen.push((e.kv.key, e.kind));
    }
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        seen,
        [
            ("p/a".to_string(), EventKind::Delete),
            ("p/b".to_string(), EventKind::Put),
            ("p/c".to_string(), EventKind::Delete),
            ("p/d".to_string(), EventKind::Put),
        ]
    );
    // Everything goes with the empty prefix.
    s.txn(Txn::new().delete_prefix("")).await.unwrap();
    assert_eq!(s.count(""), 0);
}

async fn watches_replay_from_a_revision(b: &mut impl Backend) {
    let s = b.store();
    let r1 = s.txn(Txn::new().put("w/a", b"1".to_vec())).await.unwrap().revision;
    s.txn(Txn::new().put("other", b"1".to_vec())).await.unwrap();
    let r3 = s.txn(Txn::new().put("w/b", b"2".to_vec())).await.unwrap().revision;
    // From the past: the history under the prefix, then live events.
    let mut w = s.watch("w/", r1).unwrap();
    let e = w.next().await.unwrap();
    assert_eq!((e.kind, e.kv.key.as_str(), e.kv.mod_revision), (EventKind::Put, "w/a", r1));
    let e = w.next().await.unwrap();
    assert_eq!((e.kv.key.as_str(), e.kv.mod_revision, &e.kv.value[..]), ("w/b", r3, &b"2"[..]));
    assert!(w.try_next().is_none(), "nothing more yet");
    // From the middle of the history.
    let mut mid = s.watch("w/", r1 + 1).unwrap();
    assert_eq!(mid.next().await.unwrap().kv.key, "w/b");
    // From the future: only what comes.
    let mut fresh = s.watch("", s.revision() + 1).unwrap();
    let r4 = s.txn(Txn::new().put("w/a", b"3".to_vec())).await.unwrap().revision;
    let r5 = s.txn(Txn::new().delete("w/a")).await.unwrap().revision;
    let e = w.next().await.unwrap();
    assert_eq!(
        (e.kind, e.kv.mod_revision, e.kv.version, &e.kv.value[..]),
        (EventKind::Put, r4, 2, &b"3"[..])
    );
    let e = w.next().await.unwrap();
    assert_eq!(
        (e.kind, e.kv.key.as_str(), e.kv.mod_revision, e.kv.value.len()),
        (EventKind::Delete, "w/a", r5, 0)
    );
    assert_eq!(fresh.next().await.unwrap().kv.mod_revision, r4);
    assert_eq!(fresh.next().await.unwrap().kv.mod_revision, r5);
    // A restart keeps the data but not the history: as after a compaction.
    let s = b.reopen().await;
    assert!(matches!(s.watch("", r1), Err(StoreError::Compacted { .. })));
    let mut w = s.watch("", s.revision() + 1).unwrap();
    let r6 = s.txn(Txn::new().put("w/c", b"4".to_vec())).await.unwrap().revision;
    assert_eq!(w.next().await.unwrap().kv.mod_revision, r6);
}

async fn compacted_after_compaction(b: &mut impl Backend) {
    let s = b.store();
    let mut revs = Vec::new();
    for i in 0..5 {
        revs.push(s.txn(Txn::new().put("c", vec![i])).await.unwrap().revision);
    }
    s.compact(revs[3]).await.unwrap();
    match s.watch("c", revs[1]) {
        Err(StoreError::Compacted { requested, oldest }) => {
            assert_eq!((requested, oldest), (revs[1], revs[3]))
        }
        Ok(_) => panic!("a watch from a compacted revision"),
        Err(e) => panic!("{e}"),
    }
    let mut w = s.watch("c", revs[3]).unwrap();
    assert_eq!(w.next().await.unwrap().kv.mod_revision, revs[3]);
    assert_eq!(w.next().await.unwrap().kv.mod_revision, revs[4]);
    // The data is all there; compacting again below is nothing, beyond the revision an error.
    assert_eq!(&s.get("c").unwrap().value[..], &[4]);
    s.compact(revs[0]).await.unwrap();
    assert!(matches!(s.compact(s.revision() + 100).await, Err(StoreError::Storage(_))));
}

async fn counters_add_and_commute(b: &mut impl Backend) {
    let s = b.store();
    s.txn(Txn::new().put("k", b"v".to_vec())).await.unwrap();
    // Fifty writers, each guarded on a key of its own, all add to one counter: none fails,
    // and the counter holds the sum.
    let futs: Vec<_> = (0..50)
        .map(|i| s.txn(Txn::new().when(format!("own/{i}"), 0).put(format!("own/{i}"), vec![]).add("n", 2)))
        .collect();
    for f in futs {
        assert!(f.await.unwrap().succeeded);
    }
    assert_eq!(&s.get("n").unwrap().value[..], b"100");
    // An add in a transaction whose compare fails does nothing.
    assert!(!s.txn(Txn::new().when("k", 0).add("n", 5)).await.unwrap().succeeded);
    assert_eq!(counter(&s.get("n").unwrap().value), 100);
    // Two adds in one transaction, and a negative one.
    s.txn(Txn::new().add("n", -30).add("n", -20)).await.unwrap();
    assert_eq!(counter(&s.get("n").unwrap().value), 50);
    // A put then an add in one transaction adds to the put.
    s.txn(Txn::new().put("m", b"7".to_vec()).add("m", 3)).await.unwrap();
    assert_eq!(counter(&s.get("m").unwrap().value), 10);
    let mut w = s.watch("n", s.revision() + 1).unwrap();
    s.txn(Txn::new().add("n", -50)).await.unwrap();
    assert!(s.get("n").is_none(), "a counter at 0 is deleted");
    assert_eq!(w.next().await.unwrap().kind, EventKind::Delete);
    s.txn(Txn::new().add("neg", -1)).await.unwrap();
    assert_eq!(counter(&s.get("neg").unwrap().value), -1);
    // Through two stores over the same data (two servers on one etcd), the adds still commute.
    if let Some(t) = b.second().await {
        let futs: Vec<_> = (0..40)
            .map(|i| {
                let store = if i % 2 == 0 { &s } else { &t };
                store.txn(
                    Txn::new().when(format!("mine/{i}"), 0).put(format!("mine/{i}"), vec![]).add("shared", 1),
                )
            })
            .collect();
        for f in futs {
            assert!(f.await.unwrap().succeeded);
        }
        let r = t.txn(Txn::new().add("shared", 1)).await.unwrap().revision;
        assert_eq!(counter(&t.get("shared").unwrap().value), 41);
        // The other store reads it once its mirror reached that revision (its next write waits).
        s.txn(Txn::new().put("sync", vec![])).await.unwrap();
        assert!(s.revision() >= r);
        assert_eq!(counter(&s.get("shared").unwrap().value), 41);
    }
}

async fn a_failed_compare_reads_what_made_it_fail(b: &mut impl Backend) {
    // Two servers over one store: a write through one makes the other's stale compare fail,
    // and the failing server then reads the write that beat it.
    let Some(t) = b.second().await else { return };
    let s = b.store();
    let mine = s.txn(Txn::new().put("x", b"1".to_vec())).await.unwrap().revision;
    let theirs = t.txn(Txn::new().when("x", mine).put("x", b"2".to_vec())).await;
    assert!(theirs.unwrap().succeeded);
    let again = s.txn(Txn::new().when("x", mine).put("x", b"3".to_vec())).await.unwrap();
    assert!(!again.succeeded);
    let now = s.get("x").unwrap();
    assert_eq!((&now.value[..], now.version), (&b"2"[..], 2));
    assert!(s.txn(Txn::new().when("x", now.mod_revision).put("x", b"3".to_vec())).await.unwrap().succeeded);
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(&mut super::Sqlite::new(stringify!($case))).await
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(&mut super::Etcd::new().await).await
                }
            )*
        }
    };
}

conformance!(
    put_get_range_and_revisions,
    multi_key_compare_and_swap,
    concurrent_compare_and_swap_has_one_winner,
    delete_prefix_with_writes_in_the_same_transaction,
    watches_replay_from_a_revision,
    compacted_after_compaction,
    counters_add_and_commute,
    a_failed_compare_reads_what_made_it_fail,
);
