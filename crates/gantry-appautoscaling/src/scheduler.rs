//! The scheduled actions' controller: one key per scalable target with scheduled actions (its
//! row under [`crate::SCHEDULED_PREFIX`]); a pass fires every action of the target that is due
//! at the injected clock's time, in the order they fall due, and asks to run again when the next
//! one is. Leader-only, like every controller (`gantry_runtime::Leadership`).
//!
//! Firing an action sets the target's MinCapacity and/or MaxCapacity, advances the action to
//! its next time (an `at()` action then never fires again), records the activity, and brings the
//! desired count within the new bounds through ECS, as Application Auto Scaling does. A
//! suspended target (`ScheduledScalingSuspended`) passes its due actions by.

use crate::{AppAutoScaling, Change, SCHEDULED_PREFIX, ScheduledRecord, TargetRecord, policy, schedule};
use gantry_core::{Scope, ServiceError};
use gantry_runtime::{Action, Controller, Reconciler, Shutdown};
use gantry_runtime::{Leadership, Metrics};
use std::sync::Arc;
use std::time::Duration;

/// The longest a pass waits before looking again.
const MAX_WAIT_MS: i64 = 60_000;

/// `(scope, resource ID)` of a scheduler key.
fn parse_key(key: &str) -> Option<(Scope, String)> {
    let rest = key.strip_prefix(SCHEDULED_PREFIX)?;
    let (account, rest) = rest.split_once('/')?;
    let (region, resource) = rest.split_once('/')?;
    Some((Scope::new(account.to_string(), region.to_string()), resource.to_string()))
}

/// What a scheduled action does when it fires: the bounds it sets and the activity's texts.
fn bounds_change(t: &TargetRecord, s: &ScheduledRecord) -> (i32, i32, String) {
    let (min, max) = (s.min.unwrap_or(t.min), s.max.unwrap_or(t.max));
    let description = match (s.min, s.max) {
        (Some(a), Some(b)) => format!("Setting min capacity to {a} and max capacity to {b}"),
        (Some(a), None) => format!("Setting min capacity to {a}"),
        (None, Some(b)) => format!("Setting max capacity to {b}"),
        (None, None) => "Scheduled action with no capacity change".to_string(),
    };
    (min, max, description)
}

impl AppAutoScaling {
    /// Fires the due scheduled actions of one target; the time the next one falls due.
    pub async fn fire_due(&self, scope: &Scope, resource_id: &str) -> Result<Option<i64>, ServiceError> {
        let now = self.now_ms();
        let fired = self
            .update(scope, resource_id, |t| {
                let mut fired = Vec::new();
                let suspended = t.suspended.scheduled_scaling_suspended;
                let mut due: Vec<usize> = (0..t.scheduled.len())
                    .filter(|&i| t.scheduled[i].next_ms.is_some_and(|n| n <= now))
                    .collect();
                due.sort_by_key(|&i| t.scheduled[i].next_ms);
                for i in due {
                    let s = t.scheduled[i].clone();
                    if !suspended {
                        let (min, max, description) = bounds_change(t, &s);
                        t.min = min;
                        t.max = max.max(min);
                        fired.push((s.name.clone(), description, s.next_ms.unwrap_or(now)));
                    }
                    // Both were checked when the action was put; a zone file gone since reads
                    // as UTC rather than stopping the action.
                    let zone = schedule::zone(s.timezone.as_deref()).or_else(|_| schedule::zone(None));
                    let next = schedule::parse(&s.schedule).ok().zip(zone.ok()).and_then(|(p, zone)| {
                        let ms = |v: Option<f64>| v.map(|x| (x * 1000.0) as i64);
                        schedule::next_after(
                            &p,
                            now,
                            (s.created * 1000.0) as i64,
                            ms(s.start),
                            ms(s.end),
                            &zone,
                        )
                    });
                    t.scheduled[i].next_ms = next;
                }
                for (name, description, at) in &fired {
                    t.activities.insert(
                        0,
                        gantry_model::appautoscaling::ScalingActivity {
                            activity_id: self.ids.uuid(),
                            service_namespace: crate::NAMESPACE.into(),
                            resource_id: t.resource_id.clone(),
                            scalable_dimension: crate::DIMENSION.into(),
                            description: description.clone(),
                            cause: format!("scheduled action name {name} was triggered"),
                            start_time: *at as f64 / 1000.0,
                            end_time: Some(now as f64 / 1000.0),
                            status_code: "Successful".into(),
                            status_message: Some(format!("Successfully {}.", lowercase_first(description))),
                            details: None,
                            not_scaled_reasons: None,
                        },
                    );
                }
                t.activities.truncate(crate::MAX_ACTIVITIES);
                let next = t.scheduled.iter().filter_map(|s| s.next_ms).min();
                Ok((fired, next, t.min, t.max))
            })
            .await?;
        let (fired, next, min, max) = fired;
        if let Some((name, _, _)) = fired.last() {
            let (cluster, service) = crate::service_of(resource_id).unwrap_or(("", ""));
            if let Ok(current) = self.capacity.desired_count(scope, cluster, service) {
                let to = policy::bounded(current, min, max);
                if to != current {
                    let cause = format!("scheduled action name {name} was triggered");
                    self.apply(scope, resource_id, current, Change { to, cause }, None).await;
                }
            }
        }
        Ok(next)
    }

    /// Runs the scheduled actions' controller until shutdown, while this process leads.
    pub async fn run_scheduler(
        self: Arc<Self>,
        metrics: Arc<Metrics>,
        leader: Arc<dyn Leadership>,
        stop: Shutdown,
    ) {
        let store = self.store.clone();
        Controller::new("appautoscaling-scheduler", metrics)
            .workers(1)
            .resync(Duration::from_secs(30))
            .watches(store, "/", |e| {
                let k = &e.kv.key;
                if e.kind != gantry_store::EventKind::Put {
                    return vec![];
                }
                if k.starts_with(SCHEDULED_PREFIX) {
                    return vec![k.clone()];
                }
                // A target record's change (a new or changed action): its scheduler key.
                let mut parts = k.splitn(5, '/');
                let (_, account, region, svc, rest) =
                    (parts.next(), parts.next(), parts.next(), parts.next(), parts.next());
                match (account, region, svc, rest.and_then(|r| r.strip_prefix("target/"))) {
                    (Some(a), Some(r), Some("application-autoscaling"), Some(res)) => {
                        vec![format!("{SCHEDULED_PREFIX}{a}/{r}/{res}")]
                    }
                    _ => vec![],
                }
            })
            .run(Pass(self), leader, stop)
            .await
    }
}

fn lowercase_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

struct Pass(Arc<AppAutoScaling>);

impl Reconciler<String> for Pass {
    type Error = String;

    async fn reconcile(&self, key: &String) -> Result<Action, String> {
        let Some((scope, resource)) = parse_key(key) else { return Ok(Action::AwaitChange) };
        if self.0.store.get(key).is_none() {
            return Ok(Action::AwaitChange);
        }
        match self.0.fire_due(&scope, &resource).await {
            Ok(Some(next)) => {
                let wait = (next - self.0.now_ms()).clamp(0, MAX_WAIT_MS);
                Ok(Action::Requeue(Duration::from_millis(wait as u64)))
            }
            Ok(None) => Ok(Action::AwaitChange),
            Err(e) if e.code == "ObjectNotFoundException" => Ok(Action::AwaitChange),
            Err(e) => Err(e.message),
        }
    }

    fn list(&self) -> Vec<String> {
        self.0.store.range(SCHEDULED_PREFIX, None, usize::MAX).into_iter().map(|kv| kv.key).collect()
    }
}
