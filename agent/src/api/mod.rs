//! The agent's API: a subset of the Kubernetes REST API (same paths, verbs, object shapes,
//! watch streams and `Status` errors), served on the unix socket. Requests are parsed into a
//! closed set of typed actions and handled without HTTP, so the handlers are tested directly.

pub mod path;
pub mod status;
