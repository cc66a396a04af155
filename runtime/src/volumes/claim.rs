//! Claim directories: where they are and how they go away. They are created by
//! [`super::ensure_claim`] (directly, or when a pod's claim volume is prepared) and removed
//! only by [`remove_claim`], which the agent calls when the claim object itself is deleted
//! (explicitly, or by a StatefulSet retention policy the user set).

use std::path::PathBuf;

use super::{VolumeError, io_err};
use crate::layout::{RuntimeDirs, validate_name};

/// The host directory of claim directory `claim` (it may not exist yet).
pub fn claim_path(dirs: &RuntimeDirs, claim: &str) -> Result<PathBuf, VolumeError> {
    validate_name("claim name", claim).map_err(VolumeError::BadClaim)?;
    Ok(dirs.claims_dir().join(claim))
}

/// Deletes claim directory `claim` and everything in it; returns whether it existed.
/// Symlinks inside are removed, never followed. Fails (and deletes nothing more) if something
/// is still mounted inside, i.e. a container still uses it.
pub fn remove_claim(dirs: &RuntimeDirs, claim: &str) -> Result<bool, VolumeError> {
    let path = claim_path(dirs, claim)?;
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err("inspecting claim directory", &path)(e)),
        Ok(meta) if !meta.is_dir() => {
            std::fs::remove_file(&path).map_err(io_err("removing claim", &path))?;
            return Ok(true);
        }
        Ok(_) => {}
    }
    if crate::sys::is_mount_point(&path).unwrap_or(false) {
        return Err(VolumeError::Io {
            what: "removing claim directory (it is a mount point)",
            path,
            source: std::io::Error::from_raw_os_error(libc::EBUSY),
        });
    }
    std::fs::remove_dir_all(&path).map_err(io_err("removing claim directory", &path))?;
    Ok(true)
}
