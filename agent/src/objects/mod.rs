//! Kubernetes objects: what berth accepts, and how it reads, completes and checks it.
//!
//! The path of a manifest, as the API server walks it:
//!
//! 1. [`parse`]: text (YAML 1.1 as kubectl reads it, or JSON; multi-document; `List`s; files,
//!    directories, stdin) to [`Document`]s that remember where they came from.
//! 2. [`Object::from_value`]: strict decoding into k8s-openapi types; unknown fields and wrong
//!    types are errors with the full field path.
//! 3. [`support::check_support`]: fields berth does not implement are errors or warnings.
//! 4. [`defaults::apply_defaults`]: the API server's defaults.
//! 5. [`strategy::prepare_for_create`] / [`strategy::prepare_for_update`]: identity fields and
//!    the Job's generated selector.
//! 6. [`validation`]: Kubernetes' validation rules and words, plus berth's few extra rules.
//!
//! [`admit_create`] and [`admit_update`] run steps 2-6 and are what the API calls.
//! Helpers: [`selector`] (label and field selectors), [`quantity`], [`names`]
//! (`generateName` and name rules), [`schedule`] (CronJob schedules).

pub mod defaults;
pub mod field;
pub mod kinds;
pub mod names;
pub mod object;
pub mod parse;
pub mod quantity;
pub mod schedule;
pub mod selector;
pub mod strategy;
pub mod support;
pub mod validation;
mod yaml;

pub use field::{BadValue, ErrorType, FieldError, FieldPath, Invalid, Warning};
pub use kinds::{Kind, KindError, KindInfo};
pub use object::{DecodeError, Object, ObjectKind};
pub use parse::{Document, Origin, ParseError, Source};
pub use strategy::CreateContext;
pub use yaml::YamlError;

use serde_json::Value;

/// An object accepted for storage, with the warnings to show the user.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    /// The decoded, defaulted, validated object.
    pub object: Object,
    /// Fields berth accepted but ignores or handles differently.
    pub warnings: Vec<Warning>,
}

/// Why an object was not accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AdmitError {
    /// The manifest could not be decoded (HTTP 400 in Kubernetes).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The object is invalid or uses what berth does not support (HTTP 422).
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// An update changes the object's kind.
    #[error("cannot change the kind of {name:?} from {old} to {new}")]
    KindChanged {
        /// The object's name.
        name: String,
        /// The stored kind.
        old: Kind,
        /// The kind in the request.
        new: Kind,
    },
}

/// Decodes, checks, defaults and validates a new object. Nothing is changed anywhere: the
/// caller stores `Admitted::object` (as `to_value()`) only on success.
pub fn admit_create(manifest: &Value, context: &CreateContext) -> Result<Admitted, AdmitError> {
    let mut object = Object::from_value(manifest)?;
    let support = support::check_support(&object);
    defaults::apply_defaults(&mut object);
    strategy::prepare_for_create(&mut object, context);
    let mut errors = support.errors;
    errors.extend(validation::validate_object(&object));
    if !errors.is_empty() {
        return Err(invalid(&object, errors).into());
    }
    Ok(Admitted {
        object,
        warnings: support.warnings,
    })
}

/// Decodes, checks, defaults and validates the replacement of a stored object.
pub fn admit_update(stored: &Object, manifest: &Value) -> Result<Admitted, AdmitError> {
    let mut object = Object::from_value(manifest)?;
    if object.kind() != stored.kind() {
        return Err(AdmitError::KindChanged {
            name: stored.name().to_owned(),
            old: stored.kind(),
            new: object.kind(),
        });
    }
    let support = support::check_support(&object);
    defaults::apply_defaults(&mut object);
    strategy::prepare_for_update(stored, &mut object);
    let mut errors = support.errors;
    errors.extend(validation::validate_object_update(stored, &object));
    if !errors.is_empty() {
        return Err(invalid(&object, errors).into());
    }
    Ok(Admitted {
        object,
        warnings: support.warnings,
    })
}

fn invalid(object: &Object, errors: Vec<FieldError>) -> Invalid {
    Invalid::new(object.kind(), object.name(), errors)
}
