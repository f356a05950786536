//! The placement engine's view of every cluster, kept current from the store's watch instead of
//! being rebuilt for each placement.
//!
//! A cluster's [`Fleet`] is built from the store the first time a placement needs it. After
//! that, before each placement, the events the store committed since are drained from one watch
//! (without waiting) and every container instance they touch is derived again from the store: a
//! change to its record, or to its `/_node/...` task index entries. Deriving from the current
//! store rather than from the event makes replays harmless, so a watch that fell behind simply
//! starts again from the last revision seen (or, if the store no longer has it, every fleet is
//! rebuilt): the runtime's [`WatchCursor`] does both.
//!
//! The fleets are not a controller and have no task of their own: a placement drains the events
//! inline, under the fleets' lock, because it must plan on a fleet that includes every commit it
//! could have read (its own included). A background drainer would race with that and could only
//! add a second path to the same state. So there is nothing to stop on shutdown: the fleets stop
//! with the last request that uses them.
//!
//! The fleet is only a starting point: the commit compare-and-swaps every instance record it
//! read, so a placement on a stale fleet fails its commit and is planned again on a fresh one.

use crate::ops::instance_record::InstanceRecord;
use crate::records::decode;
use crate::{ControlPlane, Ctx, Stored, keys, reservation};
use gantry_core::{EcsError, Result};
use gantry_model::Resource;
use gantry_placement::engine::Fleet;
use gantry_placement::snapshot::{Instance, Usage};
use gantry_runtime::{Change, WatchCursor};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};

/// One cluster's placement view.
#[derive(Default)]
pub(crate) struct ClusterFleet {
    /// Every instance of the cluster that is not INACTIVE.
    pub(crate) fleet: Fleet,
    /// The records the fleet's instances came from, by ARN (what the commit compares).
    pub(crate) records: HashMap<String, Arc<Stored<InstanceRecord>>>,
    /// Instance key → ARN.
    keys: HashMap<String, String>,
    /// The store revision the fleet reflects (at least).
    pub(crate) revision: i64,
}

#[derive(Default)]
pub(crate) struct Fleets {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The store's changes since the last drain (created by the first drain).
    cursor: Option<WatchCursor>,
    /// By container instance key prefix (`.../container-instance/CLUSTER/`).
    clusters: HashMap<String, Arc<RwLock<ClusterFleet>>>,
    /// Node (container instance ARN) → its record's key, for the `/_node/` index.
    nodes: HashMap<String, String>,
    /// Instance records this process's placements are committing, by key: deriving such an
    /// instance again needs neither decoding its record nor indexing its attributes again.
    primed: HashMap<String, Primed>,
}

/// An instance record a placement writes: the record it read, with only its
/// `remainingResources` changed.
pub(crate) struct Primed {
    pub(crate) key: String,
    /// The revision of the record the placement read.
    pub(crate) base: i64,
    /// The record as written.
    pub(crate) value: Vec<u8>,
    pub(crate) remaining: Vec<Resource>,
}

/// How many primed records are kept at most (a drain takes them; this bounds the rest).
const PRIMED_MAX: usize = 4096;

impl ControlPlane {
    /// The cluster's fleet, brought up to date with everything committed so far.
    pub(crate) fn cluster_fleet(&self, ctx: &Ctx, cluster: &str) -> Result<Arc<RwLock<ClusterFleet>>> {
        let prefix = keys::container_instance_prefix(&ctx.scope, cluster);
        let mut st = self.fleets.state.lock().unwrap_or_else(|e| e.into_inner());
        let revision = self.store.revision();
        self.drain(&mut st)?;
        if let Some(f) = st.clusters.get(&prefix) {
            let f = f.clone();
            f.write().unwrap_or_else(|e| e.into_inner()).revision = revision;
            return Ok(f);
        }
        let mut cf = ClusterFleet { revision, ..Default::default() };
        let st = &mut *st;
        for kv in self.store.range(&prefix, None, usize::MAX) {
            self.refresh(&mut st.nodes, &mut st.primed, &mut cf, &kv.key)?;
        }
        let cf = Arc::new(RwLock::new(cf));
        st.clusters.insert(prefix, cf.clone());
        Ok(cf)
    }

    /// Applies every event committed since the last drain.
    fn drain(&self, st: &mut State) -> Result<()> {
        let State { cursor, clusters, nodes, primed } = st;
        let cursor = cursor.get_or_insert_with(|| {
            WatchCursor::new(self.store.clone(), "/", Some(self.metrics.watch.lag("fleets")))
        });
        // Instance keys to derive again, by cluster prefix: each once, however many of its events
        // came in (a RunTask of 10 on one instance writes its record and 10 index entries).
        let mut dirty: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let node_root = keys::node_tasks_root();
        while let Some(change) = cursor.try_next() {
            match change {
                // The first drain, or the watch fell out of the store's history: every fleet is
                // built again from the store when next asked for.
                Ok(Change::Relist) => {
                    clusters.clear();
                    nodes.clear();
                    dirty.clear();
                }
                Ok(Change::Event(e)) => {
                    let key = &e.kv.key;
                    let instance_key = match key.strip_prefix(node_root.as_str()) {
                        Some(rest) => rest.rsplit_once('/').and_then(|(node, _)| nodes.get(node)).cloned(),
                        None if key.contains("/container-instance/") => Some(key.clone()),
                        None => None,
                    };
                    if let Some(k) = instance_key
                        && let Some((p, _)) = k.rsplit_once('/')
                        && clusters.contains_key(&format!("{p}/"))
                    {
                        dirty.entry(format!("{p}/")).or_default().insert(k);
                    }
                }
                Err(e) => return Err(EcsError::server(e.to_string())),
            }
        }
        for (prefix, keys) in dirty {
            let Some(cf) = clusters.get(&prefix).cloned() else { continue };
            let mut cf = cf.write().unwrap_or_else(|e| e.into_inner());
            for key in keys {
                self.refresh(nodes, primed, &mut cf, &key)?;
            }
        }
        Ok(())
    }

    /// Hands the fleets the instance records a placement is about to commit. When the commit's
    /// events are drained and a record is still as written, over the record the fleet holds,
    /// deriving the instance again only updates what it has left and runs. (A commit that fails
    /// leaves entries that match no record; they are replaced or cleared later.)
    pub(crate) fn prime_instances(&self, records: Vec<Primed>) {
        let mut st = self.fleets.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.primed.len() + records.len() > PRIMED_MAX {
            st.primed.clear();
        }
        for p in records {
            st.primed.insert(p.key.clone(), p);
        }
    }

    /// Derives one instance again from the store: its record and its tasks.
    fn refresh(
        &self,
        nodes: &mut HashMap<String, String>,
        primed: &mut HashMap<String, Primed>,
        cf: &mut ClusterFleet,
        key: &str,
    ) -> Result<()> {
        let kv = self.store.get(key);
        // The record as this process's placement wrote it, if that is still the record and the
        // fleet holds the one the placement read: only its usage changed.
        if let Some(kv) = &kv
            && let Some(arn) = cf.keys.get(key)
            && let Some(record) = cf.records.get_mut(arn)
            && primed.get(key).is_some_and(|p| record.mod_revision == p.base && kv.value[..] == p.value[..])
            && let Some(p) = primed.remove(key)
        {
            let usage = usage_of(self.store.as_ref(), arn, &p.remaining);
            let record = Arc::make_mut(record);
            record.value.remaining_resources = p.remaining;
            record.mod_revision = kv.mod_revision;
            cf.fleet.update_usage(arn, usage);
            return Ok(());
        }
        let derived = match &kv {
            Some(kv) => Some(engine_instance(self.store.as_ref(), kv)?),
            None => None,
        };
        match derived {
            Some((record, inst)) if record.value.is_live() => {
                nodes.insert(inst.arn.clone(), key.to_string());
                cf.keys.insert(key.to_string(), inst.arn.clone());
                cf.records.insert(inst.arn.clone(), Arc::new(record));
                cf.fleet.upsert(inst);
            }
            _ => {
                if let Some(arn) = cf.keys.remove(key) {
                    nodes.remove(&arn);
                    cf.records.remove(&arn);
                    cf.fleet.remove(&arn);
                }
            }
        }
        Ok(())
    }
}

/// A container instance record and the engine's view of it (its tasks' groups counted from the
/// node index, so no task record is read). `agent_connected` is left false: placement asks the
/// agent registry when it matters.
fn engine_instance(
    store: &dyn gantry_store::Store,
    kv: &gantry_store::KeyValue,
) -> Result<(Stored<InstanceRecord>, Instance)> {
    let ci = decode::<InstanceRecord>(kv)?;
    let c = &ci.value;
    let arn = c.container_instance_arn.clone();
    let registered = &c.registered_resources;
    let mut inst = Instance {
        id: c.id().to_string(),
        status: c.status.as_str().to_string(),
        agent_connected: false,
        ec2_instance_id: c.ec2_instance_id.clone(),
        agent_version: c.version_info.as_ref().and_then(|v| v.agent_version.clone()),
        registered_at_ms: c.registered_at.0,
        attributes: c.attributes.iter().map(|a| (a.name.clone(), a.value.clone())).collect(),
        cpu: 0,
        memory: 0,
        gpus: 0,
        ports_tcp: Vec::new(),
        ports_udp: Vec::new(),
        total_cpu: reservation::resource_int(registered, "CPU"),
        total_memory: reservation::resource_int(registered, "MEMORY"),
        running_tasks: 0,
        task_groups: BTreeMap::new(),
        arn,
    };
    inst.set_usage(usage_of(store, &inst.arn, &c.remaining_resources));
    Ok((ci, inst))
}

/// What the instance `arn` has left (its record's `remaining`) and the tasks it runs (counted,
/// with their groups, from the node index).
fn usage_of(store: &dyn gantry_store::Store, arn: &str, remaining: &[Resource]) -> Usage {
    let mut u = reservation::usage(remaining);
    let (running, groups) = (&mut u.running_tasks, &mut u.task_groups);
    store.visit(&keys::node_tasks_prefix(arn), &mut |kv| {
        let (_, group) = keys::node_task_value_parts(&kv.value);
        *running += 1;
        if !group.is_empty() {
            match groups.get_mut(group) {
                Some(n) => *n += 1,
                None => {
                    groups.insert(group.to_string(), 1);
                }
            }
        }
    });
    u
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_core::{FixedClock, Scope, SeededIds, Timestamp};

    fn req<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    /// The fleet a server keeps current (from its own commits' primed records and the watch)
    /// is the fleet a fresh server builds from the store.
    #[tokio::test]
    async fn a_fleet_kept_current_equals_one_rebuilt_from_the_store() {
        let store: Arc<dyn gantry_store::Store> = Arc::new(gantry_store::SqliteStore::in_memory().unwrap());
        let clock = Arc::new(FixedClock::new(Timestamp(1_700_000_000_000)));
        let cp = ControlPlane::new(store.clone(), clock.clone(), Arc::new(SeededIds::new(4)));
        let ctx = Ctx::root(Scope::new("000000000000", "us-east-1"));
        cp.create_cluster(&ctx, req(serde_json::json!({"clusterName": "c"}))).await.unwrap();
        let mut guards = Vec::new();
        for zone in ["zone-a", "zone-b", "zone-a"] {
            let arn = cp
                .register_container_instance(
                    &ctx,
                    req(serde_json::json!({"cluster": "c", "totalResources": [
                        {"name": "CPU", "type": "INTEGER", "integerValue": 4096},
                        {"name": "MEMORY", "type": "INTEGER", "integerValue": 4096}],
                        "attributes": [{"name": "ecs.availability-zone", "value": zone}]})),
                )
                .await
                .unwrap()
                .container_instance
                .unwrap()
                .container_instance_arn
                .unwrap();
            guards.push(cp.agents().begin_poll(&arn, clock.clone()).0);
        }
        cp.register_task_definition(
            &ctx,
            req(serde_json::json!({"family": "web", "containerDefinitions": [
                {"name": "web", "image": "img", "memory": 128, "cpu": 64}]})),
        )
        .await
        .unwrap();
        let fleet = |cp: &ControlPlane| {
            let cf = cp.cluster_fleet(&ctx, "c").unwrap();
            let cf = cf.read().unwrap();
            (
                cf.fleet.instances().to_vec(),
                cf.records.values().map(|r| r.mod_revision).collect::<BTreeSet<_>>(),
                cf.records
                    .iter()
                    .map(|(arn, r)| (arn.clone(), r.value.remaining_resources.clone()))
                    .collect::<BTreeMap<_, _>>(),
            )
        };
        // Build the fleet first, so that the placements below keep it current.
        let before = fleet(&cp);
        for run in [
            serde_json::json!({"cluster": "c", "taskDefinition": "web", "count": 7}),
            serde_json::json!({"cluster": "c", "taskDefinition": "web", "count": 5,
                "placementStrategy": [{"type": "binpack", "field": "memory"}]}),
            serde_json::json!({"cluster": "c", "taskDefinition": "web", "count": 4,
                "placementStrategy": [{"type": "spread", "field": "attribute:ecs.availability-zone"}]}),
        ] {
            let placed = cp.run_task(&ctx, req(run)).await.unwrap().tasks.unwrap();
            assert!(!placed.is_empty());
        }
        let kept = fleet(&cp);
        assert_ne!(kept, before, "the placements changed the fleet");
        let fresh = ControlPlane::new(store, clock.clone(), Arc::new(SeededIds::new(5)));
        let rebuilt = fleet(&fresh);
        assert_eq!(kept.1, rebuilt.1, "the same record revisions");
        assert_eq!(kept.2, rebuilt.2, "the same resources left in the records");
        let strip = |mut v: Vec<gantry_placement::snapshot::Instance>| {
            // Whether an agent is connected is each process's own knowledge, not the store's.
            v.iter_mut().for_each(|i| i.agent_connected = false);
            v.sort_by(|a, b| a.arn.cmp(&b.arn));
            v
        };
        assert_eq!(strip(kept.0), strip(rebuilt.0));
        assert!(cp.fleets.state.lock().unwrap().primed.is_empty(), "every primed record was taken");
    }
}
