//! The redb database holding the raft log, the raft metadata, the state machine's objects and
//! its snapshot: `<data-dir>/state/state.redb`.
//!
//! Durability: log appends, votes, truncation, purges and snapshots commit with
//! `Durability::Immediate` (fsync before openraft is told they are done). The state
//! machine's objects and the committed log id commit with
//! `Durability::None`: they are derived from the log, every later Immediate commit (the next
//! append, a purge, a snapshot, a clean close) makes them durable in one go, and after a
//! crash openraft re-applies the log entries beyond the durable last-applied id. redb commits
//! are atomic and checksummed, so the file always holds one consistent state.
//!
//! What redb guarantees (redb 4, default 1-phase commit with checksums): a commit is atomic;
//! once an Immediate commit returns, it survives a crash or power cut; a commit torn by a crash
//! is detected by its checksums and rolled back on the next open, to the previous commit. It
//! does not detect damage made after a clean close (a disk scribbling on data pages), so the
//! store runs redb's full integrity check on every open and refuses a file that needed repair
//! (see `StoreError::Repaired`). A truncated file is refused by redb itself.
//!
//! Every method of `Store` blocks on disk I/O; the async stores call them through
//! `Store::blocking`.

mod db;
mod log;
mod machine;

pub(crate) use db::Store;
pub use db::StoreError;
pub(crate) use log::LogStore;
pub(crate) use machine::{MachineStore, Published};
