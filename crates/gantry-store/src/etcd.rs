//! The etcd backend: the key space lives in an etcd cluster (v3 API), under a root prefix of
//! its own, and each process that opens it keeps the same in-memory mirror as the SQLite backend,
//! fed by one etcd watch over the root.
//!
//! The mapping is one to one: a key's `create_revision`, `mod_revision` and `version` are etcd's,
//! the store's revision is etcd's revision, [`Compare::ModRevision`] is an etcd compare on the
//! key's `mod_revision` (0: absent), a [`Txn`] is one etcd `Txn`, watches replay from a revision,
//! and [`Store::compact`] is etcd's compaction. What etcd has no operation for:
//! * [`Op::Add`] (a counter) is a compare-and-swap loop inside [`EtcdStore::txn`]: the counter is
//!   read (from the mirror first, then from the failed attempt's answer), the transaction is
//!   guarded by its `mod_revision` as well and puts the sum; when only such a guard failed it is
//!   sent again with the counters' new values, so callers see [`Op::Add`]'s contract. Within
//!   one process, transactions adding to one counter take turns ([`Counters`]: a lock per
//!   counter, held from planning until etcd answers, with the value this process last
//!   committed), so a process's own concurrent writers never fail each other's guard: only
//!   another process's write can (measured: 36 failed guards per task placed by 4 concurrent
//!   RunTask clients on one server before, BENCHMARKS.md).
//! * etcd refuses a transaction that writes one key twice, or puts a key inside a range it
//!   deletes. The ops are folded first (the last write of a key wins, an add adds to what the
//!   transaction wrote before it), and a deleted prefix is split around the keys the same
//!   transaction puts inside it.
//! * Read-your-writes: every transaction, whichever branch runs, also puts the root's sync key,
//!   so it has a revision of its own in the watched range; the answer waits until the mirror
//!   has applied that revision. (A transaction that only compares thus advances the revision,
//!   which the contract allows.) Reads of other processes' writes: [`Store::read_index`] reads
//!   the sync key from etcd's quorum and waits until the mirror reached its `mod_revision`.
//!
//! Keys: `ROOT/kv/` + the store's key; `ROOT/sync` (the sync key); other keys under the root
//! (the leader election's) are not the store's and are never mirrored.

use crate::mirror::{History, Mirror};
use crate::{
    BoxFuture, Compare, Event, EventKind, KeyValue, Op, Store, StoreError, StoreMetrics, Txn, TxnResult,
    Value, Watch,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// How many revisions of history watches can replay, at most (as the SQLite backend).
const HISTORY_REVISIONS: usize = 10_000;
/// How many bytes of values that history holds, at most.
const HISTORY_BYTES: usize = 16 << 20;
/// Keys per page when the mirror reads the key space.
const PAGE: i64 = 2_000;
/// The largest gRPC message taken from etcd (a watch response of a large delete, a page).
const MAX_MESSAGE: usize = 512 << 20;
/// How long a committed write waits for the mirror before the caller is told it is unknown.
const MIRROR_WAIT: Duration = Duration::from_secs(30);
/// How many times a transaction is sent again because only a counter's guard failed.
const MAX_COUNTER_RETRIES: usize = 1_000;

/// Where an etcd store lives: `etcd://HOST:PORT[,HOST:PORT...][/ROOT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTarget {
    /// `http://HOST:PORT` of each member.
    pub endpoints: Vec<String>,
    /// The key prefix Gantry's keys live under, `/ROOT/` (default `/gantry/`).
    pub root: String,
}

impl EtcdTarget {
    /// Parses `etcd://HOST:PORT[,HOST:PORT...][/ROOT]`.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("etcd://")
            .ok_or_else(|| format!("'{url}' is not an etcd URL (etcd://HOST:PORT[,HOST:PORT...][/ROOT])"))?;
        let (hosts, root) = match rest.split_once('/') {
            Some((h, r)) => (h, r.trim_matches('/')),
            None => (rest, ""),
        };
        let root = if root.is_empty() { "gantry" } else { root };
        let mut endpoints = Vec::new();
        for host in hosts.split(',') {
            let port = host.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>()));
            match port {
                Some((h, Ok(p))) if !h.is_empty() && p != 0 => endpoints.push(format!("http://{host}")),
                _ => return Err(format!("'{host}' in '{url}' is not HOST:PORT")),
            }
        }
        Ok(EtcdTarget { endpoints, root: format!("/{root}/") })
    }
}

impl std::fmt::Display for EtcdTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hosts: Vec<&str> = self.endpoints.iter().map(|e| e.trim_start_matches("http://")).collect();
        write!(f, "etcd://{}{}", hosts.join(","), self.root.trim_end_matches('/'))
    }
}

/// The etcd-backed [`Store`].
pub struct EtcdStore {
    mirror: Arc<Mirror>,
    client: etcd_client::Client,
    kv: etcd_client::KvClient,
    keys: Arc<Keys>,
    metrics: StoreMetrics,
    follower: tokio::task::AbortHandle,
    /// Test-only: `read_index` answers at once (see [`EtcdStore::with_stale_reads`]).
    stale_reads: bool,
    counters: Arc<Counters>,
}

/// The counters this process adds to: one async lock per counter key, taken (in key order, so
/// never in a cycle) by each transaction adding to it from planning until etcd has answered, and
/// holding what this process last knew the counter to be at a revision its mirror may not have
/// reached yet. The next writer adds to that instead of the mirror's older value, so it does
/// not need to wait for the mirror to hold the lock only one etcd round.
#[derive(Default)]
struct Counters {
    locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Known>>>>>,
}

/// A counter's value (`None`: absent) as of etcd revision `at`.
#[derive(Clone)]
struct Known {
    kv: Option<KeyValue>,
    at: i64,
}

impl Counters {
    fn lock_of(&self, key: &str) -> Arc<tokio::sync::Mutex<Option<Known>>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        // The key is copied only the first time it is seen.
        if let Some(lock) = locks.get(key) {
            return lock.clone();
        }
        locks.entry(key.to_string()).or_default().clone()
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

/// The etcd key layout under the root.
struct Keys {
    root: String,
    /// `ROOT/kv/`: the store's keys follow.
    data: String,
    /// `ROOT/sync`: put by every transaction.
    sync: String,
    /// `ROOT/leader`: the elected leader's key ([`crate::election`]).
    leader: String,
}

impl Keys {
    fn new(root: &str) -> Self {
        Keys {
            root: root.to_string(),
            data: format!("{root}kv/"),
            sync: format!("{root}sync"),
            leader: format!("{root}leader"),
        }
    }
    fn data_key(&self, key: &str) -> Vec<u8> {
        format!("{}{key}", self.data).into_bytes()
    }
    /// The store's key of an etcd key, if it is one of the store's.
    fn store_key<'a>(&self, key: &'a [u8]) -> Option<&'a str> {
        key.strip_prefix(self.data.as_bytes()).and_then(|k| std::str::from_utf8(k).ok())
    }
}

/// The first key after every key that starts with `prefix` (etcd's range end; `\0` is "to the
/// end of the key space").
fn range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn storage(e: etcd_client::Error) -> StoreError {
    StoreError::Storage(format!("etcd: {e}"))
}

/// Which failed requests [`retry`] sends again.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Only those that never reached a member (a member down: the client's connection to it
    /// was refused), so a write is never applied twice.
    Unsent,
    /// Also those a member answered as unavailable (no leader, the leader changed): for reads.
    Unavailable,
}

/// How many times a request is sent, at most, while members are down (the client spreads its
/// requests over every member's endpoint, the one down included).
const ATTEMPTS: u32 = 8;

/// gRPC's `UNAVAILABLE`.
const GRPC_UNAVAILABLE: i32 = 14;

fn retriable(e: &etcd_client::Error, which: Retry) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) if i32::from(s.code()) == GRPC_UNAVAILABLE => {
            which == Retry::Unavailable || s.message().contains("connect error")
        }
        _ => false,
    }
}

/// Sends a request until it is answered, or failed in a way `which` does not retry, for at most
/// [`ATTEMPTS`] attempts.
async fn retry<T, F, Fut>(which: Retry, mut send: F) -> Result<T, etcd_client::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let mut attempt = 1;
    loop {
        match send().await {
            Err(e) if attempt < ATTEMPTS && retriable(&e, which) => {
                tracing::debug!(error = %e, attempt, "etcd request sent again");
                tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt))).await;
                attempt += 1;
            }
            r => return r,
        }
    }
}

fn revision_of(header: Option<&etcd_client::ResponseHeader>) -> Result<i64, StoreError> {
    header
        .map(|h| h.revision())
        .ok_or_else(|| StoreError::Storage("etcd: a response without a header".into()))
}

impl EtcdStore {
    /// Connects to `target`, reads its key space into the mirror and starts following it.
    pub async fn connect(target: &EtcdTarget, metrics: StoreMetrics) -> Result<Self, StoreError> {
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        let client = etcd_client::Client::connect(&target.endpoints, Some(options))
            .await
            .map_err(|e| StoreError::Storage(format!("cannot connect to {target}: {e}")))?;
        let kv = client.kv_client().max_decoding_message_size(MAX_MESSAGE);
        let keys = Arc::new(Keys::new(&target.root));
        let (map, revision) = load(&mut kv.clone(), &keys).await?;
        let mirror =
            Arc::new(Mirror::new(map, revision, History::after(revision, HISTORY_REVISIONS, HISTORY_BYTES)));
        let follower =
            tokio::spawn(follow(mirror.clone(), client.clone(), kv.clone(), keys.clone())).abort_handle();
        Ok(EtcdStore {
            mirror,
            client,
            kv,
            keys,
            metrics,
            follower,
            stale_reads: false,
            counters: Arc::new(Counters::default()),
        })
    }

    /// For tests of the linearizability check only: [`Store::read_index`] answers at once, so
    /// reads come from this process's mirror however far behind the other servers' writes it
    /// is (what the check must catch). Never for a server that clients use.
    pub fn with_stale_reads(mut self) -> Self {
        self.stale_reads = true;
        self
    }

    /// The etcd client this store uses (for the leader election, which shares its connection).
    pub fn client(&self) -> etcd_client::Client {
        self.client.clone()
    }

    /// The root prefix of this store's keys in etcd.
    pub fn root(&self) -> &str {
        &self.keys.root
    }

    /// Campaigns for leadership among the servers sharing this store's root, as `id`.
    pub fn campaign(&self, id: &str) -> crate::election::Campaign {
        crate::election::Campaign::start(self.client.clone(), self.keys.leader.clone(), id.to_string())
    }
}

/// Reads the store's keys at one revision, a page at a time: the key space and its revision.
async fn load(
    kv: &mut etcd_client::KvClient,
    keys: &Keys,
) -> Result<(BTreeMap<String, KeyValue>, i64), StoreError> {
    let end = range_end(keys.data.as_bytes());
    let mut map = BTreeMap::new();
    let mut from = keys.data.as_bytes().to_vec();
    let mut revision = 0;
    loop {
        let mut options = etcd_client::GetOptions::new().with_range(end.clone()).with_limit(PAGE);
        if revision > 0 {
            options = options.with_revision(revision);
        }
        let page = kv.get(from.clone(), Some(options)).await.map_err(storage)?;
        if revision == 0 {
            revision = revision_of(page.header())?;
        }
        for kv in page.kvs() {
            if let Some(key) = keys.store_key(kv.key()) {
                map.insert(key.to_string(), key_value(key, kv));
            }
        }
        match page.kvs().last() {
            Some(last) if page.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => return Ok((map, revision)),
        }
    }
}

fn key_value(key: &str, kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Value::from(kv.value()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
    }
}

/// Keeps the mirror current: one etcd watch over the root from the revision after the mirror's,
/// opened again when it ends; when etcd compacted past the mirror, the key space is read again
/// and open watches end with `Compacted`.
async fn follow(
    mirror: Arc<Mirror>,
    client: etcd_client::Client,
    mut kv: etcd_client::KvClient,
    keys: Arc<Keys>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        match follow_once(&mirror, &client, &keys).await {
            Ok(Resume::Relist) => match load(&mut kv, &keys).await {
                Ok((map, revision)) => {
                    let mut m = mirror.write();
                    *m = map;
                    mirror.set_revision(revision);
                    let mut history = mirror.history();
                    drop(m);
                    mirror.gap(&mut history, revision);
                    drop(history);
                    mirror.applied(revision);
                    tracing::warn!(revision, "etcd compacted past the mirror: the key space was read again");
                    backoff = Duration::from_millis(50);
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the key space from etcd"),
            },
            Ok(Resume::Again) => backoff = Duration::from_millis(50),
            Err(e) => tracing::warn!(error = %e, "the etcd watch ended; opening it again"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

enum Resume {
    /// Watch again from the mirror's revision.
    Again,
    /// The mirror's revision was compacted: read the key space again.
    Relist,
}

async fn follow_once(
    mirror: &Mirror,
    client: &etcd_client::Client,
    keys: &Keys,
) -> Result<Resume, StoreError> {
    let mut watch_client = client.watch_client().max_decoding_message_size(MAX_MESSAGE);
    let options = etcd_client::WatchOptions::new()
        .with_range(range_end(keys.root.as_bytes()))
        .with_start_revision(mirror.revision() + 1);
    let mut stream = watch_client.watch(keys.root.clone(), Some(options)).await.map_err(storage)?;
    loop {
        let Some(resp) = stream.message().await.map_err(storage)? else { return Ok(Resume::Again) };
        if resp.compact_revision() > 0 {
            return Ok(Resume::Relist);
        }
        if resp.canceled() {
            return Ok(Resume::Again);
        }
        // Events arrive in revision order, and a revision is never split between responses.
        let events = resp.events();
        let mut i = 0;
        while i < events.len() {
            let rev = events[i].kv().map_or(0, |kv| kv.mod_revision());
            let j = events[i..]
                .iter()
                .position(|e| e.kv().map_or(0, |kv| kv.mod_revision()) != rev)
                .map_or(events.len(), |p| i + p);
            apply(mirror, keys, rev, &events[i..j]);
            i = j;
        }
    }
}

/// Applies one revision's etcd events to the mirror and publishes the store's.
fn apply(mirror: &Mirror, keys: &Keys, rev: i64, events: &[etcd_client::Event]) {
    if rev <= mirror.revision() {
        return;
    }
    let mut out = Vec::new();
    let mut m = mirror.write();
    for e in events {
        let Some(kv) = e.kv() else { continue };
        let Some(key) = keys.store_key(kv.key()) else { continue };
        match e.event_type() {
            etcd_client::EventType::Put => {
                let kv = key_value(key, kv);
                out.push(Event { kind: EventKind::Put, kv: kv.clone() });
                m.insert(key.to_string(), kv);
            }
            etcd_client::EventType::Delete => {
                let prev = m.remove(key);
                out.push(Event {
                    kind: EventKind::Delete,
                    kv: KeyValue {
                        key: key.to_string(),
                        value: Value::from(&[][..]),
                        create_revision: prev.as_ref().map_or(0, |p| p.create_revision),
                        mod_revision: rev,
                        version: prev.as_ref().map_or(0, |p| p.version),
                    },
                });
            }
        }
    }
    mirror.set_revision(rev);
    let mut history = mirror.history();
    drop(m);
    if !out.is_empty() {
        mirror.publish(&mut history, out);
    }
    drop(history);
    mirror.applied(rev);
}

/// A transaction's writes as etcd accepts them.
struct Plan {
    /// Each key written, last write wins: `None` deletes.
    writes: BTreeMap<String, Option<Vec<u8>>>,
    /// Deleted prefixes.
    prefixes: Vec<String>,
    /// Counters added to whose value came from outside the transaction, and the mod revision
    /// that value was read at (0: absent).
    guards: Vec<(String, i64)>,
}

/// Folds `ops` in order into [`Plan`], reading counters from `base`.
fn plan(ops: &[Op], base: &dyn Fn(&str) -> Option<KeyValue>) -> Plan {
    let mut p = Plan { writes: BTreeMap::new(), prefixes: Vec::new(), guards: Vec::new() };
    for op in ops {
        match op {
            Op::Put(k, v) => {
                p.writes.insert(k.clone(), Some(v.clone()));
            }
            Op::Delete(k) => {
                p.writes.insert(k.clone(), None);
            }
            Op::DeletePrefix(prefix) => {
                p.writes.retain(|k, _| !k.starts_with(prefix.as_str()));
                p.prefixes.push(prefix.clone());
            }
            Op::Add(k, delta) => {
                let current = match p.writes.get(k) {
                    Some(v) => v.as_deref().map_or(0, crate::counter),
                    None if p.prefixes.iter().any(|prefix| k.starts_with(prefix.as_str())) => 0,
                    None => {
                        let kv = base(k);
                        if !p.guards.iter().any(|(g, _)| g == k) {
                            p.guards.push((k.clone(), kv.as_ref().map_or(0, |kv| kv.mod_revision)));
                        }
                        kv.map_or(0, |kv| crate::counter(&kv.value))
                    }
                };
                let sum = current.saturating_add(*delta);
                p.writes.insert(k.clone(), (sum != 0).then(|| sum.to_string().into_bytes()));
            }
        }
    }
    p
}

impl Plan {
    /// The etcd operations: the prefixes' ranges (split around the keys put inside them), then
    /// each key's write. A deleted key inside a deleted prefix needs no op of its own.
    fn ops(&self, keys: &Keys) -> Vec<etcd_client::TxnOp> {
        let mut ops = Vec::new();
        let mut prefixes: Vec<&String> = self.prefixes.iter().collect();
        prefixes.sort();
        // A prefix inside another deleted prefix is covered by it.
        prefixes.dedup_by(|later, earlier| later.starts_with(earlier.as_str()));
        let covered = |k: &str| prefixes.iter().any(|p| k.starts_with(p.as_str()));
        for prefix in &prefixes {
            let mut start = keys.data_key(prefix);
            let end = range_end(&start);
            let kept = self
                .writes
                .range::<String, _>((*prefix).clone()..)
                .take_while(|(k, _)| k.starts_with(prefix.as_str()));
            for (k, v) in kept {
                if v.is_some() {
                    let key = keys.data_key(k);
                    if key > start {
                        ops.push(etcd_client::TxnOp::delete(
                            start.clone(),
                            Some(etcd_client::DeleteOptions::new().with_range(key.clone())),
                        ));
                    }
                    start = key;
                    start.push(0);
                }
            }
            ops.push(etcd_client::TxnOp::delete(
                start,
                Some(etcd_client::DeleteOptions::new().with_range(end)),
            ));
        }
        for (k, v) in &self.writes {
            match v {
                Some(v) => ops.push(etcd_client::TxnOp::put(keys.data_key(k), v.clone(), None)),
                None if covered(k) => {}
                None => ops.push(etcd_client::TxnOp::delete(keys.data_key(k), None)),
            }
        }
        ops
    }
}

/// The answer to a transaction etcd answered at `revision`, once the mirror has applied it: the
/// caller reads its own write (or, after a failed compare, the write that beat it).
async fn answered(mirror: &Mirror, revision: i64, succeeded: bool) -> Result<TxnResult, StoreError> {
    if tokio::time::timeout(MIRROR_WAIT, mirror.reached(revision)).await.is_err() {
        return Err(StoreError::Storage(format!(
            "etcd committed revision {revision}, but this server's mirror did not reach it within {}s",
            MIRROR_WAIT.as_secs()
        )));
    }
    Ok(TxnResult { succeeded, revision })
}

impl EtcdStore {
    async fn run(
        mirror: Arc<Mirror>,
        kv: etcd_client::KvClient,
        keys: Arc<Keys>,
        txn: Txn,
        fence: Option<crate::election::Fence>,
        metrics: &StoreMetrics,
        counters: &Counters,
    ) -> Result<TxnResult, StoreError> {
        // This process's turn on each counter the transaction adds to, in key order.
        let added: std::collections::BTreeSet<&str> = txn
            .ops
            .iter()
            .filter_map(|op| if let Op::Add(k, _) = op { Some(k.as_str()) } else { None })
            .collect();
        let mut held = Vec::with_capacity(added.len());
        for k in added {
            held.push((k, counters.lock_of(k).lock_owned().await));
        }
        // Counters start from what this process last committed, or the mirror if it has caught
        // up with that; after a failed guard, from etcd's answer.
        let mut fresh: HashMap<String, Option<KeyValue>> = HashMap::new();
        for _ in 0..MAX_COUNTER_RETRIES {
            let mirrored = mirror.revision();
            let base = |k: &str| match fresh.get(k) {
                Some(v) => v.clone(),
                None => match held.iter().find(|(h, _)| *h == k).and_then(|(_, known)| known.as_ref()) {
                    Some(known) if known.at > mirrored => known.kv.clone(),
                    _ => mirror.get(k),
                },
            };
            let plan = plan(&txn.ops, &base);
            let mut compares: Vec<etcd_client::Compare> = txn
                .compare
                .iter()
                .map(|Compare::ModRevision(k, r)| {
                    etcd_client::Compare::mod_revision(keys.data_key(k), etcd_client::CompareOp::Equal, *r)
                })
                .collect();
            for (k, r) in &plan.guards {
                compares.push(etcd_client::Compare::mod_revision(
                    keys.data_key(k),
                    etcd_client::CompareOp::Equal,
                    *r,
                ));
            }
            if let Some(f) = fence {
                compares.push(etcd_client::Compare::mod_revision(
                    keys.leader.clone(),
                    etcd_client::CompareOp::Equal,
                    f.revision,
                ));
            }
            let sync = || etcd_client::TxnOp::put(keys.sync.clone(), Vec::new(), None);
            let mut then = plan.ops(&keys);
            then.push(sync());
            // On failure: each compared key as it is now, to tell which compare failed.
            let mut read: Vec<&str> =
                txn.compare.iter().map(|Compare::ModRevision(k, _)| k.as_str()).collect();
            read.extend(plan.guards.iter().map(|(k, _)| k.as_str()));
            let mut otherwise: Vec<etcd_client::TxnOp> =
                read.iter().map(|k| etcd_client::TxnOp::get(keys.data_key(k), None)).collect();
            otherwise.push(etcd_client::TxnOp::get(keys.leader.clone(), None));
            otherwise.push(sync());
            let etcd_txn = etcd_client::Txn::new().when(compares).and_then(then).or_else(otherwise);
            let resp = retry(Retry::Unsent, || {
                let (mut kv, t) = (kv.clone(), etcd_txn.clone());
                async move { kv.txn(t).await }
            })
            .await
            .map_err(storage)?;
            let revision = revision_of(resp.header())?;
            if resp.succeeded() {
                metrics.etcd_committed.inc();
                for (k, known) in &mut held {
                    let kv = plan.writes.get(*k).cloned().flatten().map(|value| KeyValue {
                        key: k.to_string(),
                        value: value.into(),
                        create_revision: revision,
                        mod_revision: revision,
                        version: 0,
                    });
                    **known = Some(Known { kv, at: revision });
                }
                drop(held);
                return answered(&mirror, revision, true).await;
            }
            let answers = resp.op_responses();
            if let Some(f) = fence {
                let leader = match answers.get(read.len()) {
                    Some(etcd_client::TxnOpResponse::Get(g)) => {
                        g.kvs().first().map_or(0, |kv| kv.mod_revision())
                    }
                    _ => 0,
                };
                if leader != f.revision {
                    drop(held);
                    answered(&mirror, revision, false).await?;
                    return Err(StoreError::Fenced(f.revision));
                }
            }
            let mut now: HashMap<String, Option<KeyValue>> = HashMap::new();
            for (k, r) in read.iter().zip(answers) {
                if let etcd_client::TxnOpResponse::Get(g) = r {
                    now.insert(k.to_string(), g.kvs().first().map(|kv| key_value(k, kv)));
                }
            }
            let at = |k: &str| now.get(k).and_then(|v| v.as_ref()).map_or(0, |kv| kv.mod_revision);
            let holds = txn.compare.iter().all(|Compare::ModRevision(k, r)| at(k) == *r);
            if !holds || plan.guards.is_empty() {
                metrics.etcd_compare_failed.inc();
                if tracing::enabled!(tracing::Level::DEBUG) {
                    let moved: Vec<&str> = txn
                        .compare
                        .iter()
                        .filter(|Compare::ModRevision(k, r)| at(k) != *r)
                        .map(|Compare::ModRevision(k, _)| k.as_str())
                        .collect();
                    tracing::debug!(?moved, "etcd: a compare failed");
                }
                drop(held);
                return answered(&mirror, revision, false).await;
            }
            // Only a counter moved: add to its new value.
            metrics.etcd_counter_moved.inc();
            if tracing::enabled!(tracing::Level::DEBUG) {
                let moved: Vec<&str> =
                    plan.guards.iter().filter(|(k, r)| at(k) != *r).map(|(k, _)| k.as_str()).collect();
                tracing::debug!(?moved, "etcd: a counter moved; sending the transaction again");
            }
            for (k, _) in &plan.guards {
                let kv = now.get(k.as_str()).cloned().flatten();
                if let Some((_, known)) = held.iter_mut().find(|(h, _)| *h == k.as_str()) {
                    **known = Some(Known { kv: kv.clone(), at: revision });
                }
                fresh.insert(k.clone(), kv);
            }
        }
        Err(StoreError::Storage(format!(
            "a counter changed under {MAX_COUNTER_RETRIES} attempts in a row of a transaction adding to it"
        )))
    }
}

impl Store for EtcdStore {
    fn get(&self, key: &str) -> Option<KeyValue> {
        self.mirror.get(key)
    }

    fn mod_revision(&self, key: &str) -> Option<i64> {
        self.mirror.mod_revision(key)
    }

    fn range(&self, prefix: &str, after: Option<&str>, limit: usize) -> Vec<KeyValue> {
        self.mirror.range(prefix, after, limit)
    }

    fn range_rev(&self, prefix: &str, before: Option<&str>, limit: usize) -> Vec<KeyValue> {
        self.mirror.range_rev(prefix, before, limit)
    }

    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&KeyValue)) {
        self.mirror.visit(prefix, f)
    }

    fn count(&self, prefix: &str) -> usize {
        self.mirror.count(prefix)
    }

    fn revision(&self) -> i64 {
        self.mirror.revision()
    }

    fn txn(&self, txn: Txn) -> BoxFuture<Result<TxnResult, StoreError>> {
        let (mirror, kv, keys, metrics, counters) = (
            self.mirror.clone(),
            self.kv.clone(),
            self.keys.clone(),
            self.metrics.clone(),
            self.counters.clone(),
        );
        // Taken now, in the caller's task (the returned future may run anywhere), or else
        // where the future runs (a future made first and run inside `fenced` later).
        let at_call = crate::election::current();
        Box::pin(async move {
            let started = std::time::Instant::now();
            let ops = txn.ops.len();
            let fence = at_call.or_else(crate::election::current);
            let result = Self::run(mirror, kv, keys, txn, fence, &metrics, &counters).await;
            metrics.commit_duration.observe(started.elapsed().as_secs_f64());
            metrics.txns_per_commit.observe(1.0);
            metrics.keys_per_commit.observe(ops as f64);
            result
        })
    }

    fn read_index_waits(&self) -> bool {
        !self.stale_reads
    }

    /// A linearizable (quorum) read of the sync key, which every transaction of every process
    /// on this root puts: its `mod_revision` is the revision of the last transaction etcd had
    /// committed under the root, and the answer waits until the mirror has applied it.
    fn read_index(&self) -> BoxFuture<Result<i64, StoreError>> {
        let (mirror, kv, keys) = (self.mirror.clone(), self.kv.clone(), self.keys.clone());
        if self.stale_reads {
            return Box::pin(std::future::ready(Ok(mirror.revision())));
        }
        Box::pin(async move {
            let options = etcd_client::GetOptions::new().with_keys_only();
            let resp = retry(Retry::Unavailable, || {
                let (mut kv, key, options) = (kv.clone(), keys.sync.clone(), options.clone());
                async move { kv.get(key, Some(options)).await }
            })
            .await
            .map_err(storage)?;
            let revision = resp.kvs().first().map_or(0, |kv| kv.mod_revision());
            if tokio::time::timeout(MIRROR_WAIT, mirror.reached(revision)).await.is_err() {
                return Err(StoreError::Storage(format!(
                    "etcd is at revision {revision}, but this server's mirror did not reach it within {}s",
                    MIRROR_WAIT.as_secs()
                )));
            }
            Ok(revision)
        })
    }

    fn watch(&self, prefix: &str, from_revision: i64) -> Result<Watch, StoreError> {
        self.mirror.watch(prefix, from_revision)
    }

    fn compact(&self, revision: i64) -> BoxFuture<Result<(), StoreError>> {
        let (mirror, mut kv) = (self.mirror.clone(), self.kv.clone());
        Box::pin(async move {
            match kv.compact(revision, None).await {
                Ok(_) => {}
                // "mvcc: required revision has been compacted": an earlier compaction went further.
                Err(etcd_client::Error::GRpcStatus(s)) if s.message().contains("has been compacted") => {}
                Err(e) => return Err(storage(e)),
            }
            mirror.reached(revision).await;
            mirror.compact(revision)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_with_and_without_a_root() {
        let t = EtcdTarget::parse("etcd://10.0.0.1:2379,10.0.0.2:2379").unwrap();
        assert_eq!(t.endpoints, ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]);
        assert_eq!(t.root, "/gantry/");
        assert_eq!(t.to_string(), "etcd://10.0.0.1:2379,10.0.0.2:2379/gantry");
        let t = EtcdTarget::parse("etcd://localhost:2379/prod/east/").unwrap();
        assert_eq!((t.endpoints.len(), t.root.as_str()), (1, "/prod/east/"));
        for bad in ["sqlite", "etcd://", "etcd://host", "etcd://host:0", "etcd://:2379", "etcd://a:1,b"] {
            let e = EtcdTarget::parse(bad).unwrap_err();
            assert!(e.contains('\''), "{bad}: {e}");
        }
    }

    #[test]
    fn ops_fold_so_etcd_accepts_them() {
        let base = |k: &str| {
            (k == "n").then(|| KeyValue {
                key: k.into(),
                value: Value::from(&b"40"[..]),
                create_revision: 3,
                mod_revision: 7,
                version: 2,
            })
        };
        let ops = [
            Op::Put("a/1".into(), b"x".to_vec()),
            Op::DeletePrefix("a/".into()),
            Op::Put("a/2".into(), b"y".to_vec()),
            Op::Add("n".into(), 2),
            Op::Add("n".into(), -42),
            Op::Add("a/c".into(), 5),
            Op::Delete("b".into()),
            Op::Put("b".into(), b"z".to_vec()),
        ];
        let p = plan(&ops, &base);
        let writes: Vec<(&str, Option<&[u8]>)> =
            p.writes.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
        assert_eq!(
            writes,
            [("a/2", Some(&b"y"[..])), ("a/c", Some(&b"5"[..])), ("b", Some(&b"z"[..])), ("n", None)]
        );
        // The counter read from outside is guarded at the revision it was read at; the one inside
        // the deleted prefix starts from 0 and needs no guard.
        assert_eq!(p.guards, [("n".to_string(), 7)]);
        let keys = Keys::new("/g/");
        let ops = p.ops(&keys);
        // The prefix's range is split around a/2 and a/c: three ranges, then four writes.
        assert_eq!(ops.len(), 3 + 4);
    }

    #[test]
    fn range_ends_are_etcds() {
        assert_eq!(range_end(b"/g/kv/"), b"/g/kv0");
        assert_eq!(range_end(b"a\xff"), b"b");
        assert_eq!(range_end(b"\xff"), b"\0");
    }
}
