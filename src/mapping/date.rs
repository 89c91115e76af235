//! Coercing the date forms a CMS stores into the RFC 3339 `dateTime` that SCIM expects
//! (RFC 7643 §2.3.5), without a date crate.
//!
//! Accepted: `YYYY-MM-DD` (midnight UTC), `YYYY-MM-DD HH:MM:SS` or with a `T` and no offset
//! (taken as UTC, since CMSs store UTC), a full RFC 3339 timestamp (kept, normalised to upper
//! case `T`/`Z`), and Unix-epoch seconds as a number or a string of digits (fractions of a
//! second are dropped).

/// Seconds from the epoch to 0000-01-01T00:00:00Z and to 9999-12-31T23:59:59Z: the years a
/// `YYYY` field can write.
const MIN_EPOCH: i64 = -62_167_219_200;
const MAX_EPOCH: i64 = 253_402_300_799;

/// Formats Unix-epoch seconds, or `None` outside the years 0000–9999.
pub(crate) fn from_epoch(seconds: f64) -> Option<String> {
    if !seconds.is_finite() {
        return None;
    }
    let floor = seconds.floor();
    if floor < MIN_EPOCH as f64 || floor > MAX_EPOCH as f64 {
        return None;
    }
    Some(crate::time::rfc3339(floor as i64))
}

/// Reads a textual date in one of the accepted forms, or `None`.
pub(crate) fn from_text(text: &str) -> Option<String> {
    let text = text.trim();
    let digits = text.strip_prefix('-').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<f64>().ok().and_then(from_epoch);
    }
    let b = text.as_bytes();
    let date = b.get(..10)?;
    let (year, month, day) = (num(date, 0, 4)?, num(date, 5, 2)?, num(date, 8, 2)?);
    if date.get(4) != Some(&b'-') || date.get(7) != Some(&b'-') {
        return None;
    }
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let ymd = format!("{year:04}-{month:02}-{day:02}");
    if b.len() == 10 {
        return Some(format!("{ymd}T00:00:00Z"));
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let time = b.get(11..19)?;
    let (hour, minute, second) = (num(time, 0, 2)?, num(time, 3, 2)?, num(time, 6, 2)?);
    // RFC 3339 allows a leap second, 60.
    if time.get(2) != Some(&b':') || time.get(5) != Some(&b':') {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut out = format!("{ymd}T{hour:02}:{minute:02}:{second:02}");
    let mut rest = b.get(19..)?;
    if rest.first() == Some(&b'.') {
        let frac_len = rest
            .iter()
            .skip(1)
            .take_while(|c| c.is_ascii_digit())
            .count();
        if frac_len == 0 {
            return None;
        }
        out.push_str(std::str::from_utf8(rest.get(..=frac_len)?).ok()?);
        rest = rest.get(frac_len + 1..)?;
    }
    match rest {
        [] | [b'Z' | b'z'] => out.push('Z'),
        [sign @ (b'+' | b'-'), ..] if rest.len() == 6 && rest.get(3) == Some(&b':') => {
            let (oh, om) = (num(rest, 1, 2)?, num(rest, 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            out.push_str(&format!("{}{oh:02}:{om:02}", char::from(*sign)));
        }
        _ => return None,
    }
    Some(out)
}

/// The decimal number in `len` ASCII digits at `at`.
fn num(bytes: &[u8], at: usize, len: usize) -> Option<u32> {
    let digits = bytes.get(at..at + len)?;
    digits.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

fn is_leap(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms() {
        let cases: &[(&str, Option<&str>)] = &[
            ("2024-02-29", Some("2024-02-29T00:00:00Z")),
            ("2023-02-29", None),
            ("2024-13-01", None),
            ("2024-04-31", None),
            ("2024-01-05 13:04:05", Some("2024-01-05T13:04:05Z")),
            ("2024-01-05T13:04:05", Some("2024-01-05T13:04:05Z")),
            ("2024-01-05T13:04:05Z", Some("2024-01-05T13:04:05Z")),
            ("2024-01-05t13:04:05z", Some("2024-01-05T13:04:05Z")),
            (
                "2024-01-05T13:04:05.250+02:00",
                Some("2024-01-05T13:04:05.250+02:00"),
            ),
            (
                "2024-01-05T13:04:05-05:30",
                Some("2024-01-05T13:04:05-05:30"),
            ),
            ("2016-12-31T23:59:60Z", Some("2016-12-31T23:59:60Z")),
            ("2024-01-05T24:00:00Z", None),
            ("2024-01-05T13:04:05.Z", None),
            ("2024-01-05T13:04:05+0200", None),
            ("2024-01-05T13:04", None),
            ("  2024-01-05  ", Some("2024-01-05T00:00:00Z")),
            ("0", Some("1970-01-01T00:00:00Z")),
            ("1700000000", Some("2023-11-14T22:13:20Z")),
            ("-86400", Some("1969-12-31T00:00:00Z")),
            ("yesterday", None),
            ("", None),
            ("-", None),
            ("2024/01/05", None),
            ("२०२४-01-05", None),
        ];
        for (input, expected) in cases {
            assert_eq!(from_text(input).as_deref(), *expected, "{input:?}");
        }
    }

    #[test]
    fn epoch_numbers() {
        assert_eq!(
            from_epoch(951_782_400.0).as_deref(),
            Some("2000-02-29T00:00:00Z")
        );
        assert_eq!(from_epoch(1.9).as_deref(), Some("1970-01-01T00:00:01Z"));
        assert_eq!(from_epoch(-0.5).as_deref(), Some("1969-12-31T23:59:59Z"));
        assert_eq!(
            from_epoch(MAX_EPOCH as f64).as_deref(),
            Some("9999-12-31T23:59:59Z")
        );
        assert_eq!(
            from_epoch(MIN_EPOCH as f64).as_deref(),
            Some("0000-01-01T00:00:00Z")
        );
        assert_eq!(from_epoch(MAX_EPOCH as f64 + 1.0), None);
        assert_eq!(from_epoch(f64::NAN), None);
    }
}
