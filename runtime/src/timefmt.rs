//! RFC 3339 timestamps with nanoseconds, formatted without a date library so the shim's
//! monitor stays small.

use std::time::{SystemTime, UNIX_EPOCH};

/// Formats `t` as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (UTC, always nine fraction digits, so the
/// strings sort in time order).
pub fn rfc3339_nanos(t: SystemTime) -> String {
    let mut out = String::with_capacity(30);
    write_rfc3339_nanos(&mut out, t);
    out
}

/// Appends the timestamp of [`rfc3339_nanos`] to `out`.
pub fn write_rfc3339_nanos(out: &mut String, t: SystemTime) {
    use std::fmt::Write;
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_nanos()
    );
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_match_chrono_across_calendar_edges() {
        let cases = [
            0u64,
            951_782_400,   // 2000-02-29
            1_709_164_800, // 2024-02-29
            1_735_689_599, // 2024-12-31T23:59:59
            4_102_444_800, // 2100-01-01
            1_475_712_229,
        ];
        for secs in cases {
            for nanos in [0u32, 1, 669_794_202, 999_999_999] {
                let t = UNIX_EPOCH + Duration::new(secs, nanos);
                let want = chrono::DateTime::<chrono::Utc>::from(t)
                    .format("%Y-%m-%dT%H:%M:%S.%9fZ")
                    .to_string();
                assert_eq!(rfc3339_nanos(t), want);
            }
        }
    }
}
