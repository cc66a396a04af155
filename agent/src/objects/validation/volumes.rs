//! Volume validation: names, exactly one source, per-source rules (`ValidateVolumes`).

use std::collections::{BTreeSet, HashSet};

use k8s_openapi::api::core::v1::{KeyToPath, Volume};

use crate::objects::field::{FieldError, FieldPath};
use crate::objects::names;
use crate::objects::quantity::Quantity;

use super::container::{validate_field_selector, validate_resource_selector};

const FILE_MODE_ERROR: &str = "must be a number between 0 and 0777 (octal), both inclusive";
const VOLUME_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
];

/// Volumes: names unique DNS labels, exactly one source each, per-source rules. Returns the
/// names of the volumes mounts may refer to.
pub(super) fn validate_volumes(
    volumes: &[Volume],
    path: &FieldPath,
    errors: &mut Vec<FieldError>,
) -> BTreeSet<String> {
    let mut names_seen = BTreeSet::new();
    for (i, volume) in volumes.iter().enumerate() {
        let volume_path = path.index(i);
        let name_path = volume_path.child("name");
        let source_errors = validate_volume_source(volume, &volume_path);
        if volume.name.is_empty() {
            errors.push(FieldError::required(&name_path, ""));
        } else {
            for message in names::dns1123_label(&volume.name) {
                errors.push(FieldError::invalid(
                    &name_path,
                    volume.name.as_str(),
                    &message,
                ));
            }
        }
        if names_seen.contains(&volume.name) {
            errors.push(FieldError::duplicate(&name_path, volume.name.as_str()));
        }
        if source_errors.is_empty() {
            names_seen.insert(volume.name.clone());
        } else {
            errors.extend(source_errors);
        }
    }
    names_seen
}

pub(super) fn validate_volume_source(volume: &Volume, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let sources: Vec<String> = match serde_json::to_value(volume) {
        Ok(serde_json::Value::Object(map)) => {
            map.keys().filter(|k| *k != "name").cloned().collect()
        }
        _ => Vec::new(),
    };
    if sources.is_empty() {
        errors.push(FieldError::required(path, "must specify a volume type"));
        return errors;
    }
    // Kubernetes checks sources in a fixed order and reports every one after the first.
    const ORDER: &[&str] = &[
        "hostPath",
        "emptyDir",
        "gitRepo",
        "gcePersistentDisk",
        "awsElasticBlockStore",
        "secret",
        "nfs",
        "iscsi",
        "glusterfs",
        "flocker",
        "persistentVolumeClaim",
        "rbd",
        "quobyte",
        "cinder",
        "cephfs",
        "downwardAPI",
        "fc",
        "flexVolume",
        "configMap",
        "azureFile",
        "vsphereVolume",
        "photonPersistentDisk",
        "portworxVolume",
        "azureDisk",
        "storageos",
        "projected",
        "scaleIO",
        "csi",
        "ephemeral",
        "image",
    ];
    let mut ordered: Vec<&str> = ORDER
        .iter()
        .copied()
        .filter(|s| sources.iter().any(|x| x == s))
        .collect();
    ordered.extend(
        sources
            .iter()
            .map(String::as_str)
            .filter(|s| !ORDER.contains(s)),
    );
    for extra in ordered.iter().skip(1) {
        errors.push(FieldError::forbidden(
            &path.child(extra),
            "may not specify more than 1 volume type",
        ));
    }
    match ordered[0] {
        "hostPath" => {
            let source = volume.host_path.as_ref().expect("source present");
            let p = path.child("hostPath");
            if source.path.is_empty() {
                errors.push(FieldError::required(&p.child("path"), ""));
                return errors;
            }
            errors.extend(no_backsteps(&source.path, &p.child("path")));
            const TYPES: &[&str] = &[
                "",
                "BlockDevice",
                "CharDevice",
                "Directory",
                "DirectoryOrCreate",
                "File",
                "FileOrCreate",
                "Socket",
            ];
            if let Some(kind) = source.type_.as_deref()
                && !TYPES.contains(&kind)
            {
                errors.push(FieldError::not_supported(&p.child("type"), kind, TYPES));
            }
        }
        "emptyDir" => {
            let source = volume.empty_dir.as_ref().expect("source present");
            if let Some(limit) = source.size_limit.as_ref() {
                let p = path.children(&["emptyDir", "sizeLimit"]);
                match Quantity::parse(&limit.0) {
                    Err(e) => {
                        errors.push(FieldError::invalid(&p, limit.0.as_str(), &e.to_string()))
                    }
                    Ok(q) if q.is_negative() => errors.push(FieldError::forbidden(
                        &p,
                        "SizeLimit field must be a valid resource quantity",
                    )),
                    Ok(_) => {}
                }
            }
        }
        "secret" => {
            let source = volume.secret.as_ref().expect("source present");
            let p = path.child("secret");
            if source.secret_name.as_deref().unwrap_or("").is_empty() {
                errors.push(FieldError::required(&p.child("secretName"), ""));
            }
            errors.extend(check_mode(source.default_mode, &p.child("defaultMode")));
            errors.extend(validate_items(source.items.as_deref(), &p.child("items")));
        }
        "configMap" => {
            let source = volume.config_map.as_ref().expect("source present");
            let p = path.child("configMap");
            if source.name.is_empty() {
                errors.push(FieldError::required(&p.child("name"), ""));
            }
            errors.extend(check_mode(source.default_mode, &p.child("defaultMode")));
            errors.extend(validate_items(source.items.as_deref(), &p.child("items")));
        }
        "persistentVolumeClaim" => {
            let source = volume
                .persistent_volume_claim
                .as_ref()
                .expect("source present");
            if source.claim_name.is_empty() {
                errors.push(FieldError::required(
                    &path.children(&["persistentVolumeClaim", "claimName"]),
                    "",
                ));
            }
        }
        "downwardAPI" => {
            let source = volume.downward_api.as_ref().expect("source present");
            let p = path.child("downwardAPI");
            errors.extend(check_mode(source.default_mode, &p.child("defaultMode")));
            for (i, item) in source.items.iter().flatten().enumerate() {
                errors.extend(validate_downward_file(item, &p.child("items").index(i)));
            }
        }
        "projected" => {
            let source = volume.projected.as_ref().expect("source present");
            let p = path.child("projected");
            errors.extend(check_mode(source.default_mode, &p.child("defaultMode")));
            let mut all_paths = HashSet::new();
            for (i, projection) in source.sources.iter().flatten().enumerate() {
                let sp = p.child("sources").index(i);
                let mut count = 0;
                let mut paths: Vec<String> = Vec::new();
                if let Some(secret) = projection.secret.as_ref() {
                    count += 1;
                    if secret.name.is_empty() {
                        errors.push(FieldError::required(&sp.children(&["secret", "name"]), ""));
                    }
                    errors.extend(validate_items(
                        secret.items.as_deref(),
                        &sp.children(&["secret", "items"]),
                    ));
                    paths.extend(secret.items.iter().flatten().map(|k| k.path.clone()));
                }
                if let Some(config_map) = projection.config_map.as_ref() {
                    count += 1;
                    if config_map.name.is_empty() {
                        errors.push(FieldError::required(
                            &sp.children(&["configMap", "name"]),
                            "",
                        ));
                    }
                    errors.extend(validate_items(
                        config_map.items.as_deref(),
                        &sp.children(&["configMap", "items"]),
                    ));
                    paths.extend(config_map.items.iter().flatten().map(|k| k.path.clone()));
                }
                if let Some(downward) = projection.downward_api.as_ref() {
                    count += 1;
                    for (j, item) in downward.items.iter().flatten().enumerate() {
                        errors.extend(validate_downward_file(
                            item,
                            &sp.children(&["downwardAPI", "items"]).index(j),
                        ));
                        paths.push(item.path.clone());
                    }
                }
                count += usize::from(projection.service_account_token.is_some())
                    + usize::from(projection.cluster_trust_bundle.is_some())
                    + usize::from(projection.pod_certificate.is_some());
                if count > 1 {
                    errors.push(FieldError::forbidden(
                        &sp,
                        "may not specify more than 1 volume type per source",
                    ));
                }
                for file in paths {
                    if !all_paths.insert(file.clone()) {
                        errors.push(FieldError::invalid(&p, file, "conflicting duplicate paths"));
                    }
                }
            }
        }
        _ => {}
    }
    errors
}

pub(super) fn validate_items(items: Option<&[KeyToPath]>, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (i, item) in items.unwrap_or_default().iter().enumerate() {
        let p = path.index(i);
        if item.key.is_empty() {
            errors.push(FieldError::required(&p.child("key"), ""));
        }
        if item.path.is_empty() {
            errors.push(FieldError::required(&p.child("path"), ""));
        }
        errors.extend(local_non_reserved_path(&item.path, &p.child("path")));
        errors.extend(check_mode(item.mode, &p.child("mode")));
    }
    errors
}

pub(super) fn validate_downward_file(
    item: &k8s_openapi::api::core::v1::DownwardAPIVolumeFile,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if item.path.is_empty() {
        errors.push(FieldError::required(&path.child("path"), ""));
    }
    errors.extend(local_non_reserved_path(&item.path, &path.child("path")));
    match (item.field_ref.as_ref(), item.resource_field_ref.as_ref()) {
        (Some(_), Some(_)) => errors.push(FieldError::invalid(
            path,
            "resource",
            "fieldRef and resourceFieldRef can not be specified simultaneously",
        )),
        (None, None) => errors.push(FieldError::required(
            path,
            "one of fieldRef and resourceFieldRef is required",
        )),
        (Some(field_ref), None) => {
            errors.extend(validate_field_selector(
                field_ref,
                VOLUME_FIELD_PATHS,
                &path.child("fieldRef"),
            ));
        }
        (None, Some(resource_ref)) => {
            errors.extend(validate_resource_selector(
                resource_ref,
                true,
                &path.child("resourceFieldRef"),
            ));
        }
    }
    errors.extend(check_mode(item.mode, &path.child("mode")));
    errors
}

pub(super) fn check_mode(mode: Option<i32>, path: &FieldPath) -> Vec<FieldError> {
    match mode {
        Some(m) if !(0..=0o777).contains(&m) => vec![FieldError::invalid(path, m, FILE_MODE_ERROR)],
        _ => Vec::new(),
    }
}

pub(super) fn no_backsteps(target: &str, path: &FieldPath) -> Vec<FieldError> {
    if target.split('/').any(|part| part == "..") {
        vec![FieldError::invalid(path, target, "must not contain '..'")]
    } else {
        Vec::new()
    }
}

/// `validateLocalDescendingPath`: relative, no `..` element.
pub(super) fn local_descending_path(target: &str, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if target.starts_with('/') {
        errors.push(FieldError::invalid(path, target, "must be a relative path"));
    }
    errors.extend(no_backsteps(target, path));
    errors
}

/// `ValidateLocalNonReservedPath`: a descending path that does not start with `..`.
pub(super) fn local_non_reserved_path(target: &str, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = local_descending_path(target, path);
    if target.starts_with("..") {
        errors.push(FieldError::invalid(
            path,
            target,
            "must not start with '..'",
        ));
    }
    errors
}
