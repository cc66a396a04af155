//! End to end: pods whose images come from a registry (Debian's `docker-registry` on
//! 127.0.0.1, started by the test), pull secrets, image pull failures and back-off, and the
//! `berth image pull|prune` CLI. Needs root, docker-registry, skopeo, umoci and htpasswd.

mod common;
#[path = "../runtime/tests/registry_support/mod.rs"]
mod registry_support;

use base64::Engine as _;
use common::{Agent, IMAGE, test_image};
use registry_support::{Registry, have_registry_tools};
use serde_json::Value;

fn pod_yaml(name: &str, image: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n{extra_spec}  containers:\n  - name: main\n    image: {image}\n    imagePullPolicy: IfNotPresent\n    command: [\"sh\", \"-c\", \"echo from-registry; sleep 3600\"]\n"
    )
}

fn waiting_reason(pod: &Value) -> Option<String> {
    pod.pointer("/status/containerStatuses/0/state/waiting/reason")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Events of a pod, as `reason: message` lines.
fn events(agent: &Agent, pod: &str) -> Vec<String> {
    let list = agent.json(&["get", "events"]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e.pointer("/involvedObject/name").and_then(Value::as_str) == Some(pod))
        .map(|e| {
            format!(
                "{}: {}",
                e["reason"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[test]
fn a_pod_runs_an_image_pulled_from_a_registry_and_reports_pulling_and_pulled() {
    if !have_registry_tools() {
        return;
    }
    let registry = Registry::start("e2e_pod_from_registry");
    registry.push(&test_image(), IMAGE, "e2e/busybox:1", "v2s2", &[]);
    let mut agent = Agent::start();
    agent.reach_host_port(registry.port);
    let image = format!("{}/e2e/busybox:1", registry.host());
    agent.apply(&pod_yaml("pulled", &image, ""));
    agent.wait_for_pod_ready("pulled", 60);
    assert!(agent.ok(&["logs", "pulled"]).contains("from-registry"));
    let events = events(&agent, "pulled");
    assert!(
        events
            .iter()
            .any(|e| e == &format!("Pulling: Pulling image {image:?}")),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.starts_with(&format!("Pulled: Successfully pulled image {image:?} in "))),
        "{events:?}"
    );

    // The CLI: the image is listed, a second pull is a no-op, prune keeps what is used.
    assert!(agent.ok(&["image", "ls"]).contains(&image));
    let out = agent.ok(&["image", "pull", &image]);
    assert!(out.contains("is up to date"), "{out}");
    let out = agent.ok(&["image", "prune"]);
    assert!(out.starts_with("deleted "), "{out}");
    assert!(agent.ok(&["image", "ls"]).contains(&image));
}

#[test]
fn a_missing_tag_is_err_image_pull_then_image_pull_back_off_with_the_registry_reason() {
    if !have_registry_tools() {
        return;
    }
    let registry = Registry::start("e2e_missing_tag");
    registry.push(&test_image(), IMAGE, "e2e/busybox:1", "oci", &[]);
    let mut agent = Agent::start();
    agent.reach_host_port(registry.port);
    let image = format!("{}/e2e/busybox:nope", registry.host());
    agent.apply(&pod_yaml("missing", &image, ""));
    let pod = agent.wait_for("ErrImagePull", 30, || {
        agent
            .pod("missing")
            .filter(|p| waiting_reason(p).as_deref() == Some("ErrImagePull"))
    });
    let message = pod
        .pointer("/status/containerStatuses/0/state/waiting/message")
        .and_then(Value::as_str)
        .unwrap_or("");
    assert!(
        message.contains("manifest nope not found") && message.contains("manifest unknown"),
        "{message}"
    );
    agent.wait_for("ImagePullBackOff", 60, || {
        agent
            .pod("missing")
            .filter(|p| waiting_reason(p).as_deref() == Some("ImagePullBackOff"))
    });
    let events = events(&agent, "missing");
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("Failed: Failed to pull image")),
        "{events:?}"
    );

    // The CLI names the reference and the cause, and exits non-zero.
    let err = agent.fails(&["image", "pull", &image]);
    assert!(
        err.contains(&format!("cannot pull {image}")) && err.contains("manifest unknown"),
        "{err}"
    );
}

#[test]
fn image_pull_secrets_open_a_registry_that_requires_them() {
    if !have_registry_tools() {
        return;
    }
    let registry = Registry::start_with_auth("e2e_pull_secret", "alice", "s3cret");
    registry.push(&test_image(), IMAGE, "private/busybox:1", "oci", &[]);
    let mut agent = Agent::start();
    agent.reach_host_port(registry.port);
    let image = format!("{}/private/busybox:1", registry.host());
    // Without the secret: refused, with the registry's reason.
    agent.apply(&pod_yaml("refused", &image, ""));
    let pod = agent.wait_for("ErrImagePull", 30, || {
        agent
            .pod("refused")
            .filter(|p| waiting_reason(p).is_some_and(|r| r.contains("ImagePull")))
    });
    let message = pod
        .pointer("/status/containerStatuses/0/state/waiting/message")
        .and_then(Value::as_str)
        .unwrap_or("");
    assert!(
        message.contains("unauthorized") || message.is_empty(),
        "{message}"
    );
    // With it: runs.
    let config = format!(
        r#"{{"auths": {{"{}": {{"auth": "{}"}}}}}}"#,
        registry.host(),
        base64::engine::general_purpose::STANDARD.encode("alice:s3cret")
    );
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: regcred}}\ntype: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {}\n",
        base64::engine::general_purpose::STANDARD.encode(config)
    );
    agent.apply(&secret);
    agent.apply(&pod_yaml(
        "allowed",
        &image,
        "  imagePullSecrets: [{name: regcred}]\n",
    ));
    agent.wait_for_pod_ready("allowed", 60);
}
