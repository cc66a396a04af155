//! Events (`kubectl get events`, the tail of `describe`): recorded asynchronously so that a
//! pod worker never waits on them, batched into one state command per burst, aggregated
//! (a repeat of the same reason and message on the same object bumps `count`), and expired
//! after an hour as Kubernetes expires them.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::state::{Command, ObjectKey, State, Timestamp};

/// How long events are kept (Kubernetes' default event TTL).
pub const EVENT_TTL_SECONDS: i64 = 3600;
/// At most this many events are kept per namespace; the oldest go first.
pub const MAX_EVENTS_PER_NAMESPACE: usize = 1000;

/// `Normal` or `Warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// One event to record.
#[derive(Debug, Clone)]
pub struct EventRecord {
    /// The object it is about (its kind, namespace, name, uid, apiVersion are copied).
    pub involved: InvolvedObject,
    pub type_: EventType,
    pub reason: String,
    pub message: String,
    /// `kubelet`, `statefulset-controller`, `default-scheduler`...
    pub component: &'static str,
    pub time: Timestamp,
}

/// The reference to the object an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InvolvedObject {
    pub kind: String,
    pub api_version: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// `spec.containers{name}` for container events.
    pub field_path: Option<String>,
}

impl InvolvedObject {
    /// The reference to a stored object.
    pub fn of(object: &Value) -> InvolvedObject {
        let s = |p: &str| {
            object
                .pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        InvolvedObject {
            kind: s("/kind"),
            api_version: s("/apiVersion"),
            namespace: s("/metadata/namespace"),
            name: s("/metadata/name"),
            uid: s("/metadata/uid"),
            field_path: None,
        }
    }

    pub fn with_field_path(mut self, path: impl Into<String>) -> InvolvedObject {
        self.field_path = Some(path.into());
        self
    }
}

/// A cheap handle for recording events.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<EventRecord>,
}

impl Recorder {
    /// Records an event. Never blocks: when the queue is full (a storm), the event is dropped
    /// and logged, as Kubernetes' recorder drops events under pressure.
    pub fn record(
        &self,
        involved: InvolvedObject,
        type_: EventType,
        reason: &str,
        message: impl Into<String>,
        component: &'static str,
    ) {
        let message = message.into();
        let record = EventRecord {
            involved,
            type_,
            reason: reason.to_string(),
            message,
            component,
            time: Timestamp::now(),
        };
        match self.tx.try_send(record) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(r)) => {
                tracing::warn!(reason = %r.reason, object = %r.involved.name, "event queue full; event dropped");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// A recorder whose events go nowhere (for tests of code that records).
    pub fn discard() -> Recorder {
        let (tx, mut rx) = mpsc::channel(64);
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        Recorder { tx }
    }
}

/// Starts the task that writes recorded events to the state and expires old ones.
pub fn start(state: State) -> Recorder {
    let (tx, rx) = mpsc::channel(4096);
    tokio::spawn(writer(state, rx));
    Recorder { tx }
}

async fn writer(state: State, mut rx: mpsc::Receiver<EventRecord>) {
    let mut expire = tokio::time::interval(Duration::from_secs(60));
    expire.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sequence: u64 = 0;
    loop {
        tokio::select! {
            first = rx.recv() => {
                let Some(first) = first else { return };
                let mut burst = vec![first];
                // Take whatever else is queued, to write one command for the burst.
                while burst.len() < 256 {
                    match rx.try_recv() {
                        Ok(r) => burst.push(r),
                        Err(_) => break,
                    }
                }
                let commands = event_commands(&state, burst, &mut sequence);
                if commands.is_empty() {
                    continue;
                }
                if let Err(e) = state.propose(Command::Batch(commands)).await {
                    tracing::debug!(error = %e, "recording events failed");
                }
            }
            _ = expire.tick() => {
                let commands = expiry_commands(&state, Timestamp::now());
                if !commands.is_empty() {
                    if let Err(e) = state.propose(Command::Batch(commands)).await {
                        tracing::debug!(error = %e, "expiring events failed");
                    }
                }
            }
        }
    }
}

/// Creates (or aggregates into existing) Event objects for a burst of records.
fn event_commands(state: &State, burst: Vec<EventRecord>, sequence: &mut u64) -> Vec<Command> {
    let (existing, _) = state.list("Event", None);
    let mut by_signature: HashMap<(String, String, String, String), Value> = HashMap::new();
    for e in existing.iter() {
        by_signature.insert(signature_of(e), (**e).clone());
    }
    let mut commands = Vec::new();
    let mut touched: HashMap<(String, String, String, String), Value> = HashMap::new();
    for r in burst {
        let sig = (
            r.involved.uid.clone(),
            r.reason.clone(),
            r.message.clone(),
            r.involved.field_path.clone().unwrap_or_default(),
        );
        let time = r.time.to_rfc3339();
        if let Some(mut e) = touched
            .remove(&sig)
            .or_else(|| by_signature.get(&sig).cloned())
        {
            e["count"] = json!(e["count"].as_i64().unwrap_or(1) + 1);
            e["lastTimestamp"] = json!(time);
            touched.insert(sig, e);
            continue;
        }
        *sequence += 1;
        let name = format!(
            "{}.{:x}{:04x}",
            r.involved.name,
            r.time.unix_seconds(),
            *sequence % 0x10000
        );
        let mut involved = json!({
            "kind": r.involved.kind,
            "namespace": r.involved.namespace,
            "name": r.involved.name,
            "uid": r.involved.uid,
            "apiVersion": r.involved.api_version,
        });
        if let Some(fp) = &r.involved.field_path {
            involved["fieldPath"] = json!(fp);
        }
        let namespace = if r.involved.namespace.is_empty() {
            "default".to_string()
        } else {
            r.involved.namespace.clone()
        };
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": involved,
            "reason": r.reason,
            "message": r.message,
            "type": r.type_.as_str(),
            "source": {"component": r.component},
            "reportingComponent": r.component,
            "firstTimestamp": time,
            "lastTimestamp": time,
            "count": 1,
        });
        commands.push(Command::create(
            event,
            uuid::Uuid::new_v4().to_string(),
            r.time,
        ));
    }
    for (_, e) in touched {
        commands.push(Command::update(e, Timestamp::now()));
    }
    commands
}

fn signature_of(e: &Value) -> (String, String, String, String) {
    let s = |p: &str| {
        e.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    (
        s("/involvedObject/uid"),
        s("/reason"),
        s("/message"),
        s("/involvedObject/fieldPath"),
    )
}

/// Deletes events older than the TTL and, per namespace, all but the newest
/// [`MAX_EVENTS_PER_NAMESPACE`].
fn expiry_commands(state: &State, now: Timestamp) -> Vec<Command> {
    let (events, _) = state.list("Event", None);
    let mut per_namespace: HashMap<String, Vec<(i64, ObjectKey)>> = HashMap::new();
    let mut commands = Vec::new();
    for e in events.iter() {
        let ns = e
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let name = e
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let last = e
            .get("lastTimestamp")
            .and_then(Value::as_str)
            .and_then(Timestamp::parse_rfc3339)
            .map(Timestamp::unix_seconds)
            .unwrap_or(0);
        let key = ObjectKey::new("Event", &ns, &name);
        if now.unix_seconds() - last > EVENT_TTL_SECONDS {
            commands.push(Command::delete(key, now));
        } else {
            per_namespace.entry(ns).or_default().push((last, key));
        }
    }
    for (_, mut list) in per_namespace {
        if list.len() > MAX_EVENTS_PER_NAMESPACE {
            list.sort_by_key(|(t, _)| *t);
            let excess = list.len() - MAX_EVENTS_PER_NAMESPACE;
            commands.extend(
                list.into_iter()
                    .take(excess)
                    .map(|(_, key)| Command::delete(key, now)),
            );
        }
    }
    commands
}
