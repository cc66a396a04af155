//! DaemonSets and node commands end to end on one host, black box through the CLI: a real
//! agent, real containers. The node is relabelled, cordoned and drained with `berth`, and the
//! pods are watched while the controller works.

mod common;

use std::time::{Duration, Instant};

use common::{Agent, IMAGE, condition};
use serde_json::{Value, json};

fn daemon_set(name: &str, node_selector: Option<Value>, message: &str) -> Value {
    let mut spec = json!({
        "terminationGracePeriodSeconds": 3,
        "containers": [{
            "name": "main",
            "image": IMAGE,
            "command": ["sh", "-c", "trap 'exit 0' TERM; touch /tmp/ready; while :; do sleep 1 & wait $!; done"],
            "env": [{"name": "MESSAGE", "value": message}],
            "readinessProbe": {"exec": {"command": ["test", "-e", "/tmp/ready"]}, "periodSeconds": 1},
        }],
    });
    if let Some(selector) = node_selector {
        spec["nodeSelector"] = selector;
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        }
    })
}

/// The set's pods: (name, uid, revision hash, ready, terminating).
fn pods_of(agent: &Agent, app: &str) -> Vec<(String, String, String, bool, bool)> {
    let list = agent.json(&["get", "pods", "-l", &format!("app={app}")]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap_or("").to_string(),
                p["metadata"]["uid"].as_str().unwrap_or("").to_string(),
                p.pointer("/metadata/labels/controller-revision-hash")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                condition(p, "Ready"),
                p.pointer("/metadata/deletionTimestamp")
                    .is_some_and(|t| !t.is_null()),
            )
        })
        .collect()
}

fn status(agent: &Agent, name: &str) -> Value {
    agent.json(&["get", "ds", name])["status"].clone()
}

#[test]
fn a_daemonset_runs_one_pod_on_the_node_and_follows_its_labels() {
    let agent = Agent::start();
    let node = agent.name.clone();
    agent.apply(&daemon_set("logger", Some(json!({"berth.test/logs": "yes"})), "v1").to_string());
    agent.wait_for("the set's status", 30, || {
        let s = status(&agent, "logger");
        (s["observedGeneration"] == 1).then_some(())
    });
    assert_eq!(
        status(&agent, "logger")["desiredNumberScheduled"],
        0,
        "the node does not match the selector yet"
    );
    assert!(pods_of(&agent, "logger").is_empty());

    let out = agent.ok(&["label", "node", &node, "berth.test/logs=yes"]);
    assert_eq!(out.trim(), format!("node/{node} labeled"));
    let pod = agent.wait_for("a Ready pod on the labelled node", 60, || {
        let pods = pods_of(&agent, "logger");
        (pods.len() == 1 && pods[0].3).then(|| pods[0].0.clone())
    });
    let stored = agent.pod(&pod).expect("the pod");
    assert_eq!(stored["spec"]["nodeName"], node.as_str());
    assert!(pod.starts_with("logger-"), "{pod}");
    agent.wait_for("status counts the pod", 30, || {
        let s = status(&agent, "logger");
        (s["desiredNumberScheduled"] == 1
            && s["numberReady"] == 1
            && s["updatedNumberScheduled"] == 1
            && s["numberAvailable"] == 1)
            .then_some(())
    });
    let table = agent.ok(&["get", "ds"]);
    assert!(
        table.contains("logger") && table.contains("berth.test/logs=yes"),
        "{table}"
    );

    // Changing an existing label needs --overwrite, and nothing changes without it.
    let err = agent.fails(&["label", "node", &node, "berth.test/logs=no"]);
    assert!(
        err.contains("'berth.test/logs' already has a value (yes), and --overwrite is false"),
        "{err}"
    );
    assert_eq!(pods_of(&agent, "logger").len(), 1);

    agent.ok(&["label", "node", &node, "berth.test/logs-"]);
    agent.wait_for("the pod to leave the unlabelled node", 60, || {
        pods_of(&agent, "logger").is_empty().then_some(())
    });
    agent.wait_for("status with nothing desired", 30, || {
        let s = status(&agent, "logger");
        (s["desiredNumberScheduled"] == 0
            && s["currentNumberScheduled"] == 0
            && s["numberMisscheduled"] == 0)
            .then_some(())
    });
    let events = agent.ok(&["describe", "ds", "logger"]);
    assert!(
        events.contains("SuccessfulCreate") && events.contains("SuccessfulDelete"),
        "{events}"
    );
}

#[test]
fn a_template_change_rolls_the_pod_without_two_copies_at_once() {
    let agent = Agent::start();
    agent.apply(&daemon_set("roller", None, "v1").to_string());
    let (first, first_uid, first_hash) = agent.wait_for("the first pod Ready", 60, || {
        let pods = pods_of(&agent, "roller");
        (pods.len() == 1 && pods[0].3)
            .then(|| (pods[0].0.clone(), pods[0].1.clone(), pods[0].2.clone()))
    });
    assert!(!first_hash.is_empty());

    agent.apply(&daemon_set("roller", None, "v2").to_string());
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let pods = pods_of(&agent, "roller");
        let live: Vec<_> = pods.iter().filter(|p| !p.4).collect();
        assert!(
            live.len() <= 1,
            "maxSurge 0: never two live pods on the node: {pods:?}"
        );
        if live.len() == 1 && live[0].1 != first_uid && live[0].3 && pods.len() == 1 {
            assert_ne!(
                live[0].2, first_hash,
                "the new pod carries the new revision"
            );
            assert_ne!(live[0].0, first);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rollout did not finish: {pods:?}\n{}",
            common::tail(&agent.log(), 40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    agent.wait_for("status of the finished rollout", 30, || {
        let s = status(&agent, "roller");
        (s["observedGeneration"] == 2
            && s["updatedNumberScheduled"] == 1
            && s["numberAvailable"] == 1)
            .then_some(())
    });
    let revisions = agent.json(&["get", "controllerrevisions"]);
    let ours = revisions["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("roller-")
        })
        .count();
    assert_eq!(ours, 2, "one revision per template");
}

fn statefulset(name: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
        "spec": {"replicas": replicas, "serviceName": name, "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"terminationGracePeriodSeconds": 3, "containers": [{
                "name": "main", "image": IMAGE,
                "command": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done"]}]}}}
    })
}

#[test]
fn drain_cordons_skips_daemon_pods_and_moves_a_statefulset_highest_ordinal_first() {
    let agent = Agent::start();
    let node = agent.name.clone();
    agent.apply(&daemon_set("agentd", None, "v1").to_string());
    agent.apply(&statefulset("web", 3).to_string());
    for pod in ["web-0", "web-1", "web-2"] {
        agent.wait_for_pod_ready(pod, 60);
    }
    agent.wait_for("the daemon pod", 60, || {
        pods_of(&agent, "agentd").iter().any(|p| p.3).then_some(())
    });
    let uids: Vec<String> = ["web-0", "web-1", "web-2"]
        .iter()
        .map(|p| {
            agent.pod(p).unwrap()["metadata"]["uid"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();

    // Without --ignore-daemonsets drain refuses, as kubectl does, and deletes nothing.
    let err = agent.fails(&["drain", &node]);
    assert!(
        err.contains("cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)"),
        "{err}"
    );
    let stored = agent.json(&["get", "node", &node]);
    assert_eq!(
        stored["spec"]["unschedulable"], true,
        "the node is cordoned first"
    );
    assert_eq!(
        agent.pod("web-2").unwrap()["metadata"]["uid"],
        uids[2].as_str()
    );

    let out = agent.ok(&["drain", &node, "--ignore-daemonsets", "--timeout", "90s"]);
    let at = |line: &str| {
        out.find(line)
            .unwrap_or_else(|| panic!("{line:?} missing from:\n{out}"))
    };
    assert!(at("evicting pod default/web-2") < at("pod/web-2 evicted"));
    assert!(
        at("pod/web-2 evicted") < at("evicting pod default/web-1"),
        "each gone before the next:\n{out}"
    );
    assert!(at("pod/web-1 evicted") < at("evicting pod default/web-0"));
    assert!(
        out.trim_end().ends_with(&format!("node/{node} drained")),
        "{out}"
    );
    // The daemon pod stayed; the set's pods are re-created but cannot be placed on a cordoned
    // node (this is the only node).
    assert_eq!(pods_of(&agent, "agentd").iter().filter(|p| !p.4).count(), 1);
    let pending = agent.wait_for("web-0 re-created and Pending", 30, || {
        agent
            .pod("web-0")
            .filter(|p| p["metadata"]["uid"] != uids[0].as_str())
    });
    assert!(
        pending["spec"].get("nodeName").is_none_or(Value::is_null),
        "{pending}"
    );

    assert_eq!(
        agent.ok(&["uncordon", &node]).trim(),
        format!("node/{node} uncordoned")
    );
    assert_eq!(
        agent.ok(&["uncordon", &node]).trim(),
        format!("node/{node} already uncordoned")
    );
    for pod in ["web-0", "web-1", "web-2"] {
        agent.wait_for_pod_ready(pod, 60);
    }
}

#[test]
fn node_commands_name_unknown_nodes_and_refuse_to_forget_a_ready_one() {
    let agent = Agent::start();
    for args in [
        vec!["cordon", "nope"],
        vec!["uncordon", "nope"],
        vec!["drain", "nope"],
        vec!["label", "node", "nope", "a=b"],
        vec!["node", "forget", "nope"],
    ] {
        let err = agent.fails(&args);
        assert!(err.contains("nodes \"nope\" not found"), "{args:?}: {err}");
    }
    let err = agent.fails(&["label", "node", &agent.name, "novalue"]);
    assert!(err.contains("invalid label spec"), "{err}");
    let err = agent.fails(&["node", "forget", &agent.name]);
    assert!(err.contains("is Ready"), "{err}");
    assert!(
        agent.json(&["get", "node", &agent.name])["metadata"]["name"] == agent.name.as_str(),
        "the node is still there"
    );
    assert_eq!(
        agent.ok(&["cordon", &agent.name]).trim(),
        format!("node/{} cordoned", agent.name)
    );
    assert_eq!(
        agent.ok(&["cordon", &agent.name]).trim(),
        format!("node/{} already cordoned", agent.name)
    );
}

#[test]
fn the_surge_example_keeps_a_ready_pod_on_the_node_throughout_an_update() {
    let agent = Agent::start();
    let example = common::workspace().join("examples/daemonset-surge.yaml");
    let manifest = std::fs::read_to_string(&example).expect("the example");
    agent.apply(&manifest);
    let (_, first_uid, _, _, _) = agent.wait_for("the probe pod Ready", 60, || {
        let pods = pods_of(&agent, "probe");
        (pods.len() == 1 && pods[0].3).then(|| pods[0].clone())
    });
    agent.apply(&manifest.replace("sleep 5", "sleep 4"));
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut saw_two = false;
    loop {
        let pods = pods_of(&agent, "probe");
        let live: Vec<_> = pods.iter().filter(|p| !p.4).collect();
        assert!(
            live.iter().any(|p| p.3),
            "no Ready pod on the node during a surge update: {pods:?}"
        );
        assert!(
            live.len() <= 2,
            "maxSurge 1: at most two pods on the node: {pods:?}"
        );
        saw_two |= live.len() == 2;
        if live.len() == 1 && live[0].1 != first_uid && pods.len() == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the surge update did not finish: {pods:?}\n{}",
            common::tail(&agent.log(), 40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        saw_two,
        "the new pod ran beside the old one before it stopped"
    );
}

#[test]
fn the_node_logger_example_is_admitted() {
    let agent = Agent::start();
    let example = common::workspace().join("examples/daemonset-node-logger.yaml");
    let out = agent.ok(&["apply", "-f", example.to_str().unwrap(), "--dry-run=server"]);
    assert!(out.contains("daemonset.apps/node-logger"), "{out}");
}

fn bound_pod(name: &str, node: &str, extra: Value) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": node, "containers": [{"name": "main", "image": IMAGE, "command": ["sleep", "3600"]}]}
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        match k.as_str() {
            "metadata" => pod["metadata"]
                .as_object_mut()
                .unwrap()
                .extend(v.as_object().unwrap().clone()),
            "spec" => pod["spec"]
                .as_object_mut()
                .unwrap()
                .extend(v.as_object().unwrap().clone()),
            _ => unreachable!(),
        }
    }
    pod
}

/// A node that never posts status (a Node object no agent renews) is handled as a lost host:
/// Unknown and tainted after the grace period, then its pods are evicted, pinned or kept; then
/// `node forget` gives it up.
#[test]
fn a_silent_node_is_marked_unknown_and_its_pods_are_evicted_pinned_or_kept() {
    let agent = Agent::start();
    let ghost = format!("ghost-{}", agent.name);
    agent.apply(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": ghost, "labels": {"kubernetes.io/hostname": ghost}}}).to_string());
    agent.apply(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}, "data": {}}).to_string());
    let owner_uid = agent.json(&["get", "configmap", "owner"])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    agent.apply(
        &json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data-ghost", "annotations": {"volume.kubernetes.io/selected-node": ghost}},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "16Mi"}}}})
        .to_string(),
    );
    let controlled = json!({"metadata": {"ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid, "controller": true}]}});
    agent.apply(&bound_pod("movable", &ghost, controlled).to_string());
    let claim = json!({"spec": {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-ghost"}}]}});
    agent.apply(&bound_pod("pinned", &ghost, claim).to_string());
    agent.apply(&bound_pod("bare", &ghost, json!({})).to_string());

    let node = agent.wait_for("the silent node to be Unknown and tainted", 40, || {
        let node = agent.json(&["get", "node", &ghost]);
        let tainted = node
            .pointer("/spec/taints")
            .and_then(Value::as_array)
            .is_some_and(|ts| {
                ts.iter().any(|t| {
                    t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute"
                })
            });
        let unknown = node
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "Unknown")
            });
        (tainted && unknown).then_some(node)
    });
    assert!(
        node["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["reason"] == "NodeStatusNeverUpdated"),
        "{node}"
    );
    let described = agent.ok(&["describe", "node", &ghost]);
    assert!(described.contains("NodeNotReady"), "{described}");
    // This host's own node keeps posting status and stays Ready.
    assert!(condition(
        &agent.json(&["get", "node", &agent.name]),
        "Ready"
    ));

    agent.wait_for("the controlled pod to be evicted", 40, || {
        agent.pod("movable").is_none().then_some(())
    });
    let pinned = agent.wait_for("the pod with a local claim to be pinned", 20, || {
        agent
            .pod("pinned")
            .filter(|p| condition(p, "PinnedToLostNode"))
    });
    assert_eq!(pinned["spec"]["nodeName"], ghost.as_str());
    let described = agent.ok(&["describe", "pod", "pinned"]);
    assert!(
        described.contains("Pinned:") && described.contains(&format!("berth node forget {ghost}")),
        "{described}"
    );
    assert!(
        described.contains("PinnedToLostNode"),
        "the event is shown too:\n{described}"
    );
    assert!(
        agent.pod("bare").is_some(),
        "nothing would re-create a bare pod: it stays"
    );

    let out = agent.ok(&["node", "forget", &ghost]);
    assert!(
        out.contains(&format!("node/{ghost} deleted"))
            && out.contains("persistentvolumeclaim/data-ghost released"),
        "{out}"
    );
    assert!(agent.berth(&["get", "node", &ghost]).status.code() != Some(0));
    let pvc = agent.json(&["get", "pvc", "data-ghost"]);
    assert!(
        pvc.pointer("/metadata/annotations/volume.kubernetes.io~1selected-node")
            .is_none(),
        "{pvc}"
    );
    agent.wait_for("the ghost's pods to be removed", 20, || {
        (agent.pod("pinned").is_none() && agent.pod("bare").is_none()).then_some(())
    });
}

#[test]
fn rollout_restart_and_status_follow_a_daemonset() {
    let agent = Agent::start();
    agent.apply(&daemon_set("restarted", None, "v1").to_string());
    let out = agent.ok(&["rollout", "status", "ds/restarted", "--timeout", "60s"]);
    assert!(
        out.trim_end()
            .ends_with("daemon set \"restarted\" successfully rolled out"),
        "{out}"
    );
    let before = pods_of(&agent, "restarted");
    assert_eq!(
        agent.ok(&["rollout", "restart", "ds/restarted"]).trim(),
        "daemonset.apps/restarted restarted"
    );
    let out = agent.ok(&["rollout", "status", "ds/restarted", "--timeout", "60s"]);
    assert!(out.trim_end().ends_with("successfully rolled out"), "{out}");
    let after = pods_of(&agent, "restarted");
    assert_eq!(after.iter().filter(|p| !p.4).count(), 1);
    assert!(
        after.iter().all(|p| p.1 != before[0].1),
        "the pod was replaced: {before:?} -> {after:?}"
    );
}
