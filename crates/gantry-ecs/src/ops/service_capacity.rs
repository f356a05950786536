//! A service's desiredCount as Application Auto Scaling reads and sets it
//! ([`gantry_ports::ServiceCapacity`]): UpdateService with only `desiredCount`, plus the
//! service event that says who changed it.

use super::service_record::service_not_found;
use super::services::{StoredEvent, sync_primary_count};
use crate::table::{Before, TxnExt};
use crate::{ControlPlane, Ctx};
use gantry_core::{EcsError, ErrorKind, Result, Scope, ServiceStatus, Timestamp};
use gantry_ports::lb::PortFuture;
use gantry_store::Txn;

/// Events a service keeps (as the scheduler keeps them).
const MAX_EVENTS: usize = 100;

impl ControlPlane {
    /// The desiredCount of an ACTIVE service.
    pub fn service_desired_count(&self, scope: &Scope, cluster: &str, service: &str) -> Result<i32> {
        let ctx = Ctx::root(scope.clone());
        let cluster = self.active_cluster(&ctx, Some(cluster))?;
        let cname = cluster.value.cluster_name.clone();
        let rec = self.load_service(&ctx, &cname, service)?.ok_or_else(service_not_found)?;
        if rec.value.service.status != ServiceStatus::Active {
            return Err(EcsError::new(ErrorKind::ServiceNotActiveException, "Service was not ACTIVE."));
        }
        Ok(rec.value.service.desired_count)
    }

    /// Sets an ACTIVE service's desiredCount and its PRIMARY deployment's, and records `event`,
    /// in one compare-and-swap write (the scheduler's next pass, woken by the watch, acts on it).
    pub async fn set_service_desired_count(
        &self,
        scope: &Scope,
        cluster: &str,
        service: &str,
        count: i32,
        event: &str,
    ) -> Result<()> {
        if count < 0 {
            return Err(EcsError::invalid(format!("desiredCount must be at least 0, but was {count}.")));
        }
        let ctx = Ctx::root(scope.clone());
        let cluster = self.active_cluster(&ctx, Some(cluster))?;
        let cname = cluster.value.cluster_name.clone();
        let now = self.clock.now().0;
        self.retry(|| {
            let mut rec = self.load_service(&ctx, &cname, service)?.ok_or_else(service_not_found)?;
            let before = Before::of(&ctx.scope, &rec);
            let s = &mut rec.value.service;
            if s.status != ServiceStatus::Active {
                return Err(EcsError::new(ErrorKind::ServiceNotActiveException, "Service was not ACTIVE."));
            }
            s.desired_count = count;
            sync_primary_count(s, Timestamp(now));
            let events = &mut s.events;
            events.insert(
                0,
                StoredEvent { id: self.ids.uuid(), created_at: Timestamp(now), message: event.to_string() },
            );
            events.truncate(MAX_EVENTS);
            let txn = self.sync_history(&ctx.scope, &cname, &mut rec.value, None, Txn::new())?;
            Ok((txn.put_record(&ctx.scope, &before, &rec.value), ()))
        })
        .await
    }
}

impl gantry_ports::ServiceCapacity for ControlPlane {
    fn desired_count(&self, scope: &Scope, cluster: &str, service: &str) -> std::result::Result<i32, String> {
        self.service_desired_count(scope, cluster, service).map_err(|e| e.message)
    }

    fn set_desired_count<'a>(
        &'a self,
        scope: &'a Scope,
        cluster: &'a str,
        service: &'a str,
        count: i32,
        event: &'a str,
    ) -> PortFuture<'a, std::result::Result<(), String>> {
        Box::pin(async move {
            self.set_service_desired_count(scope, cluster, service, count, event).await.map_err(|e| e.message)
        })
    }
}
