//! Images on this node: what a container's image reference resolves to (by its pull
//! policy, pulling from registries when needed), and the node-level image API
//! (`/apis/node.berth.io/v1/images`) behind `berth image pull|import|ls|rm|prune`.
//!
//! Pull policies follow the kubelet: `Always` asks the registry every time (one manifest
//! request when nothing changed), `IfNotPresent` pulls only what the store lacks, `Never`
//! uses the store or fails with `ErrImageNeverPull`. With no policy, `:latest` or no tag means
//! `Always`, anything else (a tag or a digest) `IfNotPresent`. Pull secrets of type
//! `kubernetes.io/dockerconfigjson` (and the older `kubernetes.io/dockercfg`) are tried before
//! the node's registries file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine as _;
use berth_runtime::image::pull::{
    Keyring, PullError, PullProgress, Pulled, Puller, Registries, RegistriesError,
};
use berth_runtime::image::{Image, ImageStore, StoreError, reference};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::api::ApiError;
use crate::events::EventType;

/// Why an image could not be had for a container: the waiting reason and message kubelet
/// would show (`ErrImageNeverPull`, `ErrImagePull`, `InvalidImageName`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFailure {
    pub reason: &'static str,
    pub message: String,
    /// Whether trying again later can help (registry down, not authorised yet, tag not
    /// pushed yet): the kubelet then retries with back-off and shows `ImagePullBackOff`.
    /// `false` for an invalid reference, which only a spec change fixes.
    pub retry: bool,
}

/// An event reporter: (type, reason, message), recorded on the pod.
pub type Report<'a> = &'a (dyn Fn(EventType, &'static str, String) + Send + Sync);

/// What to do for a container's image, by policy and whether the store has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullDecision {
    /// Use the stored image.
    UseLocal,
    /// Pull (then use what was pulled).
    Pull,
    /// Fail with `ErrImageNeverPull`.
    NeverPull,
}

/// The kubelet's pull decision (pure).
pub fn decide(policy: &str, present: bool) -> PullDecision {
    match (policy, present) {
        ("Always", _) => PullDecision::Pull,
        ("Never", true) | ("IfNotPresent", true) => PullDecision::UseLocal,
        ("Never", false) => PullDecision::NeverPull,
        _ => PullDecision::Pull,
    }
}

/// The policy Kubernetes gives a container that sets none: `Always` for `:latest` or no
/// tag (unless a digest pins it), else `IfNotPresent`.
pub fn default_policy(image: &str) -> &'static str {
    if reference::has_digest(image) && !reference::has_explicit_tag(image) {
        return "IfNotPresent";
    }
    // The tag as written (before any `@digest`): `busybox:latest@sha256:...` is Always, as
    // Kubernetes defaults it.
    let name_and_tag = image.split_once('@').map_or(image, |(name, _)| name);
    if !reference::has_explicit_tag(image) || name_and_tag.ends_with(":latest") {
        "Always"
    } else {
        "IfNotPresent"
    }
}

/// The node's images.
#[derive(Clone)]
pub struct Images {
    store: Arc<ImageStore>,
    puller: Puller,
    /// Pulls in flight, by canonical reference, for `GET .../images/pulls`.
    pulls: Arc<Mutex<BTreeMap<String, watch::Receiver<PullProgress>>>>,
    /// Manifests handed to containers since the agent started: `prune` never removes them
    /// (a running container's layers must stay) unless an in-use source says otherwise.
    handed_out: Arc<Mutex<BTreeSet<String>>>,
    in_use: Arc<Mutex<Option<InUse>>>,
}

/// Tells which image manifests containers on this node use (digests).
pub type InUse = Arc<dyn Fn() -> Vec<berth_runtime::image::Digest> + Send + Sync>;

impl Images {
    /// The node's images with an empty registries configuration (direct pulls over HTTPS,
    /// plain HTTP for loopback registries, anonymous).
    pub fn new(store: ImageStore) -> Images {
        Images::with_registries(store, Registries::default())
    }

    /// The node's images with the registries file `path` (missing is empty); fails on a
    /// file that is not valid, naming the file, entry and problem.
    pub fn open(store: ImageStore, registries_file: &Path) -> Result<Images, RegistriesError> {
        Ok(Images::with_registries(
            store,
            Registries::load(registries_file)?,
        ))
    }

    /// The node's images with a parsed registries configuration.
    pub fn with_registries(store: ImageStore, registries: Registries) -> Images {
        Images {
            puller: Puller::new(store.clone(), registries),
            store: Arc::new(store),
            pulls: Arc::default(),
            handed_out: Arc::default(),
            in_use: Arc::default(),
        }
    }

    /// Sets the source of in-use images for `prune` (the kubelet's running containers).
    pub fn set_in_use(&self, source: InUse) {
        *self.in_use.lock().expect("in-use lock") = Some(source);
    }

    pub fn store(&self) -> &ImageStore {
        &self.store
    }

    /// The image for a container, by its `imagePullPolicy` (empty: Kubernetes' default for
    /// the reference). `pull_secrets` are the pod's imagePullSecrets (Secret objects);
    /// `report` records events on the pod: `Pulling`, `Pulled`, `Failed`,
    /// `ErrImageNeverPull`, `InspectFailed`.
    pub async fn ensure(
        &self,
        image: &str,
        policy: &str,
        pull_secrets: &[Arc<Value>],
        report: Report<'_>,
    ) -> Result<Image, ImageFailure> {
        if let Err(e) = reference::normalize(image) {
            let message = format!(
                "Failed to apply default image tag {image:?}: {}",
                error_chain(&e)
            );
            report(EventType::Warning, "InspectFailed", message.clone());
            return Err(ImageFailure {
                reason: "InvalidImageName",
                message,
                retry: false,
            });
        }
        let policy = if policy.is_empty() {
            default_policy(image)
        } else {
            policy
        };
        let local = self.resolve_local(image).await?;
        let image_found = match (decide(policy, local.is_some()), local) {
            (PullDecision::UseLocal, Some(found)) => {
                report(
                    EventType::Normal,
                    "Pulled",
                    format!("Container image {image:?} already present on machine"),
                );
                found
            }
            (PullDecision::NeverPull, _) | (PullDecision::UseLocal, None) => {
                let message =
                    format!("Container image {image:?} is not present with pull policy of Never");
                report(EventType::Warning, "ErrImageNeverPull", message.clone());
                return Err(ImageFailure {
                    reason: "ErrImageNeverPull",
                    message,
                    retry: true,
                });
            }
            (PullDecision::Pull, _) => {
                let keyring = keyring(pull_secrets, report);
                report(
                    EventType::Normal,
                    "Pulling",
                    format!("Pulling image {image:?}"),
                );
                let started = Instant::now();
                let pulled = match self.pull(image, &keyring).await {
                    Ok(pulled) => pulled,
                    Err(error) => {
                        let message =
                            format!("Failed to pull image {image:?}: {}", error_chain(&error));
                        report(EventType::Warning, "Failed", message.clone());
                        return Err(ImageFailure {
                            reason: "ErrImagePull",
                            message,
                            retry: true,
                        });
                    }
                };
                let waited = started.elapsed().as_secs_f64();
                report(
                    EventType::Normal,
                    "Pulled",
                    format!(
                        "Successfully pulled image {image:?} in {:.3}s ({waited:.3}s including waiting). Image size: {} bytes.",
                        pulled.elapsed.as_secs_f64(),
                        pulled.record.size
                    ),
                );
                let canonical = pulled
                    .record
                    .references
                    .first()
                    .cloned()
                    .unwrap_or_else(|| image.to_owned());
                match self.resolve_local(&canonical).await? {
                    Some(found) => found,
                    None => {
                        return Err(ImageFailure {
                            reason: "ErrImagePull",
                            message: format!(
                                "image {image:?} was pulled but is gone from the store (removed meanwhile?)"
                            ),
                            retry: true,
                        });
                    }
                }
            }
        };
        self.handed_out
            .lock()
            .expect("handed-out lock")
            .insert(image_found.manifest_digest.to_string());
        Ok(image_found)
    }

    /// Pulls `image` into the store, joining the progress registry for `GET .../pulls`.
    pub async fn pull(&self, image: &str, keyring: &Keyring) -> Result<Pulled, PullError> {
        let canonical = reference::canonical(image)?;
        let (progress, receiver) = watch::channel(PullProgress::default());
        self.pulls
            .lock()
            .expect("pulls lock")
            .insert(canonical.clone(), receiver);
        let result = self.puller.pull(image, keyring, &progress).await;
        let mut pulls = self.pulls.lock().expect("pulls lock");
        // Another pull of the same reference may have replaced ours meanwhile.
        if pulls
            .get(&canonical)
            .is_some_and(|r| r.same_channel(&progress.subscribe()))
        {
            pulls.remove(&canonical);
        }
        result
    }

    async fn resolve_local(&self, image: &str) -> Result<Option<Image>, ImageFailure> {
        let store = self.store.clone();
        let r = image.to_string();
        let resolved = tokio::task::spawn_blocking(move || store.resolve(&r))
            .await
            .map_err(|e| ImageFailure {
                reason: "ErrImagePull",
                message: format!("image lookup failed: {e}"),
                retry: true,
            })?;
        match resolved {
            Ok(found) => Ok(Some(found)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            // Half-there (a layer missing): pull it again.
            Err(StoreError::LayerMissing { .. }) => Ok(None),
            Err(other) => Err(ImageFailure {
                reason: "ErrImagePull",
                message: error_chain(&other),
                retry: true,
            }),
        }
    }

    /// `GET /apis/node.berth.io/v1/images`, `POST .../images/import`, `POST .../images/pull`
    /// (`{"reference": REF}`; answers when done), `GET .../images/pulls[/{ref}]` (progress of
    /// pulls in flight), `POST .../images/prune` (`{"all": bool}`), `DELETE .../images/{ref}`.
    pub async fn node_request(
        &self,
        method: &str,
        path: &str,
        body: Value,
    ) -> Result<Value, ApiError> {
        let rest = path.trim_start_matches("/apis/node.berth.io/v1/images");
        let store = self.store.clone();
        match (method, rest) {
            ("GET", "" | "/") => {
                blocking(move || {
                    store.list().map(
                    |records| json!({"items": records.iter().map(record_json).collect::<Vec<_>>()}),
                )
                })
                .await
            }
            ("POST", "/import") => {
                let path = body
                    .get("path")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ApiError::bad_request("import: body.path: Required value"))?
                    .to_string();
                let name = body.get("name").and_then(Value::as_str).map(str::to_string);
                blocking(move || {
                    store.import(&path, name.as_deref()).map(|records| json!({"items": records.iter().map(record_json).collect::<Vec<_>>()}))
                })
                .await
            }
            ("POST", "/pull") => {
                let image = body
                    .get("reference")
                    .and_then(Value::as_str)
                    .filter(|r| !r.trim().is_empty())
                    .ok_or_else(|| ApiError::bad_request("pull: body.reference: Required value"))?
                    .to_string();
                match self.pull(&image, &Keyring::new()).await {
                    Ok(pulled) => Ok(json!({
                        "image": record_json(&pulled.record),
                        "indexDigest": pulled.index_digest.map(|d| d.to_string()),
                        "endpoint": pulled.endpoint,
                        "downloaded": pulled.downloaded,
                        "elapsedSeconds": pulled.elapsed.as_secs_f64(),
                    })),
                    Err(PullError::Reference(e)) => Err(ApiError::bad_request(error_chain(&e))),
                    Err(e) => Err(ApiError::unavailable(error_chain(&e))),
                }
            }
            ("GET", "/pulls") => {
                let pulls = self.pulls.lock().expect("pulls lock");
                Ok(json!({"items": pulls.values().map(|r| r.borrow().clone()).collect::<Vec<_>>()}))
            }
            ("GET", pull) if pull.starts_with("/pulls/") => {
                let wanted = percent_decode(&pull["/pulls/".len()..]);
                let canonical = reference::canonical(&wanted)
                    .map_err(|e| ApiError::bad_request(error_chain(&e)))?;
                let pulls = self.pulls.lock().expect("pulls lock");
                match pulls.get(&canonical) {
                    Some(progress) => {
                        Ok(serde_json::to_value(&*progress.borrow()).expect("progress serialises"))
                    }
                    None => Err(ApiError::not_found("pulls", "node.berth.io", &canonical)),
                }
            }
            ("POST", "/prune") => {
                let all = body.get("all").and_then(Value::as_bool).unwrap_or(false);
                self.prune(all).await
            }
            ("DELETE", reference) if reference.len() > 1 => {
                let reference = percent_decode(&reference[1..]);
                blocking(move || {
                    store
                        .remove(&reference)
                        .map(|removed| json!({"removed": removed}))
                })
                .await
            }
            _ => Err(ApiError::not_found_path(path)),
        }
    }

    /// Removes content no image reference uses; with `all`, first removes the references of
    /// images no container uses. Images handed to containers are always kept.
    async fn prune(&self, all: bool) -> Result<Value, ApiError> {
        let source = self.in_use.lock().expect("in-use lock").clone();
        let mut in_use: Vec<String> = self
            .handed_out
            .lock()
            .expect("handed-out lock")
            .iter()
            .cloned()
            .collect();
        if let Some(source) = &source {
            // The kubelet knows exactly: what it no longer runs may go.
            in_use = source().iter().map(|d| d.to_string()).collect();
        } else if all {
            return Err(ApiError::unavailable(
                "prune --all needs to know which images containers use, and the kubelet has not said yet; try again shortly",
            ));
        }
        let store = self.store.clone();
        blocking(move || {
            let mut removed_refs = Vec::new();
            if all {
                for record in store.list()? {
                    if in_use.contains(&record.manifest_digest.to_string()) {
                        continue;
                    }
                    for reference in &record.references {
                        removed_refs.extend(store.remove(reference)?);
                    }
                }
            }
            let digests: Vec<_> = in_use.iter().filter_map(|d| d.parse().ok()).collect();
            let report = store.prune(&digests)?;
            Ok(json!({
                "removedReferences": removed_refs,
                "blobs": report.blobs.len(),
                "layers": report.layers.len(),
                "bytes": report.blob_bytes,
            }))
        })
        .await
    }
}

/// A keyring of the pod's pull secrets that hold docker configs; others are skipped with a
/// warning event, as the kubelet does.
pub fn keyring(pull_secrets: &[Arc<Value>], report: Report<'_>) -> Keyring {
    let mut keyring = Keyring::new();
    for secret in pull_secrets {
        let namespace = secret
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default");
        let name = secret
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let origin = format!("secret {namespace}/{name}");
        let kind = secret.get("type").and_then(Value::as_str).unwrap_or("");
        let (key, legacy) = match kind {
            "kubernetes.io/dockerconfigjson" => (".dockerconfigjson", false),
            "kubernetes.io/dockercfg" => (".dockercfg", true),
            other => {
                report(
                    EventType::Warning,
                    "FailedToRetrieveImagePullSecret",
                    format!(
                        "{origin} has type {other:?}, not kubernetes.io/dockerconfigjson: it is not used to pull images"
                    ),
                );
                continue;
            }
        };
        let decoded = secret
            .pointer(&format!("/data/{}", key.replace('/', "~1")))
            .and_then(Value::as_str)
            .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
            .or_else(|| {
                secret
                    .pointer(&format!("/stringData/{key}"))
                    .and_then(Value::as_str)
                    .map(|s| s.as_bytes().to_vec())
            });
        let Some(bytes) = decoded else {
            report(
                EventType::Warning,
                "FailedToRetrieveImagePullSecret",
                format!("{origin} has no valid data[{key:?}]"),
            );
            continue;
        };
        let added = if legacy {
            keyring.add_dockercfg(&bytes, &origin)
        } else {
            keyring.add_docker_config_json(&bytes, &origin)
        };
        if let Err(e) = added {
            report(
                EventType::Warning,
                "FailedToRetrieveImagePullSecret",
                error_chain(&e),
            );
        }
    }
    keyring
}

async fn blocking(
    f: impl FnOnce() -> Result<Value, StoreError> + Send + 'static,
) -> Result<Value, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(StoreError::NotFound { reference })) => {
            Err(ApiError::not_found("images", "node.berth.io", &reference))
        }
        Ok(Err(e)) => Err(ApiError::bad_request(error_chain(&e))),
        Err(e) => Err(ApiError::internal(e.to_string())),
    }
}

fn record_json(r: &berth_runtime::image::ImageRecord) -> Value {
    json!({
        "references": r.references,
        "digest": r.manifest_digest.to_string(),
        "id": r.config_digest.to_string(),
        "size": r.size,
        "created": r.created,
        "platform": r.platform.to_string(),
    })
}

/// An error and its causes on one line, as the CLI and events show them.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    berth_runtime::image::pull::error_chain(e)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_decisions_follow_the_kubelet() {
        let table: &[(&str, bool, PullDecision)] = &[
            ("Always", true, PullDecision::Pull),
            ("Always", false, PullDecision::Pull),
            ("IfNotPresent", true, PullDecision::UseLocal),
            ("IfNotPresent", false, PullDecision::Pull),
            ("Never", true, PullDecision::UseLocal),
            ("Never", false, PullDecision::NeverPull),
        ];
        for (policy, present, want) in table {
            assert_eq!(
                decide(policy, *present),
                *want,
                "{policy} present={present}"
            );
        }
    }

    #[test]
    fn the_default_policy_is_always_for_latest_or_no_tag() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let table: &[(&str, &str)] = &[
            ("busybox", "Always"),
            ("busybox:latest", "Always"),
            ("busybox:1.36", "IfNotPresent"),
            ("localhost:5000/x", "Always"),
            ("localhost:5000/x:2", "IfNotPresent"),
            (&format!("busybox@{digest}"), "IfNotPresent"),
            (&format!("busybox:latest@{digest}"), "Always"),
        ];
        for (image, want) in table {
            assert_eq!(default_policy(image), *want, "{image}");
        }
    }

    fn secret(kind: &str, key: &str, config: &str) -> Arc<Value> {
        let data = base64::engine::general_purpose::STANDARD.encode(config);
        Arc::new(json!({
            "metadata": {"namespace": "team", "name": "regcred"},
            "type": kind,
            "data": {key: data},
        }))
    }

    #[test]
    fn pull_secrets_become_a_keyring_and_unusable_ones_are_reported() {
        let events = Mutex::new(Vec::new());
        let report = |t: EventType, reason: &'static str, message: String| {
            events
                .lock()
                .unwrap()
                .push(format!("{t:?} {reason} {message}"));
        };
        let secrets = vec![
            secret(
                "kubernetes.io/dockerconfigjson",
                ".dockerconfigjson",
                r#"{"auths": {"reg.lab": {"username": "u", "password": "p"}}}"#,
            ),
            secret(
                "kubernetes.io/dockercfg",
                ".dockercfg",
                r#"{"old.lab": {"auth": "dTpw"}}"#,
            ),
            secret("Opaque", "x", "{}"),
            secret(
                "kubernetes.io/dockerconfigjson",
                ".dockerconfigjson",
                "not json",
            ),
        ];
        let keyring = keyring(&secrets, &report);
        assert_eq!(keyring.matching("reg.lab", "app").len(), 1);
        assert_eq!(keyring.matching("old.lab", "app").len(), 1);
        assert_eq!(keyring.matching("other.lab", "app").len(), 0);
        let events = events.into_inner().unwrap();
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(
            events[0].contains("secret team/regcred has type \"Opaque\""),
            "{events:?}"
        );
        assert!(
            events[1].contains("secret team/regcred is not a valid docker config"),
            "{events:?}"
        );
    }

    #[tokio::test]
    async fn never_and_invalid_references_fail_with_the_kubelet_reasons_and_events() {
        let dir = tempfile::tempdir().unwrap();
        let images = Images::new(ImageStore::open(dir.path()).unwrap());
        let events = Mutex::new(Vec::new());
        let report = |_: EventType, reason: &'static str, message: String| {
            events.lock().unwrap().push(format!("{reason}: {message}"));
        };
        let failure = images
            .ensure("busybox:1.36", "Never", &[], &report)
            .await
            .unwrap_err();
        assert_eq!(failure.reason, "ErrImageNeverPull");
        assert_eq!(
            failure.message,
            "Container image \"busybox:1.36\" is not present with pull policy of Never"
        );
        let failure = images
            .ensure("Bad Image", "IfNotPresent", &[], &report)
            .await
            .unwrap_err();
        assert_eq!(failure.reason, "InvalidImageName");
        assert!(!failure.retry);
        assert!(
            failure.message.starts_with(
                "Failed to apply default image tag \"Bad Image\": invalid image reference"
            ),
            "{}",
            failure.message
        );
        let events = events.into_inner().unwrap();
        assert_eq!(events.len(), 2);
        assert!(events[0].starts_with("ErrImageNeverPull: "));
        assert!(events[1].starts_with("InspectFailed: "));
    }

    #[tokio::test]
    async fn an_unreachable_registry_is_err_image_pull_with_the_cause_and_a_failed_event() {
        let dir = tempfile::tempdir().unwrap();
        let images = Images::new(ImageStore::open(dir.path()).unwrap());
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let image = format!("127.0.0.1:{port}/x/app:1");
        let events = Mutex::new(Vec::new());
        let report = |_: EventType, reason: &'static str, message: String| {
            events.lock().unwrap().push(format!("{reason}: {message}"));
        };
        let failure = images
            .ensure(&image, "IfNotPresent", &[], &report)
            .await
            .unwrap_err();
        assert_eq!(failure.reason, "ErrImagePull");
        assert!(failure.retry);
        assert!(
            failure.message.starts_with(&format!("Failed to pull image {image:?}: cannot pull {image} from http://127.0.0.1:{port}: cannot reach the registry")),
            "{}",
            failure.message
        );
        let events = events.into_inner().unwrap();
        assert_eq!(events[0], format!("Pulling: Pulling image {image:?}"));
        assert!(
            events[1].starts_with("Failed: Failed to pull image"),
            "{events:?}"
        );
    }
}
