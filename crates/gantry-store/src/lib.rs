//! Gantry's state store, shaped like etcd: a flat, ordered key space of byte values, a global
//! revision that every committed write advances, multi-key transactions guarded by
//! compare-and-swap on a key's modification revision, and watches that replay from a revision.
//!
//! Callers depend on the [`Store`] trait only, so the embedded SQLite backend ([`SqliteStore`])
//! and a later etcd backend are interchangeable. Reads are served from an in-memory mirror at the
//! latest committed revision (as an etcd client's informer cache would be); writes go through
//! [`Store::txn`] and are durable on disk before their future resolves. The store never reads a
//! clock or makes up an identifier: values are opaque bytes from the caller.

pub mod election;
mod etcd;
mod metrics;
mod mirror;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

pub use etcd::{EtcdStore, EtcdTarget};
pub use metrics::StoreMetrics;
pub use sqlite::SqliteStore;

use mirror::Broadcast;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A stored value. Cheap to clone.
pub type Value = Arc<[u8]>;

/// A key and its value, with etcd's bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Value,
    /// The revision that created the key (since it last did not exist).
    pub create_revision: i64,
    /// The revision of the last write to the key.
    pub mod_revision: i64,
    /// How many times the key was written since it was created (1 after creation). A key
    /// deleted and put again by one transaction (a delete or a deleted prefix, then a put) is
    /// created again on SQLite, and on etcd (which cannot write one key twice in a transaction)
    /// keeps its `create_revision` and counts on: compare on `mod_revision`, never on these.
    pub version: i64,
}

/// A guard on a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key's modification revision equals this; 0 means the key must not exist.
    ModRevision(String, i64),
}

/// A write in a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put(String, Vec<u8>),
    Delete(String),
    /// Deletes every key that starts with the prefix (the empty prefix deletes everything).
    DeletePrefix(String),
    /// Adds to a counter: the key's value is an integer in decimal ASCII ([`counter`]; absent
    /// reads as 0), and the sum is written at the transaction's revision, or the key deleted when
    /// the sum is 0. It carries no compare of its own: adds to one key from concurrent
    /// transactions commute, so writers that share a counter never fail each other's
    /// compare-and-swap on it. (A backend without such an operation, etcd, implements it by
    /// reading the counter, guarding the transaction with the counter's mod revision and
    /// retrying the whole transaction, inside the backend, when only that guard failed.)
    Add(String, i64),
}

/// A counter's value as [`Op::Add`] keeps it (0 for anything that is not a decimal integer).
pub fn counter(value: &[u8]) -> i64 {
    std::str::from_utf8(value).ok().and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// An atomic transaction: if every compare holds, all ops apply at one new revision; otherwise
/// nothing changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub compare: Vec<Compare>,
    pub ops: Vec<Op>,
}

impl Txn {
    pub fn new() -> Self {
        Self::default()
    }
    /// Requires `key` to be at `mod_revision` (0: absent).
    pub fn when(mut self, key: impl Into<String>, mod_revision: i64) -> Self {
        self.compare.push(Compare::ModRevision(key.into(), mod_revision));
        self
    }
    pub fn put(mut self, key: impl Into<String>, value: Vec<u8>) -> Self {
        self.ops.push(Op::Put(key.into(), value));
        self
    }
    pub fn delete(mut self, key: impl Into<String>) -> Self {
        self.ops.push(Op::Delete(key.into()));
        self
    }
    pub fn delete_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.ops.push(Op::DeletePrefix(prefix.into()));
        self
    }
    /// Adds `delta` to the counter at `key` ([`Op::Add`]); a delta of 0 adds no op.
    pub fn add(mut self, key: impl Into<String>, delta: i64) -> Self {
        if delta != 0 {
            self.ops.push(Op::Add(key.into(), delta));
        }
        self
    }
}

/// The outcome of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnResult {
    /// Whether the compares held and the ops were applied.
    pub succeeded: bool,
    /// The store's revision after the transaction.
    pub revision: i64,
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change, as a watch reports it. For a delete, `kv.value` is empty and `kv.mod_revision` is
/// the deleting revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Storage(String),
    #[error("the store is closed")]
    Closed,
    #[error("revision {requested} has been compacted; the oldest available is {oldest}")]
    Compacted { requested: i64, oldest: i64 },
    #[error("the watch fell behind by {0} revisions and must be restarted")]
    Lagged(u64),
    /// A transaction sent inside [`election::fenced`] whose term has ended: another server
    /// leads now, and nothing was written.
    #[error("this server's term as leader (revision {0}) has ended: the write was refused")]
    Fenced(i64),
}

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The store contract. Guarantees:
/// * `txn` is atomic and its result is durable before the future resolves; once it resolves,
///   `get`/`range` on this store observe it (read-your-writes). Another process's writes are
///   observed once [`Store::read_index`] called after they were answered has resolved.
/// * Revisions strictly increase with every successful transaction that has ops.
/// * `range` returns keys in byte order.
/// * A watch delivers every event with revision ≥ `from_revision` for keys under its prefix, in
///   revision order, with no gaps, or fails with [`StoreError::Compacted`]/[`StoreError::Lagged`].
pub trait Store: Send + Sync + 'static {
    fn get(&self, key: &str) -> Option<KeyValue>;
    /// The revision `key` was last written at, without copying it: what a cache of decoded
    /// records checks on every read.
    fn mod_revision(&self, key: &str) -> Option<i64> {
        self.get(key).map(|kv| kv.mod_revision)
    }
    /// Up to `limit` keys that start with `prefix` and sort strictly after `after`.
    fn range(&self, prefix: &str, after: Option<&str>, limit: usize) -> Vec<KeyValue>;
    /// Up to `limit` keys that start with `prefix` and sort strictly before `before`, in
    /// descending order.
    fn range_rev(&self, prefix: &str, before: Option<&str>, limit: usize) -> Vec<KeyValue>;
    /// Calls `f` on every key that starts with `prefix`, in byte order, without copying them
    /// out: for the hot paths that only look at a few fields of many small entries. `f` runs
    /// under the store's read lock, so it must not call the store.
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&KeyValue)) {
        for kv in self.range(prefix, None, usize::MAX) {
            f(&kv);
        }
    }
    /// How many keys start with `prefix`.
    fn count(&self, prefix: &str) -> usize;
    /// The latest committed revision.
    fn revision(&self) -> i64;
    fn txn(&self, txn: Txn) -> BoxFuture<Result<TxnResult, StoreError>>;
    /// A read barrier, as etcd's ReadIndex: once the future resolves, reads from this store
    /// observe every transaction that any process sharing the store had committed when it was
    /// called (reads after it are linearizable). Answers the revision waited for. A store that
    /// is the only writer of its data (SQLite) is always there: the default answers at once.
    fn read_index(&self) -> BoxFuture<Result<i64, StoreError>> {
        let revision = self.revision();
        Box::pin(async move { Ok(revision) })
    }
    /// Whether [`read_index`](Self::read_index) has anything to wait for. A store that is the
    /// only writer of its data has not (the default), and a caller may skip the call (and the
    /// boxed future it allocates) on every request.
    fn read_index_waits(&self) -> bool {
        false
    }
    fn watch(&self, prefix: &str, from_revision: i64) -> Result<Watch, StoreError>;
    /// Discards the history before `revision`, as etcd's compaction does: a watch from an
    /// earlier revision fails with [`StoreError::Compacted`]. Compacting at or below an earlier
    /// compaction does nothing; compacting beyond the current revision is an error.
    fn compact(&self, revision: i64) -> BoxFuture<Result<(), StoreError>>;
}

/// A stream of events under a prefix: first the stored history from the requested revision, then
/// live events.
pub struct Watch {
    prefix: String,
    backlog: std::collections::VecDeque<Event>,
    /// Events with a revision below this were already delivered (from the backlog).
    next_revision: i64,
    live: tokio::sync::broadcast::Receiver<Arc<Broadcast>>,
    pending: std::collections::VecDeque<Event>,
    /// The error to report once `pending` is drained (events were lost after them).
    failed: Option<StoreError>,
}

impl Watch {
    pub(crate) fn new(
        prefix: String,
        backlog: Vec<Event>,
        next_revision: i64,
        live: tokio::sync::broadcast::Receiver<Arc<Broadcast>>,
    ) -> Self {
        Watch {
            prefix,
            backlog: backlog.into(),
            next_revision,
            live,
            pending: Default::default(),
            failed: None,
        }
    }

    /// A buffered event, or the error that follows the buffered events.
    fn buffered(&mut self) -> Option<Result<Event, StoreError>> {
        if let Some(e) = self.backlog.pop_front().or_else(|| self.pending.pop_front()) {
            return Some(Ok(e));
        }
        self.failed.clone().map(Err)
    }

    /// The next event if one is ready, without waiting: `None` when there is none yet.
    pub fn try_next(&mut self) -> Option<Result<Event, StoreError>> {
        use tokio::sync::broadcast::error::TryRecvError;
        loop {
            if let Some(r) = self.buffered() {
                return Some(r);
            }
            let batch = match self.live.try_recv() {
                Ok(b) => b,
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Lagged(n)) => return Some(Err(StoreError::Lagged(n))),
                Err(TryRecvError::Closed) => return Some(Err(StoreError::Closed)),
            };
            self.accept(&batch);
        }
    }

    fn accept(&mut self, batch: &Broadcast) {
        let batch = match batch {
            Broadcast::Events(events) => events,
            Broadcast::Gap { oldest } => {
                if self.failed.is_none() {
                    self.failed =
                        Some(StoreError::Compacted { requested: self.next_revision, oldest: *oldest });
                }
                return;
            }
        };
        if self.failed.is_some() {
            return;
        }
        for e in batch.iter() {
            if e.kv.mod_revision >= self.next_revision && e.kv.key.starts_with(&self.prefix) {
                self.pending.push_back(e.clone());
            }
        }
        if let Some(last) = batch.last() {
            self.next_revision = self.next_revision.max(last.kv.mod_revision + 1);
        }
    }

    /// The next event, waiting for one if needed.
    pub async fn next(&mut self) -> Result<Event, StoreError> {
        loop {
            if let Some(r) = self.buffered() {
                return r;
            }
            let batch = match self.live.recv().await {
                Ok(b) => b,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    return Err(StoreError::Lagged(n));
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    return Err(StoreError::Closed);
                }
            };
            self.accept(&batch);
        }
    }
}
