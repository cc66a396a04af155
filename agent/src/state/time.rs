//! Wall-clock time carried by commands.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// A point in time with one-second resolution, as Kubernetes stores timestamps in metadata.
///
/// Commands carry the time they were proposed at, so applying a command never reads the clock
/// and every host computes the same state from the same log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The current wall-clock time, truncated to the second.
    pub fn now() -> Timestamp {
        let seconds = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(elapsed) => elapsed.as_secs() as i64,
            Err(before) => -(before.duration().as_secs() as i64),
        };
        Timestamp(seconds)
    }

    /// The time `seconds` after the Unix epoch.
    pub const fn from_unix_seconds(seconds: i64) -> Timestamp {
        Timestamp(seconds)
    }

    /// Seconds since the Unix epoch.
    pub const fn unix_seconds(self) -> i64 {
        self.0
    }

    /// This time plus `seconds` (saturating).
    pub const fn plus_seconds(self, seconds: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(seconds))
    }

    /// Parses an RFC 3339 timestamp such as `2024-05-01T10:00:00Z` (fractions are dropped).
    pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|time| Timestamp(time.timestamp()))
    }

    /// The RFC 3339 form Kubernetes uses in metadata: UTC, whole seconds, `Z` suffix.
    pub fn to_rfc3339(self) -> String {
        match DateTime::<Utc>::from_timestamp(self.0, 0) {
            Some(time) => time.to_rfc3339_opts(SecondsFormat::Secs, true),
            // Out of chrono's range (hundreds of thousands of years away): clamp to the epoch
            // rather than fail, the value is only ever produced from a real clock.
            None => "1970-01-01T00:00:00Z".to_string(),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_through_rfc3339() {
        let time = Timestamp::from_unix_seconds(1_714_557_600);
        assert_eq!(time.to_rfc3339(), "2024-05-01T10:00:00Z");
        assert_eq!(Timestamp::parse_rfc3339("2024-05-01T10:00:00Z"), Some(time));
        assert_eq!(
            Timestamp::parse_rfc3339("2024-05-01T12:00:00.75+02:00"),
            Some(time)
        );
        assert_eq!(Timestamp::parse_rfc3339("yesterday"), None);
    }
}
