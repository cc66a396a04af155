//! Pod and pod template validation (`ValidatePodSpec` in Kubernetes'
//! `pkg/apis/core/validation`): the pod-level fields, delegating volumes, containers and
//! scheduling fields to the sibling modules.

use std::collections::HashSet;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Pod, PodSpec, PodTemplateSpec};

use super::meta::{validate_annotations, validate_labels};
use crate::objects::field::{FieldError, FieldPath};
use crate::objects::names::{self, inclusive_range_error};

use super::container::{
    check_host_port_conflicts, check_id, validate_container_common, validate_container_handlers,
    validate_seccomp,
};
use super::scheduling::{
    validate_affinity, validate_dns_config, validate_tolerations, validate_topology_spread,
};
use super::volumes::validate_volumes;

/// The message Kubernetes gives for an address that is not an IP.
pub(super) const VALID_IP_ERROR: &str =
    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";
const INIT_FORBIDDEN: &str = "may not be set for init containers without restartPolicy=Always";

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
