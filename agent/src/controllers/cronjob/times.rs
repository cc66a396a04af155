//! Which scheduled time is due (pure): the most recent time the schedule names after the
//! last one handled and not after now, how many were missed, and when the next one comes.
//!
//! Times come from [`crate::objects::schedule::Schedule`] (croner in the CronJob's time zone).
//! Across daylight saving changes croner follows Vixie cron, which is what people who write
//! `30 2 * * *` expect: a fixed time that falls in the spring-forward gap runs at the first
//! instant after the gap, a fixed time that occurs twice in the autumn runs once (the first
//! time), and interval schedules (`*/15 * * * *`) keep their real-time rhythm through both.
//! Kubernetes' robfig/cron instead skips the gap and runs the repeated hour twice.

use chrono::{DateTime, TimeDelta, Utc};

use crate::objects::schedule::Schedule;

/// Beyond this many missed times the CronJob warns, as Kubernetes does.
pub const TOO_MANY_MISSED: usize = 100;

/// The scheduled time that is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Due {
    /// The most recent scheduled time in `(earliest, now]`.
    pub time: DateTime<Utc>,
    /// How many scheduled times fell in `(earliest, now]`, counted up to
    /// [`TOO_MANY_MISSED`] + 1.
    pub missed: usize,
}

/// The most recent scheduled time after `earliest` and not after `now`, if any.
///
/// Only the most recent one matters: after downtime a CronJob starts one Job, not one per
/// missed time. Up to [`TOO_MANY_MISSED`] times are walked one by one; beyond, the search
/// jumps back from `now` in growing windows, so a long downtime on a busy schedule stays
/// cheap.
pub fn most_recent_due(
    schedule: &Schedule,
    earliest: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<Due> {
    let mut time = schedule.next_after(earliest).filter(|t| *t <= now)?;
    let mut missed = 1;
    loop {
        match schedule.next_after(time) {
            Some(next) if next <= now => {
                time = next;
                missed += 1;
                if missed > TOO_MANY_MISSED {
                    let latest = latest_in_window(schedule, time, now).unwrap_or(time);
                    return Some(Due {
                        time: latest,
                        missed,
                    });
                }
            }
            _ => return Some(Due { time, missed }),
        }
    }
}

/// The latest scheduled time in `(floor, now]`, found by looking back from `now` over
/// windows that double until one holds a scheduled time.
fn latest_in_window(
    schedule: &Schedule,
    floor: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let mut window = TimeDelta::minutes(1);
    loop {
        let start = (now - window).max(floor);
        if let Some(mut time) = schedule.next_after(start).filter(|t| *t <= now) {
            while let Some(next) = schedule.next_after(time).filter(|t| *t <= now) {
                time = next;
            }
            return Some(time);
        }
        if start == floor {
            return None;
        }
        window = window * 2;
    }
}

/// The first scheduled time after `now`.
pub fn next_after(schedule: &Schedule, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    schedule.next_after(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::schedule::parse;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn the_most_recent_missed_time_is_due_and_the_others_are_counted() {
        let every_five = parse("*/5 * * * *", None).unwrap();
        // (last handled, now) -> (due, missed)
        let cases = [
            ("2024-01-01T10:00:00Z", "2024-01-01T10:04:59Z", None),
            (
                "2024-01-01T10:00:00Z",
                "2024-01-01T10:05:00Z",
                Some(("2024-01-01T10:05:00Z", 1)),
            ),
            (
                "2024-01-01T10:00:00Z",
                "2024-01-01T10:07:30Z",
                Some(("2024-01-01T10:05:00Z", 1)),
            ),
            (
                "2024-01-01T10:00:00Z",
                "2024-01-01T10:31:00Z",
                Some(("2024-01-01T10:30:00Z", 6)),
            ),
            (
                "2024-01-01T10:02:00Z",
                "2024-01-01T10:05:00Z",
                Some(("2024-01-01T10:05:00Z", 1)),
            ),
        ];
        for (earliest, now, expected) in cases {
            let due = most_recent_due(&every_five, at(earliest), at(now));
            assert_eq!(
                due.map(|d| (d.time, d.missed)),
                expected.map(|(t, n)| (at(t), n)),
                "{earliest} .. {now}"
            );
        }
    }

    #[test]
    fn a_long_downtime_still_finds_the_latest_time_cheaply() {
        let every_minute = parse("* * * * *", None).unwrap();
        let due = most_recent_due(
            &every_minute,
            at("2023-01-01T00:00:00Z"),
            at("2024-01-01T12:34:56Z"),
        )
        .unwrap();
        assert_eq!(due.time, at("2024-01-01T12:34:00Z"));
        assert!(due.missed > TOO_MANY_MISSED);

        // A schedule that is busy once a day and silent otherwise.
        let first_hour = parse("* 0 * * *", None).unwrap();
        let due = most_recent_due(
            &first_hour,
            at("2023-06-01T00:00:00Z"),
            at("2024-01-01T12:00:00Z"),
        )
        .unwrap();
        assert_eq!(due.time, at("2024-01-01T00:59:00Z"));
    }

    #[test]
    fn a_yearly_schedule_missed_for_decades_is_found() {
        let yearly = parse("@yearly", None).unwrap();
        let due = most_recent_due(
            &yearly,
            at("1900-06-01T00:00:00Z"),
            at("2024-03-01T00:00:00Z"),
        )
        .unwrap();
        assert_eq!(due.time, at("2024-01-01T00:00:00Z"));
    }

    #[test]
    fn daylight_saving_gaps_run_after_the_gap_and_repeats_run_once() {
        let berlin = parse("30 2 * * *", Some("Europe/Berlin")).unwrap();
        // 2024-03-31: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that night.
        let spring = [
            ("2024-03-30T12:00:00Z", "2024-03-31T01:00:00Z"), // 03:00 CEST, right after the gap
            ("2024-03-31T01:00:00Z", "2024-04-01T00:30:00Z"), // 02:30 CEST the next night
        ];
        // 2024-10-27: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
        let autumn = [
            ("2024-10-26T12:00:00Z", "2024-10-27T00:30:00Z"), // 02:30 CEST, the first of the two
            ("2024-10-27T00:30:00Z", "2024-10-28T01:30:00Z"), // not 02:30 CET again: the next night
        ];
        for (after, expected) in spring.iter().chain(autumn.iter()) {
            assert_eq!(
                berlin.next_after(at(after)),
                Some(at(expected)),
                "after {after}"
            );
        }
    }

    #[test]
    fn interval_schedules_keep_real_time_through_the_autumn_repeat() {
        let half_hourly = parse("*/30 * * * *", Some("Europe/Berlin")).unwrap();
        let mut times = Vec::new();
        let mut t = at("2024-10-26T23:45:00Z");
        for _ in 0..5 {
            t = half_hourly.next_after(t).unwrap();
            times.push(t);
        }
        let expected = [
            "2024-10-27T00:00:00Z",
            "2024-10-27T00:30:00Z",
            "2024-10-27T01:00:00Z",
            "2024-10-27T01:30:00Z",
            "2024-10-27T02:00:00Z",
        ];
        assert_eq!(times, expected.map(at).to_vec());
    }

    #[test]
    fn a_missed_time_in_the_spring_gap_is_due_once() {
        let new_york = parse("30 2 * * *", Some("America/New_York")).unwrap();
        // Down from the evening before the change until the morning after it.
        let due = most_recent_due(
            &new_york,
            at("2024-03-09T23:00:00Z"),
            at("2024-03-10T12:00:00Z"),
        )
        .unwrap();
        // 2024-03-10 02:30 EST does not exist; the run is at 03:00 EDT = 07:00 UTC.
        assert_eq!((due.time, due.missed), (at("2024-03-10T07:00:00Z"), 1));
    }
}
