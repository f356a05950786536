//! Which agents are connected, and how they learn that their assignments changed.
//!
//! Each node (a container instance, or a Fargate node) long-polls for its assignments. The
//! registry counts the polls in flight per node: a node is connected while one is in flight, or
//! within [`GRACE_MS`] after the last one ended, so an agent whose connection drops is noticed
//! within seconds. Writes that change a node's tasks bump its version, waking its poll at once.
//! This state is per server process and is rebuilt by the agents' next polls after a restart.

use gantry_core::{Clock, Timestamp};
use gantry_runtime::metrics::Gauge;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// How long after its last poll ended a node still counts as connected.
pub const GRACE_MS: i64 = 3_000;

#[derive(Default)]
struct Node {
    polls: usize,
    last_seen: Timestamp,
    version: Option<watch::Sender<u64>>,
}

/// The registry of agent connections.
#[derive(Default)]
pub struct Agents {
    nodes: Mutex<HashMap<String, Node>>,
    /// Versions start from this epoch so that an agent's version from before a server restart
    /// never matches.
    epoch: u64,
    /// Nodes with a poll in flight (`gantry_agents_connected`).
    connected: Gauge,
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
    pub fn new(epoch: u64) -> Self {
        Self::with_gauge(epoch, Gauge::default())
    }

    /// A registry that keeps `connected` at the number of nodes with a poll in flight.
    pub fn with_gauge(epoch: u64, connected: Gauge) -> Self {
        Agents { nodes: Mutex::default(), epoch, connected }
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
        let rx = self.with(node, |n| {
            if n.polls == 0 {
                self.connected.inc();
            }
            n.polls += 1;
            n.version.get_or_insert_with(|| watch::channel(epoch).0).subscribe()
        });
        (PollGuard { agents: self.clone(), node: node.to_string(), clock }, rx)
    }

    /// Whether the node's agent is connected at `now`.
    pub fn connected(&self, node: &str, now: Timestamp) -> bool {
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.get(node).is_some_and(|n| n.polls > 0 || now.0 - n.last_seen.0 <= GRACE_MS)
    }

    /// Wakes the node's poll: its assignments changed.
    pub fn bump(&self, node: &str) {
        let epoch = self.epoch;
        self.with(node, |n| {
            n.version.get_or_insert_with(|| watch::channel(epoch).0).send_modify(|v| *v += 1);
        });
    }
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
    fn bumps_wake_polls() {
        let a = Arc::new(Agents::new(7));
        let (_g, mut rx) = a.begin_poll("n", Arc::new(FixedClock::default()));
        a.bump("n");
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 8);
    }
}
