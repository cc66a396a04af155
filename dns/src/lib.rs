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
//!
//! How the agent drives it: [`Authority::replace`] with a full snapshot at start and on
//! resync (it diffs against what it holds, so unchanged objects cost a comparison), and
//! [`Authority::apply`] with the [`Change`]s of each watch event (about 0.1 ms at 10,000
//! Pods). Either call returns after the new answers are live.
//!
//! ```
//! use std::sync::Arc;
//! use berth_dns::{Authority, DnsServer, ServerConfig, Snapshot, ZoneConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let authority = Arc::new(Authority::new(ZoneConfig {
//!     pod_networks: vec!["10.244.0.0/16".parse()?],
//!     nameserver_ips: vec!["10.244.0.1".parse()?],
//!     ..ZoneConfig::default()
//! })?);
//! authority.replace(Snapshot::default());
//! let runtime = tokio::runtime::Runtime::new()?;
//! runtime.block_on(async {
//!     let server = DnsServer::start(
//!         ServerConfig {
//!             listen: vec!["127.0.0.1:0".parse()?],
//!             upstreams: vec!["127.0.0.1:9".parse()?],
//!             ..ServerConfig::default()
//!         },
//!         authority.clone(),
//!     )
//!     .await?;
//!     assert_ne!(server.local_addrs()[0].port(), 0);
//!     server.shutdown().await;
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })?;
//! # Ok(())
//! # }
//! ```

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
mod udp_batch;
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
