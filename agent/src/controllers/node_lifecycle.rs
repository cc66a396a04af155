//! The node lifecycle controller (Kubernetes' pkg/controller/nodelifecycle): notices a node
//! whose kubelet stopped posting status, marks it, and decides what becomes of its pods.
//!
//! Heartbeats are judged by when this controller *saw* a node's `lastHeartbeatTime` change,
//! on its own monotonic clock, never by comparing another host's wall clock with ours (as
//! Kubernetes' `probeTimestamp`); a controller that has just started (a new leader) gives every
//! node a full grace period.
//!
//! - Silent for longer than the grace period ([`Settings::grace`], default 10 s): the node's
//!   conditions become `Unknown` (reason `NodeStatusUnknown`, "Kubelet stopped posting node
//!   status."), it gets the `node.kubernetes.io/unreachable:NoExecute` taint, its pods are
//!   marked not Ready (so DNS stops answering with them), and a `NodeNotReady` event is
//!   recorded. When its heartbeat moves again, the taint goes (`NodeReady`).
//! - Silent for longer than the grace period plus the eviction margin
//!   ([`Settings::eviction_margin`]): each pod is decided by [`decide_pod`]: pods a controller
//!   re-creates (Job, ReplicaSet, StatefulSet pods whose claims are not local to the node) are
//!   deleted at once (force: their kubelet cannot confirm) so they are re-created elsewhere; a
//!   pod whose claim is a directory on the lost node stays pinned, with a condition and an
//!   event saying how to release it; DaemonSet pods and bare pods stay (nothing would
//!   re-create a bare pod; it runs again when its node returns). An explicit toleration of the
//!   unreachable (or not-ready) NoExecute taint is honoured: without `tolerationSeconds` the
//!   pod stays, with it the pod is evicted that long after the node became unreachable.
//!
//! The node's own kubelet stops its StatefulSet pods before the grace period ends when it
//! cannot commit its heartbeat (self-fencing, in [`crate::kubelet::node`]), so an identity is
//! never run twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::watch;

use super::{Context, next_change};
use crate::events::{EventType, InvolvedObject};
use crate::state::{Command, ObjectKey, Timestamp};

/// The taint of a node whose kubelet stopped posting status.
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
/// The taint of a node that says it is not ready.
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
/// The pod condition of a pod held on a lost node by its local claim.
pub const PINNED_CONDITION: &str = "PinnedToLostNode";
/// The component name on the controller's events.
pub const COMPONENT: &str = "node-controller";
/// The smallest grace period accepted.
pub const MIN_GRACE: Duration = Duration::from_secs(2);

/// How long a silent node is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Silence after which a node is Unknown and tainted (`--node-monitor-grace-period`).
    pub grace: Duration,
    /// Further silence after which its pods are decided (evicted or pinned).
    pub eviction_margin: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings::with_grace(Duration::from_secs(10))
    }
}

impl Settings {
    /// Settings for a grace period (at least [`MIN_GRACE`]); the eviction margin equals it.
    pub fn with_grace(grace: Duration) -> Settings {
        let grace = grace.max(MIN_GRACE);
        Settings {
            grace,
            eviction_margin: grace,
        }
    }

    /// How often the controller looks at heartbeats.
    pub fn tick(&self) -> Duration {
        (self.grace / 20).clamp(Duration::from_millis(100), Duration::from_millis(500))
    }
}

/// What the controller knows of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFacts {
    /// How long since its heartbeat was last seen to change.
    pub silent_for: Duration,
    /// Whether it carries the unreachable taint.
    pub tainted: bool,
    /// Whether its Ready condition is already `Unknown`.
    pub marked_unknown: bool,
}

/// What to do with a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeStep {
    Nothing,
    /// Conditions Unknown, unreachable taint, pods not Ready, event.
    MarkUnreachable,
    /// Its heartbeat is back: the taint goes.
    MarkReachable,
    /// Unreachable for this long: decide its pods.
    DecidePods {
        unreachable_for: Duration,
    },
}

/// The node's step, given what is known of it.
pub fn decide_node(facts: &NodeFacts, settings: &Settings) -> NodeStep {
    if facts.silent_for <= settings.grace {
        return if facts.tainted {
            NodeStep::MarkReachable
        } else {
            NodeStep::Nothing
        };
    }
    if !facts.tainted || !facts.marked_unknown {
        return NodeStep::MarkUnreachable;
    }
    NodeStep::DecidePods {
        unreachable_for: facts.silent_for - settings.grace,
    }
}

/// Who controls a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodOwner {
    None,
    DaemonSet,
    StatefulSet,
    /// Job, ReplicaSet, or another controller that re-creates its pods.
    Other,
}

/// What the controller knows of a pod on an unreachable node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFacts {
    pub owner: PodOwner,
    /// Claims of the pod whose directory is on the unreachable node.
    pub local_claims: Vec<String>,
    /// The pod's toleration of the unreachable NoExecute taint: `None` if it has none,
    /// `Some(None)` if it tolerates it for ever, `Some(Some(s))` for `tolerationSeconds: s`.
    pub tolerates_for: Option<Option<i64>>,
    /// Whether it already carries the pinned condition.
    pub pinned: bool,
    /// Whether it is already being deleted or has finished.
    pub finished: bool,
}

/// What becomes of a pod on an unreachable node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodStep {
    Keep,
    /// Delete it now (forced): its controller re-creates it elsewhere.
    Evict,
    /// Keep it on the node and say why (once).
    Pin {
        claims: Vec<String>,
    },
}

/// The pod's step after its node has been unreachable for `unreachable_for`.
pub fn decide_pod(pod: &PodFacts, unreachable_for: Duration, settings: &Settings) -> PodStep {
    if pod.finished {
        return PodStep::Keep;
    }
    match pod.tolerates_for {
        Some(None) => return PodStep::Keep,
        Some(Some(seconds)) => {
            if unreachable_for < Duration::from_secs(u64::try_from(seconds.max(0)).unwrap_or(0)) {
                return PodStep::Keep;
            }
        }
        None => {
            if unreachable_for < settings.eviction_margin {
                return PodStep::Keep;
            }
        }
    }
    if !pod.local_claims.is_empty() {
        return if pod.pinned {
            PodStep::Keep
        } else {
            PodStep::Pin {
                claims: pod.local_claims.clone(),
            }
        };
    }
    match pod.owner {
        PodOwner::None | PodOwner::DaemonSet => PodStep::Keep,
        PodOwner::StatefulSet | PodOwner::Other => PodStep::Evict,
    }
}

/// The facts of `pod`, on node `node`, with `claim_nodes` mapping `namespace/claim` to the
/// node that holds the claim's directory.
pub fn pod_facts(pod: &Value, node: &str, claim_nodes: &BTreeMap<String, String>) -> PodFacts {
    let owner = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .and_then(|refs| refs.iter().find(|r| r["controller"] == true))
        .map(|r| match r["kind"].as_str() {
            Some("DaemonSet") => PodOwner::DaemonSet,
            Some("StatefulSet") => PodOwner::StatefulSet,
            _ => PodOwner::Other,
        })
        .unwrap_or(PodOwner::None);
    let ns = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let local_claims = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| {
            v.pointer("/persistentVolumeClaim/claimName")
                .and_then(Value::as_str)
        })
        .filter(|c| {
            claim_nodes
                .get(&format!("{ns}/{c}"))
                .is_some_and(|n| n == node)
        })
        .map(str::to_string)
        .collect();
    let tolerates_for = pod
        .pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| {
            let effect_ok = t["effect"]
                .as_str()
                .is_none_or(|e| e.is_empty() || e == "NoExecute");
            let key = t["key"].as_str().unwrap_or("");
            let key_ok = (key.is_empty() && t["operator"] == "Exists") || key == UNREACHABLE_TAINT;
            effect_ok && key_ok
        })
        .map(|t| t["tolerationSeconds"].as_i64())
        .max_by_key(|s| s.map_or(i64::MAX, |s| s));
    let pinned = conditions(pod)
        .iter()
        .any(|c| c["type"] == PINNED_CONDITION && c["status"] == "True");
    let finished = pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
        || matches!(
            pod.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        );
    PodFacts {
        owner,
        local_claims,
        tolerates_for,
        pinned,
        finished,
    }
}

fn conditions(v: &Value) -> Vec<Value> {
    v.pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn heartbeat_of(node: &Value) -> String {
    conditions(node)
        .iter()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["lastHeartbeatTime"].as_str())
        .unwrap_or("")
        .to_string()
}

fn has_taint(node: &Value) -> bool {
    node.pointer("/spec/taints")
        .and_then(Value::as_array)
        .is_some_and(|ts| {
            ts.iter()
                .any(|t| t["key"] == UNREACHABLE_TAINT && t["effect"] == "NoExecute")
        })
}

fn ready_unknown(node: &Value) -> bool {
    conditions(node)
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "Unknown")
}

fn resource_version(v: &Value) -> Option<u64> {
    v.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
}

/// When each node's heartbeat was last seen to change.
#[derive(Debug, Default)]
pub struct Heartbeats {
    seen: HashMap<String, (String, Instant)>,
}

impl Heartbeats {
    /// Records `node`'s heartbeat as seen at `now`; returns how long it has been unchanged.
    pub fn observe(&mut self, node: &str, heartbeat: &str, now: Instant) -> Duration {
        let entry = self
            .seen
            .entry(node.to_string())
            .or_insert_with(|| (heartbeat.to_string(), now));
        if entry.0 != heartbeat {
            *entry = (heartbeat.to_string(), now);
        }
        now.saturating_duration_since(entry.1)
    }

    /// Forgets nodes not in `names`.
    pub fn retain(&mut self, names: &[String]) {
        self.seen.retain(|k, _| names.contains(k));
    }
}

/// Runs the controller until shutdown, with the default settings.
pub async fn run(ctx: Context, shutdown: watch::Receiver<bool>) {
    run_with(ctx, Settings::default(), shutdown).await
}

/// Runs the controller until shutdown.
pub async fn run_with(ctx: Context, settings: Settings, mut shutdown: watch::Receiver<bool>) {
    let mut changes = ctx.state.subscribe_changes();
    let mut heartbeats = Heartbeats::default();
    loop {
        pass(&ctx, &settings, &mut heartbeats, Instant::now()).await;
        if !next_change(&mut changes, &mut shutdown, Some(settings.tick())).await {
            return;
        }
    }
}

/// One look at every node.
pub async fn pass(ctx: &Context, settings: &Settings, heartbeats: &mut Heartbeats, now: Instant) {
    let (nodes, _) = ctx.state.list("Node", None);
    let names: Vec<String> = nodes
        .iter()
        .filter_map(|n| {
            n.pointer("/metadata/name")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect();
    heartbeats.retain(&names);
    for node in nodes.iter() {
        let name = node
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let facts = NodeFacts {
            silent_for: heartbeats.observe(&name, &heartbeat_of(node), now),
            tainted: has_taint(node),
            marked_unknown: ready_unknown(node),
        };
        let step = decide_node(&facts, settings);
        let result = match step {
            NodeStep::Nothing => Ok(()),
            NodeStep::MarkUnreachable => mark_unreachable(ctx, node, &name).await,
            NodeStep::MarkReachable => mark_reachable(ctx, node, &name).await,
            NodeStep::DecidePods { unreachable_for } => {
                decide_pods(ctx, &name, unreachable_for, settings).await
            }
        };
        if let Err(error) = result {
            tracing::warn!(node = %name, ?step, error = %super::statefulset::error_chain(&error), "node lifecycle step failed; retrying");
        }
    }
}

async fn mark_unreachable(
    ctx: &Context,
    node: &Arc<Value>,
    name: &str,
) -> Result<(), crate::state::ProposeError> {
    let now = Timestamp::now();
    let mut commands = Vec::new();
    if !has_taint(node) {
        let mut tainted = (**node).clone();
        let mut taints = tainted
            .pointer("/spec/taints")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        taints.push(
            json!({"key": UNREACHABLE_TAINT, "effect": "NoExecute", "timeAdded": now.to_rfc3339()}),
        );
        if !tainted["spec"].is_object() {
            tainted["spec"] = json!({});
        }
        tainted["spec"]["taints"] = json!(taints);
        commands.push(Command::Update {
            object: tainted,
            precondition_resource_version: resource_version(node),
            now,
        });
    }
    let mut status = node.get("status").cloned().unwrap_or_else(|| json!({}));
    let mut conds = conditions(node);
    for c in conds.iter_mut() {
        if c["status"] != "Unknown" {
            c["status"] = json!("Unknown");
            c["reason"] = json!("NodeStatusUnknown");
            c["message"] = json!("Kubelet stopped posting node status.");
            c["lastTransitionTime"] = json!(now.to_rfc3339());
        }
    }
    if !conds.iter().any(|c| c["type"] == "Ready") {
        // A node that never posted status at all.
        conds.push(json!({"type": "Ready", "status": "Unknown", "reason": "NodeStatusNeverUpdated",
            "message": "Kubelet never posted node status.", "lastTransitionTime": now.to_rfc3339()}));
    }
    status["conditions"] = json!(conds);
    commands.push(Command::UpdateStatus {
        key: ObjectKey::new("Node", "", name),
        status,
        precondition_resource_version: None,
    });
    // Its pods stop being Ready, so DNS stops answering with them.
    let (pods, _) = ctx.state.list("Pod", None);
    for pod in pods
        .iter()
        .filter(|p| p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(name))
    {
        let mut conds = conditions(pod);
        let mut changed = false;
        for c in conds.iter_mut().filter(|c| {
            (c["type"] == "Ready" || c["type"] == "ContainersReady") && c["status"] == "True"
        }) {
            c["status"] = json!("False");
            c["reason"] = json!("NodeUnreachable");
            c["message"] = json!(format!("node {name} stopped posting status"));
            c["lastTransitionTime"] = json!(now.to_rfc3339());
            changed = true;
        }
        if changed {
            let mut status = pod.get("status").cloned().unwrap_or_else(|| json!({}));
            status["conditions"] = json!(conds);
            if let Ok(key) = ObjectKey::of(pod) {
                commands.push(Command::UpdateStatus {
                    key,
                    status,
                    precondition_resource_version: resource_version(pod),
                });
            }
        }
    }
    ctx.state.propose(Command::Batch(commands)).await?;
    tracing::warn!(node = %name, "node stopped posting status; marked unreachable");
    ctx.events.record(
        InvolvedObject::of(node),
        EventType::Normal,
        "NodeNotReady",
        format!("Node {name} status is now: NodeNotReady"),
        COMPONENT,
    );
    Ok(())
}

async fn mark_reachable(
    ctx: &Context,
    node: &Arc<Value>,
    name: &str,
) -> Result<(), crate::state::ProposeError> {
    let mut updated = (**node).clone();
    let taints: Vec<Value> = node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t["key"] != UNREACHABLE_TAINT)
        .collect();
    updated["spec"]["taints"] = json!(taints);
    let now = Timestamp::now();
    ctx.state
        .propose(Command::Update {
            object: updated,
            precondition_resource_version: resource_version(node),
            now,
        })
        .await?;
    tracing::info!(node = %name, "node posts status again; unreachable taint removed");
    ctx.events.record(
        InvolvedObject::of(node),
        EventType::Normal,
        "NodeReady",
        format!("Node {name} status is now: NodeReady"),
        COMPONENT,
    );
    Ok(())
}

async fn decide_pods(
    ctx: &Context,
    node: &str,
    unreachable_for: Duration,
    settings: &Settings,
) -> Result<(), crate::state::ProposeError> {
    let (pvcs, _) = ctx.state.list("PersistentVolumeClaim", None);
    let claim_nodes = super::placement::claims_from(&pvcs).node_of;
    let (pods, _) = ctx.state.list("Pod", None);
    for pod in pods
        .iter()
        .filter(|p| p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node))
    {
        let facts = pod_facts(pod, node, &claim_nodes);
        let Ok(key) = ObjectKey::of(pod) else {
            continue;
        };
        let pod_name = key.name.clone();
        match decide_pod(&facts, unreachable_for, settings) {
            PodStep::Keep => {}
            PodStep::Evict => {
                let uid = pod
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let command = Command::delete(key, Timestamp::now())
                    .expecting_uid(uid)
                    .with_grace_period(0);
                match ctx.state.propose(command).await {
                    Ok(_) | Err(crate::state::ProposeError::Rejected(_)) => {}
                    Err(e) => return Err(e),
                }
                tracing::warn!(node, pod = %pod_name, "evicted a pod from an unreachable node");
                ctx.events.record(
                    InvolvedObject::of(pod),
                    EventType::Normal,
                    "TaintManagerEviction",
                    format!("Deleting pod {pod_name}: its node {node} is unreachable; its controller re-creates it on another node"),
                    COMPONENT,
                );
            }
            PodStep::Pin { claims } => {
                let claims = claims.join(", ");
                let message = format!(
                    "node {node} is unreachable and this pod's claim {claims} is a directory on that node: the pod stays pinned there and is not started elsewhere; it runs again when the node returns. To give the data up: `berth node forget {node}` (the pod starts on another node with a new, empty claim), or `berth delete pod {pod_name} --force` to remove this copy"
                );
                let mut status = pod.get("status").cloned().unwrap_or_else(|| json!({}));
                let mut conds = conditions(pod);
                conds.retain(|c| c["type"] != PINNED_CONDITION);
                conds.push(json!({"type": PINNED_CONDITION, "status": "True", "reason": "LocalClaimOnLostNode", "message": message,
                    "lastProbeTime": null, "lastTransitionTime": Timestamp::now().to_rfc3339()}));
                status["conditions"] = json!(conds);
                ctx.state
                    .propose(Command::UpdateStatus {
                        key,
                        status,
                        precondition_resource_version: resource_version(pod),
                    })
                    .await?;
                tracing::warn!(node, pod = %pod_name, claims = %claims, "pod pinned to an unreachable node by its local claim");
                ctx.events.record(
                    InvolvedObject::of(pod),
                    EventType::Warning,
                    "PinnedToLostNode",
                    message,
                    COMPONENT,
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn a_node_is_marked_after_the_grace_period_and_unmarked_when_it_returns() {
        let settings = Settings::default();
        let cases = [
            (S(5), false, false, NodeStep::Nothing),
            (S(10), false, false, NodeStep::Nothing),
            (S(11), false, false, NodeStep::MarkUnreachable),
            (S(11), true, false, NodeStep::MarkUnreachable),
            (
                S(15),
                true,
                true,
                NodeStep::DecidePods {
                    unreachable_for: S(5),
                },
            ),
            (S(1), true, true, NodeStep::MarkReachable),
            (S(1), true, false, NodeStep::MarkReachable),
        ];
        for (silent_for, tainted, marked_unknown, expected) in cases {
            let facts = NodeFacts {
                silent_for,
                tainted,
                marked_unknown,
            };
            assert_eq!(decide_node(&facts, &settings), expected, "{facts:?}");
        }
    }

    #[test]
    fn the_grace_period_has_a_floor_of_two_seconds() {
        assert_eq!(
            Settings::with_grace(Duration::from_millis(500)).grace,
            MIN_GRACE
        );
        assert_eq!(Settings::with_grace(S(30)).eviction_margin, S(30));
    }

    fn facts(owner: PodOwner, local: &[&str], tolerates_for: Option<Option<i64>>) -> PodFacts {
        PodFacts {
            owner,
            local_claims: local.iter().map(|s| s.to_string()).collect(),
            tolerates_for,
            pinned: false,
            finished: false,
        }
    }

    #[test]
    fn pods_on_a_lost_node_are_evicted_pinned_or_kept_by_what_they_are() {
        let settings = Settings::default();
        let after = S(10);
        let cases = [
            (
                "job pod, before the margin",
                facts(PodOwner::Other, &[], None),
                S(9),
                PodStep::Keep,
            ),
            (
                "job pod, after the margin",
                facts(PodOwner::Other, &[], None),
                after,
                PodStep::Evict,
            ),
            (
                "statefulset pod without local claims",
                facts(PodOwner::StatefulSet, &[], None),
                after,
                PodStep::Evict,
            ),
            (
                "statefulset pod with a local claim",
                facts(PodOwner::StatefulSet, &["data-web-1"], None),
                after,
                PodStep::Pin {
                    claims: vec!["data-web-1".into()],
                },
            ),
            (
                "bare pod with a local claim",
                facts(PodOwner::None, &["c"], None),
                after,
                PodStep::Pin {
                    claims: vec!["c".into()],
                },
            ),
            (
                "daemonset pod",
                facts(PodOwner::DaemonSet, &[], None),
                S(3600),
                PodStep::Keep,
            ),
            (
                "bare pod",
                facts(PodOwner::None, &[], None),
                S(3600),
                PodStep::Keep,
            ),
            (
                "tolerates for ever",
                facts(PodOwner::Other, &[], Some(None)),
                S(3600),
                PodStep::Keep,
            ),
            (
                "tolerates 60 s, at 30 s",
                facts(PodOwner::Other, &[], Some(Some(60))),
                S(30),
                PodStep::Keep,
            ),
            (
                "tolerates 60 s, at 60 s",
                facts(PodOwner::Other, &[], Some(Some(60))),
                S(60),
                PodStep::Evict,
            ),
            (
                "tolerates 0 s, at once",
                facts(PodOwner::Other, &[], Some(Some(0))),
                S(0),
                PodStep::Evict,
            ),
        ];
        for (what, pod, unreachable_for, expected) in cases {
            assert_eq!(
                decide_pod(&pod, unreachable_for, &settings),
                expected,
                "{what}"
            );
        }
        let mut pinned = facts(PodOwner::StatefulSet, &["d"], None);
        pinned.pinned = true;
        assert_eq!(
            decide_pod(&pinned, after, &settings),
            PodStep::Keep,
            "pinned once"
        );
        let mut finished = facts(PodOwner::Other, &[], None);
        finished.finished = true;
        assert_eq!(decide_pod(&finished, after, &settings), PodStep::Keep);
    }

    #[test]
    fn pod_facts_read_owner_local_claims_and_tolerations() {
        let pod = json!({"metadata": {"name": "web-1", "namespace": "db",
                "ownerReferences": [{"kind": "StatefulSet", "name": "web", "uid": "u", "controller": true}]},
            "spec": {"nodeName": "n1",
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-web-1"}},
                            {"name": "other", "persistentVolumeClaim": {"claimName": "elsewhere"}}],
                "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30},
                                {"key": "other", "operator": "Exists"}]}});
        let claims: BTreeMap<String, String> = [
            ("db/data-web-1".to_string(), "n1".to_string()),
            ("db/elsewhere".to_string(), "n2".to_string()),
        ]
        .into();
        let f = pod_facts(&pod, "n1", &claims);
        assert_eq!(f.owner, PodOwner::StatefulSet);
        assert_eq!(f.local_claims, vec!["data-web-1".to_string()]);
        assert_eq!(f.tolerates_for, Some(Some(30)));
        let daemon = json!({"metadata": {"ownerReferences": [{"kind": "DaemonSet", "controller": true}]},
            "spec": {"tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}]}});
        let f = pod_facts(&daemon, "n1", &claims);
        assert_eq!(
            (f.owner, f.tolerates_for),
            (PodOwner::DaemonSet, Some(None))
        );
        assert_eq!(
            pod_facts(&json!({"metadata": {}}), "n1", &claims).owner,
            PodOwner::None
        );
    }

    #[test]
    fn heartbeats_are_timed_by_when_they_change_on_our_clock() {
        let mut h = Heartbeats::default();
        let t0 = Instant::now();
        assert_eq!(
            h.observe("n1", "10:00:00", t0),
            Duration::ZERO,
            "a node first seen gets a full grace period"
        );
        assert_eq!(h.observe("n1", "10:00:00", t0 + S(4)), S(4));
        assert_eq!(h.observe("n1", "10:00:04", t0 + S(5)), Duration::ZERO);
        assert_eq!(h.observe("n1", "10:00:04", t0 + S(12)), S(7));
        h.retain(&[]);
        assert_eq!(h.observe("n1", "10:00:04", t0 + S(20)), Duration::ZERO);
    }
}
