//! What the network needs to know about a pod, read from its stored JSON.

use std::net::Ipv4Addr;

use berth_runtime::network::{HostPort, Protocol};
use serde_json::Value;

use super::NetworkError;

/// The owner a StatefulSet pod keeps its address for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatefulSetOwner {
    pub name: String,
    pub uid: String,
}

/// A pod as the network sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIdentity {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// The controlling StatefulSet, when there is one: such a pod keeps its address when it
    /// is re-created under the same name on this node.
    pub stateful_set: Option<StatefulSetOwner>,
    /// Ports to publish on the node (`hostPort`).
    pub host_ports: Vec<HostPort>,
}

impl PodIdentity {
    /// `namespace/name`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Reads a pod. Fails, naming the field, on a pod the network cannot serve: no uid or
    /// name, `hostNetwork: true` (such pods use the node's network and are never attached),
    /// or a published port that is out of range or uses an unknown protocol.
    pub fn of(pod: &Value) -> Result<PodIdentity, NetworkError> {
        let meta = &pod["metadata"];
        let namespace = meta["namespace"].as_str().unwrap_or("default").to_string();
        let name = meta["name"].as_str().unwrap_or_default().to_string();
        let invalid = |field: &str, reason: String| NetworkError::InvalidPod {
            pod: format!("{namespace}/{name}"),
            field: field.to_string(),
            reason,
        };
        if name.is_empty() {
            return Err(invalid("metadata.name", "must be set".into()));
        }
        let uid = meta["uid"].as_str().unwrap_or_default().to_string();
        berth_runtime::PodUid::new(uid.clone())
            .map_err(|error| invalid("metadata.uid", error.to_string()))?;
        if pod["spec"]["hostNetwork"].as_bool() == Some(true) {
            return Err(invalid(
                "spec.hostNetwork",
                "the pod uses the node's network and gets no interface of its own".into(),
            ));
        }
        let stateful_set = meta["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|owner| owner["controller"] == true && owner["kind"] == "StatefulSet")
            .and_then(|owner| {
                Some(StatefulSetOwner {
                    name: owner["name"].as_str()?.to_string(),
                    uid: owner["uid"].as_str()?.to_string(),
                })
            });
        let host_ports = host_ports(pod).map_err(|(field, reason)| invalid(&field, reason))?;
        Ok(PodIdentity {
            uid,
            namespace,
            name,
            stateful_set,
            host_ports,
        })
    }
}

/// The pod's published ports: every container port with a `hostPort`, in app containers and
/// in sidecars (init containers with `restartPolicy: Always`), as Kubernetes publishes them.
fn host_ports(pod: &Value) -> Result<Vec<HostPort>, (String, String)> {
    let mut ports = Vec::new();
    for list in ["containers", "initContainers"] {
        for (c, container) in pod["spec"][list]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            if list == "initContainers" && container["restartPolicy"] != "Always" {
                continue;
            }
            for (p, port) in container["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let field = |name: &str| format!("spec.{list}[{c}].ports[{p}].{name}");
                let host_port = port["hostPort"].as_i64().unwrap_or(0);
                if host_port == 0 {
                    continue;
                }
                let number = |name: &str, value: i64| {
                    u16::try_from(value).ok().filter(|v| *v > 0).ok_or_else(|| {
                        (
                            field(name),
                            format!("{value} is not a port number (1-65535)"),
                        )
                    })
                };
                let host_port = number("hostPort", host_port)?;
                let container_port =
                    number("containerPort", port["containerPort"].as_i64().unwrap_or(0))?;
                let protocol: Protocol = port["protocol"]
                    .as_str()
                    .unwrap_or("TCP")
                    .parse()
                    .map_err(|reason| (field("protocol"), reason))?;
                let host_ip = match port["hostIP"].as_str().unwrap_or("") {
                    "" | "0.0.0.0" => None,
                    text => Some(text.parse::<Ipv4Addr>().map_err(|_| {
                        (field("hostIP"), format!("{text:?} is not an IPv4 address"))
                    })?),
                };
                ports.push(HostPort {
                    protocol,
                    host_ip,
                    host_port,
                    container_port,
                });
            }
        }
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"namespace": "db", "name": "pg-0", "uid": "u-1",
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                                                 "name": "pg", "uid": "s-1", "controller": true}]},
               "spec": spec})
    }

    #[test]
    fn a_statefulset_pod_with_host_ports_is_read() {
        let identity = PodIdentity::of(&pod(json!({
            "containers": [{"name": "pg", "ports": [
                {"containerPort": 5432, "hostPort": 15432},
                {"containerPort": 9187},
                {"containerPort": 53, "hostPort": 53, "protocol": "UDP", "hostIP": "192.0.2.2"}]}],
            "initContainers": [
                {"name": "init", "ports": [{"containerPort": 1, "hostPort": 1}]},
                {"name": "sidecar", "restartPolicy": "Always", "ports": [{"containerPort": 80, "hostPort": 8080}]}]
        })))
        .unwrap();
        assert_eq!(identity.full_name(), "db/pg-0");
        assert_eq!(
            identity.stateful_set,
            Some(StatefulSetOwner {
                name: "pg".into(),
                uid: "s-1".into()
            })
        );
        let shown: Vec<String> = identity
            .host_ports
            .iter()
            .map(|p| format!("{p} -> {}", p.container_port))
            .collect();
        assert_eq!(
            shown,
            [
                "15432/TCP -> 5432",
                "192.0.2.2:53/UDP -> 53",
                "8080/TCP -> 80"
            ]
        );
    }

    #[test]
    fn pods_the_network_cannot_serve_are_refused_naming_the_field() {
        let cases = [
            (
                json!({"metadata": {"name": "x", "namespace": "db"}}),
                "pod db/x: metadata.uid: pod uid must not be empty",
            ),
            (
                pod(json!({"hostNetwork": true})),
                "pod db/pg-0: spec.hostNetwork: the pod uses the node's network and gets no interface of its own",
            ),
            (
                pod(json!({"containers": [{"ports": [{"containerPort": 80, "hostPort": 70000}]}]})),
                "pod db/pg-0: spec.containers[0].ports[0].hostPort: 70000 is not a port number (1-65535)",
            ),
            (
                pod(
                    json!({"containers": [{"ports": [{"containerPort": 80, "hostPort": 80, "protocol": "ICMP"}]}]}),
                ),
                "pod db/pg-0: spec.containers[0].ports[0].protocol: unsupported protocol \"ICMP\": must be TCP, UDP or SCTP",
            ),
            (
                pod(
                    json!({"containers": [{}, {"ports": [{"containerPort": 80, "hostPort": 80, "hostIP": "::1"}]}]}),
                ),
                "pod db/pg-0: spec.containers[1].ports[0].hostIP: \"::1\" is not an IPv4 address",
            ),
        ];
        for (pod, message) in cases {
            assert_eq!(PodIdentity::of(&pod).unwrap_err().to_string(), message);
        }
    }
}
