//! Carries out a [`JobPlan`] with state commands: the new status together with the release of
//! the pods it counts (one atomic batch, so a pod is never counted twice or lost), then pod
//! deletions and creations, then events.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::COMPONENT;
use super::TRACKING_FINALIZER;
use super::plan::JobPlan;
use super::template::pod_for;
use crate::controllers::{Context, WriteError, create_object};
use crate::events::{EventType, InvolvedObject};
use crate::state::{Command, ObjectKey, Propagation, ProposeError, Rejection, Timestamp};
use k8s_openapi::api::batch::v1::Job;

/// A step of a plan that could not be carried out; the controller retries the Job later.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    /// Writing the Job's status (and releasing its counted pods) failed.
    #[error("updating the status of job {job}")]
    Status {
        /// `namespace/name` of the Job.
        job: String,
        #[source]
        source: ProposeError,
    },
    /// Deleting a pod failed.
    #[error("deleting pod {pod} of job {job}")]
    DeletePod {
        /// `namespace/name` of the Job.
        job: String,
        /// The pod's name.
        pod: String,
        #[source]
        source: ProposeError,
    },
    /// Creating a pod failed.
    #[error("creating a pod for job {job}")]
    CreatePod {
        /// `namespace/name` of the Job.
        job: String,
        #[source]
        source: WriteError,
    },
    /// Deleting the Job after its time to live failed.
    #[error("deleting job {job} after its time to live")]
    DeleteJob {
        /// `namespace/name` of the Job.
        job: String,
        #[source]
        source: ProposeError,
    },
}

/// The stored pods of one Job, by name.
pub type StoredPods<'a> = HashMap<&'a str, &'a Arc<Value>>;

fn resource_version(object: &Value) -> Option<u64> {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|v| v.parse().ok())
}

/// `pod` without the tracking finalizer.
pub fn without_tracking_finalizer(pod: &Value) -> Value {
    let mut pod = pod.clone();
    if let Some(finalizers) = pod
        .pointer_mut("/metadata/finalizers")
        .and_then(Value::as_array_mut)
    {
        finalizers.retain(|f| f.as_str() != Some(TRACKING_FINALIZER));
    }
    pod
}

/// The command that releases `pod` (removes the tracking finalizer), if it still holds it.
pub fn release_command(pod: &Value, now: Timestamp) -> Command {
    Command::Update {
        object: without_tracking_finalizer(pod),
        precondition_resource_version: resource_version(pod),
        now,
    }
}

fn not_found(error: &ProposeError) -> bool {
    matches!(error, ProposeError::Rejected(r) if matches!(r.root(), Rejection::NotFound { .. }))
}

/// Carries out `plan` for the stored Job `stored` (decoded as `job`), whose pods are `pods`.
pub async fn execute(
    ctx: &Context,
    stored: &Value,
    job: &Job,
    pods: &StoredPods<'_>,
    plan: JobPlan,
) -> Result<(), ExecuteError> {
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    let job_label = format!("{namespace}/{name}");
    let involved = InvolvedObject::of(stored);
    let now = Timestamp::now();

    if plan.delete_job {
        tracing::info!(job = %job_label, "deleting finished job after its ttlSecondsAfterFinished");
        let command = Command::Delete {
            key: ObjectKey::new("Job", &namespace, &name),
            precondition_uid: job.metadata.uid.clone(),
            precondition_resource_version: None,
            grace_period_seconds: None,
            propagation: Propagation::Foreground,
            now,
        };
        return match ctx.state.propose(command).await {
            Err(e) if !not_found(&e) => Err(ExecuteError::DeleteJob {
                job: job_label,
                source: e,
            }),
            _ => Ok(()),
        };
    }

    let mut commands = Vec::new();
    if let Some(status) = plan.status.as_ref() {
        commands.push(Command::UpdateStatus {
            key: ObjectKey::new("Job", &namespace, &name),
            status: serde_json::to_value(status).expect("a job status serialises"),
            precondition_resource_version: resource_version(stored),
        });
    }
    for pod in plan.release.iter().filter_map(|n| pods.get(n.as_str())) {
        commands.push(release_command(pod, now));
    }
    if !commands.is_empty() {
        let command = if commands.len() == 1 {
            commands.remove(0)
        } else {
            Command::Batch(commands)
        };
        ctx.state
            .propose(command)
            .await
            .map_err(|source| ExecuteError::Status {
                job: job_label.clone(),
                source,
            })?;
    }
    // The plan's events describe the status just written.
    for event in plan.events {
        ctx.events.record(
            involved.clone(),
            event.type_,
            &event.reason,
            event.message,
            COMPONENT,
        );
    }

    for deletion in &plan.delete {
        let Some(pod) = pods.get(deletion.name.as_str()) else {
            continue;
        };
        let key = ObjectKey::new("Pod", &namespace, &deletion.name);
        let delete = Command::delete(key, now);
        let command = if deletion.uncounted {
            // Let go of the pod first, so that it is not counted as a failure.
            let release = Command::Update {
                object: without_tracking_finalizer(pod),
                precondition_resource_version: None,
                now,
            };
            Command::Batch(vec![release, delete])
        } else {
            delete
        };
        match ctx.state.propose(command).await {
            Ok(_) => ctx.events.record(
                involved.clone(),
                EventType::Normal,
                "SuccessfulDelete",
                format!("Deleted pod: {}", deletion.name),
                COMPONENT,
            ),
            Err(e) if not_found(&e) => {}
            Err(source) => {
                return Err(ExecuteError::DeletePod {
                    job: job_label,
                    pod: deletion.name.clone(),
                    source,
                });
            }
        }
    }

    for slot in &plan.create {
        let manifest = serde_json::to_value(pod_for(job, *slot)).expect("a pod serialises");
        match create_object(&ctx.state, manifest).await {
            Ok(created) => {
                let pod_name = created
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                ctx.events.record(
                    involved.clone(),
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!("Created pod: {pod_name}"),
                    COMPONENT,
                );
            }
            Err(source) => {
                ctx.events.record(
                    involved.clone(),
                    EventType::Warning,
                    "FailedCreate",
                    format!("Error creating: {}", error_chain(&source)),
                    COMPONENT,
                );
                tracing::warn!(job = %job_label, error = %error_chain(&source), "creating a job pod failed");
                return Err(ExecuteError::CreatePod {
                    job: job_label,
                    source,
                });
            }
        }
    }
    Ok(())
}

/// An error and its causes on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
