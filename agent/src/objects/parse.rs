//! Reading manifests: YAML or JSON text, multi-document streams, `List` kinds, files,
//! directories and stdin. Each document keeps where it came from for error messages.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::yaml::{YamlError, documents_to_json};

/// Where a stream of manifests came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A file.
    File(PathBuf),
    /// Standard input.
    Stdin,
    /// Text handed over directly (an API request body, a test); the name is for messages.
    Inline(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Stdin => f.write_str("STDIN"),
            Origin::Inline(name) => f.write_str(name),
        }
    }
}

/// Where one manifest came from: the stream, the document (1-based) and, for a document
/// that was a `List`, the item index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// The stream.
    pub origin: Origin,
    /// 1-based document number within the stream.
    pub document: usize,
    /// The index in the `items` of a `List` document.
    pub item: Option<usize>,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (document {}", self.origin, self.document)?;
        if let Some(item) = self.item {
            write!(f, ", items[{item}]")?;
        }
        f.write_str(")")
    }
}

/// One manifest, as JSON, not yet decoded into a kind.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// Where it came from.
    pub source: Source,
    /// The manifest.
    pub value: Value,
}

/// A manifest stream that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The file or directory could not be read.
    #[error("error reading {path}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Standard input could not be read.
    #[error("error reading STDIN")]
    ReadStdin(#[source] std::io::Error),
    /// The text is not valid UTF-8.
    #[error("error parsing {origin}: the text is not valid UTF-8")]
    NotUtf8 {
        /// The stream.
        origin: Origin,
    },
    /// Malformed YAML.
    #[error("error parsing {origin}: error converting YAML to JSON: yaml: {error}")]
    Yaml {
        /// The stream.
        origin: Origin,
        /// The problem and its position.
        error: YamlError,
    },
    /// Malformed JSON.
    #[error("error parsing {origin}: line {line}, column {column}: {message}")]
    Json {
        /// The stream.
        origin: Origin,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A document that is not a mapping (a bare string, a list).
    #[error("error parsing {at}: a manifest must be a mapping (an object), found {found}")]
    NotAnObject {
        /// The document.
        at: Source,
        /// What it was instead.
        found: &'static str,
    },
    /// A document without `apiVersion` or `kind` (kubectl's words).
    #[error("error validating {at}: error validating data: {missing}")]
    MissingType {
        /// The document.
        at: Source,
        /// `apiVersion not set`, `kind not set` or both.
        missing: String,
    },
    /// A `List` whose `items` is not a list.
    #[error("error parsing {at}: items of a {kind} must be a list")]
    BadList {
        /// The document.
        at: Source,
        /// The list kind.
        kind: String,
    },
    /// A path that is neither a manifest file nor a directory.
    #[error("error reading {path}: no manifests found (expected .yaml, .yml or .json files)")]
    NoManifests {
        /// The path.
        path: PathBuf,
    },
}

/// Parses a YAML or JSON stream into its manifests, in order. Empty documents are skipped;
/// `List` documents are expanded into their items.
pub fn parse_text(origin: Origin, text: &str) -> Result<Vec<Document>, ParseError> {
    let values = if looks_like_json(text) {
        json_values(&origin, text)?
    } else {
        documents_to_json(text).map_err(|error| ParseError::Yaml {
            origin: origin.clone(),
            error,
        })?
    };
    let mut documents = Vec::new();
    for (index, value) in values.into_iter().enumerate() {
        let source = Source {
            origin: origin.clone(),
            document: index + 1,
            item: None,
        };
        match value {
            Value::Null => continue,
            Value::Object(_) => expand(source, value, &mut documents)?,
            other => {
                return Err(ParseError::NotAnObject {
                    at: source,
                    found: json_type(&other),
                });
            }
        }
    }
    Ok(documents)
}

/// Reads the manifests in a file, or in a directory's `*.yaml`, `*.yml` and `*.json` files in
/// name order (descending into subdirectories only when `recursive`). `-` reads stdin.
pub fn read_path(path: &Path, recursive: bool) -> Result<Vec<Document>, ParseError> {
    if path == Path::new("-") {
        return read_stdin();
    }
    let metadata = std::fs::metadata(path).map_err(|source| ParseError::Read {
        path: path.to_owned(),
        source,
    })?;
    if !metadata.is_dir() {
        return read_file(path);
    }
    let mut files = Vec::new();
    collect_manifest_files(path, recursive, &mut files)?;
    if files.is_empty() {
        return Err(ParseError::NoManifests {
            path: path.to_owned(),
        });
    }
    let mut documents = Vec::new();
    for file in files {
        documents.extend(read_file(&file)?);
    }
    Ok(documents)
}

/// Reads the manifests in one file.
pub fn read_file(path: &Path) -> Result<Vec<Document>, ParseError> {
    let bytes = std::fs::read(path).map_err(|source| ParseError::Read {
        path: path.to_owned(),
        source,
    })?;
    let origin = Origin::File(path.to_owned());
    let text = String::from_utf8(bytes).map_err(|_| ParseError::NotUtf8 {
        origin: origin.clone(),
    })?;
    parse_text(origin, &text)
}

/// Reads the manifests on standard input.
pub fn read_stdin() -> Result<Vec<Document>, ParseError> {
    read_from(std::io::stdin().lock(), Origin::Stdin)
}

/// Reads the manifests from any reader.
pub fn read_from(mut reader: impl Read, origin: Origin) -> Result<Vec<Document>, ParseError> {
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .map_err(|error| match &origin {
            Origin::File(path) => ParseError::Read {
                path: path.clone(),
                source: error,
            },
            _ => ParseError::ReadStdin(error),
        })?;
    let text = String::from_utf8(bytes).map_err(|_| ParseError::NotUtf8 {
        origin: origin.clone(),
    })?;
    parse_text(origin, &text)
}

fn collect_manifest_files(
    dir: &Path,
    recursive: bool,
    files: &mut Vec<PathBuf>,
) -> Result<(), ParseError> {
    let read_error = |source| ParseError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_error)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(read_error)?;
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            if recursive {
                collect_manifest_files(&entry, recursive, files)?;
            }
        } else if matches!(
            entry.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            files.push(entry);
        }
    }
    Ok(())
}

fn looks_like_json(text: &str) -> bool {
    matches!(text.trim_start().chars().next(), Some('{' | '['))
}

fn json_values(origin: &Origin, text: &str) -> Result<Vec<Value>, ParseError> {
    let stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    stream
        .map(|item| {
            item.map_err(|error| ParseError::Json {
                origin: origin.clone(),
                line: error.line(),
                column: error.column(),
                message: {
                    // serde_json appends the position, which the error already carries.
                    let text = error.to_string();
                    match text.rsplit_once(" at line ") {
                        Some((message, _)) => message.to_owned(),
                        None => text,
                    }
                },
            })
        })
        .collect()
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Checks `apiVersion` and `kind`, and expands a `List` (or `PodList`, ...) into its items.
fn expand(source: Source, value: Value, out: &mut Vec<Document>) -> Result<(), ParseError> {
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
    let mut missing = Vec::new();
    if api_version.is_empty() {
        missing.push("apiVersion not set");
    }
    if kind.is_empty() {
        missing.push("kind not set");
    }
    if !missing.is_empty() {
        let missing = if missing.len() == 1 {
            missing[0].to_owned()
        } else {
            format!("[{}]", missing.join(", "))
        };
        return Err(ParseError::MissingType {
            at: source,
            missing,
        });
    }
    if !kind.ends_with("List") {
        out.push(Document { source, value });
        return Ok(());
    }
    // `List` items carry their own type; the items of a typed list (`PodList`) may leave it out.
    let item_kind = kind.strip_suffix("List").unwrap_or_default().to_owned();
    let list_kind = kind.to_owned();
    let list_api_version = api_version.to_owned();
    let items = match value.get("items") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Array(items)) => items.clone(),
        Some(_) => {
            return Err(ParseError::BadList {
                at: source,
                kind: list_kind,
            });
        }
    };
    for (index, mut item) in items.into_iter().enumerate() {
        let item_source = Source {
            item: Some(index),
            ..source.clone()
        };
        let Value::Object(map) = &mut item else {
            return Err(ParseError::NotAnObject {
                at: item_source,
                found: json_type(&item),
            });
        };
        if !item_kind.is_empty() {
            map.entry("kind")
                .or_insert_with(|| Value::String(item_kind.clone()));
            map.entry("apiVersion")
                .or_insert_with(|| Value::String(list_api_version.clone()));
        }
        expand(item_source, item, out)?;
    }
    Ok(())
}
