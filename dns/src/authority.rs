//! The handle the agent holds: feed it Services and Pods, it publishes answer indexes.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

use crate::config::{ConfigError, ZoneConfig, Zones};
use crate::index::ZoneIndex;
use crate::model::{Change, Snapshot};
use crate::records::{Builder, UpdateStats};

/// The cluster's DNS data: the current answer index and the state that updates it.
///
/// Readers (the server) load the current index without locking; writers (the agent)
/// call [`Authority::replace`] or [`Authority::apply`], which update incrementally and
/// swap in the new index atomically before returning: an answer sent after the call
/// returns reflects the change.
pub struct Authority {
    config: ZoneConfig,
    current: ArcSwap<ZoneIndex>,
    builder: Mutex<Builder>,
}

/// What an update did and how long it took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdateReport {
    /// Counts from the record builder.
    pub stats: UpdateStats,
    /// Time from the call to the new index being visible.
    pub elapsed: std::time::Duration,
}

impl Authority {
    /// An authority with empty zones (only the static records: SOA, NS, `dns-version`).
    pub fn new(config: ZoneConfig) -> Result<Self, ConfigError> {
        let zones = Zones::new(&config)?;
        let mut builder = Builder::new(zones);
        builder.apply(std::iter::empty());
        let index = builder.publish(unix_now());
        Ok(Self {
            config,
            current: ArcSwap::from_pointee(index),
            builder: Mutex::new(builder),
        })
    }

    /// The configuration this authority serves.
    pub fn config(&self) -> &ZoneConfig {
        &self.config
    }

    /// Replaces the whole input with `snapshot`. Only what differs from the previous
    /// input is recomputed, but every object is compared: about 20 ms at 10,000 Pods
    /// (and 0.3 s for the first build), so call it for (re)sync, from a blocking-capable
    /// thread, and send single changes through [`Authority::apply`]. Object keys must be
    /// unique within the snapshot.
    pub fn replace(&self, snapshot: Snapshot) -> UpdateReport {
        let started = Instant::now();
        let mut builder = self.lock();
        let stats = builder.replace(snapshot);
        self.publish(&mut builder, stats, started)
    }

    /// Applies incremental changes (creations, updates, deletions of Services and Pods):
    /// about 0.1 ms for one Pod change at 10,000 Pods.
    pub fn apply(&self, changes: impl IntoIterator<Item = Change>) -> UpdateReport {
        let started = Instant::now();
        let mut builder = self.lock();
        let stats = builder.apply(changes);
        self.publish(&mut builder, stats, started)
    }

    /// The current index.
    pub fn index(&self) -> Arc<ZoneIndex> {
        self.current.load_full()
    }

    pub(crate) fn load(&self) -> arc_swap::Guard<Arc<ZoneIndex>> {
        self.current.load()
    }

    /// The zones in master-file format, one `(apex, text)` per zone: the same content the
    /// server answers from (used to load comparison servers and for debugging).
    pub fn master_files(&self) -> Vec<(String, String)> {
        self.lock().master_files()
    }

    fn lock(&self) -> MutexGuard<'_, Builder> {
        // A panic inside an update leaves at worst a stale index; keep serving.
        self.builder
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn publish(
        &self,
        builder: &mut Builder,
        mut stats: UpdateStats,
        started: Instant,
    ) -> UpdateReport {
        if stats.names_changed > 0 {
            let index = builder.publish(unix_now());
            stats.serial = index.serial();
            self.current.store(Arc::new(index));
        } else {
            stats.serial = self.current.load().serial();
        }
        UpdateReport {
            stats,
            elapsed: started.elapsed(),
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
