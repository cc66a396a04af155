//! A container's root filesystem: an overlay per container (image layers as lower dirs, a
//! per-container upper and work dir on the data dir, so writes survive a reboot until the
//! container is removed), or a directory given as is.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use serde::{Deserialize, Serialize};

use crate::layout::{ContainerId, RuntimeDirs};

/// Where a container's root filesystem comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RootfsSource {
    /// An overlay of these directories, top layer first (as `Image::layer_dirs` gives them).
    Overlay { lower_dirs: Vec<PathBuf> },
    /// This directory, used directly (not copied; writes go into it).
    Directory(PathBuf),
}

/// A root filesystem that cannot be set up or torn down.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("rootfs {path} does not exist or is not a directory")]
    Missing { path: PathBuf },
    #[error("an overlay rootfs needs at least one lower directory")]
    NoLayers,
    #[error(
        "overlay options for {count} layers are {len} bytes, over the kernel's page-size limit"
    )]
    TooManyLayers { count: usize, len: usize },
    #[error("layer path {path} cannot be used in overlay options (contains ',' or ':')")]
    BadLayerPath { path: PathBuf },
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RootfsError {
    let path = path.to_path_buf();
    move |source| RootfsError::Io { what, path, source }
}

/// Checks that what the source names exists, before anything is created.
pub fn check(source: &RootfsSource) -> Result<(), RootfsError> {
    let dirs: Vec<&PathBuf> = match source {
        RootfsSource::Overlay { lower_dirs } if lower_dirs.is_empty() => {
            return Err(RootfsError::NoLayers);
        }
        RootfsSource::Overlay { lower_dirs } => lower_dirs.iter().collect(),
        RootfsSource::Directory(p) => vec![p],
    };
    for d in dirs {
        if !d.is_dir() {
            return Err(RootfsError::Missing { path: d.clone() });
        }
        if matches!(source, RootfsSource::Overlay { .. })
            && d.to_string_lossy().contains([',', ':'])
        {
            return Err(RootfsError::BadLayerPath { path: d.clone() });
        }
    }
    Ok(())
}

/// The overlay mount options (pure, for testing the size limit).
pub fn overlay_options(
    lower: &[PathBuf],
    upper: &Path,
    work: &Path,
) -> Result<String, RootfsError> {
    let lowers: Vec<String> = lower.iter().map(|p| p.display().to_string()).collect();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers.join(":"),
        upper.display(),
        work.display()
    );
    // The kernel copies mount data into a single page.
    if options.len() >= 4096 {
        return Err(RootfsError::TooManyLayers {
            count: lower.len(),
            len: options.len(),
        });
    }
    Ok(options)
}

/// Sets up the root filesystem of container `id` and returns its path. On failure nothing is
/// left mounted or created.
pub fn prepare(
    dirs: &RuntimeDirs,
    id: &ContainerId,
    source: &RootfsSource,
) -> Result<PathBuf, RootfsError> {
    check(source)?;
    let lower_dirs = match source {
        RootfsSource::Directory(p) => {
            return std::fs::canonicalize(p).map_err(io_err("resolving rootfs", p));
        }
        RootfsSource::Overlay { lower_dirs } => lower_dirs,
    };
    let base = dirs.container_data_dir(id);
    let (upper, work, merged) = (base.join("upper"), base.join("work"), base.join("rootfs"));
    let options = overlay_options(lower_dirs, &upper, &work)?;
    let result = (|| {
        for d in [&upper, &work, &merged] {
            std::fs::create_dir_all(d).map_err(io_err("creating", d))?;
        }
        crate::sys::mount(
            Some(Path::new("overlay")),
            &merged,
            Some("overlay"),
            MsFlags::empty(),
            Some(&options),
        )
        .map_err(io_err("mounting overlay rootfs on", &merged))
    })();
    match result {
        Ok(()) => Ok(merged),
        Err(e) => {
            let _ = remove(dirs, id);
            Err(e)
        }
    }
}

/// Unmounts a container's overlay rootfs and removes its upper, work and mount dirs.
/// Idempotent; a container with a directory rootfs has nothing here.
pub fn remove(dirs: &RuntimeDirs, id: &ContainerId) -> Result<(), RootfsError> {
    let base = dirs.container_data_dir(id);
    let merged = base.join("rootfs");
    while crate::sys::unmount(&merged).map_err(io_err("unmounting", &merged))? {}
    crate::fsutil::remove_dir_all_if_exists(&base).map_err(io_err("removing", &base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_rootfs_paths_are_named() {
        let err = check(&RootfsSource::Directory("/nonexistent/rootfs".into())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "rootfs /nonexistent/rootfs does not exist or is not a directory"
        );
        let err = check(&RootfsSource::Overlay {
            lower_dirs: vec!["/".into(), "/nonexistent/layer".into()],
        })
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/layer"));
        assert!(matches!(
            check(&RootfsSource::Overlay { lower_dirs: vec![] }),
            Err(RootfsError::NoLayers)
        ));
    }

    #[test]
    fn overlay_options_list_layers_top_first_and_respect_the_page_limit() {
        let opts = overlay_options(
            &["/l/top".into(), "/l/base".into()],
            Path::new("/c/upper"),
            Path::new("/c/work"),
        )
        .unwrap();
        assert_eq!(
            opts,
            "lowerdir=/l/top:/l/base,upperdir=/c/upper,workdir=/c/work"
        );
        let many: Vec<PathBuf> = (0..100)
            .map(|i| PathBuf::from(format!("/var/lib/berth/images/layers/sha256/{i:064}")))
            .collect();
        assert!(matches!(
            overlay_options(&many, Path::new("/u"), Path::new("/w")),
            Err(RootfsError::TooManyLayers { count: 100, .. })
        ));
    }
}
