//! The state through its handle: raft on redb, persistence across restarts, reads, watches,
//! snapshots and the directory lock. Every test uses its own temporary data directory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use berth_agent::state::{
    Applied, Command, EventType, ObjectKey, OpenError, Outcome, ProposeError, Rejection, State,
    StateConfig, StoreError, Timestamp, WatchError, WatchEvent, WatchStream,
};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tempfile::TempDir;

static UIDS: AtomicU64 = AtomicU64::new(1);

fn uid() -> String {
    format!(
        "uid-{}-{}",
        std::process::id(),
        UIDS.fetch_add(1, Ordering::Relaxed)
    )
}

fn config_map(namespace: &str, name: &str, value: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"namespace": namespace, "name": name},
        "data": {"value": value}
    })
}

fn config(dir: &TempDir) -> StateConfig {
    StateConfig::new(dir.path(), "host-a")
}

async fn open(config: StateConfig) -> State {
    match State::open(config).await {
        Ok(state) => state,
        Err(error) => panic!("open failed: {}", error_chain(&error)),
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn create(state: &State, namespace: &str, name: &str, value: &str) -> Applied {
    state
        .propose(Command::create(
            config_map(namespace, name, value),
            uid(),
            Timestamp::now(),
        ))
        .await
        .unwrap_or_else(|error| panic!("create {name}: {}", error_chain(&error)))
}

/// Every object with its content, in key order.
fn dump(state: &State) -> Vec<Value> {
    let mut all = Vec::new();
    for kind in ["ConfigMap", "Pod"] {
        all.extend(
            state
                .list(kind, None)
                .0
                .iter()
                .map(|object| (**object).clone()),
        );
    }
    all
}

async fn next(stream: &mut WatchStream) -> Result<WatchEvent, WatchError> {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a watch event within 10 s")
        .expect("the watch stream is open")
}

fn name_of(event: &WatchEvent) -> &str {
    event.object["metadata"]["name"].as_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_and_revision_survive_a_restart_and_new_commands_continue_the_sequence() {
    let dir = TempDir::new().unwrap();
    let state = open(config(&dir)).await;
    let node_id = state.node_id();
    create(&state, "db", "a", "1").await;
    create(&state, "db", "b", "1").await;
    create(&state, "web", "c", "1").await;
    state
        .propose(Command::update(
            config_map("db", "a", "2"),
            Timestamp::now(),
        ))
        .await
        .unwrap();
    let deleted = state
        .propose(Command::delete(
            ObjectKey::new("ConfigMap", "web", "c"),
            Timestamp::now(),
        ))
        .await
        .unwrap();
    assert!(matches!(deleted.outcome, Outcome::Removed(_)));
    let before = dump(&state);
    let revision = state.revision();
    assert_eq!(revision, deleted.revision);
    state.shutdown().await;
    drop(state);

    let state = open(config(&dir)).await;
    assert_eq!(state.node_id(), node_id, "the node id is kept");
    assert_eq!(
        dump(&state),
        before,
        "same objects with the same resourceVersions"
    );
    assert_eq!(state.revision(), revision);
    let (listed, list_revision) = state.list("ConfigMap", Some("db"));
    assert_eq!(listed.len(), 2);
    assert_eq!(list_revision, state.revision());
    assert_eq!(
        state.get("ConfigMap", "db", "a").unwrap()["data"]["value"],
        "2"
    );
    assert!(state.get("ConfigMap", "web", "c").is_none());

    let applied = create(&state, "db", "d", "1").await;
    assert!(
        applied.revision > revision,
        "{} > {revision}",
        applied.revision
    );
    let stored = state.get("ConfigMap", "db", "d").unwrap();
    assert_eq!(
        stored["metadata"]["resourceVersion"],
        applied.revision.to_string()
    );
    state.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_data_directory_gets_its_own_node_id() {
    let first = TempDir::new().unwrap();
    let second = TempDir::new().unwrap();
    let a = open(config(&first)).await;
    let b = open(config(&second)).await;
    assert_ne!(a.node_id(), b.node_id());
    assert_ne!(a.node_id(), 0);
    assert_eq!(a.node_name(), "host-a");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_in_use_cannot_be_opened_twice() {
    let dir = TempDir::new().unwrap();
    let state = open(config(&dir)).await;
    let error = State::open(config(&dir)).await.unwrap_err();
    assert!(
        matches!(error, OpenError::Store(StoreError::InUse { .. })),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&dir.path().join("state").display().to_string()),
        "{message}"
    );
    assert!(
        message.contains(&format!("pid {}", std::process::id())),
        "{message}"
    );
    // The live state is unaffected.
    create(&state, "db", "a", "1").await;
    state.shutdown().await;
    // Once closed, the directory opens again.
    let state = open(config(&dir)).await;
    assert!(state.get("ConfigMap", "db", "a").is_some());
    state.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_failures_come_back_as_rejections_and_change_nothing() {
    let dir = TempDir::new().unwrap();
    let state = open(config(&dir)).await;
    create(&state, "db", "a", "1").await;
    let before = dump(&state);

    let error = state
        .propose(Command::create(
            config_map("db", "a", "2"),
            uid(),
            Timestamp::now(),
        ))
        .await
        .unwrap_err();
    let ProposeError::Rejected(rejection) = &error else {
        panic!("{error:?}")
    };
    assert_eq!(rejection.reason(), "AlreadyExists");
    assert_eq!(error.to_string(), "ConfigMap db/a already exists");

    let error = state
        .propose(Command::create(
            json!({"kind": "ConfigMap"}),
            uid(),
            Timestamp::now(),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ProposeError::Rejected(Rejection::Invalid { field, .. }) if field == "metadata.name"),
        "{error:?}"
    );
    assert_eq!(dump(&state), before);
    state.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_a_revision_replays_the_history_then_follows_live_changes() {
    let dir = TempDir::new().unwrap();
    let state = open(config(&dir)).await;
    let first = create(&state, "db", "a", "1").await;
    create(&state, "db", "b", "1").await;
    create(&state, "web", "w", "1").await;

    let mut watch = state
        .watch(Some("ConfigMap"), Some("db"), Some(first.revision))
        .unwrap();
    let event = next(&mut watch).await.unwrap();
    assert_eq!((event.type_, name_of(&event)), (EventType::Added, "b"));

    let deleted = state
        .propose(Command::delete(
            ObjectKey::new("ConfigMap", "db", "a"),
            Timestamp::now(),
        ))
        .await
        .unwrap();
    create(&state, "web", "ignored", "1").await;
    state
        .propose(Command::update(
            config_map("db", "b", "2"),
            Timestamp::now(),
        ))
        .await
        .unwrap();

    let event = next(&mut watch).await.unwrap();
    assert_eq!((event.type_, name_of(&event)), (EventType::Deleted, "a"));
    assert_eq!(event.revision, deleted.revision);
    assert_eq!(
        event.object["metadata"]["resourceVersion"],
        deleted.revision.to_string()
    );
    let event = next(&mut watch).await.unwrap();
    assert_eq!((event.type_, name_of(&event)), (EventType::Modified, "b"));
    assert_eq!(event.object["data"]["value"], "2");
    state.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_without_a_revision_starts_with_the_current_objects() {
    let dir = TempDir::new().unwrap();
    let state = open(config(&dir)).await;
    create(&state, "db", "a", "1").await;
    create(&state, "db", "b", "1").await;
    let revision = state.revision();

    let mut watch = state.watch(Some("ConfigMap"), None, None).unwrap();
    for expected in ["a", "b"] {
        let event = next(&mut watch).await.unwrap();
        assert_eq!((event.type_, name_of(&event)), (EventType::Added, expected));
        assert_eq!(event.revision, revision);
    }
    let applied = create(&state, "db", "c", "1").await;
    let event = next(&mut watch).await.unwrap();
    assert_eq!(
        (event.type_, name_of(&event), event.revision),
        (EventType::Added, "c", applied.revision)
    );
    state.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_before_the_retained_history_is_expired() {
    let dir = TempDir::new().unwrap();
    let mut config = config(&dir);
    config.watch_history = 4;
    let state = open(config).await;
    let first = create(&state, "db", "a0", "1").await;
    for index in 1..10 {
        create(&state, "db", &format!("a{index}"), "1").await;
    }
    let error = state.watch(None, None, Some(first.revision)).unwrap_err();
    let WatchError::Expired { requested, oldest } = error.clone() else {
        panic!("{error:?}")
    };
    assert_eq!(requested, first.revision);
    assert!(oldest > first.revision);
    assert!(error.to_string().contains("too old"), "{error}");
    // The oldest retained revision still works.
    let mut watch = state.watch(None, None, Some(oldest)).unwrap();
    assert!(next(&mut watch).await.is_ok());
    state.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_watcher_is_dropped_with_an_error_and_never_blocks_writers() {
    let dir = TempDir::new().unwrap();
    let mut config = config(&dir);
    config.watch_buffer = 8;
    let state = open(config).await;
    let mut slow = state.watch(None, None, Some(state.revision())).unwrap();
    let mut fast = state.watch(None, None, Some(state.revision())).unwrap();

    // Nobody reads `slow` while 40 commands commit: every proposal still completes.
    let mut fast_seen = 0;
    for index in 0..40 {
        create(&state, "db", &format!("c{index}"), "1").await;
        next(&mut fast).await.unwrap();
        fast_seen += 1;
    }
    assert_eq!(fast_seen, 40);

    let mut delivered = 0;
    let error = loop {
        match next(&mut slow).await {
            Ok(_) => delivered += 1,
            Err(error) => break error,
        }
    };
    assert!(matches!(error, WatchError::Lagged { .. }), "{error:?}");
    assert!(delivered < 40, "delivered {delivered}");
    assert!(
        slow.next().await.is_none(),
        "the stream ends after the error"
    );
    state.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_subscribers_see_the_latest_revision() {
    let dir = TempDir::new().unwrap();
    let state = open(config(&dir)).await;
    let mut changes = state.subscribe_changes();
    changes.borrow_and_update();
    let applied = create(&state, "db", "a", "1").await;
    tokio::time::timeout(Duration::from_secs(10), changes.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(*changes.borrow_and_update(), applied.revision);
    state.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cascade_reaches_watchers_as_one_revision() {
    let dir = TempDir::new().unwrap();
    let state = open(config(&dir)).await;
    let owner = create(&state, "db", "owner", "1").await;
    let owner_uid = owner.outcome.object().unwrap()["metadata"]["uid"].clone();
    let mut dependent = config_map("db", "dependent", "1");
    dependent["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}]);
    state
        .propose(Command::create(dependent, uid(), Timestamp::now()))
        .await
        .unwrap();
    let mut watch = state.watch(None, None, Some(state.revision())).unwrap();
    let applied = state
        .propose(Command::delete(
            ObjectKey::new("ConfigMap", "db", "owner"),
            Timestamp::now(),
        ))
        .await
        .unwrap();
    let events = [
        next(&mut watch).await.unwrap(),
        next(&mut watch).await.unwrap(),
    ];
    assert!(events.iter().all(|event| event.type_ == EventType::Deleted));
    assert!(
        events
            .iter()
            .all(|event| event.revision == applied.revision)
    );
    assert!(state.list("ConfigMap", None).0.is_empty());
    state.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_purge_the_log_and_a_restart_recovers_from_them() {
    let dir = TempDir::new().unwrap();
    let mut config = config(&dir);
    config.snapshot_after_entries = 10;
    config.entries_kept_after_snapshot = 2;
    let state = open(config.clone()).await;
    for index in 0..30 {
        create(&state, "db", &format!("s{index}"), &index.to_string()).await;
    }
    for index in 0..30 {
        if index % 3 == 0 {
            state
                .propose(Command::delete(
                    ObjectKey::new("ConfigMap", "db", format!("s{index}")),
                    Timestamp::now(),
                ))
                .await
                .unwrap();
        }
    }
    let metrics = state
        .raft()
        .wait(Some(Duration::from_secs(10)))
        .metrics(
            |m| m.snapshot.is_some() && m.purged.is_some(),
            "a snapshot and a purge",
        )
        .await
        .unwrap();
    let purged = metrics.purged.unwrap().index;
    assert!(purged > 0);
    let before = dump(&state);
    let revision = state.revision();
    state.shutdown().await;

    let state = open(config).await;
    assert_eq!(dump(&state), before);
    assert!(state.revision() >= revision);
    assert_eq!(state.list("ConfigMap", Some("db")).0.len(), 20);
    create(&state, "db", "after", "1").await;
    state.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_proposals_all_commit_with_distinct_revisions() {
    let dir = TempDir::new().unwrap();
    let state = open(config(&dir)).await;
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let state = state.clone();
        tasks.push(tokio::spawn(async move {
            let mut revisions = Vec::new();
            for index in 0..10 {
                let applied = create(&state, "db", &format!("w{worker}-{index}"), "1").await;
                revisions.push(applied.revision);
            }
            revisions
        }));
    }
    let mut revisions = Vec::new();
    for task in tasks {
        revisions.extend(task.await.unwrap());
    }
    revisions.sort();
    revisions.dedup();
    assert_eq!(revisions.len(), 80);
    assert_eq!(state.list("ConfigMap", Some("db")).0.len(), 80);
    assert_eq!(state.read_barrier().await.unwrap(), state.revision());
    state.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_reports_the_outcome_without_changing_anything() {
    let dir = TempDir::new().unwrap();
    let state = open(config(&dir)).await;
    create(&state, "db", "a", "1").await;
    let before = dump(&state);
    let revision = state.revision();

    let preview = state
        .dry_run(&Command::delete(
            ObjectKey::new("ConfigMap", "db", "a"),
            Timestamp::now(),
        ))
        .unwrap();
    assert!(matches!(preview.outcome, Outcome::Removed(_)));
    assert_eq!(preview.changes.len(), 1);
    assert_eq!(preview.revision, revision + 1);
    let refused = state
        .dry_run(&Command::create(
            config_map("db", "a", "2"),
            uid(),
            Timestamp::now(),
        ))
        .unwrap_err();
    assert_eq!(refused.reason(), "AlreadyExists");

    assert_eq!(dump(&state), before);
    assert_eq!(state.revision(), revision);
    state.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_end_and_proposals_fail_once_the_state_is_shut_down() {
    let dir = TempDir::new().unwrap();
    let state = open(config(&dir)).await;
    let mut watch = state.watch(None, None, None).unwrap();
    let mut changes = state.subscribe_changes();
    state.shutdown().await;

    let end = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .unwrap();
    assert!(end.is_none(), "{end:?}");
    assert!(changes.changed().await.is_err());
    assert_eq!(
        state.watch(None, None, None).unwrap_err(),
        WatchError::Closed
    );
    let error = state.propose(Command::Noop).await.unwrap_err();
    assert!(matches!(error, ProposeError::Shutdown), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_replays_a_long_history_in_order_with_full_objects() {
    let dir = TempDir::new().unwrap();
    let state = open(config(&dir)).await;
    let first = create(&state, "db", "h0", "0").await;
    // Enough events that the older ones are kept packed in the history.
    for index in 1..80 {
        create(&state, "db", &format!("h{index}"), &index.to_string()).await;
    }
    let mut watch = state
        .watch(Some("ConfigMap"), None, Some(first.revision))
        .unwrap();
    for index in 1..80 {
        let event = next(&mut watch).await.unwrap();
        let stored = state.get("ConfigMap", "db", &format!("h{index}")).unwrap();
        assert_eq!(event.object, stored, "event {index}");
        assert_eq!(event.type_, EventType::Added);
    }
    state.shutdown().await;
}
