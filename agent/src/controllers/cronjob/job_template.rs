//! The Jobs a CronJob makes (pure): one per scheduled time, named
//! `<cronjob>-<scheduled unix time / 60>` so that a scheduled time can only ever have one Job,
//! and the manual run `berth create job NAME --from=cronjob/NAME` asks for.

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// The annotation recording the scheduled time of a Job, in the CronJob's time zone.
pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// The annotation marking a Job started by hand from a CronJob's template.
pub const INSTANTIATE_ANNOTATION: &str = "cronjob.kubernetes.io/instantiate";

/// The name of the Job for `scheduled`: `<cronjob>-<minutes since the epoch>`.
pub fn job_name(cron_job_name: &str, scheduled: DateTime<Utc>) -> String {
    format!("{cron_job_name}-{}", scheduled.timestamp().div_euclid(60))
}

/// The controller reference a CronJob's Jobs carry.
pub fn owner_reference(cron_job: &CronJob) -> OwnerReference {
    OwnerReference {
        api_version: "batch/v1".to_owned(),
        kind: "CronJob".to_owned(),
        name: cron_job.metadata.name.clone().unwrap_or_default(),
        uid: cron_job.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The Job for the run scheduled at `scheduled` (in `time_zone`, for the annotation).
pub fn scheduled_job(cron_job: &CronJob, scheduled: DateTime<Utc>, time_zone: Tz) -> Job {
    let name = job_name(cron_job.metadata.name.as_deref().unwrap_or(""), scheduled);
    let mut job = from_template(cron_job, name);
    let stamp = scheduled
        .with_timezone(&time_zone)
        .to_rfc3339_opts(SecondsFormat::Secs, true);
    job.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(SCHEDULED_TIMESTAMP_ANNOTATION.to_owned(), stamp);
    job
}

/// The Job `kubectl create job NAME --from=cronjob/NAME` makes: the template, marked as a
/// manual run and owned by the CronJob.
pub fn manual_job(cron_job: &CronJob, name: &str) -> Job {
    let mut job = from_template(cron_job, name.to_owned());
    job.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(INSTANTIATE_ANNOTATION.to_owned(), "manual".to_owned());
    job
}

/// Whether a Job was started by hand (it does not count as one of the CronJob's runs).
pub fn is_manual(job: &Job) -> bool {
    job.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(INSTANTIATE_ANNOTATION))
        .is_some_and(|v| v == "manual")
}

fn from_template(cron_job: &CronJob, name: String) -> Job {
    let template = cron_job
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    Job {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: cron_job.metadata.namespace.clone(),
            labels: meta.labels.filter(|l| !l.is_empty()),
            annotations: meta.annotations.filter(|a| !a.is_empty()),
            owner_references: Some(vec![owner_reference(cron_job)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn cron_job() -> CronJob {
        serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "dump", "namespace": "db", "uid": "cj-uid"},
            "spec": {"schedule": "*/5 * * * *", "jobTemplate": {
                "metadata": {"labels": {"app": "dump"}, "annotations": {"team": "ops"}},
                "spec": {"backoffLimit": 2, "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}
            }}
        }))
        .unwrap()
    }

    #[test]
    fn job_names_count_minutes_since_the_epoch() {
        let t = DateTime::parse_from_rfc3339("2024-05-01T10:05:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(job_name("dump", t), format!("dump-{}", 1_714_557_900 / 60));
        assert_eq!(job_name("dump", t), "dump-28575965");
    }

    #[test]
    fn a_scheduled_job_is_the_template_owned_by_the_cronjob() {
        let t = DateTime::parse_from_rfc3339("2024-07-01T00:05:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let job =
            serde_json::to_value(scheduled_job(&cron_job(), t, chrono_tz::Europe::Berlin)).unwrap();
        assert_eq!(job["metadata"]["name"], "dump-28663205");
        assert_eq!(job["metadata"]["namespace"], "db");
        assert_eq!(job["metadata"]["labels"], json!({"app": "dump"}));
        assert_eq!(
            job["metadata"]["annotations"],
            json!({"team": "ops", SCHEDULED_TIMESTAMP_ANNOTATION: "2024-07-01T02:05:00+02:00"})
        );
        assert_eq!(
            job["metadata"]["ownerReferences"],
            json!([{"apiVersion": "batch/v1", "kind": "CronJob", "name": "dump", "uid": "cj-uid", "controller": true, "blockOwnerDeletion": true}])
        );
        assert_eq!(job["spec"]["backoffLimit"], 2);
        assert!(!is_manual(&serde_json::from_value(job).unwrap()));
    }

    #[test]
    fn a_manual_job_is_marked_as_such() {
        let job = manual_job(&cron_job(), "dump-now");
        assert_eq!(job.metadata.name.as_deref(), Some("dump-now"));
        assert!(is_manual(&job));
        assert_eq!(
            job.metadata
                .annotations
                .unwrap()
                .get("team")
                .map(String::as_str),
            Some("ops")
        );
    }
}
