//! The embedded backend: one SQLite database in WAL mode with `synchronous=FULL`, written by a
//! single writer thread that commits transactions in groups (one fsync for every transaction
//! waiting at that moment) and answers each caller only after its group is on disk.
//!
//! SQLite holds the key space only. The history that watches replay is kept in memory: the last
//! [`HISTORY_REVISIONS`] revisions, and no more than [`HISTORY_BYTES`] of values. A watch from an
//! older revision, or from one before the process started, gets [`StoreError::Compacted`], as an
//! etcd watch does after a compaction. (Writing every value a second time into an on-disk log
//! cost the writer about as much as the key space itself, for a history only a watch that fell
//! behind ever reads.)

use crate::mirror::{History, Mirror};
use crate::{
    BoxFuture, Compare, Event, EventKind, KeyValue, Op, Store, StoreError, StoreMetrics, Txn, TxnResult,
    Value, Watch,
};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use tokio::sync::oneshot;

/// How many transactions one group commit takes at most.
const MAX_GROUP: usize = 512;
/// How many revisions of history watches can replay, at most.
const HISTORY_REVISIONS: usize = 10_000;
/// How many bytes of values that history holds, at most.
const HISTORY_BYTES: usize = 16 << 20;

struct Request {
    txn: Txn,
    reply: oneshot::Sender<Result<TxnResult, StoreError>>,
}

/// The key space's table. Rows live in a rowid table and the keys in an index of their own:
/// rows are ~1 KiB, a quarter of a page, and in a table keyed by the key itself (`WITHOUT
/// ROWID`) such rows spill to overflow pages, which every update rewrites (and every search
/// past them reads), and every insert between full pages rebalances them. Here a new row is
/// appended, an update rewrites one page in place, and the index holds only short keys.
const KV_COLUMNS: &str = "(
    id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, value BLOB NOT NULL,
    create_rev INTEGER NOT NULL, mod_rev INTEGER NOT NULL, version INTEGER NOT NULL
)";

/// Moves a key space kept by an earlier version (a `WITHOUT ROWID` table keyed by the key) into
/// [`KV_COLUMNS`]' table, in one transaction.
fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let sql: Option<String> = conn
        .query_row("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'kv'", [], |r| r.get(0))
        .optional()
        .map_err(storage)?;
    if sql.is_some_and(|s| s.contains("WITHOUT ROWID")) {
        conn.execute_batch(&format!(
            "BEGIN;
             ALTER TABLE kv RENAME TO kv_old;
             CREATE TABLE kv {KV_COLUMNS};
             INSERT INTO kv (key, value, create_rev, mod_rev, version)
                 SELECT key, value, create_rev, mod_rev, version FROM kv_old ORDER BY key;
             DROP TABLE kv_old;
             COMMIT;"
        ))
        .map_err(storage)?;
    }
    Ok(())
}

/// The SQLite-backed [`Store`].
pub struct SqliteStore {
    shared: Arc<Mirror>,
    writer: mpsc::Sender<Request>,
}

fn storage(e: rusqlite::Error) -> StoreError {
    StoreError::Storage(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, its metrics recorded nowhere.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_metrics(path, StoreMetrics::default())
    }

    /// Opens (creating if needed) the database at `path`, recording into `metrics`.
    pub fn open_with_metrics(path: &Path, metrics: StoreMetrics) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(storage)?;
        Self::start(conn, metrics)
    }

    /// A store that lives in memory only (for tests and simulations).
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::in_memory_with_metrics(StoreMetrics::default())
    }

    /// Like [`Self::in_memory`], recording into `metrics`.
    pub fn in_memory_with_metrics(metrics: StoreMetrics) -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().map_err(storage)?;
        Self::start(conn, metrics)
    }

    fn start(conn: Connection, metrics: StoreMetrics) -> Result<Self, StoreError> {
        // Pages freed by deletes are given back to the file system by the writer
        // (`Writer::give_back`); that needs incremental auto-vacuum, which a database made
        // without it gets by one VACUUM (once, before anything else runs).
        let auto_vacuum: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).map_err(storage)?;
        if auto_vacuum != 2 {
            conn.execute_batch("PRAGMA auto_vacuum=INCREMENTAL; VACUUM;").map_err(storage)?;
        }
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=FULL;
             PRAGMA cache_size=-32768;
             PRAGMA wal_autocheckpoint=8192;",
        )
        .map_err(storage)?;
        migrate(&conn)?;
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS kv {KV_COLUMNS};
             DROP TABLE IF EXISTS log;
             CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
        ))
        .map_err(storage)?;
        let meta = |name: &str| -> Result<i64, StoreError> {
            Ok(conn
                .query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| r.get(0))
                .optional()
                .map_err(storage)?
                .unwrap_or(0))
        };
        let revision = meta("revision")?;
        let mut mirror = BTreeMap::new();
        {
            let mut stmt =
                conn.prepare("SELECT key, value, create_rev, mod_rev, version FROM kv").map_err(storage)?;
            let rows = stmt
                .query_map([], |r| {
                    let value: Vec<u8> = r.get(1)?;
                    Ok(KeyValue {
                        key: r.get(0)?,
                        value: value.into(),
                        create_revision: r.get(2)?,
                        mod_revision: r.get(3)?,
                        version: r.get(4)?,
                    })
                })
                .map_err(storage)?;
            for kv in rows {
                let kv = kv.map_err(storage)?;
                mirror.insert(kv.key.clone(), kv);
            }
        }
        let shared = Arc::new(Mirror::new(
            mirror,
            revision,
            History::after(revision, HISTORY_REVISIONS, HISTORY_BYTES),
        ));
        let (tx, rx) = mpsc::channel();
        let s = shared.clone();
        std::thread::Builder::new()
            .name("gantry-store-writer".into())
            .spawn(move || Writer { conn, shared: s, metrics, deleted: 0 }.run(rx))
            .map_err(|e| StoreError::Storage(e.to_string()))?;
        Ok(SqliteStore { shared, writer: tx })
    }
}

impl Store for SqliteStore {
    fn get(&self, key: &str) -> Option<KeyValue> {
        self.shared.get(key)
    }

    fn mod_revision(&self, key: &str) -> Option<i64> {
        self.shared.mod_revision(key)
    }

    fn range(&self, prefix: &str, after: Option<&str>, limit: usize) -> Vec<KeyValue> {
        self.shared.range(prefix, after, limit)
    }

    fn range_rev(&self, prefix: &str, before: Option<&str>, limit: usize) -> Vec<KeyValue> {
        self.shared.range_rev(prefix, before, limit)
    }

    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&KeyValue)) {
        self.shared.visit(prefix, f)
    }

    fn count(&self, prefix: &str) -> usize {
        self.shared.count(prefix)
    }

    fn revision(&self) -> i64 {
        self.shared.revision()
    }

    fn txn(&self, txn: Txn) -> BoxFuture<Result<TxnResult, StoreError>> {
        let (reply, rx) = oneshot::channel();
        let sent = self.writer.send(Request { txn, reply });
        Box::pin(async move {
            sent.map_err(|_| StoreError::Closed)?;
            rx.await.map_err(|_| StoreError::Closed)?
        })
    }

    fn watch(&self, prefix: &str, from_revision: i64) -> Result<Watch, StoreError> {
        self.shared.watch(prefix, from_revision)
    }

    fn compact(&self, revision: i64) -> BoxFuture<Result<(), StoreError>> {
        let done = self.shared.compact(revision);
        Box::pin(async move { done })
    }
}

struct Writer {
    conn: Connection,
    shared: Arc<Mirror>,
    metrics: StoreMetrics,
    /// Keys deleted since free pages were last looked at.
    deleted: usize,
}

/// After this many keys are deleted, the writer looks at the free pages.
const GIVE_BACK_AFTER: usize = 4096;
/// Free pages kept for the inserts to come (4 MiB of 4 KiB pages); more are given back.
const FREE_PAGES_KEPT: i64 = 1024;

/// A batch's view of the key space: pending changes over the committed mirror.
struct Overlay<'a> {
    base: &'a BTreeMap<String, KeyValue>,
    changes: HashMap<String, Option<KeyValue>>,
}

impl Overlay<'_> {
    fn get(&self, key: &str) -> Option<&KeyValue> {
        match self.changes.get(key) {
            Some(v) => v.as_ref(),
            None => self.base.get(key),
        }
    }

    fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .base
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .filter(|k| !matches!(self.changes.get(k), Some(None)))
            .collect();
        for (k, v) in &self.changes {
            if v.is_some() && k.starts_with(prefix) && !self.base.contains_key(k) {
                keys.push(k.clone());
            }
        }
        keys.sort();
        keys
    }
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Request>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            let started = std::time::Instant::now();
            let txns = batch.len();
            let keys = self.commit_group(batch);
            if self.deleted >= GIVE_BACK_AFTER {
                self.deleted = 0;
                self.give_back();
            }
            self.metrics.commit_duration.observe(started.elapsed().as_secs_f64());
            self.metrics.txns_per_commit.observe(txns as f64);
            self.metrics.keys_per_commit.observe(keys as f64);
        }
    }

    /// Commits a group; how many keys it wrote or deleted.
    fn commit_group(&mut self, batch: Vec<Request>) -> usize {
        let start_rev = self.shared.revision();
        let mirror = self.shared.read();
        let mut overlay = Overlay { base: &mirror, changes: HashMap::new() };
        let mut rev = start_rev;
        let mut results = Vec::with_capacity(batch.len());
        let mut events: Vec<Event> = Vec::new();
        for req in &batch {
            let holds = req.txn.compare.iter().all(|c| match c {
                Compare::ModRevision(k, r) => overlay.get(k).map_or(0, |kv| kv.mod_revision) == *r,
            });
            if !holds || req.txn.ops.is_empty() {
                results.push(TxnResult { succeeded: holds, revision: rev });
                continue;
            }
            rev += 1;
            let first = events.len();
            for op in &req.txn.ops {
                match op {
                    Op::Put(k, v) => put(&mut overlay, &mut events, k, Value::from(v.as_slice()), rev),
                    Op::Delete(k) => delete(&mut overlay, &mut events, k, rev),
                    Op::Add(k, delta) => {
                        let prev = overlay.get(k);
                        let sum = prev.map_or(0, |p| crate::counter(&p.value)).saturating_add(*delta);
                        match sum {
                            0 => delete(&mut overlay, &mut events, k, rev),
                            n => {
                                put(&mut overlay, &mut events, k, Value::from(n.to_string().as_bytes()), rev)
                            }
                        }
                    }
                    Op::DeletePrefix(p) => {
                        for k in overlay.keys_with_prefix(p) {
                            delete(&mut overlay, &mut events, &k, rev);
                        }
                    }
                }
            }
            net(&mut events, first, rev);
            results.push(TxnResult { succeeded: true, revision: rev });
        }
        let changes = overlay.changes;
        let written = changes.len();
        drop(mirror);

        if rev != start_rev
            && let Err(e) = self.persist(&changes, rev)
        {
            for req in batch {
                let _ = req.reply.send(Err(e.clone()));
            }
            return 0;
        }
        if rev != start_rev {
            let mut m = self.shared.write();
            for (k, v) in changes {
                match v {
                    Some(kv) => m.insert(k, kv),
                    None => m.remove(&k),
                };
            }
            self.shared.set_revision(rev);
        }
        // Record and broadcast one message per revision so a watch sees whole transactions.
        let mut history = self.shared.history();
        let mut i = 0;
        while i < events.len() {
            let r = events[i].kv.mod_revision;
            let j = events[i..].iter().position(|e| e.kv.mod_revision != r).map_or(events.len(), |p| i + p);
            self.shared.publish(&mut history, events[i..j].to_vec());
            i = j;
        }
        drop(history);
        self.shared.applied(rev);
        for (req, res) in batch.into_iter().zip(results) {
            let _ = req.reply.send(Ok(res));
        }
        written
    }

    /// Gives the free pages beyond [`FREE_PAGES_KEPT`] back to the file system, so the file
    /// shrinks after a cleanup removed more than steady churn will fill again. (Under steady
    /// churn, deletes free about as many pages as inserts take, and nothing is given back.)
    fn give_back(&mut self) {
        let free: i64 = self.conn.query_row("PRAGMA freelist_count", [], |r| r.get(0)).unwrap_or(0);
        if free > 2 * FREE_PAGES_KEPT {
            // Best effort: pages not given back now are reused by later inserts.
            let vacuum = |conn: &Connection| -> rusqlite::Result<()> {
                let mut stmt =
                    conn.prepare(&format!("PRAGMA incremental_vacuum({})", free - FREE_PAGES_KEPT))?;
                let mut rows = stmt.query([])?;
                while rows.next()?.is_some() {}
                Ok(())
            };
            let _ = vacuum(&self.conn);
        }
    }

    fn persist(&mut self, changes: &HashMap<String, Option<KeyValue>>, rev: i64) -> Result<(), StoreError> {
        self.deleted += changes.values().filter(|v| v.is_none()).count();
        let tx = self.conn.transaction().map_err(storage)?;
        {
            let mut put = tx
                .prepare_cached(
                    "INSERT INTO kv (key, value, create_rev, mod_rev, version) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (key) DO UPDATE SET
                         value = excluded.value, mod_rev = excluded.mod_rev, version = excluded.version",
                )
                .map_err(storage)?;
            let mut del = tx.prepare_cached("DELETE FROM kv WHERE key = ?1").map_err(storage)?;
            // In key order: neighbouring keys share B-tree pages, so each page is found once.
            let mut sorted: Vec<(&String, &Option<KeyValue>)> = changes.iter().collect();
            sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (k, v) in sorted {
                match v {
                    Some(kv) => put
                        .execute(params![k, &kv.value[..], kv.create_revision, kv.mod_revision, kv.version])
                        .map_err(storage)?,
                    None => del.execute([k]).map_err(storage)?,
                };
            }
            tx.execute(
                "INSERT INTO meta (name, value) VALUES ('revision', ?1)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                [rev],
            )
            .map_err(storage)?;
        }
        tx.commit().map_err(storage)
    }
}

/// Leaves one event per key of a transaction's (from `first` on), as etcd reports it: the key's
/// last, unless the transaction created the key and deleted it again (then none).
fn net(events: &mut Vec<Event>, first: usize, rev: i64) {
    let txn: Vec<Event> = events.drain(first..).collect();
    let mut last: HashMap<&str, usize> = HashMap::new();
    let mut created: HashMap<&str, bool> = HashMap::new();
    for (i, e) in txn.iter().enumerate() {
        last.insert(&e.kv.key, i);
        created
            .entry(&e.kv.key)
            .or_insert(e.kind == EventKind::Put && e.kv.create_revision == rev && e.kv.version == 1);
    }
    let keep: Vec<bool> = txn
        .iter()
        .enumerate()
        .map(|(i, e)| {
            last[e.kv.key.as_str()] == i && !(e.kind == EventKind::Delete && created[e.kv.key.as_str()])
        })
        .collect();
    events.extend(txn.iter().zip(keep).filter(|(_, k)| *k).map(|(e, _)| e.clone()));
}

fn put(overlay: &mut Overlay<'_>, events: &mut Vec<Event>, key: &str, value: Value, rev: i64) {
    let prev = overlay.get(key);
    let kv = KeyValue {
        key: key.to_string(),
        value,
        create_revision: prev.map_or(rev, |p| p.create_revision),
        mod_revision: rev,
        version: prev.map_or(1, |p| p.version + 1),
    };
    events.push(Event { kind: EventKind::Put, kv: kv.clone() });
    overlay.changes.insert(key.to_string(), Some(kv));
}

fn delete(overlay: &mut Overlay<'_>, events: &mut Vec<Event>, key: &str, rev: i64) {
    if let Some(prev) = overlay.get(key) {
        let kv = KeyValue {
            key: key.to_string(),
            value: Value::from(&[][..]),
            create_revision: prev.create_revision,
            mod_revision: rev,
            version: prev.version,
        };
        events.push(Event { kind: EventKind::Delete, kv });
        overlay.changes.insert(key.to_string(), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty directory of this test process's own.
    fn fresh_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("gantry-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().build().unwrap()
    }

    #[test]
    fn put_get_range_and_revisions() {
        rt().block_on(async {
            let s = SqliteStore::in_memory().unwrap();
            assert_eq!(s.revision(), 0);
            let r = s.txn(Txn::new().put("a/1", b"x".to_vec()).put("a/2", b"y".to_vec())).await.unwrap();
            assert!(r.succeeded);
            assert_eq!(r.revision, 1);
            s.txn(Txn::new().put("b/1", b"z".to_vec())).await.unwrap();
            let kv = s.get("a/1").unwrap();
            assert_eq!(
                (&kv.value[..], kv.create_revision, kv.mod_revision, kv.version),
                (&b"x"[..], 1, 1, 1)
            );
            let keys: Vec<_> = s.range("a/", None, 10).into_iter().map(|k| k.key).collect();
            assert_eq!(keys, ["a/1", "a/2"]);
            let keys: Vec<_> = s.range("a/", Some("a/1"), 10).into_iter().map(|k| k.key).collect();
            assert_eq!(keys, ["a/2"]);
            assert_eq!(s.count(""), 3);
            let mut visited = Vec::new();
            s.visit("a/", &mut |kv| visited.push((kv.key.clone(), kv.mod_revision)));
            assert_eq!(
                visited,
                [("a/1".to_string(), 1), ("a/2".to_string(), 1)],
                "visit sees what range does"
            );
            let keys: Vec<_> = s.range_rev("a/", None, 10).into_iter().map(|k| k.key).collect();
            assert_eq!(keys, ["a/2", "a/1"]);
            let keys: Vec<_> = s.range_rev("a/", Some("a/2"), 10).into_iter().map(|k| k.key).collect();
            assert_eq!(keys, ["a/1"]);
            s.txn(Txn::new().put("a/1", b"x2".to_vec())).await.unwrap();
            let kv = s.get("a/1").unwrap();
            assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (1, 3, 2));
        });
    }

    #[test]
    fn compare_and_swap() {
        rt().block_on(async {
            let s = SqliteStore::in_memory().unwrap();
            // Create-if-absent succeeds once.
            assert!(s.txn(Txn::new().when("k", 0).put("k", b"1".to_vec())).await.unwrap().succeeded);
            let r = s.txn(Txn::new().when("k", 0).put("k", b"2".to_vec())).await.unwrap();
            assert!(!r.succeeded);
            assert_eq!(&s.get("k").unwrap().value[..], b"1");
            // Update at the right revision succeeds, at a stale one fails.
            assert!(s.txn(Txn::new().when("k", 1).put("k", b"3".to_vec())).await.unwrap().succeeded);
            assert!(!s.txn(Txn::new().when("k", 1).put("k", b"4".to_vec())).await.unwrap().succeeded);
            assert_eq!(&s.get("k").unwrap().value[..], b"3");
            assert_eq!(s.revision(), 2);
        });
    }

    #[test]
    fn concurrent_cas_in_one_group_lets_exactly_one_win() {
        rt().block_on(async {
            let s = SqliteStore::in_memory().unwrap();
            let futs: Vec<_> =
                (0..50).map(|i| s.txn(Txn::new().when("slot", 0).put("slot", vec![i as u8]))).collect();
            let mut wins = 0;
            for f in futs {
                if f.await.unwrap().succeeded {
                    wins += 1;
                }
            }
            assert_eq!(wins, 1);
        });
    }

    #[test]
    fn delete_prefix_and_watch_from_revision() {
        rt().block_on(async {
            let dir = fresh_dir("test");
            let s = SqliteStore::open(&dir.join("db")).unwrap();
            s.txn(Txn::new().put("w/a", b"1".to_vec())).await.unwrap();
            s.txn(Txn::new().put("other", b"1".to_vec())).await.unwrap();
            s.txn(Txn::new().put("w/b", b"2".to_vec())).await.unwrap();
            let mut w = s.watch("w/", 1).unwrap();
            let e = w.next().await.unwrap();
            assert_eq!((e.kind, e.kv.key.as_str(), e.kv.mod_revision), (EventKind::Put, "w/a", 1));
            let e = w.next().await.unwrap();
            assert_eq!((e.kv.key.as_str(), e.kv.mod_revision), ("w/b", 3));
            s.txn(Txn::new().delete_prefix("w/")).await.unwrap();
            let mut deleted = [w.next().await.unwrap(), w.next().await.unwrap()];
            deleted.sort_by(|a, b| a.kv.key.cmp(&b.kv.key));
            assert!(deleted.iter().all(|e| e.kind == EventKind::Delete && e.kv.mod_revision == 4));
            assert_eq!(s.count("w/"), 0);
            assert!(s.get("other").is_some());
            drop(s);
            // Everything acknowledged is there after reopening.
            let s = SqliteStore::open(&dir.join("db")).unwrap();
            assert_eq!(s.revision(), 4);
            assert_eq!(s.count(""), 1);
            let _ = std::fs::remove_dir_all(&dir);
        });
    }

    #[test]
    fn watches_after_a_restart_start_from_the_restart() {
        rt().block_on(async {
            let dir = fresh_dir("restart");
            let s = SqliteStore::open(&dir.join("db")).unwrap();
            s.txn(Txn::new().put("k", b"1".to_vec())).await.unwrap();
            s.txn(Txn::new().put("k", b"2".to_vec())).await.unwrap();
            drop(s);
            let s = SqliteStore::open(&dir.join("db")).unwrap();
            assert!(matches!(s.watch("", 1), Err(StoreError::Compacted { requested: 1, oldest: 3 })));
            let mut w = s.watch("", 3).unwrap();
            s.txn(Txn::new().put("k", b"3".to_vec())).await.unwrap();
            let e = w.next().await.unwrap();
            assert_eq!((e.kv.mod_revision, e.kv.version, &e.kv.value[..]), (3, 3, &b"3"[..]));
            let _ = std::fs::remove_dir_all(&dir);
        });
    }

    #[test]
    fn a_key_space_of_the_earlier_layout_is_moved_over() {
        let dir = fresh_dir("migrate");
        let path = dir.join("db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE kv (
                     key TEXT PRIMARY KEY, value BLOB NOT NULL,
                     create_rev INTEGER NOT NULL, mod_rev INTEGER NOT NULL, version INTEGER NOT NULL
                 ) WITHOUT ROWID;
                 CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
                 INSERT INTO kv VALUES ('a/1', x'31', 1, 3, 2), ('a/2', x'32', 2, 2, 1);
                 INSERT INTO meta VALUES ('revision', 3);",
            )
            .unwrap();
        }
        rt().block_on(async {
            let s = SqliteStore::open(&path).unwrap();
            assert_eq!(s.revision(), 3);
            let kv = s.get("a/1").unwrap();
            assert_eq!(
                (&kv.value[..], kv.create_revision, kv.mod_revision, kv.version),
                (&b"1"[..], 1, 3, 2)
            );
            s.txn(Txn::new().when("a/2", 2).put("a/2", b"22".to_vec())).await.unwrap();
            drop(s);
            let s = SqliteStore::open(&path).unwrap();
            assert_eq!(s.revision(), 4);
            let kv = s.get("a/2").unwrap();
            assert_eq!((&kv.value[..], kv.create_revision, kv.version), (&b"22"[..], 2, 2));
            assert_eq!(s.count("a/"), 2);
        });
        let conn = Connection::open(&path).unwrap();
        let sql: String =
            conn.query_row("SELECT sql FROM sqlite_master WHERE name = 'kv'", [], |r| r.get(0)).unwrap();
        assert!(!sql.contains("WITHOUT ROWID"), "{sql}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn adds_commute_across_concurrent_transactions_and_zero_deletes_the_counter() {
        rt().block_on(async {
            let s = SqliteStore::in_memory().unwrap();
            s.txn(Txn::new().put("k", b"v".to_vec())).await.unwrap();
            // Fifty writers in one group, each guarded on a key of its own, all add to one
            // counter: none fails, and the counter holds the sum.
            let futs: Vec<_> = (0..50)
                .map(|i| {
                    s.txn(Txn::new().when(format!("own/{i}"), 0).put(format!("own/{i}"), vec![]).add("n", 2))
                })
                .collect();
            for f in futs {
                assert!(f.await.unwrap().succeeded);
            }
            assert_eq!(crate::counter(&s.get("n").unwrap().value), 100);
            assert_eq!(&s.get("n").unwrap().value[..], b"100");
            // An add in a transaction whose compare fails does nothing.
            assert!(!s.txn(Txn::new().when("k", 0).add("n", 5)).await.unwrap().succeeded);
            assert_eq!(crate::counter(&s.get("n").unwrap().value), 100);
            // Two adds in one transaction, and a negative one.
            s.txn(Txn::new().add("n", -30).add("n", -20)).await.unwrap();
            assert_eq!(crate::counter(&s.get("n").unwrap().value), 50);
            let mut w = s.watch("n", s.revision() + 1).unwrap();
            s.txn(Txn::new().add("n", -50)).await.unwrap();
            assert!(s.get("n").is_none(), "a counter at 0 is deleted");
            assert_eq!(w.next().await.unwrap().kind, EventKind::Delete);
            // A delta of 0 is no op at all.
            assert!(Txn::new().add("n", 0).ops.is_empty());
            s.txn(Txn::new().add("m", -1)).await.unwrap();
            assert_eq!(crate::counter(&s.get("m").unwrap().value), -1);
        });
    }

    #[test]
    fn the_file_shrinks_after_most_of_its_keys_are_deleted() {
        rt().block_on(async {
            let dir = fresh_dir("shrink");
            let path = dir.join("db");
            let s = SqliteStore::open(&path).unwrap();
            let value = vec![7u8; 1000];
            for chunk in 0..20 {
                let mut txn = Txn::new();
                for i in 0..1000 {
                    txn = txn.put(format!("k/{chunk:02}/{i:04}"), value.clone());
                }
                s.txn(txn).await.unwrap();
            }
            // Read by a connection of its own: it sees what the writer committed.
            let pages = |_: &SqliteStore| -> i64 {
                let c = Connection::open(&path).unwrap();
                c.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap()
            };
            let full = pages(&s);
            s.txn(Txn::new().delete_prefix("k/")).await.unwrap();
            // One more write lets the writer look at the free pages after the big delete.
            s.txn(Txn::new().put("x", vec![])).await.unwrap();
            let after = pages(&s);
            assert!(after < full / 2, "{after} pages after the delete, {full} before");
            drop(s);
            let c = Connection::open(&path).unwrap();
            let av: i64 = c.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).unwrap();
            assert_eq!(av, 2, "incremental");
            let _ = std::fs::remove_dir_all(&dir);
        });
    }

    #[test]
    fn watch_from_the_future_sees_only_new_events() {
        rt().block_on(async {
            let s = SqliteStore::in_memory().unwrap();
            s.txn(Txn::new().put("x", b"1".to_vec())).await.unwrap();
            let mut w = s.watch("", s.revision() + 1).unwrap();
            s.txn(Txn::new().put("y", b"1".to_vec())).await.unwrap();
            let e = w.next().await.unwrap();
            assert_eq!((e.kv.key.as_str(), e.kv.mod_revision), ("y", 2));
        });
    }
}
