//! `berth-shim exec <dir> [--env K=V]... [--cwd DIR] -- CMD [ARG]...`: run a process inside a
//! running container with libcontainer's tenant builder. One short-lived process per exec,
//! spawned by the agent; its stdin/stdout/stderr are the exec'd process's. The outcome
//! ([`ExecStatus`]) is written to `<dir>/exec-<shim pid>.status` before the shim exits, so the
//! agent can spawn it without passing extra descriptors (posix_spawn, no fork of the agent).
//!
//! The process gets the container's user, capabilities, no_new_privs and environment (the
//! given variables override), and the container's seccomp filter: libcontainer's tenant path
//! drops `linux.seccomp`, so berth's executor installs it right before `execve`. A filter can
//! only be installed without CAP_SYS_ADMIN under no_new_privs, so an exec into a container
//! that has a filter always runs with no_new_privs.

use std::os::fd::AsFd;
use std::path::Path;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::oci_spec::runtime::Spec;
use libcontainer::syscall::syscall::SyscallType;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::executor::{ContainerExecutor, SeccompFilter};
use super::launch::chain;
use super::{ShimConfig, files, process_setup};

/// How an exec ended, as the exec shim records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecStatus {
    /// The process ended.
    Exited { exit_code: i32, signal: Option<i32> },
    /// The process could not be started.
    Error { message: String },
}

/// An exec request as `berth-shim exec` receives it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecArgs {
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub command: Vec<String>,
}

impl ExecArgs {
    /// The arguments after `exec <dir>`.
    pub fn to_words(&self) -> Vec<String> {
        let mut w = Vec::new();
        for (k, v) in &self.env {
            w.push("--env".to_owned());
            w.push(format!("{k}={v}"));
        }
        if let Some(cwd) = &self.cwd {
            w.push("--cwd".to_owned());
            w.push(cwd.clone());
        }
        w.push("--".to_owned());
        w.extend(self.command.iter().cloned());
        w
    }

    /// Parses the arguments after `exec <dir>`.
    pub fn parse(words: &[String]) -> Result<ExecArgs, String> {
        let mut args = ExecArgs::default();
        let mut it = words.iter();
        while let Some(w) = it.next() {
            match w.as_str() {
                "--env" => {
                    let kv = it.next().ok_or("--env needs NAME=VALUE")?;
                    let (k, v) = kv.split_once('=').ok_or("--env needs NAME=VALUE")?;
                    args.env.push((k.to_owned(), v.to_owned()));
                }
                "--cwd" => args.cwd = Some(it.next().ok_or("--cwd needs a directory")?.clone()),
                "--" => {
                    args.command = it.cloned().collect();
                    break;
                }
                other => return Err(format!("unexpected exec argument {other:?}")),
            }
        }
        if args.command.is_empty() {
            return Err("exec needs a command".to_owned());
        }
        Ok(args)
    }
}

/// The file in which the exec shim with pid `pid` records its [`ExecStatus`].
pub fn status_path(dir: &Path, pid: u32) -> std::path::PathBuf {
    dir.join(format!("exec-{pid}.status"))
}

fn report(dir: &Path, status: &ExecStatus) {
    let json = serde_json::to_vec(status).unwrap_or_default();
    let path = status_path(dir, std::process::id());
    if let Err(e) = crate::fsutil::replace_file(&path, &json, 0o600) {
        eprintln!(
            "berth-shim exec: recording the outcome in {}: {e}",
            path.display()
        );
    }
}

/// Entry point of `berth-shim exec`. Returns the process exit code: the exec'd process's
/// code, 128 + signal, or 126 when it could not be started.
pub fn exec_main(dir: &Path, words: &[String]) -> i32 {
    let _ = process_setup::close_fds_from(3);
    let _ = process_setup::reset_signals();
    let _ = process_setup::block_handled_signals();
    let pid = match start(dir, words) {
        Ok(pid) => pid,
        Err(message) => {
            report(dir, &ExecStatus::Error { message });
            return 126;
        }
    };
    let (exit_code, signal) = wait_forwarding(pid);
    report(dir, &ExecStatus::Exited { exit_code, signal });
    exit_code
}

fn start(dir: &Path, words: &[String]) -> Result<Pid, String> {
    let args = ExecArgs::parse(words)?;
    let config_path = dir.join(files::CONFIG);
    let config: ShimConfig = std::fs::read(&config_path)
        .map_err(|e| format!("reading {}: {e}", config_path.display()))
        .and_then(|b| {
            serde_json::from_slice(&b)
                .map_err(|e| format!("parsing {}: {e}", config_path.display()))
        })?;
    let spec_path = config.bundle.join("config.json");
    let spec =
        Spec::load(&spec_path).map_err(|e| format!("loading {}: {e}", spec_path.display()))?;
    // The precompiled program when the agent made one (config.json then has no profile),
    // else config.json's profile, compiled here.
    let seccomp = match super::load_seccomp_program(&config).map_err(|e| chain(&e))? {
        Some(program) => Some(SeccompFilter::Program(program)),
        None => spec
            .linux()
            .as_ref()
            .and_then(|l| l.seccomp().clone())
            .map(SeccompFilter::Profile),
    };
    let mut process = spec
        .process()
        .clone()
        .ok_or("the container spec has no process")?;
    process.set_args(Some(args.command.clone()));
    let mut env = process.env().clone().unwrap_or_default();
    for (k, v) in &args.env {
        let entry = format!("{k}={v}");
        match env
            .iter_mut()
            .find(|e| e.split('=').next() == Some(k.as_str()))
        {
            Some(slot) => *slot = entry,
            None => env.push(entry),
        }
    }
    process.set_env(Some(env));
    if let Some(cwd) = &args.cwd {
        process.set_cwd(cwd.into());
    }
    if seccomp.is_some() {
        process.set_no_new_privileges(Some(true));
    }
    process.set_oom_score_adj(None);
    let process_path = dir.join(format!("exec-{}.json", std::process::id()));
    let json = serde_json::to_vec(&process).map_err(|e| format!("encoding the process: {e}"))?;
    std::fs::write(&process_path, json)
        .map_err(|e| format!("writing {}: {e}", process_path.display()))?;
    let built = ContainerBuilder::new(config.id.to_string(), SyscallType::default())
        .with_root_path(&config.libcontainer_root)
        .and_then(|b| {
            b.with_executor(ContainerExecutor { seccomp })
                .as_tenant()
                .with_process(Some(&process_path))
                .with_detach(true)
                .as_sibling(false)
                .build()
        });
    let _ = std::fs::remove_file(&process_path);
    built.map_err(|e| format!("exec in container {}: {}", config.id, chain(&e)))
}

/// Waits for `pid`, passing on signals: SIGTERM (how the agent ends an exec that timed out)
/// becomes SIGKILL, the others go through as they are.
fn wait_forwarding(pid: Pid) -> (i32, Option<i32>) {
    let sigfd = SignalFd::with_flags(
        &process_setup::handled_set(),
        SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
    )
    .ok();
    loop {
        match waitpid(
            Pid::from_raw(-1),
            Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL),
        ) {
            Ok(WaitStatus::Exited(p, code)) if p == pid => return (code, None),
            Ok(WaitStatus::Signaled(p, sig, _)) if p == pid => {
                return (128 + sig as i32, Some(sig as i32));
            }
            Ok(WaitStatus::StillAlive) => {}
            Ok(_) => continue,
            Err(_) => return (255, None),
        }
        let Some(sigfd) = &sigfd else {
            std::thread::sleep(std::time::Duration::from_millis(5));
            continue;
        };
        let mut fds = [PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(1000u16));
        while let Ok(Some(info)) = sigfd.read_signal() {
            let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                continue;
            };
            if sig == Signal::SIGTERM {
                let _ = kill(pid, Signal::SIGKILL);
            } else if process_setup::FORWARDED.contains(&sig) {
                let _ = kill(pid, sig);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_arguments_round_trip() {
        let args = ExecArgs {
            env: vec![("A".into(), "1=2".into())],
            cwd: Some("/tmp".into()),
            command: vec!["sh".into(), "-c".into(), "--env".into()],
        };
        assert_eq!(ExecArgs::parse(&args.to_words()).unwrap(), args);
    }

    #[test]
    fn exec_arguments_without_a_command_are_refused() {
        assert_eq!(
            ExecArgs::parse(&["--".to_string()]).unwrap_err(),
            "exec needs a command"
        );
        assert!(ExecArgs::parse(&["--bogus".to_string()]).is_err());
    }
}
