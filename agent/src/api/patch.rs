//! Patches, as the API server applies them: JSON merge patch (RFC 7386), JSON patch
//! (RFC 6902), Kubernetes' strategic merge patch (lists of named things merged by key), and
//! apply (a whole manifest merged three ways with the last applied one, as `kubectl apply`).

use serde_json::{Map, Value};

use super::status::ApiError;

/// The annotation in which `kubectl apply` (and `berth apply`) keep the manifest they applied.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// RFC 7386: objects merge recursively, `null` deletes, everything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(patch_map) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let target_map = target.as_object_mut().expect("just made an object");
            for (key, value) in patch_map {
                if value.is_null() {
                    target_map.remove(key);
                } else {
                    merge_patch(target_map.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// RFC 6902 JSON patch.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let patch: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
    json_patch::patch(target, &patch).map_err(|e| ApiError::invalid_patch(e.to_string()))
}

/// The key that identifies elements of a list field in a strategic merge patch (the
/// `patchMergeKey` of Kubernetes' types), by field name. Fields not listed are replaced
/// wholesale, as lists without a merge key are.
fn merge_key(field: &str, elements: &[&Value]) -> Option<&'static str> {
    let has = |k: &str| elements.iter().any(|e| e.get(k).is_some());
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "volumeClaimTemplates"
        | "readinessGates"
        | "resourceClaims" => {
            if field == "volumeClaimTemplates" || field == "readinessGates" {
                None
            } else {
                Some("name")
            }
        }
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "ports" if has("containerPort") => Some("containerPort"),
        "ports" => Some("port"),
        "hostAliases" => Some("ip"),
        "ownerReferences" => Some("uid"),
        "conditions" => Some("type"),
        "topologySpreadConstraints" => Some("topologyKey"),
        _ => None,
    }
}

/// Primitive lists that merge as sets instead of being replaced.
fn is_set_list(field: &str) -> bool {
    matches!(field, "finalizers")
}

/// Kubernetes' strategic merge patch over untyped JSON, using [`merge_key`] for the list
/// fields of the supported kinds. Directives: `$patch: replace|delete|merge`, `$retainKeys`,
/// `$deleteFromPrimitiveList/<field>`, `$setElementOrder/<field>` (order hints are honoured
/// by keeping the patch's order for merged elements).
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let Value::Object(patch_map) = patch else {
        return Err(ApiError::bad_request(
            "a strategic merge patch must be a JSON object",
        ));
    };
    merge_map(target, patch_map)
}

fn merge_map(target: &mut Value, patch: &Map<String, Value>) -> Result<(), ApiError> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut replaced = patch.clone();
            replaced.remove("$patch");
            *target = Value::Object(replaced);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Null;
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown patch directive $patch: {other:?}"
            )));
        }
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let target_map = target.as_object_mut().expect("just made an object");
    if let Some(retain) = patch.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = retain.iter().filter_map(Value::as_str).collect();
        target_map.retain(|k, _| keep.contains(&k.as_str()) || patch.contains_key(k));
    }
    for (key, value) in patch {
        if key == "$patch" || key == "$retainKeys" || key.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Value::Array(remove)) =
                (target_map.get_mut(field), value)
            {
                list.retain(|v| !remove.contains(v));
            }
            continue;
        }
        match value {
            Value::Null => {
                target_map.remove(key);
            }
            Value::Object(inner) => {
                let slot = target_map.entry(key.clone()).or_insert(Value::Null);
                merge_map(slot, inner)?;
                if slot.is_null() {
                    target_map.remove(key);
                }
            }
            Value::Array(items) => {
                let merged = merge_list(key, target_map.get(key), items)?;
                target_map.insert(key.clone(), merged);
            }
            scalar => {
                target_map.insert(key.clone(), scalar.clone());
            }
        }
    }
    Ok(())
}

fn merge_list(field: &str, current: Option<&Value>, patch: &[Value]) -> Result<Value, ApiError> {
    let current: Vec<Value> = current
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if patch
        .iter()
        .any(|p| p.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Ok(Value::Array(
            patch
                .iter()
                .filter(|p| p.get("$patch").is_none())
                .cloned()
                .collect(),
        ));
    }
    if is_set_list(field) {
        let mut merged = current;
        for p in patch {
            if !merged.contains(p) {
                merged.push(p.clone());
            }
        }
        return Ok(Value::Array(merged));
    }
    let elements: Vec<&Value> = current.iter().chain(patch.iter()).collect();
    let Some(key) = merge_key(field, &elements) else {
        return Ok(Value::Array(patch.to_vec()));
    };
    let mut merged = current;
    for p in patch {
        let Some(id) = p.get(key) else {
            return Err(ApiError::bad_request(format!(
                "map: {p} does not contain declared merge key: {key}"
            )));
        };
        let position = merged.iter().position(|e| e.get(key) == Some(id));
        let deleting = p.get("$patch").and_then(Value::as_str) == Some("delete");
        match (position, deleting) {
            (Some(i), true) => {
                merged.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => {
                let Value::Object(pm) = p else { continue };
                merge_map(&mut merged[i], pm)?;
            }
            (None, false) => {
                let mut fresh = Value::Null;
                if let Value::Object(pm) = p {
                    merge_map(&mut fresh, pm)?;
                }
                merged.push(fresh);
            }
        }
    }
    Ok(Value::Array(merged))
}

/// Apply: the result of applying `manifest` over `live`, three ways with the manifest applied
/// last time (kept in the [`LAST_APPLIED`] annotation). Fields the manifest sets win; fields
/// that the last manifest set and this one no longer does are removed; fields nobody's
/// manifest set (status, defaults, `replicas` changed by `scale` when the manifest leaves it
/// out) are kept. Lists are taken from the manifest whole.
pub fn apply(live: &Value, manifest: &Value) -> Value {
    let last: Value = live
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED))
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null);
    let mut patch = manifest.clone();
    add_deletions(&mut patch, &last);
    let mut result = live.clone();
    merge_patch(&mut result, &patch);
    record_last_applied(&mut result, manifest);
    result
}

/// Marks with `null` every map key that `last` had and `patch` no longer has.
fn add_deletions(patch: &mut Value, last: &Value) {
    let (Value::Object(patch_map), Value::Object(last_map)) = (patch, last) else {
        return;
    };
    for (key, last_value) in last_map {
        match patch_map.get_mut(key) {
            None => {
                patch_map.insert(key.clone(), Value::Null);
            }
            Some(child) => add_deletions(child, last_value),
        }
    }
}

/// Stores `manifest` (without the annotation itself) in the object's LAST_APPLIED annotation.
pub fn record_last_applied(object: &mut Value, manifest: &Value) {
    let mut recorded = manifest.clone();
    if let Some(annotations) = recorded
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            recorded["metadata"]
                .as_object_mut()
                .expect("metadata is an object")
                .remove("annotations");
        }
    }
    let text = serde_json::to_string(&recorded).expect("JSON values serialise");
    let metadata = object
        .as_object_mut()
        .expect("objects are JSON objects")
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let annotations = metadata
        .as_object_mut()
        .expect("metadata is an object")
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(map) = annotations.as_object_mut() {
        map.insert(LAST_APPLIED.to_string(), Value::String(text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge_patch(&mut target, &json!({"a": "z", "c": {"f": null}, "l": [3]}));
        assert_eq!(target, json!({"a": "z", "c": {"d": "e"}, "l": [3]}));
    }

    #[test]
    fn strategic_patch_merges_containers_by_name_and_env_by_name() {
        let mut pod = json!({"spec": {"containers": [
            {"name": "a", "image": "x:1", "env": [{"name": "E", "value": "1"}]},
            {"name": "b", "image": "y:1"}
        ]}});
        let patch = json!({"spec": {"containers": [
            {"name": "a", "image": "x:2", "env": [{"name": "F", "value": "2"}]},
            {"name": "c", "image": "z:1"}
        ]}});
        strategic_merge_patch(&mut pod, &patch).unwrap();
        assert_eq!(
            pod,
            json!({"spec": {"containers": [
                {"name": "a", "image": "x:2", "env": [{"name": "E", "value": "1"}, {"name": "F", "value": "2"}]},
                {"name": "b", "image": "y:1"},
                {"name": "c", "image": "z:1"}
            ]}})
        );
    }

    #[test]
    fn strategic_patch_directives() {
        let mut o = json!({"metadata": {"finalizers": ["a"], "labels": {"x": "1", "y": "2"}},
            "spec": {"volumes": [{"name": "v1", "emptyDir": {}}, {"name": "v2", "emptyDir": {}}], "tolerations": [{"key": "k"}]}});
        let patch = json!({
            "metadata": {"finalizers": ["b"], "labels": {"$patch": "replace", "z": "3"}},
            "spec": {"volumes": [{"name": "v1", "$patch": "delete"}], "tolerations": [{"key": "j"}]}
        });
        strategic_merge_patch(&mut o, &patch).unwrap();
        assert_eq!(
            o,
            json!({"metadata": {"finalizers": ["a", "b"], "labels": {"z": "3"}},
                "spec": {"volumes": [{"name": "v2", "emptyDir": {}}], "tolerations": [{"key": "j"}]}})
        );
        let mut o = json!({"metadata": {"finalizers": ["a", "b"]}});
        strategic_merge_patch(
            &mut o,
            &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        )
        .unwrap();
        assert_eq!(o, json!({"metadata": {"finalizers": ["b"]}}));
    }

    #[test]
    fn strategic_patch_elements_need_their_merge_key() {
        let mut o = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(
            strategic_merge_patch(&mut o, &json!({"spec": {"containers": [{"image": "x"}]}}))
                .unwrap_err()
                .code,
            400
        );
    }

    #[test]
    fn apply_keeps_fields_the_manifest_never_set_and_drops_ones_it_stopped_setting() {
        let first = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "web", "labels": {"tier": "a"}},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x:1"}]}}}});
        let mut live = apply(&json!({}), &first);
        // Someone scales the set; the controller writes status.
        live["spec"]["replicas"] = json!(3);
        live["status"] = json!({"replicas": 3});
        let second = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x:2"}]}}}});
        let result = apply(&live, &second);
        assert_eq!(
            result["spec"]["replicas"], 3,
            "scaled replicas survive a manifest without replicas"
        );
        assert_eq!(result["status"]["replicas"], 3);
        assert_eq!(
            result["spec"]["template"]["spec"]["containers"][0]["image"],
            "x:2"
        );
        assert!(
            result.pointer("/metadata/labels/tier").is_none(),
            "a label removed from the manifest is removed"
        );
        let recorded: Value = serde_json::from_str(
            result["metadata"]["annotations"][LAST_APPLIED]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(recorded, second);
    }

    #[test]
    fn json_patch_applies_operations() {
        let mut o = json!({"spec": {"replicas": 1}});
        json_patch(
            &mut o,
            &json!([{"op": "replace", "path": "/spec/replicas", "value": 4}]),
        )
        .unwrap();
        assert_eq!(o["spec"]["replicas"], 4);
        assert_eq!(
            json_patch(&mut o, &json!([{"op": "remove", "path": "/nope"}]))
                .unwrap_err()
                .code,
            422
        );
    }
}
