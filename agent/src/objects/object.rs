//! The typed object: one enum over the supported kinds, strictly decoded from JSON the way the
//! API server decodes with `fieldValidation=Strict`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, Namespace, Node, PersistentVolumeClaim, Pod, Secret, Service,
};
use k8s_openapi::api::events::v1::Event as EventsEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::kinds::{Kind, KindError};

/// A decoded object of a supported kind.
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Object {
    /// core/v1 Pod.
    Pod(Pod),
    /// core/v1 ConfigMap.
    ConfigMap(ConfigMap),
    /// core/v1 Secret.
    Secret(Secret),
    /// core/v1 Service.
    Service(Service),
    /// core/v1 Namespace.
    Namespace(Namespace),
    /// core/v1 Node.
    Node(Node),
    /// core/v1 Event.
    Event(Event),
    /// events.k8s.io/v1 Event.
    EventsEvent(EventsEvent),
    /// core/v1 PersistentVolumeClaim.
    PersistentVolumeClaim(PersistentVolumeClaim),
    /// apps/v1 StatefulSet.
    StatefulSet(StatefulSet),
    /// apps/v1 ControllerRevision.
    ControllerRevision(ControllerRevision),
    /// apps/v1 DaemonSet.
    DaemonSet(DaemonSet),
    /// batch/v1 Job.
    Job(Job),
    /// batch/v1 CronJob.
    CronJob(CronJob),
}

/// Runs `$body` with `$inner` bound to the typed object inside any variant.
macro_rules! each_kind {
    ($object:expr, $inner:ident => $body:expr) => {
        match $object {
            Object::Pod($inner) => $body,
            Object::ConfigMap($inner) => $body,
            Object::Secret($inner) => $body,
            Object::Service($inner) => $body,
            Object::Namespace($inner) => $body,
            Object::Node($inner) => $body,
            Object::Event($inner) => $body,
            Object::EventsEvent($inner) => $body,
            Object::PersistentVolumeClaim($inner) => $body,
            Object::StatefulSet($inner) => $body,
            Object::ControllerRevision($inner) => $body,
            Object::DaemonSet($inner) => $body,
            Object::Job($inner) => $body,
            Object::CronJob($inner) => $body,
        }
    };
}

impl Object {
    /// Strictly decodes a manifest: its `apiVersion`/`kind` must name a supported kind, every
    /// field must be known, every value must have the right type.
    pub fn from_value(value: &Value) -> Result<Object, DecodeError> {
        let api_version = value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let kind_name = value.get("kind").and_then(Value::as_str).unwrap_or("");
        if kind_name.is_empty() {
            return Err(DecodeError::MissingKind);
        }
        if api_version.is_empty() {
            return Err(DecodeError::MissingApiVersion);
        }
        let kind = Kind::from_type(api_version, kind_name)?;
        Ok(match kind {
            Kind::Pod => Object::Pod(strict(kind, value)?),
            Kind::ConfigMap => Object::ConfigMap(strict(kind, value)?),
            Kind::Secret => Object::Secret(strict(kind, value)?),
            Kind::Service => Object::Service(strict(kind, value)?),
            Kind::Namespace => Object::Namespace(strict(kind, value)?),
            Kind::Node => Object::Node(strict(kind, value)?),
            Kind::Event => Object::Event(strict(kind, value)?),
            Kind::EventsEvent => Object::EventsEvent(strict(kind, value)?),
            Kind::PersistentVolumeClaim => Object::PersistentVolumeClaim(strict(kind, value)?),
            Kind::StatefulSet => Object::StatefulSet(strict(kind, value)?),
            Kind::ControllerRevision => Object::ControllerRevision(strict(kind, value)?),
            Kind::DaemonSet => Object::DaemonSet(strict(kind, value)?),
            Kind::Job => Object::Job(strict(kind, value)?),
            Kind::CronJob => Object::CronJob(strict(kind, value)?),
        })
    }

    /// The object as JSON, with `apiVersion` and `kind`.
    pub fn to_value(&self) -> Value {
        // Serializing these types cannot fail: they hold only strings, numbers, maps and lists.
        each_kind!(self, inner => serde_json::to_value(inner).unwrap_or(Value::Null))
    }

    /// The object's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Object::Pod(_) => Kind::Pod,
            Object::ConfigMap(_) => Kind::ConfigMap,
            Object::Secret(_) => Kind::Secret,
            Object::Service(_) => Kind::Service,
            Object::Namespace(_) => Kind::Namespace,
            Object::Node(_) => Kind::Node,
            Object::Event(_) => Kind::Event,
            Object::EventsEvent(_) => Kind::EventsEvent,
            Object::PersistentVolumeClaim(_) => Kind::PersistentVolumeClaim,
            Object::StatefulSet(_) => Kind::StatefulSet,
            Object::ControllerRevision(_) => Kind::ControllerRevision,
            Object::DaemonSet(_) => Kind::DaemonSet,
            Object::Job(_) => Kind::Job,
            Object::CronJob(_) => Kind::CronJob,
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        each_kind!(self, inner => &inner.metadata)
    }

    /// The object's metadata, mutable.
    pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
        each_kind!(self, inner => &mut inner.metadata)
    }
}

impl TryFrom<&Value> for Object {
    type Error = DecodeError;
    fn try_from(value: &Value) -> Result<Self, Self::Error> {
        Object::from_value(value)
    }
}

impl From<&Object> for Value {
    fn from(object: &Object) -> Self {
        object.to_value()
    }
}

/// Read access to the identity of an object, typed or stored as JSON.
pub trait ObjectKind {
    /// `kind:` (empty when absent).
    fn kind_name(&self) -> &str;
    /// `metadata.name` (empty when absent).
    fn name(&self) -> &str;
    /// `metadata.namespace`, when set.
    fn namespace(&self) -> Option<&str>;
    /// `metadata.uid`, when set.
    fn uid(&self) -> Option<&str>;
    /// One label's value.
    fn label(&self, key: &str) -> Option<&str>;
    /// All labels.
    fn labels(&self) -> BTreeMap<String, String>;
}

impl ObjectKind for Object {
    fn kind_name(&self) -> &str {
        self.kind().name()
    }
    fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or("")
    }
    fn namespace(&self) -> Option<&str> {
        self.metadata().namespace.as_deref()
    }
    fn uid(&self) -> Option<&str> {
        self.metadata().uid.as_deref()
    }
    fn label(&self, key: &str) -> Option<&str> {
        self.metadata()
            .labels
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }
    fn labels(&self) -> BTreeMap<String, String> {
        self.metadata().labels.clone().unwrap_or_default()
    }
}

impl ObjectKind for Value {
    fn kind_name(&self) -> &str {
        self.get("kind").and_then(Value::as_str).unwrap_or("")
    }
    fn name(&self) -> &str {
        self.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    fn namespace(&self) -> Option<&str> {
        self.pointer("/metadata/namespace").and_then(Value::as_str)
    }
    fn uid(&self) -> Option<&str> {
        self.pointer("/metadata/uid").and_then(Value::as_str)
    }
    fn label(&self, key: &str) -> Option<&str> {
        self.pointer("/metadata/labels")?.get(key)?.as_str()
    }
    fn labels(&self) -> BTreeMap<String, String> {
        self.pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|labels| {
                labels
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A manifest that cannot be decoded into a supported kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// No `kind`.
    #[error("Object 'Kind' is missing")]
    MissingKind,
    /// No `apiVersion`.
    #[error("Object 'apiVersion' is missing")]
    MissingApiVersion,
    /// The type names no supported kind.
    #[error(transparent)]
    Kind(#[from] KindError),
    /// Fields the type does not have (Kubernetes' strict decoding).
    #[error(
        "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
        unknown_fields.iter().map(|f| format!("unknown field \"{f}\"")).collect::<Vec<_>>().join(", ")
    )]
    UnknownFields {
        /// The kind.
        kind: String,
        /// The version.
        version: String,
        /// Each unknown field's full path (`spec.containers[0].imagee`).
        unknown_fields: Vec<String>,
    },
    /// A value of the wrong type.
    #[error("{kind} in version \"{version}\" cannot be handled as a {kind}: {field}: {message}")]
    WrongType {
        /// The kind.
        kind: String,
        /// The version.
        version: String,
        /// The field's path.
        field: String,
        /// What serde found.
        message: String,
    },
}

/// Decodes `value` into `T`, collecting every field `T` ignores and the path of a type error.
fn strict<T: DeserializeOwned>(kind: Kind, value: &Value) -> Result<T, DecodeError> {
    let info = kind.info();
    let mut unknown_fields = Vec::new();
    let mut track = serde_path_to_error::Track::new();
    let result = {
        let tracked = serde_path_to_error::Deserializer::new(value, &mut track);
        serde_ignored::deserialize(tracked, |path| unknown_fields.push(ignored_path(&path)))
    };
    match result {
        Ok(_) if !unknown_fields.is_empty() => Err(DecodeError::UnknownFields {
            kind: info.kind.to_owned(),
            version: info.api_version(),
            unknown_fields,
        }),
        Ok(decoded) => Ok(decoded),
        Err(error) => Err(DecodeError::WrongType {
            kind: info.kind.to_owned(),
            version: info.api_version(),
            field: tracked_path(&track.path()),
            message: error.to_string(),
        }),
    }
}

/// `spec.containers[0].imagee` from serde_ignored's path.
fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        Path::Map { parent, key } => {
            let parent = ignored_path(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

/// `spec.containers[0].ports[0].containerPort` from serde_path_to_error's path.
fn tracked_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    out
}
