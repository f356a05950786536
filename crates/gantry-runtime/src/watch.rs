//! A cursor over the store's watch that restarts itself: what controllers and caches read the
//! store's changes through.
//!
//! A watch that falls behind the store's broadcast ([`StoreError::Lagged`]) is started again
//! from the revision after the last one read, losing nothing. When that revision is no longer in
//! the store's history ([`StoreError::Compacted`]), or on the very first read, the cursor starts
//! from the current revision and says so with [`Change::Relist`]: whatever the reader derived
//! from events must be derived again from the store itself.

use gantry_store::{Event, Store, StoreError, Watch};
use prometheus_client::metrics::gauge::Gauge;
use std::sync::Arc;

/// What a cursor read.
#[derive(Debug)]
pub enum Change {
    Event(Event),
    /// Events may have been missed: rebuild from the store (it is at least at the revision the
    /// cursor now follows from).
    Relist,
}

/// Reads a prefix of the store's key space from where it last left off.
pub struct WatchCursor {
    store: Arc<dyn Store>,
    prefix: String,
    watch: Option<Watch>,
    /// The last revision read.
    seen: i64,
    /// The store's revision minus the revision of the event just read.
    lag: Option<Gauge>,
}

impl WatchCursor {
    /// A cursor that starts at the store's revision when it is first read (with a
    /// [`Change::Relist`]). `lag`, if given, is set on every event to how many revisions the
    /// store was ahead of it.
    pub fn new(store: Arc<dyn Store>, prefix: impl Into<String>, lag: Option<Gauge>) -> Self {
        WatchCursor { store, prefix: prefix.into(), watch: None, seen: 0, lag }
    }

    /// The last revision read.
    pub fn seen(&self) -> i64 {
        self.seen
    }

    /// Starts the watch (again) from the current revision.
    fn relist(&mut self) -> Result<Change, StoreError> {
        self.watch = None;
        let now = self.store.revision();
        self.watch = Some(self.store.watch(&self.prefix, now + 1)?);
        self.seen = now;
        Ok(Change::Relist)
    }

    /// After [`StoreError::Lagged`]: the same watch from the revision after the last read, or
    /// a relist if the store no longer has it.
    fn resume(&mut self) -> Result<Option<Change>, StoreError> {
        match self.store.watch(&self.prefix, self.seen + 1) {
            Ok(w) => {
                self.watch = Some(w);
                Ok(None)
            }
            Err(StoreError::Compacted { .. }) => self.relist().map(Some),
            Err(e) => {
                self.watch = None;
                Err(e)
            }
        }
    }

    fn accept(&mut self, e: Event) -> Change {
        self.seen = self.seen.max(e.kv.mod_revision);
        if let Some(g) = &self.lag {
            g.set((self.store.revision() - e.kv.mod_revision).max(0));
        }
        Change::Event(e)
    }

    /// The next change if one is ready, without waiting. An error other than falling behind
    /// (the store closed) drops the watch; the next read relists.
    pub fn try_next(&mut self) -> Option<Result<Change, StoreError>> {
        loop {
            let Some(watch) = self.watch.as_mut() else { return Some(self.relist()) };
            match watch.try_next() {
                None => {
                    if let Some(g) = &self.lag {
                        g.set(0);
                    }
                    return None;
                }
                Some(Ok(e)) => return Some(Ok(self.accept(e))),
                Some(Err(StoreError::Lagged(_))) => match self.resume() {
                    Ok(None) => continue,
                    Ok(Some(c)) => return Some(Ok(c)),
                    Err(e) => return Some(Err(e)),
                },
                Some(Err(e)) => {
                    self.watch = None;
                    return Some(Err(e));
                }
            }
        }
    }

    /// The next change, waiting for one.
    pub async fn next(&mut self) -> Result<Change, StoreError> {
        loop {
            let Some(watch) = self.watch.as_mut() else { return self.relist() };
            match watch.next().await {
                Ok(e) => return Ok(self.accept(e)),
                Err(StoreError::Lagged(_)) => {
                    if let Some(c) = self.resume()? {
                        return Ok(c);
                    }
                }
                Err(e) => {
                    self.watch = None;
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_store::{SqliteStore, Txn};

    #[tokio::test]
    async fn a_cursor_relists_first_then_reads_events_in_order() {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
        store.txn(Txn::new().put("/a/before", b"1".to_vec())).await.unwrap();
        let mut c = WatchCursor::new(store.clone(), "/a/", None);
        assert!(matches!(c.try_next(), Some(Ok(Change::Relist))));
        assert!(c.try_next().is_none());
        store.txn(Txn::new().put("/a/x", b"1".to_vec())).await.unwrap();
        store.txn(Txn::new().put("/b/y", b"1".to_vec())).await.unwrap();
        store.txn(Txn::new().put("/a/z", b"1".to_vec())).await.unwrap();
        let keys: Vec<String> = std::iter::from_fn(|| c.try_next())
            .map(|c| match c.unwrap() {
                Change::Event(e) => e.kv.key,
                Change::Relist => "relist".into(),
            })
            .collect();
        assert_eq!(keys, ["/a/x", "/a/z"]);
        assert_eq!(c.seen(), 4);
        store.txn(Txn::new().put("/a/w", b"1".to_vec())).await.unwrap();
        assert!(matches!(c.next().await, Ok(Change::Event(e)) if e.kv.key == "/a/w"));
    }
}
