//! Timestamps at the start of a text line, in the layouts logging libraries
//! write. Dispatch is on the first byte so a line costs one or two attempts.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Utc};

use super::time;

/// A timestamp read from the start of a line, and the text after it
/// (leading spaces of the rest not removed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Leading<'a> {
    pub time: DateTime<Utc>,
    pub rest: &'a str,
    pub layout: Layout,
}

/// Which layout a leading timestamp had (parsers accept only their own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// `yyyy-MM-dd[T ]HH:mm:ss[.,fraction][zone]`
    Iso,
    /// `yyyy/MM/dd HH:mm:ss[.fraction]`
    SlashYear4,
    /// `yy/MM/dd HH:mm:ss`
    SlashYear2,
    /// `yyMMdd HHmmss[,SSS]`
    Compact,
    /// `MM-dd HH:mm:ss.SSS` (year inferred)
    MonthDay,
    /// `Mmm dd hh:mm:ss` (year inferred)
    Bsd,
    /// `[Day Mon dd hh:mm:ss[.fraction] yyyy]`
    BracketedCtime,
    /// `HH:mm:ss.SSS` alone (date taken from the reference)
    TimeOnly,
    /// 10-digit epoch seconds, optional fraction
    Epoch,
}

/// Reads a timestamp at the very start of `s`. `reference` (the Kafka
/// timestamp) supplies the year for layouts that have none.
pub(crate) fn leading(s: &str, reference: DateTime<Utc>) -> Option<Leading<'_>> {
    let b = s.as_bytes();
    match b.first()? {
        b'0'..=b'9' => digits_first(s, reference),
        b'[' => bracketed(s, reference),
        b'A'..=b'Z' | b'a'..=b'z' => {
            let t = time::parse_bsd(s.get(..15)?, reference)?;
            let rest = s.get(15..)?;
            boundary(rest).then_some(Leading {
                time: t,
                rest,
                layout: Layout::Bsd,
            })
        }
        _ => None,
    }
}

/// The timestamp must end at a space, a bracket, a comma or the end of text.
fn boundary(rest: &str) -> bool {
    matches!(
        rest.as_bytes().first(),
        None | Some(b' ' | b'\t' | b']' | b',' | b'|')
    )
}

fn digits_first(s: &str, reference: DateTime<Utc>) -> Option<Leading<'_>> {
    let b = s.as_bytes();
    let sep = |i: usize| b.get(i).copied();
    let (fmt, layout) = match (sep(2), sep(4), sep(6)) {
        (_, Some(b'-'), _) => (None, Layout::Iso),
        (_, Some(b'/'), _) => (Some("%Y/%m/%d %H:%M:%S"), Layout::SlashYear4),
        (Some(b'/'), _, _) => (Some("%y/%m/%d %H:%M:%S"), Layout::SlashYear2),
        (Some(b'-'), _, _) => (None, Layout::MonthDay),
        (Some(b':'), _, _) => (None, Layout::TimeOnly),
        (_, _, Some(b' ')) => (Some("%y%m%d %H%M%S"), Layout::Compact),
        _ => (None, Layout::Epoch),
    };
    let (naive, rest) = match layout {
        Layout::Iso => {
            let date = s.get(..10)?;
            let sep = *b.get(10)?;
            if sep != b'T' && sep != b' ' {
                return None;
            }
            let d = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
            let (t, rest) = hms(s.get(11..)?)?;
            (d.and_time(t), rest)
        }
        Layout::MonthDay => {
            let (t, rest) = hms(s.get(6..)?)?;
            let month: u32 = s.get(0..2)?.parse().ok()?;
            let day: u32 = s.get(3..5)?.parse().ok()?;
            if b.get(5) != Some(&b' ') || !s.get(0..2)?.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            return with_inferred_year(month, day, t, rest, reference, Layout::MonthDay);
        }
        Layout::TimeOnly => {
            let (t, rest) = hms(s)?;
            // Time alone: the reference's date, or the day before when that
            // would put the line in the future (a 23:59 line read at 00:01).
            let mut at = reference.date_naive().and_time(t).and_utc();
            // (checked: the reference may be at either end of chrono's range)
            let latest = reference
                .checked_add_signed(Duration::hours(1))
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            if at > latest {
                at = at.checked_sub_signed(Duration::days(1)).unwrap_or(at);
            }
            let (at, rest) = fraction(at, rest);
            return boundary(rest).then_some(Leading {
                time: at,
                rest,
                layout,
            });
        }
        Layout::Epoch => return epoch(s),
        _ => {
            let (t, rest) = NaiveDateTime::parse_and_remainder(s, fmt?).ok()?;
            (t, rest)
        }
    };
    let (at, rest) = fraction(naive.and_utc(), rest);
    let (at, rest) = if layout == Layout::Iso {
        zone(at, rest)
    } else {
        (at, rest)
    };
    boundary(rest).then_some(Leading {
        time: at,
        rest,
        layout,
    })
}

/// `HH:mm:ss` at the start of `s`, exactly two digits each.
fn hms(s: &str) -> Option<(NaiveTime, &str)> {
    let head = s.get(..8)?;
    let b = head.as_bytes();
    if b.get(2) != Some(&b':') || b.get(5) != Some(&b':') {
        return None;
    }
    let t = NaiveTime::parse_from_str(head, "%H:%M:%S").ok()?;
    Some((t, s.get(8..)?))
}

/// An optional `.ffffff` or `,SSS` fraction after the seconds.
fn fraction(at: DateTime<Utc>, rest: &str) -> (DateTime<Utc>, &str) {
    let Some(after) = rest.strip_prefix(['.', ',']) else {
        return (at, rest);
    };
    let n = after.bytes().take_while(u8::is_ascii_digit).count();
    if n == 0 || n > 9 {
        return (at, rest);
    }
    let digits = after.get(..n).unwrap_or("0");
    let value: i64 = digits.parse().unwrap_or(0);
    let nanos = value * 10_i64.pow(9 - n as u32);
    (
        at.checked_add_signed(Duration::nanoseconds(nanos))
            .unwrap_or(at),
        after.get(n..).unwrap_or(""),
    )
}

/// An optional zone right after the time: `Z`, `+hh:mm`, `+hhmm`, `+hh`.
fn zone(at: DateTime<Utc>, rest: &str) -> (DateTime<Utc>, &str) {
    if let Some(r) = rest.strip_prefix('Z') {
        return (at, r);
    }
    let sign = match rest.as_bytes().first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return (at, rest),
    };
    let body = rest.get(1..).unwrap_or("");
    let b = body.as_bytes();
    let two = |i: usize| -> Option<i64> {
        let s = body.get(i..i + 2)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let Some(hours) = two(0) else {
        return (at, rest);
    };
    let (minutes, used) = if b.get(2) == Some(&b':') {
        match two(3) {
            Some(m) => (m, 5),
            None => return (at, rest),
        }
    } else {
        match two(2) {
            Some(m) => (m, 4),
            None => (0, 2),
        }
    };
    if hours > 14 || minutes > 59 {
        return (at, rest);
    }
    let offset = Duration::minutes(sign * (hours * 60 + minutes));
    (at - offset, body.get(used..).unwrap_or(""))
}

/// Month and day without a year: the reference's year, or the previous one
/// when that would put the line more than a week after the reference (a
/// December line read in January).
pub(crate) fn with_inferred_year(
    month: u32,
    day: u32,
    t: NaiveTime,
    rest: &str,
    reference: DateTime<Utc>,
    layout: Layout,
) -> Option<Leading<'_>> {
    let at = |year: i32| NaiveDate::from_ymd_opt(year, month, day).map(|d| d.and_time(t).and_utc());
    let year = reference.year();
    let horizon = reference
        .checked_add_signed(Duration::days(7))
        .unwrap_or(reference);
    let base = match at(year) {
        Some(x) if x > horizon => at(year - 1).unwrap_or(x),
        Some(x) => x,
        None => at(year - 1)?,
    };
    let (time, rest) = fraction(base, rest);
    boundary(rest).then_some(Leading { time, rest, layout })
}

/// 10-digit epoch seconds with an optional fraction.
fn epoch(s: &str) -> Option<Leading<'_>> {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    if n != 10 {
        return None;
    }
    let secs: i64 = s.get(..n)?.parse().ok()?;
    let at = DateTime::from_timestamp(secs, 0)?;
    let (at, rest) = match s.get(n..)?.strip_prefix('.') {
        Some(_) => fraction(at, s.get(n..)?),
        None => (at, s.get(n..)?),
    };
    boundary(rest).then_some(Leading {
        time: at,
        rest,
        layout: Layout::Epoch,
    })
}

/// `[Wed Oct 11 14:32:52 2000]`, `[Fri Sep 09 10:42:29.902022 2011]`, or a
/// bracketed ISO timestamp `[2024-05-01 12:00:00,123]`.
fn bracketed(s: &str, reference: DateTime<Utc>) -> Option<Leading<'_>> {
    let close = s.get(..48).unwrap_or(s).find(']')?;
    let inner = s.get(1..close)?;
    let rest = s.get(close + 1..)?;
    if inner.starts_with(|c: char| c.is_ascii_digit()) {
        let l = digits_first(inner, reference)?;
        return l.rest.trim().is_empty().then_some(Leading {
            time: l.time,
            rest,
            layout: Layout::BracketedCtime,
        });
    }
    let parts: Vec<&str> = inner.split_ascii_whitespace().collect();
    let [_day, month, dom, tod, year] = parts.as_slice() else {
        return None;
    };
    let t = NaiveDateTime::parse_from_str(
        &format!("{month} {dom} {year} {tod}"),
        "%b %d %Y %H:%M:%S%.f",
    )
    .ok()?;
    let time = t.and_utc();
    Some(Leading {
        time,
        rest,
        layout: Layout::BracketedCtime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::tests::{fallback, utc};

    fn at(s: &str) -> Option<(DateTime<Utc>, Layout)> {
        leading(s, fallback()).map(|l| (l.time, l.layout))
    }

    #[test]
    fn layouts() {
        let cases = [
            (
                "2024-05-01 12:00:00,123 INFO x",
                "2024-05-01T12:00:00.123Z",
                Layout::Iso,
            ),
            (
                "2024-05-01T12:00:00.5+02:00 x",
                "2024-05-01T10:00:00.5Z",
                Layout::Iso,
            ),
            ("2024-05-01T12:00:00Z", "2024-05-01T12:00:00Z", Layout::Iso),
            (
                "2024-05-01 12:00:00-0700 x",
                "2024-05-01T19:00:00Z",
                Layout::Iso,
            ),
            (
                "2024/05/01 12:00:00.123456 x",
                "2024-05-01T12:00:00.123456Z",
                Layout::SlashYear4,
            ),
            (
                "24/05/01 12:00:00 INFO x",
                "2024-05-01T12:00:00Z",
                Layout::SlashYear2,
            ),
            (
                "081109 203615 148 INFO x",
                "2008-11-09T20:36:15Z",
                Layout::Compact,
            ),
            (
                "04-30 23:59:59.999 1 2 I t: m",
                "2024-04-30T23:59:59.999Z",
                Layout::MonthDay,
            ),
            (
                "Apr 30 23:59:59 host x",
                "2024-04-30T23:59:59Z",
                Layout::Bsd,
            ),
            (
                "[Wed Oct 11 14:32:52 2000] [error] x",
                "2000-10-11T14:32:52Z",
                Layout::BracketedCtime,
            ),
            (
                "[Fri Sep 09 10:42:29.902022 2011] x",
                "2011-09-09T10:42:29.902022Z",
                Layout::BracketedCtime,
            ),
            (
                "[2024-05-01 12:00:00,001] x",
                "2024-05-01T12:00:00.001Z",
                Layout::BracketedCtime,
            ),
            ("1714564800 x", "2024-05-01T12:00:00Z", Layout::Epoch),
            ("1714564800.25 x", "2024-05-01T12:00:00.25Z", Layout::Epoch),
            (
                "23:30:00.100 [main] x",
                "2024-04-30T23:30:00.1Z",
                Layout::TimeOnly,
            ),
        ];
        for (line, want, layout) in cases {
            assert_eq!(at(line), Some((utc(want), layout)), "{line}");
        }
    }

    #[test]
    fn year_rollover() {
        let jan = utc("2025-01-01T00:00:05Z");
        let l = leading("Dec 31 23:59:58 h p: m", jan).unwrap();
        assert_eq!(l.time, utc("2024-12-31T23:59:58Z"));
        let l = leading("12-31 23:59:58.000 1 1 I t: m", jan).unwrap();
        assert_eq!(l.time, utc("2024-12-31T23:59:58Z"));
    }

    #[test]
    fn rejects() {
        for line in [
            "2024-05-01 ERROR x",
            "2024-13-01 12:00:00 x",
            "2024-05-01 12:00:00x",
            "12345 things",
            "171456480012 x",
            "[Wed Oct 11 14:32:52] x",
            "[error] x",
            "Apr 31x",
            "",
            "-",
        ] {
            assert_eq!(at(line), None, "{line}");
        }
    }
}
