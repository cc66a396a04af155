//! Pod networking on one node: the kernel side.
//!
//! ```text
//!   pod netns                      host netns (the agent's, or a test's)
//!  ┌──────────────────┐           ┌──────────────────────────────────────────────────┐
//!  │ eth0 10.244.0.5  │◀─ veth ─▶ │ bv<hash>  ─┐                                       │
//!  │ default via .1   │           │            ├─ berth0 10.244.0.1/24 (the gateway)   │
//!  └──────────────────┘           │ bv<hash>  ─┘                                       │
//!                                 │ nft table ip berth: masquerade, hostPort DNAT      │
//!                                 │ routes proto 98: 10.244.1.0/24 via <peer node>     │
//!                                 └──────────────────────────────────────────────────┘
//! ```
//!
//! - [`HostNetwork::open`]: bridge with the gateway address, forwarding, berth's nft table
//!   (idempotent; adopts what a previous run left).
//! - [`HostNetwork::attach`] / [`HostNetwork::detach`]: a pod's veth pair, address, default
//!   route, gratuitous ARP and published ports (`hostPort`). Detach is idempotent.
//! - [`HostNetwork::pods`], [`HostNetwork::host_ports`], [`HostNetwork::collect_orphans`]:
//!   what is installed, and removal of what belongs to no live pod (after a crash).
//! - [`HostNetwork::set_peers`]: host-gw routes to peer nodes' pod CIDRs.
//!
//! Netlink goes through `netlink-packet-route` 0.31 and `netlink-sys` (the versions
//! libcontainer already builds) with a small synchronous client ([`netlink`]): each request is
//! one datagram and one ack, which keeps a pod's setup well under a millisecond of kernel
//! work, and a socket opened on a thread inside a namespace keeps working in it. nftables goes
//! through its JSON API, to libnftables in-process ([`nft`] and [`libnftables`] say why).
//! Address management is not here: callers pass the pod's address (the agent's IPAM decides
//! it).
//!
//! Where a pod's setup time goes (bench/network/run.sh prints it step by step): creating the
//! veth pair with its peer directly in the pod's namespace is the largest part (under a
//! millisecond); nothing waits on a timer, a process or an RCU grace period. Teardown is one
//! request, deleting the host end (which takes the pod's end with it); the kernel answers it
//! only after an RCU barrier (`netdev_run_todo`), 5-20 ms on a busy host.
//!
//! Everything is synchronous; call it from a blocking context (`spawn_blocking`).

pub mod addresses;
pub mod arp;
pub mod config;
pub mod host;
pub mod hostports;
pub mod libnftables;
pub mod links;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod peers;
pub mod pod;

use std::net::Ipv4Addr;
use std::path::PathBuf;

pub use config::NodeNetworkConfig;
pub use host::HostNetwork;
pub use hostports::{HostPort, HostPortRule, PortHolder, Protocol};
pub use ipnet;
pub use peers::{PeerError, PeerRoute};
pub use pod::{Collected, PodAttachment, PodInterface, PodLink, host_interface_name};

use ipnet::Ipv4Net;

/// A pod network operation that failed. Messages name the thing and what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A setting is unusable.
    #[error("{field} {value:?} is invalid: {reason}")]
    InvalidConfig {
        field: &'static str,
        value: String,
        reason: String,
    },
    /// The pod CIDR collides with a network the host already has.
    #[error(
        "pod CIDR {cidr} overlaps the host network {network} ({place}); choose a pod CIDR that is not in use on this host"
    )]
    CidrOverlap {
        cidr: Ipv4Net,
        network: Ipv4Net,
        place: String,
    },
    /// The bridge's name is taken by another kind of interface.
    #[error("interface {name} exists and is a {kind}, not a bridge; choose another bridge name")]
    NotABridge { name: String, kind: String },
    /// A network namespace file could not be opened or joined.
    #[error("network namespace {path}")]
    Netns {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The kernel refused a netlink request.
    #[error("{action}")]
    Netlink {
        /// What berth was doing.
        action: String,
        #[source]
        source: netlink::NetlinkError,
    },
    /// nft refused a change to berth's table.
    #[error("{action}")]
    Nft {
        /// What berth was doing.
        action: String,
        #[source]
        source: nft::NftError,
    },
    /// A sysctl could not be read or set.
    #[error("cannot set {path}")]
    Sysctl {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The address chosen for a pod cannot be used.
    #[error("address {address} for pod {pod} is not usable in pod CIDR {cidr}: {reason}")]
    BadAddress {
        pod: String,
        address: Ipv4Addr,
        cidr: Ipv4Net,
        reason: &'static str,
    },
    /// A port the pod wants to publish is taken.
    #[error("host port {port} for pod {pod} is already taken by {holder}")]
    HostPortTaken {
        pod: String,
        port: HostPort,
        holder: PortHolder,
    },
    /// A hostIP is not an address of this node.
    #[error("host port {port} for pod {pod}: the hostIP is not an address of this node")]
    HostIpNotLocal { pod: String, port: HostPort },
    /// The peers were refused before any route changed.
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// The kernel has no direct route to a peer node.
    #[error(
        "peer {peer}: the node address is not on a directly connected network (host-gw routing needs the nodes on one L2 segment)"
    )]
    PeerUnreachable { peer: PeerRoute },
}
