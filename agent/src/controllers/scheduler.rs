//! The scheduler: binds each pending pod to a node chosen by [`super::placement`], or
//! records why none fits (the PodScheduled condition and a FailedScheduling event), and
//! pins a new claim to the node of the first pod that uses it.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};

use super::placement::{self, NodeInfo};
use super::{Context, next_change};
use crate::events::{EventType, InvolvedObject};
use crate::state::{Command, ObjectKey, Timestamp};

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
                let mut bound = (**stored).clone();
                bound["spec"]["nodeName"] = json!(node);
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
