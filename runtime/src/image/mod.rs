//! Content-addressed image store: import of OCI layouts and archives, layer unpacking and
//! reference normalisation.
//!
//! # Using it
//!
//! ```no_run
//! use berth_runtime::image::ImageStore;
//! # fn main() -> Result<(), berth_runtime::image::StoreError> {
//! let store = ImageStore::open("/var/lib/berth")?;          // <data-dir>/images
//! store.import("/tmp/busybox-oci", None)?;                   // layout dir, oci- or docker-archive
//! let image = store.resolve("busybox")?;                     // docker.io/library/busybox:latest
//! let lower_dirs = image.layer_dirs();                       // top first, for overlayfs
//! let config = &image.config;                                // Entrypoint, Cmd, Env, ...
//! # let _ = (lower_dirs, config);
//! store.remove("busybox")?;                                  // drops the reference
//! store.prune(&[])?;                                         // drops unused blobs and layers
//! # Ok(()) }
//! ```
//!
//! - [`ImageStore::open`], [`ImageStore::import`], [`ImageStore::list`],
//!   [`ImageStore::resolve`], [`ImageStore::remove`], [`ImageStore::prune`].
//! - [`ImageStore::begin_ingest`] gives an [`Ingest`]: the write path a registry puller uses
//!   (streamed, digest-verified blobs; [`Ingest::add_image`]; [`Ingest::commit`]).
//! - [`Image`] is what a container is built from: [`ImageConfig`] and
//!   [`Image::layer_dirs`]. [`ImageRecord`] is a listing line.
//! - [`pull::Puller`] pulls from registries (mirrors, credentials and plain-HTTP hosts from
//!   the node's [`pull::Registries`] file), with [`pull::PullProgress`] for progress bars.
//! - [`reference::normalize`] parses and normalises references; [`platform`] picks this
//!   host's manifest from a multi-platform index.
//!
//! The on-disk layout and the concurrency rules are described in [`store`]; the unpacking
//! rules (whiteouts, path confinement) in [`unpack`].
//!
//! Every call blocks (file I/O, fsync, waiting for the store's write lock): from async code,
//! run it in `tokio::task::spawn_blocking`. All of it needs root (ownership, device nodes,
//! `trusted.*` xattrs), and the data dir must be on a filesystem overlayfs accepts as a lower
//! dir with whiteouts (ext4, xfs, btrfs; not overlayfs itself).

// Store errors carry their context (digests, paths, platforms) by value, which makes them
// larger than clippy likes; they are returned only on failure, next to file I/O and fsync,
// so the size costs nothing that matters.
#![allow(clippy::result_large_err)]

pub mod digest;
pub mod platform;
pub mod pull;
pub mod reference;
pub mod source;
pub mod store;
pub mod unpack;

pub use oci_spec::image::Digest;
pub use platform::Platform;
pub use pull::{PullError, Puller};
pub use reference::ReferenceError;
pub use source::{Format, SourceError};
pub use store::{BlobWriter, Image, ImageRecord, ImageStore, Ingest, PruneReport, StoreError};
pub use unpack::UnpackError;

/// The parts of an image's configuration that decide how a container runs, as the OCI image
/// config gives them. Kubernetes' rules for combining them with a container's `command` and
/// `args` live in [`crate::spec`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=VALUE` strings, in image order.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// `user`, `uid`, `user:group` or `uid:gid`, as written in the image.
    pub user: Option<String>,
}
