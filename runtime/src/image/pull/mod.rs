//! Pulling images from OCI distribution registries (Docker Hub, GHCR, a private registry)
//! into the [`ImageStore`], through oci-client.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use berth_runtime::image::ImageStore;
//! use berth_runtime::image::pull::{Keyring, Puller, PullProgress, Registries};
//! let store = ImageStore::open("/var/lib/berth")?;
//! let registries = Registries::load("/etc/berth/registries.toml".as_ref())?;
//! let puller = Puller::new(store, registries);
//! let (progress, _watch) = tokio::sync::watch::channel(PullProgress::default());
//! let pulled = puller.pull("postgres:16", &Keyring::new(), &progress).await?;
//! println!("{} {}", pulled.record.references[0], pulled.record.manifest_digest);
//! # Ok(()) }
//! ```
//!
//! How a pull goes:
//!
//! 1. **Resolve.** The reference is normalised (`postgres:16` is
//!    `docker.io/library/postgres:16`). Its registry's endpoints come from the
//!    [registries file](registries): mirrors first, then the registry itself. For each
//!    endpoint, credentials are tried in order (the pod's pull secrets that match the
//!    endpoint, then the node's own); a 401 moves to the next credential, any other failure
//!    to the next endpoint. Upstream credentials are never sent to a mirror.
//! 2. **Choose.** An OCI index or Docker manifest list is resolved to this host's platform
//!    ([`crate::image::platform::select_manifest`]); the manifest's layer media types
//!    (Docker v2s2 and OCI; tar, gzip, zstd) and the config's platform are checked before
//!    any layer is fetched.
//! 3. **Fetch.** Layers not already unpacked in the store are downloaded, up to three at a
//!    time, into the store's incoming area, each under a per-blob lock: a layer shared by two
//!    pulls (threads or processes) is downloaded once, the second pull waits for the first.
//!    The body is read once: a blocking thread per layer appends it to `<hex>.partial` and
//!    hashes it, and feeds the same bytes to the decompress-and-unpack, so the layer is
//!    unpacked when its download ends. The unpacked directory is kept only if the blob's
//!    digest and size and the layer's diffID all check out; a blob that does not verify is
//!    deleted and never reaches the store. A download interrupted (network error, crash)
//!    resumes from the bytes on disk with a range request and is unpacked from the complete
//!    file afterwards. Once unpacked, the compressed layer blob is deleted: pulled layers are
//!    kept unpacked only, as docker keeps them.
//! 4. **Commit.** Under the store's write lock, the filesystem is flushed once, then the
//!    config, the unpacked layers and the manifest are moved in and the reference is pointed
//!    at the image: all or nothing, as for an import.

mod credentials;
mod fetch;
mod partial;
mod progress;
pub mod registries;
mod remote;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use oci_spec::distribution::Reference;
use oci_spec::image::{Descriptor, Digest, ImageConfiguration, ImageIndex, ImageManifest};
use tokio::sync::watch;

pub use credentials::{Credential, Keyring, KeyringError};
pub use progress::{LayerProgress, LayerState, PullPhase, PullProgress};
pub use registries::{Endpoint, Registries, RegistriesError};
pub use remote::RemoteError;

use super::digest::sha256_of;
use super::platform::{self, Platform};
use super::reference::{self, ReferenceError};
use super::store::{ImageRecord, ImageStore, StoreError};
use super::unpack::{Compression, UnpackError};
use fetch::LayerJob;
use remote::Remote;

/// Largest manifest, index or config accepted from a registry.
const JSON_LIMIT: u64 = 4 * 1024 * 1024;
/// Layers downloaded at the same time by one pull (containerd's default).
const CONCURRENT_LAYERS: usize = 3;
/// Nested indexes followed before giving up.
const MAX_INDEX_DEPTH: usize = 4;

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const CONFIG_TYPES: &[&str] = &[
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// Why a pull failed. Every variant names the reference; causes are in `source()`.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("cannot pull {reference} from {endpoint}{}", tried_note(.tried))]
    Remote {
        reference: String,
        endpoint: String,
        /// Endpoints tried before, with what went wrong there.
        tried: Vec<String>,
        #[source]
        source: RemoteError,
    },
    #[error("cannot download layer {layer} of {reference} from {endpoint}")]
    Layer {
        reference: String,
        layer: Digest,
        endpoint: String,
        #[source]
        source: RemoteError,
    },
    #[error("image {reference} has no manifest for this host's platform {host} (it offers {})", offered_list(.offered))]
    NoPlatform {
        reference: String,
        offered: Vec<Platform>,
        host: Platform,
    },
    #[error("image {reference} is for {image}, not this host's platform {host}")]
    WrongPlatform {
        reference: String,
        image: Platform,
        host: Platform,
    },
    #[error("image {reference}: {what} has unsupported media type {media_type:?}{}", hint(.media_type))]
    UnsupportedMediaType {
        reference: String,
        what: String,
        media_type: String,
    },
    #[error("image {reference}: {what} is not valid")]
    Malformed {
        reference: String,
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("image {reference}: {what} is larger than {limit} bytes")]
    TooLarge {
        reference: String,
        what: String,
        limit: u64,
    },
    #[error(
        "image {reference}: {what} has digest {found}, but {expected} was expected; it was not stored"
    )]
    DigestMismatch {
        reference: String,
        what: String,
        expected: Digest,
        found: Digest,
    },
    #[error(
        "image {reference}: {what} is {found} bytes long, but {expected} bytes were expected; it was not stored"
    )]
    SizeMismatch {
        reference: String,
        what: String,
        expected: u64,
        found: u64,
    },
    #[error(
        "image {reference}: manifest lists {layers} layers but its config lists {diff_ids} diffIDs"
    )]
    LayerCount {
        reference: String,
        layers: usize,
        diff_ids: usize,
    },
    #[error("image {reference}: config has an invalid diffID {value:?}")]
    InvalidDiffId { reference: String, value: String },
    #[error("image {reference}: cannot unpack layer {layer}")]
    Unpack {
        reference: String,
        layer: Digest,
        #[source]
        source: UnpackError,
    },
    #[error(
        "image {reference}: layer {layer} unpacks to diffID {found}, but the config says {expected}"
    )]
    DiffIdMismatch {
        reference: String,
        layer: Digest,
        expected: Digest,
        found: Digest,
    },
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {message}")]
    Internal { message: String },
}

fn tried_note(tried: &[String]) -> String {
    if tried.is_empty() {
        String::new()
    } else {
        format!(" (after {})", tried.join("; "))
    }
}

fn offered_list(offered: &[Platform]) -> String {
    if offered.is_empty() {
        return "no platform at all".to_owned();
    }
    offered
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn hint(media_type: &str) -> &'static str {
    if media_type.contains("v1+prettyjws") || media_type.contains("manifest.v1+json") {
        ": Docker schema 1 images are not supported; push the image again with a current tool"
    } else {
        ""
    }
}

pub(crate) fn io_error(action: &'static str, path: &Path, source: std::io::Error) -> PullError {
    PullError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

impl PullError {
    /// Whether the registry turned the request down for lack of (valid) credentials.
    pub fn is_unauthorized(&self) -> bool {
        matches!(
            self,
            PullError::Remote {
                source: RemoteError::Unauthorized { .. } | RemoteError::Denied { .. },
                ..
            }
        )
    }

    /// Whether the registry says the image (tag, digest or repository) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            PullError::Remote {
                source: RemoteError::NotFound { .. },
                ..
            }
        )
    }
}

/// The outcome of a pull.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The image as stored, with all its references.
    pub record: ImageRecord,
    /// The multi-platform index the manifest was chosen from, if any.
    pub index_digest: Option<Digest>,
    /// The endpoint that served it (`https://mirror.lab:5000`).
    pub endpoint: String,
    /// Layer bytes this pull downloaded (zero when everything was present).
    pub downloaded: u64,
    /// How long the pull took.
    pub elapsed: Duration,
}

/// Pulls images into one store. Cheap to clone; pulls run concurrently.
#[derive(Clone)]
pub struct Puller {
    store: ImageStore,
    registries: Arc<Registries>,
    host: Platform,
}

impl Puller {
    /// A puller for `store` with the node's registries file.
    pub fn new(store: ImageStore, registries: Registries) -> Puller {
        install_crypto_provider();
        Puller {
            store,
            registries: Arc::new(registries),
            host: Platform::host(),
        }
    }

    /// The store pulled into.
    pub fn store(&self) -> &ImageStore {
        &self.store
    }

    /// The registries configuration in use.
    pub fn registries(&self) -> &Registries {
        &self.registries
    }

    /// Pulls `reference` (any form `docker pull` takes) with the credentials of `keyring`
    /// (the pod's pull secrets; the node's registries file is always consulted too),
    /// reporting through `progress`. An image whose layers are all present costs one
    /// manifest request. On failure nothing is added to the store (downloads verified so far
    /// stay in the incoming area, to be resumed or pruned).
    pub async fn pull(
        &self,
        reference: &str,
        keyring: &Keyring,
        progress: &watch::Sender<PullProgress>,
    ) -> Result<Pulled, PullError> {
        let started = Instant::now();
        let parsed = reference::normalize(reference)?;
        let canonical = parsed.whole();
        progress.send_modify(|p| {
            *p = PullProgress {
                reference: canonical.clone(),
                ..PullProgress::default()
            }
        });
        let result = self.pull_inner(&parsed, keyring, progress, started).await;
        match &result {
            Ok(pulled) => {
                progress.send_modify(|p| p.phase = PullPhase::Done);
                tracing::info!(
                    reference = %canonical,
                    manifest = %pulled.record.manifest_digest,
                    endpoint = %pulled.endpoint,
                    downloaded = pulled.downloaded,
                    elapsed_ms = pulled.elapsed.as_millis() as u64,
                    "pulled image"
                );
            }
            Err(error) => {
                let message = error_chain(error);
                progress.send_modify(|p| {
                    p.phase = PullPhase::Failed;
                    p.error = Some(message.clone());
                });
                tracing::warn!(reference = %canonical, error = %message, "image pull failed");
            }
        }
        result
    }

    async fn pull_inner(
        &self,
        reference: &Reference,
        keyring: &Keyring,
        progress: &watch::Sender<PullProgress>,
        started: Instant,
    ) -> Result<Pulled, PullError> {
        let name = reference.whole();
        let (remote, top_bytes, top_digest) = self.resolve(reference, keyring).await?;
        progress.send_modify(|p| p.endpoint = Some(remote.label().to_owned()));
        let (manifest_bytes, manifest_digest, index_digest) = self
            .choose_manifest(&name, &remote, top_bytes, top_digest)
            .await?;
        let manifest: ImageManifest = parse_json(&name, "manifest", &manifest_bytes)?;
        check_manifest(&name, &manifest)?;
        let config_bytes = fetch_small(&remote, &name, manifest.config()).await?;
        let config: ImageConfiguration = parse_json(&name, "config", &config_bytes)?;
        let image_platform = Platform::from_oci(
            config.os(),
            config.architecture(),
            config.variant().as_deref(),
        );
        if image_platform.suitability_on(&self.host).is_none() {
            return Err(PullError::WrongPlatform {
                reference: name,
                image: image_platform,
                host: self.host.clone(),
            });
        }
        let diff_ids = diff_ids(&name, &config)?;
        if diff_ids.len() != manifest.layers().len() {
            return Err(PullError::LayerCount {
                reference: name,
                layers: manifest.layers().len(),
                diff_ids: diff_ids.len(),
            });
        }
        // Each distinct blob once, bottom first.
        let mut layers: Vec<(&Descriptor, &Digest)> = Vec::new();
        for (descriptor, diff_id) in manifest.layers().iter().zip(&diff_ids) {
            if !layers
                .iter()
                .any(|(d, _)| d.digest() == descriptor.digest())
            {
                layers.push((descriptor, diff_id));
            }
        }
        progress.send_modify(|p| {
            p.manifest = Some(manifest_digest.to_string());
            p.phase = PullPhase::Downloading;
            p.layers = layers
                .iter()
                .map(|(d, _)| LayerProgress {
                    digest: d.digest().to_string(),
                    size: d.size(),
                    ..LayerProgress::default()
                })
                .collect();
        });

        let _active = self.begin_pull().await?;
        let mut downloaded = 0;
        let mut rounds = 0;
        let record = loop {
            rounds += 1;
            let jobs: Vec<LayerJob<'_>> = layers
                .iter()
                .enumerate()
                .map(|(index, (descriptor, diff_id))| LayerJob {
                    store: &self.store,
                    remote: &remote,
                    reference: &name,
                    descriptor,
                    diff_id,
                    progress,
                    index,
                })
                .collect();
            let results: Vec<Result<u64, PullError>> = futures_util::stream::iter(jobs.iter())
                .map(fetch::ensure_layer)
                .buffer_unordered(CONCURRENT_LAYERS)
                .collect()
                .await;
            for result in results {
                downloaded += result?;
            }
            progress.send_modify(|p| p.phase = PullPhase::Committing);
            let commit = Commit {
                store: self.store.clone(),
                reference: reference.clone(),
                manifest_digest: manifest_digest.clone(),
                manifest_bytes: manifest_bytes.clone(),
                manifest_size: manifest_bytes.len() as u64,
                index_digest: index_digest.clone(),
                config: manifest.config().clone(),
                config_bytes: config_bytes.clone(),
                layers: layers
                    .iter()
                    .map(|(d, diff)| ((*d).clone(), (*diff).clone()))
                    .collect(),
            };
            let outcome = tokio::task::spawn_blocking(move || commit.run())
                .await
                .map_err(|e| PullError::Internal {
                    message: format!("commit task failed: {e}"),
                })??;
            match outcome {
                Some(record) => break record,
                // Something prepared was taken away before the commit (another pull adopted
                // it and then it was pruned): fetch again.
                None if rounds < 3 => continue,
                None => {
                    return Err(PullError::Internal {
                        message: format!("layers of {name} kept disappearing before the commit"),
                    });
                }
            }
        };
        Ok(Pulled {
            record,
            index_digest,
            endpoint: remote.label().to_owned(),
            downloaded,
            elapsed: started.elapsed(),
        })
    }

    /// Finds the first endpoint and credential that serve the reference's manifest.
    async fn resolve(
        &self,
        reference: &Reference,
        keyring: &Keyring,
    ) -> Result<(Remote, bytes::Bytes, String), PullError> {
        let name = reference.whole();
        let endpoints = self.registries.endpoints(reference.registry());
        let mut tried = Vec::new();
        let mut last: Option<(String, RemoteError)> = None;
        for endpoint in &endpoints {
            let mut candidates: Vec<Option<(&Credential, &str)>> = keyring
                .matching(&endpoint.host, reference.repository())
                .into_iter()
                .map(Some)
                .collect();
            if let Some(own) = &endpoint.credential
                && !candidates.iter().flatten().any(|(c, _)| *c == own)
            {
                candidates.push(Some((own, "the registries file")));
            }
            if candidates.is_empty() {
                candidates.push(None);
            }
            for candidate in candidates {
                let remote = match Remote::new(endpoint, reference, candidate) {
                    Ok(remote) => remote,
                    Err(error) => {
                        last = Some((endpoint.url(), error));
                        break;
                    }
                };
                match remote.manifest(None).await {
                    Ok((bytes, digest)) => return Ok((remote, bytes, digest)),
                    Err(error) => {
                        tracing::debug!(reference = %name, endpoint = %endpoint.url(), credential = ?remote.credential_label(), error = &error as &dyn std::error::Error, "manifest request failed");
                        let unauthorized = matches!(error, RemoteError::Unauthorized { .. });
                        last = Some((endpoint.url(), error));
                        if !unauthorized {
                            break;
                        }
                    }
                }
            }
            if let Some((url, error)) = &last
                && endpoint.mirror
            {
                tracing::warn!(reference = %name, mirror = %url, error = %error_chain(error), "mirror failed; trying the next endpoint");
                tried.push(format!("mirror {url}: {}", error_chain(error)));
            }
        }
        let (endpoint, source) = last.expect("there is always at least one endpoint");
        if tried
            .last()
            .is_some_and(|t| t.starts_with(&format!("mirror {endpoint}:")))
        {
            tried.pop();
        }
        Err(PullError::Remote {
            reference: name,
            endpoint,
            tried,
            source,
        })
    }

    /// Follows an index (or manifest list) down to this host's manifest. Returns the
    /// manifest's bytes and digest, and the digest of the index it came from.
    async fn choose_manifest(
        &self,
        name: &str,
        remote: &Remote,
        mut bytes: bytes::Bytes,
        digest: String,
    ) -> Result<(bytes::Bytes, Digest, Option<Digest>), PullError> {
        let mut digest = parse_digest(name, "manifest", &digest)?;
        check_digest(name, "manifest", &bytes, &digest)?;
        let mut index_digest = None;
        for _ in 0..MAX_INDEX_DEPTH {
            let kind: MediaTypeProbe = parse_json(name, "manifest", &bytes)?;
            let media_type = kind.media_type();
            match media_type.as_str() {
                OCI_MANIFEST | DOCKER_MANIFEST => return Ok((bytes, digest, index_digest)),
                OCI_INDEX | DOCKER_MANIFEST_LIST => {}
                other => {
                    return Err(PullError::UnsupportedMediaType {
                        reference: name.to_owned(),
                        what: format!("manifest {digest}"),
                        media_type: other.to_owned(),
                    });
                }
            }
            let index: ImageIndex = parse_json(name, "index", &bytes)?;
            let chosen = platform::select_manifest(&index, &self.host)
                .map_err(|offered| PullError::NoPlatform {
                    reference: name.to_owned(),
                    offered,
                    host: self.host.clone(),
                })?
                .clone();
            if index_digest.is_none() {
                index_digest = Some(digest.clone());
            }
            if chosen.size() > JSON_LIMIT {
                return Err(PullError::TooLarge {
                    reference: name.to_owned(),
                    what: format!("manifest {}", chosen.digest()),
                    limit: JSON_LIMIT,
                });
            }
            let (next, _) = remote
                .manifest(Some(chosen.digest().as_ref()))
                .await
                .map_err(|source| PullError::Remote {
                    reference: name.to_owned(),
                    endpoint: remote.label().to_owned(),
                    tried: Vec::new(),
                    source,
                })?;
            let what = format!("manifest {}", chosen.digest());
            if next.len() as u64 != chosen.size() {
                return Err(PullError::SizeMismatch {
                    reference: name.to_owned(),
                    what,
                    expected: chosen.size(),
                    found: next.len() as u64,
                });
            }
            check_digest(name, "manifest", &next, chosen.digest())?;
            bytes = next;
            digest = chosen.digest().clone();
        }
        Err(PullError::UnsupportedMediaType {
            reference: name.to_owned(),
            what: format!("index {digest}"),
            media_type: format!("indexes nested more than {MAX_INDEX_DEPTH} deep"),
        })
    }

    /// Takes the shared "pull in flight" lock, waiting out a cleanup.
    async fn begin_pull(&self) -> Result<super::store::IncomingLock, PullError> {
        loop {
            if let Some(lock) = self.store.try_begin_pull()? {
                return Ok(lock);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The media type of a manifest or index, from its `mediaType` field or its shape (OCI
/// allows leaving the field out).
#[derive(serde::Deserialize)]
struct MediaTypeProbe {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    #[serde(rename = "schemaVersion")]
    schema_version: Option<u32>,
    manifests: Option<serde_json::Value>,
    layers: Option<serde_json::Value>,
}

impl MediaTypeProbe {
    fn media_type(&self) -> String {
        if let Some(t) = &self.media_type {
            return t.clone();
        }
        if self.schema_version == Some(1) {
            return "application/vnd.docker.distribution.manifest.v1+json".to_owned();
        }
        if self.manifests.is_some() {
            OCI_INDEX.to_owned()
        } else if self.layers.is_some() {
            OCI_MANIFEST.to_owned()
        } else {
            "(none)".to_owned()
        }
    }
}

/// Checks what can be checked of a manifest before fetching layers.
fn check_manifest(name: &str, manifest: &ImageManifest) -> Result<(), PullError> {
    let config_type = manifest.config().media_type().to_string();
    if !CONFIG_TYPES.contains(&config_type.as_str()) {
        return Err(PullError::UnsupportedMediaType {
            reference: name.to_owned(),
            what: "config (this is not a container image)".to_owned(),
            media_type: config_type,
        });
    }
    if manifest.config().size() > JSON_LIMIT {
        return Err(PullError::TooLarge {
            reference: name.to_owned(),
            what: format!("config {}", manifest.config().digest()),
            limit: JSON_LIMIT,
        });
    }
    for layer in manifest.layers() {
        let media_type = layer.media_type().to_string();
        if Compression::detect(&media_type, &[]).is_err() {
            return Err(PullError::UnsupportedMediaType {
                reference: name.to_owned(),
                what: format!("layer {}", layer.digest()),
                media_type,
            });
        }
        if super::digest::sha256_hex(layer.digest()).is_none() {
            return Err(PullError::Store(StoreError::UnsupportedDigest {
                digest: layer.digest().clone(),
            }));
        }
    }
    Ok(())
}

/// Fetches a small blob (the config), with its size bounded by the descriptor.
async fn fetch_small(
    remote: &Remote,
    name: &str,
    descriptor: &Descriptor,
) -> Result<Vec<u8>, PullError> {
    let what = format!("config {}", descriptor.digest());
    let remote_error = |source| PullError::Remote {
        reference: name.to_owned(),
        endpoint: remote.label().to_owned(),
        tried: Vec::new(),
        source,
    };
    let mut body = remote
        .blob(descriptor.digest().as_ref(), 0)
        .await
        .map_err(remote_error)?;
    let mut bytes = Vec::with_capacity(descriptor.size() as usize);
    while let Some(chunk) = body.stream.next().await {
        match chunk {
            Ok(chunk) => {
                bytes.extend_from_slice(&chunk);
                if bytes.len() as u64 > descriptor.size() {
                    return Err(PullError::SizeMismatch {
                        reference: name.to_owned(),
                        what,
                        expected: descriptor.size(),
                        found: bytes.len() as u64,
                    });
                }
            }
            Err(_) if bytes.len() as u64 == descriptor.size() => break,
            Err(e) => {
                return Err(remote_error(RemoteError::Unreachable {
                    source: Box::new(e),
                }));
            }
        }
    }
    if bytes.len() as u64 != descriptor.size() {
        return Err(PullError::SizeMismatch {
            reference: name.to_owned(),
            what,
            expected: descriptor.size(),
            found: bytes.len() as u64,
        });
    }
    check_digest(name, "config", &bytes, descriptor.digest())?;
    Ok(bytes)
}

fn check_digest(name: &str, what: &str, bytes: &[u8], expected: &Digest) -> Result<(), PullError> {
    let found = sha256_of(bytes);
    if super::digest::sha256_hex(expected).is_none() {
        return Err(PullError::Store(StoreError::UnsupportedDigest {
            digest: expected.clone(),
        }));
    }
    if found != *expected {
        return Err(PullError::DigestMismatch {
            reference: name.to_owned(),
            what: format!("{what} {expected}"),
            expected: expected.clone(),
            found,
        });
    }
    Ok(())
}

fn parse_digest(name: &str, what: &str, text: &str) -> Result<Digest, PullError> {
    text.parse::<Digest>().map_err(|_| PullError::Internal {
        message: format!("{name}: the registry gave {what} digest {text:?}, which is not a digest"),
    })
}

fn parse_json<T: serde::de::DeserializeOwned>(
    name: &str,
    what: &str,
    bytes: &[u8],
) -> Result<T, PullError> {
    serde_json::from_slice(bytes).map_err(|source| PullError::Malformed {
        reference: name.to_owned(),
        what: what.to_owned(),
        source,
    })
}

fn diff_ids(name: &str, config: &ImageConfiguration) -> Result<Vec<Digest>, PullError> {
    config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|value| {
            value
                .parse::<Digest>()
                .map_err(|_| PullError::InvalidDiffId {
                    reference: name.to_owned(),
                    value: value.clone(),
                })
        })
        .collect()
}

/// The commit step, run on a blocking thread.
struct Commit {
    store: ImageStore,
    reference: Reference,
    manifest_digest: Digest,
    manifest_bytes: bytes::Bytes,
    manifest_size: u64,
    index_digest: Option<Digest>,
    config: Descriptor,
    config_bytes: Vec<u8>,
    layers: Vec<(Descriptor, Digest)>,
}

impl Commit {
    /// Moves everything into the store; `None` if something prepared has gone missing.
    fn run(self) -> Result<Option<ImageRecord>, PullError> {
        let store = &self.store;
        let mut ingest = store.begin_ingest()?;
        // Downloads and unpacked layers were written without flushing; everything reaches
        // the disk here, once, before any of it gets a name in the store.
        let incoming = store.incoming_dir()?;
        let dir = std::fs::File::open(&incoming).map_err(|e| io_error("open", &incoming, e))?;
        nix::unistd::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir))
            .map_err(|e| io_error("sync", &incoming, e.into()))?;
        let origin = format!("{} from the registry", self.reference.whole());
        ingest.write_blob(
            Some(self.config.digest()),
            Some(self.config.size()),
            &mut &self.config_bytes[..],
            &origin,
        )?;
        for (descriptor, diff_id) in &self.layers {
            let digest = descriptor.digest();
            let blob = store.incoming_blob(digest)?;
            let unpacked = store.incoming_layer(diff_id)?;
            if blob.is_file() {
                ingest.adopt_blob(&blob, digest, descriptor.size())?;
            }
            if unpacked.is_dir() {
                ingest.adopt_layer(&unpacked, diff_id)?;
            }
            if !store.layer_dir(diff_id).is_dir() && !store.has_blob(digest) {
                return Ok(None);
            }
        }
        ingest.write_blob(
            Some(&self.manifest_digest),
            Some(self.manifest_size),
            &mut &self.manifest_bytes[..],
            &origin,
        )?;
        ingest.add_image_from_index(
            &self.manifest_digest,
            self.index_digest.as_ref(),
            std::slice::from_ref(&self.reference),
        )?;
        let mut records = ingest.commit()?;
        Ok(records.pop())
    }
}

/// An error and its causes on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
        source = cause.source();
    }
    text
}

/// reqwest needs a rustls crypto provider; berth uses ring (aws-lc takes too long to build).
fn install_crypto_provider() {
    // Fails only if one is installed already, which is just as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
