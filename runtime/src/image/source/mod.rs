//! Import sources: an OCI image layout directory, an `oci-archive` tar (an OCI layout in a
//! tar), or a `docker-archive` tar (`docker save`, `skopeo copy ... docker-archive:`). The
//! format is detected from the files present; a tar holding both an OCI layout and a
//! `manifest.json` (newer `docker save`) is read as OCI, which keeps the original manifest
//! digests.

mod docker;
mod members;
mod oci;

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use oci_spec::distribution::Reference;
use oci_spec::image::Digest;

use super::platform::Platform;
use super::reference::{self, ReferenceError};
use super::store::{Ingest, StoreError};
use members::Members;

/// Largest index, manifest or config file read into memory from a source.
const JSON_LIMIT: u64 = 16 * 1024 * 1024;

/// Why an import source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} is not an OCI image layout, oci-archive or docker-archive \
         (found neither oci-layout with index.json nor manifest.json)"
    )]
    NotAnImage { path: PathBuf },
    #[error("cannot decompress {path} ({compression})")]
    Decompress {
        path: PathBuf,
        compression: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a readable tar archive")]
    Malformed {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read {file}")]
    Read {
        file: String,
        #[source]
        source: io::Error,
    },
    #[error("{file} is missing")]
    MissingFile { file: String },
    #[error("blob {digest} is missing")]
    MissingBlob { digest: Digest },
    #[error("{file} is not valid JSON of the expected shape")]
    Json {
        file: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("oci-layout has unsupported imageLayoutVersion {found:?}")]
    LayoutVersion { found: String },
    #[error("{file} has unsupported media type {media_type:?}")]
    UnsupportedMediaType { file: String, media_type: String },
    #[error("{file} has digest {found}, but {expected} was expected")]
    DigestMismatch {
        file: String,
        expected: Digest,
        found: Digest,
    },
    #[error("the source holds no images")]
    NoImages,
    #[error("the image is for {}, not this host's platform {host}", list(offered))]
    Platform {
        offered: Vec<Platform>,
        host: Platform,
    },
    #[error("image {what} has no name; pass one")]
    NameRequired { what: String },
    #[error("image {what} is tagged only {tag:?}, which names no repository; pass a name")]
    TagWithoutRepository { what: String, tag: String },
    #[error("the source holds {count} images; a name can only be given when it holds one")]
    NameAmbiguous { count: usize },
    #[error("image {what} has an invalid name")]
    InvalidName {
        what: String,
        #[source]
        source: ReferenceError,
    },
}

fn list(platforms: &[Platform]) -> String {
    if platforms.is_empty() {
        return "no platform at all".to_owned();
    }
    platforms
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// An opened import source.
#[derive(Debug)]
pub(crate) struct Source {
    path: PathBuf,
    members: Members,
    format: Format,
}

/// The detected format of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A directory with `oci-layout`, `index.json` and `blobs/`.
    OciLayout,
    /// A tar of an OCI layout (`skopeo copy ... oci-archive:`, newer `docker save`).
    OciArchive,
    /// A tar with `manifest.json` (`docker save`, `skopeo copy ... docker-archive:`).
    DockerArchive,
}

/// One image a source offers, with the names the source gives it.
#[derive(Debug, Clone)]
pub(crate) struct SourceImage {
    /// Where in the source the image is described, for messages.
    pub(crate) what: String,
    /// Names as written in the source (full references or bare tags).
    pub(crate) names: Vec<String>,
    kind: ImageKind,
}

#[derive(Debug, Clone)]
enum ImageKind {
    Oci(Box<oci_spec::image::Descriptor>),
    Docker(docker::ManifestEntry),
}

impl Source {
    /// Opens `path` and detects its format. A gzip- or zstd-compressed archive
    /// (`docker save | gzip`) is first decompressed into an unnamed temporary file in
    /// `scratch` (gone when the source is dropped, or if the process dies), since its members
    /// are read by offset.
    pub(crate) fn open(path: &Path, scratch: &Path) -> Result<Source, SourceError> {
        let open_error = |source| SourceError::Open {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(open_error)?;
        let (members, archive) = if meta.is_dir() {
            (Members::Dir(path.to_owned()), false)
        } else {
            let mut file = File::open(path).map_err(open_error)?;
            let mut magic = [0u8; 4];
            let n = read_up_to(&mut file, &mut magic).map_err(open_error)?;
            file.seek(SeekFrom::Start(0)).map_err(open_error)?;
            let compression = if magic[..n].starts_with(&[0x1f, 0x8b]) {
                Some("gzip")
            } else if magic[..n].starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
                Some("zstd")
            } else {
                None
            };
            let file = match compression {
                None => file,
                Some(compression) => decompress(file, compression, scratch).map_err(|source| {
                    SourceError::Decompress {
                        path: path.to_owned(),
                        compression,
                        source,
                    }
                })?,
            };
            (Members::scan_tar(file, path)?, true)
        };
        let format = if members.contains("oci-layout") && members.contains("index.json") {
            if archive {
                Format::OciArchive
            } else {
                Format::OciLayout
            }
        } else if members.contains("manifest.json") {
            Format::DockerArchive
        } else {
            return Err(SourceError::NotAnImage {
                path: path.to_owned(),
            });
        };
        Ok(Source {
            path: path.to_owned(),
            members,
            format,
        })
    }

    /// The detected format.
    pub(crate) fn format(&self) -> Format {
        self.format
    }

    /// The images the source offers for this host.
    pub(crate) fn images(&self) -> Result<Vec<SourceImage>, SourceError> {
        let images = match self.format {
            Format::OciLayout | Format::OciArchive => oci::images(&self.members)?,
            Format::DockerArchive => docker::images(&self.members)?,
        };
        if images.is_empty() {
            return Err(SourceError::NoImages);
        }
        Ok(images)
    }

    /// Copies one image's blobs into the store and returns its manifest digest (for a
    /// docker-archive, of the manifest written for it).
    pub(crate) fn copy_image(
        &self,
        image: &SourceImage,
        ingest: &mut Ingest<'_>,
    ) -> Result<Digest, StoreError> {
        match &image.kind {
            ImageKind::Oci(descriptor) => oci::copy(&self.path, &self.members, descriptor, ingest),
            ImageKind::Docker(entry) => docker::copy(&self.path, &self.members, entry, ingest),
        }
    }
}

impl SourceImage {
    /// The references this image gets: `explicit` if given (combined with a bare tag from
    /// the source when `explicit` has no tag of its own), else the source's names. A bare
    /// source name that reads as a version (`1.36`, `latest`) names no repository and needs
    /// `explicit`; any other bare name (`busybox`, as umoci writes) is a repository.
    pub(crate) fn references(&self, explicit: Option<&str>) -> Result<Vec<Reference>, SourceError> {
        let invalid = |source| SourceError::InvalidName {
            what: self.what.clone(),
            source,
        };
        if let Some(explicit) = explicit {
            let bare_tag = self.names.iter().find(|n| is_bare(n));
            let name = match bare_tag {
                Some(tag)
                    if !reference::has_explicit_tag(explicit)
                        && !reference::has_digest(explicit) =>
                {
                    format!("{}:{tag}", explicit.trim())
                }
                _ => explicit.to_owned(),
            };
            return Ok(vec![reference::normalize(&name).map_err(invalid)?]);
        }
        if self.names.is_empty() {
            return Err(SourceError::NameRequired {
                what: self.what.clone(),
            });
        }
        let mut references: Vec<Reference> = Vec::new();
        for name in &self.names {
            if is_bare(name) && looks_like_version(name) {
                return Err(SourceError::TagWithoutRepository {
                    what: self.what.clone(),
                    tag: name.clone(),
                });
            }
            let reference = reference::normalize(name).map_err(invalid)?;
            if !references.iter().any(|r| r.whole() == reference.whole()) {
                references.push(reference);
            }
        }
        Ok(references)
    }
}

/// A name with no registry, repository path, tag or digest separators.
fn is_bare(name: &str) -> bool {
    !name.contains(['/', ':', '@'])
}

/// A bare name that is a version rather than a repository: starts with a digit, or `v` and a
/// digit, or is `latest`.
fn looks_like_version(name: &str) -> bool {
    let mut chars = name.chars();
    match (chars.next(), chars.next()) {
        (Some(c), _) if c.is_ascii_digit() => true,
        (Some('v'), Some(c)) if c.is_ascii_digit() => true,
        _ => name == "latest",
    }
}

/// Decompresses `file` into an unnamed (`O_TMPFILE`) file in `scratch`.
fn decompress(file: File, compression: &str, scratch: &Path) -> io::Result<File> {
    let mut out = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o600)
        .open(scratch)?;
    let input = BufReader::with_capacity(256 * 1024, file);
    let mut decoder: Box<dyn Read> = match compression {
        "gzip" => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        _ => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
    };
    let mut writer = BufWriter::with_capacity(256 * 1024, &mut out);
    io::copy(&mut decoder, &mut writer)?;
    writer.flush()?;
    drop(writer);
    out.seek(SeekFrom::Start(0))?;
    Ok(out)
}

/// Fills `buf` from `reader` as far as the reader goes (short only at its end); the number of
/// bytes read. For magic numbers, which may arrive split across reads.
pub(crate) fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads and parses a small JSON file of the source.
fn read_json<T: serde::de::DeserializeOwned>(
    members: &Members,
    file: &str,
) -> Result<T, SourceError> {
    let bytes = members
        .read_small(file, JSON_LIMIT)
        .map_err(|source| SourceError::Read {
            file: file.to_owned(),
            source,
        })?
        .ok_or_else(|| SourceError::MissingFile {
            file: file.to_owned(),
        })?;
    serde_json::from_slice(&bytes).map_err(|source| SourceError::Json {
        file: file.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(names: &[&str]) -> SourceImage {
        SourceImage {
            what: "test".to_owned(),
            names: names.iter().map(|s| s.to_string()).collect(),
            kind: ImageKind::Docker(docker::ManifestEntry::default()),
        }
    }

    fn names(image: &SourceImage, explicit: Option<&str>) -> Result<Vec<String>, String> {
        image
            .references(explicit)
            .map(|refs| refs.iter().map(|r| r.whole()).collect())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn image_names_come_from_the_source_or_the_explicit_name() {
        type Case<'a> = (
            &'a [&'a str],
            Option<&'a str>,
            Result<&'a [&'a str], &'a str>,
        );
        let table: &[Case] = &[
            (
                &["busybox"],
                None,
                Ok(&["docker.io/library/busybox:latest"]),
            ),
            (
                &["busybox:1.36"],
                None,
                Ok(&["docker.io/library/busybox:1.36"]),
            ),
            (
                &["docker.io/library/busybox:latest", "busybox:latest"],
                None,
                Ok(&["docker.io/library/busybox:latest"]),
            ),
            (&["localhost:5000/x:1"], None, Ok(&["localhost:5000/x:1"])),
            (
                &["1.36"],
                None,
                Err("image test is tagged only \"1.36\", which names no repository; pass a name"),
            ),
            (
                &["latest"],
                None,
                Err("image test is tagged only \"latest\", which names no repository; pass a name"),
            ),
            (&[], None, Err("image test has no name; pass one")),
            (
                &["1.36"],
                Some("busybox"),
                Ok(&["docker.io/library/busybox:1.36"]),
            ),
            (
                &["1.36"],
                Some("busybox:stable"),
                Ok(&["docker.io/library/busybox:stable"]),
            ),
            (
                &["busybox:1.36"],
                Some("mine/bb"),
                Ok(&["docker.io/mine/bb:latest"]),
            ),
            (
                &[],
                Some("localhost:5000/x"),
                Ok(&["localhost:5000/x:latest"]),
            ),
            (&[], Some("Bad Name"), Err("image test has an invalid name")),
            (&["Bad:Name"], None, Err("image test has an invalid name")),
        ];
        for (source_names, explicit, want) in table {
            let got = names(&image(source_names), *explicit);
            let want = want
                .map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .map_err(str::to_owned);
            assert_eq!(got, want, "names {source_names:?} explicit {explicit:?}");
        }
    }
}
