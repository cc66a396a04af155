//! Kubernetes objects: parsing, kinds, defaults and validation.

pub mod field;
pub mod kinds;
pub mod names;
pub mod object;
pub mod parse;
pub mod quantity;
pub mod schedule;
pub mod selector;
mod yaml;

pub use field::{BadValue, ErrorType, FieldError, FieldPath, Invalid, Warning};
pub use kinds::{Kind, KindError, KindInfo};
pub use object::{DecodeError, Object, ObjectKind};
pub use parse::{Document, Origin, ParseError, Source};
pub use yaml::YamlError;
