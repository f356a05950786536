//! Calendar arithmetic: dates of the proleptic Gregorian calendar to and from days since
//! 1970-01-01 (Howard Hinnant's algorithms). Pure: nothing here reads a clock. Every crate that
//! writes or reads a date (SigV4, the wire protocols, the cluster query language, the agent) uses
//! these, so there is one calendar. Also durations as a command line writes them
//! ([`parse_duration`]).

/// Days since 1970-01-01 of `year-month-day` (`month` 1..=12).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The `(year, month, day)` of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

pub fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Days in `month` (1..=12) of `year`; 0 for a month that does not exist.
pub fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => 0,
    }
}

/// The UTC `(year, month, day, hour, minute, second)` of epoch seconds.
pub fn datetime(epoch_secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let (y, m, d) = civil_from_days(epoch_secs.div_euclid(86_400));
    let t = epoch_secs.rem_euclid(86_400) as u32;
    (y, m, d, t / 3600, t / 60 % 60, t % 60)
}

/// RFC 3339 in UTC, `2026-12-04T14:30:05Z`, with the first `digits` (0..=9) decimal digits of
/// `nanos` as the fraction: `2026-12-04T14:30:05.123Z` with 3. The one formatter of the
/// workspace for this form (ISO 8601 as the AWS APIs and the ECS agent print it).
pub fn rfc3339(epoch_secs: i64, nanos: u32, digits: usize) -> String {
    let (y, mo, d, h, mi, s) = datetime(epoch_secs);
    let mut out = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
    let digits = digits.min(9);
    if digits > 0 {
        let frac = format!("{:09}", nanos.min(999_999_999));
        out.push('.');
        out.push_str(&frac[..digits]);
    }
    out.push('Z');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(1900, 2), 28);
        assert_eq!(days_in_month(2000, 2), 29);
        assert_eq!(days_in_month(2023, 13), 0);
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(rfc3339(1_767_225_600, 0, 0), "2026-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_767_225_600 + 3661, 123_456_789, 3), "2026-01-01T01:01:01.123Z");
        assert_eq!(rfc3339(1_767_225_600, 5, 9), "2026-01-01T00:00:00.000000005Z");
        assert_eq!(rfc3339(-1, 0, 0), "1969-12-31T23:59:59Z");
        assert_eq!(datetime(86_399), (1970, 1, 1, 23, 59, 59));
    }

    proptest! {
        #[test]
        fn round_trips(days in -1_000_000i64..1_000_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert!((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m));
            prop_assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}

/// A duration as people write it on a command line: one or more numbers, each with its unit
/// (`ms`, `s`, `m`, `h`, `d`): `90s`, `10m`, `1h`, `1h30m`. A bare number is seconds.
pub fn parse_duration(s: &str) -> std::result::Result<std::time::Duration, String> {
    let bad = || format!("'{s}' is not a duration: write it like 90s, 10m, 1h or 1h30m");
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(secs));
    }
    let mut total_ms: u64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let per_ms: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total_ms = n.checked_mul(per_ms).and_then(|x| total_ms.checked_add(x)).ok_or_else(bad)?;
    }
    Ok(std::time::Duration::from_millis(total_ms))
}

#[cfg(test)]
mod duration_tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_parse_as_written() {
        for (s, ms) in [
            ("90s", 90_000),
            ("10m", 600_000),
            ("1h", 3_600_000),
            ("1h30m", 5_400_000),
            ("250ms", 250),
            ("2d", 172_800_000),
            ("45", 45_000),
        ] {
            assert_eq!(parse_duration(s), Ok(Duration::from_millis(ms)), "{s}");
        }
        for s in ["", "h", "1x", "1.5h", "-1s", "1h 30m", "99999999999999999999d"] {
            let e = parse_duration(s).unwrap_err();
            assert!(e.contains(&format!("'{s}'")), "{e}");
        }
    }
}
