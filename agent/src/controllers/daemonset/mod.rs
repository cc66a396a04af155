//! The DaemonSet controller: one pod of the set on every node that should run it, in the
//! same three layers as the StatefulSet controller:
//!
//! - this module: the loop (wake on any state change or a timer) and [`sync`] of one set:
//!   observe, resolve revisions, plan, execute, write status;
//! - [`plan`]: the algorithm, a pure function of (set, nodes, pods, update revision, now),
//!   tested table-driven and in a simulation with invariants;
//! - [`executor`]: the side effects, as state commands and events.
//!
//! Helpers: [`observe`] (views of stored objects, and which nodes should run the pod, judged
//! by the scheduler's filters in [`crate::controllers::placement`]) and [`pod`] (the pod for a
//! node). Revisions are the StatefulSet controller's ([`super::statefulset::revision`]): a
//! ControllerRevision `<set>-<hash>` per template, pods labelled `controller-revision-hash:
//! <hash>`, as Kubernetes labels daemon pods.
//!
//! Pods are bound to their node when created (`spec.nodeName` and a required node affinity on
//! `metadata.name`), so a daemon pod starts on a cordoned or not-ready node, as in Kubernetes.

pub mod executor;
pub mod observe;
pub mod plan;
pub mod pod;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::statefulset::error_chain;
use super::statefulset::observe::revision_view;
use super::statefulset::revision::{self, Revisions};
use super::{Context, next_change};
use crate::state::Timestamp;
use executor::{ExecuteError, Executor};
use plan::{DaemonSetView, Plan};

/// The component name on the controller's events.
pub const COMPONENT: &str = "daemonset-controller";
/// Sets are looked at again at least this often, whatever happens.
const RESYNC: Duration = Duration::from_secs(30);
/// After a failed pass, the next one comes this soon.
const RETRY: Duration = Duration::from_secs(1);

/// Runs the controller until shutdown.
pub async fn run(ctx: Context, mut shutdown: watch::Receiver<bool>) {
    let mut changes = ctx.state.subscribe_changes();
    loop {
        let timeout = sync_all(&ctx).await;
        if !next_change(&mut changes, &mut shutdown, Some(timeout)).await {
            return;
        }
    }
}

/// One pass over every set; returns how long to sleep if nothing changes.
async fn sync_all(ctx: &Context) -> Duration {
    let (sets, _) = ctx.state.list("DaemonSet", None);
    let mut sleep = RESYNC;
    for stored in sets.iter() {
        match sync(ctx, stored).await {
            Ok(Some(at)) => sleep = sleep.min(until(at)),
            Ok(None) => {}
            Err(error) => {
                let key = format!(
                    "{}/{}",
                    str_at(stored, "/metadata/namespace"),
                    str_at(stored, "/metadata/name")
                );
                tracing::warn!(daemonset = %key, error = %error_chain(&error), "daemonset sync failed; retrying");
                sleep = sleep.min(RETRY);
            }
        }
    }
    sleep
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// How long until `at` (at least a few milliseconds, so a due time never spins).
fn until(at: Timestamp) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let at = Duration::from_secs(u64::try_from(at.unix_seconds()).unwrap_or(0));
    at.saturating_sub(now).max(Duration::from_millis(20))
}

/// The hash part of a revision name `<set>-<hash>`.
pub fn revision_hash<'a>(set: &str, revision: &'a str) -> &'a str {
    revision
        .strip_prefix(set)
        .and_then(|r| r.strip_prefix('-'))
        .unwrap_or(revision)
}

/// One pass over one stored set; returns when to look again if nothing changes.
pub async fn sync(ctx: &Context, stored: &Value) -> Result<Option<Timestamp>, ExecuteError> {
    let Some((set, view)) = observe::set_view(stored) else {
        return Err(ExecuteError::Stored {
            name: str_at(stored, "/metadata/name").to_string(),
        });
    };
    let namespace = set.metadata.namespace.clone().unwrap_or_default();
    let uid = set.metadata.uid.clone().unwrap_or_default();
    let (pods, _) = ctx.state.list("Pod", Some(&namespace));
    let pods: Vec<_> = pods
        .iter()
        .filter_map(|p| observe::pod_view(p, &uid))
        .collect();
    let (stored_revisions, _) = ctx.state.list("ControllerRevision", Some(&namespace));
    let stored_revisions: Vec<_> = stored_revisions
        .iter()
        .filter_map(|r| revision_view(r, &view.name, &uid))
        .collect();
    let template = stored
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(Value::Null);
    let in_use: BTreeSet<String> = pods
        .iter()
        .map(|p| format!("{}-{}", view.name, p.revision))
        .collect();
    let status = set.status.clone().unwrap_or_default();
    let history_limit = set
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10);
    let revisions = revision::resolve(
        &view.name,
        &template,
        &stored_revisions,
        None,
        status.collision_count.unwrap_or(0),
        &in_use,
        history_limit,
    );
    let hash = revision_hash(&view.name, &revisions.update.name).to_string();

    // Which nodes should run the pod: judged on the pod the set would create.
    let probe = pod::new_pod(stored, &template, &hash, None);
    let probe: Option<Pod> = serde_json::from_value(probe).ok();
    let (nodes, _) = ctx.state.list("Node", None);
    let nodes: Vec<_> = nodes
        .iter()
        .filter_map(|n| serde_json::from_value::<Node>((**n).clone()).ok())
        .map(|n| match &probe {
            Some(p) => observe::node_view(&n, p),
            None => plan::NodeView {
                name: n.metadata.name.clone().unwrap_or_default(),
                should_run: false,
                should_continue: false,
            },
        })
        .collect();

    let executor = Executor {
        ctx,
        set: stored,
        revisions: &revisions,
        hash: &hash,
    };
    if !view.deleting {
        executor.apply_revisions().await?;
    }
    let plan = plan::plan(&view, &nodes, &pods, &hash, Timestamp::now());
    for action in &plan.actions {
        tracing::debug!(daemonset = %format!("{namespace}/{}", view.name), ?action, "daemonset action");
    }
    executor.apply_plan(&plan).await?;
    if !view.deleting {
        executor
            .write_status(status_of(&view, &plan, &revisions))
            .await?;
    }
    Ok(plan.requeue_at)
}

/// The set's `status` after a pass.
pub fn status_of(view: &DaemonSetView, plan: &Plan, revisions: &Revisions) -> Value {
    let c = plan.counts;
    json!({
        "observedGeneration": view.generation,
        "desiredNumberScheduled": c.desired,
        "currentNumberScheduled": c.current,
        "numberReady": c.ready,
        "numberAvailable": c.available,
        "numberUnavailable": (c.desired - c.available).max(0),
        "updatedNumberScheduled": c.updated,
        "numberMisscheduled": c.misscheduled,
        "collisionCount": revisions.collision_count,
    })
}
