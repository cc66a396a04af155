//! The reference index: which manifest each image reference names, kept in
//! `<images>/index.json` and replaced atomically (write, fsync, rename, fsync the directory).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use oci_spec::image::Digest;
use serde::{Deserialize, Serialize};

use super::StoreError;

const VERSION: u32 = 1;

/// Canonical reference (`docker.io/library/busybox:latest`) to manifest digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReferenceIndex {
    #[serde(rename = "schemaVersion")]
    version: u32,
    pub(crate) references: BTreeMap<String, Digest>,
    /// Multi-platform index digest -> the manifest pulled from it for this host, so that
    /// `name@sha256:<index>` finds the image. Entries whose manifest no reference names are
    /// dropped by `prune`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) indexes: BTreeMap<String, Digest>,
}

impl ReferenceIndex {
    /// Reads the index; a missing file is an empty index.
    pub(crate) fn load(path: &Path) -> Result<ReferenceIndex, StoreError> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(ReferenceIndex {
                    version: VERSION,
                    references: BTreeMap::new(),
                    indexes: BTreeMap::new(),
                });
            }
            Err(source) => return Err(StoreError::io("read", path, source)),
        };
        let index: ReferenceIndex =
            serde_json::from_slice(&bytes).map_err(|source| StoreError::IndexCorrupt {
                path: path.to_owned(),
                source,
            })?;
        if index.version != VERSION {
            return Err(StoreError::IndexVersion {
                path: path.to_owned(),
                found: index.version,
            });
        }
        Ok(index)
    }

    /// The manifest digests the index names, each once.
    pub(crate) fn manifests(&self) -> Vec<Digest> {
        let mut digests: Vec<Digest> = self.references.values().cloned().collect();
        digests.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
        digests.dedup();
        digests
    }

    /// The references naming `digest`, sorted.
    pub(crate) fn references_to(&self, digest: &Digest) -> Vec<String> {
        self.references
            .iter()
            .filter(|(_, d)| *d == digest)
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// Writes the index to `path` atomically. The caller holds the store lock, so the
    /// temporary name cannot clash with another writer.
    pub(crate) fn save(&self, path: &Path) -> Result<(), StoreError> {
        let dir = path
            .parent()
            .expect("the index lives in the images directory");
        let tmp = dir.join(".index.json.tmp");
        let mut bytes = serde_json::to_vec_pretty(self).expect("the index always serialises");
        bytes.push(b'\n');
        let write = || -> io::Result<()> {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            fs::rename(&tmp, path)?;
            File::open(dir)?.sync_all()
        };
        write().map_err(|source| {
            let _ = fs::remove_file(&tmp);
            StoreError::io("write", path, source)
        })
    }
}
