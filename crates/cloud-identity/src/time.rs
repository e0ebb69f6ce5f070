//! Timestamps in the formats the providers use.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// SigV4's `X-Amz-Date` (`20150830T123600Z`) and credential-scope date (`20150830`).
pub fn amz_date(at: SystemTime) -> (String, String) {
    let seconds = at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    let second_of_day = seconds % 86_400;
    let date = format!("{year:04}{month:02}{day:02}");
    let stamp = format!(
        "{date}T{:02}{:02}{:02}Z",
        second_of_day / 3600,
        (second_of_day / 60) % 60,
        second_of_day % 60
    );
    (stamp, date)
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// An RFC 3339 timestamp with any fraction (moto sends microseconds, AWS whole seconds).
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let timestamp: jiff::Timestamp = text.trim().parse().ok()?;
    Some(SystemTime::from(timestamp))
}

/// RFC 3339 in UTC with whole seconds, for fakes and logs.
pub fn format_rfc3339(at: SystemTime) -> String {
    match jiff::Timestamp::try_from(at) {
        Ok(ts) => ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Err(_) => "1970-01-01T00:00:00Z".to_string(),
    }
}

/// Seconds since the epoch, possibly fractional (ECR's `expiresAt`).
pub fn from_epoch_seconds(seconds: f64) -> Option<SystemTime> {
    if !seconds.is_finite() || !(0.0..=1e12).contains(&seconds) {
        return None;
    }
    Some(UNIX_EPOCH + Duration::from_secs_f64(seconds))
}

/// Whole seconds since the epoch.
pub fn epoch_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_dates() {
        let at = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        assert_eq!(amz_date(at), ("20150830T123600Z".into(), "20150830".into()));
        assert_eq!(
            amz_date(UNIX_EPOCH),
            ("19700101T000000Z".into(), "19700101".into())
        );
        let leap = UNIX_EPOCH + Duration::from_secs(1_709_164_800 + 3_599);
        assert_eq!(
            amz_date(leap),
            ("20240229T005959Z".into(), "20240229".into())
        );
    }

    #[test]
    fn rfc3339_with_and_without_fraction() {
        let whole = parse_rfc3339("2015-08-30T12:36:00Z").unwrap();
        assert_eq!(epoch_seconds(whole), 1_440_938_160);
        let micro = parse_rfc3339("2015-08-30T12:36:00.664942Z").unwrap();
        assert_eq!(epoch_seconds(micro), 1_440_938_160);
        let offset = parse_rfc3339("2015-08-30T14:36:00+02:00").unwrap();
        assert_eq!(epoch_seconds(offset), 1_440_938_160);
        assert!(parse_rfc3339("yesterday").is_none());
        assert_eq!(format_rfc3339(whole), "2015-08-30T12:36:00Z");
    }

    #[test]
    fn epoch_seconds_fractional_and_absurd() {
        let at = from_epoch_seconds(1_420_070_400.5).unwrap();
        assert_eq!(epoch_seconds(at), 1_420_070_400);
        assert!(from_epoch_seconds(f64::NAN).is_none());
        assert!(from_epoch_seconds(-1.0).is_none());
    }
}
