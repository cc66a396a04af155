//! `images/incoming/`: where a registry pull downloads and unpacks layers before they enter
//! the store. Work here happens without the store's write lock, so pulls of different images
//! run side by side and a long download never blocks `remove`, `prune` or an import:
//!
//! ```text
//! incoming/
//!   active                     flock(2): shared by every pull in flight, exclusive for cleanup
//!   <blob-hex>.lock            flock(2): held by whoever downloads and unpacks that blob
//!   <blob-hex>.partial         a download in progress; kept after a crash, resumed later
//!   unpack-<blob-hex>/         its unpack in progress (a fresh download is unpacked while
//!                              it arrives); removed when it fails, replaced on a retry
//!   <blob-hex>                 a complete download, digest and size verified (only a resumed
//!                              download, or a blob whose unpack failed, gets here)
//!   layer-<diffid-hex>         an unpacked layer: blob digest and diffID verified
//! ```
//!
//! None of it is flushed to disk while a pull works: the pull's commit flushes the filesystem
//! once (`syncfs`) before any of it gets a name in the store, and the first pull after a
//! reboot clears what a previous boot left here (see [`ImageStore::try_begin_pull`]).
//!
//! Nothing here is ever read as store content: a complete blob and its layer directory enter
//! the store only by rename, under the store lock ([`Ingest::adopt_blob`],
//! [`Ingest::adopt_layer`]). The per-blob lock makes concurrent pulls of the same layer
//! (threads or processes) download it once; the `active` lock keeps [`ImageStore::prune`] from
//! clearing the area under a pull.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, RenameFlags};
use oci_spec::image::Digest;

use super::{ImageStore, Ingest, StoreError};
use crate::image::digest::sha256_hex;

/// A held flock on a file of the incoming area, released on drop.
#[derive(Debug)]
pub struct IncomingLock {
    _lock: Flock<File>,
}

impl ImageStore {
    /// The incoming area, `<images>/incoming` (created if needed).
    pub fn incoming_dir(&self) -> Result<PathBuf, StoreError> {
        let dir = self.root.join("incoming");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| StoreError::io("create", &dir, source))?;
        Ok(dir)
    }

    /// Takes the shared "a pull is in flight" lock without waiting; `None` while a cleanup
    /// holds it exclusively (it is brief: the caller retries).
    ///
    /// Work in the incoming area is not flushed to disk until a pull commits, which is safe
    /// against crashes of the process (the page cache keeps it) but not against a reboot. So
    /// the area remembers the boot it was written in: the first pull after a reboot, finding
    /// no other pull in flight, clears everything complete-looking before using it. (Partial
    /// downloads stay: they are hashed again on resume and restarted if they do not verify.)
    pub fn try_begin_pull(&self) -> Result<Option<IncomingLock>, StoreError> {
        let dir = self.incoming_dir()?;
        let path = dir.join("active");
        if let Some(exclusive) = try_flock(&path, FlockArg::LockExclusiveNonblock)? {
            let stamp = dir.join("boot_id");
            let boot = current_boot_id();
            let recorded = fs::read_to_string(&stamp).unwrap_or_default();
            if recorded.trim() != boot {
                for entry in
                    fs::read_dir(&dir).map_err(|source| StoreError::io("read", &dir, source))?
                {
                    let entry = entry.map_err(|source| StoreError::io("read", &dir, source))?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name == "active" || name.ends_with(".lock") || name.ends_with(".partial") {
                        continue;
                    }
                    let path = entry.path();
                    let _ = match entry.file_type() {
                        Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
                        _ => fs::remove_file(&path),
                    };
                }
                fs::write(&stamp, &boot)
                    .map_err(|source| StoreError::io("write", &stamp, source))?;
            }
            drop(exclusive);
        }
        try_flock(&path, FlockArg::LockSharedNonblock)
    }

    /// Takes the download lock of blob `digest` without waiting; `None` while another pull
    /// (thread or process) holds it.
    pub fn try_lock_incoming_blob(
        &self,
        digest: &Digest,
    ) -> Result<Option<IncomingLock>, StoreError> {
        let hex = blob_hex(digest)?;
        let path = self.incoming_dir()?.join(format!("{hex}.lock"));
        try_flock(&path, FlockArg::LockExclusiveNonblock)
    }

    /// Where blob `digest` is downloaded to while in progress.
    pub fn incoming_partial(&self, digest: &Digest) -> Result<PathBuf, StoreError> {
        Ok(self
            .incoming_dir()?
            .join(format!("{}.partial", blob_hex(digest)?)))
    }

    /// Where blob `digest` is once completely downloaded and verified.
    pub fn incoming_blob(&self, digest: &Digest) -> Result<PathBuf, StoreError> {
        Ok(self.incoming_dir()?.join(blob_hex(digest)?))
    }

    /// Where the layer with diffID `diff_id` is once unpacked and verified.
    pub fn incoming_layer(&self, diff_id: &Digest) -> Result<PathBuf, StoreError> {
        Ok(self
            .incoming_dir()?
            .join(format!("layer-{}", blob_hex(diff_id)?)))
    }

    /// Removes everything in the incoming area, if no pull is in flight. Called by `prune`
    /// with the store lock held; returns the number of entries removed.
    pub(crate) fn clear_incoming(&self) -> Result<usize, StoreError> {
        let dir = self.root.join("incoming");
        if !dir.is_dir() {
            return Ok(0);
        }
        let Some(_exclusive) = try_flock(&dir.join("active"), FlockArg::LockExclusiveNonblock)?
        else {
            tracing::debug!("image pulls in flight: incoming downloads kept");
            return Ok(0);
        };
        let mut removed = 0;
        for entry in fs::read_dir(&dir).map_err(|source| StoreError::io("read", &dir, source))? {
            let entry = entry.map_err(|source| StoreError::io("read", &dir, source))?;
            if entry.file_name() == "active" {
                continue;
            }
            let path = entry.path();
            let result = match entry.file_type() {
                Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
                _ => fs::remove_file(&path),
            };
            result.map_err(|source| StoreError::io("remove", &path, source))?;
            removed += 1;
        }
        Ok(removed)
    }
}

impl Ingest<'_> {
    /// Moves a complete, verified download (`path`, in the incoming area) into the store as
    /// blob `digest`, checking only its size (the download verified the digest). A blob the
    /// store already holds is left alone and `path` removed.
    pub fn adopt_blob(
        &mut self,
        path: &Path,
        digest: &Digest,
        size: u64,
    ) -> Result<(), StoreError> {
        let final_path = self.store.blob_path(digest)?;
        if final_path.is_file() {
            let _ = fs::remove_file(path);
            return Ok(());
        }
        let found = fs::metadata(path)
            .map_err(|source| StoreError::io("read", path, source))?
            .len();
        if found != size {
            return Err(StoreError::SizeMismatch {
                origin: path.display().to_string(),
                expected: size,
                found,
            });
        }
        fs::rename(path, &final_path).map_err(|source| StoreError::io("rename", path, source))?;
        self.created_blobs.push(final_path);
        Ok(())
    }

    /// Moves an unpacked, verified layer directory (`dir`, in the incoming area) into the
    /// store as the layer with diffID `diff_id`. A layer the store already holds is kept and
    /// `dir` removed.
    pub fn adopt_layer(&mut self, dir: &Path, diff_id: &Digest) -> Result<(), StoreError> {
        blob_hex(diff_id)?;
        let final_dir = self.store.layer_dir(diff_id);
        match nix::fcntl::renameat2(None, dir, None, &final_dir, RenameFlags::RENAME_NOREPLACE) {
            Ok(()) => {
                self.created_layers.push(final_dir);
                Ok(())
            }
            Err(Errno::EEXIST) | Err(Errno::ENOTEMPTY) => {
                if let Err(error) = fs::remove_dir_all(dir) {
                    tracing::warn!(path = %dir.display(), %error, "cannot remove a duplicate unpacked layer");
                }
                Ok(())
            }
            Err(e) => Err(StoreError::io("rename", dir, e.into())),
        }
    }
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`).
fn current_boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn blob_hex(digest: &Digest) -> Result<&str, StoreError> {
    sha256_hex(digest).ok_or_else(|| StoreError::UnsupportedDigest {
        digest: digest.clone(),
    })
}

fn try_flock(path: &Path, arg: FlockArg) -> Result<Option<IncomingLock>, StoreError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| StoreError::io("open", path, source))?;
    match Flock::lock(file, arg) {
        Ok(lock) => Ok(Some(IncomingLock { _lock: lock })),
        Err((_, Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, errno)) => Err(StoreError::io("lock", path, io::Error::from(errno))),
    }
}
