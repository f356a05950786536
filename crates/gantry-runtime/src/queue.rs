//! A keyed work queue with delays: what a controller's workers take keys from.
//!
//! A key is either waiting (with a deadline), in flight (handed out, not yet [`WorkQueue::done`]),
//! or absent. Adding a waiting key again keeps the earlier of the two deadlines; adding a key in
//! flight remembers it (earliest deadline again) and queues it once its pass is done, so one key
//! is never handed out twice at once and a change during a pass is never lost. Time is tokio's
//! clock ([`tokio::time::Instant`]), so tests run on a paused clock without sleeping.

use prometheus_client::metrics::gauge::Gauge;
use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::hash::Hash;
use std::pin::pin;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// A key a queue can hold.
pub trait QueueKey: Clone + Eq + Hash + Ord + Send + Sync + 'static {}
impl<T: Clone + Eq + Hash + Ord + Send + Sync + 'static> QueueKey for T {}

/// A keyed, deduplicating delay queue. Cheap to share (`Arc<WorkQueue<K>>`).
pub struct WorkQueue<K> {
    state: Mutex<State<K>>,
    /// Wakes takers: a key was added (it may be due sooner than what they sleep until), a key
    /// became due again after its pass, or the queue was closed.
    notify: Notify,
    /// Set to the number of waiting keys after every change (the controller's depth gauge).
    depth: Option<Gauge>,
}

struct State<K> {
    /// Waiting keys and their deadlines: the truth. `heap` may hold stale entries (a key whose
    /// deadline moved earlier, or that was handed out); they are skipped when popped.
    waiting: HashMap<K, Instant>,
    heap: BinaryHeap<Reverse<(Instant, K)>>,
    /// Keys handed out and not done yet.
    in_flight: HashSet<K>,
    /// Keys added while in flight: queued with this deadline once done.
    again: HashMap<K, Instant>,
    closed: bool,
}

impl<K> Default for State<K> {
    fn default() -> Self {
        State {
            waiting: HashMap::new(),
            heap: BinaryHeap::new(),
            in_flight: HashSet::new(),
            again: HashMap::new(),
            closed: false,
        }
    }
}

impl<K: QueueKey> Default for WorkQueue<K> {
    fn default() -> Self {
        Self::new(None)
    }
}

impl<K: QueueKey> WorkQueue<K> {
    /// An empty queue; `depth`, if given, follows the number of waiting keys.
    pub fn new(depth: Option<Gauge>) -> Self {
        WorkQueue { state: Mutex::new(State::default()), notify: Notify::new(), depth }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_depth(&self, st: &State<K>) {
        if let Some(g) = &self.depth {
            g.set(st.waiting.len() as i64);
        }
    }

    /// Queues `key` now.
    pub fn add(&self, key: K) {
        self.add_at(key, Instant::now());
    }

    /// Queues `key` after `delay`.
    pub fn add_after(&self, key: K, delay: Duration) {
        self.add_at(key, Instant::now() + delay);
    }

    /// Queues `key` to be handed out at `at` (or as soon after as a taker is free). A key that is
    /// already waiting keeps the earlier deadline.
    pub fn add_at(&self, key: K, at: Instant) {
        let mut st = self.lock();
        if st.closed {
            return;
        }
        if st.in_flight.contains(&key) {
            st.again.entry(key).and_modify(|d| *d = (*d).min(at)).or_insert(at);
            return;
        }
        if Self::schedule(&mut st, key, at) {
            self.set_depth(&st);
            drop(st);
            self.notify.notify_waiters();
        }
    }

    /// Makes `key` wait until `at` unless it already waits for an earlier time; whether anything
    /// changed.
    fn schedule(st: &mut State<K>, key: K, at: Instant) -> bool {
        match st.waiting.entry(key.clone()) {
            Entry::Occupied(e) if *e.get() <= at => false,
            Entry::Occupied(mut e) => {
                e.insert(at);
                st.heap.push(Reverse((at, key)));
                true
            }
            Entry::Vacant(e) => {
                e.insert(at);
                st.heap.push(Reverse((at, key)));
                true
            }
        }
    }

    /// The next due key, waiting until one is due; `None` once the queue is closed. The key is
    /// in flight until [`Self::done`]. Cancel-safe: a key is taken only by the poll that returns
    /// it.
    pub async fn next(&self) -> Option<K> {
        loop {
            // Registered before looking, so an add between the look and the wait is not missed.
            let mut notified = pin!(self.notify.notified());
            notified.as_mut().enable();
            let wake_at = {
                let mut st = self.lock();
                if st.closed {
                    return None;
                }
                let now = Instant::now();
                let mut wake_at = None;
                while let Some(Reverse((at, key))) = st.heap.peek().cloned() {
                    if st.waiting.get(&key) != Some(&at) {
                        st.heap.pop(); // stale
                        continue;
                    }
                    if at > now {
                        wake_at = Some(at);
                        break;
                    }
                    st.heap.pop();
                    st.waiting.remove(&key);
                    st.in_flight.insert(key.clone());
                    self.set_depth(&st);
                    return Some(key);
                }
                wake_at
            };
            match wake_at {
                Some(at) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Ends `key`'s pass. If it was added during the pass, it waits again (from the earliest
    /// deadline it was added with).
    pub fn done(&self, key: &K) {
        let mut st = self.lock();
        st.in_flight.remove(key);
        let Some(at) = st.again.remove(key) else { return };
        if st.closed {
            return;
        }
        Self::schedule(&mut st, key.clone(), at);
        self.set_depth(&st);
        drop(st);
        self.notify.notify_waiters();
    }

    /// How many keys wait (due or not), not counting those in flight.
    pub fn len(&self) -> usize {
        self.lock().waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many keys are in flight.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight.len()
    }

    /// When `key` is next due, if it waits (for tests and diagnostics).
    pub fn deadline(&self, key: &K) -> Option<Instant> {
        self.lock().waiting.get(key).copied()
    }

    /// Stops handing out keys: [`Self::next`] returns `None` from now on, and adds are ignored.
    /// Keys in flight may still be marked done.
    pub fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        st.waiting.clear();
        st.heap.clear();
        st.again.clear();
        self.set_depth(&st);
        drop(st);
        self.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn keys_are_deduplicated() {
        let q = WorkQueue::default();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        let mut got = vec![q.next().await.unwrap(), q.next().await.unwrap()];
        got.sort();
        assert_eq!(got, ["a", "b"]);
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_earliest_deadline_wins() {
        let q = WorkQueue::default();
        let t0 = Instant::now();
        q.add_after("a", Duration::from_secs(10));
        q.add_after("a", Duration::from_secs(3));
        q.add_after("a", Duration::from_secs(20)); // later: ignored
        assert_eq!(q.len(), 1);
        assert_eq!(q.deadline(&"a"), Some(t0 + Duration::from_secs(3)));
        assert_eq!(q.next().await, Some("a"));
        assert_eq!(Instant::now() - t0, Duration::from_secs(3), "handed out at the earliest deadline");
    }

    #[tokio::test(start_paused = true)]
    async fn keys_come_out_in_deadline_order_and_an_earlier_add_wakes_a_sleeping_taker() {
        let q = Arc::new(WorkQueue::default());
        let t0 = Instant::now();
        q.add_after("late", Duration::from_secs(60));
        let taker = tokio::spawn({
            let q = q.clone();
            async move { (q.next().await, Instant::now()) }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        q.add_after("soon", Duration::from_secs(1));
        let (key, at) = taker.await.unwrap();
        assert_eq!((key, at - t0), (Some("soon"), Duration::from_secs(2)));
        assert_eq!(q.next().await, Some("late"));
        assert_eq!(Instant::now() - t0, Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_in_flight_is_not_handed_out_again_until_done() {
        let q = WorkQueue::default();
        q.add("a");
        q.add("b");
        assert_eq!(q.next().await, Some("a"));
        q.add("a"); // changed during its pass
        q.add_after("a", Duration::from_secs(5)); // later than the first re-add: ignored
        assert_eq!(q.next().await, Some("b"));
        assert!(q.is_empty(), "a waits for its pass to end");
        let blocked = tokio::time::timeout(Duration::from_secs(60), q.next()).await;
        assert!(blocked.is_err(), "nothing is handed out while a's only key is in flight");
        q.done(&"a");
        assert_eq!(q.next().await, Some("a"));
        q.done(&"a");
        q.done(&"b");
        assert_eq!(q.in_flight(), 0);
        assert!(q.is_empty(), "a pass with no change during it queues nothing");
    }

    #[tokio::test(start_paused = true)]
    async fn closing_releases_takers() {
        let q = Arc::new(WorkQueue::<&str>::default());
        let taker = tokio::spawn({
            let q = q.clone();
            async move { q.next().await }
        });
        tokio::task::yield_now().await;
        q.close();
        assert_eq!(taker.await.unwrap(), None);
        q.add("a");
        assert_eq!(q.next().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_depth_gauge_follows_waiting_keys() {
        let g = Gauge::default();
        let q = WorkQueue::new(Some(g.clone()));
        q.add(1);
        q.add_after(2, Duration::from_secs(1));
        assert_eq!(g.get(), 2);
        assert_eq!(q.next().await, Some(1));
        assert_eq!(g.get(), 1);
    }
}
