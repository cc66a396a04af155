//! Scheduling and DNS fields of a pod spec: dnsConfig, tolerations, affinity and topology
//! spread constraints.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    Affinity, NodeSelector, NodeSelectorTerm, PodAffinityTerm, PodSpec,
};

use super::meta::validate_label_selector;
use crate::objects::field::{BadValue, FieldError, FieldPath};
use crate::objects::names;

use super::pod::VALID_IP_ERROR;

pub(super) fn validate_dns_config(
    spec: &PodSpec,
    dns_policy: &str,
    path: &FieldPath,
) -> Vec<FieldError> {
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

pub(super) fn validate_tolerations(spec: &PodSpec, path: &FieldPath) -> Vec<FieldError> {
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

pub(super) fn validate_node_selector(selector: &NodeSelector, path: &FieldPath) -> Vec<FieldError> {
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

pub(super) fn validate_node_selector_term(
    term: &NodeSelectorTerm,
    path: &FieldPath,
) -> Vec<FieldError> {
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

pub(super) fn validate_affinity_term(term: &PodAffinityTerm, path: &FieldPath) -> Vec<FieldError> {
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

pub(super) fn check_weight(weight: i32, path: &FieldPath) -> Vec<FieldError> {
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

pub(super) fn validate_affinity(affinity: &Affinity, path: &FieldPath) -> Vec<FieldError> {
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

pub(super) fn validate_topology_spread(spec: &PodSpec, path: &FieldPath) -> Vec<FieldError> {
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
