//! The content-addressed image store under `<data-dir>/images/`:
//!
//! ```text
//! images/
//!   lock                      flock(2): held by every writer (ingest, remove, prune)
//!   index.json                canonical reference -> manifest digest, replaced atomically
//!   blobs/sha256/<hex>        manifests, configs, layer blobs (verified, fsynced, renamed)
//!   layers/sha256/<hex>/      one unpacked layer per diffID: an overlayfs lower dir
//!   blobs/sha256/.tmp-*       in-flight writes; layers/sha256/.tmp-* in-flight unpacks
//!   incoming/                 registry downloads and their unpacked layers, prepared
//!                             without the lock, moved in by rename (see `incoming`)
//! ```
//!
//! Writers take the store lock, so two imports of the same image (threads or processes)
//! run one after the other and the second finds everything in place. Readers (`list`,
//! `resolve`) take no lock: every file they read is replaced only by rename, so they see the
//! old state or the new one. A name in `blobs/` or `layers/` without a dot is always
//! complete; anything starting with a dot is left over from a crash and removed the next time
//! a writer takes the lock.

mod content;
mod import;
mod incoming;
mod index;
mod ingest;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use nix::fcntl::{Flock, FlockArg};
use oci_spec::image::Digest;
use serde::Serialize;

use super::ImageConfig;
use super::digest::sha256_hex;
use super::platform::Platform;
use super::reference::{self, ReferenceError};
use super::source::SourceError;
use super::unpack::UnpackError;
pub use incoming::IncomingLock;
use index::ReferenceIndex;
pub use ingest::{BlobWriter, Ingest};

/// Why an image store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("cannot import {path}")]
    Import {
        path: PathBuf,
        #[source]
        source: Box<SourceError>,
    },
    #[error("image {reference:?} not found")]
    NotFound { reference: String },
    #[error("image id {prefix:?} is ambiguous: it matches {count} images")]
    Ambiguous { prefix: String, count: usize },
    #[error("{what} blob {digest} is missing from the image store")]
    BlobMissing { what: &'static str, digest: Digest },
    #[error("{what} blob {digest} is not a valid {what}")]
    Malformed {
        what: &'static str,
        digest: Digest,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot read {origin}")]
    ReadBlob {
        origin: String,
        #[source]
        source: io::Error,
    },
    #[error("{origin} has digest {found}, but {expected} was expected")]
    DigestMismatch {
        origin: String,
        expected: Digest,
        found: Digest,
    },
    #[error("{origin} is {found} bytes long, but {expected} bytes were expected")]
    SizeMismatch {
        origin: String,
        expected: u64,
        found: u64,
    },
    #[error("digest {digest} uses an algorithm the image store does not keep (only sha256)")]
    UnsupportedDigest { digest: Digest },
    #[error("config {config} has an invalid diffID {value:?}")]
    InvalidDiffId { config: Digest, value: String },
    #[error("manifest {manifest} lists {layers} layers but its config lists {diff_ids} diffIDs")]
    LayerCount {
        manifest: Digest,
        layers: usize,
        diff_ids: usize,
    },
    #[error("image {manifest} is for {image}, not this host's platform {host}")]
    WrongPlatform {
        manifest: Digest,
        image: Platform,
        host: Platform,
    },
    #[error("cannot unpack layer {layer} of image {manifest}")]
    Layer {
        manifest: Digest,
        layer: Digest,
        #[source]
        source: UnpackError,
    },
    #[error("layer {layer} unpacks to diffID {found}, but the image config says {expected}")]
    DiffIdMismatch {
        layer: Digest,
        expected: Digest,
        found: Digest,
    },
    #[error("reference {reference} names digest {named}, but the image's manifest is {manifest}")]
    ReferenceDigest {
        reference: String,
        named: String,
        manifest: Digest,
    },
    #[error(
        "layer {diff_id} of image {manifest} is not unpacked in the store; import the image again"
    )]
    LayerMissing { manifest: Digest, diff_id: Digest },
    #[error("image index file {path} is corrupt")]
    IndexCorrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("image index file {path} has unsupported schemaVersion {found}")]
    IndexVersion { path: PathBuf, found: u32 },
}

impl StoreError {
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> StoreError {
        StoreError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn import(path: &Path, source: SourceError) -> StoreError {
        StoreError::Import {
            path: path.to_owned(),
            source: Box::new(source),
        }
    }
}

/// A summary of one stored image, for listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageRecord {
    /// Canonical references naming the image, sorted.
    pub references: Vec<String>,
    /// Digest of the image manifest (for a docker-archive, of the manifest written for it).
    pub manifest_digest: Digest,
    /// The config digest, which is also the image id (as in `docker images`).
    pub config_digest: Digest,
    /// Config plus layer blobs as stored (compressed), in bytes.
    pub size: u64,
    /// When the image was built, from its config.
    pub created: Option<DateTime<Utc>>,
    /// The platform the config declares.
    pub platform: Platform,
}

impl ImageRecord {
    /// The short image id: the first 12 hex digits of the config digest.
    pub fn id(&self) -> &str {
        short_id(&self.config_digest)
    }
}

/// A stored image, resolved for running: its config and its unpacked layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Digest of the image manifest.
    pub manifest_digest: Digest,
    /// Digest of the image config (the image id).
    pub config_digest: Digest,
    /// Canonical references naming the image, sorted.
    pub references: Vec<String>,
    /// Entrypoint, Cmd, Env, WorkingDir and User from the config.
    pub config: ImageConfig,
    /// The platform the config declares.
    pub platform: Platform,
    /// Layer diffIDs, bottom (base) first, as in the config.
    pub diff_ids: Vec<Digest>,
    /// Labels from the config.
    pub labels: BTreeMap<String, String>,
    /// The config's StopSignal (e.g. `SIGQUIT`), if any.
    pub stop_signal: Option<String>,
    /// Ports the config exposes (`80/tcp`).
    pub exposed_ports: Vec<String>,
    /// Paths the config declares as volumes.
    pub volumes: Vec<String>,
    layers_root: PathBuf,
}

impl Image {
    /// The unpacked layer directories, top first: the order of overlayfs `lowerdir=`. A
    /// layer that occurs more than once is listed only at its topmost position (the lower
    /// copy can add nothing the upper one does not already show).
    pub fn layer_dirs(&self) -> Vec<PathBuf> {
        let mut seen = BTreeSet::new();
        self.diff_ids
            .iter()
            .rev()
            .filter(|d| seen.insert(d.to_string()))
            .map(|d| layer_path(&self.layers_root, d))
            .collect()
    }

    /// The short image id: the first 12 hex digits of the config digest.
    pub fn id(&self) -> &str {
        short_id(&self.config_digest)
    }
}

fn short_id(digest: &Digest) -> &str {
    let hex = digest.digest();
    &hex[..hex.len().min(12)]
}

/// What `prune` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Blobs removed.
    pub blobs: Vec<Digest>,
    /// Unpacked layers removed, by diffID.
    pub layers: Vec<Digest>,
    /// Bytes of blob files removed (unpacked layer sizes are not counted).
    pub blob_bytes: u64,
}

/// The image store of one data directory. Cheap to clone; all state is on disk.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

/// The store's write lock, released on drop.
pub(crate) struct StoreLock {
    _lock: Flock<File>,
}

impl ImageStore {
    /// Opens (creating if needed) the store under `<data_dir>/images`.
    pub fn open(data_dir: impl AsRef<Path>) -> Result<ImageStore, StoreError> {
        let root = data_dir.as_ref().join("images");
        let store = ImageStore { root };
        for dir in [store.root.clone(), store.blobs_dir(), store.layers_dir()] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|source| StoreError::io("create", &dir, source))?;
        }
        Ok(store)
    }

    /// The store's directory, `<data_dir>/images`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Imports every image in an OCI layout directory, an oci-archive or a docker-archive
    /// (detected from its content). Names come from `name` if given (the source must then
    /// hold one image), else from the source (`io.containerd.image.name` or
    /// `org.opencontainers.image.ref.name` annotations, docker's `RepoTags`). All or nothing:
    /// on error the store is as it was.
    pub fn import(
        &self,
        path: impl AsRef<Path>,
        name: Option<&str>,
    ) -> Result<Vec<ImageRecord>, StoreError> {
        import::import(self, path.as_ref(), name)
    }

    /// Starts adding content (what a registry pull does): takes the write lock, waiting for
    /// any other writer. See [`Ingest`].
    pub fn begin_ingest(&self) -> Result<Ingest<'_>, StoreError> {
        Ingest::begin(self)
    }

    /// Every image that has at least one reference, sorted by first reference. An image
    /// whose content cannot be read is logged and left out.
    pub fn list(&self) -> Result<Vec<ImageRecord>, StoreError> {
        let index = ReferenceIndex::load(&self.index_path())?;
        let mut records = Vec::new();
        for digest in index.manifests() {
            match self.record(&digest, index.references_to(&digest)) {
                Ok(record) => records.push(record),
                Err(error) => {
                    tracing::warn!(manifest = %digest, error = &error as &dyn std::error::Error, "skipping unreadable image");
                }
            }
        }
        records.sort_by(|a, b| a.references.cmp(&b.references));
        Ok(records)
    }

    /// Finds an image by reference (normalised: `busybox` finds
    /// `docker.io/library/busybox:latest`), by `name@sha256:<digest>` or `sha256:<digest>`,
    /// or by a unique prefix of its id (config digest) or manifest digest. Checks that every
    /// layer directory is in place, so the result can be mounted.
    pub fn resolve(&self, reference: &str) -> Result<Image, StoreError> {
        let index = ReferenceIndex::load(&self.index_path())?;
        let digest = self.find(&index, reference)?;
        let image = self.image(&digest, index.references_to(&digest))?;
        for diff_id in &image.diff_ids {
            if !self.layer_dir(diff_id).is_dir() {
                return Err(StoreError::LayerMissing {
                    manifest: digest,
                    diff_id: diff_id.clone(),
                });
            }
        }
        Ok(image)
    }

    /// Removes a reference. Given a digest or id, removes every reference to that image.
    /// Returns the references removed. Content stays until [`ImageStore::prune`].
    pub fn remove(&self, reference: &str) -> Result<Vec<String>, StoreError> {
        let _lock = self.lock()?;
        let mut index = ReferenceIndex::load(&self.index_path())?;
        let digest = self.find(&index, reference)?;
        let removed: Vec<String> = match reference::canonical(reference) {
            Ok(canonical) if index.references.contains_key(&canonical) => vec![canonical],
            _ => index.references_to(&digest),
        };
        for r in &removed {
            index.references.remove(r);
        }
        index.save(&self.index_path())?;
        tracing::info!(references = ?removed, manifest = %digest, "removed image references");
        Ok(removed)
    }

    /// Removes blobs and unpacked layers that no referenced image uses and that are not in
    /// `in_use` (manifest digests of images that running containers use, referenced or
    /// not). Also clears leftovers of interrupted writes.
    pub fn prune(&self, in_use: &[Digest]) -> Result<PruneReport, StoreError> {
        let _lock = self.lock()?;
        self.sweep_temporaries();
        let incoming = self.clear_incoming()?;
        if incoming > 0 {
            tracing::info!(
                entries = incoming,
                "removed leftovers of interrupted image pulls"
            );
        }
        let mut index = ReferenceIndex::load(&self.index_path())?;
        let named: BTreeSet<String> = index.references.values().map(|d| d.to_string()).collect();
        let before = index.indexes.len();
        index
            .indexes
            .retain(|_, manifest| named.contains(&manifest.to_string()));
        if index.indexes.len() != before {
            index.save(&self.index_path())?;
        }
        let mut live_blobs = BTreeSet::new();
        let mut live_layers = BTreeSet::new();
        let mut manifests = index.manifests();
        manifests.extend(in_use.iter().cloned());
        for manifest_digest in manifests {
            // An image whose manifest or config cannot be read might use anything: refuse
            // rather than delete what it needs.
            let manifest = self.read_manifest(&manifest_digest)?;
            let config = self.read_config(manifest.config())?;
            live_blobs.insert(manifest_digest.to_string());
            live_blobs.insert(manifest.config().digest().to_string());
            live_blobs.extend(manifest.layers().iter().map(|l| l.digest().to_string()));
            live_layers.extend(
                content::diff_ids(manifest.config().digest(), &config)?
                    .iter()
                    .map(|d| d.to_string()),
            );
        }

        let mut report = PruneReport::default();
        for (hex, path) in self.entries(&self.blobs_dir())? {
            let digest = content::sha256_digest(&hex);
            if live_blobs.contains(&digest.to_string()) {
                continue;
            }
            let size = fs::symlink_metadata(&path).map(|m| m.len()).unwrap_or(0);
            fs::remove_file(&path).map_err(|source| StoreError::io("remove", &path, source))?;
            report.blob_bytes += size;
            report.blobs.push(digest);
        }
        for (hex, path) in self.entries(&self.layers_dir())? {
            let digest = content::sha256_digest(&hex);
            if live_layers.contains(&digest.to_string()) {
                continue;
            }
            self.remove_layer_dir(&path)?;
            report.layers.push(digest);
        }
        if !report.blobs.is_empty() || !report.layers.is_empty() {
            tracing::info!(
                blobs = report.blobs.len(),
                layers = report.layers.len(),
                bytes = report.blob_bytes,
                "pruned image content"
            );
        }
        Ok(report)
    }

    /// Whether the store holds the blob `digest`.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_ok_and(|p| p.is_file())
    }

    /// Opens the stored blob `digest` for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, StoreError> {
        let path = self.blob_path(digest)?;
        File::open(&path).map_err(|source| StoreError::io("open", &path, source))
    }

    /// The directory an unpacked layer with diffID `diff_id` lives in (it exists only once
    /// the layer is unpacked).
    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        layer_path(&self.layers_dir(), diff_id)
    }

    pub(crate) fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    pub(crate) fn layers_dir(&self) -> PathBuf {
        self.root.join("layers").join("sha256")
    }

    pub(crate) fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    pub(crate) fn blob_path(&self, digest: &Digest) -> Result<PathBuf, StoreError> {
        let hex = sha256_hex(digest).ok_or_else(|| StoreError::UnsupportedDigest {
            digest: digest.clone(),
        })?;
        Ok(self.blobs_dir().join(hex))
    }

    /// Takes the store's write lock, waiting for the current holder.
    pub(crate) fn lock(&self) -> Result<StoreLock, StoreError> {
        let path = self.root.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| StoreError::io("open", &path, source))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| StoreError::io("lock", &path, errno.into()))?;
        Ok(StoreLock { _lock: lock })
    }

    /// Removes leftovers of interrupted writes (names starting with a dot). Only called with
    /// the lock held, when no write is in flight.
    pub(crate) fn sweep_temporaries(&self) {
        let _ = fs::remove_file(self.root.join(".index.json.tmp"));
        for dir in [self.blobs_dir(), self.layers_dir()] {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if !entry.file_name().as_encoded_bytes().starts_with(b".") {
                    continue;
                }
                let path = entry.path();
                let result = match entry.file_type() {
                    Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
                    _ => fs::remove_file(&path),
                };
                match result {
                    Ok(()) => {
                        tracing::info!(path = %path.display(), "removed leftover of an interrupted image write")
                    }
                    Err(error) => {
                        tracing::warn!(path = %path.display(), %error, "cannot remove leftover of an interrupted image write")
                    }
                }
            }
        }
    }

    /// Removes an unpacked layer: renamed to a dot name first, so a crash midway never
    /// leaves a partial directory under a complete-looking name.
    pub(crate) fn remove_layer_dir(&self, path: &Path) -> Result<(), StoreError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let doomed = self
            .layers_dir()
            .join(format!(".remove-{name}-{}", std::process::id()));
        fs::rename(path, &doomed).map_err(|source| StoreError::io("remove", path, source))?;
        fs::remove_dir_all(&doomed).map_err(|source| StoreError::io("remove", &doomed, source))
    }

    /// Complete (non-dot) entries of a content directory: (hex name, path).
    fn entries(&self, dir: &Path) -> Result<Vec<(String, PathBuf)>, StoreError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).map_err(|source| StoreError::io("read", dir, source))? {
            let entry = entry.map_err(|source| StoreError::io("read", dir, source))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.len() == 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                out.push((name, entry.path()));
            }
        }
        Ok(out)
    }

    /// The manifest digest `reference` names in `index`.
    fn find(&self, index: &ReferenceIndex, reference: &str) -> Result<Digest, StoreError> {
        let trimmed = reference.trim();
        let not_found = || StoreError::NotFound {
            reference: reference.to_owned(),
        };
        if let Ok(parsed) = reference::normalize(trimmed) {
            if let Some(named) = parsed.digest() {
                return index
                    .manifests()
                    .into_iter()
                    .find(|d| d.as_ref() == named)
                    .or_else(|| {
                        let chosen = index.indexes.get(named)?;
                        index
                            .references
                            .values()
                            .any(|d| d == chosen)
                            .then(|| chosen.clone())
                    })
                    .ok_or_else(not_found);
            }
            if let Some(digest) = index.references.get(&parsed.whole()) {
                return Ok(digest.clone());
            }
        }
        let prefix = trimmed.strip_prefix("sha256:").unwrap_or(trimmed);
        let is_id = !prefix.is_empty()
            && prefix.len() <= 64
            && prefix
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !is_id {
            // Say why a malformed reference found nothing.
            reference::normalize(trimmed)?;
            return Err(not_found());
        }
        let mut matches = Vec::new();
        for manifest in index.manifests() {
            let config_matches = self
                .read_manifest(&manifest)
                .is_ok_and(|m| m.config().digest().digest().starts_with(prefix));
            if manifest.digest().starts_with(prefix) || config_matches {
                matches.push(manifest);
            }
        }
        match matches.len() {
            0 => Err(not_found()),
            1 => Ok(matches.remove(0)),
            count => Err(StoreError::Ambiguous {
                prefix: trimmed.to_owned(),
                count,
            }),
        }
    }
}

fn layer_path(layers_root: &Path, diff_id: &Digest) -> PathBuf {
    layers_root.join(diff_id.digest())
}
