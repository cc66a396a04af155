//! The StatefulSet controller: stable pod names, per-pod claims, ordered scaling and rolling
//! updates, in three layers as Kubernetes' pkg/controller/statefulset has them:
//!
//! - this module: the loop (wake on any state change or a timer) and [`sync`] of one set:
//!   observe, resolve revisions, plan, execute, write status;
//! - [`plan`]: the algorithm, a pure function of (set, pods, claims, revisions, now), tested
//!   in simulation with invariants checked after every step, in both management policies;
//! - [`executor`]: the side effects, as state commands (pods and claims created through
//!   admission, deletions with uid preconditions) and events.
//!
//! Helpers: [`identity`] (names, ordinals, labels, the pod and claim built for an ordinal),
//! [`revision`] (ControllerRevisions: hashing, rollback reuse, history limit), [`observe`]
//! (views of stored objects).
//!
//! Where berth does better than Kubernetes:
//! - a pod that never became Ready on a revision that is neither current nor wanted any more
//!   (a bad template since fixed or rolled back) is replaced without anyone deleting it
//!   (kubernetes/kubernetes#67250, #60164);
//! - deleting a set stops its pods in reverse ordinal order, each gone before the next
//!   (OrderedReady; Parallel stops them all at once), held by the [`FINALIZER`], and applies
//!   `whenDeleted` after the last pod;
//! - `podManagementPolicy` may change on a live set (#117693) and claim templates may grow
//!   their storage request (existing claims grow with them).

pub mod executor;
pub mod identity;
pub mod observe;
pub mod plan;
pub mod revision;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::watch;

use super::{Context, next_change};
use crate::state::Timestamp;
use executor::{ExecuteError, Executor};
use plan::{Plan, PodOwner, RevisionNames, SetView};
use revision::Revisions;

/// The finalizer that holds a set being deleted until its pods are gone, in order.
pub const FINALIZER: &str = "berth.io/ordered-shutdown";
/// The component name on the controller's events.
pub const COMPONENT: &str = "statefulset-controller";
/// Sets are looked at again at least this often, whatever happens.
const RESYNC: Duration = Duration::from_secs(30);
/// After a failed pass, the next one comes this soon.
const RETRY: Duration = Duration::from_secs(1);

/// Runs the controller until shutdown.
pub async fn run(ctx: Context, mut shutdown: watch::Receiver<bool>) {
    let mut changes = ctx.state.subscribe_changes();
    let mut waiting: HashMap<String, String> = HashMap::new();
    loop {
        let timeout = sync_all(&ctx, &mut waiting).await;
        if !next_change(&mut changes, &mut shutdown, Some(timeout)).await {
            return;
        }
    }
}

/// One pass over every set; returns how long to sleep if nothing changes.
async fn sync_all(ctx: &Context, waiting: &mut HashMap<String, String>) -> Duration {
    let (sets, _) = ctx.state.list("StatefulSet", None);
    let mut sleep = RESYNC;
    let mut seen = BTreeSet::new();
    for stored in sets.iter() {
        let key = format!(
            "{}/{}",
            stored
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or(""),
            stored
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
        );
        seen.insert(key.clone());
        match sync(ctx, stored).await {
            Ok(outcome) => {
                if let Some(at) = outcome.requeue_at {
                    sleep = sleep.min(until(at));
                }
                let now_waiting = outcome.waiting.unwrap_or_default();
                if waiting.get(&key) != Some(&now_waiting) {
                    if !now_waiting.is_empty() {
                        tracing::info!(statefulset = %key, "{now_waiting}");
                    }
                    waiting.insert(key, now_waiting);
                }
            }
            Err(error) => {
                tracing::warn!(statefulset = %key, error = %error_chain(&error), "statefulset sync failed; retrying");
                sleep = sleep.min(RETRY);
            }
        }
    }
    waiting.retain(|k, _| seen.contains(k));
    sleep
}

/// How long until `at` (at least a few milliseconds, so a due time never spins).
fn until(at: Timestamp) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let at = Duration::from_secs(u64::try_from(at.unix_seconds()).unwrap_or(0));
    at.saturating_sub(now).max(Duration::from_millis(20))
}

/// An error and its causes on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What a pass over one set found.
#[derive(Debug, Default)]
pub struct SyncOutcome {
    /// Look again at this time (a pod becoming Available).
    pub requeue_at: Option<Timestamp>,
    /// What the set waits for, in words.
    pub waiting: Option<String>,
}

/// One pass over one stored set: observe, resolve revisions, plan, execute, write status.
pub async fn sync(ctx: &Context, stored: &Value) -> Result<SyncOutcome, ExecuteError> {
    let Some((set, view)) = observe::set_view(stored) else {
        return Err(ExecuteError::Stored {
            kind: "StatefulSet",
            name: stored
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        });
    };
    let namespace = set.metadata.namespace.clone().unwrap_or_default();
    let uid = set.metadata.uid.clone().unwrap_or_default();
    let selector = observe::selector_of(&set);
    let (pods, _) = ctx.state.list("Pod", Some(&namespace));
    let pods: Vec<_> = pods
        .iter()
        .filter_map(|p| observe::pod_view(p, &view.name, &uid, &selector))
        .collect();
    let (claims, _) = ctx.state.list("PersistentVolumeClaim", Some(&namespace));
    let claims: Vec<_> = claims
        .iter()
        .filter_map(|c| observe::claim_view(c, &view, &selector))
        .collect();
    let (stored_revisions, _) = ctx.state.list("ControllerRevision", Some(&namespace));
    let stored_revisions: Vec<_> = stored_revisions
        .iter()
        .filter_map(|r| observe::revision_view(r, &view.name, &uid))
        .collect();

    let template = stored
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(Value::Null);
    let in_use: BTreeSet<String> = pods
        .iter()
        .filter(|p| p.owner == PodOwner::ThisSet)
        .map(|p| p.revision.clone())
        .collect();
    let status = set.status.clone().unwrap_or_default();
    let revisions = revision::resolve(
        &view.name,
        &template,
        &stored_revisions,
        status.current_revision.as_deref(),
        status.collision_count.unwrap_or(0),
        &in_use,
        set.spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10),
    );
    let executor = Executor {
        ctx,
        set: stored,
        revisions: &revisions,
    };
    if !view.deleting {
        executor.apply_revisions().await?;
    }
    let names = RevisionNames {
        current: &revisions.current.name,
        update: &revisions.update.name,
    };
    let plan = plan::plan(&view, &pods, &claims, names, Timestamp::now());
    for action in &plan.actions {
        tracing::debug!(statefulset = %format!("{namespace}/{}", view.name), ?action, "statefulset action");
    }
    executor.apply_plan(&plan).await?;
    executor
        .write_status(status_of(&view, &plan, &revisions))
        .await?;
    Ok(SyncOutcome {
        requeue_at: plan.requeue_at,
        waiting: plan.waiting,
    })
}

/// The set's `status` after a pass.
pub fn status_of(view: &SetView, plan: &Plan, revisions: &Revisions) -> Value {
    let counts = plan.counts;
    let update = &revisions.update.name;
    let current_replicas = if plan.current_revision == *update {
        counts.updated
    } else {
        counts.current
    };
    json!({
        "observedGeneration": view.generation,
        "replicas": counts.replicas,
        "readyReplicas": counts.ready,
        "availableReplicas": counts.available,
        "currentReplicas": current_replicas,
        "updatedReplicas": counts.updated,
        "currentRevision": plan.current_revision,
        "updateRevision": update,
        "collisionCount": revisions.collision_count,
    })
}
