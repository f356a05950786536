//! Schedule expressions, pure: EventBridge's `rate(...)` and `cron(...)` (six fields, with the
//! year; `?`, `L`, `W` and `#`), and EventBridge Scheduler's `at(...)`, and when each fires
//! next. Cron is read in a time zone ([`Zone`]: UTC for EventBridge rules, the schedule's
//! `ScheduleExpressionTimezone` for Scheduler): a local time that a daylight-saving change
//! skips fires at the first instant after the gap, and one that it repeats fires once, at its
//! first occurrence.

use crate::civil::{civil_from_days, days_from_civil, days_in_month};

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;

/// A parsed schedule expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// `rate(N unit)`: every this many milliseconds.
    Rate(i64),
    Cron(Box<Cron>),
    /// `at(yyyy-mm-ddThh:mm:ss)`: once, at this local time (milliseconds of the local epoch).
    At(i64),
}

/// Why an expression was refused (the caller words the error as its service does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

/// A time zone: how a local time maps to UTC and back.
pub trait Zone {
    /// The offset from UTC, in milliseconds, at the UTC instant `utc_ms`.
    fn offset_at(&self, utc_ms: i64) -> i64;
}

/// Coordinated Universal Time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Utc;

impl Zone for Utc {
    fn offset_at(&self, _: i64) -> i64 {
        0
    }
}

/// A time zone read from a TZif file (`/usr/share/zoneinfo/NAME`): its UTC offsets and the
/// instants they change at. Past the last transition the last offset holds (the system's files
/// list transitions up to 2037).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tzif {
    /// `(UTC second, offset in seconds from then on)`, in order.
    transitions: Vec<(i64, i64)>,
    /// The offset before the first transition.
    initial: i64,
}

impl Tzif {
    /// The zone named `name` (an IANA name such as `Europe/Berlin`; `UTC` and `Etc/UTC` need no
    /// file) from the system's tz database, `/usr/share/zoneinfo`. `None` for a name the
    /// database does not hold, and for anything but a plain name (never a path out of it).
    pub fn named(name: &str) -> Option<Tzif> {
        if name == "UTC" || name == "Etc/UTC" {
            return Some(Tzif::from_transitions(0, Vec::new()));
        }
        if name.is_empty()
            || name.contains("..")
            || name.starts_with('/')
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || "/_-+".contains(c))
        {
            return None;
        }
        let bytes = std::fs::read(std::path::Path::new("/usr/share/zoneinfo").join(name)).ok()?;
        Tzif::parse(&bytes)
    }

    /// Parses a TZif file (version 1, or the 64-bit data of versions 2 and later).
    pub fn parse(b: &[u8]) -> Option<Tzif> {
        fn be(b: &[u8], at: usize, n: usize) -> Option<i64> {
            let s = b.get(at..at + n)?;
            Some(match n {
                4 => i64::from(i32::from_be_bytes(s.try_into().ok()?)),
                _ => i64::from_be_bytes(s.try_into().ok()?),
            })
        }
        // (isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt) of a header at `at`.
        let header = |at: usize| -> Option<[usize; 6]> {
            if b.get(at..at + 4)? != b"TZif" {
                return None;
            }
            let mut c = [0usize; 6];
            for (i, x) in c.iter_mut().enumerate() {
                *x = usize::try_from(be(b, at + 20 + 4 * i, 4)?).ok()?;
            }
            Some(c)
        };
        let c = header(0)?;
        let v1_len = c[3] * 5 + c[4] * 6 + c[5] + c[2] * 8 + c[1] + c[0];
        let (at, c, tsize) = if *b.get(4)? >= b'2' {
            let at = 44 + v1_len;
            (at + 44, header(at)?, 8)
        } else {
            (44, c, 4)
        };
        let (timecnt, typecnt) = (c[3], c[4]);
        let times = at;
        let idx = times + timecnt * tsize;
        let types = idx + timecnt;
        let offset_of = |t: usize| -> Option<i64> { be(b, types + t * 6, 4) };
        if typecnt == 0 {
            return None;
        }
        let mut transitions = Vec::with_capacity(timecnt);
        for i in 0..timecnt {
            let t = be(b, times + i * tsize, tsize)?;
            let ty = usize::from(*b.get(idx + i)?);
            if ty >= typecnt {
                return None;
            }
            transitions.push((t, offset_of(ty)?));
        }
        Some(Tzif { transitions, initial: offset_of(0)? })
    }

    /// A zone with these transitions (for tests and fixed offsets).
    pub fn from_transitions(initial_s: i64, transitions: Vec<(i64, i64)>) -> Tzif {
        Tzif { transitions, initial: initial_s }
    }
}

impl Zone for Tzif {
    fn offset_at(&self, utc_ms: i64) -> i64 {
        let s = utc_ms.div_euclid(1000);
        let i = self.transitions.partition_point(|(t, _)| *t <= s);
        1000 * if i == 0 { self.initial } else { self.transitions[i - 1].1 }
    }
}

impl Schedule {
    /// Parses `rate(...)`, `cron(...)` or (when `at_allowed`) `at(...)`.
    pub fn parse(expr: &str, at_allowed: bool) -> Result<Schedule, Invalid> {
        let bad = || Invalid(format!("The schedule expression '{expr}' is not valid."));
        let (kind, rest) = expr.split_once('(').ok_or_else(bad)?;
        let body = rest.strip_suffix(')').ok_or_else(bad)?;
        match kind {
            "rate" => {
                let mut it = body.split_whitespace();
                let (n, unit) = (it.next().ok_or_else(bad)?, it.next().ok_or_else(bad)?);
                if it.next().is_some() {
                    return Err(bad());
                }
                let n: i64 = n.parse().map_err(|_| bad())?;
                if n <= 0 {
                    return Err(bad());
                }
                // AWS is strict about the unit's number: rate(1 minute), rate(5 minutes).
                let per = match (unit, n == 1) {
                    ("minute", true) | ("minutes", false) => MINUTE_MS,
                    ("hour", true) | ("hours", false) => 60 * MINUTE_MS,
                    ("day", true) | ("days", false) => DAY_MS,
                    _ => return Err(bad()),
                };
                n.checked_mul(per).map(Schedule::Rate).ok_or_else(bad)
            }
            "cron" => Cron::parse(body).map(|c| Schedule::Cron(Box::new(c))).map_err(|_| bad()),
            "at" if at_allowed => parse_local(body).map(Schedule::At).ok_or_else(bad),
            _ => Err(bad()),
        }
    }

    /// The first time strictly after `after_ms` (UTC) that the schedule fires, for a rate
    /// schedule counted from `anchor_ms`; `None` when it never fires again.
    pub fn next_after(&self, after_ms: i64, anchor_ms: i64, zone: &dyn Zone) -> Option<i64> {
        match self {
            Schedule::Rate(every) => {
                if after_ms < anchor_ms {
                    return Some(anchor_ms);
                }
                let n = (after_ms - anchor_ms) / every + 1;
                Some(anchor_ms + n * every)
            }
            Schedule::At(local) => {
                let utc = to_utc(*local, zone);
                (utc > after_ms).then_some(utc)
            }
            Schedule::Cron(c) => c.next_after(after_ms, zone),
        }
    }
}

/// `yyyy-mm-ddThh:mm:ss` as milliseconds of the local epoch.
fn parse_local(s: &str) -> Option<i64> {
    let (date, time) = s.split_once('T')?;
    let d: Vec<&str> = date.split('-').collect();
    let t: Vec<&str> = time.split(':').collect();
    if d.len() != 3 || t.len() != 3 || d[0].len() != 4 || d.iter().skip(1).chain(&t).any(|p| p.len() != 2) {
        return None;
    }
    let num =
        |p: &str| -> Option<i64> { p.bytes().all(|b| b.is_ascii_digit()).then(|| p.parse().ok()).flatten() };
    let (y, mo, da) = (num(d[0])?, num(d[1])? as u32, num(d[2])? as u32);
    let (h, mi, se) = (num(t[0])?, num(t[1])?, num(t[2])?);
    if !(1..=12).contains(&mo) || da < 1 || da > days_in_month(y, mo) || h > 23 || mi > 59 || se > 59 {
        return None;
    }
    Some(days_from_civil(y, mo, da) * DAY_MS + ((h * 60 + mi) * 60 + se) * 1000)
}

/// The UTC instant of a local time: the first one that reads as it; for a local time a
/// daylight-saving gap skips, the first instant after the gap.
pub fn to_utc(local_ms: i64, zone: &dyn Zone) -> i64 {
    // Offsets are within a day of UTC: try the offsets in force around the guess.
    let mut candidates = Vec::new();
    for probe in [local_ms - DAY_MS, local_ms, local_ms + DAY_MS] {
        let off = zone.offset_at(probe);
        let utc = local_ms - off;
        if utc + zone.offset_at(utc) == local_ms {
            candidates.push(utc);
        }
    }
    match candidates.into_iter().min() {
        Some(u) => u,
        None => {
            // In a gap: the instant the clocks jumped (the earliest instant after it that reads
            // later than the local time asked for is the end of the gap).
            let before = local_ms - zone.offset_at(local_ms - DAY_MS);
            let after = local_ms - zone.offset_at(local_ms + DAY_MS);
            // On whole seconds, where zones change.
            let (mut lo, mut hi) = (before.min(after).div_euclid(1000) * 1000, before.max(after));
            while hi - lo > 1000 {
                let mid = lo + (hi - lo) / 2000 * 1000;
                if mid + zone.offset_at(mid) >= local_ms {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            hi
        }
    }
}

/// A cron expression's six fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: Vec<bool>,
    hours: Vec<bool>,
    dom: DayOfMonth,
    months: Vec<bool>,
    dow: DayOfWeek,
    /// Years 1970..=2199, as offsets from 1970.
    years: Vec<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DayOfMonth {
    Any,
    Days(Vec<bool>),
    /// `L`: the last day of the month.
    Last,
    /// `NW`: the weekday nearest day N, within the month.
    NearestWeekday(u32),
    /// `LW`: the last weekday of the month.
    LastWeekday,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DayOfWeek {
    Any,
    /// 1 = Sunday … 7 = Saturday.
    Days(Vec<bool>),
    /// `dL`: the last such weekday of the month.
    Last(u32),
    /// `d#n`: the n-th such weekday of the month.
    Nth(u32, u32),
}

const MONTHS: [&str; 12] =
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn value(s: &str, names: &[&str], first: u32) -> Result<u32, ()> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        return Ok(i as u32 + first);
    }
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    s.parse().map_err(|_| ())
}

/// A list of values, ranges and steps (`*`, `a-b`, `a/n`, `*/n`, `a-b/n`, comma-separated) as
/// flags indexed from `lo`.
fn set(field: &str, lo: u32, hi: u32, names: &[&str]) -> Result<Vec<bool>, ()> {
    let mut out = vec![false; (hi - lo + 1) as usize];
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, value(s, &[], 0)?),
            None => (part, 1),
        };
        if step == 0 {
            return Err(());
        }
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, names, lo)?, value(b, names, lo)?)
        } else {
            let a = value(range, names, lo)?;
            (a, if part.contains('/') { hi } else { a })
        };
        if a < lo || b > hi || a > b {
            return Err(());
        }
        let mut v = a;
        while v <= b {
            out[(v - lo) as usize] = true;
            v += step;
        }
    }
    Ok(out)
}

impl Cron {
    /// The six space-separated fields inside `cron(...)`.
    pub fn parse(body: &str) -> Result<Cron, Invalid> {
        Cron::fields(body).map_err(|()| Invalid(format!("The cron expression '{body}' is not valid.")))
    }

    fn fields(body: &str) -> Result<Cron, ()> {
        let f: Vec<&str> = body.split_whitespace().collect();
        if f.len() != 6 {
            return Err(());
        }
        let dom = match f[2] {
            "?" => DayOfMonth::Any,
            "L" => DayOfMonth::Last,
            "LW" => DayOfMonth::LastWeekday,
            w if w.ends_with('W') => {
                let n = value(&w[..w.len() - 1], &[], 1)?;
                if !(1..=31).contains(&n) {
                    return Err(());
                }
                DayOfMonth::NearestWeekday(n)
            }
            other => DayOfMonth::Days(set(other, 1, 31, &[])?),
        };
        let dow = match f[4] {
            "?" => DayOfWeek::Any,
            "L" => DayOfWeek::Days((1..=7).map(|d| d == 7).collect()),
            l if l.ends_with('L') => {
                let d = value(&l[..l.len() - 1], &DAYS, 1)?;
                if !(1..=7).contains(&d) {
                    return Err(());
                }
                DayOfWeek::Last(d)
            }
            h if h.contains('#') => {
                let (d, n) = h.split_once('#').ok_or(())?;
                let (d, n) = (value(d, &DAYS, 1)?, value(n, &[], 1)?);
                if !(1..=7).contains(&d) || !(1..=5).contains(&n) {
                    return Err(());
                }
                DayOfWeek::Nth(d, n)
            }
            other => DayOfWeek::Days(set(other, 1, 7, &DAYS)?),
        };
        // One of the two day fields must be `?`, as AWS requires.
        if (dom == DayOfMonth::Any) == (dow == DayOfWeek::Any) {
            return Err(());
        }
        Ok(Cron {
            minutes: set(f[0], 0, 59, &[])?,
            hours: set(f[1], 0, 23, &[])?,
            dom,
            months: set(f[3], 1, 12, &MONTHS)?,
            dow,
            years: set(f[5], 1970, 2199, &[])?,
        })
    }

    fn day_matches(&self, y: i64, m: u32, d: u32, days: i64) -> bool {
        let last = days_in_month(y, m);
        // 1 = Sunday (1970-01-01 was a Thursday).
        let weekday = |days: i64| (days + 4).rem_euclid(7) as u32 + 1;
        let wd = weekday(days);
        let dom = match &self.dom {
            DayOfMonth::Any => true,
            DayOfMonth::Days(s) => s[(d - 1) as usize],
            DayOfMonth::Last => d == last,
            DayOfMonth::NearestWeekday(n) => {
                let n = (*n).min(last);
                let base = days - i64::from(d) + i64::from(n);
                let target = match weekday(base) {
                    7 if n == 1 => n + 2,
                    7 => n - 1,
                    1 if n == last => n - 2,
                    1 => n + 1,
                    _ => n,
                };
                d == target
            }
            DayOfMonth::LastWeekday => {
                let base = days - i64::from(d) + i64::from(last);
                let target = match weekday(base) {
                    7 => last - 1,
                    1 => last - 2,
                    _ => last,
                };
                d == target
            }
        };
        let dow = match &self.dow {
            DayOfWeek::Any => true,
            DayOfWeek::Days(s) => s[(wd - 1) as usize],
            DayOfWeek::Last(x) => wd == *x && d + 7 > last,
            DayOfWeek::Nth(x, n) => wd == *x && (d - 1) / 7 + 1 == *n,
        };
        dom && dow
    }

    /// The first UTC instant strictly after `after_ms` at which the local time in `zone` matches.
    pub fn next_after(&self, after_ms: i64, zone: &dyn Zone) -> Option<i64> {
        let local_after = after_ms + zone.offset_at(after_ms);
        let start_day = local_after.div_euclid(DAY_MS) - 1;
        // A day before, to catch a local time whose UTC instant is after `after_ms`.
        for days in start_day..start_day + 366 * 231 {
            let (y, m, d) = civil_from_days(days);
            if !(1970..=2199).contains(&y) {
                if y > 2199 {
                    return None;
                }
                continue;
            }
            if !self.years[(y - 1970) as usize] || !self.months[(m - 1) as usize] {
                continue;
            }
            if !self.day_matches(y, m, d, days) {
                continue;
            }
            for h in (0..24).filter(|h| self.hours[*h as usize]) {
                for mi in (0..60).filter(|mi| self.minutes[*mi as usize]) {
                    let local = days * DAY_MS + (h * 60 + mi) * MINUTE_MS;
                    let utc = to_utc(local, zone);
                    if utc > after_ms {
                        return Some(utc);
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i64, mo: u32, d: u32, h: i64, mi: i64) -> i64 {
        days_from_civil(y, mo, d) * DAY_MS + (h * 60 + mi) * MINUTE_MS
    }

    fn next(expr: &str, after: i64) -> Option<i64> {
        Schedule::parse(expr, true).unwrap().next_after(after, after, &Utc)
    }

    #[test]
    fn zones_are_read_by_name_from_the_database_and_nowhere_else() {
        let utc = Tzif::named("UTC").unwrap();
        assert_eq!(to_utc(at(2024, 7, 1, 12, 0), &utc), at(2024, 7, 1, 12, 0));
        // Etc/GMT+5 is five hours behind UTC (POSIX's sign).
        let gmt5 = Tzif::named("Etc/GMT+5").unwrap();
        assert_eq!(to_utc(at(2024, 7, 1, 12, 0), &gmt5), at(2024, 7, 1, 17, 0));
        for bad in ["", "Nowhere/City", "../etc/passwd", "/etc/localtime", "Europe/../UTC", "a b"] {
            assert!(Tzif::named(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn rates_count_from_their_anchor() {
        let s = Schedule::parse("rate(5 minutes)", false).unwrap();
        assert_eq!(s, Schedule::Rate(300_000));
        assert_eq!(s.next_after(1_000, 1_000, &Utc), Some(301_000));
        assert_eq!(s.next_after(301_000, 1_000, &Utc), Some(601_000));
        assert_eq!(s.next_after(400_000, 1_000, &Utc), Some(601_000));
        for bad in [
            "rate(1 minutes)",
            "rate(5 minute)",
            "rate(0 minutes)",
            "rate(5 weeks)",
            "rate(5)",
            "rate(-1 day)",
        ] {
            assert!(Schedule::parse(bad, false).is_err(), "{bad}");
        }
        assert!(Schedule::parse("rate(1 day)", false).is_ok());
    }

    #[test]
    fn cron_fields() {
        // Every day at 10:15 UTC.
        assert_eq!(next("cron(15 10 * * ? *)", at(2026, 3, 1, 10, 15)), Some(at(2026, 3, 2, 10, 15)));
        assert_eq!(next("cron(15 10 * * ? *)", at(2026, 3, 1, 9, 0)), Some(at(2026, 3, 1, 10, 15)));
        // Every 10 minutes on weekdays (2026-03-07 is a Saturday).
        assert_eq!(next("cron(0/10 * ? * MON-FRI *)", at(2026, 3, 6, 23, 55)), Some(at(2026, 3, 9, 0, 0)));
        // The last day of the month, the last Friday, the second Tuesday, the nearest weekday.
        assert_eq!(next("cron(0 0 L * ? *)", at(2026, 2, 1, 0, 0)), Some(at(2026, 2, 28, 0, 0)));
        assert_eq!(next("cron(0 0 ? * 6L *)", at(2026, 3, 1, 0, 0)), Some(at(2026, 3, 27, 0, 0)));
        assert_eq!(next("cron(0 0 ? * 3#2 *)", at(2026, 3, 1, 0, 0)), Some(at(2026, 3, 10, 0, 0)));
        // 2026-03-01 is a Sunday: 1W is Monday the 2nd.
        assert_eq!(next("cron(0 0 1W * ? *)", at(2026, 2, 28, 0, 0)), Some(at(2026, 3, 2, 0, 0)));
        // 2026-05-31 is a Sunday: LW is Friday the 29th.
        assert_eq!(next("cron(0 0 LW * ? *)", at(2026, 5, 1, 0, 0)), Some(at(2026, 5, 29, 0, 0)));
        // Names, lists and a year.
        assert_eq!(next("cron(30 8 1 JAN,JUL ? 2027)", at(2026, 3, 1, 0, 0)), Some(at(2027, 1, 1, 8, 30)));
        assert_eq!(next("cron(0 0 1 1 ? 2020)", at(2026, 3, 1, 0, 0)), None);
    }

    #[test]
    fn cron_refuses_what_aws_refuses() {
        for bad in [
            "cron(0 10 * * *)",
            "cron(0 10 * * * *)",
            "cron(0 10 ? * ? *)",
            "cron(60 10 * * ? *)",
            "cron(0 24 * * ? *)",
            "cron(0 10 32 * ? *)",
            "cron(0 10 * 13 ? *)",
            "cron(0 10 ? * 8 *)",
            "cron(0 10 * * ? 2200)",
            "cron(*/0 10 * * ? *)",
            "cron(0 10 ? * 2#6 *)",
        ] {
            assert!(Schedule::parse(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn at_is_for_scheduler_only() {
        assert!(Schedule::parse("at(2026-03-01T10:00:00)", false).is_err());
        let s = Schedule::parse("at(2026-03-01T10:00:00)", true).unwrap();
        assert_eq!(s.next_after(at(2026, 3, 1, 9, 0), 0, &Utc), Some(at(2026, 3, 1, 10, 0)));
        assert_eq!(s.next_after(at(2026, 3, 1, 10, 0), 0, &Utc), None);
        for bad in ["at(2026-02-30T10:00:00)", "at(2026-03-01 10:00:00)", "at(2026-03-01T24:00:00)"] {
            assert!(Schedule::parse(bad, true).is_err(), "{bad}");
        }
    }

    /// A zone at UTC+1 that moves to UTC+2 at 01:00 UTC on 2026-03-29 and back at 01:00 UTC on
    /// 2026-10-25 (Central European Time).
    struct Cet;
    impl Zone for Cet {
        fn offset_at(&self, utc: i64) -> i64 {
            if (at(2026, 3, 29, 1, 0)..at(2026, 10, 25, 1, 0)).contains(&utc) { 7_200_000 } else { 3_600_000 }
        }
    }

    #[test]
    fn cron_in_a_zone_across_daylight_saving() {
        let c = Schedule::parse("cron(30 2 * * ? *)", false).unwrap();
        // 02:30 CET is 01:30 UTC before the change.
        assert_eq!(c.next_after(at(2026, 3, 27, 12, 0), 0, &Cet), Some(at(2026, 3, 28, 1, 30)));
        // 02:30 does not exist on the 29th: it fires when the gap ends (03:00 CEST, 01:00 UTC).
        assert_eq!(c.next_after(at(2026, 3, 28, 12, 0), 0, &Cet), Some(at(2026, 3, 29, 1, 0)));
        // Then 02:30 CEST, 00:30 UTC.
        assert_eq!(c.next_after(at(2026, 3, 29, 12, 0), 0, &Cet), Some(at(2026, 3, 30, 0, 30)));
        // 02:30 happens twice on 2026-10-25: it fires at the first (00:30 UTC), once.
        let first = c.next_after(at(2026, 10, 24, 12, 0), 0, &Cet).unwrap();
        assert_eq!(first, at(2026, 10, 25, 0, 30));
        assert_eq!(c.next_after(first, 0, &Cet), Some(at(2026, 10, 26, 1, 30)));
        // A daily 09:00 keeps to the local clock on both sides.
        let nine = Schedule::parse("cron(0 9 * * ? *)", false).unwrap();
        assert_eq!(nine.next_after(at(2026, 3, 28, 12, 0), 0, &Cet), Some(at(2026, 3, 29, 7, 0)));
        assert_eq!(nine.next_after(at(2026, 3, 27, 12, 0), 0, &Cet), Some(at(2026, 3, 28, 8, 0)));
    }
}
