//! The state machine's apply function alone (no raft, no disk): the rules of create, update,
//! update-status, delete, preconditions, versions and batches.

use std::sync::Arc;

use berth_agent::state::machine::{FOREGROUND_DELETION, Objects};
use berth_agent::state::{
    Applied, Command, EventType, ObjectKey, Outcome, Propagation, Rejection, Timestamp,
};
use serde_json::{Value, json};

const T0: Timestamp = Timestamp::from_unix_seconds(1_700_000_000);

fn at(seconds_after_t0: i64) -> Timestamp {
    T0.plus_seconds(seconds_after_t0)
}

fn key(kind: &str, namespace: &str, name: &str) -> ObjectKey {
    ObjectKey::new(kind, namespace, name)
}

fn config_map(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"namespace": "db", "name": name, "labels": {"app": "pg"}},
        "data": {"k": "v"}
    })
}

fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": "db", "name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    })
}

fn with(mut object: Value, pointer: &str, value: Value) -> Value {
    let (parent, field) = pointer.rsplit_once('/').unwrap();
    let mut target = &mut object;
    for part in parent.split('/').filter(|part| !part.is_empty()) {
        target = target
            .as_object_mut()
            .unwrap()
            .entry(part)
            .or_insert_with(|| json!({}));
    }
    target
        .as_object_mut()
        .unwrap()
        .insert(field.to_string(), value);
    object
}

fn owned_by(object: Value, owner_uid: &str) -> Value {
    let mut object = object;
    let references = object["metadata"]
        .as_object_mut()
        .unwrap()
        .entry("ownerReferences")
        .or_insert_with(|| json!([]));
    references.as_array_mut().unwrap().push(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "name": "owner", "uid": owner_uid
    }));
    object
}

/// Applies `command` as the next revision.
fn run(objects: &mut Objects, command: Command) -> Result<Applied, Rejection> {
    let revision = objects.revision() + 1;
    objects.execute(revision, &command)
}

/// A state built by applying `commands`, each of which must succeed.
fn state(commands: Vec<Command>) -> Objects {
    let mut objects = Objects::new();
    for command in commands {
        let verb = command.verb();
        if let Err(rejection) = run(&mut objects, command) {
            panic!("setup {verb} refused: {rejection}");
        }
    }
    objects
}

fn get(objects: &Objects, kind: &str, namespace: &str, name: &str) -> Arc<Value> {
    objects
        .get(&key(kind, namespace, name))
        .unwrap_or_else(|| panic!("{kind} {namespace}/{name} is missing"))
        .clone()
}

fn create(object: Value, uid: &str) -> Command {
    Command::create(object, uid, T0)
}

fn delete_with(
    key: ObjectKey,
    grace: Option<i64>,
    propagation: Propagation,
    now: Timestamp,
) -> Command {
    Command::Delete {
        key,
        precondition_uid: None,
        precondition_resource_version: None,
        grace_period_seconds: grace,
        propagation,
        now,
    }
}

fn snapshot(objects: &Objects) -> Vec<(ObjectKey, Value)> {
    objects
        .iter()
        .map(|(key, object)| (key.clone(), (**object).clone()))
        .collect()
}

// ----- create -----

#[test]
fn create_stamps_uid_creation_time_generation_and_resource_version() {
    let mut objects = Objects::new();
    let given = with(
        config_map("a"),
        "/metadata/deletionTimestamp",
        json!("2020-01-01T00:00:00Z"),
    );
    let applied = run(&mut objects, Command::create(given, "uid-a", at(5))).unwrap();

    assert_eq!(applied.revision, 1);
    let stored = get(&objects, "ConfigMap", "db", "a");
    assert_eq!(stored["metadata"]["uid"], "uid-a");
    assert_eq!(stored["metadata"]["creationTimestamp"], at(5).to_rfc3339());
    assert_eq!(stored["metadata"]["generation"], 1);
    assert_eq!(stored["metadata"]["resourceVersion"], "1");
    assert!(stored["metadata"].get("deletionTimestamp").is_none());
    assert_eq!(stored["data"], json!({"k": "v"}));
    assert_eq!(applied.outcome, Outcome::Stored(stored.clone()));
    assert_eq!(applied.changes.len(), 1);
    assert_eq!(applied.changes[0].type_, EventType::Added);
    assert_eq!(applied.changes[0].object, stored);
}

#[test]
fn creates_that_break_a_rule_are_refused_and_change_nothing() {
    let base = || state(vec![create(config_map("a"), "uid-a")]);
    let cases: Vec<(&str, Command, &str)> = vec![
        (
            "existing key",
            create(config_map("a"), "uid-b"),
            "AlreadyExists",
        ),
        (
            "missing kind",
            create(json!({"metadata": {"name": "x"}}), "uid-x"),
            "Invalid",
        ),
        ("empty uid", create(config_map("b"), ""), "Invalid"),
        ("uid in use", create(config_map("b"), "uid-a"), "Invalid"),
        (
            "every owner absent",
            create(owned_by(config_map("b"), "uid-gone"), "uid-b"),
            "Invalid",
        ),
    ];
    for (name, command, reason) in cases {
        let mut objects = base();
        let before = snapshot(&objects);
        let rejection = run(&mut objects, command).expect_err(name);
        assert_eq!(rejection.reason(), reason, "{name}: {rejection}");
        assert_eq!(snapshot(&objects), before, "{name} changed the state");
        assert_eq!(
            objects.revision(),
            2,
            "{name}: a refused command still uses its revision"
        );
    }
}

#[test]
fn create_names_the_missing_field() {
    let mut objects = Objects::new();
    let rejection = run(
        &mut objects,
        create(json!({"kind": "Pod", "metadata": {}}), "u"),
    )
    .unwrap_err();
    assert_eq!(
        rejection,
        Rejection::Invalid {
            field: "metadata.name".into(),
            message: "must be set".into()
        }
    );
    assert_eq!(rejection.to_string(), "invalid metadata.name: must be set");
}

// ----- update -----

#[test]
fn update_replaces_spec_and_metadata_but_keeps_status_and_identity() {
    let mut objects = state(vec![
        create(pod("p"), "uid-p"),
        Command::UpdateStatus {
            key: key("Pod", "db", "p"),
            status: json!({"phase": "Running"}),
            precondition_resource_version: None,
        },
    ]);
    let mut new = pod("p");
    new["spec"]["containers"][0]["image"] = json!("busybox:2");
    new["metadata"]["labels"] = json!({"tier": "db"});
    new["metadata"]["uid"] = json!("uid-p");
    new["metadata"]["creationTimestamp"] = json!("1999-01-01T00:00:00Z");
    new["metadata"]["generation"] = json!(40);
    new["status"] = json!({"phase": "Failed"});

    let applied = run(&mut objects, Command::update(new, at(9))).unwrap();

    let stored = get(&objects, "Pod", "db", "p");
    assert_eq!(stored["spec"]["containers"][0]["image"], "busybox:2");
    assert_eq!(stored["metadata"]["labels"], json!({"tier": "db"}));
    assert_eq!(
        stored["status"],
        json!({"phase": "Running"}),
        "status is kept"
    );
    assert_eq!(stored["metadata"]["uid"], "uid-p");
    assert_eq!(stored["metadata"]["creationTimestamp"], T0.to_rfc3339());
    assert_eq!(
        stored["metadata"]["generation"], 2,
        "a spec change bumps generation"
    );
    assert_eq!(stored["metadata"]["resourceVersion"], "3");
    assert_eq!(applied.changes[0].type_, EventType::Modified);
}

#[test]
fn generation_moves_only_when_something_outside_metadata_and_status_changes() {
    // (what changes, expected generation after the update)
    type Change = fn(&mut Value);
    let cases: Vec<(&str, Change, i64)> = vec![
        ("labels", |o| o["metadata"]["labels"] = json!({"x": "y"}), 1),
        (
            "annotations",
            |o| o["metadata"]["annotations"] = json!({"x": "y"}),
            1,
        ),
        (
            "finalizers",
            |o| o["metadata"]["finalizers"] = json!(["f"]),
            1,
        ),
        ("status", |o| o["status"] = json!({"phase": "Running"}), 1),
        ("spec", |o| o["spec"]["nodeName"] = json!("h1"), 2),
        ("new top-level field", |o| o["data"] = json!({"a": "b"}), 2),
    ];
    for (name, change, generation) in cases {
        let mut objects = state(vec![create(pod("p"), "uid-p")]);
        let mut new = pod("p");
        change(&mut new);
        run(&mut objects, Command::update(new, T0)).unwrap();
        let stored = get(&objects, "Pod", "db", "p");
        assert_eq!(stored["metadata"]["generation"], generation, "{name}");
    }
}

#[test]
fn an_update_that_changes_nothing_keeps_the_resource_version_and_emits_no_event() {
    let mut objects = state(vec![create(config_map("a"), "uid-a")]);
    let applied = run(&mut objects, Command::update(config_map("a"), T0)).unwrap();
    assert!(applied.changes.is_empty());
    let stored = get(&objects, "ConfigMap", "db", "a");
    assert_eq!(stored["metadata"]["resourceVersion"], "1");
    assert_eq!(applied.outcome, Outcome::Stored(stored));
    assert_eq!(objects.revision(), 2);
}

#[test]
fn preconditions_on_resource_version_and_uid_decide_conflicts() {
    // The stored ConfigMap "a" has resourceVersion 1 and uid "uid-a".
    let mut status_object = config_map("a");
    status_object["metadata"]["uid"] = json!("uid-other");
    let cases: Vec<(&str, Command, Option<&str>)> = vec![
        (
            "update with the current resourceVersion",
            Command::Update {
                object: config_map("a"),
                precondition_resource_version: Some(1),
                now: T0,
            },
            None,
        ),
        (
            "update with a stale resourceVersion",
            Command::Update {
                object: with(config_map("a"), "/data/k", json!("w")),
                precondition_resource_version: Some(7),
                now: T0,
            },
            Some("Conflict"),
        ),
        (
            "update naming another uid",
            Command::update(status_object, T0),
            Some("Conflict"),
        ),
        (
            "status update with a stale resourceVersion",
            Command::UpdateStatus {
                key: key("ConfigMap", "db", "a"),
                status: json!({"x": 1}),
                precondition_resource_version: Some(0),
            },
            Some("Conflict"),
        ),
        (
            "delete with the right uid",
            Command::Delete {
                key: key("ConfigMap", "db", "a"),
                precondition_uid: Some("uid-a".into()),
                precondition_resource_version: Some(1),
                grace_period_seconds: None,
                propagation: Propagation::Background,
                now: T0,
            },
            None,
        ),
        (
            "delete with another uid",
            Command::Delete {
                key: key("ConfigMap", "db", "a"),
                precondition_uid: Some("uid-b".into()),
                precondition_resource_version: None,
                grace_period_seconds: None,
                propagation: Propagation::Background,
                now: T0,
            },
            Some("Conflict"),
        ),
        (
            "delete with a stale resourceVersion",
            Command::Delete {
                key: key("ConfigMap", "db", "a"),
                precondition_uid: None,
                precondition_resource_version: Some(9),
                grace_period_seconds: None,
                propagation: Propagation::Background,
                now: T0,
            },
            Some("Conflict"),
        ),
        (
            "update of a missing object",
            Command::update(config_map("zz"), T0),
            Some("NotFound"),
        ),
        (
            "status update of a missing object",
            Command::UpdateStatus {
                key: key("ConfigMap", "db", "zz"),
                status: json!({}),
                precondition_resource_version: None,
            },
            Some("NotFound"),
        ),
        (
            "delete of a missing object",
            Command::delete(key("Pod", "db", "zz"), T0),
            Some("NotFound"),
        ),
        (
            "delete with a negative grace period",
            delete_with(
                key("ConfigMap", "db", "a"),
                Some(-1),
                Propagation::Background,
                T0,
            ),
            Some("Invalid"),
        ),
    ];
    for (name, command, refusal) in cases {
        let mut objects = state(vec![create(config_map("a"), "uid-a")]);
        let before = snapshot(&objects);
        match (run(&mut objects, command), refusal) {
            (Ok(_), None) => {}
            (Err(rejection), Some(reason)) => {
                assert_eq!(rejection.reason(), reason, "{name}: {rejection}");
                assert_eq!(snapshot(&objects), before, "{name} changed the state");
            }
            (result, expected) => panic!("{name}: expected refusal {expected:?}, got {result:?}"),
        }
    }
}

#[test]
fn a_resource_version_conflict_explains_both_versions() {
    let mut objects = state(vec![create(config_map("a"), "uid-a")]);
    let rejection = run(
        &mut objects,
        Command::Update {
            object: config_map("a"),
            precondition_resource_version: Some(7),
            now: T0,
        },
    )
    .unwrap_err();
    assert_eq!(
        rejection.to_string(),
        "ConfigMap db/a has been modified: the request expected resourceVersion 7, the stored object has 1"
    );
}

#[test]
fn update_status_replaces_only_the_status() {
    let mut objects = state(vec![create(pod("p"), "uid-p")]);
    let applied = run(
        &mut objects,
        Command::UpdateStatus {
            key: key("Pod", "db", "p"),
            status: json!({"phase": "Running", "podIP": "10.0.0.2"}),
            precondition_resource_version: Some(1),
        },
    )
    .unwrap();
    let stored = get(&objects, "Pod", "db", "p");
    assert_eq!(stored["status"]["podIP"], "10.0.0.2");
    assert_eq!(stored["spec"], pod("p")["spec"]);
    assert_eq!(stored["metadata"]["generation"], 1);
    assert_eq!(stored["metadata"]["resourceVersion"], "2");
    assert_eq!(applied.changes.len(), 1);
}

// ----- delete -----

#[test]
fn delete_decides_between_removal_and_termination_by_the_rules() {
    let bound = |name: &str| with(pod(name), "/spec/nodeName", json!("h1"));
    // (case, object, grace given, expected: None = removed, Some(grace) = terminating)
    let cases: Vec<(&str, Value, Option<i64>, Option<i64>)> = vec![
        ("config map", config_map("x"), None, None),
        ("unbound pod", pod("x"), None, None),
        (
            "bound running pod, default grace",
            bound("x"),
            None,
            Some(30),
        ),
        (
            "bound pod with its own grace",
            with(bound("x"), "/spec/terminationGracePeriodSeconds", json!(5)),
            None,
            Some(5),
        ),
        ("bound pod, grace given", bound("x"), Some(12), Some(12)),
        ("bound pod, grace 0", bound("x"), Some(0), None),
        (
            "succeeded pod",
            with(bound("x"), "/status/phase", json!("Succeeded")),
            None,
            None,
        ),
        (
            "failed pod",
            with(bound("x"), "/status/phase", json!("Failed")),
            None,
            None,
        ),
        (
            "config map with a finalizer",
            with(config_map("x"), "/metadata/finalizers", json!(["keep"])),
            None,
            Some(0),
        ),
    ];
    for (name, object, grace, expected) in cases {
        let kind = object["kind"].as_str().unwrap().to_string();
        let mut objects = state(vec![create(object, "uid-x")]);
        let applied = run(
            &mut objects,
            delete_with(
                key(&kind, "db", "x"),
                grace,
                Propagation::Background,
                at(100),
            ),
        )
        .unwrap();
        match expected {
            None => {
                assert!(
                    objects.get(&key(&kind, "db", "x")).is_none(),
                    "{name}: still stored"
                );
                let Outcome::Removed(last) = &applied.outcome else {
                    panic!("{name}: {:?}", applied.outcome)
                };
                assert_eq!(last["metadata"]["resourceVersion"], "2", "{name}");
                assert_eq!(applied.changes[0].type_, EventType::Deleted, "{name}");
            }
            Some(grace) => {
                let stored = get(&objects, &kind, "db", "x");
                assert_eq!(
                    stored["metadata"]["deletionTimestamp"],
                    at(100 + grace).to_rfc3339(),
                    "{name}"
                );
                assert_eq!(
                    stored["metadata"]["deletionGracePeriodSeconds"], grace,
                    "{name}"
                );
                assert_eq!(
                    stored["metadata"]["generation"], 2,
                    "{name}: deletion bumps generation"
                );
                assert_eq!(applied.outcome, Outcome::Terminating(stored), "{name}");
                assert_eq!(applied.changes[0].type_, EventType::Modified, "{name}");
            }
        }
    }
}

#[test]
fn a_second_delete_may_shorten_a_pods_grace_but_never_lengthen_it() {
    let bound = with(pod("p"), "/spec/nodeName", json!("h1"));
    let first = delete_with(
        key("Pod", "db", "p"),
        Some(60),
        Propagation::Background,
        at(0),
    );
    // (second delete at, its grace, expected deletionTimestamp offset, expected grace)
    let cases = [
        (10, Some(120), 60, 60), // would end later: ignored
        (10, None, 40, 30),      // the pod's default (30) ends at 40 < 60: shortened
        (10, Some(5), 15, 5),    // shortened
        (50, Some(30), 60, 60),  // would end at 80: ignored
    ];
    for (index, (when, grace, deadline, expected_grace)) in cases.into_iter().enumerate() {
        let mut objects = state(vec![create(bound.clone(), "uid-p"), first.clone()]);
        run(
            &mut objects,
            delete_with(
                key("Pod", "db", "p"),
                grace,
                Propagation::Background,
                at(when),
            ),
        )
        .unwrap();
        let stored = get(&objects, "Pod", "db", "p");
        assert_eq!(
            stored["metadata"]["deletionTimestamp"],
            at(deadline).to_rfc3339(),
            "case {index}"
        );
        assert_eq!(
            stored["metadata"]["deletionGracePeriodSeconds"], expected_grace,
            "case {index}"
        );
    }
}

#[test]
fn the_kubelets_final_delete_with_grace_zero_removes_a_terminating_pod() {
    let mut objects = state(vec![
        create(with(pod("p"), "/spec/nodeName", json!("h1")), "uid-p"),
        Command::delete(key("Pod", "db", "p"), at(0)),
    ]);
    let applied = run(
        &mut objects,
        delete_with(
            key("Pod", "db", "p"),
            Some(0),
            Propagation::Background,
            at(3),
        ),
    )
    .unwrap();
    assert!(matches!(applied.outcome, Outcome::Removed(_)));
    assert!(objects.is_empty());
}

#[test]
fn removing_the_last_finalizer_of_a_deleted_object_removes_it() {
    let finalized = with(config_map("a"), "/metadata/finalizers", json!(["a", "b"]));
    let mut objects = state(vec![
        create(finalized, "uid-a"),
        Command::delete(key("ConfigMap", "db", "a"), at(1)),
    ]);
    // Adding a finalizer during deletion is refused.
    let added = with(
        config_map("a"),
        "/metadata/finalizers",
        json!(["a", "b", "c"]),
    );
    let rejection = run(&mut objects, Command::update(added, at(2))).unwrap_err();
    assert_eq!(rejection.reason(), "Invalid");

    // Removing one keeps the object, with its deletionTimestamp.
    let one_left = with(config_map("a"), "/metadata/finalizers", json!(["b"]));
    run(&mut objects, Command::update(one_left, at(3))).unwrap();
    let stored = get(&objects, "ConfigMap", "db", "a");
    assert_eq!(stored["metadata"]["deletionTimestamp"], at(1).to_rfc3339());

    // Removing the last one removes it.
    let applied = run(&mut objects, Command::update(config_map("a"), at(4))).unwrap();
    assert!(matches!(applied.outcome, Outcome::Removed(_)));
    assert!(objects.is_empty());
}

#[test]
fn removing_an_owner_deletes_its_dependents_by_the_same_rules() {
    let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"namespace": "db", "name": "pg"}, "spec": {"replicas": 2}});
    let running = owned_by(with(pod("pg-0"), "/spec/nodeName", json!("h1")), "uid-sts");
    let pending = owned_by(pod("pg-1"), "uid-sts");
    let finalized = owned_by(
        with(config_map("cm"), "/metadata/finalizers", json!(["keep"])),
        "uid-sts",
    );
    let shared = owned_by(owned_by(config_map("shared"), "uid-sts"), "uid-other");
    let other = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"namespace": "db", "name": "other"}});
    let mut objects = state(vec![
        create(sts, "uid-sts"),
        create(other, "uid-other"),
        create(running, "uid-0"),
        create(pending, "uid-1"),
        create(finalized, "uid-cm"),
        create(shared, "uid-shared"),
    ]);

    let applied = run(
        &mut objects,
        Command::delete(key("StatefulSet", "db", "pg"), at(10)),
    )
    .unwrap();

    assert!(matches!(applied.outcome, Outcome::Removed(_)));
    assert!(objects.get(&key("StatefulSet", "db", "pg")).is_none());
    assert!(
        objects.get(&key("Pod", "db", "pg-1")).is_none(),
        "unbound pod removed at once"
    );
    let running = get(&objects, "Pod", "db", "pg-0");
    assert_eq!(
        running["metadata"]["deletionTimestamp"],
        at(40).to_rfc3339(),
        "graceful"
    );
    let finalized = get(&objects, "ConfigMap", "db", "cm");
    assert_eq!(
        finalized["metadata"]["deletionTimestamp"],
        at(10).to_rfc3339()
    );
    let shared = get(&objects, "ConfigMap", "db", "shared");
    assert_eq!(
        shared["metadata"]["ownerReferences"],
        json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "owner", "uid": "uid-other"}]),
        "a dependent with another live owner only loses the reference"
    );
    assert!(shared["metadata"].get("deletionTimestamp").is_none());

    let mut changes: Vec<(String, EventType)> = applied
        .changes
        .iter()
        .map(|event| {
            (
                event.object["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                event.type_,
            )
        })
        .collect();
    changes.sort();
    assert_eq!(
        changes,
        vec![
            ("cm".into(), EventType::Modified),
            ("pg".into(), EventType::Deleted),
            ("pg-0".into(), EventType::Modified),
            ("pg-1".into(), EventType::Deleted),
            ("shared".into(), EventType::Modified),
        ]
    );
    assert!(applied.changes.iter().all(|event| event.revision == 7));
}

#[test]
fn cascades_reach_dependents_of_dependents() {
    let mut objects = state(vec![
        create(config_map("root"), "uid-root"),
        create(owned_by(config_map("middle"), "uid-root"), "uid-middle"),
        create(owned_by(config_map("leaf"), "uid-middle"), "uid-leaf"),
        create(config_map("bystander"), "uid-by"),
    ]);
    run(
        &mut objects,
        Command::delete(key("ConfigMap", "db", "root"), T0),
    )
    .unwrap();
    let names: Vec<&str> = objects.iter().map(|(key, _)| key.name.as_str()).collect();
    assert_eq!(names, vec!["bystander"]);
}

#[test]
fn an_ownership_cycle_is_deleted_without_looping() {
    let mut objects = state(vec![
        create(config_map("a"), "uid-a"),
        create(owned_by(config_map("b"), "uid-a"), "uid-b"),
    ]);
    let a_owned_by_b = owned_by(config_map("a"), "uid-b");
    run(&mut objects, Command::update(a_owned_by_b, T0)).unwrap();
    run(
        &mut objects,
        Command::delete(key("ConfigMap", "db", "a"), T0),
    )
    .unwrap();
    assert!(objects.is_empty());
}

#[test]
fn orphan_propagation_keeps_dependents_and_drops_their_owner_reference() {
    let mut objects = state(vec![
        create(config_map("owner"), "uid-owner"),
        create(owned_by(config_map("dep"), "uid-owner"), "uid-dep"),
    ]);
    let applied = run(
        &mut objects,
        delete_with(
            key("ConfigMap", "db", "owner"),
            None,
            Propagation::Orphan,
            T0,
        ),
    )
    .unwrap();
    assert!(matches!(applied.outcome, Outcome::Removed(_)));
    let dep = get(&objects, "ConfigMap", "db", "dep");
    assert!(dep["metadata"].get("ownerReferences").is_none());
    assert_eq!(dep["metadata"]["resourceVersion"], "3");
}

#[test]
fn foreground_deletion_keeps_the_owner_until_its_last_dependent_is_gone() {
    let running = owned_by(with(pod("p"), "/spec/nodeName", json!("h1")), "uid-owner");
    let mut objects = state(vec![
        create(config_map("owner"), "uid-owner"),
        create(running, "uid-p"),
        create(owned_by(config_map("dep"), "uid-owner"), "uid-dep"),
    ]);
    let applied = run(
        &mut objects,
        delete_with(
            key("ConfigMap", "db", "owner"),
            None,
            Propagation::Foreground,
            at(0),
        ),
    )
    .unwrap();

    let owner = get(&objects, "ConfigMap", "db", "owner");
    assert_eq!(applied.outcome, Outcome::Terminating(owner.clone()));
    assert_eq!(
        owner["metadata"]["finalizers"],
        json!([FOREGROUND_DELETION])
    );
    assert!(objects.get(&key("ConfigMap", "db", "dep")).is_none());
    let pod = get(&objects, "Pod", "db", "p");
    assert_eq!(pod["metadata"]["deletionTimestamp"], at(30).to_rfc3339());

    // The kubelet removes the pod: the owner goes with it, in the same revision.
    let applied = run(
        &mut objects,
        delete_with(
            key("Pod", "db", "p"),
            Some(0),
            Propagation::Background,
            at(31),
        ),
    )
    .unwrap();
    assert!(objects.is_empty(), "{:?}", snapshot(&objects));
    assert_eq!(applied.changes.len(), 2);
    assert!(
        applied
            .changes
            .iter()
            .all(|event| event.type_ == EventType::Deleted)
    );
}

#[test]
fn foreground_deletion_without_dependents_removes_at_once() {
    let mut objects = state(vec![create(config_map("owner"), "uid-owner")]);
    run(
        &mut objects,
        delete_with(
            key("ConfigMap", "db", "owner"),
            None,
            Propagation::Foreground,
            T0,
        ),
    )
    .unwrap();
    assert!(objects.is_empty());
}

// ----- batches and versions -----

#[test]
fn a_batch_applies_every_command_at_one_revision() {
    let mut objects = state(vec![create(config_map("a"), "uid-a")]);
    let applied = run(
        &mut objects,
        Command::Batch(vec![
            create(config_map("b"), "uid-b"),
            Command::delete(key("ConfigMap", "db", "a"), T0),
            Command::update(with(config_map("b"), "/data/k", json!("w")), T0),
        ]),
    )
    .unwrap();
    assert_eq!(applied.revision, 2);
    let Outcome::Batch(outcomes) = &applied.outcome else {
        panic!("{:?}", applied.outcome)
    };
    assert_eq!(outcomes.len(), 3);
    let b = get(&objects, "ConfigMap", "db", "b");
    assert_eq!(b["data"]["k"], "w");
    assert_eq!(b["metadata"]["generation"], 2);
    assert_eq!(b["metadata"]["resourceVersion"], "2");
    // One event per changed key: a is deleted, b is added (in its final state).
    let events: Vec<(EventType, &str)> = applied
        .changes
        .iter()
        .map(|event| {
            (
                event.type_,
                event.object["metadata"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        events,
        vec![(EventType::Deleted, "a"), (EventType::Added, "b")]
    );
}

#[test]
fn a_batch_with_a_refused_command_changes_nothing_and_names_it() {
    let mut objects = state(vec![create(config_map("a"), "uid-a")]);
    let before = snapshot(&objects);
    let rejection = run(
        &mut objects,
        Command::Batch(vec![
            create(config_map("b"), "uid-b"),
            Command::delete(key("ConfigMap", "db", "a"), T0),
            create(config_map("b"), "uid-b2"),
        ]),
    )
    .unwrap_err();
    let Rejection::InBatch { index, rejection } = &rejection else {
        panic!("{rejection:?}")
    };
    assert_eq!(*index, 2);
    assert_eq!(rejection.reason(), "AlreadyExists");
    assert_eq!(snapshot(&objects), before);
    assert_eq!(objects.revision(), 2);
}

#[test]
fn an_object_created_and_removed_in_one_batch_leaves_no_trace() {
    let mut objects = Objects::new();
    let applied = run(
        &mut objects,
        Command::Batch(vec![
            create(config_map("t"), "uid-t"),
            Command::delete(key("ConfigMap", "db", "t"), T0),
        ]),
    )
    .unwrap();
    assert!(applied.changes.is_empty());
    assert!(objects.is_empty());
}

#[test]
fn resource_versions_follow_the_revision_of_the_command_that_changed_the_object() {
    let mut objects = Objects::new();
    objects
        .execute(10, &create(config_map("a"), "uid-a"))
        .unwrap();
    objects
        .execute(11, &create(config_map("b"), "uid-b"))
        .unwrap();
    objects.advance(12); // a raft entry without a command
    objects
        .execute(
            13,
            &Command::update(with(config_map("a"), "/data/k", json!("x")), T0),
        )
        .unwrap();
    assert_eq!(objects.revision(), 13);
    assert_eq!(
        get(&objects, "ConfigMap", "db", "a")["metadata"]["resourceVersion"],
        "13"
    );
    assert_eq!(
        get(&objects, "ConfigMap", "db", "b")["metadata"]["resourceVersion"],
        "11"
    );
    let listed: Vec<&str> = objects
        .list("ConfigMap", Some("db"))
        .map(|object| object["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, vec!["a", "b"]);
    assert_eq!(objects.list("ConfigMap", Some("other")).count(), 0);
    assert_eq!(objects.list("Pod", None).count(), 0);
}

#[test]
fn replaying_the_same_commands_gives_the_same_state() {
    let commands = vec![
        create(config_map("owner"), "uid-owner"),
        create(
            owned_by(with(pod("p"), "/spec/nodeName", json!("h1")), "uid-owner"),
            "uid-p",
        ),
        create(owned_by(config_map("dep"), "uid-owner"), "uid-dep"),
        Command::update(with(config_map("owner"), "/data/k", json!("2")), at(3)),
        delete_with(
            key("ConfigMap", "db", "owner"),
            None,
            Propagation::Foreground,
            at(4),
        ),
        Command::Batch(vec![create(config_map("x"), "uid-x"), Command::Noop]),
        delete_with(
            key("Pod", "db", "p"),
            Some(0),
            Propagation::Background,
            at(9),
        ),
    ];
    let first = state(commands.clone());
    let second = state(commands);
    assert_eq!(snapshot(&first), snapshot(&second));
    assert_eq!(first.revision(), second.revision());
}

#[test]
fn builder_methods_set_the_options_of_the_commands_that_have_them() {
    let key = key("Pod", "db", "p");
    let built = Command::delete(key.clone(), T0)
        .expecting_resource_version(7)
        .expecting_uid("uid-p")
        .with_grace_period(5)
        .with_propagation(Propagation::Foreground);
    assert_eq!(
        built,
        Command::Delete {
            key: key.clone(),
            precondition_uid: Some("uid-p".into()),
            precondition_resource_version: Some(7),
            grace_period_seconds: Some(5),
            propagation: Propagation::Foreground,
            now: T0,
        }
    );
    let status = Command::update_status(key.clone(), json!({})).expecting_resource_version(3);
    assert!(matches!(
        status,
        Command::UpdateStatus {
            precondition_resource_version: Some(3),
            ..
        }
    ));
    let create = create(pod("p"), "u");
    assert_eq!(
        create.clone().expecting_uid("x").with_grace_period(1),
        create
    );
}
