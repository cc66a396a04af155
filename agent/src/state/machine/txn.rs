//! A transaction over [`Objects`]: changes are staged and only become visible when the whole
//! command (or batch) succeeded.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value;

use super::Objects;
use super::meta;
use crate::state::Revision;
use crate::state::key::ObjectKey;
use crate::state::watch::{EventType, WatchEvent};

enum Staged {
    Present(Arc<Value>),
    /// Removed; holds the object's last state (with the removing revision).
    Removed(Arc<Value>),
}

pub(super) struct Txn<'a> {
    base: &'a Objects,
    revision: Revision,
    staged: BTreeMap<ObjectKey, Staged>,
}

impl<'a> Txn<'a> {
    pub(super) fn new(base: &'a Objects, revision: Revision) -> Txn<'a> {
        Txn {
            base,
            revision,
            staged: BTreeMap::new(),
        }
    }

    /// The object stored under `key`, as this transaction sees it.
    pub(super) fn get(&self, key: &ObjectKey) -> Option<Arc<Value>> {
        match self.staged.get(key) {
            Some(Staged::Present(object)) => Some(object.clone()),
            Some(Staged::Removed(_)) => None,
            None => self.base.get(key).cloned(),
        }
    }

    /// The last state of an object this transaction removed.
    pub(super) fn removed(&self, key: &ObjectKey) -> Option<Arc<Value>> {
        match self.staged.get(key) {
            Some(Staged::Removed(object)) => Some(object.clone()),
            _ => None,
        }
    }

    /// The key of the object with `uid`, if it exists.
    pub(super) fn find_uid(&self, uid: &str) -> Option<ObjectKey> {
        if uid.is_empty() {
            return None;
        }
        let staged = self.staged.iter().find_map(|(key, slot)| match slot {
            Staged::Present(object) if meta::uid(object) == uid => Some(key.clone()),
            _ => None,
        });
        staged.or_else(|| {
            let key = self.base.key_of_uid(uid)?;
            // A staged entry for that key means it was removed or replaced by another object.
            (!self.staged.contains_key(key)).then(|| key.clone())
        })
    }

    /// Keys of the objects whose `metadata.ownerReferences` name `owner_uid`, in key order.
    pub(super) fn dependents(&self, owner_uid: &str) -> Vec<ObjectKey> {
        let mut keys: BTreeSet<ObjectKey> = self
            .base
            .dependents_of(owner_uid)
            .filter(|key| !self.staged.contains_key(*key))
            .cloned()
            .collect();
        for (key, slot) in &self.staged {
            if let Staged::Present(object) = slot
                && meta::owner_uids(object).contains(&owner_uid)
            {
                keys.insert(key.clone());
            }
        }
        keys.into_iter().collect()
    }

    /// Stages `object` under `key`, stamped with this revision as its resourceVersion.
    pub(super) fn put(&mut self, key: &ObjectKey, mut object: Value) -> Arc<Value> {
        meta::metadata_mut(&mut object).insert(
            "resourceVersion".into(),
            Value::String(self.revision.to_string()),
        );
        let object = Arc::new(object);
        self.staged
            .insert(key.clone(), Staged::Present(object.clone()));
        object
    }

    /// Stages the removal of `key`; `last` is the object's last state, which is returned
    /// stamped with this revision.
    pub(super) fn remove(&mut self, key: &ObjectKey, mut last: Value) -> Arc<Value> {
        meta::metadata_mut(&mut last).insert(
            "resourceVersion".into(),
            Value::String(self.revision.to_string()),
        );
        let last = Arc::new(last);
        self.staged
            .insert(key.clone(), Staged::Removed(last.clone()));
        last
    }

    /// The events this transaction produces against its base, in key order: one per key whose
    /// presence or content changed.
    pub(super) fn into_changes(self) -> Vec<WatchEvent> {
        let revision = self.revision;
        let event = |type_, object| WatchEvent {
            type_,
            object,
            revision,
        };
        let mut events = Vec::with_capacity(self.staged.len());
        for (key, slot) in self.staged {
            let before = self.base.get(&key);
            match (slot, before) {
                (Staged::Present(object), Some(before))
                    if meta::uid(before) != meta::uid(&object) =>
                {
                    // Removed and created again within one batch: a different object.
                    let mut last = (**before).clone();
                    meta::metadata_mut(&mut last).insert(
                        "resourceVersion".into(),
                        Value::String(revision.to_string()),
                    );
                    events.push(event(EventType::Deleted, Arc::new(last)));
                    events.push(event(EventType::Added, object));
                }
                (Staged::Present(object), Some(_)) => {
                    events.push(event(EventType::Modified, object))
                }
                (Staged::Present(object), None) => events.push(event(EventType::Added, object)),
                (Staged::Removed(object), Some(_)) => {
                    events.push(event(EventType::Deleted, object))
                }
                // Created and removed within one batch: nothing to tell.
                (Staged::Removed(_), None) => {}
            }
        }
        events
    }
}
