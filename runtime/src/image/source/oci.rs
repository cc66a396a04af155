//! OCI image layouts (a directory, or a tar of one): `oci-layout`, `index.json`, `blobs/`.

use std::collections::BTreeMap;
use std::path::Path;

use oci_spec::image::{Descriptor, Digest, ImageIndex, ImageManifest, MediaType};

use super::{ImageKind, JSON_LIMIT, SourceError, SourceImage, read_json};
use crate::image::digest::{sha256_hex, sha256_of};
use crate::image::platform::{self, Platform};
use crate::image::store::{Ingest, StoreError};

use super::members::Members;

/// Annotation holding a full image name (containerd, nerdctl, `docker save` since 25).
const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// Annotation holding a layout's reference name (a tag, or a full reference).
const REF_NAME: &str = "org.opencontainers.image.ref.name";

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Nested indexes followed before giving up.
const MAX_INDEX_DEPTH: usize = 4;

#[derive(serde::Deserialize)]
struct LayoutHeader {
    #[serde(rename = "imageLayoutVersion")]
    image_layout_version: String,
}

/// The images listed in the layout's `index.json`, one per manifest digest. Entries that
/// state a platform this host cannot run are left out; if that leaves nothing, the error
/// lists what the layout offers.
pub(super) fn images(members: &Members) -> Result<Vec<SourceImage>, SourceError> {
    let header: LayoutHeader = read_json(members, "oci-layout")?;
    if !header.image_layout_version.starts_with("1.") {
        return Err(SourceError::LayoutVersion {
            found: header.image_layout_version,
        });
    }
    let index: ImageIndex = read_json(members, "index.json")?;
    let host = Platform::host();
    let mut by_digest: BTreeMap<String, SourceImage> = BTreeMap::new();
    let mut offered = Vec::new();
    for (i, descriptor) in index.manifests().iter().enumerate() {
        if let Some(p) = descriptor.platform() {
            let platform = Platform::from_oci(p.os(), p.architecture(), p.variant().as_deref());
            if platform.suitability_on(&host).is_none() {
                offered.push(platform);
                continue;
            }
        }
        let annotations = descriptor.annotations().clone().unwrap_or_default();
        let name = annotations
            .get(CONTAINERD_NAME)
            .or_else(|| annotations.get(REF_NAME));
        let image = by_digest
            .entry(descriptor.digest().to_string())
            .or_insert_with(|| SourceImage {
                what: format!("index.json manifests[{i}] ({})", descriptor.digest()),
                names: Vec::new(),
                kind: ImageKind::Oci(Box::new(descriptor.clone())),
            });
        if let Some(name) = name
            && !image.names.contains(name)
        {
            image.names.push(name.clone());
        }
    }
    if by_digest.is_empty() && !offered.is_empty() {
        return Err(SourceError::Platform { offered, host });
    }
    Ok(by_digest.into_values().collect())
}

/// Copies the image `descriptor` points at (choosing this host's manifest from an index)
/// into the store; returns the manifest digest.
pub(super) fn copy(
    path: &Path,
    members: &Members,
    descriptor: &Descriptor,
    ingest: &mut Ingest<'_>,
) -> Result<oci_spec::image::Digest, StoreError> {
    let import = |source| StoreError::import(path, source);
    let host = Platform::host();
    let mut descriptor = descriptor.clone();
    for _ in 0..MAX_INDEX_DEPTH {
        let media_type = descriptor.media_type().to_string();
        match descriptor.media_type() {
            MediaType::ImageIndex => {}
            MediaType::Other(other) if other == DOCKER_MANIFEST_LIST => {}
            MediaType::ImageManifest => return copy_manifest(path, members, &descriptor, ingest),
            MediaType::Other(other) if other == DOCKER_MANIFEST => {
                return copy_manifest(path, members, &descriptor, ingest);
            }
            _ => {
                return Err(import(SourceError::UnsupportedMediaType {
                    file: blob_file(descriptor.digest()),
                    media_type,
                }));
            }
        }
        let bytes = read_blob(members, &descriptor).map_err(import)?;
        let index: ImageIndex = serde_json::from_slice(&bytes).map_err(|source| {
            import(SourceError::Json {
                file: blob_file(descriptor.digest()),
                source,
            })
        })?;
        descriptor = platform::select_manifest(&index, &host)
            .map_err(|offered| {
                import(SourceError::Platform {
                    offered,
                    host: host.clone(),
                })
            })?
            .clone();
    }
    Err(import(SourceError::UnsupportedMediaType {
        file: blob_file(descriptor.digest()),
        media_type: format!(
            "{} nested more than {MAX_INDEX_DEPTH} deep",
            descriptor.media_type()
        ),
    }))
}

fn copy_manifest(
    path: &Path,
    members: &Members,
    descriptor: &Descriptor,
    ingest: &mut Ingest<'_>,
) -> Result<Digest, StoreError> {
    let import = |source| StoreError::import(path, source);
    let bytes = read_blob(members, descriptor).map_err(import)?;
    let manifest: ImageManifest = serde_json::from_slice(&bytes).map_err(|source| {
        import(SourceError::Json {
            file: blob_file(descriptor.digest()),
            source,
        })
    })?;
    // Config and layers first, the manifest last: a manifest in the store then always has
    // its content (the store's checks do not depend on that, but it reads better on disk).
    copy_blob(path, members, manifest.config(), ingest)?;
    for layer in manifest.layers() {
        copy_blob(path, members, layer, ingest)?;
    }
    let origin = format!("{} in {}", blob_file(descriptor.digest()), path.display());
    ingest.write_blob(
        Some(descriptor.digest()),
        Some(descriptor.size()),
        &mut &bytes[..],
        &origin,
    )?;
    Ok(descriptor.digest().clone())
}

/// Streams one blob into the store unless it is already there.
fn copy_blob(
    path: &Path,
    members: &Members,
    descriptor: &Descriptor,
    ingest: &mut Ingest<'_>,
) -> Result<(), StoreError> {
    let import = |source| StoreError::import(path, source);
    let digest = descriptor.digest();
    if ingest.has_blob(digest) {
        return Ok(());
    }
    let file = blob_file(digest);
    let (mut reader, _size) = members
        .open(&file)
        .map_err(|source| {
            import(SourceError::Read {
                file: file.clone(),
                source,
            })
        })?
        .ok_or_else(|| {
            import(SourceError::MissingBlob {
                digest: digest.clone(),
            })
        })?;
    let origin = format!("{file} in {}", path.display());
    ingest.write_blob(Some(digest), Some(descriptor.size()), &mut reader, &origin)?;
    Ok(())
}

/// Reads a small blob (an index or manifest) and checks its digest and size.
fn read_blob(members: &Members, descriptor: &Descriptor) -> Result<Vec<u8>, SourceError> {
    let digest = descriptor.digest();
    let file = blob_file(digest);
    let bytes = members
        .read_small(&file, JSON_LIMIT)
        .map_err(|source| SourceError::Read {
            file: file.clone(),
            source,
        })?
        .ok_or_else(|| SourceError::MissingBlob {
            digest: digest.clone(),
        })?;
    let found = sha256_of(&bytes);
    if &found != digest || bytes.len() as u64 != descriptor.size() {
        return Err(SourceError::DigestMismatch {
            file,
            expected: digest.clone(),
            found,
        });
    }
    Ok(bytes)
}

/// The layout path of a blob, `blobs/<algorithm>/<encoded>`. oci-spec has checked that
/// both parts hold no `/`, so the path stays inside the layout.
fn blob_file(digest: &Digest) -> String {
    match sha256_hex(digest) {
        Some(hex) => format!("blobs/sha256/{hex}"),
        None => format!("blobs/{}/{}", digest.algorithm(), digest.digest()),
    }
}
