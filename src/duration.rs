//! Durations in Prometheus form (`500ms`, `5s`, `1m`, `1h30m`, `1d`, `1w`, `1y`), as flags and
//! the config file take them.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A duration written the Prometheus way. Parses units `ms`, `s`, `m`, `h`, `d`, `w`, `y`,
/// largest first, each at most once (`1h30m`), and prints back in the same form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PromDuration(pub Duration);

const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 24 * 3600 * 1000),
    ("w", 7 * 24 * 3600 * 1000),
    ("d", 24 * 3600 * 1000),
    ("h", 3600 * 1000),
    ("m", 60 * 1000),
    ("s", 1000),
    ("ms", 1),
];

/// Why a duration did not parse, worded for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError(String);

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DurationError {}

impl FromStr for PromDuration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || {
            DurationError(format!(
                "invalid duration {text:?}: use a number and a unit, largest unit first, like 500ms, 5s, 1m, 1h30m or 1d"
            ))
        };
        if text == "0" {
            return Ok(PromDuration(Duration::ZERO));
        }
        let mut rest = text;
        let mut total_ms: u64 = 0;
        let mut last_unit_rank: Option<usize> = None;
        if rest.is_empty() {
            return Err(invalid());
        }
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(invalid());
            }
            let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
            rest = &rest[digits..];
            // "ms" must be tried before "m".
            let (rank, unit_ms, unit_len) = UNITS
                .iter()
                .enumerate()
                .filter(|(_, (unit, _))| rest.starts_with(unit))
                .map(|(rank, (unit, ms))| (rank, *ms, unit.len()))
                .max_by_key(|(_, _, len)| *len)
                .ok_or_else(invalid)?;
            if last_unit_rank.is_some_and(|last| rank <= last) {
                return Err(invalid());
            }
            last_unit_rank = Some(rank);
            rest = &rest[unit_len..];
            total_ms = number
                .checked_mul(unit_ms)
                .and_then(|ms| total_ms.checked_add(ms))
                .ok_or_else(|| DurationError(format!("duration {text:?} is too long")))?;
        }
        Ok(PromDuration(Duration::from_millis(total_ms)))
    }
}

impl fmt::Display for PromDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis() as u64;
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, unit_ms) in UNITS {
            if ms >= unit_ms {
                write!(f, "{}{}", ms / unit_ms, unit)?;
                ms %= unit_ms;
            }
        }
        Ok(())
    }
}

impl PromDuration {
    pub fn as_millis(&self) -> i64 {
        self.0.as_millis().min(i64::MAX as u128) as i64
    }
}

impl<'de> serde::Deserialize<'de> for PromDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for PromDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Duration, DurationError> {
        text.parse::<PromDuration>().map(|d| d.0)
    }

    /// Every unit a Prometheus user writes is understood.
    #[test]
    fn parses_prometheus_units() {
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("1d").unwrap(), Duration::from_secs(86400));
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
    }

    /// Typos are refused instead of silently meaning something else.
    #[test]
    fn refuses_malformed_durations() {
        for bad in ["", "5", "s", "5x", "1m1h", "5s5s", "-5s", "1.5s", "5 s"] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    /// Printing a duration gives back what a user would have written.
    #[test]
    fn prints_in_prometheus_form() {
        assert_eq!(PromDuration(Duration::from_secs(5400)).to_string(), "1h30m");
        assert_eq!(
            PromDuration(Duration::from_millis(1500)).to_string(),
            "1s500ms"
        );
    }
}
