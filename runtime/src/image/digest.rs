//! SHA-256 digests: hashing while reading or writing, and the hex form used in store paths.

use std::io::{self, Read, Write};
use std::str::FromStr;

use oci_spec::image::{Digest, DigestAlgorithm};
use sha2::{Digest as _, Sha256};

/// The `sha256:<hex>` digest of `bytes`.
pub fn sha256_of(bytes: &[u8]) -> Digest {
    from_hasher(Sha256::new_with_prefix(bytes))
}

/// Turns a finished hasher into an OCI digest.
pub(crate) fn from_hasher(hasher: Sha256) -> Digest {
    let hex = hex::encode(hasher.finalize());
    // A lowercase hex SHA-256 always parses as a digest.
    Digest::from_str(&format!("sha256:{hex}")).expect("sha256 hex is a valid digest")
}

/// The hex part of a SHA-256 digest, or `None` for any other algorithm. The store keeps only
/// SHA-256 content (`blobs/sha256/<hex>`); oci-spec has already checked the hex is lowercase
/// and 64 characters long, so it is safe as a file name.
pub fn sha256_hex(digest: &Digest) -> Option<&str> {
    match digest.algorithm() {
        DigestAlgorithm::Sha256 => Some(digest.digest()),
        _ => None,
    }
}

/// A reader that hashes and counts what passes through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Reads the rest of the stream (so trailing padding is hashed too) and returns the
    /// digest and byte count of everything read.
    pub(crate) fn finish(mut self) -> io::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((from_hasher(self.hasher), self.bytes))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// A writer that hashes and counts what passes through it.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(crate) fn into_parts(self) -> (W, Digest, u64) {
        (self.inner, from_hasher(self.hasher), self.bytes)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_empty_input_is_the_well_known_digest() {
        assert_eq!(
            sha256_of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn hashing_reader_hashes_unread_remainder_on_finish() {
        let mut reader = HashingReader::new(&b"hello world"[..]);
        let mut first = [0u8; 5];
        reader.read_exact(&mut first).unwrap();
        let (digest, bytes) = reader.finish().unwrap();
        assert_eq!(bytes, 11);
        assert_eq!(digest, sha256_of(b"hello world"));
    }

    #[test]
    fn only_sha256_digests_have_a_store_path() {
        let sha512 = Digest::from_str(&format!("sha512:{}", "a".repeat(128))).unwrap();
        assert_eq!(sha256_hex(&sha512), None);
        let sha256 = sha256_of(b"x");
        assert_eq!(sha256_hex(&sha256).unwrap().len(), 64);
    }
}
