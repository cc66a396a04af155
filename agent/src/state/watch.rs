//! Watches: a bounded history of changes and live delivery to watchers.
//!
//! The state machine publishes the events of each applied command to the [`Hub`]. They are
//! appended to a bounded history, so a watch can start from a recent revision, and offered to
//! each matching watcher's bounded queue. Publishing never waits for a watcher: one whose
//! queue is full is dropped with [`WatchError::Lagged`] and must list again, as a Kubernetes
//! client does after `410 Gone`.
//!
//! Memory: queues hold only what their watcher has not read yet. The history keeps its most
//! recent events as shared objects and packs older ones into their JSON bytes (about a tenth
//! of the memory of a parsed object); replaying them from the history parses them again.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};

use futures_util::Stream;
use futures_util::stream::{self, BoxStream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use super::Revision;
use super::machine::Objects;

/// History events younger than this stay parsed; older ones are packed.
const PARSED_HISTORY: usize = 32;

/// What happened to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventType {
    /// The object was created (or is listed at the start of a watch).
    Added,
    /// The object changed.
    Modified,
    /// The object was removed; the event carries its last state.
    Deleted,
}

/// One change to one object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// What happened.
    #[serde(rename = "type")]
    pub type_: EventType,
    /// The object after the change (for `Deleted`, its last state). Its
    /// `metadata.resourceVersion` is the revision of the change.
    pub object: Arc<Value>,
    /// The revision of the command that made the change. For the `Added` events that open a
    /// watch without a start revision, the revision of the listing.
    pub revision: Revision,
}

/// Why a watch cannot start or cannot continue. In every case the watcher should list again
/// and watch from the list's revision (Kubernetes answers these with `410 Gone`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// The requested start revision is older than the retained history.
    #[error(
        "revision {requested} is too old: watches can start from revision {oldest} or later; list again"
    )]
    Expired {
        /// The revision the watch asked to start after.
        requested: Revision,
        /// The oldest revision a watch can start from now.
        oldest: Revision,
    },
    /// The watcher did not keep up: its queue filled and it was dropped.
    #[error("watcher fell more than {buffer} events behind and was dropped; list again")]
    Lagged {
        /// The size of a watcher's queue.
        buffer: usize,
    },
    /// The state was replaced wholesale (a raft snapshot was installed), so no event stream
    /// can describe the change.
    #[error("the state was replaced from a snapshot at revision {revision}; list again")]
    Reset {
        /// The revision of the installed snapshot.
        revision: Revision,
    },
    /// The state is shut down.
    #[error("the state is shut down")]
    Closed,
}

/// Sizes of the watch machinery.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HubLimits {
    /// Events kept for watches that start from a past revision.
    pub history: usize,
    /// Events a watcher may fall behind before it is dropped.
    pub buffer: usize,
}

/// What a watch selects.
#[derive(Clone, Debug)]
struct Filter {
    kind: Option<String>,
    namespace: Option<String>,
}

impl Filter {
    fn matches(&self, kind: &str, namespace: &str) -> bool {
        self.kind.as_deref().is_none_or(|wanted| wanted == kind)
            && self
                .namespace
                .as_deref()
                .is_none_or(|wanted| wanted == namespace)
    }
}

#[derive(Clone)]
enum HistoryObject {
    Parsed(Arc<Value>),
    Packed(Box<[u8]>),
}

struct HistoryEvent {
    type_: EventType,
    revision: Revision,
    kind: String,
    namespace: String,
    object: HistoryObject,
}

impl HistoryEvent {
    fn new(event: &WatchEvent) -> HistoryEvent {
        let field = |pointer: &str| {
            event
                .object
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        HistoryEvent {
            type_: event.type_,
            revision: event.revision,
            kind: field("/kind"),
            namespace: field("/metadata/namespace"),
            object: HistoryObject::Parsed(event.object.clone()),
        }
    }

    fn pack(&mut self) {
        if let HistoryObject::Parsed(object) = &self.object {
            let bytes = serde_json::to_vec(object.as_ref()).expect("a JSON value serialises");
            self.object = HistoryObject::Packed(bytes.into_boxed_slice());
        }
    }

    /// A copy that can be turned into an event away from the hub lock.
    fn copy(&self) -> (EventType, Revision, HistoryObject) {
        (self.type_, self.revision, self.object.clone())
    }
}

/// Turns a copied history event into a watch event (parsing a packed object).
fn unpack((type_, revision, object): (EventType, Revision, HistoryObject)) -> WatchEvent {
    let object = match object {
        HistoryObject::Parsed(object) => object,
        HistoryObject::Packed(bytes) => {
            Arc::new(serde_json::from_slice(&bytes).expect("packed history is valid JSON"))
        }
    };
    WatchEvent {
        type_,
        object,
        revision,
    }
}

/// The why of a watch's end, set before its queue is dropped.
type Ending = Arc<Mutex<Option<WatchError>>>;

struct Watcher {
    filter: Filter,
    queue: mpsc::Sender<WatchEvent>,
    ending: Ending,
}

struct HubInner {
    history: VecDeque<HistoryEvent>,
    /// Watches may start from this revision or any later one: every event after it is either
    /// in `history` or not yet published.
    oldest: Revision,
    /// The latest revision that changed objects.
    changed: Revision,
    watchers: Vec<Watcher>,
    /// `None` once closed: live watches end, new ones are refused.
    changes: Option<watch::Sender<Revision>>,
}

/// The publisher side of watches, owned by the state machine store.
pub(crate) struct Hub {
    inner: Mutex<HubInner>,
    limits: HubLimits,
}

impl Hub {
    /// A hub whose history starts at `revision` (the revision recovered from disk).
    pub(crate) fn new(revision: Revision, limits: HubLimits) -> Hub {
        Hub {
            inner: Mutex::new(HubInner {
                history: VecDeque::new(),
                oldest: revision,
                changed: revision,
                watchers: Vec::new(),
                changes: Some(watch::channel(revision).0),
            }),
            limits: HubLimits {
                history: limits.history,
                buffer: limits.buffer.max(1),
            },
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubInner> {
        self.inner.lock().expect("watch hub lock poisoned")
    }

    /// Publishes the events of applied commands, in revision order.
    pub(crate) fn publish(&self, events: Vec<WatchEvent>) {
        let Some(last) = events.last().map(|event| event.revision) else {
            return;
        };
        let mut inner = self.lock();
        let buffer = self.limits.buffer;
        for event in events {
            let entry = HistoryEvent::new(&event);
            inner.watchers.retain(|watcher| {
                if !watcher.filter.matches(&entry.kind, &entry.namespace) {
                    return !watcher.queue.is_closed();
                }
                match watcher.queue.try_send(event.clone()) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        *watcher.ending.lock().expect("watch ending lock poisoned") =
                            Some(WatchError::Lagged { buffer });
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                }
            });
            inner.history.push_back(entry);
            if let Some(aged) = inner.history.len().checked_sub(PARSED_HISTORY + 1) {
                inner.history[aged].pack();
            }
            while inner.history.len() > self.limits.history {
                let evicted = inner.history.pop_front().expect("history is not empty");
                inner.oldest = inner.oldest.max(evicted.revision);
            }
        }
        inner.changed = last;
        if let Some(changes) = &inner.changes {
            changes.send_replace(last);
        }
    }

    /// Ends every watch with [`WatchError::Reset`] and restarts the history at `revision`.
    pub(crate) fn reset(&self, revision: Revision) {
        let mut inner = self.lock();
        inner.history.clear();
        inner.oldest = revision;
        inner.changed = revision;
        for watcher in inner.watchers.drain(..) {
            *watcher.ending.lock().expect("watch ending lock poisoned") =
                Some(WatchError::Reset { revision });
        }
        if let Some(changes) = &inner.changes {
            changes.send_replace(revision);
        }
    }

    /// Ends every watch (their streams end) and every change subscription.
    pub(crate) fn close(&self) {
        let mut inner = self.lock();
        inner.watchers.clear();
        inner.changes = None;
    }

    /// A receiver of the revision of the latest change (closed once the hub is).
    pub(crate) fn subscribe_changes(&self) -> watch::Receiver<Revision> {
        let inner = self.lock();
        match &inner.changes {
            Some(changes) => changes.subscribe(),
            None => watch::channel(inner.changed).1,
        }
    }

    /// Opens a watch of `kind` and `namespace` (all when `None`).
    ///
    /// With `from`, the stream yields the changes after that revision (from history, then
    /// live). Without, it yields an `Added` event for every current object, then the changes
    /// after the listing.
    pub(crate) fn watch(
        &self,
        objects: &RwLock<Objects>,
        kind: Option<&str>,
        namespace: Option<&str>,
        from: Option<Revision>,
    ) -> Result<WatchStream, WatchError> {
        let filter = Filter {
            kind: kind.map(str::to_string),
            namespace: namespace.map(str::to_string),
        };
        // The hub lock orders this against `publish`: every event is either in the replay
        // collected here, or is offered to the queue registered below.
        let mut inner = self.lock();
        if inner.changes.is_none() {
            return Err(WatchError::Closed);
        }
        let (replay, history, after) = match from {
            Some(from) => {
                if from < inner.oldest {
                    return Err(WatchError::Expired {
                        requested: from,
                        oldest: inner.oldest,
                    });
                }
                // Copied under the lock, parsed after it, so publishing is not held up.
                let history: Vec<_> = inner
                    .history
                    .iter()
                    .filter(|entry| {
                        entry.revision > from && filter.matches(&entry.kind, &entry.namespace)
                    })
                    .map(HistoryEvent::copy)
                    .collect();
                (Vec::new(), history, from)
            }
            None => {
                let objects = objects.read().expect("state index lock poisoned");
                let revision = objects.revision();
                let replay = objects
                    .iter()
                    .filter(|(key, _)| filter.matches(&key.kind, &key.namespace))
                    .map(|(_, object)| WatchEvent {
                        type_: EventType::Added,
                        object: object.clone(),
                        revision,
                    })
                    .collect();
                (replay, Vec::new(), revision)
            }
        };
        let (queue, receiver) = mpsc::channel(self.limits.buffer);
        let ending = Ending::default();
        inner.watchers.push(Watcher {
            filter,
            queue,
            ending: ending.clone(),
        });
        drop(inner);
        let mut replay = replay;
        replay.extend(history.into_iter().map(unpack));
        Ok(WatchStream::new(replay, receiver, ending, after))
    }
}

struct Live {
    receiver: mpsc::Receiver<WatchEvent>,
    ending: Ending,
    /// Events at or before this revision were already delivered (by the replay).
    after: Revision,
    done: bool,
}

/// A stream of [`WatchEvent`]s. It ends with one `Err` when the watcher must list again, and
/// ends without error when the state shuts down.
pub struct WatchStream {
    inner: BoxStream<'static, Result<WatchEvent, WatchError>>,
}

impl WatchStream {
    fn new(
        replay: Vec<WatchEvent>,
        receiver: mpsc::Receiver<WatchEvent>,
        ending: Ending,
        after: Revision,
    ) -> WatchStream {
        let live = Live {
            receiver,
            ending,
            after,
            done: false,
        };
        let live = stream::unfold(live, |mut live| async move {
            if live.done {
                return None;
            }
            loop {
                match live.receiver.recv().await {
                    // The hub only queues events this watch selects.
                    Some(event) => {
                        if event.revision > live.after {
                            return Some((Ok(event), live));
                        }
                    }
                    None => {
                        live.done = true;
                        let ending = live
                            .ending
                            .lock()
                            .expect("watch ending lock poisoned")
                            .take();
                        return ending.map(|error| (Err(error), live));
                    }
                }
            }
        });
        WatchStream {
            inner: stream::iter(replay.into_iter().map(Ok)).chain(live).boxed(),
        }
    }
}

impl Stream for WatchStream {
    type Item = Result<WatchEvent, WatchError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WatchStream")
    }
}
