//! Filesystem project quotas for claim directories (ext4 and XFS mounted with `prjquota`).
//!
//! Each claim directory gets its own project id, stored on the directory itself (the inode's
//! `fsx_projid`, with `PROJINHERIT` so that everything created inside inherits it); the id is
//! found again by reading the directory, so nothing else needs to remember it. The claim's
//! storage request becomes the project's hard block limit, and the project's usage is the
//! claim's bytes used, read in one call instead of walking the tree.
//!
//! [`ProjectQuotas::probe`] decides once whether the data dir's filesystem can do this, and if
//! not says why in words a user can act on ([`QuotaUnavailable`]): the claim then works without
//! a limit and `describe pvc` prints that reason.
//!
//! This module and `crate::sys` are the only places of the runtime outside the shim that make
//! raw system calls (`quotactl`, and the `FS_IOC_FS[GS]ETXATTR` ioctls).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Project ids berth hands out start here, far above the small ids administrators write in
/// `/etc/projid` and the range kubelet uses (from 1048577), so they do not collide.
pub const PROJECT_ID_BASE: u32 = 1_700_000_000;

/// `PRJQUOTA` from `<linux/quota.h>`.
const PRJQUOTA: libc::c_int = 2;
/// `FS_XFLAG_PROJINHERIT`: new inodes inherit the directory's project id.
const FS_XFLAG_PROJINHERIT: u32 = 0x0000_0200;
/// `_IOR('X', 31, struct fsxattr)`.
const FS_IOC_FSGETXATTR: libc::c_ulong = 0x801c_581f;
/// `_IOW('X', 32, struct fsxattr)`.
const FS_IOC_FSSETXATTR: libc::c_ulong = 0x401c_5820;
/// Quota block limits are counted in 1 KiB blocks (`QIF_DQBLKSIZE`).
const QUOTA_BLOCK: u64 = 1024;

/// `struct fsxattr` from `<linux/fs.h>`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct FsXattr {
    xflags: u32,
    extsize: u32,
    nextents: u32,
    projid: u32,
    cowextsize: u32,
    pad: [u8; 8],
}

/// Why claim sizes cannot be enforced on this host. The message is shown to users as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaUnavailable {
    #[error("cannot find the filesystem of {path} in /proc/self/mountinfo")]
    NoMount { path: PathBuf },
    #[error(
        "the filesystem of {path} is {fs_type} (mounted at {mount_point}); project quotas need ext4 or xfs"
    )]
    Filesystem {
        path: PathBuf,
        fs_type: String,
        mount_point: PathBuf,
    },
    #[error(
        "the {fs_type} filesystem of {path} ({source_device}, mounted at {mount_point}) is not mounted with the prjquota option"
    )]
    NotEnabled {
        path: PathBuf,
        fs_type: String,
        source_device: String,
        mount_point: PathBuf,
    },
    #[error("the kernel refuses project quota calls on {source_device} ({errno})")]
    Kernel {
        source_device: String,
        errno: String,
    },
}

/// A quota operation on a claim directory that failed.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("reading the project id of {path}")]
    GetProject {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("setting project id {id} on {path}")]
    SetProject {
        path: PathBuf,
        id: u32,
        #[source]
        source: io::Error,
    },
    #[error("setting the limit of project {id} on {device}")]
    SetLimit {
        device: String,
        id: u32,
        #[source]
        source: io::Error,
    },
    #[error("reading the usage of project {id} on {device}")]
    GetUsage {
        device: String,
        id: u32,
        #[source]
        source: io::Error,
    },
    #[error("listing {path}")]
    List {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no free project id is left at or above {PROJECT_ID_BASE} in {path}")]
    Exhausted { path: PathBuf },
}

/// One line of `/proc/self/mountinfo`, the parts this module needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
    /// Per-superblock options (where ext4 and xfs list `prjquota`).
    pub super_options: Vec<String>,
}

/// Parses `/proc/self/mountinfo` text (octal escapes in paths decoded).
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?;
            let mut right = right.split(' ');
            let fs_type = right.next()?;
            let source = right.next()?;
            let options = right.next().unwrap_or("");
            Some(MountInfo {
                mount_point: PathBuf::from(unescape(mount_point)),
                fs_type: fs_type.to_owned(),
                source: unescape(source),
                super_options: options.split(',').map(str::to_owned).collect(),
            })
        })
        .collect()
}

/// Undoes mountinfo's `\040`-style escapes.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value =
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount holding `path` (an absolute, canonical path): the last listed mount whose mount
/// point is `path` or one of its ancestors (later mounts hide earlier ones).
pub fn mount_of<'m>(mounts: &'m [MountInfo], path: &Path) -> Option<&'m MountInfo> {
    mounts
        .iter()
        .filter(|m| path.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.components().count())
        .and_then(|best| {
            // Among mounts on the same point, the last one is visible.
            mounts
                .iter()
                .rev()
                .find(|m| m.mount_point == best.mount_point)
        })
}

/// Whether a mount can carry project quotas, judged from its type and options alone.
pub fn check_mount(path: &Path, mount: &MountInfo) -> Result<(), QuotaUnavailable> {
    if mount.fs_type != "ext4" && mount.fs_type != "xfs" {
        return Err(QuotaUnavailable::Filesystem {
            path: path.to_path_buf(),
            fs_type: mount.fs_type.clone(),
            mount_point: mount.mount_point.clone(),
        });
    }
    let enabled = mount
        .super_options
        .iter()
        .any(|o| o == "prjquota" || o == "pquota" || o == "pqnoenforce" || o == "prjjquota");
    if !enabled {
        return Err(QuotaUnavailable::NotEnabled {
            path: path.to_path_buf(),
            fs_type: mount.fs_type.clone(),
            source_device: mount.source.clone(),
            mount_point: mount.mount_point.clone(),
        });
    }
    Ok(())
}

/// Project quotas on the filesystem that holds the claim directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectQuotas {
    device: String,
    fs_type: String,
}

impl ProjectQuotas {
    /// Finds out whether claim directories under `dir` (which must exist) can be limited, and
    /// why not when they cannot.
    pub fn probe(dir: &Path) -> Result<ProjectQuotas, QuotaUnavailable> {
        let path = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mounts = parse_mountinfo(&text);
        let mount = mount_of(&mounts, &path)
            .ok_or_else(|| QuotaUnavailable::NoMount { path: path.clone() })?;
        check_mount(&path, mount)?;
        let quotas = ProjectQuotas {
            device: mount.source.clone(),
            fs_type: mount.fs_type.clone(),
        };
        // Reading project 0's usage proves the kernel keeps project accounting here.
        quotas.get(0).map_err(|source| QuotaUnavailable::Kernel {
            source_device: quotas.device.clone(),
            errno: source.to_string(),
        })?;
        Ok(quotas)
    }

    /// The block device the limits are set on.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// The filesystem type (`ext4` or `xfs`).
    pub fn fs_type(&self) -> &str {
        &self.fs_type
    }

    /// Gives `claim` (a directory directly under `claims_dir`) a project id if it has none
    /// (marking what is already inside), and sets the project's hard limit to `limit_bytes`
    /// (rounded up to KiB; 0 removes the limit). Returns the project id.
    pub fn limit(
        &self,
        claims_dir: &Path,
        claim: &Path,
        limit_bytes: u64,
    ) -> Result<u32, QuotaError> {
        let id = match project_id(claim)? {
            0 => {
                let id = free_project_id(claims_dir)?;
                assign_tree(claim, id)?;
                id
            }
            id => id,
        };
        let mut block = self.get(id).unwrap_or_else(|_| zero_dqblk());
        block.dqb_bhardlimit = limit_bytes.div_ceil(QUOTA_BLOCK);
        block.dqb_bsoftlimit = 0;
        block.dqb_valid = libc::QIF_BLIMITS;
        self.set(id, &mut block)
            .map_err(|source| QuotaError::SetLimit {
                device: self.device.clone(),
                id,
                source,
            })?;
        Ok(id)
    }

    /// Bytes used by `claim`'s project, or `None` if it has no project id yet.
    pub fn usage(&self, claim: &Path) -> Result<Option<u64>, QuotaError> {
        let id = project_id(claim)?;
        if id == 0 {
            return Ok(None);
        }
        let block = self.get(id).map_err(|source| QuotaError::GetUsage {
            device: self.device.clone(),
            id,
            source,
        })?;
        Ok(Some(block.dqb_curspace))
    }

    /// Removes the limit of `claim`'s project (before the directory is deleted, so the id can
    /// be reused cleanly).
    pub fn clear(&self, claim: &Path) -> Result<(), QuotaError> {
        let id = project_id(claim)?;
        if id == 0 {
            return Ok(());
        }
        let mut block = zero_dqblk();
        block.dqb_valid = libc::QIF_LIMITS;
        self.set(id, &mut block)
            .map_err(|source| QuotaError::SetLimit {
                device: self.device.clone(),
                id,
                source,
            })
    }

    fn get(&self, id: u32) -> io::Result<libc::dqblk> {
        let mut block = zero_dqblk();
        self.quotactl(libc::Q_GETQUOTA, id, &mut block)?;
        Ok(block)
    }

    fn set(&self, id: u32, block: &mut libc::dqblk) -> io::Result<()> {
        self.quotactl(libc::Q_SETQUOTA, id, block)
    }

    fn quotactl(&self, command: libc::c_int, id: u32, block: &mut libc::dqblk) -> io::Result<()> {
        let device = CString::new(self.device.as_bytes()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "device name contains a NUL byte",
            )
        })?;
        let id = libc::c_int::try_from(id)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "project id out of range"))?;
        // SAFETY: `device` is a valid NUL-terminated string and `block` a valid, exclusively
        // borrowed `struct if_dqblk` (libc::dqblk), both outliving the call; Q_GETQUOTA writes
        // and Q_SETQUOTA reads exactly one such struct.
        let rc = unsafe {
            libc::quotactl(
                libc::QCMD(command, PRJQUOTA),
                device.as_ptr(),
                id,
                (block as *mut libc::dqblk).cast::<libc::c_char>(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

fn zero_dqblk() -> libc::dqblk {
    libc::dqblk {
        dqb_bhardlimit: 0,
        dqb_bsoftlimit: 0,
        dqb_curspace: 0,
        dqb_ihardlimit: 0,
        dqb_isoftlimit: 0,
        dqb_curinodes: 0,
        dqb_btime: 0,
        dqb_itime: 0,
        dqb_valid: 0,
    }
}

fn get_xattr(file: &File) -> io::Result<FsXattr> {
    let mut attr = FsXattr::default();
    // SAFETY: FS_IOC_FSGETXATTR writes one `struct fsxattr` (FsXattr is its exact repr(C)
    // layout, 28 bytes) through the pointer, which is valid and exclusively borrowed.
    let rc = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            FS_IOC_FSGETXATTR,
            &mut attr as *mut FsXattr,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(attr)
}

fn set_xattr(file: &File, attr: &FsXattr) -> io::Result<()> {
    // SAFETY: FS_IOC_FSSETXATTR reads one `struct fsxattr` from the pointer, which is valid
    // for the duration of the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FSSETXATTR, attr as *const FsXattr) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The project id of `path` (0: none).
pub fn project_id(path: &Path) -> Result<u32, QuotaError> {
    let get = |source| QuotaError::GetProject {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(get)?;
    Ok(get_xattr(&file).map_err(get)?.projid)
}

/// The lowest id at or above [`PROJECT_ID_BASE`] that no directory in `claims_dir` uses.
fn free_project_id(claims_dir: &Path) -> Result<u32, QuotaError> {
    let entries = std::fs::read_dir(claims_dir).map_err(|source| QuotaError::List {
        path: claims_dir.to_path_buf(),
        source,
    })?;
    let mut used: Vec<u32> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| project_id(&e.path()).ok())
        .filter(|id| *id >= PROJECT_ID_BASE)
        .collect();
    used.sort_unstable();
    lowest_free(&used).ok_or_else(|| QuotaError::Exhausted {
        path: claims_dir.to_path_buf(),
    })
}

/// The lowest id at or above the base missing from `used` (sorted).
fn lowest_free(used: &[u32]) -> Option<u32> {
    let mut candidate = PROJECT_ID_BASE;
    for id in used {
        match (*id).cmp(&candidate) {
            std::cmp::Ordering::Less => {}
            std::cmp::Ordering::Equal => candidate = candidate.checked_add(1)?,
            std::cmp::Ordering::Greater => break,
        }
    }
    // i32::MAX is the largest id quotactl takes.
    (candidate <= i32::MAX as u32).then_some(candidate)
}

/// Sets project `id` on `root` (with inheritance) and on everything under it on the same
/// filesystem; symlinks and special files are skipped (the ioctl needs an open file).
fn assign_tree(root: &Path, id: u32) -> Result<(), QuotaError> {
    let device = std::fs::metadata(root)
        .map_err(|source| QuotaError::GetProject {
            path: root.to_path_buf(),
            source,
        })?
        .dev();
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let set = |source| QuotaError::SetProject {
            path: path.clone(),
            id,
            source,
        };
        let meta = std::fs::symlink_metadata(&path).map_err(set)?;
        if meta.dev() != device || !(meta.is_dir() || meta.is_file()) {
            continue;
        }
        let file = File::open(&path).map_err(set)?;
        let mut attr = get_xattr(&file).map_err(set)?;
        attr.projid = id;
        if meta.is_dir() {
            attr.xflags |= FS_XFLAG_PROJINHERIT;
            for entry in std::fs::read_dir(&path).map_err(set)?.flatten() {
                pending.push(entry.path());
            }
        }
        set_xattr(&file, &attr).map_err(set)?;
    }
    Ok(())
}

/// Bytes a directory tree takes on disk (allocated blocks, each inode counted once, not
/// crossing into other filesystems): what `du -sx` reports. Entries that vanish while the
/// walk runs are skipped.
pub fn directory_usage(root: &Path) -> io::Result<u64> {
    let top = std::fs::symlink_metadata(root)?;
    let device = top.dev();
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut pending = vec![(root.to_path_buf(), top)];
    while let Some((path, meta)) = pending.pop() {
        if meta.dev() != device {
            continue;
        }
        if meta.nlink() > 1 && !meta.is_dir() && !seen.insert(meta.ino()) {
            continue;
        }
        total = total.saturating_add(meta.blocks().saturating_mul(512));
        if meta.is_dir() {
            let entries = match std::fs::read_dir(&path) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries.flatten() {
                if let Ok(child) = entry.metadata() {
                    pending.push((entry.path(), child));
                }
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:25 / /run rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,size=1024k
41 22 7:0 / /var/lib/berth rw,relatime shared:9 - xfs /dev/loop0 rw,attr2,inode64,prjquota
42 22 7:1 / /srv/my\\040data rw,relatime shared:10 - ext4 /dev/loop1 rw,prjquota
";

    #[test]
    fn mountinfo_lines_give_type_source_and_options() {
        let mounts = parse_mountinfo(MOUNTINFO);
        assert_eq!(mounts.len(), 4);
        assert_eq!(mounts[2].mount_point, PathBuf::from("/var/lib/berth"));
        assert_eq!(mounts[2].fs_type, "xfs");
        assert_eq!(mounts[2].source, "/dev/loop0");
        assert!(mounts[2].super_options.iter().any(|o| o == "prjquota"));
        assert_eq!(mounts[3].mount_point, PathBuf::from("/srv/my data"));
    }

    #[test]
    fn the_deepest_mount_holds_a_path() {
        let mounts = parse_mountinfo(MOUNTINFO);
        let claims = Path::new("/var/lib/berth/volumes/claims");
        assert_eq!(mount_of(&mounts, claims).unwrap().source, "/dev/loop0");
        assert_eq!(
            mount_of(&mounts, Path::new("/var/lib/other"))
                .unwrap()
                .source,
            "/dev/vda"
        );
        assert_eq!(
            mount_of(&mounts, Path::new("/run/berth")).unwrap().fs_type,
            "tmpfs"
        );
    }

    #[test]
    fn only_ext4_and_xfs_with_prjquota_qualify() {
        let mounts = parse_mountinfo(MOUNTINFO);
        let path = Path::new("/x");
        assert_eq!(check_mount(path, &mounts[2]), Ok(()));
        assert_eq!(check_mount(path, &mounts[3]), Ok(()));
        let root = check_mount(path, &mounts[0]).unwrap_err();
        assert_eq!(
            root.to_string(),
            "the ext4 filesystem of /x (/dev/vda, mounted at /) is not mounted with the prjquota option"
        );
        let tmpfs = check_mount(path, &mounts[1]).unwrap_err();
        assert_eq!(
            tmpfs.to_string(),
            "the filesystem of /x is tmpfs (mounted at /run); project quotas need ext4 or xfs"
        );
    }

    #[test]
    fn free_project_ids_fill_gaps_above_the_base() {
        assert_eq!(lowest_free(&[]), Some(PROJECT_ID_BASE));
        assert_eq!(lowest_free(&[PROJECT_ID_BASE]), Some(PROJECT_ID_BASE + 1));
        assert_eq!(
            lowest_free(&[PROJECT_ID_BASE, PROJECT_ID_BASE + 2]),
            Some(PROJECT_ID_BASE + 1)
        );
        assert_eq!(lowest_free(&[PROJECT_ID_BASE + 5]), Some(PROJECT_ID_BASE));
    }

    #[test]
    fn probing_this_hosts_filesystem_agrees_with_its_mount_options() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().canonicalize().unwrap();
        let mounts = parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap());
        let mount = mount_of(&mounts, &path).expect("the temp dir is on some mount");
        match (check_mount(&path, mount), ProjectQuotas::probe(&path)) {
            (Err(expected), Err(found)) => assert_eq!(expected, found),
            // The options allow quotas: the probe either works or the kernel says why not.
            (Ok(()), Ok(quotas)) => assert_eq!(quotas.device(), mount.source),
            (Ok(()), Err(found)) => {
                assert!(matches!(found, QuotaUnavailable::Kernel { .. }), "{found}")
            }
            (Err(expected), Ok(_)) => panic!("probe succeeded although {expected}"),
        }
    }

    #[test]
    fn directory_usage_counts_blocks_once_per_inode() {
        let dir = tempfile::tempdir().unwrap();
        let empty = directory_usage(dir.path()).unwrap();
        let data = vec![7u8; 64 * 1024];
        std::fs::write(dir.path().join("a"), &data).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b"), &data).unwrap();
        std::fs::hard_link(dir.path().join("a"), dir.path().join("sub/a-again")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("link")).unwrap();
        let used = directory_usage(dir.path()).unwrap();
        // Two 64 KiB files (the hard link is the same inode), plus the directories.
        assert!(used >= empty + 2 * 64 * 1024, "{used}");
        assert!(used < empty + 3 * 64 * 1024, "{used}");
    }
}
