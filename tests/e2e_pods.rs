//! Pods end to end on one host, black box through the CLI: real agent, real containers.

mod common;

use common::{Agent, IMAGE, condition};
use serde_json::Value;

fn pod_yaml(name: &str, extra_container: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    app: {name}\nspec:\n  terminationGracePeriodSeconds: 5\n{extra_spec}  containers:\n  - name: main\n    image: {IMAGE}\n{extra_container}"
    )
}

fn container_status(pod: &Value) -> Value {
    pod.pointer("/status/containerStatuses/0")
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn a_pod_with_an_exec_readiness_probe_becomes_ready_and_serves_logs_and_exec() {
    let agent = Agent::start();
    let yaml = pod_yaml(
        "web",
        "    command: [\"sh\", \"-c\", \"echo started as $(hostname); touch /tmp/ready; exec sleep 3600\"]\n    readinessProbe:\n      exec:\n        command: [\"cat\", \"/tmp/ready\"]\n      periodSeconds: 1\n",
        "",
    );
    assert_eq!(agent.apply(&yaml).trim(), "pod/web created");
    let pod = agent.wait_for_pod_ready("web", 30);
    assert_eq!(pod["status"]["phase"], "Running");
    assert!(condition(&pod, "ContainersReady"));
    assert_eq!(container_status(&pod)["ready"], true);

    // Table output as kubectl prints it.
    let table = agent.ok(&["get", "pods"]);
    let mut lines = table.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["web", "1/1", "Running", "0"]);

    // JSON in Kubernetes' list shape.
    let list = agent.json(&["get", "pods"]);
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"][0]["kind"], "Pod");
    assert_eq!(list["items"][0]["metadata"]["name"], "web");

    let logs = agent.wait_for("the log line", 10, || {
        let l = agent.ok(&["logs", "web"]);
        l.contains("started as web").then_some(l)
    });
    assert_eq!(logs.trim(), "started as web");

    let out = agent.ok(&[
        "exec",
        "web",
        "--",
        "sh",
        "-c",
        "echo exec in $(hostname); grep -E '^(Seccomp|NoNewPrivs):' /proc/1/status",
    ]);
    assert!(out.contains("exec in web"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "seccomp in force: {out}");
    let failed = agent.berth(&["exec", "web", "--", "sh", "-c", "exit 7"]);
    assert_eq!(
        failed.status.code(),
        Some(7),
        "exec passes the command's exit code through"
    );

    let piped = agent.berth_stdin(&["exec", "-i", "web", "--", "wc", "-c"], "12345");
    assert_eq!(String::from_utf8_lossy(&piped.stdout).trim(), "5");
}

#[test]
fn a_failing_liveness_probe_restarts_the_container() {
    let agent = Agent::start();
    let yaml = pod_yaml(
        "live",
        "    command: [\"sh\", \"-c\", \"touch /tmp/alive; sleep 2; rm /tmp/alive; exec sleep 3600\"]\n    livenessProbe:\n      exec:\n        command: [\"cat\", \"/tmp/alive\"]\n      periodSeconds: 1\n      failureThreshold: 1\n",
        "",
    );
    agent.apply(&yaml);
    let pod = agent.wait_for("restartCount 1", 40, || {
        agent.pod("live").filter(|p| {
            container_status(p)["restartCount"] == 1
                && container_status(p).pointer("/state/running").is_some()
        })
    });
    let last = &container_status(&pod)["lastState"]["terminated"];
    assert!(
        last["exitCode"].as_i64().is_some(),
        "the killed run is the last state: {pod}"
    );
    let events = agent.ok(&["get", "events"]);
    assert!(
        events.contains("Unhealthy") && events.contains("Liveness probe failed"),
        "{events}"
    );
}

#[test]
fn a_crashing_container_backs_off_in_crash_loop() {
    let agent = Agent::start();
    agent.apply(&pod_yaml(
        "crash",
        "    command: [\"sh\", \"-c\", \"echo crashing; exit 1\"]\n",
        "",
    ));
    let pod = agent.wait_for("CrashLoopBackOff", 40, || {
        agent.pod("crash").filter(|p| {
            container_status(p)
                .pointer("/state/waiting/reason")
                .and_then(Value::as_str)
                == Some("CrashLoopBackOff")
        })
    });
    let status = container_status(&pod);
    assert!(status["restartCount"].as_i64().unwrap() >= 1);
    assert_eq!(status["lastState"]["terminated"]["exitCode"], 1);
    assert!(
        status["state"]["waiting"]["message"]
            .as_str()
            .unwrap()
            .starts_with("back-off 10s restarting failed container=main pod=crash_default(")
    );
    let row = agent.ok(&["get", "pod", "crash"]);
    assert!(row.contains("CrashLoopBackOff"), "{row}");
    assert_eq!(
        agent.ok(&["logs", "crash", "--previous"]).trim(),
        "crashing"
    );
}

#[test]
fn delete_with_a_grace_period_stops_pods_cleanly_or_by_force() {
    let agent = Agent::start();
    // One traps SIGTERM and exits cleanly; one ignores it and is killed when the grace ends.
    agent.apply(&pod_yaml("polite", "    command: [\"sh\", \"-c\", \"trap 'echo bye; exit 0' TERM; while true; do sleep 0.2; done\"]\n", ""));
    agent.apply(&pod_yaml(
        "stubborn",
        "    command: [\"sh\", \"-c\", \"trap '' TERM; while true; do sleep 0.2; done\"]\n",
        "",
    ));
    agent.wait_for_pod_ready("polite", 30);
    agent.wait_for_pod_ready("stubborn", 30);

    let started = std::time::Instant::now();
    agent.ok(&["delete", "pod", "polite", "--grace-period", "30"]);
    assert!(
        started.elapsed().as_secs() < 10,
        "a pod that exits on SIGTERM is gone at once"
    );

    let started = std::time::Instant::now();
    agent.ok(&["delete", "pod", "stubborn", "--grace-period", "2"]);
    let took = started.elapsed();
    assert!(
        took.as_secs_f64() >= 1.5,
        "the grace period was given: {took:?}"
    );
    assert!(
        took.as_secs() < 15,
        "SIGKILL after the grace period: {took:?}"
    );
    assert!(agent.pod("stubborn").is_none());
}

#[test]
fn killing_the_agent_leaves_the_pod_running_with_the_same_container() {
    let mut agent = Agent::start();
    agent.apply(&pod_yaml(
        "steady",
        "    command: [\"sh\", \"-c\", \"echo up; exec sleep 3600\"]\n    readinessProbe:\n      exec:\n        command: [\"true\"]\n      periodSeconds: 1\n",
        "",
    ));
    let before = agent.wait_for_pod_ready("steady", 30);
    let id = container_status(&before)["containerID"].clone();
    let pid_before = agent.ok(&["exec", "steady", "--", "cat", "/proc/1/stat"]);

    agent.kill();
    agent.restart();

    let after = agent.wait_for_pod_ready("steady", 30);
    assert_eq!(
        container_status(&after)["containerID"],
        id,
        "the same container, adopted"
    );
    assert_eq!(container_status(&after)["restartCount"], 0, "not restarted");
    let pid_after = agent.ok(&["exec", "steady", "--", "cat", "/proc/1/stat"]);
    let start_time = |stat: &str| stat.split_whitespace().nth(21).map(str::to_string);
    assert_eq!(
        start_time(&pid_before),
        start_time(&pid_after),
        "PID 1 is the very same process"
    );
    let row = agent.ok(&["get", "pod", "steady"]);
    assert!(row.contains("Running") && row.contains("1/1"), "{row}");
    assert!(agent.log().contains("adopted a container"));
}

#[test]
fn bad_input_gets_clear_errors_and_changes_nothing() {
    let agent = Agent::start();
    let cases = [
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: x\n",
            "error parsing",
        ),
        (
            "apiVersion: v1\nkind: Frob\nmetadata: {name: x}\n",
            "no matches for kind \"Frob\" in version \"v1\"",
        ),
        (
            "apiVersion: apps/v1beta1\nkind: StatefulSet\nmetadata: {name: x}\n",
            "no matches for kind \"StatefulSet\" in version \"apps/v1beta1\"",
        ),
        (
            &format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: x}}\nspec:\n  containers:\n  - name: c\n    imagee: {IMAGE}\n"
            ),
            "unknown field \"spec.containers[0].imagee\"",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers:\n  - name: c\n",
            "Pod \"x\" is invalid: spec.containers[0].image: Required value",
        ),
    ];
    for (manifest, want) in cases {
        let out = agent.berth_stdin(&["apply", "-f", "-"], manifest);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{manifest} was accepted");
        assert!(
            stderr.contains(want),
            "for {manifest:?}\nwanted {want:?} in: {stderr}"
        );
    }
    assert!(agent.berth(&["get", "pod", "x"]).status.code() == Some(1));
    assert!(
        agent
            .fails(&["get", "pod", "x"])
            .contains("Error from server (NotFound): pods \"x\" not found")
    );

    // A pod naming a ConfigMap that does not exist waits with CreateContainerConfigError.
    agent.apply(&pod_yaml(
        "needs-config",
        "    command: [\"sleep\", \"3600\"]\n    env:\n    - name: MODE\n      valueFrom:\n        configMapKeyRef: {name: settings, key: mode}\n",
        "",
    ));
    agent.wait_for("CreateContainerConfigError", 30, || {
        agent.pod("needs-config").filter(|p| {
            container_status(p)
                .pointer("/state/waiting/reason")
                .and_then(Value::as_str)
                == Some("CreateContainerConfigError")
        })
    });
    let message =
        container_status(&agent.pod("needs-config").unwrap())["state"]["waiting"]["message"]
            .clone();
    assert_eq!(message, "configmap \"settings\" not found");
    // ...and starts once it exists.
    agent
        .apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {mode: fast}\n");
    agent.wait_for_pod_ready("needs-config", 30);
    assert_eq!(
        agent
            .ok(&["exec", "needs-config", "--", "sh", "-c", "echo $MODE"])
            .trim(),
        "fast"
    );

    // An image that is not in the store, with pull policy Never.
    agent.apply(
        &pod_yaml("no-image", "    imagePullPolicy: Never\n", "")
            .replace(IMAGE, "berth.local/missing:1"),
    );
    agent.wait_for("ErrImageNeverPull", 30, || {
        agent.pod("no-image").filter(|p| {
            container_status(p)
                .pointer("/state/waiting/reason")
                .and_then(Value::as_str)
                == Some("ErrImageNeverPull")
        })
    });
}
