//! The scheduler: binds each pending pod to a node chosen by [`super::placement`], or
//! records why none fits (the PodScheduled condition and a FailedScheduling event), and
//! pins a new claim to the node of the first pod that uses it.
//!
//! A binding carries the pod's assignment epoch ([`crate::claims::epoch::ASSIGNMENT_EPOCH`])
//! in the same command: the fencing token the kubelet checks against a claim directory's
//! owner file, so a stale copy of the pod never starts over data a newer one used.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};

use super::placement::{self, NodeInfo};
use super::{Context, next_change};
use crate::claims::epoch::{ASSIGNMENT_EPOCH, epoch_for_binding};
use crate::events::{EventType, InvolvedObject};
use crate::state::{Command, ObjectKey, Revision, Timestamp};

/// The annotation that says which node holds a claim's directory.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

/// Runs until shutdown.
pub async fn run(ctx: Context, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut changes = ctx.state.subscribe_changes();
    loop {
        schedule_pending(&ctx).await;
        // Pods that did not fit are retried when anything changes, and every few seconds.
        if !next_change(&mut changes, &mut shutdown, Some(Duration::from_secs(5))).await {
            return;
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(v: &Value) -> Option<T> {
    serde_json::from_value(v.clone()).ok()
}

fn bound_node(pod: &Value) -> Option<&str> {
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
}

fn terminal(pod: &Value) -> bool {
    matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    )
}

/// One pass: every pending pod, oldest first.
pub async fn schedule_pending(ctx: &Context) {
    let (pods, _) = ctx.state.list("Pod", None);
    let mut pending: Vec<&Arc<Value>> = pods
        .iter()
        .filter(|p| bound_node(p).is_none() && p.pointer("/metadata/deletionTimestamp").is_none())
        .collect();
    if pending.is_empty() {
        return;
    }
    pending.sort_by_key(|p| {
        p.pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    });
    let (nodes, _) = ctx.state.list("Node", None);
    let nodes: Vec<NodeInfo> = nodes
        .iter()
        .filter_map(|n| decode::<Node>(n))
        .map(|n| NodeInfo::from_node(&n))
        .collect();
    let mut placed: Vec<Pod> = pods
        .iter()
        .filter(|p| bound_node(p).is_some() && !terminal(p))
        .filter_map(|p| decode(p))
        .collect();
    let (pvcs, _) = ctx.state.list("PersistentVolumeClaim", None);
    let mut claims = placement::claims_from(&pvcs);

    for stored in pending {
        let Some(pod) = decode::<Pod>(stored) else {
            continue;
        };
        let now = Timestamp::now();
        match placement::place(&pod, &nodes, &placed, &claims) {
            Ok(node) => {
                // Planned now: the state holds every binding committed before this one (each
                // proposal below returns once applied here), so the epoch is above theirs.
                let bound = bind(stored, &node, ctx.state.revision());
                let mut status = stored.get("status").cloned().unwrap_or_else(|| json!({}));
                set_scheduled(&mut status, true, None, now);
                if status.get("phase").is_none() {
                    status["phase"] = json!("Pending");
                }
                let key = ObjectKey::of(stored).expect("stored objects have keys");
                let rv = stored
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .and_then(|r| r.parse().ok());
                let mut commands = vec![
                    Command::Update {
                        object: bound.clone(),
                        precondition_resource_version: rv,
                        now,
                    },
                    Command::UpdateStatus {
                        key,
                        status,
                        precondition_resource_version: None,
                    },
                ];
                // Claims used for the first time are pinned to this node.
                let ns = pod.metadata.namespace.clone().unwrap_or_default();
                for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
                    let Some(pvc) = &v.persistent_volume_claim else {
                        continue;
                    };
                    let claim_key = format!("{ns}/{}", pvc.claim_name);
                    if claims.node_of.contains_key(&claim_key) {
                        continue;
                    }
                    if let Some(stored_pvc) =
                        ctx.state.get("PersistentVolumeClaim", &ns, &pvc.claim_name)
                    {
                        let mut pinned = (*stored_pvc).clone();
                        pinned["metadata"]["annotations"][SELECTED_NODE] = json!(node);
                        commands.push(Command::update(pinned, now));
                        claims.node_of.insert(claim_key, node.clone());
                    }
                }
                match ctx.state.propose(Command::Batch(commands)).await {
                    Ok(_) => {
                        let name = pod.metadata.name.clone().unwrap_or_default();
                        ctx.events.record(
                            InvolvedObject::of(stored),
                            EventType::Normal,
                            "Scheduled",
                            format!("Successfully assigned {ns}/{name} to {node}"),
                            "default-scheduler",
                        );
                        if let Some(p) = decode::<Pod>(&bound) {
                            placed.push(p);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "binding a pod failed; retrying on the next change")
                    }
                }
            }
            Err(unschedulable) => {
                let already = stored
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .is_some_and(|cs| {
                        cs.iter().any(|c| {
                            c["type"] == "PodScheduled"
                                && c["status"] == "False"
                                && c["message"] == unschedulable.message.as_str()
                        })
                    });
                if already {
                    continue;
                }
                let mut status = stored.get("status").cloned().unwrap_or_else(|| json!({}));
                status["phase"] = json!("Pending");
                set_scheduled(&mut status, false, Some(&unschedulable.message), now);
                let key = ObjectKey::of(stored).expect("stored objects have keys");
                if ctx
                    .state
                    .propose(Command::UpdateStatus {
                        key,
                        status,
                        precondition_resource_version: None,
                    })
                    .await
                    .is_ok()
                {
                    ctx.events.record(
                        InvolvedObject::of(stored),
                        EventType::Warning,
                        "FailedScheduling",
                        unschedulable.message.clone(),
                        "default-scheduler",
                    );
                }
            }
        }
    }
}

/// The pod `stored` bound to `node`, with the assignment epoch of a binding planned at
/// revision `planned_at`. Any epoch already on the pod (copied from a manifest) is replaced:
/// only the binding decides it.
fn bind(stored: &Value, node: &str, planned_at: Revision) -> Value {
    let mut bound = stored.clone();
    bound["spec"]["nodeName"] = json!(node);
    if !bound["metadata"]["annotations"].is_object() {
        bound["metadata"]["annotations"] = json!({});
    }
    bound["metadata"]["annotations"][ASSIGNMENT_EPOCH] =
        json!(epoch_for_binding(planned_at).to_string());
    bound
}

fn set_scheduled(status: &mut Value, ok: bool, message: Option<&str>, now: Timestamp) {
    let mut conditions: Vec<Value> = status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    conditions.retain(|c| c["type"] != "PodScheduled");
    let mut c = json!({"type": "PodScheduled", "status": if ok { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": now.to_rfc3339()});
    if let Some(m) = message {
        c["reason"] = json!("Unschedulable");
        c["message"] = json!(m);
    }
    conditions.push(c);
    status["conditions"] = json!(conditions);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::epoch::assignment_epoch;
    use crate::state::{State, StateConfig};

    const NODE: &str = "n1";

    fn pod(name: &str, node_name: Option<&str>) -> Value {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        if let Some(n) = node_name {
            p["spec"]["nodeName"] = json!(n);
        }
        p
    }

    async fn open(dir: &std::path::Path) -> Context {
        let mut config = StateConfig::new(dir, NODE);
        // Snapshots (and a purged log) every few entries: epochs must survive them too.
        config.snapshot_after_entries = 5;
        config.entries_kept_after_snapshot = 1;
        let state = State::open(config).await.unwrap();
        Context {
            events: crate::events::Recorder::discard(),
            state,
            node_name: NODE.into(),
        }
    }

    async fn create(ctx: &Context, object: Value) {
        let uid = uuid::Uuid::new_v4().to_string();
        ctx.state
            .propose(Command::create(object, uid, Timestamp::now()))
            .await
            .unwrap();
    }

    /// (epoch, the binding's own revision) of a bound pod.
    fn binding(ctx: &Context, name: &str) -> (u64, u64) {
        let p = ctx.state.get("Pod", "default", name).unwrap();
        assert_eq!(p["spec"]["nodeName"], NODE, "{name} is bound");
        let rv: u64 = p["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        (assignment_epoch(&p).unwrap(), rv)
    }

    #[tokio::test]
    async fn every_binding_carries_an_epoch_above_all_earlier_ones_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = open(dir.path()).await;
        create(
            &ctx,
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        )
        .await;
        let mut epochs = Vec::new();
        // One pod per pass, then several in one pass.
        for name in ["a", "b"] {
            create(&ctx, pod(name, None)).await;
            schedule_pending(&ctx).await;
            epochs.push(binding(&ctx, name));
        }
        for name in ["c", "d", "e"] {
            create(&ctx, pod(name, None)).await;
        }
        schedule_pending(&ctx).await;
        for name in ["c", "d", "e"] {
            epochs.push(binding(&ctx, name));
        }
        // A pod created bound gets no epoch from the scheduler (the kubelet counts it as 0).
        create(&ctx, pod("hand", Some(NODE))).await;
        schedule_pending(&ctx).await;
        let hand = ctx.state.get("Pod", "default", "hand").unwrap();
        assert!(hand.pointer("/metadata/annotations").is_none(), "{hand}");
        assert_eq!(assignment_epoch(&hand).unwrap(), 0);

        // The revisions (and so the epochs) go on growing after the agent restarts.
        ctx.state.shutdown().await;
        let ctx = open(dir.path()).await;
        create(&ctx, pod("f", None)).await;
        schedule_pending(&ctx).await;
        epochs.push(binding(&ctx, "f"));

        for (epoch, rv) in &epochs {
            assert!(
                *epoch >= 1 && epoch <= rv,
                "an epoch is at most its binding's revision: {epochs:?}"
            );
        }
        for pair in epochs.windows(2) {
            assert!(
                pair[1].0 > pair[0].1,
                "each epoch is above the revision of every earlier binding: {epochs:?}"
            );
        }
        ctx.state.shutdown().await;
    }

    #[test]
    fn binding_replaces_an_epoch_copied_from_a_manifest() {
        let stored = json!({"metadata": {"name": "p", "annotations": {ASSIGNMENT_EPOCH: "999999", "keep": "me"}},
            "spec": {}});
        let bound = bind(&stored, "n2", 41);
        assert_eq!(bound["spec"]["nodeName"], "n2");
        assert_eq!(bound["metadata"]["annotations"][ASSIGNMENT_EPOCH], "42");
        assert_eq!(bound["metadata"]["annotations"]["keep"], "me");
        let bare = bind(&json!({"metadata": {"name": "p"}, "spec": {}}), "n2", 7);
        assert_eq!(bare["metadata"]["annotations"][ASSIGNMENT_EPOCH], "8");
    }
}
