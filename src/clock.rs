//! Wall-clock time as Unix milliseconds, and DingTalk's calendar month.
//!
//! Everything that schedules or stores a time uses Unix milliseconds (`i64`) so that the
//! pure scheduling functions can be driven by virtual time in tests and benchmarks.

use chrono::{Datelike, FixedOffset, TimeZone, Utc};

/// The current time as Unix milliseconds.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Milliseconds as fractional seconds, the unit of every `*_timestamp_seconds` metric.
pub fn ms_to_seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// DingTalk counts its monthly quota by the calendar month in China. Asia/Shanghai has had no
/// daylight-saving time since 1991, so a fixed UTC+8 offset is exact and needs no tz database.
fn shanghai() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// The quota month a moment falls in, as `YYYY-MM` in Asia/Shanghai.
pub fn quota_month(now_ms: i64) -> String {
    let local = shanghai()
        .timestamp_millis_opt(now_ms)
        .single()
        .unwrap_or_else(|| {
            shanghai()
                .timestamp_millis_opt(0)
                .single()
                .expect("the epoch is representable")
        });
    format!("{:04}-{:02}", local.year(), local.month())
}

/// When the quota month containing `now_ms` ends (the next month's first millisecond),
/// as Unix milliseconds.
pub fn quota_month_end_ms(now_ms: i64) -> i64 {
    let tz = shanghai();
    let local = tz
        .timestamp_millis_opt(now_ms)
        .single()
        .unwrap_or_else(|| tz.timestamp_millis_opt(0).single().expect("epoch"));
    let (year, month) = if local.month() == 12 {
        (local.year() + 1, 1)
    } else {
        (local.year(), local.month() + 1)
    };
    tz.with_ymd_and_hms(year, month, 1, 0, 0, 0)
        .single()
        .map(|start| start.timestamp_millis())
        .unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The quota month turns over at midnight in Shanghai, 16:00 UTC the day before.
    #[test]
    fn quota_month_follows_shanghai_midnight() {
        // 2026-11-30T15:59:59.999Z is 23:59:59.999 on 30 November in Shanghai.
        let before = 1_796_054_399_999;
        assert_eq!(quota_month(before), "2026-11");
        assert_eq!(quota_month(before + 1), "2026-12");
        assert_eq!(quota_month_end_ms(before), before + 1);
    }

    /// December rolls over into January of the next year.
    #[test]
    fn quota_month_rolls_over_the_year() {
        // 2026-12-15T00:00:00Z
        let mid_december = 1_797_292_800_000;
        assert_eq!(quota_month(mid_december), "2026-12");
        assert_eq!(quota_month(quota_month_end_ms(mid_december)), "2027-01");
    }
}
