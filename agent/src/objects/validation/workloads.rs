//! StatefulSet, DaemonSet, Job and CronJob validation (`pkg/apis/{apps,batch}/validation`),
//! with berth's few stricter rules marked where they are.

use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job, JobSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::core::{is_zero, validate_claim_spec, validate_int_or_percent};
use super::meta::{non_negative, selector_is_empty, validate_label_selector, validate_object_meta};
use super::pod::validate_pod_template;
use crate::objects::field::{BadValue, FieldError, FieldPath};
use crate::objects::names;
use crate::objects::schedule;
use crate::objects::selector::Selector;
use crate::objects::strategy::{
    JOB_CONTROLLER_UID_LABEL, JOB_NAME_LABEL, LEGACY_JOB_CONTROLLER_UID_LABEL,
    LEGACY_JOB_NAME_LABEL,
};

fn template_labels(
    template: &PodTemplateSpec,
) -> Option<&std::collections::BTreeMap<String, String>> {
    template.metadata.as_ref().and_then(|m| m.labels.as_ref())
}

/// Selector present, valid, non-empty, and matching the template's labels.
fn validate_selector_and_template(
    selector: &LabelSelector,
    template: &PodTemplateSpec,
    spec_path: &FieldPath,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let selector_path = spec_path.child("selector");
    if selector_is_empty(selector) {
        errors.push(FieldError::required(&selector_path, ""));
        return errors;
    }
    errors.extend(validate_label_selector(selector, &selector_path));
    if let Ok(parsed) = Selector::from_label_selector(Some(selector))
        && !parsed.matches(&template_labels(template))
    {
        errors.push(FieldError::invalid(
            &spec_path.children(&["template", "metadata", "labels"]),
            BadValue::string_map(template_labels(template)),
            "`selector` does not match template `labels`",
        ));
    }
    errors
}

fn restart_policy(template: &PodTemplateSpec) -> &str {
    template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("")
}

/// `ValidateStatefulSet`, plus berth's rules: the pod template is validated in full (claim
/// templates count as volumes), names leave room for the ordinal, and the partition may not
/// exceed the replica count.
pub fn validate_stateful_set(set: &StatefulSet) -> Vec<FieldError> {
    let mut errors = validate_object_meta(
        &set.metadata,
        true,
        names::name_is_dns_label,
        &FieldPath::new("metadata"),
    );
    let spec_path = FieldPath::new("spec");
    let Some(spec) = set.spec.as_ref() else {
        errors.push(FieldError::required(&spec_path, ""));
        return errors;
    };
    let policy_path = spec_path.child("podManagementPolicy");
    match spec.pod_management_policy.as_deref().unwrap_or("") {
        "" => errors.push(FieldError::required(&policy_path, "")),
        "OrderedReady" | "Parallel" => {}
        other => errors.push(FieldError::invalid(
            &policy_path,
            other,
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    let strategy_path = spec_path.child("updateStrategy");
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    match strategy.type_.as_deref().unwrap_or("") {
        "" => errors.push(FieldError::required(&strategy_path, "")),
        "OnDelete" => {
            if strategy.rolling_update.is_some() {
                errors.push(FieldError::invalid(
                    &strategy_path.child("rollingUpdate"),
                    BadValue::json(&strategy.rolling_update),
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        "RollingUpdate" => {
            if let Some(rolling) = strategy.rolling_update.as_ref() {
                let rolling_path = strategy_path.child("rollingUpdate");
                let partition_path = rolling_path.child("partition");
                errors.extend(non_negative(
                    rolling.partition.map(i64::from),
                    &partition_path,
                ));
                if let Some(partition) = rolling.partition
                    && replicas >= 0
                    && partition > replicas
                {
                    // berth rule: Kubernetes accepts a partition above the replica count and
                    // then never updates any pod.
                    errors.push(FieldError::invalid(
                        &partition_path,
                        partition,
                        &format!(
                            "must be less than or equal to spec.replicas ({replicas}): no pod would ever be updated (berth rejects this; Kubernetes accepts it)"
                        ),
                    ));
                }
                if let Some(max) = rolling.max_unavailable.as_ref() {
                    let max_path = rolling_path.child("maxUnavailable");
                    errors.extend(validate_int_or_percent(max, &max_path));
                    if is_zero(max) {
                        errors.push(FieldError::invalid(
                            &max_path,
                            BadValue::json(max),
                            "must be greater than 0",
                        ));
                    }
                }
            }
        }
        other => errors.push(FieldError::invalid(
            &strategy_path,
            other,
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    if let Some(retention) = spec.persistent_volume_claim_retention_policy.as_ref() {
        let retention_path = spec_path.child("persistentVolumeClaimRetentionPolicy");
        for (field, value) in [
            ("whenDeleted", &retention.when_deleted),
            ("whenScaled", &retention.when_scaled),
        ] {
            let value = value.as_deref().unwrap_or("");
            if value != "Retain" && value != "Delete" {
                errors.push(FieldError::not_supported(
                    &retention_path.child(field),
                    value,
                    &["Retain", "Delete"],
                ));
            }
        }
    }
    let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0);
    errors.extend(non_negative(
        Some(i64::from(start)),
        &spec_path.children(&["ordinals", "start"]),
    ));
    errors.extend(non_negative(
        Some(i64::from(replicas)),
        &spec_path.child("replicas"),
    ));
    errors.extend(non_negative(
        spec.min_ready_seconds.map(i64::from),
        &spec_path.child("minReadySeconds"),
    ));
    errors.extend(non_negative(
        spec.revision_history_limit.map(i64::from),
        &spec_path.child("revisionHistoryLimit"),
    ));
    errors.extend(validate_selector_and_template(
        &spec.selector,
        &spec.template,
        &spec_path,
    ));
    // berth: pod names `<name>-<ordinal>` must be DNS labels, or no pod could be created.
    if let Some(name) = set.metadata.name.as_deref().filter(|n| !n.is_empty()) {
        let highest = i64::from(start) + i64::from(replicas.max(1)) - 1;
        let pod_name = format!("{name}-{highest}");
        if pod_name.len() > names::DNS1123_LABEL_MAX {
            errors.push(FieldError::invalid(
                &FieldPath::new("metadata").child("name"),
                name,
                &format!("must leave room for the pod ordinal: pod name {pod_name:?} would be longer than 63 characters"),
            ));
        }
    }
    if let Some(service) = spec.service_name.as_deref().filter(|s| !s.is_empty()) {
        for message in names::dns1035_label(service) {
            errors.push(FieldError::invalid(
                &spec_path.child("serviceName"),
                service,
                &message,
            ));
        }
    }
    let mut claim_names = Vec::new();
    for (i, claim) in spec.volume_claim_templates.iter().flatten().enumerate() {
        let p = spec_path.child("volumeClaimTemplates").index(i);
        let name = claim.metadata.name.as_deref().unwrap_or("");
        if name.is_empty() {
            errors.push(FieldError::required(&p.children(&["metadata", "name"]), ""));
        } else {
            for message in names::dns1123_label(name) {
                errors.push(FieldError::invalid(
                    &p.children(&["metadata", "name"]),
                    name,
                    &message,
                ));
            }
            if claim_names.iter().any(|n| n == name) {
                errors.push(FieldError::duplicate(
                    &p.children(&["metadata", "name"]),
                    name,
                ));
            }
            claim_names.push(name.to_owned());
        }
        errors.extend(validate_claim_spec(claim.spec.as_ref(), &p.child("spec")));
    }
    let template_path = spec_path.child("template");
    // Claim templates stand in for volumes of the same name; a volume of that name in the pod
    // template would be ambiguous.
    let template_volumes: Vec<&str> = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .map(|v| v.iter().map(|v| v.name.as_str()).collect())
        .unwrap_or_default();
    for (i, claim) in claim_names.iter().enumerate() {
        if template_volumes.contains(&claim.as_str()) {
            errors.push(FieldError::duplicate(
                &spec_path
                    .child("volumeClaimTemplates")
                    .index(i)
                    .children(&["metadata", "name"]),
                claim.as_str(),
            ));
        }
    }
    errors.extend(validate_pod_template(
        &spec.template,
        &claim_names,
        &template_path,
    ));
    let policy = restart_policy(&spec.template);
    if policy != "Always" {
        errors.push(FieldError::not_supported(
            &template_path.children(&["spec", "restartPolicy"]),
            policy,
            &["Always"],
        ));
    }
    if spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.active_deadline_seconds)
        .is_some()
    {
        errors.push(FieldError::forbidden(
            &template_path.children(&["spec", "activeDeadlineSeconds"]),
            "activeDeadlineSeconds in StatefulSet is not Supported",
        ));
    }
    errors
}

/// `ValidateDaemonSet`.
pub fn validate_daemon_set(set: &DaemonSet) -> Vec<FieldError> {
    let mut errors = validate_object_meta(
        &set.metadata,
        true,
        names::name_is_dns_subdomain,
        &FieldPath::new("metadata"),
    );
    let spec_path = FieldPath::new("spec");
    let Some(spec) = set.spec.as_ref() else {
        errors.push(FieldError::required(&spec_path, ""));
        return errors;
    };
    errors.extend(validate_selector_and_template(
        &spec.selector,
        &spec.template,
        &spec_path,
    ));
    let template_path = spec_path.child("template");
    errors.extend(validate_pod_template(&spec.template, &[], &template_path));
    let policy = restart_policy(&spec.template);
    if policy != "Always" {
        errors.push(FieldError::not_supported(
            &template_path.children(&["spec", "restartPolicy"]),
            policy,
            &["Always"],
        ));
    }
    if spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.active_deadline_seconds)
        .is_some()
    {
        errors.push(FieldError::forbidden(
            &template_path.children(&["spec", "activeDeadlineSeconds"]),
            "activeDeadlineSeconds in DaemonSet is not Supported",
        ));
    }
    errors.extend(non_negative(
        spec.min_ready_seconds.map(i64::from),
        &spec_path.child("minReadySeconds"),
    ));
    errors.extend(non_negative(
        spec.revision_history_limit.map(i64::from),
        &spec_path.child("revisionHistoryLimit"),
    ));
    let strategy_path = spec_path.child("updateStrategy");
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    match strategy.type_.as_deref().unwrap_or("") {
        "" => errors.push(FieldError::required(&strategy_path.child("type"), "")),
        "OnDelete" => {}
        "RollingUpdate" => match strategy.rolling_update.as_ref() {
            None => errors.push(FieldError::required(
                &strategy_path.child("rollingUpdate"),
                "",
            )),
            Some(rolling) => {
                let rolling_path = strategy_path.child("rollingUpdate");
                let unavailable = rolling.max_unavailable.clone().unwrap_or_default();
                let surge = rolling.max_surge.clone().unwrap_or_default();
                errors.extend(validate_int_or_percent(
                    &unavailable,
                    &rolling_path.child("maxUnavailable"),
                ));
                errors.extend(validate_int_or_percent(
                    &surge,
                    &rolling_path.child("maxSurge"),
                ));
                if is_zero(&unavailable) && is_zero(&surge) {
                    errors.push(FieldError::invalid(
                        &rolling_path.child("maxUnavailable"),
                        BadValue::json(&unavailable),
                        "cannot be 0 when maxSurge is 0",
                    ));
                }
            }
        },
        other => errors.push(FieldError::not_supported(
            &strategy_path.child("type"),
            other,
            &["OnDelete", "RollingUpdate"],
        )),
    }
    errors
}

/// `ValidateJob`: metadata, the generated selector's labels, the spec.
pub fn validate_job(job: &Job) -> Vec<FieldError> {
    let mut errors = validate_object_meta(
        &job.metadata,
        true,
        names::name_is_dns_subdomain,
        &FieldPath::new("metadata"),
    );
    let spec_path = FieldPath::new("spec");
    let Some(spec) = job.spec.as_ref() else {
        errors.push(FieldError::required(&spec_path, ""));
        return errors;
    };
    errors.extend(validate_generated_selector(job, spec));
    errors.extend(validate_job_spec(spec, &spec_path));
    let name = job.metadata.name.as_deref().unwrap_or("");
    if spec.completion_mode.as_deref() == Some("Indexed")
        && let Some(completions) = spec.completions.filter(|c| *c > 0)
        && !name.is_empty()
    {
        let hostname = format!("{name}-{}", completions - 1);
        if !names::dns1123_label(&hostname).is_empty() {
            errors.push(FieldError::invalid(
                &FieldPath::new("metadata").child("name"),
                name,
                &format!("will not able to create pod with invalid DNS label: {hostname}"),
            ));
        }
    }
    errors
}

/// Without `manualSelector: true` the template must carry the generated labels and the
/// selector must be the generated one.
fn validate_generated_selector(job: &Job, spec: &JobSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if spec.manual_selector == Some(true) {
        return errors;
    }
    let meta_path = FieldPath::new("spec").children(&["template", "metadata"]);
    let Some(labels) = template_labels(&spec.template) else {
        errors.push(FieldError::required(&meta_path.child("labels"), ""));
        return errors;
    };
    let uid = job.metadata.uid.as_deref().unwrap_or("");
    let name = job.metadata.name.as_deref().unwrap_or("");
    if uid.is_empty() {
        errors.push(FieldError::required(
            &FieldPath::new("metadata").child("uid"),
            "",
        ));
    }
    for (key, expected) in [
        (LEGACY_JOB_CONTROLLER_UID_LABEL, uid),
        (LEGACY_JOB_NAME_LABEL, name),
        (JOB_CONTROLLER_UID_LABEL, uid),
        (JOB_NAME_LABEL, name),
    ] {
        let p = meta_path.child("labels").key(key);
        match labels.get(key) {
            None => errors.push(FieldError::required(&p, "")),
            Some(actual) if actual != expected => errors.push(FieldError::invalid(
                &p,
                actual,
                &format!("must be '{expected}'"),
            )),
            Some(_) => {}
        }
    }
    let expected = LabelSelector {
        match_labels: Some([(JOB_CONTROLLER_UID_LABEL.to_owned(), uid.to_owned())].into()),
        match_expressions: None,
    };
    if spec.selector.as_ref() != Some(&expected) {
        errors.push(FieldError::invalid(
            &FieldPath::new("spec").child("selector"),
            BadValue::json(&spec.selector),
            "`selector` not auto-generated",
        ));
    }
    errors
}

/// `validateJobSpec` (shared with CronJob job templates), with berth's rule that
/// `completions`, when set, is at least 1.
pub fn validate_job_spec(spec: &JobSpec, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    errors.extend(non_negative(
        spec.parallelism.map(i64::from),
        &path.child("parallelism"),
    ));
    if let Some(completions) = spec.completions
        && completions < 1
    {
        // Kubernetes allows 0 (a Job that completes at once); berth asks for at least 1.
        errors.push(FieldError::invalid(
            &path.child("completions"),
            completions,
            "must be greater than or equal to 1",
        ));
    }
    errors.extend(non_negative(
        spec.active_deadline_seconds,
        &path.child("activeDeadlineSeconds"),
    ));
    errors.extend(non_negative(
        spec.backoff_limit.map(i64::from),
        &path.child("backoffLimit"),
    ));
    errors.extend(non_negative(
        spec.ttl_seconds_after_finished.map(i64::from),
        &path.child("ttlSecondsAfterFinished"),
    ));
    if spec.manual_selector == Some(true) {
        match spec.selector.as_ref() {
            None => errors.push(FieldError::required(&path.child("selector"), "")),
            Some(selector) => errors.extend(validate_selector_and_template(
                selector,
                &spec.template,
                path,
            )),
        }
    } else if let Some(selector) = spec.selector.as_ref() {
        errors.extend(validate_label_selector(selector, &path.child("selector")));
    }
    let mode = spec.completion_mode.as_deref().unwrap_or("NonIndexed");
    match mode {
        "NonIndexed" => {}
        "Indexed" => {
            if spec.completions.is_none() {
                errors.push(FieldError::required(
                    &path.child("completions"),
                    "when completion mode is Indexed",
                ));
            }
            if spec.completions.is_some_and(|c| c > 100_000) {
                errors.push(FieldError::invalid(
                    &path.child("completions"),
                    spec.completions.unwrap_or(0),
                    "must be less than or equal to 100000 when completion mode is Indexed",
                ));
            }
            if spec.parallelism.is_some_and(|p| p > 100_000) {
                errors.push(FieldError::invalid(
                    &path.child("parallelism"),
                    spec.parallelism.unwrap_or(0),
                    "must be less than or equal to 100000 when completion mode is Indexed",
                ));
            }
        }
        other => errors.push(FieldError::not_supported(
            &path.child("completionMode"),
            other,
            &["NonIndexed", "Indexed"],
        )),
    }
    if let Some(replacement) = spec.pod_replacement_policy.as_deref() {
        let replacement_path = path.child("podReplacementPolicy");
        if spec.pod_failure_policy.is_some() && replacement != "Failed" {
            errors.push(FieldError::not_supported(
                &replacement_path,
                replacement,
                &["Failed"],
            ));
        } else if replacement != "Failed" && replacement != "TerminatingOrFailed" {
            errors.push(FieldError::not_supported(
                &replacement_path,
                replacement,
                &["TerminatingOrFailed", "Failed"],
            ));
        }
    }
    let template_path = path.child("template");
    errors.extend(validate_pod_template(&spec.template, &[], &template_path));
    let policy = restart_policy(&spec.template);
    if policy != "OnFailure" && policy != "Never" {
        errors.push(FieldError::not_supported(
            &template_path.children(&["spec", "restartPolicy"]),
            policy,
            &["OnFailure", "Never"],
        ));
    }
    if let Some(failure_policy) = spec.pod_failure_policy.as_ref() {
        errors.extend(validate_pod_failure_policy(
            spec,
            failure_policy,
            &path.child("podFailurePolicy"),
        ));
        if policy != "Never" {
            errors.push(FieldError::invalid(
                &template_path.children(&["spec", "restartPolicy"]),
                policy,
                "only \"Never\" is supported when podFailurePolicy is specified",
            ));
        }
    }
    errors
}

fn validate_pod_failure_policy(
    spec: &JobSpec,
    policy: &k8s_openapi::api::batch::v1::PodFailurePolicy,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let rules_path = path.child("rules");
    if policy.rules.len() > 20 {
        errors.push(FieldError::too_many(&rules_path, policy.rules.len(), 20));
    }
    let container_names: Vec<&str> = spec
        .template
        .spec
        .iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .map(|c| c.name.as_str())
        .collect();
    for (i, rule) in policy.rules.iter().enumerate() {
        let rule_path = rules_path.index(i);
        let action_path = rule_path.child("action");
        match rule.action.as_str() {
            "FailJob" | "Ignore" | "Count" => {}
            "FailIndex" => {
                if spec.backoff_limit_per_index.is_none() {
                    errors.push(FieldError::invalid(
                        &action_path,
                        "FailIndex",
                        "can only be used when backoffLimitPerIndex is set",
                    ));
                }
            }
            other => errors.push(FieldError::not_supported(
                &action_path,
                other,
                &["Count", "FailIndex", "FailJob", "Ignore"],
            )),
        }
        match (rule.on_exit_codes.as_ref(), rule.on_pod_conditions.as_ref()) {
            (Some(_), Some(_)) => errors.push(FieldError::invalid(
                &rule_path,
                BadValue::Omitted,
                "specifying both OnExitCodes and OnPodConditions is not supported",
            )),
            (None, None) => errors.push(FieldError::invalid(
                &rule_path,
                BadValue::Omitted,
                "specifying one of OnExitCodes and OnPodConditions is required",
            )),
            _ => {}
        }
        if let Some(codes) = rule.on_exit_codes.as_ref() {
            let codes_path = rule_path.child("onExitCodes");
            if let Some(container) = codes.container_name.as_deref()
                && !container_names.contains(&container)
            {
                errors.push(FieldError::invalid(
                    &codes_path.child("containerName"),
                    container,
                    "must be one of the container or initContainer names in the pod template",
                ));
            }
            let operator = codes.operator.as_str();
            if operator != "In" && operator != "NotIn" {
                errors.push(FieldError::not_supported(
                    &codes_path.child("operator"),
                    operator,
                    &["In", "NotIn"],
                ));
            }
            let values_path = codes_path.child("values");
            if codes.values.is_empty() {
                errors.push(FieldError::invalid(
                    &values_path,
                    BadValue::json(&codes.values),
                    "at least one value is required",
                ));
            }
            if codes.values.len() > 255 {
                errors.push(FieldError::too_many(&values_path, codes.values.len(), 255));
            }
            for (j, value) in codes.values.iter().enumerate() {
                if operator == "In" && *value == 0 {
                    errors.push(FieldError::invalid(
                        &values_path.index(j),
                        *value,
                        "must not be 0 for the In operator",
                    ));
                }
                if j > 0 {
                    let previous = codes.values[j - 1];
                    if previous == *value {
                        errors.push(FieldError::duplicate(&values_path.index(j), *value));
                    } else if previous > *value {
                        errors.push(FieldError::invalid(
                            &values_path.index(j),
                            *value,
                            "must be ordered",
                        ));
                    }
                }
            }
        }
        for (j, pattern) in rule.on_pod_conditions.iter().flatten().enumerate() {
            let p = rule_path.child("onPodConditions").index(j);
            if pattern.type_.is_empty() {
                errors.push(FieldError::required(&p.child("type"), ""));
            } else {
                for message in names::qualified_name(&pattern.type_) {
                    errors.push(FieldError::invalid(
                        &p.child("type"),
                        pattern.type_.as_str(),
                        &message,
                    ));
                }
            }
            let status = pattern.status.as_str();
            if !["True", "False", "Unknown"].contains(&status) {
                errors.push(FieldError::not_supported(
                    &p.child("status"),
                    status,
                    &["False", "True", "Unknown"],
                ));
            }
        }
    }
    errors
}

/// `ValidateCronJobCreate`: metadata (name at most 52 characters, room for the Job suffix),
/// schedule and time zone, policies, history limits and the job template.
pub fn validate_cron_job(cron_job: &CronJob) -> Vec<FieldError> {
    let meta_path = FieldPath::new("metadata");
    let mut errors = validate_object_meta(
        &cron_job.metadata,
        true,
        names::name_is_dns_subdomain,
        &meta_path,
    );
    let name = cron_job.metadata.name.as_deref().unwrap_or("");
    if name.len() > 52 {
        errors.push(FieldError::invalid(
            &meta_path.child("name"),
            name,
            "must be no more than 52 characters",
        ));
    }
    let spec_path = FieldPath::new("spec");
    let Some(spec) = cron_job.spec.as_ref() else {
        errors.push(FieldError::required(&spec_path, ""));
        return errors;
    };
    let schedule_path = spec_path.child("schedule");
    if spec.schedule.is_empty() {
        errors.push(FieldError::required(&schedule_path, ""));
    } else {
        if let Err(error) = schedule::parse(&spec.schedule, None) {
            errors.push(FieldError::invalid(
                &schedule_path,
                spec.schedule.as_str(),
                &error.to_string(),
            ));
        }
        if spec.schedule.contains("TZ") {
            errors.push(FieldError::invalid(
                &schedule_path,
                spec.schedule.as_str(),
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ));
        }
    }
    if let Some(zone) = spec.time_zone.as_deref()
        && let Err(error) = schedule::parse_time_zone(zone)
    {
        errors.push(FieldError::invalid(
            &spec_path.child("timeZone"),
            zone,
            &error.to_string(),
        ));
    }
    errors.extend(non_negative(
        spec.starting_deadline_seconds,
        &spec_path.child("startingDeadlineSeconds"),
    ));
    let policy_path = spec_path.child("concurrencyPolicy");
    match spec.concurrency_policy.as_deref().unwrap_or("") {
        "" => errors.push(FieldError::required(&policy_path, "")),
        "Allow" | "Forbid" | "Replace" => {}
        other => errors.push(FieldError::not_supported(
            &policy_path,
            other,
            &["Allow", "Forbid", "Replace"],
        )),
    }
    errors.extend(non_negative(
        spec.successful_jobs_history_limit.map(i64::from),
        &spec_path.child("successfulJobsHistoryLimit"),
    ));
    errors.extend(non_negative(
        spec.failed_jobs_history_limit.map(i64::from),
        &spec_path.child("failedJobsHistoryLimit"),
    ));
    let template_path = spec_path.child("jobTemplate");
    if let Some(meta) = spec.job_template.metadata.as_ref() {
        errors.extend(validate_template_meta(
            meta,
            &template_path.child("metadata"),
        ));
    }
    match spec.job_template.spec.as_ref() {
        None => errors.push(FieldError::required(&template_path.child("spec"), "")),
        Some(job_spec) => {
            if job_spec.manual_selector == Some(true) {
                errors.push(FieldError::not_supported(
                    &template_path.children(&["spec", "manualSelector"]),
                    true,
                    &["nil", "false"],
                ));
            }
            errors.extend(validate_job_spec(job_spec, &template_path.child("spec")));
        }
    }
    errors
}

fn validate_template_meta(meta: &ObjectMeta, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = super::meta::validate_labels(meta.labels.as_ref(), &path.child("labels"));
    errors.extend(super::meta::validate_annotations(
        meta.annotations.as_ref(),
        &path.child("annotations"),
    ));
    errors
}
