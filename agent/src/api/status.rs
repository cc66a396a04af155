//! API failures as Kubernetes reports them: a `Status` object with code, reason and message,
//! worded as the API server words them so kubectl users recognise them.

use serde_json::{Value, json};

/// One cause of an Invalid error: a field path, a type (`FieldValueRequired`, ...) and a
/// message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub reason: String,
    pub field: String,
    pub message: String,
}

/// A failed API request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: u16,
    /// Kubernetes' StatusReason: NotFound, AlreadyExists, Conflict, Invalid, BadRequest,
    /// MethodNotAllowed, Gone (Expired), ServiceUnavailable, InternalError, Forbidden...
    pub reason: &'static str,
    pub message: String,
    /// `details`: name, group, kind of the object concerned, when known.
    pub details: Option<Details>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Details {
    pub name: String,
    pub group: String,
    pub kind: String,
    pub causes: Vec<Cause>,
}

/// `pods` or `statefulsets.apps`, as Kubernetes names a resource in its messages.
pub fn qualified_resource(plural: &str, group: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, name: &str, group: &str, kind: &str) -> ApiError {
        self.details = Some(Details {
            name: name.into(),
            group: group.into(),
            kind: kind.into(),
            causes: vec![],
        });
        self
    }

    /// `pods "web-0" not found`
    pub fn not_found(plural: &str, group: &str, name: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified_resource(plural, group)),
        )
        .with_details(name, group, plural)
    }

    /// `pods "web-0" already exists`
    pub fn already_exists(plural: &str, group: &str, name: &str) -> ApiError {
        ApiError::new(
            409,
            "AlreadyExists",
            format!(
                "{} \"{name}\" already exists",
                qualified_resource(plural, group)
            ),
        )
        .with_details(name, group, plural)
    }

    /// `Operation cannot be fulfilled on pods "web-0": <why>`
    pub fn conflict(plural: &str, group: &str, name: &str, why: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                qualified_resource(plural, group)
            ),
        )
        .with_details(name, group, plural)
    }

    /// `Pod "web" is invalid: spec.containers[0].image: Required value`
    pub fn invalid(
        kind: &str,
        group: &str,
        name: &str,
        message: String,
        causes: Vec<Cause>,
    ) -> ApiError {
        let mut e = ApiError::new(422, "Invalid", message).with_details(name, group, kind);
        if let Some(d) = e.details.as_mut() {
            d.causes = causes;
        }
        e
    }

    /// A patch that cannot be applied to the object (a failed JSON patch test, a missing path).
    pub fn invalid_patch(message: impl Into<String>) -> ApiError {
        ApiError::new(
            422,
            "Invalid",
            format!(
                "the server rejected our request due to an error in our request: {}",
                message.into()
            ),
        )
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/merge-patch+json, application/apply-patch+yaml (got {content_type:?})"
            ),
        )
    }

    pub fn not_found_path(path: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    /// A watch or list from a resourceVersion that is no longer in history.
    pub fn gone(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(413, "RequestEntityTooLarge", message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(503, "ServiceUnavailable", message)
    }

    pub fn timeout(message: impl Into<String>) -> ApiError {
        ApiError::new(504, "Timeout", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "Forbidden", message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    /// The `Status` object for this error.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            let mut details = json!({});
            if !d.name.is_empty() {
                details["name"] = json!(d.name);
            }
            if !d.group.is_empty() {
                details["group"] = json!(d.group);
            }
            if !d.kind.is_empty() {
                details["kind"] = json!(d.kind);
            }
            if !d.causes.is_empty() {
                details["causes"] = d
                    .causes
                    .iter()
                    .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                    .collect();
            }
            status["details"] = details;
        }
        status
    }
}

/// The `Status` a successful delete of an object without graceful termination returns.
pub fn success_status(name: &str, group: &str, kind: &str, uid: &str) -> Value {
    let mut details = json!({"name": name, "kind": kind, "uid": uid});
    if !group.is_empty() {
        details["group"] = json!(group);
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_worded_as_kubernetes_words_them() {
        assert_eq!(
            ApiError::not_found("pods", "", "web-0").message,
            "pods \"web-0\" not found"
        );
        assert_eq!(
            ApiError::already_exists("statefulsets", "apps", "web").message,
            "statefulsets.apps \"web\" already exists"
        );
        assert_eq!(
            ApiError::conflict("pods", "", "web-0", "the object has been modified; please apply your changes to the latest version and try again").message,
            "Operation cannot be fulfilled on pods \"web-0\": the object has been modified; please apply your changes to the latest version and try again"
        );
    }

    #[test]
    fn a_status_carries_code_reason_and_details() {
        let cause = Cause {
            reason: "FieldValueRequired".into(),
            field: "spec.containers[0].image".into(),
            message: "Required value".into(),
        };
        let e = ApiError::invalid(
            "Pod",
            "",
            "web",
            "Pod \"web\" is invalid: spec.containers[0].image: Required value".into(),
            vec![cause],
        );
        let s = e.to_status();
        assert_eq!(s["code"], 422);
        assert_eq!(s["reason"], "Invalid");
        assert_eq!(s["details"]["kind"], "Pod");
        assert_eq!(
            s["details"]["causes"][0]["field"],
            "spec.containers[0].image"
        );
        assert!(s["details"].get("group").is_none());
    }
}
