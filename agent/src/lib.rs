//! berth agent: daemon, cluster state, objects, API, controllers, kubelet and CLI.
//! See ARCHITECTURE.md.

pub mod objects;
pub mod state;

pub mod api;
pub mod claims;
pub mod cluster;
pub mod cli;
pub mod config;
pub mod kubelet;
pub mod network;
pub mod controllers;
pub mod daemon;
pub mod dns;
pub mod events;
