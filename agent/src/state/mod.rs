//! Cluster state: commands, the state machine and its replicated, persisted log.
//!
//! Everything berth knows (objects users applied, pod status, nodes, events) lives in one
//! deterministic state machine, changed only by [`Command`]s applied in raft log order.
//!
//! - [`State`] is the handle: [`State::open`], [`State::propose`], reads ([`State::get`],
//!   [`State::list`], [`State::revision`]) from an in-memory index, [`State::watch`] and
//!   [`State::subscribe_changes`].
//! - [`machine`] is the pure state machine ([`machine::Objects::execute`]); it reads no clock
//!   and no randomness, commands carry them.
//! - `store` persists the raft log and the state machine in one redb database,
//!   `<data-dir>/state/state.redb`, guarded by a lock file (`<data-dir>/state/lock`).
//! - `raft` holds the openraft type configuration. The host is a one-member raft group from
//!   its first start; `cluster` adds members; peers talk HTTPS ([`raft::PeerClient`]).
//!
//! Tasks and channels: openraft runs its core task and a state-machine worker task; the
//! worker applies committed entries, updates the index under a short write lock and publishes
//! events to a bounded broadcast channel (watchers) and a `watch` channel of the latest
//! revision (controllers). Database writes run on tokio's blocking pool.
//!
//! Versions: a command's revision is its log index. Every object a command changes gets
//! `metadata.resourceVersion` = that revision as a decimal string.
//!
//! ```no_run
//! use berth_agent::state::{Command, ObjectKey, State, StateConfig, Timestamp};
//! use futures_util::StreamExt;
//! use serde_json::json;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let state = State::open(StateConfig::new("/var/lib/berth", "host-a")).await?;
//! let (_, revision) = state.list("ConfigMap", Some("db"));
//! let mut watch = state.watch(Some("ConfigMap"), Some("db"), Some(revision))?;
//!
//! let object = json!({"apiVersion": "v1", "kind": "ConfigMap",
//!                     "metadata": {"namespace": "db", "name": "pg"}, "data": {"a": "1"}});
//! let applied = state.propose(Command::create(object, "a-generated-uid", Timestamp::now())).await?;
//! assert_eq!(state.get("ConfigMap", "db", "pg").unwrap()["metadata"]["resourceVersion"],
//!            applied.revision.to_string());
//! let added = watch.next().await.unwrap()?;
//! assert_eq!(added.revision, applied.revision);
//!
//! state.propose(Command::delete(ObjectKey::new("ConfigMap", "db", "pg"), Timestamp::now())).await?;
//! state.shutdown().await;
//! # Ok(()) }
//! ```

mod command;
mod handle;
mod key;
pub mod machine;
mod outcome;
pub mod raft;
mod store;
mod time;
mod watch;

pub use command::{Command, Propagation};
pub use handle::{ForwardAnswer, OpenError, ProposeError, State, StateConfig};
pub use key::ObjectKey;
pub use outcome::{Applied, Outcome, Rejection};
pub use store::StoreError;
pub use time::Timestamp;
pub use watch::{EventType, WatchError, WatchEvent, WatchStream};

/// A position in the state's history: the raft log index of a command. Revisions only grow;
/// not every revision changes an object.
pub type Revision = u64;
