//! A StatefulSet pod's identity, as small pure functions: its name and ordinal, its labels,
//! hostname and subdomain, and the names of its claims (`getPodName`, `getOrdinal`,
//! `getPersistentVolumeClaimName`, `newStatefulSetPod` in Kubernetes).

use serde_json::{Map, Value, json};

/// The label naming the pod (`<set>-<ordinal>`), which a Service can select on.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label holding the pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// The label holding the name of the revision the pod was made from.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// The name of the pod with `ordinal`: `<set>-<ordinal>`.
pub fn pod_name(set: &str, ordinal: i32) -> String {
    format!("{set}-{ordinal}")
}

/// The ordinal of pod `pod` of set `set`, if the name has the form `<set>-<ordinal>` with the
/// ordinal written as Kubernetes writes it (decimal, no sign, no leading zero).
pub fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    let digits = pod.strip_prefix(set)?.strip_prefix('-')?;
    parse_ordinal(digits)
}

fn parse_ordinal(digits: &str) -> Option<i32> {
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if canonical { digits.parse().ok() } else { None }
}

/// The claim of template `template` for `ordinal`: `<template>-<set>-<ordinal>`.
pub fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

/// The ordinal of claim `claim` made from template `template` of set `set`, if any.
pub fn claim_ordinal(template: &str, set: &str, claim: &str) -> Option<i32> {
    let rest = claim.strip_prefix(template)?.strip_prefix('-')?;
    ordinal_of(set, rest)
}

/// The labels only the controller sets: name, ordinal and revision.
pub fn identity_labels(set: &str, ordinal: i32, revision: &str) -> Vec<(&'static str, String)> {
    vec![
        (POD_NAME_LABEL, pod_name(set, ordinal)),
        (POD_INDEX_LABEL, ordinal.to_string()),
        (REVISION_LABEL, revision.to_string()),
    ]
}

/// Whether a stored pod carries the identity labels of `ordinal` (the revision label is
/// checked separately: a pod keeps the revision it was made from).
pub fn identity_matches(pod: &Value, set: &str, ordinal: i32) -> bool {
    let label = |key: &str| {
        pod.pointer("/metadata/labels")
            .and_then(|l| l.get(key))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    label(POD_NAME_LABEL).as_deref() == Some(pod_name(set, ordinal).as_str())
        && label(POD_INDEX_LABEL).as_deref() == Some(ordinal.to_string().as_str())
}

/// The owner reference every object the controller makes carries.
pub fn controller_ref(set: &Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": set.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
        "uid": set.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The pod for `ordinal` made from pod template `template` (the set's own template or an
/// earlier revision's) labelled with `revision`: the template's labels and annotations, the
/// identity labels, `hostname` = the pod name, `subdomain` = `spec.serviceName`, and one
/// `persistentVolumeClaim` volume per claim template (replacing a template volume of that
/// name), owned by the set.
pub fn new_pod(set: &Value, template: &Value, revision: &str, ordinal: i32) -> Value {
    let set_name = str_at(set, "/metadata/name");
    let namespace = str_at(set, "/metadata/namespace");
    let name = pod_name(set_name, ordinal);
    let mut labels = template
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (key, value) in identity_labels(set_name, ordinal, revision) {
        labels.insert(key.to_string(), Value::String(value));
    }
    let mut metadata = Map::new();
    metadata.insert("name".into(), json!(name));
    metadata.insert("namespace".into(), json!(namespace));
    metadata.insert("labels".into(), Value::Object(labels));
    if let Some(annotations) = template
        .pointer("/metadata/annotations")
        .filter(|a| a.is_object())
    {
        metadata.insert("annotations".into(), annotations.clone());
    }
    metadata.insert("ownerReferences".into(), json!([controller_ref(set)]));

    let mut spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
    spec["hostname"] = json!(name);
    let service = str_at(set, "/spec/serviceName");
    if !service.is_empty() {
        spec["subdomain"] = json!(service);
    }
    let claim_templates = set
        .pointer("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !claim_templates.is_empty() {
        let mut volumes: Vec<Value> = spec
            .get("volumes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for claim in &claim_templates {
            let template_name = str_at(claim, "/metadata/name");
            volumes.retain(|v| v.get("name").and_then(Value::as_str) != Some(template_name));
            volumes.push(json!({
                "name": template_name,
                "persistentVolumeClaim": {"claimName": claim_name(template_name, set_name, ordinal)},
            }));
        }
        spec["volumes"] = Value::Array(volumes);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": Value::Object(metadata), "spec": spec})
}

/// The claim for `ordinal` made from claim template `template`: the template's spec, its
/// labels plus the set's `matchLabels` (as Kubernetes does, so the set finds its claims).
/// Claims are not owned by the set: they outlive it unless a retention policy says otherwise.
pub fn new_claim(set: &Value, template: &Value, ordinal: i32) -> Value {
    let set_name = str_at(set, "/metadata/name");
    let namespace = str_at(set, "/metadata/namespace");
    let template_name = str_at(template, "/metadata/name");
    let mut labels = template
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(selector) = set
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
    {
        for (key, value) in selector {
            labels.insert(key.clone(), value.clone());
        }
    }
    let mut metadata = Map::new();
    metadata.insert(
        "name".into(),
        json!(claim_name(template_name, set_name, ordinal)),
    );
    metadata.insert("namespace".into(), json!(namespace));
    metadata.insert("labels".into(), Value::Object(labels));
    if let Some(annotations) = template
        .pointer("/metadata/annotations")
        .filter(|a| a.is_object())
    {
        metadata.insert("annotations".into(), annotations.clone());
    }
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": Value::Object(metadata),
        "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_are_read_only_from_canonical_names() {
        assert_eq!(ordinal_of("web", "web-0"), Some(0));
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        assert_eq!(ordinal_of("web", "web-01"), None);
        assert_eq!(ordinal_of("web", "web--1"), None);
        assert_eq!(ordinal_of("web", "web-"), None);
        assert_eq!(ordinal_of("web", "web-x"), None);
        assert_eq!(ordinal_of("web", "webx-1"), None);
        assert_eq!(ordinal_of("web", "web-a-1"), None);
        assert_eq!(ordinal_of("web", "web-99999999999"), None);
        assert_eq!(ordinal_of("web-a", "web-a-3"), Some(3));
    }

    #[test]
    fn claim_names_join_template_set_and_ordinal() {
        assert_eq!(claim_name("data", "web", 2), "data-web-2");
        assert_eq!(claim_ordinal("data", "web", "data-web-2"), Some(2));
        assert_eq!(claim_ordinal("data", "web", "data-web2-2"), None);
        assert_eq!(claim_ordinal("data", "web", "logs-web-2"), None);
    }

    fn set() -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "db", "uid": "u-1"},
            "spec": {
                "serviceName": "web-svc",
                "selector": {"matchLabels": {"app": "web"}},
                "volumeClaimTemplates": [{
                    "metadata": {"name": "data", "labels": {"tier": "storage"}},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
                }]
            }
        })
    }

    #[test]
    fn a_new_pod_has_its_identity_claims_and_owner() {
        let template = json!({
            "metadata": {"labels": {"app": "web"}, "annotations": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}],
                     "volumes": [{"name": "data", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]}
        });
        let pod = new_pod(&set(), &template, "web-abc", 2);
        assert_eq!(pod["metadata"]["name"], "web-2");
        assert_eq!(pod["metadata"]["namespace"], "db");
        assert_eq!(pod["metadata"]["labels"]["app"], "web");
        assert_eq!(pod["metadata"]["labels"][POD_NAME_LABEL], "web-2");
        assert_eq!(pod["metadata"]["labels"][POD_INDEX_LABEL], "2");
        assert_eq!(pod["metadata"]["labels"][REVISION_LABEL], "web-abc");
        assert_eq!(pod["metadata"]["annotations"]["a"], "b");
        assert_eq!(pod["metadata"]["ownerReferences"][0]["uid"], "u-1");
        assert_eq!(pod["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(pod["spec"]["hostname"], "web-2");
        assert_eq!(pod["spec"]["subdomain"], "web-svc");
        let volumes = pod["spec"]["volumes"].as_array().unwrap();
        assert_eq!(
            volumes.len(),
            2,
            "the claim replaces the template volume of its name: {volumes:?}"
        );
        assert!(volumes.contains(
            &json!({"name": "data", "persistentVolumeClaim": {"claimName": "data-web-2"}})
        ));
        assert!(identity_matches(&pod, "web", 2));
        assert!(!identity_matches(&pod, "web", 3));
    }

    #[test]
    fn a_new_claim_carries_the_set_selector_and_no_owner() {
        let claim = new_claim(&set(), &set()["spec"]["volumeClaimTemplates"][0], 1);
        assert_eq!(claim["metadata"]["name"], "data-web-1");
        assert_eq!(claim["metadata"]["namespace"], "db");
        assert_eq!(
            claim["metadata"]["labels"],
            json!({"tier": "storage", "app": "web"})
        );
        assert!(claim["metadata"].get("ownerReferences").is_none());
        assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "1Gi");
    }
}
