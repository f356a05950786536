//! The controller driver: watch → reconcile → requeue, behind the leadership gate, until shutdown.
//!
//! A [`Reconciler`] looks at one key and returns an [`Action`]: run again after a delay, or wait
//! for a change. Errors are not the reconciler's to retry: the controller's [`Backoff`] turns
//! them into delayed retries, longer with each failure in a row of the same key. Keys come from
//! [`Reconciler::list`] (when the controller starts leading, after a watch restart, and at every
//! resync, the safety net) and from the store's watch mapped to keys. Every pass runs in a
//! `reconcile` span and is counted in the controller's metrics.

use crate::leader::{Leadership, wait_for};
use crate::metrics::{ControllerHandles, Metrics};
use crate::queue::{QueueKey, WorkQueue};
use crate::watch::{Change, WatchCursor};
use gantry_store::{Event, Store};
use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

/// What a pass asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Run the key again after this long, even if nothing changes (a change may run it sooner).
    Requeue(Duration),
    /// Nothing to do until something changes (a watch event, or the periodic resync).
    AwaitChange,
}

/// Looks at one key and acts on it. Level-triggered: a pass reads the current state, never an
/// event, so running it again is harmless. The controller never runs two passes of one key at
/// once.
pub trait Reconciler<K>: Send + Sync + 'static {
    type Error: Display + Send + 'static;

    fn reconcile(&self, key: &K) -> impl Future<Output = Result<Action, Self::Error>> + Send;

    /// Every key this controller looks after.
    fn list(&self) -> Vec<K>;
}

/// The error policy: a failed pass runs again after `base · 2^(failures-1)`, at most `max`.
/// A pass that succeeds forgets the key's failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { base: Duration::from_secs(1), max: Duration::from_secs(60) }
    }
}

impl Backoff {
    /// The delay after the `failures`-th failure in a row (1 for the first).
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// The signal that stops controllers: once triggered (or once its trigger is dropped), they stop
/// taking keys, let the passes in flight finish, and return.
#[derive(Debug, Clone)]
pub struct Shutdown(Option<watch::Receiver<bool>>);

/// Triggers a [`Shutdown`].
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// A shutdown signal and its trigger.
pub fn shutdown() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(Some(rx)))
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// A signal that never fires.
    pub fn never() -> Self {
        Shutdown(None)
    }

    pub fn is_triggered(&self) -> bool {
        self.0.as_ref().is_some_and(|rx| *rx.borrow() || rx.has_changed().is_err())
    }

    /// Resolves once shutdown is triggered.
    pub async fn wait(&mut self) {
        match self.0.as_mut() {
            // An error means the trigger is gone: nobody can keep us running.
            Some(rx) => {
                let _ = rx.wait_for(|v| *v).await;
            }
            None => std::future::pending().await,
        }
    }
}

type KeysFor<K> = Arc<dyn Fn(&Event) -> Vec<K> + Send + Sync>;

/// A controller: its work queue, its workers and what feeds it. Built with the methods below,
/// then [`Controller::run`].
pub struct Controller<K> {
    name: &'static str,
    queue: Arc<WorkQueue<K>>,
    workers: usize,
    resync: Option<Duration>,
    backoff: Backoff,
    watch: Option<(Arc<dyn Store>, String, KeysFor<K>)>,
    metrics: Arc<Metrics>,
    handles: ControllerHandles,
}

impl<K: QueueKey + Display> Controller<K> {
    /// A controller called `name` (its metrics' `controller` label): one worker, no resync, no
    /// watch, the default backoff.
    pub fn new(name: &'static str, metrics: Arc<Metrics>) -> Self {
        let handles = metrics.controllers.handles(name);
        Controller {
            name,
            queue: Arc::new(WorkQueue::new(Some(handles.depth.clone()))),
            workers: 1,
            resync: None,
            backoff: Backoff::default(),
            watch: None,
            metrics,
            handles,
        }
    }

    /// Passes run at once (over different keys).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// Every `period`, every key of [`Reconciler::list`] is queued: the safety net for a change
    /// the watch did not map to a key.
    pub fn resync(mut self, period: Duration) -> Self {
        self.resync = Some(period);
        self
    }

    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Queues the keys `keys_for` maps each change under `prefix` to. If the watch falls too far
    /// behind for the store's history, every listed key is queued.
    pub fn watches(
        mut self,
        store: Arc<dyn Store>,
        prefix: impl Into<String>,
        keys_for: impl Fn(&Event) -> Vec<K> + Send + Sync + 'static,
    ) -> Self {
        self.watch = Some((store, prefix.into(), Arc::new(keys_for)));
        self
    }

    /// The controller's queue: to queue keys from elsewhere (and for tests).
    pub fn queue(&self) -> Arc<WorkQueue<K>> {
        self.queue.clone()
    }

    /// Runs the controller until `shutdown`: while `leader` says this process leads, the
    /// watch, the resync and the workers run; when leadership is lost they stop (passes in
    /// flight finish) and wait to lead again. On shutdown, no new pass starts, the passes in
    /// flight finish, and this returns.
    pub async fn run<R: Reconciler<K>>(
        self,
        reconciler: R,
        leader: Arc<dyn Leadership>,
        mut shutdown: Shutdown,
    ) {
        let reconciler = Arc::new(reconciler);
        let this = Arc::new(self);
        let mut leading = leader.watch();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.wait() => break,
                led = wait_for(&mut leading, true) => if !led {
                    shutdown.wait().await;
                    break;
                },
            }
            tracing::info!(controller = this.name, "leading: the controller starts");
            let (end_term, term) = self::shutdown();
            let mut tasks = JoinSet::new();
            for key in reconciler.list() {
                this.queue.add(key);
            }
            if let Some((store, prefix, keys_for)) = this.watch.clone() {
                let lag = this.metrics.watch.lag(this.name);
                let cursor = WatchCursor::new(store, prefix, Some(lag));
                tasks.spawn(feed(this.clone(), reconciler.clone(), cursor, keys_for, term.clone()));
            }
            if let Some(period) = this.resync {
                tasks.spawn(resync(this.clone(), reconciler.clone(), period, term.clone()));
            }
            let failures = Arc::new(Mutex::new(HashMap::new()));
            for _ in 0..this.workers {
                let gate = Gate { term: term.clone(), shutdown: shutdown.clone(), leader: leader.clone() };
                tasks.spawn(work(this.clone(), reconciler.clone(), failures.clone(), gate));
            }
            let stopping = tokio::select! {
                biased;
                _ = shutdown.wait() => true,
                _ = wait_for(&mut leading, false) => false,
            };
            end_term.trigger();
            while tasks.join_next().await.is_some() {}
            if stopping {
                break;
            }
            tracing::warn!(
                controller = this.name,
                "leadership lost: the controller stops until it leads again"
            );
        }
        this.queue.close();
        tracing::info!(controller = this.name, "the controller has stopped");
    }
}

/// What a worker checks before each pass.
struct Gate {
    term: Shutdown,
    shutdown: Shutdown,
    leader: Arc<dyn Leadership>,
}

impl Gate {
    fn open(&self) -> bool {
        !self.term.is_triggered() && !self.shutdown.is_triggered() && self.leader.is_leader()
    }
}

/// One worker: takes keys until the term ends; a pass in flight always finishes.
async fn work<K: QueueKey + Display, R: Reconciler<K>>(
    c: Arc<Controller<K>>,
    r: Arc<R>,
    failures: Arc<Mutex<HashMap<K, u32>>>,
    mut gate: Gate,
) {
    loop {
        let key = tokio::select! {
            biased;
            _ = gate.term.wait() => return,
            _ = gate.shutdown.wait() => return,
            key = c.queue.next() => match key {
                Some(k) => k,
                None => return,
            },
        };
        // The signal and the key may have come together: no pass starts once the gate closes
        // (the key waits for the next term).
        if !gate.open() {
            c.queue.done(&key);
            c.queue.add(key);
            return;
        }
        let span = tracing::info_span!("reconcile", controller = c.name, key = %key);
        let started = std::time::Instant::now();
        // Its own task, so that a panicking pass is an error of that key, not a dead worker.
        // Inside the term's fence: once another server leads, the pass's writes fail.
        let fence = gate.leader.fence();
        let pass = tokio::spawn({
            let (r, key) = (r.clone(), key.clone());
            async move {
                match fence {
                    Some(f) => gantry_store::election::fenced(f, r.reconcile(&key)).await,
                    None => r.reconcile(&key).await,
                }
            }
            .instrument(span.clone())
        });
        let result = match pass.await {
            Ok(Ok(action)) => Ok(action),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(format!("the pass panicked: {e}")),
        };
        c.handles.duration.observe(started.elapsed().as_secs_f64());
        let after = match result {
            Ok(action) => {
                failures.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
                match action {
                    Action::AwaitChange => {
                        c.handles.ok.inc();
                        None
                    }
                    Action::Requeue(d) => {
                        c.handles.requeue.inc();
                        Some(d)
                    }
                }
            }
            Err(error) => {
                c.handles.error.inc();
                let n = {
                    let mut f = failures.lock().unwrap_or_else(|e| e.into_inner());
                    let n = f.entry(key.clone()).or_insert(0);
                    *n = n.saturating_add(1);
                    *n
                };
                let delay = c.backoff.delay(n);
                span.in_scope(|| tracing::warn!(%error, failures = n, retry_in = ?delay, "reconcile failed"));
                Some(delay)
            }
        };
        c.queue.done(&key);
        if let Some(d) = after {
            c.queue.add_after(key, d);
        }
    }
}

/// Maps the store's changes to keys until the term ends.
async fn feed<K: QueueKey + Display, R: Reconciler<K>>(
    c: Arc<Controller<K>>,
    r: Arc<R>,
    mut cursor: WatchCursor,
    keys_for: KeysFor<K>,
    mut term: Shutdown,
) {
    loop {
        let change = tokio::select! {
            biased;
            _ = term.wait() => return,
            change = cursor.next() => change,
        };
        match change {
            Ok(Change::Event(e)) => {
                for key in keys_for(&e) {
                    c.queue.add(key);
                }
            }
            // The first read, or the watch fell out of the store's history: look at everything.
            Ok(Change::Relist) => {
                for key in r.list() {
                    c.queue.add(key);
                }
            }
            Err(error) => {
                tracing::error!(controller = c.name, %error, "the controller cannot watch the store; retrying");
                tokio::select! {
                    _ = term.wait() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// Queues every key each `period` until the term ends.
async fn resync<K: QueueKey + Display, R: Reconciler<K>>(
    c: Arc<Controller<K>>,
    r: Arc<R>,
    period: Duration,
    mut term: Shutdown,
) {
    loop {
        tokio::select! {
            _ = term.wait() => return,
            _ = tokio::time::sleep(period) => {}
        }
        for key in r.list() {
            c.queue.add(key);
        }
    }
}
