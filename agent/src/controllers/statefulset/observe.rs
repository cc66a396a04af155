//! What the planner sees: views of the stored set, its pods, claims and revisions, read from
//! the objects in the state (Kubernetes-shaped JSON).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::FINALIZER;
use super::identity::{REVISION_LABEL, claim_ordinal, identity_matches, ordinal_of};
use super::plan::{
    ClaimTemplate, ClaimView, MaxUnavailable, PodManagement, PodOwner, PodPhase, PodView,
    Retention, SetView, Strategy,
};
use super::revision::{RevisionOwner, RevisionView, template_of_data};
use crate::objects::selector::Selector;
use crate::state::Timestamp;

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn deleting(v: &Value) -> bool {
    v.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

fn labels(v: &Value) -> std::collections::BTreeMap<String, String> {
    v.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// The controller owner reference's uid, if the object has one.
pub fn controller_uid(v: &Value) -> Option<&str> {
    v.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .and_then(|r| r.get("uid"))
        .and_then(Value::as_str)
}

/// The set, decoded and viewed. `None` when the stored object cannot be decoded (it was
/// admitted, so this does not happen short of a bug; the caller logs it).
pub fn set_view(stored: &Value) -> Option<(StatefulSet, SetView)> {
    let set: StatefulSet = serde_json::from_value(stored.clone()).ok()?;
    let spec = set.spec.clone().unwrap_or_default();
    let strategy = match spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
    {
        Some("OnDelete") => Strategy::OnDelete,
        _ => {
            let rolling = spec
                .update_strategy
                .as_ref()
                .and_then(|s| s.rolling_update.clone())
                .unwrap_or_default();
            let max_unavailable = match rolling.max_unavailable {
                Some(IntOrString::Int(n)) => MaxUnavailable::Count(n),
                Some(IntOrString::String(s)) => {
                    MaxUnavailable::Percent(s.trim_end_matches('%').parse().unwrap_or(1))
                }
                None => MaxUnavailable::Count(1),
            };
            Strategy::RollingUpdate {
                partition: rolling.partition.unwrap_or(0),
                max_unavailable,
            }
        }
    };
    let retention = |v: Option<&str>| {
        if v == Some("Delete") {
            Retention::Delete
        } else {
            Retention::Retain
        }
    };
    let policy = spec
        .persistent_volume_claim_retention_policy
        .clone()
        .unwrap_or_default();
    let claim_templates = spec
        .volume_claim_templates
        .iter()
        .flatten()
        .map(|c| ClaimTemplate {
            name: c.metadata.name.clone().unwrap_or_default(),
            storage: c
                .spec
                .as_ref()
                .and_then(|s| s.resources.as_ref())
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage"))
                .and_then(|q| Some((q.0.clone(), crate::objects::quantity::bytes(&q.0).ok()?))),
        })
        .collect();
    let view = SetView {
        name: set.metadata.name.clone().unwrap_or_default(),
        generation: set.metadata.generation.unwrap_or(0),
        deleting: set.metadata.deletion_timestamp.is_some(),
        has_finalizer: set
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == FINALIZER),
        replicas: spec.replicas.unwrap_or(1).max(0),
        start: spec
            .ordinals
            .as_ref()
            .and_then(|o| o.start)
            .unwrap_or(0)
            .max(0),
        management: if spec.pod_management_policy.as_deref() == Some("Parallel") {
            PodManagement::Parallel
        } else {
            PodManagement::OrderedReady
        },
        strategy,
        min_ready_seconds: i64::from(spec.min_ready_seconds.unwrap_or(0).max(0)),
        when_deleted: retention(policy.when_deleted.as_deref()),
        when_scaled: retention(policy.when_scaled.as_deref()),
        claim_templates,
    };
    Some((set, view))
}

/// The set's label selector.
pub fn selector_of(set: &StatefulSet) -> Selector {
    set.spec
        .as_ref()
        .and_then(|s| Selector::from_label_selector(Some(&s.selector)).ok())
        .unwrap_or_else(Selector::nothing)
}

/// The view of `pod` if its name is one of set `set_name`'s.
pub fn pod_view(
    pod: &Value,
    set_name: &str,
    set_uid: &str,
    selector: &Selector,
) -> Option<PodView> {
    let name = str_at(pod, "/metadata/name");
    let ordinal = ordinal_of(set_name, name)?;
    let owner = match controller_uid(pod) {
        Some(uid) if uid == set_uid => PodOwner::ThisSet,
        Some(_) => PodOwner::Other,
        None if selector.matches(&labels(pod)) => PodOwner::Nobody,
        None => PodOwner::Other,
    };
    let phase = match str_at(pod, "/status/phase") {
        "Pending" | "" => PodPhase::Pending,
        "Running" => PodPhase::Running,
        "Succeeded" => PodPhase::Succeeded,
        "Failed" => PodPhase::Failed,
        _ => PodPhase::Unknown,
    };
    let ready_since = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        .map(|c| {
            c.get("lastTransitionTime")
                .and_then(Value::as_str)
                .and_then(Timestamp::parse_rfc3339)
                .unwrap_or(Timestamp::from_unix_seconds(0))
        });
    Some(PodView {
        name: name.to_string(),
        uid: str_at(pod, "/metadata/uid").to_string(),
        ordinal,
        owner,
        phase,
        ready_since,
        deleting: deleting(pod),
        revision: labels(pod).get(REVISION_LABEL).cloned().unwrap_or_default(),
        identity_ok: identity_matches(pod, set_name, ordinal),
    })
}

/// The view of `claim` if its name is one of the set's claims.
pub fn claim_view(claim: &Value, view: &SetView, selector: &Selector) -> Option<ClaimView> {
    let name = str_at(claim, "/metadata/name");
    view.claim_templates
        .iter()
        .find_map(|t| claim_ordinal(&t.name, &view.name, name))?;
    Some(ClaimView {
        name: name.to_string(),
        uid: str_at(claim, "/metadata/uid").to_string(),
        deleting: deleting(claim),
        storage_bytes: claim
            .pointer("/spec/resources/requests/storage")
            .and_then(Value::as_str)
            .and_then(|q| crate::objects::quantity::bytes(q).ok()),
        matches_set: selector.matches(&labels(claim)),
    })
}

/// The view of `revision` if it belongs to set `set_name` (controlled by it, or named like
/// its revisions).
pub fn revision_view(revision: &Value, set_name: &str, set_uid: &str) -> Option<RevisionView> {
    let name = str_at(revision, "/metadata/name");
    let owner = match controller_uid(revision) {
        Some(uid) if uid == set_uid => RevisionOwner::ThisSet,
        Some(_) => RevisionOwner::Other,
        None => RevisionOwner::Nobody,
    };
    let named_like_ours = name
        .strip_prefix(set_name)
        .is_some_and(|rest| rest.starts_with('-'));
    if owner != RevisionOwner::ThisSet && !named_like_ours {
        return None;
    }
    Some(RevisionView {
        name: name.to_string(),
        uid: str_at(revision, "/metadata/uid").to_string(),
        number: revision
            .get("revision")
            .and_then(Value::as_i64)
            .unwrap_or(0),
        template: revision
            .get("data")
            .and_then(template_of_data)
            .unwrap_or(Value::Null),
        owner,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored_set() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "web", "namespace": "default", "uid": "set-uid", "generation": 3,
                         "finalizers": [FINALIZER]},
            "spec": {
                "replicas": 3, "serviceName": "web", "podManagementPolicy": "Parallel",
                "ordinals": {"start": 1},
                "selector": {"matchLabels": {"app": "web"}},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1, "maxUnavailable": "50%"}},
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"},
                "minReadySeconds": 5,
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
            }
        })
    }

    #[test]
    fn a_stored_set_is_viewed_with_its_policies() {
        let (_, view) = set_view(&stored_set()).unwrap();
        assert_eq!(view.name, "web");
        assert_eq!(view.generation, 3);
        assert!(view.has_finalizer && !view.deleting);
        assert_eq!((view.replicas, view.start), (3, 1));
        assert_eq!(view.management, PodManagement::Parallel);
        assert_eq!(
            view.strategy,
            Strategy::RollingUpdate {
                partition: 1,
                max_unavailable: MaxUnavailable::Percent(50)
            }
        );
        assert_eq!(
            (view.when_deleted, view.when_scaled),
            (Retention::Delete, Retention::Retain)
        );
        assert_eq!(view.min_ready_seconds, 5);
        assert_eq!(
            view.claim_templates,
            vec![ClaimTemplate {
                name: "data".into(),
                storage: Some(("1Gi".into(), 1 << 30))
            }]
        );
    }

    #[test]
    fn pods_are_viewed_with_owner_readiness_and_revision() {
        let (set, _) = set_view(&stored_set()).unwrap();
        let selector = selector_of(&set);
        let pod = json!({
            "metadata": {"name": "web-2", "uid": "p", "labels": {"app": "web", REVISION_LABEL: "web-abc"},
                         "ownerReferences": [{"uid": "set-uid", "controller": true}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:10Z"}]}
        });
        let view = pod_view(&pod, "web", "set-uid", &selector).unwrap();
        assert_eq!(view.ordinal, 2);
        assert_eq!(view.owner, PodOwner::ThisSet);
        assert_eq!(view.phase, PodPhase::Running);
        assert_eq!(
            view.ready_since,
            Timestamp::parse_rfc3339("2024-01-01T00:00:10Z")
        );
        assert_eq!(view.revision, "web-abc");
        assert!(!view.identity_ok, "the identity labels are missing");

        let orphan = json!({"metadata": {"name": "web-0", "labels": {"app": "web"}}});
        assert_eq!(
            pod_view(&orphan, "web", "set-uid", &selector)
                .unwrap()
                .owner,
            PodOwner::Nobody
        );
        let stranger = json!({"metadata": {"name": "web-0", "labels": {"app": "db"}}});
        assert_eq!(
            pod_view(&stranger, "web", "set-uid", &selector)
                .unwrap()
                .owner,
            PodOwner::Other
        );
        let other_set = json!({"metadata": {"name": "web-0", "ownerReferences": [{"uid": "x", "controller": true}]}});
        assert_eq!(
            pod_view(&other_set, "web", "set-uid", &selector)
                .unwrap()
                .owner,
            PodOwner::Other
        );
        assert!(
            pod_view(
                &json!({"metadata": {"name": "webx-0"}}),
                "web",
                "set-uid",
                &selector
            )
            .is_none()
        );
    }

    #[test]
    fn claims_and_revisions_of_the_set_are_recognised() {
        let (set, view) = set_view(&stored_set()).unwrap();
        let selector = selector_of(&set);
        let claim = json!({"metadata": {"name": "data-web-4", "uid": "c", "labels": {"app": "web"}},
                           "spec": {"resources": {"requests": {"storage": "2Gi"}}}});
        let c = claim_view(&claim, &view, &selector).unwrap();
        assert_eq!(c.storage_bytes, Some(2 << 30));
        assert!(c.matches_set);
        assert!(
            claim_view(
                &json!({"metadata": {"name": "logs-web-4"}}),
                &view,
                &selector
            )
            .is_none()
        );

        let revision = json!({"metadata": {"name": "web-abc", "uid": "r", "ownerReferences": [{"uid": "set-uid", "controller": true}]},
                              "revision": 2, "data": {"spec": {"template": {"spec": {}, "$patch": "replace"}}}});
        let r = revision_view(&revision, "web", "set-uid").unwrap();
        assert_eq!((r.number, r.owner.clone()), (2, RevisionOwner::ThisSet));
        assert_eq!(r.template, json!({"spec": {}}));
        assert!(
            revision_view(&json!({"metadata": {"name": "db-abc"}}), "web", "set-uid").is_none()
        );
    }
}
