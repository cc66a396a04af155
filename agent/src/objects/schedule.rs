//! CronJob schedules: checked with the rules (and messages) of the parser Kubernetes uses
//! (robfig/cron's standard parser: five fields, `* , - /`, month and weekday names, `?`, the
//! `@` macros and `@every`), computed with `croner` in the CronJob's IANA time zone.
//!
//! Why croner: it takes five-field patterns natively, handles names, `?` and the macros,
//! works with chrono and chrono-tz time zones across DST changes, and is maintained. The
//! `cron` crate wants a seconds field and has no `?`. Because croner also accepts extensions
//! Kubernetes rejects (`L`, `W`, `#`), berth validates with its own robfig-compatible parser
//! and hands croner an explicit, normalised pattern.

use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;

/// A parsed schedule, ready to compute run times.
#[derive(Clone, Debug)]
pub struct Schedule {
    rule: Rule,
    time_zone: Tz,
}

#[derive(Clone, Debug)]
enum Rule {
    Cron(Box<croner::Cron>),
    Every(TimeDelta),
}

/// A schedule or time zone Kubernetes would reject; `Display` gives robfig/cron's or Go's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The schedule text is not valid.
    #[error("{0}")]
    Schedule(String),
    /// The time zone is not a known IANA name.
    #[error("{0}")]
    TimeZone(String),
}

struct Field {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Field = Field {
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: Field = Field {
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DAY_OF_WEEK: Field = Field {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// One field's values, or "every value" written as a star (which matters for the
/// day-of-month/day-of-week rule: two restricted day fields match when either matches).
struct FieldValues {
    star: bool,
    values: std::collections::BTreeSet<u32>,
}

impl FieldValues {
    fn pattern(&self) -> String {
        if self.star {
            "*".to_owned()
        } else {
            self.values
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        }
    }
}

/// Parses a schedule and an optional `timeZone` (UTC when absent) as a CronJob would.
pub fn parse(schedule: &str, time_zone: Option<&str>) -> Result<Schedule, ScheduleError> {
    let time_zone = match time_zone {
        Some(name) => parse_time_zone(name)?,
        None => Tz::UTC,
    };
    let rule = parse_rule(schedule.trim())?;
    Ok(Schedule { rule, time_zone })
}

/// Checks a time zone name as Kubernetes does (`time.LoadLocation`, and no `Local`).
pub fn parse_time_zone(name: &str) -> Result<Tz, ScheduleError> {
    if name.is_empty() {
        return Err(ScheduleError::TimeZone(
            "timeZone must be nil or non-empty string".to_owned(),
        ));
    }
    if name.eq_ignore_ascii_case("local") {
        return Err(ScheduleError::TimeZone(
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"
                .to_owned(),
        ));
    }
    let valid_chars = name.split('/').all(|part| {
        !part.is_empty()
            && part.len() <= 14
            && part != "."
            && part != ".."
            && !part.starts_with('-')
            && part
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b'+'))
    });
    match Tz::from_str(name) {
        Ok(tz) if valid_chars => Ok(tz),
        _ => Err(ScheduleError::TimeZone(format!("unknown time zone {name}"))),
    }
}

fn parse_rule(spec: &str) -> Result<Rule, ScheduleError> {
    let err = |m: String| ScheduleError::Schedule(m);
    if spec.is_empty() {
        return Err(err("empty spec string".to_owned()));
    }
    if let Some(descriptor) = spec.strip_prefix('@') {
        let pattern = match descriptor.to_ascii_lowercase().as_str() {
            "yearly" | "annually" => "0 0 1 1 *",
            "monthly" => "0 0 1 * *",
            "weekly" => "0 0 * * 0",
            "daily" | "midnight" => "0 0 * * *",
            "hourly" => "0 * * * *",
            d if d.starts_with("every ") => {
                let text = descriptor["every ".len()..].trim();
                let duration = parse_go_duration(text).ok_or_else(|| {
                    err(format!(
                        "failed to parse duration {spec}: time: invalid duration \"{text}\""
                    ))
                })?;
                // robfig/cron: at least one second, whole seconds.
                let seconds = (duration.num_seconds()).max(1);
                return Ok(Rule::Every(TimeDelta::seconds(seconds)));
            }
            _ => return Err(err(format!("unrecognized descriptor: {spec}"))),
        };
        return parse_rule(pattern);
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        )));
    }
    let minute = parse_field(fields[0], &MINUTE).map_err(err)?;
    let hour = parse_field(fields[1], &HOUR).map_err(err)?;
    let day_of_month = parse_field(fields[2], &DAY_OF_MONTH).map_err(err)?;
    let month = parse_field(fields[3], &MONTH).map_err(err)?;
    let day_of_week = parse_field(fields[4], &DAY_OF_WEEK).map_err(err)?;
    let pattern = format!(
        "{} {} {} {} {}",
        minute.pattern(),
        hour.pattern(),
        day_of_month.pattern(),
        month.pattern(),
        day_of_week.pattern()
    );
    let cron = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(&pattern)
        .map_err(|e| err(format!("cannot compute schedule {pattern:?}: {e}")))?;
    Ok(Rule::Cron(Box::new(cron)))
}

fn parse_field(text: &str, field: &Field) -> Result<FieldValues, String> {
    let mut values = FieldValues {
        star: false,
        values: Default::default(),
    };
    for expression in text.split(',') {
        let (start, end, step, star) = parse_range(expression, field)?;
        values.star |= star;
        let mut value = start;
        while value <= end {
            values.values.insert(value);
            value += step;
        }
    }
    Ok(values)
}

/// robfig/cron's `getRange`: returns (start, end, step, written as a star).
fn parse_range(expression: &str, field: &Field) -> Result<(u32, u32, u32, bool), String> {
    let range_and_step: Vec<&str> = expression.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_and_high.len() == 1;
    let (start, mut end, mut star) = if low_and_high[0] == "*" || low_and_high[0] == "?" {
        (field.min, field.max, true)
    } else {
        let start = parse_int_or_name(low_and_high[0], field.names)?;
        let end = match low_and_high.len() {
            1 => start,
            2 => parse_int_or_name(low_and_high[1], field.names)?,
            _ => return Err(format!("too many hyphens: {expression}")),
        };
        (start, end, false)
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = parse_int(range_and_step[1])?;
            // `N/step` means `N-max/step`.
            if single {
                end = field.max;
            }
            if step > 1 {
                star = false;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expression}")),
    };
    if start < field.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expression}",
            field.min
        ));
    }
    if end > field.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expression}",
            field.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expression}"
        ));
    }
    if step == 0 {
        return Err(format!(
            "step of range should be a positive number: {expression}"
        ));
    }
    Ok((start, end, step, star))
}

fn parse_int_or_name(text: &str, names: &[&str]) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(index) = names.iter().position(|n| *n == lower) {
        // Month names start at 1, weekday names at 0.
        let offset = if names.len() == 12 { 1 } else { 0 };
        return Ok(index as u32 + offset);
    }
    parse_int(text)
}

fn parse_int(text: &str) -> Result<u32, String> {
    match text.parse::<i64>() {
        Ok(n) if n < 0 => Err(format!("negative number ({n}) not allowed: {text}")),
        Ok(n) => u32::try_from(n).map_err(|_| format!("end of range ({n}) above maximum: {text}")),
        Err(_) => Err(format!(
            "failed to parse int from {text}: strconv.Atoi: parsing \"{text}\": invalid syntax"
        )),
    }
}

/// Go's `time.ParseDuration` for the units a schedule can use (h, m, s, ms, us, ns).
fn parse_go_duration(text: &str) -> Option<TimeDelta> {
    if text.is_empty() {
        return None;
    }
    let mut rest = text;
    let mut total_nanos: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return None;
        }
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3.6e12,
            "m" => 6e10,
            "s" => 1e9,
            "ms" => 1e6,
            "us" | "µs" => 1e3,
            "ns" => 1.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total_nanos += number * scale;
    }
    Some(TimeDelta::nanoseconds(total_nanos as i64))
}

impl Schedule {
    /// The schedule's time zone.
    pub fn time_zone(&self) -> Tz {
        self.time_zone
    }

    /// The first scheduled time strictly after `after`, or `None` if there is none.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.rule {
            Rule::Every(delay) => {
                let whole = DateTime::<Utc>::from_timestamp(after.timestamp(), 0)?;
                Some(whole + *delay)
            }
            Rule::Cron(cron) => {
                let local = after.with_timezone(&self.time_zone);
                cron.find_next_occurrence(&local, false)
                    .ok()
                    .map(|t| t.with_timezone(&Utc))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn schedules_are_checked_with_robfig_messages() {
        let cases: &[(&str, Option<&str>)] = &[
            ("*/5 * * * *", None),
            ("0 3 * * sun", None),
            ("0 0 ? * MON-FRI", None),
            ("@daily", None),
            ("@midnight", None),
            ("@every 1h30m", None),
            (
                "0 0 * *",
                Some("expected exactly 5 fields, found 4: [0 0 * *]"),
            ),
            (
                "60 * * * *",
                Some("end of range (60) above maximum (59): 60"),
            ),
            (
                "x * * * *",
                Some("failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax"),
            ),
            (
                "0 0 L * *",
                Some("failed to parse int from L: strconv.Atoi: parsing \"L\": invalid syntax"),
            ),
            (
                "@fortnightly",
                Some("unrecognized descriptor: @fortnightly"),
            ),
            (
                "5-1 * * * *",
                Some("beginning of range (5) beyond end of range (1): 5-1"),
            ),
            (
                "*/0 * * * *",
                Some("step of range should be a positive number: */0"),
            ),
        ];
        for (text, expected) in cases {
            let got = parse(text, None).err().map(|e| e.to_string());
            assert_eq!(got.as_deref(), *expected, "{text}");
        }
    }

    #[test]
    fn next_run_follows_the_time_zone() {
        let schedule = parse("30 2 * * *", Some("Europe/Berlin")).unwrap();
        // 02:30 Berlin in winter (UTC+1) is 01:30 UTC.
        let next = schedule.next_after(at("2024-01-10T00:00:00Z")).unwrap();
        assert_eq!(next, at("2024-01-10T01:30:00Z"));
    }

    #[test]
    fn restricted_day_fields_match_either_day() {
        // Day 1 of the month OR a Monday, as in cron and Kubernetes.
        let schedule = parse("0 0 1 * mon", None).unwrap();
        let next = schedule.next_after(at("2024-01-02T00:00:00Z")).unwrap();
        assert_eq!(next, at("2024-01-08T00:00:00Z"));
    }

    #[test]
    fn step_from_a_start_runs_to_the_end_of_the_range() {
        let schedule = parse("50/5 * * * *", None).unwrap();
        let next = schedule.next_after(at("2024-01-01T00:51:00Z")).unwrap();
        assert_eq!(next, at("2024-01-01T00:55:00Z"));
    }

    #[test]
    fn time_zones_must_be_iana_names() {
        assert!(parse_time_zone("America/New_York").is_ok());
        assert_eq!(
            parse_time_zone("Mars/Olympus").unwrap_err().to_string(),
            "unknown time zone Mars/Olympus"
        );
        assert!(parse_time_zone("Local").is_err());
    }
}
