//! Namespaces kept alive as files: new network, UTS and IPC namespaces are created on a
//! short-lived dedicated thread and bind-mounted (nsfs) onto empty files, which containers then
//! join by path. The thread never runs anything else, so the agent's own threads stay in the
//! host's namespaces.

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sched::CloneFlags;

/// Namespaces to create.
#[derive(Debug, Clone, Default)]
pub struct NewNamespaces {
    /// File for a new network namespace (loopback brought up).
    pub net: Option<PathBuf>,
    /// File for a new UTS namespace, and its hostname.
    pub uts: Option<(PathBuf, String)>,
    /// File for a new IPC namespace.
    pub ipc: Option<PathBuf>,
}

/// Creates the namespaces and bind-mounts them onto their files (which are created). On error
/// nothing stays mounted.
pub fn create(spec: &NewNamespaces) -> io::Result<()> {
    let mut targets: Vec<(&'static str, PathBuf)> = Vec::new();
    let mut flags = CloneFlags::empty();
    if let Some(p) = &spec.net {
        flags |= CloneFlags::CLONE_NEWNET;
        targets.push(("net", p.clone()));
    }
    if let Some((p, _)) = &spec.uts {
        flags |= CloneFlags::CLONE_NEWUTS;
        targets.push(("uts", p.clone()));
    }
    if let Some(p) = &spec.ipc {
        flags |= CloneFlags::CLONE_NEWIPC;
        targets.push(("ipc", p.clone()));
    }
    if targets.is_empty() {
        return Ok(());
    }
    for (_, file) in &targets {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(file)?;
    }
    let hostname = spec.uts.as_ref().map(|(_, h)| h.clone());
    let bring_lo_up = spec.net.is_some();
    let mount_targets = targets.clone();
    let result = std::thread::Builder::new()
        .name("berth-netns".into())
        .spawn(move || -> io::Result<()> {
            nix::sched::unshare(flags).map_err(io::Error::from)?;
            if let Some(h) = hostname {
                nix::unistd::sethostname(h).map_err(io::Error::from)?;
            }
            if bring_lo_up {
                set_loopback_up()?;
            }
            for (kind, file) in &mount_targets {
                let source = PathBuf::from(format!("/proc/thread-self/ns/{kind}"));
                nix::mount::mount(
                    Some(&source),
                    file,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(io::Error::from)?;
            }
            Ok(())
        })?
        .join()
        .map_err(|_| io::Error::other("namespace thread panicked"))?;
    if result.is_err() {
        for (_, file) in &targets {
            let _ = remove(file);
        }
    }
    result
}

/// Unmounts and deletes a namespace file. Missing files and files that are not mounted are
/// fine (idempotent).
pub fn remove(file: &Path) -> io::Result<()> {
    // A file can carry stacked mounts if creation was retried after a crash: unmount all.
    while crate::sys::unmount(file)? {}
    crate::fsutil::remove_file_if_exists(file)
}

/// Brings `lo` up in the calling thread's network namespace.
fn set_loopback_up() -> io::Result<()> {
    // SAFETY: plain socket call; the returned descriptor is owned by `sock` below.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nothing else owns.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    use std::os::fd::AsRawFd;
    // SAFETY: ifreq is a plain C struct (a name array and a union of integers); all-zero is a
    // valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name and writes the flags member of `req`, which is a
    // valid, properly sized ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the flags member of the union was just written by the kernel.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS reads a valid ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
