//! The delay before a failed pod is replaced: 10 s after the first failure, doubling with
//! each further failure since the last success, capped at 6 minutes (Kubernetes' controller
//! code caps at 10 minutes, its documentation says 6; berth uses 6).

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The delay after the first failure.
pub const BASE: Duration = Duration::from_secs(10);
/// The longest delay.
pub const CAP: Duration = Duration::from_secs(6 * 60);

/// The delay owed after `failures` consecutive failures: 0, 10 s, 20 s, 40 s ... 6 min.
pub fn delay(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let doublings = (failures - 1).min(16);
    BASE.saturating_mul(1 << doublings).min(CAP)
}

/// How long to wait from `now` before replacing a pod, after `failures` consecutive failures
/// the last of which ended at `last_failure`.
pub fn remaining(
    failures: u32,
    last_failure: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Duration {
    let Some(last) = last_failure else {
        return Duration::ZERO;
    };
    let ready_at =
        last + chrono::TimeDelta::from_std(delay(failures)).unwrap_or(chrono::TimeDelta::MAX);
    (ready_at - now).to_std().unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_ten_seconds_up_to_six_minutes() {
        let cases = [
            (0, 0),
            (1, 10),
            (2, 20),
            (3, 40),
            (4, 80),
            (5, 160),
            (6, 320),
            (7, 360),
            (8, 360),
            (1000, 360),
        ];
        for (failures, seconds) in cases {
            assert_eq!(
                delay(failures),
                Duration::from_secs(seconds),
                "{failures} failures"
            );
        }
    }

    #[test]
    fn remaining_time_counts_from_the_last_failure() {
        let t0 = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |s: i64| t0 + chrono::TimeDelta::seconds(s);
        assert_eq!(remaining(1, Some(t0), at(3)), Duration::from_secs(7));
        assert_eq!(remaining(1, Some(t0), at(10)), Duration::ZERO);
        assert_eq!(remaining(1, Some(t0), at(99)), Duration::ZERO);
        assert_eq!(remaining(3, Some(t0), at(0)), Duration::from_secs(40));
        assert_eq!(remaining(0, Some(t0), at(0)), Duration::ZERO);
        assert_eq!(remaining(2, None, at(0)), Duration::ZERO);
    }
}
