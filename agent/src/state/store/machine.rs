//! openraft's state machine storage: applies committed entries to the in-memory [`Objects`],
//! persists the changes, publishes them to watchers, and builds and installs snapshots.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::db::{SnapshotRecord, Store, StoreError};
use crate::state::key::ObjectKey;
use crate::state::machine::Objects;
use crate::state::outcome::{Applied, Outcome};
use crate::state::raft::{Member, NodeId, Response, TypeConfig};
use crate::state::watch::{EventType, Hub};

type Entry = openraft::Entry<TypeConfig>;

/// The state as readers see it: the objects (written only by [`MachineStore`]) and the watch
/// hub they are published through.
pub(crate) struct Published {
    pub(crate) objects: RwLock<Objects>,
    pub(crate) hub: Hub,
}

/// The serialised form of a snapshot: every object, the last applied log id, the membership.
#[derive(Serialize, Deserialize)]
struct SnapshotBlob<O> {
    format: u32,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Member>,
    objects: Vec<O>,
}

/// The state machine store.
pub(crate) struct MachineStore {
    store: Arc<Store>,
    published: Arc<Published>,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Member>,
}

fn io_error(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    error: StoreError,
) -> StorageError<NodeId> {
    StorageIOError::new(subject, verb, AnyError::new(&error)).into()
}

impl MachineStore {
    pub(crate) fn new(
        store: Arc<Store>,
        published: Arc<Published>,
        last_applied: Option<LogId<NodeId>>,
        membership: StoredMembership<NodeId, Member>,
    ) -> MachineStore {
        MachineStore {
            store,
            published,
            last_applied,
            membership,
        }
    }
}

impl RaftStateMachine<TypeConfig> for MachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Member>), StorageError<NodeId>>
    {
        Ok((self.last_applied, self.membership.clone()))
    }

    /// Applies the entries in order to the in-memory objects (readers see each one as soon as
    /// it is applied: the entries are committed, so this is the truth), then writes all their
    /// changes in one database transaction and publishes the events.
    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        let mut dirty: BTreeMap<ObjectKey, Option<Arc<Value>>> = BTreeMap::new();
        let mut events = Vec::new();
        {
            let mut objects = self
                .published
                .objects
                .write()
                .expect("state index lock poisoned");
            for entry in entries {
                let revision = entry.log_id.index;
                self.last_applied = Some(entry.log_id);
                let noop = Response(Ok(Applied {
                    revision,
                    outcome: Outcome::Noop,
                    changes: Vec::new(),
                }));
                let response = match entry.payload {
                    EntryPayload::Blank => {
                        objects.advance(revision);
                        noop
                    }
                    EntryPayload::Membership(membership) => {
                        self.membership = StoredMembership::new(Some(entry.log_id), membership);
                        objects.advance(revision);
                        noop
                    }
                    EntryPayload::Normal(command) => {
                        let result = objects.execute(revision, &command);
                        match &result {
                            Ok(applied) => tracing::debug!(
                                revision,
                                verb = command.verb(),
                                changes = applied.changes.len(),
                                "applied a command"
                            ),
                            Err(rejection) => tracing::debug!(
                                revision,
                                verb = command.verb(),
                                %rejection,
                                "refused a command"
                            ),
                        }
                        if let Ok(applied) = &result {
                            for event in &applied.changes {
                                let key = ObjectKey::of(&event.object)
                                    .expect("changed objects have keys");
                                let present = event.type_ != EventType::Deleted;
                                dirty.insert(key, present.then(|| event.object.clone()));
                            }
                            events.extend(applied.changes.iter().cloned());
                        }
                        Response(result)
                    }
                };
                responses.push(response);
            }
        }
        let changes: Vec<_> = dirty.into_iter().collect();
        let last_applied = self.last_applied;
        let membership = self.membership.clone();
        self.store
            .blocking(move |store| store.save_applied(&changes, &last_applied, &membership))
            .await
            .map_err(|e| io_error(ErrorSubject::StateMachine, ErrorVerb::Write, e))?;
        self.published.hub.publish(events);
        Ok(responses)
    }

    /// Captures the current objects (cheap: shared pointers) so the snapshot is consistent
    /// while applying goes on.
    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        let objects = self
            .published
            .objects
            .read()
            .expect("state index lock poisoned");
        SnapshotBuilder {
            store: self.store.clone(),
            objects: objects.iter().map(|(_, object)| object.clone()).collect(),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    /// Replaces the state with the snapshot's, durably, and ends every watch (no event stream
    /// can describe a wholesale replacement; watchers list again).
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let read_error = |message: String| {
            StorageError::from(StorageIOError::read_snapshot(
                Some(meta.signature()),
                AnyError::error(message),
            ))
        };
        let blob: SnapshotBlob<Value> = serde_json::from_slice(&data)
            .map_err(|e| read_error(format!("snapshot {} is unreadable: {e}", meta.snapshot_id)))?;
        let revision = meta.last_log_id.map(|id| id.index).unwrap_or(0);
        let objects: Vec<Arc<Value>> = blob.objects.into_iter().map(Arc::new).collect();
        let index = Objects::from_stored(objects.iter().cloned(), revision)
            .map_err(|e| read_error(format!("snapshot {} holds {e}", meta.snapshot_id)))?;
        let record = SnapshotRecord {
            meta: meta.clone(),
            data,
        };
        self.store
            .blocking(move |store| store.install_snapshot(&objects, &record))
            .await
            .map_err(|e| {
                io_error(
                    ErrorSubject::Snapshot(Some(meta.signature())),
                    ErrorVerb::Write,
                    e,
                )
            })?;
        *self
            .published
            .objects
            .write()
            .expect("state index lock poisoned") = index;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.published.hub.reset(revision);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let record = self
            .store
            .blocking(|store| store.load_snapshot())
            .await
            .map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?;
        Ok(record.map(|record| Snapshot {
            meta: record.meta,
            snapshot: Box::new(Cursor::new(record.data)),
        }))
    }
}

/// A consistent capture of the state, serialised into a snapshot off the apply path.
pub(crate) struct SnapshotBuilder {
    store: Arc<Store>,
    objects: Vec<Arc<Value>>,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Member>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let blob = SnapshotBlob {
            format: 1,
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            objects: std::mem::take(&mut self.objects),
        };
        // Unique per build even when two builds cover the same log id.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or(0);
        let snapshot_id = match self.last_applied {
            Some(id) => format!("{}-{}-{nanos}", id.leader_id, id.index),
            None => format!("none-{nanos}"),
        };
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        };
        let record_meta = meta.clone();
        let data = self
            .store
            .blocking(move |store| {
                let data = serde_json::to_vec(&blob).map_err(|source| StoreError::Encode {
                    path: store.path().to_path_buf(),
                    what: "a snapshot".to_string(),
                    source,
                })?;
                let record = SnapshotRecord {
                    meta: record_meta,
                    data,
                };
                store.save_snapshot(&record)?;
                Ok(record.data)
            })
            .await
            .map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?;
        tracing::info!(
            snapshot = %meta.snapshot_id,
            bytes = data.len(),
            "built a state snapshot"
        );
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, RwLock};

    use futures_util::StreamExt;
    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, EntryPayload, LogId, RaftSnapshotBuilder};
    use serde_json::json;

    use super::{MachineStore, Published};
    use crate::state::command::Command;
    use crate::state::machine::Objects;
    use crate::state::raft::TypeConfig;
    use crate::state::store::Store;
    use crate::state::time::Timestamp;
    use crate::state::watch::{Hub, HubLimits, WatchError};

    fn machine(dir: &std::path::Path) -> (MachineStore, Arc<Published>) {
        let store = Arc::new(Store::open(dir, 1 << 20).unwrap());
        let published = Arc::new(Published {
            objects: RwLock::new(Objects::new()),
            hub: Hub::new(
                0,
                HubLimits {
                    history: 16,
                    buffer: 16,
                },
            ),
        });
        let record = store.load_machine().unwrap();
        let machine = MachineStore::new(
            store,
            published.clone(),
            record.last_applied,
            record.membership,
        );
        (machine, published)
    }

    fn entry(index: u64, command: Command) -> openraft::Entry<TypeConfig> {
        openraft::Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 7), index),
            payload: EntryPayload::Normal(command),
        }
    }

    fn config_map(name: &str) -> serde_json::Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"namespace": "db", "name": name}, "data": {"k": name}})
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_snapshot_built_on_one_host_replaces_the_state_of_another() {
        let source_dir = tempfile::TempDir::new().unwrap();
        let (mut source, source_view) = machine(source_dir.path());
        let now = Timestamp::from_unix_seconds(1_700_000_000);
        let entries = (1..=5)
            .map(|index| {
                entry(
                    index,
                    Command::create(config_map(&format!("c{index}")), format!("u{index}"), now),
                )
            })
            .collect::<Vec<_>>();
        source.apply(entries).await.unwrap();
        let snapshot = source
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(snapshot.meta.last_log_id.unwrap().index, 5);

        let target_dir = tempfile::TempDir::new().unwrap();
        let (mut target, target_view) = machine(target_dir.path());
        target
            .apply(vec![entry(
                1,
                Command::create(config_map("stale"), "s", now),
            )])
            .await
            .unwrap();
        let mut watch = target_view
            .hub
            .watch(&target_view.objects, None, None, Some(1))
            .unwrap();
        target
            .install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .unwrap();

        let dump = |view: &Published| {
            let objects = view.objects.read().unwrap();
            (
                objects
                    .iter()
                    .map(|(_, o)| (**o).clone())
                    .collect::<Vec<_>>(),
                objects.revision(),
            )
        };
        assert_eq!(dump(&target_view), dump(&source_view));
        assert_eq!(
            target.applied_state().await.unwrap().0,
            snapshot.meta.last_log_id
        );
        let current = target.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, snapshot.meta);
        assert_eq!(
            watch.next().await,
            Some(Err(WatchError::Reset { revision: 5 }))
        );

        // The installed state is what the target recovers after a restart.
        let snapshot_meta = snapshot.meta.clone();
        drop(target);
        let reopened = Store::open(target_dir.path(), 1 << 20)
            .unwrap()
            .load_machine()
            .unwrap();
        assert_eq!(reopened.last_applied, snapshot_meta.last_log_id);
        let names: Vec<String> = reopened
            .objects
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["c1", "c2", "c3", "c4", "c5"]);
    }
}
