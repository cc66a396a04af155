//! Reading and writing the metadata fields the state machine owns.

use serde_json::{Map, Value};

use crate::state::time::Timestamp;

/// The finalizer Kubernetes uses to keep an owner until its dependents are gone.
pub const FOREGROUND_DELETION: &str = "foregroundDeletion";

/// Top-level fields whose change does not bump `metadata.generation`.
const NOT_SPEC: [&str; 4] = ["apiVersion", "kind", "metadata", "status"];

pub(super) fn metadata(object: &Value) -> Option<&Map<String, Value>> {
    object.get("metadata")?.as_object()
}

/// The metadata map of `object`, created when missing. `object` must be a JSON object (the
/// state machine only stores objects whose key could be read, which implies that).
pub(super) fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    let map = object
        .as_object_mut()
        .expect("stored objects are JSON objects");
    let metadata = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !metadata.is_object() {
        *metadata = Value::Object(Map::new());
    }
    metadata
        .as_object_mut()
        .expect("metadata was just made an object")
}

fn string_field<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    metadata(object)?.get(field)?.as_str()
}

pub(super) fn uid(object: &Value) -> &str {
    string_field(object, "uid").unwrap_or("")
}

pub(super) fn resource_version(object: &Value) -> &str {
    string_field(object, "resourceVersion").unwrap_or("")
}

pub(super) fn generation(object: &Value) -> i64 {
    metadata(object)
        .and_then(|metadata| metadata.get("generation"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

pub(super) fn deletion_timestamp(object: &Value) -> Option<Timestamp> {
    string_field(object, "deletionTimestamp").and_then(Timestamp::parse_rfc3339)
}

/// `deletionGracePeriodSeconds`, 0 when absent.
pub(super) fn deletion_grace(object: &Value) -> i64 {
    metadata(object)
        .and_then(|metadata| metadata.get("deletionGracePeriodSeconds"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

pub(super) fn set_deletion(object: &mut Value, at: Timestamp, grace_seconds: i64) {
    let metadata = metadata_mut(object);
    metadata.insert("deletionTimestamp".into(), Value::String(at.to_rfc3339()));
    metadata.insert("deletionGracePeriodSeconds".into(), grace_seconds.into());
}

pub(super) fn finalizers(object: &Value) -> Vec<&str> {
    metadata(object)
        .and_then(|metadata| metadata.get("finalizers"))
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

pub(super) fn has_finalizer(object: &Value, finalizer: &str) -> bool {
    finalizers(object).contains(&finalizer)
}

pub(super) fn add_finalizer(object: &mut Value, finalizer: &str) {
    let metadata = metadata_mut(object);
    let list = metadata
        .entry("finalizers")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(list) = list {
        list.push(Value::String(finalizer.to_string()));
    } else {
        *list = Value::Array(vec![Value::String(finalizer.to_string())]);
    }
}

/// Removes `finalizer`; drops the field when the list becomes empty.
pub(super) fn remove_finalizer(object: &mut Value, finalizer: &str) {
    let metadata = metadata_mut(object);
    if let Some(Value::Array(list)) = metadata.get_mut("finalizers") {
        list.retain(|item| item.as_str() != Some(finalizer));
        if list.is_empty() {
            metadata.remove("finalizers");
        }
    }
}

/// The uids named in `metadata.ownerReferences`, in order.
pub(super) fn owner_uids(object: &Value) -> Vec<&str> {
    metadata(object)
        .and_then(|metadata| metadata.get("ownerReferences"))
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|reference| reference.get("uid")?.as_str())
                .collect()
        })
        .unwrap_or_default()
}

/// Drops the owner references naming `owner_uid`; drops the field when none are left.
pub(super) fn remove_owner_reference(object: &mut Value, owner_uid: &str) {
    let metadata = metadata_mut(object);
    if let Some(Value::Array(list)) = metadata.get_mut("ownerReferences") {
        list.retain(|reference| reference.get("uid").and_then(Value::as_str) != Some(owner_uid));
        if list.is_empty() {
            metadata.remove("ownerReferences");
        }
    }
}

/// True when two versions of an object differ outside `apiVersion`, `kind`, `metadata` and
/// `status`: such a change bumps `metadata.generation`.
pub(super) fn spec_differs(old: &Value, new: &Value) -> bool {
    let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else {
        return old != new;
    };
    old.keys()
        .chain(new.keys())
        .filter(|field| !NOT_SPEC.contains(&field.as_str()))
        .any(|field| old.get(field) != new.get(field))
}

/// A Pod bound to a node that has not finished: deleting it needs the kubelet to stop it.
pub(super) fn is_running_bound_pod(object: &Value) -> bool {
    if object.get("kind").and_then(Value::as_str) != Some("Pod") {
        return false;
    }
    let bound = object
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|node| !node.is_empty());
    let finished = matches!(
        object.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    bound && !finished
}

/// The pod's `spec.terminationGracePeriodSeconds`, 30 when absent (as Kubernetes defaults it).
pub(super) fn pod_termination_grace(object: &Value) -> i64 {
    object
        .pointer("/spec/terminationGracePeriodSeconds")
        .and_then(Value::as_i64)
        .map(|grace| grace.max(0))
        .unwrap_or(30)
}
