//! Jobs and CronJobs end to end, black box through the CLI: a real agent, real containers
//! from the busybox test image, real time (the CronJob tests wait for real minute
//! boundaries, so they take one to two minutes).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Agent, IMAGE, condition, tail};
use serde_json::Value;

/// A Job manifest: `spec` lines (indented by two) go under `spec:`, the container runs
/// `script` with `sh -c`.
fn job_yaml(name: &str, spec: &str, script: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\nspec:\n{spec}  template:\n    spec:\n      restartPolicy: Never\n      terminationGracePeriodSeconds: 2\n      containers:\n      - name: main\n        image: {IMAGE}\n        command: [\"sh\", \"-c\", {script:?}]\n"
    )
}

fn cron_job_yaml(name: &str, spec: &str, script: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: {name}\nspec:\n  schedule: \"* * * * *\"\n{spec}  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          terminationGracePeriodSeconds: 1\n          containers:\n          - name: main\n            image: {IMAGE}\n            command: [\"sh\", \"-c\", {script:?}]\n"
    )
}

fn items(list: Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

/// The pods of a Job (by the label every Job pod carries).
fn pods_of(agent: &Agent, job: &str) -> Vec<Value> {
    items(agent.json(&[
        "get",
        "pods",
        "-l",
        &format!("batch.kubernetes.io/job-name={job}"),
    ]))
}

fn job(agent: &Agent, name: &str) -> Option<Value> {
    let out = agent.berth(&["get", "job", name, "-o", "json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).expect("JSON"))
}

fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// A pod that still runs or may still run: not Succeeded or Failed.
fn is_live(pod: &Value) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed")
}

fn count(job: &Value, field: &str) -> i64 {
    job.pointer(&format!("/status/{field}"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// The reason of the Job's True condition `type_`.
fn reason(job: &Value, type_: &str) -> String {
    job.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c["type"] == type_ && c["status"] == "True")
        })
        .and_then(|c| c["reason"].as_str())
        .unwrap_or("")
        .to_string()
}

fn wait_for_job(agent: &Agent, name: &str, type_: &str, seconds: u64) -> Value {
    agent.wait_for(&format!("job {name} to be {type_}"), seconds, || {
        job(agent, name).filter(|j| condition(j, type_))
    })
}

/// The kubectl-style row of `get <kind> <name>`, split on whitespace.
fn row(agent: &Agent, kind: &str, name: &str) -> Vec<String> {
    let table = agent.ok(&["get", kind, name]);
    table
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn seconds_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

fn rfc3339_seconds(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .expect("RFC 3339 time")
        .timestamp()
}

#[test]
fn a_job_with_completions_4_and_parallelism_2_never_runs_more_than_2_pods_and_completes() {
    let agent = Agent::start();
    let out = agent.apply(&job_yaml(
        "four",
        "  completions: 4\n  parallelism: 2\n",
        "echo done by $(hostname); sleep 2",
    ));
    assert_eq!(out.trim(), "job.batch/four created");
    let mut most = 0;
    let done = agent.wait_for("job four to complete", 180, || {
        let live = pods_of(&agent, "four")
            .iter()
            .filter(|p| is_live(p))
            .count();
        assert!(live <= 2, "{live} pods of job four run at once");
        most = most.max(live);
        job(&agent, "four").filter(|j| condition(j, "Complete"))
    });
    assert_eq!(most, 2, "two pods ran side by side");
    assert_eq!(
        (
            count(&done, "succeeded"),
            count(&done, "failed"),
            count(&done, "active")
        ),
        (4, 0, 0)
    );
    assert!(done.pointer("/status/completionTime").is_some());
    let pods = pods_of(&agent, "four");
    assert_eq!(pods.len(), 4, "one pod per completion");
    assert!(pods.iter().all(|p| phase(p) == "Succeeded"));
    assert!(
        pods.iter().all(|p| p
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(|f| f.is_empty())),
        "counted pods are released"
    );
    assert_eq!(
        &row(&agent, "jobs", "four")[..3],
        ["four", "Complete", "4/4"]
    );
    let logs = agent.ok(&["logs", "job/four"]);
    assert!(logs.starts_with("done by four-"), "{logs}");
    let events = agent.ok(&["describe", "job", "four"]);
    assert!(
        events.contains("SuccessfulCreate") && events.contains("Completed"),
        "{events}"
    );
}

#[test]
fn an_always_failing_job_with_backoff_limit_1_fails_after_exactly_two_pods() {
    let agent = Agent::start();
    agent.apply(&job_yaml(
        "doomed",
        "  backoffLimit: 1\n",
        "echo trying; exit 3",
    ));
    let failed = wait_for_job(&agent, "doomed", "Failed", 120);
    assert_eq!(reason(&failed, "Failed"), "BackoffLimitExceeded");
    assert_eq!(count(&failed, "failed"), 2);
    // Nothing more is started afterwards.
    std::thread::sleep(Duration::from_secs(3));
    let pods = pods_of(&agent, "doomed");
    assert_eq!(pods.len(), 2, "exactly two pods: the first and one retry");
    assert!(pods.iter().all(|p| phase(p) == "Failed"));
    assert_eq!(row(&agent, "jobs", "doomed")[1], "Failed");
    let description = agent.ok(&["describe", "job", "doomed"]);
    assert!(
        description.contains("BackoffLimitExceeded")
            && description.contains("Job has reached the specified backoff limit"),
        "{description}"
    );
}

#[test]
fn active_deadline_seconds_stops_a_long_pod_and_fails_the_job() {
    let agent = Agent::start();
    agent.apply(&job_yaml(
        "slow",
        "  activeDeadlineSeconds: 4\n",
        "sleep 3600",
    ));
    let started = Instant::now();
    let failed = wait_for_job(&agent, "slow", "Failed", 90);
    assert_eq!(reason(&failed, "Failed"), "DeadlineExceeded");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "not before the deadline"
    );
    assert_eq!(count(&failed, "failed"), 1);
    assert_eq!(count(&failed, "active"), 0);
    // Failed is set once the pod has stopped; it is gone or ended.
    assert!(
        pods_of(&agent, "slow").iter().all(|p| !is_live(p)),
        "the long pod was stopped"
    );
}

#[test]
fn an_indexed_job_runs_each_index_once_with_its_index_and_hostname() {
    let agent = Agent::start();
    agent.apply(&job_yaml(
        "shard",
        "  completionMode: Indexed\n  completions: 3\n  parallelism: 2\n",
        "echo index=$JOB_COMPLETION_INDEX host=$(hostname); sleep 1",
    ));
    agent.ok(&[
        "wait",
        "--for=condition=complete",
        "job/shard",
        "--timeout=150s",
    ]);
    let done = job(&agent, "shard").expect("job shard");
    assert_eq!(done["status"]["completedIndexes"], "0-2");
    assert_eq!(count(&done, "succeeded"), 3);
    let pods = pods_of(&agent, "shard");
    let succeeded: Vec<&Value> = pods.iter().filter(|p| phase(p) == "Succeeded").collect();
    assert_eq!(succeeded.len(), 3, "one successful pod per index");
    let mut seen = BTreeSet::new();
    for pod in succeeded {
        let index = pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
            .as_str()
            .expect("index")
            .to_string();
        assert!(seen.insert(index.clone()), "index {index} ran twice");
        let name = pod["metadata"]["name"].as_str().unwrap();
        let log = agent.ok(&["logs", name]);
        assert_eq!(
            log.trim(),
            format!("index={index} host=shard-{index}"),
            "pod {name}"
        );
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["0", "1", "2"]);
    assert_eq!(
        &row(&agent, "jobs", "shard")[..3],
        ["shard", "Complete", "3/3"]
    );
}

#[test]
fn a_fail_job_rule_on_an_exit_code_stops_the_job_at_once() {
    let agent = Agent::start();
    let spec = "  completionMode: Indexed\n  completions: 2\n  parallelism: 2\n  backoffLimit: 6\n  podFailurePolicy:\n    rules:\n    - action: FailJob\n      onExitCodes:\n        containerName: main\n        operator: In\n        values: [42]\n";
    // Index 0 finds a fatal problem; index 1 would run for an hour.
    agent.apply(&job_yaml(
        "fatal",
        spec,
        "if [ \"$JOB_COMPLETION_INDEX\" = 0 ]; then sleep 1; exit 42; fi; sleep 3600",
    ));
    let started = Instant::now();
    let failed = wait_for_job(&agent, "fatal", "Failed", 90);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "no retries with back-off before failing"
    );
    assert_eq!(reason(&failed, "Failed"), "PodFailurePolicy");
    let message = failed["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Failed")
        .unwrap()["message"]
        .clone();
    assert!(
        message
            .as_str()
            .unwrap()
            .contains("failed with exit code 42 matching FailJob rule at index 0"),
        "{message}"
    );
    let pods = pods_of(&agent, "fatal");
    assert!(
        pods.len() <= 2,
        "no replacement pod was started: {}",
        pods.len()
    );
    assert!(
        pods.iter().all(|p| !is_live(p)),
        "the other pod was stopped"
    );
}

#[test]
fn a_finished_job_and_its_pods_go_after_ttl_seconds_after_finished() {
    let agent = Agent::start();
    agent.apply(&job_yaml(
        "brief",
        "  ttlSecondsAfterFinished: 3\n",
        "echo hi",
    ));
    wait_for_job(&agent, "brief", "Complete", 90);
    agent.wait_for("job brief to be removed", 60, || {
        job(&agent, "brief").is_none().then_some(())
    });
    agent.wait_for("the pods of job brief to be removed", 60, || {
        pods_of(&agent, "brief").is_empty().then_some(())
    });
}

#[test]
fn deleting_a_running_job_stops_and_removes_its_pods() {
    let agent = Agent::start();
    agent.apply(&job_yaml(
        "busy",
        "  parallelism: 2\n  completions: 2\n",
        "sleep 3600",
    ));
    agent.wait_for("two running pods", 90, || {
        (pods_of(&agent, "busy")
            .iter()
            .filter(|p| phase(p) == "Running")
            .count()
            == 2)
            .then_some(())
    });
    agent.ok(&["delete", "job", "busy"]);
    agent.wait_for("the pods of job busy to be removed", 60, || {
        pods_of(&agent, "busy").is_empty().then_some(())
    });

    // Orphaned pods keep running, and the Job no longer holds them.
    agent.apply(&job_yaml("left", "", "sleep 3600"));
    agent.wait_for("a running pod", 90, || {
        pods_of(&agent, "left")
            .into_iter()
            .find(|p| phase(p) == "Running")
    });
    agent.ok(&["delete", "job", "left", "--cascade=orphan"]);
    let pod = agent.wait_for("the orphaned pod to be released", 30, || {
        pods_of(&agent, "left").into_iter().find(|p| {
            p.pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_none_or(|f| f.is_empty())
        })
    });
    assert_eq!(phase(&pod), "Running");
    assert!(
        pod.pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .is_none_or(|o| o.is_empty())
    );
    let name = pod["metadata"]["name"].as_str().unwrap().to_string();
    agent.ok(&["delete", "pod", &name, "--grace-period=1"]);
}

#[test]
fn bad_job_and_cronjob_manifests_are_refused_with_clear_errors_and_nothing_is_created() {
    let agent = Agent::start();
    let long_name = "n".repeat(53);
    let cases = [
        (
            cron_job_yaml("bad-schedule", "", "true").replace("\"* * * * *\"", "\"61 * * * *\""),
            "end of range (61) above maximum (59): 61",
        ),
        (
            cron_job_yaml("bad-zone", "  timeZone: Mars/Olympus\n", "true"),
            "unknown time zone Mars/Olympus",
        ),
        (
            cron_job_yaml(&long_name, "", "true"),
            "must be no more than 52 characters",
        ),
        (
            job_yaml("always", "", "true").replace("restartPolicy: Never", "restartPolicy: Always"),
            "spec.template.spec.restartPolicy: Unsupported value: \"Always\"",
        ),
        (
            job_yaml("none", "  completions: 0\n", "true"),
            "spec.completions: Invalid value: 0: must be greater than or equal to 1",
        ),
        (
            job_yaml(
                &"i".repeat(62),
                "  completionMode: Indexed\n  completions: 10\n",
                "true",
            ),
            "will not able to create pod with invalid DNS label",
        ),
    ];
    for (manifest, message) in cases {
        let out = agent.berth_stdin(&["apply", "-f", "-"], &manifest);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "accepted:\n{manifest}");
        assert!(
            stderr.contains(message),
            "expected {message:?} in:\n{stderr}"
        );
    }
    assert!(items(agent.json(&["get", "jobs"])).is_empty());
    assert!(items(agent.json(&["get", "cronjobs"])).is_empty());
}

/// The Jobs of a CronJob, sorted by name (which sorts by scheduled minute).
fn jobs_of(agent: &Agent, cron_job: &str) -> Vec<Value> {
    let mut jobs: Vec<Value> = items(agent.json(&["get", "jobs"]))
        .into_iter()
        .filter(|j| {
            j.pointer("/metadata/ownerReferences/0/name")
                .and_then(Value::as_str)
                == Some(cron_job)
        })
        .collect();
    jobs.sort_by_key(|j| j["metadata"]["name"].as_str().unwrap_or("").to_string());
    jobs
}

fn scheduled_minute(job: &Value) -> i64 {
    let name = job["metadata"]["name"].as_str().unwrap();
    name.rsplit('-')
        .next()
        .unwrap()
        .parse()
        .expect("<cronjob>-<minute>")
}

#[test]
fn a_one_minute_cronjob_fires_at_each_minute_boundary_once_across_an_agent_restart() {
    let mut agent = Agent::start();
    agent.apply(&cron_job_yaml("tick", "", "echo tick"));
    let first = agent.wait_for("the first job of cronjob tick", 75, || {
        jobs_of(&agent, "tick").into_iter().next()
    });
    let minute = scheduled_minute(&first);
    let created = rfc3339_seconds(first["metadata"]["creationTimestamp"].as_str().unwrap());
    assert!(
        (0..=5).contains(&(created - minute * 60)),
        "created {}s after its minute boundary",
        created - minute * 60
    );
    let stamp = first["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
        .as_str()
        .unwrap();
    assert_eq!(rfc3339_seconds(stamp), minute * 60);

    // A restart within the same minute must not fire that minute again.
    agent.restart();
    std::thread::sleep(Duration::from_secs(2));
    let after_restart = jobs_of(&agent, "tick");
    if seconds_now() / 60 == minute {
        assert_eq!(
            after_restart.len(),
            1,
            "restart fired the schedule again: {after_restart:?}"
        );
    }
    let second = agent.wait_for("the second job of cronjob tick", 80, || {
        jobs_of(&agent, "tick")
            .into_iter()
            .find(|j| scheduled_minute(j) == minute + 1)
    });
    assert_eq!(scheduled_minute(&second), minute + 1);
    std::thread::sleep(Duration::from_secs(3));
    let minutes: Vec<i64> = jobs_of(&agent, "tick")
        .iter()
        .map(scheduled_minute)
        .collect();
    let expected: Vec<i64> = (minute..=seconds_now() / 60).collect();
    assert_eq!(minutes, expected, "exactly one job per minute boundary");
    let cron_job = agent.json(&["get", "cronjob", "tick"]);
    let last = rfc3339_seconds(cron_job["status"]["lastScheduleTime"].as_str().unwrap());
    assert_eq!(last, *expected.last().unwrap() * 60);
    let cj_row = row(&agent, "cj", "tick");
    assert_eq!(
        &cj_row[..6],
        ["tick", "*", "*", "*", "*", "*"],
        "{cj_row:?}"
    );

    // Run it now by hand.
    assert_eq!(
        agent
            .ok(&["create", "job", "tick-now", "--from=cronjob/tick"])
            .trim(),
        "job.batch/tick-now created"
    );
    agent.ok(&[
        "wait",
        "--for=condition=complete",
        "job/tick-now",
        "--timeout=90s",
    ]);
    assert_eq!(agent.ok(&["logs", "job/tick-now"]).trim(), "tick");
    let manual = job(&agent, "tick-now").unwrap();
    assert_eq!(
        manual["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"],
        "manual"
    );
    assert_eq!(manual["metadata"]["ownerReferences"][0]["kind"], "CronJob");
}

#[test]
fn forbid_skips_a_run_while_one_is_active_and_replace_replaces_it() {
    let agent = Agent::start();
    agent.apply(&cron_job_yaml(
        "forbid",
        "  concurrencyPolicy: Forbid\n",
        "sleep 3600",
    ));
    agent.apply(&cron_job_yaml(
        "replace",
        "  concurrencyPolicy: Replace\n",
        "sleep 3600",
    ));
    let first = agent.wait_for("the first runs of both cronjobs", 75, || {
        let f = jobs_of(&agent, "forbid");
        let r = jobs_of(&agent, "replace");
        (!f.is_empty() && !r.is_empty()).then(|| {
            (
                scheduled_minute(&f[0]),
                r[0]["metadata"]["name"].as_str().unwrap().to_string(),
            )
        })
    });
    let (forbid_minute, replaced) = first;
    // The next minute: Replace deletes its running job and starts a new one.
    let replacement = agent.wait_for("cronjob replace to start its second run", 80, || {
        jobs_of(&agent, "replace")
            .into_iter()
            .find(|j| j["metadata"]["name"].as_str() != Some(replaced.as_str()))
    });
    agent.wait_for("the replaced job to be deleted", 60, || {
        job(&agent, &replaced).is_none().then_some(())
    });
    let replace = agent.json(&["get", "cronjob", "replace"]);
    let active: Vec<&str> = replace["status"]["active"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(active, [replacement["metadata"]["name"].as_str().unwrap()]);

    // Forbid kept its one running job and skipped the new time.
    std::thread::sleep(Duration::from_secs(3));
    let forbid_jobs = jobs_of(&agent, "forbid");
    assert_eq!(
        forbid_jobs.len(),
        1,
        "forbid started a second job while one runs"
    );
    assert_eq!(scheduled_minute(&forbid_jobs[0]), forbid_minute);
    let description = agent.ok(&["describe", "cronjob", "forbid"]);
    assert!(
        description.contains("JobAlreadyActive"),
        "the skip is reported:\n{description}\n{}",
        tail(&agent.log(), 20)
    );
    assert!(
        agent
            .ok(&["describe", "cronjob", "replace"])
            .contains("SuccessfulDelete")
    );
}

/// The example end to end: pod networking and cluster DNS (`web-0.web` from a Job pod).
#[test]
fn the_example_cronjob_saves_the_page_of_web_0_into_its_own_volume() {
    let agent = Agent::start();
    let examples = common::workspace().join("examples");
    for file in ["statefulset-web.yaml", "cronjob-web-dump.yaml"] {
        agent.ok(&["apply", "-f", examples.join(file).to_str().unwrap()]);
    }
    agent.wait_for_pod_ready("web-0", 120);
    // Run the scheduled dump now rather than waiting for the next five-minute boundary.
    agent.ok(&["create", "job", "web-dump-now", "--from=cronjob/web-dump"]);
    agent.ok(&[
        "wait",
        "--for=condition=complete",
        "job/web-dump-now",
        "--timeout=120s",
    ]);
    let log = agent.ok(&["logs", "job/web-dump-now"]);
    assert!(
        log.starts_with("saved ") && log.contains(" bytes to /dumps/web-0-"),
        "{log}"
    );
    let bytes: usize = log.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(
        bytes,
        "hello from web-0\n".len(),
        "the dump holds web-0's page: {log}"
    );
    let cron_job = agent.ok(&["get", "cronjob", "web-dump"]);
    assert!(
        cron_job.contains("*/5 * * * *") && cron_job.contains("Etc/UTC"),
        "{cron_job}"
    );
}
