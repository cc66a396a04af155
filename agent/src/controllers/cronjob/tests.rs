//! The CronJob decision, tested with time passed in: schedules, missed runs, deadlines,
//! concurrency policies, history, time zones across daylight saving changes, and restarts.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use serde_json::{Value, json};

use super::job_template::{SCHEDULED_TIMESTAMP_ANNOTATION, job_name, manual_job};
use super::plan::{CronJobPlan, job_reference, plan};
use crate::controllers::job::clock::api_time;
use crate::objects::{CreateContext, admit_create};

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// A CronJob as the API stores it, created at `created`.
fn cron_job(spec: Value, created: &str) -> CronJob {
    let mut spec = spec;
    spec["jobTemplate"] = json!({"spec": {"template": {"spec": {"restartPolicy": "Never",
        "containers": [{"name": "dump", "image": "busybox", "command": ["true"]}]}}}});
    let manifest = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "dump", "namespace": "db"}, "spec": spec});
    let context = CreateContext {
        uid: "cj-uid".into(),
        now: k8s_openapi::jiff::Timestamp::from_second(at(created).timestamp()).unwrap(),
        random: 1,
    };
    let admitted =
        admit_create(&manifest, &context).unwrap_or_else(|e| panic!("test cronjob is valid: {e}"));
    serde_json::from_value(admitted.object.to_value()).unwrap()
}

fn with_status(mut cron_job: CronJob, status: Value) -> CronJob {
    cron_job.status = Some(serde_json::from_value(status).unwrap());
    cron_job
}

/// A Job of the CronJob for `scheduled`, in `state` ("active", "Complete", "Failed").
fn job_of(cron_job: &CronJob, scheduled: &str, state: &str) -> Job {
    let mut job = super::job_template::scheduled_job(cron_job, at(scheduled), chrono_tz::UTC);
    job.metadata.uid = Some(format!("uid-{scheduled}"));
    let start = api_time(at(scheduled));
    job.status = Some(match state {
        "active" => serde_json::from_value(json!({"active": 1, "startTime": start})).unwrap(),
        done => serde_json::from_value(json!({"startTime": start, "completionTime": if done == "Complete" { Some(start.clone()) } else { None },
            "conditions": [{"type": done, "status": "True", "lastTransitionTime": start}]}))
        .unwrap(),
    });
    job
}

fn active_refs(jobs: &[&Job]) -> Value {
    serde_json::to_value(jobs.iter().map(|j| job_reference(j)).collect::<Vec<_>>()).unwrap()
}

fn created_name(plan: &CronJobPlan) -> Option<String> {
    plan.create.as_ref().and_then(|j| j.metadata.name.clone())
}

fn reasons(plan: &CronJobPlan) -> Vec<&str> {
    plan.events.iter().map(|e| e.reason.as_str()).collect()
}

fn last_schedule(plan: &CronJobPlan) -> Option<DateTime<Utc>> {
    plan.status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .map(crate::controllers::job::clock::chrono_time)
}

#[test]
fn a_one_minute_schedule_starts_its_job_at_the_minute_boundary() {
    let cj = cron_job(json!({"schedule": "* * * * *"}), "2024-05-01T10:00:30Z");
    let before = plan(&cj, &[], at("2024-05-01T10:00:59.500Z"));
    assert!(before.create.is_none());
    assert_eq!(before.requeue_after, Some(Duration::from_millis(500)));

    let on_time = plan(&cj, &[], at("2024-05-01T10:01:00Z"));
    assert_eq!(
        created_name(&on_time),
        Some(job_name("dump", at("2024-05-01T10:01:00Z")))
    );
    assert_eq!(last_schedule(&on_time), Some(at("2024-05-01T10:01:00Z")));
    assert_eq!(on_time.requeue_after, Some(Duration::from_secs(60)));
    let job = on_time.create.unwrap();
    assert_eq!(
        job.metadata.annotations.unwrap()[SCHEDULED_TIMESTAMP_ANNOTATION],
        "2024-05-01T10:01:00Z"
    );
    assert_eq!(job.metadata.owner_references.unwrap()[0].uid, "cj-uid");
}

#[test]
fn only_the_most_recent_missed_run_starts_after_downtime() {
    let cj = with_status(
        cron_job(json!({"schedule": "*/5 * * * *"}), "2024-05-01T09:00:00Z"),
        json!({"lastScheduleTime": "2024-05-01T10:00:00Z"}),
    );
    let plan = plan(&cj, &[], at("2024-05-01T10:27:30Z"));
    assert_eq!(
        created_name(&plan),
        Some(job_name("dump", at("2024-05-01T10:25:00Z")))
    );
    assert_eq!(last_schedule(&plan), Some(at("2024-05-01T10:25:00Z")));
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(150)));
}

#[test]
fn starting_deadline_seconds_drops_runs_that_are_too_late() {
    // (startingDeadlineSeconds, now) -> the 10:05 run starts
    let cases = [
        (None, "2024-05-01T10:07:30Z", true),
        (Some(200), "2024-05-01T10:07:30Z", true),
        (Some(60), "2024-05-01T10:07:30Z", false),
        (Some(151), "2024-05-01T10:07:30Z", true),
        (Some(150), "2024-05-01T10:07:30Z", false),
    ];
    for (deadline, now, starts) in cases {
        let mut spec = json!({"schedule": "*/5 * * * *"});
        if let Some(d) = deadline {
            spec["startingDeadlineSeconds"] = json!(d);
        }
        let cj = with_status(
            cron_job(spec, "2024-05-01T09:00:00Z"),
            json!({"lastScheduleTime": "2024-05-01T10:00:00Z"}),
        );
        let plan = plan(&cj, &[], at(now));
        assert_eq!(
            plan.create.is_some(),
            starts,
            "deadline {deadline:?} at {now}"
        );
        if !starts {
            assert_eq!(
                last_schedule(&plan),
                None,
                "a dropped run does not count as scheduled"
            );
        }
    }
}

#[test]
fn a_scheduled_time_fires_once_even_when_looked_at_again() {
    let cj = cron_job(json!({"schedule": "* * * * *"}), "2024-05-01T10:00:30Z");
    let first = plan(&cj, &[], at("2024-05-01T10:01:00Z"));
    let mut job = first.create.clone().unwrap();
    job.metadata.uid = Some("job-1".into());
    // What the executor committed: the Job and the status that records it, together.
    let mut status = first.status.clone().unwrap();
    status.active = Some(vec![job_reference(&job)]);
    let committed = with_status(cj.clone(), serde_json::to_value(&status).unwrap());
    // A restarted agent looks again, later in the same minute.
    for now in [
        "2024-05-01T10:01:00Z",
        "2024-05-01T10:01:30Z",
        "2024-05-01T10:01:59Z",
    ] {
        let again = plan(&committed, std::slice::from_ref(&job), at(now));
        assert!(again.create.is_none(), "{now}");
        assert!(again.is_empty(), "{now}: {again:?}");
    }
    // If only the Job had been stored (the status write lost), its name still prevents a twin.
    let again = plan(&cj, std::slice::from_ref(&job), at("2024-05-01T10:01:30Z"));
    assert!(again.create.is_none());
    assert_eq!(
        again.status.unwrap().active.unwrap().len(),
        1,
        "the orphaned run is adopted"
    );
}

#[test]
fn forbid_skips_while_a_job_runs_and_the_skipped_time_is_announced_once() {
    let cj = cron_job(
        json!({"schedule": "* * * * *", "concurrencyPolicy": "Forbid"}),
        "2024-05-01T09:00:00Z",
    );
    let running = job_of(&cj, "2024-05-01T10:00:00Z", "active");
    let cj = with_status(
        cj,
        json!({"lastScheduleTime": "2024-05-01T10:00:00Z", "active": active_refs(&[&running])}),
    );
    let plan1 = plan(
        &cj,
        std::slice::from_ref(&running),
        at("2024-05-01T10:01:00Z"),
    );
    assert!(plan1.create.is_none());
    assert_eq!(reasons(&plan1), vec!["JobAlreadyActive"]);
    let once = plan1.events[0].once.clone();
    let plan2 = plan(
        &cj,
        std::slice::from_ref(&running),
        at("2024-05-01T10:01:20Z"),
    );
    assert_eq!(
        plan2.events[0].once, once,
        "the same skipped time has the same key, so it is recorded once"
    );
    let plan3 = plan(
        &cj,
        std::slice::from_ref(&running),
        at("2024-05-01T10:02:00Z"),
    );
    assert_ne!(
        plan3.events[0].once, once,
        "the next skipped time is announced too"
    );
}

#[test]
fn forbid_starts_the_skipped_run_when_the_job_ends_unless_the_deadline_passed() {
    // As in Kubernetes: the skipped time stays due until startingDeadlineSeconds drops it.
    for (deadline, starts) in [(None, true), (Some(20), false)] {
        let mut spec = json!({"schedule": "* * * * *", "concurrencyPolicy": "Forbid"});
        if let Some(d) = deadline {
            spec["startingDeadlineSeconds"] = json!(d);
        }
        let cj = cron_job(spec, "2024-05-01T09:00:00Z");
        let ended = job_of(&cj, "2024-05-01T10:00:00Z", "Complete");
        let cj = with_status(
            cj,
            json!({"lastScheduleTime": "2024-05-01T10:00:00Z", "active": active_refs(&[&ended])}),
        );
        let plan = plan(&cj, &[ended], at("2024-05-01T10:01:30Z"));
        assert_eq!(plan.create.is_some(), starts, "deadline {deadline:?}");
        assert!(reasons(&plan).contains(&"SawCompletedJob"));
    }
}

#[test]
fn replace_deletes_the_running_job_and_starts_a_new_one() {
    let cj = cron_job(
        json!({"schedule": "* * * * *", "concurrencyPolicy": "Replace"}),
        "2024-05-01T09:00:00Z",
    );
    let running = job_of(&cj, "2024-05-01T10:00:00Z", "active");
    let cj = with_status(
        cj,
        json!({"lastScheduleTime": "2024-05-01T10:00:00Z", "active": active_refs(&[&running])}),
    );
    let plan = plan(
        &cj,
        std::slice::from_ref(&running),
        at("2024-05-01T10:01:00Z"),
    );
    assert_eq!(plan.delete.len(), 1);
    assert_eq!(plan.delete[0].name, running.metadata.name.clone().unwrap());
    assert_eq!(plan.delete[0].uid, "uid-2024-05-01T10:00:00Z");
    assert_eq!(
        created_name(&plan),
        Some(job_name("dump", at("2024-05-01T10:01:00Z")))
    );
    assert_eq!(
        plan.status.unwrap().active,
        None,
        "the replaced job left the active list"
    );
}

#[test]
fn allow_runs_jobs_side_by_side() {
    let cj = cron_job(json!({"schedule": "* * * * *"}), "2024-05-01T09:00:00Z");
    let running = job_of(&cj, "2024-05-01T10:00:00Z", "active");
    let cj = with_status(
        cj,
        json!({"lastScheduleTime": "2024-05-01T10:00:00Z", "active": active_refs(&[&running])}),
    );
    let plan = plan(
        &cj,
        std::slice::from_ref(&running),
        at("2024-05-01T10:01:00Z"),
    );
    assert!(plan.delete.is_empty());
    assert!(plan.create.is_some());
    assert_eq!(
        plan.status.unwrap().active.unwrap().len(),
        1,
        "the executor adds the new job to the one still running"
    );
}

#[test]
fn a_suspended_cronjob_starts_nothing_but_keeps_its_status_true() {
    let cj = cron_job(
        json!({"schedule": "* * * * *", "suspend": true}),
        "2024-05-01T09:00:00Z",
    );
    let ended = job_of(&cj, "2024-05-01T09:30:00Z", "Complete");
    let cj = with_status(
        cj,
        json!({"lastScheduleTime": "2024-05-01T09:30:00Z", "active": active_refs(&[&ended])}),
    );
    let plan = plan(
        &cj,
        std::slice::from_ref(&ended),
        at("2024-05-01T12:00:00Z"),
    );
    assert!(plan.create.is_none());
    assert_eq!(plan.requeue_after, None);
    let status = plan.status.unwrap();
    assert_eq!(status.active, None);
    assert_eq!(
        status.last_successful_time,
        Some(api_time(at("2024-05-01T09:30:00Z")))
    );
}

#[test]
fn history_limits_delete_the_oldest_finished_jobs() {
    let cj = cron_job(json!({"schedule": "0 * * * *"}), "2024-05-01T00:00:00Z");
    let mut jobs = Vec::new();
    for hour in 1..=5 {
        jobs.push(job_of(
            &cj,
            &format!("2024-05-01T0{hour}:00:00Z"),
            "Complete",
        ));
    }
    for hour in 6..=8 {
        jobs.push(job_of(&cj, &format!("2024-05-01T0{hour}:00:00Z"), "Failed"));
    }
    let cj = with_status(cj, json!({"lastScheduleTime": "2024-05-01T08:00:00Z"}));
    let plan = plan(&cj, &jobs, at("2024-05-01T08:30:00Z"));
    let deleted: Vec<String> = plan.delete.iter().map(|d| d.name.clone()).collect();
    let expected: Vec<String> = ["01", "02", "06", "07"]
        .iter()
        .map(|h| job_name("dump", at(&format!("2024-05-01T{h}:00:00Z"))))
        .collect();
    assert_eq!(deleted, expected, "3 successful and 1 failed job are kept");
    assert_eq!(reasons(&plan), vec!["SuccessfulDelete"; 4]);
}

#[test]
fn the_active_list_follows_the_jobs() {
    let cj = cron_job(json!({"schedule": "0 * * * *"}), "2024-05-01T00:00:00Z");
    let done = job_of(&cj, "2024-05-01T01:00:00Z", "Complete");
    let failed = job_of(&cj, "2024-05-01T02:00:00Z", "Failed");
    let vanished = job_of(&cj, "2024-05-01T03:00:00Z", "active");
    let cj = with_status(
        cj,
        json!({"lastScheduleTime": "2024-05-01T03:00:00Z", "active": active_refs(&[&done, &failed, &vanished])}),
    );
    let plan = plan(&cj, &[done.clone(), failed], at("2024-05-01T03:10:00Z"));
    assert_eq!(
        reasons(&plan),
        vec!["SawCompletedJob", "SawCompletedJob", "MissingJob"]
    );
    assert_eq!(
        plan.events[0].message,
        format!(
            "Saw completed job: {}, status: Complete",
            done.metadata.name.unwrap()
        )
    );
    let status = plan.status.unwrap();
    assert_eq!(status.active, None);
    assert_eq!(
        status.last_successful_time,
        Some(api_time(at("2024-05-01T01:00:00Z")))
    );
}

#[test]
fn a_manual_run_is_not_active_for_the_concurrency_policy() {
    let cj = cron_job(
        json!({"schedule": "* * * * *", "concurrencyPolicy": "Forbid"}),
        "2024-05-01T09:00:00Z",
    );
    let mut manual = manual_job(&cj, "dump-now");
    manual.metadata.uid = Some("manual".into());
    manual.status = Some(serde_json::from_value(json!({"active": 1})).unwrap());
    let cj = with_status(cj, json!({"lastScheduleTime": "2024-05-01T10:00:00Z"}));
    let plan = plan(&cj, &[manual], at("2024-05-01T10:01:00Z"));
    assert!(plan.create.is_some());
    assert!(!reasons(&plan).contains(&"UnexpectedJob"));
}

#[test]
fn a_time_zone_schedule_runs_after_the_spring_gap_and_once_in_the_autumn() {
    let cj = cron_job(
        json!({"schedule": "30 2 * * *", "timeZone": "Europe/Berlin"}),
        "2024-03-01T00:00:00Z",
    );
    // Spring: 02:30 does not exist on 2024-03-31; the run is at 03:00 CEST (01:00 UTC).
    let spring = with_status(
        cj.clone(),
        json!({"lastScheduleTime": "2024-03-30T01:30:00Z"}),
    );
    assert!(
        plan(&spring, &[], at("2024-03-31T00:59:59Z"))
            .create
            .is_none()
    );
    let run = plan(&spring, &[], at("2024-03-31T01:00:00Z"));
    let job = run.create.unwrap();
    assert_eq!(
        job.metadata.name,
        Some(job_name("dump", at("2024-03-31T01:00:00Z")))
    );
    assert_eq!(
        job.metadata.annotations.unwrap()[SCHEDULED_TIMESTAMP_ANNOTATION],
        "2024-03-31T03:00:00+02:00"
    );
    // Autumn: 02:30 happens twice on 2024-10-27 (00:30 and 01:30 UTC); it runs only the first time.
    let autumn = with_status(cj, json!({"lastScheduleTime": "2024-10-27T00:30:00Z"}));
    let second = plan(&autumn, &[], at("2024-10-27T01:30:05Z"));
    assert!(second.create.is_none());
    assert_eq!(
        second.requeue_after,
        Some(Duration::from_secs(24 * 3600 - 5)),
        "next is 02:30 CET on the 28th"
    );
}

#[test]
fn a_missed_run_across_a_daylight_saving_change_starts_once() {
    let cj = cron_job(
        json!({"schedule": "30 2 * * *", "timeZone": "Europe/Berlin"}),
        "2024-03-01T00:00:00Z",
    );
    // The agent was down over the whole night of the change.
    let down = with_status(cj, json!({"lastScheduleTime": "2024-03-30T01:30:00Z"}));
    let plan = plan(&down, &[], at("2024-03-31T09:00:00Z"));
    assert_eq!(
        created_name(&plan),
        Some(job_name("dump", at("2024-03-31T01:00:00Z")))
    );
}

#[test]
fn a_cronjob_created_between_runs_waits_for_the_next_one() {
    let cj = cron_job(json!({"schedule": "@hourly"}), "2024-05-01T10:20:00Z");
    let plan = plan(&cj, &[], at("2024-05-01T10:40:00Z"));
    assert!(plan.create.is_none());
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(20 * 60)));
}

#[test]
fn a_decade_of_downtime_starts_one_run_and_warns() {
    let cj = with_status(
        cron_job(json!({"schedule": "* * * * *"}), "2010-01-01T00:00:00Z"),
        json!({"lastScheduleTime": "2010-01-01T00:00:00Z"}),
    );
    let plan = plan(&cj, &[], at("2024-05-01T10:00:30Z"));
    assert_eq!(
        created_name(&plan),
        Some(job_name("dump", at("2024-05-01T10:00:00Z")))
    );
    assert_eq!(reasons(&plan), vec!["TooManyMissedTimes"]);
}

/// Cost of finding the due time (bench/jobs/run.sh runs it in release).
#[test]
#[ignore = "benchmark: run by bench/jobs/run.sh"]
fn bench_due_time_after_downtime() {
    use std::time::Instant;
    for (schedule, zone, down) in [
        ("*/5 * * * *", None, "2024-05-01T09:00:00Z"),
        ("* * * * *", None, "2024-04-30T10:00:00Z"),
        ("* * * * *", None, "2023-05-01T10:00:00Z"),
        ("30 2 * * *", Some("Europe/Berlin"), "2014-05-01T10:00:00Z"),
    ] {
        let parsed = crate::objects::schedule::parse(schedule, zone).unwrap();
        let now = at("2024-05-01T10:00:30Z");
        let started = Instant::now();
        let mut runs = 0u32;
        while runs < 10 || started.elapsed().as_millis() < 300 {
            std::hint::black_box(super::times::most_recent_due(&parsed, at(down), now));
            runs += 1;
        }
        let each = started.elapsed() / runs;
        println!(
            "cron due time {schedule:>12} {:<14} down since {down}: {:>9.1} µs",
            zone.unwrap_or("UTC"),
            each.as_secs_f64() * 1e6
        );
    }
    let cj = cron_job(json!({"schedule": "*/5 * * * *"}), "2024-05-01T09:00:00Z");
    let jobs: Vec<Job> = (0..10)
        .map(|i| job_of(&cj, &format!("2024-05-01T09:{:02}:00Z", i * 5), "Complete"))
        .collect();
    let cj = with_status(cj, json!({"lastScheduleTime": "2024-05-01T09:45:00Z"}));
    let started = Instant::now();
    let mut runs = 0u32;
    while runs < 10 || started.elapsed().as_millis() < 300 {
        std::hint::black_box(plan(&cj, &jobs, at("2024-05-01T09:47:00Z")));
        runs += 1;
    }
    println!(
        "cronjob plan with 10 finished jobs: {:>9.1} µs",
        (started.elapsed() / runs).as_secs_f64() * 1e6
    );
}
