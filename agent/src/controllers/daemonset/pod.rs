//! The pod a DaemonSet runs on a node (`NewPod` and `AddOrUpdateDaemonPodTolerations` in
//! Kubernetes' pkg/controller/daemon/util): the template's labels and annotations plus the
//! revision label, generated name `<set>-xxxxx`, the tolerations every daemon pod carries, and
//! bound to its node both as Kubernetes does (required node affinity on `metadata.name`) and
//! directly (`spec.nodeName`), so it starts on a cordoned or not-ready node without waiting for
//! the scheduler.

use serde_json::{Map, Value, json};

use crate::controllers::statefulset::identity::REVISION_LABEL;

/// The label Kubernetes puts on daemon pods with the set's generation.
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

/// The owner reference on everything the set makes.
pub fn controller_ref(set: &Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "name": set.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
        "uid": set.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// Every daemon pod tolerates these (key, effect); network-unavailable only with hostNetwork.
fn daemon_tolerations(host_network: bool) -> Vec<(&'static str, &'static str)> {
    let mut t = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        t.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    t
}

/// The pod of `set` made from `template` (the set's template) at revision hash `revision`,
/// for `node`; with `node` `None` the pod is not bound (used to judge which nodes fit).
pub fn new_pod(set: &Value, template: &Value, revision: &str, node: Option<&str>) -> Value {
    let set_name = set
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut labels = template
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    labels.insert(REVISION_LABEL.into(), json!(revision));
    if let Some(generation) = set.pointer("/metadata/generation").and_then(Value::as_i64) {
        labels.insert(
            TEMPLATE_GENERATION_LABEL.into(),
            json!(generation.to_string()),
        );
    }
    let mut metadata = Map::new();
    metadata.insert("generateName".into(), json!(format!("{set_name}-")));
    metadata.insert(
        "namespace".into(),
        set.pointer("/metadata/namespace")
            .cloned()
            .unwrap_or(json!("default")),
    );
    metadata.insert("labels".into(), Value::Object(labels));
    if let Some(annotations) = template
        .pointer("/metadata/annotations")
        .filter(|a| a.is_object())
    {
        metadata.insert("annotations".into(), annotations.clone());
    }
    metadata.insert("ownerReferences".into(), json!([controller_ref(set)]));

    let mut spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
    let host_network = spec
        .get("hostNetwork")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut tolerations: Vec<Value> = spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (key, effect) in daemon_tolerations(host_network) {
        let present = tolerations
            .iter()
            .any(|t| t["key"] == key && t["effect"] == effect && t["operator"] == "Exists");
        if !present {
            tolerations.push(json!({"key": key, "operator": "Exists", "effect": effect}));
        }
    }
    spec["tolerations"] = json!(tolerations);
    if let Some(node) = node {
        bind_to(&mut spec, node);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": Value::Object(metadata), "spec": spec})
}

/// Requires `node` by name (`ReplaceDaemonSetPodNodeNameNodeAffinity`): every node selector
/// term keeps its label expressions and gets `metadata.name In [node]` as its only field
/// requirement; and sets `spec.nodeName`.
fn bind_to(spec: &mut Value, node: &str) {
    let field = json!([{"key": "metadata.name", "operator": "In", "values": [node]}]);
    let terms = spec
        .pointer("/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let terms: Vec<Value> = if terms.is_empty() {
        vec![json!({"matchFields": field})]
    } else {
        terms
            .into_iter()
            .map(|mut t| {
                t["matchFields"] = field.clone();
                t
            })
            .collect()
    };
    if !spec["affinity"].is_object() {
        spec["affinity"] = json!({});
    }
    if !spec["affinity"]["nodeAffinity"].is_object() {
        spec["affinity"]["nodeAffinity"] = json!({});
    }
    spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] =
        json!({"nodeSelectorTerms": terms});
    spec["nodeName"] = json!(node);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> Value {
        json!({"metadata": {"name": "agent", "namespace": "mon", "uid": "ds-1", "generation": 2}})
    }

    #[test]
    fn a_daemon_pod_is_bound_to_its_node_and_tolerates_node_conditions() {
        let template = json!({"metadata": {"labels": {"app": "agent"}},
            "spec": {"containers": [{"name": "c", "image": "i"}],
                     "tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}],
                     "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                         {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}],
                          "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["other"]}]}]}}}}});
        let pod = new_pod(&set(), &template, "abc", Some("n1"));
        assert_eq!(pod["metadata"]["generateName"], "agent-");
        assert_eq!(pod["metadata"]["namespace"], "mon");
        assert_eq!(
            pod["metadata"]["labels"],
            json!({"app": "agent", "controller-revision-hash": "abc", "pod-template-generation": "2"})
        );
        assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "DaemonSet");
        assert_eq!(pod["spec"]["nodeName"], "n1");
        let term = &pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0];
        assert_eq!(
            term["matchFields"],
            json!([{"key": "metadata.name", "operator": "In", "values": ["n1"]}])
        );
        assert_eq!(term["matchExpressions"][0]["key"], "disk");
        let tolerations = pod["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(
            tolerations.len(),
            6,
            "the user's unschedulable toleration is not doubled: {tolerations:?}"
        );
        assert!(tolerations.iter().any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute"));
    }

    #[test]
    fn host_network_pods_also_tolerate_an_unavailable_network() {
        let template =
            json!({"spec": {"hostNetwork": true, "containers": [{"name": "c", "image": "i"}]}});
        let pod = new_pod(&set(), &template, "abc", None);
        assert!(pod["spec"].get("nodeName").is_none());
        assert!(
            pod["spec"]["tolerations"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["key"] == "node.kubernetes.io/network-unavailable")
        );
    }
}
