//! Finding shims again after the agent restarts, from the files under `<run>/shims/`.
//!
//! What a shim directory holds tells where an interrupted start got to (see
//! [`crate::layout`] and [`super::start_lock`]):
//!
//! | files and processes                                  | [`RecoveredState`]   |
//! |------------------------------------------------------|----------------------|
//! | `exit.json`                                          | `Exited`             |
//! | `started.json`, shim alive                           | `Running`            |
//! | `started.json`, shim gone, no `exit.json`            | `Unknown`            |
//! | no `started.json` (start lock held by a shim or not) | `StartUnconfirmed`   |
//!
//! A start is confirmed only by `started.json`, which the shim writes once the container runs
//! and before it tells the agent. Without it the container was never reported started: its
//! shim may be mid-start, dead, or not yet at its lock. [`crate::Runtime::remove_container`]
//! with `force` ends all of these cleanly (it takes the start lock, killing a shim that holds
//! it, so that none can start the container afterwards), and the caller starts it again.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

use super::{ExitRecord, Shim, ShimConfig, files, read_exit_record, read_pid_file};
use crate::layout::{ContainerId, PodUid, RuntimeDirs};

/// What became of a container while the agent was away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveredState {
    /// Its shim still runs it.
    Running(Shim),
    /// It ended and its shim recorded how.
    Exited(ExitRecord),
    /// It started, and its shim is gone without an exit record: the container may still run,
    /// unsupervised. Never success.
    Unknown { reason: String },
    /// Its start was never confirmed (no `started.json`): remove it with force (which stops a
    /// shim still starting it) and start it again. Never a run of the container.
    StartUnconfirmed {
        /// The pid of the shim that was still starting it, if one was.
        starting_shim: Option<i32>,
        reason: String,
    },
}

/// One container found under the run dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredContainer {
    pub id: ContainerId,
    pub pod: Option<PodUid>,
    pub labels: BTreeMap<String, String>,
    /// The CRI log file the shim writes (or wrote).
    pub log_path: Option<PathBuf>,
    pub state: RecoveredState,
}

/// What the files of a shim directory say, and whether its shim lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DirFacts {
    /// `exit.json` is there.
    pub exit_record: bool,
    /// `started.json` is there: the container ran and the shim said so.
    pub started_record: bool,
    /// The process of the pid file is alive (same start time, not a zombie).
    pub shim_alive: bool,
    /// The pid of the process holding the start lock (a shim, starting or monitoring).
    pub lock_holder: Option<i32>,
}

/// The decision [`judge`] makes over [`DirFacts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Exited,
    Running,
    /// Started, shim gone, end not recorded.
    Unsupervised,
    /// Never confirmed started; `starting_shim` still works on it.
    Unconfirmed {
        starting_shim: Option<i32>,
    },
}

/// Decides what a shim directory means (pure).
pub fn judge(facts: &DirFacts) -> Verdict {
    match facts {
        DirFacts {
            exit_record: true, ..
        } => Verdict::Exited,
        DirFacts {
            started_record: true,
            shim_alive: true,
            ..
        } => Verdict::Running,
        DirFacts {
            started_record: true,
            ..
        } => Verdict::Unsupervised,
        DirFacts { lock_holder, .. } => Verdict::Unconfirmed {
            starting_shim: *lock_holder,
        },
    }
}

/// Lists every container that has a shim directory, with its state, sorted by id. Reads only:
/// nothing is stopped or removed.
pub fn recover(dirs: &RuntimeDirs) -> io::Result<Vec<RecoveredContainer>> {
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(dirs.shims_dir()) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(|n| ContainerId::new(n).ok())
        else {
            continue;
        };
        found.push(recover_one(id, entry.path()));
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(found)
}

fn recover_one(id: ContainerId, dir: PathBuf) -> RecoveredContainer {
    let config: Option<ShimConfig> = std::fs::read(dir.join(files::CONFIG))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let (pod, labels, log_path) = match &config {
        Some(c) => (c.pod.clone(), c.labels.clone(), Some(c.log.path.clone())),
        None => (None, BTreeMap::new(), None),
    };
    let record = read_exit_record(&dir);
    let shim = Shim::from_dir(id.clone(), dir.clone());
    let facts = DirFacts {
        exit_record: record.is_some(),
        started_record: dir.join(files::STARTED).exists(),
        shim_alive: shim.is_some()
            || read_pid_file(&dir).is_some_and(|(pid, start)| {
                matches!(crate::sys::process_start_time(pid), Ok(Some((t, false))) if t == start)
            }),
        lock_holder: super::start_lock::holder(&dir).ok().flatten(),
    };
    let state = match (judge(&facts), record, shim) {
        (Verdict::Exited, Some(record), _) => RecoveredState::Exited(record),
        (Verdict::Running, _, Some(shim)) => RecoveredState::Running(shim),
        (Verdict::Unconfirmed { starting_shim }, _, _) => RecoveredState::StartUnconfirmed {
            starting_shim,
            reason: match starting_shim {
                Some(pid) => format!(
                    "the agent stopped while its shim (pid {pid}) was starting it; the start was never confirmed"
                ),
                None => "the agent stopped before its shim confirmed the start".to_owned(),
            },
        },
        // Unsupervised, or the shim ended between reading its files.
        _ => RecoveredState::Unknown {
            reason: "its shim is gone and recorded no exit: the container may still be running unsupervised"
                .to_owned(),
        },
    };
    RecoveredContainer {
        id,
        pod,
        labels,
        log_path,
        state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shim_directory_is_judged_by_its_records_and_its_shim() {
        let f = |exit_record, started_record, shim_alive, lock_holder| DirFacts {
            exit_record,
            started_record,
            shim_alive,
            lock_holder,
        };
        let unconfirmed = |starting_shim| Verdict::Unconfirmed { starting_shim };
        let table = [
            // Prepared, the agent died before spawning (or the shim before its lock).
            (
                f(false, false, false, None),
                unconfirmed(None),
                "never spawned",
            ),
            // The shim holds its lock: forked, creating or starting the container.
            (
                f(false, false, false, Some(7)),
                unconfirmed(Some(7)),
                "before the pid file",
            ),
            (
                f(false, false, true, Some(7)),
                unconfirmed(Some(7)),
                "creating",
            ),
            // The shim died mid-start (killed, crashed): nothing confirmed it ran.
            (
                f(false, false, false, None),
                unconfirmed(None),
                "died mid-start",
            ),
            (
                f(false, true, true, Some(7)),
                Verdict::Running,
                "started, monitoring",
            ),
            (
                f(false, true, true, None),
                Verdict::Running,
                "started by an older shim",
            ),
            (
                f(false, true, false, None),
                Verdict::Unsupervised,
                "shim killed after start",
            ),
            (
                f(true, true, false, None),
                Verdict::Exited,
                "ended and recorded",
            ),
            (
                f(true, true, true, Some(7)),
                Verdict::Exited,
                "recorded, shim finishing",
            ),
        ];
        for (facts, want, case) in table {
            assert_eq!(judge(&facts), want, "{case}: {facts:?}");
        }
    }
}
