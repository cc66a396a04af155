//! What the API server's per-kind "strategy" does on create and update besides defaulting:
//! identity (uid, creation time, generated names), the Job's generated selector, and what
//! an update carries over from the stored object.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    NamespaceStatus, PersistentVolumeClaimStatus, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};

use super::names::generate_name;
use super::object::Object;
use super::quantity::Quantity;

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
    if !kind_info_namespaced(object) {
        // As the API server does for cluster-scoped kinds, a namespace is dropped.
        object.metadata_mut().namespace = None;
    }
    let meta = object.metadata_mut();
    meta.uid = Some(context.uid.clone());
    meta.creation_timestamp = Some(Time(context.now));
    meta.generation = None;
    meta.resource_version = None;
    meta.deletion_timestamp = None;
    meta.deletion_grace_period_seconds = None;
    if tracks_generation(object) {
        object.metadata_mut().generation = Some(1);
    }
    reset_status(object);
    if let Object::Job(job) = object {
        generate_job_selector(job);
    }
}

/// A new object's status is the system's to write, not the client's (an exported manifest
/// carries the old object's status): it starts as Kubernetes starts it. Nodes keep theirs, as
/// in Kubernetes, because a node registers with its status.
fn reset_status(object: &mut Object) {
    match object {
        Object::Pod(pod) => {
            let qos_class = pod.spec.as_ref().map(qos_class);
            pod.status = Some(PodStatus {
                phase: Some("Pending".to_owned()),
                qos_class: qos_class.map(str::to_owned),
                ..Default::default()
            });
        }
        Object::Namespace(namespace) => {
            namespace.status = Some(NamespaceStatus {
                phase: Some("Active".to_owned()),
                ..Default::default()
            });
        }
        Object::PersistentVolumeClaim(claim) => {
            claim.status = Some(PersistentVolumeClaimStatus {
                phase: Some("Pending".to_owned()),
                ..Default::default()
            });
        }
        Object::Service(service) => service.status = None,
        Object::StatefulSet(set) => set.status = None,
        Object::DaemonSet(set) => set.status = None,
        Object::Job(job) => job.status = None,
        Object::CronJob(cron_job) => cron_job.status = None,
        Object::ConfigMap(_)
        | Object::Secret(_)
        | Object::Node(_)
        | Object::Event(_)
        | Object::EventsEvent(_)
        | Object::ControllerRevision(_) => {}
    }
}

/// A pod's quality-of-service class, as Kubernetes computes it (`GetPodQOS`) from the CPU and
/// memory requests and limits of all its containers (after defaulting).
pub fn qos_class(spec: &PodSpec) -> &'static str {
    let mut requests = BTreeMap::new();
    let mut limits = BTreeMap::new();
    let mut guaranteed = true;
    for container in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let resources = container.resources.as_ref();
        let nonzero = |map: Option<&BTreeMap<String, ApiQuantity>>| -> BTreeMap<String, Quantity> {
            map.into_iter()
                .flatten()
                .filter(|(name, _)| *name == "cpu" || *name == "memory")
                .filter_map(|(name, q)| Some((name.clone(), Quantity::parse(&q.0).ok()?)))
                .filter(|(_, q)| !q.is_zero())
                .collect()
        };
        let container_requests = nonzero(resources.and_then(|r| r.requests.as_ref()));
        let container_limits = nonzero(resources.and_then(|r| r.limits.as_ref()));
        if !(container_limits.contains_key("cpu") && container_limits.contains_key("memory")) {
            guaranteed = false;
        }
        for (name, quantity) in container_requests {
            let total = requests.entry(name).or_insert(Vec::new());
            total.push(quantity);
        }
        for (name, quantity) in container_limits {
            let total = limits.entry(name).or_insert(Vec::new());
            total.push(quantity);
        }
        // Guaranteed needs every container's requests to equal its limits.
        let same = |name: &str| {
            let request = resources
                .and_then(|r| r.requests.as_ref())
                .and_then(|m| m.get(name));
            let limit = resources
                .and_then(|r| r.limits.as_ref())
                .and_then(|m| m.get(name));
            match (request, limit) {
                (Some(request), Some(limit)) => {
                    Quantity::parse(&request.0).ok() == Quantity::parse(&limit.0).ok()
                }
                (None, Some(_)) => true,
                _ => false,
            }
        };
        if !(same("cpu") && same("memory")) {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
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
    carry_job_selector(old, new);
    carry_assignment_epoch(old, new);
    if !kind_info_namespaced(new) {
        new.metadata_mut().namespace = None;
    }
    let meta = new.metadata_mut();
    if meta.uid.is_none() {
        meta.uid = old_meta.uid.clone();
    }
    if meta.creation_timestamp.is_none() {
        meta.creation_timestamp = old_meta.creation_timestamp.clone();
    }
    // The generation is the system's: it counts changes of the spec, as Kubernetes counts them.
    if tracks_generation(new) {
        let spec_changed = old.to_value().get("spec") != new_spec(new).as_ref();
        let old_generation = old.metadata().generation.unwrap_or(1);
        new.metadata_mut().generation = Some(if spec_changed {
            old_generation + 1
        } else {
            old_generation
        });
    } else {
        new.metadata_mut().generation = None;
    }
}

/// A pod's assignment epoch (`berth.io/assignment-epoch`, the fencing token its claims'
/// owner files are checked against) is the scheduler's alone: it writes it in the binding,
/// which is not an API update. An update through the API keeps the stored value, so a client
/// can neither forge a newer epoch nor strip it.
fn carry_assignment_epoch(old: &Object, new: &mut Object) {
    use crate::claims::epoch::ASSIGNMENT_EPOCH;
    if !matches!(old, Object::Pod(_)) {
        return;
    }
    let stored = old
        .metadata()
        .annotations
        .as_ref()
        .and_then(|a| a.get(ASSIGNMENT_EPOCH))
        .cloned();
    let meta = new.metadata_mut();
    match stored {
        Some(epoch) => {
            meta.annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(ASSIGNMENT_EPOCH.to_owned(), epoch);
        }
        None => {
            if let Some(annotations) = meta.annotations.as_mut() {
                annotations.remove(ASSIGNMENT_EPOCH);
                if annotations.is_empty() {
                    meta.annotations = None;
                }
            }
        }
    }
}

fn kind_info_namespaced(object: &Object) -> bool {
    object.kind().info().namespaced
}

/// Kinds whose `metadata.generation` counts spec changes (controllers report
/// `status.observedGeneration` against it).
fn tracks_generation(object: &Object) -> bool {
    matches!(
        object,
        Object::Pod(_)
            | Object::StatefulSet(_)
            | Object::DaemonSet(_)
            | Object::Job(_)
            | Object::CronJob(_)
    )
}

fn new_spec(object: &Object) -> Option<serde_json::Value> {
    object.to_value().get("spec").cloned()
}

/// A re-applied Job manifest keeps the selector and pod labels generated at creation.
fn carry_job_selector(old: &Object, new: &mut Object) {
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
