//! Named files of an import source: an unpacked directory or a tar archive read in place.
//!
//! A tar archive is scanned once for its headers; members are then read straight from the
//! archive file at their offsets (no extraction, no temporary copy).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::SourceError;

/// Symlink hops followed inside an archive before giving up.
const MAX_LINK_HOPS: usize = 8;

/// The files of an import source, looked up by their path relative to its top.
#[derive(Debug)]
pub(crate) enum Members {
    Dir(PathBuf),
    Tar(TarMembers),
}

/// A tar archive's regular files and links, by normalised path.
#[derive(Debug)]
pub(crate) struct TarMembers {
    file: Arc<File>,
    members: HashMap<String, Member>,
}

#[derive(Debug, Clone)]
enum Member {
    File { offset: u64, size: u64 },
    Link { target: String },
    Other,
}

/// A reader over one member of an archive, reading at absolute offsets.
pub(crate) struct MemberReader {
    file: Arc<File>,
    position: u64,
    end: u64,
}

impl Read for MemberReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end - self.position;
        if left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.file.read_at(&mut buf[..want], self.position)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive member is truncated",
            ));
        }
        self.position += n as u64;
        Ok(n)
    }
}

impl Members {
    /// Scans the tar archive `file` (read from `path`, which is named in errors).
    pub(crate) fn scan_tar(file: File, path: &Path) -> Result<Members, SourceError> {
        let malformed = |source| SourceError::Malformed {
            path: path.to_owned(),
            source,
        };
        let file_len = file.metadata().map_err(malformed)?.len();
        let mut members = HashMap::new();
        {
            let mut archive = tar::Archive::new(BufReader::new(&file));
            for entry in archive.entries_with_seek().map_err(malformed)? {
                let entry = entry.map_err(malformed)?;
                let Some(name) = normalize(&String::from_utf8_lossy(&entry.path_bytes())) else {
                    continue;
                };
                let member = match entry.header().entry_type() {
                    tar::EntryType::Regular | tar::EntryType::Continuous => {
                        let offset = entry.raw_file_position();
                        let size = entry.size();
                        if offset.checked_add(size).is_none_or(|end| end > file_len) {
                            return Err(malformed(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                format!("member {name} runs past the end of the archive"),
                            )));
                        }
                        Member::File { offset, size }
                    }
                    tar::EntryType::Symlink | tar::EntryType::Link => {
                        let target = entry
                            .link_name_bytes()
                            .map(|t| String::from_utf8_lossy(&t).into_owned())
                            .unwrap_or_default();
                        let target = if entry.header().entry_type() == tar::EntryType::Symlink {
                            // Relative to the link's directory.
                            let dir = Path::new(&name).parent().unwrap_or(Path::new(""));
                            dir.join(target).to_string_lossy().into_owned()
                        } else {
                            target
                        };
                        match normalize(&target) {
                            Some(target) => Member::Link { target },
                            None => Member::Other,
                        }
                    }
                    _ => Member::Other,
                };
                members.insert(name, member);
            }
        }
        Ok(Members::Tar(TarMembers {
            file: Arc::new(file),
            members,
        }))
    }

    /// Whether the source has a regular file (or a link to one) at `name`.
    pub(crate) fn contains(&self, name: &str) -> bool {
        match self {
            Members::Dir(dir) => normalize(name).is_some_and(|n| dir.join(n).is_file()),
            Members::Tar(tar) => tar.resolve(name).is_some(),
        }
    }

    /// Opens the file `name`, returning a reader and its size, or `None` if it is absent.
    pub(crate) fn open(&self, name: &str) -> io::Result<Option<(Box<dyn Read + Send>, u64)>> {
        let Some(name) = normalize(name) else {
            return Ok(None);
        };
        match self {
            Members::Dir(dir) => match File::open(dir.join(&name)) {
                Ok(file) => {
                    let meta = file.metadata()?;
                    if !meta.is_file() {
                        return Ok(None);
                    }
                    Ok(Some((Box::new(file), meta.len())))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            },
            Members::Tar(tar) => Ok(tar.resolve(&name).map(|(offset, size)| {
                let reader = MemberReader {
                    file: tar.file.clone(),
                    position: offset,
                    end: offset + size,
                };
                (Box::new(reader) as Box<dyn Read + Send>, size)
            })),
        }
    }

    /// Reads a small file (an index or manifest) whole, refusing anything over `limit` bytes.
    pub(crate) fn read_small(&self, name: &str, limit: u64) -> io::Result<Option<Vec<u8>>> {
        let Some((reader, size)) = self.open(name)? else {
            return Ok(None);
        };
        if size > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{name} is {size} bytes, more than the {limit} allowed"),
            ));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        reader.take(limit + 1).read_to_end(&mut bytes)?;
        Ok(Some(bytes))
    }
}

impl TarMembers {
    /// Follows links to a regular file: its offset and size.
    fn resolve(&self, name: &str) -> Option<(u64, u64)> {
        let mut name = normalize(name)?;
        for _ in 0..MAX_LINK_HOPS {
            match self.members.get(&name)? {
                Member::File { offset, size } => return Some((*offset, *size)),
                Member::Link { target } => name = target.clone(),
                Member::Other => return None,
            }
        }
        None
    }
}

/// `./a//b` -> `a/b`; `None` for paths that climb out or name the top itself.
fn normalize(name: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for component in Path::new(name).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::ParentDir => {
                parts.pop()?;
            }
            _ => {}
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_are_normalised_and_cannot_climb_out() {
        let table: &[(&str, Option<&str>)] = &[
            ("index.json", Some("index.json")),
            ("./index.json", Some("index.json")),
            ("/blobs//sha256/ab", Some("blobs/sha256/ab")),
            ("abc/../def.tar", Some("def.tar")),
            ("../etc/passwd", None),
            ("./", None),
        ];
        for (raw, want) in table {
            assert_eq!(normalize(raw).as_deref(), *want, "name {raw:?}");
        }
    }
}
