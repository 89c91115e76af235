//! Calendar arithmetic shared by both roles: RFC 3339 timestamps from Unix seconds and
//! back (Howard Hinnant's algorithms, proleptic Gregorian, UTC), without a date crate.

/// The date of a day count from 1970-01-01: (year, month, day). Total over `i64`: a day
/// count within a few days of `i64::MAX` (no real date) saturates instead of overflowing.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    // After the saturating shift every product below stays far inside `i64`: `era` is at most
    // about 2^63 / 146 097, so `era * 400` is below 2^55.
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The day count from 1970-01-01 of a date, or `None` when the month is not 1–12, the day
/// not 1–31, or the year so large that the count would overflow (an absurd date is not a
/// date; the inputs come from servers we do not control).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> Option<i64> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let y = if month <= 2 {
        year.checked_sub(1)?
    } else {
        year
    };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era.checked_mul(146_097)?
        .checked_add(doe)?
        .checked_sub(719_468)
}

/// Unix seconds as an RFC 3339 UTC timestamp, `1970-01-01T00:00:00Z`.
pub fn rfc3339(unix_secs: i64) -> String {
    let (y, m, d) = civil_from_days(unix_secs.div_euclid(86_400));
    let in_day = unix_secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(784_111_777), "1994-11-06T08:49:37Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        for days in [-800_000, -1, 0, 59, 10_957, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), Some(days));
        }
    }

    #[test]
    fn absurd_dates_are_not_dates_and_never_overflow() {
        for year in [i64::MAX, i64::MIN, i64::MAX / 146_097 * 400 + 400] {
            for month in [1, 2, 3, 12] {
                assert_eq!(days_from_civil(year, month, 31), None, "{year}-{month}");
            }
        }
        assert_eq!(days_from_civil(2024, 13, 1), None);
        assert_eq!(days_from_civil(2024, i64::MAX, 1), None);
        assert_eq!(days_from_civil(2024, 1, i64::MIN), None);
        // Extreme day counts and timestamps format without overflowing.
        for days in [i64::MAX, i64::MIN] {
            let _ = civil_from_days(days);
        }
        for secs in [i64::MAX, i64::MIN] {
            assert!(!rfc3339(secs).is_empty());
        }
    }
}
