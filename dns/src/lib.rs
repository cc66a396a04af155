//! berth's DNS authority: the cluster domain as Kubernetes DNS (schema 1.1.0) serves it
//! for headless Services, the pod network's reverse zone, and forwarding of everything
//! else for clients on allowed networks.
//!
//! Data flow: the agent builds [`Snapshot`]s (or [`Change`]s) of Services and Pods and
//! hands them to an [`Authority`], which selects endpoints ([`endpoints`]), builds records
//! incrementally and swaps in an immutable answer index. A [`DnsServer`] answers UDP and
//! TCP queries from that index and forwards the rest ([`forward`]). [`podfiles`] renders
//! the `/etc/resolv.conf` and `/etc/hosts` a Pod gets.
//!
//! Tasks: each listening UDP socket and TCP listener runs one task; each TCP connection
//! and each forwarded UDP query runs one more, both bounded. They stop when
//! [`DnsServer::shutdown`] is called.

mod authority;
mod config;
pub mod endpoints;
pub mod forward;
mod index;
pub mod model;
mod name;
pub mod podfiles;
mod records;
mod respond;
mod server;
mod wire;

pub use authority::{Authority, UpdateReport};
pub use config::{ConfigError, ZoneConfig};
pub use index::ZoneIndex;
pub use model::{
    Change, ContainerPort, ObjectKey, Pod, PodPhase, Protocol, Service, ServicePort, Snapshot,
    TargetPort,
};
pub use name::{Name, NameError};
pub use records::{SCHEMA_VERSION, UpdateStats};
pub use respond::{Outcome, RequestContext, Transport, respond};
pub use server::{DnsServer, ServerConfig, ServerError};
