//! Which agents are connected, and how they learn that their assignments changed.
//!
//! Each node (a container instance, or a Fargate node) long-polls one server for its
//! assignments. That server counts the polls in flight per node: a node is connected there while
//! one is in flight, or within [`GRACE_MS`] after the last one ended, so an agent whose
//! connection drops is noticed within seconds.
//!
//! Several servers may share one store, and an agent polls only one of them at a time. So that
//! every server agrees on `agentConnected`, the server an agent polls records it in the store:
//! a [`Heartbeat`] under `/_ecs/heartbeat/NODE` saying which server heard the agent, when, and
//! whether it was still connected then. A server writes a node's heartbeat when the node starts
//! polling it (the agent moved, or came back), again every [`HEARTBEAT_EVERY_MS`] while it
//! polls, and once more when it stops (the grace passed): so one write per agent per 10 s, not
//! one per poll, batched into one transaction per server per second
//! ([`Agents::heartbeats_due`]). Another server counts the agent connected while that
//! heartbeat says connected and is at most [`HEARTBEAT_STALE_MS`] old, so if the server itself
//! dies, its agents read as disconnected everywhere within that time unless they move to another
//! server. Which server an agent polls, it is connected according to that server's own count.
//!
//! Writes that change what a node must run rewrite the node's `/_ecs/node/` index entries; every
//! server watches that prefix (and the exec sessions' `/_ecs/exec/` and the agent updates'
//! `/_ecs/agent-update/`) and wakes the node's poll ([`Agents::wake`]), whichever server made
//! the write. Without the watch (a control plane in tests), the writer wakes the poll
//! itself after its commit ([`Agents::bump`]).
//!
//! The same loop keeps a record per server (`/_ecs/server/ID`, [`ServerInfo`]) so that
//! DiscoverPollEndpoint and `gantry status` know the servers.

use gantry_core::{Clock, Timestamp};
use gantry_runtime::metrics::Gauge;
use gantry_store::Store;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// How long after its last poll ended a node still counts as connected on the server it polled.
pub const GRACE_MS: i64 = 3_000;
/// How often the server an agent polls records, in the store, that the agent is still there.
pub const HEARTBEAT_EVERY_MS: i64 = 10_000;
/// How old a heartbeat may be and still say the agent is connected (two missed heartbeats and
/// some slack: the server that wrote it died, or lost the store).
pub const HEARTBEAT_STALE_MS: i64 = 25_000;
/// How often a server rewrites its own record.
pub const SERVER_EVERY_MS: i64 = 2_000;
/// A server whose record is older than this is down.
pub const SERVER_STALE_MS: i64 = 7_000;
/// ECS's default for `--lost-instance-timeout`: a node not heard from for this long has its
/// service tasks replaced elsewhere.
pub const DEFAULT_LOST_INSTANCE_TIMEOUT_MS: i64 = 300_000;
/// A heartbeat transaction holds at most this many keys (etcd refuses more than 128 operations
/// in one transaction by default).
const HEARTBEATS_PER_TXN: usize = 100;

/// A node's liveness as the server it polls last recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// The ID of the server that heard it.
    pub server: String,
    /// When: while connected, the time of writing; once gone, when its last poll ended.
    pub at: Timestamp,
    /// Whether the agent was connected at `at`.
    pub up: bool,
}

impl Heartbeat {
    /// `SERVER<TAB>MILLIS<TAB>1|0`: a few dozen bytes, no JSON to decode on the placement path.
    pub fn encode(&self) -> Vec<u8> {
        format!("{}\t{}\t{}", self.server, self.at.0, u8::from(self.up)).into_bytes()
    }

    pub fn parse(v: &[u8]) -> Option<Self> {
        let s = std::str::from_utf8(v).ok()?;
        let mut it = s.split('\t');
        let server = it.next()?.to_string();
        let at = Timestamp(it.next()?.parse().ok()?);
        let up = match it.next()? {
            "1" => true,
            "0" => false,
            _ => return None,
        };
        Some(Heartbeat { server, at, up })
    }

    /// Whether it says the agent is connected at `now`.
    pub fn live(&self, now: Timestamp) -> bool {
        self.up && now.0 - self.at.0 <= HEARTBEAT_STALE_MS
    }
}

/// One Gantry server sharing the store, as it last recorded itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    pub id: String,
    /// Where agents and clients reach it.
    pub url: String,
    pub started: Timestamp,
    /// When it last wrote this record.
    pub at: Timestamp,
    /// Whether it led (ran the controllers) when it wrote this record.
    pub leader: bool,
}

impl ServerInfo {
    /// `URL<TAB>STARTED<TAB>AT<TAB>1|0` (the ID is the key's last part).
    pub fn encode(&self) -> Vec<u8> {
        format!("{}\t{}\t{}\t{}", self.url, self.started.0, self.at.0, u8::from(self.leader)).into_bytes()
    }

    pub fn parse(id: &str, v: &[u8]) -> Option<Self> {
        let s = std::str::from_utf8(v).ok()?;
        let mut it = s.split('\t');
        let url = it.next()?.to_string();
        let started = Timestamp(it.next()?.parse().ok()?);
        let at = Timestamp(it.next()?.parse().ok()?);
        let leader = it.next()? == "1";
        Some(ServerInfo { id: id.to_string(), url, started, at, leader })
    }

    /// Whether the server was up at `now` (it rewrote its record recently).
    pub fn live(&self, now: Timestamp) -> bool {
        now.0 - self.at.0 <= SERVER_STALE_MS
    }
}

#[derive(Default)]
struct Node {
    polls: usize,
    last_seen: Timestamp,
    /// Whether a poll ever reached this server (a node only woken or asked about has not).
    polled: bool,
    version: Option<watch::Sender<u64>>,
}

/// The registry of agent connections.
pub struct Agents {
    nodes: Mutex<HashMap<String, Node>>,
    /// Versions start from this epoch so that an agent's version from before a server restart,
    /// or from another server, never matches.
    epoch: u64,
    /// Nodes with a poll in flight (`gantry_agents_connected`).
    connected: Gauge,
    /// This server's ID: whose heartbeats are its own.
    server: String,
    /// Where the other servers' heartbeats are read (none: this process alone, as in tests).
    store: Option<Arc<dyn Store>>,
    /// Whether the store's watch wakes the polls ([`Self::wake`]); then [`Self::bump`] does
    /// nothing, so that one change wakes a poll once.
    watch_driven: AtomicBool,
    /// When this process first had to judge a node it had no heartbeat of (a node registered
    /// before heartbeats were stored): its lost-instance timeout counts from then.
    first_judged: Mutex<HashMap<String, Timestamp>>,
    /// `--lost-instance-timeout`, in milliseconds.
    lost_timeout_ms: AtomicI64,
    /// How this server is reached and what it stores in, once it serves.
    identity: Mutex<Option<Identity>>,
}

/// What a serving server says of itself (its record, `gantry status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The URL agents and clients reach it at.
    pub url: String,
    /// The store it shares (`etcd://...`) or its SQLite file.
    pub store: String,
    pub started: Timestamp,
}

impl Identity {
    /// Whether other servers may share its store (etcd): then an agent may poll another
    /// server than the one a session of ECS Exec is on, and the session waits in the store.
    pub fn shares_store(&self) -> bool {
        self.store.starts_with("etcd://")
    }
}

impl Default for Agents {
    fn default() -> Self {
        Agents::new(0)
    }
}

/// Held by a poll in flight; dropping it (the poll ends or its connection drops) records the time.
pub struct PollGuard {
    agents: Arc<Agents>,
    node: String,
    clock: Arc<dyn Clock>,
}

impl Drop for PollGuard {
    fn drop(&mut self) {
        let now = self.clock.now();
        let mut nodes = self.agents.nodes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = nodes.get_mut(&self.node) {
            if n.polls == 1 {
                self.agents.connected.dec();
            }
            n.polls = n.polls.saturating_sub(1);
            n.last_seen = n.last_seen.max(now);
        }
    }
}

impl Agents {
    /// A registry of this process alone (no store: nothing is shared).
    pub fn new(epoch: u64) -> Self {
        Self::with_gauge(epoch, Gauge::default())
    }

    /// A registry that keeps `connected` at the number of nodes with a poll in flight.
    pub fn with_gauge(epoch: u64, connected: Gauge) -> Self {
        Agents {
            nodes: Mutex::default(),
            epoch,
            connected,
            server: String::new(),
            store: None,
            watch_driven: AtomicBool::new(false),
            first_judged: Mutex::default(),
            lost_timeout_ms: AtomicI64::new(DEFAULT_LOST_INSTANCE_TIMEOUT_MS),
            identity: Mutex::default(),
        }
    }

    /// A registry of the server `server` that reads the other servers' heartbeats from `store`.
    pub fn shared(epoch: u64, connected: Gauge, server: String, store: Arc<dyn Store>) -> Self {
        Agents { server, store: Some(store), ..Self::with_gauge(epoch, connected) }
    }

    /// This server's ID.
    pub fn server(&self) -> &str {
        &self.server
    }

    fn with<T>(&self, node: &str, f: impl FnOnce(&mut Node) -> T) -> T {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        f(nodes.entry(node.to_string()).or_default())
    }

    /// Starts a poll: the node is connected until the guard drops (plus the grace period).
    pub fn begin_poll(
        self: &Arc<Self>,
        node: &str,
        clock: Arc<dyn Clock>,
    ) -> (PollGuard, watch::Receiver<u64>) {
        let epoch = self.epoch;
        let now = clock.now();
        let rx = self.with(node, |n| {
            if n.polls == 0 {
                self.connected.inc();
            }
            n.polls += 1;
            n.polled = true;
            n.last_seen = n.last_seen.max(now);
            n.version.get_or_insert_with(|| watch::channel(epoch).0).subscribe()
        });
        (PollGuard { agents: self.clone(), node: node.to_string(), clock }, rx)
    }

    /// Whether the node's agent polls this server: a poll in flight, or one ended within the
    /// grace period.
    pub fn connected_here(&self, node: &str, now: Timestamp) -> bool {
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.get(node).is_some_and(|n| n.polled && (n.polls > 0 || now.0 - n.last_seen.0 <= GRACE_MS))
    }

    /// The node's stored heartbeat.
    pub fn heartbeat(&self, node: &str) -> Option<Heartbeat> {
        let kv = self.store.as_ref()?.get(&crate::keys::heartbeat(node))?;
        Heartbeat::parse(&kv.value)
    }

    /// Whether the node's agent is connected at `now`: to this server, or to another one by
    /// the heartbeat it stored.
    pub fn connected(&self, node: &str, now: Timestamp) -> bool {
        self.connected_here(node, now)
            || self.heartbeat(node).is_some_and(|h| h.server != self.server && h.live(now))
    }

    /// When the node was last heard from by any server (`now` while connected); `None` if never
    /// (as far as this server and the store know).
    pub fn last_heard(&self, node: &str, now: Timestamp) -> Option<Timestamp> {
        if self.connected(node, now) {
            return Some(now);
        }
        let here = {
            let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
            nodes.get(node).filter(|n| n.polled).map(|n| n.last_seen)
        };
        let stored = self.heartbeat(node).map(|h| h.at);
        here.into_iter().chain(stored).max()
    }

    /// Whether the node has not been heard from for longer than `timeout_ms` at `now`. A node
    /// never heard from counts from the first time this process asked.
    pub fn lost(&self, node: &str, now: Timestamp, timeout_ms: i64) -> bool {
        let heard = match self.last_heard(node, now) {
            Some(t) => t,
            None => {
                let mut first = self.first_judged.lock().unwrap_or_else(|e| e.into_inner());
                *first.entry(node.to_string()).or_insert(now)
            }
        };
        now.0 - heard.0 > timeout_ms
    }

    /// The heartbeats this server owes the store at `now`, given what the store holds
    /// (`stored`): a node that polls here and whose stored heartbeat is another server's, says
    /// gone, or is [`HEARTBEAT_EVERY_MS`] old; and a node that stopped polling here (its grace
    /// passed) while its stored heartbeat, ours, still says connected.
    pub fn heartbeats_due(
        &self,
        now: Timestamp,
        stored: impl Fn(&str) -> Option<Heartbeat>,
    ) -> Vec<(String, Heartbeat)> {
        let polled: Vec<(String, bool, Timestamp)> = {
            let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
            nodes
                .iter()
                .filter(|(_, n)| n.polled)
                .map(|(k, n)| (k.clone(), n.polls > 0 || now.0 - n.last_seen.0 <= GRACE_MS, n.last_seen))
                .collect()
        };
        let mut due = Vec::new();
        for (node, up, last_seen) in polled {
            let have = stored(&node);
            let ours = have.as_ref().is_some_and(|h| h.server == self.server);
            if up {
                let fresh =
                    have.as_ref().is_some_and(|h| ours && h.up && now.0 - h.at.0 < HEARTBEAT_EVERY_MS);
                if !fresh {
                    due.push((node, Heartbeat { server: self.server.clone(), at: now, up: true }));
                }
            } else if ours && have.as_ref().is_some_and(|h| h.up) {
                due.push((node, Heartbeat { server: self.server.clone(), at: last_seen, up: false }));
            }
        }
        due.sort_by(|a, b| a.0.cmp(&b.0));
        due
    }

    /// Wakes the node's poll: its assignments changed. Does nothing while the store's watch
    /// wakes the polls (it will, for the same change).
    pub fn bump(&self, node: &str) {
        if !self.watch_driven.load(Ordering::Relaxed) {
            self.wake(node);
        }
    }

    /// Wakes the node's poll, if one waits here.
    pub fn wake(&self, node: &str) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = nodes.get_mut(node).and_then(|n| n.version.as_mut()) {
            v.send_modify(|v| *v += 1);
        }
    }

    /// Wakes every poll waiting here (the watch lost events: any node may have changed).
    pub fn wake_all(&self) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        for v in nodes.values_mut().filter_map(|n| n.version.as_mut()) {
            v.send_modify(|v| *v += 1);
        }
    }

    /// Sets `--lost-instance-timeout`.
    pub fn set_lost_timeout_ms(&self, ms: i64) {
        self.lost_timeout_ms.store(ms.max(0), Ordering::Relaxed);
    }

    pub fn lost_timeout_ms(&self) -> i64 {
        self.lost_timeout_ms.load(Ordering::Relaxed)
    }

    /// Says how this server is reached (it records itself once it has one).
    pub fn set_identity(&self, identity: Identity) {
        *self.identity.lock().unwrap_or_else(|e| e.into_inner()) = Some(identity);
    }

    /// Whether this server shares its store with others ([`Identity::shares_store`]).
    pub fn shares_store(&self) -> bool {
        self.identity.lock().unwrap_or_else(|e| e.into_inner()).as_ref().is_some_and(Identity::shares_store)
    }

    pub fn identity(&self) -> Option<Identity> {
        self.identity.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// From now on the store's watch wakes the polls.
    pub fn set_watch_driven(&self) {
        self.watch_driven.store(true, Ordering::Relaxed);
    }
}

/// The node whose index entry `key` is (`/_ecs/node/NODE/TASK-ID`; a node's name may hold `/`).
pub fn node_of_index_key(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(crate::keys::node_tasks_root().as_str())?;
    rest.rsplit_once('/').map(|(node, _)| node).filter(|n| !n.is_empty())
}

/// The node an exec session waits for (`/_ecs/exec/NODE/SESSION`).
pub fn node_of_exec_key(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(crate::keys::exec_root().as_str())?;
    rest.rsplit_once('/').map(|(node, _)| node).filter(|n| !n.is_empty())
}

/// The node an agent update is announced to (`/_ecs/agent-update/NODE`).
pub fn node_of_agent_update_key(key: &str) -> Option<&str> {
    key.strip_prefix(crate::keys::agent_update_root().as_str()).filter(|n| !n.is_empty())
}

/// Splits `due` heartbeats into transactions of at most [`HEARTBEATS_PER_TXN`] keys.
pub fn heartbeat_batches(due: &[(String, Heartbeat)]) -> Vec<gantry_store::Txn> {
    due.chunks(HEARTBEATS_PER_TXN)
        .map(|chunk| {
            chunk.iter().fold(gantry_store::Txn::new(), |txn, (node, h)| {
                txn.put(crate::keys::heartbeat(node), h.encode())
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use gantry_core::FixedClock;

    #[test]
    fn connection_follows_polls_and_grace() {
        let clock = Arc::new(FixedClock::new(Timestamp(1_000)));
        let a = Arc::new(Agents::new(100));
        assert!(!a.connected("n", Timestamp(0)));
        let (guard, rx) = a.begin_poll("n", clock.clone());
        let (second, _) = a.begin_poll("n", clock.clone());
        assert_eq!(a.connected.get(), 1, "one node, however many polls");
        assert_eq!(*rx.borrow(), 100);
        assert!(a.connected("n", Timestamp(50_000)));
        drop(second);
        drop(guard);
        assert_eq!(a.connected.get(), 0);
        assert!(a.connected("n", Timestamp(1_000 + GRACE_MS)));
        assert!(!a.connected("n", Timestamp(1_001 + GRACE_MS)));
    }

    #[test]
    fn bumps_wake_polls_until_the_watch_does() {
        let a = Arc::new(Agents::new(7));
        let (_g, mut rx) = a.begin_poll("n", Arc::new(FixedClock::default()));
        a.bump("n");
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 8);
        a.set_watch_driven();
        a.bump("n");
        assert!(!rx.has_changed().unwrap(), "the watch wakes it, once");
        a.wake("n");
        assert_eq!(*rx.borrow_and_update(), 9);
        a.wake_all();
        assert_eq!(*rx.borrow_and_update(), 10);
    }

    #[test]
    fn heartbeats_round_trip_and_refuse_garbage() {
        let h = Heartbeat { server: "s1".into(), at: Timestamp(42), up: true };
        assert_eq!(Heartbeat::parse(&h.encode()), Some(h.clone()));
        let gone = Heartbeat { up: false, ..h };
        assert_eq!(Heartbeat::parse(&gone.encode()), Some(gone));
        for bad in ["", "s1", "s1\tx\t1", "s1\t1\t2", "s1\t1"] {
            assert_eq!(Heartbeat::parse(bad.as_bytes()), None, "{bad:?}");
        }
        let s = ServerInfo {
            id: "a".into(),
            url: "http://10.0.0.1:7360".into(),
            started: Timestamp(1),
            at: Timestamp(2),
            leader: true,
        };
        assert_eq!(ServerInfo::parse("a", &s.encode()), Some(s));
        assert_eq!(ServerInfo::parse("a", b"url\t1"), None);
    }

    #[test]
    fn a_heartbeat_is_written_once_per_interval_and_once_when_the_agent_goes() {
        let clock = Arc::new(FixedClock::new(Timestamp(10_000)));
        let a = Arc::new(Agents { server: "me".into(), ..Agents::new(0) });
        let store: Mutex<HashMap<String, Heartbeat>> = Mutex::default();
        let flush = |now: i64| {
            let due = a.heartbeats_due(Timestamp(now), |n| store.lock().unwrap().get(n).cloned());
            let mut s = store.lock().unwrap();
            for (n, h) in &due {
                s.insert(n.clone(), h.clone());
            }
            due.len()
        };
        assert_eq!(flush(10_000), 0, "nothing polled here yet");
        let guard = a.begin_poll("n", clock.clone());
        assert_eq!(flush(10_000), 1, "the first poll");
        assert_eq!(flush(11_000), 0);
        assert_eq!(flush(19_999), 0);
        assert_eq!(flush(20_000), 1, "every HEARTBEAT_EVERY_MS while it polls");
        // Another server heard it meanwhile (it moved there and back): ours again at once.
        store
            .lock()
            .unwrap()
            .insert("n".into(), Heartbeat { server: "other".into(), at: Timestamp(20_500), up: true });
        assert_eq!(flush(21_000), 1);
        clock.advance_ms(12_000);
        drop(guard);
        assert_eq!(flush(22_000 + GRACE_MS), 0, "within the grace");
        assert_eq!(flush(22_001 + GRACE_MS), 1, "gone: written once");
        assert_eq!(
            store.lock().unwrap()["n"],
            Heartbeat { server: "me".into(), at: Timestamp(22_000), up: false }
        );
        assert_eq!(flush(60_000), 0);
        // Gone from here but heard by another server since: not ours to say.
        store
            .lock()
            .unwrap()
            .insert("n".into(), Heartbeat { server: "other".into(), at: Timestamp(59_000), up: true });
        assert_eq!(flush(61_000), 0);
    }

    #[test]
    fn index_keys_name_their_node() {
        let root = crate::keys::node_tasks_root();
        let arn = "arn:aws:ecs:us-east-1:000000000000:container-instance/c/abc";
        assert_eq!(node_of_index_key(&format!("{root}{arn}/t1")), Some(arn));
        assert_eq!(node_of_index_key(&format!("{root}fargate:n1/t1")), Some("fargate:n1"));
        assert_eq!(node_of_index_key(&format!("{root}t1")), None);
        assert_eq!(node_of_index_key("/_ecs/heartbeat/x/y"), None);
    }

    #[test]
    fn heartbeats_go_in_transactions_etcd_accepts() {
        let due: Vec<_> = (0..250)
            .map(|i| (format!("n{i}"), Heartbeat { server: "s".into(), at: Timestamp(1), up: true }))
            .collect();
        let batches = heartbeat_batches(&due);
        assert_eq!(batches.iter().map(|t| t.ops.len()).collect::<Vec<_>>(), vec![100, 100, 50]);
    }
}
