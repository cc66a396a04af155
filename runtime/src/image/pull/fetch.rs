//! One layer from a registry into the incoming area: wait for (or take) the blob's download
//! lock, download it (resuming a partial download left by a crash), verify size and digest,
//! unpack it and verify its diffID. See [`crate::image::store`]'s incoming module for the
//! files involved.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use oci_spec::image::{Descriptor, Digest};
use sha2::{Digest as _, Sha256};
use tokio::sync::{mpsc, watch};

use super::progress::{LayerState, PullProgress, update_layer};
use super::remote::{Remote, RemoteError};
use super::{PullError, io_error};
use crate::image::digest::{from_hasher, sha256_hex};
use crate::image::store::ImageStore;
use crate::image::unpack::unpack_layer;

/// How often a pull waiting for another pull's download looks again.
const WAIT_POLL: Duration = Duration::from_millis(50);
/// Attempts at a blob after transient failures (network errors, 5xx, 429).
const ATTEMPTS: u32 = 4;

/// One layer to bring in.
pub(crate) struct LayerJob<'a> {
    pub(crate) store: &'a ImageStore,
    pub(crate) remote: &'a Remote,
    pub(crate) reference: &'a str,
    pub(crate) descriptor: &'a Descriptor,
    pub(crate) diff_id: &'a Digest,
    pub(crate) progress: &'a watch::Sender<PullProgress>,
    pub(crate) index: usize,
}

/// Makes layer `job` ready to adopt: in the store already, or downloaded and unpacked in
/// the incoming area. Returns the bytes this call downloaded.
pub(crate) async fn ensure_layer(job: &LayerJob<'_>) -> Result<u64, PullError> {
    let digest = job.descriptor.digest();
    let store = job.store;
    let lock = loop {
        if store.layer_dir(job.diff_id).is_dir() {
            update_layer(job.progress, job.index, |l| {
                l.state = LayerState::AlreadyPresent;
            });
            return Ok(0);
        }
        match store.try_lock_incoming_blob(digest)? {
            Some(lock) => break lock,
            None => {
                // Someone else is at it: show how far they are.
                let partial = store.incoming_partial(digest)?;
                let current = fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
                update_layer(job.progress, job.index, |l| {
                    l.state = LayerState::WaitingForOtherPull;
                    l.current = current;
                });
                tokio::time::sleep(WAIT_POLL).await;
            }
        }
    };
    let unpacked = store.incoming_layer(job.diff_id)?;
    if unpacked.is_dir() || store.layer_dir(job.diff_id).is_dir() {
        update_layer(job.progress, job.index, |l| {
            l.state = LayerState::AlreadyPresent;
        });
        return Ok(0);
    }
    let complete = store.incoming_blob(digest)?;
    let mut downloaded = 0;
    if !complete.is_file() {
        downloaded = download(job, &complete).await?;
    }
    update_layer(job.progress, job.index, |l| {
        l.state = LayerState::Unpacking;
        l.current = l.size;
    });
    let work = store
        .incoming_dir()?
        .join(format!("unpack-{}", sha256_hex(digest).unwrap_or_default()));
    let media_type = job.descriptor.media_type().to_string();
    let expected = job.diff_id.clone();
    let layer = digest.clone();
    let reference = job.reference.to_owned();
    tokio::task::spawn_blocking(move || {
        unpack_into(
            &complete,
            &media_type,
            &work,
            &unpacked,
            &expected,
            &layer,
            &reference,
        )
    })
    .await
    .map_err(|e| PullError::Internal {
        message: format!("unpack task failed: {e}"),
    })??;
    drop(lock);
    update_layer(job.progress, job.index, |l| l.state = LayerState::Done);
    Ok(downloaded)
}

/// Unpacks `blob` into `work` (a scratch directory only the holder of the blob's lock
/// uses), checks the diffID and renames it to `dest`. The blob is then deleted: like docker,
/// the node keeps pulled layers unpacked only, so a layer is written to disk once (and the
/// compressed copy, deleted before the page cache is written back, mostly never is).
fn unpack_into(
    blob: &Path,
    media_type: &str,
    work: &Path,
    dest: &Path,
    expected: &Digest,
    layer: &Digest,
    reference: &str,
) -> Result<(), PullError> {
    if work.exists() {
        fs::remove_dir_all(work).map_err(|e| io_error("remove", work, e))?;
    }
    fs::DirBuilder::new()
        .mode(0o755)
        .create(work)
        .map_err(|e| io_error("create", work, e))?;
    let result = (|| {
        let file = File::open(blob).map_err(|e| io_error("open", blob, e))?;
        let unpacked =
            unpack_layer(file, media_type, work).map_err(|source| PullError::Unpack {
                reference: reference.to_owned(),
                layer: layer.clone(),
                source,
            })?;
        if unpacked.diff_id != *expected {
            return Err(PullError::DiffIdMismatch {
                reference: reference.to_owned(),
                layer: layer.clone(),
                expected: expected.clone(),
                found: unpacked.diff_id,
            });
        }
        // Not flushed here: the commit flushes the whole filesystem once, before anything
        // prepared here gets a name in the store (see `Commit::run`). A crash of this
        // process loses nothing the page cache holds; a reboot voids the incoming area
        // (`ImageStore::try_begin_pull`).
        match nix::fcntl::renameat2(
            None,
            work,
            None,
            dest,
            nix::fcntl::RenameFlags::RENAME_NOREPLACE,
        ) {
            Ok(()) => Ok(()),
            // The same layer (same diffID) came in another compression, through another blob.
            Err(nix::errno::Errno::EEXIST) | Err(nix::errno::Errno::ENOTEMPTY) => {
                fs::remove_dir_all(work).map_err(|e| io_error("remove", work, e))
            }
            Err(e) => Err(io_error("rename", work, e.into())),
        }
    })();
    match &result {
        Ok(()) => {
            let _ = fs::remove_file(blob);
        }
        Err(_) => {
            let _ = fs::remove_dir_all(work);
        }
    }
    result
}

/// Downloads the blob into `<hex>.partial`, resuming what is there, and renames it to
/// `complete` once its size and digest check out. Returns the bytes fetched.
async fn download(job: &LayerJob<'_>, complete: &Path) -> Result<u64, PullError> {
    let digest = job.descriptor.digest();
    let size = job.descriptor.size();
    let partial = job.store.incoming_partial(digest)?;
    let mut fetched = 0u64;
    let mut attempt = 0u32;
    let mut restarted_from_zero = false;
    loop {
        attempt += 1;
        let mut offset = fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        if offset > size {
            offset = 0;
        }
        if offset > 0 {
            tracing::info!(layer = %digest, offset, size, "resuming an interrupted layer download");
        }
        let outcome = if offset == size && size > 0 {
            // A crash after the last byte but before the rename: only the check is left.
            finish_existing(&partial, size).await
        } else {
            fetch_once(job, &partial, offset, &mut fetched).await
        };
        match outcome {
            Ok(found) if found == *digest => {
                fs::rename(&partial, complete).map_err(|e| io_error("rename", &partial, e))?;
                return Ok(fetched);
            }
            Ok(found) => {
                let _ = fs::remove_file(&partial);
                if offset > 0 && !restarted_from_zero {
                    // The kept prefix may be what went wrong (a torn write before a crash):
                    // start over once before blaming the registry.
                    tracing::warn!(layer = %digest, %found, "resumed download does not verify; downloading it again from the start");
                    restarted_from_zero = true;
                    continue;
                }
                return Err(PullError::DigestMismatch {
                    reference: job.reference.to_owned(),
                    what: format!("layer {digest}"),
                    expected: digest.clone(),
                    found,
                });
            }
            Err(Fetch::Fatal(error)) => {
                let _ = fs::remove_file(&partial);
                return Err(error);
            }
            Err(Fetch::Remote(error)) if error.is_transient() && attempt < ATTEMPTS => {
                let delay = Duration::from_millis(250 << attempt);
                tracing::warn!(layer = %digest, attempt, error = &error as &dyn std::error::Error, "layer download interrupted; resuming");
                tokio::time::sleep(delay).await;
            }
            Err(Fetch::Remote(error)) => {
                return Err(PullError::Layer {
                    reference: job.reference.to_owned(),
                    layer: digest.clone(),
                    endpoint: job.remote_label(),
                    source: error,
                });
            }
        }
    }
}

impl LayerJob<'_> {
    fn remote_label(&self) -> String {
        self.remote.label().to_owned()
    }
}

/// Why one download attempt stopped.
enum Fetch {
    /// Worth resuming (network trouble).
    Remote(RemoteError),
    /// Not worth another attempt; the partial file is removed.
    Fatal(PullError),
}

impl From<PullError> for Fetch {
    fn from(error: PullError) -> Fetch {
        Fetch::Fatal(error)
    }
}

/// Hashes a partial file that already has every byte.
async fn finish_existing(partial: &Path, size: u64) -> Result<Digest, Fetch> {
    let path = partial.to_owned();
    tokio::task::spawn_blocking(move || {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_error("open", &path, e))?;
        let writer = PartialWriter::open(file, &path, size)?;
        writer.finish()
    })
    .await
    .map_err(|e| {
        Fetch::Fatal(PullError::Internal {
            message: format!("hash task failed: {e}"),
        })
    })?
    .map_err(Fetch::Fatal)
}

/// One GET of the blob from `offset`: chunks go to a blocking writer thread that appends and
/// hashes them. Returns the digest of the whole file once the body ends.
async fn fetch_once(
    job: &LayerJob<'_>,
    partial: &Path,
    offset: u64,
    fetched: &mut u64,
) -> Result<Digest, Fetch> {
    let digest = job.descriptor.digest();
    let size = job.descriptor.size();
    let body = job
        .remote
        .blob(digest.as_ref(), offset)
        .await
        .map_err(Fetch::Remote)?;
    let start = if body.from_offset { offset } else { 0 };
    update_layer(job.progress, job.index, |l| {
        l.state = LayerState::Downloading;
        l.current = start;
    });

    let (tx, rx) = mpsc::channel::<Message>(32);
    let path = partial.to_owned();
    let writer = tokio::task::spawn_blocking(move || write_partial(&path, start, size, rx));
    let mut received = start;
    let mut stream = body.stream;
    let mut failure: Option<Fetch> = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => {
                received += chunk.len() as u64;
                *fetched += chunk.len() as u64;
                if received > size {
                    failure = Some(Fetch::Fatal(PullError::SizeMismatch {
                        reference: job.reference.to_owned(),
                        what: format!("layer {digest}"),
                        expected: size,
                        found: received,
                    }));
                    break;
                }
                if tx.send(Message::Chunk(chunk)).await.is_err() {
                    break;
                }
                update_layer(job.progress, job.index, |l| l.current = received);
            }
            // The client checks the digest itself at the end of a whole body; when every
            // byte arrived, our own check below says what was wrong.
            Err(_) if received == size => break,
            Err(error) => {
                failure = Some(Fetch::Remote(RemoteError::Unreachable {
                    source: Box::new(error),
                }));
                break;
            }
        }
    }
    let finish = failure.is_none() && received == size;
    let _ = tx
        .send(if finish {
            Message::Finish
        } else {
            Message::Abort
        })
        .await;
    drop(tx);
    let written = writer.await.map_err(|e| {
        Fetch::Fatal(PullError::Internal {
            message: format!("download writer failed: {e}"),
        })
    })?;
    if let Some(failure) = failure {
        return Err(failure);
    }
    if received < size {
        return Err(Fetch::Remote(RemoteError::Unreachable {
            source: format!("the body ended after {received} of {size} bytes").into(),
        }));
    }
    match written? {
        Some(found) => Ok(found),
        None => Err(Fetch::Fatal(PullError::Internal {
            message: "download writer stopped early".to_owned(),
        })),
    }
}

enum Message {
    Chunk(Bytes),
    Finish,
    Abort,
}

/// The writer thread: appends chunks to the partial file from `start`, hashing everything
/// from byte zero. On `Finish` flushes to disk and returns the digest; on `Abort` keeps what
/// was written for a later resume.
fn write_partial(
    path: &Path,
    start: u64,
    size: u64,
    mut rx: mpsc::Receiver<Message>,
) -> Result<Option<Digest>, Fetch> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_error("open", path, e))?;
    let mut writer = PartialWriter::open(file, path, start)?;
    while let Some(message) = rx.blocking_recv() {
        match message {
            Message::Chunk(chunk) => writer.write(&chunk)?,
            Message::Finish => {
                if writer.written != size {
                    return Ok(None);
                }
                return Ok(Some(writer.finish()?));
            }
            Message::Abort => {
                writer.flush()?;
                return Ok(None);
            }
        }
    }
    writer.flush()?;
    Ok(None)
}

/// A partial download being appended to, with the hash of everything in it.
struct PartialWriter {
    file: io::BufWriter<File>,
    path: PathBuf,
    hasher: Sha256,
    written: u64,
}

impl PartialWriter {
    /// Keeps the first `keep` bytes of `file` (hashing them) and positions after them.
    fn open(mut file: File, path: &Path, keep: u64) -> Result<PartialWriter, PullError> {
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

    fn flush(&mut self) -> Result<(), PullError> {
        self.file
            .flush()
            .map_err(|e| io_error("write", &self.path, e))
    }

    /// Writes out the buffer and returns the digest of the whole file. Not flushed to
    /// disk: a layer blob lives only until it is unpacked (see `unpack_into`).
    fn finish(mut self) -> Result<Digest, PullError> {
        self.flush()?;
        Ok(from_hasher(self.hasher))
    }
}
