//! The kernel calls layer unpacking needs that nix 0.29 lacks: `openat2(RESOLVE_IN_ROOT)`,
//! which resolves every path inside the layer root (absolute symlinks and `..` included, the
//! way a chroot would), and the `*setxattr` family. All `unsafe` of the unpacker lives here.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Resolution rules for every lookup below the layer root: symlinks (absolute or relative)
/// and `..` are resolved as if the root were `/`, and `/proc` magic links are refused.
const RESOLVE_INSIDE: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;

/// A directory file descriptor that lookups are confined to.
#[derive(Debug)]
pub(crate) struct RootDir {
    fd: File,
}

impl RootDir {
    /// Opens `path` (which must be a directory) as the root for later lookups.
    pub(crate) fn open(path: &Path) -> io::Result<RootDir> {
        let fd = nix::fcntl::open(
            path,
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        // SAFETY: `open` just returned this descriptor and nothing else owns it.
        let fd = unsafe { File::from_raw_fd(fd) };
        Ok(RootDir { fd })
    }

    /// The root directory itself, opened for reading (usable with `fchown`, `fsetxattr`,
    /// `futimens`).
    pub(crate) fn file(&self) -> &File {
        &self.fd
    }

    /// Opens `relative` (resolved inside the root) with `flags` (`O_CLOEXEC` is added).
    /// An empty path means the root itself.
    pub(crate) fn open_inside(&self, relative: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
        let path = if relative.as_os_str().is_empty() {
            Path::new(".")
        } else {
            relative
        };
        openat2(
            self.fd.as_raw_fd(),
            path.as_os_str(),
            flags | libc::O_CLOEXEC,
            RESOLVE_INSIDE,
        )
    }

    /// Opens the directory `relative` as an `O_PATH` handle, for use as the directory of
    /// `*at` calls.
    pub(crate) fn dir_handle(&self, relative: &Path) -> io::Result<OwnedFd> {
        self.open_inside(relative, libc::O_PATH | libc::O_DIRECTORY)
    }
}

/// `openat2(2)` with the given resolve flags, retrying the `EAGAIN` the kernel returns when a
/// concurrent rename makes `..` resolution ambiguous.
fn openat2(dir: RawFd, path: &OsStr, flags: libc::c_int, resolve: u64) -> io::Result<OwnedFd> {
    let path = CString::new(path.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: open_how is a plain struct of three u64s; all-zero is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    how.resolve = resolve;
    let mut attempts = 0;
    loop {
        // SAFETY: `path` is a valid NUL-terminated string and `how` a valid open_how whose
        // size we pass; both outlive the call. The kernel returns a new descriptor or -1.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir,
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if ret >= 0 {
            // SAFETY: the kernel just returned this descriptor; we are its only owner.
            return Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) });
        }
        let err = io::Error::last_os_error();
        let retry = matches!(err.raw_os_error(), Some(libc::EAGAIN | libc::EINTR));
        attempts += 1;
        if !retry || attempts > 64 {
            return Err(err);
        }
    }
}

/// Sets an extended attribute on an open file or directory.
pub(crate) fn fsetxattr(fd: BorrowedFd<'_>, name: &OsStr, value: &[u8]) -> io::Result<()> {
    let name = xattr_name(name)?;
    // SAFETY: `name` is NUL-terminated, `value` is a valid slice whose length we pass, and
    // `fd` is a live descriptor borrowed for the call.
    let ret = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets an extended attribute on `name` in the directory `dir` without following a final
/// symlink (for symlinks, devices and FIFOs, which cannot be opened for `fsetxattr`). The
/// directory is reached through its `/proc/self/fd` link, so no path outside is looked up.
pub(crate) fn lsetxattr_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    attr: &OsStr,
    value: &[u8],
) -> io::Result<()> {
    let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(name.as_bytes());
    let path = CString::new(path)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains a NUL byte"))?;
    let attr = xattr_name(attr)?;
    // SAFETY: both strings are NUL-terminated and `value` is a valid slice whose length we
    // pass; all outlive the call.
    let ret = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            attr.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn xattr_name(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "xattr name contains a NUL byte",
        )
    })
}

/// Wraps a raw descriptor returned by a nix call that hands out `RawFd`.
pub(crate) fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: only called on descriptors a successful open-like call just returned, which
    // nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}
