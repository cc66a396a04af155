//! The planner: a pure function from a DaemonSet, the nodes, the set's pods, its update
//! revision and the time to the actions that move the set one step towards one pod per
//! eligible node, and the status it has now (`manage` and `rollingUpdate` in Kubernetes'
//! pkg/controller/daemon, daemon_controller.go and update.go).
//!
//! The order of business in one pass:
//! 1. Per node (`manage`): a node that should run the pod and has none gets one (at the
//!    update revision); a failed pod is deleted (re-created on a later pass); a node that may
//!    no longer run it (relabelled, a NoExecute taint not tolerated) loses its pods; a node
//!    with more pods than it should have keeps the oldest (with maxSurge: the old pod until
//!    the new one is Available). Pods on nodes that no longer exist are deleted.
//! 2. RollingUpdate, on the nodes step 1 left alone: without surge, old pods are deleted
//!    while at most `maxUnavailable` nodes lack an Available pod (old pods that are not
//!    Available go at once); with `maxSurge`, a new pod is started beside the old one on up to
//!    `maxSurge` nodes at a time, and the old one is deleted once the new one is Available.
//!    OnDelete replaces nothing: a pod deleted by hand comes back at the update revision.
//!
//! Invariants the planner keeps (checked after every step by the simulation in `tests`): a
//! pod is only ever created on a node that should run it, at the update revision; without
//! surge no node has two live pods; a rolling update never leaves more than `maxUnavailable`
//! eligible nodes without an Available pod because of its own deletions, nor surges on more
//! than `maxSurge` nodes.

use std::collections::{BTreeMap, BTreeSet};

use crate::state::Timestamp;

/// `maxUnavailable` or `maxSurge`: a count or a percentage of the nodes that should run the
/// pod (rounded up, as Kubernetes does for DaemonSets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    Count(i32),
    Percent(i32),
}

impl Budget {
    /// The number of nodes, out of `desired`.
    pub fn resolve(self, desired: i32) -> i32 {
        match self {
            Budget::Count(n) => n.max(0),
            Budget::Percent(p) => {
                let scaled = i64::from(desired) * i64::from(p.max(0));
                ((scaled + 99) / 100) as i32
            }
        }
    }
}

/// `spec.updateStrategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    RollingUpdate {
        max_unavailable: Budget,
        max_surge: Budget,
    },
    OnDelete,
}

/// What the planner needs of the DaemonSet.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonSetView {
    pub name: String,
    pub generation: i64,
    pub deleting: bool,
    pub strategy: Strategy,
    pub min_ready_seconds: i64,
}

/// Whether a node should run the set's pod (`NodeShouldRunDaemonPod`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub name: String,
    /// nodeSelector and required affinity match, every NoSchedule/NoExecute taint tolerated:
    /// a pod is created here.
    pub should_run: bool,
    /// Affinity matches and every NoExecute taint is tolerated: a pod already here stays (a
    /// NoSchedule taint added later does not evict).
    pub should_continue: bool,
}

/// `status.phase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

/// What the planner needs of one of the set's pods (controlled by the set).
#[derive(Debug, Clone, PartialEq)]
pub struct PodView {
    pub name: String,
    pub uid: String,
    /// The node it is bound to.
    pub node: String,
    pub phase: PodPhase,
    /// When the Ready condition last became True, if it is True.
    pub ready_since: Option<Timestamp>,
    pub deleting: bool,
    /// Its `controller-revision-hash` label.
    pub revision: String,
    pub created: Timestamp,
}

impl PodView {
    fn ready(&self) -> bool {
        self.phase == PodPhase::Running && self.ready_since.is_some()
    }

    fn available(&self, min_ready: i64, now: Timestamp) -> bool {
        self.phase == PodPhase::Running
            && self
                .ready_since
                .is_some_and(|since| min_ready <= 0 || since.plus_seconds(min_ready) <= now)
    }

    fn failed(&self) -> bool {
        matches!(self.phase, PodPhase::Failed | PodPhase::Succeeded)
    }
}

/// Why a pod is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteReason {
    /// Its containers ended: it is re-created on a later pass.
    Failed,
    /// Its node may no longer run it (labels, affinity, an untolerated NoExecute taint).
    NotEligible,
    /// Its node is gone.
    NodeGone,
    /// The node has more pods of the set than it should.
    Excess,
    /// A rolling update replaces it.
    Update,
}

/// One step the executor carries out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create the set's pod for `node` from the update revision.
    CreatePod { node: String },
    DeletePod {
        name: String,
        uid: String,
        node: String,
        reason: DeleteReason,
    },
}

/// The counts of `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub desired: i32,
    pub current: i32,
    pub ready: i32,
    pub available: i32,
    pub updated: i32,
    pub misscheduled: i32,
}

/// The outcome of one planning pass.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub counts: Counts,
    /// Look again at this time even if nothing changes (a pod becoming Available).
    pub requeue_at: Option<Timestamp>,
}

/// Plans one step for `set` over `nodes`, with `pods` the live pods the set controls and
/// `update` its update revision's hash.
pub fn plan(
    set: &DaemonSetView,
    nodes: &[NodeView],
    pods: &[PodView],
    update: &str,
    now: Timestamp,
) -> Plan {
    let mut plan = Plan::default();
    let mut by_node: BTreeMap<&str, Vec<&PodView>> = BTreeMap::new();
    for pod in pods {
        by_node.entry(pod.node.as_str()).or_default().push(pod);
    }
    for list in by_node.values_mut() {
        list.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name)));
    }
    plan.counts = counts(set, nodes, &by_node, update, now);
    plan.requeue_at = pods
        .iter()
        .filter(|p| !p.deleting && set.min_ready_seconds > 0)
        .filter_map(|p| p.ready_since.map(|s| s.plus_seconds(set.min_ready_seconds)))
        .filter(|at| *at > now)
        .min();
    if set.deleting {
        // The state machine removes the pods with the set (ownerReferences).
        return plan;
    }
    let surge = matches!(set.strategy, Strategy::RollingUpdate { max_surge, .. } if max_surge.resolve(plan.counts.desired) > 0);
    let mut touched: BTreeSet<&str> = BTreeSet::new();
    let known: BTreeSet<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    let delete = |pod: &PodView, reason| Action::DeletePod {
        name: pod.name.clone(),
        uid: pod.uid.clone(),
        node: pod.node.clone(),
        reason,
    };

    for node in nodes {
        let all: Vec<&PodView> = by_node.get(node.name.as_str()).cloned().unwrap_or_default();
        let live: Vec<&PodView> = all.iter().copied().filter(|p| !p.deleting).collect();
        let before = plan.actions.len();
        if node.should_run || (node.should_continue && !live.is_empty()) {
            let (failed, running): (Vec<&PodView>, Vec<&PodView>) =
                live.iter().partition(|p| p.failed());
            for pod in &failed {
                plan.actions.push(delete(pod, DeleteReason::Failed));
            }
            if running.is_empty() {
                // A replacement waits until the pod it replaces is gone (a failed one always;
                // without surge any, so that two copies never hold the node's ports or files
                // at once, as the scheduler's port check makes Kubernetes wait).
                let terminating = all.iter().any(|p| p.deleting && (!surge || p.failed()));
                if node.should_run && failed.is_empty() && !terminating {
                    plan.actions.push(Action::CreatePod {
                        node: node.name.clone(),
                    });
                }
            } else if running.len() > 1 {
                for pod in excess(&running, surge, update, set.min_ready_seconds, now) {
                    plan.actions.push(delete(pod, DeleteReason::Excess));
                }
            }
        } else {
            for pod in &live {
                plan.actions.push(delete(pod, DeleteReason::NotEligible));
            }
        }
        if plan.actions.len() != before {
            touched.insert(node.name.as_str());
        }
    }
    for (node, list) in &by_node {
        if !known.contains(node) {
            for pod in list.iter().filter(|p| !p.deleting) {
                plan.actions.push(delete(pod, DeleteReason::NodeGone));
            }
        }
    }

    if let Strategy::RollingUpdate {
        max_unavailable,
        max_surge,
    } = set.strategy
    {
        let desired = plan.counts.desired;
        let mut max_unavailable = max_unavailable.resolve(desired);
        let max_surge = max_surge.resolve(desired);
        if max_surge == 0 && max_unavailable == 0 {
            max_unavailable = 1;
        }
        // Only nodes that should run the pod take part: a pod kept on a node that merely
        // tolerates it is not replaced, since its replacement could not be created.
        let eligible: Vec<&NodeView> = nodes.iter().filter(|n| n.should_run).collect();
        let actions = if max_surge == 0 {
            roll_without_surge(
                &eligible,
                &by_node,
                &touched,
                update,
                max_unavailable,
                set.min_ready_seconds,
                now,
            )
        } else {
            roll_with_surge(
                &eligible,
                &by_node,
                &touched,
                update,
                max_surge,
                set.min_ready_seconds,
                now,
            )
        };
        plan.actions.extend(actions);
    }
    plan
}

/// The pods to delete from a node holding several running pods of the set: without surge all
/// but the oldest; with surge, an old and a new pod may stand together while the old one is
/// Ready and the new one is not yet Available.
fn excess<'a>(
    running: &[&'a PodView],
    surge: bool,
    update: &str,
    min_ready: i64,
    now: Timestamp,
) -> Vec<&'a PodView> {
    if !surge {
        return running[1..].to_vec();
    }
    let oldest_new = running.iter().copied().find(|p| p.revision == update);
    let oldest_old = running.iter().copied().find(|p| p.revision != update);
    let mut out: Vec<&PodView> = running
        .iter()
        .copied()
        .filter(|p| {
            Some(p.name.as_str()) != oldest_new.map(|n| n.name.as_str())
                && Some(p.name.as_str()) != oldest_old.map(|o| o.name.as_str())
        })
        .collect();
    if let (Some(new), Some(old)) = (oldest_new, oldest_old) {
        if !old.ready() || new.available(min_ready, now) {
            out.push(old);
        }
    }
    out
}

/// Without surge: delete old pods while at most `max_unavailable` nodes lack an Available
/// pod (`rollingUpdate` in update.go, with the unavailable nodes counted before choosing).
fn roll_without_surge(
    eligible: &[&NodeView],
    by_node: &BTreeMap<&str, Vec<&PodView>>,
    touched: &BTreeSet<&str>,
    update: &str,
    max_unavailable: i32,
    min_ready: i64,
    now: Timestamp,
) -> Vec<Action> {
    let mut unavailable = 0;
    let mut replace_now: Vec<&PodView> = Vec::new();
    let mut candidates: Vec<&PodView> = Vec::new();
    for node in eligible {
        let pods = running_on(by_node, &node.name);
        if touched.contains(node.name.as_str()) || pods.len() != 1 {
            // Step 1 is creating or removing pods here: it counts as unavailable.
            unavailable += 1;
            continue;
        }
        let pod = pods[0];
        let available = pod.available(min_ready, now);
        if pod.revision == update {
            if !available {
                unavailable += 1;
            }
        } else if !available {
            unavailable += 1;
            replace_now.push(pod);
        } else {
            candidates.push(pod);
        }
    }
    let room = usize::try_from(max_unavailable - unavailable)
        .unwrap_or(0)
        .min(candidates.len());
    replace_now
        .into_iter()
        .chain(candidates.into_iter().take(room))
        .map(|pod| Action::DeletePod {
            name: pod.name.clone(),
            uid: pod.uid.clone(),
            node: pod.node.clone(),
            reason: DeleteReason::Update,
        })
        .collect()
}

/// With surge: start a new pod beside the old one on up to `max_surge` nodes at a time;
/// delete the old one once the new one is Available.
fn roll_with_surge(
    eligible: &[&NodeView],
    by_node: &BTreeMap<&str, Vec<&PodView>>,
    touched: &BTreeSet<&str>,
    update: &str,
    max_surge: i32,
    min_ready: i64,
    now: Timestamp,
) -> Vec<Action> {
    let mut surging = 0;
    let mut create_now: Vec<String> = Vec::new();
    let mut candidates: Vec<String> = Vec::new();
    let mut deletes: Vec<Action> = Vec::new();
    for node in eligible {
        if touched.contains(node.name.as_str()) {
            continue;
        }
        let pods = running_on(by_node, &node.name);
        let new = pods.iter().copied().find(|p| p.revision == update);
        let old = pods.iter().copied().find(|p| p.revision != update);
        match (old, new) {
            (None, _) => {}
            (Some(old), None) => {
                if !old.available(min_ready, now) {
                    create_now.push(node.name.clone());
                } else if node.should_run {
                    candidates.push(node.name.clone());
                }
            }
            (Some(old), Some(new)) => {
                if new.available(min_ready, now) {
                    deletes.push(Action::DeletePod {
                        name: old.name.clone(),
                        uid: old.uid.clone(),
                        node: old.node.clone(),
                        reason: DeleteReason::Update,
                    });
                } else {
                    surging += 1;
                }
            }
        }
    }
    let room = usize::try_from(max_surge - surging)
        .unwrap_or(0)
        .min(candidates.len());
    deletes
        .into_iter()
        .chain(
            create_now
                .into_iter()
                .chain(candidates.into_iter().take(room))
                .map(|node| Action::CreatePod { node }),
        )
        .collect()
}

/// The pods of the set on `node` that are neither being deleted nor failed.
fn running_on<'a>(by_node: &BTreeMap<&str, Vec<&'a PodView>>, node: &str) -> Vec<&'a PodView> {
    by_node
        .get(node)
        .map(|l| {
            l.iter()
                .copied()
                .filter(|p| !p.deleting && !p.failed())
                .collect()
        })
        .unwrap_or_default()
}

fn counts(
    set: &DaemonSetView,
    nodes: &[NodeView],
    by_node: &BTreeMap<&str, Vec<&PodView>>,
    update: &str,
    now: Timestamp,
) -> Counts {
    let mut c = Counts::default();
    for node in nodes {
        let live: Vec<&PodView> = by_node
            .get(node.name.as_str())
            .map(|l| l.iter().copied().filter(|p| !p.deleting).collect())
            .unwrap_or_default();
        if node.should_run {
            c.desired += 1;
            let Some(pod) = live.first() else { continue };
            c.current += 1;
            if pod.ready() {
                c.ready += 1;
                if pod.available(set.min_ready_seconds, now) {
                    c.available += 1;
                }
            }
            if pod.revision == update {
                c.updated += 1;
            }
        } else if !live.is_empty() {
            c.misscheduled += 1;
        }
    }
    c
}
