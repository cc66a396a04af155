//! The state machine: all objects, and the pure function that applies a command to them.
//!
//! [`Objects::execute`] is the whole of it: given the objects, a revision and a command, it
//! either refuses the command with a [`Rejection`] (changing nothing) or applies it atomically
//! and returns the [`Applied`] outcome with one [`WatchEvent`] per changed object. It reads no
//! clock and no randomness: commands carry those, so every host replaying the same log reaches
//! the same objects. The raft store (`state::store`) calls it for each committed entry; tests
//! call it directly.

mod create;
mod delete;
mod meta;
mod txn;
mod update;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use serde_json::Value;

use super::Revision;
use super::command::Command;
use super::key::ObjectKey;
use super::outcome::{Applied, Outcome, Rejection};
use super::watch::{EventType, WatchEvent};
use txn::Txn;

pub use meta::FOREGROUND_DELETION;

/// Every stored object, indexed by key, by uid and by owner, at one revision.
#[derive(Clone, Debug, Default)]
pub struct Objects {
    by_key: BTreeMap<ObjectKey, Arc<Value>>,
    by_uid: HashMap<String, ObjectKey>,
    /// owner uid -> keys of the objects whose ownerReferences name it.
    dependents: HashMap<String, BTreeSet<ObjectKey>>,
    revision: Revision,
}

impl Objects {
    /// No objects, at revision 0.
    pub fn new() -> Objects {
        Objects::default()
    }

    /// Rebuilds the state from stored objects (each must have a readable key) at `revision`.
    pub fn from_stored(
        objects: impl IntoIterator<Item = Arc<Value>>,
        revision: Revision,
    ) -> Result<Objects, Rejection> {
        let mut state = Objects::new();
        for object in objects {
            let key = ObjectKey::of(&object)?;
            state.insert(key, object);
        }
        state.revision = revision;
        Ok(state)
    }

    /// The revision of the last applied command.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// Records that the log entry at `revision` was applied without changing objects (a raft
    /// entry carrying no command).
    pub fn advance(&mut self, revision: Revision) {
        self.revision = self.revision.max(revision);
    }

    /// The number of stored objects.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The object stored under `key`.
    pub fn get(&self, key: &ObjectKey) -> Option<&Arc<Value>> {
        self.by_key.get(key)
    }

    /// The objects of `kind` in `namespace` (every namespace when `None`), in key order.
    pub fn list<'s>(
        &'s self,
        kind: &str,
        namespace: Option<&str>,
    ) -> impl Iterator<Item = &'s Arc<Value>> + 's {
        let start = ObjectKey::new(kind, namespace.unwrap_or(""), "");
        let kind = kind.to_string();
        let namespace = namespace.map(str::to_string);
        self.by_key
            .range((Bound::Included(start), Bound::Unbounded))
            .take_while(move |(key, _)| {
                key.kind == kind && namespace.as_ref().is_none_or(|ns| &key.namespace == ns)
            })
            .map(|(_, object)| object)
    }

    /// Every object, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&ObjectKey, &Arc<Value>)> {
        self.by_key.iter()
    }

    pub(super) fn key_of_uid(&self, uid: &str) -> Option<&ObjectKey> {
        self.by_uid.get(uid)
    }

    pub(super) fn dependents_of(&self, owner_uid: &str) -> impl Iterator<Item = &ObjectKey> {
        self.dependents.get(owner_uid).into_iter().flatten()
    }

    /// Applies `command` as the log entry at `revision`.
    ///
    /// On success the objects change atomically and the outcome lists every change; on a
    /// [`Rejection`] nothing changes but the revision, which advances either way (the log
    /// entry was consumed).
    pub fn execute(&mut self, revision: Revision, command: &Command) -> Result<Applied, Rejection> {
        let result = {
            let mut txn = Txn::new(self, revision);
            run(&mut txn, command).map(|outcome| (outcome, txn.into_changes()))
        };
        self.advance(revision);
        let (outcome, changes) = result?;
        self.install(&changes);
        Ok(Applied {
            revision,
            outcome,
            changes,
        })
    }

    /// What applying `command` as the log entry at `revision` would do, without changing
    /// anything (for server-side dry runs).
    pub fn preview(&self, revision: Revision, command: &Command) -> Result<Applied, Rejection> {
        let mut txn = Txn::new(self, revision);
        let outcome = run(&mut txn, command)?;
        Ok(Applied {
            revision,
            outcome,
            changes: txn.into_changes(),
        })
    }

    fn install(&mut self, changes: &[WatchEvent]) {
        for change in changes {
            let key = ObjectKey::of(&change.object).expect("changed objects have keys");
            match change.type_ {
                EventType::Added | EventType::Modified => {
                    self.insert(key, change.object.clone());
                }
                EventType::Deleted => {
                    self.remove(&key);
                }
            }
        }
    }

    fn insert(&mut self, key: ObjectKey, object: Arc<Value>) {
        self.remove(&key);
        let uid = meta::uid(&object);
        if !uid.is_empty() {
            self.by_uid.insert(uid.to_string(), key.clone());
        }
        for owner in meta::owner_uids(&object) {
            self.dependents
                .entry(owner.to_string())
                .or_default()
                .insert(key.clone());
        }
        self.by_key.insert(key, object);
    }

    fn remove(&mut self, key: &ObjectKey) {
        let Some(old) = self.by_key.remove(key) else {
            return;
        };
        let uid = meta::uid(&old);
        if self.by_uid.get(uid) == Some(key) {
            self.by_uid.remove(uid);
        }
        for owner in meta::owner_uids(&old) {
            if let Some(keys) = self.dependents.get_mut(owner) {
                keys.remove(key);
                if keys.is_empty() {
                    self.dependents.remove(owner);
                }
            }
        }
    }
}

/// Runs one command inside `txn`.
fn run(txn: &mut Txn<'_>, command: &Command) -> Result<Outcome, Rejection> {
    match command {
        Command::Create { object, uid, now } => create::create(txn, object, uid, *now),
        Command::Update {
            object,
            precondition_resource_version,
            now,
        } => update::update(txn, object, *precondition_resource_version, *now),
        Command::UpdateStatus {
            key,
            status,
            precondition_resource_version,
        } => update::update_status(txn, key, status, *precondition_resource_version),
        Command::Delete {
            key,
            precondition_uid,
            precondition_resource_version,
            grace_period_seconds,
            propagation,
            now,
        } => delete::delete(
            txn,
            key,
            delete::Preconditions {
                uid: precondition_uid.as_deref(),
                resource_version: *precondition_resource_version,
            },
            *grace_period_seconds,
            *propagation,
            *now,
        ),
        Command::Batch(commands) => {
            let mut outcomes = Vec::with_capacity(commands.len());
            for (index, command) in commands.iter().enumerate() {
                let outcome = run(txn, command).map_err(|rejection| Rejection::InBatch {
                    index,
                    rejection: Box::new(rejection),
                })?;
                outcomes.push(outcome);
            }
            Ok(Outcome::Batch(outcomes))
        }
        Command::Noop => Ok(Outcome::Noop),
    }
}

/// Refuses a command whose precondition on the stored resourceVersion fails.
fn check_resource_version(
    key: &ObjectKey,
    stored: &Value,
    expected: Option<Revision>,
) -> Result<(), Rejection> {
    match expected {
        Some(expected) if meta::resource_version(stored) != expected.to_string() => {
            Err(Rejection::ResourceVersionConflict {
                key: key.clone(),
                expected,
                actual: meta::resource_version(stored).to_string(),
            })
        }
        _ => Ok(()),
    }
}
