//! What the kubelet knows about a pod on this node: its container runs, probe results,
//! back-off and start failures. Plain data, filled by the pod worker and read by the pure
//! [`super::plan`] and [`super::status`] functions.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

/// How one run of a container is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// Started and not known to have ended.
    Running { started_at: DateTime<Utc> },
    /// Ended; the shim recorded how.
    Exited {
        exit_code: i32,
        signal: Option<i32>,
        /// `Completed`, `Error` or `OOMKilled`, as Kubernetes reports them.
        reason: String,
        started_at: DateTime<Utc>,
        finished_at: DateTime<Utc>,
    },
    /// The shim is gone without an exit record (killed, or the host rebooted): the outcome is
    /// unknown and is never taken for success.
    Unknown {
        started_at: Option<DateTime<Utc>>,
        noticed_at: DateTime<Utc>,
    },
}

impl RunState {
    pub fn is_running(&self) -> bool {
        matches!(self, RunState::Running { .. })
    }

    /// Did this run end successfully (exit 0, no signal)?
    pub fn succeeded(&self) -> bool {
        matches!(
            self,
            RunState::Exited {
                exit_code: 0,
                signal: None,
                ..
            }
        )
    }

    pub fn finished_at(&self) -> Option<DateTime<Utc>> {
        match self {
            RunState::Exited { finished_at, .. } => Some(*finished_at),
            RunState::Unknown { noticed_at, .. } => Some(*noticed_at),
            RunState::Running { .. } => None,
        }
    }

    pub fn started_at(&self) -> Option<DateTime<Utc>> {
        match self {
            RunState::Running { started_at } | RunState::Exited { started_at, .. } => {
                Some(*started_at)
            }
            RunState::Unknown { started_at, .. } => *started_at,
        }
    }
}

/// One run (attempt) of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRun {
    /// The runtime's container id.
    pub id: String,
    /// The container's name in the pod spec.
    pub name: String,
    /// 0 for the first run, then one more per restart: the restartCount it was started with.
    pub attempt: u32,
    pub init: bool,
    pub state: RunState,
    /// The image reference it runs and the image id (digest).
    pub image: String,
    pub image_id: String,
}

/// A container the worker could not start, and why (shown as the waiting reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartFailure {
    /// `CreateContainerConfigError`, `ErrImageNeverPull`, `ErrImagePull`, `RunContainerError`...
    pub reason: String,
    pub message: String,
    /// When to try again (configuration errors are retried as the referenced objects may
    /// appear; they are not counted as restarts).
    pub retry_at: DateTime<Utc>,
}

/// Why the pod's claim directories refuse this pod (see [`crate::claims::epoch`]): shown as
/// the pod's reason and its containers' waiting reason until a check passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRefusal {
    /// `StaleAssignment`, `InvalidAssignmentEpoch` or `ClaimOwnerError`.
    pub reason: String,
    /// What was found and how to resolve it.
    pub message: String,
}

/// Probe results of the current run of a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeResults {
    /// The startup probe succeeded (or there is none).
    pub started: bool,
    /// The readiness probe's last verdict (true without a readiness probe once started).
    pub ready: bool,
    /// The liveness probe (or the startup probe) failed its threshold: the run must be killed.
    pub failed: Option<String>,
}

impl ProbeResults {
    /// The verdicts for a run that has just started: started unless a startup probe has to
    /// pass first, ready only if no probe has to pass first.
    pub fn at_start(startup_probe: bool, readiness_probe: bool) -> ProbeResults {
        ProbeResults {
            started: !startup_probe,
            ready: !startup_probe && !readiness_probe,
            failed: None,
        }
    }

    /// The verdicts for a running container adopted after an agent restart. `published` is
    /// the container's status as last published: its `started` and `ready` are kept (so
    /// readiness does not flap) only if it describes this very run (same `containerID`).
    /// Otherwise the agent stopped before it published this run, or published an earlier
    /// one: the run counts as just started and its probes decide from here.
    pub fn adopted(
        startup_probe: bool,
        readiness_probe: bool,
        published: Option<&serde_json::Value>,
        container_id: &str,
    ) -> ProbeResults {
        let fresh = ProbeResults::at_start(startup_probe, readiness_probe);
        match published.filter(|c| c["containerID"] == container_id) {
            Some(c) => ProbeResults {
                started: fresh.started || c["started"] == true,
                ready: fresh.ready || c["ready"] == true,
                failed: None,
            },
            None => fresh,
        }
    }

    /// The startup probe passed: the run is started, and ready at once if it has no readiness
    /// probe.
    pub fn startup_passed(&mut self, readiness_probe: bool) {
        self.started = true;
        if !readiness_probe {
            self.ready = true;
        }
    }
}

/// Crash-loop back-off of one container: kubelet's 10 s doubling to 5 minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backoff {
    /// Restarts delayed so far in this streak.
    pub count: u32,
}

/// kubelet's initial and maximum restart delays, and how long a run must last to reset them.
pub const BACKOFF_INITIAL: Duration = Duration::seconds(10);
pub const BACKOFF_MAX: Duration = Duration::seconds(300);
pub const BACKOFF_RESET_AFTER: Duration = Duration::minutes(10);

impl Backoff {
    /// The delay before the next restart: none for the first restart of a streak, then
    /// 10 s, 20 s, 40 s ... up to 300 s.
    pub fn delay(&self) -> Duration {
        if self.count == 0 {
            return Duration::zero();
        }
        let exp = (self.count - 1).min(16);
        let delay = BACKOFF_INITIAL * 2i32.pow(exp);
        delay.min(BACKOFF_MAX)
    }
}

/// Everything observed about one pod on this node.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The sandbox (namespaces, cgroup, volumes) exists.
    pub sandbox_ready: bool,
    /// The sandbox could not be created; why (shown in events and status).
    pub sandbox_error: Option<String>,
    /// When to try creating the sandbox again after a failure.
    pub sandbox_retry_at: Option<DateTime<Utc>>,
    /// Runs known for each container, oldest first (the last is the current one).
    pub runs: BTreeMap<String, Vec<ContainerRun>>,
    pub probes: BTreeMap<String, ProbeResults>,
    pub failures: BTreeMap<String, StartFailure>,
    pub backoff: BTreeMap<String, Backoff>,
    /// Containers being stopped right now (by name).
    pub stopping: std::collections::BTreeSet<String>,
    /// When the pod's first container started on this node (status.startTime).
    pub start_time: Option<DateTime<Utc>>,
    pub pod_ip: Option<String>,
    pub host_ip: Option<String>,
    /// This host fenced itself (it cannot commit its heartbeat) and this pod is one it must
    /// not run meanwhile (a StatefulSet pod or a pod with claims).
    pub fenced: bool,
    /// The owner files of the pod's claim directories record this pod's assignment: checked
    /// since the worker began (or the host's fence last rose). Containers start only then.
    pub claims_owned: bool,
    /// The last check refused the pod, and why.
    pub claim_refusal: Option<ClaimRefusal>,
    /// When to check the claims again after a refusal.
    pub claims_retry_at: Option<DateTime<Utc>>,
}

impl Observed {
    /// The current (latest) run of a container.
    pub fn current(&self, name: &str) -> Option<&ContainerRun> {
        self.runs.get(name).and_then(|runs| runs.last())
    }

    /// The run before the current one (for `lastState` and `logs --previous`).
    pub fn previous(&self, name: &str) -> Option<&ContainerRun> {
        self.runs
            .get(name)
            .and_then(|runs| runs.len().checked_sub(2).map(|i| &runs[i]))
    }

    /// Is any container of the pod running?
    pub fn any_running(&self) -> bool {
        self.runs
            .values()
            .filter_map(|runs| runs.last())
            .any(|r| r.state.is_running())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adopted_run_keeps_published_verdicts_only_if_they_are_its_own() {
        use serde_json::json;
        let id = "berth://uid-main-1";
        let mine = |started: bool, ready: bool| json!({"name": "main", "containerID": id, "started": started, "ready": ready});
        let earlier = json!({"name": "main", "containerID": "berth://uid-main-0", "started": true, "ready": true});
        let waiting = json!({"name": "main", "started": false, "ready": false, "state": {"waiting": {"reason": "ContainerCreating"}}});
        let r = |started, ready| ProbeResults {
            started,
            ready,
            failed: None,
        };
        // (startup probe, readiness probe, published status, expected verdicts, case)
        let table = [
            (
                false,
                true,
                Some(mine(true, true)),
                r(true, true),
                "published ready: stays ready",
            ),
            (
                false,
                true,
                Some(mine(true, false)),
                r(true, false),
                "published not ready: the probe decides",
            ),
            (
                true,
                true,
                Some(mine(false, false)),
                r(false, false),
                "startup probe still pending",
            ),
            (
                true,
                false,
                Some(mine(true, true)),
                r(true, true),
                "startup passed, no readiness probe",
            ),
            // The agent stopped before it published this run: as if just started.
            (
                false,
                true,
                None,
                r(true, false),
                "nothing published, readiness probe decides",
            ),
            (
                false,
                true,
                Some(waiting.clone()),
                r(true, false),
                "published as creating",
            ),
            (
                false,
                false,
                Some(waiting),
                r(true, true),
                "no probes: ready at once",
            ),
            (
                true,
                true,
                None,
                r(false, false),
                "nothing published, startup probe first",
            ),
            // The published status is of the run before: none of its verdicts carry over.
            (
                false,
                true,
                Some(earlier.clone()),
                r(true, false),
                "earlier run was ready",
            ),
            (
                true,
                false,
                Some(earlier),
                r(false, false),
                "earlier run had started",
            ),
        ];
        for (startup, readiness, published, want, case) in table {
            assert_eq!(
                ProbeResults::adopted(startup, readiness, published.as_ref(), id),
                want,
                "{case}"
            );
        }
    }

    #[test]
    fn a_passed_startup_probe_makes_a_run_without_readiness_probe_ready() {
        let mut p = ProbeResults::at_start(true, false);
        assert_eq!((p.started, p.ready), (false, false));
        p.startup_passed(false);
        assert_eq!((p.started, p.ready), (true, true));
        let mut p = ProbeResults::at_start(true, true);
        p.startup_passed(true);
        assert_eq!(
            (p.started, p.ready),
            (true, false),
            "the readiness probe decides"
        );
    }

    #[test]
    fn backoff_doubles_from_ten_seconds_to_five_minutes() {
        let delays: Vec<i64> = (0..8)
            .map(|count| Backoff { count }.delay().num_seconds())
            .collect();
        assert_eq!(delays, vec![0, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(Backoff { count: u32::MAX }.delay(), BACKOFF_MAX);
    }
}
