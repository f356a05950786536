//! A listener's compiled configuration: rules in priority order with their target groups
//! resolved, TLS ready, counters attached. `apply` builds a new one and swaps it in; a request
//! reads the one current when it arrives.

use crate::config::{Condition, FixedResponse, Protocol, Redirect};
use crate::group::Group;
use crate::metrics::{Counters, LbCounters};
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// What a listener serves.
#[derive(Debug)]
pub(crate) struct Table {
    pub protocol: Protocol,
    pub port: u16,
    /// By priority; the default rule last, without conditions.
    pub rules: Vec<CompiledRule>,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub idle_timeout: Duration,
    pub xff: crate::config::XffMode,
    pub counters: Arc<LbCounters>,
}

#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub conditions: Vec<Condition>,
    pub action: Act,
}

#[derive(Debug)]
pub(crate) enum Act {
    Forward(Arc<ForwardPlan>),
    Redirect(Redirect),
    Fixed(FixedResponse),
}

/// A forward action: its target groups with their weights.
#[derive(Debug)]
pub(crate) struct ForwardPlan {
    pub groups: Vec<Weighted>,
    total: u64,
    /// Target-group stickiness.
    pub stickiness: Option<Duration>,
    turn: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct Weighted {
    pub group: Arc<Group>,
    pub weight: u32,
    pub counters: Arc<Counters>,
}

/// Larger than any total weight (5 groups of at most 999), and prime: multiplying the turn by
/// it visits a cycle's slots in a scattered order, so groups interleave.
const SCATTER: u64 = 7919;

impl ForwardPlan {
    pub fn new(groups: Vec<Weighted>, stickiness: Option<Duration>) -> Self {
        let total = groups.iter().map(|w| u64::from(w.weight)).sum();
        ForwardPlan { groups, total, stickiness, turn: AtomicU64::new(0) }
    }

    /// The index of the group for the next request: each group gets exactly its share of
    /// every `total` requests. `None` when every weight is 0.
    pub fn choose(&self) -> Option<usize> {
        if self.groups.len() == 1 {
            return Some(0);
        }
        if self.total == 0 {
            return None;
        }
        let turn = self.turn.fetch_add(1, Relaxed);
        let mut slot = (turn % self.total) * SCATTER % self.total;
        for (i, w) in self.groups.iter().enumerate() {
            if slot < u64::from(w.weight) {
                return Some(i);
            }
            slot -= u64::from(w.weight);
        }
        None
    }

    /// The group whose `AWSALBTG` key the client presented, if it still takes traffic.
    pub fn sticky(&self, key: u64) -> Option<usize> {
        self.groups.iter().position(|w| w.group.key == key && w.weight > 0)
    }
}

/// A bound listener's current table.
#[derive(Debug)]
pub(crate) struct Slot {
    pub table: ArcSwap<Table>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TargetGroup;
    use gantry_core::{FixedClock, Timestamp};

    fn plan(weights: &[u32]) -> ForwardPlan {
        let clock = Arc::new(FixedClock::new(Timestamp(0)));
        let groups = weights
            .iter()
            .enumerate()
            .map(|(i, w)| Weighted {
                group: Arc::new(Group::new(
                    &TargetGroup::new(&format!("tg{i}"), Protocol::Http),
                    clock.clone(),
                )),
                weight: *w,
                counters: Arc::new(Counters::default()),
            })
            .collect();
        ForwardPlan::new(groups, None)
    }

    #[test]
    fn weights_are_exact_per_cycle_and_interleaved() {
        let p = plan(&[1, 9]);
        let picks: Vec<usize> = (0..10).map(|_| p.choose().unwrap()).collect();
        assert_eq!(picks.iter().filter(|i| **i == 0).count(), 1);
        let p = plan(&[30, 70]);
        let picks: Vec<usize> = (0..1000).map(|_| p.choose().unwrap()).collect();
        assert_eq!(picks.iter().filter(|i| **i == 0).count(), 300);
        // Not 30 in a row then 70 in a row.
        assert!(picks[..10].contains(&0) && picks[..10].contains(&1), "{:?}", &picks[..10]);
        assert_eq!(plan(&[0, 0]).choose(), None);
        let p = plan(&[0, 5]);
        assert!((0..10).all(|_| p.choose() == Some(1)));
    }
}
