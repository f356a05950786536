//! The activator: the controller that takes a load balancer from `provisioning` to `active`.
//!
//! CreateLoadBalancer answers `provisioning`, as ELB does, and the record carries an index row
//! under `/_elasticloadbalancing/provisioning/` while it is. This controller watches those rows
//! and makes each load balancer `active` (the record layer drops the row in the same write).
//! Gantry provisions nothing outside its store, so nothing else is waited for: the data plane
//! binds listeners from the configuration whatever the state says.

use crate::keys;
use crate::records::{LbRecord, unreadable};
use gantry_core::ServiceError;
use gantry_ports::lb::LbState;
use gantry_runtime::records::{Before, TxnExt, load};
use gantry_runtime::{Action, Controller, Leadership, Metrics, Reconciler, Shutdown};
use gantry_store::{EventKind, Store, Txn};
use std::sync::Arc;

/// The reconciler: one pass per provisioning row.
pub struct Activator {
    store: Arc<dyn Store>,
}

impl Activator {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Activator { store }
    }

    /// Runs the controller until `shutdown`, while `leader` says this process leads.
    pub async fn run(self, metrics: Arc<Metrics>, leader: Arc<dyn Leadership>, shutdown: Shutdown) {
        let controller = Controller::<String>::new("elbv2-activator", metrics)
            .resync(std::time::Duration::from_secs(60))
            .watches(self.store.clone(), keys::provisioning_prefix(), |e| match e.kind {
                EventKind::Put => vec![e.kv.key.clone()],
                EventKind::Delete => Vec::new(),
            });
        controller.run(self, leader, shutdown).await
    }

    /// One pass over a provisioning row: `Ok(true)` if it made a load balancer active.
    pub async fn activate(&self, row: &str) -> Result<bool, ServiceError> {
        for _ in 0..crate::ATTEMPTS {
            let Some(kv) = self.store.get(row) else { return Ok(false) };
            let lb_key = String::from_utf8_lossy(&kv.value).into_owned();
            let Some(scope) = keys::scope_of(&lb_key) else { return Ok(false) };
            let Some(mut lb) = load::<LbRecord>(self.store.as_ref(), &lb_key).map_err(unreadable)? else {
                // The row outlived its record (it never should): drop it.
                let txn = Txn::new().when(row, kv.mod_revision).delete(row);
                self.store
                    .txn(txn)
                    .await
                    .map_err(|e| ServiceError::receiver("InternalFailure", e.to_string()))?;
                return Ok(false);
            };
            if lb.value.state() != Some(LbState::Provisioning) {
                return Ok(false);
            }
            let before = Before::of(&scope, &lb);
            lb.value.set_state(LbState::Active);
            let txn = Txn::new().put_record(&scope, &before, &lb.value);
            let r = self
                .store
                .txn(txn)
                .await
                .map_err(|e| ServiceError::receiver("InternalFailure", e.to_string()))?;
            if r.succeeded {
                tracing::debug!(load_balancer = lb.value.arn(), "load balancer active");
                return Ok(true);
            }
        }
        Err(ServiceError::receiver("InternalFailure", format!("{row} kept conflicting")))
    }
}

impl Reconciler<String> for Activator {
    type Error = ServiceError;

    async fn reconcile(&self, key: &String) -> Result<Action, Self::Error> {
        self.activate(key).await.map(|_| Action::AwaitChange)
    }

    fn list(&self) -> Vec<String> {
        self.store
            .range(&keys::provisioning_prefix(), None, usize::MAX)
            .into_iter()
            .map(|kv| kv.key)
            .collect()
    }
}
