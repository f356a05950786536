//! Timestamps on the wire: epoch seconds (the in-memory form) to and from ISO-8601 and RFC 7231
//! HTTP dates. Millisecond precision, as AWS's services and SDKs use.

use serde_json::{Number, Value};

const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

use gantry_core::civil::{civil_from_days, days_from_civil};

/// Splits epoch seconds into whole seconds and milliseconds (rounded).
fn split(epoch: f64) -> (i64, u32) {
    let millis = (epoch * 1000.0).round() as i64;
    (millis.div_euclid(1000), millis.rem_euclid(1000) as u32)
}

/// `2014-04-29T18:30:38Z`, or `2000-01-02T20:34:56.123Z` with a fraction.
pub fn format_iso8601(epoch: f64) -> String {
    let (secs, millis) = split(epoch);
    gantry_core::civil::rfc3339(secs, millis * 1_000_000, if millis == 0 { 0 } else { 3 })
}

/// `Tue, 29 Apr 2014 18:30:38 GMT` (RFC 7231's IMF-fixdate; a fraction is written as `.123`).
pub fn format_http_date(epoch: f64) -> String {
    let (secs, millis) = split(epoch);
    let days = secs.div_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    let rem = secs.rem_euclid(86_400);
    let (h, mi, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let wd = WEEKDAYS[days.rem_euclid(7) as usize];
    let mon = MONTHS[mo as usize - 1];
    if millis == 0 {
        format!("{wd}, {d:02} {mon} {y:04} {h:02}:{mi:02}:{s:02} GMT")
    } else {
        format!("{wd}, {d:02} {mon} {y:04} {h:02}:{mi:02}:{s:02}.{millis:03} GMT")
    }
}

/// Epoch seconds as the JSON number of the in-memory form: an integer when whole.
pub fn epoch_value(epoch: f64) -> Value {
    if epoch.fract() == 0.0 && epoch.abs() < 9.0e15 {
        Value::Number(Number::from(epoch as i64))
    } else {
        Number::from_f64(epoch).map(Value::Number).unwrap_or(Value::Null)
    }
}

fn digits(s: &str, n: usize) -> Option<(u32, &str)> {
    if s.len() < n || !s.as_bytes()[..n].iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some((s[..n].parse().ok()?, &s[n..]))
}

fn fraction(s: &str) -> (f64, &str) {
    if let Some(rest) = s.strip_prefix('.') {
        let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let frac = format!("0.{}", &rest[..end]).parse().unwrap_or(0.0);
        (frac, &rest[end..])
    } else {
        (0.0, s)
    }
}

fn valid(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> bool {
    (1..=12).contains(&mo) && (1..=31).contains(&d) && h < 24 && mi < 60 && s <= 60 && y >= 0
}

/// Parses RFC 3339 / ISO-8601 (`T` or space; `Z`, `+hh:mm` or `-hh:mm`; optional fraction).
pub fn parse_iso8601(s: &str) -> Option<f64> {
    let (y, r) = digits(s, 4)?;
    let (mo, r) = digits(r.strip_prefix('-')?, 2)?;
    let (d, r) = digits(r.strip_prefix('-')?, 2)?;
    let r = r.strip_prefix(['T', 't', ' '])?;
    let (h, r) = digits(r, 2)?;
    let (mi, r) = digits(r.strip_prefix(':')?, 2)?;
    let (sec, r) = digits(r.strip_prefix(':')?, 2)?;
    let (frac, r) = fraction(r);
    let offset = match r {
        "Z" | "z" => 0,
        _ => {
            let sign = match r.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (oh, rr) = digits(&r[1..], 2)?;
            let rr = rr.strip_prefix(':').unwrap_or(rr);
            let (om, rr) = digits(rr, 2)?;
            if !rr.is_empty() {
                return None;
            }
            sign * (oh as i64 * 3600 + om as i64 * 60)
        }
    };
    if !valid(y as i64, mo, d, h, mi, sec) {
        return None;
    }
    let secs = days_from_civil(y as i64, mo, d) * 86_400 + (h * 3600 + mi * 60 + sec) as i64 - offset;
    Some(secs as f64 + frac)
}

/// Parses an RFC 7231 IMF-fixdate (`Tue, 29 Apr 2014 18:30:38 GMT`).
pub fn parse_http_date(s: &str) -> Option<f64> {
    let r = s.split_once(", ").map(|(_, r)| r).unwrap_or(s);
    let mut parts = r.split(' ');
    let d: u32 = parts.next()?.parse().ok()?;
    let mon = parts.next()?;
    let mo = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(mon))? as u32 + 1;
    let y: i64 = parts.next()?.parse().ok()?;
    let time = parts.next()?;
    if parts.next()? != "GMT" || parts.next().is_some() {
        return None;
    }
    let (h, r) = digits(time, 2)?;
    let (mi, r) = digits(r.strip_prefix(':')?, 2)?;
    let (sec, r) = digits(r.strip_prefix(':')?, 2)?;
    let (frac, r) = fraction(r);
    if !r.is_empty() || !valid(y, mo, d, h, mi, sec) {
        return None;
    }
    Some((days_from_civil(y, mo, d) * 86_400 + (h * 3600 + mi * 60 + sec) as i64) as f64 + frac)
}

/// Parses any of the three forms AWS uses: epoch seconds, ISO-8601 or an HTTP date.
pub fn parse_any(s: &str) -> Option<f64> {
    if let Ok(n) = s.parse::<f64>()
        && n.is_finite()
    {
        return Some(n);
    }
    parse_iso8601(s).or_else(|| parse_http_date(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_iso8601_and_http_dates() {
        assert_eq!(format_iso8601(1398796238.0), "2014-04-29T18:30:38Z");
        assert_eq!(format_iso8601(946845296.123), "2000-01-02T20:34:56.123Z");
        assert_eq!(format_http_date(1398796238.0), "Tue, 29 Apr 2014 18:30:38 GMT");
        assert_eq!(parse_iso8601("2014-04-29T18:30:38Z"), Some(1398796238.0));
        assert_eq!(parse_iso8601("2019-12-16T22:48:18-01:00"), Some(1576540098.0));
        assert_eq!(parse_iso8601("2019-12-17T00:48:18+01:00"), Some(1576540098.0));
        assert_eq!(parse_http_date("Sun, 02 Jan 2000 20:34:56 GMT"), Some(946845296.0));
        assert!((parse_iso8601("2000-01-02T20:34:56.123Z").unwrap() - 946845296.123).abs() < 1e-6);
        assert_eq!(format_iso8601(-1.0), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn rejects_what_is_not_a_date() {
        for bad in ["", "2014-13-01T00:00:00Z", "2014-04-29", "yesterday", "2014-04-29T18:30:38"] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
        assert_eq!(parse_any("1422172800"), Some(1422172800.0));
        assert_eq!(parse_any("NaN"), None);
    }
}
