//! YAML to JSON the way kubectl and the API server read YAML (sigs.k8s.io/yaml over
//! go-yaml v2, which follows YAML 1.1): `yes`/`no`/`on`/`off` are booleans, `0644` is octal,
//! map keys become strings, anchors, aliases and `<<` merge keys work. Reading YAML 1.2
//! rules instead would silently change meaning (`defaultMode: 0644` would become 644).
//!
//! Unlike go-yaml's lax mode, a key repeated in one mapping is an error rather than a silent
//! "last one wins".

use std::borrow::Cow;
use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span, Tag};
use serde_json::{Map, Number, Value};

/// A YAML problem at a position (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct YamlError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl YamlError {
    fn at(span: &Span, message: impl Into<String>) -> Self {
        YamlError {
            line: span.start.line(),
            column: span.start.col() + 1,
            message: message.into(),
        }
    }

    fn scan(error: &ScanError) -> Self {
        YamlError {
            line: error.marker().line(),
            column: error.marker().col() + 1,
            message: error.info().to_owned(),
        }
    }
}

/// Parses every document of a YAML stream into JSON values (a `null` for an empty document).
pub fn documents_to_json(text: &str) -> Result<Vec<Value>, YamlError> {
    let mut reader = Reader {
        parser: Parser::new_from_str(text),
        anchors: HashMap::new(),
    };
    let mut documents = Vec::new();
    loop {
        let (event, span) = reader.next()?;
        match event {
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
            Event::StreamEnd => return Ok(documents),
            Event::DocumentStart(_) => {
                reader.anchors.clear();
                let (event, span) = reader.next()?;
                if matches!(event, Event::DocumentEnd) {
                    documents.push(Value::Null);
                    continue;
                }
                documents.push(reader.node(event, span)?);
            }
            _ => {
                return Err(YamlError::at(
                    &span,
                    "unexpected content outside a document",
                ));
            }
        }
    }
}

struct Reader<'input> {
    parser: Parser<'input, saphyr_parser::StrInput<'input>>,
    anchors: HashMap<usize, Value>,
}

impl<'input> Reader<'input> {
    fn next(&mut self) -> Result<(Event<'input>, Span), YamlError> {
        match self.parser.next() {
            Some(Ok(item)) => Ok(item),
            Some(Err(error)) => Err(YamlError::scan(&error)),
            None => Ok((Event::StreamEnd, Span::default())),
        }
    }

    fn node(&mut self, event: Event<'input>, span: Span) -> Result<Value, YamlError> {
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let value = resolve_scalar(&text, style, tag.as_deref(), &span)?;
                self.remember(anchor, &value);
                Ok(value)
            }
            Event::Alias(anchor) => self
                .anchors
                .get(&anchor)
                .cloned()
                .ok_or_else(|| YamlError::at(&span, "unknown anchor")),
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(event, span)?);
                }
                let value = Value::Array(items);
                self.remember(anchor, &value);
                Ok(value)
            }
            Event::MappingStart(anchor, _) => {
                let value = Value::Object(self.mapping()?);
                self.remember(anchor, &value);
                Ok(value)
            }
            Event::StreamEnd => Err(YamlError::at(&span, "unexpected end of the stream")),
            _ => Err(YamlError::at(&span, "unexpected YAML event")),
        }
    }

    fn mapping(&mut self) -> Result<Map<String, Value>, YamlError> {
        let mut map = Map::new();
        // Keys merged in with `<<` yield to keys written in the mapping itself.
        let mut merged = Map::new();
        loop {
            let (event, key_span) = self.next()?;
            if matches!(event, Event::MappingEnd) {
                break;
            }
            let is_merge =
                matches!(&event, Event::Scalar(text, ScalarStyle::Plain, _, None) if text == "<<");
            let key = self.node(event, key_span)?;
            let (event, span) = self.next()?;
            let value = self.node(event, span)?;
            if is_merge {
                merge_into(&mut merged, value, &key_span)?;
                continue;
            }
            let key = key_string(&key, &key_span)?;
            if map.contains_key(&key) {
                return Err(YamlError::at(
                    &key_span,
                    format!("key {} already set in map", serde_json::Value::String(key)),
                ));
            }
            map.insert(key, value);
        }
        for (key, value) in merged {
            map.entry(key).or_insert(value);
        }
        Ok(map)
    }

    fn remember(&mut self, anchor: usize, value: &Value) {
        if anchor != 0 {
            self.anchors.insert(anchor, value.clone());
        }
    }
}

fn merge_into(merged: &mut Map<String, Value>, value: Value, span: &Span) -> Result<(), YamlError> {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                merged.entry(key).or_insert(value);
            }
            Ok(())
        }
        // In a list of maps to merge, earlier maps win.
        Value::Array(maps) => maps
            .into_iter()
            .try_for_each(|map| merge_into(merged, map, span)),
        _ => Err(YamlError::at(
            span,
            "map merge requires map or sequence of maps as the value",
        )),
    }
}

/// A JSON object key for a YAML key, as sigs.k8s.io/yaml converts non-string keys.
fn key_string(key: &Value, span: &Span) -> Result<String, YamlError> {
    match key {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Null => Ok("null".to_owned()),
        Value::Array(_) | Value::Object(_) => Err(YamlError::at(
            span,
            "a mapping or sequence cannot be a key (JSON has only string keys)",
        )),
    }
}

fn resolve_scalar(
    text: &str,
    style: ScalarStyle,
    tag: Option<&Tag>,
    span: &Span,
) -> Result<Value, YamlError> {
    if let Some(tag) = tag
        && tag.is_yaml_core_schema()
    {
        return match tag.suffix.as_str() {
            "str" | "binary" | "timestamp" => Ok(Value::String(text.to_owned())),
            "null" => Ok(Value::Null),
            "bool" => resolve_plain(text, span).and_then(|v| match v {
                Value::Bool(_) => Ok(v),
                _ => Err(YamlError::at(
                    span,
                    format!("cannot decode {text:?} as a !!bool"),
                )),
            }),
            "int" => resolve_plain(text, span).and_then(|v| match v {
                Value::Number(ref n) if !n.is_f64() => Ok(v),
                _ => Err(YamlError::at(
                    span,
                    format!("cannot decode {text:?} as an !!int"),
                )),
            }),
            "float" => resolve_plain(text, span).and_then(|v| match v {
                Value::Number(_) => Ok(v),
                _ => Err(YamlError::at(
                    span,
                    format!("cannot decode {text:?} as a !!float"),
                )),
            }),
            _ => Ok(Value::String(text.to_owned())),
        };
    }
    if style != ScalarStyle::Plain || tag.is_some() {
        // Quoted and block scalars, and scalars with an application tag, are strings.
        return Ok(Value::String(text.to_owned()));
    }
    resolve_plain(text, span)
}

/// go-yaml v2's implicit resolution of a plain scalar.
fn resolve_plain(text: &str, span: &Span) -> Result<Value, YamlError> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Ok(Value::Null),
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Ok(Value::Bool(true));
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Ok(Value::Bool(false));
        }
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF"
        | ".nan" | ".NaN" | ".NAN" => {
            return Err(YamlError::at(
                span,
                format!("{text} cannot be represented in JSON (infinity or not-a-number)"),
            ));
        }
        _ => {}
    }
    let first = text.as_bytes()[0];
    if !(first.is_ascii_digit() || first == b'-' || first == b'+' || first == b'.') {
        return Ok(Value::String(text.to_owned()));
    }
    let plain: Cow<'_, str> = if text.contains('_') {
        Cow::Owned(text.replace('_', ""))
    } else {
        Cow::Borrowed(text)
    };
    if let Some(int) = parse_go_int(&plain) {
        return Ok(int);
    }
    if is_yaml_float(&plain)
        && let Ok(float) = plain.parse::<f64>()
    {
        // Go's encoding/json writes a whole float64 without a fraction, so `1.0` or `1e3`
        // reach the decoder as integers.
        if float.fract() == 0.0 && float.abs() < 9.0e18 {
            return Ok(Value::from(float as i64));
        }
        if let Some(number) = Number::from_f64(float) {
            return Ok(Value::Number(number));
        }
    }
    Ok(Value::String(text.to_owned()))
}

/// `strconv.ParseInt(s, 0, 64)` then `ParseUint`: decimal, `0x` hex, `0o`/`0` octal,
/// `0b` binary, with an optional sign.
fn parse_go_int(text: &str) -> Option<Value> {
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() {
        return None;
    }
    let (radix, body) = if let Some(rest) = digits.strip_prefix("0x").or(digits.strip_prefix("0X"))
    {
        (16, rest)
    } else if let Some(rest) = digits.strip_prefix("0o").or(digits.strip_prefix("0O")) {
        (8, rest)
    } else if let Some(rest) = digits.strip_prefix("0b").or(digits.strip_prefix("0B")) {
        (2, rest)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(body, radix).ok()?;
    if negative {
        if magnitude <= i64::MAX as u64 + 1 {
            Some(Value::from((magnitude as i128).wrapping_neg() as i64))
        } else {
            None
        }
    } else if magnitude <= i64::MAX as u64 {
        Some(Value::from(magnitude as i64))
    } else {
        Some(Value::from(magnitude))
    }
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
fn is_yaml_float(text: &str) -> bool {
    let s = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mantissa_ok = if let Some(fraction) = mantissa.strip_prefix('.') {
        !fraction.is_empty() && fraction.bytes().all(|b| b.is_ascii_digit())
    } else {
        let (int, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        !int.is_empty()
            && int.bytes().all(|b| b.is_ascii_digit())
            && fraction.bytes().all(|b| b.is_ascii_digit())
    };
    let exponent_ok = match exponent {
        None => true,
        Some(e) => {
            let e = e.strip_prefix(['-', '+']).unwrap_or(e);
            !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
        }
    };
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(text: &str) -> Value {
        documents_to_json(text).unwrap().remove(0)
    }

    #[test]
    fn plain_scalars_resolve_as_yaml_1_1() {
        let cases: &[(&str, Value)] = &[
            ("a: yes", json!({"a": true})),
            ("a: off", json!({"a": false})),
            ("a: 0644", json!({"a": 420})),
            ("a: 0o644", json!({"a": 420})),
            ("a: 0x1F", json!({"a": 31})),
            ("a: 1_000", json!({"a": 1000})),
            ("a: 1.5", json!({"a": 1.5})),
            ("a: -3", json!({"a": -3})),
            ("a: ~", json!({"a": null})),
            ("a:", json!({"a": null})),
            ("a: '0644'", json!({"a": "0644"})),
            ("a: \"yes\"", json!({"a": "yes"})),
            ("a: 1.2.3", json!({"a": "1.2.3"})),
            ("a: 08", json!({"a": 8})),
            ("a: 1e3", json!({"a": 1000})),
            ("a: !!str 12", json!({"a": "12"})),
            ("a: 12Gi", json!({"a": "12Gi"})),
            ("1: x", json!({"1": "x"})),
            ("a: |\n  line\n", json!({"a": "line\n"})),
        ];
        for (text, expected) in cases {
            assert_eq!(&one(text), expected, "{text}");
        }
    }

    #[test]
    fn anchors_aliases_and_merge_keys_expand() {
        let text = "base: &b {x: 1, z: 2}\nuse:\n  <<: *b\n  z: 3\nlist: [*b]\n";
        assert_eq!(
            one(text),
            json!({"base": {"x": 1, "z": 2}, "use": {"x": 1, "z": 3}, "list": [{"x": 1, "z": 2}]})
        );
    }

    #[test]
    fn a_repeated_key_is_an_error_with_its_position() {
        let error = documents_to_json("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(
            error.to_string(),
            "line 3, column 1: key \"a\" already set in map"
        );
    }

    #[test]
    fn empty_documents_are_null() {
        let docs = documents_to_json("---\n---\na: 1\n").unwrap();
        assert_eq!(docs, vec![Value::Null, json!({"a": 1})]);
    }
}
