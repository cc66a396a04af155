//! Field errors in the shape of Kubernetes' `field.Error`, and the `Invalid` error that
//! aggregates them the way the API server does (`Pod "web" is invalid: [a: ..., b: ...]`).

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};

use super::kinds::Kind;

/// A path to a field, rendered as Kubernetes renders `field.Path`:
/// `spec.containers[0].name`, `metadata.labels[app]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(String);

impl FieldPath {
    /// A path starting at the named top-level field.
    pub fn new(name: &str) -> Self {
        FieldPath(name.to_owned())
    }

    /// The empty path (an error about the whole object).
    pub fn root() -> Self {
        FieldPath(String::new())
    }

    /// The path of a child field.
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            FieldPath(name.to_owned())
        } else {
            FieldPath(format!("{}.{name}", self.0))
        }
    }

    /// The path of several nested child fields.
    pub fn children(&self, names: &[&str]) -> Self {
        names
            .iter()
            .fold(self.clone(), |path, name| path.child(name))
    }

    /// The path of a list element.
    pub fn index(&self, index: usize) -> Self {
        FieldPath(format!("{}[{index}]", self.0))
    }

    /// The path of a map entry (`labels[app]`: Kubernetes does not quote the key).
    pub fn key(&self, key: &str) -> Self {
        FieldPath(format!("{}[{key}]", self.0))
    }

    /// The rendered path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The kind of a field error; `Display` gives Kubernetes' words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorType {
    /// `Not found`: a reference to something that does not exist.
    NotFound,
    /// `Required value`.
    Required,
    /// `Duplicate value`.
    Duplicate,
    /// `Invalid value`.
    Invalid,
    /// `Unsupported value`: not one of an enumerated set.
    NotSupported,
    /// `Forbidden`.
    Forbidden,
    /// `Too long`.
    TooLong,
    /// `Too many`.
    TooMany,
}

impl ErrorType {
    /// The words Kubernetes prints for this error type.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::NotFound => "Not found",
            ErrorType::Required => "Required value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::Invalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
        }
    }

    /// The `reason` of a `StatusCause` carrying this error (`FieldValueInvalid`, ...).
    pub fn reason(self) -> &'static str {
        match self {
            ErrorType::NotFound => "FieldValueNotFound",
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
        }
    }
}

impl fmt::Display for ErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The offending value of a field error, printed as the API server prints it.
#[derive(Clone, Debug, PartialEq)]
pub enum BadValue {
    /// No value is printed (`Required`, `Forbidden`, or a value too large to show).
    Omitted,
    /// A string, printed quoted.
    Str(String),
    /// An integer, printed bare.
    Int(i64),
    /// A boolean, printed bare.
    Bool(bool),
    /// An absent optional value, printed `null`.
    Null,
    /// A string map such as labels, printed like Go's `%#v`:
    /// `map[string]string{"app":"web"}`.
    StringMap(BTreeMap<String, String>),
    /// Any other structured value, printed as compact JSON.
    Json(serde_json::Value),
}

impl From<&str> for BadValue {
    fn from(value: &str) -> Self {
        BadValue::Str(value.to_owned())
    }
}

impl From<String> for BadValue {
    fn from(value: String) -> Self {
        BadValue::Str(value)
    }
}

impl From<&String> for BadValue {
    fn from(value: &String) -> Self {
        BadValue::Str(value.clone())
    }
}

impl From<i64> for BadValue {
    fn from(value: i64) -> Self {
        BadValue::Int(value)
    }
}

impl From<i32> for BadValue {
    fn from(value: i32) -> Self {
        BadValue::Int(i64::from(value))
    }
}

impl From<usize> for BadValue {
    fn from(value: usize) -> Self {
        BadValue::Int(i64::try_from(value).unwrap_or(i64::MAX))
    }
}

impl From<bool> for BadValue {
    fn from(value: bool) -> Self {
        BadValue::Bool(value)
    }
}

impl BadValue {
    /// A value rendered as compact JSON (for structs and lists).
    pub fn json<T: serde::Serialize>(value: &T) -> Self {
        match serde_json::to_value(value) {
            Ok(serde_json::Value::Null) => BadValue::Null,
            Ok(value) => BadValue::Json(value),
            Err(_) => BadValue::Omitted,
        }
    }

    /// A string map (labels, a selector's matchLabels); absent maps print as `map[string]string(nil)`
    /// in Go, here as an empty map.
    pub fn string_map(map: Option<&BTreeMap<String, String>>) -> Self {
        BadValue::StringMap(map.cloned().unwrap_or_default())
    }
}

fn go_quote(value: &str) -> String {
    // Go's %q and JSON agree for the strings that appear in manifests.
    serde_json::to_string(value).unwrap_or_else(|_| format!("\"{value}\""))
}

impl fmt::Display for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadValue::Omitted => Ok(()),
            BadValue::Str(value) => f.write_str(&go_quote(value)),
            BadValue::Int(value) => write!(f, "{value}"),
            BadValue::Bool(value) => write!(f, "{value}"),
            BadValue::Null => f.write_str("null"),
            BadValue::StringMap(map) => {
                f.write_str("map[string]string{")?;
                for (i, (key, value)) in map.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}:{}", go_quote(key), go_quote(value))?;
                }
                f.write_str("}")
            }
            BadValue::Json(value) => write!(f, "{value}"),
        }
    }
}

/// One validation error about one field, as Kubernetes' `field.Error`.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    /// The error type.
    pub error_type: ErrorType,
    /// The field, rendered (`spec.replicas`).
    pub field: String,
    /// The offending value.
    pub bad_value: BadValue,
    /// What is wrong, in Kubernetes' words.
    pub detail: String,
}

impl FieldError {
    fn new(error_type: ErrorType, path: &FieldPath, bad_value: BadValue, detail: &str) -> Self {
        FieldError {
            error_type,
            field: path.as_str().to_owned(),
            bad_value,
            detail: detail.to_owned(),
        }
    }

    /// `Required value[: detail]`.
    pub fn required(path: &FieldPath, detail: &str) -> Self {
        Self::new(ErrorType::Required, path, BadValue::Omitted, detail)
    }

    /// `Invalid value: <value>: detail`.
    pub fn invalid(path: &FieldPath, value: impl Into<BadValue>, detail: &str) -> Self {
        Self::new(ErrorType::Invalid, path, value.into(), detail)
    }

    /// `Duplicate value: <value>`.
    pub fn duplicate(path: &FieldPath, value: impl Into<BadValue>) -> Self {
        Self::new(ErrorType::Duplicate, path, value.into(), "")
    }

    /// `Not found: <value>`.
    pub fn not_found(path: &FieldPath, value: impl Into<BadValue>) -> Self {
        Self::new(ErrorType::NotFound, path, value.into(), "")
    }

    /// `Forbidden: detail`.
    pub fn forbidden(path: &FieldPath, detail: &str) -> Self {
        Self::new(ErrorType::Forbidden, path, BadValue::Omitted, detail)
    }

    /// `Too long: may not be more than <max> bytes`.
    pub fn too_long(path: &FieldPath, max: usize) -> Self {
        Self::new(
            ErrorType::TooLong,
            path,
            BadValue::Omitted,
            &format!("may not be more than {max} bytes"),
        )
    }

    /// `Too many: <actual>: must have at most <max> items`.
    pub fn too_many(path: &FieldPath, actual: usize, max: usize) -> Self {
        Self::new(
            ErrorType::TooMany,
            path,
            BadValue::from(actual),
            &format!("must have at most {max} items"),
        )
    }

    /// `Unsupported value: <value>: supported values: "a", "b"`, the values in the given order.
    pub fn not_supported(path: &FieldPath, value: impl Into<BadValue>, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
        let detail = if list.is_empty() {
            String::new()
        } else {
            format!("supported values: {}", list.join(", "))
        };
        Self::new(ErrorType::NotSupported, path, value.into(), &detail)
    }

    /// The message without the field: `Invalid value: -1: must be greater than or equal to 0`.
    pub fn body(&self) -> String {
        let mut body = match (&self.error_type, &self.bad_value) {
            (ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong, _)
            | (_, BadValue::Omitted) => self.error_type.as_str().to_owned(),
            (error_type, value) => format!("{error_type}: {value}"),
        };
        if !self.detail.is_empty() {
            body.push_str(": ");
            body.push_str(&self.detail);
        }
        body
    }

    /// The cause to put in a `Status`' `details.causes`.
    pub fn to_status_cause(&self) -> StatusCause {
        StatusCause {
            field: Some(self.field.clone()),
            message: Some(self.body()),
            reason: Some(self.error_type.reason().to_owned()),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.body())
        } else {
            write!(f, "{}: {}", self.field, self.body())
        }
    }
}

/// An object failed validation: Kubernetes' `StatusReasonInvalid` (HTTP 422).
#[derive(Clone, Debug, PartialEq)]
pub struct Invalid {
    /// The object's kind.
    pub kind: Kind,
    /// The object's name (may be empty when the name itself is missing).
    pub name: String,
    /// The errors, in the order they were found, duplicates removed.
    pub errors: Vec<FieldError>,
}

impl Invalid {
    /// Builds the error, dropping duplicate messages as Kubernetes' aggregate does.
    pub fn new(kind: Kind, name: &str, errors: Vec<FieldError>) -> Self {
        let mut seen = std::collections::HashSet::new();
        let errors = errors
            .into_iter()
            .filter(|error| seen.insert(error.to_string()))
            .collect();
        Invalid {
            kind,
            name: name.to_owned(),
            errors,
        }
    }

    /// The `Status` the API returns for this error.
    pub fn to_status(&self) -> Status {
        let info = self.kind.info();
        Status {
            code: Some(422),
            message: Some(self.to_string()),
            reason: Some("Invalid".to_owned()),
            status: Some("Failure".to_owned()),
            details: Some(StatusDetails {
                causes: Some(
                    self.errors
                        .iter()
                        .map(FieldError::to_status_cause)
                        .collect(),
                ),
                group: Some(info.group.to_owned()),
                kind: Some(info.kind.to_owned()),
                name: Some(self.name.clone()),
                retry_after_seconds: None,
                uid: None,
            }),
            metadata: Default::default(),
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} is invalid: ",
            self.kind.qualified_kind(),
            go_quote(&self.name)
        )?;
        match self.errors.as_slice() {
            [] => f.write_str("<nil>"),
            [one] => write!(f, "{one}"),
            many => {
                f.write_str("[")?;
                for (i, error) in many.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{error}")?;
                }
                f.write_str("]")
            }
        }
    }
}

impl std::error::Error for Invalid {}

/// A message the API returns with a successful request (`Warning:` header in Kubernetes):
/// a field berth accepts but ignores, or handles differently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// The field, rendered.
    pub field: String,
    /// What berth does with it.
    pub message: String,
}

impl Warning {
    /// A warning about a field.
    pub fn new(path: &FieldPath, message: impl Into<String>) -> Self {
        Warning {
            field: path.as_str().to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}
