//! Pod volumes on the host, ready to be bind-mounted into containers.
//!
//! | kind       | host path                                                | lifetime          |
//! |------------|----------------------------------------------------------|-------------------|
//! | claim      | `<data>/volumes/claims/<claim>` ([`quota`] limits its size where it can) | until deleted explicitly ([`remove_claim`]) |
//! | emptyDir   | `<data>/pods/<uid>/volumes/empty-dir/<name>` (tmpfs for `medium: Memory`) | the pod |
//! | hostPath   | the given path, checked against its `type`               | the host's        |
//! | configMap  | `<data>/pods/<uid>/volumes/configmap/<name>` (tmpfs)     | the pod           |
//! | secret     | `<data>/pods/<uid>/volumes/secret/<name>` (tmpfs)        | the pod           |
//!
//! Projected files are written kubelet's way (a timestamped directory, a `..data` symlink
//! swapped atomically, and one symlink per top-level name) so [`update_projected`] can refresh
//! them while containers read. Secrets live on tmpfs only: they never touch the disk.

mod claim;
mod host_path;
mod projected;
pub mod quota;
mod sub_path;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use serde::{Deserialize, Serialize};

use crate::layout::{PodUid, RuntimeDirs, validate_name};

pub use claim::{claim_path, remove_claim};
pub use host_path::HostPathType;
pub use projected::{KeyToPath, Projection};
pub use sub_path::resolve_sub_path;

/// Where an emptyDir lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum StorageMedium {
    /// The data dir's disk.
    #[default]
    Disk,
    /// A tmpfs.
    Memory,
}

/// A pod volume's source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeSource {
    /// A claim directory: persistent, shared by every pod that names the claim.
    Claim {
        claim: String,
    },
    EmptyDir {
        medium: StorageMedium,
        size_limit: Option<u64>,
    },
    HostPath {
        path: PathBuf,
        kind: HostPathType,
    },
    ConfigMap(Projection),
    Secret(Projection),
}

/// A volume ready to be mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedVolume {
    pub name: String,
    /// The directory (or file, for hostPath) to bind-mount.
    pub path: PathBuf,
}

/// A volume that cannot be prepared, refreshed or removed.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("volume name")]
    BadName(#[source] crate::layout::IdError),
    #[error("claim name")]
    BadClaim(#[source] crate::layout::IdError),
    #[error("hostPath {path:?} must be absolute")]
    RelativeHostPath { path: PathBuf },
    #[error("hostPath {path} is not {expected}")]
    HostPathType {
        path: PathBuf,
        expected: &'static str,
    },
    #[error("volume {volume}: key {key:?} is not in the {kind}'s data")]
    MissingKey {
        volume: String,
        kind: &'static str,
        key: String,
    },
    #[error(
        "volume {volume}: item path {path:?} must be relative, without '..', and not start with '..'"
    )]
    BadItemPath { volume: String, path: String },
    #[error("volume {volume}: mode {mode:#o} of {path:?} is not a file mode (0 to 0777)")]
    BadMode {
        volume: String,
        path: String,
        mode: u32,
    },
    #[error("subPath {sub_path:?} must be a relative path without '..'")]
    BadSubPath { sub_path: String },
    #[error("subPath {sub_path:?} resolves outside volume {volume}")]
    SubPathOutside { sub_path: String, volume: PathBuf },
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn io_err(
    what: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> VolumeError {
    let path = path.to_path_buf();
    move |source| VolumeError::Io { what, path, source }
}

fn kind_dir(source: &VolumeSource) -> &'static str {
    match source {
        VolumeSource::EmptyDir { .. } => "empty-dir",
        VolumeSource::ConfigMap(_) => "configmap",
        VolumeSource::Secret(_) => "secret",
        VolumeSource::Claim { .. } | VolumeSource::HostPath { .. } => "",
    }
}

/// The host directory of a pod-scoped volume.
pub fn pod_volume_dir(dirs: &RuntimeDirs, pod: &PodUid, kind: &str, name: &str) -> PathBuf {
    dirs.pod_data_dir(pod).join("volumes").join(kind).join(name)
}

/// Creates (or finds) a claim directory. Idempotent; never empties an existing claim.
pub fn ensure_claim(dirs: &RuntimeDirs, claim: &str) -> Result<PathBuf, VolumeError> {
    validate_name("claim name", claim).map_err(VolumeError::BadClaim)?;
    let path = dirs.claims_dir().join(claim);
    std::fs::create_dir_all(&path).map_err(io_err("creating claim directory", &path))?;
    Ok(path)
}

/// Prepares volume `name` of `pod`. Idempotent: preparing a prepared volume returns the same
/// path (projected files are refreshed). `fs_group` is the pod's fsGroup.
pub fn prepare(
    dirs: &RuntimeDirs,
    pod: &PodUid,
    name: &str,
    source: &VolumeSource,
    fs_group: Option<u32>,
) -> Result<PreparedVolume, VolumeError> {
    validate_name("volume name", name).map_err(VolumeError::BadName)?;
    let path = match source {
        VolumeSource::Claim { claim } => {
            let path = ensure_claim(dirs, claim)?;
            if let Some(gid) = fs_group {
                give_to_group(&path, gid, 0o2775)?;
            }
            path
        }
        VolumeSource::HostPath { path, kind } => {
            host_path::check(path, *kind)?;
            path.clone()
        }
        VolumeSource::EmptyDir { medium, size_limit } => {
            let path = pod_volume_dir(dirs, pod, kind_dir(source), name);
            std::fs::create_dir_all(&path).map_err(io_err("creating emptyDir", &path))?;
            if *medium == StorageMedium::Memory
                && !crate::sys::is_mount_point(&path).unwrap_or(false)
            {
                let mut data = String::from("mode=0777");
                if let Some(size) = size_limit {
                    data.push_str(&format!(",size={size}"));
                }
                crate::sys::mount(
                    Some(Path::new("tmpfs")),
                    &path,
                    Some("tmpfs"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    Some(&data),
                )
                .map_err(io_err("mounting tmpfs emptyDir", &path))?;
            }
            match fs_group {
                Some(gid) => give_to_group(&path, gid, 0o2777)?,
                None => std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))
                    .map_err(io_err("setting the mode of", &path))?,
            }
            path
        }
        VolumeSource::ConfigMap(p) | VolumeSource::Secret(p) => {
            let secret = matches!(source, VolumeSource::Secret(_));
            let path = pod_volume_dir(dirs, pod, kind_dir(source), name);
            let files = projected::payload(name, p, secret, fs_group)?;
            std::fs::create_dir_all(&path).map_err(io_err("creating projected volume", &path))?;
            if !crate::sys::is_mount_point(&path).unwrap_or(false) {
                crate::sys::mount(
                    Some(Path::new("tmpfs")),
                    &path,
                    Some("tmpfs"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                    Some("mode=0755"),
                )
                .map_err(io_err("mounting tmpfs for", &path))?;
            }
            projected::write(&path, &files, fs_group)?;
            path
        }
    };
    Ok(PreparedVolume {
        name: name.to_owned(),
        path,
    })
}

/// Replaces the files of a prepared ConfigMap or Secret volume atomically (readers see the old
/// set or the new one, never a mix).
pub fn update_projected(
    dirs: &RuntimeDirs,
    pod: &PodUid,
    name: &str,
    source: &VolumeSource,
    fs_group: Option<u32>,
) -> Result<(), VolumeError> {
    prepare(dirs, pod, name, source, fs_group).map(|_| ())
}

/// Removes a pod's volumes: unmounts tmpfs volumes and deletes the pod's directory (emptyDir
/// contents included). Claims and hostPaths are untouched. Idempotent.
pub fn remove_pod_volumes(dirs: &RuntimeDirs, pod: &PodUid) -> Result<(), VolumeError> {
    let base = dirs.pod_data_dir(pod);
    let volumes = base.join("volumes");
    for kind in ["empty-dir", "configmap", "secret"] {
        let kind_dir = volumes.join(kind);
        let entries = match std::fs::read_dir(&kind_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("listing", &kind_dir)(e)),
        };
        for entry in entries.flatten() {
            let p = entry.path();
            while crate::sys::unmount(&p).map_err(io_err("unmounting", &p))? {}
        }
    }
    crate::fsutil::remove_dir_all_if_exists(&base).map_err(io_err("removing", &base))
}

fn give_to_group(path: &Path, gid: u32, mode: u32) -> Result<(), VolumeError> {
    std::os::unix::fs::chown(path, None, Some(gid))
        .map_err(io_err("changing the group of", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io_err("setting the mode of", path))
}

/// The data of a ConfigMap or Secret, for building [`Projection`]s.
pub type Data = BTreeMap<String, Vec<u8>>;

#[cfg(test)]
mod tests;
