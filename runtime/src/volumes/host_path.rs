//! hostPath volumes and Kubernetes' `type` checks.

use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{VolumeError, io_err};

/// Kubernetes' `hostPath.type`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostPathType {
    /// `""`: no check.
    #[default]
    Unset,
    DirectoryOrCreate,
    Directory,
    FileOrCreate,
    File,
    Socket,
    CharDevice,
    BlockDevice,
}

/// Checks (and for the `OrCreate` types, creates) a hostPath.
pub fn check(path: &Path, kind: HostPathType) -> Result<(), VolumeError> {
    if !path.is_absolute() {
        return Err(VolumeError::RelativeHostPath {
            path: path.to_path_buf(),
        });
    }
    let wrong = |expected| VolumeError::HostPathType {
        path: path.to_path_buf(),
        expected,
    };
    let meta = std::fs::metadata(path);
    match kind {
        HostPathType::Unset => Ok(()),
        HostPathType::DirectoryOrCreate => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(wrong("a directory")),
            Err(_) => {
                std::fs::create_dir_all(path).map_err(io_err("creating hostPath directory", path))
            }
        },
        HostPathType::FileOrCreate => match meta {
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => Err(wrong("a file")),
            Err(_) => std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(path)
                .map(drop)
                .map_err(io_err("creating hostPath file", path)),
        },
        HostPathType::Directory => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            _ => Err(wrong("an existing directory")),
        },
        HostPathType::File => match meta {
            Ok(m) if m.is_file() => Ok(()),
            _ => Err(wrong("an existing file")),
        },
        HostPathType::Socket => match meta {
            Ok(m) if m.file_type().is_socket() => Ok(()),
            _ => Err(wrong("a unix socket")),
        },
        HostPathType::CharDevice => match meta {
            Ok(m) if m.file_type().is_char_device() => Ok(()),
            _ => Err(wrong("a character device")),
        },
        HostPathType::BlockDevice => match meta {
            Ok(m) if m.file_type().is_block_device() => Ok(()),
            _ => Err(wrong("a block device")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_path_types_are_checked_like_kubelet() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let sock_path = dir.path().join("s.sock");
        let _sock = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
        let missing = dir.path().join("missing");
        let cases: &[(&Path, HostPathType, Result<(), &str>)] = &[
            (dir.path(), HostPathType::Directory, Ok(())),
            (&file, HostPathType::Directory, Err("an existing directory")),
            (&file, HostPathType::File, Ok(())),
            (dir.path(), HostPathType::File, Err("an existing file")),
            (&missing, HostPathType::File, Err("an existing file")),
            (&sock_path, HostPathType::Socket, Ok(())),
            (&file, HostPathType::Socket, Err("a unix socket")),
            (Path::new("/dev/null"), HostPathType::CharDevice, Ok(())),
            (&file, HostPathType::BlockDevice, Err("a block device")),
            (&file, HostPathType::DirectoryOrCreate, Err("a directory")),
            (dir.path(), HostPathType::FileOrCreate, Err("a file")),
            (&missing, HostPathType::Unset, Ok(())),
        ];
        for (path, kind, want) in cases {
            let got = check(path, *kind).map_err(|e| match e {
                VolumeError::HostPathType { expected, .. } => expected,
                other => panic!("unexpected {other}"),
            });
            assert_eq!(got, *want, "{} as {kind:?}", path.display());
        }
    }

    #[test]
    fn or_create_types_create_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("a/b");
        check(&d, HostPathType::DirectoryOrCreate).unwrap();
        assert!(d.is_dir());
        let f = dir.path().join("file");
        check(&f, HostPathType::FileOrCreate).unwrap();
        assert!(f.is_file());
        std::fs::write(&f, "keep").unwrap();
        check(&f, HostPathType::FileOrCreate).unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "keep");
    }

    #[test]
    fn relative_host_paths_are_refused() {
        let err = check(Path::new("data"), HostPathType::Unset).unwrap_err();
        assert_eq!(err.to_string(), "hostPath \"data\" must be absolute");
    }
}
