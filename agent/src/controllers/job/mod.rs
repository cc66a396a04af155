//! The Job controller: runs a Job's pods to completion, retried and bounded, as Kubernetes'
//! job controller does.
//!
//! - [`plan`] decides (pure): from a Job, the pods it controls and the time, the status to
//!   write, the pods to release, delete and create, events, and when to look again.
//! - [`execute`] carries a plan out with state commands.
//! - [`pods`], [`indexes`], [`failure_policy`], [`backoff`], [`template`]: the pure pieces
//!   (a pod's state, completion index sets, pod failure policy rules, the replacement
//!   back-off, the pods a Job creates).
//!
//! Counting: every pod a Job creates carries the finalizer [`TRACKING_FINALIZER`]. A
//! finished pod is counted (succeeded or failed) by the same atomic command that removes the
//! finalizer, so a pod is counted exactly once, even when it is deleted right after it ends
//! or the agent restarts in between. Pods whose Job is gone, or that were orphaned from
//! it (`delete --cascade=orphan`), lose the finalizer at once.
//!
//! The loop: one pass over every Job whenever the state changes, and again when a plan asks
//! for it (back-off, `activeDeadlineSeconds`, `ttlSecondsAfterFinished`). A Job whose
//! commands fail is retried with its own growing delay, so that a persistent error (an
//! inadmissible pod template) does not turn into a busy loop.

pub mod backoff;
pub mod clock;
pub mod execute;
pub mod failure_policy;
pub mod indexes;
pub mod plan;
pub mod pods;
pub mod retry;
pub mod template;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use super::{Context, next_change};
use crate::state::Timestamp;
use retry::Retries;

/// The finalizer that keeps a Job's pod until the Job has counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// The annotation (and label) holding a pod's completion index.
pub const COMPLETION_INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";
/// The annotation counting the earlier failures of a pod's index (`backoffLimitPerIndex`).
pub const INDEX_FAILURE_COUNT_ANNOTATION: &str = "batch.kubernetes.io/job-index-failure-count";
/// The annotation counting the earlier ignored failures of a pod's index.
pub const INDEX_IGNORED_FAILURE_COUNT_ANNOTATION: &str =
    "batch.kubernetes.io/job-index-ignored-failure-count";
/// The environment variable holding the completion index in an Indexed Job's containers.
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// The component named in events.
pub const COMPONENT: &str = "job-controller";

/// How often the Jobs are looked at when nothing happens.
const RESYNC: Duration = Duration::from_secs(60);

/// Runs the controller until shutdown.
pub async fn run(ctx: Context, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut changes = ctx.state.subscribe_changes();
    let mut retries = Retries::default();
    loop {
        let wake = reconcile_all(&ctx, &mut retries).await;
        if !next_change(
            &mut changes,
            &mut shutdown,
            Some(wake.unwrap_or(RESYNC).min(RESYNC)),
        )
        .await
        {
            return;
        }
    }
}

fn controller_uid(pod: &Value) -> Option<&str> {
    pod.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true && r["kind"] == "Job")
        .and_then(|r| r["uid"].as_str())
}

fn holds_tracking_finalizer(pod: &Value) -> bool {
    pod.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|f| f == TRACKING_FINALIZER))
}

/// One pass over every Job; returns when the next pass is due at the latest.
async fn reconcile_all(ctx: &Context, retries: &mut Retries) -> Option<Duration> {
    let (jobs, _) = ctx.state.list("Job", None);
    let (pods, _) = ctx.state.list("Pod", None);
    let mut by_job: HashMap<&str, Vec<&Arc<Value>>> = HashMap::new();
    for pod in pods.iter() {
        if let Some(uid) = controller_uid(pod) {
            by_job.entry(uid).or_default().push(pod);
        }
    }
    let job_uids: HashSet<&str> = jobs
        .iter()
        .filter_map(|j| j.pointer("/metadata/uid").and_then(Value::as_str))
        .collect();
    retries.keep(|uid| job_uids.contains(uid));
    let mut wake: Option<Duration> = None;
    let mut soonest = |d: Duration| wake = Some(wake.map_or(d, |w| w.min(d)));

    // Pods whose Job is gone (or that were orphaned from it) must not be held forever.
    let orphans = pods.iter().filter(|p| {
        holds_tracking_finalizer(p) && controller_uid(p).is_none_or(|uid| !job_uids.contains(uid))
    });
    for pod in orphans {
        let command = execute::release_command(pod, Timestamp::now());
        if let Err(error) = ctx.state.propose(command).await {
            let name = pod
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            tracing::debug!(pod = %name, error = %error, "releasing a pod without a job failed; retrying");
            soonest(retry::FIRST);
        }
    }

    for stored in jobs.iter() {
        let Ok(job) = serde_json::from_value::<Job>((**stored).clone()) else {
            tracing::warn!(job = ?stored.pointer("/metadata/name"), "a stored job does not decode; skipping it");
            continue;
        };
        let uid = job.metadata.uid.clone().unwrap_or_default();
        if let Some(wait) = retries.wait(&uid) {
            soonest(wait);
            continue;
        }
        let owned = by_job
            .get(uid.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        let typed: Vec<Pod> = owned
            .iter()
            .filter_map(|p| serde_json::from_value((***p).clone()).ok())
            .collect();
        let plan = plan::plan(&job, &typed, Utc::now());
        if let Some(after) = plan.requeue_after {
            // A second more, so that the time has surely passed at whole-second resolution.
            soonest(after + Duration::from_secs(1));
        }
        if plan.is_empty() {
            continue;
        }
        let stored_pods: execute::StoredPods<'_> = owned
            .iter()
            .filter_map(|p| {
                p.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .map(|n| (n, *p))
            })
            .collect();
        match execute::execute(ctx, stored, &job, &stored_pods, plan).await {
            Ok(()) => retries.succeeded(&uid),
            Err(error) => {
                let delay = retries.failed(&uid);
                tracing::warn!(error = %execute::error_chain(&error), retry_in = ?delay, "job controller could not carry out its plan");
                soonest(delay);
            }
        }
    }
    wake
}
