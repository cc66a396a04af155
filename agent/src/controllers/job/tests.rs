//! The Job decision, tested without containers: single decisions from prepared pods, and
//! whole runs of a simulated cluster (the state machine's deletion rules and a kubelet that
//! starts, finishes and stops pods) with invariants checked after every step.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::clock::api_time;
use super::plan::{JobPlan, PodDeletion, plan};
use super::template::{PodSlot, pod_for};
use super::{COMPLETION_INDEX_ANNOTATION, TRACKING_FINALIZER};
use crate::events::EventType;
use crate::objects::{CreateContext, admit_create};

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-05-01T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// A Job as the API stores it (decoded, defaulted, validated, selector generated).
fn job(spec: Value) -> Job {
    let mut spec = spec;
    let template = json!({
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}
    });
    if spec.get("template").is_none() {
        spec["template"] = template;
    }
    let manifest = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "work", "namespace": "lab"}, "spec": spec});
    let context = CreateContext {
        uid: "job-uid".into(),
        now: k8s_openapi::jiff::Timestamp::from_second(t0().timestamp()).unwrap(),
        random: 7,
    };
    let admitted =
        admit_create(&manifest, &context).unwrap_or_else(|e| panic!("test job is valid: {e}"));
    serde_json::from_value(admitted.object.to_value()).unwrap()
}

/// What the kubelet made of a pod.
#[derive(Clone, Copy, Debug)]
enum Run {
    Pending,
    Running { ready: bool },
    Exited(i32),
}

/// A pod of `job` in `slot`, named `name`, bound to a node, in the state `run`, finishing
/// (when it exits) at `at`.
fn pod(job: &Job, name: &str, slot: PodSlot, run: Run, at: DateTime<Utc>) -> Pod {
    let mut pod = pod_for(job, slot);
    pod.metadata.name = Some(name.to_owned());
    pod.metadata.uid = Some(format!("uid-{name}"));
    pod.metadata.creation_timestamp = Some(api_time(at - TimeDelta::seconds(5)));
    pod.spec.as_mut().unwrap().node_name = Some("node-a".into());
    set_run(&mut pod, run, at);
    pod
}

fn set_run(pod: &mut Pod, run: Run, at: DateTime<Utc>) {
    let (phase, ready, state) = match run {
        Run::Pending => (
            "Pending",
            false,
            json!({"waiting": {"reason": "ContainerCreating"}}),
        ),
        Run::Running { ready } => (
            "Running",
            ready,
            json!({"running": {"startedAt": api_time(at)}}),
        ),
        Run::Exited(code) => (
            if code == 0 { "Succeeded" } else { "Failed" },
            false,
            json!({"terminated": {"exitCode": code, "finishedAt": api_time(at)}}),
        ),
    };
    pod.status = Some(
        serde_json::from_value(json!({
            "phase": phase,
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": api_time(at)}],
            "containerStatuses": [{"name": "main", "image": "busybox", "imageID": "", "ready": ready, "restartCount": 0, "state": state}],
        }))
        .unwrap(),
    );
}

fn untracked(mut pod: Pod) -> Pod {
    pod.metadata
        .finalizers
        .as_mut()
        .unwrap()
        .retain(|f| f != TRACKING_FINALIZER);
    pod
}

fn deleting(mut pod: Pod, at: DateTime<Utc>, grace: i64) -> Pod {
    pod.metadata.deletion_timestamp = Some(api_time(at + TimeDelta::seconds(grace)));
    pod.metadata.deletion_grace_period_seconds = Some(grace);
    pod
}

fn with_status(mut job: Job, status: Value) -> Job {
    job.status = Some(serde_json::from_value(status).unwrap());
    job
}

fn indexed(i: i32) -> PodSlot {
    PodSlot {
        index: Some(i),
        index_failures: None,
    }
}

fn conditions(plan: &JobPlan) -> Vec<(String, String, String)> {
    plan.status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.type_, c.status, c.reason.unwrap_or_default()))
        .collect()
}

fn condition_types(plan: &JobPlan) -> Vec<String> {
    conditions(plan)
        .into_iter()
        .filter(|c| c.1 == "True")
        .map(|c| c.0)
        .collect()
}

fn reasons(plan: &JobPlan) -> Vec<&str> {
    plan.events.iter().map(|e| e.reason.as_str()).collect()
}

#[test]
fn a_new_job_starts_parallelism_pods_and_records_its_start() {
    let job = job(json!({"completions": 4, "parallelism": 2}));
    let plan = plan(&job, &[], t0());
    assert_eq!(plan.create, vec![PodSlot::default(); 2]);
    let status = plan.status.unwrap();
    assert_eq!(status.active, Some(2));
    assert_eq!(status.succeeded, Some(0));
    assert_eq!(status.failed, Some(0));
    assert_eq!(status.start_time, Some(api_time(t0())));
}

#[test]
fn active_pods_never_exceed_the_remaining_completions() {
    // (completions, parallelism, succeeded already counted, active pods) -> pods to create
    let cases = [
        (4, 2, 0, 0, 2),
        (4, 2, 3, 0, 1),
        (4, 2, 2, 1, 1),
        (4, 2, 3, 1, 0),
        (1, 5, 0, 0, 1),
        (5, 0, 0, 0, 0),
    ];
    for (completions, parallelism, succeeded, active, create) in cases {
        let base = with_status(
            job(json!({"completions": completions, "parallelism": parallelism})),
            json!({"succeeded": succeeded, "startTime": api_time(t0())}),
        );
        let pods: Vec<Pod> = (0..active)
            .map(|i| {
                pod(
                    &base,
                    &format!("p{i}"),
                    PodSlot::default(),
                    Run::Running { ready: true },
                    t0(),
                )
            })
            .collect();
        let plan = plan(&base, &pods, t0());
        assert_eq!(
            plan.create.len(),
            create,
            "completions {completions} parallelism {parallelism} succeeded {succeeded} active {active}"
        );
        assert!(plan.delete.is_empty());
    }
}

#[test]
fn a_finished_pod_is_counted_in_the_same_command_that_releases_it() {
    let base = with_status(
        job(json!({"completions": 3, "parallelism": 1})),
        json!({"startTime": api_time(t0()), "succeeded": 1, "failed": 0}),
    );
    let done = pod(&base, "done", PodSlot::default(), Run::Exited(0), t0());
    let counted_before = untracked(pod(&base, "old", PodSlot::default(), Run::Exited(0), t0()));
    let plan = plan(&base, &[done, counted_before], t0() + TimeDelta::seconds(1));
    let status = plan.status.as_ref().unwrap();
    assert_eq!(
        status.succeeded,
        Some(2),
        "the untracked pod was counted before and is not counted again"
    );
    assert_eq!(plan.release, vec!["done".to_string()]);
    assert_eq!(plan.create.len(), 1);
}

#[test]
fn a_job_completes_when_enough_pods_succeeded() {
    let base = with_status(
        job(json!({"completions": 2, "parallelism": 2})),
        json!({"startTime": api_time(t0()), "succeeded": 1}),
    );
    let last = pod(
        &base,
        "b",
        PodSlot::default(),
        Run::Exited(0),
        t0() + TimeDelta::seconds(30),
    );
    let now = t0() + TimeDelta::seconds(31);
    let plan = plan(&base, &[last], now);
    assert_eq!(
        condition_types(&plan),
        vec!["SuccessCriteriaMet", "Complete"]
    );
    assert!(
        conditions(&plan)
            .iter()
            .all(|c| c.2 == "CompletionsReached")
    );
    let status = plan.status.as_ref().unwrap();
    assert_eq!(status.succeeded, Some(2));
    assert_eq!(status.completion_time, Some(api_time(now)));
    assert_eq!(reasons(&plan), vec!["Completed"]);
    assert_eq!(plan.release, vec!["b".to_string()]);
}

#[test]
fn completion_waits_until_no_pod_is_terminating() {
    let base = with_status(
        job(json!({"completions": 1})),
        json!({"startTime": api_time(t0()), "succeeded": 1}),
    );
    // A pod someone deleted while the job was finishing is still being stopped.
    let stopping = untracked(deleting(
        pod(
            &base,
            "x",
            PodSlot::default(),
            Run::Running { ready: true },
            t0(),
        ),
        t0(),
        30,
    ));
    let first = plan(&base, std::slice::from_ref(&stopping), t0());
    assert_eq!(condition_types(&first), vec!["SuccessCriteriaMet"]);
    assert!(first.events.is_empty());
    let after = with_status(
        base.clone(),
        serde_json::to_value(first.status.unwrap()).unwrap(),
    );
    let second = plan(&after, &[], t0() + TimeDelta::seconds(5));
    assert_eq!(
        condition_types(&second),
        vec!["SuccessCriteriaMet", "Complete"]
    );
}

#[test]
fn failed_pods_are_replaced_after_a_doubling_back_off() {
    // (failures since the last success, seconds since the last failure) -> wait left
    let cases = [
        (1, 0, 10),
        (1, 4, 6),
        (1, 10, 0),
        (2, 0, 20),
        (3, 0, 40),
        (7, 0, 360),
        (9, 100, 260),
    ];
    for (failures, since, left) in cases {
        let base = with_status(
            job(json!({"completions": 1, "backoffLimit": 20})),
            json!({"startTime": api_time(t0()), "failed": failures}),
        );
        let pods: Vec<Pod> = (0..failures)
            .map(|i| {
                untracked(pod(
                    &base,
                    &format!("f{i}"),
                    PodSlot::default(),
                    Run::Exited(1),
                    t0() + TimeDelta::seconds(i64::from(i)),
                ))
            })
            .collect();
        let last = t0() + TimeDelta::seconds(i64::from(failures - 1));
        let plan = plan(&base, &pods, last + TimeDelta::seconds(since));
        if left == 0 {
            assert_eq!(plan.create.len(), 1, "{failures} failures, {since}s later");
        } else {
            assert!(
                plan.create.is_empty(),
                "{failures} failures, {since}s later"
            );
            assert_eq!(
                plan.requeue_after,
                Some(Duration::from_secs(left)),
                "{failures} failures, {since}s later"
            );
        }
    }
}

#[test]
fn a_success_resets_the_back_off() {
    let base = with_status(
        job(json!({"completions": 3, "backoffLimit": 10})),
        json!({"startTime": api_time(t0()), "failed": 2, "succeeded": 1}),
    );
    let pods = vec![
        untracked(pod(&base, "f1", PodSlot::default(), Run::Exited(1), t0())),
        untracked(pod(
            &base,
            "f2",
            PodSlot::default(),
            Run::Exited(1),
            t0() + TimeDelta::seconds(1),
        )),
        untracked(pod(
            &base,
            "ok",
            PodSlot::default(),
            Run::Exited(0),
            t0() + TimeDelta::seconds(2),
        )),
    ];
    let plan = plan(&base, &pods, t0() + TimeDelta::seconds(3));
    assert_eq!(plan.create.len(), 1);
}

#[test]
fn failures_beyond_the_backoff_limit_fail_the_job() {
    // (backoffLimit, failed pods) -> the job fails
    let cases = [
        (0, 1, true),
        (1, 1, false),
        (1, 2, true),
        (2, 2, false),
        (6, 7, true),
    ];
    for (limit, failures, fails) in cases {
        let base = with_status(
            job(json!({"backoffLimit": limit})),
            json!({"startTime": api_time(t0()), "failed": failures - 1}),
        );
        let mut pods: Vec<Pod> = (0..failures - 1)
            .map(|i| {
                untracked(pod(
                    &base,
                    &format!("old{i}"),
                    PodSlot::default(),
                    Run::Exited(1),
                    t0(),
                ))
            })
            .collect();
        pods.push(pod(&base, "last", PodSlot::default(), Run::Exited(1), t0()));
        let plan = plan(&base, &pods, t0() + TimeDelta::seconds(1));
        assert_eq!(
            plan.status.as_ref().unwrap().failed,
            Some(failures),
            "limit {limit}"
        );
        if fails {
            assert_eq!(
                condition_types(&plan),
                vec!["FailureTarget", "Failed"],
                "limit {limit} failures {failures}"
            );
            assert_eq!(conditions(&plan)[1].2, "BackoffLimitExceeded");
            assert_eq!(reasons(&plan), vec!["BackoffLimitExceeded"]);
            assert!(plan.create.is_empty());
        } else {
            assert!(
                condition_types(&plan).is_empty(),
                "limit {limit} failures {failures}"
            );
        }
    }
}

#[test]
fn the_active_deadline_fails_the_job_and_stops_its_pods() {
    let base = with_status(
        job(json!({"activeDeadlineSeconds": 30})),
        json!({"startTime": api_time(t0()), "active": 1}),
    );
    let running = pod(
        &base,
        "long",
        PodSlot::default(),
        Run::Running { ready: true },
        t0(),
    );

    let early = plan(
        &base,
        std::slice::from_ref(&running),
        t0() + TimeDelta::seconds(20),
    );
    assert_eq!(early.requeue_after, Some(Duration::from_secs(10)));
    assert!(early.delete.is_empty());

    let late = plan(
        &base,
        std::slice::from_ref(&running),
        t0() + TimeDelta::seconds(30),
    );
    assert_eq!(
        late.delete,
        vec![PodDeletion {
            name: "long".into(),
            uncounted: false
        }]
    );
    assert_eq!(
        condition_types(&late),
        vec!["FailureTarget"],
        "Failed waits until the pod has stopped"
    );
    assert_eq!(conditions(&late)[0].2, "DeadlineExceeded");
    let status = late.status.as_ref().unwrap();
    assert_eq!(
        (status.active, status.terminating, status.failed),
        (Some(0), Some(1), Some(1))
    );
    assert_eq!(
        late.release,
        vec!["long".to_string()],
        "the stopped pod is counted as failed now"
    );

    // Once the pod is gone the Job is Failed.
    let target = with_status(
        base.clone(),
        serde_json::to_value(late.status.unwrap()).unwrap(),
    );
    let done = plan(&target, &[], t0() + TimeDelta::seconds(45));
    assert_eq!(condition_types(&done), vec!["FailureTarget", "Failed"]);
    assert_eq!(reasons(&done), vec!["DeadlineExceeded"]);
}

#[test]
fn suspending_deletes_active_pods_without_counting_them() {
    let running = job(json!({"completions": 2, "parallelism": 2}));
    let base = with_status(
        job(json!({"completions": 2, "parallelism": 2, "suspend": true})),
        json!({"startTime": api_time(t0()), "active": 2}),
    );
    let pods = vec![
        pod(
            &running,
            "a",
            PodSlot::default(),
            Run::Running { ready: true },
            t0(),
        ),
        pod(&running, "b", PodSlot::default(), Run::Pending, t0()),
    ];
    let plan = plan(&base, &pods, t0() + TimeDelta::seconds(5));
    let mut deleted = plan.delete.clone();
    deleted.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(
        deleted,
        vec![
            PodDeletion {
                name: "a".into(),
                uncounted: true
            },
            PodDeletion {
                name: "b".into(),
                uncounted: true
            }
        ]
    );
    assert!(plan.release.is_empty());
    assert!(plan.create.is_empty());
    let status = plan.status.as_ref().unwrap();
    assert_eq!(
        (status.active, status.failed, status.terminating),
        (Some(0), Some(0), Some(2))
    );
    assert_eq!(
        conditions(&plan),
        vec![("Suspended".into(), "True".into(), "JobSuspended".into())]
    );
    assert_eq!(reasons(&plan), vec!["Suspended"]);
}

#[test]
fn resuming_restarts_the_deadline_clock() {
    let suspended = json!({"startTime": api_time(t0()), "conditions": [
        {"type": "Suspended", "status": "True", "reason": "JobSuspended", "message": "Job suspended", "lastTransitionTime": api_time(t0())}]});
    let base = with_status(job(json!({"activeDeadlineSeconds": 60})), suspended);
    let now = t0() + TimeDelta::seconds(600);
    let plan = plan(&base, &[], now);
    assert_eq!(
        conditions(&plan),
        vec![("Suspended".into(), "False".into(), "JobResumed".into())]
    );
    assert_eq!(reasons(&plan), vec!["Resumed"]);
    assert_eq!(
        plan.status.as_ref().unwrap().start_time,
        Some(api_time(now))
    );
    assert_eq!(
        plan.create.len(),
        1,
        "the deadline counts from the resumption, not the first start"
    );
}

#[test]
fn a_job_created_suspended_does_not_start() {
    let plan = plan(
        &job(json!({"suspend": true, "activeDeadlineSeconds": 1})),
        &[],
        t0() + TimeDelta::seconds(100),
    );
    let status = plan.status.unwrap();
    assert_eq!(status.start_time, None);
    assert!(plan.create.is_empty());
    assert_eq!(plan.requeue_after, None);
}

#[test]
fn an_indexed_job_runs_each_missing_index_once() {
    let base = with_status(
        job(json!({"completionMode": "Indexed", "completions": 5, "parallelism": 3})),
        json!({"startTime": api_time(t0()), "completedIndexes": "0"}),
    );
    let pods = vec![
        untracked(pod(&base, "i0", indexed(0), Run::Exited(0), t0())),
        pod(&base, "i1", indexed(1), Run::Running { ready: true }, t0()),
        pod(&base, "i2", indexed(2), Run::Exited(0), t0()),
    ];
    let plan = plan(&base, &pods, t0() + TimeDelta::seconds(1));
    let status = plan.status.as_ref().unwrap();
    assert_eq!(status.completed_indexes.as_deref(), Some("0,2"));
    assert_eq!(status.succeeded, Some(2));
    let created: Vec<Option<i32>> = plan.create.iter().map(|s| s.index).collect();
    assert_eq!(
        created,
        vec![Some(3), Some(4)],
        "index 1 runs, 0 and 2 are done: the lowest missing indexes fill the parallelism"
    );
    assert_eq!(status.active, Some(3));
}

#[test]
fn an_indexed_job_removes_duplicate_and_invalid_index_pods() {
    let base = with_status(
        job(json!({"completionMode": "Indexed", "completions": 3, "parallelism": 3})),
        json!({"startTime": api_time(t0())}),
    );
    let mut stray = pod(
        &base,
        "stray",
        indexed(1),
        Run::Running { ready: false },
        t0(),
    );
    stray
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert(COMPLETION_INDEX_ANNOTATION.into(), "7".into());
    let pods = vec![
        pod(
            &base,
            "one-ready",
            indexed(1),
            Run::Running { ready: true },
            t0(),
        ),
        pod(&base, "one-pending", indexed(1), Run::Pending, t0()),
        stray,
        pod(
            &base,
            "zero",
            indexed(0),
            Run::Running { ready: true },
            t0(),
        ),
    ];
    let plan = plan(&base, &pods, t0());
    let mut deleted: Vec<&str> = plan.delete.iter().map(|d| d.name.as_str()).collect();
    deleted.sort();
    assert_eq!(deleted, vec!["one-pending", "stray"]);
    assert!(plan.delete.iter().all(|d| d.uncounted));
    assert!(
        plan.create.is_empty(),
        "deletions and creations do not mix in one pass"
    );
}

#[test]
fn the_pod_failure_policy_decides_what_a_failure_means() {
    let policy = json!({"rules": [
        {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
        {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [143]}},
        {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [0]}},
    ]});
    // (exit code) -> (counted failures, job fails at once)
    let cases = [(42, 1, true), (143, 0, false), (1, 1, false)];
    for (code, counted, fails) in cases {
        let base = with_status(
            job(
                json!({"completions": 2, "parallelism": 2, "backoffLimit": 5, "podFailurePolicy": policy}),
            ),
            json!({"startTime": api_time(t0())}),
        );
        let pods = vec![
            pod(&base, "bad", PodSlot::default(), Run::Exited(code), t0()),
            pod(
                &base,
                "other",
                PodSlot::default(),
                Run::Running { ready: true },
                t0(),
            ),
        ];
        let plan = plan(&base, &pods, t0() + TimeDelta::seconds(1));
        let status = plan.status.as_ref().unwrap();
        if fails {
            assert_eq!(condition_types(&plan), vec!["FailureTarget"], "exit {code}");
            let message = status.conditions.as_ref().unwrap()[0]
                .message
                .clone()
                .unwrap();
            assert_eq!(
                message,
                "Container main for pod lab/bad failed with exit code 42 matching FailJob rule at index 0"
            );
            assert_eq!(
                plan.delete,
                vec![PodDeletion {
                    name: "other".into(),
                    uncounted: false
                }],
                "the running pod is stopped at once"
            );
            assert_eq!(
                status.failed,
                Some(2),
                "the stopped pod counts as failed too"
            );
        } else {
            assert!(condition_types(&plan).is_empty(), "exit {code}");
            assert_eq!(status.failed, Some(counted), "exit {code}");
            assert!(
                plan.release.contains(&"bad".to_string()),
                "exit {code}: even an ignored failure is released"
            );
        }
    }
}

/// An Indexed Job with `backoffLimitPerIndex` (and `maxFailedIndexes`, and a pod failure
/// policy, which may use FailIndex only with a per-index limit), set after admission: the
/// objects layer does not accept per-index limits yet; the decision supports them.
fn per_index_job(spec: Value, limit: i32, max_failed: Option<i32>, policy: Option<Value>) -> Job {
    let mut job = job(spec);
    let spec = job.spec.as_mut().unwrap();
    spec.backoff_limit_per_index = Some(limit);
    spec.backoff_limit = Some(i32::MAX);
    spec.max_failed_indexes = max_failed;
    spec.pod_failure_policy = policy.map(|p| serde_json::from_value(p).unwrap());
    job
}

#[test]
fn per_index_backoff_limits_fail_single_indexes() {
    let spec = json!({"completionMode": "Indexed", "completions": 3, "parallelism": 3});
    let base = with_status(
        per_index_job(spec.clone(), 1, None, None),
        json!({"startTime": api_time(t0())}),
    );
    // Index 0 failed for the second time (its pod was created with one earlier failure).
    let second = pod(
        &base,
        "zero-b",
        PodSlot {
            index: Some(0),
            index_failures: Some((1, 0)),
        },
        Run::Exited(1),
        t0(),
    );
    let first = untracked(pod(
        &base,
        "zero-a",
        PodSlot {
            index: Some(0),
            index_failures: Some((0, 0)),
        },
        Run::Exited(1),
        t0() - TimeDelta::seconds(20),
    ));
    // Index 1 failed once: it gets a replacement carrying the count.
    let one = pod(
        &base,
        "one-a",
        PodSlot {
            index: Some(1),
            index_failures: Some((0, 0)),
        },
        Run::Exited(1),
        t0() - TimeDelta::seconds(30),
    );
    let two = pod(
        &base,
        "two",
        PodSlot {
            index: Some(2),
            index_failures: Some((0, 0)),
        },
        Run::Running { ready: true },
        t0(),
    );
    let first_plan = plan(
        &base,
        &[first, second, one, two],
        t0() + TimeDelta::seconds(1),
    );
    let status = first_plan.status.as_ref().unwrap();
    assert_eq!(status.failed_indexes.as_deref(), Some("0"));
    assert_eq!(
        first_plan.create,
        vec![PodSlot {
            index: Some(1),
            index_failures: Some((1, 0))
        }]
    );
    assert!(condition_types(&first_plan).is_empty());

    // With every index done and one failed, the Job fails with FailedIndexes.
    let done = with_status(
        per_index_job(spec, 1, None, None),
        json!({"startTime": api_time(t0()), "failedIndexes": "0", "completedIndexes": "1,2"}),
    );
    let plan = plan(&done, &[], t0() + TimeDelta::seconds(2));
    assert_eq!(conditions(&plan).last().unwrap().2, "FailedIndexes");
    assert_eq!(condition_types(&plan), vec!["FailureTarget", "Failed"]);
}

#[test]
fn too_many_failed_indexes_fail_the_job() {
    let spec = json!({"completionMode": "Indexed", "completions": 4, "parallelism": 1});
    let base = with_status(
        per_index_job(spec, 0, Some(1), None),
        json!({"startTime": api_time(t0()), "failedIndexes": "0"}),
    );
    let failing = pod(
        &base,
        "one",
        PodSlot {
            index: Some(1),
            index_failures: Some((0, 0)),
        },
        Run::Exited(3),
        t0(),
    );
    let plan = plan(&base, &[failing], t0() + TimeDelta::seconds(1));
    assert_eq!(
        plan.status.as_ref().unwrap().failed_indexes.as_deref(),
        Some("0,1")
    );
    assert_eq!(
        conditions(&plan).last().unwrap().2,
        "MaxFailedIndexesExceeded"
    );
}

#[test]
fn fail_index_fails_only_the_index_and_the_job_goes_on() {
    let policy = json!({"rules": [{"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [7]}}]});
    let spec = json!({"completionMode": "Indexed", "completions": 3, "parallelism": 1});
    let base = with_status(
        per_index_job(spec, 5, None, Some(policy)),
        json!({"startTime": api_time(t0())}),
    );
    let broken = pod(
        &base,
        "zero",
        PodSlot {
            index: Some(0),
            index_failures: Some((0, 0)),
        },
        Run::Exited(7),
        t0(),
    );
    let plan = plan(&base, &[broken], t0() + TimeDelta::seconds(1));
    let status = plan.status.as_ref().unwrap();
    assert_eq!(
        status.failed_indexes.as_deref(),
        Some("0"),
        "a FailIndex exit code fails the index at once, despite the limit of 5"
    );
    assert_eq!(status.failed, Some(1));
    assert!(
        condition_types(&plan).is_empty(),
        "the other indexes still run"
    );
    assert_eq!(
        plan.create,
        vec![PodSlot {
            index: Some(1),
            index_failures: Some((0, 0))
        }]
    );
}

#[test]
fn restarts_under_on_failure_count_against_the_backoff_limit() {
    let template = json!({"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "main", "image": "busybox"}]}});
    for (restarts, fails) in [(1, false), (2, true)] {
        let base = with_status(
            job(json!({"backoffLimit": 2, "template": template})),
            json!({"startTime": api_time(t0())}),
        );
        let mut p = pod(
            &base,
            "p",
            PodSlot::default(),
            Run::Running { ready: false },
            t0(),
        );
        p.status
            .as_mut()
            .unwrap()
            .container_statuses
            .as_mut()
            .unwrap()[0]
            .restart_count = restarts;
        let plan = plan(&base, &[p], t0());
        assert_eq!(
            condition_types(&plan).contains(&"FailureTarget".to_string()),
            fails,
            "{restarts} restarts"
        );
    }
}

#[test]
fn a_finished_job_is_deleted_after_its_time_to_live() {
    let finished = json!({"startTime": api_time(t0()), "completionTime": api_time(t0()), "conditions": [
        {"type": "Complete", "status": "True", "lastTransitionTime": api_time(t0())}]});
    let base = with_status(job(json!({"ttlSecondsAfterFinished": 100})), finished);
    let early = plan(&base, &[], t0() + TimeDelta::seconds(40));
    assert!(!early.delete_job);
    assert_eq!(early.requeue_after, Some(Duration::from_secs(60)));
    let late = plan(&base, &[], t0() + TimeDelta::seconds(100));
    assert!(late.delete_job);
    let kept = with_status(
        job(json!({})),
        serde_json::to_value(base.status.clone().unwrap()).unwrap(),
    );
    assert!(
        plan(&kept, &[], t0() + TimeDelta::days(400)).is_empty(),
        "without a TTL a finished job stays"
    );
}

#[test]
fn a_job_whose_deletion_started_is_not_deleted_again() {
    let finished = json!({"startTime": api_time(t0()), "completionTime": api_time(t0()), "conditions": [
        {"type": "Complete", "status": "True", "lastTransitionTime": api_time(t0())}]});
    let mut base = with_status(job(json!({"ttlSecondsAfterFinished": 10})), finished);
    base.metadata.deletion_timestamp = Some(api_time(t0() + TimeDelta::seconds(10)));
    assert!(plan(&base, &[], t0() + TimeDelta::seconds(20)).is_empty());
}

#[test]
fn a_pod_being_deleted_blocks_its_replacement_only_under_the_failed_policy() {
    // (podReplacementPolicy) -> (failures counted now, wait before the replacement)
    // TerminatingOrFailed counts the pod as failed at once, so its replacement only waits out
    // the failure back-off; Failed waits until the pod has really stopped.
    for (policy, failed, wait) in [
        ("TerminatingOrFailed", 1, Some(Duration::from_secs(9))),
        ("Failed", 0, None),
    ] {
        let mut spec = json!({"podReplacementPolicy": policy});
        if policy == "Failed" {
            spec["podFailurePolicy"] = json!({"rules": [{"action": "Count", "onExitCodes": {"operator": "In", "values": [1]}}]});
        }
        let base = with_status(job(spec), json!({"startTime": api_time(t0())}));
        let stopping = deleting(
            pod(
                &base,
                "old",
                PodSlot::default(),
                Run::Running { ready: true },
                t0(),
            ),
            t0(),
            30,
        );
        let plan = plan(&base, &[stopping], t0() + TimeDelta::seconds(1));
        let status = plan.status.as_ref().unwrap();
        assert!(plan.create.is_empty(), "{policy}");
        assert_eq!(plan.requeue_after, wait, "{policy}");
        assert_eq!(status.failed, Some(failed), "{policy}");
        assert_eq!(status.terminating, Some(1), "{policy}");
    }
}

#[test]
fn a_pod_whose_kubelet_finished_its_deletion_counts_as_failed() {
    let base = with_status(
        job(json!({"backoffLimit": 3})),
        json!({"startTime": api_time(t0())}),
    );
    let gone = deleting(
        pod(
            &base,
            "gone",
            PodSlot::default(),
            Run::Running { ready: false },
            t0(),
        ),
        t0(),
        0,
    );
    let plan = plan(&base, &[gone], t0() + TimeDelta::seconds(1));
    assert_eq!(plan.status.as_ref().unwrap().failed, Some(1));
    assert_eq!(plan.release, vec!["gone".to_string()]);
}

#[test]
fn a_work_queue_job_completes_when_one_pod_succeeded_and_the_rest_finished() {
    let base = with_status(
        job(json!({"parallelism": 3})),
        json!({"startTime": api_time(t0())}),
    );
    let pods = vec![
        pod(&base, "a", PodSlot::default(), Run::Exited(0), t0()),
        pod(
            &base,
            "b",
            PodSlot::default(),
            Run::Running { ready: true },
            t0(),
        ),
    ];
    let first = plan(&base, &pods, t0());
    assert!(first.create.is_empty(), "after a success no new pods start");
    assert!(condition_types(&first).is_empty(), "b still runs");
    let counted = with_status(
        base.clone(),
        serde_json::to_value(first.status.unwrap()).unwrap(),
    );
    let pods = vec![
        untracked(pods[0].clone()),
        pod(&base, "b", PodSlot::default(), Run::Exited(0), t0()),
    ];
    assert_eq!(
        condition_types(&plan(&counted, &pods, t0())),
        vec!["SuccessCriteriaMet", "Complete"]
    );
}

#[test]
fn lowering_parallelism_deletes_the_least_advanced_pods_first() {
    let base = with_status(
        job(json!({"completions": 10, "parallelism": 1})),
        json!({"startTime": api_time(t0())}),
    );
    let pods = vec![
        pod(
            &base,
            "ready",
            PodSlot::default(),
            Run::Running { ready: true },
            t0(),
        ),
        pod(&base, "pending", PodSlot::default(), Run::Pending, t0()),
        pod(
            &base,
            "running",
            PodSlot::default(),
            Run::Running { ready: false },
            t0(),
        ),
    ];
    let plan = plan(&base, &pods, t0());
    let deleted: Vec<&str> = plan.delete.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(deleted, vec!["pending", "running"]);
    assert!(plan.delete.iter().all(|d| d.uncounted));
}

#[test]
fn a_job_being_deleted_lets_go_of_its_pods() {
    let mut base = job(json!({}));
    base.metadata.deletion_timestamp = Some(api_time(t0()));
    let p = pod(
        &base,
        "p",
        PodSlot::default(),
        Run::Running { ready: true },
        t0(),
    );
    let plan = plan(&base, &[p], t0());
    assert_eq!(plan.release, vec!["p".to_string()]);
    assert!(plan.create.is_empty() && plan.status.is_none());
}

// ------------------------------------------------------------------------------------------
// Simulation: the state machine's deletion rules and a kubelet, driven step by step.

/// A tiny cluster: one Job, its pods, and a clock.
struct Sim {
    job: Job,
    pods: Vec<Pod>,
    now: DateTime<Utc>,
    created: usize,
    events: Vec<String>,
    max_active_seen: usize,
    job_deleted: bool,
}

impl Sim {
    fn new(spec: Value) -> Sim {
        Sim {
            job: job(spec),
            pods: Vec::new(),
            now: t0(),
            created: 0,
            events: Vec::new(),
            max_active_seen: 0,
            job_deleted: false,
        }
    }

    fn pod_mut(&mut self, name: &str) -> &mut Pod {
        self.pods
            .iter_mut()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .expect("pod exists")
    }

    fn has_finalizers(pod: &Pod) -> bool {
        pod.metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| !f.is_empty())
    }

    /// The state machine's Delete: terminal pods go at once, running ones get a grace period;
    /// finalizers hold either.
    fn delete_pod(&mut self, name: &str) {
        let now = self.now;
        let pod = self.pod_mut(name);
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        let grace = if phase == "Succeeded" || phase == "Failed" {
            0
        } else {
            30
        };
        if pod.metadata.deletion_timestamp.is_none() {
            pod.metadata.deletion_timestamp = Some(api_time(now + TimeDelta::seconds(grace)));
            pod.metadata.deletion_grace_period_seconds = Some(grace);
        }
        self.collect();
    }

    /// Removes pods whose deletion finished and that no finalizer holds.
    fn collect(&mut self) {
        self.pods.retain(|p| {
            p.metadata.deletion_timestamp.is_none()
                || p.metadata.deletion_grace_period_seconds != Some(0)
                || Self::has_finalizers(p)
        });
    }

    fn release(&mut self, name: &str) {
        if let Some(pod) = self
            .pods
            .iter_mut()
            .find(|p| p.metadata.name.as_deref() == Some(name))
        {
            pod.metadata
                .finalizers
                .as_mut()
                .unwrap()
                .retain(|f| f != TRACKING_FINALIZER);
        }
        self.collect();
    }

    /// One controller pass, applied as the executor applies it.
    fn step(&mut self) -> JobPlan {
        let plan = plan(&self.job, &self.pods, self.now);
        if plan.delete_job {
            self.job_deleted = true;
        }
        if let Some(status) = plan.status.clone() {
            self.job.status = Some(status);
        }
        for name in &plan.release {
            self.release(name);
        }
        for deletion in &plan.delete {
            if deletion.uncounted {
                self.release(&deletion.name);
            }
            if self
                .pods
                .iter()
                .any(|p| p.metadata.name.as_deref() == Some(deletion.name.as_str()))
            {
                self.delete_pod(&deletion.name);
            }
        }
        for slot in &plan.create {
            let name = format!("work-{}", self.created);
            self.created += 1;
            let mut pod = pod_for(&self.job, *slot);
            pod.metadata.name = Some(name);
            pod.metadata.creation_timestamp = Some(api_time(self.now));
            pod.spec.as_mut().unwrap().node_name = Some("node-a".into());
            set_run(&mut pod, Run::Pending, self.now);
            self.pods.push(pod);
        }
        self.events
            .extend(plan.events.iter().map(|e| e.reason.clone()));
        self.check_invariants(&plan);
        plan
    }

    /// Controller passes until nothing changes.
    fn settle(&mut self) -> Option<Duration> {
        for _ in 0..20 {
            let plan = self.step();
            if plan.is_empty() {
                return plan.requeue_after;
            }
        }
        panic!("the controller never settles: it keeps changing things");
    }

    fn advance(&mut self, seconds: i64) {
        self.now += TimeDelta::seconds(seconds);
    }

    fn names(&self, want: impl Fn(&Pod) -> bool) -> Vec<String> {
        self.pods
            .iter()
            .filter(|p| want(p))
            .filter_map(|p| p.metadata.name.clone())
            .collect()
    }

    fn phase(pod: &Pod) -> &str {
        pod.status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("")
    }

    fn active_names(&self) -> Vec<String> {
        self.names(|p| {
            p.metadata.deletion_timestamp.is_none()
                && matches!(Self::phase(p), "Pending" | "Running")
        })
    }

    /// The kubelet: pending pods start, terminating pods stop (and their deletion finishes).
    fn kubelet(&mut self) {
        let now = self.now;
        for pod in self.pods.iter_mut() {
            if pod.metadata.deletion_timestamp.is_some() {
                if !matches!(Self::phase(pod), "Succeeded" | "Failed") {
                    set_run(pod, Run::Exited(137), now);
                }
                pod.metadata.deletion_grace_period_seconds = Some(0);
            } else if Self::phase(pod) == "Pending" {
                set_run(pod, Run::Running { ready: true }, now);
            }
        }
        self.collect();
    }

    fn exit(&mut self, name: &str, code: i32) {
        let now = self.now;
        set_run(self.pod_mut(name), Run::Exited(code), now);
    }

    fn status(&self) -> k8s_openapi::api::batch::v1::JobStatus {
        self.job.status.clone().unwrap_or_default()
    }

    fn finished(&self) -> Option<String> {
        self.status()
            .conditions
            .unwrap_or_default()
            .into_iter()
            .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
            .map(|c| c.type_)
    }

    fn check_invariants(&mut self, plan: &JobPlan) {
        let spec = self.job.spec.clone().unwrap();
        let active = self.active_names().len();
        self.max_active_seen = self.max_active_seen.max(active);
        if let Some(parallelism) = spec.parallelism {
            assert!(
                active <= parallelism as usize,
                "{active} active pods exceed parallelism {parallelism}"
            );
        }
        let status = self.status();
        if let Some(completions) = spec.completions {
            assert!(
                status.succeeded.unwrap_or(0) <= completions,
                "more successes than completions"
            );
            // A pod is active or counted as succeeded, never both.
            let succeeded = status.succeeded.unwrap_or(0) as usize;
            assert!(
                active + succeeded <= completions as usize,
                "{active} active pods and {succeeded} successes exceed {completions} completions"
            );
        }
        if spec.completion_mode.as_deref() == Some("Indexed") {
            let mut seen = std::collections::HashSet::new();
            for pod in self.pods.iter().filter(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && matches!(Self::phase(p), "Pending" | "Running")
            }) {
                let index = super::pods::completion_index(pod);
                assert!(seen.insert(index), "two active pods for index {index:?}");
            }
        }
        // Every pod the controller let go of, and only those, is counted.
        let counted: i32 = status.succeeded.unwrap_or(0) + status.failed.unwrap_or(0);
        assert!(
            counted as usize <= self.created,
            "counted {counted} pods of {} created",
            self.created
        );
        if self.finished().is_some() {
            assert!(plan.create.is_empty(), "a finished job creates no pods");
        }
    }
}

#[test]
fn simulated_completions_4_parallelism_2_runs_at_most_2_pods_and_succeeds_4_times() {
    let mut sim = Sim::new(json!({"completions": 4, "parallelism": 2}));
    for _ in 0..10 {
        sim.settle();
        sim.kubelet();
        sim.settle();
        sim.advance(5);
        // The oldest running pod succeeds.
        if let Some(name) = sim.names(|p| Sim::phase(p) == "Running").first().cloned() {
            sim.exit(&name, 0);
        }
        if sim.finished().is_some() {
            break;
        }
    }
    sim.settle();
    assert_eq!(sim.finished().as_deref(), Some("Complete"));
    assert_eq!(sim.status().succeeded, Some(4));
    assert_eq!(sim.created, 4, "exactly one pod per completion");
    assert_eq!(sim.max_active_seen, 2);
    assert_eq!(sim.events.iter().filter(|e| *e == "Completed").count(), 1);
}

#[test]
fn simulated_always_failing_job_with_backoff_limit_1_ends_with_exactly_two_failed_pods() {
    let mut sim = Sim::new(json!({"backoffLimit": 1}));
    let mut waits = Vec::new();
    for _ in 0..10 {
        if let Some(wait) = sim.settle() {
            waits.push(wait);
            sim.advance(wait.as_secs() as i64);
            continue;
        }
        sim.kubelet();
        for name in sim.names(|p| Sim::phase(p) == "Running") {
            sim.exit(&name, 1);
        }
        sim.advance(1);
        if sim.finished().is_some() {
            break;
        }
    }
    assert_eq!(sim.finished().as_deref(), Some("Failed"));
    assert_eq!(sim.status().failed, Some(2));
    assert_eq!(sim.created, 2);
    assert_eq!(
        sim.names(|p| Sim::phase(p) == "Failed").len(),
        2,
        "both failed pods are kept for their logs"
    );
    assert_eq!(
        waits.first(),
        Some(&Duration::from_secs(9)),
        "the replacement waited for the 10 s back-off"
    );
    assert!(sim.events.contains(&"BackoffLimitExceeded".to_string()));
    assert!(
        sim.pods.iter().all(|p| !Sim::has_finalizers(p)),
        "no pod is left held"
    );
}

#[test]
fn simulated_indexed_job_runs_each_index_once_even_after_a_failure() {
    let mut sim = Sim::new(
        json!({"completionMode": "Indexed", "completions": 5, "parallelism": 2, "backoffLimit": 3}),
    );
    let mut failed_once = false;
    for _ in 0..40 {
        if let Some(wait) = sim.settle() {
            sim.advance(wait.as_secs() as i64 + 1);
            continue;
        }
        sim.kubelet();
        sim.settle();
        sim.advance(2);
        let running = sim.names(|p| Sim::phase(p) == "Running");
        if let Some(name) = running.first() {
            let code = if !failed_once { 2 } else { 0 };
            failed_once = true;
            sim.exit(name, code);
        }
        if sim.finished().is_some() {
            break;
        }
    }
    assert_eq!(sim.finished().as_deref(), Some("Complete"));
    let status = sim.status();
    assert_eq!(status.completed_indexes.as_deref(), Some("0-4"));
    assert_eq!((status.succeeded, status.failed), (Some(5), Some(1)));
    let succeeded_indexes: Vec<Option<i32>> = {
        let mut v: Vec<Option<i32>> = sim
            .pods
            .iter()
            .filter(|p| Sim::phase(p) == "Succeeded")
            .map(super::pods::completion_index)
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        succeeded_indexes,
        vec![Some(0), Some(1), Some(2), Some(3), Some(4)],
        "each index succeeded exactly once"
    );
    let hostnames: Vec<String> = sim
        .pods
        .iter()
        .filter_map(|p| p.spec.as_ref().and_then(|s| s.hostname.clone()))
        .collect();
    assert!(hostnames.iter().all(|h| h.starts_with("work-")));
}

#[test]
fn simulated_deadline_stops_a_long_pod_and_fails_the_job() {
    let mut sim = Sim::new(json!({"activeDeadlineSeconds": 20}));
    sim.settle();
    sim.kubelet();
    let wait = sim
        .settle()
        .expect("the controller asks to look again at the deadline");
    sim.advance(wait.as_secs() as i64);
    sim.settle();
    let status = sim.status();
    assert_eq!(status.terminating, Some(1));
    assert!(
        sim.finished().is_none(),
        "Failed only once the pod has stopped"
    );
    sim.kubelet();
    sim.settle();
    assert_eq!(sim.finished().as_deref(), Some("Failed"));
    assert_eq!(sim.status().failed, Some(1));
    assert_eq!(
        sim.events
            .iter()
            .filter(|e| *e == "DeadlineExceeded")
            .count(),
        1
    );
}

#[test]
fn simulated_suspend_and_resume_keep_the_counts() {
    let mut sim = Sim::new(json!({"completions": 3, "parallelism": 3}));
    sim.settle();
    sim.kubelet();
    sim.settle();
    sim.exit("work-0", 0);
    sim.settle();
    sim.job.spec.as_mut().unwrap().suspend = Some(true);
    sim.settle();
    sim.kubelet();
    sim.settle();
    assert_eq!(sim.active_names().len(), 0);
    let status = sim.status();
    assert_eq!(
        (status.succeeded, status.failed),
        (Some(1), Some(0)),
        "suspension does not count as failure"
    );
    sim.job.spec.as_mut().unwrap().suspend = Some(false);
    sim.settle();
    assert_eq!(sim.active_names().len(), 2);
    assert!(
        sim.events.contains(&"Suspended".to_string())
            && sim.events.contains(&"Resumed".to_string())
    );
}

#[test]
fn simulated_ttl_deletes_the_job_after_it_finished() {
    let mut sim = Sim::new(json!({"ttlSecondsAfterFinished": 30}));
    sim.settle();
    sim.kubelet();
    sim.exit("work-0", 0);
    let wait = sim.settle();
    assert_eq!(sim.finished().as_deref(), Some("Complete"));
    assert_eq!(wait, Some(Duration::from_secs(30)));
    sim.advance(30);
    sim.step();
    assert!(sim.job_deleted);
}

#[test]
fn a_settled_job_plans_nothing() {
    let mut sim = Sim::new(json!({"completions": 2, "parallelism": 2}));
    sim.settle();
    sim.kubelet();
    sim.settle();
    assert!(sim.step().is_empty());
    assert_eq!(sim.step().events, Vec::new());
    let _ = EventType::Normal;
}

#[test]
fn the_example_job_and_cronjob_manifests_are_admitted() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for file in [
        "job-indexed.yaml",
        "job-migration.yaml",
        "cronjob-web-dump.yaml",
    ] {
        let documents = crate::objects::parse::read_path(&examples.join(file), false)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(!documents.is_empty(), "{file}");
        for (i, document) in documents.iter().enumerate() {
            let context = CreateContext {
                uid: format!("example-{i}"),
                now: k8s_openapi::jiff::Timestamp::from_second(t0().timestamp()).unwrap(),
                random: 3,
            };
            let mut value = document.value.clone();
            value["metadata"]["namespace"] = json!("default");
            if let Err(e) = admit_create(&value, &context) {
                panic!("{file} document {i} is refused: {e}");
            }
        }
    }
}

/// Per-pass cost of the decision for big Jobs (bench/jobs/run.sh runs it in release).
#[test]
#[ignore = "benchmark: run by bench/jobs/run.sh"]
fn bench_plan_cost_for_large_jobs() {
    use std::time::Instant;
    for mode in ["NonIndexed", "Indexed"] {
        for (completions, running) in [(10, 5), (100, 20), (1000, 100), (10_000, 100)] {
            let done = completions - running;
            let status = if mode == "Indexed" {
                json!({"startTime": api_time(t0()), "succeeded": done, "completedIndexes": format!("0-{}", done - 1)})
            } else {
                json!({"startTime": api_time(t0()), "succeeded": done})
            };
            let base = with_status(
                job(
                    json!({"completionMode": mode, "completions": completions, "parallelism": running}),
                ),
                status,
            );
            let slot = |i: i32| {
                if mode == "Indexed" {
                    indexed(i)
                } else {
                    PodSlot::default()
                }
            };
            let mut pods: Vec<Pod> = (0..done)
                .map(|i| untracked(pod(&base, &format!("d{i}"), slot(i), Run::Exited(0), t0())))
                .collect();
            pods.extend((done..completions).map(|i| {
                pod(
                    &base,
                    &format!("r{i}"),
                    slot(i),
                    Run::Running { ready: true },
                    t0(),
                )
            }));
            let stored: Vec<Value> = pods
                .iter()
                .map(|p| serde_json::to_value(p).unwrap())
                .collect();

            let started = Instant::now();
            let mut passes = 0u32;
            while passes < 20 || started.elapsed().as_millis() < 500 {
                let decoded: Vec<Pod> = stored
                    .iter()
                    .map(|v| serde_json::from_value(v.clone()).unwrap())
                    .collect();
                let plan = plan(&base, &decoded, t0());
                assert!(plan.create.is_empty() && plan.delete.is_empty());
                passes += 1;
            }
            let with_decode = started.elapsed() / passes;
            let started = Instant::now();
            let mut passes = 0u32;
            while passes < 20 || started.elapsed().as_millis() < 500 {
                std::hint::black_box(plan(&base, &pods, t0()));
                passes += 1;
            }
            let plan_only = started.elapsed() / passes;
            println!(
                "job plan {mode:>10}, {completions:>6} pods ({running:>3} running): decide {:>9.1} µs, decode + decide {:>9.1} µs per pass",
                plan_only.as_secs_f64() * 1e6,
                with_decode.as_secs_f64() * 1e6
            );
        }
    }
}
