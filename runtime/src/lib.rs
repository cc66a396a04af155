//! berth's container runtime layer: the shim, pod sandboxes, container specs, volumes and the
//! local image store. See ARCHITECTURE.md for how the pieces fit.
//!
//! The agent drives everything through [`Runtime`]:
//!
//! ```text
//! Runtime::create_sandbox   pod namespaces (net, uts, ipc) + pod cgroup + pod /dev/shm
//! Runtime::prepare_volume   claim / emptyDir / hostPath / projected ConfigMap and Secret files
//! Runtime::start_container  rootfs (overlay) + OCI spec + berth-shim, returns once running
//! Shim::wait / stop / signal
//! Runtime::exec / exec_output
//! Runtime::remove_container, remove_pod_volumes, remove_sandbox (all idempotent)
//! Runtime::recover          after an agent restart: running shims, exits, unknowns and
//!                           unconfirmed starts (remove those with force, then start again)
//! ```
//!
//! Everything lives under the two configured directories ([`RuntimeDirs`]); the crate keeps no
//! global state, so two agents with different directories and cgroup parents can share a host.
//! The on-disk layout is documented in [`layout`].

pub mod cgroup;
pub mod container;
pub mod exec;
pub mod image;
pub mod layout;
pub mod logs;
pub mod network;
pub mod rootfs;
pub mod runtime;
pub mod sandbox;
pub mod seccomp_program;
pub mod shim;
pub mod spec;
pub mod volumes;

mod fsutil;
mod nsfs;
mod sys;
mod timefmt;

pub use container::{ContainerError, ContainerRequest, RootfsSource, VolumeMount};
pub use exec::{ExecError, ExecExit, ExecOutput, ExecProcess, ExecRequest};
pub use layout::{ContainerId, IdError, PodUid, RuntimeDirs};
pub use runtime::{Runtime, RuntimeConfig, RuntimeError};
pub use sandbox::{Sandbox, SandboxConfig, SandboxError};
pub use shim::{
    ContainerExit, ExitRecord, LogConfig, RecoveredContainer, RecoveredState, Shim, ShimError,
};
