//! The CronJob controller: starts Jobs on a schedule, as Kubernetes' cronjob controller does.
//!
//! - [`plan`] decides (pure): from a CronJob, the Jobs it controls and the time, the status,
//!   the Job to start, the Jobs to delete, events, and when the next scheduled time comes.
//! - [`times`] finds the due scheduled time (the most recent missed one only) across time
//!   zones and daylight saving changes; [`job_template`] builds the Jobs.
//! - [`execute`] carries a plan out: a new Job and the `lastScheduleTime` that records it are
//!   one atomic command, so a scheduled time fires exactly once, also when the agent restarts
//!   between two passes.
//!
//! The loop wakes on every state change and at the next scheduled time of any CronJob.

pub mod execute;
pub mod job_template;
pub mod plan;
pub mod times;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use serde_json::Value;

use super::job::execute::error_chain;
use super::job::retry::Retries;
use super::{Context, next_change};

/// The component named in events.
pub const COMPONENT: &str = "cronjob-controller";

/// How often the CronJobs are looked at when nothing happens and nothing is scheduled.
const RESYNC: Duration = Duration::from_secs(60);
/// Wake this long after a scheduled time, so that the clock has surely passed it.
const WAKE_MARGIN: Duration = Duration::from_millis(100);

/// Runs the controller until shutdown.
pub async fn run(ctx: Context, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut changes = ctx.state.subscribe_changes();
    let mut retries = Retries::default();
    let mut recorded = execute::Recorded::new();
    loop {
        let wake = reconcile_all(&ctx, &mut retries, &mut recorded).await;
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

fn controller_uid(job: &Value) -> Option<&str> {
    job.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true && r["kind"] == "CronJob")
        .and_then(|r| r["uid"].as_str())
}

/// One pass over every CronJob; returns when the next pass is due at the latest.
async fn reconcile_all(
    ctx: &Context,
    retries: &mut Retries,
    recorded: &mut execute::Recorded,
) -> Option<Duration> {
    let (cron_jobs, _) = ctx.state.list("CronJob", None);
    let (jobs, _) = ctx.state.list("Job", None);
    let mut by_owner: HashMap<&str, Vec<&Arc<Value>>> = HashMap::new();
    for job in jobs.iter() {
        if let Some(uid) = controller_uid(job) {
            by_owner.entry(uid).or_default().push(job);
        }
    }
    let uids: HashSet<&str> = cron_jobs
        .iter()
        .filter_map(|c| c.pointer("/metadata/uid").and_then(Value::as_str))
        .collect();
    retries.keep(|uid| uids.contains(uid));
    recorded.retain(|key, _| key.split('/').next().is_some_and(|uid| uids.contains(uid)));
    let mut wake: Option<Duration> = None;
    let mut soonest = |d: Duration| wake = Some(wake.map_or(d, |w| w.min(d)));

    for stored in cron_jobs.iter() {
        let Ok(cron_job) = serde_json::from_value::<CronJob>((**stored).clone()) else {
            tracing::warn!(cronjob = ?stored.pointer("/metadata/name"), "a stored cronjob does not decode; skipping it");
            continue;
        };
        let uid = cron_job.metadata.uid.clone().unwrap_or_default();
        if let Some(wait) = retries.wait(&uid) {
            soonest(wait);
            continue;
        }
        let owned: Vec<Job> = by_owner
            .get(uid.as_str())
            .map(|jobs| {
                jobs.iter()
                    .filter_map(|j| serde_json::from_value((***j).clone()).ok())
                    .collect()
            })
            .unwrap_or_default();
        let plan = plan::plan(&cron_job, &owned, Utc::now());
        if let Some(after) = plan.requeue_after {
            soonest(after + WAKE_MARGIN);
        }
        if plan.is_empty() {
            continue;
        }
        match execute::execute(ctx, stored, &cron_job, plan, recorded).await {
            Ok(()) => retries.succeeded(&uid),
            Err(error) => {
                let delay = retries.failed(&uid);
                tracing::warn!(error = %error_chain(&error), retry_in = ?delay, "cronjob controller could not carry out its plan");
                soonest(delay);
            }
        }
    }
    wake
}
