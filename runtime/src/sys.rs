//! Thin wrappers over the system calls the runtime needs that nix 0.29 does not offer, and a few
//! /proc readers. Every `unsafe` block of the crate outside the shim process setup lives here.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// `openat2(dirfd, path, flags, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`: opens `path` relative
/// to `dir`, failing with `EXDEV` if resolution would leave `dir` (through `..` or a symlink).
pub fn open_beneath(dir: &impl AsRawFd, path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    openat2(
        dir,
        path,
        flags,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
    )
}

/// `openat2(dirfd, path, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: opens `path` as if
/// `dir` were the root directory: `..` and absolute symlinks stay inside it.
pub fn open_in_root(dir: &impl AsRawFd, path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    openat2(
        dir,
        path,
        flags,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    )
}

fn openat2(
    dir: &impl AsRawFd,
    path: &Path,
    flags: libc::c_int,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let c_path = cstring(path)?;
    // SAFETY: open_how is a plain C struct of integers; all-zero is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    // SAFETY: `c_path` is a valid NUL-terminated string and `how` a valid open_how that both
    // outlive the call; the kernel reads exactly `size_of::<open_how>()` bytes from it.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c_path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `pidfd_open(pid, 0)`: a file descriptor that becomes readable when `pid` exits.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `pidfd_send_signal(pidfd, signal)`: signals the process a pidfd refers to (never a process
/// that reused its pid).
pub fn pidfd_send_signal(pidfd: &OwnedFd, signal: i32) -> io::Result<()> {
    // SAFETY: plain syscall on a descriptor we own; a null siginfo means "as kill(2) would".
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A process's start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`) and
/// whether it is a zombie. `None` if the process does not exist.
pub fn process_start_time(pid: i32) -> io::Result<Option<(u64, bool)>> {
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(parse_stat(&stat))
}

/// Parses `/proc/<pid>/stat`: returns (start time, is zombie or dead).
pub(crate) fn parse_stat(stat: &str) -> Option<(u64, bool)> {
    // The command name (field 2) is in parentheses and may contain spaces or ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?; // field 3
    // Field 22 is the 19th after the state.
    let start = fields.nth(18)?.parse().ok()?;
    Some((start, matches!(state, "Z" | "X" | "x")))
}

/// Mounts `source` on `target` with `mount(2)`.
pub fn mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: nix::mount::MsFlags,
    data: Option<&str>,
) -> io::Result<()> {
    nix::mount::mount(source, target, fstype, flags, data).map_err(io::Error::from)
}

/// Unmounts `target` lazily (`MNT_DETACH`). `Ok(false)` if nothing was mounted there.
pub fn unmount(target: &Path) -> io::Result<bool> {
    match nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) => Ok(true),
        Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(false),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// Whether `path` is a mount point, according to `/proc/self/mountinfo`.
pub fn is_mount_point(path: &Path) -> io::Result<bool> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(mount_points(&info).any(|p| Path::new(&p) == path))
}

/// The mount points listed in a mountinfo text, with octal escapes decoded.
pub(crate) fn mount_points(mountinfo: &str) -> impl Iterator<Item = String> + '_ {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mount_path)
}

/// Decodes the `\040`-style escapes of /proc/self/mountinfo.
pub(crate) fn unescape_mount_path(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Some(v) = std::str::from_utf8(&bytes[i + 1..i + 4])
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads `/proc/<pid>/cgroup`-independent numbers from a cgroup file such as `cgroup.procs`.
pub fn read_pids(file: &Path) -> io::Result<Vec<i32>> {
    match std::fs::read_to_string(file) {
        Ok(s) => Ok(s.lines().filter_map(|l| l.trim().parse().ok()).collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing_survives_odd_command_names() {
        let mut fields = vec!["S"];
        fields.extend(std::iter::repeat_n("0", 18));
        fields.push("123456");
        fields.push("0");
        let stat = format!("42 (a) b)) {}", fields.join(" "));
        assert_eq!(parse_stat(&stat), Some((123456, false)));
        let zombie = stat.replacen(" S ", " Z ", 1);
        assert_eq!(parse_stat(&zombie), Some((123456, true)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_start_time_is_stable() {
        let me = std::process::id() as i32;
        let a = process_start_time(me).unwrap().unwrap();
        let b = process_start_time(me).unwrap().unwrap();
        assert_eq!(a, b);
        assert!(!a.1);
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mount_path("/a\\040b"), "/a b");
        assert_eq!(unescape_mount_path("/plain"), "/plain");
        assert_eq!(unescape_mount_path("/end\\"), "/end\\");
        let info = "36 35 98:0 /mnt1 /mnt\\040x rw - ext3 /dev/root rw\n";
        assert_eq!(mount_points(info).collect::<Vec<_>>(), vec!["/mnt x"]);
    }
}
