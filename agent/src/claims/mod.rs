//! Claims (PersistentVolumeClaims) on this node: the directory that backs a claim, and
//! whether a pod may use it here. The StatefulSet issue grows this into the claim lifecycle
//! (status, capacity and quotas, bytes used, retention).

use berth_runtime::volumes::VolumeSource;
use serde_json::Value;

use crate::state::State;

/// Why a pod cannot mount a claim (yet): shown as a FailedMount event and the pod waits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimProblem {
    #[error("persistentvolumeclaim \"{0}\" not found")]
    NotFound(String),
    #[error("persistentvolumeclaim \"{claim}\" is held by node {node}, not this node")]
    OtherNode { claim: String, node: String },
    #[error("persistentvolumeclaim \"{0}\" is being deleted")]
    Deleting(String),
}

/// The runtime volume source for claim `name` in `namespace`, for a pod on `node`.
pub fn volume_source(state: &State, namespace: &str, name: &str, node: &str) -> Result<VolumeSource, ClaimProblem> {
    let pvc = state.get("PersistentVolumeClaim", namespace, name).ok_or_else(|| ClaimProblem::NotFound(name.to_string()))?;
    if pvc.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null()) {
        return Err(ClaimProblem::Deleting(name.to_string()));
    }
    let holder = pvc
        .pointer("/metadata/annotations/volume.kubernetes.io~1selected-node")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    if let Some(holder) = holder {
        if holder != node {
            return Err(ClaimProblem::OtherNode { claim: name.to_string(), node: holder.to_string() });
        }
    }
    Ok(VolumeSource::Claim { claim: directory_name(namespace, name) })
}

/// The claim's directory name under `<data-dir>/volumes/claims/`: the claim's own name
/// (`<template>-<set>-<ordinal>` for a StatefulSet), prefixed with its namespace unless that
/// is `default`, so claims of two namespaces never share a directory (`_` cannot occur in
/// Kubernetes names, so `<namespace>_<name>` never collides with a claim of `default`).
pub fn directory_name(namespace: &str, name: &str) -> String {
    if namespace == "default" || namespace.is_empty() { name.to_string() } else { format!("{namespace}_{name}") }
}
