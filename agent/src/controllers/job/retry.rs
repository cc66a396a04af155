//! Growing delays before acting again on an object whose commands failed, so that a
//! persistent error (an inadmissible template, a conflict that keeps coming back) does not
//! turn a controller into a busy loop. Kept in memory: a restart retries at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The first delay.
pub const FIRST: Duration = Duration::from_secs(1);
/// The longest delay.
pub const MAX: Duration = Duration::from_secs(120);

/// Retry delays by object uid.
#[derive(Debug, Default)]
pub struct Retries {
    by_uid: HashMap<String, (u32, Instant)>,
}

impl Retries {
    /// How long until `uid` may be acted on again (`None`: now).
    pub fn wait(&self, uid: &str) -> Option<Duration> {
        let (_, at) = self.by_uid.get(uid)?;
        at.checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
    }

    /// Records a failure of `uid`; returns the delay before the next attempt (1 s, doubling,
    /// at most 2 minutes).
    pub fn failed(&mut self, uid: &str) -> Duration {
        let entry = self
            .by_uid
            .entry(uid.to_owned())
            .or_insert((0, Instant::now()));
        entry.0 += 1;
        let delay = FIRST.saturating_mul(1 << (entry.0 - 1).min(10)).min(MAX);
        entry.1 = Instant::now() + delay;
        delay
    }

    /// Forgets the failures of `uid`.
    pub fn succeeded(&mut self, uid: &str) {
        self.by_uid.remove(uid);
    }

    /// Forgets every uid for which `keep` is false (objects that are gone).
    pub fn keep(&mut self, keep: impl Fn(&str) -> bool) {
        self.by_uid.retain(|uid, _| keep(uid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_per_object_and_reset_on_success() {
        let mut retries = Retries::default();
        assert_eq!(retries.wait("a"), None);
        assert_eq!(retries.failed("a"), Duration::from_secs(1));
        assert_eq!(retries.failed("a"), Duration::from_secs(2));
        assert_eq!(retries.failed("a"), Duration::from_secs(4));
        assert!(retries.wait("a").is_some());
        assert_eq!(retries.wait("b"), None);
        for _ in 0..20 {
            retries.failed("a");
        }
        assert_eq!(retries.failed("a"), MAX);
        retries.succeeded("a");
        assert_eq!(retries.wait("a"), None);
        retries.failed("b");
        retries.keep(|uid| uid != "b");
        assert_eq!(retries.wait("b"), None);
    }
}
