//! StatefulSets end to end, black box through the CLI: a real agent, real containers, real
//! claim directories. Each test watches the pods while the set works (polling `get pods -o
//! json`) and checks the ordering guarantees on every observation, not only at the end.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{Agent, IMAGE, condition};
use serde_json::{Value, json};

/// A container that stops at once on SIGTERM, marks itself ready when `/tmp/ready` exists
/// (or at once when `ready_at_start`), and records its start in its claim when it has one.
fn container(ready_at_start: bool, with_claim: bool) -> Value {
    let mut script = String::from("trap 'exit 0' TERM; ");
    if with_claim {
        script.push_str("echo \"$(hostname) $(date +%s)\" >> /data/starts; ");
    }
    if ready_at_start {
        script.push_str("touch /tmp/ready; ");
    }
    script.push_str("while :; do sleep 1 & wait $!; done");
    let mut c = json!({
        "name": "main",
        "image": IMAGE,
        "command": ["sh", "-c", script],
        "readinessProbe": {"exec": {"command": ["test", "-e", "/tmp/ready"]}, "periodSeconds": 1},
    });
    if with_claim {
        c["volumeMounts"] = json!([{"name": "data", "mountPath": "/data"}]);
    }
    c
}

/// A StatefulSet `name` with `replicas`, OrderedReady unless `parallel`.
fn set(name: &str, replicas: i64, ready_at_start: bool, with_claim: bool) -> Value {
    let mut s = json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"terminationGracePeriodSeconds": 5, "containers": [container(ready_at_start, with_claim)]}
            }
        }
    });
    if with_claim {
        s["spec"]["volumeClaimTemplates"] = json!([{
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}}
        }]);
    }
    s
}

fn apply(agent: &Agent, object: &Value) -> String {
    agent.apply(&object.to_string())
}

/// One observation of a set's pods, by name.
#[derive(Debug, Clone)]
struct PodSeen {
    uid: String,
    ready: bool,
    terminating: bool,
    revision: String,
    phase: String,
}

fn pods_of(agent: &Agent, set: &str) -> BTreeMap<String, PodSeen> {
    let list = agent.json(&["get", "pods", "-l", &format!("app={set}")]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap_or("").to_string(),
                PodSeen {
                    uid: p["metadata"]["uid"].as_str().unwrap_or("").to_string(),
                    ready: condition(p, "Ready"),
                    terminating: p
                        .pointer("/metadata/deletionTimestamp")
                        .is_some_and(|t| !t.is_null()),
                    revision: p
                        .pointer("/metadata/labels/controller-revision-hash")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    phase: p
                        .pointer("/status/phase")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                },
            )
        })
        .collect()
}

fn sts(agent: &Agent, name: &str) -> Value {
    agent.json(&["get", "sts", name])
}

fn names(pods: &BTreeMap<String, PodSeen>) -> Vec<String> {
    let mut n: Vec<String> = pods.keys().cloned().collect();
    n.sort_by_key(|name| {
        name.rsplit('-')
            .next()
            .and_then(|o| o.parse::<u32>().ok())
            .unwrap_or(0)
    });
    n
}

/// Polls the set's pods until `done` holds, checking `invariant` on every observation.
fn watch_until(
    agent: &Agent,
    set: &str,
    seconds: u64,
    what: &str,
    mut invariant: impl FnMut(&BTreeMap<String, PodSeen>),
    mut done: impl FnMut(&BTreeMap<String, PodSeen>) -> bool,
) -> BTreeMap<String, PodSeen> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let pods = pods_of(agent, set);
        invariant(&pods);
        if done(&pods) {
            return pods;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {seconds} s waiting for {what}: {pods:#?}\n{}",
            common::tail(&agent.log(), 40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the set reports `n` ready replicas, all updated.
fn wait_for_set(agent: &Agent, name: &str, n: i64, seconds: u64) -> Value {
    agent.wait_for(
        &format!("{name} to have {n} ready, updated replicas"),
        seconds,
        || {
            let s = sts(agent, name);
            let st = &s["status"];
            (st["readyReplicas"] == n
                && st["replicas"] == n
                && st["updatedReplicas"] == n
                && st["currentRevision"] == st["updateRevision"]
                && st["observedGeneration"] == s["metadata"]["generation"])
                .then_some(s)
        },
    )
}

/// Under OrderedReady creation: no pod exists while a lower ordinal is not Ready.
fn ordered_creation(set: &str, replicas: usize) -> impl FnMut(&BTreeMap<String, PodSeen>) {
    let set = set.to_string();
    move |pods| {
        for i in 1..replicas {
            let this = format!("{set}-{i}");
            let below = format!("{set}-{}", i - 1);
            if pods.contains_key(&this) {
                assert!(
                    pods.get(&below).is_some_and(|p| p.ready),
                    "{this} exists while {below} is not Ready: {pods:#?}"
                );
            }
        }
    }
}

fn exec(agent: &Agent, pod: &str, script: &str) -> String {
    agent.ok(&["exec", pod, "--", "sh", "-c", script])
}

#[test]
fn ordered_creation_halts_on_a_pod_that_is_not_ready_and_continues_when_it_is() {
    let agent = Agent::start();
    apply(&agent, &set("web", 3, false, false));
    let mut check = ordered_creation("web", 3);
    for i in 0..3 {
        let pod = format!("web-{i}");
        watch_until(
            &agent,
            "web",
            30,
            &format!("{pod} to run"),
            &mut check,
            |p| p.get(&pod).is_some_and(|p| p.phase == "Running"),
        );
        // The readiness probe fails: for three seconds nothing else may appear.
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            let pods = pods_of(&agent, "web");
            check(&pods);
            assert_eq!(pods.len(), i + 1, "{pods:#?}");
            std::thread::sleep(Duration::from_millis(200));
        }
        exec(&agent, &pod, "touch /tmp/ready");
        watch_until(
            &agent,
            "web",
            30,
            &format!("{pod} to be Ready"),
            &mut check,
            |p| p.get(&pod).is_some_and(|p| p.ready),
        );
    }
    let s = wait_for_set(&agent, "web", 3, 30);
    assert_eq!(s["status"]["availableReplicas"], 3);
    let table = agent.ok(&["get", "sts", "web"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..2], ["web", "3/3"]);
    let pod = agent.pod("web-1").unwrap();
    assert_eq!(pod["spec"]["hostname"], "web-1");
    assert_eq!(pod["spec"]["subdomain"], "web");
    assert_eq!(
        pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
        "web-1"
    );
    assert_eq!(
        pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"],
        "1"
    );
    assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
}

#[test]
fn scaling_down_stops_the_highest_ordinal_first_one_at_a_time() {
    let agent = Agent::start();
    apply(&agent, &set("web", 4, true, false));
    wait_for_set(&agent, "web", 4, 60);
    agent.ok(&["scale", "sts", "web", "--replicas", "1"]);
    let mut order: Vec<String> = Vec::new();
    watch_until(
        &agent,
        "web",
        60,
        "the scale-down to 1",
        |pods| {
            let stopping: Vec<&String> = pods
                .iter()
                .filter(|(_, p)| p.terminating)
                .map(|(n, _)| n)
                .collect();
            assert!(stopping.len() <= 1, "two pods stop at once: {pods:#?}");
            // Highest first: two pods seen gone in one observation (the poll missed the
            // moment between them) are recorded in the order the invariant below checks.
            for i in (1..4).rev() {
                let name = format!("web-{i}");
                let gone_or_stopping = pods.get(&name).is_none_or(|p| p.terminating);
                if gone_or_stopping && !order.contains(&name) {
                    order.push(name);
                }
            }
            // A pod goes only after every higher one is gone.
            for i in 1..3 {
                let lower = pods.get(&format!("web-{i}"));
                if lower.is_none_or(|p| p.terminating) {
                    for j in i + 1..4 {
                        assert!(
                            !pods.contains_key(&format!("web-{j}")),
                            "web-{i} stops while web-{j} exists: {pods:#?}"
                        );
                    }
                }
            }
        },
        |pods| pods.len() == 1,
    );
    assert_eq!(order, vec!["web-3", "web-2", "web-1"]);
    wait_for_set(&agent, "web", 1, 30);
}

#[test]
fn a_parallel_set_creates_and_removes_all_its_pods_at_once() {
    let agent = Agent::start();
    let mut s = set("burst", 0, false, false);
    s["spec"]["podManagementPolicy"] = json!("Parallel");
    apply(&agent, &s);
    agent.ok(&["scale", "sts", "burst", "--replicas", "5"]);
    // None becomes Ready (no /tmp/ready), yet all five are made.
    let pods = watch_until(&agent, "burst", 60, "five pods", |_| {}, |p| p.len() == 5);
    assert!(pods.values().all(|p| !p.ready));
    agent.ok(&["scale", "sts", "burst", "--replicas", "0"]);
    watch_until(&agent, "burst", 60, "no pods", |_| {}, |p| p.is_empty());
}

#[test]
fn data_of_a_pod_survives_pod_deletion_set_deletion_and_scaling() {
    let agent = Agent::start();
    let web = set("web", 3, true, true);
    apply(&agent, &web);
    wait_for_set(&agent, "web", 3, 60);
    exec(&agent, "web-1", "echo precious > /data/mine");
    let claims = agent.json(&["get", "pvc"]);
    let claim_uid = |claims: &Value, name: &str| {
        claims["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["metadata"]["name"] == name)
            .map(|c| c["metadata"]["uid"].clone())
    };
    let uid_before = claim_uid(&claims, "data-web-1").expect("claim data-web-1");

    // 1. The pod is deleted: it comes back with the same name and the same data.
    let old = agent.pod("web-1").unwrap()["metadata"]["uid"].clone();
    agent.ok(&["delete", "pod", "web-1"]);
    agent.wait_for("web-1 to come back", 60, || {
        agent
            .pod("web-1")
            .filter(|p| p["metadata"]["uid"] != old && condition(p, "Ready"))
    });
    assert_eq!(exec(&agent, "web-1", "cat /data/mine").trim(), "precious");

    // 2. The set is deleted and applied again.
    agent.ok(&["delete", "sts", "web"]);
    agent.wait_for("the set to be gone", 60, || {
        (!agent.berth(&["get", "sts", "web"]).status.success()).then_some(())
    });
    assert!(pods_of(&agent, "web").is_empty());
    assert_eq!(
        claim_uid(&agent.json(&["get", "pvc"]), "data-web-1"),
        Some(uid_before.clone()),
        "claims are retained"
    );
    apply(&agent, &web);
    wait_for_set(&agent, "web", 3, 60);
    assert_eq!(exec(&agent, "web-1", "cat /data/mine").trim(), "precious");

    // 3. Scale 3 -> 1 -> 3.
    agent.ok(&["scale", "sts", "web", "--replicas", "1"]);
    wait_for_set(&agent, "web", 1, 60);
    assert_eq!(
        claim_uid(&agent.json(&["get", "pvc"]), "data-web-1"),
        Some(uid_before.clone())
    );
    agent.ok(&["scale", "sts", "web", "--replicas", "3"]);
    wait_for_set(&agent, "web", 3, 60);
    assert_eq!(exec(&agent, "web-1", "cat /data/mine").trim(), "precious");
    // Three starts of web-1 are recorded in its own claim, none of another pod.
    let starts = exec(&agent, "web-1", "cat /data/starts");
    assert_eq!(starts.lines().count(), 4, "{starts}");
    assert!(starts.lines().all(|l| l.starts_with("web-1 ")), "{starts}");
    let dir = agent.data_dir().join("volumes/claims/data-web-1");
    assert_eq!(
        std::fs::read_to_string(dir.join("mine")).unwrap().trim(),
        "precious"
    );
}

#[test]
fn claims_are_bound_on_the_node_and_shown_with_size_and_usage() {
    let agent = Agent::start();
    apply(&agent, &set("web", 1, true, true));
    wait_for_set(&agent, "web", 1, 60);
    exec(
        &agent,
        "web-0",
        "dd if=/dev/zero of=/data/blob bs=1024 count=2048 2>/dev/null",
    );
    let claim = agent.wait_for("the claim to be Bound with its usage", 30, || {
        let c = agent.json(&["get", "pvc", "data-web-0"]);
        let used: u64 = c
            .pointer("/metadata/annotations/berth.io~1used-bytes")
            .and_then(Value::as_str)
            .and_then(|u| u.parse().ok())
            .unwrap_or(0);
        (c["status"]["phase"] == "Bound" && used >= 2 << 20).then_some(c)
    });
    assert_eq!(claim["status"]["capacity"]["storage"], "64Mi");
    assert_eq!(
        claim["metadata"]["annotations"]["volume.kubernetes.io/selected-node"],
        agent.name.as_str()
    );
    let table = agent.ok(&["get", "pvc"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "STATUS",
            "VOLUME",
            "CAPACITY",
            "ACCESS",
            "MODES",
            "STORAGECLASS",
            "NODE",
            "USED",
            "AGE"
        ]
    );
    let describe = agent.ok(&["describe", "pvc", "data-web-0"]);
    assert!(
        describe.contains("Status:") && describe.contains("Bound"),
        "{describe}"
    );
    assert!(
        describe.contains(&format!("Node:          {}", agent.name))
            || describe.contains(&agent.name),
        "{describe}"
    );
    let limit = describe
        .lines()
        .find(|l| l.starts_with("Size Limit:"))
        .expect("a Size Limit line")
        .to_string();
    assert!(
        limit.contains("enforced"),
        "describe says whether the size is enforced: {limit}"
    );
    assert!(
        describe.contains("Used By:") && describe.contains("web-0"),
        "{describe}"
    );
}

#[test]
fn a_failed_pod_is_re_created_with_the_same_name_and_claim() {
    let agent = Agent::start();
    apply(&agent, &set("web", 2, true, true));
    wait_for_set(&agent, "web", 2, 60);
    exec(&agent, "web-1", "echo before > /data/mark");
    let old = agent.pod("web-1").unwrap();
    // Make the pod fail: an active deadline in the past ends it (Failed, DeadlineExceeded).
    let mut failing = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1"}, "spec": {"activeDeadlineSeconds": 1}});
    failing["metadata"]["namespace"] = json!("default");
    agent.apply(&failing.to_string());
    let new = agent.wait_for("web-1 to be replaced", 60, || {
        agent
            .pod("web-1")
            .filter(|p| p["metadata"]["uid"] != old["metadata"]["uid"] && condition(p, "Ready"))
    });
    assert!(new["spec"].get("activeDeadlineSeconds").is_none());
    assert_eq!(
        exec(&agent, "web-1", "cat /data/mark").trim(),
        "before",
        "the same claim"
    );
    let events = agent.ok(&["get", "events"]);
    assert!(events.contains("RecreatingFailedPod"), "{events}");
}

/// Changes the set's template (an environment variable), as `kubectl set env` would.
fn change_template(agent: &Agent, name: &str, value: &str) {
    let mut s = sts(agent, name);
    s["spec"]["template"]["spec"]["containers"][0]["env"] =
        json!([{"name": "VERSION", "value": value}]);
    strip(&mut s);
    apply(agent, &s);
}

fn strip(s: &mut Value) {
    s.as_object_mut().unwrap().remove("status");
    for key in [
        "resourceVersion",
        "uid",
        "creationTimestamp",
        "generation",
        "managedFields",
        "finalizers",
    ] {
        s["metadata"].as_object_mut().unwrap().remove(key);
    }
}

#[test]
fn a_rolling_update_goes_from_the_highest_ordinal_down_and_stops_at_the_partition() {
    let agent = Agent::start();
    let mut s = set("web", 4, true, false);
    s["spec"]["updateStrategy"] =
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 2}});
    apply(&agent, &s);
    let before = wait_for_set(&agent, "web", 4, 60);
    let old_revision = before["status"]["currentRevision"]
        .as_str()
        .unwrap()
        .to_string();
    let old_pods = pods_of(&agent, "web");
    change_template(&agent, "web", "2");
    let mut updated_order: Vec<String> = Vec::new();
    let new_revision = agent.wait_for("a new update revision", 30, || {
        let r = sts(&agent, "web")["status"]["updateRevision"]
            .as_str()
            .unwrap_or("")
            .to_string();
        (r != old_revision).then_some(r)
    });
    watch_until(
        &agent,
        "web",
        90,
        "web-3 and web-2 to be updated",
        |pods| {
            let not_ready =
                pods.values().filter(|p| !p.ready || p.terminating).count() + 4 - pods.len().min(4);
            assert!(not_ready <= 1, "more than one pod unavailable: {pods:#?}");
            for (name, p) in pods {
                if p.revision == new_revision && !updated_order.contains(name) {
                    updated_order.push(name.clone());
                }
            }
        },
        |pods| {
            ["web-3", "web-2"].iter().all(|n| {
                pods.get(*n)
                    .is_some_and(|p| p.revision == new_revision && p.ready)
            })
        },
    );
    assert_eq!(updated_order, vec!["web-3", "web-2"]);
    std::thread::sleep(Duration::from_secs(2));
    let pods = pods_of(&agent, "web");
    for n in ["web-0", "web-1"] {
        assert_eq!(
            pods[n].uid, old_pods[n].uid,
            "{n} is below the partition and stays"
        );
        assert_eq!(pods[n].revision, old_revision);
    }
    let status = agent.ok(&["rollout", "status", "sts/web", "--timeout", "30s"]);
    assert!(
        status.contains("partitioned roll out complete: 2 new pods have been updated"),
        "{status}"
    );

    // Lowering the partition finishes the rollout, web-1 before web-0.
    let mut s = sts(&agent, "web");
    s["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = json!(0);
    strip(&mut s);
    apply(&agent, &s);
    watch_until(
        &agent,
        "web",
        90,
        "every pod to be updated",
        |pods| {
            for (name, p) in pods {
                if p.revision == new_revision && !updated_order.contains(name) {
                    updated_order.push(name.clone());
                }
            }
        },
        |pods| pods.len() == 4 && pods.values().all(|p| p.revision == new_revision && p.ready),
    );
    assert_eq!(updated_order, vec!["web-3", "web-2", "web-1", "web-0"]);
    let done = wait_for_set(&agent, "web", 4, 30);
    assert_eq!(done["status"]["currentRevision"], new_revision.as_str());
}

#[test]
fn set_image_rolls_out_and_rolling_back_reuses_the_old_revision() {
    let agent = Agent::start();
    let second_image = "berth.local/busybox:2";
    agent.ok(&[
        "image",
        "import",
        common::test_image().to_str().unwrap(),
        "--name",
        second_image,
    ]);
    apply(&agent, &set("web", 2, true, false));
    let first = wait_for_set(&agent, "web", 2, 60)["status"]["currentRevision"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        agent
            .ok(&["set", "image", "sts/web", &format!("main={second_image}")])
            .contains("image updated")
    );
    let second = agent.wait_for("the second revision to roll out", 60, || {
        let s = sts(&agent, "web");
        let r = s["status"]["currentRevision"]
            .as_str()
            .unwrap_or("")
            .to_string();
        (r != first && s["status"]["readyReplicas"] == 2 && s["status"]["updatedReplicas"] == 2)
            .then_some(r)
    });
    let pod = agent.pod("web-0").unwrap();
    assert_eq!(pod["spec"]["containers"][0]["image"], second_image);
    let history = agent.ok(&["rollout", "history", "sts/web"]);
    assert_eq!(history.lines().skip(2).count(), 2, "{history}");
    let unknown = agent.fails(&["set", "image", "sts/web", "nosuch=x"]);
    assert!(
        unknown.contains("unable to find container named \"nosuch\""),
        "{unknown}"
    );

    assert!(
        agent
            .ok(&["rollout", "undo", "sts/web"])
            .contains("rolled back")
    );
    let back = agent.wait_for("the rollback", 60, || {
        let s = sts(&agent, "web");
        (s["status"]["currentRevision"] == first.as_str()
            && s["status"]["updatedReplicas"] == 2
            && s["status"]["readyReplicas"] == 2)
            .then_some(s)
    });
    assert_eq!(
        back["status"]["updateRevision"],
        first.as_str(),
        "the first revision is reused, not a new one"
    );
    assert!(pods_of(&agent, "web").values().all(|p| p.revision == first));
    assert_eq!(
        agent.pod("web-0").unwrap()["spec"]["containers"][0]["image"],
        IMAGE
    );
    // Still two revisions; the first now carries number 3.
    let history = agent.ok(&["rollout", "history", "sts/web"]);
    let numbers: Vec<&str> = history
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(numbers, vec!["2", "3"], "{history}");
    let revisions = agent.json(&["get", "controllerrevisions"]);
    let by_name: BTreeMap<String, i64> = revisions["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metadata"]["name"].as_str().unwrap().to_string(),
                r["revision"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(by_name.get(&first), Some(&3));
    assert_eq!(by_name.get(&second), Some(&2));
    let undo_again = agent.ok(&["rollout", "undo", "sts/web", "--to-revision", "3"]);
    assert!(undo_again.contains("skipped rollback"), "{undo_again}");
    let shown = agent.ok(&["rollout", "history", "sts/web", "--revision", "2"]);
    assert!(shown.contains(second_image), "{shown}");
}

#[test]
fn on_delete_replaces_a_pod_only_when_it_is_deleted() {
    let agent = Agent::start();
    let mut s = set("web", 2, true, false);
    s["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
    apply(&agent, &s);
    let old_revision = wait_for_set(&agent, "web", 2, 60)["status"]["currentRevision"]
        .as_str()
        .unwrap()
        .to_string();
    let before = pods_of(&agent, "web");
    change_template(&agent, "web", "2");
    let new_revision = agent.wait_for("a new update revision", 30, || {
        let r = sts(&agent, "web")["status"]["updateRevision"]
            .as_str()
            .unwrap_or("")
            .to_string();
        (r != old_revision).then_some(r)
    });
    std::thread::sleep(Duration::from_secs(3));
    let pods = pods_of(&agent, "web");
    for n in ["web-0", "web-1"] {
        assert_eq!(pods[n].uid, before[n].uid, "OnDelete leaves {n} alone");
    }
    agent.ok(&["delete", "pod", "web-1"]);
    let pods = watch_until(
        &agent,
        "web",
        60,
        "web-1 to come back updated",
        |_| {},
        |p| {
            p.get("web-1")
                .is_some_and(|p| p.revision == new_revision && p.ready)
        },
    );
    assert_eq!(pods["web-0"].revision, old_revision);
    assert_eq!(pods["web-0"].uid, before["web-0"].uid);
}

#[test]
fn when_scaled_delete_removes_only_the_condemned_claims() {
    let agent = Agent::start();
    let mut s = set("web", 3, true, true);
    s["spec"]["persistentVolumeClaimRetentionPolicy"] =
        json!({"whenDeleted": "Retain", "whenScaled": "Delete"});
    apply(&agent, &s);
    wait_for_set(&agent, "web", 3, 60);
    let claims_dir = agent.data_dir().join("volumes/claims");
    agent.wait_for("three claim directories", 30, || {
        ["data-web-0", "data-web-1", "data-web-2"]
            .iter()
            .all(|c| claims_dir.join(c).is_dir())
            .then_some(())
    });
    agent.ok(&["scale", "sts", "web", "--replicas", "1"]);
    wait_for_set(&agent, "web", 1, 60);
    let remaining = agent.wait_for("the condemned claims to go", 60, || {
        let claims = agent.json(&["get", "pvc"]);
        let names: BTreeSet<String> = claims["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        (names.len() == 1).then_some(names)
    });
    assert_eq!(remaining, BTreeSet::from(["data-web-0".to_string()]));
    agent.wait_for("their directories to go", 30, || {
        (!claims_dir.join("data-web-1").exists() && !claims_dir.join("data-web-2").exists())
            .then_some(())
    });
    assert!(
        claims_dir.join("data-web-0").is_dir(),
        "the claim in range stays"
    );
}

#[test]
fn a_rollout_stuck_on_a_pod_that_never_becomes_ready_recovers_when_rolled_back() {
    let agent = Agent::start();
    apply(&agent, &set("web", 3, true, false));
    let good = wait_for_set(&agent, "web", 3, 60)["status"]["currentRevision"]
        .as_str()
        .unwrap()
        .to_string();
    // A bad template: the container never creates /tmp/ready.
    let mut s = sts(&agent, "web");
    s["spec"]["template"]["spec"]["containers"][0] = container(false, false);
    strip(&mut s);
    apply(&agent, &s);
    let bad = agent.wait_for("the bad revision", 30, || {
        let r = sts(&agent, "web")["status"]["updateRevision"]
            .as_str()
            .unwrap_or("")
            .to_string();
        (r != good).then_some(r)
    });
    watch_until(
        &agent,
        "web",
        60,
        "web-2 to run the bad revision",
        |_| {},
        |p| {
            p.get("web-2")
                .is_some_and(|p| p.revision == bad && p.phase == "Running")
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    let pods = pods_of(&agent, "web");
    assert!(!pods["web-2"].ready);
    assert_eq!(
        pods["web-1"].revision, good,
        "the rollout halts at the stuck pod"
    );
    let stuck_uid = pods["web-2"].uid.clone();
    // Roll back; nobody deletes web-2.
    agent.ok(&["rollout", "undo", "sts/web"]);
    let pods = watch_until(
        &agent,
        "web",
        60,
        "web-2 to be replaced at the good revision",
        |_| {},
        |p| {
            p.get("web-2")
                .is_some_and(|p| p.revision == good && p.ready && p.uid != stuck_uid)
        },
    );
    assert_eq!(pods.len(), 3);
    wait_for_set(&agent, "web", 3, 60);
    let events = agent.ok(&["get", "events"]);
    assert!(events.contains("RecreatingStuckPod"), "{events}");
}

/// The kill can land anywhere in a replacement's start: before its shim runs, while the shim
/// starts the container, or after the container runs but before the agent published it (an
/// adopted run the agent never published used to stay `started: false`, never Ready).
#[test]
fn an_agent_killed_during_a_rolling_update_finishes_it_after_restart() {
    let mut agent = Agent::start();
    apply(&agent, &set("web", 4, true, true));
    wait_for_set(&agent, "web", 4, 60);
    for i in 0..4 {
        exec(&agent, &format!("web-{i}"), &format!("echo {i} > /data/id"));
    }
    let claims_before: BTreeMap<String, String> = agent.json(&["get", "pvc"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["metadata"]["name"].as_str().unwrap().to_string(),
                c["metadata"]["uid"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let old = sts(&agent, "web")["status"]["currentRevision"]
        .as_str()
        .unwrap()
        .to_string();
    change_template(&agent, "web", "2");
    // Kill the agent once the update is under way (web-3 replaced), restart it.
    watch_until(
        &agent,
        "web",
        60,
        "the update to start",
        |_| {},
        |p| p.get("web-3").is_none_or(|p| p.revision != old),
    );
    agent.kill();
    std::thread::sleep(Duration::from_millis(500));
    agent.restart();
    let done = wait_for_set(&agent, "web", 4, 120);
    let new = done["status"]["updateRevision"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new, old);
    let pods = pods_of(&agent, "web");
    assert_eq!(names(&pods), vec!["web-0", "web-1", "web-2", "web-3"]);
    assert!(
        pods.values()
            .all(|p| p.revision == new && p.ready && !p.terminating)
    );
    let claims_after: BTreeMap<String, String> = agent.json(&["get", "pvc"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["metadata"]["name"].as_str().unwrap().to_string(),
                c["metadata"]["uid"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        claims_after, claims_before,
        "the same claims, none added or lost"
    );
    for i in 0..4 {
        assert_eq!(
            exec(&agent, &format!("web-{i}"), "cat /data/id").trim(),
            i.to_string(),
            "web-{i} kept its own data"
        );
    }
}

#[test]
fn deleting_a_set_stops_its_pods_in_reverse_order_each_gone_before_the_next() {
    let agent = Agent::start();
    apply(&agent, &set("web", 3, true, false));
    wait_for_set(&agent, "web", 3, 60);
    agent.ok(&["delete", "sts", "web"]);
    let mut gone: Vec<String> = Vec::new();
    watch_until(
        &agent,
        "web",
        60,
        "every pod to stop",
        |pods| {
            assert!(
                pods.values().filter(|p| p.terminating).count() <= 1,
                "two pods stop at once: {pods:#?}"
            );
            for i in (0..3).rev() {
                let name = format!("web-{i}");
                if pods.get(&name).is_none_or(|p| p.terminating) && !gone.contains(&name) {
                    for j in i + 1..3 {
                        assert!(
                            !pods.contains_key(&format!("web-{j}")),
                            "web-{i} stops while web-{j} exists: {pods:#?}"
                        );
                    }
                    gone.push(name);
                }
            }
        },
        |pods| pods.is_empty(),
    );
    assert_eq!(gone, vec!["web-2", "web-1", "web-0"]);
    agent.wait_for("the set to be gone", 30, || {
        (!agent.berth(&["get", "sts", "web"]).status.success()).then_some(())
    });
}

#[test]
fn the_management_policy_and_claim_size_may_change_on_a_live_set() {
    let agent = Agent::start();
    apply(&agent, &set("web", 1, true, true));
    wait_for_set(&agent, "web", 1, 60);
    let mut s = sts(&agent, "web");
    s["spec"]["podManagementPolicy"] = json!("Parallel");
    s["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] =
        json!("128Mi");
    strip(&mut s);
    apply(&agent, &s);
    agent.wait_for("the claim to grow", 30, || {
        let c = agent.json(&["get", "pvc", "data-web-0"]);
        (c["spec"]["resources"]["requests"]["storage"] == "128Mi"
            && c["status"]["capacity"]["storage"] == "128Mi")
            .then_some(())
    });
    // Shrinking is refused, naming the field.
    s["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] =
        json!("32Mi");
    let out = agent.berth_stdin(&["apply", "-f", "-"], &s.to_string());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spec.volumeClaimTemplates[0].spec.resources.requests[storage]"),
        "{err}"
    );
}

#[test]
fn bad_statefulsets_are_rejected_with_the_field_named_and_the_running_set_untouched() {
    let agent = Agent::start();
    apply(&agent, &set("web", 2, true, false));
    let before = wait_for_set(&agent, "web", 2, 60);
    let pods_before = pods_of(&agent, "web");
    let rejected = |s: &Value, expected: &str| {
        let out = agent.berth_stdin(&["apply", "-f", "-"], &s.to_string());
        assert!(!out.status.success(), "accepted: {s}");
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            err.contains(expected),
            "the error names {expected:?}: {err}"
        );
    };
    let live = || {
        let mut s = sts(&agent, "web");
        strip(&mut s);
        s
    };

    let mut s = live();
    s["spec"]["selector"]["matchLabels"]["app"] = json!("other");
    rejected(&s, "spec.selector");
    let mut s = live();
    s["spec"]["serviceName"] = json!("elsewhere");
    rejected(&s, "Forbidden");
    let mut s = live();
    s["spec"]["replicas"] = json!(-1);
    rejected(&s, "spec.replicas");
    let mut s = live();
    s["spec"]["updateStrategy"] =
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 5}});
    rejected(&s, "spec.updateStrategy.rollingUpdate.partition");
    let mut s = set("fresh", 1, true, true);
    s["spec"]["volumeClaimTemplates"][0]["metadata"] = json!({});
    rejected(&s, "spec.volumeClaimTemplates[0].metadata.name");
    let mut s = set("fresh", 1, true, false);
    s["spec"]["template"]["metadata"]["labels"] = json!({"app": "different"});
    rejected(&s, "`selector` does not match template `labels`");
    let err = agent.fails(&["scale", "sts", "web", "--replicas", "-1"]);
    assert!(err.contains("replicas"), "{err}");

    let after = sts(&agent, "web");
    assert_eq!(
        after["metadata"]["generation"], before["metadata"]["generation"],
        "the running set is untouched"
    );
    assert_eq!(after["spec"], before["spec"]);
    assert!(
        agent.berth(&["get", "sts", "fresh"]).status.code() != Some(0),
        "nothing half-created"
    );
    std::thread::sleep(Duration::from_secs(1));
    let pods_after = pods_of(&agent, "web");
    assert_eq!(
        pods_after
            .iter()
            .map(|(n, p)| (n.clone(), p.uid.clone()))
            .collect::<Vec<_>>(),
        pods_before
            .iter()
            .map(|(n, p)| (n.clone(), p.uid.clone()))
            .collect::<Vec<_>>()
    );
}

/// A pod's assignment epoch (the annotation the scheduler writes with the binding).
fn assignment_epoch(pod: &Value) -> u64 {
    pod.pointer("/metadata/annotations/berth.io~1assignment-epoch")
        .and_then(Value::as_str)
        .and_then(|e| e.parse().ok())
        .unwrap_or_else(|| panic!("no assignment epoch on {pod}"))
}

/// The records of a claim directory's owner file, as (epoch, pod, uid).
fn owners(path: &std::path::Path) -> Vec<(u64, String, String)> {
    let file: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    file["owners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["epoch"].as_u64().unwrap(),
                o["pod"].as_str().unwrap().to_string(),
                o["uid"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Every file of a directory with its contents.
fn contents(dir: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_stale_copy_of_a_pod_is_not_started_over_a_claim_a_newer_assignment_used() {
    let agent = Agent::start();
    apply(&agent, &set("db", 1, true, true));
    wait_for_set(&agent, "db", 1, 60);
    exec(&agent, "db-0", "echo precious > /data/mine");
    let claims = agent.data_dir().join("volumes/claims");
    let dir = claims.join("data-db-0");
    let owner_file = claims.join("data-db-0.owner");

    // The first pod's epoch is recorded beside the claim, not inside it.
    let first = agent.pod("db-0").unwrap();
    let first_epoch = assignment_epoch(&first);
    let first_uid = first["metadata"]["uid"].as_str().unwrap().to_string();
    assert_eq!(
        owners(&owner_file),
        vec![(first_epoch, "default/db-0".to_string(), first_uid.clone())]
    );
    assert_eq!(
        contents(&dir).into_keys().collect::<Vec<_>>(),
        ["mine", "starts"],
        "the claim directory holds only what the container wrote"
    );

    // A normal replacement: the re-created pod is bound with a larger epoch and starts.
    agent.ok(&["delete", "pod", "db-0"]);
    let second = agent.wait_for("db-0 to come back", 60, || {
        agent
            .pod("db-0")
            .filter(|p| p["metadata"]["uid"] != first_uid.as_str() && condition(p, "Ready"))
    });
    let second_epoch = assignment_epoch(&second);
    assert!(second_epoch > first_epoch, "{second_epoch} > {first_epoch}");
    assert_eq!(
        owners(&owner_file),
        vec![(
            second_epoch,
            "default/db-0".to_string(),
            second["metadata"]["uid"].as_str().unwrap().to_string()
        )]
    );
    assert_eq!(exec(&agent, "db-0", "cat /data/mine").trim(), "precious");

    // The set is scaled to 0 (the claim stays) and a newer assignment of db-0 elsewhere used
    // the data meanwhile: its owner file says so.
    agent.ok(&["scale", "sts", "db", "--replicas", "0"]);
    agent.wait_for_pod_gone("db-0", 60);
    let newer = second_epoch + 1_000_000;
    let newer_owner =
        json!({"owners": [{"epoch": newer, "pod": "default/db-0", "uid": "a-newer-copy"}]});
    std::fs::write(&owner_file, newer_owner.to_string()).unwrap();
    let data_before = contents(&dir);

    // Scaled back up, the copy here is not started, and says why.
    agent.ok(&["scale", "sts", "db", "--replicas", "1"]);
    let refused = agent.wait_for("db-0 to be refused as stale", 60, || {
        agent
            .pod("db-0")
            .filter(|p| p["status"]["reason"] == "StaleAssignment")
    });
    assert!(assignment_epoch(&refused) < newer);
    let message = refused["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("newer assignment of default/db-0")
            && message.contains(&format!("assignment epoch {newer}"))
            && message.contains(&format!("remove {}", owner_file.display())),
        "{message}"
    );
    assert_eq!(refused["status"]["phase"], "Pending");
    assert_eq!(
        refused["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
        "StaleAssignment"
    );
    let table = agent.ok(&["get", "pod", "db-0"]);
    assert!(table.contains("StaleAssignment"), "{table}");
    let describe = agent.ok(&["describe", "pod", "db-0"]);
    assert!(
        describe.contains("StaleAssignment") && describe.contains("is stale and is not started"),
        "{describe}"
    );
    // Past a re-check, it is still refused, nothing ran, and it was reported once.
    std::thread::sleep(Duration::from_secs(12));
    let still = agent.pod("db-0").unwrap();
    assert_eq!(still["status"]["reason"], "StaleAssignment");
    assert!(
        still["status"]["containerStatuses"][0]["state"]
            .get("running")
            .is_none()
    );
    assert_eq!(contents(&dir), data_before, "the claim data is untouched");
    assert_eq!(
        owners(&owner_file),
        vec![(
            newer,
            "default/db-0".to_string(),
            "a-newer-copy".to_string()
        )]
    );
    let events = agent.ok(&["get", "events"]);
    assert!(
        events.contains("Warning") && events.contains("StaleAssignment"),
        "{events}"
    );
    let log = agent.log();
    let warnings = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("StaleAssignment"))
        .count();
    assert_eq!(warnings, 1, "logged once, not on every re-check:\n{log}");

    // An owner file that cannot be read as one is never overwritten: the pod still waits,
    // and says which file to look at.
    std::fs::write(&owner_file, b"{garbage").unwrap();
    let corrupt = agent.wait_for("db-0 to report the invalid owner file", 60, || {
        agent
            .pod("db-0")
            .filter(|p| p["status"]["reason"] == "ClaimOwnerError")
    });
    let message = corrupt["status"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "the owner file {} is not valid",
            owner_file.display()
        )) && message.contains("remove"),
        "{message}"
    );
    assert_eq!(std::fs::read(&owner_file).unwrap(), b"{garbage");
    assert_eq!(contents(&dir), data_before, "the claim data is untouched");

    // The documented way out: after checking, the owner file is removed and the pod starts.
    std::fs::remove_file(&owner_file).unwrap();
    let started = agent.wait_for_pod_ready("db-0", 60);
    assert!(started["status"].get("reason").is_none(), "{started}");
    assert_eq!(exec(&agent, "db-0", "cat /data/mine").trim(), "precious");
    assert_eq!(
        owners(&owner_file),
        vec![(
            assignment_epoch(&started),
            "default/db-0".to_string(),
            started["metadata"]["uid"].as_str().unwrap().to_string()
        )]
    );
}
