//! Input model: the plain facts about Services and Pods that the DNS authority needs.
//!
//! The agent fills these from its Kubernetes-shaped objects; nothing here depends on
//! Kubernetes API types. Field names follow the Kubernetes fields they come from.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

/// A namespaced object name: `(namespace, name)`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl ObjectKey {
    /// Builds a key from a namespace and a name.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Transport protocol of a port (`ports[].protocol`, default TCP).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP (the Kubernetes default).
    #[default]
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The label used in SRV names: `tcp`, `udp` or `sctp`.
    pub fn srv_label(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// A Service's `targetPort`: a number, or the name of a container port on each Pod.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TargetPort {
    /// A port number.
    Number(u16),
    /// A container port name, resolved per Pod.
    Name(String),
}

/// One entry of `Service.spec.ports`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServicePort {
    /// `name`; unnamed ports get no SRV record.
    pub name: Option<String>,
    /// `protocol`.
    pub protocol: Protocol,
    /// `port`.
    pub port: u16,
    /// `targetPort`; `None` means "same as `port`".
    pub target_port: Option<TargetPort>,
}

/// The DNS-relevant part of a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// Namespace and name.
    pub key: ObjectKey,
    /// `clusterIP: None`. berth has no ClusterIP proxy, so a non-headless Service is
    /// answered exactly like a headless one (all ready endpoints); the flag is kept for
    /// logging and for a future proxy.
    pub headless: bool,
    /// `spec.selector`. `None` or empty selects no Pods (as Kubernetes: such a Service's
    /// endpoints are managed by hand, which berth does not support).
    pub selector: Option<BTreeMap<String, String>>,
    /// `spec.publishNotReadyAddresses`.
    pub publish_not_ready_addresses: bool,
    /// `spec.ports`.
    pub ports: Vec<ServicePort>,
}

/// `status.phase` of a Pod.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PodPhase {
    /// Accepted, not all containers started.
    #[default]
    Pending,
    /// Bound to a node and at least one container running.
    Running,
    /// All containers ended successfully and will not restart.
    Succeeded,
    /// All containers ended, at least one failed, none will restart.
    Failed,
    /// State could not be obtained.
    Unknown,
}

impl PodPhase {
    /// Failed and Succeeded Pods are finished and never published.
    pub fn is_terminal(self) -> bool {
        matches!(self, PodPhase::Succeeded | PodPhase::Failed)
    }
}

/// One container port of a Pod (`spec.containers[].ports[]`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContainerPort {
    /// `name`.
    pub name: Option<String>,
    /// `protocol`.
    pub protocol: Protocol,
    /// `containerPort`.
    pub container_port: u16,
}

/// The DNS-relevant part of a Pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    /// Namespace and name.
    pub key: ObjectKey,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `spec.hostname`.
    pub hostname: Option<String>,
    /// `spec.subdomain`.
    pub subdomain: Option<String>,
    /// `status.podIPs` (the first is `status.podIP`). Empty until the sandbox has one.
    pub ips: Vec<IpAddr>,
    /// The `Ready` condition is true.
    pub ready: bool,
    /// `metadata.deletionTimestamp` is set.
    pub terminating: bool,
    /// `status.phase`.
    pub phase: PodPhase,
    /// All container ports of all containers.
    pub container_ports: Vec<ContainerPort>,
}

/// Everything the authority serves, as one consistent view.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// All Services of the cluster.
    pub services: Vec<Service>,
    /// All Pods of the cluster (on every node: DNS is cluster-wide).
    pub pods: Vec<Pod>,
}

/// One incremental change, for callers that follow a watch instead of sending snapshots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A Service was created or changed.
    UpsertService(Service),
    /// A Service was deleted.
    DeleteService(ObjectKey),
    /// A Pod was created or changed.
    UpsertPod(Pod),
    /// A Pod was deleted.
    DeletePod(ObjectKey),
}
