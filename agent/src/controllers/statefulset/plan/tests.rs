//! The planner in simulation, as Kubernetes' stateful_set_control_test.go does it: every
//! scenario runs in both OrderedReady and Parallel modes against a small simulated cluster
//! (pods start, become Ready, fail, are deleted, take a tick to stop; claims take a tick to
//! go), and the invariants are checked after every controller step, on the actions it chose
//! and on the world it chose them from.

use std::collections::{BTreeMap, BTreeSet};

use rand::{Rng, SeedableRng};

use super::*;
use crate::controllers::statefulset::identity::{claim_name, pod_name};

const MODES: [PodManagement; 2] = [PodManagement::OrderedReady, PodManagement::Parallel];

/// The simulated cluster.
#[derive(Clone, Debug)]
struct World {
    set: SetView,
    pods: BTreeMap<String, PodView>,
    claims: BTreeMap<String, ClaimView>,
    now: Timestamp,
    current: String,
    update: String,
    next_uid: u64,
    /// Revisions whose pods never become Ready (a bad template).
    bad_revisions: BTreeSet<String>,
    /// Ordinals whose pods stay not Ready (a readiness probe waiting for something).
    held: BTreeSet<i32>,
    /// Whether to check that no pod is Ready while a lower one is not (scale-up scenarios
    /// without injected failures).
    check_successors: bool,
    /// Every pod ever created, by name, with the revision it was made from.
    created: Vec<(String, String)>,
    /// Every pod the controller deleted, with the reason.
    deleted: Vec<(String, PodDeleteReason)>,
    deleted_claims: Vec<String>,
    steps: usize,
}

fn set(mode: PodManagement, replicas: i32) -> SetView {
    SetView {
        name: "web".into(),
        generation: 1,
        deleting: false,
        has_finalizer: true,
        replicas,
        start: 0,
        management: mode,
        strategy: Strategy::RollingUpdate {
            partition: 0,
            max_unavailable: MaxUnavailable::Count(1),
        },
        min_ready_seconds: 0,
        when_deleted: Retention::Retain,
        when_scaled: Retention::Retain,
        claim_templates: vec![ClaimTemplate {
            name: "data".into(),
            storage: Some(("1Gi".into(), 1 << 30)),
        }],
    }
}

impl World {
    fn new(mode: PodManagement, replicas: i32) -> World {
        World {
            set: set(mode, replicas),
            pods: BTreeMap::new(),
            claims: BTreeMap::new(),
            now: Timestamp::from_unix_seconds(1_000_000),
            current: "web-r1".into(),
            update: "web-r1".into(),
            next_uid: 1,
            bad_revisions: BTreeSet::new(),
            held: BTreeSet::new(),
            check_successors: false,
            created: Vec::new(),
            deleted: Vec::new(),
            deleted_claims: Vec::new(),
            steps: 0,
        }
    }

    fn mode(&self) -> PodManagement {
        self.set.management
    }

    fn uid(&mut self) -> String {
        self.next_uid += 1;
        format!("uid-{}", self.next_uid)
    }

    fn plan(&self) -> Plan {
        let pods: Vec<PodView> = self.pods.values().cloned().collect();
        let claims: Vec<ClaimView> = self.claims.values().cloned().collect();
        plan(
            &self.set,
            &pods,
            &claims,
            RevisionNames {
                current: &self.current,
                update: &self.update,
            },
            self.now,
        )
    }

    /// One controller step: plan, check, apply.
    fn controller(&mut self) -> Plan {
        let plan = self.plan();
        check_invariants(self, &plan);
        self.steps += 1;
        for action in &plan.actions {
            self.apply(action);
        }
        self.current = plan.current_revision.clone();
        plan
    }

    fn apply(&mut self, action: &Action) {
        match action {
            Action::AddFinalizer => self.set.has_finalizer = true,
            Action::RemoveFinalizer => self.set.has_finalizer = false,
            Action::AdoptPod { name, .. } => {
                self.pods.get_mut(name).unwrap().owner = PodOwner::ThisSet
            }
            Action::FixPodIdentity { name, .. } => {
                self.pods.get_mut(name).unwrap().identity_ok = true
            }
            Action::CreateClaim { template, ordinal } => {
                let name = claim_name(template, &self.set.name, *ordinal);
                let uid = self.uid();
                let storage = self
                    .set
                    .claim_templates
                    .iter()
                    .find(|t| &t.name == template)
                    .and_then(|t| t.storage.as_ref())
                    .map(|s| s.1);
                let claim = ClaimView {
                    name: name.clone(),
                    uid,
                    deleting: false,
                    storage_bytes: storage,
                    matches_set: true,
                };
                assert!(
                    self.claims.insert(name.clone(), claim).is_none(),
                    "claim {name} created twice"
                );
            }
            Action::CreatePod { ordinal, revision } => {
                let name = pod_name(&self.set.name, *ordinal);
                let uid = self.uid();
                let pod = PodView {
                    name: name.clone(),
                    uid,
                    ordinal: *ordinal,
                    owner: PodOwner::ThisSet,
                    phase: PodPhase::Pending,
                    ready_since: None,
                    deleting: false,
                    revision: revision.clone(),
                    identity_ok: true,
                };
                assert!(
                    self.pods.insert(name.clone(), pod).is_none(),
                    "two pods named {name}"
                );
                self.created.push((name, revision.clone()));
            }
            Action::DeletePod { name, uid, reason } => {
                let pod = self
                    .pods
                    .get_mut(name)
                    .unwrap_or_else(|| panic!("deleting missing pod {name}"));
                assert_eq!(&pod.uid, uid);
                self.deleted.push((name.clone(), *reason));
                // Pods that never ran, and ended pods, are removed at once; running pods stop
                // gracefully (one tick).
                if matches!(
                    pod.phase,
                    PodPhase::Pending | PodPhase::Failed | PodPhase::Succeeded
                ) {
                    self.pods.remove(name);
                } else {
                    pod.deleting = true;
                    pod.ready_since = None;
                }
            }
            Action::DeleteClaim { name, .. } => {
                self.claims.get_mut(name).unwrap().deleting = true;
                self.deleted_claims.push(name.clone());
            }
            Action::GrowClaim { name, storage } => {
                let bytes = crate::objects::quantity::bytes(storage).unwrap();
                self.claims.get_mut(name).unwrap().storage_bytes = Some(bytes);
            }
        }
    }

    /// One tick of the rest of the cluster: kubelets start and stop pods, claims finish
    /// deleting, a second passes.
    fn kubelet(&mut self) {
        self.now = self.now.plus_seconds(1);
        self.pods.retain(|_, p| !p.deleting);
        self.claims.retain(|_, c| !c.deleting);
        let now = self.now;
        for pod in self.pods.values_mut() {
            match pod.phase {
                PodPhase::Pending => pod.phase = PodPhase::Running,
                PodPhase::Running if pod.ready_since.is_none() => {
                    if !self.held.contains(&pod.ordinal)
                        && !self.bad_revisions.contains(&pod.revision)
                    {
                        pod.ready_since = Some(now);
                    }
                }
                _ => {}
            }
        }
        if self.check_successors {
            check_successors(self);
        }
    }

    fn ready_pods(&self) -> Vec<&PodView> {
        self.pods
            .values()
            .filter(|p| p.running_and_ready() && !p.deleting)
            .collect()
    }

    /// Runs controller and cluster until the controller has nothing to do twice in a row.
    fn settle(&mut self) {
        let mut idle = 0;
        for _ in 0..500 {
            let plan = self.controller();
            self.kubelet();
            if plan.actions.is_empty() && plan.requeue_at.is_none() {
                idle += 1;
                if idle == 2 {
                    return;
                }
            } else {
                idle = 0;
            }
        }
        panic!(
            "{:?}: the set did not settle: {:#?}",
            self.mode(),
            self.pods
        );
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<&PodView> = self.pods.values().collect();
        names.sort_by_key(|p| p.ordinal);
        names.iter().map(|p| p.name.clone()).collect()
    }

    fn revisions(&self) -> Vec<(i32, String)> {
        let mut pods: Vec<&PodView> = self.pods.values().collect();
        pods.sort_by_key(|p| p.ordinal);
        pods.iter()
            .map(|p| (p.ordinal, p.revision.clone()))
            .collect()
    }

    fn fail(&mut self, name: &str) {
        let pod = self.pods.get_mut(name).unwrap();
        pod.phase = PodPhase::Failed;
        pod.ready_since = None;
    }

    fn set_template(&mut self, revision: &str) {
        self.update = revision.into();
        self.set.generation += 1;
    }

    /// Asserts the set converged to `replicas` Ready pods at the update revision.
    fn assert_converged(&self) {
        let r = self.set.replicas;
        let expected: Vec<String> = (self.set.start..self.set.start + r)
            .map(|o| pod_name("web", o))
            .collect();
        assert_eq!(self.names(), expected, "{:?}", self.mode());
        assert_eq!(
            self.ready_pods().len() as i32,
            r,
            "{:?}: {:#?}",
            self.mode(),
            self.pods
        );
        for ordinal in self.set.start..self.set.start + r {
            assert!(
                self.claims
                    .contains_key(&claim_name("data", "web", ordinal)),
                "claim of {ordinal}"
            );
        }
    }
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The invariants, on the plan chosen from `w`.
fn check_invariants(w: &World, plan: &Plan) {
    let set = &w.set;
    let mode = w.mode();
    let ctx = |what: String| {
        format!(
            "{mode:?}, step {}: {what}\nactions: {:#?}\npods: {:#?}",
            w.steps, plan.actions, w.pods
        )
    };
    let healthy = |p: &PodView| p.healthy(set.min_ready_seconds, w.now);
    let in_range = |o: i32| o >= set.start && o < set.start + set.replicas;
    let mut claims_created: BTreeSet<String> = BTreeSet::new();
    let mut pods_created: BTreeSet<i32> = BTreeSet::new();
    let mut healthy_update_deletes = 0;
    let update_deleted: BTreeSet<&str> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::DeletePod { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    let unavailable_before = (set.start..set.start + set.replicas)
        .filter(|o| w.pods.get(&pod_name("web", *o)).is_none_or(|p| !healthy(p)))
        .count() as i32;
    for action in &plan.actions {
        match action {
            Action::CreateClaim { template, ordinal } => {
                let name = claim_name(template, "web", *ordinal);
                assert!(
                    !w.claims.contains_key(&name),
                    "{}",
                    ctx(format!("claim {name} created although it exists"))
                );
                claims_created.insert(name);
            }
            Action::CreatePod { ordinal, revision } => {
                let name = pod_name("web", *ordinal);
                assert!(
                    !set.deleting,
                    "{}",
                    ctx("a pod created while the set is being deleted".into())
                );
                assert!(
                    in_range(*ordinal),
                    "{}",
                    ctx(format!("{name} created out of range"))
                );
                assert!(
                    !w.pods.contains_key(&name),
                    "{}",
                    ctx(format!("two pods with identity {name}"))
                );
                assert!(
                    pods_created.insert(*ordinal),
                    "{}",
                    ctx(format!("{name} created twice in one step"))
                );
                for t in &set.claim_templates {
                    let claim = claim_name(&t.name, "web", *ordinal);
                    let exists = w.claims.get(&claim).is_some_and(|c| !c.deleting);
                    assert!(
                        exists || claims_created.contains(&claim),
                        "{}",
                        ctx(format!("{name} created before its claim {claim}"))
                    );
                }
                let expected = match set.strategy {
                    Strategy::RollingUpdate { partition, .. }
                        if *ordinal < set.start + partition =>
                    {
                        &w.current
                    }
                    _ => &w.update,
                };
                assert_eq!(
                    revision,
                    expected,
                    "{}",
                    ctx(format!("{name} made from the wrong revision"))
                );
                if mode == PodManagement::OrderedReady {
                    assert_eq!(
                        pods_created.len(),
                        1,
                        "{}",
                        ctx("OrderedReady created two pods in one step".into())
                    );
                    for lower in set.start..*ordinal {
                        let ok = w.pods.get(&pod_name("web", lower)).is_some_and(healthy);
                        assert!(
                            ok,
                            "{}",
                            ctx(format!(
                                "{name} created while web-{lower} is not Running, Ready and Available"
                            ))
                        );
                    }
                }
            }
            Action::DeletePod { name, uid, reason } => {
                let pod = w
                    .pods
                    .get(name)
                    .unwrap_or_else(|| panic!("{}", ctx(format!("deleting absent {name}"))));
                assert_eq!(&pod.uid, uid);
                assert!(!pod.deleting, "{}", ctx(format!("{name} deleted twice")));
                match reason {
                    PodDeleteReason::Condemned => {
                        assert!(
                            !in_range(pod.ordinal),
                            "{}",
                            ctx(format!("{name} condemned in range"))
                        );
                        if mode == PodManagement::OrderedReady {
                            let others_stopping = w.pods.values().any(|p| p.deleting);
                            assert!(
                                !others_stopping,
                                "{}",
                                ctx(format!("{name} deleted while another pod stops"))
                            );
                            let higher = w
                                .pods
                                .values()
                                .any(|p| !in_range(p.ordinal) && p.ordinal > pod.ordinal);
                            assert!(
                                !higher,
                                "{}",
                                ctx(format!("{name} deleted before a higher condemned pod"))
                            );
                            let all_healthy = (set.start..set.start + set.replicas)
                                .all(|o| w.pods.get(&pod_name("web", o)).is_some_and(healthy));
                            assert!(
                                all_healthy,
                                "{}",
                                ctx(format!(
                                    "scaled down {name} while an in-range pod is unhealthy"
                                ))
                            );
                        }
                    }
                    PodDeleteReason::Update => {
                        let Strategy::RollingUpdate {
                            partition,
                            max_unavailable,
                        } = set.strategy
                        else {
                            panic!("{}", ctx(format!("{name} updated under OnDelete")));
                        };
                        assert!(
                            pod.ordinal >= set.start + partition,
                            "{}",
                            ctx(format!("{name} below the partition updated"))
                        );
                        assert_ne!(
                            pod.revision,
                            w.update,
                            "{}",
                            ctx(format!("{name} is already updated"))
                        );
                        if healthy(pod) {
                            healthy_update_deletes += 1;
                            let max = max_unavailable.resolve(set.replicas);
                            assert!(
                                unavailable_before + healthy_update_deletes <= max,
                                "{}",
                                ctx(format!(
                                    "{name} deleted with {unavailable_before} unavailable (max {max})"
                                ))
                            );
                        }
                        let skipped_higher = w.pods.values().any(|p| {
                            p.ordinal > pod.ordinal
                                && in_range(p.ordinal)
                                && p.revision != w.update
                                && !p.deleting
                                && !update_deleted.contains(p.name.as_str())
                        });
                        assert!(
                            !skipped_higher,
                            "{}",
                            ctx(format!("{name} updated before a higher outdated pod"))
                        );
                    }
                    PodDeleteReason::Abandoned => {
                        assert!(
                            matches!(set.strategy, Strategy::RollingUpdate { .. }),
                            "{}",
                            ctx("abandoned pod under OnDelete".into())
                        );
                        assert!(
                            !pod.running_and_ready(),
                            "{}",
                            ctx(format!("{name} replaced although Ready"))
                        );
                        assert_ne!(
                            pod.revision,
                            w.current,
                            "{}",
                            ctx(format!("{name} at the current revision replaced"))
                        );
                    }
                    PodDeleteReason::Failed => {
                        assert!(
                            pod.terminal(),
                            "{}",
                            ctx(format!("{name} replaced as failed although it is not"))
                        );
                    }
                    PodDeleteReason::SetDeleted => {
                        assert!(
                            set.deleting,
                            "{}",
                            ctx(format!("{name} deleted for a set that is not"))
                        );
                        if mode == PodManagement::OrderedReady {
                            assert!(
                                !w.pods.values().any(|p| p.deleting),
                                "{}",
                                ctx(format!("{name} stopped while another pod stops"))
                            );
                            let higher = w
                                .pods
                                .values()
                                .any(|p| p.ordinal > pod.ordinal && p.owner == PodOwner::ThisSet);
                            assert!(
                                !higher,
                                "{}",
                                ctx(format!("{name} stopped before a higher ordinal"))
                            );
                        }
                    }
                    PodDeleteReason::StaleClaim => assert_eq!(pod.phase, PodPhase::Pending),
                }
            }
            Action::DeleteClaim { name, reason, .. } => {
                let ordinal: i32 = name.rsplit('-').next().unwrap().parse().unwrap();
                let pod = pod_name("web", ordinal);
                assert!(
                    !w.pods.contains_key(&pod),
                    "{}",
                    ctx(format!("claim {name} deleted while {pod} exists"))
                );
                assert!(
                    !pods_created.contains(&ordinal),
                    "{}",
                    ctx(format!("claim {name} deleted as its pod is created"))
                );
                match reason {
                    ClaimDeleteReason::ScaledDown => {
                        assert_eq!(
                            set.when_scaled,
                            Retention::Delete,
                            "{}",
                            ctx(format!("{name} deleted under whenScaled: Retain"))
                        );
                        assert!(
                            !in_range(ordinal),
                            "{}",
                            ctx(format!("claim {name} of an in-range ordinal deleted"))
                        );
                    }
                    ClaimDeleteReason::SetDeleted => {
                        assert!(
                            set.deleting && set.when_deleted == Retention::Delete,
                            "{}",
                            ctx(format!("{name} deleted wrongly"))
                        );
                    }
                }
            }
            _ => {}
        }
    }
}

/// No pod is Ready while a lower ordinal is not (OrderedReady scale-up without failures).
fn check_successors(w: &World) {
    if w.mode() != PodManagement::OrderedReady {
        return;
    }
    for ordinal in w.set.start + 1..w.set.start + w.set.replicas {
        let ready = |o: i32| {
            w.pods
                .get(&pod_name("web", o))
                .is_some_and(|p| p.running_and_ready())
        };
        let exists = |o: i32| w.pods.contains_key(&pod_name("web", o));
        assert!(
            !exists(ordinal) || ready(ordinal - 1),
            "web-{ordinal} exists while web-{} is not Running and Ready: {:#?}",
            ordinal - 1,
            w.pods
        );
    }
}

#[test]
fn scaling_up_creates_every_ordinal_with_its_claim() {
    for mode in MODES {
        let mut w = World::new(mode, 5);
        w.check_successors = true;
        w.settle();
        w.assert_converged();
        let order: Vec<&str> = w.created.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            order,
            vec!["web-0", "web-1", "web-2", "web-3", "web-4"],
            "{mode:?}"
        );
    }
}

#[test]
fn ordered_ready_waits_one_ready_pod_at_a_time_and_parallel_does_not() {
    for mode in MODES {
        let mut w = World::new(mode, 3);
        let first = w.controller();
        let creates = first
            .actions
            .iter()
            .filter(|a| matches!(a, Action::CreatePod { .. }))
            .count();
        match mode {
            PodManagement::OrderedReady => assert_eq!(creates, 1),
            PodManagement::Parallel => assert_eq!(creates, 3),
        }
        // Nothing becomes Ready: OrderedReady waits on web-0 however many times it runs.
        for _ in 0..5 {
            w.controller();
        }
        let expected = if mode == PodManagement::OrderedReady {
            names(&["web-0"])
        } else {
            names(&["web-0", "web-1", "web-2"])
        };
        assert_eq!(w.names(), expected, "{mode:?}");
    }
}

#[test]
fn a_pod_that_never_becomes_ready_halts_ordered_creation_until_it_does() {
    for mode in MODES {
        let mut w = World::new(mode, 4);
        w.check_successors = true;
        w.held.insert(1);
        w.settle();
        match mode {
            PodManagement::OrderedReady => assert_eq!(w.names(), names(&["web-0", "web-1"])),
            PodManagement::Parallel => assert_eq!(w.names().len(), 4),
        }
        // The readiness probe's file appears: creation continues.
        w.held.clear();
        w.settle();
        w.assert_converged();
    }
}

#[test]
fn min_ready_seconds_holds_the_next_pod_and_asks_to_be_woken() {
    for mode in MODES {
        let mut w = World::new(mode, 2);
        w.set.min_ready_seconds = 10;
        w.controller();
        w.kubelet(); // Running
        w.kubelet(); // Ready at t0
        let ready_at = w.pods["web-0"].ready_since.unwrap();
        let plan = w.controller();
        if mode == PodManagement::OrderedReady {
            assert!(
                !plan
                    .actions
                    .iter()
                    .any(|a| matches!(a, Action::CreatePod { .. })),
                "{:?}",
                plan.actions
            );
            assert_eq!(plan.requeue_at, Some(ready_at.plus_seconds(10)));
        }
        assert_eq!(
            plan.counts.ready,
            if mode == PodManagement::OrderedReady {
                1
            } else {
                2
            }
        );
        assert_eq!(plan.counts.available, 0);
        w.settle();
        w.assert_converged();
    }
}

#[test]
fn scaling_down_removes_the_highest_ordinals_one_stopped_pod_at_a_time() {
    for mode in MODES {
        let mut w = World::new(mode, 5);
        w.settle();
        w.set.replicas = 2;
        w.settle();
        w.assert_converged();
        let deleted: Vec<&str> = w.deleted.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(deleted, vec!["web-4", "web-3", "web-2"], "{mode:?}");
        // Retain: every claim stays, ready for a scale-up.
        assert_eq!(w.claims.len(), 5);
        w.set.replicas = 5;
        w.settle();
        w.assert_converged();
        assert!(w.deleted_claims.is_empty());
    }
}

#[test]
fn ordered_scale_down_waits_while_an_in_range_pod_is_unhealthy() {
    let mut w = World::new(PodManagement::OrderedReady, 3);
    w.settle();
    w.set.replicas = 2;
    w.held.insert(0);
    w.fail("web-0");
    // web-0 is re-created but never becomes Ready: web-2 must stay.
    for _ in 0..10 {
        w.controller();
        w.kubelet();
    }
    assert!(w.pods.contains_key("web-2"), "{:#?}", w.pods);
    w.held.clear();
    w.settle();
    w.assert_converged();
}

#[test]
fn when_scaled_delete_removes_only_the_claims_of_condemned_ordinals() {
    for mode in MODES {
        let mut w = World::new(mode, 4);
        w.set.when_scaled = Retention::Delete;
        w.settle();
        w.set.replicas = 2;
        w.settle();
        w.assert_converged();
        let mut deleted = w.deleted_claims.clone();
        deleted.sort();
        assert_eq!(deleted, names(&["data-web-2", "data-web-3"]), "{mode:?}");
        assert_eq!(
            w.claims.keys().cloned().collect::<Vec<_>>(),
            names(&["data-web-0", "data-web-1"])
        );
    }
}

#[test]
fn a_failed_pod_comes_back_with_the_same_name_and_claim() {
    for mode in MODES {
        let mut w = World::new(mode, 3);
        w.settle();
        let claim_uid = w.claims["data-web-1"].uid.clone();
        let old_uid = w.pods["web-1"].uid.clone();
        w.fail("web-1");
        w.settle();
        w.assert_converged();
        assert_ne!(w.pods["web-1"].uid, old_uid, "a new pod");
        assert_eq!(w.claims["data-web-1"].uid, claim_uid, "the same claim");
        assert!(
            w.deleted
                .contains(&("web-1".into(), PodDeleteReason::Failed))
        );
    }
}

#[test]
fn a_pod_deleted_by_hand_is_re_created() {
    for mode in MODES {
        let mut w = World::new(mode, 3);
        w.settle();
        w.pods.remove("web-0");
        w.settle();
        w.assert_converged();
    }
}

#[test]
fn a_missing_lower_ordinal_is_re_created_even_while_a_higher_one_is_unhealthy() {
    let mut w = World::new(PodManagement::OrderedReady, 3);
    w.settle();
    w.held.insert(2);
    w.fail("web-2");
    w.controller();
    w.kubelet();
    w.pods.remove("web-0");
    w.controller();
    w.kubelet();
    assert!(w.pods.contains_key("web-0"), "{:#?}", w.pods);
}

#[test]
fn a_rolling_update_replaces_pods_from_the_highest_ordinal_down() {
    for mode in MODES {
        let mut w = World::new(mode, 3);
        w.settle();
        w.set_template("web-r2");
        w.settle();
        w.assert_converged();
        let updated: Vec<&str> = w
            .deleted
            .iter()
            .filter(|(_, r)| *r == PodDeleteReason::Update)
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(updated, vec!["web-2", "web-1", "web-0"], "{mode:?}");
        assert!(w.revisions().iter().all(|(_, r)| r == "web-r2"));
        assert_eq!(w.current, "web-r2", "the rollout completed");
    }
}

#[test]
fn a_partition_keeps_lower_ordinals_on_the_current_revision() {
    for mode in MODES {
        let mut w = World::new(mode, 4);
        w.settle();
        w.set.strategy = Strategy::RollingUpdate {
            partition: 2,
            max_unavailable: MaxUnavailable::Count(1),
        };
        w.set_template("web-r2");
        w.settle();
        let expected: Vec<(i32, String)> = vec![
            (0, "web-r1".into()),
            (1, "web-r1".into()),
            (2, "web-r2".into()),
            (3, "web-r2".into()),
        ];
        assert_eq!(w.revisions(), expected, "{mode:?}");
        assert_eq!(w.current, "web-r1", "a partitioned rollout is not complete");
        // A failed pod below the partition comes back at the current revision.
        w.fail("web-0");
        w.settle();
        assert_eq!(w.revisions(), expected, "{mode:?}");
        // Lowering the partition finishes the rollout.
        w.set.strategy = Strategy::RollingUpdate {
            partition: 0,
            max_unavailable: MaxUnavailable::Count(1),
        };
        w.settle();
        assert!(w.revisions().iter().all(|(_, r)| r == "web-r2"));
        assert_eq!(w.current, "web-r2");
    }
}

#[test]
fn max_unavailable_replaces_several_pods_at_once_within_the_budget() {
    for mode in MODES {
        let mut w = World::new(mode, 5);
        w.settle();
        w.set.strategy = Strategy::RollingUpdate {
            partition: 0,
            max_unavailable: MaxUnavailable::Percent(40),
        };
        w.set_template("web-r2");
        let plan = w.controller();
        let deletes: Vec<&Action> = plan
            .actions
            .iter()
            .filter(|a| matches!(a, Action::DeletePod { .. }))
            .collect();
        assert_eq!(deletes.len(), 2, "{mode:?}: 40% of 5 is 2: {deletes:?}");
        w.settle();
        w.assert_converged();
        assert!(w.revisions().iter().all(|(_, r)| r == "web-r2"));
    }
}

#[test]
fn on_delete_replaces_nothing_until_a_pod_is_deleted_which_comes_back_updated() {
    for mode in MODES {
        let mut w = World::new(mode, 3);
        w.set.strategy = Strategy::OnDelete;
        w.settle();
        w.set_template("web-r2");
        w.settle();
        assert!(w.revisions().iter().all(|(_, r)| r == "web-r1"), "{mode:?}");
        w.pods.remove("web-1");
        w.settle();
        assert_eq!(w.revisions()[1], (1, "web-r2".to_string()));
        assert_eq!(w.revisions()[0], (0, "web-r1".to_string()));
    }
}

#[test]
fn a_rollout_stuck_on_a_bad_template_recovers_when_the_template_is_rolled_back() {
    for mode in MODES {
        let mut w = World::new(mode, 3);
        w.settle();
        // A bad template: its pods never become Ready.
        w.bad_revisions.insert("web-r2".into());
        w.set_template("web-r2");
        for _ in 0..20 {
            w.controller();
            w.kubelet();
        }
        assert_eq!(w.pods["web-2"].revision, "web-r2", "{mode:?}");
        assert!(!w.pods["web-2"].running_and_ready());
        assert_eq!(
            w.pods["web-1"].revision, "web-r1",
            "{mode:?}: the rollout stops at the stuck pod"
        );
        // Roll back: nobody deletes web-2 by hand.
        w.set_template("web-r1");
        w.settle();
        w.assert_converged();
        assert!(w.revisions().iter().all(|(_, r)| r == "web-r1"), "{mode:?}");
        assert!(
            w.deleted
                .contains(&("web-2".into(), PodDeleteReason::Abandoned)),
            "{mode:?}: {:?}",
            w.deleted
        );
    }
}

#[test]
fn a_rollout_stuck_on_a_bad_template_recovers_when_the_template_is_fixed() {
    for mode in MODES {
        let mut w = World::new(mode, 3);
        w.settle();
        w.bad_revisions.insert("web-r2".into());
        w.set_template("web-r2");
        for _ in 0..20 {
            w.controller();
            w.kubelet();
        }
        w.set_template("web-r3");
        w.settle();
        w.assert_converged();
        assert!(w.revisions().iter().all(|(_, r)| r == "web-r3"), "{mode:?}");
    }
}

#[test]
fn deleting_the_set_stops_pods_in_reverse_order_then_applies_when_deleted() {
    for mode in MODES {
        for retention in [Retention::Retain, Retention::Delete] {
            let mut w = World::new(mode, 4);
            w.set.when_deleted = retention;
            w.settle();
            w.set.deleting = true;
            w.settle();
            assert!(w.pods.is_empty(), "{mode:?}");
            assert!(!w.set.has_finalizer, "the finalizer is released");
            let order: Vec<&str> = w.deleted.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(order, vec!["web-3", "web-2", "web-1", "web-0"], "{mode:?}");
            match retention {
                Retention::Retain => assert_eq!(w.claims.len(), 4),
                Retention::Delete => assert!(w.claims.is_empty(), "{:?}", w.claims),
            }
        }
    }
}

#[test]
fn a_new_set_gets_the_finalizer_first() {
    for mode in MODES {
        let mut w = World::new(mode, 1);
        w.set.has_finalizer = false;
        let plan = w.controller();
        assert_eq!(plan.actions.first(), Some(&Action::AddFinalizer));
    }
}

#[test]
fn changing_the_start_ordinal_moves_the_range() {
    for mode in MODES {
        let mut w = World::new(mode, 3);
        w.settle();
        w.set.start = 2;
        w.settle();
        w.assert_converged();
        assert_eq!(w.names(), names(&["web-2", "web-3", "web-4"]));
    }
}

#[test]
fn the_management_policy_may_change_on_a_live_set() {
    let mut w = World::new(PodManagement::OrderedReady, 2);
    w.settle();
    w.set.management = PodManagement::Parallel;
    w.set.replicas = 5;
    let plan = w.controller();
    assert_eq!(
        plan.actions
            .iter()
            .filter(|a| matches!(a, Action::CreatePod { .. }))
            .count(),
        3
    );
    w.settle();
    w.set.management = PodManagement::OrderedReady;
    w.set.replicas = 2;
    w.settle();
    w.assert_converged();
}

#[test]
fn orphans_are_adopted_and_foreign_pods_keep_their_name() {
    for mode in MODES {
        let mut w = World::new(mode, 2);
        w.settle();
        w.pods.get_mut("web-0").unwrap().owner = PodOwner::Nobody;
        w.pods.get_mut("web-1").unwrap().owner = PodOwner::Other;
        w.set.replicas = 3;
        let plan = w.controller();
        assert!(
            plan.actions
                .iter()
                .any(|a| matches!(a, Action::AdoptPod { name, .. } if name == "web-0"))
        );
        assert!(
            !plan
                .actions
                .iter()
                .any(|a| matches!(a, Action::DeletePod { name, .. } if name == "web-1"))
        );
        w.settle();
        assert_eq!(w.pods["web-1"].owner, PodOwner::Other, "{mode:?}");
        if mode == PodManagement::Parallel {
            assert!(w.pods.contains_key("web-2"));
        } else {
            assert!(
                !w.pods.contains_key("web-2"),
                "OrderedReady waits for the name web-1"
            );
        }
    }
}

#[test]
fn claims_grow_with_their_template() {
    for mode in MODES {
        let mut w = World::new(mode, 2);
        w.settle();
        w.set.claim_templates[0].storage = Some(("2Gi".into(), 2 << 30));
        w.settle();
        assert!(
            w.claims.values().all(|c| c.storage_bytes == Some(2 << 30)),
            "{mode:?}"
        );
    }
}

#[test]
fn a_pending_pod_whose_claim_is_being_deleted_is_replaced_once_the_claim_is_gone() {
    for mode in MODES {
        let mut w = World::new(mode, 1);
        w.controller();
        w.claims.get_mut("data-web-0").unwrap().deleting = true;
        let plan = w.controller();
        assert!(
            plan.actions.contains(&Action::DeletePod {
                name: "web-0".into(),
                uid: w.created_uid("web-0"),
                reason: PodDeleteReason::StaleClaim
            }) || !w.pods.contains_key("web-0")
        );
        w.settle();
        w.assert_converged();
    }
}

impl World {
    fn created_uid(&self, name: &str) -> String {
        self.pods
            .get(name)
            .map(|p| p.uid.clone())
            .unwrap_or_default()
    }
}

#[test]
fn status_counts_follow_revisions_and_readiness() {
    let mut w = World::new(PodManagement::Parallel, 3);
    w.settle();
    w.set.strategy = Strategy::OnDelete;
    w.set_template("web-r2");
    w.pods.remove("web-2");
    w.controller();
    w.kubelet();
    let plan = w.plan();
    assert_eq!(
        plan.counts,
        Counts {
            replicas: 3,
            ready: 2,
            available: 2,
            current: 2,
            updated: 1
        }
    );
    assert_eq!(plan.current_revision, "web-r1");
}

/// Random failures, deletions, scaling and template changes; every step is checked, and
/// once the chaos stops the set must converge.
#[test]
fn random_faults_never_break_an_invariant_and_the_set_converges() {
    for mode in MODES {
        for seed in 0..40u64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut w = World::new(mode, 3);
            w.set.when_scaled = if seed % 2 == 0 {
                Retention::Delete
            } else {
                Retention::Retain
            };
            let mut revision = 1;
            for _ in 0..120 {
                match rng.gen_range(0..20) {
                    0 => {
                        if let Some(name) = w
                            .pods
                            .keys()
                            .nth(rng.gen_range(0..w.pods.len().max(1)))
                            .cloned()
                        {
                            w.fail(&name);
                        }
                    }
                    1 => {
                        if let Some(name) = w
                            .pods
                            .keys()
                            .nth(rng.gen_range(0..w.pods.len().max(1)))
                            .cloned()
                        {
                            w.pods.remove(&name);
                        }
                    }
                    2 => w.set.replicas = rng.gen_range(0..6),
                    3 => {
                        revision += 1;
                        w.set_template(&format!("web-r{revision}"));
                    }
                    4 => {
                        let partition = rng.gen_range(0..=w.set.replicas.max(0));
                        let max = MaxUnavailable::Count(rng.gen_range(1..3));
                        w.set.strategy = Strategy::RollingUpdate {
                            partition,
                            max_unavailable: max,
                        };
                    }
                    5 => {
                        if let Some(name) = w
                            .pods
                            .keys()
                            .nth(rng.gen_range(0..w.pods.len().max(1)))
                            .cloned()
                        {
                            let pod = w.pods.get_mut(&name).unwrap();
                            if pod.phase == PodPhase::Running {
                                pod.ready_since = None;
                            }
                        }
                    }
                    _ => {}
                }
                w.controller();
                w.kubelet();
            }
            w.set.strategy = Strategy::RollingUpdate {
                partition: 0,
                max_unavailable: MaxUnavailable::Count(1),
            };
            w.settle();
            w.assert_converged();
            assert!(
                w.revisions().iter().all(|(_, r)| *r == w.update),
                "{mode:?} seed {seed}: {:?}",
                w.revisions()
            );
        }
    }
}
