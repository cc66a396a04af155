//! Claims (PersistentVolumeClaims) on this node: the directory that backs a claim, its
//! lifecycle, and whether a pod may use it here.
//!
//! A claim is a directory `<data-dir>/volumes/claims/<name>` ([`directory_name`]) on the node
//! that holds it. Its life:
//!
//! 1. Created (by a user, or by a StatefulSet from its `volumeClaimTemplates`): `Pending`,
//!    waiting for its first pod, as a `WaitForFirstConsumer` storage class does.
//! 2. The scheduler binds the first pod that uses it and pins the claim to that node
//!    (`volume.kubernetes.io/selected-node`).
//! 3. That node's [`node`] task takes it: the [`FINALIZER`], the directory, a project quota
//!    for `resources.requests.storage` where the filesystem can enforce one, then status
//!    `Bound` with its capacity. The kubelet prepares a pod's claim volumes (through
//!    [`volume_source`]) before any container starts; whichever of the two comes first
//!    creates the directory, and a quota set a moment later covers what is already inside.
//! 4. While bound, the task keeps `berth.io/used-bytes` current and applies a grown request.
//! 5. Deleted (explicitly, or by a StatefulSet retention policy the user set): once no pod
//!    that is not finished uses it, the task removes the directory and the finalizer.
//!
//! Invariant: a claim directory is removed only when its claim object is deleted.

pub mod decide;
pub mod epoch;
pub mod node;

use berth_runtime::volumes::VolumeSource;
use serde_json::Value;

use crate::state::State;

pub use crate::controllers::scheduler::SELECTED_NODE;

/// The finalizer that keeps a deleted claim until its directory is removed.
pub const FINALIZER: &str = "berth.io/claim-directory";
/// Bytes the claim's directory takes on disk (decimal), refreshed while it is bound.
pub const USED_BYTES: &str = "berth.io/used-bytes";
/// The claim directory's path on its node.
pub const DIRECTORY: &str = "berth.io/directory";
/// Whether the storage request is enforced, and if not, why (`enforced ...` or
/// `not enforced: ...`).
pub const QUOTA: &str = "berth.io/quota";
/// When the used bytes were last measured (RFC 3339).
pub const USED_AT: &str = "berth.io/used-bytes-at";
/// The pods that use the claim now (comma-separated), shown by `describe pvc`.
pub const USED_BY: &str = "berth.io/used-by";

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

/// The runtime volume source for claim `name` in `namespace`, for a pod on `node`: the claim
/// must exist, not be being deleted, and not be held by another node.
pub fn volume_source(
    state: &State,
    namespace: &str,
    name: &str,
    node: &str,
) -> Result<VolumeSource, ClaimProblem> {
    let pvc = state
        .get("PersistentVolumeClaim", namespace, name)
        .ok_or_else(|| ClaimProblem::NotFound(name.to_string()))?;
    check_usable(&pvc, name, node)?;
    Ok(VolumeSource::Claim {
        claim: directory_name(namespace, name),
    })
}

/// The checks of [`volume_source`] on a stored claim.
pub fn check_usable(pvc: &Value, name: &str, node: &str) -> Result<(), ClaimProblem> {
    if pvc
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        return Err(ClaimProblem::Deleting(name.to_string()));
    }
    let holder = pvc
        .pointer("/metadata/annotations/volume.kubernetes.io~1selected-node")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    match holder {
        Some(holder) if holder != node => Err(ClaimProblem::OtherNode {
            claim: name.to_string(),
            node: holder.to_string(),
        }),
        _ => Ok(()),
    }
}

/// The claim's directory name under `<data-dir>/volumes/claims/`: the claim's own name
/// (`<template>-<set>-<ordinal>` for a StatefulSet), prefixed with its namespace unless that
/// is `default`, so claims of two namespaces never share a directory (`_` cannot occur in
/// Kubernetes names, so `<namespace>_<name>` never collides with a claim of `default`).
pub fn directory_name(namespace: &str, name: &str) -> String {
    if namespace == "default" || namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}_{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_claim_is_usable_on_its_node_until_it_is_deleted() {
        let bound = json!({"metadata": {"annotations": {SELECTED_NODE: "n1"}}, "status": {"phase": "Bound"}});
        assert_eq!(check_usable(&bound, "data-web-0", "n1"), Ok(()));
        assert_eq!(
            check_usable(&bound, "data-web-0", "n2"),
            Err(ClaimProblem::OtherNode {
                claim: "data-web-0".into(),
                node: "n1".into()
            })
        );
        let pending = json!({"metadata": {"annotations": {SELECTED_NODE: "n1"}}, "status": {"phase": "Pending"}});
        assert_eq!(
            check_usable(&pending, "c", "n1"),
            Ok(()),
            "the kubelet may create the directory first"
        );
        let deleting = json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z", "annotations": {SELECTED_NODE: "n1"}},
                              "status": {"phase": "Bound"}});
        assert_eq!(
            check_usable(&deleting, "c", "n1"),
            Err(ClaimProblem::Deleting("c".into()))
        );
    }

    #[test]
    fn directory_names_keep_namespaces_apart() {
        assert_eq!(directory_name("default", "data-web-0"), "data-web-0");
        assert_eq!(directory_name("db", "data-web-0"), "db_data-web-0");
    }
}
