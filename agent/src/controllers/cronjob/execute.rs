//! Carries out a [`CronJobPlan`] with state commands: Job deletions first (history, Replace),
//! then the new Job together with the status that records its scheduled time (one atomic
//! batch), then events.

use std::collections::HashMap;

use k8s_openapi::api::batch::v1::CronJob;
use serde_json::Value;

use super::COMPONENT;
use super::plan::{CronJobPlan, job_reference};
use crate::controllers::job::execute::error_chain;
use crate::events::{EventType, InvolvedObject};
use crate::objects::{AdmitError, CreateContext, admit_create};
use crate::state::{Command, ObjectKey, Propagation, ProposeError, Rejection, Timestamp};

/// A step of a plan that could not be carried out; the controller retries the CronJob later.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    /// Deleting one of its Jobs failed.
    #[error("deleting job {job} of cronjob {cron_job}")]
    DeleteJob {
        /// `namespace/name` of the CronJob.
        cron_job: String,
        /// The Job's name.
        job: String,
        #[source]
        source: ProposeError,
    },
    /// The Job built from the template is not admissible.
    #[error("the job template of cronjob {cron_job} does not make a valid job")]
    Template {
        /// `namespace/name` of the CronJob.
        cron_job: String,
        #[source]
        source: Box<AdmitError>,
    },
    /// Writing the Job and the status failed.
    #[error("starting job {job} of cronjob {cron_job}")]
    Start {
        /// `namespace/name` of the CronJob.
        cron_job: String,
        /// The Job's name.
        job: String,
        #[source]
        source: ProposeError,
    },
    /// Writing the status failed.
    #[error("updating the status of cronjob {cron_job}")]
    Status {
        /// `namespace/name` of the CronJob.
        cron_job: String,
        #[source]
        source: ProposeError,
    },
}

fn resource_version(object: &Value) -> Option<u64> {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|v| v.parse().ok())
}

fn rejection(error: &ProposeError) -> Option<&Rejection> {
    match error {
        ProposeError::Rejected(r) => Some(r.root()),
        _ => None,
    }
}

/// The events recorded once per situation: for each CronJob uid and reason, the `once` key of
/// the last one recorded (so memory stays bounded however long a situation lasts).
pub type Recorded = HashMap<String, String>;

/// Whether the event `reason` with `once` key is new for the CronJob `uid` (and remembers it).
fn first_time(recorded: &mut Recorded, uid: &str, reason: &str, once: &str) -> bool {
    let key = format!("{uid}/{reason}");
    if recorded.get(&key).is_some_and(|last| last == once) {
        return false;
    }
    recorded.insert(key, once.to_owned());
    true
}

/// Carries out `plan` for the stored CronJob `stored` (decoded as `cron_job`). `recorded`
/// remembers the `once` events already recorded.
pub async fn execute(
    ctx: &crate::controllers::Context,
    stored: &Value,
    cron_job: &CronJob,
    plan: CronJobPlan,
    recorded: &mut Recorded,
) -> Result<(), ExecuteError> {
    let namespace = cron_job.metadata.namespace.clone().unwrap_or_default();
    let name = cron_job.metadata.name.clone().unwrap_or_default();
    let uid = cron_job.metadata.uid.clone().unwrap_or_default();
    let label = format!("{namespace}/{name}");
    let involved = InvolvedObject::of(stored);
    let key = ObjectKey::new("CronJob", &namespace, &name);
    let now = Timestamp::now();

    for event in &plan.events {
        if let Some(once) = &event.once
            && !first_time(recorded, &uid, &event.reason, once)
        {
            continue;
        }
        ctx.events.record(
            involved.clone(),
            event.type_,
            &event.reason,
            event.message.clone(),
            COMPONENT,
        );
    }

    for deletion in &plan.delete {
        let command = Command::Delete {
            key: ObjectKey::new("Job", &namespace, &deletion.name),
            precondition_uid: Some(deletion.uid.clone()).filter(|u| !u.is_empty()),
            precondition_resource_version: None,
            grace_period_seconds: None,
            propagation: Propagation::Background,
            now,
        };
        match ctx.state.propose(command).await {
            Ok(_) => {}
            Err(e) if matches!(rejection(&e), Some(Rejection::NotFound { .. })) => {}
            Err(source) => {
                ctx.events.record(
                    involved.clone(),
                    EventType::Warning,
                    "FailedDelete",
                    format!("Deleted job: {}", error_chain(&source)),
                    COMPONENT,
                );
                return Err(ExecuteError::DeleteJob {
                    cron_job: label,
                    job: deletion.name.clone(),
                    source,
                });
            }
        }
    }

    let update_status =
        |status: &k8s_openapi::api::batch::v1::CronJobStatus| Command::UpdateStatus {
            key: key.clone(),
            status: serde_json::to_value(status).expect("a cronjob status serialises"),
            precondition_resource_version: resource_version(stored),
        };
    let Some(mut job) = plan.create else {
        if let Some(status) = &plan.status {
            ctx.state
                .propose(update_status(status))
                .await
                .map_err(|source| ExecuteError::Status {
                    cron_job: label,
                    source,
                })?;
        }
        return Ok(());
    };
    let job_name = job.metadata.name.clone().unwrap_or_default();
    let job_uid = uuid::Uuid::new_v4().to_string();
    let context = CreateContext {
        uid: job_uid.clone(),
        now: k8s_openapi::jiff::Timestamp::from_second(now.unix_seconds())
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        random: rand::random(),
    };
    job.metadata.uid = Some(job_uid.clone());
    let manifest = serde_json::to_value(&job).expect("a job serialises");
    let admitted = match admit_create(&manifest, &context) {
        Ok(admitted) => admitted,
        Err(source) => {
            let message = format!("Error creating job: {}", error_chain(&source));
            if first_time(recorded, &uid, "FailedCreate", &job_name) {
                ctx.events.record(
                    involved.clone(),
                    EventType::Warning,
                    "FailedCreate",
                    message,
                    COMPONENT,
                );
            }
            return Err(ExecuteError::Template {
                cron_job: label,
                source: Box::new(source),
            });
        }
    };
    let mut status = plan.status.clone().unwrap_or_default();
    status
        .active
        .get_or_insert_with(Vec::new)
        .push(job_reference(&job));
    let batch = Command::Batch(vec![
        Command::create(admitted.object.to_value(), job_uid, now),
        update_status(&status),
    ]);
    match ctx.state.propose(batch).await {
        Ok(_) => {
            ctx.events.record(
                involved,
                EventType::Normal,
                "SuccessfulCreate",
                format!("Created job {job_name}"),
                COMPONENT,
            );
            Ok(())
        }
        Err(e) if matches!(rejection(&e), Some(Rejection::AlreadyExists { .. })) => {
            // Someone else made a Job of that name: the scheduled time counts as handled (if it
            // is this CronJob's, the next pass adopts it).
            let status = plan.status.unwrap_or_default();
            ctx.state
                .propose(update_status(&status))
                .await
                .map_err(|source| ExecuteError::Status {
                    cron_job: label,
                    source,
                })?;
            Ok(())
        }
        Err(source) => Err(ExecuteError::Start {
            cron_job: label,
            job: job_name,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lasting_situation_is_reported_once_and_a_new_one_again() {
        let mut recorded = Recorded::new();
        assert!(first_time(&mut recorded, "cj", "JobAlreadyActive", "10:01"));
        assert!(!first_time(
            &mut recorded,
            "cj",
            "JobAlreadyActive",
            "10:01"
        ));
        assert!(first_time(
            &mut recorded,
            "other",
            "JobAlreadyActive",
            "10:01"
        ));
        assert!(first_time(&mut recorded, "cj", "MissSchedule", "10:01"));
        assert!(first_time(&mut recorded, "cj", "JobAlreadyActive", "10:02"));
        assert_eq!(recorded.len(), 3, "one entry per cronjob and reason");
    }
}
