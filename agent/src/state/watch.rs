//! Watches: a bounded history of changes and live fan-out to watchers.
//!
//! The state machine publishes the events of each applied command to the [`Hub`]: they are
//! appended to a bounded history (so a watch can start from a recent revision) and sent on a
//! bounded broadcast channel. Publishing never waits for a watcher: a watcher that falls more
//! than the channel's capacity behind is dropped with [`WatchError::Lagged`] and must list
//! again, as a Kubernetes client does after `410 Gone`.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};

use futures_util::Stream;
use futures_util::stream::{self, BoxStream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use super::Revision;
use super::machine::Objects;

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

impl WatchEvent {
    fn matches(&self, kind: Option<&str>, namespace: Option<&str>) -> bool {
        let object_kind = self.object.get("kind").and_then(Value::as_str);
        let object_namespace = self
            .object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("");
        kind.is_none_or(|kind| object_kind == Some(kind))
            && namespace.is_none_or(|namespace| object_namespace == namespace)
    }
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
    /// The watcher did not keep up and missed events.
    #[error("watcher fell behind by {missed} events and was dropped; list again")]
    Lagged {
        /// How many events it missed.
        missed: u64,
    },
    /// The state was replaced wholesale (a raft snapshot was installed), so no event stream
    /// can describe the change.
    #[error("the state was replaced from a snapshot at revision {revision}; list again")]
    Reset {
        /// The revision of the installed snapshot.
        revision: Revision,
    },
}

#[derive(Clone, Debug)]
enum Message {
    Event(WatchEvent),
    Reset(Revision),
}

/// Sizes of the watch machinery.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HubLimits {
    /// Events kept for watches that start from a past revision.
    pub history: usize,
    /// Events a watcher may fall behind before it is dropped.
    pub buffer: usize,
}

struct HubInner {
    history: VecDeque<WatchEvent>,
    /// Watches may start from this revision or any later one: every event after it is either
    /// in `history` or not yet published.
    oldest: Revision,
    sender: broadcast::Sender<Message>,
}

/// The publisher side of watches, owned by the state machine store.
pub(crate) struct Hub {
    inner: Mutex<HubInner>,
    limits: HubLimits,
    changes: watch::Sender<Revision>,
}

impl Hub {
    /// A hub whose history starts at `revision` (the revision recovered from disk).
    pub(crate) fn new(revision: Revision, limits: HubLimits) -> Hub {
        let (sender, _) = broadcast::channel(limits.buffer.max(1));
        Hub {
            inner: Mutex::new(HubInner {
                history: VecDeque::new(),
                oldest: revision,
                sender,
            }),
            limits,
            changes: watch::channel(revision).0,
        }
    }

    /// Publishes the events of applied commands, in revision order.
    pub(crate) fn publish(&self, events: Vec<WatchEvent>) {
        let Some(last) = events.last().map(|event| event.revision) else {
            return;
        };
        {
            let mut inner = self.inner.lock().expect("watch hub lock poisoned");
            for event in events {
                inner.history.push_back(event.clone());
                while inner.history.len() > self.limits.history {
                    let evicted = inner.history.pop_front().expect("history is not empty");
                    inner.oldest = inner.oldest.max(evicted.revision);
                }
                // An error only means nobody is watching.
                let _ = inner.sender.send(Message::Event(event));
            }
        }
        self.changes.send_replace(last);
    }

    /// Ends every watch with [`WatchError::Reset`] and restarts the history at `revision`.
    pub(crate) fn reset(&self, revision: Revision) {
        {
            let mut inner = self.inner.lock().expect("watch hub lock poisoned");
            inner.history.clear();
            inner.oldest = revision;
            let _ = inner.sender.send(Message::Reset(revision));
        }
        self.changes.send_replace(revision);
    }

    /// A receiver of the revision of the latest change.
    pub(crate) fn subscribe_changes(&self) -> watch::Receiver<Revision> {
        self.changes.subscribe()
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
        // The hub lock orders this against `publish`: every event is either in the replay
        // collected here, or is sent after the subscription below.
        let inner = self.inner.lock().expect("watch hub lock poisoned");
        let (replay, after) = match from {
            Some(from) => {
                if from < inner.oldest {
                    return Err(WatchError::Expired {
                        requested: from,
                        oldest: inner.oldest,
                    });
                }
                let replay: Vec<WatchEvent> = inner
                    .history
                    .iter()
                    .filter(|event| event.revision > from && event.matches(kind, namespace))
                    .cloned()
                    .collect();
                (replay, from)
            }
            None => {
                let objects = objects.read().expect("state index lock poisoned");
                let revision = objects.revision();
                let replay = objects
                    .iter()
                    .filter(|(key, _)| key.matches(kind, namespace))
                    .map(|(_, object)| WatchEvent {
                        type_: EventType::Added,
                        object: object.clone(),
                        revision,
                    })
                    .collect();
                (replay, revision)
            }
        };
        let receiver = inner.sender.subscribe();
        drop(inner);
        Ok(WatchStream::new(
            replay,
            receiver,
            after,
            kind.map(str::to_string),
            namespace.map(str::to_string),
        ))
    }
}

struct Live {
    receiver: broadcast::Receiver<Message>,
    /// Events at or before this revision were already delivered (by the replay).
    after: Revision,
    kind: Option<String>,
    namespace: Option<String>,
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
        receiver: broadcast::Receiver<Message>,
        after: Revision,
        kind: Option<String>,
        namespace: Option<String>,
    ) -> WatchStream {
        let live = Live {
            receiver,
            after,
            kind,
            namespace,
            done: false,
        };
        let live = stream::unfold(live, |mut live| async move {
            if live.done {
                return None;
            }
            loop {
                match live.receiver.recv().await {
                    Ok(Message::Event(event)) => {
                        if event.revision > live.after
                            && event.matches(live.kind.as_deref(), live.namespace.as_deref())
                        {
                            return Some((Ok(event), live));
                        }
                    }
                    Ok(Message::Reset(revision)) => {
                        live.done = true;
                        return Some((Err(WatchError::Reset { revision }), live));
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        live.done = true;
                        return Some((Err(WatchError::Lagged { missed }), live));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
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
