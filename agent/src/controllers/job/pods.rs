//! What the Job controller reads from one of its pods: where it is in its life, whether the
//! Job still has to count it, its completion index and when it finished (pure).

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;

use super::clock::chrono_time;
use super::{
    COMPLETION_INDEX_ANNOTATION, INDEX_FAILURE_COUNT_ANNOTATION,
    INDEX_IGNORED_FAILURE_COUNT_ANNOTATION, TRACKING_FINALIZER,
};

/// Where a pod is in its life, as the Job controller counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodState {
    /// Pending or running, and not being deleted.
    Active,
    /// Being deleted while its kubelet is still stopping it.
    Terminating,
    /// Ended with every container successful.
    Succeeded,
    /// Ended in failure (phase Failed), or deleted and no longer running anywhere: its kubelet
    /// finished the deletion (grace 0) or it was never bound to a node.
    Failed,
}

impl PodState {
    /// The state of `pod`.
    pub fn of(pod: &Pod) -> PodState {
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("Pending");
        match phase {
            "Succeeded" => return PodState::Succeeded,
            "Failed" => return PodState::Failed,
            _ => {}
        }
        if pod.metadata.deletion_timestamp.is_none() {
            return PodState::Active;
        }
        let bound = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty());
        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
        if bound && grace > 0 {
            PodState::Terminating
        } else {
            PodState::Failed
        }
    }
}

/// One of the Job's pods, read once.
#[derive(Clone, Debug)]
pub struct JobPod<'a> {
    /// The pod as stored.
    pub pod: &'a Pod,
    /// `metadata.name`.
    pub name: &'a str,
    /// Its state.
    pub state: PodState,
    /// Whether it still carries the tracking finalizer: the Job has not counted it yet.
    pub tracked: bool,
    /// Its completion index (Indexed Jobs), when the annotation holds a valid one.
    pub index: Option<i32>,
}

impl<'a> JobPod<'a> {
    /// Reads `pod`.
    pub fn new(pod: &'a Pod) -> JobPod<'a> {
        JobPod {
            pod,
            name: pod.metadata.name.as_deref().unwrap_or(""),
            state: PodState::of(pod),
            tracked: pod
                .metadata
                .finalizers
                .iter()
                .flatten()
                .any(|f| f == TRACKING_FINALIZER),
            index: completion_index(pod),
        }
    }

    /// Whether the Job counts this pod as failed. With `replace_terminating` (the
    /// TerminatingOrFailed replacement policy) a pod being deleted counts at once.
    pub fn is_failed(&self, replace_terminating: bool) -> bool {
        match self.state {
            PodState::Failed => true,
            PodState::Terminating => replace_terminating,
            PodState::Active | PodState::Succeeded => false,
        }
    }

    /// Whether the pod's Ready condition is True.
    pub fn is_ready(&self) -> bool {
        self.pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    }

    /// Whether it is bound to a node.
    pub fn is_scheduled(&self) -> bool {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    }

    /// Whether its phase is Running.
    pub fn is_running(&self) -> bool {
        self.pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
    }

    /// Container restarts so far (init and app containers), for `restartPolicy: OnFailure`.
    pub fn restarts(&self) -> i64 {
        let Some(status) = self.pod.status.as_ref() else {
            return 0;
        };
        status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten())
            .map(|c| i64::from(c.restart_count))
            .sum()
    }

    /// When the pod was created.
    pub fn created(&self) -> DateTime<Utc> {
        self.pod
            .metadata
            .creation_timestamp
            .as_ref()
            .map(chrono_time)
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
    }

    /// When the pod finished, as Kubernetes estimates it: the last container's end when all
    /// containers ended, else when it stopped being Ready, else when its deletion started,
    /// else its creation.
    pub fn finished_at(&self) -> DateTime<Utc> {
        let status = self.pod.status.as_ref();
        let containers = status
            .and_then(|s| s.container_statuses.as_ref())
            .filter(|c| !c.is_empty());
        if let Some(containers) = containers {
            let ends: Option<Vec<DateTime<Utc>>> = containers
                .iter()
                .map(|c| {
                    c.state
                        .as_ref()
                        .and_then(|s| s.terminated.as_ref())
                        .and_then(|t| t.finished_at.as_ref())
                        .map(chrono_time)
                })
                .collect();
            if let Some(latest) = ends.and_then(|e| e.into_iter().max()) {
                return latest;
            }
        }
        let not_ready = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c.type_ == "Ready" && c.status == "False")
            })
            .and_then(|c| c.last_transition_time.as_ref());
        if let Some(t) = not_ready {
            return chrono_time(t);
        }
        if let Some(deleted) = self.pod.metadata.deletion_timestamp.as_ref() {
            let grace = self.pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
            return chrono_time(deleted) - chrono::TimeDelta::seconds(grace);
        }
        self.created()
    }

    /// The per-index failure counts the pod was created with: (counted, ignored).
    pub fn index_failure_counts(&self) -> (i32, i32) {
        let read = |key: &str| {
            self.pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(key))
                .and_then(|v| v.parse::<i32>().ok())
                .filter(|v| *v >= 0)
                .unwrap_or(0)
        };
        (
            read(INDEX_FAILURE_COUNT_ANNOTATION),
            read(INDEX_IGNORED_FAILURE_COUNT_ANNOTATION),
        )
    }
}

/// The completion index a pod carries, when it is a non-negative integer.
pub fn completion_index(pod: &Pod) -> Option<i32> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(COMPLETION_INDEX_ANNOTATION))
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|i| *i >= 0)
}

/// Orders pods so that the ones to delete first come first: unscheduled before scheduled,
/// pending before running, not ready before ready, newer before older (the order of
/// Kubernetes' `controller.ActivePods`).
pub fn deletion_order(a: &JobPod<'_>, b: &JobPod<'_>) -> std::cmp::Ordering {
    a.is_scheduled()
        .cmp(&b.is_scheduled())
        .then(a.is_running().cmp(&b.is_running()))
        .then(a.is_ready().cmp(&b.is_ready()))
        .then(b.created().cmp(&a.created()))
        .then(a.name.cmp(b.name))
}
