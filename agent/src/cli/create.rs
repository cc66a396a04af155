//! `create job NAME --from=cronjob/NAME`: runs a CronJob's template now, as kubectl does (the
//! Job is owned by the CronJob, marked `cronjob.kubernetes.io/instantiate: manual`, and does
//! not count as one of its scheduled runs).

use hyper::Method;
use k8s_openapi::api::batch::v1::CronJob;

use super::args::{CreateArgs, CreateCommand, CreateJobArgs};
use super::target::{collection_path, kind_label, object_path};
use super::{CliError, Ctx, fail};
use crate::controllers::cronjob::job_template::manual_job;
use crate::objects::Kind;

pub async fn create(ctx: &Ctx, a: CreateArgs) -> Result<(), CliError> {
    match a.command {
        CreateCommand::Job(job) => create_job(ctx, job).await,
    }
}

/// The CronJob named by `--from`: `cronjob/NAME` (or `cj/NAME`, `cronjobs.batch/NAME`).
fn cron_job_name(from: &str) -> Result<String, CliError> {
    let bad = || {
        fail(format!(
            "--from={from}: must name a cronjob, as cronjob/NAME"
        ))
    };
    let (kind, name) = from.split_once('/').ok_or_else(bad)?;
    if name.is_empty() || name.contains('/') {
        return Err(bad());
    }
    match Kind::from_resource(kind) {
        Ok(Kind::CronJob) => Ok(name.to_owned()),
        Ok(other) => Err(fail(format!(
            "--from={from}: jobs can only be created from a cronjob, not from a {}",
            other.info().singular
        ))),
        Err(_) => Err(bad()),
    }
}

async fn create_job(ctx: &Ctx, a: CreateJobArgs) -> Result<(), CliError> {
    let namespace = ctx.namespace(&a.ns);
    let source = cron_job_name(&a.from)?;
    let stored = ctx
        .client
        .get(&object_path(Kind::CronJob, &namespace, &source))
        .await?;
    let cron_job: CronJob = serde_json::from_value(stored).map_err(|e| {
        fail(format!(
            "cronjob {namespace}/{source} from the agent does not decode: {e}"
        ))
    })?;
    let mut job = serde_json::to_value(manual_job(&cron_job, &a.name)).expect("a job serialises");
    job["apiVersion"] = "batch/v1".into();
    job["kind"] = "Job".into();
    let created = ctx
        .client
        .json(
            Method::POST,
            &collection_path(Kind::Job, Some(&namespace)),
            Some("application/json"),
            Some(&job),
        )
        .await?;
    let name = created
        .pointer("/metadata/name")
        .and_then(serde_json::Value::as_str)
        .unwrap_or(&a.name);
    println!("{}/{name} created", kind_label(Kind::Job));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_must_name_a_cronjob() {
        assert_eq!(cron_job_name("cronjob/dump").unwrap(), "dump");
        assert_eq!(cron_job_name("cj/dump").unwrap(), "dump");
        assert_eq!(cron_job_name("cronjobs.batch/dump").unwrap(), "dump");
        for bad in ["dump", "cronjob/", "cronjob/a/b", "nosuchkind/x"] {
            assert!(
                cron_job_name(bad)
                    .unwrap_err()
                    .to_string()
                    .contains("must name a cronjob"),
                "{bad}"
            );
        }
        assert_eq!(
            cron_job_name("statefulset/web").unwrap_err().to_string(),
            "--from=statefulset/web: jobs can only be created from a cronjob, not from a statefulset"
        );
    }
}
