//! The agent channel across servers, store side: heartbeats written, polls woken from the
//! store's watch, each server's record, and what `gantry status` shows. The rules are in
//! [`crate::agents`]; this module reads and writes the store for them.

use crate::ControlPlane;
use crate::agents::{self, Heartbeat, Identity, ServerInfo};
use crate::keys;
use gantry_core::{Result, Timestamp};
use gantry_runtime::Shutdown;
use gantry_store::{EventKind, Txn};
use std::time::Duration;

/// Server records not rewritten for this long are deleted (a server that died and never came
/// back); until then `gantry status` lists them as down.
const SERVER_FORGOTTEN_MS: i64 = 3_600_000;

/// What `gantry status` shows.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// The server that answered.
    pub server: String,
    pub url: String,
    pub store: String,
    /// Whether the server that answered leads.
    pub leader: bool,
    pub servers: Vec<ServerStatus>,
    pub agents: Vec<AgentStatus>,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerStatus {
    pub id: String,
    pub url: String,
    /// Epoch milliseconds.
    pub started_at: i64,
    pub last_seen_at: i64,
    pub up: bool,
    pub leader: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    /// The container instance ARN, or `fargate:ID`.
    pub node: String,
    pub connected: bool,
    /// The server that last heard it.
    pub server: String,
    pub last_heard_at: i64,
}

impl ControlPlane {
    /// This server's ID (its record's key, its heartbeats' writer).
    pub fn server_id(&self) -> &str {
        self.agents.server()
    }

    /// Sets `--lost-instance-timeout`: service tasks on a node not heard from for longer are
    /// replaced elsewhere by the scheduler.
    pub fn set_lost_instance_timeout(&self, timeout: Duration) {
        self.agents.set_lost_timeout_ms(timeout.as_millis().min(i64::MAX as u128) as i64);
    }

    /// Whether `node`'s agent has been gone longer than the lost-instance timeout.
    pub(crate) fn agent_lost(&self, node: &str, now: Timestamp) -> bool {
        self.agents.lost(node, now, self.agents.lost_timeout_ms())
    }

    /// Writes the heartbeats this server owes (see [`agents::Agents::heartbeats_due`]), one
    /// transaction per 100 nodes. Returns how many it wrote.
    pub async fn flush_heartbeats(&self) -> Result<usize> {
        let now = self.clock.now();
        let due = self.agents.heartbeats_due(now, |n| self.agents.heartbeat(n));
        for txn in agents::heartbeat_batches(&due) {
            let n = txn.ops.len() as u64;
            self.commit(txn).await?;
            self.metrics.agents.heartbeats.inc_by(n);
        }
        Ok(due.len())
    }

    /// Writes this server's record (see [`ServerInfo`]), and deletes the records of servers
    /// gone for an hour.
    pub async fn record_server(&self, identity: &Identity, leader: bool) -> Result<()> {
        let now = self.clock.now();
        let me = ServerInfo {
            id: self.server_id().to_string(),
            url: identity.url.clone(),
            started: identity.started,
            at: now,
            leader,
        };
        let mut txn = Txn::new().put(keys::server(&me.id), me.encode());
        for kv in self.store.range(&keys::server_prefix(), None, usize::MAX) {
            let id = kv.key.rsplit('/').next().unwrap_or_default();
            let old = ServerInfo::parse(id, &kv.value).is_none_or(|s| now.0 - s.at.0 > SERVER_FORGOTTEN_MS);
            if old && id != me.id {
                txn = txn.when(&kv.key, kv.mod_revision).delete(&kv.key);
            }
        }
        // A compare that failed (another server pruned first) is retried at the next record.
        self.commit(txn).await.map(|_| ())
    }

    /// Deletes this server's record (it shuts down).
    pub async fn forget_server(&self) -> Result<()> {
        self.commit(Txn::new().delete(keys::server(self.server_id()))).await.map(|_| ())
    }

    /// The servers sharing the store, by ID.
    pub fn servers(&self) -> Vec<ServerInfo> {
        self.store
            .range(&keys::server_prefix(), None, usize::MAX)
            .iter()
            .filter_map(|kv| ServerInfo::parse(kv.key.rsplit('/').next().unwrap_or_default(), &kv.value))
            .collect()
    }

    /// The URL DiscoverPollEndpoint hands an agent: one of the servers up, the same for one
    /// container instance every time (so agents spread over the servers), or `fallback` (the
    /// server asked) when none has recorded itself.
    pub(crate) fn poll_server_for(&self, container_instance: Option<&str>, fallback: &str) -> String {
        let now = self.clock.now();
        let mut up: Vec<ServerInfo> = self.servers().into_iter().filter(|s| s.live(now)).collect();
        up.sort_by(|a, b| a.url.cmp(&b.url));
        up.dedup_by(|a, b| a.url == b.url);
        match (container_instance, up.len()) {
            (_, 0) => fallback.to_string(),
            (None, _) => {
                let here = self.agents.identity().map(|i| i.url);
                here.filter(|u| up.iter().any(|s| &s.url == u)).unwrap_or_else(|| up[0].url.clone())
            }
            (Some(ci), n) => up[(fnv1a(ci.as_bytes()) % n as u64) as usize].url.clone(),
        }
    }

    /// What `gantry status` shows: the servers, the leader, the store and every agent heard of.
    pub fn status(&self) -> Status {
        let now = self.clock.now();
        let identity = self.agents.identity();
        let leader = self.metrics.leader.get() == 1;
        let mut servers: Vec<ServerStatus> = self
            .servers()
            .into_iter()
            .map(|s| ServerStatus {
                up: s.live(now),
                leader: s.leader && s.live(now),
                id: s.id,
                url: s.url,
                started_at: s.started.0,
                last_seen_at: s.at.0,
            })
            .collect();
        // This server's own view of its leadership is newer than its record.
        for s in &mut servers {
            if s.id == self.server_id() {
                s.leader = leader;
                s.up = true;
            }
        }
        let mut agents = Vec::new();
        for kv in self.store.range(&keys::heartbeat_prefix(), None, usize::MAX) {
            let Some(h) = Heartbeat::parse(&kv.value) else { continue };
            let node = kv.key.strip_prefix(&keys::heartbeat_prefix()).unwrap_or_default().to_string();
            let connected = self.agents.connected(&node, now);
            let last = self.agents.last_heard(&node, now).unwrap_or(h.at);
            agents.push(AgentStatus { node, connected, server: h.server, last_heard_at: last.0 });
        }
        Status {
            server: self.server_id().to_string(),
            url: identity.as_ref().map(|i| i.url.clone()).unwrap_or_default(),
            store: identity.map(|i| i.store).unwrap_or_default(),
            leader,
            servers,
            agents,
        }
    }

    /// Wakes the polls waiting on this server whenever a node's index changes, an exec session
    /// starts waiting for a node's agent, or an agent update is announced to a node
    /// (UpdateContainerAgent), whichever server wrote it, until `shutdown`.
    pub async fn wake_polls_from_watch(&self, shutdown: Shutdown) {
        let (tasks, execs, updates) = (keys::node_tasks_root(), keys::exec_root(), keys::agent_update_root());
        tokio::join!(
            self.wake_polls_on(&tasks, agents::node_of_index_key, shutdown.clone()),
            self.wake_polls_on(&execs, agents::node_of_exec_key, shutdown.clone()),
            self.wake_polls_on(&updates, agents::node_of_agent_update_key, shutdown),
        );
    }

    /// Wakes the poll of the node `node_of` finds in each key put under `root`. A watch that
    /// falls behind or is compacted wakes every poll (any node may have changed) and starts again
    /// from the current revision.
    async fn wake_polls_on(&self, root: &str, node_of: fn(&str) -> Option<&str>, mut shutdown: Shutdown) {
        loop {
            let from = self.store.revision() + 1;
            let mut watch = match self.store.watch(root, from) {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %e, prefix = root, "cannot watch the nodes' assignments");
                    return;
                }
            };
            self.agents.set_watch_driven();
            loop {
                let event = tokio::select! {
                    _ = shutdown.wait() => return,
                    e = watch.next() => e,
                };
                match event {
                    Ok(e) => {
                        if e.kind == EventKind::Put
                            && let Some(node) = node_of(&e.kv.key)
                        {
                            self.agents.wake(node);
                        }
                    }
                    Err(gantry_store::StoreError::Closed) => return,
                    Err(e) => {
                        tracing::debug!(error = %e, prefix = root, "the assignments' watch restarts");
                        self.agents.wake_all();
                        break;
                    }
                }
            }
        }
    }

    /// The agent channel's background work on a serving server, until `shutdown`: polls woken
    /// from the watch, heartbeats flushed every second, this server's record kept (and deleted
    /// at the end).
    pub async fn run_agent_channel(&self, identity: Identity, shutdown: Shutdown) {
        self.agents.set_identity(identity.clone());
        let wake = self.wake_polls_from_watch(shutdown.clone());
        let beat = async {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut recorded: Option<(i64, bool)> = None;
            loop {
                tick.tick().await;
                if let Err(e) = self.flush_heartbeats().await {
                    tracing::warn!(error = %e.message, "cannot record the agents' heartbeats");
                }
                if identity.shares_store()
                    && let Err(e) = self.sweep_execs().await
                {
                    tracing::warn!(error = %e.message, "cannot remove the expired exec sessions");
                }
                let now = self.clock.now().0;
                let leader = self.metrics.leader.get() == 1;
                let due =
                    recorded.is_none_or(|(at, was)| was != leader || now - at >= agents::SERVER_EVERY_MS);
                if due {
                    match self.record_server(&identity, leader).await {
                        Ok(()) => recorded = Some((now, leader)),
                        Err(e) => tracing::warn!(error = %e.message, "cannot record this server"),
                    }
                }
            }
        };
        let mut stop = shutdown.clone();
        tokio::select! {
            _ = wake => {}
            _ = beat => {}
            _ = stop.wait() => {}
        }
        let _ = self.forget_server().await;
    }
}

/// FNV-1a: a stable hash (the standard library's is seeded per process).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_core::{Clock, FixedClock, SeededIds};
    use gantry_store::{SqliteStore, Store};
    use std::sync::Arc;

    fn plane(store: &Arc<dyn Store>, clock: &Arc<FixedClock>, seed: u64) -> ControlPlane {
        ControlPlane::new(store.clone(), clock.clone(), Arc::new(SeededIds::new(seed)))
    }

    fn store() -> ((), Arc<dyn Store>) {
        ((), Arc::new(SqliteStore::in_memory().unwrap()))
    }

    /// Two servers on one store: an agent polling A is connected on B through the heartbeat A
    /// stores, until A says it is gone or its heartbeat goes stale.
    #[tokio::test]
    async fn every_server_agrees_on_agent_connected() {
        let (_d, store) = store();
        let clock = Arc::new(FixedClock::new(Timestamp(1_000_000)));
        let (a, b) = (plane(&store, &clock, 1), plane(&store, &clock, 2));
        assert_ne!(a.server_id(), b.server_id());
        let now = || clock.now();
        let poll = a.agents.begin_poll("node-1", clock.clone());
        assert!(a.agents.connected("node-1", now()));
        assert!(!b.agents.connected("node-1", now()), "not written yet");
        assert_eq!(a.flush_heartbeats().await.unwrap(), 1);
        assert_eq!(a.metrics.agents.heartbeats.get(), 1);
        assert!(b.agents.connected("node-1", now()));
        assert_eq!(b.flush_heartbeats().await.unwrap(), 0, "B heard nothing itself");
        // Polls go on: one write per interval, not per poll.
        clock.advance_ms(agents::HEARTBEAT_EVERY_MS - 1);
        assert_eq!(a.flush_heartbeats().await.unwrap(), 0);
        clock.advance_ms(1);
        assert_eq!(a.flush_heartbeats().await.unwrap(), 1);
        // The agent goes: A notices after the grace, writes it, and B agrees.
        drop(poll);
        clock.advance_ms(agents::GRACE_MS + 1);
        assert!(b.agents.connected("node-1", now()), "A has not said so yet");
        assert_eq!(a.flush_heartbeats().await.unwrap(), 1);
        assert!(!a.agents.connected("node-1", now()));
        assert!(!b.agents.connected("node-1", now()));
        // It comes back on B: B says so at once, and A trusts B's heartbeat.
        let _on_b = b.agents.begin_poll("node-1", clock.clone());
        assert_eq!(b.flush_heartbeats().await.unwrap(), 1);
        assert!(a.agents.connected("node-1", now()));
        // B dies without a word (it never writes again): its heartbeat goes stale and A stops
        // believing it.
        clock.advance_ms(agents::HEARTBEAT_STALE_MS);
        assert!(a.agents.connected("node-1", now()));
        clock.advance_ms(1);
        assert!(!a.agents.connected("node-1", now()));
    }

    #[tokio::test]
    async fn a_node_is_lost_after_the_timeout_from_when_it_was_last_heard() {
        let (_d, store) = store();
        let clock = Arc::new(FixedClock::new(Timestamp(5_000_000)));
        let (a, b) = (plane(&store, &clock, 1), plane(&store, &clock, 2));
        b.set_lost_instance_timeout(Duration::from_secs(60));
        // Never heard of: counted from the first time B judges it.
        assert!(!b.agent_lost("ghost", clock.now()));
        clock.advance_ms(60_000);
        assert!(!b.agent_lost("ghost", clock.now()));
        clock.advance_ms(1);
        assert!(b.agent_lost("ghost", clock.now()));
        // Heard by A: lost 60 s after its last poll ended, as B reads A's heartbeat.
        let poll = a.agents.begin_poll("n", clock.clone());
        a.flush_heartbeats().await.unwrap();
        let left = clock.now();
        drop(poll);
        clock.advance_ms(agents::GRACE_MS + 1);
        a.flush_heartbeats().await.unwrap();
        assert!(!b.agent_lost("n", clock.now()));
        clock.advance_ms(60_000 - agents::GRACE_MS - 1);
        assert!(!b.agent_lost("n", clock.now()));
        clock.advance_ms(1);
        assert!(b.agent_lost("n", clock.now()), "lost 60 s after {left:?}");
    }

    fn exec_request(session: &str) -> gantry_core::protocol::ExecRequest {
        gantry_core::protocol::ExecRequest {
            session_id: session.into(),
            task_arn: "arn:aws:ecs:us-east-1:000000000000:task/c/t1".into(),
            container_name: "app".into(),
            command: vec!["sh".into(), "-c".into(), "echo hi".into()],
            tty: false,
            server_url: None,
        }
    }

    /// An exec session queued through server A waits in the store for its node only: B's poll
    /// of that node takes it once, naming A's URL; another node's poll (one whose name only
    /// starts the same) takes nothing.
    #[tokio::test]
    async fn an_exec_session_is_taken_once_by_its_own_node_on_any_server() {
        let (_d, store) = store();
        let clock = Arc::new(FixedClock::new(Timestamp(1_000_000)));
        let (a, b) = (plane(&store, &clock, 1), plane(&store, &clock, 2));
        let node = "arn:aws:ecs:us-east-1:000000000000:container-instance/c/i1";
        a.queue_exec(node, exec_request("s1"), "http://10.0.0.1:8080", 60_000).await.unwrap();
        let waiting = b.waiting_execs();
        assert_eq!(waiting.len(), 1);
        assert_eq!(waiting[0].0, node);
        assert_eq!(waiting[0].1.server_url.as_deref(), Some("http://10.0.0.1:8080"));
        assert!(b.take_execs("arn:aws:ecs:us-east-1:000000000000:container-instance/c/i2").await.is_empty());
        assert!(b.take_execs("arn:aws:ecs:us-east-1:000000000000:container-instance/c").await.is_empty());
        assert_eq!(b.waiting_execs().len(), 1, "another node's poll leaves it");
        let taken = b.take_execs(node).await;
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].session_id, "s1");
        assert_eq!(taken[0].server_url.as_deref(), Some("http://10.0.0.1:8080"));
        assert_eq!(taken[0].command, exec_request("s1").command);
        assert!(a.take_execs(node).await.is_empty(), "handed out once");
        assert!(b.waiting_execs().is_empty(), "taken means removed");
        // The session's end finds nothing left to remove.
        a.forget_exec(node, "s1").await.unwrap();
        assert!(a.waiting_execs().is_empty());
    }

    /// A session nobody took is removed by its server when it ends, or by any server's sweep
    /// once past its time (its server died); a poll after that time hands it out no more.
    #[tokio::test]
    async fn an_untaken_exec_session_is_removed_at_its_end_or_after_its_timeout() {
        let (_d, store) = store();
        let clock = Arc::new(FixedClock::new(Timestamp(1_000_000)));
        let (a, b) = (plane(&store, &clock, 1), plane(&store, &clock, 2));
        let node = "node-1";
        // Ended (the caller left, or the agent never joined): its server removes it.
        a.queue_exec(node, exec_request("ended"), "http://a", 60_000).await.unwrap();
        a.forget_exec(node, "ended").await.unwrap();
        assert!(b.waiting_execs().is_empty());
        // Its server died: the sweep removes it once expired, not before.
        a.queue_exec(node, exec_request("orphan"), "http://a", 60_000).await.unwrap();
        a.queue_exec("node-2", exec_request("later"), "http://a", 120_000).await.unwrap();
        clock.advance_ms(60_000);
        assert_eq!(b.sweep_execs().await.unwrap(), 0, "not expired at its last millisecond");
        clock.advance_ms(1);
        assert_eq!(b.sweep_execs().await.unwrap(), 1);
        let left: Vec<String> = b.waiting_execs().into_iter().map(|(_, r)| r.session_id).collect();
        assert_eq!(left, ["later"]);
        // Expired but not swept yet: the node's poll removes it without handing it out.
        clock.advance_ms(60_000);
        assert!(b.take_execs("node-2").await.is_empty());
        assert!(b.waiting_execs().is_empty());
        // Many at once (a server died with a crowd waiting): a bounded transaction per sweep.
        let many = crate::ops::exec::SWEEP_AT_ONCE + 7;
        for i in 0..many {
            a.queue_exec(&format!("node-{i}"), exec_request("crowd"), "http://a", 1).await.unwrap();
        }
        clock.advance_ms(2);
        assert_eq!(b.sweep_execs().await.unwrap(), crate::ops::exec::SWEEP_AT_ONCE);
        assert_eq!(b.sweep_execs().await.unwrap(), 7);
        assert!(b.waiting_execs().is_empty());
    }

    /// A session queued through A wakes the node's poll on B through B's watch.
    #[tokio::test]
    async fn an_exec_session_queued_on_one_server_wakes_a_poll_on_another() {
        let (_d, store) = store();
        let clock = Arc::new(FixedClock::new(Timestamp(1_000)));
        let (a, b) = (plane(&store, &clock, 1), plane(&store, &clock, 2));
        let (stop, shutdown) = gantry_runtime::shutdown();
        let waker = tokio::spawn({
            let b = b.clone();
            async move { b.wake_polls_from_watch(shutdown).await }
        });
        let node = "arn:x:container-instance/c/i1";
        let (_poll, mut rx) = b.agents.begin_poll(node, clock.clone());
        // The watch starts in its own time: queue until a session wakes the poll.
        let mut n = 0;
        loop {
            a.queue_exec(node, exec_request(&format!("s{n}")), "http://a", 60_000).await.unwrap();
            n += 1;
            if tokio::time::timeout(Duration::from_millis(200), rx.changed()).await.is_ok() {
                break;
            }
            assert!(n < 50, "the watch never woke the poll");
        }
        assert_eq!(b.take_execs(node).await.len(), n);
        // Now watch-driven: the next session wakes the poll again, and the poll takes it alone.
        rx.borrow_and_update();
        a.queue_exec("arn:x:container-instance/c/i2", exec_request("other"), "http://a", 60_000)
            .await
            .unwrap();
        a.queue_exec(node, exec_request("mine"), "http://a", 60_000).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.changed()).await.unwrap().unwrap();
        let taken: Vec<String> = b.take_execs(node).await.into_iter().map(|r| r.session_id).collect();
        assert_eq!(taken, ["mine"]);
        assert_eq!(
            agents::node_of_exec_key(&keys::exec_request("arn:x:container-instance/c/i2", "other")),
            Some("arn:x:container-instance/c/i2"),
            "another node's session wakes that node"
        );
        stop.trigger();
        waker.await.unwrap();
    }

    #[tokio::test]
    async fn a_write_through_one_server_wakes_a_poll_on_another() {
        let (_d, store) = store();
        let clock = Arc::new(FixedClock::new(Timestamp(1_000)));
        let (a, b) = (plane(&store, &clock, 1), plane(&store, &clock, 2));
        let (stop, shutdown) = gantry_runtime::shutdown();
        let waker = tokio::spawn({
            let b = b.clone();
            async move { b.wake_polls_from_watch(shutdown).await }
        });
        let (_poll, mut rx) = b.agents.begin_poll("arn:x:container-instance/c/i1", clock.clone());
        // Until the watch runs, B's own writes wake its polls; wait until it does.
        let index = keys::node_task("arn:x:container-instance/c/i1", "t1");
        let mut n = 0;
        loop {
            a.commit(Txn::new().put(&index, format!("{n}").into_bytes())).await.unwrap();
            n += 1;
            if tokio::time::timeout(Duration::from_millis(200), rx.changed()).await.is_ok() {
                break;
            }
            assert!(n < 50, "the watch never woke the poll");
        }
        // Now watch-driven: B's own bump does nothing, A's write wakes it.
        rx.borrow_and_update();
        b.agents.bump("arn:x:container-instance/c/i1");
        assert!(!rx.has_changed().unwrap());
        a.commit(Txn::new().put(&index, b"again".to_vec())).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.changed()).await.unwrap().unwrap();
        // A deletion (the task stopped, as its agent reported) wakes nothing.
        let before = *rx.borrow_and_update();
        a.commit(Txn::new().delete(&index)).await.unwrap();
        let other = keys::node_task("arn:x:container-instance/c/i2", "t9");
        a.commit(Txn::new().put(&other, b"x".to_vec())).await.unwrap();
        a.commit(Txn::new().put(&index, b"back".to_vec())).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.changed()).await.unwrap().unwrap();
        assert_eq!(
            *rx.borrow_and_update(),
            before + 1,
            "one wake for the put, none for the delete or another node"
        );
        stop.trigger();
        waker.await.unwrap();
    }

    #[tokio::test]
    async fn servers_record_themselves_and_discover_poll_endpoint_spreads_agents() {
        let (_d, store) = store();
        let clock = Arc::new(FixedClock::new(Timestamp(1_000_000)));
        let (a, b) = (plane(&store, &clock, 1), plane(&store, &clock, 2));
        assert_eq!(a.poll_server_for(Some("ci-1"), "http://asked"), "http://asked", "nobody recorded");
        let id = |url: &str| Identity { url: url.into(), store: "etcd://e".into(), started: clock.now() };
        a.agents.set_identity(id("http://a"));
        a.record_server(&id("http://a"), true).await.unwrap();
        b.record_server(&id("http://b"), false).await.unwrap();
        let picks: std::collections::BTreeSet<String> =
            (0..32).map(|i| b.poll_server_for(Some(&format!("ci-{i}")), "http://asked")).collect();
        assert_eq!(picks, ["http://a".to_string(), "http://b".to_string()].into());
        assert_eq!(a.poll_server_for(Some("ci-7"), "x"), b.poll_server_for(Some("ci-7"), "y"), "stable");
        assert_eq!(a.poll_server_for(None, "x"), "http://a");
        // B stops writing its record: after SERVER_STALE_MS it is down and gets no agents.
        clock.advance_ms(agents::SERVER_STALE_MS);
        a.record_server(&id("http://a"), true).await.unwrap();
        clock.advance_ms(1);
        assert!((0..16).all(|i| b.poll_server_for(Some(&format!("ci-{i}")), "z") == "http://a"));
        let status = a.status();
        let up: Vec<(&str, bool, bool)> =
            status.servers.iter().map(|s| (s.url.as_str(), s.up, s.leader)).collect();
        assert_eq!(up.len(), 2);
        assert!(up.contains(&("http://a", true, false)), "A's gauge says it does not lead: {up:?}");
        assert!(up.contains(&("http://b", false, false)));
        // An hour later B's record goes.
        clock.advance_ms(SERVER_FORGOTTEN_MS);
        a.record_server(&id("http://a"), true).await.unwrap();
        assert_eq!(a.servers().len(), 1);
        a.forget_server().await.unwrap();
        assert!(a.servers().is_empty());
    }
}
