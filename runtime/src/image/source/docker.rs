//! docker-archive tars (`docker save`, `skopeo copy ... docker-archive:`): `manifest.json`
//! lists each image's config file, layer files and `RepoTags`. There is no registry manifest,
//! so one is written for the image (Docker schema 2, deterministic, so importing the same
//! archive twice gives the same manifest digest).

use std::io::{BufRead, BufReader};
use std::path::Path;

use oci_spec::image::Digest;
use serde::{Deserialize, Serialize};

use super::members::Members;
use super::{ImageKind, JSON_LIMIT, SourceError, SourceImage, read_json};
use crate::image::digest::sha256_of;
use crate::image::store::{Ingest, StoreError};
use crate::image::unpack::Compression;

const MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
const CONFIG_V1: &str = "application/vnd.docker.container.image.v1+json";
const LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
const LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// One element of `manifest.json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// The manifest berth writes for an image from a docker-archive.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: ManifestDescriptor<'a>,
    layers: Vec<ManifestDescriptor<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ManifestDescriptor<'a> {
    media_type: &'a str,
    size: u64,
    digest: String,
}

/// The images in `manifest.json`, named by their `RepoTags`.
pub(super) fn images(members: &Members) -> Result<Vec<SourceImage>, SourceError> {
    let entries: Vec<ManifestEntry> = read_json(members, "manifest.json")?;
    Ok(entries
        .into_iter()
        .enumerate()
        .map(|(i, entry)| SourceImage {
            what: format!("manifest.json[{i}] ({})", entry.config),
            names: entry.repo_tags.clone().unwrap_or_default(),
            kind: ImageKind::Docker(entry),
        })
        .collect())
}

/// Streams the config and layers of `entry` into the store, then writes a manifest for them;
/// returns the manifest's digest.
pub(super) fn copy(
    path: &Path,
    members: &Members,
    entry: &ManifestEntry,
    ingest: &mut Ingest<'_>,
) -> Result<Digest, StoreError> {
    let import = |source| StoreError::import(path, source);
    let origin = |file: &str| format!("{file} in {}", path.display());

    let config = members
        .read_small(&entry.config, JSON_LIMIT)
        .map_err(|source| {
            import(SourceError::Read {
                file: entry.config.clone(),
                source,
            })
        })?
        .ok_or_else(|| {
            import(SourceError::MissingFile {
                file: entry.config.clone(),
            })
        })?;
    let config_digest = sha256_of(&config);
    ingest.write_blob(
        Some(&config_digest),
        Some(config.len() as u64),
        &mut &config[..],
        &origin(&entry.config),
    )?;

    let mut layers = Vec::with_capacity(entry.layers.len());
    for file in &entry.layers {
        let (reader, size) = members
            .open(file)
            .map_err(|source| {
                import(SourceError::Read {
                    file: file.clone(),
                    source,
                })
            })?
            .ok_or_else(|| import(SourceError::MissingFile { file: file.clone() }))?;
        let mut reader = BufReader::with_capacity(128 * 1024, reader);
        let magic = reader.fill_buf().map_err(|source| {
            import(SourceError::Read {
                file: file.clone(),
                source,
            })
        })?;
        let media_type = match Compression::detect("", magic).expect("no media type to refuse") {
            Compression::None => LAYER_TAR,
            Compression::Gzip => LAYER_GZIP,
            Compression::Zstd => LAYER_ZSTD,
        };
        let (digest, size) = ingest.write_blob(None, Some(size), &mut reader, &origin(file))?;
        layers.push(ManifestDescriptor {
            media_type,
            size,
            digest: digest.to_string(),
        });
    }

    let manifest = Manifest {
        schema_version: 2,
        media_type: MANIFEST_V2,
        config: ManifestDescriptor {
            media_type: CONFIG_V1,
            size: config.len() as u64,
            digest: config_digest.to_string(),
        },
        layers,
    };
    let bytes = serde_json::to_vec(&manifest).expect("a manifest always serialises");
    let digest = sha256_of(&bytes);
    let what = format!("manifest written for {}", origin(&entry.config));
    ingest.write_blob(
        Some(&digest),
        Some(bytes.len() as u64),
        &mut &bytes[..],
        &what,
    )?;
    Ok(digest)
}
