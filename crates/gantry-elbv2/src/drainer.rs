//! The drainer: the controller that ends a deregistered target's draining.
//!
//! DeregisterTargets marks a target `draining` with a deadline (now plus the group's
//! deregistration delay, by the injected clock), and the record carries an index row under
//! `/_elasticloadbalancing/draining/` while it does. This controller takes each such row, and
//! removes the target (record and row, in one compare-and-swap write) once the clock has passed
//! its deadline or the data plane says it has nothing in flight
//! (`TargetHealthSource::drained`). Until then it looks again at the deadline, and at least every
//! [`POLL`] for the data plane's word. So the data plane's configuration drops the target when
//! its draining ends, and DescribeTargetHealth stops listing it.

use crate::keys;
use crate::records::{TargetRecord, TgRecord, unreadable};
use crate::target_groups::drained;
use gantry_core::{Clock, ServiceError};
use gantry_ports::lb::TargetHealthSource;
use gantry_runtime::records::{Before, TxnExt, load};
use gantry_runtime::{Action, Controller, Leadership, Metrics, Reconciler, Shutdown};
use gantry_store::{EventKind, Store, Txn};
use std::sync::Arc;
use std::time::Duration;

/// How often a draining target is looked at again for the data plane's word.
pub const POLL: Duration = Duration::from_secs(1);

/// The reconciler: one pass per draining row.
pub struct Drainer {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    health: Arc<dyn TargetHealthSource>,
}

impl Drainer {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, health: Arc<dyn TargetHealthSource>) -> Self {
        Drainer { store, clock, health }
    }

    /// Runs the controller until `shutdown`, while `leader` says this process leads.
    pub async fn run(self, metrics: Arc<Metrics>, leader: Arc<dyn Leadership>, shutdown: Shutdown) {
        let controller = Controller::<String>::new("elbv2-drainer", metrics)
            .resync(Duration::from_secs(60))
            .watches(self.store.clone(), keys::draining_prefix(), |e| match e.kind {
                EventKind::Put => vec![e.kv.key.clone()],
                EventKind::Delete => Vec::new(),
            });
        controller.run(self, leader, shutdown).await
    }

    /// One pass over a draining row: the target removed (`None`), or how long until it is due
    /// to be looked at again.
    pub async fn drain(&self, row: &str) -> Result<Option<Duration>, ServiceError> {
        for _ in 0..crate::ATTEMPTS {
            let Some(kv) = self.store.get(row) else { return Ok(None) };
            let key = String::from_utf8_lossy(&kv.value).into_owned();
            let Some(scope) = keys::scope_of(&key) else { return Ok(None) };
            let Some(target) = load::<TargetRecord>(self.store.as_ref(), &key).map_err(unreadable)? else {
                return Ok(None);
            };
            let Some(draining) = target.value.draining else { return Ok(None) };
            let tg = load::<TgRecord>(self.store.as_ref(), &keys::tg(&scope, &target.value.tg_name))
                .map_err(unreadable)?;
            let tg_arn = tg.as_ref().map(|t| t.value.arn().to_string()).unwrap_or_default();
            let now = self.clock.now().0;
            if !drained(self.health.as_ref(), &tg_arn, &target.value, now) {
                let left = Duration::from_millis((draining.deadline_ms - now).max(0) as u64);
                return Ok(Some(left.min(POLL)));
            }
            let r = self
                .store
                .txn(Txn::new().delete_record(&Before::of(&scope, &target)))
                .await
                .map_err(|e| ServiceError::receiver("InternalFailure", e.to_string()))?;
            if r.succeeded {
                tracing::debug!(target = %key, "draining ended");
                return Ok(None);
            }
        }
        Err(ServiceError::receiver("InternalFailure", format!("{row} kept conflicting")))
    }
}

impl Reconciler<String> for Drainer {
    type Error = ServiceError;

    async fn reconcile(&self, key: &String) -> Result<Action, Self::Error> {
        Ok(match self.drain(key).await? {
            Some(after) => Action::Requeue(after),
            None => Action::AwaitChange,
        })
    }

    fn list(&self) -> Vec<String> {
        self.store.range(&keys::draining_prefix(), None, usize::MAX).into_iter().map(|kv| kv.key).collect()
    }
}
