//! [`State`]: the handle the rest of the agent uses to propose commands, read and watch.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use openraft::error::{ClientWriteError, Fatal, InitializeError, RaftError};
use openraft::metrics::WaitError;
use openraft::{Config, SnapshotPolicy};
use serde_json::Value;
use tokio::sync::{oneshot, watch};

use super::Revision;
use super::command::Command;
use super::key::ObjectKey;
use super::machine::Objects;
use super::outcome::{Applied, Rejection};
use super::raft::{Member, NodeId, PeerClient, PeerError, PeerNetwork, Raft, TlsSlot, paths};
use super::store::{LogStore, MachineStore, Published, Store, StoreError};
use super::watch::{Hub, HubLimits, WatchError, WatchStream};

/// How to open the state.
#[derive(Clone, Debug)]
pub struct StateConfig {
    /// The agent's data directory; the state lives in `<data_dir>/state/`.
    pub data_dir: PathBuf,
    /// This host's node name, recorded in the raft membership.
    pub node_name: String,
    /// Memory redb may use for its page cache.
    pub cache_bytes: usize,
    /// Build a snapshot (and purge the log) after this many log entries since the last one.
    pub snapshot_after_entries: u64,
    /// Log entries kept after a snapshot (a follower that lags less catches up from the log).
    pub entries_kept_after_snapshot: u64,
    /// Events kept for watches that start from a past revision.
    pub watch_history: usize,
    /// Events a watcher may fall behind before it is dropped (and must list again).
    pub watch_buffer: usize,
    /// How long `open` waits for the recovered state to become writable.
    pub ready_timeout: Duration,
    /// Where peers reach this host (`ADDR:PORT`), recorded in the membership on first start.
    pub advertise_address: String,
    /// Whether a fresh state starts its own one-member group (the first host of a cluster) or
    /// waits for a leader to add it (a joining host).
    pub bootstrap: bool,
    /// Client TLS settings for peers (filled once the host has its cluster certificates).
    pub peer_tls: TlsSlot,
    /// How long a write may wait for a quorum before it fails with "no quorum".
    pub write_timeout: Duration,
}

impl StateConfig {
    /// Defaults sized for a small cluster: a 4 MiB cache, a snapshot every 1000 entries,
    /// 1024 events of watch history (most of them packed as JSON) and a 256-event queue per
    /// watcher.
    pub fn new(data_dir: impl Into<PathBuf>, node_name: impl Into<String>) -> StateConfig {
        StateConfig {
            data_dir: data_dir.into(),
            node_name: node_name.into(),
            cache_bytes: 4 << 20,
            snapshot_after_entries: 1000,
            entries_kept_after_snapshot: 100,
            watch_history: 1024,
            watch_buffer: 256,
            ready_timeout: Duration::from_secs(30),
            advertise_address: String::new(),
            bootstrap: true,
            peer_tls: TlsSlot::default(),
            write_timeout: Duration::from_secs(5),
        }
    }

    /// `<data_dir>/state`.
    pub fn state_dir(&self) -> PathBuf {
        self.data_dir.join("state")
    }
}

/// Why the state could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The database or its directory failed (in use, unreadable, damaged...).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The raft settings derived from the configuration are invalid.
    #[error("invalid raft settings for the state in {dir}")]
    Config {
        /// The state directory.
        dir: PathBuf,
        /// What openraft refused.
        #[source]
        source: openraft::ConfigError,
    },
    /// openraft could not start on the stored log.
    #[error("cannot start raft on the state in {dir}")]
    Raft {
        /// The state directory.
        dir: PathBuf,
        /// openraft's error.
        #[source]
        source: Fatal<NodeId>,
    },
    /// The one-member raft group could not be created on first start.
    #[error("cannot initialise the raft group in {dir}")]
    Initialize {
        /// The state directory.
        dir: PathBuf,
        /// openraft's error.
        #[source]
        source: RaftError<NodeId, InitializeError<NodeId, Member>>,
    },
    /// The recovered state did not become writable in time.
    #[error("the state in {dir} did not become writable within {timeout:?}")]
    NotReady {
        /// The state directory.
        dir: PathBuf,
        /// How long `open` waited.
        timeout: Duration,
        /// What the wait reported.
        #[source]
        source: WaitError,
    },
}

/// Why a proposal did not produce an [`Applied`] outcome.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// The state machine refused the command by its rules; nothing changed.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// This host cannot commit: it is not the raft leader (with more than one member).
    #[error("this host is not the raft leader{}", leader_hint(.leader))]
    NotLeader {
        /// The leader, when known.
        leader: Option<(NodeId, Member)>,
    },
    /// No majority of voters is reachable (or no leader is elected): writes are refused,
    /// reads keep working from this host's replica.
    #[error(
        "no quorum: {reason}; writes are refused until a majority of the cluster's voters is reachable (reads still work)"
    )]
    NoQuorum {
        /// What was observed.
        reason: String,
    },
    /// The leader answered a forwarded write with a failure other than a rejection.
    #[error("the leader {leader} could not commit the write: {message}")]
    Remote {
        /// The leader.
        leader: Member,
        /// Its error, as text.
        message: String,
    },
    /// Persisting the log or the state failed; the state stops and the agent must restart.
    #[error("the state storage failed; the agent must restart to recover")]
    Storage {
        /// The storage error.
        #[source]
        source: openraft::StorageError<NodeId>,
    },
    /// The state was shut down.
    #[error("the state is shut down")]
    Shutdown,
    /// Any other raft failure.
    #[error("raft could not commit the command")]
    Raft {
        /// openraft's error.
        #[source]
        source: RaftError<NodeId, ClientWriteError<NodeId, Member>>,
    },
}

/// A leader that heard from no majority for this long refuses writes at once (the largest
/// election timeout: six heartbeats were missed, and followers start electing another leader).
const QUORUM_SILENCE_MS: u64 = 3000;

/// The leader's answer to a forwarded write (the body of the peer `propose` endpoint).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum ForwardAnswer {
    /// Committed and applied.
    Applied(Applied),
    /// Refused by the state machine's rules.
    Rejected(Rejection),
    /// The leader has no quorum.
    NoQuorum(String),
    /// Any other failure, as text.
    Failed(String),
}

impl ForwardAnswer {
    /// The answer for a local proposal's result.
    pub fn of(result: Result<Applied, ProposeError>) -> ForwardAnswer {
        match result {
            Ok(applied) => ForwardAnswer::Applied(applied),
            Err(ProposeError::Rejected(rejection)) => ForwardAnswer::Rejected(rejection),
            Err(ProposeError::NoQuorum { reason }) => ForwardAnswer::NoQuorum(reason),
            Err(ProposeError::NotLeader { leader }) => ForwardAnswer::NoQuorum(format!(
                "leadership moved while the write was forwarded{}",
                leader_hint(&leader)
            )),
            Err(other) => ForwardAnswer::Failed(other.to_string()),
        }
    }
}

fn leader_hint(leader: &Option<(NodeId, Member)>) -> String {
    match leader {
        Some((id, member)) => format!(" (the leader is node {id}, {member})"),
        None => String::new(),
    }
}

/// The cluster state: a cheap-to-clone handle.
///
/// Writes go through [`State::propose`] (raft, durable before it returns); reads come from an
/// in-memory index without a raft round trip. Call [`State::shutdown`] before the process
/// exits so the database closes cleanly (a crash is also safe: the next open recovers).
#[derive(Clone)]
pub struct State {
    inner: Arc<Inner>,
}

struct Inner {
    raft: Raft,
    published: Arc<Published>,
    /// Completes when the database is closed (see [`Store::close_signal`]).
    closed: Mutex<Option<oneshot::Receiver<()>>>,
    node_id: NodeId,
    node_name: String,
    dir: PathBuf,
    peer_tls: TlsSlot,
    write_timeout: Duration,
    /// The client of the leader writes are forwarded to (replaced when the leader changes).
    leader_client: Mutex<Option<PeerClient>>,
}

impl Drop for Inner {
    /// A safety net for a state dropped without [`State::shutdown`]: stop raft in the
    /// background so its tasks release the database.
    fn drop(&mut self) {
        let never_shut_down = self
            .closed
            .get_mut()
            .map(|closed| closed.is_some())
            .unwrap_or(false);
        if never_shut_down && let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let raft = self.raft.clone();
            self.published.hub.close();
            runtime.spawn(async move {
                let _ = raft.shutdown().await;
            });
        }
    }
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("dir", &self.inner.dir)
            .field("node_id", &self.inner.node_id)
            .field("node_name", &self.inner.node_name)
            .finish()
    }
}

impl State {
    /// Opens the state in `<data_dir>/state/`, creating it on first start.
    ///
    /// First start generates this host's node id (a random u64, persisted) and initialises a
    /// one-member raft group. Later starts recover: the objects and last-applied revision come
    /// from the database, committed log entries beyond it are applied again, and `open`
    /// returns once everything in the log is applied and the state accepts writes. Fails if
    /// another process holds the directory.
    pub async fn open(config: StateConfig) -> Result<State, OpenError> {
        let dir = config.state_dir();
        let cache_bytes = config.cache_bytes;
        let open_dir = dir.clone();
        let (mut store, node_id, record) = tokio::task::spawn_blocking(move || {
            let store = Store::open(&open_dir, cache_bytes)?;
            let node_id = store.node_id();
            let record = store.load_machine()?;
            Ok::<_, StoreError>((store, node_id, record))
        })
        .await
        .map_err(|error| StoreError::Panicked {
            path: dir.join("state.redb"),
            message: panic_message(error),
        })??;
        let closed = store.close_signal();
        let store = Arc::new(store);
        let revision = record.last_applied.map(|id| id.index).unwrap_or(0);
        let objects = Objects::from_stored(record.objects, revision)
            .expect("stored objects were checked to have keys when loaded");
        tracing::info!(
            dir = %dir.display(),
            node_id,
            objects = objects.len(),
            revision,
            "opened the state database"
        );
        let limits = HubLimits {
            history: config.watch_history,
            buffer: config.watch_buffer,
        };
        let published = Arc::new(Published {
            objects: RwLock::new(objects),
            hub: Hub::new(revision, limits),
        });

        let raft_config = Config {
            cluster_name: "berth".to_string(),
            heartbeat_interval: 500,
            election_timeout_min: 1500,
            election_timeout_max: 3000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_after_entries.max(1)),
            max_in_snapshot_log_to_keep: config.entries_kept_after_snapshot,
            purge_batch_size: (config.snapshot_after_entries / 4).max(1),
            ..Config::default()
        }
        .validate()
        .map_err(|source| OpenError::Config {
            dir: dir.clone(),
            source,
        })?;
        let machine = MachineStore::new(
            store.clone(),
            published.clone(),
            record.last_applied,
            record.membership,
        );
        let raft = Raft::new(
            node_id,
            Arc::new(raft_config),
            PeerNetwork {
                node_id,
                tls: config.peer_tls.clone(),
            },
            LogStore::new(store.clone()),
            machine,
        )
        .await
        .map_err(|source| OpenError::Raft {
            dir: dir.clone(),
            source,
        })?;
        let state = State {
            inner: Arc::new(Inner {
                raft,
                published,
                closed: Mutex::new(Some(closed)),
                node_id,
                node_name: config.node_name.clone(),
                dir: dir.clone(),
                peer_tls: config.peer_tls.clone(),
                write_timeout: config.write_timeout,
                leader_client: Mutex::new(None),
            }),
        };
        drop(store);

        match state.start(&config).await {
            Ok(()) => Ok(state),
            Err(error) => {
                state.shutdown().await;
                Err(error)
            }
        }
    }

    /// Initialises the group on first start, then waits until this host leads it and has
    /// applied everything in its log.
    async fn start(&self, config: &StateConfig) -> Result<(), OpenError> {
        let raft = &self.inner.raft;
        let dir = &self.inner.dir;
        let node_id = self.inner.node_id;
        let stopped = |source| OpenError::Raft {
            dir: dir.clone(),
            source,
        };
        if !raft.is_initialized().await.map_err(stopped)? {
            if !config.bootstrap {
                tracing::info!(
                    node_id,
                    "the state is empty: waiting for the leader to add this host"
                );
                return Ok(());
            }
            let member = Member {
                name: config.node_name.clone(),
                address: config.advertise_address.clone(),
            };
            raft.initialize(BTreeMap::from([(node_id, member)]))
                .await
                .map_err(|source| OpenError::Initialize {
                    dir: dir.clone(),
                    source,
                })?;
            tracing::info!(node_id, node = %config.node_name, "initialised a one-member raft group");
        }
        let not_ready = |source| OpenError::NotReady {
            dir: dir.clone(),
            timeout: config.ready_timeout,
            source,
        };
        // Metrics show the stored (or just initialised) membership once the core has started.
        let metrics = raft
            .wait(Some(config.ready_timeout))
            .metrics(
                |metrics| {
                    metrics
                        .membership_config
                        .membership()
                        .voter_ids()
                        .next()
                        .is_some()
                },
                "the raft membership is loaded",
            )
            .await
            .map_err(not_ready)?;
        let voters: Vec<NodeId> = metrics.membership_config.membership().voter_ids().collect();
        if voters == [node_id] {
            raft.wait(Some(config.ready_timeout))
                .current_leader(node_id, "the state becomes writable")
                .await
                .map_err(not_ready)?;
            // Committing this term's first entry commits (and applies) everything before it.
            match raft.ensure_linearizable().await {
                Ok(_) => {}
                Err(RaftError::Fatal(source)) => return Err(stopped(source)),
                Err(RaftError::APIError(error)) => {
                    tracing::warn!(%error, "state opened but this host is not leading");
                }
            }
        }
        tracing::info!(revision = self.revision(), "the state is ready");
        Ok(())
    }

    /// Commits `command` through raft and returns its deterministic outcome.
    ///
    /// When this returns `Ok` or `Err(Rejected)`, the command is in the log on disk (fsync'd)
    /// and applied: readers and watchers see its changes. A rejection changed nothing (but
    /// consumed a revision).
    ///
    /// On a follower the command is forwarded to the leader over the peer port, and this
    /// returns once this host's replica has applied it too. Without a quorum it fails with
    /// [`ProposeError::NoQuorum`] after at most the configured write timeout.
    pub async fn propose(&self, command: Command) -> Result<Applied, ProposeError> {
        // Refuse what is refused anyway without writing it to the log.
        precheck(&command)?;
        let mut leader = self.inner.raft.metrics().borrow().current_leader;
        if leader.is_none() {
            // An election may be under way: give it up to the largest election timeout.
            let elected = self
                .inner
                .raft
                .wait(Some(Duration::from_millis(QUORUM_SILENCE_MS)))
                .metrics(|m| m.current_leader.is_some(), "a leader is elected")
                .await;
            match elected {
                Ok(metrics) => leader = metrics.current_leader,
                Err(WaitError::ShuttingDown) => return Err(ProposeError::Shutdown),
                Err(WaitError::Timeout(..)) => {}
            }
        }
        match leader {
            None => Err(ProposeError::NoQuorum {
                reason: "no leader is elected".to_string(),
            }),
            Some(id) if id == self.inner.node_id => self.propose_local(command).await,
            Some(_) => self.forward(command).await,
        }
    }

    /// Commits `command` on this host only if it leads; never forwards. The peer server calls
    /// this for writes forwarded by followers.
    pub async fn propose_local(&self, command: Command) -> Result<Applied, ProposeError> {
        precheck(&command)?;
        self.check_quorum()?;
        let timeout = self.inner.write_timeout;
        let written = tokio::time::timeout(timeout, self.inner.raft.client_write(command)).await;
        let Ok(written) = written else {
            return Err(ProposeError::NoQuorum {
                reason: format!(
                    "the write was not committed within {timeout:?} (it is applied later if a majority returns)"
                ),
            });
        };
        match written {
            Ok(response) => response.data.0.map_err(ProposeError::Rejected),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                Err(ProposeError::NotLeader {
                    leader: forward.leader_id.zip(forward.leader_node),
                })
            }
            Err(RaftError::Fatal(Fatal::StorageError(source))) => {
                Err(ProposeError::Storage { source })
            }
            Err(RaftError::Fatal(Fatal::Stopped)) => Err(ProposeError::Shutdown),
            Err(source) => Err(ProposeError::Raft { source }),
        }
    }

    /// Refuses a write at once on a leader that has not heard from a majority for longer than
    /// an election timeout (a follower is not checked here: its writes go to the leader).
    pub fn check_quorum(&self) -> Result<(), ProposeError> {
        let metrics = self.inner.raft.metrics().borrow().clone();
        if metrics.current_leader != Some(self.inner.node_id) {
            return Ok(());
        }
        let voters = metrics.membership_config.membership().voter_ids().count();
        match metrics.millis_since_quorum_ack {
            Some(ms) if voters > 1 && ms > QUORUM_SILENCE_MS => Err(ProposeError::NoQuorum {
                reason: format!(
                    "this host leads but has not heard from a majority of its {voters} voters for {:.1}s",
                    ms as f64 / 1000.0
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Sends `command` to the leader and waits until this replica applied it.
    async fn forward(&self, command: Command) -> Result<Applied, ProposeError> {
        let (leader_id, member) = {
            let metrics = self.inner.raft.metrics().borrow().clone();
            let Some(id) = metrics.current_leader else {
                return Err(ProposeError::NoQuorum {
                    reason: "no leader is elected".to_string(),
                });
            };
            match metrics.membership_config.membership().get_node(&id) {
                Some(member) => (id, member.clone()),
                None => {
                    return Err(ProposeError::NoQuorum {
                        reason: format!("the leader {id} is not in the membership"),
                    });
                }
            }
        };
        let client = {
            let mut slot = self
                .inner
                .leader_client
                .lock()
                .expect("leader client lock poisoned");
            match slot.as_ref() {
                Some(client) if client.address() == member.address => client.clone(),
                _ => {
                    let client =
                        PeerClient::new(member.address.clone(), self.inner.peer_tls.clone());
                    *slot = Some(client.clone());
                    client
                }
            }
        };
        let timeout = self.inner.write_timeout + Duration::from_secs(1);
        let answer: Result<ForwardAnswer, PeerError> =
            client.post(paths::PROPOSE, &command, timeout).await;
        let applied = match answer {
            Ok(ForwardAnswer::Applied(applied)) => applied,
            Ok(ForwardAnswer::Rejected(rejection)) => {
                return Err(ProposeError::Rejected(rejection));
            }
            Ok(ForwardAnswer::NoQuorum(reason)) => return Err(ProposeError::NoQuorum { reason }),
            Ok(ForwardAnswer::Failed(message)) => {
                return Err(ProposeError::Remote {
                    leader: member,
                    message,
                });
            }
            Err(PeerError::Timeout { timeout, .. }) => {
                return Err(ProposeError::NoQuorum {
                    reason: format!(
                        "the leader {member} (node {leader_id}) did not answer within {timeout:?}"
                    ),
                });
            }
            Err(error) => {
                return Err(ProposeError::NoQuorum {
                    reason: format!(
                        "the leader {member} (node {leader_id}) cannot be reached ({error})"
                    ),
                });
            }
        };
        // Read-your-writes: callers re-read the state right after proposing.
        let wait = self.inner.raft.wait(Some(Duration::from_secs(5)));
        if let Err(error) = wait
            .applied_index_at_least(
                Some(applied.revision),
                "the forwarded write is applied here",
            )
            .await
        {
            tracing::warn!(revision = applied.revision, %error, "a forwarded write is not applied on this host yet");
        }
        Ok(applied)
    }

    /// Waits until every command committed before this call is visible to reads on this host,
    /// and returns the revision reads will see at least.
    pub async fn read_barrier(&self) -> Result<Revision, ProposeError> {
        match self.inner.raft.ensure_linearizable().await {
            Ok(_) => Ok(self.revision()),
            Err(RaftError::Fatal(Fatal::StorageError(source))) => {
                Err(ProposeError::Storage { source })
            }
            Err(RaftError::Fatal(_)) => Err(ProposeError::Shutdown),
            Err(RaftError::APIError(error)) => Err(ProposeError::NotLeader {
                leader: forward_leader(&error),
            }),
        }
    }

    /// What `command` would do if proposed now, without proposing it: the outcome and the
    /// changes, at the revision it would likely get (the next one), or the rule it breaks.
    /// For server-side dry runs; a real proposal may still differ if other commands commit
    /// first.
    pub fn dry_run(&self, command: &Command) -> Result<Applied, Rejection> {
        precheck(command)?;
        let objects = self.objects();
        objects.preview(objects.revision() + 1, command)
    }

    /// The object `kind` `namespace`/`name` (namespace empty for cluster-scoped kinds).
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.objects()
            .get(&ObjectKey::new(kind, namespace, name))
            .cloned()
    }

    /// The objects of `kind` in `namespace` (all namespaces when `None`), ordered by
    /// namespace then name, and the revision they are current at (a watch from it misses
    /// nothing).
    pub fn list(&self, kind: &str, namespace: Option<&str>) -> (Vec<Arc<Value>>, Revision) {
        let objects = self.objects();
        (
            objects.list(kind, namespace).cloned().collect(),
            objects.revision(),
        )
    }

    /// The revision of the last applied command.
    pub fn revision(&self) -> Revision {
        self.objects().revision()
    }

    /// Watches changes to `kind` in `namespace` (all when `None`).
    ///
    /// With `from_revision`, the stream starts with the changes after that revision, if it is
    /// still in the bounded history (else [`WatchError::Expired`]), then continues live.
    /// Without, it starts with an `Added` event for each current object. A start revision
    /// ahead of the state waits for it. A watcher that falls too far behind receives
    /// [`WatchError::Lagged`] and the stream ends.
    pub fn watch(
        &self,
        kind: Option<&str>,
        namespace: Option<&str>,
        from_revision: Option<Revision>,
    ) -> Result<WatchStream, WatchError> {
        let published = &self.inner.published;
        published
            .hub
            .watch(&published.objects, kind, namespace, from_revision)
    }

    /// A receiver of the latest revision that changed objects, for controllers that re-read
    /// the state when it changes. Several changes may be seen as one.
    pub fn subscribe_changes(&self) -> watch::Receiver<Revision> {
        self.inner.published.hub.subscribe_changes()
    }

    /// This host's raft node id.
    pub fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    /// Whether this host is the raft leader now.
    pub fn is_leader(&self) -> bool {
        self.inner.raft.metrics().borrow().current_leader == Some(self.inner.node_id)
    }

    /// This host's node name.
    pub fn node_name(&self) -> &str {
        &self.inner.node_name
    }

    /// The raft handle: the seam for the cluster issue (adding members, metrics). Writes to
    /// the state must go through [`State::propose`].
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// The raft membership as this replica last saw it: voters, learners and their addresses.
    pub fn membership(&self) -> openraft::Membership<NodeId, Member> {
        self.inner
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .clone()
    }

    /// Stops raft and closes the database; applied changes not yet durable are made durable
    /// as redb closes. Waits (up to ten seconds) until the database file and the directory
    /// lock are released, so the directory can be opened again.
    pub async fn shutdown(&self) {
        if let Err(error) = self.inner.raft.shutdown().await {
            tracing::warn!(%error, "raft did not stop cleanly");
        }
        self.inner.published.hub.close();
        let closed = self
            .inner
            .closed
            .lock()
            .expect("close signal lock poisoned")
            .take();
        let Some(closed) = closed else {
            return;
        };
        // openraft's tasks drop their store handles as they end; the last drop closes it.
        match tokio::time::timeout(Duration::from_secs(10), closed).await {
            Ok(_) => tracing::info!(dir = %self.inner.dir.display(), "closed the state database"),
            Err(_) => tracing::warn!(
                dir = %self.inner.dir.display(),
                "the state database is still open ten seconds after shutdown"
            ),
        }
    }

    fn objects(&self) -> std::sync::RwLockReadGuard<'_, Objects> {
        self.inner
            .published
            .objects
            .read()
            .expect("state index lock poisoned")
    }
}

fn forward_leader(
    error: &openraft::error::CheckIsLeaderError<NodeId, Member>,
) -> Option<(NodeId, Member)> {
    match error {
        openraft::error::CheckIsLeaderError::ForwardToLeader(forward) => {
            forward.leader_id.zip(forward.leader_node.clone())
        }
        openraft::error::CheckIsLeaderError::QuorumNotEnough(_) => None,
    }
}

fn panic_message(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(panic) => panic
            .downcast_ref::<&str>()
            .map(|text| text.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string()),
        Err(error) => error.to_string(),
    }
}

/// Refuses commands whose objects have no readable key, before they reach the log.
fn precheck(command: &Command) -> Result<(), Rejection> {
    match command {
        Command::Create { object, .. } | Command::Update { object, .. } => {
            ObjectKey::of(object).map(drop)
        }
        Command::Batch(commands) => {
            for (index, command) in commands.iter().enumerate() {
                precheck(command).map_err(|rejection| Rejection::InBatch {
                    index,
                    rejection: Box::new(rejection),
                })?;
            }
            Ok(())
        }
        Command::Delete {
            grace_period_seconds: Some(grace),
            ..
        } if *grace < 0 => Err(Rejection::invalid(
            "gracePeriodSeconds",
            format!("must not be negative, got {grace}"),
        )),
        Command::UpdateStatus { .. } | Command::Delete { .. } | Command::Noop => Ok(()),
    }
}
