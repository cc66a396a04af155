//! Adding content to the store: blobs (streamed, verified, fsynced, renamed into place),
//! unpacked layers, and references, all under the store's write lock and all or nothing.
//!
//! An import and a registry pull use the same steps:
//!
//! ```no_run
//! # use berth_runtime::image::{ImageStore, reference};
//! # fn pull(store: &ImageStore, manifest: oci_spec::image::Digest, config: oci_spec::image::Digest,
//! #         mut body: impl std::io::Read) -> Result<(), Box<dyn std::error::Error>> {
//! let mut ingest = store.begin_ingest()?;            // waits for other writers
//! if !ingest.has_blob(&config) {
//!     ingest.write_blob(Some(&config), None, &mut body, "registry config")?; // verified
//! }
//! // ... layers the same way, the manifest last ...
//! ingest.add_image(&manifest, &[reference::normalize("busybox:1.36")?])?; // unpacks layers
//! ingest.commit()?;                                   // references become visible
//! # Ok(()) }
//! ```
//!
//! Dropping an `Ingest` without `commit` removes every blob and layer it created (no one else
//! can have started using them: the lock was held throughout), so a failed import or pull
//! leaves the store as it was.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use nix::fcntl::RenameFlags;
use oci_spec::distribution::Reference;
use oci_spec::image::{Descriptor, Digest};

use super::content::{self, record_of};
use super::index::ReferenceIndex;
use super::{ImageRecord, ImageStore, StoreError, StoreLock};
use crate::image::digest::{HashingWriter, sha256_hex};
use crate::image::platform::Platform;
use crate::image::unpack::unpack_layer;

/// Distinguishes temporary names made by threads of one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn temp_name(kind: &str) -> String {
    format!(
        ".tmp-{kind}-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A write session on the store. See the module documentation.
pub struct Ingest<'s> {
    pub(super) store: &'s ImageStore,
    _lock: StoreLock,
    pub(super) created_blobs: Vec<PathBuf>,
    pub(super) created_layers: Vec<PathBuf>,
    staged: Vec<(String, Digest)>,
    /// Index digest -> the manifest chosen from it, for lookups by the index's digest.
    staged_indexes: Vec<(Digest, Digest)>,
    records: Vec<ImageRecord>,
    committed: bool,
}

impl<'s> Ingest<'s> {
    pub(super) fn begin(store: &'s ImageStore) -> Result<Ingest<'s>, StoreError> {
        let lock = store.lock()?;
        store.sweep_temporaries();
        Ok(Ingest {
            store,
            _lock: lock,
            created_blobs: Vec::new(),
            created_layers: Vec::new(),
            staged: Vec::new(),
            staged_indexes: Vec::new(),
            records: Vec::new(),
            committed: false,
        })
    }

    /// Whether the store already holds blob `digest` (then it need not be fetched).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.store.has_blob(digest)
    }

    /// Starts writing a blob. With `expected`, the content must hash to it; with
    /// `expected_size`, it must be that long (longer input fails as soon as it overflows).
    /// `origin` names where the bytes come from, for errors.
    pub fn blob_writer(
        &mut self,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
        origin: &str,
    ) -> Result<BlobWriter<'_, 's>, StoreError> {
        if let Some(digest) = expected
            && sha256_hex(digest).is_none()
        {
            return Err(StoreError::UnsupportedDigest {
                digest: digest.clone(),
            });
        }
        let tmp = self.store.blobs_dir().join(temp_name("blob"));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(|source| StoreError::io("create", &tmp, source))?;
        Ok(BlobWriter {
            ingest: self,
            expected: expected.cloned(),
            expected_size,
            origin: origin.to_owned(),
            tmp,
            writer: Some(HashingWriter::new(BufWriter::with_capacity(
                256 * 1024,
                file,
            ))),
        })
    }

    /// Streams `reader` into a blob (see [`Ingest::blob_writer`]); returns its digest and
    /// size. A blob already present with the expected digest is not read again.
    pub fn write_blob(
        &mut self,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
        reader: &mut dyn Read,
        origin: &str,
    ) -> Result<(Digest, u64), StoreError> {
        if let Some(digest) = expected
            && self.has_blob(digest)
        {
            let path = self.store.blob_path(digest)?;
            let size = fs::metadata(&path)
                .map_err(|source| StoreError::io("read", &path, source))?
                .len();
            return Ok((digest.clone(), size));
        }
        let mut writer = self.blob_writer(expected, expected_size, origin)?;
        let mut buffer = vec![0u8; 256 * 1024];
        loop {
            let n = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(StoreError::ReadBlob {
                        origin: origin.to_owned(),
                        source,
                    });
                }
            };
            writer.write_chunk(&buffer[..n])?;
        }
        writer.commit()
    }

    /// Makes the image with manifest `manifest_digest` (already written, with its config and
    /// layer blobs) ready to run, and stages `references` to name it at commit: checks the
    /// platform, unpacks every layer not yet unpacked and verifies its diffID.
    pub fn add_image(
        &mut self,
        manifest_digest: &Digest,
        references: &[Reference],
    ) -> Result<ImageRecord, StoreError> {
        self.add_image_from_index(manifest_digest, None, references)
    }

    /// [`Ingest::add_image`] for a manifest chosen from the multi-platform index `index`
    /// (what a registry pull of a tag usually finds): references may then name the index's
    /// digest, and the image can be found by it later.
    pub fn add_image_from_index(
        &mut self,
        manifest_digest: &Digest,
        index: Option<&Digest>,
        references: &[Reference],
    ) -> Result<ImageRecord, StoreError> {
        for reference in references {
            if let Some(named) = reference.digest()
                && named != manifest_digest.as_ref()
                && index.is_none_or(|i| named != i.as_ref())
            {
                return Err(StoreError::ReferenceDigest {
                    reference: reference.whole(),
                    named: named.to_owned(),
                    manifest: manifest_digest.clone(),
                });
            }
        }
        let manifest = self.store.read_manifest(manifest_digest)?;
        let config = self.store.read_config(manifest.config())?;
        let image_platform = content::platform(&config);
        let host = Platform::host();
        if image_platform.suitability_on(&host).is_none() {
            return Err(StoreError::WrongPlatform {
                manifest: manifest_digest.clone(),
                image: image_platform,
                host,
            });
        }
        let diff_ids = content::diff_ids(manifest.config().digest(), &config)?;
        if diff_ids.len() != manifest.layers().len() {
            return Err(StoreError::LayerCount {
                manifest: manifest_digest.clone(),
                layers: manifest.layers().len(),
                diff_ids: diff_ids.len(),
            });
        }
        for (layer, diff_id) in manifest.layers().iter().zip(&diff_ids) {
            self.ensure_layer(manifest_digest, layer, diff_id)?;
        }
        let names: Vec<String> = references.iter().map(Reference::whole).collect();
        for name in &names {
            self.staged.push((name.clone(), manifest_digest.clone()));
        }
        if let Some(index) = index {
            self.staged_indexes
                .push((index.clone(), manifest_digest.clone()));
        }
        let record = record_of(manifest_digest, names, &manifest, &config);
        self.records.push(record.clone());
        Ok(record)
    }

    /// Makes everything added durable and points the staged references at their images.
    /// Returns the records of the images added, with all their references.
    pub fn commit(mut self) -> Result<Vec<ImageRecord>, StoreError> {
        if !self.created_blobs.is_empty() {
            sync_dir(&self.store.blobs_dir())?;
        }
        if !self.created_layers.is_empty() {
            sync_dir(&self.store.layers_dir())?;
        }
        let index_path = self.store.index_path();
        let mut index = ReferenceIndex::load(&index_path)?;
        let mut changed = false;
        for (reference, digest) in &self.staged {
            let previous = index.references.insert(reference.clone(), digest.clone());
            if previous.as_ref() == Some(digest) {
                continue;
            }
            if let Some(previous) = previous {
                tracing::info!(reference, from = %previous, to = %digest, "image reference moved to a new image");
            }
            changed = true;
        }
        for (index_digest, manifest) in &self.staged_indexes {
            let previous = index
                .indexes
                .insert(index_digest.to_string(), manifest.clone());
            changed |= previous.as_ref() != Some(manifest);
        }
        if changed {
            index.save(&index_path)?;
        }
        self.committed = true;
        let mut records = std::mem::take(&mut self.records);
        for record in &mut records {
            record.references = index.references_to(&record.manifest_digest);
        }
        Ok(records)
    }

    /// Unpacks layer `layer` (diffID `diff_id`) unless it already is: into a temporary
    /// directory, checked, flushed to disk, then renamed to its final name.
    fn ensure_layer(
        &mut self,
        manifest: &Digest,
        layer: &Descriptor,
        diff_id: &Digest,
    ) -> Result<(), StoreError> {
        if sha256_hex(diff_id).is_none() {
            return Err(StoreError::UnsupportedDigest {
                digest: diff_id.clone(),
            });
        }
        let final_dir = self.store.layer_dir(diff_id);
        if final_dir.is_dir() {
            return Ok(());
        }
        let blob_path = self.store.blob_path(layer.digest())?;
        let blob = match File::open(&blob_path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::BlobMissing {
                    what: "layer",
                    digest: layer.digest().clone(),
                });
            }
            Err(source) => return Err(StoreError::io("open", &blob_path, source)),
        };
        let started = Instant::now();
        let tmp = TempDir::create(self.store.layers_dir().join(temp_name("layer")))?;
        let unpacked =
            unpack_layer(blob, layer.media_type().as_ref(), tmp.path()).map_err(|source| {
                StoreError::Layer {
                    manifest: manifest.clone(),
                    layer: layer.digest().clone(),
                    source,
                }
            })?;
        if unpacked.diff_id != *diff_id {
            return Err(StoreError::DiffIdMismatch {
                layer: layer.digest().clone(),
                expected: diff_id.clone(),
                found: unpacked.diff_id,
            });
        }
        // Everything written below the directory reaches the disk before it gets its final
        // name, so a crash cannot leave a complete-looking layer with missing data.
        let dir =
            File::open(tmp.path()).map_err(|source| StoreError::io("open", tmp.path(), source))?;
        nix::unistd::syncfs(dir.as_raw_fd())
            .map_err(|e| StoreError::io("sync", tmp.path(), e.into()))?;
        drop(dir);
        match nix::fcntl::renameat2(
            None,
            tmp.path(),
            None,
            &final_dir,
            RenameFlags::RENAME_NOREPLACE,
        ) {
            Ok(()) => {
                tmp.keep();
                self.created_layers.push(final_dir);
            }
            // Another writer finished the same layer first (only possible for a writer that
            // ignores the lock); theirs is as good as ours.
            Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(StoreError::io("rename", tmp.path(), e.into())),
        }
        tracing::info!(
            layer = %layer.digest(),
            diff_id = %diff_id,
            entries = unpacked.entries,
            bytes = unpacked.tar_size,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "unpacked layer"
        );
        Ok(())
    }
}

impl Drop for Ingest<'_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        for layer in self.created_layers.drain(..).rev() {
            if let Err(error) = self.store.remove_layer_dir(&layer) {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "cannot roll back unpacked layer"
                );
            }
        }
        for blob in self.created_blobs.drain(..).rev() {
            if let Err(error) = fs::remove_file(&blob) {
                tracing::warn!(path = %blob.display(), %error, "cannot roll back blob");
            }
        }
    }
}

/// A blob being written; see [`Ingest::blob_writer`]. Dropping it without `commit` removes
/// the temporary file.
pub struct BlobWriter<'i, 's> {
    ingest: &'i mut Ingest<'s>,
    expected: Option<Digest>,
    expected_size: Option<u64>,
    origin: String,
    tmp: PathBuf,
    writer: Option<HashingWriter<BufWriter<File>>>,
}

impl BlobWriter<'_, '_> {
    fn writer(&mut self) -> &mut HashingWriter<BufWriter<File>> {
        self.writer
            .as_mut()
            .expect("the writer lives until commit or drop")
    }

    /// Appends a chunk, failing if it makes the blob longer than expected.
    pub fn write_chunk(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        let written = self.writer().bytes();
        if let Some(expected) = self.expected_size
            && written + chunk.len() as u64 > expected
        {
            return Err(StoreError::SizeMismatch {
                origin: self.origin.clone(),
                expected,
                found: written + chunk.len() as u64,
            });
        }
        let tmp = self.tmp.clone();
        self.writer()
            .write_all(chunk)
            .map_err(|source| StoreError::io("write", &tmp, source))
    }

    /// Checks size and digest, flushes the file to disk and renames it to its digest.
    /// Returns the digest and size.
    pub fn commit(mut self) -> Result<(Digest, u64), StoreError> {
        let writer = self.writer.take().expect("commit runs once");
        let (buffered, digest, size) = writer.into_parts();
        let file = buffered
            .into_inner()
            .map_err(|e| StoreError::io("write", &self.tmp, e.into_error()))?;
        if let Some(expected) = self.expected_size
            && size != expected
        {
            return Err(StoreError::SizeMismatch {
                origin: self.origin.clone(),
                expected,
                found: size,
            });
        }
        if let Some(expected) = &self.expected
            && *expected != digest
        {
            return Err(StoreError::DigestMismatch {
                origin: self.origin.clone(),
                expected: expected.clone(),
                found: digest,
            });
        }
        file.sync_all()
            .map_err(|source| StoreError::io("sync", &self.tmp, source))?;
        drop(file);
        let final_path = self.ingest.store.blob_path(&digest)?;
        if final_path.is_file() {
            // Already stored (content addressed: same bytes); ours is dropped below.
            return Ok((digest, size));
        }
        fs::rename(&self.tmp, &final_path)
            .map_err(|source| StoreError::io("rename", &self.tmp, source))?;
        self.ingest.created_blobs.push(final_path);
        self.tmp = PathBuf::new();
        Ok((digest, size))
    }
}

impl Write for BlobWriter<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_chunk(buf).map_err(io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer().flush()
    }
}

impl Drop for BlobWriter<'_, '_> {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// A temporary directory removed on drop unless kept.
struct TempDir {
    path: Option<PathBuf>,
}

impl TempDir {
    fn create(path: PathBuf) -> Result<TempDir, StoreError> {
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&path)
            .map_err(|source| StoreError::io("create", &path, source))?;
        Ok(TempDir { path: Some(path) })
    }

    fn path(&self) -> &Path {
        self.path.as_deref().expect("path is set until keep")
    }

    fn keep(mut self) {
        self.path = None;
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(path) = self.path.take()
            && let Err(error) = fs::remove_dir_all(&path)
        {
            tracing::warn!(path = %path.display(), %error, "cannot remove partial layer");
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| StoreError::io("sync", dir, source))
}
