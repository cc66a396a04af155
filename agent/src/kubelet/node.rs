//! This node as a Node object: registered at start (labels, capacity, addresses, node info)
//! and its Ready condition renewed by a heartbeat.

use std::time::Duration;

use serde_json::{Value, json};

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
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
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
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let memory = format!("{}Ki", memory_bytes() / 1024);
    let capacity = json!({"cpu": cpus.to_string(), "memory": memory, "pods": "110"});
    let time = now.to_rfc3339();
    let transition = |type_: &str, status: &str| -> Value {
        old.and_then(|o| o.pointer("/status/conditions"))
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["type"] == type_ && c["status"] == status))
            .map(|c| c["lastTransitionTime"].clone())
            .unwrap_or_else(|| json!(time))
    };
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({"type": type_, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": time, "lastTransitionTime": transition(type_, status)})
    };
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
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
pub async fn register(state: &State, node_name: &str, host_ip: Option<&str>, pod_cidr: Option<&str>) -> Result<(), crate::state::ProposeError> {
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
            state.propose(Command::create(node, uuid::Uuid::new_v4().to_string(), now)).await?;
        }
        Some(old) => {
            if let Some(cidr) = pod_cidr.filter(|c| old.pointer("/spec/podCIDR").and_then(Value::as_str) != Some(*c)) {
                let mut updated = (*old).clone();
                updated["spec"]["podCIDR"] = json!(cidr);
                updated["spec"]["podCIDRs"] = json!([cidr]);
                state.propose(Command::update(updated, now)).await?;
            }
            let old = state.get("Node", "", node_name).unwrap_or(old);
            let status = node_status(host_ip, now, Some(&old));
            state
                .propose(Command::UpdateStatus { key: ObjectKey::new("Node", "", node_name), status, precondition_resource_version: None })
                .await?;
        }
    }
    Ok(())
}

/// Renews the node's status every [`HEARTBEAT`] until shutdown.
pub async fn heartbeat(
    state: State,
    node_name: String,
    host_ip: Option<String>,
    pod_cidr: Option<String>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(HEARTBEAT) => {}
            _ = shutdown.changed() => if *shutdown.borrow() { return },
        }
        if let Err(e) = register(&state, &node_name, host_ip.as_deref(), pod_cidr.as_deref()).await {
            tracing::warn!(error = %e, "renewing the node's status failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_keeps_transition_times_and_reports_capacity() {
        let first = node_status(Some("192.0.2.2"), Timestamp::from_unix_seconds(1_000), None);
        let old = json!({"status": first});
        let second = node_status(Some("192.0.2.2"), Timestamp::from_unix_seconds(2_000), Some(&old));
        let ready = |s: &Value| s["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap().clone();
        assert_eq!(ready(&second)["lastTransitionTime"], ready(&first)["lastTransitionTime"]);
        assert_ne!(ready(&second)["lastHeartbeatTime"], ready(&first)["lastHeartbeatTime"]);
        assert_eq!(second["addresses"][0], json!({"type": "InternalIP", "address": "192.0.2.2"}));
        assert!(second["capacity"]["memory"].as_str().unwrap().ends_with("Ki"));
    }
}
