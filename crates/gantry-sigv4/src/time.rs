//! The two date forms SigV4 uses (`20150830T123600Z` and `20150830`), to and from epoch seconds.
//! Pure arithmetic: nothing here reads a clock.

use gantry_core::civil::{civil_from_days, days_from_civil, days_in_month};

fn digits(s: &[u8]) -> Option<i64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0i64, |n, b| n * 10 + i64::from(b - b'0')))
}

fn checked(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> Option<i64> {
    if !(1..=12).contains(&mo)
        || d < 1
        || d > i64::from(days_in_month(y, mo as u32))
        || h > 23
        || mi > 59
        || s > 60
    {
        return None;
    }
    Some(days_from_civil(y, mo as u32, d as u32) * 86_400 + h * 3600 + mi * 60 + s)
}

/// Parses ISO 8601 basic format, `YYYYMMDDTHHMMSSZ`, into epoch seconds.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| digits(&b[r]);
    checked(n(0..4)?, n(4..6)?, n(6..8)?, n(9..11)?, n(11..13)?, n(13..15)?)
}

/// Parses an HTTP `Date` header (IMF-fixdate, `Sun, 30 Aug 2015 12:36:00 GMT`) into epoch seconds.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let rest = s.trim().split_once(", ").map_or(s.trim(), |(_, r)| r);
    let mut it = rest.split(' ');
    let d = digits(it.next()?.as_bytes())?;
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let mon = it.next()?;
    let mo = MONTHS.iter().position(|m| *m == mon)? as i64 + 1;
    let y = digits(it.next()?.as_bytes())?;
    let hms: Vec<&str> = it.next()?.split(':').collect();
    if hms.len() != 3 || it.next()? != "GMT" || it.next().is_some() {
        return None;
    }
    let h = digits(hms[0].as_bytes())?;
    let mi = digits(hms[1].as_bytes())?;
    let sec = digits(hms[2].as_bytes())?;
    checked(y, mo, d, h, mi, sec)
}

/// Formats epoch seconds as `YYYYMMDDTHHMMSSZ`.
pub fn format_amz_date(epoch: i64) -> String {
    let (y, m, d) = civil_from_days(epoch.div_euclid(86_400));
    let t = epoch.rem_euclid(86_400);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", t / 3600, t / 60 % 60, t % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for s in ["20150830T123600Z", "20240229T235959Z", "19700101T000000Z", "21001231T000001Z"] {
            assert_eq!(format_amz_date(parse_amz_date(s).unwrap()), s);
        }
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(parse_http_date("Sun, 30 Aug 2015 12:36:00 GMT"), Some(1_440_938_160));
        for bad in ["20150830T123600", "2015-08-30T12:36:00Z", "20230229T000000Z", "20151330T000000Z", ""] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }
}
