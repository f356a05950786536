//! The read side both backends share: the key space in memory at the latest revision the
//! backend applied, the recent history that watches replay, and the broadcast that feeds live
//! watches. The SQLite backend fills it from its writer after each group commit; the etcd backend
//! from one etcd watch over its key space.

use crate::{Event, KeyValue, StoreError, Watch};
use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::broadcast;

/// What a live watch receives.
#[derive(Debug)]
pub(crate) enum Broadcast {
    /// The events of one revision.
    Events(Arc<Vec<Event>>),
    /// Events were lost (the etcd backend's watch resumed after a compaction and the mirror was
    /// read again at a later revision): watches still open end with `Compacted`.
    Gap { oldest: i64 },
}

pub(crate) struct Mirror {
    pub(crate) map: RwLock<BTreeMap<String, KeyValue>>,
    revision: AtomicI64,
    pub(crate) history: Mutex<History>,
    events: broadcast::Sender<Arc<Broadcast>>,
    /// The revision applied, for writers that wait for the mirror to reach their write.
    applied: tokio::sync::watch::Sender<i64>,
}

impl Mirror {
    pub(crate) fn new(map: BTreeMap<String, KeyValue>, revision: i64, history: History) -> Self {
        let (events, _) = broadcast::channel(1024);
        Mirror {
            map: RwLock::new(map),
            revision: AtomicI64::new(revision),
            history: Mutex::new(history),
            events,
            applied: tokio::sync::watch::channel(revision).0,
        }
    }

    pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, KeyValue>> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, KeyValue>> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn revision(&self) -> i64 {
        self.revision.load(Ordering::SeqCst)
    }

    /// Sets the revision the map is at (called with the map's write lock held, after the map
    /// took that revision's changes).
    pub(crate) fn set_revision(&self, revision: i64) {
        self.revision.store(revision, Ordering::SeqCst);
    }

    /// Records one revision's events in the history and sends them to live watches (after the
    /// map took them, so a watcher that reads the map on an event sees at least that revision).
    pub(crate) fn publish(&self, history: &mut History, events: Vec<Event>) {
        let events = Arc::new(events);
        history.push(events.clone());
        let _ = self.events.send(Arc::new(Broadcast::Events(events)));
    }

    /// Ends every open watch with `Compacted` and starts the history over after `revision`.
    pub(crate) fn gap(&self, history: &mut History, revision: i64) {
        *history = History::after(revision, history.max_revisions, history.max_bytes);
        let _ = self.events.send(Arc::new(Broadcast::Gap { oldest: revision + 1 }));
    }

    /// Tells writers waiting for a revision that the map reached `revision`.
    pub(crate) fn applied(&self, revision: i64) {
        self.applied.send_if_modified(|r| {
            let newer = revision > *r;
            *r = (*r).max(revision);
            newer
        });
    }

    /// Waits until the map reached `revision`.
    pub(crate) async fn reached(&self, revision: i64) {
        let mut rx = self.applied.subscribe();
        let _ = rx.wait_for(|r| *r >= revision).await;
    }

    pub(crate) fn get(&self, key: &str) -> Option<KeyValue> {
        self.read().get(key).cloned()
    }

    pub(crate) fn mod_revision(&self, key: &str) -> Option<i64> {
        self.read().get(key).map(|kv| kv.mod_revision)
    }

    pub(crate) fn range(&self, prefix: &str, after: Option<&str>, limit: usize) -> Vec<KeyValue> {
        let m = self.read();
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

    pub(crate) fn range_rev(&self, prefix: &str, before: Option<&str>, limit: usize) -> Vec<KeyValue> {
        let m = self.read();
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

    pub(crate) fn visit(&self, prefix: &str, f: &mut dyn FnMut(&KeyValue)) {
        let m = self.read();
        for (_, kv) in m.range::<str, _>((Bound::Included(prefix), Bound::Unbounded)) {
            if !kv.key.starts_with(prefix) {
                break;
            }
            f(kv);
        }
    }

    pub(crate) fn count(&self, prefix: &str) -> usize {
        self.read()
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .count()
    }

    pub(crate) fn watch(&self, prefix: &str, from_revision: i64) -> Result<Watch, StoreError> {
        // Subscribe first, then read the history: a revision is recorded before it is
        // broadcast, under the history's lock, so it is either in the backlog (and perhaps also
        // live, where the watch drops it by revision) or still to come live.
        let live = self.events.subscribe();
        let from = from_revision.max(1);
        let history = self.history();
        let backlog = if from > history.newest {
            Vec::new()
        } else if from < history.oldest {
            return Err(StoreError::Compacted { requested: from, oldest: history.oldest });
        } else {
            history.since(from, prefix)
        };
        let next = from.max(history.newest + 1);
        drop(history);
        Ok(Watch::new(prefix.to_string(), backlog, next, live))
    }

    /// Forgets the history before `revision`: a watch from an earlier one gets `Compacted`.
    pub(crate) fn compact(&self, revision: i64) -> Result<(), StoreError> {
        if revision > self.revision() {
            return Err(StoreError::Storage(format!(
                "cannot compact at revision {revision}: the store is at revision {}",
                self.revision()
            )));
        }
        self.history().compact(revision);
        Ok(())
    }
}

/// The recent revisions' events, oldest first, one entry per revision.
pub(crate) struct History {
    revisions: VecDeque<Arc<Vec<Event>>>,
    /// The bytes of values `revisions` holds.
    pub(crate) bytes: usize,
    /// The oldest revision a watch can start from.
    pub(crate) oldest: i64,
    /// The newest revision recorded (events of later revisions have not been broadcast yet).
    pub(crate) newest: i64,
    max_revisions: usize,
    max_bytes: usize,
}

impl History {
    /// An empty history after `revision`.
    pub(crate) fn after(revision: i64, max_revisions: usize, max_bytes: usize) -> Self {
        History {
            revisions: VecDeque::new(),
            bytes: 0,
            oldest: revision + 1,
            newest: revision,
            max_revisions,
            max_bytes,
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.revisions.len()
    }

    pub(crate) fn push(&mut self, batch: Arc<Vec<Event>>) {
        self.bytes += batch.iter().map(|e| e.kv.value.len()).sum::<usize>();
        if let Some(e) = batch.first() {
            self.newest = e.kv.mod_revision;
        }
        self.revisions.push_back(batch);
        while self.revisions.len() > self.max_revisions
            || (self.bytes > self.max_bytes && self.revisions.len() > 1)
        {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        let Some(old) = self.revisions.pop_front() else { return };
        self.bytes -= old.iter().map(|e| e.kv.value.len()).sum::<usize>();
        if let Some(e) = old.first() {
            self.oldest = self.oldest.max(e.kv.mod_revision + 1);
        }
    }

    /// Drops the revisions before `revision`.
    fn compact(&mut self, revision: i64) {
        while self.revisions.front().and_then(|b| b.first()).is_some_and(|e| e.kv.mod_revision < revision) {
            self.pop_oldest();
        }
        self.oldest = self.oldest.max(revision);
    }

    /// The events under `prefix` from revision `from` on.
    pub(crate) fn since(&self, from: i64, prefix: &str) -> Vec<Event> {
        let start = self.revisions.partition_point(|b| b.first().is_some_and(|e| e.kv.mod_revision < from));
        self.revisions
            .range(start..)
            .flat_map(|b| b.iter())
            .filter(|e| e.kv.key.starts_with(prefix))
            .cloned()
            .collect()
    }
}

/// The smallest string greater than every string starting with `prefix`, if there is one.
pub(crate) fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(c) = chars.pop() {
        if let Some(next) = char::from_u32(c as u32 + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventKind;

    fn batch(rev: i64, key: &str, len: usize) -> Arc<Vec<Event>> {
        Arc::new(vec![Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key: key.into(),
                value: vec![0u8; len].into(),
                create_revision: rev,
                mod_revision: rev,
                version: 1,
            },
        }])
    }

    #[test]
    fn history_keeps_the_last_revisions_within_its_byte_budget() {
        let mut h = History::after(10, 3, 100);
        for (rev, key) in [(11, "a/1"), (12, "b/1"), (13, "a/2")] {
            h.push(batch(rev, key, 10));
        }
        assert_eq!((h.oldest, h.newest), (11, 13));
        let keys: Vec<_> = h.since(12, "a/").into_iter().map(|e| e.kv.key).collect();
        assert_eq!(keys, ["a/2"]);
        // A fourth revision pushes out the first.
        h.push(batch(14, "a/3", 10));
        assert_eq!((h.oldest, h.newest, h.len()), (12, 14, 3));
        // A large value pushes out everything older than itself, but never itself.
        h.push(batch(15, "a/4", 500));
        assert_eq!((h.oldest, h.newest, h.len(), h.bytes), (15, 15, 1, 500));
        assert_eq!(h.since(15, "").len(), 1);
    }

    #[test]
    fn compacting_drops_the_revisions_before_it() {
        let mut h = History::after(0, 100, 1 << 20);
        for rev in 1..=5 {
            h.push(batch(rev, "k", 1));
        }
        h.compact(3);
        assert_eq!((h.oldest, h.newest, h.len()), (3, 5, 3));
        // Revisions with no events of this history's keys move the start too.
        h.compact(5);
        assert_eq!((h.oldest, h.len()), (5, 1));
    }
}
