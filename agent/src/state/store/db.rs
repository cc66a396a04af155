//! Opening the database and the blocking reads and writes the raft stores need.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::{LogId, StoredMembership, Vote};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    TableHandle,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::state::key::ObjectKey;
use crate::state::raft::{Member, NodeId, TypeConfig};

type Entry = openraft::Entry<TypeConfig>;

/// Raft log entries by index, each the JSON of an openraft `Entry`.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// Raft metadata: `vote`, `committed`, `last_purged` (JSON).
const RAFT: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
/// The state machine's objects by (kind, namespace, name), each the object's JSON.
const OBJECTS: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("objects");
/// The state machine's `last_applied` log id and `membership` (JSON).
const MACHINE: TableDefinition<&str, &[u8]> = TableDefinition::new("machine_meta");
/// The current snapshot: `meta` (JSON) and `data` (the blob).
const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");
/// This host: `node_id`, `format`.
const NODE: TableDefinition<&str, u64> = TableDefinition::new("node");

/// The on-disk format this code writes; a database with a newer one is refused.
const FORMAT: u64 = 1;

/// Failures of the state database and its directory. Each names the file.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // the fields are the file and the cause, named alike everywhere
pub enum StoreError {
    /// The state directory could not be created (or synced).
    #[error("cannot create state directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The lock file could not be opened or written.
    #[error("cannot open lock file {path}")]
    LockFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Another process (or another `State` in this one) holds the directory's lock.
    #[error("state directory {dir} is in use by another berth process{holder}")]
    InUse {
        dir: PathBuf,
        /// ` (pid N)` when the holder recorded its pid.
        holder: String,
    },
    /// redb refused the file (damaged, truncated, unreadable).
    #[error("cannot open state database {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    /// The file failed redb's integrity check and was rolled back to an earlier commit; the
    /// operator must accept that by deleting `marker`.
    #[error(
        "state database {path} failed its integrity check and redb rolled it back to its last intact commit, which may lack recently acknowledged changes; inspect it (a backup may be needed), then delete {marker} to accept the repaired database"
    )]
    Repaired { path: PathBuf, marker: PathBuf },
    /// The file was written by a newer berth.
    #[error("state database {path} has format {found}, this berth understands up to {FORMAT}")]
    Format { path: PathBuf, found: u64 },
    /// A redb operation failed.
    #[error("state database {path}: cannot {operation}")]
    Database {
        path: PathBuf,
        operation: &'static str,
        #[source]
        source: Box<redb::Error>,
    },
    /// A stored record is not valid JSON of the expected shape.
    #[error("state database {path}: stored {what} is unreadable")]
    Decode {
        path: PathBuf,
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// A record could not be serialised.
    #[error("state database {path}: cannot encode {what}")]
    Encode {
        path: PathBuf,
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// A stored record contradicts its key.
    #[error("state database {path}: stored {what} is inconsistent: {message}")]
    Inconsistent {
        path: PathBuf,
        what: String,
        message: String,
    },
    /// redb panicked while opening the file (it does on some damaged files).
    #[error(
        "state database {path} could not be opened: redb panicked ({message}); the file is probably damaged"
    )]
    Panicked { path: PathBuf, message: String },
    /// A blocking storage task panicked or was cancelled.
    #[error("state database {path}: a storage task did not finish")]
    Interrupted {
        path: PathBuf,
        #[source]
        source: tokio::task::JoinError,
    },
}

/// One write to the raft log or its metadata.
pub(crate) enum LogOp<'a> {
    Append(&'a [Entry]),
    Vote(Vote<NodeId>),
    Committed(Option<LogId<NodeId>>),
    /// Delete the entries from this index on.
    Truncate(u64),
    /// Delete the entries up to and including this id, and record it as purged.
    Purge(LogId<NodeId>),
}

/// What the state machine recovers from disk.
pub(crate) struct MachineRecord {
    pub objects: Vec<Arc<Value>>,
    pub last_applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, Member>,
}

/// A stored snapshot.
pub(crate) struct SnapshotRecord {
    pub meta: openraft::SnapshotMeta<NodeId, Member>,
    pub data: Vec<u8>,
}

/// The open database, plus the lock that keeps other processes out of the directory.
pub(crate) struct Store {
    db: Database,
    path: PathBuf,
    node_id: NodeId,
    _lock: File,
    /// Dropped last (fields drop in order): its receiver learns the file is closed and the
    /// lock released.
    on_close: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating when absent) `<dir>/state.redb`, after taking `<dir>/lock`. On first
    /// open it generates this host's node id and creates the tables.
    ///
    /// redb recovers from an unclean shutdown while opening (rolling back a commit that was
    /// not completely written). Then the whole file's checksums are verified: damage that redb
    /// had to repair is reported as [`StoreError::Repaired`] rather than served.
    pub(crate) fn open(dir: &Path, cache_bytes: usize) -> Result<Store, StoreError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        let lock = lock_directory(dir)?;
        let path = dir.join("state.redb");
        let marker = dir.join("state.redb.repaired");
        if marker.exists() {
            return Err(StoreError::Repaired { path, marker });
        }
        let open_error = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        let created = !path.exists();
        let mut db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(&path)
            .map_err(open_error)?;
        if created {
            // Make the new file's directory entry durable, or a power cut could lose the
            // whole database (and this host's node id) even after fsync'd commits.
            sync_directory(dir)?;
        }
        let clean = db.check_integrity().map_err(open_error)?;
        if !clean {
            let note = format!(
                "berth: {} failed its integrity check at {} and was repaired by redb.\n\
                 Delete this file to accept the repaired database.\n",
                path.display(),
                crate::state::time::Timestamp::now()
            );
            // Best effort: the error below is the primary report.
            let _ = fs::write(&marker, note);
            return Err(StoreError::Repaired { path, marker });
        }
        let mut store = Store {
            db,
            path,
            node_id: 0,
            _lock: lock,
            on_close: None,
        };
        store.check_format()?;
        store.node_id = store.initialise()?;
        Ok(store)
    }

    /// A receiver that completes (with an error: the sender is dropped) once this store is
    /// dropped, its database closed and its directory lock released.
    pub(crate) fn close_signal(&mut self) -> tokio::sync::oneshot::Receiver<()> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        self.on_close = Some(sender);
        receiver
    }

    /// The database file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` on the blocking thread pool.
    pub(crate) async fn blocking<T, F>(self: &Arc<Self>, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(|source| StoreError::Interrupted {
                path: self.path.clone(),
                source,
            })?
    }

    fn failed(&self, operation: &'static str) -> impl Fn(redb::Error) -> StoreError + '_ {
        move |source| StoreError::Database {
            path: self.path.clone(),
            operation,
            source: Box::new(source),
        }
    }

    fn decode<T: DeserializeOwned>(
        &self,
        what: impl Fn() -> String,
        bytes: &[u8],
    ) -> Result<T, StoreError> {
        serde_json::from_slice(bytes).map_err(|source| StoreError::Decode {
            path: self.path.clone(),
            what: what(),
            source,
        })
    }

    fn encode<T: Serialize + ?Sized>(&self, what: &str, value: &T) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec(value).map_err(|source| StoreError::Encode {
            path: self.path.clone(),
            what: what.to_string(),
            source,
        })
    }

    fn write(
        &self,
        operation: &'static str,
        durability: Durability,
        work: impl FnOnce(&redb::WriteTransaction) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let failed = self.failed(operation);
        let mut txn = self.db.begin_write().map_err(|e| failed(e.into()))?;
        txn.set_durability(durability)
            .map_err(|e| failed(e.into()))?;
        work(&txn)?;
        txn.commit().map_err(|e| failed(e.into()))
    }

    fn check_format(&self) -> Result<(), StoreError> {
        let failed = self.failed("read the format");
        let txn = self.db.begin_read().map_err(|e| failed(e.into()))?;
        let found = match txn.open_table(NODE) {
            Ok(table) => table
                .get("format")
                .map_err(|e| failed(e.into()))?
                .map(|value| value.value()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(failed(e.into())),
        };
        match found {
            Some(found) if found > FORMAT => Err(StoreError::Format {
                path: self.path.clone(),
                found,
            }),
            _ => Ok(()),
        }
    }

    /// This host's raft node id.
    pub(crate) fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Reads the node id; on first use, generates it and creates every table with it (so
    /// later reads never meet a missing table), durably.
    fn initialise(&self) -> Result<NodeId, StoreError> {
        let failed = self.failed("read the node id");
        let txn = self.db.begin_read().map_err(|e| failed(e.into()))?;
        if let Ok(table) = txn.open_table(NODE)
            && let Some(id) = table.get("node_id").map_err(|e| failed(e.into()))?
        {
            return Ok(id.value());
        }
        drop(txn);
        // Never 0: some tools treat 0 as "no node".
        let id = loop {
            let candidate: u64 = rand::random();
            if candidate != 0 {
                break candidate;
            }
        };
        self.write("initialise the database", Durability::Immediate, |txn| {
            let failed = self.failed("initialise the database");
            let mut node = txn.open_table(NODE).map_err(|e| failed(e.into()))?;
            node.insert("node_id", id).map_err(|e| failed(e.into()))?;
            node.insert("format", FORMAT)
                .map_err(|e| failed(e.into()))?;
            txn.open_table(LOG).map_err(|e| failed(e.into()))?;
            txn.open_table(RAFT).map_err(|e| failed(e.into()))?;
            txn.open_table(OBJECTS).map_err(|e| failed(e.into()))?;
            txn.open_table(MACHINE).map_err(|e| failed(e.into()))?;
            txn.open_table(SNAPSHOT).map_err(|e| failed(e.into()))?;
            Ok(())
        })?;
        Ok(id)
    }

    // ----- raft metadata -----

    fn read_meta<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let failed = self.failed("read raft metadata");
        let txn = self.db.begin_read().map_err(|e| failed(e.into()))?;
        let table = txn.open_table(table).map_err(|e| failed(e.into()))?;
        let Some(bytes) = table.get(key).map_err(|e| failed(e.into()))? else {
            return Ok(None);
        };
        let name = table.name().to_string();
        self.decode(|| format!("{name}/{key}"), bytes.value())
            .map(Some)
    }

    pub(crate) fn read_vote(&self) -> Result<Option<Vote<NodeId>>, StoreError> {
        self.read_meta(RAFT, "vote")
    }

    pub(crate) fn read_committed(&self) -> Result<Option<LogId<NodeId>>, StoreError> {
        Ok(self
            .read_meta::<Option<LogId<NodeId>>>(RAFT, "committed")?
            .flatten())
    }

    // ----- raft log -----

    /// The last purged log id and the id of the last entry present (the last purged one when
    /// the log is empty).
    pub(crate) fn log_state(&self) -> Result<[Option<LogId<NodeId>>; 2], StoreError> {
        let last_purged: Option<LogId<NodeId>> = self.read_meta(RAFT, "last_purged")?;
        let failed = self.failed("read the raft log");
        let txn = self.db.begin_read().map_err(|e| failed(e.into()))?;
        let table = txn.open_table(LOG).map_err(|e| failed(e.into()))?;
        let last = match table.last().map_err(|e| failed(e.into()))? {
            Some((index, bytes)) => {
                let index = index.value();
                let entry: Entry =
                    self.decode(|| format!("raft log entry {index}"), bytes.value())?;
                Some(entry.log_id)
            }
            None => None,
        };
        Ok([last_purged, last.or(last_purged)])
    }

    /// The entries with index in `[start, end)`, in order.
    pub(crate) fn log_entries(&self, start: u64, end: u64) -> Result<Vec<Entry>, StoreError> {
        let failed = self.failed("read the raft log");
        let txn = self.db.begin_read().map_err(|e| failed(e.into()))?;
        let table = txn.open_table(LOG).map_err(|e| failed(e.into()))?;
        let mut entries = Vec::new();
        if start >= end {
            return Ok(entries);
        }
        for item in table.range(start..end).map_err(|e| failed(e.into()))? {
            let (index, bytes) = item.map_err(|e| failed(e.into()))?;
            let index = index.value();
            let entry: Entry = self.decode(|| format!("raft log entry {index}"), bytes.value())?;
            if entry.log_id.index != index {
                return Err(StoreError::Inconsistent {
                    path: self.path.clone(),
                    what: format!("raft log entry {index}"),
                    message: format!("it carries index {}", entry.log_id.index),
                });
            }
            entries.push(entry);
        }
        Ok(entries)
    }

    /// Performs log writes in order in one transaction. It is fsync'd unless it only records
    /// committed ids (those become durable with the next fsync'd commit, see module docs).
    pub(crate) fn write_log(&self, ops: &[LogOp<'_>]) -> Result<(), StoreError> {
        let durability = if ops.iter().all(|op| matches!(op, LogOp::Committed(_))) {
            Durability::None
        } else {
            Durability::Immediate
        };
        let mut encoded_entries = Vec::new();
        for op in ops {
            if let LogOp::Append(entries) = op {
                for entry in *entries {
                    encoded_entries.push(self.encode("a raft log entry", entry)?);
                }
            }
        }
        let mut encoded = encoded_entries.iter();
        self.write("write the raft log", durability, |txn| {
            let failed = self.failed("write the raft log");
            let mut log = txn.open_table(LOG).map_err(|e| failed(e.into()))?;
            let mut meta = txn.open_table(RAFT).map_err(|e| failed(e.into()))?;
            for op in ops {
                match op {
                    LogOp::Append(entries) => {
                        for entry in *entries {
                            let bytes = encoded.next().expect("every entry was encoded");
                            log.insert(entry.log_id.index, bytes.as_slice())
                                .map_err(|e| failed(e.into()))?;
                        }
                    }
                    LogOp::Vote(vote) => {
                        let bytes = self.encode("the vote", vote)?;
                        meta.insert("vote", bytes.as_slice())
                            .map_err(|e| failed(e.into()))?;
                    }
                    LogOp::Committed(committed) => {
                        let bytes = self.encode("the committed log id", committed)?;
                        meta.insert("committed", bytes.as_slice())
                            .map_err(|e| failed(e.into()))?;
                    }
                    LogOp::Truncate(index) => {
                        log.retain_in(*index.., |_, _| false)
                            .map_err(|e| failed(e.into()))?;
                    }
                    LogOp::Purge(log_id) => {
                        let bytes = self.encode("the last purged log id", log_id)?;
                        meta.insert("last_purged", bytes.as_slice())
                            .map_err(|e| failed(e.into()))?;
                        log.retain_in(..=log_id.index, |_, _| false)
                            .map_err(|e| failed(e.into()))?;
                    }
                }
            }
            Ok(())
        })
    }

    // ----- state machine -----

    /// Loads the objects, last-applied id and membership.
    pub(crate) fn load_machine(&self) -> Result<MachineRecord, StoreError> {
        let failed = self.failed("read the state machine");
        let txn = self.db.begin_read().map_err(|e| failed(e.into()))?;
        let table = txn.open_table(OBJECTS).map_err(|e| failed(e.into()))?;
        let mut objects = Vec::with_capacity(table.len().map_err(|e| failed(e.into()))? as usize);
        for item in table.iter().map_err(|e| failed(e.into()))? {
            let (key, bytes) = item.map_err(|e| failed(e.into()))?;
            let (kind, namespace, name) = key.value();
            let describe = || format!("object {}", ObjectKey::new(kind, namespace, name));
            let object: Value = self.decode(describe, bytes.value())?;
            let found = ObjectKey::of(&object).ok();
            if found.as_ref() != Some(&ObjectKey::new(kind, namespace, name)) {
                return Err(StoreError::Inconsistent {
                    path: self.path.clone(),
                    what: describe(),
                    message: format!("its content has key {found:?}"),
                });
            }
            objects.push(Arc::new(object));
        }
        drop(table);
        drop(txn);
        let last_applied: Option<LogId<NodeId>> = self.read_meta(MACHINE, "last_applied")?;
        let membership: StoredMembership<NodeId, Member> =
            self.read_meta(MACHINE, "membership")?.unwrap_or_default();
        Ok(MachineRecord {
            objects,
            last_applied,
            membership,
        })
    }

    /// Writes the objects changed by applied entries (`None` removes) with the new
    /// last-applied id and membership, in one transaction. Durable with the next Immediate
    /// commit (see module docs).
    pub(crate) fn save_applied(
        &self,
        changes: &[(ObjectKey, Option<Arc<Value>>)],
        last_applied: &Option<LogId<NodeId>>,
        membership: &StoredMembership<NodeId, Member>,
    ) -> Result<(), StoreError> {
        let mut encoded = Vec::with_capacity(changes.len());
        for (key, object) in changes {
            let bytes = match object {
                Some(object) => Some(self.encode("an object", object.as_ref())?),
                None => None,
            };
            encoded.push((key, bytes));
        }
        let last_applied = self.encode("the last applied log id", last_applied)?;
        let membership = self.encode("the membership", membership)?;
        self.write("save applied changes", Durability::None, |txn| {
            let failed = self.failed("save applied changes");
            let mut objects = txn.open_table(OBJECTS).map_err(|e| failed(e.into()))?;
            for (key, bytes) in &encoded {
                let key = (key.kind.as_str(), key.namespace.as_str(), key.name.as_str());
                match bytes {
                    Some(bytes) => objects.insert(key, bytes.as_slice()).map(drop),
                    None => objects.remove(key).map(drop),
                }
                .map_err(|e| failed(e.into()))?;
            }
            let mut meta = txn.open_table(MACHINE).map_err(|e| failed(e.into()))?;
            meta.insert("last_applied", last_applied.as_slice())
                .map_err(|e| failed(e.into()))?;
            meta.insert("membership", membership.as_slice())
                .map_err(|e| failed(e.into()))?;
            Ok(())
        })
    }

    /// Stores a snapshot durably, replacing the previous one.
    pub(crate) fn save_snapshot(&self, snapshot: &SnapshotRecord) -> Result<(), StoreError> {
        let meta = self.encode("snapshot metadata", &snapshot.meta)?;
        self.write("save a snapshot", Durability::Immediate, |txn| {
            let failed = self.failed("save a snapshot");
            let mut table = txn.open_table(SNAPSHOT).map_err(|e| failed(e.into()))?;
            table
                .insert("meta", meta.as_slice())
                .map_err(|e| failed(e.into()))?;
            table
                .insert("data", snapshot.data.as_slice())
                .map_err(|e| failed(e.into()))?;
            Ok(())
        })
    }

    /// The stored snapshot, if any.
    pub(crate) fn load_snapshot(&self) -> Result<Option<SnapshotRecord>, StoreError> {
        let failed = self.failed("read the snapshot");
        let txn = self.db.begin_read().map_err(|e| failed(e.into()))?;
        let table = txn.open_table(SNAPSHOT).map_err(|e| failed(e.into()))?;
        let (Some(meta), Some(data)) = (
            table.get("meta").map_err(|e| failed(e.into()))?,
            table.get("data").map_err(|e| failed(e.into()))?,
        ) else {
            return Ok(None);
        };
        Ok(Some(SnapshotRecord {
            meta: self.decode(|| "snapshot metadata".to_string(), meta.value())?,
            data: data.value().to_vec(),
        }))
    }

    /// Replaces the whole state machine with a snapshot's content and stores the snapshot, in
    /// one durable transaction.
    pub(crate) fn install_snapshot(
        &self,
        objects: &[Arc<Value>],
        snapshot: &SnapshotRecord,
    ) -> Result<(), StoreError> {
        let mut encoded = Vec::with_capacity(objects.len());
        for object in objects {
            let key = ObjectKey::of(object).map_err(|rejection| StoreError::Inconsistent {
                path: self.path.clone(),
                what: "snapshot".to_string(),
                message: rejection.to_string(),
            })?;
            encoded.push((key, self.encode("an object", object.as_ref())?));
        }
        let last_applied = self.encode("the last applied log id", &snapshot.meta.last_log_id)?;
        let membership = self.encode("the membership", &snapshot.meta.last_membership)?;
        let meta = self.encode("snapshot metadata", &snapshot.meta)?;
        self.write("install a snapshot", Durability::Immediate, |txn| {
            let failed = self.failed("install a snapshot");
            let mut table = txn.open_table(OBJECTS).map_err(|e| failed(e.into()))?;
            table.retain(|_, _| false).map_err(|e| failed(e.into()))?;
            for (key, bytes) in &encoded {
                let key = (key.kind.as_str(), key.namespace.as_str(), key.name.as_str());
                table
                    .insert(key, bytes.as_slice())
                    .map_err(|e| failed(e.into()))?;
            }
            let mut machine = txn.open_table(MACHINE).map_err(|e| failed(e.into()))?;
            machine
                .insert("last_applied", last_applied.as_slice())
                .map_err(|e| failed(e.into()))?;
            machine
                .insert("membership", membership.as_slice())
                .map_err(|e| failed(e.into()))?;
            let mut stored = txn.open_table(SNAPSHOT).map_err(|e| failed(e.into()))?;
            stored
                .insert("meta", meta.as_slice())
                .map_err(|e| failed(e.into()))?;
            stored
                .insert("data", snapshot.data.as_slice())
                .map_err(|e| failed(e.into()))?;
            Ok(())
        })
    }
}

fn sync_directory(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|directory| directory.sync_all())
        .map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })
}

/// How long a directory lock held elsewhere is waited for before the store refuses to open.
/// A lock is briefly held after its owner let go when a child process forked by another
/// thread (a shim spawn, a probe) shares the descriptor until it execs; and a restarted agent
/// may start while its predecessor is still exiting.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Takes an exclusive `flock` on `<dir>/lock` and records this process's pid in it.
fn lock_directory(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join("lock");
    let lock_error = |source| StoreError::LockFile {
        path: path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(lock_error)?;
    let deadline = Instant::now() + LOCK_WAIT;
    let mut locked = file.try_lock();
    while matches!(locked, Err(TryLockError::WouldBlock)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        locked = file.try_lock();
    }
    match locked {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(StoreError::InUse {
                dir: dir.to_path_buf(),
                holder: if holder.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {holder})")
                },
            });
        }
        Err(TryLockError::Error(source)) => return Err(lock_error(source)),
    }
    file.set_len(0).map_err(lock_error)?;
    file.rewind().map_err(lock_error)?;
    writeln!(file, "{}", std::process::id()).map_err(lock_error)?;
    Ok(file)
}
