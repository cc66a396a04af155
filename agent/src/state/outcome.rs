//! What applying a command produced: the changed objects, or the rule that refused it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Revision;
use super::key::ObjectKey;
use super::watch::WatchEvent;

/// The deterministic result of a command that was applied.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    /// The command's revision (its raft log index); every object it changed carries it as
    /// `metadata.resourceVersion`.
    pub revision: Revision,
    /// The result of the command itself (for a batch, one result per inner command).
    pub outcome: Outcome,
    /// Every object the command changed, including cascaded deletions, in key order. These
    /// are the events watchers receive for this revision.
    pub changes: Vec<WatchEvent>,
}

/// The result of one command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// The object as stored after a create, update or status update. An update that changed
    /// nothing returns the stored object with its old resourceVersion.
    Stored(Arc<Value>),
    /// A delete that started (or shortened) a deletion: the object is kept with
    /// `deletionTimestamp` set, waiting for finalizers or a graceful pod shutdown.
    Terminating(Arc<Value>),
    /// The object was removed. This is its last state, with `resourceVersion` set to the
    /// revision that removed it.
    Removed(Arc<Value>),
    /// The results of a batch's commands, in order.
    Batch(Vec<Outcome>),
    /// A `Noop` command, or a raft entry that carries no command.
    Noop,
}

impl Outcome {
    /// The object this outcome is about, if any (`None` for batches and noops).
    pub fn object(&self) -> Option<&Arc<Value>> {
        match self {
            Outcome::Stored(object) | Outcome::Terminating(object) | Outcome::Removed(object) => {
                Some(object)
            }
            Outcome::Batch(_) | Outcome::Noop => None,
        }
    }
}

/// A command refused by the state machine's rules. Deterministic: every host refuses it the
/// same way, and nothing changes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Rejection {
    /// The object does not exist.
    #[error("{key} not found")]
    NotFound {
        /// The missing object.
        key: ObjectKey,
    },
    /// An object with that key already exists.
    #[error("{key} already exists")]
    AlreadyExists {
        /// The existing object.
        key: ObjectKey,
    },
    /// The resourceVersion precondition does not match the stored object.
    #[error(
        "{key} has been modified: the request expected resourceVersion {expected}, the stored object has {actual}"
    )]
    ResourceVersionConflict {
        /// The object.
        key: ObjectKey,
        /// The resourceVersion the request expected.
        expected: Revision,
        /// The stored object's resourceVersion.
        actual: String,
    },
    /// The uid precondition does not match the stored object.
    #[error("{key} has uid {actual}, the request expected uid {expected}")]
    UidConflict {
        /// The object.
        key: ObjectKey,
        /// The uid the request expected.
        expected: String,
        /// The stored object's uid.
        actual: String,
    },
    /// The command or object breaks a rule of the state machine.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The offending field, e.g. `metadata.finalizers`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A command inside a batch was refused, so the whole batch was.
    #[error("command {index} of the batch was refused")]
    InBatch {
        /// The position of the refused command in the batch.
        index: usize,
        /// Why it was refused.
        #[source]
        rejection: Box<Rejection>,
    },
}

impl Rejection {
    /// The Kubernetes `Status.reason` for this rejection: `NotFound`, `AlreadyExists`,
    /// `Conflict` or `Invalid` (a batch reports its refused command's reason).
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::NotFound { .. } => "NotFound",
            Rejection::AlreadyExists { .. } => "AlreadyExists",
            Rejection::ResourceVersionConflict { .. } | Rejection::UidConflict { .. } => "Conflict",
            Rejection::Invalid { .. } => "Invalid",
            Rejection::InBatch { rejection, .. } => rejection.reason(),
        }
    }

    /// The rejection of the innermost refused command (itself unless this is `InBatch`).
    pub fn root(&self) -> &Rejection {
        match self {
            Rejection::InBatch { rejection, .. } => rejection.root(),
            other => other,
        }
    }

    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Rejection {
        Rejection::Invalid {
            field: field.to_string(),
            message: message.into(),
        }
    }
}
