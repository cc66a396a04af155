//! berth agent: daemon, cluster state, objects, API, controllers, kubelet and CLI.
//! See ARCHITECTURE.md.

pub mod objects;
pub mod state;
