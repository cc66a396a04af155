//! Validation of the core kinds other than Pod: Service, ConfigMap, Secret, Namespace, Node,
//! PersistentVolumeClaim, Event, and apps/v1 ControllerRevision.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaimSpec, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::container::validate_port_num_or_name;
use super::meta::{validate_label_selector, validate_labels, validate_object_meta};
use crate::objects::field::{FieldError, FieldPath};
use crate::objects::names::{self, inclusive_range_error};
use crate::objects::quantity::Quantity;

/// Largest Secret or ConfigMap payload, 1 MiB.
pub const MAX_DATA_SIZE: usize = 1024 * 1024;

fn metadata() -> FieldPath {
    FieldPath::new("metadata")
}

/// `ValidateService`.
pub fn validate_service(service: &Service) -> Vec<FieldError> {
    let mut errors = validate_object_meta(
        &service.metadata,
        true,
        names::name_is_dns1035_label,
        &metadata(),
    );
    let spec_path = FieldPath::new("spec");
    let Some(spec) = service.spec.as_ref() else {
        errors.push(FieldError::required(&spec_path, ""));
        return errors;
    };
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let service_type = spec.type_.as_deref().unwrap_or("");
    let ports = spec.ports.as_deref().unwrap_or_default();
    if ports.is_empty() && !headless && service_type != "ExternalName" {
        errors.push(FieldError::required(&spec_path.child("ports"), ""));
    }
    let mut port_names = HashSet::new();
    let mut port_keys = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = spec_path.child("ports").index(i);
        let name = port.name.as_deref().unwrap_or("");
        if ports.len() > 1 && name.is_empty() {
            errors.push(FieldError::required(&p.child("name"), ""));
        } else if !name.is_empty() {
            for message in names::dns1123_label(name) {
                errors.push(FieldError::invalid(&p.child("name"), name, &message));
            }
            if !port_names.insert(name.to_owned()) {
                errors.push(FieldError::duplicate(&p.child("name"), name));
            }
        }
        if !(1..=65535).contains(&port.port) {
            errors.push(FieldError::invalid(
                &p.child("port"),
                port.port,
                &inclusive_range_error(1, 65535),
            ));
        }
        let protocol = port.protocol.as_deref().unwrap_or("");
        match protocol {
            "" => errors.push(FieldError::required(&p.child("protocol"), "")),
            "TCP" | "UDP" | "SCTP" => {}
            other => errors.push(FieldError::not_supported(
                &p.child("protocol"),
                other,
                &["SCTP", "TCP", "UDP"],
            )),
        }
        if let Some(target) = port.target_port.as_ref() {
            errors.extend(validate_port_num_or_name(target, &p.child("targetPort")));
        }
        if !port_keys.insert((protocol.to_owned(), port.port)) {
            errors.push(FieldError::duplicate(
                &p,
                format!("{protocol}/{}", port.port),
            ));
        }
    }
    errors.extend(validate_labels(
        spec.selector.as_ref(),
        &spec_path.child("selector"),
    ));
    let affinity = spec.session_affinity.as_deref().unwrap_or("");
    match affinity {
        "" => errors.push(FieldError::required(
            &spec_path.child("sessionAffinity"),
            "",
        )),
        "None" | "ClientIP" => {}
        other => errors.push(FieldError::not_supported(
            &spec_path.child("sessionAffinity"),
            other,
            &["ClientIP", "None"],
        )),
    }
    if affinity == "ClientIP"
        && let Some(timeout) = spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
        && !(1..=86400).contains(&timeout)
    {
        errors.push(FieldError::invalid(
            &spec_path.children(&["sessionAffinityConfig", "clientIP", "timeoutSeconds"]),
            timeout,
            "must be greater than 0 and less than 86400",
        ));
    }
    match service_type {
        "" => errors.push(FieldError::required(&spec_path.child("type"), "")),
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName" => {}
        other => errors.push(FieldError::not_supported(
            &spec_path.child("type"),
            other,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        )),
    }
    if let Some(ip) = spec
        .cluster_ip
        .as_deref()
        .filter(|ip| !ip.is_empty() && *ip != "None")
        && ip.parse::<std::net::IpAddr>().is_err()
    {
        errors.push(FieldError::invalid(
            &spec_path.child("clusterIP"),
            ip,
            "must be empty, 'None', or a valid IP address",
        ));
    }
    errors
}

fn validate_data_keys<'a>(
    keys: impl Iterator<Item = &'a String>,
    path: &FieldPath,
    errors: &mut Vec<FieldError>,
) {
    for key in keys {
        for message in names::config_map_key(key) {
            errors.push(FieldError::invalid(&path.key(key), key, &message));
        }
    }
}

/// `ValidateConfigMap`.
pub fn validate_config_map(config_map: &ConfigMap) -> Vec<FieldError> {
    let mut errors = validate_object_meta(
        &config_map.metadata,
        true,
        names::name_is_dns_subdomain,
        &metadata(),
    );
    let data_path = FieldPath::new("data");
    let binary_path = FieldPath::new("binaryData");
    let data = config_map.data.clone().unwrap_or_default();
    let binary = config_map.binary_data.clone().unwrap_or_default();
    validate_data_keys(data.keys(), &data_path, &mut errors);
    for key in data.keys().filter(|k| binary.contains_key(*k)) {
        errors.push(FieldError::invalid(
            &data_path.key(key),
            key,
            "duplicate of key present in binaryData",
        ));
    }
    validate_data_keys(binary.keys(), &binary_path, &mut errors);
    for key in binary.keys().filter(|k| data.contains_key(*k)) {
        errors.push(FieldError::invalid(
            &binary_path.key(key),
            key,
            "duplicate of key present in data",
        ));
    }
    let total: usize = data.values().map(String::len).sum::<usize>()
        + binary.values().map(|v| v.0.len()).sum::<usize>();
    if total > MAX_DATA_SIZE {
        errors.push(FieldError::too_long(&FieldPath::root(), MAX_DATA_SIZE));
    }
    errors
}

/// `ValidateSecret`, after `stringData` has been merged into `data`.
pub fn validate_secret(secret: &Secret) -> Vec<FieldError> {
    let mut errors = validate_object_meta(
        &secret.metadata,
        true,
        names::name_is_dns_subdomain,
        &metadata(),
    );
    let data_path = FieldPath::new("data");
    let data = secret.data.clone().unwrap_or_default();
    validate_data_keys(data.keys(), &data_path, &mut errors);
    if let Some(string_data) = secret.string_data.as_ref() {
        validate_data_keys(
            string_data.keys(),
            &FieldPath::new("stringData"),
            &mut errors,
        );
    }
    let total: usize = data.values().map(|v| v.0.len()).sum();
    if total > MAX_DATA_SIZE {
        errors.push(FieldError::too_long(&data_path, MAX_DATA_SIZE));
    }
    let has = |key: &str| data.contains_key(key);
    match secret.type_.as_deref().unwrap_or("") {
        "kubernetes.io/dockerconfigjson" | "kubernetes.io/dockercfg" => {
            let key = if secret.type_.as_deref() == Some("kubernetes.io/dockercfg") {
                ".dockercfg"
            } else {
                ".dockerconfigjson"
            };
            match data.get(key) {
                None => errors.push(FieldError::required(&data_path.key(key), "")),
                Some(bytes) => {
                    if let Err(error) = serde_json::from_slice::<serde_json::Value>(&bytes.0) {
                        errors.push(FieldError::invalid(
                            &data_path.key(key),
                            "<secret contents redacted>",
                            &error.to_string(),
                        ));
                    }
                }
            }
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errors.push(FieldError::required(&data_path.key("username"), ""));
            errors.push(FieldError::required(&data_path.key("password"), ""));
        }
        "kubernetes.io/ssh-auth" if data.get("ssh-privatekey").is_none_or(|v| v.0.is_empty()) => {
            errors.push(FieldError::required(&data_path.key("ssh-privatekey"), ""));
        }
        "kubernetes.io/tls" => {
            for key in ["tls.crt", "tls.key"] {
                if !has(key) {
                    errors.push(FieldError::required(&data_path.key(key), ""));
                }
            }
        }
        _ => {}
    }
    errors
}

/// `ValidateNamespace`.
pub fn validate_namespace(meta: &ObjectMeta) -> Vec<FieldError> {
    validate_object_meta(meta, false, names::name_is_dns_label, &metadata())
}

/// `ValidateNode` (metadata only: node status is written by berth itself).
pub fn validate_node(meta: &ObjectMeta) -> Vec<FieldError> {
    validate_object_meta(meta, false, names::name_is_dns_subdomain, &metadata())
}

/// Events: metadata only.
pub fn validate_event(meta: &ObjectMeta) -> Vec<FieldError> {
    validate_object_meta(meta, true, names::name_is_dns_subdomain, &metadata())
}

/// `ValidateControllerRevision`.
pub fn validate_controller_revision(revision: &ControllerRevision) -> Vec<FieldError> {
    let mut errors = validate_object_meta(
        &revision.metadata,
        true,
        names::name_is_dns_subdomain,
        &metadata(),
    );
    if revision.data.is_none() {
        errors.push(FieldError::required(
            &FieldPath::new("data"),
            "data is mandatory",
        ));
    }
    if revision.revision < 0 {
        errors.push(FieldError::invalid(
            &FieldPath::new("revision"),
            revision.revision,
            "must be greater than or equal to 0",
        ));
    }
    errors
}

/// `ValidatePersistentVolumeClaimSpec` (also used for StatefulSet claim templates).
pub fn validate_claim_spec(
    spec: Option<&PersistentVolumeClaimSpec>,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let default_spec = PersistentVolumeClaimSpec::default();
    let spec = spec.unwrap_or(&default_spec);
    let modes = spec.access_modes.as_deref().unwrap_or_default();
    if modes.is_empty() {
        errors.push(FieldError::required(
            &path.child("accessModes"),
            "at least 1 access mode is required",
        ));
    }
    const MODES: &[&str] = &[
        "ReadOnlyMany",
        "ReadWriteMany",
        "ReadWriteOnce",
        "ReadWriteOncePod",
    ];
    for mode in modes {
        if !MODES.contains(&mode.as_str()) {
            errors.push(FieldError::not_supported(
                &path.child("accessModes"),
                mode.as_str(),
                MODES,
            ));
        }
    }
    if let Some(selector) = spec.selector.as_ref() {
        errors.extend(validate_label_selector(selector, &path.child("selector")));
    }
    let storage_path = path.child("resources").key("storage");
    let requests: BTreeMap<String, _> = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.clone())
        .unwrap_or_default();
    match requests.get("storage") {
        None => errors.push(FieldError::required(&storage_path, "")),
        Some(quantity) => match Quantity::parse(&quantity.0) {
            Err(e) => errors.push(FieldError::invalid(
                &storage_path,
                quantity.0.as_str(),
                &e.to_string(),
            )),
            Ok(q) if q.is_negative() || q.is_zero() => errors.push(FieldError::invalid(
                &storage_path,
                quantity.0.as_str(),
                "must be greater than zero",
            )),
            Ok(_) => {}
        },
    }
    if let Some(class) = spec.storage_class_name.as_deref().filter(|c| !c.is_empty()) {
        for message in names::dns1123_subdomain(class) {
            errors.push(FieldError::invalid(
                &path.child("storageClassName"),
                class,
                &message,
            ));
        }
    }
    if let Some(mode) = spec.volume_mode.as_deref()
        && mode != "Filesystem"
        && mode != "Block"
    {
        errors.push(FieldError::not_supported(
            &path.child("volumeMode"),
            mode,
            &["Block", "Filesystem"],
        ));
    }
    errors
}

/// `ValidatePersistentVolumeClaim`.
pub fn validate_claim(
    claim: &k8s_openapi::api::core::v1::PersistentVolumeClaim,
) -> Vec<FieldError> {
    let mut errors = validate_object_meta(
        &claim.metadata,
        true,
        names::name_is_dns_subdomain,
        &metadata(),
    );
    errors.extend(validate_claim_spec(
        claim.spec.as_ref(),
        &FieldPath::new("spec"),
    ));
    errors
}

/// An IntOrString that must be a non-negative integer or a percentage of at most 100%.
pub fn validate_int_or_percent(value: &IntOrString, path: &FieldPath) -> Vec<FieldError> {
    match value {
        IntOrString::Int(n) if *n < 0 => vec![FieldError::invalid(
            path,
            *n,
            "must be greater than or equal to 0",
        )],
        IntOrString::Int(_) => Vec::new(),
        IntOrString::String(s) => {
            let messages = names::percent(s);
            if !messages.is_empty() {
                return messages
                    .into_iter()
                    .map(|m| FieldError::invalid(path, s.as_str(), &m))
                    .collect();
            }
            let percent: u64 = s.trim_end_matches('%').parse().unwrap_or(u64::MAX);
            if percent > 100 {
                vec![FieldError::invalid(
                    path,
                    s.as_str(),
                    "must not be greater than 100%",
                )]
            } else {
                Vec::new()
            }
        }
    }
}

/// Whether an IntOrString is zero (`0` or `0%`).
pub fn is_zero(value: &IntOrString) -> bool {
    match value {
        IntOrString::Int(n) => *n == 0,
        IntOrString::String(s) => s.trim_end_matches('%').parse::<u64>() == Ok(0),
    }
}
