//! Gantry's control plane: the ECS operations themselves, one module per resource under
//! [`ops`], over the [`Store`].
//!
//! Each operation takes the generated request shape and a [`Ctx`] (who calls, in which account
//! and region) and returns the generated response shape or an [`EcsError`]. This crate knows
//! nothing of HTTP, JSON framing, SigV4 or sockets: the API layer parses, calls and renders, and
//! tests call these methods directly. Writes are read-modify-write transactions guarded by
//! compare-and-swap on the records they read, retried on conflict, so concurrent calls never
//! lose an update and no global lock is held. Time and IDs come from the injected [`Clock`] and
//! [`IdGen`].

pub mod agents;
pub mod authz;
pub mod capacity;
pub mod cleanup;
mod daemon_scheduler;
mod fleets;
mod gpus;
pub mod insights;
pub mod keys;
mod launcher;
mod liveness;
pub mod migrate;
pub mod ops;
mod records;
pub mod reservation;
mod scheduler;
mod status;
mod table;
mod targets;
mod traffic;
pub mod usage;

use gantry_core::{Clock, EcsError, IdGen, Result, Scope};
use gantry_runtime::Metrics;
use gantry_store::{Store, Txn};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

pub use migrate::{Migration, migrate};
pub use records::{Stored, pack, unpack};

/// Who is calling, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ctx {
    pub scope: Scope,
    /// The caller's IAM principal ARN.
    pub principal: String,
}

impl Ctx {
    /// A caller acting as the account's root user, as every caller does until IAM arrives.
    pub fn root(scope: Scope) -> Self {
        let principal = scope.root_principal();
        Ctx { scope, principal }
    }
}

/// The control plane: the store plus the injected clock and ID source.
#[derive(Clone)]
pub struct ControlPlane {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) ids: Arc<dyn IdGen>,
    locks: Arc<KeyedLocks>,
    pub(crate) agents: Arc<agents::Agents>,
    /// Every cluster's placement view, kept current from the store's watch.
    pub(crate) fleets: Arc<fleets::Fleets>,
    /// Task definitions as agents run them (no overrides), by ARN and whether FARGATE.
    pub(crate) planned: Arc<Mutex<PlannedDefinitions>>,
    /// Where placements, agent connections and the scheduler's passes are counted.
    pub(crate) metrics: Arc<Metrics>,
    /// Cluster records decoded once per revision, for DescribeClusters.
    pub(crate) clusters: Arc<records::DecodedCache<ops::cluster_record::ClusterRecord>>,
    /// ELBv2's target groups, for services' `loadBalancers` (set once by the binary; unset,
    /// target groups are not looked up).
    pub(crate) target_groups: Arc<std::sync::OnceLock<Arc<dyn gantry_ports::lb::TargetRegistry>>>,
    /// CloudWatch's alarm states, for deployment alarms (set once by the binary).
    pub(crate) alarm_states: Arc<std::sync::OnceLock<Arc<dyn gantry_ports::AlarmStates>>>,
    /// What the agents measured of their tasks (AWS/ECS metrics).
    pub(crate) usage: Arc<usage::Usage>,
    /// Cluster auto scaling's ports (set once by the binary; unset, nothing scales).
    pub(crate) capacity: capacity::CapacitySlot,
    pub(crate) capacity_state: Arc<capacity::CapacityState>,
    /// EventBridge's default bus, for ECS's events (set by the binary).
    pub(crate) event_bus: Arc<std::sync::OnceLock<Arc<dyn gantry_ports::EventBus>>>,
    /// How long a minute of a deployment's bake times and hook timeouts lasts, in milliseconds
    /// (60,000 as on AWS; `gantry server --deployment-minute` shortens it for local use).
    pub(crate) deployment_minute_ms: Arc<std::sync::atomic::AtomicI64>,
    /// ELBv2's managed ingress for Express services and Gateways, with the port their shared
    /// load balancers listen on (set once by the binary; unset, Express services are refused).
    pub(crate) ingress: Arc<std::sync::OnceLock<(Arc<dyn gantry_ports::ingress::Ingress>, u16)>>,
    /// Application Auto Scaling, for Express services' scaling (set once by the binary).
    pub(crate) service_scaling: Arc<std::sync::OnceLock<Arc<dyn gantry_ports::ingress::ServiceScaling>>>,
    /// The binary this server runs, which UpdateContainerAgent updates agents to (set once by
    /// the binary; unset, no agent has an update).
    pub(crate) agent_binary: Arc<std::sync::OnceLock<AgentBinary>>,
}

/// The agent binary this server hands out: its own executable, where it was started from, and
/// that file's SHA-256 when the server started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentBinary {
    pub path: std::path::PathBuf,
    /// Hex SHA-256: what an up-to-date agent reports as `versionInfo.agentHash`.
    pub sha256: String,
    pub size: u64,
}

type PlannedDefinitions = HashMap<(String, bool), gantry_core::protocol::SharedJson>;

/// Per-key async locks that serialize this process's writers of one hot record (a task
/// definition family), so they queue instead of failing each other's compare-and-swap. They are
/// an optimization only: correctness, including across servers, comes from the CAS.
#[derive(Default)]
struct KeyedLocks(Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>);

impl KeyedLocks {
    fn get(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = map.get(key).and_then(Weak::upgrade) {
            return l;
        }
        map.retain(|_, w| w.strong_count() > 0);
        let l = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(key.to_string(), Arc::downgrade(&l));
        l
    }
}

/// How many times a compare-and-swap write is retried before the call fails.
const CAS_RETRIES: usize = 64;

impl ControlPlane {
    /// A control plane with a registry of its own (for tests and tools: nothing renders it).
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, ids: Arc<dyn IdGen>) -> Self {
        Self::with_metrics(store, clock, ids, Arc::new(Metrics::new()))
    }

    /// A control plane that records into `metrics` (the binary's one registry).
    pub fn with_metrics(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGen>,
        metrics: Arc<Metrics>,
    ) -> Self {
        // Poll versions of different servers (and of one before and after a restart) differ.
        let epoch = (clock.now().0.max(0) as u64) << 16;
        let server = ids.uuid();
        ControlPlane {
            store: store.clone(),
            clock,
            ids,
            locks: Arc::default(),
            agents: Arc::new(agents::Agents::shared(
                epoch,
                metrics.agents.connected.clone(),
                server,
                store.clone(),
            )),
            fleets: Arc::default(),
            planned: Arc::default(),
            metrics,
            clusters: Arc::default(),
            target_groups: Arc::default(),
            usage: Arc::default(),
            capacity: Arc::default(),
            capacity_state: Arc::default(),
            event_bus: Arc::default(),
            deployment_minute_ms: Arc::new(std::sync::atomic::AtomicI64::new(60_000)),
            alarm_states: Arc::default(),
            ingress: Arc::default(),
            service_scaling: Arc::default(),
            agent_binary: Arc::default(),
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Where services' target groups are looked up (ELBv2). Set once; later calls are ignored.
    pub fn set_target_registry(&self, registry: Arc<dyn gantry_ports::lb::TargetRegistry>) {
        let _ = self.target_groups.set(registry);
    }

    /// How long a minute of deployment bake times and lifecycle hook timeouts lasts (60 s as on
    /// AWS; shorter for local use and tests).
    pub fn set_deployment_minute(&self, d: std::time::Duration) {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1);
        self.deployment_minute_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Wires ELBv2's managed ingress (Express services, Gateways) and the port the shared load
    /// balancers' listeners use. Set once; later calls are ignored.
    pub fn set_ingress(&self, ingress: Arc<dyn gantry_ports::ingress::Ingress>, port: u16) {
        let _ = self.ingress.set((ingress, port));
    }

    /// Wires Application Auto Scaling for Express services. Set once; later calls are ignored.
    pub fn set_service_scaling(&self, scaling: Arc<dyn gantry_ports::ingress::ServiceScaling>) {
        let _ = self.service_scaling.set(scaling);
    }

    /// Wires CloudWatch's alarm states (deployment alarms).
    pub fn set_alarm_states(&self, states: Arc<dyn gantry_ports::AlarmStates>) {
        let _ = self.alarm_states.set(states);
    }

    /// The binary agents update to (UpdateContainerAgent). Set once; later calls are ignored.
    pub fn set_agent_binary(&self, binary: AgentBinary) {
        let _ = self.agent_binary.set(binary);
    }

    /// The binary agents update to, once known.
    pub fn agent_binary(&self) -> Option<&AgentBinary> {
        self.agent_binary.get()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn agents(&self) -> &Arc<agents::Agents> {
        &self.agents
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn ids(&self) -> &Arc<dyn IdGen> {
        &self.ids
    }

    /// Wipes every account's and region's state (the opt-in test-isolation endpoint).
    pub async fn reset(&self) -> Result<()> {
        self.commit_at(Txn::new().delete_prefix("")).await.map(|_| ())
    }

    /// Commits a transaction, returning whether its compares held.
    pub(crate) async fn commit(&self, txn: Txn) -> Result<bool> {
        Ok(self.commit_at(txn).await?.is_some())
    }

    /// Refuses a write outside ECS's prefixes ([`keys::owns`]): other services share the store.
    /// (The test-isolation reset, which wipes the whole store, is the one exception.)
    fn check_owned(txn: &Txn) -> Result<()> {
        for op in &txn.ops {
            let key = match op {
                gantry_store::Op::Put(k, _)
                | gantry_store::Op::Delete(k)
                | gantry_store::Op::DeletePrefix(k)
                | gantry_store::Op::Add(k, _) => k,
            };
            if !keys::owns(key) {
                return Err(EcsError::server(format!(
                    "ECS may not write {key}: it is not under ECS's prefixes."
                )));
            }
        }
        Ok(())
    }

    /// Commits `txn`: the revision it committed at, or `None` if a compare failed.
    pub(crate) async fn commit_at(&self, txn: Txn) -> Result<Option<i64>> {
        if txn.ops != [gantry_store::Op::DeletePrefix(String::new())] {
            Self::check_owned(&txn)?;
        }
        match self.store.txn(txn).await {
            Ok(r) => Ok(r.succeeded.then_some(r.revision)),
            Err(e) => {
                tracing::error!(error = %e, "store write failed");
                Err(EcsError::server(format!("The write could not be stored: {e}")))
            }
        }
    }

    /// Like [`Self::retry`], with this process's writers of `lock_key` taking turns.
    pub(crate) async fn retry_locked<T>(
        &self,
        lock_key: &str,
        attempt: impl FnMut() -> Result<(Txn, T)>,
    ) -> Result<T> {
        let lock = self.locks.get(lock_key);
        let _turn = lock.lock().await;
        self.retry(attempt).await
    }

    /// Runs `attempt` until its transaction commits, giving up after [`CAS_RETRIES`] conflicts.
    /// `attempt` reads what it needs, decides, and returns the guarded transaction together with
    /// the value to return on success.
    pub(crate) async fn retry<T>(&self, attempt: impl FnMut() -> Result<(Txn, T)>) -> Result<T> {
        Ok(self.retry_at(attempt).await?.0)
    }

    /// Like [`Self::retry`], also giving the revision the transaction committed at (0 if it
    /// had nothing to write).
    pub(crate) async fn retry_at<T>(
        &self,
        mut attempt: impl FnMut() -> Result<(Txn, T)>,
    ) -> Result<(T, i64)> {
        for _ in 0..CAS_RETRIES {
            let (txn, out) = attempt()?;
            if txn.ops.is_empty() {
                return Ok((out, 0));
            }
            if let Some(revision) = self.commit_at(txn).await? {
                return Ok((out, revision));
            }
        }
        Err(EcsError::client("Too many concurrent attempts to update the resource. Retry the request."))
    }
}
