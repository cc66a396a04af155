//! The claim task of a node: takes the claims pinned to this node, creates their directories
//! with a size limit where the filesystem can enforce one, marks them Bound, keeps their used
//! bytes current, and removes a directory once its claim is deleted and no pod uses it.
//!
//! It is the only writer of a claim's status and of the `berth.io/*` claim annotations. It
//! runs on every node (unlike controllers, it must run where the data is); the daemon starts
//! it with [`run`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_runtime::RuntimeDirs;
use berth_runtime::volumes::quota::{ProjectQuotas, QuotaUnavailable, directory_usage};
use berth_runtime::volumes::{self, VolumeError};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::decide::{ClaimStep, decide, facts};
use super::{DIRECTORY, FINALIZER, QUOTA, USED_AT, USED_BY, USED_BYTES, directory_name};
use crate::controllers::next_change;
use crate::events::{EventType, InvolvedObject, Recorder};
use crate::state::{Command, ObjectKey, ProposeError, State, Timestamp};

/// The component name on the task's events.
const COMPONENT: &str = "berth-claims";

/// What the claim task of a node needs.
#[derive(Clone)]
pub struct ClaimNode {
    pub state: State,
    pub events: Recorder,
    /// This host's node name.
    pub node_name: String,
    /// The runtime's directories (claims live under `<data_dir>/volumes/claims`).
    pub dirs: RuntimeDirs,
    /// How often the bytes used by each bound claim are measured, at least: a claim whose
    /// measurement takes longer (a walk of a large tree where no quota counts for us) is
    /// measured less often, so that measuring costs at most about 5% of one core.
    pub usage_interval: Duration,
}

impl ClaimNode {
    /// A claim task for `node_name` measuring usage every 10 seconds (or less often, see
    /// [`ClaimNode::usage_interval`]).
    pub fn new(
        state: State,
        events: Recorder,
        node_name: impl Into<String>,
        dirs: RuntimeDirs,
    ) -> ClaimNode {
        ClaimNode {
            state,
            events,
            node_name: node_name.into(),
            dirs,
            usage_interval: Duration::from_secs(10),
        }
    }
}

/// A step for one claim that failed; the next pass tries again.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("claim {namespace}/{name}: preparing its directory")]
    Directory {
        namespace: String,
        name: String,
        #[source]
        source: VolumeError,
    },
    #[error("claim {namespace}/{name}: cannot {verb}")]
    Propose {
        namespace: String,
        name: String,
        verb: &'static str,
        #[source]
        source: ProposeError,
    },
    #[error("claim {namespace}/{name}: the directory task panicked")]
    Panicked { namespace: String, name: String },
}

/// Whether claim sizes are enforced here, decided once when the task starts.
type Quotas = Result<ProjectQuotas, QuotaUnavailable>;

/// Runs the claim task of this node until shutdown.
pub async fn run(node: ClaimNode, mut shutdown: watch::Receiver<bool>) {
    let claims_dir = node.dirs.claims_dir();
    let quotas: Arc<Quotas> = Arc::new(
        tokio::task::spawn_blocking(move || {
            let _ = std::fs::create_dir_all(&claims_dir);
            ProjectQuotas::probe(&claims_dir)
        })
        .await
        .unwrap_or_else(|_| {
            Err(QuotaUnavailable::NoMount {
                path: PathBuf::from("(probe panicked)"),
            })
        }),
    );
    match quotas.as_ref() {
        Ok(q) => tracing::info!(
            device = q.device(),
            "claim sizes are enforced with project quotas"
        ),
        Err(reason) => tracing::warn!("claim sizes are not enforced: {reason}"),
    }
    let mut changes = node.state.subscribe_changes();
    let mut measured: HashMap<String, Instant> = HashMap::new();
    loop {
        pass(&node, &quotas, &mut measured).await;
        if !next_change(&mut changes, &mut shutdown, Some(node.usage_interval)).await {
            return;
        }
    }
}

/// One pass over the claims: one step for each claim that needs one, and the usage of the
/// bound claims of this node whose next measurement (in `next_measure`) is due.
pub async fn pass(
    node: &ClaimNode,
    quotas: &Arc<Quotas>,
    next_measure: &mut HashMap<String, Instant>,
) {
    let (claims, _) = node.state.list("PersistentVolumeClaim", None);
    let mut live = std::collections::HashSet::new();
    let mut pods_of: HashMap<String, Vec<Arc<Value>>> = HashMap::new();
    for claim in claims.iter() {
        let namespace = str_at(claim, "/metadata/namespace").to_string();
        let name = str_at(claim, "/metadata/name").to_string();
        let key = format!("{namespace}/{name}");
        live.insert(key.clone());
        let pods = pods_of
            .entry(namespace.clone())
            .or_insert_with(|| node.state.list("Pod", Some(&namespace)).0);
        let facts = facts(claim, &node.node_name, pods);
        let directory = node
            .dirs
            .claims_dir()
            .join(directory_name(&namespace, &name));
        let step = decide(&facts, &directory.to_string_lossy());
        let result = match step {
            ClaimStep::Nothing if facts.bound && facts.pinned_here && !facts.deleting => {
                let due = next_measure
                    .get(&key)
                    .is_none_or(|at| Instant::now() >= *at);
                let users = facts.users.join(", ");
                let users_changed = annotation(claim, USED_BY) != users;
                if due || users_changed {
                    let started = Instant::now();
                    let result = refresh(node, quotas, claim, directory, &users, due).await;
                    if due {
                        let interval = node.usage_interval.max(started.elapsed() * 20);
                        next_measure.insert(key.clone(), Instant::now() + interval);
                    }
                    result
                } else {
                    Ok(())
                }
            }
            ClaimStep::Nothing => Ok(()),
            ClaimStep::WaitForPods(_) => Ok(()),
            ClaimStep::Take => take(node, claim, &directory).await,
            ClaimStep::Provision => provision(node, quotas, claim, directory).await,
            ClaimStep::Resize => resize(node, quotas, claim, directory).await,
            ClaimStep::Remove => remove(node, quotas, claim, directory).await,
        };
        if let Err(error) = result {
            tracing::warn!(claim = %key, error = %crate::controllers::statefulset::error_chain(&error), "claim step failed; retrying");
        }
    }
    next_measure.retain(|k, _| live.contains(k));
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn resource_version(v: &Value) -> Option<u64> {
    v.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
}

fn propose_error<'a>(
    claim: &'a Value,
    verb: &'static str,
) -> impl FnOnce(ProposeError) -> ClaimError + 'a {
    move |source| ClaimError::Propose {
        namespace: str_at(claim, "/metadata/namespace").to_string(),
        name: str_at(claim, "/metadata/name").to_string(),
        verb,
        source,
    }
}

fn set_annotation(object: &mut Value, key: &str, value: &str) {
    if !object["metadata"]["annotations"].is_object() {
        object["metadata"]["annotations"] = json!({});
    }
    object["metadata"]["annotations"][key] = json!(value);
}

/// Runs filesystem work off the async threads.
async fn blocking<T: Send + 'static>(
    claim: &Value,
    work: impl FnOnce() -> Result<T, VolumeError> + Send + 'static,
) -> Result<T, ClaimError> {
    let namespace = str_at(claim, "/metadata/namespace").to_string();
    let name = str_at(claim, "/metadata/name").to_string();
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(|source| ClaimError::Directory {
            namespace,
            name,
            source,
        }),
        Err(_) => Err(ClaimError::Panicked { namespace, name }),
    }
}

/// The finalizer first, so that a directory never exists for a claim that could vanish
/// without this task noticing.
async fn take(
    node: &ClaimNode,
    claim: &Value,
    directory: &std::path::Path,
) -> Result<(), ClaimError> {
    let mut updated = claim.clone();
    let mut finalizers: Vec<Value> = claim
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !finalizers.iter().any(|f| f == FINALIZER) {
        finalizers.push(json!(FINALIZER));
    }
    updated["metadata"]["finalizers"] = json!(finalizers);
    set_annotation(&mut updated, DIRECTORY, &directory.to_string_lossy());
    let command = Command::Update {
        object: updated,
        precondition_resource_version: resource_version(claim),
        now: Timestamp::now(),
    };
    node.state
        .propose(command)
        .await
        .map(|_| ())
        .map_err(propose_error(claim, "take it"))
}

fn request_bytes(claim: &Value) -> Option<u64> {
    let text = claim
        .pointer("/spec/resources/requests/storage")
        .and_then(Value::as_str)?;
    crate::objects::quantity::bytes(text)
        .ok()
        .and_then(|b| u64::try_from(b).ok())
}

/// Sets the limit where possible; returns the quota annotation's text.
fn apply_limit(
    quotas: &Quotas,
    claims_dir: &std::path::Path,
    path: &std::path::Path,
    bytes: Option<u64>,
) -> String {
    match (quotas, bytes) {
        (Err(reason), _) => format!("not enforced: {reason}"),
        (Ok(_), None) => "not enforced: the claim requests no storage size".to_string(),
        (Ok(q), Some(bytes)) => match q.limit(claims_dir, path, bytes) {
            Ok(id) => format!(
                "enforced by project quota {id} on {} ({})",
                q.device(),
                q.fs_type()
            ),
            Err(e) => format!(
                "not enforced: {}",
                crate::controllers::statefulset::error_chain(&e)
            ),
        },
    }
}

fn bound_status(claim: &Value) -> Value {
    let mut status = json!({
        "phase": "Bound",
        "accessModes": claim.pointer("/spec/accessModes").cloned().unwrap_or_else(|| json!(["ReadWriteOnce"])),
    });
    if let Some(request) = claim.pointer("/spec/resources/requests/storage") {
        status["capacity"] = json!({"storage": request});
    }
    status
}

async fn provision(
    node: &ClaimNode,
    quotas: &Arc<Quotas>,
    claim: &Value,
    directory: PathBuf,
) -> Result<(), ClaimError> {
    let dirs = node.dirs.clone();
    let dir_name = directory_name(
        str_at(claim, "/metadata/namespace"),
        str_at(claim, "/metadata/name"),
    );
    let bytes = request_bytes(claim);
    let q = quotas.clone();
    let (quota_text, used) = blocking(claim, move || {
        let path = volumes::ensure_claim(&dirs, &dir_name)?;
        let text = apply_limit(&q, &dirs.claims_dir(), &path, bytes);
        let used = usage_of(&q, &path);
        Ok((text, used))
    })
    .await?;
    let key = ObjectKey::new(
        "PersistentVolumeClaim",
        str_at(claim, "/metadata/namespace"),
        str_at(claim, "/metadata/name"),
    );
    let mut updated = claim.clone();
    set_annotation(&mut updated, QUOTA, &quota_text);
    if let Some(used) = used {
        set_annotation(&mut updated, USED_BYTES, &used.to_string());
        set_annotation(&mut updated, USED_AT, &Timestamp::now().to_rfc3339());
    }
    let commands = vec![
        Command::Update {
            object: updated,
            precondition_resource_version: resource_version(claim),
            now: Timestamp::now(),
        },
        Command::update_status(key, bound_status(claim)),
    ];
    node.state
        .propose(Command::Batch(commands))
        .await
        .map_err(propose_error(claim, "mark it Bound"))?;
    let size = claim
        .pointer("/spec/resources/requests/storage")
        .and_then(Value::as_str)
        .unwrap_or("no size");
    node.events.record(
        InvolvedObject::of(claim),
        EventType::Normal,
        "Provisioned",
        format!(
            "directory {} on node {} ({size}; size {quota_text})",
            directory.display(),
            node.node_name
        ),
        COMPONENT,
    );
    Ok(())
}

async fn resize(
    node: &ClaimNode,
    quotas: &Arc<Quotas>,
    claim: &Value,
    directory: PathBuf,
) -> Result<(), ClaimError> {
    let claims_dir = node.dirs.claims_dir();
    let bytes = request_bytes(claim);
    let q = quotas.clone();
    let path = directory.clone();
    let quota_text = blocking(claim, move || {
        Ok(apply_limit(&q, &claims_dir, &path, bytes))
    })
    .await?;
    let key = ObjectKey::new(
        "PersistentVolumeClaim",
        str_at(claim, "/metadata/namespace"),
        str_at(claim, "/metadata/name"),
    );
    let mut updated = claim.clone();
    set_annotation(&mut updated, QUOTA, &quota_text);
    let mut status = claim.get("status").cloned().unwrap_or_else(|| json!({}));
    status["capacity"] = json!({"storage": claim.pointer("/spec/resources/requests/storage")});
    let commands = vec![
        Command::Update {
            object: updated,
            precondition_resource_version: resource_version(claim),
            now: Timestamp::now(),
        },
        Command::update_status(key, status),
    ];
    node.state
        .propose(Command::Batch(commands))
        .await
        .map_err(propose_error(claim, "record its new size"))?;
    let size = claim
        .pointer("/spec/resources/requests/storage")
        .and_then(Value::as_str)
        .unwrap_or("");
    node.events.record(
        InvolvedObject::of(claim),
        EventType::Normal,
        "Resized",
        format!("capacity is now {size} (size {quota_text})"),
        COMPONENT,
    );
    Ok(())
}

/// Bytes used, from the quota when there is one, else by walking the tree.
fn usage_of(quotas: &Quotas, path: &std::path::Path) -> Option<u64> {
    if let Ok(q) = quotas
        && let Ok(Some(bytes)) = q.usage(path)
    {
        return Some(bytes);
    }
    directory_usage(path).ok()
}

fn annotation<'a>(claim: &'a Value, key: &str) -> &'a str {
    claim
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Records the pods that use the claim and, when `measure`, the bytes it uses; writes only
/// what changed.
async fn refresh(
    node: &ClaimNode,
    quotas: &Arc<Quotas>,
    claim: &Value,
    directory: PathBuf,
    users: &str,
    measure: bool,
) -> Result<(), ClaimError> {
    let mut updated = claim.clone();
    if annotation(claim, USED_BY) != users {
        set_annotation(&mut updated, USED_BY, users);
    }
    if measure {
        let q = quotas.clone();
        let used = blocking(claim, move || Ok(usage_of(&q, &directory))).await?;
        if let Some(used) = used.map(|u| u.to_string())
            && annotation(claim, USED_BYTES) != used
        {
            set_annotation(&mut updated, USED_BYTES, &used);
            set_annotation(&mut updated, USED_AT, &Timestamp::now().to_rfc3339());
        }
    }
    if updated == *claim {
        return Ok(());
    }
    let command = Command::Update {
        object: updated,
        precondition_resource_version: resource_version(claim),
        now: Timestamp::now(),
    };
    node.state
        .propose(command)
        .await
        .map(|_| ())
        .map_err(propose_error(claim, "record its usage"))
}

async fn remove(
    node: &ClaimNode,
    quotas: &Arc<Quotas>,
    claim: &Value,
    directory: PathBuf,
) -> Result<(), ClaimError> {
    let pinned_here = claim
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(super::SELECTED_NODE))
        .and_then(Value::as_str)
        .is_none_or(|n| n == node.node_name);
    if !pinned_here {
        // Another node holds the directory; its task removes it.
        return Ok(());
    }
    let dirs = node.dirs.clone();
    let dir_name = directory_name(
        str_at(claim, "/metadata/namespace"),
        str_at(claim, "/metadata/name"),
    );
    let q = quotas.clone();
    let path = directory.clone();
    let existed = blocking(claim, move || {
        if let Ok(q) = q.as_ref()
            && path.exists()
        {
            let _ = q.clear(&path);
        }
        let existed = volumes::remove_claim(&dirs, &dir_name)?;
        // The owner epoch file beside the directory goes with it.
        if let Err(e) = super::epoch::remove(&path) {
            tracing::warn!(directory = %path.display(), error = %e, "removing the claim's owner epoch file failed");
        }
        Ok(existed)
    })
    .await?;
    let mut updated = claim.clone();
    let finalizers: Vec<Value> = claim
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| f.iter().filter(|f| *f != FINALIZER).cloned().collect())
        .unwrap_or_default();
    updated["metadata"]["finalizers"] = json!(finalizers);
    let command = Command::Update {
        object: updated,
        precondition_resource_version: None,
        now: Timestamp::now(),
    };
    node.state
        .propose(command)
        .await
        .map_err(propose_error(claim, "release it"))?;
    if existed {
        tracing::info!(claim = %format!("{}/{}", str_at(claim, "/metadata/namespace"), str_at(claim, "/metadata/name")),
            directory = %directory.display(), "claim deleted: removed its directory");
        node.events.record(
            InvolvedObject::of(claim),
            EventType::Normal,
            "DirectoryRemoved",
            format!(
                "claim deleted: removed directory {} on node {}",
                directory.display(),
                node.node_name
            ),
            COMPONENT,
        );
    }
    Ok(())
}
