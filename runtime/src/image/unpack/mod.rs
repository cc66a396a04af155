//! Layer unpacking: one layer tar (plain, gzip or zstd) into one directory that can serve as an
//! overlayfs lower dir.
//!
//! The archive is decompressed, hashed (giving the diffID) and written out in a single pass,
//! with no temporary decompressed copy. Entries follow the OCI layer rules, turned into
//! overlayfs's on-disk conventions:
//!
//! - `.wh.<name>` becomes a 0/0 character device `<name>` (an overlay whiteout);
//! - `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory;
//! - device nodes and FIFOs are made with `mknod`, hardlinks with `link` (to entries earlier in
//!   the same layer), and numeric ownership, modes (setuid included), mtimes and xattrs are
//!   kept.
//!
//! Every path is resolved inside the layer root with `openat2(RESOLVE_IN_ROOT)`: an entry whose
//! name climbs out with `..` is refused, and a symlink in the layer (`/lib -> /usr/lib`, or a
//! hostile `evil -> /etc`) is followed as if the root were `/`, so nothing is ever written
//! outside the root.
//!
//! The caller unpacks into an empty temporary directory and renames it into place once the
//! diffID checks out; this module never deletes the directory it was given.

mod entry;
mod sys;

use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::Digest;

use super::digest::HashingReader;
use entry::Unpacker;
pub(crate) use sys::RootDir;

/// Why a layer could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer media type {media_type:?} is not a filesystem layer this runtime can unpack")]
    UnsupportedMediaType { media_type: String },
    #[error("cannot read the layer archive")]
    Read {
        #[source]
        source: io::Error,
    },
    #[error("cannot open layer directory {path}")]
    Root {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("layer entry {entry:?} climbs out of the layer root")]
    PathEscapes { entry: PathBuf },
    #[error("layer entry {entry:?} links to {target:?}, which climbs out of the layer root")]
    LinkEscapes { entry: PathBuf, target: PathBuf },
    #[error("layer entry {entry:?} has an unsupported type ({kind})")]
    UnsupportedEntry { entry: PathBuf, kind: String },
    #[error("layer entry {entry:?} has an invalid {field} ({value})")]
    InvalidHeader {
        entry: PathBuf,
        field: &'static str,
        value: String,
    },
    #[error("layer entry {entry:?}: cannot {action}")]
    Entry {
        entry: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (possibly several concatenated members).
    Gzip,
    /// zstd (possibly several frames).
    Zstd,
}

impl Compression {
    /// Decides a layer's compression from its media type and its first bytes. The media type
    /// must be a filesystem layer type (OCI or Docker; empty when unknown); the magic bytes
    /// decide, since some tools label uncompressed layers as gzip and the other way round.
    pub fn detect(media_type: &str, magic: &[u8]) -> Result<Compression, UnpackError> {
        const LAYER_TYPES: &[&str] = &[
            "application/vnd.oci.image.layer.v1.tar",
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
            "application/vnd.docker.image.rootfs.diff.tar",
            "application/vnd.docker.image.rootfs.foreign.diff.tar",
        ];
        let base = media_type
            .split(['+', ';'])
            .next()
            .unwrap_or_default()
            .trim();
        let base = base
            .strip_suffix(".gzip")
            .or_else(|| base.strip_suffix(".zstd"))
            .unwrap_or(base);
        if !media_type.is_empty() && !LAYER_TYPES.contains(&base) {
            return Err(UnpackError::UnsupportedMediaType {
                media_type: media_type.to_owned(),
            });
        }
        let by_magic = if magic.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        };
        let by_type = if media_type.ends_with("gzip") {
            Compression::Gzip
        } else if media_type.ends_with("zstd") {
            Compression::Zstd
        } else {
            Compression::None
        };
        if !media_type.is_empty() && by_type != by_magic {
            tracing::debug!(
                media_type,
                ?by_magic,
                "layer compression differs from its media type; using the content's"
            );
        }
        Ok(by_magic)
    }
}

/// What unpacking a layer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackedLayer {
    /// Digest of the uncompressed tar stream (the layer's diffID).
    pub diff_id: Digest,
    /// Size of the uncompressed tar stream in bytes.
    pub tar_size: u64,
    /// Number of tar entries applied.
    pub entries: u64,
}

/// Unpacks the layer blob `blob` of media type `media_type` into the existing, empty
/// directory `dest`, returning the diffID it computed. The caller compares that with the
/// image config's `rootfs.diff_ids` before using the directory.
pub fn unpack_layer(
    blob: impl Read,
    media_type: &str,
    dest: &Path,
) -> Result<UnpackedLayer, UnpackError> {
    unpack_layer_buffered(BufReader::with_capacity(128 * 1024, blob), media_type, dest)
}

/// [`unpack_layer`] from a buffered reader, which is read in the chunks it hands out (a
/// download's body is unpacked as it arrives, without copying it into another buffer).
pub fn unpack_layer_buffered(
    mut blob: impl BufRead,
    media_type: &str,
    dest: &Path,
) -> Result<UnpackedLayer, UnpackError> {
    // The magic bytes may arrive split across the reader's buffers: gather them first.
    let mut magic = [0u8; 4];
    let got = crate::image::source::read_up_to(&mut blob, &mut magic)
        .map_err(|source| UnpackError::Read { source })?;
    let compression = Compression::detect(media_type, &magic[..got])?;
    let blob = io::Cursor::new(magic[..got].to_vec()).chain(blob);
    let tar_stream: Box<dyn Read + '_> = match compression {
        Compression::None => Box::new(blob),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(blob)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(blob)
                .map_err(|source| UnpackError::Read { source })?,
        ),
    };
    let mut tar_stream = HashingReader::new(tar_stream);
    let root = RootDir::open(dest).map_err(|source| UnpackError::Root {
        path: dest.to_owned(),
        source,
    })?;
    let mut unpacker = Unpacker::new(&root);
    {
        let mut archive = tar::Archive::new(&mut tar_stream);
        let entries = archive
            .entries()
            .map_err(|source| UnpackError::Read { source })?;
        for entry in entries {
            let entry = entry.map_err(|source| UnpackError::Read { source })?;
            unpacker.apply(entry)?;
        }
    }
    let entries = unpacker.finish()?;
    let (diff_id, tar_size) = tar_stream
        .finish()
        .map_err(|source| UnpackError::Read { source })?;
    Ok(UnpackedLayer {
        diff_id,
        tar_size,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_follows_magic_bytes_for_layer_media_types() {
        let gzip = [0x1f, 0x8b, 0x08, 0x00];
        let zstd = [0x28, 0xb5, 0x2f, 0xfd];
        let tar = *b"etc/";
        let table: &[(&str, &[u8], Compression)] = &[
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                &gzip,
                Compression::Gzip,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                &zstd,
                Compression::Zstd,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar",
                &tar,
                Compression::None,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                &gzip,
                Compression::Gzip,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                &tar,
                Compression::None,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar",
                &tar,
                Compression::None,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                &gzip,
                Compression::Gzip,
            ),
            ("", &zstd, Compression::Zstd),
            ("", &[], Compression::None),
        ];
        for (media_type, magic, want) in table {
            assert_eq!(
                Compression::detect(media_type, magic).unwrap(),
                *want,
                "{media_type}"
            );
        }
    }

    #[test]
    fn non_layer_media_types_are_refused_by_name() {
        for media_type in [
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
            "text/plain",
        ] {
            let err = Compression::detect(media_type, &[]).unwrap_err();
            assert!(err.to_string().contains(media_type), "{err}");
        }
    }
}
