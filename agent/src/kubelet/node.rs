//! This node as a Node object: registered at start (labels, capacity, addresses, node info)
//! and its Ready condition renewed by a heartbeat.
//!
//! Self-fencing: the node lifecycle controller (on the leader) declares a node unreachable
//! once it has not seen its heartbeat change for the grace period, and only after a further
//! margin lets its pods move. A host that cannot *commit* its heartbeat (cut off, no quorum)
//! for longer than the grace period minus a safety margin ([`FenceSettings::fence_after`])
//! raises its [`Fence`]: the kubelet stops the pods that carry an identity or data
//! ([`fenced_pod`]: StatefulSet pods and pods with claims) and starts none of them until a
//! heartbeat commits again, so the identity is already stopped here when the cluster may
//! consider it movable. The host's clock starts at its last commit, which is never later than
//! when the leader saw that heartbeat, so the host always fences first.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::state::{Command, ObjectKey, State, Timestamp};

/// How often the node renews its status.
pub const HEARTBEAT: Duration = Duration::from_secs(2);

/// Total memory in bytes (from /proc/meminfo).
pub fn memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// The address other hosts and pods reach this node at: the source address of the route to
/// the rest of the network (found with an unconnected UDP socket; no packet is sent).
pub fn host_ip() -> Option<String> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then(|| ip.to_string())
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "Linux".into())
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Kubernetes' architecture names (GOARCH).
fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

/// The node's status as of `now`.
pub fn node_status(host_ip: Option<&str>, now: Timestamp, old: Option<&Value>) -> Value {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let memory = format!("{}Ki", memory_bytes() / 1024);
    let capacity = json!({"cpu": cpus.to_string(), "memory": memory, "pods": "110"});
    let time = now.to_rfc3339();
    let transition = |type_: &str, status: &str| -> Value {
        old.and_then(|o| o.pointer("/status/conditions"))
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c["type"] == type_ && c["status"] == status)
            })
            .map(|c| c["lastTransitionTime"].clone())
            .unwrap_or_else(|| json!(time))
    };
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({"type": type_, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": time, "lastTransitionTime": transition(type_, status)})
    };
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let mut addresses = Vec::new();
    if let Some(ip) = host_ip {
        addresses.push(json!({"type": "InternalIP", "address": ip}));
    }
    addresses.push(json!({"type": "Hostname", "address": hostname}));
    json!({
        "capacity": capacity,
        "allocatable": capacity,
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": addresses,
        "nodeInfo": {
            "machineID": std::fs::read_to_string("/etc/machine-id").map(|s| s.trim().to_string()).unwrap_or_default(),
            "systemUUID": "",
            "bootID": std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default(),
            "kernelVersion": kernel_version(),
            "osImage": os_image(),
            "containerRuntimeVersion": format!("berth://{}", env!("CARGO_PKG_VERSION")),
            "kubeletVersion": format!("v1.34.0-berth.{}", env!("CARGO_PKG_VERSION")),
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": arch(),
        },
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
    })
}

/// Creates this node's Node object (with its pod CIDR), or refreshes its status.
pub async fn register(
    state: &State,
    node_name: &str,
    host_ip: Option<&str>,
    pod_cidr: Option<&str>,
) -> Result<(), crate::state::ProposeError> {
    let now = Timestamp::now();
    match state.get("Node", "", node_name) {
        None => {
            let node = json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": node_name,
                    "labels": {
                        "kubernetes.io/hostname": node_name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": arch(),
                        "beta.kubernetes.io/os": "linux",
                        "beta.kubernetes.io/arch": arch(),
                    },
                },
                "spec": pod_cidr.map_or_else(|| json!({}), |c| json!({"podCIDR": c, "podCIDRs": [c]})),
                "status": node_status(host_ip, now, None),
            });
            state
                .propose(Command::create(node, uuid::Uuid::new_v4().to_string(), now))
                .await?;
        }
        Some(old) => {
            if let Some(cidr) = pod_cidr
                .filter(|c| old.pointer("/spec/podCIDR").and_then(Value::as_str) != Some(*c))
            {
                let mut updated = (*old).clone();
                updated["spec"]["podCIDR"] = json!(cidr);
                updated["spec"]["podCIDRs"] = json!([cidr]);
                state.propose(Command::update(updated, now)).await?;
            }
            let old = state.get("Node", "", node_name).unwrap_or(old);
            let status = node_status(host_ip, now, Some(&old));
            state
                .propose(Command::UpdateStatus {
                    key: ObjectKey::new("Node", "", node_name),
                    status,
                    precondition_resource_version: None,
                })
                .await?;
        }
    }
    Ok(())
}

/// Renews the node's status every [`HEARTBEAT`] until shutdown, fencing with the default
/// grace period (the fence is only logged: nothing follows it).
pub async fn heartbeat(
    state: State,
    node_name: String,
    host_ip: Option<String>,
    pod_cidr: Option<String>,
    shutdown: watch::Receiver<bool>,
) {
    heartbeat_with(
        state,
        node_name,
        host_ip,
        pod_cidr,
        FenceSettings::default(),
        Fence::new(),
        shutdown,
    )
    .await
}

/// How long a host may fail to commit its heartbeat before it fences itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FenceSettings {
    /// The cluster's node grace period (`--node-monitor-grace-period`).
    pub grace: Duration,
}

impl Default for FenceSettings {
    fn default() -> FenceSettings {
        FenceSettings {
            grace: crate::controllers::node_lifecycle::Settings::default().grace,
        }
    }
}

impl FenceSettings {
    /// A quarter of the grace period, at least half a second.
    pub fn safety_margin(&self) -> Duration {
        (self.grace / 4).max(Duration::from_millis(500))
    }

    /// Silence after which the host fences itself: grace minus the safety margin.
    pub fn fence_after(&self) -> Duration {
        self.grace.saturating_sub(self.safety_margin())
    }

    /// How often the heartbeat is sent: several times per grace period.
    pub fn interval(&self) -> Duration {
        (self.grace / 5).clamp(Duration::from_millis(200), HEARTBEAT)
    }
}

/// Whether a host whose last heartbeat commit was `since_commit` ago must be fenced.
pub fn should_fence(since_commit: Duration, settings: &FenceSettings) -> bool {
    since_commit > settings.fence_after()
}

/// Whether `pod` is stopped while its host is fenced: a StatefulSet's pod (its identity must
/// never run twice) or any pod with a claim (its data must never have two writers).
pub fn fenced_pod(pod: &Value) -> bool {
    let stateful = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter()
                .any(|r| r["controller"] == true && r["kind"] == "StatefulSet")
        });
    let claims = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .is_some_and(|vs| vs.iter().any(|v| v.get("persistentVolumeClaim").is_some()));
    stateful || claims
}

/// The host's fence: raised while the heartbeat cannot commit; the kubelet's workers follow
/// it through [`Fence::subscribe`].
#[derive(Debug, Clone)]
pub struct Fence {
    tx: std::sync::Arc<watch::Sender<bool>>,
}

impl Default for Fence {
    fn default() -> Fence {
        Fence::new()
    }
}

impl Fence {
    pub fn new() -> Fence {
        Fence {
            tx: std::sync::Arc::new(watch::channel(false).0),
        }
    }

    /// Follows the fence (true while raised).
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }

    pub fn is_raised(&self) -> bool {
        *self.tx.borrow()
    }

    fn set(&self, raised: bool) -> bool {
        self.tx
            .send_if_modified(|v| std::mem::replace(v, raised) != raised)
    }
}

/// Renews the node's status every [`FenceSettings::interval`] until shutdown, raising `fence`
/// when no heartbeat has committed for [`FenceSettings::fence_after`] and lowering it when
/// one commits again.
pub async fn heartbeat_with(
    state: State,
    node_name: String,
    host_ip: Option<String>,
    pod_cidr: Option<String>,
    settings: FenceSettings,
    fence: Fence,
    mut shutdown: watch::Receiver<bool>,
) {
    let interval = settings.interval();
    let mut last_commit = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => if *shutdown.borrow() { return },
        }
        // A commit that hangs (no quorum) counts as failed once the next beat is due.
        let beat = tokio::time::timeout(
            interval.max(Duration::from_secs(1)),
            register(&state, &node_name, host_ip.as_deref(), pod_cidr.as_deref()),
        );
        match beat.await {
            Ok(Ok(())) => {
                last_commit = std::time::Instant::now();
                if fence.set(false) {
                    tracing::warn!(node = %node_name, "heartbeat committed again: fence lifted, this node's stateful pods may start again");
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "renewing the node's status failed"),
            Err(_) => tracing::warn!("renewing the node's status did not commit in time"),
        }
        let silent = last_commit.elapsed();
        if should_fence(silent, &settings) && fence.set(true) {
            let (pods, _) = state.list("Pod", None);
            let stopping: Vec<String> = pods
                .iter()
                .filter(|p| {
                    p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node_name.as_str())
                        && fenced_pod(p)
                })
                .map(|p| {
                    format!(
                        "{}/{}",
                        p.pointer("/metadata/namespace")
                            .and_then(Value::as_str)
                            .unwrap_or(""),
                        p.pointer("/metadata/name")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                    )
                })
                .collect();
            tracing::error!(
                node = %node_name,
                silent_ms = silent.as_millis() as u64,
                grace_ms = settings.grace.as_millis() as u64,
                pods = %stopping.join(", "),
                "cannot commit this node's heartbeat: fencing, stopping this node's StatefulSet pods and pods with claims before the cluster may move them"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_fences_before_the_grace_period_ends() {
        let s = FenceSettings {
            grace: Duration::from_secs(10),
        };
        assert_eq!(s.fence_after(), Duration::from_millis(7500));
        assert_eq!(s.interval(), Duration::from_secs(2));
        let small = FenceSettings {
            grace: Duration::from_secs(2),
        };
        assert_eq!(small.fence_after(), Duration::from_millis(1500));
        assert_eq!(small.interval(), Duration::from_millis(400));
        let cases = [
            (Duration::from_secs(1), false),
            (Duration::from_millis(7500), false),
            (Duration::from_millis(7501), true),
            (Duration::from_secs(30), true),
        ];
        for (since, fenced) in cases {
            assert_eq!(should_fence(since, &s), fenced, "{since:?}");
        }
        assert!(
            s.fence_after() < crate::controllers::node_lifecycle::Settings::default().grace,
            "the host fences before the leader may declare it lost"
        );
    }

    #[test]
    fn statefulset_pods_and_pods_with_claims_are_fenced_others_are_not() {
        let cases = [
            (
                json!({"metadata": {"ownerReferences": [{"kind": "StatefulSet", "controller": true}]}}),
                true,
            ),
            (
                json!({"metadata": {}, "spec": {"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "c"}}]}}),
                true,
            ),
            (
                json!({"metadata": {"ownerReferences": [{"kind": "Job", "controller": true}]}, "spec": {"volumes": [{"name": "t", "emptyDir": {}}]}}),
                false,
            ),
            (
                json!({"metadata": {"ownerReferences": [{"kind": "DaemonSet", "controller": true}]}}),
                false,
            ),
        ];
        for (pod, fenced) in cases {
            assert_eq!(fenced_pod(&pod), fenced, "{pod}");
        }
    }

    #[test]
    fn the_fence_tells_its_followers_when_it_changes() {
        let fence = Fence::new();
        let mut follower = fence.subscribe();
        assert!(!fence.set(false), "no change");
        assert!(fence.set(true));
        assert!(follower.has_changed().unwrap() && *follower.borrow_and_update());
        assert!(fence.is_raised());
        assert!(!fence.set(true));
        assert!(fence.set(false));
        assert!(!*follower.borrow_and_update());
    }

    #[test]
    fn status_keeps_transition_times_and_reports_capacity() {
        let first = node_status(Some("192.0.2.2"), Timestamp::from_unix_seconds(1_000), None);
        let old = json!({"status": first});
        let second = node_status(
            Some("192.0.2.2"),
            Timestamp::from_unix_seconds(2_000),
            Some(&old),
        );
        let ready = |s: &Value| {
            s["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == "Ready")
                .unwrap()
                .clone()
        };
        assert_eq!(
            ready(&second)["lastTransitionTime"],
            ready(&first)["lastTransitionTime"]
        );
        assert_ne!(
            ready(&second)["lastHeartbeatTime"],
            ready(&first)["lastHeartbeatTime"]
        );
        assert_eq!(
            second["addresses"][0],
            json!({"type": "InternalIP", "address": "192.0.2.2"})
        );
        assert!(
            second["capacity"]["memory"]
                .as_str()
                .unwrap()
                .ends_with("Ki")
        );
    }
}
