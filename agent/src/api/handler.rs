//! The API's handlers: typed [`Request`]s in, Kubernetes-shaped answers out. Writes go
//! through admission (decode, support check, defaults, validation) and then become state
//! commands; reads come from the state's index. Pod logs and exec are the node's business
//! ([`NodeIo`]); the HTTP layer streams them.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::patch;
use super::request::{DeleteOptions, ExecOptions, LogOptions, PatchType, Request, Subresource};
use super::status::{ApiError, Cause, qualified_resource};
use crate::objects::selector::{FieldSelector, Selector};
use crate::objects::{AdmitError, CreateContext, Kind, Object, admit_create, admit_update};
use crate::state::{
    Applied, Command, EventType, ObjectKey, Outcome, ProposeError, Rejection, State, Timestamp,
    WatchError,
};

/// A stream of bytes (a log).
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// A running exec session's pipes and its end.
pub struct ExecSession {
    pub stdin: Option<Pin<Box<dyn tokio::io::AsyncWrite + Send>>>,
    pub stdout: Option<Pin<Box<dyn tokio::io::AsyncRead + Send>>>,
    pub stderr: Option<Pin<Box<dyn tokio::io::AsyncRead + Send>>>,
    /// Resolves to the exit code once the process ended.
    pub exit: BoxFuture<'static, Result<i32, ApiError>>,
}

/// What the node offers the API for pods it runs: logs, exec, and the node's image store.
pub trait NodeIo: Send + Sync + 'static {
    /// The log of a container of `pod`, as bytes of text lines.
    fn logs(
        &self,
        pod: Arc<Value>,
        options: LogOptions,
    ) -> BoxFuture<'static, Result<ByteStream, ApiError>>;
    /// Starts a command in a container of `pod`.
    fn exec(
        &self,
        pod: Arc<Value>,
        options: ExecOptions,
    ) -> BoxFuture<'static, Result<ExecSession, ApiError>>;
    /// Node-level (non-Kubernetes) requests under `/apis/node.berth.io/v1/...`.
    fn node_request(
        &self,
        method: &str,
        path: &str,
        body: Value,
    ) -> BoxFuture<'static, Result<Value, ApiError>>;
}

/// An answer to a request.
pub enum Response {
    /// A JSON document with an HTTP status and the warnings to send (`Warning` headers).
    Json {
        code: u16,
        body: Value,
        warnings: Vec<String>,
    },
    /// Watch events, each a JSON document to be written on its own line.
    Watch(Pin<Box<dyn Stream<Item = Value> + Send>>),
    /// A log stream.
    Bytes(ByteStream),
    /// An exec the HTTP layer must upgrade to a websocket for.
    Exec {
        pod: Arc<Value>,
        options: ExecOptions,
    },
}

impl Response {
    fn ok(body: Value) -> Response {
        Response::Json {
            code: 200,
            body,
            warnings: vec![],
        }
    }
}

/// Settings of the API the handlers need.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Reported by `/version`.
    pub version: String,
}

/// The API handlers over the cluster state.
#[derive(Clone)]
pub struct Api {
    state: State,
    node: Arc<dyn NodeIo>,
    config: ApiConfig,
}

/// How often an update computed from a read object is retried when the object changed in
/// between (optimistic concurrency inside the server).
const UPDATE_RETRIES: usize = 8;

impl Api {
    pub fn new(state: State, node: Arc<dyn NodeIo>, config: ApiConfig) -> Api {
        Api {
            state,
            node,
            config,
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn node(&self) -> &Arc<dyn NodeIo> {
        &self.node
    }

    /// Handles one request.
    pub async fn handle(&self, request: Request) -> Result<Response, ApiError> {
        match request {
            Request::Version => Ok(Response::ok(super::discovery::version(
                &self.config.version,
            ))),
            Request::CoreVersions => Ok(Response::ok(super::discovery::core_versions())),
            Request::Groups => Ok(Response::ok(super::discovery::groups())),
            Request::Group { group } => super::discovery::group(&group).map(Response::ok),
            Request::Resources { group, version } => {
                super::discovery::resources(&group, &version).map(Response::ok)
            }
            Request::Get {
                kind,
                namespace,
                name,
                subresource,
            } => self.get(kind, &namespace, &name, subresource),
            Request::List {
                kind,
                namespace,
                labels,
                fields,
            } => Ok(Response::ok(self.list(
                kind,
                namespace.as_deref(),
                &labels,
                fields.as_ref(),
            ))),
            Request::Watch {
                kind,
                namespace,
                labels,
                fields,
                resource_version,
                timeout_seconds,
                ..
            } => self.watch(
                kind,
                namespace,
                labels,
                fields,
                resource_version,
                timeout_seconds,
            ),
            Request::Create {
                kind,
                namespace,
                body,
                dry_run,
            } => self.create(kind, &namespace, body, dry_run).await,
            Request::Replace {
                kind,
                namespace,
                name,
                subresource,
                body,
                dry_run,
            } => {
                self.replace(kind, &namespace, &name, subresource, body, dry_run)
                    .await
            }
            Request::Patch {
                kind,
                namespace,
                name,
                subresource,
                patch_type,
                body,
                dry_run,
                ..
            } => {
                self.patch(
                    kind,
                    &namespace,
                    &name,
                    subresource,
                    patch_type,
                    body,
                    dry_run,
                )
                .await
            }
            Request::Delete {
                kind,
                namespace,
                name,
                options,
                dry_run,
            } => {
                self.delete(kind, &namespace, &name, &options, dry_run)
                    .await
            }
            Request::DeleteCollection {
                kind,
                namespace,
                labels,
                fields,
                options,
            } => {
                self.delete_collection(
                    kind,
                    namespace.as_deref(),
                    &labels,
                    fields.as_ref(),
                    &options,
                )
                .await
            }
            Request::Logs {
                namespace,
                name,
                options,
            } => {
                let pod = self.stored(Kind::Pod, &namespace, &name)?;
                check_container(&pod, options.container.as_deref())?;
                Ok(Response::Bytes(self.node.logs(pod, options).await?))
            }
            Request::Exec {
                namespace,
                name,
                options,
            } => {
                let pod = self.stored(Kind::Pod, &namespace, &name)?;
                check_container(&pod, options.container.as_deref())?;
                Ok(Response::Exec { pod, options })
            }
        }
    }

    /// The stored object, or NotFound in Kubernetes' words.
    pub fn stored(&self, kind: Kind, namespace: &str, name: &str) -> Result<Arc<Value>, ApiError> {
        let ns = if kind.info().namespaced {
            namespace
        } else {
            ""
        };
        self.state
            .get(kind.name(), ns, name)
            .ok_or_else(|| not_found(kind, name))
    }

    fn get(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        subresource: Option<Subresource>,
    ) -> Result<Response, ApiError> {
        let object = self.stored(kind, namespace, name)?;
        match subresource {
            Some(Subresource::Scale) => Ok(Response::ok(scale_of(&object))),
            _ => Ok(Response::ok(typed(kind, &object))),
        }
    }

    /// A list in Kubernetes' shape (`PodList` with `metadata.resourceVersion`).
    pub fn list(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        labels: &Selector,
        fields: Option<&FieldSelector>,
    ) -> Value {
        let ns = if kind.info().namespaced {
            namespace
        } else {
            None
        };
        let (objects, revision) = self.state.list(kind.name(), ns);
        let items: Vec<Value> = objects
            .iter()
            .filter(|o| matches(o, labels, fields))
            .map(|o| typed(kind, o))
            .collect();
        json!({
            "kind": format!("{}List", kind.info().kind),
            "apiVersion": kind.info().api_version(),
            "metadata": {"resourceVersion": revision.to_string()},
            "items": items,
        })
    }

    fn watch(
        &self,
        kind: Kind,
        namespace: Option<String>,
        labels: Selector,
        fields: Option<FieldSelector>,
        resource_version: Option<u64>,
        timeout_seconds: Option<u64>,
    ) -> Result<Response, ApiError> {
        use futures_util::StreamExt;
        let ns = if kind.info().namespaced {
            namespace
        } else {
            None
        };
        let stream = self
            .state
            .watch(Some(kind.name()), ns.as_deref(), resource_version)
            .map_err(|e| ApiError::gone(format!("too old resource version: {e}")))?;
        // Objects that matched the selectors before: when one stops matching, the watcher is
        // told it is gone (DELETED), as Kubernetes' filtered watches do.
        let mut matching: std::collections::HashSet<String> = std::collections::HashSet::new();
        let filtered = stream.filter_map(move |event| {
            let out = match event {
                Ok(event) => {
                    let key = format!(
                        "{}/{}",
                        event.object.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or(""),
                        event.object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("")
                    );
                    let now_matches = matches(&event.object, &labels, fields.as_ref());
                    let was = matching.contains(&key);
                    let type_ = match (event.type_, was, now_matches) {
                        (EventType::Deleted, true, _) => Some("DELETED"),
                        (EventType::Deleted, false, _) => None,
                        (_, false, true) => Some("ADDED"),
                        (EventType::Added, true, true) => Some("ADDED"),
                        (EventType::Modified, true, true) => Some("MODIFIED"),
                        (_, true, false) => Some("DELETED"),
                        (_, false, false) => None,
                    };
                    if now_matches && event.type_ != EventType::Deleted {
                        matching.insert(key);
                    } else {
                        matching.remove(&key);
                    }
                    type_.map(|t| json!({"type": t, "object": typed(kind, &event.object)}))
                }
                Err(WatchError::Lagged { .. }) | Err(_) => Some(json!({
                    "type": "ERROR",
                    "object": ApiError::gone("the watch fell behind and was closed; list again").to_status(),
                })),
            };
            std::future::ready(out)
        });
        let stream: Pin<Box<dyn Stream<Item = Value> + Send>> = match timeout_seconds {
            Some(secs) if secs > 0 => Box::pin(
                filtered.take_until(tokio::time::sleep(std::time::Duration::from_secs(secs))),
            ),
            _ => Box::pin(filtered),
        };
        Ok(Response::Watch(stream))
    }

    async fn create(
        &self,
        kind: Kind,
        namespace: &str,
        mut body: Value,
        dry_run: bool,
    ) -> Result<Response, ApiError> {
        check_type(kind, &body)?;
        if kind.info().namespaced {
            crate::objects::strategy::fill_namespace(&mut body, namespace)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            self.check_namespace_open(namespace)?;
        }
        let uid = uuid::Uuid::new_v4().to_string();
        let now = Timestamp::now();
        let context = CreateContext {
            uid: uid.clone(),
            now: jiff_now(now),
            random: rand::random(),
        };
        let admitted = admit_create(&body, &context).map_err(admit_error)?;
        let warnings = admitted.warnings.iter().map(ToString::to_string).collect();
        let object = admitted.object.to_value();
        let command = Command::create(object, uid, now);
        let applied = self.run(command, dry_run).await?;
        Ok(Response::Json {
            code: 201,
            body: outcome_object(kind, &applied),
            warnings,
        })
    }

    async fn replace(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        subresource: Option<Subresource>,
        mut body: Value,
        dry_run: bool,
    ) -> Result<Response, ApiError> {
        if subresource == Some(Subresource::Scale) {
            let replicas = body
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .ok_or_else(|| ApiError::bad_request("Scale.spec.replicas: Required value"))?;
            return self.scale(kind, namespace, name, replicas, dry_run).await;
        }
        check_type(kind, &body)?;
        if kind.info().namespaced {
            crate::objects::strategy::fill_namespace(&mut body, namespace)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
        }
        let body_name = body
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let precondition = resource_version_of(&body)?;
        let stored = self.stored(kind, namespace, name)?;
        if subresource == Some(Subresource::Status) {
            let key = key_of(kind, namespace, name);
            let status = body.get("status").cloned().unwrap_or(Value::Null);
            let command = Command::UpdateStatus {
                key,
                status,
                precondition_resource_version: precondition,
            };
            let applied = self.run(command, dry_run).await?;
            return Ok(Response::ok(outcome_object(kind, &applied)));
        }
        let stored_object = Object::from_value(&stored)
            .map_err(|e| ApiError::internal(format!("stored object cannot be decoded: {e}")))?;
        let admitted = admit_update(&stored_object, &body).map_err(admit_error)?;
        let warnings = admitted.warnings.iter().map(ToString::to_string).collect();
        let command = Command::Update {
            object: admitted.object.to_value(),
            precondition_resource_version: precondition,
            now: Timestamp::now(),
        };
        let applied = self.run(command, dry_run).await?;
        Ok(Response::Json {
            code: 200,
            body: outcome_object(kind, &applied),
            warnings,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn patch(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        subresource: Option<Subresource>,
        patch_type: PatchType,
        body: Value,
        dry_run: bool,
    ) -> Result<Response, ApiError> {
        if subresource == Some(Subresource::Scale) {
            let mut scale = scale_of(&*self.stored(kind, namespace, name)?);
            apply_patch(&mut scale, patch_type, &body)?;
            let replicas = scale
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            return self.scale(kind, namespace, name, replicas, dry_run).await;
        }
        for _ in 0..UPDATE_RETRIES {
            let stored = match self.stored(kind, namespace, name) {
                Ok(stored) => stored,
                Err(e)
                    if e.code == 404 && patch_type == PatchType::Apply && subresource.is_none() =>
                {
                    // Apply creates what does not exist yet.
                    let mut manifest = body.clone();
                    if kind.info().namespaced {
                        crate::objects::strategy::fill_namespace(&mut manifest, namespace)
                            .map_err(|e| ApiError::bad_request(e.to_string()))?;
                    }
                    check_name(&manifest, name)?;
                    let mut created = manifest.clone();
                    patch::record_last_applied(&mut created, &manifest);
                    return match self.create(kind, namespace, created, dry_run).await {
                        Err(e) if e.reason == "AlreadyExists" => continue,
                        other => other,
                    };
                }
                Err(e) => return Err(e),
            };
            let revision = resource_version_of(&stored)?;
            let mut patched = (*stored).clone();
            match patch_type {
                PatchType::Apply => {
                    check_type(kind, &body)?;
                    let mut manifest = body.clone();
                    if kind.info().namespaced {
                        crate::objects::strategy::fill_namespace(&mut manifest, namespace)
                            .map_err(|e| ApiError::bad_request(e.to_string()))?;
                    }
                    check_name(&manifest, name)?;
                    patched = patch::apply(&stored, &manifest);
                }
                other => apply_patch(&mut patched, other, &body)?,
            }
            let command = if subresource == Some(Subresource::Status) {
                Command::UpdateStatus {
                    key: key_of(kind, namespace, name),
                    status: patched.get("status").cloned().unwrap_or(Value::Null),
                    precondition_resource_version: revision,
                }
            } else {
                // The patch may not change identity; the stored values are kept where absent.
                let stored_object = Object::from_value(&stored).map_err(|e| {
                    ApiError::internal(format!("stored object cannot be decoded: {e}"))
                })?;
                patched["metadata"]["resourceVersion"] =
                    stored["metadata"]["resourceVersion"].clone();
                let admitted = admit_update(&stored_object, &patched).map_err(admit_error)?;
                let warnings: Vec<String> =
                    admitted.warnings.iter().map(ToString::to_string).collect();
                let command = Command::Update {
                    object: admitted.object.to_value(),
                    precondition_resource_version: revision,
                    now: Timestamp::now(),
                };
                match self.run(command, dry_run).await {
                    Err(e) if e.reason == "Conflict" => continue,
                    Err(e) => return Err(e),
                    Ok(applied) => {
                        return Ok(Response::Json {
                            code: 200,
                            body: outcome_object(kind, &applied),
                            warnings,
                        });
                    }
                }
            };
            match self.run(command, dry_run).await {
                Err(e) if e.reason == "Conflict" => continue,
                Err(e) => return Err(e),
                Ok(applied) => return Ok(Response::ok(outcome_object(kind, &applied))),
            }
        }
        Err(ApiError::conflict(
            kind.info().plural,
            kind.info().group,
            name,
            "the object kept changing while the patch was applied; try again",
        ))
    }

    async fn scale(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        replicas: i64,
        dry_run: bool,
    ) -> Result<Response, ApiError> {
        for _ in 0..UPDATE_RETRIES {
            let stored = self.stored(kind, namespace, name)?;
            let mut object = (*stored).clone();
            object["spec"]["replicas"] = json!(replicas);
            let stored_object = Object::from_value(&stored)
                .map_err(|e| ApiError::internal(format!("stored object cannot be decoded: {e}")))?;
            let admitted = admit_update(&stored_object, &object).map_err(admit_error)?;
            let command = Command::Update {
                object: admitted.object.to_value(),
                precondition_resource_version: resource_version_of(&stored)?,
                now: Timestamp::now(),
            };
            match self.run(command, dry_run).await {
                Err(e) if e.reason == "Conflict" => continue,
                Err(e) => return Err(e),
                Ok(applied) => {
                    let object = applied.outcome.object().cloned().unwrap_or(stored);
                    return Ok(Response::ok(scale_of(&object)));
                }
            }
        }
        Err(ApiError::conflict(
            kind.info().plural,
            kind.info().group,
            name,
            "the object kept changing; try again",
        ))
    }

    async fn delete(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        options: &DeleteOptions,
        dry_run: bool,
    ) -> Result<Response, ApiError> {
        self.stored(kind, namespace, name)?;
        let command = Command::Delete {
            key: key_of(kind, namespace, name),
            precondition_uid: options.precondition_uid.clone(),
            precondition_resource_version: options.precondition_resource_version,
            grace_period_seconds: options.grace_period_seconds,
            propagation: options.propagation,
            now: Timestamp::now(),
        };
        let applied = self.run(command, dry_run).await?;
        let code = match &applied.outcome {
            Outcome::Terminating(_) => 202,
            _ => 200,
        };
        Ok(Response::Json {
            code,
            body: outcome_object(kind, &applied),
            warnings: vec![],
        })
    }

    async fn delete_collection(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        labels: &Selector,
        fields: Option<&FieldSelector>,
        options: &DeleteOptions,
    ) -> Result<Response, ApiError> {
        let list = self.list(kind, namespace, labels, fields);
        let now = Timestamp::now();
        let commands: Vec<Command> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|item| Command::Delete {
                key: key_of(
                    kind,
                    item.pointer("/metadata/namespace")
                        .and_then(Value::as_str)
                        .unwrap_or(""),
                    item.pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or(""),
                ),
                precondition_uid: None,
                precondition_resource_version: None,
                grace_period_seconds: options.grace_period_seconds,
                propagation: options.propagation,
                now,
            })
            .collect();
        if !commands.is_empty() {
            self.run(Command::Batch(commands), false).await?;
        }
        Ok(Response::ok(list))
    }

    /// Creating in a namespace needs the namespace, and one that is not being deleted.
    fn check_namespace_open(&self, namespace: &str) -> Result<(), ApiError> {
        match self.state.get("Namespace", "", namespace) {
            None => Err(not_found(Kind::Namespace, namespace)),
            Some(ns)
                if ns
                    .pointer("/metadata/deletionTimestamp")
                    .is_some_and(|v| !v.is_null()) =>
            {
                Err(ApiError::forbidden(format!(
                    "unable to create new content in namespace {namespace} because it is being terminated"
                )))
            }
            Some(_) => Ok(()),
        }
    }

    /// Proposes a command (or evaluates it, for a dry run) and maps failures to API errors.
    async fn run(&self, command: Command, dry_run: bool) -> Result<Applied, ApiError> {
        if dry_run {
            return self.state.dry_run(&command).map_err(rejection_error);
        }
        self.state.propose(command).await.map_err(propose_error)
    }
}

fn jiff_now(now: Timestamp) -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::from_second(now.unix_seconds())
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
}

/// The object a command produced, with its type fields.
fn outcome_object(kind: Kind, applied: &Applied) -> Value {
    match applied.outcome.object() {
        Some(o) => typed(kind, o),
        None => Value::Null,
    }
}

/// An object as the API returns it: with `apiVersion` and `kind`.
pub fn typed(kind: Kind, object: &Value) -> Value {
    let mut o = object.clone();
    if let Some(map) = o.as_object_mut() {
        map.insert("apiVersion".into(), json!(kind.info().api_version()));
        map.insert("kind".into(), json!(kind.info().kind));
    }
    o
}

fn matches(object: &Value, labels: &Selector, fields: Option<&FieldSelector>) -> bool {
    if !labels.is_empty() {
        let set: BTreeMap<String, String> = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect()
            })
            .unwrap_or_default();
        if !labels.matches(&set) {
            return false;
        }
    }
    fields.is_none_or(|f| f.matches(object))
}

/// autoscaling/v1 Scale of a StatefulSet.
fn scale_of(object: &Value) -> Value {
    let selector = object
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            let mut pairs: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect();
            pairs.sort();
            pairs.join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": object.pointer("/metadata/name"),
            "namespace": object.pointer("/metadata/namespace"),
            "uid": object.pointer("/metadata/uid"),
            "resourceVersion": object.pointer("/metadata/resourceVersion"),
            "creationTimestamp": object.pointer("/metadata/creationTimestamp"),
        },
        "spec": {"replicas": object.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": {
            "replicas": object.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

fn apply_patch(target: &mut Value, patch_type: PatchType, body: &Value) -> Result<(), ApiError> {
    match patch_type {
        PatchType::Merge => {
            if !body.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            patch::merge_patch(target, body);
            Ok(())
        }
        PatchType::Json => patch::json_patch(target, body),
        PatchType::Strategic => patch::strategic_merge_patch(target, body),
        PatchType::Apply => {
            *target = patch::apply(target, body);
            Ok(())
        }
    }
}

fn check_type(kind: Kind, body: &Value) -> Result<(), ApiError> {
    let info = kind.info();
    let api_version = body.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let body_kind = body.get("kind").and_then(Value::as_str).unwrap_or("");
    if !api_version.is_empty() && api_version != info.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            info.api_version()
        )));
    }
    if !body_kind.is_empty() && body_kind != info.kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({body_kind}) does not match the expected kind ({})",
            info.kind
        )));
    }
    Ok(())
}

fn check_name(body: &Value, name: &str) -> Result<(), ApiError> {
    let body_name = body
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if body_name.is_empty() || body_name == name {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )))
    }
}

fn check_container(pod: &Value, container: Option<&str>) -> Result<(), ApiError> {
    let names: Vec<&str> = ["/spec/containers", "/spec/initContainers"]
        .iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let pod_name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    match container {
        Some(c) if !names.contains(&c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {pod_name}"
        ))),
        _ => Ok(()),
    }
}

/// `metadata.resourceVersion` as a revision, when set.
fn resource_version_of(object: &Value) -> Result<Option<u64>, ApiError> {
    match object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
    {
        None | Some("") => Ok(None),
        Some(rv) => rv.parse().map(Some).map_err(|_| {
            ApiError::bad_request(format!(
                "metadata.resourceVersion: Invalid value: {rv:?}: must be a number"
            ))
        }),
    }
}

fn key_of(kind: Kind, namespace: &str, name: &str) -> ObjectKey {
    let ns = if kind.info().namespaced {
        namespace
    } else {
        ""
    };
    ObjectKey::new(kind.name(), ns, name)
}

fn not_found(kind: Kind, name: &str) -> ApiError {
    ApiError::not_found(kind.info().plural, kind.info().group, name)
}

fn admit_error(e: AdmitError) -> ApiError {
    match e {
        AdmitError::Decode(d) => ApiError::bad_request(d.to_string()),
        AdmitError::Invalid(invalid) => {
            let info = invalid.kind.info();
            let causes = invalid
                .errors
                .iter()
                .map(|fe| {
                    let c = fe.to_status_cause();
                    Cause {
                        reason: c.reason.unwrap_or_default(),
                        field: c.field.unwrap_or_default(),
                        message: c.message.unwrap_or_default(),
                    }
                })
                .collect();
            ApiError::invalid(
                info.kind,
                info.group,
                &invalid.name,
                invalid.to_string(),
                causes,
            )
        }
        other => ApiError::bad_request(other.to_string()),
    }
}

/// Maps a state rejection to the error Kubernetes would give.
pub fn rejection_error(rejection: Rejection) -> ApiError {
    let root = rejection.root().clone();
    let resource = |key: &ObjectKey| -> (String, String, String) {
        match Kind::ALL.iter().find(|k| k.name() == key.kind) {
            Some(k) => (
                k.info().plural.to_string(),
                k.info().group.to_string(),
                key.name.clone(),
            ),
            None => (key.kind.to_lowercase(), String::new(), key.name.clone()),
        }
    };
    match &root {
        Rejection::NotFound { key } => {
            let (plural, group, name) = resource(key);
            ApiError::not_found(&plural, &group, &name)
        }
        Rejection::AlreadyExists { key } => {
            let (plural, group, name) = resource(key);
            ApiError::already_exists(&plural, &group, &name)
        }
        Rejection::ResourceVersionConflict { key, .. } => {
            let (plural, group, name) = resource(key);
            ApiError::conflict(
                &plural,
                &group,
                &name,
                "the object has been modified; please apply your changes to the latest version and try again",
            )
        }
        Rejection::UidConflict {
            key,
            expected,
            actual,
        } => {
            let (plural, group, name) = resource(key);
            ApiError::conflict(
                &plural,
                &group,
                &name,
                &format!(
                    "Precondition failed: UID in precondition: {expected}, UID in object meta: {actual}"
                ),
            )
        }
        Rejection::Invalid { field, message } => ApiError::invalid(
            "",
            "",
            "",
            format!("{field}: {message}"),
            vec![Cause {
                reason: "FieldValueInvalid".into(),
                field: field.clone(),
                message: message.clone(),
            }],
        ),
        Rejection::InBatch { .. } => ApiError::internal(rejection.to_string()),
    }
}

fn propose_error(e: ProposeError) -> ApiError {
    match e {
        ProposeError::Rejected(r) => rejection_error(r),
        ProposeError::NotLeader { .. } => {
            ApiError::unavailable(format!("{e}: writes are refused (no quorum)"))
        }
        ProposeError::Shutdown => ApiError::unavailable("the agent is shutting down"),
        // No majority of voters reachable: the cluster, not the request (503, as an API server).
        ProposeError::NoQuorum { .. } => ApiError::unavailable(e.to_string()),
        other => {
            tracing::error!(error = %other, "state write failed");
            ApiError::internal(other.to_string())
        }
    }
}

/// `pods "x"` style name, for messages elsewhere.
pub fn resource_name(kind: Kind, name: &str) -> String {
    format!(
        "{} \"{name}\"",
        qualified_resource(kind.info().plural, kind.info().group)
    )
}
