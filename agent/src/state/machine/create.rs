//! `Create`: store a new object and stamp its identity.

use serde_json::Value;

use super::meta;
use super::txn::Txn;
use crate::state::key::ObjectKey;
use crate::state::outcome::{Outcome, Rejection};
use crate::state::time::Timestamp;

pub(super) fn create(
    txn: &mut Txn<'_>,
    object: &Value,
    uid: &str,
    now: Timestamp,
) -> Result<Outcome, Rejection> {
    let key = ObjectKey::of(object)?;
    if txn.get(&key).is_some() {
        return Err(Rejection::AlreadyExists { key });
    }
    if uid.is_empty() {
        return Err(Rejection::invalid(
            "metadata.uid",
            "a create command must carry a generated uid",
        ));
    }
    if let Some(holder) = txn.find_uid(uid) {
        return Err(Rejection::invalid(
            "metadata.uid",
            format!("uid {uid} is already used by {holder}"),
        ));
    }
    let owners = meta::owner_uids(object);
    if !owners.is_empty() && owners.iter().all(|owner| txn.find_uid(owner).is_none()) {
        return Err(Rejection::invalid(
            "metadata.ownerReferences",
            format!(
                "no owner of {key} exists (uids {}): the object would be garbage-collected at once",
                owners.join(", ")
            ),
        ));
    }

    let mut object = object.clone();
    let metadata = meta::metadata_mut(&mut object);
    metadata.insert("uid".into(), Value::String(uid.to_string()));
    metadata.insert("creationTimestamp".into(), Value::String(now.to_rfc3339()));
    metadata.insert("generation".into(), 1.into());
    metadata.remove("deletionTimestamp");
    metadata.remove("deletionGracePeriodSeconds");
    Ok(Outcome::Stored(txn.put(&key, object)))
}
