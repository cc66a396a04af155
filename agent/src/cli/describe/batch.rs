//! `describe job` and `describe cronjob`, laid out as kubectl lays them out, with the Job's
//! conditions (so a failure says why) and a CronJob's next scheduled time.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::super::table::{human_duration, parse_time, selector_string, str_at};
use super::{
    Doc, container, controlled_by, labels_and_annotations, multi_map, or_default, time_text, volume,
};
use crate::objects::schedule;

fn int(o: &Value, pointer: &str) -> Option<i64> {
    o.pointer(pointer).and_then(Value::as_i64)
}

fn int_or_unset(o: &Value, pointer: &str) -> String {
    int(o, pointer)
        .map(|n| n.to_string())
        .unwrap_or_else(|| "<unset>".into())
}

/// The `Pod Template:` section of a Job or CronJob.
fn pod_template(d: &mut Doc, template: Option<&Value>) {
    let empty = Value::Null;
    let template = template.unwrap_or(&empty);
    d.text(0, "Pod Template:");
    d.field(2, "Labels", multi_map(template.pointer("/metadata/labels")));
    if template
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .is_some_and(|a| !a.is_empty())
    {
        d.field(
            2,
            "Annotations",
            multi_map(template.pointer("/metadata/annotations")),
        );
    }
    if let Some(init) = template
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .filter(|i| !i.is_empty())
    {
        d.text(2, "Init Containers:");
        for c in init {
            container(d, c, &[]);
        }
    }
    d.text(2, "Containers:");
    for c in template
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        container(d, c, &[]);
    }
    let volumes = template
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if volumes.is_empty() {
        d.field(2, "Volumes", "<none>");
    } else {
        d.text(2, "Volumes:");
        for v in &volumes {
            d.text(3, format!("{}:", str_at(v, "/name")));
            volume(d, v);
        }
    }
    d.field(
        2,
        "Node-Selectors",
        multi_map(template.pointer("/spec/nodeSelector")),
    );
}

/// `describe job`.
pub(super) fn job(d: &mut Doc, o: &Value, now: DateTime<Utc>) {
    d.field(0, "Selector", selector_string(o.pointer("/spec/selector")));
    labels_and_annotations(d, o);
    if let Some(owner) = controlled_by(o) {
        d.field(0, "Controlled By", owner);
    }
    d.field(
        0,
        "Parallelism",
        int(o, "/spec/parallelism").unwrap_or(1).to_string(),
    );
    d.field(0, "Completions", int_or_unset(o, "/spec/completions"));
    d.field(
        0,
        "Completion Mode",
        or_default(str_at(o, "/spec/completionMode"), "NonIndexed"),
    );
    d.field(
        0,
        "Suspend",
        if o.pointer("/spec/suspend") == Some(&Value::Bool(true)) {
            "true"
        } else {
            "false"
        },
    );
    d.field(
        0,
        "Backoff Limit",
        int(o, "/spec/backoffLimit").unwrap_or(6).to_string(),
    );
    if let Some(limit) = int(o, "/spec/backoffLimitPerIndex") {
        d.field(0, "Backoff Limit Per Index", limit.to_string());
        d.field(
            0,
            "Max Failed Indexes",
            int_or_unset(o, "/spec/maxFailedIndexes"),
        );
    }
    if let Some(ttl) = int(o, "/spec/ttlSecondsAfterFinished") {
        d.field(0, "TTL Seconds After Finished", ttl.to_string());
    }
    let start = o.pointer("/status/startTime").and_then(Value::as_str);
    if let Some(start) = start {
        d.field(0, "Start Time", time_text(start));
    }
    if let Some(done) = o.pointer("/status/completionTime").and_then(Value::as_str) {
        d.field(0, "Completed At", time_text(done));
        if let (Some(s), Some(e)) = (start.and_then(parse_time), parse_time(done)) {
            d.field(0, "Duration", human_duration(e - s));
        }
    } else if let Some(s) = start.and_then(parse_time) {
        d.field(0, "Running For", human_duration(now - s));
    }
    if let Some(deadline) = int(o, "/spec/activeDeadlineSeconds") {
        d.field(0, "Active Deadline Seconds", format!("{deadline}s"));
    }
    let mut pods = format!(
        "{} Active ({} Ready) / {} Succeeded / {} Failed",
        int(o, "/status/active").unwrap_or(0),
        int(o, "/status/ready").unwrap_or(0),
        int(o, "/status/succeeded").unwrap_or(0),
        int(o, "/status/failed").unwrap_or(0)
    );
    if let Some(terminating) = int(o, "/status/terminating").filter(|t| *t > 0) {
        pods.push_str(&format!(" / {terminating} Terminating"));
    }
    d.field(0, "Pods Statuses", pods);
    if str_at(o, "/spec/completionMode") == "Indexed" {
        d.field(
            0,
            "Completed Indexes",
            or_default(str_at(o, "/status/completedIndexes"), "<none>"),
        );
        if o.pointer("/spec/backoffLimitPerIndex").is_some() {
            d.field(
                0,
                "Failed Indexes",
                or_default(str_at(o, "/status/failedIndexes"), "<none>"),
            );
        }
    }
    pod_template(d, o.pointer("/spec/template"));
    conditions(d, o, now);
}

/// The Job's conditions as an aligned table (why it ended, when).
fn conditions(d: &mut Doc, o: &Value, now: DateTime<Utc>) {
    let Some(conditions) = o
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
    else {
        return;
    };
    let rows: Vec<[String; 5]> = conditions
        .iter()
        .map(|c| {
            let age = c
                .pointer("/lastTransitionTime")
                .and_then(Value::as_str)
                .and_then(parse_time)
                .map(|t| human_duration(now - t))
                .unwrap_or_default();
            [
                str_at(c, "/type"),
                str_at(c, "/status"),
                str_at(c, "/reason"),
                &age,
                str_at(c, "/message"),
            ]
            .map(str::to_owned)
        })
        .collect();
    let headers = ["Type", "Status", "Reason", "Age", "Message"];
    let dashes = ["----", "------", "------", "---", "-------"];
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.len());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i < 4 {
                text.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            } else {
                text.push_str(cell);
            }
        }
        text.trim_end().to_owned()
    };
    d.text(0, "Conditions:");
    d.text(2, line(headers));
    d.text(2, line(dashes));
    for row in &rows {
        d.text(2, line([&row[0], &row[1], &row[2], &row[3], &row[4]]));
    }
}

/// `describe cronjob`.
pub(super) fn cron_job(d: &mut Doc, o: &Value, now: DateTime<Utc>) {
    labels_and_annotations(d, o);
    let schedule_text = str_at(o, "/spec/schedule");
    let zone = o.pointer("/spec/timeZone").and_then(Value::as_str);
    d.field(0, "Schedule", schedule_text);
    if let Some(zone) = zone {
        d.field(0, "Time Zone", zone);
    }
    d.field(
        0,
        "Concurrency Policy",
        or_default(str_at(o, "/spec/concurrencyPolicy"), "Allow"),
    );
    d.field(
        0,
        "Suspend",
        if o.pointer("/spec/suspend") == Some(&Value::Bool(true)) {
            "True"
        } else {
            "False"
        },
    );
    d.field(
        0,
        "Successful Job History Limit",
        int(o, "/spec/successfulJobsHistoryLimit")
            .unwrap_or(3)
            .to_string(),
    );
    d.field(
        0,
        "Failed Job History Limit",
        int(o, "/spec/failedJobsHistoryLimit")
            .unwrap_or(1)
            .to_string(),
    );
    d.field(
        0,
        "Starting Deadline Seconds",
        int(o, "/spec/startingDeadlineSeconds")
            .map(|s| format!("{s}s"))
            .unwrap_or_else(|| "<unset>".into()),
    );
    let selector = o
        .pointer("/spec/jobTemplate/spec/selector")
        .filter(|s| !s.is_null());
    d.field(
        0,
        "Selector",
        selector
            .map(|s| selector_string(Some(s)))
            .unwrap_or_else(|| "<unset>".into()),
    );
    d.field(
        0,
        "Parallelism",
        int_or_unset(o, "/spec/jobTemplate/spec/parallelism"),
    );
    d.field(
        0,
        "Completions",
        int_or_unset(o, "/spec/jobTemplate/spec/completions"),
    );
    if let Some(deadline) = int(o, "/spec/jobTemplate/spec/activeDeadlineSeconds") {
        d.field(0, "Active Deadline Seconds", format!("{deadline}s"));
    }
    pod_template(d, o.pointer("/spec/jobTemplate/spec/template"));
    let last = o
        .pointer("/status/lastScheduleTime")
        .and_then(Value::as_str)
        .map(time_text)
        .unwrap_or_else(|| "<unset>".into());
    d.field(0, "Last Schedule Time", last);
    if let Some(success) = o
        .pointer("/status/lastSuccessfulTime")
        .and_then(Value::as_str)
    {
        d.field(0, "Last Successful Time", time_text(success));
    }
    let suspended = o.pointer("/spec/suspend") == Some(&Value::Bool(true));
    let next = match schedule::parse(schedule_text, zone) {
        Ok(_) if suspended => "<suspended>".to_owned(),
        Ok(parsed) => match parsed.next_after(now) {
            Some(t) => format!(
                "{} (in {})",
                next_time_text(t, parsed.time_zone()),
                human_duration(t - now)
            ),
            None => "<none>".to_owned(),
        },
        Err(e) => format!("<invalid: {e}>"),
    };
    d.field(0, "Next Schedule Time", next);
    let active: Vec<&str> = o
        .pointer("/status/active")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("name").and_then(Value::as_str))
        .collect();
    d.field(
        0,
        "Active Jobs",
        if active.is_empty() {
            "<none>".to_owned()
        } else {
            active.join(", ")
        },
    );
}

fn next_time_text(t: DateTime<Utc>, zone: chrono_tz::Tz) -> String {
    t.with_timezone(&zone)
        .format("%a, %d %b %Y %H:%M:%S %z")
        .to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::render;
    use crate::objects::Kind;

    fn now() -> chrono::DateTime<chrono::Utc> {
        super::parse_time("2024-05-01T10:02:30Z").unwrap()
    }

    fn assert_has(text: &str, wanted: &[&str]) {
        for want in wanted {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }

    #[test]
    fn a_job_description_shows_counts_times_indexes_and_why_it_ended() {
        let job = json!({
            "metadata": {"name": "shard", "namespace": "lab", "uid": "u",
                "ownerReferences": [{"kind": "CronJob", "name": "nightly", "controller": true}]},
            "spec": {"parallelism": 2, "completions": 4, "completionMode": "Indexed", "backoffLimit": 1, "suspend": false,
                "activeDeadlineSeconds": 600,
                "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
                "template": {"metadata": {"labels": {"app": "shard"}},
                    "spec": {"containers": [{"name": "work", "image": "berth.local/busybox:1", "command": ["sh", "-c", "true"]}]}}},
            "status": {"startTime": "2024-05-01T10:00:00Z", "active": 0, "ready": 0, "succeeded": 3, "failed": 2,
                "completedIndexes": "0,2-3",
                "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit", "lastTransitionTime": "2024-05-01T10:02:00Z"}]}
        });
        let text = render(Kind::Job, &job, &[], now());
        assert_has(
            &text,
            &[
                "Selector:                 batch.kubernetes.io/controller-uid=u\n",
                "Controlled By:            CronJob/nightly\n",
                "Parallelism:              2\n",
                "Completions:              4\n",
                "Completion Mode:          Indexed\n",
                "Backoff Limit:            1\n",
                "Start Time:               Wed, 01 May 2024 10:00:00 +0000\n",
                "Active Deadline Seconds:  600s\n",
                "Pods Statuses:            0 Active (0 Ready) / 3 Succeeded / 2 Failed\n",
                "Completed Indexes:        0,2-3\n",
                "Pod Template:\n",
                "  work:\n",
                "    Image:      berth.local/busybox:1\n",
                "Conditions:\n  Type    Status  Reason                Age  Message\n  ----    ------  ------                ---  -------\n  Failed  True    BackoffLimitExceeded  30s  Job has reached the specified backoff limit\n",
                "Events:  <none>\n",
            ],
        );
    }

    #[test]
    fn a_cronjob_description_shows_its_schedule_and_runs() {
        let cron_job = json!({
            "metadata": {"name": "dump", "namespace": "db"},
            "spec": {"schedule": "*/5 * * * *", "timeZone": "Europe/Berlin", "concurrencyPolicy": "Forbid", "suspend": false,
                "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
                "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "dump", "image": "busybox"}]}}}}},
            "status": {"lastScheduleTime": "2024-05-01T10:00:00Z", "active": [{"name": "dump-28575960"}]}
        });
        let text = render(Kind::CronJob, &cron_job, &[], now());
        assert_has(
            &text,
            &[
                "Schedule:                      */5 * * * *\n",
                "Time Zone:                     Europe/Berlin\n",
                "Concurrency Policy:            Forbid\n",
                "Suspend:                       False\n",
                "Successful Job History Limit:  3\n",
                "Failed Job History Limit:      1\n",
                "Starting Deadline Seconds:     <unset>\n",
                "Last Schedule Time:  Wed, 01 May 2024 10:00:00 +0000\n",
                "Next Schedule Time:  Wed, 01 May 2024 12:05:00 +0200 (in 2m30s)\n",
                "Active Jobs:         dump-28575960\n",
            ],
        );
    }
}
