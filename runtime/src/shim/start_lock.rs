//! The start lock: `start.lock` in a shim directory, held by the shim process from the moment
//! it commits to starting the container until it exits. It makes every state of a shim
//! directory unambiguous after an agent crash:
//!
//! - the agent creates the (empty) file before it spawns the shim;
//! - the shim takes a process-associated write lock on it (`F_SETLK`) first thing after it
//!   detached, before its pid file, and keeps it across the exec into the monitor; it gives
//!   up if the lock is taken or the file was unlinked meanwhile;
//! - the agent tests the lock (`F_OFD_GETLK` names the holder's pid) to tell "a shim of this
//!   container runs" from "none does", and takes it (`F_OFD_SETLK`) before removing the
//!   directory, so a shim that had not reached the lock yet can never start the container
//!   after it was removed (it finds the lock taken, or the file unlinked).
//!
//! Process-associated locks are not inherited by fork, so the container's init never holds
//! it; the agent uses open-file-description locks, which conflict with them.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, fcntl};

use super::files;

/// Why a shim or the agent could not take the start lock.
#[derive(Debug, thiserror::Error)]
pub enum StartLockError {
    #[error("opening the start lock {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the start lock {path} is held by {}: the container is being removed", holder_name(*pid))]
    Taken { path: PathBuf, pid: i32 },
    #[error("the start lock {path} was removed: the agent gave this start up")]
    Abandoned { path: PathBuf },
    #[error("locking {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the shim (pid {pid}) holding {path} did not end within {after:?} of SIGKILL")]
    HolderLingers {
        path: PathBuf,
        pid: i32,
        after: Duration,
    },
}

/// Who holds the lock, for messages: a shim process, or (no pid) the agent's own removal.
fn holder_name(pid: i32) -> String {
    if pid > 0 {
        format!("process {pid}")
    } else {
        "another removal of the container".into()
    }
}

fn whole_file(kind: libc::c_short) -> libc::flock {
    libc::flock {
        l_type: kind,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    }
}

fn is_contended(e: nix::Error) -> bool {
    matches!(e, nix::Error::EAGAIN | nix::Error::EACCES)
}

/// Creates the empty lock file in a new shim directory (the agent, before spawning the shim).
pub(crate) fn create(dir: &Path) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join(files::START_LOCK))
        .map(drop)
}

/// Takes the lock for the shim process (the shim, after it detached). The returned descriptor
/// must stay open for the life of the process: closing any descriptor of the file releases it.
pub(crate) fn take_for_shim(dir: &Path) -> Result<OwnedFd, StartLockError> {
    let path = dir.join(files::START_LOCK);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path)
        .map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => StartLockError::Abandoned { path: path.clone() },
            _ => StartLockError::Open {
                path: path.clone(),
                source,
            },
        })?;
    match fcntl(
        file.as_raw_fd(),
        FcntlArg::F_SETLK(&whole_file(libc::F_WRLCK as libc::c_short)),
    ) {
        Ok(_) => {}
        Err(e) if is_contended(e) => {
            let pid = holder_of(&file).ok().flatten().unwrap_or(-1);
            return Err(StartLockError::Taken { path, pid });
        }
        Err(e) => {
            return Err(StartLockError::Lock {
                path,
                source: e.into(),
            });
        }
    }
    // Locked, but the agent may have removed the directory before we got here.
    let linked = file.metadata().map(|m| m.nlink() > 0).unwrap_or(false);
    if !linked {
        return Err(StartLockError::Abandoned { path });
    }
    Ok(OwnedFd::from(file))
}

/// The pid of the process holding a write lock on `file`, if any. An open-file-description
/// holder (another agent thread removing the container) reports -1.
fn holder_of(file: &File) -> io::Result<Option<i32>> {
    let mut fl = whole_file(libc::F_WRLCK as libc::c_short);
    fcntl(file.as_raw_fd(), FcntlArg::F_OFD_GETLK(&mut fl)).map_err(io::Error::from)?;
    Ok((fl.l_type != libc::F_UNLCK as libc::c_short).then_some(fl.l_pid))
}

fn open_for_agent(dir: &Path) -> io::Result<Option<File>> {
    match OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(dir.join(files::START_LOCK))
    {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The pid of the shim process of `dir` that holds the start lock: `Some` while a shim of the
/// container runs (starting it or monitoring it), `None` if none does (never spawned, ended,
/// or not yet at the lock, which it will then never take once the agent fenced it).
pub(crate) fn holder(dir: &Path) -> io::Result<Option<i32>> {
    match open_for_agent(dir)? {
        Some(file) => holder_of(&file),
        None => Ok(None),
    }
}

/// The agent's hold on a shim directory: while it lives, no shim of the container runs, and
/// none can start it. Remove the directory before dropping it.
#[derive(Debug)]
pub(crate) struct Fence {
    _file: Option<File>,
}

/// Takes the lock for the agent. A shim holding it is killed (SIGKILL, through a pidfd so a
/// recycled pid is never hit) when `kill` is set, and waited for until `deadline`; otherwise
/// it is [`StartLockError::Taken`]. A directory without a lock file (prepared before the
/// file existed, or already removed) gives an empty fence.
pub(crate) fn fence(dir: &Path, kill: bool, deadline: Instant) -> Result<Fence, StartLockError> {
    let path = dir.join(files::START_LOCK);
    let Some(file) = open_for_agent(dir).map_err(|source| StartLockError::Open {
        path: path.clone(),
        source,
    })?
    else {
        return Ok(Fence { _file: None });
    };
    let lock_err = |source: io::Error| StartLockError::Lock {
        path: path.clone(),
        source,
    };
    loop {
        match fcntl(
            file.as_raw_fd(),
            FcntlArg::F_OFD_SETLK(&whole_file(libc::F_WRLCK as libc::c_short)),
        ) {
            Ok(_) => return Ok(Fence { _file: Some(file) }),
            Err(e) if is_contended(e) => {}
            Err(e) => return Err(lock_err(e.into())),
        }
        let Some(pid) = holder_of(&file).map_err(lock_err)? else {
            continue; // released between the two calls
        };
        if pid <= 0 {
            // An open-file-description lock: another fence of the agent's, a removal or a
            // given-up start cleaning the directory up (a forced removal kills the shim, and
            // the start that shim served gives up at once). It is released as soon as that
            // cleanup is done; a forced removal waits for it, an unforced one is refused.
            if !kill || Instant::now() >= deadline {
                return Err(StartLockError::Taken { path, pid });
            }
            std::thread::sleep(OTHER_FENCE_POLL);
            continue;
        }
        if !kill {
            return Err(StartLockError::Taken { path, pid });
        }
        kill_holder(&file, pid, deadline).map_err(|e| match e {
            KillError::Io(source) => lock_err(source),
            KillError::Lingers => StartLockError::HolderLingers {
                path: path.clone(),
                pid,
                after: deadline.saturating_duration_since(Instant::now()),
            },
        })?;
    }
}

/// How often a forced fence looks again while another fence of the agent's holds the lock.
const OTHER_FENCE_POLL: Duration = Duration::from_millis(5);

enum KillError {
    Io(io::Error),
    Lingers,
}

/// SIGKILLs the lock holder `pid` and waits for it to end.
fn kill_holder(file: &File, pid: i32, deadline: Instant) -> Result<(), KillError> {
    let pidfd = match crate::sys::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(()),
        Err(e) => return Err(KillError::Io(e)),
    };
    // The pidfd pins the process: if it still holds the lock now, the pidfd refers to it.
    if holder_of(file).map_err(KillError::Io)? != Some(pid) {
        return Ok(());
    }
    if let Err(e) = crate::sys::pidfd_send_signal(&pidfd, libc::SIGKILL)
        && e.raw_os_error() != Some(libc::ESRCH)
    {
        return Err(KillError::Io(e));
    }
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(KillError::Lingers);
        }
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        let ms = left.as_millis().min(u16::MAX as u128) as u16;
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => continue,
            Ok(_) => return Ok(()),
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(KillError::Io(e.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn shim_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        create(dir.path()).unwrap();
        dir
    }

    #[test]
    fn a_forced_fence_waits_for_another_fence_of_the_agent_to_finish() {
        // A forced removal racing the cleanup of the start it just made fail (CI saw the
        // removal refused with "held by process -1").
        let dir = shim_dir();
        let first = fence(dir.path(), true, Instant::now() + Duration::from_secs(5)).unwrap();
        let released = Arc::new(AtomicBool::new(false));
        let second = std::thread::spawn({
            let path = dir.path().to_owned();
            let released = released.clone();
            move || {
                let fenced = fence(&path, true, Instant::now() + Duration::from_secs(30));
                (fenced.is_ok(), released.load(Ordering::SeqCst))
            }
        });
        std::thread::sleep(Duration::from_millis(50));
        released.store(true, Ordering::SeqCst);
        drop(first);
        let (fenced, after_release) = second.join().unwrap();
        assert!(
            fenced,
            "the forced fence is taken once the other is dropped"
        );
        assert!(after_release, "and not before");
    }

    #[test]
    fn a_fence_is_refused_while_another_holds_the_lock_unforced_or_past_its_deadline() {
        // (kill, how long the second fence may wait)
        let cases = [
            (false, Duration::from_secs(5)),
            (true, Duration::from_millis(20)),
        ];
        for (kill, wait) in cases {
            let dir = shim_dir();
            let _first = fence(dir.path(), true, Instant::now() + Duration::from_secs(5)).unwrap();
            let refused = fence(dir.path(), kill, Instant::now() + wait);
            assert!(
                matches!(refused, Err(StartLockError::Taken { pid: -1, .. })),
                "kill {kill}, wait {wait:?}: {refused:?}"
            );
        }
    }
}
