//! What the node's claim task does next for one claim: a pure function of what is stored
//! about the claim and the pods that use it.

use serde_json::Value;

use super::{DIRECTORY, FINALIZER, SELECTED_NODE};

/// What the decision needs to know about a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimFacts {
    pub deleting: bool,
    pub has_finalizer: bool,
    /// Pinned to this node by the scheduler.
    pub pinned_here: bool,
    /// `status.phase` is `Bound`.
    pub bound: bool,
    /// `spec.resources.requests.storage` as written.
    pub request: Option<String>,
    /// `status.capacity.storage`.
    pub capacity: Option<String>,
    /// The directory annotation, if set.
    pub directory: Option<String>,
    /// Pods that use the claim and have not finished.
    pub users: Vec<String>,
}

/// The next step for a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimStep {
    /// Put the finalizer and the directory annotation on the claim.
    Take,
    /// Create the directory, set its limit, then mark the claim Bound with its capacity.
    Provision,
    /// The request changed: set the new limit and capacity.
    Resize,
    /// Deleted and no longer used: remove the directory, then the finalizer.
    Remove,
    /// Deleted but still used by these pods: wait.
    WaitForPods(Vec<String>),
    Nothing,
}

/// The facts about `claim` for node `node`, given the pods of its namespace.
pub fn facts(claim: &Value, node: &str, pods: &[std::sync::Arc<Value>]) -> ClaimFacts {
    let str_at = |p: &str| claim.pointer(p).and_then(Value::as_str).map(str::to_string);
    let name = str_at("/metadata/name").unwrap_or_default();
    let annotation = |key: &str| {
        claim
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let users = pods
        .iter()
        .filter(|p| {
            !matches!(
                p.pointer("/status/phase").and_then(Value::as_str),
                Some("Succeeded" | "Failed")
            )
        })
        .filter(|p| {
            p.pointer("/spec/volumes")
                .and_then(Value::as_array)
                .is_some_and(|vs| {
                    vs.iter().any(|v| {
                        v.pointer("/persistentVolumeClaim/claimName")
                            .and_then(Value::as_str)
                            == Some(name.as_str())
                    })
                })
        })
        .filter_map(|p| {
            p.pointer("/metadata/name")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect();
    ClaimFacts {
        deleting: claim
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|t| !t.is_null()),
        has_finalizer: claim
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| f.iter().any(|f| f == FINALIZER)),
        pinned_here: annotation(SELECTED_NODE).as_deref() == Some(node),
        bound: str_at("/status/phase").as_deref() == Some("Bound"),
        request: str_at("/spec/resources/requests/storage"),
        capacity: str_at("/status/capacity/storage"),
        directory: annotation(DIRECTORY),
        users,
    }
}

/// The next step for a claim whose directory on this node is `directory`.
pub fn decide(facts: &ClaimFacts, directory: &str) -> ClaimStep {
    if facts.deleting {
        if !facts.has_finalizer {
            return ClaimStep::Nothing;
        }
        if !facts.users.is_empty() {
            return ClaimStep::WaitForPods(facts.users.clone());
        }
        return ClaimStep::Remove;
    }
    if !facts.pinned_here {
        return ClaimStep::Nothing;
    }
    if !facts.has_finalizer || facts.directory.as_deref() != Some(directory) {
        return ClaimStep::Take;
    }
    if !facts.bound {
        return ClaimStep::Provision;
    }
    if facts.request.is_some() && facts.capacity != facts.request {
        return ClaimStep::Resize;
    }
    ClaimStep::Nothing
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    const DIR: &str = "/var/lib/berth/volumes/claims/data-web-0";

    fn claim(extra: Value) -> Value {
        let mut c = json!({
            "metadata": {"name": "data-web-0", "annotations": {SELECTED_NODE: "n1", DIRECTORY: DIR}, "finalizers": [FINALIZER]},
            "spec": {"resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}}
        });
        crate::api::patch::merge_patch(&mut c, &extra);
        c
    }

    fn pod(name: &str, phase: &str) -> Arc<Value> {
        Arc::new(
            json!({"metadata": {"name": name}, "status": {"phase": phase},
            "spec": {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-web-0"}}]}}),
        )
    }

    fn step(c: Value, pods: &[Arc<Value>]) -> ClaimStep {
        decide(&facts(&c, "n1", pods), DIR)
    }

    #[test]
    fn a_claim_goes_through_take_provision_and_resize() {
        let fresh = claim(
            json!({"metadata": {"finalizers": null, "annotations": {DIRECTORY: null}}, "status": {"phase": "Pending", "capacity": null}}),
        );
        assert_eq!(step(fresh, &[]), ClaimStep::Take);
        let taken = claim(json!({"status": {"phase": "Pending", "capacity": null}}));
        assert_eq!(step(taken, &[]), ClaimStep::Provision);
        assert_eq!(step(claim(json!({})), &[]), ClaimStep::Nothing);
        let grown = claim(json!({"spec": {"resources": {"requests": {"storage": "2Gi"}}}}));
        assert_eq!(step(grown, &[]), ClaimStep::Resize);
    }

    #[test]
    fn claims_of_other_nodes_or_of_no_node_are_left_alone() {
        let elsewhere = claim(
            json!({"metadata": {"annotations": {SELECTED_NODE: "n2"}, "finalizers": null}, "status": {"phase": "Pending"}}),
        );
        assert_eq!(step(elsewhere, &[]), ClaimStep::Nothing);
        let waiting = claim(
            json!({"metadata": {"annotations": {SELECTED_NODE: null}, "finalizers": null}, "status": {"phase": "Pending"}}),
        );
        assert_eq!(step(waiting, &[]), ClaimStep::Nothing);
    }

    #[test]
    fn a_deleted_claim_waits_for_its_running_pods_then_goes() {
        let deleted = claim(json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}}));
        assert_eq!(
            step(
                deleted.clone(),
                &[pod("web-0", "Running"), pod("old", "Failed")]
            ),
            ClaimStep::WaitForPods(vec!["web-0".into()])
        );
        assert_eq!(
            step(deleted.clone(), &[pod("old", "Succeeded")]),
            ClaimStep::Remove
        );
        let released = claim(
            json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": null}}),
        );
        assert_eq!(step(released, &[]), ClaimStep::Nothing);
    }
}
