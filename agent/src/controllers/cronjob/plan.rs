//! The CronJob controller's decision (pure): from a CronJob, the Jobs it controls and the
//! time, what to do next. This follows Kubernetes' `syncCronJob` and `cleanupFinishedJobs`:
//!
//! 1. The active list follows the Jobs: finished ones leave it (`SawCompletedJob`), missing
//!    ones too (`MissingJob`), unfinished ones it owns but forgot are adopted; the newest
//!    completion time of a successful Job is `lastSuccessfulTime`.
//! 2. Finished Jobs beyond `successfulJobsHistoryLimit` / `failedJobsHistoryLimit` are
//!    deleted, oldest first.
//! 3. Unless suspended, the most recent scheduled time after `status.lastScheduleTime` (or
//!    the creation) and not after now is due. Older missed times are dropped. It is skipped
//!    when older than `startingDeadlineSeconds` (`MissSchedule`), or while a Job is active
//!    under `Forbid` (`JobAlreadyActive`; as in Kubernetes, the time stays due, so it starts
//!    when the active Job ends if `startingDeadlineSeconds` still allows). Under `Replace`
//!    the active Jobs are deleted first.
//! 4. The due time's Job is created together with the status recording it as
//!    `lastScheduleTime`, in one command: a scheduled time fires exactly once, also across
//!    restarts, and its Job name (`<cronjob>-<minutes>`) could not be created twice anyway.
//!
//! Jobs started by hand (`create job --from=cronjob/...`) are the CronJob's but not its runs:
//! they are never active for the concurrency policy, and only their history is kept.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;

use super::job_template::{is_manual, job_name, scheduled_job};
use super::times::{TOO_MANY_MISSED, most_recent_due, next_after};
use crate::controllers::job::clock::{api_time, chrono_time, whole_seconds};
use crate::events::EventType;
use crate::objects::schedule;

/// What the controller should do for one CronJob.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CronJobPlan {
    /// The status to write, when it differs from the stored one. When `create` is set, the
    /// executor adds the new Job to `active` and writes both in one command.
    pub status: Option<CronJobStatus>,
    /// The Job to create for the due scheduled time.
    pub create: Option<Job>,
    /// Jobs to delete (history limits, `Replace`).
    pub delete: Vec<JobDeletion>,
    /// Events about the CronJob.
    pub events: Vec<CronJobEvent>,
    /// Look again after this long (the next scheduled time).
    pub requeue_after: Option<Duration>,
}

/// A Job to delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobDeletion {
    /// Its name.
    pub name: String,
    /// Its uid (the deletion's precondition).
    pub uid: String,
}

/// An event to record on the CronJob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CronJobEvent {
    /// Normal or Warning.
    pub type_: EventType,
    /// The reason.
    pub reason: String,
    /// The message.
    pub message: String,
    /// Events about a situation that persists (a skipped time) repeat on every pass; the
    /// executor records each distinct `once` key only once.
    pub once: Option<String>,
}

impl CronJobPlan {
    /// Whether the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.status.is_none()
            && self.create.is_none()
            && self.delete.is_empty()
            && self.events.is_empty()
    }

    fn event(
        &mut self,
        type_: EventType,
        reason: &str,
        message: impl Into<String>,
        once: Option<String>,
    ) {
        self.events.push(CronJobEvent {
            type_,
            reason: reason.to_owned(),
            message: message.into(),
            once,
        });
    }
}

/// How a Job ended, if it did.
fn finished(job: &Job) -> Option<&'static str> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .find(|c| c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed"))
        .map(|c| {
            if c.type_ == "Complete" {
                "Complete"
            } else {
                "Failed"
            }
        })
}

/// The reference to a Job kept in `status.active`.
pub fn job_reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".to_owned()),
        kind: Some("Job".to_owned()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// Decides what to do for `cron_job`, whose Jobs (those it controls) are `jobs`, at `now`.
pub fn plan(cron_job: &CronJob, jobs: &[Job], now: DateTime<Utc>) -> CronJobPlan {
    let mut plan = CronJobPlan::default();
    let Some(spec) = cron_job.spec.as_ref() else {
        return plan;
    };
    let old = cron_job.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let uid_of = |j: &Job| j.metadata.uid.clone().unwrap_or_default();
    let name_of = |j: &Job| j.metadata.name.clone().unwrap_or_default();

    // 1. The active list follows the Jobs.
    let mut active: Vec<ObjectReference> = old.active.clone().unwrap_or_default();
    for job in jobs {
        let uid = uid_of(job);
        let listed = active
            .iter()
            .any(|r| r.uid.as_deref() == Some(uid.as_str()));
        match (listed, finished(job)) {
            (false, None) if !is_manual(job) && job.metadata.deletion_timestamp.is_none() => {
                active.push(job_reference(job));
                plan.event(
                    EventType::Warning,
                    "UnexpectedJob",
                    format!(
                        "Saw a job that the controller did not create or forgot: {}",
                        name_of(job)
                    ),
                    None,
                );
            }
            (true, Some(how)) => {
                active.retain(|r| r.uid.as_deref() != Some(uid.as_str()));
                plan.event(
                    EventType::Normal,
                    "SawCompletedJob",
                    format!("Saw completed job: {}, status: {how}", name_of(job)),
                    None,
                );
            }
            _ => {}
        }
        if finished(job) == Some("Complete")
            && let Some(done) = job.status.as_ref().and_then(|s| s.completion_time.as_ref())
            && status
                .last_successful_time
                .as_ref()
                .is_none_or(|t| chrono_time(t) < chrono_time(done))
        {
            status.last_successful_time = Some(done.clone());
        }
    }
    let present: Vec<String> = jobs.iter().map(uid_of).collect();
    for gone in active
        .iter()
        .filter(|r| !present.iter().any(|u| Some(u.as_str()) == r.uid.as_deref()))
    {
        plan.event(
            EventType::Normal,
            "MissingJob",
            format!(
                "Active job went missing: {}",
                gone.name.clone().unwrap_or_default()
            ),
            None,
        );
    }
    active.retain(|r| present.iter().any(|u| Some(u.as_str()) == r.uid.as_deref()));

    // 2. History limits.
    for (outcome, limit) in [
        ("Complete", spec.successful_jobs_history_limit),
        ("Failed", spec.failed_jobs_history_limit),
    ] {
        let Some(limit) = limit else { continue };
        let mut ended: Vec<&Job> = jobs
            .iter()
            .filter(|j| finished(j) == Some(outcome) && j.metadata.deletion_timestamp.is_none())
            .collect();
        let excess = ended.len().saturating_sub(limit.max(0) as usize);
        ended.sort_by_key(|j| {
            (
                j.status
                    .as_ref()
                    .and_then(|s| s.start_time.as_ref())
                    .map(chrono_time),
                name_of(j),
            )
        });
        for job in ended.into_iter().take(excess) {
            plan.delete.push(JobDeletion {
                name: name_of(job),
                uid: uid_of(job),
            });
            plan.event(
                EventType::Normal,
                "SuccessfulDelete",
                format!("Deleted job {}", name_of(job)),
                None,
            );
        }
    }

    let finish =
        |plan: &mut CronJobPlan, mut status: CronJobStatus, active: Vec<ObjectReference>| {
            status.active = (!active.is_empty()).then_some(active);
            if status != old {
                plan.status = Some(status);
            }
        };
    if cron_job.metadata.deletion_timestamp.is_some() || spec.suspend == Some(true) {
        finish(&mut plan, status, active);
        return plan;
    }

    // 3. Which scheduled time is due?
    let schedule = match schedule::parse(&spec.schedule, spec.time_zone.as_deref()) {
        Ok(schedule) => schedule,
        Err(error) => {
            let (reason, message) = match &error {
                schedule::ScheduleError::TimeZone(_) => (
                    "UnknownTimeZone",
                    format!(
                        "invalid timeZone: {:?}: {error}",
                        spec.time_zone.as_deref().unwrap_or("")
                    ),
                ),
                schedule::ScheduleError::Schedule(_) => (
                    "UnparseableSchedule",
                    format!("unparseable schedule: {:?} : {error}", spec.schedule),
                ),
            };
            plan.event(
                EventType::Warning,
                reason,
                message,
                Some(format!("{reason}/{}", spec.schedule)),
            );
            finish(&mut plan, status, active);
            return plan;
        }
    };
    if let Some(next) = next_after(&schedule, now) {
        plan.requeue_after = (next - now).to_std().ok();
    }
    let created = cron_job
        .metadata
        .creation_timestamp
        .as_ref()
        .map(chrono_time)
        .unwrap_or(now);
    let mut earliest = status
        .last_schedule_time
        .as_ref()
        .map(chrono_time)
        .unwrap_or(created);
    if let Some(deadline) = spec.starting_deadline_seconds {
        earliest = earliest.max(now - chrono::TimeDelta::seconds(deadline));
    }
    let Some(due) = most_recent_due(&schedule, earliest, now) else {
        finish(&mut plan, status, active);
        return plan;
    };
    let scheduled = whole_seconds(due.time);
    let stamp = scheduled.to_rfc3339();
    if due.missed > TOO_MANY_MISSED {
        plan.event(
            EventType::Warning,
            "TooManyMissedTimes",
            format!("too many missed start times: more than {TOO_MANY_MISSED}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"),
            Some(format!("TooManyMissedTimes/{stamp}")),
        );
    }
    if let Some(deadline) = spec.starting_deadline_seconds
        && scheduled + chrono::TimeDelta::seconds(deadline) < now
    {
        plan.event(
            EventType::Warning,
            "MissSchedule",
            format!(
                "Missed scheduled time to start a job: {}",
                scheduled.format("%a, %d %b %Y %H:%M:%S %z")
            ),
            Some(format!("MissSchedule/{stamp}")),
        );
        finish(&mut plan, status, active);
        return plan;
    }
    let name = job_name(cron_job.metadata.name.as_deref().unwrap_or(""), scheduled);
    let handled = status
        .last_schedule_time
        .as_ref()
        .is_some_and(|t| chrono_time(t) == scheduled)
        || active
            .iter()
            .any(|r| r.name.as_deref() == Some(name.as_str()));
    if handled {
        finish(&mut plan, status, active);
        return plan;
    }
    if jobs
        .iter()
        .any(|j| j.metadata.name.as_deref() == Some(name.as_str()))
    {
        // Its Job exists (it ran and finished already): record the time as handled.
        status.last_schedule_time = Some(api_time(scheduled));
        finish(&mut plan, status, active);
        return plan;
    }
    match spec.concurrency_policy.as_deref().unwrap_or("Allow") {
        "Forbid" if !active.is_empty() => {
            plan.event(
                EventType::Normal,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid",
                Some(format!("JobAlreadyActive/{stamp}")),
            );
            finish(&mut plan, status, active);
            return plan;
        }
        "Replace" => {
            for reference in active.drain(..) {
                let job_name = reference.name.clone().unwrap_or_default();
                plan.delete.push(JobDeletion {
                    name: job_name.clone(),
                    uid: reference.uid.clone().unwrap_or_default(),
                });
                plan.event(
                    EventType::Normal,
                    "SuccessfulDelete",
                    format!("Deleted job {job_name}"),
                    None,
                );
            }
        }
        _ => {}
    }

    // 4. Start the run.
    plan.create = Some(scheduled_job(cron_job, scheduled, schedule.time_zone()));
    status.last_schedule_time = Some(api_time(scheduled));
    status.active = (!active.is_empty()).then_some(active);
    plan.status = Some(status);
    plan
}
