//! One layer from a registry into the incoming area: wait for (or take) the blob's download
//! lock, download it (resuming a partial download left by a crash), verify size and digest,
//! unpack it and verify its diffID. A download that starts at byte zero is unpacked while it
//! arrives ([`partial::write_and_unpack`]); a resumed one is unpacked from the complete file
//! afterwards. See [`crate::image::store`]'s incoming module for the files involved.

use std::fs::{self, File, OpenOptions};
use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use oci_spec::image::{Descriptor, Digest};
use tokio::sync::{mpsc, watch};

use super::partial::{self, Message, PartialWriter, UnpackTarget, Written};
use super::progress::{LayerState, PullProgress, update_layer};
use super::remote::{Remote, RemoteError};
use super::{PullError, io_error};
use crate::image::digest::sha256_hex;
use crate::image::store::ImageStore;
use crate::image::unpack::{UnpackError, UnpackedLayer, unpack_layer};

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
    let target = UnpackTarget {
        media_type: job.descriptor.media_type().to_string(),
        work: store
            .incoming_dir()?
            .join(format!("unpack-{}", sha256_hex(digest).unwrap_or_default())),
    };
    let mut downloaded = 0;
    if !complete.is_file() {
        let outcome = download(job, &complete, &target, &unpacked).await?;
        downloaded = outcome.fetched;
        if outcome.unpacked {
            drop(lock);
            update_layer(job.progress, job.index, |l| l.state = LayerState::Done);
            return Ok(downloaded);
        }
    }
    // A download resumed after an interruption, or a blob an earlier pull left complete.
    update_layer(job.progress, job.index, |l| {
        l.state = LayerState::Unpacking;
        l.current = l.size;
    });
    let expected = job.diff_id.clone();
    let layer = digest.clone();
    let reference = job.reference.to_owned();
    tokio::task::spawn_blocking(move || {
        unpack_into(&complete, &target, &unpacked, &expected, &layer, &reference)
    })
    .await
    .map_err(|e| PullError::Internal {
        message: format!("unpack task failed: {e}"),
    })??;
    drop(lock);
    update_layer(job.progress, job.index, |l| l.state = LayerState::Done);
    Ok(downloaded)
}

/// Unpacks `blob` into `target.work` (a scratch directory only the holder of the blob's
/// lock uses), checks the diffID and renames it to `dest`. The blob is then deleted: like
/// docker, the node keeps pulled layers unpacked only, so a layer is written to disk once
/// (and the compressed copy, deleted before the page cache is written back, mostly never is).
fn unpack_into(
    blob: &Path,
    target: &UnpackTarget,
    dest: &Path,
    expected: &Digest,
    layer: &Digest,
    reference: &str,
) -> Result<(), PullError> {
    let work = target.fresh_work()?;
    let file = File::open(blob).map_err(|e| io_error("open", blob, e))?;
    let unpacked = unpack_layer(file, &target.media_type, work);
    place_unpacked(unpacked, work, dest, expected, layer, reference)?;
    let _ = fs::remove_file(blob);
    Ok(())
}

/// Checks what an unpack into `work` produced and, if its diffID is `expected`, renames
/// `work` to `dest`; otherwise removes `work`.
fn place_unpacked(
    unpacked: Result<UnpackedLayer, UnpackError>,
    work: &Path,
    dest: &Path,
    expected: &Digest,
    layer: &Digest,
    reference: &str,
) -> Result<(), PullError> {
    let result = (|| {
        let unpacked = unpacked.map_err(|source| PullError::Unpack {
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
    if result.is_err() {
        let _ = fs::remove_dir_all(work);
    }
    result
}

/// What [`download`] did.
struct Downloaded {
    /// Bytes fetched from the registry.
    fetched: u64,
    /// Whether the layer was unpacked (to `dest`) while it downloaded; if not, the complete
    /// blob is left for [`unpack_into`].
    unpacked: bool,
}

/// Downloads the blob into `<hex>.partial`, resuming what is there. A body that starts at
/// byte zero is unpacked into `target` as it arrives and, once the blob's digest and the
/// layer's diffID check out, moved to `dest` (the partial file is then deleted); otherwise
/// the partial file is renamed to `complete` once its size and digest check out.
async fn download(
    job: &LayerJob<'_>,
    complete: &Path,
    target: &UnpackTarget,
    dest: &Path,
) -> Result<Downloaded, PullError> {
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
            fetch_once(job, &partial, offset, &mut fetched, target).await
        };
        match outcome {
            Ok((found, Some(unpacked))) if found == *digest => {
                let work = target.work.clone();
                let (dest, expected, layer) =
                    (dest.to_owned(), job.diff_id.clone(), digest.clone());
                let reference = job.reference.to_owned();
                let placed = tokio::task::spawn_blocking(move || {
                    place_unpacked(unpacked, &work, &dest, &expected, &layer, &reference)
                })
                .await
                .map_err(|e| PullError::Internal {
                    message: format!("unpack task failed: {e}"),
                })?;
                if placed.is_ok() {
                    let _ = fs::remove_file(&partial);
                } else {
                    // The blob is good; what went wrong is its content. Keep it, as the
                    // unpack of a complete download does.
                    fs::rename(&partial, complete).map_err(|e| io_error("rename", &partial, e))?;
                }
                placed?;
                return Ok(Downloaded {
                    fetched,
                    unpacked: true,
                });
            }
            Ok((found, None)) if found == *digest => {
                fs::rename(&partial, complete).map_err(|e| io_error("rename", &partial, e))?;
                return Ok(Downloaded {
                    fetched,
                    unpacked: false,
                });
            }
            Ok((found, _)) => {
                let _ = fs::remove_file(&partial);
                let _ = fs::remove_dir_all(&target.work);
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
async fn finish_existing(
    partial: &Path,
    size: u64,
) -> Result<(Digest, Option<Result<UnpackedLayer, UnpackError>>), Fetch> {
    let path = partial.to_owned();
    tokio::task::spawn_blocking(move || {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_error("open", &path, e))?;
        let writer = PartialWriter::open(file, &path, size)?;
        Ok((writer.finish()?, None))
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
/// hashes them, and that also unpacks them into `target` when the body starts at byte zero.
/// Returns the digest of the whole file once the body ends, with the unpack's outcome.
async fn fetch_once(
    job: &LayerJob<'_>,
    partial: &Path,
    offset: u64,
    fetched: &mut u64,
    target: &UnpackTarget,
) -> Result<(Digest, Option<Result<UnpackedLayer, UnpackError>>), Fetch> {
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

    let (tx, rx) = mpsc::channel::<Message>(64);
    let path = partial.to_owned();
    let writer = if start == 0 {
        let target = target.clone();
        tokio::task::spawn_blocking(move || partial::write_and_unpack(&path, size, rx, &target))
    } else {
        tokio::task::spawn_blocking(move || partial::write_partial(&path, start, size, rx))
    };
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
    if finish && start == 0 {
        // Every byte is here; the unpack may still be working through the last of them.
        update_layer(job.progress, job.index, |l| l.state = LayerState::Unpacking);
    }
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
        Written {
            digest: Some(found),
            unpacked,
        } => Ok((found, unpacked)),
        Written { digest: None, .. } => Err(Fetch::Fatal(PullError::Internal {
            message: "download writer stopped early".to_owned(),
        })),
    }
}
