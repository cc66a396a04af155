//! Update validation: what may change between the stored object and its replacement, as
//! Kubernetes' `Validate*Update` functions decide, with berth's two StatefulSet relaxations
//! (claim templates may grow their storage request; podManagementPolicy may change).

use k8s_openapi::api::apps::v1::StatefulSetSpec;
use k8s_openapi::api::core::v1::{PodSpec, Toleration};

use super::meta::{immutable, validate_object_meta_update};
use crate::objects::field::{BadValue, FieldError, FieldPath};
use crate::objects::object::Object;
use crate::objects::quantity::Quantity;

/// The Kubernetes list of what a pod update may change.
const POD_UPDATABLE: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Errors for changes the kind does not allow. Both objects are already defaulted; `new` has
/// passed create validation separately.
pub fn validate_update_changes(old: &Object, new: &Object) -> Vec<FieldError> {
    let mut errors =
        validate_object_meta_update(new.metadata(), old.metadata(), &FieldPath::new("metadata"));
    match (old, new) {
        (Object::Pod(old), Object::Pod(new)) => {
            errors.extend(validate_pod_update(old.spec.as_ref(), new.spec.as_ref()));
        }
        (Object::Service(old), Object::Service(new)) => {
            let old_ip = old.spec.as_ref().and_then(|s| s.cluster_ip.clone());
            let new_ip = new.spec.as_ref().and_then(|s| s.cluster_ip.clone());
            // An update that leaves the field out keeps the stored value.
            if new_ip.is_some() {
                errors.extend(immutable(
                    &new_ip,
                    &old_ip,
                    BadValue::from(new_ip.clone().unwrap_or_default()),
                    &FieldPath::new("spec").child("clusterIP"),
                ));
            }
        }
        (Object::ConfigMap(old), Object::ConfigMap(new)) if old.immutable == Some(true) => {
            if new.immutable != Some(true) {
                errors.push(immutable_when_set("immutable"));
            }
            if new.data != old.data {
                errors.push(immutable_when_set("data"));
            }
            if new.binary_data != old.binary_data {
                errors.push(immutable_when_set("binaryData"));
            }
        }
        (Object::Secret(old), Object::Secret(new)) => {
            errors.extend(immutable(
                &new.type_,
                &old.type_,
                BadValue::from(new.type_.clone().unwrap_or_default()),
                &FieldPath::new("type"),
            ));
            if old.immutable == Some(true) {
                if new.immutable != Some(true) {
                    errors.push(immutable_when_set("immutable"));
                }
                if new.data != old.data {
                    errors.push(immutable_when_set("data"));
                }
            }
        }
        (Object::PersistentVolumeClaim(old), Object::PersistentVolumeClaim(new)) => {
            let spec_path = FieldPath::new("spec");
            let (Some(old_spec), Some(new_spec)) = (old.spec.as_ref(), new.spec.as_ref()) else {
                return errors;
            };
            let mut old_rest = old_spec.clone();
            let mut new_rest = new_spec.clone();
            let old_storage = storage(old_rest.resources.as_mut());
            let new_storage = storage(new_rest.resources.as_mut());
            old_rest.volume_attributes_class_name = None;
            new_rest.volume_attributes_class_name = None;
            if old_rest != new_rest {
                errors.push(FieldError::forbidden(
                    &spec_path,
                    "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
                ));
            }
            errors.extend(check_storage_growth(
                old_storage.as_deref(),
                new_storage.as_deref(),
                &spec_path
                    .child("resources")
                    .child("requests")
                    .key("storage"),
            ));
        }
        (Object::StatefulSet(old), Object::StatefulSet(new)) => {
            if let (Some(old_spec), Some(new_spec)) = (old.spec.as_ref(), new.spec.as_ref()) {
                errors.extend(validate_stateful_set_update(old_spec, new_spec));
            }
        }
        (Object::DaemonSet(old), Object::DaemonSet(new)) => {
            let old_selector = old.spec.as_ref().map(|s| &s.selector);
            let new_selector = new.spec.as_ref().map(|s| &s.selector);
            errors.extend(immutable(
                &new_selector,
                &old_selector,
                BadValue::json(&new_selector),
                &FieldPath::new("spec").child("selector"),
            ));
        }
        (Object::Job(old_job), Object::Job(new_job)) => {
            if let (Some(old), Some(new)) = (old_job.spec.as_ref(), new_job.spec.as_ref()) {
                let spec_path = FieldPath::new("spec");
                errors.extend(immutable(
                    &new.selector,
                    &old.selector,
                    BadValue::json(&new.selector),
                    &spec_path.child("selector"),
                ));
                errors.extend(immutable(
                    &new.completion_mode,
                    &old.completion_mode,
                    BadValue::from(new.completion_mode.clone().unwrap_or_default()),
                    &spec_path.child("completionMode"),
                ));
                errors.extend(immutable(
                    &new.pod_failure_policy,
                    &old.pod_failure_policy,
                    BadValue::json(&new.pod_failure_policy),
                    &spec_path.child("podFailurePolicy"),
                ));
                errors.extend(immutable(
                    &new.backoff_limit_per_index,
                    &old.backoff_limit_per_index,
                    BadValue::json(&new.backoff_limit_per_index),
                    &spec_path.child("backoffLimitPerIndex"),
                ));
                let indexed = new.completion_mode.as_deref() == Some("Indexed");
                if new.completions != old.completions {
                    // Elastic indexed Jobs may change completions together with parallelism.
                    if !indexed {
                        errors.push(FieldError::invalid(
                            &spec_path.child("completions"),
                            BadValue::json(&new.completions),
                            "field is immutable",
                        ));
                    } else if new.completions.is_some() && new.completions != new.parallelism {
                        errors.push(FieldError::invalid(
                            &spec_path.child("completions"),
                            BadValue::json(&new.completions),
                            "can only be modified in tandem with spec.parallelism",
                        ));
                    }
                }
                // A suspended Job that never started may change its pod template's scheduling
                // directives (node affinity, node selector, tolerations, labels, annotations).
                let never_started = old_job
                    .status
                    .as_ref()
                    .and_then(|s| s.start_time.as_ref())
                    .is_none();
                let mutable_scheduling = old.suspend == Some(true) && never_started;
                let mut old_template = old.template.clone();
                let mut new_template = new.template.clone();
                if mutable_scheduling {
                    for template in [&mut old_template, &mut new_template] {
                        if let Some(meta) = template.metadata.as_mut() {
                            meta.labels = None;
                            meta.annotations = None;
                        }
                        if let Some(spec) = template.spec.as_mut() {
                            spec.node_selector = None;
                            spec.tolerations = None;
                            spec.scheduling_gates = None;
                            if let Some(affinity) = spec.affinity.as_mut() {
                                affinity.node_affinity = None;
                            }
                            if spec
                                .affinity
                                .as_ref()
                                .is_some_and(|a| a == &Default::default())
                            {
                                spec.affinity = None;
                            }
                        }
                    }
                }
                if old_template != new_template {
                    errors.push(FieldError::invalid(
                        &spec_path.child("template"),
                        BadValue::Omitted,
                        "field is immutable",
                    ));
                }
            }
        }
        _ => {}
    }
    errors
}

fn immutable_when_set(field: &str) -> FieldError {
    FieldError::forbidden(
        &FieldPath::new(field),
        "field is immutable when `immutable` is set",
    )
}

/// Takes the storage request out of a claim's resources so the rest can be compared.
fn storage(
    resources: Option<&mut k8s_openapi::api::core::v1::VolumeResourceRequirements>,
) -> Option<String> {
    let requests = resources?.requests.as_mut()?;
    requests.remove("storage").map(|q| q.0)
}

/// berth allows a claim's storage request to grow, never to shrink.
fn check_storage_growth(old: Option<&str>, new: Option<&str>, path: &FieldPath) -> Vec<FieldError> {
    let (Some(old), Some(new)) = (old, new) else {
        return Vec::new();
    };
    match (Quantity::parse(old), Quantity::parse(new)) {
        (Ok(old_q), Ok(new_q)) if new_q < old_q => vec![FieldError::forbidden(
            path,
            &format!(
                "field can not be less than previous value ({old}): claims may grow, never shrink"
            ),
        )],
        _ => Vec::new(),
    }
}

fn validate_stateful_set_update(old: &StatefulSetSpec, new: &StatefulSetSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    // Everything except the mutable fields must be equal.
    let mut old_rest = old.clone();
    let mut new_rest = new.clone();
    for spec in [&mut old_rest, &mut new_rest] {
        spec.replicas = None;
        spec.ordinals = None;
        spec.template = Default::default();
        spec.update_strategy = None;
        spec.revision_history_limit = None;
        spec.persistent_volume_claim_retention_policy = None;
        spec.min_ready_seconds = None;
        // berth: podManagementPolicy may change (kubernetes/kubernetes#117693, #87227).
        spec.pod_management_policy = None;
    }
    // berth: a claim template's storage request may grow. Compare the templates without it,
    // then check growth per template.
    let old_claims = old_rest.volume_claim_templates.take().unwrap_or_default();
    let new_claims = new_rest.volume_claim_templates.take().unwrap_or_default();
    let mut claims_changed = old_claims.len() != new_claims.len();
    for (i, (old_claim, new_claim)) in old_claims.iter().zip(new_claims.iter()).enumerate() {
        let mut old_claim = old_claim.clone();
        let mut new_claim = new_claim.clone();
        // Status of a claim template means nothing; Kubernetes stores `phase: Pending`.
        old_claim.status = None;
        new_claim.status = None;
        let old_size = storage(old_claim.spec.as_mut().and_then(|s| s.resources.as_mut()));
        let new_size = storage(new_claim.spec.as_mut().and_then(|s| s.resources.as_mut()));
        claims_changed |= old_claim != new_claim;
        errors.extend(check_storage_growth(
            old_size.as_deref(),
            new_size.as_deref(),
            &FieldPath::new("spec")
                .child("volumeClaimTemplates")
                .index(i)
                .children(&["spec", "resources", "requests"])
                .key("storage"),
        ));
    }
    if old_rest != new_rest || claims_changed {
        // berth: say which immutable fields the update changed, as Kubernetes does not.
        let old_fields = serde_json::to_value(&old_rest).unwrap_or_default();
        let new_fields = serde_json::to_value(&new_rest).unwrap_or_default();
        let mut changed: Vec<String> = old_fields
            .as_object()
            .into_iter()
            .chain(new_fields.as_object())
            .flat_map(|fields| fields.keys())
            .filter(|key| old_fields.get(key.as_str()) != new_fields.get(key.as_str()))
            .map(|key| format!("spec.{key}"))
            .collect();
        if claims_changed {
            changed.push("spec.volumeClaimTemplates".to_string());
        }
        changed.sort();
        changed.dedup();
        errors.push(FieldError::forbidden(
            &FieldPath::new("spec"),
            &format!(
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy', 'minReadySeconds' and 'podManagementPolicy' are forbidden (berth also allows growing volumeClaimTemplates[*].spec.resources.requests.storage); this update changes {}",
                changed.join(", ")
            ),
        ));
    }
    errors
}

fn validate_pod_update(old: Option<&PodSpec>, new: Option<&PodSpec>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let (Some(old), Some(new)) = (old, new) else {
        return errors;
    };
    let spec_path = FieldPath::new("spec");
    match (old.active_deadline_seconds, new.active_deadline_seconds) {
        (Some(previous), Some(next)) if next > previous => errors.push(FieldError::invalid(
            &spec_path.child("activeDeadlineSeconds"),
            next,
            "must be less than or equal to previous value",
        )),
        (Some(_), None) => errors.push(FieldError::invalid(
            &spec_path.child("activeDeadlineSeconds"),
            BadValue::Null,
            "must not update from a positive integer to nil value",
        )),
        _ => {}
    }
    let old_tolerations = old.tolerations.clone().unwrap_or_default();
    let new_tolerations = new.tolerations.clone().unwrap_or_default();
    let kept = |t: &Toleration| new_tolerations.iter().any(|n| n == t);
    if !old_tolerations.iter().all(kept) {
        errors.push(FieldError::forbidden(
            &spec_path.child("tolerations"),
            "existing toleration can not be modified except its tolerationSeconds",
        ));
    }
    // Everything else must be equal: copy the mutable fields across and compare.
    let mut munged = new.clone();
    munged.active_deadline_seconds = old.active_deadline_seconds;
    munged.tolerations = old.tolerations.clone();
    if old.termination_grace_period_seconds.is_some_and(|g| g < 0)
        && munged.termination_grace_period_seconds == Some(1)
    {
        munged.termination_grace_period_seconds = old.termination_grace_period_seconds;
    }
    for (container, old_container) in munged.containers.iter_mut().zip(old.containers.iter()) {
        container.image = old_container.image.clone();
    }
    for (container, old_container) in munged
        .init_containers
        .iter_mut()
        .flatten()
        .zip(old.init_containers.iter().flatten())
    {
        container.image = old_container.image.clone();
    }
    if &munged != old {
        let changed = changed_fields(old, &munged);
        errors.push(FieldError::forbidden(
            &spec_path,
            &format!(
                "pod updates may not change fields other than {POD_UPDATABLE} (changed: {})",
                changed.join(", ")
            ),
        ));
    }
    errors
}

/// The top-level pod spec fields that differ (for a readable message instead of a diff).
fn changed_fields(old: &PodSpec, new: &PodSpec) -> Vec<String> {
    let (Ok(serde_json::Value::Object(old)), Ok(serde_json::Value::Object(new))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return Vec::new();
    };
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| format!("spec.{k}"))
        .collect()
}
