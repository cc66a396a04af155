//! Images on this node: what a container's image reference resolves to (by its pull
//! policy), and the node-level image API (`/apis/node.berth.io/v1/images`) behind
//! `berth image import|ls|rm`.

use std::sync::Arc;

use berth_runtime::image::{Image, ImageStore, StoreError};
use serde_json::{Value, json};

use crate::api::ApiError;

/// Why an image could not be had for a container: the waiting reason and message kubelet
/// would show (`ErrImageNeverPull`, `ErrImagePull`, `InvalidImageName`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFailure {
    pub reason: &'static str,
    pub message: String,
}

/// The node's images.
#[derive(Clone)]
pub struct Images {
    store: Arc<ImageStore>,
}

impl Images {
    pub fn new(store: ImageStore) -> Images {
        Images { store: Arc::new(store) }
    }

    pub fn store(&self) -> &ImageStore {
        &self.store
    }

    /// The image for a container, by its `imagePullPolicy`. Images come from this node's
    /// store; pulling from registries is not built yet, so a missing image is an
    /// `ErrImagePull` that says how to import it.
    ///
    /// `pull_secrets` are the pod's imagePullSecrets (Secret objects), `report` records events
    /// on the pod (Pulling, Pulled...).
    pub async fn ensure(
        &self,
        reference: &str,
        policy: &str,
        pull_secrets: &[Arc<Value>],
        report: &(dyn Fn(crate::events::EventType, &'static str, String) + Send + Sync),
    ) -> Result<Image, ImageFailure> {
        let _ = (pull_secrets, report);
        let store = self.store.clone();
        let r = reference.to_string();
        let resolved = tokio::task::spawn_blocking(move || store.resolve(&r))
            .await
            .map_err(|e| ImageFailure { reason: "ErrImagePull", message: format!("image lookup failed: {e}") })?;
        match resolved {
            Ok(image) => Ok(image),
            Err(StoreError::Reference(e)) => Err(ImageFailure {
                reason: "InvalidImageName",
                message: format!("Failed to apply default image tag {reference:?}: {e}"),
            }),
            Err(StoreError::NotFound { .. }) if policy == "Never" => Err(ImageFailure {
                reason: "ErrImageNeverPull",
                message: format!("Container image {reference:?} is not present with pull policy of Never"),
            }),
            Err(StoreError::NotFound { .. }) => Err(ImageFailure {
                reason: "ErrImagePull",
                message: format!(
                    "image {reference:?} is not in this node's image store, and pulling from registries is not supported yet: import it with `berth image import`"
                ),
            }),
            Err(other) => Err(ImageFailure { reason: "ErrImagePull", message: error_chain(&other) }),
        }
    }

    /// `GET /apis/node.berth.io/v1/images`, `POST .../images/import`, `DELETE .../images/{ref}`.
    pub async fn node_request(&self, method: &str, path: &str, body: Value) -> Result<Value, ApiError> {
        let rest = path.trim_start_matches("/apis/node.berth.io/v1/images");
        let store = self.store.clone();
        match (method, rest) {
            ("GET", "" | "/") => blocking(move || store.list().map(|records| json!({"items": records.iter().map(record_json).collect::<Vec<_>>()}))).await,
            ("POST", "/import") => {
                let path = body.get("path").and_then(Value::as_str).ok_or_else(|| ApiError::bad_request("import: body.path: Required value"))?.to_string();
                let name = body.get("name").and_then(Value::as_str).map(str::to_string);
                blocking(move || {
                    store.import(&path, name.as_deref()).map(|records| json!({"items": records.iter().map(record_json).collect::<Vec<_>>()}))
                })
                .await
            }
            ("DELETE", reference) if reference.len() > 1 => {
                let reference = percent_decode(&reference[1..]);
                blocking(move || store.remove(&reference).map(|removed| json!({"removed": removed}))).await
            }
            _ => Err(ApiError::not_found_path(path)),
        }
    }
}

async fn blocking(f: impl FnOnce() -> Result<Value, StoreError> + Send + 'static) -> Result<Value, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(StoreError::NotFound { reference })) => Err(ApiError::not_found("images", "node.berth.io", &reference)),
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
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
        source = cause.source();
    }
    text
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
