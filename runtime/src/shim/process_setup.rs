//! Process hygiene for the shim: detach from the agent, close inherited descriptors, reset
//! signal state, become a subreaper. These touch process-wide state and run only in a
//! `berth-shim` process, never in the agent.

use std::io;

use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};

/// Signals the monitor handles through its signalfd.
pub const HANDLED: &[Signal] = &[
    Signal::SIGCHLD,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGPIPE,
];

/// Signals the shim passes on to the container's init.
pub const FORWARDED: &[Signal] = &[
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// The set of [`HANDLED`] signals.
pub fn handled_set() -> SigSet {
    let mut set = SigSet::empty();
    for s in HANDLED {
        set.add(*s);
    }
    set
}

/// Closes every descriptor from `first` up (the agent's, leaked by accident or not).
pub fn close_fds_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range only closes descriptors; callers own nothing at or above `first`
    // (this runs first thing in main, before anything is opened).
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Forks; the parent exits at once (the agent reaps it), the child starts a new session so it
/// is not in the agent's process group or session, and is reparented to init (or the nearest
/// subreaper) when the agent goes away.
pub fn detach() -> io::Result<()> {
    // SAFETY: the shim is single-threaded at this point (first thing in main), so fork is
    // safe; the parent only calls _exit.
    match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
        nix::unistd::ForkResult::Parent { .. } => {
            // SAFETY: _exit ends the process without running destructors, which is what a
            // forked parent that must not flush shared buffers wants.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Child => {
            nix::unistd::setsid().map_err(io::Error::from)?;
            Ok(())
        }
    }
}

/// The kernel's `struct sigaction` for `rt_sigaction(2)` (x86_64, aarch64, riscv64, s390x
/// layout: handler, flags, restorer, mask).
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// Resets every signal disposition to its default and empties the signal mask, so that
/// nothing the agent (or Rust's runtime, which ignores SIGPIPE) set leaks into containers.
/// The raw system call is used because glibc refuses to touch signals 32 and 33, which a
/// parent may have left ignored.
pub fn reset_signals() -> io::Result<()> {
    let default = KernelSigaction {
        handler: 0, // SIG_DFL
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: `default` is a valid kernel sigaction installing SIG_DFL (no handler runs,
        // so no restorer is needed); the old action is not requested; the size is the
        // kernel's sigset size.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &default as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            );
        }
    }
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None).map_err(io::Error::from)
}

/// Blocks the [`HANDLED`] signals (they are then read from a signalfd). The mask survives
/// `execve`, so there is no window in which a signal takes its default action.
pub fn block_handled_signals() -> io::Result<()> {
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&handled_set()), None).map_err(io::Error::from)
}

/// Makes this process the reaper of orphaned descendants.
pub fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: plain prctl with integer arguments.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets this process's oom_score_adj. Lowering it needs CAP_SYS_RESOURCE.
pub fn set_oom_score_adj(value: i32) -> io::Result<()> {
    std::fs::write("/proc/self/oom_score_adj", value.to_string())
}

/// Clears close-on-exec on `fd`, so it survives the exec into monitor mode.
pub fn keep_across_exec(fd: i32) -> io::Result<()> {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).map_err(io::Error::from)?;
    Ok(())
}
