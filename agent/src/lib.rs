//! berth agent: daemon, cluster state, objects, API, controllers, kubelet and CLI.
//! See ARCHITECTURE.md.

pub mod objects;
pub mod state;

pub mod api;
pub mod claims;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod controllers;
pub mod daemon;
pub mod dns;
pub mod events;
pub mod kubelet;
pub mod network;
