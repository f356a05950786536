//! Leader election on etcd, and the fence that makes a deposed leader's writes fail.
//!
//! Every server sharing an etcd root campaigns for `ROOT/leader`: it creates the key bound to a
//! lease of its own ([`LEASE_TTL`]) only if the key does not exist, and otherwise waits for it
//! to be deleted (its holder resigned, or its lease expired because the holder died). The
//! winner keeps the lease alive and leads while it does; it steps down ([`Elected`] goes
//! `None`) as soon as a keep-alive has not been answered for [`STEP_DOWN_AFTER`], which is
//! before etcd can expire the lease and let another server win.
//!
//! A leader's term is the leader key's `mod_revision` when it won: a [`Fence`]. A transaction
//! sent inside [`fenced`] carries one more compare, that `ROOT/leader` is still at that
//! revision; when only that compare fails, the store answers [`StoreError::Fenced`]. So a
//! server that still believes it leads (a pass in flight while its lease expired) cannot write
//! once another server has won.

use crate::StoreError;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;

/// The lease's time to live: a dead leader is replaced this long after its last keep-alive.
pub const LEASE_TTL: i64 = 3;
/// How often the leader renews its lease.
const KEEP_ALIVE_EVERY: Duration = Duration::from_millis(700);
/// How long without an answered keep-alive the leader keeps leading: less than the TTL, so it
/// steps down before etcd can expire the lease.
const STEP_DOWN_AFTER: Duration = Duration::from_millis(2_000);

/// A leader's term: the revision at which it wrote the leader key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    pub revision: i64,
}

tokio::task_local! {
    static FENCE: Fence;
}

/// Runs `f` with every store transaction it sends fenced by `fence`.
pub async fn fenced<F: Future>(fence: Fence, f: F) -> F::Output {
    FENCE.scope(fence, f).await
}

/// The fence of the current task, if it runs inside [`fenced`].
pub(crate) fn current() -> Option<Fence> {
    FENCE.try_with(|f| *f).ok()
}

/// What the election says: `Some` while this server leads, with its term's fence.
pub type Elected = watch::Receiver<Option<Fence>>;

/// A campaign in progress, and the leadership it won: dropping it resigns.
pub struct Campaign {
    elected: watch::Receiver<Option<Fence>>,
    task: tokio::task::JoinHandle<()>,
    lease: std::sync::Arc<std::sync::atomic::AtomicI64>,
    client: etcd_client::Client,
    /// How many times this server won.
    wins: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Campaign {
    pub(crate) fn start(client: etcd_client::Client, leader_key: String, id: String) -> Self {
        let (tx, elected) = watch::channel(None);
        let lease = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
        let wins = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let task = tokio::spawn(campaign(client.clone(), leader_key, id, tx, lease.clone(), wins.clone()));
        Campaign { elected, task, lease, client, wins }
    }

    /// Leadership as it changes.
    pub fn elected(&self) -> Elected {
        self.elected.clone()
    }

    /// How many terms this server has won.
    pub fn wins(&self) -> u64 {
        self.wins.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops campaigning and gives up leadership at once (revoking the lease deletes the
    /// leader key, so another server wins without waiting for the TTL).
    pub async fn resign(self) {
        self.task.abort();
        let lease = self.lease.load(std::sync::atomic::Ordering::SeqCst);
        if lease != 0 {
            let _ = self.client.clone().lease_revoke(lease).await;
        }
    }
}

impl Drop for Campaign {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn storage(e: etcd_client::Error) -> StoreError {
    StoreError::Storage(format!("etcd: {e}"))
}

async fn campaign(
    client: etcd_client::Client,
    key: String,
    id: String,
    tx: watch::Sender<Option<Fence>>,
    lease_slot: std::sync::Arc<std::sync::atomic::AtomicI64>,
    wins: std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    loop {
        if let Err(e) = term(&client, &key, &id, &tx, &lease_slot, &wins).await {
            tracing::warn!(error = %e, "leader election: campaigning again");
        }
        tx.send_replace(None);
        tokio::time::sleep(KEEP_ALIVE_EVERY).await;
    }
}

/// One lease: campaign with it until it wins, lead while it lives. Returns when the lease is
/// lost (an error), with leadership given up.
async fn term(
    client: &etcd_client::Client,
    key: &str,
    id: &str,
    tx: &watch::Sender<Option<Fence>>,
    lease_slot: &std::sync::atomic::AtomicI64,
    wins: &std::sync::atomic::AtomicU64,
) -> Result<(), StoreError> {
    use etcd_client::{Compare, CompareOp, EventType, PutOptions, Txn, TxnOp, WatchOptions};
    let mut lease_client = client.lease_client();
    let lease = lease_client.grant(LEASE_TTL, None).await.map_err(storage)?.id();
    lease_slot.store(lease, std::sync::atomic::Ordering::SeqCst);
    let (mut keeper, mut acks) = lease_client.keep_alive(lease).await.map_err(storage)?;
    let mut last_ack = tokio::time::Instant::now();
    let mut kv = client.kv_client();
    loop {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, id, Some(PutOptions::new().with_lease(lease)))])
            .or_else([TxnOp::get(key, None)]);
        let resp = kv.txn(txn).await.map_err(storage)?;
        let revision = resp.header().map_or(0, |h| h.revision());
        if resp.succeeded() {
            wins.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(revision, id, "leader election: this server leads");
            tx.send_replace(Some(Fence { revision }));
            break;
        }
        // Someone else leads: wait for the key to go, renewing this lease meanwhile.
        let mut watch_client = client.watch_client();
        let mut stream = watch_client
            .watch(key, Some(WatchOptions::new().with_start_revision(revision + 1)))
            .await
            .map_err(storage)?;
        let mut tick = tokio::time::interval(KEEP_ALIVE_EVERY);
        loop {
            tokio::select! {
                msg = stream.message() => {
                    let msg = msg.map_err(storage)?.ok_or_else(|| StoreError::Storage("the leader watch ended".into()))?;
                    if msg.canceled() || msg.events().iter().any(|e| e.event_type() == EventType::Delete) {
                        break;
                    }
                }
                _ = tick.tick() => keeper.keep_alive().await.map_err(storage)?,
                ack = acks.message() => match ack.map_err(storage)? {
                    Some(a) if a.ttl() > 0 => last_ack = tokio::time::Instant::now(),
                    _ => return Err(StoreError::Storage("the election's lease expired".into())),
                },
            }
        }
    }
    // Leading: renew the lease, and step down when it may be lost.
    let mut tick = tokio::time::interval(KEEP_ALIVE_EVERY);
    loop {
        let deadline = last_ack + STEP_DOWN_AFTER;
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = keeper.keep_alive().await {
                    tx.send_replace(None);
                    return Err(storage(e));
                }
            }
            ack = acks.message() => match ack {
                Ok(Some(a)) if a.ttl() > 0 => last_ack = tokio::time::Instant::now(),
                Ok(_) => {
                    tx.send_replace(None);
                    return Err(StoreError::Storage("the leader's lease expired".into()));
                }
                Err(e) => {
                    tx.send_replace(None);
                    return Err(storage(e));
                }
            },
            _ = tokio::time::sleep_until(deadline) => {
                tx.send_replace(None);
                return Err(StoreError::Storage(format!(
                    "no lease keep-alive answered for {} ms: stepping down before the lease can expire",
                    STEP_DOWN_AFTER.as_millis()
                )));
            }
        }
    }
}
