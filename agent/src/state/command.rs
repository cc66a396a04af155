//! Commands: the only way cluster state changes.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Revision;
use super::key::ObjectKey;
use super::time::Timestamp;

/// A change to the cluster state, proposed through raft and applied in log order.
///
/// A command carries everything that is not a pure function of the state (the time, generated
/// uids and names), so applying it is deterministic: the same log gives the same state on every
/// host. Objects are Kubernetes-shaped JSON that was parsed and validated before the command was
/// proposed; the state machine only enforces the few rules listed on each variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Stores a new object. Fails with `AlreadyExists` if its key is taken.
    ///
    /// The state machine sets `metadata.uid` to `uid`, `metadata.creationTimestamp` to `now`,
    /// `metadata.generation` to 1 and `metadata.resourceVersion` to the command's revision, and
    /// clears `deletionTimestamp` and `deletionGracePeriodSeconds`. When every owner named in
    /// `metadata.ownerReferences` is absent the create is rejected, since the object would be
    /// garbage at birth.
    Create {
        /// The full object (apiVersion, kind, metadata, spec or data, status).
        object: Value,
        /// The uid generated for the object by the proposer.
        uid: String,
        /// The proposer's clock.
        now: Timestamp,
    },
    /// Replaces an object's metadata and everything except its status, which is kept.
    ///
    /// `uid`, `creationTimestamp`, `deletionTimestamp`, `deletionGracePeriodSeconds` are kept
    /// from the stored object; `generation` increments when anything outside `metadata` and
    /// `status` changes. A `metadata.uid` in the object, when set, must match (else `Conflict`).
    /// Finalizers may be removed but not added once deletion started. When deletion started
    /// without a pending grace period and the update empties the finalizers, the object is
    /// removed (and its dependents deleted). An update that changes nothing keeps the
    /// resourceVersion and emits no event.
    Update {
        /// The new object; its key (kind, namespace, name) selects the stored object.
        object: Value,
        /// When set, the stored object's resourceVersion must equal it (else `Conflict`).
        precondition_resource_version: Option<Revision>,
        /// The proposer's clock (used when the update removes the object and cascades).
        now: Timestamp,
    },
    /// Replaces only the status of an object (`Value::Null` removes it).
    UpdateStatus {
        /// The object to change.
        key: ObjectKey,
        /// The new status.
        status: Value,
        /// When set, the stored object's resourceVersion must equal it (else `Conflict`).
        precondition_resource_version: Option<Revision>,
    },
    /// Deletes an object, as Kubernetes does:
    ///
    /// - an object with finalizers gets `deletionTimestamp` and stays until they are removed;
    /// - a Pod bound to a node (`spec.nodeName`) and not Succeeded or Failed is deleted
    ///   gracefully: `deletionTimestamp = now + grace` and `deletionGracePeriodSeconds = grace`,
    ///   where grace is `grace_period_seconds` or else the pod's
    ///   `spec.terminationGracePeriodSeconds` (default 30); the kubelet stops it and deletes it
    ///   again with grace 0. A later delete may shorten the grace, never lengthen it;
    /// - anything else is removed at once.
    ///
    /// When an object is removed, its dependents (objects whose `metadata.ownerReferences` name
    /// its uid) are deleted by the same rules in the same command, unless they have another
    /// live owner (then only the reference is dropped). See [`Propagation`] for the other modes.
    Delete {
        /// The object to delete.
        key: ObjectKey,
        /// When set, the stored object's uid must equal it (else `Conflict`).
        precondition_uid: Option<String>,
        /// When set, the stored object's resourceVersion must equal it (else `Conflict`).
        precondition_resource_version: Option<Revision>,
        /// Overrides the grace period of a graceful pod deletion; 0 removes at once.
        grace_period_seconds: Option<i64>,
        /// What happens to dependents.
        propagation: Propagation,
        /// The proposer's clock.
        now: Timestamp,
    },
    /// Several commands applied atomically, in order: all succeed or none changes anything.
    Batch(Vec<Command>),
    /// Changes nothing; gets a revision. Useful as a write barrier.
    Noop,
}

/// What deleting an object does to its dependents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Propagation {
    /// Dependents are deleted when the owner is removed (Kubernetes' default).
    #[default]
    Background,
    /// Dependents are kept; their owner references to this object are dropped at once.
    Orphan,
    /// The owner gets the `foregroundDeletion` finalizer and is removed only after all its
    /// dependents are gone; dependents are deleted at once (with foreground propagation).
    Foreground,
}

impl Command {
    /// `Create` of `object` with a uid and time supplied by the caller.
    pub fn create(object: Value, uid: impl Into<String>, now: Timestamp) -> Command {
        Command::Create {
            object,
            uid: uid.into(),
            now,
        }
    }

    /// `Update` of `object` without a resourceVersion precondition.
    pub fn update(object: Value, now: Timestamp) -> Command {
        Command::Update {
            object,
            precondition_resource_version: None,
            now,
        }
    }

    /// `UpdateStatus` of `key` without a resourceVersion precondition.
    pub fn update_status(key: ObjectKey, status: Value) -> Command {
        Command::UpdateStatus {
            key,
            status,
            precondition_resource_version: None,
        }
    }

    /// `Delete` of `key` with default options: no precondition, the object's own grace period,
    /// background propagation.
    pub fn delete(key: ObjectKey, now: Timestamp) -> Command {
        Command::Delete {
            key,
            precondition_uid: None,
            precondition_resource_version: None,
            grace_period_seconds: None,
            propagation: Propagation::Background,
            now,
        }
    }

    /// Adds a resourceVersion precondition to an `Update`, `UpdateStatus` or `Delete` (other
    /// commands are returned unchanged): `Command::delete(key, now).expecting_resource_version(7)`.
    pub fn expecting_resource_version(mut self, revision: Revision) -> Command {
        match &mut self {
            Command::Update {
                precondition_resource_version,
                ..
            }
            | Command::UpdateStatus {
                precondition_resource_version,
                ..
            }
            | Command::Delete {
                precondition_resource_version,
                ..
            } => *precondition_resource_version = Some(revision),
            Command::Create { .. } | Command::Batch(_) | Command::Noop => {}
        }
        self
    }

    /// Adds a uid precondition to a `Delete` (other commands are returned unchanged).
    pub fn expecting_uid(mut self, uid: impl Into<String>) -> Command {
        if let Command::Delete {
            precondition_uid, ..
        } = &mut self
        {
            *precondition_uid = Some(uid.into());
        }
        self
    }

    /// Sets the grace period of a `Delete` (other commands are returned unchanged).
    pub fn with_grace_period(mut self, seconds: i64) -> Command {
        if let Command::Delete {
            grace_period_seconds,
            ..
        } = &mut self
        {
            *grace_period_seconds = Some(seconds);
        }
        self
    }

    /// Sets the propagation of a `Delete` (other commands are returned unchanged).
    pub fn with_propagation(mut self, propagation: Propagation) -> Command {
        if let Command::Delete {
            propagation: current,
            ..
        } = &mut self
        {
            *current = propagation;
        }
        self
    }

    /// A short name for logs: `create`, `update`, `update-status`, `delete`, `batch`, `noop`.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Create { .. } => "create",
            Command::Update { .. } => "update",
            Command::UpdateStatus { .. } => "update-status",
            Command::Delete { .. } => "delete",
            Command::Batch(_) => "batch",
            Command::Noop => "noop",
        }
    }
}
