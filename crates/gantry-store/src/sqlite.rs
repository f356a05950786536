//! The embedded backend: one SQLite database in WAL mode with `synchronous=FULL`, written by a
//! single writer thread that commits transactions in groups (one fsync for every transaction
//! waiting at that moment) and answers each caller only after its group is on disk.

use crate::{
    BoxFuture, Compare, Event, EventKind, KeyValue, Op, Store, StoreError, Txn, TxnResult, Value, Watch,
};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use tokio::sync::{broadcast, oneshot};

/// How many transactions one group commit takes at most.
const MAX_GROUP: usize = 512;
/// How many revisions of history the change log keeps for watches.
const LOG_RETAIN: i64 = 50_000;

struct Request {
    txn: Txn,
    reply: oneshot::Sender<Result<TxnResult, StoreError>>,
}

struct Shared {
    mirror: RwLock<BTreeMap<String, KeyValue>>,
    revision: AtomicI64,
    /// The oldest revision the change log still holds.
    compacted: AtomicI64,
    events: broadcast::Sender<Arc<Vec<Event>>>,
    path: Option<std::path::PathBuf>,
}

/// The SQLite-backed [`Store`].
pub struct SqliteStore {
    shared: Arc<Shared>,
    writer: mpsc::Sender<Request>,
}

fn storage(e: rusqlite::Error) -> StoreError {
    StoreError::Storage(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(storage)?;
        Self::start(conn, Some(path.to_path_buf()))
    }

    /// A store that lives in memory only (for tests and simulations).
    pub fn in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().map_err(storage)?;
        Self::start(conn, None)
    }

    fn start(conn: Connection, path: Option<std::path::PathBuf>) -> Result<Self, StoreError> {
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=FULL;
             PRAGMA cache_size=-2000;
             CREATE TABLE IF NOT EXISTS kv (
                 key TEXT PRIMARY KEY, value BLOB NOT NULL,
                 create_rev INTEGER NOT NULL, mod_rev INTEGER NOT NULL, version INTEGER NOT NULL
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS log (
                 rev INTEGER NOT NULL, seq INTEGER NOT NULL, key TEXT NOT NULL, value BLOB,
                 create_rev INTEGER NOT NULL, version INTEGER NOT NULL,
                 PRIMARY KEY (rev, seq)
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);",
        )
        .map_err(storage)?;
        let meta = |name: &str| -> Result<i64, StoreError> {
            Ok(conn
                .query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| r.get(0))
                .optional()
                .map_err(storage)?
                .unwrap_or(0))
        };
        let revision = meta("revision")?;
        let compacted = meta("compacted")?.max(1);
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
        let (events, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            mirror: RwLock::new(mirror),
            revision: AtomicI64::new(revision),
            compacted: AtomicI64::new(compacted),
            events,
            path,
        });
        let (tx, rx) = mpsc::channel();
        let s = shared.clone();
        std::thread::Builder::new()
            .name("gantry-store-writer".into())
            .spawn(move || Writer { conn, shared: s }.run(rx))
            .map_err(|e| StoreError::Storage(e.to_string()))?;
        Ok(SqliteStore { shared, writer: tx })
    }

    fn read_log(&self, from: i64, prefix: &str) -> Result<Vec<Event>, StoreError> {
        // The log is read through a second connection so the writer is never blocked by it.
        let Some(path) = &self.shared.path else {
            return Err(StoreError::Compacted {
                requested: from,
                oldest: self.shared.revision.load(Ordering::SeqCst) + 1,
            });
        };
        let conn = Connection::open(path).map_err(storage)?;
        let mut stmt = conn
            .prepare(
                "SELECT rev, key, value, create_rev, version FROM log
                 WHERE rev >= ?1 AND key >= ?2 ORDER BY rev, seq",
            )
            .map_err(storage)?;
        let rows = stmt
            .query_map(params![from, prefix], |r| {
                let value: Option<Vec<u8>> = r.get(2)?;
                let kind = if value.is_some() { EventKind::Put } else { EventKind::Delete };
                Ok(Event {
                    kind,
                    kv: KeyValue {
                        key: r.get(1)?,
                        value: value.unwrap_or_default().into(),
                        create_revision: r.get(3)?,
                        mod_revision: r.get(0)?,
                        version: r.get(4)?,
                    },
                })
            })
            .map_err(storage)?;
        let mut out = Vec::new();
        for e in rows {
            let e = e.map_err(storage)?;
            if e.kv.key.starts_with(prefix) {
                out.push(e);
            }
        }
        Ok(out)
    }
}

impl Store for SqliteStore {
    fn get(&self, key: &str) -> Option<KeyValue> {
        self.shared.mirror.read().unwrap_or_else(|e| e.into_inner()).get(key).cloned()
    }

    fn range(&self, prefix: &str, after: Option<&str>, limit: usize) -> Vec<KeyValue> {
        let m = self.shared.mirror.read().unwrap_or_else(|e| e.into_inner());
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        m.range::<str, _>((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn range_rev(&self, prefix: &str, before: Option<&str>, limit: usize) -> Vec<KeyValue> {
        let m = self.shared.mirror.read().unwrap_or_else(|e| e.into_inner());
        let lower = Bound::Included(prefix);
        let iter: Box<dyn Iterator<Item = (&String, &KeyValue)>> = match before {
            Some(b) => Box::new(m.range::<str, _>((lower, Bound::Excluded(b))).rev()),
            None => match prefix_end(prefix) {
                Some(end) => Box::new(m.range::<str, _>((lower, Bound::Excluded(end.as_str()))).rev()),
                None => Box::new(m.range::<str, _>((lower, Bound::Unbounded)).rev()),
            },
        };
        iter.take_while(|(k, _)| k.starts_with(prefix)).take(limit).map(|(_, v)| v.clone()).collect()
    }

    fn count(&self, prefix: &str) -> usize {
        let m = self.shared.mirror.read().unwrap_or_else(|e| e.into_inner());
        m.range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .count()
    }

    fn revision(&self) -> i64 {
        self.shared.revision.load(Ordering::SeqCst)
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
        // Subscribe first, then read the history: an event committed in between shows up in
        // both, and the watch drops the duplicate by revision.
        let live = self.shared.events.subscribe();
        let current = self.revision();
        let from = from_revision.max(1);
        let backlog = if from > current {
            Vec::new()
        } else {
            let oldest = self.shared.compacted.load(Ordering::SeqCst);
            if from < oldest {
                return Err(StoreError::Compacted { requested: from, oldest });
            }
            self.read_log(from, prefix)?
        };
        let next = backlog.last().map_or(from.max(current + 1), |e| e.kv.mod_revision + 1).max(current + 1);
        Ok(Watch::new(prefix.to_string(), backlog, next, live))
    }
}

/// The smallest string greater than every string starting with `prefix`, if there is one.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(c) = chars.pop() {
        if let Some(next) = char::from_u32(c as u32 + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
}

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
            self.commit_group(batch);
        }
    }

    fn commit_group(&mut self, batch: Vec<Request>) {
        let start_rev = self.shared.revision.load(Ordering::SeqCst);
        let mirror = self.shared.mirror.read().unwrap_or_else(|e| e.into_inner());
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
            for op in &req.txn.ops {
                match op {
                    Op::Put(k, v) => {
                        let prev = overlay.get(k);
                        let kv = KeyValue {
                            key: k.clone(),
                            value: Value::from(v.as_slice()),
                            create_revision: prev.map_or(rev, |p| p.create_revision),
                            mod_revision: rev,
                            version: prev.map_or(1, |p| p.version + 1),
                        };
                        events.push(Event { kind: EventKind::Put, kv: kv.clone() });
                        overlay.changes.insert(k.clone(), Some(kv));
                    }
                    Op::Delete(k) => delete(&mut overlay, &mut events, k, rev),
                    Op::DeletePrefix(p) => {
                        for k in overlay.keys_with_prefix(p) {
                            delete(&mut overlay, &mut events, &k, rev);
                        }
                    }
                }
            }
            results.push(TxnResult { succeeded: true, revision: rev });
        }
        let changes = overlay.changes;
        drop(mirror);

        if rev != start_rev
            && let Err(e) = self.persist(&changes, &events, rev)
        {
            for req in batch {
                let _ = req.reply.send(Err(e.clone()));
            }
            return;
        }
        if rev != start_rev {
            let mut m = self.shared.mirror.write().unwrap_or_else(|e| e.into_inner());
            for (k, v) in changes {
                match v {
                    Some(kv) => m.insert(k, kv),
                    None => m.remove(&k),
                };
            }
            self.shared.revision.store(rev, Ordering::SeqCst);
        }
        // Broadcast one message per revision so a watch sees whole transactions.
        let mut i = 0;
        while i < events.len() {
            let r = events[i].kv.mod_revision;
            let j = events[i..].iter().position(|e| e.kv.mod_revision != r).map_or(events.len(), |p| i + p);
            let _ = self.shared.events.send(Arc::new(events[i..j].to_vec()));
            i = j;
        }
        for (req, res) in batch.into_iter().zip(results) {
            let _ = req.reply.send(Ok(res));
        }
    }

    fn persist(
        &mut self,
        changes: &HashMap<String, Option<KeyValue>>,
        events: &[Event],
        rev: i64,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction().map_err(storage)?;
        {
            let mut put = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO kv (key, value, create_rev, mod_rev, version)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(storage)?;
            let mut del = tx.prepare_cached("DELETE FROM kv WHERE key = ?1").map_err(storage)?;
            for (k, v) in changes {
                match v {
                    Some(kv) => put
                        .execute(params![k, &kv.value[..], kv.create_revision, kv.mod_revision, kv.version])
                        .map_err(storage)?,
                    None => del.execute([k]).map_err(storage)?,
                };
            }
            let mut log = tx
                .prepare_cached(
                    "INSERT INTO log (rev, seq, key, value, create_rev, version)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(storage)?;
            for (seq, e) in events.iter().enumerate() {
                let value: Option<&[u8]> = match e.kind {
                    EventKind::Put => Some(&e.kv.value[..]),
                    EventKind::Delete => None,
                };
                log.execute(params![
                    e.kv.mod_revision,
                    seq as i64,
                    e.kv.key,
                    value,
                    e.kv.create_revision,
                    e.kv.version
                ])
                .map_err(storage)?;
            }
            tx.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('revision', ?1)", [rev])
                .map_err(storage)?;
            let oldest = self.shared.compacted.load(Ordering::SeqCst);
            if rev - oldest > LOG_RETAIN + LOG_RETAIN / 10 {
                let keep_from = rev - LOG_RETAIN;
                tx.execute("DELETE FROM log WHERE rev < ?1", [keep_from]).map_err(storage)?;
                tx.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('compacted', ?1)", [keep_from])
                    .map_err(storage)?;
                self.shared.compacted.store(keep_from, Ordering::SeqCst);
            }
        }
        tx.commit().map_err(storage)
    }
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
            let dir = std::env::temp_dir().join(format!("gantry-store-test-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
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
