//! The planner, table-driven over several nodes, and a simulation of rolling updates that
//! checks the invariants after every controller step (kubelet and deletions simulated: pods
//! become Ready a step after creation, deleted pods are gone a step later).

use std::collections::BTreeMap;

use serde_json::json;

use super::observe::node_view;
use super::plan::*;
use crate::state::Timestamp;

const T0: i64 = 1_000_000;

fn set(strategy: Strategy) -> DaemonSetView {
    DaemonSetView {
        name: "agent".into(),
        generation: 1,
        deleting: false,
        strategy,
        min_ready_seconds: 0,
    }
}

fn rolling(max_unavailable: i32, max_surge: i32) -> Strategy {
    Strategy::RollingUpdate {
        max_unavailable: Budget::Count(max_unavailable),
        max_surge: Budget::Count(max_surge),
    }
}

fn node(name: &str) -> NodeView {
    NodeView {
        name: name.into(),
        should_run: true,
        should_continue: true,
    }
}

fn pod(name: &str, node: &str, revision: &str, ready: bool) -> PodView {
    PodView {
        name: name.into(),
        uid: format!("uid-{name}"),
        node: node.into(),
        phase: if ready {
            PodPhase::Running
        } else {
            PodPhase::Pending
        },
        ready_since: ready.then_some(Timestamp::from_unix_seconds(T0 - 100)),
        deleting: false,
        revision: revision.into(),
        created: Timestamp::from_unix_seconds(T0 - 200),
    }
}

fn now() -> Timestamp {
    Timestamp::from_unix_seconds(T0)
}

fn creates(plan: &Plan) -> Vec<String> {
    plan.actions
        .iter()
        .filter_map(|a| {
            if let Action::CreatePod { node } = a {
                Some(node.clone())
            } else {
                None
            }
        })
        .collect()
}

fn deletes(plan: &Plan) -> Vec<(String, DeleteReason)> {
    plan.actions
        .iter()
        .filter_map(|a| {
            if let Action::DeletePod { name, reason, .. } = a {
                Some((name.clone(), *reason))
            } else {
                None
            }
        })
        .collect()
}

#[test]
fn every_eligible_node_gets_one_pod_and_ineligible_nodes_none() {
    let mut tainted = node("c");
    tainted.should_run = false;
    tainted.should_continue = false;
    let plan = plan(
        &set(rolling(1, 0)),
        &[node("a"), node("b"), tainted],
        &[pod("agent-x", "a", "h1", true)],
        "h1",
        now(),
    );
    assert_eq!(creates(&plan), vec!["b".to_string()]);
    assert!(deletes(&plan).is_empty());
    assert_eq!(
        plan.counts,
        Counts {
            desired: 2,
            current: 1,
            ready: 1,
            available: 1,
            updated: 1,
            misscheduled: 0
        }
    );
}

#[test]
fn a_node_that_stops_matching_loses_its_pod_and_a_gone_node_too() {
    let mut relabelled = node("b");
    relabelled.should_run = false;
    relabelled.should_continue = false;
    let pods = [
        pod("agent-a", "a", "h1", true),
        pod("agent-b", "b", "h1", true),
        pod("agent-z", "zombie", "h1", true),
    ];
    let plan = plan(
        &set(rolling(1, 0)),
        &[node("a"), relabelled],
        &pods,
        "h1",
        now(),
    );
    assert_eq!(
        deletes(&plan),
        vec![
            ("agent-b".into(), DeleteReason::NotEligible),
            ("agent-z".into(), DeleteReason::NodeGone)
        ]
    );
    assert!(creates(&plan).is_empty());
    assert_eq!(plan.counts.misscheduled, 1);
    assert_eq!(plan.counts.desired, 1);
}

#[test]
fn a_pod_stays_on_a_node_with_a_new_noschedule_taint_but_none_is_created_there() {
    let tolerated_only = NodeView {
        name: "a".into(),
        should_run: false,
        should_continue: true,
    };
    let kept = plan(
        &set(rolling(1, 0)),
        &[tolerated_only.clone()],
        &[pod("agent-a", "a", "old", true)],
        "new",
        now(),
    );
    assert!(
        kept.actions.is_empty(),
        "neither deleted nor replaced by the rolling update: {:?}",
        kept.actions
    );
    let empty = plan(&set(rolling(1, 0)), &[tolerated_only], &[], "new", now());
    assert!(empty.actions.is_empty());
}

#[test]
fn failed_pods_are_deleted_and_replaced_once_gone() {
    let mut failed = pod("agent-a", "a", "h1", false);
    failed.phase = PodPhase::Failed;
    let first = plan(
        &set(rolling(1, 0)),
        &[node("a")],
        &[failed.clone()],
        "h1",
        now(),
    );
    assert_eq!(
        deletes(&first),
        vec![("agent-a".into(), DeleteReason::Failed)]
    );
    assert!(creates(&first).is_empty());
    failed.deleting = true;
    assert!(
        plan(&set(rolling(1, 0)), &[node("a")], &[failed], "h1", now())
            .actions
            .is_empty()
    );
    assert_eq!(
        creates(&plan(&set(rolling(1, 0)), &[node("a")], &[], "h1", now())),
        vec!["a".to_string()]
    );
}

#[test]
fn extra_pods_on_a_node_go_and_the_oldest_stays() {
    let mut young = pod("agent-young", "a", "h1", true);
    young.created = Timestamp::from_unix_seconds(T0 - 10);
    let plan = plan(
        &set(rolling(1, 0)),
        &[node("a")],
        &[young, pod("agent-old", "a", "h1", true)],
        "h1",
        now(),
    );
    assert_eq!(
        deletes(&plan),
        vec![("agent-young".into(), DeleteReason::Excess)]
    );
}

#[test]
fn rolling_update_without_surge_replaces_max_unavailable_nodes_at_a_time() {
    let nodes = [node("a"), node("b"), node("c"), node("d")];
    let old: Vec<PodView> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| pod(&format!("agent-{n}"), n, "old", true))
        .collect();
    let cases: Vec<(Strategy, usize)> = vec![
        (rolling(1, 0), 1),
        (rolling(2, 0), 2),
        (
            Strategy::RollingUpdate {
                max_unavailable: Budget::Percent(50),
                max_surge: Budget::Count(0),
            },
            2,
        ),
        (
            Strategy::RollingUpdate {
                max_unavailable: Budget::Percent(10),
                max_surge: Budget::Count(0),
            },
            1,
        ),
        (rolling(0, 0), 1),
        (rolling(10, 0), 4),
    ];
    for (strategy, expected) in cases {
        let plan = plan(&set(strategy), &nodes, &old, "new", now());
        assert_eq!(deletes(&plan).len(), expected, "{strategy:?}");
        assert!(
            deletes(&plan)
                .iter()
                .all(|(_, r)| *r == DeleteReason::Update)
        );
        assert!(creates(&plan).is_empty());
    }
}

#[test]
fn rolling_update_waits_while_a_node_is_unavailable_but_replaces_broken_old_pods_at_once() {
    let nodes = [node("a"), node("b"), node("c")];
    let pods = [
        pod("agent-a", "a", "new", false),
        pod("agent-b", "b", "old", true),
        pod("agent-c", "c", "old", false),
    ];
    let plan = plan(&set(rolling(1, 0)), &nodes, &pods, "new", now());
    assert_eq!(
        deletes(&plan),
        vec![("agent-c".into(), DeleteReason::Update)],
        "the not-ready old pod goes, the ready one waits"
    );
}

#[test]
fn on_delete_replaces_nothing_but_a_deleted_pod_comes_back_at_the_update_revision() {
    let nodes = [node("a"), node("b")];
    let plan_ = plan(
        &set(Strategy::OnDelete),
        &nodes,
        &[pod("agent-a", "a", "old", true)],
        "new",
        now(),
    );
    assert_eq!(creates(&plan_), vec!["b".to_string()]);
    assert!(deletes(&plan_).is_empty());
    assert_eq!(plan_.counts.updated, 0);
}

#[test]
fn surge_starts_the_new_pod_before_the_old_one_goes() {
    let nodes = [node("a"), node("b"), node("c")];
    let old: Vec<PodView> = ["a", "b", "c"]
        .iter()
        .map(|n| pod(&format!("agent-{n}"), n, "old", true))
        .collect();
    let first = plan(&set(rolling(0, 1)), &nodes, &old, "new", now());
    assert_eq!(creates(&first), vec!["a".to_string()]);
    assert!(deletes(&first).is_empty());
    // The new pod is not yet Available: both stay, no other node surges.
    let mut pods = old.clone();
    pods.push(pod("agent-a2", "a", "new", false));
    let waiting = plan(&set(rolling(0, 1)), &nodes, &pods, "new", now());
    assert!(waiting.actions.is_empty(), "{:?}", waiting.actions);
    // Available: the old pod goes and the next node surges.
    pods.pop();
    pods.push(pod("agent-a2", "a", "new", true));
    let next = plan(&set(rolling(0, 1)), &nodes, &pods, "new", now());
    assert_eq!(
        deletes(&next),
        vec![("agent-a".into(), DeleteReason::Excess)]
    );
}

#[test]
fn min_ready_seconds_delays_availability_and_asks_to_look_again() {
    let mut s = set(rolling(1, 0));
    s.min_ready_seconds = 30;
    let mut p = pod("agent-a", "a", "h1", true);
    p.ready_since = Some(Timestamp::from_unix_seconds(T0 - 10));
    let plan = plan(&s, &[node("a")], &[p], "h1", now());
    assert_eq!(plan.counts.ready, 1);
    assert_eq!(plan.counts.available, 0);
    assert_eq!(plan.requeue_at, Some(Timestamp::from_unix_seconds(T0 + 20)));
}

#[test]
fn a_set_being_deleted_plans_nothing() {
    let mut s = set(rolling(1, 0));
    s.deleting = true;
    assert!(plan(&s, &[node("a")], &[], "h1", now()).actions.is_empty());
}

fn stored_node(
    name: &str,
    labels: serde_json::Value,
    taints: serde_json::Value,
    unschedulable: bool,
) -> k8s_openapi::api::core::v1::Node {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints, "unschedulable": unschedulable},
        "status": {"conditions": [{"type": "Ready", "status": "False"}]}}))
    .unwrap()
}

fn daemon_pod(spec: serde_json::Value) -> k8s_openapi::api::core::v1::Pod {
    let set =
        json!({"metadata": {"name": "agent", "namespace": "default", "uid": "u", "generation": 1}});
    let mut template = json!({"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
    crate::api::patch::merge_patch(&mut template, &json!({"spec": spec}));
    serde_json::from_value(super::pod::new_pod(&set, &template, "h", None)).unwrap()
}

#[test]
fn node_eligibility_follows_selectors_affinity_and_taints_not_readiness_or_cordoning() {
    let none = json!([]);
    let ssd = json!({"disk": "ssd"});
    let cases: Vec<(
        &str,
        k8s_openapi::api::core::v1::Node,
        serde_json::Value,
        bool,
        bool,
    )> = vec![
        (
            "not ready and cordoned",
            stored_node("n", ssd.clone(), none.clone(), true),
            json!({}),
            true,
            true,
        ),
        (
            "selector matches",
            stored_node("n", ssd.clone(), none.clone(), false),
            json!({"nodeSelector": {"disk": "ssd"}}),
            true,
            true,
        ),
        (
            "selector does not match",
            stored_node("n", json!({}), none.clone(), false),
            json!({"nodeSelector": {"disk": "ssd"}}),
            false,
            false,
        ),
        (
            "required affinity does not match",
            stored_node("n", ssd.clone(), none.clone(), false),
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "NotIn", "values": ["ssd"]}]}]}}}}),
            false,
            false,
        ),
        (
            "NoSchedule taint: stay, do not start",
            stored_node(
                "n",
                ssd.clone(),
                json!([{"key": "k", "effect": "NoSchedule"}]),
                false,
            ),
            json!({}),
            false,
            true,
        ),
        (
            "NoExecute taint: go",
            stored_node(
                "n",
                ssd.clone(),
                json!([{"key": "k", "effect": "NoExecute"}]),
                false,
            ),
            json!({}),
            false,
            false,
        ),
        (
            "tolerated NoExecute taint",
            stored_node(
                "n",
                ssd.clone(),
                json!([{"key": "k", "value": "v", "effect": "NoExecute"}]),
                false,
            ),
            json!({"tolerations": [{"key": "k", "operator": "Equal", "value": "v"}]}),
            true,
            true,
        ),
        (
            "unreachable taint is tolerated",
            stored_node(
                "n",
                ssd.clone(),
                json!([{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]),
                false,
            ),
            json!({}),
            true,
            true,
        ),
        (
            "template nodeName elsewhere",
            stored_node("n", ssd.clone(), none.clone(), false),
            json!({"nodeName": "m"}),
            false,
            false,
        ),
    ];
    for (what, node, spec, run, stay) in cases {
        let view = node_view(&node, &daemon_pod(spec));
        assert_eq!(
            (view.should_run, view.should_continue),
            (run, stay),
            "{what}"
        );
    }
}

/// A simulated cluster: nodes, pods, a step counter standing in for time.
struct World {
    nodes: Vec<NodeView>,
    pods: Vec<PodView>,
    next: u32,
    step: i64,
}

impl World {
    fn new(nodes: usize, revision: &str) -> World {
        let nodes: Vec<NodeView> = (0..nodes).map(|i| node(&format!("n{i}"))).collect();
        let pods = nodes
            .iter()
            .map(|n| pod(&format!("agent-{}", n.name), &n.name, revision, true))
            .collect();
        World {
            nodes,
            pods,
            next: 0,
            step: 0,
        }
    }

    /// The kubelet and the state machine: deleted pods vanish, pending pods become Ready.
    fn settle(&mut self) {
        self.pods.retain(|p| !p.deleting);
        let now = Timestamp::from_unix_seconds(T0 + self.step);
        for p in &mut self.pods {
            if p.phase == PodPhase::Pending {
                p.phase = PodPhase::Running;
                p.ready_since = Some(now);
            }
        }
    }

    fn apply(&mut self, plan: &Plan, update: &str) {
        for action in &plan.actions {
            match action {
                Action::CreatePod { node } => {
                    self.next += 1;
                    let mut p = pod(&format!("agent-new{}", self.next), node, update, false);
                    p.created = Timestamp::from_unix_seconds(T0 + self.step);
                    self.pods.push(p);
                }
                Action::DeletePod { uid, .. } => {
                    for p in self.pods.iter_mut().filter(|p| &p.uid == uid) {
                        p.deleting = true;
                    }
                }
            }
        }
    }

    /// Nodes without an Available, live pod.
    fn unavailable(&self) -> usize {
        let now = Timestamp::from_unix_seconds(T0 + self.step);
        self.nodes
            .iter()
            .filter(|n| {
                !self.pods.iter().any(|p| {
                    p.node == n.name
                        && !p.deleting
                        && p.phase == PodPhase::Running
                        && p.ready_since.is_some_and(|s| s <= now)
                })
            })
            .count()
    }

    fn live_per_node(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for p in self.pods.iter().filter(|p| !p.deleting) {
            *m.entry(p.node.clone()).or_default() += 1;
        }
        m
    }
}

fn roll(nodes: usize, max_unavailable: i32, max_surge: i32) {
    let mut w = World::new(nodes, "old");
    let s = set(rolling(max_unavailable, max_surge));
    let budget = if max_unavailable == 0 && max_surge == 0 {
        1
    } else {
        max_unavailable as usize
    };
    for _ in 0..(nodes * 4 + 10) {
        w.step += 1;
        let plan = plan(
            &s,
            &w.nodes,
            &w.pods,
            "new",
            Timestamp::from_unix_seconds(T0 + w.step),
        );
        w.apply(&plan, "new");
        for a in &plan.actions {
            if let Action::CreatePod { node } = a {
                assert!(
                    w.nodes.iter().any(|n| &n.name == node && n.should_run),
                    "created on an ineligible node"
                );
            }
        }
        let per_node = w.live_per_node();
        if max_surge == 0 {
            assert!(
                per_node.values().all(|n| *n <= 1),
                "two live pods on a node without surge: {per_node:?}"
            );
            assert!(
                w.unavailable() <= budget,
                "{} nodes unavailable, budget {budget}",
                w.unavailable()
            );
        } else {
            let surging = per_node.values().filter(|n| **n > 1).count();
            assert!(
                surging <= max_surge as usize,
                "{surging} nodes surging, budget {max_surge}"
            );
            assert!(
                w.unavailable() <= budget,
                "surge never takes an Available pod away first"
            );
        }
        w.settle();
        if w.pods.len() == nodes
            && w.pods
                .iter()
                .all(|p| p.revision == "new" && p.phase == PodPhase::Running)
        {
            let done = plan_counts(&s, &w);
            assert_eq!(
                done,
                Counts {
                    desired: nodes as i32,
                    current: nodes as i32,
                    ready: nodes as i32,
                    available: nodes as i32,
                    updated: nodes as i32,
                    misscheduled: 0
                }
            );
            return;
        }
    }
    panic!("the rollout did not finish: {:?}", w.pods);
}

fn plan_counts(s: &DaemonSetView, w: &World) -> Counts {
    plan(
        s,
        &w.nodes,
        &w.pods,
        "new",
        Timestamp::from_unix_seconds(T0 + w.step + 1),
    )
    .counts
}

#[test]
fn rolling_updates_finish_within_their_budgets() {
    for (nodes, unavailable, surge) in [
        (1, 1, 0),
        (3, 1, 0),
        (5, 2, 0),
        (4, 0, 0),
        (3, 0, 1),
        (5, 0, 2),
        (4, 1, 1),
    ] {
        roll(nodes, unavailable, surge);
    }
}
