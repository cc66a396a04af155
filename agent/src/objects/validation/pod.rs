//! Pod and pod template validation (`ValidatePodSpec` and what it calls in Kubernetes'
//! `pkg/apis/core/validation`): volumes, containers, probes, environment, resources,
//! security contexts, scheduling fields.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    Affinity, Container, EnvVar, HTTPGetAction, KeyToPath, LifecycleHandler, NodeSelector,
    NodeSelectorTerm, ObjectFieldSelector, Pod, PodAffinityTerm, PodSpec, PodTemplateSpec, Probe,
    ResourceFieldSelector, SeccompProfile, SecurityContext, Volume,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta::{non_negative, validate_annotations, validate_label_selector, validate_labels};
use crate::objects::field::{BadValue, FieldError, FieldPath};
use crate::objects::names::{self, inclusive_range_error};
use crate::objects::quantity::Quantity;

const FILE_MODE_ERROR: &str = "must be a number between 0 and 0777 (octal), both inclusive";
const VALID_IP_ERROR: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";
const INIT_FORBIDDEN: &str = "may not be set for init containers without restartPolicy=Always";
const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
const VOLUME_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
];
const RESOURCE_FIELD_PATHS: &[&str] = &[
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

/// A whole Pod: metadata, spec, and the checks only standalone pods get.
pub fn validate_pod(pod: &Pod) -> Vec<FieldError> {
    let mut errors = super::meta::validate_object_meta(
        &pod.metadata,
        true,
        names::name_is_dns_subdomain,
        &FieldPath::new("metadata"),
    );
    let spec_path = FieldPath::new("spec");
    match pod.spec.as_ref() {
        None => errors.push(FieldError::required(&spec_path, "")),
        Some(spec) => {
            errors.extend(validate_pod_spec(spec, &[], &spec_path));
            for (i, container) in spec
                .containers
                .iter()
                .enumerate()
                .map(|(i, c)| (spec_path.child("containers").index(i), c))
                .chain(
                    spec.init_containers
                        .iter()
                        .flatten()
                        .enumerate()
                        .map(|(i, c)| (spec_path.child("initContainers").index(i), c)),
                )
            {
                let image = container.image.as_deref().unwrap_or("");
                if image.trim() != image {
                    errors.push(FieldError::invalid(
                        &i.child("image"),
                        image,
                        "must not have leading or trailing whitespace",
                    ));
                }
            }
        }
    }
    errors
}

/// `ValidatePodTemplateSpec`. `claim_volumes` are volume names provided from elsewhere (a
/// StatefulSet's volumeClaimTemplates), which mounts may refer to.
pub fn validate_pod_template(
    template: &PodTemplateSpec,
    claim_volumes: &[String],
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(meta) = template.metadata.as_ref() {
        errors.extend(validate_labels(meta.labels.as_ref(), &path.child("labels")));
        errors.extend(validate_annotations(
            meta.annotations.as_ref(),
            &path.child("annotations"),
        ));
    }
    match template.spec.as_ref() {
        None => errors.push(FieldError::required(&path.child("spec"), "")),
        Some(spec) => {
            errors.extend(validate_pod_spec(spec, claim_volumes, &path.child("spec")));
            if spec
                .ephemeral_containers
                .as_ref()
                .is_some_and(|e| !e.is_empty())
            {
                errors.push(FieldError::forbidden(
                    &path.children(&["spec", "ephemeralContainers"]),
                    "ephemeral containers not allowed in pod template",
                ));
            }
        }
    }
    errors
}

/// `ValidatePodSpec`.
pub fn validate_pod_spec(
    spec: &PodSpec,
    claim_volumes: &[String],
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut volumes = validate_volumes(
        spec.volumes.as_deref().unwrap_or_default(),
        &path.child("volumes"),
        &mut errors,
    );
    volumes.extend(claim_volumes.iter().cloned());
    let grace = spec.termination_grace_period_seconds;
    let containers_path = path.child("containers");
    if spec.containers.is_empty() {
        errors.push(FieldError::required(&containers_path, ""));
    }
    let mut all_names = HashSet::new();
    for (i, container) in spec.containers.iter().enumerate() {
        let container_path = containers_path.index(i);
        errors.extend(validate_container_common(
            container,
            &volumes,
            &container_path,
        ));
        if !all_names.insert(container.name.clone()) {
            errors.push(FieldError::duplicate(
                &container_path.child("name"),
                container.name.as_str(),
            ));
        }
        errors.extend(validate_container_handlers(
            container,
            grace,
            &container_path,
        ));
        if container.restart_policy.is_some() {
            errors.push(FieldError::forbidden(
                &container_path.child("restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    let init_path = path.child("initContainers");
    for (i, container) in spec.init_containers.iter().flatten().enumerate() {
        let container_path = init_path.index(i);
        errors.extend(validate_container_common(
            container,
            &volumes,
            &container_path,
        ));
        let restart_always = container.restart_policy.as_deref() == Some("Always");
        if let Some(policy) = container.restart_policy.as_deref()
            && policy != "Always"
        {
            errors.push(FieldError::not_supported(
                &container_path.child("restartPolicy"),
                policy,
                &["Always"],
            ));
        }
        if all_names.contains(&container.name) {
            errors.push(FieldError::duplicate(
                &container_path.child("name"),
                container.name.as_str(),
            ));
        } else if !container.name.is_empty() {
            all_names.insert(container.name.clone());
        }
        if restart_always {
            errors.extend(validate_container_handlers(
                container,
                grace,
                &container_path,
            ));
        } else {
            for (set, field) in [
                (container.lifecycle.is_some(), "lifecycle"),
                (container.liveness_probe.is_some(), "livenessProbe"),
                (container.readiness_probe.is_some(), "readinessProbe"),
                (container.startup_probe.is_some(), "startupProbe"),
            ] {
                if set {
                    errors.push(FieldError::forbidden(
                        &container_path.child(field),
                        INIT_FORBIDDEN,
                    ));
                }
            }
        }
    }
    errors.extend(check_host_port_conflicts(
        &spec.containers,
        &containers_path,
    ));
    if spec.host_network == Some(true) {
        for (i, container) in spec.containers.iter().enumerate() {
            for (j, port) in container.ports.iter().flatten().enumerate() {
                if port.host_port.unwrap_or(0) != port.container_port {
                    errors.push(FieldError::invalid(
                        &containers_path
                            .index(i)
                            .child("ports")
                            .index(j)
                            .child("containerPort"),
                        port.container_port,
                        "must match `hostPort` when `hostNetwork` is true",
                    ));
                }
            }
        }
    }
    let restart_path = path.child("restartPolicy");
    match spec.restart_policy.as_deref().unwrap_or("") {
        "" => errors.push(FieldError::required(&restart_path, "")),
        "Always" | "OnFailure" | "Never" => {}
        other => errors.push(FieldError::not_supported(
            &restart_path,
            other,
            &["Always", "Never", "OnFailure"],
        )),
    }
    let dns_path = path.child("dnsPolicy");
    let dns_policy = spec.dns_policy.as_deref().unwrap_or("");
    match dns_policy {
        "" => errors.push(FieldError::required(&dns_path, "")),
        "ClusterFirst" | "ClusterFirstWithHostNet" | "Default" | "None" => {}
        other => errors.push(FieldError::not_supported(
            &dns_path,
            other,
            &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
        )),
    }
    errors.extend(validate_labels(
        spec.node_selector.as_ref(),
        &path.child("nodeSelector"),
    ));
    if let Some(context) = spec.security_context.as_ref() {
        let sc_path = path.child("securityContext");
        errors.extend(check_id(context.fs_group, &sc_path.child("fsGroup")));
        errors.extend(check_id(context.run_as_user, &sc_path.child("runAsUser")));
        errors.extend(check_id(context.run_as_group, &sc_path.child("runAsGroup")));
        for (i, gid) in context.supplemental_groups.iter().flatten().enumerate() {
            errors.extend(check_id(
                Some(*gid),
                &sc_path.child("supplementalGroups").index(i),
            ));
        }
        if let Some(profile) = context.seccomp_profile.as_ref() {
            errors.extend(validate_seccomp(profile, &sc_path.child("seccompProfile")));
        }
    }
    if let Some(affinity) = spec.affinity.as_ref() {
        errors.extend(validate_affinity(affinity, &path.child("affinity")));
    }
    errors.extend(validate_dns_config(
        spec,
        dns_policy,
        &path.child("dnsConfig"),
    ));
    errors.extend(validate_topology_spread(
        spec,
        &path.child("topologySpreadConstraints"),
    ));
    if let Some(account) = spec
        .service_account_name
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        for message in names::dns1123_subdomain(account) {
            errors.push(FieldError::invalid(
                &path.child("serviceAccountName"),
                account,
                &message,
            ));
        }
    }
    if let Some(node) = spec.node_name.as_deref().filter(|s| !s.is_empty()) {
        for message in names::dns1123_subdomain(node) {
            errors.push(FieldError::invalid(&path.child("nodeName"), node, &message));
        }
    }
    if let Some(deadline) = spec.active_deadline_seconds
        && !(1..=i64::from(i32::MAX)).contains(&deadline)
    {
        errors.push(FieldError::invalid(
            &path.child("activeDeadlineSeconds"),
            deadline,
            &inclusive_range_error(1, i64::from(i32::MAX)),
        ));
    }
    if let Some(grace) = grace
        && grace < 0
    {
        errors.push(FieldError::invalid(
            &path.child("terminationGracePeriodSeconds"),
            grace,
            "must be greater than or equal to 0",
        ));
    }
    for field in ["hostname", "subdomain"] {
        let value = if field == "hostname" {
            &spec.hostname
        } else {
            &spec.subdomain
        };
        if let Some(value) = value.as_deref().filter(|s| !s.is_empty()) {
            for message in names::dns1123_label(value) {
                errors.push(FieldError::invalid(&path.child(field), value, &message));
            }
        }
    }
    errors.extend(validate_tolerations(spec, &path.child("tolerations")));
    for (i, alias) in spec.host_aliases.iter().flatten().enumerate() {
        let alias_path = path.child("hostAliases").index(i);
        if alias.ip.parse::<IpAddr>().is_err() {
            errors.push(FieldError::invalid(
                &alias_path.child("ip"),
                alias.ip.as_str(),
                VALID_IP_ERROR,
            ));
        }
        for (j, hostname) in alias.hostnames.iter().flatten().enumerate() {
            for message in names::dns1123_subdomain(hostname) {
                errors.push(FieldError::invalid(
                    &alias_path.child("hostnames").index(j),
                    hostname,
                    &message,
                ));
            }
        }
    }
    for (i, secret) in spec.image_pull_secrets.iter().flatten().enumerate() {
        if secret.name.is_empty() {
            errors.push(FieldError::required(
                &path.child("imagePullSecrets").index(i).child("name"),
                "",
            ));
        }
    }
    errors
}

/// Volumes: names unique DNS labels, exactly one source each, per-source rules. Returns the
/// names of the volumes mounts may refer to.
fn validate_volumes(
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

fn validate_volume_source(volume: &Volume, path: &FieldPath) -> Vec<FieldError> {
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

fn validate_items(items: Option<&[KeyToPath]>, path: &FieldPath) -> Vec<FieldError> {
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

fn validate_downward_file(
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

fn check_mode(mode: Option<i32>, path: &FieldPath) -> Vec<FieldError> {
    match mode {
        Some(m) if !(0..=0o777).contains(&m) => vec![FieldError::invalid(path, m, FILE_MODE_ERROR)],
        _ => Vec::new(),
    }
}

fn no_backsteps(target: &str, path: &FieldPath) -> Vec<FieldError> {
    if target.split('/').any(|part| part == "..") {
        vec![FieldError::invalid(path, target, "must not contain '..'")]
    } else {
        Vec::new()
    }
}

/// `validateLocalDescendingPath`: relative, no `..` element.
fn local_descending_path(target: &str, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if target.starts_with('/') {
        errors.push(FieldError::invalid(path, target, "must be a relative path"));
    }
    errors.extend(no_backsteps(target, path));
    errors
}

/// `ValidateLocalNonReservedPath`: a descending path that does not start with `..`.
fn local_non_reserved_path(target: &str, path: &FieldPath) -> Vec<FieldError> {
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

/// What every container kind is checked for.
fn validate_container_common(
    container: &Container,
    volumes: &BTreeSet<String>,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let name_path = path.child("name");
    if container.name.is_empty() {
        errors.push(FieldError::required(&name_path, ""));
    } else {
        for message in names::dns1123_label(&container.name) {
            errors.push(FieldError::invalid(
                &name_path,
                container.name.as_str(),
                &message,
            ));
        }
    }
    if container.image.as_deref().unwrap_or("").is_empty() {
        errors.push(FieldError::required(&path.child("image"), ""));
    }
    let policy_path = path.child("terminationMessagePolicy");
    match container
        .termination_message_policy
        .as_deref()
        .unwrap_or("")
    {
        "" => errors.push(FieldError::required(&policy_path, "")),
        "File" | "FallbackToLogsOnError" => {}
        other => errors.push(FieldError::invalid(
            &policy_path,
            other,
            "must be 'File' or 'FallbackToLogsOnError'",
        )),
    }
    if let Some(message_path) = container.termination_message_path.as_deref()
        && message_path.len() > 4096
    {
        errors.push(FieldError::too_long(
            &path.child("terminationMessagePath"),
            4096,
        ));
    }
    errors.extend(validate_ports(container, &path.child("ports")));
    for (i, env) in container.env.iter().flatten().enumerate() {
        errors.extend(validate_env(env, &path.child("env").index(i)));
    }
    for (i, source) in container.env_from.iter().flatten().enumerate() {
        let p = path.child("envFrom").index(i);
        if let Some(prefix) = source.prefix.as_deref().filter(|p| !p.is_empty()) {
            for message in names::env_var_name(prefix) {
                errors.push(FieldError::invalid(&p.child("prefix"), prefix, &message));
            }
        }
        let count =
            usize::from(source.config_map_ref.is_some()) + usize::from(source.secret_ref.is_some());
        if let Some(reference) = source.config_map_ref.as_ref() {
            errors.extend(check_reference_name(
                &reference.name,
                &p.children(&["configMapRef", "name"]),
            ));
        }
        if let Some(reference) = source.secret_ref.as_ref() {
            errors.extend(check_reference_name(
                &reference.name,
                &p.children(&["secretRef", "name"]),
            ));
        }
        if count == 0 {
            errors.push(FieldError::invalid(
                &path.child("envFrom"),
                "",
                "must specify one of: `configMapRef` or `secretRef`",
            ));
        } else if count > 1 {
            errors.push(FieldError::invalid(
                &path.child("envFrom"),
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
    let mut mount_points = HashSet::new();
    for (i, mount) in container.volume_mounts.iter().flatten().enumerate() {
        let p = path.child("volumeMounts").index(i);
        if mount.name.is_empty() {
            errors.push(FieldError::required(&p.child("name"), ""));
        }
        if !volumes.contains(&mount.name) {
            errors.push(FieldError::not_found(&p.child("name"), mount.name.as_str()));
        }
        if mount.mount_path.is_empty() {
            errors.push(FieldError::required(&p.child("mountPath"), ""));
        } else if !mount.mount_path.starts_with('/') {
            // Kubernetes leaves this to the node (Windows paths); berth runs Linux only.
            errors.push(FieldError::invalid(
                &p.child("mountPath"),
                mount.mount_path.as_str(),
                "must be an absolute path",
            ));
        }
        if !mount_points.insert(mount.mount_path.clone()) {
            errors.push(FieldError::invalid(
                &p.child("mountPath"),
                mount.mount_path.as_str(),
                "must be unique",
            ));
        }
        let sub_path = mount.sub_path.as_deref().unwrap_or("");
        if !sub_path.is_empty() {
            errors.extend(local_descending_path(sub_path, &p.child("subPath")));
        }
        if let Some(expr) = mount.sub_path_expr.as_deref().filter(|e| !e.is_empty()) {
            if !sub_path.is_empty() {
                errors.push(FieldError::invalid(
                    &p.child("subPathExpr"),
                    expr,
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            errors.extend(local_descending_path(expr, &p.child("subPathExpr")));
        }
        if let Some(propagation) = mount.mount_propagation.as_deref()
            && !["None", "HostToContainer", "Bidirectional"].contains(&propagation)
        {
            errors.push(FieldError::not_supported(
                &p.child("mountPropagation"),
                propagation,
                &["Bidirectional", "HostToContainer", "None"],
            ));
        }
    }
    let pull_path = path.child("imagePullPolicy");
    match container.image_pull_policy.as_deref().unwrap_or("") {
        "" => errors.push(FieldError::required(&pull_path, "")),
        "Always" | "IfNotPresent" | "Never" => {}
        other => errors.push(FieldError::not_supported(
            &pull_path,
            other,
            &["Always", "IfNotPresent", "Never"],
        )),
    }
    if let Some(resources) = container.resources.as_ref() {
        errors.extend(validate_resources(
            resources.limits.as_ref(),
            resources.requests.as_ref(),
            &path.child("resources"),
        ));
    }
    if let Some(context) = container.security_context.as_ref() {
        errors.extend(validate_security_context(
            context,
            &path.child("securityContext"),
        ));
    }
    errors
}

fn check_reference_name(name: &str, path: &FieldPath) -> Vec<FieldError> {
    if name.is_empty() {
        return vec![FieldError::required(path, "")];
    }
    names::dns1123_subdomain(name)
        .into_iter()
        .map(|m| FieldError::invalid(path, name, &m))
        .collect()
}

fn validate_ports(container: &Container, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut port_names = HashSet::new();
    for (i, port) in container.ports.iter().flatten().enumerate() {
        let p = path.index(i);
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            let messages = names::iana_svc_name(name);
            if !messages.is_empty() {
                for message in messages {
                    errors.push(FieldError::invalid(&p.child("name"), name, &message));
                }
            } else if !port_names.insert(name.to_owned()) {
                errors.push(FieldError::duplicate(&p.child("name"), name));
            }
        }
        if port.container_port == 0 {
            errors.push(FieldError::required(&p.child("containerPort"), ""));
        } else if !(1..=65535).contains(&port.container_port) {
            errors.push(FieldError::invalid(
                &p.child("containerPort"),
                port.container_port,
                &inclusive_range_error(1, 65535),
            ));
        }
        if let Some(host_port) = port.host_port.filter(|h| *h != 0)
            && !(1..=65535).contains(&host_port)
        {
            errors.push(FieldError::invalid(
                &p.child("hostPort"),
                host_port,
                &inclusive_range_error(1, 65535),
            ));
        }
        match port.protocol.as_deref().unwrap_or("") {
            "" => errors.push(FieldError::required(&p.child("protocol"), "")),
            "TCP" | "UDP" | "SCTP" => {}
            other => errors.push(FieldError::not_supported(
                &p.child("protocol"),
                other,
                &["SCTP", "TCP", "UDP"],
            )),
        }
        if let Some(ip) = port.host_ip.as_deref().filter(|ip| !ip.is_empty())
            && ip.parse::<IpAddr>().is_err()
        {
            errors.push(FieldError::invalid(&p.child("hostIP"), ip, VALID_IP_ERROR));
        }
    }
    errors
}

/// Two containers may not claim the same host port (protocol/hostIP/port).
fn check_host_port_conflicts(containers: &[Container], path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    for (i, container) in containers.iter().enumerate() {
        for (j, port) in container.ports.iter().flatten().enumerate() {
            let Some(host_port) = port.host_port.filter(|p| *p != 0) else {
                continue;
            };
            let key = format!(
                "{}/{}/{}",
                port.protocol.as_deref().unwrap_or("TCP"),
                port.host_ip.as_deref().unwrap_or(""),
                host_port
            );
            if !seen.insert(key.clone()) {
                errors.push(FieldError::duplicate(
                    &path.index(i).child("ports").index(j).child("hostPort"),
                    key,
                ));
            }
        }
    }
    errors
}

fn validate_env(env: &EnvVar, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if env.name.is_empty() {
        errors.push(FieldError::required(&path.child("name"), ""));
    } else {
        for message in names::env_var_name(&env.name) {
            errors.push(FieldError::invalid(
                &path.child("name"),
                env.name.as_str(),
                &message,
            ));
        }
    }
    let Some(source) = env.value_from.as_ref() else {
        return errors;
    };
    let p = path.child("valueFrom");
    let mut count = 0;
    if let Some(field_ref) = source.field_ref.as_ref() {
        count += 1;
        errors.extend(validate_field_selector(
            field_ref,
            ENV_FIELD_PATHS,
            &p.child("fieldRef"),
        ));
    }
    if let Some(resource_ref) = source.resource_field_ref.as_ref() {
        count += 1;
        errors.extend(validate_resource_selector(
            resource_ref,
            false,
            &p.child("resourceFieldRef"),
        ));
    }
    if let Some(key_ref) = source.config_map_key_ref.as_ref() {
        count += 1;
        errors.extend(validate_key_selector(
            &key_ref.name,
            &key_ref.key,
            &p.child("configMapKeyRef"),
        ));
    }
    if let Some(key_ref) = source.secret_key_ref.as_ref() {
        count += 1;
        errors.extend(validate_key_selector(
            &key_ref.name,
            &key_ref.key,
            &p.child("secretKeyRef"),
        ));
    }
    count += usize::from(source.file_key_ref.is_some());
    if count == 0 {
        errors.push(FieldError::invalid(
            &p,
            "",
            "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
        ));
    } else if env.value.as_deref().is_some_and(|v| !v.is_empty()) {
        errors.push(FieldError::invalid(
            &p,
            "",
            "may not be specified when `value` is not empty",
        ));
    } else if count > 1 {
        errors.push(FieldError::invalid(
            &p,
            "",
            "may not have more than one field specified at a time",
        ));
    }
    errors
}

fn validate_key_selector(name: &str, key: &str, path: &FieldPath) -> Vec<FieldError> {
    let mut errors: Vec<FieldError> = names::dns1123_subdomain(name)
        .into_iter()
        .map(|m| FieldError::invalid(&path.child("name"), name, &m))
        .collect();
    if key.is_empty() {
        errors.push(FieldError::required(&path.child("key"), ""));
    } else {
        for message in names::config_map_key(key) {
            errors.push(FieldError::invalid(&path.child("key"), key, &message));
        }
    }
    errors
}

/// `validateObjectFieldSelector`: a known field path, or `metadata.labels['key']` /
/// `metadata.annotations['key']`.
fn validate_field_selector(
    selector: &ObjectFieldSelector,
    allowed: &[&str],
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if selector.api_version.as_deref().unwrap_or("").is_empty() {
        errors.push(FieldError::required(&path.child("apiVersion"), ""));
        return errors;
    }
    if selector.field_path.is_empty() {
        errors.push(FieldError::required(&path.child("fieldPath"), ""));
        return errors;
    }
    if selector.api_version.as_deref() != Some("v1") {
        errors.push(FieldError::invalid(
            &path.child("fieldPath"),
            selector.field_path.as_str(),
            &format!(
                "error converting fieldPath: unsupported pod version: {}",
                selector.api_version.as_deref().unwrap_or("")
            ),
        ));
        return errors;
    }
    if let Some((field, subscript)) = split_subscript(&selector.field_path) {
        let messages = match field {
            "metadata.annotations" => names::qualified_name(&subscript.to_lowercase()),
            "metadata.labels" => names::qualified_name(subscript),
            _ => vec!["does not support subscript".to_owned()],
        };
        for message in messages {
            let value = if message == "does not support subscript" {
                field
            } else {
                subscript
            };
            errors.push(FieldError::invalid(path, value, &message));
        }
    } else if !allowed.contains(&selector.field_path.as_str()) {
        errors.push(FieldError::not_supported(
            &path.child("fieldPath"),
            selector.field_path.as_str(),
            allowed,
        ));
    }
    errors
}

/// `metadata.labels['app']` -> (`metadata.labels`, `app`).
pub fn split_subscript(field_path: &str) -> Option<(&str, &str)> {
    let open = field_path.find("['")?;
    let inner = field_path[open + 2..].strip_suffix("']")?;
    Some((&field_path[..open], inner))
}

fn validate_resource_selector(
    selector: &ResourceFieldSelector,
    volume: bool,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if volume && selector.container_name.as_deref().unwrap_or("").is_empty() {
        errors.push(FieldError::required(&path.child("containerName"), ""));
    }
    if selector.resource.is_empty() {
        errors.push(FieldError::required(&path.child("resource"), ""));
    } else if !RESOURCE_FIELD_PATHS.contains(&selector.resource.as_str()) {
        errors.push(FieldError::not_supported(
            &path.child("resource"),
            selector.resource.as_str(),
            RESOURCE_FIELD_PATHS,
        ));
    }
    if let Some(divisor) = selector.divisor.as_ref() {
        match Quantity::parse(&divisor.0) {
            Err(e) => errors.push(FieldError::invalid(
                &path.child("divisor"),
                divisor.0.as_str(),
                &e.to_string(),
            )),
            Ok(q) => {
                let cpu = selector.resource.ends_with(".cpu");
                let allowed: &[&str] = if cpu {
                    &["1m", "1"]
                } else {
                    &[
                        "1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi",
                        "1Ei",
                    ]
                };
                if !allowed
                    .iter()
                    .any(|a| Quantity::parse(a).is_ok_and(|a| a == q))
                {
                    let detail = if cpu {
                        "only divisor's values 1m and 1 are supported with the cpu resource"
                    } else {
                        "only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported with the memory resource"
                    };
                    errors.push(FieldError::invalid(
                        &path.child("divisor"),
                        divisor.0.as_str(),
                        detail,
                    ));
                }
            }
        }
    }
    errors
}

fn is_standard_container_resource(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage")
        || name.starts_with("hugepages-")
        || (name.contains('/')
            && !name.starts_with("kubernetes.io/")
            && names::qualified_name(name).is_empty())
}

/// `ValidateResourceRequirements` for a container: known resource names, quantities that
/// parse and are not negative, requests not above limits.
pub fn validate_resources(
    limits: Option<&BTreeMap<String, ApiQuantity>>,
    requests: Option<&BTreeMap<String, ApiQuantity>>,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut parsed_limits = BTreeMap::new();
    for (kind, map) in [("limits", limits), ("requests", requests)] {
        for (name, quantity) in map.into_iter().flatten() {
            let p = path.child(kind).key(name);
            if !is_standard_container_resource(name) {
                errors.push(FieldError::invalid(
                    &p,
                    name.as_str(),
                    "must be a standard resource for containers",
                ));
            }
            match Quantity::parse(&quantity.0) {
                Err(e) => errors.push(FieldError::invalid(&p, quantity.0.as_str(), &e.to_string())),
                Ok(q) if q.is_negative() => errors.push(FieldError::invalid(
                    &p,
                    quantity.0.as_str(),
                    "must be greater than or equal to 0",
                )),
                Ok(q) => {
                    if kind == "limits" {
                        parsed_limits.insert(name.clone(), (q, quantity.0.clone()));
                    } else if let Some((limit, limit_text)) = parsed_limits.get(name)
                        && q > *limit
                    {
                        errors.push(FieldError::invalid(
                            &path.child("requests"),
                            quantity.0.as_str(),
                            &format!("must be less than or equal to {name} limit of {limit_text}"),
                        ));
                    }
                }
            }
        }
    }
    errors
}

fn check_id(id: Option<i64>, path: &FieldPath) -> Vec<FieldError> {
    match id {
        Some(v) if !(0..=i64::from(i32::MAX)).contains(&v) => {
            vec![FieldError::invalid(
                path,
                v,
                &inclusive_range_error(0, i64::from(i32::MAX)),
            )]
        }
        _ => Vec::new(),
    }
}

fn validate_seccomp(profile: &SeccompProfile, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    match profile.type_.as_str() {
        "Localhost" => {
            if profile
                .localhost_profile
                .as_deref()
                .unwrap_or("")
                .is_empty()
            {
                errors.push(FieldError::required(
                    &path.child("localhostProfile"),
                    "must be set when seccomp type is Localhost",
                ));
            }
        }
        "RuntimeDefault" | "Unconfined" => {
            if let Some(local) = profile.localhost_profile.as_deref() {
                errors.push(FieldError::invalid(
                    &path.child("localhostProfile"),
                    local,
                    "can only be set when seccomp type is Localhost",
                ));
            }
        }
        other => errors.push(FieldError::not_supported(
            &path.child("type"),
            other,
            &["Localhost", "RuntimeDefault", "Unconfined"],
        )),
    }
    errors
}

fn validate_security_context(context: &SecurityContext, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    errors.extend(check_id(context.run_as_user, &path.child("runAsUser")));
    errors.extend(check_id(context.run_as_group, &path.child("runAsGroup")));
    if let Some(proc_mount) = context.proc_mount.as_deref()
        && !["Default", "Unmasked"].contains(&proc_mount)
    {
        errors.push(FieldError::not_supported(
            &path.child("procMount"),
            proc_mount,
            &["Default", "Unmasked"],
        ));
    }
    if let Some(profile) = context.seccomp_profile.as_ref() {
        errors.extend(validate_seccomp(profile, &path.child("seccompProfile")));
    }
    if context.allow_privilege_escalation == Some(false) {
        if context.privileged == Some(true) {
            errors.push(FieldError::invalid(
                path,
                BadValue::json(context),
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            ));
        }
        let adds_sys_admin = context
            .capabilities
            .as_ref()
            .and_then(|c| c.add.as_ref())
            .is_some_and(|add| add.iter().any(|c| c == "CAP_SYS_ADMIN"));
        if adds_sys_admin {
            errors.push(FieldError::invalid(
                path,
                BadValue::json(context),
                "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
            ));
        }
    }
    errors
}

/// Probes and lifecycle hooks of an app container (or a restartable init container).
fn validate_container_handlers(
    container: &Container,
    grace: Option<i64>,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(lifecycle) = container.lifecycle.as_ref() {
        let p = path.child("lifecycle");
        if let Some(handler) = lifecycle.post_start.as_ref() {
            errors.extend(validate_lifecycle_handler(
                handler,
                grace,
                &p.child("postStart"),
            ));
        }
        if let Some(handler) = lifecycle.pre_stop.as_ref() {
            errors.extend(validate_lifecycle_handler(
                handler,
                grace,
                &p.child("preStop"),
            ));
        }
    }
    if let Some(probe) = container.liveness_probe.as_ref() {
        let p = path.child("livenessProbe");
        errors.extend(validate_probe(probe, &p));
        if probe.success_threshold.unwrap_or(0) != 1 {
            errors.push(FieldError::invalid(
                &p.child("successThreshold"),
                probe.success_threshold.unwrap_or(0),
                "must be 1",
            ));
        }
    }
    if let Some(probe) = container.readiness_probe.as_ref() {
        let p = path.child("readinessProbe");
        errors.extend(validate_probe(probe, &p));
        if let Some(seconds) = probe.termination_grace_period_seconds {
            errors.push(FieldError::invalid(
                &p.child("terminationGracePeriodSeconds"),
                seconds,
                "must not be set for readinessProbes",
            ));
        }
    }
    if let Some(probe) = container.startup_probe.as_ref() {
        let p = path.child("startupProbe");
        errors.extend(validate_probe(probe, &p));
        if probe.success_threshold.unwrap_or(0) != 1 {
            errors.push(FieldError::invalid(
                &p.child("successThreshold"),
                probe.success_threshold.unwrap_or(0),
                "must be 1",
            ));
        }
    }
    errors
}

fn validate_probe(probe: &Probe, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut handlers = Vec::new();
    if probe.exec.is_some() {
        handlers.push("exec");
    }
    if probe.http_get.is_some() {
        handlers.push("httpGet");
    }
    if probe.tcp_socket.is_some() {
        handlers.push("tcpSocket");
    }
    if probe.grpc.is_some() {
        handlers.push("grpc");
    }
    errors.extend(check_handler_count(&handlers, path));
    if let Some(exec) = probe.exec.as_ref()
        && exec.command.as_ref().is_none_or(Vec::is_empty)
    {
        errors.push(FieldError::required(
            &path.children(&["exec", "command"]),
            "",
        ));
    }
    if let Some(http_get) = probe.http_get.as_ref() {
        errors.extend(validate_http_get(http_get, &path.child("httpGet")));
    }
    if let Some(tcp) = probe.tcp_socket.as_ref() {
        errors.extend(validate_port_num_or_name(
            &tcp.port,
            &path.children(&["tcpSocket", "port"]),
        ));
    }
    for (value, field) in [
        (probe.initial_delay_seconds, "initialDelaySeconds"),
        (probe.timeout_seconds, "timeoutSeconds"),
        (probe.period_seconds, "periodSeconds"),
        (probe.success_threshold, "successThreshold"),
        (probe.failure_threshold, "failureThreshold"),
    ] {
        errors.extend(non_negative(value.map(i64::from), &path.child(field)));
    }
    if let Some(seconds) = probe.termination_grace_period_seconds
        && seconds <= 0
    {
        errors.push(FieldError::invalid(
            &path.child("terminationGracePeriodSeconds"),
            seconds,
            "must be greater than 0",
        ));
    }
    errors
}

fn check_handler_count(handlers: &[&str], path: &FieldPath) -> Vec<FieldError> {
    if handlers.is_empty() {
        return vec![FieldError::required(path, "must specify a handler type")];
    }
    handlers[1..]
        .iter()
        .map(|h| FieldError::forbidden(&path.child(h), "may not specify more than 1 handler type"))
        .collect()
}

fn validate_lifecycle_handler(
    handler: &LifecycleHandler,
    grace: Option<i64>,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut handlers = Vec::new();
    if handler.exec.is_some() {
        handlers.push("exec");
    }
    if handler.http_get.is_some() {
        handlers.push("httpGet");
    }
    if handler.tcp_socket.is_some() {
        handlers.push("tcpSocket");
    }
    if handler.sleep.is_some() {
        handlers.push("sleep");
    }
    let mut errors = check_handler_count(&handlers, path);
    if let Some(exec) = handler.exec.as_ref()
        && exec.command.as_ref().is_none_or(Vec::is_empty)
    {
        errors.push(FieldError::required(
            &path.children(&["exec", "command"]),
            "",
        ));
    }
    if let Some(http_get) = handler.http_get.as_ref() {
        errors.extend(validate_http_get(http_get, &path.child("httpGet")));
    }
    if let Some(tcp) = handler.tcp_socket.as_ref() {
        errors.extend(validate_port_num_or_name(
            &tcp.port,
            &path.children(&["tcpSocket", "port"]),
        ));
    }
    if let Some(sleep) = handler.sleep.as_ref()
        && let Some(grace) = grace
        && (sleep.seconds < 0 || sleep.seconds > grace)
    {
        errors.push(FieldError::invalid(
            &path.children(&["sleep", "seconds"]),
            sleep.seconds,
            &format!("must be non-negative and less than terminationGracePeriodSeconds ({grace})"),
        ));
    }
    errors
}

fn validate_http_get(action: &HTTPGetAction, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if action.path.as_deref().unwrap_or("").is_empty() {
        errors.push(FieldError::required(&path.child("path"), ""));
    }
    errors.extend(validate_port_num_or_name(&action.port, &path.child("port")));
    let scheme = action.scheme.as_deref().unwrap_or("");
    if scheme != "HTTP" && scheme != "HTTPS" {
        errors.push(FieldError::not_supported(
            &path.child("scheme"),
            scheme,
            &["HTTP", "HTTPS"],
        ));
    }
    for header in action.http_headers.iter().flatten() {
        let valid = !header.name.is_empty()
            && header
                .name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c));
        if !valid {
            errors.push(FieldError::invalid(
                &path.child("httpHeaders"),
                header.name.as_str(),
                "a valid HTTP header must consist of alphanumeric characters or '-' (e.g. 'X-Header-Name', regex used for validation is '[-A-Za-z0-9]+')",
            ));
        }
    }
    errors
}

/// `ValidatePortNumOrName`.
pub fn validate_port_num_or_name(port: &IntOrString, path: &FieldPath) -> Vec<FieldError> {
    match port {
        IntOrString::Int(n) if !(1..=65535).contains(n) => {
            vec![FieldError::invalid(
                path,
                *n,
                &inclusive_range_error(1, 65535),
            )]
        }
        IntOrString::Int(_) => Vec::new(),
        IntOrString::String(name) => names::iana_svc_name(name)
            .into_iter()
            .map(|m| FieldError::invalid(path, name.as_str(), &m))
            .collect(),
    }
}

fn validate_dns_config(spec: &PodSpec, dns_policy: &str, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let config = spec.dns_config.as_ref();
    let nameservers = config
        .and_then(|c| c.nameservers.as_deref())
        .unwrap_or_default();
    if dns_policy == "None" {
        if config.is_none() {
            errors.push(FieldError::required(
                path,
                "must provide `dnsConfig` when `dnsPolicy` is None",
            ));
            return errors;
        }
        if nameservers.is_empty() {
            errors.push(FieldError::required(
                &path.child("nameservers"),
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            ));
            return errors;
        }
    }
    let Some(config) = config else { return errors };
    if nameservers.len() > 3 {
        errors.push(FieldError::invalid(
            &path.child("nameservers"),
            BadValue::json(&nameservers),
            "must not have more than 3 nameservers",
        ));
    }
    for (i, server) in nameservers.iter().enumerate() {
        if server.parse::<IpAddr>().is_err() {
            errors.push(FieldError::invalid(
                &path.child("nameservers").index(i),
                server,
                VALID_IP_ERROR,
            ));
        }
    }
    let searches = config.searches.as_deref().unwrap_or_default();
    if searches.len() > 32 {
        errors.push(FieldError::invalid(
            &path.child("searches"),
            BadValue::json(&searches),
            "must not have more than 32 search paths",
        ));
    }
    if searches.join(" ").len() > 2048 {
        errors.push(FieldError::invalid(
            &path.child("searches"),
            BadValue::json(&searches),
            "must not have more than 2048 characters (including spaces) in the search list",
        ));
    }
    for (i, search) in searches.iter().enumerate() {
        if search == "." {
            continue;
        }
        let trimmed = search.strip_suffix('.').unwrap_or(search);
        for message in names::dns1123_subdomain(trimmed) {
            errors.push(FieldError::invalid(
                &path.child("searches").index(i),
                trimmed,
                &message,
            ));
        }
    }
    for (i, option) in config.options.iter().flatten().enumerate() {
        if option.name.as_deref().unwrap_or("").is_empty() {
            errors.push(FieldError::required(
                &path.child("options").index(i),
                "Option.Name must not be empty",
            ));
        }
    }
    errors
}

fn validate_tolerations(spec: &PodSpec, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (i, toleration) in spec.tolerations.iter().flatten().enumerate() {
        let p = path.index(i);
        let key = toleration.key.as_deref().unwrap_or("");
        let operator = toleration.operator.as_deref().unwrap_or("");
        let value = toleration.value.as_deref().unwrap_or("");
        let effect = toleration.effect.as_deref().unwrap_or("");
        if !key.is_empty() {
            for message in names::qualified_name(key) {
                errors.push(FieldError::invalid(&p.child("key"), key, &message));
            }
        }
        if key.is_empty() && operator != "Exists" {
            errors.push(FieldError::invalid(
                &p.child("operator"),
                operator,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if toleration.toleration_seconds.is_some() && effect != "NoExecute" {
            errors.push(FieldError::invalid(
                &p.child("effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match operator {
            "Equal" | "" => {
                let messages = names::label_value(value);
                if !messages.is_empty() {
                    errors.push(FieldError::invalid(
                        &p.child("operator"),
                        value,
                        &messages.join(";"),
                    ));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    errors.push(FieldError::invalid(
                        &p.child("operator"),
                        BadValue::json(toleration),
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errors.push(FieldError::not_supported(
                &p.child("operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect)
        {
            errors.push(FieldError::not_supported(
                &p.child("effect"),
                effect,
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            ));
        }
    }
    errors
}

fn validate_node_selector(selector: &NodeSelector, path: &FieldPath) -> Vec<FieldError> {
    let terms_path = path.child("nodeSelectorTerms");
    if selector.node_selector_terms.is_empty() {
        return vec![FieldError::required(
            &terms_path,
            "must have at least one node selector term",
        )];
    }
    selector
        .node_selector_terms
        .iter()
        .enumerate()
        .flat_map(|(i, term)| validate_node_selector_term(term, &terms_path.index(i)))
        .collect()
}

fn validate_node_selector_term(term: &NodeSelectorTerm, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (j, requirement) in term.match_expressions.iter().flatten().enumerate() {
        let p = path.child("matchExpressions").index(j);
        let values = requirement.values.as_deref().unwrap_or_default();
        match requirement.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => errors.push(FieldError::required(
                &p.child("values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => errors.push(FieldError::forbidden(
                &p.child("values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "Gt" | "Lt" if values.len() != 1 => errors.push(FieldError::required(
                &p.child("values"),
                "must be specified single value when `operator` is 'Lt' or 'Gt'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
            other => errors.push(FieldError::invalid(
                &p.child("operator"),
                other,
                "not a valid selector operator",
            )),
        }
        for message in names::qualified_name(&requirement.key) {
            errors.push(FieldError::invalid(
                &p.child("key"),
                requirement.key.as_str(),
                &message,
            ));
        }
    }
    for (j, requirement) in term.match_fields.iter().flatten().enumerate() {
        let p = path.child("matchFields").index(j);
        let values = requirement.values.as_deref().unwrap_or_default();
        match requirement.operator.as_str() {
            "In" | "NotIn" if values.len() != 1 => errors.push(FieldError::required(
                &p.child("values"),
                "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
            )),
            "In" | "NotIn" => {}
            other => errors.push(FieldError::invalid(
                &p.child("operator"),
                other,
                "not a valid selector operator",
            )),
        }
        if requirement.key != "metadata.name" {
            errors.push(FieldError::not_supported(
                &p.child("key"),
                requirement.key.as_str(),
                &["metadata.name"],
            ));
        }
    }
    errors
}

fn validate_affinity_term(term: &PodAffinityTerm, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(selector) = term.label_selector.as_ref() {
        errors.extend(validate_label_selector(
            selector,
            &path.child("labelSelector"),
        ));
    }
    for (i, namespace) in term.namespaces.iter().flatten().enumerate() {
        for message in names::dns1123_label(namespace) {
            errors.push(FieldError::invalid(
                &path.child("namespaces").index(i),
                namespace,
                &message,
            ));
        }
    }
    if term.topology_key.is_empty() {
        errors.push(FieldError::required(
            &path.child("topologyKey"),
            "can not be empty",
        ));
    } else {
        for message in names::qualified_name(&term.topology_key) {
            errors.push(FieldError::invalid(
                &path.child("topologyKey"),
                term.topology_key.as_str(),
                &message,
            ));
        }
    }
    errors
}

fn check_weight(weight: i32, path: &FieldPath) -> Vec<FieldError> {
    if (1..=100).contains(&weight) {
        Vec::new()
    } else {
        vec![FieldError::invalid(
            path,
            weight,
            "must be in the range 1-100",
        )]
    }
}

fn validate_affinity(affinity: &Affinity, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(node) = affinity.node_affinity.as_ref() {
        let p = path.child("nodeAffinity");
        if let Some(required) = node
            .required_during_scheduling_ignored_during_execution
            .as_ref()
        {
            errors.extend(validate_node_selector(
                required,
                &p.child("requiredDuringSchedulingIgnoredDuringExecution"),
            ));
        }
        for (i, term) in node
            .preferred_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
            .enumerate()
        {
            let tp = p
                .child("preferredDuringSchedulingIgnoredDuringExecution")
                .index(i);
            errors.extend(check_weight(term.weight, &tp.child("weight")));
            errors.extend(validate_node_selector_term(
                &term.preference,
                &tp.child("preference"),
            ));
        }
    }
    for (field, required, preferred) in [
        (
            "podAffinity",
            affinity.pod_affinity.as_ref().and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            }),
            affinity.pod_affinity.as_ref().and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            }),
        ),
        (
            "podAntiAffinity",
            affinity.pod_anti_affinity.as_ref().and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            }),
            affinity.pod_anti_affinity.as_ref().and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            }),
        ),
    ] {
        let p = path.child(field);
        for (i, term) in required.into_iter().flatten().enumerate() {
            errors.extend(validate_affinity_term(
                term,
                &p.child("requiredDuringSchedulingIgnoredDuringExecution")
                    .index(i),
            ));
        }
        for (i, term) in preferred.into_iter().flatten().enumerate() {
            let tp = p
                .child("preferredDuringSchedulingIgnoredDuringExecution")
                .index(i);
            errors.extend(check_weight(term.weight, &tp.child("weight")));
            errors.extend(validate_affinity_term(
                &term.pod_affinity_term,
                &tp.child("podAffinityTerm"),
            ));
        }
    }
    errors
}

fn validate_topology_spread(spec: &PodSpec, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let constraints = spec
        .topology_spread_constraints
        .as_deref()
        .unwrap_or_default();
    for (i, constraint) in constraints.iter().enumerate() {
        let p = path.index(i);
        if constraint.max_skew <= 0 {
            errors.push(FieldError::invalid(
                &p.child("maxSkew"),
                constraint.max_skew,
                "must be greater than zero",
            ));
        }
        if constraint.topology_key.is_empty() {
            errors.push(FieldError::required(
                &p.child("topologyKey"),
                "can not be empty",
            ));
        } else {
            for message in names::qualified_name(&constraint.topology_key) {
                errors.push(FieldError::invalid(
                    &p.child("topologyKey"),
                    constraint.topology_key.as_str(),
                    &message,
                ));
            }
        }
        let when = constraint.when_unsatisfiable.as_str();
        if when != "DoNotSchedule" && when != "ScheduleAnyway" {
            errors.push(FieldError::not_supported(
                &p.child("whenUnsatisfiable"),
                when,
                &["DoNotSchedule", "ScheduleAnyway"],
            ));
        }
        let repeated = constraints[i + 1..].iter().any(|c| {
            c.topology_key == constraint.topology_key
                && c.when_unsatisfiable == constraint.when_unsatisfiable
        });
        if repeated {
            errors.push(FieldError::duplicate(
                &p.child("{topologyKey, whenUnsatisfiable}"),
                format!("{{{}, {}}}", constraint.topology_key, when),
            ));
        }
        if let Some(selector) = constraint.label_selector.as_ref() {
            errors.extend(validate_label_selector(selector, &p.child("labelSelector")));
        }
    }
    errors
}
