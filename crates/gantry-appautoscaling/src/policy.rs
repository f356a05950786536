//! The arithmetic of scaling policies, pure: which step adjustment an alarm breach selects,
//! the capacity an adjustment type gives, target tracking's proportional capacity, and the
//! cooldowns that hold a policy back. Times are epoch milliseconds passed in.

use serde::{Deserialize, Serialize};

/// A step adjustment with its open bounds as `None` (relative to the alarm threshold).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    pub adjustment: i32,
}

/// The step whose interval holds `breach` (the aggregated metric value minus the threshold):
/// the lower bound is inclusive and the upper exclusive when the breach is positive (a scale-out
/// above the threshold), the other way round below it, as Application Auto Scaling applies them.
pub fn select_step(steps: &[Step], breach: f64) -> Option<Step> {
    let within = |s: &Step, strict_upper: bool| {
        let lo = s.lower.unwrap_or(f64::NEG_INFINITY);
        let hi = s.upper.unwrap_or(f64::INFINITY);
        if breach > 0.0 || (breach == 0.0 && strict_upper) {
            lo <= breach && breach < hi
        } else {
            lo < breach && breach <= hi
        }
    };
    // A breach of exactly zero (an alarm set by SetAlarmState, with no datapoints) falls in the
    // step whose interval starts at 0, else in the one that ends there.
    steps
        .iter()
        .copied()
        .find(|s| within(s, true))
        .or_else(|| if breach == 0.0 { steps.iter().copied().find(|s| within(s, false)) } else { None })
}

/// How a step's ScalingAdjustment is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdjustmentType {
    ChangeInCapacity,
    ExactCapacity,
    PercentChangeInCapacity,
}

impl AdjustmentType {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ChangeInCapacity" => Some(Self::ChangeInCapacity),
            "ExactCapacity" => Some(Self::ExactCapacity),
            "PercentChangeInCapacity" => Some(Self::PercentChangeInCapacity),
            _ => None,
        }
    }
}

/// The capacity an adjustment gives from `current`, before the target's bounds. A percentage is
/// rounded toward zero (values between 0 and 1 become 1, between -1 and 0 become -1, as the
/// documentation says), and MinAdjustmentMagnitude is the least a percentage moves.
pub fn adjusted(current: i32, kind: AdjustmentType, adjustment: i32, min_magnitude: Option<i32>) -> i32 {
    match kind {
        AdjustmentType::ChangeInCapacity => current.saturating_add(adjustment),
        AdjustmentType::ExactCapacity => adjustment,
        AdjustmentType::PercentChangeInCapacity => {
            let raw = current as f64 * adjustment as f64 / 100.0;
            let mut delta = if raw > 0.0 && raw < 1.0 {
                1
            } else if raw < 0.0 && raw > -1.0 {
                -1
            } else {
                raw.trunc() as i32
            };
            if let Some(m) = min_magnitude
                && delta != 0
                && delta.abs() < m
            {
                delta = m * delta.signum();
            }
            current.saturating_add(delta)
        }
    }
}

/// Target tracking's capacity: proportional to how far the metric is from the target,
/// `current × value ÷ target`, rounded up, so a scale-out adds at least one task and a scale-in
/// never goes so low that the projected value would exceed the target (the cautious direction).
/// From zero tasks, a breach of the target starts one.
pub fn tracking_capacity(current: i32, value: f64, target: f64) -> i32 {
    if target <= 0.0 || !value.is_finite() {
        return current;
    }
    if current == 0 {
        return if value > target { 1 } else { 0 };
    }
    let want = (current as f64 * value / target).ceil();
    want.clamp(0.0, i32::MAX as f64) as i32
}

/// What a policy remembers of its last scaling activities, for its cooldowns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cooldowns {
    /// The scale-out cooldown runs until then (0: none).
    #[serde(default)]
    pub out_until_ms: i64,
    /// The scale-in cooldown runs until then (0: none).
    #[serde(default)]
    pub in_until_ms: i64,
    /// The capacity before the scale-out that started the scale-out cooldown.
    #[serde(default)]
    pub out_base: i32,
}

/// The capacity a policy sets, given the capacity it computed and its cooldowns; `None` holds.
/// During a scale-out cooldown a scale-out happens only if it is larger than the one that
/// started the cooldown (the capacity it added counts); during a scale-in cooldown there is no
/// scale-in, while a scale-out still happens (and ends that cooldown).
pub fn gate(current: i32, wanted: i32, now_ms: i64, c: &Cooldowns) -> Option<i32> {
    if wanted > current {
        Some(wanted)
    } else if wanted < current {
        if now_ms < c.in_until_ms || now_ms < c.out_until_ms { None } else { Some(wanted) }
    } else {
        None
    }
}

/// The cooldowns after a policy moved capacity from `from` to `to`.
pub fn after(c: &Cooldowns, from: i32, to: i32, now_ms: i64, out_s: i64, in_s: i64) -> Cooldowns {
    let mut c = *c;
    if to > from {
        // A further scale-out within the cooldown keeps the capacity the cooldown started from.
        if now_ms >= c.out_until_ms {
            c.out_base = from;
        }
        c.out_until_ms = now_ms + out_s * 1000;
        c.in_until_ms = 0;
    } else if to < from {
        c.in_until_ms = now_ms + in_s * 1000;
    }
    c
}

/// The capacity within the target's bounds.
pub fn bounded(capacity: i32, min: i32, max: i32) -> i32 {
    capacity.clamp(min, max.max(min))
}

/// Aggregates an alarm's datapoints as MetricAggregationType says (newest first; none: `None`).
pub fn aggregate(points: &[f64], kind: &str) -> Option<f64> {
    if points.is_empty() {
        return None;
    }
    Some(match kind {
        "Minimum" => points.iter().copied().fold(f64::INFINITY, f64::min),
        "Maximum" => points.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        _ => points.iter().sum::<f64>() / points.len() as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(lower: Option<f64>, upper: Option<f64>, adjustment: i32) -> Step {
        Step { lower, upper, adjustment }
    }

    #[test]
    fn steps_are_chosen_by_the_breach_with_aws_bounds() {
        let steps =
            [step(Some(0.0), Some(10.0), 1), step(Some(10.0), Some(20.0), 2), step(Some(20.0), None, 3)];
        assert_eq!(select_step(&steps, 0.0).map(|s| s.adjustment), Some(1));
        assert_eq!(select_step(&steps, 9.99).map(|s| s.adjustment), Some(1));
        assert_eq!(select_step(&steps, 10.0).map(|s| s.adjustment), Some(2));
        assert_eq!(select_step(&steps, 25.0).map(|s| s.adjustment), Some(3));
        assert_eq!(select_step(&steps, -1.0), None);
        let down = [step(None, Some(-10.0), -2), step(Some(-10.0), Some(0.0), -1)];
        assert_eq!(select_step(&down, -10.0).map(|s| s.adjustment), Some(-2));
        assert_eq!(select_step(&down, -5.0).map(|s| s.adjustment), Some(-1));
        assert_eq!(select_step(&down, 0.0).map(|s| s.adjustment), Some(-1));
    }

    #[test]
    fn adjustment_types() {
        use AdjustmentType::*;
        assert_eq!(adjusted(3, ChangeInCapacity, 2, None), 5);
        assert_eq!(adjusted(3, ChangeInCapacity, -5, None), -2);
        assert_eq!(adjusted(3, ExactCapacity, 7, None), 7);
        // 10 % of 3 is 0.3: one task.
        assert_eq!(adjusted(3, PercentChangeInCapacity, 10, None), 4);
        assert_eq!(adjusted(3, PercentChangeInCapacity, -10, None), 2);
        // 50 % of 5 is 2.5: 2, or the minimum magnitude 3.
        assert_eq!(adjusted(5, PercentChangeInCapacity, 50, None), 7);
        assert_eq!(adjusted(5, PercentChangeInCapacity, 50, Some(3)), 8);
        assert_eq!(adjusted(0, PercentChangeInCapacity, 50, Some(2)), 0);
    }

    #[test]
    fn tracking_is_proportional_and_cautious() {
        assert_eq!(tracking_capacity(1, 100.0, 50.0), 2);
        assert_eq!(tracking_capacity(2, 80.0, 50.0), 4);
        assert_eq!(tracking_capacity(3, 51.0, 50.0), 4);
        // Scale-in rounds up: 4 tasks at 20 % of a 50 % target need 1.6 tasks: 2.
        assert_eq!(tracking_capacity(4, 20.0, 50.0), 2);
        assert_eq!(tracking_capacity(4, 0.0, 50.0), 0);
        assert_eq!(tracking_capacity(0, 60.0, 50.0), 1);
        assert_eq!(tracking_capacity(0, 10.0, 50.0), 0);
    }

    #[test]
    fn cooldowns_hold_scale_in_but_not_a_larger_scale_out() {
        let c = after(&Cooldowns::default(), 1, 2, 0, 60, 300);
        assert_eq!((c.out_until_ms, c.out_base), (60_000, 1));
        // Within the scale-out cooldown: no scale-in, a larger scale-out goes.
        assert_eq!(gate(2, 1, 30_000, &c), None);
        assert_eq!(gate(2, 3, 30_000, &c), Some(3));
        assert_eq!(gate(2, 2, 30_000, &c), None);
        let c = after(&c, 3, 2, 70_000, 60, 300);
        assert_eq!(c.in_until_ms, 370_000);
        assert_eq!(gate(2, 1, 300_000, &c), None);
        assert_eq!(gate(2, 1, 370_000, &c), Some(1));
        // A scale-out during the scale-in cooldown goes, and ends it.
        assert_eq!(gate(2, 4, 300_000, &c), Some(4));
        let c = after(&c, 2, 4, 300_000, 60, 300);
        assert_eq!(c.in_until_ms, 0);
    }

    #[test]
    fn aggregation() {
        assert_eq!(aggregate(&[1.0, 3.0], "Average"), Some(2.0));
        assert_eq!(aggregate(&[1.0, 3.0], "Maximum"), Some(3.0));
        assert_eq!(aggregate(&[1.0, 3.0], "Minimum"), Some(1.0));
        assert_eq!(aggregate(&[], "Average"), None);
        assert_eq!(bounded(7, 1, 4), 4);
        assert_eq!(bounded(0, 1, 4), 1);
    }
}
