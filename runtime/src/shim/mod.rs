//! The shim: one `berth-shim` process per container, and the agent's handle to it.
//!
//! Process model (see ARCHITECTURE.md):
//!
//! ```text
//! agent ── posix_spawn ─▶ berth-shim start <dir>    (stdout: the "ready" pipe to the agent)
//!                          │ fork, parent exits; child setsid()s: outlives the agent
//!                          │ libcontainer build() + start()  (container init = our child)
//!                          │ writes started.json; {"error":..} on the ready pipe if it fails
//!                          └ exec ──▶ berth-shim monitor ...   (same pid, lean: no serde
//!                                       parsing, no libcontainer until the end; reports
//!                                       {"ok":..} on the ready pipe)
//!                                       poll: signalfd, stdout/stderr pipes, control.sock,
//!                                             stop deadline
//!                                       init exits → kill what is left in its cgroup,
//!                                       drain logs, write exit.json atomically,
//!                                       libcontainer delete, exit
//! agent ── posix_spawn ─▶ berth-shim exec <dir> ...  (one per exec; joins the container;
//!                                                      outcome in exec-<pid>.status)
//! ```
//!
//! Files in the shim directory are listed in [`crate::layout`]. The agent side is [`Shim`]
//! (spawn, wait, signal, stop) and [`recover`] (finding shims after an agent restart).
//! `berth-shim`'s own entry points are in [`entry`].

mod control;
pub mod cri_log;
pub mod entry;
mod executor;
mod handle;
mod launch;
mod monitor;
mod process_setup;
mod recover;
mod start_lock;
mod tenant;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::layout::{ContainerId, PodUid};

pub use handle::{Shim, ShimError, SpawnOptions};
pub(crate) use launch::delete_state as delete_libcontainer_state;
pub use recover::{DirFacts, RecoveredContainer, RecoveredState, Verdict, judge, recover};
pub use start_lock::StartLockError;
pub(crate) use start_lock::{create as create_start_lock, fence as fence_start};
pub use tenant::{ExecArgs, ExecStatus, status_path as exec_status_path};

/// An error and its sources on one line (`a: b: c`), for logs and for messages that cross a
/// process boundary.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    launch::chain(err)
}

/// File names inside a shim directory.
pub(crate) mod files {
    pub const CONFIG: &str = "shim-config.json";
    pub const BUNDLE: &str = "bundle";
    pub const PID: &str = "pid";
    pub const STARTED: &str = "started.json";
    pub const EXIT: &str = "exit.json";
    pub const CONTROL: &str = "control.sock";
    pub const LOG: &str = "shim.log";
    /// Held by the shim process for its whole life (see [`super::start_lock`]).
    pub const START_LOCK: &str = "start.lock";
}

/// Where and how a container's output is logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    /// The CRI log file (the agent uses `<data>/logs/<ns>_<pod>_<uid>/<container>/<n>.log`).
    pub path: PathBuf,
    /// Rotate when the file would grow past this many bytes.
    pub max_size: u64,
    /// Files kept, the live one included (`path`, `path.1`, ... `path.<max_files-1>`).
    pub max_files: u32,
    /// Longer lines are split into `P` (partial) records of this many bytes.
    pub max_line: usize,
}

impl LogConfig {
    /// kubelet's defaults: 10 MiB, 5 files; containerd's 16 KiB line limit.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            max_size: 10 << 20,
            max_files: 5,
            max_line: 16 << 10,
        }
    }
}

/// The cgroup files the shim reads when the container ends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupFiles {
    /// `cgroup.procs` of the container's cgroup in each hierarchy: what is left is killed.
    pub procs: Vec<PathBuf>,
    /// `memory.oom_control` (v1) or `memory.events` (v2): its `oom_kill` count tells whether
    /// the kernel's OOM killer ended a process of the container.
    pub oom_events: Option<PathBuf>,
}

/// What the agent asks a shim to run, written to `shim-config.json` before the shim starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimConfig {
    pub id: ContainerId,
    /// The pod the container belongs to, if any (for recovery).
    pub pod: Option<PodUid>,
    /// The OCI bundle (holds config.json).
    pub bundle: PathBuf,
    pub libcontainer_root: PathBuf,
    pub log: LogConfig,
    pub cgroup: CgroupFiles,
    /// Free-form labels the agent wants back after a restart (pod name, container name...).
    pub labels: BTreeMap<String, String>,
    /// `cgroup.procs` files the shim moves itself into before creating the container (see
    /// [`crate::cgroup::ensure_shim_cgroup`]); empty to stay where it was started.
    #[serde(default)]
    pub shim_cgroup_procs: Vec<PathBuf>,
    /// The container's seccomp filter compiled ahead of time ([`crate::seccomp_program`]),
    /// installed by the shim right before `execve` of the container's process and of every
    /// exec'd one; the bundle's config.json then has no `linux.seccomp`. `None`: libcontainer
    /// applies config.json's profile itself (if any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_program: Option<PathBuf>,
}

/// File name of the precompiled seccomp program in a bundle.
pub const SECCOMP_PROGRAM: &str = "seccomp.bpf";

/// A precompiled seccomp program named by a shim config that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SeccompProgramError {
    #[error("reading the seccomp program {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("seccomp program {path}")]
    Decode {
        path: PathBuf,
        #[source]
        source: crate::seccomp_program::InstallError,
    },
}

/// Reads the precompiled seccomp program `config` names, if it names one. A program that is
/// named but cannot be read or decoded is an error: the container must not run unfiltered.
pub(crate) fn load_seccomp_program(
    config: &ShimConfig,
) -> Result<Option<crate::seccomp_program::Program>, SeccompProgramError> {
    let Some(path) = &config.seccomp_program else {
        return Ok(None);
    };
    let bytes = std::fs::read(path).map_err(|source| SeccompProgramError::Read {
        path: path.clone(),
        source,
    })?;
    crate::seccomp_program::Program::from_bytes(&bytes)
        .map(Some)
        .map_err(|source| SeccompProgramError::Decode {
            path: path.clone(),
            source,
        })
}

/// How a container ended, recorded by its shim in `exit.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The exit code as Kubernetes reports it: the process's code, or 128 + signal.
    pub exit_code: i32,
    /// The signal that killed the init process, if one did.
    pub signal: Option<i32>,
    /// The kernel's OOM killer killed a process of the container.
    pub oom_killed: bool,
    /// A stop was requested (through the control socket) before the container ended.
    pub stop_requested: bool,
    /// RFC 3339 UTC.
    pub started_at: String,
    /// RFC 3339 UTC.
    pub finished_at: String,
}

impl ExitRecord {
    /// The Kubernetes `reason` for a terminated container.
    pub fn reason(&self) -> &'static str {
        if self.oom_killed {
            "OOMKilled"
        } else if self.exit_code == 0 {
            "Completed"
        } else {
            "Error"
        }
    }

    /// `started_at` parsed.
    pub fn started_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        parse_time(&self.started_at)
    }

    /// `finished_at` parsed.
    pub fn finished_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        parse_time(&self.finished_at)
    }
}

fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// The end of a container as the agent learns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerExit {
    /// The shim recorded how the container ended.
    Exited(ExitRecord),
    /// The shim is gone and left no exit record (killed, crashed): the container's fate is
    /// unknown and must not be taken for success.
    Unknown { reason: String },
}

/// What the shim writes to `started.json` once the container runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StartedRecord {
    pub init_pid: i32,
    pub started_at: String,
}

/// The message on the ready pipe.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ReadyMessage {
    Ok {
        shim_pid: i32,
        shim_start_time: u64,
        init_pid: i32,
        started_at: String,
    },
    Error {
        message: String,
    },
}

/// Reads `pid`: the shim's pid and start time.
pub(crate) fn read_pid_file(dir: &Path) -> Option<(i32, u64)> {
    let text = std::fs::read_to_string(dir.join(files::PID)).ok()?;
    let mut parts = text.split_whitespace();
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Reads `exit.json`, if the shim wrote it.
pub(crate) fn read_exit_record(dir: &Path) -> Option<ExitRecord> {
    let text = std::fs::read(dir.join(files::EXIT)).ok()?;
    serde_json::from_slice(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_reasons_follow_kubernetes() {
        let mut r = ExitRecord {
            exit_code: 0,
            signal: None,
            oom_killed: false,
            stop_requested: false,
            started_at: "2024-01-01T00:00:00.000000000Z".into(),
            finished_at: "2024-01-01T00:00:01.500000000Z".into(),
        };
        assert_eq!(r.reason(), "Completed");
        r.exit_code = 137;
        r.signal = Some(9);
        assert_eq!(r.reason(), "Error");
        r.oom_killed = true;
        assert_eq!(r.reason(), "OOMKilled");
        let d = r.finished_at().unwrap() - r.started_at().unwrap();
        assert_eq!(d.num_milliseconds(), 1500);
    }
}
