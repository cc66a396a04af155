//! A pod's status as the kubelet reports it, computed from what is observed (pure):
//! phase, conditions with transition times, container statuses with state, lastState,
//! ready, started and restartCount, IPs and start time.

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{Value, json};

use super::observed::{ContainerRun, Observed, RunState};
use super::plan::{deletion_time, restart_policy, restart_time, should_restart};

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `berth://<id>`, as containerd's `containerd://<id>`.
pub fn container_id(run: &ContainerRun) -> String {
    format!("berth://{}", run.id)
}

fn terminated(run: &ContainerRun) -> Value {
    match &run.state {
        RunState::Exited {
            exit_code,
            signal,
            reason,
            started_at,
            finished_at,
        } => {
            let mut t = json!({
                "exitCode": exit_code,
                "reason": reason,
                "startedAt": time(*started_at),
                "finishedAt": time(*finished_at),
                "containerID": container_id(run),
            });
            if let Some(sig) = signal {
                t["signal"] = json!(sig);
            }
            t
        }
        RunState::Unknown {
            started_at,
            noticed_at,
        } => json!({
            // kubelet's words for a container whose end was not seen.
            "exitCode": 137,
            "reason": "ContainerStatusUnknown",
            "message": "The container could not be located when the pod was terminated",
            "startedAt": started_at.map(time),
            "finishedAt": time(*noticed_at),
            "containerID": container_id(run),
        }),
        RunState::Running { .. } => Value::Null,
    }
}

/// The status of one container (init or app).
fn container_status(
    pod: &Pod,
    c: &Container,
    observed: &Observed,
    initializing: bool,
    now: DateTime<Utc>,
) -> Value {
    let current = observed.current(&c.name);
    let previous = observed.previous(&c.name);
    let probes = observed.probes.get(&c.name).cloned().unwrap_or_default();
    let policy = restart_policy(pod);
    let mut status = json!({
        "name": c.name,
        "image": c.image.clone().unwrap_or_default(),
        "imageID": current.map(|r| r.image_id.clone()).unwrap_or_default(),
        "ready": false,
        "started": false,
        "restartCount": current.map(|r| r.attempt).unwrap_or(0),
        "state": {},
        "lastState": {},
    });
    if let Some(run) = current {
        status["containerID"] = json!(container_id(run));
    }
    let waiting = |reason: &str, message: Option<String>| {
        let mut w = json!({"reason": reason});
        if let Some(m) = message {
            w["message"] = json!(m);
        }
        json!({"waiting": w})
    };
    match current {
        None => {
            status["state"] = match (&observed.claim_refusal, observed.failures.get(&c.name)) {
                (Some(r), _) => waiting(&r.reason, Some(r.message.clone())),
                (None, Some(f)) => waiting(&f.reason, Some(f.message.clone())),
                (None, None) if initializing => waiting("PodInitializing", None),
                (None, None) => waiting("ContainerCreating", None),
            };
        }
        Some(run) => match &run.state {
            RunState::Running { started_at } => {
                status["state"] = json!({"running": {"startedAt": time(*started_at)}});
                let started = probes.started;
                status["started"] = json!(started);
                status["ready"] = json!(started && probes.ready);
                if let Some(prev) = previous {
                    status["lastState"] = json!({"terminated": terminated(prev)});
                }
            }
            state => {
                let restarting = should_restart(policy, state) && deletion_time(pod).is_none();
                let backing_off =
                    restarting && restart_time(observed, &c.name, state).is_some_and(|at| now < at);
                if let Some(r) = observed.claim_refusal.as_ref().filter(|_| restarting) {
                    status["state"] = waiting(&r.reason, Some(r.message.clone()));
                    status["lastState"] = json!({"terminated": terminated(run)});
                } else if let Some(f) = observed.failures.get(&c.name).filter(|_| restarting) {
                    status["state"] = waiting(&f.reason, Some(f.message.clone()));
                    status["lastState"] = json!({"terminated": terminated(run)});
                } else if backing_off {
                    let delay = observed
                        .backoff
                        .get(&c.name)
                        .copied()
                        .unwrap_or_default()
                        .delay();
                    let pod_name = pod.metadata.name.as_deref().unwrap_or("");
                    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
                    let uid = pod.metadata.uid.as_deref().unwrap_or("");
                    status["state"] = waiting(
                        "CrashLoopBackOff",
                        Some(format!(
                            "back-off {}s restarting failed container={} pod={pod_name}_{ns}({uid})",
                            delay.num_seconds(),
                            c.name
                        )),
                    );
                    status["lastState"] = json!({"terminated": terminated(run)});
                } else {
                    status["state"] = json!({"terminated": terminated(run)});
                    if let Some(prev) = previous {
                        status["lastState"] = json!({"terminated": terminated(prev)});
                    }
                }
            }
        },
    }
    status
}

/// Counts for the phase, as kubelet's getPhase counts container statuses.
#[derive(Default)]
struct Counts {
    running: usize,
    waiting: usize,
    stopped: usize,
    succeeded: usize,
}

fn count(statuses: &[Value]) -> Counts {
    let mut c = Counts::default();
    for s in statuses {
        if s.pointer("/state/running").is_some() {
            c.running += 1;
        } else if let Some(t) = s.pointer("/state/terminated") {
            c.stopped += 1;
            if t["exitCode"] == 0 {
                c.succeeded += 1;
            }
        } else if s.pointer("/lastState/terminated").is_some() {
            c.stopped += 1;
        } else {
            c.waiting += 1;
        }
    }
    c
}

/// Upserts a condition, keeping its lastTransitionTime unless its status changed.
fn set_condition(
    conditions: &mut Vec<Value>,
    old: &[Value],
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    now: DateTime<Utc>,
) {
    let status = if ok { "True" } else { "False" };
    let previous = old.iter().find(|c| c["type"] == type_);
    let transition = match previous {
        Some(p) if p["status"] == status => p["lastTransitionTime"].clone(),
        _ => json!(time(now)),
    };
    let mut c = json!({"type": type_, "status": status, "lastProbeTime": null, "lastTransitionTime": transition});
    if let Some(r) = reason.filter(|_| !ok) {
        c["reason"] = json!(r);
    }
    conditions.push(c);
}

/// The pod's status. `old` is the status last published (for transition times and the
/// scheduler's PodScheduled condition).
pub fn pod_status(pod: &Pod, observed: &Observed, old: &Value, now: DateTime<Utc>) -> Value {
    let spec = pod.spec.as_ref();
    let inits: &[Container] = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or(&[]);
    let apps: &[Container] = spec.map(|s| s.containers.as_slice()).unwrap_or(&[]);
    let policy = restart_policy(pod);

    let init_statuses: Vec<Value> = inits
        .iter()
        .map(|c| container_status(pod, c, observed, false, now))
        .collect();
    let initialized = inits.iter().all(|c| {
        observed
            .current(&c.name)
            .is_some_and(|r| r.state.succeeded())
    });
    let init_failed = inits.iter().any(|c| {
        observed
            .current(&c.name)
            .is_some_and(|r| !r.state.is_running() && !r.state.succeeded())
    });
    let statuses: Vec<Value> = apps
        .iter()
        .map(|c| container_status(pod, c, observed, !initialized, now))
        .collect();

    let counts = count(&statuses);
    let deadline_exceeded = super::plan::active_deadline(pod, observed).is_some_and(|d| now >= d);
    let mut phase = if !initialized && !(init_failed && policy == "Never") {
        "Pending"
    } else if init_failed && policy == "Never" {
        "Failed"
    } else if counts.waiting > 0 {
        "Pending"
    } else if counts.running > 0 {
        "Running"
    } else if counts.stopped > 0 {
        if policy == "Always" {
            "Running"
        } else if counts.stopped == counts.succeeded {
            "Succeeded"
        } else if policy == "Never" {
            "Failed"
        } else {
            "Running"
        }
    } else {
        "Pending"
    };
    // A phase once terminal stays terminal.
    let old_phase = old.get("phase").and_then(Value::as_str).unwrap_or("");
    if old_phase == "Succeeded" || old_phase == "Failed" {
        phase = if old_phase == "Succeeded" {
            "Succeeded"
        } else {
            "Failed"
        };
    }
    let mut reason = None;
    let mut message = None;
    if deadline_exceeded && phase != "Succeeded" {
        phase = "Failed";
        reason = Some("DeadlineExceeded");
        message = Some(format!(
            "Pod was active on the node longer than the specified deadline ({}s)",
            spec.and_then(|s| s.active_deadline_seconds).unwrap_or(0)
        ));
    } else if let Some(r) = observed
        .claim_refusal
        .as_ref()
        .filter(|_| phase != "Succeeded" && phase != "Failed")
    {
        // A pod its claims refuse says why on the pod itself (`get pod`, `describe pod`).
        reason = Some(r.reason.as_str());
        message = Some(r.message.clone());
    } else if old_phase == "Failed" {
        reason = old.get("reason").and_then(Value::as_str);
        message = old
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string);
    }

    let containers_ready = !statuses.is_empty() && statuses.iter().all(|s| s["ready"] == true);
    let terminal = phase == "Succeeded" || phase == "Failed";
    let old_conditions: Vec<Value> = old
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut conditions = Vec::new();
    set_condition(
        &mut conditions,
        &old_conditions,
        "PodReadyToStartContainers",
        observed.sandbox_ready,
        None,
        now,
    );
    set_condition(
        &mut conditions,
        &old_conditions,
        "Initialized",
        initialized,
        Some("ContainersNotInitialized"),
        now,
    );
    set_condition(
        &mut conditions,
        &old_conditions,
        "Ready",
        containers_ready && !terminal,
        Some(if terminal {
            "PodCompleted"
        } else {
            "ContainersNotReady"
        }),
        now,
    );
    set_condition(
        &mut conditions,
        &old_conditions,
        "ContainersReady",
        containers_ready && !terminal,
        Some(if terminal {
            "PodCompleted"
        } else {
            "ContainersNotReady"
        }),
        now,
    );
    // PodScheduled is the scheduler's; keep it as published.
    if let Some(scheduled) = old_conditions.iter().find(|c| c["type"] == "PodScheduled") {
        conditions.push(scheduled.clone());
    } else {
        set_condition(
            &mut conditions,
            &old_conditions,
            "PodScheduled",
            true,
            None,
            now,
        );
    }

    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "containerStatuses": statuses,
        "qosClass": qos_class(pod),
    });
    if !inits.is_empty() {
        status["initContainerStatuses"] = json!(init_statuses);
    }
    if let Some(ip) = &observed.host_ip {
        status["hostIP"] = json!(ip);
        status["hostIPs"] = json!([{"ip": ip}]);
    }
    if let Some(ip) = &observed.pod_ip {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
    }
    if let Some(start) = observed.start_time.or_else(|| {
        old.get("startTime")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
    }) {
        status["startTime"] = json!(time(start));
    }
    if let Some(r) = reason {
        status["reason"] = json!(r);
    }
    if let Some(m) = message {
        status["message"] = json!(m);
    }
    status
}

/// Kubernetes' QoS class from requests and limits.
pub fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = pod.spec.as_ref() else {
        return "BestEffort";
    };
    let all: Vec<&Container> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    let has_any = all.iter().any(|c| {
        c.resources.as_ref().is_some_and(|r| {
            r.limits.as_ref().is_some_and(|l| !l.is_empty())
                || r.requests.as_ref().is_some_and(|q| !q.is_empty())
        })
    });
    if !has_any {
        return "BestEffort";
    }
    let guaranteed = all.iter().all(|c| {
        let Some(r) = c.resources.as_ref() else {
            return false;
        };
        ["cpu", "memory"].iter().all(|name| {
            let limit = r.limits.as_ref().and_then(|l| l.get(*name));
            let request = r.requests.as_ref().and_then(|q| q.get(*name)).or(limit);
            limit.is_some() && request == limit
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::observed::{Backoff, ProbeResults, StartFailure};

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn pod(policy: &str, inits: bool) -> Pod {
        let mut v = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-0", "namespace": "default", "uid": "u1"},
            "spec": {"restartPolicy": policy, "containers": [{"name": "app", "image": "busybox:1"}]}
        });
        if inits {
            v["spec"]["initContainers"] = json!([{"name": "init", "image": "busybox:1"}]);
        }
        serde_json::from_value(v).unwrap()
    }

    fn run(name: &str, attempt: u32, state: RunState) -> ContainerRun {
        ContainerRun {
            id: format!("{name}{attempt}"),
            name: name.into(),
            attempt,
            init: false,
            state,
            image: "busybox:1".into(),
            image_id: "sha256:ab".into(),
        }
    }

    fn exited(code: i32, finished: i64) -> RunState {
        RunState::Exited {
            exit_code: code,
            signal: None,
            reason: if code == 0 {
                "Completed".into()
            } else {
                "Error".into()
            },
            started_at: t(finished - 1),
            finished_at: t(finished),
        }
    }

    fn observed(runs: Vec<ContainerRun>) -> Observed {
        let mut o = Observed {
            sandbox_ready: true,
            start_time: Some(t(0)),
            ..Observed::default()
        };
        for r in runs {
            o.runs.entry(r.name.clone()).or_default().push(r);
        }
        o
    }

    fn condition(status: &Value, type_: &str) -> String {
        status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == type_)
            .unwrap()["status"]
            .as_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn a_running_ready_container_makes_the_pod_running_and_ready() {
        let mut o = observed(vec![run("app", 0, RunState::Running { started_at: t(1) })]);
        o.probes.insert(
            "app".into(),
            ProbeResults {
                started: true,
                ready: true,
                failed: None,
            },
        );
        o.pod_ip = Some("10.244.0.5".into());
        let s = pod_status(&pod("Always", false), &o, &Value::Null, t(2));
        assert_eq!(s["phase"], "Running");
        assert_eq!(condition(&s, "Ready"), "True");
        assert_eq!(s["containerStatuses"][0]["ready"], true);
        assert_eq!(s["containerStatuses"][0]["containerID"], "berth://app0");
        assert_eq!(s["podIP"], "10.244.0.5");
    }

    #[test]
    fn phases_follow_kubelet() {
        let cases: Vec<(&str, Vec<ContainerRun>, &str)> = vec![
            ("Always", vec![], "Pending"),
            ("Always", vec![run("app", 0, exited(0, 5))], "Running"),
            ("OnFailure", vec![run("app", 0, exited(0, 5))], "Succeeded"),
            ("OnFailure", vec![run("app", 0, exited(1, 5))], "Running"),
            ("Never", vec![run("app", 0, exited(1, 5))], "Failed"),
            ("Never", vec![run("app", 0, exited(0, 5))], "Succeeded"),
        ];
        for (policy, runs, want) in cases {
            let s = pod_status(
                &pod(policy, false),
                &observed(runs.clone()),
                &Value::Null,
                t(100),
            );
            assert_eq!(s["phase"], want, "{policy} {runs:?}");
        }
    }

    #[test]
    fn a_container_in_back_off_is_waiting_in_crash_loop_with_its_last_termination() {
        let mut o = observed(vec![
            run("app", 0, exited(1, 1)),
            run("app", 1, exited(1, 50)),
        ]);
        o.backoff.insert("app".into(), Backoff { count: 1 });
        let s = pod_status(&pod("Always", false), &o, &Value::Null, t(55));
        let c = &s["containerStatuses"][0];
        assert_eq!(c["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(
            c["state"]["waiting"]["message"],
            "back-off 10s restarting failed container=app pod=web-0_default(u1)"
        );
        assert_eq!(c["lastState"]["terminated"]["exitCode"], 1);
        assert_eq!(c["restartCount"], 1);
        assert_eq!(s["phase"], "Running");
    }

    #[test]
    fn waiting_reasons_show_why_a_container_has_not_started() {
        let mut o = observed(vec![]);
        o.failures.insert(
            "app".into(),
            StartFailure {
                reason: "ErrImageNeverPull".into(),
                message: "image \"x\" is not present".into(),
                retry_at: t(10),
            },
        );
        let s = pod_status(&pod("Always", false), &o, &Value::Null, t(1));
        assert_eq!(
            s["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ErrImageNeverPull"
        );
        let s = pod_status(&pod("Always", true), &observed(vec![]), &Value::Null, t(1));
        assert_eq!(
            s["containerStatuses"][0]["state"]["waiting"]["reason"],
            "PodInitializing"
        );
        assert_eq!(
            s["initContainerStatuses"][0]["state"]["waiting"]["reason"],
            "ContainerCreating"
        );
        assert_eq!(condition(&s, "Initialized"), "False");
    }

    #[test]
    fn a_pod_its_claims_refuse_says_why_on_the_pod_and_its_containers() {
        let mut o = observed(vec![]);
        o.sandbox_ready = false;
        o.claim_refusal = Some(crate::kubelet::observed::ClaimRefusal {
            reason: "StaleAssignment".into(),
            message: "claim directory d was used by a newer assignment".into(),
        });
        let s = pod_status(&pod("Always", true), &o, &Value::Null, t(1));
        assert_eq!(s["phase"], "Pending");
        assert_eq!(s["reason"], "StaleAssignment");
        assert!(s["message"].as_str().unwrap().contains("newer assignment"));
        for key in ["initContainerStatuses", "containerStatuses"] {
            let w = &s[key][0]["state"]["waiting"];
            assert_eq!(w["reason"], "StaleAssignment", "{key}");
            assert!(w["message"].as_str().unwrap().contains("newer assignment"));
        }
        // Once a check passes, the reason goes away.
        o.claim_refusal = None;
        let s = pod_status(&pod("Always", false), &o, &s, t(2));
        assert!(s.get("reason").is_none(), "{s}");
        assert_eq!(
            s["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ContainerCreating"
        );
    }

    #[test]
    fn transition_times_change_only_when_a_condition_changes() {
        let mut o = observed(vec![run("app", 0, RunState::Running { started_at: t(1) })]);
        o.probes.insert(
            "app".into(),
            ProbeResults {
                started: true,
                ready: false,
                failed: None,
            },
        );
        let first = pod_status(&pod("Always", false), &o, &Value::Null, t(2));
        let again = pod_status(&pod("Always", false), &o, &first, t(9));
        let ready_time = |s: &Value| {
            s["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == "Ready")
                .unwrap()["lastTransitionTime"]
                .clone()
        };
        assert_eq!(ready_time(&first), ready_time(&again));
        o.probes.get_mut("app").unwrap().ready = true;
        let ready = pod_status(&pod("Always", false), &o, &again, t(9));
        assert_eq!(ready_time(&ready), json!(time(t(9))));
    }

    #[test]
    fn the_deadline_fails_the_pod() {
        let mut p = pod("Always", false);
        p.spec.as_mut().unwrap().active_deadline_seconds = Some(30);
        let o = observed(vec![run("app", 0, exited(137, 31))]);
        let s = pod_status(&p, &o, &Value::Null, t(31));
        assert_eq!(s["phase"], "Failed");
        assert_eq!(s["reason"], "DeadlineExceeded");
    }

    #[test]
    fn qos_classes() {
        let mut p = pod("Always", false);
        assert_eq!(qos_class(&p), "BestEffort");
        let c = &mut p.spec.as_mut().unwrap().containers[0];
        c.resources =
            Some(serde_json::from_value(json!({"limits": {"cpu": "1", "memory": "1Gi"}})).unwrap());
        assert_eq!(qos_class(&p), "Guaranteed");
        let c = &mut p.spec.as_mut().unwrap().containers[0];
        c.resources = Some(serde_json::from_value(json!({"requests": {"cpu": "100m"}})).unwrap());
        assert_eq!(qos_class(&p), "Burstable");
    }
}
