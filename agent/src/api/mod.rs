//! The agent's API: a subset of the Kubernetes REST API (same paths, verbs, object shapes,
//! watch streams and `Status` errors), served on the unix socket. Requests are parsed into a
//! closed set of typed actions ([`request::Request`]) and handled without HTTP
//! ([`handler::Api`]), so the handlers are tested directly; [`server`] is the thin HTTP layer.

pub mod discovery;
pub mod handler;
pub mod patch;
pub mod path;
pub mod request;
pub mod server;
pub mod status;
pub mod table;

pub use handler::{Api, ApiConfig, ByteStream, ExecSession, NodeIo, Response};
pub use request::Request;
pub use status::ApiError;
