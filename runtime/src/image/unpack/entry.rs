//! Applying one tar entry to the layer directory.

use std::ffi::{OsStr, OsString};
use std::fs::{File, FileTimes, Permissions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, fchown};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag, UtimensatFlags, makedev};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags};
use tar::EntryType;

use super::UnpackError;
use super::sys::{self, RootDir};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Applies entries of one layer to a layer root, remembering directory times to set last
/// (creating children changes a directory's mtime).
pub(super) struct Unpacker<'r> {
    root: &'r RootDir,
    dir_times: Vec<(PathBuf, Times)>,
    buffer: Vec<u8>,
    entries: u64,
}

/// Access and modification time of an entry.
#[derive(Debug, Clone, Copy)]
struct Times {
    atime: TimeSpec,
    mtime: TimeSpec,
}

impl Times {
    fn file_times(&self) -> FileTimes {
        FileTimes::new()
            .set_accessed(system_time(self.atime))
            .set_modified(system_time(self.mtime))
    }
}

fn system_time(t: TimeSpec) -> SystemTime {
    let secs = u64::try_from(t.tv_sec()).unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::new(secs, t.tv_nsec() as u32)
}

/// Ownership, mode, times and xattrs of an entry, with PAX overrides applied.
struct Metadata {
    uid: u32,
    gid: u32,
    mode: u32,
    times: Times,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

impl<'r> Unpacker<'r> {
    pub(super) fn new(root: &'r RootDir) -> Self {
        Unpacker {
            root,
            dir_times: Vec::new(),
            buffer: vec![0; 128 * 1024],
            entries: 0,
        }
    }

    /// Applies one entry.
    pub(super) fn apply<R: Read>(
        &mut self,
        mut entry: tar::Entry<'_, R>,
    ) -> Result<(), UnpackError> {
        let raw_path = PathBuf::from(OsStr::from_bytes(&entry.path_bytes()));
        let kind = entry.header().entry_type();
        let kind = match kind {
            EntryType::XGlobalHeader | EntryType::XHeader => return Ok(()),
            EntryType::GNULongName | EntryType::GNULongLink => return Ok(()),
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse
                if raw_path.as_os_str().as_bytes().ends_with(b"/") =>
            {
                EntryType::Directory
            }
            other => other,
        };
        self.entries += 1;
        let meta = metadata(&mut entry, &raw_path)?;
        let Some(path) = clean(&raw_path) else {
            return Err(UnpackError::PathEscapes { entry: raw_path });
        };
        let fail = |action: &'static str| {
            let entry = raw_path.clone();
            move |source: io::Error| UnpackError::Entry {
                entry,
                action,
                source,
            }
        };

        let (parent, name) = match (path.parent(), path.file_name()) {
            (Some(parent), Some(name)) => (parent.to_owned(), name.to_owned()),
            // The entry is the layer root itself (`./`).
            _ => {
                if kind != EntryType::Directory {
                    return Err(UnpackError::UnsupportedEntry {
                        entry: raw_path,
                        kind: format!("{kind:?} in place of the layer root"),
                    });
                }
                let root = self.root.file();
                set_owner_mode_xattrs(root, &meta).map_err(fail("set its metadata"))?;
                self.dir_times.push((PathBuf::new(), meta.times));
                return Ok(());
            }
        };

        let name_bytes = name.as_bytes();
        if name_bytes == OPAQUE_MARKER.as_bytes() {
            let dir = self
                .make_dirs(&parent)
                .map_err(fail("create its parent directories"))?;
            drop(dir);
            let dir = self
                .root
                .open_inside(&parent, libc::O_RDONLY | libc::O_DIRECTORY)
                .map_err(fail("open its directory"))?;
            sys::fsetxattr(dir.as_fd(), OsStr::new(OPAQUE_XATTR), b"y")
                .map_err(fail("mark its directory opaque"))?;
            return Ok(());
        }
        if let Some(hidden) = name_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if hidden.starts_with(WHITEOUT_PREFIX.as_bytes()) {
                // Other `.wh..wh.*` names are aufs bookkeeping with no overlay meaning.
                tracing::debug!(entry = ?raw_path, "skipping aufs metadata entry");
                return Ok(());
            }
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(UnpackError::PathEscapes { entry: raw_path });
            }
            let dir = self
                .make_dirs(&parent)
                .map_err(fail("create its parent directories"))?;
            return whiteout(&dir, OsStr::from_bytes(hidden)).map_err(fail("create the whiteout"));
        }

        let dir = self
            .make_dirs(&parent)
            .map_err(fail("create its parent directories"))?;
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                clear(&dir, &name, false).map_err(fail("replace the existing entry"))?;
                self.write_file(&dir, &name, &mut entry, &meta, &raw_path)
            }
            EntryType::Directory => {
                let kept = clear(&dir, &name, true).map_err(fail("replace the existing entry"))?;
                if !kept {
                    nix::sys::stat::mkdirat(Some(dir.as_raw_fd()), name.as_os_str(), Mode::S_IRWXU)
                        .map_err(io::Error::from)
                        .map_err(fail("create the directory"))?;
                }
                let fd = nix::fcntl::openat(
                    Some(dir.as_raw_fd()),
                    name.as_os_str(),
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(io::Error::from)
                .map_err(fail("open the directory"))?;
                let file = File::from(sys::owned(fd));
                set_owner_mode_xattrs(&file, &meta).map_err(fail("set its metadata"))?;
                self.dir_times.push((path, meta.times));
                Ok(())
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| UnpackError::InvalidHeader {
                        entry: raw_path.clone(),
                        field: "symlink target",
                        value: "none".to_owned(),
                    })?;
                clear(&dir, &name, false).map_err(fail("replace the existing entry"))?;
                nix::unistd::symlinkat(
                    OsStr::from_bytes(&target),
                    Some(dir.as_raw_fd()),
                    name.as_os_str(),
                )
                .map_err(io::Error::from)
                .map_err(fail("create the symlink"))?;
                set_metadata_at(&dir, &name, &meta, false).map_err(fail("set its metadata"))
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| UnpackError::InvalidHeader {
                        entry: raw_path.clone(),
                        field: "hardlink target",
                        value: "none".to_owned(),
                    })?;
                let target_raw = PathBuf::from(OsStr::from_bytes(&target));
                self.hardlink(&dir, &name, &target_raw, &raw_path)
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (sflag, dev) = match kind {
                    EntryType::Fifo => (SFlag::S_IFIFO, 0),
                    _ => {
                        let header = entry.header();
                        let major = header.device_major().ok().flatten().unwrap_or(0);
                        let minor = header.device_minor().ok().flatten().unwrap_or(0);
                        let sflag = if kind == EntryType::Char {
                            SFlag::S_IFCHR
                        } else {
                            SFlag::S_IFBLK
                        };
                        (sflag, makedev(major.into(), minor.into()))
                    }
                };
                clear(&dir, &name, false).map_err(fail("replace the existing entry"))?;
                nix::sys::stat::mknodat(
                    Some(dir.as_raw_fd()),
                    name.as_os_str(),
                    sflag,
                    Mode::from_bits_truncate(meta.mode),
                    dev,
                )
                .map_err(io::Error::from)
                .map_err(fail("create the node"))?;
                set_metadata_at(&dir, &name, &meta, true).map_err(fail("set its metadata"))
            }
            other => Err(UnpackError::UnsupportedEntry {
                entry: raw_path,
                kind: format!("{other:?}"),
            }),
        }
    }

    /// Sets the directory times recorded during unpacking and returns the entry count.
    pub(super) fn finish(self) -> Result<u64, UnpackError> {
        for (path, times) in self.dir_times.iter().rev() {
            let fail = |source| UnpackError::Entry {
                entry: path.clone(),
                action: "set its times",
                source,
            };
            match (path.parent(), path.file_name()) {
                (Some(parent), Some(name)) => {
                    // A later entry may have replaced the directory; then there is nothing to do.
                    let Ok(dir) = self.root.dir_handle(parent) else {
                        continue;
                    };
                    match nix::sys::stat::utimensat(
                        Some(dir.as_raw_fd()),
                        name,
                        &times.atime,
                        &times.mtime,
                        UtimensatFlags::NoFollowSymlink,
                    ) {
                        Ok(()) | Err(Errno::ENOENT) => {}
                        Err(e) => return Err(fail(e.into())),
                    }
                }
                _ => self
                    .root
                    .file()
                    .set_times(times.file_times())
                    .map_err(fail)?,
            }
        }
        Ok(self.entries)
    }

    /// Opens the directory `relative` inside the root as an `O_PATH` handle, creating missing
    /// directories (mode 0755, owned by root) the way tar does.
    fn make_dirs(&self, relative: &Path) -> io::Result<OwnedFd> {
        match self.root.dir_handle(relative) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            other => return other,
        }
        let mut current = self.root.dir_handle(Path::new(""))?;
        let mut prefix = PathBuf::new();
        for component in relative.components() {
            prefix.push(component);
            match self.root.dir_handle(&prefix) {
                Ok(fd) => current = fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    match nix::sys::stat::mkdirat(
                        Some(current.as_raw_fd()),
                        component.as_os_str(),
                        Mode::from_bits_truncate(0o755),
                    ) {
                        // EEXIST with a failed lookup is a dangling symlink: the lookup below
                        // reports it.
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    current = self.root.dir_handle(&prefix)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(current)
    }

    fn write_file<R: Read>(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        entry: &mut tar::Entry<'_, R>,
        meta: &Metadata,
        raw_path: &Path,
    ) -> Result<(), UnpackError> {
        let fail = |action: &'static str| {
            move |source: io::Error| UnpackError::Entry {
                entry: raw_path.to_owned(),
                action,
                source,
            }
        };
        let fd = nix::fcntl::openat(
            Some(dir.as_raw_fd()),
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::S_IRUSR | Mode::S_IWUSR,
        )
        .map_err(io::Error::from)
        .map_err(fail("create the file"))?;
        let mut file = File::from(sys::owned(fd));
        loop {
            let n = match entry.read(&mut self.buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(UnpackError::Read { source }),
            };
            file.write_all(&self.buffer[..n])
                .map_err(fail("write the file"))?;
        }
        set_owner_mode_xattrs(&file, meta).map_err(fail("set its metadata"))?;
        file.set_times(meta.times.file_times())
            .map_err(fail("set its times"))
    }

    fn hardlink(
        &self,
        dir: &OwnedFd,
        name: &OsStr,
        target_raw: &Path,
        raw_path: &Path,
    ) -> Result<(), UnpackError> {
        let fail = |action: &'static str| {
            move |source: io::Error| UnpackError::Entry {
                entry: raw_path.to_owned(),
                action,
                source,
            }
        };
        let escapes = || UnpackError::LinkEscapes {
            entry: raw_path.to_owned(),
            target: target_raw.to_owned(),
        };
        let target = clean(target_raw).ok_or_else(escapes)?;
        let (Some(target_parent), Some(target_name)) = (target.parent(), target.file_name()) else {
            return Err(escapes());
        };
        let target_dir = self
            .root
            .dir_handle(target_parent)
            .map_err(fail("find the hardlink target"))?;
        let target_stat = nix::sys::stat::fstatat(
            Some(target_dir.as_raw_fd()),
            target_name,
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(io::Error::from)
        .map_err(fail("find the hardlink target"))?;
        if let Ok(existing) =
            nix::sys::stat::fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW)
            && existing.st_dev == target_stat.st_dev
            && existing.st_ino == target_stat.st_ino
        {
            return Ok(());
        }
        clear(dir, name, false).map_err(fail("replace the existing entry"))?;
        nix::unistd::linkat(
            Some(target_dir.as_raw_fd()),
            target_name,
            Some(dir.as_raw_fd()),
            name,
            AtFlags::empty(),
        )
        .map_err(io::Error::from)
        .map_err(fail("create the hardlink"))
    }
}

/// Reads ownership, mode, times and xattrs, letting PAX records override the header.
fn metadata<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    raw_path: &Path,
) -> Result<Metadata, UnpackError> {
    let invalid = |field: &'static str, value: String| UnpackError::InvalidHeader {
        entry: raw_path.to_owned(),
        field,
        value,
    };
    let header = entry.header();
    let mut uid = header.uid().map_err(|e| invalid("uid", e.to_string()))?;
    let mut gid = header.gid().map_err(|e| invalid("gid", e.to_string()))?;
    let mode = header.mode().map_err(|e| invalid("mode", e.to_string()))? & 0o7777;
    let mut mtime = TimeSpec::new(
        header
            .mtime()
            .map_err(|e| invalid("mtime", e.to_string()))? as i64,
        0,
    );
    let mut atime = None;
    let mut xattrs = Vec::new();
    if let Some(extensions) = entry
        .pax_extensions()
        .map_err(|source| UnpackError::Read { source })?
    {
        for extension in extensions {
            let extension = extension.map_err(|source| UnpackError::Read { source })?;
            let key = extension.key_bytes();
            let value = extension.value_bytes();
            let text = || String::from_utf8_lossy(value).into_owned();
            match key {
                b"uid" => uid = text().parse().map_err(|_| invalid("PAX uid", text()))?,
                b"gid" => gid = text().parse().map_err(|_| invalid("PAX gid", text()))?,
                b"mtime" => {
                    mtime = pax_time(&text()).ok_or_else(|| invalid("PAX mtime", text()))?
                }
                b"atime" => {
                    atime = Some(pax_time(&text()).ok_or_else(|| invalid("PAX atime", text()))?)
                }
                _ => {
                    if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                        xattrs.push((OsStr::from_bytes(name).to_owned(), value.to_vec()));
                    }
                }
            }
        }
    }
    let uid = u32::try_from(uid).map_err(|_| invalid("uid", uid.to_string()))?;
    let gid = u32::try_from(gid).map_err(|_| invalid("gid", gid.to_string()))?;
    xattrs.retain(|(name, _)| {
        let overlay = name.as_bytes().starts_with(b"trusted.overlay.")
            || name.as_bytes().starts_with(b"user.overlay.");
        if overlay {
            // Overlay's own attributes would change how the merged view is built (redirects,
            // metacopy); a layer must not carry them.
            tracing::warn!(entry = ?raw_path, xattr = ?name, "dropping overlayfs xattr from layer entry");
        }
        !overlay
    });
    Ok(Metadata {
        uid,
        gid,
        mode,
        times: Times {
            atime: atime.unwrap_or(mtime),
            mtime,
        },
        xattrs,
    })
}

/// Parses a PAX time (`1700000000.123456789`, possibly negative).
fn pax_time(text: &str) -> Option<TimeSpec> {
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let secs: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nanos: i64 = digits.parse().ok()?;
    let nanos = if secs < 0 || text.starts_with('-') {
        -nanos
    } else {
        nanos
    };
    Some(TimeSpec::new(secs, 0) + TimeSpec::new(0, nanos))
}

/// The entry path as normal components relative to the layer root, `..` applied lexically;
/// an empty path is the root itself. `None` if it climbs above the root.
pub(super) fn clean(raw: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(part) => out.push(part),
        }
    }
    Some(out)
}

/// Removes whatever is at `name` in `dir` so a new entry can take its place. A directory is
/// kept (and `true` returned) when `keep_dir` is set, since a directory entry over an
/// existing directory merges into it.
fn clear(dir: &OwnedFd, name: &OsStr, keep_dir: bool) -> io::Result<bool> {
    let stat =
        match nix::sys::stat::fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::ENOENT) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
    let is_dir = stat.st_mode & libc::S_IFMT == libc::S_IFDIR;
    if is_dir && keep_dir {
        return Ok(true);
    }
    if is_dir {
        // remove_dir_all does not follow symlinks; the directory is reached through the
        // handle's /proc link, so the lookup never leaves the layer.
        let mut path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
        path.push(name);
        std::fs::remove_dir_all(path)?;
    } else {
        nix::unistd::unlinkat(Some(dir.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir)?;
    }
    Ok(false)
}

/// Creates an overlay whiteout for `name` in `dir`: a 0/0 character device. Per the OCI
/// layer spec a whiteout hides only lower layers, so an entry of the same name already in
/// this layer stays (it hides the lower ones itself); a directory also becomes opaque.
fn whiteout(dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
    match nix::sys::stat::fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) => {
            if stat.st_mode & libc::S_IFMT == libc::S_IFDIR {
                let fd = nix::fcntl::openat(
                    Some(dir.as_raw_fd()),
                    name,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )?;
                let fd = sys::owned(fd);
                sys::fsetxattr(fd.as_fd(), OsStr::new(OPAQUE_XATTR), b"y")?;
            }
            Ok(())
        }
        Err(Errno::ENOENT) => {
            nix::sys::stat::mknodat(
                Some(dir.as_raw_fd()),
                name,
                SFlag::S_IFCHR,
                Mode::empty(),
                makedev(0, 0),
            )?;
            nix::unistd::fchownat(
                Some(dir.as_raw_fd()),
                name,
                Some(Uid::from_raw(0)),
                Some(Gid::from_raw(0)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Owner, then mode (chown clears setuid), then xattrs (after chown and writes, which clear
/// `security.capability`), on an open file or directory.
fn set_owner_mode_xattrs(file: &File, meta: &Metadata) -> io::Result<()> {
    fchown(file, Some(meta.uid), Some(meta.gid))?;
    file.set_permissions(Permissions::from_mode(meta.mode))?;
    for (name, value) in &meta.xattrs {
        match sys::fsetxattr(file.as_fd(), name, value) {
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                tracing::warn!(xattr = ?name, "filesystem does not support this xattr; skipping it");
            }
            other => other?,
        }
    }
    Ok(())
}

/// Metadata for entries that cannot be opened (symlinks, devices, FIFOs): set through the
/// parent directory without following the entry.
fn set_metadata_at(dir: &OwnedFd, name: &OsStr, meta: &Metadata, chmod: bool) -> io::Result<()> {
    nix::unistd::fchownat(
        Some(dir.as_raw_fd()),
        name,
        Some(Uid::from_raw(meta.uid)),
        Some(Gid::from_raw(meta.gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )?;
    if chmod {
        // Not a symlink (we just made the node), so following is harmless.
        nix::sys::stat::fchmodat(
            Some(dir.as_raw_fd()),
            name,
            Mode::from_bits_truncate(meta.mode),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )?;
    }
    for (attr, value) in &meta.xattrs {
        match sys::lsetxattr_at(dir.as_fd(), name, attr, value) {
            // user.* xattrs are not allowed on symlinks and devices; a layer made on a
            // filesystem that allowed them loses nothing a container could read.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EOPNOTSUPP)) => {
                tracing::warn!(entry = ?name, xattr = ?attr, error = %e, "skipping xattr this node cannot carry");
            }
            other => other?,
        }
    }
    nix::sys::stat::utimensat(
        Some(dir.as_raw_fd()),
        name,
        &meta.times.atime,
        &meta.times.mtime,
        UtimensatFlags::NoFollowSymlink,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_are_cleaned_and_climbing_out_is_detected() {
        let table: &[(&str, Option<&str>)] = &[
            ("etc/passwd", Some("etc/passwd")),
            ("./etc/passwd", Some("etc/passwd")),
            ("/etc/passwd", Some("etc/passwd")),
            ("etc//passwd", Some("etc/passwd")),
            ("./", Some("")),
            ("/", Some("")),
            ("a/../b", Some("b")),
            ("a/./b/", Some("a/b")),
            ("../etc/passwd", None),
            ("a/../../etc", None),
            ("./..", None),
            ("/../x", None),
        ];
        for (raw, want) in table {
            assert_eq!(
                clean(Path::new(raw)),
                want.map(PathBuf::from),
                "path {raw:?}"
            );
        }
    }

    #[test]
    fn pax_times_keep_fractions_and_signs() {
        let table: &[(&str, Option<(i64, i64)>)] = &[
            ("1700000000", Some((1_700_000_000, 0))),
            ("1700000000.5", Some((1_700_000_000, 500_000_000))),
            (
                "1700000000.123456789123",
                Some((1_700_000_000, 123_456_789)),
            ),
            ("-1.5", Some((-2, 500_000_000))),
            ("abc", None),
            ("1.x", None),
        ];
        for (text, want) in table {
            let got = pax_time(text).map(|t| (t.tv_sec(), t.tv_nsec()));
            assert_eq!(got, *want, "pax time {text:?}");
        }
    }
}
