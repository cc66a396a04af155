//! What to do next for a pod on this node: a pure function of the pod, what is observed and
//! the time (kubelet's computePodActions). The pod worker carries the actions out and calls
//! this again whenever anything changes.

use chrono::{DateTime, Duration, Utc};
use k8s_openapi::api::core::v1::{Container, Pod};

use super::observed::{Observed, RunState};

/// Why a container is being killed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KillReason {
    /// The pod is being deleted.
    PodDeleted,
    /// The liveness or startup probe failed (message from the probe).
    ProbeFailed(String),
    /// `activeDeadlineSeconds` passed.
    DeadlineExceeded,
    /// This host fenced itself: its stateful pods stop until its heartbeat commits again.
    Fenced,
}

/// One step for the pod worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Check the owner files of the pod's claim directories and record its assignment
    /// (before anything of the pod is set up or started).
    OwnClaims,
    /// Create the namespaces, cgroup and volumes.
    CreateSandbox,
    /// Start a run of a container (`attempt` is its restart count).
    StartContainer {
        name: String,
        init: bool,
        attempt: u32,
    },
    /// Stop a running container: preStop, stop signal, SIGKILL after `grace`.
    KillContainer {
        name: String,
        reason: KillReason,
        grace: Duration,
    },
    /// Remove an old run's container (only the current and previous runs are kept).
    RemoveRun { id: String },
    /// Remove the sandbox and every container of the pod (logs stay).
    TeardownSandbox,
    /// The pod was deleted and everything is stopped: remove it from the cluster state.
    Finalize,
}

/// The actions to take now, and when to look again if nothing else happens first (a back-off
/// or a deadline ending).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub wake_at: Option<DateTime<Utc>>,
}

impl Plan {
    fn wake(&mut self, at: DateTime<Utc>) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }
}

/// The restart policy, defaulted.
pub fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

/// Is the pod being deleted?
pub fn deletion_time(pod: &Pod) -> Option<DateTime<Utc>> {
    pod.metadata
        .deletion_timestamp
        .as_ref()
        .and_then(|t| DateTime::from_timestamp(t.0.as_second(), 0))
}

/// The time `activeDeadlineSeconds` ends, counted from the pod's start on this node.
pub fn active_deadline(pod: &Pod, observed: &Observed) -> Option<DateTime<Utc>> {
    let seconds = pod.spec.as_ref()?.active_deadline_seconds?;
    Some(observed.start_time? + Duration::seconds(seconds))
}

/// Would a container whose run ended like this be started again, by the pod's policy?
pub fn should_restart(policy: &str, state: &RunState) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => !state.succeeded(),
        _ => true,
    }
}

fn init_containers(pod: &Pod) -> &[Container] {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or(&[])
}

fn app_containers(pod: &Pod) -> &[Container] {
    pod.spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or(&[])
}

/// Does the pod mount any claim?
pub fn has_claims(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|vs| vs.iter().any(|v| v.persistent_volume_claim.is_some()))
}

/// Has the pod reached a phase it never leaves (all containers ended and none restarts)?
pub fn is_finished(pod: &Pod, observed: &Observed) -> bool {
    let policy = restart_policy(pod);
    if policy == "Never" {
        // An init container that failed ends the pod.
        for c in init_containers(pod) {
            match observed.current(&c.name) {
                Some(run) if !run.state.is_running() && !run.state.succeeded() => return true,
                Some(run) if run.state.succeeded() => continue,
                _ => break,
            }
        }
    }
    let apps = app_containers(pod);
    !apps.is_empty()
        && apps.iter().all(|c| match observed.current(&c.name) {
            Some(run) => !run.state.is_running() && !should_restart(policy, &run.state),
            None => false,
        })
}

/// Computes what to do next.
pub fn plan(pod: &Pod, observed: &Observed, now: DateTime<Utc>) -> Plan {
    let mut plan = Plan::default();
    let deleting = deletion_time(pod);
    let deadline = active_deadline(pod, observed);
    let deadline_passed = deadline.is_some_and(|d| now >= d);

    if deleting.is_some() || deadline_passed || is_finished(pod, observed) {
        let grace = match deleting {
            // As the kubelet: the grace the deletion asked for, counted from now. (The
            // deletion timestamp has whole seconds only, too coarse for a 2 s grace.)
            Some(at) => match pod.metadata.deletion_grace_period_seconds {
                Some(seconds) => Duration::seconds(seconds.max(0)),
                None => (at - now).max(Duration::zero()),
            },
            None => Duration::seconds(
                pod.spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
                    .unwrap_or(30),
            ),
        };
        let reason = if deleting.is_some() {
            KillReason::PodDeleted
        } else {
            KillReason::DeadlineExceeded
        };
        let mut running = false;
        for (name, runs) in &observed.runs {
            if runs.last().is_some_and(|r| r.state.is_running()) {
                running = true;
                if !observed.stopping.contains(name) {
                    plan.actions.push(Action::KillContainer {
                        name: name.clone(),
                        reason: reason.clone(),
                        grace,
                    });
                }
            }
        }
        if !running && observed.stopping.is_empty() {
            if observed.sandbox_ready {
                plan.actions.push(Action::TeardownSandbox);
            } else if deleting.is_some() {
                plan.actions.push(Action::Finalize);
            }
        }
        return plan;
    }

    // Fenced: stop the containers (at most 5 s of grace: the cluster may consider the
    // identity movable soon after), keep the sandbox and the claims, start nothing.
    if observed.fenced {
        let tgp = pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        let grace = Duration::seconds(tgp.clamp(0, 5));
        for (name, runs) in &observed.runs {
            if runs.last().is_some_and(|r| r.state.is_running())
                && !observed.stopping.contains(name)
            {
                plan.actions.push(Action::KillContainer {
                    name: name.clone(),
                    reason: KillReason::Fenced,
                    grace,
                });
            }
        }
        return plan;
    }

    if let Some(d) = deadline {
        plan.wake(d);
    }
    // A stale copy of the pod starts nothing: the claims' owner files are checked first, and
    // after a refusal only again at `claims_retry_at` (containers already running are left to
    // the fence and to deletion).
    if !observed.claims_owned && has_claims(pod) {
        match observed.claims_retry_at {
            Some(at) if now < at => plan.wake(at),
            _ => plan.actions.push(Action::OwnClaims),
        }
        return plan;
    }
    if !observed.sandbox_ready {
        match observed.sandbox_retry_at {
            Some(at) if now < at => plan.wake(at),
            _ => plan.actions.push(Action::CreateSandbox),
        }
        return plan;
    }

    // Old runs beyond the previous one are removed.
    for runs in observed.runs.values() {
        if runs.len() > 2 {
            for old in &runs[..runs.len() - 2] {
                if !old.state.is_running() {
                    plan.actions.push(Action::RemoveRun { id: old.id.clone() });
                }
            }
        }
    }

    let policy = restart_policy(pod);
    // Init containers, one at a time, in order.
    for c in init_containers(pod) {
        match observed.current(&c.name) {
            None => {
                start_or_wait(&mut plan, observed, &c.name, true, 0, now);
                return plan;
            }
            Some(run) if run.state.is_running() => {
                if let Some(failed) = observed.probes.get(&c.name).and_then(|p| p.failed.clone()) {
                    kill_for_probe(&mut plan, observed, pod, &c.name, failed);
                }
                return plan;
            }
            Some(run) if run.state.succeeded() => continue,
            Some(run) => {
                // Failed: with Never the pod has failed (handled above by is_finished).
                let attempt = run.attempt + 1;
                restart_after_backoff(&mut plan, observed, &c.name, true, attempt, &run.state, now);
                return plan;
            }
        }
    }

    for c in app_containers(pod) {
        match observed.current(&c.name) {
            None => start_or_wait(&mut plan, observed, &c.name, false, 0, now),
            Some(run) if run.state.is_running() => {
                if let Some(failed) = observed.probes.get(&c.name).and_then(|p| p.failed.clone()) {
                    kill_for_probe(&mut plan, observed, pod, &c.name, failed);
                }
            }
            Some(run) => {
                if should_restart(policy, &run.state) {
                    let attempt = run.attempt + 1;
                    restart_after_backoff(
                        &mut plan, observed, &c.name, false, attempt, &run.state, now,
                    );
                }
            }
        }
    }
    plan
}

fn kill_for_probe(plan: &mut Plan, observed: &Observed, pod: &Pod, name: &str, message: String) {
    if observed.stopping.contains(name) {
        return;
    }
    let grace = Duration::seconds(
        pod.spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30),
    );
    plan.actions.push(Action::KillContainer {
        name: name.to_string(),
        reason: KillReason::ProbeFailed(message),
        grace,
    });
}

/// A first start, unless an earlier attempt failed to start and its retry time is not here.
fn start_or_wait(
    plan: &mut Plan,
    observed: &Observed,
    name: &str,
    init: bool,
    attempt: u32,
    now: DateTime<Utc>,
) {
    if let Some(failure) = observed.failures.get(name) {
        if now < failure.retry_at {
            plan.wake(failure.retry_at);
            return;
        }
    }
    plan.actions.push(Action::StartContainer {
        name: name.to_string(),
        init,
        attempt,
    });
}

/// The time a container that ended may start again, by its back-off.
pub fn restart_time(observed: &Observed, name: &str, state: &RunState) -> Option<DateTime<Utc>> {
    let finished = state.finished_at()?;
    let delay = observed
        .backoff
        .get(name)
        .copied()
        .unwrap_or_default()
        .delay();
    Some(finished + delay)
}

fn restart_after_backoff(
    plan: &mut Plan,
    observed: &Observed,
    name: &str,
    init: bool,
    attempt: u32,
    state: &RunState,
    now: DateTime<Utc>,
) {
    if observed.stopping.contains(name) {
        return;
    }
    match restart_time(observed, name, state) {
        Some(at) if now < at => plan.wake(at),
        _ => start_or_wait(plan, observed, name, init, attempt, now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::observed::{Backoff, ContainerRun, ProbeResults, StartFailure};
    use serde_json::json;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn pod(extra: serde_json::Value) -> Pod {
        let mut v = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "uid": "u"},
            "spec": {"containers": [{"name": "app", "image": "busybox"}], "restartPolicy": "Always"}
        });
        crate::api::patch::merge_patch(&mut v, &extra);
        serde_json::from_value(v).unwrap()
    }

    fn running(name: &str, attempt: u32, init: bool) -> ContainerRun {
        ContainerRun {
            id: format!("{name}-{attempt}"),
            name: name.into(),
            attempt,
            init,
            state: RunState::Running { started_at: t(0) },
            image: "busybox".into(),
            image_id: "sha256:x".into(),
        }
    }

    fn exited(name: &str, attempt: u32, init: bool, code: i32, finished: i64) -> ContainerRun {
        ContainerRun {
            state: RunState::Exited {
                exit_code: code,
                signal: None,
                reason: if code == 0 {
                    "Completed".into()
                } else {
                    "Error".into()
                },
                started_at: t(finished - 1),
                finished_at: t(finished),
            },
            ..running(name, attempt, init)
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

    fn start(name: &str, init: bool, attempt: u32) -> Action {
        Action::StartContainer {
            name: name.into(),
            init,
            attempt,
        }
    }

    #[test]
    fn a_failed_sandbox_is_retried_at_its_time() {
        let p = pod(json!({}));
        let failed = Observed {
            sandbox_error: Some("configmap \"c\" not found".into()),
            sandbox_retry_at: Some(t(5)),
            ..Observed::default()
        };
        let early = plan(&p, &failed, t(1));
        assert!(early.actions.is_empty());
        assert_eq!(early.wake_at, Some(t(5)));
        assert_eq!(plan(&p, &failed, t(5)).actions, vec![Action::CreateSandbox]);
    }

    #[test]
    fn a_new_pod_gets_a_sandbox_then_its_containers() {
        let p = pod(json!({}));
        let fresh = Observed::default();
        assert_eq!(plan(&p, &fresh, t(0)).actions, vec![Action::CreateSandbox]);
        assert_eq!(
            plan(&p, &observed(vec![]), t(0)).actions,
            vec![start("app", false, 0)]
        );
    }

    #[test]
    fn init_containers_run_one_at_a_time_in_order_before_app_containers() {
        let p = pod(
            json!({"spec": {"initContainers": [{"name": "i1", "image": "x"}, {"name": "i2", "image": "x"}]}}),
        );
        let cases = vec![
            (vec![], vec![start("i1", true, 0)]),
            (vec![running("i1", 0, true)], vec![]),
            (
                vec![exited("i1", 0, true, 0, 5)],
                vec![start("i2", true, 0)],
            ),
            (
                vec![exited("i1", 0, true, 0, 5), exited("i2", 0, true, 0, 6)],
                vec![start("app", false, 0)],
            ),
            // A failed init container is restarted (policy Always) before anything else.
            (
                vec![exited("i1", 0, true, 1, 5)],
                vec![start("i1", true, 1)],
            ),
        ];
        for (runs, want) in cases {
            let o = observed(runs.clone());
            assert_eq!(plan(&p, &o, t(100)).actions, want, "{runs:?}");
        }
    }

    #[test]
    fn a_failed_init_container_with_restart_policy_never_fails_the_pod() {
        let p = pod(
            json!({"spec": {"restartPolicy": "Never", "initContainers": [{"name": "i1", "image": "x"}]}}),
        );
        let o = observed(vec![exited("i1", 0, true, 2, 5)]);
        assert!(is_finished(&p, &o));
        assert_eq!(plan(&p, &o, t(10)).actions, vec![Action::TeardownSandbox]);
    }

    #[test]
    fn restart_policy_decides_what_restarts() {
        let cases = [
            ("Always", 0, true),
            ("Always", 1, true),
            ("OnFailure", 0, false),
            ("OnFailure", 1, true),
            ("Never", 1, false),
        ];
        for (policy, code, restarts) in cases {
            let p = pod(json!({"spec": {"restartPolicy": policy}}));
            let o = observed(vec![exited("app", 0, false, code, 5)]);
            let actions = plan(&p, &o, t(100)).actions;
            assert_eq!(
                actions.contains(&start("app", false, 1)),
                restarts,
                "{policy} exit {code}: {actions:?}"
            );
        }
    }

    #[test]
    fn a_crashing_container_waits_out_its_back_off() {
        let p = pod(json!({}));
        let mut o = observed(vec![
            exited("app", 0, false, 0, 0),
            exited("app", 1, false, 1, 50),
        ]);
        o.backoff.insert("app".into(), Backoff { count: 2 });
        // 20 s back-off from t=50.
        let early = plan(&p, &o, t(60));
        assert!(early.actions.is_empty(), "{early:?}");
        assert_eq!(early.wake_at, Some(t(70)));
        assert_eq!(plan(&p, &o, t(70)).actions, vec![start("app", false, 2)]);
    }

    #[test]
    fn a_failed_liveness_probe_kills_the_container() {
        let p = pod(json!({"spec": {"terminationGracePeriodSeconds": 5}}));
        let mut o = observed(vec![running("app", 0, false)]);
        o.probes.insert(
            "app".into(),
            ProbeResults {
                started: true,
                ready: false,
                failed: Some("Liveness probe failed".into()),
            },
        );
        assert_eq!(
            plan(&p, &o, t(1)).actions,
            vec![Action::KillContainer {
                name: "app".into(),
                reason: KillReason::ProbeFailed("Liveness probe failed".into()),
                grace: Duration::seconds(5)
            }]
        );
        o.stopping.insert("app".into());
        assert!(
            plan(&p, &o, t(1)).actions.is_empty(),
            "a container already stopping is not killed twice"
        );
    }

    #[test]
    fn a_deleted_pod_is_stopped_torn_down_then_finalized() {
        let p = pod(json!({"metadata": {"deletionTimestamp": "2027-01-15T08:00:30Z"}}));
        let now = DateTime::parse_from_rfc3339("2027-01-15T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let o = observed(vec![running("app", 0, false)]);
        assert_eq!(
            plan(&p, &o, now).actions,
            vec![Action::KillContainer {
                name: "app".into(),
                reason: KillReason::PodDeleted,
                grace: Duration::seconds(30)
            }]
        );
        let stopped = observed(vec![exited("app", 0, false, 0, 5)]);
        assert_eq!(
            plan(&p, &stopped, now).actions,
            vec![Action::TeardownSandbox]
        );
        let torn_down = Observed {
            sandbox_ready: false,
            ..stopped
        };
        assert_eq!(plan(&p, &torn_down, now).actions, vec![Action::Finalize]);
    }

    #[test]
    fn the_active_deadline_kills_running_containers() {
        let p =
            pod(json!({"spec": {"activeDeadlineSeconds": 30, "terminationGracePeriodSeconds": 3}}));
        let o = observed(vec![running("app", 0, false)]);
        let before = plan(&p, &o, t(10));
        assert!(before.actions.is_empty());
        assert_eq!(before.wake_at, Some(t(30)));
        assert_eq!(
            plan(&p, &o, t(31)).actions,
            vec![Action::KillContainer {
                name: "app".into(),
                reason: KillReason::DeadlineExceeded,
                grace: Duration::seconds(3)
            }]
        );
    }

    #[test]
    fn a_start_failure_is_retried_at_its_time() {
        let p = pod(json!({}));
        let mut o = observed(vec![]);
        o.failures.insert(
            "app".into(),
            StartFailure {
                reason: "CreateContainerConfigError".into(),
                message: "configmap \"c\" not found".into(),
                retry_at: t(20),
            },
        );
        let early = plan(&p, &o, t(10));
        assert!(early.actions.is_empty());
        assert_eq!(early.wake_at, Some(t(20)));
        assert_eq!(plan(&p, &o, t(20)).actions, vec![start("app", false, 0)]);
    }

    #[test]
    fn only_the_current_and_previous_runs_are_kept() {
        let p = pod(json!({}));
        let o = observed(vec![
            exited("app", 0, false, 1, 1),
            exited("app", 1, false, 1, 2),
            running("app", 2, false),
        ]);
        assert_eq!(
            plan(&p, &o, t(100)).actions,
            vec![Action::RemoveRun { id: "app-0".into() }]
        );
    }

    #[test]
    fn a_fenced_pod_stops_its_running_containers_and_starts_none() {
        let p = pod(json!({"spec": {"terminationGracePeriodSeconds": 30}}));
        let mut o = observed(vec![running("app", 0, false)]);
        o.fenced = true;
        assert_eq!(
            plan(&p, &o, t(1)).actions,
            vec![Action::KillContainer {
                name: "app".into(),
                reason: KillReason::Fenced,
                grace: Duration::seconds(5)
            }]
        );
        o.stopping.insert("app".into());
        assert!(
            plan(&p, &o, t(1)).actions.is_empty(),
            "a container already stopping is not killed twice"
        );
        // Stopped, it is not started again while the fence stands, and starts when it falls.
        let mut o = observed(vec![exited("app", 0, false, 137, 1)]);
        o.fenced = true;
        assert!(plan(&p, &o, t(60)).actions.is_empty());
        o.fenced = false;
        assert!(
            !plan(&p, &o, t(60)).actions.is_empty(),
            "restarted once the fence is lifted"
        );
    }

    #[test]
    fn a_pod_with_claims_checks_their_owners_before_anything_starts() {
        let p = pod(
            json!({"spec": {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-p"}}]}}),
        );
        // Before the sandbox, and before containers in an adopted empty sandbox.
        assert_eq!(
            plan(&p, &Observed::default(), t(0)).actions,
            vec![Action::OwnClaims]
        );
        assert_eq!(
            plan(&p, &observed(vec![]), t(0)).actions,
            vec![Action::OwnClaims]
        );
        // Once owned: the sandbox, then the containers.
        let owned = Observed {
            claims_owned: true,
            ..Observed::default()
        };
        assert_eq!(plan(&p, &owned, t(0)).actions, vec![Action::CreateSandbox]);
        let mut ready = observed(vec![]);
        ready.claims_owned = true;
        assert_eq!(plan(&p, &ready, t(0)).actions, vec![start("app", false, 0)]);
        // A crashed container restarts without a new check.
        let mut crashed = observed(vec![exited("app", 0, false, 1, 1)]);
        crashed.claims_owned = true;
        assert_eq!(
            plan(&p, &crashed, t(5)).actions,
            vec![start("app", false, 1)]
        );
        // A pod without claims has nothing to check.
        assert_eq!(
            plan(&pod(json!({})), &Observed::default(), t(0)).actions,
            vec![Action::CreateSandbox]
        );
    }

    #[test]
    fn a_refused_pod_starts_nothing_and_looks_again_only_at_its_time() {
        let p = pod(
            json!({"spec": {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-p"}}]}}),
        );
        let refused = Observed {
            claim_refusal: Some(crate::kubelet::observed::ClaimRefusal {
                reason: "StaleAssignment".into(),
                message: "stale".into(),
            }),
            claims_retry_at: Some(t(10)),
            ..Observed::default()
        };
        let early = plan(&p, &refused, t(1));
        assert!(early.actions.is_empty(), "{early:?}");
        assert_eq!(early.wake_at, Some(t(10)));
        assert_eq!(plan(&p, &refused, t(10)).actions, vec![Action::OwnClaims]);
        // Deleting a refused pod needs no check: it is finalized.
        let deleted = pod(
            json!({"metadata": {"deletionTimestamp": "2027-01-15T08:00:00Z"},
            "spec": {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-p"}}]}}),
        );
        assert_eq!(
            plan(&deleted, &refused, t(1)).actions,
            vec![Action::Finalize]
        );
    }
}
