//! JSON to YAML as `kubectl get -o yaml` prints it (sigs.k8s.io/yaml over go-yaml v2): keys
//! sorted, two-space indents, sequence items at their parent key's indentation, strings quoted
//! only when they would otherwise read back as something else.

use serde_json::Value;

/// Renders a value as a YAML document (no leading `---`).
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => write_seq(&mut out, items, 0),
        scalar => {
            out.push_str(&scalar_text(scalar, 0));
            out.push('\n');
        }
    }
    out
}

fn write_map(out: &mut String, map: &serde_json::Map<String, Value>, indent: usize) {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    for key in keys {
        let value = &map[key];
        pad(out, indent);
        out.push_str(&quote_if_needed(key));
        out.push(':');
        write_value_after_key(out, value, indent);
    }
}

fn write_value_after_key(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            write_map(out, m, indent + 2);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_seq(out, items, indent);
        }
        scalar => {
            out.push(' ');
            out.push_str(&scalar_text(scalar, indent + 2));
            out.push('\n');
        }
    }
}

fn write_seq(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        pad(out, indent);
        out.push('-');
        match item {
            Value::Object(m) if !m.is_empty() => {
                // The first key goes on the dash's line, the rest below it, aligned.
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                for (i, key) in keys.iter().enumerate() {
                    if i == 0 {
                        out.push(' ');
                    } else {
                        pad(out, indent + 2);
                    }
                    out.push_str(&quote_if_needed(key));
                    out.push(':');
                    write_value_after_key(out, &m[*key], indent + 2);
                }
            }
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                write_seq(out, inner, indent + 2);
            }
            scalar => {
                out.push(' ');
                out.push_str(&scalar_text(scalar, indent + 2));
                out.push('\n');
            }
        }
    }
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

fn scalar_text(value: &Value, indent: usize) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string_text(s, indent),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
    }
}

fn string_text(s: &str, indent: usize) -> String {
    if s.contains('\n')
        && !s.chars().any(|c| c.is_control() && c != '\n')
        && !s.lines().any(|l| l.ends_with(' '))
    {
        // A literal block, as go-yaml writes multi-line strings.
        let chomp = if s.ends_with("\n\n") {
            "+"
        } else if s.ends_with('\n') {
            ""
        } else {
            "-"
        };
        let mut text = format!("|{chomp}");
        if s.starts_with(' ') {
            text = format!("|2{chomp}");
        }
        for line in s.trim_end_matches('\n').split('\n') {
            text.push('\n');
            if !line.is_empty() {
                text.extend(std::iter::repeat_n(' ', indent));
                text.push_str(line);
            }
        }
        if chomp == "+" {
            for _ in 0..s.len() - s.trim_end_matches('\n').len() - 1 {
                text.push('\n');
            }
        }
        return text;
    }
    quote_if_needed(s)
}

/// Quotes a string when plain YAML would read it back as something else.
fn quote_if_needed(s: &str) -> String {
    if needs_quotes(s) {
        // go-yaml writes quoted strings double-quoted, with JSON-compatible escapes.
        serde_json::to_string(s).expect("strings serialise")
    } else {
        s.to_string()
    }
}

fn needs_quotes(s: &str) -> bool {
    if s.is_empty() || s.trim() != s {
        return true;
    }
    let lower = s.to_ascii_lowercase();
    const SPECIAL_WORDS: &[&str] = &[
        "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~", ".nan", ".inf", "-.inf",
        "+.inf",
    ];
    if SPECIAL_WORDS.contains(&lower.as_str()) {
        return true;
    }
    if looks_numeric(s) || looks_like_timestamp(s) {
        return true;
    }
    let mut chars = s.chars();
    let first = chars.next().expect("non-empty");
    let second = chars.next();
    if "-?:".contains(first) && second.is_none_or(|c| c == ' ') {
        // `- a`, `? x`, `: y` and the lone indicators start YAML structure; `-c` does not.
        return true;
    }
    if ",[]{}#&*!|>'\"%@`".contains(first) {
        return true;
    }
    s.contains(": ") || s.contains(" #") || s.ends_with(':') || s.chars().any(|c| c.is_control())
}

/// Would YAML read this plain scalar as a number (int in any base, float)?
fn looks_numeric(s: &str) -> bool {
    let t = s.strip_prefix(['+', '-']).unwrap_or(s);
    if t.is_empty() {
        return false;
    }
    let digits = |body: &str, radix: u32| {
        !body.is_empty() && body.chars().all(|c| c == '_' || c.is_digit(radix))
    };
    if let Some(hex) = t.strip_prefix("0x") {
        return digits(hex, 16);
    }
    if let Some(bin) = t.strip_prefix("0b") {
        return digits(bin, 2);
    }
    if let Some(oct) = t.strip_prefix("0o") {
        return digits(oct, 8);
    }
    digits(t, 10)
        || t.replace('_', "")
            .parse::<f64>()
            .is_ok_and(|_| t.chars().any(|c| c.is_ascii_digit()))
}

/// Would YAML read this plain scalar as a timestamp (`2026-01-01`, `2026-01-01T00:00:00Z`)?
fn looks_like_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 8 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[5].is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_print_like_kubectl() {
        let v = json!({
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "a", "image": "busybox", "args": ["sh", "-c", "echo hi"], "ports": [{"containerPort": 80}]}]},
            "status": {}
        });
        let want = "\
apiVersion: v1
kind: Pod
metadata:
  labels:
    app: web
  name: web
spec:
  containers:
  - args:
    - sh
    - -c
    - echo hi
    image: busybox
    name: a
    ports:
    - containerPort: 80
status: {}
";
        assert_eq!(to_yaml(&v), want);
    }

    #[test]
    fn ambiguous_strings_are_quoted() {
        let cases = [
            ("yes", "\"yes\""),
            ("on", "\"on\""),
            ("123", "\"123\""),
            ("0644", "\"0644\""),
            ("1.5", "\"1.5\""),
            ("1e3", "\"1e3\""),
            ("0x1F", "\"0x1F\""),
            ("", "\"\""),
            ("- a", "\"- a\""),
            ("a: b", "\"a: b\""),
            ("it's", "it's"),
            ("*", "\"*\""),
            ("-c", "-c"),
            ("-", "\"-\""),
            ("web-0", "web-0"),
            ("10.244.0.5", "10.244.0.5"),
            ("500m", "500m"),
            ("1Gi", "1Gi"),
            ("e", "e"),
            ("inf", "inf"),
            ("2026-01-01T00:00:00Z", "\"2026-01-01T00:00:00Z\""),
        ];
        for (input, want) in cases {
            assert_eq!(quote_if_needed(input), want, "{input}");
        }
    }

    #[test]
    fn multi_line_strings_are_literal_blocks() {
        let v = json!({"data": {"index.html": "<h1>hi</h1>\nline 2\n"}});
        assert_eq!(
            to_yaml(&v),
            "data:\n  index.html: |\n    <h1>hi</h1>\n    line 2\n"
        );
        let v = json!({"s": "a\nb"});
        assert_eq!(to_yaml(&v), "s: |-\n  a\n  b\n");
    }
}
