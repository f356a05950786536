//! A small pool of ready awsvpc namespace holders, so that an awsvpc (Fargate) task does not
//! wait for its holder to be created and started: most of what its start costs beyond
//! `docker run -d` of the same image (see BENCHMARKS.md, "Fargate start overhead").
//!
//! A pool member is a running holder ([`crate::pause`]) labelled [`labels::HOLDER_POOL`] with
//! its node, under a name of the form `ecs-internalecspause-pool-NODE-N` (NODE: the end of the
//! node's name, so that agents sharing one engine never ask for the same name). A task takes one and the
//! engine records the hand-over: the holder is renamed to the task's holder name
//! (`ecs-internalecspause-TASK-ID`, [`crate::spec::engine_name`]), which is how the agent finds
//! it after a restart (engine labels cannot change). So, on the engine, a pool-labelled
//! container is either
//! - under a pool name: a free member. An agent that starts takes the running ones back into its
//!   pool (up to its size) and removes the others; it never gives one to a task on adoption;
//! - under a task's holder name: that task's holder, adopted with the task (or removed with it
//!   when the task is no longer assigned here).
//!
//! The pool refills in the background once a task that took a holder has started.

use crate::runtime::{ContainerSpec, ContainerState, ContainerStatus, Runtime, labels};
use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The engine name of every pool member begins so.
pub const POOL_PREFIX: &str = "ecs-internalecspause-pool-";
/// A task's holder is named so, followed by the task ID.
pub const TASK_HOLDER_PREFIX: &str = "ecs-internalecspause-";

/// A free holder: its engine ID and name, and the MAC address it was created with (if the node routes
/// task credentials by MAC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub id: String,
    /// Its pool name.
    pub name: String,
    pub mac: Option<String>,
}

/// The pool.
#[derive(Default)]
pub struct HolderPool {
    size: AtomicUsize,
    state: Mutex<State>,
    refill: tokio::sync::Notify,
}

#[derive(Default)]
struct State {
    free: Vec<Holder>,
    /// The pool names in use (free members, and those being made).
    names: HashSet<String>,
    /// The next pool name's number: names are not used twice by one agent (a holder handed
    /// over may keep its pool name a moment longer, until it is renamed).
    next: u64,
}

/// Whether `name` is a free pool member's.
pub fn is_pool_name(name: &str) -> bool {
    name.starts_with(POOL_PREFIX)
}

/// Pool member `n`'s name on `node`'s engine: `ecs-internalecspause-pool-TAG-N`, TAG the last 12
/// letters and digits of the node's name (a Fargate node's ID, a container instance's ID), so
/// that two agents on one engine (two `gantry up`, say) never ask for one name.
pub fn pool_name(node: &str, n: u64) -> String {
    let tag: Vec<char> = node.chars().filter(char::is_ascii_alphanumeric).collect();
    let tag: String = tag[tag.len().saturating_sub(12)..].iter().collect();
    format!("{POOL_PREFIX}{tag}-{n}")
}

/// The task ID whose holder `name` is (`ecs-internalecspause-TASK-ID`), if it is one.
pub fn task_of_holder_name(name: &str) -> Option<&str> {
    if is_pool_name(name) {
        return None;
    }
    name.strip_prefix(TASK_HOLDER_PREFIX).filter(|id| !id.is_empty())
}

impl HolderPool {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many ready holders to keep (0: none, every awsvpc task makes its own).
    pub fn set_size(&self, n: usize) {
        self.size.store(n, Ordering::Relaxed);
        self.refill.notify_one();
    }

    pub fn size(&self) -> usize {
        self.size.load(Ordering::Relaxed)
    }

    /// A ready holder for a task, if the pool has one. The pool refills when asked
    /// ([`HolderPool::refill`]).
    pub fn take(&self) -> Option<Holder> {
        let mut s = self.lock();
        let h = s.free.pop();
        if let Some(h) = &h {
            s.names.remove(&h.name);
        }
        h
    }

    /// Asks for the pool to be filled again in the background (after a task took a holder, or
    /// found none: a refill that failed is tried again).
    pub fn refill(&self) {
        if self.size() > 0 {
            self.refill.notify_one();
        }
    }

    /// The engine IDs of the free members.
    pub fn free(&self) -> Vec<String> {
        self.lock().free.iter().map(|h| h.id.clone()).collect()
    }

    /// Takes back the pool members an earlier agent on this node left (`found`: the node's
    /// pool-labelled containers): running ones under a pool name join the pool, up to its size;
    /// the others under a pool name are removed. Holders under a task's name are left to the
    /// reconcile pass (they are that task's).
    pub async fn adopt<R: Runtime>(&self, rt: &R, found: Vec<ContainerState>) {
        for c in found.into_iter().filter(|c| is_pool_name(&c.name)) {
            let keep = {
                let mut s = self.lock();
                let keep = c.status == ContainerStatus::Running && s.free.len() < self.size();
                if keep && s.names.insert(c.name.clone()) {
                    let mac = c.labels.get(labels::HOLDER_MAC).cloned();
                    s.free.push(Holder { id: c.id.clone(), name: c.name.clone(), mac });
                }
                keep
            };
            if !keep {
                tracing::info!(holder = %c.name, "removing a pool holder left behind");
                let _ = rt.remove(&c.id).await;
            }
        }
    }

    /// Makes holders until the pool has its size: `spec(name)` is a member's specification,
    /// `node` the agent's node (part of each name, see [`pool_name`]). Stops at the first failure
    /// (the next refill tries again).
    pub async fn fill<R: Runtime>(&self, rt: &R, node: &str, spec: impl Fn(&str) -> ContainerSpec) {
        loop {
            let name = {
                let mut s = self.lock();
                // Names being made are in `names` but not yet in `free`.
                let making = s.names.len().saturating_sub(s.free.len());
                if s.free.len() + making >= self.size() {
                    return;
                }
                let mut n = s.next;
                while s.names.contains(&pool_name(node, n)) {
                    n += 1;
                }
                s.next = n + 1;
                let name = pool_name(node, n);
                s.names.insert(name.clone());
                name
            };
            let spec = spec(&name);
            let made = match rt.create(&spec).await {
                Ok(id) => match rt.start(&id).await {
                    Ok(()) => Ok(id),
                    Err(e) => {
                        let _ = rt.remove(&id).await;
                        Err(e)
                    }
                },
                Err(e) => Err(e),
            };
            let unwanted = {
                let mut s = self.lock();
                match made {
                    // The pool shrank (or was released) meanwhile: not kept.
                    Ok(id) if s.free.len() >= self.size() => {
                        s.names.remove(&name);
                        id
                    }
                    Ok(id) => {
                        s.free.push(Holder { id, name, mac: spec.mac_address.clone() });
                        continue;
                    }
                    Err(e) => {
                        s.names.remove(&name);
                        tracing::warn!(error = %e, "cannot make a ready namespace holder");
                        return;
                    }
                }
            };
            let _ = rt.remove(&unwanted).await;
            return;
        }
    }

    /// Keeps no holder ready any more, and removes the free ones (the agent stops for good).
    pub async fn release<R: Runtime>(&self, rt: &R) {
        self.size.store(0, Ordering::Relaxed);
        let free = {
            let mut s = self.lock();
            s.names.clear();
            std::mem::take(&mut s.free)
        };
        for h in free {
            let _ = rt.remove(&h.id).await;
        }
    }

    /// Waits until a refill (or a new size) is asked for.
    pub async fn wanted(&self) {
        self.refill.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_tell_pool_members_from_task_holders() {
        assert!(is_pool_name("ecs-internalecspause-pool-3"));
        assert_eq!(pool_name("fargate:0193abcdef0123456789", 3), "ecs-internalecspause-pool-ef0123456789-3");
        assert_ne!(pool_name("fargate:aaaa1", 0), pool_name("fargate:aaaa2", 0));
        assert!(is_pool_name(&pool_name("fargate:x", 0)));
        assert_eq!(task_of_holder_name(&pool_name("fargate:x", 0)), None);
        assert_eq!(task_of_holder_name("ecs-internalecspause-pool-3"), None);
        assert_eq!(task_of_holder_name("ecs-internalecspause-0193abc"), Some("0193abc"));
        assert_eq!(
            task_of_holder_name(&crate::spec::engine_name("arn:x:task/c/t1", "internalecspause")),
            Some("t1")
        );
        assert_eq!(task_of_holder_name("ecs-web-t1"), None);
        assert_eq!(task_of_holder_name("ecs-internalecspause-"), None);
    }
}
