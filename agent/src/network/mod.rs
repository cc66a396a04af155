//! Pod networking on this node: address management in the cluster state ([`ipam`]) over the
//! runtime's kernel primitives (`berth_runtime::network`).
//!
//! The daemon and the kubelet call [`NodeNetwork`]:
//!
//! ```text
//! NodeNetwork::start(state, config)   daemon start: bridge, forwarding, nft table; collect what
//!                                     a crash left (interfaces, ports, records of gone pods)
//! NodeNetwork::attach(pod, netns)     after the sandbox exists, before any container starts:
//!                                     address, veth, route, gratuitous ARP, hostPorts
//! NodeNetwork::detach(pod_uid)        on teardown; idempotent
//! NodeNetwork::gateway()              the bridge address: the pods' DNS server listens there
//! NodeNetwork::set_peers(peers)       host-gw routes to the peers' pod CIDRs (cluster issue)
//! ```
//!
//! hostNetwork pods never call attach. Crash safety: an address record is committed before an
//! interface carries the address and released after the interface is gone; interfaces and
//! rules are named by the pod's uid; [`NodeNetwork::start`] reconciles all three with the live
//! pods. See [`ipam`] for the records and why no address can be handed out twice.

pub mod ipam;
mod node;
pub mod pod;

use std::net::IpAddr;

use berth_runtime::network::HostPort;
use berth_runtime::network::ipnet::{IpNet, Ipv4Net};

pub use berth_runtime::network::NodeNetworkConfig as NetworkConfig;
pub use node::{NodeNetwork, parse_pod_cidr};

#[cfg(test)]
mod tests;

/// What a pod got from [`NodeNetwork::attach`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodAddress {
    /// The pod's address (`status.podIP`).
    pub ip: IpAddr,
    /// Its prefix length (the pod CIDR's).
    pub prefix_len: u8,
    /// The pod's default gateway and DNS server.
    pub gateway: IpAddr,
    /// The interface MTU.
    pub mtu: u32,
    /// The interface's name inside the pod (`eth0`).
    pub interface: String,
    /// The host end's name (`bv…`), for diagnostics.
    pub host_interface: String,
}

/// A pod network operation that failed. Messages name the pod and the conflict.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The kernel side failed or refused (see the source for what and why).
    #[error(transparent)]
    Host(berth_runtime::network::NetworkError),
    /// The pod cannot be served as it is.
    #[error("pod {pod}: {field}: {reason}")]
    InvalidPod {
        pod: String,
        field: String,
        reason: String,
    },
    /// A port the pod wants to publish is taken.
    #[error("pod {pod}: host port {port} is already taken by {holder}")]
    HostPortTaken {
        pod: String,
        port: HostPort,
        /// `pod <namespace>/<name>`, `a process on the node`, ...
        holder: String,
    },
    /// No address is free.
    #[error(
        "pod {pod}: no free address in pod CIDR {cidr}: all {capacity} addresses are held by pods on this node"
    )]
    Exhausted {
        pod: String,
        cidr: Ipv4Net,
        capacity: usize,
    },
    /// The pod was deleted while it was being attached.
    #[error("pod {pod} no longer exists")]
    PodGone { pod: String },
    /// Other writers kept changing the address records.
    #[error("pod {pod}: the address records kept changing; try again")]
    Contended { pod: String },
    /// Writing an address record failed.
    #[error("{action}")]
    State {
        action: String,
        #[source]
        source: crate::state::ProposeError,
    },
    /// A peer cannot be routed to.
    #[error("peer {node} with pod CIDR {cidr}: {reason}")]
    InvalidPeer {
        node: IpAddr,
        cidr: IpNet,
        reason: &'static str,
    },
    /// A blocking network task panicked.
    #[error("a network task panicked: {message}")]
    Panicked { message: String },
}

impl From<berth_runtime::network::NetworkError> for NetworkError {
    fn from(error: berth_runtime::network::NetworkError) -> NetworkError {
        NetworkError::Host(error)
    }
}
