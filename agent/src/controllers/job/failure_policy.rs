//! `podFailurePolicy`: which rule, if any, a failed pod matches, and what that means for the
//! Job (pure; Kubernetes' `matchPodFailurePolicy`).

use k8s_openapi::api::batch::v1::{PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

/// What a matching rule asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyAction {
    /// Fail the whole Job at once, with this message.
    FailJob(String),
    /// Do not count the failure.
    Ignore,
    /// Count the failure (the default).
    Count,
    /// Fail the pod's index (Indexed Jobs with `backoffLimitPerIndex`).
    FailIndex,
}

impl PolicyAction {
    /// Whether the failure counts towards `backoffLimit` (everything but Ignore).
    pub fn counts(&self) -> bool {
        *self != PolicyAction::Ignore
    }
}

/// The action of the first rule that `pod` (a failed pod) matches, or `None`.
pub fn match_policy(policy: Option<&PodFailurePolicy>, pod: &Pod) -> Option<PolicyAction> {
    let policy = policy?;
    let status = pod.status.as_ref();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    for (i, rule) in policy.rules.iter().enumerate() {
        let failure = if let Some(codes) = rule.on_exit_codes.as_ref() {
            let containers = status
                .and_then(|s| s.container_statuses.as_deref())
                .unwrap_or_default();
            let init = status
                .and_then(|s| s.init_container_statuses.as_deref())
                .unwrap_or_default();
            let Some((container, code)) =
                matching_container(containers, codes).or_else(|| matching_container(init, codes))
            else {
                continue;
            };
            format!(
                "Container {container} for pod {namespace}/{name} failed with exit code {code} matching FailJob rule at index {i}"
            )
        } else if let Some(patterns) = rule.on_pod_conditions.as_ref() {
            let conditions = status
                .and_then(|s| s.conditions.as_deref())
                .unwrap_or_default();
            let Some(condition) = conditions.iter().find(|c| {
                patterns
                    .iter()
                    .any(|p| p.type_ == c.type_ && p.status == c.status)
            }) else {
                continue;
            };
            format!(
                "Pod {namespace}/{name} has condition {} matching FailJob rule at index {i}",
                condition.type_
            )
        } else {
            continue;
        };
        return Some(match rule.action.as_str() {
            "FailJob" => PolicyAction::FailJob(failure),
            "Ignore" => PolicyAction::Ignore,
            "FailIndex" => PolicyAction::FailIndex,
            _ => PolicyAction::Count,
        });
    }
    None
}

/// The first terminated container (of the named one, if the rule names one) whose non-zero
/// exit code satisfies the rule: its name and exit code.
fn matching_container<'a>(
    statuses: &'a [ContainerStatus],
    rule: &PodFailurePolicyOnExitCodesRequirement,
) -> Option<(&'a str, i32)> {
    statuses.iter().find_map(|status| {
        let code = status.state.as_ref()?.terminated.as_ref()?.exit_code;
        let named = rule
            .container_name
            .as_deref()
            .is_none_or(|n| n == status.name);
        let listed = rule.values.contains(&code);
        let operator_matches = match rule.operator.as_str() {
            "In" => listed,
            "NotIn" => !listed,
            _ => false,
        };
        (named && code != 0 && operator_matches).then_some((status.name.as_str(), code))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn policy(rules: serde_json::Value) -> PodFailurePolicy {
        serde_json::from_value(json!({ "rules": rules })).unwrap()
    }

    fn failed_pod(containers: serde_json::Value, conditions: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "status": {"phase": "Failed", "containerStatuses": containers, "conditions": conditions}
        }))
        .unwrap()
    }

    fn exited(name: &str, code: i32) -> serde_json::Value {
        json!({"name": name, "image": "i", "imageID": "", "ready": false, "restartCount": 0,
               "state": {"terminated": {"exitCode": code}}})
    }

    #[test]
    fn rules_match_in_order_on_exit_codes_and_conditions() {
        let rules = policy(json!([
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1, 2]}},
        ]));
        let cases = [
            ("exit 42 in main fails the job", failed_pod(json!([exited("main", 42)]), json!([])),
             Some(PolicyAction::FailJob("Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1".into()))),
            ("exit 42 in another container is only counted", failed_pod(json!([exited("side", 42)]), json!([])),
             Some(PolicyAction::Count)),
            ("a listed NotIn code matches nothing", failed_pod(json!([exited("main", 1)]), json!([])), None),
            ("a disruption is ignored first", failed_pod(json!([exited("main", 42)]), json!([{"type": "DisruptionTarget", "status": "True"}])),
             Some(PolicyAction::Ignore)),
            ("exit 0 never matches NotIn", failed_pod(json!([exited("main", 0)]), json!([])), None),
            ("a running container has no exit code", failed_pod(json!([{"name": "main", "image": "i", "imageID": "", "ready": false, "restartCount": 0, "state": {"running": {}}}]), json!([])), None),
        ];
        for (what, pod, expected) in cases {
            assert_eq!(match_policy(Some(&rules), &pod), expected, "{what}");
        }
        assert_eq!(
            match_policy(None, &failed_pod(json!([exited("main", 42)]), json!([]))),
            None
        );
    }

    #[test]
    fn a_condition_rule_that_fails_the_job_names_the_condition() {
        let rules = policy(
            json!([{"action": "FailJob", "onPodConditions": [{"type": "ConfigIssue", "status": "True"}]}]),
        );
        let pod = failed_pod(
            json!([]),
            json!([{"type": "ConfigIssue", "status": "True"}]),
        );
        assert_eq!(
            match_policy(Some(&rules), &pod),
            Some(PolicyAction::FailJob(
                "Pod ns/p has condition ConfigIssue matching FailJob rule at index 0".into()
            ))
        );
    }

    #[test]
    fn init_containers_are_checked_after_app_containers() {
        let rules = policy(
            json!([{"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [3]}}]),
        );
        let mut pod = failed_pod(json!([]), json!([]));
        pod.status.as_mut().unwrap().init_container_statuses =
            Some(vec![serde_json::from_value(exited("init", 3)).unwrap()]);
        assert_eq!(
            match_policy(Some(&rules), &pod),
            Some(PolicyAction::FailIndex)
        );
    }
}
