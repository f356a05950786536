//! Linearizability of the etcd backend through several processes: clients, each with an
//! `EtcdStore` of its own (its own etcd connection, watch and mirror, as each Gantry server has),
//! do compare-and-swap writes and reads of a few keys at once, on a 3-member etcd cluster with
//! each store talking to a different member; every call and return is timed on one monotonic
//! clock, and the history is checked by `checker` (Wing & Gong with memoisation, per key).
//!
//! Tested at the store level: the store is where the contract lives (every API operation reads
//! and writes through it), and it has the compare-and-swap of any key the check needs; a store
//! per client is what a server per client would be, without HTTP in the way.

use crate::checker;

use checker::{Input, Operation, Output, State};
use gantry_store::testing::EtcdCluster;
use gantry_store::{EtcdStore, Store, StoreMetrics, Txn};
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEYS: [&str; 3] = ["a", "b", "c"];

fn value_of(store: &EtcdStore, key: &str) -> (State, i64) {
    match store.get(key) {
        Some(kv) => (std::str::from_utf8(&kv.value).ok().and_then(|v| v.parse().ok()), kv.mod_revision),
        None => (None, 0),
    }
}

/// One client's operations: `ops` random reads and compare-and-swaps of [`KEYS`] under `prefix`,
/// each read preceded by a read index when `read_index` is set. Returns the history and each
/// read's time.
async fn client(
    prefix: String,
    id: usize,
    store: Arc<EtcdStore>,
    ops: usize,
    read_index: bool,
    epoch: Instant,
) -> (Vec<Operation>, Vec<Duration>) {
    let now = || epoch.elapsed().as_nanos() as u64;
    let mut rand = checker::client_rand(id);
    let mut history = Vec::new();
    let mut reads = Vec::new();
    for seq in 0..ops {
        let key = &format!("{prefix}{}", KEYS[rand(KEYS.len() as u64) as usize]);
        if rand(2) == 0 {
            let call = now();
            let started = Instant::now();
            let answered = if read_index {
                tokio::time::timeout(Duration::from_secs(5), store.read_index())
                    .await
                    .is_ok_and(|r| r.is_ok())
            } else {
                true
            };
            let output = if answered { Output::Read(value_of(&store, key).0) } else { Output::Unknown };
            reads.push(started.elapsed());
            let ret = now();
            history.push(Operation {
                client: id,
                key: key.into(),
                input: Input::Read,
                output,
                call,
                ret: Some(ret),
            });
        } else {
            // What the client last saw, from its own mirror, as a read-modify-write would.
            let (expect, revision) = value_of(&store, key);
            let new = ((id as u64) << 32) | seq as u64;
            let txn = Txn::new().when(key, revision).put(key, new.to_string().into_bytes());
            let call = now();
            let r = tokio::time::timeout(Duration::from_secs(5), store.txn(txn)).await;
            let (output, ret) = match r {
                Ok(Ok(r)) => (Output::Cas(r.succeeded), Some(now())),
                _ => (Output::Unknown, None),
            };
            history.push(Operation {
                client: id,
                key: key.into(),
                input: Input::Cas { expect, new },
                output,
                call,
                ret,
            });
        }
    }
    (history, reads)
}

/// Runs `clients` clients on `stores` stores (client i on store i mod stores) at once, on keys
/// under `prefix` that do not exist yet.
async fn record(
    prefix: &str,
    stores: &[Arc<EtcdStore>],
    clients: usize,
    ops: usize,
    read_index: bool,
) -> (Vec<Operation>, Vec<Duration>) {
    let epoch = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            tokio::spawn(client(
                prefix.to_string(),
                c,
                stores[c % stores.len()].clone(),
                ops,
                read_index,
                epoch,
            ))
        })
        .collect();
    let mut history = Vec::new();
    let mut reads = Vec::new();
    for t in tasks {
        let (h, r) = t.await.unwrap();
        history.extend(h);
        reads.extend(r);
    }
    (history, reads)
}

async fn stores(cluster: &EtcdCluster, root: &str) -> Vec<Arc<EtcdStore>> {
    let mut stores = Vec::new();
    for i in 0..cluster.len() {
        let target = cluster.member_target(i, root);
        stores.push(Arc::new(EtcdStore::connect(&target, StoreMetrics::default()).await.unwrap()));
    }
    stores
}

fn summary(what: &str, history: &[Operation], reads: &mut [Duration], checked: Duration) {
    reads.sort();
    let pct = |p: usize| reads.get(reads.len() * p / 100).copied().unwrap_or_default();
    let writes = history.iter().filter(|o| matches!(o.input, Input::Cas { .. })).count();
    let won = history.iter().filter(|o| o.output == Output::Cas(true)).count();
    eprintln!(
        "{what}: {} operations ({} reads, {writes} compare-and-swaps, {won} succeeded); read p50 {:?} p99 {:?}; checked in {checked:?}",
        history.len(),
        reads.len(),
        pct(50),
        pct(99),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_after_a_read_index_are_linearizable_across_servers() {
    let cluster = EtcdCluster::start(3).expect("etcd (Debian's etcd-server) must be installed");
    let stores = stores(&cluster, "lin").await;
    for round in 0..3 {
        let (history, mut reads) = record(&format!("{round}/"), &stores, 9, 120, true).await;
        let started = Instant::now();
        let verdict = checker::check(&history);
        summary(&format!("read index, round {round}"), &history, reads.as_mut_slice(), started.elapsed());
        verdict.unwrap_or_else(|v| panic!("{v}"));
    }
    // What a read index costs with nothing else going on: one quorum read and the mirror's wait.
    let mut idle = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        stores[1].read_index().await.unwrap();
        idle.push(started.elapsed());
    }
    idle.sort();
    eprintln!("read index alone, one client, 200 calls: p50 {:?} p99 {:?}", idle[100], idle[198]);
}

/// Without the read index, a store's reads come from its mirror, which a write through another
/// member reaches only when that member's watch delivers it: the checker finds the stale reads.
/// (Each round is a fresh race; the test asserts that at least one of many rounds is caught, and
/// prints how many were.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mirror_reads_without_a_read_index_are_caught_stale() {
    let cluster = EtcdCluster::start(3).expect("etcd (Debian's etcd-server) must be installed");
    let stores = stores(&cluster, "stale").await;
    let (mut caught, rounds) = (0, 10);
    for round in 0..rounds {
        let (history, mut reads) = record(&format!("{round}/"), &stores, 9, 120, false).await;
        let started = Instant::now();
        let verdict = checker::check(&history);
        summary(&format!("mirror reads, round {round}"), &history, reads.as_mut_slice(), started.elapsed());
        if let Err(v) = verdict {
            eprintln!("  {v}");
            caught += 1;
        }
    }
    eprintln!("stale reads caught in {caught} of {rounds} rounds");
    assert!(caught > 0, "no round of mirror reads through three members was caught stale");
}
