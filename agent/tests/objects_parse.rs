//! Reading manifests: YAML and JSON text, multi-document streams, Lists, directories, and the
//! errors kubectl users know.

use std::path::{Path, PathBuf};

use berth_agent::objects::parse::{self, Origin, ParseError};
use berth_agent::objects::{DecodeError, Object};
use serde_json::json;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn inline(text: &str) -> Result<Vec<parse::Document>, ParseError> {
    parse::parse_text(Origin::Inline("test.yaml".into()), text)
}

#[test]
fn multi_document_yaml_yields_each_manifest_with_its_document_number() {
    let text = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n# only a comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n...\n";
    let docs = inline(text).unwrap();
    let summary: Vec<(String, usize)> = docs
        .iter()
        .map(|d| {
            (
                d.value["metadata"]["name"].as_str().unwrap().to_owned(),
                d.source.document,
            )
        })
        .collect();
    assert_eq!(summary, vec![("a".to_owned(), 1), ("b".to_owned(), 3)]);
    assert_eq!(docs[1].source.to_string(), "test.yaml (document 3)");
}

#[test]
fn lists_are_expanded_and_typed_lists_give_items_their_kind() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        (
            "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n- {apiVersion: apps/v1, kind: StatefulSet, metadata: {name: b}}\n",
            &[("ConfigMap", "a"), ("StatefulSet", "b")],
        ),
        (
            "apiVersion: v1\nkind: PodList\nitems:\n- {metadata: {name: p}}\n",
            &[("Pod", "p")],
        ),
        ("apiVersion: v1\nkind: List\nitems: []\n", &[]),
    ];
    for (text, expected) in cases {
        let docs = inline(text).unwrap();
        let got: Vec<(&str, &str)> = docs
            .iter()
            .map(|d| {
                (
                    d.value["kind"].as_str().unwrap(),
                    d.value["metadata"]["name"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(&got, expected, "{text}");
    }
    let docs = inline("apiVersion: v1\nkind: PodList\nitems:\n- {metadata: {name: p}}\n").unwrap();
    assert_eq!(docs[0].value["apiVersion"], json!("v1"));
    assert_eq!(docs[0].source.item, Some(0));
    assert_eq!(
        docs[0].source.to_string(),
        "test.yaml (document 1, items[0])"
    );
}

#[test]
fn json_documents_and_json_lists_parse() {
    let docs = parse::read_file(&fixtures().join("list.json")).unwrap();
    let kinds: Vec<&str> = docs
        .iter()
        .map(|d| d.value["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["ConfigMap", "PersistentVolumeClaim"]);
    let two = parse::parse_text(
        Origin::Stdin,
        r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a"}} {"apiVersion":"v1","kind":"Namespace","metadata":{"name":"b"}}"#,
    )
    .unwrap();
    assert_eq!(two.len(), 2);
    assert_eq!(two[1].source.to_string(), "STDIN (document 2)");
}

#[test]
fn a_directory_reads_its_manifest_files_in_name_order_and_recursion_is_opt_in() {
    let dir = fixtures().join("dir");
    let names = |docs: Vec<parse::Document>| -> Vec<String> {
        docs.iter()
            .map(|d| d.value["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names(parse::read_path(&dir, false).unwrap()),
        vec!["db", "settings", "debug"]
    );
    assert_eq!(
        names(parse::read_path(&dir, true).unwrap()),
        vec!["db", "settings", "debug", "nested"]
    );
    let docs = parse::read_path(&dir, false).unwrap();
    assert!(matches!(&docs[2].source.origin, Origin::File(p) if p.ends_with("03-pod.json")));
}

#[test]
fn reading_from_any_reader_keeps_the_origin() {
    let text = b"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: from-pipe\n";
    let docs = parse::read_from(&text[..], Origin::Stdin).unwrap();
    assert_eq!(docs[0].source.origin, Origin::Stdin);
    assert_eq!(docs[0].value["metadata"]["name"], json!("from-pipe"));
}

#[test]
fn malformed_input_is_reported_with_its_position() {
    let cases: &[(&str, &str)] = &[
        (
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n   labels: x\n",
            "error parsing test.yaml: error converting YAML to JSON: yaml: line 5, column",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web\n",
            "error parsing test.yaml: error converting YAML to JSON: yaml: line",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  name: b\n",
            "error parsing test.yaml: error converting YAML to JSON: yaml: line 5, column 3: key \"name\" already set in map",
        ),
        (
            "{\"apiVersion\": \"v1\",\n \"kind\": }",
            "error parsing test.yaml: line 2, column 10: expected value",
        ),
        (
            "- a\n- b\n",
            "error parsing test.yaml (document 1): a manifest must be a mapping (an object), found a list",
        ),
        (
            "metadata: {name: x}\n",
            "error validating test.yaml (document 1): error validating data: [apiVersion not set, kind not set]",
        ),
        (
            "apiVersion: v1\nmetadata: {name: x}\n",
            "error validating test.yaml (document 1): error validating data: kind not set",
        ),
    ];
    for (text, expected) in cases {
        let error = inline(text).unwrap_err().to_string();
        assert!(
            error.starts_with(expected),
            "{text:?}\n got: {error}\nwant: {expected}"
        );
    }
}

#[test]
fn a_missing_path_is_a_read_error_naming_it() {
    let error = parse::read_path(Path::new("/nonexistent/berth.yaml"), false).unwrap_err();
    assert_eq!(error.to_string(), "error reading /nonexistent/berth.yaml");
    assert!(std::error::Error::source(&error).is_some());
}

#[test]
fn unknown_kinds_and_versions_use_kubectls_words() {
    let cases: &[(serde_json::Value, &str)] = &[
        (
            json!({"apiVersion": "apps/v1beta1", "kind": "StatefulSet", "metadata": {"name": "web"}}),
            "no matches for kind \"StatefulSet\" in version \"apps/v1beta1\"",
        ),
        (
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}),
            "no matches for kind \"Widget\" in version \"example.com/v1\"",
        ),
        (
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}),
            "no matches for kind \"Deployment\" in version \"apps/v1\": berth does not support Deployment (see docs/compatibility.md)",
        ),
        (
            json!({"apiVersion": "v1", "metadata": {"name": "x"}}),
            "Object 'Kind' is missing",
        ),
        (
            json!({"kind": "Pod", "metadata": {"name": "x"}}),
            "Object 'apiVersion' is missing",
        ),
    ];
    for (manifest, expected) in cases {
        let error: DecodeError = Object::from_value(manifest).unwrap_err();
        assert_eq!(error.to_string(), *expected);
    }
}

#[test]
fn events_are_readable_in_both_api_groups() {
    for api_version in ["v1", "events.k8s.io/v1"] {
        let manifest = json!({"apiVersion": api_version, "kind": "Event", "metadata": {"name": "e", "namespace": "default"}});
        let object = Object::from_value(&manifest).unwrap();
        assert_eq!(object.to_value()["apiVersion"], json!(api_version));
    }
}
