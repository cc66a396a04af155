//! berth's container runtime layer: the shim, pod sandboxes, container specs, volumes and the
//! local image store. See ARCHITECTURE.md for how the pieces fit.

pub mod image;
