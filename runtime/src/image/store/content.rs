//! Reading stored manifests and configs, and turning them into records and images.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use oci_spec::image::{Descriptor, Digest, ImageConfiguration, ImageManifest};

use super::{Image, ImageRecord, ImageStore, StoreError};
use crate::image::ImageConfig;
use crate::image::platform::Platform;

/// Largest manifest or config read from the store.
const JSON_LIMIT: u64 = 16 * 1024 * 1024;

/// `sha256:<hex>` for a 64-digit lowercase hex string.
pub(crate) fn sha256_digest(hex: &str) -> Digest {
    Digest::from_str(&format!("sha256:{hex}")).expect("callers pass 64 lowercase hex digits")
}

/// The config's diffIDs as digests.
pub(crate) fn diff_ids(
    config_digest: &Digest,
    config: &ImageConfiguration,
) -> Result<Vec<Digest>, StoreError> {
    config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|value| {
            Digest::from_str(value).map_err(|_| StoreError::InvalidDiffId {
                config: config_digest.clone(),
                value: value.clone(),
            })
        })
        .collect()
}

/// The platform a config declares.
pub(crate) fn platform(config: &ImageConfiguration) -> Platform {
    Platform::from_oci(
        config.os(),
        config.architecture(),
        config.variant().as_deref(),
    )
}

impl ImageConfig {
    /// The run-relevant part of an OCI (or Docker) image config.
    pub fn from_oci(config: &ImageConfiguration) -> ImageConfig {
        let Some(c) = config.config() else {
            return ImageConfig::default();
        };
        ImageConfig {
            entrypoint: c.entrypoint().clone().unwrap_or_default(),
            cmd: c.cmd().clone().unwrap_or_default(),
            env: c.env().clone().unwrap_or_default(),
            working_dir: c.working_dir().clone().filter(|w| !w.is_empty()),
            user: c.user().clone().filter(|u| !u.is_empty()),
        }
    }
}

impl ImageStore {
    fn read_small_blob(&self, what: &'static str, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(digest)?;
        match fs::metadata(&path) {
            Ok(meta) if meta.len() > JSON_LIMIT => {
                return Err(StoreError::io(
                    "read",
                    &path,
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{what} is larger than {JSON_LIMIT} bytes"),
                    ),
                ));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::BlobMissing {
                    what,
                    digest: digest.clone(),
                });
            }
            Err(source) => return Err(StoreError::io("read", &path, source)),
        }
        fs::read(&path).map_err(|source| StoreError::io("read", &path, source))
    }

    /// Reads and parses the stored image manifest `digest` (OCI or Docker schema 2).
    pub(crate) fn read_manifest(&self, digest: &Digest) -> Result<ImageManifest, StoreError> {
        let bytes = self.read_small_blob("manifest", digest)?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Malformed {
            what: "manifest",
            digest: digest.clone(),
            source,
        })
    }

    /// Reads and parses the image config `descriptor` points at.
    pub(crate) fn read_config(
        &self,
        descriptor: &Descriptor,
    ) -> Result<ImageConfiguration, StoreError> {
        let bytes = self.read_small_blob("config", descriptor.digest())?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Malformed {
            what: "config",
            digest: descriptor.digest().clone(),
            source,
        })
    }

    /// The listing record of manifest `digest`.
    pub(crate) fn record(
        &self,
        digest: &Digest,
        references: Vec<String>,
    ) -> Result<ImageRecord, StoreError> {
        let manifest = self.read_manifest(digest)?;
        let config = self.read_config(manifest.config())?;
        Ok(record_of(digest, references, &manifest, &config))
    }

    /// The runnable view of manifest `digest`.
    pub(crate) fn image(
        &self,
        digest: &Digest,
        references: Vec<String>,
    ) -> Result<Image, StoreError> {
        let manifest = self.read_manifest(digest)?;
        let config_digest = manifest.config().digest().clone();
        let config = self.read_config(manifest.config())?;
        let inner = config.config().clone().unwrap_or_default();
        Ok(Image {
            manifest_digest: digest.clone(),
            references,
            config: ImageConfig::from_oci(&config),
            platform: platform(&config),
            diff_ids: diff_ids(&config_digest, &config)?,
            labels: inner
                .labels()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect::<BTreeMap<_, _>>(),
            stop_signal: inner.stop_signal().clone().filter(|s| !s.is_empty()),
            exposed_ports: inner.exposed_ports().clone().unwrap_or_default(),
            volumes: inner.volumes().clone().unwrap_or_default(),
            config_digest,
            layers_root: self.layers_dir(),
        })
    }
}

/// Builds a listing record from parsed content.
pub(crate) fn record_of(
    digest: &Digest,
    references: Vec<String>,
    manifest: &ImageManifest,
    config: &ImageConfiguration,
) -> ImageRecord {
    let size = manifest.config().size() + manifest.layers().iter().map(|l| l.size()).sum::<u64>();
    let created = config
        .created()
        .as_deref()
        .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
        .map(|c| c.with_timezone(&Utc));
    ImageRecord {
        references,
        manifest_digest: digest.clone(),
        config_digest: manifest.config().digest().clone(),
        size,
        created,
        platform: platform(config),
    }
}
