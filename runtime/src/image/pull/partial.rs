//! The blocking side of a layer download: a thread that appends the body's chunks to
//! `<hex>.partial` and hashes them, and, when the body starts at byte zero, feeds the same
//! bytes to the layer's decompress-and-unpack as they arrive, so the layer is unpacked when
//! the download ends (one pass over the bytes, no second read of the blob).
//!
//! The partial file is written either way: a download cut short (network error, crash) is
//! resumed from it with a range request, and a resumed download is unpacked afterwards from
//! the complete file. What a streamed unpack wrote is used only once the whole body has
//! arrived, its digest checks out and the unpack's diffID matches the config (see
//! `fetch::place_unpacked`); otherwise its scratch directory is removed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use bytes::{Buf, Bytes};
use oci_spec::image::Digest;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use super::{PullError, io_error};
use crate::image::digest::from_hasher;
use crate::image::unpack::{UnpackError, UnpackedLayer, unpack_layer_buffered};

/// What the async side of a download sends the writer thread.
pub(super) enum Message {
    Chunk(Bytes),
    /// Every byte was sent.
    Finish,
    /// The body stopped early; keep what was written for a resume.
    Abort,
}

/// Where a layer streamed during its download is unpacked.
#[derive(Debug, Clone)]
pub(super) struct UnpackTarget {
    /// The layer's media type (decides the decompressor, with the magic bytes).
    pub(super) media_type: String,
    /// A scratch directory only the holder of the blob's download lock uses.
    pub(super) work: PathBuf,
}

impl UnpackTarget {
    /// The scratch directory, emptied of what an earlier attempt left.
    pub(super) fn fresh_work(&self) -> Result<&Path, PullError> {
        let work = &self.work;
        if work.exists() {
            fs::remove_dir_all(work).map_err(|e| io_error("remove", work, e))?;
        }
        fs::DirBuilder::new()
            .mode(0o755)
            .create(work)
            .map_err(|e| io_error("create", work, e))?;
        Ok(work)
    }
}

/// What the writer thread ends with.
pub(super) struct Written {
    /// The digest of the whole file, if every byte arrived.
    pub(super) digest: Option<Digest>,
    /// The outcome of the streamed unpack into the target's `work`, if there was one and
    /// every byte arrived (otherwise `work` has been removed).
    pub(super) unpacked: Option<Result<UnpackedLayer, UnpackError>>,
}

/// Appends chunks to the partial file at `path` from byte `start`, hashing everything from
/// byte zero. On `Finish` returns the digest; on `Abort` keeps what was written.
pub(super) fn write_partial(
    path: &Path,
    start: u64,
    size: u64,
    rx: mpsc::Receiver<Message>,
) -> Result<Written, PullError> {
    let mut feed = Feed::new(rx, PartialWriter::create(path, start)?);
    feed.drain()?;
    feed.writer.end(feed.end == End::Finished, size)
}

/// [`write_partial`] from byte zero, unpacking the bytes into `target.work` as they arrive.
/// The whole body is written even when the unpack fails early (so a corrupt blob is reported
/// as a digest mismatch, not as an unreadable archive).
pub(super) fn write_and_unpack(
    path: &Path,
    size: u64,
    rx: mpsc::Receiver<Message>,
    target: &UnpackTarget,
) -> Result<Written, PullError> {
    let work = target.fresh_work()?;
    let mut feed = Feed::new(rx, PartialWriter::create(path, 0)?);
    let unpacked = unpack_layer_buffered(&mut feed, &target.media_type, work);
    let drained = feed.drain();
    let finished = feed.end == End::Finished;
    match drained.and_then(|()| feed.writer.end(finished, size)) {
        Ok(written) if written.digest.is_some() => Ok(Written {
            digest: written.digest,
            unpacked: Some(unpacked),
        }),
        other => {
            let _ = fs::remove_dir_all(work);
            other
        }
    }
}

/// How the body ended, as the feed saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Open,
    Finished,
    Aborted,
}

/// The body as a `BufRead` for the unpacker: each chunk is appended to the partial file
/// (and hashed) as it is taken from the channel, then handed out without a copy.
struct Feed {
    rx: mpsc::Receiver<Message>,
    writer: PartialWriter,
    chunk: Bytes,
    end: End,
    /// A failure to write the partial file (the unpacker sees only an I/O error).
    failed: Option<PullError>,
}

impl Feed {
    fn new(rx: mpsc::Receiver<Message>, writer: PartialWriter) -> Feed {
        Feed {
            rx,
            writer,
            chunk: Bytes::new(),
            end: End::Open,
            failed: None,
        }
    }

    /// Takes the next message; false once the body has ended.
    fn next(&mut self) -> Result<bool, PullError> {
        if self.end != End::Open {
            return Ok(false);
        }
        match self.rx.blocking_recv() {
            Some(Message::Chunk(chunk)) => {
                self.writer.write(&chunk)?;
                self.chunk = chunk;
            }
            Some(Message::Finish) => self.end = End::Finished,
            Some(Message::Abort) | None => self.end = End::Aborted,
        }
        Ok(self.end == End::Open)
    }

    /// Writes out whatever of the body was not read (all of it when nothing reads).
    fn drain(&mut self) -> Result<(), PullError> {
        if let Some(error) = self.failed.take() {
            return Err(error);
        }
        self.chunk.clear();
        while self.next()? {}
        Ok(())
    }
}

impl BufRead for Feed {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.chunk.is_empty() {
            match self.next() {
                Ok(true) => {}
                Ok(false) if self.end == End::Finished => return Ok(&[]),
                Ok(false) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the layer download stopped before its end",
                    ));
                }
                Err(error) => {
                    self.failed = Some(error);
                    return Err(io::Error::other("cannot write the partial download"));
                }
            }
        }
        Ok(&self.chunk)
    }

    fn consume(&mut self, amount: usize) {
        self.chunk.advance(amount);
    }
}

impl Read for Feed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// A partial download being appended to, with the hash of everything in it.
pub(super) struct PartialWriter {
    file: io::BufWriter<File>,
    path: PathBuf,
    hasher: Sha256,
    written: u64,
}

impl PartialWriter {
    /// Opens (creating) the partial file at `path`, keeping its first `keep` bytes.
    fn create(path: &Path, keep: u64) -> Result<PartialWriter, PullError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| io_error("open", path, e))?;
        PartialWriter::open(file, path, keep)
    }

    /// Keeps the first `keep` bytes of `file` (hashing them) and positions after them.
    pub(super) fn open(mut file: File, path: &Path, keep: u64) -> Result<PartialWriter, PullError> {
        let error = |action, e| io_error(action, path, e);
        file.set_len(keep).map_err(|e| error("truncate", e))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| error("seek", e))?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        let mut left = keep;
        while left > 0 {
            let want = buffer.len().min(left as usize);
            let n = file
                .read(&mut buffer[..want])
                .map_err(|e| error("read", e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            left -= n as u64;
        }
        file.seek(SeekFrom::Start(keep))
            .map_err(|e| error("seek", e))?;
        Ok(PartialWriter {
            file: io::BufWriter::with_capacity(1 << 20, file),
            path: path.to_owned(),
            hasher,
            written: keep,
        })
    }

    fn write(&mut self, chunk: &[u8]) -> Result<(), PullError> {
        self.hasher.update(chunk);
        self.written += chunk.len() as u64;
        self.file
            .write_all(chunk)
            .map_err(|e| io_error("write", &self.path, e))
    }

    /// Writes out the buffer. With `finished` and every byte there, returns the digest of
    /// the whole file. Not flushed to disk: a layer blob lives only until it is unpacked,
    /// and the commit flushes what the store keeps.
    fn end(&mut self, finished: bool, size: u64) -> Result<Written, PullError> {
        self.file
            .flush()
            .map_err(|e| io_error("write", &self.path, e))?;
        let digest = (finished && self.written == size).then(|| from_hasher(self.hasher.clone()));
        Ok(Written {
            digest,
            unpacked: None,
        })
    }

    /// The digest of a file that already has all its bytes.
    pub(super) fn finish(mut self) -> Result<Digest, PullError> {
        let size = self.written;
        let written = self.end(true, size)?;
        Ok(written.digest.expect("every byte is there"))
    }
}
