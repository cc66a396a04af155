//! Label selectors (`-l 'app=web,tier in (db,cache),!canary'` and `LabelSelector` objects) and
//! field selectors (`--field-selector spec.nodeName=node-1`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

use super::names;

/// Something with labels a selector can look at.
pub trait LabelSet {
    /// The value of one label.
    fn get_label(&self, key: &str) -> Option<&str>;
}

impl LabelSet for BTreeMap<String, String> {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl LabelSet for HashMap<String, String> {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl LabelSet for serde_json::Map<String, Value> {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
}

impl<T: LabelSet> LabelSet for Option<T> {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.as_ref()?.get_label(key)
    }
}

impl<T: LabelSet + ?Sized> LabelSet for &T {
    fn get_label(&self, key: &str) -> Option<&str> {
        (**self).get_label(key)
    }
}

/// One requirement of a label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// `key=value`, `key==value`, `key in (a,b)`: present with one of the values.
    In(String, BTreeSet<String>),
    /// `key!=value`, `key notin (a,b)`: absent, or present with none of the values.
    NotIn(String, BTreeSet<String>),
    /// `key`: present.
    Exists(String),
    /// `!key`: absent.
    DoesNotExist(String),
    /// `key>5`: present with an integer value greater than the bound.
    GreaterThan(String, i64),
    /// `key<5`: present with an integer value less than the bound.
    LessThan(String, i64),
}

impl Requirement {
    fn matches(&self, labels: &dyn LabelSet) -> bool {
        match self {
            Requirement::In(key, values) => {
                labels.get_label(key).is_some_and(|v| values.contains(v))
            }
            Requirement::NotIn(key, values) => {
                labels.get_label(key).is_none_or(|v| !values.contains(v))
            }
            Requirement::Exists(key) => labels.get_label(key).is_some(),
            Requirement::DoesNotExist(key) => labels.get_label(key).is_none(),
            Requirement::GreaterThan(key, bound) => labels
                .get_label(key)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v > *bound),
            Requirement::LessThan(key, bound) => labels
                .get_label(key)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v < *bound),
        }
    }
}

/// A label selector: requirements that must all hold. `Selector::nothing()` matches nothing
/// (a missing selector); an empty selector matches everything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

/// A selector that cannot be parsed or is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The `-l` text is malformed.
    #[error("unable to parse requirement: {message} in {text:?}")]
    Syntax {
        /// The selector.
        text: String,
        /// What is wrong.
        message: String,
    },
    /// A key is not a valid label key.
    #[error("invalid label key {key:?}: {message}")]
    Key {
        /// The key.
        key: String,
        /// Why.
        message: String,
    },
    /// A value is not a valid label value.
    #[error("invalid label value: {value:?}: {message}")]
    Value {
        /// The value.
        value: String,
        /// Why.
        message: String,
    },
    /// A `matchExpressions` entry is not valid.
    #[error("{0}")]
    Expression(String),
}

impl Selector {
    /// A selector that matches every object.
    pub fn everything() -> Self {
        Selector {
            requirements: Vec::new(),
            nothing: false,
        }
    }

    /// A selector that matches no object.
    pub fn nothing() -> Self {
        Selector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Whether the selector selects everything.
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// The requirements.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether the labels satisfy every requirement.
    pub fn matches(&self, labels: &dyn LabelSet) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Parses kubectl's `-l` syntax: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`,
    /// `!a`, `a>1`, `a<1`, joined with commas.
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let mut parser = SelectorParser {
            text,
            chars: text.char_indices().peekable(),
        };
        let mut requirements = Vec::new();
        parser.skip_spaces();
        if parser.chars.peek().is_none() {
            return Ok(Selector::everything());
        }
        loop {
            requirements.push(parser.requirement()?);
            parser.skip_spaces();
            match parser.chars.next() {
                None => break,
                Some((_, ',')) => continue,
                Some((_, c)) => return Err(parser.error(&format!("found '{c}', expected: ','"))),
            }
        }
        for requirement in &requirements {
            validate_requirement(requirement)?;
        }
        Ok(Selector {
            requirements,
            nothing: false,
        })
    }

    /// Converts a `LabelSelector` object. `None` selects nothing, `{}` selects everything.
    pub fn from_label_selector(
        selector: Option<&LabelSelector>,
    ) -> Result<Selector, SelectorError> {
        let Some(selector) = selector else {
            return Ok(Selector::nothing());
        };
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement::In(
                key.clone(),
                BTreeSet::from([value.clone()]),
            ));
        }
        for expression in selector.match_expressions.iter().flatten() {
            let values: BTreeSet<String> = expression.values.iter().flatten().cloned().collect();
            let key = expression.key.clone();
            let requirement = match expression.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(SelectorError::Expression(format!(
                        "for 'in', 'notin' operators, values set can't be empty (key {key:?})"
                    )));
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(SelectorError::Expression(format!(
                        "values set must be empty for exists and does not exist (key {key:?})"
                    )));
                }
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                other => {
                    return Err(SelectorError::Expression(format!(
                        "{other:?} is not a valid label selector operator"
                    )));
                }
            };
            requirements.push(requirement);
        }
        for requirement in &requirements {
            validate_requirement(requirement)?;
        }
        Ok(Selector {
            requirements,
            nothing: false,
        })
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| match r {
                Requirement::In(k, v) if v.len() == 1 => format!("{k}={}", first(v)),
                Requirement::In(k, v) => format!("{k} in ({})", join(v)),
                Requirement::NotIn(k, v) if v.len() == 1 => format!("{k}!={}", first(v)),
                Requirement::NotIn(k, v) => format!("{k} notin ({})", join(v)),
                Requirement::Exists(k) => k.clone(),
                Requirement::DoesNotExist(k) => format!("!{k}"),
                Requirement::GreaterThan(k, n) => format!("{k}>{n}"),
                Requirement::LessThan(k, n) => format!("{k}<{n}"),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

fn first(values: &BTreeSet<String>) -> &str {
    values.iter().next().map(String::as_str).unwrap_or("")
}

fn join(values: &BTreeSet<String>) -> String {
    values.iter().cloned().collect::<Vec<_>>().join(",")
}

fn validate_requirement(requirement: &Requirement) -> Result<(), SelectorError> {
    let (key, values): (&str, Option<&BTreeSet<String>>) = match requirement {
        Requirement::In(k, v) | Requirement::NotIn(k, v) => (k, Some(v)),
        Requirement::Exists(k)
        | Requirement::DoesNotExist(k)
        | Requirement::GreaterThan(k, _)
        | Requirement::LessThan(k, _) => (k, None),
    };
    if let Some(message) = names::qualified_name(key).into_iter().next() {
        return Err(SelectorError::Key {
            key: key.to_owned(),
            message,
        });
    }
    for value in values.into_iter().flatten() {
        if let Some(message) = names::label_value(value).into_iter().next() {
            return Err(SelectorError::Value {
                value: value.clone(),
                message,
            });
        }
    }
    Ok(())
}

struct SelectorParser<'a> {
    text: &'a str,
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
}

impl SelectorParser<'_> {
    fn error(&self, message: &str) -> SelectorError {
        SelectorError::Syntax {
            text: self.text.to_owned(),
            message: message.to_owned(),
        }
    }

    fn skip_spaces(&mut self) {
        while self.chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
    }

    /// A key, a value or a keyword: everything up to a space or an operator character.
    fn word(&mut self) -> String {
        let mut word = String::new();
        while let Some((_, c)) = self
            .chars
            .next_if(|(_, c)| !c.is_whitespace() && !"=!<>,()".contains(*c))
        {
            word.push(c);
        }
        word
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        self.skip_spaces();
        if self.chars.next_if(|(_, c)| *c == '!').is_some() {
            self.skip_spaces();
            let key = self.word();
            if key.is_empty() {
                return Err(self.error("found '', expected: identifier after '!'"));
            }
            return Ok(Requirement::DoesNotExist(key));
        }
        let key = self.word();
        if key.is_empty() {
            let found = self
                .chars
                .peek()
                .map(|(_, c)| c.to_string())
                .unwrap_or_default();
            return Err(self.error(&format!(
                "found '{found}', expected: !, identifier, or 'end of string'"
            )));
        }
        self.skip_spaces();
        match self.chars.peek().map(|(_, c)| *c) {
            None | Some(',') => Ok(Requirement::Exists(key)),
            Some('=') => {
                self.chars.next();
                self.chars.next_if(|(_, c)| *c == '=');
                Ok(Requirement::In(key, BTreeSet::from([self.value()?])))
            }
            Some('!') => {
                self.chars.next();
                if self.chars.next_if(|(_, c)| *c == '=').is_none() {
                    return Err(self.error("found '!', expected: '!='"));
                }
                Ok(Requirement::NotIn(key, BTreeSet::from([self.value()?])))
            }
            Some(c @ ('<' | '>')) => {
                self.chars.next();
                let value = self.value()?;
                let bound: i64 = value.parse().map_err(|_| {
                    self.error(&format!(
                        "for 'Gt', 'Lt' operators, the value must be an integer, found {value:?}"
                    ))
                })?;
                Ok(if c == '>' {
                    Requirement::GreaterThan(key, bound)
                } else {
                    Requirement::LessThan(key, bound)
                })
            }
            Some(_) => {
                let operator = self.word();
                match operator.as_str() {
                    "in" => Ok(Requirement::In(key, self.value_set()?)),
                    "notin" => Ok(Requirement::NotIn(key, self.value_set()?)),
                    other => Err(self.error(&format!(
                        "found '{other}', expected: in, notin, =, ==, !=, gt, lt"
                    ))),
                }
            }
        }
    }

    fn value(&mut self) -> Result<String, SelectorError> {
        self.skip_spaces();
        Ok(self.word())
    }

    fn value_set(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        self.skip_spaces();
        if self.chars.next_if(|(_, c)| *c == '(').is_none() {
            return Err(self.error("found '', expected: '('"));
        }
        let mut values = BTreeSet::new();
        loop {
            self.skip_spaces();
            values.insert(self.word());
            self.skip_spaces();
            match self.chars.next() {
                Some((_, ',')) => continue,
                Some((_, ')')) => break,
                _ => return Err(self.error("found 'end of string', expected: ',' or ')'")),
            }
        }
        Ok(values)
    }
}

/// One term of a field selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    /// The field (`spec.nodeName`).
    pub field: String,
    /// `true` for `=`/`==`, `false` for `!=`.
    pub equal: bool,
    /// The value compared with (may be empty).
    pub value: String,
}

/// A field selector: `metadata.name=web-0,status.phase!=Running`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

/// A field selector that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldSelectorError {
    /// Malformed text.
    #[error("invalid field selector {text:?}: {message}")]
    Syntax {
        /// The selector.
        text: String,
        /// What is wrong.
        message: String,
    },
    /// A field this kind cannot be selected by (Kubernetes' words).
    #[error("field label not supported: {field}")]
    Unsupported {
        /// The field.
        field: String,
    },
}

/// The fields a kind can be selected by, beyond `metadata.name` and `metadata.namespace`.
pub fn selectable_fields(kind: super::Kind) -> &'static [&'static str] {
    use super::Kind;
    match kind {
        Kind::Pod => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "status.phase",
            "status.podIP",
        ],
        Kind::Event => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "reason",
            "type",
        ],
        Kind::Secret => &["type"],
        Kind::Namespace => &["status.phase"],
        Kind::Node => &["spec.unschedulable"],
        Kind::Job => &["status.successful"],
        _ => &[],
    }
}

impl FieldSelector {
    /// Parses a field selector and checks each field is selectable for `kind`.
    pub fn parse(text: &str, kind: super::Kind) -> Result<FieldSelector, FieldSelectorError> {
        let mut requirements = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, true, v)
            } else {
                return Err(FieldSelectorError::Syntax {
                    text: text.to_owned(),
                    message: format!("{term:?} has no operator (=, == or !=)"),
                });
            };
            let field = field.trim();
            let known = field == "metadata.name"
                || field == "metadata.namespace"
                || selectable_fields(kind).contains(&field);
            if !known {
                return Err(FieldSelectorError::Unsupported {
                    field: field.to_owned(),
                });
            }
            requirements.push(FieldRequirement {
                field: field.to_owned(),
                equal,
                value: value.trim().to_owned(),
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// The terms.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// Whether an object (as stored JSON) satisfies every term. A missing field compares as
    /// the empty string, as in Kubernetes (`spec.nodeName=` selects unscheduled pods).
    pub fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|r| {
            let pointer = format!("/{}", r.field.replace('.', "/"));
            let actual = match object.pointer(&pointer) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (actual == r.value) == r.equal
        })
    }
}
