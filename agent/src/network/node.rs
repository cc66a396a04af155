//! [`NodeNetwork`]: the calls the daemon and the kubelet make.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::{Arc, Mutex};

use berth_runtime::network::ipnet::{IpNet, Ipv4Net};
use berth_runtime::network::{HostNetwork, PeerRoute, PodAttachment};
use serde_json::Value;

use super::ipam::{self, Decision, Release, Reservation};
use super::pod::PodIdentity;
use super::{NetworkConfig, NetworkError, PodAddress};
use crate::state::{Command, ObjectKey, Propagation, ProposeError, Rejection, State, Timestamp};

/// How often an IPAM change is retried when a concurrent change to the same record wins.
const IPAM_ATTEMPTS: usize = 8;

/// This node's pod network: the kernel side ([`HostNetwork`]) plus address management in the
/// cluster state. Cheap to clone; every clone is the same network.
#[derive(Clone)]
pub struct NodeNetwork {
    inner: Arc<Inner>,
}

struct Inner {
    state: State,
    host: Arc<HostNetwork>,
    node: String,
    /// Serialises address decisions on this node (records are the truth; this only avoids
    /// needless conflicts) and holds the round-robin cursor.
    ipam: tokio::sync::Mutex<Ipv4Addr>,
    /// Pods whose interface exists, and their addresses.
    attached: Mutex<BTreeMap<String, Ipv4Addr>>,
}

impl std::fmt::Debug for NodeNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeNetwork")
            .field("node", &self.inner.node)
            .field("pod_cidr", &self.inner.host.pod_cidr())
            .finish()
    }
}

/// Runs blocking kernel work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, berth_runtime::network::NetworkError> + Send + 'static,
) -> Result<T, NetworkError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| NetworkError::Panicked {
            message: error.to_string(),
        })?
        .map_err(NetworkError::Host)
}

/// The uids of the pods on `node` that still need their network: bound there and not
/// finished.
fn alive_pods(state: &State, node: &str) -> BTreeSet<String> {
    state
        .list("Pod", None)
        .0
        .iter()
        .filter(|pod| pod["spec"]["nodeName"] == node)
        .filter(|pod| {
            !matches!(
                pod["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed")
            )
        })
        .filter_map(|pod| pod["metadata"]["uid"].as_str().map(str::to_string))
        .collect()
}

fn reservations(state: &State) -> Vec<(Reservation, Arc<Value>)> {
    state
        .list(ipam::KIND, None)
        .0
        .into_iter()
        .filter_map(|object| Reservation::from_object(&object).map(|r| (r, object)))
        .collect()
}

/// Deletes the record of `ip` if it is still at `resource_version`.
fn delete_record(ip: Ipv4Addr, resource_version: u64, now: Timestamp) -> Command {
    Command::Delete {
        key: ObjectKey::new(ipam::KIND, "", ip.to_string()),
        precondition_uid: None,
        precondition_resource_version: Some(resource_version),
        grace_period_seconds: None,
        propagation: Propagation::Background,
        now,
    }
}

/// True when a rejection means "someone changed the record first": decide again.
fn lost_race(error: &ProposeError) -> bool {
    matches!(
        error,
        ProposeError::Rejected(rejection)
            if matches!(rejection.root(),
                Rejection::AlreadyExists { .. }
                | Rejection::ResourceVersionConflict { .. }
                | Rejection::NotFound { .. })
    )
}

impl NodeNetwork {
    /// Sets this node's pod network up at daemon start: checks the pod CIDR against the host's
    /// networks (refusing an overlap), creates or adopts the bridge, forwarding and berth's nft
    /// table, then collects what a crash left behind: interfaces and published ports of pods
    /// that are gone, and address records whose pods are gone (StatefulSet pods' records are
    /// kept, marked released).
    pub async fn start(state: State, config: NetworkConfig) -> Result<NodeNetwork, NetworkError> {
        let host = Arc::new(blocking(move || HostNetwork::open(config)).await?);
        let network = NodeNetwork {
            inner: Arc::new(Inner {
                node: state.node_name().to_string(),
                state,
                host,
                ipam: tokio::sync::Mutex::new(Ipv4Addr::UNSPECIFIED),
                attached: Mutex::new(BTreeMap::new()),
            }),
        };
        network.collect().await?;
        Ok(network)
    }

    /// Brings the kernel and the records in line with the live pods.
    async fn collect(&self) -> Result<(), NetworkError> {
        let inner = &self.inner;
        let mut cursor = inner.ipam.lock().await;
        let alive = alive_pods(&inner.state, &inner.node);
        let host = inner.host.clone();
        let keep = alive.clone();
        let (collected, links) = blocking(move || {
            let collected = host.collect_orphans(&keep)?;
            Ok((collected, host.pods()?))
        })
        .await?;
        for link in &collected.links {
            tracing::info!(interface = %link, "removed the interface of a pod that is gone");
        }
        for rule in &collected.ports {
            tracing::info!(pod_uid = %rule.pod_uid, port = %rule.port, "removed a published port of a pod that is gone");
        }

        let cidr = inner.host.pod_cidr();
        let records = reservations(&inner.state);
        let mut attached = BTreeMap::new();
        for link in links {
            let uid = link.pod_uid.unwrap_or_default();
            match records
                .iter()
                .find(|(r, _)| r.holder.as_deref() == Some(uid.as_str()))
            {
                Some((record, _)) if cidr.contains(&record.ip) => {
                    attached.insert(uid, record.ip);
                }
                _ => {
                    // An interface without an address record cannot be trusted; the kubelet
                    // attaches the pod again.
                    tracing::warn!(pod_uid = %uid, interface = %link.host_interface, "removing a pod interface without an address record");
                    let host = inner.host.clone();
                    blocking(move || host.detach(&uid)).await?;
                }
            }
        }
        let now = Timestamp::now();
        for (record, object) in &records {
            let mine = cidr.contains(&record.ip);
            let stray = !mine && record.node.as_deref() == Some(inner.node.as_str());
            let holder_alive = record
                .holder
                .as_ref()
                .is_some_and(|uid| alive.contains(uid));
            if stray {
                self.propose_release(record, object, Release::Delete, now)
                    .await?;
            } else if mine && !holder_alive {
                let action = ipam::release(record);
                if action != Release::Nothing {
                    tracing::info!(address = %record.ip, pod = %format!("{}/{}", record.parent.0, record.parent.1), ?action, "releasing the address of a pod that is gone");
                }
                self.propose_release(record, object, action, now).await?;
            }
        }
        *cursor = records
            .iter()
            .map(|(r, _)| r.ip)
            .filter(|ip| cidr.contains(ip))
            .max()
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        *inner.attached.lock().expect("attached lock") = attached;
        Ok(())
    }

    /// Gives a pod its network, after its sandbox exists and before any container starts:
    /// an address (the same one again for a StatefulSet pod re-created on this node), a veth
    /// into `netns_path` with the address and a default route via the gateway, a gratuitous
    /// ARP, and its `hostPort`s published on the node.
    ///
    /// Idempotent for the same pod. On failure nothing of it is left (no address held, no
    /// interface, no rule) and no other pod is touched; the error names the conflict (a port
    /// held by another pod or a host process, an exhausted pod CIDR, a bad field).
    pub async fn attach(&self, pod: &Value, netns_path: &Path) -> Result<PodAddress, NetworkError> {
        let identity = PodIdentity::of(pod)?;
        let inner = &self.inner;
        // A port conflict is refused before an address is taken.
        {
            let host = inner.host.clone();
            let uid = identity.uid.clone();
            let ports = identity.host_ports.clone();
            let checked = blocking(move || host.check_host_ports(&uid, &ports)).await;
            if let Err(error) = checked {
                return Err(self.name_port_holder(error, &identity));
            }
        }
        let ip = self.reserve(&identity).await?;
        crash_point("after-reserve");

        let host = inner.host.clone();
        let uid = identity.uid.clone();
        let description = identity.full_name();
        let netns = netns_path.to_path_buf();
        let ports = identity.host_ports.clone();
        let result = blocking(move || {
            host.attach(&PodAttachment {
                pod_uid: &uid,
                description: &description,
                netns: &netns,
                address: ip,
                host_ports: &ports,
            })
        })
        .await;
        let interface = match result {
            Ok(interface) => interface,
            Err(error) => {
                let error = self.name_port_holder(error, &identity);
                if let Err(release) = self.release(&identity.uid).await {
                    tracing::warn!(pod = %identity.full_name(), error = %release, "releasing the address after a failed attach");
                }
                return Err(error);
            }
        };
        crash_point("after-link");
        inner
            .attached
            .lock()
            .expect("attached lock")
            .insert(identity.uid.clone(), ip);
        tracing::info!(pod = %identity.full_name(), address = %interface.address, interface = %interface.host_interface, "pod network attached");
        Ok(PodAddress {
            ip: IpAddr::V4(interface.address.addr()),
            prefix_len: interface.address.prefix_len(),
            gateway: IpAddr::V4(interface.gateway),
            mtu: interface.mtu,
            interface: interface.interface,
            host_interface: interface.host_interface,
        })
    }

    /// Takes a pod's network away on teardown: its interface, published ports and address
    /// (a StatefulSet pod's address stays reserved for its successor). Idempotent.
    pub async fn detach(&self, pod_uid: &str) -> Result<(), NetworkError> {
        let host = self.inner.host.clone();
        let uid = pod_uid.to_string();
        blocking(move || host.detach(&uid)).await?;
        crash_point("after-unlink");
        self.inner
            .attached
            .lock()
            .expect("attached lock")
            .remove(pod_uid);
        self.release(pod_uid).await
    }

    /// The pods' gateway (the bridge's address); the DNS server listens there.
    pub fn gateway(&self) -> IpAddr {
        IpAddr::V4(self.inner.host.gateway())
    }

    /// This node's pod CIDR.
    pub fn pod_cidr(&self) -> IpNet {
        IpNet::V4(self.inner.host.pod_cidr())
    }

    /// The pods' MTU.
    pub fn mtu(&self) -> u32 {
        self.inner.host.mtu()
    }

    /// The kernel side, for inspection.
    pub fn host(&self) -> &HostNetwork {
        &self.inner.host
    }

    /// Routes each peer's pod CIDR via its node address (host-gw) and removes routes to peers
    /// no longer listed; traffic to peers' pods is not masqueraded. `peers` is the whole
    /// membership, not a change. A refused set (overlaps, IPv6, a node not on a directly
    /// connected network) changes nothing where it can be checked first.
    pub async fn set_peers(&self, peers: Vec<(IpAddr, IpNet)>) -> Result<(), NetworkError> {
        let mut routes = Vec::with_capacity(peers.len());
        for (node, cidr) in peers {
            match (node, cidr) {
                (IpAddr::V4(node), IpNet::V4(pod_cidr)) => {
                    routes.push(PeerRoute { node, pod_cidr })
                }
                _ => {
                    return Err(NetworkError::InvalidPeer {
                        node,
                        cidr,
                        reason: "only IPv4 peers are supported",
                    });
                }
            }
        }
        let host = self.inner.host.clone();
        blocking(move || host.set_peers(&routes)).await
    }

    /// Reserves an address for `pod` in the state (durable before this returns).
    async fn reserve(&self, pod: &PodIdentity) -> Result<Ipv4Addr, NetworkError> {
        let inner = &self.inner;
        let cidr = inner.host.pod_cidr();
        let mut cursor = inner.ipam.lock().await;
        for _ in 0..IPAM_ATTEMPTS {
            let alive = alive_pods(&inner.state, &inner.node);
            let records = reservations(&inner.state);
            let (carried, attached_uids) = {
                let attached = inner.attached.lock().expect("attached lock");
                let carried: BTreeSet<Ipv4Addr> = attached
                    .iter()
                    .filter(|(uid, _)| **uid != pod.uid)
                    .map(|(_, ip)| *ip)
                    .collect();
                (carried, attached.keys().cloned().collect::<BTreeSet<_>>())
            };
            let is_alive = |uid: &str| alive.contains(uid) || attached_uids.contains(uid);
            let plain: Vec<Reservation> = records.iter().map(|(r, _)| r.clone()).collect();
            let decision = ipam::decide(pod, cidr, &plain, &is_alive, &carried, *cursor);
            let stored = |ip: Ipv4Addr| {
                records
                    .iter()
                    .find(|(r, _)| r.ip == ip)
                    .map(|(_, object)| object.clone())
            };
            let now = Timestamp::now();
            let command = match &decision {
                Decision::Keep { ip } => return Ok(*ip),
                Decision::Exhausted { capacity } => {
                    return Err(NetworkError::Exhausted {
                        pod: pod.full_name(),
                        cidr,
                        capacity: *capacity,
                    });
                }
                Decision::Fresh { ip } => Command::create(
                    ipam::record(*ip, pod, &inner.node),
                    uuid::Uuid::new_v4().to_string(),
                    now,
                ),
                Decision::Reclaim {
                    ip,
                    resource_version,
                } => {
                    let Some(object) = stored(*ip) else { continue };
                    Command::Update {
                        object: ipam::held_by(&object, pod),
                        precondition_resource_version: Some(*resource_version),
                        now,
                    }
                }
                Decision::Replace {
                    ip,
                    resource_version,
                } => Command::Batch(vec![
                    delete_record(*ip, *resource_version, now),
                    Command::create(
                        ipam::record(*ip, pod, &inner.node),
                        uuid::Uuid::new_v4().to_string(),
                        now,
                    ),
                ]),
            };
            let ip = match decision {
                Decision::Fresh { ip }
                | Decision::Reclaim { ip, .. }
                | Decision::Replace { ip, .. } => ip,
                Decision::Keep { .. } | Decision::Exhausted { .. } => {
                    unreachable!("returned above")
                }
            };
            match inner.state.propose(command).await {
                Ok(_) => {
                    *cursor = ip;
                    tracing::debug!(pod = %pod.full_name(), address = %ip, ?decision, "address reserved");
                    return Ok(ip);
                }
                Err(error) if lost_race(&error) => continue,
                Err(ProposeError::Rejected(rejection)) if matches!(rejection.root(), Rejection::Invalid { field, .. } if field.contains("ownerReferences")) =>
                {
                    return Err(NetworkError::PodGone {
                        pod: pod.full_name(),
                    });
                }
                Err(source) => {
                    return Err(NetworkError::State {
                        action: format!("reserving {ip} for pod {}", pod.full_name()),
                        source,
                    });
                }
            }
        }
        Err(NetworkError::Contended {
            pod: pod.full_name(),
        })
    }

    /// Releases whatever address `pod_uid` holds.
    async fn release(&self, pod_uid: &str) -> Result<(), NetworkError> {
        let _serial = self.inner.ipam.lock().await;
        for _ in 0..IPAM_ATTEMPTS {
            let held: Vec<_> = reservations(&self.inner.state)
                .into_iter()
                .filter(|(r, _)| r.holder.as_deref() == Some(pod_uid))
                .collect();
            if held.is_empty() {
                return Ok(());
            }
            let mut raced = false;
            for (record, object) in &held {
                match self
                    .propose_release(record, object, ipam::release(record), Timestamp::now())
                    .await
                {
                    Ok(()) => {}
                    Err(NetworkError::State { source, .. }) if lost_race(&source) => raced = true,
                    Err(error) => return Err(error),
                }
            }
            if !raced {
                return Ok(());
            }
        }
        Err(NetworkError::Contended {
            pod: pod_uid.to_string(),
        })
    }

    async fn propose_release(
        &self,
        record: &Reservation,
        object: &Value,
        action: Release,
        now: Timestamp,
    ) -> Result<(), NetworkError> {
        let command = match action {
            Release::Nothing => return Ok(()),
            Release::Delete => delete_record(record.ip, record.resource_version, now),
            Release::MarkReleased => Command::Update {
                object: ipam::released(object, &now.to_rfc3339()),
                precondition_resource_version: Some(record.resource_version),
                now,
            },
        };
        match self.inner.state.propose(command).await {
            Ok(_) => Ok(()),
            // Already gone (e.g. removed with its pod by the state machine).
            Err(ProposeError::Rejected(rejection))
                if matches!(rejection.root(), Rejection::NotFound { .. }) =>
            {
                Ok(())
            }
            Err(source) => Err(NetworkError::State {
                action: format!("releasing {}", record.ip),
                source,
            }),
        }
    }

    /// Names the pod holding a port (`db/pg-0` rather than its uid) in a port conflict.
    fn name_port_holder(&self, error: NetworkError, pod: &PodIdentity) -> NetworkError {
        use berth_runtime::network::{NetworkError as HostError, PortHolder};
        match error {
            NetworkError::Host(HostError::HostPortTaken { port, holder, .. }) => {
                let holder = match holder {
                    PortHolder::Pod(uid) => {
                        let name = self
                            .inner
                            .state
                            .list("Pod", None)
                            .0
                            .iter()
                            .find(|p| p["metadata"]["uid"] == uid.as_str())
                            .map(|p| {
                                format!(
                                    "pod {}/{}",
                                    p["metadata"]["namespace"].as_str().unwrap_or_default(),
                                    p["metadata"]["name"].as_str().unwrap_or_default()
                                )
                            })
                            .unwrap_or_else(|| format!("pod {uid}"));
                        name
                    }
                    other => other.to_string(),
                };
                NetworkError::HostPortTaken {
                    pod: pod.full_name(),
                    port,
                    holder,
                }
            }
            other => other,
        }
    }
}

/// Test builds abort the process at the named point when `BERTH_NETWORK_CRASH_AT` names it,
/// to prove that a crash there leaks nothing. Nothing in release or non-test builds.
fn crash_point(point: &str) {
    #[cfg(test)]
    if std::env::var("BERTH_NETWORK_CRASH_AT").as_deref() == Ok(point) {
        eprintln!("crashing at {point}");
        std::process::abort();
    }
    #[cfg(not(test))]
    let _ = point;
}

/// Parses a pod CIDR flag value (`10.244.0.0/24`), naming the flag on error.
pub fn parse_pod_cidr(text: &str) -> Result<Ipv4Net, NetworkError> {
    let cidr: Ipv4Net = text.trim().parse().map_err(|_| {
        NetworkError::Host(berth_runtime::network::NetworkError::InvalidConfig {
            field: "pod CIDR",
            value: text.to_string(),
            reason: "must be an IPv4 network such as 10.244.0.0/24".into(),
        })
    })?;
    berth_runtime::network::config::check_pod_cidr(cidr).map_err(NetworkError::Host)?;
    Ok(cidr)
}
