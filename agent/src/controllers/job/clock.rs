//! Conversions between chrono times, which the decision logic computes with, and the API's
//! `Time` (whole seconds, as Kubernetes stores timestamps in objects).

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The API form of `time`, truncated to the second.
pub fn api_time(time: DateTime<Utc>) -> Time {
    Time(
        k8s_openapi::jiff::Timestamp::from_second(time.timestamp())
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

/// The chrono form of an API time.
pub fn chrono_time(time: &Time) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(time.0.as_second(), time.0.subsec_nanosecond().max(0) as u32)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// `time` truncated to the second (what survives a round trip through the state).
pub fn whole_seconds(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(time.timestamp(), 0).unwrap_or(time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_times_round_trip_at_second_resolution() {
        let t = DateTime::parse_from_rfc3339("2024-03-31T01:30:00.75Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(chrono_time(&api_time(t)), whole_seconds(t));
        assert_eq!(
            serde_json::to_value(api_time(t)).unwrap(),
            serde_json::json!("2024-03-31T01:30:00Z")
        );
    }
}
