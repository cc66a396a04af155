//! The planner: a pure function from a set, its pods and claims, its revisions and the time to
//! the actions that move the set one step towards its spec, and the status it has now
//! (`updateStatefulSet` in Kubernetes' stateful_set_control.go, with berth's improvements).
//!
//! The order of business in one pass:
//! 1. A set being deleted: stop its pods (OrderedReady: highest ordinal first, each gone
//!    before the next; Parallel: all at once), then apply `whenDeleted`, then let it go.
//! 2. Pods in `[start, start+replicas)`, ascending: create missing ones (claims first),
//!    replace failed ones, replace a pod stuck on an abandoned revision (berth), and under
//!    OrderedReady stop at the first pod that is not Running, Ready and Available.
//! 3. Condemned pods (outside the range), descending; under OrderedReady one at a time.
//! 4. Claims: `whenScaled: Delete` removes claims of condemned ordinals whose pod is gone;
//!    claims grow with their template's storage request.
//! 5. RollingUpdate: replace outdated pods from the highest ordinal down to the partition,
//!    keeping at most `maxUnavailable` pods unavailable.
//!
//! Invariants the planner keeps (checked after every step by the simulation in `tests`):
//! under OrderedReady a pod is created only when every lower ordinal is Running, Ready and
//! Available; a pod is created only once all its claims exist; a claim is deleted only when
//! no pod of its ordinal exists; a pod below the partition is never deleted for an update.

use std::collections::{BTreeMap, BTreeSet};

use super::identity::{claim_name, claim_ordinal, pod_name};
use crate::state::Timestamp;

/// `spec.podManagementPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodManagement {
    OrderedReady,
    Parallel,
}

/// `spec.updateStrategy.rollingUpdate.maxUnavailable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxUnavailable {
    Count(i32),
    /// A percentage of `spec.replicas`, rounded down, at least 1.
    Percent(i32),
}

impl MaxUnavailable {
    /// The number of pods, for `replicas` replicas (never below 1).
    pub fn resolve(self, replicas: i32) -> i32 {
        let n = match self {
            MaxUnavailable::Count(n) => n,
            MaxUnavailable::Percent(p) => (i64::from(replicas) * i64::from(p) / 100) as i32,
        };
        n.max(1)
    }
}

/// `spec.updateStrategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    RollingUpdate {
        partition: i32,
        max_unavailable: MaxUnavailable,
    },
    OnDelete,
}

/// A `persistentVolumeClaimRetentionPolicy` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    Retain,
    Delete,
}

/// One `volumeClaimTemplates[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimTemplate {
    pub name: String,
    /// `spec.resources.requests.storage` as written, and in bytes.
    pub storage: Option<(String, i128)>,
}

/// What the planner needs of the set.
#[derive(Debug, Clone, PartialEq)]
pub struct SetView {
    pub name: String,
    pub generation: i64,
    pub deleting: bool,
    /// Whether the set carries the ordered-shutdown finalizer.
    pub has_finalizer: bool,
    pub replicas: i32,
    pub start: i32,
    pub management: PodManagement,
    pub strategy: Strategy,
    pub min_ready_seconds: i64,
    pub when_deleted: Retention,
    pub when_scaled: Retention,
    pub claim_templates: Vec<ClaimTemplate>,
}

/// Who controls a pod whose name is one of the set's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodOwner {
    ThisSet,
    /// No controller: adopted if its labels match the set's selector.
    Nobody,
    /// Another controller, or no controller and labels that do not match: it keeps the name.
    Other,
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

/// What the planner needs of a pod named `<set>-<ordinal>`.
#[derive(Debug, Clone, PartialEq)]
pub struct PodView {
    pub name: String,
    pub uid: String,
    pub ordinal: i32,
    pub owner: PodOwner,
    pub phase: PodPhase,
    /// When the Ready condition last became True, if it is True.
    pub ready_since: Option<Timestamp>,
    pub deleting: bool,
    /// The `controller-revision-hash` label.
    pub revision: String,
    /// Whether the name and ordinal labels are right.
    pub identity_ok: bool,
}

impl PodView {
    fn terminal(&self) -> bool {
        matches!(self.phase, PodPhase::Failed | PodPhase::Succeeded)
    }

    fn running_and_ready(&self) -> bool {
        self.phase == PodPhase::Running && self.ready_since.is_some()
    }

    /// Running, Ready for `min_ready` seconds, and not being deleted.
    fn healthy(&self, min_ready: i64, now: Timestamp) -> bool {
        !self.deleting && self.available(min_ready, now)
    }

    fn available(&self, min_ready: i64, now: Timestamp) -> bool {
        self.phase == PodPhase::Running
            && self
                .ready_since
                .is_some_and(|since| min_ready <= 0 || since.plus_seconds(min_ready) <= now)
    }
}

/// What the planner needs of a claim named `<template>-<set>-<ordinal>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimView {
    pub name: String,
    pub uid: String,
    pub deleting: bool,
    /// `spec.resources.requests.storage` in bytes.
    pub storage_bytes: Option<i128>,
    /// Whether its labels match the set's selector (only such claims are ever deleted).
    pub matches_set: bool,
}

/// Why a pod is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodDeleteReason {
    /// Its containers ended (Failed or Succeeded): it is re-created with the same identity.
    Failed,
    /// Its ordinal is outside the range (scale-down or a new `ordinals.start`).
    Condemned,
    /// A rolling update replaces it.
    Update,
    /// It is not Ready and was made from a revision that is neither current nor its target
    /// (a fixed or rolled-back template): berth replaces it instead of waiting forever.
    Abandoned,
    /// The set is being deleted.
    SetDeleted,
    /// It has not started and one of its claims is being deleted.
    StaleClaim,
}

/// Why a claim is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimDeleteReason {
    /// `whenScaled: Delete` and its ordinal is condemned.
    ScaledDown,
    /// `whenDeleted: Delete` and the set is being deleted.
    SetDeleted,
}

/// One step the executor carries out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Put the ordered-shutdown finalizer on the set.
    AddFinalizer,
    /// Take it off: the set may go.
    RemoveFinalizer,
    /// Make the set the controller of an orphaned pod of its own.
    AdoptPod { name: String, uid: String },
    /// Put the name and ordinal labels back on a pod.
    FixPodIdentity {
        name: String,
        uid: String,
        ordinal: i32,
    },
    /// Create the claim of `template` for `ordinal`.
    CreateClaim { template: String, ordinal: i32 },
    /// Create the pod for `ordinal` from `revision` (its claims exist or are created just
    /// before, in the same step).
    CreatePod { ordinal: i32, revision: String },
    DeletePod {
        name: String,
        uid: String,
        reason: PodDeleteReason,
    },
    DeleteClaim {
        name: String,
        uid: String,
        reason: ClaimDeleteReason,
    },
    /// Raise a claim's storage request to its template's.
    GrowClaim { name: String, storage: String },
}

/// The counts of `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub replicas: i32,
    pub ready: i32,
    pub available: i32,
    pub current: i32,
    pub updated: i32,
}

/// The outcome of one planning pass.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub counts: Counts,
    /// The revision to record as `status.currentRevision`: the update revision once every
    /// replica is updated and Ready, else the current one.
    pub current_revision: String,
    /// Look again at this time even if nothing changes (a pod becoming Available).
    pub requeue_at: Option<Timestamp>,
    /// What the set waits for, in words (for logs).
    pub waiting: Option<String>,
}

/// The set's current and update revision names.
#[derive(Debug, Clone, Copy)]
pub struct RevisionNames<'a> {
    pub current: &'a str,
    pub update: &'a str,
}

struct Planner<'a> {
    set: &'a SetView,
    now: Timestamp,
    revisions: RevisionNames<'a>,
    claims: BTreeMap<&'a str, &'a ClaimView>,
    /// Every pod name present, whoever owns it.
    pod_names: BTreeSet<&'a str>,
    /// Pods this pass already deletes.
    deleted: BTreeSet<String>,
    plan: Plan,
}

/// Plans one step for `set`. `pods` are the pods named `<set>-<ordinal>` (any owner) and
/// `claims` the claims named after the set's claim templates.
pub fn plan(
    set: &SetView,
    pods: &[PodView],
    claims: &[ClaimView],
    revisions: RevisionNames<'_>,
    now: Timestamp,
) -> Plan {
    let mut planner = Planner {
        set,
        now,
        revisions,
        claims: claims.iter().map(|c| (c.name.as_str(), c)).collect(),
        pod_names: pods.iter().map(|p| p.name.as_str()).collect(),
        deleted: BTreeSet::new(),
        plan: Plan {
            current_revision: revisions.current.to_string(),
            ..Plan::default()
        },
    };
    let mut owned: Vec<&PodView> = Vec::new();
    let mut foreign: BTreeSet<&str> = BTreeSet::new();
    for pod in pods {
        match pod.owner {
            PodOwner::ThisSet => owned.push(pod),
            PodOwner::Nobody if !set.deleting && !pod.deleting => {
                planner.plan.actions.push(Action::AdoptPod {
                    name: pod.name.clone(),
                    uid: pod.uid.clone(),
                });
                owned.push(pod);
            }
            _ => {
                foreign.insert(pod.name.as_str());
            }
        }
    }
    owned.sort_by_key(|p| p.ordinal);
    planner.count(&owned);
    if set.deleting {
        planner.shut_down(&owned);
    } else {
        if !set.has_finalizer {
            planner.plan.actions.push(Action::AddFinalizer);
        }
        planner.reconcile(&owned, &foreign);
    }
    planner.plan
}

impl<'a> Planner<'a> {
    fn monotonic(&self) -> bool {
        self.set.management == PodManagement::OrderedReady
    }

    fn end(&self) -> i32 {
        self.set.start.saturating_add(self.set.replicas.max(0))
    }

    fn in_range(&self, ordinal: i32) -> bool {
        ordinal >= self.set.start && ordinal < self.end()
    }

    /// The revision a new pod of `ordinal` is made from.
    fn target_revision(&self, ordinal: i32) -> &'a str {
        match self.set.strategy {
            Strategy::RollingUpdate { partition, .. }
                if ordinal < self.set.start.saturating_add(partition) =>
            {
                self.revisions.current
            }
            _ => self.revisions.update,
        }
    }

    fn wait(&mut self, why: String) {
        if self.plan.waiting.is_none() {
            self.plan.waiting = Some(why);
        }
    }

    fn requeue(&mut self, at: Timestamp) {
        self.plan.requeue_at = Some(self.plan.requeue_at.map_or(at, |t| t.min(at)));
    }

    fn count(&mut self, owned: &[&PodView]) {
        let (min_ready, now) = (self.set.min_ready_seconds, self.now);
        let mut counts = Counts::default();
        for pod in owned {
            counts.replicas += 1;
            if pod.running_and_ready() {
                counts.ready += 1;
                if pod.available(min_ready, now) {
                    counts.available += 1;
                } else if let Some(since) = pod.ready_since {
                    self.requeue(since.plus_seconds(min_ready));
                }
            }
            if !pod.deleting {
                if pod.revision == self.revisions.current {
                    counts.current += 1;
                }
                if pod.revision == self.revisions.update {
                    counts.updated += 1;
                }
            }
        }
        let replicas = self.set.replicas;
        if counts.updated == replicas && counts.ready == replicas && counts.replicas == replicas {
            self.plan.current_revision = self.revisions.update.to_string();
        }
        self.plan.counts = counts;
    }

    /// The set is being deleted: pods go in reverse ordinal order (all at once for
    /// Parallel), then claims per `whenDeleted`, then the finalizer.
    fn shut_down(&mut self, owned: &[&PodView]) {
        if !owned.is_empty() {
            if self.monotonic() {
                if let Some(stopping) = owned.iter().rev().find(|p| p.deleting) {
                    self.wait(format!(
                        "waiting for {} to stop before the next pod",
                        stopping.name
                    ));
                    return;
                }
                let last = owned.last().expect("not empty");
                self.delete_pod(last, PodDeleteReason::SetDeleted);
            } else {
                for pod in owned.iter().rev().filter(|p| !p.deleting) {
                    self.delete_pod(pod, PodDeleteReason::SetDeleted);
                }
            }
            return;
        }
        if self.set.when_deleted == Retention::Delete {
            let condemned: Vec<(String, String)> = self
                .set_claims()
                .filter(|(_, claim)| !claim.deleting && claim.matches_set)
                .filter(|(ordinal, _)| {
                    !self
                        .pod_names
                        .contains(pod_name(&self.set.name, *ordinal).as_str())
                })
                .map(|(_, claim)| (claim.name.clone(), claim.uid.clone()))
                .collect();
            for (name, uid) in condemned {
                self.plan.actions.push(Action::DeleteClaim {
                    name,
                    uid,
                    reason: ClaimDeleteReason::SetDeleted,
                });
            }
        }
        if self.set.has_finalizer {
            self.plan.actions.push(Action::RemoveFinalizer);
        }
    }

    /// The set's claims with their ordinals.
    fn set_claims(&self) -> impl Iterator<Item = (i32, &'a ClaimView)> + '_ {
        let set = self.set;
        self.claims.values().filter_map(move |claim| {
            set.claim_templates
                .iter()
                .find_map(|t| claim_ordinal(&t.name, &set.name, &claim.name))
                .map(|ordinal| (ordinal, *claim))
        })
    }

    fn delete_pod(&mut self, pod: &PodView, reason: PodDeleteReason) {
        if !self.deleted.insert(pod.name.clone()) {
            return;
        }
        self.plan.actions.push(Action::DeletePod {
            name: pod.name.clone(),
            uid: pod.uid.clone(),
            reason,
        });
    }

    fn reconcile(&mut self, owned: &[&PodView], foreign: &BTreeSet<&str>) {
        let by_ordinal: BTreeMap<i32, &PodView> = owned
            .iter()
            .filter(|p| self.in_range(p.ordinal))
            .map(|p| (p.ordinal, *p))
            .collect();
        let mut condemned: Vec<&PodView> = owned
            .iter()
            .filter(|p| !self.in_range(p.ordinal))
            .copied()
            .collect();
        condemned.sort_by_key(|p| std::cmp::Reverse(p.ordinal));

        let mut stopped = self.replicas_in_range(&by_ordinal, foreign);
        if !stopped {
            stopped = self.condemned(&condemned);
        }
        self.claim_retention_and_growth();
        if !stopped
            && let Strategy::RollingUpdate {
                partition,
                max_unavailable,
            } = self.set.strategy
        {
            self.rolling_update(&by_ordinal, partition, max_unavailable);
        }
    }

    /// Step 2; returns true when OrderedReady must not go further this pass.
    fn replicas_in_range(
        &mut self,
        by_ordinal: &BTreeMap<i32, &PodView>,
        foreign: &BTreeSet<&str>,
    ) -> bool {
        let monotonic = self.monotonic();
        let (min_ready, now) = (self.set.min_ready_seconds, self.now);
        for ordinal in self.set.start..self.end() {
            let name = pod_name(&self.set.name, ordinal);
            let Some(pod) = by_ordinal.get(&ordinal) else {
                if foreign.contains(name.as_str()) {
                    self.wait(format!(
                        "pod {name} exists and is not controlled by this StatefulSet"
                    ));
                } else if let Some(claim) = self.claim_being_deleted(ordinal) {
                    self.wait(format!(
                        "waiting for claim {claim} to be deleted before creating {name}"
                    ));
                } else {
                    for template in self.missing_claims(ordinal) {
                        self.plan
                            .actions
                            .push(Action::CreateClaim { template, ordinal });
                    }
                    let revision = self.target_revision(ordinal).to_string();
                    self.plan
                        .actions
                        .push(Action::CreatePod { ordinal, revision });
                    self.wait(format!("waiting for {name} to be Running and Ready"));
                }
                if monotonic {
                    return true;
                }
                continue;
            };
            if pod.terminal() {
                if !pod.deleting {
                    self.delete_pod(pod, PodDeleteReason::Failed);
                }
                self.wait(format!("re-creating {name}, whose containers ended"));
                if monotonic {
                    return true;
                }
                continue;
            }
            if pod.deleting {
                self.wait(format!("waiting for {name} to stop"));
                if monotonic {
                    return true;
                }
                continue;
            }
            if pod.phase == PodPhase::Pending && self.claim_being_deleted(ordinal).is_some() {
                self.delete_pod(pod, PodDeleteReason::StaleClaim);
                if monotonic {
                    return true;
                }
                continue;
            }
            for template in self.missing_claims(ordinal) {
                self.plan
                    .actions
                    .push(Action::CreateClaim { template, ordinal });
            }
            if !pod.identity_ok {
                self.plan.actions.push(Action::FixPodIdentity {
                    name: pod.name.clone(),
                    uid: pod.uid.clone(),
                    ordinal,
                });
            }
            let rolling = matches!(self.set.strategy, Strategy::RollingUpdate { .. });
            if rolling
                && !pod.running_and_ready()
                && pod.revision != self.revisions.current
                && pod.revision != self.target_revision(ordinal)
            {
                self.delete_pod(pod, PodDeleteReason::Abandoned);
                self.wait(format!(
                    "replacing {name}, which never became Ready on an abandoned revision"
                ));
                if monotonic {
                    return true;
                }
                continue;
            }
            if monotonic && !pod.healthy(min_ready, now) {
                if pod.running_and_ready() {
                    self.wait(format!("waiting for {name} to be Ready for {min_ready}s"));
                } else {
                    self.wait(format!("waiting for {name} to be Running and Ready"));
                }
                return true;
            }
        }
        false
    }

    fn claim_being_deleted(&self, ordinal: i32) -> Option<String> {
        self.set.claim_templates.iter().find_map(|t| {
            let name = claim_name(&t.name, &self.set.name, ordinal);
            self.claims
                .get(name.as_str())
                .filter(|c| c.deleting)
                .map(|_| name)
        })
    }

    fn missing_claims(&self, ordinal: i32) -> Vec<String> {
        self.set
            .claim_templates
            .iter()
            .filter(|t| {
                !self
                    .claims
                    .contains_key(claim_name(&t.name, &self.set.name, ordinal).as_str())
            })
            .map(|t| t.name.clone())
            .collect()
    }

    /// Step 3; returns true when OrderedReady must not go further this pass.
    fn condemned(&mut self, condemned: &[&PodView]) -> bool {
        for pod in condemned {
            if pod.deleting {
                if self.monotonic() {
                    self.wait(format!(
                        "waiting for {} to stop before scaling down further",
                        pod.name
                    ));
                    return true;
                }
                continue;
            }
            self.delete_pod(pod, PodDeleteReason::Condemned);
            if self.monotonic() {
                return true;
            }
        }
        false
    }

    /// Step 4.
    fn claim_retention_and_growth(&mut self) {
        let mut actions = Vec::new();
        for (ordinal, claim) in self.set_claims() {
            if claim.deleting {
                continue;
            }
            let pod_exists = self
                .pod_names
                .contains(pod_name(&self.set.name, ordinal).as_str());
            if self.set.when_scaled == Retention::Delete
                && !self.in_range(ordinal)
                && !pod_exists
                && claim.matches_set
            {
                actions.push(Action::DeleteClaim {
                    name: claim.name.clone(),
                    uid: claim.uid.clone(),
                    reason: ClaimDeleteReason::ScaledDown,
                });
                continue;
            }
            let template = self
                .set
                .claim_templates
                .iter()
                .find(|t| claim_ordinal(&t.name, &self.set.name, &claim.name).is_some());
            if let Some((text, wanted)) = template.and_then(|t| t.storage.as_ref())
                && claim.storage_bytes.is_some_and(|has| has < *wanted)
            {
                actions.push(Action::GrowClaim {
                    name: claim.name.clone(),
                    storage: text.clone(),
                });
            }
        }
        self.plan.actions.extend(actions);
    }

    /// Step 5: outdated pods at or above the partition are replaced from the top down while
    /// at most `maxUnavailable` in-range pods are unavailable. Replacing a pod that is already
    /// unavailable costs nothing; a healthy one waits for room.
    fn rolling_update(
        &mut self,
        by_ordinal: &BTreeMap<i32, &PodView>,
        partition: i32,
        max_unavailable: MaxUnavailable,
    ) {
        let (min_ready, now) = (self.set.min_ready_seconds, self.now);
        let max = max_unavailable.resolve(self.set.replicas);
        let mut unavailable = (self.set.start..self.end())
            .filter(|o| by_ordinal.get(o).is_none_or(|p| !p.healthy(min_ready, now)))
            .count() as i32;
        let lowest = self.set.start.saturating_add(partition.max(0));
        for ordinal in (lowest..self.end()).rev() {
            let Some(pod) = by_ordinal.get(&ordinal) else {
                continue;
            };
            if pod.deleting
                || pod.revision == self.revisions.update
                || self.deleted.contains(&pod.name)
            {
                continue;
            }
            if pod.healthy(min_ready, now) {
                if unavailable >= max {
                    self.wait(format!("rolling update: waiting for room to replace {} ({unavailable} of at most {max} unavailable)", pod.name));
                    break;
                }
                unavailable += 1;
            }
            self.delete_pod(pod, PodDeleteReason::Update);
        }
    }
}

#[cfg(test)]
mod tests;
