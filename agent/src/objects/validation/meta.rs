//! Object metadata, labels, annotations and label selectors (`ValidateObjectMeta`,
//! `ValidateLabels`, `ValidateAnnotations`, `ValidateLabelSelector`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::objects::field::{BadValue, FieldError, FieldPath};
use crate::objects::names;

/// Largest total size of an object's annotations (keys and values), 256 KiB.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// A name rule: returns the messages for an invalid name (`prefix`: a generateName prefix).
pub type NameRule = fn(&str, bool) -> Vec<String>;

/// `ValidateObjectMeta`: name (or generateName), namespace presence, labels, annotations.
pub fn validate_object_meta(
    meta: &ObjectMeta,
    namespaced: bool,
    name_rule: NameRule,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let generate_name = meta.generate_name.as_deref().unwrap_or("");
    if !generate_name.is_empty() {
        for message in name_rule(generate_name, true) {
            errors.push(FieldError::invalid(
                &path.child("generateName"),
                generate_name,
                &message,
            ));
        }
    }
    let name = meta.name.as_deref().unwrap_or("");
    if name.is_empty() {
        errors.push(FieldError::required(
            &path.child("name"),
            "name or generateName is required",
        ));
    } else {
        for message in name_rule(name, false) {
            errors.push(FieldError::invalid(&path.child("name"), name, &message));
        }
    }
    let namespace = meta.namespace.as_deref().unwrap_or("");
    if namespaced {
        if namespace.is_empty() {
            errors.push(FieldError::required(&path.child("namespace"), ""));
        } else {
            for message in names::dns1123_label(namespace) {
                errors.push(FieldError::invalid(
                    &path.child("namespace"),
                    namespace,
                    &message,
                ));
            }
        }
    } else if !namespace.is_empty() {
        errors.push(FieldError::forbidden(
            &path.child("namespace"),
            "not allowed on this type",
        ));
    }
    if let Some(generation) = meta.generation
        && generation < 0
    {
        errors.push(FieldError::invalid(
            &path.child("generation"),
            generation,
            "must be greater than or equal to 0",
        ));
    }
    errors.extend(validate_labels(meta.labels.as_ref(), &path.child("labels")));
    errors.extend(validate_annotations(
        meta.annotations.as_ref(),
        &path.child("annotations"),
    ));
    for (i, finalizer) in meta.finalizers.iter().flatten().enumerate() {
        for message in names::qualified_name(finalizer) {
            errors.push(FieldError::invalid(
                &path.child("finalizers").index(i),
                finalizer,
                &message,
            ));
        }
    }
    errors
}

/// Labels: keys are qualified names, values label values.
pub fn validate_labels(
    labels: Option<&BTreeMap<String, String>>,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (key, value) in labels.into_iter().flatten() {
        for message in names::qualified_name(key) {
            errors.push(FieldError::invalid(path, key, &message));
        }
        for message in names::label_value(value) {
            errors.push(FieldError::invalid(&path.key(key), value, &message));
        }
    }
    errors
}

/// Annotations: keys are qualified names (compared lowercase), total size at most 256 KiB.
pub fn validate_annotations(
    annotations: Option<&BTreeMap<String, String>>,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut total = 0;
    for (key, value) in annotations.into_iter().flatten() {
        for message in names::qualified_name(&key.to_lowercase()) {
            errors.push(FieldError::invalid(path, key, &message));
        }
        total += key.len() + value.len();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errors.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errors
}

/// `ValidateLabelSelector`.
pub fn validate_label_selector(selector: &LabelSelector, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = validate_labels(selector.match_labels.as_ref(), &path.child("matchLabels"));
    for (i, requirement) in selector.match_expressions.iter().flatten().enumerate() {
        let path = path.child("matchExpressions").index(i);
        let values = requirement.values.as_deref().unwrap_or_default();
        match requirement.operator.as_str() {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errors.push(FieldError::required(
                        &path.child("values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errors.push(FieldError::forbidden(
                        &path.child("values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            other => errors.push(FieldError::invalid(
                &path.child("operator"),
                other,
                "not a valid selector operator",
            )),
        }
        for message in names::qualified_name(&requirement.key) {
            errors.push(FieldError::invalid(
                &path.child("key"),
                requirement.key.as_str(),
                &message,
            ));
        }
        for (j, value) in values.iter().enumerate() {
            for message in names::label_value(value) {
                errors.push(FieldError::invalid(
                    &path.child("values").index(j),
                    value,
                    &message,
                ));
            }
        }
    }
    errors
}

/// Whether a selector has no requirements at all.
pub fn selector_is_empty(selector: &LabelSelector) -> bool {
    selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty)
}

/// `must be greater than or equal to 0` for a negative value.
pub fn non_negative(value: Option<i64>, path: &FieldPath) -> Vec<FieldError> {
    match value {
        Some(v) if v < 0 => vec![FieldError::invalid(
            path,
            v,
            "must be greater than or equal to 0",
        )],
        _ => Vec::new(),
    }
}

/// `ValidateImmutableField`: `Invalid value: <new>: field is immutable`.
pub fn immutable<T: PartialEq>(
    new: &T,
    old: &T,
    value: BadValue,
    path: &FieldPath,
) -> Vec<FieldError> {
    if new == old {
        Vec::new()
    } else {
        vec![FieldError::invalid(path, value, "field is immutable")]
    }
}

/// `ValidateObjectMetaUpdate`: name, namespace, uid, creationTimestamp and generateName do
/// not change.
pub fn validate_object_meta_update(
    new: &ObjectMeta,
    old: &ObjectMeta,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let show = |v: &Option<String>| BadValue::from(v.clone().unwrap_or_default());
    errors.extend(immutable(
        &new.name,
        &old.name,
        show(&new.name),
        &path.child("name"),
    ));
    errors.extend(immutable(
        &new.namespace,
        &old.namespace,
        show(&new.namespace),
        &path.child("namespace"),
    ));
    errors.extend(immutable(
        &new.uid,
        &old.uid,
        show(&new.uid),
        &path.child("uid"),
    ));
    if new.creation_timestamp != old.creation_timestamp {
        let shown = new
            .creation_timestamp
            .as_ref()
            .map(|t| BadValue::from(t.0.to_string()))
            .unwrap_or(BadValue::Null);
        errors.push(FieldError::invalid(
            &path.child("creationTimestamp"),
            shown,
            "field is immutable",
        ));
    }
    errors
}
