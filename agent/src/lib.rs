//! berth agent: daemon, cluster state, objects, API, controllers, kubelet and CLI.
//! See ARCHITECTURE.md.
#![allow(unexpected_cfgs)] // `berth_lead` gates modules under construction; removed when they land.

pub mod objects;
pub mod state;

// Modules under construction by the lead, compiled only with `--cfg berth_lead` until they
// build against the state and objects layers.
#[cfg(berth_lead)]
pub mod api;
#[cfg(berth_lead)]
pub mod cli;
#[cfg(berth_lead)]
pub mod config;
#[cfg(berth_lead)]
pub mod kubelet;
#[cfg(berth_lead)]
pub mod controllers;
#[cfg(berth_lead)]
pub mod events;
