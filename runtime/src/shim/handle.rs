//! The agent's handle to a shim: spawn one and wait until its container runs, wait for the
//! container's end (pidfd), signal it, stop it with a grace period.

use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::control::{self, Request};
use super::{ContainerExit, ReadyMessage, StartedRecord, files, read_exit_record, read_pid_file};
use crate::layout::ContainerId;

/// How the agent runs `berth-shim`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnOptions {
    /// The `berth-shim` executable.
    pub shim_path: PathBuf,
    /// How long creating and starting a container may take before it is given up.
    pub start_timeout: Duration,
}

/// A failure talking to or starting a shim.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("running shim executable {path}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("container {id} failed to start: {message}")]
    StartFailed { id: ContainerId, message: String },
    #[error("container {id} did not start within {after:?}; its shim was killed")]
    StartTimeout { id: ContainerId, after: Duration },
    #[error(
        "the shim of container {id} ended without reporting whether the container started{log}"
    )]
    NoReport { id: ContainerId, log: String },
    #[error("container {id} is not running")]
    NotRunning { id: ContainerId },
    #[error("the shim of container {id} refused the request: {reply}")]
    Refused { id: ContainerId, reply: String },
    #[error("talking to the shim of container {id}")]
    Control {
        id: ContainerId,
        #[source]
        source: io::Error,
    },
    #[error("waiting for container {id}")]
    Wait {
        id: ContainerId,
        #[source]
        source: io::Error,
    },
}

/// A running container's shim, as the agent holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shim {
    id: ContainerId,
    dir: PathBuf,
    pid: i32,
    start_time: u64,
    init_pid: i32,
    started_at: String,
}

fn control_timeout() -> Duration {
    Duration::from_secs(5)
}

impl Shim {
    /// Starts `berth-shim start <dir>` for a prepared shim directory (config and bundle
    /// written) and returns once the container runs, or with the reason it did not.
    pub async fn spawn(
        id: ContainerId,
        dir: PathBuf,
        options: &SpawnOptions,
    ) -> Result<Shim, ShimError> {
        let options = options.clone();
        let id2 = id.clone();
        tokio::task::spawn_blocking(move || spawn_blocking(id2, dir, &options))
            .await
            .map_err(|e| ShimError::Wait {
                id,
                source: io::Error::other(e),
            })?
    }

    /// Builds a handle from the files of a running shim (for recovery). `None` unless the shim
    /// is alive, is the process that wrote its pid file, and its container started.
    pub(crate) fn from_dir(id: ContainerId, dir: PathBuf) -> Option<Shim> {
        let (pid, start_time) = read_pid_file(&dir)?;
        let started: StartedRecord =
            serde_json::from_slice(&std::fs::read(dir.join(files::STARTED)).ok()?).ok()?;
        let shim = Shim {
            id,
            dir,
            pid,
            start_time,
            init_pid: started.init_pid,
            started_at: started.started_at,
        };
        shim.is_alive().then_some(shim)
    }

    /// A handle to whatever live shim wrote the pid file in `dir`, started or not (for
    /// removal).
    pub(crate) fn from_pid_file(id: ContainerId, dir: PathBuf) -> Option<Shim> {
        let (pid, start_time) = read_pid_file(&dir)?;
        let started: Option<StartedRecord> = std::fs::read(dir.join(files::STARTED))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let shim = Shim {
            id,
            dir,
            pid,
            start_time,
            init_pid: started.as_ref().map_or(0, |s| s.init_pid),
            started_at: started.map(|s| s.started_at).unwrap_or_default(),
        };
        shim.is_alive().then_some(shim)
    }

    /// The container's id.
    pub fn id(&self) -> &ContainerId {
        &self.id
    }

    /// The shim's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The shim's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The container init's pid (host pid namespace).
    pub fn init_pid(&self) -> i32 {
        self.init_pid
    }

    /// When the container started (RFC 3339).
    pub fn started_at(&self) -> &str {
        &self.started_at
    }

    /// Whether the shim process is still running. A recycled pid (another start time) or a
    /// zombie counts as gone.
    pub fn is_alive(&self) -> bool {
        matches!(
            crate::sys::process_start_time(self.pid),
            Ok(Some((t, false))) if t == self.start_time
        )
    }

    /// The container's end, as far as it is known now: `None` while the shim runs.
    pub fn try_exit(&self) -> Option<ContainerExit> {
        (!self.is_alive()).then(|| self.exit_from_files())
    }

    fn exit_from_files(&self) -> ContainerExit {
        match read_exit_record(&self.dir) {
            Some(record) => ContainerExit::Exited(record),
            None => ContainerExit::Unknown {
                reason: format!(
                    "the shim (pid {}) of container {} ended without recording the container's exit",
                    self.pid, self.id
                ),
            },
        }
    }

    /// Waits until the container has ended and its shim has finished (pidfd readiness: works
    /// for shims the agent did not start, such as after an agent restart).
    pub async fn wait(&self) -> Result<ContainerExit, ShimError> {
        let pidfd = match crate::sys::pidfd_open(self.pid) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(self.exit_from_files()),
            Err(source) => {
                return Err(ShimError::Wait {
                    id: self.id.clone(),
                    source,
                });
            }
        };
        // The pidfd pins the process: if it is still ours now, the fd refers to our shim.
        if !self.is_alive() {
            return Ok(self.exit_from_files());
        }
        let wait_err = |source| ShimError::Wait {
            id: self.id.clone(),
            source,
        };
        // SAFETY: `pidfd` is an OwnedFd moved into the AsyncFd: it stays open and always
        // returns the same descriptor until the AsyncFd is dropped.
        let afd = unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }
            .map_err(|e| wait_err(e.into()))?;
        let _ready = afd.readable().await.map_err(wait_err)?;
        Ok(self.exit_from_files())
    }

    /// Sends `signal` to the container's init process (through the shim, which cannot hit a
    /// recycled pid: init is its unreaped child).
    pub async fn signal(&self, signal: i32) -> Result<(), ShimError> {
        self.request(Request::Signal(signal)).await
    }

    /// Stops the container: `signal` now, SIGKILL when `grace` ends. The shim carries the stop
    /// out even if the agent goes away meanwhile. Returns once the container has ended.
    pub async fn stop(&self, signal: i32, grace: Duration) -> Result<ContainerExit, ShimError> {
        match self
            .request(Request::Stop {
                signal,
                grace_ms: grace.as_millis() as u64,
            })
            .await
        {
            Ok(()) | Err(ShimError::NotRunning { .. }) => {}
            Err(e) => return Err(e),
        }
        self.wait().await
    }

    async fn request(&self, request: Request) -> Result<(), ShimError> {
        if !self.is_alive() {
            return Err(ShimError::NotRunning {
                id: self.id.clone(),
            });
        }
        let dir = self.dir.clone();
        let reply = tokio::task::spawn_blocking(move || {
            control::send(&dir, files::CONTROL, request, control_timeout())
        })
        .await
        .map_err(|e| ShimError::Control {
            id: self.id.clone(),
            source: io::Error::other(e),
        })?;
        match reply {
            Ok(r) if r == "ok" => Ok(()),
            Ok(r) if r == "exited" => Err(ShimError::NotRunning {
                id: self.id.clone(),
            }),
            Ok(r) => Err(ShimError::Refused {
                id: self.id.clone(),
                reply: r,
            }),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                Err(ShimError::NotRunning {
                    id: self.id.clone(),
                })
            }
            Err(source) => Err(ShimError::Control {
                id: self.id.clone(),
                source,
            }),
        }
    }
}

fn spawn_blocking(
    id: ContainerId,
    dir: PathBuf,
    options: &SpawnOptions,
) -> Result<Shim, ShimError> {
    let spawn_err = |source| ShimError::Spawn {
        path: options.shim_path.clone(),
        source,
    };
    let (read_end, write_end) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| spawn_err(e.into()))?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(files::LOG))
        .map_err(spawn_err)?;
    // The ready pipe is the shim's stdout: no pre_exec hook, so std can use posix_spawn, which
    // is much cheaper than fork for a large agent process.
    let mut launcher = Command::new(&options.shim_path)
        .arg("start")
        .arg(&dir)
        .env_clear()
        .env("PATH", crate::spec::process::DEFAULT_PATH)
        .stdin(Stdio::null())
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(spawn_err)?;
    // The launcher forks the real shim and exits at once.
    let _ = launcher.wait();

    let message = read_ready(&read_end, options.start_timeout);
    match message {
        Ok(Some(ReadyMessage::Ok {
            shim_pid,
            shim_start_time,
            init_pid,
            started_at,
        })) => Ok(Shim {
            id,
            dir,
            pid: shim_pid,
            start_time: shim_start_time,
            init_pid,
            started_at,
        }),
        Ok(Some(ReadyMessage::Error { message })) => Err(ShimError::StartFailed { id, message }),
        Ok(None) => {
            let log = tail(&dir.join(files::LOG));
            Err(ShimError::NoReport {
                id,
                log: if log.is_empty() {
                    String::new()
                } else {
                    format!("; shim log: {log}")
                },
            })
        }
        Err(ReadError::Timeout) => {
            if let Some((pid, start)) = read_pid_file(&dir)
                && matches!(crate::sys::process_start_time(pid), Ok(Some((t, _))) if t == start)
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            Err(ShimError::StartTimeout {
                id,
                after: options.start_timeout,
            })
        }
        Err(ReadError::Io(source)) => Err(ShimError::Wait { id, source }),
    }
}

enum ReadError {
    Timeout,
    Io(io::Error),
}

/// Reads one JSON line from the ready pipe; `None` on EOF without a message.
fn read_ready(fd: &OwnedFd, timeout: Duration) -> Result<Option<ReadyMessage>, ReadError> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut file = std::fs::File::from(fd.try_clone().map_err(ReadError::Io)?);
    loop {
        if let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            return Ok(serde_json::from_slice(&buf[..nl]).ok());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadError::Timeout);
        }
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let ms = left.as_millis().min(u16::MAX as u128) as u16;
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(ReadError::Io(e.into())),
        }
        let mut chunk = [0u8; 4096];
        match file.read(&mut chunk) {
            Ok(0) => {
                return Ok(if buf.is_empty() {
                    None
                } else {
                    serde_json::from_slice(&buf).ok()
                });
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
}

/// The last few lines of a file, on one line.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}
