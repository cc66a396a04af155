//! Running a process inside a running container: a `berth-shim exec` child of the agent joins
//! the container (libcontainer's tenant builder runs there, never in the agent). The agent gets
//! a [`tokio::process::Child`] to stream from, or the whole output with [`Runtime::exec_output`]
//! (for probes and hooks).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::layout::ContainerId;
use crate::runtime::Runtime;
use crate::shim::{ExecArgs, ExecStatus, Shim};

/// What to run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecRequest {
    pub command: Vec<String>,
    /// Added to (or replacing) the container's environment.
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    /// Give the process a stdin pipe (otherwise /dev/null).
    pub stdin: bool,
}

impl ExecRequest {
    /// A request for `command` with nothing else set.
    pub fn new<S: Into<String>>(command: impl IntoIterator<Item = S>) -> Self {
        Self {
            command: command.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }
}

/// How an exec'd process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecExit {
    /// The exit code, or 128 + signal.
    pub exit_code: i32,
    pub signal: Option<i32>,
}

/// An exec's collected output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit: ExecExit,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// An exec that could not run or finish.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("exec in container {id}: the command is empty")]
    EmptyCommand { id: ContainerId },
    #[error("exec in container {id}: the container is not running")]
    NotRunning { id: ContainerId },
    #[error("exec in container {id}: running {path}")]
    Spawn {
        id: ContainerId,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("exec in container {id} failed: {message}")]
    StartFailed { id: ContainerId, message: String },
    #[error("exec in container {id} did not finish within {after:?} and was killed")]
    Timeout { id: ContainerId, after: Duration },
    #[error("exec in container {id}: the shim reported no result")]
    NoStatus { id: ContainerId },
    #[error("exec in container {id}")]
    Io {
        id: ContainerId,
        #[source]
        source: std::io::Error,
    },
}

/// A running exec.
#[derive(Debug)]
pub struct ExecProcess {
    id: ContainerId,
    /// The `berth-shim exec` process; its stdin/stdout/stderr are the exec'd process's.
    pub child: tokio::process::Child,
    /// Where the exec shim records the outcome.
    status: Option<std::path::PathBuf>,
}

impl ExecProcess {
    /// Asks the exec to end: the exec'd process is SIGKILLed (through its shim).
    pub fn kill(&self) {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }

    /// Waits for the process to end.
    pub async fn wait(mut self) -> Result<ExecExit, ExecError> {
        self.child.wait().await.map_err(|source| ExecError::Io {
            id: self.id.clone(),
            source,
        })?;
        self.read_status().await
    }

    /// Reads (and removes) the outcome the shim recorded, once it has exited.
    async fn read_status(&mut self) -> Result<ExecExit, ExecError> {
        let Some(path) = self.status.take() else {
            return Err(ExecError::NoStatus {
                id: self.id.clone(),
            });
        };
        let text = tokio::fs::read(&path).await;
        let _ = tokio::fs::remove_file(&path).await;
        match text
            .ok()
            .and_then(|t| serde_json::from_slice::<ExecStatus>(&t).ok())
        {
            Some(ExecStatus::Exited { exit_code, signal }) => Ok(ExecExit { exit_code, signal }),
            Some(ExecStatus::Error { message }) => Err(ExecError::StartFailed {
                id: self.id.clone(),
                message,
            }),
            None => Err(ExecError::NoStatus {
                id: self.id.clone(),
            }),
        }
    }
}

/// After the exec'd process has ended, output still in flight is read for this long; a
/// background child holding the pipes open does not keep the exec from finishing.
const OUTPUT_DRAIN: Duration = Duration::from_millis(500);

/// [`Runtime::exec_output`] keeps at most this much of each stream (the rest is read and
/// dropped, so a chatty probe cannot exhaust the agent's memory or block on a full pipe).
pub const MAX_EXEC_OUTPUT: usize = 1 << 20;

/// Appends `chunk` to `buf` up to [`MAX_EXEC_OUTPUT`].
fn keep(buf: &mut Vec<u8>, chunk: &[u8]) {
    let room = MAX_EXEC_OUTPUT.saturating_sub(buf.len());
    buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
}

impl Runtime {
    /// Starts `request` in running container `id`. Stdout and stderr are piped; stdin too when
    /// asked.
    pub fn exec(&self, id: &ContainerId, request: &ExecRequest) -> Result<ExecProcess, ExecError> {
        if request.command.is_empty() {
            return Err(ExecError::EmptyCommand { id: id.clone() });
        }
        let dir = self.dirs.shim_dir(id);
        if Shim::from_dir(id.clone(), dir.clone()).is_none() {
            return Err(ExecError::NotRunning { id: id.clone() });
        }
        let args = ExecArgs {
            env: request.env.clone(),
            cwd: request.working_dir.clone(),
            command: request.command.clone(),
        };
        let spawn_err = |source| ExecError::Spawn {
            id: id.clone(),
            path: self.spawn.shim_path.clone(),
            source,
        };
        // No descriptors beyond stdio are passed, so this is a posix_spawn, not a fork of the
        // agent.
        let mut cmd = tokio::process::Command::new(&self.spawn.shim_path);
        cmd.arg("exec")
            .arg(&dir)
            .args(args.to_words())
            .env_clear()
            .env("PATH", crate::spec::process::DEFAULT_PATH)
            .stdin(if request.stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(spawn_err)?;
        let status = child
            .id()
            .map(|pid| crate::shim::exec_status_path(&dir, pid));
        Ok(ExecProcess {
            id: id.clone(),
            child,
            status,
        })
    }

    /// Runs `request` in container `id` and collects its output. After `timeout` the process
    /// is killed and [`ExecError::Timeout`] returned.
    pub async fn exec_output(
        &self,
        id: &ContainerId,
        request: &ExecRequest,
        timeout: Duration,
    ) -> Result<ExecOutput, ExecError> {
        let mut process = self.exec(id, request)?;
        let mut stdout = process.child.stdout.take().expect("stdout is piped");
        let mut stderr = process.child.stderr.take().expect("stderr is piped");
        let io_err = |source| ExecError::Io {
            id: id.clone(),
            source,
        };
        let collect = async {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let (mut out_chunk, mut err_chunk) = (vec![0u8; 16 << 10], vec![0u8; 16 << 10]);
            let (mut out_open, mut err_open) = (true, true);
            let mut drain_until: Option<tokio::time::Instant> = None;
            loop {
                let drain = async {
                    match drain_until {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    n = stdout.read(&mut out_chunk), if out_open => {
                        let n = n.map_err(io_err)?;
                        keep(&mut out, &out_chunk[..n]);
                        out_open = n > 0;
                    }
                    n = stderr.read(&mut err_chunk), if err_open => {
                        let n = n.map_err(io_err)?;
                        keep(&mut err, &err_chunk[..n]);
                        err_open = n > 0;
                    }
                    status = process.child.wait(), if drain_until.is_none() => {
                        status.map_err(io_err)?;
                        drain_until = Some(tokio::time::Instant::now() + OUTPUT_DRAIN);
                    }
                    _ = drain => break,
                }
                if !out_open && !err_open && drain_until.is_some() {
                    break;
                }
            }
            let exit = process.read_status().await?;
            Ok::<_, ExecError>(ExecOutput {
                exit,
                stdout: out,
                stderr: err,
            })
        };
        match tokio::time::timeout(timeout, collect).await {
            Ok(result) => result,
            Err(_) => {
                process.kill();
                let _ = tokio::time::timeout(Duration::from_secs(5), process.child.wait()).await;
                let _ = process.child.start_kill();
                Err(ExecError::Timeout {
                    id: id.clone(),
                    after: timeout,
                })
            }
        }
    }
}
