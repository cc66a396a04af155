//! The Job controller's decision (pure): from a Job, its pods and the time, what to do next.
//!
//! This follows Kubernetes' `syncJob` (1.31 and later):
//!
//! 1. A pod is counted once: it carries the tracking finalizer until the Job's status counts
//!    it, and the executor removes the finalizer in the same atomic command that writes the
//!    new counts (Kubernetes needs `uncountedTerminatedPods` for this; one state command
//!    makes it unnecessary).
//! 2. The Job fails (interim `FailureTarget`, then `Failed` once no pod is terminating) on a
//!    `FailJob` rule of the pod failure policy, when counted failures exceed `backoffLimit`
//!    (or container restarts reach it with `restartPolicy: OnFailure`), when
//!    `activeDeadlineSeconds` has passed since the start, or, with `backoffLimitPerIndex`,
//!    when too many indexes failed or every index is done and some failed.
//! 3. Otherwise it keeps `min(parallelism, completions - succeeded)` pods active (suspended:
//!    none), replacing failed pods after the back-off, and succeeds (interim
//!    `SuccessCriteriaMet`, then `Complete`) when enough pods succeeded.
//! 4. A finished Job is removed `ttlSecondsAfterFinished` after it finished.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;

use super::backoff;
use super::clock::{api_time, chrono_time, whole_seconds};
use super::failure_policy::{PolicyAction, match_policy};
use super::indexes::Indexes;
use super::pods::{JobPod, PodState, deletion_order};
use super::template::PodSlot;
use crate::events::EventType;

/// What the controller should do for one Job.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobPlan {
    /// The status to write, when it differs from the stored one.
    pub status: Option<JobStatus>,
    /// Pods whose tracking finalizer comes off in the same command that writes `status` (they
    /// are counted in it, or need no counting).
    pub release: Vec<String>,
    /// Pods to delete.
    pub delete: Vec<PodDeletion>,
    /// Pods to create.
    pub create: Vec<PodSlot>,
    /// Events about the Job (pod creations and deletions are reported by the executor).
    pub events: Vec<JobEvent>,
    /// Delete the Job itself (its time to live after finishing has passed).
    pub delete_job: bool,
    /// Look at the Job again after this long even if nothing changes (back-off, deadline,
    /// time to live).
    pub requeue_after: Option<Duration>,
}

/// A pod to delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodDeletion {
    /// The pod's name.
    pub name: String,
    /// The pod must not count as a failure (suspension, too many pods): its tracking
    /// finalizer is removed before the deletion. Otherwise the finalizer stays and the pod is
    /// counted as failed by the status that accompanies the deletion.
    pub uncounted: bool,
}

/// An event to record on the Job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobEvent {
    /// Normal or Warning.
    pub type_: EventType,
    /// The reason (`Completed`, `BackoffLimitExceeded`, ...).
    pub reason: String,
    /// The message.
    pub message: String,
}

impl JobPlan {
    /// Whether the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.status.is_none()
            && self.release.is_empty()
            && self.delete.is_empty()
            && self.create.is_empty()
            && self.events.is_empty()
            && !self.delete_job
    }

    fn requeue(&mut self, after: Duration) {
        self.requeue_after = Some(self.requeue_after.map_or(after, |r| r.min(after)));
    }

    fn event(&mut self, type_: EventType, reason: &str, message: impl Into<String>) {
        self.events.push(JobEvent {
            type_,
            reason: reason.to_owned(),
            message: message.into(),
        });
    }
}

/// How a Job ends.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Finish {
    Failed { reason: String, message: String },
    Complete,
}

/// Reason of a Job failed by its pod failure policy.
pub const REASON_POD_FAILURE_POLICY: &str = "PodFailurePolicy";
/// Reason of a Job failed by its backoff limit.
pub const REASON_BACKOFF_LIMIT: &str = "BackoffLimitExceeded";
/// Reason of a Job failed by its active deadline.
pub const REASON_DEADLINE: &str = "DeadlineExceeded";
/// Reason of a Job whose failed indexes exceeded `maxFailedIndexes`.
pub const REASON_MAX_FAILED_INDEXES: &str = "MaxFailedIndexesExceeded";
/// Reason of a Job that succeeded.
pub const REASON_COMPLETIONS_REACHED: &str = "CompletionsReached";
const COMPLETIONS_REACHED: &str = "Reached expected number of succeeded pods";
/// Reason of a Job that ended with failed indexes.
pub const REASON_FAILED_INDEXES: &str = "FailedIndexes";

/// Whether the Job has ended: a `Complete` or `Failed` condition that is True.
pub fn is_finished(status: Option<&JobStatus>) -> bool {
    finished_condition(status).is_some()
}

fn finished_condition(status: Option<&JobStatus>) -> Option<&JobCondition> {
    status?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

fn condition<'s>(status: &'s JobStatus, type_: &str) -> Option<&'s JobCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// Sets a condition as Kubernetes' `ensureJobConditionStatus` does: an existing one is
/// replaced when its status, reason or message differ; a missing one is added unless it
/// would be False. Returns whether anything changed.
fn ensure_condition(
    status: &mut JobStatus,
    type_: &str,
    value: &str,
    reason: &str,
    message: &str,
    now: DateTime<Utc>,
) -> bool {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let fresh = JobCondition {
        type_: type_.to_owned(),
        status: value.to_owned(),
        reason: Some(reason.to_owned()).filter(|r| !r.is_empty()),
        message: Some(message.to_owned()).filter(|m| !m.is_empty()),
        last_probe_time: Some(api_time(now)),
        last_transition_time: Some(api_time(now)),
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            let same = existing.status == value
                && existing.reason.as_deref().unwrap_or("") == reason
                && existing.message.as_deref().unwrap_or("") == message;
            if same {
                return false;
            }
            *existing = fresh;
            true
        }
        None if value == "False" => false,
        None => {
            conditions.push(fresh);
            true
        }
    }
}

/// The settings of a Job spec the decision reads, with the API server's defaults.
struct Settings<'s> {
    spec: &'s JobSpec,
    indexed: bool,
    completions: Option<i32>,
    parallelism: i32,
    backoff_limit: i64,
    per_index_limit: Option<i32>,
    replace_terminating: bool,
    suspended: bool,
}

impl<'s> Settings<'s> {
    fn of(spec: &'s JobSpec) -> Settings<'s> {
        let indexed = spec.completion_mode.as_deref() == Some("Indexed");
        Settings {
            spec,
            indexed,
            completions: spec.completions,
            parallelism: spec.parallelism.unwrap_or(1).max(0),
            backoff_limit: i64::from(spec.backoff_limit.unwrap_or(6)),
            per_index_limit: spec.backoff_limit_per_index.filter(|_| indexed),
            replace_terminating: spec.pod_replacement_policy.as_deref() != Some("Failed"),
            suspended: spec.suspend == Some(true),
        }
    }

    /// `completions` of an Indexed Job (required there by validation).
    fn index_count(&self) -> i32 {
        self.completions.unwrap_or(1)
    }

    fn valid_index(&self, pod: &JobPod<'_>) -> bool {
        !self.indexed || pod.index.is_some_and(|i| i < self.index_count())
    }
}

/// Decides what to do for `job`, whose pods (those it controls) are `pods`, at `now`.
pub fn plan(job: &Job, pods: &[Pod], now: DateTime<Utc>) -> JobPlan {
    let now = whole_seconds(now);
    let default_spec = JobSpec::default();
    let spec = job.spec.as_ref().unwrap_or(&default_spec);
    let old = job.status.clone().unwrap_or_default();
    let pods: Vec<JobPod<'_>> = pods.iter().map(JobPod::new).collect();
    let mut plan = JobPlan::default();

    if is_finished(job.status.as_ref()) {
        // Nothing more to count; let go of any pod still held, and expire the Job.
        plan.release = pods
            .iter()
            .filter(|p| p.tracked)
            .map(|p| p.name.to_owned())
            .collect();
        if let Some(ttl) = spec.ttl_seconds_after_finished {
            let finished = finished_condition(job.status.as_ref())
                .and_then(|c| c.last_transition_time.as_ref())
                .or(old.completion_time.as_ref())
                .map(chrono_time)
                .unwrap_or(now);
            let expires = finished + chrono::TimeDelta::seconds(i64::from(ttl));
            match (expires - now).to_std() {
                Ok(left) if !left.is_zero() => plan.requeue(left),
                // Once its deletion has started, asking again changes nothing.
                _ => plan.delete_job = job.metadata.deletion_timestamp.is_none(),
            }
        }
        return plan;
    }
    if job.metadata.deletion_timestamp.is_some() {
        // The Job is going away (foreground deletion): its pods must not be held by it.
        plan.release = pods
            .iter()
            .filter(|p| p.tracked)
            .map(|p| p.name.to_owned())
            .collect();
        return plan;
    }

    let settings = Settings::of(spec);
    let mut status = old.clone();
    let policy = spec.pod_failure_policy.as_ref();

    // 1. Count the pods that finished since the last pass.
    let mut new_succeeded = 0;
    let mut new_failed = 0;
    let mut fail_job_message = None;
    let mut new_failed_indexes = Indexes::new();
    for pod in pods.iter().filter(|p| p.tracked && settings.valid_index(p)) {
        if pod.state == PodState::Succeeded {
            new_succeeded += 1;
        } else if pod.is_failed(settings.replace_terminating) {
            let action = match_policy(policy, pod.pod);
            let counts = action.as_ref().is_none_or(PolicyAction::counts);
            if counts {
                new_failed += 1;
            }
            match action {
                Some(PolicyAction::FailJob(message)) if fail_job_message.is_none() => {
                    fail_job_message = Some(message)
                }
                Some(PolicyAction::FailIndex) if settings.per_index_limit.is_some() => {
                    new_failed_indexes.insert(pod.index.unwrap_or(0));
                }
                _ => {}
            }
            if let (Some(limit), true) = (settings.per_index_limit, counts)
                && pod.index_failure_counts().0 >= limit
            {
                new_failed_indexes.insert(pod.index.unwrap_or(0));
            }
        }
    }
    let succeeded_indexes = if settings.indexed {
        let completions = settings.index_count();
        let done = pods
            .iter()
            .filter(|p| p.state == PodState::Succeeded && settings.valid_index(p))
            .filter_map(|p| p.index);
        Indexes::parse(old.completed_indexes.as_deref().unwrap_or(""), completions)
            .union(&done.collect())
    } else {
        Indexes::new()
    };
    let succeeded = if settings.indexed {
        succeeded_indexes.len() as i64
    } else {
        i64::from(old.succeeded.unwrap_or(0)) + new_succeeded
    };
    let mut failed = i64::from(old.failed.unwrap_or(0)) + new_failed;
    let failed_indexes = settings.per_index_limit.map(|_| {
        Indexes::parse(
            old.failed_indexes.as_deref().unwrap_or(""),
            settings.index_count(),
        )
        .union(&new_failed_indexes)
    });
    let resuming = !settings.suspended && condition(&old, "Suspended").is_some();
    if (status.start_time.is_none() && !settings.suspended) || resuming {
        // The active deadline counts from the (last) start, as in Kubernetes.
        status.start_time = Some(api_time(now));
    }
    let start = status.start_time.as_ref().map(chrono_time).unwrap_or(now);

    // 2. Has the Job reached its end?
    let mut finish = if let Some(target) = condition(&old, "FailureTarget") {
        Some(Finish::Failed {
            reason: target.reason.clone().unwrap_or_default(),
            message: target.message.clone().unwrap_or_default(),
        })
    } else if condition(&old, "SuccessCriteriaMet").is_some() {
        Some(Finish::Complete)
    } else {
        None
    };
    let failure = |reason: &str, message: &str| {
        Some(Finish::Failed {
            reason: reason.to_owned(),
            message: message.to_owned(),
        })
    };
    if finish.is_none() {
        if let Some(message) = fail_job_message {
            finish = failure(REASON_POD_FAILURE_POLICY, &message);
        } else if failed > settings.backoff_limit || past_backoff_limit_on_failure(&settings, &pods)
        {
            finish = failure(
                REASON_BACKOFF_LIMIT,
                "Job has reached the specified backoff limit",
            );
        } else if let Some(deadline) = spec.active_deadline_seconds.filter(|_| !settings.suspended)
        {
            let ends = start + chrono::TimeDelta::seconds(deadline);
            match (ends - now).to_std() {
                Ok(left) if !left.is_zero() => plan.requeue(left),
                _ => {
                    finish = failure(
                        REASON_DEADLINE,
                        "Job was active longer than specified deadline",
                    )
                }
            }
        }
    }
    if let (None, Some(failed_indexes)) = (&finish, &failed_indexes) {
        let too_many = spec
            .max_failed_indexes
            .is_some_and(|max| failed_indexes.len() > max.max(0) as usize);
        if too_many {
            finish = failure(
                REASON_MAX_FAILED_INDEXES,
                "Job has exceeded the specified maximal number of failed indexes",
            );
        } else if !failed_indexes.is_empty()
            && failed_indexes.len() + succeeded_indexes.len() >= settings.index_count() as usize
        {
            finish = failure(REASON_FAILED_INDEXES, "Job has failed indexes");
        }
    }

    // 3. Pods: stop them all when the Job ends, else keep the wanted number active.
    let active: Vec<&JobPod<'_>> = pods
        .iter()
        .filter(|p| p.state == PodState::Active)
        .collect();
    let mut active_count = active.len() as i64;
    let mut ready = active.iter().filter(|p| p.is_ready()).count() as i64;
    let mut terminating = pods
        .iter()
        .filter(|p| p.state == PodState::Terminating)
        .count() as i64;
    let mut uncounted_deletions = Vec::new();
    if finish.is_some() {
        for pod in &active {
            plan.delete.push(PodDeletion {
                name: pod.name.to_owned(),
                uncounted: false,
            });
        }
        terminating += active_count;
        active_count = 0;
        ready = 0;
    } else if settings.suspended {
        for pod in &active {
            uncounted_deletions.push(pod.name.to_owned());
        }
        terminating += active_count;
        active_count = 0;
        ready = 0;
        if ensure_condition(
            &mut status,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            now,
        ) {
            plan.event(EventType::Normal, "Suspended", "Job suspended");
        }
    } else {
        if resuming
            && ensure_condition(
                &mut status,
                "Suspended",
                "False",
                "JobResumed",
                "Job resumed",
                now,
            )
        {
            plan.event(EventType::Normal, "Resumed", "Job resumed");
        }
        let want = wanted_active(&settings, succeeded, active_count);
        let mut remove = if settings.indexed {
            surplus_indexed_pods(&settings, &active, &succeeded_indexes)
        } else {
            Vec::new()
        };
        let more = (active_count - want).max(0) as usize;
        if remove.len() < more {
            let mut rest: Vec<&JobPod<'_>> = active
                .iter()
                .copied()
                .filter(|p| !remove.iter().any(|r| r.name == p.name))
                .collect();
            rest.sort_by(|a, b| deletion_order(a, b));
            remove.extend(rest.into_iter().take(more - remove.len()));
        }
        if !remove.is_empty() {
            // Deletions and creations never happen in the same pass (as in Kubernetes).
            for pod in &remove {
                uncounted_deletions.push(pod.name.to_owned());
                if pod.is_ready() {
                    ready -= 1;
                }
            }
            active_count -= remove.len() as i64;
            terminating += remove.len() as i64;
        } else {
            let blocking = if settings.replace_terminating {
                0
            } else {
                terminating
            };
            let missing = want - active_count - blocking;
            if missing > 0 {
                let slots = new_pod_slots(
                    &settings,
                    &pods,
                    &active,
                    &succeeded_indexes,
                    failed_indexes.as_ref(),
                    missing as usize,
                    now,
                    &mut plan,
                );
                active_count += slots.len() as i64;
                plan.create = slots;
            }
        }
    }
    if finish.is_none() {
        let complete = match settings.completions {
            None => succeeded > 0 && active_count == 0,
            Some(completions) => succeeded >= i64::from(completions) && active_count == 0,
        };
        if complete {
            finish = Some(Finish::Complete);
        }
    }
    for name in uncounted_deletions {
        plan.delete.push(PodDeletion {
            name,
            uncounted: true,
        });
    }

    // 4. Release what the new status counts; a failing Job counts every pod it stops.
    let deleting_uncounted: Vec<&str> = plan
        .delete
        .iter()
        .filter(|d| d.uncounted)
        .map(|d| d.name.as_str())
        .collect();
    let failing = matches!(finish, Some(Finish::Failed { .. }));
    for pod in pods
        .iter()
        .filter(|p| p.tracked && !deleting_uncounted.contains(&p.name))
    {
        let done = pod.state == PodState::Succeeded || pod.is_failed(settings.replace_terminating);
        if done || finish.is_some() {
            plan.release.push(pod.name.to_owned());
        }
        if failing && !done && settings.valid_index(pod) {
            failed += 1;
        }
    }

    // 5. The status.
    status.active = Some(clamp(active_count));
    status.ready = Some(clamp(ready));
    status.terminating = Some(clamp(terminating));
    status.succeeded = Some(clamp(succeeded));
    status.failed = Some(clamp(failed));
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());
    if settings.indexed {
        status.completed_indexes = Some(succeeded_indexes.to_string());
    }
    if let Some(failed_indexes) = &failed_indexes {
        status.failed_indexes = Some(failed_indexes.to_string());
    }
    match finish {
        Some(Finish::Failed { reason, message }) => {
            ensure_condition(&mut status, "FailureTarget", "True", &reason, &message, now);
            if terminating == 0 {
                ensure_condition(&mut status, "Failed", "True", &reason, &message, now);
                plan.event(EventType::Warning, &reason, message);
            }
        }
        Some(Finish::Complete) => {
            ensure_condition(
                &mut status,
                "SuccessCriteriaMet",
                "True",
                REASON_COMPLETIONS_REACHED,
                COMPLETIONS_REACHED,
                now,
            );
            if terminating == 0 {
                ensure_condition(
                    &mut status,
                    "Complete",
                    "True",
                    REASON_COMPLETIONS_REACHED,
                    COMPLETIONS_REACHED,
                    now,
                );
                status.completion_time = Some(api_time(now));
                plan.event(EventType::Normal, "Completed", "Job completed");
            }
        }
        None => {}
    }
    if status != old {
        plan.status = Some(status);
    }
    plan
}

fn clamp(n: i64) -> i32 {
    n.clamp(0, i64::from(i32::MAX)) as i32
}

/// How many pods should be active.
fn wanted_active(settings: &Settings<'_>, succeeded: i64, active: i64) -> i64 {
    let parallelism = i64::from(settings.parallelism);
    match settings.completions {
        // A work queue: once one pod succeeded, the others finish on their own.
        None if succeeded > 0 => active,
        None => parallelism,
        Some(completions) => (i64::from(completions) - succeeded).clamp(0, parallelism),
    }
}

/// `restartPolicy: OnFailure` restarts containers in place; their restarts count against
/// `backoffLimit` (Kubernetes' `pastBackoffLimitOnFailure`).
fn past_backoff_limit_on_failure(settings: &Settings<'_>, pods: &[JobPod<'_>]) -> bool {
    let policy = settings
        .spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref());
    if policy != Some("OnFailure") {
        return false;
    }
    let restarts: i64 = pods
        .iter()
        .filter(|p| matches!(p.state, PodState::Active | PodState::Terminating))
        .map(JobPod::restarts)
        .sum();
    if settings.backoff_limit == 0 {
        restarts > 0
    } else {
        restarts >= settings.backoff_limit
    }
}

/// Active pods of an Indexed Job that must go: no valid index, an index that already
/// succeeded, or a second pod for one index (the most advanced one stays).
fn surplus_indexed_pods<'p, 'a>(
    settings: &Settings<'_>,
    active: &[&'p JobPod<'a>],
    succeeded: &Indexes,
) -> Vec<&'p JobPod<'a>> {
    let mut remove = Vec::new();
    let mut by_index: std::collections::BTreeMap<i32, Vec<&'p JobPod<'a>>> = Default::default();
    for pod in active {
        match pod.index.filter(|_| settings.valid_index(pod)) {
            Some(index) if !succeeded.contains(index) => {
                by_index.entry(index).or_default().push(pod)
            }
            _ => remove.push(*pod),
        }
    }
    for (_, mut same) in by_index {
        same.sort_by(|a, b| deletion_order(a, b));
        let keep = same.len() - 1;
        remove.extend(same.into_iter().take(keep));
    }
    remove
}

/// The slots of up to `count` new pods, honouring the back-off after failures.
#[allow(clippy::too_many_arguments)]
fn new_pod_slots(
    settings: &Settings<'_>,
    pods: &[JobPod<'_>],
    active: &[&JobPod<'_>],
    succeeded: &Indexes,
    failed_indexes: Option<&Indexes>,
    count: usize,
    now: DateTime<Utc>,
    plan: &mut JobPlan,
) -> Vec<PodSlot> {
    if settings.per_index_limit.is_none() {
        let (failures, last_failure) = failures_since_last_success(settings, pods);
        let wait = backoff::remaining(failures, last_failure, now);
        if !wait.is_zero() {
            plan.requeue(wait);
            return Vec::new();
        }
    }
    if !settings.indexed {
        return vec![PodSlot::default(); count];
    }
    let mut busy: Indexes = active.iter().filter_map(|p| p.index).collect();
    if !settings.replace_terminating {
        busy = busy.union(
            &pods
                .iter()
                .filter(|p| p.state == PodState::Terminating)
                .filter_map(|p| p.index)
                .collect(),
        );
    }
    busy = busy.union(succeeded);
    if let Some(failed) = failed_indexes {
        busy = busy.union(failed);
    }
    let completions = settings.index_count();
    if settings.per_index_limit.is_none() {
        return busy
            .first_missing(count, completions)
            .into_iter()
            .map(|i| PodSlot {
                index: Some(i),
                index_failures: None,
            })
            .collect();
    }
    // With a per-index limit each index has its own back-off and failure count.
    let mut slots = Vec::new();
    for index in busy.first_missing(completions as usize, completions) {
        if slots.len() == count {
            break;
        }
        let last_failed = pods
            .iter()
            .filter(|p| p.index == Some(index) && p.is_failed(settings.replace_terminating))
            .max_by_key(|p| {
                let (counted, ignored) = p.index_failure_counts();
                (counted + ignored, p.finished_at())
            });
        let index_failures = match last_failed {
            None => (0, 0),
            Some(pod) => {
                let (counted, ignored) = pod.index_failure_counts();
                let counts = match_policy(settings.spec.pod_failure_policy.as_ref(), pod.pod)
                    .as_ref()
                    .is_none_or(PolicyAction::counts);
                let attempts = (counted + ignored + 1).max(0) as u32;
                let wait = backoff::remaining(attempts, Some(pod.finished_at()), now);
                if !wait.is_zero() {
                    plan.requeue(wait);
                    continue;
                }
                if counts {
                    (counted + 1, ignored)
                } else {
                    (counted, ignored + 1)
                }
            }
        };
        slots.push(PodSlot {
            index: Some(index),
            index_failures: Some(index_failures),
        });
    }
    slots
}

/// Failures since the latest success, and when the last of them ended (for the back-off).
fn failures_since_last_success(
    settings: &Settings<'_>,
    pods: &[JobPod<'_>],
) -> (u32, Option<DateTime<Utc>>) {
    let last_success = pods
        .iter()
        .filter(|p| p.state == PodState::Succeeded)
        .map(JobPod::finished_at)
        .max();
    let failures: Vec<DateTime<Utc>> = pods
        .iter()
        .filter(|p| {
            p.state == PodState::Failed
                || (p.state == PodState::Terminating && p.tracked && settings.replace_terminating)
        })
        .map(JobPod::finished_at)
        .filter(|t| last_success.is_none_or(|s| *t > s))
        .collect();
    (failures.len() as u32, failures.iter().max().copied())
}
