//! The kubelet: runs the pods bound to this node through the runtime. Decisions are pure
//! ([`plan`], [`status`]) over what is [`observed`]; a [`worker`] task per pod carries them
//! out. On start it adopts what the runtime still runs (containers outlive the agent), so an
//! agent restart never starts a pod twice nor forgets one.
//!
//! Tasks and channels: [`Kubelet::start`] spawns the sync task, which watches the state for
//! pods bound to this node and feeds each worker its pod through a `watch` channel; workers
//! get container exits and probe results on `mpsc` channels; they write status and events
//! to the state.

pub mod container;
pub mod env;
pub mod images;
pub mod network_hook;
pub mod node;
pub mod node_io;
pub mod observed;
pub mod plan;
pub mod podfiles;
pub mod probe;
pub mod status;
pub mod volumes;
pub mod worker;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_runtime::shim::RecoveredState;
use berth_runtime::{ContainerId, PodUid, Runtime};
use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio::sync::watch;

use crate::events::Recorder;
use crate::state::State;
use images::Images;
use observed::{ContainerRun, RunState};
use worker::{Adopted, Worker};

/// Labels the kubelet puts on containers, read back after a restart.
pub mod labels {
    pub const POD_UID: &str = "berth.io/pod-uid";
    pub const POD_NAMESPACE: &str = "berth.io/pod-namespace";
    pub const POD_NAME: &str = "berth.io/pod-name";
    pub const CONTAINER: &str = "berth.io/container";
    pub const ATTEMPT: &str = "berth.io/attempt";
    pub const INIT: &str = "berth.io/init";
    pub const IMAGE: &str = "berth.io/image";
    pub const IMAGE_ID: &str = "berth.io/image-id";
    pub const STOP_SIGNAL: &str = "berth.io/stop-signal";
}

/// The node's pod network, as the kubelet uses it (implemented by the networking layer).
pub trait PodNetwork: Send + Sync {
    /// Gives the pod an address in its network namespace; returns the pod IP.
    fn attach<'a>(
        &'a self,
        pod: &'a Value,
        netns: &'a Path,
    ) -> BoxFuture<'a, Result<IpAddr, String>>;
    /// Releases the pod's network (idempotent).
    fn detach<'a>(&'a self, pod_uid: &'a str) -> BoxFuture<'a, ()>;
}

/// One run of a container, as logs and exec find it.
#[derive(Debug, Clone)]
pub struct RunRef {
    pub id: ContainerId,
    pub attempt: u32,
    pub running: bool,
    pub log_path: PathBuf,
}

/// What the kubelet's parts share.
pub struct NodeContext {
    pub state: State,
    pub runtime: Runtime,
    pub images: Images,
    pub events: Recorder,
    pub node_name: String,
    /// The host's own hostname (for hostNetwork pods).
    pub host_name: String,
    pub data_dir: PathBuf,
    pub run_dir: PathBuf,
    pub cluster_domain: String,
    pub host_resolv: berth_dns::forward::ResolvConf,
    pub host_ip: Option<String>,
    pub node_memory: u64,
    pub network: Option<Arc<dyn PodNetwork>>,
    /// Raised by the heartbeat when this host cannot commit it (see [`node::Fence`]); pod
    /// workers stop their fenced pods while it stands.
    pub fence: node::Fence,
    cluster_dns: Mutex<Vec<IpAddr>>,
    runs: Mutex<HashMap<String, BTreeMap<String, Vec<RunRef>>>>,
    workers: Mutex<HashMap<String, watch::Sender<Option<Arc<Value>>>>>,
}

/// Settings for [`NodeContext::new`].
pub struct NodeSettings {
    pub node_name: String,
    pub data_dir: PathBuf,
    pub run_dir: PathBuf,
    pub cluster_domain: String,
    pub host_ip: Option<String>,
    pub cluster_dns: Vec<IpAddr>,
    pub network: Option<Arc<dyn PodNetwork>>,
}

impl NodeContext {
    pub fn new(
        state: State,
        runtime: Runtime,
        images: Images,
        events: Recorder,
        settings: NodeSettings,
    ) -> NodeContext {
        let host_resolv = berth_dns::forward::host_resolv_conf()
            .map(|(_, r)| r)
            .unwrap_or_default();
        NodeContext {
            state,
            runtime,
            images,
            events,
            node_name: settings.node_name,
            host_name: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default(),
            data_dir: settings.data_dir,
            run_dir: settings.run_dir,
            cluster_domain: settings.cluster_domain,
            host_resolv,
            host_ip: settings.host_ip,
            node_memory: node::memory_bytes(),
            network: settings.network,
            fence: node::Fence::new(),
            cluster_dns: Mutex::new(settings.cluster_dns),
            runs: Mutex::new(HashMap::new()),
            workers: Mutex::new(HashMap::new()),
        }
    }

    /// The DNS server address pods use.
    pub fn cluster_dns(&self) -> Vec<IpAddr> {
        self.cluster_dns.lock().expect("not poisoned").clone()
    }

    pub fn set_cluster_dns(&self, addrs: Vec<IpAddr>) {
        *self.cluster_dns.lock().expect("not poisoned") = addrs;
    }

    /// `<data>/logs/<ns>_<pod>_<uid>/<container>/<attempt>.log`, as kubelet lays out pod logs.
    pub fn log_path(
        &self,
        ns: &str,
        pod: &str,
        uid: &str,
        container: &str,
        attempt: u32,
    ) -> PathBuf {
        self.pod_log_dir(ns, pod, uid)
            .join(container)
            .join(format!("{attempt}.log"))
    }

    pub fn pod_log_dir(&self, ns: &str, pod: &str, uid: &str) -> PathBuf {
        self.data_dir.join("logs").join(format!("{ns}_{pod}_{uid}"))
    }

    fn remove_logs(&self, ns: &str, pod: &str, uid: &str) {
        let _ = std::fs::remove_dir_all(self.pod_log_dir(ns, pod, uid));
    }

    fn register_run(&self, uid: &str, container: &str, run: RunRef) {
        let mut runs = self.runs.lock().expect("not poisoned");
        let list = runs
            .entry(uid.to_string())
            .or_default()
            .entry(container.to_string())
            .or_default();
        list.retain(|r| r.id != run.id);
        list.push(run);
        list.sort_by_key(|r| r.attempt);
    }

    fn set_running(&self, uid: &str, id: &str, running: bool) {
        let mut runs = self.runs.lock().expect("not poisoned");
        for list in runs.entry(uid.to_string()).or_default().values_mut() {
            for r in list.iter_mut().filter(|r| r.id.as_str() == id) {
                r.running = running;
            }
        }
    }

    fn unregister_run(&self, uid: &str, id: &str) {
        let mut runs = self.runs.lock().expect("not poisoned");
        if let Some(containers) = runs.get_mut(uid) {
            for list in containers.values_mut() {
                list.retain(|r| r.id.as_str() != id);
            }
        }
    }

    /// The known runs of a container of a pod, oldest first.
    pub fn runs_of(&self, uid: &str, container: &str) -> Vec<RunRef> {
        self.runs
            .lock()
            .expect("not poisoned")
            .get(uid)
            .and_then(|c| c.get(container))
            .cloned()
            .unwrap_or_default()
    }

    /// Is this container run still running?
    pub fn is_running(&self, uid: &str, id: &ContainerId) -> bool {
        self.runs
            .lock()
            .expect("not poisoned")
            .get(uid)
            .is_some_and(|c| c.values().flatten().any(|r| &r.id == id && r.running))
    }

    fn forget_pod(&self, uid: &str) {
        self.workers.lock().expect("not poisoned").remove(uid);
        self.runs.lock().expect("not poisoned").remove(uid);
    }
}

/// The kubelet of this node.
pub struct Kubelet {
    node: Arc<NodeContext>,
}

impl Kubelet {
    /// Adopts what the runtime still has and starts syncing pods bound to this node.
    pub fn start(
        node: NodeContext,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Kubelet>, berth_runtime::RuntimeError> {
        let node = Arc::new(node);
        let mut adopted = recover(&node)?;
        let kubelet = Arc::new(Kubelet { node: node.clone() });
        let task_node = node.clone();
        tokio::spawn(async move {
            let mut changes = task_node.state.subscribe_changes();
            let mut shutdown = shutdown;
            loop {
                sync(&task_node, &mut adopted, &shutdown);
                tokio::select! {
                    r = changes.changed() => if r.is_err() { break },
                    _ = shutdown.changed() => if *shutdown.borrow() { break },
                }
            }
            // Dropping the senders ends the workers; containers keep running.
            task_node.workers.lock().expect("not poisoned").clear();
        });
        Ok(kubelet)
    }

    pub fn node(&self) -> &Arc<NodeContext> {
        &self.node
    }
}

/// Containers and sandboxes found at start, by pod uid.
fn recover(
    node: &Arc<NodeContext>,
) -> Result<HashMap<String, Adopted>, berth_runtime::RuntimeError> {
    let mut adopted: HashMap<String, Adopted> = HashMap::new();
    for c in node.runtime.recover()? {
        let Some(uid) = c
            .labels
            .get(labels::POD_UID)
            .cloned()
            .or_else(|| c.pod.as_ref().map(|p| p.as_str().to_string()))
        else {
            continue;
        };
        let name = c.labels.get(labels::CONTAINER).cloned().unwrap_or_default();
        let attempt: u32 = c
            .labels
            .get(labels::ATTEMPT)
            .and_then(|a| a.parse().ok())
            .unwrap_or(0);
        let init = c.labels.get(labels::INIT).map(String::as_str) == Some("true");
        let now = chrono::Utc::now();
        let (state, shim) = match c.state {
            RecoveredState::StartUnconfirmed {
                starting_shim,
                reason,
            } => {
                // Not a run: its worker removes it (killing a shim still starting it) and
                // starts the container again.
                tracing::warn!(container = %c.id, pod = %uid, ?starting_shim, %reason, "container start never confirmed; it will be removed and started again");
                adopted.entry(uid).or_default().unconfirmed.push(c.id);
                continue;
            }
            RecoveredState::Running(shim) => {
                let started_at = chrono::DateTime::parse_from_rfc3339(shim.started_at())
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .unwrap_or(now);
                (RunState::Running { started_at }, Some(shim))
            }
            RecoveredState::Exited(record) => (
                RunState::Exited {
                    exit_code: record.exit_code,
                    signal: record.signal,
                    reason: record.reason().to_string(),
                    started_at: record.started_at().unwrap_or(now),
                    finished_at: record.finished_at().unwrap_or(now),
                },
                None,
            ),
            RecoveredState::Unknown { reason } => {
                tracing::warn!(container = %c.id, %reason, "container state unknown after restart");
                (
                    RunState::Unknown {
                        started_at: None,
                        noticed_at: now,
                    },
                    None,
                )
            }
        };
        let running = shim.is_some();
        if let Some(log_path) = &c.log_path {
            node.register_run(
                &uid,
                &name,
                RunRef {
                    id: c.id.clone(),
                    attempt,
                    running,
                    log_path: log_path.clone(),
                },
            );
        }
        tracing::info!(container = %c.id, pod = %uid, running, "adopted a container");
        let run = ContainerRun {
            id: c.id.as_str().to_string(),
            name,
            attempt,
            init,
            state,
            image: c.labels.get(labels::IMAGE).cloned().unwrap_or_default(),
            image_id: c.labels.get(labels::IMAGE_ID).cloned().unwrap_or_default(),
        };
        adopted.entry(uid).or_default().runs.push((
            run,
            shim,
            c.labels.get(labels::STOP_SIGNAL).cloned(),
        ));
    }
    for uid in node.runtime.sandbox_pods() {
        adopted.entry(uid.as_str().to_string()).or_default().sandbox = true;
    }
    Ok(adopted)
}

/// Starts a worker for each pod bound to this node and feeds existing workers their pod.
fn sync(
    node: &Arc<NodeContext>,
    adopted: &mut HashMap<String, Adopted>,
    shutdown: &watch::Receiver<bool>,
) {
    let (pods, _) = node.state.list("Pod", None);
    let mine: HashMap<String, Arc<Value>> = pods
        .iter()
        .filter(|p| {
            p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node.node_name.as_str())
        })
        .filter_map(|p| {
            p.pointer("/metadata/uid")
                .and_then(Value::as_str)
                .map(|uid| (uid.to_string(), p.clone()))
        })
        .collect();
    let mut workers = node.workers.lock().expect("not poisoned");
    for (uid, pod) in &mine {
        match workers.get(uid) {
            Some(tx) => {
                tx.send_if_modified(|current| {
                    let changed = current
                        .as_ref()
                        .map(|c| c.pointer("/metadata/resourceVersion"))
                        != Some(pod.pointer("/metadata/resourceVersion"));
                    if changed {
                        *current = Some(pod.clone());
                    }
                    changed
                });
            }
            None => {
                let (tx, rx) = watch::channel(Some(pod.clone()));
                let adopted_here = adopted.remove(uid).unwrap_or_default();
                let worker = Worker::new(
                    node.clone(),
                    uid.clone(),
                    rx,
                    adopted_here,
                    shutdown.clone(),
                );
                tokio::spawn(worker.run());
                workers.insert(uid.clone(), tx);
            }
        }
    }
    // Pods that left the state: their workers stop them.
    for (uid, tx) in workers.iter() {
        if !mine.contains_key(uid) {
            tx.send_if_modified(|current| {
                let was = current.is_some();
                *current = None;
                was
            });
        }
    }
    // Containers and sandboxes of pods the state no longer knows (deleted while the agent was
    // down): removed.
    let orphans: Vec<String> = adopted
        .keys()
        .filter(|uid| !mine.contains_key(*uid))
        .cloned()
        .collect();
    for uid in orphans {
        let leftovers = adopted.remove(&uid).unwrap_or_default();
        let node = node.clone();
        tokio::spawn(async move { remove_orphan(&node, &uid, leftovers).await });
    }
}

/// Stops and removes what is left of a pod the cluster no longer has.
async fn remove_orphan(node: &NodeContext, uid: &str, leftovers: Adopted) {
    tracing::info!(pod = %uid, "removing the containers of a pod that no longer exists");
    for id in &leftovers.unconfirmed {
        let _ = node.runtime.remove_container(id, true).await;
    }
    for (run, shim, _) in leftovers.runs {
        if let Some(shim) = shim {
            let _ = node
                .runtime
                .stop_container(
                    &shim,
                    libc::SIGTERM,
                    std::time::Duration::from_secs(10),
                    None,
                )
                .await;
        }
        if let Ok(id) = ContainerId::new(&run.id) {
            let _ = node.runtime.remove_container(&id, true).await;
        }
    }
    if let Some(network) = &node.network {
        network.detach(uid).await;
    }
    if let Ok(pod) = PodUid::new(uid) {
        let _ = node.runtime.remove_pod_volumes(&pod).await;
        let _ = node.runtime.remove_sandbox(&pod).await;
    }
    podfiles::remove(node, uid);
    node.forget_pod(uid);
}
