//! The pod worker: one task per pod on this node. It observes (container exits, probe
//! results, the pod object), asks [`super::plan::plan`] what to do, does it through the runtime,
//! and publishes the status [`super::status::pod_status`] computes. Containers outlive the
//! worker: when the agent stops, workers stop and containers keep running; the next agent
//! adopts them (see [`super::Kubelet`]).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_runtime::sandbox::SandboxConfig;
use berth_runtime::shim::LogConfig;
use berth_runtime::{
    ContainerExit, ContainerId, ContainerRequest, ExecRequest, PodUid, RootfsSource, Shim,
};
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use super::container::{container_config, mounts};
use super::env::{PodFacts, environment};
use super::images::error_chain;
use super::observed::{
    Backoff, ClaimRefusal, ContainerRun, Observed, ProbeResults, RunState, StartFailure,
};
use super::plan::{Action, KillReason, plan};
use super::probe::{self, ProbeKind, ProbeResult, ProbeTarget};
use super::{NodeContext, RunRef, labels};
use crate::events::{EventType, InvolvedObject};
use crate::state::{Command, ObjectKey, Propagation, Timestamp};

/// Something that happened to a pod's containers.
#[derive(Debug)]
pub enum WorkerEvent {
    Exited {
        name: String,
        attempt: u32,
        exit: ContainerExit,
    },
    Probe(ProbeResult),
    Stopped {
        name: String,
    },
}

/// What the kubelet hands a worker when it adopts running or ended containers.
#[derive(Default)]
pub struct Adopted {
    pub runs: Vec<(ContainerRun, Option<Shim>, Option<String>)>,
    pub sandbox: bool,
    /// Containers whose start was never confirmed: removed (a shim still starting one is
    /// killed) before anything else, and started again as the plan decides.
    pub unconfirmed: Vec<ContainerId>,
}

/// How often the claims of a pod they refused are checked again (a few small file reads).
pub const CLAIMS_RECHECK: Duration = Duration::from_secs(10);

/// Retry delay for configuration problems (a missing ConfigMap may appear any moment).
const CONFIG_RETRY: Duration = Duration::from_secs(2);

pub struct Worker {
    node: Arc<NodeContext>,
    uid: String,
    pod_rx: watch::Receiver<Option<Arc<Value>>>,
    /// The host's fence (see `kubelet::node::Fence`).
    fence_rx: watch::Receiver<bool>,
    events_tx: mpsc::Sender<WorkerEvent>,
    events_rx: mpsc::Receiver<WorkerEvent>,
    probe_tx: mpsc::Sender<ProbeResult>,
    probe_rx: mpsc::Receiver<ProbeResult>,
    observed: Observed,
    /// Running containers' shims by container name.
    shims: HashMap<String, Shim>,
    /// Stop signals of the images of running containers.
    stop_signals: HashMap<String, i32>,
    probes: HashMap<String, Vec<tokio::task::JoinHandle<()>>>,
    volume_paths: BTreeMap<String, PathBuf>,
    last_pod: Option<Arc<Value>>,
    /// The status last published (or read from the pod).
    last_status: Value,
    /// Adopted containers whose start was never confirmed, removed when the worker starts.
    unconfirmed: Vec<ContainerId>,
    shutdown: watch::Receiver<bool>,
}

impl Worker {
    pub fn new(
        node: Arc<NodeContext>,
        uid: String,
        pod_rx: watch::Receiver<Option<Arc<Value>>>,
        adopted: Adopted,
        shutdown: watch::Receiver<bool>,
    ) -> Worker {
        let (events_tx, events_rx) = mpsc::channel(64);
        let (probe_tx, probe_rx) = mpsc::channel(64);
        let pod = pod_rx.borrow().clone();
        let last_status = pod
            .as_ref()
            .and_then(|p| p.get("status").cloned())
            .unwrap_or(Value::Null);
        let fence_rx = node.fence.subscribe();
        let mut w = Worker {
            node,
            uid,
            pod_rx,
            fence_rx,
            events_tx,
            events_rx,
            probe_tx,
            probe_rx,
            observed: Observed::default(),
            shims: HashMap::new(),
            stop_signals: HashMap::new(),
            probes: HashMap::new(),
            volume_paths: BTreeMap::new(),
            last_pod: pod.clone(),
            last_status,
            unconfirmed: Vec::new(),
            shutdown,
        };
        w.adopt(adopted, pod.as_deref());
        w
    }

    /// Takes over containers found by the runtime after an agent restart, and what the last
    /// published status says (so readiness does not flap and start time is kept).
    fn adopt(&mut self, adopted: Adopted, pod: Option<&Value>) {
        self.unconfirmed = adopted.unconfirmed;
        // A sandbox without any container may be one whose setup (network, volumes, /etc
        // files) the agent's crash interrupted: it is set up again (each step is idempotent)
        // before a container starts in it. Containers only start in a finished sandbox.
        self.observed.sandbox_ready = adopted.sandbox && !adopted.runs.is_empty();
        // Containers of the pod ran here before the agent restarted: the claims were checked
        // when they first started (and a restart inside a running pod needs no new check).
        self.observed.claims_owned = self.observed.sandbox_ready;
        let status = pod.and_then(|p| p.get("status"));
        self.observed.start_time = status
            .and_then(|s| s["startTime"].as_str())
            .and_then(|t| t.parse().ok());
        self.observed.pod_ip = status.and_then(|s| s["podIP"].as_str()).map(str::to_string);
        self.observed.host_ip = self.node.host_ip.clone();
        let mut runs = adopted.runs;
        runs.sort_by_key(|(r, _, _)| (r.name.clone(), r.attempt));
        for (run, shim, stop_signal) in runs {
            let name = run.name.clone();
            let attempt = run.attempt;
            if let Some(shim) = shim {
                // Readiness and startup as last published for this very run, until the probes
                // say otherwise; a run the agent never published counts as just started.
                let published = status
                    .and_then(|s| {
                        s.get(if run.init {
                            "initContainerStatuses"
                        } else {
                            "containerStatuses"
                        })
                    })
                    .and_then(Value::as_array)
                    .and_then(|cs| cs.iter().find(|c| c["name"] == name.as_str()));
                let spec = pod.and_then(|p| find_container_value(p, &name, run.init));
                let has = |probe: &str| spec.is_some_and(|c| !c[probe].is_null());
                self.observed.probes.insert(
                    name.clone(),
                    ProbeResults::adopted(
                        has("startupProbe"),
                        has("readinessProbe"),
                        published,
                        &super::status::container_id(&run),
                    ),
                );
                self.watch_exit(&name, attempt, shim.clone());
                self.shims.insert(name.clone(), shim);
                if let Some(sig) = stop_signal.as_deref().and_then(signal_number) {
                    self.stop_signals.insert(name.clone(), sig);
                }
                // Probes run again for a container that kept running while the agent was
                // down (readiness starts from the verdicts above).
                if let Some(pod) = pod.filter(|_| !run.init) {
                    let container =
                        spec.and_then(|c| serde_json::from_value::<Container>(c.clone()).ok());
                    if let (Some(container), Ok(id)) = (container, ContainerId::new(run.id.clone()))
                    {
                        self.start_probes(pod, &container, &id, attempt);
                    }
                }
            }
            self.observed.runs.entry(name).or_default().push(run);
        }
        // Restart counts continue from the published status even if old runs are gone.
        if let Some(status) = status {
            for key in ["containerStatuses", "initContainerStatuses"] {
                for cs in status
                    .get(key)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let name = cs["name"].as_str().unwrap_or("").to_string();
                    let count = cs["restartCount"].as_u64().unwrap_or(0) as u32;
                    if count > 0 {
                        self.observed.backoff.entry(name).or_insert(Backoff {
                            count: count.min(6),
                        });
                    }
                }
            }
        }
    }

    /// Removes adopted containers whose start was never confirmed (killing a shim still
    /// starting one), before the plan starts them again: nothing of an interrupted start runs
    /// beside its replacement.
    async fn remove_unconfirmed(&mut self) {
        for id in std::mem::take(&mut self.unconfirmed) {
            match self.node.runtime.remove_container(&id, true).await {
                Ok(()) => {
                    tracing::info!(pod = %self.uid, container = %id, "removed a container whose start the agent never confirmed; it starts again")
                }
                Err(e) => {
                    tracing::warn!(pod = %self.uid, container = %id, error = %error_chain(&e), "removing a container whose start was never confirmed")
                }
            }
        }
    }

    fn pod(&self) -> Option<Arc<Value>> {
        self.pod_rx.borrow().clone()
    }

    fn involved(&self) -> InvolvedObject {
        let mut i = self
            .last_pod
            .as_deref()
            .map(InvolvedObject::of)
            .unwrap_or(InvolvedObject {
                kind: "Pod".into(),
                api_version: "v1".into(),
                namespace: String::new(),
                name: String::new(),
                uid: self.uid.clone(),
                field_path: None,
            });
        if i.kind.is_empty() {
            i.kind = "Pod".into();
            i.api_version = "v1".into();
        }
        i
    }

    fn record(
        &self,
        container: Option<&str>,
        type_: EventType,
        reason: &str,
        message: impl Into<String>,
    ) {
        let mut involved = self.involved();
        if let Some(c) = container {
            involved = involved.with_field_path(format!("spec.containers{{{c}}}"));
        }
        self.node
            .events
            .record(involved, type_, reason, message, "kubelet");
    }

    /// Runs until the pod is gone from this node (or the agent shuts down).
    pub async fn run(mut self) {
        self.remove_unconfirmed().await;
        loop {
            if *self.shutdown.borrow() {
                self.stop_probes_all();
                return;
            }
            let current = self.pod();
            if let Some(p) = &current {
                self.last_pod = Some(p.clone());
            }
            let Some(pod_value) = self.last_pod.clone() else {
                return;
            };
            let pod: Pod = match serde_json::from_value((*pod_value).clone()) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(pod = %self.uid, error = %e, "a stored pod cannot be decoded; leaving it alone");
                    return;
                }
            };
            // A pod removed from the state (force deletion) is stopped as a deleted one.
            let pod = if current.is_none() {
                mark_deleted(pod)
            } else {
                pod
            };
            let fenced = *self.fence_rx.borrow() && super::node::fenced_pod(&pod_value);
            if fenced != self.observed.fenced {
                if fenced {
                    self.record(None, EventType::Warning, "Fenced", "this node cannot reach the cluster's quorum: stopping the pod's containers until it can");
                } else {
                    self.record(
                        None,
                        EventType::Normal,
                        "FenceLifted",
                        "this node reaches the cluster's quorum again",
                    );
                }
                self.observed.fenced = fenced;
                if fenced {
                    // While fenced the cluster may move the identity; whatever starts after the
                    // fence falls checks the claims' owners again.
                    self.observed.claims_owned = false;
                }
            }
            let now = Utc::now();
            let decided = plan(&pod, &self.observed, now);
            let mut acted = false;
            let mut finished = false;
            for action in decided.actions {
                acted = true;
                match action {
                    Action::OwnClaims => self.own_claims(&pod, &pod_value).await,
                    Action::CreateSandbox => self.create_sandbox(&pod, &pod_value).await,
                    Action::StartContainer {
                        name,
                        init,
                        attempt,
                    } => {
                        self.start_container(&pod, &pod_value, &name, init, attempt)
                            .await
                    }
                    Action::KillContainer {
                        name,
                        reason,
                        grace,
                    } => self.kill_container(&pod, &name, reason, grace),
                    Action::RemoveRun { id } => self.remove_run(&id).await,
                    Action::TeardownSandbox => self.teardown(&pod).await,
                    Action::Finalize => {
                        finished = self.finalize(&pod, current.is_none()).await;
                    }
                }
            }
            if current.is_some() && !finished {
                self.publish_status(&pod, &pod_value).await;
            }
            if finished {
                self.node.forget_pod(&self.uid);
                return;
            }
            if acted {
                continue;
            }
            let wake = decided
                .wake_at
                .map(|at| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO));
            let sleep = async {
                match wake {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = self.pod_rx.changed() => {
                    if changed.is_err() {
                        // The kubelet dropped the pod: it is shutting down.
                        self.stop_probes_all();
                        return;
                    }
                }
                Some(event) = self.events_rx.recv() => self.observe(event),
                Some(result) = self.probe_rx.recv() => self.observe(WorkerEvent::Probe(result)),
                Ok(()) = self.fence_rx.changed() => {}
                _ = self.shutdown.changed() => {}
                _ = sleep => {}
            }
            // Take whatever else is queued before planning again.
            while let Ok(event) = self.events_rx.try_recv() {
                self.observe(event);
            }
            while let Ok(result) = self.probe_rx.try_recv() {
                self.observe(WorkerEvent::Probe(result));
            }
        }
    }

    fn observe(&mut self, event: WorkerEvent) {
        match event {
            WorkerEvent::Exited {
                name,
                attempt,
                exit,
            } => {
                self.stop_probes(&name);
                self.shims.remove(&name);
                let pod_name = self
                    .last_pod
                    .as_ref()
                    .and_then(|p| p.pointer("/metadata/name"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                if let Some(run) = self
                    .observed
                    .runs
                    .get_mut(&name)
                    .and_then(|runs| runs.iter_mut().find(|r| r.attempt == attempt))
                {
                    let started_at = run.state.started_at();
                    run.state = match exit {
                        ContainerExit::Exited(record) => RunState::Exited {
                            exit_code: record.exit_code,
                            signal: record.signal,
                            reason: record.reason().to_string(),
                            started_at: record.started_at().or(started_at).unwrap_or_else(Utc::now),
                            finished_at: record.finished_at().unwrap_or_else(Utc::now),
                        },
                        ContainerExit::Unknown { reason } => {
                            tracing::warn!(pod = %pod_name, container = %name, %reason, "container ended without an exit record");
                            RunState::Unknown {
                                started_at,
                                noticed_at: Utc::now(),
                            }
                        }
                    };
                    // A run that lasted long enough resets the crash-loop back-off.
                    if let (Some(start), Some(end)) =
                        (run.state.started_at(), run.state.finished_at())
                    {
                        if end - start >= super::observed::BACKOFF_RESET_AFTER {
                            self.observed.backoff.remove(&name);
                        }
                    }
                    let id = run.id.clone();
                    self.node.set_running(&self.uid, &id, false);
                }
                if let Some(p) = self.observed.probes.get_mut(&name) {
                    p.ready = false;
                    p.failed = None;
                }
            }
            WorkerEvent::Probe(result) => {
                let current = self.observed.current(&result.container).map(|r| r.attempt);
                if current != Some(result.attempt) {
                    return;
                }
                let readiness_probe = self
                    .last_pod
                    .as_deref()
                    .and_then(|pod| {
                        find_container_value(pod, &result.container, false)
                            .or_else(|| find_container_value(pod, &result.container, true))
                    })
                    .is_some_and(|c| !c["readinessProbe"].is_null());
                let p = self
                    .observed
                    .probes
                    .entry(result.container.clone())
                    .or_default();
                match (result.kind, &result.outcome) {
                    (ProbeKind::Startup, Ok(())) => p.startup_passed(readiness_probe),
                    (ProbeKind::Readiness, Ok(())) => p.ready = true,
                    (ProbeKind::Readiness, Err(_)) => p.ready = false,
                    (ProbeKind::Liveness, Ok(())) => {}
                    (ProbeKind::Startup | ProbeKind::Liveness, Err(message)) => {
                        p.failed = Some(message.clone())
                    }
                }
            }
            WorkerEvent::Stopped { name } => {
                self.observed.stopping.remove(&name);
            }
        }
    }

    fn facts(&self) -> PodFacts {
        PodFacts {
            pod_ip: self.observed.pod_ip.clone(),
            host_ip: self.node.host_ip.clone(),
            node_name: self.node.node_name.clone(),
        }
    }

    async fn create_sandbox(&mut self, pod: &Pod, pod_value: &Value) {
        let uid = match PodUid::new(&self.uid) {
            Ok(u) => u,
            Err(e) => {
                self.observed.sandbox_error = Some(e.to_string());
                return;
            }
        };
        let spec = pod.spec.as_ref();
        let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
        if self.node.runtime.sandbox(&uid).is_none() {
            let hostname = berth_dns::podfiles::pod_hostname(
                pod.metadata.name.as_deref().unwrap_or(""),
                spec.and_then(|s| s.hostname.as_deref()),
            );
            let resources = berth_runtime::cgroup::PodResources::default();
            let config = SandboxConfig {
                pod_uid: uid.clone(),
                hostname,
                host_network,
                host_ipc: spec.and_then(|s| s.host_ipc).unwrap_or(false),
                resources,
                shm_size: None,
            };
            if let Err(e) = self.node.runtime.create_sandbox(config).await {
                let message = error_chain(&e);
                self.record(
                    None,
                    EventType::Warning,
                    "FailedCreatePodSandBox",
                    format!("Failed to create pod sandbox: {message}"),
                );
                return self.sandbox_failed(message);
            }
        }
        // The pod's network: an address on the node's pod network, before any container.
        if !host_network {
            if let (Some(network), Some(sandbox)) =
                (&self.node.network, self.node.runtime.sandbox(&uid))
            {
                if let Some(netns) = sandbox.netns_path() {
                    match network.attach(pod_value, &netns).await {
                        Ok(ip) => self.observed.pod_ip = Some(ip.to_string()),
                        Err(message) => {
                            self.record(
                                None,
                                EventType::Warning,
                                "FailedCreatePodSandBox",
                                format!("Failed to set up the pod's network: {message}"),
                            );
                            return self.sandbox_failed(message);
                        }
                    }
                }
            }
        } else {
            self.observed.pod_ip = self.node.host_ip.clone();
        }
        if let Err(message) = self.prepare_volumes(pod).await {
            return self.sandbox_failed(message);
        }
        if let Err(e) =
            super::podfiles::write(&self.node, pod, &self.uid, self.observed.pod_ip.as_deref())
        {
            return self.sandbox_failed(format!("writing the pod's /etc files: {e}"));
        }
        self.observed.sandbox_error = None;
        self.observed.sandbox_retry_at = None;
        self.observed.backoff.remove("*sandbox*");
        self.observed.sandbox_ready = true;
        if self.observed.start_time.is_none() {
            self.observed.start_time = Some(Utc::now());
        }
    }

    /// Checks the owner files of the pod's claim directories and records its assignment
    /// epoch in them (see [`crate::claims::epoch`]). A refusal (a stale copy of the pod, or an
    /// owner file that cannot be used) starts nothing, shows in the pod's status, and is
    /// reported once (event and log) per distinct reason; the files are read again every
    /// [`CLAIMS_RECHECK`], so removing an owner file by hand lets the pod start.
    async fn own_claims(&mut self, pod: &Pod, pod_value: &Arc<Value>) {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let claims_dir = self.node.runtime.dirs().claims_dir();
        let mut directories = Vec::new();
        for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            let Some(claim) = &volume.persistent_volume_claim else {
                continue;
            };
            // Only a claim held by this node has its directory (and owner file) here: until
            // it is, the pod waits as for any volume that cannot be set up yet.
            if let Err(problem) = crate::claims::volume_source(
                &self.node.state,
                ns,
                &claim.claim_name,
                &self.node.node_name,
            ) {
                let message = format!(
                    "MountVolume.SetUp failed for volume {:?} : {problem}",
                    volume.name
                );
                self.record(None, EventType::Warning, "FailedMount", message.clone());
                self.sandbox_failed(message);
                self.observed.claims_retry_at = self.observed.sandbox_retry_at;
                return;
            }
            directories.push(claims_dir.join(crate::claims::directory_name(ns, &claim.claim_name)));
        }
        let value = pod_value.clone();
        let checked = tokio::task::spawn_blocking(move || {
            crate::claims::epoch::claim_for_start(&directories, &value)
        })
        .await
        .expect("the claim owner check does not panic");
        match checked {
            Ok(()) => {
                if self.observed.claim_refusal.take().is_some() {
                    tracing::info!(pod = %self.pod_name(), "the pod's claims accept it now; starting it");
                }
                self.observed.claims_owned = true;
                self.observed.claims_retry_at = None;
                self.observed.sandbox_retry_at = None;
            }
            Err(e) => {
                let refusal = ClaimRefusal {
                    reason: e.reason().to_string(),
                    message: format!("{}; {}", error_chain(&e), e.resolution()),
                };
                if self.observed.claim_refusal.as_ref() != Some(&refusal) {
                    tracing::warn!(pod = %self.pod_name(), reason = %refusal.reason, "{}", refusal.message);
                    self.record(
                        None,
                        EventType::Warning,
                        &refusal.reason,
                        refusal.message.clone(),
                    );
                }
                self.observed.claim_refusal = Some(refusal);
                self.observed.claims_retry_at = Some(
                    Utc::now() + chrono::Duration::from_std(CLAIMS_RECHECK).unwrap_or_default(),
                );
            }
        }
    }

    /// The pod's `namespace/name`, for logs.
    fn pod_name(&self) -> String {
        let i = self.involved();
        format!("{}/{}", i.namespace, i.name)
    }

    /// Records why the sandbox is not ready and when to try again (1 s doubling to 1 min).
    fn sandbox_failed(&mut self, message: String) {
        let backoff = self.observed.backoff.entry("*sandbox*".into()).or_default();
        backoff.count += 1;
        let delay =
            chrono::Duration::seconds(1 << backoff.count.min(6)).min(chrono::Duration::seconds(60));
        self.observed.sandbox_error = Some(message);
        self.observed.sandbox_retry_at = Some(Utc::now() + delay);
    }

    /// Prepares every volume of the pod (idempotent). A problem is a FailedMount event and the
    /// pod waits.
    async fn prepare_volumes(&mut self, pod: &Pod) -> Result<(), String> {
        let uid = PodUid::new(&self.uid).map_err(|e| e.to_string())?;
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let facts = self.facts();
        let fs_group = pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.as_ref())
            .and_then(|s| s.fs_group)
            .map(|g| g as u32);
        for volume in pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .into_iter()
            .flatten()
        {
            let state = self.node.state.clone();
            let lookup = |kind: &str, name: &str| state.get(kind, &ns, name);
            let node_name = self.node.node_name.clone();
            let claim_state = self.node.state.clone();
            let claim =
                |name: &str| crate::claims::volume_source(&claim_state, &ns, name, &node_name);
            let source = match super::volumes::volume_source(pod, volume, &facts, &lookup, &claim) {
                Ok(s) => s,
                Err(problem) => {
                    let message = format!(
                        "MountVolume.SetUp failed for volume {:?} : {problem}",
                        volume.name
                    );
                    self.record(None, EventType::Warning, "FailedMount", message.clone());
                    return Err(message);
                }
            };
            match self
                .node
                .runtime
                .prepare_volume(&uid, &volume.name, source, fs_group)
                .await
            {
                Ok(prepared) => {
                    self.volume_paths.insert(volume.name.clone(), prepared.path);
                }
                Err(e) => {
                    let message = format!(
                        "MountVolume.SetUp failed for volume {:?} : {}",
                        volume.name,
                        error_chain(&e)
                    );
                    self.record(None, EventType::Warning, "FailedMount", message.clone());
                    return Err(message);
                }
            }
        }
        Ok(())
    }

    fn start_failure(&mut self, name: &str, reason: &str, message: String, retry: Duration) {
        self.record(
            Some(name),
            EventType::Warning,
            "Failed",
            format!("Error: {message}"),
        );
        self.observed.failures.insert(
            name.to_string(),
            StartFailure {
                reason: reason.to_string(),
                message,
                retry_at: Utc::now() + chrono::Duration::from_std(retry).unwrap_or_default(),
            },
        );
    }

    async fn start_container(
        &mut self,
        pod: &Pod,
        pod_value: &Value,
        name: &str,
        init: bool,
        attempt: u32,
    ) {
        let Some(container) = find_container(pod, name, init).cloned() else {
            return;
        };
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let pod_name = pod.metadata.name.clone().unwrap_or_default();

        // The image, by its pull policy.
        let reference = container.image.clone().unwrap_or_default();
        let policy = container
            .image_pull_policy
            .clone()
            .unwrap_or_else(|| "IfNotPresent".into());
        let secrets: Vec<Arc<Value>> = pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|r| self.node.state.get("Secret", &ns, &r.name))
            .collect();
        let events = self.node.events.clone();
        let involved = self
            .involved()
            .with_field_path(format!("spec.containers{{{name}}}"));
        let report = move |t: EventType, reason: &'static str, message: String| {
            events.record(involved.clone(), t, reason, message, "kubelet");
        };
        let image = match self
            .node
            .images
            .ensure(&reference, &policy, &secrets, &report)
            .await
        {
            Ok(image) => image,
            Err(failure) => {
                let previous = self.observed.failures.get(name).map(|f| f.reason.clone());
                let backoff = self
                    .observed
                    .backoff
                    .entry(format!("image:{name}"))
                    .or_default();
                backoff.count += 1;
                let delay = backoff
                    .delay()
                    .to_std()
                    .unwrap_or(Duration::from_secs(10))
                    .max(Duration::from_secs(1));
                let reason = match (failure.reason, previous.as_deref()) {
                    ("ErrImagePull", Some("ErrImagePull" | "ImagePullBackOff")) => {
                        "ImagePullBackOff"
                    }
                    (r, _) => r,
                };
                if reason == "ImagePullBackOff" {
                    self.record(
                        Some(name),
                        EventType::Normal,
                        "BackOff",
                        format!("Back-off pulling image {reference:?}"),
                    );
                }
                self.start_failure(name, reason, failure.message, delay);
                return;
            }
        };
        self.observed.backoff.remove(&format!("image:{name}"));

        // Environment, config and mounts.
        if self.volume_paths.is_empty()
            && pod
                .spec
                .as_ref()
                .and_then(|s| s.volumes.as_ref())
                .is_some_and(|v| !v.is_empty())
        {
            if let Err(message) = self.prepare_volumes(pod).await {
                self.start_failure(name, "CreateContainerConfigError", message, CONFIG_RETRY);
                return;
            }
        }
        let state = self.node.state.clone();
        let lookup = |kind: &str, n: &str| state.get(kind, &ns, n);
        // The container's environment, OCI config and mounts: any of them failing is the
        // same CreateContainerConfigError.
        let prepared = environment(pod, &container, &self.facts(), &lookup)
            .map_err(|e| e.to_string())
            .and_then(|env| {
                let config = container_config(
                    pod,
                    &container,
                    env.clone(),
                    image.config.user.as_deref(),
                    self.node.node_memory,
                )
                .map_err(|e| e.to_string())?;
                let mounts =
                    mounts(&container, &self.volume_paths, &env).map_err(|e| e.to_string())?;
                Ok((config, mounts))
            });
        let (config, container_mounts) = match prepared {
            Ok(prepared) => prepared,
            Err(message) => {
                return self.start_failure(
                    name,
                    "CreateContainerConfigError",
                    message,
                    CONFIG_RETRY,
                );
            }
        };
        let id = match ContainerId::new(format!("{}-{name}-{attempt}", self.uid)) {
            Ok(id) => id,
            Err(e) => {
                return self.start_failure(
                    name,
                    "CreateContainerConfigError",
                    e.to_string(),
                    CONFIG_RETRY,
                );
            }
        };
        let uid = PodUid::new(&self.uid).expect("checked when the sandbox was made");
        // A leftover of this exact run (a crash between start and record) is removed first.
        let _ = self.node.runtime.remove_container(&id, true).await;
        let log_path = self.node.log_path(&ns, &pod_name, &self.uid, name, attempt);
        let image_id = image_id(&image);
        let mut labels = BTreeMap::new();
        labels.insert(labels::POD_UID.into(), self.uid.clone());
        labels.insert(labels::POD_NAMESPACE.into(), ns.clone());
        labels.insert(labels::POD_NAME.into(), pod_name.clone());
        labels.insert(labels::CONTAINER.into(), name.to_string());
        labels.insert(labels::ATTEMPT.into(), attempt.to_string());
        labels.insert(labels::INIT.into(), init.to_string());
        labels.insert(labels::IMAGE.into(), reference.clone());
        labels.insert(labels::IMAGE_ID.into(), image_id.clone());
        if let Some(sig) = &image.stop_signal {
            labels.insert(labels::STOP_SIGNAL.into(), sig.clone());
        }
        let request = ContainerRequest {
            id: id.clone(),
            pod: uid,
            rootfs: RootfsSource::Overlay {
                lower_dirs: image.layer_dirs(),
            },
            image: image.config.clone(),
            config,
            mounts: container_mounts,
            etc_files: super::podfiles::etc_files(&self.node, &self.uid, pod),
            log: LogConfig::new(log_path.clone()),
            labels,
        };
        // Crash-loop back-off counts restarts.
        if attempt > 0 {
            self.observed
                .backoff
                .entry(name.to_string())
                .or_default()
                .count += 1;
        }
        match self.node.runtime.start_container(request).await {
            Ok(shim) => {
                self.observed.failures.remove(name);
                let started_at = parse_time(shim.started_at()).unwrap_or_else(Utc::now);
                self.record(
                    Some(name),
                    EventType::Normal,
                    "Started",
                    format!("Started container {name}"),
                );
                let run = ContainerRun {
                    id: id.as_str().to_string(),
                    name: name.to_string(),
                    attempt,
                    init,
                    state: RunState::Running { started_at },
                    image: reference,
                    image_id,
                };
                self.observed
                    .runs
                    .entry(name.to_string())
                    .or_default()
                    .push(run);
                self.observed.probes.insert(
                    name.to_string(),
                    ProbeResults::at_start(
                        container.startup_probe.is_some(),
                        container.readiness_probe.is_some(),
                    ),
                );
                if let Some(sig) = image.stop_signal.as_deref().and_then(signal_number) {
                    self.stop_signals.insert(name.to_string(), sig);
                }
                self.node.register_run(
                    &self.uid,
                    name,
                    RunRef {
                        id: id.clone(),
                        attempt,
                        running: true,
                        log_path,
                    },
                );
                self.watch_exit(name, attempt, shim.clone());
                self.start_probes(pod_value, &container, &id, attempt);
                self.shims.insert(name.to_string(), shim);
                if self.observed.start_time.is_none() {
                    self.observed.start_time = Some(Utc::now());
                }
            }
            Err(e) => {
                let message = error_chain(&e);
                let delay = self
                    .observed
                    .backoff
                    .get(name)
                    .copied()
                    .unwrap_or_default()
                    .delay();
                self.start_failure(
                    name,
                    "RunContainerError",
                    message,
                    delay
                        .to_std()
                        .unwrap_or_default()
                        .max(Duration::from_secs(1)),
                );
            }
        }
    }

    fn start_probes(
        &mut self,
        pod_value: &Value,
        container: &Container,
        id: &ContainerId,
        attempt: u32,
    ) {
        if container.startup_probe.is_none()
            && container.readiness_probe.is_none()
            && container.liveness_probe.is_none()
        {
            return;
        }
        let netns = PodUid::new(&self.uid)
            .ok()
            .and_then(|u| self.node.runtime.sandbox(&u))
            .and_then(|s| s.netns_path());
        let target = ProbeTarget {
            runtime: self.node.runtime.clone(),
            container_id: id.clone(),
            container: container.clone(),
            attempt,
            netns,
            pod_ip: self
                .observed
                .pod_ip
                .as_deref()
                .and_then(|ip| ip.parse().ok()),
            involved: InvolvedObject::of(pod_value),
            events: self.node.events.clone(),
        };
        let handles = probe::start(target, self.probe_tx.clone());
        self.probes.insert(container.name.clone(), handles);
    }

    fn stop_probes(&mut self, name: &str) {
        for h in self.probes.remove(name).into_iter().flatten() {
            h.abort();
        }
    }

    fn stop_probes_all(&mut self) {
        for (_, handles) in self.probes.drain() {
            for h in handles {
                h.abort();
            }
        }
    }

    fn watch_exit(&self, name: &str, attempt: u32, shim: Shim) {
        let tx = self.events_tx.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            let exit = match shim.wait().await {
                Ok(exit) => exit,
                Err(e) => ContainerExit::Unknown {
                    reason: error_chain(&e),
                },
            };
            let _ = tx
                .send(WorkerEvent::Exited {
                    name,
                    attempt,
                    exit,
                })
                .await;
        });
    }

    fn kill_container(
        &mut self,
        pod: &Pod,
        name: &str,
        reason: KillReason,
        grace: chrono::Duration,
    ) {
        let Some(shim) = self.shims.get(name).cloned() else {
            return;
        };
        self.observed.stopping.insert(name.to_string());
        let message = match &reason {
            KillReason::ProbeFailed(m) => {
                format!("Container {name} failed: {m}, will be restarted")
            }
            KillReason::PodDeleted | KillReason::DeadlineExceeded => {
                format!("Stopping container {name}")
            }
            KillReason::Fenced => format!("Stopping container {name}: this node is fenced"),
        };
        self.record(Some(name), EventType::Normal, "Killing", message);
        // No preStop hook when the pod's deadline or a probe kills it? kubelet runs preStop for
        // every kill; so does berth.
        let container = find_container(pod, name, false)
            .or_else(|| find_container(pod, name, true))
            .cloned();
        let pre_stop = container
            .as_ref()
            .and_then(|c| c.lifecycle.as_ref())
            .and_then(|l| l.pre_stop.as_ref())
            .cloned();
        let signal = self
            .stop_signals
            .get(name)
            .copied()
            .unwrap_or(libc::SIGTERM);
        let runtime = self.node.runtime.clone();
        let tx = self.events_tx.clone();
        let name = name.to_string();
        let netns = PodUid::new(&self.uid)
            .ok()
            .and_then(|u| self.node.runtime.sandbox(&u))
            .and_then(|s| s.netns_path());
        let pod_ip = self.observed.pod_ip.clone();
        let grace = grace.to_std().unwrap_or_default();
        tokio::spawn(async move {
            let mut remaining = grace;
            let mut exec_hook = None;
            if let Some(hook) = pre_stop {
                let started = std::time::Instant::now();
                if let Some(exec) = &hook.exec {
                    exec_hook = Some(ExecRequest::new(exec.command.clone().unwrap_or_default()));
                } else if let Some(sleep) = &hook.sleep {
                    tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64).min(grace))
                        .await;
                } else if let Some(http) = &hook.http_get {
                    let port = match &http.port {
                        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(p) => {
                            *p as u16
                        }
                        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(n) => {
                            container
                                .as_ref()
                                .and_then(|c| {
                                    c.ports
                                        .iter()
                                        .flatten()
                                        .find(|p| p.name.as_deref() == Some(n))
                                })
                                .map(|p| p.container_port as u16)
                                .unwrap_or(0)
                        }
                    };
                    let ip = pod_ip
                        .and_then(|ip| ip.parse().ok())
                        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
                    let path = http.path.clone().unwrap_or_else(|| "/".into());
                    let addr = std::net::SocketAddr::new(ip, port);
                    if let Ok(mut s) = probe::connect_in_netns(netns, addr, grace).await {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let req = format!(
                            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
                        );
                        let _ = s.write_all(req.as_bytes()).await;
                        let mut buf = [0u8; 64];
                        let _ = tokio::time::timeout(grace, s.read(&mut buf)).await;
                    }
                }
                if exec_hook.is_none() {
                    remaining = grace
                        .saturating_sub(started.elapsed())
                        .max(berth_runtime::container::MIN_GRACE_AFTER_HOOK);
                }
            }
            if let Err(e) = runtime
                .stop_container(&shim, signal, remaining, exec_hook.as_ref())
                .await
            {
                tracing::warn!(container = %shim.id(), error = %error_chain(&e), "stopping a container failed");
            }
            let _ = tx.send(WorkerEvent::Stopped { name }).await;
        });
    }

    async fn remove_run(&mut self, id: &str) {
        if let Ok(cid) = ContainerId::new(id) {
            if let Err(e) = self.node.runtime.remove_container(&cid, false).await {
                tracing::warn!(container = %id, error = %error_chain(&e), "removing an old container failed");
                return;
            }
        }
        for runs in self.observed.runs.values_mut() {
            runs.retain(|r| r.id != id);
        }
        self.node.unregister_run(&self.uid, id);
    }

    /// Removes the pod's containers, volumes (not claims), network and sandbox. Logs stay.
    async fn teardown(&mut self, pod: &Pod) {
        self.stop_probes_all();
        let Ok(uid) = PodUid::new(&self.uid) else {
            return;
        };
        let ids: Vec<String> = self
            .observed
            .runs
            .values()
            .flatten()
            .map(|r| r.id.clone())
            .collect();
        for id in ids {
            if let Ok(cid) = ContainerId::new(&id) {
                if let Err(e) = self.node.runtime.remove_container(&cid, true).await {
                    tracing::warn!(container = %id, error = %error_chain(&e), "removing a container failed");
                }
            }
        }
        if let Some(network) = &self.node.network {
            network.detach(&self.uid).await;
        }
        if let Err(e) = self.node.runtime.remove_pod_volumes(&uid).await {
            tracing::warn!(pod = %self.uid, error = %error_chain(&e), "removing pod volumes failed");
        }
        if let Err(e) = self.node.runtime.remove_sandbox(&uid).await {
            tracing::warn!(pod = %self.uid, error = %error_chain(&e), "removing the pod sandbox failed; retrying");
            return;
        }
        super::podfiles::remove(&self.node, &self.uid);
        self.volume_paths.clear();
        self.shims.clear();
        self.observed.sandbox_ready = false;
        let _ = pod;
    }

    /// Removes the deleted pod from the cluster state. True when the worker is done.
    async fn finalize(&mut self, pod: &Pod, already_gone: bool) -> bool {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        self.node.remove_logs(&ns, &name, &self.uid);
        if already_gone {
            return true;
        }
        let command = Command::Delete {
            key: ObjectKey::new("Pod", &ns, &name),
            precondition_uid: Some(self.uid.clone()),
            precondition_resource_version: None,
            grace_period_seconds: Some(0),
            propagation: Propagation::Background,
            now: Timestamp::now(),
        };
        match self.node.state.propose(command).await {
            Ok(_) => true,
            Err(crate::state::ProposeError::Rejected(_)) => true,
            Err(e) => {
                tracing::warn!(pod = %name, error = %e, "removing a deleted pod failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                false
            }
        }
    }

    async fn publish_status(&mut self, pod: &Pod, pod_value: &Value) {
        let status = super::status::pod_status(pod, &self.observed, &self.last_status, Utc::now());
        let stored = pod_value.get("status").cloned().unwrap_or(Value::Null);
        if status == stored {
            self.last_status = status;
            return;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let command = Command::UpdateStatus {
            key: ObjectKey::new("Pod", &ns, &name),
            status: status.clone(),
            precondition_resource_version: None,
        };
        match self.node.state.propose(command).await {
            Ok(_) => self.last_status = status,
            Err(e) => tracing::debug!(pod = %name, error = %e, "publishing pod status failed"),
        }
    }
}

fn find_container<'a>(pod: &'a Pod, name: &str, init: bool) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    if init {
        spec.init_containers
            .as_ref()?
            .iter()
            .find(|c| c.name == name)
    } else {
        spec.containers.iter().find(|c| c.name == name)
    }
}

/// The container `name` of a stored pod: from `spec.initContainers` if `init`, else from
/// `spec.containers`.
fn find_container_value<'a>(pod: &'a Value, name: &str, init: bool) -> Option<&'a Value> {
    let key = if init { "initContainers" } else { "containers" };
    pod.get("spec")?
        .get(key)?
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}

/// A pod gone from the state is stopped like a deleted pod.
fn mark_deleted(mut pod: Pod) -> Pod {
    if pod.metadata.deletion_timestamp.is_none() {
        let grace = pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        let at = Timestamp::now().plus_seconds(grace);
        pod.metadata.deletion_timestamp =
            k8s_openapi::jiff::Timestamp::from_second(at.unix_seconds())
                .ok()
                .map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time);
    }
    pod
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `docker.io/library/busybox@sha256:...`, as kubelet reports imageID.
fn image_id(image: &berth_runtime::image::Image) -> String {
    let repo = image
        .references
        .first()
        .map(|r| {
            r.split('@')
                .next()
                .unwrap_or(r)
                .rsplit_once(':')
                .filter(|(_, tag)| !tag.contains('/'))
                .map_or(r.as_str(), |(repo, _)| repo)
                .to_string()
        })
        .unwrap_or_default();
    if repo.is_empty() {
        image.manifest_digest.to_string()
    } else {
        format!("{repo}@{}", image.manifest_digest)
    }
}

/// `SIGQUIT`, `QUIT`, `3` to a signal number.
pub fn signal_number(name: &str) -> Option<i32> {
    if let Ok(n) = name.parse::<i32>() {
        return Some(n);
    }
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    let n = match bare {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "TERM" => libc::SIGTERM,
        "STOP" => libc::SIGSTOP,
        "WINCH" => libc::SIGWINCH,
        "PWR" => libc::SIGPWR,
        _ => return None,
    };
    Some(n)
}
