//! The placement engine's view of every cluster, kept current from the store's watch instead of
//! being rebuilt for each placement.
//!
//! A cluster's [`Fleet`] is built from the store the first time a placement needs it. After
//! that, before each placement, the events the store committed since are drained from one watch
//! (without waiting) and every container instance they touch is derived again from the store: a
//! change to its record, or to its `/_node/...` task index entries. Deriving from the current
//! store rather than from the event makes replays harmless, so a watch that fell behind simply
//! starts again from the last revision seen (or, if the store no longer has it, every fleet is
//! rebuilt).
//!
//! The fleet is only a starting point: the commit compare-and-swaps every instance record it
//! read, so a placement on a stale fleet fails its commit and is planned again on a fresh one.

use crate::ops::placement::engine_instance;
use crate::{ControlPlane, Ctx, Stored, keys};
use gantry_core::{EcsError, Result};
use gantry_model::ContainerInstance;
use gantry_placement::engine::Fleet;
use gantry_store::{StoreError, Watch};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};

/// One cluster's placement view.
#[derive(Default)]
pub(crate) struct ClusterFleet {
    /// Every instance of the cluster that is not INACTIVE.
    pub(crate) fleet: Fleet,
    /// The records the fleet's instances came from, by ARN (what the commit compares).
    pub(crate) records: HashMap<String, Arc<Stored<ContainerInstance>>>,
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
    watch: Option<Watch>,
    /// The last revision whose events were applied.
    seen: i64,
    /// By container instance key prefix (`.../container-instance/CLUSTER/`).
    clusters: HashMap<String, Arc<RwLock<ClusterFleet>>>,
    /// Node (container instance ARN) → its record's key, for the `/_node/` index.
    nodes: HashMap<String, String>,
}

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
        for kv in self.store.range(&prefix, None, usize::MAX) {
            self.refresh(&mut st.nodes, &mut cf, &kv.key)?;
        }
        let cf = Arc::new(RwLock::new(cf));
        st.clusters.insert(prefix, cf.clone());
        Ok(cf)
    }

    /// Applies every event committed since the last drain.
    fn drain(&self, st: &mut State) -> Result<()> {
        if st.watch.is_none() {
            st.seen = self.store.revision();
            st.watch = Some(self.watch_from(st.seen + 1)?);
            st.clusters.clear();
            st.nodes.clear();
        }
        // Instance keys to derive again, by cluster prefix: each once, however many of its events
        // came in (a RunTask of 10 on one instance writes its record and 10 index entries).
        let mut dirty: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        while let Some(watch) = st.watch.as_mut() {
            match watch.try_next() {
                None => break,
                Some(Ok(e)) => {
                    st.seen = st.seen.max(e.kv.mod_revision);
                    let key = &e.kv.key;
                    let instance_key = match key.strip_prefix("/_node/") {
                        Some(rest) => rest.rsplit_once('/').and_then(|(node, _)| st.nodes.get(node)).cloned(),
                        None if key.contains("/container-instance/") => Some(key.clone()),
                        None => None,
                    };
                    if let Some(k) = instance_key
                        && let Some((p, _)) = k.rsplit_once('/')
                        && st.clusters.contains_key(&format!("{p}/"))
                    {
                        dirty.entry(format!("{p}/")).or_default().insert(k);
                    }
                }
                Some(Err(StoreError::Lagged(_))) => match self.watch_from(st.seen + 1) {
                    Ok(w) => st.watch = Some(w),
                    Err(_) => {
                        // Too far behind for the store's history: start over.
                        st.watch = None;
                        return self.drain(st);
                    }
                },
                Some(Err(e)) => return Err(EcsError::server(e.to_string())),
            }
        }
        for (prefix, keys) in dirty {
            let Some(cf) = st.clusters.get(&prefix).cloned() else { continue };
            let mut cf = cf.write().unwrap_or_else(|e| e.into_inner());
            for key in keys {
                self.refresh(&mut st.nodes, &mut cf, &key)?;
            }
        }
        Ok(())
    }

    fn watch_from(&self, revision: i64) -> Result<Watch> {
        self.store.watch("/", revision).map_err(|e| EcsError::server(e.to_string()))
    }

    /// Derives one instance again from the store: its record and its tasks.
    fn refresh(&self, nodes: &mut HashMap<String, String>, cf: &mut ClusterFleet, key: &str) -> Result<()> {
        let kv = self.store.get(key);
        let derived = match &kv {
            Some(kv) => Some(engine_instance(self.store.as_ref(), kv)?),
            None => None,
        };
        match derived {
            Some((record, inst)) if record.value.status.as_deref() != Some("INACTIVE") => {
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
