//! Controllers: each decides with a pure function of (spec, observed objects, now) and acts
//! only by committing state commands through a thin executor. They run on every host today;
//! the cluster issue runs them on the raft leader only.
//!
//! | controller | module | decides |
//! | --- | --- | --- |
//! | scheduler | [`scheduler`] (+ pure [`placement`]) | which node runs a pod |
//! | namespaces | [`namespace`] | deleting a namespace deletes its contents |
//! | StatefulSet | [`statefulset`] | pods and claims of a set, ordered scaling and updates |
//! | Job | [`job`] | pods of a Job, retries, completion |
//! | CronJob | [`cronjob`] | Jobs on a schedule |
//! | DaemonSet | [`daemonset`] | one pod per eligible node, rolling updates |
//! | node lifecycle | [`node_lifecycle`] | silent nodes: Unknown, tainted; their pods evicted or pinned |
//!
//! Invariant: controllers never call the runtime; only the kubelet does.

pub mod cronjob;
pub mod daemonset;
pub mod job;
pub mod namespace;
pub mod node_lifecycle;
pub mod placement;
pub mod scheduler;
pub mod statefulset;

use std::sync::Arc;

use serde_json::Value;

use crate::events::Recorder;
use crate::objects::{AdmitError, CreateContext, admit_create};
use crate::state::{Command, ProposeError, State, Timestamp};

/// What every controller gets.
#[derive(Clone)]
pub struct Context {
    pub state: State,
    pub events: Recorder,
    /// This host's node name.
    pub node_name: String,
}

/// A controller's write that failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the object the controller built is not admissible")]
    Admit(#[from] AdmitError),
    #[error(transparent)]
    Propose(#[from] ProposeError),
}

/// Creates an object the way the API creates one (decode, defaults, validation), so that
/// what controllers make is exactly what a user could have applied.
pub async fn create_object(state: &State, object: Value) -> Result<Arc<Value>, WriteError> {
    let now = Timestamp::now();
    let uid = uuid::Uuid::new_v4().to_string();
    let context = CreateContext {
        uid: uid.clone(),
        now: k8s_openapi::jiff::Timestamp::from_second(now.unix_seconds())
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        random: rand::random(),
    };
    let admitted = admit_create(&object, &context)?;
    let applied = state
        .propose(Command::create(admitted.object.to_value(), uid, now))
        .await?;
    Ok(applied
        .outcome
        .object()
        .cloned()
        .unwrap_or_else(|| Arc::new(Value::Null)))
}

/// Starts every controller; they stop when `shutdown` turns true.
pub fn start_all(
    ctx: Context,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    start_all_with(ctx, node_lifecycle::Settings::default(), shutdown)
}

/// Starts every controller, the node lifecycle controller with `node_monitor` (the agent's
/// `--node-monitor-grace-period`); they stop when `shutdown` turns true.
pub fn start_all_with(
    ctx: Context,
    node_monitor: node_lifecycle::Settings,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        tokio::spawn(scheduler::run(ctx.clone(), shutdown.clone())),
        tokio::spawn(namespace::run(ctx.clone(), shutdown.clone())),
        tokio::spawn(statefulset::run(ctx.clone(), shutdown.clone())),
        tokio::spawn(job::run(ctx.clone(), shutdown.clone())),
        tokio::spawn(daemonset::run(ctx.clone(), shutdown.clone())),
        tokio::spawn(node_lifecycle::run_with(
            ctx.clone(),
            node_monitor,
            shutdown.clone(),
        )),
        tokio::spawn(cronjob::run(ctx, shutdown)),
    ]
}

/// Waits until the state changes or shutdown is requested; returns false on shutdown.
pub async fn next_change(
    changes: &mut tokio::sync::watch::Receiver<u64>,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
    timeout: Option<std::time::Duration>,
) -> bool {
    if *shutdown.borrow() {
        return false;
    }
    let sleep = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = changes.changed() => r.is_ok(),
        _ = shutdown.changed() => !*shutdown.borrow(),
        _ = sleep => true,
    }
}
