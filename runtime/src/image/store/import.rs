//! `ImageStore::import`: plan (open the source, list its images, settle every name), then
//! copy and unpack inside one ingest, so a failure anywhere changes nothing.

use std::path::Path;
use std::time::Instant;

use super::{ImageRecord, ImageStore, StoreError};
use crate::image::source::{Source, SourceError};

pub(super) fn import(
    store: &ImageStore,
    path: &Path,
    name: Option<&str>,
) -> Result<Vec<ImageRecord>, StoreError> {
    let started = Instant::now();
    let import_error = |source| StoreError::import(path, source);
    let source = Source::open(path, store.root()).map_err(import_error)?;
    let images = source.images().map_err(import_error)?;
    if name.is_some() && images.len() > 1 {
        return Err(import_error(SourceError::NameAmbiguous {
            count: images.len(),
        }));
    }
    // Every name is checked before anything is written.
    let mut plan = Vec::with_capacity(images.len());
    for image in images {
        let references = image.references(name).map_err(import_error)?;
        plan.push((image, references));
    }

    let mut ingest = store.begin_ingest()?;
    for (image, references) in &plan {
        let manifest = source.copy_image(image, &mut ingest)?;
        ingest.add_image(&manifest, references)?;
    }
    let records = ingest.commit()?;
    for record in &records {
        tracing::info!(
            path = %path.display(),
            format = ?source.format(),
            references = ?record.references,
            manifest = %record.manifest_digest,
            id = record.id(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "imported image"
        );
    }
    Ok(records)
}
