//! What the API server's per-kind "strategy" does on create and update besides defaulting:
//! identity (uid, creation time, generated names), the Job's generated selector, and what
//! an update carries over from the stored object.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};

use super::names::generate_name;
use super::object::Object;

/// Label the generated Job selector matches (the Job's uid).
pub const JOB_CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
/// Label carrying the Job's name on its pods.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// Legacy form of [`JOB_CONTROLLER_UID_LABEL`], still set by Kubernetes.
pub const LEGACY_JOB_CONTROLLER_UID_LABEL: &str = "controller-uid";
/// Legacy form of [`JOB_NAME_LABEL`], still set by Kubernetes.
pub const LEGACY_JOB_NAME_LABEL: &str = "job-name";

/// The identity a new object gets, chosen by the caller so that applying a create command
/// is deterministic.
#[derive(Clone, Debug)]
pub struct CreateContext {
    /// The uid to give the object.
    pub uid: String,
    /// The creation time.
    pub now: k8s_openapi::jiff::Timestamp,
    /// Randomness for `generateName` (see [`generate_name`]).
    pub random: u64,
}

/// Prepares a decoded, defaulted object for creation: fills in `name` from `generateName`,
/// sets uid, creationTimestamp and generation, clears what clients may not set
/// (resourceVersion, deletion fields), and generates a Job's selector and pod labels.
pub fn prepare_for_create(object: &mut Object, context: &CreateContext) {
    let meta = object.metadata_mut();
    if meta.name.as_deref().is_none_or(str::is_empty)
        && let Some(base) = meta.generate_name.as_deref().filter(|b| !b.is_empty())
    {
        meta.name = Some(generate_name(base, context.random));
    }
    meta.uid = Some(context.uid.clone());
    meta.creation_timestamp = Some(Time(context.now));
    meta.generation = Some(1);
    meta.resource_version = None;
    meta.deletion_timestamp = None;
    meta.deletion_grace_period_seconds = None;
    if let Object::Job(job) = object {
        generate_job_selector(job);
    }
}

/// The selector and pod labels of a Job that does not set `manualSelector: true`: the pods
/// carry the Job's name and uid, and the selector matches the uid.
pub fn generate_job_selector(job: &mut Job) {
    let name = job.metadata.name.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let Some(spec) = job.spec.as_mut() else {
        return;
    };
    if spec.manual_selector == Some(true) {
        return;
    }
    let labels = spec
        .template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(BTreeMap::new);
    // A label the user already set is kept; validation then reports a mismatch.
    for key in [LEGACY_JOB_NAME_LABEL, JOB_NAME_LABEL] {
        labels.entry(key.to_owned()).or_insert_with(|| name.clone());
    }
    for key in [LEGACY_JOB_CONTROLLER_UID_LABEL, JOB_CONTROLLER_UID_LABEL] {
        labels.entry(key.to_owned()).or_insert_with(|| uid.clone());
    }
    let selector = spec.selector.get_or_insert_with(LabelSelector::default);
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .entry(JOB_CONTROLLER_UID_LABEL.to_owned())
        .or_insert(uid);
}

/// Prepares a decoded, defaulted replacement of `old`: identity fields the client left out
/// are kept from the stored object (a re-applied manifest has no uid), and a Job keeps its
/// generated selector and pod labels.
pub fn prepare_for_update(old: &Object, new: &mut Object) {
    let old_meta = old.metadata();
    let meta = new.metadata_mut();
    if meta.uid.is_none() {
        meta.uid = old_meta.uid.clone();
    }
    if meta.creation_timestamp.is_none() {
        meta.creation_timestamp = old_meta.creation_timestamp.clone();
    }
    if meta.generation.is_none() {
        meta.generation = old_meta.generation;
    }
    if let (Object::Job(old_job), Object::Job(new_job)) = (old, new) {
        let manual = new_job.spec.as_ref().and_then(|s| s.manual_selector) == Some(true);
        let old_spec = old_job.spec.as_ref();
        if let (false, Some(spec)) = (manual, new_job.spec.as_mut()) {
            if spec.selector.is_none() {
                spec.selector = old_spec.and_then(|s| s.selector.clone());
            }
            let old_labels = old_spec
                .and_then(|s| s.template.metadata.as_ref())
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            let labels = spec
                .template
                .metadata
                .get_or_insert_with(Default::default)
                .labels
                .get_or_insert_with(BTreeMap::new);
            for key in [
                LEGACY_JOB_NAME_LABEL,
                JOB_NAME_LABEL,
                LEGACY_JOB_CONTROLLER_UID_LABEL,
                JOB_CONTROLLER_UID_LABEL,
            ] {
                if let Some(value) = old_labels.get(key) {
                    labels
                        .entry(key.to_owned())
                        .or_insert_with(|| value.clone());
                }
            }
        }
    }
}

/// A manifest's namespace differs from the namespace of the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the namespace of the provided object ({object}) does not match the namespace sent on the request ({request})"
)]
pub struct NamespaceMismatch {
    /// The namespace in the manifest.
    pub object: String,
    /// The namespace of the request (`-n`, or the default).
    pub request: String,
}

/// Gives a namespaced manifest without a namespace the request's namespace, as the API server
/// does; a manifest naming another namespace is an error. Cluster-scoped and unknown kinds are
/// left alone (decoding reports the latter).
pub fn fill_namespace(
    manifest: &mut serde_json::Value,
    namespace: &str,
) -> Result<(), NamespaceMismatch> {
    let api_version = manifest
        .get("apiVersion")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let kind = manifest.get("kind").and_then(|v| v.as_str()).unwrap_or("");
    let Ok(kind) = super::Kind::from_type(api_version, kind) else {
        return Ok(());
    };
    if !kind.info().namespaced {
        return Ok(());
    }
    let Some(object) = manifest.as_object_mut() else {
        return Ok(());
    };
    let metadata = object
        .entry("metadata")
        .or_insert_with(|| serde_json::Value::Object(Default::default()));
    let Some(metadata) = metadata.as_object_mut() else {
        return Ok(());
    };
    match metadata.get("namespace").and_then(|v| v.as_str()) {
        Some(existing) if !existing.is_empty() && existing != namespace => Err(NamespaceMismatch {
            object: existing.to_owned(),
            request: namespace.to_owned(),
        }),
        _ => {
            metadata.insert(
                "namespace".to_owned(),
                serde_json::Value::String(namespace.to_owned()),
            );
            Ok(())
        }
    }
}
