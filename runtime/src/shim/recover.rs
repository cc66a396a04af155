//! Finding shims again after the agent restarts, from the files under `<run>/shims/`.

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
    /// Its shim is gone without an exit record, or never finished starting. Never success.
    Unknown { reason: String },
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

/// Lists every container that has a shim directory, with its state, sorted by id.
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
    let state = if let Some(record) = read_exit_record(&dir) {
        RecoveredState::Exited(record)
    } else if let Some(shim) = Shim::from_dir(id.clone(), dir.clone()) {
        RecoveredState::Running(shim)
    } else {
        let shim_alive = read_pid_file(&dir).is_some_and(|(pid, start)| {
            matches!(crate::sys::process_start_time(pid), Ok(Some((t, false))) if t == start)
        });
        RecoveredState::Unknown {
            reason: if shim_alive {
                "the agent stopped while the container was starting".to_owned()
            } else if dir.join(files::STARTED).exists() {
                "its shim is gone and recorded no exit: the container may still be running unsupervised"
                    .to_owned()
            } else {
                "its shim is gone and the container never reported that it started".to_owned()
            },
        }
    };
    RecoveredContainer {
        id,
        pod,
        labels,
        log_path,
        state,
    }
}
