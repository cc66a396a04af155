//! `Delete`: finalizers, graceful pod deletion, and the garbage collection of dependents.
//!
//! Kubernetes splits this between the API server (deletionTimestamp, grace periods) and the
//! garbage collector (dependents). berth does both inside the one command, so a deletion and
//! its cascade are a single atomic, replicated change.

use std::sync::Arc;

use serde_json::Value;

use super::check_resource_version;
use super::meta::{self, FOREGROUND_DELETION};
use super::txn::Txn;
use crate::state::Revision;
use crate::state::command::Propagation;
use crate::state::key::ObjectKey;
use crate::state::outcome::{Outcome, Rejection};
use crate::state::time::Timestamp;

/// What the stored object must match for a delete to proceed.
pub(super) struct Preconditions<'c> {
    pub(super) uid: Option<&'c str>,
    pub(super) resource_version: Option<Revision>,
}

pub(super) fn delete(
    txn: &mut Txn<'_>,
    key: &ObjectKey,
    preconditions: Preconditions<'_>,
    grace_period_seconds: Option<i64>,
    propagation: Propagation,
    now: Timestamp,
) -> Result<Outcome, Rejection> {
    let stored = txn
        .get(key)
        .ok_or_else(|| Rejection::NotFound { key: key.clone() })?;
    check_resource_version(key, &stored, preconditions.resource_version)?;
    if let Some(expected) = preconditions.uid
        && meta::uid(&stored) != expected
    {
        return Err(Rejection::UidConflict {
            key: key.clone(),
            expected: expected.to_string(),
            actual: meta::uid(&stored).to_string(),
        });
    }
    if let Some(grace) = grace_period_seconds
        && grace < 0
    {
        return Err(Rejection::invalid(
            "gracePeriodSeconds",
            format!("must not be negative, got {grace}"),
        ));
    }
    delete_object(txn, key, stored, grace_period_seconds, propagation, now);
    Ok(match txn.get(key) {
        Some(object) => Outcome::Terminating(object),
        None => Outcome::Removed(txn.removed(key).expect("a deleted object was removed")),
    })
}

/// Deletes the stored object `key` by the rules; never fails (preconditions were checked).
fn delete_object(
    txn: &mut Txn<'_>,
    key: &ObjectKey,
    stored: Arc<Value>,
    grace_period_seconds: Option<i64>,
    propagation: Propagation,
    now: Timestamp,
) {
    let uid = meta::uid(&stored).to_string();
    if propagation == Propagation::Orphan {
        for dependent in txn.dependents(&uid) {
            if let Some(object) = txn.get(&dependent) {
                let mut object = (*object).clone();
                meta::remove_owner_reference(&mut object, &uid);
                txn.put(&dependent, object);
            }
        }
    }
    let grace = if meta::is_running_bound_pod(&stored) {
        grace_period_seconds.unwrap_or_else(|| meta::pod_termination_grace(&stored))
    } else {
        0
    };
    let foreground = propagation == Propagation::Foreground && !txn.dependents(&uid).is_empty();

    let mut object = (*stored).clone();
    let mut changed = false;
    // Only the delete that starts a foreground deletion walks the dependents: a later one (or
    // an ownership cycle leading back here) finds them already being deleted.
    let start_foreground = foreground && !meta::has_finalizer(&object, FOREGROUND_DELETION);
    if start_foreground {
        meta::add_finalizer(&mut object, FOREGROUND_DELETION);
        changed = true;
    }
    let has_finalizers = !meta::finalizers(&object).is_empty();
    match meta::deletion_timestamp(&object) {
        None if grace > 0 || has_finalizers => {
            meta::set_deletion(&mut object, now.plus_seconds(grace), grace);
            let generation = meta::generation(&object) + 1;
            meta::metadata_mut(&mut object).insert("generation".into(), generation.into());
            changed = true;
        }
        None => {}
        Some(deadline) => {
            // Already terminating: a graceful deletion may be shortened, never lengthened.
            let pending = meta::deletion_grace(&object);
            let shortened = now.plus_seconds(grace);
            if pending > 0 && grace < pending && (grace == 0 || shortened < deadline) {
                meta::set_deletion(&mut object, shortened.min(deadline), grace);
                changed = true;
            }
        }
    }

    let terminating = meta::deletion_timestamp(&object).is_some();
    if meta::finalizers(&object).is_empty() && (!terminating || meta::deletion_grace(&object) == 0)
    {
        remove(txn, key, object, now);
        return;
    }
    if changed {
        txn.put(key, object);
    }
    if start_foreground {
        for dependent in txn.dependents(&uid) {
            collect_dependent(txn, &dependent, &uid, Propagation::Foreground, now);
        }
        release_foreground_owner(txn, &uid, now);
    }
}

/// Removes `key` (whose last state is `last`), then deletes the dependents it leaves behind and
/// releases owners that waited for it. Returns the removed object.
pub(super) fn remove(
    txn: &mut Txn<'_>,
    key: &ObjectKey,
    last: Value,
    now: Timestamp,
) -> Arc<Value> {
    let removed = txn.remove(key, last);
    let uid = meta::uid(&removed);
    for dependent in txn.dependents(uid) {
        collect_dependent(txn, &dependent, uid, Propagation::Background, now);
    }
    for owner in meta::owner_uids(&removed) {
        release_foreground_owner(txn, owner, now);
    }
    removed
}

/// Garbage-collects `dependent` whose owner `owner_uid` is going away: if another owner is
/// alive (exists and is not waiting for its own dependents), only the reference is dropped;
/// otherwise the dependent is deleted with `propagation`.
fn collect_dependent(
    txn: &mut Txn<'_>,
    dependent: &ObjectKey,
    owner_uid: &str,
    propagation: Propagation,
    now: Timestamp,
) {
    let Some(object) = txn.get(dependent) else {
        return;
    };
    let other_owner_alive = meta::owner_uids(&object)
        .into_iter()
        .filter(|owner| *owner != owner_uid)
        .any(|owner| {
            txn.find_uid(owner)
                .and_then(|key| txn.get(&key))
                .is_some_and(|owner| {
                    meta::deletion_timestamp(&owner).is_none()
                        || !meta::has_finalizer(&owner, FOREGROUND_DELETION)
                })
        });
    if other_owner_alive {
        let mut object = (*object).clone();
        meta::remove_owner_reference(&mut object, owner_uid);
        txn.put(dependent, object);
    } else if meta::deletion_timestamp(&object).is_none() || propagation == Propagation::Foreground
    {
        delete_object(txn, dependent, object, None, propagation, now);
    }
}

/// An owner in foreground deletion is removed once it has no dependents left: its
/// `foregroundDeletion` finalizer is dropped, and it is removed if no other finalizer remains.
pub(super) fn release_foreground_owner(txn: &mut Txn<'_>, owner_uid: &str, now: Timestamp) {
    let Some(key) = txn.find_uid(owner_uid) else {
        return;
    };
    let Some(owner) = txn.get(&key) else {
        return;
    };
    if meta::deletion_timestamp(&owner).is_none()
        || !meta::has_finalizer(&owner, FOREGROUND_DELETION)
        || !txn.dependents(owner_uid).is_empty()
    {
        return;
    }
    let mut owner = (*owner).clone();
    meta::remove_finalizer(&mut owner, FOREGROUND_DELETION);
    if meta::finalizers(&owner).is_empty() && meta::deletion_grace(&owner) == 0 {
        remove(txn, &key, owner, now);
    } else {
        txn.put(&key, owner);
    }
}
