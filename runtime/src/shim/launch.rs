//! `berth-shim start <dir>`: create and start the container with libcontainer, then exec into
//! the lean monitor. Runs only in the shim process (libcontainer chdirs, marks the process
//! non-dumpable and writes its oom_score_adj).

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::executor::{ContainerExecutor, SeccompFilter};
use super::{ReadyMessage, ShimConfig, StartedRecord, files, process_setup};
use crate::fsutil::replace_file;
use crate::timefmt::rfc3339_nanos;

/// oom_score_adj the shim gives itself once the container runs, so the OOM killer takes
/// containers first (kubelet gives containerd -999).
const SHIM_OOM_SCORE_ADJ: i32 = -998;

/// A failure while starting, reported to the agent as text.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("reading shim config {path}")]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing shim config {path}")]
    ParseConfig {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("preparing the shim ({step})")]
    Setup {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("opening log file {path}")]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("creating container {id}")]
    Create {
        id: String,
        #[source]
        source: libcontainer::error::LibcontainerError,
    },
    #[error("starting container {id}")]
    Start {
        id: String,
        #[source]
        source: libcontainer::error::LibcontainerError,
    },
    #[error("container {id}: the seccomp filter")]
    Seccomp {
        id: String,
        #[source]
        source: super::SeccompProgramError,
    },
    #[error("taking the start lock")]
    StartLock(#[source] super::start_lock::StartLockError),
    #[error("container {id} has no init pid after create")]
    NoPid { id: String },
    #[error("executing the shim monitor")]
    ExecMonitor(#[source] nix::Error),
}

/// The whole error chain on one line, for the agent.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut msg = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}

/// Entry point of `berth-shim start <dir>`. The agent waits for one [`ReadyMessage`] line on
/// the shim's stdout (a pipe; taking it over stdout lets the agent spawn with posix_spawn).
/// Returns the process exit code (it only returns on failure: success ends in an exec of the
/// monitor).
pub fn start_main(dir: &Path) -> i32 {
    let _ = process_setup::close_fds_from(3);
    let ready = match take_stdout() {
        Ok(fd) => fd,
        Err(_) => return 1,
    };
    if let Err(e) = prepare_process() {
        report(&ready, &ReadyMessage::Error { message: chain(&e) });
        return 1;
    }
    match create_and_start(dir) {
        Ok(started) => {
            let err = exec_monitor(dir, started, ready.as_raw_fd());
            // Only reached when exec failed: take the container down again.
            kill_and_delete(dir, started.init);
            report(
                &ready,
                &ReadyMessage::Error {
                    message: chain(&err),
                },
            );
            1
        }
        Err(e) => {
            report(&ready, &ReadyMessage::Error { message: chain(&e) });
            1
        }
    }
}

/// Moves the ready pipe off stdout (to a new close-on-exec descriptor) and points stdout at
/// /dev/null.
fn take_stdout() -> std::io::Result<OwnedFd> {
    use nix::fcntl::{FcntlArg, fcntl};
    let fd = fcntl(1, FcntlArg::F_DUPFD_CLOEXEC(3)).map_err(std::io::Error::from)?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor nothing else owns.
    let ready = unsafe { OwnedFd::from_raw_fd(fd) };
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    nix::unistd::dup2(null.as_raw_fd(), 1).map_err(std::io::Error::from)?;
    Ok(ready)
}

fn prepare_process() -> Result<(), LaunchError> {
    let setup = |step| move |source| LaunchError::Setup { step, source };
    process_setup::detach().map_err(setup("detaching from the agent"))?;
    process_setup::reset_signals().map_err(setup("resetting signals"))?;
    process_setup::set_child_subreaper().map_err(setup("becoming a subreaper"))?;
    Ok(())
}

fn report(ready: &OwnedFd, msg: &ReadyMessage) {
    let mut line = serde_json::to_vec(msg).unwrap_or_else(|_| b"{}".to_vec());
    line.push(b'\n');
    let fd = ready.as_raw_fd();
    // SAFETY: `fd` stays open while `file` lives, and ManuallyDrop keeps `file` from closing
    // the descriptor `ready` owns.
    let mut file = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
    let _ = file.write_all(&line);
}

#[derive(Debug, Clone, Copy)]
struct Started {
    init: Pid,
    /// The start lock, held until the shim exits.
    lock: i32,
    stdout: i32,
    stderr: i32,
    control: i32,
}

fn load_config(dir: &Path) -> Result<ShimConfig, LaunchError> {
    let path = dir.join(files::CONFIG);
    let text = std::fs::read(&path).map_err(|source| LaunchError::ReadConfig {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&text).map_err(|source| LaunchError::ParseConfig { path, source })
}

fn create_and_start(dir: &Path) -> Result<Started, LaunchError> {
    let setup = |step| move |source| LaunchError::Setup { step, source };
    // Before anything else: a shim that finds the lock taken or removed was given up by the
    // agent (which removes the directory while it holds the lock) and must start nothing.
    let lock = super::start_lock::take_for_shim(dir).map_err(LaunchError::StartLock)?;
    let config = load_config(dir)?;
    let me = std::process::id() as i32;
    // Out of the agent's cgroup before anything is forked, so stopping the agent's service
    // does not stop its containers. Best effort: a failure is reported in shim.log.
    for procs in &config.shim_cgroup_procs {
        if let Err(e) = std::fs::write(procs, me.to_string()) {
            eprintln!("berth-shim: moving into {}: {e}", procs.display());
        }
    }
    let (start_time, _) = crate::sys::process_start_time(me)
        .ok()
        .flatten()
        .ok_or_else(|| LaunchError::Setup {
            step: "reading own start time",
            source: std::io::Error::other("no /proc entry"),
        })?;
    replace_file(
        &dir.join(files::PID),
        format!("{me} {start_time}\n").as_bytes(),
        0o644,
    )
    .map_err(setup("writing pid file"))?;

    // Make sure the log file can be written before anything runs.
    drop(
        super::cri_log::CriLogWriter::open(
            &config.log.path,
            config.log.max_size,
            config.log.max_files,
        )
        .map_err(|source| LaunchError::Log {
            path: config.log.path.clone(),
            source,
        })?,
    );

    let stdin = File::open("/dev/null").map_err(setup("opening /dev/null"))?;
    let (stdout_r, stdout_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| LaunchError::Setup {
            step: "creating the stdout pipe",
            source: e.into(),
        })?;
    let (stderr_r, stderr_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| LaunchError::Setup {
            step: "creating the stderr pipe",
            source: e.into(),
        })?;
    let control =
        super::control::bind(dir, files::CONTROL).map_err(setup("binding control.sock"))?;

    // Blocked from here on: the monitor reads them from a signalfd, and the executor clears
    // the mask in the container before its execve.
    process_setup::block_handled_signals().map_err(setup("blocking signals"))?;

    let id = config.id.to_string();
    let create_err = |source| LaunchError::Create {
        id: id.clone(),
        source,
    };
    let seccomp = super::load_seccomp_program(&config)
        .map_err(|source| LaunchError::Seccomp {
            id: id.clone(),
            source,
        })?
        .map(SeccompFilter::Program);
    let mut container = ContainerBuilder::new(id.clone(), SyscallType::default())
        .with_root_path(&config.libcontainer_root)
        .map_err(create_err)?
        .validate_id()
        .map_err(create_err)?
        .with_executor(ContainerExecutor { seccomp })
        .with_stdin(stdin)
        .with_stdout(stdout_w)
        .with_stderr(stderr_w)
        .as_init(&config.bundle)
        .with_systemd(false)
        .with_detach(true)
        .as_sibling(false)
        .build()
        .map_err(|source| {
            delete_state(&config.libcontainer_root, &id);
            LaunchError::Create {
                id: id.clone(),
                source,
            }
        })?;
    let init = container
        .pid()
        .ok_or_else(|| LaunchError::NoPid { id: id.clone() })?;
    if let Err(source) = container.start() {
        kill_and_reap(init);
        delete_state(&config.libcontainer_root, &id);
        return Err(LaunchError::Start { id, source });
    }
    let started_at = rfc3339_nanos(SystemTime::now());
    let record = StartedRecord {
        init_pid: init.as_raw(),
        started_at,
    };
    let json = serde_json::to_vec(&record).unwrap_or_default();
    if let Err(source) = replace_file(&dir.join(files::STARTED), &json, 0o644) {
        kill_and_reap(init);
        delete_state(&config.libcontainer_root, &id);
        return Err(LaunchError::Setup {
            step: "writing started.json",
            source,
        });
    }
    // Best effort: lowering needs CAP_SYS_RESOURCE, which some hosts withhold.
    let _ = process_setup::set_oom_score_adj(SHIM_OOM_SCORE_ADJ);
    Ok(Started {
        init,
        lock: lock.into_raw_fd(),
        stdout: stdout_r.into_raw_fd(),
        stderr: stderr_r.into_raw_fd(),
        control: control.into_raw_fd(),
    })
}

fn kill_and_reap(init: Pid) {
    let _ = nix::sys::signal::kill(init, Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(init, None);
}

/// Force-deletes libcontainer's state for `id`, falling back to removing the directory.
pub(crate) fn delete_state(root: &Path, id: &str) {
    let dir = root.join(id);
    if !dir.exists() {
        return;
    }
    let deleted = libcontainer::container::Container::load(dir.clone())
        .and_then(|mut c| c.delete(true))
        .is_ok();
    if !deleted {
        let _ = crate::fsutil::remove_dir_all_if_exists(&dir);
    }
}

fn kill_and_delete(dir: &Path, init: Pid) {
    kill_and_reap(init);
    if let Ok(config) = load_config(dir) {
        delete_state(&config.libcontainer_root, config.id.as_str());
    }
}

fn exec_monitor(dir: &Path, started: Started, ready_fd: i32) -> LaunchError {
    let config = match load_config(dir) {
        Ok(c) => c,
        Err(e) => return e,
    };
    for fd in [
        started.stdout,
        started.stderr,
        started.control,
        started.lock,
        ready_fd,
    ] {
        if let Err(source) = process_setup::keep_across_exec(fd) {
            return LaunchError::Setup {
                step: "passing descriptors to the monitor",
                source,
            };
        }
    }
    let record: Option<StartedRecord> = std::fs::read(dir.join(files::STARTED))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let started_at = record.map(|r| r.started_at).unwrap_or_default();
    let me = std::process::id() as i32;
    let start_time = crate::sys::process_start_time(me)
        .ok()
        .flatten()
        .map_or(0, |(t, _)| t);
    let ready = ReadyMessage::Ok {
        shim_pid: me,
        shim_start_time: start_time,
        init_pid: started.init.as_raw(),
        started_at: started_at.clone(),
    };
    let mut args = vec![
        "berth-shim".to_owned(),
        "monitor".to_owned(),
        format!("dir={}", dir.display()),
        format!("id={}", config.id),
        format!("init={}", started.init),
        format!("stdout={}", started.stdout),
        format!("stderr={}", started.stderr),
        format!("control={}", started.control),
        format!("ready={ready_fd}"),
        format!("lock={}", started.lock),
        format!(
            "ready-msg={}",
            serde_json::to_string(&ready).unwrap_or_default()
        ),
        format!("started-at={started_at}"),
        format!("log={}", config.log.path.display()),
        format!("log-max-size={}", config.log.max_size),
        format!("log-max-files={}", config.log.max_files),
        format!("log-max-line={}", config.log.max_line),
        format!("lc-root={}", config.libcontainer_root.display()),
    ];
    for p in &config.cgroup.procs {
        args.push(format!("procs={}", p.display()));
    }
    if let Some(p) = &config.cgroup.oom_events {
        args.push(format!("oom={}", p.display()));
    }
    let c_args: Vec<CString> = args
        .into_iter()
        .filter_map(|a| CString::new(a).ok())
        .collect();
    let exe = c"/proc/self/exe";
    match nix::unistd::execv(exe, &c_args) {
        Err(e) => LaunchError::ExecMonitor(e),
        Ok(never) => match never {},
    }
}
