//! Timestamp helpers shared by the parsers.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use serde_json::Value;

use super::text;

/// Parses a textual timestamp: RFC 3339 (`T` or space between date and time),
/// a zone-less `YYYY-MM-DD[T ]HH:MM:SS[.fff]` (taken as UTC), or a numeric
/// epoch (see [`from_epoch_f64`]).
pub(crate) fn parse_str(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Some(t.with_timezone(&Utc));
        }
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc());
        }
    }
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.starts_with(|c: char| c.is_ascii_digit())
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    {
        if let Ok(n) = s.parse::<i64>() {
            return from_epoch_i64(n);
        }
        if let Ok(f) = s.parse::<f64>() {
            return from_epoch_f64(f);
        }
    }
    None
}

/// A JSON time value: a string for [`parse_str`] or an epoch number.
/// The error is a reason fit for a schema violation.
pub(crate) fn from_json(v: &Value) -> Result<DateTime<Utc>, String> {
    match v {
        Value::String(s) => {
            parse_str(s).ok_or_else(|| format!("unparseable timestamp {:?}", text::truncate(s, 64)))
        }
        Value::Number(n) => {
            let t = match n.as_i64() {
                Some(i) => from_epoch_i64(i),
                None => n.as_f64().and_then(from_epoch_f64),
            };
            t.ok_or_else(|| format!("epoch timestamp {n} out of range"))
        }
        other => Err(format!(
            "expected an RFC 3339 string or an epoch number, got {}",
            super::json_kind(other)
        )),
    }
}

/// Nanoseconds per unit of an epoch number of this magnitude: below 1e11 it
/// is seconds, below 1e14 milliseconds, below 1e17 microseconds, else
/// nanoseconds.
fn epoch_scale(abs: f64) -> f64 {
    if abs < 1e11 {
        1e9
    } else if abs < 1e14 {
        1e6
    } else if abs < 1e17 {
        1e3
    } else {
        1.0
    }
}

fn from_nanos(nanos: i128) -> Option<DateTime<Utc>> {
    let secs = i64::try_from(nanos.div_euclid(1_000_000_000)).ok()?;
    let sub = u32::try_from(nanos.rem_euclid(1_000_000_000)).ok()?;
    DateTime::from_timestamp(secs, sub)
}

/// Epoch number of seconds, millis, micros or nanos (by magnitude).
/// Rounded to whole microseconds: an f64 holds no more precision than that
/// for present-day times (`1700000000.123` must not become `.122999808`).
pub(crate) fn from_epoch_f64(f: f64) -> Option<DateTime<Utc>> {
    if !f.is_finite() {
        return None;
    }
    // `as` saturates; anything that large is rejected by `from_timestamp`.
    let micros = (f * (epoch_scale(f.abs()) / 1e3)).round() as i128;
    from_nanos(micros.checked_mul(1_000)?)
}

/// Integer variant of [`from_epoch_f64`], exact for nanoseconds.
pub(crate) fn from_epoch_i64(n: i64) -> Option<DateTime<Utc>> {
    let scale = epoch_scale(n.unsigned_abs() as f64) as i128;
    from_nanos(i128::from(n).checked_mul(scale)?)
}

/// Common Log Format time: `10/Oct/2000:13:55:36 -0700`.
pub(crate) fn parse_clf(s: &str) -> Option<DateTime<Utc>> {
    if s.len() > 40 {
        return None;
    }
    DateTime::parse_from_str(s, "%d/%b/%Y:%H:%M:%S %z")
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Exactly `dddd-dd-dd` and `dd:dd:dd`, as a UTC time.
pub(crate) fn parse_strict_date_time(date: &str, time: &str) -> Option<DateTime<Utc>> {
    let d = date.as_bytes();
    let t = time.as_bytes();
    let digit_at = |b: &[u8], i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    let date_ok = d.len() == 10
        && [0, 1, 2, 3, 5, 6, 8, 9].iter().all(|&i| digit_at(d, i))
        && d.get(4) == Some(&b'-')
        && d.get(7) == Some(&b'-');
    let time_ok = t.len() == 8
        && [0, 1, 3, 4, 6, 7].iter().all(|&i| digit_at(t, i))
        && t.get(2) == Some(&b':')
        && t.get(5) == Some(&b':');
    if !(date_ok && time_ok) {
        return None;
    }
    let num = |b: &[u8], from: usize, to: usize| -> u32 {
        b.get(from..to)
            .unwrap_or_default()
            .iter()
            .fold(0u32, |acc, &c| acc * 10 + u32::from(c - b'0'))
    };
    let day = NaiveDate::from_ymd_opt(num(d, 0, 4) as i32, num(d, 5, 7), num(d, 8, 10))?;
    let tod = NaiveTime::from_hms_opt(num(t, 0, 2), num(t, 3, 5), num(t, 6, 8))?;
    Some(day.and_time(tod).and_utc())
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// BSD syslog time `Mmm dd hh:mm:ss` (day may be space-padded), taken as UTC
/// in the year of `reference`; a result more than a week after `reference`
/// is moved to the previous year (a December log read in January).
pub(crate) fn parse_bsd(s: &str, reference: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    if b.len() != 15 || b.get(3) != Some(&b' ') || b.get(6) != Some(&b' ') {
        return None;
    }
    let month_name = s.get(0..3)?.to_ascii_lowercase();
    let month = MONTHS.iter().position(|m| *m == month_name)? as u32 + 1;
    let day_text = s.get(4..6)?.trim_start();
    if day_text.is_empty() || !day_text.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let day: u32 = day_text.parse().ok()?;
    let tod = NaiveTime::parse_from_str(s.get(7..15)?, "%H:%M:%S").ok()?;
    let at_year = |year: i32| {
        NaiveDate::from_ymd_opt(year, month, day).map(|d| Utc.from_utc_datetime(&d.and_time(tod)))
    };
    let year = reference.year();
    let horizon = reference
        .checked_add_signed(Duration::days(7))
        .unwrap_or(reference);
    match at_year(year) {
        Some(t) if t > horizon => at_year(year - 1).or(Some(t)),
        Some(t) => Some(t),
        None => at_year(year - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn strings() {
        let want = utc("2024-05-01T12:00:00Z");
        for s in [
            "2024-05-01T12:00:00Z",
            "2024-05-01T14:00:00+02:00",
            "2024-05-01 12:00:00Z",
            "2024-05-01T12:00:00",
            "2024-05-01 12:00:00",
            "2024-05-01T12:00:00+0000",
            "2024-05-01 12:00:00.000",
            "1714564800",
            "1714564800000",
            "1714564800.000",
        ] {
            assert_eq!(parse_str(s), Some(want), "{s}");
        }
        assert_eq!(
            parse_str("2024-05-01T12:00:00.123Z"),
            Some(utc("2024-05-01T12:00:00.123Z"))
        );
        for s in [
            "",
            "yesterday",
            "2024-13-01T00:00:00Z",
            "12:00",
            "1.2.3",
            "-",
            ".",
        ] {
            assert_eq!(parse_str(s), None, "{s}");
        }
    }

    #[test]
    fn epochs() {
        let want = utc("2023-11-14T22:13:20.123Z");
        assert_eq!(from_epoch_f64(1_700_000_000.123), Some(want));
        assert_eq!(from_epoch_i64(1_700_000_000_123), Some(want));
        assert_eq!(from_epoch_i64(1_700_000_000_123_000), Some(want));
        assert_eq!(from_epoch_i64(1_700_000_000_123_000_000), Some(want));
        assert_eq!(from_epoch_f64(1_700_000_000_123.0), Some(want));
        assert_eq!(from_epoch_i64(0), Some(utc("1970-01-01T00:00:00Z")));
        assert_eq!(from_epoch_f64(f64::NAN), None);
        assert_eq!(from_epoch_f64(1e300), None);
        assert!(from_epoch_i64(i64::MIN).is_some());
        assert!(from_epoch_i64(i64::MAX).is_some());
    }

    #[test]
    fn json_values() {
        assert!(from_json(&Value::from(1_700_000_000)).is_ok());
        assert!(from_json(&Value::from(true)).is_err());
        assert!(from_json(&Value::from("nope")).is_err());
    }

    #[test]
    fn clf_and_strict() {
        assert_eq!(
            parse_clf("10/Oct/2000:13:55:36 -0700"),
            Some(utc("2000-10-10T20:55:36Z"))
        );
        assert_eq!(parse_clf("10/Oct/2000:13:55:36"), None);
        assert_eq!(
            parse_strict_date_time("2024-05-01", "12:00:00"),
            Some(utc("2024-05-01T12:00:00Z"))
        );
        assert_eq!(parse_strict_date_time("2024-5-01", "12:00:00"), None);
        assert_eq!(parse_strict_date_time("2024-02-30", "12:00:00"), None);
        assert_eq!(parse_strict_date_time("2024-02-01", "25:00:00"), None);
    }

    #[test]
    fn bsd() {
        let reference = utc("2024-05-01T00:00:00Z");
        assert_eq!(
            parse_bsd("Oct 11 22:14:15", reference),
            Some(utc("2023-10-11T22:14:15Z"))
        );
        assert_eq!(
            parse_bsd("Apr  1 01:02:03", reference),
            Some(utc("2024-04-01T01:02:03Z"))
        );
        assert_eq!(
            parse_bsd("May  3 01:02:03", reference),
            Some(utc("2024-05-03T01:02:03Z"))
        );
        let new_year = utc("2024-01-01T00:00:05Z");
        assert_eq!(
            parse_bsd("Dec 31 23:59:59", new_year),
            Some(utc("2023-12-31T23:59:59Z"))
        );
        for s in [
            "Foo 11 22:14:15",
            "Oct 11 22:14",
            "Oct 1x 22:14:15",
            "Oct 11 25:14:15",
            "Oct 32 22:14:15",
        ] {
            assert_eq!(parse_bsd(s, reference), None, "{s}");
        }
    }
}
