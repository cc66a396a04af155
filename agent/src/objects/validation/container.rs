//! Container validation: names, images, ports, environment, mounts, resources, security
//! context, probes and lifecycle hooks (`validateContainerCommon` and friends).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    Container, EnvVar, HTTPGetAction, LifecycleHandler, ObjectFieldSelector, Probe,
    ResourceFieldSelector, SeccompProfile, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta::non_negative;
use crate::objects::field::{BadValue, FieldError, FieldPath};
use crate::objects::names::{self, inclusive_range_error};
use crate::objects::quantity::Quantity;

use super::pod::VALID_IP_ERROR;
use super::volumes::local_descending_path;

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
const RESOURCE_FIELD_PATHS: &[&str] = &[
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

/// What every container kind is checked for.
pub(super) fn validate_container_common(
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

pub(super) fn check_reference_name(name: &str, path: &FieldPath) -> Vec<FieldError> {
    if name.is_empty() {
        return vec![FieldError::required(path, "")];
    }
    names::dns1123_subdomain(name)
        .into_iter()
        .map(|m| FieldError::invalid(path, name, &m))
        .collect()
}

pub(super) fn validate_ports(container: &Container, path: &FieldPath) -> Vec<FieldError> {
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
pub(super) fn check_host_port_conflicts(
    containers: &[Container],
    path: &FieldPath,
) -> Vec<FieldError> {
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

pub(super) fn validate_env(env: &EnvVar, path: &FieldPath) -> Vec<FieldError> {
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

pub(super) fn validate_key_selector(name: &str, key: &str, path: &FieldPath) -> Vec<FieldError> {
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
pub(super) fn validate_field_selector(
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

pub(super) fn validate_resource_selector(
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

pub(super) fn is_standard_container_resource(name: &str) -> bool {
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

pub(super) fn check_id(id: Option<i64>, path: &FieldPath) -> Vec<FieldError> {
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

pub(super) fn validate_seccomp(profile: &SeccompProfile, path: &FieldPath) -> Vec<FieldError> {
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

pub(super) fn validate_security_context(
    context: &SecurityContext,
    path: &FieldPath,
) -> Vec<FieldError> {
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
pub(super) fn validate_container_handlers(
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

pub(super) fn validate_probe(probe: &Probe, path: &FieldPath) -> Vec<FieldError> {
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

pub(super) fn check_handler_count(handlers: &[&str], path: &FieldPath) -> Vec<FieldError> {
    if handlers.is_empty() {
        return vec![FieldError::required(path, "must specify a handler type")];
    }
    handlers[1..]
        .iter()
        .map(|h| FieldError::forbidden(&path.child(h), "may not specify more than 1 handler type"))
        .collect()
}

pub(super) fn validate_lifecycle_handler(
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

pub(super) fn validate_http_get(action: &HTTPGetAction, path: &FieldPath) -> Vec<FieldError> {
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
