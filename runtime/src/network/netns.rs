//! Running code inside another network namespace.
//!
//! The agent's threads stay in the host's namespace. Work that must happen inside a pod's (or
//! a simulated host's) namespace runs on a short-lived thread that joins it with `setns` and
//! ends afterwards: sockets opened there (netlink, the nftables context, the ARP socket) stay
//! bound to that namespace whichever thread uses them later.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;

/// A network namespace, held open by its file (an nsfs bind mount or `/proc/<pid>/ns/net`).
#[derive(Debug)]
pub struct Netns {
    file: File,
    path: PathBuf,
}

impl Netns {
    /// Opens the namespace file at `path`.
    pub fn open(path: &Path) -> io::Result<Netns> {
        let file = File::open(path)?;
        Ok(Netns {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The namespace file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open namespace file (for `IFLA_NET_NS_FD`).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Runs `work` on a new thread that has joined this namespace, and returns its result.
    /// Fails if the file is not a network namespace.
    pub fn run<T: Send>(&self, work: impl FnOnce() -> T + Send) -> io::Result<T> {
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("berth-netns".into())
                .spawn_scoped(scope, || {
                    nix::sched::setns(&self.file, CloneFlags::CLONE_NEWNET)
                        .map_err(io::Error::from)?;
                    Ok(work())
                })?
                .join()
                .map_err(|_| io::Error::other("a thread working in a network namespace panicked"))?
        })
    }
}

/// Runs `work` in `netns`, or on the calling thread when `None` (the process's namespace).
pub fn run_in<T: Send>(netns: Option<&Netns>, work: impl FnOnce() -> T + Send) -> io::Result<T> {
    match netns {
        Some(netns) => netns.run(work),
        None => Ok(work()),
    }
}
