//! `subPath`: a path inside a volume, created if missing (as kubelet does), that must stay
//! inside the volume even through symlinks.

use std::ffi::OsStr;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Component, Path, PathBuf};

use super::{VolumeError, io_err};

/// Resolves `sub_path` inside the volume at `root`, creating missing directories, and returns
/// the real host path. A `..`, an absolute path, or a symlink leading out of the volume is an
/// error naming the subPath.
pub fn resolve_sub_path(root: &Path, sub_path: &str) -> Result<PathBuf, VolumeError> {
    let rel = Path::new(sub_path);
    if sub_path.is_empty()
        || rel.is_absolute()
        || !rel
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(VolumeError::BadSubPath {
            sub_path: sub_path.to_owned(),
        });
    }
    let outside = || VolumeError::SubPathOutside {
        sub_path: sub_path.to_owned(),
        volume: root.to_path_buf(),
    };
    let root_dir = std::fs::File::open(root).map_err(io_err("opening volume", root))?;
    let mut prefix = PathBuf::new();
    for component in rel.components() {
        let Component::Normal(name) = component else {
            continue;
        };
        let parent = prefix.clone();
        prefix.push(name);
        match crate::sys::open_beneath(&root_dir, &prefix, libc::O_PATH) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                make_dir_beneath(&root_dir, &parent, name).map_err(|e| match e.raw_os_error() {
                    Some(libc::EXDEV) | Some(libc::ELOOP) => outside(),
                    _ => io_err("creating subPath directory", &root.join(&prefix))(e),
                })?;
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EXDEV) | Some(libc::ELOOP)) => {
                return Err(outside());
            }
            Err(e) => return Err(io_err("resolving subPath", &root.join(&prefix))(e)),
        }
    }
    let fd = crate::sys::open_beneath(&root_dir, rel, libc::O_PATH).map_err(|e| {
        match e.raw_os_error() {
            Some(libc::EXDEV) | Some(libc::ELOOP) => outside(),
            _ => io_err("resolving subPath", &root.join(rel))(e),
        }
    })?;
    let real = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(io_err("resolving subPath", &root.join(rel)))?;
    let real_root = std::fs::canonicalize(root).map_err(io_err("resolving volume", root))?;
    if !real.starts_with(&real_root) {
        return Err(outside());
    }
    Ok(real)
}

/// mkdir `name` in the directory `parent` (relative to `root`, resolved beneath it).
fn make_dir_beneath(root: &std::fs::File, parent: &Path, name: &OsStr) -> io::Result<()> {
    let dir = if parent.as_os_str().is_empty() {
        root.try_clone()?.into()
    } else {
        crate::sys::open_beneath(root, parent, libc::O_PATH | libc::O_DIRECTORY)?
    };
    match nix::sys::stat::mkdirat(
        Some(dir.as_raw_fd()),
        name,
        nix::sys::stat::Mode::from_bits_truncate(0o755),
    ) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_paths_are_created_inside_the_volume() {
        let vol = tempfile::tempdir().unwrap();
        let p = resolve_sub_path(vol.path(), "a/b/c").unwrap();
        assert!(p.is_dir());
        assert_eq!(p, std::fs::canonicalize(vol.path()).unwrap().join("a/b/c"));
        // Again: idempotent.
        assert_eq!(resolve_sub_path(vol.path(), "a/b/c").unwrap(), p);
        std::fs::write(p.join("file"), "x").unwrap();
        assert!(
            resolve_sub_path(vol.path(), "a/b/c/file")
                .unwrap()
                .is_file()
        );
    }

    #[test]
    fn sub_paths_leaving_the_volume_are_refused() {
        let vol = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), vol.path().join("escape")).unwrap();
        std::os::unix::fs::symlink("../..", vol.path().join("up")).unwrap();
        std::fs::create_dir(vol.path().join("inner")).unwrap();
        std::os::unix::fs::symlink("inner", vol.path().join("ok-link")).unwrap();

        for bad in ["escape", "escape/new", "up/x"] {
            let err = resolve_sub_path(vol.path(), bad).unwrap_err();
            assert!(
                matches!(err, VolumeError::SubPathOutside { .. }),
                "{bad}: {err}"
            );
            assert!(err.to_string().contains(bad));
        }
        assert!(
            !outside.path().join("new").exists(),
            "nothing created outside"
        );
        for bad in ["../x", "/abs", "a/../../b", ""] {
            assert!(matches!(
                resolve_sub_path(vol.path(), bad),
                Err(VolumeError::BadSubPath { .. })
            ));
        }
        // A symlink that stays inside is fine.
        assert!(
            resolve_sub_path(vol.path(), "ok-link")
                .unwrap()
                .ends_with("inner")
        );
    }
}
