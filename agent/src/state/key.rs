//! The identity of a stored object: (kind, namespace, name).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::outcome::Rejection;

/// The key of a stored object: its kind, namespace and name.
///
/// Kinds are unique by name in berth (`Pod`, `Service`, `StatefulSet`, `Node`, ...), so the API
/// group is not part of the key. The namespace is empty for cluster-scoped kinds. Keys order by
/// kind, then namespace, then name, which is the order `list` returns objects in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectKey {
    /// The object's `kind`, e.g. `Pod`.
    pub kind: String,
    /// `metadata.namespace`, empty for cluster-scoped kinds.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl ObjectKey {
    /// Builds a key from its three parts.
    pub fn new(
        kind: impl Into<String>,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> ObjectKey {
        ObjectKey {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Reads the key of a Kubernetes-shaped object: `kind`, `metadata.namespace` (absent means
    /// cluster-scoped) and `metadata.name`.
    ///
    /// Fails with [`Rejection::Invalid`] naming the field when the object is not a JSON object,
    /// or when `kind` or `metadata.name` is missing, empty or not a string.
    pub fn of(object: &Value) -> Result<ObjectKey, Rejection> {
        let invalid = |field: &str, message: &str| Rejection::Invalid {
            field: field.to_string(),
            message: message.to_string(),
        };
        let Some(map) = object.as_object() else {
            return Err(invalid("object", "must be a JSON object"));
        };
        let kind = match map.get("kind") {
            Some(Value::String(kind)) if !kind.is_empty() => kind.clone(),
            Some(Value::String(_)) | None => return Err(invalid("kind", "must be set")),
            Some(_) => return Err(invalid("kind", "must be a string")),
        };
        let metadata = match map.get("metadata") {
            Some(Value::Object(metadata)) => metadata,
            Some(_) => return Err(invalid("metadata", "must be an object")),
            None => return Err(invalid("metadata.name", "must be set")),
        };
        let name = match metadata.get("name") {
            Some(Value::String(name)) if !name.is_empty() => name.clone(),
            Some(Value::String(_)) | None => return Err(invalid("metadata.name", "must be set")),
            Some(_) => return Err(invalid("metadata.name", "must be a string")),
        };
        let namespace = match metadata.get("namespace") {
            Some(Value::String(namespace)) => namespace.clone(),
            None | Some(Value::Null) => String::new(),
            Some(_) => return Err(invalid("metadata.namespace", "must be a string")),
        };
        Ok(ObjectKey {
            kind,
            namespace,
            name,
        })
    }

    /// True when the key belongs to `kind` (any kind when `None`) and `namespace` (any namespace
    /// when `None`).
    pub fn matches(&self, kind: Option<&str>, namespace: Option<&str>) -> bool {
        kind.is_none_or(|kind| self.kind == kind)
            && namespace.is_none_or(|namespace| self.namespace == namespace)
    }
}

impl fmt::Display for ObjectKey {
    /// `Kind namespace/name`, or `Kind name` for cluster-scoped objects.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn key_of_a_namespaced_object_reads_kind_namespace_and_name() {
        let key = ObjectKey::of(&json!({
            "kind": "Pod", "metadata": {"namespace": "db", "name": "pg-0"}
        }))
        .unwrap();
        assert_eq!(key, ObjectKey::new("Pod", "db", "pg-0"));
        assert_eq!(key.to_string(), "Pod db/pg-0");
    }

    #[test]
    fn key_of_a_cluster_scoped_object_has_an_empty_namespace() {
        let key = ObjectKey::of(&json!({"kind": "Node", "metadata": {"name": "h1"}})).unwrap();
        assert_eq!(key, ObjectKey::new("Node", "", "h1"));
        assert_eq!(key.to_string(), "Node h1");
    }

    #[test]
    fn key_of_an_incomplete_object_names_the_missing_field() {
        let cases = [
            (json!([]), "object"),
            (json!({"metadata": {"name": "a"}}), "kind"),
            (json!({"kind": 3, "metadata": {"name": "a"}}), "kind"),
            (json!({"kind": "Pod"}), "metadata.name"),
            (
                json!({"kind": "Pod", "metadata": {"name": ""}}),
                "metadata.name",
            ),
            (
                json!({"kind": "Pod", "metadata": {"name": "a", "namespace": 1}}),
                "metadata.namespace",
            ),
        ];
        for (object, field) in cases {
            match ObjectKey::of(&object) {
                Err(Rejection::Invalid { field: got, .. }) => assert_eq!(got, field, "{object}"),
                other => panic!("{object}: expected invalid {field}, got {other:?}"),
            }
        }
    }
}
