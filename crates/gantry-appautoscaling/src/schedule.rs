//! Scheduled actions' expressions, pure but for reading a time zone's file: `at(...)` once,
//! `rate(N unit)` repeatedly and `cron(...)` (EventBridge's six fields, with the year), parsed
//! and stepped by `gantry_core::schedule`, with Application Auto Scaling's rules around them:
//! at() and cron() read wall-clock time in the action's `Timezone` (an IANA name, UTC when
//! absent), StartTime and EndTime bound every kind, and a rate counts from its StartTime, else
//! from one interval after the action was created. Times are epoch milliseconds.

pub use gantry_core::schedule::Schedule;
use gantry_core::schedule::{Tzif, to_utc};

/// AWS's message for an expression it cannot read.
pub fn invalid(expr: &str) -> String {
    format!("Schedule expression {expr} is invalid.")
}

/// Reads `at(...)`, `rate(...)` or `cron(...)`.
pub fn parse(expr: &str) -> Result<Schedule, String> {
    Schedule::parse(expr, true).map_err(|_| invalid(expr))
}

/// The time zone named `name` (an IANA name such as `America/New_York` or `Etc/GMT+5`; UTC when
/// absent), from the system's tz database; AWS's message for a name it does not know.
pub fn zone(name: Option<&str>) -> Result<Tzif, String> {
    match name {
        None => Ok(Tzif::from_transitions(0, Vec::new())),
        Some(n) => Tzif::named(n).ok_or_else(|| format!("Invalid timezone: {n}")),
    }
}

/// When a schedule fires next after `after_ms` (exclusive), within [start, end]; `None` when it
/// never will again. A rate fires first at StartTime, else one interval after the action was
/// created (`created_ms`), then every interval; at() and cron() read local time in `zone`.
pub fn next_after(
    s: &Schedule,
    after_ms: i64,
    created_ms: i64,
    start: Option<i64>,
    end: Option<i64>,
    zone: &Tzif,
) -> Option<i64> {
    let next = match s {
        Schedule::At(local) => {
            let t = to_utc(*local, zone);
            if t <= after_ms || start.is_some_and(|st| t < st) {
                return None;
            }
            t
        }
        Schedule::Rate(every) => {
            let first = start.unwrap_or(created_ms + every);
            if after_ms < first { first } else { first + ((after_ms - first) / every + 1) * every }
        }
        // Not before StartTime: the first firing at or after it.
        Schedule::Cron(c) => c.next_after(start.map_or(after_ms, |st| after_ms.max(st - 1)), zone)?,
    };
    match end {
        Some(e) if next > e => None,
        _ => Some(next),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_core::civil::days_from_civil;

    const H: i64 = 3_600_000;

    /// Epoch milliseconds of a UTC date and time.
    fn utc(y: i64, mo: u32, d: u32, h: i64, mi: i64) -> i64 {
        days_from_civil(y, mo, d) * 24 * H + h * H + mi * 60_000
    }

    fn utc_zone() -> Tzif {
        zone(None).unwrap()
    }

    #[test]
    fn expressions() {
        let at = parse("at(2026-12-04T15:00:00)").unwrap();
        assert_eq!(next_after(&at, 0, 0, None, None, &utc_zone()), Some(1_796_396_400_000));
        assert_eq!(parse("rate(5 minutes)"), Ok(Schedule::Rate(300_000)));
        assert_eq!(parse("rate(1 hour)"), Ok(Schedule::Rate(3_600_000)));
        assert!(matches!(parse("cron(0 9 ? * MON-FRI *)"), Ok(Schedule::Cron(_))));
        for bad in [
            "rate(1 days)",
            "rate(0 minutes)",
            "at(2026-02-30T00:00:00)",
            "cron(0 9 * * *)",
            "cron(0 9 * * * *)",
            "cron(0 25 ? * MON *)",
            "every day",
        ] {
            assert_eq!(parse(bad), Err(invalid(bad)), "{bad}");
        }
    }

    #[test]
    fn zones_come_from_the_tz_database() {
        // Etc/GMT+5 is five hours behind UTC (POSIX sign): 10:00 there is 15:00 UTC.
        let gmt5 = zone(Some("Etc/GMT+5")).unwrap();
        let at = parse("at(1970-01-01T10:00:00)").unwrap();
        assert_eq!(next_after(&at, 0, 0, None, None, &gmt5), Some(15 * H));
        for bad in ["Mars/Olympus", "../etc/passwd", "/etc/passwd", ""] {
            assert_eq!(zone(Some(bad)).err(), Some(format!("Invalid timezone: {bad}")));
        }
    }

    #[test]
    fn next_fire_times() {
        let z = utc_zone();
        let at = Schedule::At(60_000);
        assert_eq!(next_after(&at, 0, 0, None, None, &z), Some(60_000));
        assert_eq!(next_after(&at, 60_000, 0, None, None, &z), None);
        let rate = Schedule::Rate(60_000);
        assert_eq!(next_after(&rate, 0, 0, None, None, &z), Some(60_000));
        assert_eq!(next_after(&rate, 59_999, 0, None, None, &z), Some(60_000));
        assert_eq!(next_after(&rate, 60_000, 0, None, None, &z), Some(120_000));
        // A rate from its StartTime, and not beyond its EndTime.
        assert_eq!(next_after(&rate, 0, 30_000, Some(30_000), Some(100_000), &z), Some(30_000));
        assert_eq!(next_after(&rate, 30_000, 30_000, Some(30_000), Some(100_000), &z), Some(90_000));
        assert_eq!(next_after(&rate, 90_000, 30_000, Some(30_000), Some(100_000), &z), None);
    }

    #[test]
    fn cron_keeps_within_start_and_end() {
        let z = utc_zone();
        let daily = parse("cron(0 9 * * ? *)").unwrap();
        let t0 = utc(2026, 3, 2, 12, 0);
        assert_eq!(next_after(&daily, t0, t0, None, None, &z), Some(utc(2026, 3, 3, 9, 0)));
        // StartTime on the 5th at 09:00 exactly: that firing counts; one at 09:01 waits a day.
        let st = utc(2026, 3, 5, 9, 0);
        assert_eq!(next_after(&daily, t0, t0, Some(st), None, &z), Some(st));
        assert_eq!(next_after(&daily, t0, t0, Some(st + 60_000), None, &z), Some(utc(2026, 3, 6, 9, 0)));
        // EndTime before the next firing: never again.
        assert_eq!(next_after(&daily, t0, t0, None, Some(utc(2026, 3, 3, 8, 59)), &z), None);
        assert_eq!(
            next_after(&daily, t0, t0, None, Some(utc(2026, 3, 3, 9, 0)), &z),
            Some(utc(2026, 3, 3, 9, 0))
        );
    }

    #[test]
    fn cron_follows_a_daylight_saving_zone() {
        // New York: EST (UTC-5) until 2026-03-08 02:00 local, then EDT (UTC-4) until 2026-11-01.
        let ny = zone(Some("America/New_York")).unwrap();
        let c = parse("cron(30 8 ? * MON-FRI *)").unwrap();
        // Friday 2026-03-06 08:30 EST is 13:30 UTC; the Monday after the change, 12:30 UTC.
        let fri = next_after(&c, utc(2026, 3, 6, 0, 0), 0, None, None, &ny).unwrap();
        assert_eq!(fri, utc(2026, 3, 6, 13, 30));
        assert_eq!(next_after(&c, fri, 0, None, None, &ny), Some(utc(2026, 3, 9, 12, 30)));
        // 02:30 does not exist on 2026-03-08: a daily 02:30 fires as the gap ends (07:00 UTC).
        let c = parse("cron(30 2 * * ? *)").unwrap();
        assert_eq!(next_after(&c, utc(2026, 3, 7, 12, 0), 0, None, None, &ny), Some(utc(2026, 3, 8, 7, 0)));
        // 01:30 happens twice on 2026-11-01: once, at the first (05:30 UTC).
        let c = parse("cron(30 1 * * ? *)").unwrap();
        let first = next_after(&c, utc(2026, 10, 31, 12, 0), 0, None, None, &ny).unwrap();
        assert_eq!(first, utc(2026, 11, 1, 5, 30));
        assert_eq!(next_after(&c, first, 0, None, None, &ny), Some(utc(2026, 11, 2, 6, 30)));
        // at() reads local time too.
        let at = parse("at(2026-07-01T09:00:00)").unwrap();
        assert_eq!(next_after(&at, 0, 0, None, None, &ny), Some(utc(2026, 7, 1, 13, 0)));
    }
}
