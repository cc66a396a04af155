//! `Update` and `UpdateStatus`: replace an object's spec and metadata, or its status.

use serde_json::Value;

use super::txn::Txn;
use super::{check_resource_version, delete, meta};
use crate::state::Revision;
use crate::state::key::ObjectKey;
use crate::state::outcome::{Outcome, Rejection};
use crate::state::time::Timestamp;

/// Metadata fields only the state machine writes: an update keeps the stored values.
const SYSTEM_METADATA: [&str; 6] = [
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "resourceVersion",
];

pub(super) fn update(
    txn: &mut Txn<'_>,
    object: &Value,
    precondition: Option<Revision>,
    now: Timestamp,
) -> Result<Outcome, Rejection> {
    let key = ObjectKey::of(object)?;
    let stored = txn
        .get(&key)
        .ok_or_else(|| Rejection::NotFound { key: key.clone() })?;
    check_resource_version(&key, &stored, precondition)?;
    let stored_uid = meta::uid(&stored);
    let given_uid = meta::uid(object);
    if !given_uid.is_empty() && given_uid != stored_uid {
        return Err(Rejection::UidConflict {
            key,
            expected: given_uid.to_string(),
            actual: stored_uid.to_string(),
        });
    }

    let mut new = object.clone();
    let stored_metadata = meta::metadata(&stored).cloned().unwrap_or_default();
    let metadata = meta::metadata_mut(&mut new);
    for field in SYSTEM_METADATA {
        match stored_metadata.get(field) {
            Some(value) => metadata.insert(field.to_string(), value.clone()),
            None => metadata.remove(field),
        };
    }
    let fields = new
        .as_object_mut()
        .expect("objects with keys are JSON objects");
    match stored.get("status") {
        Some(status) => fields.insert("status".into(), status.clone()),
        None => fields.remove("status"),
    };

    let deleting = meta::deletion_timestamp(&stored).is_some();
    if deleting {
        let before = meta::finalizers(&stored);
        if let Some(added) = meta::finalizers(&new).iter().find(|f| !before.contains(f)) {
            return Err(Rejection::invalid(
                "metadata.finalizers",
                format!("{key} is being deleted: finalizer {added} cannot be added, only removed"),
            ));
        }
    }
    if meta::spec_differs(&stored, &new) {
        let generation = meta::generation(&stored) + 1;
        meta::metadata_mut(&mut new).insert("generation".into(), generation.into());
    }
    if new == *stored {
        return Ok(Outcome::Stored(stored));
    }

    // Deletion was waiting only for finalizers (no grace period pending): the last one is gone.
    if deleting && meta::finalizers(&new).is_empty() && meta::deletion_grace(&new) == 0 {
        return Ok(Outcome::Removed(delete::remove(txn, &key, new, now)));
    }
    let dropped_owners: Vec<String> = meta::owner_uids(&stored)
        .into_iter()
        .filter(|owner| !meta::owner_uids(&new).contains(owner))
        .map(str::to_string)
        .collect();
    let stored_now = txn.put(&key, new);
    for owner in dropped_owners {
        delete::release_foreground_owner(txn, &owner, now);
    }
    Ok(Outcome::Stored(stored_now))
}

pub(super) fn update_status(
    txn: &mut Txn<'_>,
    key: &ObjectKey,
    status: &Value,
    precondition: Option<Revision>,
) -> Result<Outcome, Rejection> {
    let stored = txn
        .get(key)
        .ok_or_else(|| Rejection::NotFound { key: key.clone() })?;
    check_resource_version(key, &stored, precondition)?;
    let mut new = (*stored).clone();
    let fields = new
        .as_object_mut()
        .expect("objects with keys are JSON objects");
    if status.is_null() {
        fields.remove("status");
    } else {
        fields.insert("status".into(), status.clone());
    }
    if new == *stored {
        return Ok(Outcome::Stored(stored));
    }
    Ok(Outcome::Stored(txn.put(key, new)))
}
