//! What the planner sees: views of the stored DaemonSet, its pods and the nodes, and whether
//! each node should run the set's pod, decided by the scheduler's own filters
//! ([`placement::place`]) on the pod the set would create there.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::plan::{Budget, DaemonSetView, NodeView, PodPhase, PodView, Strategy};
use crate::controllers::placement::{self, Claims, NodeInfo};
use crate::controllers::statefulset::identity::REVISION_LABEL;
use crate::controllers::statefulset::observe::controller_uid;
use crate::state::Timestamp;

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn budget(value: Option<&IntOrString>, default: i32) -> Budget {
    match value {
        Some(IntOrString::Int(n)) => Budget::Count(*n),
        Some(IntOrString::String(s)) => match s.trim_end_matches('%').parse() {
            Ok(p) => Budget::Percent(p),
            Err(_) => Budget::Count(default),
        },
        None => Budget::Count(default),
    }
}

/// The set, decoded and viewed; `None` when the stored object cannot be decoded.
pub fn set_view(stored: &Value) -> Option<(DaemonSet, DaemonSetView)> {
    let set: DaemonSet = serde_json::from_value(stored.clone()).ok()?;
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
            Strategy::RollingUpdate {
                max_unavailable: budget(rolling.max_unavailable.as_ref(), 1),
                max_surge: budget(rolling.max_surge.as_ref(), 0),
            }
        }
    };
    let view = DaemonSetView {
        name: set.metadata.name.clone().unwrap_or_default(),
        generation: set.metadata.generation.unwrap_or(0),
        deleting: set.metadata.deletion_timestamp.is_some(),
        strategy,
        min_ready_seconds: i64::from(spec.min_ready_seconds.unwrap_or(0).max(0)),
    };
    Some((set, view))
}

/// The view of `pod` if the set with uid `set_uid` controls it and it is bound to a node.
pub fn pod_view(pod: &Value, set_uid: &str) -> Option<PodView> {
    if controller_uid(pod) != Some(set_uid) {
        return None;
    }
    let node = str_at(pod, "/spec/nodeName");
    if node.is_empty() {
        return None;
    }
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
        name: str_at(pod, "/metadata/name").to_string(),
        uid: str_at(pod, "/metadata/uid").to_string(),
        node: node.to_string(),
        phase,
        ready_since,
        deleting: pod
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|t| !t.is_null()),
        revision: pod
            .pointer("/metadata/labels")
            .and_then(|l| l.get(REVISION_LABEL))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        created: Timestamp::parse_rfc3339(str_at(pod, "/metadata/creationTimestamp"))
            .unwrap_or(Timestamp::from_unix_seconds(0)),
    })
}

/// Whether `node` should run `pod` (the pod the set would create there, tolerations added)
/// and whether a pod already there may stay (`NodeShouldRunDaemonPod`): the template's
/// `nodeName`, nodeSelector and required node affinity must match; every NoSchedule and
/// NoExecute taint must be tolerated to start, every NoExecute taint to stay. Readiness,
/// cordoning and resources are not the set's concern (its pods tolerate them, as in
/// Kubernetes).
pub fn node_view(node: &Node, pod: &Pod) -> NodeView {
    let info = NodeInfo::from_node(node);
    let name = info.name.clone();
    let wanted = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty());
    if wanted.is_some_and(|w| w != name) {
        return NodeView {
            name,
            should_run: false,
            should_continue: false,
        };
    }
    let mut pod = pod.clone();
    if let Some(spec) = pod.spec.as_mut() {
        spec.node_name = None;
    }
    let relaxed = |taints: Vec<k8s_openapi::api::core::v1::Taint>| NodeInfo {
        taints,
        unschedulable: false,
        ready: true,
        cpu_milli: i64::MAX,
        memory: i64::MAX,
        pods: i64::MAX,
        ..info.clone()
    };
    let fits = |node: NodeInfo| placement::place(&pod, &[node], &[], &Claims::default()).is_ok();
    let should_run = fits(relaxed(info.taints.clone()));
    let should_continue = should_run
        || fits(relaxed(
            info.taints
                .iter()
                .filter(|t| t.effect == "NoExecute")
                .cloned()
                .collect(),
        ));
    NodeView {
        name,
        should_run,
        should_continue,
    }
}
